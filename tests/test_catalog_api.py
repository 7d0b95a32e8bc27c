"""The catalog and health endpoints (SPEC §13): register/deregister, Consul's shapes and messages, `?peer=`
isolation, `?tag=`/`?passing`, blocking queries, ACLs. In-process app on a real SQLite store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.app import Runtime
from peering.catalog.model import Check, Health, Node, ServiceInstance
from tests.test_acl import Acl, _acl_cluster

pytestmark = pytest.mark.anyio

WEB = {
    "Node": "n1",
    "Address": "10.0.0.1",
    "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1", "Blue"], "Port": 8080},
    "Checks": [
        {"CheckID": "web-1-http", "Name": "http", "Status": "passing", "ServiceID": "web-1"},
        {"CheckID": "serfHealth", "Name": "node alive", "Status": "passing"},
    ],
}


async def put(client: httpx.AsyncClient, path: str, body: Any, **headers: str) -> httpx.Response:
    return await client.put(path, json=body, headers=headers)


async def registered(client: httpx.AsyncClient, body: Any) -> None:
    response = await put(client, "/v1/catalog/register", body)
    assert (response.status_code, response.json()) == (200, True), response.text


async def imported(runtime: Runtime, peer: str, node: str = "n1", status: Health = Health.PASSING) -> None:
    """Rows of a peering, written as the importer writes them (directly through the store)."""
    async with runtime.cluster.write() as tx:
        await tx.catalog.save_node(Node(node, "10.9.0.1", datacenter="dc-east", peer_name=peer))
        await tx.catalog.save_service(ServiceInstance(node, "web-1", "web", tags=("v9",), port=9090, peer_name=peer))
        await tx.catalog.save_check(
            Check(node, "web-1:overall-check", "overall-check", status, service_id="web-1", service_name="web",
                  peer_name=peer)
        )  # fmt: skip


async def test_register_and_read_back_in_consuls_shapes(client: httpx.AsyncClient) -> None:
    await registered(client, WEB)
    services = await client.get("/v1/catalog/services")
    assert services.json() == {"web": ["Blue", "v1"]}
    assert int(services.headers["X-Consul-Index"]) >= 1
    [flat] = (await client.get("/v1/catalog/service/web")).json()
    assert list(flat) == [
        "ID", "Node", "Address", "Datacenter", "TaggedAddresses", "NodeMeta", "ServiceKind", "ServiceID",
        "ServiceName", "ServiceTags", "ServiceAddress", "ServiceWeights", "ServiceMeta", "ServicePort",
        "ServiceSocketPath", "ServiceEnableTagOverride", "ServiceProxy", "ServiceConnect", "CreateIndex",
        "ModifyIndex",
    ]  # fmt: skip
    assert flat["ServiceTags"] == ["v1", "Blue"]
    assert (flat["TaggedAddresses"], flat["NodeMeta"], flat["ServiceMeta"]) == ({}, {}, {})
    assert flat["ServiceWeights"] == {"Passing": 1, "Warning": 1}
    assert (flat["Datacenter"], flat["ServicePort"], flat["ServiceID"]) == ("dc1", 8080, "web-1")
    [entry] = (await client.get("/v1/health/service/web")).json()
    assert list(entry) == ["Node", "Service", "Checks"]
    assert [c["CheckID"] for c in entry["Checks"]] == ["serfHealth", "web-1-http"]  # the node's, then its own
    assert entry["Service"]["Tags"] == ["v1", "Blue"]
    assert "PeerName" not in entry["Node"]
    assert "PeerName" not in entry["Service"]
    assert all("PeerName" not in check for check in entry["Checks"])
    assert entry["Checks"][1]["ServiceTags"] == ["v1", "Blue"]
    assert entry["Checks"][0]["ServiceTags"] == []
    [node] = (await client.get("/v1/catalog/nodes")).json()
    assert list(node) == [
        "ID",
        "Node",
        "Address",
        "Datacenter",
        "TaggedAddresses",
        "Meta",
        "CreateIndex",
        "ModifyIndex",
    ]
    one = (await client.get("/v1/catalog/node/n1")).json()
    assert one["Node"] == node
    assert list(one["Services"]) == ["web-1"]
    assert (await client.get("/v1/catalog/node/nope")).json() is None
    assert (await client.get("/v1/catalog/service/nope")).json() == []
    assert (await client.get("/v1/health/service/nope")).json() == []


async def test_a_service_without_tags_has_an_empty_list(client: httpx.AsyncClient) -> None:
    await registered(client, {"Node": "n1", "Address": "a", "Service": {"Service": "db"}})
    [flat] = (await client.get("/v1/catalog/service/db")).json()
    assert (flat["ServiceTags"], flat["ServiceID"]) == ([], "db")  # the ID defaults to the name
    [entry] = (await client.get("/v1/health/service/db")).json()
    assert (entry["Service"]["Tags"], entry["Checks"]) == ([], [])


async def test_the_go_clients_body_is_taken_as_it_comes(client: httpx.AsyncClient) -> None:
    """`api.CatalogRegistration` as the official client marshals it: nulls, zero weights, a full check."""
    definition = {"HTTP": "", "Header": None, "Method": "", "Body": "", "TLSServerName": "", "TLSSkipVerify": False,
                  "TCP": "", "UDP": "", "GRPC": "", "GRPCUseTLS": False, "Interval": "0s", "Timeout": "0s",
                  "DeregisterCriticalServiceAfter": "0s"}  # fmt: skip
    body = {
        "ID": "", "Node": "n1", "Address": "10.0.0.1", "TaggedAddresses": None, "NodeMeta": None, "Datacenter": "",
        "Service": {"ID": "web-1", "Service": "web", "Tags": None, "Meta": None, "Port": 80, "Address": "",
                    "Weights": {"Passing": 0, "Warning": 0}, "EnableTagOverride": False},
        "Check": None,
        "Checks": [{"Node": "", "CheckID": "c", "Name": "c", "Status": "warning", "Notes": "", "Output": "",
                    "ServiceID": "web-1", "ServiceName": "", "ServiceTags": None, "Type": "", "ExposedPort": 0,
                    "Definition": definition, "CreateIndex": 0, "ModifyIndex": 0}],
        "SkipNodeUpdate": False,
    }  # fmt: skip
    await registered(client, body)
    [entry] = (await client.get("/v1/health/service/web")).json()
    assert entry["Service"]["Weights"] == {"Passing": 1, "Warning": 1}  # 0/0 (unset) reads as Consul's default
    assert [(c["CheckID"], c["Status"], c["ServiceName"]) for c in entry["Checks"]] == [("c", "warning", "web")]


async def test_keys_match_case_insensitively_as_in_go(client: httpx.AsyncClient) -> None:
    await registered(client, {"node": "n1", "ADDRESS": "a", "service": {"service": "web", "tags": ["x"]}})
    assert (await client.get("/v1/catalog/services")).json() == {"web": ["x"]}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Must provide node"),
        ({"Node": "n\u0000", "Address": "a"}, "Node name must not contain a NUL character"),
        ({"Node": "n" * 257, "Address": "a"}, "Node name is too long (limit: 256 bytes)"),
        (
            {"Node": "n1", "Address": "a", "Checks": [{"CheckID": f"c{i}"} for i in range(129)]},
            "Too many checks (limit: 128)",
        ),
        ({"Node": "n1"}, "Must provide address if SkipNodeUpdate is not set"),
        ({"Node": "n1", "Address": "a", "ID": "abc"}, "Bad node ID: uuid string is wrong length"),
        ({"Node": "n1", "Address": "a", "ID": "z" * 36}, "Bad node ID: uuid is improperly formatted"),
        (
            {"Node": "n1", "Address": "a", "Service": {"ID": "w"}},
            "Must provide service name (Service.Service) when service ID is provided",
        ),
        ({"Node": "n1", "Address": "a", "Service": {"Service": "w", "Address": "0.0.0.0"}}, "Invalid service address"),  # noqa: S104
        ({"Node": "n1", "Address": "a", "Service": {"Service": "w", "Address": "[::]"}}, "Invalid service address"),
        (
            {"Node": "n1", "Address": "a", "Checks": [{"Node": "n2", "CheckID": "c"}]},
            "Node 'n2' for check 'c' doesn't match register request node 'n1'",
        ),
        (
            {"Node": "n1", "Address": "a", "Check": {"CheckID": "c", "ServiceID": "nope"}},
            "Unknown service ID 'nope' for check ID 'c'",
        ),
        (
            {"Node": "n1", "Address": "a", "Check": {"CheckID": "c", "Status": "ok"}},
            "Status for checks must 'passing', 'warning', 'critical'",
        ),
        ({"Node": "n1", "Address": "a", "Check": {"Status": "passing"}}, "Missing check ID"),
        ({"Node": "n1", "Address": "a", "PeerName": "east"}, "cannot register requests with PeerName in them"),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "PeerName": "east"}},
            "cannot register requests with PeerName in them",
        ),
        (
            {"Node": "n1", "Address": "a", "Checks": [{"CheckID": "c", "PeerName": "east"}]},
            "cannot register requests with PeerName in them",
        ),
        ({"Node": "n1", "Address": "a", "Datacenter": "dc9"}, "No path to datacenter"),
        (
            {"Node": "n1", "Address": "a", "SkipNodeUpdate": True, "Service": {"Service": "w"}},
            "Missing node registration",
        ),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "Kind": "connect-proxy"}},
            'Service kind "connect-proxy" is not supported: only typical services (Kind "")',
        ),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "Connect": {"Native": True}}},
            "Service.Connect is not supported",
        ),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "Port": 70000}},
            "Invalid service port 70000: must be between 0 and 65535",
        ),
        (
            {"Node": "n1", "Address": "a", "NodeMeta": {"bad key": "v"}},
            "meta tags failed validation: Couldn't load metadata pair ('bad key', 'v'): Key contains invalid characters",
        ),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "Meta": {"consul-x": "v"}}},
            "Invalid Service Meta: Couldn't load metadata pair ('consul-x', 'v'): Key prefix 'consul-' is reserved for "
            "internal use",
        ),
        ({"Node": "n1", "Address": "a", "Bogus": 1}, 'Request decode failed: json: unknown field "Bogus"'),
        (
            {"Node": "n1", "Address": "a", "Namespace": "x"},
            'Request decode failed: json: unknown field "Namespace" - Namespaces are a Consul Enterprise feature',
        ),
        ({"Node": 1}, 'Request decode failed: json: cannot unmarshal number into field "Node" of type string'),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "Port": "80"}},
            'Request decode failed: json: cannot unmarshal string into field "Service.Port" of type the documented type',
        ),
        (
            {"Node": "n1", "Address": "a", "Service": {"Service": "w", "Tags": "v1"}},
            'Request decode failed: json: cannot unmarshal string into field "Service.Tags" of type array',
        ),
        ([], "Request decode failed: json: cannot unmarshal array into an object"),
    ],
)
async def test_register_refusals(client: httpx.AsyncClient, body: Any, message: str) -> None:
    response = await put(client, "/v1/catalog/register", body)
    assert (response.status_code, response.text) == (400, message)
    assert (await client.get("/v1/catalog/nodes")).json() == []


@pytest.mark.parametrize("raw", [b"", b"{", b"nope", b'{"Node": "\\ud800"}'])
async def test_register_refuses_what_is_not_json(client: httpx.AsyncClient, raw: bytes) -> None:
    response = await client.put("/v1/catalog/register", content=raw)
    assert response.status_code == 400
    assert response.text.startswith("Request decode failed: ")


async def test_deregister_a_check_an_instance_and_a_node(client: httpx.AsyncClient) -> None:
    await registered(client, WEB)
    await registered(client, {"Node": "n1", "Address": "10.0.0.1", "Service": {"ID": "web-2", "Service": "web"}})
    ok = await put(client, "/v1/catalog/deregister", {"Node": "n1", "CheckID": "serfHealth"})
    assert (ok.status_code, ok.json()) == (200, True)
    checks = (await client.get("/v1/health/state/any")).json()
    assert [c["CheckID"] for c in checks] == ["web-1-http"]
    # ServiceID wins over CheckID, as Consul's applyDeregister
    await put(client, "/v1/catalog/deregister", {"Node": "n1", "ServiceID": "web-1", "CheckID": "nope"})
    assert [e["Service"]["ID"] for e in (await client.get("/v1/health/service/web")).json()] == ["web-2"]
    assert (await client.get("/v1/health/state/any")).json() == []  # the instance's checks went with it
    await put(client, "/v1/catalog/deregister", {"Node": "n1"})
    assert (await client.get("/v1/catalog/nodes")).json() == []
    assert (await client.get("/v1/catalog/services")).json() == {}
    gone = await put(client, "/v1/catalog/deregister", {"Node": "n1", "ServiceID": "web-9"})
    assert (gone.status_code, gone.json()) == (200, True)  # nothing to remove is fine


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Must provide node"),
        ({"Node": "n1", "PeerName": "east"}, "cannot register requests with PeerName in them"),
        ({"Node": "n1", "Datacenter": "dc9"}, "No path to datacenter"),
        ({"Node": "n1", "Nope": True}, 'Request decode failed: json: unknown field "Nope"'),
    ],
)
async def test_deregister_refusals(client: httpx.AsyncClient, body: Any, message: str) -> None:
    response = await put(client, "/v1/catalog/deregister", body)
    assert (response.status_code, response.text) == (400, message)


async def test_reregistering_an_instance_renames_its_checks(client: httpx.AsyncClient) -> None:
    await registered(client, WEB)
    await registered(client, {"Node": "n1", "Address": "10.0.0.1", "Service": {"ID": "web-1", "Service": "www",
                                                                               "Tags": ["v2"]}})  # fmt: skip
    [check] = (await client.get("/v1/health/checks/www")).json()
    assert (check["CheckID"], check["ServiceName"], check["ServiceTags"]) == ("web-1-http", "www", ["v2"])
    assert (await client.get("/v1/catalog/services")).json() == {"www": ["v2"]}


async def test_imported_rows_are_read_only_with_peer(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """`?peer=` reads one peering's rows with `PeerName` everywhere; local reads never see them, a local node
    of the same name is independent, and deregistering it leaves the imported one alone."""
    await registered(client, WEB)
    await imported(runtime, "east")
    [mine] = (await client.get("/v1/health/service/web")).json()
    assert mine["Service"]["Port"] == 8080
    assert "PeerName" not in mine["Node"]
    [theirs] = (await client.get("/v1/health/service/web?peer=east")).json()
    assert (theirs["Node"]["PeerName"], theirs["Service"]["PeerName"]) == ("east", "east")
    assert [(c["CheckID"], c["PeerName"]) for c in theirs["Checks"]] == [("web-1:overall-check", "east")]
    assert (theirs["Node"]["Datacenter"], theirs["Service"]["Port"]) == ("dc-east", 9090)
    [flat] = (await client.get("/v1/catalog/service/web?peer=east")).json()
    assert (flat["PeerName"], flat["Node"]) == ("east", "n1")
    assert (await client.get("/v1/catalog/services?peer=east")).json() == {"web": ["v9"]}
    assert [n["PeerName"] for n in (await client.get("/v1/catalog/nodes?peer=east")).json()] == ["east"]
    assert (await client.get("/v1/catalog/node/n1?peer=east")).json()["Node"]["Address"] == "10.9.0.1"
    assert [c["PeerName"] for c in (await client.get("/v1/health/checks/web?peer=east")).json()] == ["east"]
    assert len((await client.get("/v1/health/state/passing?peer=east")).json()) == 1
    for path in ("/v1/health/service/web?peer=west", "/v1/health/service/web?peer=Not%20A%20Name",
                 "/v1/catalog/nodes?peer=%00", "/v1/catalog/service/nope?peer=east"):  # fmt: skip
        response = await client.get(path)
        assert (response.status_code, response.json()) == (200, []), path
    assert (await client.get("/v1/catalog/services?peer=west")).json() == {}
    await put(client, "/v1/catalog/deregister", {"Node": "n1"})
    assert (await client.get("/v1/catalog/nodes")).json() == []
    assert len((await client.get("/v1/catalog/nodes?peer=east")).json()) == 1
    refused = await put(client, "/v1/catalog/deregister", {"Node": "n1", "PeerName": "east"})
    assert refused.status_code == 400
    assert len((await client.get("/v1/health/service/web?peer=east")).json()) == 1


async def test_tag_and_passing_filters(client: httpx.AsyncClient) -> None:
    await registered(client, WEB)
    await registered(client, {"Node": "n2", "Address": "10.0.0.2", "Service": {"ID": "web-2", "Service": "web",
                              "Tags": ["v1"]}, "Check": {"CheckID": "bad", "ServiceID": "web-2", "Status": "warning"}})  # fmt: skip

    async def ids(path: str) -> list[str]:
        response = await client.get(path)
        assert response.status_code == 200, response.text
        return [e["Service"]["ID"] if "Service" in e else e["ServiceID"] for e in response.json()]

    assert await ids("/v1/health/service/web") == ["web-1", "web-2"]
    assert await ids("/v1/health/service/web?tag=v1") == ["web-1", "web-2"]
    assert await ids("/v1/health/service/web?tag=v1&tag=blue") == ["web-1"]  # every tag, case-insensitively
    assert await ids("/v1/catalog/service/web?tag=BLUE") == ["web-1"]
    assert await ids("/v1/health/service/web?tag=v3") == []
    assert await ids("/v1/health/service/web?passing") == ["web-1"]
    assert await ids("/v1/health/service/web?passing=1") == ["web-1"]
    assert await ids("/v1/health/service/web?passing=false") == ["web-1", "web-2"]
    bad = await client.get("/v1/health/service/web?passing=maybe")
    assert (bad.status_code, bad.text) == (400, "Invalid value for ?passing")


async def test_checks_by_state(client: httpx.AsyncClient) -> None:
    extra = [{"CheckID": "w", "Status": "warning"}, {"CheckID": "c"}]
    await registered(client, {**WEB, "Checks": [*WEB["Checks"], *extra]})

    async def states(state: str) -> list[str]:
        return [c["CheckID"] for c in (await client.get(f"/v1/health/state/{state}")).json()]

    assert await states("any") == ["c", "serfHealth", "w", "web-1-http"]
    assert await states("passing") == ["serfHealth", "web-1-http"]
    assert await states("warning") == ["w"]
    assert await states("critical") == ["c"]  # a check registered without a status is critical
    assert await states("maintenance") == []  # another state matches nothing, as in Consul
    assert [c["CheckID"] for c in (await client.get("/v1/health/checks/web")).json()] == ["web-1-http"]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("/v1/catalog/service/", "Missing service name"),
        ("/v1/catalog/node/", "Missing node name"),
        ("/v1/health/service/", "Missing service name"),
        ("/v1/health/checks/", "Missing service name"),
        ("/v1/health/state/", "Missing check state"),
        (
            "/v1/catalog/services?partition=Bad_Name",
            "Bad_Name is not a valid partition name: a valid partition name "
            "must consist of alphanumeric characters or '-', and must start and end with an alphanumeric character",
        ),
        ("/v1/health/service/web?index=x", "Invalid index"),
        ("/v1/health/service/web?wait=forever&index=1", "Invalid wait time"),
        ("/v1/catalog/nodes?dc=dc9", "No path to datacenter"),
    ],
)
async def test_read_refusals(client: httpx.AsyncClient, path: str, message: str) -> None:
    response = await client.get(path)
    assert (response.status_code, response.text) == (400, message)
    assert int(response.headers["X-Consul-Index"]) >= 1


@pytest.mark.parametrize(
    "path",
    [
        "/v1/catalog/services", "/v1/catalog/service/web", "/v1/catalog/nodes", "/v1/catalog/node/n1",
        "/v1/health/service/web", "/v1/health/checks/web", "/v1/health/state/any", "/v1/agent/services",
        "/v1/agent/checks",
    ],
)  # fmt: skip
async def test_filter_is_refused_never_ignored(client: httpx.AsyncClient, path: str) -> None:
    response = await client.get(path, params={"filter": 'Service == "web"'})
    assert (response.status_code, response.text) == (400, "filter expressions are not supported on this endpoint")


async def test_filter_is_refused_on_writes_too(client: httpx.AsyncClient) -> None:
    response = await client.put("/v1/catalog/register?filter=x", json=WEB)
    assert (response.status_code, response.text) == (400, "filter expressions are not supported on this endpoint")


async def test_partitions_are_separate_catalogs(client: httpx.AsyncClient) -> None:
    await registered(client, {**WEB, "Partition": "team-a"})
    await registered(client, {"Node": "n9", "Address": "a"})
    assert (await client.get("/v1/catalog/services")).json() == {}
    assert (await client.get("/v1/catalog/services?partition=team-a")).json() == {"web": ["Blue", "v1"]}
    [entry] = (await client.get("/v1/health/service/web?partition=TEAM-A")).json()
    assert (entry["Node"]["Partition"], entry["Service"]["Partition"]) == ("team-a", "team-a")
    assert [n["Node"] for n in (await client.get("/v1/catalog/nodes")).json()] == ["n9"]


async def test_a_blocking_query_wakes_on_a_write_and_times_out_with_the_same_index(client: httpx.AsyncClient) -> None:
    await registered(client, WEB)
    first = await client.get("/v1/health/service/web")
    index = int(first.headers["X-Consul-Index"])
    quiet = await client.get(f"/v1/health/service/web?index={index}&wait=100ms")
    assert (quiet.status_code, int(quiet.headers["X-Consul-Index"]), quiet.json()) == (200, index, first.json())
    waiting = asyncio.create_task(client.get(f"/v1/health/service/web?index={index}&wait=30s"))
    await asyncio.sleep(0)  # let it start waiting; the write below wakes it whenever it lands
    assert not waiting.done()
    await registered(client, {**WEB, "Checks": [{"CheckID": "web-1-http", "ServiceID": "web-1", "Status": "critical"}]})
    async with asyncio.timeout(5):
        woken = await waiting
    assert int(woken.headers["X-Consul-Index"]) > index
    assert "critical" in [c["Status"] for c in woken.json()[0]["Checks"]]


async def test_an_identical_registration_bumps_no_index(client: httpx.AsyncClient) -> None:
    await registered(client, WEB)
    before = (await client.get("/v1/health/service/web")).headers["X-Consul-Index"]
    await registered(client, WEB)
    assert (await client.get("/v1/health/service/web")).headers["X-Consul-Index"] == before


async def test_blocking_on_another_service_does_not_wake_for_this_one(client: httpx.AsyncClient) -> None:
    """The index is per scope (partition, peer): imported writes do not wake a local query."""
    await registered(client, WEB)
    index = int((await client.get("/v1/catalog/services")).headers["X-Consul-Index"])
    waiting = asyncio.create_task(client.get(f"/v1/catalog/services?index={index}&wait=300ms"))
    await registered(client, {**WEB, "Partition": "team-b"})  # another scope
    response = await waiting
    assert int(response.headers["X-Consul-Index"]) == index


# -- ACLs (SPEC §14): service/node rules, result filtering, the imported-data rule


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path):
        yield cluster


async def _secret(acl: Acl, rules: str) -> str:
    name = f"p{abs(hash(rules))}"
    await acl.policy(name, rules)
    return str((await acl.token(name))["SecretID"])


async def test_register_needs_node_write_and_service_write(acl: Acl) -> None:
    service_only = await _secret(acl, 'service "web" { policy = "write" }')
    both = await _secret(acl, 'service "web" { policy = "write" }\nnode "n1" { policy = "write" }')
    async with acl.client() as client:
        denied = await put(client, "/v1/catalog/register", WEB, **{"X-Consul-Token": service_only})
        assert denied.status_code == 403
        assert "lacks permission 'node:write' on \"n1\"" in denied.text
        assert (await put(client, "/v1/catalog/register", WEB, **{"X-Consul-Token": both})).status_code == 200
        # the same node data again needs no node:write (Consul's ChangesNode), but a node check does
        again = await put(client, "/v1/catalog/register", {**WEB, "Checks": []}, **{"X-Consul-Token": service_only})
        assert again.status_code == 200, again.text
        other = {**WEB, "Service": {"Service": "db"}, "Checks": []}
        refused = await put(client, "/v1/catalog/register", other, **{"X-Consul-Token": both})
        assert refused.status_code == 403
        assert "'service:write' on \"db\"" in refused.text
        # node:write alone deregisters anything on the node
        node_only = await _secret(acl, 'node "n1" { policy = "write" }')
        gone = await put(client, "/v1/catalog/deregister", {"Node": "n1", "ServiceID": "web-1"},
                         **{"X-Consul-Token": node_only})  # fmt: skip
        assert gone.status_code == 200


async def test_reads_are_filtered_and_say_so_to_an_authenticated_caller(acl: Acl) -> None:
    await acl.management("PUT", "/v1/catalog/register", WEB)
    await acl.management(
        "PUT", "/v1/catalog/register", {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db"}}
    )
    reader = await _secret(acl, 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }')
    async with acl.client(**{"X-Consul-Token": reader}) as client:
        services = await client.get("/v1/catalog/services")
        assert services.json() == {"web": ["Blue", "v1"]}
        assert services.headers["X-Consul-Results-Filtered-By-ACLs"] == "true"
        health = await client.get("/v1/health/service/db")
        assert (health.json(), health.headers["X-Consul-Results-Filtered-By-ACLs"]) == ([], "true")
        web = await client.get("/v1/health/service/web")
        assert len(web.json()) == 1
        assert "X-Consul-Results-Filtered-By-ACLs" not in web.headers
        node = (await client.get("/v1/catalog/node/n1")).json()
        assert list(node["Services"]) == ["web-1"]
    async with acl.client() as anonymous:
        hidden = await anonymous.get("/v1/catalog/services")
        assert hidden.json() == {}
        assert "X-Consul-Results-Filtered-By-ACLs" not in hidden.headers


@pytest.mark.parametrize(
    ("rules", "allowed"),
    [
        ('service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }', False),
        ('service_prefix "" { policy = "read" }', False),
        ('service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }', True),
        ('service "anything" { policy = "write" }', True),
    ],
)
async def test_imported_rows_need_write_on_any_service_or_read_on_all(acl: Acl, rules: str, allowed: bool) -> None:
    await imported(acl.runtime, "east")
    secret = await _secret(acl, rules)
    async with acl.client(**{"X-Consul-Token": secret}) as client:
        for path in ("/v1/health/service/web?peer=east", "/v1/catalog/services?peer=east"):
            response = await client.get(path)
            assert response.status_code == (200 if allowed else 403), (path, response.text)
            if not allowed:
                assert "lacks permission 'service:write' on any service" in response.text


async def test_unknown_token_is_refused_on_reads(acl: Acl) -> None:
    async with acl.client(**{"X-Consul-Token": "00000000-0000-4000-8000-000000000009"}) as client:
        response = await client.get("/v1/catalog/services")
    assert (response.status_code, response.text) == (403, "ACL not found")
