"""The catalog's writes (`CatalogWrites`) in SQL both backends speak: see `store/catalog_sql.py` (the reads,
the `Sql` binding and the feed rules)."""

# ruff: noqa: S608 -- only constant column lists and clauses are interpolated; every value is bound

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace
from datetime import datetime
from typing import Any

from peering.catalog.model import Check, Health, Node, ServiceHealth, ServiceInstance
from peering.errors import RowMissingError
from peering.store.catalog_rows import (
    CHECK_COLUMNS,
    NODE_COLUMNS,
    SERVICE_COLUMNS,
    check_from,
    check_row,
    marks,
    node_from,
    node_row,
    service_from,
    service_row,
)
from peering.store.catalog_sql import SCOPE, Bump, Sql, get_check, get_node, get_service, node_services, service_health


def _as_time(moment: datetime) -> Any:
    return moment


def _unindexed(row: Node | ServiceInstance | Check) -> Node | ServiceInstance | Check:
    """The row as stored would read it back (maps as dicts, tuples, aware times), indexes zeroed."""
    if isinstance(row, Node):
        return replace(node_from(node_row(row)), create_index=0, modify_index=0)
    if isinstance(row, ServiceInstance):
        return replace(service_from(service_row(row)), create_index=0, modify_index=0)
    return replace(check_from(check_row(row, _as_time)), create_index=0, modify_index=0)


def same(stored: Node | ServiceInstance | Check | None, new: Node | ServiceInstance | Check) -> bool:
    """Whether saving `new` over `stored` would change nothing but indexes."""
    return stored is not None and _unindexed(stored) == _unindexed(new)


class CatalogSqlWrites:
    """`CatalogWrites` on one unit of work's connection (`db`), taking its index through `bump`."""

    def __init__(self, db: Sql, bump: Bump) -> None:
        self._db = db
        self._bump = bump
        self._noted: set[tuple[str, bool]] = set()  # feed entries this unit wrote (key, deleted)
        self._scopes: set[tuple[str, str]] = set()  # scopes whose index this unit set

    async def _touch(self, partition: str, peer_name: str, names: Iterable[str], *, deleted: bool = False) -> None:
        """Move the scope's index to this unit's, and note each service name in the feed (once per unit)."""
        index = await self._bump()
        if (partition, peer_name) not in self._scopes:
            await self._db.rows(
                "INSERT INTO catalog_scopes (partition, peer_name, modify_index) VALUES (?, ?, ?) "
                "ON CONFLICT (partition, peer_name) DO UPDATE SET modify_index = excluded.modify_index",
                (partition, peer_name, index),
            )
            self._scopes.add((partition, peer_name))
        for name in sorted(set(names)):
            key = f"{partition}/{peer_name}/{name}"
            if (key, deleted) not in self._noted:
                await self._db.rows(
                    "INSERT INTO changes (idx, kind, key, deleted) VALUES (?, 'catalog', ?, ?)", (index, key, deleted)
                )
                self._noted.add((key, deleted))

    async def _names_on(self, partition: str, peer_name: str, node: str) -> list[str]:
        rows = await self._db.rows(
            f"SELECT DISTINCT service FROM catalog_services WHERE {SCOPE} AND node = ?", (partition, peer_name, node)
        )
        return [row[0] for row in rows]

    async def _check_names(self, check: Check) -> list[str]:
        """The service names whose health view a check is part of (a node check: every service on the node)."""
        if not check.service_id:
            return await self._names_on(check.partition, check.peer_name, check.node)
        instance = await get_service(self._db, check.partition, check.peer_name, check.node, check.service_id)
        return [instance.service] if instance is not None else []

    async def save_node(self, node: Node) -> Node:
        stored = await get_node(self._db, node.partition, node.peer_name, node.node)
        if stored is not None and same(stored, node):
            return stored
        index = await self._bump()
        saved = replace(node, create_index=stored.create_index if stored else index, modify_index=index)
        await self._db.rows(
            f"INSERT INTO catalog_nodes ({NODE_COLUMNS}) VALUES ({marks(NODE_COLUMNS)}) "
            "ON CONFLICT (partition, peer_name, node) DO UPDATE SET address = excluded.address, id = excluded.id, "
            "datacenter = excluded.datacenter, tagged_addresses = excluded.tagged_addresses, meta = excluded.meta, "
            "modify_index = excluded.modify_index",
            node_row(saved),
        )
        await self._touch(
            node.partition, node.peer_name, await self._names_on(node.partition, node.peer_name, node.node)
        )
        return saved

    async def save_service(self, instance: ServiceInstance) -> ServiceInstance:
        if await get_node(self._db, instance.partition, instance.peer_name, instance.node) is None:
            raise RowMissingError("node", instance.node)
        stored = await get_service(self._db, instance.partition, instance.peer_name, instance.node, instance.id)
        if stored is not None and same(stored, instance):
            return stored
        index = await self._bump()
        saved = replace(instance, create_index=stored.create_index if stored else index, modify_index=index)
        await self._db.rows(
            f"INSERT INTO catalog_services ({SERVICE_COLUMNS}) VALUES ({marks(SERVICE_COLUMNS)}) "
            "ON CONFLICT (partition, peer_name, node, id) DO UPDATE SET service = excluded.service, "
            "tags = excluded.tags, address = excluded.address, port = excluded.port, meta = excluded.meta, "
            "tagged_addresses = excluded.tagged_addresses, weights_passing = excluded.weights_passing, "
            "weights_warning = excluded.weights_warning, enable_tag_override = excluded.enable_tag_override, "
            "kind = excluded.kind, modify_index = excluded.modify_index",
            service_row(saved),
        )
        names = {instance.service} | ({stored.service} if stored is not None else set())
        await self._touch(instance.partition, instance.peer_name, names)
        return saved

    async def save_check(self, check: Check) -> Check:
        if Health(check.status) is Health.MAINTENANCE:
            raise ValueError("a stored check is passing, warning or critical (maintenance is a critical check)")
        if await get_node(self._db, check.partition, check.peer_name, check.node) is None:
            raise RowMissingError("node", check.node)
        if check.service_id and (
            await get_service(self._db, check.partition, check.peer_name, check.node, check.service_id) is None
        ):
            raise RowMissingError("service", check.service_id)
        stored = await get_check(self._db, check.partition, check.peer_name, check.node, check.check_id)
        if stored is not None and same(stored, check):
            return stored
        index = await self._bump()
        saved = replace(check, create_index=stored.create_index if stored else index, modify_index=index)
        names = set(await self._check_names(check)) | set(await self._check_names(stored) if stored else ())
        await self._db.rows(
            f"INSERT INTO catalog_checks ({CHECK_COLUMNS}) VALUES ({marks(CHECK_COLUMNS)}) "
            "ON CONFLICT (partition, peer_name, node, check_id) DO UPDATE SET name = excluded.name, "
            "status = excluded.status, notes = excluded.notes, output = excluded.output, "
            "service_id = excluded.service_id, service_name = excluded.service_name, "
            "service_tags = excluded.service_tags, type = excluded.type, ttl = excluded.ttl, "
            "deadline = excluded.deadline, modify_index = excluded.modify_index",
            check_row(saved, self._db.time),
        )
        await self._touch(check.partition, check.peer_name, names)
        return saved

    async def delete_node(self, partition: str, peer_name: str, node: str) -> bool:
        if await get_node(self._db, partition, peer_name, node) is None:
            return False
        names = await self._names_on(partition, peer_name, node)
        await self._bump()
        await self._db.rows(f"DELETE FROM catalog_nodes WHERE {SCOPE} AND node = ?", (partition, peer_name, node))
        await self._touch(partition, peer_name, names, deleted=True)
        return True

    async def delete_service(self, partition: str, peer_name: str, node: str, service_id: str) -> bool:
        stored = await get_service(self._db, partition, peer_name, node, service_id)
        if stored is None:
            return False
        await self._bump()
        await self._db.rows(
            f"DELETE FROM catalog_services WHERE {SCOPE} AND node = ? AND id = ?",
            (partition, peer_name, node, service_id),
        )
        await self._touch(partition, peer_name, [stored.service], deleted=True)
        return True

    async def delete_check(self, partition: str, peer_name: str, node: str, check_id: str) -> bool:
        stored = await get_check(self._db, partition, peer_name, node, check_id)
        if stored is None:
            return False
        names = await self._check_names(stored)
        await self._bump()
        await self._db.rows(
            f"DELETE FROM catalog_checks WHERE {SCOPE} AND node = ? AND check_id = ?",
            (partition, peer_name, node, check_id),
        )
        await self._touch(partition, peer_name, names, deleted=True)
        return True

    async def delete_peer(self, partition: str, peer_name: str, limit: int) -> int:
        if not peer_name:
            raise ValueError("delete_peer removes imported rows only: peer_name must not be empty")
        limit = max(0, limit)
        batch = f"node IN (SELECT node FROM catalog_nodes WHERE {SCOPE} ORDER BY node LIMIT ?)"
        scope = (partition, peer_name)
        nodes = await self._db.rows(
            f"SELECT count(*) FROM catalog_nodes WHERE {SCOPE} AND {batch}", (*scope, *scope, limit)
        )
        count = int(nodes[0][0]) if nodes else 0
        if count == 0:
            return 0
        names = [
            row[0]
            for row in await self._db.rows(
                f"SELECT DISTINCT service FROM catalog_services WHERE {SCOPE} AND {batch}", (*scope, *scope, limit)
            )
        ]
        await self._bump()
        await self._db.rows(f"DELETE FROM catalog_nodes WHERE {SCOPE} AND {batch}", (*scope, *scope, limit))
        await self._touch(partition, peer_name, names, deleted=True)
        return count

    async def node(self, partition: str, peer_name: str, node: str) -> Node | None:
        return await get_node(self._db, partition, peer_name, node)

    async def node_services(self, partition: str, peer_name: str, node: str) -> list[ServiceInstance]:
        return await node_services(self._db, partition, peer_name, node)

    async def check(self, partition: str, peer_name: str, node: str, check_id: str) -> Check | None:
        return await get_check(self._db, partition, peer_name, node, check_id)

    async def service_health(self, partition: str, peer_name: str, name: str) -> list[ServiceHealth]:
        return await service_health(self._db, partition, peer_name, name)
