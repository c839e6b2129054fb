#!/usr/bin/env bash
# Builds helm from the Go module proxy into .tools/bin (gitignored) for the chart tests.
# Idempotent: does nothing when .tools/bin/helm is already the pinned version. With
# ENSURE_TOOLS_CHECK_ONLY=1 (npm test's test runner) a missing helm is an error, not a build.
set -euo pipefail
cd "$(dirname "$0")/.."

# Pinned: lint and template output are part of the tests. 3.22 needs Go 1.26 to build.
HELM_VERSION='v3.22.0'
# Kubernetes version of its client-go (v0.37 is 1.37): the release Makefile sets it with -ldflags,
# and without it helm assumes Kubernetes 1.20 and refuses the chart's kubeVersion.
HELM_K8S_MINOR='37'

HELM=.tools/bin/helm
if [ -x "$HELM" ] && [ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" = "$HELM_VERSION" ]; then
  exit 0
fi

if [ "${ENSURE_TOOLS_CHECK_ONLY:-}" = 1 ]; then
  echo "ensure-helm: $HELM ${HELM_VERSION} is not installed; npm test installs it before its tests start (bash scripts/ensure-test-tools.sh)" >&2
  exit 1
fi

if ! command -v go >/dev/null 2>&1; then
  echo "ensure-helm: go is not installed; install Go 1.26+ (helm ${HELM_VERSION} is built from source)" >&2
  exit 1
fi
go_version="$(go env GOVERSION)"   # e.g. go1.26.8
if ! printf '%s\n' "$go_version" | grep -Eq '^go(1\.(2[6-9]|[3-9][0-9])|[2-9])'; then
  echo "ensure-helm: helm ${HELM_VERSION} needs Go 1.26+ to build; found ${go_version}" >&2
  exit 1
fi

echo "== installing helm ${HELM_VERSION} from the Go module proxy into $HELM (first run only, ~5–8 min)" >&2

mkdir -p .tools/bin
LDFLAGS="-s -w -X helm.sh/helm/v3/internal/version.version=${HELM_VERSION} -X helm.sh/helm/v3/internal/version.metadata="
for pkg in pkg/chartutil pkg/lint/rules; do
  LDFLAGS+=" -X helm.sh/helm/v3/${pkg}.k8sVersionMajor=1 -X helm.sh/helm/v3/${pkg}.k8sVersionMinor=${HELM_K8S_MINOR}"
done
# From a cold module and build cache this takes 5 to 8 minutes on two cores, downloads included
# (7 measured on a busy machine). go's output (a line per module) is shown only when it fails.
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! GOBIN="$PWD/.tools/bin" CGO_ENABLED=0 go install -trimpath -ldflags "$LDFLAGS" "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}" >"$log" 2>&1; then
  grep -v '^go: downloading ' "$log" | tail -n 40 >&2
  echo "ensure-helm: go install helm.sh/helm/v3/cmd/helm@${HELM_VERSION} failed (output above)" >&2
  exit 1
fi

if [ "$("$HELM" version --template '{{.Version}}' 2>/dev/null)" != "$HELM_VERSION" ]; then
  echo "ensure-helm: go install finished but $HELM is not ${HELM_VERSION}" >&2
  exit 1
fi
