"""A Socket.IO client probe: connect with a token and record what the server did."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import socketio

from tests.support.waiting import wait_future


class Recorder:
    """Everything one Socket.IO client observed on one namespace: server events in order
    (with arrival time), its disconnect (reason, time) and its last ``connect_error``."""

    def __init__(self, client: socketio.AsyncClient, namespace: str = "/") -> None:
        self.client = client
        self.events: list[tuple[str, Any, float]] = []
        self.arrived = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.disconnect_reason: str | None = None
        self.disconnected_at: float | None = None
        self.connect_error: Any = None
        client.on("*", self._any, namespace=namespace)
        client.on("disconnect", self._disconnect, namespace=namespace)
        client.on("connect_error", self._connect_error, namespace=namespace)

    async def _any(self, event: str, *args: Any) -> None:
        self.events.append((event, args[0] if len(args) == 1 else args, time.time()))
        self.arrived.set()

    async def _disconnect(self, reason: str = "") -> None:
        self.disconnect_reason = reason
        self.disconnected_at = time.time()
        self.disconnected.set()

    async def _connect_error(self, data: Any = None) -> None:
        self.connect_error = data

    def names(self) -> list[str]:
        return [name for name, _, _ in self.events]

    async def get(self, name: str, timeout: float = 3.0) -> Any:
        """The payload of the first ``name`` event, waiting for it if need be."""
        return (await self.get_timed(name, timeout))[0]

    async def get_timed(self, name: str, timeout: float = 3.0) -> tuple[Any, float]:
        """(payload, arrival time) of the first ``name`` event."""

        async def first() -> tuple[Any, float]:
            while True:
                for event, payload, at in self.events:
                    if event == name:
                        return payload, at
                self.arrived.clear()
                await self.arrived.wait()

        return await wait_future(first(), timeout, f"the {name!r} event")


class Probe(Recorder):
    """One ``socketio.AsyncClient`` of its own (no reconnection) and what it observed."""

    def __init__(self) -> None:
        super().__init__(socketio.AsyncClient(reconnection=False))

    async def connect(self, url: str, token: str, *, transports: list[str] | None = None,
                      headers: dict[str, str] | None = None) -> Probe:
        await self.client.connect(url, auth={"token": token}, headers=headers or {},
                                  transports=transports or ["websocket"], wait_timeout=5)
        await self.get("session")
        return self

    async def refused(self, url: str, token: str) -> str:
        """Try to connect; return the refusal code (fails if the connect succeeds)."""
        try:
            await self.client.connect(url, auth={"token": token}, transports=["websocket"],
                                      wait_timeout=5)
        except socketio.exceptions.ConnectionError:
            assert isinstance(self.connect_error, dict), self.connect_error
            data = self.connect_error.get("data") or {}
            assert data.get("code") == self.connect_error.get("message"), self.connect_error
            return str(data["code"])
        await self.client.disconnect()
        raise AssertionError("the handshake was accepted")

    async def ended(self, timeout: float = 3.0) -> str:
        """Wait for ``session_ended`` and the server's disconnect; return the code."""
        payload = await self.get("session_ended", timeout)
        await wait_future(self.disconnected.wait(), timeout, "the disconnect")
        # python-socketio's name for the JS client's "io server disconnect": the server
        # ended it, so the client does not reconnect on its own.
        assert self.disconnect_reason == socketio.AsyncClient.reason.SERVER_DISCONNECT, (
            self.disconnect_reason)
        return str(payload["code"])

    async def close(self) -> None:
        await self.client.shutdown()


class Probes:
    """Factory fixture state: every probe made is closed at teardown."""

    def __init__(self) -> None:
        self._all: list[Probe] = []

    def new(self) -> Probe:
        probe = Probe()
        self._all.append(probe)
        return probe

    async def connect(self, url: str, token: str, **kwargs: Any) -> Probe:
        return await self.new().connect(url, token, **kwargs)

    async def close(self) -> None:
        for probe in self._all:
            await probe.close()
