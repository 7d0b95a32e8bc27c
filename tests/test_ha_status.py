"""`/v1/status/leader` and `/v1/status/peers` (SPEC §15), and the replica parts behind them, in process."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from peering.app import Runtime, create_app, open_runtime
from peering.errors import LeaseLostError
from peering.identity import load_or_create
from peering.replica import joined
from peering.service import TokenRequest
from peering.settings import Settings
from peering.store.base import Fence
from peering.store.open import open_database
from peering.store.postgres.cluster_schema import connect, create_tables
from peering.store.postgres.lease import PostgresLeadership
from tests.conftest import ADVERTISE
from tests.test_store import acceptor

pytestmark = pytest.mark.anyio


async def test_with_sqlite_this_process_is_the_leader_and_the_only_peer(client: httpx.AsyncClient) -> None:
    leader = await client.get("/v1/status/leader")
    assert (leader.status_code, leader.json(), leader.headers["X-Consul-KnownLeader"]) == (200, ADVERTISE, "true")
    peers = await client.get("/v1/status/peers")
    assert (peers.status_code, peers.json()) == (200, [ADVERTISE])


async def test_with_replicas_the_lease_holder_leads_and_every_live_replica_is_a_peer(
    runtime: Runtime, tmp_path: Path, postgres: str
) -> None:
    async def idle() -> None:
        await asyncio.Event().wait()

    settings = [
        Settings(data_dir=tmp_path / name, database_url=SecretStr(postgres), lease_ttl=1.0) for name in ("r1", "r2")
    ]
    async with (
        open_database(postgres, settings[0].data_dir) as db1,
        open_database(postgres, settings[1].data_dir) as db2,
        joined(db1, settings[0], load_or_create(settings[0].data_dir, "dc1"), "127.0.0.1:1001") as one,
        joined(db2, settings[1], load_or_create(settings[1].data_dir, "dc1"), "127.0.0.1:1002") as two,
    ):
        assert one.identity.cluster_id == two.identity.cluster_id  # the first replica's identity is the cluster's
        assert one.identity.ca_pem == two.identity.ca_pem
        app = create_app(runtime)
        app.state.replica = two
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            nobody = await http.get("/v1/status/leader")
            assert (nobody.json(), nobody.headers["X-Consul-KnownLeader"]) == ("", "false")
            holding = asyncio.create_task(one.leadership.hold(idle))
            try:
                for _ in range(200):
                    if (await http.get("/v1/status/leader")).json() == "127.0.0.1:1001":
                        break
                    await asyncio.sleep(0.02)
                leader = await http.get("/v1/status/leader")
                assert (leader.json(), leader.headers["X-Consul-KnownLeader"]) == ("127.0.0.1:1001", "true")
                assert one.leadership.valid()
                assert not two.leadership.valid()
            finally:
                holding.cancel()
                await asyncio.gather(holding, return_exceptions=True)
            # released at once on the way out: nobody leads until another replica takes it
            assert (await http.get("/v1/status/leader")).json() == ""
            for _ in range(200):
                if len(two.addresses) == 2:
                    break
                await asyncio.sleep(0.02)
            peers = await http.get("/v1/status/peers")
            assert peers.json() == ["127.0.0.1:1001", "127.0.0.1:1002"]


async def test_a_unit_fenced_with_a_lost_lease_writes_nothing(tmp_path: Path, postgres: str) -> None:
    async def idle() -> None:
        await asyncio.Event().wait()

    async def holding(leadership: PostgresLeadership) -> asyncio.Task[None]:
        task = asyncio.create_task(leadership.hold(idle))
        for _ in range(200):
            if leadership.valid():
                return task
            await asyncio.sleep(0.02)
        raise AssertionError("the lease was never taken")

    async with open_database(postgres, tmp_path) as db:
        conn = await connect(postgres, 5.0)
        try:
            await create_tables(conn)
        finally:
            await conn.close()
        first, second = (PostgresLeadership(postgres, name, name, ttl=1.0) for name in ("first", "second"))
        task = await holding(first)
        stale = first.fence()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)  # released on the way out
        task = await holding(second)

        async def late_write() -> None:
            async with db.store.transaction() as tx:
                await tx.fence(stale)
                await tx.save(acceptor("p1", "late"))

        try:
            assert second.fence().epoch > stale.epoch
            with pytest.raises(LeaseLostError):
                await late_write()
            assert await db.store.get_by_id("p1") is None
            async with db.store.transaction() as tx:
                await tx.fence(second.fence())
                await tx.save(acceptor("p1", "owner"))
            assert await db.store.get_by_id("p1") is not None
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


async def test_a_removal_fenced_with_a_lease_nobody_holds_removes_nothing(tmp_path: Path, postgres: str) -> None:
    """The link keeper's removals are fenced: a replica that lost the lease cannot remove a peering."""
    settings = Settings(data_dir=tmp_path / "r1", database_url=SecretStr(postgres), lease_ttl=1.0)
    async with open_runtime(settings, advertise_addresses=[ADVERTISE], background=False) as runtime:
        assert runtime.replica is not None
        service = runtime.service
        await service.generate_token(TokenRequest("gone"))
        await service.delete(None, "gone")  # nobody to tell: due for removal at once
        lost = Fence("background", "a-replica-that-lost-it", 1)
        with pytest.raises(LeaseLostError):
            await service.remove_due(lost)
        assert await runtime.cluster.store.get("default", "gone") is not None
        leadership = runtime.replica.leadership
        assert isinstance(leadership, PostgresLeadership)

        async def idle() -> None:
            await asyncio.Event().wait()

        holding = asyncio.create_task(leadership.hold(idle))
        try:
            for _ in range(200):
                if leadership.valid():
                    break
                await asyncio.sleep(0.02)
            assert await service.remove_due(leadership.fence()) == 1
        finally:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
        assert await runtime.cluster.store.get("default", "gone") is None
