"""The Socket.IO edge: handshake authentication, live refresh, expiry, and ending sockets.

:func:`attach_socketio` builds the server (see :mod:`handlers.socket_server` for
the transport rules) and a :class:`SocketGateway`, which joins it to the core:
the handshake goes through the same :class:`~app.authn.Authenticator` as REST;
``refresh`` re-authenticates on a live socket; one :class:`~app.expiry.ExpiryScheduler`
warns and ends every socket whose token runs out; and :meth:`SocketGateway.end_socket`
is the one way a socket is ended for an auth reason (expiry here, revocation
through the ``LocalSockets`` methods the revocation service calls).

Client events (``refresh``, ``whoami``, ``echo``, the rate limit) live in
:mod:`handlers.socket_events`; where credentials may come from, in
:mod:`handlers.socket_handshake`; the per-socket record, in :mod:`handlers.socket_state`.

Per-socket state is one small record in a dict on the gateway, keyed by the
Socket.IO sid — not ``sio.session()``: reads are a dict lookup with no await,
and the gateway can walk its own sockets for ``end_all``/``count``/presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Sequence
from typing import Any

import socketio
from aiohttp import web

from app.authn import Authenticator, fingerprint_cookie_name
from app.clock import Clock
from app.config import Settings
from app.errors import LatchError
from app.expiry import GC_PAUSE_AT, ExpiryScheduler, gc_paused
from app.ratelimit import EventLimit
from handlers.client import client_ip_from
from handlers.socket_events import ClientEvents
from handlers.socket_handshake import fingerprint_from, handshake_token
from handlers.socket_manager import with_room_index
from handlers.socket_server import LatchServer, origin_checker
from handlers.socket_state import (
    ENDING,
    ENDING_PENDING,
    INTERNAL,
    LIVE,
    PENDING,
    SESSION_END_MESSAGES,
    ConnectionHook,
    ConnectionInfo,
    SocketMetrics,
    SocketRecord,
    session_room,
    user_room,
)
from handlers.socket_transport import WebSocketTransport

__all__ = ["GATEWAY_KEY", "SIO_KEY", "ConnectionInfo", "SocketGateway", "attach_socketio",
           "session_room", "user_room"]

log = logging.getLogger("latch.sockets")

#: An Engine.IO session must join a namespace this many seconds after opening.
CONNECT_TIMEOUT = 10.0
NAMESPACES: tuple[str, ...] = ("/",)
_USER_AGENT_MAX = 512


class SocketGateway(ClientEvents):
    """This node's authenticated sockets. Implements ``app.revocation.LocalSockets``.

    Hooks in ``on_connect``/``on_disconnect`` are plain callables run inline on
    the event loop: they must not block; one that needs I/O queues it.
    """

    def __init__(self, sio: LatchServer, *, settings: Settings, authenticator: Authenticator,
                 clock: Clock, namespaces: Sequence[str] = NAMESPACES) -> None:
        self._sio = sio
        self._settings = settings
        self._auth = authenticator
        self._clock = clock
        self._namespaces = tuple(namespaces)
        self._fgp_cookie = fingerprint_cookie_name(settings)
        self._limit = EventLimit(settings.socket_events_per_second, settings.socket_event_burst)
        self._sockets: dict[str, SocketRecord] = {}
        self._deferred_end: dict[str, tuple[str, str]] = {}
        self._ended_packets: dict[tuple[str, str, str], str | list[Any]] = {}
        self._notice_packet: tuple[int, str, str | list[Any]] | None = None
        self.expiry: ExpiryScheduler[str] = ExpiryScheduler(
            clock, notice=settings.refresh_notice, on_notice=self._token_expiring,
            on_expire=self._token_expired)
        self.events = self.default_events()
        self.on_connect: list[ConnectionHook] = []
        self.on_disconnect: list[ConnectionHook] = []
        self.metrics: SocketMetrics | None = None

    # --- wiring -----------------------------------------------------------------

    def register(self) -> None:
        sio = self._sio
        for namespace in self._namespaces:
            sio.on("connect", functools.partial(self._connect, namespace), namespace=namespace)
            sio.on("disconnect", self._disconnected, namespace=namespace)
        sio.dispatch = self.dispatch
        sio.after_connect = self._after_connect

    async def lifespan(self, app: web.Application) -> AsyncIterator[None]:
        """``cleanup_ctx``: the expiry driver runs while the app does."""
        task = asyncio.create_task(self.expiry.run(), name="latch-socket-expiry")
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            await self._sio.shutdown()

    async def close_transports(self, app: web.Application) -> None:
        """``on_shutdown``: close every Engine.IO session so aiohttp need not wait for them.

        A plain transport close (no ``session_ended``, no namespace disconnect): the
        session is still valid, so clients reconnect on their own — to another node.
        """
        for socket in list(self._sio.eio.sockets.values()):
            try:
                await socket.close(wait=False)
            except Exception:
                log.debug("closing a transport at shutdown failed", exc_info=True)

    # --- what others read -------------------------------------------------------------

    def count(self) -> int:
        return len(self._sockets)

    def get(self, sid: str) -> ConnectionInfo | None:
        sock = self._sockets.get(sid)
        return sock.info if sock is not None else None

    def connections(self) -> Iterator[ConnectionInfo]:
        """Live (fully connected) sockets, for a presence snapshot."""
        return (s.info for s in list(self._sockets.values()) if s.state == LIVE)

    # --- ending sockets: the one path ----------------------------------------------

    async def end_socket(self, sid: str, code: str, message: str | None = None) -> bool:
        """Tell the socket why (``session_ended``), then disconnect it. False if not ours/live.

        Local only (the packets go to this node's Engine.IO socket), so it works
        while Redis is down; every node ends its own sockets. The client sees
        ``io server disconnect`` and does not reconnect by itself.
        """
        sock = self._sockets.get(sid)
        if sock is None or sock.state >= ENDING:
            return False
        message = message or SESSION_END_MESSAGES.get(code, "Session ended")
        sock.info.reason = code
        if sock.state == PENDING:  # its CONNECT ack is not out yet: finish in _after_connect
            sock.state = ENDING_PENDING
            self._deferred_end[sid] = (code, message)
            return True
        sock.state = ENDING
        await self._finish_end(sock, sid, code, message)
        return True

    async def _finish_end(self, sock: SocketRecord, sid: str, code: str, message: str) -> None:
        self.expiry.cancel(sid)
        sio = self._sio
        try:
            await sio.send_encoded(sid, self._ended_packet(code, message, sock.namespace),
                                   sock.namespace)
        finally:
            await sio.disconnect(sid, namespace=sock.namespace, ignore_queue=True)
            self._forget(sid)  # normally done by the disconnect handler already
            sio.arm_connect_deadline(sock.eio_sid)

    def _ended_packet(self, code: str, message: str, namespace: str) -> str | list[Any]:
        # Mass endings (expiry of thousands, a revoke-all) send the same bytes to everyone.
        key = (code, message, namespace)
        encoded = self._ended_packets.get(key)
        if encoded is None:
            if len(self._ended_packets) >= 64:
                self._ended_packets.clear()
            encoded = self._ended_packets[key] = self._sio.encode_event(
                "session_ended", {"code": code, "message": message}, namespace)
        return encoded

    async def _end_each(self, sids: Collection[str], code: str,
                        skip: Callable[[SocketRecord], bool] | None = None) -> int:
        ended = 0
        with gc_paused(len(sids) >= GC_PAUSE_AT):
            for sid in sids:
                sock = self._sockets.get(sid)
                if sock is None or (skip is not None and skip(sock)):
                    continue
                try:
                    ended += await self.end_socket(sid, code)
                except Exception:
                    log.exception("ending socket failed (code=%s)", code)
        return ended

    def _room_members(self, room: str) -> list[str]:
        manager = self._sio.manager
        return [sid for ns in self._namespaces for sid, _ in manager.get_participants(ns, room)]

    async def end_sessions(self, session_ids: Collection[str], code: str) -> int:
        sids = [sid for session_id in session_ids
                for sid in self._room_members(session_room(session_id))]
        return await self._end_each(sids, code)

    async def end_user(self, user_id: str, code: str, *, except_session: str | None = None) -> int:
        skip = None
        if except_session is not None:
            def skip(sock: SocketRecord) -> bool:
                return sock.info.identity.session_id == except_session
        return await self._end_each(self._room_members(user_room(user_id)), code, skip)

    async def end_all(self, code: str) -> int:
        return await self._end_each(list(self._sockets), code)

    # --- handshake ------------------------------------------------------------------

    async def _connect(self, namespace: str, sid: str, environ: dict[str, Any],
                       auth: Any = None) -> bool:
        metrics = self.metrics
        try:
            token = handshake_token(environ, auth)
            fingerprint = fingerprint_from(environ, self._fgp_cookie)
            await self._auth.settled()
            identity = self._auth.authenticate(token, fingerprint=fingerprint)
        except LatchError as exc:
            if metrics is not None:
                metrics.handshake(exc.code)
            raise socketio.exceptions.ConnectionRefusedError(exc.code, exc.as_dict()) from None
        except Exception:
            log.exception("socket handshake failed")
            if metrics is not None:
                metrics.handshake("internal_error")
            raise socketio.exceptions.ConnectionRefusedError(
                "internal_error", INTERNAL["error"]) from None
        if metrics is not None:
            metrics.handshake("ok")
        # From here on nothing awaits: a revocation cannot slip between the check and
        # the socket joining its session room, where end_sessions() will find it.
        sio = self._sio
        eio_sid = sio.manager.eio_sid_from_sid(sid, namespace)
        request = environ["aiohttp.request"]
        user_agent = request.headers.get("User-Agent")
        info = ConnectionInfo(
            socket_id=sid, identity=identity, connected_at=self._clock.now(),
            transport=sio.transport_of(eio_sid),
            ip=client_ip_from(request.remote, request.headers.get("X-Forwarded-For"),
                              self._settings),
            user_agent=user_agent[:_USER_AGENT_MAX] if user_agent else None)
        self._sockets[sid] = SocketRecord(info, eio_sid, namespace,
                                     self._limit.new_bucket(self._clock.monotonic()))
        sio.manager.basic_enter_room(sid, namespace, session_room(identity.session_id))
        sio.manager.basic_enter_room(sid, namespace, user_room(identity.user_id))
        return True

    async def _after_connect(self, eio_sid: str, namespace: str) -> None:
        manager = self._sio.manager
        sid = manager.sid_from_eio_sid(eio_sid, namespace)
        sock = self._sockets.get(sid) if sid is not None else None
        if sock is None or sock.state not in (PENDING, ENDING_PENDING):
            return
        if not manager.is_connected(sid, namespace):  # the CONNECT never went out
            self._forget(sid)
            return
        deferred = self._deferred_end.pop(sid, None)
        if deferred is not None:  # ended while connecting: never announced, so no hooks
            await self._finish_end(sock, sid, *deferred)
            return
        sock.state = LIVE
        identity = sock.info.identity
        self.expiry.schedule(sid, identity.token_exp)
        await self._sio.emit_local(sid, "session", {
            "user": identity.user(), "session_id": identity.session_id,
            "expires_at": identity.token_exp}, namespace)
        self._run_hooks(self.on_connect, sock.info)

    async def _disconnected(self, sid: str, reason: str | None = None) -> None:
        sock = self._sockets.get(sid)
        if sock is not None and sock.info.reason is None:
            sock.info.reason = reason or "disconnected"
        self._forget(sid)

    def _forget(self, sid: str) -> None:
        sock = self._sockets.pop(sid, None)
        if sock is None:
            return
        self.expiry.cancel(sid)
        self._deferred_end.pop(sid, None)
        if sock.state in (LIVE, ENDING):
            self._run_hooks(self.on_disconnect, sock.info)

    def _run_hooks(self, hooks: list[ConnectionHook], info: ConnectionInfo) -> None:
        for hook in hooks:
            try:
                hook(info)
            except Exception:
                log.exception("socket hook %r failed", hook)

    def on_upgrade(self, eio_sid: str) -> None:
        manager = self._sio.manager
        for namespace in self._namespaces:
            sid = manager.sid_from_eio_sid(eio_sid, namespace)
            sock = self._sockets.get(sid) if sid is not None else None
            if sock is not None:
                sock.info.transport = "websocket"

    # --- expiry -------------------------------------------------------------------------

    async def _token_expiring(self, sid: str, exp: int) -> None:
        sock = self._sockets.get(sid)
        if sock is None or sock.state != LIVE or sock.info.identity.token_exp != exp:
            return
        cached = self._notice_packet  # sockets due together share exp: encode once
        if cached is None or cached[0] != exp or cached[1] != sock.namespace:
            cached = self._notice_packet = (exp, sock.namespace, self._sio.encode_event(
                "token_expiring", {"expires_at": exp}, sock.namespace))
        await self._sio.send_encoded(sid, cached[2], sock.namespace)

    async def _token_expired(self, sid: str, exp: int) -> None:
        sock = self._sockets.get(sid)
        if sock is not None and sock.info.identity.token_exp <= exp:
            if await self.end_socket(sid, "token_expired") and self.metrics is not None:
                self.metrics.session_ended("token_expired")


SIO_KEY: web.AppKey[LatchServer] = web.AppKey("latch_sio", LatchServer)
GATEWAY_KEY: web.AppKey[SocketGateway] = web.AppKey("latch_socket_gateway", SocketGateway)


def attach_socketio(app: web.Application, *, settings: Settings, authenticator: Authenticator,
                    clock: Clock, client_manager: socketio.AsyncManager | None,
                    namespaces: Sequence[str] | None = None) -> SocketGateway:
    """Build the Socket.IO server for ``app``; return the gateway the revocation path uses.

    ``namespaces`` (default :data:`NAMESPACES`) are the only ones a client can join;
    each authenticates exactly like ``/``. Any other namespace is refused.
    """
    namespaces = tuple(namespaces or NAMESPACES)
    quiet = logging.getLogger("latch.socketio")
    # Their INFO lines print packet payloads — tokens included. Never below WARNING.
    quiet.setLevel(logging.WARNING)
    sio = LatchServer(
        connect_timeout=CONNECT_TIMEOUT,
        async_mode="aiohttp",
        client_manager=with_room_index(client_manager),
        logger=quiet,
        engineio_logger=quiet,
        namespaces=list(namespaces),
        cors_allowed_origins=origin_checker(settings),
        cors_credentials=True,
        max_http_buffer_size=settings.max_socket_payload,
        http_compression=settings.socket_compression,
    )
    gateway = SocketGateway(sio, settings=settings, authenticator=authenticator, clock=clock,
                            namespaces=namespaces)
    sio.eio._async = {**sio.eio._async, "websocket": functools.partial(
        WebSocketTransport, compress=settings.socket_compression,
        on_upgrade=gateway.on_upgrade)}
    gateway.register()
    sio.attach(app)
    app[SIO_KEY] = sio
    app[GATEWAY_KEY] = gateway
    app.cleanup_ctx.append(gateway.lifespan)
    app.on_shutdown.append(gateway.close_transports)
    return gateway
