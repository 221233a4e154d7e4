"""The admin dashboard: static/admin/ served at /admin/ under a strict Content-Security-Policy.

Only plain file names directly inside static/admin/ are served (no sub-paths,
no dot-files, nothing that resolves outside the directory). Every answer,
including the redirect and a 404, carries the security headers: the page runs
only its own scripts, cannot be framed, and sends no Referer.
"""

from __future__ import annotations

import re
from pathlib import Path

from aiohttp import web

from app.errors import NotFound
from handlers.http_errors import error_response

routes = web.RouteTableDef()

STATIC_DIR = Path(__file__).resolve().parents[1] / "static" / "admin"

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",
}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".txt": "text/plain; charset=utf-8",
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*(\.[A-Za-z0-9_-]+)+")


def _not_found() -> web.Response:
    response = error_response(NotFound())
    response.headers.update(SECURITY_HEADERS)
    return response


def _file(name: str) -> web.StreamResponse:
    if not _NAME.fullmatch(name):
        return _not_found()
    path = (STATIC_DIR / name).resolve()
    content_type = CONTENT_TYPES.get(path.suffix.lower())
    if content_type is None or path.parent != STATIC_DIR or not path.is_file():
        return _not_found()
    return web.FileResponse(path, headers={**SECURITY_HEADERS, "Content-Type": content_type})


@routes.get("/admin")
async def admin_root(request: web.Request) -> web.Response:
    # Relative URLs in the page resolve against /admin/, so always serve it with the slash.
    raise web.HTTPPermanentRedirect("/admin/", headers=SECURITY_HEADERS)


@routes.get("/admin/")
async def index(request: web.Request) -> web.StreamResponse:
    return _file("index.html")


@routes.get(r"/admin/{name:[^/]+\.[^/]+}")
async def static_file(request: web.Request) -> web.StreamResponse:
    return _file(request.match_info["name"])
