"""The acceptance walk of issue 13: cluster A is three replicas on PostgreSQL behind one address (a TCP
load balancer, `tests/lb.py`), cluster B is a plain SQLite process (SPEC §15).

A makes the token with `ServerExternalAddresses` = the balancer, B establishes and heartbeats through
it. The balancer sends B's connections to replicas that do NOT hold the lease, so A's owner, which decides
`FAILING`, only knows of B's heartbeats through the shared liveness table. Then the owner is killed -9:
B stays `ACTIVE` (any replica answers it) and A stays `ACTIVE` on every replica. A delete on B turns A
`TERMINATED` as seen from every replica.
"""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.cluster import running_cluster
from tests.lb import balancing
from tests.test_ha import replicas, report
from tests.test_ha_failover import TTL, lease

pytestmark = pytest.mark.slow
TIMEOUT = 2.0  # A's --heartbeat-timeout: the walk runs several of them


def states(http: httpx.Client, urls: list[str], name: str) -> list[str]:
    return [http.get(f"{url}/v1/peering/{name}").json()["State"] for url in urls]


def test_three_replicas_behind_one_address_and_a_sqlite_peer(tmp_path: Path, postgres: str) -> None:
    with (
        replicas(tmp_path, postgres, 3, "--heartbeat-timeout", str(TIMEOUT)) as a,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", "--heartbeat-interval", "0.2") as b,
        balancing([r.peering_addr for r in a]) as lb,
        httpx.Client(timeout=10) as http,
    ):
        deadline = time.monotonic() + 10
        while lease(postgres)[0] not in {r.peering_addr for r in a}:
            assert time.monotonic() < deadline, "no replica took the lease"
            time.sleep(0.05)
        owner_addr = lease(postgres)[0]
        [owner] = [r for r in a if r.peering_addr == owner_addr]
        followers = [r for r in a if r is not owner]
        lb.backends = [r.peering_addr for r in followers]  # B's heartbeats never reach the owner directly
        urls = [r.http_url for r in a]

        made = http.post(
            f"{followers[0].http_url}/v1/peering/token",
            json={"PeerName": "cluster-b", "ServerExternalAddresses": [lb.address]},
        )
        assert made.status_code == 200, made.text
        body = {"PeerName": "cluster-a", "PeeringToken": made.json()["PeeringToken"]}
        established = http.post(f"{b.http_url}/v1/peering/establish", json=body)
        assert established.status_code == 200, established.text

        # several heartbeat timeouts pass: the owner hears of B only through the liveness table
        deadline = time.monotonic() + 3 * TIMEOUT
        while time.monotonic() < deadline:
            assert states(http, urls, "cluster-b") == ["ACTIVE"] * 3
            time.sleep(0.1)
        shown = [http.get(f"{u}/v1/peering/cluster-b").json()["StreamStatus"]["LastHeartbeat"] for u in urls]
        assert all(shown), shown  # every replica shows a heartbeat, whichever received it

        lb.backends = [r.peering_addr for r in a]
        owner.process.kill()
        killed_at = time.monotonic()
        survivors = [r.http_url for r in followers]
        not_active_b: list[float] = []
        deadline = killed_at + TTL + 2 + 2 * TIMEOUT
        while time.monotonic() < deadline:
            if http.get(f"{b.http_url}/v1/peering/cluster-a").json()["State"] != "ACTIVE":
                not_active_b.append(time.monotonic() - killed_at)
            assert states(http, survivors, "cluster-b") == ["ACTIVE"] * 2
            time.sleep(0.1)
        report("B not ACTIVE after the owner's kill -9 (s after the kill)", not_active_b)
        assert not not_active_b
        assert lease(postgres)[0] in {r.peering_addr for r in followers}

        deleted = http.delete(f"{b.http_url}/v1/peering/cluster-a")
        assert deleted.status_code == 200, deleted.text
        deadline = time.monotonic() + 10
        while states(http, survivors, "cluster-b") != ["TERMINATED"] * 2:
            assert time.monotonic() < deadline, states(http, survivors, "cluster-b")
            time.sleep(0.1)
