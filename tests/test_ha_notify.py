"""The PostgreSQL notifier (store/postgres/notify.py): NOTIFY wakes another replica, the poll underneath
wakes it when no NOTIFY came, `close()` wakes everyone for good."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest

from peering.store.postgres.notify import PostgresNotifier
from peering.store.postgres.store import PostgresStore
from tests.test_store import acceptor

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def notifier(dsn: str, poll: float = 0.5) -> AsyncIterator[PostgresNotifier]:
    made = PostgresNotifier(dsn, poll=poll)
    made.start()
    try:
        async with asyncio.timeout(10):
            await made.connected.wait()
        await asyncio.sleep(0.2)  # its first poll (right after connecting) has read the counter
        yield made
    finally:
        await made.aclose()


async def test_a_write_announced_by_one_replica_wakes_the_other(postgres: str) -> None:
    store = await PostgresStore.open(postgres)
    try:
        async with notifier(postgres, poll=30.0) as one, notifier(postgres, poll=30.0) as two:
            watch = two.watch()
            began = time.monotonic()
            async with store.transaction() as tx:
                await tx.save(acceptor("p1", "one"))
            one.notify(tx.index)
            assert await watch.wait(5.0)
            assert time.monotonic() - began < 1.0  # the poll (every 30 s) did not do it
            assert not await one.watch().wait(0.3)  # its own echo is not news
    finally:
        await store.close()


async def test_without_notify_the_poll_wakes_waiters(postgres: str) -> None:
    store = await PostgresStore.open(postgres)
    await store.close()  # the schema (and its counter row) is there
    async with notifier(postgres, poll=0.2) as one:
        watch = one.watch()
        conn = await asyncpg.connect(postgres)
        try:
            await conn.execute("UPDATE counter SET value = value + 1 WHERE id = 1")  # a commit nobody announced
        finally:
            await conn.close()
        assert await watch.wait(2.0)


async def test_close_wakes_every_watch_for_good(postgres: str) -> None:
    store = await PostgresStore.open(postgres)
    await store.close()
    async with notifier(postgres) as one:
        pending = one.watch()
        one.close()
        assert one.closed
        assert await pending.wait(0.1)
        assert await one.watch().wait(0.1)
