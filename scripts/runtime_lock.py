"""Write requirements-run.lock: the pins of requirements.lock that the service needs to run (`make run`).

The runtime set is the `[project] dependencies` of pyproject.toml and everything they require, walked
through the metadata of the installed distributions with their markers (and extras) evaluated here; the
pins are the lines of requirements.lock, versions untouched. Run it where requirements.lock is installed
(the dev venv, or `make lock`'s fresh one), so the metadata is that of the pinned versions.

Usage: python scripts/runtime_lock.py [--check]   (--check: exit 1 if requirements-run.lock is stale)
"""

from __future__ import annotations

import sys
import tomllib
from collections.abc import Iterable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
HEADER = (
    "# The runtime pins only (make run installs these): written by scripts/runtime_lock.py from\n"
    "# requirements.lock, which pins the whole dev set. Regenerate with make lock, never by hand.\n"
)


class LockError(Exception):
    """The runtime set cannot be pinned from the lock (not installed here, or not pinned)."""


def runtime_names(dependencies: Iterable[str]) -> set[str]:
    """Canonical names of `dependencies` and of everything they require, transitively.

    Raises:
        LockError: one of them is not installed in this environment.
    """
    names: set[str] = set()
    visited: set[tuple[str, str]] = set()
    pending = [req for req in map(Requirement, dependencies) if req.marker is None or req.marker.evaluate()]
    while pending:
        requirement = pending.pop()
        name = canonicalize_name(requirement.name)
        names.add(name)
        for extra in {"", *requirement.extras}:
            if (name, extra) in visited:
                continue
            visited.add((name, extra))
            try:
                requires = metadata.requires(requirement.name) or []
            except metadata.PackageNotFoundError as exc:
                raise LockError(f"{requirement.name} is not installed here: run this in the dev venv") from exc
            for child in map(Requirement, requires):
                if child.marker is None or child.marker.evaluate({"extra": extra}):
                    pending.append(child)
    return names


def render(lock_text: str, pyproject_text: str) -> str:
    """The runtime lock's text: the header, then the lock's lines for the runtime set, in the lock's order.

    Raises:
        LockError: a runtime dependency is not installed here or has no pin in the lock.
    """
    wanted = runtime_names(tomllib.loads(pyproject_text)["project"]["dependencies"])
    pins = {}
    for line in lock_text.splitlines():
        name, sep, _ = line.strip().partition("==")
        if sep:
            pins[canonicalize_name(name)] = line.strip()
    missing = sorted(wanted - set(pins))
    if missing:
        raise LockError(f"not pinned by requirements.lock: {', '.join(missing)}")
    return HEADER + "".join(f"{line}\n" for name, line in pins.items() if name in wanted)


def main(argv: list[str]) -> int:
    target = ROOT / "requirements-run.lock"
    try:
        text = render((ROOT / "requirements.lock").read_text(), (ROOT / "pyproject.toml").read_text())
    except LockError as exc:
        print(f"runtime_lock: {exc}", file=sys.stderr)
        return 1
    if "--check" in argv:
        if not target.exists() or target.read_text() != text:
            print("requirements-run.lock is stale: run make lock (or python scripts/runtime_lock.py)", file=sys.stderr)
            return 1
        return 0
    target.write_text(text)
    print(f"wrote {target.name}: {text.count(chr(10)) - HEADER.count(chr(10))} runtime pins")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
