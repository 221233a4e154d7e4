"""REST authentication (CONTRACT §2–§3): login, refresh rotation, logout, me, sessions, password.

Every test runs the real app on port 0 with a real SQLite file and talks to it
with aiohttp's client. Security properties are tested by attacking them.
"""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import aiohttp
import pytest

from tests.support import RunningServer, login

ADMIN = ("admin", "admin-password-123")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_user(http: aiohttp.ClientSession, server: RunningServer, name: str,
                      password: str = "user-password-123", role: str = "user") -> None:
    from app.audit import Actor
    from app.services import SERVICES

    await server.app[SERVICES].users.create(name, password, role, actor=Actor.system("test"))


async def error_of(resp: aiohttp.ClientResponse) -> tuple[int, str]:
    body = await resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    return resp.status, body["error"]["code"]


# --- login ---------------------------------------------------------------------------


async def test_login_returns_token_response(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{server.url}/auth/login",
                         json={"username": "admin", "password": ADMIN[1], "device": "pytest"}) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        body = await r.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 900
    assert body["user"] == {"id": "1", "username": "admin", "role": "admin"}
    assert body["refresh_token"].startswith("lrt_") and len(body["refresh_token"]) >= 43
    assert body["session_id"]
    header = json.loads(base64.urlsafe_b64decode(body["access_token"].split(".")[0] + "=="))
    assert header["alg"] == "EdDSA" and header["kid"]


async def test_username_is_case_insensitive(server: RunningServer, http: aiohttp.ClientSession) -> None:
    await login(http, server.url, "ADMIN", ADMIN[1])


async def test_enumeration_same_answer_for_unknown_wrong_and_disabled(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    await create_user(http, server, "dora")
    admin = await login(http, server.url, *ADMIN)
    async with http.patch(f"{server.url}/admin/users/2", json={"disabled": True},
                          headers=bearer(admin["access_token"])) as r:
        assert r.status == 200, await r.text()
    answers = []
    for username, password in (("nobody", "whatever-123"), ("admin", "wrong-password"),
                               ("dora", "user-password-123")):
        async with http.post(f"{server.url}/auth/login",
                             json={"username": username, "password": password}) as r:
            answers.append((r.status, await r.text()))
    assert answers[0] == answers[1] == answers[2]
    assert answers[0][0] == 401 and '"invalid_credentials"' in answers[0][1]


@pytest.mark.parametrize(("body", "content_type", "status", "code"), [
    (b"not json", "application/json", 400, "bad_request"),
    (b"[1, 2]", "application/json", 400, "bad_request"),
    (b'{"username": 5, "password": "x"}', "application/json", 400, "bad_request"),
    (b'{"username": "admin"}', "application/json", 400, "bad_request"),
    (b'{"username": "admin", "password": "admin-password-123", "transport": "smoke"}',
     "application/json", 400, "bad_request"),
    (b'{"username": "admin", "password": "admin-password-123", "device": 7}',
     "application/json", 400, "bad_request"),
    (b"username=admin&password=x", "application/x-www-form-urlencoded", 415,
     "unsupported_media_type"),
    (b'{"username": "' + b"a" * 70_000 + b'", "password": "x"}', "application/json", 413,
     "payload_too_large"),
    (b"[" * 5000 + b"]" * 5000, "application/json", 400, "bad_request"),
])
async def test_bad_login_input_is_a_clear_4xx(server: RunningServer, http: aiohttp.ClientSession,
                                              body: bytes, content_type: str, status: int,
                                              code: str) -> None:
    async with http.post(f"{server.url}/auth/login", data=body,
                         headers={"Content-Type": content_type}) as r:
        assert await error_of(r) == (status, code)


async def test_unknown_fields_are_ignored(server: RunningServer, http: aiohttp.ClientSession) -> None:
    await login(http, server.url, *ADMIN, color="blue", extra={"nested": [1, 2]})


# --- throttling ---------------------------------------------------------------------


async def _throttle_case(server: RunningServer, http: aiohttp.ClientSession) -> None:
    attacker = {"X-Forwarded-For": "203.0.113.9"}
    for _ in range(3):
        async with http.post(f"{server.url}/auth/login", headers=attacker,
                             json={"username": "admin", "password": "wrong-guess"}) as r:
            assert r.status == 401
    async with http.post(f"{server.url}/auth/login", headers=attacker,
                         json={"username": "admin", "password": ADMIN[1]}) as r:
        assert await error_of(r) == (429, "too_many_attempts")
        assert 1 <= int(r.headers["Retry-After"]) <= 60
    # The victim, from another address, still gets in: no lockout denial of service.
    async with http.post(f"{server.url}/auth/login", headers={"X-Forwarded-For": "198.51.100.7"},
                         json={"username": "admin", "password": ADMIN[1]}) as r:
        assert r.status == 200


THROTTLE_ENV = {"LATCH_LOGIN_MAX_FAILURES": "3", "LATCH_LOGIN_WINDOW": "60",
                "LATCH_TRUSTED_PROXIES": "127.0.0.1"}


async def test_throttling_in_memory(make_server: Any, http: aiohttp.ClientSession) -> None:
    await _throttle_case(await make_server(THROTTLE_ENV), http)


async def test_throttling_in_redis_is_shared_by_nodes(make_server: Any, redis_url: str,
                                                      http: aiohttp.ClientSession) -> None:
    server = await make_server({**THROTTLE_ENV, "LATCH_REDIS_URL": redis_url})
    await _throttle_case(server, http)
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        assert await client.keys("latch:throttle:*"), "counters must live in Redis"
    finally:
        await client.aclose()


async def test_forwarded_for_ignored_without_trusted_proxy(
        make_server: Any, http: aiohttp.ClientSession) -> None:
    server = await make_server({"LATCH_LOGIN_MAX_FAILURES": "2"})
    for ip in ("203.0.113.1", "203.0.113.2"):
        async with http.post(f"{server.url}/auth/login", headers={"X-Forwarded-For": ip},
                             json={"username": "admin", "password": "wrong-guess"}) as r:
            assert r.status == 401
    # Both failures counted against the real peer: spoofing the header does not reset it.
    async with http.post(f"{server.url}/auth/login", headers={"X-Forwarded-For": "203.0.113.3"},
                         json={"username": "admin", "password": ADMIN[1]}) as r:
        assert r.status == 429


# --- bearer routes -----------------------------------------------------------------


async def test_me_and_www_authenticate(server: RunningServer, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, server.url, *ADMIN)
    async with http.get(f"{server.url}/auth/me", headers=bearer(tokens["access_token"])) as r:
        assert r.status == 200
        body = await r.json()
    assert body["user"]["username"] == "admin"
    assert body["session"]["id"] == tokens["session_id"]
    async with http.get(f"{server.url}/auth/me") as r:
        assert await error_of(r) == (401, "token_missing")
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    async with http.get(f"{server.url}/auth/me", headers=bearer("garbage")) as r:
        assert await error_of(r) == (401, "token_invalid")
        assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_alg_none_token_refused_on_rest(server: RunningServer, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, server.url, *ADMIN)
    _, payload, _ = tokens["access_token"].split(".")
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    async with http.get(f"{server.url}/auth/me", headers=bearer(f"{header}.{payload}.")) as r:
        assert await error_of(r) == (401, "token_invalid")


async def test_refresh_token_is_not_an_access_token(server: RunningServer,
                                                     http: aiohttp.ClientSession) -> None:
    tokens = await login(http, server.url, *ADMIN)
    async with http.get(f"{server.url}/auth/me", headers=bearer(tokens["refresh_token"])) as r:
        assert await error_of(r) == (401, "token_invalid")
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": tokens["access_token"]}) as r:
        assert await error_of(r) == (401, "refresh_invalid")


async def test_logout_revokes_the_session(server: RunningServer, http: aiohttp.ClientSession) -> None:
    tokens = await login(http, server.url, *ADMIN)
    async with http.post(f"{server.url}/auth/logout", headers=bearer(tokens["access_token"])) as r:
        assert r.status == 204
    async with http.get(f"{server.url}/auth/me", headers=bearer(tokens["access_token"])) as r:
        assert await error_of(r) == (401, "session_revoked")
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": tokens["refresh_token"]}) as r:
        assert await error_of(r) == (401, "session_revoked")


# --- refresh -------------------------------------------------------------------------


async def test_refresh_rotates(server: RunningServer, http: aiohttp.ClientSession) -> None:
    first = await login(http, server.url, *ADMIN)
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": first["refresh_token"]}) as r:
        assert r.status == 200
        assert r.headers["Cache-Control"] == "no-store"
        second = await r.json()
    assert second["session_id"] == first["session_id"]
    assert second["refresh_token"] != first["refresh_token"]
    async with http.get(f"{server.url}/auth/me", headers=bearer(second["access_token"])) as r:
        assert r.status == 200


async def test_refresh_reuse_revokes_the_whole_session(server: RunningServer,
                                                       http: aiohttp.ClientSession) -> None:
    first = await login(http, server.url, *ADMIN)
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": first["refresh_token"]}) as r:
        second = await r.json()
    # The thief replays the old token: the session dies, for the thief and the victim.
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": first["refresh_token"]}) as r:
        assert await error_of(r) == (401, "refresh_reused")
    for token in (first["access_token"], second["access_token"]):
        async with http.get(f"{server.url}/auth/me", headers=bearer(token)) as r:
            assert await error_of(r) == (401, "session_revoked")
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": second["refresh_token"]}) as r:
        assert await error_of(r) == (401, "session_revoked")


async def test_twenty_concurrent_refreshes_one_success(server: RunningServer,
                                                       http: aiohttp.ClientSession) -> None:
    tokens = await login(http, server.url, *ADMIN)

    async def attempt() -> tuple[int, str | None]:
        async with http.post(f"{server.url}/auth/refresh",
                             json={"refresh_token": tokens["refresh_token"]}) as r:
            body = await r.json()
            return r.status, body.get("error", {}).get("code")

    results = await asyncio.gather(*(attempt() for _ in range(20)))
    assert sum(1 for status, _ in results if status == 200) == 1, results
    assert {code for status, code in results if status != 200} <= {"refresh_reused"}


@pytest.mark.parametrize("token", ["", "lrt_unknown", "x" * 5000, "lrt_" + "a" * 43])
async def test_refresh_garbage(server: RunningServer, http: aiohttp.ClientSession, token: str) -> None:
    async with http.post(f"{server.url}/auth/refresh", json={"refresh_token": token}) as r:
        assert await error_of(r) == (401, "refresh_invalid")


async def test_refresh_wrong_type(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.post(f"{server.url}/auth/refresh", json={"refresh_token": 12}) as r:
        assert await error_of(r) == (400, "bad_request")


async def test_session_expires_idle(make_server: Any, http: aiohttp.ClientSession) -> None:
    from app.clock import FrozenClock

    clock = FrozenClock(start=__import__("time").time())
    server = await make_server({"LATCH_REFRESH_IDLE_TTL": "120"}, clock=clock)
    tokens = await login(http, server.url, *ADMIN)
    clock.advance(121)
    async with http.post(f"{server.url}/auth/refresh",
                         json={"refresh_token": tokens["refresh_token"]}) as r:
        assert await error_of(r) == (401, "session_expired")


# --- cookie transport -------------------------------------------------------------------


async def test_cookie_transport_flags(make_server: Any, http: aiohttp.ClientSession) -> None:
    server = await make_server({"LATCH_INSECURE_COOKIES": None})
    async with http.post(f"{server.url}/auth/login", json={
            "username": "admin", "password": ADMIN[1], "transport": "cookie"}) as r:
        assert r.status == 200
        body = await r.json()
        cookies = {c.key: c for c in r.cookies.values()}
    assert "refresh_token" not in body
    rt = cookies["__Secure-latch_rt"]
    assert rt["httponly"] and rt["secure"] and rt["samesite"] == "Strict" and rt["path"] == "/auth"
    fgp = cookies["__Secure-latch_fgp"]
    assert fgp["httponly"] and fgp["secure"] and fgp["samesite"] == "Strict" and fgp["path"] == "/"
    # The token is bound to the fingerprint cookie: alone, it is refused (sidejacking).
    async with aiohttp.ClientSession() as stranger:
        async with stranger.get(f"{server.url}/auth/me", headers=bearer(body["access_token"])) as r:
            assert await error_of(r) == (401, "token_invalid")
        async with stranger.get(f"{server.url}/auth/me", headers={
                **bearer(body["access_token"]), "Cookie": "__Secure-latch_fgp=forged"}) as r:
            assert await error_of(r) == (401, "token_invalid")
    async with aiohttp.ClientSession() as owner:
        async with owner.get(f"{server.url}/auth/me", headers={
                **bearer(body["access_token"]),
                "Cookie": f"__Secure-latch_fgp={fgp.value}"}) as r:
            assert r.status == 200


async def test_cookie_refresh_needs_csrf_header_and_origin(server: RunningServer,
                                                          http: aiohttp.ClientSession) -> None:
    async with http.post(f"{server.url}/auth/login", json={
            "username": "admin", "password": ADMIN[1], "transport": "cookie"}) as r:
        assert r.status == 200
    # The jar holds latch_rt (insecure dev cookies in this fixture).
    async with http.post(f"{server.url}/auth/refresh", headers={"Origin": server.url}) as r:
        assert await error_of(r) == (403, "forbidden")
    async with http.post(f"{server.url}/auth/refresh", headers={
            "Origin": "https://evil.example", "X-Requested-With": "fetch"}) as r:
        assert await error_of(r) == (403, "forbidden")
    async with http.post(f"{server.url}/auth/refresh", headers={
            "Origin": server.url, "X-Requested-With": "fetch"}) as r:
        assert r.status == 200, await r.text()
        body = await r.json()
    assert "refresh_token" not in body and body["access_token"]
    async with http.get(f"{server.url}/auth/me", headers=bearer(body["access_token"])) as r:
        assert r.status == 200, "the fingerprint cookie rides along in the jar"


# --- my sessions -------------------------------------------------------------------------


async def test_my_sessions_and_idor(server: RunningServer, http: aiohttp.ClientSession) -> None:
    await create_user(http, server, "mallory")
    phone = await login(http, server.url, *ADMIN, device="iPhone")
    laptop = await login(http, server.url, *ADMIN, device="Firefox on laptop")
    mallory = await login(http, server.url, "mallory", "user-password-123")
    async with http.get(f"{server.url}/auth/sessions", headers=bearer(phone["access_token"])) as r:
        assert r.status == 200
        listed = (await r.json())["sessions"]
    assert {s["device"] for s in listed} == {"iPhone", "Firefox on laptop"}
    assert [s["current"] for s in listed if s["id"] == phone["session_id"]] == [True]
    for s in listed:
        assert {"id", "device", "created_at", "last_seen_at", "ip", "user_agent", "current",
                "connections", "online"} <= set(s)
    # Mallory cannot see or kill the admin's session: 404, same as a session that doesn't exist.
    for sid in (phone["session_id"], "does-not-exist"):
        async with http.delete(f"{server.url}/auth/sessions/{sid}",
                               headers=bearer(mallory["access_token"])) as r:
            assert await error_of(r) == (404, "not_found")
    async with http.get(f"{server.url}/auth/me", headers=bearer(phone["access_token"])) as r:
        assert r.status == 200
    # The owner signs out the laptop from the phone.
    async with http.delete(f"{server.url}/auth/sessions/{laptop['session_id']}",
                           headers=bearer(phone["access_token"])) as r:
        assert r.status == 204
    async with http.get(f"{server.url}/auth/me", headers=bearer(laptop["access_token"])) as r:
        assert await error_of(r) == (401, "session_revoked")


# --- password -----------------------------------------------------------------------------


async def test_password_change_revokes_other_sessions(server: RunningServer,
                                                      http: aiohttp.ClientSession) -> None:
    await create_user(http, server, "pat", "old-password-1")
    here = await login(http, server.url, "pat", "old-password-1")
    there = await login(http, server.url, "pat", "old-password-1")
    url = f"{server.url}/auth/password"
    async with http.post(url, json={"old_password": "wrong-one!", "new_password": "new-password-2"},
                         headers=bearer(here["access_token"])) as r:
        assert await error_of(r) == (401, "invalid_credentials")
    async with http.post(url, json={"old_password": "old-password-1", "new_password": "short"},
                         headers=bearer(here["access_token"])) as r:
        assert await error_of(r) == (400, "bad_request")
    async with http.post(url, json={"old_password": "old-password-1", "new_password": 12345678},
                         headers=bearer(here["access_token"])) as r:
        assert await error_of(r) == (400, "bad_request")
    async with http.post(url, json={"old_password": "old-password-1",
                                    "new_password": "new-password-2"},
                         headers=bearer(here["access_token"])) as r:
        assert r.status == 204
    async with http.get(f"{server.url}/auth/me", headers=bearer(here["access_token"])) as r:
        assert r.status == 200
    async with http.get(f"{server.url}/auth/me", headers=bearer(there["access_token"])) as r:
        assert await error_of(r) == (401, "session_revoked")
    async with http.post(f"{server.url}/auth/login",
                         json={"username": "pat", "password": "old-password-1"}) as r:
        assert r.status == 401
    await login(http, server.url, "pat", "new-password-2")


async def test_unicode_password_is_normalised(server: RunningServer, http: aiohttp.ClientSession) -> None:
    # "é" precomposed at creation, decomposed (e + combining acute) at login: NFKC makes them one.
    await create_user(http, server, "zoe", "caf\u00e9-password")
    await login(http, server.url, "zoe", "cafe\u0301-password")


# --- service routes ------------------------------------------------------------------------


async def test_jwks_and_health(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/.well-known/jwks.json") as r:
        keys = (await r.json())["keys"]
    assert len(keys) == 1 and keys[0]["kty"] == "OKP" and "d" not in keys[0]
    async with http.get(f"{server.url}/healthz") as r:
        assert r.status == 200
    async with http.get(f"{server.url}/readyz") as r:
        assert r.status == 200


async def test_unknown_route_is_json_404(server: RunningServer, http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/nope") as r:
        assert await error_of(r) == (404, "not_found")
    async with http.get(f"{server.url}/auth/login") as r:
        assert await error_of(r) == (405, "method_not_allowed")
