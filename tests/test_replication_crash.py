"""kill -9 in the middle of an initial sync of 3,000 services between two real `peering serve` processes
(SPEC §14: one unit of work per applied page, resumable by generation and sequence number): after a restart
the importer's imports equal the exporter's export exactly, whichever side was killed."""

from __future__ import annotations

import asyncio
import signal
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from peering.catalog.model import Check, Health, Node, ServiceInstance
from peering.store.open import open_database
from tests.cluster import Cluster, running_cluster

pytestmark = [pytest.mark.anyio, pytest.mark.slow]

SERVICES = 3000
NODES = 50
ARGS = ("--heartbeat-interval", "0.5", "--heartbeat-timeout", "5")


async def _seed(data: Path) -> None:
    """A's catalog, written through the store before A starts: SERVICES services, one instance each."""
    async with open_database(None, data) as database, database.store.transaction() as tx:
        for n in range(NODES):
            await tx.catalog.save_node(Node(node=f"node-{n}", address=f"10.0.0.{n}", datacenter="dc1"))
        for s in range(SERVICES):
            node, sid = f"node-{s % NODES}", f"svc-{s}-1"
            await tx.catalog.save_service(ServiceInstance(node=node, id=sid, service=f"svc-{s}", port=80, tags=("v1",)))
            await tx.catalog.save_check(
                Check(node=node, check_id=f"{sid}-c", name="c", status=Health.PASSING, service_id=sid)
            )


def _start(stack: ExitStack, data: Path, *extra: str) -> Cluster:
    return stack.enter_context(running_cluster(data, *ARGS, *extra))


async def _names(client: httpx.AsyncClient) -> dict[str, list[str]]:
    response = await client.get("/v1/catalog/services?peer=cluster-a")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def _kill_mid_sync(client: httpx.AsyncClient, victim: Cluster) -> int:
    """Watch the importer's catalog fill and kill -9 `victim` once some but not all services are in."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        count = len(await _names(client))
        if 0 < count < SERVICES:
            victim.stop(signal.SIGKILL)
            return count
        assert count < SERVICES, "the sync ended before the kill"
        await asyncio.sleep(0.01)
    raise AssertionError("the sync did not start")


async def _converged(client: httpx.AsyncClient) -> None:
    """Wait for the importer to hold exactly the exporter's export: every name, one instance and its check each."""
    expected = {f"svc-{s}": ["v1"] for s in range(SERVICES)}
    deadline = time.monotonic() + 60
    while await _names(client) != expected:
        assert time.monotonic() < deadline, "the imports never converged"
        await asyncio.sleep(0.2)
    checks = (await client.get("/v1/health/state/any?peer=cluster-a")).json()
    assert sorted(c["CheckID"] for c in checks) == sorted(f"svc-{s}-1:overall-check" for s in range(SERVICES))
    peering = (await client.get("/v1/peering/cluster-a")).json()
    assert peering["ImportedServiceCount"] == SERVICES


@pytest.mark.parametrize("victim", ["importer", "exporter"])
async def test_kill_9_mid_sync_then_restart_converges_exactly(tmp_path: Path, victim: str) -> None:
    a_data, b_data = tmp_path / "a", tmp_path / "b"
    a_data.mkdir()
    await _seed(a_data)
    with ExitStack() as stack:
        a = _start(stack, a_data, "--datacenter", "dc1")
        b = _start(stack, b_data, "--datacenter", "dc2")
        async with httpx.AsyncClient(base_url=a.http_url, timeout=30) as ca:
            token = (await ca.post("/v1/peering/token", json={"PeerName": "cluster-b"})).json()["PeeringToken"]
            async with httpx.AsyncClient(base_url=b.http_url, timeout=30) as cb:
                body = {"PeerName": "cluster-a", "PeeringToken": token}
                assert (await cb.post("/v1/peering/establish", json=body)).status_code == 200
            entry = {
                "Kind": "exported-services",
                "Name": "default",
                "Services": [{"Name": "*", "Consumers": [{"Peer": "cluster-b"}]}],
            }
            assert (await ca.put("/v1/config", json=entry)).text == "true"
        async with httpx.AsyncClient(base_url=b.http_url, timeout=30) as cb:
            seen = await _kill_mid_sync(cb, b if victim == "importer" else a)
        assert 0 < seen < SERVICES
        if victim == "importer":  # B comes back on new ports (it dials; nobody dials it)
            b = _start(stack, b_data, "--datacenter", "dc2")
        else:  # A comes back where B dials it
            _start(stack, a_data, "--datacenter", "dc1", "--peering-addr", a.peering_addr)
        async with httpx.AsyncClient(base_url=b.http_url, timeout=30) as cb:
            await _converged(cb)
