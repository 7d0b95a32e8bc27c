"""The cluster identity kept in the database, so that N replicas are one cluster (SPEC §15).

What is shared is what makes the cluster: its ID and its CA (certificate and key). Each replica signs
its own server certificate with that CA at start (peers trust the CA, not one certificate), so the
server key never has to leave the replica that made it.

The first replica's identity wins: each replica offers its own with `INSERT … ON CONFLICT DO NOTHING`
and then reads the row back, so two replicas starting at the same moment still end up with one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from peering.store.postgres.errors import unavailable_as_error


@dataclass(frozen=True)
class SharedIdentity:
    """The parts of the identity every replica of a cluster must share."""

    cluster_id: str
    ca_pem: str
    ca_key_pem: str = field(repr=False)


async def adopt(conn: asyncpg.Connection, offered: SharedIdentity) -> SharedIdentity:
    """Store `offered` unless an identity is stored already; return the stored one.

    Raises:
        DatabaseUnavailableError: the database cannot be reached.
    """
    with unavailable_as_error():
        await conn.execute(
            "INSERT INTO cluster_identity (id, cluster_id, ca_pem, ca_key_pem) VALUES (1, $1, $2, $3) "
            "ON CONFLICT (id) DO NOTHING",
            offered.cluster_id,
            offered.ca_pem,
            offered.ca_key_pem,
        )
        row = await conn.fetchrow("SELECT cluster_id, ca_pem, ca_key_pem FROM cluster_identity WHERE id = 1")
    if row is None:  # inserted above or before: only a concurrent DELETE by hand gets here
        raise RuntimeError("the cluster identity vanished from the database")
    return SharedIdentity(row["cluster_id"], row["ca_pem"], row["ca_key_pem"])
