"""Fixtures: a real Redis, real server processes, the in-process app, real clients.

Missing tools (redis-server, node, Chromium) skip the tests that need them,
except in CI, where ``LATCH_REQUIRE_REDIS`` / ``LATCH_REQUIRE_NODE`` /
``LATCH_REQUIRE_BROWSER`` = 1 turn the skip into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    # So that `tests.support` imports under plain `pytest` too, not only
    # `python -m pytest` (which puts the cwd on sys.path).
    sys.path.insert(0, str(_ROOT))

from app.config import load_settings  # noqa: E402
from tests.support import (  # noqa: E402
    CHROMIUM_PATH,
    JS_DIR,
    JsScenario,
    RunningServer,
)
from tests.support import nodes as _nodes  # noqa: E402
from tests.support import redis_server as _redis  # noqa: E402
from tests.support.nodes import EnvValue, LatchCluster  # noqa: E402
from tests.support.redis_server import RedisServer, RedisUnavailable  # noqa: E402

if TYPE_CHECKING:
    import aiohttp
    import socketio

    from app.clock import Clock

_CLUSTERS = pytest.StashKey[list[LatchCluster]]()


def pytest_configure(config: pytest.Config) -> None:
    for line in (
        "redis: needs a real redis-server (started by a fixture)",
        "multinode: starts several `latch serve` processes",
        "browser: drives Debian's Chromium through Playwright",
        "slow: takes seconds (token expiry, heartbeat TTLs, outages)",
    ):
        config.addinivalue_line("markers", line)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark tests by the fixtures they use, so ``-m 'not redis'`` works unannotated."""
    by_fixture = {
        "redis_server": "redis", "redis_url": "redis", "fresh_redis_server": "redis",
        "latch_cluster": "multinode", "chromium_path": "browser",
    }
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        for fixture, marker in by_fixture.items():
            if fixture in names:
                item.add_marker(marker)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach every node's log tail to a failed test's report."""
    report = yield
    if report.failed:
        for cluster in item.stash.get(_CLUSTERS, []):
            for node in cluster.nodes:
                report.sections.append((f"latch {node.node_id} log", node.logs(80)))
    return report


def pytest_sessionfinish() -> None:
    # Belt and braces: fixtures stop what they start, but a crash in a
    # fixture's own teardown must not leave servers behind.
    _nodes.stop_all()
    _redis.stop_all()


def _unavailable(tool: str, variable: str, reason: str) -> NoReturn:
    if os.environ.get(variable) == "1":
        pytest.fail(f"{tool} is required ({variable}=1): {reason}", pytrace=False)
    pytest.skip(f"{tool} unavailable: {reason}")


# -- Redis -----------------------------------------------------------------


def _start_redis(workdir: Path) -> RedisServer:
    server = RedisServer(workdir)
    try:
        server.start()
    except RedisUnavailable as exc:
        _unavailable("redis-server", "LATCH_REQUIRE_REDIS", str(exc))
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the whole run. Never stop it in a test: use fresh_redis_server."""
    server = _start_redis(tmp_path_factory.mktemp("redis"))
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The shared server's URL, emptied (FLUSHALL) before the test."""
    if not redis_server.running:  # a test broke the rule above; recover
        redis_server.start()
    redis_server.flushall()
    return redis_server.url


@pytest.fixture
def fresh_redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server of this test's own, free to stop(), kill() and start() again."""
    server = _start_redis(tmp_path / "redis")
    yield server
    server.stop()


# -- Latch processes -------------------------------------------------------


@pytest.fixture
def latch_cluster(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[LatchCluster]:
    """Start real ``latch serve`` processes sharing one SQLite file and keys dir.

    ``nodes = latch_cluster(2, redis_url=redis_url, LATCH_ACCESS_TTL=5)``;
    ``latch_cluster.cli(["sessions", "revoke", "--all"])`` runs the CLI on the
    same database. Every node is stopped at teardown; a failed test's report
    carries each node's log tail.
    """
    cluster = LatchCluster(tmp_path / "cluster")
    request.node.stash.setdefault(_CLUSTERS, []).append(cluster)
    yield cluster
    cluster.stop_all()


# -- The in-process app ----------------------------------------------------

ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def make_server(tmp_path: Path) -> AsyncIterator[ServerFactory]:
    """Factory: ``await make_server(env=None, *, clock=None, **overrides) -> RunningServer``.

    ``env`` adds to (or, with a ``None`` value, removes) the defaults below;
    ``overrides`` are ``Settings`` fields passed to ``load_settings`` (as CLI
    flags would be). The app runs on 127.0.0.1 and a free port.
    """
    from aiohttp import web

    cleanup = contextlib.AsyncExitStack()

    async def _make(env: Mapping[str, EnvValue] | None = None, *,
                    clock: Clock | None = None, **overrides: Any) -> RunningServer:
        # Imported here so the suite collects before app.server exists.
        from app.server import create_app

        merged: dict[str, EnvValue] = {
            "LATCH_DB": tmp_path / "latch.db",
            "LATCH_KEYS_DIR": tmp_path / "keys",
            "LATCH_ADMIN_PASSWORD": "admin-password-123",
            "LATCH_INSECURE_COOKIES": "1",
            "LATCH_NODE_ID": "test-node",
        }
        merged.update(env or {})
        clean = {k: os.fspath(v) if isinstance(v, os.PathLike) else str(v)
                 for k, v in merged.items() if v is not None}
        settings = load_settings(clean, **overrides)
        app = create_app(settings, clock=clock)
        # A socket a test leaves open would hold a graceful shutdown for 60 s;
        # after 1 s aiohttp cancels the remaining handlers instead.
        runner = web.AppRunner(app, shutdown_timeout=1.0)
        await runner.setup()
        cleanup.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        return RunningServer(url=f"http://{host}:{port}", app=app, settings=settings,
                             runner=runner)

    async with cleanup:  # every runner is cleaned up, even if one cleanup fails
        yield _make


@pytest.fixture
async def server(make_server: ServerFactory) -> RunningServer:
    """The app with default settings (no Redis, in-process feed)."""
    return await make_server()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client. Its cookie jar accepts cookies from 127.0.0.1 (unsafe=True)."""
    import aiohttp

    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        yield session


@pytest.fixture
async def make_sio_client() -> AsyncIterator[Callable[..., socketio.AsyncClient]]:
    """Factory for ``socketio.AsyncClient``; each is disconnected at teardown.

    Reconnection is off unless asked for, so a dropped socket stays dropped
    and the test sees exactly what the server did.
    """
    import socketio

    cleanup = contextlib.AsyncExitStack()

    def _make(**kwargs: Any) -> socketio.AsyncClient:
        kwargs.setdefault("reconnection", False)
        client = socketio.AsyncClient(**kwargs)
        cleanup.push_async_callback(client.shutdown)
        return client

    async with cleanup:
        yield _make


# -- External clients: Node.js and Chromium ---------------------------------


@pytest.fixture
async def js_client(tmp_path: Path) -> AsyncIterator[Callable[..., JsScenario]]:
    """Factory: ``js_client(scenario, url, token, new_token=None, timeout=20.0)``.

    Returns an unstarted :class:`JsScenario`; use ``async with`` on it. Needs
    ``node`` and ``npm ci --prefix tests/js`` (``.ci/run`` does both).
    """
    if shutil.which("node") is None:
        _unavailable("node", "LATCH_REQUIRE_NODE", "`node` is not on PATH")
    if not (JS_DIR / "node_modules" / "socket.io-client").is_dir():
        _unavailable("socket.io-client", "LATCH_REQUIRE_NODE",
                     "run `npm ci --prefix tests/js` first")
    cleanup = contextlib.AsyncExitStack()
    count = 0

    def _make(scenario: str, url: str, token: str | None = None,
              new_token: str | None = None, **kwargs: Any) -> JsScenario:
        nonlocal count
        count += 1
        log = tmp_path / f"js-{count}-{scenario}.stderr"
        run = JsScenario(scenario, url, token, new_token, log_path=log, **kwargs)
        cleanup.push_async_callback(run.close)
        return run

    async with cleanup:
        yield _make


@pytest.fixture(scope="session")
def chromium_path() -> str:
    """Debian's Chromium for Playwright's ``executable_path``; see support.CHROMIUM_ARGS."""
    if not os.access(CHROMIUM_PATH, os.X_OK):
        _unavailable("Chromium", "LATCH_REQUIRE_BROWSER", f"{CHROMIUM_PATH} is missing")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        _unavailable("Playwright", "LATCH_REQUIRE_BROWSER", str(exc))
    return CHROMIUM_PATH


@pytest.fixture
async def probes() -> AsyncIterator[Any]:
    """``await probes.connect(url, token)`` → a connected :class:`tests.support.sockets.Probe`."""
    from tests.support.sockets import Probes

    made = Probes()
    yield made
    await made.close()
