"""The SQLite store: index counter, uniqueness in the database, one-time secrets, durability."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from peering.domain import Peering, PeeringState, Remote, Role
from peering.errors import PeeringConflictError
from peering.store.base import Secrets
from peering.store.schema import MIGRATIONS
from peering.store.sqlite import SqliteStore

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)

pytestmark = pytest.mark.anyio


def acceptor(pid: str, name: str, partition: str = "default", **kw: object) -> Peering:
    return Peering(pid, name, partition, Role.ACCEPTOR, PeeringState.INITIAL, **kw)  # type: ignore[arg-type]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    s = await SqliteStore.open(tmp_path / "p.db")
    yield s
    await s.close()


async def test_every_write_transaction_takes_the_next_index(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        a = await tx.save(acceptor("1", "a"))
        b = await tx.save(acceptor("2", "b"))
    async with store.transaction() as tx:
        a2 = await tx.save(replace(a, meta={"k": "v"}))
    assert a.create_index == a.modify_index == b.modify_index == 1
    assert (a2.create_index, a2.modify_index) == (1, 2)
    assert await store.current_index() == 2


async def test_a_failed_transaction_leaves_nothing(store: SqliteStore) -> None:
    async def failing() -> None:
        async with store.transaction() as tx:
            await tx.save(acceptor("1", "a"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert await store.get("default", "a") is None
    assert await store.current_index() == 1  # the counter rolled back too (1 is the floor)


async def test_partition_indexes_track_their_own_writes(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a", "team-a"))
    async with store.transaction() as tx:
        await tx.save(acceptor("2", "a", "team-b"))
    assert await store.partition_index("team-a") == 1
    assert await store.partition_index("team-b") == 2
    assert await store.partition_index("nobody") == 1
    listed, index = await store.list_peerings("team-a")
    assert [p.id for p in listed] == ["1"]
    assert index == 1


async def test_removal_bumps_the_partition_index(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
    async with store.transaction() as tx:
        await tx.remove("1")
        await tx.remove("does-not-exist")
    assert await store.list_peerings("default") == ([], 2)


async def test_names_are_unique_per_partition_in_the_database(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
    with pytest.raises(PeeringConflictError, match="already in use"):
        async with store.transaction() as tx:
            await tx.save(acceptor("2", "A"))
    async with store.transaction() as tx:
        await tx.save(acceptor("3", "a", "other"))


async def test_one_live_peering_per_remote_cluster(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        first = await tx.save(acceptor("1", "a", remote_cluster="fp", remote=Remote("dc2", "default")))
    with pytest.raises(PeeringConflictError, match='a peering with this cluster already exists: "a"'):
        async with store.transaction() as tx:
            await tx.save(acceptor("2", "b", remote_cluster="fp"))
    async with store.transaction() as tx:  # once the first is terminated, the cluster is free again
        await tx.save(replace(first, state=PeeringState.TERMINATED))
        await tx.save(acceptor("2", "b", remote_cluster="fp"))


async def test_an_establishment_secret_is_consumed_once(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.set_secrets("1", Secrets(establishment_hash="h1"))

    async def consume() -> bool:
        async with store.transaction() as tx:
            return await tx.consume_establishment_secret("1", "h1")

    results = await asyncio.gather(consume(), consume(), consume())
    assert sorted(results) == [False, False, True]
    async with store.transaction() as tx:
        assert await tx.secrets("1") == Secrets()
        assert await tx.secrets("none") == Secrets()


async def test_due_removals(store: SqliteStore) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor("1", "a", deleted_at=NOW))
        await tx.schedule_removal("1", NOW + timedelta(seconds=30))
    assert await store.due_removals(NOW) == []
    assert [p.id for p in await store.due_removals(NOW + timedelta(seconds=30))] == ["1"]


async def test_everything_survives_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    s = await SqliteStore.open(path)
    peering = Peering(
        "1",
        "a",
        "default",
        Role.DIALER,
        PeeringState.ACTIVE,
        meta={"k": "v"},
        peer_id="p",
        peer_ca_pems=("pem",),
        peer_server_name="server.dc2.consul",
        peer_server_addresses=("127.0.0.1:1",),
        remote=Remote("dc2", "default"),
        remote_cluster="fp",
        deleted_at=NOW,
    )
    async with s.transaction() as tx:
        saved = await tx.save(peering)
    await s.close()
    s = await SqliteStore.open(path)
    assert await s.get_by_id("1") == saved
    assert await s.current_index() == 1
    await s.close()


async def test_pragmas_and_schema_version(tmp_path: Path, store: SqliteStore) -> None:
    path = tmp_path / "p.db"
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "p.db"
    with sqlite3.connect(path) as conn:
        conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="newer than this program"):
        await SqliteStore.open(path)


class _RefusedError(Exception):
    pass


async def test_concurrent_writers_commit_together_and_a_failing_one_undoes_only_itself(
    store: SqliteStore, tmp_path: Path
) -> None:
    """Writers queued behind each other share one commit (group commit); each keeps its own index, one that
    fails leaves nothing behind while the others are kept, and every answer comes after the commit."""
    committed: list[int] = []

    async def write(i: int) -> int:
        async with store.transaction() as tx:
            saved = await tx.save(acceptor(f"id-{i}", f"n{i}"))
            await tx.set_establishment_hash(saved.id, f"h{i}")
            if i in (0, 7):  # the first of the group and one that joined it
                raise _RefusedError
        # the write is durable once the transaction returns: another connection sees it
        with sqlite3.connect(tmp_path / "p.db") as other:
            assert other.execute("SELECT count(*) FROM peerings WHERE id = ?", (saved.id,)).fetchone() == (1,)
        committed.append(saved.modify_index)
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
