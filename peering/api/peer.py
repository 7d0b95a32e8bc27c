"""The peer protocol's endpoints (SPEC §6), served only on the TLS peering listener.

Versioned under `/peering/v1/`; authenticated by peering secrets alone (never by ACL tokens);
excluded from the client API's OpenAPI document. Documented in the README.

Every message is a model of `peer/wire.py` (the dialer builds and decodes the same ones). Bodies are
capped while they stream: `MAX_PEER_BODY_BYTES` for the handshake (well under the client port's 1 MiB:
the largest message, an exchange, carries one CA and a few addresses), and every string is bounded;
`MAX_REPLICATION_BODY_BYTES` only for a replication push (one page of exports, or one service bigger
than a page). A replication message refused (too large, malformed, over a count) is a 4xx and one
WARNING line (rate-limited, never the body: it holds the stream secret).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, TypeVar, cast

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from peering.api.body import decode_body, json_body, read_body
from peering.api.render import json_response
from peering.errors import InvalidRequestError
from peering.inbound import Dialer, PeerEndpoint
from peering.peer.stream import Replication
from peering.peer.wire import (
    MAX_PEER_BODY_BYTES,
    MAX_REPLICATION_BODY_BYTES,
    DialerIdentity,
    PeerModel,
    PullRequest,
    PushRequest,
    SecretRequest,
    StreamRequest,
)

__all__ = ["MAX_PEER_BODY_BYTES", "router"]

router = APIRouter(prefix="/peering/v1")

M = TypeVar("M", bound=BaseModel)


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


async def _replication(request: Request) -> Replication:
    return cast(Replication, request.app.state.replication)


ReplicationDep = Annotated[Replication, Depends(_replication)]
R = TypeVar("R", bound=PeerModel)


def replication_body(model: type[R], limit: int) -> Callable[[Request], Awaitable[R]]:
    """A dependency that yields a replication message decoded as `model` (at most `limit` bytes); a refusal is
    logged before its 4xx goes out."""

    async def dependency(request: Request) -> R:
        try:
            return decode_body(await read_body(request, limit), model)
        except InvalidRequestError as exc:  # a body over the cap too
            (await _replication(request)).refused(exc.message)
            raise

    return dependency


def _json(message: PeerModel) -> Response:
    return Response(content=message.model_dump_json(by_alias=True), media_type="application/json")


@router.post("/exports/pull")
async def pull(
    body: Annotated[PullRequest, Depends(replication_body(PullRequest, MAX_PEER_BODY_BYTES))],
    replication: ReplicationDep,
) -> Response:
    """The dialer's long-poll for this side's exports (answered once they moved past its import state)."""
    return _json(await replication.pull(body))


@router.post("/exports/push")
async def push(
    body: Annotated[PushRequest, Depends(replication_body(PushRequest, MAX_REPLICATION_BODY_BYTES))],
    replication: ReplicationDep,
) -> Response:
    """A page of the dialer's own exports, applied here; answers how far this side got."""
    return _json(await replication.push(body))
