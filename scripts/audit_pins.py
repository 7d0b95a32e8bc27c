"""Audit every pin of requirements.lock for known vulnerabilities, and say which pins were audited.

Two sources, each exact for what it covers:
1. pip-audit, which asks PyPI for each pinned release's vulnerabilities (`/pypi/<name>/<version>/json`);
   where that per-release data is not served, it skips the pin (and still prints "No known
   vulnerabilities found", which is why this script exists);
2. for the pins pip-audit skipped, PyPI's project data (`/pypi/<name>/json`), whose vulnerability list
   is that of the project's newest release: it audits a pin only when the pin is that release.

It prints a count per source, the pins neither could audit and why, and every vulnerability found.

Usage: python scripts/audit_pins.py [requirements.lock] [--require-all]
Exit: 1 on a known vulnerability, or (with --require-all) when a pin could not be audited; else 0.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Lookup = Callable[[str], tuple[str, list[dict[str, Any]]]]  # name -> (newest version, its vulnerabilities)


@dataclass(frozen=True)
class Pin:
    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass
class Report:
    pins: int = 0
    by_pip_audit: list[Pin] = field(default_factory=list)
    by_newest: list[Pin] = field(default_factory=list)
    skip_reasons: Counter[str] = field(default_factory=Counter)  # why pip-audit skipped, with counts
    not_audited: list[str] = field(default_factory=list)  # "<pin or line>: <why>"
    vulnerable: list[str] = field(default_factory=list)

    def exit_code(self, *, require_all: bool) -> int:
        return 1 if self.vulnerable or (require_all and self.not_audited) else 0


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(lock_text: str) -> tuple[dict[str, Pin], list[str]]:
    """The `name==version` pins by canonical name, and the other requirement lines (which are not audited)."""
    pins: dict[str, Pin] = {}
    others: list[str] = []
    for raw in lock_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if match:
            pins[canonical(match[1])] = Pin(match[1], match[2])
        else:
            others.append(line)
    return pins, others


def run_pip_audit(command: Sequence[str]) -> tuple[list[dict[str, Any]], str | None]:
    """pip-audit's `dependencies` (JSON format), or no entries and why it gave none."""
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)  # noqa: S603
    try:
        dependencies = json.loads(result.stdout)["dependencies"]
    except (ValueError, KeyError, TypeError):
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        return [], f"pip-audit failed (exit {result.returncode}): {tail}"
    return list(dependencies), None


def pypi_newest(name: str) -> tuple[str, list[dict[str, Any]]]:
    """PyPI's newest release of `name` and the known vulnerabilities of that release."""
    with urllib.request.urlopen(f"https://pypi.org/pypi/{name}/json", timeout=20) as answer:
        project = json.load(answer)
    return str(project["info"]["version"]), list(project.get("vulnerabilities") or [])


def _vulnerability(pin: Pin, entry: dict[str, Any]) -> str:
    fixed = entry.get("fix_versions") or entry.get("fixed_in") or []
    fix = f" (fixed in {', '.join(map(str, fixed))})" if fixed else ""
    return f"{pin}: {entry.get('id', '?')}{fix}"


def audit(lock_text: str, dependencies: list[dict[str, Any]], failure: str | None, lookup: Lookup) -> Report:
    """Combine pip-audit's answer with the newest-release data for the pins it did not audit."""
    pins, others = read_pins(lock_text)
    report = Report(pins=len(pins))
    report.not_audited += [f"{line}: not a name==version pin" for line in others]
    skipped: dict[str, str] = dict.fromkeys(pins, failure or "pip-audit did not report it")
    for entry in dependencies:
        key = canonical(str(entry.get("name", "")))
        pin = pins.get(key)
        if pin is None:
            continue
        if "skip_reason" in entry:
            # "Dependency not found on PyPI and could not be audited: aiosqlite (0.22.1)" -> counted without the tail
            skipped[key] = str(entry["skip_reason"]).split(f": {entry.get('name')} (")[0]
            continue
        del skipped[key]
        report.by_pip_audit.append(pin)
        report.vulnerable += [_vulnerability(pin, vuln) for vuln in entry.get("vulns") or []]
    for key, reason in skipped.items():
        pin = pins[key]
        report.skip_reasons[reason] += 1
        try:
            newest, vulnerabilities = lookup(pin.name)
        except (OSError, ValueError, KeyError) as exc:
            report.not_audited.append(f"{pin}: skipped by pip-audit; PyPI lookup failed ({exc})")
            continue
        if newest != pin.version:
            report.not_audited.append(f"{pin}: skipped by pip-audit; not the newest release ({newest})")
            continue
        report.by_newest.append(pin)
        report.vulnerable += [_vulnerability(pin, vuln) for vuln in vulnerabilities]
    return report


def format_report(report: Report, lock: str) -> str:
    skipped = sum(report.skip_reasons.values())
    reasons = "; ".join(f"{count}: {reason}" for reason, count in report.skip_reasons.most_common())
    audited = len(report.by_pip_audit) + len(report.by_newest)
    lines = [
        f"audit of {lock}: {report.pins} pins",
        f"  pip-audit (PyPI per-release data): {len(report.by_pip_audit)} audited, {skipped} skipped"
        + (f" ({reasons})" if reasons else ""),
        f"  PyPI newest-release data, for the skipped pins: {len(report.by_newest)} audited",
        f"  audited: {audited} of {report.pins} pins; not audited: {len(report.not_audited)}; "
        f"vulnerable: {len(report.vulnerable)}",
    ]
    lines += [f"  NOT AUDITED: {entry}" for entry in report.not_audited]
    lines += [f"  VULNERABLE: {entry}" for entry in report.vulnerable]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    require_all = "--require-all" in argv
    lock = next((arg for arg in argv if not arg.startswith("--")), "requirements.lock")
    with open(lock, encoding="utf-8") as handle:
        lock_text = handle.read()
    command = [sys.executable, "-m", "pip_audit", "--requirement", lock, "--no-deps", "--disable-pip"]
    dependencies, failure = run_pip_audit([*command, "--progress-spinner", "off", "--format", "json"])
    report = audit(lock_text, dependencies, failure, pypi_newest)
    print(format_report(report, lock))
    return report.exit_code(require_all=require_all)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
