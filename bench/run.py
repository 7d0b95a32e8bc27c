"""The benchmark (SPEC §11, issues 14 and 16): the service against baselines measured in the same run, as ratios.

Usage: .venv/bin/python bench/run.py [--quick] [--load-generator wrk|python] [--results-dir DIR]
                                     [--postgres-only | --no-postgres]

Runs its parts one after the other, each with its own processes (stopped before the next part starts):
the SQLite service against seven baseline apps (bench/sqlite_rows.py: reads, lists, tokens, establish, RSS,
cold starts, the concurrency sweep), the ACL rows (bench/acl_rows.py: ACLs on against off and a raw ASGI
app), sharing a catalog across a peering (bench/sharing.py), many watchers (bench/watcher_rows.py over
bench/watchers.py), then the PostgreSQL rows (bench/postgres.py). Load comes from wrk (1 thread, 32
connections, a warm-up run before each measured run, repetitions interleaved so that drift hits service
and baselines alike). Writes bench/results/<stamp>.md, .json and -concurrency.png; docs/benchmark.md is
written by hand from such a report. See the "Benchmarks" section of README.md.
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
from datetime import UTC, datetime
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import acl_rows, postgres, report, sharing, sqlite_rows, watcher_rows
from bench.harness import BUSY_CORES, Bench, Plan, log
from bench.load import LoadGenerator
from bench.populate import CONNECTIONS
from bench.procs import ROOT, StartError

__all__ = ["Bench", "Plan", "main", "run"]  # Bench and Plan live in bench/harness.py; imported from here too

Sweep = dict[str, dict[str, dict[int, float]]]


def run(bench: Bench) -> Sweep:
    """Every part asked for, in order; returns the concurrency sweep (empty without the SQLite part)."""
    sweep: Sweep = {}
    if bench.sqlite:
        plan = bench.plan
        sweep = sqlite_rows.measure(bench)
        bench.stop_all()  # each part's processes are done: nothing of theirs runs beside the next
        log(
            f"ACL rows: {acl_rows.repetitions(plan)} x {acl_rows.ACL_SECONDS} s per target, ACLs off, on, on at debug "
            "log level, raw ASGI"
        )
        acl_rows.measure(bench)
        bench.stop_all()
        sharing.measure(bench, services=plan.sharing_services, changes=plan.sharing_changes)
        bench.stop_all()
        watcher_rows.measure(bench)
        bench.stop_all()
    if bench.pg:
        postgres.measure(bench)
    return sweep


def part_notes(bench: Bench) -> list[str]:
    """The notes of every part that ran, in the order of the run."""
    notes = [*sqlite_rows.notes(bench), *acl_rows.notes(bench)]
    if sharing.SECTION in bench.data:
        notes.append(
            "Sharing: two `peering serve` on SQLite with the default 15 s heartbeats, B dialing A through a "
            f"byte-counting TCP relay (TLS passthrough); {bench.plan.sharing_services:,} services x 3 instances on A. "
            "Sync: from the exported-services write on A until B's /v1/imported-services lists every service; its "
            "p99 column shows the bytes A sent B meanwhile. Health change: one instance of web flips passing/critical "
            f"through PUT /v1/catalog/register on A, {bench.plan.sharing_changes} times, "
            f"{sharing.PACE * 1000:.0f} ms apart, timed until B's blocking query shows it. Resend: A stopped, its "
            "export marks deleted, started again: a new generation, every service resent. The health read is "
            "interleaved with a bare FastAPI route (uvicorn, httptools, uvloop) returning the same bytes."
        )
    notes += watcher_rows.notes(bench)
    if bench.sqlite:
        notes.append(
            "Not in this run: the in-process micro-benchmarks `bench/log_cost.py` (CPU per request with and "
            "without the request log line) and `bench/acl_resolve.py` (ACL resolutions/s, from the store and "
            "from memory) print their figures on their own; the ACL rows above show the log line's cost over HTTP."
        )
    return notes + postgres.notes(bench)


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
    parser.add_argument(
        "--quick",
        action="store_true",
        help="every part briefly (one short repetition, smaller partitions, 500 watchers): a sanity run",
    )
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
        sweep = run(bench)
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
    notes += part_notes(bench)
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
