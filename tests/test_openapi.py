"""GET /openapi.json (issue 6): a valid OpenAPI 3.1 document that cannot drift from the router.

The drift test compares ``(method, path)`` pairs of ``app.router`` with the
document's. Skipped on the router side: static file trees, Socket.IO's own
endpoint, and the HEAD/OPTIONS twins aiohttp adds; path parameter names may
differ (``{id}`` vs ``{session_id}``).
"""

from __future__ import annotations

from typing import Any

import aiohttp
import jsonschema_rs
import schemathesis

from handlers.openapi import build_spec, router_operations, spec_operations
from tests.support import RunningServer


async def fetch_spec(http: aiohttp.ClientSession, server: RunningServer) -> dict[str, Any]:
    async with http.get(f"{server.url}/openapi.json") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        spec: dict[str, Any] = await resp.json()
    return spec


async def test_document_is_valid_openapi_3_1(server: RunningServer,
                                             http: aiohttp.ClientSession) -> None:
    spec = await fetch_spec(http, server)
    assert spec["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(spec).validate()  # the OpenAPI 3.1 meta-schema
    for name, schema in spec["components"]["schemas"].items():
        assert jsonschema_rs.meta.is_valid(schema), f"components.schemas.{name}"


async def test_every_route_is_documented_and_every_entry_is_routed(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    documented = spec_operations(await fetch_spec(http, server))
    routed = router_operations(server.app)
    assert not routed - documented, f"routes without an OpenAPI entry: {sorted(routed - documented)}"
    assert not documented - routed, f"OpenAPI entries without a route: {sorted(documented - routed)}"


async def test_security_is_declared_per_operation(server: RunningServer,
                                                  http: aiohttp.ClientSession) -> None:
    spec = await fetch_spec(http, server)
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {**schemes["bearerAuth"], "type": "http", "scheme": "bearer",
                                     "bearerFormat": "JWT"}
    # Tests run with LATCH_INSECURE_COOKIES=1, where the cookie drops its __Secure- prefix.
    assert schemes["refreshCookie"]["in"] == "cookie"
    assert schemes["refreshCookie"]["name"] == "latch_rt"
    public = {"/auth/login", "/.well-known/jwks.json", "/healthz", "/readyz", "/openapi.json",
              "/admin", "/admin/", "/admin/{name}", "/demo/", "/demo/socket.io.js"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            label = f"{method.upper()} {path}"
            assert "security" in operation, label
            assert operation["operationId"], label
            if path in public:
                assert operation["security"] == [], label
            elif path.startswith(("/admin/", "/auth/")) and path != "/auth/refresh":
                assert operation["security"] == [{"bearerAuth": []}], label
                assert "401" in operation["responses"], label
            if path.startswith("/admin/") and path not in public:
                assert "403" in operation["responses"], label
            for status, response in operation["responses"].items():
                if status.startswith("4") and "$ref" not in response:
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/Error"}, label


def test_secure_cookie_name_outside_local_development() -> None:
    spec = build_spec(refresh_cookie="__Secure-latch_rt", version="1")
    assert spec["components"]["securitySchemes"]["refreshCookie"]["name"] == "__Secure-latch_rt"
