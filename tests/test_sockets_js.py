"""The Socket.IO channel as the official JS client sees it (tests/js/client_scenario.mjs).

Needs ``node`` and ``npm ci --prefix tests/js``; without them these tests skip,
unless ``LATCH_REQUIRE_NODE=1`` (CI), where they fail.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.services import SERVICES
from tests.support import JsScenario, RunningServer, login, logout, refresh_rest
from tests.support.tokens import assert_refusal, mint, token_exp

ADMIN = ("admin", "admin-password-123")
JsFactory = Callable[..., JsScenario]


def expired_token(server: RunningServer, body: dict[str, Any]) -> str:
    return mint(server, user_id=body["user"]["id"], session_id=body["session_id"],
                role=body["user"]["role"], shift=-(server.settings.access_ttl + 5))


async def run_refused(js_client: JsFactory, server: RunningServer,
                      token: str | None, transports: str = "websocket") -> dict[str, Any]:
    async with js_client("refused", server.url, token, env={"TRANSPORTS": transports}) as run:
        result = await run.result()
    assert result["connected"] is False, result
    error: dict[str, Any] = result["connect_error"]
    return error


@pytest.mark.parametrize("transports", ["websocket", "polling"])
async def test_js_refusals_carry_the_code(server: RunningServer, http: aiohttp.ClientSession,
                                          js_client: JsFactory, transports: str) -> None:
    assert_refusal(await run_refused(js_client, server, None, transports), "token_missing")
    assert_refusal(await run_refused(js_client, server, "garbage", transports), "token_invalid")
    body = await login(http, server.url, *ADMIN)
    assert_refusal(await run_refused(js_client, server, expired_token(server, body),
                                     transports), "token_expired")
    await logout(http, server.url, body["access_token"])
    assert_refusal(await run_refused(js_client, server, body["access_token"], transports),
                   "session_revoked")


async def test_js_user_disabled(server: RunningServer, http: aiohttp.ClientSession,
                                js_client: JsFactory) -> None:
    from app.audit import Actor

    services = server.app[SERVICES]
    await services.users.create("erin", "user-password-123", "user", actor=Actor.system("test"))
    body = await login(http, server.url, "erin", "user-password-123")
    await services.accounts.update(body["user"]["id"], disabled=True, actor=Actor.system("test"))
    assert_refusal(await run_refused(js_client, server, body["access_token"]), "user_disabled")


@pytest.mark.parametrize("transports", ["websocket", "polling,websocket"])
async def test_js_connect_refresh_then_revoke(server: RunningServer, http: aiohttp.ClientSession,
                                              js_client: JsFactory, transports: str) -> None:
    body = await login(http, server.url, *ADMIN)
    fresh = await refresh_rest(http, server.url, body)
    async with js_client("connect", server.url, body["access_token"], fresh["access_token"],
                         env={"TRANSPORTS": transports}) as run:
        await run.wait_ready()
        await logout(http, server.url, fresh["access_token"])
        result = await run.result()
    assert result["session"] == {"user": body["user"], "session_id": body["session_id"],
                                 "expires_at": token_exp(body["access_token"])}
    assert result["refresh_ack"] == {"ok": True, "expires_at": token_exp(fresh["access_token"])}
    assert result["session_ended"]["code"] == "logged_out"
    assert result["disconnect_reason"] == "io server disconnect"
    assert [e["event"] for e in result["events"]] == ["session", "session_ended"]


async def test_js_refresh_with_another_session_is_a_mismatch(
        server: RunningServer, http: aiohttp.ClientSession, js_client: JsFactory) -> None:
    mine = await login(http, server.url, *ADMIN)
    other = await login(http, server.url, *ADMIN)
    async with js_client("connect", server.url, mine["access_token"],
                         other["access_token"]) as run:
        await run.wait_ready()
        await logout(http, server.url, mine["access_token"])
        result = await run.result()
    assert result["refresh_ack"]["ok"] is False
    assert result["refresh_ack"]["error"]["code"] == "session_mismatch"
    assert result["session_ended"]["code"] == "logged_out"


@pytest.mark.slow
async def test_js_expiry(make_server: Callable[..., Any], http: aiohttp.ClientSession,
                         js_client: JsFactory) -> None:
    server = await make_server({"LATCH_ACCESS_TTL": "3", "LATCH_REFRESH_NOTICE": "1"})
    body = await login(http, server.url, *ADMIN)
    exp = token_exp(body["access_token"])
    async with js_client("connect", server.url, body["access_token"]) as run:
        await run.wait_ready()
        result = await run.result()
        ended_by = time.time()
    assert [e["event"] for e in result["events"]] == ["session", "token_expiring",
                                                       "session_ended"]
    assert result["events"][1]["args"] == [{"expires_at": exp}]
    assert result["session_ended"]["code"] == "token_expired"
    assert result["disconnect_reason"] == "io server disconnect"
    assert ended_by < exp + 3  # generous: includes node's exit; the tight bound is in test_sockets


def test_missing_node_fails_when_required(tmp_path: Path) -> None:
    """With LATCH_REQUIRE_NODE=1 a machine without node must fail these tests, not skip them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCH_")}
    env.pop("PYTEST_CURRENT_TEST", None)
    env["LATCH_REQUIRE_NODE"] = "1"
    env["PATH"] = str(Path(sys.executable).parent)  # no /usr/bin: no node
    root = Path(__file__).resolve().parents[1]
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{Path(__file__).name}::test_js_user_disabled"],
        cwd=root / "tests", env=env, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "node is required (LATCH_REQUIRE_NODE=1)" in proc.stdout, proc.stdout
