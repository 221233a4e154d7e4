"""GET /metrics (issue 6): Prometheus text, who may read it, and what it counts.

The app runs on port 0; metrics are read the way Prometheus reads them, over
HTTP, and parsed with prometheus-client's own parser.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import socketio
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from app.audit import Actor
from app.services import SERVICES
from tests.support import RunningServer, login
from tests.support.nodes import LatchCluster, run_cli
from tests.support.waiting import wait_event, wait_for

ADMIN = ("admin", "admin-password-123")
USER_PASSWORD = "user-password-123"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def parse(text: str) -> Samples:
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(http: aiohttp.ClientSession, server: RunningServer,
                 headers: dict[str, str] | None = None) -> tuple[Samples, str]:
    async with http.get(f"{server.url}/metrics", headers=headers) as resp:
        text = await resp.text()
        assert resp.status == 200, text
        assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return parse(text), text


async def add_user(server: RunningServer, name: str, role: str = "user") -> None:
    await server.app[SERVICES].users.create(name, USER_PASSWORD, role, actor=Actor.system("test"))


# --- access ------------------------------------------------------------------------------


async def test_metrics_are_open_on_loopback(server: RunningServer,
                                            http: aiohttp.ClientSession) -> None:
    samples, text = await scrape(http, server)
    families = {f.name for f in text_string_to_metric_families(text)}
    for name in ("latch_sockets_connected", "latch_socket_handshakes", "latch_token_refreshes",
                 "latch_session_ended_events", "latch_revocation_latency_seconds",
                 "latch_revocation_feed_lag_seconds", "latch_revocation_catch_ups",
                 "latch_login_attempts", "latch_http_requests",
                 "latch_http_request_duration_seconds", "latch_event_loop_lag_seconds"):
        assert name in families, f"{name} missing from /metrics"
    assert value(samples, "latch_sockets_connected", node="test-node") == 0
    assert value(samples, "latch_node_info", node="test-node") == 1


@pytest.mark.parametrize("header", ["X-Forwarded-For", "X-Real-IP", "Forwarded"])
async def test_metrics_through_a_proxy_need_an_admin(server: RunningServer,
                                                     http: aiohttp.ClientSession,
                                                     header: str) -> None:
    # A proxy on this machine makes every client look local: a relayed request never is.
    relayed = {header: "203.0.113.9" if header != "Forwarded" else "for=203.0.113.9"}
    async with http.get(f"{server.url}/metrics", headers=relayed) as resp:
        assert resp.status == 401
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")
        assert (await resp.json())["error"]["code"] == "token_missing"
    await add_user(server, "mallory")
    user = await login(http, server.url, "mallory", USER_PASSWORD)
    async with http.get(f"{server.url}/metrics",
                        headers={**relayed, **bearer(user["access_token"])}) as resp:
        assert resp.status == 403
        assert (await resp.json())["error"]["code"] == "forbidden"
    admin = await login(http, server.url, *ADMIN)
    await scrape(http, server, {**relayed, **bearer(admin["access_token"])})


# --- what is counted ---------------------------------------------------------------------


async def test_logins_and_refreshes_are_counted_by_result(server: RunningServer,
                                                          http: aiohttp.ClientSession) -> None:
    grant = await login(http, server.url, *ADMIN)
    async with http.post(f"{server.url}/auth/login",
                         json={"username": "admin", "password": "wrong-password"}) as resp:
        assert resp.status == 401
    async with http.post(f"{server.url}/auth/login", json={"username": 5}) as resp:
        assert resp.status == 400
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": grant["refresh_token"]}) as resp:
        assert resp.status == 200
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": "lrt_not-a-real-token"}) as resp:
        assert resp.status == 401
    samples, _ = await scrape(http, server)
    assert value(samples, "latch_login_attempts_total", result="ok") == 1
    assert value(samples, "latch_login_attempts_total", result="invalid_credentials") == 1
    assert value(samples, "latch_login_attempts_total", result="bad_request") == 1
    assert value(samples, "latch_token_refreshes_total", channel="rest", result="ok") == 1
    assert value(samples, "latch_token_refreshes_total", channel="rest",
                 result="refresh_invalid") == 1


async def test_http_requests_are_labelled_by_route_template(server: RunningServer,
                                                            http: aiohttp.ClientSession) -> None:
    grant = await login(http, server.url, *ADMIN)
    secret_path = "/auth/sessions/some-session-id-that-must-not-be-a-label"
    async with http.delete(f"{server.url}{secret_path}",
                           headers=bearer(grant["access_token"])) as resp:
        assert resp.status == 404
    async with http.get(f"{server.url}/no/such/route/for-user-42") as resp:
        assert resp.status == 404
    samples, text = await scrape(http, server)
    assert value(samples, "latch_http_requests_total", method="DELETE",
                 route="/auth/sessions/{session_id}", status="404") == 1
    assert value(samples, "latch_http_requests_total", method="GET", route="unmatched",
                 status="404") == 1
    # No id, token or raw path may become a label value.
    for leak in ("some-session-id", "user-42", grant["access_token"], grant["session_id"],
                 grant["refresh_token"]):
        assert leak not in text


async def test_revoked_socket_is_counted_with_its_latency(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: Callable[..., socketio.AsyncClient]) -> None:
    await add_user(server, "alice")
    grant = await login(http, server.url, "alice", USER_PASSWORD)
    client = make_sio_client()
    ended = asyncio.Event()
    client.on("session_ended", lambda data: ended.set())
    await client.connect(server.url, auth={"token": grant["access_token"]},
                         transports=["websocket"], wait_timeout=5)
    samples, _ = await scrape(http, server)
    assert value(samples, "latch_sockets_connected", node="test-node") == 1

    async with http.post(f"{server.url}/auth/logout",
                         headers=bearer(grant["access_token"])) as resp:
        assert resp.status == 204
    await wait_event(ended, 3.0, "session_ended after logout")

    async def ended_counted() -> Samples | None:
        samples, _ = await scrape(http, server)
        return samples if value(samples, "latch_session_ended_events_total",
                                code="logged_out") == 1 else None

    samples = await wait_for(ended_counted, 3.0, message="session_ended counted")
    assert value(samples, "latch_revocation_latency_seconds_count") == 1
    assert value(samples, "latch_revocation_latency_seconds_bucket", le="1.0") == 1
    assert value(samples, "latch_sockets_connected", node="test-node") == 0


async def test_a_revocation_from_the_cli_arrives_by_catch_up(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: Callable[..., socketio.AsyncClient]) -> None:
    await add_user(server, "bob")
    grant = await login(http, server.url, "bob", USER_PASSWORD)
    client = make_sio_client()
    ended = asyncio.Event()
    client.on("session_ended", lambda data: ended.set())
    await client.connect(server.url, auth={"token": grant["access_token"]},
                         transports=["websocket"], wait_timeout=5)
    before, _ = await scrape(http, server)
    settings = server.settings
    done = await asyncio.to_thread(run_cli, ["sessions", "revoke", grant["session_id"]], {
        "LATCH_DB": settings.db_path, "LATCH_KEYS_DIR": settings.keys_dir})
    assert done.returncode == 0, done.stderr
    # No Redis: another process's kill reaches this node through the durable log.
    await wait_event(ended, 5.0, "session_ended after a CLI revoke")

    async def counted() -> Samples | None:
        samples, _ = await scrape(http, server)
        return samples if value(samples, "latch_session_ended_events_total",
                                code="session_revoked") == 1 else None

    after = await wait_for(counted, 3.0, message="the CLI kill counted")
    assert (value(after, "latch_revocation_catch_ups_total")
            > value(before, "latch_revocation_catch_ups_total"))
    assert value(after, "latch_revoked_sessions") >= 1


async def test_event_loop_lag_is_sampled(server: RunningServer,
                                         http: aiohttp.ClientSession) -> None:
    async def sampled() -> bool:
        samples, _ = await scrape(http, server)
        return value(samples, "latch_event_loop_lag_seconds_count") >= 1

    await wait_for(sampled, 5.0, interval=0.1, message="a loop-lag sample")


async def test_each_app_has_its_own_registry(make_server: Callable[..., Any],
                                             http: aiohttp.ClientSession) -> None:
    first = await make_server()
    await login(http, first.url, *ADMIN)
    second = await make_server({"LATCH_NODE_ID": "other-node"})
    samples, _ = await scrape(http, second)
    assert value(samples, "latch_login_attempts_total", result="ok") == 0
    assert value(samples, "latch_node_info", node="other-node") == 1
    assert not [m for m in REGISTRY.collect() if m.name.startswith("latch_")]


# --- request ids -------------------------------------------------------------------------


async def test_request_id_is_echoed_when_plain(server: RunningServer,
                                               http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/healthz", headers={"X-Request-ID": "edge-7f3a.1"}) as resp:
        assert resp.headers["X-Request-ID"] == "edge-7f3a.1"


@pytest.mark.parametrize("sent", [None, "", "has space", "x" * 200, "semi;colon", "quote\"d"])
async def test_request_id_is_generated_when_missing_or_unfit(server: RunningServer,
                                                             http: aiohttp.ClientSession,
                                                             sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    async with http.get(f"{server.url}/auth/me", headers=headers) as resp:
        assert resp.status == 401  # error responses carry one too
        rid = resp.headers["X-Request-ID"]
    assert rid != sent and len(rid) == 16 and int(rid, 16) >= 0


# --- the socket edge ------------------------------------------------------------------------


async def test_handshakes_and_socket_refreshes_are_counted_by_result(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        make_sio_client: Callable[..., socketio.AsyncClient]) -> None:
    server = await make_server({"LATCH_ACCESS_TTL": "2", "LATCH_REFRESH_NOTICE": "0"})
    await add_user(server, "carol")
    grant = await login(http, server.url, "carol", USER_PASSWORD)
    for auth in (None, {"token": "not.a.jwt"}):
        refused = make_sio_client()
        with pytest.raises(socketio.exceptions.ConnectionError):
            await refused.connect(server.url, auth=auth, transports=["websocket"], wait_timeout=5)
    client = make_sio_client()
    ended = asyncio.Event()
    client.on("session_ended", lambda data: ended.set())
    await client.connect(server.url, auth={"token": grant["access_token"]},
                         transports=["websocket"], wait_timeout=5)
    bad = await client.call("refresh", {"token": "not.a.jwt"}, timeout=5)
    assert bad["ok"] is False
    # No good refresh: the token runs out and the socket is ended with token_expired.
    await wait_event(ended, 5.0, "session_ended token_expired")

    async def counted() -> Samples | None:
        samples, _ = await scrape(http, server)
        return samples if value(samples, "latch_session_ended_events_total",
                                code="token_expired") == 1 else None

    samples = await wait_for(counted, 3.0, message="token_expired counted")
    assert value(samples, "latch_socket_handshakes_total", result="ok") == 1
    assert value(samples, "latch_socket_handshakes_total", result="token_missing") == 1
    assert value(samples, "latch_socket_handshakes_total", result="token_invalid") == 1
    assert value(samples, "latch_token_refreshes_total", channel="socket",
                 result="token_invalid") == 1
    assert value(samples, "latch_revocation_latency_seconds_count") == 0  # expiry is no revocation


async def test_a_good_socket_refresh_is_counted(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: Callable[..., socketio.AsyncClient]) -> None:
    await add_user(server, "dave")
    grant = await login(http, server.url, "dave", USER_PASSWORD)
    client = make_sio_client()
    await client.connect(server.url, auth={"token": grant["access_token"]},
                         transports=["websocket"], wait_timeout=5)
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": grant["refresh_token"]}) as resp:
        fresh = await resp.json()
    ack = await client.call("refresh", {"token": fresh["access_token"]}, timeout=5)
    assert ack["ok"] is True
    samples, _ = await scrape(http, server)
    assert value(samples, "latch_token_refreshes_total", channel="socket", result="ok") == 1
    assert value(samples, "latch_token_refreshes_total", channel="rest", result="ok") == 1


async def test_a_kill_on_one_node_shows_feed_lag_on_the_other(
        latch_cluster: LatchCluster, redis_url: str,
        make_sio_client: Callable[..., socketio.AsyncClient]) -> None:
    node_a, node_b = latch_cluster(2, redis_url=redis_url)
    async with aiohttp.ClientSession() as http:
        await asyncio.to_thread(latch_cluster.cli, ["user", "add", "erin", "--password-stdin"],
                                USER_PASSWORD + "\n")
        grant = await login(http, node_b.url, "erin", USER_PASSWORD)
        client = make_sio_client()
        ended = asyncio.Event()
        client.on("session_ended", lambda data: ended.set())
        await client.connect(node_b.url, auth={"token": grant["access_token"]},
                             transports=["websocket"], wait_timeout=5)
        admin = await login(http, node_a.url, "admin", latch_cluster.admin_password)
        async with http.post(f"{node_a.url}/admin/sessions/{grant['session_id']}/revoke",
                             headers=bearer(admin["access_token"])) as resp:
            assert resp.status == 200
        await wait_event(ended, 3.0, "session_ended on node b")
        async with http.get(f"{node_b.url}/metrics") as resp:
            samples = parse(await resp.text())
    assert value(samples, "latch_revocation_feed_lag_seconds_count") >= 1
    assert value(samples, "latch_revocation_latency_seconds_count") == 1
    assert value(samples, "latch_session_ended_events_total", code="session_revoked") == 1
    assert value(samples, "latch_revocation_feed_up") == 1
    assert ("latch_revocation_sync_age_seconds", frozenset()) in samples
