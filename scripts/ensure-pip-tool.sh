#!/usr/bin/env bash
# ensure-pip-tool.sh VENV REQUIREMENT DISTRIBUTION VERSION BINARY [ABOUT]
# Installs REQUIREMENT (e.g. 'moto[server]==5.2.5') from PyPI into its own virtualenv VENV
# (gitignored), so tools' dependencies never clash. Idempotent: does nothing when DISTRIBUTION is
# installed there at VERSION and VENV/bin/BINARY exists. The ensure-<tool>.sh scripts pin these;
# ABOUT (e.g. '~1 min') is how long a first install takes, for the progress line on stderr.
# With ENSURE_TOOLS_CHECK_ONLY=1 (set by `npm test` for its test runner), a missing tool is an
# error rather than an install: npm test installs every tool before its tests start.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -ne 5 ] && [ "$#" -ne 6 ]; then
  echo "usage: $0 VENV REQUIREMENT DISTRIBUTION VERSION BINARY [ABOUT]" >&2
  exit 2
fi
venv="$1" requirement="$2" distribution="$3" version="$4" binary="$5" about="${6:-}"

installed_version() {
  "${venv}/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
    "${distribution}" 2>/dev/null || true
}

if [ -x "${venv}/bin/${binary}" ] && [ "$(installed_version)" = "${version}" ]; then
  exit 0
fi

if [ "${ENSURE_TOOLS_CHECK_ONLY:-}" = 1 ]; then
  echo "ensure ${distribution}: ${venv}/bin/${binary} ${version} is not installed; npm test installs it before its tests start (bash scripts/ensure-test-tools.sh)" >&2
  exit 1
fi

# The pinned tools need Python 3.11+ (schemathesis 4 does; moto and the AWS CLI 3.10+).
if ! command -v python3 >/dev/null 2>&1 ||
  ! python3 -c 'import sys, venv, ensurepip; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then
  echo "ensure ${distribution}: needs python3 3.11+ with the venv module (Debian: apt-get install python3 python3-venv); found: $(python3 --version 2>&1 || echo none)" >&2
  exit 1
fi

echo "== installing ${distribution} ${version} from PyPI into ${venv}/ (first run only${about:+, ${about}})" >&2

if [ ! -x "${venv}/bin/python" ]; then
  python3 -m venv "${venv}"
fi

"${venv}/bin/pip" install --quiet --disable-pip-version-check "${requirement}"

if [ "$(installed_version)" != "${version}" ] || [ ! -x "${venv}/bin/${binary}" ]; then
  echo "ensure ${distribution}: pip finished but ${venv}/bin/${binary} ${version} is missing" >&2
  exit 1
fi
