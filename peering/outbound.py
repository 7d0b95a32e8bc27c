"""What this cluster sends to its peers (SPEC §6): exchange, heartbeat, terminate, probe.

Requests are built and answers decoded with the models of `peer/wire.py` (the acceptor decodes the same
ones): each field an answer must carry is checked for its shape (sizes and characters), so a peer's text
can be stored, logged and shown to clients as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Coroutine
from typing import Any

from peering import __version__
from peering.cluster import PROTOCOL_VERSION, Cluster
from peering.domain import Event, Peering, PeeringState, Role
from peering.errors import InvalidRequestError, InvalidTransitionError, PeerError, SecretRejectedError
from peering.peer.wire import (
    ANSWER_CHECKS,
    DialerIdentity,
    ExchangeAnswer,
    HeartbeatAnswer,
    PeerModel,
    ProbeAnswer,
    SecretRequest,
    StreamRequest,
    answer_checks,
)
from peering.peer_client import InvalidAnswerError, PeerClient, PeerTarget
from peering.tokens import PeeringToken

log = logging.getLogger("peering.links")


def target_of(peering: Peering) -> PeerTarget:
    """Where the other side of a stored peering listens; TLS trusts only its first CA, which signed the token
    (on the dialer) or is the dialer's own (on the acceptor)."""
    return PeerTarget(peering.peer_server_addresses, peering.peer_ca_pems[:1], peering.peer_server_name)


def token_target(token: PeeringToken) -> PeerTarget:
    """Where the acceptor named in a token listens: TLS must chain to `CA[0]`, the CA that signed the token
    (another CA in the list does not make a server trusted, SPEC §4)."""
    return PeerTarget(token.server_addresses, token.ca[:1], token.server_name)


class Outbound:
    """Requests to peers, and what their answers mean for the local peering."""

    def __init__(self, cluster: Cluster, peers: PeerClient) -> None:
        self._cluster = cluster
        self._peers = peers

    def _identity(self, partition: str, peering_id: str) -> DialerIdentity:
        me = self._cluster.identity
        return DialerIdentity(
            ClusterID=me.cluster_id,
            PeeringID=peering_id,
            CA=me.ca_pem,
            Datacenter=me.datacenter,
            Partition=partition,
            ServerName=me.server_name,
            Addresses=list(self._cluster.advertise_addresses),
            Version=__version__,
            ProtocolVersion=PROTOCOL_VERSION,
        )

    async def exchange(self, token: PeeringToken, partition: str, peering_id: str) -> dict[str, str]:
        """Trade the token's one-time secret for a stream secret; returns the acceptor's answer.

        If the acceptor answered with a valid stream secret but something else in the answer is wrong,
        the exchange it completed is undone there (`abandon`) before the error is raised.

        Raises:
            SecretRejectedError: the secret was unknown, superseded or already used.
            PeerUnreachableError: no address answered within the establish timeout.
            InvalidRequestError: the acceptor refused (e.g. it already peers with this cluster).
            PeerProtocolError: the answer made no sense.
        """
        try:
            answer = await self._present_secret("exchange", token, partition, peering_id, ExchangeAnswer)
        except InvalidAnswerError as exc:
            secret = exc.answer.get("StreamSecret")
            if isinstance(secret, str) and ANSWER_CHECKS["StreamSecret"](secret):
                await self.abandon(token, secret)
            raise
        return _strings(answer)

    async def abandon(self, token: PeeringToken, stream_secret: str) -> None:
        """Undo an exchange the acceptor completed but this side cannot keep (SPEC §3.2: nothing left
        behind): the stream secret just received proves the termination, and the acceptor's side turns
        `TERMINATED`, as if this side had been deleted. Best effort within the establish timeout: a
        failure is logged (never the secret) and the acceptor's link then turns `FAILING` for lack of
        heartbeats."""
        body = _body(StreamRequest(PeerID=token.peer_id, StreamSecret=stream_secret))
        try:
            await self._peers.call(
                token_target(token), "terminate", body, within=self._cluster.timings.establish_timeout
            )
        except (PeerError, SecretRejectedError, InvalidRequestError) as exc:
            log.warning("could not undo an exchange on the acceptor: %s", exc.message, extra={"peer_id": token.peer_id})
            return
        log.info("undid an exchange on the acceptor", extra={"peer_id": token.peer_id})

    async def probe(self, token: PeeringToken, partition: str) -> dict[str, str]:
        """Ask the acceptor whether the token's secret is still good, consuming nothing.

        Raises:
            SecretRejectedError, PeerUnreachableError, InvalidRequestError, PeerProtocolError: as `exchange`.
        """
        return _strings(await self._present_secret("probe", token, partition, "", ProbeAnswer))

    async def _present_secret(
        self, operation: str, token: PeeringToken, partition: str, peering_id: str, answer: type[PeerModel]
    ) -> PeerModel:
        """Send the token's establishment secret and our identity to the acceptor (exchange or probe)."""
        body = SecretRequest(
            PeerID=token.peer_id,
            EstablishmentSecret=token.establishment_secret,
            Dialer=self._identity(partition, peering_id),
        )
        try:
            raw = await self._peers.call(
                token_target(token),
                operation,
                _body(body),
                within=self._cluster.timings.establish_timeout,
                expect=answer_checks(answer),
            )
            return answer.model_validate(raw)
        except SecretRejectedError:
            raise SecretRejectedError(
                "a new peering token must be generated: invalid peering establishment secret"
            ) from None

    async def heartbeat(self, peering: Peering) -> bool:
        """Send one heartbeat for a dialer peering and record what it means. True if it went through.

        The acceptor answers an unknown peering and a wrong secret alike (403, SPEC §6), and only the
        real acceptor can answer at all (TLS is pinned to its CA): a rejection that lasts the whole
        heartbeat timeout means the acceptor no longer holds this link (it removed the peering without
        reaching us, or another dialer replaced us), and this side turns `TERMINATED`. A shorter run of
        rejections (a replica that has not seen the exchange yet) counts as a failed heartbeat.
        """
        secret = (await self._cluster.store.secrets(peering.id)).stream_secret or ""
        return await self.heartbeat_answered(peering, self.send_heartbeat(target_of(peering), peering.peer_id, secret))

    def send_heartbeat(self, target: PeerTarget, peer_id: str, stream_secret: str) -> Coroutine[Any, Any, Any]:
        """The heartbeat call alone; `heartbeat_answered` records what its answer means (establish sends the
        first one while it saves the link)."""
        body = _body(StreamRequest(PeerID=peer_id, StreamSecret=stream_secret))
        return self._peers.call(target, "heartbeat", body, expect=answer_checks(HeartbeatAnswer))

    async def heartbeat_answered(self, peering: Peering, call: Awaitable[Any]) -> bool:
        """Await the heartbeat `call` of `peering` and record what its answer means (see `heartbeat`)."""
        cluster = self._cluster
        try:
            raw = await call
        except (PeerError, InvalidRequestError) as exc:  # a 400: the peer does not take our message
            cluster.metrics.heartbeat_sent("failed")
            return await self._heartbeat_failed(peering, exc.message)
        except SecretRejectedError:
            cluster.metrics.heartbeat_sent("rejected")
            if cluster.tracker.rejected_for(peering.id) >= cluster.timings.heartbeat_timeout:
                log.warning("the peer no longer knows the link", extra=log_fields(peering))
                await self.peer_terminated(peering.id)
                return False
            return await self._heartbeat_failed(peering, "the peer rejected the stream secret")
        status = HeartbeatAnswer.model_validate(raw).status
        cluster.metrics.heartbeat_sent("ok")
        cluster.tracker.heartbeat(peering.id, cluster.now())
        if status == PeeringState.TERMINATED:
            await self.peer_terminated(peering.id)
            return False
        if peering.state is not PeeringState.ACTIVE and await cluster.apply(peering.id, Event.HEARTBEAT_OK):
            log.info("peering recovered", extra=log_fields(peering))
        return True

    async def _heartbeat_failed(self, peering: Peering, reason: str) -> bool:
        cluster = self._cluster
        now = cluster.now()
        cluster.tracker.sent(peering.id, now)
        log.debug("heartbeat failed: %s", reason, extra=log_fields(peering))
        silent = cluster.tracker.silent_for(peering.id)
        if (
            peering.state is PeeringState.ACTIVE
            and silent >= cluster.timings.heartbeat_timeout
            and await cluster.apply(peering.id, Event.HEARTBEAT_TIMEOUT)
        ):
            log.warning("peering failing: %s", reason, extra=log_fields(peering))
        return False

    async def peer_terminated(self, peering_id: str) -> None:
        """The other side deleted the peering: turn ours TERMINATED (it stays until deleted here)."""
        try:
            saved = await self._cluster.apply(peering_id, Event.PEER_TERMINATED)
        except InvalidTransitionError:  # pragma: no cover -- PEER_TERMINATED is allowed from every state
            return
        if saved is not None:
            log.info("peering terminated by peer", extra=log_fields(saved))

    async def terminate(self, peering: Peering) -> bool:
        """Tell the peer this side was deleted. True once the peer acknowledged it, or said it holds no
        such link (a 403 from the pinned peer: unknown and wrong secret look alike, and either way there
        is nothing left there to tell)."""
        secrets = await self._cluster.store.secrets(peering.id)
        # the dialer proves itself with the stream secret; the acceptor, which keeps only its hash, with the hash
        proof = secrets.stream_secret if peering.role is Role.DIALER else secrets.stream_hash
        if not proof:
            return True  # nothing was ever exchanged: there is nobody to tell
        try:
            body = _body(StreamRequest(PeerID=peering.peer_id, StreamSecret=proof))
            await self._peers.call(target_of(peering), "terminate", body)
        except SecretRejectedError:
            log.debug("the peer holds no such link any more", extra=log_fields(peering))
            return True
        except (PeerError, InvalidRequestError) as exc:
            log.debug("could not tell the peer about the deletion: %s", exc.message, extra=log_fields(peering))
            return False
        return True


def _body(message: PeerModel) -> dict[str, Any]:
    """A request as the JSON object the peer decodes with the same model."""
    return message.model_dump(by_alias=True)


def _strings(answer: PeerModel) -> dict[str, str]:
    """A handshake answer as the key → text map the establish flow reads (`StreamSecret`, `Datacenter`, …)."""
    return {key: str(value) for key, value in answer.model_dump(by_alias=True).items()}


def log_fields(peering: Peering) -> dict[str, str]:
    """The structured log fields that name a peering (never a secret)."""
    return {"peer_name": peering.name, "partition": peering.partition, "peering_id": peering.id}
