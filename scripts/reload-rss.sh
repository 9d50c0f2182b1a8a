#!/usr/bin/env bash
# RSS of `zenml-authz serve` after its first load and after each of RELOADS reloads (the
# directory edited as scripts/edit-directory.py does, SIGHUP, RSS read WAIT seconds later):
# what BENCHMARKS.md reports as "RSS after reloads". Uses the release binary and a generated set (scripts/gen-data.py).
#
#   scripts/reload-rss.sh [SET]      SET: sample, large (default) or policies
#
# Environment: RELOADS (default 3), WAIT (s, default 8), PORT (default 18190); the allocator's
# MIMALLOC_PURGE_DELAY as deployed (0) unless set.
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:-large}
RELOADS=${RELOADS:-3}
WAIT=${WAIT:-8}
PORT=${PORT:-18190}
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-0}
python3 scripts/gen-data.py --sets "$SET" --if-stale >&2
[ -x target/release/zenml-authz ] || cargo build --release --locked >&2
WORK=$(mktemp -d /tmp/zenml-authz-rss.XXXXXX)
cp -r "target/bench-data/$SET/." "$WORK/"
ZENML_AUTHZ_TOKEN_SECRET=reload-rss-token-secret-0123456789abcdef target/release/zenml-authz serve --listen "127.0.0.1:$PORT" --policies "$WORK/policies" \
  --schemas "$WORK/schemas" --directory "$WORK/directory.yaml" --shares-db "$WORK/shares.db" \
  --watch off --log warn --log-format text >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
rss() { awk '/VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$PID/status"; }
sleep 2
echo "set $SET, MIMALLOC_PURGE_DELAY=$MIMALLOC_PURGE_DELAY: after the first load $(rss) MiB"
for i in $(seq "$RELOADS"); do
  python3 scripts/edit-directory.py "$WORK/directory.yaml" # a team's binding, added or removed
  kill -HUP "$PID"
  sleep "$WAIT"
  echo "after reload $i: $(rss) MiB"
done
