"""Sessions: login, refresh-token rotation with reuse detection, listing.

A session is one login on one device. Its refresh token is an opaque random
string stored only as a SHA-256 hash (it has 256 bits of entropy, so a slow
hash adds nothing). Each refresh rotates it; the replaced hashes are kept, so
presenting one again is recognised as theft and revokes the whole session.
Rotation is a compare-and-swap inside ``BEGIN IMMEDIATE``: of N concurrent
refreshes with one token, exactly one wins, across processes too.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Any

import aiosqlite

from app.audit import Actor, AuditLog
from app.clock import Clock
from app.config import Settings
from app.db import Database
from app.errors import (
    BadRequest,
    InvalidCredentials,
    NotFound,
    RefreshInvalid,
    RefreshReused,
    RefreshSessionExpired,
    RefreshSessionRevoked,
)
from app.passwords import MAX_LENGTH
from app.revocation import RevocationService
from app.throttle import LoginThrottle
from app.tokens import TokenService, fingerprint_hash, new_fingerprint
from app.users import User, UserStore, user_from_row

REFRESH_PREFIX = "lrt_"
MAX_DEVICE = 100
MAX_USER_AGENT = 300
MAX_REFRESH_TOKEN = 200


def hash_refresh(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_refresh_token() -> str:
    return REFRESH_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class ClientInfo:
    ip: str | None
    user_agent: str | None

    def clipped_agent(self) -> str | None:
        return self.user_agent[:MAX_USER_AGENT] if self.user_agent else None


@dataclass(frozen=True, slots=True)
class SessionInfo:
    id: str
    user_id: str
    device: str
    ip: str | None
    user_agent: str | None
    transport: str
    created_at: float
    last_seen_at: float
    expires_at: float
    idle_expires_at: float
    revoked_at: float | None
    revoked_code: str | None
    revoked_reason: str | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "device": self.device, "created_at": self.created_at,
            "last_seen_at": self.last_seen_at, "expires_at": self.expires_at,
            "idle_expires_at": self.idle_expires_at, "ip": self.ip, "user_agent": self.user_agent,
            "revoked_at": self.revoked_at, "revoked_reason": self.revoked_code,
        }

    def is_active(self, now: float) -> bool:
        return self.revoked_at is None and min(self.expires_at, self.idle_expires_at) > now


def session_from_row(row: aiosqlite.Row) -> SessionInfo:
    return SessionInfo(
        id=row["id"], user_id=str(row["user_id"]), device=row["device"], ip=row["ip"],
        user_agent=row["user_agent"], transport=row["transport"], created_at=row["created_at"],
        last_seen_at=row["last_seen_at"], expires_at=row["expires_at"],
        idle_expires_at=row["idle_expires_at"], revoked_at=row["revoked_at"],
        revoked_code=row["revoked_code"], revoked_reason=row["revoked_reason"])


@dataclass(frozen=True, slots=True)
class Grant:
    """What a login or refresh hands out. ``fingerprint`` goes only into a cookie."""

    access_token: str
    expires_in: int
    expires_at: int
    refresh_token: str
    session_id: str
    user: User
    transport: str
    fingerprint: str | None

    def body(self, *, include_refresh: bool) -> dict[str, Any]:
        out: dict[str, Any] = {
            "access_token": self.access_token, "token_type": "Bearer",
            "expires_in": self.expires_in, "session_id": self.session_id,
            "user": self.user.public(),
        }
        if include_refresh:
            out["refresh_token"] = self.refresh_token
        return out


def check_device(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadRequest("device must be a string")
    return "".join(ch for ch in value if ch.isprintable())[:MAX_DEVICE].strip()


class SessionService:
    def __init__(self, db: Database, users: UserStore, tokens: TokenService,
                 revocation: RevocationService, audit: AuditLog, throttle: LoginThrottle,
                 clock: Clock, settings: Settings) -> None:
        self._db = db
        self._users = users
        self._tokens = tokens
        self._revocation = revocation
        self._audit = audit
        self._throttle = throttle
        self._clock = clock
        self._settings = settings

    async def login(self, username: object, password: object, *, device: object,
                    transport: object, client: ClientInfo) -> Grant:
        if not isinstance(username, str) or not isinstance(password, str):
            raise BadRequest("username and password must be strings")
        if not username or len(username) > 256 or len(password) > MAX_LENGTH * 4:
            raise InvalidCredentials()
        if transport is None:
            transport = "body"
        if transport not in ("body", "cookie"):
            raise BadRequest("transport must be 'body' or 'cookie'")
        device_name = check_device(device)
        await self._throttle.check(username, client.ip)
        found = await self._users.find_by_name(username)
        user, stored = found if found else (None, None)
        ok = await self._users_verify(stored, password)
        if not ok or user is None or user.disabled:
            await self._throttle.failed(username, client.ip)
            raise InvalidCredentials()
        await self._throttle.succeeded(username, client.ip)
        assert stored is not None
        await self._users.rehash_if_needed(user.id, stored, password)

        now = self._clock.now()
        session_id = secrets.token_hex(16)  # hex: never starts with '-' (CLI arguments)
        refresh = new_refresh_token()
        fingerprint = new_fingerprint() if transport == "cookie" else None
        fgp = fingerprint_hash(fingerprint) if fingerprint else None
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO sessions (id, user_id, device, ip, user_agent, transport,"
                " fingerprint_hash, created_at, last_seen_at, expires_at, idle_expires_at,"
                " refresh_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (session_id, int(user.id), device_name, client.ip, client.clipped_agent(),
                 transport, fgp, now, now, now + self._settings.refresh_ttl,
                 now + self._settings.refresh_idle_ttl, hash_refresh(refresh)))
            await self._audit.record(tx, Actor(user.id, user.username, client.ip), "login",
                                     f"session:{session_id}", device=device_name,
                                     transport=transport)
        return self._grant(user, session_id, refresh, str(transport), fgp, fingerprint)

    async def _users_verify(self, stored: str | None, password: str) -> bool:
        return await self._users.check_hash(stored, password)

    def _grant(self, user: User, session_id: str, refresh: str, transport: str,
               fgp: str | None, fingerprint: str | None) -> Grant:
        issued = self._tokens.issue_access(user_id=user.id, session_id=session_id,
                                           role=user.role, fingerprint_hash=fgp,
                                           username=user.username)
        return Grant(access_token=issued.token, expires_in=self._settings.access_ttl,
                     expires_at=issued.claims.exp, refresh_token=refresh, session_id=session_id,
                     user=user, transport=transport, fingerprint=fingerprint)

    async def refresh(self, refresh_token: object, *, client: ClientInfo) -> Grant:
        if not isinstance(refresh_token, str) or not refresh_token:
            raise RefreshInvalid()
        if len(refresh_token) > MAX_REFRESH_TOKEN or not refresh_token.startswith(REFRESH_PREFIX):
            raise RefreshInvalid()
        presented = hash_refresh(refresh_token)
        now = self._clock.now()
        new_token = new_refresh_token()
        reused_session: str | None = None
        async with self._db.transaction() as tx:
            async with tx.execute(
                "SELECT s.*, u.username, u.role, u.disabled, u.created_at AS u_created,"
                " u.updated_at AS u_updated FROM sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.refresh_hash = ?", (presented,)) as cur:
                row = await cur.fetchone()
            if row is None:
                async with tx.execute("SELECT session_id FROM refresh_history WHERE hash = ?",
                                      (presented,)) as cur:
                    old = await cur.fetchone()
                if old is None:
                    raise RefreshInvalid()
                reused_session = old["session_id"]
            else:
                if row["revoked_at"] is not None or row["disabled"]:
                    raise RefreshSessionRevoked()
                if min(row["expires_at"], row["idle_expires_at"]) <= now:
                    raise RefreshSessionExpired()
                await tx.execute(
                    "UPDATE sessions SET refresh_hash = ?, last_seen_at = ?, idle_expires_at = ?,"
                    " ip = coalesce(?, ip) WHERE id = ? AND refresh_hash = ?",
                    (hash_refresh(new_token), now,
                     min(now + self._settings.refresh_idle_ttl, row["expires_at"]),
                     client.ip, row["id"], presented))
                await tx.execute(
                    "INSERT INTO refresh_history (hash, session_id, rotated_at) VALUES (?, ?, ?)",
                    (presented, row["id"], now))
        if reused_session is not None:
            # Theft: the rotated token was presented again. Kill the whole session.
            await self._revocation.revoke_session(
                reused_session, code="refresh_reused", actor=Actor(None, "system", client.ip),
                reason="refresh token reused", action="session.refresh_reused")
            raise RefreshReused()
        assert row is not None
        user = User(id=str(row["user_id"]), username=row["username"], role=row["role"],
                    disabled=False, created_at=row["u_created"], updated_at=row["u_updated"])
        return self._grant(user, row["id"], new_token, row["transport"],
                           row["fingerprint_hash"], None)

    async def get(self, session_id: str) -> SessionInfo | None:
        if not session_id or len(session_id) > 64:
            return None
        row = await self._db.fetch_one("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return session_from_row(row) if row else None

    async def get_owned(self, session_id: str, user_id: str) -> SessionInfo:
        """The session if it belongs to ``user_id``; otherwise 404 (never 403: no IDOR oracle)."""
        info = await self.get(session_id)
        if info is None or info.user_id != user_id:
            raise NotFound("no such session")
        return info

    async def list_for_user(self, user_id: str) -> list[SessionInfo]:
        rows = await self._db.fetch_all(
            "SELECT * FROM sessions WHERE user_id = ? AND revoked_at IS NULL"
            " AND min(expires_at, idle_expires_at) > ? ORDER BY last_seen_at DESC",
            (int(user_id), self._clock.now()))
        return [session_from_row(r) for r in rows]

    async def list_all(self, *, user_id: str | None, active: bool | None, limit: int,
                       offset: int) -> tuple[list[tuple[SessionInfo, User]], int]:
        where, params = [], []
        if user_id is not None:
            where.append("s.user_id = ?")
            params.append(int(user_id))
        if active is True:
            where.append("s.revoked_at IS NULL AND min(s.expires_at, s.idle_expires_at) > ?")
            params.append(self._clock.now())
        elif active is False:
            where.append("(s.revoked_at IS NOT NULL OR min(s.expires_at, s.idle_expires_at) <= ?)")
            params.append(self._clock.now())
        clause = ("WHERE " + " AND ".join(where)) if where else ""
        rows = await self._db.fetch_all(
            "SELECT s.*, u.id AS u_id, u.username, u.role, u.disabled, u.created_at AS u_created,"  # noqa: S608
            f" u.updated_at AS u_updated FROM sessions s JOIN users u ON u.id = s.user_id {clause}"
            " ORDER BY s.last_seen_at DESC LIMIT ? OFFSET ?", (*params, limit, offset))
        total_row = await self._db.fetch_one(
            f"SELECT count(*) FROM sessions s {clause}", params)  # noqa: S608
        out = []
        for r in rows:
            user = User(id=str(r["u_id"]), username=r["username"], role=r["role"],
                        disabled=bool(r["disabled"]), created_at=r["u_created"],
                        updated_at=r["u_updated"])
            out.append((session_from_row(r), user))
        return out, int(total_row[0]) if total_row else 0

    async def user_for_session(self, session_id: str) -> User | None:
        row = await self._db.fetch_one(
            "SELECT u.* FROM users u JOIN sessions s ON s.user_id = u.id WHERE s.id = ?",
            (session_id,))
        return user_from_row(row) if row else None
