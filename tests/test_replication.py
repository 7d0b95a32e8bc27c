"""Replication of exported services between two real clusters over real TLS (SPEC §14, reference §3)."""

from __future__ import annotations

from pathlib import Path

import pytest

from peering.catalog.model import Health, ServiceHealth
from tests.replication_helpers import (
    A_NAME,
    B_NAME,
    deregister,
    deregister_check,
    export,
    imported,
    peered,
    register,
    set_check,
    shape,
    unexport_all,
    until,
)
from tests.test_peering import Node as Cluster

pytestmark = pytest.mark.anyio


async def test_exported_instances_appear_on_the_peer_with_one_overall_check(tmp_path: Path) -> None:
    """Two instances of web on two nodes exported A → B appear on B under B's name for A, with PeerName on
    node, service and check, one `<id>:overall-check` each, A's datacenter; db (not exported) does not;
    B's local catalog is untouched; both peerings show the names and counts."""
    async with peered(tmp_path) as (a, b):
        await register(a, "node-1", "web-1", "web")
        await register(a, "node-2", "web-2", "web", Health.WARNING)
        await register(a, "node-1", "db-1", "db")
        await export(a, ("web", [A_NAME]))
        entries = await until(b, lambda: imported(b, B_NAME, "web"), lambda found: len(found) == 2)
        assert shape(entries) == [
            (
                "node-1",
                "dc1",
                B_NAME,
                "web-1",
                B_NAME,
                [("web-1:overall-check", "overall-check", "passing", B_NAME, "web-1")],
            ),
            (
                "node-2",
                "dc1",
                B_NAME,
                "web-2",
                B_NAME,
                [("web-2:overall-check", "overall-check", "warning", B_NAME, "web-2")],
            ),
        ]
        assert await imported(b, B_NAME, "db") == []
        assert await imported(b, "", "web") == []
        local_nodes, _ = await b.runtime.cluster.store.catalog.nodes("default", "")
        assert local_nodes == []
        on_b = await until(b, lambda: b.read(B_NAME), lambda p: p["ImportedServiceCount"] == 1)
        assert on_b["StreamStatus"]["ImportedServices"] == ["web"]
        on_a = await a.read(A_NAME)
        assert (on_a["ExportedServiceCount"], on_a["StreamStatus"]["ExportedServices"]) == (1, ["web"])
        assert (on_a["ImportedServiceCount"], on_b["ExportedServiceCount"]) == (0, 0)


def _statuses(entries: list[ServiceHealth]) -> dict[str, str]:
    return {e.service.id: e.checks[0].status.value for e in entries}


async def test_health_changes_and_maintenance_reach_the_peer(tmp_path: Path) -> None:
    """A check turning critical on A shows as critical on B (so `?passing` drops it); recovery brings it
    back; an instance in maintenance reaches B as critical, and leaving maintenance as passing again."""
    async with peered(tmp_path) as (a, b):
        await register(a, "node-1", "web-1", "web")
        await register(a, "node-2", "web-2", "web")
        await export(a, ("web", [A_NAME]))
        await until(b, lambda: imported(b, B_NAME, "web"), lambda found: len(found) == 2)

        await set_check(a, "node-1", "web-1-check", Health.CRITICAL)
        found = await until(b, lambda: imported(b, B_NAME, "web"), lambda f: _statuses(f)["web-1"] == "critical")
        assert _statuses(found) == {"web-1": "critical", "web-2": "passing"}
        assert found[0].checks[0].output == "web-1-check"  # which check made it critical
        await set_check(a, "node-1", "web-1-check", Health.PASSING)
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: _statuses(f)["web-1"] == "passing")

        await set_check(a, "node-2", "_service_maintenance:web-2", Health.CRITICAL, service_id="web-2")
        found = await until(b, lambda: imported(b, B_NAME, "web"), lambda f: _statuses(f)["web-2"] == "critical")
        assert found[1].checks[0].check_id == "web-2:overall-check"
        assert len(found[1].checks) == 1
        await deregister_check(a, "node-2", "_service_maintenance:web-2")
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: _statuses(f)["web-2"] == "passing")


async def _imported_names(b: Cluster) -> list[str]:
    return list((await b.read(B_NAME))["StreamStatus"]["ImportedServices"])


async def _exported_web_on_two_nodes(a: Cluster, b: Cluster) -> None:
    await register(a, "node-1", "web-1", "web")
    await register(a, "node-2", "web-2", "web")
    await register(a, "node-1", "api-1", "api")
    await export(a, ("web", [A_NAME]), ("api", [A_NAME]))
    await until(b, lambda: imported(b, B_NAME, "web"), lambda found: len(found) == 2)
    await until(b, lambda: imported(b, B_NAME, "api"), lambda found: len(found) == 1)


async def _imported_nodes(b: Cluster) -> list[str]:
    nodes, _ = await b.runtime.cluster.store.catalog.nodes("default", B_NAME)
    return [n.node for n in nodes]


async def test_a_deregistered_instance_goes_with_its_check_and_its_emptied_node(tmp_path: Path) -> None:
    """Reference §3.4 row 1: the instance and its check go on B, and its node, which has nothing else."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        assert await _imported_nodes(b) == ["node-1", "node-2"]
        await deregister(a, "node-2", "web-2")
        found = await until(b, lambda: imported(b, B_NAME, "web"), lambda f: len(f) == 1)
        assert [e.service.id for e in found] == ["web-1"]
        assert await _imported_nodes(b) == ["node-1"]
        checks, _ = await b.runtime.cluster.store.catalog.checks("default", B_NAME)
        assert sorted(c.check_id for c in checks) == ["api-1:overall-check", "web-1:overall-check"]
        # node-1 still holds api-1: deregistering web-1 keeps the node
        await deregister(a, "node-1", "web-1")
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: f == [])
        assert await _imported_nodes(b) == ["node-1"]


async def test_the_last_instance_gone_keeps_the_name_imported(tmp_path: Path) -> None:
    """Reference §3.4 row 3: every row of the name goes; the name stays in ImportedServices (still exported)."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        await deregister(a, "node-2")
        await deregister(a, "node-1", "web-1")
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: f == [])
        assert await _imported_names(b) == ["api", "web"]
        assert await _imported_nodes(b) == ["node-1"]


async def test_a_service_removed_from_the_entry_leaves_the_peer(tmp_path: Path) -> None:
    """Reference §3.4 row 4: un-exporting web (and, next, removing the consumer of api) deletes its rows on B
    and takes the name out of ImportedServices."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        await export(a, ("api", [A_NAME]))
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: f == [])
        assert await until(b, lambda: _imported_names(b), lambda names: names == ["api"])
        assert await _imported_nodes(b) == ["node-1"]
        await export(a, ("api", ["someone-else"]), ("web", ["someone-else"]))
        await until(b, lambda: _imported_nodes(b), lambda nodes: nodes == [])
        assert await _imported_names(b) == []
        assert (await a.read(A_NAME))["StreamStatus"]["ExportedServices"] == []


async def test_a_deleted_entry_removes_every_import(tmp_path: Path) -> None:
    """Reference §3.4 row 5: deleting the entry empties B's imports from A."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        await unexport_all(a)
        await until(b, lambda: _imported_nodes(b), lambda nodes: nodes == [])
        assert await _imported_names(b) == []
        assert (await b.read(B_NAME))["ImportedServiceCount"] == 0


async def test_an_unexport_while_the_importer_is_down_is_cleaned_up_when_it_is_back(tmp_path: Path) -> None:
    """Reference §3.4 row 6: B is stopped; A un-exports web; once B is back (it resumes from its import state)
    web's rows go and api's stay."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        await b.stop()
        await export(a, ("api", [A_NAME]))
        await b.start()
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: f == [])
        assert len(await imported(b, B_NAME, "api")) == 1
        assert await _imported_names(b) == ["api"]
