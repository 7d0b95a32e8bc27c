"""Helpers for the replication tests: two peered in-process clusters, catalog writes, waiting on imports."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import anyio

from peering.catalog.model import Check, Health, Node, ServiceHealth, ServiceInstance
from tests.test_peering import Node as Cluster
from tests.test_peering import clusters, state_is

T = TypeVar("T")
A_NAME, B_NAME = "cluster-b", "cluster-a"  # A's name for B, B's name for A (B dialed A)


@asynccontextmanager
async def peered(tmp_path: Path) -> AsyncIterator[tuple[Cluster, Cluster]]:
    """A (acceptor, dc1) and B (dialer, dc2), ACTIVE on both sides."""
    async with clusters(tmp_path) as (a, b):
        response = await b.establish(B_NAME, await a.token(A_NAME))
        assert response.status_code == 200, response.text
        await a.wait_for(A_NAME, state_is("ACTIVE"))
        yield a, b


async def register(
    cluster: Cluster,
    node: str,
    sid: str,
    service: str,
    status: Health = Health.PASSING,
    *,
    port: int = 8080,
    check_id: str | None = None,
    tags: tuple[str, ...] = (),
) -> None:
    """A node with one instance and one service check, written as the catalog would (local rows)."""
    async with cluster.runtime.cluster.write() as tx:
        await tx.catalog.save_node(Node(node=node, address=f"10.0.0.{len(node)}", datacenter=cluster.datacenter))
        await tx.catalog.save_service(
            ServiceInstance(node=node, id=sid, service=service, port=port, address="10.1.0.1", tags=tags)
        )
        await tx.catalog.save_check(
            Check(
                node=node,
                check_id=check_id or f"{sid}-check",
                name="check",
                status=status,
                service_id=sid,
                service_name=service,
            )
        )


async def set_check(cluster: Cluster, node: str, check_id: str, status: Health, service_id: str = "") -> None:
    async with cluster.runtime.cluster.write() as tx:
        found = await tx.catalog.check("default", "", node, check_id)
        if found is None:
            found = Check(node=node, check_id=check_id, name=check_id, service_id=service_id)
        await tx.catalog.save_check(replace(found, status=status))


async def deregister(cluster: Cluster, node: str, sid: str | None = None) -> None:
    async with cluster.runtime.cluster.write() as tx:
        if sid is None:
            await tx.catalog.delete_node("default", "", node)
        else:
            await tx.catalog.delete_service("default", "", node, sid)


async def deregister_check(cluster: Cluster, node: str, check_id: str) -> None:
    async with cluster.runtime.cluster.write() as tx:
        await tx.catalog.delete_check("default", "", node, check_id)


async def export(cluster: Cluster, *services: tuple[str, list[str]]) -> None:
    """Write the default partition's exported-services entry through the API."""
    body = {
        "Kind": "exported-services",
        "Name": "default",
        "Services": [{"Name": name, "Consumers": [{"Peer": p} for p in peers]} for name, peers in services],
    }
    response = await cluster.api.put("/v1/config", json=body)
    assert (response.status_code, response.text) == (200, "true")


async def unexport_all(cluster: Cluster) -> None:
    response = await cluster.api.delete("/v1/config/exported-services/default")
    assert response.status_code == 200, response.text


async def imported(cluster: Cluster, peer: str, name: str) -> list[ServiceHealth]:
    entries, _ = await cluster.runtime.cluster.store.catalog.service_health("default", peer, name)
    return entries


async def until(
    cluster: Cluster, probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], timeout: float = 10
) -> T:
    """Evaluate `probe` after every commit on `cluster` (its notifier) until `check` holds."""
    notifier = cluster.runtime.cluster.notifier
    with anyio.fail_after(timeout):
        while True:
            watch = notifier.watch()
            value = await probe()
            if check(value):
                return value
            await watch.wait(1.0)


def shape(entries: list[ServiceHealth]) -> list[tuple[Any, ...]]:
    """What an imported service looks like, comparable: (node, dc, peer, service ID, peer, checks)."""
    return [
        (
            e.node.node,
            e.node.datacenter,
            e.node.peer_name,
            e.service.id,
            e.service.peer_name,
            [(c.check_id, c.name, c.status.value, c.peer_name, c.service_id) for c in e.checks],
        )
        for e in entries
    ]
