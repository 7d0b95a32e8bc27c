"""Acknowledged writes survive `kill -9` (SPEC §11): a real `peering serve` is killed mid-stream, again and again.

A few writer threads send token generations, regenerations, deletes and ACL policy writes; the server is
SIGKILLed after a random number of answered (or sent) writes, the database file is checked read-only,
the server is restarted on the same data dir, and everything a 200 promised must be there.

Each writer owns its names, so per name the writes are sequential and at most one is in flight when the
server dies: that one may or may not have been committed, and both outcomes are accepted, but nothing
in between (a secret without its index bump, a half-applied delete) is.
"""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import sqlite3
import threading
import time
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.cluster import hash_secret
from tests.cluster import Cluster, running_cluster

pytestmark = pytest.mark.slow

ROUNDS = 8
WRITERS = 4
SEED = int(os.environ.get("CRASH_TEST_SEED", "20251124"))
MANAGEMENT = "c0000000-0000-4000-8000-00000000000c"
SERVE_ARGS = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT)
RULES = 'peering = "read"'
OPERATIONS = ("create", "regenerate", "delete", "policy", "policy-update")
WEIGHTS = (4, 3, 2, 1, 1)
MAX_WRITES_PER_WRITER = 400  # a bound in case the kill never comes


@dataclass
class PeerFacts:
    """What a writer knows about one of its peer names, from the answers it got."""

    id: str = ""
    hash: str | None = None  # hash of the establishment secret in the last acknowledged token
    index: int = 0  # that write's ModifyIndex, if the read after it was answered (0: unknown)
    floor: int = 0  # a lower bound of it: above every index answered before the write was sent
    deleted: bool = False  # a DELETE was acknowledged
    pending: str = ""  # "create", "regenerate" or "delete" that was sent but never answered


@dataclass
class PolicyFacts:
    """What a writer knows about one of its ACL policies."""

    id: str = ""  # empty while its create is unanswered
    description: str = ""
    index: int = 0
    pending: str | None = None  # the Description of a create or update that was never answered


@dataclass
class WriterModel:
    """One writer's names and policies, kept across rounds."""

    number: int
    peers: dict[str, PeerFacts] = field(default_factory=dict)
    policies: dict[str, PolicyFacts] = field(default_factory=dict)
    next_name: int = 0

    def new_name(self, prefix: str) -> str:
        self.next_name += 1
        return f"{prefix}w{self.number}-{self.next_name}"


@dataclass(frozen=True)
class Seen:
    """One peering as the database file or the restarted server shows it."""

    id: str
    state: str
    deleted: bool
    modify_index: int
    hash: str | None = None  # the stored establishment hash (only the database view has it)


@dataclass(frozen=True)
class Snapshot:
    """The database file right after a kill, read with a read-only connection."""

    integrity: list[str]
    journal_mode: str
    counter: int
    peerings: dict[str, Seen]


class Round:
    """One server process, written to by the writers until it is killed."""

    def __init__(self, cluster: Cluster, kill_kind: str, kill_after: int, delay: int, floor: int) -> None:
        self.cluster = cluster
        # "acked": right after that many 200s; "sent": as that many writes go out; "delayed": after that
        # many 200s and then `delay` more requests of the killer's own (a short random delay, not a sleep)
        self.kill_kind = kill_kind
        self.kill_after = kill_after
        self.delay = delay
        self.trigger = threading.Event()
        self.lock = threading.Lock()
        self.acked = 0
        self.sent = 0
        self.max_seen = floor  # the highest index an answer has shown (at first: the counter at the start)
        self.violations: list[str] = []

    def _maybe_kill(self) -> None:
        count = self.acked if self.kill_kind == "acked" else self.sent
        if not self.trigger.is_set() and count >= self.kill_after:
            self.trigger.set()
            if self.kill_kind != "delayed":
                self.cluster.process.send_signal(signal.SIGKILL)

    def killer(self) -> None:
        """For a "delayed" kill: once triggered, a few requests of its own, then SIGKILL."""
        if not self.trigger.wait(timeout=30) or self.kill_kind != "delayed":
            return
        with httpx.Client(base_url=self.cluster.http_url, timeout=5) as http:
            for _ in range(self.delay):
                try:
                    http.get("/v1/status/leader")
                except httpx.TransportError:
                    break
        self.cluster.process.send_signal(signal.SIGKILL)

    def before_send(self) -> int:
        """Count a write about to go out; the highest index answered so far (the write's must exceed it)."""
        with self.lock:
            self.sent += 1
            self._maybe_kill()
            return self.max_seen

    def acknowledged(self, index: int = 0) -> None:
        with self.lock:
            self.acked += 1
            self.max_seen = max(self.max_seen, index)
            self._maybe_kill()

    def saw(self, index: int) -> None:
        with self.lock:
            self.max_seen = max(self.max_seen, index)

    def violation(self, text: str) -> None:
        with self.lock:
            self.violations.append(text)


def _token_fields(response: httpx.Response) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(response.json()["PeeringToken"])))


def _writer(rnd: Round, model: WriterModel, rng: random.Random) -> None:
    """Write until the server is gone (a transport error); leave the unanswered write marked pending."""
    with httpx.Client(base_url=rnd.cluster.http_url, headers={"X-Consul-Token": MANAGEMENT}, timeout=5) as http:
        try:
            for _ in range(MAX_WRITES_PER_WRITER):
                if not _one_write(rnd, model, rng, http):
                    return
        except httpx.TransportError:
            return  # the server died under this write


def _expect_200(rnd: Round, what: str, response: httpx.Response) -> bool:
    if response.status_code != 200:
        rnd.violation(f"{what}: {response.status_code} {response.text[:200]}")
        return False
    return True


def _one_write(rnd: Round, model: WriterModel, rng: random.Random, http: httpx.Client) -> bool:
    """One write (and, after a token, the read that tells its ModifyIndex). False: stop writing."""
    live = [name for name, facts in model.peers.items() if not facts.deleted]
    updatable = [name for name, facts in model.policies.items() if facts.id]
    operation = rng.choices(OPERATIONS, WEIGHTS)[0]
    if operation in ("regenerate", "delete") and not live:
        operation = "create"
    if operation == "policy-update" and not updatable:
        operation = "policy"

    if operation in ("create", "regenerate"):
        name = model.new_name("") if operation == "create" else rng.choice(live)
        facts = model.peers.setdefault(name, PeerFacts())
        facts.pending = operation
        floor = rnd.before_send()
        response = http.post("/v1/peering/token", json={"PeerName": name})
        if not _expect_200(rnd, f"token {name}", response):
            return False
        fields = _token_fields(response)
        facts.id, facts.hash = fields["PeerID"], hash_secret(fields["EstablishmentSecret"])
        facts.index, facts.floor, facts.pending = 0, floor + 1, ""
        rnd.acknowledged()
        read = http.get(f"/v1/peering/{name}")  # nothing else writes to this name: its index is the token's
        if not _expect_200(rnd, f"read {name}", read):
            return False
        facts.index = int(read.json()["ModifyIndex"])
        rnd.saw(facts.index)
        if facts.index <= floor:
            rnd.violation(f"token {name}: ModifyIndex {facts.index} not above {floor}, answered before it was sent")
    elif operation == "delete":
        name = rng.choice(live)
        facts = model.peers[name]
        facts.pending = "delete"
        rnd.before_send()
        if not _expect_200(rnd, f"delete {name}", http.delete(f"/v1/peering/{name}")):
            return False
        facts.deleted, facts.pending = True, ""
        rnd.acknowledged()
    else:
        if operation == "policy":
            name = model.new_name("pol-")
            policy = model.policies[name] = PolicyFacts()
            path = "/v1/acl/policy"
        else:
            name = rng.choice(updatable)
            policy = model.policies[name]
            path = f"/v1/acl/policy/{policy.id}"
        description = f"v{rng.randrange(10**9)}"
        policy.pending = description
        floor = rnd.before_send()
        response = http.put(path, json={"Name": name, "Description": description, "Rules": RULES})
        if not _expect_200(rnd, f"{operation} {name}", response):
            return False
        body = response.json()
        policy.id, policy.description, policy.index, policy.pending = body["ID"], description, body["ModifyIndex"], None
        rnd.acknowledged(policy.index)
        if policy.index <= floor:
            rnd.violation(f"{operation} {name}: ModifyIndex {policy.index} not above {floor}")
    return True


def _inspect(db: Path) -> Snapshot:
    """The database file of a killed server, read-only (no checkpoint, no recovery written back)."""
    with closing(sqlite3.connect(db.as_uri() + "?mode=ro", uri=True)) as conn:
        integrity = [str(row[0]) for row in conn.execute("PRAGMA integrity_check")]
        journal_mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        counter = int(conn.execute("SELECT value FROM counter WHERE id = 1").fetchone()[0])
        rows = conn.execute(
            "SELECT p.name, p.id, p.state, p.deleted_at IS NOT NULL, p.modify_index, s.establishment_hash "
            "FROM peerings p LEFT JOIN secrets s ON s.peering_id = p.id"
        ).fetchall()
    peerings = {name: Seen(id_, state, bool(deleted), index, hash_) for name, id_, state, deleted, index, hash_ in rows}
    return Snapshot(integrity, journal_mode, counter, peerings)


def _as_acked(facts: PeerFacts, seen: Seen | None, with_hash: bool) -> bool:
    """`seen` is what the last acknowledged write on the name left (and nothing after it happened)."""
    if facts.deleted:
        return seen is None or (
            seen.deleted and seen.state == "TERMINATED" and (not with_hash or seen.hash is None)
        )  # a deleted acceptor's token dies with it
    if not facts.id:
        return seen is None  # never acknowledged: its create was the write in flight
    return (
        seen is not None
        and seen.id == facts.id
        and not seen.deleted
        and seen.state == "INITIAL"
        and (seen.modify_index == facts.index if facts.index else seen.modify_index >= facts.floor)
        and (not with_hash or seen.hash == facts.hash)
    )


def _as_pending(facts: PeerFacts, seen: Seen | None, with_hash: bool) -> bool:
    """`seen` is what the write in flight at the kill left, committed whole."""
    if facts.pending == "create":
        return seen is not None and not seen.deleted and seen.state == "INITIAL"
    if facts.pending == "regenerate":
        return (
            seen is not None
            and seen.id == facts.id
            and not seen.deleted
            and seen.state == "INITIAL"
            and seen.modify_index > max(facts.index, facts.floor - 1)
            and (not with_hash or (seen.hash is not None and seen.hash != facts.hash))
        )
    if facts.pending == "delete":
        return _as_acked(PeerFacts(id=facts.id, deleted=True), seen, with_hash)
    return False


def _check_peers(models: list[WriterModel], snapshot: Snapshot, served: dict[str, Seen]) -> tuple[list[str], int, int]:
    """Violations, writes in flight at the kill and how many of those were committed; then make the
    model exact again from the database (the write in flight is now known to have happened or not)."""
    violations: list[str] = []
    in_flight = committed = 0
    known: set[str] = set()
    for model in models:
        for name, facts in list(model.peers.items()):
            known.add(name)
            on_disk = snapshot.peerings.get(name)
            wrong = [
                f"{where} has {seen}"
                for where, seen, with_hash in (("the file", on_disk, True), ("the server", served.get(name), False))
                if not (_as_acked(facts, seen, with_hash) or (facts.pending and _as_pending(facts, seen, with_hash)))
            ]
            if wrong:
                violations.append(f"lost: peering {name}: acknowledged {facts}, but " + "; ".join(wrong))
            if on_disk is not None and not on_disk.deleted and served.get(name) != replace(on_disk, hash=None):
                violations.append(f"peering {name}: the restarted server shows {served.get(name)}, the file {on_disk}")
            if facts.pending:
                in_flight += 1
                committed += _as_pending(facts, on_disk, True) and not _as_acked(facts, on_disk, True)
            if on_disk is None:
                if not facts.deleted and facts.pending != "delete":
                    del model.peers[name]  # its create never happened
                else:
                    facts.deleted, facts.pending = True, ""
            elif on_disk.deleted:
                facts.deleted, facts.pending = True, ""
            else:
                model.peers[name] = PeerFacts(on_disk.id, on_disk.hash, on_disk.modify_index, on_disk.modify_index)
    for name in (set(snapshot.peerings) | set(served)) - known:
        violations.append(f"peering {name} exists but was never written")
    return violations, in_flight, committed


def _check_policies(models: list[WriterModel], served: list[dict[str, Any]]) -> tuple[list[str], int, int]:
    """As `_check_peers`, for ACL policies, against the restarted server's list."""
    by_name = {policy["Name"]: policy for policy in served}
    violations: list[str] = []
    in_flight = committed = 0
    for model in models:
        for name, facts in list(model.policies.items()):
            found = by_name.get(name)
            as_acked = (
                found is not None
                and found["ID"] == facts.id
                and found["Description"] == facts.description
                and found["ModifyIndex"] == facts.index
            ) or (found is None and not facts.id)
            as_pending = (
                facts.pending is not None
                and found is not None
                and found["Description"] == facts.pending
                and (found["ID"] == facts.id or not facts.id)
                and found["ModifyIndex"] > facts.index
            )
            if not (as_acked or as_pending):
                violations.append(f"lost: policy {name}: expected {facts}, found {found}")
            if facts.pending is not None:
                in_flight += 1
                committed += as_pending
            if found is None:
                del model.policies[name]
            else:
                model.policies[name] = PolicyFacts(found["ID"], found["Description"], found["ModifyIndex"])
    return violations, in_flight, committed


def _served(http: httpx.Client) -> tuple[dict[str, Seen], list[dict[str, Any]], int]:
    """What the restarted server shows: peerings, policies and the index counter."""
    peerings = http.get("/v1/peerings")
    policies = http.get("/v1/acl/policies")
    assert (peerings.status_code, policies.status_code) == (200, 200), (peerings.text, policies.text)
    served = {
        p["Name"]: Seen(p["ID"], p["State"], "DeletedAt" in p, p["ModifyIndex"])
        for p in peerings.json()  # every name is in the default partition
    }
    return served, policies.json(), int(policies.headers["X-Consul-Index"])  # ACL reads carry the global index


def test_acknowledged_writes_survive_kill_minus_9(tmp_path: Path) -> None:
    """Every write answered 200 before a SIGKILL is there after a restart, indexes never go back, and the
    database file passes `PRAGMA integrity_check` after every kill."""
    started = time.monotonic()
    data = tmp_path / "data"
    rng = random.Random(SEED)
    models = [WriterModel(number) for number in range(WRITERS)]
    snapshot: Snapshot | None = None
    high_water = 0  # the highest index acknowledged before the last kill
    violations: list[str] = []
    rounds = acked = lost = in_flight = committed = 0
    integrity: list[str] = []

    def summary() -> str:
        return (
            f"kill -9 rounds: {rounds}, acknowledged writes: {acked}, lost: {lost}; "
            f"in flight at a kill: {in_flight} ({committed} committed); integrity_check: {', '.join(integrity)}; "
            f"seed {SEED}, {time.monotonic() - started:.1f} s"
        )

    for number in range(ROUNDS + 1):
        with running_cluster(data, *SERVE_ARGS) as cluster:
            with httpx.Client(base_url=cluster.http_url, headers={"X-Consul-Token": MANAGEMENT}, timeout=5) as http:
                served, policies, counter = _served(http)
            if snapshot is not None:
                found, flying, done = _check_peers(models, snapshot, served)
                more, flying_policies, done_policies = _check_policies(models, policies)
                violations += found + more
                lost += sum(v.startswith("lost") for v in found + more)
                in_flight, committed = in_flight + flying + flying_policies, committed + done + done_policies
                if not snapshot.counter >= high_water or not counter >= snapshot.counter:
                    violations.append(
                        f"index went back: acknowledged {high_water}, file {snapshot.counter}, restarted {counter}"
                    )
            assert not violations, summary() + "\n" + "\n".join(violations[:20])
            if number == ROUNDS:
                assert cluster.stop(signal.SIGTERM) == 0  # and the last restart shuts down cleanly
                break
            kind = rng.choice(("acked", "sent", "delayed"))
            rnd = Round(cluster, kind, rng.randint(10, 50), rng.randint(0, 6), counter)
            killer = threading.Thread(target=rnd.killer, daemon=True)
            writers = [
                threading.Thread(target=_writer, args=(rnd, model, random.Random(rng.random())), daemon=True)
                for model in models
            ]
            for thread in (killer, *writers):
                thread.start()
            for writer in writers:
                writer.join(timeout=30)
            rnd.trigger.set()  # in case the writers all stopped before the kill came
            killer.join(timeout=30)
            assert not any(thread.is_alive() for thread in (killer, *writers)), "a writer did not stop"
            if cluster.process.poll() is None:
                cluster.process.send_signal(signal.SIGKILL)
            assert cluster.process.wait(10) == -signal.SIGKILL
            violations += rnd.violations
            assert not violations, summary() + "\n" + "\n".join(violations[:20])
            rounds, acked = rounds + 1, acked + rnd.acked
            high_water = max(high_water, rnd.max_seen)
        snapshot = _inspect(data / "peering.db")  # after the kill, before the restart
        integrity.append(";".join(snapshot.integrity))
        assert snapshot.integrity == ["ok"], summary()
        assert snapshot.journal_mode == "wal"
    with closing(sqlite3.connect((data / "peering.db").as_uri() + "?mode=ro", uri=True)) as conn:
        assert [row[0] for row in conn.execute("PRAGMA integrity_check")] == ["ok"]  # after the clean stop too
    print("\n" + summary())  # noqa: T201 -- the figures, shown with `pytest -s`
    assert rounds == ROUNDS
    assert acked >= ROUNDS * 5
    assert lost == 0
