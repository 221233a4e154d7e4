"""The reference server: bare python-socketio on aiohttp, no authentication.

It is the floor that Latch's figures are compared with: the same libraries, the
same transport, and handlers that do nothing but answer. Events:

* ``echo`` acks with its own payload;
* ``whoami`` acks ``{}``;
* ``refresh`` acks ``{"ok": true}`` (the floor for Latch's token refresh);
* ``bench_end_all`` ``{"at": epoch}`` acks ``{}`` and, at wall-clock ``at``, sends
  every connected socket ``session_ended`` and disconnects it, the way Latch ends
  expired sockets. It gives the harness a floor for the mass-expiry figure.

Run: ``python bench/bare_server.py --port 0`` prints ``READY <port>`` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import signal
import sys
import time
from typing import Any

import socketio
from aiohttp import web
from aiohttp.web import WebSocketResponse
from engineio.async_drivers.aiohttp import WebSocket as EioAiohttpWebSocket
from procs import raise_nofile_limit


class _UncompressedWebSocket(EioAiohttpWebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket wrapper, refusing permessage-deflate.

    python-engineio 4.15.1 has no option for websocket compression: its aiohttp
    driver builds ``WebSocketResponse()`` whose ``compress`` defaults to True, so
    any client that offers permessage-deflate (every browser) gets it. Only
    ``http_compression`` exists, and it covers long-polling bodies only.
    """

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(
            max_msg_size=self.server.max_http_buffer_size, compress=False
        )
        await self._sock.prepare(request)
        self.environ = environ
        await self.handler(self)
        return self._sock


class IndexedRoomsManager(socketio.AsyncManager):  # type: ignore[misc]
    """``AsyncManager`` with a sid -> rooms index, so a disconnect is O(its rooms).

    python-socketio 5.18.1's ``BaseManager.basic_disconnect`` copies the
    namespace's room table and tests every room for the sid. Every socket has
    its own room, so one disconnect costs O(connected sockets) and ending N
    sockets at once costs O(N^2): about 1 ms per socket at 5,000. Opt-in here
    (``--indexed-rooms``) to show what the fix buys; the default stays stock.
    """

    def __init__(self) -> None:
        super().__init__()
        self._sid_rooms: dict[tuple[str, str], set[Any]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self._sid_rooms.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self._sid_rooms.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self._sid_rooms[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        if namespace not in self.rooms:
            return
        for room in list(self._sid_rooms.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self._sid_rooms.pop((namespace, sid), None)
        # The rest of BaseManager.basic_disconnect, unchanged.
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if namespace in pending and sid in pending[namespace]:
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]


def _latch_transport_server(compression: bool) -> type[socketio.AsyncServer]:
    """python-socketio's server over Latch's Engine.IO layer (handlers/socket_transport.py),
    for telling the cost of authentication apart from the cost of the transport."""
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import functools

    from handlers.socket_transport import EngineServer, WebSocketTransport

    class Server(socketio.AsyncServer):  # type: ignore[misc]
        def _engineio_server_class(self) -> type[EngineServer]:
            return EngineServer

        def attach(self, app: web.Application, **kwargs: Any) -> None:
            self.eio._async = {**self.eio._async, "websocket": functools.partial(
                WebSocketTransport, compress=compression)}
            super().attach(app, **kwargs)

    return Server


def build_app(
    *, compression: bool, indexed_rooms: bool = False, latch_transport: bool = False
) -> tuple[web.Application, socketio.AsyncServer]:
    manager = IndexedRoomsManager() if indexed_rooms else None
    server_class = _latch_transport_server(compression) if latch_transport \
        else socketio.AsyncServer
    sio = server_class(
        async_mode="aiohttp", cors_allowed_origins=None, client_manager=manager
    )
    if not compression and not latch_transport:
        # Per-instance copy: the driver table is a module-level dict shared by
        # every engine.io server in the process.
        sio.eio._async = {**sio.eio._async, "websocket": _UncompressedWebSocket}
    app = web.Application()
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        return None

    @sio.event
    async def echo(sid: str, data: Any = None) -> Any:
        return data

    @sio.event
    async def whoami(sid: str, data: Any = None) -> dict[str, Any]:
        return {}

    @sio.event
    async def refresh(sid: str, data: Any = None) -> dict[str, Any]:
        return {"ok": True}

    @sio.event
    async def bench_end_all(sid: str, data: Any = None) -> dict[str, Any]:
        at = float(data["at"]) if isinstance(data, dict) and "at" in data else time.time()
        sio.start_background_task(_end_all_at, sio, at)
        return {}

    return app, sio


async def _end_all_at(sio: socketio.AsyncServer, at: float) -> None:
    await asyncio.sleep(max(0.0, at - time.time()))
    sids = [sid for sid, _eio in sio.manager.get_participants("/", None)]
    for sid in sids:
        await sio.emit(
            "session_ended", {"code": "token_expired", "message": "bench"}, to=sid
        )
        await sio.disconnect(sid)


async def serve(port: int, *, compression: bool, freeze_gc: bool,
                indexed_rooms: bool = False, latch_transport: bool = False) -> None:
    app, _sio = build_app(compression=compression, indexed_rooms=indexed_rooms,
                          latch_transport=latch_transport)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    bound = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    if freeze_gc:
        gc.collect()
        gc.freeze()
    print(f"READY {bound}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument(
        "--compression",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="accept websocket permessage-deflate when a client offers it (default: off)",
    )
    parser.add_argument(
        "--gc-freeze",
        action="store_true",
        help="gc.freeze() after start-up (fewer full collections with many sockets)",
    )
    parser.add_argument(
        "--indexed-rooms",
        action="store_true",
        help="O(1) disconnects (not stock python-socketio: see IndexedRoomsManager)",
    )
    parser.add_argument(
        "--latch-transport",
        action="store_true",
        help="Latch's Engine.IO layer (handlers/socket_transport.py) instead of the stock one",
    )
    parser.add_argument("--cpu", type=int, default=None, help="pin this process to one core")
    args = parser.parse_args(argv)
    raise_nofile_limit()
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(serve(args.port, compression=args.compression, freeze_gc=args.gc_freeze,
                      indexed_rooms=args.indexed_rooms, latch_transport=args.latch_transport))
    return 0


if __name__ == "__main__":
    sys.exit(main())
