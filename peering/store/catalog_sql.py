"""The catalog part of the seam (`store/catalog_seam.py`) in SQL both backends speak, written once.

A backend binds it to its connections through `Sql` (`store/sqlite_catalog.py`, `store/postgres/catalog.py`):
`rows` runs one statement with `?` parameters (PostgreSQL's binding numbers them) and `time` turns a
datetime into the backend's bound value. Reads run inside a `Snapshot` (one read transaction, so the rows
and the scope's index agree); writes run on the unit of work's connection and take its index lazily
through `bump` (first, so that every row and feed entry of the unit carries it).

The feed: every catalog write records, in the same unit, one "catalog" change per service name whose
health view it changed (key `<partition>/<peer_name>/<name>`; `deleted` when the write was a deletion),
once per unit; each scope's index lives in `catalog_scopes`.
"""

# ruff: noqa: S608 -- only constant column lists and clauses are interpolated; every value is bound

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from datetime import datetime
from typing import Any, Protocol

from peering.catalog.model import Check, Health, Node, ServiceHealth, ServiceInstance
from peering.store.catalog_rows import (
    CHECK_COLUMNS,
    NODE_COLUMNS,
    SERVICE_COLUMNS,
    check_from,
    moment,
    node_from,
    service_from,
)


class Sql(Protocol):
    """One backend connection as the shared SQL needs it."""

    async def rows(self, sql: str, params: tuple[Any, ...] = ()) -> list[Sequence[Any]]:
        """Run one statement (`?` parameters); its rows (none for a write without RETURNING)."""

    def time(self, moment: datetime) -> Any:
        """The bound value of a time for this backend."""


Snapshot = Callable[[], AbstractAsyncContextManager[Sql]]
Bump = Callable[[], Awaitable[int]]

SCOPE = "partition = ? AND peer_name = ?"
_DUE = "peer_name = '' AND deadline IS NOT NULL AND status <> 'critical'"


async def scope_index(db: Sql, partition: str, peer_name: str) -> int:
    rows = await db.rows(f"SELECT modify_index FROM catalog_scopes WHERE {SCOPE}", (partition, peer_name))
    return max(1, int(rows[0][0])) if rows else 1


async def get_node(db: Sql, partition: str, peer_name: str, node: str) -> Node | None:
    rows = await db.rows(
        f"SELECT {NODE_COLUMNS} FROM catalog_nodes WHERE {SCOPE} AND node = ?", (partition, peer_name, node)
    )
    return node_from(rows[0]) if rows else None


async def node_services(db: Sql, partition: str, peer_name: str, node: str) -> list[ServiceInstance]:
    rows = await db.rows(
        f"SELECT {SERVICE_COLUMNS} FROM catalog_services WHERE {SCOPE} AND node = ? ORDER BY id",
        (partition, peer_name, node),
    )
    return [service_from(row) for row in rows]


async def get_service(db: Sql, partition: str, peer_name: str, node: str, service_id: str) -> ServiceInstance | None:
    rows = await db.rows(
        f"SELECT {SERVICE_COLUMNS} FROM catalog_services WHERE {SCOPE} AND node = ? AND id = ?",
        (partition, peer_name, node, service_id),
    )
    return service_from(rows[0]) if rows else None


async def get_check(db: Sql, partition: str, peer_name: str, node: str, check_id: str) -> Check | None:
    rows = await db.rows(
        f"SELECT {CHECK_COLUMNS} FROM catalog_checks WHERE {SCOPE} AND node = ? AND check_id = ?",
        (partition, peer_name, node, check_id),
    )
    return check_from(rows[0]) if rows else None


async def list_nodes(db: Sql, partition: str, peer_name: str) -> list[Node]:
    rows = await db.rows(
        f"SELECT {NODE_COLUMNS} FROM catalog_nodes WHERE {SCOPE} ORDER BY node", (partition, peer_name)
    )
    return [node_from(row) for row in rows]


async def service_names(db: Sql, partition: str, peer_name: str) -> dict[str, list[str]]:
    rows = await db.rows(
        f"SELECT service, tags FROM catalog_services WHERE {SCOPE} ORDER BY service", (partition, peer_name)
    )
    tags: dict[str, set[str]] = {}
    for name, tag_list in rows:
        tags.setdefault(name, set()).update(json.loads(tag_list))
    return {name: sorted(found) for name, found in tags.items()}


async def service_health(db: Sql, partition: str, peer_name: str, name: str) -> list[ServiceHealth]:
    scope = (partition, peer_name)
    services = [
        service_from(row)
        for row in await db.rows(
            f"SELECT {SERVICE_COLUMNS} FROM catalog_services WHERE {SCOPE} AND service = ? ORDER BY node, id",
            (*scope, name),
        )
    ]
    if not services:
        return []
    on = f"node IN (SELECT node FROM catalog_services WHERE {SCOPE} AND service = ?)"
    nodes = {
        n.node: n
        for n in map(
            node_from,
            await db.rows(f"SELECT {NODE_COLUMNS} FROM catalog_nodes WHERE {SCOPE} AND {on}", (*scope, *scope, name)),
        )
    }
    node_checks: dict[str, list[Check]] = {}
    own_checks: dict[tuple[str, str], list[Check]] = {}
    for row in await db.rows(
        f"SELECT {CHECK_COLUMNS} FROM catalog_checks WHERE {SCOPE} AND {on} ORDER BY node, check_id",
        (*scope, *scope, name),
    ):
        check = check_from(row)
        if check.service_id:
            own_checks.setdefault((check.node, check.service_id), []).append(check)
        else:
            node_checks.setdefault(check.node, []).append(check)
    return [
        ServiceHealth(nodes[s.node], s, (*node_checks.get(s.node, ()), *own_checks.get((s.node, s.id), ())))
        for s in services
        if s.node in nodes  # always (the foreign key), unless a unit of work is half way
    ]


async def list_checks(
    db: Sql,
    partition: str,
    peer_name: str,
    node: str | None,
    service_name: str | None,
    status: Health | None,
) -> list[Check]:
    where, params = [SCOPE], [partition, peer_name]
    if node is not None:
        where.append("node = ?")
        params.append(node)
    if status is not None:
        where.append("status = ?")
        params.append(Health(status).value)
    if service_name is not None:
        where.append(
            "service_id IN (SELECT s.id FROM catalog_services s WHERE s.partition = catalog_checks.partition "
            "AND s.peer_name = catalog_checks.peer_name AND s.node = catalog_checks.node AND s.service = ?)"
        )
        params.append(service_name)
    rows = await db.rows(
        f"SELECT {CHECK_COLUMNS} FROM catalog_checks WHERE {' AND '.join(where)} ORDER BY node, check_id", tuple(params)
    )
    return [check_from(row) for row in rows]


class CatalogSqlReads:
    """`CatalogReads` over a backend's read snapshots."""

    def __init__(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot

    async def nodes(self, partition: str, peer_name: str) -> tuple[list[Node], int]:
        async with self._snapshot() as db:
            return await list_nodes(db, partition, peer_name), await scope_index(db, partition, peer_name)

    async def node(self, partition: str, peer_name: str, node: str) -> tuple[Node | None, list[ServiceInstance], int]:
        async with self._snapshot() as db:
            found = await get_node(db, partition, peer_name, node)
            services = await node_services(db, partition, peer_name, node) if found is not None else []
            return found, services, await scope_index(db, partition, peer_name)

    async def service_names(self, partition: str, peer_name: str) -> tuple[dict[str, list[str]], int]:
        async with self._snapshot() as db:
            return await service_names(db, partition, peer_name), await scope_index(db, partition, peer_name)

    async def service_health(self, partition: str, peer_name: str, name: str) -> tuple[list[ServiceHealth], int]:
        async with self._snapshot() as db:
            return await service_health(db, partition, peer_name, name), await scope_index(db, partition, peer_name)

    async def checks(
        self,
        partition: str,
        peer_name: str,
        *,
        node: str | None = None,
        service_name: str | None = None,
        status: Health | None = None,
    ) -> tuple[list[Check], int]:
        async with self._snapshot() as db:
            found = await list_checks(db, partition, peer_name, node, service_name, status)
            return found, await scope_index(db, partition, peer_name)

    async def due_checks(self, now: datetime) -> list[Check]:
        async with self._snapshot() as db:
            rows = await db.rows(
                f"SELECT {CHECK_COLUMNS} FROM catalog_checks WHERE {_DUE} AND deadline <= ? "
                "ORDER BY deadline, partition, node, check_id",
                (db.time(now),),
            )
        return [check_from(row) for row in rows]

    async def next_deadline(self) -> datetime | None:
        async with self._snapshot() as db:
            rows = await db.rows(f"SELECT min(deadline) FROM catalog_checks WHERE {_DUE}")
        return moment(rows[0][0]) if rows else None
