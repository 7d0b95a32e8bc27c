"""Wakes blocking queries after a write commits (in-process with SQLite; SPEC §12).

A waiter takes a `watch()` *before* it reads, then waits on it: a write that commits between the
read and the wait has already fired the watch, so no wake-up is lost.
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

    def notify(self) -> None:
        """Fire every watch taken so far."""

    def watch(self) -> Watch:
        """A watch that fires on the next notification."""


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

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    def watch(self) -> Watch:
        return _EventWatch(self._event)
