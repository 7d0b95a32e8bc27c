"""What a peer receives of one service (SPEC §14): the payload, built from the local catalog's health view.

Typical instances only (proxies and gateways stay home), sorted by instance ID, each with one
`<serviceID>:overall-check` whose status is the precedence summary of its node's and its own checks
(maintenance reaches the peer as `critical`; `Output` names the checks that decided it), no indexes, the
node's datacenter kept (the cluster's when the node has none). The hash is of the JSON as sent.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from peering.catalog.model import OVERALL_CHECK_SUFFIX, Health, ServiceHealth, summary
from peering.domain import Peering, PeeringState
from peering.peer.wire import CheckServiceNode, ExportedService, WireCheck, WireNode, WireService, WireWeights

_MAX_OUTPUT = 1024
_WIRE_STATUS: dict[Health, Literal["passing", "warning", "critical"]] = {
    Health.PASSING: "passing",
    Health.WARNING: "warning",
    Health.CRITICAL: "critical",
}


def exportable(peering: Peering | None) -> bool:
    """Whether a peering receives exports: live (not deleted, `ACTIVE` or `FAILING`) and with a peer."""
    return (
        peering is not None
        and not peering.is_deleted
        and peering.state in (PeeringState.ACTIVE, PeeringState.FAILING)
        and (peering.peer_id != "" or peering.remote_cluster != "")
    )


@dataclass(frozen=True)
class Payload:
    """One name's instance set as sent, its JSON size and hash."""

    service: ExportedService
    size: int
    hash: str


def payload(name: str, entries: Iterable[ServiceHealth], datacenter: str) -> Payload:
    """The instance set of `name` as a peer receives it (see the module docstring), sorted by instance ID."""
    nodes = []
    for entry in sorted(entries, key=lambda e: (e.service.id, e.node.node)):
        if entry.service.kind:
            continue  # proxies and gateways are not exported
        node, svc = entry.node, entry.service
        checks = []
        status = summary(entry.checks)
        if status is not None:
            worst = Health.CRITICAL if status is Health.MAINTENANCE else status
            reasons = sorted(c.check_id for c in entry.checks if c.status is Health(worst))
            checks.append(
                WireCheck(
                    Node=node.node,
                    CheckID=svc.id + OVERALL_CHECK_SUFFIX,
                    Name="overall-check",
                    Status=_WIRE_STATUS[worst],
                    Output=", ".join(reasons)[:_MAX_OUTPUT],
                    ServiceID=svc.id,
                    ServiceName=svc.service,
                )
            )
        nodes.append(
            CheckServiceNode(
                Node=WireNode(
                    ID=node.id,
                    Node=node.node,
                    Address=node.address,
                    Datacenter=node.datacenter or datacenter,
                    TaggedAddresses=dict(node.tagged_addresses),
                    Meta=dict(node.meta),
                ),
                Service=WireService(
                    ID=svc.id,
                    Service=svc.service,
                    Tags=list(svc.tags),
                    Address=svc.address,
                    Port=svc.port,
                    Meta=dict(svc.meta),
                    TaggedAddresses=dict(svc.tagged_addresses),
                    Weights=WireWeights(Passing=svc.weights.passing, Warning=svc.weights.warning),
                    EnableTagOverride=svc.enable_tag_override,
                ),
                Checks=checks,
            )
        )
    service = ExportedService(Name=name, Nodes=nodes)
    encoded = service.model_dump_json(by_alias=True).encode()
    return Payload(service, len(encoded), hashlib.sha256(encoded).hexdigest())
