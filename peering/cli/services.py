"""`peering services export|exported-services|imported-services` and `peering exported-services`.

They mirror `consul services export`, `consul services exported-services`, `consul services
imported-services` and `consul peering exported-services`, with their flags, texts and layouts.
`export` is Consul's read-modify-write of the partition's `exported-services` entry, guarded by
`?cas=` so a concurrent change is refused rather than overwritten.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

import httpx

from peering.cli.client import InvalidResponseError, PeeringClient, UnexpectedResponseError
from peering.cli.commands import CommandError, client_for, failing_as, required
from peering.cli.formatting import columnize, to_json

FORMATS = ("pretty", "json")
KIND = "exported-services"
NOT_FOUND = "Config entry not found"  # the start of the server's 404 text for a missing entry


def output_format(value: str) -> str:
    """`-format` as these Consul commands check it (their message lists pretty first)."""
    if value not in FORMATS:
        raise CommandError(f"Invalid format, valid formats are {{{'|'.join(FORMATS)}}}")
    return value


def _quoted(text: str) -> str:
    """Go's `%q` for printable text."""
    return json.dumps(text, ensure_ascii=False)


# -- export


def split_names(value: str | None, what: str) -> list[str]:
    """`-consumer-peers a,b` as a list in the order given, duplicates dropped.

    Raises:
        CommandError: an empty name (`a,,b`, a trailing comma), as Consul's `Invalid peer ""`.
    """
    if not value:
        return []
    names: list[str] = []
    for name in value.split(","):
        if not name:
            raise CommandError(f'Invalid {what} ""')
        if name not in names:
            names.append(name)
    return names


def add_consumers(
    entry: Mapping[str, Any] | None, partition: str, service: str, peers: Sequence[str], partitions: Sequence[str]
) -> dict[str, Any]:
    """The entry to write: `entry` (or a new one named after the partition) with `service` exported to
    every one of `peers` and `partitions` that it does not name yet. Everything else is kept as read;
    the read-only indexes are left out of the body."""
    wanted = [{"Peer": peer} for peer in peers] + [{"Partition": name} for name in partitions]
    if entry is None:
        return {"Kind": KIND, "Name": partition, "Services": [{"Name": service, "Consumers": wanted}]}
    body = {key: value for key, value in entry.items() if key not in ("CreateIndex", "ModifyIndex")}
    services: list[Any] = []
    found = False
    for item in entry.get("Services") or []:
        if isinstance(item, dict) and item.get("Name") == service and not item.get("Namespace"):
            found = True
            consumers = list(item.get("Consumers") or [])
            consumers += [consumer for consumer in wanted if not _names_consumer(consumers, consumer)]
            item = {**item, "Consumers": consumers}
        services.append(item)
    if not found:
        services.append({"Name": service, "Consumers": wanted})
    body["Services"] = services
    return body


def _names_consumer(consumers: Sequence[Any], consumer: Mapping[str, str]) -> bool:
    ((field, name),) = consumer.items()
    return any(isinstance(item, dict) and item.get(field) == name for item in consumers)


def _read_entry(api: PeeringClient, partition: str) -> dict[str, Any] | None:
    """The partition's exported-services entry, or None when it has none yet."""
    try:
        entry = api.request("GET", f"/v1/config/{KIND}/{quote(partition, safe='')}")
    except UnexpectedResponseError as exc:
        if exc.status == 404 and NOT_FOUND in exc.body:
            return None
        raise
    if not isinstance(entry, dict) or not _is_index(entry.get("ModifyIndex")):
        raise InvalidResponseError("expected a config entry with a ModifyIndex")
    return entry


def _is_index(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def export(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering services export -name web -consumer-peers east,west`."""
    service = required(args.name, "-name")
    if not args.consumer_peers and not args.consumer_partitions:
        raise CommandError("Missing the required -consumer-peers or -consumer-partitions flag")
    peers = split_names(args.consumer_peers, "peer")
    partitions = split_names(args.consumer_partitions, "partition")
    # the entry is named after the partition it exports from
    partition = args.partition or os.environ.get("CONSUL_PARTITION") or "default"
    with client_for(args, transport) as api:
        with failing_as(f"Error reading config entry {KIND}/{partition}"):
            entry = _read_entry(api, partition)
        body = add_consumers(entry, partition, service, peers, partitions)
        cas = str(entry["ModifyIndex"]) if entry is not None else "0"  # 0: create only if still absent
        with failing_as("Error writing config entry"):
            written = api.request("PUT", "/v1/config", body, query={"cas": cas})
            if not isinstance(written, bool):
                raise InvalidResponseError("expected true or false")
    if not written:
        raise CommandError("Config entry was changed during update. Please try again")
    target = [f"to cluster peers {_quoted(args.consumer_peers)}"] if args.consumer_peers else []
    target += [f"to partitions {_quoted(args.consumer_partitions)}"] if args.consumer_partitions else []
    print(f"Successfully exported service {_quoted(service)} {' and '.join(target)}")
    return 0


# -- listings


def _records(api: PeeringClient, path: str) -> list[dict[str, Any]]:
    answer = api.request("GET", path)
    if not isinstance(answer, list) or not all(isinstance(item, dict) for item in answer):
        raise InvalidResponseError("expected a JSON array of objects")
    return answer


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def format_exported(services: Sequence[Mapping[str, Any]]) -> str:
    """`consul services exported-services`' table: one row per service, its peers joined by `, `."""
    rows = [["Service", "Consumer Peers"]]
    for item in services:
        consumers = item.get("Consumers")
        peers = consumers.get("Peers") if isinstance(consumers, dict) else None
        rows.append([_text(item.get("Service")), ", ".join(map(_text, peers if isinstance(peers, list) else []))])
    return columnize(rows)


def format_imported(services: Sequence[Mapping[str, Any]]) -> str:
    """`consul services imported-services`' table."""
    rows = [["Service", "Source Peer"]]
    rows += [[_text(item.get("Service")), _text(item.get("SourcePeer"))] for item in services]
    return columnize(rows)


def exported_services(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering services exported-services [-format pretty|json]`: from `GET /v1/exported-services`."""
    output = output_format(args.format)
    with client_for(args, transport) as api, failing_as("Error reading exported services"):
        services = _records(api, "/v1/exported-services")
    if not services:
        print("No exported services found")
    else:
        print(to_json(services) if output == "json" else format_exported(services))
    return 0


def imported_services(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering services imported-services [-format pretty|json]`: from `GET /v1/imported-services`."""
    output = output_format(args.format)
    with client_for(args, transport) as api, failing_as("Error reading imported services"):
        services = _records(api, "/v1/imported-services")
    if not services:
        print("No imported services found")
    else:
        print(to_json(services) if output == "json" else format_imported(services))
    return 0


def peering_exported_services(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering exported-services -name X [-format pretty|json]`: the peering's `StreamStatus.ExportedServices`."""
    name = required(args.name, "-name")
    output = output_format(args.format)
    with client_for(args, transport) as api, failing_as("Error reading peering"):
        peering = api.read(name)
        if peering is None:
            raise CommandError(f"No peering with name {name} found.")
        status = peering.get("StreamStatus")
        services = status.get("ExportedServices") if isinstance(status, dict) else None
        if not isinstance(services, list | None):
            raise InvalidResponseError("StreamStatus.ExportedServices is not a list")
    names = [_text(service) for service in services or []]
    if output == "json":  # Consul prints ServiceIDs on one line
        print(json.dumps([{"ID": service} for service in names], separators=(",", ":")))
    else:
        print("\n".join(names))  # no services: an empty line, as Consul
    return 0
