"""The peering service: every operation a client can ask for, orchestrated over the store.

It never imports the web framework; routes call one method each and get domain objects back.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from peering import tokens
from peering.domain import Event, Peering, PeeringState, Remote, Role, transition
from peering.errors import PeeringConflictError, PeeringNotFoundError
from peering.identity import ClusterIdentity
from peering.notifier import Notifier
from peering.rules import check_meta, check_peer_name, check_server_address, normalize_partition
from peering.store.base import Store, Transaction

log = logging.getLogger("peering.service")

MAX_WAIT = 600.0  # seconds: the longest blocking query (SPEC §3)

T = TypeVar("T")


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a secret: what is stored where the holder never presents it again."""
    return hashlib.sha256(secret.encode()).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _new_uuid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class TokenRequest:
    """What `POST /v1/peering/token` asks for, already decoded (not yet validated)."""

    name: str
    partition: str | None = None
    meta: Mapping[str, str] | None = None
    server_external_addresses: Sequence[str] = ()


class PeeringService:
    """Generate tokens, read, list and delete peerings of one cluster."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        identity: ClusterIdentity,
        *,
        advertise_addresses: Sequence[str],
        deletion_grace: float = 120.0,
        now: Callable[[], datetime] = _utcnow,
        new_id: Callable[[], str] = _new_uuid,
        new_secret: Callable[[], str] = _new_uuid,
    ) -> None:
        self._store = store
        self._notifier = notifier
        self._identity = identity
        self._advertise = tuple(advertise_addresses)
        self._deletion_grace = timedelta(seconds=deletion_grace)
        self._now = now
        self._new_id = new_id
        self._new_secret = new_secret

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[Transaction]:
        """A write transaction whose commit wakes blocking queries."""
        async with self._store.transaction() as tx:
            yield tx
        self._notifier.notify()

    async def generate_token(self, request: TokenRequest) -> str:
        """Create the acceptor side of a peering (or rotate its secret) and return a signed token.

        Raises:
            InvalidRequestError: bad name, partition, meta or external address.
            PeeringConflictError: the name belongs to a peering this cluster dialed, or is being deleted.
        """
        name = check_peer_name(request.name)
        partition = normalize_partition(request.partition)
        meta = check_meta(request.meta) if request.meta is not None else None
        addresses = tuple(check_server_address(a) for a in request.server_external_addresses) or self._advertise
        secret = self._new_secret()
        async with self._write() as tx:
            existing = await tx.get(partition, name)
            if existing is None:
                peering = Peering(self._new_id(), name, partition, Role.ACCEPTOR, PeeringState.INITIAL, meta or {})
            else:
                peering = self._regenerated(existing, meta)
            saved = await tx.save(peering)
            old = await tx.secrets(saved.id)
            # a new token voids the unused one but keeps the stream secret of a live link
            await tx.set_secrets(saved.id, replace(old, establishment_hash=hash_secret(secret)))
        log.info("peering token generated", extra={"peer_name": name, "partition": partition, "peering_id": saved.id})
        token = tokens.PeeringToken(
            ca=(self._identity.ca_pem,),
            server_addresses=addresses,
            server_name=self._identity.server_name,
            peer_id=saved.id,
            establishment_secret=secret,
            remote=tokens.TokenRemote(datacenter=self._identity.datacenter, partition=partition),
        )
        return tokens.encode(token, self._identity.sign)

    @staticmethod
    def _regenerated(existing: Peering, meta: Mapping[str, str] | None) -> Peering:
        if existing.role is Role.DIALER:
            raise PeeringConflictError(
                f'cannot create peering with name: "{existing.name}"; there is already an established peering'
            )
        if existing.is_deleted:
            raise PeeringConflictError(
                f'cannot create peering with name: "{existing.name}"; the peering is marked for deletion'
            )
        state = transition(Role.ACCEPTOR, existing.state, Event.TOKEN_GENERATED)
        peering = replace(existing, state=state, meta=existing.meta if meta is None else meta)
        if existing.state is PeeringState.TERMINATED:
            # the old peer is gone; whoever uses the new token is a new remote
            peering = replace(peering, remote=Remote(), remote_cluster="")
        return peering

    async def read(self, partition: str | None, name: str, *, min_index: int = 0, wait: float = 0.0) -> Peering:
        """One peering by name; with `min_index`, first wait (up to `wait` s) for its index to pass it.

        Raises:
            InvalidRequestError: bad partition name.
            PeeringNotFoundError: no such peering (after the wait).
        """
        part = normalize_partition(partition)

        async def snapshot() -> tuple[Peering | None, int]:
            peering = await self._store.get(part, name)
            if peering is not None:
                return peering, peering.modify_index
            return None, await self._store.partition_index(part)

        peering, _ = await self._blocking(snapshot, min_index, wait)
        if peering is None:
            raise PeeringNotFoundError(name)
        return peering

    async def list_peerings(
        self, partition: str | None, *, min_index: int = 0, wait: float = 0.0
    ) -> tuple[list[Peering], int]:
        """Every peering of a partition sorted by name, and the index to block on next.

        Raises:
            InvalidRequestError: bad partition name.
        """
        part = normalize_partition(partition)
        return await self._blocking(lambda: self._store.list_peerings(part), min_index, wait)

    async def _blocking(
        self, snapshot: Callable[[], Awaitable[tuple[T, int]]], min_index: int, wait: float
    ) -> tuple[T, int]:
        """Answer at once, or, for a blocking query, once the data's index passes `min_index`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT)
        while True:
            watch = self._notifier.watch()  # taken before reading, so no write slips between
            result = await snapshot()
            remaining = deadline - loop.time()
            if min_index <= 0 or result[1] > min_index or remaining <= 0:
                return result
            if not await watch.wait(remaining):
                return await snapshot()

    async def delete(self, partition: str | None, name: str) -> None:
        """Mark a peering `TERMINATED` with `DeletedAt`, and schedule its removal. Unknown names are fine.

        Raises:
            InvalidRequestError: bad partition name.
        """
        part = normalize_partition(partition)
        now = self._now()
        async with self._write() as tx:
            existing = await tx.get(part, name)
            if existing is None or existing.is_deleted:
                return
            state = transition(existing.role, existing.state, Event.DELETED)
            await tx.save(replace(existing, state=state, deleted_at=now))
            # the token of an unused acceptor dies with it
            old = await tx.secrets(existing.id)
            await tx.set_secrets(existing.id, replace(old, establishment_hash=None))
            # a peering with nobody to tell goes at once; otherwise the peer gets a grace period
            has_peer = existing.state is not PeeringState.TERMINATED and (
                existing.role is Role.DIALER or existing.remote_cluster != ""
            )
            await tx.schedule_removal(existing.id, now + self._deletion_grace if has_peer else now)
        log.info("peering deleted", extra={"peer_name": existing.name, "partition": part, "peering_id": existing.id})

    async def remove_due(self) -> int:
        """Remove every deleted peering whose removal time has come; returns how many."""
        due = await self._store.due_removals(self._now())
        for peering in due:
            async with self._write() as tx:
                await tx.remove(peering.id)
            log.info(
                "peering removed",
                extra={"peer_name": peering.name, "partition": peering.partition, "peering_id": peering.id},
            )
        return len(due)

    async def current_index(self) -> int:
        """The index of the last committed write."""
        return await self._store.current_index()
