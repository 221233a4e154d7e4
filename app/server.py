"""The app factory: the one module that wires the core to the edge.

``create_app`` builds every service for one node and stores them on the app
(``app[SERVICES]``), so each test gets fresh state. Resources that need the
event loop (database, Redis, feed listener, background loops) start and stop
in ``cleanup_ctx``: their cleanup runs only after their start-up succeeded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import sys
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from app.accounts import AccountService
from app.audit import Actor, AuditLog
from app.authn import Authenticator
from app.clock import Clock, SystemClock
from app.config import Settings
from app.db import Database
from app.errors import Conflict
from app.feed import Feed, InProcessFeed
from app.keys import Keyring
from app.passwords import PasswordHasher
from app.revocation import RevocationService
from app.services import SERVICES, Services
from app.sessions import SessionService
from app.throttle import LoginThrottle, MemoryThrottle
from app.tokens import TokenService
from app.users import UserStore

log = logging.getLogger("latch.server")


def build_services(settings: Settings, clock: Clock | None = None) -> Services:
    """Every core service of one node (no event loop needed yet)."""
    clock = clock or SystemClock()
    db = Database(settings.db_path)
    keyring = Keyring.load_or_create(settings.keys_dir, settings.jwt_alg,
                                     secret=settings.jwt_secret, access_ttl=settings.access_ttl,
                                     clock=clock)
    tokens = TokenService(keyring, issuer=settings.issuer, audience=settings.audience,
                          access_ttl=settings.access_ttl, clock=clock)
    audit = AuditLog(db, clock)
    users = UserStore(db, PasswordHasher(), audit, clock)
    redis: Any = None
    feed: Feed
    throttle: LoginThrottle
    if settings.redis_url is not None:
        from redis.asyncio import Redis

        from app.redis_feed import RedisFeed
        from app.redis_throttle import RedisThrottle

        redis = Redis.from_url(settings.redis_url.reveal(), socket_connect_timeout=1.0,
                               health_check_interval=5)
        feed = RedisFeed(redis, node_id=settings.node_id, clock=clock,
                         heartbeat_ttl=settings.presence_ttl)
        throttle = RedisThrottle(redis, clock, max_failures=settings.login_max_failures,
                                 window=settings.login_window)
    else:
        feed = InProcessFeed(settings.node_id)
        throttle = MemoryThrottle(clock, max_failures=settings.login_max_failures,
                                  window=settings.login_window)
    revocation = RevocationService(
        db, feed, audit, clock, node_id=settings.node_id, access_ttl=settings.access_ttl,
        staleness=settings.revocation_staleness, poll_store=getattr(feed, "polls_store", False))
    sessions = SessionService(db, users, tokens, revocation, audit, throttle, clock, settings)
    return Services(
        settings=settings, clock=clock, db=db, keyring=keyring, tokens=tokens, audit=audit,
        users=users, feed=feed, revocation=revocation, throttle=throttle, sessions=sessions,
        accounts=AccountService(users, revocation), authenticator=Authenticator(tokens, revocation),
        redis=redis)


async def ensure_first_admin(services: Services) -> None:
    """On first start with no users, create ``admin`` (password from env, or printed once)."""
    if await services.users.count() > 0:
        return
    password = services.settings.admin_password
    generated = password is None
    value = secrets.token_urlsafe(18) if password is None else password.reveal()
    try:
        await services.users.create("admin", value, "admin", actor=Actor.system("first-start"))
    except Conflict:
        return  # another process sharing the database won the race
    if generated:
        # Printed once, to the terminal only; never logged.
        print(f"latch: created user 'admin' with password: {value}", file=sys.stderr, flush=True)


def create_app(settings: Settings, *, clock: Clock | None = None) -> web.Application:
    from handlers import admin, auth, dashboard, demo, meta, observability, openapi
    from handlers.http_errors import error_middleware
    from handlers.sockets import attach_socketio

    services = build_services(settings, clock)
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes)
    app[SERVICES] = services
    for module in (auth, admin, meta, openapi, observability, dashboard, demo):
        app.router.add_routes(module.routes)

    client_manager = None
    if settings.redis_url is not None:
        import socketio

        # Socket.IO's own cross-node emits (to a user's or session's room on any node).
        client_manager = socketio.AsyncRedisManager(settings.redis_url.reveal(),
                                                    channel="latch:socketio")
    gateway = attach_socketio(app, settings=settings, authenticator=services.authenticator,
                              clock=services.clock, client_manager=client_manager)
    services.revocation.local = gateway
    services.extras["gateway"] = gateway
    app.cleanup_ctx.insert(0, _core_ctx)  # the store and feed start first, stop last
    admin.setup(app)
    observability.setup(app)
    return app


async def _core_ctx(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    await services.db.open()
    try:
        await ensure_first_admin(services)
        await services.revocation.load()
        await services.feed.start(services.revocation)
        sync_task = asyncio.create_task(services.revocation.run_sync_loop(),
                                        name="latch-revocation-sync")
        try:
            yield
        finally:
            sync_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sync_task
            await services.feed.stop()
    finally:
        if services.redis is not None:
            with contextlib.suppress(Exception):
                await services.redis.aclose()
        await services.db.close()
