"""What the Socket.IO edge keeps per socket, and the fixed shapes it answers with.

One :class:`SocketRecord` per authenticated socket (slots only: at 5,000+ sockets a
``__dict__`` each adds up), holding the :class:`ConnectionInfo` that presence
shares, the socket's token bucket and where it is in its life.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from app.authn import Identity
from app.errors import LatchError
from app.ratelimit import TokenBucket

SESSION_END_MESSAGES = {
    "token_expired": "Access token expired; reconnect with a fresh token",
    "session_revoked": "Session has been revoked",
    "logged_out": "Signed out",
    "user_disabled": "User is disabled",
    "refresh_reused": "Refresh token reuse detected; the session has been revoked",
    "role_changed": "Your role changed; sign in again",
    "password_changed": "Password changed; sign in again",
}

# Acks shared by every socket (serialised per send, never mutated).
RATE_LIMITED = {"ok": False, "error": {"code": "rate_limited",
                                       "message": "Too many events; slow down"}}
UNKNOWN_EVENT = {"ok": False, "error": {"code": "unknown_event", "message": "Unknown event"}}
NOT_READY = {"ok": False, "error": {"code": "unauthorized",
                                    "message": "Socket is not authenticated"}}
INTERNAL = {"ok": False, "error": {"code": "internal_error", "message": "Internal error"}}


def error_ack(exc: LatchError) -> dict[str, Any]:
    return {"ok": False, "error": exc.as_dict()}


def session_room(session_id: str) -> str:
    return f"session:{session_id}"


def user_room(user_id: str) -> str:
    return f"user:{user_id}"


@dataclass(slots=True, eq=False)
class ConnectionInfo:
    """What the presence registry sees of a live socket. ``identity`` follows refreshes,
    ``transport`` follows a polling → websocket upgrade, and ``reason`` says why it
    went (a ``session_ended`` code, ``rate_limited``, or Socket.IO's disconnect reason)."""

    socket_id: str
    identity: Identity
    connected_at: float
    transport: str
    ip: str | None
    user_agent: str | None
    reason: str | None = None


ConnectionHook = Callable[[ConnectionInfo], None]


class SocketMetrics(Protocol):
    """What the gateway reports (``app.metrics.Metrics`` fits; set ``gateway.metrics``)."""

    def handshake(self, result: str) -> None: ...

    def refresh(self, result: str, channel: str = "socket") -> None: ...

    def session_ended(self, code: str, count: int = 1, latency: float | None = None) -> None: ...


# Where a record is in its life. Hooks see only sockets that reached LIVE.
PENDING = 0  # authenticated; the namespace CONNECT ack is not out yet
LIVE = 1
ENDING = 2  # being ended (session_ended sent or flooding); events are refused
ENDING_PENDING = 3  # ended before its CONNECT ack went out: finished right after it


class SocketRecord:
    __slots__ = ("bucket", "eio_sid", "info", "namespace", "state")

    def __init__(self, info: ConnectionInfo, eio_sid: str, namespace: str,
                 bucket: TokenBucket) -> None:
        self.info = info
        self.eio_sid = eio_sid
        self.namespace = namespace
        self.bucket = bucket
        self.state = PENDING
