"""A room index for python-socketio client managers: disconnect in O(own rooms).

python-socketio's ``BaseManager.basic_disconnect`` finds a socket's rooms by
scanning *every* room of the namespace (copying the room table first). Every
Latch socket sits in three rooms (its own, its session's, its user's), so
ending 5,000 expired sockets in one second would cost 5,000 scans of ~15,000
rooms — measured at about two seconds on this machine, before any I/O.

:class:`RoomIndex` keeps, per socket, the list of rooms it joined besides its
own, and leaves exactly those. It layers over any manager (the in-memory
``AsyncManager`` or ``AsyncRedisManager``) because it only touches the three
``basic_*`` primitives that every manager funnels room changes through.
"""

from __future__ import annotations

from typing import Any

import socketio


class RoomIndex:
    """Mixin for a python-socketio manager; put it first in the bases."""

    rooms: dict[str, dict[Any, Any]]
    callbacks: dict[str, Any]
    pending_connect: dict[str, list[str]]
    pending_disconnect: dict[str, list[str]]
    _joined: dict[str, dict[str, list[str]]]  # namespace -> sid -> rooms besides None and sid

    def basic_enter_room(self, sid: str, namespace: str, room: Any,
                         eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)  # type: ignore[misc]
        if room is not None and room != sid:
            joined = self._joined.setdefault(namespace, {}).setdefault(sid, [])
            if room not in joined:
                joined.append(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        if room is None or room == sid:
            return
        by_sid = self._joined.get(namespace)
        joined = by_sid.get(sid) if by_sid else None
        if joined and room in joined:
            joined.remove(room)
            if not joined:
                del by_sid[sid]  # type: ignore[index]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # Same effects as BaseManager.basic_disconnect, without the full scan.
        if namespace not in self.rooms:
            return
        by_sid = self._joined.get(namespace)
        joined = by_sid.pop(sid, ()) if by_sid else ()
        for room in (*joined, sid, None):  # None last: it may drop the namespace
            super().basic_leave_room(sid, namespace, room)  # type: ignore[misc]
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            sids = pending.get(namespace)
            if sids and sid in sids:
                sids.remove(sid)
                if not sids:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        try:
            if sid not in self.rooms[namespace][None]:
                return []
        except KeyError:
            return []
        by_sid = self._joined.get(namespace) or {}
        return [sid, *by_sid.get(sid, ())]


class IndexedAsyncManager(RoomIndex, socketio.AsyncManager):
    """The single-node manager, with the room index."""

    def __init__(self) -> None:
        super().__init__()
        self._joined = {}


_indexed: dict[type[Any], type[Any]] = {}


def with_room_index(manager: socketio.AsyncManager | None) -> socketio.AsyncManager:
    """``manager`` with :class:`RoomIndex` layered over its class (a fresh local one if None).

    Must run before the manager holds any room, i.e. before the server starts:
    the instance keeps its state and only gains the index methods.
    """
    if manager is None:
        return IndexedAsyncManager()
    if isinstance(manager, RoomIndex):
        return manager
    if getattr(manager, "rooms", None):
        raise RuntimeError("with_room_index() needs a manager that holds no rooms yet")
    base = type(manager)
    cls = _indexed.get(base)
    if cls is None:
        cls = _indexed[base] = type(f"Indexed{base.__name__}", (RoomIndex, base), {})
    manager.__class__ = cls
    manager._joined = {}  # type: ignore[attr-defined]
    return manager
