"""The audit log: who did what to whom, when, from where. Never a secret."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import aiosqlite

from app.clock import Clock
from app.db import Database

FORBIDDEN_DETAIL_KEYS = frozenset(
    {"password", "old_password", "new_password", "token", "refresh_token", "access_token"}
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who performs an action: a user (id + name) or the CLI/system, and from where."""

    id: str | None
    name: str
    ip: str | None = None

    @classmethod
    def system(cls, name: str = "system") -> Actor:
        return cls(id=None, name=name, ip=None)


class AuditLog:
    def __init__(self, db: Database, clock: Clock) -> None:
        self._db = db
        self._clock = clock

    async def record(self, tx: aiosqlite.Connection, actor: Actor, action: str,
                     target: str | None = None, **detail: Any) -> None:
        """Append an entry inside the caller's transaction (so it commits with the change)."""
        clean = {k: v for k, v in detail.items() if k not in FORBIDDEN_DETAIL_KEYS}
        await tx.execute(
            "INSERT INTO audit (at, actor_id, actor_name, action, target, ip, detail)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (self._clock.now(), int(actor.id) if actor.id else None, actor.name, action,
             target, actor.ip, json.dumps(clean, default=str)),
        )

    async def page(self, *, limit: int, before: int | None) -> tuple[list[dict[str, Any]], int | None]:
        params: list[Any] = []
        where = ""
        if before is not None:
            where = "WHERE id < ?"
            params.append(before)
        rows = await self._db.fetch_all(
            f"SELECT * FROM audit {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
            (*params, limit + 1),
        )
        entries = [_entry(r) for r in rows[:limit]]
        next_before = entries[-1]["id"] if len(rows) > limit else None
        return entries, next_before


def _entry(row: aiosqlite.Row) -> dict[str, Any]:
    try:
        detail = json.loads(row["detail"])
    except ValueError:
        detail = {}
    actor = None
    if row["actor_name"] is not None:
        actor = {"id": str(row["actor_id"]) if row["actor_id"] is not None else None,
                 "username": row["actor_name"]}
    return {"id": row["id"], "at": row["at"], "actor": actor, "action": row["action"],
            "target": row["target"], "ip": row["ip"], "detail": detail}
