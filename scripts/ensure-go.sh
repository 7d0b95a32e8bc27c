#!/usr/bin/env bash
# Find the Go toolchain for the interop suite (interop/go, the official Consul Go client) and
# print its path on stdout. It must be at least the version interop/go/go.mod names.
# Missing or too old: under CI (CI=true) that is a failure (exit 1); elsewhere a message on
# stderr, nothing on stdout and exit 0, so `make test` says the suite was skipped and goes on.
# Nothing is downloaded: a Go toolchain comes from the machine (GO=…, PATH, or /usr/local/go).
set -euo pipefail
cd "$(dirname "$0")/.."

missing() {
  if [ "${CI:-}" = true ]; then
    echo "interop: $1; the Go suite (interop/go) cannot be skipped in CI" >&2
    exit 1
  fi
  echo "interop: $1; SKIPPING the official Go client suite (interop/go). Install Go and re-run make test." >&2
  exit 0
}

if [ -n "${GO:-}" ]; then  # an explicit choice (GO=/path/to/go) is the only one tried
  go_bin=$(command -v "$GO" 2>/dev/null || true)
  [ -n "$go_bin" ] || missing "GO=$GO is not a program"
else
  go_bin=$(command -v go 2>/dev/null || true)
  if [ -z "$go_bin" ] && [ -x /usr/local/go/bin/go ]; then
    go_bin=/usr/local/go/bin/go
  fi
  [ -n "$go_bin" ] || missing "no 'go' on PATH nor in /usr/local/go/bin"
fi

# go.mod's `go 1.X.Y` line is the oldest toolchain that builds the module (GOTOOLCHAIN=local:
# an older one is refused here rather than swapped for a downloaded one).
want=$(sed -n 's/^go \([0-9][0-9.]*\)$/\1/p' interop/go/go.mod)
have=$(GOTOOLCHAIN=local "$go_bin" env GOVERSION 2>/dev/null | sed 's/^go//')
[ -n "$have" ] || missing "$go_bin does not run"
oldest=$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -n1)
[ "$oldest" = "$want" ] || missing "$go_bin is Go $have, interop/go needs Go $want or newer"
echo "$go_bin"
