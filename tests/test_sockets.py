"""The Socket.IO channel (CONTRACT §4) against the real app on port 0 with real clients.

Clients are ``socketio.AsyncClient`` (websocket, and polling → upgrade) and raw
aiohttp requests where a test needs to forge what a library client would not
send (a foreign ``Origin``, a token in the query string, an oversized packet).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import socketio

from app.audit import Actor
from app.services import SERVICES
from handlers import sockets as sockets_module
from handlers.sockets import GATEWAY_KEY
from tests.support import RunningServer, login, logout, refresh_rest
from tests.support.sockets import Recorder
from tests.support.tokens import assert_refusal, mint, token_exp
from tests.support.waiting import wait_event, wait_for, wait_future

ADMIN = ("admin", "admin-password-123")
USER_PASSWORD = "user-password-123"
ClientFactory = Callable[..., socketio.AsyncClient]
# What python-socketio's client reports for a server-side namespace disconnect
# (the JS client calls the same thing "io server disconnect").
SERVER_DISCONNECT = socketio.AsyncClient.reason.SERVER_DISCONNECT


# --- helpers ---------------------------------------------------------------------------


async def open_socket(make_sio_client: ClientFactory, server: RunningServer,
                      token: str | None, *, transports: list[str] | None = None,
                      headers: dict[str, str] | None = None,
                      auth: Any = None) -> tuple[socketio.AsyncClient, Recorder]:
    client = make_sio_client()
    seen = Recorder(client)
    if auth is None and token is not None:
        auth = {"token": token}
    await client.connect(server.url, auth=auth, headers=headers or {},
                         transports=transports or ["websocket"], wait_timeout=5)
    await seen.get("session")
    return client, seen


async def refused(make_sio_client: ClientFactory, url: str, *, auth: Any = None,
                  headers: dict[str, str] | None = None,
                  transports: list[str] | None = None,
                  namespaces: list[str] | None = None) -> Any:
    """Connect, expect a refusal, return the connect_error data the client got."""
    client = make_sio_client()
    seen = Recorder(client, (namespaces or ["/"])[0])
    with pytest.raises(socketio.exceptions.ConnectionError):
        await client.connect(url, auth=auth, headers=headers or {},
                             transports=transports or ["websocket"], namespaces=namespaces,
                             wait_timeout=5)
    return seen.connect_error


async def new_user(server: RunningServer, http: aiohttp.ClientSession,
                   name: str) -> dict[str, Any]:
    await server.app[SERVICES].users.create(name, USER_PASSWORD, "user",
                                            actor=Actor.system("test"))
    return await login(http, server.url, name, USER_PASSWORD)


async def call(client: socketio.AsyncClient, event: str, *args: Any) -> Any:
    return await client.call(event, args[0] if len(args) == 1 else (args or None),
                             timeout=3)


async def eio_open(http: aiohttp.ClientSession, url: str,
                   headers: dict[str, str] | None = None, query: str = "") -> tuple[int, str]:
    """The Engine.IO polling handshake, raw: (status, body)."""
    async with http.get(f"{url}/socket.io/?EIO=4&transport=polling{query}",
                        headers=headers or {}) as resp:
        return resp.status, await resp.text()


# --- handshake ---------------------------------------------------------------------------


async def test_connect_with_auth_token_gets_session_event(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, seen = await open_socket(make_sio_client, server, body["access_token"])
    session = await seen.get("session")
    assert session == {"user": body["user"], "session_id": body["session_id"],
                       "expires_at": token_exp(body["access_token"])}
    assert seen.names()[0] == "session"
    assert await call(client, "whoami") == {"ok": True, **session}
    assert server.app[GATEWAY_KEY].count() == 1


async def test_polling_then_upgrade(server: RunningServer, http: aiohttp.ClientSession,
                                    make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"],
                                  transports=["polling", "websocket"])
    await wait_for(lambda: client.transport() == "websocket", 5.0, message="upgrade")
    gateway = server.app[GATEWAY_KEY]
    sid = client.get_sid()
    assert sid is not None
    await wait_for(lambda: gateway.get(sid).transport == "websocket",  # type: ignore[union-attr]
                   3.0, message="the gateway to see the upgrade")
    assert (await call(client, "echo", {"n": 1})) == {"n": 1}


async def test_polling_only(server: RunningServer, http: aiohttp.ClientSession,
                            make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"],
                                  transports=["polling"])
    assert (await call(client, "whoami"))["session_id"] == body["session_id"]
    info = server.app[GATEWAY_KEY].get(client.get_sid())  # type: ignore[arg-type]
    assert info is not None and info.transport == "polling"
    assert info.ip == "127.0.0.1"


async def test_authorization_header(server: RunningServer, http: aiohttp.ClientSession,
                                    make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    _client, seen = await open_socket(
        make_sio_client, server, None,
        headers={"Authorization": f"Bearer {body['access_token']}"})
    assert (await seen.get("session"))["session_id"] == body["session_id"]


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_token_missing(server: RunningServer, make_sio_client: ClientFactory,
                             transports: list[str]) -> None:
    assert_refusal(await refused(make_sio_client, server.url, transports=transports),
                   "token_missing")
    assert_refusal(await refused(make_sio_client, server.url, auth={}), "token_missing")


@pytest.mark.parametrize("token", ["garbage", "a.b.c", "eyJhbGciOiJub25lIn0.e30.", "x" * 9000])
async def test_token_invalid(server: RunningServer, make_sio_client: ClientFactory,
                             token: str) -> None:
    assert_refusal(await refused(make_sio_client, server.url, auth={"token": token}),
                   "token_invalid")


@pytest.mark.parametrize("auth", [{"token": 123}, {"token": ["a"]}, "just-a-string"])
async def test_auth_of_the_wrong_shape(server: RunningServer, make_sio_client: ClientFactory,
                                       auth: Any) -> None:
    assert_refusal(await refused(make_sio_client, server.url, auth=auth), "token_invalid")


@pytest.mark.parametrize("header", ["Basic YWRtaW46cGFzcw==", "Bearer", "Bearer a b"])
async def test_bad_authorization_header(server: RunningServer, make_sio_client: ClientFactory,
                                        header: str) -> None:
    assert_refusal(await refused(make_sio_client, server.url,
                                 headers={"Authorization": header}), "token_invalid")


async def test_token_expired(server: RunningServer, http: aiohttp.ClientSession,
                             make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    old = mint(server, user_id=body["user"]["id"], session_id=body["session_id"],
               shift=-(server.settings.access_ttl + 5))
    assert_refusal(await refused(make_sio_client, server.url, auth={"token": old}),
                   "token_expired")


async def test_session_revoked(server: RunningServer, http: aiohttp.ClientSession,
                               make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    await logout(http, server.url, body["access_token"])
    for transports in (["websocket"], ["polling"]):
        assert_refusal(await refused(make_sio_client, server.url,
                                     auth={"token": body["access_token"]},
                                     transports=transports), "session_revoked")


async def test_user_disabled(server: RunningServer, http: aiohttp.ClientSession,
                             make_sio_client: ClientFactory) -> None:
    body = await new_user(server, http, "carol")
    _client, seen = await open_socket(make_sio_client, server, body["access_token"])
    await server.app[SERVICES].accounts.update(body["user"]["id"], disabled=True,
                                               actor=Actor.system("test"))
    ended = await seen.get("session_ended")
    assert ended["code"] == "user_disabled"
    await wait_event(seen.disconnected, 2.0, "disconnect")
    assert_refusal(await refused(make_sio_client, server.url,
                                 auth={"token": body["access_token"]}), "user_disabled")


async def test_token_in_query_string_is_refused(server: RunningServer,
                                                http: aiohttp.ClientSession,
                                                make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    token = body["access_token"]
    for query in (f"?token={token}", f"?access_token={token}", f"?t0={token}"):
        data = await refused(make_sio_client, server.url + query, auth={"token": token})
        assert_refusal(data, "token_invalid")
        assert "URL" in data["data"]["message"]
    assert server.app[GATEWAY_KEY].count() == 0


async def test_access_log_never_shows_a_query_token(
        tmp_path: Any, http: aiohttp.ClientSession, make_sio_client: ClientFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    from aiohttp import web

    from app.config import load_settings
    from app.server import create_app
    from handlers.access_log import AccessLogger

    settings = load_settings({"LATCH_DB": str(tmp_path / "a.db"),
                              "LATCH_KEYS_DIR": str(tmp_path / "keys"),
                              "LATCH_ADMIN_PASSWORD": ADMIN[1], "LATCH_NODE_ID": "log-node"})
    runner = web.AppRunner(create_app(settings), access_log_class=AccessLogger)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        host, port = runner.addresses[0][:2]
        url = f"http://{host}:{port}"
        body = await login(http, url, *ADMIN)
        token = body["access_token"]
        with caplog.at_level("DEBUG", logger="aiohttp.access"):
            await refused(make_sio_client, f"{url}?token={token}", auth={"token": token},
                          transports=["polling"])
        assert any("socket.io" in r.getMessage() for r in caplog.records)
        assert all(token not in r.getMessage() for r in caplog.records)
    finally:
        await runner.cleanup()


async def test_fingerprint_cookie_is_required_for_fgp_tokens(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    async with http.post(f"{server.url}/auth/login",
                         json={"username": ADMIN[0], "password": ADMIN[1],
                               "transport": "cookie"}) as resp:
        assert resp.status == 200
        body = await resp.json()
        fingerprint = resp.cookies["latch_fgp"].value
    token = body["access_token"]
    assert_refusal(await refused(make_sio_client, server.url, auth={"token": token}),
                   "token_invalid")
    assert_refusal(await refused(make_sio_client, server.url, auth={"token": token},
                                 headers={"Cookie": "latch_fgp=wrong-value"}),
                   "token_invalid")
    client, _ = await open_socket(make_sio_client, server, token,
                                  headers={"Cookie": f"latch_fgp={fingerprint}"})
    # refresh re-checks the handshake's cookie against the new token
    assert (await call(client, "refresh", {"token": token}))["ok"] is True


async def test_unknown_namespace_is_refused(server: RunningServer, http: aiohttp.ClientSession,
                                            make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    assert_refusal(await refused(make_sio_client, server.url,
                                 auth={"token": body["access_token"]}, namespaces=["/admin"]),
                   "invalid_namespace")
    assert server.app[GATEWAY_KEY].count() == 0


async def test_every_registered_namespace_authenticates(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        make_sio_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets_module, "NAMESPACES", ("/", "/chat"))
    server = await make_server()
    assert_refusal(await refused(make_sio_client, server.url, namespaces=["/chat"]),
                   "token_missing")
    body = await login(http, server.url, *ADMIN)
    client = make_sio_client()
    got: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    client.on("session", lambda data: got.set_result(data), namespace="/chat")
    await client.connect(server.url, auth={"token": body["access_token"]},
                         namespaces=["/chat"], transports=["websocket"], wait_timeout=5)
    assert (await wait_future(got, 3.0, "session on /chat"))["session_id"] == body["session_id"]
    assert (await client.call("whoami", namespace="/chat", timeout=3))["ok"] is True
    await logout(http, server.url, body["access_token"])
    await wait_for(lambda: not client.connected, 3.0, message="/chat socket ended")


# --- origin ----------------------------------------------------------------------------


async def test_same_origin_is_allowed_and_foreign_origin_refused(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    own = server.url
    assert (await eio_open(http, own, {"Origin": own}))[0] == 200
    assert (await eio_open(http, own))[0] == 200  # native clients send no Origin
    status, text = await eio_open(http, own, {"Origin": "https://evil.example"})
    assert status == 400 and "not an accepted origin" in text


async def test_forwarded_host_from_untrusted_peer_is_ignored(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    forged = {"Origin": "https://evil.example", "X-Forwarded-Host": "evil.example",
              "X-Forwarded-Proto": "https"}
    assert (await eio_open(http, server.url, forged))[0] == 400


async def test_forwarded_host_from_trusted_proxy_is_honoured(
        make_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    server = await make_server({"LATCH_TRUSTED_PROXIES": "127.0.0.1/32"})
    proxied = {"Origin": "https://app.example", "X-Forwarded-Host": "app.example",
               "X-Forwarded-Proto": "https"}
    assert (await eio_open(http, server.url, proxied))[0] == 200
    assert (await eio_open(http, server.url, {"Origin": "https://evil.example",
                                              "X-Forwarded-Host": "app.example",
                                              "X-Forwarded-Proto": "https"}))[0] == 400


async def test_configured_origins(make_server: Callable[..., Any],
                                  http: aiohttp.ClientSession) -> None:
    server = await make_server({"LATCH_ALLOWED_ORIGINS": "https://app.example"})
    async with http.get(f"{server.url}/socket.io/?EIO=4&transport=polling",
                        headers={"Origin": "https://app.example"}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == "https://app.example"
    assert (await eio_open(http, server.url, {"Origin": "https://other.example"}))[0] == 400


async def test_foreign_origin_websocket_is_refused(server: RunningServer,
                                                   http: aiohttp.ClientSession,
                                                   make_sio_client: ClientFactory) -> None:
    ws_url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(ws_url, headers={"Origin": "https://evil.example"})
    assert info.value.status == 400
    async with http.ws_connect(ws_url, headers={"Origin": server.url}) as ws:
        opened = await ws.receive_str()
        assert opened.startswith("0{")
    body = await login(http, server.url, *ADMIN)
    for transports in (["websocket"], ["polling"]):
        # Our own HTTP session: python-engineio leaks its own when the handshake fails.
        client = make_sio_client(http_session=http)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await client.connect(server.url, auth={"token": body["access_token"]},
                                 headers={"Origin": "https://evil.example"},
                                 transports=transports, wait_timeout=5)
    assert server.app[GATEWAY_KEY].count() == 0


# --- refresh ---------------------------------------------------------------------------


async def test_refresh_happy_path(server: RunningServer, http: aiohttp.ClientSession,
                                  make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    # re-sending the very token the socket holds is accepted
    same = await call(client, "refresh", {"token": body["access_token"]})
    assert same == {"ok": True, "expires_at": token_exp(body["access_token"])}
    fresh = await refresh_rest(http, server.url, body)
    ack = await call(client, "refresh", {"token": fresh["access_token"]})
    assert ack == {"ok": True, "expires_at": token_exp(fresh["access_token"])}
    assert (await call(client, "whoami"))["expires_at"] == ack["expires_at"]


async def test_refresh_applies_a_role_change(server: RunningServer,
                                             http: aiohttp.ClientSession,
                                             make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    demoted = mint(server, user_id=body["user"]["id"], session_id=body["session_id"],
                   role="user")
    assert (await call(client, "refresh", {"token": demoted}))["ok"] is True
    assert (await call(client, "whoami"))["user"]["role"] == "user"


async def test_refresh_with_another_users_token(server: RunningServer,
                                                http: aiohttp.ClientSession,
                                                make_sio_client: ClientFactory) -> None:
    admin = await login(http, server.url, *ADMIN)
    other = await new_user(server, http, "mallory")
    client, _ = await open_socket(make_sio_client, server, admin["access_token"])
    ack = await call(client, "refresh", {"token": other["access_token"]})
    assert ack["ok"] is False and ack["error"]["code"] == "session_mismatch"
    me = await call(client, "whoami")
    assert me["user"] == admin["user"] and me["session_id"] == admin["session_id"]


async def test_refresh_with_another_session_of_the_same_user(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    first = await login(http, server.url, *ADMIN)
    second = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, first["access_token"])
    ack = await call(client, "refresh", {"token": second["access_token"]})
    assert ack == {"ok": False, "error": {"code": "session_mismatch",
                                          "message": ack["error"]["message"]}}
    assert (await call(client, "whoami"))["session_id"] == first["session_id"]
    # the socket is still bound to the first session: killing it ends the socket
    await logout(http, server.url, first["access_token"])
    await wait_for(lambda: not client.connected, 3.0, message="socket ended")


async def test_refresh_with_expired_or_garbage_token_keeps_the_old_expiry(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    before = (await call(client, "whoami"))["expires_at"]
    expired = mint(server, user_id=body["user"]["id"], session_id=body["session_id"],
                   shift=-(server.settings.access_ttl + 5))
    ack = await call(client, "refresh", {"token": expired})
    assert ack["ok"] is False and ack["error"]["code"] == "token_expired"
    for garbage in ("garbage", "", "a.b.c"):
        ack = await call(client, "refresh", {"token": garbage})
        assert ack["ok"] is False and ack["error"]["code"] == "token_invalid", garbage
    assert (await call(client, "whoami"))["expires_at"] == before
    gateway = server.app[GATEWAY_KEY]
    assert gateway.expiry.scheduled(client.get_sid()) == before  # type: ignore[arg-type]


async def test_refresh_with_an_older_token_is_refused(server: RunningServer,
                                                      http: aiohttp.ClientSession,
                                                      make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    older = mint(server, user_id=body["user"]["id"], session_id=body["session_id"], shift=-30)
    ack = await call(client, "refresh", {"token": older})
    assert ack["ok"] is False and ack["error"]["code"] == "token_invalid"
    assert (await call(client, "whoami"))["expires_at"] == token_exp(body["access_token"])


async def test_refresh_with_a_revoked_sessions_token(server: RunningServer,
                                                     http: aiohttp.ClientSession,
                                                     make_sio_client: ClientFactory) -> None:
    live = await login(http, server.url, *ADMIN)
    dead = await login(http, server.url, *ADMIN)
    await logout(http, server.url, dead["access_token"])
    client, _ = await open_socket(make_sio_client, server, live["access_token"])
    ack = await call(client, "refresh", {"token": dead["access_token"]})
    assert ack["ok"] is False and ack["error"]["code"] == "session_revoked"


@pytest.mark.parametrize("payload", [None, "token", 42, [], {}, {"token": 7},
                                     {"token": None}, {"tok": "x"}])
async def test_refresh_payload_of_the_wrong_shape(server: RunningServer,
                                                  http: aiohttp.ClientSession,
                                                  make_sio_client: ClientFactory,
                                                  payload: Any) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    ack = await client.call("refresh", payload, timeout=3)
    assert ack["ok"] is False and ack["error"]["code"] == "bad_request"
    assert (await call(client, "whoami"))["ok"] is True


# --- expiry ----------------------------------------------------------------------------


@pytest.mark.slow
async def test_expiry_notice_then_session_ended_then_disconnect(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    server = await make_server({"LATCH_ACCESS_TTL": "3", "LATCH_REFRESH_NOTICE": "1"})
    body = await login(http, server.url, *ADMIN)
    exp = token_exp(body["access_token"])
    _client, seen = await open_socket(make_sio_client, server, body["access_token"])
    notice, notice_at = await seen.get_timed("token_expiring", 5.0)
    assert notice == {"expires_at": exp}
    assert exp - 1 <= notice_at < exp
    ended, ended_at = await seen.get_timed("session_ended", 5.0)
    assert ended["code"] == "token_expired" and ended["message"]
    await wait_event(seen.disconnected, 2.0, "disconnect")
    assert seen.disconnect_reason == SERVER_DISCONNECT
    assert seen.disconnected_at is not None and exp <= ended_at <= seen.disconnected_at < exp + 1
    assert seen.names() == ["session", "token_expiring", "session_ended"]
    assert server.app[GATEWAY_KEY].count() == 0


@pytest.mark.slow
async def test_refresh_before_expiry_keeps_the_socket(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    server = await make_server({"LATCH_ACCESS_TTL": "4", "LATCH_REFRESH_NOTICE": "3"})
    body = await login(http, server.url, *ADMIN)
    first_exp = token_exp(body["access_token"])
    client, seen = await open_socket(make_sio_client, server, body["access_token"])
    await seen.get("token_expiring", 5.0)
    # Refresh late enough that the new token expires at least 2 s after the first.
    await asyncio.sleep(max(0.0, first_exp - 1.2 - time.time()))
    fresh = await refresh_rest(http, server.url, body)
    new_exp = token_exp(fresh["access_token"])
    assert new_exp >= first_exp + 2
    assert (await call(client, "refresh", {"token": fresh["access_token"]})) == {
        "ok": True, "expires_at": new_exp}
    await asyncio.sleep(max(0.0, first_exp + 0.8 - time.time()))
    assert client.connected and "session_ended" not in seen.names()
    ended, at = await seen.get_timed("session_ended", 5.0)
    assert ended["code"] == "token_expired"
    assert new_exp <= at < new_exp + 1
    # one notice per token: the first at connect or exp-3, the second for the new token
    assert seen.names() == ["session", "token_expiring", "token_expiring", "session_ended"]


@pytest.mark.slow
async def test_many_sockets_expiring_together_all_end_within_a_second(
        make_server: Callable[..., Any], http: aiohttp.ClientSession) -> None:
    server = await make_server({"LATCH_ACCESS_TTL": "4", "LATCH_REFRESH_NOTICE": "0"})
    body = await login(http, server.url, *ADMIN)
    exp = token_exp(body["access_token"])
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    ended_at: list[float] = []
    many = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    async def one() -> None:
        async with many.ws_connect(url) as ws:
            assert (await ws.receive_str()).startswith("0")
            await ws.send_str("40" + json.dumps({"token": body["access_token"]}))
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    break
                if msg.data == "2":
                    await ws.send_str("3")
                elif msg.data.startswith("41"):
                    ended_at.append(time.time())
                    break

    count = 200
    async with many:
        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await wait_for(lambda: server.app[GATEWAY_KEY].count() == count, 10.0,
                       message=f"{count} sockets connected")
        await wait_future(asyncio.gather(*tasks), exp - time.time() + 5, "every socket ended")
    assert len(ended_at) == count
    assert exp <= min(ended_at) and max(ended_at) < exp + 1


# --- revocation through the gateway (LocalSockets) ---------------------------------------


async def test_logout_ends_the_sessions_sockets(server: RunningServer,
                                                http: aiohttp.ClientSession,
                                                make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    other = await login(http, server.url, *ADMIN)
    _a1, seen1 = await open_socket(make_sio_client, server, body["access_token"])
    _a2, seen2 = await open_socket(make_sio_client, server, body["access_token"],
                                  transports=["polling"])
    b, seen_b = await open_socket(make_sio_client, server, other["access_token"])
    await logout(http, server.url, body["access_token"])
    for seen in (seen1, seen2):
        ended = await seen.get("session_ended")
        assert ended == {"code": "logged_out", "message": ended["message"]}
        await wait_event(seen.disconnected, 2.0, "disconnect")
        assert seen.disconnect_reason == SERVER_DISCONNECT
    assert b.connected and (await call(b, "whoami"))["ok"] is True
    assert "session_ended" not in seen_b.names()


async def test_password_change_keeps_the_current_sessions_sockets(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    keep = await new_user(server, http, "dave")
    lose = await login(http, server.url, "dave", USER_PASSWORD)
    kept, _seen_kept = await open_socket(make_sio_client, server, keep["access_token"])
    _lost, seen_lost = await open_socket(make_sio_client, server, lose["access_token"])
    async with http.post(f"{server.url}/auth/password",
                         headers={"Authorization": f"Bearer {keep['access_token']}"},
                         json={"old_password": USER_PASSWORD,
                               "new_password": "another-password-456"}) as resp:
        assert resp.status == 204, await resp.text()
    assert (await seen_lost.get("session_ended"))["code"] == "password_changed"
    await wait_event(seen_lost.disconnected, 2.0, "disconnect")
    assert kept.connected and (await call(kept, "whoami"))["ok"] is True


async def test_end_all(server: RunningServer, http: aiohttp.ClientSession,
                       make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    clients = [await open_socket(make_sio_client, server, body["access_token"])
               for _ in range(3)]
    ended = await server.app[GATEWAY_KEY].end_all("session_revoked")
    assert ended == 3
    for _, seen in clients:
        assert (await seen.get("session_ended"))["code"] == "session_revoked"
        await wait_event(seen.disconnected, 2.0, "disconnect")
    assert await server.app[GATEWAY_KEY].end_all("session_revoked") == 0


async def test_connection_hooks(server: RunningServer, http: aiohttp.ClientSession,
                                make_sio_client: ClientFactory) -> None:
    gateway = server.app[GATEWAY_KEY]
    connected: list[Any] = []
    disconnected: list[Any] = []
    gateway.on_connect.append(connected.append)
    gateway.on_disconnect.append(disconnected.append)
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"],
                                  headers={"User-Agent": "pytest-agent"})
    (info,) = connected
    assert info.socket_id == client.get_sid()
    assert info.identity.session_id == body["session_id"]
    assert info.transport == "websocket" and info.user_agent == "pytest-agent"
    assert [c.socket_id for c in gateway.connections()] == [info.socket_id]
    await client.disconnect()
    await wait_for(lambda: disconnected, 3.0, message="disconnect hook")
    assert disconnected == [info] and gateway.count() == 0


# --- limits and abuse --------------------------------------------------------------------


async def test_unknown_events_and_reserved_names(server: RunningServer,
                                                 http: aiohttp.ClientSession,
                                                 make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    sid = client.get_sid()
    for name in ("nope", "session", "connect", "disconnect", "connect_error"):
        ack = await client.call(name, {"token": body["access_token"]}, timeout=3)
        assert ack["ok"] is False and ack["error"]["code"] == "unknown_event", name
    await client.emit("nope", {"x": 1})  # no ack asked: nothing comes back, nothing breaks
    await client.emit("disconnect")
    me = await call(client, "whoami")
    assert me["ok"] is True and me["session_id"] == body["session_id"]
    # a client-sent "disconnect" must not make the server forget the socket
    assert server.app[GATEWAY_KEY].expiry.scheduled(sid) == me["expires_at"]  # type: ignore[arg-type]


async def test_echo_and_whoami(server: RunningServer, http: aiohttp.ClientSession,
                               make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    payload = {"n": 1, "text": "hello", "list": [1, 2, None]}
    assert await call(client, "echo", payload) == payload
    assert await client.call("echo", timeout=3) is None
    me = await call(client, "whoami")
    assert me == {"ok": True, "user": body["user"], "session_id": body["session_id"],
                  "expires_at": token_exp(body["access_token"])}


async def test_a_failing_handler_is_answered_and_the_socket_survives(
        server: RunningServer, http: aiohttp.ClientSession, make_sio_client: ClientFactory,
        caplog: pytest.LogCaptureFixture) -> None:
    gateway = server.app[GATEWAY_KEY]

    async def boom(sock: Any, args: list[Any]) -> Any:
        raise RuntimeError("handler bug")

    gateway.events["boom"] = boom
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    ack = await call(client, "boom", {})
    assert ack == {"ok": False, "error": {"code": "internal_error", "message": "Internal error"}}
    assert "handler bug" in caplog.text
    assert (await call(client, "whoami"))["ok"] is True


@pytest.mark.parametrize("transports", [["websocket"], ["polling"]])
async def test_oversized_payload_drops_only_that_socket(
        server: RunningServer, http: aiohttp.ClientSession, make_sio_client: ClientFactory,
        transports: list[str]) -> None:
    body = await login(http, server.url, *ADMIN)
    bystander, _ = await open_socket(make_sio_client, server, body["access_token"])
    client, seen = await open_socket(make_sio_client, server, body["access_token"],
                                     transports=transports)
    assert server.settings.max_socket_payload == 64 * 1024
    await client.emit("echo", {"blob": "x" * (server.settings.max_socket_payload + 1024)})
    await wait_event(seen.disconnected, 5.0, "the oversized sender to be dropped")
    await wait_for(lambda: server.app[GATEWAY_KEY].count() == 1, 3.0,
                   message="the server to forget the dropped socket")
    assert (await call(bystander, "echo", {"ok": 1})) == {"ok": 1}


async def test_payload_under_the_limit_is_fine(server: RunningServer,
                                               http: aiohttp.ClientSession,
                                               make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    client, _ = await open_socket(make_sio_client, server, body["access_token"])
    blob = "x" * (60 * 1024)
    assert (await call(client, "echo", {"blob": blob})) == {"blob": blob}


async def test_event_flood_is_refused_then_dropped(server: RunningServer,
                                                   http: aiohttp.ClientSession,
                                                   make_sio_client: ClientFactory) -> None:
    body = await login(http, server.url, *ADMIN)
    bystander, _ = await open_socket(make_sio_client, server, body["access_token"])
    client, seen = await open_socket(make_sio_client, server, body["access_token"])
    burst = server.settings.socket_event_burst
    acks: list[Any] = []
    # A burst a little over the bucket: refused, not dropped.
    for i in range(burst + 5):
        await client.emit("echo", i, callback=lambda *a: acks.append(a[0] if a else None))
    await wait_for(lambda: len(acks) == burst + 5, 3.0, message="every ack")
    limited = [a for a in acks if isinstance(a, dict) and a.get("ok") is False]
    assert 1 <= len(limited) <= 6
    assert all(a["error"]["code"] == "rate_limited" for a in limited)
    assert client.connected
    # The bystander's latency is unaffected while the flooder keeps going.
    started = time.perf_counter()
    assert (await call(bystander, "whoami"))["ok"] is True
    assert time.perf_counter() - started < 0.5
    # Persistent flooding disconnects.
    for i in range(burst * 4):
        if not client.connected:
            break
        await client.emit("echo", i)
    await wait_event(seen.disconnected, 3.0, "the flooder to be dropped")
    assert seen.disconnect_reason == SERVER_DISCONNECT
    assert bystander.connected and (await call(bystander, "echo", 1)) == 1


async def test_engineio_session_without_namespace_is_closed(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets_module, "CONNECT_TIMEOUT", 0.3)
    server = await make_server()
    status, text = await eio_open(http, server.url)
    assert status == 200
    eio_sid = json.loads(text[1:])["sid"]
    poll = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={eio_sid}"

    async def closed() -> bool:
        async with http.get(poll) as resp:
            return resp.status == 400 or "1" in (await resp.text()).split("\x1e")

    await wait_for(closed, 3.0, message="the idle Engine.IO session to be closed")


async def test_connected_socket_outlives_the_connect_deadline(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        make_sio_client: ClientFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sockets_module, "CONNECT_TIMEOUT", 0.2)
    server = await make_server()
    body = await login(http, server.url, *ADMIN)
    client, seen = await open_socket(make_sio_client, server, body["access_token"],
                                     transports=["polling", "websocket"])
    await asyncio.sleep(0.6)
    assert client.connected and not seen.disconnected.is_set()
    assert (await call(client, "whoami"))["ok"] is True


async def test_a_socket_ended_while_connecting_is_ended_right_after_its_connect(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    """A revocation landing between the handshake check and the CONNECT ack still wins."""
    from handlers.sockets import SIO_KEY

    gateway = server.app[GATEWAY_KEY]
    sio = server.app[SIO_KEY]
    announced: list[Any] = []
    gateway.on_connect.append(announced.append)
    gateway.on_disconnect.append(announced.append)
    original = sio.after_connect
    assert original is not None

    async def revoke_first(eio_sid: str, namespace: str) -> None:
        sid = sio.manager.sid_from_eio_sid(eio_sid, namespace)
        assert await gateway.end_socket(sid, "session_revoked")
        await original(eio_sid, namespace)

    sio.after_connect = revoke_first
    body = await login(http, server.url, *ADMIN)
    client = make_sio_client()
    seen = Recorder(client)
    await client.connect(server.url, auth={"token": body["access_token"]},
                         transports=["websocket"], wait_timeout=5)
    ended = await seen.get("session_ended")
    assert ended["code"] == "session_revoked"
    await wait_event(seen.disconnected, 2.0, "disconnect")
    assert "session" not in seen.names()
    assert announced == [] and gateway.count() == 0


# --- the room index under python-socketio's manager ---------------------------------------


async def test_room_index_behaves_like_the_stock_manager() -> None:
    """The O(own rooms) disconnect leaves exactly what python-socketio's full scan leaves."""
    import random

    from handlers.socket_manager import IndexedAsyncManager, with_room_index

    class FakeEio:
        def __init__(self) -> None:
            self.n = 0

        def generate_id(self) -> str:
            self.n += 1
            return f"s{self.n}"

    class FakeServer:
        packet_class = socketio.packet.Packet

        def __init__(self) -> None:
            self.eio = FakeEio()

    stock = socketio.AsyncManager()
    indexed = IndexedAsyncManager()
    swapped = with_room_index(socketio.AsyncManager())
    managers = [stock, indexed, swapped]
    for m in managers:
        m.set_server(FakeServer())
    rng = random.Random(7)
    sids: list[str] = []
    rooms = [f"room{i}" for i in range(6)]

    for step in range(3000):
        op = rng.random()
        if op < 0.25 or not sids:
            new = [await m.pre_connect(f"e{step}", "/") for m in managers]
            assert len(set(new)) == 1
            for m in managers:
                await m.connect(new[0], "/")
            sids.append(new[0])
        elif op < 0.55:
            sid, room = rng.choice(sids), rng.choice(rooms)
            for m in managers:
                m.basic_enter_room(sid, "/", room)
        elif op < 0.7:
            sid, room = rng.choice(sids), rng.choice(rooms)
            for m in managers:
                m.basic_leave_room(sid, "/", room)
        elif op < 0.75:
            room = rng.choice(rooms)
            for m in managers:
                m.basic_close_room(room, "/")
        else:
            sid = sids.pop(rng.randrange(len(sids)))
            for m in managers:
                m.pre_disconnect(sid, "/")
                await m.disconnect(sid, "/", ignore_queue=True)
        snapshot = [{ns: {r: dict(members) for r, members in table.items()}
                     for ns, table in m.rooms.items()} for m in managers]
        assert snapshot[0] == snapshot[1] == snapshot[2], step
        assert stock.pending_disconnect == indexed.pending_disconnect
        probe = rng.choice(sids) if sids else "nobody"
        assert sorted(stock.get_rooms(probe, "/"), key=str) == \
            sorted(indexed.get_rooms(probe, "/"), key=str)
    for sid in list(sids):
        for m in managers:
            m.pre_disconnect(sid, "/")
            await m.disconnect(sid, "/", ignore_queue=True)
    assert stock.rooms == indexed.rooms == swapped.rooms == {}
    assert not any(indexed._joined.values())
