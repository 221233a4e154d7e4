"""``GET /openapi.json``, and the route inventory the drift test compares it with."""

from __future__ import annotations

import functools
from importlib import metadata
from typing import Any

from aiohttp import web

from app.authn import refresh_cookie_name
from app.services import SERVICES
from handlers.openapi_paths import admin_paths, auth_paths, service_paths
from handlers.openapi_schema import RESPONSES, schemas

routes = web.RouteTableDef()

# Routes with no REST meaning: Socket.IO's own endpoint and method-less catch-alls.
# Static file trees (web.StaticResource) and the HEAD twins of GETs are skipped too.
UNDOCUMENTED_PREFIXES = ("/socket.io",)
UNDOCUMENTED_METHODS = frozenset({"HEAD", "OPTIONS", "*"})


@functools.lru_cache(maxsize=1)
def _version() -> str:
    try:
        return metadata.version("latch")
    except metadata.PackageNotFoundError:
        return "0.0.0"


def spec_for(app: web.Application) -> dict[str, Any]:
    """The document for this app (the refresh cookie's name depends on the settings)."""
    settings = app[SERVICES].settings
    return build_spec(refresh_cookie=refresh_cookie_name(settings), version=_version())


def normalise(path: str) -> str:
    """``/a/{id}/b`` → ``/a/{}/b``: parameter names may differ between spec and router."""
    parts = []
    for part in path.split("/"):
        parts.append("{}" if part.startswith("{") and part.endswith("}") else part)
    return "/".join(parts)


def router_operations(app: web.Application) -> set[tuple[str, str]]:
    """``(METHOD, normalised path)`` of every documentable route in ``app.router``."""
    out = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or isinstance(resource, web.StaticResource):
            continue
        if route.method in UNDOCUMENTED_METHODS:
            continue
        path = resource.canonical
        if path.startswith(UNDOCUMENTED_PREFIXES):
            continue
        out.add((route.method, normalise(path)))
    return out


def spec_operations(spec: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return {(method.upper(), normalise(path))
            for path, item in spec["paths"].items() for method in item if method in methods}


def _with_operation_ids(paths: dict[str, Any]) -> dict[str, Any]:
    """``post_auth_login``-style ids, for client generators."""
    for path, item in paths.items():
        words = [w.strip("{}") for w in path.replace(".", "_").replace("-", "_").split("/") if w]
        for method, operation in item.items():
            operation["operationId"] = "_".join([method, *words]) if words else method
    return paths


def build_spec(*, refresh_cookie: str, version: str) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Latch",
            "version": version,
            "summary": "Socket authentication with JWTs and instant, cluster-wide session "
                       "revocation.",
            "description": "REST half of Latch. The Socket.IO half (namespace `/`, events "
                           "`session`, `token_expiring`, `refresh`, `session_ended`) is "
                           "described in CONTRACT §4 and docs/guide-browser.md. Every response "
                           "carries `X-Request-ID` (yours, if you sent a plain one).",
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("auth", "admin", "service", "pages")],
        "paths": _with_operation_ids(
            {**auth_paths(refresh_cookie), **admin_paths(), **service_paths()}),
        "components": {
            "schemas": schemas(),
            "responses": RESPONSES,
            "securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                               "description": "Access token from /auth/login or /auth/refresh. "
                                              "A cookie-transport token also needs its "
                                              "fingerprint cookie."},
                "refreshCookie": {"type": "apiKey", "in": "cookie", "name": refresh_cookie,
                                  "description": "The HttpOnly refresh cookie (cookie "
                                                 "transport), only sent to /auth paths."},
            },
        },
    }


@routes.get("/openapi.json")
async def openapi_json(request: web.Request) -> web.Response:
    return web.json_response(spec_for(request.app), headers={"Cache-Control": "no-cache"})
