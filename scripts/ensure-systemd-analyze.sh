#!/usr/bin/env bash
# Prints the path of `systemd-analyze`, installing Debian's `systemd` package first when it is
# missing (as root, or with passwordless sudo; it fails with apt's message otherwise, never
# silently). Used by tests/deploy.rs to verify deploy/systemd/zenml-authz.service. `verify`
# reads unit files only: no running systemd is needed (containers, CI).
set -euo pipefail
exec 9>"${TMPDIR:-/tmp}/zenml-authz-ensure-systemd-analyze.lock"
flock 9
if ! command -v systemd-analyze >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends systemd >&2
fi
command -v systemd-analyze
