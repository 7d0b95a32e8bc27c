"""A write-through, in-memory view of the peerings in front of any `Database` (SPEC §11 performance, §12).

Reads by name, by ID, lists and partition indexes come from memory; every write still goes to the
backing database in its unit of work, and the view takes the committed result (never an uncommitted
one). The view is a cache, never the source of truth: it follows the database's change feed
(`changes_since`) from the index it has applied up to (`synced`), so it stays valid with other
writers (a second process on the SQLite file, other replicas on PostgreSQL). It catches up, before a read, when
- the notifier it follows (`follow`) announced an index above `synced` (a commit anywhere: the
  notifier's `index`), or
- `poll` seconds passed since the last catch-up (the safety net: correctness never depends on a
  notification); that catch-up runs beside the read, which answers from memory (`store.poll`).
Its own writes are applied at once, and advance `synced` without reading the feed when no other
write came between (so a single writer reads no feed per write). A reader behind the feed's
horizon (entries reaped) reloads in full. Indexes never go backwards in the view (every apply keeps
the higher `modify_index`, and partition indexes only grow). `catch_up()` runs before a `?consistent` read.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Protocol, runtime_checkable

from peering.domain import Peering, PeeringState
from peering.store.base import (
    AclReads,
    AclWrites,
    CatalogReads,
    CatalogWrites,
    Changes,
    ConfigReads,
    ConfigWrites,
    Fence,
    ReplicationReads,
    ReplicationWrites,
    Secrets,
    Store,
    Transaction,
)
from peering.store.poll import Poll

POLL = 0.5  # seconds between two catch-ups without notification (writes visible everywhere within 1 s)
_PAGE = 1000


@runtime_checkable
class Announcer(Protocol):
    """What the view needs of a notifier (`peering.notifier.Notifier` has it): the highest index announced."""

    @property
    def index(self) -> int:
        """The highest committed index notified so far, by this process or another."""


class _RecordingTransaction:
    """A transaction that remembers what it saved and removed, for the view to apply after the commit."""

    def __init__(self, inner: Transaction) -> None:
        self._inner = inner
        self.saved: dict[str, Peering] = {}
        self.removed: set[str] = set()

    @property
    def index(self) -> int:
        return self._inner.index

    @property
    def wrote(self) -> bool:
        return self._inner.wrote

    @property
    def acl(self) -> AclWrites:
        return self._inner.acl

    # catalog, config and replication writes are not cached: they go to the inner unit as they are, and
    # take its index through it, so `wrote` (the inner unit's) tells the view and the notifier of them too
    @property
    def catalog(self) -> CatalogWrites:
        return self._inner.catalog

    @property
    def config(self) -> ConfigWrites:
        return self._inner.config

    @property
    def replication(self) -> ReplicationWrites:
        return self._inner.replication

    async def fence(self, fence: Fence) -> None:
        await self._inner.fence(fence)

    async def get(self, partition: str, name: str) -> Peering | None:
        return await self._inner.get(partition, name)

    async def get_by_id(self, peering_id: str) -> Peering | None:
        return await self._inner.get_by_id(peering_id)

    async def save(self, peering: Peering) -> Peering:
        saved = await self._inner.save(peering)
        self.saved[saved.id] = saved
        self.removed.discard(saved.id)
        return saved

    async def remove(self, peering_id: str) -> None:
        await self._inner.remove(peering_id)
        self.removed.add(peering_id)
        self.saved.pop(peering_id, None)

    async def secrets(self, peering_id: str) -> Secrets:
        return await self._inner.secrets(peering_id)

    async def set_secrets(self, peering_id: str, secrets: Secrets) -> None:
        await self._inner.set_secrets(peering_id, secrets)

    async def set_establishment_hash(self, peering_id: str, secret_hash: str | None) -> None:
        await self._inner.set_establishment_hash(peering_id, secret_hash)

    async def set_stream_hash(self, peering_id: str, secret_hash: str) -> None:
        await self._inner.set_stream_hash(peering_id, secret_hash)

    async def consume_establishment_secret(self, peering_id: str, secret_hash: str) -> bool:
        return await self._inner.consume_establishment_secret(peering_id, secret_hash)

    async def schedule_removal(self, peering_id: str, at: datetime) -> None:
        await self._inner.schedule_removal(peering_id, at)


class CachedStore:
    """`Store` whose reads of peerings are served from memory (see the module docstring)."""

    def __init__(self, inner: Store, *, poll: float = POLL, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._inner = inner
        self._by_id: dict[str, Peering] = {}
        self._by_name: dict[tuple[str, str], str] = {}  # (partition, lower-cased name) -> ID
        self._terminated: set[str] = set()  # IDs of the TERMINATED ones, so that finding them is not a scan
        self._partition_index: dict[str, int] = {}
        self._sorted: dict[str, list[Peering]] = {}  # per partition, rebuilt after a change
        self._removed_at: dict[str, int] = {}  # ID -> index of its removal
        self._listed_index: dict[str, int] = {}  # highest ModifyIndex in each sorted list
        self._synced = 0  # every change of the feed up to here is applied
        self._own: set[int] = set()  # indexes of this view's own commits above `_synced`
        self._announcer: Announcer | None = None
        self._poll = Poll("peering view", self.catch_up, every=poll, monotonic=monotonic)
        self._sync_lock = asyncio.Lock()
        self._version = 0  # moves on every change of what the reads below answer (`stamp`)

    @classmethod
    async def load(
        cls, inner: Store, *, poll: float = POLL, monotonic: Callable[[], float] = time.monotonic
    ) -> CachedStore:
        """A view holding every peering of `inner`, with the partitions' indexes."""
        view = cls(inner, poll=poll, monotonic=monotonic)
        await view._reload()
        return view

    def follow(self, announcer: Announcer) -> None:
        """Catch up whenever `announcer` (the cluster's notifier) has announced an index the view lacks."""
        self._announcer = announcer

    @property
    def synced(self) -> int:
        """The feed index the view has applied every change up to."""
        return self._synced

    def stamp(self) -> int | None:
        """What the reads answer now, as a number that moves whenever their answer may change; None while a
        read would first catch up (another writer announced an index the view lacks). As a read, it starts
        the poll's catch-up beside it if that is due. An answer made while the stamp stays the same is still
        the answer (`api.answers`)."""
        if self._announcer is not None and self._announcer.index > self._synced:
            return None
        self._poll.start_if_due()
        return self._version

    async def _reload(self) -> None:
        """Read everything again (at start, and when the feed was reaped past `synced`)."""
        start = await self._inner.current_index()  # first: what commits after it is caught up again later
        peerings = await self._inner.every_peering()
        partitions = {p.partition for p in peerings} | set(self._partition_index)
        indexes = {part: await self._inner.partition_index(part) for part in partitions}
        # no await from here on: readers see the old view or the new one
        self._by_id, self._by_name, self._sorted, self._listed_index = {}, {}, {}, {}
        self._terminated = set()
        self._version += 1
        for peering in peerings:
            self._put(peering)
        for part, index in indexes.items():
            self._raise_index(part, index)
        self._advance(start)

    def _advance(self, upto: int) -> None:
        self._synced = max(self._synced, upto)
        while self._synced + 1 in self._own:
            self._synced += 1
        self._own = {i for i in self._own if i > self._synced}

    async def _fresh(self) -> None:
        """Catch up first if another writer is known to have committed something the view lacks; start the
        poll's catch-up beside the read if it is due."""
        announced = self._announcer.index if self._announcer is not None else 0
        if announced > self._synced:
            await self.catch_up()
        else:
            self._poll.start_if_due()

    async def settled(self) -> None:
        """Wait for the poll's catch-up in progress, if any."""
        await self._poll.settled()

    async def stop_polling(self) -> None:
        """Cancel the poll's catch-up in progress, if any (before the database underneath closes)."""
        await self._poll.stop()

    async def catch_up(self) -> None:
        """Apply every change the feed has after `synced` (re-reading the rows it names)."""
        async with self._sync_lock:
            self._poll.caught_up()
            while True:
                page = await self._inner.changes_since(self._synced, _PAGE)
                if page.horizon > self._synced:
                    await self._reload()
                    return
                removed = {c.key: c.index for c in page.changes if c.kind == "peering" and c.deleted}
                rows = {c.key: await self._inner.get_by_id(c.key) for c in page.changes if c.kind == "peering"}
                known = [self._by_id[pid] for pid in rows if pid in self._by_id]
                parts = {p.partition for p in known} | {p.partition for p in rows.values() if p is not None}
                indexes = {part: await self._inner.partition_index(part) for part in parts}
                # no await from here on
                ahead = False
                for pid, row in rows.items():
                    if row is None:
                        self._apply_removal(pid, removed.get(pid, page.upto))
                    elif row.modify_index > page.upto:
                        # written after the page: taken with the next page, so that no index the view
                        # shows is above a change it has not applied
                        ahead = True
                    else:
                        self._apply_save(row)
                for part, index in indexes.items():  # read after the page: capped at what it shows
                    self._raise_index(part, min(index, page.upto))
                self._advance(page.upto)
                if len(page.changes) < _PAGE and not ahead:
                    return

    def _apply_removal(self, peering_id: str, index: int) -> str | None:
        """Drop a removed peering (unless the view holds a later write of it); its partition if dropped."""
        self._removed_at[peering_id] = max(index, self._removed_at.get(peering_id, 0))
        gone = self._by_id.get(peering_id)
        if gone is not None and gone.modify_index <= index:
            self._drop(gone)
            return gone.partition
        return None

    def _apply_save(self, peering: Peering) -> set[str]:
        """Take a committed row unless the view holds a later one; the partitions it touched."""
        old = self._by_id.get(peering.id)
        if (old is not None and old.modify_index > peering.modify_index) or self._removed_at.get(
            peering.id, 0
        ) > peering.modify_index:
            return set()
        self._put(peering)
        return {peering.partition} | ({old.partition} if old is not None else set())

    def _raise_index(self, partition: str, index: int) -> None:
        if index > self._partition_index.get(partition, 0):
            self._partition_index[partition] = index
            self._version += 1

    def _put(self, peering: Peering) -> None:
        self._version += 1
        old = self._by_id.get(peering.id)
        if old is not None:
            self._drop(old)
        self._by_id[peering.id] = peering
        self._by_name[(peering.partition, _folded(peering.name))] = peering.id
        if peering.state is PeeringState.TERMINATED:
            self._terminated.add(peering.id)
        self._sorted.pop(peering.partition, None)

    def _drop(self, peering: Peering) -> None:
        self._version += 1
        del self._by_id[peering.id]
        self._terminated.discard(peering.id)
        key = (peering.partition, _folded(peering.name))
        if self._by_name.get(key) == peering.id:
            del self._by_name[key]
        self._sorted.pop(peering.partition, None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._inner.transaction() as tx:
            recording = _RecordingTransaction(tx)
            yield recording
        # committed (an exception would have skipped this): no await from here on, so no reader sees half
        if recording.wrote:
            self._apply_unit(recording.index, recording.saved.values(), recording.removed)

    async def save_acceptor(self, peering: Peering, secret_hash: str, *, expected: Peering | None) -> Peering | None:
        saved = await self._inner.save_acceptor(peering, secret_hash, expected=expected)
        if saved is not None:
            self._apply_unit(saved.modify_index, (saved,), ())
        return saved

    def _apply_unit(self, index: int, saved: Iterable[Peering], removed: Iterable[str]) -> None:
        """What a committed unit of this process wrote, applied to the view (no await: no reader sees half)."""
        # writers committed together (group commit) may get here in any order: the higher index wins
        touched: set[str] = set()
        for peering_id in removed:
            if (partition := self._apply_removal(peering_id, index)) is not None:
                touched.add(partition)
        for peering in saved:
            touched |= self._apply_save(peering)
        for partition in touched:
            self._raise_index(partition, index)
        self._own.add(index)
        self._advance(0)  # nothing else came between: no feed to read
        if len(self._removed_at) > 100_000:
            self._removed_at.clear()  # IDs are never reused, so old tombstones only guard late arrivals

    @property
    def acl(self) -> AclReads:
        return self._inner.acl  # ACL reads are not cached

    @property
    def catalog(self) -> CatalogReads:
        return self._inner.catalog  # nor catalog, config entry or replication reads

    @property
    def config(self) -> ConfigReads:
        return self._inner.config

    @property
    def replication(self) -> ReplicationReads:
        return self._inner.replication

    async def get(self, partition: str, name: str) -> Peering | None:
        await self._fresh()
        return self.seen(partition, name)

    def seen(self, partition: str, name: str) -> Peering | None:
        """The view's peering of that name, without catching up first: it may lag other writers (and its own
        group's units, for a moment), so only for plans the database checks (`save_acceptor`)."""
        peering_id = self._by_name.get((partition, name.lower()))
        return self._by_id.get(peering_id) if peering_id is not None else None

    async def get_by_id(self, peering_id: str) -> Peering | None:
        await self._fresh()
        return self._by_id.get(peering_id)

    async def list_peerings(self, partition: str) -> tuple[list[Peering], int]:
        """The partition's peerings (the same list object until the partition changes: do not modify it)."""
        await self._fresh()
        listed = self._sorted.get(partition)
        if listed is None:
            listed = sorted((p for p in self._by_id.values() if p.partition == partition), key=lambda p: p.name.lower())
            self._sorted[partition] = listed
            self._listed_index[partition] = max([1, *(p.modify_index for p in listed)])
        return listed, max(self._listed_index[partition], self._partition_index.get(partition, 1))

    async def partition_index(self, partition: str) -> int:
        await self._fresh()
        return max(1, self._partition_index.get(partition, 1))

    async def every_peering(self) -> list[Peering]:
        await self._fresh()
        return sorted(self._by_id.values(), key=lambda p: (p.partition, p.name.lower()))

    async def terminated(self) -> list[Peering]:
        await self._fresh()
        return [self._by_id[peering_id] for peering_id in self._terminated]

    async def current_index(self) -> int:
        return await self._inner.current_index()  # ACL writes bump it too, outside this view

    async def due_removals(self, now: datetime) -> list[Peering]:
        return await self._inner.due_removals(now)

    async def awaiting_notice(self, now: datetime) -> list[Peering]:
        return await self._inner.awaiting_notice(now)

    async def live_links(self) -> list[Peering]:
        return await self._inner.live_links()

    async def secrets(self, peering_id: str) -> Secrets:
        return await self._inner.secrets(peering_id)

    async def changes_since(self, since: int, limit: int = 1000) -> Changes:
        return await self._inner.changes_since(since, limit)

    async def reap_changes(self, before_index: int) -> int:
        return await self._inner.reap_changes(before_index)


def _folded(name: str) -> str:
    """The name lower-cased, as the view's key: the name itself when it already is (no second string held)."""
    return lowered if (lowered := name.lower()) != name else name
