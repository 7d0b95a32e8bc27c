"""The benchmark's PostgreSQL rows (bench/postgres.py) when no server is installed: skipped with the
reason printed and in the report, except under CI=true, where that is an error (as in the tests)."""

from __future__ import annotations

from pathlib import Path

import pytest

import tests.postgres
from bench import postgres
from bench.load import LoadGenerator
from bench.procs import StartError
from bench.run import Bench, Plan


def no_server() -> Path:
    raise tests.postgres.PostgresMissingError("no PostgreSQL server 15 or newer is installed (test)")


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Bench:
    monkeypatch.setattr(tests.postgres, "find_bindir", no_server)
    monkeypatch.delenv("PEERING_TEST_PG_DSN", raising=False)
    return Bench(Plan.of(True), LoadGenerator(tmp_path, force_python=True), tmp_path, sqlite=False)


def test_without_a_server_the_rows_are_skipped_with_the_reason(
    bench: Bench, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CI", raising=False)
    postgres.measure(bench)
    reason = "PostgreSQL rows skipped: no PostgreSQL server 15 or newer is installed (test)"
    assert capsys.readouterr().out == reason + "\n"
    assert bench.data["postgres"] == {"skipped": reason}
    assert postgres.notes(bench) == [f"**{reason}**"]
    assert bench.rows == []
    assert bench.servers == []


def test_in_ci_a_missing_server_is_an_error(bench: Bench, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(StartError, match=r"^CI=true, where the PostgreSQL rows must run: no PostgreSQL server"):
        postgres.measure(bench)
    assert "postgres" not in bench.data
