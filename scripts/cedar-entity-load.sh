#!/usr/bin/env bash
# The Cedar API question of issue 22 under load (BENCHMARKS.md "The Cedar API with a
# request-scoped entity"): bob, a workspace developer through his team, updates a stack of
# production that the request carries in `additional_entities`, as Cedar API callers ask. Starts
# BIN on the bundled sources (decision cache off, so every request is evaluated; or
# CACHE=on), pins it to one core and wrk to the other, and prints wrk's summary for the question
# and for the server's own /healthz, ROUNDS times, interleaved.
#
#   scripts/cedar-entity-load.sh BIN        Environment: DURATION (s, 10), CONNECTIONS (32),
#                                           ROUNDS (3), CACHE (off), PORT (18195)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1")
DURATION=${DURATION:-10}; CONNECTIONS=${CONNECTIONS:-32}; ROUNDS=${ROUNDS:-3}
CACHE=${CACHE:-off}; PORT=${PORT:-18195}
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
taskset -c 1 "$BIN" serve --policies policies --schemas schemas --directory policies/directory.yaml \
  --shares-db :memory: --listen "127.0.0.1:$PORT" --cache "$CACHE" --watch off --log error \
  >"$WORK/serve.log" 2>&1 &
PID=$!
until grep -q "listening on" "$WORK/serve.log"; do sleep 0.1; done
production='{"type": "ZenML::Workspace", "id": "99baf825-b21e-442f-ba98-8246d8d9ac88"}'
stack='{"type": "ZenML::Stack", "id": "4b4b1c1e-0000-4000-8000-000000000001"}'
cat >"$WORK/body.json" <<JSON
{"principal": {"type": "ZenML::User", "id": "8a5e8598-b203-4344-948f-32f6cd6c6e30"},
 "action": {"type": "ZenML::Action", "id": "update"}, "resource": $stack,
 "additional_entities": [{"uid": $stack, "attrs": {"workspace": {"__entity": $production}}, "parents": [$production]}]}
JSON
cat >"$WORK/entity.lua" <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local file = io.open("$WORK/body.json")
wrk.body = file:read("*a")
file:close()
LUA
# The question must be answered, and allowed.
curl -sf -H 'Content-Type: application/json' --data-binary @"$WORK/body.json" \
  "http://127.0.0.1:$PORT/v1/is_authorized" | grep -q '"decision":"Allow"'
for round in $(seq "$ROUNDS"); do
  for what in entity healthz; do
    if [ $what = entity ]; then
      out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s "$WORK/entity.lua" "http://127.0.0.1:$PORT/v1/is_authorized")
    else
      out=$(taskset -c 0 wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "http://127.0.0.1:$PORT/healthz")
    fi
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    echo "round $round $what: ${rps} req/s, p50 $p50, p99 $p99, non-2xx ${non2xx:-0}"
  done
done
