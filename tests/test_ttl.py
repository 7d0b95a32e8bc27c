"""The TTL timer (SPEC §13): an unrenewed TTL check turns `critical` by itself, from its stored deadline,
also across a restart of the process, and with PostgreSQL only under the lease. Real SQLite and PostgreSQL;
the restart test runs real `peering serve` processes."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from peering.app import Runtime, create_app, open_runtime
from peering.catalog.ttl import TtlTimer
from peering.cluster import utcnow
from peering.errors import LeaseLostError
from peering.settings import Settings
from peering.store.base import Fence
from tests.cluster import running_cluster
from tests.test_acl import Clock
from tests.test_catalog_api import put

pytestmark = pytest.mark.anyio


async def agent_checks(client: httpx.AsyncClient) -> dict[str, Any]:
    return dict((await client.get("/v1/agent/checks")).json())


class Manual:
    """A cluster on a clock the test moves, so each expiry is decided, not waited for."""

    def __init__(self, runtime: Runtime, clock: Clock, client: httpx.AsyncClient) -> None:
        self.runtime, self.clock, self.client = runtime, clock, client
        self.timer = TtlTimer(runtime.cluster)

    def advance(self, seconds: float) -> None:
        self.clock.now += timedelta(seconds=seconds)


@pytest.fixture
async def manual(tmp_path: Path) -> AsyncIterator[Manual]:
    clock = Clock()
    settings = Settings(data_dir=tmp_path / "data", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0")
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False, clock=clock) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield Manual(runtime, clock, client)


async def test_an_unrenewed_check_expires_at_its_deadline_and_not_before(manual: Manual) -> None:
    body = {"Name": "api", "Checks": [{"CheckID": "a", "TTL": "10s", "Status": "passing"},
                                      {"CheckID": "b", "TTL": "20s", "Status": "passing"}]}  # fmt: skip
    assert (await put(manual.client, "/v1/agent/service/register", body)).status_code == 200
    assert await manual.runtime.cluster.store.catalog.next_deadline() == manual.clock.now + timedelta(seconds=10)
    manual.advance(9.9)
    assert await manual.timer.expire_due() == 0
    manual.advance(0.1)  # the deadline itself is due
    assert await manual.timer.expire_due() == 1
    found = await agent_checks(manual.client)
    assert (found["a"]["Status"], found["a"]["Output"]) == ("critical", "TTL expired")
    assert found["b"]["Status"] == "passing"
    assert await manual.timer.expire_due() == 0  # critical already: nothing more to do
    assert await manual.runtime.cluster.store.catalog.next_deadline() == manual.clock.now + timedelta(seconds=10)


async def test_renewing_moves_the_deadline_and_expiry_keeps_the_last_output(manual: Manual) -> None:
    body = {"Name": "api", "Check": {"TTL": "10s"}}
    assert (await put(manual.client, "/v1/agent/service/register", body)).status_code == 200
    manual.advance(8)
    await manual.client.put("/v1/agent/check/pass/service:api?note=all good")
    manual.advance(8)  # 16 s after registration, 8 s after the renewal
    assert await manual.timer.expire_due() == 0
    assert (await agent_checks(manual.client))["service:api"]["Status"] == "passing"
    manual.advance(2)
    assert await manual.timer.expire_due() == 1
    check = (await agent_checks(manual.client))["service:api"]
    assert check["Output"] == "TTL expired (last output before timeout follows): all good"
    await manual.client.put("/v1/agent/check/pass/service:api")  # a renewal brings it back
    assert (await agent_checks(manual.client))["service:api"]["Status"] == "passing"


async def test_catalog_checks_and_maintenance_never_expire(manual: Manual) -> None:
    await put(manual.client, "/v1/catalog/register", {"Node": "n1", "Address": "a", "Check": {"CheckID": "c",
              "Status": "passing", "Type": "ttl"}})  # fmt: skip
    await put(manual.client, "/v1/agent/service/register", {"Name": "api", "Check": {"TTL": "1s", "Status": "passing"}})
    await manual.client.put("/v1/agent/service/maintenance/api?enable=true")
    manual.advance(3600)
    assert await manual.timer.expire_due() == 1  # the agent's TTL check only
    [catalog_check] = (await manual.client.get("/v1/health/state/passing")).json()
    assert catalog_check["CheckID"] == "c"
    assert (await agent_checks(manual.client))["_service_maintenance:api"]["Type"] == "maintenance"


async def test_the_running_timer_wakes_for_the_deadline_and_for_a_write(
    runtime: Runtime, client: httpx.AsyncClient
) -> None:
    """The real timer task, on the wall clock: a 0.3 s TTL turns critical by itself; a blocking query
    sees it (no sleep in the test); a check registered while the timer sleeps is picked up."""
    timer = asyncio.create_task(TtlTimer(runtime.cluster).run())
    try:
        body = {"Name": "api", "Check": {"TTL": "0.3s", "Status": "passing"}}
        assert (await put(client, "/v1/agent/service/register", body)).status_code == 200
        first = await client.get("/v1/health/checks/api")
        assert first.json()[0]["Status"] == "passing"
        index = first.headers["X-Consul-Index"]
        async with asyncio.timeout(10):
            woken = await client.get(f"/v1/health/checks/api?index={index}&wait=10s")
        assert [(c["Status"], c["Output"]) for c in woken.json()] == [("critical", "TTL expired")]
        body = {"Name": "db", "Check": {"TTL": "300ms", "Status": "warning"}}
        assert (await put(client, "/v1/agent/service/register", body)).status_code == 200
        index = (await client.get("/v1/health/checks/db")).headers["X-Consul-Index"]
        async with asyncio.timeout(10):
            woken = await client.get(f"/v1/health/checks/db?index={index}&wait=10s")
        assert woken.json()[0]["Status"] == "critical"
    finally:
        timer.cancel()
        await asyncio.gather(timer, return_exceptions=True)


def await_check(url: str, service: str, status: str, within: float = 10.0) -> dict[str, Any]:
    """The one check of `service` once it has `status`, waiting with blocking queries (bounded)."""
    deadline, index = time.monotonic() + within, "0"
    while True:
        left = deadline - time.monotonic()
        assert left > 0, f"{service}'s check did not turn {status} within {within} s"
        response = httpx.get(f"{url}/v1/health/checks/{service}?index={index}&wait={left:.3f}s", timeout=left + 5)
        [check] = response.json()
        if check["Status"] == status:
            return dict(check)
        index = response.headers["X-Consul-Index"]


def test_a_check_expires_from_its_stored_deadline_across_a_restart(tmp_path: Path) -> None:
    """A real process registers a 0.5 s TTL check and is killed at once (kill -9: no timer could run);
    the next process over the same data dir finds the deadline passed and turns the check critical by
    itself, then keeps timing the renewed check."""
    data = tmp_path / "data"
    with running_cluster(data, "--node-name", "box-1") as first:
        body = {"Name": "api", "Check": {"CheckID": "api-ttl", "TTL": "500ms", "Status": "passing"}}
        assert httpx.put(f"{first.http_url}/v1/agent/service/register", json=body, timeout=5).status_code == 200
        first.stop(signal.SIGKILL)
    with running_cluster(data, "--node-name", "box-1") as second:
        url = second.http_url
        check = await_check(url, "api", "critical")
        assert (check["Output"], check["Node"]) == ("TTL expired", "box-1")
        assert httpx.put(f"{url}/v1/agent/check/pass/api-ttl?note=back", timeout=5).status_code == 200
        again = await_check(url, "api", "critical")
        assert again["Output"] == "TTL expired (last output before timeout follows): back"
        logged = time.monotonic() + 5  # the log lines come through a reader thread, just after the commit
        while sum("TTL check expired: now critical" in line for line in second.lines) < 2:
            assert time.monotonic() < logged, "the two expiries were not logged"
            time.sleep(0.01)


async def test_on_postgresql_the_lease_holder_expires_and_nobody_else(tmp_path: Path, postgres: str) -> None:
    """With PostgreSQL the timer is background work: the replica holding the lease expires a 0.3 s check
    (awaited with a blocking query); a timer fenced with a lease it does not hold writes nothing."""
    settings = Settings(data_dir=tmp_path / "pg", database_url=SecretStr(postgres))
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=True) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            stray = TtlTimer(runtime.cluster, lambda: Fence("background", "another-replica", 1))
            body = {"Name": "api", "Check": {"TTL": "300ms", "Status": "passing"}}
            assert (await put(client, "/v1/agent/service/register", body)).status_code == 200
            first = await client.get("/v1/health/checks/api")
            async with asyncio.timeout(15):
                woken = await client.get(f"/v1/health/checks/api?index={first.headers['X-Consul-Index']}&wait=10s")
            assert [(c["Status"], c["Output"]) for c in woken.json()] == [("critical", "TTL expired")]
            await client.put("/v1/agent/check/pass/service:api")
            runtime.cluster.now = lambda: utcnow() + timedelta(seconds=5)  # overdue for the stray timer too
            with pytest.raises(LeaseLostError):
                await stray.expire_due()
