"""The tables several replicas share besides the data (SPEC §15), and the dedicated connections to them.

- `leases`: who owns the background work (`lease.py`), in database time, with a fencing epoch;
- `replicas`: every replica's peering address and when it was last seen (`replicas.py`);
- `cluster_identity`: the cluster ID and CA, created once by the first replica (`identity.py`);
- `liveness`: the last heartbeat of each link, seen by whichever replica the peer reached (`liveness.py`).

They are created with `IF NOT EXISTS` under a transaction-scoped advisory lock (replicas starting
together would otherwise race on the catalog), beside the data schema of `schema.py`, which they do
not touch: none of them carries an index, so none of their writes bumps the counter.

The replica modules each hold one connection of their own, outside the store's pool: the LISTEN
connection must stay one session, and the lease must be renewable while the pool is exhausted.
"""

from __future__ import annotations

import asyncpg

from peering.store.postgres.errors import unavailable_as_error

CLUSTER_LOCK = 0x70656573  # any fixed number, distinct from schema.MIGRATION_LOCK

DDL = """
CREATE TABLE IF NOT EXISTS leases (
    name text PRIMARY KEY,
    holder text NOT NULL,
    holder_addr text NOT NULL DEFAULT '',
    epoch bigint NOT NULL,
    expires_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS replicas (
    replica_id text PRIMARY KEY,
    peering_addr text NOT NULL,
    seen_at timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS cluster_identity (
    id integer PRIMARY KEY CHECK (id = 1),
    cluster_id text NOT NULL,
    ca_pem text NOT NULL,
    ca_key_pem text NOT NULL
);
CREATE TABLE IF NOT EXISTS liveness (
    peering_id text PRIMARY KEY,
    last_heartbeat timestamptz NOT NULL,  -- the wall clock of the replica that saw it (shown to clients)
    heard_at timestamptz NOT NULL  -- database time it was recorded: silences are counted from this
);
"""


async def connect(dsn: str, budget: float) -> asyncpg.Connection:
    """One connection of its own, every statement bounded by `budget` seconds.

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    with unavailable_as_error():
        return await asyncpg.connect(
            dsn, timeout=budget, command_timeout=budget, server_settings={"application_name": "peering-replica"}
        )


async def create_tables(conn: asyncpg.Connection) -> None:
    """Create the shared tables if they are missing (one replica at a time)."""
    with unavailable_as_error():
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", CLUSTER_LOCK)
            await conn.execute(DDL)
