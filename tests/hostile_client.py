"""The attacker of issue 11, as a process of its own: `python -m tests.hostile_client '<json config>'`.

For `duration` seconds, at the same time and from the attacker sources of `tests.attack`:
- `hold`: keeps `count` idle connections open to an address (`tcp`: connected, nothing sent; `tls`: the
  handshake completed, nothing sent); a connection the server closes is opened again (paced: at most
  `ramp_rate` connects per second until `count` were made, then `reconnect_rate`);
- `bodies`: `workers` loops sending anonymous oversized, deeply nested and huge-number requests to both
  ports (see `cases`);
- `spray`: `count` anonymous establishes with unique names of `name_bytes` bytes (each refused);
- `peer_spray`: `count` exchanges and heartbeats on the peer port with unique unknown peering IDs (each
  refused).

It runs at a lower CPU priority (`nice` 10) than the server it attacks. It prints one JSON line per
event: `{"event": "started"}` when the attack begins, `{"event": "holding", ...}` once every holder made
its first `count` connects (or after `ramp_timeout` s), and `{"event": "done", "stats": ...}` at the end:
per holder the peak of open connections and what the server did with them, per request case the
statuses it got, and the attacker's own CPU time.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.attack import ATTACKERS, MIB, insecure_tls

ANSWER_TIMEOUT = 20.0  # s a request waits for its answer (status 0 when none came)
GRACE = 3.0  # s after the deadline that requests still in flight get; then the attack is over


@dataclass
class Holder:
    """Keeps idle connections open to one address."""

    address: str
    mode: str
    count: int
    ramp_rate: float = 1000.0
    reconnect_rate: float = 200.0
    until: float = 0.0  # monotonic time at which the attack ends
    sources: tuple[str, ...] = ATTACKERS
    open: int = 0
    peak: int = 0
    connects: int = 0
    failures: int = 0
    closed_by_server: int = 0
    first_bytes: Counter[str] = field(default_factory=Counter)
    _next: float = 0.0

    async def _pace(self) -> None:
        now = time.monotonic()
        rate = self.ramp_rate if self.connects + self.failures < self.count else self.reconnect_rate
        self._next = max(self._next, now)
        wait = self._next - now
        self._next += 1 / rate
        await asyncio.sleep(wait)

    async def slot(self, number: int) -> None:
        host, port = self.address.rsplit(":", 1)
        source = self.sources[number % len(self.sources)]
        tls: ssl.SSLContext | None = insecure_tls() if self.mode == "tls" else None
        while time.monotonic() < self.until:  # besides the cancel at the end: 3.11 may swallow a cancel
            await self._pace()
            try:
                async with asyncio.timeout(max(0.1, min(15.0, self.until - time.monotonic()))):
                    reader, writer = await asyncio.open_connection(host, int(port), ssl=tls, local_addr=(source, 0))
            except (OSError, TimeoutError, ssl.SSLError):
                self.failures += 1
                await asyncio.sleep(0.5)
                continue
            self.connects += 1
            self.open += 1
            self.peak = max(self.peak, self.open)
            try:
                async with asyncio.timeout(max(0.1, self.until - time.monotonic())):
                    data = await reader.read(64)  # idle: only the server's answer (or its close) ends this
                self.first_bytes[data[:12].decode("latin-1") or "closed"] += 1
                self.closed_by_server += 1
            except (OSError, ssl.SSLError):
                self.closed_by_server += 1
            except TimeoutError:
                break  # still open when the attack ended
            finally:
                self.open -= 1
                writer.transport.abort()

    def stats(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "mode": self.mode,
            "target": self.count,
            "peak_open": self.peak,
            "open_at_end": self.open,
            "connects": self.connects,
            "connect_failures": self.failures,
            "closed_by_server": self.closed_by_server,
            "server_first_bytes": dict(self.first_bytes.most_common(6)),
        }


async def http(address: str, payload: bytes, *, tls: bool, source: str, within: float = ANSWER_TIMEOUT) -> int:
    """Send a request as it is; the status of the answer (0 when there was none within `within` s)."""
    host, port = address.rsplit(":", 1)
    try:
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                host, int(port), ssl=insecure_tls() if tls else None, local_addr=(source, 0)
            )
            try:
                for start in range(0, len(payload), 256 * 1024):
                    if writer.is_closing():
                        break  # the server refused the rest of the body: its answer may still be there
                    writer.write(payload[start : start + 256 * 1024])
                    await writer.drain()
            except (OSError, ssl.SSLError):
                pass  # the same, noticed while writing
            try:
                line = await reader.readline()
            finally:
                writer.transport.abort()
    except (OSError, TimeoutError, ssl.SSLError):
        return 0
    parts = line.split(b" ")
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0


def _head(method: str, target: str, length: int, address: str, extra: str = "") -> bytes:
    return (
        f"{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
    ).encode()


def _json(method: str, target: str, body: Any, address: str) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return _head(method, target, len(data), address) + data


def hcl_rules(size: int) -> str:
    """A long, valid HCL policy: one `service_prefix` block per service until `size` bytes."""
    blocks = [f'service_prefix "svc-{n:07d}" {{\n  policy = "read"\n}}\n' for n in range(size // 44 + 1)]
    return "".join(blocks)[:size].rsplit("service_prefix", 1)[0]


def cases(client: str, peer: str, ca_pem: str) -> list[tuple[str, str, bool, bytes]]:
    """(name, address, tls, request bytes) of every hostile body or query the `bodies` workers send."""
    deep_json = '{"peering":' * 100_000 + '"read"' + "}" * 100_000
    deep_hcl = 'key_prefix "" {\n' * 40_000 + "}\n" * 40_000
    digits = "9" * 5000
    dialer = {"ClusterID": str(uuid.uuid4()), "CA": ca_pem, "Datacenter": "dc9", "Partition": "default",
              "ServerName": "server.dc9.consul", "Addresses": [f"127.0.0.1:{digits}"]}  # fmt: skip
    exchange = {"PeerID": str(uuid.uuid4()), "EstablishmentSecret": str(uuid.uuid4()), "Dialer": dialer}
    oversize = 5 * MIB
    chunk = b"a" * (64 * 1024)
    chunked = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(32)) + b"0\r\n\r\n"
    return [
        ("policy-hcl-340k", client, False, _json("PUT", "/v1/acl/policy", {"Name": "e", "Rules": hcl_rules(340_000)}, client)),
        ("policy-hcl-900k", client, False, _json("PUT", "/v1/acl/policy", {"Name": "e", "Rules": hcl_rules(900_000)}, client)),
        ("policy-deep-json", client, False, _json("PUT", "/v1/acl/policy", {"Name": "e", "Rules": deep_json}, client)),
        ("policy-deep-hcl", client, False, _json("PUT", "/v1/acl/policy", {"Name": "e", "Rules": deep_hcl}, client)),
        ("token-deep-body", client, False, _json("POST", "/v1/peering/token", b'{"PeerName":' + b"[" * 400_000 + b"]" * 400_000 + b"}", client)),
        ("token-5000-digit-port", client, False, _json("POST", "/v1/peering/token", {"PeerName": "x", "ServerExternalAddresses": [f"127.0.0.1:{digits}"]}, client)),
        ("establish-5mib", client, False, _head("POST", "/v1/peering/establish", oversize, client) + b"a" * oversize),
        ("establish-chunked-2mib", client, False, _head("POST", "/v1/peering/establish", 0, client).replace(b"Content-Length: 0", b"Transfer-Encoding: chunked") + chunked),
        ("index-5000-digits", client, False, f"GET /v1/peerings?index={digits}&wait=1ms HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode()),
        ("exchange-deep", peer, True, _json("POST", "/peering/v1/exchange", b'{"PeerID":' + b"[" * 400_000 + b"]" * 400_000 + b"}", peer)),
        ("exchange-2mib", peer, True, _head("POST", "/peering/v1/exchange", 2 * MIB, peer) + b" " * (2 * MIB)),
        ("exchange-5000-digit-port", peer, True, _json("POST", "/peering/v1/exchange", exchange, peer)),
    ]  # fmt: skip


@dataclass
class Requests:
    """Statuses per request case."""

    statuses: dict[str, Counter[int]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    async def send(self, name: str, address: str, payload: bytes, tls: bool, source: str, within: float) -> None:
        started = time.monotonic()
        status = await http(address, payload, tls=tls, source=source, within=within)
        self.statuses.setdefault(name, Counter())[status] += 1
        self.seconds[name] = max(self.seconds.get(name, 0.0), time.monotonic() - started)

    def stats(self) -> dict[str, Any]:
        return {
            name: {"statuses": dict(counts), "slowest_s": round(self.seconds[name], 2)}
            for name, counts in self.statuses.items()
        }


Make = Callable[[int], tuple[str, str, bool, bytes]]


async def _loop(deadline: float, count: int, make: Make, sent: Requests, worker: int, workers: int) -> None:
    number = worker
    while number < count and time.monotonic() < deadline:
        name, address, tls, payload = make(number)
        within = min(ANSWER_TIMEOUT, deadline + GRACE - time.monotonic())
        await sent.send(name, address, payload, tls, ATTACKERS[number % len(ATTACKERS)], within)
        number += workers


def _say(event: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(event) + "\n")
    sys.stdout.flush()


def _establish_spray(spray: dict[str, Any]) -> Make:
    def establish(n: int) -> tuple[str, str, bool, bytes]:
        body = {"PeerName": f"{n:08d}-{uuid.uuid4()}" + "a" * spray["name_bytes"], "PeeringToken": "x"}
        return "establish-unique-long-name", spray["client"], False, _json("POST", "/v1/peering/establish", body, "x")

    return establish


def _peer_spray(spray: dict[str, Any]) -> Make:
    dialer = {"ClusterID": str(uuid.uuid4()), "CA": spray["ca_pem"], "Datacenter": "dc9", "Partition": "default",
              "ServerName": "server.dc9.consul", "Addresses": ["127.0.0.1:1"]}  # fmt: skip

    def rejected(n: int) -> tuple[str, str, bool, bytes]:
        peer_id, secret = str(uuid.uuid4()), str(uuid.uuid4())
        if n % 2:
            stream: dict[str, Any] = {"PeerID": peer_id, "StreamSecret": secret}
            return "heartbeat-unknown-peer", spray["peer"], True, _json("POST", "/peering/v1/heartbeat", stream, "x")
        body: dict[str, Any] = {"PeerID": peer_id, "EstablishmentSecret": secret, "Dialer": dialer}
        return "exchange-unknown-peer", spray["peer"], True, _json("POST", "/peering/v1/exchange", body, "x")

    return rejected


async def attack(config: dict[str, Any]) -> dict[str, Any]:
    """Run the attack the config describes until its `duration` is over; what happened."""
    deadline = time.monotonic() + float(config["duration"])
    holders = [
        Holder(h["address"], h["mode"], int(h["count"]), h["ramp_rate"], h["reconnect_rate"], until=deadline)
        for h in config.get("hold", [])
    ]
    slots = [asyncio.create_task(h.slot(n)) for h in holders for n in range(h.count)]
    campaigns: list[tuple[int, int, Make]] = []  # (requests in all, workers, request maker)
    if bodies := config.get("bodies"):
        table = cases(bodies["client"], bodies["peer"], bodies["ca_pem"])
        campaigns.append((10**9, bodies["workers"], lambda n: table[n % len(table)]))
    if spray := config.get("spray"):
        campaigns.append((spray["count"], spray["workers"], _establish_spray(spray)))
    if peer_spray := config.get("peer_spray"):
        campaigns.append((peer_spray["count"], peer_spray["workers"], _peer_spray(peer_spray)))
    sent = Requests()
    loops = [
        asyncio.create_task(_loop(deadline, count, make, sent, worker, workers))
        for count, workers, make in campaigns
        for worker in range(workers)
    ]
    _say({"event": "started"})
    ramp_end = time.monotonic() + float(config.get("ramp_timeout", 10))
    while any(h.connects + h.failures < h.count for h in holders) and time.monotonic() < ramp_end:
        await asyncio.sleep(0.1)
    _say({"event": "holding", "open": {f"{h.address} {h.mode}": h.open for h in holders}})
    await asyncio.sleep(max(0.0, deadline - time.monotonic()))
    if loops:
        await asyncio.wait(loops, timeout=max(0.1, deadline + GRACE + 1 - time.monotonic()))
    for task in [*loops, *slots]:
        task.cancel()
    await asyncio.gather(*loops, *slots, return_exceptions=True)
    cpu = os.times()
    return {
        "holders": [h.stats() for h in holders],
        "requests": sent.stats(),
        "attacker_cpu_seconds": round(cpu.user + cpu.system, 1),
    }


def main() -> None:
    # on a network the attacker runs on machines of its own; here it shares the server's CPUs, and what it
    # measures is the server, not who gets the CPU first: it runs behind everything else
    os.nice(10)
    config = json.loads(sys.argv[1])
    stats = asyncio.run(attack(config))
    _say({"event": "done", "stats": stats})


if __name__ == "__main__":
    main()
