#!/usr/bin/env bash
# moto's standalone server in .venv, a real Secrets Manager-compatible endpoint for the AWS store
# tests. Pinned: moto's behaviour (including its bugs the adapter works around) is part of the tests.
set -euo pipefail
VERSION='5.2.5'
exec bash "$(dirname "$0")/ensure-pip-tool.sh" .venv "moto[server]==${VERSION}" moto "${VERSION}" moto_server '~2 min'
