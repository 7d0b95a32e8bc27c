"""The client HTTP API end to end over ASGI: shapes, headers, exact messages, and no 500s."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator

import httpx
import pytest

from peering.app import Runtime, create_app, open_runtime
from peering.domain import Peering, PeeringState, Role
from peering.settings import Settings

NAME_RULE = (
    "is not a valid peer name: a valid peering name must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)

pytestmark = pytest.mark.anyio


async def generate(client: httpx.AsyncClient, name: str = "cluster-02", **body: object) -> str:
    response = await client.post("/v1/peering/token", json={"PeerName": name, **body})
    assert response.status_code == 200, response.text
    return str(response.json()["PeeringToken"])


def token_fields(token: str) -> dict[str, object]:
    return dict(json.loads(base64.b64decode(token)))


async def test_generate_then_read_shows_the_seed_field_set(client: httpx.AsyncClient) -> None:
    """A new token creates an INITIAL peering whose read has Consul's fields in Consul's order."""
    token = await generate(client, Meta={"env": "production"})
    response = await client.get("/v1/peering/cluster-02")
    assert response.status_code == 200
    body = response.json()
    assert list(body) == [
        "ID",
        "Name",
        "Partition",
        "Meta",
        "State",
        "ImportedServiceCount",
        "ExportedServiceCount",
        "StreamStatus",
        "Remote",
        "CreateIndex",
        "ModifyIndex",
    ]
    assert body["Name"] == "cluster-02"
    assert body["Partition"] == "default"
    assert body["Meta"] == {"env": "production"}
    assert body["State"] == "INITIAL"
    assert body["StreamStatus"] == {
        "ImportedServices": [],
        "ExportedServices": [],
        "LastHeartbeat": None,
        "LastReceive": None,
        "LastSend": None,
    }
    assert body["Remote"] == {"Datacenter": "", "Partition": ""}
    assert body["CreateIndex"] == body["ModifyIndex"] >= 1
    assert token_fields(token)["PeerID"] == body["ID"]
    assert response.headers["X-Consul-Index"] == str(body["ModifyIndex"])
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert response.headers["X-Consul-LastContact"] == "0"


async def test_token_carries_the_advertised_address_and_remote(client: httpx.AsyncClient, runtime: Runtime) -> None:
    fields = token_fields(await generate(client))
    assert list(fields) == [
        "CA",
        "ServerAddresses",
        "ServerName",
        "PeerID",
        "EstablishmentSecret",
        "Remote",
        "Signature",
    ]
    assert fields["CA"] == [runtime.identity.ca_pem]
    assert fields["ServerAddresses"] == ["127.0.0.1:8503"]
    assert fields["ServerName"] == "server.dc1.consul"
    assert fields["Remote"] == {"Datacenter": "dc1", "Partition": "default"}


async def test_server_external_addresses_replace_the_advertised_one(client: httpx.AsyncClient) -> None:
    token = await generate(client, ServerExternalAddresses=["lb.example.com:8503", "[2001:db8::1]:443"])
    assert token_fields(token)["ServerAddresses"] == ["lb.example.com:8503", "[2001:db8::1]:443"]


async def test_generate_again_keeps_the_id_and_rotates_the_secret(client: httpx.AsyncClient) -> None:
    first = token_fields(await generate(client))
    before = (await client.get("/v1/peering/cluster-02")).json()
    second = token_fields(await generate(client))
    after = (await client.get("/v1/peering/cluster-02")).json()
    assert first["PeerID"] == second["PeerID"] == after["ID"] == before["ID"]
    assert first["EstablishmentSecret"] != second["EstablishmentSecret"]
    assert after["ModifyIndex"] > before["ModifyIndex"]
    assert after["CreateIndex"] == before["CreateIndex"]


async def test_meta_is_kept_when_absent_and_replaced_when_sent(client: httpx.AsyncClient) -> None:
    await generate(client, Meta={"env": "production"})
    await generate(client)
    assert (await client.get("/v1/peering/cluster-02")).json()["Meta"] == {"env": "production"}
    await generate(client, Meta={"env": "staging"})
    assert (await client.get("/v1/peering/cluster-02")).json()["Meta"] == {"env": "staging"}


async def test_list_is_sorted_and_indexed(client: httpx.AsyncClient) -> None:
    empty = await client.get("/v1/peerings")
    assert empty.status_code == 200
    assert empty.json() == []
    assert int(empty.headers["X-Consul-Index"]) >= 1
    for name in ("cluster-03", "cluster-01", "cluster-02"):
        await generate(client, name)
    response = await client.get("/v1/peerings")
    names = [p["Name"] for p in response.json()]
    assert names == ["cluster-01", "cluster-02", "cluster-03"]
    assert int(response.headers["X-Consul-Index"]) >= max(p["ModifyIndex"] for p in response.json())


async def test_delete_terminates_then_removes(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await generate(client)
    response = await client.delete("/v1/peering/cluster-02")
    assert response.status_code == 200
    assert response.content == b""
    body = (await client.get("/v1/peering/cluster-02")).json()
    assert body["State"] == "TERMINATED"
    assert body["DeletedAt"].endswith("Z")
    assert list(body)[:5] == ["ID", "Name", "Partition", "DeletedAt", "State"]
    # never established: nobody to tell, so it is due at once
    assert await runtime.service.remove_due() == 1
    missing = await client.get("/v1/peering/cluster-02")
    assert missing.status_code == 404
    assert missing.text == 'Peering not found for "cluster-02"'


async def test_delete_unknown_is_fine(client: httpx.AsyncClient) -> None:
    response = await client.delete("/v1/peering/nobody")
    assert (response.status_code, response.content) == (200, b"")


async def test_a_deleted_token_name_cannot_be_regenerated_until_removed(client: httpx.AsyncClient) -> None:
    await generate(client)
    await client.delete("/v1/peering/cluster-02")
    response = await client.post("/v1/peering/token", json={"PeerName": "cluster-02"})
    assert response.status_code == 400
    assert response.text == 'cannot create peering with name: "cluster-02"; the peering is marked for deletion'


async def test_names_are_matched_case_insensitively(client: httpx.AsyncClient) -> None:
    await generate(client, "foo")
    assert (await client.get("/v1/peering/FOO")).json()["Name"] == "foo"


async def test_pretty_indents_by_four_spaces(client: httpx.AsyncClient) -> None:
    await generate(client)
    response = await client.get("/v1/peering/cluster-02?pretty")
    assert response.text.startswith('{\n    "ID": ')
    assert response.text.endswith("}\n")


async def test_partitions_are_real(client: httpx.AsyncClient) -> None:
    """A peering in team-a is invisible from default, and names are unique per partition only."""
    await generate(client, "shared", Partition="team-a")
    await generate(client, "shared")
    team = await client.get("/v1/peering/shared?partition=team-a")
    default = await client.get("/v1/peering/shared")
    assert team.json()["Partition"] == "team-a"
    assert default.json()["Partition"] == "default"
    assert team.json()["ID"] != default.json()["ID"]
    assert [p["Name"] for p in (await client.get("/v1/peerings?partition=team-a")).json()] == ["shared"]
    await generate(client, "only-a", Partition="team-a")
    assert (await client.get("/v1/peering/only-a")).status_code == 404
    assert (await client.get("/v1/peering/only-a?partition=TEAM-A")).status_code == 200
    assert token_fields(await generate(client, "x", Partition="team-a"))["Remote"] == {
        "Datacenter": "dc1",
        "Partition": "team-a",
    }
    # the query parameter selects the partition for writes too
    response = await client.post("/v1/peering/token?partition=team-b", json={"PeerName": "q"})
    assert response.status_code == 200
    assert (await client.get("/v1/peering/q?partition=team-b")).status_code == 200


async def test_a_form_encoded_curl_body_is_read_as_json(client: httpx.AsyncClient) -> None:
    """`curl --data @payload.json` sends application/x-www-form-urlencoded; Consul reads it as JSON."""
    response = await client.post(
        "/v1/peering/token",
        content=b'{"PeerName": "cluster-02"}',
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 200


async def test_blocking_read_wakes_on_a_write(client: httpx.AsyncClient) -> None:
    await generate(client)
    index = int((await client.get("/v1/peering/cluster-02")).headers["X-Consul-Index"])
    waiting = asyncio.create_task(client.get(f"/v1/peering/cluster-02?index={index}&wait=10s"))
    await asyncio.sleep(0)
    assert not waiting.done()
    await generate(client)
    response = await asyncio.wait_for(waiting, 5)
    assert int(response.headers["X-Consul-Index"]) > index


async def test_blocking_list_wakes_on_removal(client: httpx.AsyncClient, runtime: Runtime) -> None:
    await generate(client)
    await client.delete("/v1/peering/cluster-02")
    listed = await client.get("/v1/peerings")
    index = int(listed.headers["X-Consul-Index"])
    waiting = asyncio.create_task(client.get(f"/v1/peerings?index={index}&wait=10s"))
    await asyncio.sleep(0)
    await runtime.service.remove_due()
    response = await asyncio.wait_for(waiting, 5)
    assert response.json() == []
    assert int(response.headers["X-Consul-Index"]) > index


async def test_blocking_query_times_out_with_the_same_index(client: httpx.AsyncClient) -> None:
    await generate(client)
    index = (await client.get("/v1/peering/cluster-02")).headers["X-Consul-Index"]
    response = await client.get(f"/v1/peering/cluster-02?index={index}&wait=20ms")
    assert response.status_code == 200
    assert response.headers["X-Consul-Index"] == index


async def test_background_removal_runs_on_its_own(settings: Settings) -> None:
    """With a short interval, the background loop removes a deleted peering without being asked."""

    async with open_runtime(settings, advertise_addresses=["127.0.0.1:8503"], background=True) as rt:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            await generate(c)
            deleted_index = int((await c.get("/v1/peerings")).headers["X-Consul-Index"])
            await c.delete("/v1/peering/cluster-02")
            # wait (bounded) for the list to change after the delete; the removal is the change after that
            listed: object = None
            for _ in range(3):
                response = await c.get(f"/v1/peerings?index={deleted_index}&wait=5s")
                deleted_index = int(response.headers["X-Consul-Index"])
                listed = response.json()
                if listed == []:
                    break
            assert listed == []


async def test_status_leader_answers_the_peering_address(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/status/leader")
    assert response.status_code == 200
    assert response.json() == "127.0.0.1:8503"
    assert int(response.headers["X-Consul-Index"]) >= 1


async def test_generate_on_a_dialer_name_is_refused(client: httpx.AsyncClient, runtime: Runtime) -> None:
    store = runtime.service._store  # a dialer record, as establish (next issue) will write it
    async with store.transaction() as tx:
        await tx.save(Peering("d-1", "dialed", "default", Role.DIALER, PeeringState.ACTIVE, peer_id="p"))
    response = await client.post("/v1/peering/token", json={"PeerName": "dialed"})
    assert response.status_code == 400
    assert response.text == 'cannot create peering with name: "dialed"; there is already an established peering'


LONG = "a" * 64

ERROR_CASES: list[tuple[str, str, object, int, str]] = [
    ("POST", "/v1/peering/token", b"", 400, "Body decoding failed: EOF"),
    ("POST", "/v1/peering/token", b"abc", 400, "Body decoding failed: "),
    ("POST", "/v1/peering/token", b"[]", 400, "Body decoding failed: json: cannot unmarshal array into an object"),
    ("POST", "/v1/peering/token", b"null", 400, "Body decoding failed: json: cannot unmarshal null into an object"),
    ("POST", "/v1/peering/token", {}, 400, "PeerName is required in the payload when generating a new peering token."),
    ("POST", "/v1/peering/token", {"PeerName": ""}, 400, "PeerName is required in the payload"),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Datacenter": "x"},
        400,
        'Body decoding failed: json: unknown field "Datacenter"',
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": 12},
        400,
        'Body decoding failed: json: cannot unmarshal number into field "PeerName" of type string',
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {"k": 1}},
        400,
        'Body decoding failed: json: cannot unmarshal number into field "Meta.k" of type string',
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": []},
        400,
        'Body decoding failed: json: cannot unmarshal array into field "Meta" of type object',
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "ServerExternalAddresses": "x:1"},
        400,
        'Body decoding failed: json: cannot unmarshal string into field "ServerExternalAddresses" of type array',
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "ServerExternalAddresses": [True]},
        400,
        'Body decoding failed: json: cannot unmarshal bool into field "ServerExternalAddresses[0]" of type string',
    ),
    ("POST", "/v1/peering/token", {"PeerName": "Peer_1"}, 400, f"Peer_1 {NAME_RULE}"),
    ("POST", "/v1/peering/token", {"PeerName": "-a"}, 400, f"-a {NAME_RULE}"),
    ("POST", "/v1/peering/token", {"PeerName": LONG}, 400, f"{LONG} {NAME_RULE}"),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Partition": "bad_part"},
        400,
        "bad_part is not a valid partition name",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {f"k{i}": "v" for i in range(65)}},
        400,
        "meta tags failed validation: Node metadata cannot contain more than 64 key/value pairs",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {"consul-x": "v"}},
        400,
        "meta tags failed validation: Couldn't load metadata pair ('consul-x', 'v'): Key prefix 'consul-' is reserved for internal use",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {"a b": "v"}},
        400,
        "meta tags failed validation: Couldn't load metadata pair ('a b', 'v'): Key contains invalid characters",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {"": "v"}},
        400,
        "meta tags failed validation: Couldn't load metadata pair ('', 'v'): Key cannot be blank",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {"k" * 129: "v"}},
        400,
        "meta tags failed validation: Couldn't load metadata pair ('"
        + "k" * 129
        + "', 'v'): Key is too long (limit: 128 characters)",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "Meta": {"k": "v" * 513}},
        400,
        "meta tags failed validation: Couldn't load metadata pair ('k', '"
        + "v" * 256
        + "...'): Value is too long (limit: 512 characters)",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "ServerExternalAddresses": ["1.2.3.4"]},
        400,
        "1.2.3.4 is not a valid peering server address",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "ServerExternalAddresses": ["h:0"]},
        400,
        "h:0 is not a valid peering server address",
    ),
    (
        "POST",
        "/v1/peering/token",
        {"PeerName": "a", "ServerExternalAddresses": ["2001:db8::1"]},
        400,
        "2001:db8::1 is not a valid peering server address",
    ),
    ("POST", "/v1/peering/token", b"\xff\xfe", 400, "Body decoding failed: "),
    ("POST", "/v1/peering/token", b"[" * 5000, 400, "Body decoding failed: "),
    ("POST", "/v1/peering/token", b'{"PeerName": "a", "PeerName": 1}', 400, "Body decoding failed: "),
    ("GET", "/v1/peering/nobody", None, 404, 'Peering not found for "nobody"'),
    ("GET", "/v1/peering/", None, 400, "Must specify a name to fetch."),
    ("DELETE", "/v1/peering/", None, 400, "Must specify a name to delete."),
    ("GET", "/v1/peering/x?index=abc", None, 400, "Invalid index"),
    ("GET", "/v1/peering/x?index=-1", None, 400, "Invalid index"),
    ("GET", "/v1/peering/x?index=99999999999999999999999", None, 400, "Invalid index"),
    ("GET", "/v1/peerings?index=1&wait=forever", None, 400, "Invalid wait time"),
    ("GET", "/v1/peerings?wait=10", None, 400, "Invalid wait time"),
    (
        "GET",
        "/v1/peerings?stale&consistent",
        None,
        400,
        "Cannot specify ?stale with ?consistent, conflicting semantics.",
    ),
    ("GET", "/v1/peerings?partition=Not_Valid", None, 400, "Not_Valid is not a valid partition name"),
    ("PUT", "/v1/peering/foo", None, 405, "method PUT not allowed"),
    ("GET", "/v1/peering/token", None, 404, 'Peering not found for "token"'),
    ("GET", "/v1/nothing-here", None, 404, "404 page not found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "message"), ERROR_CASES)
async def test_errors_are_plain_text_with_consul_messages(
    client: httpx.AsyncClient, method: str, path: str, body: object, status: int, message: str
) -> None:
    kwargs: dict[str, object] = {}
    if isinstance(body, bytes):
        kwargs["content"] = body
    elif body is not None:
        kwargs["json"] = body
    response = await client.request(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status_code == status
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith(message)
    assert "Traceback" not in response.text
    if method == "GET":
        assert int(response.headers["X-Consul-Index"]) >= 1


async def test_405_names_the_allowed_methods(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/peering/foo")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) == {"GET", "DELETE"}


async def test_a_body_over_one_mib_is_refused(client: httpx.AsyncClient) -> None:
    big = b'{"PeerName": "a", "Meta": {"k": "' + b"v" * (1 << 20) + b'"}}'
    response = await client.post("/v1/peering/token", content=big)
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"PeerName": "a", "Meta": {"k": "'
        for _ in range(17):
            yield b"v" * 65536
        yield b'"}}'

    streamed = await client.post("/v1/peering/token", content=chunks())
    assert streamed.status_code == 413


HOSTILE_NAMES = ["%00", "%ff", "..", "a" * 5000, "%E2%80%AE", "UPPER", "a.b", "' OR 1=1 --"]
HOSTILE_BODIES: list[bytes] = [
    b"{",
    b"1",
    b'"str"',
    b"true",
    b'{"PeerName": null}',
    b'{"PeerName": "a", "Meta": null}',
    b'{"PeerName": "a", "Meta": {"k": null}}',
    b'{"PeerName": "a", "Partition": 5}',
    b'{"PeerName": "a", "Partition": ""}',
    b'{"PeerName": "a", "ServerExternalAddresses": []}',
    b'{"PeerName": "a", "ServerExternalAddresses": null}',
    b'{"PeerName": "\\ud800"}',
    b'{"PeerName": "a\\u0000b"}',
    b'{"PeerName": 1e999}',
    b'{"PeerName": "' + "é".encode() * 10 + b'"}',
    b"\x00\x01\x02",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
@pytest.mark.parametrize("method", ["GET", "DELETE"])
async def test_no_path_produces_a_500(client: httpx.AsyncClient, method: str, name: str) -> None:
    response = await client.request(method, f"/v1/peering/{name}?partition=default")
    assert response.status_code < 500


@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_no_body_produces_a_500(client: httpx.AsyncClient, body: bytes) -> None:
    response = await client.post("/v1/peering/token", content=body)
    assert response.status_code in (200, 400), response.text


@pytest.mark.parametrize(
    "url",
    [
        "/v1/peering/cluster-02",
        "/v1/peering/CLUSTER-02?pretty",
        "/v1/peering/cluster-02?partition=&stale",
        "/v1/peering/x?partition=team-a",
        "/v1/peering/missing",
        "/v1/peering/cluster-02?partition=Bad_Part",
        "/v1/peerings",
        "/v1/peerings?pretty&consistent",
        "/v1/peerings?partition=team-a",
        "/v1/peerings?partition=empty",
        "/v1/peerings?stale&consistent",
    ],
)
async def test_the_fast_read_path_answers_exactly_as_the_routes(client: httpx.AsyncClient, url: str) -> None:
    """Plain reads and lists (served by a fast path) give the same status, headers and bytes as the routes
    (reached with `index=0`, which the fast path leaves to them)."""
    await generate(client, Meta={"env": "prod"})
    await generate(client, "x", Partition="team-a")
    fast = await client.get(url)
    slow = await client.get(url + ("&" if "?" in url else "?") + "index=0")
    assert (fast.status_code, fast.content) == (slow.status_code, slow.content)
    assert dict(fast.headers) == dict(slow.headers)


@pytest.mark.parametrize(
    "body",
    [
        b'{"PeerName": "cluster-09", "Meta": {"env": "prod"}}',
        b'{"PeerName": "Bad_Name"}',
        b'{"PeerName": ""}',
        b'{"Bogus": 1}',
        b"[1]",
        b"",
        b'{"PeerName": "x", "Meta": {"consul-a": "b"}}',
        b'{"PeerName": "x", "ServerExternalAddresses": ["nope"]}',
        b'{"PeerName": "x", "Partition": "Bad_Part"}',
        b'{"PeerName": "x"}' + b" " * (1 << 20),
    ],
)
async def test_the_fast_token_path_answers_as_the_route(client: httpx.AsyncClient, body: bytes) -> None:
    """Token requests (served by the fast path when plain) get the route's status, headers and messages; a
    refused or oversized body is handed on to the route intact (reached with `?index=0`, a parameter the
    fast path leaves to it)."""
    fast = await client.post("/v1/peering/token", content=body)
    slow = await client.post("/v1/peering/token?index=0", content=body)
    assert fast.status_code == slow.status_code
    assert dict(fast.headers).keys() == dict(slow.headers).keys()
    if fast.status_code == 200:
        assert list(fast.json()) == ["PeeringToken"]
        assert fast.headers["content-type"] == "application/json"
    else:
        assert fast.text == slow.text
