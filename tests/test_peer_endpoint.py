"""The peer protocol's endpoints over ASGI (SPEC §6): strict bodies, secrets refused without being echoed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from peering.app import Runtime, create_peer_app

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
