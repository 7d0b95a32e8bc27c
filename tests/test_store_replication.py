"""The rest of the catalog part of the store contract (SPEC §14), on SQLite and on PostgreSQL alike: config
entries with `cas`, replication bookkeeping, the change feed's "catalog"/"config_entry" entries, the
peerings' persisted imported/exported lists, and all of it through the in-memory view."""

from __future__ import annotations

from dataclasses import replace

import pytest

from peering.catalog.model import ConfigEntry
from peering.domain import Peering, PeeringState, Role
from peering.store.base import Change, ExportMark, ImportState, Store
from peering.store.cached import CachedStore
from tests.postgres import Backend
from tests.test_store_catalog import EXPORTED, backend, check, feed_after, instance, node, seed, store

__all__ = ["backend", "store"]  # the fixtures, shared with the catalog rows' contract

pytestmark = pytest.mark.anyio


# --- config entries ---------------------------------------------------------------------------------------


def entry(name: str = "default", *peers: str, kind: str = EXPORTED) -> ConfigEntry:
    services = [{"Name": "web", "Consumers": [{"Peer": p} for p in peers]}]
    return ConfigEntry(kind, name, {"Services": services})


async def test_config_entries_save_read_list_sorted_with_an_index_per_kind(store: Store) -> None:
    async with store.transaction() as tx:
        b = await tx.config.save_config_entry(entry("b", "dc2"))
        a = await tx.config.save_config_entry(entry("a"))
        assert await tx.config.config_entry(EXPORTED, "a") == a
        first = tx.index
    async with store.transaction() as tx:
        other = await tx.config.save_config_entry(entry("x", kind="other-kind"))
    assert a is not None
    assert b is not None
    assert other is not None
    assert (a.create_index, a.modify_index, b.modify_index) == (first, first, first)
    assert await store.config.config_entries(EXPORTED) == ([a, b], first)
    assert await store.config.config_entry(EXPORTED, "b") == (b, first)
    assert await store.config.config_entry(EXPORTED, "nope") == (None, first)
    assert await store.config.config_entries("other-kind") == ([other], other.modify_index)
    assert b.body == {"Services": [{"Name": "web", "Consumers": [{"Peer": "dc2"}]}]}


async def test_config_cas_none_0_and_n(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.config.save_config_entry(entry("default", "dc2"), cas=5) is None  # absent: no n holds
        created = await tx.config.save_config_entry(entry("default", "dc2"), cas=0)
        assert created is not None
        assert await tx.config.save_config_entry(entry("default", "dc3"), cas=0) is None  # present now
    async with store.transaction() as tx:
        assert await tx.config.save_config_entry(entry("default", "dc3"), cas=created.modify_index + 7) is None
        assert tx.wrote is False
        updated = await tx.config.save_config_entry(entry("default", "dc3"), cas=created.modify_index)
    assert updated is not None
    assert (updated.create_index, updated.modify_index) == (created.create_index, created.modify_index + 1)
    async with store.transaction() as tx:
        plain = await tx.config.save_config_entry(entry("default", "dc4"))  # None: unconditional
    assert plain is not None
    assert plain.modify_index == updated.modify_index + 1
    assert (await store.config.config_entry(EXPORTED, "default"))[0] == plain


async def test_an_identical_config_entry_save_takes_no_index(store: Store) -> None:
    async with store.transaction() as tx:
        saved = await tx.config.save_config_entry(entry("default", "dc2"))
    before = await store.current_index()
    async with store.transaction() as tx:
        again = await tx.config.save_config_entry(entry("default", "dc2"), cas=saved.modify_index if saved else None)
        assert tx.wrote is False
    assert again == saved
    assert await store.current_index() == before


async def test_config_delete_with_cas(store: Store) -> None:
    async with store.transaction() as tx:
        saved = await tx.config.save_config_entry(entry("default"))
        await tx.config.save_config_entry(entry("other"))
    assert saved is not None
    async with store.transaction() as tx:
        assert await tx.config.delete_config_entry(EXPORTED, "nope") is False
        assert await tx.config.delete_config_entry(EXPORTED, "default", cas=0) is False  # 0 never deletes
        assert await tx.config.delete_config_entry(EXPORTED, "default", cas=saved.modify_index + 1) is False
        assert tx.wrote is False
    async with store.transaction() as tx:
        assert await tx.config.delete_config_entry(EXPORTED, "default", cas=saved.modify_index) is True
        assert await tx.config.delete_config_entry(EXPORTED, "other") is True
        deleted = tx.index
    assert await store.config.config_entries(EXPORTED) == ([], deleted)  # the kind's index moved with the delete


# --- replication bookkeeping ------------------------------------------------------------------------------


async def test_export_marks_save_replace_drop_and_generation(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.replication.save_export_marks(
            "p1", "gen-1", [ExportMark("web", "h1", 2), ExportMark("", "names", 3), ExportMark("api", "h2", 1)], []
        )
        await tx.replication.save_export_marks("p2", "gen-x", [ExportMark("web", "other", 9)], [])
        assert (await tx.replication.export_marks("p1"))[0] == "gen-1"
        assert tx.wrote is False  # bookkeeping takes no index
    assert await store.replication.export_marks("p1") == (
        "gen-1",
        [ExportMark("", "names", 3), ExportMark("api", "h2", 1), ExportMark("web", "h1", 2)],
    )
    async with store.transaction() as tx:
        await tx.replication.save_export_marks("p1", "gen-2", [ExportMark("web", "h3", 4)], ["api", "never-there"])
    assert await store.replication.export_marks("p1") == (
        "gen-2",
        [ExportMark("", "names", 3), ExportMark("web", "h3", 4)],
    )
    assert await store.replication.export_marks("p2") == ("gen-x", [ExportMark("web", "other", 9)])
    assert await store.current_index() == 1
    assert await feed_after(store, 0, ("catalog", "config_entry", "peering")) == []


async def test_import_state_and_forget(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.replication.save_import_state(ImportState("p1", "gen-a", 4))
        await tx.replication.save_import_state(ImportState("p2", "gen-b", 1))
        await tx.replication.save_export_marks("p1", "mine", [ExportMark("web", "h", 1)], [])
    assert await store.replication.import_state("p1") == ImportState("p1", "gen-a", 4)
    async with store.transaction() as tx:
        await tx.replication.save_import_state(ImportState("p1", "gen-c", 0))
        assert await tx.replication.import_state("p1") == ImportState("p1", "gen-c", 0)
    async with store.transaction() as tx:
        await tx.replication.forget("p1")
        await tx.replication.forget("never-known")
    assert await store.replication.import_state("p1") is None
    assert await store.replication.export_marks("p1") == ("", [])
    assert await store.replication.import_state("p2") == ImportState("p2", "gen-b", 1)
    assert await store.current_index() == 1


# --- the change feed --------------------------------------------------------------------------------------


async def test_catalog_writes_record_one_entry_per_service_name_in_the_unit(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.catalog.save_node(node("n1"))
        await tx.catalog.save_service(instance("n1", "web-1", "web"))
        await tx.catalog.save_service(instance("n1", "web-2", "web"))
        await tx.catalog.save_service(instance("n1", "db-1", "db"))
        await tx.catalog.save_check(check("n1", "c", "web-1"))
        first = tx.index
    assert await feed_after(store, 0) == [
        Change(first, "catalog", "default//web"),
        Change(first, "catalog", "default//db"),
    ]
    async with store.transaction() as tx:  # a node check: every service on the node
        await tx.catalog.save_check(check("n1", "serfHealth"))
        node_check = tx.index
    async with store.transaction() as tx:  # a node change: every service on it
        await tx.catalog.save_node(node("n1", datacenter="dc9"))
        node_write = tx.index
    async with store.transaction() as tx:  # a renamed instance: the old name and the new
        await tx.catalog.save_service(instance("n1", "db-1", "cache"))
        renamed = tx.index
    entries = await feed_after(store, first)
    assert sorted((c.index, c.key) for c in entries) == [
        (node_check, "default//db"),
        (node_check, "default//web"),
        (node_write, "default//db"),
        (node_write, "default//web"),
        (renamed, "default//cache"),
        (renamed, "default//db"),
    ]
    assert not any(c.deleted for c in entries)


async def test_catalog_deletions_record_tombstones_per_service_name(store: Store) -> None:
    await seed(store)
    await seed(store, peer="dc2")
    async with store.transaction() as tx:
        await tx.catalog.delete_check("default", "", "n2", "web-2-ttl")
        check_gone = tx.index
    async with store.transaction() as tx:
        await tx.catalog.delete_node("default", "", "n1")
        node_gone = tx.index
    async with store.transaction() as tx:
        await tx.catalog.delete_peer("default", "dc2", 10)
        peer_gone = tx.index
    entries = await feed_after(store, check_gone - 1)
    assert sorted((c.index, c.key, c.deleted) for c in entries) == [
        (check_gone, "default//web", True),
        (node_gone, "default//db", True),
        (node_gone, "default//web", True),
        (peer_gone, "default/dc2/db", True),
        (peer_gone, "default/dc2/web", True),
    ]


async def test_config_writes_record_config_entry_changes(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.config.save_config_entry(entry("default"))
        saved = tx.index
    async with store.transaction() as tx:
        await tx.config.delete_config_entry(EXPORTED, "default")
        deleted = tx.index
    assert await feed_after(store, 0) == [
        Change(saved, "config_entry", "exported-services/default"),
        Change(deleted, "config_entry", "exported-services/default", deleted=True),
    ]


# --- peerings' imported and exported lists ----------------------------------------------------------------


async def test_a_peerings_imported_and_exported_services_persist(backend: Backend) -> None:
    first = await backend.open()
    try:
        async with first.transaction() as tx:
            saved = await tx.save(
                Peering(
                    "p1", "a", "default", Role.DIALER, PeeringState.ACTIVE,
                    imported_services=("web", "api"), exported_services=("db",),
                )
            )  # fmt: skip
        assert await first.get_by_id("p1") == saved
        async with first.transaction() as tx:
            await tx.save(replace(saved, imported_services=(), exported_services=("db", "web")))
    finally:
        await first.close()
    second = await backend.open()
    try:
        again = await second.get("default", "a")
        assert again is not None
        assert (again.imported_services, again.exported_services) == ((), ("db", "web"))
        assert (await second.list_peerings("default"))[0][0].exported_services == ("db", "web")
        fresh = await second.get_by_id("p1")
        assert fresh == again
    finally:
        await second.close()


# --- through the in-memory view ---------------------------------------------------------------------------


async def test_the_view_passes_catalog_config_and_replication_through(store: Store) -> None:
    view = await CachedStore.load(store)
    async with view.transaction() as tx:
        await tx.catalog.save_node(node("n1"))
        await tx.config.save_config_entry(entry("default"))
        await tx.replication.save_import_state(ImportState("p", "g", 1))
        assert tx.wrote is True  # a catalog write makes the unit news for the notifier
        index = tx.index
    assert view.synced == index
    assert (await view.catalog.nodes("default", ""))[1] == index
    assert (await view.config.config_entry(EXPORTED, "default"))[0] is not None
    assert await view.replication.import_state("p") == ImportState("p", "g", 1)
    async with view.transaction() as tx:
        await tx.catalog.save_node(node("n1"))  # identical: no index, no news
        assert tx.wrote is False
