#!/usr/bin/env bash
# Installs the AWS CLI (v1, from PyPI) into .venv-awscli (gitignored) for the wire-protocol
# end-to-end tests (test/aws/). Idempotent: does nothing when the pinned version is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: the CLI's request shapes and error texts are part of what the tests check.
AWSCLI_VERSION='1.46.2'
VENV='.venv-awscli'

if [ -x "${VENV}/bin/aws" ] && "${VENV}/bin/aws" --version 2>&1 | grep -q "aws-cli/${AWSCLI_VERSION} "; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "ensure-awscli: python3 is not installed; install Python 3.9+ with the venv module" >&2
  exit 1
fi

if [ ! -x "${VENV}/bin/python" ]; then
  python3 -m venv "${VENV}"
fi

"${VENV}/bin/pip" install --quiet --disable-pip-version-check "awscli==${AWSCLI_VERSION}"

if ! "${VENV}/bin/aws" --version >/dev/null 2>&1; then
  echo "ensure-awscli: pip finished but ${VENV}/bin/aws does not run" >&2
  exit 1
fi
