"""Socket benchmark driver: Latch against a bare python-socketio server, side by side.

It starts both servers itself (pinned to core 0; this process, the load
generator, pins itself to core 1). Each of ``--repeats`` rounds starts both
servers afresh and warms them up, then:

1. memory: each server's RSS before and after opening ``--sockets`` idle sockets;
2. handshake rate: ``--slices`` slices of connect / namespace ack / close per
   server, alternating between the servers (and the order alternating too), with
   the server's CPU per handshake;
3. acks: ``--ack-sockets`` sockets per server in a closed loop, ``echo`` then
   ``refresh``, in the same alternating slices.

Target ratios are medians over pairs of adjacent slices, so that load from other
programs on the machine falls on both servers alike. Then mass expiry: a Latch
with a short ``LATCH_ACCESS_TTL`` and ``--sockets`` sockets whose tokens expire
in the same second; per socket, its observed disconnect minus its token's
``exp``. The same on the bare server (which ends every socket at a given
instant) gives the floor that python-socketio and this harness allow.

Medians go in a table and, with every raw figure, in
``bench/results/socket-<timestamp>.json``. Run ``--quick --bare-only`` for a
smoke run without Latch. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import math
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import loadgen
from eio_client import EioSocket, Options, make_session
from procs import BENCH_DIR, PROJECT_ROOT, Proc, free_port, http_probe, raise_nofile_limit

RESULTS_DIR = BENCH_DIR / "results"
ADMIN_PASSWORD = "bench-admin-password"

TARGETS = {
    "handshake_ratio": 0.9,  # Latch handshakes/s >= 0.9 x bare
    "memory_ratio": 1.15,  # Latch bytes per idle socket <= 1.15 x bare
    "refresh_ratio": 0.8,  # Latch refresh acks/s >= 0.8 x bare echo acks/s
    "expiry_max_s": 1.0,  # every socket gone <= 1 s after its token's exp
}


@dataclass
class Config:
    sockets: int = 5000
    handshakes: int = 5000  # per round and server, split into `slices`
    concurrency: int = 16
    ack_sockets: int = 500
    ack_seconds: float = 2.0  # measured seconds per slice and event
    slices: int = 5
    ack_warmup: float = 1.0
    repeats: int = 3
    warmup_handshakes: int = 300
    settle: float = 2.0
    expiry_sockets: int = 5000
    expiry_repeats: int = 3
    expiry_ttl: int | None = None
    expiry_notice: int = 2
    expiry_sessions: int = 4
    compression: bool = False
    bearer_header: bool = False
    bare_only: bool = False
    skip_expiry: bool = False
    bare_gc_freeze: bool = False
    bare_indexed_rooms: bool = False
    bare_latch_transport: bool = False
    quiet_wait: float = 5.0
    latch_cmd: list[str] = field(
        default_factory=lambda: [sys.executable, "-m", "app.cli", "serve"])
    server_cpu: int = 0
    client_cpu: int = 1
    latch_env: dict[str, str] = field(default_factory=dict)


# -- servers --------------------------------------------------------------------


class Server(Proc):
    """A server under test: a :class:`procs.Proc` with a port, ready on ``/healthz``
    (Latch) or its ``READY`` line (bare_server.py)."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str], port: int,
                 workdir: Path, cpu: int | None, http_probe: bool) -> None:
        super().__init__(name, cmd, env=env, workdir=workdir, cpu=cpu,
                         url=f"http://127.0.0.1:{port}")
        self.port = port
        self.url: str = f"http://127.0.0.1:{port}"
        self.http_probe = http_probe
        self.log_path = workdir / f"{name}-{port}.log"

    async def start(self, session: aiohttp.ClientSession, timeout: float = 60.0) -> None:
        self.spawn()
        ready = http_probe(session, self.url) if self.http_probe else self.log_probe("READY")
        await self.wait_ready(ready, timeout)


def bare_server(cfg: Config, workdir: Path) -> Server:
    port = free_port()
    cmd = [sys.executable, str(BENCH_DIR / "bare_server.py"), "--port", str(port),
           "--compression" if cfg.compression else "--no-compression"]
    if cfg.bare_gc_freeze:
        cmd.append("--gc-freeze")
    if cfg.bare_indexed_rooms:
        cmd.append("--indexed-rooms")
    if cfg.bare_latch_transport:
        cmd.append("--latch-transport")
    return Server("bare", cmd, env=dict(os.environ), port=port, workdir=workdir,
                  cpu=cfg.server_cpu, http_probe=False)


def latch_server(cfg: Config, workdir: Path, **env_extra: str) -> Server:
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix="latch-", dir=workdir))
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCH_")}
    env.update(
        LATCH_DB=str(data / "latch.db"),
        LATCH_KEYS_DIR=str(data / "keys"),
        LATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        LATCH_INSECURE_COOKIES="1",
        LATCH_SOCKET_COMPRESSION="1" if cfg.compression else "0",
        # The per-socket event limit is policy, not capacity: raise it so that
        # the closed-loop ack figures measure the server (the check still runs).
        LATCH_SOCKET_EVENTS_PER_SECOND="1000000",
        LATCH_SOCKET_EVENT_BURST="1000000",
    )
    env.update(env_extra)
    env.update(cfg.latch_env)
    cmd = [*cfg.latch_cmd, "--port", str(port)]
    return Server("latch", cmd, env=env, port=port, workdir=workdir,
                  cpu=cfg.server_cpu, http_probe=True)


# -- one round: both servers, fresh processes ---------------------------------------------


@dataclass
class Target:
    """A server under test within one round."""

    kind: str
    server: Server
    opts: Options
    token: str | None = None
    events: list[str] = field(default_factory=list)
    socks: list[EioSocket] = field(default_factory=list)


def _payload_and_check(t: Target, event: str) -> tuple[Callable[[EioSocket, int], Any],
                                                       Callable[[Any, list[Any]], str | None]]:
    if event == "echo":
        return loadgen.echo_payload, loadgen.echo_ok
    body = {"token": t.token} if t.token else {}
    return (lambda _sock, _i: body), loadgen.refresh_ok


async def _supports(sock: EioSocket, event: str, data: Any) -> bool:
    """True when the server acks ``event`` (python-socketio never acks unknown events)."""
    try:
        await sock.call(event, data, timeout=3.0)
    except (TimeoutError, loadgen.EioError):
        return False
    return True


async def _warm_up(cfg: Config, session: aiohttp.ClientSession, t: Target) -> None:
    """Exercise every code path once: imports, allocator arenas, lazily built state."""
    await loadgen.handshakes(session, t.opts, cfg.warmup_handshakes, cfg.concurrency)
    socks, _ = await loadgen.open_sockets(session, t.opts, 32, cfg.concurrency)
    for event in ("echo", "refresh"):
        payload, check = _payload_and_check(t, event)
        if socks and await _supports(socks[0], event, payload(socks[0], 0)):
            t.events.append(event)
            await loadgen.ack_loop(socks, event, payload, check, seconds=0.5, warmup=0.0)
    await loadgen.close_sockets(socks)


async def measure_round(cfg: Config, kinds: list[str], r: int, workdir: Path,
                        session: aiohttp.ClientSession) -> dict[str, dict[str, Any]]:
    """One round: fresh servers; memory, then interleaved handshake and ack slices.

    Both servers run at once (an idle server costs nothing) and the timed
    measurements alternate between them in short slices, in alternating order,
    so that other load on the machine hits both alike; ratios are taken per
    pair of adjacent slices.
    """
    out: dict[str, dict[str, Any]] = {
        k: {"handshakes": [], "echo": [], "refresh": []} for k in kinds}
    targets: list[Target] = []
    try:
        for kind in kinds:
            server = bare_server(cfg, workdir) if kind == "bare" else latch_server(cfg, workdir)
            targets.append(Target(kind, server, Options(server.url)))
            await server.start(session)
        for t in targets:
            if t.kind == "latch":
                t.token = (await loadgen.login(session, t.server.url, "admin", ADMIN_PASSWORD,
                                               "bench")).access_token
            t.opts = Options(t.server.url, token=t.token, token_in_header=cfg.bearer_header,
                             compress=cfg.compression)
            out[t.kind]["rss_start_kb"] = loadgen.proc_rss_kb(t.server.pid)
            await _warm_up(cfg, session, t)
            out[t.kind]["events"] = list(t.events)

        def order(i: int) -> list[Target]:
            return targets if (r + i) % 2 == 0 else targets[::-1]

        # Memory first, before handshake churn fragments the servers' heaps.
        for t in order(0):
            gc.collect()
            await asyncio.sleep(0.5)
            idle, socks = await loadgen.idle_memory(session, t.opts, cfg.sockets,
                                                    cfg.concurrency, t.server.pid,
                                                    settle=cfg.settle)
            out[t.kind]["idle"] = asdict(idle)
            await loadgen.close_sockets(socks)
            del socks
        gc.collect()

        per_slice = max(1, cfg.handshakes // cfg.slices)
        for i in range(cfg.slices):
            for t in order(i):
                quiet = await loadgen.wait_for_quiet(cfg.quiet_wait)
                hs = asdict(await loadgen.handshakes(session, t.opts, per_slice,
                                                     cfg.concurrency, server_pid=t.server.pid))
                out[t.kind]["handshakes"].append({**hs, "quiet_before": quiet})

        for t in targets:
            t.socks, errors = await loadgen.open_sockets(session, t.opts, cfg.ack_sockets,
                                                         cfg.concurrency)
            out[t.kind]["ack_open_errors"] = errors
        gc.collect()
        gc.freeze()  # keep the load generator's own full collections out of the timings
        for i in range(cfg.slices):
            for t in order(i):
                for event in t.events:
                    payload, check = _payload_and_check(t, event)
                    quiet = await loadgen.wait_for_quiet(cfg.quiet_wait)
                    res = await loadgen.ack_loop(
                        t.socks, event, payload, check, seconds=cfg.ack_seconds,
                        warmup=cfg.ack_warmup, server_pid=t.server.pid)
                    per_ack = (round(float(res.cpu.get("server_cpu_s") or 0) * 1e6 / res.acks, 1)
                               if res.acks else None)
                    out[t.kind][event].append({**asdict(res), "quiet_before": quiet,
                                               "server_cpu_us_per_ack": per_ack})
        for t in targets:
            await loadgen.close_sockets(t.socks)
            t.socks = []
            out[t.kind]["rss_end_kb"] = loadgen.proc_rss_kb(t.server.pid)
    finally:
        gc.unfreeze()
        for t in targets:
            await t.server.stop()
    return out


# -- mass expiry -------------------------------------------------------------------------------


def _expires_at(fallback: float) -> Callable[[EioSocket], float]:
    def ref(sock: EioSocket) -> float:
        ev = sock.first_event("session")
        if ev and isinstance(ev[0], dict) and isinstance(ev[0].get("expires_at"), int | float):
            return float(ev[0]["expires_at"])
        return fallback

    return ref


async def _hold_and_wait(socks: list[EioSocket], ref: float | Callable[[EioSocket], float],
                         window_from: float, until_wall: float,
                         server_pid: int) -> dict[str, Any]:
    """Hold the sockets until the server ends them; CPU is metered from ``window_from``
    (wall clock, just before the expected end) so that ``other_cores`` tells whether
    other programs competed during the measured second or two."""
    gc.collect()
    gc.freeze()  # no full collections over thousands of live sockets while timing
    try:
        await asyncio.sleep(max(0.0, window_from - time.time()))
        meter = loadgen.CpuMeter(server_pid)
        deadline = time.monotonic() + max(0.0, until_wall - time.time())
        result = await loadgen.wait_all_gone(socks, ref, deadline=deadline)
        cpu = meter.stop()
    finally:
        await loadgen.close_sockets([s for s in socks if not s.ws.closed])
        gc.unfreeze()
    return {**result.summary(), "cpu_during_end": cpu}


async def expiry_latch(cfg: Config, workdir: Path, session: aiohttp.ClientSession,
                       open_rate: float | None) -> dict[str, Any]:
    k = cfg.expiry_sockets
    rate = open_rate or 300.0
    ttl = cfg.expiry_ttl or max(8, math.ceil(k / (0.5 * rate)) + cfg.expiry_notice + 3)
    server = latch_server(cfg, workdir, LATCH_ACCESS_TTL=str(ttl),
                          LATCH_REFRESH_NOTICE=str(cfg.expiry_notice))
    out: dict[str, Any] = {"sockets": k, "ttl_s": ttl, "notice_s": cfg.expiry_notice}
    await server.start(session)
    try:
        warm = await loadgen.login(session, server.url, "admin", ADMIN_PASSWORD, "bench-warm")
        await loadgen.handshakes(session, Options(server.url, token=warm.access_token),
                                 cfg.warmup_handshakes, cfg.concurrency)
        out["quiet_before"] = await loadgen.wait_for_quiet(cfg.quiet_wait)
        logins: list[loadgen.Login] = []
        for _attempt in range(3):
            logins = list(await asyncio.gather(*(
                loadgen.login(session, server.url, "admin", ADMIN_PASSWORD, f"bench-exp-{i}")
                for i in range(cfg.expiry_sessions))))
            if len({lg.exp for lg in logins}) == 1:
                break
        exps = sorted({lg.exp for lg in logins})
        out["token_exps"] = exps
        opts = [Options(server.url, token=lg.access_token, token_in_header=cfg.bearer_header,
                        compress=cfg.compression) for lg in logins]
        # Stop opening shortly before the token_expiring notices go out.
        open_until = time.monotonic() + (exps[0] - cfg.expiry_notice - 0.5 - time.time())
        t0 = time.monotonic()
        socks, errors = await loadgen.open_sockets(session, opts, k, cfg.concurrency,
                                                   deadline=open_until)
        out["open_seconds"] = round(time.monotonic() - t0, 3)
        out["open_errors"] = errors
        out["opened"] = len(socks)
        out["opened_before_s"] = round(exps[0] - time.time(), 3)
        result = await _hold_and_wait(socks, _expires_at(exps[0]), exps[0] - 0.25,
                                      exps[-1] + 15, server.pid)
        result["token_expiring_received"] = sum(
            1 for s in socks if s.first_event("token_expiring") is not None)
        out.update(result)
    finally:
        await server.stop()
    return out


async def expiry_bare(cfg: Config, workdir: Path,
                      session: aiohttp.ClientSession) -> dict[str, Any]:
    """The floor: the bare server ends every socket at one instant, no token work."""
    server = bare_server(cfg, workdir)
    out: dict[str, Any] = {"sockets": cfg.expiry_sockets}
    await server.start(session)
    try:
        opts = Options(server.url, compress=cfg.compression)
        await loadgen.handshakes(session, opts, cfg.warmup_handshakes, cfg.concurrency)
        out["quiet_before"] = await loadgen.wait_for_quiet(cfg.quiet_wait)
        socks, errors = await loadgen.open_sockets(session, opts, cfg.expiry_sockets,
                                                   cfg.concurrency)
        out["open_errors"] = errors
        out["opened"] = len(socks)
        control = (await loadgen.open_sockets(session, opts, 1, 1))[0][0]
        at = math.ceil(time.time()) + 1.0
        await control.call("bench_end_all", {"at": at}, timeout=5.0)
        out.update(await _hold_and_wait(socks, at, at - 0.25, at + 15, server.pid))
        await control.close()
    finally:
        await server.stop()
    return out


# -- summary ---------------------------------------------------------------------------------------


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def _med(values: list[float | None], digits: int = 3) -> float | None:
    clean = [v for v in values if v is not None]
    return round(statistics.median(clean), digits) if clean else None


def _slices(rounds: list[dict[str, Any]], kind: str, section: str) -> list[list[dict[str, Any]]]:
    """Per round, the list of slice results of ``section`` for ``kind``."""
    return [r.get(kind, {}).get(section) or [] for r in rounds]


def _slice_median(rounds: list[dict[str, Any]], kind: str, section: str,
                  *path: str) -> float | None:
    return _med([_num(_get(s, *path)) for per in _slices(rounds, kind, section) for s in per])


def _paired(rounds: list[dict[str, Any]], num: tuple[str, str], den: tuple[str, str],
            *path: str, invert: bool = False) -> float | None:
    """Median over adjacent slice pairs of ``num-kind/section`` over ``den-kind/section``."""
    ratios: list[float | None] = []
    for a_list, b_list in zip(_slices(rounds, *num), _slices(rounds, *den), strict=True):
        for a, b in zip(a_list, b_list, strict=False):
            x, y = _num(_get(a, *path)), _num(_get(b, *path))
            if invert:
                x, y = y, x
            ratios.append(x / y if x is not None and y else None)
    return _med(ratios)


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


SLICE_METRICS: list[tuple[str, str, tuple[str, ...], str]] = [
    ("handshakes_per_s", "handshakes", ("rate",), "handshakes/s"),
    ("handshake_p50_ms", "handshakes", ("p50_ms",), "handshake p50 ms"),
    ("handshake_p99_ms", "handshakes", ("p99_ms",), "handshake p99 ms"),
    ("server_cpu_ms_per_handshake", "handshakes", ("server_cpu_ms_per_handshake",),
     "server CPU ms/handshake"),
    ("handshake_server_util", "handshakes", ("cpu", "server_util"), "server util (handshakes)"),
    ("handshake_client_util", "handshakes", ("cpu", "client_util"), "loadgen util (handshakes)"),
    ("handshake_other_cores", "handshakes", ("cpu", "other_cores"), "other load (handshakes)"),
    ("echo_acks_per_s", "echo", ("ok_rate",), "echo acks/s"),
    ("echo_p50_ms", "echo", ("p50_ms",), "echo p50 ms"),
    ("echo_p99_ms", "echo", ("p99_ms",), "echo p99 ms"),
    ("echo_server_us_per_ack", "echo", ("server_cpu_us_per_ack",), "server CPU us/echo"),
    ("echo_server_util", "echo", ("cpu", "server_util"), "server util (echo)"),
    ("echo_other_cores", "echo", ("cpu", "other_cores"), "other load (echo)"),
    ("refresh_acks_per_s", "refresh", ("ok_rate",), "refresh acks/s (ok)"),
    ("refresh_p50_ms", "refresh", ("p50_ms",), "refresh p50 ms"),
    ("refresh_p99_ms", "refresh", ("p99_ms",), "refresh p99 ms"),
    ("refresh_server_us_per_ack", "refresh", ("server_cpu_us_per_ack",),
     "server CPU us/refresh"),
    ("refresh_server_util", "refresh", ("cpu", "server_util"), "server util (refresh)"),
    ("refresh_other_cores", "refresh", ("cpu", "other_cores"), "other load (refresh)"),
]


def summarize(kinds: list[str], rounds: list[dict[str, Any]],
              expiry: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for kind in kinds:
        s = {name: _slice_median(rounds, kind, section, *path)
             for name, section, path, _ in SLICE_METRICS}
        s["bytes_per_idle_socket"] = _med(
            [_num(_get(r, kind, "idle", "bytes_per_socket")) for r in rounds], 1)
        for event in ("echo", "refresh"):
            codes: dict[str, int] = {}
            for per in _slices(rounds, kind, event):
                for x in per:
                    for code, n in {**(x.get("refused") or {}),
                                    "timeout": x.get("timeouts", 0),
                                    "socket_lost": x.get("lost_sockets", 0)}.items():
                        if n:
                            codes[code] = codes.get(code, 0) + n
            s[f"{event}_refusals"] = sum(codes.values())
            s[f"{event}_refusal_codes"] = codes
        runs = expiry.get(kind) or []
        if runs:
            s.update({
                "expiry_max_s": _med([_num(x.get("disconnect_max_s")) for x in runs]),
                "expiry_p99_s": _med([_num(x.get("disconnect_p99_s")) for x in runs]),
                "expiry_p50_s": _med([_num(x.get("disconnect_p50_s")) for x in runs]),
                "expiry_worst_max_s": max((v for x in runs
                                           if (v := _num(x.get("disconnect_max_s"))) is not None),
                                          default=None),
                "expiry_other_cores": _med([_num(_get(x, "cpu_during_end", "other_cores"))
                                            for x in runs]),
                "expiry_not_gone": sum(int(x.get("not_gone") or 0) for x in runs)
                + sum(int(x.get("sockets", 0)) - int(x.get("opened", 0)) for x in runs),
            })
        summary[kind] = s
    if "latch" in kinds and "bare" in kinds:
        lt, bare = summary["latch"], summary["bare"]
        ratios = {
            # paired: each Latch slice over the bare slice measured next to it
            "handshake_ratio": _paired(rounds, ("latch", "handshakes"),
                                       ("bare", "handshakes"), "rate"),
            "memory_ratio": _med([_ratio(_num(_get(r, "latch", "idle", "bytes_per_socket")),
                                         _num(_get(r, "bare", "idle", "bytes_per_socket")))
                                  for r in rounds]),
            "refresh_ratio": _paired(rounds, ("latch", "refresh"), ("bare", "echo"), "ok_rate"),
            "echo_ratio": _paired(rounds, ("latch", "echo"), ("bare", "echo"), "ok_rate"),
            # CPU-based: bare server CPU per operation over Latch's. Less sensitive
            # to other load than rates; the capacity ratio a saturated server shows.
            "handshake_cpu_ratio": _paired(rounds, ("latch", "handshakes"),
                                           ("bare", "handshakes"),
                                           "server_cpu_ms_per_handshake", invert=True),
            "refresh_cpu_ratio": _paired(rounds, ("latch", "refresh"), ("bare", "echo"),
                                         "server_cpu_us_per_ack", invert=True),
            "expiry_max_s": lt.get("expiry_max_s"),
            "expiry_worst_max_s": lt.get("expiry_worst_max_s"),
            "expiry_p99_s": lt.get("expiry_p99_s"),
        }
        summary["ratios"] = ratios
        summary["pass"] = {
            "handshake_ratio": _ge(ratios["handshake_ratio"], TARGETS["handshake_ratio"]),
            "memory_ratio": _le(ratios["memory_ratio"], TARGETS["memory_ratio"]),
            "refresh_ratio": _ge(ratios["refresh_ratio"], TARGETS["refresh_ratio"]),
            "expiry_max_s": None if ratios["expiry_max_s"] is None else bool(
                _le(ratios["expiry_max_s"], TARGETS["expiry_max_s"])
                and not lt.get("expiry_not_gone")),
        }
        del bare
    return summary


def _ge(v: float | None, t: float) -> bool | None:
    return None if v is None else v >= t


def _le(v: float | None, t: float) -> bool | None:
    return None if v is None else v <= t


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "PASS" if v else "FAIL"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.1f}"
    return str(v)


def print_table(kinds: list[str], summary: dict[str, Any]) -> None:
    rows = [(label, name) for name, _s, _p, label in SLICE_METRICS]
    rows.insert(7, ("bytes/idle socket", "bytes_per_idle_socket"))
    rows += [
        ("echo refused/timed out/lost", "echo_refusals"),
        ("refresh refused/timed out/lost", "refresh_refusals"),
        ("expiry max s (median)", "expiry_max_s"),
        ("expiry worst max s", "expiry_worst_max_s"),
        ("expiry p99 s", "expiry_p99_s"),
        ("expiry p50 s", "expiry_p50_s"),
        ("sockets not ended", "expiry_not_gone"),
        ("other load (expiry)", "expiry_other_cores"),
    ]
    width = max(len(label) for label, _ in rows) + 2
    print(f"\n{'metric':<{width}}" + "".join(f"{k:>14}" for k in kinds))
    print("-" * (width + 14 * len(kinds)))
    for label, name in rows:
        print(f"{label:<{width}}" + "".join(f"{_fmt(summary[k].get(name)):>14}" for k in kinds))
    for kind in kinds:
        for event in ("echo", "refresh"):
            codes = summary[kind].get(f"{event}_refusal_codes")
            if codes:
                print(f"WARNING: {kind} did not ack every {event} normally: {codes}")
                if "rate_limited" in codes:
                    print("  the per-socket event limit binds: the ack rate is the limit, not "
                          "the capacity; use more --ack-sockets or let Latch read "
                          "LATCH_SOCKET_EVENTS_PER_SECOND / LATCH_SOCKET_EVENT_BURST")
    if "ratios" in summary:
        print("\ntarget checks (medians of paired slices):")
        goals = {"handshake_ratio": ">= 0.9", "memory_ratio": "<= 1.15",
                 "refresh_ratio": ">= 0.8 (vs bare echo)", "expiry_max_s": "<= 1.0 s, all ended"}
        for key, goal in goals.items():
            value = summary["ratios"].get(key)
            print(f"  {key:<20}{_fmt(value):>10}  {goal:<26}{_fmt(summary['pass'].get(key))}")
        for key in ("echo_ratio", "handshake_cpu_ratio", "refresh_cpu_ratio", "expiry_p99_s",
                    "expiry_worst_max_s"):
            print(f"  {key:<20}{_fmt(summary['ratios'].get(key)):>10}  (informative)")


# -- run ----------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "kernel": platform.release(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "nofile": raise_nofile_limit(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError):
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["mem_total_mb"] = int(mem) // 1024
    for pkg in ("aiohttp", "python-socketio", "python-engineio", "PyJWT"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[pkg] = metadata.version(pkg)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):
        info["git"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True,
            text=True, check=True, timeout=5).stdout.strip()
    return info


def write_results(doc: dict[str, Any], path: Path | None = None) -> Path:
    if path is None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        path = RESULTS_DIR / f"socket-{stamp}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# What a failed round can raise: recorded in the results, the run goes on.
FAILURES = (RuntimeError, OSError, TimeoutError, KeyError, ValueError, aiohttp.ClientError,
            loadgen.EioError)


async def run(cfg: Config) -> dict[str, Any]:
    kinds = ["bare"] if cfg.bare_only else ["bare", "latch"]
    rounds: list[dict[str, Any]] = []
    expiry: dict[str, list[dict[str, Any]]] = {k: [] for k in kinds}
    failures: list[str] = []
    workdir = Path(tempfile.mkdtemp(prefix="latch-bench-"))
    try:
        async with make_session() as session:
            for r in range(cfg.repeats):
                log(f"round {r + 1}/{cfg.repeats}: {', '.join(kinds)}")
                try:
                    res = await measure_round(cfg, kinds, r, workdir, session)
                except FAILURES as exc:
                    failures.append(f"round {r + 1}: {exc!r}")
                    log(f"  round failed: {exc!r}")
                    continue
                rounds.append(res)
                for kind in kinds:
                    log(f"  {kind}: "
                        f"{_slice_median([res], kind, 'handshakes', 'rate')} handshakes/s, "
                        f"{_get(res, kind, 'idle', 'bytes_per_socket')} B/idle socket, "
                        f"echo {_slice_median([res], kind, 'echo', 'ok_rate')}/s, "
                        f"refresh {_slice_median([res], kind, 'refresh', 'ok_rate')}/s")
            if not cfg.skip_expiry:
                rate = _slice_median(rounds, "latch", "handshakes", "rate")
                for r in range(cfg.expiry_repeats):
                    for kind in kinds:
                        log(f"mass expiry {r + 1}/{cfg.expiry_repeats}: {kind}, "
                            f"{cfg.expiry_sockets} sockets")
                        try:
                            if kind == "bare":
                                res = await expiry_bare(cfg, workdir, session)
                            else:
                                res = await expiry_latch(cfg, workdir, session, rate)
                        except FAILURES as exc:
                            failures.append(f"expiry {kind} {r + 1}: {exc!r}")
                            log(f"  failed: {exc!r}")
                            continue
                        expiry[kind].append(res)
                        log(f"  {kind}: max {res.get('disconnect_max_s')} s, "
                            f"p99 {res.get('disconnect_p99_s')} s, "
                            f"not ended {res.get('not_gone')}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {"kinds": kinds, "rounds": rounds, "expiry": expiry, "failures": failures,
            "summary": summarize(kinds, rounds, expiry)}


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description="Latch vs bare python-socketio socket benchmark")
    p.add_argument("--sockets", type=int, default=None, help="idle and mass-expiry sockets (5000)")
    p.add_argument("--handshakes", type=int, default=None,
                   help="handshakes per round and server (5000)")
    p.add_argument("--slices", type=int, default=None,
                   help="timed slices per round, alternating between the servers (5)")
    p.add_argument("--concurrency", type=int, default=None, help="connects in flight (16)")
    p.add_argument("--ack-sockets", type=int, default=None, help="closed-loop ack sockets (500)")
    p.add_argument("--ack-seconds", type=float, default=None,
                   help="measured seconds per slice and event (2)")
    p.add_argument("--repeats", type=int, default=None, help="rounds per server (3)")
    p.add_argument("--expiry-repeats", type=int, default=None, help="mass-expiry runs (3)")
    p.add_argument("--expiry-ttl", type=int, default=None,
                   help="LATCH_ACCESS_TTL for mass expiry (default: long enough to open all)")
    p.add_argument("--expiry-notice", type=int, default=2, help="LATCH_REFRESH_NOTICE (2)")
    p.add_argument("--expiry-sessions", type=int, default=4, help="logins sharing the sockets")
    p.add_argument("--quick", action="store_true", help="small numbers, one round: a smoke run")
    p.add_argument("--bare-only", action="store_true", help="only the reference server")
    p.add_argument("--skip-expiry", action="store_true", help="no mass-expiry phase")
    p.add_argument("--compression", action="store_true",
                   help="offer permessage-deflate like browsers; both servers accept it")
    p.add_argument("--bearer-header", action="store_true",
                   help="send the token as Authorization: Bearer, not auth {token}")
    p.add_argument("--bare-gc-freeze", action="store_true",
                   help="start the bare server with gc.freeze() after start-up")
    p.add_argument("--bare-indexed-rooms", action="store_true",
                   help="bare server with O(1) disconnects (python-socketio's are O(sockets))")
    p.add_argument("--bare-latch-transport", action="store_true",
                   help="bare server over Latch's Engine.IO layer: isolates the cost of auth")
    p.add_argument("--latch-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the Latch server (repeatable; wins)")
    p.add_argument("--latch-cmd", default=None,
                   help="command that serves Latch, run in the project root; --port P is "
                        "appended (default: PYTHON -m app.cli serve)")
    p.add_argument("--quiet-wait", type=float, default=None,
                   help="before each timed phase, wait up to this many s for other load to stop")
    p.add_argument("--server-cpu", type=int, default=0)
    p.add_argument("--client-cpu", type=int, default=1)
    p.add_argument("--no-write", action="store_true", help="do not write a results file")
    p.add_argument("--out", type=Path, default=None,
                   help="results file (default bench/results/socket-<timestamp>.json)")
    a = p.parse_args(argv)
    cfg = Config()
    if a.quick:
        cfg = Config(sockets=300, handshakes=600, ack_sockets=200, ack_seconds=1.0, slices=2,
                     ack_warmup=0.5, repeats=1, warmup_handshakes=100, settle=1.0,
                     expiry_sockets=300, expiry_repeats=1, quiet_wait=2.0)
    for name in ("sockets", "handshakes", "concurrency", "ack_sockets", "ack_seconds", "slices",
                 "repeats", "expiry_repeats", "expiry_ttl", "quiet_wait"):
        if (value := getattr(a, name)) is not None:
            setattr(cfg, name, value)
    if a.sockets is not None:
        cfg.expiry_sockets = a.sockets
    cfg.expiry_notice = a.expiry_notice
    cfg.expiry_sessions = a.expiry_sessions
    cfg.compression = a.compression
    cfg.bearer_header = a.bearer_header
    cfg.bare_only = a.bare_only
    cfg.skip_expiry = a.skip_expiry
    cfg.bare_gc_freeze = a.bare_gc_freeze
    cfg.bare_indexed_rooms = a.bare_indexed_rooms
    cfg.bare_latch_transport = a.bare_latch_transport
    cfg.server_cpu, cfg.client_cpu = a.server_cpu, a.client_cpu
    if a.latch_cmd:
        cfg.latch_cmd = shlex.split(a.latch_cmd)
    for item in a.latch_env:
        key, sep, value = item.partition("=")
        if not sep or not key.startswith("LATCH_"):
            p.error(f"--latch-env expects LATCH_NAME=VALUE, got {item!r}")
        cfg.latch_env[key] = value
    return cfg, a


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    default_cmd = cfg.latch_cmd == Config().latch_cmd
    if not cfg.bare_only and default_cmd and not (PROJECT_ROOT / "app" / "cli.py").exists():
        print("app/cli.py not found: the Latch server is not there yet; use --bare-only",
              file=sys.stderr)
        return 2
    raise_nofile_limit()
    if (os.cpu_count() or 1) >= 2:
        loadgen.pin_to_cpu(cfg.client_cpu)
    else:
        print("warning: one CPU only; server and load generator share it", file=sys.stderr)
        cfg.server_cpu = cfg.client_cpu = 0
    started = time.time()
    result = asyncio.run(run(cfg))
    doc = {
        "benchmark": "socket",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
        "duration_s": round(time.time() - started, 1),
        "config": asdict(cfg),
        "targets": TARGETS,
        "machine": machine_info(),
        **result,
    }
    print_table(result["kinds"], result["summary"])
    for failure in result["failures"]:
        print(f"FAILED: {failure}", file=sys.stderr)
    if not args.no_write:
        print(f"\nresults: {write_results(doc, args.out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
