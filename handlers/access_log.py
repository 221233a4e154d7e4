"""The access log: one JSON line per request, never the query string or a credential."""

from __future__ import annotations

import json
import logging

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse


class AccessLogger(AbstractAccessLogger):
    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        # request.path excludes the query string, where careless clients put tokens.
        self.logger.info(json.dumps({
            "event": "http_request", "method": request.method, "path": request.path,
            "status": response.status, "duration_ms": round(time * 1000, 2),
            "remote": request.remote,
        }))
