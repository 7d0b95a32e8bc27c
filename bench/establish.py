"""Establish latency between two local clusters (real processes, real TLS): median and p99.

Usage: .venv/bin/python bench/establish.py [rounds]   (also part of bench/run.py)

Each round generates a fresh token on A (not timed) and establishes it on B (timed), re-using the
dialer name so that the one-peering-per-cluster rule does not get in the way. Both clusters listen
on ports the OS picks, found from their own sockets (see bench/procs.py).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

if __package__ in (None, ""):  # run as a script: make `bench` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.procs import Server, start_cluster

WARMUP_ROUNDS = 5


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of `values` (q in 0..1)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def establish_times(
    acceptor: Server, dialer: Server, rounds: int, *, partition: str = "default", warmup: int = WARMUP_ROUNDS
) -> list[float]:
    """Milliseconds each of `rounds` establishes took (after `warmup` untimed ones)."""
    times: list[float] = []
    with httpx.Client(timeout=30) as http:
        for _ in range(rounds + warmup):
            acceptor.check_alive()
            dialer.check_alive()
            token = http.post(
                f"{acceptor.url}/v1/peering/token", json={"PeerName": "bench-dialer", "Partition": partition}
            )
            if token.status_code != 200:
                raise RuntimeError(f"token generation failed: {token.status_code} {token.text}")
            began = time.perf_counter()
            response = http.post(
                f"{dialer.url}/v1/peering/establish",
                json={
                    "PeerName": "bench-acceptor",
                    "PeeringToken": token.json()["PeeringToken"],
                    "Partition": partition,
                },
            )
            times.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"establish failed: {response.status_code} {response.text}")
    return times[warmup:]


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory(prefix="bench-establish-") as tmp:
        a = start_cluster("cluster-a", Path(tmp, "a"), "dc1", Path(tmp))
        try:
            b = start_cluster("cluster-b", Path(tmp, "b"), "dc2", Path(tmp))
            try:
                times = establish_times(a, b, rounds)
            finally:
                b.stop()
        finally:
            a.stop()
    print(
        f"establish between two local clusters, {rounds} rounds: p50 {statistics.median(times):.2f} ms, "
        f"p99 {percentile(times, 0.99):.2f} ms, max {max(times):.2f} ms"
    )


if __name__ == "__main__":
    main()
