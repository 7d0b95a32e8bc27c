"""The fast path's catalog reads (peering/api/fast_catalog.py) against the full app: `GET /v1/health/service/{name}`
and `GET /v1/catalog/service/{name}` give the same status, body and headers (in order) for every variant of the
query, with ACLs off and on, for allowed, filtered and refused callers; plain 200s come from the fast path."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest

from peering.api.catalog_render import health_json
from peering.api.fast_catalog import EntryBytes
from peering.catalog.model import Check, Health, Node, ServiceHealth, ServiceInstance
from tests.test_catalog_api import imported
from tests.test_fast_path import MANAGEMENT, UNKNOWN, Pair, _compare, _pair, _url

pytestmark = pytest.mark.anyio

PATHS = ["/v1/health/service/web", "/v1/catalog/service/web"]
SUFFIXES = [
    "",
    "passing",
    "passing=true",
    "passing=0",
    "passing=bogus",
    "passing&passing=0",
    "tag=v1",
    "tag=BLUE",
    "tag=",
    "tag=v1&tag=Blue",
    "tag=v1&passing",
    "peer=east",
    "peer=EAST",
    "peer=Bad_Name",
    "peer=missing",
    "peer=",
    "pretty",
    "pretty&tag=v1",
    "stale",
    "consistent",
    "stale&consistent",
    "dc=dc1",
    "dc=",
    "dc=elsewhere",
    "partition=team-a",
    "partition=Bad_Part",
    "partition=",
    "ns=default",
    "filter=Service.Port%20%3D%3D%201",
    "filter=",
    "index=1",
    "index=1&wait=10ms",
    "index=bogus",
    "index=0",
    "wait=1s",
    "token=",
]
OTHER_PATHS = ["/v1/health/service/db", "/v1/health/service/nope", "/v1/catalog/service/nope", "/v1/health/service/"]
# what the fast path hands on, whatever the answer (`dc=elsewhere` and a bad `?passing` are the route's 400s)
_HANDED_ON = {"index", "wait", "ns", "filter"}


def _from_fast_path(url: str, status: int) -> bool:
    """Whether the fast path answers this (a plain 200 of a route it serves)."""
    pairs = parse_qsl(url.partition("?")[2], keep_blank_values=True)
    names = [name for name, _ in pairs]
    catalog = url.startswith("/v1/catalog/")
    return (
        status == 200
        and len(names) == len(set(names))
        and not _HANDED_ON & set(names)
        and not (catalog and "passing" in names)
        and not url.endswith("/service/")
    )


async def _catalog(pair: Pair) -> dict[str, str | None]:
    """web on three nodes (passing, critical, without checks), db on one, web in team-a, web imported over
    `east`; a secret per kind of caller (with ACLs off the secrets are ignored)."""
    web = [
        ("n1", "web-1", ["v1", "Blue"], "passing"),
        ("n2", "web-2", ["v2"], "critical"),
        ("n3", "web-3", ["v1"], None),
    ]
    for node, service_id, tags, status in web:
        body: dict[str, Any] = {
            "Node": node,
            "Address": f"10.0.0.{node[1]}",
            "NodeMeta": {"rack": node},
            "Service": {"ID": service_id, "Service": "web", "Tags": tags, "Port": 8080, "Meta": {"v": "é"}},
        }
        if status is not None:
            body["Checks"] = [
                {"CheckID": f"{service_id}-http", "Name": "http", "Status": status, "ServiceID": service_id},
                {"CheckID": "serfHealth", "Name": "node alive", "Status": "passing"},
            ]
        await pair.management("PUT", "/v1/catalog/register", body)
    await pair.management(
        "PUT", "/v1/catalog/register", {"Node": "n1", "Address": "10.0.0.1", "Service": {"Service": "db"}}
    )
    await pair.management(
        "PUT",
        "/v1/catalog/register",
        {"Node": "t1", "Address": "10.1.0.1", "Partition": "team-a", "Service": {"Service": "web", "Port": 1}},
    )
    await imported(pair.runtime, "east")
    secrets: dict[str, str | None] = {"none": None, "unknown": UNKNOWN, "management": MANAGEMENT}
    if not pair.runtime.acl.enabled:
        return secrets
    kinds = {
        "all": 'service_prefix "" { policy = "read" }\nnode_prefix "" { policy = "read" }',
        "web": 'service "web" { policy = "read" }\nnode_prefix "" { policy = "read" }',
        "partial": 'service_prefix "" { policy = "read" }\nnode "n1" { policy = "read" }',
        "denied": 'acl = "read"',
    }
    for kind, rules in kinds.items():
        await pair.management("PUT", "/v1/acl/policy", {"Name": kind, "Rules": rules})
        token = await pair.management("PUT", "/v1/acl/token", {"Policies": [{"Name": kind}]})
        secrets[kind] = token["SecretID"]
    return secrets


@pytest.fixture(params=["off", "deny", "allow"])
async def pair(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async for made in _pair(tmp_path, request.param):
        yield made


async def test_service_reads_answer_as_the_full_app(pair: Pair) -> None:
    """Every query variant with the `all` caller, and a few for every caller by header and by `?token=`:
    the same answers; the plain 200s came from the fast path, the rest from the full app."""
    secrets = await _catalog(pair)
    reader = secrets.get("all") or MANAGEMENT
    cases = [(_url(path, suffix), [("X-Consul-Token", reader)]) for path in PATHS for suffix in SUFFIXES]
    cases += [(path, [("X-Consul-Token", reader)]) for path in OTHER_PATHS]
    for secret, path, suffix in itertools.product(
        secrets.values(), [*PATHS, "/v1/health/service/db"], ["", "passing", "peer=east", "pretty"]
    ):
        if secret is not None:
            cases += [(_url(path, suffix), [("X-Consul-Token", secret)]), (_url(path, f"token={secret}&{suffix}"), [])]
            cases.append((_url(path, suffix), [("Authorization", f"Bearer {secret}")]))
        else:
            cases.append((_url(path, suffix), []))
    fast_served, statuses, filtered = 0, set(), 0
    for url, headers in cases:
        pair.routed.clear()
        response = await _compare(pair, "GET", url, headers)
        statuses.add(response.status_code)
        filtered += "X-Consul-Results-Filtered-By-ACLs" in response.headers
        if "index=1" not in url:  # a blocking query is held outside: its reads are the middleware's
            expected = _from_fast_path(url, response.status_code)
            assert pair.routed == [not expected], (url, headers, response.status_code, response.text)
            fast_served += expected
    assert fast_served >= 100
    assert statuses == ({200, 400, 403} if pair.runtime.acl.enabled else {200, 400})
    if pair.runtime.acl.enabled and pair.runtime.acl.default_policy == "deny":
        assert filtered >= 10


async def test_the_bodies_are_the_routes_and_follow_writes(pair: Pair) -> None:
    """The fast path's bytes for web, its tags and `?passing`, and for the catalog shape: as the full app's,
    and changed (same as the full app's) once a check flips."""
    await _catalog(pair)
    urls = ["/v1/health/service/web", "/v1/health/service/web?passing", "/v1/catalog/service/web?tag=v1"]
    headers = [("X-Consul-Token", MANAGEMENT)]
    before = [(await _compare(pair, "GET", url, headers)).content for url in urls]
    assert len(orjson.loads(before[0])) == 3
    assert len(orjson.loads(before[1])) == 2  # web-2 is critical
    flip: dict[str, Any] = {
        "Node": "n1",
        "Address": "10.0.0.1",
        "Service": {"ID": "web-1", "Service": "web", "Port": 8080},
    }
    flip["Checks"] = [{"CheckID": "web-1-http", "Name": "http", "Status": "critical", "ServiceID": "web-1"}]
    await pair.management("PUT", "/v1/catalog/register", flip)
    after = [(await _compare(pair, "GET", url, headers)).content for url in urls]
    assert all(a != b for a, b in zip(before, after, strict=True))
    assert len(orjson.loads(after[1])) == 1


async def test_head_and_other_methods_go_to_the_app(pair: Pair) -> None:
    await _catalog(pair)
    for method, path in itertools.product(["HEAD", "POST", "PUT"], PATHS):
        pair.routed.clear()
        await _compare(pair, method, path, [("X-Consul-Token", MANAGEMENT)])
        assert pair.routed == [True]


def test_entry_bytes_are_the_compact_json_of_the_list() -> None:
    def entry(n: int) -> ServiceHealth:
        node = Node(f"n{n}", "10.0.0.1", meta={"k": "ü"})
        service = ServiceInstance(node.node, f"web-{n}", "web", tags=("a",), peer_name="east" if n else "")
        return ServiceHealth(node, service, (Check(node.node, "c", "c", Health.PASSING),))

    shape = EntryBytes(health_json, limit=2, lists=1)
    entries = [entry(0), entry(1), entry(2)]
    for listed in ([], entries, entries, entries[1:], entries):
        assert shape.many(listed) == orjson.dumps([health_json(e) for e in listed])
