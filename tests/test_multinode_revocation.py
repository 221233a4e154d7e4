"""Revocation across real nodes: two ``latch serve`` processes, one SQLite file, one Redis.

A kill made through one node (REST or CLI) must end the sockets held by the
other within a second; the confirmed-kill answer counts sockets per node; a
Redis outage loses nothing; a node that restarts catches up from the log.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import redis.asyncio as aioredis

from tests.support import login
from tests.support.nodes import LatchCluster
from tests.support.redis_server import RedisServer
from tests.support.sockets import Probes

ADMIN = ("admin", "admin-password-123")
PASSWORD = "user-password-123"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def add_user(http: aiohttp.ClientSession, url: str, admin: dict[str, Any], name: str) -> str:
    async with http.post(f"{url}/admin/users", headers=bearer(admin["access_token"]),
                         json={"username": name, "password": PASSWORD}) as r:
        assert r.status == 201, await r.text()
        return str((await r.json())["user"]["id"])


async def test_rest_kill_on_a_ends_socket_on_b(latch_cluster: LatchCluster, redis_url: str,
                                               http: aiohttp.ClientSession, probes: Probes) -> None:
    a, b = latch_cluster(2, redis_url=redis_url)
    admin = await login(http, a.url, *ADMIN)
    await add_user(http, a.url, admin, "vic")
    victim = await login(http, a.url, "vic", PASSWORD)
    probe = await probes.connect(b.url, victim["access_token"])
    started = time.time()
    async with http.post(f"{a.url}/admin/sessions/{victim['session_id']}/revoke",
                         json={"reason": "test"}, headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert await probe.ended(timeout=2.0) == "session_revoked"
    assert probe.disconnected_at is not None and probe.disconnected_at - started < 1.0
    nodes = {n["node"]: n for n in body["sockets"]["nodes"]}
    assert nodes["node-b"] == {"node": "node-b", "ended": 1, "confirmed": True}, body
    assert nodes["node-a"]["ended"] == 0 and nodes["node-a"]["confirmed"]
    assert body["sockets"]["ended"] == 1
    # Dead everywhere: handshake on either node, REST on either node.
    for node in (a, b):
        assert await probes.new().refused(node.url, victim["access_token"]) == "session_revoked"
        async with http.get(f"{node.url}/auth/me", headers=bearer(victim["access_token"])) as r:
            assert r.status == 401


async def test_cli_kill_ends_sockets_on_every_node(latch_cluster: LatchCluster, redis_url: str,
                                                   http: aiohttp.ClientSession,
                                                   probes: Probes) -> None:
    a, b = latch_cluster(2, redis_url=redis_url)
    admin = await login(http, a.url, *ADMIN)
    await add_user(http, a.url, admin, "vic")
    victim = await login(http, b.url, "vic", PASSWORD)
    on_a = await probes.connect(a.url, victim["access_token"])
    on_b = await probes.connect(b.url, victim["access_token"])
    started = time.time()
    done = await asyncio.to_thread(latch_cluster.cli, ["sessions", "revoke", victim["session_id"]])
    assert done.returncode == 0, done.stderr
    assert "revoked 1 session" in done.stdout, done.stdout
    assert await on_a.ended(timeout=2.0) == "session_revoked"
    assert await on_b.ended(timeout=2.0) == "session_revoked"
    assert max(on_a.disconnected_at or 0, on_b.disconnected_at or 0) - started < 3.0  # incl. CLI start-up


async def test_user_kill_counts_sockets_per_node(latch_cluster: LatchCluster, redis_url: str,
                                                 http: aiohttp.ClientSession,
                                                 probes: Probes) -> None:
    a, b = latch_cluster(2, redis_url=redis_url)
    admin = await login(http, a.url, *ADMIN)
    uid = await add_user(http, a.url, admin, "vic")
    await add_user(http, a.url, admin, "bystander")
    phone = await login(http, a.url, "vic", PASSWORD, device="phone")
    laptop = await login(http, b.url, "vic", PASSWORD, device="laptop")
    victims = [await probes.connect(a.url, phone["access_token"]),
               await probes.connect(b.url, laptop["access_token"]),
               await probes.connect(b.url, phone["access_token"])]
    other = await login(http, a.url, "bystander", PASSWORD)
    bystander = await probes.connect(b.url, other["access_token"])
    async with http.post(f"{b.url}/admin/users/{uid}/revoke", json={},
                         headers=bearer(admin["access_token"])) as r:
        body = await r.json()
    for probe in victims:
        assert await probe.ended(timeout=2.0) == "session_revoked"
    nodes = {n["node"]: (n["ended"], n["confirmed"]) for n in body["sockets"]["nodes"]}
    assert nodes == {"node-a": (1, True), "node-b": (2, True)}, body
    assert body["sessions"] == 2 and body["sockets"]["ended"] == 3
    assert bystander.client.connected


async def test_cross_node_emit_through_redis_manager(make_server: Any, redis_url: str,
                                                     http: aiohttp.ClientSession,
                                                     probes: Probes) -> None:
    """Socket.IO's own emits (AsyncRedisManager): an emit to a user's room on node A
    reaches that user's socket on node B."""
    from handlers.sockets import SIO_KEY, user_room

    env = {"LATCH_REDIS_URL": redis_url}
    a = await make_server({**env, "LATCH_NODE_ID": "a"})
    b = await make_server({**env, "LATCH_NODE_ID": "b"})
    tokens = await login(http, a.url, *ADMIN)
    probe = await probes.connect(b.url, tokens["access_token"])
    await asyncio.sleep(0.3)  # the managers' listeners subscribe in the background
    await a.app[SIO_KEY].emit("notice", {"text": "hello"}, to=user_room(tokens["user"]["id"]))
    assert await probe.get("notice", timeout=3.0) == {"text": "hello"}


async def test_redis_outage_loses_no_revocation(latch_cluster: LatchCluster,
                                                fresh_redis_server: RedisServer,
                                                http: aiohttp.ClientSession,
                                                probes: Probes) -> None:
    a, b = latch_cluster(2, redis_url=fresh_redis_server.url)
    admin = await login(http, a.url, *ADMIN)
    await add_user(http, a.url, admin, "vic")
    victim = await login(http, a.url, "vic", PASSWORD)
    probe = await probes.connect(b.url, victim["access_token"])

    fresh_redis_server.stop()
    # The kill still succeeds through A: durable first, announced when possible.
    async with http.post(f"{a.url}/admin/sessions/{victim['session_id']}/revoke",
                         json={}, headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert body["revoked"] is True
    # Handshakes for the killed session are refused on B throughout the outage.
    assert await probes.new().refused(b.url, victim["access_token"]) == "session_revoked"
    async with http.get(f"{b.url}/readyz") as r:
        assert r.status == 503
    # B ends the socket from the durable log even before Redis returns (degraded polling).
    assert await probe.ended(timeout=5.0) == "session_revoked"

    await asyncio.to_thread(fresh_redis_server.start)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        async with http.get(f"{b.url}/readyz") as r:
            if r.status == 200:
                break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError("node B never became ready again")


async def test_missed_message_is_caught_up_after_redis_returns(
        latch_cluster: LatchCluster, fresh_redis_server: RedisServer,
        http: aiohttp.ClientSession, probes: Probes) -> None:
    """A revocation whose announcement was lost still ends the socket once Redis is back.

    The kill is written to the shared store by a CLI that cannot reach Redis at all
    (so nothing is ever published); node B learns it from the durable log.
    """
    a, b = latch_cluster(2, redis_url=fresh_redis_server.url)
    admin = await login(http, a.url, *ADMIN)
    await add_user(http, a.url, admin, "vic")
    victim = await login(http, a.url, "vic", PASSWORD)
    probe = await probes.connect(b.url, victim["access_token"])
    dead_redis = "redis://127.0.0.1:9/0"  # nothing listens on the discard port
    done = await asyncio.to_thread(latch_cluster.cli, ["sessions", "revoke", victim["session_id"]],
                                   LATCH_REDIS_URL=dead_redis)
    assert done.returncode == 0, done.stderr
    assert await probe.ended(timeout=8.0) == "session_revoked"


async def test_restarted_node_catches_up(latch_cluster: LatchCluster, redis_url: str,
                                         http: aiohttp.ClientSession, probes: Probes) -> None:
    a, b = latch_cluster(2, redis_url=redis_url)
    admin = await login(http, a.url, *ADMIN)
    await add_user(http, a.url, admin, "vic")
    victim = await login(http, a.url, "vic", PASSWORD)
    b.stop()
    async with http.post(f"{a.url}/admin/sessions/{victim['session_id']}/revoke",
                         json={}, headers=bearer(admin["access_token"])) as r:
        assert r.status == 200
    await b.astart()
    assert await probes.new().refused(b.url, victim["access_token"]) == "session_revoked"


async def test_garbage_on_the_feed_channel_is_ignored(latch_cluster: LatchCluster,
                                                      redis_url: str,
                                                      http: aiohttp.ClientSession,
                                                      probes: Probes) -> None:
    a, b = latch_cluster(2, redis_url=redis_url)
    admin = await login(http, a.url, *ADMIN)
    await add_user(http, a.url, admin, "vic")
    victim = await login(http, a.url, "vic", PASSWORD)
    probe = await probes.connect(b.url, victim["access_token"])
    client = aioredis.Redis.from_url(redis_url)
    try:
        junk: list[bytes | str] = [
            b"not json", b"\xff\xfe\x00", "[]", "null", json.dumps({"v": 1, "type": "revoke"}),
            json.dumps({"v": 1, "type": "revoke", "scope": "all", "code": "session_revoked",
                        "op": "x", "origin": "evil", "position": -1, "at": "now"}),
            json.dumps({"v": 1, "type": "ack", "op": 5, "node": [], "ended": "many"}),
            json.dumps({"v": 2, "type": "revoke"}), "x" * 2_000_000, "{" * 100_000,
        ]
        for message in junk:
            await client.publish("latch:feed", message)
    finally:
        await client.aclose()
    # The listener is alive and the socket was not ended by garbage...
    await asyncio.sleep(0.3)
    assert probe.client.connected
    # ...and a real kill still gets through promptly.
    async with http.post(f"{a.url}/admin/sessions/{victim['session_id']}/revoke",
                         json={}, headers=bearer(admin["access_token"])) as r:
        assert r.status == 200
    assert await probe.ended(timeout=2.0) == "session_revoked"
