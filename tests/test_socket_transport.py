"""The Engine.IO layer under the socket channel (handlers/socket_transport.py), raw.

These tests speak Engine.IO v4 / Socket.IO v5 over a plain aiohttp websocket, so
they can do what a library client never would: stay silent through pings, keep
the websocket open after the server said goodbye, send frames that are not
Engine.IO packets. The library clients' view of the same paths is covered in
tests/test_sockets.py and tests/test_sockets_js.py.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from engineio.async_socket import AsyncSocket

from handlers import sockets as sockets_module
from handlers.sockets import GATEWAY_KEY, SIO_KEY
from tests.support import RunningServer, login
from tests.support.waiting import wait_for

ADMIN = ("admin", "admin-password-123")


class RawSocket:
    """One Engine.IO websocket session, driven frame by frame."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws

    async def frame(self, timeout: float = 3.0) -> str | None:
        """The next text frame; None once the server has closed the websocket."""
        message = await asyncio.wait_for(self.ws.receive(), timeout)
        if message.type == aiohttp.WSMsgType.TEXT:
            text: str = message.data
            return text
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                                aiohttp.WSMsgType.CLOSING), message
        return None

    async def expect(self, prefix: str, timeout: float = 3.0) -> str:
        frame = await self.frame(timeout)
        assert frame is not None and frame.startswith(prefix), (prefix, frame)
        return frame

    async def connect(self, token: str) -> dict[str, Any]:
        """Engine.IO open, namespace connect with auth; the ``session`` event's payload."""
        await self.expect("0{")
        await self.ws.send_str("40" + json.dumps({"token": token}))
        await self.expect('40{"sid"')
        event = json.loads((await self.expect('42["session"'))[2:])
        payload: dict[str, Any] = event[1]
        return payload


def ws_url(server: RunningServer) -> str:
    return f"{server.url.replace('http', 'ws', 1)}/socket.io/?EIO=4&transport=websocket"


def fast_pings(server: RunningServer, interval: float, timeout: float) -> None:
    # Set before the first connection: the OPEN packet and the monitor task read these.
    eio = server.app[SIO_KEY].eio
    eio.ping_interval = interval
    eio.ping_timeout = timeout


async def test_pings_arrive_and_an_answering_client_stays(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    fast_pings(server, 0.3, 1.0)
    token = (await login(http, server.url, *ADMIN))["access_token"]
    async with http.ws_connect(ws_url(server)) as ws:
        sock = RawSocket(ws)
        await sock.connect(token)
        for _ in range(4):  # four ping cycles, more than one ping_timeout in all
            assert await sock.frame() == "2"
            await ws.send_str("3")
        await ws.send_str('421["echo","still here"]')
        assert await sock.frame() == '431["still here"]'


async def test_a_client_that_stops_answering_pings_is_closed(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    fast_pings(server, 0.3, 0.5)
    token = (await login(http, server.url, *ADMIN))["access_token"]
    async with http.ws_connect(ws_url(server)) as ws:
        sock = RawSocket(ws)
        await sock.connect(token)
        assert await sock.frame() == "2"  # not answered
        started = time.monotonic()
        # The server closes the websocket (no CLOSE packet: Engine.IO sends none to a
        # client it has given up on) after ping_timeout and at most one monitor sweep.
        assert await sock.frame(timeout=5.0) is None
        assert time.monotonic() - started < 4.0
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 0, 3.0,
                   message="the silent socket to be forgotten")


async def test_the_server_closes_the_websocket_after_ending_a_socket(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A client that ignores the goodbye packets does not keep its connection: the
    namespace-connect deadline closes its Engine.IO session, and with it the websocket."""
    monkeypatch.setattr(sockets_module, "CONNECT_TIMEOUT", 0.3)
    server = await make_server()
    token = (await login(http, server.url, *ADMIN))["access_token"]
    async with http.ws_connect(ws_url(server)) as ws:
        sock = RawSocket(ws)
        session = await sock.connect(token)
        gateway = server.app[GATEWAY_KEY]
        ended = await gateway.end_sessions([session["session_id"]], "session_revoked")
        assert ended == 1
        assert (await sock.expect('42["session_ended"')).find("session_revoked") > 0
        assert await sock.frame() == "41"
        assert await sock.frame() == "1"  # 0.3 s later: Engine.IO's CLOSE
        assert await sock.frame(timeout=2.0) is None  # and the server closes the websocket


async def test_malformed_frames_close_only_that_socket_quietly(
        server: RunningServer, http: aiohttp.ClientSession,
        caplog: pytest.LogCaptureFixture) -> None:
    """Garbage at either layer (not Engine.IO; Engine.IO but not Socket.IO) closes that
    connection, as the JS server does on a parse error, without a traceback in the log
    (a client could otherwise write one per packet)."""
    token = (await login(http, server.url, *ADMIN))["access_token"]
    garbage_frames: list[str | bytes] = [
        "", "x", "\u00e9\u00e9", "Z{}", "9",  # not Engine.IO
        '42["echo", ', "4x", "4" + "2" * 120 + '["echo",1]',  # not Socket.IO
        b"\x00\x01",  # a binary part nobody announced
    ]
    with caplog.at_level(logging.INFO):
        async with http.ws_connect(ws_url(server)) as bystander_ws:
            bystander = RawSocket(bystander_ws)
            await bystander.connect(token)
            for garbage in garbage_frames:
                async with http.ws_connect(ws_url(server)) as ws:
                    sock = RawSocket(ws)
                    await sock.connect(token)
                    if isinstance(garbage, bytes):
                        await ws.send_bytes(garbage)
                    else:
                        await ws.send_str(garbage)
                    while await sock.frame() is not None:
                        pass
            await bystander_ws.send_str('421["echo","fine"]')
            assert await bystander.frame() == '431["fine"]'
        await wait_for(lambda: server.app[GATEWAY_KEY].count() == 0, 3.0,
                       message="every closed socket to be forgotten")
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING or r.exc_info]
    assert not noisy, [r.getMessage() for r in noisy]


async def test_a_second_connect_is_refused_and_the_socket_stays(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    token = (await login(http, server.url, *ADMIN))["access_token"]
    async with http.ws_connect(ws_url(server)) as ws:
        sock = RawSocket(ws)
        await sock.connect(token)
        await ws.send_str("40" + json.dumps({"token": token}))
        refusal = json.loads((await sock.expect("44"))[2:])
        assert refusal == {"message": "bad_request", "data": {
            "code": "bad_request", "message": "Namespace already connected"}}
        await ws.send_str('421["whoami"]')
        ack = json.loads((await sock.expect("431"))[3:])
        assert ack[0]["ok"] is True
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 0, 3.0,
                   message="the socket to be forgotten")


async def test_closed_sockets_are_not_kept_alive(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    """python-engineio's own keep-alive is a task per socket sleeping ping_interval (25 s)
    that holds the socket after it closes; Latch's is a timer cancelled on close."""
    token = (await login(http, server.url, *ADMIN))["access_token"]
    for _ in range(20):
        async with http.ws_connect(ws_url(server)) as ws:
            await RawSocket(ws).connect(token)
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 0, 3.0,
                   message="every socket to be forgotten")
    await wait_for(lambda: not server.app[SIO_KEY].eio.sockets, 3.0,
                   message="Engine.IO to drop its closed sockets")

    eio = server.app[SIO_KEY].eio

    def alive() -> int:  # this server's sockets (earlier tests' servers may linger)
        gc.collect()
        return sum(1 for obj in gc.get_objects()
                   if isinstance(obj, AsyncSocket) and obj.server is eio)

    await wait_for(lambda: alive() == 0, 3.0, message="no closed socket to stay reachable")


async def test_engineio_disconnect_sends_close_and_returns_even_if_handlers_yield(
        server: RunningServer, http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """``eio.disconnect`` closes with ``wait=True`` (it joins the send queue): the writer
    must consume the CLOSE packet and its wake-up in order, even when a ``disconnect``
    handler yields to the loop before the CLOSE packet is queued."""
    sio = server.app[SIO_KEY]
    original = sio._handle_eio_disconnect

    async def slow_disconnect(eio_sid: str, reason: str) -> None:
        await asyncio.sleep(0.05)
        await original(eio_sid, reason)

    monkeypatch.setattr(sio.eio, "handlers", {**sio.eio.handlers, "disconnect": slow_disconnect})
    token = (await login(http, server.url, *ADMIN))["access_token"]
    async with http.ws_connect(ws_url(server)) as ws:
        sock = RawSocket(ws)
        await sock.connect(token)
        (eio_sid,) = list(sio.eio.sockets)
        await asyncio.wait_for(sio.eio.disconnect(eio_sid), 3.0)
        frames = []
        while (frame := await sock.frame()) is not None:
            frames.append(frame)
        assert frames == ["1"], frames  # Engine.IO's CLOSE, then the websocket closes
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 0, 3.0,
                   message="the socket to be forgotten")


async def test_websocket_compression_is_off_by_default_and_a_setting(
        make_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    """Browsers always offer permessage-deflate; it costs ~100 KB per socket, so Latch
    declines unless LATCH_SOCKET_COMPRESSION is set (and then still speaks normally)."""
    for env, negotiated in (({}, False), ({"LATCH_SOCKET_COMPRESSION": "1"}, True)):
        server = await make_server(env)
        token = (await login(http, server.url, *ADMIN))["access_token"]
        async with http.ws_connect(ws_url(server), compress=15) as ws:
            extensions = ws._response.headers.get("Sec-WebSocket-Extensions", "")
            assert ("permessage-deflate" in extensions) is negotiated, (env, extensions)
            assert (ws.compress != 0) is negotiated
            sock = RawSocket(ws)
            await sock.connect(token)
            blob = "z" * 5000
            await ws.send_str('421["echo",' + json.dumps(blob) + "]")
            assert await sock.frame() == "431[" + json.dumps(blob) + "]"


async def test_a_polling_client_disconnects_at_once(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: Callable[..., Any]) -> None:
    """Closing a polling session answers its pending long-poll; python-engineio would hold
    it (and the client's ``disconnect()``) for ping_interval + ping_timeout."""
    token = (await login(http, server.url, *ADMIN))["access_token"]
    client = make_sio_client()
    await client.connect(server.url, auth={"token": token}, transports=["polling"],
                         wait_timeout=5)
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 1, 3.0, message="connected")
    started = time.monotonic()
    await asyncio.wait_for(client.disconnect(), 10.0)
    assert time.monotonic() - started < 5.0
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 0, 3.0,
                   message="the socket to be forgotten")
