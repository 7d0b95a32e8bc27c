"""The TTL timer (SPEC §13): a TTL check that nobody renews in time turns `critical` by itself.

Each TTL check stores its deadline, so the timer needs no memory of its own and a restart picks up
where the last process left off. The timer sleeps until the earliest stored deadline
(`CatalogReads.next_deadline`) or until any write commits (a renewal moves a deadline), then marks every
due check `critical` with Consul's output `TTL expired`. It is background work: with PostgreSQL only the
replica holding the lease runs it, and its writes are fenced with the lease.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import replace

from peering.catalog.model import Check, Health
from peering.cluster import Cluster
from peering.errors import DatabaseUnavailableError, LeaseLostError
from peering.store.base import Fence

log = logging.getLogger("peering.catalog")

IDLE = 60.0  # seconds between passes with nothing due (any write wakes the timer earlier)
RETRY = 1.0  # seconds after a failed pass
BATCH = 256  # checks expired per unit of work
COALESCE = 0.02  # seconds a pass waits after a write woke it, for the writes right behind it


def expired_output(check: Check) -> str:
    """The output of an expired TTL check, as Consul's `CheckTTL` words it."""
    if not check.output:
        return "TTL expired"
    return f"TTL expired (last output before timeout follows): {check.output}"


class TtlTimer:
    """Turns overdue TTL checks `critical`; `run()` until cancelled."""

    def __init__(self, cluster: Cluster, fence: Callable[[], Fence] | None = None) -> None:
        self._cluster = cluster
        self._fence = fence  # the lease as held now (PostgreSQL); None: nothing to fence (SQLite)

    async def expire_due(self) -> int:
        """Mark every TTL check whose deadline has passed `critical` (each re-read in its unit); how many.

        Raises:
            LeaseLostError: the lease (`fence`) is no longer held; nothing more is written.
            DatabaseUnavailableError: the database is unavailable.
        """
        now = self._cluster.now()
        due = await self._cluster.store.catalog.due_checks(now)
        expired = 0
        for start in range(0, len(due), BATCH):
            async with self._cluster.write() as tx:
                if self._fence is not None:
                    await tx.fence(self._fence())
                for check in due[start : start + BATCH]:
                    current = await tx.catalog.check(check.partition, check.peer_name, check.node, check.check_id)
                    if (
                        current is None
                        or current.type != "ttl"
                        or current.status is Health.CRITICAL
                        or current.deadline is None
                        or current.deadline > now
                    ):
                        continue  # renewed, removed or already critical since the read
                    await tx.catalog.save_check(
                        replace(current, status=Health.CRITICAL, output=expired_output(current))
                    )
                    expired += 1
                    log.info(
                        "TTL check expired: now critical",
                        extra={"check_id": current.check_id, "node": current.node, "service_id": current.service_id},
                    )
        return expired

    async def _pass(self) -> float:
        """One pass: expire what is due, then how long to sleep until the next deadline (at most `IDLE`)."""
        await self.expire_due()
        deadline = await self._cluster.store.catalog.next_deadline()
        if deadline is None:
            return IDLE
        return min(IDLE, max(0.0, (deadline - self._cluster.now()).total_seconds()))

    async def run(self) -> None:
        """Expire due checks on every deadline and after every write, until cancelled."""
        down = False
        while True:
            watch = self._cluster.notifier.watch()  # before the pass: a write during it wakes the next one
            try:
                delay = await self._pass()
                if down:
                    log.info("database available again: TTL checks run again")
                down = False
            except LeaseLostError:
                log.warning("background lease lost: not expiring TTL checks")
                delay = RETRY
            except DatabaseUnavailableError:
                if not down:  # one line when an outage starts, not one per pass
                    log.warning("database unavailable: TTL checks expire again when it returns")
                down, delay = True, RETRY
            except Exception:
                log.exception("expiring TTL checks failed")  # one bad pass must not end the timer
                delay = RETRY
            if self._cluster.notifier.closed:  # shutting down: every watch fires at once from now on
                await asyncio.sleep(delay)
            elif await watch.wait(delay):
                await asyncio.sleep(COALESCE)  # a burst of writes costs one pass, not one each
