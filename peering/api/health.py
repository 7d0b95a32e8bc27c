"""Consul's health endpoints (SPEC §13): instances with their checks, checks by service and by state."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from peering.api.catalog_query import CatalogDep, PeerParam, TagParam, blocking, flag, peer_of, read_answer, tags_of
from peering.api.catalog_render import check_json, health_json
from peering.api.catalog_shapes import CheckShape, HealthEntryShape
from peering.api.deps import AccessDep, SecretDep
from peering.api.errors import error_responses
from peering.api.query import ReadOptionsDep, SupportedQuery
from peering.errors import InvalidRequestError

router = APIRouter(prefix="/v1/health", tags=["health"], dependencies=[SupportedQuery])

PassingParam = Annotated[
    str | None, Query(description="Present (or a true boolean): only instances whose checks all pass.")
]


@router.get(
    "/service/{name}",
    operation_id="healthService",
    summary="List the instances of a service with their health",
    response_model=list[HealthEntryShape],
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
    passing: PassingParam = None,
) -> Response:
    """Each instance with its node and checks (the node's, then its own). `?peer=` reads the instances
    imported over that peering (`[]` for an unknown service or peer). Supports blocking queries."""
    only_passing = flag(request, "passing", "Invalid value for ?passing")
    call = catalog.reads.service_health(
        options.partition,
        peer_of(request),
        name,
        tags=tags_of(request),
        passing_only=only_passing,
        min_index=options.index,
        wait=options.wait,
        consistent=options.consistent,
        access=access,
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    return read_answer([health_json(entry) for entry in result.value], result, pretty=options.pretty, secret=secret)


@router.get(
    "/checks/{service}",
    operation_id="healthChecks",
    summary="List the checks of a service",
    response_model=list[CheckShape],
    responses=error_responses(400, 403),
)
async def checks(
    request: Request,
    service: str,
    options: ReadOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    secret: SecretDep,
    peer: PeerParam = None,
) -> Response:
    """The checks of the service's instances (not their nodes' checks). Supports blocking queries."""
    call = catalog.reads.service_checks(
        options.partition, peer_of(request), service, min_index=options.index, wait=options.wait, access=access
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    return read_answer([check_json(check) for check in result.value], result, pretty=options.pretty, secret=secret)


@router.get(
    "/state/{state}",
    operation_id="healthState",
    summary="List the checks in a state",
    response_model=list[CheckShape],
    responses=error_responses(400, 403),
)
async def state(
    request: Request,
    state: Annotated[str, Path(description="`passing`, `warning`, `critical`, or `any`.")],
    options: ReadOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    secret: SecretDep,
    peer: PeerParam = None,
) -> Response:
    """Every check in `passing`, `warning` or `critical` (`any`: every check; another state: `[]`, as Consul)."""
    call = catalog.reads.checks_in_state(
        options.partition, peer_of(request), state, min_index=options.index, wait=options.wait, access=access
    )
    result = await blocking(request, options, call)
    if isinstance(result, Response):
        return result
    return read_answer([check_json(check) for check in result.value], result, pretty=options.pretty, secret=secret)


@router.get("/service/", operation_id="healthServiceWithoutName", include_in_schema=False)
async def service_without_name() -> Response:
    """`GET /v1/health/service/` names nothing."""
    raise InvalidRequestError("Missing service name")


@router.get("/checks/", operation_id="healthChecksWithoutName", include_in_schema=False)
async def checks_without_name() -> Response:
    """`GET /v1/health/checks/` names nothing."""
    raise InvalidRequestError("Missing service name")


@router.get("/state/", operation_id="healthStateWithoutName", include_in_schema=False)
async def state_without_name() -> Response:
    """`GET /v1/health/state/` names nothing."""
    raise InvalidRequestError("Missing check state")
