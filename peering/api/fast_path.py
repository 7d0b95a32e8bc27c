"""A pure ASGI fast path for the hottest requests: read one peering, list a partition, generate a
token (SPEC §11), read a service's instances (`fast_catalog`: health and catalog), with ACLs off or on.

Which requests it serves comes from the app's own route table: the routes whose endpoint is one of
`peerings.read_peering`, `list_peerings`, `generate_token`, `health.service` and `catalog.service`, matched with the route's own path
pattern and methods, and only where no route before it in the table would take the request first.
A route is served only while its dependencies are exactly the ones reproduced here (`_EXPECTED`), so
a route that gains a dependency (or moves, or goes) is answered by the full app alone.

It answers only the plain case (no blocking query, only the route's usual query parameters, each once, a
body that decodes, a caller the ACLs allow) straight from the service, with the same bytes and
headers the routes send, and the caller resolved as `deps.get_access` does. Anything else, and any
error (a 403 included), goes on to the full FastAPI app (a body already read is handed on as it
came), which answers it as always, so messages, statuses and the OpenAPI document do not depend on
this module.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from re import Pattern
from typing import Any
from urllib.parse import parse_qsl

from fastapi.routing import RouteContext, iter_route_contexts
from fastapi.security.utils import get_authorization_scheme_param
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from peering.acl import AclService
from peering.acl_model import ALLOW_ALL, Access
from peering.api import catalog, catalog_query, deps, fast_catalog, health, peerings, query
from peering.api.access_log import INTERNAL
from peering.api.answers import ANSWER_KEY, Answers, request_target
from peering.api.body import MAX_BODY_BYTES, decode_body
from peering.api.headers import policy_header
from peering.api.render import PeeringBytes, bytes_response, json_response, read_headers
from peering.api.schemas import GenerateTokenRequest
from peering.errors import PeeringError
from peering.service import PeeringService, TokenRequest

# `?token=` is read here as `deps` reads it; with ACLs off it is ignored, as by the routes
_PLAIN_PARAMS = frozenset({"partition", "pretty", "stale", "consistent", "token"})  # the peering routes
_TOKEN_HEADER = b"x-consul-token"
_AUTHORIZATION = b"authorization"

Query = dict[str, str]
# a handler answers and returns None, or returns the `receive` to hand the request on with
Handler = Callable[["FastPath", Scope, Receive, Send, dict[str, str], Query], Awaitable[Receive | None]]


def _name(call: object) -> str:
    """A dependency's name: its function's, or its class's for a callable object (the security schemes)."""
    target = call if callable(call) and hasattr(call, "__qualname__") else type(call)
    return f"{target.__module__}.{target.__qualname__}"


def dependency_names(context: RouteContext) -> frozenset[str]:
    """Every dependency a route runs, nested ones included (router-level ones too), by name."""
    names: set[str] = set()
    pending = list(context.dependant.dependencies)
    while pending:
        dependant = pending.pop()
        names.add(_name(dependant.call))
        pending.extend(dependant.dependencies)
    return frozenset(names)


# what every served route depends on: the unsupported-query check and the caller (deps.get_access)
_CALLER = {
    _name(query.supported_query),
    _name(deps.get_service),
    _name(deps.get_access),
    _name(deps.get_acl),
    _name(deps.get_secret),
    _name(deps._QUERY),
    _name(deps._HEADER),
    _name(deps._BEARER),
}
_READ = frozenset({*_CALLER, _name(query.read_options), _name(deps.get_encoded)})
_TOKEN = frozenset({*_CALLER, _name(query.write_options), "peering.api.body.json_body.<locals>.dependency"})
_SERVICE = frozenset({*_CALLER, _name(query.read_options), _name(catalog_query.get_catalog)})


@dataclass(frozen=True)
class _Served:
    """One route the fast path serves, and the routes before it in the table that take the same method: by
    their path pattern (a route with methods: the method is known to be one of them), else as they match."""

    route: BaseRoute  # what the router puts in scope["route"] (the request log labels by its path)
    pattern: Pattern[str]
    earlier_patterns: tuple[Pattern[str], ...]
    earlier_others: tuple[RouteContext, ...]
    handler: Handler
    params: frozenset[str]  # the query parameters it reproduces

    def shadowed(self, scope: Scope) -> bool:
        """Whether a route before this one in the table fully matches the request (the router takes that)."""
        path = scope["path"]
        return any(p.match(path) for p in self.earlier_patterns) or any(
            context.matches(scope)[0] is Match.FULL for context in self.earlier_others
        )


def served_routes(routes: Iterable[BaseRoute]) -> dict[str, tuple[_Served, ...]]:
    """The fast path's dispatch table, by method, in the route table's order."""
    table: dict[str, list[_Served]] = {}
    seen: list[RouteContext] = []
    for context in iter_route_contexts(list(routes)):
        entry = _HANDLERS.get(context.endpoint) if context.endpoint is not None else None
        if entry is not None and dependency_names(context) == entry[1] and context.methods:
            for method in sorted(context.methods):
                earlier = [c for c in seen if c.methods is None or method in c.methods]
                patterns = tuple(c.path_regex for c in earlier if c.methods and getattr(c, "path_regex", None))
                others = tuple(c for c in earlier if not (c.methods and getattr(c, "path_regex", None)))
                served = _Served(context.route, context.path_regex, patterns, others, entry[0], entry[2])
                table.setdefault(method, []).append(served)
        seen.append(context)
    return {method: tuple(served) for method, served in table.items()}


def _read_template() -> tuple[list[tuple[bytes, bytes]], int, int] | None:
    """The raw headers of a plain (not pretty) read answer as `bytes_response` and `read_headers` make them,
    with the places of the two that vary (the index, the length); None if others vary (then each answer is
    made by `bytes_response` itself)."""
    one = bytes_response(b"", pretty=False, headers=read_headers(1)).raw_headers
    two = bytes_response(b"[]", pretty=False, headers=read_headers(2)).raw_headers
    varying = [i for i, (a, b) in enumerate(zip(one, two, strict=True)) if a != b] if len(one) == len(two) else []
    if [one[i][0] for i in varying] != [b"x-consul-index", b"content-length"]:
        return None
    return one, varying[0], varying[1]


_TEMPLATE = _read_template()


def _read_answer(body: bytes, index: int, pretty: bool) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The headers and body the routes answer a read or list with (`bytes_response` with `read_headers`)."""
    if pretty or _TEMPLATE is None:
        response = bytes_response(body, pretty=pretty, headers=read_headers(index))
        return response.raw_headers, bytes(response.body)
    template, at_index, at_length = _TEMPLATE
    headers = template.copy()
    headers[at_index] = (b"x-consul-index", read_headers(index)["X-Consul-Index"].encode("latin-1"))
    headers[at_length] = (b"content-length", str(len(body)).encode("latin-1"))
    return headers, body


class FastPath:
    """Serve plain reads, lists and token requests of the routes in `router` directly; pass everything
    else to `app`. With ACLs on (`acl.enabled`), the caller is resolved as the routes resolve it."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        router: Any,  # the app's router: the table is built from its routes when the middleware stack is
        service: PeeringService,
        encoded: PeeringBytes,
        acl: AclService | None = None,
        answers: Answers | None = None,
    ) -> None:
        self._app = app
        self._answers = answers  # where the plain reads' answers are kept for the HTTP protocol to give
        self._service = service
        self._encoded = encoded
        self._acl = acl if acl is not None and acl.enabled else None
        # with ACLs on, what `DefaultAclPolicyHeader` adds to the full app's answers (it sits inside this)
        self._extra = (policy_header(acl.default_policy),) if acl is not None and acl.enabled else ()
        self._table = served_routes(router.routes)
        self.service_bytes = fast_catalog.ServiceBytes()  # the catalog reads' encoded entries

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            for served in self._table.get(scope["method"], ()):
                match = served.pattern.match(scope["path"])
                if match is None:
                    continue
                plain = _plain_query(scope["query_string"], served.params)
                if plain is not None and not served.shadowed(scope):
                    scope["route"] = served.route  # as the router sets it (read by the request log)
                    handed_on = await served.handler(self, scope, receive, send, match.groupdict(), plain)
                    if handed_on is None:
                        return
                    receive = handed_on
                break
        await self._app(scope, receive, send)

    async def answer(self, send: Send, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        headers += self._extra  # `headers` is this answer's own list
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    def access(self, scope: Scope, plain: Query) -> Access:
        """The caller's access, as `deps.get_access` gives it."""
        if self._acl is None:
            return ALLOW_ALL
        client = scope.get("client")
        return self._acl.caller(caller_secret(scope, plain), client[0] if client else None)

    @property
    def datacenter(self) -> str:
        """The datacenter `query.supported_query` accepts in `?dc=`."""
        return self._service.datacenter

    @staticmethod
    def secret(scope: Scope, plain: Query) -> str | None:
        """The request's secret, as `deps.get_secret` gives it."""
        return caller_secret(scope, plain)

    @staticmethod
    def read_answer(body: bytes, index: int) -> tuple[list[tuple[bytes, bytes]], bytes]:
        """The headers and body of a plain (not pretty) read answer, as `bytes_response` with `read_headers`."""
        return _read_answer(body, index, False)

    def _stamp(self, scope: Scope, plain: Query) -> Hashable | None:
        """What a read is made from, taken before it is made, if its answer may be kept (`answers`)."""
        keyed = scope.get(ANSWER_KEY)
        if self._answers is None or keyed is None or "consistent" in plain or scope["method"] != "GET":
            return None
        # only for the request the protocol keyed, as it came: not a read another middleware made of it (the
        # plain read of a blocking query carries the request's scope, with another query string)
        if INTERNAL in scope or keyed[0] != request_target(scope):
            return None
        return self._answers.wanted(keyed[1])

    def _keep(
        self, scope: Scope, plain: Query, stamp: Hashable, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> None:
        """Keep the answer just sent (its `headers` as sent) for the HTTP protocol to give again."""
        answers = self._answers
        if answers is None:
            return
        until = math.inf
        if self._acl is not None:
            client = scope.get("client")
            # until the token's expiry; not kept when memory alone cannot say who the caller is
            held = self._acl.held(caller_secret(scope, plain), client[0] if client else None)
            if held is None:
                return
            expiry = held.token.expiration_time
            until = math.inf if expiry is None else expiry.timestamp()
        answers.keep(scope[ANSWER_KEY][1], stamp, until, headers, body, route=scope["route"], path=scope["path"])

    async def _read(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str], plain: Query
    ) -> Receive | None:
        stamp = self._stamp(scope, plain)
        try:
            peering = await self._service.read(
                plain.get("partition"),
                params["name"],
                consistent="consistent" in plain,
                access=self.access(scope, plain),
            )
        except PeeringError:
            return receive  # the full app gives the documented error
        headers, body = _read_answer(self._encoded.one(peering), peering.modify_index, "pretty" in plain)
        await self.answer(send, 200, headers, body)
        if stamp is not None:
            self._keep(scope, plain, stamp, headers, body)
        return None

    async def _list(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str], plain: Query
    ) -> Receive | None:
        stamp = self._stamp(scope, plain)
        try:
            peerings_, index = await self._service.list_peerings(
                plain.get("partition"), consistent="consistent" in plain, access=self.access(scope, plain)
            )
        except PeeringError:
            return receive
        headers, body = _read_answer(self._encoded.many(peerings_), index, "pretty" in plain)
        await self.answer(send, 200, headers, body)
        if stamp is not None:
            self._keep(scope, plain, stamp, headers, body)
        return None

    async def _token(
        self, scope: Scope, receive: Receive, send: Send, params: dict[str, str], plain: Query
    ) -> Receive | None:
        """Generate a token as the route does, or hand on (having sent nothing, written nothing)."""
        received, body = await _read_body(receive)
        if body is None:
            return _replay(received, receive)
        try:
            request = decode_body(body, GenerateTokenRequest)
            if not request.peer_name:
                return _replay(received, receive)
            token = await self._service.generate_token(
                TokenRequest(
                    name=request.peer_name,
                    partition=request.partition or plain.get("partition"),
                    meta=request.meta,
                    server_external_addresses=request.server_external_addresses or (),
                ),
                access=self.access(scope, plain),
            )
        except PeeringError:
            return _replay(received, receive)  # refused before anything was written: the route refuses it too
        response = json_response({"PeeringToken": token}, pretty="pretty" in plain)
        await self.answer(send, response.status_code, list(response.raw_headers), bytes(response.body))
        return None


# served endpoint -> (handler, the dependencies its route must have exactly, the query parameters it reproduces)
_HANDLERS: dict[Callable[..., Any], tuple[Handler, frozenset[str], frozenset[str]]] = {
    peerings.read_peering: (FastPath._read, _READ, _PLAIN_PARAMS),
    peerings.list_peerings: (FastPath._list, _READ, _PLAIN_PARAMS),
    peerings.generate_token: (FastPath._token, _TOKEN, _PLAIN_PARAMS),
    health.service: (fast_catalog.health_service, _SERVICE, fast_catalog.HEALTH_PARAMS),
    catalog.service: (fast_catalog.catalog_service, _SERVICE, fast_catalog.CATALOG_PARAMS),
}


def read_stamp(service: PeeringService, acl: AclService) -> Hashable | None:
    """What the kept reads are made from now (`answers`): the peerings and their links, and the callers'
    access; None while either may be behind."""
    peerings_ = service.stamp()
    access = acl.stamp()
    return None if peerings_ is None or access is None else (peerings_, access)


def caller_secret(scope: Scope, plain: Query) -> str | None:
    """The request's ACL secret in `deps.get_secret`'s order: `?token=` (the first; here there is only one),
    the first `X-Consul-Token` header, the first `Authorization` header if it is `Bearer <secret>`; an empty
    value counts as none."""
    secret = plain.get("token")
    if secret:
        return secret
    header: str | None = None
    authorization: str | None = None
    for name, value in scope["headers"]:
        if name == _TOKEN_HEADER and header is None:
            header = value.decode("latin-1")
        elif name == _AUTHORIZATION and authorization is None:
            authorization = value.decode("latin-1")
    if header:
        return header
    scheme, credentials = get_authorization_scheme_param(authorization)
    if authorization and scheme and credentials and scheme.lower() == "bearer":
        return credentials
    return None


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


def _plain_query(raw: bytes, allowed: frozenset[str]) -> Query | None:
    """The query parameters if they are only `allowed` ones (each once, no stale with consistent)."""
    if not raw:
        return {}
    try:
        pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True, strict_parsing=False)
    except ValueError:
        return None
    plain = dict(pairs)
    if len(plain) != len(pairs) or not plain.keys() <= allowed:
        return None
    if "stale" in plain and "consistent" in plain:
        return None
    return plain
