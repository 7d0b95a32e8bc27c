"""Query parameters shared by the routes: partition, `?pretty`, blocking-query options, `?dc=` and `?filter=`.

Every decoder here is total: any value a client can put in a query string is either accepted or
refused with Consul's message (400), never a 500. A parameter given twice counts by its first value,
as Go's `Query().Get` in Consul does (Starlette's `query_params.get` would take the last).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, TypeVar
from urllib.parse import unquote_plus

from fastapi import Depends, Query, Request, Response
from starlette.types import Receive

from peering.api.deps import ServiceDep
from peering.errors import InvalidRequestError

log = logging.getLogger("peering.api")

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
_MAX_INDEX = 2**64 - 1
_MAX_INDEX_DIGITS = len(str(_MAX_INDEX))  # checked before int(): Python refuses > 4300 digits with a ValueError
_MAX_DURATION_CHARS = 64  # longer than any duration Go can hold, so nothing valid is cut off
_MAX_DURATION_SECONDS = (2**63 - 1) / 1e9  # Go's time.Duration: int64 nanoseconds
# ASCII digits only (`\d` would take `٣`); the units are Go's, including its two spellings of micro
_DURATION_PART = re.compile(r"([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_PARSED_MAX, _PARSED_LENGTH = 1024, 512  # blocking queries' query strings whose parse is kept
CLIENT_CLOSED = 499  # "client closed request" (nginx's code): what the log and metrics record; nobody receives it

T = TypeVar("T")


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as `30s`, `1m30s` or `250ms` (`0` alone is allowed).

    Raises:
        ValueError: not a duration, or longer than Go's durations reach (about 292 years).
    """
    if text == "0":
        return 0.0
    if len(text) > _MAX_DURATION_CHARS:
        raise ValueError("duration too long")
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError("not a duration")
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        position = match.end()
    if position == 0 or total > _MAX_DURATION_SECONDS:
        raise ValueError("not a duration")
    return total


def parse_index(text: str) -> int:
    """A blocking query's index: an unsigned 64-bit decimal, ASCII digits only (leading zeros allowed, as Go).

    Raises:
        InvalidRequestError: `Invalid index`.
    """
    digits = text.lstrip("0") if text.isascii() and text.isdigit() else None
    if digits is None or len(digits) > _MAX_INDEX_DIGITS or int(digits or "0") > _MAX_INDEX:
        raise InvalidRequestError("Invalid index")
    return int(digits or "0")


def first_value(request: Request, name: str) -> str | None:
    """The first value of a query parameter, or None when it is absent."""
    values = request.query_params.getlist(name)
    return values[0] if values else None


@dataclass(frozen=True)
class WriteOptions:
    """Options of every route."""

    partition: str | None
    pretty: bool


@dataclass(frozen=True)
class ReadOptions(WriteOptions):
    """Options of read and list: a blocking query waits `wait` s for the index to pass `index`; `consistent`
    reads see every acknowledged write (SPEC §15)."""

    index: int
    wait: float
    consistent: bool = False


PartitionParam = Annotated[str | None, Query(description="The partition (`default` when empty).")]
PrettyParam = Annotated[str | None, Query(description="Present: indent the JSON answer.")]


async def write_options(request: Request, partition: PartitionParam = None, pretty: PrettyParam = None) -> WriteOptions:
    """Options of a write (the parameters are declared for the OpenAPI document; values are the first given)."""
    return WriteOptions(partition=first_value(request, "partition"), pretty=pretty is not None)


async def read_options(
    request: Request,
    partition: PartitionParam = None,
    pretty: PrettyParam = None,
    index: Annotated[str | None, Query(description="Blocking query: answer once the index passes this.")] = None,
    wait: Annotated[
        str | None, Query(description="Blocking query: longest wait, e.g. `30s` (default 5m, max 10m).")
    ] = None,
    # the descriptions are in openapi/openapi.json too (tests/test_openapi.py compares): change both at once
    stale: Annotated[
        str | None, Query(description="Accepted: a read may lag another writer's commit by under 1 s.")
    ] = None,
    consistent: Annotated[
        str | None, Query(description="Present: the answer includes every acknowledged write.")
    ] = None,
) -> ReadOptions:
    """Options of a read, with Consul's messages for malformed values (values are the first given).

    Raises:
        InvalidRequestError: `Invalid index`, `Invalid wait time` or conflicting consistency modes.
    """
    if stale is not None and consistent is not None:
        raise InvalidRequestError("Cannot specify ?stale with ?consistent, conflicting semantics.")
    index, wait = first_value(request, "index"), first_value(request, "wait")
    min_index = parse_index(index) if index is not None else 0
    seconds = DEFAULT_WAIT
    if wait is not None:
        try:
            seconds = min(parse_duration(wait), MAX_WAIT)
        except ValueError:
            raise InvalidRequestError("Invalid wait time") from None
    return ReadOptions(
        partition=first_value(request, "partition"),
        pretty=pretty is not None,
        index=min_index,
        wait=seconds,
        consistent=consistent is not None,
    )


async def supported_query(request: Request, service: ServiceDep) -> None:
    """Refuse what this service cannot do rather than ignore it (every client route depends on this):
    `?dc=` naming another datacenter (there is no path to one) and `?filter=` (no route evaluates it).

    Consul answers `No path to datacenter` with a 500; a client's input is a 400 here (SPEC §3).

    Raises:
        InvalidRequestError: `No path to datacenter`, or `filter expressions are not supported on this endpoint`.
    """
    datacenter = first_value(request, "dc")
    if datacenter and datacenter != service.datacenter:
        raise InvalidRequestError("No path to datacenter")
    if first_value(request, "filter"):
        raise InvalidRequestError("filter expressions are not supported on this endpoint")


SupportedQuery = Depends(supported_query)
WriteOptionsDep = Annotated[WriteOptions, Depends(write_options)]
ReadOptionsDep = Annotated[ReadOptions, Depends(read_options)]


async def _disconnected(receive: Receive) -> None:
    """Return once the client has gone (any request body still arriving is read and dropped)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def unless_abandoned(request: Request, work: Coroutine[Any, Any, T]) -> T | Response:
    """Run a blocking call; if the client disconnects first, cancel it and return a `CLIENT_CLOSED` answer
    (sent to nobody), so an abandoned query frees its resources at once instead of after its wait."""
    call = asyncio.ensure_future(work)
    gone = asyncio.ensure_future(_disconnected(request.receive))
    try:
        await asyncio.wait((call, gone), return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        call.cancel()  # this request is being cancelled (shutdown): nothing waits for the call any more
        raise
    finally:
        gone.cancel()
    if call.done():
        return call.result()
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    log.debug("blocking query abandoned by the client")  # the request log line names the path
    return Response(status_code=CLIENT_CLOSED)


class Blocking(NamedTuple):
    """What a blocking query asks: `plain` is its query without index and wait."""

    min_index: int
    wait: float
    plain: bytes
    consistent: bool


_PARSED: dict[bytes, Blocking | None] = {}


def blocking_params(raw: bytes) -> Blocking | None:
    """What a blocking query worth parking asks, else None (no index, index 0, wait 0, or a malformed value
    the route answers with its 400). The first value of each counts, as in `query.first_value`.

    Watchers re-arm with the same query (the index they were all answered with): recent ones are kept."""
    if raw in _PARSED:
        return _PARSED[raw]
    parsed = _parse(raw)
    if len(raw) <= _PARSED_LENGTH:
        if len(_PARSED) >= _PARSED_MAX:
            _PARSED.clear()
        _PARSED[raw] = parsed
    return parsed


def _parse(raw: bytes) -> Blocking | None:
    index: int | None = None
    wait: float | None = None
    kept: list[bytes] = []
    consistent = False
    for part in raw.split(b"&"):
        name, _, value = part.partition(b"=")
        named = _decoded(name)
        if named not in ("index", "wait"):
            kept.append(part)
            consistent = consistent or named == "consistent"
            continue
        try:
            if named == "index" and index is None:
                index = parse_index(_decoded(value))
            elif named == "wait" and wait is None:
                wait = min(parse_duration(_decoded(value)), MAX_WAIT)
        except (InvalidRequestError, ValueError):
            return None
    if not index or wait == 0:
        return None
    return Blocking(index, DEFAULT_WAIT if wait is None else wait, b"&".join(kept), consistent)


def _decoded(raw: bytes) -> str:
    """A query string's name or value as Starlette reads it (percent-decoded, `+` a space, Latin-1)."""
    text = raw.decode("latin-1")
    return unquote_plus(text) if b"%" in raw or b"+" in raw else text
