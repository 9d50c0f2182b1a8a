#!/usr/bin/env bash
# Prints the path of a Cerbos server binary, installing Cerbos' own npm package (`cerbos`, which
# brings the release binary for this platform) into target/cerbos first when it is missing.
# Used by scripts/question-load.sh to ask Cerbos the same question as the sidecar.
# Environment: CERBOS_VERSION (default 0.51.0, the newest on the npm registry when written).
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${CERBOS_VERSION:-0.51.0}
PREFIX=$PWD/target/cerbos/$VERSION
exec 9>"${TMPDIR:-/tmp}/zenml-authz-ensure-cerbos.lock"
flock 9
if [ ! -x "$PREFIX/node_modules/.bin/cerbos" ]; then
  mkdir -p "$PREFIX"
  npm install --prefix "$PREFIX" --no-audit --no-fund --silent "cerbos@$VERSION" >&2
fi
# The package's launcher is a Node script that runs the platform binary: use the binary itself.
BINARY=$(find "$PREFIX/node_modules/@cerbos" -maxdepth 2 -type f -name 'cerbos-*' -perm -u+x | head -1)
"$BINARY" --version >/dev/null
echo "$BINARY"
