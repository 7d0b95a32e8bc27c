"""Catalog concepts (SPEC §13): nodes, service instances and health checks, keyed by partition and peer name.

Pure and stdlib only. Local rows have `peer_name == ""`; rows imported over a peering carry the
importer's local name for that peering (only the importer writes them). Field names follow Consul's
JSON (`api/catalog.go`, `api/health.go`) in snake case; the API layer renders Consul's shapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

NODE_MAINTENANCE = "_node_maintenance"  # Consul's check ID for a node in maintenance
SERVICE_MAINTENANCE_PREFIX = "_service_maintenance:"  # + service ID: an instance in maintenance
OVERALL_CHECK_SUFFIX = ":overall-check"  # the one check a peer receives per instance: <serviceID>:overall-check
EXCLUDED_FROM_EXPORT = "consul"  # never exported, not even by `*` (SPEC §14)


class Health(StrEnum):
    """A check's status (maintenance is a `critical` check with a maintenance ID, as in Consul)."""

    PASSING = "passing"
    WARNING = "warning"
    CRITICAL = "critical"
    MAINTENANCE = "maintenance"  # only as a summary (`summary`), never stored on a check


@dataclass(frozen=True)
class Weights:
    passing: int = 1
    warning: int = 1


@dataclass(frozen=True)
class Node:
    """A catalog node of one partition (and one peer, for imported rows)."""

    node: str
    address: str
    id: str = ""  # the node's UUID, if it gave one
    datacenter: str = ""  # the cluster's own, or the exporter's for imported rows
    partition: str = "default"
    peer_name: str = ""
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    meta: Mapping[str, str] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class ServiceInstance:
    """One instance of a service, registered on a node."""

    node: str
    id: str  # unique per node; defaults to the service name
    service: str
    tags: tuple[str, ...] = ()
    address: str = ""
    port: int = 0
    meta: Mapping[str, str] = field(default_factory=dict)
    tagged_addresses: Mapping[str, str] = field(default_factory=dict)
    weights: Weights = Weights()
    enable_tag_override: bool = False
    kind: str = ""  # "" = a typical service (the only kind exported)
    partition: str = "default"
    peer_name: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class Check:
    """A health check on a node (`service_id == ""`) or on one instance."""

    node: str
    check_id: str
    name: str
    status: Health = Health.CRITICAL  # passing, warning or critical
    notes: str = ""
    output: str = ""
    service_id: str = ""
    service_name: str = ""
    service_tags: tuple[str, ...] = ()
    type: str = ""  # "ttl" for a TTL check, "" for a check the catalog only records
    ttl: float | None = None  # seconds: a TTL check turns critical when not renewed in time
    deadline: datetime | None = None  # when an unrenewed TTL check turns critical (stored: survives restarts)
    partition: str = "default"
    peer_name: str = ""
    create_index: int = 0
    modify_index: int = 0


@dataclass(frozen=True)
class ServiceHealth:
    """One entry of `/v1/health/service/{name}`: an instance, its node, and the node's and its own checks."""

    node: Node
    service: ServiceInstance
    checks: tuple[Check, ...]


def is_maintenance(check: Check) -> bool:
    """Whether a check is one of Consul's maintenance checks (node or service)."""
    return check.check_id == NODE_MAINTENANCE or check.check_id.startswith(SERVICE_MAINTENANCE_PREFIX)


_RANK = {Health.PASSING: 0, Health.WARNING: 1, Health.CRITICAL: 2, Health.MAINTENANCE: 3}


def summary(checks: Iterable[Check]) -> Health | None:
    """The precedence summary of SPEC §13: maintenance > critical > warning > passing; None without checks."""
    best: Health | None = None
    for check in checks:
        status = Health.MAINTENANCE if is_maintenance(check) else check.status
        if best is None or _RANK[status] > _RANK[best]:
            best = status
    return best


def passing(entry: ServiceHealth) -> bool:
    """`?passing`: every check of the entry is passing (an entry without checks passes, as in Consul)."""
    return all(check.status is Health.PASSING for check in entry.checks)


@dataclass(frozen=True)
class ConfigEntry:
    """A config entry as stored (SPEC §14: kind `exported-services` only, `name` = the partition exported from).

    `body` is the entry's JSON object as validated (Consul's keys, without `Kind`, `Name` and the indexes).
    """

    kind: str
    name: str
    body: Mapping[str, object] = field(default_factory=dict)
    create_index: int = 0
    modify_index: int = 0
