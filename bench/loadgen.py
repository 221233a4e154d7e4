"""Load generation against one Socket.IO server: the measurements and their CLI.

Library (used by ``run_socket_bench.py``):

* :func:`handshakes` - N connect / namespace-ack / close cycles, C at a time;
* :func:`open_sockets` / :func:`close_sockets` - hold K idle sockets (for RSS);
* :func:`ack_loop` - M sockets, each emitting one event and waiting for its ack
  before the next (closed loop), for a fixed time;
* :func:`wait_all_gone` - wait until every socket was ended by the server and
  return, per socket, ``disconnect time - reference time``;
* :func:`proc_rss_kb` / :func:`proc_cpu_seconds` - read a server process (and
  its children) from ``/proc``.

CLI, for poking at a running server (the driver is the usual entry point)::

    python bench/loadgen.py --url http://127.0.0.1:8080 handshakes -n 2000 -c 16
    python bench/loadgen.py --url ... --login admin:PASSWORD idle -k 5000 --server-pid PID
    python bench/loadgen.py --url ... --token JWT acks --event refresh -m 128 --seconds 5

Every loop is bounded by a count or a deadline and stops on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import math
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from eio_client import ConnectRefused, EioError, EioSocket, Options, connect, make_session, wall
from procs import pin_to_cpu, raise_nofile_limit

CLK_TCK = os.sysconf("SC_CLK_TCK")


# -- process and statistics helpers -------------------------------------------


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in Path(f"/proc/{pid}/task").iterdir():
            text = (task / "children").read_text().split()
            kids.extend(int(k) for k in text)
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    seen, todo = [], [pid]
    while todo and len(seen) < 256:
        p = todo.pop()
        seen.append(p)
        todo.extend(_children(p))
    return seen


def proc_rss_kb(pid: int, *, tree: bool = True) -> int:
    """VmRSS of ``pid`` (plus its descendants) in KiB, from ``/proc/<pid>/status``."""
    total = 0
    for p in process_tree(pid) if tree else [pid]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def proc_cpu_seconds(pid: int, *, tree: bool = True) -> float:
    """utime + stime of ``pid`` (plus its descendants), from ``/proc/<pid>/stat``."""
    ticks = 0
    for p in process_tree(pid) if tree else [pid]:
        try:
            raw = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rindex(")") + 2 :].split()
        ticks += int(fields[11]) + int(fields[12])  # fields 14 and 15 of stat(5)
    return ticks / CLK_TCK


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 3)


def _error_key(exc: BaseException) -> str:
    if isinstance(exc, ConnectRefused):
        return f"connect_error:{exc.code}"
    if isinstance(exc, EioError):
        return str(exc).split(":")[0][:60]
    return type(exc).__name__


def system_cpu_seconds() -> tuple[float, float]:
    """(busy, steal) CPU seconds of the whole machine so far, from ``/proc/stat``."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (fields + [0] * 8)[:8]
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class CpuMeter:
    """CPU used over a span: by the server process tree, by this process, by the rest.

    ``other_cores`` is the machine's busy time minus the server's and ours, in
    cores: other programs competing for the two cores (plus some kernel network
    work for our own loopback traffic). Well above ~0.1 means the figures of
    that span were taken on a busy machine.
    """

    def __init__(self, server_pid: int | None) -> None:
        self.server_pid = server_pid
        self.t0 = time.monotonic()
        self.server0 = proc_cpu_seconds(server_pid) if server_pid else 0.0
        self.client0 = time.process_time()
        self.system0 = system_cpu_seconds()

    def stop(self) -> dict[str, float | None]:
        wall_s = time.monotonic() - self.t0
        server = proc_cpu_seconds(self.server_pid) - self.server0 if self.server_pid else None
        client = time.process_time() - self.client0
        busy1, steal1 = system_cpu_seconds()
        other = busy1 - self.system0[0] - client - (server or 0.0)
        return {
            "wall_s": round(wall_s, 3),
            "server_cpu_s": None if server is None else round(server, 3),
            "server_util": None if server is None else round(server / wall_s, 3),
            "client_cpu_s": round(client, 3),
            "client_util": round(client / wall_s, 3),
            "other_cores": round(max(0.0, other) / wall_s, 3),
            "steal_cores": round((steal1 - self.system0[1]) / wall_s, 3),
        }


async def wait_for_quiet(max_wait: float, *, threshold: float = 0.15,
                         window: float = 0.5) -> float:
    """Wait (at most ``max_wait`` s) until the machine is nearly idle; return its load.

    The load is busy cores over a ``window`` while this harness does nothing, so
    it is other programs (and an idle server's timers). Returns the last sample.
    """
    deadline = time.monotonic() + max_wait
    load = 0.0
    while True:
        busy0, _ = system_cpu_seconds()
        own0 = time.process_time()
        await asyncio.sleep(window)
        load = (system_cpu_seconds()[0] - busy0 - (time.process_time() - own0)) / window
        if load < threshold or time.monotonic() + window > deadline:
            return round(max(0.0, load), 3)


# -- (a) handshake rate ----------------------------------------------------------


@dataclass
class HandshakeResult:
    attempted: int
    ok: int
    errors: dict[str, int]
    seconds: float
    rate: float
    p50_ms: float | None
    p99_ms: float | None
    cpu: dict[str, float | None] = field(default_factory=dict)
    server_cpu_ms_per_handshake: float | None = None


async def handshakes(
    session: aiohttp.ClientSession,
    opts: Options,
    n: int,
    concurrency: int,
    *,
    server_pid: int | None = None,
) -> HandshakeResult:
    """N cycles of connect, wait for the namespace-connect ack, close; C at a time.

    Latency is from the start of the websocket upgrade to the ``40`` ack.
    """
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            try:
                sock = await connect(session, opts, start_reader=False)
            except (EioError, OSError, aiohttp.ClientError) as exc:
                errors[_error_key(exc)] += 1
                continue
            latencies.append(sock.connected_at - sock.started_at)
            await sock.close()

    meter = CpuMeter(server_pid)
    await asyncio.gather(*(worker() for _ in range(min(concurrency, n))))
    cpu = meter.stop()
    seconds = float(cpu["wall_s"] or 0.0)
    ok = len(latencies)
    per = None
    if cpu["server_cpu_s"] is not None and ok:
        per = round(float(cpu["server_cpu_s"]) * 1000 / ok, 3)
    return HandshakeResult(
        attempted=n,
        ok=ok,
        errors=dict(errors),
        seconds=seconds,
        rate=round(ok / seconds, 1) if seconds else 0.0,
        p50_ms=_ms(percentile(latencies, 50)),
        p99_ms=_ms(percentile(latencies, 99)),
        cpu=cpu,
        server_cpu_ms_per_handshake=per,
    )


# -- (b) idle sockets -------------------------------------------------------------


async def open_sockets(
    session: aiohttp.ClientSession,
    opts: Options | Sequence[Options],
    k: int,
    concurrency: int,
    *,
    deadline: float | None = None,
) -> tuple[list[EioSocket], dict[str, int]]:
    """Open K sockets (C connects in flight) and keep them open with reader tasks.

    With a sequence of options, socket i uses ``opts[i % len(opts)]`` (several
    tokens). ``deadline`` (monotonic) stops opening new sockets once passed.
    """
    choices = [opts] if isinstance(opts, Options) else list(opts)
    socks: list[EioSocket] = []
    errors: Counter[str] = Counter()
    counter = iter(range(k))

    async def worker() -> None:
        for i in counter:
            if deadline is not None and time.monotonic() > deadline:
                errors["not_opened_deadline"] += 1
                continue
            try:
                socks.append(await connect(session, choices[i % len(choices)]))
            except (EioError, OSError, aiohttp.ClientError) as exc:
                errors[_error_key(exc)] += 1

    await asyncio.gather(*(worker() for _ in range(min(concurrency, k))))
    return socks, dict(errors)


async def close_sockets(socks: Sequence[EioSocket], concurrency: int = 64) -> None:
    """Close every socket politely (``41`` + websocket close), C at a time."""
    it = iter(socks)

    async def worker() -> None:
        for sock in it:
            await sock.close()

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(socks)) or 1)))


@dataclass
class IdleResult:
    sockets: int
    errors: dict[str, int]
    rss_before_kb: int
    rss_after_kb: int
    bytes_per_socket: float | None


async def idle_memory(
    session: aiohttp.ClientSession,
    opts: Options,
    k: int,
    concurrency: int,
    server_pid: int,
    *,
    settle: float = 2.0,
) -> tuple[IdleResult, list[EioSocket]]:
    """Server RSS growth per idle socket. The sockets are returned still open."""
    rss0 = proc_rss_kb(server_pid)
    socks, errors = await open_sockets(session, opts, k, concurrency)
    # Let the server finish post-connect work (a `session` event, timers).
    await asyncio.sleep(settle)
    rss1 = proc_rss_kb(server_pid)
    alive = sum(1 for s in socks if s.is_open)
    per = round((rss1 - rss0) * 1024 / alive, 1) if alive else None
    return IdleResult(alive, errors, rss0, rss1, per), socks


# -- (c) closed-loop acks ---------------------------------------------------------------


@dataclass
class AckResult:
    event: str
    sockets: int
    seconds: float
    acks: int
    ok: int
    refused: dict[str, int]
    timeouts: int
    lost_sockets: int
    rate: float
    ok_rate: float
    p50_ms: float | None
    p99_ms: float | None
    cpu: dict[str, float | None] = field(default_factory=dict)
    sample_refusal: Any = None


def echo_payload(sock: EioSocket, i: int) -> Any:
    return {"n": i, "text": "the quick brown fox jumps over the lazy dog"}


def _error_code(body: Any) -> str | None:
    if isinstance(body, dict) and body.get("ok") is False and isinstance(body.get("error"), dict):
        return str(body["error"].get("code"))
    return None


def echo_ok(sent: Any, ack: list[Any]) -> str | None:
    """None when the ack carries the payload back; else the refusal code, or "mismatch"."""
    if ack and ack[0] == sent:
        return None
    return _error_code(ack[0] if ack else None) or "mismatch"


def refresh_ok(sent: Any, ack: list[Any]) -> str | None:
    """None for ``{ok: true}``, else the error code (contract §4)."""
    body = ack[0] if ack else None
    if isinstance(body, dict) and body.get("ok") is True:
        return None
    return _error_code(body) or "malformed_ack"


async def ack_loop(
    socks: Sequence[EioSocket],
    event: str,
    payload: Callable[[EioSocket, int], Any],
    check: Callable[[Any, list[Any]], str | None],
    *,
    seconds: float,
    warmup: float = 1.0,
    timeout: float = 5.0,
    server_pid: int | None = None,
) -> AckResult:
    """Each socket emits ``event`` and waits for the ack before the next one.

    Runs ``warmup + seconds``; only acks completed inside the last ``seconds``
    count. ``check(sent, ack)`` returns None for a good ack or a refusal code.
    """
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup
    end = measure_from + seconds
    latencies: list[float] = []
    refused: Counter[str] = Counter()
    timeouts = 0
    lost = 0
    ok = 0
    sample: list[Any] = []
    cpu: dict[str, float | None] = {}

    async def measure_cpu() -> None:
        # CPU over exactly the counted window, not the warm-up or the tail.
        await asyncio.sleep(warmup)
        meter = CpuMeter(server_pid)
        await asyncio.sleep(max(0.0, end - loop.time()))
        cpu.update(meter.stop())

    async def worker(sock: EioSocket) -> None:
        nonlocal timeouts, lost, ok
        i = 0
        while loop.time() < end:
            i += 1
            sent = payload(sock, i)
            t0 = loop.time()
            try:
                ack = await sock.call(event, sent, timeout)
            except TimeoutError:
                timeouts += 1
                continue
            except (EioError, ConnectionError, RuntimeError):
                lost += 1
                return
            t1 = loop.time()
            if t1 < measure_from or t1 > end:
                continue
            latencies.append(t1 - t0)
            verdict = check(sent, ack)
            if verdict is None:
                ok += 1
            else:
                refused[verdict] += 1
                if not sample:
                    sample.append(ack)
            if not sock.is_open:
                lost += 1
                return

    await asyncio.gather(measure_cpu(), *(worker(s) for s in socks))
    acks = len(latencies)
    return AckResult(
        event=event,
        sockets=len(socks),
        seconds=seconds,
        acks=acks,
        ok=ok,
        refused=dict(refused),
        timeouts=timeouts,
        lost_sockets=lost,
        rate=round(acks / seconds, 1),
        ok_rate=round(ok / seconds, 1),
        p50_ms=_ms(percentile(latencies, 50)),
        p99_ms=_ms(percentile(latencies, 99)),
        cpu=cpu,
        sample_refusal=sample[0] if sample else None,
    )


# -- (d) waiting for the server to end every socket ------------------------------------


@dataclass
class GoneResult:
    sockets: int
    gone: int
    ended: int
    end_codes: dict[str, int]
    #: per socket, wall(disconnect) - reference, seconds (sockets that went)
    delays: list[float]
    #: per socket, wall(session_ended received) - reference, seconds
    ended_delays: list[float]

    def summary(self) -> dict[str, Any]:
        d = self.delays
        e = self.ended_delays
        return {
            "sockets": self.sockets,
            "gone": self.gone,
            "not_gone": self.sockets - self.gone,
            "session_ended": self.ended,
            "end_codes": self.end_codes,
            "disconnect_p50_s": _round(percentile(d, 50)),
            "disconnect_p99_s": _round(percentile(d, 99)),
            "disconnect_max_s": _round(max(d) if d else None),
            "disconnect_min_s": _round(min(d) if d else None),
            "ended_p50_s": _round(percentile(e, 50)),
            "ended_p99_s": _round(percentile(e, 99)),
            "ended_max_s": _round(max(e) if e else None),
            "within_1s": sum(1 for x in d if x <= 1.0),
        }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 4)


async def wait_all_gone(
    socks: Sequence[EioSocket],
    reference: float | Callable[[EioSocket], float],
    *,
    deadline: float,
) -> GoneResult:
    """Wait (until ``deadline``, monotonic) for every socket to be ended by the server.

    ``reference`` is an epoch time, or a function giving one per socket (for
    instance its token's ``exp``). A socket counts as gone at the first of the
    ``41`` packet and the websocket close.
    """
    readers = [s._reader for s in socks if s._reader is not None and not s._reader.done()]
    if readers:
        await asyncio.wait(readers, timeout=max(0.0, deadline - time.monotonic()))
    ref = reference if callable(reference) else (lambda _s, r=reference: r)
    delays: list[float] = []
    ended_delays: list[float] = []
    codes: Counter[str] = Counter()
    ended = 0
    for s in socks:
        r = ref(s)
        gone = s.gone_at
        if gone is not None:
            delays.append(wall(gone) - r)
        if s.ended_at is not None:
            ended += 1
            ended_delays.append(wall(s.ended_at) - r)
            ev = s.first_event("session_ended")
            code = ev[0].get("code") if ev and isinstance(ev[0], dict) else None
            codes[str(code)] += 1
    return GoneResult(len(socks), len(delays), ended, dict(codes), delays, ended_delays)


# -- REST helpers for Latch ----------------------------------------------------------


@dataclass
class Login:
    access_token: str
    session_id: str
    expires_in: int
    exp: int


def jwt_claims(token: str) -> dict[str, Any]:
    """The unverified claims of a JWT (the harness only needs ``exp``)."""
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


async def login(
    session: aiohttp.ClientSession,
    base_url: str,
    username: str,
    password: str,
    device: str = "bench",
    *,
    attempts: int = 5,
) -> Login:
    """``POST /auth/login`` (contract §3); waits out a 429 ``Retry-After`` a few times."""
    body = {"username": username, "password": password, "device": device, "transport": "body"}
    url = base_url.rstrip("/") + "/auth/login"
    for _ in range(attempts):
        async with session.post(url, json=body) as resp:
            if resp.status == 429:
                await asyncio.sleep(min(10.0, float(resp.headers.get("Retry-After", "1"))))
                continue
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"login failed: HTTP {resp.status} {data!r}")
        token = data["access_token"]
        return Login(token, data.get("session_id", ""), int(data.get("expires_in", 0)),
                     int(jwt_claims(token)["exp"]))
    raise RuntimeError("login failed: still throttled (429)")


# -- CLI -----------------------------------------------------------------------------------


def _print(obj: Any) -> None:
    print(json.dumps(asdict(obj) if hasattr(obj, "__dataclass_fields__") else obj, indent=2))


async def _cli(args: argparse.Namespace) -> int:
    async with make_session() as session:
        token = args.token
        if args.login:
            user, _, password = args.login.partition(":")
            token = (await login(session, args.url, user, password)).access_token
        opts = Options(args.url, token=token, token_in_header=args.header, compress=args.compress)
        if args.cmd == "handshakes":
            _print(await handshakes(session, opts, args.n, args.c, server_pid=args.server_pid))
        elif args.cmd == "idle":
            if not args.server_pid:
                print("idle needs --server-pid", file=sys.stderr)
                return 2
            result, socks = await idle_memory(session, opts, args.k, args.c, args.server_pid)
            _print(result)
            await close_sockets(socks)
        elif args.cmd == "acks":
            socks, errors = await open_sockets(session, opts, args.m, args.c)
            if errors:
                print(f"open errors: {errors}", file=sys.stderr)
            gc.collect()
            gc.freeze()
            if args.event == "refresh":
                def pay(_s: EioSocket, _i: int) -> Any:
                    return {"token": token}

                check = refresh_ok
            else:
                pay, check = echo_payload, echo_ok
            _print(await ack_loop(socks, args.event, pay, check, seconds=args.seconds,
                                  warmup=args.warmup, server_pid=args.server_pid))
            await close_sockets(socks)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Socket.IO load generator (see module doc)")
    parser.add_argument("--url", required=True, help="server base URL, http://127.0.0.1:PORT")
    parser.add_argument("--token", help="access token sent as auth {token}")
    parser.add_argument("--login", metavar="USER:PASSWORD", help="get a token via /auth/login")
    parser.add_argument("--header", action="store_true", help="send the token as a Bearer header")
    parser.add_argument("--compress", action="store_true", help="offer permessage-deflate")
    parser.add_argument("--server-pid", type=int, help="read RSS and CPU of this process")
    parser.add_argument("--cpu", type=int, default=1, help="pin the load generator (-1: no)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("handshakes", help="connect/ack/close rate")
    p.add_argument("-n", type=int, default=2000)
    p.add_argument("-c", type=int, default=16)
    p = sub.add_parser("idle", help="server RSS per idle socket")
    p.add_argument("-k", type=int, default=5000)
    p.add_argument("-c", type=int, default=16)
    p = sub.add_parser("acks", help="closed-loop event/ack rate")
    p.add_argument("--event", default="echo")
    p.add_argument("-m", type=int, default=128)
    p.add_argument("-c", type=int, default=16)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    args = parser.parse_args(argv)
    raise_nofile_limit()
    pin_to_cpu(None if args.cpu < 0 else args.cpu)
    return asyncio.run(_cli(args))


if __name__ == "__main__":
    sys.exit(main())
