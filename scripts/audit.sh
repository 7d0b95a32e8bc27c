#!/usr/bin/env bash
# Audit the locked dependencies (requirements.lock) for known vulnerabilities with pip-audit:
# exits non-zero when one is found. Packages the vulnerability service cannot look up are listed
# as skipped, not failed (on machines whose PyPI mirror lacks the per-release JSON API, that is all).
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/pip-audit --requirement requirements.lock --no-deps --disable-pip --progress-spinner off
.venv/bin/python scripts/audit_latest.py requirements.lock
