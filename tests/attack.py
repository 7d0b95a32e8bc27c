"""A hostile client for the attack tests (issue 11): requests over bare sockets from chosen loopback
source addresses, TLS without verification, forged tokens, a peer that answers without end, and
what a process holds (RSS, open-file limit).

Linux routes all of 127.0.0.0/8 to the loopback interface, so an attacker on this host can speak from
127.0.0.2, 127.0.0.3, … while the legitimate clients and the peer cluster speak from 127.0.0.1: the
service sees several sources, as it would see several hosts. The holding of connections runs in its own
process (`tests.hostile_client`), so that its CPU does not delay the test's measurements.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import resource
import socket
import ssl
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from peering.identity import ClusterIdentity, load_or_create
from peering.tokens import signed_payload
from tests.cluster import Cluster

LEGIT = "127.0.0.1"  # the source of legitimate clients and of the peer cluster
ATTACKERS = tuple(f"127.0.0.{n}" for n in range(2, 10))  # eight attacker sources
MIB = 1 << 20
SERVER_ERROR = re.compile(r'"level": "(error|critical)"|Traceback|"exception":')


@dataclass
class Answer:
    """One HTTP answer: status, headers (lower-case names; the last value of a repeated one), body."""

    status: int
    headers: dict[str, str]
    body: bytes
    seconds: float = 0.0  # from connecting to the server's close
    connect_seconds: float = 0.0  # of which: until the connection (and its TLS) was up
    head: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body)


def insecure_tls() -> ssl.SSLContext:
    """What an attacker uses on the peer port: TLS that believes any certificate."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def connect(address: str, *, source: str = LEGIT, tls: bool = False, timeout: float = 10.0) -> socket.socket:
    """A connected socket (TLS completed when `tls`) from `source` to `host:port`."""
    host, port = address.rsplit(":", 1)
    sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout, source_address=(source, 0))
    if not tls:
        return sock
    try:
        return insecure_tls().wrap_socket(sock, server_hostname=None)
    except BaseException:
        sock.close()
        raise


def parse(data: bytes) -> Answer:
    """The first answer in `data` (an interim `100 Continue` counts as an answer here)."""
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    if not lines[0].startswith("HTTP/1."):
        raise ValueError(f"not an HTTP answer: {data[:200]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    body = rest[: int(length)] if length is not None and length.isdigit() else rest
    return Answer(int(lines[0].split(" ")[1]), headers, body, head=head)


def read_until_closed(sock: socket.socket, limit: int = 8 * MIB) -> bytes:
    """Everything the server sends until it closes (or `limit` bytes, or a reset after its answer)."""
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ssl.SSLError, TimeoutError):
            break  # a server that refuses a body closes with unread bytes pending: the answer came first
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def send_all(sock: socket.socket, data: bytes) -> bool:
    """Send `data`; False if the server stopped reading (closed or reset) before it was all sent."""
    view = memoryview(data)
    try:
        while view:
            sent = sock.send(view[:65536])
            view = view[sent:]
    except (BrokenPipeError, ConnectionResetError, ssl.SSLError, TimeoutError):
        return False
    return True


def raw(address: str, payload: bytes, *, source: str = LEGIT, tls: bool = False, timeout: float = 15.0) -> Answer:
    """Send `payload` as it is on a new connection and parse what comes back before the server closes."""
    started = time.monotonic()
    with connect(address, source=source, tls=tls, timeout=timeout) as sock:
        connected = time.monotonic()
        send_all(sock, payload)  # no half-close after it: asyncio servers close a connection at EOF
        data = read_until_closed(sock)
    answer = parse(data)
    answer.seconds = time.monotonic() - started
    answer.connect_seconds = connected - started
    return answer


def request(
    address: str,
    method: str,
    target: str,
    body: bytes | str | Mapping[str, Any] | list[Any] | None = None,
    *,
    headers: Mapping[str, str] | None = None,
    source: str = LEGIT,
    tls: bool = False,
    timeout: float = 15.0,
) -> Answer:
    """One HTTP/1.1 request on its own connection (`Connection: close`); JSON bodies as ASCII escapes, so
    that lone surrogates travel as `\\udXXX` the way a hostile JSON encoder sends them."""
    if isinstance(body, Mapping | list):
        payload = json.dumps(body).encode()
    elif isinstance(body, str):
        payload = body.encode("utf-8", errors="surrogatepass")
    else:
        payload = body or b""
    given = {name.lower() for name in headers or {}}
    lines = [f"{method} {target} HTTP/1.1", *([] if "host" in given else [f"Host: {address}"]), "Connection: close"]
    if body is not None or method in ("POST", "PUT"):
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", errors="surrogateescape")
    return raw(address, head + payload, source=source, tls=tls, timeout=timeout)


# -- what a process holds


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def rss_mib(pid: int) -> float:
    """Resident memory now (VmRSS), in MiB."""
    return _status_kib(pid, "VmRSS") / 1024


def peak_rss_mib(pid: int) -> float:
    """The highest resident memory so far (VmHWM), in MiB."""
    return _status_kib(pid, "VmHWM") / 1024


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_wait(pid: int) -> float:
    """Seconds the process's main thread (its event loop) has been runnable but waiting for a CPU: how
    much of its slowness is the shared machine's rather than its own work (`/proc/<pid>/schedstat`)."""
    return int(Path(f"/proc/{pid}/schedstat").read_text().split()[1]) / 1e9


def open_files_limit(pid: int) -> int:
    """The soft `Max open files` limit of a process, from `/proc/<pid>/limits`."""
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise KeyError("Max open files")


def raise_open_files_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (children inherit it); the new soft limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def keep_alive(address: str, *, source: str = LEGIT, tls: bool = False) -> http.client.HTTPConnection:
    """A keep-alive connection for many requests in a row (TLS that believes any certificate)."""
    host, port = address.rsplit(":", 1)
    if tls:
        return http.client.HTTPSConnection(
            host, int(port), timeout=10, source_address=(source, 0), context=insecure_tls()
        )
    return http.client.HTTPConnection(host, int(port), timeout=10, source_address=(source, 0))


def server_errors(cluster: Cluster, since: int = 0) -> list[str]:
    """Log lines of a cluster (from its line `since` on) that show a bug: an ERROR, a traceback."""
    return [line for line in list(cluster.lines)[since:] if SERVER_ERROR.search(line)]


def log_entries(cluster: Cluster) -> list[dict[str, Any]]:
    """The cluster's JSON log lines so far, decoded (a line that is not JSON is kept as its text)."""
    entries: list[dict[str, Any]] = []
    for line in list(cluster.lines):
        try:
            entries.append(json.loads(line))
        except ValueError:
            entries.append({"unparsed": line})
    return entries


# -- forged tokens


def attacker_identity(data_dir: Path, datacenter: str = "dc9") -> ClusterIdentity:
    """A CA and server certificate of the attacker's own (a cluster that never runs)."""
    return load_or_create(data_dir, datacenter)


def token_fields(token: str) -> dict[str, Any]:
    """The JSON fields of a peering token."""
    fields: dict[str, Any] = json.loads(base64.b64decode(token))
    return fields


def forge(signer: ClusterIdentity, fields: Mapping[str, Any]) -> str:
    """A token carrying `fields` (any values, lone surrogates included), signed with `signer`'s CA key."""
    unsigned = {key: value for key, value in fields.items() if key != "Signature"}
    signature = base64.b64encode(signer.sign(signed_payload(unsigned))).decode()
    return base64.b64encode(json.dumps({**unsigned, "Signature": signature}).encode()).decode()


def fake_token_fields(signer: ClusterIdentity, address: str) -> dict[str, Any]:
    """The fields of a well-formed token from `signer`'s cluster, whose acceptor listens at `address`."""
    return {
        "CA": [signer.ca_pem],
        "ServerAddresses": [address],
        "ServerName": signer.server_name,
        "PeerID": str(uuid.uuid4()),
        "EstablishmentSecret": str(uuid.uuid4()),
        "Remote": {"Datacenter": signer.datacenter, "Partition": "default"},
    }


# -- measuring a legitimate client


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


def milliseconds(values: list[float]) -> dict[str, float]:
    """n, median, p95, p99 and max of durations in seconds, as milliseconds."""
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5) * 1000, 1),
        "p95_ms": round(percentile(values, 0.95) * 1000, 1),
        "p99_ms": round(percentile(values, 0.99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }
