"""Catalog and health reads (SPEC §13): local rows or one peering's imports, blocking queries, ACL filtering.

Every read answers with the index of its scope (partition, peer name) and, for a blocking query, waits
until that index passes the one given. Local reads drop what the caller may not read (`filtered`);
reads of imported rows (`peer`) need `Access.require_imported_read` and are then not filtered by name,
as Consul (reference §4).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from peering.acl_model import ALLOW_ALL, Access, Level
from peering.catalog.model import Check, Health, Node, ServiceHealth, ServiceInstance, passing
from peering.cluster import Cluster
from peering.errors import InvalidRequestError
from peering.rules import check_peer_name, normalize_partition

MAX_WAIT = 600.0  # seconds: the longest blocking query (SPEC §3)
HEALTH_CACHE_SIZE = 4096  # service names whose health is kept in memory
NO_PEER = "-"  # the scope a peer name that cannot exist reads: never a peering's name, so always empty

T = TypeVar("T")
V = TypeVar("V")


@dataclass(frozen=True)
class Result(Generic[T]):
    """What a read found, its scope's index, and whether ACLs removed anything from it."""

    value: T
    index: int
    filtered: bool = False


def scope(partition: str | None, peer: str | None) -> tuple[str, str]:
    """The (partition, peer name) a read addresses; an impossible peer name reads nothing (`[]`, not 404).

    Raises:
        InvalidRequestError: the partition is not a valid name.
    """
    part = normalize_partition(partition)
    if not peer:
        return part, ""
    try:
        return part, check_peer_name(peer.lower() if peer.isascii() else "")
    except InvalidRequestError:
        return part, NO_PEER


def has_tags(instance: ServiceInstance, tags: Sequence[str]) -> bool:
    """`?tag=`: the instance carries every tag asked for (compared case-insensitively, as Consul)."""
    own = {tag.lower() for tag in instance.tags}
    return all(tag.lower() in own for tag in tags)


class CatalogReader:
    """The catalog's reads, with blocking queries over the cluster's notifier."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._catalog = cluster.store.catalog
        # service health by scope and name, with the notifier's index when it was read: valid while no unit
        # of work has committed since (every write notifies), so an unchanged catalog costs no database read
        self._health: dict[tuple[str, str, str], tuple[int, list[ServiceHealth], int]] = {}

    async def _service_health(
        self, part: str, peer_name: str, name: str, fresh: bool
    ) -> tuple[list[ServiceHealth], int]:
        """The store's `service_health`, from memory while nothing was written since (`fresh`: always read).

        The same list object comes back while the data is unchanged (renderers may cache by identity)."""
        key, seen = (part, peer_name, name), self._cluster.notifier.index  # taken before the read
        hit = self._health.get(key)
        if hit is not None and hit[0] == seen and not fresh:
            return hit[1], hit[2]
        entries, index = await self._catalog.service_health(part, peer_name, name)
        if hit is not None and hit[1:] == (entries, index):
            entries = hit[1]  # unchanged: keep the object renderers know
        if len(self._health) >= HEALTH_CACHE_SIZE:
            self._health.clear()
        self._health[key] = (seen, entries, index)
        return entries, index

    async def _blocking(
        self, snapshot: Callable[[], Awaitable[tuple[T, int]]], min_index: int, wait: float
    ) -> tuple[T, int]:
        """At once, or once the scope's index passes `min_index`, the wait ends or the notifier closes."""
        notifier, loop = self._cluster.notifier, asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT)
        watch = notifier.watch()  # before the read: a write between the read and the wait still wakes it
        result = await snapshot()
        if min_index <= 0 or result[1] > min_index or wait <= 0 or notifier.closed:
            return result
        with self._cluster.metrics.blocking_query():
            while await watch.wait(deadline - loop.time()) and not notifier.closed:
                watch = notifier.watch()
                result = await snapshot()
                if result[1] > min_index:
                    return result
            return await snapshot()

    @staticmethod
    async def _admit(access: Access, peer: str) -> bool:
        """Whether the read is of imported rows (after checking the caller may read them). A local read
        resolves the caller's token too, so an unknown one is refused even when nothing would be listed."""
        if peer:
            await access.require_imported_read()
        else:
            await access.allowed_named("node", "", Level.READ)
        return bool(peer)

    async def _filter(
        self, access: Access, imported: bool, items: list[V], allowed: Callable[[V], Awaitable[bool]]
    ) -> tuple[list[V], bool]:
        if imported or access is ALLOW_ALL or type(access) is Access:
            return items, False
        kept = [item for item in items if await allowed(item)]
        return kept, len(kept) != len(items)

    async def services(
        self,
        partition: str | None,
        peer: str | None,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        access: Access = ALLOW_ALL,
    ) -> Result[dict[str, list[str]]]:
        """`GET /v1/catalog/services`: every service name with its instances' tags (`?peer=`: imported names)."""
        part, peer_name = scope(partition, peer)
        imported = await self._admit(access, peer_name)
        names, index = await self._blocking(lambda: self._catalog.service_names(part, peer_name), min_index, wait)
        kept, filtered = await self._filter(
            access, imported, sorted(names), lambda name: access.allowed_named("service", name, Level.READ)
        )
        return Result({name: names[name] for name in kept}, index, filtered)

    async def _entry_readable(self, access: Access, node: str, service: str) -> bool:
        return await access.allowed_named("node", node, Level.READ) and await access.allowed_named(
            "service", service, Level.READ
        )

    async def service_health(
        self,
        partition: str | None,
        peer: str | None,
        name: str,
        *,
        tags: Sequence[str] = (),
        passing_only: bool = False,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> Result[list[ServiceHealth]]:
        """`GET /v1/health/service/{name}` (and, without the checks, `/v1/catalog/service/{name}`);
        `consistent` reads the database even when nothing was notified since the last read."""
        if not name:
            raise InvalidRequestError("Missing service name")
        part, peer_name = scope(partition, peer)
        imported = await self._admit(access, peer_name)
        entries, index = await self._blocking(
            lambda: self._service_health(part, peer_name, name, consistent), min_index, wait
        )
        if tags:
            entries = [entry for entry in entries if has_tags(entry.service, tags)]
        if passing_only:
            entries = [entry for entry in entries if passing(entry)]
        kept, filtered = await self._filter(
            access, imported, entries, lambda e: self._entry_readable(access, e.node.node, e.service.service)
        )
        return Result(kept, index, filtered)

    async def nodes(
        self,
        partition: str | None,
        peer: str | None,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        access: Access = ALLOW_ALL,
    ) -> Result[list[Node]]:
        """`GET /v1/catalog/nodes`."""
        part, peer_name = scope(partition, peer)
        imported = await self._admit(access, peer_name)
        nodes, index = await self._blocking(lambda: self._catalog.nodes(part, peer_name), min_index, wait)
        kept, filtered = await self._filter(
            access, imported, nodes, lambda node: access.allowed_named("node", node.node, Level.READ)
        )
        return Result(kept, index, filtered)

    async def node(
        self,
        partition: str | None,
        peer: str | None,
        node: str,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        access: Access = ALLOW_ALL,
    ) -> Result[tuple[Node, list[ServiceInstance]] | None]:
        """`GET /v1/catalog/node/{node}`: the node and its instances (None: unknown, or not readable)."""
        if not node:
            raise InvalidRequestError("Missing node name")
        part, peer_name = scope(partition, peer)
        imported = await self._admit(access, peer_name)

        async def snapshot() -> tuple[tuple[Node | None, list[ServiceInstance]], int]:
            found, instances, index = await self._catalog.node(part, peer_name, node)
            return (found, instances), index

        (found, instances), index = await self._blocking(snapshot, min_index, wait)
        if found is None:
            return Result(None, index)
        visible, hidden = await self._filter(
            access, imported, [found], lambda n: access.allowed_named("node", n.node, Level.READ)
        )
        if not visible:
            return Result(None, index, hidden)
        kept, filtered = await self._filter(
            access, imported, instances, lambda i: access.allowed_named("service", i.service, Level.READ)
        )
        return Result((found, kept), index, filtered)

    async def _check_readable(self, access: Access, check: Check) -> bool:
        if check.service_id:
            return await access.allowed_named("service", check.service_name, Level.READ)
        return await access.allowed_named("node", check.node, Level.READ)

    async def service_checks(
        self,
        partition: str | None,
        peer: str | None,
        name: str,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        access: Access = ALLOW_ALL,
    ) -> Result[list[Check]]:
        """`GET /v1/health/checks/{service}`: the service-level checks of the service's instances."""
        if not name:
            raise InvalidRequestError("Missing service name")
        part, peer_name = scope(partition, peer)
        imported = await self._admit(access, peer_name)
        checks, index = await self._blocking(
            lambda: self._catalog.checks(part, peer_name, service_name=name), min_index, wait
        )
        checks = [check for check in checks if check.service_id and check.service_name == name]
        kept, filtered = await self._filter(access, imported, checks, lambda c: self._check_readable(access, c))
        return Result(kept, index, filtered)

    async def checks_in_state(
        self,
        partition: str | None,
        peer: str | None,
        state: str,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        access: Access = ALLOW_ALL,
    ) -> Result[list[Check]]:
        """`GET /v1/health/state/{state}`: `any`, `passing`, `warning` or `critical` (another state matches
        nothing, as in Consul)."""
        if not state:
            raise InvalidRequestError("Missing check state")
        part, peer_name = scope(partition, peer)
        imported = await self._admit(access, peer_name)
        known = state in (Health.PASSING, Health.WARNING, Health.CRITICAL)

        async def snapshot() -> tuple[list[Check], int]:
            if state == "any" or known:
                return await self._catalog.checks(part, peer_name, status=Health(state) if known else None)
            _, index = await self._catalog.nodes(part, peer_name)
            return [], index

        checks, index = await self._blocking(snapshot, min_index, wait)
        kept, filtered = await self._filter(access, imported, checks, lambda c: self._check_readable(access, c))
        return Result(kept, index, filtered)
