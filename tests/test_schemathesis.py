"""Schemathesis against the live app (issue 6), with a real admin token and a real user token.

Every operation of ``GET /openapi.json`` gets ``MAX_EXAMPLES`` generated requests
in each generation mode (positive: valid by the schema; negative: wrong types,
missing fields, out-of-range values), derandomized so a run is repeatable. Each
answer must not be a 5xx, must have a documented status, content type and body
shape, and an operation that declares Bearer auth must refuse the same request
without a token and with a wrong one (``ignored_auth``). Admin operations must
also refuse a valid *user* token with 403.

Requests that would end the test's own sessions get their own victims: logout
uses a fresh session per example; ``{user_id}`` of the admin user routes is
always a throwaway user; the revoke and delete routes sometimes get a real,
disposable session id so that their success path is exercised too.
``GET /admin/events`` is an endless stream: its auth is tested directly below.

The server runs in this test's event loop; Schemathesis (synchronous, through
``requests``) runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support import RunningServer, login

# More for an exploratory run: LATCH_SCHEMATHESIS_EXAMPLES=500 pytest tests/test_schemathesis.py
MAX_EXAMPLES = int(os.environ.get("LATCH_SCHEMATHESIS_EXAMPLES", "25"))
TIME_BUDGET = 60.0 * max(1.0, MAX_EXAMPLES / 25)
ADMIN = ("admin", "admin-password-123")
PASSWORD = "schemathesis-password-1"
STREAMS = {"GET /admin/events"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, ignored_auth]


@dataclass
class Tally:
    operations: list[str] = field(default_factory=list)
    examples: int = 0
    failures: dict[str, str] = field(default_factory=dict)


class Accounts:
    """Real credentials, made over the API from the worker thread."""

    def __init__(self, base: str, http: requests.Session, admin_token: str) -> None:
        self.base = base
        self.http = http
        self.admin = {"Authorization": f"Bearer {admin_token}"}
        self.user_ids: dict[str, str] = {}

    def create(self, name: str) -> str:
        resp = self.http.post(f"{self.base}/admin/users", headers=self.admin, timeout=10,
                              json={"username": name, "password": PASSWORD})
        assert resp.status_code == 201, resp.text
        self.user_ids[name] = resp.json()["user"]["id"]
        return self.user_ids[name]

    def login(self, name: str) -> dict[str, Any]:
        resp = self.http.post(f"{self.base}/auth/login", timeout=10,
                              json={"username": name, "password": PASSWORD})
        assert resp.status_code == 200, resp.text
        body: dict[str, Any] = resp.json()
        return body

    def bearer(self, name: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.login(name)['access_token']}"}


def _security(spec: dict[str, Any], method: str, path: str) -> list[Any]:
    security: list[Any] = spec["paths"][path][method.lower()]["security"]
    return security


def run_schemathesis(base: str, spec: dict[str, Any], admin_token: str) -> Tally:
    tally = Tally()
    started = time.monotonic()
    http = requests.Session()
    http.trust_env = False  # never through a proxy from the environment
    accounts = Accounts(base, http, admin_token)
    for name in ("st-user", "st-victim", "st-target", "st-leaver"):
        accounts.create(name)
    user = accounts.bearer("st-user")
    admin = accounts.admin
    counter = itertools.count()

    def prepare(case: schemathesis.Case) -> tuple[dict[str, str], dict[str, Any]]:
        """The headers (auth) and transport options for one case."""
        label = f"{case.method.upper()} {case.operation.path}"
        n = next(counter)
        kwargs: dict[str, Any] = {"timeout": 10, "allow_redirects": False}
        if label in ("PATCH /admin/users/{user_id}", "POST /admin/users/{user_id}/revoke"):
            case.path_parameters = {"user_id": accounts.user_ids["st-victim"]}
        elif label == "POST /admin/sessions/{session_id}/revoke" and n % 2 == 0:
            case.path_parameters = {"session_id": accounts.login("st-target")["session_id"]}
        elif label == "DELETE /auth/sessions/{session_id}" and n % 2 == 0:
            case.path_parameters = {"session_id": accounts.login("st-user")["session_id"]}
        if label == "POST /auth/logout":
            return accounts.bearer("st-leaver"), kwargs
        security = _security(spec, case.method, case.operation.path)
        if security != [{"bearerAuth": []}]:
            return {}, kwargs
        return (admin if case.operation.path.startswith("/admin/") else user), kwargs

    def exercise(operation: Any, mode: GenerationMode) -> None:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck),
                  phases=[Phase.explicit, Phase.generate, Phase.shrink])
        def one(case: schemathesis.Case) -> None:
            tally.examples += 1
            headers, kwargs = prepare(case)
            case.call_and_validate(base_url=base, session=http, headers=headers, checks=CHECKS,
                                   **kwargs)
            if operation.path.startswith("/admin/") and headers is admin:
                # A valid token without the admin role: 403 whatever the input.
                refused = case.call(base_url=base, session=http, headers=user, **kwargs)
                # (A negative case that removes the Authorization header removes ours too.)
                if refused.request.headers.get("Authorization") == user["Authorization"]:
                    assert refused.status_code == 403, (
                        f"{operation.label} answered a user token with {refused.status_code}")

        one()

    for result in schemathesis.openapi.from_dict(spec, config=schemathesis.Config()) \
            .get_all_operations():
        operation = result.ok()
        if operation.label in STREAMS:
            continue
        tally.operations.append(operation.label)
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode)
            except Unsatisfiable:
                # Nothing to negate: no parameters and no body (GET /auth/me and the like).
                assert mode is GenerationMode.NEGATIVE, f"{operation.label}: no positive case"
            except (Exception, BaseExceptionGroup) as exc:  # collected, reported together below
                tally.failures[f"{operation.label} ({mode.value})"] = f"{type(exc).__name__}: {exc}"
        assert time.monotonic() - started < TIME_BUDGET, "the schemathesis run is over budget"
    return tally


async def test_schemathesis_finds_nothing(make_server: Callable[..., Any],
                                          http: aiohttp.ClientSession) -> None:
    # Generated logins fail by the hundred; the throttle is tested elsewhere.
    server: RunningServer = await make_server({"LATCH_LOGIN_MAX_FAILURES": "1000000"})
    async with http.get(f"{server.url}/openapi.json") as resp:
        spec = await resp.json()
    admin = await login(http, server.url, *ADMIN)
    started = time.monotonic()
    tally = await asyncio.to_thread(run_schemathesis, server.url, spec, admin["access_token"])
    elapsed = time.monotonic() - started
    print(f"\nschemathesis: {len(tally.operations)} operations, {tally.examples} examples "
          f"({MAX_EXAMPLES} per operation and mode), {len(tally.failures)} failures, "
          f"{elapsed:.1f} s")
    assert not tally.failures, "\n\n".join(f"{k}:\n{v}" for k, v in tally.failures.items())
    assert len(tally.operations) == sum(len(item) for item in spec["paths"].values()) - len(STREAMS)
    assert elapsed < TIME_BUDGET


async def test_admin_event_stream_requires_an_admin(server: RunningServer,
                                                    http: aiohttp.ClientSession) -> None:
    from app.audit import Actor
    from app.services import SERVICES

    url = f"{server.url}/admin/events"
    async with http.get(url) as resp:
        assert resp.status == 401
    async with http.get(url, headers={"Authorization": "Bearer not-a-token"}) as resp:
        assert resp.status == 401
    await server.app[SERVICES].users.create("sse-user", PASSWORD, "user", actor=Actor.system("t"))
    user = await login(http, server.url, "sse-user", PASSWORD)
    async with http.get(url, headers={"Authorization": f"Bearer {user['access_token']}"}) as resp:
        assert resp.status == 403
    admin = await login(http, server.url, *ADMIN)
    async with http.get(url, headers={"Authorization": f"Bearer {admin['access_token']}"}) as resp:
        assert resp.status == 200
        assert resp.content_type == "text/event-stream"
        first = await asyncio.wait_for(resp.content.readline(), 5.0)
        assert first == b"event: hello\n"
