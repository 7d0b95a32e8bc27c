"""`peering catalog services [-peer NAME] [-node NODE] [-tags]`: Consul's `consul catalog services`.

Names one a line in name order; `-tags` adds each one's sorted tags, comma-separated, in a column
six spaces past the longest name (Consul's tabwriter layout, without trailing blanks). `-peer` is ours
(Consul's CLI cannot list imported services): it lists the services imported over that peering.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import httpx

from peering.cli.client import InvalidResponseError
from peering.cli.commands import client_for, failing_as

NO_MATCH = "No services match the given query - try expanding your search."
TAG_GAP = 6  # the tabwriter padding of `consul catalog services -tags`


def service_tags(answer: Any) -> dict[str, list[str]]:
    """`GET /v1/catalog/services`' `{name: [tags]}`, checked."""
    if not isinstance(answer, dict) or not all(_is_tags(tags) for tags in answer.values()):
        raise InvalidResponseError("expected a JSON object of tag lists")
    return {str(name): list(tags or []) for name, tags in answer.items()}


def node_service_tags(answer: Any) -> dict[str, list[str]]:
    """The services of `GET /v1/catalog/node/<node>` (null: no such node) as name -> tags, as Consul merges them."""
    if answer is None:
        return {}
    services = (answer.get("Services") or {}) if isinstance(answer, dict) else None
    if isinstance(services, dict):
        items = list(services.values())
    elif isinstance(services, list):
        items = services
    else:
        raise InvalidResponseError("expected a node with its services")
    merged: dict[str, list[str]] = {}
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("Service"), str) or not _is_tags(item.get("Tags")):
            raise InvalidResponseError("expected services with a Service name and Tags")
        merged.setdefault(item["Service"], []).extend(item.get("Tags") or [])
    return merged


def _is_tags(value: Any) -> bool:
    return value is None or (isinstance(value, list) and all(isinstance(tag, str) for tag in value))


def format_services(services: Mapping[str, list[str]], *, tags: bool) -> str:
    """Names in order; with `tags`, each name's tags (sorted, joined by `,`) in a second column."""
    names = sorted(services)
    if not tags:
        return "\n".join(names)
    width = max(map(len, names)) + TAG_GAP
    return "\n".join(f"{name.ljust(width)}{','.join(sorted(services[name]))}".rstrip() for name in names)


def services(args: argparse.Namespace, transport: httpx.BaseTransport | None) -> int:
    """`peering catalog services`: the service names of the catalog, or of one node, local or imported (`-peer`)."""
    query = {"peer": args.peer} if args.peer else None
    with client_for(args, transport) as api:
        if args.node:
            with failing_as("Error listing services for node"):
                path = f"/v1/catalog/node/{quote(args.node, safe='')}"
                found = node_service_tags(api.request("GET", path, query=query))
        else:
            with failing_as("Error listing services"):
                found = service_tags(api.request("GET", "/v1/catalog/services", query=query))
    if not found:
        print(NO_MATCH, file=sys.stderr)  # Consul says so on stderr and still exits 0
        return 0
    print(format_services(found, tags=args.tags))
    return 0
