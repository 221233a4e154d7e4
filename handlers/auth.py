"""REST routes under /auth: login, refresh, logout, me, my sessions, password."""

from __future__ import annotations

from aiohttp import web

from app.authn import fingerprint_cookie_name, refresh_cookie_name
from app.config import Settings
from app.errors import BadRequest, Forbidden, RefreshInvalid, SessionRevoked
from app.services import SERVICES
from app.sessions import Grant
from handlers.client import client_info, request_origin_allowed
from handlers.guards import actor_of, require_identity
from handlers.http_errors import read_json, read_optional_json

routes = web.RouteTableDef()

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _set_cookies(response: web.Response, grant: Grant, settings: Settings) -> None:
    secure = not settings.insecure_cookies
    response.set_cookie(refresh_cookie_name(settings), grant.refresh_token, path="/auth",
                        max_age=settings.refresh_ttl, httponly=True, secure=secure,
                        samesite="Strict")
    if grant.fingerprint is not None:
        response.set_cookie(fingerprint_cookie_name(settings), grant.fingerprint, path="/",
                            max_age=settings.refresh_ttl, httponly=True, secure=secure,
                            samesite="Strict")


def _clear_cookies(response: web.Response, settings: Settings) -> None:
    response.del_cookie(refresh_cookie_name(settings), path="/auth")
    response.del_cookie(fingerprint_cookie_name(settings), path="/")


def _token_response(grant: Grant, settings: Settings) -> web.Response:
    cookie_mode = grant.transport == "cookie"
    response = web.json_response(grant.body(include_refresh=not cookie_mode), headers=NO_STORE)
    if cookie_mode:
        _set_cookies(response, grant, settings)
    return response


@routes.post("/auth/login")
async def login(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    body = await read_json(request)
    for name in ("username", "password"):
        if not isinstance(body.get(name), str):
            raise BadRequest(f"{name} is required and must be a string")
    grant = await services.sessions.login(
        body["username"], body["password"], device=body.get("device"),
        transport=body.get("transport"), client=client_info(request, services.settings))
    return _token_response(grant, services.settings)


@routes.post("/auth/refresh")
async def refresh(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    settings = services.settings
    body = await read_optional_json(request)
    token = body.get("refresh_token")
    if token is None:
        token = request.cookies.get(refresh_cookie_name(settings))
        if token is None:
            raise RefreshInvalid("no refresh token in the body or the cookie")
        # A cookie is sent by the browser on its own: prove this is our page (CSRF).
        if not request.headers.get("X-Requested-With"):
            raise Forbidden("cookie refresh needs the X-Requested-With header")
        if not request_origin_allowed(request, settings):
            raise Forbidden("origin not allowed")
    elif not isinstance(token, str):
        raise BadRequest("refresh_token must be a string")
    grant = await services.sessions.refresh(token, client=client_info(request, settings))
    return _token_response(grant, settings)


@routes.post("/auth/logout")
async def logout(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    services = request.app[SERVICES]
    await services.revocation.revoke_session(
        identity.session_id, code="logged_out", actor=actor_of(request, identity),
        reason="logout", action="logout")
    response = web.Response(status=204, headers=NO_STORE)
    _clear_cookies(response, services.settings)
    return response


@routes.get("/auth/me")
async def me(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    services = request.app[SERVICES]
    session = await services.sessions.get(identity.session_id)
    user = await services.users.get(identity.user_id)
    if session is None or user is None:
        raise SessionRevoked()
    return web.json_response({
        "user": user.public(),
        "session": {**session.as_dict(), "current": True, "token_expires_at": identity.token_exp},
    }, headers=NO_STORE)


@routes.get("/auth/sessions")
async def my_sessions(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    services = request.app[SERVICES]
    sessions = await services.sessions.list_for_user(identity.user_id)
    presence = services.extras.get("presence")
    counts: dict[str, int] = {}
    if presence is not None:
        counts = await presence.session_counts([s.id for s in sessions])
    out = []
    for s in sessions:
        n = counts.get(s.id, 0)
        out.append({**s.as_dict(), "current": s.id == identity.session_id,
                    "online": n > 0, "connections": n})
    return web.json_response({"sessions": out}, headers=NO_STORE)


@routes.delete("/auth/sessions/{session_id}")
async def delete_my_session(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    services = request.app[SERVICES]
    session_id = request.match_info["session_id"]
    await services.sessions.get_owned(session_id, identity.user_id)
    await services.revocation.revoke_session(
        session_id, code="session_revoked" if session_id != identity.session_id else "logged_out",
        actor=actor_of(request, identity), reason="signed out by user", action="session.delete")
    return web.Response(status=204)


@routes.post("/auth/password")
async def change_password(request: web.Request) -> web.Response:
    identity = await require_identity(request)
    services = request.app[SERVICES]
    body = await read_json(request)
    await services.accounts.change_password(
        identity.user_id, identity.session_id, body.get("old_password"), body.get("new_password"),
        actor=actor_of(request, identity))
    return web.Response(status=204)
