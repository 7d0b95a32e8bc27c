"""Token generations saved a batch per statement on PostgreSQL (`store/postgres/batch.py`), a unit of its
group without a savepoint (`group.py`); and the service's plan-from-the-view path over two replicas. On a
real server.

To queue calls deterministically, a unit of the test holds the group's lock (waiting inside its body on an
event) until the batch's task is queued for it (`GroupCommit.waiting`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from pydantic import SecretStr

from peering import tokens
from peering.app import open_runtime
from peering.cluster import hash_secret
from peering.domain import PeeringState
from peering.errors import DatabaseUnavailableError, NameTakenError, RemoteClusterTakenError
from peering.service import TokenRequest
from peering.settings import Settings
from peering.store.base import Secrets
from peering.store.postgres.store import PostgresStore, PostgresTransaction
from tests.conftest import ADVERTISE
from tests.test_pg_group_commit import queued, stored
from tests.test_store import acceptor

pytestmark = pytest.mark.anyio


@pytest.fixture
async def store(postgres: str) -> AsyncIterator[PostgresStore]:
    s = await PostgresStore.open(postgres)
    yield s
    assert s._pool.get_idle_size() == s._pool.get_size(), "a connection was not given back to the pool"
    await s.close()


@pytest.fixture
async def db(postgres: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(postgres)
    yield conn
    await conn.close()


class Held:
    """A unit of the test that holds the group's lock until `release()`, then runs `body`."""

    def __init__(self, store: PostgresStore, body: Callable[[PostgresTransaction], Awaitable[Any]]) -> None:
        self._store, self._body = store, body
        self._entered, self._release = asyncio.Event(), asyncio.Event()
        self.task: asyncio.Task[Any] | None = None

    async def start(self) -> None:
        async def run() -> Any:
            async with self._store.transaction() as tx:
                self._entered.set()
                await self._release.wait()
                return await self._body(tx)

        self.task = asyncio.create_task(run())
        await self._entered.wait()

    def release(self) -> None:
        self._release.set()


def save(pid: str, name: str) -> Callable[[PostgresTransaction], Awaitable[int]]:
    async def body(tx: PostgresTransaction) -> int:
        await tx.save(acceptor(pid, name))
        return tx.index

    return body


def generate(store: PostgresStore, i: int, **kw: Any) -> asyncio.Task[Any]:
    return asyncio.create_task(store.save_acceptor(acceptor(f"b{i}", f"b{i}", **kw), f"hash-{i}", expected=None))


async def test_calls_queued_while_one_is_in_flight_go_as_one_statement_of_one_group(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    held = Held(store, save("first", "first"))
    await held.start()
    calls = [generate(store, i) for i in range(10)]
    await queued(store, 1)  # the batch's task, for the group's lock
    statements, commits = store.acceptors.statements, store.group.commits
    held.release()
    first = await held.task  # type: ignore[misc]
    saved = await asyncio.gather(*calls)
    assert store.acceptors.statements == statements + 1  # ten calls, one statement
    assert store.group.commits == commits + 1  # and the held unit's COMMIT
    assert [p.modify_index for p in saved] == list(range(first + 1, first + 11))  # in the order they came
    assert await stored(db) == {"first": first, **{f"b{i}": first + 1 + i for i in range(10)}}
    assert (await store.secrets("b7")).establishment_hash == "hash-7"
    assert await store.current_index() == first + 10
    feed = await store.changes_since(first)
    assert [(c.index, c.key) for c in feed.changes] == [(first + 1 + i, f"b{i}") for i in range(10)]


async def test_a_unit_refused_in_a_batch_leaves_the_others_and_the_group_alone(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    async with store.transaction() as tx:
        await tx.save(replace(acceptor("holder", "holder", remote_cluster="fp"), state=PeeringState.ACTIVE))

    async def taken_name(tx: PostgresTransaction) -> None:
        await tx.save(acceptor("dup", "holder"))  # a unit with a savepoint, after the batch, that fails

    held = Held(store, save("first", "first"))
    await held.start()
    calls = [generate(store, 0), generate(store, 1, remote_cluster="fp"), generate(store, 2)]
    await queued(store, 1)  # the batch's task, for the group's lock
    later = Held(store, taken_name)
    later_task = asyncio.create_task(later.start())
    await queued(store, 2)  # the failing unit, behind the batch
    later.release()
    held.release()
    await held.task  # type: ignore[misc]
    results = await asyncio.gather(*calls, return_exceptions=True)
    await later_task
    outcome = await asyncio.gather(later.task, return_exceptions=True)  # type: ignore[arg-type]
    assert isinstance(outcome[0], NameTakenError)
    assert isinstance(results[1], RemoteClusterTakenError)
    assert results[1].holder == "holder"
    assert results[0].modify_index + 1 == results[2].modify_index  # type: ignore[union-attr]  # no index taken
    assert set(await stored(db)) == {"holder", "first", "b0", "b2"}
    assert await store.secrets("b1") == Secrets()


async def test_a_caller_cancelled_before_its_unit_was_taken_writes_nothing(
    store: PostgresStore, db: asyncpg.Connection
) -> None:
    held = Held(store, save("first", "first"))
    await held.start()
    calls = [generate(store, i) for i in range(3)]
    await queued(store, 1)  # the batch's task, for the group's lock
    calls[1].cancel()
    held.release()
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert isinstance(results[1], asyncio.CancelledError)
    assert set(await stored(db)) == {"first", "b0", "b2"}
    assert results[0].modify_index + 1 == results[2].modify_index  # type: ignore[union-attr]


async def test_a_batch_whose_connection_dies_fails_each_caller_and_writes_nothing(
    store: PostgresStore, db: asyncpg.Connection, postgres: str
) -> None:
    await db.execute("BEGIN; LOCK TABLE secrets IN ACCESS EXCLUSIVE MODE")  # the batch waits on it
    calls = [generate(store, i) for i in range(5)]
    watcher = await asyncpg.connect(postgres)
    pid = None
    try:
        for _ in range(500):  # until the batch's statement waits for the lock
            pid = await watcher.fetchval(
                "SELECT pid FROM pg_stat_activity WHERE query LIKE 'SELECT saved_index%' AND wait_event_type = 'Lock'"
            )
            if pid is not None:
                break
            await asyncio.sleep(0.01)
        assert pid is not None, "the batch never reached the database"
        await watcher.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await watcher.close()
    results = await asyncio.gather(*calls, return_exceptions=True)
    await db.execute("ROLLBACK")
    assert all(isinstance(r, DatabaseUnavailableError) for r in results), results
    assert len({id(r) for r in results}) == 5  # an error of its own for each caller
    assert await stored(db) == {}
    again = await store.save_acceptor(acceptor("b0", "b0"), "hash-0", expected=None)  # the next one works
    assert again is not None
    assert await stored(db) == {"b0": again.modify_index}


async def test_generations_of_one_name_at_once_each_save_and_the_last_token_holds(
    tmp_path: Path, postgres: str
) -> None:
    settings = Settings(data_dir=tmp_path / "r1", database_url=SecretStr(postgres))
    async with open_runtime(settings, advertise_addresses=[ADVERTISE], background=False) as runtime:
        before = await runtime.cluster.store.current_index()
        made = await asyncio.gather(*(runtime.service.generate_token(TokenRequest("same")) for _ in range(20)))
        peering = await runtime.cluster.store.get("default", "same")
        assert peering is not None
        assert peering.modify_index == before + 20
        secrets = [tokens.decode(t).establishment_secret for t in made]
        assert {tokens.decode(t).peer_id for t in made} == {peering.id}
        held = (await runtime.cluster.store.secrets(peering.id)).establishment_hash
        assert sum(hash_secret(s) == held for s in secrets) == 1  # one token is valid: the last one saved


async def test_a_replica_whose_view_is_behind_plans_again_from_the_stored_row(tmp_path: Path, postgres: str) -> None:
    one = Settings(data_dir=tmp_path / "r1", database_url=SecretStr(postgres))
    two = Settings(data_dir=tmp_path / "r2", database_url=SecretStr(postgres))
    async with (
        open_runtime(one, advertise_addresses=[ADVERTISE], background=False) as r1,
        open_runtime(two, advertise_addresses=[ADVERTISE], background=False) as r2,
    ):
        first = tokens.decode(await r1.service.generate_token(TokenRequest("shared", meta={"by": "one"})))
        view = r2.cluster.store
        assert view.seen("default", "shared") is None  # type: ignore[attr-defined]  # r2 has not caught up
        again = tokens.decode(await r2.service.generate_token(TokenRequest("shared")))
        assert again.peer_id == first.peer_id  # the stored peering regenerated, not a second one made
        row = await view.get("default", "shared")
        assert row is not None
        assert row.meta == {"by": "one"}
        held = (await view.secrets(row.id)).establishment_hash
        assert held == hash_secret(again.establishment_secret)
