"""Who runs the background work (heartbeats, removals). With SQLite this process always does; with
a shared database it will be whoever holds a lease (SPEC §12)."""

from __future__ import annotations

from typing import Protocol


class Leadership(Protocol):
    """Answers whether this process may run background work right now."""

    async def is_leader(self) -> bool:
        """True while this process holds leadership."""


class SoleLeadership:
    """The embedded case: one process owns the database, so it is always the leader."""

    async def is_leader(self) -> bool:
        return True
