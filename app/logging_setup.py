"""Structured logs: one JSON object (or one logfmt line) per event, credentials masked.

Every line carries the request context bound by the HTTP middleware
(``request_id``, ``route``, ``user_id``, ``session_id``) when there is one.
Context lives in a :class:`contextvars.ContextVar`: aiohttp runs each request
in its own task, so a request's context never leaks into another's.

Redaction is the last line of defence, not the first: code should not log
secrets at all. The formatter still masks, in the message, the exception text
and every extra field, anything shaped like a JWT, a Latch refresh token
(``lrt_…``), a ``Bearer`` credential, a cookie, a password field, a private
key or the password in a URL; and fields *named* like secrets are dropped
whatever their value.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import MappingProxyType
from typing import Any, TextIO

MASK = "[REDACTED]"

_EMPTY: Mapping[str, str] = MappingProxyType({})
_context: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "latch_log_context", default=_EMPTY)
CONTEXT_FIELDS = ("request_id", "route", "user_id", "session_id")

_SECRET_NAMES = re.compile(
    r"(?i)^(?:.*_)?(?:password|passwd|secret|token|cookie|authorization|api_key|private_key|key)"
    r"(?:s)?$")

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # PEM private keys, whole.
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(?:-----END [A-Z ]*PRIVATE KEY-----|\Z)",
                re.S), "[REDACTED PRIVATE KEY]"),
    # Cookie headers: everything up to the end of the line.
    (re.compile(r"(?i)\b((?:set-)?cookie\s*[:=]\s*)[^\r\n]+"), r"\1" + MASK),
    # Bearer credentials (Authorization header values, log lines quoting them).
    (re.compile(r"(?i)\b(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + MASK),
    # JWS / JWE compact serialisations: a base64url JSON header ("eyJ") and 2–4 more segments.
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){1,4}"), MASK),
    # Latch refresh tokens.
    (re.compile(r"\blrt_[A-Za-z0-9_-]{6,}"), "lrt_" + MASK),
    # Our cookies by name, wherever they appear (name=value).
    (re.compile(r"(?i)\b((?:__Secure-)?latch_(?:rt|fgp)=)[^;,\s\"']+"), r"\1" + MASK),
    # key=value / "key": "value" pairs whose key names a secret.
    (re.compile(r"(?i)([\"']?\b[a-z_]*(?:password|passwd|secret|token|api_key|private_key)"
                r"[\"']?\s*[:=]\s*)(\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|[^\s,;&})\]]+)"),
     r"\1" + MASK),
    # Passwords in URLs (redis://:pw@host, https://user:pw@host).
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@"), r"\1" + MASK + "@"),
)


def redact(text: str) -> str:
    """``text`` with anything that looks like a credential replaced by ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _clean(name: str, value: Any) -> Any:
    """A structured field's value, fit for the log."""
    if _SECRET_NAMES.match(name) and value is not None and name not in _SAFE_NAMES:
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {str(k): _clean(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(name, v) for v in value]
    return redact(repr(value))


# Names that match the secret pattern but hold no secret.
_SAFE_NAMES = frozenset({"token_type", "token_expires_at", "key_id", "kid"})


# --- request context -------------------------------------------------------------


def bind(**fields: str | None) -> contextvars.Token[Mapping[str, str]]:
    """Add fields (``request_id``, ``route``, ``user_id``, ``session_id``) to the current context."""
    merged = dict(_context.get())
    merged.update({k: v for k, v in fields.items() if v is not None})
    return _context.set(MappingProxyType(merged))


def reset(token: contextvars.Token[Mapping[str, str]]) -> None:
    _context.reset(token)


def current() -> Mapping[str, str]:
    return _context.get()


@contextmanager
def bound(**fields: str | None) -> Iterator[None]:
    token = bind(**fields)
    try:
        yield
    finally:
        reset(token)


# --- formatting ---------------------------------------------------------------------

# Attributes every LogRecord has; anything else came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "taskName"}


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        + f".{int(record.msecs):03d}Z",
        "level": record.levelname.lower(),
        "logger": record.name,
    }
    message = record.getMessage()
    parsed = _json_object(message)
    if parsed is not None:  # a line that is already a JSON object: merge its fields
        out.update({str(k): _clean(str(k), v) for k, v in parsed.items()})
        out.setdefault("msg", str(parsed.get("event", "")))
    else:
        out["msg"] = redact(message)
    for name, value in current().items():
        out.setdefault(name, redact(value))
    for name, value in vars(record).items():
        if name not in _RECORD_ATTRS and not name.startswith("_"):
            out[name] = _clean(name, value)
    if record.exc_info:
        out["exc"] = redact(logging.Formatter().formatException(record.exc_info))
    elif record.exc_text:
        out["exc"] = redact(record.exc_text)
    if record.stack_info:
        out["stack"] = redact(record.stack_info)
    return out


def _json_object(message: str) -> dict[str, Any] | None:
    if not (message.startswith("{") and message.endswith("}")):
        return None
    try:
        value = json.loads(message)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class JsonFormatter(logging.Formatter):
    """One JSON object per line."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(_fields(record), ensure_ascii=False, default=str, separators=(",", ":"))


_LOGFMT_BARE = re.compile(r"[A-Za-z0-9_.:/@+-]+")


class LogfmtFormatter(logging.Formatter):
    """``key=value`` pairs on one line (``LATCH_LOG_FORMAT=text``), easy to read and to grep."""

    def format(self, record: logging.LogRecord) -> str:
        parts = []
        for key, value in _fields(record).items():
            if not isinstance(value, str):
                value = json.dumps(value, default=str)
            if not _LOGFMT_BARE.fullmatch(value):
                value = json.dumps(value, ensure_ascii=False)
            parts.append(f"{key}={value}")
        return " ".join(parts)


class RedactingFilter(logging.Filter):
    """For handlers with a foreign formatter: masks the rendered message in place."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


_HANDLER_NAME = "latch"


def configure(log_format: str = "json", level: str = "INFO", *,
              stream: TextIO | None = None) -> logging.Handler:
    """Send every logger's records to ``stream`` (stderr) as JSON or logfmt lines.

    Idempotent: a second call replaces the handler the first one installed.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(JsonFormatter() if log_format == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if old.get_name() == _HANDLER_NAME:
            root.removeHandler(old)
    root.addHandler(handler)
    name = level.upper()
    root.setLevel(name if name in logging.getLevelNamesMapping() else "INFO")
    return handler
