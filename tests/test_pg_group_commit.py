"""Group commit on PostgreSQL (`store/postgres/group.py`): units of one replica queued behind a running one
share its transaction, each in a savepoint, and one COMMIT; on a real server.

To queue units deterministically, the first unit of a group waits inside its body on an event until the
others are queued for the group's lock (`GroupCommit.waiting`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from peering.app import open_runtime
from peering.errors import DatabaseUnavailableError, LeaseLostError, NameTakenError
from peering.service import TokenRequest
from peering.settings import Settings
from peering.store.base import Fence, Secrets
from peering.store.postgres.cluster_schema import create_tables
from peering.store.postgres.store import PostgresStore, PostgresTransaction
from tests.conftest import ADVERTISE
from tests.test_store import acceptor

pytestmark = pytest.mark.anyio

Body = Callable[[PostgresTransaction], Awaitable[Any]]


@pytest.fixture
async def store(postgres: str) -> AsyncIterator[PostgresStore]:
    s = await PostgresStore.open(postgres)
    yield s
    assert s._pool.get_idle_size() == s._pool.get_size(), "a connection was not given back to the pool"
    await s.close()


@pytest.fixture
async def db(postgres: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of the test's own, outside the store."""
    conn = await asyncpg.connect(postgres)
    yield conn
    await conn.close()


async def queued(store: PostgresStore, count: int) -> None:
    """Until `count` units are queued for the group's lock (tasks reach it on their first step)."""
    for _ in range(1000):
        if store.group.waiting == count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{store.group.waiting} units queued, not {count}")


async def run_grouped(store: PostgresStore, first: Body, *rest: Body) -> list[Any]:
    """Run `first` and, queued behind it while it runs, each of `rest` (in order); the results or exceptions."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def run(body: Body, hold: bool) -> Any:
        async with store.transaction() as tx:
            if hold:
                entered.set()
                await release.wait()
            return await body(tx)

    tasks = [asyncio.create_task(run(first, True))]
    await entered.wait()
    tasks += [asyncio.create_task(run(body, False)) for body in rest]
    await queued(store, len(rest))
    release.set()
    return list(await asyncio.gather(*tasks, return_exceptions=True))


def save(pid: str, name: str) -> Body:
    async def body(tx: PostgresTransaction) -> int:
        await tx.save(acceptor(pid, name))
        return tx.index

    return body


def fenced(fence: Fence, pid: str) -> Body:
    async def body(tx: PostgresTransaction) -> int:
        await tx.fence(fence)
        await tx.save(acceptor(pid, pid))
        return tx.index

    return body


async def stored(db: asyncpg.Connection) -> dict[str, int]:
    """Every peering's ID and modify_index, as committed."""
    return {r["id"]: r["modify_index"] for r in await db.fetch("SELECT id, modify_index FROM peerings")}


async def test_units_queued_behind_one_share_its_commit_each_with_its_own_index(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    seen: list[tuple[str, int]] = []  # (what, unit) in the order it happened
    visible: list[int] = []  # rows committed when each unit returned

    def unit(i: int) -> Body:
        async def body(tx: PostgresTransaction) -> int:
            await tx.save(acceptor(f"p{i}", f"n{i}"))
            await tx.set_establishment_hash(f"p{i}", f"hash-{i}")
            seen.append(("body", i))
            return tx.index

        return body

    async def returned(i: int, index: int) -> int:
        seen.append(("returned", i))
        visible.append(len(await stored(db)))
        return index

    commits = store.group.commits
    results = await run_grouped(store, *(unit(i) for i in range(10)))
    indexes = [await returned(i, index) for i, index in enumerate(results)]
    assert store.group.commits == commits + 1  # one COMMIT for the ten
    assert indexes == list(range(indexes[0], indexes[0] + 10))  # strictly increasing, in the order they ran
    assert [what for what, _ in seen] == ["body"] * 10 + ["returned"] * 10
    assert visible == [10] * 10  # a unit returned only once the whole group was committed
    assert await stored(db) == {f"p{i}": indexes[i] for i in range(10)}  # each row carries its unit's index
    feed = await store.changes_since(indexes[0] - 1)
    assert [(c.index, c.kind, c.key) for c in feed.changes] == [(indexes[i], "peering", f"p{i}") for i in range(10)]
    assert feed.upto == indexes[-1] == await store.current_index()
    assert (await store.secrets("p3")).establishment_hash == "hash-3"


async def test_a_unit_that_raises_undoes_only_its_own_writes(store: PostgresStore, db: asyncpg.Connection) -> None:
    await create_tables(db)  # the leases table (cluster_schema.py), for the fences
    await db.execute(
        "INSERT INTO leases (name, holder, epoch, expires_at) "
        "VALUES ('background', 'me', 2, clock_timestamp() + interval '1 hour')"
    )

    async def taken_name(tx: PostgresTransaction) -> None:
        await tx.save(acceptor("dup", "N0"))  # n0 is the first unit's, compared lower-cased

    async def fails_after_writing(tx: PostgresTransaction) -> None:
        await tx.save(acceptor("doomed", "doomed"))
        await tx.set_secrets("doomed", Secrets(establishment_hash="e", stream_hash="s"))
        raise RuntimeError("the unit's own failure")

    stale = fenced(Fence("background", "me", 1), "stale")  # an epoch before the current one
    other = fenced(Fence("background", "someone-else", 2), "other")
    held = fenced(Fence("background", "me", 2), "held")
    results = await run_grouped(
        store, save("p0", "n0"), taken_name, fails_after_writing, stale, other, held, save("p1", "n1")
    )
    first, dup, doomed, stale_out, other_out, held_index, last = results
    assert isinstance(dup, NameTakenError)
    assert isinstance(doomed, RuntimeError)
    assert str(doomed) == "the unit's own failure"
    assert isinstance(stale_out, LeaseLostError)
    assert isinstance(other_out, LeaseLostError)
    assert (held_index, last) == (first + 1, first + 2)  # the failed units' indexes were undone with them
    assert {p.id: p.modify_index for p in await store.every_peering()} == {"p0": first, "held": first + 1, "p1": last}
    assert await store.secrets("doomed") == Secrets()
    feed = await store.changes_since(first - 1)
    assert [c.key for c in feed.changes] == ["p0", "held", "p1"]


async def test_the_first_unit_failing_leaves_the_queued_ones_to_a_group_of_their_own(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    async def fails(tx: PostgresTransaction) -> None:
        await tx.save(acceptor("first", "first"))
        raise ValueError("first")

    commits = store.group.commits
    results = await run_grouped(store, fails, save("p1", "n1"), save("p2", "n2"))
    assert isinstance(results[0], ValueError)
    assert store.group.commits == commits + 1
    assert await stored(db) == {"p1": results[1], "p2": results[2]}
    assert results[2] == results[1] + 1


async def test_a_commit_refused_fails_every_unit_of_the_group(store: PostgresStore, db: asyncpg.Connection) -> None:
    # refused at COMMIT only: a deferred constraint trigger on one unit's row
    await db.execute(
        "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.name = 'boom' THEN RAISE EXCEPTION 'refused at commit'; END IF; RETURN NULL; END $$; "
        "CREATE CONSTRAINT TRIGGER refuse_boom AFTER INSERT ON peerings DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION refuse_boom()"
    )
    index = await store.current_index()
    results = await run_grouped(store, save("p0", "n0"), save("boom", "boom"), save("p2", "n2"))
    assert all(isinstance(r, asyncpg.RaiseError) for r in results), results
    assert await stored(db) == {}
    assert await store.current_index() == index
    assert list(await run_grouped(store, save("p3", "n3"))) == [index + 1]  # the store goes on


async def test_the_connection_killed_at_the_commit_fails_every_unit(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    async def kills_its_connection(tx: PostgresTransaction) -> int:
        await tx.save(acceptor("p2", "n2"))
        pid = await tx.fetchval("SELECT pg_backend_pid()")
        assert await db.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)  # waits until it is gone
        return tx.index  # the group's COMMIT is the next statement on the dead connection

    results = await run_grouped(store, save("p0", "n0"), save("p1", "n1"), kills_its_connection)
    assert all(isinstance(r, DatabaseUnavailableError) for r in results), results
    assert await stored(db) == {}
    async with store.transaction() as tx:  # a fresh connection
        await tx.save(acceptor("p3", "n3"))
    assert list(await stored(db)) == ["p3"]


async def test_the_connection_lost_inside_a_unit_fails_its_group_and_the_queued_units_go_on(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    async def kills_its_connection(tx: PostgresTransaction) -> None:
        pid = await tx.fetchval("SELECT pg_backend_pid()")
        assert await db.fetchval("SELECT pg_terminate_backend($1, 5000)", pid)
        await tx.save(acceptor("p1", "n1"))

    results = await run_grouped(store, save("p0", "n0"), kills_its_connection, save("p2", "n2"))
    assert isinstance(results[0], DatabaseUnavailableError)  # its group died with the connection
    assert isinstance(results[1], DatabaseUnavailableError)
    assert isinstance(results[2], int)  # queued behind: a group of its own, on a fresh connection
    assert await stored(db) == {"p2": results[2]}


async def test_a_fence_that_expires_mid_group_refuses_the_units_after_it(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    await create_tables(db)
    await db.execute(
        "INSERT INTO leases (name, holder, epoch, expires_at) "
        "VALUES ('background', 'me', 1, clock_timestamp() + interval '300 milliseconds')"
    )
    fence = Fence("background", "me", 1)

    async def outlives_the_lease(tx: PostgresTransaction) -> int:
        # database time passes the lease's expiry while the group is open (its row locked by the fence)
        await tx.execute("SELECT pg_sleep_until(expires_at + interval '10 milliseconds') FROM leases")
        await tx.save(acceptor("unfenced", "unfenced"))
        return tx.index

    results = await run_grouped(
        store, fenced(fence, "before"), outlives_the_lease, fenced(fence, "after"), save("last", "last")
    )
    before, unfenced, after, last = results
    assert isinstance(after, LeaseLostError)
    assert await stored(db) == {"before": before, "unfenced": unfenced, "last": last}


async def test_a_caller_cancelled_in_its_unit_loses_only_its_writes(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    in_statement = asyncio.Event()

    async def first() -> int:
        async with store.transaction() as tx:
            started.set()
            await release.wait()
            await tx.save(acceptor("p0", "n0"))
            return tx.index

    async def slow() -> None:
        async with store.transaction() as tx:
            await tx.save(acceptor("slow", "slow"))
            in_statement.set()
            await tx.execute("SELECT pg_sleep(30)")

    a = asyncio.create_task(first())
    await started.wait()
    b = asyncio.create_task(slow())
    c = asyncio.create_task(save_unit(store, "p2", "n2"))
    await queued(store, 2)
    release.set()
    await in_statement.wait()
    b.cancel()
    a_index, b_out, c_index = await asyncio.gather(a, b, c, return_exceptions=True)
    assert isinstance(b_out, asyncio.CancelledError)
    assert isinstance(a_index, int)
    assert await stored(db) == {"p0": a_index, "p2": c_index}
    assert c_index == a_index + 1
    assert (
        await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pg_sleep(30)%' "
            "AND pid <> pg_backend_pid()"
        )
        == 0
    )


async def save_unit(store: PostgresStore, pid: str, name: str) -> int:
    async with store.transaction() as tx:
        await tx.save(acceptor(pid, name))
        return tx.index


async def test_a_caller_cancelled_while_queued_for_the_group_left_open_for_it(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    started, release = asyncio.Event(), asyncio.Event()
    queued_task: list[asyncio.Task[int]] = []

    async def first() -> int:
        async with store.transaction() as tx:
            started.set()
            await release.wait()
            await tx.save(acceptor("p0", "n0"))
            queued_task[0].cancel()  # still queued: the group is left open for it, then it gives up
            return tx.index

    a = asyncio.create_task(first())
    await started.wait()
    queued_task.append(asyncio.create_task(save_unit(store, "p1", "n1")))
    await queued(store, 1)
    release.set()
    index, gone = await asyncio.gather(a, queued_task[0], return_exceptions=True)
    assert isinstance(gone, asyncio.CancelledError)
    assert await stored(db) == {"p0": index}  # committed by the flush, not left open


async def test_a_caller_cancelled_during_the_commit_does_not_cancel_it(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    # a COMMIT that takes a while: a deferred trigger sleeps on one row
    await db.execute(
        "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NEW.name = 'slow' THEN PERFORM pg_sleep(0.5); END IF; RETURN NULL; END $$; "
        "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON peerings DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW EXECUTE FUNCTION slow_commit()"
    )
    started, release = asyncio.Event(), asyncio.Event()
    last_done = asyncio.Event()

    async def first() -> int:
        async with store.transaction() as tx:
            started.set()
            await release.wait()
            await tx.save(acceptor("p0", "n0"))
            return tx.index

    async def last() -> int:
        async with store.transaction() as tx:
            await tx.save(acceptor("slow", "slow"))
            last_done.set()
            return tx.index

    a = asyncio.create_task(first())
    await started.wait()
    b = asyncio.create_task(last())
    await queued(store, 1)
    commits = store.group.commits
    release.set()
    await last_done.wait()
    for _ in range(100):  # until the last unit awaits the COMMIT its body's end started
        if store.group._tasks:
            break
        await asyncio.sleep(0)
    assert store.group._tasks, "no COMMIT in flight"
    b.cancel()
    a_index, b_out = await asyncio.gather(a, b, return_exceptions=True)
    assert isinstance(b_out, asyncio.CancelledError)
    assert isinstance(a_index, int)
    assert store.group.commits == commits + 1
    assert await stored(db) == {"p0": a_index, "slow": a_index + 1}  # committed, though one caller left


async def test_groups_are_bounded_and_a_lone_unit_commits_at_once(postgres: str, db: asyncpg.Connection) -> None:
    store = await PostgresStore.open(postgres, group_units=3)
    try:
        commits = store.group.commits
        results = await run_grouped(store, *(save(f"p{i}", f"n{i}") for i in range(8)))
        assert store.group.commits == commits + 3  # 3 + 3 + 2
        assert results == list(range(results[0], results[0] + 8))
        for i in range(3):  # idle: each unit commits before it returns, nothing waits for company
            async with store.transaction() as tx:
                await tx.save(acceptor(f"q{i}", f"q{i}"))
            assert store.group.commits == commits + 4 + i
            assert f"q{i}" in await stored(db)
    finally:
        await store.close()


async def test_two_replicas_grouping_at_once_share_one_index_sequence(postgres: str, db: asyncpg.Connection) -> None:
    replicas = [await PostgresStore.open(postgres) for _ in range(2)]
    try:

        async def write(store: PostgresStore, pid: str) -> int:
            async with store.transaction() as tx:
                await tx.save(acceptor(pid, pid))
                await tx.set_stream_hash(pid, "h")
                return tx.index

        results = await asyncio.gather(*(write(replicas[i % 2], f"r{i}") for i in range(40)))
        assert sorted(results) == list(range(2, 42))  # every index once, no gap, none shared
        assert await stored(db) == {f"r{i}": index for i, index in enumerate(results)}
        feed = await replicas[0].changes_since(1)
        assert [c.index for c in feed.changes] == list(range(2, 42))
        assert sum(r.group.commits for r in replicas) < 40  # they did group
    finally:
        for store in replicas:
            await store.close()


async def test_every_grouped_write_of_the_service_notifies_with_its_own_index(tmp_path: Path, postgres: str) -> None:
    settings = Settings(data_dir=tmp_path / "r1", database_url=SecretStr(postgres))
    async with open_runtime(settings, advertise_addresses=[ADVERTISE], background=False) as runtime:
        notified: list[int] = []
        notifier = runtime.cluster.notifier
        real = notifier.notify

        def spy(index: int | None = None) -> None:
            assert index is not None  # a unit of work names its index
            notified.append(index)
            real(index)

        notifier.notify = spy  # type: ignore[method-assign]
        before = await runtime.cluster.store.current_index()
        await asyncio.gather(*(runtime.service.generate_token(TokenRequest(f"t{i}")) for i in range(20)))
        assert sorted(notified) == list(range(before + 1, before + 21))
        for i in range(20):
            peering = await runtime.cluster.store.get("default", f"t{i}")
            assert peering is not None
            assert peering.modify_index in notified
