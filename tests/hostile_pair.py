"""Two real clusters peered with each other, and what the attack tests watch while they attack them.

A is the acceptor (ACLs on, default deny, unless a test says otherwise), B the dialer; heartbeats every
0.2 s, `FAILING` after 2 s without one. `Watch` reads the peering on both sides every 0.1 s in a thread;
`Reads` times legitimate reads of A (each on a new connection, from 127.0.0.1) in another; `attacking`
runs `tests.hostile_client`, the attacker, as a process of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.attack import Answer, milliseconds, request, rss_mib
from tests.cluster import Cluster, running_cluster

MANAGEMENT = "0b7d5c3e-9a1f-4e2b-8c6d-1f2e3a4b5c6d"
AUTH = {"X-Consul-Token": MANAGEMENT}
ACLS_ON = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT)
HEARTBEATS = ("--heartbeat-interval", "0.2", "--heartbeat-timeout", "2")
READ_BOUND = 0.100  # s: a legitimate read under attack (issue 11 acceptance), at the 95th percentile
FREEZE_BOUND = 0.5  # s: the slowest single read; the review saw the loop held for 9.4 s
RSS_BOUND = 50.0  # MiB above the RSS before the attack (issue 11 acceptance)
REPO = Path(__file__).resolve().parent.parent


def report(test: str, figures: dict[str, Any]) -> str:
    """Print the figures of a test (visible with `-s`) and return them for assertion messages."""
    line = json.dumps({"test": test, **figures}, default=str)
    sys.stdout.write(f"\nHOSTILE-FIGURES {line}\n")
    return line


@dataclass
class Pair:
    """Two running clusters peered with each other: A accepted (`cluster-b`), B dialed (`cluster-a`)."""

    a: Cluster
    b: Cluster
    a_headers: dict[str, str]

    def read_a(self, timeout: float = 10.0) -> Answer:
        return request(
            self.a.ready["http_addr"], "GET", "/v1/peering/cluster-b", headers=self.a_headers, timeout=timeout
        )

    def read_b(self, timeout: float = 10.0) -> Answer:
        return request(self.b.ready["http_addr"], "GET", "/v1/peering/cluster-a", timeout=timeout)


def both_active(pair: Pair, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while True:
        states = (pair.read_a().json().get("State"), pair.read_b().json().get("State"))
        if states == ("ACTIVE", "ACTIVE"):
            return
        assert time.monotonic() < deadline, f"not ACTIVE on both sides: {states}"
        time.sleep(0.1)


@contextmanager
def peered(tmp_path: Path, a_args: tuple[str, ...] = ACLS_ON, a_env: dict[str, str] | None = None) -> Iterator[Pair]:
    """A (with `a_args` and the environment variables `a_env`) and B, peered through the HTTP API, `ACTIVE`
    on both sides."""
    with (
        running_cluster(tmp_path / "a", "--datacenter", "dc1", *HEARTBEATS, *a_args, env=a_env) as a,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", *HEARTBEATS) as b,
    ):
        headers = AUTH if "--acl-enabled" in a_args else {}
        made = request(a.ready["http_addr"], "POST", "/v1/peering/token", {"PeerName": "cluster-b"}, headers=headers)
        assert made.status == 200, made.text
        body = {"PeerName": "cluster-a", "PeeringToken": made.json()["PeeringToken"]}
        established = request(b.ready["http_addr"], "POST", "/v1/peering/establish", body)
        assert (established.status, established.text) == (200, "{}")
        pair = Pair(a, b, headers)
        both_active(pair)
        yield pair


@dataclass
class Watch:
    """Reads the peering on both sides every `every` s in a thread; records every answer that is not
    200 `ACTIVE`, samples A's RSS, and times B's reads: B is not attacked, so they show how much of a
    slow read of A is the shared machine's."""

    pair: Pair
    every: float = 0.1
    polls: int = 0
    bad: list[str] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    b_seconds: list[float] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            for side, read in (("A", self.pair.read_a), ("B", self.pair.read_b)):
                try:
                    answer = read(timeout=5.0)
                    state = answer.json().get("State") if answer.status == 200 else answer.text[:80]
                except (OSError, ValueError) as exc:
                    answer, state = None, f"{type(exc).__name__}: {exc}"
                if state != "ACTIVE":
                    self.bad.append(f"{side} {answer.status if answer else '-'} {state}")
                elif side == "B" and answer is not None:
                    self.b_seconds.append(answer.seconds)
            self.polls += 1
            self.rss.append(rss_mib(self.pair.a.process.pid))

    @contextmanager
    def running(self) -> Iterator[Watch]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)


@dataclass
class Reads:
    """Legitimate reads of A every `every` s, each on a new connection, in a thread: their durations, and
    every answer that was not a 200."""

    pair: Pair
    every: float = 0.05
    seconds: list[float] = field(default_factory=list)
    connecting: list[float] = field(default_factory=list)  # of which: until the connection was accepted
    failed: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def once(self) -> None:
        started = time.monotonic()
        try:
            answer = self.pair.read_a(timeout=5.0)
            self.connecting.append(answer.connect_seconds)
            if answer.status != 200:
                self.failed.append(f"{answer.status} {answer.text[:80]}")
        except (OSError, ValueError) as exc:
            self.failed.append(f"{type(exc).__name__}: {exc}")
        self.seconds.append(time.monotonic() - started)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.once()

    @contextmanager
    def running(self) -> Iterator[Reads]:
        thread = threading.Thread(target=self._run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(10)

    def figures(self) -> dict[str, Any]:
        return {
            "reads": milliseconds(self.seconds),
            "reads_connect": milliseconds(self.connecting),
            "failed_reads": self.failed[:5],
        }

    def fast(self) -> bool:
        """p95 within `READ_BOUND`, the slowest within `FREEZE_BOUND`, every read a 200."""
        if not self.seconds or self.failed:
            return False
        figures = milliseconds(self.seconds)
        return figures["p95_ms"] <= READ_BOUND * 1000 and figures["max_ms"] <= FREEZE_BOUND * 1000


def warm_up(pair: Pair, count: int = 20) -> None:
    """The first requests load code and fill caches: not part of any measurement."""
    for _ in range(count):
        pair.read_a()


@dataclass
class Attacker:
    """`tests.hostile_client` running with a config; its JSON events, as they come."""

    process: subprocess.Popen[str]
    events: queue.Queue[dict[str, Any] | None] = field(default_factory=queue.Queue)
    seen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def next(self, event: str, timeout: float) -> dict[str, Any]:
        """Wait for the attacker's `event` (bounded); the events before it are kept in `seen`."""
        deadline = time.monotonic() + timeout
        while event not in self.seen:
            item = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            assert item is not None, "the attacker exited early (see its stderr above)"
            self.seen[item["event"]] = item
        return self.seen[event]


@contextmanager
def attacking(config: dict[str, Any]) -> Iterator[Attacker]:
    """Run the attacker process (its sockets need this process's open-file limit, which it inherits)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.hostile_client", json.dumps(config)], stdout=subprocess.PIPE, text=True, cwd=REPO
    )
    attacker = Attacker(process)

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            attacker.events.put(json.loads(line))
        attacker.events.put(None)

    threading.Thread(target=pump, daemon=True).start()
    try:
        yield attacker
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stdout is not None:
            process.stdout.close()


def open_sockets(pid: int) -> int:
    """How many sockets process `pid` holds open (its listeners and connections)."""
    count = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


def settled_rss(pid: int, sockets: int, timeout: float = 10.0) -> float:
    """A's RSS once the attack's connections are gone: once it holds no more open sockets than `sockets` (as
    many as before the attack), looked at every 50 ms for at most `timeout` s (another process's closes
    send no event here)."""
    deadline = time.monotonic() + timeout
    while open_sockets(pid) > sockets and time.monotonic() < deadline:
        time.sleep(0.05)
    return rss_mib(pid)


def server_5xx(stats: dict[str, Any]) -> dict[str, Any]:
    """The request cases the attacker got a 5xx for, with their statuses."""
    return {
        name: case["statuses"]
        for name, case in stats["requests"].items()
        if any(int(status) >= 500 for status in case["statuses"])
    }


_FIELD = re.compile(r'(\w+)=("?)([^\s"]*)\2')


@dataclass
class TextCluster:
    """A cluster logging text lines: its process, the fields of its ready line, its stderr lines."""

    process: subprocess.Popen[bytes]
    ready: dict[str, str]
    lines: list[str]


@contextmanager
def running_text_cluster(data_dir: Path, *args: str) -> Iterator[TextCluster]:
    """`peering serve --log-format text` (what an operator reads in a terminal), ready once it logged so;
    `ready` holds the `key=value` fields of its ready line, `lines` every line of its stderr (split at LF
    only, CRs kept)."""
    command = [sys.executable, "-m", "peering", "serve", "--data-dir", str(data_dir), "--log-format", "text",
               "--http-addr", "127.0.0.1:0", "--peering-addr", "127.0.0.1:0", *args]  # fmt: skip
    # bytes, split at LF only: text mode would turn a CR into a line break and hide a forged line
    process = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    lines: list[str] = []
    ready = threading.Event()
    fields: dict[str, str] = {}

    def pump() -> None:
        assert process.stderr is not None
        for data in process.stderr:
            line = data.decode("utf-8", errors="backslashreplace")
            lines.append(line)
            if "cluster ready" in line and not ready.is_set():
                fields.update({key: value for key, _, value in _FIELD.findall(line)})
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    try:
        assert ready.wait(30), "".join(lines)
        assert "http_addr" in fields, "".join(lines)
        yield TextCluster(process, fields, lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
