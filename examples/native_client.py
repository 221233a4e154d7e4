"""A native app's Latch client, in Python: what an iOS or Android app does, step by step.

    python examples/native_client.py --url http://127.0.0.1:8080 --username alice < password

Reads the password from standard input (never from argv: other users can read
a command line), then:

1. logs in with ``"transport": "body"``: the refresh token comes back in the JSON
   and goes straight into the keychain (here: a 0600 file, or memory);
2. connects the socket with the access token in the ``auth`` payload (or, with
   ``--header``, in an ``Authorization: Bearer`` handshake header), where
   ``auth`` is a *function*, so every reconnect asks for a fresh token;
3. on ``token_expiring`` refreshes over REST (rotating the stored refresh
   token) and hands the new access token to the socket with the ``refresh`` event;
4. on ``--background N`` drops the socket after the first refresh, as a phone
   does when the app is backgrounded, and reconnects N seconds later
   ("foreground"), refreshing first if the access token is about to expire;
5. on ``session_ended`` forgets every token and exits; the code says why.

Each step prints one JSON line on stdout, so a test (tests/test_examples.py)
or a curious human can follow along. Needs only aiohttp and python-socketio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import socketio

REFRESH_MARGIN = 30  # refresh before (re)connecting if the token has less than this left


def say(event: str, **fields: Any) -> None:
    """One line per step. Never print a token: this is what a log would hold."""
    print(json.dumps({"event": event, **fields}), flush=True)


class Keychain:
    """Stands in for the iOS Keychain / Android Keystore: the only place a refresh token lives."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._value: str | None = None

    def store(self, refresh_token: str) -> None:
        self._value = refresh_token
        if self._path is not None:
            fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(refresh_token)

    def load(self) -> str | None:
        if self._value is None and self._path is not None and self._path.exists():
            self._value = self._path.read_text().strip() or None
        return self._value

    def clear(self) -> None:
        self._value = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)


class SignedOut(Exception):
    """The session is over (refresh refused): the app must show its login screen."""


class LatchClient:
    def __init__(self, url: str, keychain: Keychain, *, use_header: bool) -> None:
        self.url = url.rstrip("/")
        self.keychain = keychain
        self.use_header = use_header
        self.access_token: str | None = None  # memory only
        self.expires_at = 0.0
        self.lifetime = 0.0
        self.http = aiohttp.ClientSession()
        self.sio = socketio.AsyncClient(reconnection=True, reconnection_delay=0.5)
        self.ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.refreshes = 0
        self.socket_refreshed = asyncio.Event()  # the live socket accepted a new token
        self._register()

    # --- REST --------------------------------------------------------------------------

    def _keep(self, body: dict[str, Any]) -> None:
        self.access_token = body["access_token"]
        self.lifetime = float(body["expires_in"])
        self.expires_at = time.time() + self.lifetime
        self.keychain.store(body["refresh_token"])

    async def login(self, username: str, password: str) -> None:
        async with self.http.post(f"{self.url}/auth/login", json={
                "username": username, "password": password, "transport": "body",
                "device": "native example"}) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise SignedOut(body["error"]["code"])
        self._keep(body)
        say("logged_in", user=body["user"]["username"], session_id=body["session_id"])

    async def refresh(self) -> str:
        """Rotate the refresh token; return the new access token."""
        stored = self.keychain.load()
        if stored is None:
            raise SignedOut("no_refresh_token")
        async with self.http.post(f"{self.url}/auth/refresh",
                                  json={"refresh_token": stored}) as resp:
            body = await resp.json()
            if resp.status != 200:
                # refresh_invalid / refresh_reused / session_revoked / session_expired:
                # none of them can be retried. Forget everything and sign in again.
                self.keychain.clear()
                raise SignedOut(body["error"]["code"])
        self._keep(body)
        self.refreshes += 1
        return body["access_token"]

    async def fresh_token(self) -> str:
        margin = min(REFRESH_MARGIN, self.lifetime / 4)  # short-lived test tokens too
        if self.access_token is None or self.expires_at - time.time() < margin:
            return await self.refresh()
        return self.access_token

    # --- the socket -----------------------------------------------------------------------

    async def _auth(self) -> dict[str, str]:
        # Called on every connect and reconnect: never a stale token.
        return {} if self.use_header else {"token": await self.fresh_token()}

    async def _headers(self) -> dict[str, str]:
        if not self.use_header:
            return {}
        return {"Authorization": f"Bearer {await self.fresh_token()}"}

    async def connect(self) -> None:
        await self.sio.connect(self.url, auth=self._auth, headers=self._headers,
                               transports=["websocket"], wait_timeout=5)

    def _register(self) -> None:
        sio = self.sio

        @sio.on("session")
        async def session(data: dict[str, Any]) -> None:
            say("connected", user=data["user"]["username"], expires_at=data["expires_at"])

        @sio.on("token_expiring")
        async def token_expiring(data: dict[str, Any]) -> None:
            try:
                token = await self.refresh()
            except SignedOut as exc:
                say("signed_out", code=str(exc))
                self._finish(str(exc))
                return
            try:
                ack = await sio.call("refresh", {"token": token}, timeout=5)
            except socketio.exceptions.SocketIOError:  # disconnected meanwhile, or no ack
                say("refresh_unacknowledged")  # the next connect presents the new token anyway
                return
            if ack.get("ok"):
                say("refreshed", expires_at=ack["expires_at"], count=self.refreshes)
                self.socket_refreshed.set()
            else:
                say("refresh_refused", code=ack["error"]["code"])

        @sio.on("session_ended")
        async def session_ended(data: dict[str, Any]) -> None:
            # The server disconnects right after this ("io server disconnect"): the
            # client will not reconnect by itself, and must not.
            say("session_ended", code=data["code"], message=data["message"])
            self.access_token = None
            self.keychain.clear()
            self._finish(data["code"])

        @sio.on("connect_error")
        async def connect_error(data: Any) -> None:
            code = _error_code(data)
            say("connect_error", code=code)
            if code in ("session_revoked", "user_disabled"):
                self.keychain.clear()
                self._finish(code)
            elif code in ("token_expired", "token_invalid", "token_missing"):
                self.access_token = None  # the next attempt refreshes first

        @sio.on("disconnect")
        async def disconnect(reason: Any = None) -> None:
            say("disconnected", reason=str(reason))

    def _finish(self, code: str) -> None:
        if not self.ended.done():
            self.ended.set_result(code)

    async def background(self, seconds: float) -> None:
        """The app goes to the background (socket closed), then comes back."""
        await self.sio.disconnect()
        say("backgrounded")
        await asyncio.sleep(seconds)
        await self.connect()
        say("foregrounded")

    async def close(self) -> None:
        await self.sio.disconnect()
        await self.http.close()


def _error_code(data: Any) -> str:
    if isinstance(data, dict):
        inner = data.get("data")
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            return inner["code"]
        if isinstance(data.get("message"), str):
            return data["message"]
    return str(data)


async def run(args: argparse.Namespace, password: str) -> int:
    client = LatchClient(args.url, Keychain(args.keychain), use_header=args.header)
    try:
        try:
            await client.login(args.username, password)
        except SignedOut as exc:
            say("login_failed", code=str(exc))
            return 1
        await client.connect()
        if args.background:
            refreshed = asyncio.ensure_future(client.socket_refreshed.wait())
            await asyncio.wait([refreshed, client.ended], timeout=args.max_seconds,
                               return_when=asyncio.FIRST_COMPLETED)
            refreshed.cancel()
            if client.socket_refreshed.is_set() and not client.ended.done():
                await client.background(args.background)
        code = await asyncio.wait_for(client.ended, args.max_seconds)
        say("done", code=code)
        return 0
    except TimeoutError:
        say("timeout")
        return 2
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=os.environ.get("LATCH_URL", "http://127.0.0.1:8080"))
    parser.add_argument("--username", required=True)
    parser.add_argument("--keychain", type=Path, help="file standing in for the keychain")
    parser.add_argument("--header", action="store_true",
                        help="send the token as an Authorization header, not in `auth`")
    parser.add_argument("--background", type=float, default=0.0,
                        help="after the first refresh, background the app for N seconds")
    parser.add_argument("--max-seconds", type=float, default=60.0)
    args = parser.parse_args()
    password = sys.stdin.readline().rstrip("\r\n")
    return asyncio.run(run(args, password))


if __name__ == "__main__":
    sys.exit(main())
