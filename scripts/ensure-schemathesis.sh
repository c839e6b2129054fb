#!/usr/bin/env bash
# schemathesis in .venv-schemathesis, for test/contract/schemathesis.test.ts. Pinned: a new
# release can generate new inputs or add checks; upgrade on purpose.
set -euo pipefail
VERSION='4.32.5'
exec bash "$(dirname "$0")/ensure-pip-tool.sh" .venv-schemathesis "schemathesis==${VERSION}" schemathesis "${VERSION}" schemathesis '~40 s'
