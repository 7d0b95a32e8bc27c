"""Hostile input on the `/v1/acl/` routes (issue 11): everything bounded and checked before costly work, no 500."""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from peering.acl import AclService
from peering.acl_input import PolicyRef, TokenSpec
from peering.acl_model import ALLOW_ALL
from peering.acl_rules import MAX_RULES_BYTES, parse_rules
from peering.errors import InvalidRequestError
from tests.test_acl import MANAGEMENT_SECRET, Acl, _acl_cluster

pytestmark = pytest.mark.anyio

LONE = "\\ud800"  # a lone surrogate, as JSON escapes it


@pytest.fixture
async def acl(tmp_path: Path) -> AsyncIterator[Acl]:
    async for cluster in _acl_cluster(tmp_path):
        yield cluster


async def _put(acl: Acl, path: str, body: bytes | dict[str, Any], secret: str | None = MANAGEMENT_SECRET) -> Any:
    headers = {"X-Consul-Token": secret} if secret else {}
    async with acl.client(**headers) as client:
        if isinstance(body, bytes):
            return await client.put(path, content=body, headers={"Content-Type": "application/json"})
        return await client.put(path, json=body)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/acl/policy", f'{{"Name": "x{LONE}"}}'),
        ("/v1/acl/policy", f'{{"Name": "x", "Description": "{LONE}"}}'),
        ("/v1/acl/policy", f'{{"Name": "x", "Rules": "peering = \\"read\\" # {LONE}"}}'),
        ("/v1/acl/policy", f'{{"Name": "x", "Datacenters": ["{LONE}"]}}'),
        ("/v1/acl/token", f'{{"Description": "{LONE}"}}'),
        ("/v1/acl/token", f'{{"AccessorID": "{LONE}"}}'),
        ("/v1/acl/token", f'{{"SecretID": "{LONE}"}}'),
        ("/v1/acl/token", f'{{"AllowedCIDRs": ["10.0.0.0/8{LONE}"]}}'),
        ("/v1/acl/token", f'{{"Policies": [{{"Name": "{LONE}"}}]}}'),
        ("/v1/acl/token", f'{{"ExpirationTTL": "1h{LONE}"}}'),
        ("/v1/acl/token", f'{{"ExpirationTime": "{LONE}"}}'),
        ("/v1/acl/token", f'{{"Description": "\\udc00{LONE}"}}'),
    ],
)
async def test_lone_surrogates_in_any_field_are_400(acl: Acl, path: str, body: str) -> None:
    """A lone surrogate (valid JSON escape, not a character) anywhere in a body is a 400, never an encoder's 500."""
    response = await _put(acl, path, body.encode())
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("text/plain")


async def test_the_service_refuses_lone_surrogates_itself(acl: Acl) -> None:
    """Below the JSON decoder too: every string field is checked before the store, the encoder or the hash."""
    service: AclService = acl.runtime.acl
    bad = "x\ud800"
    policy_calls = [("x", bad, ""), ("x", "", bad), ("x", "", 'peering = "read"' + bad)]
    for name, description, rules in policy_calls:
        with pytest.raises(InvalidRequestError, match="lone surrogate"):
            await service.save_policy(ALLOW_ALL, None, name, description, rules)
    specs = [
        TokenSpec(description=bad),
        TokenSpec(secret_id=bad),
        TokenSpec(accessor_id=bad),
        TokenSpec(allowed_cidrs=[bad]),
        TokenSpec(policies=[PolicyRef(name=bad)]),
        TokenSpec(policies=[PolicyRef(id=bad)]),
    ]
    for spec in specs:
        with pytest.raises(InvalidRequestError, match="lone surrogate"):
            await service.create_token(ALLOW_ALL, spec)
        with pytest.raises(InvalidRequestError, match="lone surrogate"):
            await service.update_token(ALLOW_ALL, "9d9d9d9d-0000-4000-8000-000000000000", spec)
    with pytest.raises(InvalidRequestError, match="lone surrogate"):
        await service.update_token(ALLOW_ALL, bad, TokenSpec())


DEEP = 100_000


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/acl/policy", '{"Name": "x", "Datacenters": ' + "[" * DEEP + "]" * DEEP + "}"),
        ("/v1/acl/policy", '{"Name": "x", "Rules": ' + '{"a":' * DEEP + "1" + "}" * DEEP + "}"),
        ("/v1/acl/token", '{"Policies": [' + "[" * DEEP + "]" * DEEP + "]}"),
        ("/v1/acl/token", '{"AllowedCIDRs": ' + "[" * DEEP + "]" * DEEP + "}"),
        ("/v1/acl/token", '{"ExpirationTTL": ' + "[" * DEEP + "]" * DEEP + "}"),
        ("/v1/acl/token/9d9d9d9d-0000-4000-8000-000000000000", '{"Policies": [{"ID": ' + "[" * DEEP + "]}]}"),
    ],
)
async def test_deeply_nested_bodies_are_400(acl: Acl, path: str, body: str) -> None:
    """Nesting anywhere in an ACL body is refused cleanly (no RecursionError, no 500)."""
    response = await _put(acl, path, body.encode())
    assert response.status_code == 400, response.text
    assert response.text.startswith("Body decoding failed")


async def test_deeply_nested_rules_are_400(acl: Acl) -> None:
    """Rules nested deeper than Consul's ever are (JSON or HCL) are a 400 naming the limit."""
    for rules in ('{"a": ' + "[" * 60_000, "a = " + "[" * 60_000, "a { " * 16_000):
        response = await _put(acl, "/v1/acl/policy", {"Name": "deep", "Rules": rules})
        assert response.status_code == 400
        assert response.text.startswith("Failed to parse ACL rules: ")
        assert "nested more than 16 levels" in response.text


@pytest.mark.parametrize(
    ("path", "body", "message"),
    [
        ("/v1/acl/policy", {"Name": "x", "Rules": "#" * (MAX_RULES_BYTES + 1)}, "Rules are over the limit of 65536"),
        ("/v1/acl/policy", {"Name": "x", "Description": "d" * 8193}, "Description is over the limit of 8192"),
        ("/v1/acl/policy", {"Name": "not a name!"}, "Only alphanumeric characters, '-' and '_' are allowed"),
        ("/v1/acl/policy", {"Name": "n" * 129}, "Only alphanumeric characters"),
        ("/v1/acl/policy", {"Name": "x", "Datacenters": ["dc"] * 65}, "more than 64 Datacenters"),
        ("/v1/acl/policy", {"Name": "x", "Datacenters": ["d" * 257]}, "over the limit of 256"),
        ("/v1/acl/token", {"Description": "d" * 8193}, "Description is over the limit of 8192"),
        ("/v1/acl/token", {"Policies": [{"Name": "w"}] * 129}, "more than 128 Policies"),
        ("/v1/acl/token", {"Policies": [{"Name": "n" * 257}]}, "Name is over the limit of 256"),
        ("/v1/acl/token", {"AllowedCIDRs": ["10.0.0.0/8"] * 129}, "more than 128 AllowedCIDRs"),
        ("/v1/acl/token", {"AllowedCIDRs": ["1" * 5000]}, "AllowedCIDRs entry is over the limit of 64"),
        ("/v1/acl/token", {"SecretID": "s" * 5000}, "SecretID is over the limit of 256"),
    ],
)
async def test_every_field_is_bounded(acl: Acl, path: str, body: dict[str, Any], message: str) -> None:
    """Sizes and counts are capped, with a message naming the cap, even for a caller who may not write."""
    for secret in (MANAGEMENT_SECRET, None):
        response = await _put(acl, path, body, secret)
        assert response.status_code == 400, response.text
        assert message in response.text
        assert len(response.text) < 300


async def test_long_lists_are_refused_before_their_items_are_validated(acl: Acl) -> None:
    """85,000 policy links (a 1 MiB body) are counted, not validated one by one: a 400 in a few ms of CPU."""
    body = b'{"Policies": [' + b",".join([b'{"Name":""}'] * 85_000) + b"]}"
    assert len(body) < 1 << 20
    await _put(acl, "/v1/acl/token", body, secret=None)  # the first one also grows the allocator's arenas
    started = time.thread_time()
    response = await _put(acl, "/v1/acl/token", body, secret=None)
    elapsed = time.thread_time() - started
    assert (response.status_code, response.text) == (400, "Invalid Token: more than 128 Policies")
    assert elapsed < 0.1  # nearly all of it the JSON decoder building 85,000 objects; validating them took 0.3 s


async def test_a_policy_update_names_one_policy(acl: Acl) -> None:
    """The body's ID, when given, must be the one in the URL (Consul's check)."""
    policy = await acl.policy("w", 'peering = "write"')
    response = await _put(acl, f"/v1/acl/policy/{policy['ID']}", {"ID": MANAGEMENT_SECRET, "Name": "w"})
    assert (response.status_code, response.text) == (400, "Policy ID in URL and request body do not match")


async def test_rules_are_parsed_only_for_callers_who_may_write(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> None:
    """An anonymous caller's rules, however costly, are never parsed: the permission check comes first."""
    parsed: list[str] = []

    def spy(text: str) -> Any:
        parsed.append(text)
        raise AssertionError("parsed before the permission check")

    monkeypatch.setattr("peering.acl.parse_rules", spy)
    pathological = "a = [" + "{}," * (MAX_RULES_BYTES // 3 - 4) + "]"
    for rules in (pathological, "peering {", 'peering = "admin"'):
        response = await _put(acl, "/v1/acl/policy", {"Name": "sneaky", "Rules": rules}, secret=None)
        assert response.status_code == 403
        assert "lacks permission 'acl:write'" in response.text
    assert parsed == []


async def test_a_comment_only_policy_is_valid_and_grants_nothing(acl: Acl) -> None:
    """`# nothing yet` is a policy (issue 11.11); a token holding only it may do nothing."""
    created = await acl.policy("placeholder", "# nothing yet\n")
    assert created["Rules"] == "# nothing yet\n"
    secret = (await acl.token("placeholder"))["SecretID"]
    async with acl.client(**{"X-Consul-Token": secret}) as client:
        response = await client.get("/v1/peerings")
    assert response.status_code == 403
    assert "lacks permission 'peering:read'" in response.text


async def test_a_stored_policy_that_no_longer_parses_denies(acl: Acl, caplog: pytest.LogCaptureFixture) -> None:
    """Rules in the database that today's parser refuses (written by hand, or by an older version) fail closed:
    the token's holder gets 403, not a 400 or a 500, and the log says which policy."""
    policy = await acl.policy("w", 'peering = "write"')
    secret = (await acl.token("w"))["SecretID"]
    async with acl.client(**{"X-Consul-Token": secret}) as client:
        # edited before the token's first use: a hand edit bypasses the change feed, so a resolution already
        # held in memory (acl_cache) would not see it until the next ACL write
        with sqlite3.connect(acl.runtime.settings.data_dir / "peering.db") as db:
            db.execute("UPDATE acl_policies SET rules = ? WHERE id = ?", ('peering = "write" {', policy["ID"]))
        with caplog.at_level(logging.WARNING, logger="peering.acl"):
            denied = await client.get("/v1/peerings")
    assert denied.status_code == 403
    assert any(record.__dict__.get("policy_id") == policy["ID"] for record in caplog.records)


async def test_odd_token_carriers_are_acl_not_found(acl: Acl) -> None:
    """Secrets that are not UUIDs, not ASCII or huge are unknown secrets (403), never a 500."""
    async with acl.client() as client:
        for value in (b"\xff\xfe", "é".encode("latin-1"), b"x" * 8000):
            response = await client.get("/v1/peerings", headers={b"X-Consul-Token": value})
            assert (response.status_code, response.text) == (403, "ACL not found")


async def test_the_cache_of_parsed_rules_is_bounded(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> None:
    """Parsed rules are kept per policy ID with a bound (least recently used out), and a deleted policy's go."""
    monkeypatch.setattr("peering.acl._PARSED_CACHE", 2)
    policies = [await acl.policy(f"p{i}", 'peering = "read"') for i in range(4)]
    for policy in policies:
        secret = (await acl.token(policy["Name"]))["SecretID"]
        async with acl.client(**{"X-Consul-Token": secret}) as client:
            assert (await client.get("/v1/peerings")).status_code == 200
    cache = acl.runtime.acl._parsed_rules
    assert list(cache) == [policies[2]["ID"], policies[3]["ID"]]
    await acl.management("DELETE", f"/v1/acl/policy/{policies[3]['ID']}")
    assert list(cache) == [policies[2]["ID"]]


async def test_large_rules_are_parsed_off_the_event_loop(acl: Acl, monkeypatch: pytest.MonkeyPatch) -> None:
    """A large policy (here 40 KiB of service rules) is parsed in a worker thread, so the loop keeps serving
    (heartbeats, reads) while it is read; a small one is parsed in place (a thread hop would cost more)."""
    threads: list[str] = []
    real = parse_rules

    def spy(text: str) -> Any:
        threads.append(threading.current_thread().name)
        return real(text)

    monkeypatch.setattr("peering.acl.parse_rules", spy)
    large = "".join(f'service "s{i:04d}" {{ policy = "read" }}\n' for i in range(1000))
    await acl.policy("small", 'peering = "read"')
    await acl.policy("large", large)
    loop_thread = threading.current_thread().name
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
