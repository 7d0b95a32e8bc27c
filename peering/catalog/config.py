"""Config entries (SPEC §14): apply, read, list and delete `exported-services` entries, and what they export.

The operations behind `/v1/config…`, `/v1/exported-services` and `/v1/imported-services`. It never imports
the web framework; routes parse, call one method and render. Consul's order is kept: the kind is checked
first, then the entry is decoded and validated, then the caller's `mesh` permission (which falls back to
`operator`), then the store is asked.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from peering.acl_model import ALLOW_ALL, Access, Level
from peering.catalog import exports
from peering.catalog.model import ConfigEntry
from peering.cluster import Cluster
from peering.errors import InvalidRequestError, NotFoundError, PermissionDeniedError
from peering.rules import normalize_partition
from peering.store.cached import CachedStore

MAX_WAIT = 600.0  # seconds: the longest blocking query (SPEC §3)

T = TypeVar("T")


class ConfigEntryNotFoundError(NotFoundError):
    """No config entry of that kind has that name (404)."""

    code = "config_entry_not_found"

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f'Config entry not found for "{kind}" / "{_shown(name)}"')


def _shown(text: str) -> str:
    capped = text if len(text) <= 256 else text[:256] + "..."
    return capped if capped.isprintable() else "".join(c if c.isprintable() else f"\\u{ord(c):04x}" for c in capped)


def _kind(kind: str) -> str:
    if kind != exports.KIND:
        raise exports.invalid_kind(kind)
    return kind


def _partition_named(name: str) -> str | None:
    """The partition an entry's name stands for (None: no entry can have it, it is not a partition name)."""
    if not name:
        return None
    try:
        return normalize_partition(name)
    except InvalidRequestError:
        return None


async def blocking(
    cluster: Cluster, snapshot: Callable[[], Awaitable[tuple[T, int]]], min_index: int, wait: float
) -> tuple[T, int]:
    """Answer at once, or, for a blocking query (`min_index` > 0), once the snapshot's index passes
    `min_index`, the wait ends or the notifier closes (shutdown: answer with what there is)."""
    notifier, loop = cluster.notifier, asyncio.get_running_loop()
    deadline = loop.time() + min(wait, MAX_WAIT)
    watch = notifier.watch()  # taken before reading, so no write slips between
    result = await snapshot()
    if min_index <= 0 or result[1] > min_index or wait <= 0 or notifier.closed:
        return result
    with cluster.metrics.blocking_query():
        while await watch.wait(deadline - loop.time()) and not notifier.closed:
            watch = notifier.watch()
            result = await snapshot()
            if result[1] > min_index:
                return result
        return await snapshot()


class ConfigService:
    """The `exported-services` entries of one cluster (one per partition, named after it)."""

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self._store = cluster.store

    async def apply(self, data: object, *, cas: int | None = None, access: Access = ALLOW_ALL) -> bool:
        """Create or replace the entry a JSON body (already parsed) describes; `cas`: only if absent (`0`) or
        if its `ModifyIndex` is `cas`. Returns whether it was written (a lost compare-and-set is `False`).

        Raises:
            InvalidRequestError: Consul's decoding or validation text (`exports.parse`).
            PermissionDeniedError: the caller lacks `mesh:write`.
        """
        entry = exports.parse(data)
        await access.require("mesh", Level.WRITE)
        async with self._cluster.write() as tx:
            saved = await tx.config.save_config_entry(exports.to_config(entry), cas)
        return saved is not None

    async def get(
        self,
        kind: str,
        name: str,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> tuple[ConfigEntry, int]:
        """One entry and the kind's index (what `X-Consul-Index` shows and a blocking query waits on, as in
        Consul); with `min_index`, first wait (up to `wait` s) for that index to pass it.

        Raises:
            InvalidRequestError: `invalid config entry kind: <kind>`.
            PermissionDeniedError: the caller lacks `mesh:read`.
            ConfigEntryNotFoundError: no such entry (after the wait).
        """
        _kind(kind)
        await access.require("mesh", Level.READ)
        await self._catch_up(consistent)
        partition = _partition_named(name)

        async def snapshot() -> tuple[ConfigEntry | None, int]:
            # a name that is no partition names no entry (and "" is never stored): only the kind's index counts
            return await self._store.config.config_entry(kind, partition or "")

        found, index = await blocking(self._cluster, snapshot, min_index, wait)
        if found is None:
            raise ConfigEntryNotFoundError(kind, name)
        return found, index

    async def list_entries(
        self,
        kind: str,
        partition: str | None = None,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> tuple[list[ConfigEntry], int]:
        """Every entry of `kind` sorted by name (only the one of `partition`, when given: an entry's name is its
        partition), and the index to block on next. Entries the caller may not read are left out, as Consul
        does (with one `mesh` rule for all of them: all or none).

        Raises:
            InvalidRequestError: `invalid config entry kind: <kind>`, or a bad partition name.
            PermissionDeniedError: the caller's token is unknown or expired (`ACL not found`), or may not be
                used from its address.
        """
        _kind(kind)
        only = normalize_partition(partition) if partition else None
        readable = await self._may_read(access)
        await self._catch_up(consistent)
        entries, index = await blocking(self._cluster, lambda: self._store.config.config_entries(kind), min_index, wait)
        return [e for e in entries if readable and only in (None, e.name)], index

    async def delete(self, kind: str, name: str, *, cas: int | None = None, access: Access = ALLOW_ALL) -> bool:
        """Delete an entry (a missing one is fine); `cas`: only if its `ModifyIndex` is `cas` (`0` never
        deletes). Returns whether it was deleted.

        Raises:
            InvalidRequestError: `invalid config entry kind: <kind>`.
            PermissionDeniedError: the caller lacks `mesh:write`.
        """
        _kind(kind)
        await access.require("mesh", Level.WRITE)
        partition = _partition_named(name)
        if partition is None:
            return False
        async with self._cluster.write() as tx:
            return await tx.config.delete_config_entry(kind, partition, cas)

    async def exported_services(
        self,
        partition: str | None,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> tuple[list[tuple[str, list[str]]], int]:
        """What the partition's entry exports, resolved (`exports.resolve`: `*` expanded to the local services
        with instances, never `consul`, sorted), and the index to block on (the entry's or the catalog's).

        Raises:
            InvalidRequestError: bad partition name.
            PermissionDeniedError: the caller lacks `mesh:read`.
        """
        part = normalize_partition(partition)
        await access.require("mesh", Level.READ)
        await self._catch_up(consistent)

        async def snapshot() -> tuple[list[tuple[str, list[str]]], int]:
            entry, entry_index = await self._store.config.config_entry(exports.KIND, part)
            names, catalog_index = await self._store.catalog.service_names(part, "")
            return exports.resolve(entry, names), max(entry_index, catalog_index)

        return await blocking(self._cluster, snapshot, min_index, wait)

    async def imported_services(
        self,
        partition: str | None,
        *,
        min_index: int = 0,
        wait: float = 0.0,
        consistent: bool = False,
        access: Access = ALLOW_ALL,
    ) -> tuple[list[tuple[str, str]], int]:
        """Every `(service, source peer)` imported into the partition, from each peering's persisted list of
        imported names, sorted by service then peer, and the partition's index.

        Raises:
            InvalidRequestError: bad partition name.
            PermissionDeniedError: the caller lacks `mesh:read`.
        """
        part = normalize_partition(partition)
        await access.require("mesh", Level.READ)
        await self._catch_up(consistent)

        async def snapshot() -> tuple[list[tuple[str, str]], int]:
            peerings, index = await self._store.list_peerings(part)
            pairs = {(service, p.name) for p in peerings for service in p.imported_services}
            return sorted(pairs), index

        return await blocking(self._cluster, snapshot, min_index, wait)

    async def _may_read(self, access: Access) -> bool:
        """Whether the caller has `mesh:read`; a token that does not resolve still raises (`ACL not found`)."""
        await access.allowed_named("service", "", Level.READ)  # resolves the token: raises if it does not
        try:
            await access.require("mesh", Level.READ)
        except PermissionDeniedError:
            return False
        return True

    async def _catch_up(self, consistent: bool) -> None:
        """`?consistent`: bring the in-memory view (if any) up to the database's last commit first (SPEC §15)."""
        if consistent and isinstance(self._store, CachedStore):
            await self._store.catch_up()
