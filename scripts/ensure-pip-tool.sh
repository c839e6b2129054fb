#!/usr/bin/env bash
# ensure-pip-tool.sh VENV REQUIREMENT DISTRIBUTION VERSION BINARY
# Installs REQUIREMENT (e.g. 'moto[server]==5.2.5') from PyPI into its own virtualenv VENV
# (gitignored), so tools' dependencies never clash. Idempotent: does nothing when DISTRIBUTION is
# installed there at VERSION and VENV/bin/BINARY exists. The ensure-<tool>.sh scripts pin these.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$#" -ne 5 ]; then
  echo "usage: $0 VENV REQUIREMENT DISTRIBUTION VERSION BINARY" >&2
  exit 2
fi
venv="$1" requirement="$2" distribution="$3" version="$4" binary="$5"

installed_version() {
  "${venv}/bin/python" -c 'import importlib.metadata as m, sys; print(m.version(sys.argv[1]))' \
    "${distribution}" 2>/dev/null || true
}

if [ -x "${venv}/bin/${binary}" ] && [ "$(installed_version)" = "${version}" ]; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "ensure ${distribution}: python3 is not installed; install Python 3.9+ with the venv module" >&2
  exit 1
fi

if [ ! -x "${venv}/bin/python" ]; then
  python3 -m venv "${venv}"
fi

"${venv}/bin/pip" install --quiet --disable-pip-version-check "${requirement}"

if [ "$(installed_version)" != "${version}" ] || [ ! -x "${venv}/bin/${binary}" ]; then
  echo "ensure ${distribution}: pip finished but ${venv}/bin/${binary} ${version} is missing" >&2
  exit 1
fi
