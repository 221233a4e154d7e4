"""Revocation benchmark: admin kill → client-observed disconnect, across two nodes on one Redis.

In one run, on 127.0.0.1, with its own ``redis-server`` (``--save "" --appendonly no``):

1. two Latch nodes (``python -m app.cli serve``; node-a first, then node-b) sharing
   one SQLite file and one keys directory. Both nodes and Redis are pinned to core
   0; this process (the load generator, one raw Engine.IO client per socket, see
   ``eio_client.py``) and the CLI to core 1;
2. sessions: a bench user created through ``POST /admin/users``; one login per
   victim session (argon2, a few dozen per second) plus a few filler sessions
   whose tokens many sockets share, to reach ``--sockets`` idle sockets, half on
   each node; every victim's one socket is on node-b;
3. floors, with the sockets open: Redis ``PUBLISH`` → subscriber receive with
   redis-py (what Latch's feed uses), from this process and from one on the server
   core; ``GET /healthz`` on node-a; a SQLite WAL commit next to Latch's file with
   ``synchronous`` FULL and NORMAL. The Redis and HTTP floors also after idle
   pauses, because an idle vCPU of this VM takes ~1 ms to wake up;
4. kill latency, one kill at a time: ``POST /admin/sessions/{id}/revoke`` to node-a
   (keep-alive connection, admin Bearer) and the victim's socket on node-b seen
   ending (``41`` / close, and ``session_ended``); the REST answer time (which
   waits for the other node's ack) and node-b's own ``latch_revocation_latency_
   seconds`` histogram. First ``--kills`` with a 100–150 ms pause before each
   (an idle system), then ``--burst-kills`` back to back (a warm one);
5. kill everyone: once through REST (``POST /admin/users/{id}/revoke`` of the user
   holding every socket), then ``--cli-rounds`` times ``latch sessions revoke --all``
   on fresh sockets, timed from the CLI's exec and from the start of its revoke;
6. a reference for (5): two bare python-socketio nodes (``bare_server.py
   --indexed-rooms``) ending the same number of sockets at one instant;
7. the naive baseline (``naive_cluster.py``: two python-socketio nodes with
   ``AsyncRedisManager``, no auth, no durable write) on the same Redis, same kill →
   disconnect path, idle-paced and back to back, at ``--naive-sockets`` sockets.

Before each measured phase the driver waits (up to ``--wait-quiet`` s) for other
processes to leave the machine alone, and records the share of CPU they took
during the phase (``foreign_cpu_share``; warnings above 5 %). Figures are printed
next to their targets and written, with every raw sample, to
``bench/results/revocation-<timestamp>.json``. ``--quick`` is a smoke run.
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
import random
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
from eio_client import EioError, EioSocket, Options, connect, make_session
from loadgen import percentile
from procs import (
    BENCH_DIR,
    PROJECT_ROOT,
    Proc,
    child_setup,
    free_port,
    http_probe,
    pin_to_cpu,
    raise_nofile_limit,
)
from redis.asyncio import Redis
from redis.exceptions import RedisError

RESULTS_DIR = BENCH_DIR / "results"
ADMIN_PASSWORD = "bench-admin-password"
BENCH_USER = "bench-victim"
BENCH_PASSWORD = "bench-victim-password-123"

TARGETS = {
    "kill_p50_ms": 4.0,
    "kill_p99_ms": 10.0,
    "kill_all_s": 1.0,
}
ISSUE_FIGURES = {
    "redis_floor_p50_ms": 0.3,
    "redis_floor_p99_ms": 1.5,
    "naive_p50_ms": "4-6",
    "naive_p99_ms": "10-17",
}


@dataclass
class Config:
    sockets: int = 5000
    kills: int = 200
    burst_kills: int = 200  # back to back (no pause), after the idle-paced ones
    warmup_kills: int = 10
    spare_victims: int = 10
    fillers: int = 16  # filler sessions, half per node
    naive_sockets: int = 1000
    naive_kills: int = 200
    naive_burst_kills: int = 200
    floor_rounds: int = 2000
    floor_warmup: int = 100
    floor_bytes: int = 200
    http_floor_rounds: int = 300
    sqlite_floor_rounds: int = 300
    gap_min: float = 0.10  # pause between two kills, seconds (uniform in [min, max])
    gap_max: float = 0.15
    floor_idle_min: float = 0.02  # pause before each "idle" floor sample
    floor_idle_max: float = 0.04
    idle_floor_rounds: int = 200
    cli_rounds: int = 3
    wait_quiet: float = 120.0
    connect_concurrency: int = 32
    login_concurrency: int = 4
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    redis_cpu: int | None = 0
    cli_cpu: int | None = 1
    settle: float = 2.0
    mass_deadline: float = 10.0
    skip_naive: bool = False
    skip_rest_mass: bool = False
    skip_bare_floor: bool = False
    latch_cmd: list[str] = field(default_factory=list)  # replaces `python -m app.cli`
    keep_workdir: bool = False
    workdir_parent: str | None = None
    seed: int = 1
    latch_env: dict[str, str] = field(default_factory=dict)

    @property
    def victims(self) -> int:
        return self.kills + self.burst_kills + self.warmup_kills + self.spare_victims


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- small helpers ------------------------------------------------------------------


def dist_ms(values_s: Sequence[float]) -> dict[str, Any]:
    """p50/p90/p99/max/mean/min in milliseconds of samples in seconds."""
    ms = [v * 1000 for v in values_s]

    def r(x: float | None) -> float | None:
        return None if x is None else round(x, 3)

    return {
        "n": len(ms),
        "p50_ms": r(percentile(ms, 50)),
        "p90_ms": r(percentile(ms, 90)),
        "p99_ms": r(percentile(ms, 99)),
        "max_ms": r(max(ms) if ms else None),
        "min_ms": r(min(ms) if ms else None),
        "mean_ms": r(statistics.fmean(ms) if ms else None),
    }


def proc_cpu_seconds(pid: int) -> float:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = raw[raw.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def system_cpu() -> dict[str, list[int]]:
    """Per-CPU jiffies from ``/proc/stat``: cpuN -> [user, nice, system, idle, iowait, irq,
    softirq, steal]."""
    out: dict[str, list[int]] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu") and line[3:4].isdigit():
                name, *vals = line.split()
                out[name] = [int(v) for v in vals[:8]]
    return out


def cpu_delta(before: dict[str, list[int]], after: dict[str, list[int]]) -> dict[str, Any]:
    """Per CPU: busy and steal share of the interval."""
    out: dict[str, Any] = {}
    for name, vals in after.items():
        prev = before.get(name)
        if prev is None:
            continue
        d = [x - y for x, y in zip(vals, prev, strict=False)]
        total = sum(d) or 1
        busy = d[0] + d[1] + d[2] + d[5] + d[6]
        out[name] = {"busy": round(busy / total, 3), "steal": round(d[7] / total, 4)}
    return out


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine so far (every process, every core)."""
    with contextlib.suppress(OSError):
        vals = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        return (vals[0] + vals[1] + vals[2] + vals[5] + vals[6]) / os.sysconf("SC_CLK_TCK")
    return 0.0


class ForeignLoad:
    """CPU used on this machine by processes that are not part of the run, as a share.

    Other work on the box (a test suite, a build) lands on the pinned cores and
    shows up as latency; this makes it visible next to the figures.
    """

    def __init__(self, own: Callable[[], float]) -> None:
        self._own = own
        self._t = time.monotonic()
        self._busy = machine_busy_seconds()
        self._mine = own()

    def share(self) -> float:
        wall = max(1e-6, time.monotonic() - self._t)
        foreign = (machine_busy_seconds() - self._busy) - (self._own() - self._mine)
        return round(max(0.0, foreign) / (wall * (os.cpu_count() or 1)), 3)


def freeze_heap() -> None:
    """Move everything alive now (thousands of idle sockets) out of the GC's scans.

    Without it a full collection in this process walks every socket's objects and
    stalls the loop for tens of milliseconds: a kill timed across one would be
    late by that much, and the figure would be the harness's, not the server's.
    """
    gc.collect()
    gc.freeze()


async def wait_gone(socks: Sequence[EioSocket], deadline: float) -> None:
    """Wait (until ``deadline``, monotonic) for every socket's reader to end.

    ``EioSocket`` stamps ``41``/close/``session_ended`` when they arrive; the reader
    task ends right after (it closes the websocket like socket.io-client does).
    """
    readers = [s._reader for s in socks if s._reader is not None and not s._reader.done()]
    if readers:
        await asyncio.wait(readers, timeout=max(0.0, deadline - time.monotonic()))


# -- processes ------------------------------------------------------------------------


def redis_probe(url: str) -> Callable[[], Any]:
    async def probe() -> bool:
        client = Redis.from_url(url)
        try:
            return bool(await client.ping())
        except (RedisError, OSError):
            return False
        finally:
            await client.aclose()

    return probe


async def start_redis(cfg: Config, workdir: Path) -> tuple[Proc, str]:
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server is not on PATH")
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    proc = Proc("redis", [exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                          "--appendonly", "no", "--dir", str(workdir)],
                env=dict(os.environ), workdir=workdir, cpu=cfg.redis_cpu)
    proc.spawn()
    await proc.wait_ready(redis_probe(url), 20.0)
    return proc, url


def latch_env(cfg: Config, data: Path, redis_url: str, node: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LATCH_")}
    env.update(
        LATCH_DB=str(data / "latch.db"),
        LATCH_KEYS_DIR=str(data / "keys"),
        LATCH_REDIS_URL=redis_url,
        LATCH_NODE_ID=node,
        LATCH_ADMIN_PASSWORD=ADMIN_PASSWORD,
        LATCH_INSECURE_COOKIES="1",
        LATCH_LOG_LEVEL="WARNING",
        LATCH_LOGIN_MAX_FAILURES="1000000",
    )
    env.update(cfg.latch_env)
    return env


async def start_latch(cfg: Config, workdir: Path, data: Path, redis_url: str, node: str,
                      session: aiohttp.ClientSession) -> Proc:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    head = list(cfg.latch_cmd) or [sys.executable, "-m", "app.cli"]
    proc = Proc(node, [*head, "serve", "--port", str(port)],
                env=latch_env(cfg, data, redis_url, node), workdir=workdir,
                cpu=cfg.server_cpu, url=url)
    proc.spawn()
    await proc.wait_ready(http_probe(session, url))
    return proc


async def start_naive(cfg: Config, workdir: Path, redis_url: str, node: str,
                      session: aiohttp.ClientSession) -> Proc:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = Proc(node, [sys.executable, str(BENCH_DIR / "naive_cluster.py"), "--port", str(port),
                       "--redis-url", redis_url],
                env=dict(os.environ), workdir=workdir, cpu=cfg.server_cpu, url=url)
    proc.spawn()
    await proc.wait_ready(http_probe(session, url))
    return proc


# -- REST ------------------------------------------------------------------------------


async def rest(session: aiohttp.ClientSession, method: str, url: str, *,
               token: str | None = None, body: Any = None,
               expect: tuple[int, ...] = (200,)) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    async with session.request(method, url, json=body, headers=headers) as resp:
        data = await resp.json(content_type=None) if resp.content_length != 0 else None
        if resp.status not in expect:
            raise RuntimeError(f"{method} {url}: HTTP {resp.status} {data!r}")
        return data


@dataclass
class Login:
    token: str
    session_id: str


async def login(session: aiohttp.ClientSession, url: str, username: str, password: str,
                device: str) -> Login:
    data = await rest(session, "POST", url + "/auth/login", body={
        "username": username, "password": password, "device": device, "transport": "body"})
    return Login(data["access_token"], data["session_id"])


async def login_many(session: aiohttp.ClientSession, urls: Sequence[str], n: int,
                     concurrency: int, prefix: str) -> list[Login]:
    out: list[Login | None] = [None] * n
    todo = iter(range(n))

    async def worker() -> None:
        for i in todo:
            out[i] = await login(session, urls[i % len(urls)], BENCH_USER, BENCH_PASSWORD,
                                 f"{prefix}-{i}")

    await asyncio.gather(*(worker() for _ in range(min(concurrency, n) or 1)))
    return [x for x in out if x is not None]


async def get_metrics(session: aiohttp.ClientSession, url: str) -> str | None:
    try:
        async with session.get(url + "/metrics") as resp:
            return await resp.text() if resp.status == 200 else None
    except (aiohttp.ClientError, OSError):
        return None


_SAMPLE = re.compile(r'^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})?\s+(?P<value>\S+)')


def parse_histogram(text: str | None, name: str) -> dict[str, Any] | None:
    """``{buckets: {le: cumulative count}, sum, count}`` of an unlabelled histogram."""
    if not text:
        return None
    buckets: dict[str, float] = {}
    total = count = None
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if m is None:
            continue
        metric, labels, value = m["name"], m["labels"] or "", float(m["value"])
        if metric == f"{name}_bucket":
            le = re.search(r'le="([^"]+)"', labels)
            if le:
                buckets[le[1]] = buckets.get(le[1], 0.0) + value
        elif metric == f"{name}_sum":
            total = (total or 0.0) + value
        elif metric == f"{name}_count":
            count = (count or 0.0) + value
    if count is None:
        return None
    return {"buckets": buckets, "sum": total or 0.0, "count": count}


def histogram_delta(before: dict[str, Any] | None,
                    after: dict[str, Any] | None) -> dict[str, Any] | None:
    if after is None:
        return None
    b = before or {"buckets": {}, "sum": 0.0, "count": 0.0}
    buckets = {le: v - b["buckets"].get(le, 0.0) for le, v in after["buckets"].items()}
    count = after["count"] - b["count"]
    total = after["sum"] - b["sum"]
    out: dict[str, Any] = {"count": int(count), "mean_ms": round(total / count * 1000, 3)
                           if count else None, "buckets": {le: int(v) for le, v in buckets.items()}}
    for q in (50, 90, 99):
        out[f"p{q}_ms_est"] = _bucket_quantile(buckets, count, q / 100)
    return out


def _bucket_quantile(buckets: dict[str, float], count: float, q: float) -> float | None:
    """Prometheus ``histogram_quantile`` (linear inside the bucket), in ms."""
    if not count:
        return None
    bounds = sorted(((math.inf if le == "+Inf" else float(le)), v) for le, v in buckets.items())
    rank = q * count
    prev_bound, prev_count = 0.0, 0.0
    for bound, cum in bounds:
        if cum >= rank:
            if math.isinf(bound):
                return round(prev_bound * 1000, 3)
            span = cum - prev_count
            frac = (rank - prev_count) / span if span else 1.0
            return round((prev_bound + (bound - prev_bound) * frac) * 1000, 3)
        prev_bound, prev_count = bound, cum
    return None


# -- sockets ---------------------------------------------------------------------------


async def open_many(session: aiohttp.ClientSession, opts: Sequence[Options],
                    concurrency: int) -> tuple[list[EioSocket], dict[str, int]]:
    """Open one socket per ``opts`` entry (in order where they succeed), C at a time."""
    out: list[EioSocket | None] = [None] * len(opts)
    errors: Counter[str] = Counter()
    todo = iter(range(len(opts)))

    async def worker() -> None:
        for i in todo:
            try:
                out[i] = await connect(session, opts[i])
            except (EioError, OSError, aiohttp.ClientError) as exc:
                errors[type(exc).__name__ + ":" + str(exc)[:60]] += 1

    await asyncio.gather(*(worker() for _ in range(min(concurrency, len(opts)) or 1)))
    return [s for s in out if s is not None], dict(errors)


async def close_all(socks: Sequence[EioSocket]) -> None:
    it = iter(socks)

    async def worker() -> None:
        for s in it:
            await s.close()

    await asyncio.gather(*(worker() for _ in range(64)))


def filler_options(url: str, tokens: Sequence[str], n: int) -> list[Options]:
    return [Options(base_url=url, token=tokens[i % len(tokens)], record_events=False)
            for i in range(n)]


async def wait_connections(session: aiohttp.ClientSession, url: str, token: str, want: int,
                           timeout: float) -> int | None:
    """Poll ``/admin/connections`` (cluster-wide) until it shows ``want`` sockets.

    None when the route does not answer 200 (e.g. presence not wired on this tree).
    """
    deadline = time.monotonic() + timeout
    total = -1
    while time.monotonic() < deadline:
        headers = {"Authorization": f"Bearer {token}"}
        async with session.get(url + "/admin/connections?limit=1", headers=headers) as resp:
            if resp.status != 200:
                return None
            data = await resp.json(content_type=None)
        total = int(data.get("total", -1))
        if total == want:
            return total
        await asyncio.sleep(0.2)
    return total


# -- the raw Redis floor ---------------------------------------------------------------


async def redis_floor(url: str, rounds: int, warmup: int, size: int,
                      gap: tuple[float, float] | None = None,
                      rng: random.Random | None = None) -> dict[str, Any]:
    """Sequential PUBLISH → receive on a second connection, the way Latch's feed listens.

    With ``gap``, each round trip follows a pause (uniform in [min, max] seconds).
    """
    pub = Redis.from_url(url)
    sub = Redis.from_url(url)
    pubsub = sub.pubsub(ignore_subscribe_messages=True)
    channel = f"bench:floor:{os.getpid()}"
    await pubsub.subscribe(channel)
    loop = asyncio.get_running_loop()
    waiter: list[asyncio.Future[float]] = []

    async def listen() -> None:
        while True:
            msg = await pubsub.get_message(timeout=1.0)
            if msg is not None and waiter and not waiter[0].done():
                waiter[0].set_result(time.monotonic())

    task = loop.create_task(listen())
    body = json.dumps({"v": 1, "type": "revoke", "op": "0" * 16, "origin": "node-a",
                       "scope": "session", "code": "session_revoked"})
    payload = (body + " " * max(0, size - len(body))).encode()
    round_trips: list[float] = []
    publish_rtts: list[float] = []
    lost = 0
    try:
        for i in range(warmup + rounds):
            if gap is not None:
                await asyncio.sleep((rng or random).uniform(*gap))
            fut: asyncio.Future[float] = loop.create_future()
            waiter[:] = [fut]
            t0 = time.monotonic()
            await pub.publish(channel, payload)
            t_pub = time.monotonic()
            try:
                t1 = await asyncio.wait_for(fut, 2.0)
            except TimeoutError:
                lost += 1
                continue
            if i >= warmup:
                round_trips.append(t1 - t0)
                publish_rtts.append(t_pub - t0)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await pubsub.aclose()
        await sub.aclose()
        await pub.aclose()
    return {"bytes": len(payload), "lost": lost, "publish_to_receive": dist_ms(round_trips),
            "publish_command_rtt": dist_ms(publish_rtts)}


async def redis_floor_on_core(cfg: Config, url: str, cpu: int | None) -> dict[str, Any] | None:
    """The same floor, measured by a child process pinned to ``cpu`` (the server core)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--floor-only", url,
           "--floor-rounds", str(cfg.floor_rounds)]
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=child_setup(cpu))
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    if proc.returncode != 0:
        log(f"floor subprocess failed: {err.decode(errors='replace')[-500:]}")
        return None
    return json.loads(out)


async def http_floor(http: aiohttp.ClientSession, url: str, n: int,
                     gap: tuple[float, float] | None = None,
                     rng: random.Random | None = None) -> dict[str, Any]:
    """Sequential ``GET /healthz`` on one keep-alive connection: HTTP with no work behind it.

    With ``gap``, each request follows a pause (uniform in [min, max] seconds).
    """
    lat: list[float] = []
    for i in range(n + 20):
        if gap is not None:
            await asyncio.sleep((rng or random).uniform(*gap))
        t0 = time.monotonic()
        async with http.get(url + "/healthz") as resp:
            await resp.read()
        if i >= 20:
            lat.append(time.monotonic() - t0)
    return dist_ms(lat)


def sqlite_commit_floor(directory: Path, n: int) -> dict[str, Any]:
    """Small write transactions in a WAL file next to Latch's: FULL vs NORMAL synchronous.

    Each transaction is ``BEGIN IMMEDIATE``, one UPDATE and one INSERT, ``COMMIT``:
    the shape of one session kill's durable write, without the Python around it.
    """
    import sqlite3

    out: dict[str, Any] = {}
    for mode in ("FULL", "NORMAL"):
        path = directory / f"floor-{mode.lower()}.db"
        conn = sqlite3.connect(path, isolation_level=None)
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(f"PRAGMA synchronous = {mode}")
            conn.execute("CREATE TABLE s (id TEXT PRIMARY KEY, revoked_at REAL)")
            conn.execute("CREATE TABLE r (position INTEGER PRIMARY KEY AUTOINCREMENT, sid TEXT)")
            conn.executemany("INSERT INTO s VALUES (?, NULL)", [(f"s{i}",) for i in range(n)])
            commit: list[float] = []
            whole: list[float] = []
            for i in range(n):
                t0 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                conn.execute("UPDATE s SET revoked_at = ? WHERE id = ?", (time.time(), f"s{i}"))
                conn.execute("INSERT INTO r (sid) VALUES (?)", (f"s{i}",))
                t1 = time.perf_counter()
                conn.execute("COMMIT")
                t2 = time.perf_counter()
                commit.append(t2 - t1)
                whole.append(t2 - t0)
        finally:
            conn.close()
        out[mode] = {"commit": dist_ms(commit), "transaction": dist_ms(whole)}
    return out


# -- kills -----------------------------------------------------------------------------


@dataclass
class KillSample:
    session_id: str
    t0_wall: float  # epoch seconds, just before the request
    rest_s: float
    gone_s: float | None  # 41 or close, first
    disconnect_s: float | None  # the 41 packet
    closed_s: float | None
    ended_s: float | None  # session_ended
    status: int
    node_b_confirmed: bool | None
    node_b_ended: int | None


async def kill_sequence(http: aiohttp.ClientSession, kill_url: Callable[[str], str],
                        token: str | None, victims: Sequence[tuple[str, EioSocket]],
                        gap: tuple[float, float], remote_node: str | None, rng: random.Random,
                        label: str) -> list[KillSample]:
    """Kill each victim's session, one at a time, and time its socket's end.

    The next kill starts ``gap`` (uniform in [min, max]) seconds after the previous
    one's REST answer and socket end were both seen.
    """
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    samples: list[KillSample] = []
    offset = time.time() - time.monotonic()
    for i, (session_id, sock) in enumerate(victims):
        if gap[1] > 0:
            await asyncio.sleep(rng.uniform(*gap))
        url = kill_url(session_id)
        t0 = time.monotonic()
        async with http.post(url, json={"reason": "bench"}, headers=headers) as resp:
            body = await resp.json(content_type=None)
            status = resp.status
        t_rest = time.monotonic()
        await wait_gone([sock], time.monotonic() + 5.0)
        node = None
        if remote_node is not None and isinstance(body, dict):
            nodes = body.get("sockets", {}).get("nodes", [])
            node = next((n for n in nodes if n.get("node") == remote_node), None)

        def rel(ts: float | None, t0: float = t0) -> float | None:
            return None if ts is None else ts - t0

        samples.append(KillSample(
            session_id=session_id, t0_wall=t0 + offset, rest_s=t_rest - t0, gone_s=rel(sock.gone_at),
            disconnect_s=rel(sock.disconnect_at), closed_s=rel(sock.closed_at),
            ended_s=rel(sock.ended_at), status=status,
            node_b_confirmed=None if node is None else bool(node.get("confirmed")),
            node_b_ended=None if node is None else int(node.get("ended", 0))))
        if (i + 1) % 50 == 0:
            log(f"  {label}: {i + 1}/{len(victims)} kills")
    return samples


def _sample_ms(s: KillSample) -> dict[str, Any]:
    """A sample for the JSON: durations in ms, ``t0_wall`` in epoch seconds."""
    return {k: (v if k == "t0_wall" else round(v * 1000, 3) if isinstance(v, float) else v)
            for k, v in asdict(s).items()}


def summarize_kills(samples: Sequence[KillSample], remote: bool) -> dict[str, Any]:
    gone = [s.gone_s for s in samples if s.gone_s is not None]
    out: dict[str, Any] = {
        "kills": len(samples),
        "not_gone_within_5s": sum(1 for s in samples if s.gone_s is None),
        "http_errors": sum(1 for s in samples if s.status != 200),
        "kill_to_disconnect": dist_ms(gone),
        "kill_to_41": dist_ms([s.disconnect_s for s in samples if s.disconnect_s is not None]),
        "kill_to_session_ended": dist_ms([s.ended_s for s in samples if s.ended_s is not None]),
        "session_ended_received": sum(1 for s in samples if s.ended_s is not None),
        "rest_response": dist_ms([s.rest_s for s in samples]),
        "disconnect_before_rest_answer": sum(
            1 for s in samples if s.gone_s is not None and s.gone_s <= s.rest_s),
    }
    if remote:
        out["node_b_confirmed"] = sum(1 for s in samples if s.node_b_confirmed)
        out["node_b_ended_1"] = sum(1 for s in samples if s.node_b_ended == 1)
    return out


# -- kill everyone ---------------------------------------------------------------------


def mass_summary(socks_by_node: dict[str, list[EioSocket]], t0: float,
                 marks: dict[str, float]) -> dict[str, Any]:
    """Per-socket end times relative to ``t0`` (monotonic), overall and per node."""
    out: dict[str, Any] = {"nodes": {}}
    every: list[float] = []
    ended = 0
    for node, socks in socks_by_node.items():
        gone = [s.gone_at - t0 for s in socks if s.gone_at is not None]
        every.extend(gone)
        for s in socks:
            if s.ended_at is not None:
                ended += 1
        out["nodes"][node] = {"sockets": len(socks), "gone": len(gone),
                              "first_s": round(min(gone), 4) if gone else None,
                              "p50_s": round(percentile(gone, 50) or 0, 4) if gone else None,
                              "last_s": round(max(gone), 4) if gone else None}
    total = sum(len(v) for v in socks_by_node.values())
    out.update(
        sockets=total, gone=len(every), not_gone=total - len(every), session_ended=ended,
        first_s=round(min(every), 4) if every else None,
        p50_s=round(percentile(every, 50) or 0, 4) if every else None,
        p99_s=round(percentile(every, 99) or 0, 4) if every else None,
        last_s=round(max(every), 4) if every else None,
        spread_s=round(max(every) - min(every), 4) if every else None,
    )
    for name, mark in marks.items():
        out[f"last_from_{name}_s"] = round(max(every) - (mark - t0), 4) if every else None
        out[f"{name}_s"] = round(mark - t0, 4)
    return out


def rounds_summary(rounds: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Median and worst over the CLI kill-everyone rounds."""
    out: dict[str, Any] = {"n": len(rounds)}
    for key in ("last_from_revoke_start_s", "first_from_revoke_start_s", "last_s", "spread_s",
                "cli_startup_overhead_s", "cli_revoke_call_s"):
        vals = [r[key] for r in rounds if isinstance(r.get(key), int | float)]
        if vals:
            out[f"median_{key}"] = round(statistics.median(vals), 4)
            out[f"max_{key}"] = round(max(vals), 4)
    out["all_gone"] = all(r.get("gone") == r.get("sockets") for r in rounds)
    out["confirmed_rounds"] = sum(1 for r in rounds if "unconfirmed" not in
                                  str(r.get("cli", {}).get("stdout", "unconfirmed")))
    return out


_CLI_WRAPPER = r"""
import sys, time
t_start = time.time()
import app.revocation as rv
from app.cli import main
t_imported = time.time()
_orig = rv.RevocationService.revoke_all
async def _timed(self, **kw):
    print(f"BENCH revoke_start {time.time():.6f}", file=sys.stderr, flush=True)
    try:
        return await _orig(self, **kw)
    finally:
        print(f"BENCH revoke_end {time.time():.6f}", file=sys.stderr, flush=True)
rv.RevocationService.revoke_all = _timed
print(f"BENCH start {t_start:.6f}", file=sys.stderr, flush=True)
print(f"BENCH imported {t_imported:.6f}", file=sys.stderr, flush=True)
rc = main(["sessions", "revoke", "--all", "--reason", "bench: kill everyone"])
print(f"BENCH exit {time.time():.6f}", file=sys.stderr, flush=True)
sys.exit(rc)
"""


async def cli_kill_all(cfg: Config, env: dict[str, str]) -> tuple[float, float, dict[str, Any]]:
    """Exec ``latch sessions revoke --all``; return (exec monotonic, wall offset, details).

    The CLI runs inside a wrapper that stamps (wall clock) its interpreter start,
    its imports, and the start and end of ``RevocationService.revoke_all``: the
    same code path as ``python -m app.cli sessions revoke --all``.
    """
    offset = time.time() - time.monotonic()
    t_exec = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _CLI_WRAPPER, cwd=PROJECT_ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        preexec_fn=child_setup(cfg.cli_cpu))
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    t_exit = time.monotonic()
    marks: dict[str, float] = {}
    other: list[str] = []
    for line in err.decode(errors="replace").splitlines():
        if line.startswith("BENCH "):
            _, name, value = line.split()
            marks[name] = float(value) - offset  # → this process's monotonic clock
        else:
            other.append(line)
    details = {"returncode": proc.returncode, "stdout": out.decode(errors="replace").strip(),
               "stderr_tail": other[-10:], "exit_observed": t_exit, "marks": marks}
    return t_exec, offset, details


# -- the run ---------------------------------------------------------------------------


def machine_info(workdir: Path) -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    fs = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        fs = subprocess.run(["df", "-T", str(workdir)], capture_output=True, text=True,
                            timeout=5).stdout.strip().splitlines()[-1]
    versions = {}
    for pkg in ("aiohttp", "python-socketio", "python-engineio", "redis", "aiosqlite", "latch"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[pkg] = metadata.version(pkg)
    redis_version = ""
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        redis_version = subprocess.run(["redis-server", "--version"], capture_output=True,
                                       text=True, timeout=5).stdout.strip()
    return {"cpu": cpu, "cpus": os.cpu_count(), "kernel": platform.release(),
            "python": platform.python_version(), "packages": versions, "redis": redis_version,
            "db_filesystem": fs, "nofile": resource.getrlimit(resource.RLIMIT_NOFILE)[0]}


class Run:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.rng = random.Random(cfg.seed)
        parent = cfg.workdir_parent or None
        self.workdir = Path(tempfile.mkdtemp(prefix="latch-revbench-", dir=parent))
        self.procs: list[Proc] = []
        self.doc: dict[str, Any] = {}

    def own_cpu(self) -> float:
        """CPU seconds of this process and every child it started that is still running."""
        total = proc_cpu_seconds(os.getpid())
        for p in self.procs:
            if p.proc is not None and p.proc.poll() is None:
                total += proc_cpu_seconds(p.pid)
        return total

    def foreign_load(self) -> ForeignLoad:
        return ForeignLoad(self.own_cpu)

    async def wait_quiet(self, what: str) -> float | None:
        """Wait (at most ``--wait-quiet`` s) until other processes use < 10 % of the machine.

        Returns the last one-second share seen (None when not waiting at all).
        """
        budget = self.cfg.wait_quiet
        if budget <= 0:
            return None
        deadline = time.monotonic() + budget
        share = 1.0
        warned = False
        while time.monotonic() < deadline:
            probe = self.foreign_load()
            await asyncio.sleep(1.0)
            share = probe.share()
            if share < 0.10:
                return share
            if not warned:
                log(f"  waiting for other processes to quiet down before {what} "
                    f"({share:.0%} of the machine)")
                warned = True
        log(f"  still {share:.0%} foreign load after {budget:.0f} s; measuring {what} anyway")
        return share

    async def stop_all(self) -> None:
        for p in reversed(self.procs):
            await p.stop()
        self.procs.clear()

    async def run(self) -> dict[str, Any]:
        cfg = self.cfg
        doc = self.doc
        doc["config"] = {k: v for k, v in asdict(cfg).items()}
        doc["machine"] = machine_info(self.workdir)
        doc["pinning"] = {"servers (both nodes, naive nodes)": cfg.server_cpu,
                          "redis-server": cfg.redis_cpu, "load generator": cfg.client_cpu,
                          "CLI": cfg.cli_cpu}
        try:
            redis_proc, redis_url = await start_redis(cfg, self.workdir)
            self.procs.append(redis_proc)
            log(f"redis-server on {redis_url} (pid {redis_proc.pid})")
            async with make_session() as ws_http, aiohttp.ClientSession() as http:
                await self.latch_phase(redis_url, ws_http, http)
                if not cfg.skip_bare_floor:
                    await self.bare_kill_all_floor(ws_http)
                if not cfg.skip_naive:
                    await self.naive_phase(redis_url, ws_http, http)
        finally:
            await self.stop_all()
            if not cfg.keep_workdir:
                shutil.rmtree(self.workdir, ignore_errors=True)
            else:
                doc["workdir"] = str(self.workdir)
        return doc

    # -- Latch -----------------------------------------------------------------------

    async def latch_phase(self, redis_url: str, ws_http: aiohttp.ClientSession,
                          http: aiohttp.ClientSession) -> None:
        cfg = self.cfg
        doc = self.doc
        data = self.workdir / "latch-data"
        data.mkdir()
        node_a = await start_latch(cfg, self.workdir, data, redis_url, "node-a", http)
        self.procs.append(node_a)
        node_b = await start_latch(cfg, self.workdir, data, redis_url, "node-b", http)
        self.procs.append(node_b)
        nodes = {"node-a": node_a, "node-b": node_b}
        a, b = node_a.url or "", node_b.url or ""
        log(f"node-a {a} (pid {node_a.pid}), node-b {b} (pid {node_b.pid})")

        admin = await login(http, a, "admin", ADMIN_PASSWORD, "bench-admin")
        created = await rest(http, "POST", a + "/admin/users", token=admin.token, expect=(201,),
                             body={"username": BENCH_USER, "password": BENCH_PASSWORD,
                                   "role": "user"})
        user_id = str(created["user"]["id"])

        t = time.monotonic()
        victims = await login_many(http, [a, b], cfg.victims, cfg.login_concurrency, "victim")
        fillers = await login_many(http, [a, b], cfg.fillers, cfg.login_concurrency, "filler")
        login_s = time.monotonic() - t
        log(f"{len(victims)} victim + {len(fillers)} filler sessions in {login_s:.1f} s")

        v_socks, err = await open_many(ws_http, [Options(base_url=b, token=v.token) for v in victims],
                                       cfg.connect_concurrency)
        if len(v_socks) != len(victims):
            raise RuntimeError(f"victim sockets failed: {err}")
        victim_socks = [(v.session_id, s) for v, s in zip(victims, v_socks, strict=True)]
        socks = {"node-a": [], "node-b": list(v_socks)}
        await self.top_up(ws_http, nodes, socks, fillers)
        total = sum(len(v) for v in socks.values())
        seen = await wait_connections(http, a, admin.token, total, 30.0)
        log(f"{total} sockets open (node-a {len(socks['node-a'])}, node-b {len(socks['node-b'])}, "
            f"{len(v_socks)} of them victims); /admin/connections total = {seen}")
        doc["latch_setup"] = {"logins": len(victims) + len(fillers) + 1, "login_s": round(login_s, 2),
                              "sockets": total, "node_a": len(socks["node-a"]),
                              "node_b": len(socks["node-b"]),
                              "victim_sockets_on_node_b": len(v_socks),
                              "filler_sessions": len(fillers),
                              "admin_connections_total": seen}
        await asyncio.sleep(cfg.settle)
        await self.floors(redis_url, a)

        # Single kills: warm-up (connection, code paths), then idle gaps, then back to back.
        w, k, bb = cfg.warmup_kills, cfg.kills, cfg.burst_kills
        phases = [("latch_kills", victim_socks[w:w + k], (cfg.gap_min, cfg.gap_max)),
                  ("latch_kills_back_to_back", victim_socks[w + k:w + k + bb], (0.0, 0.0))]
        async with aiohttp.ClientSession() as admin_http:  # keep-alive, one connection

            def kill_url(sid: str) -> str:
                return f"{a}/admin/sessions/{sid}/revoke"

            await kill_sequence(admin_http, kill_url, admin.token, victim_socks[:w],
                                (cfg.gap_min, cfg.gap_max), "node-b", self.rng, "latch warm-up")
            for key, batch, gap in phases:
                if not batch:
                    continue
                await asyncio.sleep(cfg.settle)
                await self.wait_quiet(key)
                before = {n: await get_metrics(http, p.url or "") for n, p in nodes.items()}
                cpu0 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
                sys0 = system_cpu()
                foreign = self.foreign_load()
                t_kills = time.monotonic()
                log(f"{len(batch)} sequential kills, pause {gap[0] * 1000:.0f}-{gap[1] * 1000:.0f} "
                    "ms: REST on node-a, sockets on node-b")
                samples = await kill_sequence(admin_http, kill_url, admin.token, batch, gap,
                                              "node-b", self.rng, key)
                kills_wall = time.monotonic() - t_kills
                cpu1 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
                sys1 = system_cpu()
                after = {n: await get_metrics(http, p.url or "") for n, p in nodes.items()}
                kills = summarize_kills(samples, remote=True)
                kills["pause_between_kills_s"] = list(gap)
                kills["server_cpu_ms_per_kill"] = {
                    n: round((cpu1[n] - cpu0[n]) * 1000 / max(1, len(samples)), 3) for n in cpu0}
                kills["machine_cpu"] = cpu_delta(sys0, sys1)
                kills["foreign_cpu_share"] = foreign.share()
                kills["wall_s"] = round(kills_wall, 2)
                kills["service_histograms"] = {
                    name: {n: histogram_delta(parse_histogram(before[n], name),
                                              parse_histogram(after[n], name)) for n in nodes}
                    for name in ("latch_revocation_latency_seconds",
                                 "latch_revocation_feed_lag_seconds")}
                kills["samples_ms"] = [_sample_ms(s) for s in samples]
                doc[key] = kills
                d = kills["kill_to_disconnect"]
                log(f"  kill→disconnect p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms; REST p50 "
                    f"{kills['rest_response']['p50_ms']} ms")

        # Kill everyone: once over REST (revoke the user holding every socket), then the CLI.
        env_cli = latch_env(cfg, data, redis_url, "cli")
        if not cfg.skip_rest_mass:
            await asyncio.sleep(cfg.settle)
            await self.top_up(ws_http, nodes, socks, fillers)
            await wait_connections(http, a, admin.token, cfg.sockets, 30.0)
            await asyncio.sleep(cfg.settle)
            await self.wait_quiet("kill everyone (REST)")
            live = sum(1 for v in socks.values() for s in v if s.is_open)
            log(f"kill everyone via REST: POST /admin/users/{user_id}/revoke ({live} sockets)")
            cpu0 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
            foreign = self.foreign_load()
            t0 = time.monotonic()
            result = await rest(http, "POST", f"{a}/admin/users/{user_id}/revoke",
                                token=admin.token, body={"reason": "bench: kill everyone"})
            t_rest = time.monotonic()
            await wait_gone([s for v in socks.values() for s in v], t0 + cfg.mass_deadline)
            cpu1 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
            mass = mass_summary(socks, t0, {"rest_answer": t_rest})
            mass["from"] = "just before POST /admin/users/{id}/revoke to node-a"
            mass["kill_result"] = result
            mass["server_cpu_s"] = {n: round(cpu1[n] - cpu0[n], 3) for n in cpu0}
            mass["foreign_cpu_share"] = foreign.share()
            doc["latch_kill_all_rest"] = mass
            log(f"  last socket gone {mass['last_s']} s after the request "
                f"({mass['gone']}/{mass['sockets']}); REST answer {mass['rest_answer_s']} s")

        rounds: list[dict[str, Any]] = []
        for r in range(cfg.cli_rounds):
            await asyncio.sleep(cfg.settle)
            admin = await login(http, a, "admin", ADMIN_PASSWORD, "bench-admin")
            await wait_connections(http, a, admin.token, sum(
                1 for v in socks.values() for s in v if s.is_open), 30.0)
            fillers = await login_many(http, [a, b], cfg.fillers, cfg.login_concurrency,
                                       f"filler-r{r}")
            await self.top_up(ws_http, nodes, socks, fillers)
            seen = await wait_connections(http, a, admin.token, cfg.sockets, 30.0)
            await asyncio.sleep(cfg.settle)
            await self.wait_quiet(f"kill everyone (CLI round {r + 1})")
            live = sum(1 for v in socks.values() for s in v if s.is_open)
            log(f"kill everyone via the CLI, round {r + 1}/{cfg.cli_rounds}: latch sessions revoke"
                f" --all ({live} sockets; /admin/connections total = {seen})")
            cpu0 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
            foreign = self.foreign_load()
            children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            waiter = asyncio.ensure_future(wait_gone([s for v in socks.values() for s in v],
                                                     time.monotonic() + 60.0))
            t_exec, _offset, details = await cli_kill_all(cfg, env_cli)
            await asyncio.wait_for(waiter, 70.0)
            cpu1 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
            marks = {f"cli_{k}": v for k, v in details.pop("marks").items()}
            marks["cli_exit_observed"] = details.pop("exit_observed")
            mass = mass_summary(socks, t_exec, marks)
            mass["from"] = "just before exec of the CLI (python -c wrapper around app.cli.main)"
            mass["cli"] = details
            mass["server_cpu_s"] = {n: round(cpu1[n] - cpu0[n], 3) for n in cpu0}
            children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            cli_cpu = (children1.ru_utime + children1.ru_stime
                       - children0.ru_utime - children0.ru_stime)
            mass["cli_cpu_s"] = round(cli_cpu, 3)
            # the CLI is a reaped child: its CPU shows in RUSAGE_CHILDREN, not in our procs
            wall = max(1e-6, time.monotonic() - t_exec)
            mass["foreign_cpu_share"] = round(max(
                0.0, foreign.share() - cli_cpu / (wall * (os.cpu_count() or 1))), 3)
            if "cli_revoke_start" in marks and mass["last_s"] is not None:
                rs = marks["cli_revoke_start"] - t_exec
                mass["cli_startup_overhead_s"] = round(rs, 4)
                mass["last_from_revoke_start_s"] = round(mass["last_s"] - rs, 4)
                mass["first_from_revoke_start_s"] = round(mass["first_s"] - rs, 4)
                if "cli_revoke_end" in marks:
                    mass["cli_revoke_call_s"] = round(
                        marks["cli_revoke_end"] - marks["cli_revoke_start"], 4)
            rounds.append(mass)
            log(f"  last socket gone {mass['last_s']} s after exec, "
                f"{mass.get('last_from_revoke_start_s')} s after the revoke started "
                f"({mass['gone']}/{mass['sockets']}); CLI said: {details['stdout']!r}")
        if rounds:
            doc["latch_kill_all_cli"] = {"rounds": rounds, **rounds_summary(rounds)}

        for p in (node_b, node_a):
            await p.stop()
            self.procs.remove(p)

    async def top_up(self, ws_http: aiohttp.ClientSession, nodes: dict[str, Proc],
                     socks: dict[str, list[EioSocket]], fillers: Sequence[Login]) -> None:
        """Drop ended sockets from ``socks``; open filler sockets until each node holds half."""
        cfg = self.cfg
        want = {"node-a": cfg.sockets // 2, "node-b": cfg.sockets - cfg.sockets // 2}
        for i, (name, proc) in enumerate(nodes.items()):
            live = [s for s in socks[name] if s.is_open]
            missing = want[name] - len(live)
            if missing < 0:
                raise SystemExit(f"--sockets {cfg.sockets} is too small for the victims on {name}")
            tokens = [f.token for f in fillers[i::2]] or [fillers[0].token]
            new, err = await open_many(ws_http, filler_options(proc.url or "", tokens, missing),
                                       cfg.connect_concurrency)
            if err:
                log(f"socket errors on {name}: {err}")
            socks[name] = live + new
        freeze_heap()

    async def floors(self, redis_url: str, a: str) -> None:
        """Redis, HTTP and SQLite floors, measured with the sockets open, before the kills."""
        cfg = self.cfg
        doc = self.doc
        await self.wait_quiet("the floors")
        foreign = self.foreign_load()
        idle = (cfg.floor_idle_min, cfg.floor_idle_max)
        log("raw Redis floor: load-generator core, back to back and after idle pauses")
        doc["redis_floor"] = await redis_floor(redis_url, cfg.floor_rounds, cfg.floor_warmup,
                                               cfg.floor_bytes)
        doc["redis_floor_idle"] = await redis_floor(redis_url, cfg.idle_floor_rounds, 10,
                                                    cfg.floor_bytes, idle, self.rng)
        log("raw Redis floor: server core")
        doc["redis_floor_server_core"] = await redis_floor_on_core(cfg, redis_url, cfg.server_cpu)
        log("HTTP floor: GET /healthz on node-a, back to back and after idle pauses")
        async with aiohttp.ClientSession() as floor_http:
            doc["http_floor_node_a"] = await http_floor(floor_http, a, cfg.http_floor_rounds)
            doc["http_floor_node_a_idle"] = await http_floor(floor_http, a, cfg.idle_floor_rounds,
                                                             idle, self.rng)
        doc["floor_idle_pause_s"] = list(idle)
        log("SQLite commit floor (FULL vs NORMAL) next to the Latch database")
        doc["sqlite_commit_floor"] = await asyncio.to_thread(
            sqlite_commit_floor, self.workdir, cfg.sqlite_floor_rounds)
        doc["floors_foreign_cpu_share"] = foreign.share()

    # -- the bare reference for "kill everyone" -----------------------------------------

    async def bare_kill_all_floor(self, ws_http: aiohttp.ClientSession) -> None:
        """Two bare python-socketio processes end all their sockets at one instant.

        ``bench/bare_server.py --indexed-rooms`` (its ``bench_end_all`` event: emit
        ``session_ended`` + disconnect, per socket): no revocation, no Redis, no
        database. What is left is the floor of this machine, pinning and client for
        ending ``--sockets`` sockets on two server processes sharing one core.
        """
        cfg = self.cfg
        nodes: list[Proc] = []
        for name in ("bare-a", "bare-b"):
            port = free_port()
            proc = Proc(name, [sys.executable, str(BENCH_DIR / "bare_server.py"), "--port",
                               str(port), "--indexed-rooms", "--gc-freeze", "--no-compression"],
                        env=dict(os.environ), workdir=self.workdir, cpu=cfg.server_cpu,
                        url=f"http://127.0.0.1:{port}")
            proc.spawn()
            self.procs.append(proc)
            await proc.wait_ready(proc.log_probe("READY"))
            nodes.append(proc)
        half = cfg.sockets // 2
        by_node: dict[str, list[EioSocket]] = {}
        controls: list[EioSocket] = []
        for proc, n in zip(nodes, (half, cfg.sockets - half), strict=True):
            opts = [Options(base_url=proc.url or "", record_events=False)] * n
            socks, err = await open_many(ws_http, opts, cfg.connect_concurrency)
            if err:
                log(f"{proc.name}: socket errors {err}")
            by_node[proc.name] = socks
            controls.append(await connect(ws_http, Options(base_url=proc.url or "")))
        freeze_heap()
        await asyncio.sleep(cfg.settle)
        await self.wait_quiet("the bare reference")
        offset = time.time() - time.monotonic()
        at_wall = time.time() + 1.0
        log(f"reference: 2 bare python-socketio nodes end {cfg.sockets} sockets at one instant")
        await asyncio.gather(*(c.call("bench_end_all", {"at": at_wall}, timeout=5.0)
                               for c in controls))
        at = at_wall - offset
        await wait_gone([s for v in by_node.values() for s in v], at + cfg.mass_deadline)
        floor = mass_summary(by_node, at, {})
        floor["from"] = "the agreed instant both bare servers start ending their sockets"
        self.doc["bare_kill_all_floor"] = floor
        log(f"  last socket gone {floor['last_s']} s after the instant "
            f"({floor['gone']}/{floor['sockets']})")
        for c in controls:
            await c.close()
        for proc in reversed(nodes):
            await proc.stop()
            self.procs.remove(proc)

    # -- naive -------------------------------------------------------------------------

    async def naive_phase(self, redis_url: str, ws_http: aiohttp.ClientSession,
                          http: aiohttp.ClientSession) -> None:
        cfg = self.cfg
        node_a = await start_naive(cfg, self.workdir, redis_url, "naive-a", http)
        self.procs.append(node_a)
        node_b = await start_naive(cfg, self.workdir, redis_url, "naive-b", http)
        self.procs.append(node_b)
        nodes = {"naive-a": node_a, "naive-b": node_b}
        a, b = node_a.url or "", node_b.url or ""
        w, k, bb = cfg.warmup_kills, cfg.naive_kills, cfg.naive_burst_kills
        n_victims = w + k + bb
        half_a = cfg.naive_sockets // 2
        half_b = cfg.naive_sockets - half_a - n_victims
        if half_b < 0:
            raise SystemExit("--naive-sockets is too small for the naive kills")
        victim_ids = [f"naive-victim-{i}" for i in range(n_victims)]
        v_socks, err = await open_many(ws_http, [Options(base_url=b, token=v) for v in victim_ids],
                                       cfg.connect_concurrency)
        if len(v_socks) != n_victims:
            raise RuntimeError(f"naive victim sockets failed: {err}")
        fill_a, _ = await open_many(ws_http, filler_options(
            a, [f"naive-filler-a{i}" for i in range(cfg.fillers // 2 or 1)], half_a),
            cfg.connect_concurrency)
        fill_b, _ = await open_many(ws_http, filler_options(
            b, [f"naive-filler-b{i}" for i in range(cfg.fillers // 2 or 1)], half_b),
            cfg.connect_concurrency)
        total = len(v_socks) + len(fill_a) + len(fill_b)
        freeze_heap()
        log(f"naive: {total} sockets (naive-a {len(fill_a)}, naive-b {len(fill_b) + len(v_socks)})")
        await asyncio.sleep(cfg.settle)
        victims = list(zip(victim_ids, v_socks, strict=True))
        phases = [("naive_kills", victims[w:w + k], (cfg.gap_min, cfg.gap_max)),
                  ("naive_kills_back_to_back", victims[w + k:], (0.0, 0.0))]
        async with aiohttp.ClientSession() as kill_http:

            def kill_url(sid: str) -> str:
                return f"{a}/kill/{sid}"

            await kill_sequence(kill_http, kill_url, None, victims[:w], (cfg.gap_min, cfg.gap_max),
                                None, self.rng, "naive warm-up")
            for key, batch, gap in phases:
                if not batch:
                    continue
                await asyncio.sleep(cfg.settle)
                await self.wait_quiet(key)
                cpu0 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
                foreign = self.foreign_load()
                log(f"naive: {len(batch)} sequential kills, pause {gap[0] * 1000:.0f}-"
                    f"{gap[1] * 1000:.0f} ms: REST on naive-a, sockets on naive-b")
                samples = await kill_sequence(kill_http, kill_url, None, batch, gap, None,
                                              self.rng, key)
                cpu1 = {n: proc_cpu_seconds(p.pid) for n, p in nodes.items()}
                kills = summarize_kills(samples, remote=False)
                kills["sockets"] = total
                kills["foreign_cpu_share"] = foreign.share()
                kills["pause_between_kills_s"] = list(gap)
                kills["server_cpu_ms_per_kill"] = {
                    n: round((cpu1[n] - cpu0[n]) * 1000 / max(1, len(samples)), 3) for n in cpu0}
                kills["samples_ms"] = [_sample_ms(s) for s in samples]
                self.doc[key] = kills
                d = kills["kill_to_disconnect"]
                log(f"  naive kill→disconnect p50 {d['p50_ms']} ms, p99 {d['p99_ms']} ms")
        await close_all([*fill_a, *fill_b])
        for p in (node_b, node_a):
            await p.stop()
            self.procs.remove(p)


# -- report ----------------------------------------------------------------------------


def _get(d: Any, *path: str) -> Any:
    for key in path:
        if not isinstance(d, dict):
            return None
        d = d.get(key)
    return d


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
    return str(v)


def _pair(d: dict[str, Any] | None, a: str = "p50_ms", b: str = "p99_ms") -> str:
    d = d or {}
    return f"{_fmt(d.get(a))} / {_fmt(d.get(b))}"


def summary(doc: dict[str, Any]) -> list[tuple[str, Any, str, bool | None]]:
    """(figure, value, target or reference, target met)."""
    rows: list[tuple[str, Any, str, bool | None]] = []
    n_sock = _get(doc, "latch_setup", "sockets")
    k = doc.get("latch_kills") or {}
    if k:
        d = k.get("kill_to_disconnect") or {}
        gap = k.get("pause_between_kills_s") or [0, 0]
        rows.append((f"Latch kill→disconnect, {k.get('kills')} kills {gap[0] * 1000:.0f}-"
                     f"{gap[1] * 1000:.0f} ms apart, {n_sock} sockets: p50 ms",
                     d.get("p50_ms"), "≤ 4", _le(d.get("p50_ms"), TARGETS["kill_p50_ms"])))
        rows.append(("  p90 ms", d.get("p90_ms"), "", None))
        rows.append(("  p99 ms", d.get("p99_ms"), "≤ 10", _le(d.get("p99_ms"), TARGETS["kill_p99_ms"])))
        rows.append(("  max ms", d.get("max_ms"), "", None))
        rows.append(("  kill→session_ended p50 / p99 ms", _pair(k.get("kill_to_session_ended")),
                     "", None))
        rows.append(("  REST answer (waits for acks) p50 / p99 ms", _pair(k.get("rest_response")),
                     "", None))
        rows.append(("  confirmed by node-b", f"{k.get('node_b_confirmed')}/{k.get('kills')}",
                     "all", k.get("node_b_confirmed") == k.get("kills")))
        h = _get(k, "service_histograms", "latch_revocation_latency_seconds", "node-b")
        if h:
            rows.append(("  node-b latch_revocation_latency_seconds mean / p50~ / p99~ ms",
                         f"{_fmt(h.get('mean_ms'))} / {_fmt(h.get('p50_ms_est'))} / "
                         f"{_fmt(h.get('p99_ms_est'))}", "(buckets)", None))
    k = doc.get("latch_kills_back_to_back") or {}
    if k:
        rows.append((f"Latch kill→disconnect, {k.get('kills')} kills back to back: p50 / p99 ms",
                     _pair(k.get("kill_to_disconnect")), "", None))
        rows.append(("  REST answer p50 / p99 ms", _pair(k.get("rest_response")), "", None))
    rows.append(("Redis publish→receive p50 / p99 ms (load-gen core)",
                 _pair(_get(doc, "redis_floor", "publish_to_receive")), "issue: ~0.3 / ~1.5", None))
    if doc.get("redis_floor_server_core"):
        rows.append(("Redis publish→receive p50 / p99 ms (server core)",
                     _pair(_get(doc, "redis_floor_server_core", "publish_to_receive")), "", None))
    if doc.get("redis_floor_idle"):
        rows.append(("Redis publish→receive after idle pause p50 / p99 ms",
                     _pair(_get(doc, "redis_floor_idle", "publish_to_receive")), "", None))
    if doc.get("http_floor_node_a"):
        rows.append(("HTTP GET /healthz node-a, back to back p50 / p99 ms",
                     _pair(doc.get("http_floor_node_a")), "", None))
    if doc.get("http_floor_node_a_idle"):
        rows.append(("HTTP GET /healthz node-a, after idle pause p50 / p99 ms",
                     _pair(doc.get("http_floor_node_a_idle")), "", None))
    q = doc.get("sqlite_commit_floor")
    if q:
        rows.append(("SQLite WAL COMMIT, synchronous=FULL p50 / p99 ms",
                     _pair(_get(q, "FULL", "commit")), "", None))
        rows.append(("SQLite WAL COMMIT, synchronous=NORMAL p50 / p99 ms",
                     _pair(_get(q, "NORMAL", "commit")), "", None))
    m = doc.get("latch_kill_all_rest")
    if m:
        rows.append((f"Kill everyone, REST user revoke: last of {m['sockets']} gone s",
                     m.get("last_s"), "≤ 1", _le(m.get("last_s"), TARGETS["kill_all_s"])))
        rows.append(("  first / spread / REST answer s",
                     f"{_fmt(m.get('first_s'))} / {_fmt(m.get('spread_s'))} / "
                     f"{_fmt(m.get('rest_answer_s'))}", "", None))
        rows.append(("  all gone", f"{m.get('gone')}/{m.get('sockets')}", "all",
                     m.get("gone") == m.get("sockets")))
    m = doc.get("latch_kill_all_cli")
    if m:
        rounds = m.get("rounds") or []
        sockets = rounds[0]["sockets"] if rounds else None
        rows.append((f"Kill everyone, CLI --all ({m['n']} rounds): last of {sockets} gone after "
                     "revoke start, median / worst s",
                     f"{_fmt(m.get('median_last_from_revoke_start_s'))} / "
                     f"{_fmt(m.get('max_last_from_revoke_start_s'))}", "≤ 1",
                     _le(m.get("max_last_from_revoke_start_s"), TARGETS["kill_all_s"])))
        rows.append(("  first socket gone after revoke start, median s",
                     m.get("median_first_from_revoke_start_s"), "", None))
        rows.append(("  after CLI exec, median / worst s",
                     f"{_fmt(m.get('median_last_s'))} / {_fmt(m.get('max_last_s'))}", "", None))
        rows.append(("  CLI start-up (exec → revoke start), median s",
                     m.get("median_cli_startup_overhead_s"), "", None))
        rows.append(("  first→last spread, median s", m.get("median_spread_s"), "", None))
        rows.append(("  all gone, every round", m.get("all_gone"), "yes", m.get("all_gone")))
        rows.append(("  rounds the CLI reported confirmed", f"{m.get('confirmed_rounds')}/{m['n']}",
                     "", None))
    m = doc.get("bare_kill_all_floor")
    if m:
        rows.append((f"Reference: 2 bare python-socketio nodes end {m['sockets']} sockets, last s",
                     m.get("last_s"), "", None))
    n = doc.get("naive_kills")
    if n:
        gap = n.get("pause_between_kills_s") or [0, 0]
        rows.append((f"Naive kill→disconnect, {n.get('kills')} kills {gap[0] * 1000:.0f}-"
                     f"{gap[1] * 1000:.0f} ms apart, {n.get('sockets')} sockets: p50 / p99 ms",
                     _pair(n.get("kill_to_disconnect")), "issue: 4–6 / 10–17", None))
        rows.append(("  p90 / max ms", _pair(n.get("kill_to_disconnect"), "p90_ms", "max_ms"),
                     "", None))
        rows.append(("  REST answer p50 / p99 ms", _pair(n.get("rest_response")), "", None))
    n = doc.get("naive_kills_back_to_back")
    if n:
        rows.append((f"Naive kill→disconnect, {n.get('kills')} kills back to back: p50 / p99 ms",
                     _pair(n.get("kill_to_disconnect")), "", None))
    return rows


def foreign_warnings(doc: dict[str, Any], limit: float = 0.05) -> list[str]:
    out = []
    floors = doc.get("floors_foreign_cpu_share")
    if isinstance(floors, float) and floors > limit:
        out.append(f"floors: {floors:.0%} of the machine's CPU went to other processes")
    for key, value in doc.items():
        items = value.get("rounds", [value]) if isinstance(value, dict) else []
        for i, item in enumerate(items):
            share = item.get("foreign_cpu_share") if isinstance(item, dict) else None
            if isinstance(share, float) and share > limit:
                where = key if len(items) == 1 else f"{key} round {i + 1}"
                out.append(f"{where}: {share:.0%} of the machine's CPU went to other processes")
    return out


def _le(v: Any, t: float) -> bool | None:
    return None if not isinstance(v, int | float) else v <= t


def print_table(rows: list[tuple[str, Any, str, bool | None]]) -> None:
    width = max(len(r[0]) for r in rows)
    vw = max(len(_fmt(r[1])) for r in rows)
    print(f"\n{'figure':<{width}}  {'value':>{vw}}  target      ok")
    for name, value, target, ok in rows:
        mark = "" if ok is None else ("yes" if ok else "NO")
        print(f"{name:<{width}}  {_fmt(value):>{vw}}  {target:<10}  {mark}")


def write_results(doc: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"revocation-{time.strftime('%Y%m%dT%H%M%S')}.json"
    path.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    return path


# -- CLI -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> tuple[Config, argparse.Namespace]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    d = Config()
    p.add_argument("--sockets", type=int, default=d.sockets, help="idle Latch sockets, both nodes")
    p.add_argument("--kills", type=int, default=d.kills,
                   help="measured single-session kills, with pauses (--gap)")
    p.add_argument("--burst-kills", type=int, default=None,
                   help="measured kills back to back, after those (default: --kills; 0: none)")
    p.add_argument("--warmup-kills", type=int, default=d.warmup_kills)
    p.add_argument("--fillers", type=int, default=d.fillers, help="filler sessions per round")
    p.add_argument("--cli-rounds", type=int, default=d.cli_rounds,
                   help="kill-everyone rounds through the CLI (fresh sockets each)")
    p.add_argument("--naive-sockets", type=int, default=d.naive_sockets)
    p.add_argument("--naive-kills", type=int, default=None, help="default: --kills")
    p.add_argument("--floor-rounds", type=int, default=d.floor_rounds)
    p.add_argument("--gap", type=float, nargs=2, metavar=("MIN", "MAX"),
                   default=(d.gap_min, d.gap_max), help="pause before each paced kill, seconds")
    p.add_argument("--server-cpu", type=int, default=d.server_cpu)
    p.add_argument("--client-cpu", type=int, default=d.client_cpu)
    p.add_argument("--redis-cpu", type=int, default=d.redis_cpu)
    p.add_argument("--cli-cpu", type=int, default=d.cli_cpu)
    p.add_argument("--wait-quiet", type=float, default=d.wait_quiet, metavar="S",
                   help="before each measured phase, wait up to S seconds for other processes "
                        "to use < 10%% of the machine (0: do not wait)")
    p.add_argument("--no-pin", action="store_true", help="pin nothing")
    p.add_argument("--skip-naive", action="store_true")
    p.add_argument("--skip-bare-floor", action="store_true",
                   help="skip the bare python-socketio reference for kill everyone")
    p.add_argument("--skip-rest-mass", action="store_true",
                   help="skip the REST kill-everyone round")
    p.add_argument("--latch-cmd", default="", metavar="CMD",
                   help="command that replaces `python -m app.cli` for the nodes (a tracer, "
                        "py-spy record -- python -m app.cli, ...); `serve --port P` is appended")
    p.add_argument("--workdir", default=None, help="parent of the temp dir (SQLite file lives there)")
    p.add_argument("--keep-workdir", action="store_true", help="keep logs and the SQLite file")
    p.add_argument("--latch-env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra LATCH_* setting for both nodes and the CLI")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: 300 sockets, 30+30 kills, 300 naive sockets, 1 CLI round")
    p.add_argument("--no-write", action="store_true", help="do not write the JSON file")
    p.add_argument("--floor-only", metavar="REDIS_URL", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    burst = args.kills if args.burst_kills is None else args.burst_kills
    naive = args.kills if args.naive_kills is None else args.naive_kills
    cfg = Config(sockets=args.sockets, kills=args.kills, burst_kills=burst,
                 warmup_kills=args.warmup_kills, fillers=max(2, args.fillers),
                 cli_rounds=args.cli_rounds, naive_sockets=args.naive_sockets,
                 naive_kills=naive, naive_burst_kills=naive if burst else 0,
                 floor_rounds=args.floor_rounds, gap_min=args.gap[0], gap_max=args.gap[1],
                 server_cpu=args.server_cpu, client_cpu=args.client_cpu,
                 redis_cpu=args.redis_cpu, cli_cpu=args.cli_cpu, skip_naive=args.skip_naive,
                 skip_rest_mass=args.skip_rest_mass, skip_bare_floor=args.skip_bare_floor,
                 latch_cmd=shlex.split(args.latch_cmd), keep_workdir=args.keep_workdir,
                 workdir_parent=args.workdir, wait_quiet=args.wait_quiet)
    for item in args.latch_env:
        name, _, value = item.partition("=")
        if not name.startswith("LATCH_"):
            p.error(f"--latch-env {item!r}: expected LATCH_NAME=VALUE")
        cfg.latch_env[name] = value
    if args.quick:
        cfg.sockets, cfg.kills, cfg.burst_kills = 300, 30, 30 if burst else 0
        cfg.naive_sockets, cfg.naive_kills, cfg.naive_burst_kills = 300, 30, 30 if burst else 0
        cfg.floor_rounds, cfg.idle_floor_rounds, cfg.fillers = 500, 50, 4
        cfg.spare_victims, cfg.warmup_kills, cfg.cli_rounds = 3, 5, 1
    if args.no_pin:
        cfg.server_cpu = cfg.client_cpu = cfg.redis_cpu = cfg.cli_cpu = None
    return cfg, args


def main(argv: list[str] | None = None) -> int:
    cfg, args = parse_args(argv)
    raise_nofile_limit()
    if args.floor_only:
        result = asyncio.run(redis_floor(args.floor_only, cfg.floor_rounds, cfg.floor_warmup,
                                         cfg.floor_bytes))
        print(json.dumps(result))
        return 0
    pin_to_cpu(cfg.client_cpu)
    doc = asyncio.run(Run(cfg).run())
    doc["summary"] = [{"figure": r[0], "value": r[1], "target": r[2], "met": r[3]}
                      for r in summary(doc)]
    print_table(summary(doc))
    doc["foreign_load_warnings"] = foreign_warnings(doc)
    for warning in doc["foreign_load_warnings"]:
        print(f"WARNING: {warning}: figures of that phase are disturbed")
    if not args.no_write:
        print(f"\nwrote {write_results(doc)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
