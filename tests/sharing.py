"""Helpers for the sharing tests and bench on real `peering serve` processes: peer two clusters (through
a relay of the acceptor's peer port), register many instances through the catalog API, wait with
blocking queries, read the exporter's and the importer's views in comparable shapes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

HEARTBEATS = ("--heartbeat-interval", "0.2", "--heartbeat-timeout", "2")
A_NAME, B_NAME = "cluster-b", "cluster-a"  # A's name for B, B's name for A (B dials A)


def wait_for(
    base_url: str,
    path: str,
    check: Callable[[Any], bool],
    *,
    params: dict[str, str] | None = None,
    timeout: float = 30.0,
    wait: str = "2s",
) -> Any:
    """The JSON answer of `path` once `check` accepts it, waited for with blocking queries (bounded)."""
    deadline = time.monotonic() + timeout
    index = "0"
    with httpx.Client(base_url=base_url, timeout=30.0) as client:
        while True:
            response = client.get(path, params={**(params or {}), "index": index, "wait": wait})
            assert response.status_code == 200, f"{path}: {response.status_code} {response.text}"
            if check(response.json()):
                return response.json()
            assert time.monotonic() < deadline, f"{path} never satisfied the check: {response.text[:500]}"
            index = response.headers.get("X-Consul-Index", index)


def state_of(base_url: str, name: str, state: str, timeout: float = 30.0) -> dict[str, Any]:
    found: dict[str, Any] = wait_for(base_url, f"/v1/peering/{name}", lambda p: p["State"] == state, timeout=timeout)
    return found


def peer(a_url: str, b_url: str, *, addresses: Sequence[str] = ()) -> None:
    """B establishes with A's token (A's peer port given as `addresses`, e.g. a relay's); both ACTIVE."""
    body: dict[str, Any] = {"PeerName": A_NAME}
    if addresses:
        body["ServerExternalAddresses"] = list(addresses)
    answer = httpx.post(f"{a_url}/v1/peering/token", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    token = answer.json()["PeeringToken"]
    answer = httpx.post(f"{b_url}/v1/peering/establish", json={"PeerName": B_NAME, "PeeringToken": token}, timeout=30)
    assert answer.status_code == 200, answer.text
    state_of(a_url, A_NAME, "ACTIVE")
    state_of(b_url, B_NAME, "ACTIVE")


def registration(
    service: str, sid: str, node: str, *, port: int = 8080, status: str = "passing", meta_bytes: int = 0
) -> dict[str, Any]:
    """A `PUT /v1/catalog/register` body: `node` with one instance and its check (`<sid>-check`)."""
    meta = {f"k{k}": "m" * 30 for k in range(meta_bytes // 34)}
    return {
        "Node": node,
        "Address": f"10.0.{len(node) % 250}.{sum(map(ord, node)) % 250}",
        "Service": {"ID": sid, "Service": service, "Port": port, "Tags": ["v1"], "Meta": meta},
        "Checks": [{"CheckID": f"{sid}-check", "Name": "check", "Status": status, "ServiceID": sid}],
    }


def register_all(base_url: str, bodies: Sequence[dict[str, Any]], threads: int = 6) -> None:
    """Every body through `PUT /v1/catalog/register`, on `threads` keep-alive connections; one node's bodies
    all go on one connection (concurrent registrations on one node can be refused with a 503 "the catalog kept
    changing while the request was checked; retry": tests/test_catalog_concurrency.py)."""

    def some(chunk: Sequence[dict[str, Any]]) -> None:
        with httpx.Client(base_url=base_url, timeout=30) as client:
            for body in chunk:
                answer = client.put("/v1/catalog/register", json=body)
                assert (answer.status_code, answer.text) == (200, "true"), answer.text

    nodes = sorted({body["Node"] for body in bodies})
    owner = {node: number % threads for number, node in enumerate(nodes)}
    chunks = [[body for body in bodies if owner[body["Node"]] == k] for k in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(some, chunks))


def export(base_url: str, services: Iterable[tuple[str, Sequence[str]]]) -> None:
    """Write the default partition's exported-services entry."""
    body = {
        "Kind": "exported-services",
        "Name": "default",
        "Services": [{"Name": name, "Consumers": [{"Peer": p} for p in peers]} for name, peers in services],
    }
    answer = httpx.put(f"{base_url}/v1/config", json=body, timeout=30)
    assert (answer.status_code, answer.text) == (200, "true"), answer.text


def instance_view(entries: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """A health answer as the peer should see it: node, address, datacenter, instance, tags, meta, port and
    the one status the instance has (the worst of its checks; maintenance counts as critical)."""
    order = {"passing": 0, "warning": 1, "critical": 2}
    view = []
    for entry in entries:
        node, svc = entry["Node"], entry["Service"]
        statuses = [c["Status"] for c in entry["Checks"]]
        worst = max(statuses, key=order.__getitem__) if statuses else None
        view.append(
            (
                node["Node"],
                node["Address"],
                node["Datacenter"],
                svc["ID"],
                svc["Service"],
                svc["Port"],
                tuple(svc["Tags"] or ()),
                tuple(sorted((svc["Meta"] or {}).items())),
                worst,
            )
        )
    return sorted(view)


def peer_names(entries: list[dict[str, Any]]) -> set[str]:
    """Every PeerName on the nodes, instances and checks of a health answer."""
    found = set()
    for entry in entries:
        found |= {entry["Node"].get("PeerName", ""), entry["Service"].get("PeerName", "")}
        found |= {c.get("PeerName", "") for c in entry["Checks"]}
    return found


def health(client: httpx.Client, service: str, peer: str = "", **params: str) -> list[dict[str, Any]]:
    """`GET /v1/health/service/<service>` (`?peer=` when given) on `client`'s cluster."""
    query = {**params, **({"peer": peer} if peer else {})}
    answer = client.get(f"/v1/health/service/{service}", params=query)
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()
    return found
