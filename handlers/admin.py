"""Admin REST routes under /admin (admin role only) and the presence/event wiring.

Shapes are those of docs/admin-api.md. Every route authenticates first (401,
then 403 ``forbidden`` for a non-admin) and validates its query after, so a
non-admin learns nothing from a malformed request. Changes are audited by the
core (revocation, user store, accounts), never twice here.

:func:`setup` joins presence to the Socket.IO gateway's hooks, stores it as
``services.extras["presence"]``, feeds cluster-wide events into the
:class:`~app.events.EventHub` that ``GET /admin/events`` streams from, and
closes every stream on app shutdown so that ``runner.cleanup()`` never waits on one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from aiohttp import web

from app.errors import BadRequest, NotFound
from app.events import Event, EventHub
from app.presence import MAX_LIMIT, ConnectionQuery, DeviceLookup, MemoryPresence, SocketInfo
from app.services import SERVICES, Services
from app.sessions import SessionService
from app.users import User
from handlers.guards import actor_of, require_admin
from handlers.http_errors import optional_str, read_json, read_optional_json

routes = web.RouteTableDef()

EVENT_HUB: web.AppKey[EventHub] = web.AppKey("latch_event_hub", EventHub)
NO_STORE = {"Cache-Control": "no-store"}
MAX_OFFSET = 1_000_000_000
MAX_REASON = 500
PING_INTERVAL = 15.0
WRITE_TIMEOUT = 10.0
SSE_BATCH = 100


# --- wiring ---------------------------------------------------------------------------


def setup(app: web.Application) -> None:
    """Create presence and the event hub for this app (called by the app factory)."""
    services = app[SERVICES]
    presence = _build_presence(services)
    hub = EventHub(clock=services.clock)
    presence.on_resync = hub.resync
    gateway = services.extras.get("gateway")
    if gateway is not None:
        gateway.on_connect.append(presence.add)
        gateway.on_disconnect.append(
            lambda info: presence.remove(info, _disconnect_reason(info)))
    services.extras["presence"] = presence
    services.revocation.on_event = hub.on_event
    app[EVENT_HUB] = hub

    async def close_streams(_: web.Application) -> None:
        hub.close()

    async def presence_ctx(_: web.Application) -> AsyncIterator[None]:
        await presence.start()
        try:
            yield
        finally:
            await presence.stop()

    app.on_shutdown.append(close_streams)
    app.cleanup_ctx.append(presence_ctx)


def _build_presence(services: Services) -> MemoryPresence:
    settings = services.settings
    devices = _device_lookup(services.sessions)
    if services.redis is None:
        return MemoryPresence(settings.node_id, publish=services.revocation.publish_event,
                              devices=devices)
    from app.redis_presence import RedisPresence

    return RedisPresence(services.redis, settings.node_id, ttl=settings.presence_ttl,
                         live_nodes=services.feed.live_nodes,
                         publish=services.revocation.publish_event, devices=devices)


def _device_lookup(sessions: SessionService) -> DeviceLookup:
    async def lookup(ids: Sequence[str]) -> Mapping[str, str]:
        found: dict[str, str] = {}
        for i in range(0, len(ids), 500):
            chunk = ids[i:i + 500]
            for sid, info in zip(chunk, await asyncio.gather(*map(sessions.get, chunk)),
                                 strict=True):
                if info is not None:
                    found[sid] = info.device
        return found

    return lookup


def _disconnect_reason(info: SocketInfo) -> str:
    # Shown in `disconnect` events once the gateway records why a socket ended
    # (ConnectionInfo.reason: the session_ended code or the Socket.IO reason).
    reason = getattr(info, "reason", None)
    return reason if isinstance(reason, str) and reason else "disconnected"


def _presence(request: web.Request) -> MemoryPresence:
    presence: MemoryPresence = request.app[SERVICES].extras["presence"]
    return presence


# --- query and body validation -----------------------------------------------------------


def _int_param(request: web.Request, name: str, default: int | None, low: int,
               high: int) -> int | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 10 or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}")
    return int(raw)


def _page(request: web.Request, default_limit: int) -> tuple[int, int]:
    limit = _int_param(request, "limit", default_limit, 1, MAX_LIMIT)
    offset = _int_param(request, "offset", 0, 0, MAX_OFFSET)
    assert limit is not None and offset is not None
    return limit, offset


def _bool_param(request: web.Request, name: str) -> bool | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if raw not in ("true", "false"):
        raise BadRequest(f"{name} must be true or false")
    return raw == "true"


def _str_param(request: web.Request, name: str) -> str | None:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return None
    if len(raw) > 200:
        raise BadRequest(f"{name} is too long")
    return raw


async def _user_param(request: web.Request, services: Services) -> User | None:
    """``user=`` is a user id or a username; an unknown one is 404."""
    raw = _str_param(request, "user")
    if raw is None:
        return None
    user = await services.users.get(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 18 \
        else None
    if user is None:
        found = await services.users.find_by_name(raw)
        user = found[0] if found is not None else None
    if user is None:
        raise NotFound("no such user")
    return user


def _user_id(request: web.Request) -> str:
    # Only ASCII digits: int() would also take "١" (Arabic-Indic one) for user 1.
    raw = request.match_info["user_id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise NotFound("no such user")
    return raw


def _only(body: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(unknown)}")


async def _reason(request: web.Request) -> str | None:
    body = await read_optional_json(request)
    _only(body, {"reason"})
    return optional_str(body, "reason", limit=MAX_REASON)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers=NO_STORE)


# --- routes ------------------------------------------------------------------------------


@routes.get("/admin/connections")
async def list_connections(request: web.Request) -> web.Response:
    await require_admin(request)
    services = request.app[SERVICES]
    user = await _user_param(request, services)
    limit, offset = _page(request, 100)
    query = ConnectionQuery(user_id=user.id if user else None,
                            session_id=_str_param(request, "session"),
                            node=_str_param(request, "node"), limit=limit, offset=offset)
    page = await _presence(request).list(query)
    return _json(page.as_dict(query))


@routes.get("/admin/sessions")
async def list_sessions(request: web.Request) -> web.Response:
    await require_admin(request)
    services = request.app[SERVICES]
    user = await _user_param(request, services)
    active = _bool_param(request, "active")
    limit, offset = _page(request, 100)
    rows, total = await services.sessions.list_all(
        user_id=user.id if user else None, active=active, limit=limit, offset=offset)
    counts = await _presence(request).session_counts([s.id for s, _ in rows])
    sessions = []
    for session, owner in rows:
        n = counts.get(session.id, 0)
        sessions.append({**session.as_dict(), "user": owner.public(), "online": n > 0,
                         "connections": n})
    return _json({"sessions": sessions, "total": total, "limit": limit, "offset": offset})


@routes.post("/admin/sessions/{session_id}/revoke")
async def revoke_session(request: web.Request) -> web.Response:
    identity = await require_admin(request)
    services = request.app[SERVICES]
    reason = await _reason(request)
    session_id = request.match_info["session_id"]
    if len(session_id) > 64:
        raise NotFound("no such session")
    result = await services.revocation.revoke_session(
        session_id, code="session_revoked", actor=actor_of(request, identity), reason=reason,
        action="session.revoke")
    return _json(result.as_dict())


@routes.post("/admin/users/{user_id}/revoke")
async def revoke_user(request: web.Request) -> web.Response:
    identity = await require_admin(request)
    services = request.app[SERVICES]
    reason = await _reason(request)
    user = await services.users.require(_user_id(request))
    result = await services.revocation.revoke_user(
        user.id, code="session_revoked", actor=actor_of(request, identity), reason=reason,
        action="user.revoke")
    return _json(result.as_dict())


@routes.get("/admin/users")
async def list_users(request: web.Request) -> web.Response:
    await require_admin(request)
    services = request.app[SERVICES]
    limit, offset = _page(request, 100)
    users, total = await services.users.list(limit=limit, offset=offset)
    ids = [u.id for u in users]
    online = await _presence(request).online_users(ids)
    active = await asyncio.gather(*(services.sessions.list_for_user(i) for i in ids))
    out = [{**u.as_dict(), "sessions_active": len(sessions), "online": u.id in online}
           for u, sessions in zip(users, active, strict=True)]
    return _json({"users": out, "total": total, "limit": limit, "offset": offset})


@routes.post("/admin/users")
async def create_user(request: web.Request) -> web.Response:
    identity = await require_admin(request)
    services = request.app[SERVICES]
    body = await read_json(request)
    _only(body, {"username", "password", "role"})
    role = body.get("role")
    user = await services.users.create(body.get("username"), body.get("password"),
                                       "user" if role is None else role,
                                       actor=actor_of(request, identity))
    return _json({"user": user.as_dict()}, status=201)


@routes.patch("/admin/users/{user_id}")
async def update_user(request: web.Request) -> web.Response:
    identity = await require_admin(request)
    services = request.app[SERVICES]
    body = await read_json(request)
    _only(body, {"role", "disabled"})
    if body.get("role") is None and body.get("disabled") is None:
        raise BadRequest("nothing to change: give role and/or disabled")
    user, result = await services.accounts.update(
        _user_id(request), role=body.get("role"), disabled=body.get("disabled"),
        actor=actor_of(request, identity))
    return _json({"user": user.as_dict(), "revoked": result.as_dict() if result else None})


@routes.get("/admin/audit")
async def audit(request: web.Request) -> web.Response:
    await require_admin(request)
    services = request.app[SERVICES]
    limit = _int_param(request, "limit", 50, 1, MAX_LIMIT)
    before = _int_param(request, "before", None, 1, 2**62)
    assert limit is not None
    entries, next_before = await services.audit.page(limit=limit, before=before)
    return _json({"entries": entries, "next_before": next_before})


# --- Server-Sent Events ------------------------------------------------------------------


def _frame(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


@routes.get("/admin/events")
async def events(request: web.Request) -> web.StreamResponse:
    """Cluster-wide admin events until the client leaves, the app stops, or our session ends."""
    identity = await require_admin(request)
    services = request.app[SERVICES]
    revocation = services.revocation
    ping = float(services.settings.extra.get("sse_ping_interval", PING_INTERVAL))
    response = web.StreamResponse(headers={"Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
    response.content_type = "text/event-stream"
    response.charset = "utf-8"

    async def send(data: bytes) -> None:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await response.write(data)

    with request.app[EVENT_HUB].subscribe() as sub:
        await response.prepare(request)
        try:
            await send(_frame("hello", {"node": services.settings.node_id}))
            while not sub.closed:
                if request.transport is None or request.transport.is_closing():
                    return response  # the client left
                batch: list[Event] = []
                try:
                    async with asyncio.timeout(ping):
                        await sub.wait()
                    batch = sub.drain(SSE_BATCH)
                except TimeoutError:
                    pass
                data = b"".join(_frame(e.name, e.data) for e in batch) if batch else b": ping\n\n"
                code = revocation.revoked_code(identity.session_id)
                if code is not None:
                    await send(data + _frame("bye", {"code": code}))
                    break
                if batch or not sub.closed:
                    await send(data)
        except TimeoutError:
            # The client stopped reading: drop it rather than buffer for it.
            if request.transport is not None:
                request.transport.abort()
            return response
        except ConnectionError:
            return response
    try:
        async with asyncio.timeout(WRITE_TIMEOUT):
            await response.write_eof()
    except TimeoutError:
        if request.transport is not None:
            request.transport.abort()
    except ConnectionError:
        pass
    return response

