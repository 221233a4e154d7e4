"""Turning errors into responses: the one middleware, plus JSON body reading.

Every error leaves as ``{"error": {"code", "message"}}`` with the status and
headers its class carries. Nothing unexpected leaks a traceback to a client.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from app.errors import (
    BadRequest,
    LatchError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)

log = logging.getLogger("latch.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_STATUS_ERRORS: dict[int, type[LatchError]] = {
    400: BadRequest, 404: NotFound, 405: MethodNotAllowed, 413: PayloadTooLarge,
    415: UnsupportedMediaType,
}


def error_response(error: LatchError) -> web.Response:
    return web.json_response({"error": error.as_dict()}, status=error.status,
                             headers=error.headers)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except LatchError as exc:
        return error_response(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        cls = _STATUS_ERRORS.get(exc.status)
        if cls is None:
            return web.json_response({"error": {"code": "http_error", "message": exc.reason}},
                                     status=exc.status)
        return error_response(cls())
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(LatchError())


async def read_json(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or a 4xx: 415 wrong type, 413 too big, 400 junk."""
    if request.content_type != "application/json":
        raise UnsupportedMediaType()
    try:
        raw = await request.read()  # bounded by the app's client_max_size
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge() from None
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadRequest("body is not valid JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


async def read_optional_json(request: web.Request) -> dict[str, Any]:
    """Like read_json, but an empty body (any content type) is an empty object."""
    if request.content_length in (0, None) and not request.body_exists:
        return {}
    return await read_json(request)


def optional_str(body: dict[str, Any], name: str, *, limit: int = 1000) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadRequest(f"{name} must be a string of at most {limit} characters")
    return value
