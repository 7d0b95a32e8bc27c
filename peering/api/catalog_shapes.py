"""Response models of the catalog, health and agent routes: they document `catalog_render.py`'s JSON.

Fields present on every answer are required; `PeerName` (imported rows), `Partition` (outside `default`)
and a service's `TaggedAddresses` appear only when set, as Consul's `omitempty`.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_pascal


class Shape(BaseModel):
    model_config = ConfigDict(alias_generator=to_pascal, populate_by_name=True)


class WeightsShape(Shape):
    passing: int
    warning: int


class ServiceAddressShape(Shape):
    address: str
    port: int


class NodeShape(Shape):
    """A catalog node."""

    id: str = Field(alias="ID", description="The node's UUID (empty if it gave none).")
    node: str
    address: str
    datacenter: str
    tagged_addresses: dict[str, str]
    meta: dict[str, str]
    partition: str | None = Field(None, description="Only outside the `default` partition.")
    peer_name: str | None = Field(None, description="Only on rows imported over a peering: its local name.")
    create_index: int
    modify_index: int


class NodeServiceShape(Shape):
    """A service instance (Consul's `NodeService`)."""

    id: str = Field(alias="ID")
    service: str
    tags: list[str]
    address: str
    tagged_addresses: dict[str, ServiceAddressShape] | None = None
    meta: dict[str, str]
    port: int
    weights: WeightsShape
    enable_tag_override: bool
    proxy: dict[str, Any]
    connect: dict[str, Any]
    partition: str | None = None
    peer_name: str | None = None
    create_index: int
    modify_index: int


class CheckShape(Shape):
    """A health check (Consul's `HealthCheck`)."""

    node: str
    check_id: str = Field(alias="CheckID")
    name: str
    status: str = Field(description="`passing`, `warning` or `critical`.")
    notes: str
    output: str
    service_id: str = Field(alias="ServiceID", description="Empty for a node check.")
    service_name: str
    service_tags: list[str]
    type: str = Field(description="`ttl` for a TTL check; `maintenance` for a maintenance check.")
    interval: str
    timeout: str
    exposed_port: int
    definition: dict[str, Any]
    partition: str | None = None
    peer_name: str | None = None
    create_index: int
    modify_index: int


class HealthEntryShape(Shape):
    """One entry of `/v1/health/service/{name}`."""

    node: NodeShape
    service: NodeServiceShape
    checks: list[CheckShape] = Field(description="The node's checks, then the instance's own.")


class ServiceNodeShape(Shape):
    """One entry of `/v1/catalog/service/{name}` (Consul's flattened `ServiceNode`)."""

    id: str = Field(alias="ID")
    node: str
    address: str
    datacenter: str
    tagged_addresses: dict[str, str]
    node_meta: dict[str, str]
    service_kind: str
    service_id: str = Field(alias="ServiceID")
    service_name: str
    service_tags: list[str]
    service_address: str
    service_tagged_addresses: dict[str, ServiceAddressShape] | None = None
    service_weights: WeightsShape
    service_meta: dict[str, str]
    service_port: int
    service_socket_path: str
    service_enable_tag_override: bool
    service_proxy: dict[str, Any]
    service_connect: dict[str, Any]
    partition: str | None = None
    peer_name: str | None = None
    create_index: int
    modify_index: int


class NodeServicesShape(Shape):
    """`/v1/catalog/node/{node}`: the node and its instances by ID."""

    node: NodeShape
    services: dict[str, NodeServiceShape]


class AgentServiceShape(Shape):
    """An instance of the agent node (Consul's `AgentService`)."""

    id: str = Field(alias="ID")
    service: str
    tags: list[str]
    meta: dict[str, str]
    port: int
    address: str
    tagged_addresses: dict[str, ServiceAddressShape] | None = None
    weights: WeightsShape
    enable_tag_override: bool
    datacenter: str
