"""What this cluster answers to its peers (SPEC §6): exchange, heartbeat, terminate, probe.

Secrets are compared in constant time and never logged; a wrong one is a `SecretRejectedError` (403).
An unknown peering ID gets exactly the answer of a wrong secret (the peer port, open to anyone, must
not tell which IDs exist), and rejections are logged at most once per `REJECTION_LOG_INTERVAL` per kind,
with the number of those left out.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from peering import __version__
from peering.cluster import PROTOCOL_VERSION, Cluster, hash_secret, same_secret
from peering.domain import Event, Peering, PeeringState, Remote, Role, transition
from peering.errors import InvalidRequestError, PeeringConflictError, SecretRejectedError
from peering.identity import fingerprint
from peering.outbound import log_fields
from peering.rules import check_server_address, normalize_partition, valid_hostname
from peering.store.base import Transaction

log = logging.getLogger("peering.endpoint")

REJECTION_LOG_INTERVAL = 10.0  # seconds between two log lines about rejected secrets of one kind
_BAD_ESTABLISHMENT = "invalid peering establishment secret"
_BAD_STREAM = "invalid peering stream secret"
_DATACENTER = re.compile(r"[A-Za-z0-9_-]{1,64}")  # as `--datacenter`
_ID = re.compile(r"[A-Za-z0-9._-]{0,64}")  # a cluster or peering ID (UUIDs here; empty in a probe)


class RejectionLog:
    """WARNING lines about rejected attempts, at most one per `interval` s for each message: an attacker
    spraying the peer port cannot fill the log. Each line says how many were left out before it."""

    def __init__(self, interval: float = REJECTION_LOG_INTERVAL, monotonic: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._monotonic = monotonic
        self._last: dict[str, float] = {}  # keyed by the (constant) message: bounded
        self._suppressed: dict[str, int] = {}

    def warning(self, message: str, fields: dict[str, str]) -> bool:
        """Log `message` unless one like it was logged within the interval; True if logged."""
        now = self._monotonic()
        last = self._last.get(message)
        if last is not None and now - last < self._interval:
            self._suppressed[message] = self._suppressed.get(message, 0) + 1
            return False
        self._last[message] = now
        suppressed = self._suppressed.pop(message, 0)
        log.warning(message, extra={**fields, "suppressed": suppressed})
        return True


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

    def __init__(self, cluster: Cluster, rejections: RejectionLog | None = None) -> None:
        self._cluster = cluster
        self._rejections = rejections or RejectionLog()

    def _answer(self) -> dict[str, str]:
        me = self._cluster.identity
        return {
            "Datacenter": me.datacenter,
            "ServerName": me.server_name,
            "Version": __version__,
            "ProtocolVersion": PROTOCOL_VERSION,
        }

    def _remote_cluster(self, dialer: Dialer) -> str:
        """The dialer's cluster fingerprint, once every field it sent is well-formed (before anything is
        stored or consumed)."""
        try:
            remote = fingerprint(dialer.ca)
        except ValueError:
            raise InvalidRequestError("the dialer's CA is not a PEM certificate") from None
        if remote == self._cluster.identity.ca_fingerprint:
            raise PeeringConflictError("cannot create a peering within the same cluster")
        fields = (
            ("ClusterID", _ID.fullmatch(dialer.cluster_id) is not None and dialer.cluster_id != ""),
            ("PeeringID", _ID.fullmatch(dialer.peering_id) is not None),
            ("Datacenter", _DATACENTER.fullmatch(dialer.datacenter) is not None),
            ("ServerName", valid_hostname(dialer.server_name)),
        )
        for name, valid in fields:
            if not valid:
                raise InvalidRequestError(f"the dialer's {name} is not valid")
        try:
            partition = normalize_partition(dialer.partition)
        except InvalidRequestError:
            partition = ""
        if dialer.partition and partition != dialer.partition:
            raise InvalidRequestError("the dialer's Partition is not valid")
        for address in dialer.addresses:
            check_server_address(address)
        return remote

    def _rejected(self, message: str, peering: Peering | None) -> None:
        # the ID an outsider sent is not logged (it may be anything); a known one is ours
        self._rejections.warning(message, log_fields(peering) if peering is not None else {})

    async def _acceptor(self, peer_id: str, tx: Transaction | None = None) -> Peering:
        """The live acceptor with this ID (read in `tx` when given: a unit that writes it must read it itself)."""
        peering = await (tx or self._cluster.store).get_by_id(peer_id)
        if peering is None or peering.role is not Role.ACCEPTOR or peering.is_deleted:
            self._rejected("rejected a peering establishment secret", None)
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
        async with self._cluster.write() as tx:
            peering = await self._acceptor(peer_id, tx)  # in the unit: a delete elsewhere is not written over
            if not await tx.consume_establishment_secret(peering.id, hash_secret(secret)):
                self._rejected("rejected a peering establishment secret", peering)
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
            self._rejected("rejected a peering establishment secret", peering)
            raise SecretRejectedError(_BAD_ESTABLISHMENT)
        listed, _ = await self._cluster.store.list_peerings(peering.partition)
        for other in listed:
            if other.id != peering.id and other.remote_cluster == remote and _live(other):
                raise PeeringConflictError(f'a peering with this cluster already exists: "{other.name}"')
        return self._answer()

    async def heartbeat(self, peer_id: str, secret: str) -> str:
        """Record a heartbeat from the dialer; answer this side's state (`ACTIVE` or `TERMINATED`).

        Raises:
            SecretRejectedError: no acceptor link with this ID holds this stream secret (unknown ID and
                wrong secret alike).
        """
        cluster = self._cluster
        peering = await cluster.store.get_by_id(peer_id)
        # the secrets are read whether or not the ID is known: both refusals take the same steps
        secrets = await cluster.store.secrets(peer_id)
        valid = same_secret(hash_secret(secret), secrets.stream_hash)
        if peering is None or peering.role is not Role.ACCEPTOR or not valid:
            self._rejected("rejected a heartbeat with a wrong stream secret", peering)
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
        """The peer deleted its side (or undid an exchange it cannot keep): turn ours `TERMINATED` (kept
        until deleted here).

        Raises:
            SecretRejectedError: no link with this ID holds this proof (unknown ID and wrong proof alike).
        """
        cluster = self._cluster
        peering = await cluster.store.get_by_id(peer_id)
        secrets = await cluster.store.secrets(peer_id)
        if peering is not None and peering.role is Role.ACCEPTOR:
            valid = same_secret(hash_secret(proof), secrets.stream_hash)
        else:
            valid = secrets.stream_secret is not None and same_secret(proof, hash_secret(secrets.stream_secret))
        if peering is None or not valid:
            self._rejected("rejected a termination with a wrong stream secret", peering)
            raise SecretRejectedError(_BAD_STREAM)
        saved = await cluster.apply(peering.id, Event.PEER_TERMINATED)
        if saved is not None:
            log.info("peering terminated by peer", extra=log_fields(saved))


def _live(peering: Peering) -> bool:
    return not peering.is_deleted and peering.state is not PeeringState.TERMINATED
