"""The benchmark's machinery: how long to measure (`Plan`) and one run's processes, measurements and rows
(`Bench`), shared by every part of the report (bench/sqlite_rows.py, acl_rows.py, sharing.py, watcher_rows.py,
postgres.py) and by their standalone runs.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import baselines
from bench.establish import establish_times, percentile
from bench.load import LoadGenerator, LoadResult, Measurement, Target
from bench.populate import CONNECTIONS, READ_NAME
from bench.procs import (
    Server,
    StartError,
    child_environment,
    http_ok,
    spawn,
    start_cluster,
    uvicorn_argv,
    wait_ready,
)
from bench.report import Row

BUSY_CORES = 0.25  # other processes using more than this (in cores) during a run marks its row
RSS_LIMIT_MB = 120


@dataclass(frozen=True)
class Plan:
    """How long and how often to measure, and how big the sharing and watcher parts are."""

    repetitions: int
    seconds: int
    warmup: int
    sweep_seconds: int
    sweep_warmup: int
    establish_rounds: int
    cold_starts: int
    sizes: tuple[int, ...]
    sharing_services: int  # services (x 3 instances) exported A -> B
    sharing_changes: int  # health changes timed until visible on B
    watchers: int  # blocking queries held per route
    watcher_hold: float  # seconds they are held before the waking write
    watcher_settle: float  # seconds between the phases of a watcher run

    @classmethod
    def of(cls, quick: bool) -> Plan:
        if quick:
            return cls(
                repetitions=1,
                seconds=1,
                warmup=1,
                sweep_seconds=1,
                sweep_warmup=0,
                establish_rounds=20,
                cold_starts=3,
                sizes=(10, 1000),
                sharing_services=100,
                sharing_changes=10,
                watchers=500,
                watcher_hold=1.0,
                watcher_settle=0.3,
            )
        return cls(
            repetitions=3,
            seconds=5,
            warmup=1,
            sweep_seconds=3,
            sweep_warmup=1,
            establish_rounds=100,
            cold_starts=5,
            sizes=(10, 1000, 10000),
            sharing_services=1000,
            sharing_changes=60,
            watchers=10_000,
            watcher_hold=5.0,
            watcher_settle=1.0,
        )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


class Bench:
    """One benchmark run: the processes, the measurements and the rows of the report."""

    def __init__(
        self, plan: Plan, generator: LoadGenerator, tmp: Path, *, sqlite: bool = True, pg: bool = True
    ) -> None:
        self.sqlite, self.pg = sqlite, pg  # which parts run: those on SQLite (run.run()), the PostgreSQL rows
        self.plan = plan
        self.load = generator
        self.tmp = tmp
        self.logs = tmp / "logs"
        self.servers: list[Server] = []
        self.rows: list[Row] = []
        self.data: dict[str, Any] = {"measurements": {}, "rss_mb": {}, "cold_start_s": {}, "establish_ms": {}}
        self.foreign: list[float] = []

    # processes

    def cluster(self, name: str, data_dir: Path, datacenter: str = "dc1", extra: tuple[str, ...] = ()) -> Server:
        server = start_cluster(name, data_dir, datacenter, self.logs, extra=extra)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        code = server.stop()
        self.servers.remove(server)
        if code != 0:
            raise StartError(f"{server.name} exited with {code} on SIGTERM:\n{server.log_tail()}")

    def baseline(self, label: str, data_dir: Path, env: dict[str, str] | None = None) -> Server:
        factory, method, path = {**baselines.APPS, **baselines.PG_APPS}[label]
        argv = uvicorn_argv(f"bench.baselines:{factory}")
        server = spawn(
            label,
            argv,
            self.logs / f"baseline-{factory}-{data_dir.name}.log",
            child_environment({"BENCH_BASELINE_DIR": str(data_dir), **(env or {})}),
        )
        probe_path = path.replace("{name}", READ_NAME) + ("?partition=p10" if path == "/v1/peerings" else "")
        body = b'{"PeerName": "probe"}' if method == "POST" else None

        def probe(candidate: Server) -> bool:
            return http_ok(candidate.url + probe_path, method=method, body=body) is not None

        self.servers.append(server)
        return wait_ready(server, ports=1, probe=probe, timeout=60)

    # measuring

    def measure(
        self,
        target: Target,
        server: Server,
        *,
        connections: int = CONNECTIONS,
        seconds: int | None = None,
        warmup: int | None = None,
    ) -> LoadResult:
        """A warm-up run, then the measured one; the server works off abandoned requests after each."""
        seconds = seconds or self.plan.seconds
        warmup = self.plan.warmup if warmup is None else warmup
        if warmup:
            self.load.run(target, connections=connections, seconds=warmup, server=server)
            server.settle()
        result = self.load.run(target, connections=connections, seconds=seconds, server=server)
        server.settle()
        self.foreign.append(result.foreign_cpu)
        return result

    def repeat(
        self, targets: dict[str, tuple[Target, Server]], *, repetitions: int | None = None, seconds: int | None = None
    ) -> dict[str, Measurement]:
        """Each target `repetitions` times (the plan's unless given), interleaved (all targets once, then again)."""
        results = {key: Measurement() for key in targets}
        repetitions = repetitions or self.plan.repetitions
        for rep in range(repetitions):
            for key, (target, server) in targets.items():
                run = self.measure(target, server, seconds=seconds)
                results[key].runs.append(run)
                log(
                    f"  {key} [{rep + 1}/{repetitions}]: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms"
                    + (f", {run.socket_errors + run.bad_status} ERRORS" if run.socket_errors + run.bad_status else "")
                )
        for key, measurement in results.items():
            self.data["measurements"][key] = measurement.as_json()
        return results

    def row(
        self,
        section: str,
        scenario: str,
        m: Measurement,
        *,
        baseline: tuple[str, Measurement] | None = None,
        minimum: float | None = None,
    ) -> Row:
        row = Row(section, scenario, rps=m.rps, p50_ms=m.p50_ms, p99_ms=m.p99_ms, errors=m.errors)
        row.foreign_cpu = max(r.foreign_cpu for r in m.runs)
        row.busy_mark = statistics.median(r.foreign_cpu for r in m.runs) > BUSY_CORES
        if baseline is not None:
            row.baseline, row.baseline_rps = baseline[0], baseline[1].rps
            row.errors += baseline[1].errors
            if baseline[1].rps > 0:
                row.ratio = m.rps / baseline[1].rps
            if minimum is not None and row.ratio is not None:
                row.target, row.passed = f"≥ {minimum:.1f}x baseline", row.ratio >= minimum
        self.rows.append(row)
        return row

    def rss(self, key: str, server: Server, scenario: str, *, limit: bool) -> None:
        value = server.rss_mb()
        self.data["rss_mb"][key] = value
        row = Row("memory", scenario, value=f"{value:.1f} MB")
        if limit:
            row.target, row.passed = f"≤ {RSS_LIMIT_MB} MB", value <= RSS_LIMIT_MB
        self.rows.append(row)
        log(f"  {scenario}: {value:.1f} MB")

    def cold_starts(self, key: str, scenario: str, data_dir: Callable[[int], Path]) -> None:
        times = []
        for i in range(self.plan.cold_starts):
            server = self.cluster(f"cold-{key}-{i}", data_dir(i))
            times.append(server.ready_after)
            self.stop(server)
        self.data["cold_start_s"][key] = times
        self.rows.append(
            Row(
                "startup",
                scenario,
                value=f"{statistics.median(times) * 1000:.0f} ms",
                value_max=f"{max(times) * 1000:.0f} ms (max)",
            )
        )
        log(f"  {scenario}: median {statistics.median(times) * 1000:.0f} ms, max {max(times) * 1000:.0f} ms")

    def establish(
        self, acceptor: Server, dialer: Server, key: str, scenario: str, partition: str, *, target: bool
    ) -> None:
        times = establish_times(acceptor, dialer, self.plan.establish_rounds, partition=partition)
        self.data["establish_ms"][key] = times
        p50, p99 = statistics.median(times), percentile(times, 0.99)
        row = Row("establish", scenario, p50_ms=p50, p99_ms=p99)
        if target:
            row.target, row.passed = "p50 ≤ 15 ms", p50 <= 15
        self.rows.append(row)
        log(f"  {scenario}: p50 {p50:.2f} ms, p99 {p99:.2f} ms")

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop(10)
        self.servers.clear()
