"""Hostile client input on the catalog, health, agent-node and config routes (issue 14 item 8; SPEC §3, §13,
§14): every field of catalog register/deregister, agent service register, check update and config entry
bodies, the TTL check notes and the maintenance reason, every query parameter (`?tag=` repeated, a huge
`?peer=`, non-UTF-8 bytes) and every path parameter get the hostile classes of `tests.hostile_values`.
Every answer is a documented status with a message (never a 5xx), within a bounded time, and the server logs
no ERROR and no traceback; what was stored still renders.

The first tests are the findings of the fuzzing, in process, on both backends.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from peering.app import create_app, open_runtime
from peering.settings import Settings
from tests.attack import Answer, request, server_errors
from tests.cluster import Cluster, running_cluster
from tests.hostile_pair import ACLS_ON, AUTH
from tests.hostile_values import (
    REPRESENTATIVES,
    Raw,
    encode,
    hostile_key,
    hostile_text,
    hostile_value,
    percent,
)

pytestmark = pytest.mark.anyio  # the in-process tests; the real-process ones are plain and marked slow
EXAMPLES = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MINIMUM = 40  # examples that must have reached the server (hypothesis stops early when it runs out)
ANYONE = {400, 403, 413, 429}  # what any request may get besides its successes
HEAD_TOO_LARGE = 431  # a request line and headers over 16 KiB (SECURITY.md), before any route sees them
SECONDS = 10.0  # the longest any single answer may take, on a loaded 2-core machine
AGENT_SERVICE = {"Name": "api", "ID": "api-1", "Port": 9090, "Check": {"TTL": "10m"}}
NODE = {"Node": "n1", "Address": "10.0.0.1", "Service": {"ID": "web-1", "Service": "web", "Tags": ["v1"]}}


# -- findings, in process, on both backends --------------------------------------------------------------------


@pytest.fixture(params=["sqlite", "postgres"])
async def client(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """An in-process client of a runtime on SQLite or on a throwaway PostgreSQL database."""
    url = SecretStr(request.getfixturevalue("postgres")) if request.param == "postgres" else None
    settings = Settings(data_dir=tmp_path / request.param, database_url=url)
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as c:
            yield c


async def test_a_nul_in_a_check_note_output_or_maintenance_reason_is_a_400_on_both_backends(
    client: httpx.AsyncClient,
) -> None:
    """Found by fuzzing: SQLite stored `?note=a%00b` (and `Output`, `?reason=`) where PostgreSQL refused it with
    its store's catch-all text; both now refuse it as registrations refuse a NUL in check texts."""
    assert (await client.put("/v1/agent/service/register", json=AGENT_SERVICE)).status_code == 200
    before = (await client.get("/v1/agent/checks")).json()
    for path, params, body, what in [
        ("/v1/agent/check/pass/service:api-1", {"note": "a\x00b"}, None, "Output"),
        ("/v1/agent/check/warn/service:api-1", {"note": "\x00"}, None, "Output"),
        ("/v1/agent/check/fail/service:api-1", {"note": "x" * 5000 + "\x00"}, None, "Output"),
        ("/v1/agent/check/update/service:api-1", {}, {"Status": "passing", "Output": "a\x00b"}, "Output"),
        ("/v1/agent/service/maintenance/api-1", {"enable": "true", "reason": "a\x00b"}, None, "Notes"),
    ]:
        response = await client.put(path, params=params, json=body)
        assert (response.status_code, response.text) == (400, f"{what} must not contain a NUL character"), path
    assert (await client.get("/v1/agent/checks")).json() == before  # nothing was written
    kept = await client.put("/v1/agent/check/pass/service:api-1", params={"note": "é \u212a \x1b[31m"})
    assert kept.status_code == 200
    check = (await client.get("/v1/agent/checks")).json()["service:api-1"]
    assert (check["Status"], check["Output"]) == ("passing", "é \u212a \x1b[31m")


# -- a real process with ACLs on --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("catalog-input"), *ACLS_ON) as running:
        yield running
        errors = server_errors(running)
        assert not errors, errors[:3]


def _send(cluster: Cluster, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    return request(cluster.ready["http_addr"], method, path, body, headers=headers, timeout=30)


def _seed(cluster: Cluster) -> None:
    """The rows the routes under test name (again before each test: a hostile deregister may remove them)."""
    for path, body in [("/v1/catalog/register", NODE), ("/v1/agent/service/register", AGENT_SERVICE)]:
        answer = _send(cluster, "PUT", path, encode(body), AUTH)
        assert answer.status == 200, answer.text


def _ok(answer: Answer, allowed: set[int]) -> None:
    """A documented status, a message with every refusal, in bounded time."""
    assert answer.status in allowed, f"{answer.status} {answer.text[:300]}"
    assert answer.status < 500, answer.text[:300]
    assert answer.status == 200 or answer.text.strip(), answer.status
    assert answer.text != "Internal Server Error"
    assert answer.seconds < SECONDS, (answer.status, answer.seconds)


def _set(node: Any, parts: list[str], value: Any) -> Any:
    """A copy of `node` with `value` at `parts` (a digit: that list item; `key`/`value`: a map's key or value)."""
    if not parts:
        return value
    head, rest = parts[0], parts[1:]
    if head == "key":
        return {value if isinstance(value, str | Raw) else str(value): "v"}
    if head == "value":
        return {"k": value}
    if head.isdigit():
        items = list(node) if isinstance(node, list) else []
        while len(items) <= int(head):
            items.append({})
        items[int(head)] = _set(items[int(head)], rest, value)
        return items
    out = dict(node) if isinstance(node, dict) else {}
    out[head] = _set(out.get(head), rest, value)
    return out


# route -> (method, path, base body, fields): every field Consul's body has, nested ones too
BODIES: dict[str, tuple[str, str, dict[str, Any], list[str]]] = {
    "register": ("PUT", "/v1/catalog/register",
                 {**NODE, "Checks": [{"CheckID": "c1", "Name": "c", "Status": "passing", "ServiceID": "web-1"}]},
                 ["Node", "Address", "ID", "Datacenter", "Partition", "PeerName", "SkipNodeUpdate", "Locality",
                  "TaggedAddresses", "TaggedAddresses.key", "TaggedAddresses.value", "NodeMeta", "NodeMeta.key",
                  "NodeMeta.value", "Service", "Service.ID", "Service.Service", "Service.Tags", "Service.Tags.0",
                  "Service.Address", "Service.Port", "Service.Meta.key", "Service.Meta.value", "Service.Kind",
                  "Service.TaggedAddresses.key", "Service.TaggedAddresses.lan.Address",
                  "Service.TaggedAddresses.lan.Port", "Service.Weights", "Service.Weights.Passing",
                  "Service.Weights.Warning", "Service.EnableTagOverride", "Service.Proxy", "Service.Connect",
                  "Service.SocketPath", "Service.PeerName", "Service.Partition", "Check", "Check.CheckID",
                  "Check.Name", "Check.Status", "Check.Notes", "Check.Output", "Check.ServiceID", "Check.Node",
                  "Check.Type", "Check.Definition", "Check.Interval", "Checks", "Checks.0", "Checks.0.Status",
                  "Checks.0.ServiceTags.0", "Checks.0.ExposedPort", "Extra"]),
    "deregister": ("PUT", "/v1/catalog/deregister", {"Node": "n-gone", "ServiceID": "web-9"},
                   ["Node", "Address", "Datacenter", "ServiceID", "CheckID", "Partition", "PeerName", "Extra"]),
    "agent-register": ("PUT", "/v1/agent/service/register", {"Name": "fuzz", "ID": "fuzz-1", "Check": {"TTL": "30s"}},
                       ["Name", "ID", "Kind", "Tags", "Tags.0", "Port", "Address", "Meta.key", "Meta.value",
                        "TaggedAddresses.key", "TaggedAddresses.lan.Port", "Weights.Passing", "Weights.Warning",
                        "EnableTagOverride", "Partition", "PeerName", "Proxy", "Connect", "SocketPath", "Locality",
                        "Check", "Check.TTL", "Check.Status", "Check.Notes", "Check.CheckID", "Check.Name",
                        "Check.Interval", "Check.Timeout", "Check.HTTP", "Check.Header.key",
                        "Check.DeregisterCriticalServiceAfter", "Check.SuccessBeforePassing", "Checks", "Checks.0",
                        "Checks.0.TTL", "Checks.0.Notes", "Extra"]),
    "check-update": ("PUT", "/v1/agent/check/update/service:api-1", {"Status": "passing", "Output": "ok"},
                     ["Status", "Output", "Extra"]),
    "config": ("PUT", "/v1/config",
               {"Kind": "exported-services", "Name": "default",
                "Services": [{"Name": "web", "Consumers": [{"Peer": "east"}]}]},
               ["Kind", "Name", "Partition", "Namespace", "Meta", "Meta.key", "Meta.value", "Services", "Services.0",
                "Services.0.Name", "Services.0.Namespace", "Services.0.Consumers", "Services.0.Consumers.0",
                "Services.0.Consumers.0.Peer", "Services.0.Consumers.0.Partition",
                "Services.0.Consumers.0.SamenessGroup", "Extra"]),
}  # fmt: skip
LISTINGS = ["/v1/catalog/services", "/v1/catalog/nodes", "/v1/health/state/any", "/v1/health/service/web",
            "/v1/agent/services", "/v1/agent/checks", "/v1/config/exported-services", "/v1/exported-services",
            "/v1/imported-services"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("route", list(BODIES))
def test_hostile_values_in_every_body_field(cluster: Cluster, route: str) -> None:
    """Each field, one at a time, gets each hostile class (then random ones), with the management token (parsed
    in full: 200 or a 400 with its message) and anonymously (refused as cleanly); whatever was stored renders."""
    since = len(cluster.lines)
    _seed(cluster)
    method, path, base, fields = BODIES[route]
    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(field=st.sampled_from(fields), value=hostile_value, management=st.booleans())
    def run(field: str, value: Any, management: bool) -> None:
        answer = _send(cluster, method, path, encode(_set(base, field.split("."), value)), AUTH if management else {})
        _ok(answer, ANYONE | ({200, 404} if management else set()))
        statuses[answer.status] += 1

    for field in fields:  # every class in every field, before the random examples
        for value in REPRESENTATIVES:
            run.hypothesis.inner_test(field=field, value=value, management=True)  # type: ignore[attr-defined]
    run()
    print(route, dict(sorted(statuses.items())))  # noqa: T201 -- the figures of a run, with -s
    assert statuses.total() >= MINIMUM + len(fields) * len(REPRESENTATIVES), statuses
    assert statuses[400] > 0, statuses
    assert statuses[200] > 0, statuses  # some hostile values are fine (stored, then rendered below)
    for listing in LISTINGS:
        _ok(_send(cluster, "GET", listing, b"", AUTH), {200})
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]


# (method, path, body, statuses besides ANYONE) for the management token
QUERY_ROUTES: list[tuple[str, str, bytes | None, set[int]]] = [
    ("GET", "/v1/catalog/services", None, {200}),
    ("GET", "/v1/catalog/service/web", None, {200}),
    ("GET", "/v1/catalog/nodes", None, {200}),
    ("GET", "/v1/catalog/node/n1", None, {200}),
    ("GET", "/v1/health/service/web", None, {200}),
    ("GET", "/v1/health/checks/web", None, {200}),
    ("GET", "/v1/health/state/any", None, {200}),
    ("GET", "/v1/agent/services", None, {200}),
    ("GET", "/v1/agent/checks", None, {200}),
    ("PUT", "/v1/agent/check/pass/service:api-1", None, {200}),
    ("PUT", "/v1/agent/check/warn/service:api-1", None, {200}),
    ("PUT", "/v1/agent/check/fail/service:api-1", None, {200}),
    ("PUT", "/v1/agent/service/maintenance/api-1?enable=true", None, {200}),
    ("PUT", "/v1/agent/service/maintenance/api-1", None, {200}),
    ("PUT", "/v1/agent/service/register", encode(AGENT_SERVICE), {200}),
    ("PUT", "/v1/catalog/register", encode(NODE), {200}),
    ("PUT", "/v1/config", encode(BODIES["config"][2]), {200}),
    ("GET", "/v1/config/exported-services", None, {200}),
    ("GET", "/v1/config/exported-services/default", None, {200, 404}),
    ("DELETE", "/v1/config/exported-services/nowhere", None, {200}),
    ("GET", "/v1/exported-services", None, {200}),
    ("GET", "/v1/imported-services", None, {200}),
]
PARAMS = ["peer", "tag", "passing", "note", "reason", "enable", "cas", "replace-existing-checks", "partition",
          "index", "wait", "filter", "dc", "token", "pretty", "stale", "consistent", "ns"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hostile_values_in_every_query_parameter(cluster: Cluster) -> None:
    """Each query parameter of each route, alone or repeated after (or before) a good value, gets a hostile
    value (percent-encoded from its bytes: a lone surrogate arrives as invalid UTF-8); `index` with `wait=1ms`."""
    since = len(cluster.lines)
    _seed(cluster)
    statuses: Counter[int] = Counter()

    @settings(EXAMPLES, max_examples=200)
    @given(route=st.sampled_from(QUERY_ROUTES), param=st.sampled_from(PARAMS), value=hostile_text,
           repeat=st.sampled_from(["no", "after", "before"]))  # fmt: skip
    def run(route: tuple[str, str, bytes | None, set[int]], param: str, value: str, repeat: str) -> None:
        method, path, body, successes = route
        hostile = f"{param}={percent(value)}"
        good = {"index": "index=1", "wait": "wait=1ms", "token": "token=x", "enable": "enable=false"}
        query = {"no": hostile, "after": f"{good.get(param, f'{param}=')}&{hostile}",
                 "before": f"{hostile}&{good.get(param, f'{param}=')}"}[repeat]  # fmt: skip
        if param == "index":
            query += "&wait=1ms"
        answer = _send(cluster, method, f"{path}{'&' if '?' in path else '?'}{query}", body or b"", AUTH)
        _ok(answer, ANYONE | successes | {404, HEAD_TOO_LARGE})
        statuses[answer.status] += 1

    for route in QUERY_ROUTES:  # every class in every parameter of every route, before the random examples
        for param in PARAMS:
            for value in REPRESENTATIVES:
                if isinstance(value, str):
                    run.hypothesis.inner_test(route=route, param=param, value=value, repeat="no")  # type: ignore[attr-defined]
    run()
    assert statuses.total() >= 2 * MINIMUM, statuses
    for listing in LISTINGS:
        _ok(_send(cluster, "GET", listing, b"", AUTH), {200})
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]


PATHS = [("GET", "/v1/catalog/service/{}"), ("GET", "/v1/catalog/node/{}"), ("GET", "/v1/health/service/{}"),
         ("GET", "/v1/health/checks/{}"), ("GET", "/v1/health/state/{}"), ("PUT", "/v1/agent/check/pass/{}"),
         ("PUT", "/v1/agent/check/update/{}"), ("PUT", "/v1/agent/service/deregister/{}"),
         ("PUT", "/v1/agent/service/maintenance/{}?enable=true"), ("GET", "/v1/config/{}"),
         ("GET", "/v1/config/{}/default"), ("GET", "/v1/config/exported-services/{}"),
         ("DELETE", "/v1/config/exported-services/{}"), ("DELETE", "/v1/config/{}/default")]  # fmt: skip


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_hostile_values_in_path_parameters(cluster: Cluster) -> None:
    """Service, node, check and service IDs, states, config kinds and names in the path, percent-encoded from
    their bytes (invalid UTF-8 included), with the management token and anonymously."""
    since = len(cluster.lines)
    _seed(cluster)
    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(value=st.one_of(hostile_text, hostile_key), where=st.sampled_from(PATHS), management=st.booleans())
    def run(value: str, where: tuple[str, str], management: bool) -> None:
        method, path = where
        body = b'{"Status": "passing"}' if "/update/" in path else b""
        answer = _send(cluster, method, path.format(percent(value) or "%20"), body, AUTH if management else {})
        _ok(answer, ANYONE | {200, 404, 405, HEAD_TOO_LARGE})
        statuses[answer.status] += 1

    for where in PATHS:
        for value in REPRESENTATIVES:
            if isinstance(value, str):
                run.hypothesis.inner_test(value=value, where=where, management=True)  # type: ignore[attr-defined]
    run()
    assert statuses.total() >= MINIMUM + len(PATHS), statuses
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]


@pytest.mark.slow
def test_repeated_tags_a_huge_peer_and_non_utf8_bytes_are_answered_in_bounded_time(cluster: Cluster) -> None:
    """`?tag=` thousands of times (the same one, and all different), a `?peer=` up to the head limit and past
    it, and bytes that are not UTF-8 in every parameter the catalog reads: an answer (the filtered rows, `[]` for
    an unknown peer, SPEC §13) or a refusal with a message, never slow and never a 5xx."""
    since = len(cluster.lines)
    _seed(cluster)

    def get(path: str, allowed: set[int], headers: dict[str, str] = AUTH) -> Answer:
        answer = _send(cluster, "GET", path, b"", headers)
        _ok(answer, allowed)
        return answer

    same = get("/v1/health/service/web?" + "&".join(["tag=v1"] * 2_000), {200})
    # every tag given is v1: the seeded instance has it (and the others the body test may have registered)
    assert ("n1", "web-1") in {(e["Node"]["Node"], e["Service"]["ID"]) for e in same.json()}
    assert all("v1" in e["Service"]["Tags"] for e in same.json())
    different = get("/v1/catalog/service/web?" + "&".join(f"tag=t{i}" for i in range(1_500)), {200})
    assert different.json() == []
    too_many = get("/v1/health/service/web?" + "&".join(["tag=v1"] * 5_000), {HEAD_TOO_LARGE})
    assert too_many.text == "request head over 16384 bytes"
    for path in ("/v1/health/service/web", "/v1/catalog/service/web", "/v1/catalog/nodes", "/v1/health/state/any"):
        assert get(f"{path}?peer={'p' * 15_000}", {200}).json() == []  # an unknown peer: nothing imported
        get(f"{path}?peer={'p' * 60_000}", {HEAD_TOO_LARGE})
        # anonymous: imported rows need the imported-data rule (SPEC §14), whatever the peer is called
        assert get(f"{path}?peer={'p' * 15_000}", {403}, headers={}).text.startswith("Permission denied")
    for query in ("peer=%ff", "peer=%ed%a0%80", "tag=%ff%fe", "tag=%c3", "peer=a%00b", "tag=%00"):
        assert get(f"/v1/health/service/web?{query}", {200}).json() == []
    for query, message in [("passing=%ff", "Invalid value for ?passing"), ("partition=%ff", "is not a valid partition"),
                           ("index=%ff", "Invalid index"), ("index=1&wait=%ed%a0%80", "Invalid wait time")]:  # fmt: skip
        assert message in get(f"/v1/health/service/web?{query}", {400}).text, query
    cas = _send(cluster, "PUT", "/v1/config?cas=%ff", encode(BODIES["config"][2]), AUTH)
    _ok(cas, {400})
    assert cas.text.startswith("strconv.ParseUint: parsing ")
    enable = _send(cluster, "PUT", "/v1/agent/service/maintenance/api-1?enable=%ff", b"", AUTH)
    _ok(enable, {400})
    assert enable.text.startswith("Invalid value for enable")
    for verb in ("pass", "warn", "fail"):  # a note as long as a URL can carry is kept, capped as Consul caps it
        _ok(_send(cluster, "PUT", f"/v1/agent/check/{verb}/service:api-1?note={'n' * 15_000}", b"", AUTH), {200})
    output = get("/v1/agent/checks", {200}).json()["service:api-1"]["Output"]
    assert output == "n" * 4096 + " ... (captured 4096 of 15000 bytes)"
    reason = _send(cluster, "PUT", f"/v1/agent/service/maintenance/api-1?enable=true&reason={'r' * 15_000}", b"", AUTH)
    _ok(reason, {200})
    notes = get("/v1/agent/checks", {200}).json()["_service_maintenance:api-1"]["Notes"]
    assert len(notes) < 4200
    _ok(_send(cluster, "PUT", "/v1/agent/service/maintenance/api-1?enable=false", b"", AUTH), {200})
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]
