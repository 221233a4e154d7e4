"""Client → server events: one dispatcher, the rate limit, and the app-level events.

Every event a connected client sends arrives at :meth:`ClientEvents.dispatch`
(``handlers.socket_server.LatchServer`` routes them all there). It charges the
socket's token bucket, looks the event up in ``events``, and answers anything
that goes wrong — an unknown event, a payload of the wrong shape, a refused
token, a bug — with ``{ok: false, error: {code, message}}`` when the client
asked for an ack. Nothing here changes state unless the event succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from app.authn import Authenticator
from app.clock import Clock
from app.errors import BadRequest, LatchError, SessionMismatch, TokenInvalid, TokenMissing
from app.expiry import ExpiryScheduler
from app.ratelimit import EventLimit, Verdict
from handlers.socket_handshake import fingerprint_from
from handlers.socket_server import NO_ACK, LatchServer
from handlers.socket_state import (
    ENDING,
    INTERNAL,
    LIVE,
    NOT_READY,
    RATE_LIMITED,
    UNKNOWN_EVENT,
    SocketMetrics,
    SocketRecord,
    error_ack,
)

log = logging.getLogger("latch.sockets")

EventHandler = Callable[[SocketRecord, list[Any]], Awaitable[Any]]


class ClientEvents:
    """Mixin for :class:`handlers.sockets.SocketGateway`: what a connected client may ask."""

    _sio: LatchServer
    _auth: Authenticator
    _clock: Clock
    _limit: EventLimit
    _fgp_cookie: str
    _sockets: dict[str, SocketRecord]
    expiry: ExpiryScheduler[str]
    metrics: SocketMetrics | None
    events: dict[str, EventHandler]

    def _forget(self, sid: str) -> None:
        raise NotImplementedError

    def default_events(self) -> dict[str, EventHandler]:
        return {"refresh": self._refresh, "whoami": self._whoami, "echo": self._echo}

    async def dispatch(self, sid: str, namespace: str, data: list[Any]) -> Any:
        sock = self._sockets.get(sid)
        if sock is None or sock.state != LIVE:
            return NOT_READY
        verdict = self._limit.check(sock.bucket, self._clock.monotonic())
        if verdict is not Verdict.ALLOW:
            if verdict is Verdict.DROP:
                await self._drop_flooder(sock, sid)
                return NO_ACK
            return RATE_LIMITED
        event = data[0] if data else None
        handler = self.events.get(event) if type(event) is str else None
        if handler is None:
            return UNKNOWN_EVENT
        try:
            return await handler(sock, data[1:])
        except LatchError as exc:
            return error_ack(exc)
        except Exception:
            log.exception("socket event %r failed", event)
            return INTERNAL

    async def _drop_flooder(self, sock: SocketRecord, sid: str) -> None:
        # Not an auth reason, so no session_ended: the refused acks already said why.
        log.warning("disconnecting socket of user %s: persistent event flooding",
                    sock.info.identity.user_id)
        sock.state = ENDING
        sock.info.reason = "rate_limited"
        self.expiry.cancel(sid)
        await self._sio.disconnect(sid, namespace=sock.namespace, ignore_queue=True)
        self._forget(sid)
        self._sio.arm_connect_deadline(sock.eio_sid)

    # --- the events -----------------------------------------------------------------

    async def _refresh(self, sock: SocketRecord, args: list[Any]) -> dict[str, Any]:
        metrics = self.metrics
        if metrics is None:
            return await self._refresh_socket(sock, args)
        try:
            ack = await self._refresh_socket(sock, args)
        except LatchError as exc:
            metrics.refresh(exc.code)
            raise
        metrics.refresh("ok")
        return ack

    async def _refresh_socket(self, sock: SocketRecord, args: list[Any]) -> dict[str, Any]:
        """Re-authenticate with a newer token of the same user and session.

        A socket is never re-bound to another identity (``session_mismatch``); a
        token older than the one it holds is refused; on any refusal the socket
        keeps its current token and expiry. A role change in the new token applies.
        """
        payload = args[0] if args else None
        if not isinstance(payload, dict) or not isinstance(payload.get("token"), str):
            raise BadRequest("refresh expects {token: string}")
        current = sock.info.identity
        await self._auth.settled()
        if sock.state != LIVE:
            raise TokenInvalid("socket is no longer authenticated")
        try:
            new = self._auth.authenticate(
                payload["token"],
                fingerprint=fingerprint_from(self._sio.environ.get(sock.eio_sid),
                                             self._fgp_cookie))
        except TokenMissing:
            raise TokenInvalid("token is empty") from None
        if new.user_id != current.user_id or new.session_id != current.session_id:
            raise SessionMismatch()
        if new.token_exp < current.token_exp:
            raise TokenInvalid("token is older than the one this socket holds")
        sock.info.identity = new
        self.expiry.schedule(sock.info.socket_id, new.token_exp)
        return {"ok": True, "expires_at": new.token_exp}

    async def _whoami(self, sock: SocketRecord, args: list[Any]) -> dict[str, Any]:
        identity = sock.info.identity
        return {"ok": True, "user": identity.user(), "session_id": identity.session_id,
                "expires_at": identity.token_exp}

    async def _echo(self, sock: SocketRecord, args: list[Any]) -> Any:
        if not args:
            return None
        return args[0] if len(args) == 1 else tuple(args)
