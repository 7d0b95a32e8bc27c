"""kill -9 mid-sync (SPEC §14): real `peering serve` processes, an initial sync of 1,000 services.

The exporter gets 1,000 services of 1-3 instances each (2,000 registrations through
`PUT /v1/catalog/register`); B dials A through a relay of A's peer port (`tests/relay.py`). Just
before the export entry is written the relay is told to let only 1.5 pages' worth of bytes through
from the exporter to the importer: the first page arrives and is applied, the second is held half-way.
That is where the kill lands, every run: the importer shows some of the services and not all. Then the
killed process (the importer or the exporter) is started again on the same data dir, the relay lets
everything through, and the importer converges. A killed importer is killed once more as soon as the
next page lands (pages flowing again: that kill falls while one travels or is being applied).

A watcher reads the importer's whole imported catalog (`/v1/health/state/any?peer=`, one snapshot per
answer) after every change it makes, before the kill and after the restart: each service is either absent
or there with its full instance set, never half. At the end the importer's `/v1/imported-services` and
each service's `?peer=` health equal the exporter's `/v1/exported-services` and local health.

Both directions: `pull` (A, the acceptor, exports; B pulls) and `push` (B, the dialer, exports; it
pushes to A). Last, an exporter that comes back without its export marks (a new generation) is followed
by a full resync of identical data that moves no index on the importer.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.peer.wire import PAGE_BUDGET
from tests.cluster import Cluster, running_cluster
from tests.relay import Direction, relaying
from tests.sharing import (
    A_NAME,
    B_NAME,
    HEARTBEATS,
    export,
    health,
    instance_view,
    peer,
    peer_names,
    register_all,
    registration,
    wait_for,
)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SERVICES = 1000
NODES = 40
META_BYTES = 340  # per instance: about 800 bytes each on the wire, so the sync takes 3-4 pages
CONVERGE = 90.0  # seconds the importer may take after the restart (a backoff may have grown meanwhile)


def expected_instances() -> dict[str, set[str]]:
    """Service name -> its instance IDs: 1,000 services of 1, 2 or 3 instances."""
    return {f"svc-{i:04d}": {f"svc-{i:04d}-{j}" for j in range(1 + i % 3)} for i in range(SERVICES)}


def bodies() -> list[dict[str, Any]]:
    found = []
    for number, (name, ids) in enumerate(sorted(expected_instances().items())):
        for j, sid in enumerate(sorted(ids)):
            node = f"node-{(number * 3 + j) % NODES:02d}"
            found.append(registration(name, sid, node, port=8000 + j, meta_bytes=META_BYTES))
    return found


@dataclass
class Watcher:
    """Reads the importer's imported catalog after every change (blocking queries) and checks each snapshot."""

    peer: str
    expected: dict[str, set[str]]
    snapshots: list[int] = field(default_factory=list)  # instances seen, per snapshot
    since: int = 0  # snapshots before this one were taken by an earlier `watching()`
    failure: BaseException | None = None  # what stopped the watcher thread
    problems: list[str] = field(default_factory=list)
    _changed: threading.Condition = field(default_factory=threading.Condition)

    def check(self, checks: list[dict[str, Any]]) -> int:
        seen: dict[str, set[str]] = {}
        for check in checks:
            seen.setdefault(check["ServiceName"], set()).add(check["ServiceID"])
            if check["CheckID"] != check["ServiceID"] + ":overall-check" or check.get("PeerName") != self.peer:
                self.problems.append(f"unexpected check {check}")
        for name, ids in seen.items():
            if ids != self.expected.get(name):
                self.problems.append(f"{name} half-applied: {sorted(ids)} of {sorted(self.expected.get(name, ()))}")
        count = sum(len(ids) for ids in seen.values())
        with self._changed:
            self.snapshots.append(count)
            self._changed.notify_all()
        return count

    @contextmanager
    def watching(self, base_url: str) -> Iterator[Watcher]:
        stop = threading.Event()
        failed: list[BaseException] = []
        self.since = len(self.snapshots)

        def run() -> None:
            index = ""
            try:
                with httpx.Client(base_url=base_url, timeout=30) as client:
                    while not stop.is_set():
                        try:
                            answer = client.get(
                                "/v1/health/state/any", params={"peer": self.peer, "index": index or "0", "wait": "1s"}
                            )
                        except httpx.TransportError:
                            if stop.is_set():  # the process was killed under us
                                return
                            raise
                        assert answer.status_code == 200, answer.text
                        if answer.headers["X-Consul-Index"] != index:
                            index = answer.headers["X-Consul-Index"]
                            self.check(answer.json())
            except BaseException as exc:  # noqa: BLE001  (reported by the test thread)
                failed.append(exc)
                with self._changed:
                    self.failure = exc
                    self._changed.notify_all()

        thread = threading.Thread(target=run, name="watcher", daemon=True)
        thread.start()
        try:
            yield self
        finally:
            stop.set()
            thread.join(10)
        if failed:
            raise failed[0]

    def wait(self, condition: Any, timeout: float) -> int:
        """Block until a snapshot's instance count satisfies `condition`; returns that count."""
        with self._changed:
            ok = self._changed.wait_for(
                lambda: (
                    self.failure is not None or (len(self.snapshots) > self.since and condition(self.snapshots[-1]))
                ),
                timeout,
            )
            if self.failure is not None:
                raise AssertionError("the watcher failed") from self.failure
            assert ok, f"the importer never got there: snapshots {self.snapshots}"
            return self.snapshots[-1]


class Pair:
    """A (acceptor) and B (dialer), peered through a relay of A's peer port; either can be killed and restarted
    on its data dir."""

    def __init__(self, tmp_path: Path, stack: ExitStack) -> None:
        self.tmp, self.stack = tmp_path, stack
        self.a = self.start("a")
        self.b = self.start("b")
        self.relay = stack.enter_context(relaying(self.a.peering_addr))
        peer(self.a.http_url, self.b.http_url, addresses=[self.relay.address])

    def start(self, which: str) -> Cluster:
        datacenter = "dc1" if which == "a" else "dc2"
        return self.stack.enter_context(running_cluster(self.tmp / which, "--datacenter", datacenter, *HEARTBEATS))

    def kill_and_restart(self, which: str, sig: int = signal.SIGKILL, meanwhile: Any = None) -> Cluster:
        """Stop `which` ("a" or "b") with `sig`, call `meanwhile()`, start it again on its data dir."""
        old = self.a if which == "a" else self.b
        assert old.stop(sig) == (-signal.SIGKILL if sig == signal.SIGKILL else 0)
        if meanwhile is not None:
            meanwhile()
        new = self.start(which)
        if which == "a":
            self.a = new
            self.relay.retarget(new.peering_addr)
        else:
            self.b = new
        return new


def assert_imports_equal_exports(exporter: Cluster, importer: Cluster, exporter_name: str, importer_name: str) -> None:
    """The importer's imported services and each one's `?peer=` health are the exporter's, exactly."""
    exported = httpx.get(f"{exporter.http_url}/v1/exported-services", timeout=30).json()
    assert exported == [{"Service": s, "Consumers": {"Peers": [exporter_name]}} for s in sorted(expected_instances())]
    imported = httpx.get(f"{importer.http_url}/v1/imported-services", timeout=30).json()
    assert imported == [{"Service": e["Service"], "SourcePeer": importer_name} for e in exported]

    def compare(services: list[str]) -> None:
        with (
            httpx.Client(base_url=exporter.http_url, timeout=30) as there,
            httpx.Client(base_url=importer.http_url, timeout=30) as here,
        ):
            for service in services:
                exported_view = health(there, service)
                imported_view = health(here, service, peer=importer_name)
                assert instance_view(imported_view) == instance_view(exported_view), service
                assert peer_names(imported_view) == {importer_name}, service
                assert all(len(e["Checks"]) == 1 for e in imported_view), service

    names = sorted(expected_instances())
    with ThreadPoolExecutor(2) as pool:
        list(pool.map(compare, [names[k::2] for k in range(2)]))
    counts = httpx.get(f"{importer.http_url}/v1/peering/{importer_name}", timeout=30).json()
    assert counts["ImportedServiceCount"] == SERVICES
    sent = httpx.get(f"{exporter.http_url}/v1/peering/{exporter_name}", timeout=30).json()
    assert sent["ExportedServiceCount"] == SERVICES


@pytest.mark.parametrize("direction", ["pull", "push"])
@pytest.mark.parametrize("killed", ["importer", "exporter"])
def test_a_kill_mid_sync_never_leaves_half_a_service_and_the_restart_converges(
    tmp_path: Path, killed: str, direction: str
) -> None:
    expected = expected_instances()
    total = sum(map(len, expected.values()))
    with ExitStack() as stack:
        pair = Pair(tmp_path, stack)
        # pull: A exports, B imports (A -> B is "down"); push: B exports to A ("up")
        exporter_side, importer_side = ("a", "b") if direction == "pull" else ("b", "a")
        flow: Direction = "down" if direction == "pull" else "up"
        exporter_name, importer_name = (A_NAME, B_NAME) if direction == "pull" else (B_NAME, A_NAME)

        def cluster(side: str) -> Cluster:
            return pair.a if side == "a" else pair.b

        register_all(cluster(exporter_side).http_url, bodies())
        watcher = Watcher(importer_name, expected)
        with watcher.watching(cluster(importer_side).http_url):
            assert watcher.wait(lambda n: n == 0, 30) == 0
            pair.relay.limit(flow, int(1.5 * PAGE_BUDGET))
            export(cluster(exporter_side).http_url, [("*", [exporter_name])])
            seen = watcher.wait(lambda n: n > 0, 60)
            assert pair.relay.wait_held(flow, 60), "the second page never reached the relay's limit"
            assert 0 < seen < total, seen  # mid-sync: the first page applied, the rest held in the relay
        # the relay holds the rest: nothing more can arrive, so this is what the kill interrupts
        assert watcher.snapshots[-1] == seen
        pair.kill_and_restart(exporter_side if killed == "exporter" else importer_side)

        with watcher.watching(cluster(importer_side).http_url):
            # what the importer holds after the kill (and its own restart): the applied pages, whole
            assert watcher.wait(lambda n: True, 30) == seen
            pair.relay.unlimit()
            moved = watcher.wait(lambda n: n != seen, CONVERGE)
        if killed == "importer" and moved < total:
            # pages flow again: a second kill at once lands while the next one travels or is being applied
            pair.kill_and_restart(importer_side)
            with watcher.watching(cluster(importer_side).http_url):
                assert watcher.wait(lambda n: True, 30) >= moved
        with watcher.watching(cluster(importer_side).http_url):
            watcher.wait(lambda n: n == total, CONVERGE)
        wait_for(
            cluster(importer_side).http_url,
            "/v1/imported-services",
            lambda found: len(found) == SERVICES,
            timeout=CONVERGE,
        )
        assert not watcher.problems, watcher.problems[:5]
        assert len(watcher.snapshots) >= 4, watcher.snapshots
        assert_imports_equal_exports(cluster(exporter_side), cluster(importer_side), exporter_name, importer_name)


def _rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{data_dir / 'peering.db'}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql).fetchall()


HEAD = (
    "SELECT g.generation, (SELECT max(seq) FROM export_marks m WHERE m.peering_id = g.peering_id) "
    "FROM export_generations g"
)


def _forget_exports(data_dir: Path) -> None:
    """What an exporter restored from a backup taken before it exported anything holds: no marks."""
    with closing(sqlite3.connect(data_dir / "peering.db", timeout=30)) as db:
        db.execute("DELETE FROM export_marks")
        db.execute("DELETE FROM export_generations")
        db.commit()


@pytest.mark.parametrize("direction", ["pull", "push"])
def test_an_exporter_that_lost_its_marks_is_followed_by_a_full_resync_that_moves_no_index(
    tmp_path: Path, direction: str
) -> None:
    """SPEC §14 "after any gap a full resync happens by itself": the exporter is stopped and comes back without
    its export marks (a new generation); the importer takes the full resend (its import state names the new
    generation) and, the data being identical, no catalog index moves on it."""
    with ExitStack() as stack:
        pair = Pair(tmp_path, stack)
        exporter_side, importer_side = ("a", "b") if direction == "pull" else ("b", "a")
        exporter_name, importer_name = (A_NAME, B_NAME) if direction == "pull" else (B_NAME, A_NAME)

        def cluster(side: str) -> Cluster:
            return pair.a if side == "a" else pair.b

        register_all(cluster(exporter_side).http_url, [registration(f"s{i}", f"s{i}-0", "n1") for i in range(20)])
        export(cluster(exporter_side).http_url, [("*", [exporter_name])])
        importer_url = cluster(importer_side).http_url
        wait_for(importer_url, "/v1/imported-services", lambda found: len(found) == 20)
        before = [
            httpx.get(f"{importer_url}{path}", params={"peer": importer_name}, timeout=30).headers["X-Consul-Index"]
            for path in ("/v1/catalog/services", "/v1/health/state/any")
        ]
        (old,) = _rows(tmp_path / importer_side, "SELECT generation FROM import_states")[0]
        pair.kill_and_restart(exporter_side, signal.SIGTERM, lambda: _forget_exports(tmp_path / exporter_side))

        deadline = time.monotonic() + 30
        while True:  # polled: only the importer's stored import state says that it took the resend
            exported = _rows(tmp_path / exporter_side, HEAD)
            applied = _rows(tmp_path / importer_side, "SELECT generation, applied_seq FROM import_states")[0]
            if exported and applied == exported[0] and applied[0] != old:
                break  # the new generation, up to its head
            assert time.monotonic() < deadline, f"the importer never took generation {exported} (holds {applied})"
            time.sleep(0.05)
        after = [
            httpx.get(f"{importer_url}{path}", params={"peer": importer_name}, timeout=30).headers["X-Consul-Index"]
            for path in ("/v1/catalog/services", "/v1/health/state/any")
        ]
        assert after == before
        imported = httpx.get(f"{importer_url}/v1/imported-services", timeout=30).json()
        assert imported == [{"Service": f"s{i}", "SourcePeer": importer_name} for i in sorted(range(20), key=str)]
