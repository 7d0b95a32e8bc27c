"""Access control (SPEC §8) over ASGI: who may call which peering endpoint, and the `/v1/acl/` subset."""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from peering.api import acl as acl_api
from peering.app import Runtime, create_app, open_runtime, openapi_json
from peering.settings import Settings

pytestmark = pytest.mark.anyio

MANAGEMENT_SECRET = "6b0a5c1e-9f5e-4a63-8d2b-1f4e6a7c9d10"
ANONYMOUS = "00000000-0000-0000-0000-000000000002"


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Acl:
    """A cluster with ACLs on (default deny) and a management client."""

    runtime: Runtime
    clock: Clock
    app: Any

    def client(self, source: str = "127.0.0.1", **headers: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=self.app, client=(source, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers)

    async def management(self, method: str, path: str, body: Any = None) -> Any:
        async with self.client(**{"X-Consul-Token": MANAGEMENT_SECRET}) as c:
            response = await c.request(method, path, json=body)
        assert response.status_code == 200, response.text
        return response.json()

    async def policy(self, name: str, rules: str) -> dict[str, Any]:
        return dict(await self.management("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules}))

    async def token(self, *policies: str, **fields: Any) -> dict[str, Any]:
        body = {"Policies": [{"Name": p} for p in policies], **fields}
        return dict(await self.management("PUT", "/v1/acl/token", body))


async def _acl_cluster(tmp_path: Path, default_policy: str = "deny") -> AsyncIterator[Acl]:
    settings = Settings(
        data_dir=tmp_path / "acl",
        http_addr="127.0.0.1:0",
        peering_addr="127.0.0.1:0",
        acl_enabled=True,
        acl_default_policy=default_policy,
        acl_initial_management_token=MANAGEMENT_SECRET,
    )
    clock = Clock()
    async with open_runtime(
        settings, advertise_addresses=["127.0.0.1:1"], background=False, clock=clock, establish_timeout=0.2
    ) as rt:
        yield Acl(rt, clock, create_app(rt))


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path):
        yield cluster


@pytest.fixture
async def foreign_token(tmp_path: Path) -> str:
    """A token of another cluster whose acceptor cannot be reached (establish → 502, check → not valid)."""
    settings = Settings(data_dir=tmp_path / "other", datacenter="dc2")
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as other:
        transport = httpx.ASGITransport(app=create_app(other))
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as c:
            response = await c.post("/v1/peering/token", json={"PeerName": "cluster-01"})
    return str(response.json()["PeeringToken"])


# -- the matrix: every peering endpoint x every kind of caller


ENDPOINTS = ["token", "establish", "check", "read", "list", "delete"]
NEEDS = {"token": "write", "establish": "write", "check": "write", "read": "read", "list": "read", "delete": "write"}
ALLOWED_STATUS = {"token": 200, "establish": 502, "check": 200, "read": 200, "list": 200, "delete": 200}


async def _call(client: httpx.AsyncClient, endpoint: str, token: str) -> httpx.Response:
    body = {"PeerName": "cluster-02", "PeeringToken": token}
    if endpoint == "token":
        return await client.post("/v1/peering/token", json={"PeerName": "cluster-03"})
    if endpoint in ("establish", "check"):
        return await client.post(f"/v1/peering/{endpoint}", json=body)
    if endpoint == "read":
        return await client.get("/v1/peering/existing")
    if endpoint == "list":
        return await client.get("/v1/peerings")
    return await client.delete("/v1/peering/existing")


CALLERS = ["none", "unknown", "expired", "read", "write", "operator-write", "operator-read", "management", "elsewhere"]


async def _secret_of(acl: Acl, caller: str) -> str | None:
    """The secret a caller of this kind presents (None: no token at all)."""
    await acl.policy("peering-read", 'peering = "read"')
    await acl.policy("peering-write", 'peering = "write"')
    await acl.policy("operator-write", 'operator = "write"')
    await acl.policy("operator-read", 'operator = "read"')
    kinds: dict[str, dict[str, Any]] = {
        "read": {"policies": ("peering-read",)},
        "write": {"policies": ("peering-write",)},
        "operator-write": {"policies": ("operator-write",)},
        "operator-read": {"policies": ("operator-read",)},
        "expired": {"policies": ("peering-write",), "ExpirationTTL": "10s"},
        "elsewhere": {"policies": ("peering-write",), "AllowedCIDRs": ["10.0.0.0/8"]},
    }
    if caller == "none":
        return None
    if caller == "unknown":
        return "f3a7a3a9-0000-4000-8000-000000000000"
    if caller == "management":
        return MANAGEMENT_SECRET
    spec = kinds[caller]
    token = await acl.token(*spec.pop("policies"), **spec)
    if caller == "expired":
        acl.clock.now += timedelta(seconds=10)
    return str(token["SecretID"])


def _expected(caller: str, endpoint: str) -> tuple[int, str | None]:
    need = NEEDS[endpoint]
    if caller in ("unknown", "expired"):
        return 403, "ACL not found"
    if caller == "none" or (caller in ("read", "operator-read") and need == "write"):
        accessor = ANONYMOUS if caller == "none" else None
        return 403, f"lacks permission 'peering:{need}'" + (f"|{accessor}" if accessor else "")
    if caller == "elsewhere":
        return 403, "may not be used from 127.0.0.1"
    return ALLOWED_STATUS[endpoint], None


@pytest.mark.parametrize("endpoint", ENDPOINTS)
@pytest.mark.parametrize("caller", CALLERS)
async def test_every_endpoint_for_every_caller(acl: Acl, foreign_token: str, caller: str, endpoint: str) -> None:
    """Each peering endpoint answers each kind of caller with the status and message of SPEC §8."""
    await acl.management("POST", "/v1/peering/token", {"PeerName": "existing"})
    secret = await _secret_of(acl, caller)
    headers = {"X-Consul-Token": secret} if secret else {}
    async with acl.client(**headers) as client:
        response = await _call(client, endpoint, foreign_token)
    status, fragment = _expected(caller, endpoint)
    assert response.status_code == status, response.text
    assert response.headers["X-Consul-Default-ACL-Policy"] == "deny"
    if fragment is not None:
        assert response.headers["content-type"].startswith("text/plain")
        text, _, accessor = fragment.partition("|")
        assert text in response.text
        assert response.text.startswith(("Permission denied: token with AccessorID '", "ACL not found"))
        if accessor:
            assert f"AccessorID '{accessor}'" in response.text
    if endpoint == "check" and status == 200:
        assert response.json()["IsValid"] is False  # the acceptor is unreachable, but the caller may ask


@pytest.mark.parametrize("carrier", ["query", "header", "bearer"])
async def test_each_carrier_works(acl: Acl, carrier: str) -> None:
    """The token may come as `?token=`, `X-Consul-Token` or `Authorization: Bearer`."""
    await acl.policy("peering-read", 'peering = "read"')
    secret = str((await acl.token("peering-read"))["SecretID"])
    params = {"token": secret} if carrier == "query" else {}
    headers = {"X-Consul-Token": secret} if carrier == "header" else {}
    if carrier == "bearer":
        headers = {"Authorization": f"Bearer {secret}"}
    async with acl.client(**headers) as client:
        assert (await client.get("/v1/peerings", params=params)).status_code == 200
        denied = await client.post("/v1/peering/token", params=params, json={"PeerName": "x"})
    assert denied.status_code == 403
    assert "lacks permission 'peering:write'" in denied.text


async def test_carriers_are_tried_in_consuls_order(acl: Acl) -> None:
    """`?token=` wins over `X-Consul-Token`, which wins over `Authorization: Bearer`."""
    await acl.policy("peering-read", 'peering = "read"')
    good = str((await acl.token("peering-read"))["SecretID"])
    bad = "0b0b0b0b-0000-4000-8000-000000000000"
    async with acl.client(**{"X-Consul-Token": bad, "Authorization": f"Bearer {good}"}) as client:
        assert (await client.get("/v1/peerings", params={"token": good})).status_code == 200
        assert (await client.get("/v1/peerings")).text == "ACL not found"
    async with acl.client(**{"X-Consul-Token": good, "Authorization": f"Bearer {bad}"}) as client:
        assert (await client.get("/v1/peerings")).status_code == 200


async def test_validation_comes_before_authorization(acl: Acl) -> None:
    """A malformed request is a 400 even for a caller who may not make it (as Consul)."""
    async with acl.client() as client:
        bad_name = await client.post("/v1/peering/token", json={"PeerName": "Bad_Name"})
        unknown_field = await client.post("/v1/peering/establish", json={"Bogus": 1})
        bad_index = await client.get("/v1/peerings?index=x")
    assert (bad_name.status_code, unknown_field.status_code, bad_index.status_code) == (400, 400, 400)
    assert unknown_field.text == 'Body decoding failed: json: unknown field "Bogus"'


async def test_default_allow_lets_anonymous_use_peerings_but_not_acls(tmp_path: Path) -> None:
    """With `--acl-default-policy allow` what no rule mentions is allowed, except managing ACLs."""
    async for acl in _acl_cluster(tmp_path, "allow"):
        async with acl.client() as client:
            created = await client.post("/v1/peering/token", json={"PeerName": "x"})
            policies = await client.get("/v1/acl/policies")
            assert created.status_code == 200
            assert created.headers["X-Consul-Default-ACL-Policy"] == "allow"
            assert policies.status_code == 403
        await acl.policy("no-peering", 'peering = "deny"')
        secret = (await acl.token("no-peering"))["SecretID"]
        async with acl.client(**{"X-Consul-Token": secret}) as client:
            assert (await client.get("/v1/peerings")).status_code == 403


async def test_deny_wins_over_a_grant_in_another_policy(acl: Acl) -> None:
    """An explicit `deny` in any of a token's policies beats `write` in another."""
    await acl.policy("w", 'peering = "write"')
    await acl.policy("d", 'peering = "deny"')
    secret = (await acl.token("w", "d"))["SecretID"]
    async with acl.client(**{"X-Consul-Token": secret}) as client:
        assert (await client.get("/v1/peerings")).status_code == 403


async def test_deleted_and_expired_tokens_stop_at_once(acl: Acl) -> None:
    """A deleted token, and one whose expiry passes, answer `ACL not found` on the very next request."""
    await acl.policy("w", 'peering = "write"')
    doomed = await acl.token("w")
    expiring = await acl.token("w", ExpirationTime=(acl.clock.now + timedelta(minutes=5)).isoformat())
    async with acl.client(**{"X-Consul-Token": doomed["SecretID"]}) as client:
        assert (await client.get("/v1/peerings")).status_code == 200
        await acl.management("DELETE", f"/v1/acl/token/{doomed['AccessorID']}")
        gone = await client.get("/v1/peerings")
    assert (gone.status_code, gone.text) == (403, "ACL not found")
    async with acl.client(**{"X-Consul-Token": expiring["SecretID"]}) as client:
        assert (await client.get("/v1/peerings")).status_code == 200
        acl.clock.now += timedelta(minutes=5)
        expired = await client.get("/v1/peerings")
    assert (expired.status_code, expired.text) == (403, "ACL not found")


async def test_allowed_cidrs_admit_only_their_sources(acl: Acl) -> None:
    """A token limited to 10.0.0.0/8 works from 10.1.2.3 and is refused from anywhere else."""
    await acl.policy("w", 'peering = "write"')
    secret = (await acl.token("w", AllowedCIDRs=["10.0.0.0/8", "fd00::/8"]))["SecretID"]
    async with acl.client("10.1.2.3", **{"X-Consul-Token": secret}) as client:
        assert (await client.get("/v1/peerings")).status_code == 200
    async with acl.client("192.168.1.1", **{"X-Consul-Token": secret}) as client:
        refused = await client.get("/v1/peerings")
    assert refused.status_code == 403
    assert refused.text.startswith("Permission denied: token with AccessorID '")
    assert secret not in refused.text


async def test_the_database_holds_no_secret_in_clear(acl: Acl) -> None:
    """Token secrets (management, bootstrap-style, created) are stored only as hashes: the file never has them."""
    await acl.policy("w", 'peering = "write"')
    created = await acl.token("w")
    chosen = "2f6a3c4d-1111-4222-8333-944455556666"
    await acl.token("w", SecretID=chosen)
    secrets = [MANAGEMENT_SECRET, created["SecretID"], chosen]
    data = acl.runtime.settings.data_dir
    raw = b"".join(path.read_bytes() for path in data.glob("peering.db*"))
    for secret in secrets:
        assert secret.encode() not in raw
    with sqlite3.connect(data / "peering.db") as db:
        hashes = [row[0] for row in db.execute("SELECT secret_hash FROM acl_tokens")]
    assert len(hashes) == 4  # with the anonymous token's
    assert all(len(h) == 64 for h in hashes)


def _acl_routes() -> list[tuple[str, str]]:
    """Every (method, path) the `/v1/acl/` router serves, path parameters filled in."""
    calls: list[tuple[str, str]] = []
    for route in acl_api.router.routes:
        assert isinstance(route, APIRoute)
        path = re.sub(r"\{[^}]+\}", "00000000-0000-4000-8000-000000000009", route.path)
        calls.extend((method, path) for method in sorted(route.methods or ()))
    return calls


@pytest.mark.parametrize(("method", "path"), _acl_routes())
async def test_acl_endpoints_answer_401_with_acls_off(client: httpx.AsyncClient, method: str, path: str) -> None:
    """With ACLs off every `/v1/acl/` route answers 401 `ACL support disabled` (text/plain), as Consul does,
    before reading the body (a malformed one does not turn it into a 400), and no policy header is sent."""
    response = await client.request(method, path, content=b"{not json" if method == "PUT" else None)
    assert (response.status_code, response.text) == (401, "ACL support disabled")
    assert response.headers["content-type"].startswith("text/plain")
    assert "X-Consul-Default-ACL-Policy" not in response.headers


def test_the_acl_routes_document_401() -> None:
    """The OpenAPI document lists the 401 on every `/v1/acl/` operation."""
    schema = json.loads(openapi_json())
    operations = [
        operation
        for path, item in schema["paths"].items()
        if path.startswith("/v1/acl/")
        for operation in item.values()
    ]
    assert len(operations) == len(_acl_routes())
    for operation in operations:
        assert operation["responses"]["401"]["content"] == {"text/plain": {"schema": {"type": "string"}}}
