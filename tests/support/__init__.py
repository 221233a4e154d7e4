"""Shared test helpers: REST login, the in-process server handle, the JS client.

Fixtures live in ``tests/conftest.py``; the classes they hand out live here
and in the sibling modules (``redis_server``, ``nodes``, ``waiting``).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.support.waiting import wait_future

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

    from app.config import Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
JS_DIR = REPO_ROOT / "tests" / "js"
JS_SCENARIO = JS_DIR / "client_scenario.mjs"

# Debian's Chromium, driven by Playwright for Python with executable_path.
# As root it needs --no-sandbox; the networking flags keep it from calling
# out to hosts this machine cannot reach.
CHROMIUM_PATH = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@dataclass(frozen=True)
class RunningServer:
    """An app from ``app.server.create_app`` served on 127.0.0.1 and a free port."""

    url: str
    app: web.Application
    settings: Settings
    runner: web.AppRunner

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


async def login(http: aiohttp.ClientSession, base_url: str, username: str, password: str,
                **extra: Any) -> dict[str, Any]:
    """``POST /auth/login``; asserts 200 and returns the token response."""
    payload = {"username": username, "password": password, **extra}
    async with http.post(f"{base_url}/auth/login", json=payload) as resp:
        text = await resp.text()
        assert resp.status == 200, f"login as {username!r}: HTTP {resp.status}: {text}"
        body: dict[str, Any] = json.loads(text)
        return body


class JsScenario:
    """One run of ``tests/js/client_scenario.mjs`` (the official socket.io-client).

    The script prints JSON lines: ``{"ready": true}`` once the ``connect``
    scenario has its refresh ack (act then, e.g. revoke the session), then one
    line with what it observed. Use ``async with``: the process is killed and
    reaped on exit whatever happens.
    """

    def __init__(self, scenario: str, url: str, token: str | None = None,
                 new_token: str | None = None, *, log_path: Path, timeout: float = 20.0,
                 env: Mapping[str, str] | None = None) -> None:
        self.scenario = scenario
        self.timeout = timeout
        self.log_path = log_path
        self._env = {k: v for k, v in os.environ.items() if not k.startswith("LATCH_")}
        self._env.update({
            "SCENARIO": scenario,
            "URL": url,
            "TOKEN": token or "",
            "NEW_TOKEN": new_token or "",
            "TIMEOUT_MS": str(int(timeout * 1000)),
        })
        self._env.update(env or {})
        self._proc: asyncio.subprocess.Process | None = None
        self.lines: list[dict[str, Any]] = []

    async def start(self) -> JsScenario:
        with self.log_path.open("ab") as err:
            self._proc = await asyncio.create_subprocess_exec(
                "node", str(JS_SCENARIO), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=err, env=self._env, cwd=JS_DIR,
            )
        return self

    async def _next(self, timeout: float, what: str) -> dict[str, Any]:
        assert self._proc is not None and self._proc.stdout is not None, "not started"
        raw = await wait_future(self._proc.stdout.readline(), timeout,
                                f"{what} from {JS_SCENARIO.name} ({self.scenario})")
        if not raw:
            code = await self._proc.wait()
            raise AssertionError(
                f"{JS_SCENARIO.name} ended (exit {code}) before {what}; "
                f"lines so far: {self.lines}\n{self.stderr()}"
            )
        try:
            line: dict[str, Any] = json.loads(raw)
        except ValueError:
            raise AssertionError(f"{JS_SCENARIO.name} printed non-JSON: {raw!r}") from None
        self.lines.append(line)
        return line

    async def wait_ready(self, timeout: float = 10.0) -> None:
        """Wait for the ``{"ready": true}`` line of the ``connect`` scenario."""
        line = await self._next(timeout, 'the {"ready": true} line')
        assert line == {"ready": True}, f"expected the ready line, got {line}\n{self.stderr()}"

    async def result(self, timeout: float | None = None) -> dict[str, Any]:
        """The final observation; fails if the script reported an error or exited non-zero."""
        assert self._proc is not None, "not started"
        line = await self._next(timeout if timeout is not None else self.timeout + 5.0,
                                "the result line")
        code = await wait_future(self._proc.wait(), 5.0, f"{JS_SCENARIO.name} to exit")
        assert code == 0, (
            f"{JS_SCENARIO.name} ({self.scenario}) exit {code}: {line}\n{self.stderr()}"
        )
        return line

    def stderr(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except FileNotFoundError:
            return ""

    async def close(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
        if proc.stdout is not None:
            await proc.stdout.read()  # drain to EOF so the pipe transport closes

    async def __aenter__(self) -> JsScenario:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def refresh_rest(http: aiohttp.ClientSession, base_url: str,
                       body: dict[str, Any]) -> dict[str, Any]:
    """``POST /auth/refresh`` with the refresh token of a login/refresh response; asserts 200."""
    async with http.post(f"{base_url}/auth/refresh",
                         json={"refresh_token": body["refresh_token"]}) as resp:
        assert resp.status == 200, await resp.text()
        fresh: dict[str, Any] = await resp.json()
        return fresh


async def logout(http: aiohttp.ClientSession, base_url: str, token: str) -> None:
    """``POST /auth/logout`` with a Bearer token; asserts 204."""
    async with http.post(f"{base_url}/auth/logout",
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 204, await resp.text()
