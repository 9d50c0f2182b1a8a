#!/usr/bin/env bash
# Console API timings (BENCHMARKS.md "The console's API"): starts `zenml-authz serve` on a data
# set directory (policies/, schemas/, directory.yaml, as scripts/gen-data.py writes them), then
# GETs each path N times over fresh connections and prints a Markdown row per path: the median of
# curl's total time and the answer's size in bytes.
#
#   scripts/console-bench.sh BIN SET_DIR PATH...      e.g. /v1/what-can?who=user07436
#
# Environment: N (default 15), PORT (default 18190).
set -euo pipefail
BIN=$(realpath "$1"); SET=$2; shift 2
N=${N:-15}; PORT=${PORT:-18190}
LOG=$(mktemp)
cd "$SET"
"$BIN" serve --policies policies --schemas schemas --directory directory.yaml --shares-db :memory: \
  --listen "127.0.0.1:$PORT" --log error --request-deadline-ms 30000 >"$LOG" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -f "$LOG"' EXIT
until grep -q "listening on" "$LOG"; do
  kill -0 $PID 2>/dev/null || { cat "$LOG" >&2; exit 1; }
  sleep 0.2
done
BASE=http://127.0.0.1:$PORT
median_ms() { sort -n | awk '{a[NR] = $1} END {printf "%.1f ms", a[int((NR + 1) / 2)] * 1000}'; }
for path in "$@"; do
  size=$(curl -sf -o /dev/null -w '%{size_download}' "$BASE$path")
  time=$(for _ in $(seq "$N"); do curl -sf -o /dev/null -w '%{time_total}\n' "$BASE$path"; done | median_ms)
  echo "| \`$path\` | $time | $size |"
done
