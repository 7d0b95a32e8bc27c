"""The remaining HA scenarios of issue 13 with real replica processes on PostgreSQL (SPEC §15):
replicas starting at once make one cluster; concurrent establishes for one remote cluster on two
replicas give one success; writes through three replicas in parallel are seen in index order by every
watcher; a PostgreSQL restart under load loses no acknowledged write.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.cluster import Cluster, running_cluster
from tests.postgres import Backend, PostgresServer, run_async
from tests.test_ha import FAST, replicas, report, with_password
from tests.test_ha_failover import lease

pytestmark = pytest.mark.slow


@contextlib.contextmanager
def started_together(tmp_path: Path, dsn: str, count: int) -> Iterator[list[Cluster]]:
    """`count` replicas whose processes start at the same moment (each in a thread of its own)."""
    with contextlib.ExitStack() as stack:
        managers = [
            running_cluster(tmp_path / f"t{i}", "--database-url", with_password(dsn), *FAST) for i in range(count)
        ]
        go = threading.Barrier(count)

        def enter(manager: contextlib.AbstractContextManager[Cluster]) -> Cluster:
            go.wait(10)
            return manager.__enter__()

        with ThreadPoolExecutor(count) as pool:
            futures = [pool.submit(enter, m) for m in managers]
            started: list[Cluster] = []
            for manager, future in zip(managers, futures, strict=True):
                with contextlib.suppress(Exception):
                    started.append(future.result(60))
                    stack.push(manager.__exit__)
        assert len(started) == count, "a replica failed to start"
        yield started


def test_replicas_starting_at_once_are_one_cluster(tmp_path: Path, postgres: str) -> None:
    with started_together(tmp_path, postgres, 3) as started:
        assert len({r.ready["cluster_id"] for r in started}) == 1
        rows = run_async(Backend("postgres", tmp_path, postgres).count("cluster_identity"))
        assert rows == 1
        cas = {(tmp_path / f"t{i}" / "ca.pem").read_text() for i in range(3)}
        assert len(cas) == 1


def test_concurrent_establishes_for_one_remote_cluster_on_two_replicas_give_one_success(
    tmp_path: Path, postgres: str
) -> None:
    with (
        running_cluster(tmp_path / "b", "--datacenter", "dc2") as b,
        replicas(tmp_path, postgres, 2) as [one, two],
        httpx.Client(timeout=20) as http,
    ):
        token = http.post(f"{b.http_url}/v1/peering/token", json={"PeerName": "cluster-a"}).json()["PeeringToken"]
        go = threading.Barrier(2)

        def establish(replica: Cluster, name: str) -> httpx.Response:
            go.wait(10)
            body = {"PeerName": name, "PeeringToken": token}
            return http.post(f"{replica.http_url}/v1/peering/establish", json=body)

        with ThreadPoolExecutor(2) as pool:
            answers = list(pool.map(establish, [one, two], ["to-b-1", "to-b-2"]))
        statuses = sorted(a.status_code for a in answers)
        report("concurrent establishes (statuses)", statuses)
        assert statuses.count(200) == 1, [a.text for a in answers]
        assert all(400 <= s < 500 or s == 502 for s in statuses if s != 200), [a.text for a in answers]
        live = run_async(
            Backend("postgres", tmp_path, postgres).count("peerings", "deleted_at IS NULL AND state <> 'TERMINATED'")
        )
        assert live == 1


def test_parallel_writes_through_three_replicas_are_seen_in_index_order(tmp_path: Path, postgres: str) -> None:
    per_writer = 12
    with replicas(tmp_path, postgres, 3) as a, httpx.Client(timeout=40) as http:
        stop = threading.Event()
        seen: list[list[int]] = [[] for _ in a]

        def watch(i: int) -> None:
            index = int(http.get(f"{a[i].http_url}/v1/peerings").headers["X-Consul-Index"])
            while not stop.is_set():
                answer = http.get(f"{a[i].http_url}/v1/peerings", params={"index": index, "wait": "2s"})
                index = int(answer.headers["X-Consul-Index"])
                seen[i].append(index)

        def write(i: int) -> list[str]:
            names = []
            for n in range(per_writer):
                name = f"w{i}-{n}"
                made = http.post(f"{a[i].http_url}/v1/peering/token", json={"PeerName": name})
                assert made.status_code == 200, made.text
                names.append(name)
            return names

        watchers = [threading.Thread(target=watch, args=(i,)) for i in range(3)]
        for w in watchers:
            w.start()
        time.sleep(0.3)
        with ThreadPoolExecutor(3) as pool:
            written = [name for names in pool.map(write, range(3)) for name in names]
        deadline = time.monotonic() + 5
        for replica in a:
            while len(http.get(f"{replica.http_url}/v1/peerings").json()) < len(written):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert sorted(p["Name"] for p in http.get(f"{replica.http_url}/v1/peerings").json()) == sorted(written)
        stop.set()
        for w in watchers:
            w.join(10)
        for indexes in seen:
            assert indexes, "a watcher saw nothing"
            # a wait that ends without news answers the same index again; never a smaller one
            assert all(later >= earlier for earlier, later in itertools.pairwise(indexes)), indexes
        report("watcher answers per replica", [len(s) for s in seen])


def test_a_postgresql_restart_under_load_loses_no_acknowledged_write(
    tmp_path: Path, postgres: str, postgres_server: PostgresServer
) -> None:
    if postgres_server.bindir is None:
        pytest.skip("an external server (PEERING_TEST_PG_DSN) is not ours to restart")
    with replicas(tmp_path, postgres, 2) as a, httpx.Client(timeout=20) as http:
        stop = threading.Event()
        acknowledged: list[str] = []
        refused: list[int] = []

        def write(i: int) -> None:
            n = 0
            while not stop.is_set():
                name = f"r{i}-{n}"
                n += 1
                try:
                    made = http.post(f"{a[i].http_url}/v1/peering/token", json={"PeerName": name})
                except httpx.HTTPError:
                    refused.append(0)
                    continue
                if made.status_code == 200:
                    acknowledged.append(name)
                else:
                    refused.append(made.status_code)
                    time.sleep(0.05)

        writers = [threading.Thread(target=write, args=(i,)) for i in range(2)]
        for w in writers:
            w.start()
        try:
            time.sleep(1.0)
            before = len(acknowledged)
            postgres_server.restart()
            restarted_at = time.monotonic()
            deadline = restarted_at + 15
            while len(acknowledged) <= before + 10:
                assert time.monotonic() < deadline, "writes did not resume after the restart"
                time.sleep(0.05)
            report("writes resumed after the restart (s)", round(time.monotonic() - restarted_at, 2))
        finally:
            stop.set()
            for w in writers:
                w.join(30)
            postgres_server.start()
        stored = {p["Name"] for p in http.get(f"{a[1].http_url}/v1/peerings").json()}
        lost = [name for name in acknowledged if name not in stored]
        report("acknowledged writes / lost / refused", (len(acknowledged), len(lost), sorted(refused)))
        assert lost == []
        # a pooled connection the restart left mid-operation is unavailable too: only 503s, never a 500
        assert set(refused) <= {503}, sorted(set(refused))


def test_postgresql_down_answers_503_quickly_and_everything_resumes(
    tmp_path: Path, postgres: str, postgres_server: PostgresServer
) -> None:
    if postgres_server.bindir is None:
        pytest.skip("an external server (PEERING_TEST_PG_DSN) is not ours to stop")
    with replicas(tmp_path, postgres, 2) as a, httpx.Client(timeout=30) as http:
        assert http.post(f"{a[0].http_url}/v1/peering/token", json={"PeerName": "before"}).status_code == 200
        postgres_server.stop_server()
        try:
            for replica in a:
                began = time.monotonic()
                answer = http.post(f"{replica.http_url}/v1/peering/token", json={"PeerName": "during"})
                took = time.monotonic() - began
                report("write while PostgreSQL is down: status, seconds", (answer.status_code, round(took, 2)))
                assert answer.status_code == 503, answer.text
                assert "database unavailable" in answer.text.lower()
                assert took < 7.0  # the store's budget (5 s) and a little
        finally:
            postgres_server.start()
        deadline = time.monotonic() + 15
        for replica in a:
            while http.post(f"{replica.http_url}/v1/peering/token", json={"PeerName": "after"}).status_code != 200:
                assert time.monotonic() < deadline, "a replica did not resume by itself"
                time.sleep(0.1)
        listed = http.get(f"{a[1].http_url}/v1/peerings")
        assert {p["Name"] for p in listed.json()} == {"before", "after"}  # nothing of the refused write landed
        # the LISTEN connection came back too: a write through replica 1 wakes a blocking query on replica 2
        woke: list[float] = []
        index = listed.headers["X-Consul-Index"]

        def block() -> None:
            http.get(f"{a[1].http_url}/v1/peerings", params={"index": index, "wait": "20s"})
            woke.append(time.monotonic())

        waiter = threading.Thread(target=block)
        waiter.start()
        time.sleep(0.3)
        wrote_at = time.monotonic()
        assert http.post(f"{a[0].http_url}/v1/peering/token", json={"PeerName": "woken"}).status_code == 200
        waiter.join(20)
        report("wake-up across replicas after the outage (s)", round(woke[0] - wrote_at, 3))
        assert woke[0] - wrote_at < 1.0
        while lease(postgres)[0] not in {r.peering_addr for r in a}:
            assert time.monotonic() < deadline, "no replica took the lease again"
            time.sleep(0.1)
