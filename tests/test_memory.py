"""peering/server/memory.py: glibc gives back what a burst freed (issue 11's RSS bound), measured in process."""

from __future__ import annotations

import asyncio
import os
import sys

import pytest

from peering.server import memory

glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or memory._LIBC is None, reason="glibc only")


def _fragment() -> list[bytearray]:
    """Free 64 MiB of small blocks while every 64th stays: the heap cannot shrink from its top alone."""
    blocks = [bytearray(16_000) for _ in range(4096)]
    kept = blocks[::64]
    del blocks
    return kept


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1 << 20)


@glibc
def test_trim_returns_the_free_pages_inside_the_heap() -> None:
    kept = _fragment()
    assert memory.free_bytes() > memory.TRIM_AFTER_FREE_BYTES  # the burst's memory is kept by glibc
    before = _rss_mib()
    assert memory.trim() is True
    assert before - _rss_mib() > 30, (before, _rss_mib())  # most of the 64 MiB left the process
    assert len(kept) == 64


@glibc
def test_the_timer_trims_once_enough_is_free() -> None:
    async def scenario() -> tuple[float, float]:
        task = asyncio.create_task(memory.trimming(every=0.01, after=1 << 20))
        kept = _fragment()
        before = _rss_mib()
        await asyncio.sleep(0.3)
        task.cancel()
        assert len(kept) == 64
        return before, _rss_mib()

    before, after = asyncio.run(scenario())
    assert before - after > 30, (before, after)


@glibc
def test_the_allocator_takes_the_settings() -> None:
    assert memory.tune_allocator() is True
