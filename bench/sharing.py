"""Sharing services across a peering (issue 14's performance targets), figures from one run.

Two local `peering serve` processes on SQLite with the default heartbeat interval (15 s): A (acceptor,
exporter) and B (dialer, importer); B reaches A's peer port through a TCP relay (`tests/relay.py`,
TLS passthrough) that counts the bytes each way, so what replication moves is measured on the wire.

1. initial sync: 1,000 services x 3 instances registered on A (`PUT /v1/catalog/register`), then the
   exported-services entry (`*` to B) is written; timed until B's `/v1/imported-services` lists every
   one (the list lands with the sync's last page, in the unit that applies it). Target <= 3 s.
2. health changes: one instance of `web` flips between passing and critical on A, N times; each is
   timed from just before A's write until a blocking query on B (`/v1/health/service/web?peer=`) shows
   it. Target p50 <= 100 ms, p99 <= 500 ms. Bytes from A to B per change are the relay's count.
3. an identical resend: A is stopped, its export marks are removed from its database (an exporter that
   lost its state starts a new generation: a full resend of identical data), A is started again; once
   B has applied the resend (its import state names A's new generation), B's catalog indexes must be
   those before it.
4. `GET /v1/health/service/web` (3 instances) on A against a bare FastAPI route returning the same
   bytes, with bench/load.py's generator (wrk). Target >= 0.8x.

Standalone: `python -m bench.sharing [--quick]`. In bench/run.py: `sharing.measure(bench)` adds its rows
to the report (section "sharing") and its figures to `bench.data["sharing"]`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Response

if __package__ in (None, ""):  # run as a script: make `bench` and `tests` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import Measurement, Target
from bench.procs import ROOT, Server, child_environment, http_ok, spawn, uvicorn_argv, wait_ready
from bench.report import Row
from tests.relay import Relay
from tests.sharing import A_NAME, B_NAME, export, peer, register_all, registration, wait_for

if TYPE_CHECKING:
    from bench.run import Bench

SECTION = "sharing"
SERVICE = "web"
PACE = 0.05  # seconds between two health changes (changes do not come back to back)
HEALTH_BODY = "health.json"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def require(condition: bool, problem: str) -> None:
    if not condition:
        raise RuntimeError(problem)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def health_baseline() -> FastAPI:
    """A bare FastAPI route returning the captured bytes of `GET /v1/health/service/web`."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    body = (Path(os.environ["BENCH_BASELINE_DIR"]) / HEALTH_BODY).read_bytes()

    @app.get("/v1/health/service/{name}")
    async def service(name: str) -> Response:
        return Response(content=body, media_type="application/json")

    return app


def names(services: int) -> list[str]:
    return [SERVICE, *(f"svc-{i:04d}" for i in range(1, services))]


def bodies(services: int, instances: int) -> list[dict[str, Any]]:
    """Every instance's registration: `<name>-<j>` on node `node-<k>` (50 nodes), one passing check each."""
    found = []
    for number, name in enumerate(names(services)):
        for j in range(instances):
            node = f"node-{(number * instances + j) % 50:02d}"
            found.append(registration(name, f"{name}-{j}", node, port=8000 + j))
    return found


def _index(client: httpx.Client, path: str, **params: str) -> str:
    answer = client.get(path, params=params)
    answer.raise_for_status()
    return answer.headers["X-Consul-Index"]


def _indexes(b: Server) -> dict[str, str]:
    """B's indexes of everything an identical resend could move."""
    with httpx.Client(base_url=b.url, timeout=30) as client:
        return {
            "catalog/services?peer": _index(client, "/v1/catalog/services", peer=B_NAME),
            "health/service/web?peer": _index(client, f"/v1/health/service/{SERVICE}", peer=B_NAME),
            "health/state/any?peer": _index(client, "/v1/health/state/any", peer=B_NAME),
            "imported-services": _index(client, "/v1/imported-services"),
            f"peering/{B_NAME}": _index(client, f"/v1/peering/{B_NAME}"),
        }


def _db_rows(data_dir: Path, sql: str) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(f"file:{data_dir / 'peering.db'}?mode=ro", uri=True, timeout=30)) as db:
        return db.execute(sql).fetchall()


class Sharing:
    """One run of the four parts on A and B (see the module docstring)."""

    def __init__(self, bench: Bench, services: int, instances: int, changes: int) -> None:
        self.bench = bench
        self.services, self.instances, self.changes = services, instances, changes
        self.data: dict[str, Any] = {"services": services, "instances_per_service": instances}
        self.a_dir, self.b_dir = bench.tmp / "sharing-a", bench.tmp / "sharing-b"
        self.a = bench.cluster("sharing-a", self.a_dir, "dc1")
        self.b = bench.cluster("sharing-b", self.b_dir, "dc2")
        self.relay = Relay(f"127.0.0.1:{self.a.ports[1]}")

    def close(self) -> None:
        self.relay.close()

    def sync(self) -> None:
        peer(self.a.url, self.b.url, addresses=[self.relay.address])
        began = time.perf_counter()
        register_all(self.a.url, bodies(self.services, self.instances), threads=4)
        registered = time.perf_counter() - began
        log(f"  registered {self.services * self.instances:,} instances on A in {registered:.1f} s")
        self.a.settle()
        sent = self.relay.bytes("down")
        began = time.perf_counter()
        export(self.a.url, [("*", [A_NAME])])
        wait_for(self.b.url, "/v1/imported-services", lambda f: len(f) == self.services, timeout=300, wait="30s")
        seconds = time.perf_counter() - began
        moved = self.relay.bytes("down") - sent
        checks = httpx.get(f"{self.b.url}/v1/health/state/any", params={"peer": B_NAME}, timeout=60).json()
        require(len(checks) == self.services * self.instances, f"B holds {len(checks)} imported instances")
        self.data["sync"] = {"seconds": seconds, "bytes": moved, "registration_seconds": registered}
        log(f"  initial sync: {seconds:.2f} s, {moved:,} bytes from A to B")
        self.bench.rows.append(
            Row(
                SECTION,
                f"initial sync, {self.services:,} services x {self.instances} instances",
                value=f"{seconds * 1000:.0f} ms",
                value_max=f"{moved / 1e6:.2f} MB",
                target="≤ 3 s",
                passed=seconds <= 3,
            )
        )

    def _change(self, client_a: httpx.Client, client_b: httpx.Client, status: str) -> tuple[float, float, int]:
        """One health change of web-0; (seconds until visible on B, seconds until A answered, bytes A -> B)."""
        index = _index(client_b, f"/v1/health/service/{SERVICE}", peer=B_NAME)
        seen: list[float] = []
        failed: list[BaseException] = []
        asking = threading.Event()

        def waiter() -> None:
            current = index
            try:
                while True:
                    asking.set()
                    answer = client_b.get(
                        f"/v1/health/service/{SERVICE}", params={"peer": B_NAME, "index": current, "wait": "30s"}
                    )
                    answer.raise_for_status()
                    by_id = {e["Service"]["ID"]: e["Checks"][0]["Status"] for e in answer.json()}
                    if by_id.get(f"{SERVICE}-0") == status:
                        seen.append(time.perf_counter())
                        return
                    current = answer.headers["X-Consul-Index"]
            except BaseException as exc:  # noqa: BLE001  (re-raised below)
                failed.append(exc)

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        asking.wait(10)
        body = registration(SERVICE, f"{SERVICE}-0", "node-00", port=8000, status=status)
        before = self.relay.bytes("down")
        began = time.perf_counter()
        answer = client_a.put("/v1/catalog/register", json=body)
        acked = time.perf_counter() - began
        require((answer.status_code, answer.text) == (200, "true"), answer.text)
        thread.join(60)
        if failed:
            raise failed[0]
        require(bool(seen), "the change never showed on B")
        return seen[0] - began, acked, self.relay.bytes("down") - before

    def health_changes(self) -> None:
        latencies, acks, moved = [], [], []
        with (
            httpx.Client(base_url=self.a.url, timeout=60) as client_a,
            httpx.Client(base_url=self.b.url, timeout=60) as client_b,
        ):
            for i in range(self.changes):
                visible, acked, sent = self._change(client_a, client_b, "critical" if i % 2 == 0 else "passing")
                latencies.append(visible * 1000)
                acks.append(acked * 1000)
                moved.append(sent)
                time.sleep(PACE)
        p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
        self.data["health_change"] = {
            "changes": self.changes,
            "visible_ms": latencies,
            "write_answered_ms": acks,
            "bytes_a_to_b": moved,
            "p50_ms": p50,
            "p99_ms": p99,
        }
        log(f"  health change visible on B: p50 {p50:.1f} ms, p99 {p99:.1f} ms ({self.changes} changes)")
        self.bench.rows.append(
            Row(
                SECTION,
                f"one instance's health change visible on B ({self.changes} changes, 15 s heartbeats)",
                p50_ms=p50,
                p99_ms=p99,
                target="p50 ≤ 100 ms, p99 ≤ 500 ms",
                passed=p50 <= 100 and p99 <= 500,
            )
        )
        whole = self.data["sync"]["bytes"]
        change = statistics.median(moved)
        self.data["health_change"] |= {"median_bytes": change, "max_bytes": max(moved)}
        log(f"  bytes per change: median {change:,.0f}, max {max(moved):,} (the whole set: {whole:,})")
        self.bench.rows.append(
            Row(
                SECTION,
                "bytes A → B per instance change (median)",
                value=f"{change:,.0f} B",
                value_max=f"{change / whole:.2%} of the sync",
                target="≤ 2% of the whole set's bytes",
                passed=change <= 0.02 * whole,
            )
        )

    def resend(self) -> None:
        """A loses its export marks (stopped, rows removed, started again): B gets a full resend of identical data."""
        before = _indexes(self.b)
        self.bench.stop(self.a)
        with closing(sqlite3.connect(self.a_dir / "peering.db", timeout=30)) as db:
            db.execute("DELETE FROM export_marks")
            db.execute("DELETE FROM export_generations")
            db.commit()
        old_generation = _db_rows(self.b_dir, "SELECT generation FROM import_states")[0][0]
        sent = self.relay.bytes("down")
        self.a = self.bench.cluster("sharing-a", self.a_dir, "dc1")
        self.relay.retarget(f"127.0.0.1:{self.a.ports[1]}")
        deadline = time.monotonic() + 120
        while True:  # polled: nothing announces that B applied a resend but its stored import state
            exported = _db_rows(
                self.a_dir,
                "SELECT g.generation, (SELECT max(seq) FROM export_marks m WHERE m.peering_id = g.peering_id) "
                "FROM export_generations g",
            )
            applied = _db_rows(self.b_dir, "SELECT generation, applied_seq FROM import_states")
            if exported and applied and applied[0] == exported[0] and applied[0][0] != old_generation:
                break  # B took the new generation up to its head: the whole resend
            require(time.monotonic() < deadline, "B never applied A's new generation")
            time.sleep(0.02)
        moved = self.relay.bytes("down") - sent
        after = _indexes(self.b)
        moved_indexes = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
        self.data["resend"] = {"bytes": moved, "indexes_before": before, "indexes_after": after}
        log(f"  identical resend: {moved:,} bytes; indexes that moved on B: {moved_indexes or 'none'}")
        self.bench.rows.append(
            Row(
                SECTION,
                "identical full resend: B's catalog and peering indexes",
                value="unchanged" if not moved_indexes else f"{len(moved_indexes)} moved",
                value_max=f"{moved / 1e6:.2f} MB resent",
                target="no index moves",
                passed=not moved_indexes,
            )
        )

    def reads(self) -> None:
        """`GET /v1/health/service/web` on A against a bare FastAPI route returning its bytes (interleaved)."""
        self.bench.stop(self.b)  # nothing but the load on A
        url = f"{self.a.url}/v1/health/service/{SERVICE}"
        body = httpx.get(url, timeout=30).content
        require(len(json.loads(body)) == self.instances, f"web has not {self.instances} instances")
        directory = self.bench.tmp / "sharing-baseline"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / HEALTH_BODY).write_bytes(body)
        baseline = _start_baseline(self.bench, directory)
        targets = {
            "service": (Target(url), self.a),
            "baseline": (Target(f"{baseline.url}/v1/health/service/{SERVICE}"), baseline),
        }
        results = {key: Measurement() for key in targets}
        plan = self.bench.plan
        for rep in range(plan.repetitions):
            for key, (target, server) in targets.items():
                run = self.bench.measure(target, server)
                results[key].runs.append(run)
                log(f"  {key} [{rep + 1}/{plan.repetitions}]: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms")
        self.data["health_read"] = {key: m.as_json() for key, m in results.items()} | {"body_bytes": len(body)}
        row = self.bench.row(
            SECTION,
            f"GET /v1/health/service/web ({self.instances} instances, {len(body):,} B)",
            results["service"],
            baseline=("bare FastAPI, same bytes", results["baseline"]),
            minimum=0.8,
        )
        log(f"  health read: {row.ratio or 0:.2f}x the bare FastAPI route")


def _start_baseline(bench: Bench, directory: Path) -> Server:
    argv = uvicorn_argv("bench.sharing:health_baseline")
    server = spawn(
        "bare FastAPI health",
        argv,
        bench.logs / "baseline-sharing-health.log",
        child_environment({"BENCH_BASELINE_DIR": str(directory)}),
    )
    bench.servers.append(server)
    path = f"/v1/health/service/{SERVICE}"
    return wait_ready(server, ports=1, probe=lambda s: http_ok(s.url + path) is not None, timeout=60)


def measure(bench: Bench, *, services: int = 1000, instances: int = 3, changes: int = 60) -> None:
    """Add the sharing rows to `bench.rows` and the figures to `bench.data["sharing"]`."""
    log(f"sharing: {services:,} services x {instances} instances, {changes} health changes")
    run = Sharing(bench, services, instances, changes)
    try:
        run.sync()
        run.health_changes()
        run.resend()
        run.reads()
    finally:
        run.close()
        bench.data[SECTION] = run.data


def summary(data: dict[str, Any]) -> dict[str, Any]:
    """The figures of a run without the per-change and per-run lists."""
    short: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not isinstance(v, list)}
            if key == "health_read":
                value = {k: v for k, v in data[key].items() if k == "body_bytes"} | {
                    k: {f: v[f] for f in ("rps", "p50_ms", "p99_ms", "errors")}
                    for k, v in data[key].items()
                    if isinstance(v, dict)
                }
        short[key] = value
    return short


def main() -> int:
    from bench import report
    from bench.load import LoadGenerator
    from bench.run import Bench, Plan  # the runner's machinery (imported late: run may import this module)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short repetition of the read load")
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--instances", type=int, default=3)
    parser.add_argument("--changes", type=int, default=60)
    parser.add_argument("--load-generator", choices=("wrk", "python"), default="wrk")
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    began = time.perf_counter()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    tmp = Path(tempfile.mkdtemp(prefix="peering-bench-sharing-"))
    load_start = os.getloadavg()[0]
    generator = LoadGenerator(tmp, force_python=args.load_generator == "python")
    bench = Bench(Plan.of(args.quick), generator, tmp, sqlite=False, pg=False)
    try:
        measure(bench, services=args.services, instances=args.instances, changes=args.changes)
    finally:
        bench.stop_all()
    command = "python -m bench.sharing" + " ".join(["", *sys.argv[1:]])
    preamble = [
        f"Command: `{command}`. Two `peering serve` on SQLite, default heartbeats (15 s), B dials A through a "
        "byte-counting TCP relay (TLS passthrough).",
        f"Load: {generator.description}; load average at start {load_start:.2f}, at end {os.getloadavg()[0]:.2f}; "
        f"{time.perf_counter() - began:.0f} s in all.",
    ]
    notes = [
        "Sync: from the exported-services write on A until B's /v1/imported-services lists every service (a "
        "blocking query); the p99 column shows the bytes A sent B meanwhile.",
        f"Health change: one instance of web flips passing/critical through PUT /v1/catalog/register on A, "
        f"{args.changes} times, {PACE * 1000:.0f} ms apart; from just before the write until B's blocking "
        "query shows it.",
        "Resend: A stopped, its export marks deleted, started again: a new generation, every service resent.",
    ]
    text = report.markdown(f"peering sharing benchmark {stamp}", preamble, bench.rows, notes)
    data = {"stamp": stamp, "command": command, "rows": bench.rows, **bench.data}
    md, js = report.save(args.results_dir, f"{stamp}-sharing", text, data)
    print("\n" + text)
    print(json.dumps(summary(bench.data.get(SECTION, {})), indent=1))
    print(f"report: {md}\nraw numbers: {js}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(row.passed is not False for row in bench.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
