"""The `/docs` page renders in real headless Chromium with every outside host unreachable (SPEC §10)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cluster import running_cluster

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI (and `make test`) install Debian's chromium and set this, so that the test cannot be skipped there
REQUIRED = os.environ.get("PEERING_REQUIRE_BROWSER") == "1"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(CHROMIUM is None and not REQUIRED, reason="chromium is not installed"),
]

PEERING_PATHS = [
    "/v1/peering/token",
    "/v1/peering/establish",
    "/v1/peering/check",
    "/v1/peering/{name}",
    "/v1/peerings",
]


def _chromium(tmp_path: Path, url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None, "PEERING_REQUIRE_BROWSER=1 but chromium is not installed"
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        # nothing but 127.0.0.1 resolves: a page that needed a CDN would fail to render
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000", "--window-size=1280,1700", *extra, url,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=90, check=False)


def test_docs_render_the_peering_operations_offline(tmp_path: Path) -> None:
    """Swagger UI, loaded from the service's own assets, lists every peering operation."""
    with running_cluster(tmp_path / "data") as cluster:
        url = f"{cluster.http_url}/docs"
        dump = _chromium(tmp_path, url, "--dump-dom")
        shot = _chromium(tmp_path, url, f"--screenshot={tmp_path / 'docs.png'}")
    assert dump.returncode == 0, dump.stderr[-2000:]
    rendered = set(re.findall(r'class="opblock-summary-path" data-path="([^"]+)"', dump.stdout))
    assert set(PEERING_PATHS) <= rendered, rendered
    assert "/v1/acl/token" in rendered
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert (tmp_path / "docs.png").stat().st_size > 10_000
