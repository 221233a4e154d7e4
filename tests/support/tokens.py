"""Tokens for socket tests: a shifted clock, tokens minted with the server's own key,
and the shape every refusal must have."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from app.services import SERVICES
from app.tokens import TokenService
from tests.support import RunningServer


class ShiftedClock:
    """The system clock moved by ``shift`` seconds (settable: tests move it as they go)."""

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift

    def now(self) -> float:
        return time.time() + self.shift

    def monotonic(self) -> float:
        return time.monotonic()


def mint(server: RunningServer, *, user_id: str, session_id: str, role: str = "admin",
         shift: float = 0.0) -> str:
    """An access token signed by the server's own key, issued ``shift`` seconds from now."""
    settings = server.settings
    issuer = TokenService(server.app[SERVICES].keyring, issuer=settings.issuer,
                          audience=settings.audience, access_ttl=settings.access_ttl,
                          clock=ShiftedClock(shift))
    return issuer.issue_access(user_id=user_id, session_id=session_id, role=role).token


def token_exp(token: str) -> int:
    part = token.split(".")[1]
    return int(json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))["exp"])


def assert_refusal(data: Any, code: str) -> None:
    """A ``connect_error`` as the contract shapes it: ``message`` = code, ``data`` = {code, message}."""
    assert isinstance(data, dict), data
    assert data["message"] == code, data
    assert set(data["data"]) == {"code", "message"}, data
    assert data["data"]["code"] == code and isinstance(data["data"]["message"], str), data
