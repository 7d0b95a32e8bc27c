#!/usr/bin/env bash
# Audit every pin of requirements.lock for known vulnerabilities (scripts/audit_pins.py): pip-audit,
# then PyPI's newest-release data for the pins pip-audit skips (where PyPI's per-release data is not
# served, that is all of them). It prints how many pins each source audited and names every pin that
# neither could. Exit 1 on a known vulnerability; with AUDIT_REQUIRE_ALL=1, also when a pin was not audited.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/audit_pins.py requirements.lock ${AUDIT_REQUIRE_ALL:+--require-all}
