"""`peering serve` as a real process: start-up, TLS peer port, clean shutdown, restart with the same data."""

from __future__ import annotations

import json
import resource
import signal
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.cluster import running_cluster


def _tls_server_name(peering_addr: str, ca_pem: str) -> str:
    """Handshake with the peer port trusting only the cluster's CA; return the name it proved."""
    host, port = peering_addr.rsplit(":", 1)
    context = ssl.create_default_context(cadata=ca_pem)
    with (
        socket.create_connection((host, int(port)), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="server.dc1.consul") as tls,
    ):
        cert = tls.getpeercert()
    assert cert is not None
    return ",".join(str(entry[1]) for entry in cert["subjectAltName"] if entry[0] == "DNS")


def test_serve_start_stop_restart_keeps_everything(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_cluster(data) as cluster:
        with httpx.Client(base_url=cluster.http_url, timeout=10) as http:
            assert http.get("/v1/status/leader").json() == cluster.peering_addr
            token = http.post("/v1/peering/token", json={"PeerName": "cluster-02", "Meta": {"env": "prod"}})
            assert token.status_code == 200
            read = http.get("/v1/peering/cluster-02")
            assert "server" not in read.headers  # no software banner (Consul sends none)
            assert "date" in read.headers
            before = read.json()
        wal = data / "peering.db-wal"
        assert stat.S_IMODE(wal.stat().st_mode) == 0o600  # while running, the WAL holds recent writes
        ca_pem = (data / "ca.pem").read_text()
        assert _tls_server_name(cluster.peering_addr, ca_pem).split(",")[0] == "server.dc1.consul"
        assert cluster.stop(signal.SIGTERM) == 0
        messages = [json.loads(line)["message"] for line in cluster.lines]
        assert "stopped" in messages
        assert not any("Traceback" in line for line in cluster.lines)
        assert all(token.json()["PeeringToken"] not in line for line in cluster.lines)
        cluster_id = cluster.ready["cluster_id"]
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    secret_files = [data / "ca-key.pem", data / "server-key.pem", *data.glob("peering.db*")]
    for secret_file in secret_files:
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600, secret_file

    with running_cluster(data) as again:
        with httpx.Client(base_url=again.http_url, timeout=10) as http:
            after = http.get("/v1/peering/cluster-02").json()
            again_token = http.post("/v1/peering/token", json={"PeerName": "cluster-03"}).json()
            third = http.get("/v1/peering/cluster-03").json()
        assert again.ready["cluster_id"] == cluster_id
        assert (data / "ca.pem").read_text() == ca_pem
        assert after == before
        assert third["CreateIndex"] > before["ModifyIndex"]  # the counter survived the restart
        assert again_token["PeeringToken"]
        assert again.stop(signal.SIGINT) == 0


def _serve_once(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `peering serve` expecting it to refuse to start (bounded by a timeout)."""
    command = [sys.executable, "-m", "peering", "serve", "--data-dir", str(data_dir), *args]
    defaults = [("--http-addr", "127.0.0.1:0"), ("--peering-addr", "127.0.0.1:0")]
    command += [part for flag, value in defaults if flag not in args for part in (flag, value)]
    return subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)


def test_serve_names_the_address_in_use(tmp_path: Path) -> None:
    """A listen address in use: exit 1 with one line naming it (SPEC §2), for either port."""
    with running_cluster(tmp_path / "a") as first:
        for flag, taken in (("--http-addr", first.ready["http_addr"]), ("--peering-addr", first.peering_addr)):
            result = _serve_once(tmp_path / "b", flag, taken)
            assert result.returncode == 1
            assert result.stderr.endswith(f"[ERROR] peering.server: cannot listen on {taken}: address already in use\n")
            assert len(result.stderr.splitlines()) == 1, result.stderr
        assert first.process.poll() is None


def test_a_data_dir_in_use_is_refused_until_its_process_is_gone(tmp_path: Path) -> None:
    """A second process on a data dir in use is refused at start, naming the dir; the lock goes with the
    process, also when it is killed with -9, and the next start works."""
    data = tmp_path / "data"
    with running_cluster(data) as first:
        result = _serve_once(data)
        assert result.returncode == 1
        assert f"data dir {data.resolve()} is in use by another peering process" in result.stderr
        assert len(result.stderr.splitlines()) == 1, result.stderr
        assert "Traceback" not in result.stderr
        with httpx.Client(base_url=first.http_url, timeout=10) as http:
            assert http.get("/v1/peerings").status_code == 200  # the first one is untouched
        assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    with running_cluster(data) as again:
        assert again.ready["cluster_id"] == first.ready["cluster_id"]
        assert again.stop() == 0


def _pending_blocking_queries(http: httpx.Client) -> float:
    metrics = http.get("/v1/agent/metrics", params={"format": "prometheus"}).text
    return float(next(line.split()[1] for line in metrics.splitlines() if line.startswith("peering_blocking_queries ")))


def test_sigterm_answers_an_open_blocking_query_and_exits_promptly(tmp_path: Path) -> None:
    """SIGTERM with a blocking query, an idle keep-alive, an idle TLS connection and a TCP connection that
    never starts its handshake open: the query gets its 200 and the list at once, the process exits 0
    within 3 s, and nothing is logged as an error."""
    data = tmp_path / "data"
    with running_cluster(data) as cluster, httpx.Client(base_url=cluster.http_url, timeout=10) as http:
        assert http.post("/v1/peering/token", json={"PeerName": "cluster-02"}).status_code == 200
        index = http.get("/v1/peerings").headers["X-Consul-Index"]  # this connection stays open, idle
        answers: list[httpx.Response] = []

        def watch() -> None:
            with httpx.Client(base_url=cluster.http_url, timeout=30) as watcher:
                answers.append(watcher.get("/v1/peerings", params={"index": index, "wait": "5m"}))

        watcher = threading.Thread(target=watch)
        watcher.start()
        host, port = cluster.peering_addr.rsplit(":", 1)
        context = ssl.create_default_context(cadata=(data / "ca.pem").read_text())
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="server.dc1.consul"),
            socket.create_connection((host, int(port)), timeout=5),
        ):
            deadline = time.monotonic() + 10
            while _pending_blocking_queries(http) < 1:
                assert time.monotonic() < deadline, "the blocking query never started"
                time.sleep(0.02)
            started = time.monotonic()
            cluster.process.send_signal(signal.SIGTERM)
            assert cluster.process.wait(10) == 0
            assert time.monotonic() - started < 3
        watcher.join(10)
    [answer] = answers
    assert answer.status_code == 200
    assert [peering["Name"] for peering in answer.json()] == ["cluster-02"]
    assert not any('"level": "error"' in line or "Traceback" in line for line in cluster.lines), cluster.lines
    assert "stopped" in [json.loads(line)["message"] for line in cluster.lines]


def _limited(soft: int, hard: int) -> Callable[[], None]:
    return lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _start_lines(tmp_path: Path, soft: int, hard: int) -> list[dict[str, Any]]:
    """The log of a start (up to "cluster ready") under this open-file limit; the process is then stopped."""
    command = [sys.executable, "-m", "peering", "serve", "--data-dir", str(tmp_path), "--log-format", "json",
               "--http-addr", "127.0.0.1:0", "--peering-addr", "127.0.0.1:0"]  # fmt: skip
    process = subprocess.Popen(
        command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, preexec_fn=_limited(soft, hard)
    )
    entries = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            entries.append(json.loads(line))
            if entries[-1]["message"] == "cluster ready":
                break
        process.send_signal(signal.SIGTERM)
        assert process.wait(10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        if process.stderr is not None:
            process.stderr.close()
    return entries


def test_the_open_file_limit_is_raised_and_the_connection_limits_fit_in_it(tmp_path: Path) -> None:
    """At start the soft limit on open files goes up to the hard one (and says so); when even that cannot hold
    both ports' connection limits, both are lowered together, with a warning, and the ready line follows."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    entries = _start_lines(tmp_path / "raised", 1024, hard)
    raised = next(entry for entry in entries if entry["message"] == "raised the open-file limit")
    assert (raised["from"], raised["to"]) == (1024, hard)
    limits = next(entry for entry in entries if entry["message"] == "connection limits")
    assert limits["open_files"] == hard
    assert limits["fair_share_load"] == 0.5  # PEERING_FAIR_SHARE_LOAD (SECURITY.md)

    entries = _start_lines(tmp_path / "low", 2048, 2048)
    warning = next(entry for entry in entries if entry["level"] == "warning")
    assert warning["message"] == "the open-file limit cannot hold the connection limits: lowered them"
    limits = next(entry for entry in entries if entry["message"] == "connection limits")
    assert limits["http_max_conns"] + limits["peering_max_conns"] <= 2048 - 512
    assert limits["http_max_conns"] > limits["peering_max_conns"]  # scaled together
    assert limits["http_max_conns_per_client"] <= limits["http_max_conns"]
