"""The admin event hub: fans cluster-wide events out to this node's admin streams.

Every node receives every :class:`~app.feed.EventMessage` from the feed and hands
it to :meth:`EventHub.deliver`, which puts it on each subscriber's queue without
ever waiting. Queues are bounded: a subscriber that falls ``max_pending`` events
behind loses them all and gets one ``resync`` instead (reload the list: nothing
after it is missed), and while that ``resync`` is still unread it gets nothing
more — so a burst of thousands of connects costs a slow dashboard one reload,
never the node its memory. A subscriber that has not read anything for
``stall_timeout`` seconds while events pile up is dropped (its stream closes).

Presence batches ``connect``/``disconnect`` events (``data = {"batch": [...]}``);
the hub unpacks them, so subscribers always see one event per socket.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from app.clock import Clock, SystemClock
from app.feed import EventMessage

log = logging.getLogger("latch.events")

MAX_PENDING = 200
STALL_TIMEOUT = 30.0
BATCHED = ("connect", "disconnect")
RESYNC = "resync"


@dataclass(frozen=True, slots=True)
class Event:
    name: str
    data: dict[str, Any]


class Subscription:
    """One admin stream's queue: ``wait()``, then ``drain()``."""

    def __init__(self, hub: EventHub, max_pending: int, stall_timeout: float,
                 clock: Clock) -> None:
        self._hub = hub
        self._clock = clock
        self._queue: deque[Event] = deque()
        self._ready = asyncio.Event()
        self._max = max_pending
        self._stall = stall_timeout
        self._resync_pending = False
        self._last_read = self._clock.monotonic()
        self.closed = False
        self.dropped = 0
        self.resyncs = 0

    def put(self, event: Event) -> None:
        if self.closed:
            return
        if self._resync_pending:
            self.dropped += 1
            if self._clock.monotonic() - self._last_read > self._stall:
                log.warning("dropping an admin event stream that stopped reading")
                self.close()
            return
        if len(self._queue) >= self._max:
            self.dropped += len(self._queue) + 1
            self.resync("overflow")
            return
        self._queue.append(event)
        self._ready.set()

    def resync(self, reason: str, nodes: Sequence[str] = ()) -> None:
        """Replace whatever is queued with one ``resync``: the reader must reload its lists."""
        if self.closed:
            return
        self._queue.clear()
        self._queue.append(Event(RESYNC, {"reason": reason, "nodes": list(nodes)}))
        self._resync_pending = True
        self.resyncs += 1
        self._ready.set()

    def close(self) -> None:
        self.closed = True
        self._queue.clear()
        self._ready.set()

    def drain(self, limit: int) -> list[Event]:
        """Up to ``limit`` queued events, without waiting."""
        out: list[Event] = []
        while self._queue and len(out) < limit:
            event = self._queue.popleft()
            if event.name == RESYNC:
                self._resync_pending = False
            out.append(event)
        if not self._queue:
            self._ready.clear()
        self._last_read = self._clock.monotonic()
        return out

    async def wait(self) -> None:
        """Until something is queued or the stream must close (bound it with asyncio.timeout)."""
        if not self._queue and not self.closed:
            await self._ready.wait()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    def __init__(self, *, max_pending: int = MAX_PENDING, stall_timeout: float = STALL_TIMEOUT,
                 clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        self._subs: set[Subscription] = set()
        self._max = max_pending
        self._stall = stall_timeout
        self.closed = False

    def subscribe(self) -> Subscription:
        sub = Subscription(self, self._max, self._stall, self._clock)
        if self.closed:
            sub.close()
        else:
            self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        self._subs.discard(sub)

    def __len__(self) -> int:
        return len(self._subs)

    def publish(self, name: str, data: dict[str, Any]) -> None:
        event = Event(name, data)
        for sub in list(self._subs):
            sub.put(event)
            if sub.closed:
                self._subs.discard(sub)

    def deliver(self, message: EventMessage) -> None:
        """One feed message → one event per item (presence batches several sockets)."""
        if not self._subs:
            return
        batch = message.data.get("batch") if message.name in BATCHED else None
        if isinstance(batch, list):
            for item in batch:
                if isinstance(item, dict):
                    self.publish(message.name, item)
        else:
            self.publish(message.name, message.data)

    async def on_event(self, message: EventMessage) -> None:
        """The ``RevocationService.on_event`` hook."""
        self.deliver(message)

    def resync(self, reason: str, nodes: Sequence[str] = ()) -> None:
        for sub in self._subs:
            sub.resync(reason, nodes)

    def close(self) -> None:
        """App shutdown: every stream ends now (so the server does not wait on them)."""
        self.closed = True
        for sub in self._subs:
            sub.close()
        self._subs.clear()
