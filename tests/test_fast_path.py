"""The fast path (peering/api/fast_path.py) against the full app: the same requests through both give the same
status, body and headers, with ACLs off and on, for every way of carrying a token and every kind of caller;
which requests it serves comes from the route table."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from starlette.types import Receive, Scope, Send

from peering.api import deps, peerings
from peering.api.fast_path import FastPath, caller_secret, served_routes
from peering.api.render import PeeringBytes
from peering.app import ClientApi, Runtime, create_app, open_runtime
from peering.service import TokenRequest
from peering.settings import Settings

pytestmark = pytest.mark.anyio

MANAGEMENT = "6b0a5c1e-9f5e-4a63-8d2b-1f4e6a7c9d10"
UNKNOWN = "f3a7a3a9-0000-4000-8000-000000000000"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Pair:
    """One runtime behind two apps: as `create_app` builds it (fast), and the same without the fast path."""

    runtime: Runtime
    clock: Clock
    fast: Any
    slow: Any
    routed: list[bool] = field(default_factory=list)  # per call of the fast app: did its router run?

    def probe(self, scope: Scope, receive: Receive, send: Send) -> Any:
        async def call() -> None:
            await self.fast(scope, receive, send)
            self.routed.append("router" in scope)  # the router marks the scope it handles (the fast path does not)

        return call()

    def client(self, which: str, source: str = "127.0.0.1") -> httpx.AsyncClient:
        app = self.probe if which == "fast" else self.slow
        transport = httpx.ASGITransport(app=app, client=(source, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://test")

    async def management(self, method: str, path: str, body: Any = None) -> Any:
        async with self.client("slow") as c:
            response = await c.request(method, path, json=body, headers={"X-Consul-Token": MANAGEMENT})
        assert response.status_code == 200, response.text
        return response.json()


def without_fast_path(runtime: Runtime) -> Any:
    app = create_app(runtime)
    assert isinstance(app, ClientApi)  # the fast path is one of its outer middlewares
    before = len(app.outer)
    app.outer = [m for m in app.outer if getattr(m, "cls", None) is not FastPath]
    assert len(app.outer) == before - 1
    return app


async def _pair(tmp_path: Path, mode: str, **extra: Any) -> AsyncIterator[Pair]:
    acl: dict[str, Any] = (
        {}
        if mode == "off"
        else {"acl_enabled": True, "acl_default_policy": mode, "acl_initial_management_token": MANAGEMENT}
    )
    settings = Settings(data_dir=tmp_path / mode, http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0", **acl, **extra)
    clock = Clock()
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False, clock=clock) as rt:
        yield Pair(rt, clock, create_app(rt), without_fast_path(rt))


@pytest.fixture(params=["off", "deny", "allow"])
async def pair(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    async for made in _pair(tmp_path, request.param):
        yield made


async def _secrets(pair: Pair) -> dict[str, str | None]:
    """A secret per kind of caller (with ACLs off only the two peerings exist; the secrets are then ignored)."""
    headers = {"X-Consul-Token": MANAGEMENT}
    async with pair.client("slow") as c:
        for name, partition in (("existing", None), ("x", "team-a")):
            body = {"PeerName": name, "Meta": {"env": "prod"}, **({"Partition": partition} if partition else {})}
            assert (await c.post("/v1/peering/token", json=body, headers=headers)).status_code == 200
    secrets: dict[str, str | None] = {"none": None, "unknown": UNKNOWN, "management": MANAGEMENT}
    if not pair.runtime.acl.enabled:
        return {**secrets, "read": UNKNOWN, "write": MANAGEMENT}
    for name, rules in (("read", 'peering = "read"'), ("write", 'peering = "write"'), ("other", 'acl = "read"')):
        await pair.management("PUT", "/v1/acl/policy", {"Name": name, "Rules": rules})
    kinds: dict[str, dict[str, Any]] = {
        "read": {"Policies": [{"Name": "read"}]},
        "write": {"Policies": [{"Name": "write"}]},
        "denied": {"Policies": [{"Name": "other"}]},
        "expired": {"Policies": [{"Name": "read"}], "ExpirationTTL": "10s"},
        "elsewhere": {"Policies": [{"Name": "read"}], "AllowedCIDRs": ["10.0.0.0/8"]},
        "here": {"Policies": [{"Name": "read"}], "AllowedCIDRs": ["127.0.0.1/32"]},
    }
    for kind, body in kinds.items():
        secrets[kind] = (await pair.management("PUT", "/v1/acl/token", body))["SecretID"]
    pair.clock.now += timedelta(seconds=11)  # "expired" is past its expiry now
    return secrets


def _carriers(secret: str | None, other: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """Every way a request can carry `secret` (query suffix, headers), and a few with a second, `other`."""
    if secret is None:
        return [("", []), ("token=", []), ("", [("Authorization", "Basic abc")]), ("", [("X-Consul-Token", "")])]
    return [
        (f"token={secret}", []),
        ("", [("X-Consul-Token", secret)]),
        ("", [("Authorization", f"Bearer {secret}")]),
        ("", [("Authorization", f"bearer   {secret}  ")]),
        ("", [("Authorization", f"Basic {secret}")]),
        ("", [("Authorization", "Bearer")]),
        ("token=", [("X-Consul-Token", secret)]),
        ("", [("X-Consul-Token", ""), ("Authorization", f"Bearer {secret}")]),
        (f"token={secret}", [("X-Consul-Token", other)]),
        ("", [("X-Consul-Token", secret), ("X-Consul-Token", other)]),
        ("", [("Authorization", f"Bearer {secret}"), ("Authorization", f"Bearer {other}")]),
        (f"token={secret}&token={other}", []),  # the first counts (handed on to the full app)
        (f"token={other}&token={secret}", []),
    ]


READS = [
    "/v1/peering/existing",
    "/v1/peering/existing?pretty",
    "/v1/peering/EXISTING?stale",
    "/v1/peering/missing",
    "/v1/peering/x?partition=team-a&consistent",
    "/v1/peering/x?partition=Bad_Part",
    "/v1/peering/token",
    "/v1/peerings",
    "/v1/peerings?partition=team-a&pretty",
    "/v1/peerings?partition=empty",
    "/v1/peerings?stale&consistent",
    "/v1/peerings?dc=elsewhere",
    "/v1/peerings?index=0",
    "/v1/peerings?bogus=1",
]


def _url(path: str, suffix: str) -> str:
    return path if not suffix else path + ("&" if "?" in path else "?") + suffix


async def _compare(pair: Pair, method: str, url: str, headers: list[tuple[str, str]], **kwargs: Any) -> httpx.Response:
    source = kwargs.pop("source", "127.0.0.1")
    async with pair.client("fast", source) as fast, pair.client("slow", source) as slow:
        answers = [await c.request(method, url, headers=headers, **kwargs) for c in (fast, slow)]
    got, expected = answers
    assert (got.status_code, got.content, got.headers.raw) == (
        expected.status_code,
        expected.content,
        expected.headers.raw,
    ), url
    return got


async def test_reads_and_lists_answer_as_the_full_app(pair: Pair) -> None:
    """Every read and list, with every kind of caller and every way of carrying its token: the same status,
    bytes and headers (in order) as the app without the fast path; every plain 200 came from the fast path
    (the router never ran), every other answer from the full app."""
    secrets = await _secrets(pair)
    cases = [(path, "", [("X-Consul-Token", secrets["read"] or "")]) for path in READS]
    for path, secret in itertools.product(["/v1/peering/existing", "/v1/peerings?pretty"], secrets.values()):
        cases += [(path, suffix, headers) for suffix, headers in _carriers(secret, secrets["write"] or UNKNOWN)]
    fast_served = 0
    for path, suffix, headers in cases:
        url = _url(path, suffix)
        pair.routed.clear()
        response = await _compare(pair, "GET", url, headers)
        plain = "index" not in url and "dc=" not in url and "bogus" not in url and url.count("token=") < 2
        assert pair.routed == [not (response.status_code == 200 and plain)], (url, headers, response.text)
        fast_served += response.status_code == 200 and plain
        if pair.runtime.acl.enabled:
            assert response.headers["X-Consul-Default-ACL-Policy"] == pair.runtime.acl.default_policy
    assert fast_served >= 60
    if pair.runtime.acl.enabled and pair.runtime.acl.default_policy == "deny":
        async with pair.client("fast") as fast:
            denied = await fast.get("/v1/peerings", headers={"X-Consul-Token": secrets["denied"] or ""})
            unknown = await fast.get("/v1/peering/existing", headers={"Authorization": f"Bearer {UNKNOWN}"})
        assert denied.status_code == 403
        assert denied.text.startswith("Permission denied: token with AccessorID '")
        assert denied.text.endswith("' lacks permission 'peering:read'")
        assert (unknown.status_code, unknown.text) == (403, "ACL not found")


@pytest.mark.parametrize(
    "body",
    [b'{"PeerName": "cluster-09", "Meta": {"env": "prod"}}', b'{"PeerName": "Bad_Name"}', b'{"PeerName": ""}', b"[1]"],
)
async def test_token_requests_answer_as_the_full_app(pair: Pair, body: bytes) -> None:
    """Token generation for every kind of caller: the same status and headers, the same text when refused,
    a token (different each time) when allowed; allowed ones came from the fast path."""
    secrets = await _secrets(pair)
    for kind, secret in secrets.items():
        headers = [("X-Consul-Token", secret)] if secret else []
        results = []
        for which in ("fast", "slow"):
            pair.routed.clear()
            async with pair.client(which) as client:
                results.append(await client.post("/v1/peering/token", content=body, headers=headers))
        fast, slow = results
        assert fast.status_code == slow.status_code, (kind, fast.text, slow.text)
        assert [name for name, _ in fast.headers.raw] == [name for name, _ in slow.headers.raw]
        if fast.status_code == 200:
            assert list(fast.json()) == list(slow.json()) == ["PeeringToken"]
            assert fast.json() != slow.json()
        else:
            assert fast.content == slow.content


async def test_allowed_cidrs_see_the_client_the_trusted_proxy_names(tmp_path: Path) -> None:
    """Behind a trusted proxy, a token limited to 10.0.0.0/8 is allowed for a client the proxy names in
    `X-Forwarded-For` (from the fast path), and one limited to 127.0.0.1 is refused with the client named,
    exactly as by the full app."""
    async for pair in _pair(tmp_path, "deny", trusted_proxies=("127.0.0.1/32",)):
        secrets = await _secrets(pair)
        forwarded = [("X-Forwarded-For", "10.1.2.3")]
        pair.routed.clear()
        allowed = await _compare(
            pair, "GET", "/v1/peerings", [*forwarded, ("X-Consul-Token", secrets["elsewhere"] or "")]
        )
        assert allowed.status_code == 200
        assert pair.routed == [False]
        refused = await _compare(pair, "GET", "/v1/peerings", [*forwarded, ("X-Consul-Token", secrets["here"] or "")])
        assert refused.status_code == 403
        assert refused.text.endswith("may not be used from 10.1.2.3")
        spoofed = await _compare(
            pair,
            "GET",
            "/v1/peerings",
            [*forwarded, ("X-Consul-Token", secrets["elsewhere"] or "")],
            source="192.0.2.7",
        )
        assert spoofed.text.endswith("may not be used from 192.0.2.7")  # not a trusted proxy: its header counts not


async def test_a_deleted_token_stops_working_on_the_fast_path_at_once(tmp_path: Path) -> None:
    async for pair in _pair(tmp_path, "deny"):
        secrets = await _secrets(pair)
        headers = {"X-Consul-Token": secrets["read"] or ""}
        async with pair.client("fast") as fast:
            assert (await fast.get("/v1/peering/existing", headers=headers)).status_code == 200
            accessor = (await fast.get("/v1/acl/token/self", headers=headers)).json()["AccessorID"]
            await pair.management("DELETE", f"/v1/acl/token/{accessor}")
            gone = await fast.get("/v1/peering/existing", headers=headers)
        assert (gone.status_code, gone.text) == (403, "ACL not found")


def test_the_served_routes_come_from_the_route_table() -> None:
    """The app's table gives exactly the five routes, with their templates and methods."""
    table = served_routes(create_app().router.routes)
    assert {method: [getattr(s.route, "path", None) for s in served] for method, served in table.items()} == {
        "GET": ["/v1/peering/{name}", "/v1/peerings", "/v1/catalog/service/{name}", "/v1/health/service/{name}"],
        "POST": ["/v1/peering/token"],
    }


CALLS: list[str] = []


async def _extra_dependency() -> None:
    """A dependency the fast path does not reproduce."""
    CALLS.append("extra")


async def test_a_route_the_fast_path_cannot_reproduce_is_left_to_the_app(runtime: Runtime) -> None:
    """A route with one more dependency is not served, and takes the requests of a served route after it; an
    earlier route on the path takes its requests; a route included elsewhere is served at its path there."""
    app = FastAPI()
    early = APIRouter()

    @early.get("/v1/peering/special")
    async def special() -> Response:
        return Response(b"special")

    app.include_router(early)
    app.include_router(peerings.router, prefix="/moved")
    guarded = APIRouter(prefix="/v1", dependencies=[Depends(_extra_dependency)])
    guarded.add_api_route("/peerings", peerings.list_peerings, methods=["GET"])
    app.include_router(guarded)
    app.include_router(peerings.router)
    table = served_routes(app.router.routes)
    assert [s.pattern.pattern for s in table["GET"]] == [
        "^/moved/v1/peering/(?P<name>[^/]+)$",
        "^/moved/v1/peerings$",
        "^/v1/peering/(?P<name>[^/]+)$",
        "^/v1/peerings$",  # after the guarded one, which takes its requests
    ]
    app.state.service, app.state.acl = runtime.service, runtime.acl
    app.state.encoded = encoded = PeeringBytes()
    app.add_middleware(FastPath, router=app.router, service=runtime.service, encoded=encoded, acl=runtime.acl)
    await runtime.service.generate_token(TokenRequest(name="special", partition=None))
    routed: list[bool] = []

    async def probe(scope: Scope, receive: Receive, send: Send) -> None:
        await app(scope, receive, send)
        routed.append("router" in scope)

    CALLS.clear()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=probe), base_url="http://test") as client:
        assert (await client.get("/v1/peering/special")).content == b"special"  # not the peering of that name
        assert (await client.get("/moved/v1/peering/special")).json()["Name"] == "special"
        assert (await client.get("/moved/v1/peerings")).status_code == 200
        assert CALLS == []
        assert (await client.get("/v1/peerings")).status_code == 200
        assert CALLS == ["extra"]
    assert routed == [True, False, False, True]


@pytest.mark.parametrize(
    ("plain", "headers", "expected"),
    [
        ({}, [], None),
        ({"token": "q"}, [(b"x-consul-token", b"h")], "q"),
        ({"token": ""}, [(b"x-consul-token", b"h")], "h"),
        ({}, [(b"x-consul-token", b""), (b"x-consul-token", b"second")], None),
        ({}, [(b"x-consul-token", b""), (b"authorization", b"Bearer b")], "b"),
        ({}, [(b"authorization", b"BEARER  b \t")], "b"),
        ({}, [(b"authorization", b"Basic b")], None),
        ({}, [(b"authorization", b"Bearer ")], None),
        ({}, [(b"authorization", b"Basic b"), (b"authorization", b"Bearer c")], None),
        ({}, [(b"x-consul-token", "\xe9".encode("latin-1"))], "\xe9"),
    ],
)
async def test_the_secret_is_read_as_the_routes_read_it(
    plain: dict[str, str], headers: list[tuple[bytes, bytes]], expected: str | None
) -> None:
    """The fast path's reading of the secret and `deps.get_secret`'s (its security schemes run on the same
    request) agree, on the cases where carriers are empty, repeated, oddly spelt or not latin-1 text."""
    query = "&".join(f"{k}={v}" for k, v in plain.items()).encode()
    scope: Scope = {"type": "http", "query_string": query, "headers": headers}
    request = Request(scope)
    routes = deps.caller_secret(await deps._QUERY(request), await deps._HEADER(request), await deps._BEARER(request))
    assert caller_secret(scope, plain) == routes == expected
