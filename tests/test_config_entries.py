"""Config entries over the API (SPEC §14): `/v1/config…`, `/v1/exported-services`, `/v1/imported-services`.

Real SQLite under a real runtime; catalog rows and peerings are written through the store where the test
needs them (the catalog API is another module's).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from peering.app import Runtime, create_app, open_runtime
from peering.catalog.model import Node, ServiceInstance
from peering.domain import Peering, PeeringState, Role
from peering.settings import Settings

pytestmark = pytest.mark.anyio

KIND = "exported-services"
MANAGEMENT_SECRET = "7c1b6d2f-0a6f-4b74-9e3c-2a5f7b8d0e21"


def exported(*services: tuple[str, list[str]], name: str = "default", **extra: Any) -> dict[str, Any]:
    return {
        "Kind": KIND,
        "Name": name,
        "Services": [{"Name": svc, "Consumers": [{"Peer": p} for p in peers]} for svc, peers in services],
        **extra,
    }


async def put(client: httpx.AsyncClient, body: object, **params: str) -> httpx.Response:
    return await client.put("/v1/config", json=body, params=params)


async def register(runtime: Runtime, service: str, *, node: str = "n1", partition: str = "default") -> None:
    async with runtime.cluster.write() as tx:
        await tx.catalog.save_node(Node(node, "10.0.0.1", partition=partition))
        await tx.catalog.save_service(ServiceInstance(node, service, service, partition=partition))


async def waiting(runtime: Runtime, count: int = 1) -> None:
    """Return once `count` blocking queries are pending (the gauge has no event to await: polled, for 5 s at most;
    the snapshot before the wait reads SQLite in a thread, so a few loop turns are not enough on a busy machine)."""
    registry, loop = runtime.cluster.metrics.registry, asyncio.get_running_loop()
    deadline = loop.time() + 5
    while registry.get_sample_value("peering_blocking_queries") != count:
        assert loop.time() < deadline, "the blocking query never started waiting"
        await asyncio.sleep(0.001)


# -- CRUD ----------------------------------------------------------------------------------------------------


async def test_write_read_list_delete(client: httpx.AsyncClient) -> None:
    written = await put(client, exported(("web", ["east", "west"]), Meta={"owner": "a"}))
    assert (written.status_code, written.json()) == (200, True)

    read = await client.get(f"/v1/config/{KIND}/default")
    assert read.status_code == 200
    entry = read.json()
    assert list(entry) == ["Kind", "Name", "Services", "Meta", "CreateIndex", "ModifyIndex"]
    assert entry["Services"] == [{"Name": "web", "Consumers": [{"Peer": "east"}, {"Peer": "west"}]}]
    assert entry["CreateIndex"] == entry["ModifyIndex"] >= 1
    assert int(read.headers["X-Consul-Index"]) >= entry["ModifyIndex"]
    assert read.headers["X-Consul-KnownLeader"] == "true"

    listed = await client.get(f"/v1/config/{KIND}")
    assert listed.json() == [entry]
    assert int(listed.headers["X-Consul-Index"]) >= entry["ModifyIndex"]

    deleted = await client.delete(f"/v1/config/{KIND}/default")
    assert (deleted.status_code, deleted.json()) == (200, {})
    missing = await client.get(f"/v1/config/{KIND}/default")
    assert (missing.status_code, missing.text) == (404, 'Config entry not found for "exported-services" / "default"')
    assert missing.headers["content-type"].startswith("text/plain")
    assert (await client.get(f"/v1/config/{KIND}")).json() == []
    again = await client.delete(f"/v1/config/{KIND}/default")  # a missing entry is fine
    assert (again.status_code, again.json()) == (200, {})


async def test_an_update_keeps_create_index_and_a_get_round_trips(client: httpx.AsyncClient) -> None:
    await put(client, exported(("web", ["east"])))
    first = (await client.get(f"/v1/config/{KIND}/default")).json()
    first["Services"].append({"Name": "db", "Consumers": [{"Peer": "east"}]})
    assert (await put(client, first)).json() is True  # what a GET shows can be PUT back, indexes and all
    second = (await client.get(f"/v1/config/{KIND}/default")).json()
    assert second["CreateIndex"] == first["CreateIndex"]
    assert second["ModifyIndex"] > first["ModifyIndex"]
    assert [s["Name"] for s in second["Services"]] == ["web", "db"]


async def test_entries_per_partition(client: httpx.AsyncClient) -> None:
    await put(client, exported(("web", ["east"]), name="Team-A"))
    await put(client, exported(("db", ["west"])))
    names = [e["Name"] for e in (await client.get(f"/v1/config/{KIND}")).json()]
    assert names == ["default", "team-a"]
    only = await client.get(f"/v1/config/{KIND}?partition=Team-A")
    assert [e["Name"] for e in only.json()] == ["team-a"]
    assert (await client.get(f"/v1/config/{KIND}?partition=team-b")).json() == []
    assert (await client.get(f"/v1/config/{KIND}?partition=a_b")).status_code == 400
    assert (await client.get(f"/v1/config/{KIND}/team-a")).json()["Services"][0]["Name"] == "web"
    assert (await client.get(f"/v1/config/{KIND}/Team-A")).json()["Name"] == "team-a"
    missing = await client.get(f"/v1/config/{KIND}/not_a_partition")
    assert (missing.status_code, missing.text) == (
        404,
        'Config entry not found for "exported-services" / "not_a_partition"',
    )


async def test_pretty(client: httpx.AsyncClient) -> None:
    await put(client, exported(("web", ["east"])))
    response = await client.get(f"/v1/config/{KIND}/default?pretty")
    assert response.text.startswith('{\n    "Kind": "exported-services"')
    assert response.text.endswith("}\n")


# -- compare-and-set -----------------------------------------------------------------------------------------


async def test_cas_on_apply(client: httpx.AsyncClient) -> None:
    assert (await put(client, exported(("web", ["east"])), cas="0")).json() is True  # absent: created
    assert (await put(client, exported(("db", ["east"])), cas="0")).json() is False  # exists already
    index = (await client.get(f"/v1/config/{KIND}/default")).json()["ModifyIndex"]
    assert (await put(client, exported(("db", ["east"])), cas=str(index + 100))).json() is False
    assert (await put(client, exported(("db", ["east"])), cas=str(index))).json() is True
    assert (await put(client, exported(("api", ["east"])), cas=str(index))).json() is False  # stale now
    entry = (await client.get(f"/v1/config/{KIND}/default")).json()
    assert entry["Services"][0]["Name"] == "db"


async def test_cas_on_delete(client: httpx.AsyncClient) -> None:
    await put(client, exported(("web", ["east"])))
    index = (await client.get(f"/v1/config/{KIND}/default")).json()["ModifyIndex"]
    assert (await client.delete(f"/v1/config/{KIND}/default", params={"cas": "0"})).json() is False
    assert (await client.delete(f"/v1/config/{KIND}/default", params={"cas": str(index + 1)})).json() is False
    assert (await client.get(f"/v1/config/{KIND}/default")).status_code == 200
    assert (await client.delete(f"/v1/config/{KIND}/default", params={"cas": str(index)})).json() is True
    assert (await client.get(f"/v1/config/{KIND}/default")).status_code == 404
    assert (await client.delete(f"/v1/config/{KIND}/default", params={"cas": str(index)})).json() is False


@pytest.mark.parametrize(
    ("cas", "message"),
    [
        ("x", 'strconv.ParseUint: parsing "x": invalid syntax'),
        ("-1", 'strconv.ParseUint: parsing "-1": invalid syntax'),
        ("\u0661", 'strconv.ParseUint: parsing "\u0661": invalid syntax'),
        ("18446744073709551616", 'strconv.ParseUint: parsing "18446744073709551616": value out of range'),
        ("9" * 5000, f'strconv.ParseUint: parsing "{"9" * 64}...": value out of range'),
    ],
)
async def test_a_malformed_cas_is_a_400(client: httpx.AsyncClient, cas: str, message: str) -> None:
    for response in (
        await put(client, exported(("web", ["east"])), cas=cas),
        await client.delete(f"/v1/config/{KIND}/default", params={"cas": cas}),
    ):
        assert (response.status_code, response.text) == (400, message)
    assert (await client.get(f"/v1/config/{KIND}/default")).status_code == 404  # nothing was written


# -- input errors --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "Request decoding failed: EOF"),
        (b"{", "Request decoding failed: "),
        (b"[]", "Request decoding failed: json: cannot unmarshal array into Go value of type map[string]interface {}"),
        (b'{"Kind": "service-defaults", "Name": "web"}', "Request decoding failed: invalid config entry kind: "),
        (b'{"Name": "default"}', "Request decoding failed: Payload does not contain a kind/Kind key"),
        (
            b'{"Kind": "exported-services", "Name": "default", "Bogus": 1}',
            'Request decoding failed: invalid config key "Bogus"',
        ),
        (b'{"Kind": "exported-services", "Name": ""}', "exported-services Name must be the partition"),
        (
            b'{"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web"}]}',
            "Services[0]: must have at least one consumer",
        ),
        (
            b'{"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web", "Consumers": [{"Partition": "p"}]}]}',
            "Services[0].Consumers[0]: partitions are not supported",
        ),
        (
            b'{"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web", "Consumers": [{}]}]}',
            "Services[0].Consumers[0]: must define at least one of Peer, Partition, or SamenessGroup",
        ),
        (
            b'{"Kind": "exported-services", "Name": "default", "Services": [{"Name": "web", "Consumers": [{"Peer": "*"}]}]}',
            "Services[0].Consumers[0]: exporting to all peers (wildcard) is not supported",
        ),
    ],
)
async def test_bad_bodies_are_400s(client: httpx.AsyncClient, content: bytes, message: str) -> None:
    response = await client.put("/v1/config", content=content)
    assert response.status_code == 400
    assert response.text.startswith(message)
    assert response.headers["content-type"].startswith("text/plain")


async def test_the_body_is_capped(client: httpx.AsyncClient) -> None:
    big = exported(("web", ["east"]), Meta={"k": "v" * (1 << 20)})
    response = await put(client, big)
    assert response.status_code == 413


async def test_other_kinds_are_400s(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/v1/config/service-defaults"),
        await client.get("/v1/config/service-defaults/web"),
        await client.delete("/v1/config/service-defaults/web"),
    ):
        assert (response.status_code, response.text) == (400, "invalid config entry kind: service-defaults")


async def test_paths_without_a_kind_or_a_name(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/config/")
    assert (response.status_code, response.text) == (404, "Must provide either a kind or both kind and name")
    for path in ("/v1/config/", f"/v1/config/{KIND}"):
        response = await client.delete(path)
        assert (response.status_code, response.text) == (404, "Must provide both a kind and name to delete")


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("POST", "/v1/config/", "GET, DELETE"),
        ("PUT", f"/v1/config/{KIND}", "GET, DELETE"),
        ("PUT", f"/v1/config/{KIND}/default", "GET, DELETE"),
        ("POST", f"/v1/config/{KIND}/default", "GET, DELETE"),
        ("GET", "/v1/config", "PUT"),
        ("POST", "/v1/config", "PUT"),
        ("PUT", "/v1/exported-services", "GET"),
        ("DELETE", "/v1/imported-services", "GET"),
    ],
)
async def test_wrong_methods_are_405s(client: httpx.AsyncClient, method: str, path: str, allow: str) -> None:
    response = await client.request(method, path)
    assert response.status_code == 405
    assert response.headers["Allow"] == allow


async def test_a_filter_is_refused_not_ignored(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/exported-services?filter=Service==web")
    assert (response.status_code, response.text) == (400, "filter expressions are not supported on this endpoint")


# -- blocking queries ----------------------------------------------------------------------------------------


async def test_a_blocking_read_wakes_on_a_write(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await put(client, exported(("web", ["east"])))
    index = (await client.get(f"/v1/config/{KIND}/default")).headers["X-Consul-Index"]
    pending = asyncio.create_task(client.get(f"/v1/config/{KIND}/default?index={index}&wait=10s"))
    await waiting(runtime)
    await put(client, exported(("db", ["east"])))
    response = await asyncio.wait_for(pending, 5)
    assert response.json()["Services"][0]["Name"] == "db"
    assert int(response.headers["X-Consul-Index"]) > int(index)


async def test_a_blocking_list_wakes_on_a_delete(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await put(client, exported(("web", ["east"])))
    index = (await client.get(f"/v1/config/{KIND}")).headers["X-Consul-Index"]
    pending = asyncio.create_task(client.get(f"/v1/config/{KIND}?index={index}&wait=10s"))
    await waiting(runtime)
    await client.delete(f"/v1/config/{KIND}/default")
    response = await asyncio.wait_for(pending, 5)
    assert response.json() == []
    assert int(response.headers["X-Consul-Index"]) > int(index)


async def test_a_blocking_read_times_out_with_the_same_index(client: httpx.AsyncClient) -> None:
    await put(client, exported(("web", ["east"])))
    index = (await client.get(f"/v1/config/{KIND}/default")).headers["X-Consul-Index"]
    response = await client.get(f"/v1/config/{KIND}/default?index={index}&wait=20ms")
    assert response.status_code == 200
    assert response.headers["X-Consul-Index"] == index


async def test_a_blocking_read_of_a_missing_entry_wakes_when_it_appears(
    client: httpx.AsyncClient, runtime: Runtime
) -> None:
    missing = await client.get(f"/v1/config/{KIND}/default")
    assert missing.status_code == 404
    index = missing.headers["X-Consul-Index"]
    pending = asyncio.create_task(client.get(f"/v1/config/{KIND}/default?index={index}&wait=10s"))
    await waiting(runtime)
    await put(client, exported(("web", ["east"])))
    response = await asyncio.wait_for(pending, 5)
    assert response.status_code == 200


# -- /v1/exported-services -----------------------------------------------------------------------------------


async def test_exported_services_resolved(client: httpx.AsyncClient, runtime: Runtime) -> None:
    empty = await client.get("/v1/exported-services")
    assert (empty.status_code, empty.json()) == (200, [])
    await put(client, exported(("web", ["west", "east"]), ("db", ["east"]), ("web", ["north"]), ("consul", ["east"])))
    response = await client.get("/v1/exported-services")
    assert response.json() == [
        {"Service": "db", "Consumers": {"Peers": ["east"]}},  # named: listed without instances
        {"Service": "web", "Consumers": {"Peers": ["east", "north", "west"]}},
    ]
    assert int(response.headers["X-Consul-Index"]) >= 1


async def test_a_wildcard_picks_up_a_service_registered_later(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await put(client, exported(("*", ["mon"]), ("web", ["east"])))
    await register(runtime, "consul")
    first = await client.get("/v1/exported-services")
    assert first.json() == [{"Service": "web", "Consumers": {"Peers": ["east"]}}]  # never consul

    index = first.headers["X-Consul-Index"]
    pending = asyncio.create_task(client.get(f"/v1/exported-services?index={index}&wait=10s"))
    await waiting(runtime)
    await register(runtime, "api")
    response = await asyncio.wait_for(pending, 5)
    assert response.json() == [
        {"Service": "api", "Consumers": {"Peers": ["mon"]}},
        {"Service": "web", "Consumers": {"Peers": ["east"]}},
    ]
    await register(runtime, "web", node="n2")
    assert (await client.get("/v1/exported-services")).json()[1] == {
        "Service": "web",
        "Consumers": {"Peers": ["east", "mon"]},
    }


async def test_exported_services_per_partition(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await put(client, exported(("*", ["east"]), name="team-a"))
    await register(runtime, "web", partition="team-a")
    await register(runtime, "db")  # default: not exported by team-a's entry
    assert (await client.get("/v1/exported-services")).json() == []
    response = await client.get("/v1/exported-services?partition=team-a")
    assert response.json() == [{"Service": "web", "Consumers": {"Peers": ["east"]}}]
    bad = await client.get("/v1/exported-services?partition=a_b")
    assert bad.status_code == 400


# -- /v1/imported-services -----------------------------------------------------------------------------------


async def save_peering(runtime: Runtime, name: str, imported: tuple[str, ...], partition: str = "default") -> None:
    async with runtime.cluster.write() as tx:
        peering = Peering(runtime.cluster.new_id(), name, partition, Role.DIALER, PeeringState.ACTIVE)
        existing = await tx.get(partition, name)
        if existing is not None:
            peering = existing
        await tx.save(replace(peering, imported_services=imported))


async def test_imported_services_from_every_peering(client: httpx.AsyncClient, runtime: Runtime) -> None:
    assert (await client.get("/v1/imported-services")).json() == []
    await save_peering(runtime, "west", ("web", "db"))
    await save_peering(runtime, "east", ("web",))
    await save_peering(runtime, "idle", ())
    await save_peering(runtime, "other", ("api",), partition="team-a")
    response = await client.get("/v1/imported-services")
    assert response.json() == [
        {"Service": "db", "SourcePeer": "west"},
        {"Service": "web", "SourcePeer": "east"},
        {"Service": "web", "SourcePeer": "west"},
    ]
    index = response.headers["X-Consul-Index"]
    assert int(index) >= 1
    team = await client.get("/v1/imported-services?partition=team-a")
    assert team.json() == [{"Service": "api", "SourcePeer": "other"}]

    pending = asyncio.create_task(client.get(f"/v1/imported-services?index={index}&wait=10s"))
    await waiting(runtime)
    await save_peering(runtime, "east", ())
    changed = await asyncio.wait_for(pending, 5)
    assert changed.json() == [{"Service": "db", "SourcePeer": "west"}, {"Service": "web", "SourcePeer": "west"}]


# -- ACLs ----------------------------------------------------------------------------------------------------


class AclCluster:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.app = create_app(runtime)

    def client(self, token: str | None = None) -> httpx.AsyncClient:
        headers = {"X-Consul-Token": token} if token else {}
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="http://t", headers=headers)

    async def token(self, rules: str) -> str:
        async with self.client(MANAGEMENT_SECRET) as c:
            name = f"p{abs(hash(rules))}"
            policy = await c.put("/v1/acl/policy", json={"Name": name, "Rules": rules})
            assert policy.status_code == 200, policy.text
            token = await c.put("/v1/acl/token", json={"Policies": [{"Name": name}]})
            assert token.status_code == 200, token.text
            return str(token.json()["SecretID"])


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[AclCluster]:
    settings = Settings(
        data_dir=tmp_path / "acl",
        http_addr="127.0.0.1:0",
        peering_addr="127.0.0.1:0",
        acl_enabled=True,
        acl_default_policy="deny",
        acl_initial_management_token=MANAGEMENT_SECRET,
    )
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as rt:
        cluster = AclCluster(rt)
        async with cluster.client(MANAGEMENT_SECRET) as c:
            assert (await put(c, exported(("web", ["east"])))).json() is True
        yield cluster


ROUTES: dict[str, tuple[str, str, str]] = {
    # name: (method, path, level needed)
    "apply": ("PUT", "/v1/config", "write"),
    "read": ("GET", f"/v1/config/{KIND}/default", "read"),
    "list": ("GET", f"/v1/config/{KIND}", "read"),
    "delete": ("DELETE", f"/v1/config/{KIND}/default", "write"),
    "exported": ("GET", "/v1/exported-services", "read"),
    "imported": ("GET", "/v1/imported-services", "read"),
}
CALLERS = {
    "anonymous": None,
    "mesh-read": 'mesh = "read"',
    "mesh-write": 'mesh = "write"',
    "operator-read": 'operator = "read"',
    "operator-write": 'operator = "write"',
    "mesh-deny-operator-write": 'mesh = "deny"\noperator = "write"',
    "peering-write": 'peering = "write"',
    "management": "",
}
GRANTS = {
    "anonymous": None,
    "mesh-read": "read",
    "mesh-write": "write",
    "operator-read": "read",
    "operator-write": "write",
    "mesh-deny-operator-write": None,
    "peering-write": None,
    "management": "write",
}
ANONYMOUS = "00000000-0000-0000-0000-000000000002"


@pytest.mark.parametrize("caller", list(CALLERS))
@pytest.mark.parametrize("route", list(ROUTES))
async def test_acl_matrix(acl: AclCluster, caller: str, route: str) -> None:
    method, path, need = ROUTES[route]
    rules = CALLERS[caller]
    token = MANAGEMENT_SECRET if caller == "management" else (await acl.token(rules) if rules else None)
    async with acl.client(token) as c:
        body = exported(("db", ["east"])) if method == "PUT" else None
        response = await c.request(method, path, json=body)
    grant = GRANTS[caller]
    allowed = grant == "write" or (grant == "read" and need == "read")
    if allowed:
        assert response.status_code == 200, response.text
    elif route == "list":  # unreadable entries are left out, not refused
        assert (response.status_code, response.json()) == (200, [])
    else:
        assert response.status_code == 403, response.text
        assert response.text.startswith("Permission denied: token with AccessorID '")
        assert response.text.endswith(f"lacks permission 'mesh:{need}'")
        if caller == "anonymous":
            assert ANONYMOUS in response.text


async def test_list_is_filtered_but_an_unknown_token_is_refused(acl: AclCluster) -> None:
    async with acl.client("d3a0f1b2-0000-4000-8000-000000000000") as c:
        for method, path, _ in ROUTES.values():
            response = await c.request(method, path, json=exported(("db", ["east"])) if method == "PUT" else None)
            assert (response.status_code, response.text) == (403, "ACL not found")


async def test_validation_comes_before_authorization(acl: AclCluster) -> None:
    async with acl.client() as c:
        response = await put(c, exported(("web", ["*"])))
    assert (response.status_code, response.text) == (
        400,
        "Services[0].Consumers[0]: exporting to all peers (wildcard) is not supported",
    )


# -- the same walk on PostgreSQL -----------------------------------------------------------------------------


async def test_the_walk_on_postgresql(tmp_path: Path, postgres: str) -> None:
    """CRUD, compare-and-set, a blocking read, the resolved exports and control characters kept, on PostgreSQL."""
    settings = Settings(data_dir=tmp_path / "pg", database_url=SecretStr(postgres))
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as rt:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://pg") as c:
            body = exported(("web", ["east"]), ("*", ["mon"]), Meta={"note": "nul \x00 and é"})
            assert (await put(c, body, cas="0")).json() is True
            assert (await put(c, body, cas="0")).json() is False
            read = await c.get(f"/v1/config/{KIND}/default")
            entry = read.json()
            assert entry["Meta"] == {"note": "nul \x00 and é"}
            index = read.headers["X-Consul-Index"]
            pending = asyncio.create_task(c.get(f"/v1/config/{KIND}/default?index={index}&wait=10s"))
            await waiting(rt)
            assert (await put(c, exported(("db", ["east"])), cas=str(entry["ModifyIndex"]))).json() is True
            woken = await asyncio.wait_for(pending, 5)
            assert woken.json()["Services"] == [{"Name": "db", "Consumers": [{"Peer": "east"}]}]
            await put(c, body)
            await register(rt, "api")
            assert (await c.get("/v1/exported-services")).json() == [
                {"Service": "api", "Consumers": {"Peers": ["mon"]}},
                {"Service": "web", "Consumers": {"Peers": ["east"]}},
            ]
            modify = (await c.get(f"/v1/config/{KIND}/default")).json()["ModifyIndex"]
            assert (await c.delete(f"/v1/config/{KIND}/default", params={"cas": str(modify)})).json() is True
            assert (await c.get(f"/v1/config/{KIND}")).json() == []
