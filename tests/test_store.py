"""The store contract, on SQLite and on PostgreSQL alike: index counter, uniqueness in the database,
one-time secrets, durability; then what is particular to SQLite (PostgreSQL's: `test_store_postgres.py`)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from peering.domain import Peering, PeeringState, Remote, Role
from peering.errors import NameTakenError, RemoteClusterTakenError
from peering.store.base import Secrets, Store
from peering.store.schema import MIGRATIONS
from peering.store.sqlite import SqliteStore
from tests.postgres import BACKENDS, Backend, backend_for

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.anyio


def acceptor(pid: str, name: str, partition: str = "default", **kw: object) -> Peering:
    return Peering(pid, name, partition, Role.ACCEPTOR, PeeringState.INITIAL, **kw)  # type: ignore[arg-type]


FULL = Peering(
    "1",
    "a",
    "default",
    Role.DIALER,
    PeeringState.ACTIVE,
    meta={"zeta": "1", "alpha": "2", "mid": "ü"},  # key order is kept, as written
    peer_id="p",
    peer_ca_pems=("pem-1", "pem-2"),
    peer_server_name="server.dc2.consul",
    peer_server_addresses=("127.0.0.1:1", "[::1]:2"),
    remote=Remote("dc2", "default"),
    remote_cluster="fp",
    deleted_at=NOW,
)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request.param, tmp_path, lambda: str(request.getfixturevalue("postgres")))


@pytest.fixture
async def store(backend: Backend) -> AsyncIterator[Store]:
    s = await backend.open()
    yield s
    await s.close()


async def test_a_fresh_database_answers_index_1_and_its_first_write_gets_2(store: Store) -> None:
    assert await store.current_index() == 1
    assert await store.list_peerings("default") == ([], 1)
    async with store.transaction() as tx:
        wrote_before = tx.wrote
        first = await tx.save(acceptor("1", "a"))
        assert (wrote_before, tx.wrote, tx.index) == (False, True, 2)
    assert (first.create_index, first.modify_index) == (2, 2)


async def test_every_write_transaction_takes_the_next_index(store: Store) -> None:
    async with store.transaction() as tx:
        a = await tx.save(acceptor("1", "a"))
        b = await tx.save(acceptor("2", "b"))
    async with store.transaction() as tx:
        a2 = await tx.save(replace(a, meta={"k": "v"}))
    assert a.create_index == a.modify_index == b.modify_index == 2
    assert (a2.create_index, a2.modify_index) == (2, 3)
    assert await store.current_index() == 3


async def test_a_transaction_that_only_reads_takes_no_index(store: Store) -> None:
    async with store.transaction() as tx:
        assert await tx.get("default", "a") is None
        assert not tx.wrote
        with pytest.raises(RuntimeError):
            _ = tx.index
    assert await store.current_index() == 1


async def test_a_failed_transaction_leaves_nothing(store: Store) -> None:
    async def failing() -> None:
        async with store.transaction() as tx:
            await tx.save(acceptor("1", "a"))
            await tx.set_secrets("1", Secrets(establishment_hash="h"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert await store.get("default", "a") is None
    assert await store.secrets("1") == Secrets()
    assert await store.current_index() == 1  # the counter rolled back too


async def test_every_field_round_trips(store: Store) -> None:
    async with store.transaction() as tx:
        saved = await tx.save(FULL)
        assert await tx.get_by_id("1") == saved
    assert saved == replace(FULL, create_index=2, modify_index=2)
    assert await store.get_by_id("1") == saved
    assert list((await store.get("default", "A")).meta) == ["zeta", "alpha", "mid"]  # type: ignore[union-attr]
    assert await store.get("default", "nobody") is None
    assert await store.get("other", "a") is None
    assert await store.get_by_id("2") is None


async def test_everything_survives_a_reopen(backend: Backend) -> None:
    s = await backend.open()
    async with s.transaction() as tx:
        saved = await tx.save(FULL)
        await tx.set_secrets("1", Secrets("e", "s", "t"))
    await s.close()
    s = await backend.open()
    try:
        assert await s.get_by_id("1") == saved
        assert await s.secrets("1") == Secrets("e", "s", "t")
        assert await s.current_index() == 2
    finally:
        await s.close()


async def test_partition_indexes_track_their_own_writes(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a", "team-a"))
    async with store.transaction() as tx:
        await tx.save(acceptor("2", "a", "team-b"))
    assert await store.partition_index("team-a") == 2
    assert await store.partition_index("team-b") == 3
    assert await store.partition_index("nobody") == 1
    listed, index = await store.list_peerings("team-a")
    assert [p.id for p in listed] == ["1"]
    assert index == 2


async def test_moving_a_peering_bumps_both_partitions(store: Store) -> None:
    async with store.transaction() as tx:
        moved = await tx.save(acceptor("1", "a", "team-a"))
    async with store.transaction() as tx:
        await tx.save(replace(moved, partition="team-b"))
    assert await store.partition_index("team-a") == await store.partition_index("team-b") == 3
    assert await store.list_peerings("team-a") == ([], 3)


async def test_lists_are_sorted_by_name_and_every_peering_by_partition(store: Store) -> None:
    async with store.transaction() as tx:
        for i, (partition, name) in enumerate([("b", "zz"), ("a", "b-2"), ("a", "B1"), ("b", "a"), ("a", "a")]):
            await tx.save(acceptor(str(i), name, partition))
    listed, _ = await store.list_peerings("a")
    assert [p.name for p in listed] == ["a", "b-2", "B1"]  # lower-cased, then by bytes ("-" before "1")
    assert [(p.partition, p.name) for p in await store.every_peering()] == [
        ("a", "a"), ("a", "b-2"), ("a", "B1"), ("b", "a"), ("b", "zz"),
    ]  # fmt: skip


async def test_terminated_lists_the_terminated_ones_deleted_or_not_until_removed(store: Store) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "live"))
        await tx.save(replace(acceptor("2", "ended"), state=PeeringState.TERMINATED))
        await tx.save(replace(acceptor("3", "deleted", "b"), state=PeeringState.TERMINATED, deleted_at=now))
    assert sorted(p.id for p in await store.terminated()) == ["2", "3"]
    async with store.transaction() as tx:
        await tx.remove("3")
        await tx.save(replace(acceptor("1", "live"), state=PeeringState.TERMINATED))
    assert sorted(p.id for p in await store.terminated()) == ["1", "2"]


async def test_removal_bumps_the_partition_index(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.set_secrets("1", Secrets("e", "s", "t"))
    async with store.transaction() as tx:
        await tx.remove("1")
        await tx.remove("does-not-exist")
    assert await store.list_peerings("default") == ([], 3)
    assert await store.secrets("1") == Secrets()  # the secrets went with it
    async with store.transaction() as tx:
        await tx.remove("does-not-exist")
        assert not tx.wrote  # removing nothing is no write


async def test_names_are_unique_per_partition_in_the_database(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
    with pytest.raises(NameTakenError) as taken:
        async with store.transaction() as tx:
            await tx.save(acceptor("2", "A"))
    assert (taken.value.kind, taken.value.name) == ("peering", "A")  # facts, not words: the service words them
    async with store.transaction() as tx:
        await tx.save(acceptor("3", "a", "other"))


async def test_a_transaction_stays_usable_after_a_conflict(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
    async with store.transaction() as tx:
        await tx.save(acceptor("2", "b"))
        with pytest.raises(NameTakenError):
            await tx.save(acceptor("3", "a"))
        await tx.save(acceptor("4", "c"))
    assert [p.id for p in (await store.list_peerings("default"))[0]] == ["1", "2", "4"]


async def test_one_live_peering_per_remote_cluster(store: Store) -> None:
    async with store.transaction() as tx:
        first = await tx.save(acceptor("1", "a", remote_cluster="fp", remote=Remote("dc2", "default")))
    with pytest.raises(RemoteClusterTakenError) as taken:
        async with store.transaction() as tx:
            await tx.save(acceptor("2", "b", remote_cluster="fp"))
    assert (taken.value.partition, taken.value.remote_cluster, taken.value.holder) == ("default", "fp", "a")
    async with store.transaction() as tx:  # once the first is terminated, the cluster is free again
        await tx.save(replace(first, state=PeeringState.TERMINATED))
        await tx.save(acceptor("2", "b", remote_cluster="fp"))
    async with store.transaction() as tx:  # a deleted one does not hold it either
        await tx.save(acceptor("3", "c", "p2", remote_cluster="fp2", deleted_at=NOW))
        await tx.save(acceptor("4", "d", "p2", remote_cluster="fp2"))


async def test_two_stores_racing_for_one_remote_cluster_one_wins(backend: Backend) -> None:
    """Two processes' stores (two replicas on PostgreSQL) save peerings for one cluster at once."""
    stores = [await backend.open(), await backend.open()]
    try:

        async def claim(i: int) -> str:
            async with stores[i].transaction() as tx:
                await tx.save(acceptor(str(i), f"n{i}", remote_cluster="fp"))
            return "won"

        results = await asyncio.gather(claim(0), claim(1), return_exceptions=True)
        winner = results.index("won")
        lost = results[1 - winner]
        assert isinstance(lost, RemoteClusterTakenError)
        assert lost.holder == f"n{winner}"
        assert await backend.count("peerings") == 1
    finally:
        for s in stores:
            await s.close()


async def test_secrets_are_replaced_whole_or_one_at_a_time(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.set_establishment_hash("1", "e1")
        await tx.set_stream_hash("1", "s1")
        assert await tx.secrets("1") == Secrets("e1", "s1", None)
    assert await store.secrets("1") == Secrets("e1", "s1", None)
    async with store.transaction() as tx:
        await tx.set_secrets("1", Secrets(stream_secret="t"))
        await tx.set_establishment_hash("1", None)
        assert not tx.wrote  # secrets carry no index
    assert await store.secrets("1") == Secrets(None, None, "t")


async def test_an_establishment_secret_is_consumed_once(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.set_secrets("1", Secrets(establishment_hash="h1"))

    async def consume(presented: str = "h1") -> bool:
        async with store.transaction() as tx:
            return await tx.consume_establishment_secret("1", presented)

    assert not await consume("wrong")
    results = await asyncio.gather(consume(), consume(), consume())
    assert sorted(results) == [False, False, True]
    async with store.transaction() as tx:
        assert await tx.secrets("1") == Secrets()
        assert await tx.secrets("none") == Secrets()


async def test_due_removals_and_those_awaiting_notice(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a", deleted_at=NOW))
        await tx.schedule_removal("1", NOW + timedelta(seconds=30))
        await tx.save(acceptor("2", "b"))
    assert await store.due_removals(NOW) == []
    assert [p.id for p in await store.awaiting_notice(NOW)] == ["1"]
    assert [p.id for p in await store.due_removals(NOW + timedelta(seconds=30))] == ["1"]
    assert await store.awaiting_notice(NOW + timedelta(seconds=30)) == []


async def test_live_links(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(Peering("d", "d", "default", Role.DIALER, PeeringState.ACTIVE))
        await tx.save(Peering("a", "a", "default", Role.ACCEPTOR, PeeringState.FAILING, remote_cluster="fp"))
        await tx.save(Peering("no-peer-yet", "b", "default", Role.ACCEPTOR, PeeringState.ACTIVE))
        await tx.save(
            Peering("gone", "c", "default", Role.ACCEPTOR, PeeringState.ACTIVE, remote_cluster="x", deleted_at=NOW)
        )
        await tx.save(Peering("t", "t", "other", Role.DIALER, PeeringState.TERMINATED))
        await tx.save(Peering("i", "i", "other", Role.DIALER, PeeringState.INITIAL))
    assert sorted(p.id for p in await store.live_links()) == ["a", "d"]


async def test_keys_with_a_nul_character_match_nothing(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.set_establishment_hash("1", "h")
    async with store.transaction() as tx:
        assert await tx.get("default", "a\x00") is None
        assert await tx.get_by_id("1\x00") is None
        assert not await tx.consume_establishment_secret("1", "h\x00")
        assert await tx.secrets("1\x00") == Secrets()
        await tx.remove("1\x00")
        await tx.schedule_removal("1\x00", NOW)
    assert await store.get("default\x00", "a") is None
    assert await store.get_by_id("\x00") is None
    assert await store.list_peerings("default\x00") == ([], 1)
    assert await store.partition_index("\x00") == 1
    assert await store.secrets("1\x00") == Secrets()
    assert (await store.secrets("1")).establishment_hash == "h"
    assert [p.id for p in await store.every_peering()] == ["1"]


class _RefusedError(Exception):
    pass


async def test_concurrent_writers_keep_their_own_indexes_and_a_failing_one_undoes_only_itself(
    store: Store, backend: Backend
) -> None:
    """Writers at once (a group commit on SQLite): each keeps its own index, one that fails leaves nothing
    behind while the others are kept, and every answer comes after the commit."""

    async def write(i: int) -> int:
        async with store.transaction() as tx:
            saved = await tx.save(acceptor(f"id-{i}", f"n{i}"))
            await tx.set_establishment_hash(saved.id, f"h{i}")
            if i in (0, 7):  # the first of the group and one that joined it
                raise _RefusedError
        # the write is durable once the transaction returns: another connection sees it
        assert await backend.count("peerings", "id = $1", saved.id) == 1
        return saved.modify_index

    results = await asyncio.gather(*(write(i) for i in range(20)), return_exceptions=True)
    refused = [i for i, r in enumerate(results) if isinstance(r, _RefusedError)]
    assert refused == [0, 7]
    indexes = [r for r in results if isinstance(r, int)]
    assert len(set(indexes)) == 18
    names = {p.name for p in (await store.list_peerings("default"))[0]}
    assert names == {f"n{i}" for i in range(20)} - {"n0", "n7"}
    assert (await store.secrets("id-7")) == Secrets()
    assert (await store.secrets("id-8")).establishment_hash == "h8"
    assert await store.partition_index("default") == max(indexes)


async def test_index_order_is_commit_order_across_stores(backend: Backend) -> None:
    """Writers through two stores (two replicas): every index is taken once, and a reader that saw index
    N never later finds a commit with an index at or below N that it had not seen."""
    stores = [await backend.open(), await backend.open()]
    try:
        seen: list[tuple[int, frozenset[str]]] = []

        async def write(i: int) -> None:
            async with stores[i % 2].transaction() as tx:
                await tx.save(acceptor(f"id-{i}", f"n{i}"))

        async def watch() -> None:
            for _ in range(40):
                listed, index = await stores[0].list_peerings("default")
                seen.append((index, frozenset(p.id for p in listed)))
                await asyncio.sleep(0)

        await asyncio.gather(watch(), *(write(i) for i in range(30)))
        final, index = await stores[1].list_peerings("default")
        assert sorted(p.modify_index for p in final) == list(range(2, 32))
        assert index == 31
        by_index = {p.modify_index: p.id for p in final}
        for at, ids in seen:
            assert ids == {by_index[i] for i in range(2, at + 1)}
    finally:
        for s in stores:
            await s.close()


# -- SQLite only


async def test_sqlite_pragmas_and_schema_version(tmp_path: Path) -> None:
    s = await SqliteStore.open(tmp_path / "p.db")
    await s.close()
    with sqlite3.connect(tmp_path / "p.db") as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_sqlite_refuses_a_newer_schema(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this program"):
        await SqliteStore.open(path)


async def test_save_acceptor_saves_when_the_row_is_still_the_one_planned_from(store: Store) -> None:
    new = await store.save_acceptor(acceptor("1", "a", meta={"k": "v"}), "hash-1", expected=None)
    assert new is not None
    assert (new.create_index, new.modify_index) == (2, 2)
    assert await store.get("default", "A") == new  # the name compared lower-cased, as everywhere
    assert (await store.secrets("1")).establishment_hash == "hash-1"
    again = await store.save_acceptor(replace(new, meta={}), "hash-2", expected=new)
    assert again is not None
    assert (again.create_index, again.modify_index) == (2, 3)
    assert (await store.secrets("1")).establishment_hash == "hash-2"
    assert await store.list_peerings("default") == ([again], 3)  # the partition's index moved with it
    feed = await store.changes_since(1)
    assert [(c.index, c.key) for c in feed.changes] == [(2, "1"), (3, "1")]


async def test_save_acceptor_writes_nothing_when_the_row_changed_since(store: Store) -> None:
    first = await store.save_acceptor(acceptor("1", "a"), "hash-1", expected=None)
    assert first is not None
    # planned from "no such peering", but there is one now; planned from an older version of it; from another ID
    assert await store.save_acceptor(acceptor("2", "a"), "hash-2", expected=None) is None
    async with store.transaction() as tx:
        current = await tx.save(replace(first, meta={"moved": "on"}))
    assert await store.save_acceptor(replace(first, meta={}), "hash-3", expected=first) is None
    assert await store.save_acceptor(acceptor("3", "a"), "hash-4", expected=replace(current, id="3")) is None
    assert await store.current_index() == current.modify_index  # no index taken
    assert await store.list_peerings("default") == ([current], current.modify_index)
    assert (await store.secrets("1")).establishment_hash == "hash-1"
    assert await store.secrets("2") == await store.secrets("3") == Secrets()


async def test_save_acceptor_refused_by_a_constraint_raises_it_and_writes_nothing(store: Store) -> None:
    async with store.transaction() as tx:
        await tx.save(replace(acceptor("1", "holder", remote_cluster="fp"), state=PeeringState.ACTIVE))
    index = await store.current_index()
    with pytest.raises(RemoteClusterTakenError) as refused:
        await store.save_acceptor(acceptor("2", "b", remote_cluster="fp"), "hash-2", expected=None)
    assert (refused.value.partition, refused.value.remote_cluster, refused.value.holder) == ("default", "fp", "holder")
    assert await store.get("default", "b") is None
    assert await store.secrets("2") == Secrets()
    assert await store.current_index() == index


async def test_concurrent_save_acceptors_each_take_their_own_index(store: Store) -> None:
    saved = await asyncio.gather(
        *(store.save_acceptor(acceptor(str(i), f"n{i}", "p"), f"hash-{i}", expected=None) for i in range(40))
    )
    indexes = sorted(p.modify_index for p in saved if p is not None)
    assert indexes == list(range(2, 42))  # no gap, no repeat
    listed, index = await store.list_peerings("p")
    assert (len(listed), index) == (40, 41)
    assert {(await store.secrets(str(i))).establishment_hash for i in range(40)} == {f"hash-{i}" for i in range(40)}
    feed = await store.changes_since(1)
    assert sorted(c.index for c in feed.changes) == indexes
