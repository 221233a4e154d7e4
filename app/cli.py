"""The ``latch`` command: serve, and manage users, sessions and keys from a shell.

Management commands use the same services as the server, so a kill from the
shell is the same durable kill an admin makes: with Redis configured it is
announced to every node at once; without Redis the running server picks it up
from the shared SQLite file within about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Sequence
from typing import Any

from app.audit import Actor
from app.config import Settings, load_settings
from app.errors import ConfigError, LatchError
from app.revocation import KillResult
from app.services import Services

log = logging.getLogger("latch")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="latch", description="Latch: socket authentication "
                                     "with instant, cluster-wide session revocation.")
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run one node")
    serve.add_argument("--host", help="bind address (default 127.0.0.1, env LATCH_HOST)")
    serve.add_argument("--port", type=int, help="port (default 8080, env LATCH_PORT)")
    serve.add_argument("--node-id", help="this node's id (default host-pid, env LATCH_NODE_ID)")

    user = sub.add_parser("user", help="manage users").add_subparsers(dest="action", required=True)
    add = user.add_parser("add", help="create a user")
    add.add_argument("name")
    add.add_argument("--role", choices=("user", "admin"), default="user")
    add.add_argument("--password-stdin", action="store_true", required=True,
                     help="read the password from standard input")
    user.add_parser("list", help="list users")
    disable = user.add_parser("disable", help="disable a user and end all their sessions")
    disable.add_argument("name")
    passwd = user.add_parser("passwd", help="set a password and end all the user's sessions")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", required=True)

    sessions = sub.add_parser("sessions", help="list or revoke sessions").add_subparsers(
        dest="action", required=True)
    slist = sessions.add_parser("list", help="list active sessions")
    slist.add_argument("--user", help="only this user's sessions")
    revoke = sessions.add_parser("revoke", help="revoke sessions; live sockets are dropped")
    target = revoke.add_mutually_exclusive_group(required=True)
    target.add_argument("id", nargs="?", help="a session id")
    target.add_argument("--user", help="every session of this user")
    target.add_argument("--all", action="store_true", help="every session of every user")
    revoke.add_argument("--reason", default="revoked from the command line")

    keys = sub.add_parser("keys", help="signing keys").add_subparsers(dest="action", required=True)
    keys.add_parser("rotate", help="start signing with a new key; old keys keep verifying")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(None, host=getattr(args, "host", None),
                                 port=getattr(args, "port", None),
                                 node_id=getattr(args, "node_id", None))
        if args.command == "serve":
            return serve(settings)
        return asyncio.run(_manage(args, settings))
    except ConfigError as exc:
        print(f"latch: configuration error: {exc}", file=sys.stderr)
        return 2
    except LatchError as exc:
        print(f"latch: {exc.code}: {exc.message}", file=sys.stderr)
        return 1


def _setup_logging(settings: Settings) -> None:
    from app.logging_setup import configure

    level = os.environ.get("LATCH_LOG_LEVEL", "INFO").upper()
    configure(settings.log_format, level)


def serve(settings: Settings) -> int:
    from aiohttp import web

    from app.server import create_app
    from handlers.access_log import AccessLogger

    _setup_logging(settings)
    app = create_app(settings)

    async def freeze_heap(_: web.Application) -> None:
        # Start-up objects live forever: keep them out of the collector's full scans.
        gc.collect()
        gc.freeze()
        # Thousands of long-lived socket objects make full collections long pauses;
        # collect the young generation less often (measured in bench/README.md).
        gc.set_threshold(20_000, 50, 100)

    app.on_startup.append(freeze_heap)
    print(f"latch: node {settings.node_id} listening on http://{settings.host}:{settings.port}",
          file=sys.stderr, flush=True)
    web.run_app(app, host=settings.host, port=settings.port, access_log_class=AccessLogger,
                print=None, handle_signals=True, shutdown_timeout=1.0)
    return 0


@contextlib.asynccontextmanager
async def _services(settings: Settings) -> AsyncIterator[Services]:
    from app.server import build_services, ensure_first_admin

    cli_settings = settings.with_overrides(node_id=f"cli-{os.getpid()}")
    services = build_services(cli_settings)
    await services.db.open()
    try:
        await ensure_first_admin(services)
        await services.revocation.load()
        if settings.redis_enabled:
            await services.feed.start(services.revocation)
            for _ in range(40):  # subscribe before publishing, so node acks reach us
                if services.feed.is_healthy():
                    break
                await asyncio.sleep(0.05)
        yield services
    finally:
        await services.feed.stop()
        if services.redis is not None:
            with contextlib.suppress(Exception):
                await services.redis.aclose()
        await services.db.close()


def _read_password() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def _print_kill(result: KillResult) -> None:
    body = result.as_dict()
    nodes = ", ".join(f"{n['node']}: {n['ended'] if n['confirmed'] else 'unconfirmed'}"
                      for n in body["sockets"]["nodes"] if not n["node"].startswith("cli-"))
    print(f"revoked {body['sessions']} session(s); ended {body['sockets']['ended']} socket(s)"
          + (f" ({nodes})" if nodes else ""))


async def _manage(args: argparse.Namespace, settings: Settings) -> int:
    actor = Actor.system("cli")
    async with _services(settings) as s:
        if args.command == "user":
            return await _user(args, s, actor)
        if args.command == "sessions":
            return await _sessions(args, s, actor)
        if args.command == "keys":
            kid = s.keyring.rotate()
            print(f"new signing key {kid}; restart is not needed (nodes reload the keyring)")
            return 0
    return 2


async def _find_user(s: Services, name: str) -> Any:
    found = await s.users.find_by_name(name)
    if found is None:
        print(f"latch: no such user: {name}", file=sys.stderr)
        return None
    return found[0]


async def _user(args: argparse.Namespace, s: Services, actor: Actor) -> int:
    if args.action == "add":
        user = await s.users.create(args.name, _read_password(), args.role, actor=actor)
        print(f"created {user.role} {user.username} (id {user.id})")
    elif args.action == "list":
        users, _ = await s.users.list(limit=100_000, offset=0)
        for u in users:
            print(f"{u.id}\t{u.username}\t{u.role}\t{'disabled' if u.disabled else 'active'}")
    elif args.action == "disable":
        user = await _find_user(s, args.name)
        if user is None:
            return 1
        _, result = await s.accounts.update(user.id, disabled=True, actor=actor)
        print(f"disabled {user.username}")
        if result is not None:
            _print_kill(result)
    elif args.action == "passwd":
        user = await _find_user(s, args.name)
        if user is None:
            return 1
        _print_kill(await s.accounts.set_password(user.id, _read_password(), actor=actor))
    return 0


async def _sessions(args: argparse.Namespace, s: Services, actor: Actor) -> int:
    if args.action == "list":
        user_id = None
        if args.user:
            user = await _find_user(s, args.user)
            if user is None:
                return 1
            user_id = user.id
        rows, _ = await s.sessions.list_all(user_id=user_id, active=True, limit=100_000, offset=0)
        for info, user in rows:
            print(json.dumps({"id": info.id, "user": user.username, "device": info.device,
                              "created_at": info.created_at, "last_seen_at": info.last_seen_at,
                              "ip": info.ip}))
        return 0
    if args.all:
        result = await s.revocation.revoke_all(code="session_revoked", actor=actor,
                                               reason=args.reason)
    elif args.user:
        user = await _find_user(s, args.user)
        if user is None:
            return 1
        result = await s.revocation.revoke_user(user.id, code="session_revoked", actor=actor,
                                                reason=args.reason)
    else:
        result = await s.revocation.revoke_session(args.id, code="session_revoked", actor=actor,
                                                   reason=args.reason)
    _print_kill(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
