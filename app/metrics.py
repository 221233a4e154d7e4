"""Prometheus metrics of one node, on a registry of its own (never the global one).

Each app owns one :class:`Metrics`, so every test app starts from zero. The
edge reports what it sees through the small methods below; state the core
already keeps (revoked set, catch-ups, feed health) is read at scrape time by
:class:`_RevocationCollector`, so nothing has to remember to update it.

Label values come from short fixed sets (result codes, HTTP methods, route
templates); anything else is folded into ``other``. No user id, session id or
token ever becomes a label value: each distinct value is a new time series.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

log = logging.getLogger("latch.metrics")

# Every code a handshake, refresh, login or session end can report (CONTRACT §3, §4).
CODES = frozenset({
    "ok", "token_missing", "token_invalid", "token_expired", "session_revoked", "user_disabled",
    "session_mismatch", "logged_out", "refresh_reused", "role_changed", "password_changed",
    "refresh_invalid", "session_expired", "invalid_credentials", "too_many_attempts",
    "bad_request", "forbidden", "not_found", "payload_too_large", "unsupported_media_type",
    "service_unavailable", "internal_error", "rate_limited", "origin_not_allowed",
})
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CHANNELS = frozenset({"rest", "socket"})
OTHER = "other"

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LOOP_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LOOP_INTERVAL = 0.5


def label(value: str, allowed: frozenset[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``other``: label sets stay bounded."""
    return value if value in allowed else OTHER


class RevocationView(Protocol):
    """What the scrape-time collector reads from ``app.revocation.RevocationService``."""

    catch_ups: int

    def is_fresh(self) -> bool: ...


class FeedView(Protocol):
    def is_healthy(self) -> bool: ...


class Metrics:
    """The collectors of one node plus the methods the core and the edge call."""

    def __init__(self, node_id: str, *, process: bool = True) -> None:
        self.node_id = node_id
        # ``*_created`` series only double the output; Prometheus does not use them.
        # (A process-wide switch in prometheus-client; this process has no other registry.)
        disable_created_metrics()
        self.registry = CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.sockets = Gauge("latch_sockets_connected", "Live authenticated Socket.IO connections "
                             "on this node.", ["node"], registry=reg)
        self.handshakes = Counter("latch_socket_handshakes", "Socket.IO handshakes by result "
                                  "(ok or the connect_error code).", ["result"], registry=reg)
        # Children of the per-event counters by (bounded) label value: hot paths
        # skip prometheus_client's labels() lookup.
        self._handshake_children: dict[str, Any] = {}
        self._refresh_children: dict[tuple[str, str], Any] = {}
        self.refreshes = Counter("latch_token_refreshes", "Token refreshes by channel (rest: "
                                 "POST /auth/refresh, socket: the refresh event) and result.",
                                 ["channel", "result"], registry=reg)
        self.sessions_ended = Counter("latch_session_ended_events", "Sockets ended with a "
                                      "session_ended event, by code.", ["code"], registry=reg)
        self.revocation_latency = Histogram(
            "latch_revocation_latency_seconds", "From the revoke call to the session's sockets "
            "on this node being disconnected.", registry=reg, buckets=LATENCY_BUCKETS)
        self.feed_lag = Histogram(
            "latch_revocation_feed_lag_seconds", "Delay between a revocation on another node and "
            "its message arriving here.", registry=reg, buckets=LATENCY_BUCKETS)
        self.logins = Counter("latch_login_attempts", "POST /auth/login attempts by result.",
                              ["result"], registry=reg)
        self.http_requests = Counter("latch_http_requests", "HTTP requests by method, route "
                                     "template and status.", ["method", "route", "status"],
                                     registry=reg)
        self.http_duration = Histogram(
            "latch_http_request_duration_seconds", "Time to answer an HTTP request (streams and "
            "WebSockets: their whole life).", ["method", "route"], registry=reg,
            buckets=HTTP_BUCKETS)
        self.loop_lag = Histogram("latch_event_loop_lag_seconds", "How late the event loop ran "
                                  f"a timer due every {LOOP_INTERVAL} s.", registry=reg,
                                  buckets=LOOP_BUCKETS)
        Gauge("latch_node_info", "This node (value is always 1).", ["node"],
              registry=reg).labels(node=node_id).set(1)
        if process:
            ProcessCollector(registry=reg)
        self._socket_gauge = self.sockets.labels(node=node_id)

    # --- called by the edge --------------------------------------------------------

    def track_sockets(self, count: Callable[[], int]) -> None:
        """Read the live-socket count from ``count`` at every scrape (exact, no drift)."""
        self._socket_gauge.set_function(count)

    def socket_opened(self) -> None:
        self._socket_gauge.inc()

    def socket_closed(self) -> None:
        self._socket_gauge.dec()

    def handshake(self, result: str) -> None:
        """``ok``, or the ``connect_error`` code the handshake was refused with."""
        value = label(result, CODES)
        child = self._handshake_children.get(value)
        if child is None:  # labels() costs a few us: once per label value
            child = self._handshake_children[value] = self.handshakes.labels(result=value)
        child.inc()

    def refresh(self, result: str, channel: str = "socket") -> None:
        key = (label(channel, CHANNELS), label(result, CODES))
        child = self._refresh_children.get(key)
        if child is None:
            child = self._refresh_children[key] = self.refreshes.labels(*key)
        child.inc()

    def login(self, result: str) -> None:
        self.logins.labels(result=label(result, CODES)).inc()

    def session_ended(self, code: str, count: int = 1, latency: float | None = None) -> None:
        """``count`` sockets were sent ``session_ended`` with ``code`` and disconnected.

        ``latency`` (seconds since the revoke call) is given for live revocations
        and ``None`` for expiry and catch-up, which have no meaningful start.
        Signature matches ``RevocationService.on_sockets_ended``.
        """
        if count > 0:
            self.sessions_ended.labels(code=label(code, CODES)).inc(count)
        if latency is not None and latency >= 0:
            self.revocation_latency.observe(latency)

    def feed_message(self, lag: float) -> None:
        """A revocation published by another node arrived ``lag`` seconds after it was made."""
        self.feed_lag.observe(max(0.0, lag))

    def http_request(self, method: str, route: str, status: int, seconds: float) -> None:
        """``route`` must be a route template (``/auth/sessions/{id}``), never a raw path."""
        method = label(method, METHODS)
        self.http_requests.labels(method=method, route=route, status=str(status)).inc()
        self.http_duration.labels(method=method, route=route).observe(seconds)

    # --- state read at scrape time -------------------------------------------------

    def watch_revocation(self, revocation: RevocationView, feed: FeedView,
                         revoked_count: Callable[[], int] | None = None) -> None:
        self.registry.register(_RevocationCollector(revocation, feed, revoked_count))

    # --- the event-loop lag sampler ----------------------------------------------------

    async def sample_loop_lag(self, interval: float = LOOP_INTERVAL) -> None:
        """Run forever: sleep ``interval`` and record how late the wake-up was."""
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + interval
            await asyncio.sleep(interval)
            self.loop_lag.observe(max(0.0, loop.time() - due))

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format."""
        return generate_latest(self.registry)


class _RevocationCollector(Collector):
    """Revocation state the core keeps anyway, read when Prometheus scrapes."""

    def __init__(self, revocation: RevocationView, feed: FeedView,
                 revoked_count: Callable[[], int] | None) -> None:
        self._revocation = revocation
        self._feed = feed
        self._revoked_count = revoked_count

    def describe(self) -> Iterable[Metric]:
        return self._families(0, healthy=False, fresh=False, revoked=0, sync_age=None)

    def collect(self) -> Iterable[Metric]:
        rev: Any = self._revocation
        # sync_age() is optional: an older core without it still gets the rest.
        age = rev.sync_age() if callable(getattr(rev, "sync_age", None)) else None
        return self._families(
            rev.catch_ups, healthy=self._feed.is_healthy(), fresh=rev.is_fresh(),
            revoked=self._revoked_count() if self._revoked_count else 0, sync_age=age)

    def _families(self, catch_ups: int, *, healthy: bool, fresh: bool, revoked: int,
                  sync_age: float | None) -> Iterable[Metric]:
        yield CounterMetricFamily("latch_revocation_catch_ups", "Catch-ups applied from the "
                                  "durable revocation log (missed feed messages).", catch_ups)
        yield GaugeMetricFamily("latch_revocation_feed_up", "1 while this node is subscribed to "
                                "the revocation feed.", int(healthy))
        yield GaugeMetricFamily("latch_revocation_fresh", "1 while this node's revocation view "
                                "is current enough to accept handshakes.", int(fresh))
        yield GaugeMetricFamily("latch_revoked_sessions", "Revoked sessions held in memory "
                                "(until their tokens expire).", revoked)
        if sync_age is not None:
            yield GaugeMetricFamily("latch_revocation_sync_age_seconds", "Seconds since this "
                                    "node last confirmed it holds every durable revocation.",
                                    sync_age)
