"""GET /admin/events (Server-Sent Events) and the hub behind it.

The hub's bounds are unit-tested (overflow → one ``resync``, a stalled reader is
dropped, shutdown closes every stream); the stream itself is tested end to end
on the real server with real sockets and an aiohttp client reading the bytes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import socketio

from app.audit import Actor
from app.clock import FrozenClock
from app.events import EventHub
from app.feed import EventMessage
from app.services import SERVICES
from handlers.admin import EVENT_HUB
from tests.support import RunningServer, login
from tests.support.waiting import wait_future

ADMIN = ("admin", "admin-password-123")
PASSWORD = "user-password-123"
ClientFactory = Callable[..., socketio.AsyncClient]


# --- the hub -----------------------------------------------------------------------------


def test_batches_are_unpacked_into_one_event_per_socket() -> None:
    hub = EventHub()
    with hub.subscribe() as sub:
        hub.deliver(EventMessage(origin="n", name="connect",
                                 data={"batch": [{"socket_id": "a"}, {"socket_id": "b"}, 7]}))
        hub.deliver(EventMessage(origin="n", name="session_revoked", data={"scope": "all"}))
        got = [(e.name, e.data) for e in sub.drain(10)]
    assert got == [("connect", {"socket_id": "a"}), ("connect", {"socket_id": "b"}),
                   ("session_revoked", {"scope": "all"})]
    assert len(hub) == 0  # leaving the with-block unsubscribed


def test_a_subscriber_that_falls_behind_gets_one_resync_instead() -> None:
    hub = EventHub(max_pending=5)
    with hub.subscribe() as slow, hub.subscribe() as fast:
        for n in range(5):
            hub.publish("connect", {"n": n})
        assert [e.data["n"] for e in fast.drain(10)] == [0, 1, 2, 3, 4]
        for n in range(5, 50):
            hub.publish("connect", {"n": n})
            fast.drain(10)
        events = slow.drain(100)
        assert [e.name for e in events] == ["resync"]
        assert events[0].data == {"reason": "overflow", "nodes": []}
        assert slow.dropped == 50
        hub.publish("disconnect", {"n": 50})  # after the resync is read, events flow again
        assert [e.data for e in slow.drain(10)] == [{"n": 50}]


def test_a_stalled_subscriber_is_dropped() -> None:
    clock = FrozenClock()
    hub = EventHub(max_pending=2, stall_timeout=30.0, clock=clock)
    sub = hub.subscribe()
    for n in range(3):
        hub.publish("connect", {"n": n})  # overflow: a resync waits to be read
    clock.advance(10)
    hub.publish("connect", {"n": 3})
    assert not sub.closed
    clock.advance(25)
    hub.publish("connect", {"n": 4})
    assert sub.closed and len(hub) == 0


async def test_close_ends_every_stream_at_once() -> None:
    hub = EventHub()
    sub = hub.subscribe()
    waiter = asyncio.create_task(sub.wait())
    await asyncio.sleep(0)
    hub.close()
    await wait_future(waiter, 1.0, "wait() to return after close()")
    assert sub.closed and sub.drain(10) == []
    assert hub.subscribe().closed  # a stream opened during shutdown ends at once


def test_resync_replaces_what_is_queued() -> None:
    hub = EventHub()
    with hub.subscribe() as sub:
        hub.publish("connect", {"n": 1})
        hub.resync("node_lost", ["node-b"])
        assert [(e.name, e.data) for e in sub.drain(10)] == [
            ("resync", {"reason": "node_lost", "nodes": ["node-b"]})]


# --- the stream ----------------------------------------------------------------------------


class SseStream:
    """An open GET /admin/events, parsed frame by frame (comments come back as ``(':', text)``)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self, timeout: float = 5.0) -> tuple[str, Any]:
        async def frame() -> tuple[str, Any]:
            name, data = "", None
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return "EOF", None
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    return ":", line[1:].strip()
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                elif line == "" and name:
                    return name, data

        return await wait_future(frame(), timeout, "the next server-sent event")

    async def until(self, name: str, timeout: float = 5.0,
                    where: Callable[[Any], bool] = lambda _: True) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            got, data = await self.next(max(0.01, deadline - time.monotonic()))
            if got == name and where(data):
                return data
            assert got != "EOF", f"the stream ended before {name!r}"


async def open_stream(http: aiohttp.ClientSession, url: str, token: str) -> SseStream:
    response = await http.get(f"{url}/admin/events", headers={
        "Authorization": f"Bearer {token}", "Accept": "text/event-stream"})
    assert response.status == 200, await response.text()
    return SseStream(response)


async def admin_login(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    return await login(http, url, *ADMIN)


async def new_user(server: RunningServer, http: aiohttp.ClientSession, name: str,
                   role: str = "user") -> dict[str, Any]:
    await server.app[SERVICES].users.create(name, PASSWORD, role, actor=Actor.system("test"))
    return await login(http, server.url, name, PASSWORD, device=f"{name}'s phone")


async def test_the_stream_says_hello_first_with_the_right_headers(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    admin = await admin_login(http, server.url)
    stream = await open_stream(http, server.url, admin["access_token"])
    headers = stream.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert await stream.next() == ("hello", {"node": "test-node"})
    stream.response.close()


async def test_only_admins_may_listen(server: RunningServer,
                                      http: aiohttp.ClientSession) -> None:
    user = await new_user(server, http, "alice")
    async with http.get(f"{server.url}/admin/events") as resp:
        assert resp.status == 401
    async with http.get(f"{server.url}/admin/events?access_token={user['access_token']}") as resp:
        assert resp.status == 401  # never a token in the URL
    async with http.get(f"{server.url}/admin/events",
                        headers={"Authorization": f"Bearer {user['access_token']}"}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"


async def test_connect_and_disconnect_events_one_per_socket(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    admin = await admin_login(http, server.url)
    stream = await open_stream(http, server.url, admin["access_token"])
    await stream.until("hello")
    alice = await new_user(server, http, "alice")
    clients = [make_sio_client() for _ in range(2)]
    for client in clients:
        await client.connect(server.url, auth={"token": alice["access_token"]},
                             transports=["websocket"], wait_timeout=5)
    ids = {client.get_sid() for client in clients}
    seen = [await stream.until("connect") for _ in ids]
    assert {c["socket_id"] for c in seen} == ids
    conn = seen[0]
    assert conn["user"] == alice["user"]
    assert (conn["session_id"], conn["device"], conn["node"], conn["transport"]) == (
        alice["session_id"], "alice's phone", "test-node", "websocket")
    assert set(conn) == {"socket_id", "user", "session_id", "device", "node", "connected_at",
                         "expires_at", "transport", "ip", "user_agent"}
    await clients[0].disconnect()
    gone = await stream.until("disconnect")
    assert gone["socket_id"] == clients[0].get_sid() or gone["socket_id"] in ids
    assert {k: gone[k] for k in ("session_id", "user_id", "node")} == {
        "session_id": alice["session_id"], "user_id": alice["user"]["id"], "node": "test-node"}
    stream.response.close()


async def test_pings_keep_the_stream_open(make_server: Callable[..., Any],
                                          http: aiohttp.ClientSession) -> None:
    server = await make_server(extra={"sse_ping_interval": 0.2})
    admin = await admin_login(http, server.url)
    stream = await open_stream(http, server.url, admin["access_token"])
    await stream.until("hello")
    assert await stream.next(2.0) == (":", "ping")
    assert await stream.next(2.0) == (":", "ping")
    stream.response.close()


async def test_revocations_and_user_changes_are_streamed(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    admin = await admin_login(http, server.url)
    auth = {"Authorization": f"Bearer {admin['access_token']}"}
    stream = await open_stream(http, server.url, admin["access_token"])
    await stream.until("hello")
    alice = await new_user(server, http, "alice")
    async with http.post(f"{server.url}/admin/sessions/{alice['session_id']}/revoke",
                         headers=auth, json={"reason": "test"}) as resp:
        assert resp.status == 200
    revoked = await stream.until("session_revoked")
    assert revoked == {"scope": "session", "target": alice["session_id"],
                       "session_ids": [alice["session_id"]], "user_id": alice["user"]["id"],
                       "code": "session_revoked", "node": "test-node"}
    async with http.patch(f"{server.url}/admin/users/{alice['user']['id']}", headers=auth,
                          json={"disabled": True}) as resp:
        assert resp.status == 200
    changed = await stream.until("user_changed")
    assert changed["user"]["id"] == alice["user"]["id"] and changed["user"]["disabled"] is True
    stream.response.close()


async def test_bye_when_the_listening_admins_own_session_is_revoked(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    admin = await admin_login(http, server.url)
    other = await admin_login(http, server.url)
    stream = await open_stream(http, server.url, admin["access_token"])
    await stream.until("hello")
    async with http.post(f"{server.url}/admin/sessions/{admin['session_id']}/revoke",
                         headers={"Authorization": f"Bearer {other['access_token']}"}) as resp:
        assert resp.status == 200
    assert await stream.until("bye") == {"code": "session_revoked"}
    assert await stream.next() == ("EOF", None)


async def test_bye_when_the_listening_admin_is_demoted(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    root = await admin_login(http, server.url)
    bob = await new_user(server, http, "bob", role="admin")
    stream = await open_stream(http, server.url, bob["access_token"])
    await stream.until("hello")
    async with http.patch(f"{server.url}/admin/users/{bob['user']['id']}", json={"role": "user"},
                          headers={"Authorization": f"Bearer {root['access_token']}"}) as resp:
        assert resp.status == 200
    assert await stream.until("bye") == {"code": "role_changed"}
    assert await stream.next() == ("EOF", None)


async def test_a_burst_turns_into_one_resync_for_a_slow_reader(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    admin = await admin_login(http, server.url)
    stream = await open_stream(http, server.url, admin["access_token"])
    await stream.until("hello")
    hub = server.app[EVENT_HUB]
    for n in range(1000):  # no await in between: the stream cannot keep up
        hub.publish("connect", {"socket_id": f"s{n}"})
    name, data = await stream.next()
    assert (name, data) == ("resync", {"reason": "overflow", "nodes": []})
    hub.publish("disconnect", {"socket_id": "s1"})  # after the resync, events flow again
    assert await stream.next() == ("disconnect", {"socket_id": "s1"})
    stream.response.close()


async def test_shutdown_closes_open_streams_without_bye(
        make_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    server = await make_server()
    admin = await admin_login(http, server.url)
    stream = await open_stream(http, server.url, admin["access_token"])
    await stream.until("hello")
    started = time.monotonic()
    await wait_future(server.runner.cleanup(), 5.0, "runner.cleanup() with a stream open")
    assert time.monotonic() - started < 5.0
    assert await stream.next() == ("EOF", None)
