"""The one error tree.

Every error Latch reports to a client is a :class:`LatchError`. Each class
carries the contract's ``code`` string and its HTTP ``status``; the edge turns
them into JSON responses (``handlers.http_errors``) or Socket.IO refusals
(``handlers.sockets``) without knowing the concrete class. Callers can catch
broadly (``AuthError``) or narrowly (``TokenExpired``).

This module imports no web framework, so core code can raise these freely.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LatchError(Exception):
    """Base of every error that reaches a client."""

    code: ClassVar[str] = "internal_error"
    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "Internal error"

    def __init__(self, message: str | None = None, **data: Any) -> None:
        self.message = message or self.default_message
        self.data = data
        super().__init__(self.message)

    def as_dict(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}

    @property
    def headers(self) -> dict[str, str]:
        return {}


class ConfigError(Exception):
    """Invalid configuration at start-up. Not a client error: the process exits."""


# --- 4xx client errors -------------------------------------------------------


class ClientError(LatchError):
    status = 400
    code = "bad_request"
    default_message = "Bad request"


class BadRequest(ClientError):
    pass


class UnsupportedMediaType(ClientError):
    status = 415
    code = "unsupported_media_type"
    default_message = "Content-Type must be application/json"


class PayloadTooLarge(ClientError):
    status = 413
    code = "payload_too_large"
    default_message = "Request body too large"


class NotFound(ClientError):
    status = 404
    code = "not_found"
    default_message = "Not found"


class MethodNotAllowed(ClientError):
    status = 405
    code = "method_not_allowed"
    default_message = "Method not allowed"


class Conflict(ClientError):
    status = 409
    code = "conflict"
    default_message = "Conflict"


class Forbidden(ClientError):
    status = 403
    code = "forbidden"
    default_message = "Forbidden"


class TooManyAttempts(ClientError):
    status = 429
    code = "too_many_attempts"
    default_message = "Too many attempts; try again later"

    def __init__(self, retry_after: int, message: str | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class ServiceUnavailable(LatchError):
    status = 503
    code = "service_unavailable"
    default_message = "Service temporarily unavailable"


# --- authentication (401) ----------------------------------------------------


class AuthError(ClientError):
    """Anything that means "you are not (or no longer) authenticated"."""

    status = 401
    code = "unauthorized"
    default_message = "Authentication required"


class InvalidCredentials(AuthError):
    code = "invalid_credentials"
    default_message = "Invalid username or password"


class TokenError(AuthError):
    """An access token was refused. Bearer routes add ``WWW-Authenticate``."""

    code = "token_invalid"
    default_message = "Access token is invalid"

    @property
    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class TokenMissing(TokenError):
    code = "token_missing"
    default_message = "Access token is missing"

    @property
    def headers(self) -> dict[str, str]:
        # RFC 6750 §3.1: no error code when the request carried no credentials.
        return {"WWW-Authenticate": 'Bearer realm="latch"'}


class TokenInvalid(TokenError):
    code = "token_invalid"


class TokenExpired(TokenError):
    code = "token_expired"
    default_message = "Access token has expired"


class SessionRevoked(TokenError):
    code = "session_revoked"
    default_message = "Session has been revoked"


class UserDisabled(TokenError):
    code = "user_disabled"
    default_message = "User is disabled"


class SessionMismatch(TokenError):
    code = "session_mismatch"
    default_message = "Token belongs to another user or session"


class RefreshError(AuthError):
    code = "refresh_invalid"
    default_message = "Refresh token is invalid"


class RefreshInvalid(RefreshError):
    pass


class RefreshReused(RefreshError):
    code = "refresh_reused"
    default_message = "Refresh token was already used; the session has been revoked"


class RefreshSessionRevoked(RefreshError):
    code = "session_revoked"
    default_message = "Session has been revoked"


class RefreshSessionExpired(RefreshError):
    code = "session_expired"
    default_message = "Session has expired"
