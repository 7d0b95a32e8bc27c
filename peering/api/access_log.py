"""A pure ASGI middleware: one log line and one metrics sample per request, without secrets.

The path is logged without its query string (`?token=` carries ACL secrets) and metrics are labelled
with the matched route's template, so neither holds client input.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peering.metrics import Metrics

log = logging.getLogger("peering.http")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class RequestLog:
    """Log the method, path, status and duration at `level`; count the request in `metrics` if given."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics | None = None, level: int = logging.INFO) -> None:
        self._app = app
        self._metrics = metrics
        self._level = level

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app fails before answering

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._app(scope, receive, send_and_note)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", "other")  # mounted assets and unknown paths
            if self._metrics is not None:
                method = scope["method"] if scope["method"] in _METHODS else "other"  # labels stay bounded
                self._metrics.request(method, route, status, seconds)
            if log.isEnabledFor(self._level):
                client = scope.get("client")
                log.log(
                    self._level,
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"][:256],
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "client": client[0] if client else "",
                    },
                )
