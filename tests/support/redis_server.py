"""A real ``redis-server`` child process on a free loopback port.

Tests talk to a real Redis, never a fake: the fixture starts one with nothing
on disk (``--save "" --appendonly no``), waits until it answers PING, and can
stop, kill and restart it on the *same* port so that clients configured with
its URL see an outage and a recovery.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.02

_live: set[RedisServer] = set()


class RedisUnavailable(RuntimeError):
    """``redis-server`` is not installed or would not start."""


def free_port() -> int:
    """A loopback port that was free a moment ago (bind to 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_command(port: int, *args: str, timeout: float = 1.0) -> str:
    """Send one command over RESP and return a simple or integer reply.

    Deliberately not redis-py: the harness must not depend on the client the
    service under test uses. Only replies that fit on one line are supported,
    which is all the harness needs (PING, FLUSHALL, DBSIZE).
    """
    payload = f"*{len(args)}\r\n".encode()
    for arg in args:
        data = arg.encode()
        payload += b"$%d\r\n%s\r\n" % (len(data), data)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        reply = b""
        while not reply.endswith(b"\r\n"):
            chunk = sock.recv(4096)
            if not chunk:
                raise ConnectionError("redis closed the connection without a reply")
            reply += chunk
    line = reply.decode(errors="replace").rstrip("\r\n")
    if line.startswith("-"):
        raise ConnectionError(f"redis error: {line[1:]}")
    return line[1:]


class RedisServer:
    """One ``redis-server`` process, a child of the test run.

    ``start()`` after ``stop()`` or ``kill()`` brings it back on the same
    port, with an empty dataset (nothing is persisted).
    """

    def __init__(self, workdir: Path, *, port: int | None = None,
                 binary: str = "redis-server") -> None:
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.workdir / "redis.log"
        self.binary = binary
        self._port = port
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("redis-server has not been started yet")
        return self._port

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = START_TIMEOUT) -> None:
        """Start (or restart) the server and wait until it answers PING."""
        if self.running:
            return
        executable = shutil.which(self.binary)
        if executable is None:
            raise RedisUnavailable(f"{self.binary!r} is not on PATH")
        # A port picked with free_port() can be taken by someone else before
        # redis binds it; then pick another. A restart keeps its port, but the
        # kernel may briefly hand it out as an ephemeral port, so it retries
        # the same one until the deadline.
        deadline = time.monotonic() + timeout
        fixed = self._port is not None
        while True:
            port = self._port if fixed and self._port is not None else free_port()
            if self._launch(executable, port, deadline):
                self._port = port
                _live.add(self)
                return
            in_use = "address already in use" in self.logs().lower()
            if not in_use or time.monotonic() >= deadline:
                raise RedisUnavailable(
                    f"redis-server did not start on port {port}:\n{self.logs()}"
                )
            if fixed:
                time.sleep(POLL_INTERVAL)  # polling for the port, bounded by deadline

    def _launch(self, executable: str, port: int, deadline: float) -> bool:
        args = [
            executable,
            "--bind", "127.0.0.1",
            "--port", str(port),
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.workdir),
            "--daemonize", "no",
            "--logfile", "",
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- harness: starting redis-server on port {port}\n".encode())
            log.flush()
            # The child has its own copy of the descriptor; ours is closed at
            # once so no file object is left for a ResourceWarning.
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                cwd=self.workdir,
            )
        self._proc = proc
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self._proc = None
                return False
            try:
                if redis_command(port, "PING", timeout=0.5) == "PONG":
                    return True
            except OSError:
                pass  # not listening yet, or still loading
            time.sleep(POLL_INTERVAL)  # polling with a deadline
        self._terminate(proc)
        self._proc = None
        return False

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM and wait (SIGKILL if it does not exit in time). Idempotent."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is not None:
            self._terminate(proc, timeout)

    def kill(self) -> None:
        """SIGKILL: the server vanishes without closing anything gracefully."""
        proc, self._proc = self._proc, None
        _live.discard(self)
        if proc is not None:
            if proc.poll() is None:
                proc.kill()
            proc.wait()

    def restart(self, timeout: float = START_TIMEOUT) -> None:
        self.stop()
        self.start(timeout)

    def flushall(self) -> None:
        redis_command(self.port, "FLUSHALL")

    def ping(self) -> bool:
        try:
            return redis_command(self.port, "PING") == "PONG"
        except OSError:
            return False

    def logs(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return "(no redis log)"
        return "\n".join(text.splitlines()[-lines:])

    @staticmethod
    def _terminate(proc: subprocess.Popen[bytes], timeout: float = STOP_TIMEOUT) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        proc.wait()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<RedisServer port={self._port} {state}>"


def stop_all() -> None:
    """Last-resort cleanup for servers a crashed fixture did not stop."""
    for server in list(_live):
        server.kill()
