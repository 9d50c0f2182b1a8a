#!/usr/bin/env python3
# Instructions per request (callgrind): `scripts/callgrind-request.py BIN N OUT` runs BIN under callgrind on the bundled sources, sends N
# keep-alive POST /v1/is_authorized requests (cache off: every one evaluated), stops it; prints
# the total instructions (Ir). Needs valgrind.
import http.client, json, os, re, signal, subprocess, sys
binary, n, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary, "serve",
    "--policies", f"{root}/policies", "--schemas", f"{root}/schemas", "--directory", f"{root}/policies/directory.yaml",
    "--listen", "127.0.0.1:0", "--shares-db", ":memory:", "--cache", "off", "--watch", "off", "--log", "error"],
    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
port = None
for line in proc.stdout:
    m = re.search(r"listening on http://127.0.0.1:(\d+)", line)
    if m: port = int(m.group(1)); break
conn = http.client.HTTPConnection("127.0.0.1", port)
body = json.dumps({"principal": {"type": "ZenML::User", "id": "9a1b418a-a4d7-49df-aa12-860e622a068d"},
    "action": {"type": "ZenML::Action", "id": "read"}, "resource": {"type": "ZenML::Project", "id": "dccff1d9-afc7-4c24-b5e8-e887447c69c0"}})
for _ in range(n):
    conn.request("POST", "/v1/is_authorized", body, {"content-type": "application/json"})
    r = conn.getresponse(); r.read(); assert r.status == 200
conn.close()
proc.send_signal(signal.SIGTERM); proc.wait()
total = subprocess.run(["callgrind_annotate", out], capture_output=True, text=True).stdout
m = re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", total) or re.search(r"([\d,]+)\s+PROGRAM TOTALS", total)
print(m.group(1).replace(",", ""))
