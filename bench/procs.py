"""Processes under test: start them, find the ports *they* listen on, wait until they answer, stop them.

Every server is started with port 0, so the OS picks a free port, and the port is then read from
the process's own sockets (`/proc/<pid>/fd` and `/proc/<pid>/net/tcp`): the benchmark never guesses
a port and never talks to a server that some other process (a test suite, another benchmark)
happens to run on a well-known one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
_LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class StartError(RuntimeError):
    """A server under test exited, or did not answer in time; carries the tail of its log."""


@dataclass
class Server:
    """A running process under test and where it listens."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    started_at: float  # time.perf_counter() just before the process was spawned
    ports: list[int] = field(default_factory=list)
    ready_after: float = 0.0  # seconds from spawn until it answered

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        """Raise StartError if the process has exited (with its exit code and last log lines)."""
        code = self.process.poll()
        if code is not None:
            raise StartError(f"{self.name} (pid {self.pid}) exited with code {code}:\n{self.log_tail()}")

    def rss_mb(self) -> float:
        """Resident set size (VmRSS, which /proc gives in KiB) in MB (10^6 bytes)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
        raise StartError(f"{self.name}: no VmRSS in /proc/{self.pid}/status")

    def cpu_seconds(self) -> float:
        """User + system CPU time the process has used so far."""
        stat = Path(f"/proc/{self.pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()  # the command name may contain spaces
        return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS

    def settle(self, *, window: float = 0.1, busy: float = 0.1, timeout: float = 60) -> float:
        """Wait until the process is (nearly) idle: below `busy` of a core over `window` seconds.

        A load generator that stops leaves up to one abandoned request per connection that the server
        still works through; measuring the next target before it has would charge that work to it.
        Returns the seconds waited.
        """
        began = time.perf_counter()
        while time.perf_counter() - began < timeout:
            used = self.cpu_seconds()
            time.sleep(window)
            self.check_alive()
            if self.cpu_seconds() - used < busy * window:
                break
        return time.perf_counter() - began

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM, then SIGKILL after `timeout` seconds; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def child_environment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment without `PEERING_*` settings (they would override our options)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PEERING_")}
    env.update(extra or {})
    return env


def uvicorn_argv(factory: str) -> list[str]:
    """A baseline app's server: `factory` ("module:function") on uvicorn with the service's stack (one worker,
    httptools, uvloop) and the same limits, on a port the OS picks."""
    return [
        sys.executable, "-m", "uvicorn", "--factory", factory, "--app-dir", str(ROOT),
        "--host", "127.0.0.1", "--port", "0", "--workers", "1", "--log-level", "warning", "--no-access-log",
        "--limit-concurrency", "1000", "--timeout-keep-alive", "5", "--http", "httptools", "--loop", "uvloop",
    ]  # fmt: skip


def spawn(name: str, argv: Sequence[str], log_path: Path, env: dict[str, str] | None = None) -> Server:
    """Start a process with stdout and stderr going to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        began = time.perf_counter()
        process = subprocess.Popen(
            list(argv), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    return Server(name, process, log_path, began)


def _socket_inodes(pid: int) -> set[str]:
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fd_dir.iterdir())
    except OSError:
        return inodes
    for entry in entries:
        try:
            target = os.readlink(entry)
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def listening_ports(pid: int) -> list[int]:
    """TCP ports on which process `pid` itself holds a listening socket, oldest socket first."""
    inodes = _socket_inodes(pid)
    ports: dict[int, int] = {}  # port -> socket inode (inodes grow as sockets are created)
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[3] == _LISTEN and fields[9] in inodes:
                ports[int(fields[1].rsplit(":", 1)[1], 16)] = int(fields[9])
    return sorted(ports, key=ports.__getitem__)


def wait_ready(
    server: Server,
    *,
    ports: int,
    probe: Callable[[Server], bool],
    timeout: float = 60,
    interval: float = 0.005,
) -> Server:
    """Wait until `server` listens on `ports` ports of its own and `probe` says it answers.

    Raises StartError (and stops the process) if it exits or is not ready within `timeout` seconds.
    """
    deadline = time.perf_counter() + timeout
    try:
        while True:
            server.check_alive()
            found = listening_ports(server.pid)
            if len(found) >= ports:
                server.ports = found
                if probe(server):
                    server.ready_after = time.perf_counter() - server.started_at
                    return server
            if time.perf_counter() > deadline:
                raise StartError(
                    f"{server.name} (pid {server.pid}) not ready after {timeout:.0f} s "
                    f"(listening on {found}):\n{server.log_tail()}"
                )
            time.sleep(interval)
    except BaseException:
        server.stop(5)
        raise


def http_ok(url: str, *, method: str = "GET", body: bytes | None = None) -> httpx.Response | None:
    """One request with a short timeout; None when the connection fails."""
    try:
        response = httpx.request(method, url, content=body, timeout=2)
    except httpx.HTTPError:
        return None
    return response if response.status_code == 200 else None


def start_cluster(
    name: str, data_dir: Path, datacenter: str, log_dir: Path, *, timeout: float = 60, extra: Sequence[str] = ()
) -> Server:
    """`peering serve` on free ports; `ports[0]` is the client API, `peering_addr` the TLS endpoint.

    `extra` are more options (`--database-url …` makes it a replica on PostgreSQL).

    The client port is the one of the two that answers `GET /v1/status/leader` over plain HTTP with
    the other one's address, which also proves that the answer comes from this very process.
    """
    executable = ROOT / ".venv" / "bin" / "peering"
    command = [str(executable)] if executable.exists() else [sys.executable, "-m", "peering"]
    argv = [
        *command,
        "serve",
        "--data-dir",
        str(data_dir),
        "--datacenter",
        datacenter,
        "--http-addr",
        "127.0.0.1:0",
        "--peering-addr",
        "127.0.0.1:0",
        "--log-level",
        "warning",
        *extra,
    ]
    server = spawn(name, argv, log_dir / f"{name}.log", child_environment())

    def probe(candidate: Server) -> bool:
        for port in candidate.ports:
            others = [p for p in candidate.ports if p != port]
            response = http_ok(f"http://127.0.0.1:{port}/v1/status/leader")
            if response is not None and others and response.json() == f"127.0.0.1:{others[0]}":
                candidate.ports = [port, *others]
                return True
        return False

    return wait_ready(server, ports=2, probe=probe, timeout=timeout)


def peering_addr(cluster: Server) -> str:
    return f"127.0.0.1:{cluster.ports[1]}"
