"""Presence in Redis: the only module that talks to Redis for presence.

Each node keeps its own sockets in three hashes that expire after the presence
TTL unless the node refreshes them (every TTL/3), so a node that dies without
cleaning up (SIGKILL) vanishes from every listing within one TTL:

* ``latch:presence:<node>``           bucket → JSON array of rows (``app.presence.FIELDS``),
                                      and ``count`` → how many sockets
* ``latch:presence-sessions:<node>``  session id → live sockets on that node
* ``latch:presence-users:<node>``     user id → live sockets on that node

Rows are grouped into :data:`BUCKETS` buckets by a CRC of the socket id rather
than stored one field per socket: listing 10,000 sockets then reads a few hundred
values instead of 10,000 (redis-py parses replies in Python, ~4 µs a value),
and one ``json.loads`` decodes them all. The node has every row in memory, so a
flush rewrites each bucket it touched (about 20 rows at 10,000 sockets) whole,
from per-row JSON cached until the row changes.

Writes come only from the flusher in :class:`~app.presence.MemoryPresence`,
in pipelines. If a write fails (Redis down) or the hash vanished (Redis
restarted, or we were away longer than the TTL), the node rewrites its whole
share in one transaction as soon as Redis answers again, and asks local admin
streams to reload (``resync``): events published meanwhile were lost.

Reads list the live nodes (the feed's heartbeat set) and fetch their hashes in
one pipeline; this node's own sockets come from memory, so they are never stale.
"""

from __future__ import annotations

import asyncio
import json
import logging
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from app.presence import (
    SWEEP_INTERVAL,
    Batch,
    ConnectionPage,
    ConnectionQuery,
    DeviceLookup,
    EventPublisher,
    MemoryPresence,
    Row,
    select,
    valid_row,
)

log = logging.getLogger("latch.presence.redis")

OP_TIMEOUT = 2.0
BUCKETS = 512
CHUNK = 1000
COUNT = "count"

LiveNodes = Callable[[], Awaitable[list[str]]]


def rows_key(node: str) -> str:
    return f"latch:presence:{node}"


def sessions_key(node: str) -> str:
    return f"latch:presence-sessions:{node}"


def users_key(node: str) -> str:
    return f"latch:presence-users:{node}"


def bucket_of(socket_id: str) -> int:
    """Stable across processes (unlike ``hash()``), so every node agrees."""
    return zlib.crc32(socket_id.encode()) % BUCKETS


def encode_bucket(rows: list[Row]) -> str:
    return json.dumps(rows, separators=(",", ":"))


def parse_buckets(values: list[bytes]) -> list[Row]:
    """Decode a node's buckets with one ``json.loads`` (one per bucket only if one is corrupt)."""
    if not values:
        return []
    try:
        buckets = json.loads(b"[" + b",".join(values) + b"]")
    except ValueError:
        buckets = []
        for value in values:
            try:
                buckets.append(json.loads(value))
            except ValueError:
                continue
    return [row for bucket in buckets if type(bucket) is list
            for row in bucket if valid_row(row)]


class RedisPresence(MemoryPresence):
    def __init__(self, redis: Redis, node_id: str, *, ttl: int, live_nodes: LiveNodes,
                 publish: EventPublisher, devices: DeviceLookup,
                 op_timeout: float = OP_TIMEOUT, **options: Any) -> None:
        options.setdefault("sweep_interval", min(SWEEP_INTERVAL, ttl / 3))
        super().__init__(node_id, publish=publish, devices=devices, **options)
        self._redis = redis
        self._ttl = ttl
        self._live_nodes = live_nodes
        self._timeout = op_timeout
        self.tick_interval = ttl / 3  # the heartbeat
        self._buckets: list[set[str]] = [set() for _ in range(BUCKETS)]
        self._needs_full = True  # a previous process with our id may have left rows behind
        self._lost = False  # writes were lost (Redis down, or our hash vanished)
        self._known_nodes: set[str] = set()
        self._keys = (rows_key(node_id), sessions_key(node_id), users_key(node_id))

    # --- writing --------------------------------------------------------------------

    async def start(self) -> None:
        await self._replace_all()
        await super().start()

    async def stop(self) -> None:
        """Clean shutdown: tell admin streams our sockets are gone, then delete our hashes."""
        await super().stop()
        # Sockets still open are about to be closed by the shutdown; ones that closed
        # while the flusher stopped are still queued. Announce both, write nothing.
        for entry in list(self._local.values()):
            self.remove(entry.info, "node shutdown")
        changes, self._changes = self._changes, []
        await self._announce(changes)
        try:
            await asyncio.wait_for(self._redis.delete(*self._keys), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not delete this node's presence (%s); it expires in %ss",
                        exc, self._ttl)

    def _bucket_value(self, bucket: int) -> str | None:
        """A bucket's JSON array, joined from the rows' cached encodings; None when empty."""
        parts = [enc for sid in self._buckets[bucket] if (enc := self.encoded(sid)) is not None]
        return "[" + ",".join(parts) + "]" if parts else None

    async def store(self, batch: Batch) -> None:
        dirty: set[int] = set()
        for sid in batch.sockets:
            bucket = bucket_of(sid)
            dirty.add(bucket)
            if self.current(sid) is None:
                self._buckets[bucket].discard(sid)
            else:
                self._buckets[bucket].add(sid)
        if self._needs_full:
            await self._replace_all()
            return
        rows, sessions, users = self._keys
        put: dict[str, str] = {}
        empty: list[str] = []
        for bucket in dirty:
            value = self._bucket_value(bucket)
            if value is not None:
                put[str(bucket)] = value
            else:
                empty.append(str(bucket))
        session_counts, user_counts = self.counts(batch)
        put[COUNT] = str(len(self._local))
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                _hset(pipe, rows, put)
                _hdel(pipe, rows, empty)
                for key, counts in ((sessions, session_counts), (users, user_counts)):
                    _hset(pipe, key, {k: n for k, n in counts.items() if n})
                    _hdel(pipe, key, [k for k, n in counts.items() if not n])
                for key in self._keys:
                    pipe.expire(key, self._ttl)
                await asyncio.wait_for(pipe.execute(), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("presence write failed (%s); will rewrite this node's share", exc)
            self._needs_full = self._lost = True

    async def _replace_all(self) -> None:
        """Atomically replace this node's hashes with what is in memory."""
        rows, sessions, users = self._keys
        self._buckets = [set() for _ in range(BUCKETS)]
        for sid in self._local:
            self._buckets[bucket_of(sid)].add(sid)
        buckets = {str(b): value for b in range(BUCKETS)
                   if (value := self._bucket_value(b)) is not None}
        buckets[COUNT] = str(len(self._local))
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(*self._keys)
                _hset(pipe, rows, buckets)
                _hset(pipe, sessions, dict(self._sessions))
                _hset(pipe, users, dict(self._users))
                for key in self._keys:
                    pipe.expire(key, self._ttl)
                await asyncio.wait_for(pipe.execute(), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("presence rewrite failed (%s); retrying", exc)
            self._needs_full = True
            return
        self._needs_full = False
        lost, self._lost = self._lost, False
        if lost and self.on_resync is not None:
            log.info("presence rewritten after a Redis outage")
            self.on_resync("redis_recovered", [])

    async def tick(self) -> None:
        """The heartbeat: keep our hashes alive (or rewrite them) and notice nodes that died."""
        if self._needs_full:
            await self._replace_all()
        else:
            try:
                async with self._redis.pipeline(transaction=False) as pipe:
                    for key in self._keys:
                        pipe.expire(key, self._ttl)
                    alive = await asyncio.wait_for(pipe.execute(), self._timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("presence heartbeat failed (%s)", exc)
                self._needs_full = self._lost = True
                return
            if not alive[0] and self._local:
                self._lost = True  # our hash vanished
                await self._replace_all()
        await self._watch_nodes()

    async def _watch_nodes(self) -> None:
        # A node that dies sends no disconnect events: tell local streams to reload.
        try:
            nodes = set(await asyncio.wait_for(self._live_nodes(), self._timeout))
        except (RedisError, OSError, TimeoutError):
            return
        lost = self._known_nodes - nodes
        self._known_nodes = nodes
        if lost and self.on_resync is not None:
            self.on_resync("node_lost", sorted(lost))

    # --- reading --------------------------------------------------------------------

    async def _other_nodes(self) -> list[str]:
        nodes = await asyncio.wait_for(self._live_nodes(), self._timeout)
        return [n for n in nodes if n != self.node_id]

    async def list(self, query: ConnectionQuery) -> ConnectionPage:
        await self.settle()
        by_node: dict[str, list[Row]] = {self.node_id: self._local_rows()}
        counts = {self.node_id: len(by_node[self.node_id])}
        try:
            others = await self._other_nodes()
            wanted = [n for n in others if query.node is None or n == query.node]
            async with self._redis.pipeline(transaction=False) as pipe:
                for node in others:
                    pipe.hget(rows_key(node), COUNT)
                for node in wanted:
                    pipe.hvals(rows_key(node))
                replies = await asyncio.wait_for(pipe.execute(), self._timeout)
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("could not read other nodes' presence (%s); listing this node only", exc)
            return select(by_node, query, partial=True)
        for node, count in zip(others, replies, strict=False):
            counts[node] = int(count) if count is not None and count.isdigit() else 0
        # A filter on a session or user skips the buckets that cannot match before
        # decoding anything (the exact match is still done on the decoded rows).
        needles = [json.dumps(v).encode() for v in (query.session_id, query.user_id)
                   if v is not None]
        for node, values in zip(wanted, replies[len(others):], strict=True):
            if needles:
                values = [v for v in values if all(n in v for n in needles)]
            by_node[node] = parse_buckets(values)
        return select(by_node, query, counts=counts)

    async def _counts(self, key_of: Callable[[str], str], ids: list[str],
                      local: dict[str, int]) -> dict[str, int]:
        totals = {i: local.get(i, 0) for i in ids}
        if ids:
            try:
                others = await self._other_nodes()
                async with self._redis.pipeline(transaction=False) as pipe:
                    for node in others:
                        pipe.hmget(key_of(node), ids)
                    replies = await asyncio.wait_for(pipe.execute(), self._timeout)
            except (RedisError, OSError, TimeoutError) as exc:
                log.warning("could not read other nodes' presence counts (%s)", exc)
                replies = []
            for reply in replies:
                for i, value in zip(ids, reply, strict=True):
                    if value is not None and value.isdigit():
                        totals[i] += int(value)
        return {i: n for i, n in totals.items() if n > 0}

    async def session_counts(self, session_ids: Iterable[str]) -> dict[str, int]:
        return await self._counts(sessions_key, list(dict.fromkeys(session_ids)), self._sessions)

    async def online_users(self, user_ids: Iterable[str]) -> set[str]:
        return set(await self._counts(users_key, list(dict.fromkeys(user_ids)), self._users))


def _hset(pipe: Any, key: str, mapping: dict[str, Any]) -> None:
    items = list(mapping.items())
    for i in range(0, len(items), CHUNK):
        pipe.hset(key, mapping=dict(items[i:i + CHUNK]))


def _hdel(pipe: Any, key: str, fields: list[str]) -> None:
    for i in range(0, len(fields), CHUNK):
        pipe.hdel(key, *fields[i:i + CHUNK])
