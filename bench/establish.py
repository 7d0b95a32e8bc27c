"""Establish latency between two local clusters (real processes, real TLS): median and p99.

Usage: .venv/bin/python bench/establish.py [rounds]

Each round generates a fresh token on A (not timed) and establishes it on B (timed), re-using the
dialer name so that the one-peering-per-cluster rule does not get in the way.
"""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def start(data: Path, http: int, peer: int, datacenter: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "peering",
        "serve",
        "--data-dir",
        str(data),
        "--datacenter",
        datacenter,
        "--http-addr",
        f"127.0.0.1:{http}",
        "--peering-addr",
        f"127.0.0.1:{peer}",
        "--log-level",
        "warning",
    ]
    return subprocess.Popen(command, cwd=ROOT)


def wait_ready(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/status/leader", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"{url} did not come up")


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    with tempfile.TemporaryDirectory() as tmp:
        a = start(Path(tmp, "a"), 18600, 18603, "dc1")
        b = start(Path(tmp, "b"), 28600, 28603, "dc2")
        try:
            wait_ready("http://127.0.0.1:18600")
            wait_ready("http://127.0.0.1:28600")
            times: list[float] = []
            with httpx.Client(timeout=30) as http:
                for _ in range(rounds + 5):
                    token = http.post("http://127.0.0.1:18600/v1/peering/token", json={"PeerName": "b"}).json()
                    began = time.perf_counter()
                    response = http.post(
                        "http://127.0.0.1:28600/v1/peering/establish",
                        json={"PeerName": "a", "PeeringToken": token["PeeringToken"]},
                    )
                    times.append((time.perf_counter() - began) * 1000)
                    if response.status_code != 200:
                        raise SystemExit(f"establish failed: {response.status_code} {response.text}")
            times = times[5:]  # warm-up rounds
            times.sort()
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(
                f"establish between two local clusters, {rounds} rounds: "
                f"p50 {statistics.median(times):.2f} ms, p99 {p99:.2f} ms, max {times[-1]:.2f} ms"
            )
        finally:
            for process in (a, b):
                process.send_signal(signal.SIGTERM)
            for process in (a, b):
                process.wait(15)


if __name__ == "__main__":
    os.environ.pop("PEERING_DATA_DIR", None)
    main()
