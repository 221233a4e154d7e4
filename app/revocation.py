"""The one revoke path, and this node's view of what is revoked.

Every way a session ends goes through :meth:`RevocationService.revoke`:

1. write the revocation durably (the session row and one ``revocations`` log row
   per session, in one transaction with the audit entry and any caller change);
2. add the sessions to this node's in-memory :class:`RevokedSet`;
3. announce it on the feed (one message per kill, however many sessions);
4. end the sockets: this node directly, every other node when the message
   arrives; each node acknowledges with how many sockets it ended.

The feed is at-most-once, so every node also *catches up* from the log: on
(re)subscribing, on a ``sync`` message, and every second (one indexed read), so
a kill whose announcement was lost reaches every node within about a second.
Handshakes check only the in-memory set: no I/O on the hot path (while the feed
is down, :meth:`settled` reads the log first).
If this node has been unable to confirm it is current for longer than
``staleness`` seconds, it fails closed and refuses handshakes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiosqlite

from app.audit import Actor, AuditLog
from app.clock import Clock
from app.db import Database
from app.errors import NotFound
from app.feed import (
    MAX_SESSION_IDS,
    AckMessage,
    EventMessage,
    Feed,
    FeedMessage,
    RevokeMessage,
    SyncMessage,
)

log = logging.getLogger("latch.revocation")

ACK_TIMEOUT = 0.25
MASS_ACK_TIMEOUT = 2.0
PRUNE_MARGIN = 60.0
CATCH_UP_BATCH = 5000
SYNC_INTERVAL = 1.0

TxHook = Callable[[aiosqlite.Connection], Awaitable[None]]


class LocalSockets(Protocol):
    """This node's sockets, as the revocation path sees them (implemented at the edge)."""

    async def end_sessions(self, session_ids: Collection[str], code: str) -> int: ...

    async def end_user(self, user_id: str, code: str, *, except_session: str | None = None) -> int: ...

    async def end_all(self, code: str) -> int: ...


@dataclass(slots=True)
class NodeKill:
    node: str
    ended: int
    confirmed: bool


@dataclass(slots=True)
class KillResult:
    sessions: int
    session_ids: list[str]
    nodes: list[NodeKill] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "revoked": True,
            "sessions": self.sessions,
            "sockets": {
                "ended": sum(n.ended for n in self.nodes),
                "confirmed": all(n.confirmed for n in self.nodes),
                "nodes": [{"node": n.node, "ended": n.ended, "confirmed": n.confirmed}
                          for n in self.nodes],
            },
        }


class RevokedSet:
    """Session id → (code, prune_after). Pruned once no token of the session can be live."""

    __slots__ = ("_items", "position")

    def __init__(self) -> None:
        self._items: dict[str, tuple[str, float]] = {}
        self.position = 0

    def add(self, session_id: str, code: str, prune_after: float) -> None:
        self._items[session_id] = (code, prune_after)

    def code(self, session_id: str) -> str | None:
        item = self._items.get(session_id)
        return item[0] if item else None

    def prune(self, now: float) -> int:
        dead = [sid for sid, (_, until) in self._items.items() if until < now]
        for sid in dead:
            del self._items[sid]
        return len(dead)

    def __len__(self) -> int:
        return len(self._items)


@dataclass(slots=True)
class _PendingKill:
    expected: set[str]
    acks: dict[str, int]
    done: asyncio.Event


class RevocationService:
    def __init__(self, db: Database, feed: Feed, audit: AuditLog, clock: Clock, *,
                 node_id: str, access_ttl: int, staleness: float,
                 poll_store: bool, ack_timeout: float = ACK_TIMEOUT) -> None:
        self._db = db
        self._feed = feed
        self._audit = audit
        self._clock = clock
        self.node_id = node_id
        self._access_ttl = access_ttl
        self._staleness = staleness
        self._poll_store = poll_store
        self._ack_timeout = ack_timeout
        self.revoked = RevokedSet()
        self.local: LocalSockets | None = None
        self._pending: dict[str, _PendingKill] = {}
        self._catch_up_lock = asyncio.Lock()
        self._settled = asyncio.Event()
        self._settled.set()
        self._synced_at = clock.monotonic()
        self._unannounced = False
        # Hooks for metrics and admin event streams, set by the app factory.
        self.on_sockets_ended: Callable[[str, int, float | None], None] | None = None
        self.on_event: Callable[[EventMessage], Awaitable[None]] | None = None
        self.on_feed_lag: Callable[[float], None] | None = None
        self.catch_ups = 0
        self._tasks: set[asyncio.Task[Any]] = set()

    # --- start-up ---------------------------------------------------------

    async def load(self) -> None:
        """Fill the revoked set from the durable log; called once at start-up."""
        now = self._clock.now()
        rows = await self._db.fetch_all(
            "SELECT session_id, code, prune_after FROM revocations WHERE prune_after > ?", (now,))
        for row in rows:
            self.revoked.add(row["session_id"], row["code"], row["prune_after"])
        top = await self._db.fetch_one("SELECT max(position) FROM revocations")
        self.revoked.position = int(top[0] or 0) if top else 0
        self._synced_at = self._clock.monotonic()

    # --- the revoke path ----------------------------------------------------

    async def revoke_session(self, session_id: str, *, code: str, actor: Actor,
                             reason: str | None = None, action: str = "session.revoke",
                             in_tx: TxHook | None = None) -> KillResult:
        return await self._revoke(
            scope="session", target=session_id, except_session=None, code=code, actor=actor,
            reason=reason, action=action, in_tx=in_tx,
            select=("SELECT id, user_id, revoked_at FROM sessions WHERE id = ?", (session_id,)),
            must_exist=True)

    async def revoke_user(self, user_id: str, *, code: str, actor: Actor,
                          reason: str | None = None, except_session: str | None = None,
                          action: str = "user.revoke", in_tx: TxHook | None = None) -> KillResult:
        live = self._live_clause()
        return await self._revoke(
            scope="user", target=user_id, except_session=except_session, code=code, actor=actor,
            reason=reason, action=action, in_tx=in_tx,
            select=(f"SELECT id, user_id, revoked_at FROM sessions WHERE user_id = ? AND id != ?"  # noqa: S608
                    f" AND {live[0]}", (int(user_id), except_session or "", *live[1])),
            must_exist=False)

    async def revoke_all(self, *, code: str, actor: Actor, reason: str | None = None) -> KillResult:
        live = self._live_clause()
        return await self._revoke(
            scope="all", target=None, except_session=None, code=code, actor=actor,
            reason=reason, action="all.revoke", in_tx=None,
            select=(f"SELECT id, user_id, revoked_at FROM sessions WHERE {live[0]}", live[1]),  # noqa: S608
            must_exist=False)

    def _live_clause(self) -> tuple[str, tuple[float, float]]:
        # Sessions that are not revoked and could still hold a live access token.
        now = self._clock.now()
        return ("revoked_at IS NULL AND (min(expires_at, idle_expires_at) > ? OR last_seen_at > ?)",
                (now, now - self._access_ttl - PRUNE_MARGIN))

    async def _revoke(self, *, scope: str, target: str | None, except_session: str | None,
                      code: str, actor: Actor, reason: str | None, action: str,
                      in_tx: TxHook | None, select: tuple[str, Sequence[Any]],
                      must_exist: bool) -> KillResult:
        at = self._clock.now()
        op = secrets.token_hex(8)
        prune_after = at + self._access_ttl + PRUNE_MARGIN
        # Who must acknowledge: looked up while the durable write runs (a Redis round trip).
        nodes_lookup = asyncio.ensure_future(self._safe_live_nodes())
        # (1) durable
        try:
            async with self._db.transaction() as tx:
                async with tx.execute(select[0], select[1]) as cur:
                    rows = list(await cur.fetchall())
                if must_exist and not rows:
                    raise NotFound("no such session")
                fresh = [(r["id"], r["user_id"]) for r in rows if r["revoked_at"] is None]
                if fresh:
                    await tx.executemany(
                        "UPDATE sessions SET revoked_at = ?, revoked_by = ?, revoked_code = ?,"
                        " revoked_reason = ? WHERE id = ? AND revoked_at IS NULL",
                        [(at, actor.name, code, reason, sid) for sid, _ in fresh])
                    await tx.executemany(
                        "INSERT INTO revocations (session_id, user_id, code, op, created_at, prune_after)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [(sid, uid, code, op, at, prune_after) for sid, uid in fresh])
                if in_tx is not None:
                    await in_tx(tx)
                async with tx.execute("SELECT max(position) FROM revocations") as cur:
                    top = await cur.fetchone()
                position = int(top[0] or 0) if top else 0
                await self._audit.record(tx, actor, action, _target_label(scope, target),
                                         code=code, reason=reason, sessions=len(fresh),
                                         except_session=except_session)
        except BaseException:
            nodes_lookup.cancel()
            raise
        session_ids = [sid for sid, _ in fresh]
        # (2) this node's memory
        for sid in session_ids:
            self.revoked.add(sid, code, prune_after)
        # (3) announce
        complete = len(session_ids) <= MAX_SESSION_IDS
        message = RevokeMessage(
            op=op, origin=self.node_id, scope=scope, code=code, position=position, at=at,
            target=target, except_session=except_session,
            session_ids=tuple(session_ids) if complete else (), complete=complete)
        others = [n for n in await nodes_lookup if n != self.node_id]
        pending = _PendingKill(expected=set(others), acks={}, done=asyncio.Event())
        if not others:
            pending.done.set()
        self._pending[op] = pending
        try:
            published = await self._feed.publish(message)
            if not published:
                self._unannounced = True
            # (4) this node's sockets
            ended_here = await self._end_local(message)
            if published and others:
                # Ending thousands of sockets takes a node ~0.25 s: wait longer for wide kills.
                timeout = self._ack_timeout if scope == "session" else MASS_ACK_TIMEOUT
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pending.done.wait(), timeout)
        finally:
            self._pending.pop(op, None)
        user_id = target if scope == "user" else None
        if scope == "session" and rows:
            user_id = str(rows[0]["user_id"])
        self._spawn(self._emit_event("session_revoked", {
            "scope": scope, "target": target, "session_ids": session_ids[:MAX_SESSION_IDS],
            "user_id": user_id, "code": code, "node": self.node_id}))
        nodes = [NodeKill(self.node_id, ended_here, True)]
        for node in sorted(pending.expected):
            if node in pending.acks:
                nodes.append(NodeKill(node, pending.acks[node], True))
            else:
                nodes.append(NodeKill(node, 0, False))
        return KillResult(sessions=len(session_ids), session_ids=session_ids, nodes=nodes)

    async def _safe_live_nodes(self) -> list[str]:
        try:
            return await asyncio.wait_for(self._feed.live_nodes(), 0.2)
        except Exception:  # the feed is down: nobody else can be confirmed
            log.warning("could not list live nodes; other nodes will be unconfirmed")
            return [self.node_id]

    async def _end_local(self, message: RevokeMessage) -> int:
        local = self.local
        if local is None:
            return 0
        if message.scope == "session":
            ended = await local.end_sessions(message.session_ids or (message.target or "",),
                                             message.code)
        elif message.scope == "user" and message.target is not None:
            ended = await local.end_user(message.target, message.code,
                                         except_session=message.except_session)
        elif message.scope == "all":
            ended = await local.end_all(message.code)
        else:
            ended = 0
        if ended and self.on_sockets_ended is not None:
            self.on_sockets_ended(message.code, ended, self._clock.now() - message.at)
        return ended

    # --- receiving ------------------------------------------------------------

    async def on_message(self, message: FeedMessage) -> None:
        if isinstance(message, RevokeMessage):
            if message.origin == self.node_id:
                return  # handled directly by _revoke
            if self.on_feed_lag is not None:
                self.on_feed_lag(self._clock.now() - message.at)
            for sid in message.session_ids:
                self.revoked.add(sid, message.code, message.at + self._access_ttl + PRUNE_MARGIN)
            if not message.complete:
                self._settled.clear()  # handshakes wait for the catch-up below
            ended = await self._end_local(message)
            await asyncio.sleep(0)  # let Engine.IO write the packets before we ack
            await self._feed.publish(AckMessage(op=message.op, node=self.node_id, ended=ended))
            if message.position > self.revoked.position:
                self._schedule_catch_up()
        elif isinstance(message, AckMessage):
            pending = self._pending.get(message.op)
            if pending is not None and message.node in pending.expected:
                pending.acks[message.node] = message.ended
                if pending.expected.issubset(pending.acks):
                    pending.done.set()
        elif isinstance(message, SyncMessage):
            if message.position > self.revoked.position:
                self._schedule_catch_up()
        elif isinstance(message, EventMessage) and self.on_event is not None:
            await self.on_event(message)

    async def on_resync(self) -> None:
        await self.catch_up()
        if self._unannounced:
            ok = await self._feed.publish(SyncMessage(origin=self.node_id,
                                                      position=self.revoked.position))
            self._unannounced = not ok

    def _schedule_catch_up(self) -> None:
        self._spawn(self._catch_up_logged())

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _catch_up_logged(self) -> None:
        try:
            await self.catch_up()
        except (aiosqlite.Error, OSError):
            log.warning("catch-up from the store failed; will retry", exc_info=True)

    async def catch_up(self) -> int:
        """Apply every durable revocation after our position; end any sockets still open."""
        async with self._catch_up_lock:
            ended = 0
            while True:
                rows = await self._db.fetch_all(
                    "SELECT position, session_id, code, created_at, prune_after FROM revocations"
                    " WHERE position > ? ORDER BY position LIMIT ?",
                    (self.revoked.position, CATCH_UP_BATCH))
                if not rows:
                    break
                by_code: dict[str, list[str]] = {}
                for row in rows:
                    self.revoked.add(row["session_id"], row["code"], row["prune_after"])
                    by_code.setdefault(row["code"], []).append(row["session_id"])
                self.revoked.position = rows[-1]["position"]
                self.catch_ups += 1
                if self.local is not None:
                    for code, sids in by_code.items():
                        n = await self.local.end_sessions(sids, code)
                        if n and self.on_sockets_ended is not None:
                            self.on_sockets_ended(code, n, None)
                        ended += n
                if len(rows) < CATCH_UP_BATCH:
                    break
            self._synced_at = self._clock.monotonic()
            self._settled.set()
            return ended

    # --- the hot path -------------------------------------------------------------

    def revoked_code(self, session_id: str) -> str | None:
        return self.revoked.code(session_id)

    def sync_age(self) -> float:
        """Seconds since this node last confirmed it holds every durable revocation."""
        return self._clock.monotonic() - self._synced_at

    def is_fresh(self) -> bool:
        """False once this node may have missed revocations for longer than allowed."""
        if self._feed.is_healthy() and not self._poll_store:
            return True
        return self._clock.monotonic() - self._synced_at <= self._staleness

    async def settled(self) -> None:
        """Wait until this node's revoked set may be trusted for an authentication.

        Steady state: returns at once. While a message announced revocations we have
        not loaded yet: waits for that catch-up. While the feed is down (Redis outage),
        other nodes' kills cannot reach us live, so we read the durable log first
        (one indexed query, shared by concurrent callers) — the degraded mode trades
        a little latency for never admitting a session killed elsewhere.
        """
        if not self._settled.is_set():
            await self._settled.wait()
        if not self._poll_store and not self._feed.is_healthy():
            try:
                await self.catch_up()
            except (aiosqlite.Error, OSError):
                log.warning("catch-up during feed outage failed", exc_info=True)

    # --- background -------------------------------------------------------------

    async def run_sync_loop(self) -> None:
        """Periodic catch-up and pruning; runs for the life of the app."""
        while True:
            # Every second, whatever the feed's health: one indexed read when nothing is
            # new, and the bound on how long a kill whose announcement was lost can wait.
            await asyncio.sleep(SYNC_INTERVAL)
            try:
                await self.catch_up()
                self.revoked.prune(self._clock.now())
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("periodic catch-up failed", exc_info=True)

    async def publish_event(self, name: str, data: dict[str, Any]) -> None:
        """Announce an admin event cluster-wide (delivered to this node via the feed too)."""
        await self._feed.publish(EventMessage(origin=self.node_id, name=name, data=data))

    async def _emit_event(self, name: str, data: dict[str, Any]) -> None:
        try:
            await self.publish_event(name, data)
        except Exception:
            log.warning("could not publish %s event", name, exc_info=True)


def _target_label(scope: str, target: str | None) -> str:
    if scope == "all":
        return "all"
    return f"{scope}:{target}"
