"""Service routes: JWKS, liveness and readiness."""

from __future__ import annotations

from aiohttp import web

from app.services import SERVICES

routes = web.RouteTableDef()


@routes.get("/.well-known/jwks.json")
async def jwks(request: web.Request) -> web.Response:
    keyring = request.app[SERVICES].keyring
    keyring.reload_if_changed()
    return web.json_response(keyring.jwks(), headers={"Cache-Control": "public, max-age=300"})


@routes.get("/healthz")
async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok", "node": request.app[SERVICES].settings.node_id})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    checks = {"db": await services.db.ping()}
    if services.settings.redis_enabled:
        checks["redis"] = services.feed.is_healthy()
    checks["revocations_fresh"] = services.revocation.is_fresh()
    ready = all(checks.values())
    return web.json_response({"status": "ready" if ready else "not_ready", "checks": checks},
                             status=200 if ready else 503)
