"""Health: Consul's `GET /v1/status/leader`, answered by this cluster's peering address."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from peering.api.deps import ServiceDep
from peering.api.query import SupportedQuery
from peering.api.render import json_response, read_headers

router = APIRouter(prefix="/v1/status", tags=["status"], dependencies=[SupportedQuery])


@router.get("/leader", operation_id="statusLeader", summary="Health: the leader's address", response_model=str)
async def leader(request: Request, service: ServiceDep) -> Response:
    """The address of the cluster's leader (this server's peering address); 200 means the service is up."""
    headers = read_headers(await service.current_index())
    return json_response(request.app.state.leader_address, pretty="pretty" in request.query_params, headers=headers)
