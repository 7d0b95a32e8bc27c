"""Concurrent registrations on one node (SPEC §13): each is a separate request and each should succeed, as
in Consul. Found by the sharing tests: with ACLs off the vetting compare-and-set used to give up with a 503
when other writers kept adding instances to the node; now, without ACLs, check and write are one unit."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.cluster import running_cluster
from tests.sharing import registration

WRITERS, EACH = 8, 25


def test_concurrent_registrations_on_one_node_all_succeed(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "data") as cluster:

        def writer(number: int) -> Counter[tuple[int, str]]:
            answers: Counter[tuple[int, str]] = Counter()
            with httpx.Client(base_url=cluster.http_url, timeout=30) as client:
                for i in range(EACH):
                    body = registration(f"svc-{number}-{i}", f"svc-{number}-{i}", "shared-node")
                    answer = client.put("/v1/catalog/register", json=body)
                    answers[(answer.status_code, answer.text)] += 1
            return answers

        with ThreadPoolExecutor(WRITERS) as pool:
            answers = sum(pool.map(writer, range(WRITERS)), Counter[tuple[int, str]]())
        assert answers == {(200, "true"): WRITERS * EACH}
        services = httpx.get(f"{cluster.http_url}/v1/catalog/node/shared-node", timeout=30).json()["Services"]
        assert len(services) == WRITERS * EACH
