#!/usr/bin/env python3
# Instructions per request (callgrind): `scripts/callgrind-request.py BIN N OUT [KIND]` runs BIN under callgrind on the bundled sources, sends N
# keep-alive POST /v1/is_authorized requests (cache off: every one evaluated; CACHE=on in the
# environment for the cache, then all but the first are hits; SHARES_DB=postgres://… for the share
# store on PostgreSQL), stops it; prints
# the total instructions (Ir). Needs valgrind. KIND: `stored` (default: judy reads project churn,
# both stored) or `entity` (bob, a workspace developer through his team, updates a stack of
# production that the request carries as a request-scoped entity, as Cedar API callers ask),
# `batch20` (POST /v1/batch_is_authorized: bob updates 20 stacks, 15 of production, 5 of staging,
# each item carrying its own stack) or `batch20-shared` (the same 20 items, each carrying all 20
# stacks, as a caller that sends one entity list with every item does), `zenml1` or `zenml20`
# (POST /zenml/rbac/check_permissions as the production workspace: bob reads one pipeline of
# churn, or the 20 different questions of scripts/question-load.sh).
# Sliced jobs (a Cedar batch, a ZenML page of more than 16) run with a slice of one second
# unless ZENML_AUTHZ_EVALUATION_SLICE_US says otherwise: under valgrind's slowdown the default
# 50 µs slice would make them yield after almost every item, which they do not natively.
import http.client, json, os, re, signal, subprocess, sys
binary, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
kind = sys.argv[4] if len(sys.argv) > 4 else "stored"
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve",
    "--policies", f"{root}/policies", "--schemas", f"{root}/schemas", "--directory", f"{root}/policies/directory.yaml",
    "--listen", "127.0.0.1:0", "--shares-db", os.environ.get("SHARES_DB", ":memory:"), "--cache", os.environ.get("CACHE", "off"), "--watch", "off", "--log", "error"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    env={**os.environ, "ZENML_AUTHZ_EVALUATION_SLICE_US": os.environ.get("ZENML_AUTHZ_EVALUATION_SLICE_US", "1000000")})
port = None
for line in proc.stdout:
    m = re.search(r"listening on http://127.0.0.1:(\d+)", line)
    if m: port = int(m.group(1)); break
conn = http.client.HTTPConnection("127.0.0.1", port)
path = "/v1/is_authorized"
if kind == "stored":
    body = json.dumps({"principal": {"type": "ZenML::User", "id": "9a1b418a-a4d7-49df-aa12-860e622a068d"},
        "action": {"type": "ZenML::Action", "id": "read"}, "resource": {"type": "ZenML::Project", "id": "dccff1d9-afc7-4c24-b5e8-e887447c69c0"}})
elif kind.startswith("batch20"):
    workspaces = [{"type": "ZenML::Workspace", "id": "99baf825-b21e-442f-ba98-8246d8d9ac88"}] * 15 + \
        [{"type": "ZenML::Workspace", "id": "d5320975-d92d-4b35-9413-9b848998b5bf"}] * 5
    stacks = [({"type": "ZenML::Stack", "id": f"4b4b1c1e-0000-4000-8000-{i:012d}"}, w) for i, w in enumerate(workspaces)]
    entity = lambda stack, w: {"uid": stack, "attrs": {"workspace": {"__entity": w}}, "parents": [w]}
    every = [entity(stack, w) for stack, w in stacks]
    body = json.dumps({"requests": [{"principal": {"type": "ZenML::User", "id": "8a5e8598-b203-4344-948f-32f6cd6c6e30"},
        "action": {"type": "ZenML::Action", "id": "update"}, "resource": stack,
        "additional_entities": every if kind == "batch20-shared" else [entity(stack, w)]} for stack, w in stacks]})
    path = "/v1/batch_is_authorized"
else:
    production = {"type": "ZenML::Workspace", "id": "99baf825-b21e-442f-ba98-8246d8d9ac88"}
    stack = {"type": "ZenML::Stack", "id": "4b4b1c1e-0000-4000-8000-000000000001"}
    body = json.dumps({"principal": {"type": "ZenML::User", "id": "8a5e8598-b203-4344-948f-32f6cd6c6e30"},
        "action": {"type": "ZenML::Action", "id": "update"}, "resource": stack,
        "additional_entities": [{"uid": stack, "attrs": {"workspace": {"__entity": production}}, "parents": [production]}]})
headers = {"content-type": "application/json"}
if kind.startswith("zenml"):
    import urllib.parse
    secret = json.load(open(f"{root}/tests/e2e/try-out-credentials.json"))["workspaces"]["production"]
    conn.request("POST", "/zenml/auth/login", urllib.parse.urlencode({"client_id": "99baf825-b21e-442f-ba98-8246d8d9ac88",
        "client_secret": secret, "grant_type": "client_credentials", "audience": "callgrind"}),
        {"content-type": "application/x-www-form-urlencoded"})
    r = conn.getresponse(); headers["authorization"] = "Bearer " + json.loads(r.read())["access_token"]
    churn, fraud, sandbox = "dccff1d9-afc7-4c24-b5e8-e887447c69c0", "45f60d6d-243d-4e8e-8b96-0ae5e16357de", "42f33105-edf6-4bee-8385-c589bb25ded0"
    uuid = lambda i: f"5c5c5c5c-0000-4000-8000-{i:012d}"
    questions = [f"{p}:{t}/{uuid(i * 10 + j)}" for i, p in enumerate([churn, fraud, sandbox])
                 for j, t in enumerate(["pipeline", "model", "artifact", "pipeline_run", "model_version"])]
    questions += [f"project/{churn}", f"project/{sandbox}", f"stack/{uuid(90)}", f"secret/{uuid(91)}", f"{churn}:pipeline"]
    body = json.dumps([f"{churn}:pipeline/{uuid(1)}"] if kind == "zenml1" else questions)
    path = "/zenml/rbac/check_permissions?user_id=8a5e8598-b203-4344-948f-32f6cd6c6e30&action=read"
for _ in range(n):
    conn.request("POST", path, body, headers)
    r = conn.getresponse(); answer = r.read(); assert r.status == 200, answer
    if kind == "entity":
        assert json.loads(answer)["decision"] == "Allow", answer
    if kind.startswith("batch20"):
        decisions = [result["decision"] for result in json.loads(answer)["results"]]
        assert decisions == ["Allow"] * 15 + ["Deny"] * 5, answer
conn.close()
proc.send_signal(signal.SIGTERM); proc.wait()
total = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
m = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", total) or re.search(r"([\d,]+)\s+PROGRAM TOTALS", total)
print(m.group(1).replace(",", ""))
