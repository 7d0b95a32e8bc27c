"""The lease's own connection is closed with the replica (a socket to PostgreSQL was left open otherwise).

`/v1/status/leader` reads the lease holder on the lease's connection, which only `hold()`'s exit used to
close: a replica that never ran the background work (`background=False`, or stopped before the
read) left that connection open, and its socket was collected unclosed in a later test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from peering.identity import load_or_create
from peering.replica import joined
from peering.settings import Settings
from peering.store.open import open_database
from peering.store.postgres.lease import PostgresLeadership

pytestmark = pytest.mark.anyio


async def test_leaving_the_cluster_closes_the_connection_a_leader_read_opened(tmp_path: Path, postgres: str) -> None:
    settings = Settings(data_dir=tmp_path / "r1", database_url=SecretStr(postgres), lease_ttl=1.0)
    async with (
        open_database(postgres, settings.data_dir) as db,
        joined(db, settings, load_or_create(settings.data_dir, "dc1"), "127.0.0.1:1001") as replica,
    ):
        leadership = replica.leadership
        assert isinstance(leadership, PostgresLeadership)
        assert await replica.leader_address() == ""  # nobody holds the lease: read on a connection of its own
        conn = leadership._conn
        assert conn is not None
        assert not conn.is_closed()
    assert conn.is_closed()
    assert leadership._conn is None


async def test_a_closed_lease_opens_no_new_connection(postgres: str) -> None:
    leadership = PostgresLeadership(postgres, "one", "127.0.0.1:1001", ttl=1.0)
    await leadership.aclose()
    assert await leadership.owner_address() == ""  # an unknown owner, as during an outage
    assert leadership._conn is None
    await leadership.aclose()  # idempotent
