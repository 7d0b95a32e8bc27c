"""The agent endpoints (SPEC §13): services on this cluster's own node, TTL checks driven by pass/warn/fail,
service maintenance, Consul's check IDs, shapes and messages, status precedence, ACLs. In-process, SQLite."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.app import Runtime
from peering.catalog.model import Health, summary
from tests.test_acl import Acl, _acl_cluster
from tests.test_catalog_api import put

pytestmark = pytest.mark.anyio

API = {"Name": "api", "ID": "api-1", "Port": 8081, "Tags": ["v1"], "Check": {"TTL": "30s"}}


async def agent_registered(client: httpx.AsyncClient, body: Any, query: str = "") -> None:
    response = await put(client, f"/v1/agent/service/register{query}", body)
    assert (response.status_code, response.text) == (200, ""), response.text


async def checks(client: httpx.AsyncClient) -> dict[str, Any]:
    response = await client.get("/v1/agent/checks")
    assert response.status_code == 200
    return dict(response.json())


async def test_register_shows_on_the_agent_node_in_consuls_shapes(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await agent_registered(client, API)
    services = (await client.get("/v1/agent/services")).json()
    assert list(services) == ["api-1"]
    assert services["api-1"] == {
        "ID": "api-1", "Service": "api", "Tags": ["v1"], "Meta": {}, "Port": 8081, "Address": "",
        "Weights": {"Passing": 1, "Warning": 1}, "EnableTagOverride": False, "Datacenter": "dc1",
    }  # fmt: skip
    [check] = (await checks(client)).values()
    assert check["CheckID"] == "service:api-1"
    assert (check["Name"], check["Status"], check["Type"]) == ("Service 'api' check", "critical", "ttl")
    assert (check["ServiceID"], check["ServiceName"], check["ServiceTags"]) == ("api-1", "api", ["v1"])
    node_name = runtime.settings.node_name
    assert check["Node"] == node_name
    [node] = (await client.get("/v1/catalog/nodes")).json()
    assert (node["Node"], node["Address"], node["Datacenter"]) == (node_name, "127.0.0.1", "dc1")
    assert node["TaggedAddresses"]["lan"] == "127.0.0.1"
    assert len(node["ID"]) == 36
    [entry] = (await client.get("/v1/health/service/api")).json()
    assert entry["Checks"][0]["CheckID"] == "service:api-1"


async def test_check_ids_and_names_follow_consul(client: httpx.AsyncClient) -> None:
    body = {"Name": "api", "Checks": [{"TTL": "10s"}, {"TTL": "20s", "Status": "passing"},
                                      {"CheckID": "mine", "Name": "Mine", "TTL": 5000000000, "Notes": "n"}]}  # fmt: skip
    await agent_registered(client, body)
    found = await checks(client)
    assert sorted(found) == ["mine", "service:api:1", "service:api:2"]
    assert found["service:api:2"]["Status"] == "passing"
    assert (found["mine"]["Name"], found["mine"]["Notes"]) == ("Mine", "n")


async def test_pass_warn_fail_and_update_drive_a_ttl_check(client: httpx.AsyncClient) -> None:
    await agent_registered(client, API)
    for verb, status in (("pass", "passing"), ("warn", "warning"), ("fail", "critical"), ("pass", "passing")):
        response = await client.put(f"/v1/agent/check/{verb}/service:api-1", params={"note": f"{verb} note"})
        assert (response.status_code, response.text) == (200, "")
        check = (await checks(client))["service:api-1"]
        assert (check["Status"], check["Output"]) == (status, f"{verb} note")
    updated = await put(client, "/v1/agent/check/update/service:api-1", {"Status": "warning", "Output": "slow"})
    assert updated.status_code == 200
    assert [(c["Status"], c["Output"]) for c in (await checks(client)).values()] == [("warning", "slow")]
    long = await client.put("/v1/agent/check/pass/service:api-1", params={"note": "x" * 5000})
    assert long.status_code == 200
    assert (await checks(client))["service:api-1"]["Output"] == "x" * 4096 + " ... (captured 4096 of 5000 bytes)"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("PUT", "/v1/agent/check/pass/nope", None, 404,
         'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'),
        ("PUT", "/v1/agent/check/fail/nope", None, 404,
         'Unknown check ID "nope". Ensure that the check ID is passed, not the check name.'),
        ("PUT", "/v1/agent/check/update/service:api-1", {"Status": "ok"}, 400, "Invalid check status: 'ok'"),
        ("PUT", "/v1/agent/check/update/service:api-1", {"Status": "passing", "Extra": 1}, 400,
         'Request decode failed: json: unknown field "Extra"'),
        ("PUT", "/v1/agent/service/deregister/nope", None, 404,
         'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'),
        ("PUT", "/v1/agent/service/maintenance/api-1", None, 400, "Missing value for enable"),
        ("PUT", "/v1/agent/service/maintenance/api-1?enable=sure", None, 400, 'Invalid value for enable: "sure"'),
        ("PUT", "/v1/agent/service/maintenance/nope?enable=true", None, 404,
         'Unknown service ID "nope". Ensure that the service ID is passed, not the service name.'),
        ("PUT", "/v1/agent/service/maintenance/", None, 400, "Missing service ID"),
        ("GET", "/v1/agent/services?partition=team-a", None, 400,
         'Partition "team-a" is not the agent\'s partition ("default")'),
    ],
)  # fmt: skip
async def test_agent_refusals(
    client: httpx.AsyncClient, method: str, path: str, body: Any, status: int, message: str
) -> None:
    await agent_registered(client, API)
    response = await client.request(method, path, json=body)
    assert (response.status_code, response.text) == (status, message)


async def test_a_maintenance_check_has_no_ttl_to_renew(client: httpx.AsyncClient) -> None:
    await agent_registered(client, API)
    assert (await client.put("/v1/agent/service/maintenance/api-1?enable=true")).status_code == 200
    response = await client.put("/v1/agent/check/pass/_service_maintenance:api-1")
    assert (response.status_code, response.text) == (
        400,
        'CheckID "_service_maintenance:api-1" does not have associated TTL',
    )


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "Missing service name"),
        ({"ID": "x"}, "Missing service name"),
        ({"Name": "api", "Address": "0.0.0.0"}, "Invalid service address"),  # noqa: S104
        ({"Name": "api", "Weights": {"Passing": 0, "Warning": 1}}, "Invalid Weights: Passing must be greater than 0"),
        ({"Name": "api", "Weights": {"Passing": 1, "Warning": -1}},
         "Invalid Weights: Warning must be greater or equal than 0"),
        ({"Name": "api", "Meta": {"": "v"}},
         "Invalid Service Meta: Couldn't load metadata pair ('', 'v'): Key cannot be blank"),
        ({"Name": "api", "Check": {"Notes": "no ttl"}}, "Invalid check: TTL must be > 0 for TTL checks"),
        ({"Name": "api", "Check": {"TTL": "0s"}}, "Invalid check: TTL must be > 0 for TTL checks"),
        ({"Name": "api", "Check": {"HTTP": "http://x", "Interval": "10s"}},
         "Invalid check: HTTP checks are not supported, only TTL checks"),
        ({"Name": "api", "Checks": [{"TTL": "1s"}, {"TCP": "x:1", "Interval": "1s"}]},
         "Invalid check: TCP checks are not supported, only TTL checks"),
        ({"Name": "api", "Check": {"TTL": "10s", "Interval": "10s"}},
         "Invalid check: Interval and TTL cannot both be specified"),
        ({"Name": "api", "Check": {"TTL": "10s", "DeregisterCriticalServiceAfter": "1m"}},
         "Invalid check: DeregisterCriticalServiceAfter is not supported"),
        ({"Name": "api", "Check": {"TTL": "10s", "Status": "fine"}},
         "Status for checks must 'passing', 'warning', 'critical'"),
        ({"Name": "api", "Check": {"TTL": "ten seconds"}}, 'Request decode failed: time: invalid duration "ten seconds"'),
        ({"Name": "api", "Check": {"TTL": True}},
         'Request decode failed: json: cannot unmarshal bool into field "Check.TTL" of type string'),
        ({"Name": "api", "PeerName": "east"}, "cannot register requests with PeerName in them"),
        ({"Name": "api", "Partition": "team-a"}, 'Partition "team-a" is not the agent\'s partition ("default")'),
        ({"Name": "api", "Kind": "mesh-gateway"},
         'Service kind "mesh-gateway" is not supported: only typical services (Kind "")'),
        ({"Name": "api", "Proxy": {"DestinationServiceName": "web"}}, "Proxy is not supported"),
        ({"Name": "api", "Checks": [{"TTL": "1s"}] * 129}, "Too many checks (limit: 128)"),
        ({"Name": "api", "Check": {"TTL": "1s", "CheckID": "a\u0000"}}, "Check ID must not contain a NUL character"),
        ({"Name": "api", "Check": {"TTL": "1s", "Notes": "x" * 4097}}, "Notes is too long (limit: 4096 characters)"),
        ({"Name": "api", "Check": {"TTL": 2**63}}, "Request decode failed: TTL: duration out of range"),
        ({"Name": "api", "Sidecar": 1}, 'Request decode failed: json: unknown field "Sidecar"'),
    ],
)  # fmt: skip
async def test_agent_register_refusals(client: httpx.AsyncClient, body: Any, message: str) -> None:
    response = await put(client, "/v1/agent/service/register", body)
    assert (response.status_code, response.text) == (400, message)
    assert (await client.get("/v1/agent/services")).json() == {}


async def test_go_client_and_snake_case_definitions_are_taken(client: httpx.AsyncClient) -> None:
    await agent_registered(client, {"ID": "", "Name": "api", "Check": None, "Checks": None, "Weights": {"Passing": 3,
                                    "Warning": 1}, "enable_tag_override": True, "tagged_addresses": {"lan": {
                                    "address": "10.0.0.5", "port": 81}}})  # fmt: skip
    service = (await client.get("/v1/agent/services")).json()["api"]
    assert (service["Weights"], service["EnableTagOverride"]) == ({"Passing": 3, "Warning": 1}, True)
    assert service["TaggedAddresses"] == {"lan": {"Address": "10.0.0.5", "Port": 81}}
    [flat] = (await client.get("/v1/catalog/service/api")).json()
    assert flat["ServiceTaggedAddresses"] == {"lan": {"Address": "10.0.0.5", "Port": 81}}
    assert await checks(client) == {}  # a definition without checks has none


async def test_reregistering_keeps_check_state_and_replace_drops_the_rest(client: httpx.AsyncClient) -> None:
    two = {**API, "Check": None, "Checks": [{"CheckID": "a", "TTL": "30s"}, {"CheckID": "b", "TTL": "30s"}]}
    await agent_registered(client, two)
    await client.put("/v1/agent/check/pass/a?note=fine")
    await client.put("/v1/agent/service/maintenance/api-1?enable=true&reason=patching")
    await agent_registered(client, {**API, "Tags": ["v2"], "Check": {"CheckID": "a", "TTL": "30s"}})
    kept = await checks(client)
    assert sorted(kept) == ["_service_maintenance:api-1", "a", "b"]  # without the flag the others stay
    assert (kept["a"]["Status"], kept["a"]["Output"]) == ("passing", "fine")  # re-registered: state kept
    assert kept["b"]["ServiceTags"] == ["v2"]
    assert kept["_service_maintenance:api-1"]["ServiceTags"] == ["v2"]
    await agent_registered(client, {**API, "Check": {"CheckID": "a", "TTL": "30s"}}, "?replace-existing-checks")
    assert sorted(await checks(client)) == ["_service_maintenance:api-1", "a"]  # maintenance stays


async def test_deregister_removes_the_instance_and_its_checks(client: httpx.AsyncClient) -> None:
    await agent_registered(client, API)
    response = await client.put("/v1/agent/service/deregister/api-1")
    assert (response.status_code, response.text) == (200, "")
    assert (await client.get("/v1/agent/services")).json() == {}
    assert await checks(client) == {}
    assert (await client.get("/v1/health/service/api")).json() == []


async def test_maintenance_is_consuls_critical_check(client: httpx.AsyncClient) -> None:
    await agent_registered(client, {**API, "Check": {"TTL": "30s", "Status": "passing"}})
    assert (await client.put("/v1/agent/service/maintenance/api-1?enable=true")).status_code == 200
    maintenance = (await checks(client))["_service_maintenance:api-1"]
    assert (maintenance["Name"], maintenance["Status"], maintenance["Type"]) == (
        "Service Maintenance Mode", "critical", "maintenance"
    )  # fmt: skip
    assert maintenance["Notes"].startswith("Maintenance mode is enabled for this service, but no reason was provided")
    await client.put("/v1/agent/service/maintenance/api-1?enable=true&reason=other")  # enabled already: kept
    assert (await checks(client))["_service_maintenance:api-1"]["Notes"] == maintenance["Notes"]
    assert (await client.get("/v1/health/service/api?passing")).json() == []
    await client.put("/v1/agent/service/maintenance/api-1?enable=false")
    assert "_service_maintenance:api-1" not in await checks(client)
    assert len((await client.get("/v1/health/service/api?passing")).json()) == 1
    await client.put("/v1/agent/service/maintenance/api-1?enable=1&reason=patching")
    assert (await checks(client))["_service_maintenance:api-1"]["Notes"] == "patching"
    assert (await client.put("/v1/agent/service/maintenance/api-1?enable=f")).status_code == 200
    assert "_service_maintenance:api-1" not in await checks(client)


async def test_status_precedence_over_the_stored_checks(client: httpx.AsyncClient, runtime: Runtime) -> None:
    """maintenance > critical > warning > passing, on checks as the catalog holds them (the summary the
    exporter sends a peer as `overall-check`)."""
    assert runtime.catalog is not None
    body = {"Name": "api", "Checks": [{"CheckID": c, "TTL": "30s", "Status": "passing"} for c in ("a", "b")]}
    await agent_registered(client, body)

    async def summarized() -> Health | None:
        assert runtime.catalog is not None
        [entry] = (await runtime.catalog.reads.service_health(None, None, "api")).value
        return summary(entry.checks)

    assert await summarized() is Health.PASSING
    await client.put("/v1/agent/check/warn/a")
    assert await summarized() is Health.WARNING
    await client.put("/v1/agent/check/fail/b")
    assert await summarized() is Health.CRITICAL
    await client.put("/v1/agent/check/pass/a")
    await client.put("/v1/agent/check/pass/b")
    await client.put("/v1/agent/service/maintenance/api?enable=true")
    assert await summarized() is Health.MAINTENANCE
    [entry] = (await client.get("/v1/health/service/api")).json()
    assert sorted(c["Status"] for c in entry["Checks"]) == ["critical", "passing", "passing"]


# -- ACLs


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path):
        yield cluster


async def test_agent_writes_need_service_write_and_reads_are_filtered(acl: Acl) -> None:
    await acl.policy("api-writer", 'service "api" { policy = "write" }')
    await acl.policy("other-reader", 'service "other" { policy = "read" }')
    writer = (await acl.token("api-writer"))["SecretID"]
    reader = (await acl.token("other-reader"))["SecretID"]
    async with acl.client() as client:
        denied = await put(client, "/v1/agent/service/register", API, **{"X-Consul-Token": reader})
        assert denied.status_code == 403
        assert "lacks permission 'service:write' on \"api\"" in denied.text
        assert (await put(client, "/v1/agent/service/register", API, **{"X-Consul-Token": writer})).status_code == 200
        await put(client, "/v1/agent/service/register", {"Name": "other"}, **{"X-Consul-Token": "x"})
        fail = await client.put("/v1/agent/check/fail/service:api-1", headers={"X-Consul-Token": reader})
        assert fail.status_code == 403
        assert (
            await client.put("/v1/agent/check/pass/service:api-1", headers={"X-Consul-Token": writer})
        ).status_code == 200
        maintenance = await client.put(
            "/v1/agent/service/maintenance/api-1?enable=true", headers={"X-Consul-Token": reader}
        )
        assert maintenance.status_code == 403
        listed = await client.get("/v1/agent/services", headers={"X-Consul-Token": reader})
        assert (listed.json(), listed.headers["X-Consul-Results-Filtered-By-ACLs"]) == ({}, "true")
        mine = await client.get("/v1/agent/checks", headers={"X-Consul-Token": writer})
        assert list(mine.json()) == ["service:api-1"]
        gone = await client.put("/v1/agent/service/deregister/api-1", headers={"X-Consul-Token": reader})
        assert gone.status_code == 403
        unknown = await client.get("/v1/agent/services", headers={"X-Consul-Token": "not-a-token"})
        assert (unknown.status_code, unknown.text) == (403, "ACL not found")
