"""The change feed contract, on SQLite and on PostgreSQL alike: every unit of work records what it wrote
in the same transaction, removals leave tombstones, pages hold whole units, and reaping raises the horizon."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from peering.acl_model import AclToken, Policy
from peering.domain import Peering, PeeringState, Role
from peering.store.acl import DatabaseAcl
from peering.store.base import Change, Changes, Database, Secrets
from tests.postgres import BACKENDS, Backend, backend_for

pytestmark = pytest.mark.anyio

A1 = "00000000-0000-4000-8000-0000000000a1"


def acceptor(pid: str, name: str) -> Peering:
    return Peering(pid, name, "default", Role.ACCEPTOR, PeeringState.INITIAL)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request.param, tmp_path, lambda: str(request.getfixturevalue("postgres")))


@pytest.fixture
async def db(backend: Backend) -> AsyncIterator[Database]:
    s = await backend.open()
    yield s
    await s.close()


async def test_a_fresh_database_has_an_empty_feed(db: Database) -> None:
    assert await db.changes_since(0) == Changes([], 1, 1)
    assert await db.changes_since(1) == Changes([], 1, 1)


async def test_every_unit_records_its_rows_and_removals_leave_tombstones(db: Database) -> None:
    async with db.transaction() as tx:
        a = await tx.save(acceptor("1", "a"))
        await tx.save(acceptor("2", "b"))
        await tx.save(replace(a, meta={"k": "v"}))  # the same row twice in one unit: one entry
    async with db.transaction() as tx:
        await tx.save(replace(a, meta={"k": "w"}))
        await tx.set_secrets("1", Secrets(establishment_hash="h"))  # secrets are not in the feed
        await tx.schedule_removal("1", datetime(2026, 1, 1, tzinfo=UTC))  # nor the removal time
    async with db.transaction() as tx:
        await tx.remove("2")
        await tx.remove("nobody")
    feed = await db.changes_since(1)
    assert feed == Changes(
        [
            Change(2, "peering", "1"),
            Change(2, "peering", "2"),
            Change(3, "peering", "1"),
            Change(4, "peering", "2", True),
        ],
        4,
        1,
    )
    assert (await db.changes_since(3)).changes == [Change(4, "peering", "2", True)]
    assert await db.changes_since(4) == Changes([], 4, 1)


async def test_acl_rows_are_in_the_same_feed(db: Database) -> None:
    acl = DatabaseAcl(db)
    policy = await acl.save_policy(Policy("p1", "readers", "", ""))
    await acl.save_token(AclToken(A1, create_time=datetime(2026, 1, 1, tzinfo=UTC)), "hash-1")
    assert await acl.delete_token(A1)
    assert await acl.delete_policy(policy.id)
    assert not await acl.delete_policy(policy.id)  # nothing to delete: no entry, no index
    assert (await db.changes_since(1)).changes == [
        Change(2, "acl_policy", "p1"),
        Change(3, "acl_token", A1),
        Change(4, "acl_token", A1, True),
        Change(5, "acl_policy", "p1", True),
    ]


async def test_a_failed_unit_leaves_no_entry(db: Database) -> None:
    async def failing() -> None:
        async with db.transaction() as tx:
            await tx.save(acceptor("1", "a"))
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await failing()
    assert await db.changes_since(1) == Changes([], 1, 1)


async def test_pages_hold_whole_units_and_add_up_to_the_feed(db: Database) -> None:
    async with db.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.save(acceptor("2", "b"))
    for pid in ("3", "4"):
        async with db.transaction() as tx:
            await tx.save(acceptor(pid, f"n{pid}"))
    first = await db.changes_since(1, limit=1)
    assert first == Changes([Change(2, "peering", "1"), Change(2, "peering", "2")], 2, 1)  # never half a unit
    read, since = list(first.changes), first.upto
    while since < 4:
        page = await db.changes_since(since, limit=1)
        assert page.upto > since  # always progress
        read += page.changes
        since = page.upto
    assert read == (await db.changes_since(1)).changes
    assert [c.index for c in read] == [2, 2, 3, 4]


async def test_reaping_drops_old_entries_and_raises_the_horizon(db: Database) -> None:
    for pid in ("1", "2", "3"):
        async with db.transaction() as tx:
            await tx.save(acceptor(pid, f"n{pid}"))  # indexes 2, 3, 4
    assert await db.reap_changes(4) == 2
    assert await db.current_index() == 4  # reaping takes no index
    assert await db.changes_since(3) == Changes([Change(4, "peering", "3")], 4, 3)
    behind = await db.changes_since(1)
    assert behind.horizon > 1  # this reader missed entries: it must reload in full
    assert await db.reap_changes(2) == 0
    assert (await db.changes_since(4)).horizon == 3  # never lowered
    assert await db.reap_changes(100) == 1
    assert (await db.changes_since(4)).horizon == 4  # never above the current index


async def test_units_committed_together_keep_only_their_own_entries(db: Database) -> None:
    """Units that queue up commit as one group on SQLite (savepoints): a failing member takes its feed
    entries with it, the others keep theirs, each under its own index."""

    async def unit(pid: str, fail: bool) -> int:
        async with db.transaction() as tx:
            saved = await tx.save(acceptor(pid, f"n{pid}"))
            if fail:
                raise RuntimeError("boom")
        return saved.modify_index

    results = await asyncio.gather(*(unit(str(i), i == 1) for i in range(3)), return_exceptions=True)
    kept = sorted(r for r in results if isinstance(r, int))
    assert len(kept) == 2
    feed = await db.changes_since(1)
    assert [(c.index, c.key) for c in feed.changes] == [(kept[0], "0"), (kept[1], "2")]
    assert feed.upto == await db.current_index()
