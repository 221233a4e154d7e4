"""A small raw Engine.IO v4 / Socket.IO v5 websocket client for load generation.

One load-generator process has to hold thousands of sockets, so this is not the
python-socketio client: one aiohttp websocket and (while the socket stays open)
one reader task per socket, ``__slots__`` objects, no reconnection logic, only
the default namespace ``/``.

Wire format (one Engine.IO packet per websocket text frame)::

    server: 0{"sid":..,"pingInterval":..}   open
    server: 2  -> client: 3                 ping / pong
    client: 40{"token": "..."}              namespace connect with auth (or "40")
    server: 40{"sid": ".."} | 44{..}        connect ack | connect_error
    client: 42<id>["event", data]           event asking for an ack
    server: 43<id>[data]                    ack
    server: 42["event", data]               event (recorded with a timestamp)
    server: 41                              namespace disconnect

Timestamps are ``time.monotonic()``; ``wall()`` converts one to epoch seconds.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

import aiohttp

WS_PATH = "/socket.io/?EIO=4&transport=websocket"

# Offset between the wall clock and the monotonic clock, fixed at import: the
# harness only compares timestamps within one run, a few minutes at most.
_WALL_OFFSET = time.time() - time.monotonic()


def wall(monotonic_ts: float) -> float:
    """Epoch seconds for a ``time.monotonic()`` timestamp taken in this process."""
    return monotonic_ts + _WALL_OFFSET


class EioError(Exception):
    """The server broke the protocol, closed early or did not answer in time."""


class ConnectRefused(EioError):
    """The namespace connect ended in ``44`` (Socket.IO ``connect_error``)."""

    def __init__(self, data: Any) -> None:
        self.data = data
        code = data.get("data", {}).get("code") if isinstance(data, dict) else None
        message = data.get("message") if isinstance(data, dict) else None
        self.code: str | None = code or message
        super().__init__(f"connect_error: {self.code or data!r}")


@dataclass(frozen=True, slots=True)
class Options:
    """How sockets connect. One instance is shared by every socket of a run."""

    base_url: str
    token: str | None = None
    token_in_header: bool = False
    compress: bool = False
    connect_timeout: float = 15.0
    record_events: bool = True

    @property
    def ws_url(self) -> str:
        return self.base_url.rstrip("/") + WS_PATH


class EioSocket:
    """One Socket.IO connection on the default namespace."""

    __slots__ = (
        "_acks",
        "_next_id",
        "_reader",
        "closed_at",
        "connected_at",
        "disconnect_at",
        "eio_sid",
        "ended_at",
        "events",
        "record_events",
        "sid",
        "started_at",
        "ws",
    )

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, *, record_events: bool) -> None:
        self.ws = ws
        self.record_events = record_events
        self.eio_sid: str | None = None
        self.sid: str | None = None
        self.started_at = 0.0
        self.connected_at = 0.0
        #: time of the ``41`` packet (server-side namespace disconnect)
        self.disconnect_at: float | None = None
        #: time the websocket was seen closed (by either side)
        self.closed_at: float | None = None
        #: time of the first ``session_ended`` event
        self.ended_at: float | None = None
        #: (event name, payload, monotonic time) for every server event
        self.events: list[tuple[str, Any, float]] = []
        self._acks: dict[int, asyncio.Future[list[Any]]] = {}
        self._next_id = 0
        self._reader: asyncio.Task[None] | None = None

    # -- state ---------------------------------------------------------------

    @property
    def gone_at(self) -> float | None:
        """When the client saw the server end this socket: ``41`` or close, first."""
        if self.disconnect_at is None:
            return self.closed_at
        if self.closed_at is None:
            return self.disconnect_at
        return min(self.disconnect_at, self.closed_at)

    @property
    def is_open(self) -> bool:
        return self.gone_at is None

    def first_event(self, name: str) -> tuple[Any, float] | None:
        for ev_name, data, ts in self.events:
            if ev_name == name:
                return data, ts
        return None

    # -- packets ---------------------------------------------------------------

    def _handle(self, text: str, now: float) -> str | None:
        """Handle one Engine.IO packet; return the packet to answer with, if any."""
        kind = text[:1]
        if kind == "4":
            sio_type = text[1:2]
            if sio_type == "2":
                return self._on_event(text, now)
            if sio_type == "3":
                self._on_ack(text)
            elif sio_type == "0":
                body = json.loads(text[2:]) if len(text) > 2 else {}
                self.sid = body.get("sid")
                self.connected_at = now
            elif sio_type == "1":
                if self.disconnect_at is None:
                    self.disconnect_at = now
            elif sio_type == "4":
                raise ConnectRefused(json.loads(text[2:]) if len(text) > 2 else None)
        elif kind == "2":
            return "3" + text[1:]
        elif kind == "1" and self.closed_at is None:
            self.closed_at = now
        return None

    def _on_event(self, text: str, now: float) -> str | None:
        i = 2
        while i < len(text) and text[i].isdigit():
            i += 1
        ack_id = text[2:i]
        payload = json.loads(text[i:])
        name = payload[0]
        data = payload[1] if len(payload) == 2 else payload[1:]
        if name == "session_ended" and self.ended_at is None:
            self.ended_at = now
        if self.record_events:
            self.events.append((name, data, now))
        return f"43{ack_id}[]" if ack_id else None

    def _on_ack(self, text: str) -> None:
        i = 2
        while i < len(text) and text[i].isdigit():
            i += 1
        fut = self._acks.pop(int(text[2:i]), None)
        if fut is not None and not fut.done():
            fut.set_result(json.loads(text[i:]))

    async def _send(self, text: str) -> None:
        if self.ws.closed:
            return
        try:
            await self.ws.send_str(text)
        except (ConnectionError, RuntimeError):
            self._mark_closed()

    def _mark_closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = time.monotonic()
        for fut in self._acks.values():
            if not fut.done():
                fut.set_exception(EioError("socket closed before the ack"))
        self._acks.clear()

    # -- lifecycle -------------------------------------------------------------

    async def _handshake(self, auth: dict[str, Any] | None, timeout: float) -> None:
        ws = self.ws
        async with asyncio.timeout(timeout):
            msg = await ws.receive()
            if msg.type is not aiohttp.WSMsgType.TEXT or not msg.data.startswith("0"):
                raise EioError(f"expected an Engine.IO open packet, got {msg.type!r}")
            self.eio_sid = json.loads(msg.data[1:]).get("sid")
            await ws.send_str("40" + json.dumps(auth, separators=(",", ":")) if auth else "40")
            while True:
                msg = await ws.receive()
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    self._mark_closed()
                    raise EioError(f"socket closed during the handshake ({msg.type!r})")
                reply = self._handle(msg.data, time.monotonic())
                if reply is not None:
                    await self._send(reply)
                if self.connected_at:
                    return

    def start(self) -> None:
        """Start the reader task (answers pings, records events and acks)."""
        if self._reader is None:
            self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ws = self.ws
        text_type = aiohttp.WSMsgType.TEXT
        try:
            while True:
                msg = await ws.receive()
                now = time.monotonic()
                if msg.type is text_type:
                    reply = self._handle(msg.data, now)
                    if reply is not None:
                        await self._send(reply)
                    if self.disconnect_at is not None:
                        # What socket.io-client does on "io server disconnect":
                        # drop the transport, and do not reconnect.
                        await ws.close()
                        self._mark_closed()
                        return
                elif msg.type is aiohttp.WSMsgType.BINARY:
                    continue
                else:
                    self._mark_closed()
                    return
        except (EioError, ConnectionError, RuntimeError, ValueError):
            self._mark_closed()

    async def call(self, event: str, data: Any, timeout: float = 10.0) -> list[Any]:
        """Emit ``event`` asking for an ack; return the ack's argument list."""
        if self._reader is None:
            self.start()
        self._next_id += 1
        ack_id = self._next_id
        fut: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._acks[ack_id] = fut
        await self.ws.send_str(f"42{ack_id}" + json.dumps([event, data], separators=(",", ":")))
        try:
            async with asyncio.timeout(timeout):
                return await fut
        finally:
            self._acks.pop(ack_id, None)

    async def close(self) -> None:
        """Close like a client that leaves: ``41`` then the websocket close handshake."""
        if not self.ws.closed:
            try:
                if self.gone_at is None:
                    await self.ws.send_str("41")
                await self.ws.close()
            except (ConnectionError, RuntimeError):
                pass
        self._mark_closed()
        reader = self._reader
        if reader is not None and not reader.done():
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass


async def connect(
    session: aiohttp.ClientSession, opts: Options, *, start_reader: bool = True
) -> EioSocket:
    """Open a websocket, connect the default namespace, return the socket.

    Raises :class:`ConnectRefused` on ``connect_error`` and :class:`EioError` on
    anything else that goes wrong; the websocket is closed in both cases.
    """
    started = time.monotonic()
    headers = {"Authorization": f"Bearer {opts.token}"} if opts.token_in_header else None
    auth = {"token": opts.token} if opts.token and not opts.token_in_header else None
    try:
        ws = await session.ws_connect(
            opts.ws_url,
            compress=15 if opts.compress else 0,
            headers=headers,
            autoping=True,
            max_msg_size=0,
            timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
        )
    except (aiohttp.ClientError, OSError) as exc:
        raise EioError(f"websocket upgrade failed: {exc!r}") from exc
    sock = EioSocket(ws, record_events=opts.record_events)
    sock.started_at = started
    try:
        await sock._handshake(auth, opts.connect_timeout)
    except BaseException as exc:
        await ws.close()
        if isinstance(exc, TimeoutError):
            raise EioError("namespace connect timed out") from exc
        raise
    if start_reader:
        sock.start()
    return sock


def make_session(limit: int = 0) -> aiohttp.ClientSession:
    """A client session fit for thousands of websockets to one host."""
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=0, force_close=True)
    return aiohttp.ClientSession(connector=connector)
