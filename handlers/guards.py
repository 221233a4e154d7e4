"""Bearer authentication for routes: who is calling, and are they an admin."""

from __future__ import annotations

from aiohttp import web

from app.audit import Actor
from app.authn import Identity, fingerprint_cookie_name
from app.errors import Forbidden
from app.services import SERVICES
from handlers.client import bearer_token, client_info

IDENTITY: web.RequestKey[Identity] = web.RequestKey("latch_identity", Identity)


async def require_identity(request: web.Request) -> Identity:
    services = request.app[SERVICES]
    await services.authenticator.settled()
    identity = services.authenticator.authenticate(
        bearer_token(request),
        fingerprint=request.cookies.get(fingerprint_cookie_name(services.settings)))
    request[IDENTITY] = identity
    return identity


async def require_admin(request: web.Request) -> Identity:
    identity = await require_identity(request)
    if identity.role != "admin":
        raise Forbidden("admin role required")
    return identity


def actor_of(request: web.Request, identity: Identity) -> Actor:
    ip = client_info(request, request.app[SERVICES].settings).ip
    return Actor(identity.user_id, identity.username, ip)
