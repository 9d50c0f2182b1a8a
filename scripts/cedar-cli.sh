#!/usr/bin/env bash
# Prints the path of Cedar's own command-line tool (`cedar`, crate cedar-policy-cli), installing it
# first into target/tools at exactly the version of the cedar-policy crate in Cargo.lock, so that
# `zenml-authz export` output is checked by the same Cedar the sidecar links. Idempotent: nothing is
# built when target/tools already holds that version. Building it takes several CPU-minutes.
# Used by tests/cedar_cli.rs, which may run beside other callers: check and install under one lock.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="$root/target/tools"
version="$(awk '/^name = "cedar-policy"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$root/Cargo.lock")"
if [ -z "$version" ]; then
  echo "cedar-cli.sh: no cedar-policy in $root/Cargo.lock" >&2
  exit 1
fi
mkdir -p "$tools"
exec 9>"$tools/.cedar-cli.lock"
flock 9
cedar="$tools/bin/cedar"
installed() {
  [ -x "$cedar" ] && grep -q "^\"cedar-policy-cli $version " "$tools/.crates.toml" 2>/dev/null
}
if ! installed; then
  echo "cedar-cli.sh: installing cedar-policy-cli $version into $tools (takes several minutes)" >&2
  cargo install --locked --version "=$version" cedar-policy-cli --root "$tools" >&2
  installed || { echo "cedar-cli.sh: $cedar is not cedar-policy-cli $version" >&2; exit 1; }
fi
echo "$cedar"
