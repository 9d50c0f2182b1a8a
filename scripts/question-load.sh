#!/usr/bin/env bash
# The questions of issue 22 under wrk (BENCHMARKS.md "The Cedar API with a request-scoped
# entity" and "ZenML's batch of 20 different questions"), on the bundled sources with the
# decision cache off (every request evaluated; CACHE=on to compare). The sidecar is pinned to one
# core and wrk (one thread) to the other; each scenario runs DURATION seconds, ROUNDS times,
# interleaved:
#
#   entity    POST /v1/is_authorized: bob, a workspace developer through his team, updates a stack
#             of production that the request carries in `additional_entities` (Allow)
#   batch20   POST /v1/batch_is_authorized: bob updates 20 stacks, 15 of production (Allow), 5 of
#             staging (Deny), each item carrying its own stack
#   zenml1    POST /zenml/rbac/check_permissions: bob reads one pipeline of churn
#   zenml20   the same with 20 different questions: pipelines, models, artifacts, runs and the
#             project itself of churn, fraud and staging's sandbox, stacks and secrets (read)
#   healthz   GET /healthz: the server's own floor in the same run
#   healthz_flood  GET /healthz at one connection while CONNECTIONS others send batch20 (how
#             long another connection waits behind a flood of batches)
#   cerbos    Cerbos (its npm package, scripts/ensure-cerbos.sh; scripts/cerbos/ holds its policy
#             and config), pinned to the same core: POST /api/check/resources, the entity question
#             in Cerbos' terms (the caller sends bob's teams and the stack's workspace's developer
#             teams, which Cerbos cannot look up) (Allow)
#   cerbos20  the same with the batch20 stacks in one check (15 Allow, 5 Deny)
#   cerbos_healthz  Cerbos' own GET /_cerbos/health
#   nginx     nginx (scripts/ensure-browser.sh installs it where missing) answering GET / with a static 200 from
#             one worker, pinned to the same core: the host's own floor, no Rust and no tokio (at
#             one connection: how long this host's tail is for any server)
#
#   Each line: requests and decisions per second, wrk's p50 and p99, and the server's CPU time
#   (user + system, from /proc) per request.
#
#   scripts/question-load.sh BIN       Environment: SCENARIOS ("entity healthz"), DURATION (s, 10),
#                                      CONNECTIONS (32; 1 for one-connection latency), ROUNDS (3),
#                                      CACHE (off), PORT (18195; Cerbos takes the next two, nginx the third),
#                                      SHARES_DB (:memory:; a postgres:// URL for the share
#                                      store on PostgreSQL),
#                                      PIN (on; off: nothing pinned, wrk on two threads, as the
#                                      issue's table was measured)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1")
SCENARIOS=${SCENARIOS:-"entity healthz"}
DURATION=${DURATION:-10}; CONNECTIONS=${CONNECTIONS:-32}; ROUNDS=${ROUNDS:-3}
CACHE=${CACHE:-off}; PORT=${PORT:-18195}; PIN=${PIN:-on}; SHARES_DB=${SHARES_DB:-:memory:}
if [ "$PIN" = on ]; then SERVER_CPU=(taskset -c 1); LOAD_CPU=(taskset -c 0); THREADS=1
else SERVER_CPU=(); LOAD_CPU=(); THREADS=2; fi
WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; rm -rf "$WORK"' EXIT
"${SERVER_CPU[@]}" "$BIN" serve --policies policies --schemas schemas --directory policies/directory.yaml \
  --shares-db "$SHARES_DB" --listen "127.0.0.1:$PORT" --cache "$CACHE" --watch off --log error \
  >"$WORK/serve.log" 2>&1 &
PID=$!
until grep -q "listening on" "$WORK/serve.log"; do sleep 0.1; done
BASE=http://127.0.0.1:$PORT
CERBOS_PID=""
CERBOS=http://127.0.0.1:$((PORT + 1))
NGINX_PID=""
NGINX=http://127.0.0.1:$((PORT + 3))
if [[ " $SCENARIOS " == *" nginx "* ]]; then
  NGINX_BIN=$(command -v nginx || ls /usr/sbin/nginx 2>/dev/null || scripts/ensure-browser.sh | tail -1)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<NGINX
worker_processes 1;
daemon off;
master_process off;
error_log $WORK/nginx/error.log;
pid $WORK/nginx/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx; proxy_temp_path $WORK/nginx; fastcgi_temp_path $WORK/nginx;
  uwsgi_temp_path $WORK/nginx; scgi_temp_path $WORK/nginx;
  server { listen 127.0.0.1:$((PORT + 3)); location / { return 200 "ok"; } }
}
NGINX
  "${SERVER_CPU[@]}" "$NGINX_BIN" -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 &
  NGINX_PID=$!
  until curl -sf "$NGINX/" >/dev/null; do sleep 0.1; done
fi
trap 'kill $PID $NGINX_PID 2>/dev/null; rm -rf "$WORK"' EXIT
if [[ " $SCENARIOS " == *" cerbos"* ]]; then
  "${SERVER_CPU[@]}" "$(scripts/ensure-cerbos.sh)" server --config=scripts/cerbos/conf.yaml \
    --set=server.httpListenAddr="127.0.0.1:$((PORT + 1))" --set=server.grpcListenAddr="127.0.0.1:$((PORT + 2))" \
    --log-level=error >"$WORK/cerbos.log" 2>&1 &
  CERBOS_PID=$!
  trap 'kill $PID $CERBOS_PID $NGINX_PID 2>/dev/null; rm -rf "$WORK"' EXIT
  until curl -sf "$CERBOS/_cerbos/health" >/dev/null; do sleep 0.1; done
fi
python3 - "$WORK" <<'PY'
import json, sys
work = sys.argv[1]
production = {"type": "ZenML::Workspace", "id": "99baf825-b21e-442f-ba98-8246d8d9ac88"}
staging = {"type": "ZenML::Workspace", "id": "d5320975-d92d-4b35-9413-9b848998b5bf"}
bob = {"type": "ZenML::User", "id": "8a5e8598-b203-4344-948f-32f6cd6c6e30"}
def stack(i, workspace):
    uid = {"type": "ZenML::Stack", "id": f"4b4b1c1e-0000-4000-8000-{i:012d}"}
    return uid, {"uid": uid, "attrs": {"workspace": {"__entity": workspace}}, "parents": [workspace]}
def item(i, workspace):
    uid, entity = stack(i, workspace)
    return {"principal": bob, "action": {"type": "ZenML::Action", "id": "update"}, "resource": uid,
            "additional_entities": [entity]}
json.dump(item(1, production), open(f"{work}/entity.json", "w"))
# The same stacks for Cerbos: bob's teams, and each stack's workspace with its developer teams.
teams = {production["id"]: ["ml-eng"], staging["id"]: ["platform"]}
def cerbos(stacks):
    return {"requestId": "question-load", "principal": {"id": bob["id"], "roles": ["user"], "attr": {"teams": ["ml-eng"]}},
            "resources": [{"actions": ["update"], "resource": {"kind": "stack", "id": stack(i, w)[0]["id"],
                "attr": {"workspace": w["id"], "workspace_developer_teams": teams[w["id"]]}}} for i, w in stacks]}
json.dump(cerbos([(1, production)]), open(f"{work}/cerbos.json", "w"))
json.dump(cerbos([(i, production if i < 15 else staging) for i in range(20)]), open(f"{work}/cerbos20.json", "w"))
json.dump({"requests": [item(i, production if i < 15 else staging) for i in range(20)]}, open(f"{work}/batch20.json", "w"))
churn, fraud, sandbox = "dccff1d9-afc7-4c24-b5e8-e887447c69c0", "45f60d6d-243d-4e8e-8b96-0ae5e16357de", "42f33105-edf6-4bee-8385-c589bb25ded0"
uuid = lambda i: f"5c5c5c5c-0000-4000-8000-{i:012d}"
questions = [f"{p}:{t}/{uuid(i * 10 + j)}" for i, p in enumerate([churn, fraud, sandbox])
             for j, t in enumerate(["pipeline", "model", "artifact", "pipeline_run", "model_version"])]
questions += [f"project/{churn}", f"project/{sandbox}", f"stack/{uuid(90)}", f"secret/{uuid(91)}", f"{churn}:pipeline"]
json.dump([f"{churn}:pipeline/{uuid(1)}"], open(f"{work}/zenml1.json", "w"))
json.dump(questions, open(f"{work}/zenml20.json", "w"))
PY
# ZenML's own login as the production workspace (client credentials), as a ZenML server does.
TOKEN=$(curl -sf "$BASE/zenml/auth/login" -d client_id=99baf825-b21e-442f-ba98-8246d8d9ac88 \
  -d "client_secret=$(python3 -c 'import json; print(json.load(open("tests/e2e/try-out-credentials.json"))["workspaces"]["production"])')" \
  -d grant_type=client_credentials -d audience=question-load | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
ZENML_URL="$BASE/zenml/rbac/check_permissions?user_id=8a5e8598-b203-4344-948f-32f6cd6c6e30&action=read"
lua() { # body file, extra header -> a wrk script
  cat <<LUA
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
${2:-}
local file = io.open("$1")
wrk.body = file:read("*a")
file:close()
LUA
}
lua "$WORK/entity.json" >"$WORK/entity.lua"
lua "$WORK/cerbos.json" >"$WORK/cerbos.lua"
lua "$WORK/cerbos20.json" >"$WORK/cerbos20.lua"
lua "$WORK/batch20.json" >"$WORK/batch20.lua"
lua "$WORK/zenml1.json" "wrk.headers[\"Authorization\"] = \"Bearer $TOKEN\"" >"$WORK/zenml1.lua"
lua "$WORK/zenml20.json" "wrk.headers[\"Authorization\"] = \"Bearer $TOKEN\"" >"$WORK/zenml20.lua"
# Each question must be answered as expected first.
curl -sf -H 'Content-Type: application/json' --data-binary @"$WORK/entity.json" "$BASE/v1/is_authorized" | grep -q '"decision":"Allow"'
curl -sf -H 'Content-Type: application/json' --data-binary @"$WORK/batch20.json" "$BASE/v1/batch_is_authorized" \
  | python3 -c 'import json, sys; d = [r["decision"] for r in json.load(sys.stdin)["results"]]; assert d == ["Allow"] * 15 + ["Deny"] * 5, d'
curl -sf -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' --data-binary @"$WORK/zenml20.json" "$ZENML_URL" \
  | python3 -c 'import json, sys; d = json.load(sys.stdin); assert len(d) == 20 and 0 < sum(d.values()) < 20, d'
if [ -n "$CERBOS_PID" ]; then
  curl -sf -H 'Content-Type: application/json' --data-binary @"$WORK/cerbos20.json" "$CERBOS/api/check/resources" \
    | python3 -c 'import json, sys; d = [r["actions"]["update"] for r in json.load(sys.stdin)["results"]]; assert d == ["EFFECT_ALLOW"] * 15 + ["EFFECT_DENY"] * 5, d'
fi
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
for round in $(seq "$ROUNDS"); do
  for what in $SCENARIOS; do
    case $what in
      entity) args=(-s "$WORK/entity.lua" "$BASE/v1/is_authorized"); n=1 ;;
      batch20) args=(-s "$WORK/batch20.lua" "$BASE/v1/batch_is_authorized"); n=20 ;;
      zenml1) args=(-s "$WORK/zenml1.lua" "$ZENML_URL"); n=1 ;;
      zenml20) args=(-s "$WORK/zenml20.lua" "$ZENML_URL"); n=20 ;;
      healthz) args=("$BASE/healthz"); n=0 ;;
      healthz_flood) args=("$BASE/healthz"); n=0 ;;
      cerbos) args=(-s "$WORK/cerbos.lua" "$CERBOS/api/check/resources"); n=1 ;;
      cerbos20) args=(-s "$WORK/cerbos20.lua" "$CERBOS/api/check/resources"); n=20 ;;
      cerbos_healthz) args=("$CERBOS/_cerbos/health"); n=0 ;;
      nginx) args=("$NGINX/"); n=0 ;;
    esac
    served=$PID; [[ $what == cerbos* ]] && served=$CERBOS_PID; [ "$what" = nginx ] && served=$NGINX_PID
    before=$(cpu_ticks "$served")
    if [ "$what" = healthz_flood ]; then
      "${LOAD_CPU[@]}" wrk -t1 -c"$CONNECTIONS" -d"$((DURATION + 2))s" -s "$WORK/batch20.lua" \
        "$BASE/v1/batch_is_authorized" >/dev/null &
      FLOOD=$!
      sleep 1
      out=$("${LOAD_CPU[@]}" wrk -t1 -c1 -d"${DURATION}s" --latency "${args[@]}")
      wait "$FLOOD"
    else
      out=$("${LOAD_CPU[@]}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "${args[@]}")
    fi
    after=$(cpu_ticks "$served")
    requests=$(echo "$out" | awk '/requests in/ {print $1}')
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    p50=$(echo "$out" | awk '$1 == "50%" {print $2}')
    p99=$(echo "$out" | awk '$1 == "99%" {print $2}')
    non2xx=$(echo "$out" | awk '/Non-2xx/ {print $4}')
    decisions=$(python3 -c "print(round($rps * $n))")
    # The server's CPU time (user + system, all its threads) per request: less at the mercy of
    # the host's other load than the rate.
    cpu=$(python3 -c "print(round(($after - $before) * 1e6 / $(getconf CLK_TCK) / max($requests, 1), 1))")
    echo "round $round $what: $rps req/s, $decisions decisions/s, p50 $p50, p99 $p99, non-2xx ${non2xx:-0}, server CPU $cpu µs/request"
  done
done
