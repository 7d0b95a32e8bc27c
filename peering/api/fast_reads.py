"""A pure ASGI fast path for the two hottest requests: read one peering, list a partition (SPEC §11).

It answers only the plain case (GET, ACLs off, no blocking query, only the usual query parameters)
straight from the service and the encoded-peering cache, with the same bytes and headers the routes
send. Anything else, and any error, goes on to the full FastAPI app, which answers it as always, so
behaviour (messages, statuses, the OpenAPI document) does not depend on this module.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Receive, Scope, Send

from peering.api.render import PeeringBytes, bytes_response, read_headers
from peering.errors import PeeringError
from peering.service import PeeringService

_READ_PREFIX = "/v1/peering/"
_LIST_PATH = "/v1/peerings"
_PLAIN_PARAMS = frozenset({"partition", "pretty", "stale", "consistent"})


class _Route:
    """What the request log labels the answer with (the route template, as FastAPI's routes have)."""

    def __init__(self, path: str) -> None:
        self.path = path


_READ_ROUTE, _LIST_ROUTE = _Route("/v1/peering/{name}"), _Route(_LIST_PATH)


class FastReads:
    """Serve plain reads and lists directly; pass everything else to `app`."""

    def __init__(self, app: ASGIApp, *, service: PeeringService, encoded: PeeringBytes) -> None:
        self._app = app
        self._service = service
        self._encoded = encoded

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            name = path[len(_READ_PREFIX) :] if path.startswith(_READ_PREFIX) else None
            if (name and "/" not in name) or path == _LIST_PATH:
                query = _plain_query(scope["query_string"])
                if query is not None and await self._answer(scope, send, name, query):
                    return
        await self._app(scope, receive, send)

    async def _answer(self, scope: Scope, send: Send, name: str | None, query: dict[str, str]) -> bool:
        """Send the answer and return True, or return False (having sent nothing) to let the app answer."""
        partition, pretty = query.get("partition"), "pretty" in query
        try:
            if name is not None:
                peering = await self._service.read(partition, name)
                response = bytes_response(
                    self._encoded.one(peering), pretty=pretty, headers=read_headers(peering.modify_index)
                )
                scope["route"] = _READ_ROUTE
            else:
                peerings, index = await self._service.list_peerings(partition)
                response = bytes_response(self._encoded.many(peerings), pretty=pretty, headers=read_headers(index))
                scope["route"] = _LIST_ROUTE
        except PeeringError:
            return False  # the full app gives the documented error
        await send({"type": "http.response.start", "status": 200, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})
        return True


def _plain_query(raw: bytes) -> dict[str, str] | None:
    """The query parameters if they are only the plain ones (each once, no stale with consistent)."""
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    query = dict(pairs)
    if len(query) != len(pairs) or not query.keys() <= _PLAIN_PARAMS:
        return None
    if "stale" in query and "consistent" in query:
        return None
    return query
