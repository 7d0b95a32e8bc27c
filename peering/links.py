"""Background work that keeps links honest while this process leads (SPEC §5, §6):

- a heartbeat task per dialer link (every `--heartbeat-interval`; after a failure, exponential
  backoff from at most 1 s up to 64 s);
- acceptor links with no heartbeat for `--heartbeat-timeout` turn `FAILING`;
- deleted peerings tell their peer, then go; those nobody can tell go after the grace period;
- replication (`peer/stream.py`): the exporter follows the change feed, a stream task per dialer link
  pulls and pushes exported services, and a terminated or deleted peering's imports are removed.

It wakes on every committed write (so a delete or an establish is acted on at once) and on a tick.
With several replicas it runs inside `Leadership.hold`, so losing the lease cancels it and every link
task at once; each task also checks `Leadership.valid()` right before it talks to a peer, and the
owner's own write (`FAILING`) is fenced with the lease (`fence`), so a replica that lost it writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any

from peering.cluster import Cluster
from peering.domain import Event, Peering, PeeringState, Role, transition
from peering.errors import DatabaseUnavailableError, LeaseLostError
from peering.leadership import Leadership
from peering.outbound import Outbound, log_fields
from peering.peer.stream import Replication
from peering.service import PeeringService
from peering.store.base import Fence

log = logging.getLogger("peering.links")

MAX_BACKOFF = 64.0
COALESCE = 0.1  # seconds a pass waits after a write woke it, for the writes right behind it


class LinkKeeper:
    """Runs the per-link tasks; `run()` until cancelled."""

    def __init__(
        self,
        cluster: Cluster,
        service: PeeringService,
        outbound: Outbound,
        leadership: Leadership,
        fence: Callable[[], Fence] | None = None,
        replication: Replication | None = None,
    ) -> None:
        self._replication = replication
        self._fence = fence  # the lease as held now (PostgreSQL); None: nothing to fence (SQLite)
        self._cluster = cluster
        self._service = service
        self._outbound = outbound
        self._leadership = leadership
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._tick = min(1.0, cluster.timings.heartbeat_interval)

    async def run(self) -> None:
        """Reconcile on every write and every tick, until cancelled; then stop every link task."""
        down = False  # in a database outage (logged once)
        try:
            while True:
                watch = self._cluster.notifier.watch()
                try:
                    if await self._leadership.is_leader():
                        await self._reconcile()
                    if down:
                        log.info("database available again: keeping links")
                    down = False
                except DatabaseUnavailableError:
                    # an outage is one line when it starts, not a traceback per pass; the next pass retries
                    if not down:
                        log.warning("database unavailable: links kept again when it returns")
                    down = True
                except Exception:
                    # one bad pass must not end the loop; the next one retries
                    log.exception("keeping links failed")
                if await watch.wait(self._tick):
                    # a burst of writes (a client creating many peerings) costs one pass, not one each
                    await asyncio.sleep(COALESCE)
        finally:
            tasks = list(self._tasks.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def _start(self, key: str, work: Coroutine[Any, Any, None]) -> None:
        running = self._tasks.get(key)
        if running is not None and not running.done():
            work.close()
            return
        self._tasks[key] = asyncio.create_task(work, name=f"peering-{key}")

    def _stop(self, key: str) -> None:
        task = self._tasks.pop(key, None)
        if task is not None:
            task.cancel()

    async def _reconcile(self) -> None:
        cluster = self._cluster
        now = cluster.now()
        links = await cluster.store.live_links()
        dialers = {p.id for p in links if p.role is Role.DIALER}
        for key in [k for k in self._tasks if k.startswith(("beat-", "repl-")) and k[5:] not in dialers]:
            self._stop(key)
        for peering_id in dialers:
            self._start(f"beat-{peering_id}", self._beat(peering_id))
        replication = self._replication
        if replication is not None:
            self._start("exports", replication.exporter.run())
            for peering_id in dialers:
                self._start(f"repl-{peering_id}", replication.link(peering_id, self._leadership.valid))
        timeout = cluster.timings.heartbeat_timeout
        for peering in links:
            silent = cluster.tracker.silent_for(peering.id)
            if peering.role is Role.ACCEPTOR and peering.state is PeeringState.ACTIVE and silent >= timeout:
                saved = await self._timed_out(peering.id)
                if saved is not None:
                    log.warning("peering failing: no heartbeat for %.1f s", silent, extra=log_fields(saved))
        for peering in await cluster.store.awaiting_notice(now):
            self._start(f"notice-{peering.id}", self._notice(peering.id))
        try:
            if replication is not None:  # before any removal: a removed record's rows would have no owner
                await replication.purge_terminated(self._fence() if self._fence is not None else None)
            await self._service.remove_due(self._fence() if self._fence is not None else None)
        except LeaseLostError:
            log.warning("background lease lost: not removing deleted peerings")

    async def _timed_out(self, peering_id: str) -> Peering | None:
        """Turn a silent acceptor link `FAILING`, only while this replica still holds the lease."""
        if self._fence is None:
            return await self._cluster.apply(peering_id, Event.HEARTBEAT_TIMEOUT)
        try:
            async with self._cluster.write() as tx:
                await tx.fence(self._fence())
                current = await tx.get_by_id(peering_id)
                if current is None or current.is_deleted:
                    return None
                state = transition(current.role, current.state, Event.HEARTBEAT_TIMEOUT)
                if state is current.state:
                    return None
                return await tx.save(replace(current, state=state))
        except LeaseLostError:
            log.warning("background lease lost: not marking the link failing")
            return None

    async def _beat(self, peering_id: str) -> None:
        """Heartbeat one dialer link until it is no longer live."""
        interval = self._cluster.timings.heartbeat_interval
        failures = 0
        while True:
            peering = await self._cluster.store.get_by_id(peering_id)
            if (
                peering is None
                or peering.is_deleted
                or peering.state not in (PeeringState.ACTIVE, PeeringState.FAILING)
            ):
                return
            if not self._leadership.valid():
                return  # the lease is gone: the cancellation is on its way; send nothing more
            try:
                went_through = await self._outbound.heartbeat(peering)
            except Exception:
                log.exception("heartbeat failed unexpectedly", extra=log_fields(peering))
                went_through = False
            if went_through:
                failures, delay = 0, interval
            else:
                delay = min(MAX_BACKOFF, min(1.0, interval) * 2**failures)
                failures += 1
            await asyncio.sleep(delay)

    async def _notice(self, peering_id: str) -> None:
        """Tell the peer about a deletion, retrying with backoff, then remove the record."""
        delay = min(0.1, self._cluster.timings.heartbeat_interval)
        while True:
            peering = await self._cluster.store.get_by_id(peering_id)
            if peering is None:
                return  # removed meanwhile (grace period over)
            if not self._leadership.valid():
                return
            try:
                told = await self._outbound.terminate(peering)
            except Exception:
                log.exception("telling the peer failed unexpectedly", extra=log_fields(peering))
                told = False
            if told:
                log.info("peer told of the deletion", extra=log_fields(peering))
                try:
                    fence = self._fence() if self._fence is not None else None
                    if self._replication is not None:
                        await self._replication.purge(peering, fence)
                    await self._service.remove(peering, fence)
                except LeaseLostError:
                    log.warning("background lease lost: not removing the peering", extra=log_fields(peering))
                return
            await asyncio.sleep(delay)
            delay = min(MAX_BACKOFF, delay * 2)
