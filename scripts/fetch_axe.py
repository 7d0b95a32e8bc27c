"""Fetch axe-core, pinned, from its npm package into a cache outside the repository; print the path of
`axe.min.js`. The console's accessibility test (tests/test_ui_browser.py) injects it into each page.

The tarball comes through npm itself (`npm pack`, from the registry npm is configured for) and must
match the pinned integrity (sha512, as the registry publishes it) before anything is unpacked, and the
script inside it its pinned SHA-256, which a cached copy must still have.

Usage: python scripts/fetch_axe.py   (cache: $PEERING_CACHE_DIR, else $XDG_CACHE_HOME/peering, else ~/.cache/peering)
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

PACKAGE = "axe-core"
VERSION = "4.14.1"
INTEGRITY = "sha512-FHfa+lmNjQZfJz1q8wKqIDwC6DExcHt/pkjNQb09a3NPjCKg2rhu5qb2S4r76ASyFNNtuFooJpZe37OgudVGtQ=="
MEMBER = "package/axe.min.js"
SCRIPT_SHA256 = "29348999450cdf2849a8e70b7912fc2da85a849da39c0d0d5394f51d4a9ed95c"  # of MEMBER in that tarball: the cached copy is checked against it


class FetchError(Exception):
    """axe-core could not be had here (no npm, the registry refused, or a checksum did not match)."""


def cache_dir() -> Path:
    explicit = os.environ.get("PEERING_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "peering"


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def fetch(target: Path | None = None) -> Path:
    """The path of a verified `axe.min.js` of the pinned version, fetched once.

    Raises:
        FetchError: npm is missing or failed, or the tarball does not match the pinned integrity.
    """
    folder = (target or cache_dir()) / f"{PACKAGE}-{VERSION}"
    script = folder / "axe.min.js"
    if script.is_file() and hashlib.sha256(script.read_bytes()).hexdigest() == SCRIPT_SHA256:
        return script
    npm = shutil.which("npm")
    if npm is None:
        raise FetchError("npm is not installed: it fetches axe-core for the accessibility test")
    with tempfile.TemporaryDirectory() as scratch:
        command = [npm, "pack", f"{PACKAGE}@{VERSION}", "--json", "--pack-destination", scratch]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=False, cwd=scratch)  # noqa: S603
        if result.returncode != 0:
            raise FetchError(f"npm pack {PACKAGE}@{VERSION} failed: {result.stderr.strip()[-500:]}")
        filename = json.loads(result.stdout)[0]["filename"]
        tarball = (Path(scratch) / filename).read_bytes()
        if _integrity(tarball) != INTEGRITY:
            raise FetchError(f"{filename} does not match the pinned integrity {INTEGRITY}")
        with tarfile.open(Path(scratch) / filename) as archive:
            member = archive.extractfile(MEMBER)
            if member is None:
                raise FetchError(f"{filename} has no {MEMBER}")
            body = member.read()
    if hashlib.sha256(body).hexdigest() != SCRIPT_SHA256:
        raise FetchError(f"{MEMBER} in {filename} does not match the pinned SHA-256 {SCRIPT_SHA256}")
    folder.mkdir(parents=True, exist_ok=True)
    partial = folder / "axe.min.js.partial"
    partial.write_bytes(body)
    partial.replace(script)  # never a half-written copy in the cache
    return script


def main() -> int:
    try:
        print(fetch())
    except FetchError as exc:
        print(f"fetch_axe: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
