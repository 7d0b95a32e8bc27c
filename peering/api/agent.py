"""Agent endpoints: `GET /v1/agent/metrics` (Prometheus text, or Consul's JSON shape), and the services and
TTL checks of this cluster's own node (SPEC §13)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query, Request, Response

from peering.api.body import body_openapi
from peering.api.catalog_body import AgentServiceBody, CheckUpdateBody, request_body
from peering.api.catalog_query import CatalogDep, agent_partition, parse_bool, read_answer
from peering.api.catalog_render import agent_service_json, check_json
from peering.api.catalog_shapes import AgentServiceShape, CheckShape
from peering.api.catalog_specs import agent_service
from peering.api.deps import AccessDep, SecretDep, ServiceDep
from peering.api.errors import error_responses
from peering.api.query import ReadOptionsDep, SupportedQuery, WriteOptionsDep, first_value
from peering.api.render import json_response, read_headers, rfc3339
from peering.catalog.model import Health
from peering.errors import InvalidRequestError
from peering.metrics import CONTENT_TYPE, Metrics

router = APIRouter(prefix="/v1/agent", tags=["operations"], dependencies=[SupportedQuery])


async def get_metrics(request: Request) -> Metrics:
    """The metrics of the running cluster."""
    return cast(Metrics, request.app.state.metrics)


MetricsDep = Annotated[Metrics, Depends(get_metrics)]


@router.get(
    "/metrics",
    operation_id="agentMetrics",
    summary="Metrics",
    responses={
        **error_responses(400, 403),
        200: {"content": {CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}}, "application/json": {}}},
    },
)
async def metrics(
    service: ServiceDep,
    access: AccessDep,
    registry: MetricsDep,
    format: Annotated[str | None, Query(description="`prometheus` for the text format; JSON otherwise.")] = None,
    pretty: Annotated[str | None, Query(description="Present: indent the JSON answer.")] = None,
) -> Response:
    """Request, heartbeat and establish counters and `peering_healthy{peer_name,partition}`.

    With ACLs on it needs `operator:read` (Consul asks for `agent:read`; there are no agents here).
    """
    if format not in (None, "", "prometheus"):
        raise InvalidRequestError(f"Invalid format {format[:32]!r}: only prometheus is supported")
    peerings = await service.snapshot(access=access)
    registry.observe((p.name, p.partition, p.state.value) for p in peerings)
    registry.observe_replication(
        (p.name, p.partition, len(p.exported_services), len(p.imported_services)) for p in peerings
    )
    headers = read_headers(await service.current_index())  # as every GET (SPEC §3)
    if format == "prometheus":
        return Response(content=registry.render(), media_type=CONTENT_TYPE, headers=headers)
    samples = registry.samples()
    body = {
        "Timestamp": rfc3339(datetime.now(UTC).replace(microsecond=0)),
        "Gauges": [s for s in samples if not s["Name"].endswith(("_total", "_created", "_bucket", "_sum", "_count"))],
        "Counters": [s for s in samples if s["Name"].endswith("_total")],
        "Points": [],
        "Samples": [s for s in samples if s["Name"].endswith(("_sum", "_count"))],
    }
    return json_response(body, pretty=pretty is not None, headers=headers)


# The cluster's own node (SPEC §13): its services, their TTL checks, service maintenance.

AgentServiceDep = Annotated[AgentServiceBody, Depends(request_body(AgentServiceBody))]
CheckUpdateDep = Annotated[CheckUpdateBody, Depends(request_body(CheckUpdateBody))]
_WRITE_ERRORS = {
    200: {"description": "Done: an empty body, as Consul's agent endpoints."},
    **error_responses(400, 403, 404, 413),
}


@router.put(
    "/service/register",
    operation_id="agentServiceRegister",
    summary="Register a service on this cluster's node",
    openapi_extra=body_openapi(AgentServiceBody),
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def service_register(
    request: Request,
    body: AgentServiceDep,
    options: WriteOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    replace_existing_checks: Annotated[
        str | None,
        Query(
            alias="replace-existing-checks",
            description="Present (or `true`): remove the instance's checks this definition does not list.",
        ),
    ] = None,
) -> Response:
    """Add or replace an instance on the node named by `--node-name`, with its TTL checks (renewed through
    `/v1/agent/check/pass|warn|fail/{check_id}`; one not renewed in time turns `critical` by itself)."""
    agent_partition(request, body.partition)
    replace = first_value(request, "replace-existing-checks")
    await catalog.agent.register(agent_service(body), replace_existing_checks=replace in ("", "true"), access=access)
    return Response(status_code=200)


@router.put(
    "/service/deregister/{service_id}",
    operation_id="agentServiceDeregister",
    summary="Deregister a service of this cluster's node",
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def service_deregister(
    request: Request, service_id: str, options: WriteOptionsDep, catalog: CatalogDep, access: AccessDep
) -> Response:
    """Remove an instance of the agent node and its checks (404 for an unknown service ID)."""
    agent_partition(request)
    await catalog.agent.deregister(service_id, access=access)
    return Response(status_code=200)


NoteParam = Annotated[str | None, Query(description="The check's new output.")]


async def _update(request: Request, check_id: str, status: Health, catalog: CatalogDep, access: AccessDep) -> Response:
    agent_partition(request)
    await catalog.agent.update_ttl(check_id, status, first_value(request, "note") or "", access=access)
    return Response(status_code=200)


@router.put(
    "/check/pass/{check_id}",
    operation_id="agentCheckPass",
    summary="Set a TTL check passing",
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def check_pass(
    request: Request,
    check_id: str,
    options: WriteOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    note: NoteParam = None,
) -> Response:
    """Mark a TTL check `passing` with `?note=` as its output, and renew its TTL."""
    return await _update(request, check_id, Health.PASSING, catalog, access)


@router.put(
    "/check/warn/{check_id}",
    operation_id="agentCheckWarn",
    summary="Set a TTL check warning",
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def check_warn(
    request: Request,
    check_id: str,
    options: WriteOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    note: NoteParam = None,
) -> Response:
    """Mark a TTL check `warning` with `?note=` as its output, and renew its TTL."""
    return await _update(request, check_id, Health.WARNING, catalog, access)


@router.put(
    "/check/fail/{check_id}",
    operation_id="agentCheckFail",
    summary="Set a TTL check critical",
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def check_fail(
    request: Request,
    check_id: str,
    options: WriteOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    note: NoteParam = None,
) -> Response:
    """Mark a TTL check `critical` with `?note=` as its output, and renew its TTL."""
    return await _update(request, check_id, Health.CRITICAL, catalog, access)


@router.put(
    "/check/update/{check_id}",
    operation_id="agentCheckUpdate",
    summary="Set a TTL check's status and output",
    openapi_extra=body_openapi(CheckUpdateBody),
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def check_update(
    request: Request,
    check_id: str,
    body: CheckUpdateDep,
    options: WriteOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
) -> Response:
    """Set a TTL check's `Status` and `Output` from the body, and renew its TTL."""
    agent_partition(request)
    if body.status not in (Health.PASSING, Health.WARNING, Health.CRITICAL):
        shown = (body.status or "")[:64]
        raise InvalidRequestError(f"Invalid check status: '{shown}'")
    await catalog.agent.update_ttl(check_id, Health(body.status), body.output or "", access=access)
    return Response(status_code=200)


@router.put(
    "/service/maintenance/{service_id}",
    operation_id="agentServiceMaintenance",
    summary="Put a service of this cluster's node in or out of maintenance",
    response_class=Response,
    responses=_WRITE_ERRORS,
)
async def service_maintenance(
    request: Request,
    service_id: str,
    options: WriteOptionsDep,
    catalog: CatalogDep,
    access: AccessDep,
    enable: Annotated[str | None, Query(description="`true` or `false` (required).")] = None,
    reason: Annotated[str | None, Query(description="Shown as the maintenance check's notes.")] = None,
) -> Response:
    """Enable or disable maintenance: a `critical` check `_service_maintenance:<id>`, which a peer sees as
    `critical` too."""
    raw = first_value(request, "enable")
    if raw is None:
        raise InvalidRequestError("Missing value for enable")
    enabled = parse_bool(raw)
    if enabled is None:
        raise InvalidRequestError(f'Invalid value for enable: "{raw[:64]}"')
    agent_partition(request)
    await catalog.agent.maintenance(service_id, enabled, first_value(request, "reason") or "", access=access)
    return Response(status_code=200)


@router.get(
    "/services",
    operation_id="agentServices",
    summary="List the services of this cluster's node",
    response_model=dict[str, AgentServiceShape],
    responses=error_responses(400, 403),
)
async def agent_services(
    request: Request, options: ReadOptionsDep, catalog: CatalogDep, access: AccessDep, secret: SecretDep
) -> Response:
    """The instances registered on the agent node, by ID (those the caller may read)."""
    agent_partition(request)
    result = await catalog.agent.services(access=access)
    datacenter = catalog.datacenter
    body = {instance.id: agent_service_json(instance, datacenter) for instance in result.value}
    return read_answer(body, result, pretty=options.pretty, secret=secret)


@router.get(
    "/checks",
    operation_id="agentChecks",
    summary="List the checks of this cluster's node",
    response_model=dict[str, CheckShape],
    responses=error_responses(400, 403),
)
async def agent_checks(
    request: Request, options: ReadOptionsDep, catalog: CatalogDep, access: AccessDep, secret: SecretDep
) -> Response:
    """The checks of the agent node, by check ID (those the caller may read)."""
    agent_partition(request)
    result = await catalog.agent.checks(access=access)
    body = {check.check_id: check_json(check) for check in result.value}
    return read_answer(body, result, pretty=options.pretty, secret=secret)


@router.put("/service/maintenance/", operation_id="agentServiceMaintenanceWithoutID", include_in_schema=False)
async def maintenance_without_id() -> Response:
    """`PUT /v1/agent/service/maintenance/` names no service."""
    raise InvalidRequestError("Missing service ID")
