"""What the catalog, health and agent routes share: the catalog service, `?peer=`, `?tag=`, `?passing`,
Go's boolean parsing, and the answer of a read (`X-Consul-Index`, `X-Consul-Results-Filtered-By-ACLs`)."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar, cast

from fastapi import Depends, Query, Request, Response

from peering.api.query import ReadOptions, first_value, unless_abandoned
from peering.api.render import json_response, read_headers
from peering.catalog.reads import Result
from peering.catalog.service import CatalogService
from peering.errors import InvalidRequestError
from peering.rules import DEFAULT_PARTITION

FILTERED_HEADER = "X-Consul-Results-Filtered-By-ACLs"
_TRUE = frozenset({"1", "t", "T", "TRUE", "true", "True"})
_FALSE = frozenset({"0", "f", "F", "FALSE", "false", "False"})

T = TypeVar("T")

PeerParam = Annotated[
    str | None, Query(description="Read the rows imported over this peering (its local name) instead of local ones.")
]
TagParam = Annotated[list[str] | None, Query(description="Only instances with this tag (repeatable: every tag).")]


async def get_catalog(request: Request) -> CatalogService:
    """The catalog service the composition root put on the app."""
    return cast(CatalogService, request.app.state.catalog)


CatalogDep = Annotated[CatalogService, Depends(get_catalog)]


def parse_bool(text: str) -> bool | None:
    """Go's `strconv.ParseBool` (None: not a boolean)."""
    return True if text in _TRUE else False if text in _FALSE else None


def flag(request: Request, name: str, message: str) -> bool:
    """A flag such as `?passing`: absent is false, present without a value is true, else a Go boolean.

    Raises:
        InvalidRequestError: `message`, for a value that is not a boolean.
    """
    value = first_value(request, name)
    if value is None:
        return False
    parsed = True if value == "" else parse_bool(value)
    if parsed is None:
        raise InvalidRequestError(message)
    return parsed


def peer_of(request: Request) -> str:
    """`?peer=` (first value; empty: the local rows)."""
    return first_value(request, "peer") or ""


def tags_of(request: Request) -> list[str]:
    """Every `?tag=` given."""
    return request.query_params.getlist("tag")


def agent_partition(request: Request, body_partition: str | None = None) -> None:
    """The agent node lives in `default`: another partition cannot be addressed through it.

    Raises:
        InvalidRequestError: a partition other than `default` was named.
    """
    for partition in (first_value(request, "partition"), body_partition):
        if partition and partition.lower() != DEFAULT_PARTITION:
            shown = partition if len(partition) <= 64 else partition[:64] + "..."
            raise InvalidRequestError(f'Partition "{shown}" is not the agent\'s partition ("{DEFAULT_PARTITION}")')


async def blocking(request: Request, options: ReadOptions, call: Coroutine[Any, Any, T]) -> T | Response:
    """Run a read; a blocking one is cancelled if the client leaves (a `Response` then)."""
    return await unless_abandoned(request, call) if options.index else await call


def read_answer(body: object, result: Result[Any], *, pretty: bool, secret: str | None) -> Response:
    """The 200 of a read: its JSON, its index, and Consul's filtered header for an authenticated caller
    (an anonymous one never sees it, as Consul masks it)."""
    headers = read_headers(result.index)
    if result.filtered and secret:
        headers[FILTERED_HEADER] = "true"
    return json_response(body, pretty=pretty, headers=headers)
