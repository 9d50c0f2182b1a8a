#!/usr/bin/env bash
# Prints the path of Prometheus' promtool, installing Debian's `prometheus` package first when
# it is missing (as root, or with passwordless sudo). Used by the observability tests.
set -euo pipefail
if ! command -v promtool >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  $sudo apt-get install -y -qq --no-install-recommends prometheus >&2
fi
command -v promtool
