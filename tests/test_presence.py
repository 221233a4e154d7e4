"""Presence: the in-memory registry, its batched events, and the Redis store (real redis-server)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest
from redis.asyncio import Redis

from app.authn import Identity
from app.presence import FIELDS, ConnectionQuery, MemoryPresence
from app.redis_presence import RedisPresence, parse_buckets, rows_key, sessions_key
from tests.support.redis_server import RedisServer
from tests.support.waiting import wait_for

NOW = 1_800_000_000.0


@dataclass(slots=True, eq=False)
class Info:
    """Stands in for handlers.sockets.ConnectionInfo (same attributes)."""

    socket_id: str
    identity: Identity
    connected_at: float
    transport: str = "websocket"
    ip: str | None = "127.0.0.1"
    user_agent: str | None = "test-agent"


def info(n: int, *, user: str = "1", session: str = "s1", at: float | None = None) -> Info:
    ident = Identity(user_id=user, username=f"user{user}", role="user", session_id=session,
                     token_exp=int(NOW) + 900)
    return Info(socket_id=f"sock-{n:05d}", identity=ident,
                connected_at=NOW + n if at is None else at)


class Recorder:
    """The publish and device-lookup callables presence is given, recording their calls."""

    def __init__(self, devices: Mapping[str, str] | None = None) -> None:
        self.messages: list[tuple[str, dict[str, Any]]] = []
        self.lookups: list[list[str]] = []
        self.devices = dict(devices or {})
        self.fail_lookup = False
        self.published = asyncio.Event()

    async def publish(self, name: str, data: dict[str, Any]) -> None:
        self.messages.append((name, data))
        self.published.set()

    async def lookup(self, ids: Sequence[str]) -> Mapping[str, str]:
        self.lookups.append(list(ids))
        if self.fail_lookup:
            raise OSError("database is gone")
        return {i: self.devices[i] for i in ids if i in self.devices}

    def events(self) -> list[tuple[str, dict[str, Any]]]:
        """One (name, item) per socket, as the hub unpacks the batches."""
        return [(name, item) for name, data in self.messages for item in data["batch"]]


def memory(rec: Recorder, node: str = "node-a", **options: Any) -> MemoryPresence:
    return MemoryPresence(node, publish=rec.publish, devices=rec.lookup, **options)


# --- listing ------------------------------------------------------------------------------


async def test_listing_is_sorted_filtered_and_paginated() -> None:
    presence = memory(Recorder())
    for n in (3, 1, 2, 5, 4):
        presence.add(info(n, user="1" if n % 2 else "2", session=f"s{n % 2}"))
    page = await presence.list(ConnectionQuery(limit=2, offset=1))
    assert [c["socket_id"] for c in page.connections] == ["sock-00002", "sock-00003"]
    assert (page.total, page.users, page.nodes) == (5, 2, [("node-a", 5)])

    by_user = await presence.list(ConnectionQuery(user_id="2"))
    assert [c["socket_id"] for c in by_user.connections] == ["sock-00002", "sock-00004"]
    assert (by_user.total, by_user.users) == (2, 1)
    by_session = await presence.list(ConnectionQuery(session_id="s1"))
    assert by_session.total == 3
    assert (await presence.list(ConnectionQuery(node="node-b"))).total == 0


async def test_connection_has_the_documented_shape() -> None:
    presence = memory(Recorder())
    presence.add(info(1))
    [conn] = (await presence.list(ConnectionQuery())).connections
    assert conn == {
        "socket_id": "sock-00001", "user": {"id": "1", "username": "user1", "role": "user"},
        "session_id": "s1", "device": "", "node": "node-a", "connected_at": NOW + 1,
        "expires_at": int(NOW) + 900, "transport": "websocket", "ip": "127.0.0.1",
        "user_agent": "test-agent",
    }


async def test_counts_follow_connects_and_disconnects() -> None:
    presence = memory(Recorder())
    a, b, c = info(1, session="s1"), info(2, session="s1"), info(3, user="2", session="s2")
    for i in (a, b, c):
        presence.add(i)
    assert await presence.session_counts(["s1", "s2", "s3"]) == {"s1": 2, "s2": 1}
    assert await presence.online_users(["1", "2", "3"]) == {"1", "2"}
    presence.remove(a, "gone")
    presence.remove(c, "gone")
    presence.remove(c, "gone")  # twice is harmless
    assert await presence.session_counts(["s1", "s2"]) == {"s1": 1}
    assert await presence.online_users(["1", "2"]) == {"1"}
    assert presence.local_count() == 1


# --- events -------------------------------------------------------------------------------


async def test_flush_publishes_one_event_per_socket_in_batches_and_in_order() -> None:
    rec = Recorder({"s1": "laptop"})
    presence = memory(rec)
    infos = [info(n) for n in range(450)]
    for i in infos:
        presence.add(i)
    await presence.flush()
    presence.remove(infos[0], "client disconnect")
    presence.add(info(999))
    await presence.flush()

    names = [name for name, _ in rec.messages]
    assert names == ["connect", "connect", "connect", "disconnect", "connect"]  # 200+200+50
    events = rec.events()
    assert len(events) == 452
    assert events[449][1]["socket_id"] == "sock-00449"
    assert events[450] == ("disconnect", {"socket_id": "sock-00000", "session_id": "s1",
                                          "user_id": "1", "node": "node-a",
                                          "reason": "client disconnect"})
    assert events[0][1]["device"] == "laptop"
    assert rec.lookups == [["s1"]]  # one lookup for the whole burst, then cached


async def test_a_socket_that_comes_and_goes_within_one_flush_is_never_announced() -> None:
    rec = Recorder()
    presence = memory(rec)
    i = info(1)
    presence.add(i)
    presence.remove(i, "client disconnect")
    await presence.flush()
    assert rec.messages == []


async def test_device_lookup_failure_does_not_hold_back_events() -> None:
    rec = Recorder({"s1": "laptop"})
    rec.fail_lookup = True
    presence = memory(rec)
    presence.add(info(1))
    await presence.flush()
    assert [(n, d["device"]) for n, d in rec.events()] == [("connect", "")]
    rec.fail_lookup = False
    presence.add(info(2))
    await presence.flush()
    assert rec.events()[-1][1]["device"] == "laptop"


async def test_refresh_and_upgrade_are_picked_up_and_reannounced() -> None:
    rec = Recorder()
    presence = memory(rec)
    i = info(1)
    i.transport = "polling"
    presence.add(i)
    await presence.flush()
    # The gateway mutates the shared info on refresh and on upgrade.
    i.identity = replace(i.identity, token_exp=i.identity.token_exp + 900)
    i.transport = "websocket"
    [conn] = (await presence.list(ConnectionQuery())).connections
    assert (conn["expires_at"], conn["transport"]) == (int(NOW) + 1800, "websocket")
    await presence.flush()
    assert [n for n, _ in rec.events()] == ["connect", "connect"]  # connect is an upsert
    assert rec.events()[-1][1]["expires_at"] == int(NOW) + 1800


async def test_background_flusher_publishes_without_being_asked() -> None:
    rec = Recorder()
    presence = memory(rec, flush_interval=0.01)
    await presence.start()
    try:
        presence.add(info(1))
        await asyncio.wait_for(rec.published.wait(), 2.0)
        assert rec.events()[0][0] == "connect"
    finally:
        await presence.stop()


# --- Redis ----------------------------------------------------------------------------------


def test_parse_buckets_skips_corrupt_values() -> None:
    good = ["s", "n", "1", "u", "user", "sid", "", 1.0, 2, "polling", None, None]
    assert len(good) == len(FIELDS)
    bucket = json.dumps([good, good[:5], good]).encode()
    rows = parse_buckets([bucket, b"{not json", b"[1,2]", b"7", bucket])
    assert rows == [good] * 4


async def stored(client: Redis, node: str) -> list[str]:
    """The socket ids a node's hash holds in Redis."""
    return sorted(row[0] for row in parse_buckets(await client.hvals(rows_key(node))))


def redis_node(url: str, rec: Recorder, node: str, nodes: list[str], ttl: int = 3,
               **options: Any) -> tuple[RedisPresence, Redis]:
    client = Redis.from_url(url, socket_connect_timeout=0.5)

    async def live_nodes() -> list[str]:
        return list(nodes)

    return RedisPresence(client, node, ttl=ttl, live_nodes=live_nodes, publish=rec.publish,
                         devices=rec.lookup, flush_interval=0.01, **options), client


async def test_any_node_lists_every_nodes_sockets(redis_url: str) -> None:
    nodes = ["node-a", "node-b"]
    rec = Recorder({"s1": "phone"})
    a, ca = redis_node(redis_url, rec, "node-a", nodes)
    b, cb = redis_node(redis_url, rec, "node-b", nodes)
    await a.start()
    await b.start()
    try:
        a.add(info(1, session="s1"))
        b.add(info(2, user="2", session="s2"))
        b.add(info(3, user="2", session="s2"))
        await a.flush()
        await b.flush()
        for presence in (a, b):
            page = await presence.list(ConnectionQuery())
            assert [(c["socket_id"], c["node"]) for c in page.connections] == [
                ("sock-00001", "node-a"), ("sock-00002", "node-b"), ("sock-00003", "node-b")]
            assert page.nodes == [("node-a", 1), ("node-b", 2)]
            assert page.connections[0]["device"] == "phone"
            assert await presence.session_counts(["s1", "s2", "nope"]) == {"s1": 1, "s2": 2}
            assert await presence.online_users(["1", "2", "3"]) == {"1", "2"}
        page = await a.list(ConnectionQuery(node="node-b", session_id="s2", limit=1, offset=1))
        assert ([c["socket_id"] for c in page.connections], page.total) == (["sock-00003"], 2)
    finally:
        await a.stop()
        await b.stop()
        await ca.aclose()
        await cb.aclose()


async def test_many_sockets_across_buckets_with_filters(redis_url: str) -> None:
    nodes = ["node-a", "node-b"]
    rec = Recorder()
    a, ca = redis_node(redis_url, rec, "node-a", nodes)
    b, cb = redis_node(redis_url, rec, "node-b", nodes)
    await a.start()
    await b.start()
    try:
        infos = [info(n, user=str(n % 7 + 1), session=f"s{n % 50}") for n in range(1000)]
        for i in infos:
            b.add(i)
        await b.flush()
        for i in infos[::2]:
            b.remove(i, "gone")
        await b.flush()
        kept = infos[1::2]
        page = await a.list(ConnectionQuery(limit=1000))
        assert [c["socket_id"] for c in page.connections] == [i.socket_id for i in kept]
        assert page.nodes == [("node-a", 0), ("node-b", 500)]
        by_session = await a.list(ConnectionQuery(session_id="s7", limit=1000))
        assert [c["socket_id"] for c in by_session.connections] == [
            i.socket_id for i in kept if i.identity.session_id == "s7"]
        assert by_session.nodes == [("node-a", 0), ("node-b", 500)]  # the overview is unfiltered
        by_user = await a.list(ConnectionQuery(user_id="2", limit=1000))
        assert [c["socket_id"] for c in by_user.connections] == [
            i.socket_id for i in kept if i.identity.user_id == "2"]
        assert (await a.list(ConnectionQuery(user_id="2", session_id="s8"))).total == 0
        assert (await a.list(ConnectionQuery(node="node-a"))).total == 0
        assert (await a.list(ConnectionQuery(node="node-b"))).total == 500
    finally:
        await a.stop()
        await b.stop()
        await ca.aclose()
        await cb.aclose()


async def test_clean_stop_deletes_the_hash_and_announces_disconnects(redis_url: str) -> None:
    rec = Recorder()
    presence, client = redis_node(redis_url, rec, "node-a", ["node-a"])
    await presence.start()
    presence.add(info(1))
    await presence.flush()
    assert await stored(client, "node-a") == ["sock-00001"]
    await presence.stop()
    assert await client.exists(rows_key("node-a"), sessions_key("node-a")) == 0
    assert rec.events()[-1] == ("disconnect", {"socket_id": "sock-00001", "session_id": "s1",
                                               "user_id": "1", "node": "node-a",
                                               "reason": "node shutdown"})
    await client.aclose()


async def test_a_dead_nodes_hash_expires_within_its_ttl(redis_url: str) -> None:
    nodes = ["node-a", "node-b"]
    rec = Recorder()
    a, ca = redis_node(redis_url, rec, "node-a", nodes, ttl=2)
    b, cb = redis_node(redis_url, rec, "node-b", nodes, ttl=2)
    await a.start()
    await b.start()
    try:
        b.add(info(1))
        await b.flush()
        assert (await a.list(ConnectionQuery())).total == 1
        # "SIGKILL": node-b's tasks stop without any cleanup; its heartbeats just stop.
        await _abandon(b)
        ttl = await ca.pttl(rows_key("node-b"))
        assert 0 < ttl <= 2000
        await wait_for(lambda: _total(a), timeout=3.0, message="node-b's sockets gone")
    finally:
        await a.stop()
        await ca.aclose()
        await cb.aclose()


async def _abandon(presence: RedisPresence) -> None:
    # The base class's stop only cancels the flusher and heartbeat: nothing is deleted.
    await MemoryPresence.stop(presence)


async def _total(presence: RedisPresence) -> bool:
    return (await presence.list(ConnectionQuery())).total == 0


@pytest.mark.slow
async def test_heartbeat_keeps_a_live_nodes_hash(redis_url: str) -> None:
    rec = Recorder()
    presence, client = redis_node(redis_url, rec, "node-a", ["node-a"], ttl=3)
    await presence.start()
    try:
        presence.add(info(1))
        await presence.flush()
        await asyncio.sleep(4.5)  # longer than the TTL: only the heartbeat (every 1 s) keeps it
        assert await stored(client, "node-a") == ["sock-00001"]
    finally:
        await presence.stop()
        await client.aclose()


async def test_start_replaces_rows_left_by_a_killed_process_with_our_id(redis_url: str) -> None:
    client = Redis.from_url(redis_url)
    stale = ["old", "node-a", "1", "u", "user", "s", "", 1.0, 2, "polling", None, None]
    await client.hset(rows_key("node-a"), "7", json.dumps([stale]))
    rec = Recorder()
    presence, own = redis_node(redis_url, rec, "node-a", ["node-a"])
    await presence.start()
    try:
        assert await stored(client, "node-a") == []
    finally:
        await presence.stop()
        await own.aclose()
        await client.aclose()


async def test_redis_outage_rewrites_this_nodes_share_and_asks_for_a_resync(
        fresh_redis_server: RedisServer) -> None:
    rec = Recorder()
    resyncs: list[str] = []
    presence, client = redis_node(fresh_redis_server.url, rec, "node-a", ["node-a"], ttl=2)
    presence.on_resync = lambda reason, nodes: resyncs.append(reason)
    await presence.start()
    try:
        presence.add(info(1))
        await presence.flush()
        fresh_redis_server.stop()
        presence.add(info(2))
        await presence.flush()  # fails: Redis is down; nothing raises
        fresh_redis_server.start()  # empty: everything was lost
        await presence.flush()
        presence.add(info(3))
        await presence.flush()  # the rewrite happens here
        assert await stored(client, "node-a") == ["sock-00001", "sock-00002", "sock-00003"]
        assert resyncs == ["redis_recovered"]
    finally:
        await presence.stop()
        await client.aclose()


async def test_listing_degrades_to_this_node_when_redis_is_down(
        fresh_redis_server: RedisServer) -> None:
    rec = Recorder()
    presence, client = redis_node(fresh_redis_server.url, rec, "node-a", ["node-a", "node-b"])
    await presence.start()
    try:
        presence.add(info(1))
        fresh_redis_server.stop()
        page = await presence.list(ConnectionQuery())
        assert (page.total, page.partial) == (1, True)
        assert await presence.session_counts(["s1"]) == {"s1": 1}
    finally:
        await presence.stop()
        await client.aclose()


@pytest.mark.parametrize("count", [1, 3])
async def test_node_loss_asks_local_streams_to_resync(redis_url: str, count: int) -> None:
    nodes = ["node-a", *(f"node-{i}" for i in range(count))]
    rec = Recorder()
    resyncs: list[tuple[str, list[str]]] = []
    presence, client = redis_node(redis_url, rec, "node-a", nodes)
    presence.on_resync = lambda reason, lost: resyncs.append((reason, list(lost)))
    try:
        await presence.tick()
        await presence.tick()
        assert resyncs == []
        del nodes[1:]
        await presence.tick()
        assert resyncs == [("node_lost", sorted(f"node-{i}" for i in range(count)))]
    finally:
        await presence.stop()
        await client.aclose()
