"""Wakes blocking queries after a write commits (in-process with SQLite; SPEC §12).

A waiter takes a `watch()` *before* it reads, then waits on it: a write that commits between the
read and the wait has already fired the watch, so no wake-up is lost. At shutdown `close()` fires
every watch for good, so pending blocking queries answer at once (SPEC §2) and new ones do not wait.
"""

from __future__ import annotations

import asyncio
from typing import Protocol


class Watch(Protocol):
    """Fires on the first notification after it was taken."""

    async def wait(self, within: float) -> bool:
        """Wait until it fires; False when `within` seconds pass first."""


class Notifier(Protocol):
    """Tells waiters that something was written."""

    @property
    def index(self) -> int:
        """The highest committed index notified so far, by this process or another (0 before the first)."""

    def notify(self, index: int) -> None:
        """Fire every watch taken so far: a unit of work committed `index` (this process's or another's)."""

    def watch(self) -> Watch:
        """A watch that fires on the next notification (at once after `close()`)."""

    def close(self) -> None:
        """Fire every watch, now and from now on: the process is shutting down."""

    @property
    def closed(self) -> bool:
        """Whether `close()` was called (a waiter that wakes then stops waiting, rather than loop)."""


class _EventWatch:
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def wait(self, within: float) -> bool:
        if self._event.is_set():
            return True
        # not asyncio.wait_for: on Python 3.11 it swallows a cancellation that arrives just as the event
        # fires, and a cancelled background loop would then run on forever (seen at shutdown)
        try:
            async with asyncio.timeout(within):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class LocalNotifier:
    """A notifier for one process."""

    def __init__(self) -> None:
        self._event = asyncio.Event()
        self._closed = False
        self._index = 0

    @property
    def index(self) -> int:
        """The highest committed index notified so far (0 before the first). A notifier that has it is an
        `store.cached.Announcer`: the in-memory view catches up when it is above what the view applied."""
        return self._index

    def notify(self, index: int = 0) -> None:
        self._index = max(self._index, index)
        if self._closed:
            return  # the current event stays set: every watch taken from now on fires at once
        event, self._event = self._event, asyncio.Event()
        event.set()

    def watch(self) -> Watch:
        return _EventWatch(self._event)

    def close(self) -> None:
        self._closed = True
        self._event.set()

    @property
    def closed(self) -> bool:
        return self._closed
