"""ACL secrets at rest on PostgreSQL: the PostgreSQL form of test_acl's
`test_the_database_holds_no_secret_in_clear`, which reads the SQLite file (issue 13: the API suite
also on PostgreSQL). Every row of every table of the cluster's database, as text, holds no token
secret; the tokens table holds SHA-256 hashes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from peering.app import create_app, open_runtime
from peering.settings import Settings
from tests.test_acl import MANAGEMENT_SECRET, Acl, Clock

pytestmark = pytest.mark.anyio


@pytest.fixture
async def acl(tmp_path: Path, postgres: str) -> AsyncIterator[Acl]:
    """As test_acl's `acl` (ACLs on, default deny, a management token), on the PostgreSQL database."""
    settings = Settings(
        data_dir=tmp_path / "acl",
        http_addr="127.0.0.1:0",
        peering_addr="127.0.0.1:0",
        acl_enabled=True,
        acl_default_policy="deny",
        acl_initial_management_token=MANAGEMENT_SECRET,
        database_url=postgres,
    )
    clock = Clock()
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False, clock=clock) as rt:
        yield Acl(rt, clock, create_app(rt))


async def every_row_as_text(dsn: str) -> list[str]:
    """Each row of each table in the public schema, as PostgreSQL prints it."""
    conn = await asyncpg.connect(dsn)
    try:
        tables = await conn.fetch(
            "SELECT quote_ident(table_name) AS name FROM information_schema.tables "
            "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
        )
        rows: list[str] = []
        for table in tables:
            rows += [r[0] for r in await conn.fetch(f"SELECT t::text FROM {table['name']} t")]  # noqa: S608
        return rows
    finally:
        await conn.close()


async def test_the_database_holds_no_secret_in_clear(acl: Acl, postgres: str) -> None:
    await acl.policy("w", 'peering = "write"')
    created = await acl.token("w")
    chosen = "2f6a3c4d-1111-4222-8333-944455556666"
    await acl.token("w", SecretID=chosen)
    rows = await every_row_as_text(postgres)
    assert len(rows) > 4  # the tokens, the policy, the counter, the cluster's identity...
    assert [row for row in rows if created["AccessorID"] in row]  # the tokens' rows are in what is searched
    for secret in (MANAGEMENT_SECRET, created["SecretID"], chosen):
        assert not [row for row in rows if secret in row]
    conn = await asyncpg.connect(postgres)
    try:
        hashes = [row[0] for row in await conn.fetch("SELECT secret_hash FROM acl_tokens")]
    finally:
        await conn.close()
    assert len(hashes) == 4  # with the anonymous token's
    assert all(len(h) == 64 for h in hashes)
