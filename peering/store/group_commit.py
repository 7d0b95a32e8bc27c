"""Group commit on SQLite's one writer connection: one fsync for the writers that queued up together.

Writers are serialised by a lock. The first opens `BEGIN IMMEDIATE`; each writer that finds the
transaction still open (because others were queued behind the previous one) joins it inside a
savepoint of its own, so that its failure undoes only its own writes; the last of the group commits
for all. Every writer returns only after that COMMIT, so an answered write is a durable one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from peering.store.inline_writer import InlineWriter


class GroupCommit:
    """Write transactions on `conn`, committed in groups."""

    def __init__(self, conn: InlineWriter) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        self._waiting = 0  # writers queued for the lock
        self._batch: asyncio.Future[None] | None = None  # the open group's commit, while one is open
        self._flusher: asyncio.Future[None] | None = None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[InlineWriter]:
        """The connection, inside a transaction of the current group; returns once the group committed."""
        self._waiting += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._waiting -= 1
            self._flush_if_abandoned()
            raise
        self._waiting -= 1
        failed: BaseException | None = None
        try:
            joined = self._batch is not None
            if self._batch is None:
                await self._conn.execute("BEGIN IMMEDIATE")
                self._batch = asyncio.get_running_loop().create_future()
            batch = self._batch
            if joined:
                await self._conn.execute("SAVEPOINT joined")
            try:
                yield self._conn
            except BaseException as exc:  # noqa: BLE001 -- re-raised below, after the lock is released
                failed = exc
                # a member that joined undoes only its savepoint; the first one may undo everything,
                # unless others already joined (they did not: they run after it, holding the lock)
                await self._conn.execute("ROLLBACK TO joined" if joined else "ROLLBACK")
                if joined:
                    await self._conn.execute("RELEASE joined")
                else:
                    self._batch = None
                    batch.set_result(None)
            else:
                if joined:
                    await self._conn.execute("RELEASE joined")
            if self._batch is not None and self._waiting == 0:
                await self._commit()
        finally:
            self._lock.release()
        if failed is not None:
            raise failed
        await asyncio.shield(batch)  # the group's COMMIT (or its failure, raised here for every member)

    async def _commit(self) -> None:
        """Commit the open group (the lock is held)."""
        batch, self._batch = self._batch, None
        assert batch is not None  # noqa: S101 -- only called with a group open
        try:
            await self._conn.execute("COMMIT")
        except BaseException as exc:
            batch.set_exception(exc)
            with contextlib.suppress(Exception):
                await self._conn.execute("ROLLBACK")
            raise
        batch.set_result(None)

    def _flush_if_abandoned(self) -> None:
        """A writer gave up waiting: if it was the one the open group was left for, commit it anyway."""
        if self._batch is not None and self._waiting == 0:

            async def flush() -> None:
                async with self._lock:
                    if self._batch is not None and self._waiting == 0:
                        await self._commit()

            self._flusher = asyncio.ensure_future(flush())

    async def close(self) -> None:
        """Commit a group still open (the connection itself is closed by its owner)."""
        async with self._lock:
            if self._batch is not None:
                await self._commit()
