"""Filling a cluster through its real API (POST /v1/peering/token), and the names the benchmark uses."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from bench.procs import Server

CONNECTIONS = 32
READ_NAME = "bench-read"
WRITE_PARTITION = "bench-tokens"


def partition_of(size: int) -> str:
    return f"p{size}"


def name_in(i: int) -> str:
    return f"peer-{i:05d}"


async def _create(url: str, items: list[dict[str, Any]], concurrency: int) -> None:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        pending = iter(items)

        async def worker() -> None:
            for body in pending:  # one iterator shared by all workers
                response = await client.post("/v1/peering/token", json=body)
                if response.status_code != 200:
                    raise RuntimeError(f"creating {body}: {response.status_code} {response.text}")

        await asyncio.gather(*(worker() for _ in range(concurrency)))


def populate(service: Server, sizes: tuple[int, ...]) -> tuple[int, float]:
    """Create the read target and one partition per size with that many peerings (POST /v1/peering/token)."""
    items: list[dict[str, Any]] = [{"PeerName": READ_NAME, "Meta": {"env": "production"}}]
    for size in sizes:
        items += [
            {"PeerName": name_in(i), "Partition": partition_of(size), "Meta": {"env": "bench", "n": str(i)}}
            for i in range(size)
        ]
    began = time.perf_counter()
    asyncio.run(_create(service.url, items, CONNECTIONS))
    return len(items), time.perf_counter() - began
