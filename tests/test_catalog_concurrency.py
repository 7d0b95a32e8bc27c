"""Concurrent registrations on one node (SPEC §13): each is a separate request and each should succeed, as
in Consul; found by the sharing tests (tests/sharing.py registers a node's instances on one connection)."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cluster import running_cluster
from tests.sharing import registration

WRITERS, EACH = 8, 25


@pytest.mark.xfail(
    strict=False,  # how many collide depends on the timing: usually some of the 200 do, not always
    reason="catalog/vetting.py compares the node's instance list before and inside the unit even with ACLs off; "
    "other writers adding instances to the node make it give up after 5 attempts with a 503",
)
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
