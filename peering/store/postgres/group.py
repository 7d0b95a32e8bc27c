"""Group commit on PostgreSQL: the units of work of one replica that queue up while one runs share its
transaction, each in a savepoint of its own, and one COMMIT (one fsync, one hold of the counter lock).

Units of one replica run one at a time (an asyncio lock). The first unit of a group takes a pooled
connection and opens the transaction with the writers' lock (`queries.BEGIN_WRITE`: the counter row,
so groups of every replica are serialised as single units were); each unit that takes the lock while
that transaction is still open joins it inside `SAVEPOINT unit`. A unit that raises undoes only its
own savepoint (the first unit, which others join only after it ended, the whole transaction) and gets
its exception; the others go on. The unit that ends with nobody queued to join, or the group full
(`max_units`), hands the lock to a task that COMMITs: every unit of the group returns only after that
COMMIT, and if it fails, every one of them fails (none is acknowledged). An idle replica's lone unit
commits at once. Each unit takes its own index from the counter inside its savepoint (after the
previous unit's, so index order is commit order) and so writes its own change-feed entries.

A unit of one statement that is atomic by itself (a function with its own exception block, which
changes nothing when it fails) joins without a savepoint (`unit(savepoint=False)`): one round trip
less while the lock is held. Nothing can be undone for such a unit alone, so if it raises, the whole
group fails (its statement failed: the transaction is broken anyway); a caller's cancellation must not
break its statement off (`batch.py` runs it in a task of its own).

The group's own statements (SAVEPOINT, ROLLBACK TO) run to their end even when their caller is
cancelled meanwhile (the cancellation is raised right after), so a caller that goes away never
breaks the group; a group statement that fails (the connection was lost) fails the whole group.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeAlias

import asyncpg

from peering.errors import DatabaseUnavailableError
from peering.store.postgres import queries as q
from peering.store.postgres.errors import is_unavailable, unavailable_as_error

Conn: TypeAlias = "asyncpg.pool.PoolConnectionProxy[asyncpg.Record]"  # lent by the pool

MAX_UNITS = 64  # units in one transaction at most (each a savepoint; the counter lock is held for all)

_JOIN = "SAVEPOINT unit"
_NEXT = "RELEASE SAVEPOINT unit; SAVEPOINT unit"  # the previous unit's savepoint released on the same round trip
_UNDO = "ROLLBACK TO SAVEPOINT unit; RELEASE SAVEPOINT unit"


class _Group:
    """One open transaction and the units in it."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.units = 1
        self.release_pending = False  # the last unit's savepoint is still to be released (by the next one)
        self.done = asyncio.get_running_loop().create_future()  # set when the group ended, either way
        self.error: BaseException | None = None  # why it failed (every unit of it fails)

    def end(self, error: BaseException | None = None) -> None:
        if not self.done.done():
            self.error = error
            self.done.set_result(None)


class GroupCommit:
    """Write transactions on connections of `pool`, committed in groups (see the module docstring)."""

    def __init__(self, pool: asyncpg.Pool, budget: float, *, max_units: int = MAX_UNITS) -> None:
        self._pool = pool
        self._budget = budget
        self._max = max(1, max_units)
        self._lock = asyncio.Lock()
        self._waiting = 0  # units queued for the lock
        self._group: _Group | None = None  # the open transaction, between its units too
        self._tasks: set[asyncio.Task[None]] = set()  # commits and flushes in flight
        self.commits = 0  # COMMITs that succeeded (tests, metrics)
        self.units = 0  # units those COMMITs made durable

    @property
    def waiting(self) -> int:
        """How many units are queued for the lock (they join the open group, if there is one)."""
        return self._waiting

    @asynccontextmanager
    async def unit(self, *, savepoint: bool = True) -> AsyncIterator[Conn]:
        """A connection inside the current group's transaction; returns once the group's COMMIT is done.

        `savepoint=False`: the unit is one atomic statement (see the module docstring).

        Raises:
            DatabaseUnavailableError: the database failed the group (or its start); nothing is acknowledged.
        """
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
            group, joined = await self._enter(savepoint)
            try:
                yield group.conn
            except BaseException as exc:  # noqa: BLE001 -- re-raised below, once the lock is passed on
                failed = exc
                if joined and not savepoint:
                    await self._abandon(group, exc)  # no savepoint to go back to: the group fails with it
                else:
                    await self._undo(group, joined)
            else:
                group.release_pending = group.release_pending or (joined and savepoint)
        finally:
            self._pass_on()
        if failed is not None:
            raise failed
        await asyncio.shield(group.done)
        if group.error is not None:
            raise unit_error(group.error)

    async def _enter(self, savepoint: bool) -> tuple[_Group, bool]:
        """The open group joined (True), or a new one begun (the lock is held)."""
        group = self._group
        if group is None:
            self._group = _Group(await self._begin())
            return self._group, False
        if not savepoint:  # a pending release stays pending: the next unit with a savepoint does it
            group.units += 1
            return group, True
        try:
            await self._statement(group, _NEXT if group.release_pending else _JOIN)
        except asyncio.CancelledError:
            if self._group is group:
                group.release_pending = True  # the savepoint is there, empty: the next one releases it
            raise
        group.release_pending = False
        group.units += 1
        return group, True

    async def _undo(self, group: _Group, joined: bool) -> None:
        """Undo a unit that raised: its savepoint, or (the first unit) the whole transaction. The unit's own
        exception is the one it raises: if the undo fails too (connection lost), the group failed with it."""
        if joined:
            if self._group is group:
                with contextlib.suppress(Exception):
                    await self._statement(group, _UNDO)
            return
        self._group = None
        try:
            await _rollback(group.conn)
        finally:
            await self._pool.release(group.conn)
            group.end()

    async def _statement(self, group: _Group, sql: str) -> None:
        """One of the group's own statements, run to its end even if the caller is cancelled meanwhile (the
        cancellation is raised after it); if it fails, the group fails (its connection is closed)."""

        async def run() -> None:  # inside the task: a dead connection's proxy raises at the call already
            await group.conn.execute(sql)

        task = asyncio.ensure_future(run())
        cancelled = False
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                cancelled = True
        exc = task.exception()
        if exc is not None:
            await self._abandon(group, exc)
            if is_unavailable(exc):
                raise DatabaseUnavailableError() from exc
            raise exc
        if cancelled:
            raise asyncio.CancelledError

    async def _abandon(self, group: _Group, error: BaseException) -> None:
        """Fail the group whose connection is in an unknown state (the lock is held)."""
        if self._group is group:
            self._group = None
        _terminate(group.conn)
        await self._pool.release(group.conn)
        group.end(error)

    def _pass_on(self) -> None:
        """A unit ended (the lock is held): commit the open group unless a unit is queued to join it and it
        has room; the lock goes to the commit, else it is released."""
        group = self._group
        if group is None or (self._waiting and group.units < self._max):
            self._lock.release()
            return
        self._group = None
        self._spawn(self._commit_and_release(group))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _commit_and_release(self, group: _Group) -> None:
        try:
            await self._commit(group)
        finally:
            self._lock.release()

    async def _commit(self, group: _Group) -> None:
        """COMMIT the group (the lock is held, the group no longer open); its units learn how it went."""
        error: BaseException | None = None
        try:
            try:
                with unavailable_as_error():
                    status = await group.conn.execute("COMMIT")
                if status != "COMMIT":  # a unit left the transaction failed: PostgreSQL rolled it all back
                    raise RuntimeError(f"the group's transaction ended with {status}, not COMMIT")
            except BaseException as exc:  # noqa: BLE001 -- every unit of the group gets it
                error = exc  # the COMMIT may have landed or not (cut off): unknown, so not acknowledged
                await _rollback(group.conn)
            finally:
                await self._pool.release(group.conn)
        finally:
            if error is None:
                self.commits += 1
                self.units += group.units
            group.end(error)
        if isinstance(error, asyncio.CancelledError):
            raise error

    def _flush_if_abandoned(self) -> None:
        """A unit gave up waiting: if the open group was left open for it, commit it anyway."""
        if self._group is not None and self._waiting == 0:

            async def flush() -> None:
                async with self._lock:
                    group = self._group
                    if group is not None and self._waiting == 0:
                        self._group = None
                        await self._commit(group)

            self._spawn(flush())

    async def _begin(self) -> Conn:
        """A pooled connection inside a write transaction that holds the writers' lock."""
        for attempt in (1, 2):
            with unavailable_as_error():
                conn = await self._pool.acquire(timeout=self._budget)
            try:
                await conn.execute(q.BEGIN_WRITE)
            except BaseException as exc:
                if is_unavailable(exc):
                    _terminate(conn)  # its state is unknown (cut mid-operation): the pool opens a new one
                else:
                    await _rollback(conn)
                await self._pool.release(conn)
                # a pooled connection the server dropped (restart): BEGIN did not run, try one fresh one
                if attempt == 1 and is_unavailable(exc) and not isinstance(exc, TimeoutError):
                    continue
                if is_unavailable(exc):
                    raise DatabaseUnavailableError() from exc
                raise
            return conn
        raise AssertionError("unreachable")  # pragma: no cover

    async def close(self) -> None:
        """Wait for the commits in flight and commit a group still open (the pool is closed by its owner)."""
        async with self._lock:
            group, self._group = self._group, None
            if group is not None:
                await self._commit(group)


def unit_error(error: BaseException) -> BaseException:
    """What a unit of a failed group raises: the database's failure as `DatabaseUnavailableError` (a new one
    for each unit), anything else (a bug) as it is."""
    if isinstance(error, DatabaseUnavailableError | asyncio.CancelledError) or is_unavailable(error):
        unavailable = DatabaseUnavailableError()
        unavailable.__cause__ = error
        return unavailable
    return error


def _terminate(conn: Conn) -> None:
    """Close a connection whose protocol state is unknown, unless it already went back to its pool."""
    with contextlib.suppress(asyncpg.InterfaceError):  # a pooled connection that died went back by itself
        conn.terminate()


async def _rollback(conn: Conn) -> None:
    """End the connection's transaction, if it still has one; a connection that cannot is closed (the
    pool then replaces it), never handed to the next user mid-transaction."""
    try:
        if conn.is_closed() or not conn.is_in_transaction():
            return
    except asyncpg.InterfaceError:  # a pooled connection that died went back to its pool by itself
        return
    try:
        await conn.execute("ROLLBACK")
    except Exception:  # noqa: BLE001 -- the error that brought us here is the one to report
        conn.terminate()
    except BaseException:  # cancelled while rolling back
        conn.terminate()
        raise
