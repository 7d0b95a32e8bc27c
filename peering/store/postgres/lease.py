"""Who runs the background work among the replicas: a lease row in database time, with fencing (SPEC §15).

Implements `peering.leadership.Leadership`. The lease `background` is taken and renewed with one upsert
that succeeds only when the row is free, expired, or already ours; expiry is `clock_timestamp()` + TTL,
the database's one clock, so replicas' clocks may drift. `epoch` goes up on every change of holder: a
fenced write checks it (`fence_sql`) so that a replica that lost the lease cannot write as the owner.

The holder trusts its lease for 0.8 x TTL counted on its monotonic clock from *before* the renew call
(so a slow answer only shortens it), renews every TTL / 3, and the moment that trust runs out (a failed
renew, a frozen process waking up, a database outage) `hold` cancels every background worker at once:
they run as one task, and `valid()` lets them check before each outward action. Graceful shutdown
expires the row at once so another replica takes over on its next try (every `retry` seconds).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

import asyncpg

from peering.store.base import Fence
from peering.store.postgres.cluster_schema import connect

log = logging.getLogger("peering.leadership")

NAME = "background"
TRUST = 0.8

_ACQUIRE = """
INSERT INTO leases AS l (name, holder, holder_addr, epoch, expires_at)
VALUES ($1, $2, $3, 1, clock_timestamp() + $4 * interval '1 second')
ON CONFLICT (name) DO UPDATE SET
    holder = EXCLUDED.holder,
    holder_addr = EXCLUDED.holder_addr,
    epoch = CASE WHEN l.holder = EXCLUDED.holder AND l.expires_at > clock_timestamp() THEN l.epoch
                 ELSE l.epoch + 1 END,
    expires_at = EXCLUDED.expires_at
WHERE l.holder = EXCLUDED.holder OR l.expires_at <= clock_timestamp()
RETURNING epoch
"""
# expired, not deleted: the epoch must keep growing across holders (a fence names holder AND epoch)
_RELEASE = "UPDATE leases SET expires_at = clock_timestamp() WHERE name = $1 AND holder = $2"
_OWNER = "SELECT holder_addr FROM leases WHERE name = $1 AND expires_at > clock_timestamp()"

# a condition a fenced statement adds: $1 name, $2 holder, $3 epoch
fence_sql = (
    "EXISTS (SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND epoch = $3 AND expires_at > clock_timestamp())"
)


class PostgresLeadership:
    """This replica's claim on the background lease (one connection of its own)."""

    def __init__(
        self,
        dsn: str,
        holder: str,
        address: str,
        *,
        ttl: float = 10.0,
        retry: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dsn = dsn
        self.holder = holder
        self._address = address
        self._ttl = ttl
        self._retry = min(retry, ttl / 3)
        self._monotonic = monotonic
        self._conn: asyncpg.Connection | None = None
        self._connecting = asyncio.Lock()
        self._closed = False  # `aclose()` was called: no connection is opened any more
        self._deadline = 0.0  # monotonic time our trust in the lease ends
        self.epoch = 0
        self.acquired = 0  # how many times this replica took the lease (tests, logs)

    def valid(self) -> bool:
        """Whether this replica holds the lease right now (by its own conservative clock)."""
        return self._monotonic() < self._deadline

    async def is_leader(self) -> bool:
        return self.valid()

    def fence(self) -> Fence:
        """The lease as this replica holds it now, for `UnitOfWork.fence` (refused once another took it)."""
        return Fence(NAME, self.holder, self.epoch)

    async def owner_address(self) -> str:
        """The peering address of the current holder ("" when there is none or it cannot be read)."""
        try:
            conn = await self._connection()
            return str(await conn.fetchval(_OWNER, NAME) or "")
        except Exception:  # an unknown owner is the honest answer during an outage
            log.debug("reading the lease failed", exc_info=True)
            await self._drop()
            return ""

    async def _connection(self) -> asyncpg.Connection:
        # one connect at a time: a renewal and an owner read racing here would each open one, and the
        # connection overwritten would never be closed (a socket leaked)
        async with self._connecting:
            if self._closed:
                raise ConnectionError("the lease's connection is closed")
            if self._conn is None or self._conn.is_closed():
                self._conn = await connect(self._dsn, max(0.5, self._ttl / 3))
            return self._conn

    async def aclose(self) -> None:
        """Close the lease's connection for good (a connect under way is waited for, then closed too).

        `hold()` closes it on its way out, but a leader read (`owner_address`) opens it on a replica that
        never held the lease, or after it stopped: the replica closes it when it leaves (`replica.joined`).
        """
        self._closed = True
        async with self._connecting:
            conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            try:
                await conn.close(timeout=1.0)
            except Exception:  # a dead or stalled server: cut it
                log.debug("closing the lease connection failed", exc_info=True)
                conn.terminate()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def _try(self) -> bool:
        """Acquire or renew; True while held. The trust deadline moves only on success."""
        began = self._monotonic()
        try:
            async with asyncio.timeout(max(0.1, self._ttl / 3)):
                conn = await self._connection()
                epoch = await conn.fetchval(_ACQUIRE, NAME, self.holder, self._address, self._ttl)
        except asyncio.CancelledError:
            raise
        except Exception:  # unreachable database or a cut connection: not held
            log.debug("lease call failed", exc_info=True)
            await self._drop()
            return self.valid()
        if epoch is None:
            self._deadline = 0.0
            return False
        if int(epoch) != self.epoch or not self.valid():
            self.acquired += 1
            log.info("background lease acquired (epoch %d)", epoch)
        self.epoch = int(epoch)
        self._deadline = began + TRUST * self._ttl
        return True

    async def hold(self, work: Callable[[], Awaitable[None]]) -> None:
        """Run `work()` while this replica holds the lease, restarting it after each takeover; until cancelled
        (then the lease is released)."""
        try:
            while True:
                if not await self._try():
                    await asyncio.sleep(self._retry)
                    continue
                await self._while_held(work)
        finally:
            await self._release()

    async def _while_held(self, work: Callable[[], Awaitable[None]]) -> None:
        async def run() -> None:
            await work()

        worker = asyncio.create_task(run(), name="background-owner")
        try:
            while True:
                next_renew = self._monotonic() + self._ttl / 3
                # wake at the renewal, or at once when the trust runs out first
                until = min(next_renew, self._deadline) - self._monotonic()
                done, _ = await asyncio.wait([worker], timeout=max(0.0, until))
                if done:
                    if not worker.cancelled() and worker.exception() is not None:
                        log.error("background work failed", exc_info=worker.exception())
                    return
                if not self.valid() or not await self._try():
                    log.warning("background lease lost; stopping the background work")
                    return
        finally:
            worker.cancel()
            await asyncio.gather(worker, return_exceptions=True)

    async def _release(self) -> None:
        self._deadline = 0.0
        try:
            async with asyncio.timeout(2.0):
                conn = await self._connection()
                await conn.execute(_RELEASE, NAME, self.holder)
        except Exception:  # the lease expires by itself
            log.debug("lease release failed", exc_info=True)
        with contextlib.suppress(Exception):
            await self._drop()
