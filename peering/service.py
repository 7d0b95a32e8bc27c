"""The operations a client can ask for (SPEC §3, §7), orchestrated over the store and the peer calls.

It never imports the web framework; routes call one method each and get domain objects back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TypeVar

from peering import tokens
from peering.acl_model import ALLOW_ALL, Access, Level
from peering.cluster import Cluster, hash_secret
from peering.domain import Event, Peering, PeeringState, Remote, Role, transition
from peering.errors import PeeringConflictError, PeeringError, PeeringNotFoundError
from peering.establishing import CheckResult, Establisher, EstablishRequest, refuse_deleted
from peering.locks import KeyedCounts
from peering.outbound import Outbound, log_fields
from peering.rules import check_meta, check_peer_name, check_server_address, normalize_partition
from peering.store.base import Fence
from peering.store.cached import CachedStore

__all__ = ["CheckResult", "EstablishRequest", "PeeringService", "TokenRequest"]  # the first two: establishing.py

log = logging.getLogger("peering.service")

MAX_WAIT = 600.0  # seconds: the longest blocking query (SPEC §3)

T = TypeVar("T")


@dataclass(frozen=True)
class TokenRequest:
    """What `POST /v1/peering/token` asks for, already decoded (not yet validated)."""

    name: str
    partition: str | None = None
    meta: Mapping[str, str] | None = None
    server_external_addresses: Sequence[str] = ()


class PeeringService:
    """Generate tokens, establish, check, read, list and delete peerings of one cluster."""

    def __init__(self, cluster: Cluster, outbound: Outbound) -> None:
        self._cluster = cluster
        self._store = cluster.store
        self._outbound = outbound
        self._establisher = Establisher(cluster, outbound)
        self._name_locks = self._establisher.name_locks  # what the tests look at
        self._generating: KeyedCounts[tuple[str, str]] = KeyedCounts()  # token generations in flight per name
        self._lists: dict[str, tuple[list[Peering], int, list[Peering]]] = {}

    async def generate_token(self, request: TokenRequest, *, access: Access = ALLOW_ALL) -> str:
        """Create the acceptor side of a peering (or rotate its secret) and return a signed token.

        Raises:
            InvalidRequestError: bad name, partition, meta or external address.
            PeeringConflictError: the name belongs to a peering this cluster dialed, or is being deleted.
            PermissionDeniedError: the caller lacks `peering:write`.
        """
        cluster = self._cluster
        name = check_peer_name(request.name)
        partition = normalize_partition(request.partition)
        meta = check_meta(request.meta) if request.meta is not None else None
        addresses = tuple(check_server_address(a) for a in request.server_external_addresses)
        await access.require("peering", Level.WRITE)
        secret = cluster.new_secret()
        secret_hash = hash_secret(secret)  # a new token voids the unused one but keeps a live link's stream secret
        # planned from the view and saved if the stored row is still the one planned from (one statement, in
        # a batch); else (another replica wrote it since, the view's row refuses, or another generation of the
        # name is in flight here and would make the plan stale) planned from the stored row inside the unit
        with self._generating.inside((partition, name.lower())) as busy:
            store = self._store
            existing, saved = None, None
            if not busy and isinstance(store, CachedStore):
                existing = store.seen(partition, name)
                try:
                    planned: Peering | None = self._planned(existing, name, partition, meta)
                except PeeringError:
                    planned = None  # the view's row refuses: the stored one decides
                saved = await cluster.save_acceptor(planned, secret_hash, expected=existing) if planned else None
            if saved is None:
                async with cluster.write() as tx:
                    existing = await tx.get(partition, name)
                    saved = await tx.save(self._planned(existing, name, partition, meta))
                    await tx.set_establishment_hash(saved.id, secret_hash)
        log.info("peering created" if existing is None else "peering token regenerated", extra=log_fields(saved))
        me = cluster.identity
        token = tokens.PeeringToken(
            ca=(me.ca_pem,),
            server_addresses=addresses or cluster.advertise_addresses,
            server_name=me.server_name,
            peer_id=saved.id,
            establishment_secret=secret,
            remote=tokens.TokenRemote(datacenter=me.datacenter, partition=partition),
        )
        return tokens.encode(token, me.sign)

    def _planned(self, existing: Peering | None, name: str, partition: str, meta: Mapping[str, str] | None) -> Peering:
        """The acceptor peering a token generation saves, given the peering of that name (None: a new one).

        Raises:
            PeeringConflictError, InvalidTransitionError: `existing` refuses a new token.
        """
        if existing is None:
            return Peering(self._cluster.new_id(), name, partition, Role.ACCEPTOR, PeeringState.INITIAL, meta or {})
        return self._regenerated(existing, meta)

    @staticmethod
    def _regenerated(existing: Peering, meta: Mapping[str, str] | None) -> Peering:
        if existing.role is Role.DIALER:
            raise PeeringConflictError(
                f'cannot create peering with name: "{existing.name}"; there is already an established peering'
            )
        refuse_deleted(existing)
        state = transition(Role.ACCEPTOR, existing.state, Event.TOKEN_GENERATED)
        peering = replace(existing, state=state, meta=existing.meta if meta is None else meta)
        if existing.state is PeeringState.TERMINATED:
            # the old peer is gone; whoever uses the new token is a new remote
            peering = replace(
                peering, remote=Remote(), remote_cluster="", peer_id="", peer_ca_pems=(), peer_server_addresses=()
            )
        return peering

    async def establish(self, request: EstablishRequest, *, access: Access = ALLOW_ALL) -> Peering:
        """Dial the acceptor named in the token, exchange its one-time secret, and start the link.

        Returns once the exchange is done and the first heartbeat was sent; on any failure nothing
        is stored, and a failure after the acceptor consumed the secret is undone there too.

        Raises:
            InvalidRequestError: bad name, partition, meta or token; role or cluster conflicts.
            SecretRejectedError: the token was used, superseded or deleted on the acceptor.
            PeerError: the acceptor could not be reached or answered badly.
            PermissionDeniedError: the caller lacks `peering:write`.
        """
        return await self._establisher.establish(request, access)

    async def check(self, request: EstablishRequest, *, access: Access = ALLOW_ALL) -> CheckResult:
        """Run every establish check, including a TLS dial and a secret probe, changing nothing (SPEC §7).

        Raises:
            PermissionDeniedError: the caller lacks `peering:write` (every other failure is a result).
        """
        return await self._establisher.check(request, access)

    async def read(
        self,
        partition: str | None,
        name: str,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> Peering:
        """One peering by name; with `min_index`, first wait (up to `wait` s) for its index to pass it;
        `consistent`: the answer includes every write acknowledged before the call (SPEC §15).

        Raises:
            InvalidRequestError: bad partition name.
            PeeringNotFoundError: no such peering (after the wait).
            PermissionDeniedError: the caller lacks `peering:read`.
        """
        part = normalize_partition(partition)
        await access.require("peering", Level.READ)
        if consistent:
            await self._catch_up()

        async def snapshot() -> tuple[Peering | None, int]:
            # names are ASCII: a non-ASCII one names nothing (and must not fold onto one, as `\u212a` onto `k`)
            peering = await self._store.get(part, name) if name.isascii() else None
            if peering is not None:
                return peering, peering.modify_index
            return None, await self._store.partition_index(part)

        peering, _ = await self._blocking(snapshot, min_index, wait)
        if peering is None:
            raise PeeringNotFoundError(name)
        return self._cluster.with_stream(peering)

    def stamp(self) -> tuple[int, int] | None:
        """What `read` and `list_peerings` answer now (not `consistent`, not blocking), as numbers that move
        whenever an answer may change: the in-memory view's and the link statuses'; None while a read would
        first catch up, or when the store has no view in memory."""
        store = self._store.stamp() if isinstance(self._store, CachedStore) else None
        return None if store is None else (store, self._cluster.tracker.version)

    async def list_peerings(
        self,
        partition: str | None,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> tuple[list[Peering], int]:
        """Every peering of a partition sorted by name, and the index to block on next (`consistent`: as `read`).

        Raises:
            InvalidRequestError: bad partition name.
            PermissionDeniedError: the caller lacks `peering:read`.
        """
        part = normalize_partition(partition)
        await access.require("peering", Level.READ)
        if consistent:
            await self._catch_up()
        peerings, index = await self._blocking(lambda: self._store.list_peerings(part), min_index, wait)
        return self._streamed_list(part, peerings), index

    def _streamed_list(self, partition: str, peerings: list[Peering]) -> list[Peering]:
        """The list with link statuses filled in; the same list object while neither changed (renderers
        cache by identity), so listing an unchanged partition costs no per-peering work."""
        version = self._cluster.tracker.version
        cached = self._lists.get(partition)
        if cached is not None and cached[0] is peerings and cached[1] == version:
            return cached[2]
        streamed = [self._cluster.with_stream(p) for p in peerings]
        self._lists[partition] = (peerings, version, streamed)
        return streamed

    async def snapshot(self, *, access: Access = ALLOW_ALL) -> list[Peering]:
        """Every peering of every partition, for metrics.

        Raises:
            PermissionDeniedError: the caller lacks `operator:read`.
        """
        await access.require("operator", Level.READ)
        return await self._store.every_peering()

    async def _catch_up(self) -> None:
        """Bring the in-memory view (if any) up to the database's last commit, whoever wrote it: a plain read
        may lag another writer's commit by up to the view's poll; a database read never lags."""
        if isinstance(self._store, CachedStore):
            await self._store.catch_up()

    async def _blocking(
        self, snapshot: Callable[[], Awaitable[tuple[T, int]]], min_index: int, wait: float
    ) -> tuple[T, int]:
        """Answer at once, or, for a blocking query, once the data's index passes `min_index`, the wait
        ends or the notifier is closed (shutdown: answer with what there is, as if the wait had ended)."""
        notifier, loop = self._cluster.notifier, asyncio.get_running_loop()
        deadline = loop.time() + min(wait, MAX_WAIT)
        watch = notifier.watch()  # taken before reading, so no write slips between
        result = await snapshot()
        if min_index <= 0 or result[1] > min_index or wait <= 0 or notifier.closed:
            return result
        with self._cluster.metrics.blocking_query():  # cancelled (the client left): the gauge drops too
            while await watch.wait(deadline - loop.time()) and not notifier.closed:
                watch = notifier.watch()
                result = await snapshot()
                if result[1] > min_index:
                    return result
            return await snapshot()

    async def delete(self, partition: str | None, name: str, *, access: Access = ALLOW_ALL) -> None:
        """Mark a peering `TERMINATED` with `DeletedAt`, and schedule its removal. Unknown names are fine.

        Raises:
            InvalidRequestError: bad partition name.
            PermissionDeniedError: the caller lacks `peering:write`.
        """
        part = normalize_partition(partition)
        await access.require("peering", Level.WRITE)
        now = self._cluster.now()
        async with self._cluster.write() as tx:
            existing = await tx.get(part, name) if name.isascii() else None  # as in `read`
            if existing is None or existing.is_deleted:
                return
            state = transition(existing.role, existing.state, Event.DELETED)
            await tx.save(replace(existing, state=state, deleted_at=now))
            # the token of an unused acceptor dies with it
            await tx.set_establishment_hash(existing.id, None)
            # a peering with nobody to tell goes at once; otherwise the peer gets a grace period
            has_peer = existing.state is not PeeringState.TERMINATED and (
                existing.role is Role.DIALER or existing.remote_cluster != ""
            )
            grace = timedelta(seconds=self._cluster.timings.deletion_grace if has_peer else 0)
            await tx.schedule_removal(existing.id, now + grace)
        log.info("peering deleted", extra=log_fields(existing))

    async def remove(self, peering: Peering, fence: Fence | None = None) -> None:
        """Remove a deleted peering for good (its peer was told, or its grace period is over).

        Raises:
            LeaseLostError: `fence` (the background owner's lease) is no longer held; nothing removed.
        """
        async with self._cluster.write() as tx:
            if fence is not None:
                await tx.fence(fence)
            await tx.remove(peering.id)
        self._cluster.tracker.forget(peering.id)
        log.info("peering removed", extra=log_fields(peering))

    async def remove_due(self, fence: Fence | None = None) -> int:
        """Remove every deleted peering whose removal time has come, each fenced with `fence` when given;
        returns how many.

        Raises:
            LeaseLostError: `fence` is no longer held; the peerings not yet removed stay.
        """
        due = await self._store.due_removals(self._cluster.now())
        for peering in due:
            await self.remove(peering, fence)
        return len(due)

    @property
    def datacenter(self) -> str:
        """This cluster's datacenter (the only one a request may name in `?dc=`)."""
        return self._cluster.identity.datacenter

    async def current_index(self) -> int:
        """The index of the last committed write."""
        return await self._store.current_index()
