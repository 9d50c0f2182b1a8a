#!/usr/bin/env bash
# Prints the paths of Chromium and nginx (one per line) for the dashboard test (tests/dashboard.rs),
# installing Debian's `chromium` and `nginx-light` packages first where missing (as root, or with
# passwordless sudo). Test binaries may run this at once: the check and the install happen under
# one lock, and apt waits for dpkg's lock instead of failing. nginx is only run by the tests, on
# their own ports and config: the package's own service is not started.
set -euo pipefail
exec 9>"${TMPDIR:-/tmp}/zenml-authz-ensure-browser.lock"
flock 9
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ "${#missing[@]}" -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  # No service start inside the install (the package's nginx would take port 80).
  policy=/usr/sbin/policy-rc.d
  created_policy=""
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
    $sudo chmod 755 "$policy"
    created_policy=1
  fi
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends "${missing[@]}" >&2
  [ -z "$created_policy" ] || $sudo rm -f "$policy"
fi
command -v chromium
command -v nginx 2>/dev/null || echo /usr/sbin/nginx
