"""SQLite's catalog, config entry and replication tables (same file, units of work and index counter as the
peerings): the shared SQL (`store/catalog_sql.py`, `store/config_sql.py`) bound to SQLite's connections.

Reads run on the reader connection inside one read transaction (one snapshot per read method); writes run
in the unit of work on the writer, as `store/acl_sqlite.py` does for the ACLs.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any

import aiosqlite

from peering.store.catalog_sql import Bump, CatalogSqlReads, Snapshot
from peering.store.catalog_writes import CatalogSqlWrites
from peering.store.config_sql import ConfigSqlReads, ConfigSqlWrites, ReplicationSqlReads, ReplicationSqlWrites
from peering.store.inline_writer import InlineWriter
from peering.store.schema import timestamp


class _Sql:
    """`catalog_sql.Sql` over one SQLite connection (the writer, or the reader inside its snapshot)."""

    def __init__(self, conn: InlineWriter | aiosqlite.Connection) -> None:
        self._conn = conn

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Sequence[Any]]:
        return list(await self._conn.execute_fetchall(sql, params))

    def time(self, moment: datetime) -> Any:
        return timestamp(moment)


def reader_snapshot(reader: aiosqlite.Connection, lock: asyncio.Lock) -> Snapshot:
    """Read snapshots on the reader connection (serialised by the store's read lock)."""

    @asynccontextmanager
    async def snapshot() -> AsyncIterator[_Sql]:
        async with lock:
            try:
                # BEGIN inside the try: a read cancelled while it waits for BEGIN (a client leaving a blocking
                # query) still ends the transaction, else every later read fails inside it
                await reader.execute("BEGIN")
                yield _Sql(reader)
            finally:
                await reader.execute("COMMIT")

    return snapshot


class SqliteCatalogReads(CatalogSqlReads):
    """`SqliteStore.catalog` (see `store.base.CatalogReads`)."""


class SqliteConfigReads(ConfigSqlReads):
    """`SqliteStore.config` (see `store.base.ConfigReads`)."""


class SqliteReplicationReads(ReplicationSqlReads):
    """`SqliteStore.replication` (see `store.base.ReplicationReads`)."""


class SqliteCatalogWrites(CatalogSqlWrites):
    """`SqliteTransaction.catalog`: the unit's writer connection and index."""

    def __init__(self, conn: InlineWriter, bump: Bump) -> None:
        super().__init__(_Sql(conn), bump)


class SqliteConfigWrites(ConfigSqlWrites):
    """`SqliteTransaction.config`: the unit's writer connection and index."""

    def __init__(self, conn: InlineWriter, bump: Bump) -> None:
        super().__init__(_Sql(conn), bump)


class SqliteReplicationWrites(ReplicationSqlWrites):
    """`SqliteTransaction.replication`: the unit's writer connection (no index)."""

    def __init__(self, conn: InlineWriter) -> None:
        super().__init__(_Sql(conn))
