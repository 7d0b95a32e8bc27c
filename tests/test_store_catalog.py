"""The catalog part of the store contract (SPEC §12-§13), on SQLite and on PostgreSQL alike: catalog rows
per (partition, peer_name) with their cascades and scope indexes, identical saves that take no index,
batched removal of a peer's rows, TTL deadlines. Config entries, replication bookkeeping, the feed and
the peerings' imported/exported lists: `test_store_replication.py` (which shares these fixtures)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from peering.catalog.model import Check, ConfigEntry, Health, Node, ServiceHealth, ServiceInstance, Weights
from peering.domain import Peering, PeeringState, Role
from peering.errors import RowMissingError
from peering.store.base import Change, ImportState, Store
from tests.postgres import BACKENDS, Backend, backend_for

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 11, 24, 12, 0, 0, 123456, tzinfo=UTC)
EXPORTED = "exported-services"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request.param, tmp_path, lambda: str(request.getfixturevalue("postgres")))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = await backend.open()
    yield s
    await s.close()


def node(name: str = "n1", peer: str = "", partition: str = "default", **kw: object) -> Node:
    return Node(name, "10.0.0.1", partition=partition, peer_name=peer, **kw)  # type: ignore[arg-type]


def instance(
    node_name: str, sid: str, service: str, peer: str = "", partition: str = "default", **kw: object
) -> ServiceInstance:
    return ServiceInstance(node_name, sid, service, partition=partition, peer_name=peer, **kw)  # type: ignore[arg-type]


def check(node_name: str, cid: str, sid: str = "", peer: str = "", partition: str = "default", **kw: object) -> Check:
    kw.setdefault("status", Health.PASSING)
    return Check(node_name, cid, cid, service_id=sid, partition=partition, peer_name=peer, **kw)  # type: ignore[arg-type]


async def seed(store: Store, peer: str = "", partition: str = "default") -> None:
    """n1: web-1 (web), db-1 (db), a node check; n2: web-2 (web) with its own check."""
    async with store.transaction() as tx:
        c = tx.catalog
        await c.save_node(node("n1", peer, partition))
        await c.save_node(node("n2", peer, partition))
        await c.save_service(instance("n1", "web-1", "web", peer, partition, tags=("v1", "a")))
        await c.save_service(instance("n1", "db-1", "db", peer, partition))
        await c.save_service(instance("n2", "web-2", "web", peer, partition, tags=("v2", "a")))
        await c.save_check(check("n1", "serfHealth", peer=peer, partition=partition))
        await c.save_check(check("n2", "web-2-ttl", "web-2", peer, partition, service_name="web"))


async def feed_after(store: Store, since: int, kinds: tuple[str, ...] = ("catalog", "config_entry")) -> list[Change]:
    page = await store.changes_since(since)
    return [c for c in page.changes if c.kind in kinds]


# --- rows, reads, sorting -------------------------------------------------------------------------


async def test_every_field_of_each_row_kind_is_saved_and_read_back(store: Store) -> None:
    full_node = Node(
        "node-ü",
        "10.1.2.3",
        id="00000000-0000-4000-8000-000000000001",
        datacenter="dc1",
        tagged_addresses={"lan": "10.1.2.3", "wan": "1.2.3.4"},
        meta={"zeta": "1", "alpha": "ü"},
    )
    full_instance = ServiceInstance(
        "node-ü",
        "web-1",
        "web",
        tags=("b", "a", "b"),
        address="10.1.2.4",
        port=8080,
        meta={"version": "2"},
        tagged_addresses={"lan_ipv4": "10.1.2.4"},
        weights=Weights(3, 2),
        enable_tag_override=True,
        kind="",
    )
    full_check = Check(
        "node-ü",
        "web-1-ttl",
        "Web TTL",
        status=Health.WARNING,
        notes="renew me",
        output="late",
        service_id="web-1",
        service_name="web",
        service_tags=("b", "a"),
        type="ttl",
        ttl=12.5,
        deadline=NOW,
    )
    async with store.transaction() as tx:
        n = await tx.catalog.save_node(full_node)
        s = await tx.catalog.save_service(full_instance)
        c = await tx.catalog.save_check(full_check)
        index = tx.index
    assert n == replace(full_node, create_index=index, modify_index=index)
    assert s == replace(full_instance, create_index=index, modify_index=index)
    assert c == replace(full_check, create_index=index, modify_index=index)
    assert await store.catalog.nodes("default", "") == ([n], index)
    assert await store.catalog.node("default", "", "node-ü") == (n, [s], index)
    assert await store.catalog.service_health("default", "", "web") == ([ServiceHealth(n, s, (c,))], index)
    assert await store.catalog.checks("default", "") == ([c], index)
    assert (await store.catalog.checks("default", ""))[0][0].deadline == NOW  # microseconds kept, aware
    assert await store.catalog.service_names("default", "") == ({"web": ["a", "b"]}, index)
    assert list(n.meta) == ["zeta", "alpha"]  # key order as written


async def test_a_fresh_catalog_answers_empty_reads_at_index_1(store: Store) -> None:
    assert await store.catalog.nodes("default", "") == ([], 1)
    assert await store.catalog.node("default", "", "n1") == (None, [], 1)
    assert await store.catalog.service_names("default", "") == ({}, 1)
    assert await store.catalog.service_health("default", "", "web") == ([], 1)
    assert await store.catalog.checks("default", "peer") == ([], 1)
    assert await store.catalog.due_checks(NOW) == []
    assert await store.catalog.next_deadline() is None
    assert await store.config.config_entry(EXPORTED, "default") == (None, 1)
    assert await store.config.config_entries(EXPORTED) == ([], 1)
    assert await store.replication.export_marks("p") == ("", [])
    assert await store.replication.import_state("p") is None


async def test_lists_are_sorted_by_bytes(store: Store) -> None:
    async with store.transaction() as tx:
        for name in ("b", "a", "B", "a-1"):
            await tx.catalog.save_node(node(name))
        for sid in ("z", "m", "A"):
            await tx.catalog.save_service(instance("b", sid, "web", tags=("t2", "T", "t1")))
        await tx.catalog.save_service(instance("a", "x", "web", tags=("t0",)))
        await tx.catalog.save_service(instance("a", "y", "api"))
        for cid in ("c2", "C1", "c1"):
            await tx.catalog.save_check(check("b", cid))
        await tx.catalog.save_check(check("a", "zz"))
    nodes, _ = await store.catalog.nodes("default", "")
    assert [n.node for n in nodes] == ["B", "a", "a-1", "b"]
    _, services, _ = await store.catalog.node("default", "", "b")
    assert [s.id for s in services] == ["A", "m", "z"]
    health, _ = await store.catalog.service_health("default", "", "web")
    assert [(h.node.node, h.service.id) for h in health] == [("a", "x"), ("b", "A"), ("b", "m"), ("b", "z")]
    checks, _ = await store.catalog.checks("default", "")
    assert [(c.node, c.check_id) for c in checks] == [("a", "zz"), ("b", "C1"), ("b", "c1"), ("b", "c2")]
    names, _ = await store.catalog.service_names("default", "")
    assert list(names) == ["api", "web"]
    assert names == {"api": [], "web": ["T", "t0", "t1", "t2"]}


async def test_service_health_has_the_node_checks_then_the_instances_own(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        await tx.catalog.save_check(check("n1", "web-1-a", "web-1"))
        await tx.catalog.save_check(check("n1", "db-1-a", "db-1"))  # another instance's: not web's
        await tx.catalog.save_check(check("n1", "a-node", status=Health.CRITICAL))
    health, _ = await store.catalog.service_health("default", "", "web")
    assert [(h.service.id, [c.check_id for c in h.checks]) for h in health] == [
        ("web-1", ["a-node", "serfHealth", "web-1-a"]),
        ("web-2", ["web-2-ttl"]),
    ]
    assert all(h.node.node == h.service.node for h in health)
    assert await store.catalog.service_health("default", "", "nope") == ([], await store.current_index())


async def test_checks_filter_by_node_service_and_status(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        await tx.catalog.save_check(check("n1", "web-1-bad", "web-1", status=Health.CRITICAL))
        await tx.catalog.save_check(check("n1", "db-1-bad", "db-1", status=Health.CRITICAL))

    async def ids(**kw: object) -> list[str]:
        found, _ = await store.catalog.checks("default", "", **kw)  # type: ignore[arg-type]
        return [c.check_id for c in found]

    assert await ids(node="n1") == ["db-1-bad", "serfHealth", "web-1-bad"]
    assert await ids(service_name="web") == ["web-1-bad", "web-2-ttl"]  # the instances' checks, not the node's
    assert await ids(status=Health.CRITICAL) == ["db-1-bad", "web-1-bad"]
    assert await ids(service_name="web", status=Health.CRITICAL) == ["web-1-bad"]
    assert await ids(node="n2", status=Health.PASSING) == ["web-2-ttl"]
    assert await ids(service_name="nope") == []
    assert await ids(status=Health.MAINTENANCE) == []  # never stored: maintenance is a critical check


async def test_a_unit_reads_its_own_writes_and_others_see_them_only_after_the_commit(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.catalog.save_node(node("n1"))
        await tx.catalog.save_service(instance("n1", "web-1", "web"))
        await tx.catalog.save_check(check("n1", "c1", "web-1"))
        assert (await tx.catalog.node("default", "", "n1")) is not None
        assert [s.id for s in await tx.catalog.node_services("default", "", "n1")] == ["web-1"]
        assert (await tx.catalog.check("default", "", "n1", "c1")) is not None
        assert [h.service.id for h in await tx.catalog.service_health("default", "", "web")] == ["web-1"]
        assert await store.catalog.nodes("default", "") == ([], 1)  # not committed yet
    nodes, index = await store.catalog.nodes("default", "")
    assert [n.node for n in nodes] == ["n1"]
    assert index == 2


async def test_a_failed_unit_leaves_no_catalog_row(store: Store) -> None:
    async def failing_unit() -> None:
        async with store.transaction() as tx:
            await tx.catalog.save_node(node("n1"))
            await tx.config.save_config_entry(ConfigEntry(EXPORTED, "default", {"Services": []}))
            await tx.replication.save_import_state(ImportState("p", "g", 3))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing_unit()
    assert await store.catalog.nodes("default", "") == ([], 1)
    assert await store.config.config_entries(EXPORTED) == ([], 1)
    assert await store.replication.import_state("p") is None
    assert await store.current_index() == 1


async def test_catalog_rows_survive_a_reopen(backend: Backend) -> None:
    first = await backend.open()
    try:
        await seed(first)
        before = await first.catalog.service_health("default", "", "web")
    finally:
        await first.close()
    second = await backend.open()
    try:
        assert await second.catalog.service_health("default", "", "web") == before
    finally:
        await second.close()


# --- scopes -----------------------------------------------------------------------------------------


async def test_a_local_node_and_a_peers_node_of_the_same_name_are_independent(store: Store) -> None:
    await seed(store)
    await seed(store, peer="dc2")
    local, local_index = await store.catalog.nodes("default", "")
    imported, peer_index = await store.catalog.nodes("default", "dc2")
    assert [n.node for n in local] == [n.node for n in imported] == ["n1", "n2"]
    assert {n.peer_name for n in imported} == {"dc2"}
    assert {n.peer_name for n in local} == {""}
    assert (local_index, peer_index) == (2, 3)
    async with store.transaction() as tx:
        assert await tx.catalog.delete_node("default", "", "n1")
    _, services, _ = await store.catalog.node("default", "dc2", "n1")
    assert [s.id for s in services] == ["db-1", "web-1"]  # the peer's n1 keeps its rows
    health, _ = await store.catalog.service_health("default", "dc2", "web")
    assert [h.service.peer_name for h in health] == ["dc2", "dc2"]
    assert all(c.peer_name == "dc2" for h in health for c in h.checks)
    assert [h.service.id for h in (await store.catalog.service_health("default", "", "web"))[0]] == ["web-2"]
    assert await store.catalog.nodes("default", "dc3") == ([], 1)  # an unknown peer: empty, floor index


async def test_partitions_are_scopes_too(store: Store) -> None:
    await seed(store, partition="team")
    assert await store.catalog.nodes("default", "") == ([], 1)
    nodes, index = await store.catalog.nodes("team", "")
    assert [n.partition for n in nodes] == ["team", "team"]
    assert index == 2


async def test_a_scope_index_moves_only_for_writes_to_its_scope(store: Store) -> None:
    await seed(store)
    await seed(store, peer="dc2")
    async with store.transaction() as tx:
        await tx.save(Peering("p1", "a", "default", Role.ACCEPTOR, PeeringState.INITIAL))  # not a catalog write
    async with store.transaction() as tx:
        await tx.catalog.save_check(check("n1", "serfHealth", status=Health.CRITICAL))
        local = tx.index
    assert (await store.catalog.nodes("default", ""))[1] == local == 5
    assert (await store.catalog.nodes("default", "dc2"))[1] == 3
    assert (await store.catalog.nodes("other", ""))[1] == 1
    async with store.transaction() as tx:  # a deletion moves it too (a blocking reader must wake)
        await tx.catalog.delete_service("default", "dc2", "n2", "web-2")
        deleted = tx.index
    assert (await store.catalog.service_health("default", "dc2", "web"))[1] == deleted == 6
    assert (await store.catalog.nodes("default", ""))[1] == 5


# --- cascades and missing parents -------------------------------------------------------------------


async def test_deleting_a_node_removes_its_instances_and_checks(store: Store, backend: Backend) -> None:
    await seed(store)
    async with store.transaction() as tx:
        assert await tx.catalog.delete_node("default", "", "n1") is True
    assert await store.catalog.node("default", "", "n1") == (None, [], 3)
    assert [c.check_id for c in (await store.catalog.checks("default", ""))[0]] == ["web-2-ttl"]
    assert await backend.count("catalog_services", "node = $1", "n1") == 0
    assert await backend.count("catalog_checks", "node = $1", "n1") == 0
    assert await backend.count("catalog_services") == 1


async def test_deleting_an_instance_removes_its_checks_only(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        await tx.catalog.save_check(check("n1", "web-1-ttl", "web-1"))
        await tx.catalog.save_check(check("n1", "db-1-ttl", "db-1"))
    async with store.transaction() as tx:
        assert await tx.catalog.delete_service("default", "", "n1", "web-1") is True
    checks, _ = await store.catalog.checks("default", "", node="n1")
    assert [c.check_id for c in checks] == ["db-1-ttl", "serfHealth"]
    _, services, _ = await store.catalog.node("default", "", "n1")
    assert [s.id for s in services] == ["db-1"]


async def test_deleting_a_check_removes_that_check_only(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        assert await tx.catalog.delete_check("default", "", "n1", "serfHealth") is True
    assert [c.check_id for c in (await store.catalog.checks("default", ""))[0]] == ["web-2-ttl"]
    assert len((await store.catalog.service_health("default", "", "web"))[0]) == 2


async def test_deleting_what_is_not_there_is_false_and_takes_no_index(store: Store) -> None:
    await seed(store)
    before = await store.current_index()
    async with store.transaction() as tx:
        assert await tx.catalog.delete_node("default", "", "nope") is False
        assert await tx.catalog.delete_node("default", "dc2", "n1") is False  # another scope's name
        assert await tx.catalog.delete_service("default", "", "n1", "nope") is False
        assert await tx.catalog.delete_check("default", "", "n1", "nope") is False
        assert await tx.catalog.delete_peer("default", "dc2", 100) == 0
        assert tx.wrote is False
    assert await store.current_index() == before
    assert await feed_after(store, before) == []


async def test_an_instance_needs_its_node_and_a_check_its_node_and_instance(store: Store) -> None:
    await seed(store)
    before = await store.current_index()
    async with store.transaction() as tx:
        with pytest.raises(RowMissingError) as missing_node:
            await tx.catalog.save_service(instance("nope", "web-9", "web"))
        with pytest.raises(RowMissingError):
            await tx.catalog.save_service(instance("n1", "web-9", "web", peer="dc2"))  # n1 is local only
        with pytest.raises(RowMissingError):
            await tx.catalog.save_check(check("nope", "c"))
        with pytest.raises(RowMissingError) as missing_instance:
            await tx.catalog.save_check(check("n1", "c", "web-2"))  # web-2 is on n2
        assert tx.wrote is False
    assert (missing_node.value.kind, missing_node.value.key) == ("node", "nope")
    assert (missing_instance.value.kind, missing_instance.value.key) == ("service", "web-2")
    assert await store.current_index() == before


async def test_a_check_can_move_from_an_instance_to_its_node(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        await tx.catalog.save_check(check("n2", "web-2-ttl"))  # same key, now a node check
    async with store.transaction() as tx:
        await tx.catalog.delete_service("default", "", "n2", "web-2")
    assert [c.check_id for c in (await store.catalog.checks("default", "", node="n2"))[0]] == ["web-2-ttl"]


# --- identical saves ----------------------------------------------------------------------------------


async def test_an_identical_save_writes_nothing_and_takes_no_index(store: Store) -> None:
    await seed(store)
    stored_node = (await store.catalog.node("default", "", "n1"))[0]
    assert stored_node is not None
    before = await store.current_index()
    async with store.transaction() as tx:
        again = await tx.catalog.save_node(node("n1"))  # indexes 0 as given: indexes aside, equal
        same_service = await tx.catalog.save_service(instance("n1", "web-1", "web", tags=("v1", "a")))
        same_check = await tx.catalog.save_check(check("n1", "serfHealth"))
        assert tx.wrote is False
    assert again == stored_node
    assert (same_service.create_index, same_service.modify_index) == (2, 2)
    assert (same_check.create_index, same_check.modify_index) == (2, 2)
    assert await store.current_index() == before
    assert await feed_after(store, before) == []


async def test_identical_means_equal_values_whatever_the_maps_key_order(store: Store) -> None:
    deadline = NOW + timedelta(seconds=30)
    async with store.transaction() as tx:
        await tx.catalog.save_node(node("n1", meta={"a": "1", "b": "2"}))
        await tx.catalog.save_service(instance("n1", "s", "web", meta={"x": "1", "y": "2"}))
        await tx.catalog.save_check(check("n1", "c", "s", type="ttl", ttl=10.0, deadline=deadline))
    before = await store.current_index()
    later_zone = deadline.astimezone(timezone(timedelta(hours=5)))  # the same instant, written elsewhere
    async with store.transaction() as tx:
        await tx.catalog.save_node(node("n1", meta={"b": "2", "a": "1"}))
        await tx.catalog.save_service(instance("n1", "s", "web", meta={"y": "2", "x": "1"}))
        await tx.catalog.save_check(check("n1", "c", "s", type="ttl", ttl=10.0, deadline=later_zone))
        assert tx.wrote is False
    assert await store.current_index() == before


async def test_a_changed_field_is_a_write_that_keeps_create_index(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        n = await tx.catalog.save_node(node("n1", datacenter="dc9"))
        s = await tx.catalog.save_service(instance("n1", "web-1", "web", tags=("v2",), port=81))
        c = await tx.catalog.save_check(check("n1", "serfHealth", status=Health.CRITICAL, output="down"))
        index = tx.index
    assert [(r.create_index, r.modify_index) for r in (n, s, c)] == [(2, index)] * 3
    _, services, _ = await store.catalog.node("default", "", "n1")
    assert {x.id: x.port for x in services} == {"db-1": 0, "web-1": 81}  # an update keeps the node's rows


# --- delete_peer ----------------------------------------------------------------------------------------


async def test_delete_peer_removes_a_peers_rows_in_batches_until_0(store: Store, backend: Backend) -> None:
    await seed(store)
    async with store.transaction() as tx:
        for i in range(5):
            await tx.catalog.save_node(node(f"n{i}", "dc2"))
            await tx.catalog.save_service(instance(f"n{i}", f"web-{i}", "web", "dc2"))
            await tx.catalog.save_check(check(f"n{i}", f"web-{i}:overall-check", f"web-{i}", "dc2"))
    await seed(store, peer="dc3")
    counts = []
    while True:
        async with store.transaction() as tx:
            gone = await tx.catalog.delete_peer("default", "dc2", 2)
            counts.append((gone, tx.wrote))
        if gone == 0:
            break
    assert counts == [(2, True), (2, True), (1, True), (0, False)]
    assert await store.catalog.nodes("default", "dc2") == ([], await store.current_index())
    assert await backend.count("catalog_services", "peer_name = $1", "dc2") == 0
    assert await backend.count("catalog_checks", "peer_name = $1", "dc2") == 0
    assert [n.node for n in (await store.catalog.nodes("default", ""))[0]] == ["n1", "n2"]
    assert [n.node for n in (await store.catalog.nodes("default", "dc3"))[0]] == ["n1", "n2"]


async def test_delete_peer_refuses_the_local_scope(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="peer_name"):
            await tx.catalog.delete_peer("default", "", 10)
    assert len((await store.catalog.nodes("default", ""))[0]) == 2


# --- TTL deadlines ------------------------------------------------------------------------------------


async def test_due_checks_and_next_deadline_see_local_ttl_checks_not_yet_critical(store: Store) -> None:
    async with store.transaction() as tx:
        for partition in ("default", "team"):
            await tx.catalog.save_node(node("n1", partition=partition))
        await tx.catalog.save_node(node("n1", "dc2"))
        await tx.catalog.save_node(node("n2"))

        def ttl(cid: str, seconds: int, **kw: object) -> Check:
            return check(cid=cid, type="ttl", ttl=10.0, deadline=NOW + timedelta(seconds=seconds), **kw)  # type: ignore[arg-type]

        await tx.catalog.save_check(ttl("late", 5, node_name="n1"))
        await tx.catalog.save_check(ttl("due", -5, node_name="n1"))
        await tx.catalog.save_check(ttl("due-team", -10, node_name="n1", partition="team"))
        await tx.catalog.save_check(ttl("exact", 0, node_name="n2", status=Health.WARNING))
        await tx.catalog.save_check(ttl("critical", -20, node_name="n1", status=Health.CRITICAL))
        await tx.catalog.save_check(ttl("imported", -30, node_name="n1", peer="dc2"))
        await tx.catalog.save_check(check("n1", "plain"))  # no deadline
    due = await store.catalog.due_checks(NOW)
    assert [(c.partition, c.check_id) for c in due] == [("team", "due-team"), ("default", "due"), ("default", "exact")]
    assert await store.catalog.next_deadline() == NOW - timedelta(seconds=10)
    async with store.transaction() as tx:  # the timer marks them critical: they leave the set
        for c in due:
            await tx.catalog.save_check(replace(c, status=Health.CRITICAL, output="TTL expired"))
    assert await store.catalog.due_checks(NOW) == []
    assert await store.catalog.next_deadline() == NOW + timedelta(seconds=5)
    assert [c.check_id for c in await store.catalog.due_checks(NOW + timedelta(seconds=5))] == ["late"]


async def test_a_stored_check_is_never_maintenance(store: Store) -> None:
    await seed(store)
    async with store.transaction() as tx:
        with pytest.raises(ValueError, match="maintenance"):
            await tx.catalog.save_check(check("n1", "_node_maintenance", status=Health.MAINTENANCE))
