"""Second opinion for pip-audit where it could not look packages up: PyPI's project JSON lists the
known vulnerabilities of a project's newest release, which is exact for every pin that is the newest.

Usage: python scripts/audit_latest.py requirements.lock  (exit 1 on a known vulnerability)
"""

from __future__ import annotations

import json
import sys
import urllib.request
from pathlib import Path


def main(lock: str) -> int:
    found, unknown, checked = [], [], 0
    for line in Path(lock).read_text().splitlines():
        name, _, version = line.strip().partition("==")
        if not version:
            continue
        url = f"https://pypi.org/pypi/{name}/json"
        try:
            with urllib.request.urlopen(url, timeout=20) as answer:
                project = json.load(answer)
        except OSError as exc:
            unknown.append(f"{name}=={version} (lookup failed: {exc})")
            continue
        if project["info"]["version"] != version:
            unknown.append(f"{name}=={version} (newest is {project['info']['version']})")
            continue
        checked += 1
        for vulnerability in project.get("vulnerabilities") or []:
            found.append(f"{name}=={version}: {vulnerability.get('id')} {vulnerability.get('summary') or ''}".strip())
    print(f"audit of newest releases: {checked} pins checked, {len(unknown)} not checkable, {len(found)} vulnerable")
    for entry in unknown:
        print(f"  not checked: {entry}")
    for entry in found:
        print(f"  VULNERABLE: {entry}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock"))
