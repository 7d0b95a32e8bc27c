"""What this cluster answers to its peers (SPEC §6): exchange, heartbeat, terminate, probe.

Secrets are compared in constant time and never logged; a wrong one is a `SecretRejectedError` (403).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

from peering import __version__
from peering.cluster import PROTOCOL_VERSION, Cluster, hash_secret, same_secret
from peering.domain import Event, Peering, PeeringState, Remote, Role, transition
from peering.errors import InvalidRequestError, PeeringConflictError, SecretRejectedError
from peering.identity import fingerprint
from peering.outbound import log_fields
from peering.rules import check_server_address

log = logging.getLogger("peering.endpoint")

_BAD_ESTABLISHMENT = "invalid peering establishment secret"
_BAD_STREAM = "invalid peering stream secret"


@dataclass(frozen=True)
class Dialer:
    """Who is dialing, as it describes itself in an exchange or probe."""

    cluster_id: str
    peering_id: str
    ca: str
    datacenter: str
    partition: str
    server_name: str
    addresses: tuple[str, ...]


class PeerEndpoint:
    """Handles the peer protocol's requests against the local store."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def _answer(self) -> dict[str, str]:
        me = self._cluster.identity
        return {
            "Datacenter": me.datacenter,
            "ServerName": me.server_name,
            "Version": __version__,
            "ProtocolVersion": PROTOCOL_VERSION,
        }

    def _remote_cluster(self, dialer: Dialer) -> str:
        try:
            remote = fingerprint(dialer.ca)
        except ValueError:
            raise InvalidRequestError("the dialer's CA is not a PEM certificate") from None
        if remote == self._cluster.identity.ca_fingerprint:
            raise PeeringConflictError("cannot create a peering within the same cluster")
        for address in dialer.addresses:
            check_server_address(address)
        return remote

    async def _acceptor(self, peer_id: str) -> Peering:
        peering = await self._cluster.store.get_by_id(peer_id)
        if peering is None or peering.role is not Role.ACCEPTOR or peering.is_deleted:
            raise SecretRejectedError(_BAD_ESTABLISHMENT)
        return peering

    async def exchange(self, peer_id: str, secret: str, dialer: Dialer) -> dict[str, str]:
        """Consume the one-time secret and hand out a stream secret; record who the dialer is.

        Raises:
            SecretRejectedError: unknown, superseded or used secret.
            PeeringConflictError: the dialer is this cluster, or already peers with this partition.
        """
        remote = self._remote_cluster(dialer)
        stream = self._cluster.new_secret()
        try:
            async with self._cluster.write() as tx:
                peering = await self._acceptor(peer_id)
                if not await tx.consume_establishment_secret(peering.id, hash_secret(secret)):
                    raise SecretRejectedError(_BAD_ESTABLISHMENT)
                # the exchange is the dialer's first sign of life: the link is up from here (one write
                # fewer on the way to ACTIVE on both sides; the first heartbeat follows at once)
                saved = await tx.save(
                    replace(
                        peering,
                        state=transition(Role.ACCEPTOR, peering.state, Event.HEARTBEAT_OK),
                        peer_id=dialer.peering_id,
                        peer_ca_pems=(dialer.ca,),
                        peer_server_name=dialer.server_name,
                        peer_server_addresses=dialer.addresses,
                        remote=Remote(dialer.datacenter, dialer.partition),
                        remote_cluster=remote,
                    )
                )
                await tx.set_stream_hash(peering.id, hash_secret(stream))  # the consume cleared the other
        except SecretRejectedError:
            log.warning("rejected a peering establishment secret", extra={"peering_id": peer_id[:64]})
            raise
        self._cluster.tracker.heartbeat(saved.id, self._cluster.now())
        log.info("peering established", extra={**log_fields(saved), "remote_datacenter": dialer.datacenter})
        return {"StreamSecret": stream, **self._answer()}

    async def probe(self, peer_id: str, secret: str, dialer: Dialer) -> dict[str, str]:
        """Say whether an exchange with this secret would succeed, changing nothing.

        Raises:
            SecretRejectedError, PeeringConflictError: as `exchange` would.
        """
        remote = self._remote_cluster(dialer)
        peering = await self._acceptor(peer_id)
        secrets = await self._cluster.store.secrets(peering.id)
        if not same_secret(hash_secret(secret), secrets.establishment_hash):
            raise SecretRejectedError(_BAD_ESTABLISHMENT)
        listed, _ = await self._cluster.store.list_peerings(peering.partition)
        for other in listed:
            if other.id != peering.id and other.remote_cluster == remote and _live(other):
                raise PeeringConflictError(f'a peering with this cluster already exists: "{other.name}"')
        return self._answer()

    async def heartbeat(self, peer_id: str, secret: str) -> str:
        """Record a heartbeat from the dialer; answer this side's state (`ACTIVE` or `TERMINATED`).

        Raises:
            SecretRejectedError: the stream secret does not match.
        """
        cluster = self._cluster
        peering = await cluster.store.get_by_id(peer_id)
        if peering is None:
            return PeeringState.TERMINATED.value  # removed here: the link is over
        secrets = await cluster.store.secrets(peering.id)
        if peering.role is not Role.ACCEPTOR or not same_secret(hash_secret(secret), secrets.stream_hash):
            log.warning("rejected a heartbeat with a wrong stream secret", extra=log_fields(peering))
            cluster.metrics.heartbeat_received("rejected")
            raise SecretRejectedError(_BAD_STREAM)
        if peering.is_deleted or peering.state is PeeringState.TERMINATED:
            return PeeringState.TERMINATED.value
        cluster.metrics.heartbeat_received("ok")
        cluster.tracker.heartbeat(peering.id, cluster.now())
        if peering.state is not PeeringState.ACTIVE:
            saved = await cluster.apply(peering.id, Event.HEARTBEAT_OK)
            if saved is not None:
                log.info("peering recovered", extra=log_fields(saved))
        return PeeringState.ACTIVE.value

    async def terminate(self, peer_id: str, proof: str) -> None:
        """The peer deleted its side: turn ours `TERMINATED` (kept until deleted here).

        Raises:
            SecretRejectedError: the proof does not match the link's stream secret.
        """
        cluster = self._cluster
        peering = await cluster.store.get_by_id(peer_id)
        if peering is None:
            return  # already gone here
        secrets = await cluster.store.secrets(peering.id)
        if peering.role is Role.ACCEPTOR:
            valid = same_secret(hash_secret(proof), secrets.stream_hash)
        else:
            valid = secrets.stream_secret is not None and same_secret(proof, hash_secret(secrets.stream_secret))
        if not valid:
            log.warning("rejected a termination with a wrong stream secret", extra=log_fields(peering))
            raise SecretRejectedError(_BAD_STREAM)
        saved = await cluster.apply(peering.id, Event.PEER_TERMINATED)
        if saved is not None:
            log.info("peering terminated by peer", extra=log_fields(saved))


def _live(peering: Peering) -> bool:
    return not peering.is_deleted and peering.state is not PeeringState.TERMINATED
