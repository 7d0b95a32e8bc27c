"""Rows of the PostgreSQL store in domain terms: a peering to bound values and back (`queries.COLUMNS`)."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from peering.domain import Peering, PeeringState, Remote, Role


def utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC)  # a naive time is local time, as the SQLite store reads it


def to_args(p: Peering) -> tuple[Any, ...]:
    """The bound values of `queries.COLUMNS` for a peering."""
    return (
        p.id,
        p.partition,
        p.name,
        p.role.value,
        p.state.value,
        json.dumps(dict(p.meta)),
        utc(p.deleted_at) if p.deleted_at else None,
        p.peer_id,
        list(p.peer_ca_pems),
        p.peer_server_name,
        list(p.peer_server_addresses),
        p.remote.datacenter,
        p.remote.partition,
        p.remote_cluster,
        p.create_index,
        p.modify_index,
        list(p.imported_services),
        list(p.exported_services),
    )


def from_row(row: Sequence[Any] | asyncpg.Record) -> Peering:
    """A peering from the values of `queries.COLUMNS`."""
    (id_, partition, name, role, state, meta, deleted_at, peer_id, cas, server_name, addresses) = row[:11]
    remote_dc, remote_partition, remote_cluster, create_index, modify_index, imported, exported = row[11:18]
    return Peering(
        id=id_,
        name=name,
        partition=sys.intern(partition),  # one string per partition, however many peerings it has
        role=Role(role),
        state=PeeringState(state),
        meta=json.loads(meta),
        deleted_at=deleted_at,
        peer_id=peer_id,
        peer_ca_pems=tuple(cas),
        peer_server_name=server_name,
        peer_server_addresses=tuple(addresses),
        remote=Remote.of(remote_dc, remote_partition),
        remote_cluster=remote_cluster,
        create_index=create_index,
        modify_index=modify_index,
        imported_services=tuple(imported),
        exported_services=tuple(exported),
    )
