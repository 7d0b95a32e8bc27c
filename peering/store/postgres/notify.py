"""Blocking queries woken across replicas: LISTEN/NOTIFY with a poll of the counter underneath (SPEC §12, §15).

Implements the `peering.notifier.Notifier` protocol. A local `notify()` wakes this replica's waiters at
once and asks the background task to send `pg_notify` (payload: the counter's committed value) right
after the COMMIT. Every replica LISTENs on one dedicated connection and wakes its waiters when another
replica's notification arrives (its own echo is ignored by the backend PID).

NOTIFY has no replay: whatever is sent while the connection is down is lost. So the same task polls
the counter every `poll` seconds and wakes everyone when it moved, and after every (re)connect it wakes
everyone too. Correctness never depends on NOTIFY; it only cuts the latency below the poll's.
Spurious wake-ups are allowed (a blocking query re-reads and waits again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg

from peering.store.postgres.cluster_schema import connect
from peering.store.postgres.errors import is_unavailable

log = logging.getLogger("peering.store")

CHANNEL = "peering_index"
_SEND = "SELECT pg_notify($1, (SELECT value::text FROM counter WHERE id = 1))"
_READ = "SELECT value FROM counter WHERE id = 1"


class _Watch:
    def __init__(self, event: asyncio.Event) -> None:
        self._event = event

    async def wait(self, within: float) -> bool:
        if self._event.is_set():
            return True
        try:  # not asyncio.wait_for (see peering/notifier.py: it can swallow a cancellation on 3.11)
            async with asyncio.timeout(within):
                await self._event.wait()
        except TimeoutError:
            return False
        return True


class PostgresNotifier:
    """A notifier shared by every replica on one database; `start()` it, `aclose()` it at the end."""

    def __init__(self, dsn: str, *, poll: float = 0.5, budget: float = 5.0) -> None:
        self._dsn = dsn
        self._poll = poll
        self._budget = budget
        self._event = asyncio.Event()
        self._closed = False
        self._seen = 0  # the highest counter value this replica has woken its waiters for
        self._send = asyncio.Event()  # a local write is waiting to be announced
        self._task: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while LISTEN is in place (tests wait on it)

    def start(self) -> None:
        """Start listening and polling in the background."""
        self._task = asyncio.create_task(self._run(), name="pg-notifier")

    def _fire(self) -> None:
        if self._closed:
            return
        event, self._event = self._event, asyncio.Event()
        event.set()

    @property
    def index(self) -> int:
        """The highest committed index this replica knows of (its own writes, NOTIFY payloads, the poll):
        the in-memory view (`store.cached`) catches up when it is above what the view applied."""
        return self._seen

    def notify(self, index: int | None = None) -> None:
        """A local write committed: wake local waiters now, tell the other replicas right after."""
        if index is not None:
            self._seen = max(self._seen, index)
        self._fire()
        self._send.set()

    def watch(self) -> _Watch:
        return _Watch(self._event)

    def close(self) -> None:
        self._closed = True
        self._event.set()

    @property
    def closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        """Close (waking everyone for good) and stop the background task and its connection."""
        self.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _heard(self, conn: Any, pid: int, channel: str, payload: object) -> None:
        if pid == conn.get_server_pid():
            return  # our own announcement: the local waiters were woken already
        try:
            index = int(str(payload))
        except ValueError:
            index = None
        if index is None or index > self._seen:
            self._seen = max(self._seen, index or 0)
            self._fire()

    async def _run(self) -> None:
        while True:
            conn: asyncpg.Connection | None = None
            try:
                conn = await connect(self._dsn, self._budget)
                await conn.add_listener(CHANNEL, self._heard)
                self.connected.set()
                self._fire()  # whatever was sent while we were away is lost: everyone re-reads
                await self._serve(conn)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: reconnect; only the unexpected is loud
                if is_unavailable(exc) or type(exc).__name__ == "DatabaseUnavailableError":
                    log.debug("notifier connection lost; reconnecting")
                else:
                    log.exception("notifier failed; reconnecting")
            finally:
                self.connected.clear()
                if conn is not None:
                    with contextlib.suppress(Exception):
                        conn.terminate()
            await asyncio.sleep(min(1.0, self._poll))

    async def _serve(self, conn: asyncpg.Connection) -> None:
        while True:
            if self._send.is_set():
                self._send.clear()
                await conn.execute(_SEND, CHANNEL)
            value = int(await conn.fetchval(_READ))
            if value > self._seen:
                self._seen = value
                self._fire()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._send.wait()
