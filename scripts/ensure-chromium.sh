#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the docs-page browser test (tests/test_docs_browser.py).
# Installs it with apt-get when missing and we may (root); otherwise says why the test will be skipped.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "chromium is not installed and cannot be installed here (needs root and apt-get): the browser test is skipped" >&2
  exit 0
fi
echo "installing Debian's chromium for the browser test (about a minute)..." >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends chromium >/dev/null
