"""The paths of the OpenAPI document: every REST route, grouped as in CONTRACT §3.

``tests/test_openapi.py`` fails when a route exists without an entry here or an
entry names a route that does not exist; ``tests/test_schemathesis.py`` checks
the live answers against them.
"""

from __future__ import annotations

from typing import Any

from handlers.openapi_schema import (
    BEARER,
    BOOL,
    INT,
    KILL,
    LIMIT,
    MAX_LIMIT,
    NO_CONTENT,
    OFFSET,
    PUBLIC,
    REASON,
    ROLE,
    STR,
    admin,
    error,
    json_body,
    obj,
    op,
    path_param,
    query,
    ref,
    response_ref,
)


def auth_paths(cookie: str) -> dict[str, Any]:
    token = {"200": {**json_body(ref("TokenResponse"), "Signed in."), "headers": {
        "Set-Cookie": {"description": f"Cookie transport: `{cookie}` (HttpOnly, Secure, "
                                      "SameSite=Strict, Path=/auth) and the fingerprint cookie.",
                       "schema": STR}}}}
    return {
        "/auth/login": {"post": op(
            "Log in", "auth", {**token, "401": error("`invalid_credentials` (same answer for "
                                                      "unknown, wrong and disabled)."),
                               "429": response_ref("TooManyAttempts")},
            security=PUBLIC,
            body=obj({"username": {"type": "string", "minLength": 1, "maxLength": 256},
                      "password": {"type": "string", "maxLength": 4096}},
                     {"device": {"type": "string", "maxLength": 100},
                      "transport": {"type": "string", "enum": ["body", "cookie"]}}),
            description="`transport: cookie` (browsers) puts the refresh token in an HttpOnly "
                        "cookie and binds the access token to a fingerprint cookie; `body` "
                        "(default; native apps) returns `refresh_token` in the JSON.")},
        "/auth/refresh": {"post": op(
            "Rotate the refresh token; get a new access token", "auth",
            {**token, "401": error("`refresh_invalid`, `refresh_reused` (the whole session is "
                                    "now revoked), `session_revoked`, `session_expired`."),
             "403": error("Cookie refresh without `X-Requested-With`, or from a foreign "
                           "Origin.")},
            security=[{}, {"refreshCookie": []}],
            body=obj({}, {"refresh_token": {"type": "string", "maxLength": 200}}),
            body_required=False,
            params=[{"name": "X-Requested-With", "in": "header", "required": False,
                     "description": "Required with the cookie (CSRF defence).", "schema": STR}],
            description="Body transport sends `{refresh_token}`; cookie transport sends no "
                        "body (or `{}`) and the cookie.")},
        "/auth/logout": {"post": op("Log out: revoke this session", "auth", NO_CONTENT,
                                    security=BEARER)},
        "/auth/me": {"get": op("Who am I", "auth", {"200": json_body(obj(
            {"user": ref("UserRef"), "session": ref("MySession")}))}, security=BEARER)},
        "/auth/sessions": {"get": op("My live sessions", "auth", {"200": json_body(obj(
            {"sessions": {"type": "array", "items": ref("MySession")}}))}, security=BEARER)},
        "/auth/sessions/{session_id}": {"delete": op(
            "Sign out one of my sessions (its sockets are ended)", "auth",
            {**NO_CONTENT, "404": response_ref("NotFound")}, security=BEARER,
            params=[path_param("session_id", "one of my session ids")])},
        "/auth/password": {"post": op(
            "Change my password; every other session is revoked", "auth", NO_CONTENT,
            security=BEARER,
            body=obj({"old_password": {"type": "string", "maxLength": 4096},
                      "new_password": {"type": "string", "minLength": 8, "maxLength": 1024}}))},
    }


def admin_paths() -> dict[str, Any]:
    page = ref("Page")
    listing = {"type": "array"}
    return {
        "/admin/connections": {"get": admin("Every live socket on every node", {"200": json_body(
            {"allOf": [page, obj({"connections": {**listing, "items": ref("Connection")},
                                  "nodes": {**listing, "items": obj({"node": STR,
                                                                     "sockets": INT})},
                                  "users": INT},
                                 {"partial": {"type": "boolean", "description": "true when "
                                              "other nodes could not be read (Redis down)"}})]})},
            extra={"404": error("`not_found`: `user` names no user.")},
            params=[query("user", STR, "user id or username"), query("session", STR, "session id"),
                    query("node", STR, "node id"), LIMIT, OFFSET])},
        "/admin/sessions": {"get": admin("Sessions", {"200": json_body(
            {"allOf": [page, obj({"sessions": {**listing, "items": ref("Session")}})]})},
            extra={"404": error("`not_found`: `user` names no user.")},
            params=[query("user", STR, "user id or username"),
                    query("active", {"type": "boolean"}, "only live (true) or only ended (false)"),
                    LIMIT, OFFSET])},
        "/admin/sessions/{session_id}/revoke": {"post": admin(
            "Revoke a session; its sockets on every node are ended", KILL,
            params=[path_param("session_id", "session id")], body=REASON, body_required=False)},
        "/admin/users/{user_id}/revoke": {"post": admin(
            "Revoke every session of a user", KILL,
            params=[path_param("user_id", "user id")], body=REASON, body_required=False)},
        "/admin/users": {
            "get": admin("Users", {"200": json_body(
                {"allOf": [page, obj({"users": {**listing, "items": ref("AdminUser")}})]})},
                params=[LIMIT, OFFSET]),
            "post": admin("Create a user", {"201": json_body(obj({"user": ref("User")}), "Created."),
                                            "409": response_ref("Conflict")},
                          body=obj({"username": {"type": "string", "minLength": 1,
                                                 "maxLength": 64, "description": "NFKC-"
                                                 "normalised and trimmed; no control "
                                                 "characters"},
                                    "password": {"type": "string", "minLength": 8,
                                                 "maxLength": 1024}},
                                   {"role": ROLE}, closed=True)),
        },
        "/admin/users/{user_id}": {"patch": admin(
            "Change role or disable/enable; a role change or disable revokes the user's "
            "sessions", {"200": json_body(obj({"user": ref("User"), "revoked": {
                "oneOf": [{"type": "null"}, ref("KillResult")]}})),
                "404": response_ref("NotFound"), "409": response_ref("Conflict")},
            params=[path_param("user_id", "user id")],
            body=obj({}, {"role": ROLE, "disabled": BOOL}, closed=True, minProperties=1))},
        "/admin/audit": {"get": admin("Audit log, newest first", {"200": json_body(obj(
            {"entries": {**listing, "items": ref("AuditEntry")},
             "next_before": {"type": ["integer", "null"]}}))},
            params=[query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT},
                          "page size"),
                    query("before", {"type": "integer", "minimum": 1, "maximum": 2**62},
                          "entries older than this id (the previous page's next_before)")])},
        "/admin/events": {"get": admin(
            "Server-Sent Events: hello, connect, disconnect, session_revoked, user_changed, bye",
            {"200": {"description": "An event stream (`event:` + `data:` JSON; `: ping` every "
                                    "15 s).",
                     "content": {"text/event-stream": {"schema": STR}}}},
            description="Read with fetch() and a stream reader: EventSource cannot send the "
                        "Authorization header, and a token in the query string is refused.")},
        "/admin": {"get": op("Redirect to /admin/", "pages", {"308": {
            "description": "Permanent redirect to `/admin/`.",
            "headers": {"Location": {"schema": {"const": "/admin/"}}}}}, security=PUBLIC)},
        "/admin/": {"get": op("The admin dashboard (HTML; it signs in through the API)",
                              "pages", {"200": {"description": "HTML page.",
                                                "content": {"text/html": {"schema": STR}}}},
                              security=PUBLIC)},
        "/admin/{name}": {"get": op(
            "A file of the dashboard (script, style sheet, icon)", "pages",
            {"200": {"description": "The file.", "content": {"*/*": {"schema": STR}}},
             "404": response_ref("NotFound")}, security=PUBLIC,
            params=[{"name": "name", "in": "path", "required": True, "description": "a plain "
                     "file name with an extension, directly inside static/admin/",
                     "schema": {"type": "string", "pattern": "^[^/]+\\.[^/]+$",
                                "maxLength": 100}}])},
    }


def service_paths() -> dict[str, Any]:
    text = {"text/plain": {"schema": STR}}
    return {
        "/.well-known/jwks.json": {"get": op("Public keys by kid (empty for HS256)", "service",
                                             {"200": json_body(obj({"keys": {
                                                 "type": "array", "items": ref("Jwk")}}))},
                                             security=PUBLIC)},
        "/healthz": {"get": op("Liveness", "service", {"200": json_body(obj(
            {"status": {"const": "ok"}, "node": STR}))}, security=PUBLIC)},
        "/readyz": {"get": op(
            "Readiness: the database, Redis (when configured) and a current revocation view",
            "service", {"200": json_body(obj({"status": {"const": "ready"},
                                          "checks": {"type": "object",
                                                     "additionalProperties": BOOL}})),
                        "503": json_body(obj({"status": {"const": "not_ready"},
                                          "checks": {"type": "object",
                                                     "additionalProperties": BOOL}}),
                                     "Not ready: take this node out of the load balancer.")},
            security=PUBLIC)},
        "/metrics": {"get": op(
            "Prometheus metrics (text format)", "service",
            {"200": {"description": "Prometheus text exposition format 0.0.4.", "content": text},
             "401": response_ref("Unauthorized"), "403": response_ref("Forbidden")},
            security=[{}, {"bearerAuth": []}],
            description="Open to direct loopback connections; anyone else needs an admin "
                        "token. A request relayed by a proxy (Forwarded / X-Forwarded-For / "
                        "X-Real-IP) is never local.")},
        "/openapi.json": {"get": op("This document", "service", {"200": json_body(
            {"type": "object"})}, security=PUBLIC)},
        "/demo/": {"get": op("The browser client demo page", "pages", {"200": {
            "description": "HTML page.", "content": {"text/html": {"schema": STR}}}},
            security=PUBLIC)},
        "/demo/socket.io.js": {"get": op(
            "socket.io-client for the demo page, from the npm-installed copy", "pages",
            {"200": {"description": "JavaScript.",
                     "content": {"text/javascript": {"schema": STR}}},
             "404": response_ref("NotFound")}, security=PUBLIC)},
    }
