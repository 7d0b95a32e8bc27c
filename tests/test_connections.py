"""Hostile connections against real `peering serve` processes (issue 11.2): idle or unauthenticated
connections never starve real work, each port has its own capacity, each source its own cap, and a
connection is refused (429, cheaply) only when nothing idle can make room for it."""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster, running_cluster

pytestmark = pytest.mark.anyio
log = logging.getLogger("tests.connections")

SOURCES = [f"127.0.0.{10 + i}" for i in range(16)]  # Linux answers on all of 127/8: many attackers, one host
LEGIT_READ_BOUND = 0.1  # seconds


def _open_files(needed: int) -> None:
    """Let this process hold `needed` sockets (the attacker's side of the connections)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed <= hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= needed, "raise the hard limit on open files"


def _rss_mb(cluster: Cluster) -> float:
    status = Path(f"/proc/{cluster.process.pid}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def _insecure() -> ssl.SSLContext:
    """An attacker's TLS client: it has no reason to check who answers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


class Attacker:
    """Idle connections, opened from `SOURCES` in turn and held until `close`."""

    def __init__(self) -> None:
        self.held: list[asyncio.StreamWriter] = []

    async def open(
        self,
        address: str,
        count: int,
        *,
        tls: ssl.SSLContext | None = None,
        sources: list[str] = SOURCES,
        parallel: int = 64,
    ) -> int:
        """Open `count` connections (TLS ones complete their handshake, then send nothing); how many opened."""
        host, port = address.rsplit(":", 1)
        gate = asyncio.Semaphore(parallel)
        opened = 0

        async def one(number: int) -> None:
            nonlocal opened
            async with gate:
                try:
                    _, writer = await asyncio.wait_for(
                        asyncio.open_connection(
                            host, int(port), ssl=tls, local_addr=(sources[number % len(sources)], 0)
                        ),
                        10,
                    )
                except (OSError, TimeoutError):
                    return  # refused or evicted while connecting: the server's choice
                self.held.append(writer)
                opened += 1

        await asyncio.gather(*(one(number) for number in range(count)))
        return opened

    def still_open(self) -> int:
        return sum(1 for writer in self.held if not writer.transport.is_closing() and not _at_eof(writer))

    async def holds_at_most(self, count: int) -> None:
        """Until the server's closes have reached this side and at most `count` connections are left (bounded)."""
        deadline = time.monotonic() + 10
        while (left := self.still_open()) > count:
            assert time.monotonic() < deadline, f"{left} connections still open, expected at most {count}"
            await asyncio.sleep(0.01)

    def close(self) -> None:
        for writer in self.held:
            writer.transport.abort()
        self.held.clear()


def _at_eof(writer: asyncio.StreamWriter) -> bool:
    reader: Any = writer._protocol._stream_reader  # type: ignore[attr-defined]
    return bool(reader is None or reader.at_eof())


async def _raw_get(address: str, path: str = "/v1/peerings", source: str = "127.0.0.1") -> tuple[bytes, float]:
    """One GET on a new connection: the whole answer and the seconds it took from the connect."""
    host, port = address.rsplit(":", 1)
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        answer = await asyncio.wait_for(reader.read(), 10)
    finally:
        writer.close()
    return answer, time.perf_counter() - started


@contextmanager
def _peered(tmp_path: Path) -> Iterator[tuple[Cluster, Cluster]]:
    """Two clusters, b dialing a, heartbeating every 0.2 s (FAILING after 2 s without one)."""
    timing = ("--heartbeat-interval", "0.2", "--heartbeat-timeout", "2")
    with (
        running_cluster(tmp_path / "a", *timing) as a,
        running_cluster(tmp_path / "b", "--datacenter", "dc2", *timing) as b,
    ):
        with httpx.Client(timeout=10) as http:
            token = http.post(f"{a.http_url}/v1/peering/token", json={"PeerName": "b"}).json()["PeeringToken"]
            body = {"PeerName": "a", "PeeringToken": token}
            assert http.post(f"{b.http_url}/v1/peering/establish", json=body).status_code == 200
            _wait_active(http, a.http_url + "/v1/peering/b")
        yield a, b


def _wait_active(http: httpx.Client, url: str) -> dict[str, Any]:
    deadline = time.monotonic() + 15
    index = "0"
    while True:
        response = http.get(url, params={"index": index, "wait": "2s"})
        peering: dict[str, Any] = response.json()
        if peering["State"] == "ACTIVE" and peering["StreamStatus"]["LastHeartbeat"]:
            return peering
        assert time.monotonic() < deadline, peering
        index = response.headers["X-Consul-Index"]


@pytest.mark.slow
async def test_idle_floods_on_both_ports_starve_nobody(tmp_path: Path) -> None:
    """2,000 idle connections on the client port and 2,000 TLS-completed plus 2,000 TCP-only ones on the
    peering port, from 16 source addresses: a read on the client port still answers within 100 ms, the
    peering stays ACTIVE with heartbeats getting through, a peer request on a new TLS connection is
    answered, and nobody legitimate sees a 503 or a 429."""
    _open_files(8000)
    plain, tls, tcp = Attacker(), Attacker(), Attacker()
    with _peered(tmp_path) as (a, _), httpx.Client(timeout=10) as http:
        rss_before = _rss_mb(a)
        try:
            opened = {
                "TLS": await tls.open(a.peering_addr, 2000, tls=_insecure()),
                "TCP-only": await tcp.open(a.peering_addr, 2000),
                "plain": await plain.open(a.ready["http_addr"], 2000),
            }
            assert opened["plain"] == 2000  # far below the client port's capacity: all of them held
            heartbeat = http.get(f"{a.http_url}/v1/peering/b").json()["StreamStatus"]["LastHeartbeat"]

            latencies = []
            for _ in range(15):
                answer, seconds = await _raw_get(a.ready["http_addr"])
                assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
                latencies.append(seconds)
            assert (await _peer_request(a, tmp_path / "a")).status_code < 500
            await _next_heartbeat(http, f"{a.http_url}/v1/peering/b", heartbeat)  # they still get through
            rss_peak = _rss_mb(a)
            await tls.holds_at_most(512)  # the peering port's capacity: the oldest idle ones were closed
            await tcp.holds_at_most(512 - tls.still_open())
            log.info(  # the figures for the closing note (pytest --log-cli-level=INFO)
                f"opened {opened}; held plain {plain.still_open()}, TLS {tls.still_open()}, TCP {tcp.still_open()}; "
                f"read latency median {statistics.median(latencies) * 1000:.1f} ms, "
                f"max {max(latencies) * 1000:.1f} ms; RSS {rss_before:.0f} -> {rss_peak:.0f} MB"
            )
            assert statistics.median(latencies) < LEGIT_READ_BOUND, latencies
        finally:
            for attacker in (plain, tls, tcp):
                attacker.close()
    assert not any('"level": "error"' in line for line in a.lines)


async def _next_heartbeat(http: httpx.Client, url: str, last: str) -> None:
    """Until the peering shows a heartbeat after `last`, ACTIVE all along (bounded by its 2 s timeout)."""
    deadline = time.monotonic() + 2
    while True:
        peering = http.get(url).json()
        assert peering["State"] == "ACTIVE", peering
        if peering["StreamStatus"]["LastHeartbeat"] != last:
            return
        assert time.monotonic() < deadline, f"no heartbeat since {last}"
        await asyncio.sleep(0.05)


async def _peer_request(cluster: Cluster, data: Path) -> httpx.Response:
    """A peer protocol request on a new TLS connection (its answer: 200 TERMINATED or 403, not a 5xx)."""
    context = ssl.create_default_context(cadata=(data / "ca.pem").read_text())
    context.check_hostname = False  # the server's name is the peering tests' business; here: an answer
    async with httpx.AsyncClient(base_url=f"https://{cluster.peering_addr}", verify=context, timeout=5) as peer:
        return await peer.post("/peering/v1/heartbeat", json={"PeerID": "nobody", "StreamSecret": "x"})


def _small_limits() -> dict[str, str]:
    return {
        "PEERING_HTTP_MAX_CONNS": "48",
        "PEERING_HTTP_MAX_CONNS_PER_CLIENT": "12",
        "PEERING_PEERING_MAX_CONNS": "24",
        "PEERING_PEERING_MAX_CONNS_PER_CLIENT": "6",
    }


async def _blocking_queries(address: str, index: str, source: str, count: int) -> list[asyncio.StreamWriter]:
    """`count` connections from `source`, each with a blocking query in progress (not idle)."""
    host, port = address.rsplit(":", 1)
    writers = []
    for _ in range(count):
        _, writer = await asyncio.open_connection(host, int(port), local_addr=(source, 0))
        writer.write(f"GET /v1/peerings?index={index}&wait=1m HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        await writer.drain()
        writers.append(writer)
    return writers


async def _pending(http: httpx.AsyncClient, count: int) -> None:
    """Until the server counts `count` blocking queries waiting (bounded)."""
    deadline = time.monotonic() + 10
    while True:
        metrics = (await http.get("/v1/agent/metrics", params={"format": "prometheus"})).text
        value = next(line.split()[1] for line in metrics.splitlines() if line.startswith("peering_blocking_queries "))
        if float(value) >= count:
            return
        assert time.monotonic() < deadline, f"{value} of {count} blocking queries pending"
        await asyncio.sleep(0.02)


@pytest.mark.slow
async def test_idle_connections_make_room_and_busy_ones_get_a_429(tmp_path: Path) -> None:
    """With small limits: a flood of idle connections from the caller's own address is closed oldest first
    to let its request in; a source whose connections all have requests in progress gets a 429 with
    Consul's message, and so does anyone when the whole port is busy; others are served meanwhile."""
    attacker = Attacker()
    busy: list[asyncio.StreamWriter] = []
    with running_cluster(tmp_path / "a", env=_small_limits()) as a:
        http_addr = a.ready["http_addr"]
        try:
            # idle floods from the caller's own address, on both ports: each connection is admitted, evicting
            # the oldest idle one, and so is the caller's request after them
            assert await attacker.open(http_addr, 100, sources=["127.0.0.1"]) == 100
            await attacker.open(a.peering_addr, 30, tls=_insecure(), sources=["127.0.0.1"])
            await attacker.open(a.peering_addr, 30, sources=["127.0.0.1"])
            answer, _ = await _raw_get(http_addr)
            assert answer.startswith(b"HTTP/1.1 200 "), answer
            assert (await _peer_request(a, tmp_path / "a")).status_code < 500
            await attacker.holds_at_most(12 + 6)  # the per-source caps
            attacker.close()

            async with httpx.AsyncClient(base_url=f"http://{http_addr}", timeout=10) as api:
                index = (await api.get("/v1/peerings")).headers["X-Consul-Index"]
                # one source at its cap with requests in progress: its next connection is refused
                busy += await _blocking_queries(http_addr, index, "127.0.0.2", 12)
                await _pending(api, 12)
                answer, _ = await _raw_get(http_addr, source="127.0.0.2")
                assert answer.startswith(b"HTTP/1.1 429 Too Many Requests\r\n"), answer
                assert answer.endswith(
                    b"\r\n\r\nYour IP is issuing too many concurrent connections, please rate limit your calls"
                )
                assert (await _raw_get(http_addr, source="127.0.0.3"))[0].startswith(b"HTTP/1.1 200 ")
                for source in ("127.0.0.3", "127.0.0.4"):
                    busy += await _blocking_queries(http_addr, index, source, 12)
                await _pending(api, 36)
            # the whole port busy (4 x 12 = 48): a new source is refused too, until a query ends
            busy += await _blocking_queries(http_addr, index, "127.0.0.5", 12)
            # the peering port shares the event loop: once it has answered, the heads sent before are read
            assert (await _peer_request(a, tmp_path / "a")).status_code < 500
            answer, _ = await _raw_get(http_addr, source="127.0.0.6")
            assert answer.startswith(b"HTTP/1.1 429 "), answer
            assert answer.endswith(b"Too many concurrent connections, please retry later")
            ended = busy.pop()
            ended.transport.abort()
            deadline = time.monotonic() + 10
            while not (answer := (await _raw_get(http_addr, source="127.0.0.6"))[0]).startswith(b"HTTP/1.1 200 "):
                assert answer.startswith(b"HTTP/1.1 429 "), answer
                assert time.monotonic() < deadline, "the port stayed full after a connection closed"
        finally:
            attacker.close()
            for writer in busy:
                writer.transport.abort()
    assert not any(" 503 " in line or '"status": 503' in line for line in a.lines)
