"""`peering serve` as a real process: start-up, TLS peer port, clean shutdown, restart with the same data."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import stat
from pathlib import Path

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
            before = http.get("/v1/peering/cluster-02").json()
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


def test_serve_reports_a_busy_port(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "a") as first:
        import subprocess
        import sys

        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "peering",
                "serve",
                "--data-dir",
                str(tmp_path / "b"),
                "--http-addr",
                first.ready["http_addr"],
                "--peering-addr",
                "127.0.0.1:0",
            ],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 1
        assert "cannot start" in result.stderr
        assert "Traceback" not in result.stderr
