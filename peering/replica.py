"""This process as one replica of a cluster (SPEC §12, §15): what differs between the backends, wired once.

With SQLite the process is the whole cluster: an in-process notifier, leadership always held, and the
identity of the data dir. With PostgreSQL (`Database.postgres_url`), `joined` makes it one of N replicas:
- the identity is the database's (the first replica's CA and cluster ID, `store/postgres/identity.py`);
  the data dir receives a copy and this replica signs its own server certificate with that CA;
- blocking queries wake on every replica's writes (`store/postgres/notify.py`);
- background work runs under the database lease (`store/postgres/lease.py`);
- the registry (`store/postgres/replicas.py`) keeps `addresses` to every live replica's peering
  address, which goes into tokens and `/v1/status/peers`;
- `share_liveness` shares the link tracker, so a heartbeat any replica received counts on all
  (`store/postgres/liveness.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from peering.errors import DatabaseUnavailableError
from peering.identity import ClusterIdentity, install_shared, load_or_create, shared_parts
from peering.leadership import Leadership, SoleLeadership
from peering.notifier import LocalNotifier, Notifier
from peering.settings import Settings
from peering.store.base import Fence
from peering.store.open import Database, redacted

if TYPE_CHECKING:  # PostgreSQL's parts are imported only when a replica uses them (asyncpg is ~5 MB of RSS)
    from peering.store.postgres.lease import PostgresLeadership
    from peering.store.postgres.liveness import Tracker

log = logging.getLogger("peering.replicas")


@dataclass
class Replica:
    """The backend-dependent parts of a running cluster process."""

    notifier: Notifier
    leadership: Leadership
    identity: ClusterIdentity
    addresses: tuple[str, ...]  # peering addresses of every live replica (this one's alone with SQLite)
    replica_id: str = ""
    on_addresses: list[Callable[[tuple[str, ...]], None]] = field(default_factory=list)
    dsn: str | None = field(default=None, repr=False)
    lease: PostgresLeadership | None = field(default=None, repr=False)  # `leadership`, with PostgreSQL
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # cancelled when `joined` ends

    def share_liveness(self, tracker: Tracker, every: float) -> None:
        """Share the link tracker with the other replicas every `every` s (nothing to share with SQLite)."""
        if self.dsn is not None:
            from peering.store.postgres.liveness import SharedLiveness

            shared = SharedLiveness(self.dsn, tracker, every=every)
            self.tasks.append(asyncio.create_task(shared.run(), name="liveness"))

    def fence(self) -> Callable[[], Fence] | None:
        """What fences the background owner's writes: the lease with PostgreSQL, nothing with SQLite."""
        return self.lease.fence if self.lease is not None else None

    async def leader_address(self) -> str:
        """The peering address of the replica running the background work ("" while none does)."""
        if self.lease is not None:
            return await self.lease.owner_address()
        return self.addresses[0]

    def _changed(self, addresses: tuple[str, ...]) -> None:
        self.addresses = addresses
        for listener in self.on_addresses:
            listener(addresses)


@asynccontextmanager
async def joined(
    database: Database, settings: Settings, identity: ClusterIdentity, address: str
) -> AsyncIterator[Replica]:
    """The replica parts for `database` (see the module docstring), stopped on exit.

    Raises:
        RuntimeError: PostgreSQL cannot be reached at start (named without the password).
    """
    dsn = database.postgres_url
    if dsn is None:
        notifier = LocalNotifier()
        yield Replica(notifier, SoleLeadership(), identity, (address,))
        return
    from peering.store.postgres.cluster_schema import connect, create_tables
    from peering.store.postgres.identity import SharedIdentity, adopt
    from peering.store.postgres.lease import PostgresLeadership
    from peering.store.postgres.notify import PostgresNotifier
    from peering.store.postgres.replicas import ReplicaRegistry

    try:
        conn = await connect(dsn, 5.0)
        try:
            await create_tables(conn)
            shared = await adopt(conn, SharedIdentity(*shared_parts(settings.data_dir)))
        finally:
            await conn.close()
    except DatabaseUnavailableError as exc:
        raise RuntimeError(f"the database {redacted(dsn)} cannot be reached") from exc
    if install_shared(settings.data_dir, shared.cluster_id, shared.ca_pem, shared.ca_key_pem):
        identity = load_or_create(settings.data_dir, settings.datacenter)
    replica_id = str(uuid.uuid4())
    pg_notifier = PostgresNotifier(dsn)
    leadership = PostgresLeadership(dsn, replica_id, address, ttl=settings.lease_ttl)
    replica = Replica(pg_notifier, leadership, identity, (address,), replica_id, dsn=dsn, lease=leadership)
    registry = ReplicaRegistry(dsn, replica_id, address, replica._changed, beat=min(2.0, settings.lease_ttl / 3))
    with contextlib.suppress(Exception):
        await registry.beat_once()  # tokens made right after the start already list the others
    pg_notifier.start()
    replica.tasks.append(asyncio.create_task(registry.run(), name="replica-registry"))
    log.info("joined the cluster as a replica", extra={"replica_id": replica_id, "replicas": len(replica.addresses)})
    try:
        yield replica
    finally:
        for task in replica.tasks:
            task.cancel()
        await asyncio.gather(*replica.tasks, return_exceptions=True)
        await pg_notifier.aclose()
        await leadership.aclose()  # the connection a leader read opened (`hold` is over by now)
