"""Operations endpoints: Consul's `GET /v1/agent/metrics` (Prometheus text, or Consul's JSON shape)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, cast

from fastapi import APIRouter, Depends, Query, Request, Response

from peering.api.deps import AccessDep, ServiceDep
from peering.api.errors import error_responses
from peering.api.query import SupportedQuery
from peering.api.render import json_response, read_headers, rfc3339
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
    registry.observe((p.name, p.partition, p.state.value) for p in await service.snapshot(access=access))
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
