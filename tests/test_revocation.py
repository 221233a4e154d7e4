"""Every way a session ends, on one node with the in-process feed (CONTRACT §4).

Each cause must end the live socket with ``session_ended`` and the right code, then
disconnect it (``io server disconnect``); afterwards the killed session can neither
reconnect, nor refresh, nor call REST.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from app.audit import Actor
from app.services import SERVICES
from tests.support import RunningServer, login
from tests.support.sockets import Probes

ADMIN = ("admin", "admin-password-123")
PASSWORD = "user-password-123"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_user(server: RunningServer, name: str, role: str = "user") -> str:
    user = await server.app[SERVICES].users.create(name, PASSWORD, role,
                                                   actor=Actor.system("test"))
    return user.id


async def assert_dead(server: RunningServer, http: aiohttp.ClientSession, probes: Probes,
                      tokens: dict[str, Any], code: str = "session_revoked") -> None:
    """The killed session is refused everywhere: handshake, REST, refresh."""
    assert await probes.new().refused(server.url, tokens["access_token"]) == code
    async with http.get(f"{server.url}/auth/me", headers=bearer(tokens["access_token"])) as r:
        assert r.status == 401
        assert (await r.json())["error"]["code"] == code
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": tokens["refresh_token"]}) as r:
        assert r.status == 401


Cause = Callable[[RunningServer, aiohttp.ClientSession, dict[str, Any], dict[str, Any], str],
                 Awaitable[None]]


async def admin_kills_session(server: RunningServer, http: aiohttp.ClientSession,
                              admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    async with http.post(f"{server.url}/admin/sessions/{victim['session_id']}/revoke",
                         json={"reason": "test"}, headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["revoked"] is True and body["sockets"]["ended"] == 1
    assert body["sockets"]["nodes"] == [{"node": "test-node", "ended": 1, "confirmed": True}]


async def admin_kills_user(server: RunningServer, http: aiohttp.ClientSession,
                           admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    async with http.post(f"{server.url}/admin/users/{uid}/revoke", json={},
                         headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()
        assert (await r.json())["sockets"]["ended"] == 1


async def user_logs_out(server: RunningServer, http: aiohttp.ClientSession,
                        admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    async with http.post(f"{server.url}/auth/logout", headers=bearer(victim["access_token"])) as r:
        assert r.status == 204


async def user_deletes_device(server: RunningServer, http: aiohttp.ClientSession,
                              admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    other = await login(http, server.url, "vic", PASSWORD, device="other phone")
    async with http.delete(f"{server.url}/auth/sessions/{victim['session_id']}",
                           headers=bearer(other["access_token"])) as r:
        assert r.status == 204


async def password_changed(server: RunningServer, http: aiohttp.ClientSession,
                           admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    other = await login(http, server.url, "vic", PASSWORD)
    async with http.post(f"{server.url}/auth/password", headers=bearer(other["access_token"]),
                         json={"old_password": PASSWORD, "new_password": "new-password-456"}) as r:
        assert r.status == 204


async def user_disabled(server: RunningServer, http: aiohttp.ClientSession,
                        admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    async with http.patch(f"{server.url}/admin/users/{uid}", json={"disabled": True},
                          headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()


async def role_changed(server: RunningServer, http: aiohttp.ClientSession,
                       admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    async with http.patch(f"{server.url}/admin/users/{uid}", json={"role": "admin"},
                          headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()


async def refresh_reused(server: RunningServer, http: aiohttp.ClientSession,
                         admin: dict[str, Any], victim: dict[str, Any], uid: str) -> None:
    for expected in (200, 401):
        async with http.post(f"{server.url}/auth/refresh",
                             json={"refresh_token": victim["refresh_token"]}) as r:
            assert r.status == expected


@pytest.mark.parametrize(("cause", "code", "handshake_code"), [
    (admin_kills_session, "session_revoked", "session_revoked"),
    (admin_kills_user, "session_revoked", "session_revoked"),
    (user_logs_out, "logged_out", "session_revoked"),
    (user_deletes_device, "session_revoked", "session_revoked"),
    (password_changed, "password_changed", "session_revoked"),
    (user_disabled, "user_disabled", "user_disabled"),
    (role_changed, "role_changed", "session_revoked"),
    (refresh_reused, "refresh_reused", "session_revoked"),
])
async def test_every_cause_ends_the_socket(server: RunningServer, http: aiohttp.ClientSession,
                                           probes: Probes, cause: Cause, code: str,
                                           handshake_code: str) -> None:
    uid = await add_user(server, "vic")
    admin = await login(http, server.url, *ADMIN)
    victim = await login(http, server.url, "vic", PASSWORD, device="laptop")
    probe = await probes.connect(server.url, victim["access_token"])
    await cause(server, http, admin, victim, uid)
    assert await probe.ended() == code
    await assert_dead(server, http, probes, victim, handshake_code)


async def test_user_kill_ends_every_session_but_not_other_users(
        server: RunningServer, http: aiohttp.ClientSession, probes: Probes) -> None:
    uid = await add_user(server, "vic")
    await add_user(server, "bystander")
    admin = await login(http, server.url, *ADMIN)
    sessions = [await login(http, server.url, "vic", PASSWORD) for _ in range(3)]
    victims = [await probes.connect(server.url, s["access_token"]) for s in sessions]
    victims.append(await probes.connect(server.url, sessions[0]["access_token"]))  # 2 tabs
    bystander = await probes.connect(
        server.url, (await login(http, server.url, "bystander", PASSWORD))["access_token"])
    async with http.post(f"{server.url}/admin/users/{uid}/revoke", json={},
                         headers=bearer(admin["access_token"])) as r:
        body = await r.json()
    assert body["sessions"] == 3 and body["sockets"]["ended"] == 4
    for probe in victims:
        assert await probe.ended() == "session_revoked"
    await asyncio.sleep(0.2)
    assert bystander.client.connected


async def test_password_change_keeps_the_current_session(
        server: RunningServer, http: aiohttp.ClientSession, probes: Probes) -> None:
    await add_user(server, "vic")
    here = await login(http, server.url, "vic", PASSWORD)
    there = await login(http, server.url, "vic", PASSWORD)
    mine = await probes.connect(server.url, here["access_token"])
    theirs = await probes.connect(server.url, there["access_token"])
    async with http.post(f"{server.url}/auth/password", headers=bearer(here["access_token"]),
                         json={"old_password": PASSWORD, "new_password": "new-password-456"}) as r:
        assert r.status == 204
    assert await theirs.ended() == "password_changed"
    assert mine.client.connected
    assert (await mine.client.call("whoami", {}, timeout=3))["session_id"] == here["session_id"]


async def test_unknown_ids_and_non_admins(server: RunningServer, http: aiohttp.ClientSession) -> None:
    await add_user(server, "vic")
    admin = await login(http, server.url, *ADMIN)
    user = await login(http, server.url, "vic", PASSWORD)
    for path in ("/admin/sessions/nope/revoke", "/admin/users/999/revoke", "/admin/users/x/revoke"):
        async with http.post(f"{server.url}{path}", json={}, headers=bearer(admin["access_token"])) as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "not_found"
        async with http.post(f"{server.url}{path}", json={}, headers=bearer(user["access_token"])) as r:
            assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
        async with http.post(f"{server.url}{path}", json={}) as r:
            assert r.status == 401


async def test_revocation_is_audited(server: RunningServer, http: aiohttp.ClientSession) -> None:
    await add_user(server, "vic")
    admin = await login(http, server.url, *ADMIN)
    victim = await login(http, server.url, "vic", PASSWORD)
    async with http.post(f"{server.url}/admin/sessions/{victim['session_id']}/revoke",
                         json={"reason": "lost laptop"}, headers=bearer(admin["access_token"])) as r:
        assert r.status == 200
    async with http.get(f"{server.url}/admin/audit", headers=bearer(admin["access_token"])) as r:
        entries = (await r.json())["entries"]
    entry = next(e for e in entries if e["action"] == "session.revoke")
    assert entry["actor"]["username"] == "admin"
    assert entry["target"] == f"session:{victim['session_id']}"
    assert entry["detail"]["reason"] == "lost laptop"
    assert entry["ip"] == "127.0.0.1"


async def test_cli_revoke_reaches_a_running_node_without_redis(
        server: RunningServer, http: aiohttp.ClientSession, probes: Probes) -> None:
    """No Redis: the CLI writes the durable log; the node picks it up from the shared file."""
    await add_user(server, "vic")
    victim = await login(http, server.url, "vic", PASSWORD)
    probe = await probes.connect(server.url, victim["access_token"])
    env = {**os.environ, "LATCH_DB": str(server.settings.db_path),
           "LATCH_KEYS_DIR": str(server.settings.keys_dir)}
    env.pop("LATCH_REDIS_URL", None)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "app.cli", "sessions", "revoke", victim["session_id"], env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert "revoked 1 session" in out.decode()
    assert await probe.ended(timeout=4.0) == "session_revoked"
    await assert_dead(server, http, probes, victim)


async def test_revoked_set_survives_restart(make_server: Any, http: aiohttp.ClientSession,
                                            probes: Probes) -> None:
    """A node that starts after a kill loads the durable log: the old token stays refused."""
    first = await make_server()
    victim = await login(http, first.url, *ADMIN)
    async with http.post(f"{first.url}/auth/logout", headers=bearer(victim["access_token"])) as r:
        assert r.status == 204
    second = await make_server({"LATCH_NODE_ID": "second"})
    assert await probes.new().refused(second.url, victim["access_token"]) == "session_revoked"
