"""Output of the peering commands: Consul's pretty layouts for `read`, `list` and `check`, and JSON.

Layouts follow `consul peering read|list` with three deliberate fixes: one server address per
line, times printed as received (RFC 3339) and a `Partition:` line that is always there.
Every function returns text without its final newline; the caller prints it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

NIL = "<nil>"
LIST_HEADER = ("Name", "State", "Imported Svcs", "Exported Svcs", "Meta")


def to_json(value: Any) -> str:
    """JSON indented with 4 spaces, keys in the order the API sent them."""
    return json.dumps(value, indent=4)


def format_peering(peering: Mapping[str, Any]) -> str:
    """The pretty layout of `peering read`."""
    status = _mapping(peering.get("StreamStatus"))
    lines = [
        f"Name:         {_text(peering.get('Name'))}",
        f"ID:           {_text(peering.get('ID'))}",
        f"Partition:    {_text(peering.get('Partition')) or 'default'}",
    ]
    if peering.get("DeletedAt"):
        lines.append(f"DeletedAt:    {_text(peering['DeletedAt'])}")
    lines.append(f"State:        {_text(peering.get('State'))}")
    meta = meta_pairs(peering.get("Meta"))
    if meta:
        lines.append("Meta:")
        lines.extend(f"    {pair}" for pair in meta)
    lines += [
        "",
        f"Peer ID:               {_text(peering.get('PeerID'))}",
        f"Peer Server Name:      {_text(peering.get('PeerServerName'))}",
        f"Peer CA Pems:          {len(_sequence(peering.get('PeerCAPems')))}",
    ]
    addresses = _sequence(peering.get("PeerServerAddresses"))
    if addresses:
        lines.append("Peer Server Addresses:")
        lines.extend(f"    {_text(address)}" for address in addresses)
    lines += [
        "",
        f"Imported Services: {imported_count(peering)}",
        f"Exported Services: {exported_count(peering)}",
        "",
        f"Last Heartbeat:    {_time(status.get('LastHeartbeat'))}",
        f"Last Send:         {_time(status.get('LastSend'))}",
        f"Last Receive:      {_time(status.get('LastReceive'))}",
        "",
        f"Create Index: {_text(peering.get('CreateIndex'))}",
        f"Modify Index: {_text(peering.get('ModifyIndex'))}",
    ]
    return "\n".join(lines)


def format_peering_table(peerings: Iterable[Mapping[str, Any]]) -> str:
    """The pretty table of `peering list`, one row per peering sorted by name."""
    rows = [list(LIST_HEADER)]
    for peering in sort_by_name(peerings):
        rows.append(
            [
                _text(peering.get("Name")),
                _text(peering.get("State")),
                str(imported_count(peering)),
                str(exported_count(peering)),
                ",".join(meta_pairs(peering.get("Meta"))),
            ]
        )
    return columnize(rows)


def format_check(name: str, result: Mapping[str, Any]) -> str:
    """The pretty answer of `peering check` for a valid token."""
    return "\n".join(
        [
            f"Peering token for {name} is valid.",
            f"Remote Server Name:    {_text(result.get('RemoteServerName'))}",
            f"Remote Datacenter:     {_text(result.get('RemoteDatacenter'))}",
            f"Remote Peer ID:        {_text(result.get('RemotePeerID'))}",
            f"Remote Server Version: {_text(result.get('RemoteServerVersion'))}",
        ]
    )


def columnize(rows: Sequence[Sequence[str]]) -> str:
    """Rows of equal length as left-aligned columns two spaces apart, like Go's `columnize`, no trailing blanks."""
    widths = [max(len(cell) for cell in column) for column in zip(*rows, strict=True)]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def sort_by_name(peerings: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Peerings in name order, as the Consul CLI prints them."""
    return sorted(peerings, key=lambda peering: _text(peering.get("Name")))


def meta_pairs(meta: Any) -> list[str]:
    """`key=value` for each entry, sorted by key so the output is stable."""
    return [f"{key}={_text(value)}" for key, value in sorted(_mapping(meta).items())]


def imported_count(peering: Mapping[str, Any]) -> int:
    """`ImportedServiceCount`, or the length of `StreamStatus.ImportedServices` from servers without it."""
    return _count(peering, "ImportedServiceCount", "ImportedServices")


def exported_count(peering: Mapping[str, Any]) -> int:
    """`ExportedServiceCount`, or the length of `StreamStatus.ExportedServices` from servers without it."""
    return _count(peering, "ExportedServiceCount", "ExportedServices")


def _count(peering: Mapping[str, Any], count_field: str, list_field: str) -> int:
    count = peering.get(count_field)
    if isinstance(count, int) and not isinstance(count, bool):
        return count
    return len(_sequence(_mapping(peering.get("StreamStatus")).get(list_field)))


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _time(value: Any) -> str:
    return NIL if value is None else str(value)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _sequence(value: Any) -> Sequence[Any]:
    return value if isinstance(value, list) else []
