"""The PostgreSQL rows of the benchmark (SPEC §11: "the same rows on PostgreSQL (§15) beside SQLite's").

A throwaway PostgreSQL server, started as the tests start theirs (`tests/postgres.py`: Debian's server,
run as the `postgres` user when we are root, on 127.0.0.1 at a port the OS picked, fsync,
synchronous_commit and full_page_writes on), and on it:

- one replica: `peering serve --database-url postgresql://…` (database of its own), filled through
  its API like the SQLite service (the read target and partitions of 10 and 1,000);
- its baselines, each its own uvicorn process, measured in the same run and interleaved with it: bare
  FastAPI returning the replica's read bytes, the replica's list of 1,000 pre-serialised, and FastAPI
  + one durable asyncpg insert per request (one row per transaction, synchronous_commit on) on a
  second database of the same server: the write baseline;
- establish with the replica as acceptor and a SQLite cluster dialing it.

Without a server installed the rows are skipped with the reason printed, except under CI=true, where
that is an error (as in the tests).
"""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import httpx
import orjson

from bench.harness import log
from bench.load import Target
from bench.populate import READ_NAME, WRITE_PARTITION, partition_of, populate
from bench.procs import Server, StartError
from tests.postgres import PostgresMissingError, PostgresServer, running_server

if TYPE_CHECKING:
    from bench.harness import Bench

SIZES = (10, 1000)
SECTION = "postgres"
INSERT = "FastAPI + durable PostgreSQL insert"
SERIALISED = "FastAPI + serialised PostgreSQL insert"


def server_version(server: PostgresServer) -> str:
    """`postgres --version` of our own server (an external one: where it runs)."""
    if server.bindir is None:
        return "external server (PEERING_TEST_PG_DSN)"
    done = subprocess.run(
        [str(server.bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10, check=False
    )
    return done.stdout.strip()


def measure(bench: Bench) -> None:
    """Add the PostgreSQL rows to `bench` (or the reason they are skipped to its data)."""
    try:
        with running_server() as server:
            _measure(bench, server)
    except PostgresMissingError as exc:
        if os.environ.get("CI") == "true":
            raise StartError(f"CI=true, where the PostgreSQL rows must run: {exc}") from exc
        reason = f"PostgreSQL rows skipped: {exc}"
        print(reason, flush=True)
        bench.data["postgres"] = {"skipped": reason}


def _measure(bench: Bench, server: PostgresServer) -> None:
    plan, tmp = bench.plan, bench.tmp
    version = server_version(server)
    log(f"PostgreSQL: {version}, started in {server.started_in:.1f} s (tests/postgres.py; fsync on)")
    service_dsn, insert_dsn = server.create_database(), server.create_database()
    bench.data["postgres"] = {"server": version, "sizes": SIZES}

    replica = bench.cluster("pg-replica", tmp / "pg-replica", "dc1", extra=("--database-url", service_dsn))
    log(f"  replica up in {replica.ready_after * 1000:.0f} ms; creating peerings through POST /v1/peering/token")
    count, took = populate(replica, SIZES)
    bench.data["postgres"]["populate"] = {"peerings": count, "seconds": took}
    log(f"  created {count:,} peerings in {took:.1f} s ({count / took:,.0f}/s)")

    # the baselines serve the replica's own bytes
    base_dir = tmp / "pg-baseline"
    base_dir.mkdir()
    read = httpx.get(f"{replica.url}/v1/peering/{READ_NAME}")
    read.raise_for_status()
    (base_dir / "read.json").write_bytes(read.content)
    for size in SIZES:
        listed = httpx.get(f"{replica.url}/v1/peerings", params={"partition": partition_of(size)}, timeout=60)
        listed.raise_for_status()
        if len(orjson.loads(listed.content)) != size:
            raise RuntimeError(f"the replica lists {len(orjson.loads(listed.content))} peerings, not {size}")
        (base_dir / f"list-{partition_of(size)}.json").write_bytes(listed.content)
    list_bytes = len((base_dir / "list-p1000.json").read_bytes())
    fastapi = bench.baseline("bare FastAPI", base_dir)
    preserialised = bench.baseline("FastAPI pre-serialised list", base_dir)
    insert = bench.baseline(INSERT, base_dir, {"BENCH_PG_DSN": insert_dsn})
    serialised = bench.baseline(SERIALISED, base_dir, {"BENCH_PG_DSN": insert_dsn})

    def read_target(url: str) -> Target:
        return Target(f"{url}/v1/peering/{READ_NAME}?partition=default")

    def list_target(url: str) -> Target:
        return Target(f"{url}/v1/peerings?partition={partition_of(1000)}")

    log(f"PostgreSQL reads and lists: {plan.repetitions} x {plan.seconds} s per target")
    m = bench.repeat(
        {
            "pg read": (read_target(replica.url), replica),
            "pg list 1000": (list_target(replica.url), replica),
            "pg bare FastAPI": (read_target(fastapi.url), fastapi),
            "pg pre-serialised 1000": (list_target(preserialised.url), preserialised),
        }
    )
    log(f"PostgreSQL token generation: {plan.repetitions} x {plan.seconds} s per target")
    new_names = '{"PeerName": "{n}", "Partition": "' + WRITE_PARTITION + '"}'
    regenerate = '{"PeerName": "bench-regen", "Partition": "' + WRITE_PARTITION + '"}'
    m |= bench.repeat(
        {
            "pg token (new names)": (Target(f"{replica.url}/v1/peering/token", "POST", new_names), replica),
            "pg token (regenerate)": (Target(f"{replica.url}/v1/peering/token", "POST", regenerate), replica),
            "pg durable insert": (Target(f"{insert.url}/v1/peering/token", "POST", new_names), insert),
            "pg serialised insert": (Target(f"{serialised.url}/v1/peering/token", "POST", new_names), serialised),
        }
    )
    measured = sum(r.requests for r in m["pg token (new names)"].runs)
    stored = httpx.get(f"{replica.url}/v1/peerings", params={"partition": WRITE_PARTITION}, timeout=120)
    stored.raise_for_status()
    created = len(orjson.loads(stored.content)) - 1  # less the regenerated one
    if created < measured:
        raise RuntimeError(f"{measured} token requests answered on PostgreSQL, only {created} peerings stored")
    bench.data["postgres"]["token_peerings_created"] = created

    bench.row(
        SECTION,
        f"PostgreSQL replica: read by name ({count:,} peerings in the cluster)",
        m["pg read"],
        baseline=("bare FastAPI", m["pg bare FastAPI"]),
        minimum=0.8,
    )
    bench.row(
        SECTION,
        f"PostgreSQL replica: list of 1,000 ({list_bytes:,} bytes)",
        m["pg list 1000"],
        baseline=("pre-serialised bytes", m["pg pre-serialised 1000"]),
        minimum=0.7,
    )
    durable = ("durable PostgreSQL insert", m["pg durable insert"])
    bench.row(
        SECTION,
        "PostgreSQL replica: token generation, a new name each request (creates a peering)",
        m["pg token (new names)"],
        baseline=durable,
        minimum=0.5,
    )
    bench.row(
        SECTION, "PostgreSQL replica: token re-generation of one name", m["pg token (regenerate)"], baseline=durable
    )

    log(f"PostgreSQL establish: {plan.establish_rounds} rounds, the replica accepting, a SQLite cluster dialing")
    dialer = bench.cluster("pg-dialer", tmp / "pg-dialer", "dc2")
    bench.establish(
        replica, dialer, "postgres", "PostgreSQL replica: establish (acceptor: the replica)", "default", target=True
    )
    bench.rows[-1].section = SECTION
    bench.rss("postgres", replica, f"RSS of the PostgreSQL replica at the end (+{created:,} peerings)", limit=False)
    bench.rows[-1].section = SECTION

    bench.row(SECTION, "baseline: bare FastAPI route, the replica's read bytes", m["pg bare FastAPI"])
    bench.row(SECTION, "baseline: FastAPI, the replica's list of 1,000 pre-serialised", m["pg pre-serialised 1000"])
    bench.row(SECTION, "baseline: FastAPI + one durable asyncpg insert (a transaction per row)", m["pg durable insert"])
    bench.row(
        SECTION,
        "orientation: the same insert after a counter-row bump, with a NOTIFY (writers serialised, as the store's)",
        m["pg serialised insert"],
        baseline=durable,
    )

    bench.stop(dialer)
    bench.stop(replica)  # exit 0 on SIGTERM, as the SQLite service's
    for app in (serialised, insert, preserialised, fastapi):
        _stop(bench, app)
    for dsn in (service_dsn, insert_dsn):
        server.drop_database(dsn)


def _stop(bench: Bench, app: Server) -> None:
    app.stop(10)
    bench.servers.remove(app)


def notes(bench: Bench) -> list[str]:
    """The report's notes on the PostgreSQL rows (or why there are none)."""
    data = bench.data.get("postgres")
    if not bench.pg or data is None:
        return []
    if "skipped" in data:
        return [f"**{data['skipped']}**"]
    return [
        f"PostgreSQL rows: {data['server']}, a throwaway server on 127.0.0.1 started as the tests start theirs "
        "(tests/postgres.py; fsync, synchronous_commit and full_page_writes on); one `peering serve --database-url` "
        f"replica on it, filled like the SQLite service (the read target and partitions of {', '.join(f'{s:,}' for s in SIZES)}). "
        "Its baselines ran in the same run, interleaved with it: bare FastAPI and the pre-serialised list serve the "
        "replica's own bytes; the write baseline is FastAPI + one asyncpg INSERT per request in autocommit (one row per "
        "transaction, synchronous_commit on) into a second database of the same server, through a pool of 10 connections "
        "as the replica's. The orientation row runs the same insert in a transaction that first bumps one counter row "
        "and ends with a NOTIFY, as every write of the PostgreSQL store does: what serialising writers on the index "
        f"costs by itself. Establish: the replica accepts, a SQLite cluster dials, {bench.plan.establish_rounds} "
        "sequential rounds after 5 warm-up ones; its RSS row is VmRSS at the end, in the p50 column.",
    ]
