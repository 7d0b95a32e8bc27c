"""The cluster's own agent node (SPEC §13): services registered on it, their TTL checks, maintenance.

The node is named by `--node-name` and addressed by the advertise host; it lives in the `default`
partition. A TTL check stores its deadline, so `catalog/ttl.py` turns it `critical` when nobody renews
it, also across restarts. Messages and check IDs are Consul's (`agent/agent_endpoint.go`, `agent/acl.go`).
"""

from __future__ import annotations

import ipaddress
import uuid
from dataclasses import replace
from datetime import timedelta

from peering.acl_model import ALLOW_ALL, Access, Level
from peering.catalog.model import SERVICE_MAINTENANCE_PREFIX, Check, Health, Node, ServiceInstance, is_maintenance
from peering.catalog.reads import Result
from peering.catalog.specs import (
    MAX_CHECKS,
    MAX_TEXT,
    AgentServiceSpec,
    check_service,
    check_status,
    check_ttl_check,
    check_weights,
    encode_address,
    text,
)
from peering.catalog.vetting import NodeView, instance_checks, vetted
from peering.cluster import Cluster
from peering.errors import InvalidRequestError, NotFoundError
from peering.rules import DEFAULT_PARTITION
from peering.store.base import Transaction

DEFAULT_MAINTENANCE_REASON = (
    "Maintenance mode is enabled for this service, but no reason was provided. This is a default message."
)
MAINTENANCE_CHECK_NAME = "Service Maintenance Mode"


def _unknown_service(service_id: str) -> NotFoundError:
    return NotFoundError(
        f'Unknown service ID "{service_id[:256]}". Ensure that the service ID is passed, not the service name.'
    )


def _unknown_check(check_id: str) -> NotFoundError:
    return NotFoundError(
        f'Unknown check ID "{check_id[:256]}". Ensure that the check ID is passed, not the check name.'
    )


def truncated_output(output: str) -> str:
    """Check output capped as Consul caps it (`CheckBufSize`, 4 KiB)."""
    if len(output) <= MAX_TEXT:
        return output
    return f"{output[:MAX_TEXT]} ... (captured {MAX_TEXT} of {len(output)} bytes)"


def _no_nul(text: str, what: str) -> None:
    """A check's output or notes from a query or body: no NUL, as registrations refuse (PostgreSQL cannot store it)."""
    if "\x00" in text:
        raise InvalidRequestError(f"{what} must not contain a NUL character")


def _tagged(address: str) -> dict[str, str]:
    """The node's tagged addresses, as a Consul agent has them (`lan`, `wan`, and the IP family's variants)."""
    tagged = {"lan": address, "wan": address}
    try:
        family = "ipv4" if ipaddress.ip_address(address).version == 4 else "ipv6"
    except ValueError:
        return tagged
    return {**tagged, f"lan_{family}": address, f"wan_{family}": address}


class AgentOps:
    """Services and TTL checks of this cluster's own node."""

    def __init__(self, cluster: Cluster, node_name: str, node_address: str) -> None:
        self._cluster = cluster
        self.node_name = node_name
        self._address = node_address

    def node(self) -> Node:
        """The agent's node as it is registered (its ID derived from the cluster's, so it is stable)."""
        identity = self._cluster.identity
        return Node(
            node=self.node_name,
            address=self._address,
            id=str(uuid.uuid5(uuid.UUID(identity.cluster_id), self.node_name)),
            datacenter=identity.datacenter,
            partition=DEFAULT_PARTITION,
            tagged_addresses=_tagged(self._address),
        )

    async def _instance(self, view: NodeView, service_id: str) -> ServiceInstance | None:
        instances = await view.services(DEFAULT_PARTITION, self.node_name)
        return next((instance for instance in instances if instance.id == service_id), None)

    async def register(
        self, spec: AgentServiceSpec, *, replace_existing_checks: bool = False, access: Access = ALLOW_ALL
    ) -> None:
        """`PUT /v1/agent/service/register`: add or replace an instance on the agent node with its TTL checks.

        A re-registered check keeps its status and output (as Consul's agent); checks of the instance not
        given again stay, unless `replace_existing_checks` (maintenance stays either way).

        Raises:
            InvalidRequestError: `Missing service name`, `Invalid service address`, `Invalid Weights: ...`,
                `Invalid Service Meta: ...`, `Invalid check: ...`, a bad check status, or a `PeerName`.
            PermissionDeniedError: the caller lacks `service:write` on the name (and on the name it replaces).
        """
        if spec.service.peer_name:
            raise InvalidRequestError("cannot register requests with PeerName in them")
        if not spec.service.service:
            raise InvalidRequestError("Missing service name")
        service = check_service(spec.service)
        weights = check_weights(spec.service.weights)
        checks = [check for check in spec.checks if not check.empty]
        if len(checks) > MAX_CHECKS:
            raise InvalidRequestError(f"Too many checks (limit: {MAX_CHECKS})")
        for check in checks:
            check_ttl_check(check)
        for check in checks:
            check_status(check.status)
            text(check.notes, "Notes")
        ids = [
            check.check_id or f"service:{service.id}" + (f":{i + 1}" if len(checks) > 1 else "")
            for i, check in enumerate(checks)
        ]
        node = self.node()
        instance = ServiceInstance(
            node=node.node,
            id=service.id,
            service=service.service,
            tags=service.tags,
            address=service.address,
            port=service.port,
            meta=dict(service.meta or {}),
            tagged_addresses={k: encode_address(*v) for k, v in (service.tagged_addresses or {}).items()},
            weights=weights,
            enable_tag_override=service.enable_tag_override,
            partition=DEFAULT_PARTITION,
        )

        async def facts(view: NodeView) -> ServiceInstance | None:
            return await self._instance(view, service.id)

        async def vet(existing: ServiceInstance | None) -> None:
            await access.require_named("service", service.service, Level.WRITE)
            if existing is not None and existing.service != service.service:
                await access.require_named("service", existing.service, Level.WRITE)

        async def write(tx: Transaction, existing: ServiceInstance | None) -> None:
            before = {check.check_id: check for check in (await instance_checks(tx, existing) if existing else [])}
            await tx.catalog.save_node(node)
            saved = await tx.catalog.save_service(instance)
            now = self._cluster.now()
            for check_id, check in zip(ids, checks, strict=True):
                previous = before.pop(check_id, None)
                assert check.ttl is not None  # noqa: S101 -- check_ttl_check refused the others
                await tx.catalog.save_check(
                    Check(
                        node=node.node,
                        check_id=check_id,
                        name=check.name or f"Service '{saved.service}' check",
                        status=previous.status if previous is not None else check_status(check.status),
                        notes=check.notes,
                        output=previous.output if previous is not None else "",
                        service_id=saved.id,
                        service_name=saved.service,
                        service_tags=saved.tags,
                        type="ttl",
                        ttl=check.ttl,
                        deadline=now + timedelta(seconds=check.ttl),
                        partition=DEFAULT_PARTITION,
                    )
                )
            for left in before.values():
                if replace_existing_checks and not is_maintenance(left):
                    await tx.catalog.delete_check(DEFAULT_PARTITION, "", node.node, left.check_id)
                elif (left.service_name, left.service_tags) != (saved.service, saved.tags):
                    await tx.catalog.save_check(replace(left, service_name=saved.service, service_tags=saved.tags))

        await vetted(self._cluster, facts, vet, write, enforced=access.enforced)

    async def _owned(self, access: Access, instance: ServiceInstance | None, service_id: str) -> ServiceInstance:
        if instance is None:
            raise _unknown_service(service_id)
        await access.require_named("service", instance.service, Level.WRITE)
        return instance

    async def deregister(self, service_id: str, *, access: Access = ALLOW_ALL) -> None:
        """`PUT /v1/agent/service/deregister/{service_id}`: remove the instance and its checks.

        Raises:
            NotFoundError: no such instance on the agent node (`Unknown service ID ...`).
            PermissionDeniedError: the caller lacks `service:write` on it.
        """

        async def facts(view: NodeView) -> ServiceInstance | None:
            return await self._instance(view, service_id)

        async def vet(existing: ServiceInstance | None) -> None:
            await self._owned(access, existing, service_id)

        async def write(tx: Transaction, existing: ServiceInstance | None) -> None:
            await tx.catalog.delete_service(DEFAULT_PARTITION, "", self.node_name, service_id)

        await vetted(self._cluster, facts, vet, write, enforced=access.enforced)

    async def update_ttl(self, check_id: str, status: Health, note: str, *, access: Access = ALLOW_ALL) -> None:
        """`PUT /v1/agent/check/pass|warn|fail/{check_id}?note=`: set a TTL check's status and output, renew it.

        Raises:
            NotFoundError: no such check on the agent node (`Unknown check ID ...`).
            InvalidRequestError: the check is not a TTL check (`CheckID "..." does not have associated TTL`).
            PermissionDeniedError: the caller lacks `service:write` on its service (`node:write` for a node check).
        """
        _no_nul(note, "Output")

        async def facts(view: NodeView) -> Check | None:
            return await view.check(DEFAULT_PARTITION, self.node_name, check_id)

        async def vet(check: Check | None) -> None:
            if check is None:
                raise _unknown_check(check_id)
            if check.service_id:
                await access.require_named("service", check.service_name, Level.WRITE)
            else:
                await access.require_named("node", self.node_name, Level.WRITE)
            if check.type != "ttl" or check.ttl is None:
                raise InvalidRequestError(f'CheckID "{check_id[:256]}" does not have associated TTL')

        async def write(tx: Transaction, check: Check | None) -> None:
            assert check is not None  # noqa: S101 -- vet refused the others
            assert check.ttl is not None  # noqa: S101
            deadline = self._cluster.now() + timedelta(seconds=check.ttl)
            await tx.catalog.save_check(replace(check, status=status, output=truncated_output(note), deadline=deadline))

        await vetted(self._cluster, facts, vet, write, enforced=access.enforced)

    async def maintenance(self, service_id: str, enable: bool, reason: str, *, access: Access = ALLOW_ALL) -> None:
        """`PUT /v1/agent/service/maintenance/{service_id}?enable=&reason=`: add or remove Consul's
        `_service_maintenance:<id>` critical check (enabling twice keeps the first reason, as Consul).

        Raises:
            InvalidRequestError: `Missing service ID`.
            NotFoundError: no such instance on the agent node.
            PermissionDeniedError: the caller lacks `service:write` on it.
        """
        if not service_id:
            raise InvalidRequestError("Missing service ID")
        _no_nul(reason, "Notes")
        check_id = SERVICE_MAINTENANCE_PREFIX + service_id

        async def facts(view: NodeView) -> tuple[ServiceInstance | None, Check | None]:
            return await self._instance(view, service_id), await view.check(DEFAULT_PARTITION, self.node_name, check_id)

        async def vet(found: tuple[ServiceInstance | None, Check | None]) -> None:
            await self._owned(access, found[0], service_id)

        async def write(tx: Transaction, found: tuple[ServiceInstance | None, Check | None]) -> None:
            instance, current = found
            assert instance is not None  # noqa: S101 -- vet refused the others
            if not enable:
                if current is not None:
                    await tx.catalog.delete_check(DEFAULT_PARTITION, "", self.node_name, check_id)
                return
            if current is None:
                await tx.catalog.save_check(
                    Check(
                        node=self.node_name,
                        check_id=check_id,
                        name=MAINTENANCE_CHECK_NAME,
                        status=Health.CRITICAL,
                        notes=truncated_output(reason) if reason else DEFAULT_MAINTENANCE_REASON,
                        service_id=instance.id,
                        service_name=instance.service,
                        service_tags=instance.tags,
                        type="maintenance",
                        partition=DEFAULT_PARTITION,
                    )
                )

        await vetted(self._cluster, facts, vet, write, enforced=access.enforced)

    async def services(self, *, access: Access = ALLOW_ALL) -> Result[list[ServiceInstance]]:
        """`GET /v1/agent/services`: the agent node's instances the caller may read (`service:read`)."""
        await access.allowed_named("node", self.node_name, Level.READ)  # resolves the token: an unknown one fails
        _, instances, index = await self._cluster.store.catalog.node(DEFAULT_PARTITION, "", self.node_name)
        kept = [i for i in instances if await access.allowed_named("service", i.service, Level.READ)]
        return Result(kept, index, len(kept) != len(instances))

    async def checks(self, *, access: Access = ALLOW_ALL) -> Result[list[Check]]:
        """`GET /v1/agent/checks`: the agent node's checks the caller may read (by service, or `node:read`)."""
        await access.allowed_named("node", self.node_name, Level.READ)  # resolves the token: an unknown one fails
        checks, index = await self._cluster.store.catalog.checks(DEFAULT_PARTITION, "", node=self.node_name)
        kept = []
        for check in checks:
            if check.service_id:
                allowed = await access.allowed_named("service", check.service_name, Level.READ)
            else:
                allowed = await access.allowed_named("node", self.node_name, Level.READ)
            if allowed:
                kept.append(check)
        return Result(kept, index, len(kept) != len(checks))
