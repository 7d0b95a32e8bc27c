"""The in-memory view follows the change feed, on SQLite and on PostgreSQL alike: another writer's commits
(a second store object on the same SQLite file or PostgreSQL database) reach it after a notification and,
without one, after the poll; its own writes cost no feed read; a view behind the reaped horizon reloads."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from peering.domain import Peering, PeeringState, Role
from peering.notifier import LocalNotifier
from peering.store.base import Changes, Database
from peering.store.cached import CachedStore
from tests.postgres import BACKENDS, Backend, backend_for

pytestmark = pytest.mark.anyio


def acceptor(pid: str, name: str, partition: str = "default") -> Peering:
    return Peering(pid, name, partition, Role.ACCEPTOR, PeeringState.INITIAL)


class Clock:
    """A monotonic clock the test moves (no sleeping for the poll)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Two:
    view: CachedStore
    other: Database  # a second writer on the same database
    clock: Clock
    notifier: LocalNotifier


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    return backend_for(request.param, tmp_path, lambda: str(request.getfixturevalue("postgres")))


@pytest.fixture
async def two(backend: Backend) -> AsyncIterator[Two]:
    mine, other = await backend.open(), await backend.open()
    clock = Clock()
    view = await CachedStore.load(mine, poll=1.0, monotonic=clock)
    notifier = LocalNotifier()
    view.follow(notifier)
    yield Two(view, other, clock, notifier)
    await mine.close()
    await other.close()


async def other_writes(two: Two, peering: Peering) -> Peering:
    async with two.other.transaction() as tx:
        return await tx.save(peering)


async def test_another_writer_is_seen_after_a_notification(two: Two) -> None:
    saved = await other_writes(two, acceptor("1", "a"))
    assert await two.view.get("default", "a") is None  # not announced, poll not due: the view lags
    two.notifier.notify(saved.modify_index)  # what the PostgreSQL notifier does for another replica's commit
    assert await two.view.get("default", "a") == saved
    assert await two.view.list_peerings("default") == ([saved], saved.modify_index)
    assert two.view.synced == saved.modify_index


async def test_the_views_terminated_ones_follow_its_own_writes_and_another_writers(two: Two) -> None:
    async with two.view.transaction() as tx:
        await tx.save(acceptor("1", "a"))
        await tx.save(replace(acceptor("2", "b"), state=PeeringState.TERMINATED))
    assert [p.id for p in await two.view.terminated()] == ["2"]
    await other_writes(two, replace(acceptor("1", "a"), state=PeeringState.TERMINATED))
    async with two.other.transaction() as tx:
        await tx.remove("2")
    two.notifier.notify(await two.other.current_index())
    assert [p.id for p in await two.view.terminated()] == ["1"]


async def test_another_writer_is_seen_after_the_poll_without_any_notification(two: Two) -> None:
    saved = await other_writes(two, acceptor("1", "a"))
    two.clock.now += 0.9
    assert await two.view.get_by_id("1") is None
    two.clock.now += 0.2  # the poll is due: the read answers from memory, the catch-up runs beside it
    assert await two.view.get_by_id("1") is None
    await two.view.settled()
    assert await two.view.get_by_id("1") == saved
    updated = await other_writes(two, replace(saved, meta={"k": "v"}))
    two.clock.now += 1.1
    assert await two.view.get("default", "A") == saved
    await two.view.settled()
    assert await two.view.get("default", "A") == updated
    assert await two.view.partition_index("default") == updated.modify_index


async def test_a_due_poll_never_makes_a_read_wait(two: Two, monkeypatch: pytest.MonkeyPatch) -> None:
    """The poll's catch-up runs beside the reads: while it waits on the database, reads answer from memory,
    and one catch-up runs however many reads find the poll due."""
    async with two.view.transaction() as tx:
        mine = await tx.save(acceptor("1", "a"))
    inner = two.view._inner
    real = inner.changes_since
    release = asyncio.Event()
    reads: list[int] = []

    async def slow(since: int, limit: int = 1000) -> Changes:
        reads.append(since)
        await release.wait()  # the database is slow to answer
        return await real(since, limit)

    monkeypatch.setattr(inner, "changes_since", slow)
    two.clock.now += 1.1
    for _ in range(50):
        async with asyncio.timeout(1):  # would hang (the catch-up waits for `release`) if the read waited
            assert await two.view.get("default", "a") == mine
        await asyncio.sleep(0)  # the catch-up, once started, waits for the database
    assert reads == [mine.modify_index]
    release.set()
    await two.view.settled()


async def test_another_writers_removal_reaches_the_view(two: Two) -> None:
    async with two.view.transaction() as tx:
        mine = await tx.save(acceptor("1", "a"))
    assert await two.view.get("default", "a") == mine
    async with two.other.transaction() as tx:
        await tx.remove("1")
    two.notifier.notify(mine.modify_index + 1)
    assert await two.view.get("default", "a") is None
    peerings, index = await two.view.list_peerings("default")
    assert (peerings, index) == ([], mine.modify_index + 1)  # the removal raised the partition's index


async def test_own_writes_read_no_feed(two: Two, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    inner = two.view._inner
    real = inner.changes_since

    async def spy(since: int, limit: int = 1000) -> Changes:
        reads.append(since)
        return await real(since, limit)

    monkeypatch.setattr(inner, "changes_since", spy)
    saved = acceptor("", "")
    for i in range(5):
        async with two.view.transaction() as tx:
            saved = await tx.save(acceptor(str(i), f"n{i}"))
        two.notifier.notify(saved.modify_index)  # as Cluster.write does after every commit
        assert await two.view.get_by_id(str(i)) == saved
    assert reads == []
    assert two.view.synced == saved.modify_index
    other = await other_writes(two, acceptor("x", "x"))  # a gap: the next announcement makes it read once
    two.notifier.notify(other.modify_index)
    assert await two.view.get_by_id("x") == other
    assert reads == [saved.modify_index]


async def test_a_view_behind_the_reaped_horizon_reloads(two: Two) -> None:
    first = await other_writes(two, acceptor("1", "a"))
    async with two.other.transaction() as tx:
        await tx.remove("1")
    last = await other_writes(two, acceptor("2", "b", "p2"))
    assert await two.other.reap_changes(last.modify_index + 1) > 0  # every entry the view needed is gone
    two.notifier.notify(last.modify_index)
    assert await two.view.get_by_id("1") is None
    assert await two.view.get_by_id("2") == last
    assert await two.view.list_peerings("p2") == ([last], last.modify_index)
    assert two.view.synced >= last.modify_index > first.modify_index


async def test_a_failing_poll_is_logged_once_and_tried_again(
    two: Two, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A catch-up the poll started that fails (the database is away) leaves the reads answering from memory,
    says so once at warning level, and is tried at the next due poll; the first that works says so."""
    async with two.view.transaction() as tx:
        mine = await tx.save(acceptor("1", "a"))
    inner = two.view._inner
    real = inner.changes_since
    failing = True

    async def flaky(since: int, limit: int = 1000) -> Changes:
        if failing:
            raise ConnectionError("the database went away")
        return await real(since, limit)

    monkeypatch.setattr(inner, "changes_since", flaky)
    caplog.set_level(logging.DEBUG, logger="peering.store")
    for _ in range(3):
        two.clock.now += 1.1
        assert await two.view.get("default", "a") == mine
        await two.view.settled()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "the database went away" in warnings[0].getMessage()
    failing = False
    other = await other_writes(two, acceptor("2", "b"))
    two.clock.now += 1.1
    await two.view.get("default", "a")
    await two.view.settled()
    assert await two.view.get("default", "b") == other
    assert any("works again" in r.getMessage() for r in caplog.records if r.levelno == logging.INFO)
