"""The fast path's catalog reads (see `fast_path`): `GET /v1/health/service/{name}` (`health.service`) and
`GET /v1/catalog/service/{name}` (`catalog.service`), answered as those routes answer them.

The catalog is found as `catalog_query.get_catalog` finds it (`app.state.catalog`, the app the request is
for); the read is the routes' own (`CatalogReader.service_health` with the same arguments and the caller's
access, so ACL checks and filtering are the same functions), and so is the answer of a pretty or filtered
read (`catalog_query.read_answer`). A plain one is the cached compact JSON of its entries: the reader hands
back the same list (and the same entry objects) while nothing changed, so the bytes are kept by identity.

Handed on to the full app: `?dc=` naming another datacenter, a `?passing` that is not a boolean, any error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import orjson
from starlette.types import Receive, Scope, Send

from peering.api.catalog_query import parse_bool, read_answer
from peering.api.catalog_render import health_json, service_node_json
from peering.catalog.model import ServiceHealth
from peering.catalog.service import CatalogService
from peering.errors import PeeringError

if TYPE_CHECKING:
    from peering.api.fast_path import FastPath

# what the routes accept and the fast path reproduces (each once); `token` is read as `deps` reads it
_COMMON = frozenset({"partition", "pretty", "stale", "consistent", "token", "dc", "peer", "tag"})
HEALTH_PARAMS = _COMMON | {"passing"}
CATALOG_PARAMS = _COMMON  # the catalog route has no `?passing` (the full app ignores one: handed on)

Render = Callable[[ServiceHealth], dict[str, Any]]


def _service_node(entry: ServiceHealth) -> dict[str, Any]:
    return service_node_json(entry.node, entry.service)


class EntryBytes:
    """Each entry's compact JSON in one shape, kept while the reader hands back the same entry object, and
    each list's, kept for the same list object (entries are frozen; a cached object is held, so its id is
    not reused)."""

    def __init__(self, render: Render, limit: int = 50_000, lists: int = 256) -> None:
        self.render = render
        self._entries: dict[int, tuple[ServiceHealth, bytes]] = {}
        self._lists: dict[int, tuple[list[ServiceHealth], bytes]] = {}
        self._limit, self._list_limit = limit, lists

    def one(self, entry: ServiceHealth) -> bytes:
        hit = self._entries.get(id(entry))
        if hit is not None and hit[0] is entry:
            return hit[1]
        if len(self._entries) >= self._limit:
            self._entries.clear()  # entries no longer read go too; the next requests refill it
        encoded = orjson.dumps(self.render(entry))
        self._entries[id(entry)] = (entry, encoded)
        return encoded

    def many(self, entries: list[ServiceHealth]) -> bytes:
        """The JSON array `orjson.dumps([render(e) for e in entries])` gives."""
        hit = self._lists.get(id(entries))
        if hit is not None and hit[0] is entries:
            return hit[1]
        encoded = b"[" + b",".join([self.one(entry) for entry in entries]) + b"]"
        if len(self._lists) >= self._list_limit:
            self._lists.clear()
        self._lists[id(entries)] = (entries, encoded)
        return encoded


class ServiceBytes:
    """One fast path's caches of the two shapes."""

    def __init__(self) -> None:
        self.health = EntryBytes(health_json)
        self.catalog = EntryBytes(_service_node)


def _catalog(scope: Scope) -> CatalogService | None:
    """`catalog_query.get_catalog`: the catalog the composition root put on the app (None: hand on)."""
    catalog = getattr(getattr(scope.get("app"), "state", None), "catalog", None)
    return catalog if isinstance(catalog, CatalogService) else None


async def _serve(
    host: FastPath,
    scope: Scope,
    receive: Receive,
    send: Send,
    name: str,
    plain: dict[str, str],
    shape: EntryBytes,
    only_passing: bool,
) -> Receive | None:
    catalog = _catalog(scope)
    datacenter = plain.get("dc")  # `query.supported_query`: another datacenter is the route's 400
    if catalog is None or (datacenter and datacenter != host.datacenter):
        return receive
    try:
        result = await catalog.reads.service_health(
            plain.get("partition"),
            plain.get("peer") or "",
            name,
            tags=[plain["tag"]] if "tag" in plain else [],
            passing_only=only_passing,
            consistent="consistent" in plain,
            access=host.access(scope, plain),
        )
    except PeeringError:
        return receive  # the full app gives the documented error
    pretty = "pretty" in plain
    secret = host.secret(scope, plain) if result.filtered else None
    if pretty or secret:
        response = read_answer([shape.render(e) for e in result.value], result, pretty=pretty, secret=secret)
        await host.answer(send, 200, list(response.raw_headers), bytes(response.body))
    else:
        await host.answer(send, 200, *host.read_answer(shape.many(result.value), result.index))
    return None


async def health_service(
    host: FastPath, scope: Scope, receive: Receive, send: Send, params: dict[str, str], plain: dict[str, str]
) -> Receive | None:
    """`health.service`: `?passing` as `catalog_query.flag` reads it (not a boolean: the route's 400)."""
    passing = plain.get("passing")
    only_passing = passing is not None and (True if passing == "" else parse_bool(passing))
    if only_passing is None:
        return receive
    return await _serve(host, scope, receive, send, params["name"], plain, host.service_bytes.health, only_passing)


async def catalog_service(
    host: FastPath, scope: Scope, receive: Receive, send: Send, params: dict[str, str], plain: dict[str, str]
) -> Receive | None:
    """`catalog.service`: the same read without `?passing`, flattened."""
    return await _serve(host, scope, receive, send, params["name"], plain, host.service_bytes.catalog, False)
