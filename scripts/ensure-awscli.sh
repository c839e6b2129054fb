#!/usr/bin/env bash
# The AWS CLI (v1, from PyPI) in .venv-awscli, for the wire-protocol end-to-end tests (test/aws/).
# Pinned: the CLI's request shapes and error texts are part of what the tests check.
set -euo pipefail
VERSION='1.46.2'
exec bash "$(dirname "$0")/ensure-pip-tool.sh" .venv-awscli "awscli==${VERSION}" awscli "${VERSION}" aws '~30 s'
