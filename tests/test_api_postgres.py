"""The client API suite (tests/test_api.py) again, on PostgreSQL (issue 13: "the API suite also on
PostgreSQL"): the same tests, unchanged, with the runtime opened on a fresh database of the session's
throwaway server (`--database-url`) instead of the SQLite file. Every shape, header and exact message
must be the same on both backends.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from peering.settings import Settings
from tests import test_api as api_suite

# collected here too (pytest collects the test functions a module holds, wherever they were defined)
SUITE = {name: test for name, test in vars(api_suite).items() if name.startswith("test_") and callable(test)}
globals().update(SUITE)

pytestmark = pytest.mark.anyio


@pytest.fixture
def settings(tmp_path: Path, postgres: str) -> Settings:
    """As conftest's `settings`, on the PostgreSQL database `postgres` (nothing in the data dir but keys)."""
    return Settings(
        data_dir=tmp_path / "data", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0", database_url=postgres
    )


async def test_status_leader_answers_the_peering_address(client: httpx.AsyncClient) -> None:
    """On PostgreSQL the leader is the replica holding the background lease (README, "Running several
    replicas"); this runtime runs no background work, so nobody holds it: Consul's answer for no leader."""
    response = await client.get("/v1/status/leader")
    assert response.status_code == 200
    assert response.json() == ""
    assert response.headers["X-Consul-KnownLeader"] == "false"
    assert int(response.headers["X-Consul-Index"]) >= 1


def test_the_suite_is_all_here() -> None:
    """Every test of tests/test_api.py runs here too (a new one there is not forgotten)."""
    here = {name for name, test in globals().items() if name.startswith("test_") and callable(test)}
    assert here - {"test_the_suite_is_all_here"} == set(SUITE)
    assert len(SUITE) >= 20
