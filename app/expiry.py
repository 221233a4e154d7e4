"""One scheduler for every socket's token expiry and refresh notice (pure asyncio).

Access tokens expire on whole epoch seconds (JWT ``exp``), so the scheduler is a
timer wheel keyed by second: ``schedule(key, exp)`` puts the key in the bucket
of ``exp`` (and of ``exp - notice``), ``cancel`` takes it out again in O(1), and
one driver task (:meth:`ExpiryScheduler.run`) sleeps until the earliest
non-empty second, then fires everything due. Thousands of sockets expiring in
the same second cost one wake-up and one loop over a set — no task, timer
handle or heap entry per socket, and nothing left behind by a refresh.

Times are wall-clock (``clock.now()``) because ``exp`` is. The driver never
sleeps longer than ``max_sleep`` so a stepped system clock is noticed quickly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import logging
import math
from collections.abc import Awaitable, Callable, Hashable, Iterator
from typing import Generic, TypeVar

from app.clock import Clock

log = logging.getLogger("latch.expiry")

K = TypeVar("K", bound=Hashable)

#: Callbacks receive the key and the ``exp`` it was scheduled with.
Callback = Callable[[K, int], Awaitable[None]]

_NO_NOTICE = -1


class ExpiryScheduler(Generic[K]):
    """Fire ``on_notice(key, exp)`` ``notice`` seconds before ``exp`` and ``on_expire(key, exp)`` at it.

    A notice whose time has already passed when the key is scheduled fires at
    once (the token is already inside its refresh window). Re-scheduling a key
    with the same ``exp`` is a no-op, so a notice is never sent twice for one
    token; a new ``exp`` replaces both timers.
    """

    def __init__(self, clock: Clock, *, notice: float, on_notice: Callback[K],
                 on_expire: Callback[K], max_sleep: float = 1.0, yield_every: int = 500) -> None:
        self._clock = clock
        self._notice = notice
        self._on_notice = on_notice
        self._on_expire = on_expire
        self._max_sleep = max_sleep
        self._yield_every = max(1, yield_every)
        # key -> (expiry second, notice second or _NO_NOTICE)
        self._entries: dict[K, tuple[int, int]] = {}
        self._expiries: dict[int, set[K]] = {}
        self._notices: dict[int, set[K]] = {}
        self._seconds: list[int] = []  # heap of bucket seconds; may hold stale ones
        self._wake = asyncio.Event()
        self._sleep_until = math.inf  # when the driver will look next (-inf: it is busy)

    # --- bookkeeping ------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def scheduled(self, key: K) -> int | None:
        """The ``exp`` a key is scheduled for, or None."""
        entry = self._entries.get(key)
        return entry[0] if entry is not None else None

    def schedule(self, key: K, exp: int) -> None:
        exp = math.ceil(exp)
        old = self._entries.get(key)
        if old is not None:
            if old[0] == exp:
                return
            self._unlink(key, old)
        now = self._clock.now()
        notice_at = _NO_NOTICE
        if self._notice > 0 and exp > now:
            wanted = math.ceil(exp - self._notice)
            notice_at = wanted if wanted > now else math.floor(now)
        self._entries[key] = (exp, notice_at)
        self._link(self._expiries, exp, key)
        if notice_at != _NO_NOTICE:
            self._link(self._notices, notice_at, key)
        first = notice_at if notice_at != _NO_NOTICE else exp
        if first < self._sleep_until:
            self._wake.set()

    def cancel(self, key: K) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self._unlink(key, old)

    def _link(self, buckets: dict[int, set[K]], second: int, key: K) -> None:
        bucket = buckets.get(second)
        if bucket is None:
            buckets[second] = {key}
            heapq.heappush(self._seconds, second)
        else:
            bucket.add(key)

    def _unlink(self, key: K, entry: tuple[int, int]) -> None:
        exp, notice_at = entry
        _discard(self._expiries, exp, key)
        if notice_at != _NO_NOTICE:
            _discard(self._notices, notice_at, key)

    def next_due(self) -> int | None:
        """The earliest second with something to fire (drops stale heap entries)."""
        seconds = self._seconds
        while seconds:
            first = seconds[0]
            if first in self._expiries or first in self._notices:
                return first
            heapq.heappop(seconds)
        return None

    def pop_due(self, now: float) -> tuple[list[tuple[K, int]], list[tuple[K, int]]]:
        """Remove and return what is due at ``now``: ``(notices, expiries)``, oldest first.

        A notice whose token is itself already due is dropped: the socket is
        about to be ended, telling it to refresh would only race the end.
        """
        notices: list[tuple[K, int]] = []
        expiries: list[tuple[K, int]] = []
        entries = self._entries
        seconds = self._seconds
        while seconds and seconds[0] <= now:
            second = heapq.heappop(seconds)
            for key in self._notices.pop(second, ()):
                entry = entries.get(key)
                if entry is None or entry[1] != second:
                    continue
                entries[key] = (entry[0], _NO_NOTICE)
                if entry[0] > now:
                    notices.append((key, entry[0]))
            for key in self._expiries.pop(second, ()):
                entry = entries.get(key)
                if entry is None or entry[0] != second:
                    continue
                del entries[key]
                expiries.append((key, second))
        return notices, expiries

    # --- the driver -------------------------------------------------------------

    def wake(self) -> None:
        """Make the driver look at the clock now (tests that move a fake clock use this)."""
        self._wake.set()

    async def run(self) -> None:
        """Fire due callbacks until cancelled. Run exactly one of these per scheduler."""
        while True:
            self._sleep_until = -math.inf
            self._wake.clear()
            notices, expiries = self.pop_due(self._clock.now())
            if notices or expiries:
                await self._fire(self._on_notice, notices)
                await self._fire(self._on_expire, expiries)
                continue  # more may have become due meanwhile
            first = self.next_due()
            if first is None:
                self._sleep_until = math.inf
                delay = None
            else:
                delay = min(max(0.0, first - self._clock.now()), self._max_sleep)
                self._sleep_until = first
            try:
                async with asyncio.timeout(delay):
                    await self._wake.wait()
            except TimeoutError:
                pass

    async def _fire(self, callback: Callback[K], items: list[tuple[K, int]]) -> None:
        every = self._yield_every
        with gc_paused(len(items) >= GC_PAUSE_AT):
            for i, (key, exp) in enumerate(items, 1):
                try:
                    await callback(key, exp)
                except Exception:
                    log.exception("expiry callback failed")
                if i % every == 0:
                    await asyncio.sleep(0)  # let the sockets we just ended flush


#: Batches at least this big run with the cyclic GC paused (see :func:`gc_paused`).
GC_PAUSE_AT = 256


@contextlib.contextmanager
def gc_paused(pause: bool = True) -> Iterator[None]:
    """Hold off the cyclic garbage collector for a burst of work.

    Ending thousands of sockets allocates fast enough to trigger several
    collections mid-burst, each traversing every live socket's objects (tens of
    milliseconds apiece at 5,000 sockets, a second for a full one). Deferred, the
    garbage is the same; it is collected once the burst is over.
    """
    if not pause or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _discard(buckets: dict[int, set[K]], second: int, key: K) -> None:
    bucket = buckets.get(second)
    if bucket is not None:
        bucket.discard(key)
        if not bucket:
            del buckets[second]
