"""Cluster-wide presence: real ``latch serve`` nodes sharing one SQLite file and one Redis.

Sockets on two nodes appear in one ``/admin/connections`` answer and in the
event stream of either node; a SIGKILLed node's sockets drop out within its
presence TTL; a node that stops cleanly leaves at once.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
import socketio

from tests.support import login
from tests.support.nodes import LatchCluster, LatchNode
from tests.support.waiting import wait_for, wait_future

ADMIN = ("admin", "admin-password-123")
PASSWORD = "alice-password-123"
TTL = 3
ClientFactory = Callable[..., socketio.AsyncClient]


class Stream:
    """GET /admin/events on one node, parsed into (event, data) frames."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def until(self, name: str, where: Callable[[Any], bool] = lambda _: True,
                    timeout: float = 10.0) -> Any:
        async def scan() -> Any:
            event, data = "", None
            while True:
                raw = await self.response.content.readline()
                assert raw, f"the stream ended before {name!r}"
                line = raw.decode().rstrip("\n")
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and event:
                    if event == name and where(data):
                        return data
                    event, data = "", None

        return await wait_future(scan(), timeout, f"{name!r} on {self.response.url}")


@pytest.fixture
async def streams(http: aiohttp.ClientSession) -> AsyncIterator[list[Stream]]:
    opened: list[Stream] = []
    yield opened
    for stream in opened:
        stream.response.close()


async def open_stream(http: aiohttp.ClientSession, node: LatchNode, token: str,
                      opened: list[Stream]) -> Stream:
    response = await http.get(f"{node.url}/admin/events",
                              headers={"Authorization": f"Bearer {token}"})
    assert response.status == 200, await response.text()
    stream = Stream(response)
    opened.append(stream)
    assert await stream.until("hello") == {"node": node.node_id}
    return stream


async def get(http: aiohttp.ClientSession, node: LatchNode, path: str, token: str) -> Any:
    async with http.get(node.url + path, headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.json()


async def create_alice(http: aiohttp.ClientSession, node: LatchNode, token: str) -> None:
    async with http.post(f"{node.url}/admin/users", json={"username": "alice",
                                                          "password": PASSWORD},
                         headers={"Authorization": f"Bearer {token}"}) as resp:
        assert resp.status == 201, await resp.text()


async def socket_on(make_sio_client: ClientFactory, node: LatchNode, token: str) -> str:
    client = make_sio_client()
    await client.connect(node.url, auth={"token": token}, transports=["websocket"],
                         wait_timeout=5)
    sid = client.get_sid()
    assert sid is not None
    return sid


def sockets_by_node(page: dict[str, Any]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for conn in page["connections"]:
        out.setdefault(conn["node"], set()).add(conn["socket_id"])
    return out


async def test_two_nodes_one_listing_and_either_nodes_stream(
        latch_cluster: LatchCluster, redis_url: str, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory, streams: list[Stream]) -> None:
    a, b = latch_cluster(2, redis_url=redis_url, LATCH_PRESENCE_TTL=TTL)
    admin = (await login(http, a.url, *ADMIN))["access_token"]
    on_a = await open_stream(http, a, admin, streams)
    on_b = await open_stream(http, b, admin, streams)
    await create_alice(http, a, admin)
    phone = await login(http, b.url, "alice", PASSWORD, device="phone")
    laptop = await login(http, a.url, "alice", PASSWORD, device="laptop")

    sid_a = await socket_on(make_sio_client, a, laptop["access_token"])
    sid_b = await socket_on(make_sio_client, b, phone["access_token"])
    expected = {"node-a": {sid_a}, "node-b": {sid_b}}
    for stream in (on_a, on_b):
        for sid, node, device in ((sid_a, "node-a", "laptop"), (sid_b, "node-b", "phone")):
            conn = await stream.until("connect", lambda d, s=sid: d["socket_id"] == s)
            assert (conn["node"], conn["device"], conn["session_id"]) == (
                node, device, laptop["session_id"] if node == "node-a" else phone["session_id"])

    for node in (a, b):
        async def both_listed(node: LatchNode = node) -> bool:
            page = await get(http, node, "/admin/connections", admin)
            return sockets_by_node(page) == expected and page["nodes"] == [
                {"node": "node-a", "sockets": 1}, {"node": "node-b", "sockets": 1}]

        await wait_for(both_listed, timeout=5.0, message=f"both sockets listed on {node.node_id}")
        only_b = await get(http, node, "/admin/connections?node=node-b", admin)
        assert [c["socket_id"] for c in only_b["connections"]] == [sid_b]

    # "My devices" on node A knows the phone is online through node B.
    mine = await get(http, a, "/auth/sessions", laptop["access_token"])
    online = {s["device"]: (s["online"], s["connections"]) for s in mine["sessions"]}
    assert online == {"phone": (True, 1), "laptop": (True, 1)}
    users = await get(http, b, "/admin/users", admin)
    assert {u["username"]: u["online"] for u in users["users"]}["alice"] is True

    # A kill made on node A ends the socket on node B; both streams see it.
    async with http.post(f"{a.url}/admin/sessions/{phone['session_id']}/revoke",
                         headers={"Authorization": f"Bearer {admin}"}) as resp:
        assert resp.status == 200
        kill = await resp.json()
    assert kill["sockets"]["ended"] == 1 and kill["sockets"]["confirmed"] is True
    for stream in (on_a, on_b):
        revoked = await stream.until("session_revoked")
        assert revoked["session_ids"] == [phone["session_id"]]
        gone = await stream.until("disconnect", lambda d: d["socket_id"] == sid_b)
        assert (gone["node"], gone["session_id"]) == ("node-b", phone["session_id"])

    async def b_emptied() -> bool:
        page = await get(http, a, "/admin/connections", admin)
        return sockets_by_node(page) == {"node-a": {sid_a}}

    await wait_for(b_emptied, timeout=5.0, message="node-b's socket gone from the listing")


@pytest.mark.slow
async def test_a_sigkilled_nodes_sockets_disappear_within_its_ttl(
        latch_cluster: LatchCluster, redis_url: str, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory, streams: list[Stream]) -> None:
    a, b = latch_cluster(2, redis_url=redis_url, LATCH_PRESENCE_TTL=TTL)
    admin = (await login(http, a.url, *ADMIN))["access_token"]
    on_a = await open_stream(http, a, admin, streams)
    await create_alice(http, a, admin)
    alice = await login(http, b.url, "alice", PASSWORD)
    for _ in range(3):
        await socket_on(make_sio_client, b, alice["access_token"])

    async def three_on_b() -> bool:
        page = await get(http, a, "/admin/connections", admin)
        return len(sockets_by_node(page).get("node-b", ())) == 3

    await wait_for(three_on_b, timeout=5.0, message="node-b's sockets listed on node-a")

    b.kill()  # SIGKILL: no cleanup, no disconnect events; its heartbeats just stop
    killed_at = time.monotonic()

    async def b_gone() -> bool:
        page = await get(http, a, "/admin/connections", admin)
        return "node-b" not in sockets_by_node(page) and [n["node"] for n in page["nodes"]] == [
            "node-a"]

    await wait_for(b_gone, timeout=TTL + 1.0, interval=0.1,
                   message=f"node-b gone from node-a's listing within its TTL ({TTL}s)")
    assert time.monotonic() - killed_at <= TTL + 1.0
    # Node A's admin stream is told to reload: no disconnect events will ever come.
    resync = await on_a.until("resync", timeout=TTL + 2.0)
    assert resync == {"reason": "node_lost", "nodes": ["node-b"]}
    mine = await get(http, a, "/auth/sessions", alice["access_token"])
    assert [(s["online"], s["connections"]) for s in mine["sessions"]] == [(False, 0)]


async def test_a_node_that_stops_cleanly_leaves_at_once(
        latch_cluster: LatchCluster, redis_url: str, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory, streams: list[Stream]) -> None:
    # A long TTL: only the clean shutdown (not expiry) can remove node-b's sockets in time.
    a, b = latch_cluster(2, redis_url=redis_url, LATCH_PRESENCE_TTL=60)
    admin = (await login(http, a.url, *ADMIN))["access_token"]
    on_a = await open_stream(http, a, admin, streams)
    await create_alice(http, a, admin)
    alice = await login(http, b.url, "alice", PASSWORD)
    sid = await socket_on(make_sio_client, b, alice["access_token"])
    await on_a.until("connect", lambda d: d["socket_id"] == sid)

    assert b.stop() == 0  # SIGTERM
    gone = await on_a.until("disconnect", lambda d: d["socket_id"] == sid)
    assert gone["node"] == "node-b"
    page = await get(http, a, "/admin/connections", admin)
    assert page["total"] == 0 and [n["node"] for n in page["nodes"]] == ["node-a"]
