"""The peer protocol's endpoints over ASGI (SPEC §6): strict bodies, secrets refused without being echoed,
unknown IDs answered like wrong secrets, rejections logged sparingly, any hostile field refused."""

from __future__ import annotations

import base64
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from peering.app import Runtime, create_peer_app
from peering.identity import load_or_create
from peering.inbound import RejectionLog

pytestmark = pytest.mark.anyio


@pytest.fixture
async def peer(runtime: Runtime) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=create_peer_app(runtime))
    async with httpx.AsyncClient(transport=transport, base_url="https://peer") as c:
        yield c


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, 'Body decoding failed: missing required field "PeerID"'),
        ({"PeerID": "x"}, 'Body decoding failed: missing required field "StreamSecret"'),
        ({"PeerID": 1, "StreamSecret": "s"}, 'cannot unmarshal number into field "PeerID" of type string'),
    ],
)
async def test_malformed_peer_messages_are_400(peer: httpx.AsyncClient, body: dict[str, object], message: str) -> None:
    """A peer message missing a field, or with one of the wrong type, says which."""
    response = await peer.post("/peering/v1/heartbeat", json=body)
    assert response.status_code == 400
    assert message in response.text


async def test_unknown_fields_are_ignored_for_newer_peers(peer: httpx.AsyncClient) -> None:
    """Extra fields are fine on the peer port (no `unknown field` 400): the message is read, and a heartbeat
    for a peering unknown here is refused like a wrong secret."""
    response = await peer.post("/peering/v1/heartbeat", json={"PeerID": "x", "StreamSecret": "s", "New": 1})
    assert (response.status_code, response.text) == (403, "invalid peering stream secret")


async def test_a_wrong_secret_is_refused_and_not_logged(
    peer: httpx.AsyncClient, client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A forged establishment secret gets 403 with the documented text; neither body nor log holds it."""
    caplog.set_level(logging.DEBUG)
    await client.post("/v1/peering/token", json={"PeerName": "cluster-02"})
    peering_id = (await client.get("/v1/peering/cluster-02")).json()["ID"]
    forged = "0f0f0f0f-dead-4bee-8f00-123456789abc"
    dialer = {
        "ClusterID": "c",
        "CA": "not a certificate",
        "Datacenter": "dc9",
        "Partition": "default",
        "ServerName": "server.dc9.consul",
        "Addresses": [],
    }
    response = await peer.post(
        "/peering/v1/probe", json={"PeerID": peering_id, "EstablishmentSecret": forged, "Dialer": dialer}
    )
    assert response.status_code in (400, 403)
    assert forged not in response.text
    assert forged not in caplog.text


@pytest.fixture
def other_ca(tmp_path: Path) -> str:
    """The CA of another cluster (a dialer's identity must carry a real certificate)."""
    return load_or_create(tmp_path / "other", "dc2").ca_pem


def dialer_identity(ca: str, **changes: object) -> dict[str, object]:
    """The `Dialer` of an exchange: who dials, with the CA `ca` (other tests reuse it)."""
    return {
        "ClusterID": str(uuid.uuid4()),
        "PeeringID": str(uuid.uuid4()),
        "CA": ca,
        "Datacenter": "dc2",
        "Partition": "default",
        "ServerName": "server.dc2.consul",
        "Addresses": ["127.0.0.1:8503"],
        **changes,
    }


async def _accepted(client: httpx.AsyncClient, peer: httpx.AsyncClient, ca: str) -> tuple[str, str]:
    """An acceptor peering that went through an exchange: its ID and the stream secret handed out."""
    token = (await client.post("/v1/peering/token", json={"PeerName": "cluster-02"})).json()["PeeringToken"]
    fields = json.loads(base64.b64decode(token))
    body = {
        "PeerID": fields["PeerID"],
        "EstablishmentSecret": fields["EstablishmentSecret"],
        "Dialer": dialer_identity(ca),
    }
    exchanged = await peer.post("/peering/v1/exchange", json=body)
    assert exchanged.status_code == 200, exchanged.text
    return str(fields["PeerID"]), str(exchanged.json()["StreamSecret"])


async def test_an_unknown_peering_id_gets_the_answer_of_a_wrong_secret(
    peer: httpx.AsyncClient, client: httpx.AsyncClient, other_ca: str
) -> None:
    """SPEC §6: on every call, a peering ID that does not exist here and one that does, with a wrong secret,
    get the same status and body (the peer port, open to anyone, does not tell which IDs exist); the link
    itself is not disturbed."""
    known, stream = await _accepted(client, peer, other_ca)
    unknown = str(uuid.uuid4())
    wrong = str(uuid.uuid4())
    for operation, secret_field in (
        ("heartbeat", "StreamSecret"),
        ("terminate", "StreamSecret"),
        ("exchange", "EstablishmentSecret"),
        ("probe", "EstablishmentSecret"),
    ):
        answers = []
        for peer_id in (known, unknown):
            body: dict[str, object] = {"PeerID": peer_id, secret_field: wrong}
            if secret_field == "EstablishmentSecret":
                body["Dialer"] = dialer_identity(other_ca)
            response = await peer.post(f"/peering/v1/{operation}", json=body)
            answers.append((response.status_code, response.text))
        assert answers[0] == answers[1], operation
        assert answers[0][0] == 403, operation
    beat = await peer.post("/peering/v1/heartbeat", json={"PeerID": known, "StreamSecret": stream})
    assert (beat.status_code, beat.json()) == (200, {"Status": "ACTIVE"})


async def test_rejections_are_logged_at_most_once_per_interval_without_secrets(
    peer: httpx.AsyncClient, client: httpx.AsyncClient, other_ca: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A spray of rejected heartbeats (known and unknown IDs) writes one WARNING line, not one per attempt,
    and no line holds a presented secret."""
    caplog.set_level(logging.DEBUG)
    known, _ = await _accepted(client, peer, other_ca)
    presented = [str(uuid.uuid4()) for _ in range(40)]
    for i, secret in enumerate(presented):
        peer_id = known if i % 2 else str(uuid.uuid4())
        response = await peer.post("/peering/v1/heartbeat", json={"PeerID": peer_id, "StreamSecret": secret})
        assert response.status_code == 403
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "rejected" in r.getMessage()]
    assert len(warnings) == 1
    assert not any(secret in caplog.text for secret in presented)


def test_the_rejection_log_counts_what_it_left_out(caplog: pytest.LogCaptureFixture) -> None:
    """After the interval, the next line says how many rejections of its kind were not logged; kinds are
    limited separately."""
    caplog.set_level(logging.WARNING)
    now = [0.0]
    rejections = RejectionLog(interval=10.0, monotonic=lambda: now[0])
    logged = [rejections.warning("rejected a heartbeat", {}) for _ in range(30)]
    assert logged == [True] + [False] * 29
    assert rejections.warning("rejected a termination", {}) is True
    now[0] = 10.0
    assert rejections.warning("rejected a heartbeat", {"peering_id": "p"}) is True
    records = [r for r in caplog.records if r.getMessage() == "rejected a heartbeat"]
    assert [r.__dict__["suppressed"] for r in records] == [0, 29]


HOSTILE = [
    "\ud800",  # a lone surrogate: no encoder downstream could write it
    "x\udfff",
    "9" * 5000,  # over Python's int digit limit
    "h:" + "9" * 5000,
    "[::1]:" + "9" * 5000,
    "h" * 300 + ":1",
    "h" * 70000,  # over the 64 KiB body cap with the rest
    "a\r\nforged: line",
    "\x1b[31mred",
    "",
]
HOSTILE_STRINGS = st.sampled_from(HOSTILE) | st.text(max_size=80)
HOSTILE_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10**40), max_value=10**40) | st.floats() | HOSTILE_STRINGS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PEER_FIELDS = {
    "exchange": ("PeerID", "EstablishmentSecret", "Dialer", *(f"Dialer.{k}" for k in dialer_identity(""))),
    "probe": ("PeerID", "EstablishmentSecret", "Dialer.CA", "Dialer.Addresses", "Dialer.Datacenter"),
    "heartbeat": ("PeerID", "StreamSecret"),
    "terminate": ("PeerID", "StreamSecret"),
}


# raw JSON no encoder here would write: nesting 3,000 deep, a 5,000-digit number
RAW = {"<deep>": "[" * 3000 + "]" * 3000, "<digits>": "9" * 5000}


def _message(operation: str, field: str, value: object, ca: str) -> bytes:
    """A well-formed message of `operation` but for `field` (`Dialer.X` for a field of the dialer)."""
    body: dict[str, object] = {"PeerID": str(uuid.uuid4()), "StreamSecret": "s", "EstablishmentSecret": "s"}
    dialer = dialer_identity(ca)
    if field.startswith("Dialer."):
        dialer[field.removeprefix("Dialer.")] = value
    body["Dialer"] = dialer
    if not field.startswith("Dialer."):
        body[field] = value
    return _json_text(body)


def _json_text(value: object) -> bytes:
    # json.dumps writes a lone surrogate as its \\u escape, as a hostile peer would send it
    text = json.dumps(value, allow_nan=True)
    for placeholder, raw in RAW.items():
        text = text.replace(f'"{placeholder}"', raw)
    return text.encode()


# (operation, field, value), drawn before the test's coroutine runs (a draw inside it would stop the runner)
CASES = st.sampled_from(sorted(PEER_FIELDS)).flatmap(
    lambda operation: st.tuples(
        st.just(operation), st.sampled_from(PEER_FIELDS[operation]), HOSTILE_VALUES | st.sampled_from(sorted(RAW))
    )
)


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(case=CASES)
async def test_hostile_values_in_any_peer_message_field_are_refused_never_a_500(
    peer: httpx.AsyncClient, other_ca: str, case: tuple[str, str, object]
) -> None:
    """Every field of every peer message (and nested ones, and the whole body), set to surrogates, 5,000-digit
    strings and numbers, oversized strings, control characters, deep nesting or any JSON value: a 4xx
    with a text body, never a 5xx (an exception in the app fails the test too)."""
    operation, field, value = case
    response = await peer.post(f"/peering/v1/{operation}", content=_message(operation, field, value, other_ca))
    assert 400 <= response.status_code < 500, (operation, field, response.text[:200])
    assert response.headers["content-type"].startswith("text/plain")


async def test_each_hostile_class_in_each_peer_message_field_is_refused(peer: httpx.AsyncClient, other_ca: str) -> None:
    """The same, exhaustively: each hostile string (alone, and as the one item of a list) and each raw value
    in each field of each message is a 4xx."""
    values: list[object] = [*HOSTILE, *([text] for text in HOSTILE), *RAW]
    statuses = set()
    for operation, fields in PEER_FIELDS.items():
        for field in fields:
            for value in values:
                response = await peer.post(
                    f"/peering/v1/{operation}", content=_message(operation, field, value, other_ca)
                )
                assert 400 <= response.status_code < 500, (operation, field, str(value)[:40], response.text[:200])
                statuses.add(response.status_code)
    assert statuses == {400, 403, 413}
