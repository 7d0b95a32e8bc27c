"""Applying a peer's exports to the local catalog (SPEC §14, reference §3.3-§3.4).

A page is applied in one unit of work: for each upserted name, the stored instances of that peer are
reconciled with the received set (changed nodes, instances and checks saved, instances not received
deleted with their checks, nodes left without any instance of that peer deleted); with the last page of
a batch (it carries the list of names) every stored name that is not in the list goes, and the list
becomes the peering's `imported_services`; the `ImportState` (the exporter's generation and the page's
`Seq`) is saved in the same unit. So a kill -9 never leaves half a page, and a resend changes nothing:
an identical row is not written (no index moves).

Rows are stored under the importer's local name for the peering and in its partition, whatever the
exporter calls them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import replace

from peering.catalog.model import Check, Health, Node, ServiceHealth, ServiceInstance, Weights
from peering.cluster import Cluster
from peering.domain import Peering
from peering.errors import InvalidRequestError
from peering.peer.payload import exportable
from peering.peer.wire import CheckServiceNode, ExportedService, ExportPage, page_problem
from peering.store.base import CatalogWrites, ImportState

log = logging.getLogger("peering.replication")


class NotImportingError(Exception):
    """The peering is no longer live (deleted or terminated meanwhile): nothing was applied."""


def _node(entry: CheckServiceNode, partition: str, peer_name: str) -> Node:
    node = entry.node
    return Node(
        node=node.node,
        address=node.address,
        id=node.id,
        datacenter=node.datacenter,
        partition=partition,
        peer_name=peer_name,
        tagged_addresses=dict(node.tagged_addresses),
        meta=dict(node.meta),
    )


def _instance(entry: CheckServiceNode, partition: str, peer_name: str) -> ServiceInstance:
    svc = entry.service
    return ServiceInstance(
        node=entry.node.node,
        id=svc.id,
        service=svc.service,
        tags=tuple(svc.tags),
        address=svc.address,
        port=svc.port,
        meta=dict(svc.meta),
        tagged_addresses=dict(svc.tagged_addresses),
        weights=Weights(svc.weights.passing, svc.weights.warning),
        enable_tag_override=svc.enable_tag_override,
        kind=svc.kind,
        partition=partition,
        peer_name=peer_name,
    )


def _checks(entry: CheckServiceNode, partition: str, peer_name: str) -> list[Check]:
    return [
        Check(
            node=check.node,
            check_id=check.check_id,
            name=check.name,
            status=Health(check.status),
            notes=check.notes,
            output=check.output,
            service_id=check.service_id,
            service_name=check.service_name,
            service_tags=tuple(check.service_tags),
            type=check.type,
            partition=partition,
            peer_name=peer_name,
        )
        for check in entry.checks
    ]


def _same(stored: Node | ServiceInstance | Check | None, received: Node | ServiceInstance | Check) -> bool:
    """Equal but for the indexes (the importer's own)."""
    return stored is not None and replace(stored, create_index=0, modify_index=0) == received


async def _drop_instances(
    rows: CatalogWrites, partition: str, peer_name: str, stored: list[ServiceHealth], keep: set[tuple[str, str]]
) -> None:
    """Delete the stored instances not in `keep`, and the nodes that leaves without any instance of the peer."""
    emptied: set[str] = set()
    for entry in stored:
        key = (entry.node.node, entry.service.id)
        if key not in keep:
            await rows.delete_service(partition, peer_name, *key)
            emptied.add(entry.node.node)
    for node in sorted(emptied):
        if not await rows.node_services(partition, peer_name, node):
            await rows.delete_node(partition, peer_name, node)


async def reconcile(
    rows: CatalogWrites,
    partition: str,
    peer_name: str,
    exported: ExportedService,
    *,
    stored_before: bool = True,
    nodes_saved: dict[str, Node] | None = None,
) -> None:
    """Make the stored instances of `exported.name` under `peer_name` equal the received set (in a unit).
    `stored_before=False`: the name has no rows (nothing to read); `nodes_saved`: the nodes this unit saved."""
    stored = await rows.service_health(partition, peer_name, exported.name) if stored_before else []
    by_key = {(e.node.node, e.service.id): e for e in stored}
    nodes_saved = {} if nodes_saved is None else nodes_saved
    for entry in exported.nodes:
        old = by_key.get((entry.node.node, entry.service.id))
        node = _node(entry, partition, peer_name)
        if nodes_saved.get(node.node) != node and not _same(old.node if old else None, node):
            # not known from this name: the store itself writes nothing when another name saved it identically
            await rows.save_node(node)
        nodes_saved[node.node] = node
        instance = _instance(entry, partition, peer_name)
        if not _same(old.service if old else None, instance):
            await rows.save_service(instance)
        stored_checks = {c.check_id: c for c in (old.checks if old else ()) if c.service_id == instance.id}
        for check in _checks(entry, partition, peer_name):
            if not _same(stored_checks.pop(check.check_id, None), check):
                await rows.save_check(check)
        for check_id in stored_checks:
            await rows.delete_check(partition, peer_name, entry.node.node, check_id)
    await _drop_instances(rows, partition, peer_name, stored, {(e.node.node, e.service.id) for e in exported.nodes})


class Importer:
    """Applies pages from the peers' exporters; one page at a time per peering."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._locks: dict[str, asyncio.Lock] = {}

    async def state(self, peering_id: str) -> ImportState:
        """How far this side got with the peer's exports (an empty generation: nothing yet)."""
        found = await self._cluster.store.replication.import_state(peering_id)
        return found or ImportState(peering_id, "", 0)

    async def apply(self, peering: Peering, page: ExportPage, base: int) -> ImportState | None:
        """Apply one page (see the module docstring) if it continues what was applied: it starts over (`Full`,
        from `base` 0) or its generation is the applied one and `base` the applied `Seq` (checked in the unit,
        so two deliveries of one page cannot both pass). Returns the new import state, or None (refused).

        Raises:
            InvalidRequestError: the page breaks a rule its types cannot say (nothing applied).
            NotImportingError: the peering is deleted or terminated (nothing applied).
        """
        problem = page_problem(page)
        if problem is not None:
            raise InvalidRequestError(f"invalid export page: {problem}")
        async with self._locks.setdefault(peering.id, asyncio.Lock()):
            return await self._apply(peering, page, base)

    def forget(self, peering_id: str) -> None:
        """Drop what is kept about a removed or terminated peering."""
        self._locks.pop(peering_id, None)

    async def _apply(self, peering: Peering, page: ExportPage, base: int) -> ImportState | None:
        partition, peer_name = peering.partition, peering.name
        # read before the unit: only this importer (holding the peering's lock) writes these rows
        names, _ = await self._cluster.store.catalog.service_names(partition, peer_name)
        stored_names = set(names) | set(peering.imported_services) | {e.name for e in page.upserts}
        state = ImportState(peering.id, page.generation, page.seq)
        async with self._cluster.write() as tx:
            current = await tx.get_by_id(peering.id)
            if current is None or not exportable(current) or current.name != peer_name:
                raise NotImportingError(peering.id)
            applied = await tx.replication.import_state(peering.id)
            restart = page.full and base == 0
            if not restart and (
                applied is None or (applied.generation, applied.applied_seq) != (page.generation, base)
            ):
                return None
            nodes_saved: dict[str, Node] = {}
            for exported in page.upserts:
                known = exported.name in names
                await reconcile(
                    tx.catalog, partition, peer_name, exported, stored_before=known, nodes_saved=nodes_saved
                )
            if page.services is not None:
                listed = set(page.services)
                for name in sorted(stored_names - listed):
                    stored = await tx.catalog.service_health(partition, peer_name, name)
                    await _drop_instances(tx.catalog, partition, peer_name, stored, set())
                if current.imported_services != tuple(page.services):
                    await tx.save(replace(current, imported_services=tuple(page.services)))
            await tx.replication.save_import_state(state)
        return state
