"""What is particular to the PostgreSQL store: its schema, replicas starting together, and outages
(a stopped or restarted server gives `DatabaseUnavailableError` quickly, then everything resumes)."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from peering.acl_model import Policy
from peering.api.errors import install
from peering.domain import Peering, PeeringState, Role
from peering.errors import DatabaseUnavailableError, InvalidRequestError
from peering.store.postgres.acl import PostgresAclStore
from peering.store.postgres.errors import is_unavailable, unavailable_as_error
from peering.store.postgres.schema import MIGRATIONS
from peering.store.postgres.store import PostgresStore
from tests.postgres import PostgresServer, free_port, reap_orphans, running

pytestmark = pytest.mark.anyio
ROOT = Path(__file__).resolve().parent.parent


def acceptor(pid: str, name: str) -> Peering:
    return Peering(pid, name, "default", Role.ACCEPTOR, PeeringState.INITIAL)


async def test_schema_version_and_a_newer_one_refused(postgres: str) -> None:
    s = await PostgresStore.open(postgres)
    await s.close()
    conn = await asyncpg.connect(postgres)
    try:
        assert await conn.fetchval("SELECT version FROM schema_version") == len(MIGRATIONS)
        assert await conn.fetchval("SHOW fsync") == "on"
        await conn.execute("UPDATE schema_version SET version = version + 1")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="newer than this program"):
        await PostgresStore.open(postgres)


async def test_replicas_starting_together_create_the_schema_once(postgres: str) -> None:
    stores = await asyncio.gather(*(PostgresStore.open(postgres) for _ in range(3)))
    for s in stores:
        assert await s.current_index() == 1
        await s.close()


async def test_text_postgresql_cannot_hold_is_refused_as_invalid(postgres: str) -> None:
    """A NUL or a lone surrogate cannot be PostgreSQL text: refused (400), never a driver error (500)."""
    s = await PostgresStore.open(postgres)
    acl = PostgresAclStore(s)
    try:
        for bad in ("pem\x00", "pem\ud800"):
            with pytest.raises(InvalidRequestError, match="cannot be stored"):
                async with s.transaction() as tx:
                    await tx.save(replace(acceptor("1", "a"), peer_ca_pems=(bad,)))
            for planned in (replace(acceptor("1", "a"), peer_ca_pems=(bad,)), acceptor("1", f"a{bad}")):
                with pytest.raises(InvalidRequestError, match="cannot be stored"):
                    await s.save_acceptor(planned, "hash", expected=None)
            with pytest.raises(InvalidRequestError, match="cannot be stored"):
                await acl.save_policy(Policy("p1", "readers", bad, ""))
            assert await s.get("default", f"a{bad}") is None
            assert await acl.token(bad) is None
            assert await acl.token_by_secret(bad) is None
            assert not await acl.delete_token(bad)
            assert not await acl.delete_policy(bad)
        assert await s.current_index() == 1
        await acl.save_policy(Policy("p1", "readers", "", ""))
        assert [p.id for p in await acl.policies(["p1", "p1\x00"])] == ["p1"]
    finally:
        await s.close()


async def test_opening_an_unreachable_database_is_unavailable() -> None:
    dead = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"  # nobody listens there
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailableError, match=r"^database unavailable$"):
        await PostgresStore.open(dead, budget=2)
    assert time.monotonic() - began < 2.5


# -- outages: the session's server is stopped and restarted (always started again before the next test)


@pytest.fixture
async def outage_store(postgres_server: PostgresServer) -> AsyncIterator[tuple[PostgresServer, PostgresStore]]:
    if postgres_server.bindir is None:
        pytest.skip("an external server (PEERING_TEST_PG_DSN) is not ours to stop")
    dsn = postgres_server.create_database()
    store = await PostgresStore.open(dsn, budget=2)
    try:
        yield postgres_server, store
    finally:
        await store.close()
        postgres_server.start()  # a failed test may have left it stopped
        postgres_server.drop_database(dsn)


async def _write(store: PostgresStore, pid: str) -> None:
    async with store.transaction() as tx:
        await tx.save(acceptor(pid, f"n{pid}"))


async def test_a_stopped_server_answers_unavailable_quickly_and_then_resumes(
    outage_store: tuple[PostgresServer, PostgresStore],
) -> None:
    server, store = outage_store
    await _write(store, "1")
    server.stop_server()
    began = time.monotonic()
    with pytest.raises(DatabaseUnavailableError):
        await store.get_by_id("1")
    with pytest.raises(DatabaseUnavailableError):
        await store.list_peerings("default")
    with pytest.raises(DatabaseUnavailableError):
        await _write(store, "2")
    tokens = await asyncio.gather(  # token generations queued together: each refused, none left waiting
        *(store.save_acceptor(acceptor(f"t{i}", f"t{i}"), "hash", expected=None) for i in range(3)),
        return_exceptions=True,
    )
    assert all(isinstance(t, DatabaseUnavailableError) for t in tokens), tokens
    assert time.monotonic() - began < 3  # refused connections fail at once, well within the 2 s budget
    server.start()
    assert (await store.get_by_id("1")) is not None  # the acknowledged write is there
    assert await store.get_by_id("2") is None  # the refused ones are not
    assert await store.get_by_id("t0") is None
    await _write(store, "2")
    assert await store.save_acceptor(acceptor("t0", "t0"), "hash", expected=None) is not None
    assert [p.id for p in (await store.list_peerings("default"))[0]] == ["1", "2", "t0"]


async def test_a_restart_between_requests_goes_unnoticed(outage_store: tuple[PostgresServer, PostgresStore]) -> None:
    """Pooled connections the restart cut off are replaced on their next use, for reads and writes."""
    server, store = outage_store
    await asyncio.gather(*(store.get_by_id(str(i)) for i in range(4)))  # several pooled connections
    await _write(store, "1")
    server.restart()
    assert await store.get_by_id("1") is not None
    server.restart()
    await _write(store, "2")
    assert await store.current_index() == 3


async def test_a_restart_inside_a_transaction_writes_nothing(
    outage_store: tuple[PostgresServer, PostgresStore],
) -> None:
    server, store = outage_store

    async def cut_off() -> None:
        async with store.transaction() as tx:
            await tx.save(acceptor("1", "a"))
            server.restart()  # a fast shutdown: our session (and its open transaction) is gone
            await tx.save(acceptor("2", "b"))

    with pytest.raises(DatabaseUnavailableError):
        await cut_off()
    assert await store.every_peering() == []
    assert await store.current_index() == 1


async def test_unavailable_is_a_503_with_its_text() -> None:
    app = FastAPI()
    install(app)

    @app.get("/v1/peerings")
    async def down() -> None:
        raise DatabaseUnavailableError()

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as c:
        response = await c.get("/v1/peerings")
    assert (response.status_code, response.text) == (503, "database unavailable")
    assert response.headers["content-type"].startswith("text/plain")


@pytest.mark.slow
def test_the_server_of_a_killed_session_is_reaped_by_the_next(postgres_server: PostgresServer) -> None:
    """A test session killed with -9 runs no finalizer: the next session stops its server and removes it."""
    code = (
        "import sys, time\n"
        "from tests.postgres import PostgresServer\n"
        "s = PostgresServer.start_new()\n"
        "print(s.pid, s.root, flush=True)\n"
        "time.sleep(120)\n"
    )
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=ROOT) as session:
        try:
            assert session.stdout is not None
            pid_text, root_text = session.stdout.readline().split()
        finally:
            session.kill()
    root = Path(root_text)
    assert root.is_dir()
    reap_orphans()
    assert not root.exists()
    assert not running(int(pid_text))


async def test_a_connection_left_mid_operation_is_unavailable_not_a_bug(postgres: str) -> None:
    """What a restart leaves in a pooled connection (an operation still in progress, a broken client
    protocol state, a server not yet accepting) is `unavailable` (a 503), never a 500."""
    conn = await asyncpg.connect(postgres)
    try:
        sleeping = asyncio.ensure_future(conn.execute("SELECT pg_sleep(0.3)"))
        await asyncio.sleep(0)  # the statement is sent: the connection is mid-operation
        with pytest.raises(asyncpg.InterfaceError) as caught:
            await conn.execute("BEGIN")
        await sleeping
    finally:
        await conn.close()
    assert is_unavailable(caught.value)
    assert is_unavailable(asyncpg.InternalClientError("waiter is not done while handling critical protocol error"))
    assert is_unavailable(asyncpg.CannotConnectNowError("the database system is starting up"))
    assert not is_unavailable(asyncpg.InterfaceError("the server expects 2 arguments for this query, 1 was passed"))
    with pytest.raises(DatabaseUnavailableError), unavailable_as_error():
        raise caught.value
