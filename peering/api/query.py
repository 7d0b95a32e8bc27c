"""Query parameters shared by the routes: partition, `?pretty`, and blocking-query options."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query

from peering.errors import InvalidRequestError

DEFAULT_WAIT = 300.0
MAX_WAIT = 600.0
_MAX_INDEX = 2**64 - 1
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> float:
    """Seconds in a Go duration such as `30s`, `1m30s` or `250ms` (`0` alone is allowed).

    Raises:
        ValueError: not a duration.
    """
    if text == "0":
        return 0.0
    position, total = 0, 0.0
    while position < len(text):
        match = _DURATION_PART.match(text, position)
        if match is None:
            raise ValueError(text)
        total += float(match[1]) * _UNIT_SECONDS[match[2]]
        position = match.end()
    if position == 0:
        raise ValueError(text)
    return total


@dataclass(frozen=True)
class WriteOptions:
    """Options of every route."""

    partition: str | None
    pretty: bool


@dataclass(frozen=True)
class ReadOptions(WriteOptions):
    """Options of read and list: a blocking query waits `wait` s for the index to pass `index`."""

    index: int
    wait: float


PartitionParam = Annotated[str | None, Query(description="Partition of the peering (`default` when empty).")]
PrettyParam = Annotated[str | None, Query(description="Present: indent the JSON answer.")]


async def write_options(partition: PartitionParam = None, pretty: PrettyParam = None) -> WriteOptions:
    """Options of a write."""
    return WriteOptions(partition=partition, pretty=pretty is not None)


async def read_options(
    partition: PartitionParam = None,
    pretty: PrettyParam = None,
    index: Annotated[str | None, Query(description="Blocking query: answer once the index passes this.")] = None,
    wait: Annotated[
        str | None, Query(description="Blocking query: longest wait, e.g. `30s` (default 5m, max 10m).")
    ] = None,
    stale: Annotated[str | None, Query(description="Accepted; every read is consistent here.")] = None,
    consistent: Annotated[str | None, Query(description="Accepted; every read is consistent here.")] = None,
) -> ReadOptions:
    """Options of a read, with Consul's messages for malformed values.

    Raises:
        InvalidRequestError: `Invalid index`, `Invalid wait time` or conflicting consistency modes.
    """
    if stale is not None and consistent is not None:
        raise InvalidRequestError("Cannot specify ?stale with ?consistent, conflicting semantics.")
    min_index = 0
    if index is not None:
        if not (index.isascii() and index.isdigit()) or int(index) > _MAX_INDEX:
            raise InvalidRequestError("Invalid index")
        min_index = int(index)
    seconds = DEFAULT_WAIT
    if wait is not None:
        try:
            seconds = min(parse_duration(wait), MAX_WAIT)
        except ValueError:
            raise InvalidRequestError("Invalid wait time") from None
    return ReadOptions(partition=partition, pretty=pretty is not None, index=min_index, wait=seconds)


WriteOptionsDep = Annotated[WriteOptions, Depends(write_options)]
ReadOptionsDep = Annotated[ReadOptions, Depends(read_options)]
