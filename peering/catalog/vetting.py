"""Check a catalog write against ACLs, then write it only if what the check relied on still holds.

ACL decisions may read the ACL store, so they are made before the unit of work (never while it holds
the writer). The facts a decision relied on (a node, its instances, a check) are read again inside
the unit; if they changed meanwhile the unit writes nothing and the whole thing runs again, so a
decision is never applied to rows it did not see (a compare-and-set, as `store/base.py` asks).
With ACLs off no decision reads anything, so the facts are read, checked and written in one unit
(concurrent writers on one node never collide then).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol, TypeVar

from peering.catalog.model import Check, Node, ServiceInstance
from peering.cluster import Cluster
from peering.errors import DatabaseUnavailableError
from peering.store.base import CatalogReads, CatalogWrites, Transaction

ATTEMPTS = 20  # compare-and-set rounds before a 503: each is two short reads (ACL decisions come from memory)

F = TypeVar("F")
R = TypeVar("R")


class NodeView(Protocol):
    """What a vetting decision may look at, outside or inside a unit of work (local rows only)."""

    async def node(self, partition: str, node: str) -> Node | None:
        """One local node."""

    async def services(self, partition: str, node: str) -> list[ServiceInstance]:
        """The instances on one local node, sorted by ID."""

    async def check(self, partition: str, node: str, check_id: str) -> Check | None:
        """One check of one local node."""


class Outside:
    """A `NodeView` over committed data."""

    def __init__(self, reads: CatalogReads) -> None:
        self._reads = reads

    async def node(self, partition: str, node: str) -> Node | None:
        found, _, _ = await self._reads.node(partition, "", node)
        return found

    async def services(self, partition: str, node: str) -> list[ServiceInstance]:
        _, instances, _ = await self._reads.node(partition, "", node)
        return instances

    async def check(self, partition: str, node: str, check_id: str) -> Check | None:
        checks, _ = await self._reads.checks(partition, "", node=node)
        return next((check for check in checks if check.check_id == check_id), None)


class Inside:
    """A `NodeView` as one unit of work sees it."""

    def __init__(self, writes: CatalogWrites) -> None:
        self._writes = writes

    async def node(self, partition: str, node: str) -> Node | None:
        return await self._writes.node(partition, "", node)

    async def services(self, partition: str, node: str) -> list[ServiceInstance]:
        return await self._writes.node_services(partition, "", node)

    async def check(self, partition: str, node: str, check_id: str) -> Check | None:
        return await self._writes.check(partition, "", node, check_id)


async def instance_checks(tx: Transaction, instance: ServiceInstance) -> list[Check]:
    """The checks of one local instance (not its node's), as the unit sees them."""
    for entry in await tx.catalog.service_health(instance.partition, "", instance.service):
        if entry.node.node == instance.node and entry.service.id == instance.id:
            return [check for check in entry.checks if check.service_id == instance.id]
    return []


async def vetted(
    cluster: Cluster,
    facts: Callable[[NodeView], Awaitable[F]],
    vet: Callable[[F], Awaitable[None]],
    write: Callable[[Transaction, F], Awaitable[R]],
    *,
    enforced: bool = True,
) -> R:
    """`vet(facts)` outside any unit, then `write(tx, facts)` in a unit that sees the same facts; without
    ACLs (`enforced=False`: `vet` only validates, reading nothing) all three in one unit.

    Raises:
        Whatever `vet` raises (nothing is written then).
        DatabaseUnavailableError: the facts kept changing under the request (retry).
    """
    if not enforced:
        async with cluster.write() as tx:
            found = await facts(Inside(tx.catalog))
            await vet(found)  # a refusal (InvalidRequestError) rolls the unit back: nothing is written
            return await write(tx, found)
    for _ in range(ATTEMPTS):
        before = await facts(Outside(cluster.store.catalog))
        await vet(before)
        async with cluster.write() as tx:
            if await facts(Inside(tx.catalog)) == before:
                return await write(tx, before)
    raise DatabaseUnavailableError("the catalog kept changing while the request was checked; retry")
