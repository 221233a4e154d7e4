"""Login throttling counters in Redis (sorted sets as sliding windows), shared by every node."""

from __future__ import annotations

import logging
import math
import secrets

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clock import Clock
from app.errors import TooManyAttempts
from app.throttle import IP_FACTOR, MemoryThrottle, throttle_keys

log = logging.getLogger("latch.throttle")
PREFIX = "latch:throttle:"


class RedisThrottle:
    """Falls back to per-node counting while Redis is unreachable (logins keep working)."""

    def __init__(self, redis: Redis, clock: Clock, *, max_failures: int, window: int) -> None:
        self._redis = redis
        self._clock = clock
        self._max = max_failures
        self._window = window
        self._fallback = MemoryThrottle(clock, max_failures=max_failures, window=window)

    async def check(self, username: str, ip: str | None) -> None:
        now = self._clock.now()
        pair, addr = throttle_keys(username, ip)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in (pair, addr):
                    pipe.zremrangebyscore(PREFIX + key, 0, now - self._window)
                    pipe.zrange(PREFIX + key, 0, -1, withscores=True)
                res = await pipe.execute()
        except (RedisError, OSError):
            log.warning("redis unavailable for login throttling; counting locally")
            await self._fallback.check(username, ip)
            return
        for hits, limit in ((res[1], self._max), (res[3], self._max * IP_FACTOR)):
            if len(hits) >= limit:
                oldest = sorted(score for _, score in hits)[len(hits) - limit]
                raise TooManyAttempts(math.ceil(oldest + self._window - now))

    async def failed(self, username: str, ip: str | None) -> None:
        now = self._clock.now()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in throttle_keys(username, ip):
                    pipe.zadd(PREFIX + key, {f"{now}:{secrets.token_hex(4)}": now})
                    pipe.expire(PREFIX + key, self._window + 1)
                await pipe.execute()
        except (RedisError, OSError):
            await self._fallback.failed(username, ip)

    async def succeeded(self, username: str, ip: str | None) -> None:
        try:
            await self._redis.delete(PREFIX + throttle_keys(username, ip)[0])
        except (RedisError, OSError):
            await self._fallback.succeeded(username, ip)
