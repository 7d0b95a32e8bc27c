"""What one running cluster shares between its operations: store, clock, identity, link status.

Every write goes through `Cluster.write()`, whose commit wakes blocking queries and the link keeper.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from peering.domain import Event, Peering, StreamStatus, transition
from peering.errors import (
    ConstraintError,
    NameTakenError,
    PeeringConflictError,
    RemoteClusterTakenError,
    RowMissingError,
)
from peering.identity import ClusterIdentity
from peering.metrics import Metrics
from peering.notifier import Notifier
from peering.store.base import Store, Transaction
from peering.store.cached import Announcer, CachedStore
from peering.tracker import StreamTracker

PROTOCOL_VERSION = "1"
CHANGES_KEPT = 100_000  # change-feed entries kept below the current index (a view further behind reloads)


def hash_secret(secret: str) -> str:
    """SHA-256 hex of a secret: what is stored where the holder never presents it again."""
    return hashlib.sha256(secret.encode("utf-8", errors="surrogatepass")).hexdigest()


def same_secret(presented: str, expected: str | None) -> bool:
    """Constant-time comparison; nothing matches a missing secret."""
    return expected is not None and hmac.compare_digest(presented.encode(), expected.encode())


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


def new_uuid() -> str:
    """A random UUID string (IDs and secrets)."""
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Timings:
    """How often and how patiently the cluster talks to its peers (seconds)."""

    heartbeat_interval: float = 15.0
    heartbeat_timeout: float = 120.0
    establish_timeout: float = 3.0

    @property
    def deletion_grace(self) -> float:
        """How long a deleted peering waits for its peer to be told before it is removed anyway."""
        return self.heartbeat_timeout


def worded(exc: ConstraintError) -> PeeringConflictError:
    """The SPEC message for a constraint the store reports about peerings (it reports facts, not words)."""
    if isinstance(exc, RemoteClusterTakenError):
        return PeeringConflictError(f'a peering with this cluster already exists: "{exc.holder}"')
    if isinstance(exc, NameTakenError | RowMissingError) and exc.kind == "peering":
        name = exc.name if isinstance(exc, NameTakenError) else exc.key
        return PeeringConflictError(f'cannot create peering with name: "{name}"; the name is already in use')
    return PeeringConflictError(exc.message)


class Cluster:
    """The shared context of one cluster's service, endpoint and background work."""

    def __init__(
        self,
        store: Store,
        notifier: Notifier,
        identity: ClusterIdentity,
        *,
        advertise_addresses: Sequence[str],
        timings: Timings = Timings(),
        now: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        new_id: Callable[[], str] = new_uuid,
        new_secret: Callable[[], str] = new_uuid,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.notifier = notifier
        if isinstance(store, CachedStore) and isinstance(notifier, Announcer):
            store.follow(notifier)  # the view catches up on what the notifier announces (other writers too)
        self.identity = identity
        self.advertise_addresses = tuple(advertise_addresses)
        self.timings = timings
        self.now = now
        self.new_id = new_id
        self.new_secret = new_secret
        self.tracker = StreamTracker(now(), monotonic)  # timeouts on the monotonic clock, shown times on `now`
        self.metrics = metrics or Metrics()
        self._streamed: dict[str, tuple[Peering, StreamStatus, Peering]] = {}

    @asynccontextmanager
    async def write(self) -> AsyncIterator[Transaction]:
        """A write transaction whose commit wakes everyone watching the notifier.

        Raises:
            PeeringConflictError: a database constraint refused a write, in the words of SPEC §3 (`worded`).
        """
        try:
            async with self.store.transaction() as tx:
                yield tx
        except ConstraintError as exc:
            raise worded(exc) from exc
        if tx.wrote:
            self.notifier.notify(tx.index)

    async def save_acceptor(self, peering: Peering, secret_hash: str, *, expected: Peering | None) -> Peering | None:
        """`Store.save_acceptor` (a unit of its own) whose commit wakes the notifier's watchers.

        Raises:
            PeeringConflictError: a database constraint refused it, in the words of SPEC §3 (`worded`).
        """
        try:
            saved = await self.store.save_acceptor(peering, secret_hash, expected=expected)
        except ConstraintError as exc:
            raise worded(exc) from exc
        if saved is not None:
            self.notifier.notify(saved.modify_index)
        return saved

    def with_stream(self, peering: Peering) -> Peering:
        """The peering with its in-memory link status filled in.

        The same object comes back while neither changed, so renderers can cache by identity.
        """
        stream = self.tracker.get(peering.id)
        if stream is peering.stream:
            return peering
        cached = self._streamed.get(peering.id)
        if cached is not None and cached[0] is peering and cached[1] is stream:
            return cached[2]
        if len(self._streamed) > 1024 + 2 * len(self.tracker):
            self._streamed.clear()  # entries of removed peerings, dropped wholesale now and then
        combined = replace(peering, stream=stream)
        self._streamed[peering.id] = (peering, stream, combined)
        return combined

    async def reap_changes(self, keep: int = CHANGES_KEPT) -> int:
        """Drop change-feed entries (tombstones included) more than `keep` indexes old; how many went. The
        background owner's job, beside the removals; it takes no index."""
        current = await self.store.current_index()
        return await self.store.reap_changes(current - keep) if current > keep else 0

    async def apply(self, peering_id: str, event: Event) -> Peering | None:
        """Apply a link event to the stored peering (re-read inside the transaction, so no update is lost).

        Returns the peering as saved, or None when it is gone or the event changes nothing.
        """
        async with self.write() as tx:
            current = await tx.get_by_id(peering_id)
            if current is None or current.is_deleted:
                return None
            state = transition(current.role, current.state, event)
            if state is current.state:
                return None
            return await tx.save(replace(current, state=state))
