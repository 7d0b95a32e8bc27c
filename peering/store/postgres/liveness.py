"""Link liveness any replica can answer (SPEC §15): heartbeats recorded where they arrive, read by all.

A heartbeat reaches whichever replica the peer dialed; the background owner, which decides `FAILING`,
may be another one. So every replica, every `every` seconds on a connection of its own, writes the
heartbeats its tracker saw since the last round in one statement (coalesced; the table carries no index,
so this never bumps the counter or wakes a blocking query) and reads every link's latest heartbeat
back, as an age in database time, into its tracker (`peering.tracker.StreamTracker.merge`). A silence is
then known to every replica within about `every` seconds, whichever replica heard the peer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime
from typing import Protocol

import asyncpg

from peering.store.postgres.cluster_schema import connect

log = logging.getLogger("peering.liveness")

_WRITE = """
INSERT INTO liveness (peering_id, last_heartbeat, heard_at)
SELECT id, at, clock_timestamp() FROM unnest($1::text[], $2::timestamptz[]) AS heard (id, at)
ON CONFLICT (peering_id) DO UPDATE SET
    last_heartbeat = GREATEST(liveness.last_heartbeat, EXCLUDED.last_heartbeat),
    heard_at = EXCLUDED.heard_at
"""
_READ = """
SELECT peering_id, last_heartbeat, extract(epoch FROM clock_timestamp() - heard_at)::float8
FROM liveness WHERE heard_at > clock_timestamp() - $1 * interval '1 second'
"""
_REAP = "DELETE FROM liveness WHERE heard_at < clock_timestamp() - interval '1 day'"


class Tracker(Protocol):
    """What this module needs of `peering.tracker.StreamTracker`."""

    def take_heard(self) -> dict[str, datetime]:
        """Heartbeats seen here since the last call."""

    def merge(self, peering_id: str, at: datetime, age: float) -> None:
        """Fold in a heartbeat seen `age` seconds ago somewhere."""


class SharedLiveness:
    """Shares one replica's tracker with the others; `run()` until cancelled."""

    def __init__(self, dsn: str, tracker: Tracker, *, every: float = 1.0, horizon: float = 3600.0) -> None:
        self._dsn = dsn
        self._tracker = tracker
        self._every = every
        self._horizon = horizon  # links silent for longer are not read back (the tracker knows them)
        self._conn: asyncpg.Connection | None = None
        self._unsent: dict[str, datetime] = {}
        self._rounds = 0

    async def round(self) -> None:
        """Write what this replica heard, read what every replica heard.

        Raises:
            DatabaseUnavailableError, OSError, asyncpg errors: the database is away (kept for the next round).
        """
        for peering_id, at in self._tracker.take_heard().items():
            self._unsent[peering_id] = max(at, self._unsent.get(peering_id, at))
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self._dsn, 5.0)
        if self._unsent:
            ids = list(self._unsent)
            await self._conn.execute(_WRITE, ids, [self._unsent[i] for i in ids])
            self._unsent.clear()
        for peering_id, at, age in await self._conn.fetch(_READ, self._horizon):
            self._tracker.merge(str(peering_id), at, float(age))
        self._rounds += 1
        if self._rounds % 3600 == 0:
            await self._conn.execute(_REAP)

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.round()
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.debug("sharing link liveness failed; retrying", exc_info=True)
                    conn, self._conn = self._conn, None
                    if conn is not None:
                        conn.terminate()
                await asyncio.sleep(self._every)
        finally:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.terminate()
