"""Users: the store and the operations on it (create, list, password, role, disable).

Operations that must end sessions (disable, role change, password change) are
done by ``app.accounts`` which combines this module with the revocation path.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiosqlite

from app.audit import Actor, AuditLog
from app.clock import Clock
from app.db import Database
from app.errors import BadRequest, Conflict, NotFound
from app.passwords import PasswordHasher, check_policy

ROLES = ("user", "admin")
MAX_USERNAME = 64


@dataclass(frozen=True, slots=True)
class User:
    id: str
    username: str
    role: str
    disabled: bool
    created_at: float
    updated_at: float

    def public(self) -> dict[str, str]:
        return {"id": self.id, "username": self.username, "role": self.role}

    def as_dict(self) -> dict[str, Any]:
        return {**self.public(), "disabled": self.disabled,
                "created_at": self.created_at, "updated_at": self.updated_at}


def user_from_row(row: aiosqlite.Row) -> User:
    return User(id=str(row["id"]), username=row["username"], role=row["role"],
                disabled=bool(row["disabled"]), created_at=row["created_at"],
                updated_at=row["updated_at"])


def check_username(value: object) -> str:
    if not isinstance(value, str):
        raise BadRequest("username must be a string")
    name = unicodedata.normalize("NFKC", value).strip()
    if not name or len(name) > MAX_USERNAME:
        raise BadRequest(f"username must be 1 to {MAX_USERNAME} characters")
    if any(unicodedata.category(ch).startswith("C") for ch in name):
        raise BadRequest("username may not contain control characters")
    return name


def check_role(value: object) -> str:
    if value not in ROLES:
        raise BadRequest("role must be 'user' or 'admin'")
    return str(value)


def parse_user_id(value: str) -> int:
    """User ids are integers on the inside, strings on the wire; junk is just 'not found'."""
    # isascii(): str.isdigit() accepts other scripts' digits ("١" would parse as 1).
    if not (value.isascii() and value.isdigit()) or len(value) > 18:
        raise NotFound("no such user")
    return int(value)


class UserStore:
    def __init__(self, db: Database, hasher: PasswordHasher, audit: AuditLog,
                 clock: Clock) -> None:
        self._db = db
        self._hasher = hasher
        self._audit = audit
        self._clock = clock

    async def count(self) -> int:
        row = await self._db.fetch_one("SELECT count(*) FROM users")
        return int(row[0]) if row else 0

    async def create(self, username: object, password: object, role: object = "user", *,
                     actor: Actor) -> User:
        name = check_username(username)
        pw = check_policy(password)
        role_ = check_role(role)
        password_hash = await self._hasher.hash(pw)
        now = self._clock.now()
        try:
            async with self._db.transaction() as tx:
                cur = await tx.execute(
                    "INSERT INTO users (username, password_hash, role, created_at, updated_at)"
                    " VALUES (?, ?, ?, ?, ?)", (name, password_hash, role_, now, now))
                user_id = cur.lastrowid
                await self._audit.record(tx, actor, "user.create", f"user:{user_id}",
                                         username=name, role=role_)
        except sqlite3.IntegrityError:
            raise Conflict("a user with that name already exists") from None
        return User(id=str(user_id), username=name, role=role_, disabled=False,
                    created_at=now, updated_at=now)

    async def get(self, user_id: str) -> User | None:
        row = await self._db.fetch_one("SELECT * FROM users WHERE id = ?",
                                       (parse_user_id(user_id),))
        return user_from_row(row) if row else None

    async def require(self, user_id: str) -> User:
        user = await self.get(user_id)
        if user is None:
            raise NotFound("no such user")
        return user

    async def find_by_name(self, username: str) -> tuple[User, str] | None:
        """The user and their password hash, by case-insensitive name."""
        name = unicodedata.normalize("NFKC", username).strip()
        row = await self._db.fetch_one("SELECT * FROM users WHERE username = ?", (name,))
        if row is None:
            return None
        return user_from_row(row), row["password_hash"]

    async def list(self, *, limit: int, offset: int) -> tuple[list[User], int]:
        rows = await self._db.fetch_all(
            "SELECT * FROM users ORDER BY id LIMIT ? OFFSET ?", (limit, offset))
        total = await self.count()
        return [user_from_row(r) for r in rows], total

    async def verify_password(self, user_id: str, password: str) -> bool:
        row = await self._db.fetch_one("SELECT password_hash FROM users WHERE id = ?",
                                       (parse_user_id(user_id),))
        return await self._hasher.verify(row["password_hash"] if row else None, password)

    async def check_hash(self, stored_hash: str | None, password: str) -> bool:
        """Verify against ``stored_hash``, or burn the same time when there is none."""
        return await self._hasher.verify(stored_hash, password)

    async def rehash_if_needed(self, user_id: str, stored_hash: str, password: str) -> None:
        if not self._hasher.needs_rehash(stored_hash):
            return
        new_hash = await self._hasher.hash(password)
        async with self._db.transaction() as tx:
            await tx.execute("UPDATE users SET password_hash = ? WHERE id = ? AND password_hash = ?",
                             (new_hash, int(user_id), stored_hash))

    async def set_password(self, tx: aiosqlite.Connection, user_id: str, password_hash: str) -> None:
        await tx.execute("UPDATE users SET password_hash = ?, updated_at = ? WHERE id = ?",
                         (password_hash, self._clock.now(), int(user_id)))

    async def set_fields(self, tx: aiosqlite.Connection, user_id: str, *,
                         role: str | None, disabled: bool | None) -> None:
        if role is not None:
            await tx.execute("UPDATE users SET role = ?, updated_at = ? WHERE id = ?",
                             (role, self._clock.now(), int(user_id)))
        if disabled is not None:
            await tx.execute("UPDATE users SET disabled = ?, updated_at = ? WHERE id = ?",
                             (int(disabled), self._clock.now(), int(user_id)))

    async def update_audited(self, user_id: str,
                             change: Callable[[aiosqlite.Connection], Awaitable[None]], *,
                             actor: Actor, action: str) -> None:
        """Run ``change`` and its audit entry in one transaction."""
        async with self._db.transaction() as tx:
            await change(tx)
            await self._audit.record(tx, actor, action, f"user:{user_id}")

    async def hash_password(self, password: str) -> str:
        return await self._hasher.hash(password)
