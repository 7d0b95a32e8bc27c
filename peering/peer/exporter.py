"""What this cluster exports to each peer (SPEC §14), kept current by following the change feed.

For every live peering (`ACTIVE` or `FAILING`) the exporter knows the names the partition's
`exported-services` entry names for it (`catalog.exports.names_for_peer`) and, per name, the full
instance set as the peer receives it (`payload`): typical instances only, one `<serviceID>:overall-check`
each with the precedence summary (maintenance reaches the peer as `critical`), no indexes, the node's
datacenter kept. Each payload has a hash; a name's `ExportMark` takes the peering's next sequence number
only when its hash changes (the list of names itself is the mark named ""), and marks are saved, with the
peering's `exported_services`, before anyone is told, so a sequence number once sent is never reused.

`run()` (the background owner's: one writer of marks) follows the feed: a "catalog" change recomputes the
partition's names and that service's payload, a "config_entry" change the partition's names, a "peering"
change starts or drops a peering. `page()` answers any side's stream from that state (or, in a process
that does not run the loop, from the stored marks and the catalog).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from peering.catalog.exports import KIND, from_config, names_for_peer
from peering.catalog.model import Check, ServiceHealth
from peering.cluster import Cluster
from peering.domain import Peering
from peering.errors import PeeringError
from peering.peer.payload import Payload, exportable, payload
from peering.peer.wire import (
    MAX_EXPORTED_NAMES,
    MAX_PAGE_SERVICES,
    MAX_SERVICE_BYTES,
    PAGE_BUDGET,
    ExportedService,
    ExportPage,
)
from peering.store.base import ExportMark

log = logging.getLogger("peering.replication")

FEED_PAGE = 1000  # change-feed entries read at once
TICK = 1.0  # seconds between two looks at the feed without a notification
LIST = ""  # the mark of the list of exported names


def _list_hash(names: Iterable[str]) -> str:
    return hashlib.sha256("\n".join(names).encode()).hexdigest()


@dataclass
class _Exports:
    """What one peering is sent: its generation, marks (by name) and the newest sequence number."""

    peering: Peering
    generation: str
    marks: dict[str, ExportMark] = field(default_factory=dict)

    @property
    def head(self) -> int:
        return max((m.seq for m in self.marks.values()), default=0)

    @property
    def names(self) -> list[str]:
        return sorted(name for name in self.marks if name != LIST)


@dataclass
class _Dirty:
    peerings: set[str] = field(default_factory=set)  # IDs to (re)load
    partitions: set[str] = field(default_factory=set)  # whose names to recompute
    services: set[tuple[str, str]] = field(default_factory=set)  # (partition, name) whose payload changed
    everything: bool = False


class Exporter:
    """Per peering, the exported names and payloads with their marks (see the module docstring)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._store = cluster.store
        self._exports: dict[str, _Exports] = {}
        self._payloads: dict[tuple[str, str], Payload] = {}
        self._lock = asyncio.Lock()
        self._bumped = asyncio.Event()
        self.following = False  # `run()` keeps the state current (else every answer reads the database)
        self.budget = PAGE_BUDGET  # bytes of instance data per page

    async def run(self) -> None:
        """Follow the change feed until cancelled (the background owner's job: the only writer of marks). A
        failed pass (the database away) is logged once and retried from the same point of the feed."""
        notifier = self._cluster.notifier
        since, dirty, failing = -1, _Dirty(everything=True), False
        self.following = True
        try:
            while True:
                watch = notifier.watch()
                idle = True
                try:
                    if since < 0:
                        since = await self._store.current_index()
                    changes = await self._store.changes_since(since, FEED_PAGE)
                    dirty.everything = dirty.everything or since < changes.horizon
                    for change in changes.changes:
                        self._note(dirty, change.kind, change.key)
                    if dirty.everything or dirty.peerings or dirty.partitions:
                        await self._update(dirty)
                    since, dirty, idle = changes.upto, _Dirty(), not changes.changes
                    if failing:
                        log.info("exports followed again")
                    failing = False
                except PeeringError as exc:  # the database away: the same changes again on the next pass
                    if not failing:
                        log.warning("exports not followed: %s", exc.message)
                    failing = True
                    dirty.everything = True
                if idle:  # a closed notifier fires at once: shutting down, nothing to hurry for
                    await (asyncio.sleep(TICK) if notifier.closed else watch.wait(TICK))
        finally:
            self.following = False
            self._exports.clear()
            self._payloads.clear()

    def _note(self, dirty: _Dirty, kind: str, key: str) -> None:
        if kind == "peering":
            dirty.peerings.add(key)
        elif kind == "config_entry" and key.startswith(KIND + "/"):
            dirty.partitions.add(key[len(KIND) + 1 :])
        elif kind == "catalog":
            parts = key.split("/", 2)
            if len(parts) == 3 and parts[1] == "":  # imported rows are never exported
                dirty.partitions.add(parts[0])
                dirty.services.add((parts[0], parts[2]))

    async def _update(self, dirty: _Dirty) -> None:
        async with self._lock:
            await self._recompute(dirty)

    async def _recompute(self, dirty: _Dirty) -> None:
        """Bring the tracked peerings up to date with what `dirty` says changed; save the new marks first."""
        fresh: set[str] = set()  # peerings loaded now: every name is compared with the stored marks
        if dirty.everything:
            live = {p.id: p for p in await self._store.live_links() if exportable(p)}
            for gone in set(self._exports) - set(live):
                del self._exports[gone]
            dirty.partitions.update(p.partition for p in live.values())
            loaded: list[tuple[str, Peering | None]] = [(p.id, p) for p in live.values()]
            fresh.update(self._exports)  # the feed was missed: compare every name again
            self._payloads.clear()
        else:
            loaded = [(pid, await self._store.get_by_id(pid)) for pid in dirty.peerings]
        for peering_id, peering in loaded:
            if peering is None or not exportable(peering):
                self._exports.pop(peering_id, None)
            elif peering_id in self._exports:
                self._exports[peering_id].peering = peering
            else:
                generation, marks = await self._store.replication.export_marks(peering_id)
                tracked = _Exports(peering, generation, {m.name: m for m in marks})
                self._exports[peering_id] = tracked
                fresh.add(peering_id)
                dirty.partitions.add(peering.partition)
        for key in dirty.services:
            self._payloads.pop(key, None)
        saves: list[tuple[_Exports, str, list[ExportMark], list[str]]] = []
        for partition in sorted(dirty.partitions):
            tracked_here = [e for e in self._exports.values() if e.peering.partition == partition]
            if not tracked_here:
                continue
            entry, _ = await self._store.config.config_entry(KIND, partition)
            parsed = from_config(entry) if entry is not None else None
            local, _ = await self._store.catalog.service_names(partition, "")
            for exports in tracked_here:
                names = names_for_peer(parsed, local, exports.peering.name)
                if len(names) > MAX_EXPORTED_NAMES:
                    log.warning(
                        "more services exported than a peer takes: only the first %d are sent", MAX_EXPORTED_NAMES,
                        extra={"peer_name": exports.peering.name, "partition": partition, "exported": len(names)},
                    )  # fmt: skip
                    names = names[:MAX_EXPORTED_NAMES]
                changed = {name for part, name in dirty.services if part == partition}
                check = set(names) if exports.peering.id in fresh else (set(names) - set(exports.marks)) | changed
                save = await self._marks(exports, names, check)
                if save is not None:
                    saves.append(save)
        if saves:
            await self._save(saves)

    async def _marks(
        self, exports: _Exports, names: list[str], check: set[str]
    ) -> tuple[_Exports, str, list[ExportMark], list[str]] | None:
        """The marks that change for one peering (None: none), each with its own new sequence number."""
        partition = exports.peering.partition
        seq = exports.head
        generation = exports.generation or self._cluster.new_id()
        new: list[ExportMark] = []
        await self._prefetch(partition, set(names) & check)
        for name in sorted(set(names) & check):
            found = await self.payload(partition, name)
            old = exports.marks.get(name)
            if old is None or old.hash != found.hash:
                seq += 1
                new.append(ExportMark(name, found.hash, seq))
        dropped = sorted(set(exports.marks) - set(names) - {LIST})
        listed = _list_hash(names)
        old_list = exports.marks.get(LIST)
        if old_list is None or old_list.hash != listed:
            seq += 1
            new.append(ExportMark(LIST, listed, seq))
        if not new and not dropped and generation == exports.generation:
            return None
        return exports, generation, new, dropped

    async def _save(self, saves: list[tuple[_Exports, str, list[ExportMark], list[str]]]) -> None:
        async with self._cluster.write() as tx:
            for exports, generation, marks, dropped in saves:
                current = await tx.get_by_id(exports.peering.id)
                if current is None or not exportable(current):
                    continue  # terminated meanwhile: its marks were (or are about to be) forgotten
                await tx.replication.save_export_marks(exports.peering.id, generation, marks, dropped)
                names = tuple(sorted({*exports.names, *(m.name for m in marks if m.name != LIST)} - set(dropped)))
                if current.exported_services != names:
                    await tx.save(replace(current, exported_services=names))
        for exports, generation, marks, dropped in saves:
            exports.generation = generation
            for name in dropped:
                exports.marks.pop(name, None)
            exports.marks.update((m.name, m) for m in marks)
        self._bumped.set()
        self._bumped = asyncio.Event()

    async def _prefetch(self, partition: str, names: set[str]) -> None:
        """Compute many payloads at once: one read of the nodes, one of the checks and one per node, when that is
        fewer reads than one per name (an initial sync, a new wildcard export)."""
        wanted = {name for name in names if (partition, name) not in self._payloads}
        if len(wanted) < 8 or not self.following:
            return
        catalog = self._store.catalog
        nodes, _ = await catalog.nodes(partition, "")
        if len(nodes) >= len(wanted):
            return
        checks, _ = await catalog.checks(partition, "")
        by_node: dict[str, list[Check]] = {}
        by_instance: dict[tuple[str, str], list[Check]] = {}
        for check in checks:
            if check.service_id:
                by_instance.setdefault((check.node, check.service_id), []).append(check)
            else:
                by_node.setdefault(check.node, []).append(check)
        entries: dict[str, list[ServiceHealth]] = {name: [] for name in wanted}
        for node in nodes:
            found, instances, _ = await catalog.node(partition, "", node.node)
            for instance in instances:
                if found is not None and instance.service in entries:
                    own = by_instance.get((node.node, instance.id), [])
                    entries[instance.service].append(
                        ServiceHealth(found, instance, (*by_node.get(node.node, ()), *own))
                    )
        datacenter = self._cluster.identity.datacenter
        for name, found_entries in entries.items():
            self._payloads[(partition, name)] = payload(name, found_entries, datacenter)

    async def payload(self, partition: str, name: str) -> Payload:
        """The payload of `name` as it is now (cached while the loop follows the feed)."""
        key = (partition, name)
        found = self._payloads.get(key)
        if found is None:
            entries, _ = await self._store.catalog.service_health(partition, "", name)
            found = payload(name, entries, self._cluster.identity.datacenter)
            if self.following:
                self._payloads[key] = found
        return found

    async def _state(self, peering: Peering) -> _Exports:
        """The exports of a peering: tracked, or (not following, or not tracked yet) as stored."""
        if self.following:
            async with self._lock:
                if peering.id not in self._exports and exportable(peering):
                    await self._recompute(_Dirty(peerings={peering.id}))
                tracked = self._exports.get(peering.id)
                if tracked is not None:
                    return tracked
        generation, marks = await self._store.replication.export_marks(peering.id)
        return _Exports(peering, generation, {m.name: m for m in marks})

    async def page(self, peering: Peering, generation: str, since: int) -> ExportPage:
        """What the peer needs after `since` of `generation`: every name changed since, in sequence order, up
        to `budget` bytes (one bigger service goes alone), and the list of names with the last page. An
        unknown generation, or a `since` past the newest, starts over from 0 (`Full`)."""
        exports = await self._state(peering)
        head, names = exports.head, exports.names  # one snapshot: a save during the awaits below moves neither
        listed_at = exports.marks[LIST].seq if LIST in exports.marks else 0
        full = generation != exports.generation or since > head
        if full:
            since = 0
        changed = sorted((m for m in exports.marks.values() if m.name != LIST and m.seq > since), key=lambda m: m.seq)
        upserts: list[ExportedService] = []
        size, cursor, more = 0, since, False
        for mark in changed:
            found = await self.payload(peering.partition, mark.name)
            if found.size > MAX_SERVICE_BYTES:  # no peer would take it: said once per change, never sent
                log.warning(
                    "service %s is too large to export (%d bytes, the limit is %d)", mark.name[:64], found.size,
                    MAX_SERVICE_BYTES, extra={"peer_name": peering.name, "partition": peering.partition},
                )  # fmt: skip
                cursor = mark.seq
                continue
            if upserts and (size + found.size > self.budget or len(upserts) >= MAX_PAGE_SERVICES):
                more = True
                break
            upserts.append(found.service)
            size += found.size
            cursor = mark.seq
        if not more:
            cursor = head
        # the list goes with the last page when it changed after `since` (or from the start): the importer has it
        listed = names if not more and (full or listed_at > since) else None
        return ExportPage(
            Generation=exports.generation, Seq=cursor, Head=head, Full=full, More=more, Services=listed, Upserts=upserts
        )

    async def wait(self, peering: Peering, generation: str, since: int, within: float) -> None:
        """Return once the peering's exports moved past `since` of `generation`, `within` s passed, or the
        process is shutting down."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not self._cluster.notifier.closed:
            bumped = self._bumped
            exports = await self._state(peering)
            if exports.generation != generation or exports.head != since:
                return
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            try:  # in chunks: a shutdown (the notifier closed) ends the wait within half a second
                async with asyncio.timeout(min(0.5, remaining)):
                    await bumped.wait()
            except TimeoutError:
                pass
