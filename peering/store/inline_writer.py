"""SQLite's writer connection, used from the event loop itself.

A write transaction is a handful of small statements (tens of microseconds each). Sending each to a
worker thread and back, as aiosqlite does, costs far more than running it, and writers wait for each
other: so the statements run inline, and only what waits for the disk or for another process's lock
(`BEGIN IMMEDIATE`, `COMMIT` and its fsync) goes to a thread. Callers serialise use (`GroupCommit`).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class InlineWriter:
    """The async face of a plain `sqlite3` connection, with the same calls as aiosqlite's."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    @classmethod
    async def connect(cls, path: Path) -> InlineWriter:
        """Open `path` in WAL mode with `synchronous=FULL` (each COMMIT is durable)."""

        def open_db() -> sqlite3.Connection:
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for pragma in ("journal_mode = WAL", "synchronous = FULL", "foreign_keys = ON", "busy_timeout = 5000"):
                db.execute(f"PRAGMA {pragma}")
            return db

        return cls(await asyncio.to_thread(open_db))

    async def execute(self, sql: str, parameters: Iterable[Any] = ()) -> sqlite3.Cursor:
        """Run one statement inline; BEGIN and COMMIT (which may wait) in a thread."""
        if sql.startswith(("BEGIN", "COMMIT")):
            return await asyncio.to_thread(self._db.execute, sql, tuple(parameters))
        return self._db.execute(sql, tuple(parameters))

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] = ()) -> list[Any]:
        """Run a query inline and return its rows."""
        return self._db.execute(sql, tuple(parameters)).fetchall()

    async def executescript(self, script: str) -> None:
        """Run a script (migrations) in a thread."""
        await asyncio.to_thread(self._db.executescript, script)

    async def close(self) -> None:
        """Close the connection (checkpointing the WAL), in a thread."""
        await asyncio.to_thread(self._db.close)
