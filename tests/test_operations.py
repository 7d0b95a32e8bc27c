"""Operations (SPEC §10): the offline docs pages, metrics, request and lifecycle logs."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import httpx
import pytest

from peering import logs
from tests.test_acl import MANAGEMENT_SECRET, _acl_cluster

pytestmark = pytest.mark.anyio


async def test_docs_pages_use_only_local_assets(client: httpx.AsyncClient) -> None:
    """`/docs` and `/redoc` load their scripts and styles from this service, never from a CDN."""
    for page in ("/docs", "/redoc"):
        response = await client.get(page)
        assert response.status_code == 200
        assert "text/html" in response.headers["content-type"]
        assets = re.findall(r'(?:src|href)="([^"]+)"', response.text)
        assert assets
        assert all(a.startswith("/docs/static/") for a in assets), assets
        assert "https://" not in response.text
        for asset in assets:
            served = await client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000
    assert "/openapi.json" in (await client.get("/docs")).text


def _samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            found[name] = float(value)
    return found


async def test_prometheus_metrics_count_requests_and_show_health(client: httpx.AsyncClient) -> None:
    """Requests are counted by route template and status; every peering has a `peering_healthy` gauge."""
    await client.post("/v1/peering/token", json={"PeerName": "cluster-02"})
    await client.get("/v1/peering/cluster-02")
    await client.get("/v1/peering/missing")
    response = await client.get("/v1/agent/metrics", params={"format": "prometheus"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = _samples(response.text)
    assert samples['peering_http_requests_total{method="POST",route="/v1/peering/token",status="200"}'] == 1
    assert samples['peering_http_requests_total{method="GET",route="/v1/peering/{name}",status="200"}'] == 1
    assert samples['peering_http_requests_total{method="GET",route="/v1/peering/{name}",status="404"}'] == 1
    assert samples['peering_http_request_duration_seconds_count{method="GET",route="/v1/peering/{name}"}'] == 2
    assert samples['peering_healthy{partition="default",peer_name="cluster-02"}'] == 0  # INITIAL is not healthy
    assert samples['peering_peerings{state="INITIAL"}'] == 1
    assert samples['peering_heartbeats_sent_total{result="failed"}'] == 0  # present before the first one
    assert samples['peering_heartbeats_received_total{result="rejected"}'] == 0
    assert samples['peering_establish_total{result="peer_unreachable"}'] == 0
    assert "_created" not in response.text


async def test_metrics_json_and_bad_format(client: httpx.AsyncClient) -> None:
    """Without `format` the metrics come in Consul's JSON shape; an unknown format is a 400."""
    await client.post("/v1/peering/token", json={"PeerName": "cluster-02"})
    body = (await client.get("/v1/agent/metrics")).json()
    assert set(body) == {"Timestamp", "Gauges", "Counters", "Points", "Samples"}
    assert {"Name": "peering_healthy", "Value": 0.0, "Labels": {"peer_name": "cluster-02", "partition": "default"}} in (
        body["Gauges"]
    )
    bad = await client.get("/v1/agent/metrics", params={"format": "statsd"})
    assert (bad.status_code, bad.text) == (400, "Invalid format 'statsd': only prometheus is supported")


async def test_metrics_need_operator_read_with_acls(tmp_path: Path) -> None:
    """With ACLs on, metrics (which name every peering) need `operator:read`."""
    async for acl in _acl_cluster(tmp_path):
        await acl.policy("peering-read", 'peering = "read"')
        await acl.policy("ops", 'operator = "read"')
        reader = (await acl.token("peering-read"))["SecretID"]
        ops = (await acl.token("ops"))["SecretID"]
        statuses = []
        for secret in (None, reader, ops, MANAGEMENT_SECRET):
            async with acl.client(**({"X-Consul-Token": secret} if secret else {})) as c:
                statuses.append((await c.get("/v1/agent/metrics?format=prometheus")).status_code)
        assert statuses == [403, 403, 200, 200]


async def test_one_log_line_per_request_without_secrets(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Each request logs method, path (no query string), status and duration; a `?token=` never shows."""
    caplog.set_level(logging.DEBUG, logger="peering.http")  # answered requests log at debug, as in Consul
    secret = "5e5e5e5e-0000-4000-8000-000000000000"
    await client.get(f"/v1/peerings?token={secret}")
    await client.get("/v1/peering/nope", headers={"X-Consul-Token": secret})
    records = [r for r in caplog.records if r.name == "peering.http"]
    assert [(r.__dict__["method"], r.__dict__["path"], r.__dict__["status"]) for r in records] == [
        ("GET", "/v1/peerings", 200),
        ("GET", "/v1/peering/nope", 404),
    ]
    assert all(r.__dict__["duration_ms"] >= 0 for r in records)
    assert secret not in caplog.text


def test_json_log_lines_carry_the_fields(capsys: pytest.CaptureFixture[str]) -> None:
    """`--log-format json` writes one object per line with time, level, logger, message and fields."""
    logs.configure("info", "json")
    try:
        logging.getLogger("peering.test").info("peering created", extra={"peer_name": "x", "partition": "default"})
        logging.getLogger("peering.test").debug("hidden at info")
    finally:
        logging.getLogger().handlers.clear()
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "info"
    assert entry["logger"] == "peering.test"
    assert entry["message"] == "peering created"
    assert (entry["peer_name"], entry["partition"]) == ("x", "default")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry["time"])


def test_text_log_lines_are_one_line_with_key_values(capsys: pytest.CaptureFixture[str]) -> None:
    """The default text format puts the structured fields after the message as key=value."""
    logs.configure("warning", "text")
    try:
        logging.getLogger("peering.test").warning("peering failing", extra={"peer_name": "x"})
    finally:
        logging.getLogger().handlers.clear()
    line = capsys.readouterr().err.strip()
    assert re.fullmatch(r"\S+Z \[WARNING\] peering\.test: peering failing peer_name=x", line)
