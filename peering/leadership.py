"""Who runs the background work (heartbeats, removals; SPEC §12). With SQLite this process always
does; with PostgreSQL it is whichever replica holds the database lease (`store/postgres/lease.py`).

The background work runs inside `hold(work)`: as one task, started when leadership is gained and
cancelled at once, with everything it started, when it is lost. `valid()` is the cheap check a worker
makes right before an outward action (a heartbeat), so that a replica that froze and woke up after
losing its lease does not act once more before the cancellation reaches it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol


class Leadership(Protocol):
    """Answers whether this process may run background work right now, and runs it while it may."""

    async def is_leader(self) -> bool:
        """True while this process holds leadership."""

    def valid(self) -> bool:
        """The same, without a wait: whether leadership is held by this process's own clock right now."""

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` whenever leadership is held, cancelling it at once when lost; until cancelled."""


class SoleLeadership:
    """The embedded case: one process owns the database, so it is always the leader."""

    async def is_leader(self) -> bool:
        return True

    def valid(self) -> bool:
        return True

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        await work()
