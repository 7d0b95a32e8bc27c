"""Operator endpoints of Consul's peering API (SPEC §3): each parses, calls the service once, renders."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from peering.api.body import body_openapi, json_body
from peering.api.deps import AccessDep, EncodedDep, ServiceDep
from peering.api.errors import error_responses
from peering.api.query import ReadOptionsDep, SupportedQuery, WriteOptionsDep, unless_abandoned
from peering.api.render import bytes_response, json_response, read_headers
from peering.api.schemas import (
    CheckResponse,
    EstablishRequest,
    EstablishResponse,
    GenerateTokenRequest,
    GenerateTokenResponse,
    PeeringResponse,
)
from peering.errors import InvalidRequestError
from peering.service import CheckResult, TokenRequest
from peering.service import EstablishRequest as EstablishCommand

router = APIRouter(prefix="/v1", tags=["peering"], dependencies=[SupportedQuery])

GenerateTokenBody = Annotated[GenerateTokenRequest, Depends(json_body(GenerateTokenRequest))]
EstablishBody = Annotated[EstablishRequest, Depends(json_body(EstablishRequest))]


def _establish_command(body: EstablishRequest, options: WriteOptionsDep) -> EstablishCommand:
    if not body.peer_name:
        raise InvalidRequestError("PeerName is required in the payload when establishing a peering.")
    if not body.peering_token:
        raise InvalidRequestError("PeeringToken is required in the payload when establishing a peering.")
    return EstablishCommand(
        name=body.peer_name, token=body.peering_token, partition=body.partition or options.partition, meta=body.meta
    )


def _check_json(result: CheckResult) -> dict[str, object]:
    return {
        "IsValid": result.is_valid,
        "ErrorMessage": result.error_message,
        "RemoteServerName": result.remote_server_name,
        "RemoteDatacenter": result.remote_datacenter,
        "RemotePeerID": result.remote_peer_id,
        "RemoteServerVersion": result.remote_server_version,
        "RemoteServerCompatVersion": result.remote_server_compat_version,
    }


@router.post(
    "/peering/establish",
    operation_id="establishPeering",
    summary="Establish a peering with a token",
    response_model=EstablishResponse,
    responses=error_responses(400, 403, 413, 502),
    openapi_extra=body_openapi(EstablishRequest),
)
async def establish(body: EstablishBody, options: WriteOptionsDep, service: ServiceDep, access: AccessDep) -> Response:
    """Establish a peering with the cluster that generated the token.

    Dials it over TLS pinned to the token's CA, exchanges the one-time secret, and answers `{}` once
    the link is up. A used or superseded token is refused with 403; an unreachable cluster with 502.
    """
    await service.establish(_establish_command(body, options), access=access)
    return json_response({}, pretty=options.pretty)


@router.post(
    "/peering/check",
    operation_id="checkPeeringToken",
    summary="Check a token without using it",
    response_model=CheckResponse,
    responses=error_responses(400, 403, 413),
    openapi_extra=body_openapi(EstablishRequest),
)
async def check(body: EstablishBody, options: WriteOptionsDep, service: ServiceDep, access: AccessDep) -> Response:
    """Check a token before using it: every establish check, a TLS dial and a secret probe, changing nothing.

    A failed check is still 200, with `IsValid: false` and the message establish would give.
    """
    result = await service.check(_establish_command(body, options), access=access)
    return json_response(_check_json(result), pretty=options.pretty)


@router.post(
    "/peering/token",
    operation_id="generatePeeringToken",
    summary="Generate a peering token",
    response_model=GenerateTokenResponse,
    responses=error_responses(400, 403, 413),
    openapi_extra=body_openapi(GenerateTokenRequest),
)
async def generate_token(
    body: GenerateTokenBody, options: WriteOptionsDep, service: ServiceDep, access: AccessDep
) -> Response:
    """Generate a one-time token for a peer cluster to establish a peering with this one.

    Calling it again for the same name keeps the peering's ID and voids the previous unused token.
    """
    if not body.peer_name:
        raise InvalidRequestError("PeerName is required in the payload when generating a new peering token.")
    token = await service.generate_token(
        TokenRequest(
            name=body.peer_name,
            partition=body.partition or options.partition,
            meta=body.meta,
            server_external_addresses=body.server_external_addresses or (),
        ),
        access=access,
    )
    return json_response({"PeeringToken": token}, pretty=options.pretty)


@router.get(
    "/peering/{name}",
    operation_id="readPeering",
    summary="Read a peering",
    response_model=PeeringResponse,
    responses=error_responses(400, 403, 404),
)
async def read_peering(
    request: Request, name: str, options: ReadOptionsDep, service: ServiceDep, access: AccessDep, encoded: EncodedDep
) -> Response:
    """Read one peering by name (case-insensitive). Supports blocking queries with `index` and `wait`."""
    call = service.read(
        options.partition,
        name,
        min_index=options.index,
        wait=options.wait,
        consistent=options.consistent,
        access=access,
    )
    peering = await unless_abandoned(request, call) if options.index else await call
    if isinstance(peering, Response):
        return peering  # the client left while it waited
    return bytes_response(encoded.one(peering), pretty=options.pretty, headers=read_headers(peering.modify_index))


@router.delete(
    "/peering/{name}",
    operation_id="deletePeering",
    summary="Delete a peering",
    response_class=Response,  # 200 with an empty body: documented without content
    responses=error_responses(400, 403),
)
async def delete_peering(name: str, options: WriteOptionsDep, service: ServiceDep, access: AccessDep) -> Response:
    """Delete a peering: it turns `TERMINATED` with `DeletedAt`, then is removed. Unknown names are fine."""
    await service.delete(options.partition, name, access=access)
    return Response(status_code=200)


@router.get("/peering/", operation_id="readPeeringWithoutName", responses=error_responses(400), include_in_schema=False)
async def read_without_name() -> Response:
    """`GET /v1/peering/` names nothing."""
    raise InvalidRequestError("Must specify a name to fetch.")


@router.delete(
    "/peering/", operation_id="deletePeeringWithoutName", responses=error_responses(400), include_in_schema=False
)
async def delete_without_name() -> Response:
    """`DELETE /v1/peering/` names nothing."""
    raise InvalidRequestError("Must specify a name to delete.")


@router.get(
    "/peerings",
    operation_id="listPeerings",
    summary="List peerings",
    response_model=list[PeeringResponse],
    responses=error_responses(400, 403),
)
async def list_peerings(
    request: Request, options: ReadOptionsDep, service: ServiceDep, access: AccessDep, encoded: EncodedDep
) -> Response:
    """List the peerings of a partition, sorted by name, every state included. Supports blocking queries."""
    call = service.list_peerings(
        options.partition, min_index=options.index, wait=options.wait, consistent=options.consistent, access=access
    )
    listed = await unless_abandoned(request, call) if options.index else await call
    if isinstance(listed, Response):
        return listed  # the client left while it waited
    peerings, index = listed
    return bytes_response(encoded.many(peerings), pretty=options.pretty, headers=read_headers(index))
