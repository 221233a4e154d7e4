"""The SQLite store: connections, pragmas and schema migrations.

One file shared by every local process (WAL mode). Each process keeps two
connections: a writer, used by one coroutine at a time under a lock and always
inside ``BEGIN IMMEDIATE`` (so two processes never deadlock upgrading a read
lock), and a reader that never sees another coroutine's open transaction.
Migrations are numbered scripts applied under ``PRAGMA user_version``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import Any

import aiosqlite

BUSY_TIMEOUT_MS = 10_000

MIGRATIONS: list[str] = [
    # 1: users, sessions, refresh history, the revocation log and the audit log.
    """
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        username TEXT NOT NULL UNIQUE COLLATE NOCASE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('user', 'admin')),
        disabled INTEGER NOT NULL DEFAULT 0,
        token_version INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        user_id INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        device TEXT NOT NULL DEFAULT '',
        ip TEXT,
        user_agent TEXT,
        transport TEXT NOT NULL CHECK (transport IN ('cookie', 'body')),
        fingerprint_hash TEXT,
        created_at REAL NOT NULL,
        last_seen_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        idle_expires_at REAL NOT NULL,
        refresh_hash TEXT UNIQUE,
        revoked_at REAL,
        revoked_by TEXT,
        revoked_code TEXT,
        revoked_reason TEXT
    );
    CREATE INDEX sessions_by_user ON sessions(user_id, revoked_at);
    CREATE TABLE refresh_history (
        hash TEXT PRIMARY KEY,
        session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
        rotated_at REAL NOT NULL
    );
    CREATE INDEX refresh_history_by_session ON refresh_history(session_id);
    -- The durable revocation log. ``position`` is the feed's cursor: every node
    -- remembers the last position it applied and catches up from here.
    CREATE TABLE revocations (
        position INTEGER PRIMARY KEY AUTOINCREMENT,
        session_id TEXT NOT NULL,
        user_id INTEGER NOT NULL,
        code TEXT NOT NULL,
        op TEXT NOT NULL,
        created_at REAL NOT NULL,
        prune_after REAL NOT NULL
    );
    CREATE INDEX revocations_by_prune ON revocations(prune_after);
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        at REAL NOT NULL,
        actor_id INTEGER,
        actor_name TEXT,
        action TEXT NOT NULL,
        target TEXT,
        ip TEXT,
        detail TEXT NOT NULL DEFAULT '{}'
    );
    """,
]


class Database:
    """Two aiosqlite connections over one file, plus the migration runner."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._write_lock = asyncio.Lock()

    async def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = await self._connect()
        await self._migrate()
        self._reader = await self._connect()

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None, timeout=30)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        await conn.execute("PRAGMA journal_mode = WAL")
        # FULL: a commit is on disk before we announce a revocation.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA foreign_keys = ON")
        return conn

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def _migrate(self) -> None:
        async with self.transaction() as tx:
            async with tx.execute("PRAGMA user_version") as cur:
                row = await cur.fetchone()
            version = int(row[0]) if row else 0
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in _statements(script):
                    await tx.execute(statement)
                await tx.execute(f"PRAGMA user_version = {number}")

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """A write transaction: serialised in-process by a lock, across processes by SQLite."""
        conn = self._writer
        if conn is None:
            raise RuntimeError("database is not open")
        async with self._write_lock:
            await conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                await conn.execute("ROLLBACK")
                raise
            else:
                await conn.execute("COMMIT")

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[aiosqlite.Row]:
        conn = self._reader
        if conn is None:
            raise RuntimeError("database is not open")
        async with conn.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> aiosqlite.Row | None:
        conn = self._reader
        if conn is None:
            raise RuntimeError("database is not open")
        async with conn.execute(sql, params) as cur:
            return await cur.fetchone()

    async def ping(self) -> bool:
        try:
            await asyncio.wait_for(self.fetch_one("SELECT 1"), timeout=2)
        except (TimeoutError, aiosqlite.Error, RuntimeError, ValueError):
            return False
        return True


def _statements(script: str) -> Iterable[str]:
    lines = [ln for ln in script.splitlines() if not ln.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()
