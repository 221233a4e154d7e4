"""The naive baseline for the revocation benchmark: one node of a two-node tutorial setup.

What a tutorial on "log a session out of every socket, across nodes" would write
with python-socketio: ``socketio.AsyncRedisManager`` on a shared Redis so that
emits and disconnects reach the other nodes, no authentication, no durable
write, no acknowledgement from the other nodes.

* A socket connects with ``auth: {session: ID}`` (``{token: ID}`` is accepted
  too: that is what ``bench/eio_client.py`` sends) and joins the room ``ID``.
  Its sid is also added to the Redis set ``naive:sockets:ID``, because
  python-socketio can disconnect a socket on another node by sid but has no
  "disconnect a room": the kill route needs the sids of every node.
* ``POST /kill/{session_id}`` emits ``session_ended`` to the room (cross-node,
  through the manager), then disconnects each sid of the set (cross-node: the
  manager publishes a ``disconnect`` for sids it does not hold), then closes
  the room, and answers ``{"revoked": true, "sockets": N}``.
* ``GET /healthz`` answers 200.

Run: ``python bench/naive_cluster.py --port P --redis-url redis://127.0.0.1:6379/0``
(ready once ``/healthz`` answers). ``run_revocation_bench.py`` starts two.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from typing import Any

import socketio
from aiohttp import web
from redis.asyncio import Redis

CHANNEL = "naive-socketio"
SET_PREFIX = "naive:sockets:"

SIO_KEY: web.AppKey[socketio.AsyncServer] = web.AppKey("naive_sio", socketio.AsyncServer)
REDIS_KEY: web.AppKey[Redis] = web.AppKey("naive_redis", Redis)


def _session_of(auth: Any) -> str | None:
    if not isinstance(auth, dict):
        return None
    value = auth.get("session") or auth.get("token")
    return value if isinstance(value, str) and value else None


def build_app(redis_url: str) -> web.Application:
    quiet = logging.getLogger("naive.socketio")
    quiet.setLevel(logging.WARNING)
    manager = socketio.AsyncRedisManager(redis_url, channel=CHANNEL)
    sio = socketio.AsyncServer(async_mode="aiohttp", client_manager=manager,
                               logger=quiet, engineio_logger=quiet)
    store = Redis.from_url(redis_url)
    app = web.Application()
    app[SIO_KEY] = sio
    app[REDIS_KEY] = store
    sio.attach(app)

    @sio.event
    async def connect(sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        session_id = _session_of(auth)
        if session_id is None:
            raise socketio.exceptions.ConnectionRefusedError("session_missing")
        await sio.enter_room(sid, session_id)
        await sio.save_session(sid, {"session_id": session_id})
        await store.sadd(SET_PREFIX + session_id, sid)

    @sio.event
    async def disconnect(sid: str, reason: Any = None) -> None:
        saved = await sio.get_session(sid)
        session_id = saved.get("session_id") if saved else None
        if session_id:
            await store.srem(SET_PREFIX + session_id, sid)

    async def kill(request: web.Request) -> web.Response:
        session_id = request.match_info["session_id"]
        await sio.emit("session_ended", {"code": "session_revoked",
                                         "message": "Session has been revoked"}, to=session_id)
        sids = [s.decode() for s in await store.smembers(SET_PREFIX + session_id)]
        for sid in sids:
            await sio.disconnect(sid)
        await sio.close_room(session_id)
        return web.json_response({"revoked": True, "sockets": len(sids)})

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def close_store(_: web.Application) -> None:
        await store.aclose()

    app.router.add_post("/kill/{session_id}", kill)
    app.router.add_get("/healthz", healthz)
    app.on_cleanup.append(close_store)
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    app = build_app(args.redis_url)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None,
                handle_signals=True, shutdown_timeout=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
