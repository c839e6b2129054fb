#!/usr/bin/env bash
# PostgreSQL's server programs (initdb, pg_ctl, postgres), for the tests that start a throwaway
# cluster of their own (test/support/postgres-server.ts); no server is started here. Looked for in
# Debian's layout first, /usr/lib/postgresql/<major>/bin (the newest major that has all three),
# then on the PATH (the directory the PATH's initdb really lives in, symlinks resolved, so postgres
# finds its share/ files: PostgreSQL docs, "Installation from Source Code", relocatable installs).
# When missing, root installs Debian's postgresql package with apt-get; anyone else is told what to
# install. Prints the bin directory (absolute) on stdout, nothing else; progress goes to stderr.
# With ENSURE_TOOLS_CHECK_ONLY=1 (npm test's test runner) a missing server is an error, not an
# install.
set -euo pipefail

REQUIRED=(initdb pg_ctl postgres)

has_server_programs() {
  local program
  for program in "${REQUIRED[@]}"; do
    [ -x "$1/${program}" ] || return 1
  done
}

find_bin_dir() {
  local dir initdb
  # Newest major first: sort -V orders 9.6 < 10 < 16 where a plain sort would not.
  while IFS= read -r dir; do
    if [ -n "$dir" ] && has_server_programs "$dir"; then
      echo "$dir"
      return 0
    fi
  done < <(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V -r)
  if initdb="$(command -v initdb 2>/dev/null)"; then
    dir="$(dirname "$(readlink -f "$initdb")")"
    if has_server_programs "$dir"; then
      echo "$dir"
      return 0
    fi
  fi
  return 1
}

if bin_dir="$(find_bin_dir)"; then
  echo "$bin_dir"
  exit 0
fi

if [ "${ENSURE_TOOLS_CHECK_ONLY:-}" = 1 ]; then
  echo "ensure-postgres: PostgreSQL's server programs (${REQUIRED[*]}) are not installed; npm test installs them before its tests start (bash scripts/ensure-test-tools.sh)" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "ensure-postgres: PostgreSQL's server programs (${REQUIRED[*]}) are missing, and this is not root, so they are not installed here: install them (Debian: sudo apt-get install postgresql) and run npm test again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "ensure-postgres: PostgreSQL's server programs (${REQUIRED[*]}) are missing and there is no apt-get: install the PostgreSQL server with this system's package manager" >&2
  exit 1
fi

echo "== installing PostgreSQL with apt-get (first run only, ~1 min)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >&2
apt-get install -y -qq --no-install-recommends postgresql >&2
if ! bin_dir="$(find_bin_dir)"; then
  echo "ensure-postgres: apt-get finished but ${REQUIRED[*]} are still not in /usr/lib/postgresql/*/bin nor on the PATH" >&2
  exit 1
fi
echo "$bin_dir"
