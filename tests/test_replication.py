"""Replication of exported services between two real clusters over real TLS (SPEC §14, reference §3)."""

from __future__ import annotations

from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from peering.catalog.model import Health, ServiceHealth
from peering.peer.payload import payload
from peering.peer.wire import ExportedService
from peering.peer_client import PeerClient
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
from tests.test_peering import _metric, gone, state_is

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


async def test_the_dialer_exports_to_the_acceptor_which_never_opens_a_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """B (the dialer) exports api to A: A imports it under its own name for B; every peer call made meanwhile
    is B's: A's clients are never used."""
    callers: list[object] = []
    original = PeerClient.call

    async def recording(self: PeerClient, *args: Any, **kwargs: Any) -> dict[str, Any]:
        callers.append(self)
        return await original(self, *args, **kwargs)

    async with peered(tmp_path) as (a, b):
        monkeypatch.setattr(PeerClient, "call", recording)
        await register(b, "b-node", "api-1", "api")
        await export(b, ("api", [B_NAME]))
        found = await until(a, lambda: imported(a, A_NAME, "api"), lambda f: len(f) == 1)
        assert shape(found) == [
            (
                "b-node",
                "dc2",
                A_NAME,
                "api-1",
                A_NAME,
                [("api-1:overall-check", "overall-check", "passing", A_NAME, "api-1")],
            )
        ]
        assert (await a.read(A_NAME))["StreamStatus"]["ImportedServices"] == ["api"]
        assert (await b.read(B_NAME))["StreamStatus"]["ExportedServices"] == ["api"]
        a_clients = {id(a.runtime.replication._peers), id(a.runtime.service._outbound._peers)}  # type: ignore[union-attr]
        assert callers
        assert not any(id(caller) in a_clients for caller in callers)


async def _both_ways(a: Cluster, b: Cluster) -> None:
    await register(a, "a-node", "web-1", "web")
    await register(b, "b-node", "api-1", "api")
    await export(a, ("web", [A_NAME]))
    await export(b, ("api", [B_NAME]))
    await until(b, lambda: imported(b, B_NAME, "web"), lambda f: len(f) == 1)
    await until(a, lambda: imported(a, A_NAME, "api"), lambda f: len(f) == 1)


async def _rows(cluster: Cluster, peer: str) -> int:
    nodes, _ = await cluster.runtime.cluster.store.catalog.nodes("default", peer)
    checks, _ = await cluster.runtime.cluster.store.catalog.checks("default", peer)
    return len(nodes) + len(checks)


@pytest.mark.parametrize("deleter", ["acceptor", "dialer"])
async def test_a_deleted_peering_leaves_no_imported_row_on_either_side(tmp_path: Path, deleter: str) -> None:
    """Both sides import; the peering is deleted on one side: that side removes its imports and its record,
    the other turns TERMINATED and removes its imports too (it keeps the record, empty)."""
    async with peered(tmp_path) as (a, b):
        await _both_ways(a, b)
        here, there, name, other = (a, b, A_NAME, B_NAME) if deleter == "acceptor" else (b, a, B_NAME, A_NAME)
        ids = [(here, (await here.read(name))["ID"]), (there, (await there.read(other))["ID"])]
        assert (await here.api.delete(f"/v1/peering/{name}")).status_code == 200
        await there.wait_for(other, state_is("TERMINATED"))
        await until(there, lambda: _rows(there, other), lambda n: n == 0)
        await until(here, lambda: _rows(here, name), lambda n: n == 0)
        await here.wait_for(name, gone)
        kept = await there.read(other)
        assert (kept["ImportedServiceCount"], kept["ExportedServiceCount"]) == (0, 0)
        assert kept["StreamStatus"]["ImportedServices"] == []
        for cluster, peering_id in ids:  # the bookkeeping went too
            store = cluster.runtime.cluster.store
            assert await store.replication.import_state(peering_id) is None
            assert await store.replication.export_marks(peering_id) == ("", [])


async def test_a_resend_of_identical_data_moves_no_index(tmp_path: Path) -> None:
    """Applying A's full export again on B writes nothing (the index stays); a local change that leaves the
    payload as it was (a check's notes) takes no sequence number on A: the next real change takes one."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        on_a = await a.runtime.cluster.store.get("default", A_NAME)
        on_b = await b.runtime.cluster.store.get("default", B_NAME)
        replication_a, replication_b = a.runtime.replication, b.runtime.replication
        assert on_a is not None
        assert on_b is not None
        assert replication_a is not None
        assert replication_b is not None
        before = await b.runtime.cluster.store.current_index()
        page = await replication_a.exporter.page(on_a, "", 0)
        assert (page.full, page.more, page.services) == (True, False, ["api", "web"])
        state = await replication_b.importer.apply(on_b, page, 0)
        assert state is not None
        assert await b.runtime.cluster.store.current_index() == before

        head = page.head
        async with a.runtime.cluster.write() as tx:
            check = await tx.catalog.check("default", "", "node-1", "web-1-check")
            assert check is not None
            await tx.catalog.save_check(replace(check, notes="a note the peer never sees"))
        await register(a, "node-3", "web-3", "web")
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: len(f) == 3)
        after = await replication_a.exporter.page(on_a, "", 0)
        assert after.head == head + 1  # web's new payload; the notes change took none


async def test_a_service_bigger_than_a_page_arrives_and_pages_hold_the_budget(tmp_path: Path) -> None:
    """With a small page budget on A, a wildcard export of 30 small services and one of 40 instances (bigger
    than a page on its own) arrives whole on B; every page but those with a single service holds the budget."""
    async with peered(tmp_path) as (a, b):
        replication_a = a.runtime.replication
        assert replication_a is not None
        replication_a.exporter.budget = 4096
        for i in range(30):
            await register(a, f"node-{i}", f"svc-{i}-1", f"svc-{i}")
        for i in range(40):
            await register(a, f"big-node-{i}", f"big-{i}", "big")
        await export(a, ("*", [A_NAME]))
        await until(b, lambda: _imported_names(b), lambda found: len(found) == 31, timeout=20)
        names, _ = await b.runtime.cluster.store.catalog.service_names("default", B_NAME)
        assert sorted(names) == sorted(["big", *(f"svc-{i}" for i in range(30))])
        assert len(await imported(b, B_NAME, "big")) == 40

        on_a = await a.runtime.cluster.store.get("default", A_NAME)
        assert on_a is not None
        pages, since, generation = [], 0, ""
        while True:
            page = await replication_a.exporter.page(on_a, generation, since)
            pages.append(page)
            generation, since = page.generation, page.seq
            if not page.more:
                break
        assert len(pages) > 2
        sizes = [len(ExportedService.model_dump_json(u, by_alias=True)) for p in pages for u in p.upserts]
        assert max(sizes) > 4096
        for p in pages:
            if len(p.upserts) > 1:
                assert sum(len(u.model_dump_json(by_alias=True)) for u in p.upserts) <= 4096
        assert [p.services is not None for p in pages] == [False] * (len(pages) - 1) + [True]


async def test_a_wildcard_export_picks_up_later_services_but_never_consul(tmp_path: Path) -> None:
    async with peered(tmp_path) as (a, b):
        await register(a, "node-1", "web-1", "web")
        await register(a, "node-1", "consul", "consul")
        await export(a, ("*", [A_NAME]))
        await until(b, lambda: _imported_names(b), lambda names: names == ["web"])
        await register(a, "node-2", "later-1", "later")
        await until(b, lambda: imported(b, B_NAME, "later"), lambda f: len(f) == 1)
        assert await _imported_names(b) == ["later", "web"]
        assert await imported(b, B_NAME, "consul") == []


async def test_a_node_check_counts_for_every_instance_on_the_node_also_when_read_in_bulk(tmp_path: Path) -> None:
    """Twenty services on two nodes exported by wildcard (the exporter reads them in bulk: fewer nodes than
    names); node-2's node check is critical, so its instances reach B as critical; every payload's hash is the
    one a per-name read gives."""
    async with peered(tmp_path) as (a, b):
        for i in range(20):
            await register(a, f"node-{1 + i % 2}", f"s{i}-1", f"s{i}")
        await set_check(a, "node-2", "serfHealth", Health.CRITICAL)
        await export(a, ("*", [A_NAME]))
        await until(b, lambda: _imported_names(b), lambda names: len(names) == 20)
        for i in range(20):
            found = await until(b, partial(imported, b, B_NAME, f"s{i}"), lambda f: len(f) == 1)
            status = found[0].checks[0]
            assert (status.status, status.output) == (
                (Health.CRITICAL, "serfHealth") if i % 2 else (Health.PASSING, f"s{i}-1-check")
            )
        on_a = await a.runtime.cluster.store.get("default", A_NAME)
        assert on_a is not None
        _, marks = await a.runtime.cluster.store.replication.export_marks(on_a.id)
        for mark in marks:
            if mark.name:
                entries, _ = await a.runtime.cluster.store.catalog.service_health("default", "", mark.name)
                assert payload(mark.name, entries, "dc1").hash == mark.hash


async def test_imports_read_through_the_api_with_peer_and_passing(tmp_path: Path) -> None:
    """B's `/v1/health/service/web?peer=` shows A's instances in Consul's shape, PeerName on node, service and
    check; `?passing` drops the critical one; without `?peer=` B's own (empty) catalog answers."""
    async with peered(tmp_path) as (a, b):
        await register(a, "node-1", "web-1", "web")
        await register(a, "node-2", "web-2", "web", Health.CRITICAL)
        await export(a, ("web", [A_NAME]))
        await until(b, lambda: imported(b, B_NAME, "web"), lambda found: len(found) == 2)
        entries = (await b.api.get(f"/v1/health/service/web?peer={B_NAME}")).json()
        assert [(e["Node"]["PeerName"], e["Service"]["PeerName"], e["Node"]["Datacenter"]) for e in entries] == [
            (B_NAME, B_NAME, "dc1")
        ] * 2
        assert [[(c["CheckID"], c["Status"], c["PeerName"]) for c in e["Checks"]] for e in entries] == [
            [("web-1:overall-check", "passing", B_NAME)],
            [("web-2:overall-check", "critical", B_NAME)],
        ]
        passing = (await b.api.get(f"/v1/health/service/web?peer={B_NAME}&passing")).json()
        assert [e["Service"]["ID"] for e in passing] == ["web-1"]
        assert (await b.api.get("/v1/health/service/web")).json() == []
        assert (await b.api.get(f"/v1/health/service/db?peer={B_NAME}")).json() == []


async def test_a_failing_peering_keeps_its_imports(tmp_path: Path) -> None:
    """A goes away: B's link turns FAILING and B keeps what it imported (stale, LastReceive shows its age);
    once A is back, a change on A reaches B again."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        await a.stop()
        failing = (await b.wait_for(B_NAME, state_is("FAILING"))).json()
        assert failing["StreamStatus"]["LastReceive"] is not None
        assert len(await imported(b, B_NAME, "web")) == 2
        assert failing["StreamStatus"]["ImportedServices"] == ["api", "web"]
        await a.start()
        await b.wait_for(B_NAME, state_is("ACTIVE"))
        await deregister(a, "node-2", "web-2")
        await until(b, lambda: imported(b, B_NAME, "web"), lambda f: len(f) == 1)


async def test_metrics_count_services_and_lag(tmp_path: Path) -> None:
    """`peering_exported_services` on A and `peering_imported_services` on B count the names;
    `peering_replication_lag_seconds` on B is 0 while it is caught up, and grows once A is gone."""
    async with peered(tmp_path) as (a, b):
        await _exported_web_on_two_nodes(a, b)
        labels = '{partition="default",peer_name="%s"}'
        scrape_a = (await a.api.get("/v1/agent/metrics?format=prometheus")).text
        scrape_b = (await b.api.get("/v1/agent/metrics?format=prometheus")).text
        assert _metric(scrape_a, "peering_exported_services" + labels % A_NAME) == 2
        assert _metric(scrape_a, "peering_imported_services" + labels % A_NAME) == 0
        assert _metric(scrape_b, "peering_imported_services" + labels % B_NAME) == 2
        assert _metric(scrape_b, "peering_replication_lag_seconds" + labels % B_NAME) == 0
        replication_b = b.runtime.replication
        assert replication_b is not None
        on_b = await b.runtime.cluster.store.get("default", B_NAME)
        assert on_b is not None
        progress = replication_b._progress[on_b.id]
        # as if A had gone 1,000 s ago: nothing heard since, so the imports are as old as the last catch-up
        await a.stop()
        progress.heard = (progress.heard or 0) - 1000
        progress.caught_up = (progress.caught_up or 0) - 1000
        scrape_b = (await b.api.get("/v1/agent/metrics?format=prometheus")).text
        assert _metric(scrape_b, "peering_replication_lag_seconds" + labels % B_NAME) >= 1000
