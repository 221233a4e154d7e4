"""Metrics and request context at the HTTP edge.

``setup(app)`` (called by the app factory before the app is frozen) creates the
node's :class:`~app.metrics.Metrics`, hooks it to the revocation path and the
socket gateway, and installs :func:`observe_requests`, which gives every
request an id (``X-Request-ID`` in and out), binds the log context and counts
the request by route template. ``GET /metrics`` is open to loopback clients
and admin-only for everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from app import logging_setup
from app.errors import LatchError
from app.metrics import Metrics
from app.services import SERVICES
from handlers.guards import IDENTITY, require_admin

routes = web.RouteTableDef()

REQUEST_ID: web.RequestKey[str] = web.RequestKey("latch_request_id", str)
REQUEST_ID_HEADER = "X-Request-ID"
# Ids from a client or proxy are kept only if they are short and plain (they go into logs).
_VALID_ID = re.compile(r"[A-Za-z0-9._:=+/-]{1,128}")
# A request that came through a proxy is not "local", whatever its peer address.
_FORWARDING_HEADERS = ("Forwarded", "X-Forwarded-For", "X-Real-IP")
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"
UNMATCHED = "unmatched"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def metrics_of(app: web.Application) -> Metrics | None:
    """The app's metrics, or None when ``setup`` has not run (e.g. a bare test app)."""
    metrics = app[SERVICES].extras.get("metrics")
    return metrics if isinstance(metrics, Metrics) else None


def route_template(request: web.Request) -> str:
    """The matched route's template (``/auth/sessions/{session_id}``), never the raw path."""
    match_info = request.match_info
    if match_info.http_exception is not None:
        return UNMATCHED
    resource = match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


def request_id_for(header: str | None) -> str:
    if header is not None and _VALID_ID.fullmatch(header):
        return header
    return secrets.token_hex(8)


def _outcome(exc: BaseException) -> tuple[int, str]:
    if isinstance(exc, LatchError):
        return exc.status, exc.code
    if isinstance(exc, web.HTTPException):
        return exc.status, "bad_request" if 400 <= exc.status < 500 else "internal_error"
    return 500, "internal_error"


@web.middleware
async def observe_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, log context and HTTP metrics. Runs inside the error middleware."""
    rid = request_id_for(request.headers.get(REQUEST_ID_HEADER))
    request[REQUEST_ID] = rid
    route = route_template(request)
    # Not reset on the way out: the access logger runs after us in this request's own task.
    logging_setup.bind(request_id=rid, route=route)
    started = time.perf_counter()
    status, code = 500, "internal_error"
    try:
        response = await handler(request)
        status, code = response.status, "ok" if response.status < 400 else "bad_request"
        return response
    except asyncio.CancelledError:
        status, code = 499, "cancelled"  # the client went away (nginx's convention)
        raise
    except Exception as exc:
        status, code = _outcome(exc)
        raise
    finally:
        identity = request.get(IDENTITY)
        if identity is not None:
            logging_setup.bind(user_id=identity.user_id, session_id=identity.session_id)
        metrics = metrics_of(request.app)
        if metrics is not None:
            metrics.http_request(request.method, route, status, time.perf_counter() - started)
            _count_auth_outcome(metrics, request.method, route, code)


def _count_auth_outcome(metrics: Metrics, method: str, route: str, code: str) -> None:
    # Login and REST refresh results are read off their routes' outcomes, so every
    # path through auth.py (and every future error) is counted without call sites.
    if method != "POST" or code == "cancelled":
        return
    if route == "/auth/login":
        metrics.login(code)
    elif route == "/auth/refresh":
        metrics.refresh(code, "rest")


async def _add_request_id(request: web.Request, response: web.StreamResponse) -> None:
    rid = request.get(REQUEST_ID)
    if rid is not None:
        response.headers[REQUEST_ID_HEADER] = rid


def is_local(request: web.Request) -> bool:
    """A direct connection from this machine (not relayed by a proxy on it)."""
    if any(name in request.headers for name in _FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        return False  # a Unix socket peer has no address: treat as remote


@routes.get("/metrics")
async def metrics_endpoint(request: web.Request) -> web.Response:
    if not is_local(request):
        await require_admin(request)
    metrics = metrics_of(request.app)
    if metrics is None:
        raise LatchError("metrics are not set up on this node")
    return web.Response(body=metrics.exposition(), headers={"Content-Type": PROMETHEUS_TEXT,
                                                             "Cache-Control": "no-store"})


async def _loop_lag_ctx(app: web.Application) -> AsyncIterator[None]:
    metrics = metrics_of(app)
    task = None if metrics is None else asyncio.create_task(metrics.sample_loop_lag(),
                                                            name="latch-loop-lag")
    try:
        yield
    finally:
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def setup(app: web.Application) -> Metrics:
    """Create this node's metrics and attach them. Call before the app is frozen."""
    services = app[SERVICES]
    existing = services.extras.get("metrics")
    if isinstance(existing, Metrics):
        return existing
    metrics = Metrics(services.settings.node_id)
    revocation = services.revocation
    metrics.watch_revocation(revocation, services.feed, lambda: len(revocation.revoked))
    previous = revocation.on_sockets_ended
    if previous is None:
        revocation.on_sockets_ended = metrics.session_ended
    else:
        def both(code: str, count: int, latency: float | None) -> None:
            previous(code, count, latency)
            metrics.session_ended(code, count, latency)
        revocation.on_sockets_ended = both
    revocation.on_feed_lag = metrics.feed_message
    gateway = services.extras.get("gateway")
    if gateway is not None:
        metrics.track_sockets(gateway.count)
        gateway.metrics = metrics  # handshakes, socket refreshes, expiries
    services.extras["metrics"] = metrics
    app.middlewares.append(observe_requests)
    app.on_response_prepare.append(_add_request_id)
    app.cleanup_ctx.append(_loop_lag_ctx)
    return metrics
