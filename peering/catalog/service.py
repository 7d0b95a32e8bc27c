"""The catalog's operations (SPEC §13): register and deregister, the agent's own node, and the reads.

It never imports the web framework; routes call one method each and get catalog objects back.
Writes go through `Cluster.write()`, so each commit wakes blocking queries and the TTL timer.
Only local rows (`peer_name == ""`) are ever written here: a `PeerName` anywhere in a request is
refused, so a local caller can never touch rows imported over a peering.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from peering.acl_model import ALLOW_ALL, Access, Level
from peering.catalog.agent import AgentOps
from peering.catalog.model import Check, Node, ServiceInstance
from peering.catalog.reads import CatalogReader
from peering.catalog.specs import (
    PEER_NAME_REFUSED,
    CheckSpec,
    Deregistration,
    Registration,
    ServiceSpec,
    bounded,
    catalog_weights,
    check_registration,
    check_service,
    check_status,
    encode_address,
    node_meta,
    text,
)
from peering.catalog.vetting import NodeView, instance_checks, vetted
from peering.cluster import Cluster
from peering.errors import InvalidRequestError
from peering.rules import normalize_partition
from peering.store.base import Transaction

log = logging.getLogger("peering.catalog")

_NodeFacts = tuple[Node | None, tuple[ServiceInstance, ...]]


def to_instance(spec: ServiceSpec, node: str, partition: str) -> ServiceInstance:
    """The stored instance of a validated spec (`check_service`) on `node`."""
    return ServiceInstance(
        node=node,
        id=spec.id,
        service=spec.service,
        tags=spec.tags,
        address=spec.address,
        port=spec.port,
        meta=dict(spec.meta or {}),
        tagged_addresses={name: encode_address(*value) for name, value in (spec.tagged_addresses or {}).items()},
        weights=catalog_weights(spec.weights),
        enable_tag_override=spec.enable_tag_override,
        partition=partition,
    )


def _node_changes(existing: Node, new: Node) -> bool:
    """Consul's `RegisterRequest.ChangesNode`: re-posting the same node data needs no `node:write`."""
    fields = ("address", "id", "datacenter", "tagged_addresses", "meta")
    return any(getattr(existing, name) != getattr(new, name) for name in fields)


@dataclass(frozen=True)
class _Checked:
    """A catalog check as validated, before it is attached to its instance."""

    spec: CheckSpec
    check_id: str


class CatalogService:
    """Register, deregister and read the catalog of one cluster; `agent` holds the agent node's operations."""

    def __init__(self, cluster: Cluster, node_name: str, node_address: str) -> None:
        self._cluster = cluster
        self.reads = CatalogReader(cluster)
        self.agent = AgentOps(cluster, node_name, node_address)

    @property
    def node_name(self) -> str:
        """The name of this cluster's own node (`--node-name`)."""
        return self.agent.node_name

    @property
    def datacenter(self) -> str:
        """This cluster's datacenter (every local row's)."""
        return self._cluster.identity.datacenter

    def _datacenter(self, datacenter: str) -> None:
        if datacenter and datacenter != self._cluster.identity.datacenter:
            raise InvalidRequestError("No path to datacenter")

    async def register(self, request: Registration, *, access: Access = ALLOW_ALL) -> None:
        """`PUT /v1/catalog/register`: a node, optionally one instance on it, and checks.

        Raises:
            InvalidRequestError: Consul's validation messages (`Must provide node`, `cannot register requests
                with PeerName in them`, `Unknown service ID ...`, ...).
            PermissionDeniedError: the caller lacks `node:write` (for node changes) or `service:write`.
        """
        check_registration(request)
        partition = normalize_partition(request.partition)
        self._datacenter(request.datacenter)
        service = check_service(request.service) if request.service is not None else None
        node = Node(
            node=request.node,
            address=request.address,
            id=request.id,
            datacenter=self._cluster.identity.datacenter,
            partition=partition,
            tagged_addresses=dict(request.tagged_addresses or {}),
            meta=node_meta(request.node_meta),
        )
        checks = [self._checked(spec) for spec in request.checks]

        async def facts(view: NodeView) -> _NodeFacts:
            return await view.node(partition, node.node), tuple(await view.services(partition, node.node))

        async def vet(found: _NodeFacts) -> None:
            existing, instances = found
            by_id = {instance.id: instance for instance in instances}
            if existing is None and request.skip_node_update:
                raise InvalidRequestError("Missing node registration")
            if existing is None or (not request.skip_node_update and _node_changes(existing, node)):
                await access.require_named("node", node.node, Level.WRITE)
            if service is not None:
                await access.require_named("service", service.service, Level.WRITE)
                if service.id in by_id:
                    await access.require_named("service", by_id[service.id].service, Level.WRITE)
            for check in checks:
                if not check.spec.service_id:
                    await access.require_named("node", node.node, Level.WRITE)
                elif service is None or service.id != check.spec.service_id:
                    other = by_id.get(check.spec.service_id)
                    if other is None:
                        raise InvalidRequestError(
                            f"Unknown service ID '{check.spec.service_id[:256]}' for check ID '{check.check_id[:256]}'"
                        )
                    await access.require_named("service", other.service, Level.WRITE)

        async def write(tx: Transaction, found: _NodeFacts) -> None:
            existing, instances = found
            by_id = {instance.id: instance for instance in instances}
            if existing is None or not request.skip_node_update:
                await tx.catalog.save_node(node)
            rewritten = {check.check_id for check in checks}
            if service is not None:
                old = by_id.get(service.id)
                kept = [c for c in await instance_checks(tx, old) if c.check_id not in rewritten] if old else []
                saved = await tx.catalog.save_service(to_instance(service, node.node, partition))
                for other in kept:  # the instance's other checks carry its new name and tags
                    await tx.catalog.save_check(replace(other, service_name=saved.service, service_tags=saved.tags))
                by_id[saved.id] = saved
            for check in checks:
                owner = by_id.get(check.spec.service_id) if check.spec.service_id else None
                await tx.catalog.save_check(
                    Check(
                        node=node.node,
                        check_id=check.check_id,
                        name=check.spec.name,
                        status=check_status(check.spec.status),
                        notes=check.spec.notes,
                        output=check.spec.output,
                        service_id=check.spec.service_id,
                        service_name=owner.service if owner is not None else "",
                        service_tags=owner.tags if owner is not None else (),
                        type=check.spec.type,
                        partition=partition,
                    )
                )

        await vetted(self._cluster, facts, vet, write, enforced=access.enforced)
        log.debug("catalog registration", extra={"node": node.node, "partition": partition})

    @staticmethod
    def _checked(spec: CheckSpec) -> _Checked:
        check_id = spec.check_id or spec.name
        if not check_id:
            raise InvalidRequestError("Missing check ID")
        bounded(check_id, "Check ID")
        bounded(spec.name, "Check name")
        check_status(spec.status)
        text(spec.notes, "Notes")
        text(spec.output, "Output")
        bounded(spec.type, "Check type", 64)
        return _Checked(spec, check_id)

    async def deregister(self, request: Deregistration, *, access: Access = ALLOW_ALL) -> None:
        """`PUT /v1/catalog/deregister`: one instance (`service_id`), else one check (`check_id`), else the
        node with everything on it. Unknown rows are fine (nothing to remove).

        Raises:
            InvalidRequestError: `Must provide node`, or a `PeerName` in the request.
            PermissionDeniedError: the caller lacks `node:write` and `service:write` on what it removes.
        """
        if request.peer_name:
            raise InvalidRequestError(PEER_NAME_REFUSED)
        if not request.node:
            raise InvalidRequestError("Must provide node")
        partition = normalize_partition(request.partition)
        self._datacenter(request.datacenter)
        name = request.node

        async def facts(view: NodeView) -> tuple[_NodeFacts, Check | None]:
            found = await view.node(partition, name), tuple(await view.services(partition, name))
            check = await view.check(partition, name, request.check_id) if request.check_id else None
            return found, check

        async def vet(seen: tuple[_NodeFacts, Check | None]) -> None:
            (_, instances), check = seen
            # node:write removes anything on the node; without it, service:write on what goes
            if await access.allowed_named("node", name, Level.WRITE):
                return
            owner = ""
            if request.service_id:
                owner = next((i.service for i in instances if i.id == request.service_id), "")
            elif check is not None and check.service_id:
                owner = check.service_name
            if not owner:
                await access.require_named("node", name, Level.WRITE)
            await access.require_named("service", owner, Level.WRITE)

        async def write(tx: Transaction, seen: tuple[_NodeFacts, Check | None]) -> None:
            (existing, _), _ = seen
            if existing is None:
                return
            if request.service_id:
                await tx.catalog.delete_service(partition, "", name, request.service_id)
            elif request.check_id:
                await tx.catalog.delete_check(partition, "", name, request.check_id)
            else:
                await tx.catalog.delete_node(partition, "", name)

        await vetted(self._cluster, facts, vet, write, enforced=access.enforced)
