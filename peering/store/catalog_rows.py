"""Catalog rows in domain terms, for both backends: nodes, instances, checks and config entries to bound
values and back (the `*_COLUMNS`, in order).

Maps and tuples are JSON text (SQLite TEXT, PostgreSQL `json`, which keeps the text as written); a node
check's `service_id` is stored as NULL, so that the instance foreign key (with its cascade) skips it.
Times go in through the backend's `Time` (SQLite: fixed-width UTC text; PostgreSQL: an aware datetime)
and come back as aware datetimes either way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from peering.catalog.model import Check, ConfigEntry, Health, Node, ServiceInstance, Weights

Time = Callable[[datetime], Any]

NODE_COLUMNS = "partition, peer_name, node, address, id, datacenter, tagged_addresses, meta, create_index, modify_index"
SERVICE_COLUMNS = (
    "partition, peer_name, node, id, service, tags, address, port, meta, tagged_addresses, weights_passing, "
    "weights_warning, enable_tag_override, kind, create_index, modify_index"
)
CHECK_COLUMNS = (
    "partition, peer_name, node, check_id, name, status, notes, output, service_id, service_name, service_tags, "
    "type, ttl, deadline, create_index, modify_index"
)
CONFIG_COLUMNS = "kind, name, body, create_index, modify_index"


def marks(columns: str) -> str:
    """As many `?` as `columns` names."""
    return ", ".join("?" * (columns.count(",") + 1))


def _map(value: Mapping[str, str]) -> str:
    return json.dumps(dict(value), ensure_ascii=False)


def _list(value: Sequence[str]) -> str:
    return json.dumps(list(value), ensure_ascii=False)


def moment(value: Any) -> datetime | None:
    """A stored time (text or datetime) as an aware datetime."""
    if value is None:
        return None
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


def node_row(n: Node) -> tuple[Any, ...]:
    return (n.partition, n.peer_name, n.node, n.address, n.id, n.datacenter, _map(n.tagged_addresses), _map(n.meta),
            n.create_index, n.modify_index)  # fmt: skip


def node_from(row: Sequence[Any]) -> Node:
    partition, peer_name, node, address, id_, datacenter, tagged, meta, create_index, modify_index = row
    return Node(
        node=node,
        address=address,
        id=id_,
        datacenter=datacenter,
        partition=partition,
        peer_name=peer_name,
        tagged_addresses=json.loads(tagged),
        meta=json.loads(meta),
        create_index=int(create_index),
        modify_index=int(modify_index),
    )


def service_row(s: ServiceInstance) -> tuple[Any, ...]:
    return (s.partition, s.peer_name, s.node, s.id, s.service, _list(s.tags), s.address, s.port, _map(s.meta),
            _map(s.tagged_addresses), s.weights.passing, s.weights.warning, bool(s.enable_tag_override), s.kind,
            s.create_index, s.modify_index)  # fmt: skip


def service_from(row: Sequence[Any]) -> ServiceInstance:
    (partition, peer_name, node, id_, service, tags, address, port, meta, tagged, passing, warning, override, kind,
     create_index, modify_index) = row  # fmt: skip
    return ServiceInstance(
        node=node,
        id=id_,
        service=service,
        tags=tuple(json.loads(tags)),
        address=address,
        port=int(port),
        meta=json.loads(meta),
        tagged_addresses=json.loads(tagged),
        weights=Weights(int(passing), int(warning)),
        enable_tag_override=bool(override),
        kind=kind,
        partition=partition,
        peer_name=peer_name,
        create_index=int(create_index),
        modify_index=int(modify_index),
    )


def check_row(c: Check, time: Time) -> tuple[Any, ...]:
    return (c.partition, c.peer_name, c.node, c.check_id, c.name, Health(c.status).value, c.notes, c.output,
            c.service_id or None, c.service_name, _list(c.service_tags), c.type, c.ttl,
            time(c.deadline) if c.deadline is not None else None, c.create_index, c.modify_index)  # fmt: skip


def check_from(row: Sequence[Any]) -> Check:
    (partition, peer_name, node, check_id, name, status, notes, output, service_id, service_name, service_tags,
     type_, ttl, deadline, create_index, modify_index) = row  # fmt: skip
    return Check(
        node=node,
        check_id=check_id,
        name=name,
        status=Health(status),
        notes=notes,
        output=output,
        service_id=service_id or "",
        service_name=service_name,
        service_tags=tuple(json.loads(service_tags)),
        type=type_,
        ttl=float(ttl) if ttl is not None else None,
        deadline=moment(deadline),
        partition=partition,
        peer_name=peer_name,
        create_index=int(create_index),
        modify_index=int(modify_index),
    )


def config_row(e: ConfigEntry) -> tuple[Any, ...]:
    return (e.kind, e.name, json.dumps(dict(e.body), ensure_ascii=False), e.create_index, e.modify_index)


def config_from(row: Sequence[Any]) -> ConfigEntry:
    kind, name, body, create_index, modify_index = row
    return ConfigEntry(kind, name, json.loads(body), int(create_index), int(modify_index))
