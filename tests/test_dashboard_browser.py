"""The admin dashboard (static/admin/) in a real browser: Debian's Chromium driven by Playwright.

An admin signs in, watches a test client's socket appear live (no reload),
forces it out, and the client receives ``session_ended`` / ``session_revoked``.
Hostile user names are shown as text; the page runs under its CSP without a
console error; it fits a phone's width; the session survives a reload through
the HttpOnly refresh cookie alone.

With ``LATCH_SCREENSHOTS_DIR`` set, ``test_connections_overview_and_cancelled_logout``
also saves the README's screenshots there (``connections.png``, ``force-logout.png``):

    LATCH_SCREENSHOTS_DIR=docs/screenshots pytest tests/test_dashboard_browser.py -k overview
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from app.audit import Actor
from app.services import SERVICES
from tests.support import CHROMIUM_ARGS, RunningServer, login
from tests.support.sockets import Probe
from tests.support.tokens import ShiftedClock
from tests.support.waiting import wait_for

if TYPE_CHECKING:
    from playwright.async_api import Browser, ConsoleMessage, Page

ADMIN = ("admin", "admin-password-123")
PASSWORD = "user-password-123"
XSS_NAME = "<img src=x onerror=window.__pwned=1>"
NODE = "test-node"  # LATCH_NODE_ID of make_server
UI_TIMEOUT = 10_000  # ms, for expect() and waits on the page
ServerFactory = Callable[..., Any]


@pytest.fixture
async def browser(chromium_path: str) -> AsyncIterator[Browser]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS,
                                            headless=True)
        try:
            yield launched
        finally:
            await launched.close()


async def add_user(server: RunningServer, name: str) -> str:
    user = await server.app[SERVICES].users.create(name, PASSWORD, "user",
                                                   actor=Actor.system("test"))
    return user.id


async def connect(probes: Any, http: aiohttp.ClientSession, server: RunningServer, name: str, *,
                  device: str, user_agent: str = "python-socketio test client",
                  transport: str = "websocket", ip: str | None = None,
                  grant: dict[str, Any] | None = None) -> tuple[Probe, dict[str, Any]]:
    """Sign ``name`` in (body transport) unless ``grant`` is given, and open a socket with it.

    ``ip`` is sent as X-Forwarded-For (it counts only where 127.0.0.1 is a trusted proxy).
    """
    grant = grant or await login(http, server.url, name, PASSWORD, device=device)
    headers = {"User-Agent": user_agent, **({"X-Forwarded-For": ip} if ip else {})}
    probe = await probes.connect(server.url, grant["access_token"], transports=[transport],
                                 headers=headers)
    return probe, grant


def socket_id(probe: Probe) -> str:
    sid = probe.client.get_sid("/")
    assert sid, "the probe has no socket id"
    return sid


def was_ended(probe: Probe) -> bool:
    return any(event == "session_ended" for event, _, _ in probe.events)


async def sign_in(page: Page, server: RunningServer, *, navigate: bool = True) -> None:
    """Open /admin/, sign in as admin, and wait for the live feed and the first snapshot."""
    from playwright.async_api import expect

    if navigate:
        await page.goto(f"{server.url}/admin/")
    await expect(page.locator("#login-username")).to_be_visible(timeout=UI_TIMEOUT)
    await page.fill("#login-username", ADMIN[0])
    await page.fill("#login-password", ADMIN[1])
    await page.click("#login-submit")
    await expect(page.locator("#dashboard")).to_be_visible(timeout=UI_TIMEOUT)
    await expect(page.locator("#login-error")).to_be_empty()
    await expect(page.locator("#whoami")).to_have_text(ADMIN[0])
    # The feed is open ("hello" seen) and the snapshot is in: what follows arrives as events.
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live",
                                                                  timeout=UI_TIMEOUT)
    await expect(page.locator("#connections .empty")).not_to_have_text(re.compile("Loading"),
                                                                     timeout=UI_TIMEOUT)


def row(page: Page, probe: Probe) -> Any:
    """The probe's socket row; make it while the probe is connected (the id dies with it)."""
    return page.locator(f'#connections tr[data-socket-id="{socket_id(probe)}"]')


def watch_console(page: Page) -> list[str]:
    """Collect console errors and warnings (CSP violations are reported there) and page errors.

    One error is expected and left out: on load the page cannot see its HttpOnly
    refresh cookie, so it asks ``POST /auth/refresh``; with no cookie that is a
    401 (the contract's ``refresh_invalid``), which Chromium logs as a failed load.
    """
    problems: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        url = str(msg.location.get("url", ""))
        if msg.type not in ("error", "warning"):
            return
        if url.endswith("/auth/refresh") and "status of 401" in msg.text:
            return
        problems.append(f"console.{msg.type}: {msg.text} ({url})")

    page.on("console", on_console)
    page.on("pageerror", lambda exc: problems.append(f"pageerror: {exc}"))
    return problems


# --- force logout -------------------------------------------------------------------------------


async def test_admin_signs_in_sees_socket_live_and_forces_logout(
        server: RunningServer, http: aiohttp.ClientSession, probes: Any, browser: Browser) -> None:
    from playwright.async_api import expect

    user_id = await add_user(server, XSS_NAME)
    page = await browser.new_page()
    problems = watch_console(page)
    await sign_in(page, server)
    await expect(page.locator("#connections .empty")).to_have_text("No one is connected.")

    # The socket opens after the page has loaded: it must show up without a reload.
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    probe, grant = await connect(probes, http, server, XSS_NAME, device="Test laptop")
    socket_row = row(page, probe)
    await expect(socket_row).to_be_visible(timeout=UI_TIMEOUT)
    assert navigations == [], f"the page navigated: {navigations}"
    await expect(page.locator("#count-sockets")).to_have_text("1")
    await expect(page.locator("#count-users")).to_have_text("1")

    # The hostile name is text, not markup.
    group = page.locator(f'#connections tbody[data-user-id="{user_id}"]')
    await expect(group.locator(".user-name")).to_have_text(XSS_NAME)
    await expect(socket_row).to_contain_text(XSS_NAME)  # its screen-reader label
    await expect(page.locator("#connections img")).to_have_count(0)
    assert await page.evaluate("typeof window.__pwned") == "undefined"

    await page.click(f'button[data-action="revoke-session"][data-session-id="{grant["session_id"]}"]')
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible(timeout=UI_TIMEOUT)
    await expect(dialog).to_contain_text(XSS_NAME)
    await expect(dialog).to_contain_text("Test laptop")
    await expect(dialog.locator("img")).to_have_count(0)
    assert not was_ended(probe), "revoked before the confirmation"
    await page.click("#confirm-ok")
    await expect(dialog).to_be_hidden(timeout=UI_TIMEOUT)

    assert await probe.ended(timeout=5.0) == "session_revoked"
    notice = page.locator("#kill-result")
    await expect(notice).to_contain_text(f"Ended 1 socket: {NODE} 1 ✓", timeout=UI_TIMEOUT)
    await expect(notice).to_contain_text(XSS_NAME)
    await expect(notice).to_have_attribute("data-kind", "ok")
    await expect(socket_row).to_have_count(0, timeout=UI_TIMEOUT)
    await expect(page.locator("#count-sockets")).to_have_text("0")
    await expect(page.locator("img")).to_have_count(0)
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert problems == [], problems


async def test_user_logout_everywhere_from_dashboard(
        server: RunningServer, http: aiohttp.ClientSession, probes: Any, browser: Browser) -> None:
    from playwright.async_api import expect

    user_id = await add_user(server, "dana")
    bystander_id = await add_user(server, "erin")
    page = await browser.new_page()
    await sign_in(page, server)
    phone, phone_grant = await connect(probes, http, server, "dana", device="Pixel 8")
    laptop, laptop_grant = await connect(probes, http, server, "dana", device="Firefox on laptop",
                                         transport="polling")
    other, _ = await connect(probes, http, server, "erin", device="iPad")
    assert phone_grant["session_id"] != laptop_grant["session_id"]
    for probe in (phone, laptop, other):
        await expect(row(page, probe)).to_be_visible(timeout=UI_TIMEOUT)
    await expect(page.locator("#count-sockets")).to_have_text("3")
    await expect(page.locator("#count-users")).to_have_text("2")
    await expect(row(page, laptop)).to_contain_text("polling")

    await page.click(f'button[data-action="revoke-user"][data-user-id="{user_id}"]')
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible(timeout=UI_TIMEOUT)
    await expect(dialog).to_contain_text("Log out dana everywhere?")
    await expect(dialog).to_contain_text("2 connected sessions (2 sockets)")
    await page.click("#confirm-ok")

    assert await phone.ended(timeout=5.0) == "session_revoked"
    assert await laptop.ended(timeout=5.0) == "session_revoked"
    await expect(page.locator("#kill-result")).to_contain_text(
        f"Ended 2 sockets: {NODE} 2 ✓ · 2 sessions revoked", timeout=UI_TIMEOUT)
    await expect(page.locator(f'#connections tbody[data-user-id="{user_id}"]')).to_have_count(
        0, timeout=UI_TIMEOUT)
    # Another user's socket is untouched.
    await expect(page.locator(f'#connections tbody[data-user-id="{bystander_id}"]')).to_have_count(1)
    assert other.client.connected and not was_ended(other)
    await expect(page.locator("#count-sockets")).to_have_text("1")


# --- the page itself ----------------------------------------------------------------------------


async def test_dashboard_headers_and_no_console_errors(server: RunningServer,
                                                       browser: Browser) -> None:
    from playwright.async_api import expect

    page = await browser.new_page()
    problems = watch_console(page)
    failed: list[str] = []
    page.on("requestfailed", lambda req: failed.append(f"{req.method} {req.url}: {req.failure}")
            if "/admin/events" not in req.url else None)  # the feed is aborted on page close
    # Not the boot probe's 401 from /auth/refresh (see watch_console); a refresh that
    # should have worked shows up below as a sign-in that never completes.
    page.on("response", lambda resp: failed.append(f"HTTP {resp.status} {resp.url}")
            if resp.status >= 400 and not resp.url.endswith("/auth/refresh") else None)

    response = await page.goto(f"{server.url}/admin/")
    assert response is not None and response.status == 200
    headers = await response.all_headers()
    csp = headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp, csp
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp, csp
    assert headers.get("x-content-type-options") == "nosniff"
    assert headers.get("referrer-policy") == "no-referrer"

    await sign_in(page, server, navigate=False)
    await page.click("#nav-users")
    await expect(page.locator("#view-users")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"#/users$"))
    await expect(page.locator("#users tbody tr", has_text="admin")).to_have_count(1,
                                                                                  timeout=UI_TIMEOUT)
    await page.click("#nav-audit")
    await expect(page.locator("#view-audit")).to_be_visible()
    await expect(page.locator("#audit tbody tr").first).to_be_visible(timeout=UI_TIMEOUT)
    await page.click("#nav-connections")
    await expect(page.locator("#view-connections")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    assert problems == [], problems
    assert failed == [], failed


async def test_narrow_window(server: RunningServer, http: aiohttp.ClientSession, probes: Any,
                             browser: Browser) -> None:
    from playwright.async_api import expect

    await add_user(server, "frank.with.a.rather.long.username")
    page = await browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    await sign_in(page, server)
    probe, grant = await connect(
        probes, http, server, "frank.with.a.rather.long.username",
        device="Samsung Galaxy S24 Ultra — Latch companion app (beta channel)",
        user_agent="Mozilla/5.0 (Linux; Android 14; SM-S928B) AppleWebKit/537.36 (KHTML, like "
                   "Gecko) Chrome/125.0.0.0 Mobile Safari/537.36")
    await expect(row(page, probe)).to_be_visible(timeout=UI_TIMEOUT)
    button = page.locator(
        f'button[data-action="revoke-session"][data-session-id="{grant["session_id"]}"]')
    await button.scroll_into_view_if_needed()
    await expect(button).to_be_in_viewport()
    widths = await page.evaluate(
        "[document.documentElement.scrollWidth, document.body.scrollWidth, window.innerWidth]")
    assert max(widths[:2]) <= widths[2], f"horizontal scrolling: scrollWidth/innerWidth {widths}"


async def test_secure_cookie_session_survives_reload(make_server: ServerFactory,
                                                     browser: Browser) -> None:
    """Default (Secure, ``__Secure-``) cookies: Chromium counts http://127.0.0.1 as secure."""
    from playwright.async_api import expect

    server = await make_server({"LATCH_INSECURE_COOKIES": None})
    assert not server.settings.insecure_cookies
    context = await browser.new_context()
    page = await context.new_page()
    await sign_in(page, server)

    cookies = {c["name"]: c for c in await context.cookies()}
    refresh = cookies.get("__Secure-latch_rt")
    assert refresh is not None, f"no __Secure-latch_rt cookie was stored: {sorted(cookies)}"
    assert refresh["httpOnly"] and refresh["secure"] and refresh["path"] == "/auth"
    assert refresh["sameSite"] == "Strict"
    assert all(c["httpOnly"] for c in cookies.values()), cookies

    async def stored() -> str:
        return str(await page.evaluate(
            "JSON.stringify([Object.entries(localStorage), Object.entries(sessionStorage),"
            " document.cookie])"))

    before = await stored()
    assert before == '[[],[],""]', before

    # A reload loses the in-memory token; the refresh cookie alone brings the session back.
    async with page.expect_response(lambda r: r.url.endswith("/auth/refresh")) as answer:
        await page.reload()
    assert (await answer.value).status == 200
    await expect(page.locator("#dashboard")).to_be_visible(timeout=UI_TIMEOUT)
    await expect(page.locator("#signin")).to_be_hidden()
    await expect(page.locator("#whoami")).to_have_text(ADMIN[0])
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live",
                                                                  timeout=UI_TIMEOUT)
    after = await stored()
    assert after == '[[],[],""]', after
    rotated = {c["name"]: c for c in await context.cookies()}["__Secure-latch_rt"]
    assert rotated["value"] != refresh["value"], "the refresh token was not rotated"

    # Signing out ends the session: a reload then shows the sign-in form.
    await page.click("#logout")
    await expect(page.locator("#login-username")).to_be_visible(timeout=UI_TIMEOUT)
    await page.reload()
    await expect(page.locator("#login-username")).to_be_visible(timeout=UI_TIMEOUT)
    await expect(page.locator("#dashboard")).to_be_hidden()


# --- overview, cancel, and the README's screenshots ---------------------------------------------


async def jump(page: Page, *, to: float) -> None:
    """Move the page's (installed, running) clock forward to epoch seconds ``to``."""
    now = float(await page.evaluate("Date.now()")) / 1000
    await page.clock.fast_forward(max(0, round((to - now) * 1000)))


# (user, device, User-Agent, transport, client IP behind the proxy, minutes ago). Carol's two
# browser tabs share one session. Addresses are from the documentation ranges (RFC 5737/3849).
_MAC_CHROME = ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like "
               "Gecko) Chrome/126.0.0.0 Safari/537.36")
FLEET = [
    ("alice", "Safari on iPhone 15",
     "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
     "Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "websocket", "198.51.100.23", 9.5),
    ("carol", "Chrome on MacBook Pro", _MAC_CHROME, "websocket", "203.0.113.77", 7.2),
    ("bob", "Latch for Android · Pixel 8", "LatchApp/2.4.1 (Android 14; Pixel 8) okhttp/4.12.0",
     "polling", "2001:db8:4a1::17", 5.1),
    ("carol", "Chrome on MacBook Pro", _MAC_CHROME, "websocket", "203.0.113.77", 3.4),
    ("alice", "Firefox on ThinkPad",
     "Mozilla/5.0 (X11; Linux x86_64; rv:127.0) Gecko/20100101 Firefox/127.0", "websocket",
     "192.0.2.140", 0.4),
]


async def test_connections_overview_and_cancelled_logout(
        make_server: ServerFactory, http: aiohttp.ClientSession, probes: Any,
        browser: Browser) -> None:
    """Three users, five sockets, both transports; cancelling the confirmation revokes nothing."""
    from playwright.async_api import expect

    shots = os.environ.get("LATCH_SCREENSHOTS_DIR")
    clock = ShiftedClock()
    # A node behind a reverse proxy on this host, as deployed (the IPs come from X-Forwarded-For).
    server = await make_server({"LATCH_NODE_ID": "node-a", "LATCH_TRUSTED_PROXIES": "127.0.0.1"},
                               clock=clock)
    for name in ("alice", "bob", "carol"):
        await add_user(server, name)

    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    problems = watch_console(page)
    # The page's own clock starts ten minutes back and jumps forward as the sockets
    # arrive, so the chart shows a history; the server's clock matches each jump. (A jump
    # of over 45 s also trips the feed's silence watchdog: the page reconnects on its own.)
    # The admin signs in at the start of that history, so that no later jump of the
    # server's clock puts the admin's token before its own "nbf".
    started = time.time()
    clock.shift = -600.0
    await page.clock.install(time=started - 600)
    await sign_in(page, server)
    grants: dict[str, dict[str, Any]] = {}
    fleet: list[tuple[str, Probe]] = []
    for name, device, agent, transport, ip, minutes in FLEET:
        at = started - minutes * 60
        await jump(page, to=at)
        clock.shift = at - time.time()
        probe, grants[device] = await connect(probes, http, server, name, device=device,
                                              user_agent=agent, transport=transport, ip=ip,
                                              grant=grants.get(device))
        fleet.append((name, probe))
        await expect(row(page, probe)).to_be_visible(timeout=UI_TIMEOUT)
    clock.shift = 0.0
    await jump(page, to=time.time())
    # The page learns the server's clock from each answer's Date header; after the jump
    # its last estimate is stale until the next answer, so ask for one (the Users tab).
    await page.click("#nav-users")
    await expect(page.locator("#users tbody tr", has_text="carol")).to_have_count(1,
                                                                                  timeout=UI_TIMEOUT)
    await page.click("#nav-connections")
    await expect(page.locator("#view-connections")).to_be_visible()
    await expect(page.locator("#live-status")).to_have_attribute("data-state", "live",
                                                                  timeout=UI_TIMEOUT)
    # ...and let the once-a-second tick redraw the ages with it.
    newest = row(page, fleet[-1][1]).locator("time").first

    async def age_is_right() -> bool:
        shown = re.fullmatch(r"(?:(\d+)m )?(\d+)s", await newest.inner_text())
        real = time.time() - (started - FLEET[-1][-1] * 60)
        return shown is not None and abs(int(shown[1] or 0) * 60 + int(shown[2]) - real) <= 3

    await wait_for(age_is_right, UI_TIMEOUT / 1000, interval=0.1,
                   message="the newest socket's age to match the server's clock")

    await expect(page.locator("#count-sockets")).to_have_text("5")
    await expect(page.locator("#count-users")).to_have_text("3")
    await expect(page.locator("#count-nodes")).to_have_text("1")
    await expect(page.locator("#connections tbody.user-group")).to_have_count(3)
    await expect(page.locator("#connections tr.session-row")).to_have_count(4)
    await expect(page.locator("#connections tr.socket-row", has_text="polling")).to_have_count(1)
    await expect(page.locator("#connections tr.socket-row", has_text="node-a")).to_have_count(5)
    await expect(page.locator("#connections tr.socket-row", has_text="2001:db8:4a1::17")
                 ).to_have_count(1)
    await expect(page.locator("#connections tbody.user-group .user-name")).to_have_text(
        ["alice", "bob", "carol"])
    await expect(page.locator("#chart-summary")).to_have_text("now 5 · peak 5 · low 0")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(Path(shots) / "connections.png"))

    # Ask to log out alice's iPhone, look, and cancel: nothing happens.
    iphone = grants["Safari on iPhone 15"]["session_id"]
    await page.click(f'button[data-action="revoke-session"][data-session-id="{iphone}"]')
    dialog = page.locator("#confirm-dialog")
    await expect(dialog).to_be_visible(timeout=UI_TIMEOUT)
    await expect(dialog).to_contain_text("Log out this session?")
    await expect(dialog).to_contain_text("User alice on Safari on iPhone 15.")
    await expect(page.locator("#confirm-cancel")).to_be_focused()
    if shots:
        await page.screenshot(path=str(Path(shots) / "force-logout.png"))
    await page.click("#confirm-cancel")
    await expect(dialog).to_be_hidden()
    await expect(page.locator("#count-sockets")).to_have_text("5")
    await expect(page.locator("#kill-result")).to_be_empty()
    for name, probe in fleet:
        assert probe.client.connected and not was_ended(probe), name
    async with http.get(f"{server.url}/admin/sessions?active=true", headers={
            "Authorization": f"Bearer {(await login(http, server.url, *ADMIN))['access_token']}",
    }) as resp:
        assert resp.status == 200, await resp.text()
        sessions = json.loads(await resp.text())["sessions"]
    assert iphone in {s["id"] for s in sessions}
    assert problems == [], problems
