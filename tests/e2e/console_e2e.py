"""End to end: the operators' console in a real browser (Debian's chromium, headless, driven over
the DevTools protocol) against the real sidecar on a copy of the bundled sources. Each view is
read back from the page and compared with the console's API (and, where the sample fixes it,
with what the sample organization says): the token prompt, status, the role matrix, what-can
with bindings at their file and line, who-can, the live decision tail, and a failed reload.

Usage: python console_e2e.py <zenml-authz binary> <sources dir> <work dir> <chromium> <artifacts dir>
The venv provides `websockets`. Screenshots of every step go to the artifacts dir.
Exits 0 when every check passed; prints `N passed, M failed`.
"""

import hashlib
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import zenml_e2e as e2e
from browser import HANG_GUARD_S, Browser
from zenml_e2e import check

TOKEN = "console-e2e-token-" + "7" * 40


def api(base, path, body=None):
    """A console or Cedar API call with the caller token: (status, JSON)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"{base}{path}", data=data, method="POST" if data else "GET",
                                     headers={"Authorization": f"Bearer {TOKEN}",
                                              "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, json.load(error)


def actions_text(actions):
    """A grid cell as the console writes it."""
    if not actions:
        return "—"
    return "all" if len(actions) == 10 else " ".join(actions)


def scope_text(scope):
    if scope["kind"] == "organization":
        return f"organization {scope['name']}"
    if scope["kind"] == "workspace":
        return f"workspace {scope['name']}"
    return f"project {scope['name']} ({scope['workspace']})"


# The rows of a table, as the page shows them: one list of cell texts per row.
TABLE_ROWS = """(selector => Array.from(document.querySelectorAll(selector + ' tbody tr'))
    .map(row => Array.from(row.children).map(cell => cell.innerText.trim())))"""


def main():
    binary, sources, work, chromium, artifacts = sys.argv[1:6]
    sources, work, artifacts = Path(sources), Path(work), Path(artifacts)
    shutil.rmtree(artifacts, ignore_errors=True)
    artifacts.mkdir(parents=True)
    logs = {name: open(work / f"{name}.log", "w") for name in ("authz", "chromium")}
    hashed = hashlib.sha256(TOKEN.encode()).hexdigest()
    authz = subprocess.Popen(
        [binary, "serve", "--policies", str(sources / "policies"), "--schemas", str(sources / "schemas"),
         "--directory", str(sources / "policies/directory.yaml"), "--listen", "127.0.0.1:0",
         "--shares-db", ":memory:", "--decision-log", "memory", "--api-token-hashes", f"e2e:sha256:{hashed}",
         "--log-format", "json"],
        stdout=subprocess.PIPE, stderr=logs["authz"], text=True)
    browser = None
    try:
        base = authz.stdout.readline().strip().removeprefix("listening on ")
        check("the sidecar starts", base.startswith("http://127.0.0.1:"), base)
        console = f"{base}/console"
        browser = Browser(chromium, work / "profile", logs["chromium"])

        # 1. The page asks for a caller token; nothing is shown without one.
        browser.goto(console)
        asked = browser.wait_for("!document.getElementById('token-form').hidden", "the token form")
        browser.screenshot(artifacts / "01-token.png")
        check("/console redirects to /console/", browser.eval("location.pathname") == "/console/")
        check("without a token the console asks for one", asked)
        check("without a token no data is shown", browser.eval("document.getElementById('revision').innerText") == "")
        browser.type_into("document.getElementById('token')", "not-the-token")
        browser.click("document.querySelector('#token-form button')")
        refused = browser.text_of("token-error", "the refusal")
        check("a wrong token is refused", refused == "That token was refused.", refused)
        browser.type_into("document.getElementById('token')", TOKEN)
        browser.click("document.querySelector('#token-form button')")

        # 2. Status: the active revision, reloads, no load error.
        _, status = api(base, "/v1/status")
        shown = browser.text_of("status-revision", "the status view")
        browser.screenshot(artifacts / "02-status.png")
        check("status shows the active revision", shown == status["revision"], f"{shown} != {status['revision']}")
        text = browser.text()
        check("status shows the directory's sizes",
              f"{status['counts']['workspaces']} workspaces, {status['counts']['projects']} projects" in text, text)
        check("status says the newest sources loaded", "no load error" in text, text)
        check("the token is kept in the tab, not in the URL",
              browser.eval(f"sessionStorage.getItem('zenml-authz-caller-token') === {json.dumps(TOKEN)}")
              and TOKEN not in browser.eval("location.href"))

        # 3. The role matrix of project churn, cell by cell as the API answers it.
        browser.click("document.querySelector('nav a[data-view=roles]')")
        browser.wait_for("!document.getElementById('view-roles').hidden", "the roles view")
        _, directory = api(base, "/v1/directory")
        churn = next(p for w in directory["workspaces"] for p in w["projects"] if p["name"] == "churn")
        browser.eval(f"""(() => {{ const s = document.getElementById('roles-scope');
            s.value = {json.dumps(churn['id'])}; s.dispatchEvent(new Event('change')); return true; }})()""")
        browser.wait_for("!!document.querySelector('#role-matrix') && "
                         "document.querySelector('#roles-body .caption').innerText.includes('project churn')",
                         "the churn matrix")
        browser.screenshot(artifacts / "03-roles.png")
        _, matrix = api(base, f"/v1/role-matrix?scope={churn['id']}")
        rows = browser.eval(f"{TABLE_ROWS}('#role-matrix')")
        expected = [[t] + [actions_text(role["grants"][i]["actions"]) for role in matrix["roles"]]
                    for i, t in enumerate(matrix["types"])]
        check("the role matrix shows every cell the API computes", rows == expected, f"{rows} != {expected}")
        headers = browser.eval("Array.from(document.querySelectorAll('#role-matrix thead tr:nth-child(2) th'))"
                               ".map(th => th.innerText.trim())")
        check("the matrix's columns are the roles, custom ones marked",
              headers == [r["role"] + (" *" if r["custom"] else "") for r in matrix["roles"]], headers)
        cell = browser.eval("""(() => { const c = document.querySelector(
            '#role-matrix td[data-bound="workspace"][data-role="viewer"][data-type="pipeline"]'); return c && c.innerText; })()""")
        check("a workspace viewer reads churn's pipelines, nothing more", cell == "read", cell)
        promoter = browser.eval("""(() => { const c = document.querySelector(
            '#role-matrix td[data-bound="project"][data-role="model-promoter"][data-type="model"]'); return c && c.innerText; })()""")
        check("model-promoter reads, updates and promotes churn's models", promoter == "read update promote", promoter)

        # 4. What can bob do: his bindings at their file and line, and his grids.
        browser.click("document.querySelector('nav a[data-view=\"what-can\"]')")
        browser.type_into("document.getElementById('what-can-who')", "bob")
        browser.click("document.querySelector('#what-can-form button')")
        about = browser.text_of("what-can-subject", "bob's answer")
        browser.screenshot(artifacts / "04-what-can.png")
        check("what-can names bob and his team", about == "user bob; teams: ml-eng", about)
        _, bob = api(base, "/v1/what-can?who=bob")
        bindings = browser.eval(f"{TABLE_ROWS}('#bindings')")
        expected = [[b["role"], scope_text(b["scope"]), f"team {b['through_team']}" if b["through_team"] else "directly",
                     f"{b['file']}:{b['line']}"] for b in bob["bindings"]]
        check("bob's bindings, each at its file and line", bindings == expected, f"{bindings} != {expected}")
        check("bob is a developer of production through ml-eng",
              ["developer", "workspace production", "team ml-eng"] in [row[:3] for row in bindings], bindings)
        titles = browser.eval("Array.from(document.querySelectorAll('#what-can-grids h4')).map(h => h.innerText)")
        check("a grid per workspace and project", titles == [scope_text(s) for s in bob["scopes"]], titles)
        grids = browser.eval("Array.from(document.querySelectorAll('#what-can-grids .grid')).map(g => "
                             "Array.from(g.querySelectorAll('tr')).map(r => "
                             "Array.from(r.children).map(c => c.innerText.trim())))")
        expected = [[[row["type"], actions_text(row["actions"])] for row in s["grants"] if row["actions"]]
                    for s in bob["scopes"]]
        check("each grid is the API's", grids == expected, f"{grids} != {expected}")

        # 5. Who can create pipelines in churn.
        browser.click("document.querySelector('nav a[data-view=\"who-can\"]')")
        browser.eval("(() => { document.getElementById('who-can-action').value = 'create'; return true; })()")
        browser.type_into("document.getElementById('who-can-resource')", "churn:pipeline")
        browser.click("document.querySelector('#who-can-form button')")
        summary = browser.text_of("who-can-summary", "the who-can answer")
        browser.screenshot(artifacts / "05-who-can.png")
        _, who = api(base, "/v1/who-can?" + urllib.parse.urlencode({"action": "create", "resource": "churn:pipeline"}))
        check("who-can's summary", summary and summary.startswith("Who can create churn:pipeline in workspace production: "
                                                                  f"{who['allowed_principals']} of "), summary)
        names = [row[:2] for row in browser.eval(f"{TABLE_ROWS}('#who-can-table')")]
        check("who-can lists exactly the API's grants", names == [[g["kind"], g["name"]] for g in who["grants"]], names)
        check("bob may, carol (a viewer) may not", ["user", "bob"] in names and ["user", "carol"] not in names, names)

        # 6. The live tail: decisions made while the view is open appear, newest first.
        browser.click("document.querySelector('nav a[data-view=decisions]')")
        browser.wait_for("!!document.getElementById('decisions')", "the decision tail")
        users = {u["name"]: u["id"] for u in directory["users"]}
        asked = []
        for name in ("bob", "grace"):
            _, decision = api(base, "/v1/is_authorized", {
                "principal": {"type": "ZenML::User", "id": users[name]},
                "action": {"type": "ZenML::Action", "id": "read"},
                "resource": {"type": "ZenML::Project", "id": churn["id"]}})
            asked.append((name, decision["decision"].lower()))
        shown = browser.wait_for(f"""(() => {{ const rows = {TABLE_ROWS}('#decisions');
            return rows.length >= 2 ? rows.slice(0, 2) : null; }})()""", "the two decisions")
        browser.screenshot(artifacts / "06-decisions.png")
        check("the tail shows the new decisions, newest first, by name",
              shown and [(row[3], row[6]) for row in shown] == [(f"{n} (user)", d) for n, d in reversed(asked)],
              f"{shown} vs {asked}")
        check("bob may read churn, grace (no role in the workspace) may not",
              [d for _, d in asked] == ["allow", "deny"], asked)

        # 7. A broken edit: the status view shows the error; the revision stays.
        (sources / "policies" / "broken.cedar").write_text("permit (principal, action, resource) when { ;\n")
        failed = None
        for _ in range(HANG_GUARD_S * 10):
            _, now = api(base, "/v1/status")
            if now["last_load_error"]:
                failed = now
                break
            browser.eval("new Promise(r => setTimeout(() => r(true), 100))")
        check("the sidecar refuses the broken edit", failed is not None)
        browser.click("document.querySelector('nav a[data-view=status]')")
        error = browser.wait_for("(e => e && e.classList.contains('load-error') && e.innerText)"
                                 "(document.getElementById('last-load-error'))", "the load error")
        browser.screenshot(artifacts / "07-load-error.png")
        check("status shows the load error at its file", error and "broken.cedar" in error, error)
        check("status says the revision is still the last good one",
              error and "still active" in error
              and browser.eval("document.getElementById('status-revision').innerText") == status["revision"], error)
    finally:
        if browser:
            browser.close()
        e2e.stop([authz], logs)
        if e2e.failed:
            e2e.show_tails(work / "authz.log")

    print(f"{e2e.passed} passed, {len(e2e.failed)} failed")
    sys.exit(1 if e2e.failed else 0)


if __name__ == "__main__":
    main()
