"""Shared fixtures: a clean environment, real SQLite in tmp dirs, one app per test."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from peering.app import Runtime, create_app, open_runtime
from peering.settings import Settings
from tests.postgres import PostgresMissingError, PostgresServer, running_server

ADVERTISE = "127.0.0.1:8503"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # aiosqlite is asyncio-only


@pytest.fixture(autouse=True)
def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PEERING_*, CONSUL_* or proxy variable from the outside leaks into a test."""
    for key in list(os.environ):
        if key.startswith(("PEERING_", "CONSUL_")) or key.lower().endswith("_proxy"):
            monkeypatch.delenv(key)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0")


@pytest.fixture
async def runtime(settings: Settings) -> AsyncIterator[Runtime]:
    # no background work: tests drive heartbeats and removals themselves
    async with open_runtime(settings, advertise_addresses=[ADVERTISE], background=False) as rt:
        yield rt


@pytest.fixture
async def client(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
        yield c


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One throwaway PostgreSQL server for the session (tests/postgres.py). Without one installed the
    test is skipped, except in CI (CI=true), where that is a failure: a green run must not hide it."""
    try:
        with running_server() as server:
            yield server
    except PostgresMissingError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


@pytest.fixture
def postgres(postgres_server: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh, empty database on the session's server, dropped after the test."""
    dsn = postgres_server.create_database()
    yield dsn
    postgres_server.drop_database(dsn)
