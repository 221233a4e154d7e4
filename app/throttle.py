"""Login throttling over a sliding window.

Failures are counted per (username, client IP) and per client IP. Only the
pair is limited tightly, so an attacker hammering a victim's name from one
address cannot lock the victim out from another address (no lockout DoS); the
per-IP limit (several times higher) slows credential stuffing across names.
Counters live in Redis when configured (``app.redis_throttle``), else here.
"""

from __future__ import annotations

import math
import unicodedata
from collections import deque
from typing import Protocol

from app.clock import Clock
from app.errors import TooManyAttempts

IP_FACTOR = 5


def throttle_keys(username: str, ip: str | None) -> tuple[str, str]:
    name = unicodedata.normalize("NFKC", username).strip().casefold()[:256]
    addr = ip or "-"
    return f"pair:{addr}:{name}", f"ip:{addr}"


class LoginThrottle(Protocol):
    async def check(self, username: str, ip: str | None) -> None:
        """Raise TooManyAttempts (with Retry-After) if this login may not be tried now."""
        ...

    async def failed(self, username: str, ip: str | None) -> None: ...

    async def succeeded(self, username: str, ip: str | None) -> None: ...


class MemoryThrottle:
    def __init__(self, clock: Clock, *, max_failures: int, window: int,
                 max_keys: int = 100_000) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._max_keys = max_keys
        self._hits: dict[str, deque[float]] = {}

    def _live(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            return deque()
        while hits and hits[0] <= now - self._window:
            hits.popleft()
        if not hits:
            del self._hits[key]
        return hits

    async def check(self, username: str, ip: str | None) -> None:
        now = self._clock.monotonic()
        pair, addr = throttle_keys(username, ip)
        for key, limit in ((pair, self._max), (addr, self._max * IP_FACTOR)):
            hits = self._live(key, now)
            if len(hits) >= limit:
                retry = hits[len(hits) - limit] + self._window - now
                raise TooManyAttempts(math.ceil(retry))

    async def failed(self, username: str, ip: str | None) -> None:
        now = self._clock.monotonic()
        if len(self._hits) >= self._max_keys:
            self._evict(now)
        for key in throttle_keys(username, ip):
            self._hits.setdefault(key, deque()).append(now)

    async def succeeded(self, username: str, ip: str | None) -> None:
        self._hits.pop(throttle_keys(username, ip)[0], None)

    def _evict(self, now: float) -> None:
        for key in list(self._hits):
            self._live(key, now)
        while len(self._hits) >= self._max_keys:
            self._hits.pop(next(iter(self._hits)))
