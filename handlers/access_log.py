"""The access log: one JSON line per request, never the query string or a credential."""

from __future__ import annotations

import json
import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse

SOCKETIO_PREFIX = "/socket.io/"


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        # Socket.IO transport requests (every long-poll, every websocket close) would
        # dominate the log and cost ~0.2 ms each to format and redact; handshake results
        # are counted in /metrics. They are logged at DEBUG, refused ones at INFO.
        level = logging.INFO
        if response.status < 400 and request.path.startswith(SOCKETIO_PREFIX):
            level = logging.DEBUG
        if not self.logger.isEnabledFor(level):
            return
        # request.path excludes the query string, where careless clients put tokens.
        self.logger.log(level, json.dumps({
            "event": "http_request", "method": request.method, "path": request.path,
            "status": response.status, "duration_ms": round(time * 1000, 2),
            "remote": request.remote,
        }))
