#!/usr/bin/env bash
# Creates (once) and prints the path of a Python venv with a stock ZenML server, for the
# end-to-end test. Cached under target/ so repeated test runs and CI reruns reuse it.
#   ZENML_VERSION   zenml release to install (default 0.98.0)
#   ZENML_VENV      where to put the venv (default target/zenml-venv-$ZENML_VERSION)
set -euo pipefail
cd "$(dirname "$0")/.."
version="${ZENML_VERSION:-0.98.0}"
venv="${ZENML_VENV:-$PWD/target/zenml-venv-$version}"
marker="$venv/.zenml-authz-ready"
if [ ! -f "$marker" ]; then
  python="$(command -v python3 || command -v python)"
  rm -rf "$venv"
  "$python" -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check "zenml[server]==$version" >&2
  "$venv/bin/python" -c "import zenml, zenml.zen_server.rbac.zenml_cloud_rbac" >&2
  touch "$marker"
fi
echo "$venv"
