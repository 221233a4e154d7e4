"""Structured logs (issue 6): one JSON object per line, request context, no credentials.

The redactor and formatters are tested directly; then a real ``latch serve``
process is driven with real credentials (some in places careless clients put
them: the query string, a cookie header) and its whole log is searched for them.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import sys
from typing import Any

import aiohttp
import pytest

from app import logging_setup
from app.logging_setup import MASK, JsonFormatter, LogfmtFormatter, redact
from tests.support import login
from tests.support.nodes import LatchCluster

JWT = ("eyJhbGciOiJFZERTQSIsImtpZCI6ImFiYyIsInR5cCI6ImF0K2p3dCJ9"
       ".eyJzdWIiOiIxIiwic2lkIjoicyJ9.c2lnbmF0dXJlLWJ5dGVz")
REFRESH = "lrt_3q2-7Yk9sQmR_ZpLx0aVbNcD4eFgHiJkLmNoPqRsTuV"


# --- the redactor ---------------------------------------------------------------------------

@pytest.mark.parametrize("text, secret", [
    (f"token {JWT} refused", JWT),
    (f"Authorization: Bearer {JWT}", JWT),
    ("Authorization: bearer opaque-credential-123", "opaque-credential-123"),
    (f"refresh with {REFRESH}", REFRESH[4:]),
    ("Cookie: latch_rt=abc123def; other=1", "abc123def"),
    ("set-cookie: __Secure-latch_rt=zzzsecretzzz; HttpOnly", "zzzsecretzzz"),
    ("cookie jar had __Secure-latch_fgp=fingerprint-value-9", "fingerprint-value-9"),
    ('{"username": "bob", "password": "hunter2hunter2"}', "hunter2hunter2"),
    ("{'new_password': 'correct horse', 'old_password': 'tr0ub4dor'}", "correct horse"),
    ("password=s3cr3t-pw&user=bob", "s3cr3t-pw"),
    ('refresh_token="opaque-refresh"', "opaque-refresh"),
    ("redis://:redis-pass@10.0.0.5:6379/0", "redis-pass"),
    ("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA\n-----END PRIVATE KEY-----", "MC4CAQAw"),
])
def test_redact_masks_credentials(text: str, secret: str) -> None:
    masked = redact(text)
    assert secret not in masked
    assert "[REDACTED" in masked


@pytest.mark.parametrize("text", [
    "password must be at least 8 characters",
    '{"code": "password_changed", "token_type": "Bearer", "expires_in": 900}',
    "GET /auth/sessions/abc 404",
    "session_ended code=token_expired",
])
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


def _record(msg: str, *args: Any, exc: bool = False, **extra: Any) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError(f"bad token {JWT}")
        except ValueError:
            exc_info = sys.exc_info()
    record = logging.LogRecord("latch.test", logging.WARNING, __file__, 1, msg, args, exc_info)
    for key, value in extra.items():
        setattr(record, key, value)
    return record


def test_json_formatter_writes_one_masked_object_per_line() -> None:
    with logging_setup.bound(request_id="r-1", route="/auth/me", user_id="7", session_id="s-9"):
        line = JsonFormatter().format(_record(
            "login for %s with %s", "bob", REFRESH, exc=True, password="pw-in-extra",
            cookies={"latch_rt": "cookie-value"}, status=401, detail={"token": JWT}))
    assert "\n" not in line
    body = json.loads(line)
    assert body["level"] == "warning" and body["logger"] == "latch.test"
    assert body["ts"].endswith("Z")
    assert (body["request_id"], body["route"], body["user_id"], body["session_id"]) == (
        "r-1", "/auth/me", "7", "s-9")
    assert body["status"] == 401
    assert body["password"] == MASK and body["cookies"] == MASK and body["detail"]["token"] == MASK
    assert "ValueError" in body["exc"]
    for secret in (JWT, REFRESH[4:], "pw-in-extra", "cookie-value"):
        assert secret not in line


def test_json_formatter_merges_a_json_message() -> None:
    # handlers/access_log.py logs a JSON object as its message: its fields become the line's.
    line = JsonFormatter().format(_record(json.dumps(
        {"event": "http_request", "path": "/auth/me", "status": 200, "token": JWT})))
    body = json.loads(line)
    assert body["event"] == "http_request" and body["msg"] == "http_request"
    assert body["path"] == "/auth/me" and body["status"] == 200 and body["token"] == MASK


def test_context_is_empty_outside_a_request() -> None:
    body = json.loads(JsonFormatter().format(_record("start-up")))
    assert not set(logging_setup.CONTEXT_FIELDS) & set(body)


def test_logfmt_formatter() -> None:
    line = LogfmtFormatter().format(_record("user %s signed in", "bob", status=200,
                                            authorization=f"Bearer {JWT}"))
    assert line.startswith("ts=")
    assert 'msg="user bob signed in"' in line and "status=200" in line
    assert JWT not in line


def test_configure_is_idempotent() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    level = root.level
    try:
        logging_setup.configure("json", "info", stream=stream)
        logging_setup.configure("json", "info", stream=stream)
        logging.getLogger("latch.test").info("once with %s", JWT)
    finally:
        for handler in list(root.handlers):
            if handler.get_name() == "latch":
                root.removeHandler(handler)
        root.setLevel(level)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and JWT not in lines[0] and json.loads(lines[0])["msg"]


# --- a real node -----------------------------------------------------------------------------

async def test_a_node_logs_json_lines_without_credentials(latch_cluster: LatchCluster) -> None:
    (node,) = latch_cluster(1, LATCH_LOG_FORMAT="json")
    password = latch_cluster.admin_password
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        grant = await login(http, node.url, "admin", password)
        token, refresh = grant["access_token"], grant["refresh_token"]
        cookie = await login(http, node.url, "admin", password, transport="cookie")
        fingerprint = next(c.value for c in http.cookie_jar if c.key == "latch_fgp")
        async with http.get(f"{node.url}/auth/me", headers={
                "Authorization": f"Bearer {token}", "X-Request-ID": "trace-me-1"}) as resp:
            assert resp.status == 200
        # Careless clients: tokens in query strings and in a hand-made cookie header.
        for path in (f"/auth/me?access_token={token}", f"/healthz?token={token}&x=1",
                     f"/socket.io/?EIO=4&transport=polling&token={token}",
                     f"/auth/refresh?refresh_token={refresh}"):
            async with http.get(f"{node.url}{path}") as resp:
                await resp.read()
        async with http.post(f"{node.url}/auth/refresh", json={"refresh_token": refresh}) as resp:
            rotated = (await resp.json())["refresh_token"]
        async with http.post(f"{node.url}/auth/refresh", json={"refresh_token": refresh}) as resp:
            assert resp.status == 401  # reuse: the session is revoked, and logged
        async with http.post(f"{node.url}/auth/login",
                             json={"username": "admin", "password": "wrong-" + password}) as resp:
            assert resp.status == 401
    await node_stop(latch_cluster)

    text = node.stderr_path.read_text()
    secrets = [token, refresh, rotated, password, cookie["access_token"], fingerprint,
               token.split(".")[2], refresh[4:]]
    for secret in secrets:
        assert secret not in text, f"a credential reached the log:\n{text[-3000:]}"
    lines = [json.loads(line) for line in text.splitlines()
             if line.strip() and not line.startswith(("--- harness", "latch: "))]
    access = [line for line in lines if line.get("event") == "http_request"]
    assert len(access) >= 8
    for line in access:
        assert {"ts", "level", "request_id", "route", "status", "path"} <= set(line)
        assert "?" not in line["path"]
    me = next(line for line in access if line["request_id"] == "trace-me-1")
    assert me["route"] == "/auth/me" and me["status"] == 200
    assert me["user_id"] == "1" and me["session_id"] == grant["session_id"]


async def node_stop(cluster: LatchCluster) -> None:
    await asyncio.to_thread(cluster.stop_all)  # flush and close the log files
