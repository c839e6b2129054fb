#!/usr/bin/env bash
# Installs every tool the test suite drives, before the test runner starts: `npm test` runs this
# as its pretest (so does .ci/run, through npm test). Each step is pinned, cached in its own
# gitignored place and skipped when already there, so a warm run takes a second or two and prints
# nothing; a first run prints a line on stderr for each install. Installing here rather than in a
# test's before() keeps helm's 5-to-8-minute build clear of the test runner's timeout, and keeps
# test files that run in parallel from installing the same tool at once.
#
# Needs: Go 1.26+ (helm is built from source), Python 3.11+ with the venv module (moto,
# schemathesis, the AWS CLI, hadolint), npm (the image's Node binary), openssl (installed here
# with apt-get when missing, as root) and PostgreSQL's server (scripts/ensure-postgres.sh installs
# it the same way).
set -euo pipefail
cd "$(dirname "$0")/.."

# openssl: test HTTPS servers get a throwaway certificate at test time (test/support/test-certificate.ts).
if ! command -v openssl >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-test-tools: openssl is missing, and this is not root, so it is not installed here: install it (Debian: sudo apt-get install openssl) and run npm test again" >&2
    exit 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure-test-tools: openssl is missing and there is no apt-get: install openssl with this system's package manager" >&2
    exit 1
  fi
  echo "== installing openssl with apt-get (first run only, ~30 s)" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends openssl >&2
  if ! command -v openssl >/dev/null 2>&1; then
    echo "ensure-test-tools: apt-get finished but openssl is still not on the PATH" >&2
    exit 1
  fi
fi

bash scripts/ensure-postgres.sh >/dev/null      # apt-get's postgresql: test/support/postgres-server.ts (stdout: its bin dir)
bash scripts/ensure-moto.sh                     # .venv/: the Secrets Manager store and fleet tests
bash scripts/ensure-schemathesis.sh             # .venv-schemathesis/: test/contract/
bash scripts/ensure-awscli.sh                   # .venv-awscli/: test/aws/
bash scripts/ensure-hadolint.sh                 # .venv-hadolint/: test/image/dockerfile.test.ts
bash scripts/ensure-image-node.sh >/dev/null    # .tools/node-*/: test/image/image-node.test.ts (stdout: its path)
bash scripts/ensure-helm.sh                     # .tools/bin/helm: test/helm/
