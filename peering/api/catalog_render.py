"""The catalog's JSON in Consul's shapes (reference §2.4 to §2.7; `api/catalog.go`, `api/health.go`, `api/agent.go`).

Lists and maps are never `null` (`Tags: []`, `Meta: {}`, `TaggedAddresses: {}`); `PeerName` appears only on
imported rows and `Partition` only outside `default` (both `omitempty` in Consul).
"""

from __future__ import annotations

from typing import Any

from peering.catalog.model import Check, Node, ServiceHealth, ServiceInstance, Weights
from peering.catalog.specs import decode_address
from peering.rules import DEFAULT_PARTITION

_PROXY = {"Mode": "", "MeshGateway": {}, "Expose": {}}  # Consul's empty ConnectProxyConfig


def _weights(weights: Weights) -> dict[str, int]:
    return {"Passing": weights.passing, "Warning": weights.warning}


def _scoped(body: dict[str, Any], partition: str, peer_name: str) -> dict[str, Any]:
    if partition != DEFAULT_PARTITION:
        body["Partition"] = partition
    if peer_name:
        body["PeerName"] = peer_name
    return body


def _service_addresses(instance: ServiceInstance) -> dict[str, dict[str, Any]]:
    return {
        name: {"Address": address, "Port": port}
        for name, (address, port) in ((n, decode_address(v)) for n, v in instance.tagged_addresses.items())
    }


def node_json(node: Node) -> dict[str, Any]:
    """A node (`/v1/catalog/nodes`, `Node` of a health entry)."""
    body: dict[str, Any] = {
        "ID": node.id,
        "Node": node.node,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": dict(node.tagged_addresses),
        "Meta": dict(node.meta),
    }
    _scoped(body, node.partition, node.peer_name)
    body["CreateIndex"] = node.create_index
    body["ModifyIndex"] = node.modify_index
    return body


def service_json(instance: ServiceInstance) -> dict[str, Any]:
    """An instance as Consul's `NodeService` (`Service` of a health entry, `Services` of a node)."""
    body: dict[str, Any] = {
        "ID": instance.id,
        "Service": instance.service,
        "Tags": list(instance.tags),
        "Address": instance.address,
    }
    if instance.tagged_addresses:
        body["TaggedAddresses"] = _service_addresses(instance)
    body |= {
        "Meta": dict(instance.meta),
        "Port": instance.port,
        "Weights": _weights(instance.weights),
        "EnableTagOverride": instance.enable_tag_override,
        "Proxy": _PROXY,
        "Connect": {},
    }
    _scoped(body, instance.partition, instance.peer_name)
    body["CreateIndex"] = instance.create_index
    body["ModifyIndex"] = instance.modify_index
    return body


def check_json(check: Check) -> dict[str, Any]:
    """A check (Consul's `HealthCheck`)."""
    body: dict[str, Any] = {
        "Node": check.node,
        "CheckID": check.check_id,
        "Name": check.name,
        "Status": check.status.value,
        "Notes": check.notes,
        "Output": check.output,
        "ServiceID": check.service_id,
        "ServiceName": check.service_name,
        "ServiceTags": list(check.service_tags),
        "Type": check.type,
        "Interval": "",
        "Timeout": "",
        "ExposedPort": 0,
        "Definition": {},
    }
    _scoped(body, check.partition, check.peer_name)
    body["CreateIndex"] = check.create_index
    body["ModifyIndex"] = check.modify_index
    return body


def health_json(entry: ServiceHealth) -> dict[str, Any]:
    """One entry of `/v1/health/service/{name}`."""
    return {
        "Node": node_json(entry.node),
        "Service": service_json(entry.service),
        "Checks": [check_json(check) for check in entry.checks],
    }


def service_node_json(node: Node, instance: ServiceInstance) -> dict[str, Any]:
    """One entry of `/v1/catalog/service/{name}`: Consul's flattened `ServiceNode`."""
    body: dict[str, Any] = {
        "ID": node.id,
        "Node": node.node,
        "Address": node.address,
        "Datacenter": node.datacenter,
        "TaggedAddresses": dict(node.tagged_addresses),
        "NodeMeta": dict(node.meta),
        "ServiceKind": instance.kind,
        "ServiceID": instance.id,
        "ServiceName": instance.service,
        "ServiceTags": list(instance.tags),
        "ServiceAddress": instance.address,
    }
    if instance.tagged_addresses:
        body["ServiceTaggedAddresses"] = _service_addresses(instance)
    body |= {
        "ServiceWeights": _weights(instance.weights),
        "ServiceMeta": dict(instance.meta),
        "ServicePort": instance.port,
        "ServiceSocketPath": "",
        "ServiceEnableTagOverride": instance.enable_tag_override,
        "ServiceProxy": _PROXY,
        "ServiceConnect": {},
    }
    _scoped(body, instance.partition, instance.peer_name)
    body["CreateIndex"] = instance.create_index
    body["ModifyIndex"] = instance.modify_index
    return body


def node_services_json(node: Node, instances: list[ServiceInstance]) -> dict[str, Any]:
    """`/v1/catalog/node/{node}`: the node and its instances by ID."""
    return {"Node": node_json(node), "Services": {i.id: service_json(i) for i in instances}}


def agent_service_json(instance: ServiceInstance, datacenter: str) -> dict[str, Any]:
    """An instance of the agent node as Consul's `AgentService` (`/v1/agent/services`)."""
    body: dict[str, Any] = {
        "ID": instance.id,
        "Service": instance.service,
        "Tags": list(instance.tags),
        "Meta": dict(instance.meta),
        "Port": instance.port,
        "Address": instance.address,
    }
    if instance.tagged_addresses:
        body["TaggedAddresses"] = _service_addresses(instance)
    body |= {
        "Weights": _weights(instance.weights),
        "EnableTagOverride": instance.enable_tag_override,
        "Datacenter": datacenter,
    }
    return body
