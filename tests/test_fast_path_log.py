"""The request log and metrics around the fast path: answered requests at DEBUG (as Consul), answers of 400 and
above at INFO, every request counted under its route's template whoever answered it, no query string logged."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import httpx
import pytest

from peering.app import create_app, open_runtime
from peering.settings import Settings

pytestmark = pytest.mark.anyio

MANAGEMENT = "6b0a5c1e-9f5e-4a63-8d2b-1f4e6a7c9d10"
SECRET = "5e5e5e5e-0000-4000-8000-000000000000"


@pytest.mark.parametrize("acl", [False, True])
async def test_levels_and_counts_of_fast_and_full_answers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, acl: bool
) -> None:
    caplog.set_level(logging.DEBUG, logger="peering.http")
    extra: dict[str, Any] = {"acl_enabled": True, "acl_initial_management_token": MANAGEMENT} if acl else {}
    settings = Settings(data_dir=tmp_path / "d", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0", **extra)
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        headers = {"X-Consul-Token": MANAGEMENT}
        async with httpx.AsyncClient(transport=transport, base_url="http://test", headers=headers) as client:
            assert (await client.post("/v1/peering/token", json={"PeerName": "web"})).status_code == 200  # fast
            assert (await client.get(f"/v1/peering/web?token={MANAGEMENT}")).status_code == 200  # fast
            assert (await client.get("/v1/peering/web?index=0")).status_code == 200  # full app
            assert (await client.get("/v1/peering/nope")).status_code == 404  # full app, after the fast path
            refused = await client.get(f"/v1/peerings?token={SECRET}")
            assert refused.status_code == (403 if acl else 200)
        samples = runtime.cluster.metrics.registry
    records = [r for r in caplog.records if r.name == "peering.http"]
    seen = [(r.levelno, r.__dict__["method"], r.__dict__["path"], r.__dict__["status"]) for r in records]
    last = (logging.INFO, "GET", "/v1/peerings", 403) if acl else (logging.DEBUG, "GET", "/v1/peerings", 200)
    assert seen == [
        (logging.DEBUG, "POST", "/v1/peering/token", 200),
        (logging.DEBUG, "GET", "/v1/peering/web", 200),
        (logging.DEBUG, "GET", "/v1/peering/web", 200),
        (logging.INFO, "GET", "/v1/peering/nope", 404),
        last,
    ]
    assert all(r.__dict__["duration_ms"] >= 0 and r.__dict__["client"] == "127.0.0.1" for r in records)
    assert SECRET not in caplog.text
    assert MANAGEMENT not in caplog.text

    def count(method: str, route: str, status: int) -> float | None:
        labels = {"method": method, "route": route, "status": str(status)}
        return samples.get_sample_value("peering_http_requests_total", labels)

    assert count("POST", "/v1/peering/token", 200) == 1
    assert count("GET", "/v1/peering/{name}", 200) == 2  # one from the fast path, one from the full app
    assert count("GET", "/v1/peering/{name}", 404) == 1
    assert count("GET", "/v1/peerings", 403 if acl else 200) == 1


async def test_nothing_is_logged_for_answered_requests_at_info(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """At the default level (INFO) a served read writes no line; a 404 still does."""
    caplog.set_level(logging.INFO, logger="peering.http")
    settings = Settings(data_dir=tmp_path / "d", http_addr="127.0.0.1:0", peering_addr="127.0.0.1:0")
    async with open_runtime(settings, advertise_addresses=["127.0.0.1:1"], background=False) as runtime:
        transport = httpx.ASGITransport(app=create_app(runtime))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            for _ in range(3):
                assert (await client.get("/v1/peerings")).status_code == 200
            assert (await client.get("/v1/nothing-here")).status_code == 404
    assert [(r.levelno, r.__dict__["status"]) for r in caplog.records if r.name == "peering.http"] == [
        (logging.INFO, 404)
    ]
