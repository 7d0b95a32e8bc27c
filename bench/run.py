"""The benchmark (SPEC §11): the service against baselines measured in the same run, as ratios.

Usage: .venv/bin/python bench/run.py [--quick] [--load-generator wrk|python] [--results-dir DIR]

Starts `peering serve` and seven baseline apps as separate uvicorn processes on free ports, loads
them with wrk (1 thread, 32 connections, a warm-up run before each measured run, repetitions
interleaved so that drift hits service and baselines alike), times establish between two local
clusters, reads RSS and cold-start times, and writes bench/results/<stamp>.md, .json and
-concurrency.png. See the "Benchmarks" section of README.md.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import baselines, postgres, report
from bench.establish import establish_times, percentile
from bench.load import LoadGenerator, LoadResult, Measurement, Target
from bench.populate import CONNECTIONS, READ_NAME, WRITE_PARTITION, name_in, partition_of, populate
from bench.procs import ROOT, Server, StartError, child_environment, http_ok, spawn, start_cluster, wait_ready
from bench.report import Row

SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)
BUSY_CORES = 0.25  # other processes using more than this (in cores) during a run marks its row
RSS_LIMIT_MB = 120


@dataclass(frozen=True)
class Plan:
    """How long and how often to measure."""

    repetitions: int
    seconds: int
    warmup: int
    sweep_seconds: int
    sweep_warmup: int
    establish_rounds: int
    cold_starts: int
    sizes: tuple[int, ...]

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
        )


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


# --- the run ----------------------------------------------------------------------------------------


def tree_digest() -> str:
    """A hash of peering/*.py, to tell whether the code under test changed during the run."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "peering").rglob("*.py")):
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def git_describe() -> str:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD")
    if not commit:  # not a checkout: a tree exported with `git archive`, named by BENCH_COMMIT
        return f"commit {os.environ.get('BENCH_COMMIT', 'unknown')} (an exported tree, not a checkout)"
    dirty = git("status", "--porcelain", "--", "peering")
    return f"commit {commit}" + (" with uncommitted changes in peering/" if dirty else "")


def loadavg() -> tuple[float, float, float]:
    one, five, fifteen = os.getloadavg()
    return one, five, fifteen


class Bench:
    """One benchmark run: the processes, the measurements and the rows of the report."""

    def __init__(
        self, plan: Plan, generator: LoadGenerator, tmp: Path, *, sqlite: bool = True, pg: bool = True
    ) -> None:
        self.sqlite, self.pg = sqlite, pg  # which parts run: the SQLite service's, the PostgreSQL rows
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
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            f"bench.baselines:{factory}",
            "--app-dir",
            str(ROOT),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--workers",
            "1",
            "--log-level",
            "warning",
            "--no-access-log",
            "--limit-concurrency",
            "1000",
            "--timeout-keep-alive",
            "5",
            "--http",
            "httptools",
            "--loop",
            "uvloop",
        ]
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

    def repeat(self, targets: dict[str, tuple[Target, Server]]) -> dict[str, Measurement]:
        """Each target `repetitions` times, interleaved (all targets once, then again)."""
        results = {key: Measurement() for key in targets}
        for rep in range(self.plan.repetitions):
            for key, (target, server) in targets.items():
                run = self.measure(target, server)
                results[key].runs.append(run)
                log(
                    f"  {key} [{rep + 1}/{self.plan.repetitions}]: {run.rps:,.0f} req/s, p50 {run.p50_ms:.2f} ms, p99 {run.p99_ms:.2f} ms"
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

    def run(self) -> dict[str, dict[str, dict[int, float]]]:
        """Every part asked for; returns the concurrency sweep (empty without the SQLite part)."""
        sweep: dict[str, dict[str, dict[int, float]]] = {}
        if self.sqlite:
            sweep = self.run_sqlite()
            self.stop_all()  # the SQLite part's processes are done: nothing of theirs runs beside the next
        if self.pg:
            postgres.measure(self)
        return sweep

    def run_sqlite(self) -> dict[str, dict[str, dict[int, float]]]:
        plan, tmp = self.plan, self.tmp
        sizes = plan.sizes

        log(f"cold start on empty data dirs ({plan.cold_starts}x)")
        self.cold_starts("empty", "cold start, empty data dir (creates CA, schema)", lambda i: tmp / f"cold-{i}")

        log("starting the service and creating peerings through POST /v1/peering/token")
        service = self.cluster("service", tmp / "service")
        count, took = populate(service, sizes)
        self.data["peerings"] = count
        self.data["populate"] = {"peerings": count, "seconds": took}
        log(
            f"  created {count:,} peerings in {took:.1f} s ({count / took:,.0f}/s with {CONNECTIONS} concurrent httpx requests)"
        )
        time.sleep(2)
        self.rss("populated", service, f"RSS idle with {count:,} peerings, after creating them", limit=True)

        self.stop(service)
        log(f"cold start with {count:,} peerings ({plan.cold_starts}x)")
        self.cold_starts("populated", f"cold start, {count:,} peerings", lambda _: tmp / "service")
        service = self.cluster("service", tmp / "service")
        time.sleep(2)
        self.rss("restarted", service, f"RSS idle with {count:,} peerings, after a restart", limit=True)

        # bytes the baselines serve, captured from the service
        base_dir = tmp / "baseline"
        base_dir.mkdir()
        read = httpx.get(f"{service.url}/v1/peering/{READ_NAME}")
        read.raise_for_status()
        (base_dir / "read.json").write_bytes(read.content)
        for size in sizes:
            listed = httpx.get(f"{service.url}/v1/peerings", params={"partition": partition_of(size)}, timeout=60)
            listed.raise_for_status()
            if len(orjson.loads(listed.content)) != size:
                raise RuntimeError(
                    f"partition {partition_of(size)} lists {len(orjson.loads(listed.content))} peerings, not {size}"
                )
            (base_dir / f"list-{partition_of(size)}.json").write_bytes(listed.content)
            self.data.setdefault("list_bytes", {})[size] = len(listed.content)
        self.data["read_bytes"] = len(read.content)

        log("starting the baseline apps")
        apps = {label: self.baseline(label, base_dir) for label in baselines.APPS}
        for label, app in apps.items():
            log(f"  {label}: pid {app.pid}, port {app.ports[0]}, ready in {app.ready_after * 1000:.0f} ms")

        def read_url(server: Server, partition: str, name: str) -> Target:
            return Target(f"{server.url}/v1/peering/{name}?partition={partition}")

        def list_url(server: Server, size: int) -> Target:
            return Target(f"{server.url}/v1/peerings?partition={partition_of(size)}")

        log(f"reads and lists: {plan.repetitions} x {plan.seconds} s per target, {CONNECTIONS} connections")
        targets: dict[str, tuple[Target, Server]] = {
            "read": (read_url(service, "default", READ_NAME), service),
            **{f"read {size}": (read_url(service, partition_of(size), name_in(size // 2)), service) for size in sizes},
            **{f"list {size}": (list_url(service, size), service) for size in sizes},
            "bare ASGI": (read_url(apps["bare ASGI"], "default", READ_NAME), apps["bare ASGI"]),
            "bare FastAPI": (read_url(apps["bare FastAPI"], "default", READ_NAME), apps["bare FastAPI"]),
            "FastAPI + SELECT": (
                read_url(apps["FastAPI + aiosqlite SELECT"], "default", READ_NAME),
                apps["FastAPI + aiosqlite SELECT"],
            ),
            **{
                f"pre-serialised {size}": (
                    list_url(apps["FastAPI pre-serialised list"], size),
                    apps["FastAPI pre-serialised list"],
                )
                for size in sizes
            },
            "pydantic 1000": (
                list_url(apps["FastAPI list, pydantic response model"], 1000),
                apps["FastAPI list, pydantic response model"],
            ),
            "default JSON 1000": (
                list_url(apps["FastAPI list, default JSON response"], 1000),
                apps["FastAPI list, default JSON response"],
            ),
        }
        m = self.repeat(targets)
        self.rss("after-reads", service, "RSS after the read and list load", limit=False)

        log(f"token generation: {plan.repetitions} x {plan.seconds} s per target")
        new_names = '{"PeerName": "{n}", "Partition": "' + WRITE_PARTITION + '"}'
        insert = apps["FastAPI + durable SQLite insert"]
        m |= self.repeat(
            {
                "token (new names)": (Target(f"{service.url}/v1/peering/token", "POST", new_names), service),
                "token (regenerate)": (
                    Target(
                        f"{service.url}/v1/peering/token",
                        "POST",
                        '{"PeerName": "bench-regen", "Partition": "' + WRITE_PARTITION + '"}',
                    ),
                    service,
                ),
                "durable insert": (Target(f"{insert.url}/v1/peering/token", "POST", new_names), insert),
            }
        )
        measured = sum(r.requests for r in m["token (new names)"].runs)
        stored = httpx.get(f"{service.url}/v1/peerings", params={"partition": WRITE_PARTITION}, timeout=120)
        stored.raise_for_status()
        created = len(orjson.loads(stored.content)) - 1  # less the regenerated one
        if created < measured:  # each answered request must have created a peering (plus warm-ups)
            raise RuntimeError(f"{measured} token requests answered, but only {created} new peerings stored")
        self.data["token_peerings_created"] = created
        self.rss("after-tokens", service, f"RSS after the token load (+{created:,} peerings)", limit=False)

        fastapi = ("bare FastAPI", m["bare FastAPI"])
        self.row(
            "read",
            f"read by name (default partition, {count:,} peerings in the cluster)",
            m["read"],
            baseline=fastapi,
            minimum=0.8,
        )
        for size in sizes:
            self.row(
                "read", f"read by name in a partition of {size:,}", m[f"read {size}"], baseline=fastapi, minimum=0.8
            )
        for size in sizes:
            self.row(
                "list",
                f"list of {size:,} ({self.data['list_bytes'][size]:,} bytes)",
                m[f"list {size}"],
                baseline=("pre-serialised bytes", m[f"pre-serialised {size}"]),
                minimum=0.7 if size == 1000 else None,
            )
        durable = ("durable SQLite insert", m["durable insert"])
        self.row(
            "token",
            "token generation, a new name each request (creates a peering)",
            m["token (new names)"],
            baseline=durable,
            minimum=0.5,
        )
        self.row("token", "token re-generation of one name", m["token (regenerate)"], baseline=durable)

        log(f"establish: {plan.establish_rounds} rounds per partition, against a second cluster")
        dialer = self.cluster("dialer", tmp / "dialer", "dc2")
        self.establish(service, dialer, "default", "establish (default partition)", "default", target=True)
        for size in sizes:
            self.establish(
                service,
                dialer,
                str(size),
                f"establish in a partition of {size:,} (acceptor side)",
                partition_of(size),
                target=False,
            )

        log(f"concurrency sweep {SWEEP}: {plan.sweep_seconds} s per point")
        sweep_targets = {
            f"read by name ({count:,} peerings)": {"peering": targets["read"], "bare FastAPI": targets["bare FastAPI"]},
            "list of 1,000": {"peering": targets["list 1000"], "pre-serialised bytes": targets["pre-serialised 1000"]},
        }
        sweep: dict[str, dict[str, dict[int, float]]] = {
            panel: {label: {} for label in lines} for panel, lines in sweep_targets.items()
        }
        for connections in SWEEP:
            for panel, lines in sweep_targets.items():
                for label, (target, server) in lines.items():
                    result = self.measure(
                        target, server, connections=connections, seconds=plan.sweep_seconds, warmup=plan.sweep_warmup
                    )
                    if result.socket_errors or result.bad_status:
                        raise RuntimeError(f"sweep {panel} {label} at {connections}: {result}")
                    sweep[panel][label][connections] = result.rps
            log(
                "  "
                + ", ".join(
                    f"{panel} {label} {sweep[panel][label][connections]:,.0f}"
                    for panel, lines in sweep_targets.items()
                    for label in lines
                )
                + f" req/s at {connections}"
            )
        self.data["sweep"] = sweep
        self.rss("end", service, "RSS at the end of the run (after establish and the sweep)", limit=False)

        # the baselines themselves, for orientation
        for key, label, ref in (
            ("bare ASGI", "bare ASGI app, constant read bytes", "bare FastAPI"),
            ("bare FastAPI", "bare FastAPI route, constant read bytes", None),
            ("FastAPI + SELECT", "FastAPI + one aiosqlite SELECT", "bare FastAPI"),
        ):
            self.row("baselines", label, m[key], baseline=(ref, m[ref]) if ref else None)
        for size in sizes:
            self.row("baselines", f"FastAPI, pre-serialised list of {size:,}", m[f"pre-serialised {size}"])
        preserialised = ("pre-serialised bytes", m["pre-serialised 1000"])
        self.row(
            "baselines", "FastAPI list of 1,000, pydantic response model", m["pydantic 1000"], baseline=preserialised
        )
        self.row(
            "baselines", "FastAPI list of 1,000, default JSON response", m["default JSON 1000"], baseline=preserialised
        )
        self.row("baselines", "FastAPI + one durable SQLite insert", m["durable insert"])
        return sweep

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop(10)
        self.servers.clear()


def command_flags(args: argparse.Namespace) -> str:
    """The options of this run as they were given (for the report)."""
    flags = [
        f
        for f, on in (
            ("--quick", args.quick),
            ("--postgres-only", args.postgres_only),
            ("--no-postgres", args.no_postgres),
        )
        if on
    ]
    if args.load_generator != "wrk":
        flags.append(f"--load-generator {args.load_generator}")
    return "".join(f" {f}" for f in flags)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="one short repetition, smaller partitions: a sanity run")
    parser.add_argument(
        "--load-generator", choices=("wrk", "python"), default="wrk", help="python: the asyncio fallback"
    )
    parser.add_argument("--results-dir", type=Path, default=ROOT / "bench" / "results")
    parts = parser.add_mutually_exclusive_group()
    parts.add_argument("--postgres-only", action="store_true", help="only the PostgreSQL rows and their baselines")
    parts.add_argument("--no-postgres", action="store_true", help="leave the PostgreSQL rows out")
    args = parser.parse_args()

    began = time.perf_counter()
    plan = Plan.of(args.quick)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    load_start = loadavg()
    digest_start = tree_digest()
    plot_problem = report.ensure_matplotlib()
    tmp = Path(tempfile.mkdtemp(prefix="peering-bench-"))
    generator = LoadGenerator(tmp, force_python=args.load_generator == "python")
    log(f"load generator: {generator.description}; load average {load_start[0]:.2f}; work dir {tmp}")
    bench = Bench(plan, generator, tmp, sqlite=not args.postgres_only, pg=not args.no_postgres)
    try:
        sweep = bench.run()
    except (StartError, RuntimeError, httpx.HTTPError) as exc:
        print(f"\nbenchmark failed: {exc}\n(logs of the processes under test: {bench.logs})", file=sys.stderr)
        bench.stop_all()
        return 1
    except BaseException:
        bench.stop_all()
        raise
    bench.stop_all()

    elapsed = time.perf_counter() - began
    load_end = loadavg()
    digest_end = tree_digest()
    foreign = bench.foreign
    preamble = [
        f"{git_describe()}; Python {platform.python_version()}; {os.cpu_count()} CPUs; {'QUICK run' if args.quick else 'full run'}"
        + (", the PostgreSQL rows only (--postgres-only)." if args.postgres_only else ".")
        + f" Command: `.venv/bin/python bench/run.py{command_flags(args)}`.",
        f"Load: {generator.description}, {CONNECTIONS} connections, {plan.repetitions} x {plan.seconds} s per target after a {plan.warmup} s warm-up, "
        "repetitions interleaved across targets; req/s, p50 and p99 are medians over the repetitions.",
        f"Every server is a separate process on 127.0.0.1 (uvicorn, 1 worker, uvloop, httptools; the service too, as `peering serve` runs by default), data in a temp dir on the same file system. Total run time {elapsed:.0f} s.",
        f"Load average at start {load_start[0]:.2f} (1 min), at end {load_end[0]:.2f}; other processes used {statistics.median(foreign):.2f} cores (median), "
        f"{max(foreign):.2f} at most, during the measured runs.",
    ]
    notes = [
        "† other processes used more than "
        + f"{BUSY_CORES} cores during that row's runs (median): treat its absolute numbers with care; the ratio is still fair-ish since the baseline ran interleaved.",
    ]
    notes += (
        []
        if args.postgres_only
        else [
            "Memory (VmRSS, MB = 10^6 bytes) and startup rows show their value in the p50 column (startup: median of "
            + f"{plan.cold_starts}, slowest in p99). Cold start is process spawn → `GET /v1/status/leader` answers.",
            f"Token generation: POST /v1/peering/token with a new name per request (a wrk Lua counter), so each request creates a peering in partition `{WRITE_PARTITION}`; "
            "re-generation posts one name again and again. The durable-insert baseline inserts one row per request in autocommit (WAL, synchronous=FULL).",
            "Establish: sequential, a fresh token from the service (acceptor) each round, established on a second cluster (dialer); req/s does not apply. "
            f"Medians and p99 over {plan.establish_rounds} rounds after 5 warm-up rounds.",
            "Peerings were created through the real API (POST /v1/peering/token); they are acceptor-side, INITIAL, with a small Meta (list items carry no PeerCAPems).",
        ]
    )
    notes += postgres.notes(bench)
    warnings = []
    if load_start[0] > 0.5:
        warnings.append(
            f"the load average was {load_start[0]:.2f} before the run started: other work was running on this 2-core machine."
        )
    if statistics.median(foreign) > BUSY_CORES:
        warnings.append(
            f"other processes were busy during the measurements ({statistics.median(foreign):.2f} cores median)."
        )
    if digest_start != digest_end:
        warnings.append("the code in peering/ changed during the run: restarts may have run different code.")
    if generator.wrk is None:
        warnings.append(f"load came from the in-Python fallback, not wrk ({generator.description}).")
    if plot_problem:
        warnings.append(f"no plot: {plot_problem}")
    notes += [f"**Warning**: {w}" for w in warnings]

    title = f"peering benchmark {stamp}"
    text = report.markdown(title, preamble, bench.rows, notes)
    data = {
        "stamp": stamp,
        "quick": args.quick,
        "plan": plan.__dict__,
        "load_generator": generator.description,
        "git": git_describe(),
        "peering_digest": [digest_start, digest_end],
        "loadavg": {"start": load_start, "end": load_end},
        "foreign_cpu_cores": foreign,
        "seconds": elapsed,
        "rows": bench.rows,
        "warnings": warnings,
        **bench.data,
    }
    md, js = report.save(args.results_dir, stamp, text, data)
    print("\n" + text)
    if not plot_problem and sweep:
        png = args.results_dir / f"{stamp}-concurrency.png"
        report.plot(sweep, png, f"{title}: req/s by concurrency ({plan.sweep_seconds} s per point, 1 wrk thread)")
        print(f"plot: {png}")
    print(f"report: {md}\nraw numbers: {js}\ntotal run time: {elapsed:.0f} s")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
