"""A pure ASGI middleware: one metrics sample and one log line per request, without secrets.

The path is logged without its query string (`?token=` carries ACL secrets) and metrics are labelled
with the matched route's template, so neither holds client input.

As in Consul (which logs "Request finished" at debug), an answered request is logged at DEBUG: a line
costs about as much as serving a fast read (`bench/log_cost.py`), so logging every request at INFO would
halve the hot path. Answers of 400 and above (client errors, refusals, server errors, a client that left a
blocking query) are logged at INFO, so the log still says what went wrong; every request is counted in
the metrics whatever the level.

A middleware that answers requests itself, outside this one (`blocking.BlockingQueries`, which holds
blocking queries above the route stack), notes them with the same `RequestNotes`.
"""

from __future__ import annotations

import logging
import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peering.metrics import Metrics

log = logging.getLogger("peering.http")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})
INTERNAL = "peering.internal"  # a scope key: a read the server makes for itself, neither counted nor logged


class RequestNotes:
    """Count a request in `metrics` if given; log its method, path, status and duration at `level`, or at
    `error_level` for a status of 400 or more."""

    __slots__ = ("_error_level", "_level", "_metrics")

    def __init__(
        self, metrics: Metrics | None = None, level: int = logging.DEBUG, error_level: int = logging.INFO
    ) -> None:
        self._metrics = metrics
        self._level = level
        self._error_level = error_level

    def note(self, scope: Scope, status: int, seconds: float, *, from_memory: bool = False) -> None:
        if self._metrics is not None:
            route = getattr(scope.get("route"), "path", "other")  # mounted assets and unknown paths
            method = scope["method"] if scope["method"] in _METHODS else "other"  # labels stay bounded
            self._metrics.request(method, route, status, seconds, from_memory=from_memory)
        level = self._error_level if status >= 400 else self._level
        if log.isEnabledFor(level):
            client = scope.get("client")
            log.log(
                level,
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"][:256],
                    "status": status,
                    "duration_ms": round(seconds * 1000, 2),
                    "client": client[0] if client else "",
                },
            )


class RequestLog:
    """`notes` (or one made of `metrics`, `level` and `error_level`) for every HTTP request but the
    server's own reads (`INTERNAL`)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        metrics: Metrics | None = None,
        level: int = logging.DEBUG,
        error_level: int = logging.INFO,
        notes: RequestNotes | None = None,
    ) -> None:
        self._app = app
        self._notes = notes if notes is not None else RequestNotes(metrics, level, error_level)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or INTERNAL in scope:
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
            self._notes.note(scope, status, time.perf_counter() - started)
