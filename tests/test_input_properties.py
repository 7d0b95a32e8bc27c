"""Property tests on the client port of a real process (issue 11, finding 5; SPEC §3, §7, §8): hostile
values (`tests.hostile_values`: lone surrogates, huge digit strings, deep nesting, overflowing durations and
times, control and look-alike characters, wrong types) in every field of every body, every query
parameter, every path parameter and the token headers. Every answer is a documented status with a
message (never a 5xx), and the server logs no ERROR and no traceback.

The cluster runs with ACLs on. Bodies are sent with the management token (every body is parsed in full)
or anonymously (refused, but the refusal must be as clean). Establish and check carry, unless the field
under test is the token, a well-formed token of the attacker's own CA that points at this cluster's peer
port: it decodes and verifies, and the dial fails at once on TLS (a 502, no retries).
"""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.attack import Answer, attacker_identity, fake_token_fields, forge, raw, request, server_errors
from tests.cluster import Cluster, running_cluster
from tests.hostile_pair import ACLS_ON, AUTH
from tests.hostile_values import (
    REPRESENTATIVES,
    Raw,
    address_text,
    encode,
    hostile_key,
    hostile_text,
    hostile_value,
    percent,
)

pytestmark = pytest.mark.slow

EXAMPLES = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MINIMUM = 30  # examples that must have reached the server (hypothesis stops early when it runs out)
ANYONE = {400, 403, 413, 429}  # what any request may get besides its successes
HEAD_TOO_LARGE = 431  # a request line and headers over 16 KiB (SECURITY.md), before any route sees them
TOKEN_FIELDS = ["CA", "CA.0", "ServerAddresses", "ServerAddresses.0", "ServerName", "PeerID", "EstablishmentSecret",
                "Remote", "Remote.Datacenter", "Remote.Partition", "Signature", "Extra"]  # fmt: skip


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("props"), *ACLS_ON) as running:
        yield running
        errors = server_errors(running)
        assert not errors, errors[:3]


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory, cluster: Cluster) -> dict[str, Any]:
    """The fields of a token the attacker signed, pointing at the cluster's own peer port, and the signer."""
    identity = attacker_identity(tmp_path_factory.mktemp("attacker"))
    return {"identity": identity, "fields": fake_token_fields(identity, cluster.ready["peering_addr"])}


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `body` with `value` at `path` (`A.B`, `A.0` for a list item, `A.key` for a map key)."""
    out: dict[str, Any] = {**body}
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
    elif rest == "0":
        out[head] = [value]
    elif rest == "key":
        out[head] = {value if isinstance(value, str) else str(value): "v"}
    elif rest == "value":
        out[head] = {"k": value}
    else:
        out[head] = _set(out.get(head) or {}, rest, value)
    return out


def _ok(answer: Answer, allowed: set[int]) -> None:
    assert answer.status in allowed, f"{answer.status} {answer.text[:300]}"
    assert answer.status == 200 or answer.text, answer.status
    assert answer.text != "Internal Server Error"


def _send(cluster: Cluster, method: str, path: str, body: bytes, headers: dict[str, str]) -> Answer:
    return request(cluster.ready["http_addr"], method, path, body, headers=headers, timeout=30)


# route -> (method, path, base body, fields, statuses for the management token)
BODIES: dict[str, tuple[str, str, dict[str, Any], list[str], set[int]]] = {
    "token": ("POST", "/v1/peering/token", {"PeerName": "fuzz-acceptor"},
              ["PeerName", "Partition", "ServerExternalAddresses", "ServerExternalAddresses.0", "Meta", "Meta.key",
               "Meta.value", "Extra"], {200}),
    "establish": ("POST", "/v1/peering/establish", {"PeerName": "fuzz-dialer"},
                  ["PeerName", "PeeringToken", "Partition", "Meta", "Meta.key", "Meta.value", "Extra"], {502}),
    "check": ("POST", "/v1/peering/check", {"PeerName": "fuzz-dialer"},
              ["PeerName", "PeeringToken", "Partition", "Meta", "Meta.key", "Meta.value", "Extra"], {200}),
    "policy": ("PUT", "/v1/acl/policy", {"Rules": 'peering = "read"'},
               ["ID", "Name", "Description", "Rules", "Datacenters", "Datacenters.0", "CreateIndex", "ModifyIndex",
                "Hash", "Extra"], {200}),
    "acl-token": ("PUT", "/v1/acl/token", {"Description": "fuzz"},
                  ["AccessorID", "SecretID", "Description", "Policies", "Policies.0", "Policies.0.ID",
                   "Policies.0.Name", "Local", "ExpirationTime", "ExpirationTTL", "AllowedCIDRs", "AllowedCIDRs.0",
                   "CreateTime", "CreateIndex", "ModifyIndex", "Hash", "Extra"], {200}),
}  # fmt: skip


@pytest.mark.timeout(600)
@pytest.mark.parametrize("route", list(BODIES))
def test_hostile_values_in_every_body_field(cluster: Cluster, attacker: dict[str, Any], route: str) -> None:
    """Each body field of each route, one at a time, gets a hostile value (strings of every class, raw JSON
    100,000 deep or with 5,000-digit numbers or invalid UTF-8, wrong types); management and anonymous."""
    since = len(cluster.lines)
    method, path, base, fields, successes = BODIES[route]
    token = forge(attacker["identity"], attacker["fields"])
    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(field=st.sampled_from(fields), value=st.one_of(hostile_value, address_text), management=st.booleans())
    def run(field: str, value: Any, management: bool) -> None:
        body = {**base, "PeeringToken": token} if route in ("establish", "check") else dict(base)
        if route == "policy":
            body["Name"] = f"fuzz-{uuid.uuid4().hex[:12]}"
        answer = _send(cluster, method, path, encode(_set(body, field, value)), AUTH if management else {})
        # anonymous: only check answers 200 (IsValid false), to what it refuses before the ACL check
        anonymous = {200} if route == "check" else set()
        _ok(answer, ANYONE | (successes if management else anonymous))
        statuses[answer.status] += 1

    for field in fields:  # every class in every field, before the random examples
        for value in REPRESENTATIVES:
            run.hypothesis.inner_test(field=field, value=value, management=True)  # type: ignore[attr-defined]
    run()
    assert sum(statuses.values()) >= MINIMUM + len(fields) * len(REPRESENTATIVES), statuses
    for listing in ("/v1/peerings", "/v1/acl/policies", "/v1/acl/tokens"):
        _ok(_send(cluster, "GET", listing, b"", AUTH), {200})  # whatever was stored still renders
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]


@pytest.mark.timeout(600)
def test_hostile_values_in_every_token_field(cluster: Cluster, attacker: dict[str, Any]) -> None:
    """Each field of a peering token, signed by the attacker (so that only the values are wrong) or not
    re-signed, gets a hostile value; establish and check answer as documented, and nothing is stored."""

    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(field=st.sampled_from(TOKEN_FIELDS), value=st.one_of(hostile_value, address_text), sign=st.booleans(),
           route=st.sampled_from(["establish", "check"]))  # fmt: skip
    def run(field: str, value: Any, sign: bool, route: str) -> None:
        fields = _set(attacker["fields"], field, value)
        if sign:
            try:
                token = forge(attacker["identity"], fields)
            except (TypeError, ValueError, RecursionError):
                return  # a value Python's own JSON cannot sign: the unsigned variant covers it
        else:
            token = base64.b64encode(encode(fields)).decode()
        body = encode({"PeerName": "fuzz-token", "PeeringToken": token})
        answer = _send(cluster, "POST", f"/v1/peering/{route}", body, AUTH)
        _ok(answer, ANYONE | ({502} if route == "establish" else {200}))
        if route == "check" and answer.status == 200:
            assert answer.json()["IsValid"] is False, answer.text
        statuses[answer.status] += 1

    for field in TOKEN_FIELDS:  # every class in every field, before the random examples
        for value in REPRESENTATIVES:
            signed = not isinstance(value, Raw)  # Python's JSON cannot sign raw JSON text: send that unsigned
            run.hypothesis.inner_test(field=field, value=value, sign=signed, route="establish")  # type: ignore[attr-defined]
    run()
    assert sum(statuses.values()) >= MINIMUM + len(TOKEN_FIELDS) * len(REPRESENTATIVES), statuses
    _ok(_send(cluster, "GET", "/v1/peering/fuzz-token", b"", AUTH), {404})


# route -> the statuses it may answer besides ANYONE
QUERY_ROUTES: list[tuple[str, str, bytes | None, set[int]]] = [
    ("GET", "/v1/peerings", None, {200}),
    ("GET", "/v1/peering/fuzz-acceptor", None, {200, 404}),
    ("DELETE", "/v1/peering/no-such-peering", None, {200}),
    ("POST", "/v1/peering/token", b'{"PeerName": "fuzz-query"}', {200}),
    ("GET", "/v1/acl/policies", None, {200}),
    ("GET", "/v1/acl/tokens", None, {200}),
    ("GET", "/v1/acl/token/self", None, {200}),
    ("GET", "/v1/status/leader", None, {200}),
    ("GET", "/v1/agent/metrics", None, {200}),
]
PARAMS = ["index", "wait", "partition", "token", "dc", "filter", "pretty", "stale", "consistent", "format", "ns"]


@pytest.mark.timeout(600)
def test_hostile_values_in_every_query_parameter(cluster: Cluster) -> None:
    """Each query parameter of each route, alone or repeated after (or before) a good value, gets a hostile
    value; `index` is sent with `wait=1ms` so that no example blocks."""

    statuses: Counter[int] = Counter()

    @settings(EXAMPLES, max_examples=150)
    @given(route=st.sampled_from(QUERY_ROUTES), param=st.sampled_from(PARAMS), value=hostile_text,
           repeat=st.sampled_from(["no", "after", "before"]))  # fmt: skip
    def run(route: tuple[str, str, bytes | None, set[int]], param: str, value: str, repeat: str) -> None:
        method, path, body, successes = route
        hostile = f"{param}={percent(value)}"
        good = {"index": "index=1", "wait": "wait=1ms", "token": "token=x"}.get(param, f"{param}=")
        query = {"no": hostile, "after": f"{good}&{hostile}", "before": f"{hostile}&{good}"}[repeat]
        if param == "index":
            query += "&wait=1ms"
        answer = _send(cluster, method, f"{path}?{query}", body or b"", AUTH)
        _ok(answer, ANYONE | successes | {404, HEAD_TOO_LARGE})
        statuses[answer.status] += 1

    for route in QUERY_ROUTES:  # every class in every parameter of every route, before the random examples
        for param in PARAMS:
            for value in REPRESENTATIVES:
                if isinstance(value, str):
                    run.hypothesis.inner_test(route=route, param=param, value=value, repeat="no")  # type: ignore[attr-defined]
    run()
    assert sum(statuses.values()) >= 2 * MINIMUM, statuses


@pytest.mark.timeout(600)
def test_hostile_values_in_path_parameters_and_token_headers(cluster: Cluster) -> None:
    """Peering names, policy and token IDs in the path, and the `X-Consul-Token` and `Authorization: Bearer`
    headers, get hostile values (percent-encoded from their bytes in paths; their UTF-8 bytes in headers)."""
    paths = ["/v1/peering/{}", "/v1/acl/policy/{}", "/v1/acl/policy/name/{}", "/v1/acl/token/{}"]
    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(value=st.one_of(hostile_text, hostile_key), where=st.sampled_from([*paths, "X-Consul-Token", "Bearer"]),
           method=st.sampled_from(["GET", "DELETE", "PUT"]))  # fmt: skip
    def run(value: str, where: str, method: str) -> None:
        if where.startswith("/"):
            body = b'{"Name": "x"}' if method == "PUT" else b""
            answer = _send(cluster, method, where.format(percent(value) or "%20"), body, AUTH)
            _ok(answer, ANYONE | {200, 404, 405, HEAD_TOO_LARGE})
            statuses[answer.status] += 1
            return
        header = "X-Consul-Token" if where == "X-Consul-Token" else "Authorization"
        text = value if where == "X-Consul-Token" else f"Bearer {value}"
        data = text.encode("utf-8", errors="surrogatepass").replace(b"\r", b"").replace(b"\n", b"")
        head = (
            b"GET /v1/peerings HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            + header.encode()
            + b": "
            + data
            + b"\r\n\r\n"
        )
        answer = raw(cluster.ready["http_addr"], head)
        _ok(answer, ANYONE | {HEAD_TOO_LARGE})
        statuses[answer.status] += 1

    run()
    assert sum(statuses.values()) >= MINIMUM, statuses


def test_the_hostile_values_reach_the_server_intact(cluster: Cluster) -> None:
    """The encoder sends what the tests say (a check of this file, not of the service's limits): a lone
    surrogate arrives as `\\udXXX` and is refused by the body decoder; `Raw` JSON goes in verbatim."""
    assert encode({"a": "\ud800", "b": Raw(b"[[]]")}) == b'{"a": "\\ud800", "b": [[]]}'
    surrogate = _send(cluster, "POST", "/v1/peering/token", encode({"PeerName": "\ud800"}), AUTH)
    assert (surrogate.status, surrogate.text[:22]) == (400, "Body decoding failed: ")
