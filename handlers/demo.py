"""The browser client demo (``/demo/``): a page, its assets, and socket.io-client.

python-socketio does not serve the JavaScript client, and the repository does
not carry a copy: set-up installs it from npm (``npm ci --prefix tests/js``),
and ``/demo/socket.io.js`` serves that copy — from ``LATCH_SOCKETIO_CLIENT_JS``
when set, else from ``tests/js/node_modules`` — or answers 404 saying how to
install it.
"""

from __future__ import annotations

import os
from pathlib import Path

from aiohttp import web

from app.errors import NotFound

ROOT = Path(__file__).resolve().parents[1]
DEMO_DIR = ROOT / "static" / "demo"
DEFAULT_CLIENT_JS = ROOT / "tests" / "js" / "node_modules" / "socket.io-client" / "dist" / "socket.io.min.js"
CLIENT_JS_ENV = "LATCH_SOCKETIO_CLIENT_JS"
# The page is ours and self-contained: no inline script, nothing from another origin.
PAGE_HEADERS = {
    # 'self' covers same-origin ws:/wss: too (CSP Level 3).
    "Content-Security-Policy": "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; "
                               "form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

routes = web.RouteTableDef()


def client_js_path() -> Path:
    configured = os.environ.get(CLIENT_JS_ENV, "").strip()
    return Path(configured) if configured else DEFAULT_CLIENT_JS


@routes.get("/demo/")
async def demo_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(DEMO_DIR / "index.html", headers=PAGE_HEADERS)


@routes.get("/demo/socket.io.js")
async def socketio_client(request: web.Request) -> web.FileResponse:
    path = client_js_path()
    if not path.is_file():
        raise NotFound(f"socket.io-client is not installed: run `npm ci --prefix tests/js`, or set "
                       f"{CLIENT_JS_ENV} to a socket.io.min.js from the socket.io-client npm package")
    return web.FileResponse(path, headers={"Content-Type": "text/javascript; charset=utf-8",
                                           "Cache-Control": "public, max-age=3600",
                                           "X-Content-Type-Options": "nosniff"})


routes.static("/demo/assets", DEMO_DIR, append_version=False)
