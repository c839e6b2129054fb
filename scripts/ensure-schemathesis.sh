#!/usr/bin/env bash
# Installs schemathesis into .venv-schemathesis (gitignored), its own virtualenv so its
# dependencies never clash with moto's in .venv. Idempotent: does nothing when the pinned version
# is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: a new schemathesis release can generate new inputs or add checks; upgrade on purpose.
SCHEMATHESIS_VERSION='4.32.5'
VENV='.venv-schemathesis'

installed_version() {
  "${VENV}/bin/python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' \
    2>/dev/null || true
}

if [ -x "${VENV}/bin/schemathesis" ] && [ "$(installed_version)" = "${SCHEMATHESIS_VERSION}" ]; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "ensure-schemathesis: python3 is not installed; install Python 3.9+ with the venv module" >&2
  exit 1
fi

if [ ! -x "${VENV}/bin/python" ]; then
  python3 -m venv "${VENV}"
fi

"${VENV}/bin/pip" install --quiet --disable-pip-version-check \
  "schemathesis==${SCHEMATHESIS_VERSION}"

if [ "$(installed_version)" != "${SCHEMATHESIS_VERSION}" ] || [ ! -x "${VENV}/bin/schemathesis" ]; then
  echo "ensure-schemathesis: pip finished but ${VENV}/bin/schemathesis ${SCHEMATHESIS_VERSION} is missing" >&2
  exit 1
fi
