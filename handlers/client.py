"""What we know about the client of a request: address, origin, bearer token.

Forwarded headers (``X-Forwarded-For``, ``-Proto``, ``-Host``) are honoured only
when the direct peer is one of ``LATCH_TRUSTED_PROXIES``; otherwise a client
could claim any address or talk the origin check into accepting a foreign site.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from aiohttp import web

from app.config import Settings
from app.sessions import ClientInfo


def _is_trusted(peer: str | None, settings: Settings) -> bool:
    if not peer or not settings.trusted_proxies:
        return False
    try:
        addr = ipaddress.ip_address(peer)
    except ValueError:
        return False
    return any(addr in net for net in settings.trusted_proxies)


def client_ip_from(peer: str | None, forwarded_for: str | None, settings: Settings) -> str | None:
    """The client address: the right-most X-Forwarded-For entry not added by a trusted proxy."""
    if not _is_trusted(peer, settings) or not forwarded_for:
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not _is_trusted(hop, settings):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return hops[0] if hops else peer


def client_info(request: web.Request, settings: Settings) -> ClientInfo:
    ip = client_ip_from(request.remote, request.headers.get("X-Forwarded-For"), settings)
    return ClientInfo(ip=ip, user_agent=request.headers.get("User-Agent"))


def own_origin(headers: Mapping[str, str], scheme: str, peer: str | None,
               settings: Settings) -> str | None:
    """This server's origin as the client sees it (``scheme://host[:port]``)."""
    host = headers.get("Host")
    if _is_trusted(peer, settings):
        host = headers.get("X-Forwarded-Host", host)
        scheme = headers.get("X-Forwarded-Proto", scheme)
    if not host:
        return None
    return f"{scheme}://{host.split(',')[0].strip()}".lower()


def origin_allowed(origin: str, headers: Mapping[str, str], scheme: str, peer: str | None,
                   settings: Settings) -> bool:
    origin = origin.rstrip("/").lower()
    if origin in settings.allowed_origins:
        return True
    return origin == own_origin(headers, scheme, peer, settings)


def request_origin_allowed(request: web.Request, settings: Settings) -> bool:
    origin = request.headers.get("Origin")
    if origin is None:
        return False
    return origin_allowed(origin, request.headers, request.scheme, request.remote, settings)


def bearer_token(request: web.Request) -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()
