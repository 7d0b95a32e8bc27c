"""Config entry endpoints (SPEC §14): `/v1/config…`, `/v1/exported-services`, `/v1/imported-services`.

Only the kind `exported-services` exists; each route parses, calls the config service once, renders.
Consul answers validation failures and a malformed `?cas=` with a 500; here they are 400s (SPEC §3).
"""

from __future__ import annotations

from typing import Annotated, Any, cast

import orjson
from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from peering.api.body import read_body
from peering.api.catalog_shapes import Shape
from peering.api.deps import AccessDep
from peering.api.errors import error_responses
from peering.api.query import (
    ReadOptions,
    ReadOptionsDep,
    SupportedQuery,
    WriteOptionsDep,
    first_value,
    unless_abandoned,
)
from peering.api.render import json_response, read_headers
from peering.catalog import exports
from peering.catalog.config import ConfigService
from peering.errors import InvalidRequestError, NotFoundError

router = APIRouter(prefix="/v1", tags=["config"], dependencies=[SupportedQuery])

_MAX_UINT64 = 2**64 - 1


async def get_config(request: Request) -> ConfigService:
    """The config service the composition root put on the app."""
    return cast(ConfigService, request.app.state.config)


ConfigDep = Annotated[ConfigService, Depends(get_config)]
CasParam = Annotated[
    str | None, Query(description="Compare-and-set: `0` = only if absent, otherwise only if `ModifyIndex` matches.")
]
KindParam = Annotated[str, Path(description="`exported-services` (another kind: 400 `invalid config entry kind`).")]
EntryNameParam = Annotated[str, Path(description="The entry's name: the partition it exports from.")]


class ConsumerShape(Shape):
    peer: str = Field(description="The local name of the peering that receives the service.")


class EntryServiceShape(Shape):
    name: str = Field(description="A service name, or `*` for every local service with instances.")
    consumers: list[ConsumerShape]


class ConfigEntryShape(Shape):
    """An `exported-services` config entry as stored."""

    kind: str = Field(description="`exported-services`.")
    name: str = Field(description="The partition exported from.")
    services: list[EntryServiceShape] = Field(default_factory=list, description="Absent when empty.")
    meta: dict[str, str] = Field(default_factory=dict, description="Absent when empty.")
    create_index: int
    modify_index: int


class PeersShape(Shape):
    peers: list[str] = Field(description="Sorted.")


class ResolvedExportShape(Shape):
    """One service of `/v1/exported-services`."""

    service: str
    consumers: PeersShape


class ImportedServiceShape(Shape):
    """One service of `/v1/imported-services`."""

    service: str
    source_peer: str = Field(description="The local name of the peering it was imported over.")


def _go_quoted(text: str) -> str:
    capped = text if len(text) <= 64 else text[:64] + "..."
    escaped = capped.replace("\\", "\\\\").replace('"', '\\"')
    if not escaped.isprintable():
        escaped = "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in escaped)
    return f'"{escaped}"'


def parse_cas(request: Request) -> int | None:
    """`?cas=` as Go's `strconv.ParseUint(…, 10, 64)` reads it (absent or empty: no compare-and-set).

    Raises:
        InvalidRequestError: Go's `strconv.ParseUint: parsing "<value>": invalid syntax` (or `value out of range`).
    """
    text = first_value(request, "cas")
    if not text:
        return None
    if not (text.isascii() and text.isdigit()):
        raise InvalidRequestError(f"strconv.ParseUint: parsing {_go_quoted(text)}: invalid syntax")
    digits = text.lstrip("0")
    if len(digits) > len(str(_MAX_UINT64)) or int(digits or "0") > _MAX_UINT64:
        raise InvalidRequestError(f"strconv.ParseUint: parsing {_go_quoted(text)}: value out of range")
    return int(digits or "0")


def _decoded(raw: bytes) -> Any:
    if not raw.strip():
        raise InvalidRequestError("Request decoding failed: EOF")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequestError(f"Request decoding failed: {exc}") from None


async def _answer(request: Request, options: ReadOptions, call: Any) -> Any:
    return await unless_abandoned(request, call) if options.index else await call


_ENTRY_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "description": "An `exported-services` entry: `Kind`, `Name` (the partition), `Services`, `Meta`.",
                    "required": ["Kind"],
                    "properties": {
                        "Kind": {"type": "string", "enum": [exports.KIND]},
                        "Name": {"type": "string"},
                        "Services": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "Name": {"type": "string"},
                                    "Consumers": {
                                        "type": "array",
                                        "items": {"type": "object", "properties": {"Peer": {"type": "string"}}},
                                    },
                                },
                            },
                        },
                        "Meta": {"type": "object", "additionalProperties": {"type": "string"}},
                    },
                }
            }
        },
    }
}


@router.put(
    "/config",
    operation_id="applyConfigEntry",
    summary="Create or replace a config entry",
    response_model=bool,
    responses=error_responses(400, 403, 413),
    openapi_extra=_ENTRY_BODY,
)
async def apply(
    request: Request, options: WriteOptionsDep, config: ConfigDep, access: AccessDep, cas: CasParam = None
) -> Response:
    """Write an `exported-services` entry (its `Name` is the partition it exports from). Answers `true`, or
    `false` when `?cas=` does not hold (`0`: the entry exists already; `n`: its `ModifyIndex` is not `n`)."""
    # `cas` is declared for the OpenAPI document; the value used is the first given (`parse_cas`)
    data = _decoded(await read_body(request))
    written = await config.apply(data, cas=parse_cas(request), access=access)
    return json_response(written, pretty=options.pretty)


@router.get(
    "/config/{kind}/{name:path}",
    operation_id="readConfigEntry",
    summary="Read a config entry",
    response_model=ConfigEntryShape,
    responses=error_responses(400, 403, 404),
)
async def read_entry(
    request: Request,
    kind: KindParam,
    name: EntryNameParam,
    options: ReadOptionsDep,
    config: ConfigDep,
    access: AccessDep,
) -> Response:
    """One entry by kind and name. Supports blocking queries with `index` and `wait`."""
    call = config.get(
        kind, name, min_index=options.index, wait=options.wait, consistent=options.consistent, access=access
    )
    found = await _answer(request, options, call)
    if isinstance(found, Response):
        return found  # the client left while it waited
    entry, index = found
    return json_response(exports.render(entry), pretty=options.pretty, headers=read_headers(index))


@router.get(
    "/config/{kind}",
    operation_id="listConfigEntries",
    summary="List the config entries of a kind",
    response_model=list[ConfigEntryShape],
    responses=error_responses(400, 403, 404),
)
async def list_entries(
    request: Request, kind: KindParam, options: ReadOptionsDep, config: ConfigDep, access: AccessDep
) -> Response:
    """Every entry of the kind, sorted by name (`[]` when none); with `?partition=`, only that partition's (an
    entry's `Name` is its partition). Entries the caller may not read are left out. Supports blocking queries."""
    call = config.list_entries(
        kind,
        options.partition,
        min_index=options.index,
        wait=options.wait,
        consistent=options.consistent,
        access=access,
    )
    listed = await _answer(request, options, call)
    if isinstance(listed, Response):
        return listed
    entries, index = listed
    return json_response([exports.render(e) for e in entries], pretty=options.pretty, headers=read_headers(index))


@router.delete(
    "/config/{kind}/{name:path}",
    operation_id="deleteConfigEntry",
    summary="Delete a config entry",
    response_model=bool | dict[str, str],
    responses=error_responses(400, 403, 404),
)
async def delete_entry(
    request: Request,
    kind: KindParam,
    name: EntryNameParam,
    options: WriteOptionsDep,
    config: ConfigDep,
    access: AccessDep,
    cas: CasParam = None,
) -> Response:
    """Delete an entry (a missing one is fine): answers `{}`, or with `?cas=` `true`/`false` (`0` never deletes)."""
    compare = parse_cas(request)  # the first `cas` given (the parameter is declared for the OpenAPI document)
    deleted = await config.delete(kind, name, cas=compare, access=access)
    return json_response({} if compare is None else deleted, pretty=options.pretty)


@router.get("/config/", operation_id="readConfigWithoutKind", responses=error_responses(404), include_in_schema=False)
async def read_without_kind() -> Response:
    """`GET /v1/config/` names no kind."""
    raise NotFoundError("Must provide either a kind or both kind and name")


@router.delete("/config/", operation_id="deleteConfigWithoutKind", include_in_schema=False)
@router.delete("/config/{kind}", operation_id="deleteConfigWithoutName", include_in_schema=False)
async def delete_without_name() -> Response:
    """A delete must name a kind and a name."""
    raise NotFoundError("Must provide both a kind and name to delete")


@router.get(
    "/exported-services",
    operation_id="listExportedServices",
    summary="List the services exported to peers",
    response_model=list[ResolvedExportShape],
    responses=error_responses(400, 403),
)
async def exported_services(
    request: Request, options: ReadOptionsDep, config: ConfigDep, access: AccessDep
) -> Response:
    """The partition's exports resolved: `[{Service, Consumers: {Peers}}]` sorted by service, wildcards expanded
    to the local services with instances (never `consul`), peers merged and sorted. Supports blocking queries."""
    call = config.exported_services(
        options.partition, min_index=options.index, wait=options.wait, consistent=options.consistent, access=access
    )
    resolved = await _answer(request, options, call)
    if isinstance(resolved, Response):
        return resolved
    services, index = resolved
    return json_response(exports.render_resolved(services), pretty=options.pretty, headers=read_headers(index))


@router.get(
    "/imported-services",
    operation_id="listImportedServices",
    summary="List the services imported from peers",
    response_model=list[ImportedServiceShape],
    responses=error_responses(400, 403),
)
async def imported_services(
    request: Request, options: ReadOptionsDep, config: ConfigDep, access: AccessDep
) -> Response:
    """Every service imported into the partition, `[{Service, SourcePeer}]` sorted by service then peer.
    Supports blocking queries."""
    call = config.imported_services(
        options.partition, min_index=options.index, wait=options.wait, consistent=options.consistent, access=access
    )
    imported = await _answer(request, options, call)
    if isinstance(imported, Response):
        return imported
    pairs, index = imported
    body = [{"Service": service, "SourcePeer": peer} for service, peer in pairs]
    return json_response(body, pretty=options.pretty, headers=read_headers(index))
