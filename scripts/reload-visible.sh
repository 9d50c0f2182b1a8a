#!/usr/bin/env bash
# How long a directory edit takes to be served: `zenml-authz serve` on a generated set, the
# directory edited as scripts/edit-directory.py does (a team's binding, added or removed),
# SIGHUP, then the seconds until `/v1/status` shows the new revision; RELOADS times. Also the
# server's own `memberships settled` lines (the share store's part of each load, before the
# new snapshot is published).
#
#   scripts/reload-visible.sh BIN [SET] [STORE]    SET: large (default), policies or huge (d);
#                                                  STORE: sqlite (default) or postgres (a
#                                                  database of its own on 127.0.0.1:5432,
#                                                  dropped and made anew)
#
# Environment: RELOADS (default 2), PORT (default 18600).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "$1")
SET=${2:-large}
STORE=${3:-sqlite}
RELOADS=${RELOADS:-2}
PORT=${PORT:-18600}
python3 scripts/gen-data.py --sets "$SET" --if-stale >&2
WORK=$(mktemp -d /tmp/zenml-authz-reload-visible.XXXXXX)
cp -r "target/bench-data/$SET/." "$WORK/"
case $STORE in
  sqlite) DB=$WORK/shares.db ;;
  postgres)
    psql -h 127.0.0.1 -U postgres -d test -qc "DROP DATABASE IF EXISTS reload_visible" -c "CREATE DATABASE reload_visible"
    DB=postgres://postgres@127.0.0.1:5432/reload_visible ;;
  *) echo "STORE: sqlite or postgres" >&2; exit 2 ;;
esac
ZENML_AUTHZ_TOKEN_SECRET=reload-visible-token-secret-0123456789abcdef MIMALLOC_PURGE_DELAY=0 "$BIN" serve \
  --listen "127.0.0.1:$PORT" --policies "$WORK/policies" --schemas "$WORK/schemas" \
  --directory "$WORK/directory.yaml" --shares-db "$DB" --watch off --log info --log-format json \
  >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true; wait $PID 2>/dev/null || true; rm -rf "$WORK"' EXIT
until curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1; do sleep 0.2; done
revision() { curl -sf "http://127.0.0.1:$PORT/v1/status" | python3 -c 'import json, sys; print(json.load(sys.stdin)["revision"])'; }
for i in $(seq "$RELOADS"); do
  before=$(revision)
  python3 scripts/edit-directory.py "$WORK/directory.yaml"
  start=$(date +%s.%N)
  kill -HUP "$PID"
  while [ "$(revision)" = "$before" ]; do sleep 0.05; done
  echo "set $SET, $STORE: reload $i served after $(python3 -c "print(round($(date +%s.%N) - $start, 2))") s"
done
python3 - "$WORK/server.log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        record = json.loads(line)
    except ValueError:
        continue
    fields = record.get("fields", {})
    if fields.get("message") == "memberships settled":
        print(f"memberships settled in {fields['elapsed_ms']} ms (revision {fields['revision']})")
PY
