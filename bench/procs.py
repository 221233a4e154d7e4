"""Processes for the benchmark drivers: pinned to a core, output in a log file.

Shared by ``run_socket_bench.py`` and ``run_revocation_bench.py`` (and the
open-files and pinning helpers by ``loadgen.py`` and ``bare_server.py``). The
scripts in bench/ import each other by module name: they run as
``python bench/<script>.py``, which puts bench/ on ``sys.path``.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent

Probe = Callable[[], Awaitable[bool]]


def raise_nofile_limit() -> int:
    """Raise this process's open-files limit to the hard limit; return it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def pin_to_cpu(cpu: int | None) -> None:
    """Pin this process to one core (ignored when the machine has no such core)."""
    if cpu is not None and 0 <= cpu < (os.cpu_count() or 1):
        os.sched_setaffinity(0, {cpu})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_setup(cpu: int | None) -> Callable[[], None]:
    """``preexec_fn`` for a child: the open-files limit raised, pinned to ``cpu``."""

    def setup() -> None:
        raise_nofile_limit()
        pin_to_cpu(cpu)

    return setup


def http_probe(session: aiohttp.ClientSession, url: str) -> Probe:
    """Ready once ``GET url/healthz`` answers below 500."""

    async def probe() -> bool:
        try:
            async with session.get(url + "/healthz") as resp:
                return resp.status < 500
        except (aiohttp.ClientError, OSError):
            return False

    return probe


class Proc:
    """A child process pinned to a core, output in ``workdir/<name>.log``, stopped with SIGTERM."""

    def __init__(self, name: str, cmd: list[str], *, env: dict[str, str], workdir: Path,
                 cpu: int | None, url: str | None = None) -> None:
        self.name = name
        self.cmd = cmd
        self.env = env
        self.cpu = cpu
        self.url = url
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def log_probe(self, marker: str) -> Probe:
        """Ready once ``marker`` appears in the log (``READY <port>`` of bare_server.py)."""

        async def probe() -> bool:
            try:
                return marker in self.log_path.read_text(errors="replace")
            except OSError:
                return False

        return probe

    def spawn(self) -> None:
        with self.log_path.open("wb") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=PROJECT_ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, preexec_fn=child_setup(self.cpu))

    async def wait_ready(self, probe: Probe, timeout: float = 60.0) -> None:
        """Wait until ``probe()`` is true; stop the child and raise if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n"
                                   f"{self.log_tail()}")
            if await probe():
                return
            await asyncio.sleep(0.1)
        await self.stop()
        raise RuntimeError(f"{self.name} not ready after {timeout:.0f} s:\n{self.log_tail()}")

    async def stop(self) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, 15)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait, 5)
