"""Establish's per-name locks (SPEC §5.5) are bounded: nothing is keyed by input before it is validated, and
a lock goes when its last user leaves (issue 11.3: 600 rejected establishes with 1 MB names kept 560 MB)."""

from __future__ import annotations

import asyncio
import gc
import tracemalloc

import httpx
import pytest

from peering.app import Runtime
from peering.locks import KeyedCounts, KeyedLocks

pytestmark = pytest.mark.anyio

BIG_NAME = 512 * 1024  # characters of each rejected name


async def test_rejected_and_accepted_establishes_leave_no_lock_and_no_memory_behind(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """60 establishes with unique 512 KB names (400: invalid name), huge partitions (400) and valid names
    with bad tokens (400), some of them at once: afterwards no lock is left, and the memory they used is
    given back (the old lock map kept every name: 30 MB here)."""
    locks = runtime.service._name_locks
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]

        async def establish(name: str, *, partition: str = "", garbage: str = "x") -> None:
            body = {"PeerName": name, "PeeringToken": garbage, "Partition": partition}
            response = await client.post("/v1/peering/establish", json=body)
            assert response.status_code == 400, response.text[:200]

        for i in range(60):
            await establish(f"n{i}-" + "x" * BIG_NAME)
        for i in range(20):
            await establish("cluster-a", partition=f"P{i}" + "x" * 100_000)
        await asyncio.gather(*(establish(f"valid-{i % 5}", garbage=f"garbage-{i}") for i in range(50)))
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert len(locks) == 0
    assert retained < 5 * 1024 * 1024, retained


async def test_keyed_locks_serialise_one_key_and_drop_it_when_the_last_user_leaves() -> None:
    """Holders of one key run one at a time, other keys do not wait, a waiter cancelled in the queue leaves
    no entry, and the map is empty once everyone is done."""
    locks: KeyedLocks[str] = KeyedLocks()
    inside: list[str] = []
    release = asyncio.Event()

    async def hold(key: str, label: str) -> None:
        async with locks.hold(key):
            inside.append(label)
            await release.wait()
            inside.remove(label)

    first = asyncio.create_task(hold("a", "a1"))
    second = asyncio.create_task(hold("a", "a2"))
    third = asyncio.create_task(hold("b", "b1"))
    cancelled = asyncio.create_task(hold("a", "a3"))
    for _ in range(5):
        await asyncio.sleep(0)
    assert sorted(inside) == ["a1", "b1"]  # a2 and a3 wait for a1; b1 does not
    assert len(locks) == 2
    cancelled.cancel()
    release.set()
    await asyncio.gather(first, second, third, cancelled, return_exceptions=True)
    assert cancelled.cancelled()
    assert inside == []
    assert len(locks) == 0


def test_keyed_counts_count_callers_per_key_and_drop_the_key_when_the_last_leaves() -> None:
    counts: KeyedCounts[str] = KeyedCounts()
    with counts.inside("a") as first, counts.inside("a") as second, counts.inside("b") as other:
        assert (first, second, other) == (0, 1, 0)
        assert len(counts) == 2
    assert len(counts) == 0
    with pytest.raises(RuntimeError), counts.inside("a"):
        raise RuntimeError("left by an exception")
    assert len(counts) == 0  # gone on the way out either way: input-keyed entries never pile up
