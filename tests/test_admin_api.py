"""The admin REST API (docs/admin-api.md) and the dashboard's static files, on the real server.

Every route: 401 without a token, 403 ``forbidden`` for a normal user (who also
cannot change anything by guessing ids), then shapes, filters, pagination,
validation, the kills that reach real sockets, and the audit trail.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
import socketio

from app.audit import Actor
from app.services import SERVICES
from tests.support import RunningServer, login
from tests.support.waiting import wait_event, wait_for

ADMIN = ("admin", "admin-password-123")
PASSWORD = "user-password-123"
ClientFactory = Callable[..., socketio.AsyncClient]

ADMIN_ROUTES = [
    ("GET", "/admin/connections", None),
    ("GET", "/admin/sessions", None),
    ("POST", "/admin/sessions/SID/revoke", {}),
    ("POST", "/admin/users/UID/revoke", {}),
    ("GET", "/admin/users", None),
    ("POST", "/admin/users", {"username": "mallory2", "password": "mallory-password-1"}),
    ("PATCH", "/admin/users/UID", {"role": "admin"}),
    ("GET", "/admin/audit", None),
    ("GET", "/admin/events", None),
]


class Api:
    """A Bearer client for one signed-in user."""

    def __init__(self, http: aiohttp.ClientSession, url: str, grant: dict[str, Any]) -> None:
        self.http = http
        self.url = url
        self.grant = grant
        self.token: str = grant["access_token"]

    @property
    def user_id(self) -> str:
        return str(self.grant["user"]["id"])

    @property
    def session_id(self) -> str:
        return str(self.grant["session_id"])

    async def call(self, method: str, path: str, json: Any = None,
                   **kwargs: Any) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {self.token}", **kwargs.pop("headers", {})}
        async with self.http.request(method, self.url + path, json=json, headers=headers,
                                     **kwargs) as resp:
            body = await resp.json() if resp.content_type == "application/json" else None
            return resp.status, body

    async def ok(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        got, body = await self.call(method, path, json)
        assert got == status, f"{method} {path}: {got} {body}"
        return body

    async def error(self, method: str, path: str, json: Any = None, **kwargs: Any) -> tuple[
            int, str]:
        status, body = await self.call(method, path, json, **kwargs)
        assert status >= 400, f"{method} {path}: expected an error, got {status} {body}"
        return status, body["error"]["code"]


async def admin(server: RunningServer, http: aiohttp.ClientSession) -> Api:
    return Api(http, server.url, await login(http, server.url, *ADMIN, device="admin laptop"))


async def user(server: RunningServer, http: aiohttp.ClientSession, name: str,
               role: str = "user", device: str | None = None) -> Api:
    services = server.app[SERVICES]
    if await services.users.find_by_name(name) is None:
        await services.users.create(name, PASSWORD, role, actor=Actor.system("test"))
    grant = await login(http, server.url, name, PASSWORD, device=device or f"{name}'s phone")
    return Api(http, server.url, grant)


class Sock:
    """A real Socket.IO client and what the server told it before ending it."""

    def __init__(self, client: socketio.AsyncClient) -> None:
        self.client = client
        self.ended: dict[str, Any] | None = None
        self.gone = asyncio.Event()
        self.sid = ""
        client.on("session_ended", self._ended)
        client.on("disconnect", self._disconnect)

    async def _ended(self, data: dict[str, Any]) -> None:
        self.ended = data

    async def _disconnect(self, reason: str = "") -> None:
        self.gone.set()



async def connect(make_sio_client: ClientFactory, root: Api, api: Api) -> Sock:
    """Connect a socket as ``api``'s user; return once ``root`` (an admin) sees it listed."""
    sock = Sock(make_sio_client())
    await sock.client.connect(api.url, auth={"token": api.token}, transports=["websocket"],
                              wait_timeout=5)
    sock.sid = sock.client.get_sid() or ""
    await wait_for(lambda: listed(root, sock.sid), timeout=3.0, message="the socket listed")
    return sock


async def listed(root: Api, socket_id: str) -> bool:
    page = await root.ok("GET", "/admin/connections?limit=1000")
    return any(c["socket_id"] == socket_id for c in page["connections"])


async def _not(check: Any) -> bool:
    return not await check


# --- authorisation ---------------------------------------------------------------------------


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_every_admin_route_needs_a_token(server: RunningServer, http: aiohttp.ClientSession,
                                               method: str, path: str, body: Any) -> None:
    async with http.request(method, server.url + path.replace("SID", "x").replace("UID", "1"),
                            json=body) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"]["code"] == "token_missing"
        assert resp.headers["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(("method", "path", "body"), ADMIN_ROUTES)
async def test_every_admin_route_is_forbidden_to_a_normal_user(
        server: RunningServer, http: aiohttp.ClientSession, method: str, path: str,
        body: Any) -> None:
    root = await admin(server, http)
    mallory = await user(server, http, "mallory")
    # Real ids of someone else: a non-admin must not be able to act on them (IDOR).
    target = path.replace("SID", root.session_id).replace("UID", root.user_id)
    assert await mallory.error(method, target, body) == (403, "forbidden")
    if "UID" in path and method == "PATCH":
        # ...nor promote themselves.
        own = path.replace("UID", mallory.user_id)
        assert await mallory.error(method, own, body) == (403, "forbidden")
    # Nothing changed: the admin's session is alive, no user was created, no one promoted.
    users = await root.ok("GET", "/admin/users")
    assert {u["username"]: u["role"] for u in users["users"]} == {"admin": "admin",
                                                                  "mallory": "user"}
    audit = await root.ok("GET", "/admin/audit")
    assert {e["action"] for e in audit["entries"]} <= {"login", "user.create"}


async def test_a_demoted_admins_token_stops_working_at_once(
        server: RunningServer, http: aiohttp.ClientSession) -> None:
    root = await admin(server, http)
    bob = await user(server, http, "bob", role="admin")
    await bob.ok("GET", "/admin/users")
    await root.ok("PATCH", f"/admin/users/{bob.user_id}", {"role": "user"})
    # The old token still says role=admin, but its session was revoked (role_changed).
    assert (await bob.call("GET", "/admin/users"))[0] == 401
    bob = await user(server, http, "bob")
    assert await bob.error("GET", "/admin/users") == (403, "forbidden")


# --- connections -------------------------------------------------------------------------------


async def test_connections_lists_sockets_with_filters_and_pages(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice", device="Firefox on laptop")
    bob = await user(server, http, "bob")
    a1 = await connect(make_sio_client, root, alice)
    a2 = await connect(make_sio_client, root, alice)
    b1 = await connect(make_sio_client, root, bob)

    page = await root.ok("GET", "/admin/connections")
    assert (page["total"], page["users"], page["limit"], page["offset"]) == (3, 2, 100, 0)
    assert page["nodes"] == [{"node": "test-node", "sockets": 3}]
    assert [c["socket_id"] for c in page["connections"]] == [a1.sid, a2.sid, b1.sid]
    first = page["connections"][0]
    assert first["user"] == {"id": alice.user_id, "username": "alice", "role": "user"}
    assert (first["session_id"], first["device"], first["node"], first["transport"],
            first["ip"]) == (alice.session_id, "Firefox on laptop", "test-node", "websocket",
                             "127.0.0.1")
    assert first["expires_at"] > first["connected_at"] > 0
    assert "Python" in first["user_agent"]

    for query in (f"user={alice.user_id}", "user=alice", "user=ALICE",
                  f"session={alice.session_id}"):
        got = await root.ok("GET", f"/admin/connections?{query}")
        assert [c["socket_id"] for c in got["connections"]] == [a1.sid, a2.sid], query
        assert (got["total"], got["users"]) == (2, 1)
    assert (await root.ok("GET", "/admin/connections?node=test-node"))["total"] == 3
    other = await root.ok("GET", "/admin/connections?node=node-zz")
    assert (other["total"], other["connections"]) == (0, [])
    paged = await root.ok("GET", "/admin/connections?limit=2&offset=1")
    assert [c["socket_id"] for c in paged["connections"]] == [a2.sid, b1.sid]
    assert (paged["total"], paged["limit"], paged["offset"]) == (3, 2, 1)
    assert (await root.ok("GET", "/admin/connections?offset=3"))["connections"] == []

    await b1.client.disconnect()
    await wait_for(lambda: _not(listed(root, b1.sid)), timeout=3.0, message="b1 unlisted")
    assert (await root.ok("GET", "/admin/connections"))["total"] == 2


@pytest.mark.parametrize(("proxies", "expected"), [(None, "127.0.0.1"),
                                                    ("127.0.0.1/32", "203.0.113.9")])
async def test_client_ip_honours_forwarded_for_only_from_trusted_proxies(
        make_server: Callable[..., Any], http: aiohttp.ClientSession,
        make_sio_client: ClientFactory, proxies: str | None, expected: str) -> None:
    server = await make_server({"LATCH_TRUSTED_PROXIES": proxies})
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    client = make_sio_client()
    await client.connect(server.url, auth={"token": alice.token}, transports=["websocket"],
                         headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"},
                         wait_timeout=5)
    sid = client.get_sid() or ""
    await wait_for(lambda: listed(root, sid), timeout=3.0, message="the socket listed")
    [conn] = (await root.ok("GET", f"/admin/connections?session={alice.session_id}"))[
        "connections"]
    assert conn["ip"] == expected


@pytest.mark.parametrize("query", ["limit=0", "limit=1001", "limit=abc", "limit=-1", "limit=1.5",
                                   "offset=-1", "offset=x", "limit=%EF%BC%91"])
async def test_connections_rejects_bad_paging(server: RunningServer, http: aiohttp.ClientSession,
                                              query: str) -> None:
    root = await admin(server, http)
    assert await root.error("GET", f"/admin/connections?{query}") == (400, "bad_request")


async def test_an_unknown_user_filter_is_not_found(server: RunningServer,
                                                   http: aiohttp.ClientSession) -> None:
    root = await admin(server, http)
    for value in ("999", "nobody", "1%27%20OR%201=1"):
        assert await root.error("GET", f"/admin/connections?user={value}") == (404, "not_found")
        assert await root.error("GET", f"/admin/sessions?user={value}") == (404, "not_found")


# --- sessions -------------------------------------------------------------------------------------


async def test_sessions_show_who_is_online_with_filters_and_pages(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    alice2 = await user(server, http, "alice", device="tablet")
    await connect(make_sio_client, root, alice)
    await connect(make_sio_client, root, alice)
    await root.ok("POST", f"/admin/sessions/{alice2.session_id}/revoke")

    listing = await root.ok("GET", f"/admin/sessions?user={alice.user_id}")
    assert (listing["total"], listing["limit"], listing["offset"]) == (2, 100, 0)
    by_id = {s["id"]: s for s in listing["sessions"]}
    live = by_id[alice.session_id]
    assert (live["online"], live["connections"], live["device"]) == (True, 2, "alice's phone")
    assert live["user"] == {"id": alice.user_id, "username": "alice", "role": "user"}
    assert live["revoked_at"] is None
    dead = by_id[alice2.session_id]
    assert (dead["online"], dead["connections"]) == (False, 0)
    assert dead["revoked_at"] is not None and dead["revoked_reason"] == "session_revoked"

    active = await root.ok("GET", "/admin/sessions?user=alice&active=true")
    assert [s["id"] for s in active["sessions"]] == [alice.session_id]
    ended = await root.ok("GET", "/admin/sessions?user=alice&active=false")
    assert [s["id"] for s in ended["sessions"]] == [alice2.session_id]
    everyone = await root.ok("GET", "/admin/sessions?active=true")
    assert {s["id"] for s in everyone["sessions"]} == {alice.session_id, root.session_id}
    page = await root.ok("GET", "/admin/sessions?limit=1&offset=1")
    assert (len(page["sessions"]), page["total"]) == (1, 3)
    for bad in ("active=yes", "active=1", "limit=0", "offset=-2"):
        assert await root.error("GET", f"/admin/sessions?{bad}") == (400, "bad_request")


async def test_my_devices_say_which_sessions_are_online(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    phone = await user(server, http, "alice")
    laptop = await user(server, http, "alice", device="laptop")
    await connect(make_sio_client, root, phone)
    await connect(make_sio_client, root, phone)
    mine = await laptop.ok("GET", "/auth/sessions")
    by_id = {s["id"]: s for s in mine["sessions"]}
    assert (by_id[phone.session_id]["online"], by_id[phone.session_id]["connections"]) == (True, 2)
    assert (by_id[laptop.session_id]["online"], by_id[laptop.session_id]["connections"]) == (
        False, 0)
    assert by_id[laptop.session_id]["current"] is True


# --- kills ------------------------------------------------------------------------------------------


async def test_revoking_a_session_ends_its_sockets_and_is_audited(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    other = await user(server, http, "alice", device="other")
    sock = await connect(make_sio_client, root, alice)
    spared = await connect(make_sio_client, root, other)

    result = await root.ok("POST", f"/admin/sessions/{alice.session_id}/revoke",
                           {"reason": "lost phone"})
    assert result == {"revoked": True, "sessions": 1, "sockets": {
        "ended": 1, "confirmed": True,
        "nodes": [{"node": "test-node", "ended": 1, "confirmed": True}]}}
    await wait_event(sock.gone, 2.0, "the revoked socket to be disconnected")
    assert sock.ended is not None and sock.ended["code"] == "session_revoked"
    assert not spared.gone.is_set()
    assert (await alice.call("GET", "/auth/me"))[0] == 401

    [entry] = [e for e in (await root.ok("GET", "/admin/audit"))["entries"]
               if e["action"] == "session.revoke"]
    assert entry["actor"] == {"id": root.user_id, "username": "admin"}
    assert entry["target"] == f"session:{alice.session_id}"
    assert entry["ip"] == "127.0.0.1"
    assert entry["detail"]["reason"] == "lost phone"


async def test_revoke_session_errors(server: RunningServer, http: aiohttp.ClientSession) -> None:
    root = await admin(server, http)
    assert await root.error("POST", "/admin/sessions/nope/revoke") == (404, "not_found")
    assert await root.error("POST", f"/admin/sessions/{'x' * 65}/revoke") == (404, "not_found")
    sid = root.session_id
    assert await root.error("POST", f"/admin/sessions/{sid}/revoke", {"why": "x"}) == (
        400, "bad_request")
    assert await root.error("POST", f"/admin/sessions/{sid}/revoke", {"reason": 5}) == (
        400, "bad_request")
    assert await root.error("POST", f"/admin/sessions/{sid}/revoke", {"reason": "x" * 501}) == (
        400, "bad_request")
    assert await root.error("POST", f"/admin/sessions/{sid}/revoke", data="[1]",
                            headers={"Content-Type": "application/json"}) == (400, "bad_request")
    assert await root.error("POST", f"/admin/sessions/{sid}/revoke", data="reason=x",
                            headers={"Content-Type": "text/plain"}) == (
        415, "unsupported_media_type")
    await root.ok("GET", "/admin/users")  # none of that revoked anything


async def test_revoking_a_user_ends_every_session(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    phone = await user(server, http, "alice")
    laptop = await user(server, http, "alice", device="laptop")
    socks = [await connect(make_sio_client, root, api) for api in (phone, laptop, laptop)]

    result = await root.ok("POST", f"/admin/users/{phone.user_id}/revoke", {"reason": "offboard"})
    assert (result["revoked"], result["sessions"], result["sockets"]["ended"]) == (True, 2, 3)
    for sock in socks:
        await wait_event(sock.gone, 2.0, "every socket of the user to be disconnected")
        assert sock.ended is not None and sock.ended["code"] == "session_revoked"
    assert (await root.ok("GET", "/admin/connections"))["total"] == 0
    [entry] = [e for e in (await root.ok("GET", "/admin/audit"))["entries"]
               if e["action"] == "user.revoke"]
    assert (entry["target"], entry["detail"]["reason"], entry["detail"]["sessions"]) == (
        f"user:{phone.user_id}", "offboard", 2)


@pytest.mark.parametrize("user_id", ["999", "abc", "-1", "1e3", "0x1", "١"])
async def test_unknown_user_ids_are_not_found(server: RunningServer, http: aiohttp.ClientSession,
                                              user_id: str) -> None:
    root = await admin(server, http)
    assert await root.error("POST", f"/admin/users/{user_id}/revoke") == (404, "not_found")
    assert await root.error("PATCH", f"/admin/users/{user_id}", {"disabled": True}) == (
        404, "not_found")


# --- users ---------------------------------------------------------------------------------------------


async def test_users_list_pages_with_session_counts_and_online(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    await user(server, http, "alice", device="second")
    await user(server, http, "bob")
    await connect(make_sio_client, root, alice)

    listing = await root.ok("GET", "/admin/users")
    assert (listing["total"], listing["limit"], listing["offset"]) == (3, 100, 0)
    by_name = {u["username"]: u for u in listing["users"]}
    assert {k: by_name["alice"][k] for k in ("sessions_active", "online", "role", "disabled")} == {
        "sessions_active": 2, "online": True, "role": "user", "disabled": False}
    assert (by_name["bob"]["sessions_active"], by_name["bob"]["online"]) == (1, False)
    assert set(by_name["bob"]) == {"id", "username", "role", "disabled", "created_at",
                                   "updated_at", "sessions_active", "online"}
    page = await root.ok("GET", "/admin/users?limit=2&offset=2")
    assert [u["username"] for u in page["users"]] == ["bob"]
    assert await root.error("GET", "/admin/users?limit=5000") == (400, "bad_request")


async def test_create_user(server: RunningServer, http: aiohttp.ClientSession) -> None:
    root = await admin(server, http)
    created = await root.ok("POST", "/admin/users",
                            {"username": "carol", "password": "carol-password-1"}, status=201)
    assert created["user"]["username"] == "carol" and created["user"]["role"] == "user"
    assert created["user"]["disabled"] is False
    await login(http, server.url, "carol", "carol-password-1")
    boss = await root.ok("POST", "/admin/users", {"username": "dave", "role": "admin",
                                                  "password": "dave-password-12"}, status=201)
    assert boss["user"]["role"] == "admin"
    assert await root.error("POST", "/admin/users", {"username": "CAROL",
                                                     "password": "another-password-1"}) == (
        409, "conflict")
    for bad in ({"username": "eve"}, {"username": "eve", "password": "short"},
                {"username": "eve", "password": "eve-password-123", "role": "root"},
                {"username": 5, "password": "eve-password-123"},
                {"username": "eve", "password": "eve-password-123", "admin": True},
                {"username": "", "password": "eve-password-123"}):
        assert await root.error("POST", "/admin/users", bad) == (400, "bad_request"), bad
    assert await root.error("POST", "/admin/users", data="{", headers={
        "Content-Type": "application/json"}) == (400, "bad_request")
    creates = [e for e in (await root.ok("GET", "/admin/audit"))["entries"]
               if e["action"] == "user.create" and e["actor"] is not None
               and e["actor"]["username"] == "admin"]
    assert {e["detail"]["username"] for e in creates} == {"carol", "dave"}
    assert all("password" not in e["detail"] for e in creates)


async def test_disabling_a_user_ends_their_sockets(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    sock = await connect(make_sio_client, root, alice)
    answer = await root.ok("PATCH", f"/admin/users/{alice.user_id}", {"disabled": True})
    assert answer["user"]["disabled"] is True
    assert (answer["revoked"]["sessions"], answer["revoked"]["sockets"]["ended"]) == (1, 1)
    await wait_event(sock.gone, 2.0, "the disabled user's socket to end")
    assert sock.ended is not None and sock.ended["code"] == "user_disabled"
    async with http.post(f"{server.url}/auth/login",
                         json={"username": "alice", "password": PASSWORD}) as resp:
        assert resp.status == 401

    enabled = await root.ok("PATCH", f"/admin/users/{alice.user_id}", {"disabled": False})
    assert (enabled["user"]["disabled"], enabled["revoked"]) == (False, None)
    await login(http, server.url, "alice", PASSWORD)
    actions = [e["action"] for e in (await root.ok("GET", "/admin/audit"))["entries"]]
    assert "user.disable" in actions and "user.enable" in actions


async def test_changing_a_role_ends_the_users_sockets(
        server: RunningServer, http: aiohttp.ClientSession,
        make_sio_client: ClientFactory) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    sock = await connect(make_sio_client, root, alice)
    answer = await root.ok("PATCH", f"/admin/users/{alice.user_id}", {"role": "admin"})
    assert answer["user"]["role"] == "admin" and answer["revoked"]["sockets"]["ended"] == 1
    await wait_event(sock.gone, 2.0, "the promoted user's socket to end")
    assert sock.ended is not None and sock.ended["code"] == "role_changed"
    same = await root.ok("PATCH", f"/admin/users/{alice.user_id}", {"role": "admin"})
    assert same["revoked"] is None  # no change, nothing ended
    [entry] = [e for e in (await root.ok("GET", "/admin/audit"))["entries"]
               if e["action"] == "user.role"]
    assert (entry["target"], entry["actor"]["username"]) == (f"user:{alice.user_id}", "admin")


async def test_patch_validation(server: RunningServer, http: aiohttp.ClientSession) -> None:
    root = await admin(server, http)
    alice = await user(server, http, "alice")
    path = f"/admin/users/{alice.user_id}"
    for bad in ({}, {"role": None}, {"role": "root"}, {"disabled": "yes"}, {"disabled": 1},
                {"username": "x"}, {"role": "user", "password": "x"}):
        assert await root.error("PATCH", path, bad) == (400, "bad_request"), bad
    assert await root.error("PATCH", path, data="", headers={
        "Content-Type": "application/json"}) == (400, "bad_request")
    # The last active admin cannot be disabled or demoted.
    for change in ({"disabled": True}, {"role": "user"}):
        assert await root.error("PATCH", f"/admin/users/{root.user_id}", change) == (
            409, "conflict")


# --- audit ---------------------------------------------------------------------------------------------


async def test_audit_pages_newest_first(server: RunningServer, http: aiohttp.ClientSession) -> None:
    root = await admin(server, http)
    for n in range(5):
        await root.ok("POST", "/admin/users", {"username": f"u{n}", "password": "a-password-123"},
                      status=201)
    first = await root.ok("GET", "/admin/audit?limit=3")
    ids = [e["id"] for e in first["entries"]]
    assert ids == sorted(ids, reverse=True) and first["next_before"] == ids[-1]
    rest = await root.ok("GET", f"/admin/audit?limit=1000&before={first['next_before']}")
    assert all(e["id"] < ids[-1] for e in rest["entries"]) and rest["next_before"] is None
    entry = first["entries"][0]
    assert set(entry) == {"id", "at", "actor", "action", "target", "ip", "detail"}
    assert (entry["action"], entry["detail"]["username"]) == ("user.create", "u4")
    for bad in ("limit=0", "limit=1001", "before=0", "before=x"):
        assert await root.error("GET", f"/admin/audit?{bad}") == (400, "bad_request")


# --- the dashboard ---------------------------------------------------------------------------------------

SECURITY = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                               "base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}


def assert_secured(resp: aiohttp.ClientResponse) -> None:
    for name, value in SECURITY.items():
        assert resp.headers.get(name) == value, name


async def test_dashboard_is_served_with_strict_headers(server: RunningServer,
                                                       http: aiohttp.ClientSession) -> None:
    async with http.get(f"{server.url}/admin", allow_redirects=False) as resp:
        assert resp.status == 308 and resp.headers["Location"] == "/admin/"
        assert_secured(resp)
    async with http.get(f"{server.url}/admin/") as resp:
        assert resp.status == 200 and resp.content_type == "text/html"
        assert_secured(resp)
        page = await resp.text()
        assert '<script type="module" src="/admin/app.js">' in page
        assert "<script>" not in page  # no inline script: the CSP would block it
    for name, kind in (("app.js", "text/javascript"), ("app.css", "text/css"),
                       ("favicon.svg", "image/svg+xml")):
        async with http.get(f"{server.url}/admin/{name}") as resp:
            assert resp.status == 200 and resp.content_type == kind, name
            assert_secured(resp)


@pytest.mark.parametrize("path", [
    "/admin/..%2f..%2fapp%2fserver.py", "/admin/%2e%2e%2fREADME.md", "/admin/..%5c..%5cREADME.md",
    "/admin/.hidden.js", "/admin/nope.js", "/admin/index.html%00.js", "/admin/app.js%2f.x",
    "/admin/app.py", "/admin/%2e%2e"])
async def test_dashboard_refuses_anything_outside_its_directory(
        server: RunningServer, http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(f"{server.url}{path}", allow_redirects=False) as resp:
        assert resp.status == 404, path
        assert "import " not in await resp.text()
