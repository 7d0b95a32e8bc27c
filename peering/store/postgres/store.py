"""PostgreSQL implementation of the peering store (asyncpg; the SQL is in `queries.py`).

A pool of connections. Each write transaction holds the counter row's lock from its BEGIN to its
COMMIT (see `queries.py`), so writers across every replica are serialised exactly as SQLite's single
writer is, and what the protocol promises holds unchanged. The units of work of one replica that
queue up meanwhile share the next transaction, a savepoint each (`group.py`, as SQLite's groups);
token generations that queue up are one statement of such a group (`batch.py`). A unit returns only
after its group's COMMIT, so an answered write is a durable one (`synchronous_commit` on, the server's
default).

Failures to reach the database come out as `DatabaseUnavailableError` (`errors.py`), within a time
budget: connecting, waiting for a pooled connection and every statement are bounded by `budget`.
A read that finds its pooled connection dead (the server restarted) is retried once on a new one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeAlias

import asyncpg

from peering.domain import Peering
from peering.errors import (
    ConstraintError,
    DatabaseUnavailableError,
    LeaseLostError,
    NameTakenError,
    RemoteClusterTakenError,
)
from peering.store.base import Change, Changes, Fence, Secrets
from peering.store.postgres import batch_sql
from peering.store.postgres import catalog as c
from peering.store.postgres import queries as q
from peering.store.postgres.acl import PostgresAclReads, PostgresAclWrites
from peering.store.postgres.batch import AcceptorBatch
from peering.store.postgres.errors import is_unavailable, unavailable_as_error, unstorable, unstorable_error
from peering.store.postgres.group import MAX_UNITS, GroupCommit
from peering.store.postgres.rows import from_row, to_args
from peering.store.postgres.rows import utc as _utc
from peering.store.postgres.schema import migrate

log = logging.getLogger("peering.store")

Record = asyncpg.Record
# a connection of our own (migrations) or one lent by the pool
Conn: TypeAlias = "asyncpg.Connection[Record] | asyncpg.pool.PoolConnectionProxy[Record]"


class _Connection(asyncpg.Connection):
    """A pooled connection released without asyncpg's reset statement (one round trip per use saved):
    the store never leaves session state behind (no SET, LISTEN, cursors or advisory locks), and it
    ends every transaction itself before the release."""

    def get_reset_query(self) -> str:
        return ""


def _changed(status: str) -> int:
    """The row count of a command status such as `UPDATE 1` or `INSERT 0 1`."""
    return int(status.rsplit(" ", 1)[-1])


class PostgresTransaction:
    """A write transaction on one pooled connection (see `store.base.Transaction`)."""

    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self._index: int | None = None
        self._acl = PostgresAclWrites(self)
        # the catalog part of the unit (store/postgres/catalog.py): on its connection, with its index
        self.catalog = c.PostgresCatalogWrites(conn, self.bump)
        self.config = c.PostgresConfigWrites(conn, self.bump)
        self.replication = c.PostgresReplicationWrites(conn)

    @property
    def acl(self) -> PostgresAclWrites:
        return self._acl

    @property
    def wrote(self) -> bool:
        return self._index is not None

    @property
    def index(self) -> int:
        if self._index is None:
            raise RuntimeError("the transaction has not written yet")
        return self._index

    async def bump(self) -> int:
        """The transaction's index, taken from the counter on first use."""
        if self._index is None:
            value = await self.fetchval(q.BUMP)
            if value is None:
                raise RuntimeError("the index counter row is missing: the database is damaged")
            self._index = int(value)
        return self._index

    async def fence(self, fence: Fence) -> None:
        """Refuse the unit unless `fence`'s lease is still held as taken (the row stays locked to the commit).

        Raises:
            LeaseLostError: it expired or another replica holds it now.
        """
        if await self.fetchval(q.FENCE, fence.lease, fence.holder, fence.epoch) is None:
            raise LeaseLostError()

    async def execute(self, sql: str, *args: Any) -> str:
        """Run one statement; its command status (unique violations pass through for the caller).

        Raises:
            InvalidRequestError: a value is text PostgreSQL cannot hold (see `errors.unstorable`).
        """
        if unstorable(args):
            raise unstorable_error()
        with unavailable_as_error():
            return await self.conn.execute(sql, *args)

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        """The rows of a query (none when a key is text no row can hold)."""
        if unstorable(args):
            return []
        with unavailable_as_error():
            return await self.conn.fetch(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        """The first value of a query (None when a key is text no row can hold)."""
        if unstorable(args):
            return None
        with unavailable_as_error():
            return await self.conn.fetchval(sql, *args)

    async def _one(self, sql: str, *args: Any) -> Peering | None:
        rows = await self.fetch(sql, *args)
        return from_row(rows[0]) if rows else None

    async def get(self, partition: str, name: str) -> Peering | None:
        return await self._one(q.GET, partition, name)

    async def get_by_id(self, peering_id: str) -> Peering | None:
        return await self._one(q.GET_BY_ID, peering_id)

    async def save(self, peering: Peering) -> Peering:
        args = q.save_args(self._index, to_args(peering))  # create_index 0: a new row (the function sets it)
        if unstorable(args):
            raise unstorable_error()
        # one round trip: the index (bumped if the unit had none), and the save undone on a unique violation
        # (as SQLite's statement rollback), the transaction still usable
        rows = await self.fetch(q.SAVE, *args)
        index, violated = int(rows[0][0]), rows[0][1]
        self._index = index
        # a stored peering was read with its create_index (an update never changes the column)
        saved = replace(peering, create_index=peering.create_index or index, modify_index=index)
        if violated is not None:
            raise await self._conflict(saved, violated)
        return saved

    async def _conflict(self, peering: Peering, violated: str) -> ConstraintError:
        """The typed error for the unique index PostgreSQL named (the service words it)."""
        if violated != "peerings_by_remote_cluster":
            return NameTakenError("peering", peering.name)
        # the holder's name, for the message: the unit of work is serialised, so it is the one that blocked
        holder = await self.fetchval(q.HOLDER_OF_CLUSTER, peering.partition, peering.remote_cluster, peering.id)
        return RemoteClusterTakenError(peering.partition, peering.remote_cluster, holder or "")

    async def remove(self, peering_id: str) -> None:
        if await self.fetchval(q.EXISTS, peering_id) is not None:
            await self.execute(q.REMOVE, peering_id, await self.bump())

    async def secrets(self, peering_id: str) -> Secrets:
        rows = await self.fetch(q.SECRETS, peering_id)
        return Secrets(*rows[0]) if rows else Secrets()

    async def set_secrets(self, peering_id: str, secrets: Secrets) -> None:
        await self.execute(
            q.SET_SECRETS, peering_id, secrets.establishment_hash, secrets.stream_hash, secrets.stream_secret
        )

    async def set_establishment_hash(self, peering_id: str, secret_hash: str | None) -> None:
        await self.execute(q.SET_ESTABLISHMENT_HASH, peering_id, secret_hash)

    async def set_stream_hash(self, peering_id: str, secret_hash: str) -> None:
        await self.execute(q.SET_STREAM_HASH, peering_id, secret_hash)

    async def consume_establishment_secret(self, peering_id: str, secret_hash: str) -> bool:
        if unstorable((peering_id, secret_hash)):
            return False  # a key no row holds: nothing to consume
        return _changed(await self.execute(q.CONSUME_ESTABLISHMENT_SECRET, peering_id, secret_hash)) == 1

    async def schedule_removal(self, peering_id: str, at: datetime) -> None:
        if not unstorable((peering_id,)):
            await self.execute(q.SCHEDULE_REMOVAL, peering_id, _utc(at))


class PostgresStore:
    """The shared store of several replicas: one PostgreSQL database (15 or newer)."""

    def __init__(self, pool: asyncpg.Pool, budget: float, *, group_units: int = MAX_UNITS) -> None:
        self._pool = pool
        self._budget = budget
        self.group = GroupCommit(pool, budget, max_units=group_units)
        self.acceptors = AcceptorBatch(self.group)  # token generations, saved a batch per statement
        self._acl = PostgresAclReads(self.fetch)
        snapshot = c.pool_snapshot(pool, budget)  # the catalog part's reads (store/postgres/catalog.py)
        self.catalog = c.PostgresCatalogReads(snapshot)
        self.config = c.PostgresConfigReads(snapshot)
        self.replication = c.PostgresReplicationReads(snapshot)

    @property
    def acl(self) -> PostgresAclReads:
        return self._acl

    @classmethod
    async def open(
        cls,
        dsn: str,
        *,
        budget: float = 5.0,
        max_connections: int = 10,
        idle_in_transaction_timeout: float = 10.0,
        group_units: int = MAX_UNITS,
    ) -> PostgresStore:
        """Connect to `dsn` (`postgresql://…`) and create or migrate the schema.

        `idle_in_transaction_timeout` lets the server end the session of a replica that stalls inside a
        write transaction (frozen, partitioned), which would otherwise hold every writer's lock.
        `group_units` bounds how many units of work one transaction holds (`group.py`).

        Raises:
            DatabaseUnavailableError: the database cannot be reached.
            RuntimeError: its schema is newer than this program.
        """
        settings = {
            "application_name": "peering",
            "idle_in_transaction_session_timeout": str(int(idle_in_transaction_timeout * 1000)),
        }
        with unavailable_as_error():
            pool = await asyncpg.create_pool(
                dsn,
                min_size=1,
                max_size=max_connections,
                timeout=budget,
                command_timeout=budget,
                server_settings=settings,
                connection_class=_Connection,
            )
        try:
            with unavailable_as_error():
                async with pool.acquire(timeout=budget) as conn:
                    await migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        return cls(pool, budget, group_units=group_units)

    async def close(self) -> None:
        """Close every connection (waiting for those in use at most `budget` seconds)."""
        try:
            async with asyncio.timeout(self._budget):
                await self.acceptors.close()
                await self.group.close()
                await self._pool.close()
        except TimeoutError:
            self._pool.terminate()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """A write transaction, committed in a group with the units queued behind it (`group.py`); it returns
        only once that COMMIT is done.

        Raises:
            DatabaseUnavailableError: the database failed it; nothing is acknowledged (a COMMIT that was cut
                off may still have landed, as with any database: callers must not assume either way).
        """
        async with self.group.unit() as conn:
            yield PostgresTransaction(conn)

    async def save_acceptor(self, peering: Peering, secret_hash: str, *, expected: Peering | None) -> Peering | None:
        """Saved with the calls waiting beside it, one statement for them all (`batch.py`); see `store.base.Store`."""
        columns = to_args(peering)
        if unstorable((secret_hash, *columns)):  # before the lists become JSON text (which would hide a NUL)
            raise unstorable_error()
        row = await self.acceptors.save(
            batch_sql.save_acceptor_args(expected.modify_index if expected else 0, secret_hash, columns)
        )
        index, violated, holder = row
        if violated == "peerings_by_remote_cluster":
            raise RemoteClusterTakenError(peering.partition, peering.remote_cluster, holder or "")
        if violated is not None:
            raise NameTakenError("peering", peering.name)
        if index is None:
            return None  # the row changed since the caller read it: nothing written
        return replace(peering, create_index=peering.create_index or int(index), modify_index=int(index))

    async def fetch(self, sql: str, *args: Any) -> list[Record]:
        """The rows of one statement outside a transaction (retried once on a dead pooled connection); none
        when a key is text no row can hold."""
        if unstorable(args):
            return []
        for attempt in (1, 2):
            try:
                async with self._pool.acquire(timeout=self._budget) as conn:
                    return await conn.fetch(sql, *args)
            except BaseException as exc:
                if not is_unavailable(exc):
                    raise
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise DatabaseUnavailableError() from exc
        raise AssertionError("unreachable")  # pragma: no cover

    async def _peerings(self, sql: str, *args: Any) -> list[Peering]:
        return [from_row(row) for row in await self.fetch(sql, *args)]

    async def _one(self, sql: str, *args: Any) -> Peering | None:
        found = await self._peerings(sql, *args)
        return found[0] if found else None

    async def get(self, partition: str, name: str) -> Peering | None:
        return await self._one(q.GET, partition, name)

    async def get_by_id(self, peering_id: str) -> Peering | None:
        return await self._one(q.GET_BY_ID, peering_id)

    async def list_peerings(self, partition: str) -> tuple[list[Peering], int]:
        rows = await self.fetch(q.LIST, partition)
        peerings = [from_row(tuple(row)[1:]) for row in rows if row[1] is not None]
        index = max(1, int(rows[0][0])) if rows else 1  # a row at least (the LEFT JOIN's), but for unstorable keys
        return peerings, max([index, *(p.modify_index for p in peerings)])

    async def partition_index(self, partition: str) -> int:
        rows = await self.fetch(q.PARTITION_INDEX, partition)
        return max(1, int(rows[0][0])) if rows else 1

    async def current_index(self) -> int:
        rows = await self.fetch(q.CURRENT_INDEX)
        return max(1, int(rows[0][0])) if rows else 1

    async def due_removals(self, now: datetime) -> list[Peering]:
        return await self._peerings(q.DUE_REMOVALS, _utc(now))

    async def awaiting_notice(self, now: datetime) -> list[Peering]:
        return await self._peerings(q.AWAITING_NOTICE, _utc(now))

    async def every_peering(self) -> list[Peering]:
        return await self._peerings(q.EVERY_PEERING)

    async def live_links(self) -> list[Peering]:
        return await self._peerings(q.LIVE_LINKS)

    async def terminated(self) -> list[Peering]:
        return await self._peerings(q.TERMINATED)

    async def secrets(self, peering_id: str) -> Secrets:
        rows = await self.fetch(q.SECRETS, peering_id)
        return Secrets(*rows[0]) if rows else Secrets()

    async def changes_since(self, since: int, limit: int = 1000) -> Changes:
        rows = await self.fetch(q.CHANGES, since, max(1, limit) - 1)
        head, entries = rows[0], rows[1:]  # the header row sorts first (seq 0; identities start at 1)
        changes = [Change(int(r[0]), r[1], r[2], bool(r[3])) for r in entries]
        index = changes[-1].index if head[6] and changes else max(1, int(head[4]))
        return Changes(changes, index, int(head[5]))

    async def reap_changes(self, before_index: int) -> int:
        async with self.transaction() as tx:  # a unit that takes no index: no data changed
            reaped = _changed(await tx.execute(q.REAP_CHANGES, before_index))
            await tx.execute(q.RAISE_HORIZON, before_index)
        return reaped
