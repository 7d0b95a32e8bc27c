"""The background owner among three replicas on PostgreSQL (SPEC §15), with real processes and signals.

Cluster A is three replicas on one database (lease TTL 2 s); cluster B is a plain SQLite process.
B makes a token, A establishes through replica 1, so A is the dialer and its lease owner heartbeats B
every 0.2 s. Who sends is read from the kernel: `ss` gives the bytes each process's sockets have sent
to B's peering port, so a sender is a process whose count grew (no log, no cooperation of the code).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.cluster import Cluster, running_cluster
from tests.postgres import run_async
from tests.test_ha import FAST, replicas, report

pytestmark = pytest.mark.slow
TTL = 2.0
_SOCKET = re.compile(r"127\.0\.0\.1:(\d+)\s+127\.0\.0\.1:(\d+).*?pid=(\d+)")
_SENT = re.compile(r"bytes_sent:(\d+)")


def sent_to(port: int) -> dict[tuple[int, int], int]:
    """(pid, local port) → bytes sent, for every established TCP socket to 127.0.0.1:`port`."""
    out = subprocess.run(
        ["ss", "-tnpiH", "state", "established", "dst", f"127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout
    found: dict[tuple[int, int], int] = {}
    key: tuple[int, int] | None = None
    for line in out.splitlines():
        socket = _SOCKET.search(line)
        if socket is not None:
            key = (int(socket.group(3)), int(socket.group(1)))
            found[key] = 0
        sent = _SENT.search(line)
        if sent is not None and key is not None:
            found[key] = int(sent.group(1))
    return found


def senders(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> set[int]:
    """The PIDs that sent anything between two samples (a grown count or a new connection)."""
    return {pid for (pid, local), count in after.items() if count > before.get((pid, local), 0)}


def senders_within(port: int, seconds: float) -> set[int]:
    first = sent_to(port)
    time.sleep(seconds)  # a sampling window: heartbeats go out every 0.2 s
    return senders(first, sent_to(port))


async def _lease(dsn: str) -> tuple[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow("SELECT holder_addr, epoch FROM leases WHERE name = 'background'")
        return (str(row[0]), int(row[1])) if row else ("", 0)
    finally:
        await conn.close()


def lease(dsn: str) -> tuple[str, int]:
    """The owner's peering address and the epoch, as the database has them."""
    result: tuple[str, int] = run_async(_lease(dsn))
    return result


@contextlib.contextmanager
def peered_replicas(tmp_path: Path, dsn: str) -> Iterator[tuple[list[Cluster], Cluster]]:
    """A (three replicas, the dialer) peered with B (SQLite, the acceptor), ACTIVE on both sides."""
    with (
        running_cluster(tmp_path / "b", "--datacenter", "dc2", "--heartbeat-timeout", "20") as b,
        replicas(tmp_path, dsn, 3) as a,
        httpx.Client(timeout=10) as http,
    ):
        made = http.post(f"{b.http_url}/v1/peering/token", json={"PeerName": "cluster-a"})
        assert made.status_code == 200, made.text
        body = {"PeerName": "cluster-b", "PeeringToken": made.json()["PeeringToken"]}
        established = http.post(f"{a[0].http_url}/v1/peering/establish", json=body)
        assert established.status_code == 200, established.text
        deadline = time.monotonic() + 15
        while http.get(f"{b.http_url}/v1/peering/cluster-a").json()["State"] != "ACTIVE":
            assert time.monotonic() < deadline, "B never saw A's heartbeats"
            time.sleep(0.05)
        yield a, b


def owner_of(a: list[Cluster], dsn: str) -> Cluster:
    address, _ = lease(dsn)
    [owner] = [r for r in a if r.peering_addr == address]
    return owner


def wait_for_sender(port: int, not_pids: set[int], within: float) -> tuple[int, float]:
    """The first process outside `not_pids` seen sending to `port`, and when (monotonic)."""
    deadline = time.monotonic() + within
    last = sent_to(port)
    while time.monotonic() < deadline:
        time.sleep(0.02)
        now = sent_to(port)
        fresh = senders(last, now) - not_pids
        if fresh:
            return fresh.pop(), time.monotonic()
        last = now
    raise AssertionError(f"no other replica sent a heartbeat within {within} s")


def test_one_owner_heartbeats_and_another_takes_over_at_kill_9_and_sigstop(tmp_path: Path, postgres: str) -> None:
    with peered_replicas(tmp_path, postgres) as (a, b):
        port = int(b.peering_addr.rsplit(":", 1)[1])
        pids = {r.process.pid for r in a}
        owner = owner_of(a, postgres)
        # replica 1 established: its connection to B may still be open but idle; only the owner sends
        time.sleep(1.0)
        assert senders_within(port, 1.5) & pids == {owner.process.pid}
        _, epoch = lease(postgres)

        owner.process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        new_pid, resumed_at = wait_for_sender(port, {owner.process.pid}, TTL + 5)
        takeover = resumed_at - killed_at
        report("kill -9 takeover (s)", round(takeover, 3))
        assert new_pid in pids
        assert takeover < TTL + 2, takeover
        second = owner_of(a, postgres)
        assert second.process.pid == new_pid
        assert lease(postgres)[1] > epoch

        # freeze the new owner: the third replica takes over; once woken, the frozen one sends nothing more
        second.process.send_signal(signal.SIGSTOP)
        stopped_at = time.monotonic()
        try:
            third_pid, took_at = wait_for_sender(port, {owner.process.pid, second.process.pid}, TTL + 5)
            report("SIGSTOP takeover (s)", round(took_at - stopped_at, 3))
            assert took_at - stopped_at < TTL + 2
            before = sent_to(port)
        finally:
            second.process.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        late = senders(before, sent_to(port))
        assert second.process.pid not in late, "the woken replica sent a heartbeat after losing its lease"
        assert third_pid in late  # the new owner goes on
        assert owner_of(a, postgres).process.pid == third_pid
        with httpx.Client(timeout=10) as http:
            assert http.get(f"{b.http_url}/v1/peering/cluster-a").json()["State"] == "ACTIVE"
        os.kill(second.process.pid, 0)  # still alive, as a follower


def test_graceful_shutdown_hands_the_lease_over_at_once(tmp_path: Path, postgres: str) -> None:
    with peered_replicas(tmp_path, postgres) as (a, b):
        port = int(b.peering_addr.rsplit(":", 1)[1])
        owner = owner_of(a, postgres)
        stopping = time.monotonic()
        assert owner.stop() == 0
        _, resumed_at = wait_for_sender(port, {owner.process.pid}, TTL + 5)
        report("graceful handover (s)", round(resumed_at - stopping, 3))
        # released, not expired: the next try (every TTL / 3) takes it
        assert resumed_at - stopping < TTL, resumed_at - stopping


def test_status_of_replicas_is_in_the_lease_and_registry(tmp_path: Path, postgres: str) -> None:
    with replicas(tmp_path, postgres, 2, *FAST) as [one, two], httpx.Client(timeout=10) as http:
        deadline = time.monotonic() + 10
        while lease(postgres)[0] not in (one.peering_addr, two.peering_addr):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        for replica in (one, two):
            assert http.get(f"{replica.http_url}/v1/status/leader").status_code == 200
