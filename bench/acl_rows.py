"""The ACL rows of the benchmark (issue 16): a read by name with ACLs on against the same read with ACLs off,
and both against a raw ASGI app answering the same bytes, measured in one run, interleaved.

Usage: .venv/bin/python bench/acl_rows.py [--quick] [--load-generator wrk|python]
(standalone: these rows only, printed as the report's table); `measure(bench)` adds them to a full run.

Three `peering serve` processes at the default log level (`info`, as production runs it), each holding the
read target: ACLs off; ACLs on (default deny) read with a token whose only policy is `peering = "read"`,
sent in `X-Consul-Token` as Consul's clients send it; and the same at `--log-level debug`, which writes one
request log line per answer (to its log file), to show what that line costs over HTTP. The raw ASGI
baseline (`baselines.bare_asgi`, uvicorn with httptools and uvloop) answers the service's own read bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.load import LoadGenerator, Target
from bench.populate import CONNECTIONS, READ_NAME
from bench.procs import Server

if TYPE_CHECKING:
    from bench.harness import Bench, Plan


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


SECTION = "acl"
ACL_REPETITIONS = 9  # per target in a full run (a third of that with --quick's one repetition: 3)
ACL_SECONDS = 2
MANAGEMENT = str(uuid.uuid4())  # this run's initial management token (never printed)
ACLS_ON = ("--acl-enabled", "--acl-default-policy", "deny", "--acl-initial-management-token", MANAGEMENT)


def _checked(response: httpx.Response) -> httpx.Response:
    if response.status_code != 200:
        raise RuntimeError(
            f"{response.request.method} {response.request.url.path}: {response.status_code} {response.text}"
        )
    return response


def repetitions(plan: Plan) -> int:
    """Runs per target: `ACL_REPETITIONS` in a full run, a third of that with --quick."""
    return max(1, ACL_REPETITIONS * plan.repetitions // 3)


def read_token(server: Server) -> str:
    """Create the read target and a `peering = "read"` token on an ACL-on cluster; the token's secret."""
    with httpx.Client(base_url=server.url, headers={"X-Consul-Token": MANAGEMENT}, timeout=30) as client:
        _checked(client.post("/v1/peering/token", json={"PeerName": READ_NAME, "Meta": {"env": "production"}}))
        _checked(client.put("/v1/acl/policy", json={"Name": "bench-peering-read", "Rules": 'peering = "read"'}))
        token = _checked(client.put("/v1/acl/token", json={"Policies": [{"Name": "bench-peering-read"}]}))
    secret = str(token.json()["SecretID"])
    with httpx.Client(base_url=server.url, timeout=30) as client:  # the token reads, and nothing more
        _checked(client.get(f"/v1/peering/{READ_NAME}", headers={"X-Consul-Token": secret}))
        if client.get("/v1/acl/tokens", headers={"X-Consul-Token": secret}).status_code != 403:
            raise RuntimeError("the bench's read token may do more than read peerings")
    return secret


def measure(bench: Bench) -> None:
    """Start the three clusters and the raw ASGI baseline, measure them interleaved, add the rows."""
    tmp = bench.tmp / "acl"
    off = bench.cluster("acl-off", tmp / "off", extra=("--log-level", "info"))
    _checked(httpx.post(f"{off.url}/v1/peering/token", json={"PeerName": READ_NAME, "Meta": {"env": "production"}}))
    on = bench.cluster("acl-on", tmp / "on", extra=("--log-level", "info", *ACLS_ON))
    logged = bench.cluster("acl-on-debug", tmp / "on-debug", extra=("--log-level", "debug", *ACLS_ON))
    secret, secret_logged = read_token(on), read_token(logged)

    base_dir = tmp / "baseline"
    base_dir.mkdir(parents=True)
    (base_dir / "read.json").write_bytes(_checked(httpx.get(f"{off.url}/v1/peering/{READ_NAME}")).content)
    asgi = bench.baseline("bare ASGI", base_dir)

    def read(server: Server, token: str | None = None, query: str = "") -> Target:
        headers = (("X-Consul-Token", token),) if token else ()
        return Target(f"{server.url}/v1/peering/{READ_NAME}{query}", headers=headers)

    targets = {
        "acl: read, ACLs off": (read(off), off),
        "acl: read, ACLs on": (read(on, secret), on),
        "acl: read, ACLs on, debug log": (read(logged, secret_logged), logged),
        # `?stale=<n>`: another request target each time, so no kept answer is ever given (`api/answers.py`)
        "acl: read, ACLs off, nothing kept": (read(off, query="?stale={n}"), off),
        "acl: read, ACLs on, nothing kept": (read(on, secret, query="?stale={n}"), on),
        "acl: bare ASGI": (read(asgi), asgi),
    }
    # the ratios judged here compare processes whose throughput this machine moves by up to a third from one
    # run to the next (the same server, seconds apart): more, shorter runs, interleaved, so that the medians
    # hold (3 x 5 s gave 0.76x and 0.88x for one build within minutes)
    m = bench.repeat(targets, repetitions=repetitions(bench.plan), seconds=ACL_SECONDS)
    cpu = bench.data.setdefault("cpu_us_per_request", {})
    for key, (target, server) in targets.items():  # CPU time, which other work on the machine barely moves
        before = server.cpu_seconds()
        result = bench.load.run(target, connections=CONNECTIONS, seconds=bench.plan.seconds, server=server)
        cpu[key] = (server.cpu_seconds() - before) / max(1, result.requests) * 1e6
        server.settle()
    log("  server CPU per request: " + ", ".join(f"{key.removeprefix('acl: ')} {us:.0f} us" for key, us in cpu.items()))
    acl_off, raw = ("ACLs off", m["acl: read, ACLs off"]), ("raw ASGI", m["acl: bare ASGI"])
    on_row = "read by name, ACLs on (a `peering:read` token in X-Consul-Token)"
    bench.row(SECTION, on_row, m["acl: read, ACLs on"], baseline=acl_off, minimum=0.8)
    bench.row(SECTION, "read by name, ACLs off", m["acl: read, ACLs off"], baseline=raw, minimum=0.5)
    bench.row(SECTION, "read by name, ACLs on", m["acl: read, ACLs on"], baseline=raw, minimum=0.5)
    debug_row = "read by name, ACLs on, `--log-level debug` (one request log line each)"
    bench.row(
        SECTION, debug_row, m["acl: read, ACLs on, debug log"], baseline=("ACLs on, info", m["acl: read, ACLs on"])
    )
    for acls in ("off", "on"):
        row = f"read by name, ACLs {acls}, another request target each time (no kept answer given)"
        bench.row(SECTION, row, m[f"acl: read, ACLs {acls}, nothing kept"], baseline=raw)
    bench.row(SECTION, "raw ASGI app, constant read bytes (uvicorn, httptools, uvloop)", m["acl: bare ASGI"])
    for server in (logged, on, off):
        bench.stop(server)
    asgi.stop(10)  # as run.py stops its baselines (a raw ASGI app's exit status on SIGTERM says nothing)
    bench.servers.remove(asgi)


def notes(bench: Bench) -> list[str]:
    """What the report says about these rows."""
    if not any(row.section == SECTION for row in bench.rows):
        return []  # not measured in this run
    cpu = bench.data.get("cpu_us_per_request", {})
    per_request = ", ".join(f"{key.removeprefix('acl: ')} {us:.0f} µs" for key, us in cpu.items())
    return [
        "ACL rows: three `peering serve` processes at the default log level (`info`; the debug row at `debug`), "
        'one peering each; ACLs on = default deny, read with a token whose only policy is `peering = "read"` '
        "(X-Consul-Token). The raw ASGI baseline answers the service's read bytes; all four interleaved, "
        f"{repetitions(bench.plan)} x {ACL_SECONDS} s each after a {bench.plan.warmup} s "
        "warm-up (this machine moves one server's throughput by up to a third between runs seconds apart)."
        + (f" Server CPU time per request (one more {bench.plan.seconds} s run each): {per_request}." if cpu else "")
    ]


def main() -> int:
    from bench import report
    from bench.harness import Bench, Plan

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--load-generator", choices=("wrk", "python"), default="wrk")
    args = parser.parse_args()
    plan = Plan.of(args.quick)
    tmp = Path(tempfile.mkdtemp(prefix="peering-bench-acl-"))
    generator = LoadGenerator(tmp, force_python=args.load_generator == "python")
    log(f"load generator: {generator.description}; work dir {tmp}")
    bench = Bench(plan, generator, tmp, sqlite=False, pg=False)
    began = time.perf_counter()
    try:
        measure(bench)
    finally:
        bench.stop_all()
    flags = " --quick" if args.quick else ""
    preamble = [
        f"Command: `.venv/bin/python bench/acl_rows.py{flags}`; {generator.description}, {plan.repetitions} x "
        f"{plan.seconds} s per target after a {plan.warmup} s warm-up, interleaved; {time.perf_counter() - began:.0f} s."
    ]
    print("\n" + report.markdown("peering benchmark: ACL rows", preamble, bench.rows, notes(bench)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
