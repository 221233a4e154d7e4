"""Password hashing with argon2id, off the event loop.

Passwords are NFKC-normalised before hashing so that the same visible password
typed on different keyboards matches. Unknown users are verified against a
dummy hash so that every failed login costs the same time.
"""

from __future__ import annotations

import asyncio
import unicodedata

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from app.errors import BadRequest

MIN_LENGTH = 8
MAX_LENGTH = 1024


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_policy(password: object) -> str:
    """Validate a new password; return it normalised."""
    if not isinstance(password, str):
        raise BadRequest("password must be a string")
    value = normalise(password)
    if len(value) < MIN_LENGTH:
        raise BadRequest(f"password must be at least {MIN_LENGTH} characters")
    if len(value) > MAX_LENGTH:
        raise BadRequest(f"password must be at most {MAX_LENGTH} characters")
    return value


class PasswordHasher:
    def __init__(self, *, time_cost: int = 2, memory_cost: int = 19 * 1024,
                 parallelism: int = 1) -> None:
        # OWASP minimum for argon2id: m=19 MiB, t=2, p=1.
        self._argon = _Argon2(time_cost=time_cost, memory_cost=memory_cost,
                              parallelism=parallelism)
        self._dummy = self._argon.hash("latch-dummy-password-for-timing")

    async def hash(self, password: str) -> str:
        value = normalise(password)
        return await asyncio.get_running_loop().run_in_executor(None, self._argon.hash, value)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True if ``password`` matches; with ``stored_hash=None`` burns the same time."""
        value = normalise(password)[: MAX_LENGTH * 4]
        target = stored_hash or self._dummy
        ok = await asyncio.get_running_loop().run_in_executor(None, self._verify, target, value)
        return ok and stored_hash is not None

    def _verify(self, stored_hash: str, password: str) -> bool:
        try:
            return self._argon.verify(stored_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        try:
            return self._argon.check_needs_rehash(stored_hash)
        except InvalidHashError:
            return True
