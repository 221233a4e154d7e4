"""Latch's python-socketio server: the transport-level rules, nothing about tokens.

:class:`LatchServer` is an ``AsyncServer`` with these changes, each something the
library has no option for (python-socketio 5.18 / python-engineio 4.15). They
override private methods (``_handle_event``, ``_handle_connect``,
``_handle_eio_connect``, ``_handle_eio_message``), stable across 5.x but not a
public API: a python-socketio upgrade must pass tests/test_sockets.py, which
exercises each one:

* **One choke point for client events.** ``_handle_event`` hands every event
  packet to one ``dispatch`` callable and acks what it returns. The library
  would otherwise route an event *named* ``connect`` or ``disconnect`` to the
  connect/disconnect handlers — a connected client could re-run its own
  handshake with a forged environ, or make the server forget it — and it
  spawns a task per event; here events run inline, in order, per connection,
  and a handler's JSON-object answer is encoded as the ACK packet directly.
* **A namespace-connect deadline.** An Engine.IO session that has not joined a
  namespace ``connect_timeout`` seconds after opening (or after being ended) is
  closed; 5.x has no such timeout (the JS server's ``connectTimeout``).
* **Local, task-free per-socket emits** (:meth:`emit_local`): the packet goes
  straight to this node's Engine.IO socket — never through the client
  manager's queue (works with Redis down) and without ``AsyncManager.emit``'s
  task per recipient.
* **An after-connect hook**, run once the namespace ``CONNECT`` ack is queued,
  so the first application event always follows it.
* **Unknown namespaces are refused like everything else**: ``connect_error``
  with ``err.message == "invalid_namespace"`` and ``err.data = {code, message}``
  (a second CONNECT on a live namespace: ``bad_request``).
* **A malformed packet closes its connection** (``_handle_eio_message``), logged
  in one INFO line; the library logs a traceback per packet.

Packets are decoded with :class:`PacketJSON` (python-engineio's bounded-integer
rule, one decoder per server) through the public ``serializer`` option. The
Engine.IO layer underneath (the websocket loop, compression as a setting,
keep-alive pings) is :mod:`handlers.socket_transport`, built by
``_engineio_server_class``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import socketio
from engineio.exceptions import SocketIsClosedError
from socketio import packet

from app.config import Settings
from handlers.client import origin_allowed
from handlers.socket_transport import EngineServer

log = logging.getLogger("latch.sockets")

#: Returned by a dispatch callable when the event must not be acknowledged.
NO_ACK: Any = object()

INVALID_NAMESPACE = {"message": "invalid_namespace",
                     "data": {"code": "invalid_namespace", "message": "Unknown namespace"}}
ALREADY_CONNECTED = {"message": "bad_request",
                     "data": {"code": "bad_request", "message": "Namespace already connected"}}

EventDispatch = Callable[[str, str, list[Any]], Awaitable[Any]]
AfterConnect = Callable[[str, str], Awaitable[None]]


def _bounded_int(text: str) -> int:
    # As python-engineio's json wrapper: a 100-digit integer is already an attack.
    if len(text) > 100:
        raise ValueError("Integer is too large")
    return int(text)


class PacketJSON:
    """The ``json`` of Socket.IO packets: python-engineio's rules (bounded integers), with
    one decoder built once — ``engineio.json.loads`` builds a ``JSONDecoder`` per packet."""

    _decoder = json.JSONDecoder(parse_int=_bounded_int)
    dumps = staticmethod(json.dumps)

    @classmethod
    def loads(cls, text: str | bytes | bytearray) -> Any:
        if not isinstance(text, str):
            text = bytes(text).decode("utf-8")
        return cls._decoder.decode(text)


class LatchPacket(packet.Packet):  # type: ignore[misc]
    """Socket.IO's packet with :class:`PacketJSON` (passed as ``serializer``, a public option)."""

    json = PacketJSON


class LatchServer(socketio.AsyncServer):  # type: ignore[misc]
    def __init__(self, *, connect_timeout: float, **kwargs: Any) -> None:
        kwargs.setdefault("serializer", LatchPacket)
        super().__init__(**kwargs)
        self.connect_timeout = connect_timeout
        self.dispatch: EventDispatch | None = None
        self.after_connect: AfterConnect | None = None
        self._closing: set[asyncio.Task[Any]] = set()

    def _engineio_server_class(self) -> type[EngineServer]:
        return EngineServer

    # --- namespace-connect deadline ------------------------------------------

    async def _handle_eio_connect(self, eio_sid: str, environ: dict[str, Any]) -> None:
        await super()._handle_eio_connect(eio_sid, environ)
        self.arm_connect_deadline(eio_sid)

    def arm_connect_deadline(self, eio_sid: str) -> None:
        """Close this Engine.IO session unless it is in a namespace ``connect_timeout`` s from now."""
        asyncio.get_running_loop().call_later(self.connect_timeout, self._connect_deadline,
                                              eio_sid)

    def _connect_deadline(self, eio_sid: str) -> None:
        sock = self.eio.sockets.get(eio_sid)
        if sock is None or sock.closed or sock.closing:
            return
        manager = self.manager
        for namespace in list(manager.get_namespaces()):
            if manager.sid_from_eio_sid(eio_sid, namespace) is not None:
                return  # connected, or its connect handler is still running
        # close(wait=False): do not wait for a vanished polling client to drain its queue.
        task = asyncio.ensure_future(
            sock.close(wait=False, abort=False, reason=self.eio.reason.SERVER_DISCONNECT))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    # --- connect / events ---------------------------------------------------------

    async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        try:
            await super()._handle_eio_message(eio_sid, data)
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
            # Not a Socket.IO packet (bad JSON, unknown type, a stray binary part): the
            # library would log a traceback per packet, at the sender's will. Close the
            # connection instead, quietly, as the JS server does on a parse error.
            log.info("closing a connection that sent a malformed Socket.IO packet (%s)",
                     type(exc).__name__)
            sock = self.eio.sockets.get(eio_sid)
            if sock is not None and not sock.closed and not sock.closing:
                await sock.close(wait=False, abort=False,
                                 reason=self.eio.reason.SERVER_DISCONNECT)

    async def _handle_connect(self, eio_sid: str, namespace: str | None, data: Any) -> None:
        namespace = namespace or "/"
        if namespace not in self.handlers:
            # The library answers a bare string, which socket.io-client turns into an
            # empty err.message; answer in the same shape as every other refusal.
            await self._send_packet(eio_sid, self.packet_class(
                packet.CONNECT_ERROR, namespace=namespace, data=INVALID_NAMESPACE))
            return
        if self.manager.sid_from_eio_sid(eio_sid, namespace) is not None:
            # A second CONNECT on a live namespace (the library's answer is a bare
            # string); the socket already there stays as it is.
            await self._send_packet(eio_sid, self.packet_class(
                packet.CONNECT_ERROR, namespace=namespace, data=ALREADY_CONNECTED))
            return
        try:
            await super()._handle_connect(eio_sid, namespace, data)
        finally:
            if self.after_connect is not None:
                await self.after_connect(eio_sid, namespace)

    async def _handle_event(self, eio_sid: str, namespace: str | None, id: int | None,
                            data: list[Any]) -> None:
        namespace = namespace or "/"
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        if sid is None or not self.manager.is_connected(sid, namespace):
            return
        assert self.dispatch is not None, "LatchServer.dispatch is not set"
        if type(data) is not list:  # "42{...}": a payload that is not [event, ...args]
            data = []
        result = await self.dispatch(sid, namespace, data)
        if id is None or result is NO_ACK:
            return
        if type(result) is dict:
            # Every Latch handler answers one JSON object: encode the ACK directly, as
            # socketio.Packet would ("3" [namespace ","] id json), minus its binary scan.
            try:
                body = self.packet_class.json.dumps([result], separators=(",", ":"))
            except (TypeError, ValueError):
                pass  # bytes inside (a binary ACK) or worse: the library's encoder decides
            else:
                prefix = "3" if namespace == "/" else f"3{namespace},"
                await self.eio.send(eio_sid, f"{prefix}{id}{body}")
                return
        if result is None:
            args: list[Any] = []
        elif isinstance(result, tuple):
            args = list(result)
        else:
            args = [result]
        await self._send_packet(eio_sid, self.packet_class(packet.ACK, namespace=namespace,
                                                           id=id, data=args))

    async def emit_local(self, sid: str, event: str, data: Any, namespace: str = "/") -> bool:
        """Send one event to one socket of this node; False if it is not here."""
        return await self.send_encoded(sid, self.encode_event(event, data, namespace), namespace)

    def encode_event(self, event: str, data: Any, namespace: str = "/") -> str | list[Any]:
        """An EVENT packet, encoded once so that many sockets can be sent the same bytes."""
        encoded: str | list[Any] = self.packet_class(packet.EVENT, namespace=namespace,
                                                     data=[event, data]).encode()
        return encoded

    async def send_encoded(self, sid: str, encoded: str | list[Any],
                           namespace: str = "/") -> bool:
        eio_sid = self.manager.eio_sid_from_sid(sid, namespace)
        if eio_sid is None:
            return False
        try:
            if isinstance(encoded, list):  # binary attachments follow the placeholder packet
                for part in encoded:
                    await self.eio.send(eio_sid, part)
            else:
                await self.eio.send(eio_sid, encoded)
        except SocketIsClosedError:  # closing under us: nothing left to tell it
            return False
        return True

    def transport_of(self, eio_sid: str) -> str:
        sock = self.eio.sockets.get(eio_sid)
        return "websocket" if sock is not None and sock.upgraded else "polling"


def origin_checker(settings: Settings) -> Callable[[str | None, dict[str, Any]], bool]:
    """``cors_allowed_origins`` for engine.io: the REST origin rule, per request.

    engine.io's own same-origin default trusts ``X-Forwarded-Host`` and
    ``X-Forwarded-Proto`` from anyone; :func:`handlers.client.origin_allowed`
    honours them only from ``LATCH_TRUSTED_PROXIES``. engine.io calls this with
    no origin too (for CORS headers); never raising matters, because a
    ``TypeError`` makes engine.io retry with one argument.
    """

    def allowed(origin: str | None, environ: dict[str, Any] | None = None) -> bool:
        if not origin or environ is None:
            return False
        request = environ.get("aiohttp.request")
        if request is None:
            return False
        try:
            return origin_allowed(origin, request.headers, request.scheme, request.remote,
                                  settings)
        except Exception:
            log.exception("origin check failed")
            return False

    return allowed
