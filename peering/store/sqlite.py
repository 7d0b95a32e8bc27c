"""SQLite implementation of the store (the only module that knows SQL or aiosqlite).

Two connections: one writer, used from the event loop (`inline_writer.py`), whose transactions are
serialised and committed in groups (`group_commit.py`), and one reader (aiosqlite), which in WAL
mode sees only committed data.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import aiosqlite

from peering.domain import Peering
from peering.errors import ConstraintError, NameTakenError, RemoteClusterTakenError
from peering.store.acl_sqlite import SqliteAclReads, SqliteAclWrites
from peering.store.base import Change, Changes, Fence, Secrets
from peering.store.group_commit import GroupCommit
from peering.store.inline_writer import InlineWriter
from peering.store.schema import MIGRATIONS, timestamp
from peering.store.sqlite_catalog import (
    SqliteCatalogReads,
    SqliteCatalogWrites,
    SqliteConfigReads,
    SqliteConfigWrites,
    SqliteReplicationReads,
    SqliteReplicationWrites,
    reader_snapshot,
)
from peering.store.sqlite_rows import COLUMNS as _COLUMNS
from peering.store.sqlite_rows import from_row as _from_row
from peering.store.sqlite_rows import to_row as _to_row


async def _connect(path: Path) -> aiosqlite.Connection:
    conn = await aiosqlite.connect(path, isolation_level=None)
    await conn.execute("PRAGMA journal_mode = WAL")
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute("PRAGMA busy_timeout = 5000")
    return conn


class SqliteTransaction:
    """A write transaction on the writer connection (see `store.base.Transaction`)."""

    def __init__(self, conn: InlineWriter) -> None:
        self._conn = conn
        self._index: int | None = None

    # the other kinds' writers are made on first use: most units write peerings only
    @cached_property
    def acl(self) -> SqliteAclWrites:
        return SqliteAclWrites(self._conn, self.bump)

    @cached_property
    def catalog(self) -> SqliteCatalogWrites:
        return SqliteCatalogWrites(self._conn, self.bump)

    @cached_property
    def config(self) -> SqliteConfigWrites:
        return SqliteConfigWrites(self._conn, self.bump)

    @cached_property
    def replication(self) -> SqliteReplicationWrites:
        return SqliteReplicationWrites(self._conn)

    @property
    def wrote(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> int:
        if self._index is None:
            raise RuntimeError("the transaction has not written yet")
        return self._index

    async def bump(self) -> int:
        """The transaction's index, taken from the counter on first use (the partitions' indexes follow by
        triggers, schema 3)."""
        if self._index is None:
            rows = list(
                await self._conn.execute_fetchall("UPDATE counter SET value = value + 1 WHERE id = 1 RETURNING value")
            )
            row = rows[0] if rows else None
            if row is None:
                raise RuntimeError("the index counter row is missing: the database is damaged")
            self._index = int(row[0])
        return self._index

    async def fence(self, fence: Fence) -> None:
        """Nothing to check: one process holds SQLite's file (its lock in `server/lock.py`), so its lease."""

    async def get(self, partition: str, name: str) -> Peering | None:
        return await _fetch_one(
            self._conn,
            f"SELECT {_COLUMNS} FROM peerings WHERE partition = ? AND lower(name) = lower(?)",
            (partition, name),
        )

    async def get_by_id(self, peering_id: str) -> Peering | None:
        return await _fetch_one(self._conn, f"SELECT {_COLUMNS} FROM peerings WHERE id = ?", (peering_id,))

    async def save(self, peering: Peering) -> Peering:
        index = await self.bump()
        # a stored peering was read with its create_index (an update never changes the column)
        saved = replace(peering, create_index=peering.create_index or index, modify_index=index)
        try:
            await self._conn.execute(
                f"INSERT INTO peerings ({_COLUMNS}) VALUES ({', '.join('?' * (_COLUMNS.count(',') + 1))}) "
                "ON CONFLICT (id) DO UPDATE SET partition = excluded.partition, name = excluded.name, "
                "role = excluded.role, state = excluded.state, meta = excluded.meta, "
                "deleted_at = excluded.deleted_at, peer_id = excluded.peer_id, peer_ca_pems = excluded.peer_ca_pems, "
                "peer_server_name = excluded.peer_server_name, peer_server_addresses = excluded.peer_server_addresses, "
                "remote_datacenter = excluded.remote_datacenter, remote_partition = excluded.remote_partition, "
                "remote_cluster = excluded.remote_cluster, imported_services = excluded.imported_services, "
                "exported_services = excluded.exported_services, modify_index = excluded.modify_index",
                _to_row(saved),
            )
        except sqlite3.IntegrityError as exc:
            raise await self._conflict(saved, exc) from exc
        return saved

    async def _conflict(self, peering: Peering, exc: sqlite3.IntegrityError) -> ConstraintError:
        """The typed error for the unique index SQLite names in `exc` (the service words it)."""
        if "remote_cluster" not in str(exc):  # "UNIQUE constraint failed: peerings.partition, peerings.remote_cluster"
            return NameTakenError("peering", peering.name)
        # the holder's name, for the message: the unit of work is serialised, so it is the one that blocked
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT name FROM peerings WHERE partition = ? AND remote_cluster = ? AND remote_cluster != '' "
                "AND state != 'TERMINATED' AND deleted_at IS NULL AND id != ?",
                (peering.partition, peering.remote_cluster, peering.id),
            )
        )
        return RemoteClusterTakenError(peering.partition, peering.remote_cluster, rows[0][0] if rows else "")

    async def remove(self, peering_id: str) -> None:
        existing = await self.get_by_id(peering_id)
        if existing is not None:
            await self.bump()
            await self._conn.execute("DELETE FROM peerings WHERE id = ?", (peering_id,))

    async def secrets(self, peering_id: str) -> Secrets:
        rows = list(
            await self._conn.execute_fetchall(
                "SELECT establishment_hash, stream_hash, stream_secret FROM secrets WHERE peering_id = ?", (peering_id,)
            )
        )
        return Secrets(*rows[0]) if rows else Secrets()

    async def set_secrets(self, peering_id: str, secrets: Secrets) -> None:
        await self._conn.execute(
            "INSERT INTO secrets (peering_id, establishment_hash, stream_hash, stream_secret) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (peering_id) DO UPDATE SET establishment_hash = excluded.establishment_hash, "
            "stream_hash = excluded.stream_hash, stream_secret = excluded.stream_secret",
            (peering_id, secrets.establishment_hash, secrets.stream_hash, secrets.stream_secret),
        )

    async def set_establishment_hash(self, peering_id: str, secret_hash: str | None) -> None:
        await self._conn.execute(
            "INSERT INTO secrets (peering_id, establishment_hash) VALUES (?, ?) "
            "ON CONFLICT (peering_id) DO UPDATE SET establishment_hash = excluded.establishment_hash",
            (peering_id, secret_hash),
        )

    async def set_stream_hash(self, peering_id: str, secret_hash: str) -> None:
        await self._conn.execute(
            "INSERT INTO secrets (peering_id, stream_hash) VALUES (?, ?) "
            "ON CONFLICT (peering_id) DO UPDATE SET stream_hash = excluded.stream_hash",
            (peering_id, secret_hash),
        )

    async def consume_establishment_secret(self, peering_id: str, secret_hash: str) -> bool:
        cursor = await self._conn.execute(
            "UPDATE secrets SET establishment_hash = NULL WHERE peering_id = ? AND establishment_hash = ?",
            (peering_id, secret_hash),
        )
        return cursor.rowcount == 1

    async def schedule_removal(self, peering_id: str, at: datetime) -> None:
        await self._conn.execute("UPDATE peerings SET remove_after = ? WHERE id = ?", (timestamp(at), peering_id))


async def _fetch_one(conn: InlineWriter | aiosqlite.Connection, sql: str, params: tuple[Any, ...]) -> Peering | None:
    # execute_fetchall is one round trip to the connection's thread; execute + fetchone + close are three
    rows = list(await conn.execute_fetchall(sql, params))
    return _from_row(rows[0]) if rows else None


class SqliteStore:
    """The embedded store: one SQLite file in the data dir, WAL, `synchronous=FULL`."""

    def __init__(self, writer: InlineWriter, reader: aiosqlite.Connection) -> None:
        self._writer = writer
        self._reader = reader
        self._group = GroupCommit(writer)
        self._read_lock = asyncio.Lock()
        self._acl = SqliteAclReads(self._rows)
        snapshot = reader_snapshot(reader, self._read_lock)
        self._catalog = SqliteCatalogReads(snapshot)
        self._config = SqliteConfigReads(snapshot)
        self._replication = SqliteReplicationReads(snapshot)

    @classmethod
    async def open(cls, path: Path) -> SqliteStore:
        """Open (creating and migrating as needed) the database at `path`."""
        # aiosqlite logs every statement with its bound values at DEBUG, secrets included: never let it
        logging.getLogger("aiosqlite").setLevel(logging.WARNING)
        # the file holds secrets: create it 0600 (SQLite gives its -wal and -shm files the same mode)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        os.chmod(path, 0o600)
        for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if leftover.exists():  # left by a crash (perhaps restored with a looser mode): SQLite reuses them as is
                os.chmod(leftover, 0o600)
        writer = await InlineWriter.connect(path)
        try:
            await _migrate(writer)
            reader = await _connect(path)
        except BaseException:
            await writer.close()
            raise
        return cls(writer, reader)

    async def close(self) -> None:
        """Close both connections (checkpointing the WAL)."""
        async with self._read_lock:
            await self._group.close()
            await self._reader.close()
            await self._writer.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTransaction]:
        """A write transaction; it returns only once its writes are durable (see `GroupCommit`)."""
        async with self._group.transaction() as conn:
            yield SqliteTransaction(conn)

    async def save_acceptor(self, peering: Peering, secret_hash: str, *, expected: Peering | None) -> Peering | None:
        async with self.transaction() as tx:
            current = await tx.get(peering.partition, peering.name)
            if _version(current) != _version(expected):
                return None  # changed since the caller read it: nothing written
            saved = await tx.save(peering)
            await tx.set_establishment_hash(saved.id, secret_hash)
        return saved

    async def _rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """The rows of a query on the reader (for the ACL reads)."""
        async with self._read_lock, self._reader.execute(sql, params) as cur:
            return list(await cur.fetchall())

    async def _peerings(self, where: str, params: tuple[Any, ...] = ()) -> list[Peering]:
        """The peerings a query's `WHERE ...` (or `ORDER BY ...`) clause picks, on the reader."""
        return [_from_row(row) for row in await self._rows(f"SELECT {_COLUMNS} FROM peerings {where}", params)]

    @property
    def acl(self) -> SqliteAclReads:
        return self._acl

    @property
    def catalog(self) -> SqliteCatalogReads:
        return self._catalog

    @property
    def config(self) -> SqliteConfigReads:
        return self._config

    @property
    def replication(self) -> SqliteReplicationReads:
        return self._replication

    async def get(self, partition: str, name: str) -> Peering | None:
        async with self._read_lock:
            return await _fetch_one(
                self._reader,
                f"SELECT {_COLUMNS} FROM peerings WHERE partition = ? AND lower(name) = lower(?)",
                (partition, name),
            )

    async def get_by_id(self, peering_id: str) -> Peering | None:
        async with self._read_lock:
            return await _fetch_one(self._reader, f"SELECT {_COLUMNS} FROM peerings WHERE id = ?", (peering_id,))

    async def list_peerings(self, partition: str) -> tuple[list[Peering], int]:
        # one read transaction: the index and the rows come from the same snapshot
        async with self._read_lock:
            try:  # BEGIN inside: a read cancelled while BEGIN is queued must still end its transaction
                await self._reader.execute("BEGIN")
                async with self._reader.execute(
                    f"SELECT {_COLUMNS} FROM peerings WHERE partition = ? ORDER BY lower(name)", (partition,)
                ) as cur:
                    peerings = [_from_row(row) for row in await cur.fetchall()]
                index = await self._partition_index(partition)
            finally:
                await self._reader.execute("COMMIT")
        return peerings, max([index, *(p.modify_index for p in peerings)])

    async def partition_index(self, partition: str) -> int:
        async with self._read_lock:
            return await self._partition_index(partition)

    async def _partition_index(self, partition: str) -> int:
        async with self._reader.execute("SELECT modify_index FROM partitions WHERE name = ?", (partition,)) as cur:
            row = await cur.fetchone()
        return max(1, int(row[0])) if row else 1

    async def current_index(self) -> int:
        async with self._read_lock, self._reader.execute("SELECT value FROM counter WHERE id = 1") as cur:
            row = await cur.fetchone()
        return max(1, int(row[0])) if row else 1

    async def awaiting_notice(self, now: datetime) -> list[Peering]:
        return await self._peerings("WHERE remove_after IS NOT NULL AND remove_after > ?", (timestamp(now),))

    async def every_peering(self) -> list[Peering]:
        return await self._peerings("ORDER BY partition, lower(name)")

    async def terminated(self) -> list[Peering]:
        return await self._peerings("WHERE state = 'TERMINATED'")

    async def live_links(self) -> list[Peering]:
        return await self._peerings(
            "WHERE deleted_at IS NULL AND state IN ('ACTIVE', 'FAILING') AND (role = 'dialer' OR remote_cluster != '')"
        )

    async def secrets(self, peering_id: str) -> Secrets:
        async with (
            self._read_lock,
            self._reader.execute(
                "SELECT establishment_hash, stream_hash, stream_secret FROM secrets WHERE peering_id = ?", (peering_id,)
            ) as cur,
        ):
            row = await cur.fetchone()
        return Secrets(*row) if row else Secrets()

    async def due_removals(self, now: datetime) -> list[Peering]:
        return await self._peerings("WHERE remove_after IS NOT NULL AND remove_after <= ?", (timestamp(now),))

    async def changes_since(self, since: int, limit: int = 1000) -> Changes:
        async with self._read_lock:
            try:  # one snapshot: the page, the counter and the horizon (BEGIN inside, as in list_peerings)
                await self._reader.execute("BEGIN")
                rows = list(await self._reader.execute_fetchall(_CHANGES, (since, max(1, limit) - 1, since)))
                counts = await self._reader.execute_fetchall(
                    "SELECT (SELECT value FROM counter WHERE id = 1), (SELECT value FROM change_horizon WHERE id = 1)"
                )
            finally:
                await self._reader.execute("COMMIT")
        changes = [Change(int(i), kind, key, bool(deleted)) for i, kind, key, deleted, _ in rows]
        current, horizon = (int(v) for v in next(iter(counts)))
        cut = bool(rows) and bool(next(iter(rows))[4])
        return Changes(changes, changes[-1].index if cut else max(1, current), horizon)

    async def reap_changes(self, before_index: int) -> int:
        async with self._group.transaction() as conn:  # a unit that takes no index: no data changed
            cursor = await conn.execute("DELETE FROM changes WHERE idx < ?", (before_index,))
            await conn.execute(
                "UPDATE change_horizon SET value = max(value, min(? - 1, (SELECT value FROM counter WHERE id = 1)))",
                (before_index,),
            )
        return int(cursor.rowcount)


# the page: every entry after $since up to the index of the limit-th one (whole units), or all of them;
# the last column says whether the page was cut there
_CHANGES = """
WITH cut AS (SELECT idx FROM changes WHERE idx > ? ORDER BY idx LIMIT 1 OFFSET ?)
SELECT idx, kind, key, deleted, (SELECT count(*) FROM cut) FROM changes
WHERE idx > ? AND idx <= coalesce((SELECT idx FROM cut), idx) ORDER BY idx, rowid
"""


async def _migrate(conn: InlineWriter) -> None:
    rows = await conn.execute_fetchall("PRAGMA user_version")
    version = int(rows[0][0]) if rows else 0
    if version > len(MIGRATIONS):
        raise RuntimeError(f"database schema version {version} is newer than this program ({len(MIGRATIONS)})")
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        await conn.executescript(f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {number};\nCOMMIT;")


def _version(peering: Peering | None) -> tuple[str, int] | None:
    """What `save_acceptor` compares: the row's ID and modify index."""
    return (peering.id, peering.modify_index) if peering is not None else None
