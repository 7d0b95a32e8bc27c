"""The storage seam's catalog part (SPEC §13, §14): catalog rows, config entries and replication bookkeeping.

Re-exported by `store/base.py`, whose module docstring gives the rules every implementation keeps
(one index counter, typed constraint errors, the isolation contract, the change feed).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from peering.catalog.model import Check, ConfigEntry, Health, Node, ServiceHealth, ServiceInstance


class CatalogReads(Protocol):
    """Catalog reads (`Database.catalog`), outside any unit of work (SPEC §13).

    Every read is one snapshot and returns, with its rows, the scope's index: the index of the last unit
    that wrote (or deleted) a catalog row of that `(partition, peer_name)` (at least 1). `peer_name == ""`
    reads local rows, any other value the rows imported through that peering; the two never mix.
    Lists are sorted: nodes by name, instances by (node, service ID), checks by (node, check ID).
    """

    async def nodes(self, partition: str, peer_name: str) -> tuple[list[Node], int]:
        """Every node of the scope."""

    async def node(self, partition: str, peer_name: str, node: str) -> tuple[Node | None, list[ServiceInstance], int]:
        """One node (None if unknown) and its service instances."""

    async def service_names(self, partition: str, peer_name: str) -> tuple[dict[str, list[str]], int]:
        """Every service name of the scope with the sorted union of its instances' tags."""

    async def service_health(self, partition: str, peer_name: str, name: str) -> tuple[list[ServiceHealth], int]:
        """Every instance of service `name` with its node and checks (the node's checks, then its own)."""

    async def checks(
        self,
        partition: str,
        peer_name: str,
        *,
        node: str | None = None,
        service_name: str | None = None,
        status: Health | None = None,
    ) -> tuple[list[Check], int]:
        """Checks of the scope, optionally only those of one node, of one service's instances, or in one status."""

    async def due_checks(self, now: datetime) -> list[Check]:
        """Local TTL checks (every partition) whose deadline is at or before `now` and that are not critical."""

    async def next_deadline(self) -> datetime | None:
        """The earliest deadline of a local TTL check that is not critical (None: none to wait for)."""


class CatalogWrites(Protocol):
    """Catalog writes inside one unit of work (`UnitOfWork.catalog`).

    A save replaces the row with the same key ((partition, peer_name, node), + service ID, + check ID) or
    inserts it; a save whose fields (indexes aside) equal the stored row writes nothing, takes no index and
    returns the stored row, so that re-applying the same data changes nothing. Every write records, in the
    change feed, a "catalog" change per service name whose health view it changes (once per unit; `deleted`
    when it was a deletion).
    """

    async def save_node(self, node: Node) -> Node:
        """Insert or update a node; returns it with its indexes."""

    async def save_service(self, instance: ServiceInstance) -> ServiceInstance:
        """Insert or update an instance on an existing node.

        Raises:
            RowMissingError: the node does not exist.
        """

    async def save_check(self, check: Check) -> Check:
        """Insert or update a check on an existing node (and instance, when `service_id` is set).

        Raises:
            RowMissingError: the node, or the instance named by `service_id`, does not exist.
        """

    async def delete_node(self, partition: str, peer_name: str, node: str) -> bool:
        """Delete a node with its instances and checks; False (no index taken) if there was none."""

    async def delete_service(self, partition: str, peer_name: str, node: str, service_id: str) -> bool:
        """Delete an instance with its checks; False (no index taken) if there was none."""

    async def delete_check(self, partition: str, peer_name: str, node: str, check_id: str) -> bool:
        """Delete a check; False (no index taken) if there was none."""

    async def delete_peer(self, partition: str, peer_name: str, limit: int) -> int:
        """Delete at most `limit` nodes imported through `peer_name` (with their instances and checks);
        returns how many went (0: nothing of that peer is left). `peer_name` must not be empty."""

    async def node(self, partition: str, peer_name: str, node: str) -> Node | None:
        """One node, as this unit sees it."""

    async def node_services(self, partition: str, peer_name: str, node: str) -> list[ServiceInstance]:
        """The instances on one node, as this unit sees them."""

    async def check(self, partition: str, peer_name: str, node: str, check_id: str) -> Check | None:
        """One check, as this unit sees it."""

    async def service_health(self, partition: str, peer_name: str, name: str) -> list[ServiceHealth]:
        """As `CatalogReads.service_health`, as this unit sees it."""


class ConfigReads(Protocol):
    """Config entries (`Database.config`), outside any unit of work (SPEC §14)."""

    async def config_entry(self, kind: str, name: str) -> tuple[ConfigEntry | None, int]:
        """One entry (None if absent) and the index of the last write to entries of `kind` (at least 1)."""

    async def config_entries(self, kind: str) -> tuple[list[ConfigEntry], int]:
        """Every entry of `kind` sorted by name, and the same index."""


class ConfigWrites(Protocol):
    """Config entry writes inside one unit of work (`UnitOfWork.config`); each records a "config_entry" change."""

    async def config_entry(self, kind: str, name: str) -> ConfigEntry | None:
        """One entry, as this unit sees it."""

    async def save_config_entry(self, entry: ConfigEntry, cas: int | None = None) -> ConfigEntry | None:
        """Insert or replace an entry; returns it with its indexes, or None (nothing written) when `cas` is
        given and does not hold: `0` = only if absent, `n` = only if the stored `modify_index` is `n`. A body
        equal to the stored one writes nothing, takes no index and returns the stored entry."""

    async def delete_config_entry(self, kind: str, name: str, cas: int | None = None) -> bool:
        """Delete an entry; False (nothing written) when it is absent or `cas` does not match its `modify_index`
        (`cas == 0` never deletes)."""


@dataclass(frozen=True)
class ExportMark:
    """What the exporter last computed for one name it sends a peer (SPEC §14 replication)."""

    name: str  # a service name; "" = the list of exported names itself
    hash: str  # of the payload as sent
    seq: int  # the peering's sequence number when this payload last changed


@dataclass(frozen=True)
class ImportState:
    """How far the importer got with one peer's exports: the exporter's `generation` and the `seq` applied."""

    peering_id: str
    generation: str
    applied_seq: int


class ReplicationReads(Protocol):
    """Replication bookkeeping (`Database.replication`), outside any unit of work. Not in the change feed,
    takes no index: it is this side's own memory of the stream, kept so that a restart resumes."""

    async def export_marks(self, peering_id: str) -> tuple[str, list[ExportMark]]:
        """The exporter's generation for this peering ("" if none yet) and its marks, sorted by name."""

    async def import_state(self, peering_id: str) -> ImportState | None:
        """What was applied from this peering's exporter (None: nothing yet)."""


class ReplicationWrites(Protocol):
    """Replication bookkeeping inside one unit of work (`UnitOfWork.replication`)."""

    async def export_marks(self, peering_id: str) -> tuple[str, list[ExportMark]]:
        """As `ReplicationReads.export_marks`, as this unit sees it."""

    async def save_export_marks(
        self, peering_id: str, generation: str, marks: list[ExportMark], dropped: list[str]
    ) -> None:
        """Set the generation, insert or replace these marks and delete the `dropped` names' marks."""

    async def import_state(self, peering_id: str) -> ImportState | None:
        """As `ReplicationReads.import_state`, as this unit sees it."""

    async def save_import_state(self, state: ImportState) -> None:
        """Insert or replace the import state of `state.peering_id`."""

    async def forget(self, peering_id: str) -> None:
        """Drop every mark and the import state of a peering (it is being deleted or was terminated)."""
