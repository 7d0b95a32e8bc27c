"""The safety-net poll of the in-memory views (`store.cached` for peerings, `acl_cache` for ACLs).

A view catches up with the change feed before a read whenever its notifier announced an index the view
has not applied: that read waits, as it must (a change is known to be missing). The poll only guards
against a notification that never came (another process on the SQLite file, a lost NOTIFY), so it never
makes a read wait: when it is due, the read answers from memory and the catch-up runs beside it as a task
of its own, one at a time. Awaiting it in the read made every read of the loop wait for the database's
round trips, twice a second: 30-70 ms each under load, about a tenth of a busy server's time (a fifth
with ACLs on, whose cache polls too).

What this costs: a change nobody announced is visible after the poll and one catch-up (under a second
with the 0.5 s poll), as before up to the length of that catch-up.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

log = logging.getLogger("peering.store")


class Poll:
    """Run `catch_up` in the background at most every `every` seconds, when a read finds it due."""

    def __init__(
        self,
        what: str,
        catch_up: Callable[[], Awaitable[None]],
        *,
        every: float,
        monotonic: Callable[[], float] = time.monotonic,
        first: float | None = None,
    ) -> None:
        self._what = what  # names the view in the log
        self._catch_up = catch_up
        self._every = every
        self._monotonic = monotonic
        self._next = monotonic() + every if first is None else first
        self._task: asyncio.Task[None] | None = None
        self._failing = False  # the last catch-up failed (logged once at warning, then at debug until one works)

    def caught_up(self) -> None:
        """A catch-up (polled or not) starts now: the next poll is `every` seconds later."""
        self._next = self._monotonic() + self._every

    def start_if_due(self) -> None:
        """Start the catch-up beside the caller if the poll is due and none runs (the caller never waits)."""
        if self._task is None and self._monotonic() >= self._next:
            self.caught_up()
            self._task = asyncio.get_running_loop().create_task(self._run(), name=f"poll of the {self._what}")

    async def _run(self) -> None:
        try:
            await self._catch_up()
        except Exception as exc:  # noqa: BLE001 -- the database is away: the next due read polls again
            level = logging.DEBUG if self._failing else logging.WARNING
            log.log(level, "the poll of the %s failed (%s: %s); it is tried again", self._what, type(exc).__name__, exc)
            self._failing = True
        else:
            if self._failing:
                log.info("the poll of the %s works again", self._what)
            self._failing = False
        finally:
            self._task = None

    async def settled(self) -> None:
        """Wait for the catch-up in progress, if any (tests; shutdown)."""
        task = self._task
        if task is not None:
            await asyncio.wait([task])

    async def stop(self) -> None:
        """Cancel the catch-up in progress, if any, and wait for it to end."""
        task = self._task
        if task is not None:
            task.cancel()
            await asyncio.wait([task])
