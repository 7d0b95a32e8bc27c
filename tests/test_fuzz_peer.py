"""Property tests on the TLS peer port of a real process (issue 11, finding 5; SPEC §6): hostile values
(`tests.hostile_values`) in every field of every peer message (exchange, probe, heartbeat, terminate) and
as whole bodies. Every answer is a documented status (never a 5xx), what an exchange stored still renders
on the client port, no hostile call terminates a live peering, and the server logs no ERROR.

Exchange and probe start from a fresh, valid establishment secret for each example (a new token for the
same peering), so that a value which passes validation goes all the way to the store; heartbeat and
terminate from the real stream secret of an exchanged peering, with one field hostile at a time.
"""

from __future__ import annotations

import http.client
import json
import ssl
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peering.identity import ClusterIdentity
from tests.attack import attacker_identity, insecure_tls, request, server_errors, token_fields
from tests.cluster import Cluster, running_cluster
from tests.hostile_values import REPRESENTATIVES, Long, Raw, address_text, encode, hostile_value, raw_json

pytestmark = pytest.mark.slow

EXAMPLES = settings(
    max_examples=80,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
MINIMUM = 40  # examples that must have reached the server
PEER = {400, 403, 413, 429}  # what a peer call may get besides a 200
SECRET_FIELDS = ["PeerID", "EstablishmentSecret", "Dialer", "Dialer.ClusterID", "Dialer.PeeringID", "Dialer.CA",
                 "Dialer.Datacenter", "Dialer.Partition", "Dialer.ServerName", "Dialer.Addresses", "Dialer.Addresses.0",
                 "Dialer.Version", "Dialer.ProtocolVersion", "Dialer.Extra", "Extra"]  # fmt: skip
STREAM_FIELDS = ["PeerID", "StreamSecret", "Extra"]


def ca_variants(pem: str) -> st.SearchStrategy[Any]:
    """A dialer's CA, wrong in the ways the review tried: a missing newline, two certificates, bytes changed."""
    body = pem.splitlines()
    return st.sampled_from(
        [
            Long(pem.rstrip("\n")),
            Long(pem.rstrip("\n") + pem),
            Long(pem + pem),
            Long(pem.replace(body[1], body[1][::-1])),
            Long(pem.replace(body[1], body[1][:10] + "\ud800" + body[1][11:])),
            Long("-----BEGIN CERTIFICATE-----\n" + "A" * 20_000 + "\n-----END CERTIFICATE-----\n"),
            Long("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"),
        ]
    )


class PeerPort:
    """Calls to the peer port over one keep-alive TLS connection (that believes any certificate), opened
    again whenever the server closed it."""

    def __init__(self, address: str) -> None:
        self.host, port = address.rsplit(":", 1)
        self.port = int(port)
        self._connection: http.client.HTTPSConnection | None = None

    def post(self, operation: str, body: bytes) -> tuple[int, str]:
        for attempt in range(2):
            if self._connection is None:
                self._connection = http.client.HTTPSConnection(self.host, self.port, timeout=15, context=insecure_tls())
            try:
                self._connection.request("POST", f"/peering/v1/{operation}", body, {"Content-Type": "application/json"})
                response = self._connection.getresponse()
                text = response.read().decode("utf-8", errors="replace")
            except (OSError, ssl.SSLError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
                continue
            if response.will_close:
                self.close()
            return response.status, text
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("peer-fuzz")) as running:
        yield running
        errors = server_errors(running)
        assert not errors, errors[:3]


@pytest.fixture(scope="module")
def attacker(tmp_path_factory: pytest.TempPathFactory) -> ClusterIdentity:
    return attacker_identity(tmp_path_factory.mktemp("attacker"))


@pytest.fixture
def port(cluster: Cluster) -> Iterator[PeerPort]:
    peer = PeerPort(cluster.ready["peering_addr"])
    yield peer
    peer.close()


def _set(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out: dict[str, Any] = {**body}
    head, _, rest = path.partition(".")
    if not rest:
        out[head] = value
    elif rest == "0":
        out[head] = [value]
    else:
        out[head] = _set(out.get(head) or {}, rest, value)
    return out


def _dialer(attacker: ClusterIdentity) -> dict[str, Any]:
    return {
        "ClusterID": str(uuid.uuid4()),
        "PeeringID": str(uuid.uuid4()),
        "CA": attacker.ca_pem,
        "Datacenter": "dc9",
        "Partition": "default",
        "ServerName": attacker.server_name,
        "Addresses": ["127.0.0.1:8503"],
        "Version": "1.0.0",
        "ProtocolVersion": "1",
    }


def _fresh_secret(cluster: Cluster, name: str) -> tuple[str, str]:
    """A new token for peering `name` (its secret supersedes the last one): its PeerID and secret."""
    made = request(cluster.ready["http_addr"], "POST", "/v1/peering/token", {"PeerName": name})
    assert made.status == 200, made.text
    fields = token_fields(made.json()["PeeringToken"])
    return fields["PeerID"], fields["EstablishmentSecret"]


def _renders(cluster: Cluster, name: str) -> None:
    """What the peer port stored still renders on the client port."""
    for path in (f"/v1/peering/{name}", "/v1/peerings"):
        answer = request(cluster.ready["http_addr"], "GET", path)
        assert answer.status == 200, f"GET {path}: {answer.status} {answer.text[:300]}"


@pytest.mark.timeout(600)
def test_hostile_values_in_every_exchange_and_probe_field(
    cluster: Cluster, attacker: ClusterIdentity, port: PeerPort
) -> None:
    """Each field of exchange and probe (the dialer's identity included; its CA also broken as the review
    broke it) gets a hostile value, starting from a valid secret each time."""
    since = len(cluster.lines)
    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(
        operation=st.sampled_from(["exchange", "probe"]),
        field=st.sampled_from(SECRET_FIELDS),
        value=st.one_of(hostile_value, address_text, ca_variants(attacker.ca_pem)),
    )
    def run(operation: str, field: str, value: Any) -> None:
        peer_id, secret = _fresh_secret(cluster, "fuzz-peer")
        body = {"PeerID": peer_id, "EstablishmentSecret": secret, "Dialer": _dialer(attacker)}
        status, text = port.post(operation, encode(_set(body, field, value)))
        assert status in PEER | {200}, f"{operation} {field}: {status} {text[:300]}"
        statuses[status] += 1
        if status == 200:
            _renders(cluster, "fuzz-peer")

    for field in SECRET_FIELDS:  # every class in every field, before the random examples
        for value in REPRESENTATIVES:
            run.hypothesis.inner_test(operation="exchange", field=field, value=value)  # type: ignore[attr-defined]
    run()
    assert sum(statuses.values()) >= MINIMUM, statuses
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]


@pytest.mark.timeout(600)
def test_hostile_values_in_every_heartbeat_and_terminate_field(
    cluster: Cluster, tmp_path_factory: pytest.TempPathFactory, port: PeerPort
) -> None:
    """With a live, exchanged peering: each field of heartbeat and terminate gets a hostile value while the
    other is the real one. None is a 5xx, and none terminates the peering."""
    since = len(cluster.lines)
    attacker = attacker_identity(tmp_path_factory.mktemp("dialer"))  # one peering per remote cluster
    peer_id, secret = _fresh_secret(cluster, "fuzz-stream")
    status, text = port.post(
        "exchange", encode({"PeerID": peer_id, "EstablishmentSecret": secret, "Dialer": _dialer(attacker)})
    )
    assert status == 200, text
    stream = json.loads(text)["StreamSecret"]
    statuses: Counter[int] = Counter()

    # an extra field beside the real PeerID and secret is a valid call: on terminate, it would end the test
    calls = [(op, f) for op in ("heartbeat", "terminate") for f in STREAM_FIELDS if (op, f) != ("terminate", "Extra")]

    @EXAMPLES
    @given(call=st.sampled_from(calls), value=hostile_value)
    def run(call: tuple[str, str], value: Any) -> None:
        operation, field = call
        body = _set({"PeerID": peer_id, "StreamSecret": stream}, field, value)
        status, text = port.post(operation, encode(body))
        allowed = PEER | ({200} if field == "Extra" else set())
        assert status in allowed, f"{operation} {field}: {status} {text[:300]}"
        statuses[status] += 1

    for call in calls:  # every class in every field, before the random examples
        for value in REPRESENTATIVES:
            run.hypothesis.inner_test(call=call, value=value)  # type: ignore[attr-defined]
    run()
    assert sum(statuses.values()) >= MINIMUM, statuses
    state = request(cluster.ready["http_addr"], "GET", "/v1/peering/fuzz-stream").json()["State"]
    assert state == "ACTIVE", f"a hostile call changed the peering: {state}"
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]


@pytest.mark.timeout(600)
def test_hostile_whole_bodies_on_every_peer_endpoint(cluster: Cluster, port: PeerPort) -> None:
    """Whole bodies that are not a message: raw JSON 100,000 deep, 5,000-digit numbers, invalid UTF-8, JSON
    that is not an object, hostile text, nothing at all; to each endpoint and to an unknown one."""
    since = len(cluster.lines)
    statuses: Counter[int] = Counter()

    @EXAMPLES
    @given(
        operation=st.sampled_from(["exchange", "probe", "heartbeat", "terminate", "replicate", "exchange/"]),
        body=st.one_of(raw_json, hostile_value, st.just(Raw(b"")), st.just(Raw(b"\xff\xfe\x00"))),
    )
    def run(operation: str, body: Any) -> None:
        status, text = port.post(operation, encode(body))
        assert status in PEER | {404, 405}, f"{operation}: {status} {text[:300]}"
        statuses[status] += 1

    run()
    assert sum(statuses.values()) >= MINIMUM, statuses
    assert not server_errors(cluster, since), server_errors(cluster, since)[:3]
