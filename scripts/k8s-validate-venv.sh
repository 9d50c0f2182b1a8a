#!/usr/bin/env bash
# Creates (once) and prints the path of a Python venv with `kubernetes-validate`, which checks
# manifests offline against the Kubernetes JSON schemas it bundles (every release since 1.x).
# Used by tests/deploy.rs. Cached under the cargo target directory, so reruns reuse it; the
# check and the install happen under one lock (the tests run in parallel).
#   K8S_VALIDATE_VERSION  kubernetes-validate release (default 1.37.0)
#   K8S_VALIDATE_VENV     where to put the venv (default $CARGO_TARGET_DIR/k8s-validate-venv-$version)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${K8S_VALIDATE_VERSION:-1.37.0}"
target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${K8S_VALIDATE_VENV:-$target/k8s-validate-venv-$version}"
marker="$venv/.zenml-authz-ready"
mkdir -p "$(dirname "$venv")"
exec 9>"$venv.lock"
flock 9
if [ ! -f "$marker" ]; then
  python="$(command -v python3 || command -v python)"
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "kubernetes-validate==$version" >&2
  "$venv/bin/kubernetes-validate" --version >&2
  touch "$marker"
fi
echo "$venv"
