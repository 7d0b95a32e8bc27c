"""Consul's catalog endpoints (SPEC §13): register, deregister, and the reads (`?peer=` for imported rows)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from peering.api.body import body_openapi
from peering.api.catalog_body import DeregisterBody, RegisterBody, request_body
from peering.api.catalog_query import CatalogDep, PeerParam, TagParam, blocking, peer_of, read_answer, tags_of
from peering.api.catalog_render import node_json, node_services_json, service_node_json
from peering.api.catalog_shapes import NodeServicesShape, NodeShape, ServiceNodeShape
from peering.api.catalog_specs import deregistration, registration
from peering.api.deps import AccessDep, SecretDep
from peering.api.errors import error_responses
from peering.api.query import ReadOptionsDep, SupportedQuery, WriteOptionsDep
from peering.api.render import json_response
from peering.errors import InvalidRequestError

router = APIRouter(prefix="/v1/catalog", tags=["catalog"], dependencies=[SupportedQuery])

RegisterDep = Annotated[RegisterBody, Depends(request_body(RegisterBody))]
DeregisterDep = Annotated[DeregisterBody, Depends(request_body(DeregisterBody))]


@router.put(
    "/register",
    operation_id="catalogRegister",
    summary="Register a node, a service instance and checks",
    response_model=bool,
    responses=error_responses(400, 403, 413),
    openapi_extra=body_openapi(RegisterBody),
)
async def register(body: RegisterDep, options: WriteOptionsDep, catalog: CatalogDep, access: AccessDep) -> Response:
    """Add or update a node and, optionally, one instance on it and checks (recorded, never run).

    Answers `true`. Any `PeerName` is refused: only the importer writes rows of a peering.
    """
    await catalog.register(registration(body, options.partition), access=access)
    return json_response(True, pretty=options.pretty)


@router.put(
    "/deregister",
    operation_id="catalogDeregister",
    summary="Deregister a node, a service instance or a check",
    response_model=bool,
    responses=error_responses(400, 403, 413),
    openapi_extra=body_openapi(DeregisterBody),
)
async def deregister(body: DeregisterDep, options: WriteOptionsDep, catalog: CatalogDep, access: AccessDep) -> Response:
    """Remove an instance (`ServiceID`), else a check (`CheckID`), else the node with all it holds. Answers `true`."""
    await catalog.deregister(deregistration(body, options.partition), access=access)
    return json_response(True, pretty=options.pretty)


@router.get(
    "/services",
    operation_id="catalogServices",
    summary="List services",
    response_model=dict[str, list[str]],
    responses=error_responses(400, 403),
)
async def services(
    request: Request,
    options: ReadOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    secret: SecretDep,
    peer: PeerParam = None,
) -> Response:
    """Every service name with the union of its instances' tags. With `?peer=`, the names imported over
    that peering (an extension: Consul cannot list them here). Supports blocking queries."""
    call = catalog.reads.services(
        options.partition, peer_of(request), min_index=options.index, wait=options.wait, access=access
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    return read_answer(result.value, result, pretty=options.pretty, secret=secret)


@router.get(
    "/service/{name}",
    operation_id="catalogService",
    summary="List the instances of a service",
    response_model=list[ServiceNodeShape],
    responses=error_responses(400, 403),
)
async def service(
    request: Request,
    name: str,
    options: ReadOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    secret: SecretDep,
    peer: PeerParam = None,
    tag: TagParam = None,
) -> Response:
    """The instances of a service with their nodes, flattened (`[]` for an unknown service or peer)."""
    call = catalog.reads.service_health(
        options.partition,
        peer_of(request),
        name,
        tags=tags_of(request),
        min_index=options.index,
        wait=options.wait,
        consistent=options.consistent,
        access=access,
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    body = [service_node_json(entry.node, entry.service) for entry in result.value]
    return read_answer(body, result, pretty=options.pretty, secret=secret)


@router.get(
    "/nodes",
    operation_id="catalogNodes",
    summary="List nodes",
    response_model=list[NodeShape],
    responses=error_responses(400, 403),
)
async def nodes(
    request: Request,
    options: ReadOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    secret: SecretDep,
    peer: PeerParam = None,
) -> Response:
    """Every node of the partition (or imported over `?peer=`), sorted by name. Supports blocking queries."""
    call = catalog.reads.nodes(
        options.partition, peer_of(request), min_index=options.index, wait=options.wait, access=access
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    return read_answer([node_json(node) for node in result.value], result, pretty=options.pretty, secret=secret)


@router.get(
    "/node/{node}",
    operation_id="catalogNode",
    summary="Read a node and its services",
    response_model=NodeServicesShape | None,
    responses=error_responses(400, 403),
)
async def node(
    request: Request,
    node: str,
    options: ReadOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    secret: SecretDep,
    peer: PeerParam = None,
) -> Response:
    """A node with its instances by ID; `null` for an unknown node, as Consul."""
    call = catalog.reads.node(
        options.partition, peer_of(request), node, min_index=options.index, wait=options.wait, access=access
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    body = node_services_json(*result.value) if result.value is not None else None
    return read_answer(body, result, pretty=options.pretty, secret=secret)


@router.get("/service/", operation_id="catalogServiceWithoutName", include_in_schema=False)
async def service_without_name() -> Response:
    """`GET /v1/catalog/service/` names nothing."""
    raise InvalidRequestError("Missing service name")


@router.get("/node/", operation_id="catalogNodeWithoutName", include_in_schema=False)
async def node_without_name() -> Response:
    """`GET /v1/catalog/node/` names nothing."""
    raise InvalidRequestError("Missing node name")
