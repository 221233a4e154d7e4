"""Real ``latch serve`` processes, for multi-node and CLI tests.

Each :class:`LatchNode` is the real CLI (``python -m app.cli serve``) as a child
process on its own free port, with its own working directory and log files.
Nodes of one :class:`LatchCluster` share one SQLite file and one keys
directory, as nodes on one machine do (CONTRACT §5).
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from tests.support.redis_server import free_port
from tests.support.waiting import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0
CLI_TIMEOUT = 60.0
POLL_INTERVAL = 0.05
ADMIN_PASSWORD = "admin-password-123"

EnvValue = str | int | os.PathLike[str] | None

_live: set[LatchNode] = set()


class NodeError(AssertionError):
    """A node would not start or misbehaved; the message carries its log tail."""


def child_env(env: Mapping[str, EnvValue]) -> dict[str, str]:
    """The environment for a child: ours minus any ``LATCH_*``, plus ``env``.

    Inherited ``LATCH_*`` variables are dropped so a developer's shell cannot
    change what a test runs; a value of ``None`` in ``env`` removes a variable.
    The repo root goes on ``PYTHONPATH`` so ``app`` imports even without an
    editable install.
    """
    out = {k: v for k, v in os.environ.items() if not k.startswith("LATCH_")}
    out.pop("PYTEST_CURRENT_TEST", None)
    out["PYTHONUNBUFFERED"] = "1"
    paths = [str(REPO_ROOT), *filter(None, out.get("PYTHONPATH", "").split(os.pathsep))]
    out["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    for key, value in env.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = os.fspath(value) if isinstance(value, os.PathLike) else str(value)
    return out


def cli_command(args: Sequence[str]) -> list[str]:
    return [sys.executable, "-m", "app.cli", *args]


def _require_cli() -> None:
    if importlib.util.find_spec("app.cli") is None:
        raise NodeError("app/cli.py does not exist: the harness runs `python -m app.cli`")


def run_cli(
    args: Sequence[str],
    env: Mapping[str, EnvValue],
    input: str | None = None,
    *,
    cwd: Path | None = None,
    timeout: float = CLI_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m app.cli ARGS`` to completion; stdout and stderr are captured as text.

    ``input`` is fed to stdin (for ``--password-stdin``); without it stdin is
    empty, as in CI. The exit code is not checked: assert on ``.returncode``.
    """
    _require_cli()
    return subprocess.run(
        cli_command(args),
        env=child_env(env),
        input=input,
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )


class LatchNode:
    """One ``latch serve`` process on 127.0.0.1 and a port that survives restarts."""

    def __init__(self, env: Mapping[str, EnvValue], workdir: Path, *,
                 port: int | None = None) -> None:
        self.env = dict(env)
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port if port is not None else free_port()
        self.node_id = str(self.env.get("LATCH_NODE_ID") or f"node-{self.port}")
        self.env["LATCH_NODE_ID"] = self.node_id
        self.stdout_path = self.workdir / "stdout.log"
        self.stderr_path = self.workdir / "stderr.log"
        self.starts = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.poll() if self._proc is not None else None

    def command(self) -> list[str]:
        return cli_command(["serve", "--host", "127.0.0.1", "--port", str(self.port)])

    # -- starting ---------------------------------------------------------

    def launch(self) -> None:
        """Start the process without waiting for it to be healthy."""
        if self.running:
            raise NodeError(f"{self.node_id} is already running")
        _require_cli()
        self.starts += 1
        marker = f"--- harness: start #{self.starts} of {self.node_id} on {self.url}\n".encode()
        with self.stdout_path.open("ab") as out, self.stderr_path.open("ab") as err:
            out.write(marker)
            err.write(marker)
            out.flush()
            err.flush()
            # The child keeps its own descriptors; ours close with the block.
            self._proc = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                cwd=self.workdir, env=child_env(self.env),
            )
        _live.add(self)

    def probe(self) -> bool:
        """True when ``GET /healthz`` answers 200; raises NodeError if the process died."""
        if self._proc is None or self._proc.poll() is not None:
            raise NodeError(
                f"{self.node_id} exited with code {self.returncode} before it was healthy\n"
                + self.logs()
            )
        # http.client, not urllib: urllib would honour *_proxy variables.
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
        try:
            conn.request("GET", "/healthz")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while not self.probe():
            if time.monotonic() >= deadline:
                self.kill()
                raise NodeError(
                    f"{self.node_id} was not healthy within {timeout:.0f}s\n" + self.logs()
                )
            time.sleep(POLL_INTERVAL)  # polling another process, bounded by the deadline

    async def async_wait_healthy(self, timeout: float = HEALTH_TIMEOUT) -> None:
        """Like :meth:`wait_healthy` without blocking the event loop."""
        try:
            await wait_for(lambda: asyncio.to_thread(self.probe), timeout=timeout,
                           interval=POLL_INTERVAL, message=f"{self.node_id} /healthz == 200")
        except NodeError:
            raise
        except AssertionError as exc:
            self.kill()
            raise NodeError(f"{exc}\n{self.logs()}") from None

    def start(self, timeout: float = HEALTH_TIMEOUT) -> LatchNode:
        """Launch and block until ``/healthz`` is 200, or fail with the log tail."""
        self.launch()
        self.wait_healthy(timeout)
        return self

    async def astart(self, timeout: float = HEALTH_TIMEOUT) -> LatchNode:
        """:meth:`start` for use inside a running test, without blocking the loop."""
        self.launch()
        await self.async_wait_healthy(timeout)
        return self

    # -- stopping ---------------------------------------------------------

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL. Returns the exit code."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def kill(self) -> int | None:
        """SIGKILL: the node dies without any cleanup (heartbeats just stop)."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is None:
            return None
        if proc.poll() is None:
            proc.kill()
        return proc.wait()

    def restart(self, timeout: float = HEALTH_TIMEOUT) -> LatchNode:
        self.stop()
        return self.start(timeout)

    async def arestart(self, timeout: float = HEALTH_TIMEOUT) -> LatchNode:
        await asyncio.to_thread(self.stop)
        return await self.astart(timeout)

    # -- diagnostics ------------------------------------------------------

    def logs(self, lines: int = 60) -> str:
        """The tail of stdout and stderr, for assertion messages."""
        parts = []
        for label, path in (("stdout", self.stdout_path), ("stderr", self.stderr_path)):
            try:
                text = path.read_text(errors="replace")
            except FileNotFoundError:
                text = ""
            tail = "\n".join(text.splitlines()[-lines:])
            parts.append(f"----- {self.node_id} {label} (last {lines} lines) -----\n{tail}")
        return "\n".join(parts)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<LatchNode {self.node_id} {self.url} {state}>"


def _node_name(index: int) -> str:
    return f"node-{chr(ord('a') + index)}" if index < 26 else f"node-{index}"


class LatchCluster:
    """Nodes that share one SQLite file and one keys directory.

    Call it to start nodes: ``nodes = cluster(2, redis_url=redis_url,
    LATCH_ACCESS_TTL=5)``. Keyword arguments are extra ``LATCH_*`` variables
    (``None`` removes a default). Node ids are ``node-a``, ``node-b``, ...
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "latch.db"
        self.keys_dir = self.root / "keys"
        self.admin_password = ADMIN_PASSWORD
        self.redis_url: str | None = None
        self.nodes: list[LatchNode] = []

    def env(self, redis_url: str | None = None, **extra: EnvValue) -> dict[str, EnvValue]:
        """The shared environment every node and :meth:`cli` call gets."""
        url = redis_url if redis_url is not None else self.redis_url
        env: dict[str, EnvValue] = {
            "LATCH_DB": self.db_path,
            "LATCH_KEYS_DIR": self.keys_dir,
            "LATCH_ADMIN_PASSWORD": self.admin_password,
            "LATCH_INSECURE_COOKIES": "1",
            "LATCH_LOG_FORMAT": "text",
            "LATCH_REDIS_URL": url,
        }
        env.update(extra)
        return env

    def __call__(self, n: int, redis_url: str | None = None,
                 **env: EnvValue) -> list[LatchNode]:
        """Start ``n`` more nodes and return them once each answers ``/healthz``."""
        if redis_url is not None:
            self.redis_url = redis_url
        new: list[LatchNode] = []
        for _ in range(n):
            index = len(self.nodes)
            name = _node_name(index)
            node_env = self.env(**{"LATCH_NODE_ID": name, **env})
            node = LatchNode(node_env, self.root / name)
            self.nodes.append(node)
            new.append(node)
        if not new:
            return new
        # The first node of an empty cluster creates the SQLite schema, the
        # signing keys and the admin user. Starting the others only after it is
        # healthy keeps two processes from racing to create them; the rest can
        # then start together.
        rest = new
        if not any(node.running for node in self.nodes if node not in new):
            new[0].start()
            rest = new[1:]
        for node in rest:
            node.launch()
        for node in rest:
            node.wait_healthy()
        return new

    def cli(self, args: Sequence[str], input: str | None = None,
            **env: EnvValue) -> subprocess.CompletedProcess[str]:
        """``latch ARGS`` against this cluster's database, keys and Redis."""
        return run_cli(args, self.env(**env), input=input, cwd=self.root)

    def logs(self, lines: int = 60) -> str:
        return "\n".join(node.logs(lines) for node in self.nodes)

    def stop_all(self) -> None:
        for node in self.nodes:
            node.stop()


def stop_all() -> None:
    """Last-resort cleanup for nodes a crashed fixture did not stop."""
    for node in list(_live):
        node.kill()
