"""Authenticating an access token: the one code path for REST and sockets.

``authenticate`` is synchronous and does no I/O: signature and claims through
``app.tokens``, then the in-memory revoked set and the fingerprint cookie.
"""

from __future__ import annotations

from dataclasses import dataclass

from app.config import Settings
from app.errors import (
    ServiceUnavailable,
    SessionRevoked,
    TokenMissing,
    UserDisabled,
)
from app.revocation import RevocationService
from app.tokens import AccessClaims, TokenService, check_fingerprint

FINGERPRINT_COOKIE = "__Secure-latch_fgp"
REFRESH_COOKIE = "__Secure-latch_rt"


def fingerprint_cookie_name(settings: Settings) -> str:
    # ``__Secure-`` cookies need Secure, which browsers refuse on plain http:// origins
    # other than localhost; LATCH_INSECURE_COOKIES is the explicit local-dev escape hatch.
    return "latch_fgp" if settings.insecure_cookies else FINGERPRINT_COOKIE


def refresh_cookie_name(settings: Settings) -> str:
    return "latch_rt" if settings.insecure_cookies else REFRESH_COOKIE


@dataclass(frozen=True, slots=True)
class Identity:
    user_id: str
    username: str
    role: str
    session_id: str
    token_exp: int

    def user(self) -> dict[str, str]:
        return {"id": self.user_id, "username": self.username, "role": self.role}


class Authenticator:
    def __init__(self, tokens: TokenService, revocation: RevocationService) -> None:
        self._tokens = tokens
        self._revocation = revocation

    def authenticate(self, token: str | None, *, fingerprint: str | None) -> Identity:
        if not token:
            raise TokenMissing()
        claims = self._tokens.verify_access(token)
        self.check_live(claims)
        check_fingerprint(claims, fingerprint)
        return Identity(user_id=claims.sub, username=claims.name, role=claims.role,
                        session_id=claims.sid, token_exp=claims.exp)

    def check_live(self, claims: AccessClaims) -> None:
        """Refuse tokens of revoked sessions (and everything, if our view is too stale)."""
        if not self._revocation.is_fresh():
            raise ServiceUnavailable("revocation state is stale; try again shortly")
        code = self._revocation.revoked_code(claims.sid)
        if code is not None:
            if code == "user_disabled":
                raise UserDisabled()
            raise SessionRevoked()

    def check_session(self, session_id: str) -> None:
        code = self._revocation.revoked_code(session_id)
        if code is not None:
            raise UserDisabled() if code == "user_disabled" else SessionRevoked()

    async def settled(self) -> None:
        await self._revocation.settled()
