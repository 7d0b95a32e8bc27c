"""Hostile single inputs against real processes (issue 11, findings 4-7 and 9-11; SPEC §3, §4, §6, §8),
sent over real sockets the way the review sent them; the loads (findings 1-3, 8) are in `test_hostile.py`.

Every answer is a documented status with a message; no log line of the server is an ERROR or a traceback.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tests.attack import (
    ATTACKERS,
    LEGIT,
    MIB,
    Answer,
    attacker_identity,
    connect,
    fake_token_fields,
    forge,
    keep_alive,
    log_entries,
    parse,
    raw,
    read_until_closed,
    request,
    server_errors,
    token_fields,
)
from tests.cluster import Cluster, running_cluster
from tests.hostile_pair import ACLS_ON, AUTH, HEARTBEATS, MANAGEMENT, both_active, peered, running_text_cluster
from tests.hostile_peer import HostilePeer

pytestmark = pytest.mark.slow

DIGITS = "9" * 5000
DOCUMENTED = {400, 403, 404, 405, 413, 429}


@pytest.fixture(scope="module")
def acl_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One cluster with ACLs on (default deny) for the tests that only send it input."""
    with running_cluster(tmp_path_factory.mktemp("acl"), *ACLS_ON, *HEARTBEATS) as cluster:
        yield cluster


def _client(cluster: Cluster) -> str:
    return cluster.ready["http_addr"]


def _peer(cluster: Cluster) -> str:
    return cluster.ready["peering_addr"]


def _documented(answer: Answer, *allowed: int) -> bool:
    return answer.status in (allowed or DOCUMENTED) and answer.text != "Internal Server Error"


def _clean(cluster: Cluster, since: int = 0) -> None:
    """No ERROR line and no traceback in the cluster's log (from its line `since` on: a shared cluster)."""
    errors = server_errors(cluster, since)
    assert not errors, errors[:3]


def _acl_token(cluster: Cluster, cidrs: list[str]) -> str:
    """A `peering = "read"` token limited to `cidrs`; its secret."""
    policy = request(_client(cluster), "PUT", "/v1/acl/policy", {"Name": f"read-{uuid.uuid4().hex[:8]}",
                     "Rules": 'peering = "read"'}, headers=AUTH)  # fmt: skip
    assert policy.status == 200, policy.text
    body = {"Policies": [{"ID": policy.json()["ID"]}], "AllowedCIDRs": cidrs}
    token = request(_client(cluster), "PUT", "/v1/acl/token", body, headers=AUTH)
    assert token.status == 200, token.text
    return str(token.json()["SecretID"])


def _logged_clients(cluster: Cluster, marker: str, count: int) -> list[str]:
    """The `client` of every request log line whose path carries `marker`, once there are `count` of them
    (a request is logged just after its answer went out; bounded wait)."""
    deadline = time.monotonic() + 5
    while True:
        entries = [e for e in log_entries(cluster) if e.get("message") == "request" and marker in str(e.get("path"))]
        if len(entries) >= count or time.monotonic() > deadline:
            return [str(e.get("client")) for e in entries]
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_finding_4_x_forwarded_for_is_believed_only_from_trusted_proxies(tmp_path: Path) -> None:
    """Without `--trusted-proxies`, `X-Forwarded-For` (and `Forwarded`) from loopback does not get a token
    past its `AllowedCIDRs`, nor lock a caller out, and the log names the connection's address; with
    `--trusted-proxies 127.0.0.1/32`, the proxy's header is believed (and logged), another source's is not."""
    forwarded = {"X-Forwarded-For": "10.1.2.3", "Forwarded": "for=10.1.2.3"}
    with running_cluster(tmp_path / "plain", *ACLS_ON, "--log-level", "debug") as plain:  # 200s log at debug
        outside, inside = _acl_token(plain, ["10.0.0.0/8"]), _acl_token(plain, ["127.0.0.1/32"])
        spoofed = request(
            _client(plain), "GET", "/v1/peerings?m=spoofed", headers={**forwarded, "X-Consul-Token": outside}
        )
        honest = request(
            _client(plain), "GET", "/v1/peerings?m=honest", headers={**forwarded, "X-Consul-Token": inside}
        )
        assert spoofed.status == 403, spoofed.text
        assert honest.status == 200, honest.text
        logged = _logged_clients(plain, "/v1/peerings", 2)
        assert logged == [LEGIT, LEGIT], logged
        _clean(plain)
    with running_cluster(
        tmp_path / "proxied", *ACLS_ON, "--trusted-proxies", "127.0.0.1/32", "--log-level", "debug"
    ) as proxied:
        outside = _acl_token(proxied, ["10.0.0.0/8"])
        headers = {"X-Forwarded-For": "10.1.2.3", "X-Consul-Token": outside}
        via_proxy = request(_client(proxied), "GET", "/v1/peerings", headers=headers)
        not_a_proxy = request(_client(proxied), "GET", "/v1/peerings", headers=headers, source=ATTACKERS[0])
        assert via_proxy.status == 200, via_proxy.text
        assert not_a_proxy.status == 403, not_a_proxy.text
        logged = _logged_clients(proxied, "/v1/peerings", 2)
        assert logged == ["10.1.2.3", ATTACKERS[0]], logged
        _clean(proxied)


def _ttl(value: object) -> dict[str, Any]:
    return {"Description": "t", "ExpirationTTL": value}


# (what, method, path, body, statuses allowed): each of the review's 500s, and their neighbours
CLIENT_PORT_500S: list[tuple[str, str, str, Any, set[int]]] = [
    ("5,000-digit index on list", "GET", f"/v1/peerings?index={DIGITS}&wait=1ms", None, {400}),
    ("5,000-digit index on read", "GET", f"/v1/peering/x?index={DIGITS}&wait=1ms", None, {400}),
    ("5,000-digit wait", "GET", f"/v1/peerings?index=1&wait={DIGITS}s", None, {400}),
    ("5,000-digit port in ServerExternalAddresses", "POST", "/v1/peering/token",
     {"PeerName": "x", "ServerExternalAddresses": [f"127.0.0.1:{DIGITS}"]}, {400}),
    ("policy rules nested 10,000 deep (JSON)", "PUT", "/v1/acl/policy",
     {"Name": "deep-json", "Rules": '{"peering":' * 10_000 + '"read"' + "}" * 10_000}, {400}),
    ("policy rules nested 10,000 deep (HCL)", "PUT", "/v1/acl/policy",
     {"Name": "deep-hcl", "Rules": "a {\n" * 10_000 + "}\n" * 10_000}, {400}),
    ("ExpirationTTL of 10^30 hours", "PUT", "/v1/acl/token", _ttl("1" + "0" * 30 + "h"), {400}),
    ("ExpirationTTL just over 2^63 ns", "PUT", "/v1/acl/token", _ttl("2562048h"), {400}),
    ("ExpirationTTL as 10^30 ns", "PUT", "/v1/acl/token", _ttl(10**30), {400}),
    ("ExpirationTTL with 5,000 digits", "PUT", "/v1/acl/token", _ttl(f"{DIGITS}s"), {400}),
    ("ExpirationTime in year 9999, UTC-23:59", "PUT", "/v1/acl/token",
     {"ExpirationTime": "9999-12-31T23:59:59-23:59"}, {200, 400}),
    ("ExpirationTime at the end of year 9999", "PUT", "/v1/acl/token",
     {"ExpirationTime": "9999-12-31T23:59:59.999999+00:00"}, {200, 400}),
    ("ExpirationTime in year 1, UTC+23:59", "PUT", "/v1/acl/token",
     {"ExpirationTime": "0001-01-01T00:00:00+23:59"}, {400}),
    ("lone surrogate in an ACL token Description", "PUT", "/v1/acl/token", {"Description": "\ud800"}, {400}),
    ("lone surrogate in a policy Name", "PUT", "/v1/acl/policy", {"Name": "\udfff", "Rules": ""}, {400}),
    ("lone surrogate in a peering Meta value", "POST", "/v1/peering/token",
     {"PeerName": "x", "Meta": {"k": "\ud800"}}, {400}),
    ("lone surrogate in PeerName", "POST", "/v1/peering/token", {"PeerName": "x\udc00"}, {400}),
]  # fmt: skip


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("what", "method", "path", "body", "allowed"), CLIENT_PORT_500S, ids=[c[0] for c in CLIENT_PORT_500S]
)
def test_finding_5_client_inputs_that_were_500s(
    acl_cluster: Cluster, what: str, method: str, path: str, body: Any, allowed: set[int]
) -> None:
    """Finding 5 on the client port, with the management token (so that every body is parsed in full): each
    input the review saw answered 500 now gets a documented status with a message."""
    since = len(acl_cluster.lines)
    answer = request(_client(acl_cluster), method, path, body, headers=AUTH)
    assert _documented(answer, *allowed), f"{what}: {answer.status} {answer.text[:300]}"
    assert answer.text, what
    _clean(acl_cluster, since)


def _establish(cluster: Cluster, token: str, name: str = "hostile") -> Answer:
    return request(_client(cluster), "POST", "/v1/peering/establish", {"PeerName": name, "PeeringToken": token},
                   headers=AUTH, timeout=30)  # fmt: skip


@pytest.mark.timeout(120)
def test_finding_5_hostile_tokens_and_peer_messages_that_were_500s(acl_cluster: Cluster, tmp_path: Path) -> None:
    """Finding 5 in tokens and on the peer port: a token (validly signed by the attacker) with a 5,000-digit
    port, a lone surrogate in a field, or a CA entry missing its newline is a 400 at establish (or a 502 once
    it dials); an exchange with a 5,000-digit port in the dialer's addresses, or a CA missing its newline,
    is a 400 on the peer port, without a secret."""
    since = len(acl_cluster.lines)
    attacker = attacker_identity(tmp_path / "attacker")
    base = fake_token_fields(attacker, "127.0.0.1:1")
    pem = attacker.ca_pem
    variants: dict[str, dict[str, Any]] = {
        "5,000-digit port": {"ServerAddresses": [f"127.0.0.1:{DIGITS}"]},
        "surrogate in Remote.Datacenter": {"Remote": {"Datacenter": "\ud800", "Partition": "default"}},
        "surrogate in ServerName": {"ServerName": "server.\udc00.consul"},
        "surrogate in PeerID": {"PeerID": "\ud800"},
        "surrogate in EstablishmentSecret": {"EstablishmentSecret": "\udbff"},
        "CA missing its newline, then another": {"CA": [pem.rstrip("\n"), pem]},
        "CA missing its newline": {"CA": [pem.rstrip("\n")]},
    }
    answers = {what: _establish(acl_cluster, forge(attacker, {**base, **change})) for what, change in variants.items()}
    for what, answer in answers.items():
        assert _documented(answer, 400, 502), f"{what}: {answer.status} {answer.text[:300]}"
    dialer = {"ClusterID": str(uuid.uuid4()), "PeeringID": "", "CA": pem, "Datacenter": "dc9", "Partition": "default",
              "ServerName": "server.dc9.consul", "Addresses": ["127.0.0.1:1"]}  # fmt: skip
    exchanges = {
        "5,000-digit port": {**dialer, "Addresses": [f"127.0.0.1:{DIGITS}"]},
        "CA missing its newline, then another": {**dialer, "CA": pem.rstrip("\n") + pem},
        "surrogate in Datacenter": {**dialer, "Datacenter": "\ud800"},
    }
    for what, identity in exchanges.items():
        body = {"PeerID": str(uuid.uuid4()), "EstablishmentSecret": str(uuid.uuid4()), "Dialer": identity}
        answer = request(_peer(acl_cluster), "POST", "/peering/v1/exchange", body, tls=True)
        assert _documented(answer, 400, 403), f"exchange, {what}: {answer.status} {answer.text[:300]}"
    assert request(_client(acl_cluster), "GET", "/v1/peerings", headers=AUTH).json() == []
    _clean(acl_cluster, since)


@pytest.mark.timeout(120)
def test_finding_5_a_peer_answering_lone_surrogates_is_a_502_that_stores_nothing(tmp_path: Path) -> None:
    """Finding 5, the peer's answer: a fake acceptor (the attacker's CA, which signed the token) answers the
    exchange with lone surrogates in every field. Establish is a 502, check an `IsValid: false`; the dialer
    stores nothing and its reads and lists still answer."""
    attacker = attacker_identity(tmp_path / "attacker")
    answer = b'{"StreamSecret": "\\ud800", "Datacenter": "\\udc00", "ServerName": "\\ud800x", "Version": "\\udfff",'
    answer += b' "ProtocolVersion": "\\ud800", "Status": "ACTIVE"}'
    with (
        HostilePeer(attacker, body=answer).running() as peer,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", *HEARTBEATS) as b,
    ):
        token = forge(attacker, fake_token_fields(attacker, peer.address))
        body = {"PeerName": "surrogates", "PeeringToken": token}
        established = request(_client(b), "POST", "/v1/peering/establish", body, timeout=30)
        checked = request(_client(b), "POST", "/v1/peering/check", body, timeout=30)
        assert established.status == 502, established.text
        assert checked.status == 200, checked.text
        assert checked.json()["IsValid"] is False, checked.text
        assert request(_client(b), "GET", "/v1/peerings").json() == []
        assert request(_client(b), "GET", "/v1/peering/surrogates").status == 404
        _clean(b)


@pytest.mark.timeout(120)
def test_finding_6_a_crafted_token_leaves_nothing_behind(tmp_path: Path) -> None:
    """Finding 6: A's token re-signed by the attacker with its CA at `CA[0]` and A's real CA at `CA[1]`
    (pointing at A): the TLS connection must chain to `CA[0]`, so establish is a 502 and check says invalid;
    with a lone surrogate in `Remote.Datacenter` as well, the dialer refuses before it dials (400). Either
    way A's peering is still INITIAL, B has stored nothing, and the genuine token still establishes."""
    attacker = attacker_identity(tmp_path / "attacker")
    with (
        running_cluster(tmp_path / "a", "--datacenter", "dc1", *HEARTBEATS) as a,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", *HEARTBEATS) as b,
    ):
        made = request(_client(a), "POST", "/v1/peering/token", {"PeerName": "cluster-b"})
        genuine = made.json()["PeeringToken"]
        fields = token_fields(genuine)
        resigned = {**fields, "CA": [attacker.ca_pem, *fields["CA"]]}
        surrogate = {**resigned, "Remote": {"Datacenter": "\ud800", "Partition": "default"}}
        answers = {}
        for what, crafted in (("re-signed", resigned), ("re-signed with a surrogate", surrogate)):
            body = {"PeerName": "cluster-a", "PeeringToken": forge(attacker, crafted)}
            answers[what] = request(_client(b), "POST", "/v1/peering/establish", body, timeout=30)
            checked = request(_client(b), "POST", "/v1/peering/check", body, timeout=30)
            assert (checked.status, checked.json()["IsValid"]) == (200, False), checked.text
            assert request(_client(a), "GET", "/v1/peering/cluster-b").json()["State"] == "INITIAL", what
            assert request(_client(b), "GET", "/v1/peerings").json() == [], what
        assert answers["re-signed"].status == 502, answers["re-signed"].text
        assert "certificate" in answers["re-signed"].text, answers["re-signed"].text
        assert answers["re-signed with a surrogate"].status == 400, answers["re-signed with a surrogate"].text
        body = {"PeerName": "cluster-a", "PeeringToken": genuine}
        established = request(_client(b), "POST", "/v1/peering/establish", body, timeout=30)
        assert (established.status, established.text) == (200, "{}")
        _clean(a)
        _clean(b)


FAKE_TIME = "1999-01-01T00:00:00.000Z"
_LINE_START = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \[(DEBUG|INFO|WARNING|ERROR|CRITICAL)\] \S+: ")


@pytest.mark.timeout(120)
def test_finding_7_no_client_or_peer_can_write_a_log_line(tmp_path: Path) -> None:
    """Finding 7: CR/LF (`%0d%0a`) and an ANSI escape in a path on the client port, and `\\n` or an escape
    in a PeerID on the peer port, each followed by a fake log line: in text logs every line is one record
    of the service (no line starts with the fake time, no raw escape reaches the terminal)."""
    forged = f"\r\n{FAKE_TIME} [ERROR] peering.api: forged"
    with running_text_cluster(tmp_path / "text", "--log-level", "debug") as cluster:
        for path in (f"/v1/peering/x{quote(forged)}", "/v1/peering/%1b%5b31mred%1b%5b0m", f"/{quote(forged)}"):
            assert request(cluster.ready["http_addr"], "GET", path).status < 500
        for peer_id in (f"x\n{FAKE_TIME} [ERROR] x: forged", "x\x1b[31mred\x1b[0m", "x\r\u2028\x85forged"):
            for operation, secret in (("heartbeat", "StreamSecret"), ("terminate", "StreamSecret")):
                body = {"PeerID": peer_id, secret: "wrong"}
                assert request(cluster.ready["peering_addr"], "POST", f"/peering/v1/{operation}", body, tls=True).status < 500  # fmt: skip
            exchange = {"PeerID": peer_id, "EstablishmentSecret": "x", "Dialer": {"ClusterID": "c", "CA": "x",
                        "Datacenter": "d", "Partition": "", "ServerName": "s", "Addresses": []}}  # fmt: skip
            assert request(cluster.ready["peering_addr"], "POST", "/peering/v1/exchange", exchange, tls=True).status < 500  # fmt: skip
        cluster.process.terminate()
        cluster.process.wait(15)
        lines = [line.rstrip("\n") for line in cluster.lines]
    assert lines, "no log at all"
    for line in lines:
        assert _LINE_START.match(line), f"a line that is not a record of the service: {line!r}"
        assert not line.startswith(FAKE_TIME), f"a forged line: {line!r}"
        assert not set(line) & {"\x1b", "\r"}, f"a raw control character in {line!r}"
    assert any("forged" in line for line in lines), "the forged paths were not logged at all (escaped)"


@pytest.mark.timeout(60)
def test_finding_9_no_redirect_to_a_client_chosen_host_or_with_a_token(acl_cluster: Cluster) -> None:
    """Finding 9: trailing-slash paths with a forged `Host` (or `X-Forwarded-Host`) and a `?token=` are not
    redirected to that host, nor with the token in a URL, on either port; `GET /v1/peering/?token=…` is
    SPEC §3.3's 400."""
    since = len(acl_cluster.lines)
    for target in ("/v1/peerings/?token=abc123secret", "/v1/acl/policies/?token=abc123secret", "/v1/status/leader/?token=abc123secret"):  # fmt: skip
        for headers in ({"Host": "evil.example"}, {"X-Forwarded-Host": "evil.example"}):
            head = f"GET {target} HTTP/1.1\r\nConnection: close\r\n" + "".join(
                f"{k}: {v}\r\n" for k, v in headers.items()
            )
            if "Host" not in headers:
                head += f"Host: {_client(acl_cluster)}\r\n"
            answer = raw(_client(acl_cluster), (head + "\r\n").encode())
            location = answer.headers.get("location", "")
            assert "evil.example" not in location, (target, answer.status, location)
            assert "abc123secret" not in location + answer.text, (target, answer.status, location)
            assert answer.status < 500, (target, answer.status)
    for operation in ("exchange/", "heartbeat/", "probe//"):  # the peer port, whose clients are other clusters
        head = (
            f"POST /peering/v1/{operation}?token=abc123secret HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n"
        )
        answer = raw(_peer(acl_cluster), (head + "Content-Length: 2\r\n\r\n{}").encode(), tls=True)
        location = answer.headers.get("location", "")
        assert "evil.example" not in location, (operation, answer.status, location)
        assert "abc123secret" not in location + answer.text, (operation, answer.status, location)
    named = request(_client(acl_cluster), "GET", "/v1/peering/?token=abc123secret", headers={"Host": "evil.example"})
    assert (named.status, named.text) == (400, "Must specify a name to fetch.")
    _clean(acl_cluster, since)


@pytest.mark.timeout(120)
def test_finding_10_the_peer_port_does_not_tell_which_ids_exist_and_rate_limits_its_log(tmp_path: Path) -> None:
    """Finding 10: heartbeat, terminate, exchange and probe with a known peering ID and a wrong secret are
    answered exactly as with an unknown ID (SPEC §6: 403); the peering stays ACTIVE on both sides; 400
    rejected calls write at most a tenth as many WARNING lines (and at least one)."""
    with peered(tmp_path) as pair:
        known = pair.read_a().json()["ID"]
        dialer = {"ClusterID": str(uuid.uuid4()), "PeeringID": "", "CA": attacker_identity(tmp_path / "x").ca_pem,
                  "Datacenter": "dc9", "Partition": "default", "ServerName": "server.dc9.consul", "Addresses": []}  # fmt: skip
        warnings_before = sum(e.get("level") == "warning" for e in log_entries(pair.a))
        rejections = 0
        for operation in ("heartbeat", "terminate", "exchange", "probe"):
            answers = set()
            for peer_id in (known, str(uuid.uuid4()), known, str(uuid.uuid4())):
                body: dict[str, Any] = {"PeerID": peer_id}
                body |= {"EstablishmentSecret": str(uuid.uuid4()), "Dialer": dialer} if operation in ("exchange", "probe") else {"StreamSecret": str(uuid.uuid4())}  # fmt: skip
                answer = request(_peer(pair.a), "POST", f"/peering/v1/{operation}", body, tls=True, source=ATTACKERS[0])
                answers.add((answer.status, answer.text))
                rejections += 1
            assert len(answers) == 1, f"{operation}: {answers}"
            assert next(iter(answers))[0] == 403, f"{operation}: {answers}"
        connection = keep_alive(_peer(pair.a), tls=True, source=ATTACKERS[1])  # 384 calls on one connection
        statuses: Counter[int] = Counter()
        try:
            for _ in range(384):
                payload = json.dumps({"PeerID": str(uuid.uuid4()), "StreamSecret": "x"})
                connection.request("POST", "/peering/v1/heartbeat", payload, {"Content-Type": "application/json"})
                response = connection.getresponse()
                response.read()
                statuses[response.status] += 1
                rejections += 1
        finally:
            connection.close()
        assert set(statuses) <= {403, 429}, statuses
        both_active(pair, within=1.0)
        warnings = sum(e.get("level") == "warning" for e in log_entries(pair.a)) - warnings_before
        assert 1 <= warnings <= rejections // 10, f"{warnings} WARNING lines for {rejections} rejected calls"
        _clean(pair.a)


@pytest.mark.timeout(60)
def test_finding_11_the_smaller_ones(acl_cluster: Cluster) -> None:
    """Finding 11: the first `?token=` wins (as in Consul); non-ASCII digits in `wait`/`index` and a Kelvin
    sign in a partition are 400s; Meta value lengths count UTF-8 bytes; `Expect: 100-continue` with a body
    over the limit is a 413 before any `100 Continue`; a policy of comments only is valid."""
    since = len(acl_cluster.lines)
    client = _client(acl_cluster)
    first = request(client, "GET", f"/v1/peerings?token={MANAGEMENT}&token=bogus")
    last = request(client, "GET", f"/v1/peerings?token=bogus&token={MANAGEMENT}")
    assert first.status == 200, first.text
    assert (last.status, last.text) == (403, "ACL not found")
    for query in ("index=1&wait=%D9%A3s", "index=%D9%A3", "partition=%E2%84%AA"):  # ٣ (Arabic-Indic 3), K (Kelvin)
        answer = request(client, "GET", f"/v1/peerings?{query}", headers=AUTH)
        assert answer.status == 400, (query, answer.status, answer.text)
    kelvin = request(client, "POST", "/v1/peering/token", {"PeerName": "k", "Partition": "\u212a"}, headers=AUTH)
    assert kelvin.status == 400, kelvin.text
    under = request(
        client, "POST", "/v1/peering/token", {"PeerName": "meta-ok", "Meta": {"k": "é" * 256}}, headers=AUTH
    )
    over = request(client, "POST", "/v1/peering/token", {"PeerName": "meta-no", "Meta": {"k": "é" * 257}}, headers=AUTH)
    assert under.status == 200, under.text
    assert over.status == 400, over.text
    assert over.text.startswith("meta tags failed validation"), over.text
    with connect(client) as sock:
        sock.sendall(f"POST /v1/peering/token HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     f"Content-Length: {2 * MIB}\r\nExpect: 100-continue\r\n\r\n".encode())  # fmt: skip
        sock.settimeout(5)
        refused = parse(read_until_closed(sock))
    assert refused.status == 413, refused.head
    for rules in ("# only a comment\n", "// only a comment", "/* only\n a comment */", "\n\n   \n"):
        policy = request(client, "PUT", "/v1/acl/policy", {"Name": f"c-{uuid.uuid4().hex[:8]}", "Rules": rules}, headers=AUTH)  # fmt: skip
        assert policy.status == 200, (rules, policy.text)
    _clean(acl_cluster, since)
