#!/usr/bin/env bash
# Installs moto's standalone server into .venv (gitignored) for the AWS Secrets Manager store
# tests. Idempotent: does nothing when .venv/bin/moto_server already exists.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: moto's behaviour (including its bugs the adapter works around) is part of the tests.
MOTO_VERSION='5.2.5'

if [ -x .venv/bin/moto_server ]; then
  exit 0
fi

if ! command -v python3 >/dev/null 2>&1; then
  echo "ensure-moto: python3 is not installed; install Python 3.9+ with the venv module" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi

.venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==${MOTO_VERSION}"

if [ ! -x .venv/bin/moto_server ]; then
  echo "ensure-moto: pip finished but .venv/bin/moto_server is missing" >&2
  exit 1
fi
