"""scripts/audit_pins.py: every pin of the lock is either audited (by pip-audit or by PyPI's
newest-release data) or named as not audited; nothing is silently skipped."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
LOCK = "aiosqlite==0.22.1\nFastAPI==0.165.0\n# a comment\nzope.interface==7.0  # trailing comment\n"
NOT_FOUND = "Dependency not found on PyPI and could not be audited"


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_pins", ROOT / "scripts" / "audit_pins.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


audit_pins = _script()


def _skip(name: str, version: str) -> dict[str, Any]:
    return {"name": name, "skip_reason": f"{NOT_FOUND}: {name} ({version})"}


def _newest(table: dict[str, Any]) -> Any:
    def lookup(name: str) -> tuple[str, list[dict[str, Any]]]:
        answer = table[name]
        if isinstance(answer, BaseException):
            raise answer
        return answer  # type: ignore[no-any-return]

    return lookup


def _no_lookup(name: str) -> tuple[str, list[dict[str, Any]]]:
    raise AssertionError(f"looked up {name}")


def test_pins_audited_by_pip_audit_need_no_lookup() -> None:
    dependencies = [
        {"name": "aiosqlite", "version": "0.22.1", "vulns": []},
        {"name": "fastapi", "version": "0.165.0", "vulns": [{"id": "PYSEC-1", "fix_versions": ["0.166"]}]},
        {"name": "zope-interface", "version": "7.0", "vulns": []},
    ]
    report = audit_pins.audit(LOCK, dependencies, None, _no_lookup)
    assert [str(pin) for pin in report.by_pip_audit] == ["aiosqlite==0.22.1", "FastAPI==0.165.0", "zope.interface==7.0"]
    assert report.vulnerable == ["FastAPI==0.165.0: PYSEC-1 (fixed in 0.166)"]
    assert report.not_audited == []
    assert report.exit_code(require_all=True) == 1


def test_skipped_pins_fall_back_to_the_newest_release_data_and_the_rest_are_named() -> None:
    dependencies = [_skip("aiosqlite", "0.22.1"), _skip("fastapi", "0.165.0"), _skip("zope-interface", "7.0")]
    lookup = _newest(
        {
            "aiosqlite": ("0.22.1", []),
            "FastAPI": ("0.170.0", []),
            "zope.interface": OSError("HTTP Error 404: Not Found"),
        }
    )
    report = audit_pins.audit(LOCK, dependencies, None, lookup)
    assert [str(pin) for pin in report.by_newest] == ["aiosqlite==0.22.1"]
    assert report.not_audited == [
        "FastAPI==0.165.0: skipped by pip-audit; not the newest release (0.170.0)",
        "zope.interface==7.0: skipped by pip-audit; PyPI lookup failed (HTTP Error 404: Not Found)",
    ]
    assert report.skip_reasons == {NOT_FOUND: 3}
    assert (report.exit_code(require_all=False), report.exit_code(require_all=True)) == (0, 1)
    text = audit_pins.format_report(report, "requirements.lock")
    assert text.splitlines()[:4] == [
        "audit of requirements.lock: 3 pins",
        f"  pip-audit (PyPI per-release data): 0 audited, 3 skipped (3: {NOT_FOUND})",
        "  PyPI newest-release data, for the skipped pins: 1 audited",
        "  audited: 1 of 3 pins; not audited: 2; vulnerable: 0",
    ]
    assert "  NOT AUDITED: FastAPI==0.165.0: skipped by pip-audit; not the newest release (0.170.0)" in text


def test_a_vulnerable_newest_release_fails_the_audit() -> None:
    lookup = _newest({"aiosqlite": ("0.22.1", [{"id": "GHSA-x", "fixed_in": []}])})
    report = audit_pins.audit("aiosqlite==0.22.1\n", [_skip("aiosqlite", "0.22.1")], None, lookup)
    assert report.vulnerable == ["aiosqlite==0.22.1: GHSA-x"]
    assert report.exit_code(require_all=False) == 1


def test_lines_that_are_not_pins_are_named_not_audited() -> None:
    lock = "-e .\nrequests>=2\naiosqlite==0.22.1 --hash=sha256:00\n"
    report = audit_pins.audit(lock, [], None, _no_lookup)
    assert report.pins == 0
    assert report.not_audited == [
        "-e .: not a name==version pin",
        "requests>=2: not a name==version pin",
        "aiosqlite==0.22.1 --hash=sha256:00: not a name==version pin",
    ]
    assert report.exit_code(require_all=True) == 1


@pytest.mark.parametrize(
    ("stdout", "stderr", "code", "expected"),
    [
        (json.dumps({"dependencies": [_skip("a", "1")], "fixes": []}), "", 0, ([_skip("a", "1")], None)),
        ("", "boom\nERROR: no network\n", 1, ([], "pip-audit failed (exit 1): ERROR: no network")),
        ("not json", "", 2, ([], "pip-audit failed (exit 2): no output")),
    ],
)
def test_pip_audit_runs_as_a_process(stdout: str, stderr: str, code: int, expected: Any) -> None:
    program = f"import sys; sys.stdout.write({stdout!r}); sys.stderr.write({stderr!r}); sys.exit({code})"
    assert audit_pins.run_pip_audit([sys.executable, "-c", program]) == expected


def test_a_failed_pip_audit_still_audits_through_the_newest_release_data() -> None:
    report = audit_pins.audit(
        "aiosqlite==0.22.1\n", [], "pip-audit failed (exit 1): x", _newest({"aiosqlite": ("0.22.1", [])})
    )
    assert [str(pin) for pin in report.by_newest] == ["aiosqlite==0.22.1"]
    assert report.skip_reasons == {"pip-audit failed (exit 1): x": 1}
