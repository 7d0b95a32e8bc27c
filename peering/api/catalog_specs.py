"""From decoded catalog bodies (`catalog_body.py`) to the catalog's request specs (`catalog/specs.py`).

Fields for features this service does not have are refused here when they are set (never silently
dropped); zero values (what the Go client sends for fields it does not use) pass.
"""

from __future__ import annotations

from typing import Any

from peering.api.catalog_body import (
    AgentCheckBody,
    AgentServiceBody,
    CatalogCheckBody,
    CatalogServiceBody,
    DeregisterBody,
    RegisterBody,
    ServiceAddressBody,
    WeightsBody,
    seconds,
)
from peering.catalog.model import Weights
from peering.catalog.specs import (
    AgentServiceSpec,
    CheckSpec,
    Deregistration,
    Registration,
    ServiceSpec,
    TtlCheckSpec,
)
from peering.errors import InvalidRequestError

# check kinds Consul runs itself, by the field that selects them: none of them runs here
_RUN_KINDS = (
    ("http", "HTTP"),
    ("tcp", "TCP"),
    ("udp", "UDP"),
    ("grpc", "GRPC"),
    ("h2ping", "H2PING"),
    ("os_service", "OSService"),
    ("script_args", "Script"),
    ("docker_container_id", "Docker"),
    ("alias_node", "Alias"),
    ("alias_service", "Alias"),
)
_UNSUPPORTED_OPTIONS = (
    ("deregister_critical_service_after", "DeregisterCriticalServiceAfter"),
    ("success_before_passing", "SuccessBeforePassing"),
    ("failures_before_warning", "FailuresBeforeWarning"),
    ("failures_before_critical", "FailuresBeforeCritical"),
)


def _unsupported(what: str, value: Any) -> None:
    """Refuse a feature this service does not have, when the request actually uses it."""
    if value:
        raise InvalidRequestError(f"{what} is not supported")


def _weights(body: WeightsBody | None) -> Weights | None:
    return None if body is None else Weights(passing=body.passing or 0, warning=body.warning or 0)


def _addresses(body: dict[str, ServiceAddressBody] | None) -> dict[str, tuple[str, int]] | None:
    if body is None:
        return None
    return {name: (value.address or "", value.port or 0) for name, value in body.items()}


def catalog_service(body: CatalogServiceBody) -> ServiceSpec:
    """The `Service` of a registration."""
    _unsupported("Service.SocketPath", body.socket_path)
    _unsupported("Service.Proxy", body.proxy)
    _unsupported("Service.Connect", body.connect)
    _unsupported("Service.Locality", body.locality)
    return ServiceSpec(
        id=body.id or "",
        service=body.service or "",
        tags=tuple(body.tags or ()),
        address=body.address or "",
        port=body.port or 0,
        meta=body.meta,
        tagged_addresses=_addresses(body.tagged_addresses),
        weights=_weights(body.weights),
        enable_tag_override=bool(body.enable_tag_override),
        kind=body.kind or "",
        peer_name=body.peer_name or "",
    )


def catalog_check(body: CatalogCheckBody) -> CheckSpec:
    """One check of a registration."""
    return CheckSpec(
        node=body.node or "",
        check_id=body.check_id or "",
        name=body.name or "",
        status=body.status or "",
        notes=body.notes or "",
        output=body.output or "",
        service_id=body.service_id or "",
        type=body.type or "",
        peer_name=body.peer_name or "",
    )


def registration(body: RegisterBody, partition: str | None) -> Registration:
    """`PUT /v1/catalog/register` (`Check` joins `Checks` last, as Consul flattens it)."""
    _unsupported("Locality", body.locality)
    checks = [catalog_check(check) for check in (body.checks or ())]
    if body.check is not None:
        checks.append(catalog_check(body.check))
    service = catalog_service(body.service) if body.service is not None else None
    return Registration(
        node=body.node or "",
        address=body.address or "",
        id=body.id or "",
        datacenter=body.datacenter or "",
        partition=body.partition or (body.service.partition if body.service else None) or partition,
        tagged_addresses=body.tagged_addresses,
        node_meta=body.node_meta,
        service=service,
        checks=tuple(checks),
        skip_node_update=bool(body.skip_node_update),
        peer_name=body.peer_name or "",
    )


def deregistration(body: DeregisterBody, partition: str | None) -> Deregistration:
    """`PUT /v1/catalog/deregister`."""
    return Deregistration(
        node=body.node or "",
        service_id=body.service_id or "",
        check_id=body.check_id or "",
        datacenter=body.datacenter or "",
        partition=body.partition or partition,
        peer_name=body.peer_name or "",
    )


def ttl_check(body: AgentCheckBody) -> TtlCheckSpec:
    """One check of an agent definition; a kind or option that cannot run here is named in `unsupported`."""
    unsupported = next(
        (f"{kind} checks are not supported, only TTL checks" for f, kind in _RUN_KINDS if getattr(body, f)), ""
    )
    unsupported = unsupported or next(
        (f"{name} is not supported" for f, name in _UNSUPPORTED_OPTIONS if getattr(body, f) not in (None, "", 0)), ""
    )
    return TtlCheckSpec(
        check_id=body.check_id or "",
        name=body.name or "",
        ttl=seconds(body.ttl, "TTL"),
        interval=seconds(body.interval, "Interval"),
        status=body.status or "",
        notes=body.notes or "",
        unsupported=unsupported,
    )


def agent_service(body: AgentServiceBody) -> AgentServiceSpec:
    """`PUT /v1/agent/service/register` (`Check` comes first, then `Checks`, as Consul's `CheckTypes`)."""
    _unsupported("SocketPath", body.socket_path)
    _unsupported("Proxy", body.proxy)
    _unsupported("Connect", body.connect)
    _unsupported("Locality", body.locality)
    checks = ([body.check] if body.check is not None else []) + list(body.checks or ())
    service = ServiceSpec(
        id=body.id or "",
        service=body.name or "",
        tags=tuple(body.tags or ()),
        address=body.address or "",
        port=body.port or 0,
        meta=body.meta,
        tagged_addresses=_addresses(body.tagged_addresses),
        weights=_weights(body.weights),
        enable_tag_override=bool(body.enable_tag_override),
        kind=body.kind or "",
        peer_name=body.peer_name or "",
    )
    return AgentServiceSpec(service=service, checks=tuple(ttl_check(check) for check in checks))
