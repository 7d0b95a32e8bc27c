"""The watcher rows of the benchmark (issue 16 item 4): many blocking queries held by one replica.

For each route of `bench.watchers.ROUTES` (`/v1/peerings`, `/v1/health/service/web`) a fresh `peering serve`
on SQLite, `bench.plan.watchers` blocking queries held on it for `watcher_hold` s by `bench.watchers.measure`
(raw sockets from 127.0.0.2.. in this process, uvloop), one write that wakes them all, a probe process
reading a peering meanwhile. Rows: RSS growth with the queries held, the wake-up times, the probe's reads
while held, and how soon the server's gauge is back at 0 when the watchers' sockets close. The figures go
to `bench.data["watchers"]`.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

import uvloop

from bench.harness import log
from bench.report import Row
from bench.watchers import ROUTES, Figures
from bench.watchers import measure as hold_watchers

if TYPE_CHECKING:
    from bench.harness import Bench

SECTION = "watchers"
RSS_GROWTH_MB = 200  # the bounds for 10,000 watchers on one replica
WAKE_MS = 1000
OTHER_P99_MS = 50
MIB = 1024 * 1024 / 1e6  # bench/watchers.py reads VmRSS in MiB; the report's memory rows are in MB (10^6 bytes)


def measure(bench: Bench) -> None:
    """One cluster per route, the watchers held and woken on it, its rows added; the cluster stopped."""
    plan = bench.plan
    figures: list[Figures] = []
    for route in ROUTES.values():
        log(f"watchers: {plan.watchers:,} blocking queries on {route.path}, held {plan.watcher_hold:g} s")
        server = bench.cluster(f"watchers-{route.name}", bench.tmp / f"watchers-{route.name}")
        found = uvloop.run(
            hold_watchers(
                "127.0.0.1",
                server.ports[0],
                server.pid,
                route,
                plan.watchers,
                hold=plan.watcher_hold,
                settle=plan.watcher_settle,
            )
        )
        bench.stop(server)
        figures.append(found)
        _rows(bench, route.path, found)
        log(
            f"  RSS +{found.rss_growth_mb * MIB:.1f} MB; wake p50 {found.wake_p50_ms:.0f} ms, p99 "
            f"{found.wake_p99_ms:.0f} ms, last {found.wake_last_ms:.0f} ms ({found.woken_ok:,} woken); other reads "
            f"p99 {found.other['all'].p99_ms:.1f} ms" + "".join(f"; {note}" for note in found.notes)
        )
    bench.data[SECTION] = [asdict(found) for found in figures]


def _rows(bench: Bench, path: str, found: Figures) -> None:
    n = found.watchers
    growth, held = found.rss_growth_mb * MIB, found.rss_held_mb * MIB
    other = found.other["all"]
    failed = f", {found.other_failures} failed" if found.other_failures else ""
    freed = "—" if found.freed_gauge_ms is None else f"{found.freed_gauge_ms:.0f} ms"
    bench.rows += [
        Row(
            SECTION,
            f"RSS growth, {n:,} blocking queries held on {path}",
            value=f"+{growth:.1f} MB",
            value_max=f"{held:.1f} MB held",
            target=f"≤ {RSS_GROWTH_MB} MB",
            passed=growth <= RSS_GROWTH_MB,
        ),
        Row(
            SECTION,
            f"one write wakes {n:,} watchers on {path}: its answer after the write",
            p50_ms=found.wake_p50_ms,
            p99_ms=found.wake_p99_ms,
        ),
        Row(
            SECTION,
            f"… the last of them ({found.woken_ok:,} of {n:,} woken)",
            value=f"{found.wake_last_ms:.0f} ms",
            target=f"all within {WAKE_MS / 1000:g} s",
            passed=found.woken_ok == n and found.wake_last_ms <= WAKE_MS and not found.notes,
        ),
        Row(
            SECTION,
            f"other reads (GET /v1/peering/<name>) while they are held and woken ({other.samples} reads{failed})",
            p50_ms=other.p50_ms,
            p99_ms=other.p99_ms,
            target=f"p99 ≤ {OTHER_P99_MS} ms",
            passed=other.p99_ms <= OTHER_P99_MS and not found.other_failures,
        ),
        Row(SECTION, f"… the {n:,} sockets closed: server's blocking-query gauge back at 0 after", value=freed),
    ]


def notes(bench: Bench) -> list[str]:
    """What the report says about these rows."""
    runs = bench.data.get(SECTION)
    if not runs:
        return []  # not measured in this run
    problems = [f"{run['route']}: {note}" for run in runs for note in run["notes"]]
    return [
        f"Watchers: per route a fresh `peering serve` (SQLite) holding {bench.plan.watchers:,} blocking queries "
        "(`?index=<current>&wait=5m`, one raw connection each from 127.0.0.2.. in the bench process, uvloop), "
        f"for {bench.plan.watcher_hold:g} s, then one write (a token on /v1/peerings, a registration of web-1 "
        "on /v1/health/service/web); each watcher asks again at once with its new index, as clients do. RSS growth: "
        "VmRSS with the queries held less VmRSS before (after a warm-up of 50); wake: from the write to each "
        "watcher's answer, p50/p99 and the last; other reads: a separate process reading one peering every 20 ms "
        "from the start of the hold until the sockets close (held, woken, re-armed)."
        + (f" **Problems**: {'; '.join(problems)}." if problems else "")
    ]
