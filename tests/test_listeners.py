"""The listeners' HTTP edges against real `peering serve` processes: `Expect: 100-continue` over the body
limit (issue 11.11) and `X-Forwarded-For` believed only from `--trusted-proxies` (issue 11.4, SPEC §8)."""

from __future__ import annotations

import json
import socket
import ssl
import time
from ipaddress import ip_network
from pathlib import Path

import httpx
import pytest

from peering.api.body import MAX_BODY_BYTES
from peering.api.forwarded import forwarded_client
from tests.cluster import Cluster, running_cluster

MANAGEMENT = "c0000000-0000-4000-8000-00000000000c"
ACLS = ("--acl-enabled", "--acl-initial-management-token", MANAGEMENT)
TOO_LARGE = f"Request body too large: the limit is {MAX_BODY_BYTES} bytes".encode()


def _head(sock: socket.socket) -> bytes:
    """What the server sends first, up to the end of its first head (bounded by the socket timeout)."""
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = sock.recv(65536)
        if not chunk:
            break
        received += chunk
    return received


def _expect_continue(sock: socket.socket, path: str, length: int) -> tuple[bytes, float]:
    started = time.monotonic()
    sock.sendall(
        f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\nExpect: 100-continue\r\n\r\n".encode()
    )
    return _head(sock), time.monotonic() - started


def test_expect_continue_over_the_limit_is_a_413_at_once_on_both_ports(tmp_path: Path) -> None:
    """A body announced over 1 MiB with `Expect: 100-continue` gets its 413 (the routes' message) at once,
    never a `100 Continue` first, and the connection closes; under the limit the 100 comes, then the answer."""
    with running_cluster(tmp_path / "data") as cluster:
        host, port = cluster.ready["http_addr"].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            answer, seconds = _expect_continue(sock, "/v1/peering/token", MAX_BODY_BYTES + 1)
            assert answer.startswith(b"HTTP/1.1 413 "), answer
            assert seconds < 1.0
            answer += sock.recv(65536)
            assert answer.endswith(b"\r\n\r\n" + TOO_LARGE)
            assert sock.recv(65536) == b""  # closed: the body it may still send is never read
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            body = json.dumps({"PeerName": "under"}).encode()
            answer, _ = _expect_continue(sock, "/v1/peering/token", len(body))
            assert answer == b"HTTP/1.1 100 Continue\r\n\r\n"
            sock.sendall(body)
            assert _head(sock).startswith(b"HTTP/1.1 200 ")

        host, port = cluster.peering_addr.rsplit(":", 1)
        context = ssl.create_default_context(cadata=(tmp_path / "data" / "ca.pem").read_text())
        with (
            socket.create_connection((host, int(port)), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname="server.dc1.consul") as tls,
        ):
            answer, seconds = _expect_continue(tls, "/peering/v1/heartbeat", 50 * MAX_BODY_BYTES)
            assert answer.startswith(b"HTTP/1.1 413 "), answer
            assert seconds < 1.0


@pytest.mark.parametrize(
    ("peer", "header", "trusted", "client"),
    [
        ("127.0.0.1", [b"10.1.2.3"], ["127.0.0.1/32"], "10.1.2.3"),
        ("10.9.9.9", [b"10.1.2.3"], ["127.0.0.1/32"], None),  # not from a trusted proxy: ignored
        ("127.0.0.1", [b"6.6.6.6, 10.1.2.3, 192.168.1.1"], ["127.0.0.0/8", "192.168.0.0/16"], "10.1.2.3"),
        ("127.0.0.1", [b"6.6.6.6", b"10.1.2.3"], ["127.0.0.1/32"], "10.1.2.3"),  # several headers: one list
        ("127.0.0.1", [b"192.168.1.1, 127.0.0.2"], ["127.0.0.0/8", "192.168.0.0/16"], "192.168.1.1"),  # all trusted
        ("127.0.0.1", [b"10.1.2.3, not-an-ip"], ["127.0.0.1/32"], None),  # garbage where the client should be
        ("127.0.0.1", [b""], ["127.0.0.1/32"], None),
        ("::ffff:127.0.0.1", [b"2001:db8::7"], ["127.0.0.1/32"], "2001:db8::7"),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(
    peer: str, header: list[bytes], trusted: list[str], client: str | None
) -> None:
    assert forwarded_client(peer, header, [ip_network(cidr) for cidr in trusted]) == client


def _token_for(http: httpx.Client, cidrs: list[str]) -> str:
    """A `peering = "read"` token usable only from `cidrs`; its secret."""
    management = {"X-Consul-Token": MANAGEMENT}
    name = "read-from-" + cidrs[0].replace(".", "-").replace("/", "_")
    policy = http.put("/v1/acl/policy", json={"Name": name, "Rules": 'peering = "read"'}, headers=management)
    assert policy.status_code == 200, policy.text
    body = {"Description": name, "Policies": [{"Name": name}], "AllowedCIDRs": cidrs}
    token = http.put("/v1/acl/token", json=body, headers=management)
    assert token.status_code == 200, token.text
    return str(token.json()["SecretID"])


def _logged_clients(cluster: Cluster) -> list[str]:
    return [entry["client"] for entry in map(json.loads, cluster.lines) if entry["message"] == "request"]


@pytest.mark.slow
def test_x_forwarded_for_counts_only_from_a_trusted_proxy(tmp_path: Path) -> None:
    """A token allowed from 10.0.0.0/8, used from 127.0.0.1 with `X-Forwarded-For: 10.1.2.3`: refused when no
    proxy is trusted (the header is ignored, the log says 127.0.0.1), accepted with `--trusted-proxies
    127.0.0.1/32` (the log says 10.1.2.3); there, a token allowed only from 127.0.0.1 is refused through the
    proxy, since the client is 10.1.2.3."""
    forwarded = {"X-Forwarded-For": "10.1.2.3"}
    with running_cluster(tmp_path / "plain", *ACLS) as plain, httpx.Client(base_url=plain.http_url) as http:
        outside = _token_for(http, ["10.0.0.0/8"])
        refused = http.get("/v1/peerings", headers={**forwarded, "X-Consul-Token": outside})
        assert refused.status_code == 403
        assert refused.text.endswith("may not be used from 127.0.0.1")
        assert plain.stop() == 0
    assert set(_logged_clients(plain)) == {"127.0.0.1"}

    with (
        running_cluster(
            tmp_path / "proxied", *ACLS, "--trusted-proxies", "127.0.0.1/32", "--log-level", "debug"
        ) as proxied,
        httpx.Client(base_url=proxied.http_url) as http,
    ):
        outside, inside = _token_for(http, ["10.0.0.0/8"]), _token_for(http, ["127.0.0.1/32"])
        accepted = http.get("/v1/peerings", headers={**forwarded, "X-Consul-Token": outside})
        assert accepted.status_code == 200, accepted.text
        assert http.get("/v1/peerings", headers={**forwarded, "X-Consul-Token": inside}).status_code == 403
        assert http.get("/v1/peerings", headers={"X-Consul-Token": inside}).status_code == 200  # no header: itself
        assert proxied.stop() == 0
    assert _logged_clients(proxied)[-3:] == ["10.1.2.3", "10.1.2.3", "127.0.0.1"]
