"""Presence: every live socket of the cluster, and this node's share of it (pure: no Redis, no web).

The Socket.IO hooks call :meth:`MemoryPresence.add` and :meth:`MemoryPresence.remove`:
a dict update and a list append, never an await, so the handshake stays cheap.
A background flusher turns those changes into admin events (``connect`` /
``disconnect``, batched: one feed message per run of up to ``BATCH`` sockets)
and, in :class:`app.redis_presence.RedisPresence`, into Redis writes.

A connection is kept as a compact *row* (a list in :data:`FIELDS` order), the
same shape this node writes to Redis as JSON, so listing 10,000 sockets is one
``json.loads``, a filter and a sort, and only the requested page becomes dicts.
The socket's info object is shared with the gateway, which updates its token
expiry on ``refresh`` and its transport on upgrade; a periodic sweep copies such
changes into the row and re-announces the socket (``connect`` is an upsert).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from app.authn import Identity

log = logging.getLogger("latch.presence")

FIELDS = ("socket_id", "node", "user_id", "username", "role", "session_id", "device",
          "connected_at", "expires_at", "transport", "ip", "user_agent")
(SOCKET_ID, NODE, USER_ID, USERNAME, ROLE, SESSION_ID, DEVICE, CONNECTED_AT, EXPIRES_AT,
 TRANSPORT, IP, USER_AGENT) = range(len(FIELDS))
ROW_LEN = len(FIELDS)

MAX_LIMIT = 1000
BATCH = 200  # sockets per feed message (a row is < 1.5 kB; the feed takes 1 MB)
FLUSH_INTERVAL = 0.05
FLUSH_AT = 500  # pending changes that wake the flusher before FLUSH_INTERVAL
SWEEP_INTERVAL = 1.0
DEVICE_CACHE = 50_000
MAX_USER_AGENT = 300

Row = list[Any]
EventPublisher = Callable[[str, dict[str, Any]], Awaitable[None]]
DeviceLookup = Callable[[Sequence[str]], Awaitable[Mapping[str, str]]]
ResyncHook = Callable[[str, Sequence[str]], None]
"""Called with a reason and the nodes concerned when admin streams must reload their lists."""


class SocketInfo(Protocol):
    """What presence reads of a live socket (``handlers.sockets.ConnectionInfo``)."""

    socket_id: str
    identity: Identity
    connected_at: float
    transport: str
    ip: str | None
    user_agent: str | None


def row_of(info: SocketInfo, node: str, device: str) -> Row:
    ident = info.identity
    agent = info.user_agent[:MAX_USER_AGENT] if info.user_agent else info.user_agent
    return [info.socket_id, node, ident.user_id, ident.username, ident.role, ident.session_id,
            device, info.connected_at, ident.token_exp, info.transport, info.ip, agent]


def connection_dict(row: Row) -> dict[str, Any]:
    """A row in the wire shape of docs/admin-api.md ("connection")."""
    return {
        "socket_id": row[SOCKET_ID],
        "user": {"id": row[USER_ID], "username": row[USERNAME], "role": row[ROLE]},
        "session_id": row[SESSION_ID], "device": row[DEVICE], "node": row[NODE],
        "connected_at": row[CONNECTED_AT], "expires_at": row[EXPIRES_AT],
        "transport": row[TRANSPORT], "ip": row[IP], "user_agent": row[USER_AGENT],
    }


def disconnect_dict(row: Row, reason: str) -> dict[str, Any]:
    return {"socket_id": row[SOCKET_ID], "session_id": row[SESSION_ID],
            "user_id": row[USER_ID], "node": row[NODE], "reason": reason}


def valid_row(row: Any) -> bool:
    """Cheap shape check for rows read back from a shared store."""
    return (type(row) is list and len(row) == ROW_LEN and type(row[SOCKET_ID]) is str
            and type(row[USER_ID]) is str and type(row[SESSION_ID]) is str
            and isinstance(row[CONNECTED_AT], int | float) and type(row[NODE]) is str)


@dataclass(frozen=True, slots=True)
class ConnectionQuery:
    user_id: str | None = None
    session_id: str | None = None
    node: str | None = None
    limit: int = 100
    offset: int = 0


@dataclass(slots=True)
class ConnectionPage:
    """One page of the cluster's sockets, oldest first.

    ``total`` and ``users`` count the filtered sockets; ``nodes`` lists every live
    node with all of its sockets (the cluster overview, whatever the filter).
    ``partial`` is true when other nodes could not be read (Redis unreachable).
    """

    connections: list[dict[str, Any]]
    total: int
    users: int
    nodes: list[tuple[str, int]]
    partial: bool = False

    def as_dict(self, query: ConnectionQuery) -> dict[str, Any]:
        out: dict[str, Any] = {
            "connections": self.connections, "total": self.total, "limit": query.limit,
            "offset": query.offset, "users": self.users,
            "nodes": [{"node": n, "sockets": c} for n, c in self.nodes],
        }
        if self.partial:
            out["partial"] = True
        return out


def select(rows_by_node: Mapping[str, list[Row]], query: ConnectionQuery, *,
           counts: Mapping[str, int] | None = None, partial: bool = False) -> ConnectionPage:
    """Filter, sort by connected_at (oldest first: new sockets land on the last page) and paginate.

    One float key keeps the sort cheap; sockets connected in the same microsecond
    keep the order they were read in.
    ``counts`` (sockets per node) is needed when ``rows_by_node`` was pre-filtered.
    """
    if counts is None:
        counts = {node: len(rows) for node, rows in rows_by_node.items()}
    nodes = sorted(counts.items())
    if query.node is not None:
        rows = list(rows_by_node.get(query.node, ()))
    else:
        rows = [row for node_rows in rows_by_node.values() for row in node_rows]
    if query.user_id is not None:
        rows = [r for r in rows if r[USER_ID] == query.user_id]
    if query.session_id is not None:
        rows = [r for r in rows if r[SESSION_ID] == query.session_id]
    rows.sort(key=itemgetter(CONNECTED_AT))
    page = rows[query.offset:query.offset + query.limit]
    return ConnectionPage(connections=[connection_dict(r) for r in page], total=len(rows),
                          users=len({r[USER_ID] for r in rows}), nodes=nodes, partial=partial)


class DeviceCache:
    """Session id → device name, LRU. A session's device never changes, so entries never go stale."""

    def __init__(self, capacity: int = DEVICE_CACHE) -> None:
        self._items: OrderedDict[str, str] = OrderedDict()
        self._capacity = capacity

    def get(self, session_id: str) -> str | None:
        device = self._items.get(session_id)
        if device is not None:
            self._items.move_to_end(session_id)
        return device

    def put(self, session_id: str, device: str) -> None:
        self._items[session_id] = device
        self._items.move_to_end(session_id)
        while len(self._items) > self._capacity:
            self._items.popitem(last=False)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._items


class _Entry:
    __slots__ = ("announced", "encoded", "info", "row")

    def __init__(self, info: SocketInfo, row: Row) -> None:
        self.info = info
        self.row = row
        self.announced = False
        self.encoded: str | None = None  # the row's JSON, cached by a store; None when stale


@dataclass(slots=True)
class _Change:
    kind: str  # connect | update | disconnect
    entry: _Entry
    reason: str = ""


@dataclass(slots=True)
class Batch:
    """What one flush hands to the store: the sockets, sessions and users whose state changed."""

    sockets: set[str] = field(default_factory=set)
    sessions: set[str] = field(default_factory=set)
    users: set[str] = field(default_factory=set)


class MemoryPresence:
    """This node's sockets in memory; the whole story for a single node."""

    tick_interval: float | None = None
    """How often :meth:`tick` runs (a store's heartbeat); None: never."""

    def __init__(self, node_id: str, *, publish: EventPublisher, devices: DeviceLookup,
                 flush_interval: float = FLUSH_INTERVAL, flush_at: int = FLUSH_AT,
                 sweep_interval: float = SWEEP_INTERVAL) -> None:
        self.node_id = node_id
        self._publish = publish
        self._lookup = devices
        self._flush_interval = flush_interval
        self._flush_at = flush_at
        self._sweep_interval = sweep_interval
        self.devices = DeviceCache()
        self._local: dict[str, _Entry] = {}
        self._sessions: dict[str, int] = {}
        self._users: dict[str, int] = {}
        self._changes: list[_Change] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flush_lock = asyncio.Lock()
        self.on_resync: ResyncHook | None = None

    # --- the hot path: called from the Socket.IO hooks, never awaits -----------------

    def add(self, info: SocketInfo) -> None:
        ident = info.identity
        entry = _Entry(info, row_of(info, self.node_id,
                                    self.devices.get(ident.session_id) or ""))
        old = self._local.get(info.socket_id)
        if old is not None:
            self.remove(old.info, "replaced")
        self._local[info.socket_id] = entry
        self._sessions[ident.session_id] = self._sessions.get(ident.session_id, 0) + 1
        self._users[ident.user_id] = self._users.get(ident.user_id, 0) + 1
        self._note(_Change("connect", entry))

    def remove(self, info: SocketInfo, reason: str) -> None:
        entry = self._local.pop(info.socket_id, None)
        if entry is None:
            return
        row = entry.row
        _decrement(self._sessions, row[SESSION_ID])
        _decrement(self._users, row[USER_ID])
        self._note(_Change("disconnect", entry, reason))

    def _note(self, change: _Change) -> None:
        self._changes.append(change)
        if len(self._changes) == 1 or len(self._changes) >= self._flush_at:
            self._wake.set()

    def local_count(self) -> int:
        return len(self._local)

    # --- reading ------------------------------------------------------------------------

    async def list(self, query: ConnectionQuery) -> ConnectionPage:
        await self.settle()
        return select({self.node_id: self._local_rows()}, query)

    async def settle(self) -> None:
        """Bring the rows up to date before a listing: refreshes, upgrades, device names."""
        self.sweep()
        if self._changes:
            await self.flush()

    def _local_rows(self) -> list[Row]:
        return [entry.row for entry in self._local.values()]

    async def session_counts(self, session_ids: Iterable[str]) -> dict[str, int]:
        """Live sockets per session, cluster-wide (absent = 0)."""
        return {sid: n for sid in session_ids if (n := self._sessions.get(sid, 0))}

    async def online_users(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these users hold at least one live socket, cluster-wide."""
        return {uid for uid in user_ids if uid in self._users}

    # --- background -----------------------------------------------------------------------

    def sweep(self) -> int:
        """Copy token refreshes and transport upgrades into the rows; queue them as updates."""
        changed = 0
        for entry in self._local.values():
            info, row = entry.info, entry.row
            exp = info.identity.token_exp
            if row[EXPIRES_AT] != exp or row[TRANSPORT] != info.transport:
                row[EXPIRES_AT] = exp
                row[TRANSPORT] = info.transport
                entry.encoded = None
                self._note(_Change("update", entry))
                changed += 1
        return changed

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="latch-presence-flush")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        next_sweep = loop.time() + self._sweep_interval
        next_tick = loop.time() + (self.tick_interval or float("inf"))
        while True:
            timeout = max(0.0, min(next_sweep, next_tick) - loop.time())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            if self._changes and len(self._changes) < self._flush_at:
                await asyncio.sleep(self._flush_interval)  # gather the rest of a burst
            self._wake.clear()
            try:
                now = loop.time()
                if now >= next_sweep:
                    next_sweep = now + self._sweep_interval
                    self.sweep()
                if self.tick_interval and now >= next_tick:
                    next_tick = now + self.tick_interval
                    await self.tick()
                await self.flush()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("presence flush failed")
                await asyncio.sleep(self._flush_interval)

    async def tick(self) -> None:
        """Periodic work of a store (heartbeats); nothing in memory."""

    async def flush(self) -> None:
        """Publish (and, in a store, write) every change noted so far."""
        async with self._flush_lock:
            changes, self._changes = self._changes, []
            if not changes:
                return
            await self._fill_devices(changes)
            batch = Batch()
            for change in changes:
                row = change.entry.row
                batch.sockets.add(row[SOCKET_ID])
                batch.sessions.add(row[SESSION_ID])
                batch.users.add(row[USER_ID])
            await self.store(batch)
            await self._announce(changes)

    async def store(self, batch: Batch) -> None:
        """Write the batch's current state to a shared store (nothing in memory)."""

    def current(self, socket_id: str) -> Row | None:
        entry = self._local.get(socket_id)
        return entry.row if entry is not None else None

    def encoded(self, socket_id: str) -> str | None:
        """The row's JSON (cached until the row changes), or None if the socket is gone."""
        entry = self._local.get(socket_id)
        if entry is None:
            return None
        if entry.encoded is None:
            entry.encoded = json.dumps(entry.row, separators=(",", ":"))
        return entry.encoded

    def counts(self, batch: Batch) -> tuple[dict[str, int], dict[str, int]]:
        """Current socket counts of the batch's sessions and users (0 = gone)."""
        return ({s: self._sessions.get(s, 0) for s in batch.sessions},
                {u: self._users.get(u, 0) for u in batch.users})

    async def _fill_devices(self, changes: list[_Change]) -> None:
        wanted = {c.entry.row[SESSION_ID] for c in changes
                  if c.kind == "connect" and c.entry.row[DEVICE] == ""}
        missing = [sid for sid in wanted if sid not in self.devices]
        if missing:
            try:
                found = await self._lookup(missing)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("device lookup failed; sockets listed without device names",
                            exc_info=True)
                found = None
            if found is not None:
                for sid in missing:
                    self.devices.put(sid, found.get(sid, ""))
        for change in changes:
            row = change.entry.row
            if change.kind == "connect" and row[DEVICE] == "":
                row[DEVICE] = self.devices.get(row[SESSION_ID]) or ""
                change.entry.encoded = None

    async def _announce(self, changes: list[_Change]) -> None:
        events: list[tuple[str, dict[str, Any]]] = []
        upserted: set[int] = set()
        for change in changes:
            entry = change.entry
            if change.kind == "disconnect":
                if not entry.announced:
                    continue  # came and went within one flush: nobody ever saw it
                events.append(("disconnect", disconnect_dict(entry.row, change.reason)))
            elif id(entry) not in upserted and self._local.get(entry.row[SOCKET_ID]) is entry:
                # One upsert per socket and flush, carrying its latest values.
                upserted.add(id(entry))
                entry.announced = True
                events.append(("connect", connection_dict(entry.row)))
        await self._publish_runs(events)

    async def _publish_runs(self, events: list[tuple[str, dict[str, Any]]]) -> None:
        # Consecutive events of one kind go out as one feed message (order is kept).
        start = 0
        while start < len(events):
            name = events[start][0]
            end = start
            while end < len(events) and end - start < BATCH and events[end][0] == name:
                end += 1
            items = [data for _, data in events[start:end]]
            try:
                await self._publish(name, {"batch": items})
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("could not publish %d %s events", len(items), name, exc_info=True)
            start = end


def _decrement(counts: dict[str, int], key: str) -> None:
    n = counts.get(key, 0) - 1
    if n > 0:
        counts[key] = n
    else:
        counts.pop(key, None)
