"""Turning domain objects into Consul's JSON, with its field order and headers."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import orjson
from fastapi import Response

from peering.domain import Peering, Role


def rfc3339(moment: datetime | None) -> str | None:
    """UTC RFC 3339 with `Z`, fractional seconds only when there are any (like Go's RFC3339Nano)."""
    if moment is None:
        return None
    utc = moment.astimezone(UTC)
    text = utc.strftime("%Y-%m-%dT%H:%M:%S")
    if utc.microsecond:
        text += f".{utc.microsecond:06d}".rstrip("0")
    return text + "Z"


def peering_json(p: Peering) -> dict[str, Any]:
    """The peering object of SPEC §3.6."""
    body: dict[str, Any] = {"ID": p.id, "Name": p.name, "Partition": p.partition}
    if p.deleted_at is not None:
        body["DeletedAt"] = rfc3339(p.deleted_at)
    if p.meta:
        body["Meta"] = dict(p.meta)
    body["State"] = p.state.value
    if p.role is Role.DIALER:
        if p.peer_id:
            body["PeerID"] = p.peer_id
        if p.peer_ca_pems:
            body["PeerCAPems"] = list(p.peer_ca_pems)
        if p.peer_server_name:
            body["PeerServerName"] = p.peer_server_name
        if p.peer_server_addresses:
            body["PeerServerAddresses"] = list(p.peer_server_addresses)
    # persisted (SPEC §14): the names of the last list received from / computed for the peer; `[]` when none
    body["ImportedServiceCount"] = len(p.imported_services)
    body["ExportedServiceCount"] = len(p.exported_services)
    body["StreamStatus"] = {
        "ImportedServices": list(p.imported_services),
        "ExportedServices": list(p.exported_services),
        "LastHeartbeat": rfc3339(p.stream.last_heartbeat),
        "LastReceive": rfc3339(p.stream.last_receive),
        "LastSend": rfc3339(p.stream.last_send),
    }
    body["Remote"] = {"Datacenter": p.remote.datacenter, "Partition": p.remote.partition}
    body["CreateIndex"] = p.create_index
    body["ModifyIndex"] = p.modify_index
    return body


class PeeringBytes:
    """Each peering's compact JSON, kept until the peering object changes (the service hands back the
    same object while neither it nor its link status changed), so a list is a join of cached bytes."""

    def __init__(self, limit: int = 50_000) -> None:
        self._cache: dict[str, tuple[Peering, bytes]] = {}
        self._lists: dict[int, tuple[list[Peering], bytes]] = {}
        self._limit = limit

    def one(self, peering: Peering) -> bytes:
        """The peering's JSON bytes."""
        hit = self._cache.get(peering.id)
        if hit is not None and hit[0] is peering:
            return hit[1]
        if len(self._cache) >= self._limit:
            self._cache.clear()  # removed peerings' entries go too; the next requests refill it
        encoded = orjson.dumps(peering_json(peering))
        self._cache[peering.id] = (peering, encoded)
        return encoded

    def many(self, peerings: list[Peering]) -> bytes:
        """A JSON array of the peerings (kept for the same list object: the service hands the same one back
        while the partition and its links are unchanged)."""
        hit = self._lists.get(id(peerings))
        if hit is not None and hit[0] is peerings:
            return hit[1]
        encoded = b"[" + b",".join([self.one(p) for p in peerings]) + b"]"
        if len(self._lists) >= 64:
            self._lists.clear()
        self._lists[id(peerings)] = (peerings, encoded)
        return encoded


def read_headers(index: int) -> dict[str, str]:
    """Headers every GET answers with."""
    return {"X-Consul-Index": str(max(1, index)), "X-Consul-KnownLeader": "true", "X-Consul-LastContact": "0"}


def bytes_response(content: bytes, *, pretty: bool, headers: dict[str, str] | None = None) -> Response:
    """A 200 JSON answer from already encoded JSON (re-indented for `?pretty`)."""
    if pretty:
        content = (json.dumps(orjson.loads(content), indent=4) + "\n").encode()
    return Response(content=content, media_type="application/json", headers=headers)


def json_response(data: object, *, pretty: bool, headers: dict[str, str] | None = None) -> Response:
    """A 200 JSON answer; `?pretty` indents it by 4 spaces and ends it with a newline, like Consul."""
    content = (json.dumps(data, indent=4) + "\n").encode() if pretty else orjson.dumps(data)
    return Response(content=content, media_type="application/json", headers=headers)
