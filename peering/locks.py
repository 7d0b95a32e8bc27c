"""Locks and counts keyed by a value (a peering's partition and name), kept only while someone holds,
awaits or is counted in them.

A plain `dict[key, Lock]` keyed by client input grows by one entry per distinct key for ever; here an
entry goes as soon as its last user leaves, so the map is never larger than the number of callers
inside or queued at that moment.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Hashable, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # holding or waiting


class KeyedLocks(Generic[K]):
    """One `asyncio.Lock` per key, created on first use and dropped when its last user is done."""

    def __init__(self) -> None:
        self._entries: dict[K, _Entry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @asynccontextmanager
    async def hold(self, key: K) -> AsyncIterator[None]:
        """Hold the lock of `key` for the block (waiting for earlier holders first)."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:  # also when cancelled while waiting
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]


class KeyedCounts(Generic[K]):
    """How many callers are inside a block per key, an entry kept only while one is (as `KeyedLocks`)."""

    def __init__(self) -> None:
        self._counts: dict[K, int] = {}

    def __len__(self) -> int:
        return len(self._counts)

    @contextmanager
    def inside(self, key: K) -> Iterator[int]:
        """Count the caller in for the block; yields how many were inside before it."""
        before = self._counts.get(key, 0)
        self._counts[key] = before + 1
        try:
            yield before
        finally:
            if self._counts[key] == 1:
                del self._counts[key]
            else:
                self._counts[key] -= 1
