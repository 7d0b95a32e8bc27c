"""A pure ASGI fast path for the hottest requests: read one peering, list a partition, generate a
token (SPEC §11).

It answers only the plain case (ACLs off, no blocking query, only the usual query parameters, a body
that decodes) straight from the service, with the same bytes and headers the routes send. Anything
else, and any error, goes on to the full FastAPI app (a body already read is handed on as it came),
which answers it as always, so behaviour (messages, statuses, the OpenAPI document) does not depend
on this module.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peering.api.body import MAX_BODY_BYTES, decode_body
from peering.api.render import PeeringBytes, bytes_response, json_response, read_headers
from peering.api.schemas import GenerateTokenRequest
from peering.errors import PeeringError
from peering.service import PeeringService, TokenRequest

_READ_PREFIX = "/v1/peering/"
_GENERATE_PATH = "/v1/peering/token"
_LIST_PATH = "/v1/peerings"
_PLAIN_PARAMS = frozenset({"partition", "pretty", "stale", "consistent"})


class _Route:
    """What the request log labels the answer with (the route template, as FastAPI's routes have)."""

    def __init__(self, path: str) -> None:
        self.path = path


_READ_ROUTE, _LIST_ROUTE, _TOKEN_ROUTE = _Route("/v1/peering/{name}"), _Route(_LIST_PATH), _Route(_GENERATE_PATH)


class FastPath:
    """Serve plain reads, lists and token requests directly; pass everything else to `app`."""

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
        elif scope["type"] == "http" and scope["method"] == "POST" and scope["path"] == _GENERATE_PATH:
            query = _plain_query(scope["query_string"])
            if query is not None:
                received, body = await _read_body(receive)
                if body is not None and await self._token(scope, send, body, query):
                    return
                receive = _replay(received, receive)
        await self._app(scope, receive, send)

    async def _token(self, scope: Scope, send: Send, body: bytes, query: dict[str, str]) -> bool:
        """Generate a token as the route does, or return False (having sent nothing, written nothing)."""
        try:
            request = decode_body(body, GenerateTokenRequest)
            if not request.peer_name:
                return False
            token = await self._service.generate_token(
                TokenRequest(
                    name=request.peer_name,
                    partition=request.partition or query.get("partition"),
                    meta=request.meta,
                    server_external_addresses=request.server_external_addresses or (),
                )
            )
        except PeeringError:
            return False  # refused before anything was written: the route refuses it the same way
        response = json_response({"PeeringToken": token}, pretty="pretty" in query)
        scope["route"] = _TOKEN_ROUTE
        await _send(send, response)
        return True

    async def _answer(self, scope: Scope, send: Send, name: str | None, query: dict[str, str]) -> bool:
        """Send the answer and return True, or return False (having sent nothing) to let the app answer."""
        partition, pretty = query.get("partition"), "pretty" in query
        try:
            if name is not None:
                peering = await self._service.read(partition, name, consistent="consistent" in query)
                response = bytes_response(
                    self._encoded.one(peering), pretty=pretty, headers=read_headers(peering.modify_index)
                )
                scope["route"] = _READ_ROUTE
            else:
                peerings, index = await self._service.list_peerings(partition, consistent="consistent" in query)
                response = bytes_response(self._encoded.many(peerings), pretty=pretty, headers=read_headers(index))
                scope["route"] = _LIST_ROUTE
        except PeeringError:
            return False  # the full app gives the documented error
        await _send(send, response)
        return True


async def _send(send: Send, response: Response) -> None:
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


async def _read_body(receive: Receive) -> tuple[list[Message], bytes | None]:
    """The messages received and the whole body, or None for the body when it is not simply there
    (over the limit, or the client left): the app then gets the messages and gives its answer."""
    received: list[Message] = []
    size = 0
    while True:
        message = await receive()
        received.append(message)
        if message["type"] != "http.request":
            return received, None
        size += len(message.get("body", b""))
        if size > MAX_BODY_BYTES:
            return received, None
        if not message.get("more_body", False):
            return received, b"".join(m.get("body", b"") for m in received)


def _replay(received: list[Message], receive: Receive) -> Receive:
    """A `receive` that hands out the messages already read, then reads on."""
    pending = list(received)

    async def replaying() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying


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
