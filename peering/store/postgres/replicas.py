"""The replica registry: every replica's peering address and when it was last seen (SPEC §15).

Each replica upserts its row every `beat` seconds (at most 2; database time) on a connection of its
own; live means seen within `LIVE` seconds, so a replica that dies leaves every other replica's list
within LIVE + one beat < 10 s (SPEC §15); one that stops deletes its row, so it leaves on their next
beat. After each beat `on_change` gets the live addresses (sorted), which the composition root puts
into tokens and `/v1/status/peers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg

from peering.store.postgres.cluster_schema import connect

log = logging.getLogger("peering.replicas")

LIVE = 7.5

_BEAT = """
INSERT INTO replicas (replica_id, peering_addr, seen_at) VALUES ($1, $2, clock_timestamp())
ON CONFLICT (replica_id) DO UPDATE SET peering_addr = EXCLUDED.peering_addr, seen_at = EXCLUDED.seen_at
"""
_LIVE = (
    "SELECT DISTINCT peering_addr FROM replicas WHERE seen_at > clock_timestamp() - $1 * interval '1 second' "
    "ORDER BY peering_addr"
)
_GONE = "DELETE FROM replicas WHERE replica_id = $1 OR seen_at < clock_timestamp() - interval '1 hour'"


class ReplicaRegistry:
    """Announces this replica and follows the others; `run()` until cancelled."""

    def __init__(
        self,
        dsn: str,
        replica_id: str,
        address: str,
        on_change: Callable[[tuple[str, ...]], None],
        *,
        beat: float = 2.0,
    ) -> None:
        self._dsn = dsn
        self.replica_id = replica_id
        self._address = address
        self._on_change = on_change
        self._beat = beat
        self.addresses: tuple[str, ...] = (address,)
        self._conn: asyncpg.Connection | None = None

    async def beat_once(self) -> tuple[str, ...]:
        """Record this replica as seen now and read the live addresses.

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
        """
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(self._dsn, 5.0)
        await self._conn.execute(_BEAT, self.replica_id, self._address)
        rows = await self._conn.fetch(_LIVE, LIVE)
        found = tuple(str(row[0]) for row in rows) or (self._address,)
        if found != self.addresses:
            self.addresses = found
            self._on_change(found)
        return found

    async def run(self) -> None:
        """Beat until cancelled; then remove this replica's row."""
        try:
            while True:
                try:
                    await self.beat_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the database is away: try again on the next beat
                    log.debug("replica beat failed", exc_info=True)
                    await self._drop()
                await asyncio.sleep(self._beat)
        finally:
            await self._leave()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _leave(self) -> None:
        try:
            async with asyncio.timeout(2.0):
                if self._conn is None or self._conn.is_closed():
                    self._conn = await connect(self._dsn, 2.0)
                await self._conn.execute(_GONE, self.replica_id)
        except Exception:  # the row ages out by itself
            log.debug("replica leave failed", exc_info=True)
        with contextlib.suppress(Exception):
            await self._drop()
