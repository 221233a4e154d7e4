"""The revocation feed over Redis pub/sub, and the live-node registry.

This is the only module that talks to Redis for the feed. The listener runs for
the life of the app: it re-raises cancellation, logs and backs off on errors,
and resubscribes; after every (re)subscribe it asks the handler to catch up
from the durable store, because pub/sub drops whatever was sent meanwhile.
Nodes heartbeat into a sorted set so that a kill knows whose acks to await.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.clock import Clock
from app.feed import FeedHandler, FeedMessage, decode, encode

log = logging.getLogger("latch.feed.redis")

CHANNEL = "latch:feed"
NODES_KEY = "latch:nodes"
PUBLISH_TIMEOUT = 1.0
MAX_BACKOFF = 2.0


class RedisFeed:
    polls_store = False

    def __init__(self, redis: Redis, *, node_id: str, clock: Clock, heartbeat_ttl: int,
                 channel: str = CHANNEL) -> None:
        self._redis = redis
        self.node_id = node_id
        self._clock = clock
        self._ttl = heartbeat_ttl
        self._channel = channel
        self._handler: FeedHandler | None = None
        self._healthy = False
        self._tasks: list[asyncio.Task[Any]] = []
        self.dropped = 0

    async def start(self, handler: FeedHandler) -> None:
        self._handler = handler
        self._tasks = [
            asyncio.create_task(self._listen(), name="latch-feed-listener"),
            asyncio.create_task(self._heartbeat(), name="latch-node-heartbeat"),
        ]

    async def _listen(self) -> None:
        backoff = 0.1
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self._channel)
                self._healthy = True
                backoff = 0.1
                log.info("subscribed to %s", self._channel)
                await self._resync()
                while True:
                    raw = await pubsub.get_message(timeout=1.0)
                    if raw is not None:
                        await self._dispatch(raw.get("data"))
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as exc:
                if self._healthy:
                    log.warning("feed connection lost (%s); reconnecting", exc)
            except Exception:
                log.exception("feed listener failed; reconnecting")
            finally:
                self._healthy = False
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF)

    async def _resync(self) -> None:
        if self._handler is None:
            return
        try:
            await self._handler.on_resync()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("catch-up after subscribe failed")

    async def _dispatch(self, data: Any) -> None:
        if not isinstance(data, bytes | str):
            self.dropped += 1
            return
        message = decode(data)
        if message is None:
            self.dropped += 1
            log.warning("dropped an invalid feed message (%d bytes)", len(data))
            return
        if self._handler is None:
            return
        try:
            await self._handler.on_message(message)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("feed handler failed on a %s message", message.type)

    async def publish(self, message: FeedMessage) -> bool:
        try:
            await asyncio.wait_for(self._redis.publish(self._channel, encode(message)),
                                   PUBLISH_TIMEOUT)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not publish a %s message: %s", message.type, exc)
            return False
        return True

    def is_healthy(self) -> bool:
        return self._healthy

    async def _heartbeat(self) -> None:
        while True:
            try:
                now = self._clock.now()
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(NODES_KEY, {self.node_id: now})
                    pipe.zremrangebyscore(NODES_KEY, 0, now - self._ttl)
                    await pipe.execute()
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError):
                pass  # the listener logs connection loss
            await asyncio.sleep(max(0.5, self._ttl / 3))

    async def live_nodes(self) -> list[str]:
        now = self._clock.now()
        nodes = await self._redis.zrangebyscore(NODES_KEY, now - self._ttl, "+inf")
        names = {n.decode() if isinstance(n, bytes) else str(n) for n in nodes}
        names.add(self.node_id)
        return sorted(names)

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        with contextlib.suppress(RedisError, OSError):
            await asyncio.wait_for(self._redis.zrem(NODES_KEY, self.node_id), 1.0)
        self._healthy = False
