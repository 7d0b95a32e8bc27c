"""Rows of the SQLite store in domain terms: a peering to bound values and back (`COLUMNS`, in order)."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from peering.domain import Peering, PeeringState, Remote, Role
from peering.store.schema import timestamp

COLUMNS = (
    "id, partition, name, role, state, meta, deleted_at, peer_id, peer_ca_pems, peer_server_name, "
    "peer_server_addresses, remote_datacenter, remote_partition, remote_cluster, create_index, modify_index, "
    "imported_services, exported_services"
)


def _json_list(values: tuple[str, ...]) -> str:
    return json.dumps(list(values)) if values else "[]"  # most are empty: no encoder for those


def to_row(p: Peering) -> tuple[Any, ...]:
    return (
        p.id,
        p.partition,
        p.name,
        p.role.value,
        p.state.value,
        json.dumps(dict(p.meta)) if p.meta else "{}",
        timestamp(p.deleted_at) if p.deleted_at else None,
        p.peer_id,
        _json_list(p.peer_ca_pems),
        p.peer_server_name,
        _json_list(p.peer_server_addresses),
        p.remote.datacenter,
        p.remote.partition,
        p.remote_cluster,
        p.create_index,
        p.modify_index,
        _json_list(p.imported_services),
        _json_list(p.exported_services),
    )


def from_row(row: Iterable[Any]) -> Peering:
    (id_, partition, name, role, state, meta, deleted_at, peer_id, cas, server_name, addresses) = (
        values := tuple(row)
    )[:11]
    remote_dc, remote_partition, remote_cluster, create_index, modify_index, imported, exported = values[11:]
    return Peering(
        id=id_,
        name=name,
        partition=sys.intern(partition),  # one string per partition, however many peerings it has
        role=Role(role),
        state=PeeringState(state),
        meta=json.loads(meta),
        deleted_at=datetime.fromisoformat(deleted_at) if deleted_at else None,
        peer_id=peer_id,
        peer_ca_pems=tuple(json.loads(cas)),
        peer_server_name=server_name,
        peer_server_addresses=tuple(json.loads(addresses)),
        remote=Remote.of(remote_dc, remote_partition),
        remote_cluster=remote_cluster,
        create_index=create_index,
        modify_index=modify_index,
        imported_services=tuple(json.loads(imported)),
        exported_services=tuple(json.loads(exported)),
    )
