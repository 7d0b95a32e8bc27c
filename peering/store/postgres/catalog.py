"""PostgreSQL's catalog, config entry and replication tables (same database, units of work and index counter
as the peerings): the shared SQL (`store/catalog_sql.py`, `store/config_sql.py`) bound to asyncpg.

`?` parameters become `$n`. Writes run on the unit of work's connection, whose counter-row lock (taken at
its BEGIN) serialises them with every other unit of the cluster; reads outside a unit run in a
REPEATABLE READ, read-only transaction, so that one read method's statements see one snapshot.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, cast

import asyncpg

from peering.store.catalog_sql import Bump, CatalogSqlReads, Snapshot
from peering.store.catalog_writes import CatalogSqlWrites
from peering.store.config_sql import ConfigSqlReads, ConfigSqlWrites, ReplicationSqlReads, ReplicationSqlWrites
from peering.store.postgres.errors import unavailable_as_error, unstorable, unstorable_error
from peering.store.postgres.rows import utc

if TYPE_CHECKING:
    from peering.store.postgres.store import Conn


@lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """`sql` with its `?` parameters numbered as PostgreSQL's `$1, $2, …` (no `?` appears otherwise)."""
    count = iter(range(1, sql.count("?") + 1))
    return re.sub(r"\?", lambda _: f"${next(count)}", sql)


class _Sql:
    """`catalog_sql.Sql` over one asyncpg connection."""

    def __init__(self, conn: Conn) -> None:
        self._conn = conn

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Sequence[Any]]:
        if unstorable(params):
            # a key no row can hold finds nothing; a value no row can hold is refused
            if sql.lstrip().startswith("SELECT"):
                return []
            raise unstorable_error()
        with unavailable_as_error():
            return cast(list[Sequence[Any]], await self._conn.fetch(numbered(sql), *params))

    def time(self, moment: datetime) -> Any:
        return utc(moment)


def pool_snapshot(pool: asyncpg.Pool, budget: float) -> Snapshot:
    """Read snapshots on pooled connections (REPEATABLE READ, read-only)."""

    @asynccontextmanager
    async def snapshot() -> AsyncIterator[_Sql]:
        with unavailable_as_error():
            conn = await pool.acquire(timeout=budget)
        try:
            with unavailable_as_error():
                await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            try:
                yield _Sql(conn)
            finally:
                if not conn.is_closed() and conn.is_in_transaction():
                    with unavailable_as_error():
                        await conn.execute("ROLLBACK")  # read only: nothing to commit
        finally:
            await pool.release(conn)

    return snapshot


class PostgresCatalogReads(CatalogSqlReads):
    """`PostgresStore.catalog` (see `store.base.CatalogReads`)."""


class PostgresConfigReads(ConfigSqlReads):
    """`PostgresStore.config` (see `store.base.ConfigReads`)."""


class PostgresReplicationReads(ReplicationSqlReads):
    """`PostgresStore.replication` (see `store.base.ReplicationReads`)."""


class PostgresCatalogWrites(CatalogSqlWrites):
    """`PostgresTransaction.catalog`: the unit's connection and index."""

    def __init__(self, conn: Conn, bump: Bump) -> None:
        super().__init__(_Sql(conn), bump)


class PostgresConfigWrites(ConfigSqlWrites):
    """`PostgresTransaction.config`: the unit's connection and index."""

    def __init__(self, conn: Conn, bump: Bump) -> None:
        super().__init__(_Sql(conn), bump)


class PostgresReplicationWrites(ReplicationSqlWrites):
    """`PostgresTransaction.replication`: the unit's connection (no index)."""

    def __init__(self, conn: Conn) -> None:
        super().__init__(_Sql(conn))
