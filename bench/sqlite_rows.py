"""The SQLite service's rows of the benchmark (SPEC §11): one `peering serve` on SQLite against the baselines.

Cold starts (empty and populated data dirs), RSS, reads by name and lists against bare FastAPI and the
service's own list bytes pre-serialised, token generation against a durable SQLite insert, establish
against a second cluster, the concurrency sweep, and the baselines themselves for orientation.
`measure(bench)` adds the rows and returns the sweep for the plot; `notes(bench)` is what the report says.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import httpx
import orjson

from bench import baselines
from bench.harness import log
from bench.load import Target
from bench.populate import CONNECTIONS, READ_NAME, WRITE_PARTITION, name_in, partition_of, populate
from bench.procs import Server

if TYPE_CHECKING:
    from bench.harness import Bench

SWEEP = (1, 2, 4, 8, 16, 32, 64, 128)


def measure(bench: Bench) -> dict[str, dict[str, dict[int, float]]]:
    """Add the SQLite service's rows to `bench`; returns the concurrency sweep (for the plot)."""
    plan, tmp = bench.plan, bench.tmp
    sizes = plan.sizes

    log(f"cold start on empty data dirs ({plan.cold_starts}x)")
    bench.cold_starts("empty", "cold start, empty data dir (creates CA, schema)", lambda i: tmp / f"cold-{i}")

    log("starting the service and creating peerings through POST /v1/peering/token")
    service = bench.cluster("service", tmp / "service")
    count, took = populate(service, sizes)
    bench.data["peerings"] = count
    bench.data["populate"] = {"peerings": count, "seconds": took}
    log(
        f"  created {count:,} peerings in {took:.1f} s ({count / took:,.0f}/s with {CONNECTIONS} concurrent httpx requests)"
    )
    time.sleep(2)
    bench.rss("populated", service, f"RSS idle with {count:,} peerings, after creating them", limit=True)

    bench.stop(service)
    log(f"cold start with {count:,} peerings ({plan.cold_starts}x)")
    bench.cold_starts("populated", f"cold start, {count:,} peerings", lambda _: tmp / "service")
    service = bench.cluster("service", tmp / "service")
    time.sleep(2)
    bench.rss("restarted", service, f"RSS idle with {count:,} peerings, after a restart", limit=True)

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
        bench.data.setdefault("list_bytes", {})[size] = len(listed.content)
    bench.data["read_bytes"] = len(read.content)

    log("starting the baseline apps")
    apps = {label: bench.baseline(label, base_dir) for label in baselines.APPS}
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
    m = bench.repeat(targets)
    bench.rss("after-reads", service, "RSS after the read and list load", limit=False)

    log(f"token generation: {plan.repetitions} x {plan.seconds} s per target")
    new_names = '{"PeerName": "{n}", "Partition": "' + WRITE_PARTITION + '"}'
    insert = apps["FastAPI + durable SQLite insert"]
    m |= bench.repeat(
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
    bench.data["token_peerings_created"] = created
    bench.rss("after-tokens", service, f"RSS after the token load (+{created:,} peerings)", limit=False)

    fastapi = ("bare FastAPI", m["bare FastAPI"])
    bench.row(
        "read",
        f"read by name (default partition, {count:,} peerings in the cluster)",
        m["read"],
        baseline=fastapi,
        minimum=0.8,
    )
    for size in sizes:
        bench.row("read", f"read by name in a partition of {size:,}", m[f"read {size}"], baseline=fastapi, minimum=0.8)
    for size in sizes:
        bench.row(
            "list",
            f"list of {size:,} ({bench.data['list_bytes'][size]:,} bytes)",
            m[f"list {size}"],
            baseline=("pre-serialised bytes", m[f"pre-serialised {size}"]),
            minimum=0.7 if size == 1000 else None,
        )
    durable = ("durable SQLite insert", m["durable insert"])
    bench.row(
        "token",
        "token generation, a new name each request (creates a peering)",
        m["token (new names)"],
        baseline=durable,
        minimum=0.5,
    )
    bench.row("token", "token re-generation of one name", m["token (regenerate)"], baseline=durable)

    log(f"establish: {plan.establish_rounds} rounds per partition, against a second cluster")
    dialer = bench.cluster("dialer", tmp / "dialer", "dc2")
    bench.establish(service, dialer, "default", "establish (default partition)", "default", target=True)
    for size in sizes:
        bench.establish(
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
                result = bench.measure(
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
    bench.data["sweep"] = sweep
    bench.rss("end", service, "RSS at the end of the run (after establish and the sweep)", limit=False)

    # the baselines themselves, for orientation
    for key, label, ref in (
        ("bare ASGI", "bare ASGI app, constant read bytes", "bare FastAPI"),
        ("bare FastAPI", "bare FastAPI route, constant read bytes", None),
        ("FastAPI + SELECT", "FastAPI + one aiosqlite SELECT", "bare FastAPI"),
    ):
        bench.row("baselines", label, m[key], baseline=(ref, m[ref]) if ref else None)
    for size in sizes:
        bench.row("baselines", f"FastAPI, pre-serialised list of {size:,}", m[f"pre-serialised {size}"])
    preserialised = ("pre-serialised bytes", m["pre-serialised 1000"])
    bench.row("baselines", "FastAPI list of 1,000, pydantic response model", m["pydantic 1000"], baseline=preserialised)
    bench.row(
        "baselines", "FastAPI list of 1,000, default JSON response", m["default JSON 1000"], baseline=preserialised
    )
    bench.row("baselines", "FastAPI + one durable SQLite insert", m["durable insert"])
    return sweep


def notes(bench: Bench) -> list[str]:
    """What the report says about these rows (none when the SQLite part did not run)."""
    if not bench.sqlite:
        return []
    plan = bench.plan
    return [
        "Memory (VmRSS, MB = 10^6 bytes) and startup rows show their value in the p50 column (startup: median of "
        + f"{plan.cold_starts}, slowest in p99). Cold start is process spawn → `GET /v1/status/leader` answers.",
        f"Token generation: POST /v1/peering/token with a new name per request (a wrk Lua counter), so each request creates a peering in partition `{WRITE_PARTITION}`; "
        "re-generation posts one name again and again. The durable-insert baseline inserts one row per request in autocommit (WAL, synchronous=FULL).",
        "Establish: sequential, a fresh token from the service (acceptor) each round, established on a second cluster (dialer); req/s does not apply. "
        f"Medians and p99 over {plan.establish_rounds} rounds after 5 warm-up rounds.",
        "Peerings were created through the real API (POST /v1/peering/token); they are acceptor-side, INITIAL, with a small Meta (list items carry no PeerCAPems).",
    ]
