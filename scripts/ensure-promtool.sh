#!/usr/bin/env bash
# Prints the path of Prometheus' promtool, installing Debian's `prometheus` package first when
# it is missing (as root, or with passwordless sudo). Used by the observability tests, which run
# in parallel: the check and the install happen under one lock, and apt waits for dpkg's lock
# (another apt run on the machine) instead of failing.
set -euo pipefail
exec 9>"${TMPDIR:-/tmp}/zenml-authz-ensure-promtool.lock"
flock 9
if ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends prometheus >&2
fi
command -v promtool
