"""The gate in front of the official Go client suite (interop/go, run by `make interop`).

`make test` runs `go test` in interop/go (the real `github.com/hashicorp/consul/api` against real
clusters) after `scripts/ensure-go.sh` found a Go toolchain. These tests pin that gate: without Go
the suite is a failure under CI and a loud skip elsewhere, an older Go than go.mod names is refused
(never swapped for a downloaded one), and the client stays pinned with its checksums.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ensure-go.sh"
MODULE = ROOT / "interop" / "go"
CLIENT = "github.com/hashicorp/consul/api"
CLIENT_VERSION = "v1.34.5"


def run_gate(*, ci: bool, go: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "GO")}
    if ci:
        env["CI"] = "true"
    if go is not None:
        env["GO"] = go
    return subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=30, check=False)


def fake_go(tmp_path: Path, version: str) -> Path:
    """A stand-in `go` whose `go env GOVERSION` answers `version`."""
    path = tmp_path / "go"
    path.write_text(f'#!/bin/sh\n[ "$1 $2" = "env GOVERSION" ] && echo {version}\n')
    path.chmod(0o755)
    return path


def test_missing_go_fails_under_ci(tmp_path: Path) -> None:
    result = run_gate(ci=True, go=str(tmp_path / "no-such-go"))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "cannot be skipped in CI" in result.stderr


def test_missing_go_is_a_loud_skip_elsewhere(tmp_path: Path) -> None:
    result = run_gate(ci=False, go=str(tmp_path / "no-such-go"))
    assert result.returncode == 0
    assert result.stdout == ""  # nothing to run: make says so and goes on
    assert "SKIPPING the official Go client suite" in result.stderr


@pytest.mark.parametrize("ci", [True, False])
def test_older_go_than_go_mod_is_refused(tmp_path: Path, ci: bool) -> None:
    result = run_gate(ci=ci, go=str(fake_go(tmp_path, "go1.20.1")))
    assert result.returncode == (1 if ci else 0)
    assert result.stdout == ""
    assert "is Go 1.20.1, interop/go needs Go 1.26" in result.stderr


def test_new_enough_go_is_used(tmp_path: Path) -> None:
    go = fake_go(tmp_path, "go1.99.0")
    result = run_gate(ci=True, go=str(go))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(go)


def test_the_machines_go_is_found() -> None:
    found = shutil.which("go") or ("/usr/local/go/bin/go" if Path("/usr/local/go/bin/go").exists() else None)
    if found is None:
        pytest.skip("no Go toolchain on this machine (CI fails in scripts/ensure-go.sh instead)")
    result = run_gate(ci=True)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).name == "go"


def test_the_official_client_is_pinned_with_checksums() -> None:
    requires = (MODULE / "go.mod").read_text()
    assert re.search(rf"^(require\s+|\s+){re.escape(CLIENT)} {re.escape(CLIENT_VERSION)}$", requires, re.MULTILINE)
    sums = (MODULE / "go.sum").read_text().splitlines()
    assert any(line.startswith(f"{CLIENT} {CLIENT_VERSION} h1:") for line in sums)
    assert any(line.startswith(f"{CLIENT} {CLIENT_VERSION}/go.mod h1:") for line in sums)
