"""Where a Socket.IO handshake may carry credentials, and where it may not.

The token comes from the namespace ``auth: {token}`` payload or the handshake's
``Authorization: Bearer`` header — never from the URL, which proxies and access
logs keep. The fingerprint cookie (token sidejacking defence) is read from the
handshake request too; the Authenticator decides whether the token needs it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote_plus

from app.errors import TokenInvalid

# Query parameters a client might (wrongly) carry a token in; refused outright.
_QUERY_TOKEN_NAMES = frozenset({"token", "access_token", "accesstoken", "auth",
                                "authorization", "jwt", "bearer", "id_token"})
_ENGINEIO_PARAMS = frozenset({"EIO", "transport", "t", "sid", "j", "b64"})


def handshake_token(environ: dict[str, Any], auth: Any) -> str | None:
    """The token from ``auth: {token}`` or ``Authorization: Bearer``; None if neither.

    Raises :class:`TokenInvalid` for a token in the query string (even alongside a
    good one: the client has leaked it and must be fixed) and for credentials of
    the wrong shape.
    """
    query = environ.get("QUERY_STRING")
    if query and query_carries_token(query):
        raise TokenInvalid("Access tokens are not accepted in the URL; "
                           "send auth: {token} or an Authorization header")
    if auth is not None:
        if not isinstance(auth, dict):
            raise TokenInvalid("auth must be an object {token}")
        token = auth.get("token")
        if token is not None:
            if not isinstance(token, str):
                raise TokenInvalid("auth.token must be a string")
            return token
    header = environ.get("HTTP_AUTHORIZATION")
    if header is not None:
        scheme, _, value = header.strip().partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value or " " in value or "," in value:
            raise TokenInvalid("Authorization header must be 'Bearer <token>'")
        return value
    return None


def query_carries_token(query: str) -> bool:
    """True if a parameter is named like a credential or its value looks like a JWT."""
    for part in query.split("&"):
        name, _, value = part.partition("=")
        if name in _ENGINEIO_PARAMS:  # the common case: nothing to decode
            continue
        name = unquote_plus(name).lower()
        value = unquote_plus(value)
        if name in _QUERY_TOKEN_NAMES or value.startswith("eyJ") \
                or value[:7].lower() == "bearer ":
            return True
    return False


def fingerprint_from(environ: dict[str, Any] | None, cookie: str) -> str | None:
    """The fingerprint cookie of the handshake request (kept for the socket's lifetime)."""
    if not environ or "HTTP_COOKIE" not in environ:
        return None
    request = environ.get("aiohttp.request")
    return request.cookies.get(cookie) if request is not None else None
