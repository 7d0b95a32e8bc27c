"""Two real clusters peering over real TLS on 127.0.0.1 (SPEC §3.2, §3.4, §5, §6, §7)."""

from __future__ import annotations

import base64
import json
import logging
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import httpx
import pytest

from peering.app import Runtime
from peering.server import listening
from peering.settings import Settings
from tests.postgres import BACKENDS, run_async

pytestmark = pytest.mark.anyio

HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT = 0.2, 1.0


class Node:
    """One running cluster and an HTTP client for its API."""

    def __init__(self, name: str, data: Path, datacenter: str, **settings: Any) -> None:
        self.name = name
        self.settings = settings  # extra `Settings` fields (ACLs)
        self.headers: dict[str, str] = {}  # sent with every API call (an ACL token)
        self.options: dict[str, Any] = {}  # extra `listening` options (a wall clock, a request timeout)
        self.data = data
        self.datacenter = datacenter
        self.http_addr = "127.0.0.1:0"
        self.peering_addr = "127.0.0.1:0"
        self.api: httpx.AsyncClient
        self.runtime: Runtime  # while started
        self._stack: AsyncExitStack | None = None

    async def start(self) -> None:
        settings = Settings(
            data_dir=self.data,
            datacenter=self.datacenter,
            http_addr=self.http_addr,
            peering_addr=self.peering_addr,
            heartbeat_interval=HEARTBEAT_INTERVAL,
            heartbeat_timeout=HEARTBEAT_TIMEOUT,
            **self.settings,
        )
        stack = AsyncExitStack()
        self.runtime, bound = await stack.enter_async_context(listening(settings, **self.options))
        # a restart keeps the same ports, as an operator's would
        self.http_addr, self.peering_addr = bound.http_addr, bound.peering_addr
        self.api = await stack.enter_async_context(
            httpx.AsyncClient(base_url=f"http://{bound.http_addr}", timeout=15, headers=self.headers)
        )
        self._stack = stack

    async def stop(self) -> None:
        assert self._stack is not None
        await self._stack.aclose()
        self._stack = None

    async def token(self, peer_name: str, **body: Any) -> str:
        response = await self.api.post("/v1/peering/token", json={"PeerName": peer_name, **body})
        assert response.status_code == 200, response.text
        return str(response.json()["PeeringToken"])

    async def establish(self, peer_name: str, token: str) -> httpx.Response:
        return await self.api.post("/v1/peering/establish", json={"PeerName": peer_name, "PeeringToken": token})

    async def read(self, name: str) -> dict[str, Any]:
        response = await self.api.get(f"/v1/peering/{name}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    async def wait_for(
        self, name: str, check: Callable[[httpx.Response], bool], timeout: float = 10.0
    ) -> httpx.Response:
        """Block (with blocking queries, bounded) until the read of `name` satisfies `check`."""
        index = "0"
        with anyio.fail_after(timeout):
            while True:
                response = await self.api.get(f"/v1/peering/{name}?index={index}&wait=2s")
                if check(response):
                    return response
                index = response.headers["X-Consul-Index"]


def state_is(state: str) -> Callable[[httpx.Response], bool]:
    return lambda r: r.status_code == 200 and r.json()["State"] == state


def gone(response: httpx.Response) -> bool:
    return response.status_code == 404


@asynccontextmanager
async def clusters(tmp_path: Path, **a_settings: Any) -> AsyncIterator[tuple[Node, Node]]:
    """Cluster A (dc1; `a_settings` are extra `Settings` fields, e.g. a `database_url`) and B (dc2)."""
    a, b = Node("a", tmp_path / "a", "dc1", **a_settings), Node("b", tmp_path / "b", "dc2")
    await a.start()
    await b.start()
    try:
        yield a, b
    finally:
        for node in (a, b):
            if node._stack is not None:
                await node.stop()


SECRETS = "SELECT establishment_hash, stream_hash, stream_secret FROM secrets"


async def _postgres_secrets(dsn: str) -> list[tuple[str | None, ...]]:
    conn = await asyncpg.connect(dsn)
    try:
        return [tuple(row) for row in await conn.fetch(SECRETS)]
    finally:
        await conn.close()


def _secrets_in(data: Path) -> list[str]:
    """Every secret a cluster stores (clear stream secrets on the dialer, hashes on the acceptor)."""
    with sqlite3.connect(data / "peering.db") as db:
        rows = db.execute(SECRETS).fetchall()
    return [value for row in rows for value in row if value]


def _secrets_of(node: Node) -> list[str]:
    """As `_secrets_in`, from the node's database: its SQLite file, or its PostgreSQL database."""
    dsn = node.settings.get("database_url")
    if not dsn:
        return _secrets_in(node.data)
    return [value for row in run_async(_postgres_secrets(dsn)) for value in row if value]


@pytest.fixture(params=BACKENDS)
def a_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Cluster A's backend: SQLite, or a fresh database on the session's PostgreSQL (issue 13: the
    two-cluster walk on PostgreSQL too)."""
    return {"database_url": request.getfixturevalue("postgres")} if request.param == "postgres" else {}


async def test_the_whole_walk(tmp_path: Path, caplog: pytest.LogCaptureFixture, a_settings: dict[str, Any]) -> None:
    """generate → check → establish → ACTIVE both sides → reuse 403 → failures and recovery both ways
    → delete on A terminates B → B re-establishes → delete on B terminates A; no secret is ever logged.
    A runs on SQLite, then on PostgreSQL."""
    caplog.set_level(logging.DEBUG)
    async with clusters(tmp_path, **a_settings) as (a, b):
        token = await a.token("cluster-b", Meta={"env": "prod"})

        check = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": token})
        assert check.status_code == 200
        assert check.json() == {
            "IsValid": True,
            "ErrorMessage": None,
            "RemoteServerName": "server.dc1.consul",
            "RemoteDatacenter": "dc1",
            "RemotePeerID": (await a.read("cluster-b"))["ID"],
            "RemoteServerVersion": check.json()["RemoteServerVersion"],
            "RemoteServerCompatVersion": "1",
        }
        assert (await a.read("cluster-b"))["State"] == "INITIAL"  # check changed nothing
        assert (await b.api.get("/v1/peerings")).json() == []

        response = await b.establish("cluster-a", token)
        assert (response.status_code, response.content) == (200, b"{}")
        secrets = [token, json.loads(base64.b64decode(token))["EstablishmentSecret"]]
        secrets += _secrets_of(a) + _secrets_of(b)
        assert len(secrets) >= 4
        on_a = (await a.wait_for("cluster-b", state_is("ACTIVE"))).json()
        on_b = await b.read("cluster-a")
        assert on_b["State"] == "ACTIVE"
        assert on_b["PeerID"] == on_a["ID"]
        assert on_b["PeerServerName"] == "server.dc1.consul"
        assert on_b["PeerServerAddresses"] == [a.peering_addr]
        assert on_b["PeerCAPems"] == [(a.data / "ca.pem").read_text()]
        assert on_b["Remote"] == {"Datacenter": "dc1", "Partition": "default"}
        assert on_a["Remote"] == {"Datacenter": "dc2", "Partition": "default"}
        assert "PeerID" not in on_a  # the acceptor side shows no peer fields
        assert on_b["StreamStatus"]["LastHeartbeat"] is not None
        assert on_a["StreamStatus"]["LastHeartbeat"] is not None

        reuse = await b.establish("cluster-a", token)
        assert reuse.status_code == 403
        assert reuse.text == "a new peering token must be generated: invalid peering establishment secret"
        stale = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": token})
        assert stale.json()["IsValid"] is False
        assert stale.json()["ErrorMessage"] == reuse.text

        # the acceptor goes away: the dialer fails within the timeout, and recovers when it is back
        await a.stop()
        await b.wait_for("cluster-a", state_is("FAILING"))
        await a.start()
        await b.wait_for("cluster-a", state_is("ACTIVE"))
        # the dialer goes away: the acceptor fails, and recovers when it is back
        await b.stop()
        await a.wait_for("cluster-b", state_is("FAILING"))
        await b.start()
        await a.wait_for("cluster-b", state_is("ACTIVE"))

        # delete on the acceptor: the dialer turns TERMINATED (no DeletedAt), the acceptor's record goes
        assert (await a.api.delete("/v1/peering/cluster-b")).status_code == 200
        terminated = (await b.wait_for("cluster-a", state_is("TERMINATED"))).json()
        assert "DeletedAt" not in terminated
        await a.wait_for("cluster-b", gone)

        # the terminated dialer re-establishes with a fresh token: same ID on B
        again = await b.establish("cluster-a", await a.token("cluster-b"))
        assert again.status_code == 200, again.text
        assert (await b.read("cluster-a"))["ID"] == on_b["ID"]
        await a.wait_for("cluster-b", state_is("ACTIVE"))

        # delete on the dialer: the acceptor turns TERMINATED and stays until deleted there
        await b.api.delete("/v1/peering/cluster-a")
        await a.wait_for("cluster-b", state_is("TERMINATED"))
        await b.wait_for("cluster-a", gone)
        # a terminated acceptor may issue a new token (INITIAL again)
        await a.token("cluster-b")
        assert (await a.read("cluster-b"))["State"] == "INITIAL"
    logged = caplog.text
    assert "peering established" in logged
    assert "peering terminated by peer" in logged
    assert "peering failing" in logged
    assert "peering recovered" in logged
    for secret in secrets:
        assert secret not in logged


def _tamper(token: str, **changes: object) -> str:
    fields = json.loads(base64.b64decode(token))
    fields.update(changes)
    return base64.b64encode(json.dumps(fields).encode()).decode()


async def test_bad_tokens_are_refused_and_leave_nothing(tmp_path: Path) -> None:
    async with clusters(tmp_path) as (a, b):
        token = await a.token("cluster-b")
        tampered = await b.establish("cluster-a", _tamper(token, ServerAddresses=["127.0.0.1:1"]))
        assert (tampered.status_code, tampered.text) == (400, "peering token signature is invalid")

        own = await a.establish("myself", await a.token("loop"))
        assert (own.status_code, own.text) == (400, "cannot create a peering within the same cluster")

        role = await a.establish("loop", await b.token("x"))
        assert role.status_code == 400
        assert (
            role.text == 'cannot create peering with name: "loop"; there is an existing peering expecting to be dialed'
        )

        assert (await b.api.get("/v1/peerings")).json()[0]["Name"] == "x"  # only b's own acceptor
        assert [p["Name"] for p in (await a.api.get("/v1/peerings")).json()] == ["cluster-b", "loop"]


async def test_an_unreachable_or_impostor_acceptor_is_a_502_and_stores_nothing(tmp_path: Path) -> None:
    async with clusters(tmp_path) as (a, b):
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = f"127.0.0.1:{closed.getsockname()[1]}"
        # a's token, but pointing at b's plain HTTP port (not TLS) or b's peering port (the wrong CA),
        # re-signed by a so that only the network part is wrong
        for target, reason in ((dead, "connection refused"), (b.http_addr, "tls"), (b.peering_addr, "tls")):
            token = await a.token("cluster-b", ServerExternalAddresses=[target])
            response = await b.establish("cluster-a", token)
            assert response.status_code == 502, response.text
            assert response.text.startswith(f'failed to exchange peering secret through address "{target}": ')
            assert reason in response.text
            assert (await b.api.get("/v1/peerings")).json() == []
            assert (await a.read("cluster-b"))["State"] == "INITIAL"
        unreachable = await b.api.post(
            "/v1/peering/check",
            json={"PeerName": "cluster-a", "PeeringToken": await a.token("c2", ServerExternalAddresses=[dead])},
        )
        assert unreachable.status_code == 200
        assert unreachable.json()["IsValid"] is False
        assert "connection refused" in unreachable.json()["ErrorMessage"]


async def test_one_peering_per_remote_cluster(tmp_path: Path) -> None:
    async with clusters(tmp_path) as (a, b):
        assert (await b.establish("first", await a.token("b-one"))).status_code == 200
        second = await b.establish("second", await a.token("b-two"))
        assert (second.status_code, second.text) == (400, 'a peering with this cluster already exists: "first"')
        check = await b.api.post(
            "/v1/peering/check", json={"PeerName": "second", "PeeringToken": await a.token("b-two")}
        )
        assert check.json()["ErrorMessage"] == 'a peering with this cluster already exists: "first"'


async def test_racing_establishes_with_one_token(tmp_path: Path) -> None:
    """Two establishes with the same token: exactly one 200 and one 403, and one row."""
    async with clusters(tmp_path) as (a, b):
        token = await a.token("cluster-b")
        results: list[int] = []

        async def one() -> None:
            results.append((await b.establish("cluster-a", token)).status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(one)
            group.start_soon(one)
        assert sorted(results) == [200, 403]
        assert [p["Name"] for p in (await b.api.get("/v1/peerings")).json()] == ["cluster-a"]
        assert len(b.runtime.service._name_locks) == 0  # the lock went with its last user


async def test_shutdown_does_not_wait_for_an_idle_peer_connection(tmp_path: Path) -> None:
    """A peer's idle keep-alive TLS connection (its link just ended) does not hold a shutdown for the
    whole graceful timeout (10 s): idle connections are let go, in-flight requests still finish."""
    async with clusters(tmp_path) as (a, b):
        token = await a.token("cluster-b")
        check = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": token})
        assert check.json()["IsValid"] is True
        assert (await b.establish("cluster-a", token)).status_code == 200
        assert (await a.api.delete("/v1/peering/cluster-b")).status_code == 200
        await b.wait_for("cluster-a", state_is("TERMINATED"))  # no more heartbeats: b's connection to a idles
        with anyio.fail_after(5):
            await a.stop()


def _metric(text: str, sample: str) -> float:
    for line in text.splitlines():
        if line.startswith(sample + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{sample} not in the scrape")


async def test_metrics_follow_the_link(tmp_path: Path) -> None:
    """`peering_healthy` is 1 on both sides while heartbeats flow and 0 once the other side stops;
    establishes and heartbeats are counted."""
    async with clusters(tmp_path) as (a, b):
        assert (await b.establish("cluster-a", await a.token("cluster-b"))).status_code == 200
        await a.wait_for("cluster-b", state_is("ACTIVE"))
        scrape_a = (await a.api.get("/v1/agent/metrics?format=prometheus")).text
        scrape_b = (await b.api.get("/v1/agent/metrics?format=prometheus")).text
        assert _metric(scrape_a, 'peering_healthy{partition="default",peer_name="cluster-b"}') == 1
        assert _metric(scrape_b, 'peering_healthy{partition="default",peer_name="cluster-a"}') == 1
        assert _metric(scrape_b, 'peering_establish_total{result="ok"}') == 1
        assert _metric(scrape_b, 'peering_heartbeats_sent_total{result="ok"}') >= 1
        assert _metric(scrape_a, 'peering_heartbeats_received_total{result="ok"}') >= 1
        await b.stop()
        await a.wait_for("cluster-b", state_is("FAILING"))
        scrape_a = (await a.api.get("/v1/agent/metrics?format=prometheus")).text
        assert _metric(scrape_a, 'peering_healthy{partition="default",peer_name="cluster-b"}') == 0
        assert _metric(scrape_a, 'peering_peerings{state="FAILING"}') == 1
