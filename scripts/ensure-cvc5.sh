#!/usr/bin/env bash
# Prints the path of the cvc5 SMT solver that `zenml-authz verify` runs (through cedar-policy-symcc),
# installing Debian's `cvc5` package first when it is missing (as root, or with passwordless sudo).
# `$CVC5`, when set to an executable, wins. Used by tests/verify.rs, whose tests run in parallel:
# the check and the install happen under one lock, and apt waits for dpkg's lock (another apt run
# on the machine) instead of failing.
set -euo pipefail
if [ -n "${CVC5:-}" ] && [ -x "$CVC5" ]; then
  echo "$CVC5"
  exit 0
fi
exec 9>"${TMPDIR:-/tmp}/zenml-authz-ensure-cvc5.lock"
flock 9
if ! command -v cvc5 >/dev/null 2>&1; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq >&2
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends cvc5 >&2
fi
command -v cvc5
