"""Secret hygiene (SPEC §2, §6, §8): no secret in any log line or error body, and secret files are 0600.

Cluster A is a real `peering serve` process (ACLs on, `--log-level debug`, JSON logs); cluster B runs in
this process (ACLs on), its logs captured by caplog at DEBUG. The `?token=` requests go over a raw socket,
so that the test's own HTTP client (which logs its request URLs) is not mistaken for the service.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import signal
import sqlite3
import stat
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from peering.cluster import hash_secret
from peering.identity import client_ssl_context
from peering.logs import TextFormatter
from tests.cluster import Cluster, running_cluster
from tests.test_peer_endpoint import dialer_identity
from tests.test_peering import HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT, Node, _secrets_in, gone, state_is

pytestmark = pytest.mark.anyio

KEY_FILES = ("ca-key.pem", "server-key.pem")
SECRET_FILES = (*KEY_FILES, "peering.db", "peering.db-wal", "peering.db-shm")
PUBLIC_FILES = ("ca.pem", "server.pem", "cluster-id")
LOGGERS = ("", "peering", "uvicorn", "uvicorn.error", "uvicorn.access", "httpx", "httpcore", "aiosqlite")

# the answers that hand a secret out, once: a new peering token, a new ACL token's SecretID
SHOWN_ONCE = {("POST", "/v1/peering/token"), ("PUT", "/v1/acl/token"), ("PUT", "/v1/acl/bootstrap")}

Exposed = list[tuple[str, str]]  # (where it was shown, what was shown)


def _keep(exposed: Exposed, method: str, path: str, status: int, headers: str, body: str) -> None:
    """Keep an answer's headers, and its body unless it is the one success that hands a secret out."""
    label = f"{method} {path} {status}"
    exposed.append((f"{label} headers", headers))
    if status >= 400 or (method, path) not in SHOWN_ONCE:
        exposed.append((f"{label} body", body))


def _recorder(exposed: Exposed) -> Callable[[httpx.Response], Awaitable[None]]:
    """An httpx response hook that keeps every answer (see `_keep`)."""

    async def record(response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        request = response.request
        _keep(exposed, request.method, request.url.path, response.status_code, headers, response.text)

    return record


async def _raw(exposed: Exposed, addr: str, method: str, target: str, body: object = None) -> tuple[int, str]:
    """One HTTP/1.1 request over a bare socket (nothing on this side logs it); its status and body."""
    payload = b"" if body is None else json.dumps(body).encode()
    host, port = addr.rsplit(":", 1)
    head = (
        f"{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n"
    )
    chunks: list[bytes] = []
    with anyio.fail_after(10):
        async with await anyio.connect_tcp(host, int(port)) as stream:
            await stream.send(head.encode() + payload)
            while True:
                try:
                    chunks.append(await stream.receive())
                except anyio.EndOfStream:
                    break
    headers, _, answer = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(headers.split(b" ", 2)[1])
    _keep(exposed, method, target.split("?")[0], status, headers.decode(), answer.decode())
    return status, answer.decode()


async def _wait_for(
    api: httpx.AsyncClient, name: str, check: Callable[[httpx.Response], bool], timeout: float = 10.0
) -> httpx.Response:
    """Block (blocking queries, bounded) until the read of `name` satisfies `check`."""
    index = "0"
    with anyio.fail_after(timeout):
        while True:
            response = await api.get(f"/v1/peering/{name}?index={index}&wait=2s")
            if check(response):
                return response
            index = response.headers["X-Consul-Index"]


async def _write_token(api: httpx.AsyncClient, management: str) -> str:
    """A `peering = "write"` token, created with the management token; its SecretID."""
    auth = {"X-Consul-Token": management}
    policy = await api.put("/v1/acl/policy", json={"Name": "ops", "Rules": 'peering = "write"'}, headers=auth)
    assert policy.status_code == 200, policy.text
    token = await api.put("/v1/acl/token", json={"Policies": [{"Name": "ops"}]}, headers=auth)
    assert token.status_code == 200, token.text
    return str(token.json()["SecretID"])


def _token_secret(token: str) -> str:
    return str(json.loads(base64.b64decode(token))["EstablishmentSecret"])


def _key_material(data: Path, public: str) -> dict[str, str]:
    """The private keys of a cluster as PEM, as each line of their base64 body, and as numbers.

    A key file also holds the public key, and a PEM line of only public-key bytes can be the same as one in a
    certificate (`public`: every certificate shown), so such lines are not counted as secret."""
    found: dict[str, str] = {}
    for name in KEY_FILES:
        pem = (data / name).read_text()
        found[f"{data.name}/{name}"] = pem
        body = [line for line in pem.splitlines() if line and not line.startswith("-----")]
        found[f"{data.name}/{name} base64"] = "".join(body)
        lines = {f"{data.name}/{name} line {n}": line for n, line in enumerate(body) if len(line) >= 32}
        found.update({label: line for label, line in lines.items() if line not in public})
        key = serialization.load_pem_private_key(pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        value = key.private_numbers().private_value
        found[f"{data.name}/{name} scalar"] = f"{value:x}"
        found[f"{data.name}/{name} scalar (decimal)"] = str(value)
    return found


def _stored(data: Path, label: str) -> dict[str, str]:
    """Every secret (or secret hash) the cluster's database holds."""
    found = {f"{label} stored peering secret {n}": value for n, value in enumerate(_secrets_in(data))}
    with closing(sqlite3.connect(data / "peering.db")) as db:
        hashes = [row[0] for row in db.execute("SELECT secret_hash FROM acl_tokens")]
    found.update({f"{label} ACL secret hash {n}": value for n, value in enumerate(hashes)})
    return found


def _strings(value: object) -> Iterator[str]:
    """Every string in a decoded JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield str(key)
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    else:
        yield str(value)


async def _heartbeats_received(api: httpx.AsyncClient, management: str, at_least: int) -> None:
    """Wait (bounded) until the acceptor counted `at_least` good heartbeats. Heartbeats change no index,
    so there is no blocking query to wait on: poll the metrics once per heartbeat interval."""
    sample = 'peering_heartbeats_received_total{result="ok"} '
    with anyio.fail_after(10):
        while True:
            text = (await api.get("/v1/agent/metrics?format=prometheus", headers={"X-Consul-Token": management})).text
            counts = [float(line[len(sample) :]) for line in text.splitlines() if line.startswith(sample)]
            if counts and counts[0] >= at_least:
                return
            await anyio.sleep(HEARTBEAT_INTERVAL)


async def test_no_secret_in_logs_or_error_bodies(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Through a whole two-cluster walk with ACLs on, no token, establishment or stream secret (or hash), ACL
    SecretID (or hash) or private key appears in a log line, a response header, an error body or any other
    answer than the one that hands that secret out."""
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)  # the service may still quiet drivers that log bound values
    management_a, management_b, unknown = (str(uuid.uuid4()) for _ in range(3))
    secrets: dict[str, str] = {"A management": management_a, "B management": management_b, "unknown ACL": unknown}
    exposed: Exposed = []
    a_args = (
        "--datacenter", "dc1", "--acl-enabled", "--acl-default-policy", "deny",
        "--acl-initial-management-token", management_a, "--log-level", "debug",
        "--heartbeat-interval", str(HEARTBEAT_INTERVAL), "--heartbeat-timeout", str(HEARTBEAT_TIMEOUT),
    )  # fmt: skip
    with running_cluster(tmp_path / "a", *a_args) as a:
        b = Node(
            "b",
            tmp_path / "b",
            "dc2",
            acl_enabled=True,
            acl_default_policy="deny",
            acl_initial_management_token=management_b,
        )
        await b.start()
        try:
            async with httpx.AsyncClient(base_url=a.http_url, timeout=15) as api_a:
                await _walk(a, tmp_path / "a", b, api_a, management_a, management_b, unknown, secrets, exposed)
        finally:
            await b.stop()
        assert a.stop(signal.SIGTERM) == 0
    secrets.update(_stored(tmp_path / "a", "A") | _stored(tmp_path / "b", "B"))
    public = "".join((tmp_path / d / name).read_text() for d in ("a", "b") for name in ("ca.pem", "server.pem"))
    secrets.update(_key_material(tmp_path / "a", public) | _key_material(tmp_path / "b", public))

    formatter = TextFormatter()
    texts: Exposed = [(f"log {r.name}", formatter.format(r) + (r.stack_info or "")) for r in caplog.records]
    for line in a.lines:
        texts.append(("A log", line + "\n" + "\n".join(_strings(json.loads(line)))))
    texts += exposed
    leaks = [f"{label} in {where}" for label, value in secrets.items() for where, text in texts if value in text]
    assert leaks == [], "\n".join(leaks)

    # the texts searched are the real ones: the walk's events were logged, by both clusters
    a_messages = [json.loads(line)["message"] for line in a.lines]
    for message in (
        "rejected a peering establishment secret",
        "rejected a heartbeat with a wrong stream secret",
        "rejected a termination with a wrong stream secret",
        "peering terminated by peer",
        "request",
    ):
        assert message in a_messages
    assert any(json.loads(line).get("path") == "/v1/peering/token" for line in a.lines)  # logged, without ?token=
    b_messages = [r.getMessage() for r in caplog.records]
    for message in ("peering established", "rejected a termination with a wrong stream secret", "request"):
        assert message in b_messages
    assert len(secrets) > 40
    assert sum(1 for where, _ in exposed if where.endswith("body")) > 20


async def _walk(
    a: Cluster,
    a_data: Path,
    b: Node,
    api_a: httpx.AsyncClient,
    management_a: str,
    management_b: str,
    unknown: str,
    secrets: dict[str, str],
    exposed: Exposed,
) -> None:
    """generate → check → establish → heartbeats → wrong secrets → reuse → delete → re-establish → delete."""
    api_a.event_hooks = b.api.event_hooks = {"response": [_recorder(exposed)]}

    # ACLs: a write token on each side, an unknown token, `?token=` and `Authorization: Bearer`
    write_a = secrets["A write token"] = await _write_token(api_a, management_a)
    write_b = secrets["B write token"] = await _write_token(b.api, management_b)
    api_a.headers["X-Consul-Token"] = write_a
    b.api.headers["X-Consul-Token"] = write_b
    for api in (api_a, b.api):
        denied = await api.get("/v1/peerings", headers={"X-Consul-Token": unknown})
        assert (denied.status_code, denied.text) == (403, "ACL not found")
        assert (await api.put("/v1/acl/bootstrap")).status_code == 403
        assert (await api.get("/v1/acl/token/self")).status_code == 200
        assert (await api.get("/v1/acl/tokens")).status_code == 403  # a peering token may not read ACLs
    assert (await b.api.get("/v1/peerings", headers={"Authorization": f"Bearer {write_b}"})).status_code == 200
    for addr, secret in ((a.ready["http_addr"], write_a), (b.http_addr, write_b)):
        assert await _raw(exposed, addr, "GET", f"/v1/peerings?token={unknown}") == (403, "ACL not found")
        assert (await _raw(exposed, addr, "GET", f"/v1/peerings?token={secret}"))[0] == 200

    # generate (authorised by ?token=) → check → establish → ACTIVE on both sides → heartbeats
    status, answer = await _raw(
        exposed, a.ready["http_addr"], "POST", f"/v1/peering/token?token={write_a}", {"PeerName": "cluster-b"}
    )
    assert status == 200, answer
    token = secrets["token 1"] = json.loads(answer)["PeeringToken"]
    secrets["token 1 establishment secret"] = _token_secret(token)
    secrets["token 1 establishment hash"] = hash_secret(_token_secret(token))
    check = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": token})
    assert check.json()["IsValid"] is True, check.text
    assert (await b.establish("cluster-a", token)).status_code == 200
    on_a = (await _wait_for(api_a, "cluster-b", state_is("ACTIVE"))).json()
    on_b = (await b.wait_for("cluster-a", state_is("ACTIVE"))).json()
    secrets.update(_stored(b.data, "B link 1") | _stored(a_data, "A link 1"))
    stream = secrets["stream secret 1"] = next(v for v in _secrets_in(b.data) if len(v) != 64)
    secrets["stream secret 1 hash"] = hash_secret(stream)
    await _heartbeats_received(api_a, management_a, at_least=3)

    # wrong secrets on both peer ports: refused (403) and logged without the secret
    a_ca, b_ca = ((data / "ca.pem").read_text() for data in (a_data, b.data))
    wrong = {f"wrong secret {n}": str(uuid.uuid4()) for n in range(6)}
    secrets.update(wrong)
    w = list(wrong.values())
    attempts: list[tuple[str, str, str, dict[str, Any]]] = [
        (a_ca, a.peering_addr, "exchange", {"PeerID": on_a["ID"], "EstablishmentSecret": w[0]}),
        (a_ca, a.peering_addr, "exchange", {"PeerID": on_a["ID"], "EstablishmentSecret": _token_secret(token)}),
        (a_ca, a.peering_addr, "probe", {"PeerID": on_a["ID"], "EstablishmentSecret": w[1]}),
        (a_ca, a.peering_addr, "heartbeat", {"PeerID": on_a["ID"], "StreamSecret": w[2]}),
        (a_ca, a.peering_addr, "terminate", {"PeerID": on_a["ID"], "StreamSecret": w[3]}),
        (b_ca, b.peering_addr, "terminate", {"PeerID": on_b["ID"], "StreamSecret": w[4]}),
        (b_ca, b.peering_addr, "heartbeat", {"PeerID": on_b["ID"], "StreamSecret": w[5]}),
    ]
    for ca, addr, operation, body in attempts:
        if "EstablishmentSecret" in body:
            body = {**body, "Dialer": dialer_identity(b_ca)}
        async with httpx.AsyncClient(verify=client_ssl_context([ca]), timeout=10) as peer:
            peer.event_hooks = {"response": [_recorder(exposed)]}
            refused = await peer.post(f"https://{addr}/peering/v1/{operation}", json=body)
        assert refused.status_code == 403, (operation, refused.text)
    assert (await b.api.get("/v1/peering/cluster-a")).json()["State"] == "ACTIVE"  # nothing was disturbed

    # the used token again: 403 on establish, invalid on check
    reuse = await b.establish("cluster-a", token)
    assert reuse.status_code == 403
    assert reuse.text == "a new peering token must be generated: invalid peering establishment secret"
    stale = await b.api.post("/v1/peering/check", json={"PeerName": "cluster-a", "PeeringToken": token})
    assert stale.json()["IsValid"] is False

    # delete on the acceptor terminates the dialer; re-establish; delete on the dialer terminates the acceptor
    assert (await api_a.delete("/v1/peering/cluster-b")).status_code == 200
    await b.wait_for("cluster-a", state_is("TERMINATED"))
    await _wait_for(api_a, "cluster-b", gone)
    token = secrets["token 2"] = (await api_a.post("/v1/peering/token", json={"PeerName": "cluster-b"})).json()[
        "PeeringToken"
    ]
    secrets["token 2 establishment secret"] = _token_secret(token)
    secrets["token 2 establishment hash"] = hash_secret(_token_secret(token))
    again = await b.establish("cluster-a", token)
    assert again.status_code == 200, again.text
    await _wait_for(api_a, "cluster-b", state_is("ACTIVE"))
    secrets.update(_stored(b.data, "B link 2") | _stored(a_data, "A link 2"))
    stream = secrets["stream secret 2"] = next(v for v in _secrets_in(b.data) if len(v) != 64)
    secrets["stream secret 2 hash"] = hash_secret(stream)
    assert (await b.api.delete("/v1/peering/cluster-a")).status_code == 200
    await _wait_for(api_a, "cluster-b", state_is("TERMINATED"))
    await b.wait_for("cluster-a", gone)
    assert (await api_a.delete("/v1/peering/cluster-b")).status_code == 200
    await _wait_for(api_a, "cluster-b", gone)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _check_modes(data: Path) -> None:
    """The data dir is 0700, every file with secrets in it 0600, the public ones writable by the owner only;
    no other file (one we do not know might hold secrets)."""
    assert _mode(data) == 0o700
    names = {path.name for path in data.iterdir()}
    assert names <= set(SECRET_FILES) | set(PUBLIC_FILES), names
    for name in SECRET_FILES:
        if (data / name).exists():  # -wal and -shm exist while the database is open (and after a crash)
            assert _mode(data / name) == 0o600, name
    for name in PUBLIC_FILES:
        assert _mode(data / name) & 0o022 == 0, name


@contextmanager
def _umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def test_secret_files_are_0600_in_a_0700_data_dir(tmp_path: Path) -> None:
    """After a first start (even under umask 000), after a kill -9 and after a restart over files restored with
    looser modes, the data dir is 0700 and the database (with -wal, -shm) and both private keys are 0600."""
    data = tmp_path / "data"
    with _umask(0), running_cluster(data) as cluster:  # the child inherits umask 000: modes must be explicit
        with httpx.Client(base_url=cluster.http_url, timeout=10) as http:
            assert http.post("/v1/peering/token", json={"PeerName": "x"}).status_code == 200
        assert {"peering.db-wal", "peering.db-shm"} <= {path.name for path in data.iterdir()}
        _check_modes(data)
        assert cluster.stop(signal.SIGKILL) == -signal.SIGKILL
    _check_modes(data)  # what a crash leaves behind (-wal, -shm) is still private

    # an operator restores the data dir from a copy that lost the modes
    os.chmod(data, 0o755)  # noqa: S103 -- loosened on purpose, to see the service tighten it
    for path in data.iterdir():
        os.chmod(path, 0o644)
    with running_cluster(data) as cluster:
        _check_modes(data)
        assert {"peering.db-wal", "peering.db-shm"} <= {path.name for path in data.iterdir()}
        assert cluster.stop(signal.SIGTERM) == 0
    _check_modes(data)
