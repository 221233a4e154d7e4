"""The Engine.IO layer under Latch's Socket.IO server: the websocket loop and pings.

python-engineio 4.15 is correct but spends more per message than the rest of a
Latch event costs, and these are the paths every socket takes all its life:

* its websocket reader wraps every frame read in a new task and an
  ``asyncio.wait_for``, and its writer waits on the send queue with another
  ``wait_for``: two tasks' and two timers' worth of work per message;
* its keep-alive ping is a task per socket sleeping ``ping_interval`` (25 s),
  never cancelled, and its monitor task sleeps through a copy of the socket
  table, so every closed socket stays reachable for up to 20-25 s (at 1,000
  connects/s: ~25,000 dead sockets for the collector to walk).

:class:`WebSocketTransport` (the aiohttp websocket driver, which Engine.IO lets a
server replace) runs a direct websocket session with a plain read loop and a
writer that waits on the queue without a timer; :class:`EngineServer` turns each
keep-alive ping into one ``loop.call_later`` handle, cancelled when the socket
closes, and sweeps for unanswered pings without holding the table.

Protocol, ordering and timeouts are Engine.IO's own: pings every
``ping_interval``, a client that does not answer within ``ping_timeout`` is
closed by the monitor task (which replaces the reader's per-read
timeout), a frame larger than ``max_http_buffer_size`` ends the connection, and
the send queue keeps ``close(wait=True)``/``queue.join()`` working. Some things
are deliberately different: when a socket closes (ping timeout, connect
deadline, disconnect), :meth:`EngineServer.socket_closed` stops the websocket
writer and the websocket is closed at once (python-engineio leaves it open
until its writer's 45 s poll timeout), or answers a pending long-poll (which
python-engineio holds for ~45 s when the client closed); and a frame that is not an Engine.IO
packet closes the connection with one INFO line (python-engineio raised from
its own log formatting on an unknown packet type, or let a decode error escape
the websocket handler).

A polling session that probes an upgrade keeps python-engineio's own handler
(rare, and the upgrade handshake is subtle); the wrapper only reports it.

Private python-engineio attributes used here (``AsyncSocket._websocket_handler``
and ``_send_ping``, the socket's ``queue``/``closed``/``closing``/``last_ping``,
``_service_task``, ``server.reason``; ``on`` is public) are stable across 4.x;
the package is capped below 4.16, and tests/test_socket_transport.py (raw
frames) and tests/test_sockets.py (library clients) cover each path: direct
websocket, polling upgrade, pings, silent clients, oversized and malformed
frames, server- and client-side closes, closed sockets released.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import Callable
from typing import Any

import engineio
from aiohttp.web import WebSocketResponse
from engineio import packet as eio_packet
from engineio.async_drivers.aiohttp import WebSocket as EioAiohttpWebSocket
from engineio.async_socket import AsyncSocket
from engineio.exceptions import SocketIsClosedError, UnknownPacketError

log = logging.getLogger("latch.sockets")

_PING_TIMER = "_latch_ping_timer"
_PACKET_TYPES = len(eio_packet.packet_names)  # OPEN .. NOOP: anything else is garbage


class EngineServer(engineio.AsyncServer):  # type: ignore[misc]
    """python-engineio's server with keep-alive pings as timer handles, not sleeping tasks."""

    def start_background_task(self, target: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(target, "__func__", None) is AsyncSocket._send_ping:
            sock = target.__self__
            setattr(sock, _PING_TIMER, asyncio.get_running_loop().call_later(
                self.ping_interval, _ping, sock))
            return None  # AsyncSocket.schedule_ping ignores what it gets back
        return super().start_background_task(target, *args, **kwargs)

    async def _service_task(self) -> None:
        """Close sockets whose last ping went unanswered for ``ping_timeout``.

        python-engineio's monitor walks a *copy* of the socket table, sleeping
        ``ping_timeout / n`` between sockets (an ``asyncio.wait_for`` per socket),
        so every socket open at the start of a sweep stays reachable for up to
        ``ping_timeout`` (20 s). This one sweeps the whole table at once, four
        times per ``ping_timeout``, and holds nothing between sweeps.
        """
        event = self.service_task_event = self.create_event()  # shutdown() sets it
        while not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout=max(0.05, self.ping_timeout / 4))
                return
            except TimeoutError:
                pass
            try:
                await self._sweep()
            except Exception:
                log.exception("Engine.IO monitor sweep failed")

    async def _sweep(self) -> None:
        now = time.time()
        timeout = self.ping_timeout
        overdue = []
        for sid, sock in list(self.sockets.items()):
            if sock.closed:
                self.sockets.pop(sid, None)
            elif not sock.closing and sock.last_ping and now - sock.last_ping > timeout:
                overdue.append(sock)
        for sock in overdue:
            await sock.check_ping_timeout()  # closes it (reason: ping timeout)

    def on(self, event: str, handler: Any = None) -> Any:
        """python-engineio's ``on``, except that :meth:`socket_closed` runs after the
        ``disconnect`` handler (which ``AsyncSocket.close`` fires, whoever closes).
        Wrapping the one handler at registration keeps every other event unwrapped."""
        if event != "disconnect":
            return super().on(event, handler)

        def set_handler(inner: Any) -> Any:
            async def disconnect(sid: str, *args: Any) -> Any:
                try:
                    result = inner(sid, *args)
                    return await result if inspect.isawaitable(result) else result
                finally:
                    sock = self.sockets.get(sid)
                    if sock is not None:
                        self.socket_closed(sock)

            super(EngineServer, self).on("disconnect", disconnect)
            return inner

        return set_handler if handler is None else set_handler(handler)

    @staticmethod
    def socket_closed(sock: AsyncSocket) -> None:
        """After the ``disconnect`` handlers: release what the socket's keep-alive holds
        and wake whatever serves its transport (the websocket writer, or a pending
        long-poll), so the connection ends whoever closed the socket.

        ``AsyncSocket.close`` fires ``disconnect`` first, then queues its CLOSE packet
        and sets ``closed`` without yielding to the loop. The wake-up (a ``None`` on the
        send queue) is scheduled from here, after the handlers (which may yield), so
        it always lands behind that CLOSE packet: the packet goes out, the writer
        stops, and ``close(wait=True)``'s ``queue.join()`` sees both consumed. (A
        ping-timeout close queues no CLOSE: python-engineio's ``send`` refuses on a
        timed-out socket.)
        """
        timer = getattr(sock, _PING_TIMER, None)
        if timer is not None:
            timer.cancel()
            setattr(sock, _PING_TIMER, None)
        if sock.upgraded:
            asyncio.get_running_loop().call_soon(sock.queue.put_nowait, None)
        else:
            # A polling client that closes its session leaves its long-poll GET
            # pending until ping_interval + ping_timeout (python-engineio answers it
            # only on a server-side close); answer it now, as the JS server does.
            sock.queue.put_nowait(eio_packet.Packet(eio_packet.NOOP))


def _ping(sock: AsyncSocket) -> None:
    # What AsyncSocket._send_ping does after its sleep; the queue is unbounded.
    if not sock.closing and not sock.closed:
        sock.last_ping = time.time()
        sock.queue.put_nowait(eio_packet.Packet(eio_packet.PING))


class WebSocketTransport(EioAiohttpWebSocket):  # type: ignore[misc]
    """engine.io's aiohttp websocket wrapper: ``compress`` as a setting, an upgrade hook,
    and a cheaper loop for direct websocket sessions.

    Build it with ``functools.partial(WebSocketTransport, compress=..., on_upgrade=...)``
    and install it per server: ``eio._async = {**eio._async, "websocket": that}`` (the
    driver table itself is a module-level dict shared by every server in the process).
    """

    def __init__(self, handler: Any, server: Any, *, compress: bool,
                 on_upgrade: Callable[[str], None] | None = None) -> None:
        super().__init__(handler, server)
        self._compress = compress
        self._on_upgrade = on_upgrade
        self._upgrading: Any = None

    async def __call__(self, environ: dict[str, Any]) -> WebSocketResponse:
        request = environ["aiohttp.request"]
        self._sock = WebSocketResponse(max_msg_size=self.server.max_http_buffer_size,
                                       compress=self._compress)
        await self._sock.prepare(request)
        self.environ = environ
        owner = getattr(self.handler, "__self__", None)  # the engine.io socket
        direct = (isinstance(owner, AsyncSocket) and not owner.connected
                  and getattr(self.handler, "__func__", None) is AsyncSocket._websocket_handler)
        if direct:
            await self._serve(owner)
            return self._sock
        if owner is not None and owner.connected and self._on_upgrade is not None:
            self._upgrading = owner  # a polling session probing an upgrade
        await self.handler(self)
        return self._sock

    # --- direct websocket sessions ------------------------------------------------------

    async def _serve(self, sock: AsyncSocket) -> None:
        """The Engine.IO websocket session of a client that connected with websocket."""
        sock.connected = True
        sock.upgraded = True
        writer = asyncio.create_task(self._write_loop(sock))
        try:
            await self._read_loop(sock)
        finally:
            sock.queue.put_nowait(None)  # lets the writer finish what is queued, then stop
            await writer
            await sock.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)

    async def _read_loop(self, sock: AsyncSocket) -> None:
        ws = self._sock
        limit = self.server.max_http_buffer_size
        while True:
            try:
                # No per-read timer: a silent client is closed by Engine.IO's monitor
                # task after an unanswered ping, and closing the socket ends this read.
                message = await ws.receive()
            except asyncio.CancelledError:
                return
            except Exception:
                return  # a broken connection: the client is gone
            data = message.data
            if type(data) is not str and type(data) is not bytes:
                return  # close, closing or error
            if len(data) > limit:
                return
            try:
                pkt = eio_packet.Packet(encoded_packet=data)
            except Exception:
                pkt = None
            if pkt is None or not 0 <= pkt.packet_type < _PACKET_TYPES:
                log.info("closing a websocket that sent a malformed Engine.IO packet")
                return
            try:
                await sock.receive(pkt)
            except UnknownPacketError:  # a type a client may not send (OPEN, NOOP...)
                pass
            except SocketIsClosedError:
                return
            except Exception:
                log.exception("handling an Engine.IO packet failed")
            if sock.closed:  # closed by what the packet did (or concurrently)
                return
            # An idle socket waits in receive() with these still bound; the last one is
            # often the namespace CONNECT with its token: let it go.
            message = data = pkt = None

    async def _write_loop(self, sock: AsyncSocket) -> None:
        ws = self._sock
        queue = sock.queue
        try:
            while True:
                pkt = await queue.get()
                queue.task_done()
                while pkt is not None:
                    encoded = pkt.encode()
                    if type(encoded) is bytes:
                        await ws.send_bytes(encoded)
                    else:
                        await ws.send_str(encoded)
                    if queue.empty():
                        break
                    pkt = queue.get_nowait()
                    queue.task_done()
                if pkt is None or sock.closed:
                    # The reader stopped, or the server closed the socket (its CLOSE
                    # packet has just gone out): end the websocket too.
                    break
        except Exception:  # the connection broke under a send; the reader sees it too
            log.debug("websocket send failed", exc_info=True)
        finally:
            try:
                await ws.close()
            except Exception:
                log.debug("closing a websocket failed", exc_info=True)

    # --- polling → websocket upgrades (python-engineio's handler) ------------------------

    async def wait(self) -> Any:
        owner = self._upgrading
        if owner is not None and owner.upgraded:
            # engine.io sets ``upgraded`` and then starts its read loop: the first
            # read after that is the first moment the upgrade is known complete.
            self._upgrading = None
            try:
                self._on_upgrade(owner.sid)  # type: ignore[misc]
            except Exception:
                log.exception("upgrade hook failed")
        return await super().wait()
