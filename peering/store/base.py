"""The storage seam: the one place a reader finds what every backend implements (SPEC §12, §15).

A `Database` (`Store` is the older name of the same protocol) serves reads and opens units of work
(`transaction()`): one `UnitOfWork` (`Transaction`) is one database transaction over every kind of
data it holds: peerings, their secrets, ACL policies and tokens (and, later, catalog and config
entries; their protocols are in `store/catalog_seam.py`, re-exported here). Implementations: `store/sqlite.py` (the embedded default) and `store/postgres/` (several
replicas); `store/cached.py` is an in-memory view in front of either.

Rules every implementation keeps:
- one index counter per database: a unit of work takes the next value on its first write (lazily;
  a unit that only reads takes none) and every row it writes carries it, whatever the kind;
- uniqueness (name per partition, one live peering per remote cluster, one-time secrets, ACL
  policy names and token secrets) is enforced by the database itself (unique and partial unique
  indexes, conditional updates), never by read-then-write checks in Python;
- a constraint that refuses a write raises a typed `ConstraintError` (`NameTakenError`,
  `RemoteClusterTakenError`, `SecretAlreadyUsedError`, `RowMissingError`, in `peering/errors.py`)
  carrying the facts; the service words the user's message (the store never does);
- what goes in and out are domain objects; no SQL or driver type leaves the implementation.

Isolation contract (what callers may rely on, on both backends):
- units of work are serialised: SQLite has one writer connection (units of one group commit are
  savepoints of one transaction, in index order); PostgreSQL's units lock the counter row from
  their BEGIN to their COMMIT (READ COMMITTED), so at most one unit of the whole cluster runs at a
  time, across every replica;
- hence a read inside a unit sees every committed unit before it and nothing can change it until
  the unit commits: a read-then-write inside ONE unit (e.g. compare a row's `modify_index` with the
  one read earlier, then save) is exact. A read outside the unit, followed by a write in a unit, is
  not: re-read inside the unit (compare-and-set) before relying on it;
- index order is commit order; a unit returns only after its COMMIT is durable, and an exception
  out of it means nothing of it is acknowledged;
- a read outside a unit sees committed data only; each read method is one snapshot (a list and
  its index come from the same one); two separate reads may see different snapshots;
- the change feed (`changes_since`) is written in the same units of work: a page shows exactly the
  units committed up to its `index`, so a reader that applies pages in order never misses one
  (unless it falls behind the `horizon`, and then it reloads in full);
- a fenced unit (`UnitOfWork.fence`) writes only while its lease holds (PostgreSQL; no-op on SQLite,
  where this process always holds it).
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Protocol

from peering.acl_model import AclToken, Policy
from peering.domain import Peering
from peering.store.catalog_seam import (
    CatalogReads,
    CatalogWrites,
    ConfigReads,
    ConfigWrites,
    ExportMark,
    ImportState,
    ReplicationReads,
    ReplicationWrites,
)

__all__ = ["CatalogReads", "CatalogWrites", "ConfigReads", "ConfigWrites", "ExportMark", "ImportState"]
__all__ += ["ReplicationReads", "ReplicationWrites"]


@dataclass(frozen=True)
class Secrets:
    """Secrets of one peering. Hashes where the holder never presents them again (SPEC §6)."""

    establishment_hash: str | None = field(default=None, repr=False)  # acceptor: the unused token's secret
    stream_hash: str | None = field(default=None, repr=False)  # acceptor: the dialer's stream secret
    stream_secret: str | None = field(default=None, repr=False)  # dialer: presented on every heartbeat


@dataclass(frozen=True)
class Change:
    """One entry of the change feed: the row `key` of `kind` was written (or, `deleted`, removed) at `index`."""

    index: int
    kind: str  # "peering", "acl_policy", "acl_token", "catalog", "config_entry"
    key: str  # the row's ID (a token's AccessorID); "catalog": "<partition>/<peer_name>/<service name>" for every
    #          service name whose health view the unit changed (a node or node-check write: every service on the
    #          node); "config_entry": "<kind>/<name>"
    deleted: bool = False


class Changes(NamedTuple):
    """A page of the change feed, read in one snapshot."""

    changes: list[Change]  # in index order; every change of each unit it holds (a unit is never split)
    upto: int  # read up to here: pass it as the next `since` (the current index unless the page was cut)
    horizon: int  # feed entries at or below it may have been reaped: a reader whose `since` is below it
    #             missed some and must reload in full


@dataclass(frozen=True)
class Fence:
    """A lease as its holder took it: a unit of work fenced with it writes only while it still holds."""

    lease: str  # the lease's name, e.g. "background"
    holder: str  # the replica that took it
    epoch: int  # bumped on every change of holder


class AclReads(Protocol):
    """ACL reads of a database (`Database.acl`), outside any unit of work."""

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        """Every policy sorted by name (bytes), or only those with these IDs."""

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        """One policy by ID or by (exact) name."""

    async def tokens(self) -> list[AclToken]:
        """Every token, oldest first."""

    async def token(self, accessor_id: str) -> AclToken | None:
        """One token by AccessorID."""

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        """The token whose secret hashes to `secret_hash`."""


class AclWrites(Protocol):
    """ACL writes inside one unit of work (`UnitOfWork.acl`): the unit's index, the unit's transaction."""

    async def save_policy(self, policy: Policy, *, update: bool = False) -> Policy:
        """Insert or update a policy (`update`: only an existing one); returns it with its indexes set.

        Raises:
            NameTakenError: another policy has this name.
            RowMissingError: `update`, and the policy is gone (deleted since the caller read it).
        """

    async def delete_policy(self, policy_id: str) -> bool:
        """Delete a policy (tokens lose the link); False (and no index taken) if there was none."""

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        """Insert a new token (with its secret's hash) or, without a hash, update an existing one.

        Raises:
            SecretAlreadyUsedError: the secret or the AccessorID is already in use by another token.
            RowMissingError: an update (no hash) of a token that does not exist.
        """

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        """Insert the bootstrap token, unless a bootstrap was done before (then None)."""

    async def delete_token(self, accessor_id: str) -> bool:
        """Delete a token; False (and no index taken) if there was none."""


class Transaction(Protocol):
    """One unit of work (see the module docstring): commits on a clean exit, rolls back on an exception."""

    @property
    def acl(self) -> AclWrites:
        """The ACL repository's writes in this unit."""

    @property
    def catalog(self) -> CatalogWrites:
        """The catalog's writes in this unit."""

    @property
    def config(self) -> ConfigWrites:
        """Config entry writes in this unit."""

    @property
    def replication(self) -> ReplicationWrites:
        """Replication bookkeeping in this unit."""

    async def fence(self, fence: Fence) -> None:
        """Refuse this unit unless `fence` still holds its lease (PostgreSQL: checked and locked in the
        database until the commit; SQLite: nothing to check, one process).

        Raises:
            LeaseLostError: the lease expired or another replica took it.
        """

    @property
    def index(self) -> int:
        """The index this transaction's writes carry (taken from the counter on first use)."""

    @property
    def wrote(self) -> bool:
        """Whether anything was written (so whether the commit is news)."""

    async def get(self, partition: str, name: str) -> Peering | None:
        """The peering named `name` (compared lower-cased) in `partition`."""

    async def get_by_id(self, peering_id: str) -> Peering | None:
        """The peering with this local ID."""

    async def save(self, peering: Peering) -> Peering:
        """Insert or update; returns it with `create_index`/`modify_index` set to this transaction's index.

        Raises:
            NameTakenError: another peering of the partition has this name (compared lower-cased).
            RemoteClusterTakenError: another live peering of the partition holds this remote cluster.
        """

    async def remove(self, peering_id: str) -> None:
        """Remove the record and its secrets for good."""

    async def secrets(self, peering_id: str) -> Secrets:
        """The secrets stored for a peering (empty if none)."""

    async def set_secrets(self, peering_id: str, secrets: Secrets) -> None:
        """Replace the secrets of a peering."""

    async def set_establishment_hash(self, peering_id: str, secret_hash: str | None) -> None:
        """Replace only the establishment secret's hash (None: no token is valid)."""

    async def set_stream_hash(self, peering_id: str, secret_hash: str) -> None:
        """Replace only the stream secret's hash."""

    async def consume_establishment_secret(self, peering_id: str, secret_hash: str) -> bool:
        """Atomically clear the establishment secret if it equals `secret_hash`; False if it did not."""

    async def schedule_removal(self, peering_id: str, at: datetime) -> None:
        """Mark a deleted peering for removal at `at`."""


class Store(Protocol):
    """Durable peerings of one cluster."""

    def transaction(self) -> AbstractAsyncContextManager[Transaction]:
        """Open a unit of work (units are serialised: see the module docstring)."""

    async def save_acceptor(self, peering: Peering, secret_hash: str, *, expected: Peering | None) -> Peering | None:
        """A unit of work of its own: save `peering` (the acceptor side of a token generation) with the new
        establishment secret's hash, provided the partition's peering of that name is still `expected`
        (same ID and `modify_index`; None: there is none). None, with nothing written, when it is not (the
        caller planned from a view that was behind: it re-reads inside a unit). One statement on PostgreSQL.

        Raises:
            NameTakenError, RemoteClusterTakenError: as `Transaction.save` (nothing written).
        """

    @property
    def acl(self) -> AclReads:
        """The ACL repository's reads."""

    @property
    def catalog(self) -> CatalogReads:
        """The catalog's reads."""

    @property
    def config(self) -> ConfigReads:
        """Config entry reads."""

    @property
    def replication(self) -> ReplicationReads:
        """Replication bookkeeping reads."""

    async def get(self, partition: str, name: str) -> Peering | None:
        """Read one peering by name (compared lower-cased)."""

    async def get_by_id(self, peering_id: str) -> Peering | None:
        """Read one peering by local ID."""

    async def list_peerings(self, partition: str) -> tuple[list[Peering], int]:
        """Every peering of a partition sorted by name, and the partition's index, from one snapshot."""

    async def partition_index(self, partition: str) -> int:
        """The index of the last write that touched the partition (at least 1)."""

    async def current_index(self) -> int:
        """The index of the last committed write of the cluster (at least 1)."""

    async def due_removals(self, now: datetime) -> list[Peering]:
        """Deleted peerings whose removal time has come."""

    async def awaiting_notice(self, now: datetime) -> list[Peering]:
        """Deleted peerings still in their grace period: their peer has not been told yet."""

    async def every_peering(self) -> list[Peering]:
        """Every peering of every partition (for metrics), sorted by partition and name."""

    async def live_links(self) -> list[Peering]:
        """Peerings, in every partition, that have a peer and are not terminated or deleted."""

    async def terminated(self) -> list[Peering]:
        """Peerings, in every partition, in state `TERMINATED` (deleted ones too, until removed), in no order."""

    async def secrets(self, peering_id: str) -> Secrets:
        """The secrets of a peering (empty if none), read outside a transaction."""

    async def changes_since(self, since: int, limit: int = 1000) -> Changes:
        """The change feed after index `since` (at most about `limit` entries, whole units), in one snapshot.

        Every unit of work records one entry per row it wrote, in the same transaction; a removed row
        leaves a tombstone (`deleted=True`). Secrets are not in the feed (nobody caches them).
        """

    async def reap_changes(self, before_index: int) -> int:
        """Drop feed entries below `before_index` (the background owner's job) and raise the horizon to
        match; takes no index. Returns how many entries went."""


Database = Store  # the name of the whole seam; `Store` stays while callers move
UnitOfWork = Transaction


class AclStore(Protocol):
    """Durable ACL policies and tokens of one cluster (token secrets only as SHA-256 hashes), as the ACL
    service sees them: `store/acl.py: DatabaseAcl` implements it over any `Database`, one unit per write."""

    async def policies(self, ids: list[str] | None = None) -> list[Policy]:
        """Every policy sorted by name, or only those with these IDs."""

    async def policy(self, *, id: str | None = None, name: str | None = None) -> Policy | None:
        """One policy by ID or by name."""

    async def save_policy(self, policy: Policy, *, update: bool = False) -> Policy:
        """Insert or update a policy (`update`: only an existing one); returns it with its indexes set.

        Raises:
            NameTakenError: another policy has this name.
            RowMissingError: `update`, and the policy is gone.
        """

    async def delete_policy(self, policy_id: str) -> bool:
        """Delete a policy (tokens lose the link); False if there was none."""

    async def tokens(self) -> list[AclToken]:
        """Every token, oldest first."""

    async def token(self, accessor_id: str) -> AclToken | None:
        """One token by AccessorID."""

    async def token_by_secret(self, secret_hash: str) -> AclToken | None:
        """The token whose secret hashes to `secret_hash`."""

    async def save_token(self, token: AclToken, secret_hash: str | None = None) -> AclToken:
        """Insert a new token (with its secret's hash) or, without a hash, update an existing one.

        Raises:
            SecretAlreadyUsedError: the secret or the AccessorID is already in use by another token.
            RowMissingError: an update (no hash) of a token that does not exist.
        """

    async def bootstrap(self, token: AclToken, secret_hash: str) -> AclToken | None:
        """Insert the bootstrap token, unless a bootstrap was done before (then None)."""

    async def delete_token(self, accessor_id: str) -> bool:
        """Delete a token; False if there was none."""
