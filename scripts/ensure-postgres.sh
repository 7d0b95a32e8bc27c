#!/usr/bin/env bash
# Make sure a PostgreSQL server (15 or newer) is installed for the tests that start a throwaway one
# (tests/postgres.py). Debian keeps the server binaries in /usr/lib/postgresql/<major>/bin, off PATH.
# When none is found and we may (root with apt-get), installs Debian's `postgresql` package; the
# system cluster the package creates is left stopped (the tests never use it). Idempotent: a second
# run only looks. Exits non-zero only when no server can be had and CI=true (there the PostgreSQL
# tests must run, not skip).
set -euo pipefail

MIN_MAJOR=15

# the newest server directory with initdb and pg_ctl, of major MIN_MAJOR or newer ("" for none)
find_server() {
  local dir major best="" best_major=0
  for dir in /usr/lib/postgresql/*/bin "$(pg_config --bindir 2>/dev/null || true)" \
             "$(dirname "$(command -v initdb 2>/dev/null || echo /nonexistent/x)")"; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ] || continue
    major=$("$dir/postgres" --version 2>/dev/null | sed -n 's/^postgres (PostgreSQL) \([0-9][0-9]*\).*/\1/p')
    [ -n "$major" ] && [ "$major" -ge "$MIN_MAJOR" ] && [ "$major" -gt "$best_major" ] || continue
    best=$dir best_major=$major
  done
  echo "$best"
}

found=$(find_server)
if [ -n "$found" ]; then
  echo "ensure-postgres: PostgreSQL server found: $("$found/postgres" --version) in $found (nothing to do)"
  exit 0
fi

give_up() {
  echo "ensure-postgres: no PostgreSQL server >= $MIN_MAJOR, and $1: the PostgreSQL tests will be skipped" >&2
  if [ "${CI:-}" = true ]; then
    echo "ensure-postgres: CI=true, where the PostgreSQL tests must run: failing" >&2
    exit 1
  fi
  exit 0
}
[ "$(id -u)" = 0 ] || give_up "we are not root (cannot apt-get install postgresql)"
command -v apt-get >/dev/null 2>&1 || give_up "there is no apt-get here"

# the clusters that exist before we install, so that we only stop one the package creates now
before=$(pg_lsclusters -h 2>/dev/null | awk '{print $1 "/" $2}' || true)

echo "ensure-postgres: installing Debian's postgresql package (about 10 s)..."
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq -o DPkg::Lock::Timeout=300 --no-install-recommends postgresql >/dev/null

# The package creates a "main" cluster and, where services may start, starts it on 5432. The tests
# run their own server: stop the new one and keep it from starting at boot.
if command -v pg_lsclusters >/dev/null 2>&1; then
  pg_lsclusters -h 2>/dev/null | while read -r version name _port status _rest; do
    case " $before " in *" $version/$name "*) continue ;; esac
    if [ "$status" = online ]; then
      pg_ctlcluster "$version" "$name" stop && echo "ensure-postgres: stopped the package's cluster $version/$name"
    fi
    conf=/etc/postgresql/$version/$name/start.conf
    if [ -f "$conf" ] && grep -qx auto "$conf"; then
      echo manual >"$conf" && echo "ensure-postgres: cluster $version/$name set to start manually ($conf)"
    fi
  done
fi

found=$(find_server)
[ -n "$found" ] || give_up "the installed package has none (Debian's is older?)"
echo "ensure-postgres: installed $("$found/postgres" --version) in $found"
