"""The Consul-compatible `/v1/acl/` subset (SPEC §8): bootstrap, policies, tokens, self."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from peering.api.render import rfc3339
from peering.app import create_app, open_runtime
from peering.settings import Settings
from tests.test_acl import ANONYMOUS, MANAGEMENT_SECRET, Acl, _acl_cluster

pytestmark = pytest.mark.anyio

MANAGEMENT_POLICY = "00000000-0000-0000-0000-000000000001"
UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path):
        yield cluster


async def test_bootstrap_is_refused_once_a_management_token_exists(acl: Acl) -> None:
    """The initial management token ends the bootstrap window, as in Consul."""
    async with acl.client() as client:
        response = await client.put("/v1/acl/bootstrap")
    assert (response.status_code, response.text) == (403, "ACL bootstrap no longer allowed")


async def test_bootstrap_works_once(tmp_path: Path) -> None:
    """Without an initial token, bootstrap answers a management token with its secret, then never again."""
    settings = Settings(data_dir=tmp_path / "b", acl_enabled=True)
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as rt:
        transport = httpx.ASGITransport(app=create_app(rt))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            first = await client.put("/v1/acl/bootstrap")
            again = await client.put("/v1/acl/bootstrap")
            secret = first.json()["SecretID"]
            me = await client.get("/v1/acl/token/self", headers={"X-Consul-Token": secret})
            peerings = await client.get("/v1/peerings", headers={"X-Consul-Token": secret})
    assert first.status_code == 200
    body = first.json()
    assert list(body)[:3] == ["AccessorID", "SecretID", "Description"]
    assert body["Policies"] == [{"ID": MANAGEMENT_POLICY, "Name": "global-management"}]
    assert (again.status_code, again.text) == (403, "ACL bootstrap no longer allowed")
    assert me.json()["AccessorID"] == body["AccessorID"]
    assert "SecretID" not in me.json()
    assert peerings.status_code == 200


async def test_policy_lifecycle(acl: Acl) -> None:
    """Create, read by ID and by name, update, list and delete a policy, with Consul's field names."""
    created = await acl.policy("readers", 'peering = "read"')
    assert list(created) == ["ID", "Name", "Description", "Rules", "Datacenters", "CreateIndex", "ModifyIndex"]
    assert created["CreateIndex"] == created["ModifyIndex"]
    by_id = await acl.management("GET", f"/v1/acl/policy/{created['ID']}")
    by_name = await acl.management("GET", "/v1/acl/policy/name/readers")
    assert by_id == by_name == created
    updated = await acl.management(
        "PUT", f"/v1/acl/policy/{created['ID']}", {"Name": "writers", "Rules": '{"peering": "write"}'}
    )
    assert (updated["Name"], updated["CreateIndex"]) == ("writers", created["CreateIndex"])
    assert updated["ModifyIndex"] > created["ModifyIndex"]
    names = [p["Name"] for p in await acl.management("GET", "/v1/acl/policies")]
    assert names == ["global-management", "writers"]
    assert await acl.management("DELETE", f"/v1/acl/policy/{created['ID']}") is True
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        missing = await client.get(f"/v1/acl/policy/{created['ID']}")
    assert (missing.status_code, missing.text) == (404, "Requested policy does not exist")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Rules": 'peering = "read"'}, "Invalid Policy: no Name is set"),
        ({"Name": "x", "Rules": 'peering = "admin"'}, "must be read, write or deny"),
        ({"Name": "x", "Rules": "peering {"}, "Failed to parse ACL rules: invalid HCL"),
        ({"Name": "x", "Rules": '{"peering": '}, "Failed to parse ACL rules: invalid JSON"),
        ({"Name": "x", "Rules": 'spaceship = "write"'}, "unknown resource 'spaceship'"),
        ({"Name": "x", "Rules": 1}, "Body decoding failed: json: cannot unmarshal number"),
        ({"Name": "x", "Colour": "red"}, 'Body decoding failed: json: unknown field "Colour"'),
        ({"Name": "global-management"}, 'A Policy with Name "global-management" already exists'),
    ],
)
async def test_bad_policies_are_400(acl: Acl, body: dict[str, object], message: str) -> None:
    """Every malformed policy gets a 400 with a message saying what is wrong; nothing is stored."""
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        response = await client.put("/v1/acl/policy", json=body)
        policies = (await client.get("/v1/acl/policies")).json()
    assert response.status_code == 400
    assert message in response.text
    assert [p["Name"] for p in policies] == ["global-management"]


async def test_the_builtin_policy_cannot_be_deleted_or_rewritten(acl: Acl) -> None:
    """global-management keeps its rules."""
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        deleted = await client.delete(f"/v1/acl/policy/{MANAGEMENT_POLICY}")
        rewritten = await client.put(
            f"/v1/acl/policy/{MANAGEMENT_POLICY}", json={"Name": "global-management", "Rules": 'peering = "read"'}
        )
    assert deleted.status_code == rewritten.status_code == 400


async def test_token_lifecycle_never_shows_the_secret_again(acl: Acl) -> None:
    """A token's SecretID is in the create answer only; read, list and update show everything else."""
    policy = await acl.policy("w", 'peering = "write"')
    created = await acl.token(
        "w", Description="ci", ExpirationTTL="1h", AllowedCIDRs=["127.0.0.0/8"], Policies=[{"ID": policy["ID"]}]
    )
    assert created["Policies"] == [{"ID": policy["ID"], "Name": "w"}]
    assert created["ExpirationTime"] == (acl.clock.now + timedelta(hours=1)).isoformat().replace("+00:00", "Z")
    read = await acl.management("GET", f"/v1/acl/token/{created['AccessorID']}")
    assert "SecretID" not in read
    assert {k: v for k, v in created.items() if k != "SecretID"} == read
    listed = await acl.management("GET", "/v1/acl/tokens")
    assert [t["Description"] for t in listed] == ["Anonymous Token", "Initial Management Token", "ci"]
    assert all("SecretID" not in t for t in listed)
    updated = await acl.management(
        "PUT", f"/v1/acl/token/{created['AccessorID']}", {"Description": "renamed", "Policies": []}
    )
    assert (updated["Description"], updated["Policies"]) == ("renamed", [])
    assert "SecretID" not in updated
    async with acl.client(**{"X-Consul-Token": created["SecretID"]}) as client:
        me = await client.get("/v1/acl/token/self")
        denied = await client.get("/v1/peerings")
    assert me.json()["Description"] == "renamed"
    assert denied.status_code == 403  # the update took the policy away


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"Policies": [{"Name": "nope"}]}, "Invalid Policy: no policy with Name 'nope'"),
        ({"ExpirationTTL": "soon"}, "Invalid ExpirationTTL 'soon': not a duration"),
        ({"ExpirationTTL": "0s"}, "Token Expiration TTL must be positive"),
        ({"ExpirationTime": "2020-01-01T00:00:00Z"}, "ExpirationTime cannot be in the past"),
        ({"ExpirationTime": "yesterday"}, "not an RFC 3339 time"),
        ({"ExpirationTime": "2030-01-01T00:00:00Z", "ExpirationTTL": "1h"}, "cannot both be set"),
        ({"AllowedCIDRs": ["10.0.0.0/33"]}, "not a CIDR block"),
        ({"SecretID": "not-a-uuid"}, "Invalid Token: SecretID must be a valid UUID"),
        ({"AccessorID": "00000000-0000-0000-0000-000000000002"}, "Invalid Token: AccessorID is reserved"),
        ({"SecretID": MANAGEMENT_SECRET}, "Invalid Token: SecretID is already in use"),
        ({"Policies": "w"}, "Body decoding failed"),
    ],
)
async def test_bad_tokens_are_400(acl: Acl, body: dict[str, object], message: str) -> None:
    """Every malformed token request gets a 400 naming the problem, never a 500; nothing is stored."""
    await acl.policy("w", 'peering = "write"')
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        response = await client.put("/v1/acl/token", json=body)
        count = len((await client.get("/v1/acl/tokens")).json())
    assert response.status_code == 400, response.text
    assert message in response.text
    assert count == 2  # anonymous and initial management


async def test_token_update_cannot_change_secret_or_expiry_and_unknown_is_404(acl: Acl) -> None:
    """What a token is bound to stays; an unknown AccessorID is a 404."""
    await acl.policy("w", 'peering = "write"')
    token = await acl.token("w")
    path = f"/v1/acl/token/{token['AccessorID']}"
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        secret = await client.put(path, json={"SecretID": "11111111-1111-4111-8111-111111111111"})
        same_secret = await client.put(path, json={"SecretID": token["SecretID"], "Description": "ok"})
        expiry = await client.put(path, json={"ExpirationTTL": "1h"})
        unknown = await client.put("/v1/acl/token/9d9d9d9d-0000-4000-8000-000000000000", json={})
        unknown_read = await client.get("/v1/acl/token/9d9d9d9d-0000-4000-8000-000000000000")
        unknown_delete = await client.delete("/v1/acl/token/9d9d9d9d-0000-4000-8000-000000000000")
    assert (secret.status_code, secret.text) == (400, "Cannot change a token's SecretID")
    assert same_secret.status_code == 200
    assert (expiry.status_code, expiry.text) == (400, "Cannot change expiration time")
    assert unknown.status_code == unknown_read.status_code == unknown_delete.status_code == 404
    assert unknown_read.text == "Requested token does not exist"


async def test_a_request_cannot_delete_its_own_token(acl: Acl) -> None:
    """Deleting the token the request carries is refused, as in Consul."""
    tokens = await acl.management("GET", "/v1/acl/tokens")
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        response = await client.delete(f"/v1/acl/token/{tokens[1]['AccessorID']}")
    assert response.status_code == 400
    assert response.text == "Deletion of the request's authorization token is not permitted"


async def test_acl_reads_need_acl_read_and_writes_acl_write(acl: Acl) -> None:
    """A peering token cannot manage ACLs; an `acl = "read"` token can read but not write them."""
    await acl.policy("w", 'peering = "write"')
    await acl.policy("acl-reader", 'acl = "read"')
    peering_secret = (await acl.token("w"))["SecretID"]
    reader_secret = (await acl.token("acl-reader"))["SecretID"]
    async with acl.client(**{"X-Consul-Token": peering_secret}) as client:
        listing = await client.get("/v1/acl/tokens")
    async with acl.client(**{"X-Consul-Token": reader_secret}) as client:
        reading = await client.get("/v1/acl/policies")
        writing = await client.put("/v1/acl/policy", json={"Name": "sneaky", "Rules": 'acl = "write"'})
    assert listing.status_code == 403
    assert "lacks permission 'acl:read'" in listing.text
    assert reading.status_code == 200
    assert writing.status_code == 403
    assert "lacks permission 'acl:write'" in writing.text


async def test_self_without_a_token_is_acl_not_found(acl: Acl) -> None:
    """`/v1/acl/token/self` with no token or an unknown one answers 403 `ACL not found`."""
    async with acl.client() as client:
        anonymous = await client.get("/v1/acl/token/self")
        unknown = await client.get("/v1/acl/token/self", headers={"X-Consul-Token": "nope"})
    assert (anonymous.status_code, anonymous.text) == (403, "ACL not found")
    assert (unknown.status_code, unknown.text) == (403, "ACL not found")


async def test_acl_gets_carry_consul_headers(acl: Acl) -> None:
    """ACL reads answer with the usual `X-Consul-*` headers and honour `?pretty`."""
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        response = await client.get("/v1/acl/policies?pretty")
    assert int(response.headers["X-Consul-Index"]) >= 1
    assert response.headers["X-Consul-KnownLeader"] == "true"
    assert response.text.startswith("[\n")


async def test_the_anonymous_token_can_be_given_policies(acl: Acl) -> None:
    """As in Consul, linking a policy to the anonymous token opens it to callers without a token; it cannot go."""
    await acl.policy("everyone-reads", 'peering = "read"')
    path = f"/v1/acl/token/{ANONYMOUS}"
    anonymous = await acl.management("GET", path)
    assert anonymous["Description"] == "Anonymous Token"
    await acl.management("PUT", path, {"Description": "Anonymous Token", "Policies": [{"Name": "everyone-reads"}]})
    async with acl.client() as client:
        listing = await client.get("/v1/peerings")
        writing = await client.post("/v1/peering/token", json={"PeerName": "x"})
    assert listing.status_code == 200
    assert writing.status_code == 403
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        deleted = await client.delete(path)
    assert (deleted.status_code, deleted.text) == (400, "Delete operation not permitted on the anonymous token")


# -- what Consul's official Go client sends (issue 12.1, 12.2)

GO_ZERO_TIME = "0001-01-01T00:00:00Z"


def _go_token(**fields: object) -> dict[str, object]:
    """A token body as `api.ACL().TokenCreate` marshals an `api.ACLToken`: zero values included."""
    return {
        "CreateIndex": 0, "ModifyIndex": 0, "AccessorID": "", "SecretID": "", "Description": "",
        "Local": False, "CreateTime": GO_ZERO_TIME, **fields,
    }  # fmt: skip


async def test_the_go_clients_token_create_generates_both_ids(acl: Acl) -> None:
    """Empty `AccessorID` and `SecretID` mean "generate one" (Consul's docs; the Go client always sends them)."""
    policy = await acl.policy("w", 'peering = "write"')
    created = await acl.management(
        "PUT", "/v1/acl/token", _go_token(Description="ci", Policies=[{"ID": policy["ID"], "Name": ""}])
    )
    assert re.fullmatch(UUID, created["AccessorID"])
    assert re.fullmatch(UUID, created["SecretID"])
    assert created["Policies"] == [{"ID": policy["ID"], "Name": "w"}]
    async with acl.client(**{"X-Consul-Token": created["SecretID"]}) as client:
        assert (await client.get("/v1/peerings")).status_code == 200


async def test_the_go_clients_token_update_keeps_the_secret(acl: Acl) -> None:
    """`TokenUpdate` sends back what it read: no or empty `SecretID`, the same `AccessorID` and `ExpirationTime`
    are accepted and change nothing; only a different value is refused, as in Consul."""
    await acl.policy("w", 'peering = "write"')
    token = await acl.token("w", ExpirationTTL="1h")
    path = f"/v1/acl/token/{token['AccessorID']}"
    read = await acl.management("GET", path)
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        echoed = await client.put(path, json={**_go_token(), **read, "Description": "renamed"})
        without = await client.put(path, json={"Description": "no secret", "Policies": [{"Name": "w"}]})
        same = await client.put(path, json={"SecretID": token["SecretID"], "Policies": [{"Name": "w"}]})
        other_secret = await client.put(path, json={"SecretID": "11111111-1111-4111-8111-111111111111"})
        other_accessor = await client.put(path, json={"AccessorID": "11111111-1111-4111-8111-111111111111"})
        other_expiry = await client.put(path, json={"ExpirationTime": "2031-01-01T00:00:00Z"})
    assert echoed.status_code == without.status_code == same.status_code == 200, echoed.text
    assert echoed.json()["Description"] == "renamed"
    assert echoed.json()["ExpirationTime"] == token["ExpirationTime"]
    assert (other_secret.status_code, other_secret.text) == (400, "Cannot change a token's SecretID")
    assert (other_accessor.status_code, other_accessor.text) == (
        400,
        "Token Accessor ID in URL and payload do not match",
    )
    assert (other_expiry.status_code, other_expiry.text) == (400, "Cannot change expiration time")
    async with acl.client(**{"X-Consul-Token": token["SecretID"]}) as client:
        assert (await client.get("/v1/peerings")).status_code == 200  # the secret still works


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [(3_600_000_000_000, timedelta(hours=1)), ("1h30m", timedelta(minutes=90)), (1, timedelta(microseconds=1))],
)
async def test_expiration_ttl_is_a_duration_or_integer_nanoseconds(acl: Acl, ttl: object, expected: timedelta) -> None:
    """Go sends a `time.Duration` as integer nanoseconds; a string such as `1h30m` works too."""
    created = await acl.management("PUT", "/v1/acl/token", _go_token(ExpirationTTL=ttl))
    assert created["ExpirationTime"] == rfc3339(acl.clock.now + expected)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"ExpirationTTL": "99999999999h"}, "over the longest duration, 2562047h47m16.854775807s"),
        ({"ExpirationTTL": 2**63}, "over the longest duration"),
        ({"ExpirationTTL": 10**30}, "integer number of nanoseconds"),  # a float once decoded, as in Go: refused
        ({"ExpirationTTL": 1e30}, "integer number of nanoseconds"),
        ({"ExpirationTTL": -5}, "Token Expiration TTL must be positive"),
        ({"ExpirationTTL": "-1h"}, "Token Expiration TTL must be positive"),
        ({"ExpirationTTL": "٣s"}, "not a duration"),
        ({"ExpirationTTL": "1" * 5000 + "s"}, "not a duration"),
        ({"ExpirationTTL": True}, "Body decoding failed"),
        ({"ExpirationTime": "9999-12-31T23:59:59Z"}, "ExpirationTime is too far in the future"),
        ({"ExpirationTime": "9999-12-31T23:59:59-01:00"}, "not a valid time"),
        ({"ExpirationTime": "0001-01-01T00:00:00Z"}, "ExpirationTime cannot be in the past"),
        ({"ExpirationTime": "2026-02-31T00:00:00Z"}, "not a valid time"),
        ({"ExpirationTime": "2026-01-02T00:00:00"}, "not an RFC 3339 time"),
        ({"ExpirationTime": "٢٠٣٠-01-01T00:00:00Z"}, "not an RFC 3339 time"),
        ({"ExpirationTime": "2" * 5000}, "not an RFC 3339 time"),
    ],
)
async def test_durations_and_times_are_bounded_before_arithmetic(
    acl: Acl, body: dict[str, object], message: str
) -> None:
    """Huge TTLs and far-future or impossible times are a 400 naming the problem, never an overflow (500)."""
    async with acl.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as client:
        response = await client.put("/v1/acl/token", json=body)
    assert response.status_code == 400, response.text
    assert message in response.text
    assert len(response.text) < 300
