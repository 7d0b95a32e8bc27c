"""Client input on the HTTP API (issues 11 and 12): total query decoders, first-wins parameters, `?dc=`,
`?filter=`, no slash redirects, blocking queries that end on shutdown or when the client leaves, and an
empty result's index that the first write passes."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from peering.app import Runtime, create_app, open_runtime
from peering.notifier import LocalNotifier
from peering.service import TokenRequest
from peering.settings import Settings
from peering.store.schema import MIGRATIONS
from peering.store.sqlite import SqliteStore
from tests.cluster import Cluster, running_cluster

pytestmark = pytest.mark.anyio

MANAGEMENT = "1f3c2b8e-57a4-4c62-9a51-0d6f1e6b7c11"
PARTITION_RULE = "is not a valid partition name"
KELVIN_NAME = quote("\u212aname")  # the Kelvin sign, which str.lower() turns into `k`
# values a hostile client puts in any query parameter: huge digit strings, non-ASCII digits and letters
# (Arabic-Indic three, Kelvin sign, fullwidth digits), invalid UTF-8 and surrogate encodings, control
# characters, overflowing durations, very long strings
HOSTILE_VALUES = [
    "9" * 5000,
    "0" * 5000 + "1",
    "-" + "9" * 5000,
    "٣",
    "٣s",
    "\uff11\uff10s",  # fullwidth 10
    "\u212a",
    "%ff%fe",
    "%ed%a0%80",
    "%00",
    "a%0d%0ab",
    "9" * 400 + "h",
    "1e999s",
    "nan",
    "inf",
    "x" * 60_000,  # about the most a URL can carry
    "",
]
PARAMS = ["index", "wait", "partition", "dc", "filter", "token", "pretty", "stale", "consistent", "format"]
ROUTES = [
    ("GET", "/v1/peerings"),
    ("GET", "/v1/peering/cluster-02"),
    ("DELETE", "/v1/peering/cluster-02"),
    ("POST", "/v1/peering/token"),
    ("GET", "/v1/status/leader"),
    ("GET", "/v1/agent/metrics"),
]


async def generate(client: httpx.AsyncClient, name: str = "cluster-02", **body: object) -> httpx.Response:
    response = await client.post("/v1/peering/token", json={"PeerName": name, **body})
    assert response.status_code == 200, response.text
    return response


@pytest.fixture
async def acl_client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        data_dir=tmp_path / "acl", acl_enabled=True, acl_default_policy="deny", acl_initial_management_token=MANAGEMENT
    )
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:8503"], background=False) as rt:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            yield client


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_no_query_value_on_any_route_produces_a_500(client: httpx.AsyncClient, method: str, path: str) -> None:
    """Every parameter, every hostile value, every route (the fast path's and the full app's): no 5xx."""
    await generate(client)
    body = b'{"PeerName": "cluster-02"}' if method == "POST" else None
    for param in PARAMS:
        for value in HOSTILE_VALUES:
            response = await client.request(method, f"{path}?{param}={value}", content=body)
            assert response.status_code < 500, (param, value[:40], response.text[:200])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("index=" + "9" * 5000, "Invalid index"),
        ("index=" + "1" * 21, "Invalid index"),
        ("index=18446744073709551616", "Invalid index"),
        ("index=٣", "Invalid index"),
        ("index=1&wait=٣s", "Invalid wait time"),
        ("index=1&wait=\uff11s", "Invalid wait time"),  # fullwidth 1
        ("index=1&wait=" + "1" * 65 + "s", "Invalid wait time"),
        ("index=1&wait=9999999999999h", "Invalid wait time"),  # beyond Go's int64 nanoseconds
        ("index=1&wait=1e3s", "Invalid wait time"),
        ("partition=%E2%84%AA", f"\u212a {PARTITION_RULE}"),  # the Kelvin sign is not `k`
        ("partition=" + "a" * 5000, PARTITION_RULE),
    ],
)
async def test_malformed_query_values_are_400_with_consul_messages(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    response = await client.get(f"/v1/peerings?{query}")
    assert (response.status_code, response.headers["content-type"].split(";")[0]) == (400, "text/plain")
    assert message in response.text
    assert len(response.text) < 500  # the value is not echoed whole
    assert int(response.headers["X-Consul-Index"]) >= 1


async def test_good_index_and_wait_values_are_accepted(client: httpx.AsyncClient) -> None:
    """Leading zeros (Go's ParseUint takes them, however many), the largest index, fractional and µ units."""
    for query in ["index=" + "0" * 5000, "index=18446744073709551615&wait=1ms", "index=1&wait=1.5µs"]:
        response = await client.get(f"/v1/peerings?{query}")
        assert response.status_code == 200, (query[:40], response.text)


async def test_the_kelvin_sign_does_not_reach_a_peering_named_with_k(client: httpx.AsyncClient) -> None:
    await generate(client, "kname")
    await generate(client, "kname", Partition="k")
    assert (await client.get("/v1/peering/kname")).status_code == 200
    assert (await client.get("/v1/peering/KNAME")).status_code == 200  # ASCII case folding stays
    response = await client.get(f"/v1/peering/{KELVIN_NAME}")
    assert (response.status_code, response.text) == (404, 'Peering not found for "\u212aname"')
    assert (await client.delete(f"/v1/peering/{KELVIN_NAME}")).status_code == 200
    assert (await client.get("/v1/peering/kname")).json()["State"] == "INITIAL"  # the delete touched nothing
    refused = await client.post("/v1/peering/token", json={"PeerName": "x", "Partition": "\u212a"})
    assert (refused.status_code, refused.text.startswith(f"\u212a {PARTITION_RULE}")) == (400, True)


async def test_meta_lengths_count_utf8_bytes(client: httpx.AsyncClient) -> None:
    """Consul's limits are in bytes: 512 for a value, 128 for a key (`é` is two bytes)."""
    await generate(client, "a", Meta={"k": "é" * 256})
    too_long = await client.post("/v1/peering/token", json={"PeerName": "a", "Meta": {"k": "é" * 257}})
    assert too_long.status_code == 400
    assert too_long.text.endswith("Value is too long (limit: 512 characters)")
    long_key = await client.post("/v1/peering/token", json={"PeerName": "a", "Meta": {"é" * 65: "v"}})
    assert long_key.text.endswith("Key is too long (limit: 128 characters)")
    bad_key = await client.post("/v1/peering/token", json={"PeerName": "a", "Meta": {"é" * 64: "v"}})
    assert bad_key.text.endswith("Key contains invalid characters")


async def test_the_first_token_parameter_wins(acl_client: httpx.AsyncClient) -> None:
    """As Consul (Go's `Query().Get`): an appended `token=` cannot replace the one before it."""
    first_good = await acl_client.get(f"/v1/peerings?token={MANAGEMENT}&token=bogus")
    first_bad = await acl_client.get(f"/v1/peerings?token=bogus&token={MANAGEMENT}")
    assert first_good.status_code == 200
    assert first_bad.status_code == 403


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_another_datacenter_or_a_filter_is_refused_on_every_route(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    body = b'{"PeerName": "cluster-02"}' if method == "POST" else None
    for query, message in [
        ("dc=dc2", "No path to datacenter"),
        ("dc=DC1", "No path to datacenter"),  # datacenter names are compared exactly, as Consul does
        ("dc=dc2&dc=dc1", "No path to datacenter"),
        ('filter=Name == "x"', "filter expressions are not supported on this endpoint"),
        ("dc=dc1&filter=x", "filter expressions are not supported on this endpoint"),
    ]:
        response = await client.request(method, f"{path}?{query}", content=body)
        assert (response.status_code, response.text) == (400, message), (path, query)
        assert response.headers["content-type"].startswith("text/plain")
    for query in ["dc=dc1", "dc=", "filter=", "dc=dc1&dc=dc2"]:
        response = await client.request(method, f"{path}?{query}", content=body)
        assert response.status_code in (200, 404), (path, query, response.text)


ACL_ROUTES = [("GET", "/v1/acl/policies"), ("GET", "/v1/acl/tokens"), ("GET", "/v1/acl/token/self")]


@pytest.mark.parametrize(("method", "path"), ACL_ROUTES)
async def test_the_acl_routes_refuse_another_datacenter_or_a_filter(
    acl_client: httpx.AsyncClient, method: str, path: str
) -> None:
    for query, message in [
        ("dc=dc2", "No path to datacenter"),
        ('filter=Name == "x"', "filter expressions are not supported on this endpoint"),
    ]:
        response = await acl_client.request(method, f"{path}?{query}", headers={"X-Consul-Token": MANAGEMENT})
        assert (response.status_code, response.text) == (400, message), (path, query)
    response = await acl_client.request(method, f"{path}?dc=dc1", headers={"X-Consul-Token": MANAGEMENT})
    assert response.status_code == 200, (path, response.text)


async def test_no_trailing_slash_redirect_and_no_token_echo(client: httpx.AsyncClient) -> None:
    """A forged `Host` gets no redirect built from it; trailing-slash paths get the route's answer or 404."""
    forged = {"Host": "evil.example"}
    for path, status, text in [
        ("/v1/peerings/?token=abc", 404, "404 page not found"),
        ("/v1/status/leader/?token=abc", 404, "404 page not found"),
        ("/v1/agent/metrics/?token=abc", 404, "404 page not found"),
        ("/v1/acl/policies/?token=abc", 404, "404 page not found"),
        ("/v1/peering/?token=abc", 400, "Must specify a name to fetch."),
    ]:
        response = await client.get(path, headers=forged)
        assert (response.status_code, response.text) == (status, text), path
        assert "location" not in response.headers
        assert "abc" not in str(response.headers)


@pytest.mark.parametrize(("counter", "first_write"), [(0, 2), (1, 2), (7, 8)])
async def test_the_migration_moves_only_an_unused_counter(tmp_path: Path, counter: int, first_write: int) -> None:
    """A database from before schema 4: never written (counter 0) it starts at 1 like a new one; written
    to, it keeps its counter, whose next index is above every index it handed out."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:
        for script in MIGRATIONS[:3]:
            conn.executescript(script)
        conn.execute("UPDATE counter SET value = ?", (counter,))
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    store = await SqliteStore.open(path)
    try:
        assert await store.current_index() == max(1, counter)
        async with store.transaction() as tx:
            assert await tx.bump() == first_write
    finally:
        await store.close()


def _blocking_gauge(runtime: Runtime) -> float:
    return float(next(s["Value"] for s in runtime.cluster.metrics.samples() if s["Name"] == "peering_blocking_queries"))


async def _until_pending(runtime: Runtime, count: int = 1) -> None:
    """Until `count` blocking queries wait (the gauge rises as a wait starts; bounded)."""
    for _ in range(500):
        if _blocking_gauge(runtime) == count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{count} blocking queries never pending")


async def test_close_answers_a_pending_blocking_query_at_once_with_data(runtime: Runtime) -> None:
    """Shutdown (SPEC §2): `notifier.close()` ends every wait; the query answers with its current snapshot."""
    service = runtime.service
    await service.generate_token(TokenRequest("present"))
    _, index = await service.list_peerings(None)
    pending = asyncio.create_task(service.list_peerings(None, min_index=index, wait=300))
    await _until_pending(runtime)
    assert not pending.done()
    started = time.monotonic()
    runtime.cluster.notifier.close()
    peerings, answered = await asyncio.wait_for(pending, 2)
    assert time.monotonic() - started < 0.5
    assert ([p.name for p in peerings], answered) == (["present"], index)
    assert _blocking_gauge(runtime) == 0
    # a query that starts after close() does not wait either, for a read as for a list
    late = await asyncio.wait_for(service.read(None, "present", min_index=index, wait=300), 1)
    assert late.name == "present"


async def test_a_closed_notifier_fires_every_watch_taken_before_and_after() -> None:
    notifier = LocalNotifier()
    before = notifier.watch()
    waiting = asyncio.create_task(before.wait(300))
    await asyncio.sleep(0)
    notifier.close()
    assert await asyncio.wait_for(waiting, 1) is True
    notifier.notify()  # a write committing during shutdown changes nothing
    assert notifier.closed
    assert await asyncio.wait_for(notifier.watch().wait(300), 1) is True


async def test_a_fresh_clusters_empty_list_index_is_passed_by_the_first_write(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    """A watcher that blocks on the empty list's index sees the first peering at once (issue 12.8)."""
    empty = await client.get("/v1/peerings")
    index = int(empty.headers["X-Consul-Index"])
    assert empty.json() == []
    waiting = asyncio.create_task(client.get(f"/v1/peerings?index={index}&wait=60s"))
    await _until_pending(runtime)
    assert not waiting.done()
    await generate(client)
    response = await asyncio.wait_for(waiting, 2)
    assert [p["Name"] for p in response.json()] == ["cluster-02"]
    assert int(response.headers["X-Consul-Index"]) > index
    read = await client.get("/v1/peering/cluster-02")
    assert read.json()["CreateIndex"] == read.json()["ModifyIndex"] > index


async def test_a_disconnect_cancels_the_blocking_query_in_process(runtime: Runtime) -> None:
    """The route races the wait with the ASGI `http.disconnect`: the query is freed when the client leaves."""
    app = create_app(runtime)
    left = asyncio.Event()
    pending: list[dict[str, object]] = [{"type": "http.request", "body": b"", "more_body": False}]
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        if pending:
            return pending.pop(0)
        await left.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
        "path": "/v1/peerings", "raw_path": b"/v1/peerings", "query_string": b"index=1&wait=600s",
        "root_path": "", "headers": [(b"host", b"test")], "client": ("127.0.0.1", 5), "server": ("test", 80),
    }  # fmt: skip
    request = asyncio.create_task(app(scope, receive, send))  # type: ignore[arg-type]
    await _until_pending(runtime)
    left.set()
    await asyncio.wait_for(request, 2)
    assert _blocking_gauge(runtime) == 0
    assert sent[0]["status"] == 499  # recorded as "client closed request"; nobody receives it


def _gauge(cluster: Cluster) -> float:
    text = httpx.get(f"{cluster.http_url}/v1/agent/metrics?format=prometheus", timeout=5).text
    return next(float(line.split()[1]) for line in text.splitlines() if line.startswith("peering_blocking_queries "))


def _until(condition: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.02)  # another process's state: nothing to await, so poll (bounded)
    return False


@pytest.mark.slow
def test_a_client_that_disconnects_frees_its_blocking_query_at_once(tmp_path: Path) -> None:
    """A real server and a raw socket: the pending query is released as soon as the socket closes, not
    when its 10-minute wait ends (issue 12.5)."""
    with running_cluster(tmp_path / "data", "--log-level", "debug") as cluster:
        host, port = cluster.ready["http_addr"].rsplit(":", 1)
        index = httpx.get(f"{cluster.http_url}/v1/peerings", timeout=5).headers["X-Consul-Index"]
        with socket.create_connection((host, int(port)), timeout=5) as raw:
            raw.sendall(f"GET /v1/peerings?index={index}&wait=10m HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            assert _until(lambda: _gauge(cluster) == 1)
        # within seconds (the bound allows for a loaded machine), where the wait would have run 10 minutes
        assert _until(lambda: _gauge(cluster) == 0, timeout=10)
        assert _until(lambda: any("blocking query abandoned by the client" in line for line in cluster.lines))
        assert cluster.stop() == 0
