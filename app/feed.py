"""The revocation feed: its messages and its interface (pure; no Redis here).

Two implementations exist, chosen explicitly by configuration: ``InProcessFeed``
below for the single-node default and ``app.redis_feed.RedisFeed``. The feed is
only the announcement; the durable record is the ``revocations`` table, and a
node that missed messages catches up from it (``app.revocation``).

Messages are small JSON objects with a type tag, validated on receipt: anything
malformed, oversized or unknown parses to ``None`` and is dropped by the caller.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

log = logging.getLogger("latch.feed")

MAX_MESSAGE_BYTES = 1_000_000
MAX_SESSION_IDS = 2000
SCOPES = ("session", "user", "all")
VERSION = 1


@dataclass(frozen=True, slots=True)
class RevokeMessage:
    """Sessions were revoked durably up to ``position``; end their sockets."""

    op: str
    origin: str
    scope: str  # session | user | all
    code: str
    position: int
    at: float
    target: str | None = None  # session id or user id
    except_session: str | None = None
    # The ids revoked by this op, unless there were more than MAX_SESSION_IDS
    # (then ``complete`` is False and receivers fetch them from the store).
    session_ids: tuple[str, ...] = ()
    complete: bool = True
    type: str = "revoke"


@dataclass(frozen=True, slots=True)
class AckMessage:
    """A node processed revocation ``op`` and ended ``ended`` local sockets."""

    op: str
    node: str
    ended: int
    type: str = "ack"


@dataclass(frozen=True, slots=True)
class SyncMessage:
    """The durable log has entries up to ``position`` (sent after a node reconnects)."""

    origin: str
    position: int
    type: str = "sync"


@dataclass(frozen=True, slots=True)
class EventMessage:
    """A cluster-wide event for admin streams (connect, disconnect, user_changed…)."""

    origin: str
    name: str
    data: dict[str, Any]
    type: str = "event"


FeedMessage = RevokeMessage | AckMessage | SyncMessage | EventMessage

EVENT_NAMES = ("connect", "disconnect", "session_revoked", "user_changed")


def encode(message: FeedMessage) -> str:
    body = asdict(message)
    body["v"] = VERSION
    return json.dumps(body, separators=(",", ":"))


def _str(value: Any, limit: int = 200) -> str:
    if not isinstance(value, str) or not value or len(value) > limit:
        raise ValueError("bad string")
    return value


def _opt_str(value: Any) -> str | None:
    return None if value is None else _str(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError("bad int")
    return value


def decode(raw: bytes | str) -> FeedMessage | None:
    """Parse and validate one message; ``None`` for anything we don't understand."""
    if len(raw) > MAX_MESSAGE_BYTES:
        return None
    try:
        body = json.loads(raw)
        if not isinstance(body, dict) or body.get("v") != VERSION:
            return None
        kind = body.get("type")
        if kind == "revoke":
            scope = body.get("scope")
            if scope not in SCOPES:
                return None
            ids = body.get("session_ids", [])
            if not isinstance(ids, list) or len(ids) > MAX_SESSION_IDS:
                return None
            at = body.get("at")
            if not isinstance(at, int | float) or isinstance(at, bool):
                return None
            complete = body.get("complete", True)
            if not isinstance(complete, bool):
                return None
            return RevokeMessage(
                op=_str(body.get("op")), origin=_str(body.get("origin")), scope=scope,
                code=_str(body.get("code"), 40), position=_int(body.get("position")),
                at=float(at), target=_opt_str(body.get("target")),
                except_session=_opt_str(body.get("except_session")),
                session_ids=tuple(_str(i) for i in ids), complete=complete,
            )
        if kind == "ack":
            return AckMessage(op=_str(body.get("op")), node=_str(body.get("node")),
                              ended=_int(body.get("ended")))
        if kind == "sync":
            return SyncMessage(origin=_str(body.get("origin")), position=_int(body.get("position")))
        if kind == "event":
            data = body.get("data")
            name = body.get("name")
            if name not in EVENT_NAMES or not isinstance(data, dict):
                return None
            return EventMessage(origin=_str(body.get("origin")), name=name, data=data)
    except (ValueError, TypeError, RecursionError):
        return None
    return None


class FeedHandler(Protocol):
    async def on_message(self, message: FeedMessage) -> None: ...

    async def on_resync(self) -> None:
        """Called after (re)subscribing: messages may have been missed meanwhile."""
        ...


class Feed(Protocol):
    """What the revocation path needs from a transport."""

    async def start(self, handler: FeedHandler) -> None: ...

    async def publish(self, message: FeedMessage) -> bool:
        """Send to every node (this one included). False if it could not be sent."""
        ...

    def is_healthy(self) -> bool:
        """True while subscribed: live messages are arriving."""
        ...

    async def live_nodes(self) -> list[str]:
        """Ids of the nodes currently alive (by heartbeat), this one included."""
        ...

    async def stop(self) -> None: ...


class InProcessFeed:
    """The single-node feed: a message published here is delivered here, in order."""

    polls_store = True  # other local processes (the CLI) only reach us through the store

    def __init__(self, node_id: str) -> None:
        self.node_id = node_id
        self._handler: FeedHandler | None = None
        self._queue: asyncio.Queue[FeedMessage] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def start(self, handler: FeedHandler) -> None:
        self._handler = handler
        self._task = asyncio.create_task(self._deliver(), name="latch-inprocess-feed")

    async def _deliver(self) -> None:
        while True:
            message = await self._queue.get()
            if self._handler is None:
                continue
            try:
                await self._handler.on_message(message)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("feed handler failed")

    async def publish(self, message: FeedMessage) -> bool:
        self._queue.put_nowait(message)
        return True

    def is_healthy(self) -> bool:
        return True

    async def live_nodes(self) -> list[str]:
        return [self.node_id]

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None


Publisher = Callable[[FeedMessage], Awaitable[bool]]
