"""The client guides' runnable examples (issue 6), run for real against the app on port 0.

* ``examples/native_client.py`` — the native-app stand-in: login (body transport),
  socket with the token in ``auth`` or a header, refresh on ``token_expiring``,
  background/foreground, logged out by an admin;
* ``examples/verify_with_jwks.py`` — a backend verifying tokens with the JWKS;
* ``static/demo/`` — the browser demo page, driven in Chromium.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from app.audit import Actor
from app.services import SERVICES
from tests.support import CHROMIUM_ARGS, REPO_ROOT, RunningServer, login
from tests.support.nodes import child_env, run_cli
from tests.support.waiting import wait_for, wait_future

EXAMPLES = REPO_ROOT / "examples"
ADMIN = ("admin", "admin-password-123")
PASSWORD = "example-password-1"
ServerFactory = Callable[..., Any]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_user(server: RunningServer, name: str) -> str:
    user = await server.app[SERVICES].users.create(name, PASSWORD, "user",
                                                   actor=Actor.system("test"))
    return user.id


async def admin_revokes(http: aiohttp.ClientSession, server: RunningServer, user_id: str) -> None:
    admin = await login(http, server.url, *ADMIN)
    async with http.post(f"{server.url}/admin/users/{user_id}/revoke",
                         headers=bearer(admin["access_token"]), json={"reason": "test"}) as resp:
        assert resp.status == 200, await resp.text()


class Example:
    """One example script as a child process, read line by line (JSON)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, script: str, *args: str, stdin: str) -> Example:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(EXAMPLES / script), *args, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            env=child_env({"NO_PROXY": "*"}), cwd=REPO_ROOT)
        assert proc.stdin is not None
        proc.stdin.write(stdin.encode() + b"\n")
        await proc.stdin.drain()
        proc.stdin.close()
        return cls(proc)

    async def until(self, event: str, timeout: float = 15.0) -> dict[str, Any]:
        assert self.proc.stdout is not None
        while True:
            raw = await wait_future(self.proc.stdout.readline(), timeout,
                                    f"{event!r} from the example; so far {self.lines}")
            if not raw:
                err = await self.stderr()
                raise AssertionError(f"example ended before {event!r}: {self.lines}\n{err}")
            line = json.loads(raw)
            self.lines.append(line)
            if line["event"] == event:
                return line

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await self.proc.stderr.read()).decode(errors="replace")[-3000:]

    async def finish(self, timeout: float = 10.0) -> tuple[int, str, str]:
        out, err = await wait_future(self.proc.communicate(), timeout, "the example to exit")
        for raw in out.decode().splitlines():
            self.lines.append(json.loads(raw))
        return self.proc.returncode or 0, out.decode(), err.decode()

    def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()


@pytest.fixture
async def examples() -> Any:
    started: list[Example] = []

    async def _start(script: str, *args: str, stdin: str) -> Example:
        example = await Example.start(script, *args, stdin=stdin)
        started.append(example)
        return example

    yield _start
    for example in started:
        example.kill()
        await example.proc.wait()


# --- the native client ------------------------------------------------------------------------


async def test_native_client_refreshes_survives_background_and_is_logged_out(
        make_server: ServerFactory, http: aiohttp.ClientSession, examples: Any,
        tmp_path: Path) -> None:
    server = await make_server({"LATCH_ACCESS_TTL": "4", "LATCH_REFRESH_NOTICE": "2"})
    user_id = await add_user(server, "native")
    keychain = tmp_path / "keychain"
    app = await examples("native_client.py", "--url", server.url, "--username", "native",
                         "--keychain", str(keychain), "--background", "1", stdin=PASSWORD)
    await app.until("connected")
    assert keychain.stat().st_mode & 0o077 == 0, "the keychain stand-in must be private"
    refreshed = await app.until("refreshed")
    assert refreshed["count"] >= 1
    await app.until("foregrounded", timeout=10)
    await admin_revokes(http, server, user_id)
    ended = await app.until("session_ended")
    assert ended["code"] == "session_revoked"
    code, _, err = await app.finish()
    assert code == 0, err
    assert not keychain.exists(), "tokens must be forgotten when the session ends"
    for line in app.lines:
        assert "eyJ" not in json.dumps(line) and "lrt_" not in json.dumps(line)


async def test_native_client_with_an_authorization_header(
        server: RunningServer, http: aiohttp.ClientSession, examples: Any) -> None:
    user_id = await add_user(server, "header")
    app = await examples("native_client.py", "--url", server.url, "--username", "header",
                         "--header", stdin=PASSWORD)
    connected = await app.until("connected")
    assert connected["user"] == "header"
    await admin_revokes(http, server, user_id)
    assert (await app.until("session_ended"))["code"] == "session_revoked"
    assert (await app.finish())[0] == 0


async def test_native_client_wrong_password(server: RunningServer, examples: Any) -> None:
    await add_user(server, "wrong")
    app = await examples("native_client.py", "--url", server.url, "--username", "wrong",
                         stdin="not-the-password")
    assert (await app.until("login_failed"))["code"] == "invalid_credentials"
    assert (await app.finish())[0] == 1


# --- verifying with the JWKS --------------------------------------------------------------------


async def verify(examples: Any, server: RunningServer, token: str,
                 *args: str) -> tuple[int, dict[str, Any]]:
    run = await examples("verify_with_jwks.py", "--url", server.url, *args, stdin=token)
    code, out, err = await run.finish()
    assert out.strip(), err
    return code, json.loads(out)


async def test_backend_verifies_tokens_with_the_jwks(server: RunningServer,
                                                     http: aiohttp.ClientSession,
                                                     examples: Any) -> None:
    grant = await login(http, server.url, *ADMIN)
    token = grant["access_token"]
    code, claims = await verify(examples, server, token)
    assert code == 0 and claims["valid"] is True
    assert claims["user_id"] == "1" and claims["session_id"] == grant["session_id"]

    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    code, result = await verify(examples, server, forged)
    assert code == 1 and result["valid"] is False
    code, result = await verify(examples, server, token, "--audience", "another-service")
    assert code == 1 and "audience" in result["reason"].lower()
    code, result = await verify(examples, server, token, "--alg", "RS256")
    assert code == 1

    # The documented limit: a stateless check cannot see a revocation...
    async with http.post(f"{server.url}/auth/logout", headers=bearer(token)) as resp:
        assert resp.status == 204
    code, claims = await verify(examples, server, token)
    assert code == 0 and claims["valid"] is True
    # ...which Latch itself enforces.
    async with http.get(f"{server.url}/auth/me", headers=bearer(token)) as resp:
        assert resp.status == 401


async def test_backend_follows_a_key_rotation(server: RunningServer, http: aiohttp.ClientSession,
                                              examples: Any) -> None:
    old = (await login(http, server.url, *ADMIN))["access_token"]
    settings = server.settings
    done = await asyncio.to_thread(run_cli, ["keys", "rotate"], {
        "LATCH_DB": settings.db_path, "LATCH_KEYS_DIR": settings.keys_dir})
    assert done.returncode == 0, done.stderr

    async def new_kid_token() -> str | None:
        token = (await login(http, server.url, *ADMIN))["access_token"]
        return token if token.split(".")[0] != old.split(".")[0] else None

    new = await wait_for(new_kid_token, 5.0, interval=0.3, message="a token signed by the new key")
    for token in (old, new):
        code, claims = await verify(examples, server, token)
        assert code == 0 and claims["valid"] is True


# --- the browser demo ---------------------------------------------------------------------------


async def test_browser_demo_page(make_server: ServerFactory, http: aiohttp.ClientSession,
                                 chromium_path: str) -> None:
    from playwright.async_api import async_playwright

    server = await make_server({"LATCH_ACCESS_TTL": "5", "LATCH_REFRESH_NOTICE": "3"})
    user_id = await add_user(server, "browser")
    async with http.get(f"{server.url}/demo/socket.io.js") as resp:
        if resp.status == 404:
            pytest.skip("socket.io-client is not installed: npm ci --prefix tests/js")
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{server.url}/demo/")
            status = page.locator("#status")
            await page.wait_for_selector('#status[data-state="signed-out"]')
            await page.fill("#username", "browser")
            await page.fill("#password", PASSWORD)
            await page.click("#login")
            await page.wait_for_selector('#status[data-state="connected"]', timeout=10_000)

            # Live refresh: token_expiring → POST /auth/refresh (cookie) → `refresh` event.
            # (A CSS wait: the page's CSP rightly forbids Playwright's string eval.)
            await page.wait_for_selector('#refreshes:not([data-count="0"])', timeout=15_000)
            stored = await page.evaluate(
                "JSON.stringify([localStorage, sessionStorage, document.cookie])")
            assert "eyJ" not in stored and "lrt_" not in stored and "latch_rt" not in stored

            # A reload loses the in-memory token; the HttpOnly cookie brings the session back.
            await page.reload()
            await page.wait_for_selector('#status[data-state="connected"]', timeout=10_000)

            await admin_revokes(http, server, user_id)
            await page.wait_for_selector('#status[data-state="ended"]', timeout=5_000)
            assert await status.get_attribute("data-code") == "session_revoked"
            assert "administrator" in await page.locator("#detail").inner_text()

            await page.reload()  # the refresh cookie died with the session
            await page.wait_for_selector('#status[data-state="signed-out"]', timeout=10_000)
            assert not errors, errors
        finally:
            await browser.close()
