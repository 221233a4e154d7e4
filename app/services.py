"""The services of one running node, built by the app factory and stored on the app."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from app.accounts import AccountService
from app.audit import AuditLog
from app.authn import Authenticator
from app.clock import Clock
from app.config import Settings
from app.db import Database
from app.feed import Feed
from app.keys import Keyring
from app.revocation import RevocationService
from app.sessions import SessionService
from app.throttle import LoginThrottle
from app.tokens import TokenService
from app.users import UserStore


@dataclass(slots=True)
class Services:
    settings: Settings
    clock: Clock
    db: Database
    keyring: Keyring
    tokens: TokenService
    audit: AuditLog
    users: UserStore
    feed: Feed
    revocation: RevocationService
    throttle: LoginThrottle
    sessions: SessionService
    accounts: AccountService
    authenticator: Authenticator
    redis: Any = None  # redis.asyncio.Redis when configured
    extras: dict[str, Any] = field(default_factory=dict)


SERVICES: web.AppKey[Services] = web.AppKey("latch_services", Services)
