"""Health and membership: Consul's `GET /v1/status/leader` and `GET /v1/status/peers` (SPEC §15).

As Consul answers with its Raft leader, the leader here is the replica running the background work:
with SQLite that is this process (its peering address), with PostgreSQL the lease holder, read from the
database (`""` and `X-Consul-KnownLeader: false` while there is none). Peers are the peering addresses
of every live replica. Both come from `app.state.replica` (a `peering.replica.Replica`) when the
composition root sets it, else from `app.state.leader_address` alone.
"""

from __future__ import annotations

from typing import Protocol

from fastapi import APIRouter, Request, Response

from peering.api.deps import ServiceDep
from peering.api.query import SupportedQuery
from peering.api.render import json_response, read_headers

router = APIRouter(prefix="/v1/status", tags=["status"], dependencies=[SupportedQuery])


class Members(Protocol):
    """What the routes need of the replica (see `peering.replica.Replica`)."""

    addresses: tuple[str, ...]

    async def leader_address(self) -> str:
        """The background owner's peering address, "" while there is none."""


def _members(request: Request) -> Members | None:
    members: Members | None = getattr(request.app.state, "replica", None)
    return members


@router.get("/leader", operation_id="statusLeader", summary="Health: the leader's address", response_model=str)
async def leader(request: Request, service: ServiceDep) -> Response:
    """The address of the cluster's leader (the replica running the background work); 200 means the service
    is up."""
    headers = read_headers(await service.current_index())
    members = _members(request)
    address = request.app.state.leader_address if members is None else await members.leader_address()
    if not address:
        headers["X-Consul-KnownLeader"] = "false"
    return json_response(address, pretty="pretty" in request.query_params, headers=headers)


@router.get(
    "/peers", operation_id="statusPeers", summary="Membership: the live replicas' addresses", response_model=list[str]
)
async def peers(request: Request, service: ServiceDep) -> Response:
    """The peering address of every live replica of this cluster (this server's alone with SQLite)."""
    headers = read_headers(await service.current_index())
    members = _members(request)
    addresses = [request.app.state.leader_address] if members is None else list(members.addresses)
    return json_response(addresses, pretty="pretty" in request.query_params, headers=headers)
