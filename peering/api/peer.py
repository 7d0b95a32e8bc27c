"""The peer protocol's endpoints (SPEC §6), served only on the TLS peering listener.

Versioned under `/peering/v1/`; authenticated by peering secrets alone (never by ACL tokens);
excluded from the client API's OpenAPI document. Documented in the README.

Bodies are capped at `MAX_PEER_BODY_BYTES` while they stream (well under the client port's 1 MiB:
the largest message, an exchange, carries one CA and a few addresses), and every string is bounded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from peering.api.body import json_body
from peering.api.render import json_response
from peering.inbound import Dialer, PeerEndpoint
from peering.rules import MAX_ADDRESS_LENGTH

MAX_PEER_BODY_BYTES = 64 * 1024

router = APIRouter(prefix="/peering/v1")

M = TypeVar("M", bound=BaseModel)


class PeerModel(BaseModel):
    """Peer messages: strict types, unknown fields ignored so that newer peers can add some."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True)


class DialerIdentity(PeerModel):
    cluster_id: str = Field(alias="ClusterID", max_length=64)
    peering_id: str = Field(default="", alias="PeeringID", max_length=64)
    ca: str = Field(alias="CA", max_length=16384)
    datacenter: str = Field(alias="Datacenter", max_length=64)
    partition: str = Field(alias="Partition", max_length=64)
    server_name: str = Field(alias="ServerName", max_length=256)
    addresses: list[Annotated[str, Field(max_length=MAX_ADDRESS_LENGTH)]] = Field(alias="Addresses", max_length=16)


class SecretRequest(PeerModel):
    peer_id: str = Field(alias="PeerID", max_length=64)
    establishment_secret: str = Field(alias="EstablishmentSecret", max_length=128)
    dialer: DialerIdentity = Field(alias="Dialer")


class StreamRequest(PeerModel):
    peer_id: str = Field(alias="PeerID", max_length=64)
    stream_secret: str = Field(alias="StreamSecret", max_length=128)


def peer_body(model: type[M]) -> Callable[[Request], Awaitable[M]]:
    """A dependency that yields the peer message decoded as `model`, from a body capped while it streams."""
    return json_body(model, limit=MAX_PEER_BODY_BYTES)


async def _endpoint(request: Request) -> PeerEndpoint:
    return cast(PeerEndpoint, request.app.state.endpoint)


EndpointDep = Annotated[PeerEndpoint, Depends(_endpoint)]


def _dialer(identity: DialerIdentity) -> Dialer:
    return Dialer(
        cluster_id=identity.cluster_id,
        peering_id=identity.peering_id,
        ca=identity.ca,
        datacenter=identity.datacenter,
        partition=identity.partition,
        server_name=identity.server_name,
        addresses=tuple(identity.addresses),
    )


@router.post("/exchange")
async def exchange(
    body: Annotated[SecretRequest, Depends(peer_body(SecretRequest))], endpoint: EndpointDep
) -> Response:
    """Trade a one-time establishment secret for a stream secret."""
    answer = await endpoint.exchange(body.peer_id, body.establishment_secret, _dialer(body.dialer))
    return json_response(answer, pretty=False)


@router.post("/probe")
async def probe(body: Annotated[SecretRequest, Depends(peer_body(SecretRequest))], endpoint: EndpointDep) -> Response:
    """Say whether an exchange would succeed, consuming nothing."""
    answer = await endpoint.probe(body.peer_id, body.establishment_secret, _dialer(body.dialer))
    return json_response(answer, pretty=False)


@router.post("/heartbeat")
async def heartbeat(
    body: Annotated[StreamRequest, Depends(peer_body(StreamRequest))], endpoint: EndpointDep
) -> Response:
    """A dialer's heartbeat; answers this side's state."""
    status = await endpoint.heartbeat(body.peer_id, body.stream_secret)
    return json_response({"Status": status}, pretty=False)


@router.post("/terminate")
async def terminate(
    body: Annotated[StreamRequest, Depends(peer_body(StreamRequest))], endpoint: EndpointDep
) -> Response:
    """The other side deleted the peering."""
    await endpoint.terminate(body.peer_id, body.stream_secret)
    return json_response({}, pretty=False)
