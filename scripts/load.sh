#!/usr/bin/env bash
# HTTP load harness (BENCHMARKS.md): builds release, starts `zenml-authz serve` on a generated
# data set (scripts/gen-data.py), logs in as the data set's workspace, and drives it with `oha`:
#
#   healthz         GET  /healthz (the floor: HTTP stack and load generator, no decision; opt-in)
#   cedar_single    POST /v1/is_authorized (Cedar API, one stored principal and resource)
#   zenml_single    POST /zenml/rbac/check_permissions with 1 resource (a project-scoped instance)
#   zenml_batch20   POST /zenml/rbac/check_permissions with 20 resources (a ZenML list page)
#   allowed_ids     GET  /zenml/rbac/allowed_resource_ids (a type with shared instances)
#
# each first at full speed (closed loop, CONNECTIONS connections, DURATION seconds), then
# rate-limited at half the rate just measured (open loop, latency corrected: the p99 target),
# with the decision cache on (identical requests: cache hits) and off (every check evaluated).
# For each run: req/s, decisions/s, p50/p99/max latency, non-200 answers, the server's CPU
# (cores used, from /proc/<pid>/stat) and RSS. Then a reload under load: the directory file is
# edited (a team's binding added: scripts/edit-directory.py) and SIGHUP sent while `oha` runs; reports the time to the new revision and whether
# every request was answered. Everything talks to 127.0.0.1 only.
#
#   scripts/load.sh [SET...]        SETs: sample large policies (default: all three)
#
# Environment: DURATION (s, default 10), CONNECTIONS (default 40, ZenML's thread pool),
# PORT (default 18180), CACHE_MODES ("on off"), SCENARIOS (default all four; `healthz` too),
# RATE (req/s of the rate-limited run instead of half the measured maximum),
# SERVER_CPUS / LOADGEN_CPUS (pin the sidecar / oha with taskset, e.g. 1 and 0),
# SKIP_BUILD=1, OUT (default target/bench-results). Needs: cargo, python3, curl, oha
# (installed with `cargo install oha --locked` when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-40}
PORT=${PORT:-18180}
CACHE_MODES=${CACHE_MODES:-"on off"}
SCENARIOS=${SCENARIOS:-"cedar_single zenml_single zenml_batch20 allowed_ids"}
OUT=${OUT:-$ROOT/target/bench-results}
SETS=("$@")
[ ${#SETS[@]} -eq 0 ] && SETS=(sample large policies)
BASE=http://127.0.0.1:$PORT
BIN=$ROOT/target/release/zenml-authz
# As deployed (deploy/Dockerfile): the allocator returns a replaced snapshot's pages at once.
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-0}
mkdir -p "$OUT"
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
REPORT=$OUT/load-$STAMP.md
RESULTS=$OUT/load-$STAMP.jsonl
WORK=$(mktemp -d /tmp/zenml-authz-load.XXXXXX)
SERVER_PID=""

cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT

OHA=$(command -v oha || true)
[ -z "$OHA" ] && [ -x "$HOME/.cargo/bin/oha" ] && OHA=$HOME/.cargo/bin/oha
if [ -z "$OHA" ]; then
  echo "oha not found; installing it (cargo install oha --locked)" >&2
  cargo install oha --locked >&2
  OHA=$HOME/.cargo/bin/oha
fi

if [ "${SKIP_BUILD:-0}" != 1 ]; then
  cargo build --release --locked >&2
fi

machine() {
  echo "- date: $(date -u '+%Y-%m-%d %H:%M:%S UTC')"
  echo "- machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(free -g | awk '/Mem:/ {print $2}') GiB RAM, $(uname -sr)"
  echo "- load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "- oha: $("$OHA" --version 2>/dev/null | head -1); zenml-authz: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || echo '+uncommitted')"
  echo "- settings: DURATION=${DURATION}s CONNECTIONS=$CONNECTIONS, load generator on the same machine${SERVER_CPUS:+, sidecar pinned to CPU $SERVER_CPUS}${LOADGEN_CPUS:+, oha pinned to CPU $LOADGEN_CPUS}"
}

# meta.json field -> shell value
meta() { python3 -c 'import json,sys; m=json.load(open(sys.argv[1])); print(eval(sys.argv[2], {"m": m, "json": json}))' "$1" "$2"; }

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_mib() { awk -v f="$2" '$1 == f":" {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

start_server() { # set_dir cache
  local dir=$1 cache=$2
  rm -f "$WORK"/shares.db*
  cp "$dir/shares.db" "$WORK/shares.db"
  ZENML_AUTHZ_TOKEN_SECRET="load-harness-token-secret-$STAMP" \
  ${SERVER_CPUS:+taskset -c "$SERVER_CPUS"} "$BIN" serve --listen "127.0.0.1:$PORT" \
    --policies "$WORK/set/policies" --schemas "$WORK/set/schemas" --directory "$WORK/set/directory.yaml" \
    --shares-db "$WORK/shares.db" --cache "$cache" --watch off --log warn --log-format text \
    >"$WORK/server.log" 2>&1 &
  SERVER_PID=$!
  local t0=$SECONDS
  until curl -sf "$BASE/readyz" >/dev/null 2>&1; do
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      echo "the server exited:" >&2
      cat "$WORK/server.log" >&2
      exit 1
    fi
    if [ $((SECONDS - t0)) -gt 300 ]; then
      echo "the server is not ready after 300 s" >&2
      exit 1
    fi
    sleep 0.2
  done
}

stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# oha JSON summary -> "rps p50_ms p99_ms max_ms non200 total"
summarize() {
  python3 - "$1" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["summary"]
lat = r.get("latencyPercentiles", {})
codes = r.get("statusCodeDistribution", {})
ok = codes.get("200", 0)
# requests still in flight when the duration ends are "aborted due to deadline": not failures
errors = {k: v for k, v in r.get("errorDistribution", {}).items() if k != "aborted due to deadline"}
non200 = sum(codes.values()) - ok + sum(errors.values())
ms = lambda v: (v or 0) * 1000
rps = ok / s["total"] if s.get("total") else 0
print(f'{rps:.0f} {ms(lat.get("p50")):.3f} {ms(lat.get("p99")):.3f} {ms(s.get("slowest")):.3f} {non200} {ok + non200}')
if errors:
    print(f"oha errors: {errors}", file=sys.stderr)
EOF
}

# run_oha name extra_args... : runs oha, measures the server's CPU and RSS, appends a row
run_oha() {
  local label=$1 decisions_per_req=$2
  shift 2
  local json=$WORK/oha.json
  local t0 c0 t1 c1
  c0=$(cpu_ticks "$SERVER_PID")
  t0=$(date +%s.%N)
  ${LOADGEN_CPUS:+taskset -c "$LOADGEN_CPUS"} "$OHA" --no-tui --output-format json -c "$CONNECTIONS" -z "${DURATION}s" \
    -H "Authorization: Bearer $TOKEN" -H "content-type: application/json" "$@" >"$json"
  t1=$(date +%s.%N)
  c1=$(cpu_ticks "$SERVER_PID")
  local cores
  cores=$(python3 -c "print(f'{($c1 - $c0) / $(getconf CLK_TCK) / ($t1 - $t0):.2f}')")
  read -r rps p50 p99 max non200 total < <(summarize "$json")
  local rss
  rss=$(rss_mib "$SERVER_PID" VmRSS)
  local dps=$((rps * decisions_per_req))
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s | %s | %s |\n' \
    "$SET" "$label" "$CACHE" "$MODE" "$rps" "$dps" "$p50" "$p99" "$max" "$non200" "$total" "$cores" "$rss" | tee -a "$REPORT"
  printf '{"set":"%s","scenario":"%s","cache":"%s","mode":"%s","rps":%s,"decisions_per_s":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"non200":%s,"requests":%s,"server_cores":%s,"rss_mib":%s}\n' \
    "$SET" "$label" "$CACHE" "$MODE" "$rps" "$dps" "$p50" "$p99" "$max" "$non200" "$total" "$cores" "$rss" >>"$RESULTS"
  LAST_RPS=$rps
}

scenario() { # name -> runs full speed and half rate
  local name=$1 url method body n
  case $name in
    healthz) # the floor: the same HTTP stack and load generator, no decision
      url="$BASE/healthz"; method=GET; n=0; body="" ;;
    cedar_single)
      url="$BASE/v1/is_authorized"; method=POST; n=1
      body=$(meta "$META" 'json.dumps(m["cedar"])') ;;
    zenml_single)
      url="$BASE/zenml/rbac/check_permissions?user_id=$SINGLE_USER&action=$SINGLE_ACTION"; method=POST; n=1
      body=$SINGLE_BODY ;;
    zenml_batch20)
      url="$BASE/zenml/rbac/check_permissions?user_id=$(meta "$META" 'm["batch"]["user"]')&action=$(meta "$META" 'm["batch"]["action"]')"
      method=POST; n=20
      body=$(meta "$META" 'json.dumps(m["batch"]["resources"])') ;;
    allowed_ids)
      url="$BASE/zenml/rbac/allowed_resource_ids?user_id=$(meta "$META" 'm["allowed_ids"]["user"]')&action=$(meta "$META" 'm["allowed_ids"]["action"]')&resource=$(meta "$META" 'm["allowed_ids"]["resource"]')"
      method=GET; n=1; body="" ;;
  esac
  # one request first: it must succeed
  local code
  if [ "$method" = POST ]; then
    code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" -d "$body" "$url")
  else
    code=$(curl -s -o "$WORK/first.json" -w '%{http_code}' -H "Authorization: Bearer $TOKEN" "$url")
  fi
  if [ "$code" != 200 ]; then
    echo "$name: HTTP $code: $(head -c 300 "$WORK/first.json")" >&2
    exit 1
  fi
  local args=(-m "$method")
  [ "$method" = POST ] && args+=(-d "$body")
  MODE=max
  run_oha "$name" "$n" "${args[@]}" "$url"
  local half=$((LAST_RPS / 2))
  [ "$half" -lt 1 ] && half=1
  [ -n "${RATE:-}" ] && half=$RATE
  MODE="rate $half/s"
  run_oha "$name" "$n" -q "$half" --latency-correction "${args[@]}" "$url"
}

reload_under_load() { # while zenml_single runs (cache off), edit the directory, SIGHUP, time it
  local before after t0 t1 json=$WORK/oha-reload.json
  before=$(curl -s "$BASE/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])')
  ${LOADGEN_CPUS:+taskset -c "$LOADGEN_CPUS"} "$OHA" --no-tui --output-format json -c "$CONNECTIONS" -z "${DURATION}s" -m POST \
    -H "Authorization: Bearer $TOKEN" -H "content-type: application/json" -d "$SINGLE_BODY" \
    "$BASE/zenml/rbac/check_permissions?user_id=$SINGLE_USER&action=$SINGLE_ACTION" >"$json" &
  local oha_pid=$!
  sleep 2
  python3 scripts/edit-directory.py "$WORK/set/directory.yaml" # a team's binding, added
  t0=$(date +%s%N)
  kill -HUP "$SERVER_PID"
  while :; do
    after=$(curl -s "$BASE/readyz" | python3 -c 'import json,sys; print(json.load(sys.stdin)["revision"])' 2>/dev/null || true)
    [ -n "$after" ] && [ "$after" != "$before" ] && break
    if [ $(($(date +%s%N) - t0)) -gt 120000000000 ]; then
      echo "no new revision 120 s after SIGHUP" >&2
      break
    fi
    sleep 0.01
  done
  t1=$(date +%s%N)
  wait "$oha_pid"
  read -r rps p50 p99 max non200 total < <(summarize "$json")
  local ms=$(((t1 - t0) / 1000000))
  printf '| %s | SIGHUP -> new revision while serving zenml_single | %s ms | %s req/s | %s | %s | %s | %s/%s |\n' \
    "$SET" "$ms" "$rps" "$p50" "$p99" "$max" "$non200" "$total" | tee -a "$REPORT"
  printf '{"set":"%s","scenario":"reload_under_load","reload_ms":%s,"rps":%s,"p50_ms":%s,"p99_ms":%s,"max_ms":%s,"non200":%s,"requests":%s}\n' \
    "$SET" "$ms" "$rps" "$p50" "$p99" "$max" "$non200" "$total" >>"$RESULTS"
}

{
  echo "# zenml-authz HTTP load run $STAMP"
  echo
  machine
  echo
} | tee "$REPORT"

RELOAD_ROWS=()
for SET in "${SETS[@]}"; do
  DIR=$ROOT/target/bench-data/$SET
  python3 scripts/gen-data.py --sets "$SET" --if-stale >&2
  rm -rf "$WORK/set"
  mkdir -p "$WORK/set"
  cp -r "$DIR/policies" "$DIR/schemas" "$DIR/directory.yaml" "$WORK/set/"
  META=$DIR/meta.json
  WS=$(meta "$META" 'm["workspace"]')
  KEY=$(meta "$META" 'm["enrollment_key"]')
  # the single check: the first project-scoped instance among the set's questions
  SINGLE_USER=$(meta "$META" 'next(q["user"] for q in m["questions"] if ":" in q["resource"] and "/" in q["resource"])')
  SINGLE_ACTION=$(meta "$META" 'next(q["action"] for q in m["questions"] if ":" in q["resource"] and "/" in q["resource"])')
  SINGLE_BODY=$(meta "$META" 'json.dumps([next(q["resource"] for q in m["questions"] if ":" in q["resource"] and "/" in q["resource"])])')
  for CACHE in $CACHE_MODES; do
    t0=$(date +%s%N)
    start_server "$DIR" "$CACHE"
    ready_ms=$((($(date +%s%N) - t0) / 1000000))
    TOKEN=$(curl -sf -X POST "$BASE/zenml/auth/login" \
      --data-urlencode grant_type=client_credentials --data-urlencode "client_id=$WS" \
      --data-urlencode "client_secret=$KEY" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
    {
      echo
      echo "## $SET, cache $CACHE (ready ${ready_ms} ms after start; RSS at start $(rss_mib "$SERVER_PID" VmRSS) MiB)"
      echo
      echo "| set | scenario | cache | mode | req/s | decisions/s | p50 ms | p99 ms | max ms | non-200/total | server CPU (cores) | server RSS MiB |"
      echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
    } | tee -a "$REPORT"
    for s in $SCENARIOS; do
      scenario "$s"
    done
    if [ "$CACHE" = off ] && [ "$SET" != sample ]; then
      {
        echo
        echo "| set | reload | time to new revision | req/s during | p50 ms | p99 ms | max ms | non-200/total |"
        echo "|---|---|---|---|---|---|---|---|"
      } | tee -a "$REPORT"
      reload_under_load
      echo "peak RSS (VmHWM) of the server after the reload: $(rss_mib "$SERVER_PID" VmHWM) MiB" | tee -a "$REPORT"
    fi
    echo "server RSS at the end: $(rss_mib "$SERVER_PID" VmRSS) MiB, peak $(rss_mib "$SERVER_PID" VmHWM) MiB" | tee -a "$REPORT"
    stop_server
  done
done
echo
echo "report: $REPORT"
echo "rows:   $RESULTS"
