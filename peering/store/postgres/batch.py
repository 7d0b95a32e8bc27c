"""Token generations of one replica saved together: one statement for every one that is waiting.

`PostgresStore.save_acceptor` is a unit of work that one statement can do, atomic by itself. Instead of
one round trip each, with the writers' lock held across every one of them, the
calls that arrive while one is in flight queue up here, and one task sends them all as one statement
(`batch_sql.SAVE_ACCEPTORS`: an array per column, each unit saved in order in an exception block of its own)
when it holds the group's lock; that statement is a unit of its group without a savepoint (`group.py`).
Python prepares the next requests while PostgreSQL runs the batch and its COMMIT.

Each caller gets its own element's row, once the group's COMMIT is done; if the statement or the COMMIT
fails, every caller of the batch gets `DatabaseUnavailableError` (or, for a bug, the error itself) and
nothing of the batch is acknowledged. A caller cancelled before its element was taken is left out of
the batch; once taken, the element is saved or not with the others (the caller no longer waits to know).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

import asyncpg

from peering.store.postgres import batch_sql
from peering.store.postgres.errors import unavailable_as_error
from peering.store.postgres.group import GroupCommit, unit_error

MAX_BATCH = 256  # elements in one statement at most


class _Waiting:
    __slots__ = ("answer", "args")

    def __init__(self, args: Sequence[object], answer: asyncio.Future[asyncpg.Record]) -> None:
        self.args = args
        self.answer = answer


class AcceptorBatch:
    """The queue of `save_acceptor` calls of one replica and the task that saves them (see the module
    docstring)."""

    def __init__(self, group: GroupCommit, *, max_batch: int = MAX_BATCH) -> None:
        self._group = group
        self._max = max(1, max_batch)
        self._queue: deque[_Waiting] = deque()
        self._task: asyncio.Task[None] | None = None
        self.statements = 0  # batches sent (tests, metrics)

    async def save(self, args: Sequence[object]) -> asyncpg.Record:
        """The row `save_acceptor()` answered for these parameters (`batch_sql.save_acceptor_args`), once its
        COMMIT is done.

        Raises:
            DatabaseUnavailableError: the statement or its COMMIT failed (nothing of it acknowledged).
        """
        answer: asyncio.Future[asyncpg.Record] = asyncio.get_running_loop().create_future()
        self._queue.append(_Waiting(args, answer))
        if self._task is None:
            self._task = asyncio.ensure_future(self._drain())
        return await answer

    async def _drain(self) -> None:
        """Save what is queued, a batch per statement, until nothing is."""
        try:
            while self._queue:
                await self._one_batch()
        finally:
            self._task = None

    async def _one_batch(self) -> None:
        batch: list[_Waiting] = []
        try:
            async with self._group.unit(savepoint=False) as conn:
                # taken with the lock held: everything that queued while it was waited for goes too
                while self._queue and len(batch) < self._max:
                    waiting = self._queue.popleft()
                    if not waiting.answer.done():  # a caller cancelled meanwhile: nothing of it is written
                        batch.append(waiting)
                if not batch:
                    return
                columns = [list(column) for column in zip(*(w.args for w in batch), strict=True)]
                with unavailable_as_error():
                    rows = await conn.fetch(batch_sql.SAVE_ACCEPTORS, *columns)
                self.statements += 1
            if len(rows) != len(batch):
                raise RuntimeError(f"save_acceptors() answered {len(rows)} rows for {len(batch)} elements")
        except BaseException as exc:  # every caller of the batch gets it
            if not batch:  # the group could not be entered (the database is down): those it would have taken
                batch = [self._queue.popleft() for _ in range(min(self._max, len(self._queue)))]
            for waiting in batch:
                _fail(waiting.answer, exc)
            if not isinstance(exc, Exception):
                for waiting in self._queue:  # the task is cancelled (the loop is closing): nobody saves these
                    _fail(waiting.answer, exc)
                self._queue.clear()
                raise
            return
        for waiting, row in zip(batch, rows, strict=True):
            if not waiting.answer.done():
                waiting.answer.set_result(row)

    async def close(self) -> None:
        """Wait for the batch in flight and those still queued."""
        task = self._task
        if task is not None:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)


def _fail(answer: asyncio.Future[asyncpg.Record], error: BaseException) -> None:
    """Fail one caller of a failed batch as a unit of a failed group fails (`group.unit_error`)."""
    if not answer.done():
        answer.set_exception(unit_error(error))
