"""What this cluster sends to its peers (SPEC §6): exchange, heartbeat, terminate, probe."""

from __future__ import annotations

import logging
from typing import Any

from peering import __version__
from peering.cluster import PROTOCOL_VERSION, Cluster
from peering.domain import Event, Peering, PeeringState, Role
from peering.errors import InvalidTransitionError, PeerError, PeerProtocolError, SecretRejectedError
from peering.peer_client import PeerClient, PeerTarget
from peering.tokens import PeeringToken

log = logging.getLogger("peering.links")


def target_of(peering: Peering) -> PeerTarget:
    """Where the other side of a stored peering listens."""
    return PeerTarget(peering.peer_server_addresses, peering.peer_ca_pems, peering.peer_server_name)


def token_target(token: PeeringToken) -> PeerTarget:
    """Where the acceptor named in a token listens."""
    return PeerTarget(token.server_addresses, token.ca, token.server_name)


def _text(answer: Any, key: str) -> str:
    value = answer.get(key) if isinstance(answer, dict) else None
    if not isinstance(value, str):
        raise PeerProtocolError(f"the peer's answer has no valid {key}")
    return value


class Outbound:
    """Requests to peers, and what their answers mean for the local peering."""

    def __init__(self, cluster: Cluster, peers: PeerClient) -> None:
        self._cluster = cluster
        self._peers = peers

    def _identity(self, partition: str, peering_id: str) -> dict[str, Any]:
        me = self._cluster.identity
        return {
            "ClusterID": me.cluster_id,
            "PeeringID": peering_id,
            "CA": me.ca_pem,
            "Datacenter": me.datacenter,
            "Partition": partition,
            "ServerName": me.server_name,
            "Addresses": list(self._cluster.advertise_addresses),
            "Version": __version__,
            "ProtocolVersion": PROTOCOL_VERSION,
        }

    async def exchange(self, token: PeeringToken, partition: str, peering_id: str) -> dict[str, str]:
        """Trade the token's one-time secret for a stream secret; returns the acceptor's answer.

        Raises:
            SecretRejectedError: the secret was unknown, superseded or already used.
            PeerUnreachableError: no address answered within the establish timeout.
            InvalidRequestError: the acceptor refused (e.g. it already peers with this cluster).
            PeerProtocolError: the answer made no sense.
        """
        keys = ("StreamSecret", "Datacenter", "ServerName", "Version")
        answer = await self._present_secret("exchange", token, partition, peering_id, keys)
        return {key: _text(answer, key) for key in keys}

    async def probe(self, token: PeeringToken, partition: str) -> dict[str, str]:
        """Ask the acceptor whether the token's secret is still good, consuming nothing.

        Raises:
            SecretRejectedError, PeerUnreachableError, InvalidRequestError, PeerProtocolError: as `exchange`.
        """
        keys = ("Datacenter", "ServerName", "Version", "ProtocolVersion")
        answer = await self._present_secret("probe", token, partition, "", keys)
        return {key: _text(answer, key) for key in keys}

    async def _present_secret(
        self, operation: str, token: PeeringToken, partition: str, peering_id: str, keys: tuple[str, ...]
    ) -> Any:
        """Send the token's establishment secret and our identity to the acceptor (exchange or probe)."""
        body = {
            "PeerID": token.peer_id,
            "EstablishmentSecret": token.establishment_secret,
            "Dialer": self._identity(partition, peering_id),
        }
        try:
            return await self._peers.call(
                token_target(token), operation, body, within=self._cluster.timings.establish_timeout, expect=keys
            )
        except SecretRejectedError:
            raise SecretRejectedError(
                "a new peering token must be generated: invalid peering establishment secret"
            ) from None

    async def heartbeat(self, peering: Peering) -> bool:
        """Send one heartbeat for a dialer peering and record what it means. True if it went through."""
        cluster = self._cluster
        secret = (await cluster.store.secrets(peering.id)).stream_secret or ""
        try:
            answer = await self._peers.call(
                target_of(peering), "heartbeat", {"PeerID": peering.peer_id, "StreamSecret": secret}, expect=("Status",)
            )
            status = _text(answer, "Status")
            if status not in (PeeringState.ACTIVE, PeeringState.TERMINATED):
                raise PeerProtocolError(f"the peer answered heartbeat with an unknown Status {status[:64]!r}")
        except PeerError as exc:
            cluster.metrics.heartbeat_sent("failed")
            return await self._heartbeat_failed(peering, exc.message)
        except SecretRejectedError:
            cluster.metrics.heartbeat_sent("rejected")
            return await self._heartbeat_failed(peering, "the peer rejected the stream secret")
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
        """Tell the peer this side was deleted. True once the peer acknowledged it."""
        secrets = await self._cluster.store.secrets(peering.id)
        # the dialer proves itself with the stream secret; the acceptor, which keeps only its hash, with the hash
        proof = secrets.stream_secret if peering.role is Role.DIALER else secrets.stream_hash
        if not proof:
            return True  # nothing was ever exchanged: there is nobody to tell
        try:
            await self._peers.call(target_of(peering), "terminate", {"PeerID": peering.peer_id, "StreamSecret": proof})
        except (PeerError, SecretRejectedError) as exc:
            log.debug("could not tell the peer about the deletion: %s", exc.message, extra=log_fields(peering))
            return False
        return True


def log_fields(peering: Peering) -> dict[str, str]:
    """The structured log fields that name a peering (never a secret)."""
    return {"peer_name": peering.name, "partition": peering.partition, "peering_id": peering.id}
