"""A write-through, in-memory view of the peerings in front of any `Store` (SPEC §11 performance).

Reads by name, by ID, lists and partition indexes come from memory; every write still goes to the
backing store in its transaction, and the view takes the committed result (never an uncommitted
one). Valid while this process is the only writer, which the SQLite store guarantees; a store shared
by several replicas needs the view refreshed from its notifier as well.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

from peering.domain import Peering
from peering.store.base import AclReads, AclWrites, Changes, Fence, Secrets, Store, Transaction


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

    def __init__(self, inner: Store) -> None:
        self._inner = inner
        self._by_id: dict[str, Peering] = {}
        self._by_name: dict[tuple[str, str], str] = {}  # (partition, lower-cased name) -> ID
        self._partition_index: dict[str, int] = {}
        self._sorted: dict[str, list[Peering]] = {}  # per partition, rebuilt after a change
        self._removed_at: dict[str, int] = {}  # ID -> index of its removal
        self._listed_index: dict[str, int] = {}  # highest ModifyIndex in each sorted list

    @classmethod
    async def load(cls, inner: Store) -> CachedStore:
        """A view holding every peering of `inner`, with the partitions' indexes."""
        view = cls(inner)
        for peering in await inner.every_peering():
            view._put(peering)
        for partition in {p.partition for p in view._by_id.values()}:
            view._partition_index[partition] = await inner.partition_index(partition)
        return view

    def _put(self, peering: Peering) -> None:
        old = self._by_id.get(peering.id)
        if old is not None:
            self._drop(old)
        self._by_id[peering.id] = peering
        self._by_name[(peering.partition, peering.name.lower())] = peering.id
        self._sorted.pop(peering.partition, None)

    def _drop(self, peering: Peering) -> None:
        del self._by_id[peering.id]
        key = (peering.partition, peering.name.lower())
        if self._by_name.get(key) == peering.id:
            del self._by_name[key]
        self._sorted.pop(peering.partition, None)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        async with self._inner.transaction() as tx:
            recording = _RecordingTransaction(tx)
            yield recording
        # committed (an exception would have skipped this): no await from here on, so no reader sees half
        if not recording.wrote:
            return
        # writers committed together (group commit) may get here in any order: the higher index wins
        index = recording.index
        touched: set[str] = set()
        for peering_id in recording.removed:
            self._removed_at[peering_id] = index
            gone = self._by_id.get(peering_id)
            if gone is not None and gone.modify_index <= index:
                self._drop(gone)
                touched.add(gone.partition)
        for peering in recording.saved.values():
            old = self._by_id.get(peering.id)
            if (old is not None and old.modify_index > peering.modify_index) or self._removed_at.get(
                peering.id, 0
            ) > peering.modify_index:
                continue
            if old is not None:
                touched.add(old.partition)
            self._put(peering)
            touched.add(peering.partition)
        for partition in touched:
            self._partition_index[partition] = max(index, self._partition_index.get(partition, 0))
        if len(self._removed_at) > 100_000:
            self._removed_at.clear()  # IDs are never reused, so old tombstones only guard late arrivals

    @property
    def acl(self) -> AclReads:
        return self._inner.acl  # ACL reads are not cached

    async def get(self, partition: str, name: str) -> Peering | None:
        peering_id = self._by_name.get((partition, name.lower()))
        return self._by_id.get(peering_id) if peering_id is not None else None

    async def get_by_id(self, peering_id: str) -> Peering | None:
        return self._by_id.get(peering_id)

    async def list_peerings(self, partition: str) -> tuple[list[Peering], int]:
        """The partition's peerings (the same list object until the partition changes: do not modify it)."""
        listed = self._sorted.get(partition)
        if listed is None:
            listed = sorted((p for p in self._by_id.values() if p.partition == partition), key=lambda p: p.name.lower())
            self._sorted[partition] = listed
            self._listed_index[partition] = max([1, *(p.modify_index for p in listed)])
        return listed, max(self._listed_index[partition], self._partition_index.get(partition, 1))

    async def partition_index(self, partition: str) -> int:
        return max(1, self._partition_index.get(partition, 1))

    async def every_peering(self) -> list[Peering]:
        return sorted(self._by_id.values(), key=lambda p: (p.partition, p.name.lower()))

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
