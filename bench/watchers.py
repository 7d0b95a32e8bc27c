"""Many watchers (issue 16 item 4): N blocking queries held by one `peering serve`, woken by one write.

Usage: .venv/bin/python -m bench.watchers [--watchers 10000] [--route peerings|health|both]

The watchers are raw asyncio connections in this one process (one pipelined-free HTTP/1.1 GET each,
spread over the source addresses 127.0.0.2.. so that no source reaches the server's per-source cap).
Measured per route: the server's RSS (VmRSS) before and with the N queries held, the time from one
write to each watcher's answer (p50/p99/last), the latency of a small stream of other reads (a separate
process, so this process's own work on the wake does not count against the server) while they are held,
and how fast the server's `peering_blocking_queries` gauge and RSS drop when the watchers' sockets close.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson
import uvloop

PER_SOURCE = 2500  # watchers per source address (the server's default per-source cap is 4,096)
CONNECT_AT_ONCE = 64  # connects in flight (the server listens with a small backlog)
PROBE_EVERY = 0.02  # seconds between two reads of the probe stream
GAUGE = "peering_blocking_queries"


def raise_fd_limit(needed: int) -> int:
    """Raise this process's soft limit on open files towards the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard == resource.RLIM_INFINITY else min(hard, max(soft, needed))
    if wanted > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def rss_mb(pid: int) -> float:
    """Resident memory of a process (VmRSS) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (`share` in 0..1) of `values`; 0 for none."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered) + 0.5) - 1))]


def _get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nhost: peering\r\n\r\n".encode()


def _parse(buffer: bytearray) -> tuple[int, dict[bytes, bytes], bytes] | None:
    """One whole response off the front of `buffer` (status, lower-cased headers, body), or None yet."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = bytes(buffer[:end]).split(b"\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(b":") for line in lines[1:])}
    length = int(headers.get(b"content-length", b"0"))
    if len(buffer) < end + 4 + length:
        return None
    body = bytes(buffer[end + 4 : end + 4 + length])
    del buffer[: end + 4 + length]
    return int(lines[0].split()[1]), headers, body


class Watcher(asyncio.Protocol):
    """One connection holding one blocking query at a time."""

    def __init__(self, fleet: Fleet) -> None:
        self.fleet = fleet
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.answered_at = 0.0
        self.status = 0
        self.index = 0
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream connection's is an asyncio.Transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        answer = _parse(self.buffer)
        if answer is not None:
            self.answered_at = time.monotonic()
            self.status = answer[0]
            self.index = int(answer[1].get(b"x-consul-index", b"0"))
            self.fleet.answered()
            if self.fleet.rearm is not None and self.transport is not None and self.status == 200:
                self.transport.write(self.fleet.rearm(self.index))  # as a client does: ask again at once

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.fleet.closing:
            self.fleet.answered()  # a watcher the server dropped counts (and shows as status 0)

    def ask(self, path: bytes) -> None:
        self.answered_at, self.status = 0.0, 0
        if self.transport is not None:
            self.transport.write(path)


class Fleet:
    """N watchers on one server, opened from the source addresses 127.0.0.2 onwards."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.watchers: list[Watcher] = []
        self.closing = False
        self.rearm: Callable[[int], bytes] | None = None  # what to ask next after an answer with this index
        self._pending = 0
        self._done: asyncio.Event = asyncio.Event()

    async def open(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(CONNECT_AT_ONCE)

        async def one(number: int) -> None:
            async with limit:
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                sock.setblocking(False)
                try:
                    sock.bind((f"127.0.0.{2 + number // PER_SOURCE}", 0))
                    await loop.sock_connect(sock, (self.host, self.port))
                except BaseException:
                    sock.close()
                    raise
                _, watcher = await loop.create_connection(lambda: Watcher(self), sock=sock)
                self.watchers.append(watcher)

        await asyncio.gather(*(one(number) for number in range(len(self.watchers), len(self.watchers) + count)))
        gc.collect()
        gc.freeze()  # this process's own collections would delay its timestamps, not the server's answers

    def ask_all(self, path: str, rearm: str | None = None) -> None:
        """Every watcher sends `GET path` (answers are awaited with `answers()`); with `rearm` (a path with
        `{index}`), each asks it again with the index of its answer as soon as the answer arrives."""
        request = _get(path)
        asked: dict[int, bytes] = {}
        self.rearm = None if rearm is None else (lambda index: asked.get(index) or asked.setdefault(
            index, _get(rearm.format(index=index))))  # fmt: skip
        self._pending = len(self.watchers)
        self._done.clear()
        for watcher in self.watchers:
            watcher.ask(request)

    def answered(self) -> None:
        self._pending -= 1
        if self._pending <= 0:
            self._done.set()

    async def answers(self, within: float) -> bool:
        """Whether every watcher got its answer within `within` s."""
        try:
            async with asyncio.timeout(within):
                await self._done.wait()
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.closing = True
        for watcher in self.watchers:
            if watcher.transport is not None:
                watcher.transport.close()


async def fetch(
    host: str, port: int, method: str, path: str, body: Any = None
) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request on a new connection: status, lower-cased headers, body."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        payload = b"" if body is None else orjson.dumps(body)
        head = f"{method} {path} HTTP/1.1\r\nhost: peering\r\ncontent-length: {len(payload)}\r\n\r\n"
        writer.write(head.encode() + payload)
        buffer = bytearray()
        while (answer := _parse(buffer)) is None:
            chunk = await reader.read(65536)
            if not chunk:
                raise ConnectionError(f"{method} {path}: connection closed before the answer")
            buffer += chunk
        return answer
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def gauge(host: str, port: int) -> float:
    """The server's count of blocking queries waiting now."""
    _, _, body = await fetch(host, port, "GET", "/v1/agent/metrics?format=prometheus")
    for line in body.decode().splitlines():
        if line.startswith(GAUGE + " "):
            return float(line.split()[1])
    raise RuntimeError(f"{GAUGE} missing from /v1/agent/metrics")


async def gauge_reaches(host: str, port: int, wanted: float, within: float, every: float = 0.02) -> float | None:
    """Seconds until the gauge equals `wanted` (polled every `every` s), None if not within `within` s."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if await gauge(host, port) == wanted:
            return time.monotonic() - started
        await asyncio.sleep(every)
    return None


class Probe:
    """A separate process reading `path` every `PROBE_EVERY` s on one keep-alive connection; the samples
    are (start, seconds) on the system-wide monotonic clock."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.samples: list[tuple[float, float]] = []
        self.failures: list[str] = []
        argv = [sys.executable, "-m", "bench.watchers", "--probe", f"{host}:{port}", path]
        root = str(Path(__file__).resolve().parent.parent)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
        self._process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self._process.stdout or ():
            start, seconds, status = line.split()
            if status != "200":
                self.failures.append(status)
            self.samples.append((float(start), float(seconds)))

    def within(self, start: float, end: float) -> list[float]:
        return [seconds for begun, seconds in self.samples if start <= begun <= end]

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(10)
        self._reader.join(10)
        if self._process.stdout is not None:
            self._process.stdout.close()


def probe_loop(address: str, path: str) -> None:
    """The probe process: read `path` for ever, one line per answer `start seconds status`."""
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)))
    request, buffer = _get(path), bytearray()
    while True:
        started = time.monotonic()
        sock.sendall(request)
        while (answer := _parse(buffer)) is None:
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the probe's connection")
            buffer += chunk
        print(f"{started:.6f} {time.monotonic() - started:.6f} {answer[0]}", flush=True)
        time.sleep(max(0.0, PROBE_EVERY - (time.monotonic() - started)))


@dataclass
class Latency:
    """The probe's reads that started within one phase (ms)."""

    samples: int = 0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = [value * 1000 for value in seconds]
        return cls(len(ms), percentile(ms, 0.5), percentile(ms, 0.99), max(ms, default=0.0))


@dataclass
class Figures:
    """What one run of N watchers on one route measured (times in ms unless named, memory in MiB).

    `other` has the probe's reads by phase: `held` (waiting, before the write), `wake` (the write to the
    last answer), `rearm` (the watchers ask again, until all are held), `all` (from held to closed).
    """

    route: str
    watchers: int
    open_seconds: float = 0.0
    rss_before_mb: float = 0.0
    rss_held_mb: float = 0.0
    rss_growth_mb: float = 0.0
    wake_p50_ms: float = 0.0
    wake_p99_ms: float = 0.0
    wake_last_ms: float = 0.0
    woken_ok: int = 0
    rearm_seconds: float = 0.0
    wake_server_cpu_s: float = 0.0  # the server's CPU time from the write to the last answer
    other: dict[str, Latency] = field(default_factory=dict)
    other_failures: int = 0
    freed_gauge_ms: float | None = None
    rss_after_close_mb: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Route:
    """What the watchers ask and the write that changes its answer."""

    name: str
    path: str  # the blocking query's path without `index`/`wait`
    write: Callable[[str, int, int], Any]  # (host, port, n) -> awaitable of the write's answer


async def _token(host: str, port: int, n: int) -> tuple[int, dict[bytes, bytes], bytes]:
    return await fetch(host, port, "POST", "/v1/peering/token", {"PeerName": f"watched-{n}"})


async def _register(host: str, port: int, n: int) -> tuple[int, dict[bytes, bytes], bytes]:
    service = {"Service": "web", "ID": "web-1", "Port": 8000 + n}
    return await fetch(
        host, port, "PUT", "/v1/catalog/register", {"Node": "node-1", "Address": "10.0.0.1", "Service": service}
    )


ROUTES = {
    "peerings": Route("peerings", "/v1/peerings", _token),
    "health": Route("health", "/v1/health/service/web", _register),
}


async def measure(
    host: str, port: int, pid: int, route: Route, count: int, *, hold: float = 5.0, settle: float = 1.0
) -> Figures:
    """Hold `count` blocking queries on `route` for `hold` s, wake them with one write (each watcher asks
    again at once, as clients do), then close them; the probe reads all along."""
    raise_fd_limit(count + 256)
    figures = Figures(route.name, count)
    status, _, _ = await _token(host, port, 0)  # the peering the probe reads
    if status != 200:
        raise RuntimeError(f"the probe's peering: {status}")
    status, _, _ = await route.write(host, port, 0)
    if status != 200:
        raise RuntimeError(f"the first write on {route.name} answered {status}")
    _, headers, _ = await fetch(host, port, "GET", route.path)
    index = int(headers[b"x-consul-index"])
    blocking = f"{route.path}?index={{index}}&wait=5m"
    # warm up: a few blocking queries held and released, so that first-use costs are not counted as growth
    warm = Fleet(host, port)
    await warm.open(50)
    warm.ask_all(f"{route.path}?index={index}&wait=1s")
    await warm.answers(30)
    warm.close()
    await gauge_reaches(host, port, 0, 10)
    await asyncio.sleep(settle)  # the allocator's trim timer runs every 0.5 s
    figures.rss_before_mb = rss_mb(pid)
    probe = Probe(host, port, "/v1/peering/watched-0")
    fleet = Fleet(host, port)
    try:
        started = time.monotonic()
        await fleet.open(count)
        fleet.ask_all(blocking.format(index=index), rearm=blocking)
        if await gauge_reaches(host, port, count, 60) is None:
            raise RuntimeError(f"the server does not hold {count} blocking queries: {await gauge(host, port)}")
        figures.open_seconds = time.monotonic() - started
        held_from = time.monotonic()
        await asyncio.sleep(hold)  # the probe reads meanwhile
        figures.rss_held_mb = rss_mb(pid)
        figures.rss_growth_mb = figures.rss_held_mb - figures.rss_before_mb
        written = time.monotonic()
        cpu_before = cpu_seconds(pid)
        status, _, _ = await route.write(host, port, 1)
        if status != 200:
            raise RuntimeError(f"the waking write on {route.name} answered {status}")
        if not await fleet.answers(30):
            figures.notes.append("not every watcher answered within 30 s")
        wakes = [(w.answered_at - written) * 1000 for w in fleet.watchers if w.status == 200 and w.index > index]
        figures.woken_ok = len(wakes)
        figures.wake_p50_ms, figures.wake_p99_ms = percentile(wakes, 0.5), percentile(wakes, 0.99)
        figures.wake_last_ms = max(wakes, default=0.0)
        figures.wake_server_cpu_s = cpu_seconds(pid) - cpu_before
        woken_until = written + figures.wake_last_ms / 1000
        if await gauge_reaches(host, port, count, 60) is None:
            figures.notes.append("the re-armed queries were not all held again")
        rearmed = time.monotonic()
        figures.rearm_seconds = rearmed - written
        await asyncio.sleep(settle)
        closed = time.monotonic()
        fleet.close()
        freed = await gauge_reaches(host, port, 0, 30, every=0.005)
        figures.freed_gauge_ms = None if freed is None else (time.monotonic() - closed) * 1000
        await asyncio.sleep(settle)
        figures.rss_after_close_mb = rss_mb(pid)
    finally:
        fleet.close()
        probe.stop()
    for phase, start, end in (
        ("held", held_from, written),
        ("wake", written, woken_until),
        ("rearm", woken_until, rearmed),
        ("all", held_from, closed),
    ):
        figures.other[phase] = Latency.of(probe.within(start, end))
    figures.other_failures = len(probe.failures)
    return figures


def cpu_seconds(pid: int) -> float:
    """The CPU time (user and system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _report(figures: Figures) -> str:
    other = ", ".join(
        f"{phase} p99 {latency.p99_ms:.1f} max {latency.max_ms:.1f} ({latency.samples})"
        for phase, latency in figures.other.items()
    )
    return (
        f"{figures.route}: N={figures.watchers} opened in {figures.open_seconds:.1f} s; "
        f"RSS {figures.rss_before_mb:.1f} -> {figures.rss_held_mb:.1f} MiB (+{figures.rss_growth_mb:.1f}), "
        f"{figures.rss_after_close_mb:.1f} after close; wake p50 {figures.wake_p50_ms:.0f} ms, "
        f"p99 {figures.wake_p99_ms:.0f} ms, last {figures.wake_last_ms:.0f} ms ({figures.woken_ok} woken, "
        f"server CPU {figures.wake_server_cpu_s:.2f} s); "
        f"all held again {figures.rearm_seconds:.2f} s after the write; other reads (ms) {other}, {figures.other_failures} failed; "
        f"gauge at 0 {figures.freed_gauge_ms:.0f} ms after close" + "".join(f"; {n}" for n in figures.notes)
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--watchers", type=int, default=10_000)
    parser.add_argument("--route", choices=("peerings", "health", "both"), default="both")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--probe", nargs=2, metavar=("ADDR", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.probe:
        with contextlib.suppress(KeyboardInterrupt, BrokenPipeError):
            probe_loop(*args.probe)
        return 0
    from bench.procs import start_cluster  # only the standalone run starts its own server

    raise_fd_limit(args.watchers + 256)
    routes = list(ROUTES.values()) if args.route == "both" else [ROUTES[args.route]]
    results = []
    with tempfile.TemporaryDirectory(prefix="peering-watchers-") as scratch:
        for number, route in enumerate(routes):
            server = start_cluster(f"watchers-{number}", Path(scratch) / str(number), "dc1", Path(scratch))
            try:
                figures = uvloop.run(measure("127.0.0.1", server.ports[0], server.pid, route, args.watchers))
            finally:
                server.stop()
            print(_report(figures), flush=True)
            results.append(asdict(figures))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
