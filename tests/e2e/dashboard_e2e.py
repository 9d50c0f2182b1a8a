"""End to end: people sign in to a stock ZenML 0.98 server's own dashboard through zenml-authz,
in a real browser (Debian's chromium, headless, driven over the DevTools protocol) behind a
real nginx running deploy/nginx/zenml-dashboard.conf as shipped (its three addresses replaced).

Usage: python dashboard_e2e.py <zenml-authz binary> <venv> <work dir> <chromium> <nginx> <artifacts dir>
The venv provides zenml and `websockets`. Screenshots of every step go to the artifacts dir.
Exits 0 when every check passed; prints `N passed, M failed`.
"""

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import zenml_e2e as e2e
from browser import Browser
from zenml_e2e import CREDENTIALS, ROOT, check, free_port, wait_http


class DashboardBrowser(Browser):
    """A browser that signs in to the dashboard through the sidecar."""

    def sign_in(self, base, username, key, screenshot=None):
        """Opens the dashboard signed out, follows it to the sign-in page (kept as `screenshot`
        when given), signs in."""
        self.goto(f"{base}/")
        if not self.wait_for("document.getElementById('api_key') !== null", "the sign-in form"):
            return False
        if screenshot:
            self.screenshot(screenshot)
        self.eval(f"""(() => {{
            document.getElementById('username').value = {json.dumps(username)};
            document.getElementById('api_key').value = {json.dumps(key)};
            document.querySelector('button[type=submit]').click();
            return true; }})()""")
        return True


def api(base, method, path, token=None, body=None, form=None):
    """One ZenML REST call: (status, JSON body)."""
    headers = {}
    data = None
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
    request = urllib.request.Request(f"{base}{path}", data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


def nginx_config(work, nginx_port, zenml_port, authz_port):
    """deploy/nginx/zenml-dashboard.conf as shipped, its three addresses replaced, in a main
    config that keeps every file nginx writes in `work`."""
    site = (ROOT / "deploy/nginx/zenml-dashboard.conf").read_text()
    for shipped, here in (("listen 80;", f"listen 127.0.0.1:{nginx_port};"),
                          ("127.0.0.1:8080", f"127.0.0.1:{zenml_port}"),
                          ("127.0.0.1:8180", f"127.0.0.1:{authz_port}")):
        if shipped not in site:
            raise SystemExit(f"deploy/nginx/zenml-dashboard.conf no longer has `{shipped}`")
        site = site.replace(shipped, here)
    conf = work / "nginx"
    conf.mkdir()
    shutil.copy(ROOT / "deploy/nginx/zenml-authz-proxy-headers", conf / "zenml-authz-proxy-headers")
    (conf / "site.conf").write_text(site)
    (conf / "nginx.conf").write_text(f"""
daemon off;
worker_processes 1;
pid {conf}/nginx.pid;
error_log {conf}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {conf}/access.log;
    client_body_temp_path {conf}/body;
    proxy_temp_path {conf}/proxy;
    fastcgi_temp_path {conf}/fastcgi;
    uwsgi_temp_path {conf}/uwsgi;
    scgi_temp_path {conf}/scgi;
    include {conf}/site.conf;
}}
""")
    return conf


def main():
    binary, venv, work, chromium, nginx, artifacts = sys.argv[1:7]
    binary, venv, work, artifacts = (Path(p).resolve() for p in (binary, venv, work, artifacts))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    artifacts.mkdir(parents=True, exist_ok=True)
    authz_port, zenml_port, nginx_port = free_port(), free_port(), free_port()
    zenml_url = f"http://127.0.0.1:{zenml_port}"
    site = f"http://127.0.0.1:{nginx_port}"
    backend = f"http://127.0.0.1:{authz_port}/zenml"
    logs = {name: open(work / f"{name}.log", "w") for name in ("authz", "zenml", "nginx", "chromium")}
    processes, browsers = [], []
    try:
        authz = subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{authz_port}", "--log-format", "json",
             "--policies", str(ROOT / "policies"), "--schemas", str(ROOT / "schemas"),
             "--directory", str(ROOT / "policies/directory.yaml"), "--shares-db", str(work / "shares.db"),
             "--dashboard-zenml-url", zenml_url],
            env={**os.environ, "ZENML_AUTHZ_TOKEN_SECRET": "dashboard-e2e-token-secret-0123456789"},
            stdout=logs["authz"], stderr=subprocess.STDOUT)
        processes.append(authz)
        wait_http(f"http://127.0.0.1:{authz_port}/readyz", 30, authz)
        zenml = e2e.start_zenml(venv, work, zenml_port, backend, f"{site}/authz/login", logs["zenml"])
        processes.append(zenml)
        wait_http(f"{zenml_url}/health", 120, zenml)
        conf = nginx_config(work, nginx_port, zenml_port, authz_port)
        proxy = subprocess.Popen([nginx, "-c", str(conf / "nginx.conf"), "-p", str(conf)],
                                 stdout=logs["nginx"], stderr=subprocess.STDOUT)
        processes.append(proxy)
        wait_http(f"{site}/authz/login", 30, proxy)

        # What there is to see: the organization admin makes a pipeline in the project the bundled
        # dashboard shows (it is wired to `default`).
        status, answer = api(zenml_url, "POST", "/api/v1/login", form={"password": CREDENTIALS["api_keys"]["ada"]})
        check("setup: the organization admin logs in", status == 200, answer)
        admin = answer["access_token"] if status == 200 else None
        status, default = api(zenml_url, "GET", "/api/v1/projects/default", admin)
        default_id = default["id"] if status == 200 else ""
        status, pipeline = api(zenml_url, "POST", "/api/v1/pipelines", admin,
                               {"name": "training-pipeline", "project": default_id})
        check("setup: pipeline training-pipeline", status == 200, pipeline)

        # A developer (bob: workspace developer through the ml-eng team) signs in and lands on the
        # dashboard, signed in, with what his role lets him see.
        bob = DashboardBrowser(chromium, work / "profile-bob", logs["chromium"])
        browsers.append(bob)
        started = bob.sign_in(site, "bob", CREDENTIALS["api_keys"]["bob"], artifacts / "01-sign-in-page.png")
        check("the dashboard sends a signed-out visitor to the sidecar's sign-in page", started)
        landed = bob.wait_for("!location.pathname.startsWith('/authz') && "
                              "document.body.innerText.includes('Welcome back, Bob Builder')", "the dashboard")
        bob.screenshot(artifacts / "02-developer-signed-in.png")
        check("a developer lands on the dashboard, signed in as himself", landed)
        check("the dashboard's signed-in flag is set", bob.eval("localStorage.getItem('isAuthenticated')") == "true")
        cookies = bob.call("Network.getCookies", urls=[site + "/"])["cookies"]
        session = [c for c in cookies if c["name"].startswith("zenml-server-")]
        check("ZenML's session cookie is HttpOnly and SameSite=Lax on the dashboard's origin",
              len(session) == 1 and session[0]["httpOnly"] and session[0].get("sameSite") == "Lax", cookies)
        bob.goto(f"{site}/projects")
        seen = bob.wait_for("document.body.innerText.includes('1 pipelines')", "the projects page")
        bob.screenshot(artifacts / "03-developer-projects.png")
        check("the developer sees the projects page (default, with its pipeline)", seen)
        bob.goto(f"{site}/projects/default/pipelines")
        seen = bob.wait_for("document.body.innerText.includes('training-pipeline')", "the pipeline")
        bob.screenshot(artifacts / "04-developer-pipeline.png")
        check("the developer sees the pipeline", seen)

        # A viewer (carol) signs in; deleting the pipeline in the dashboard's UI is refused.
        carol = DashboardBrowser(chromium, work / "profile-carol", logs["chromium"])
        browsers.append(carol)
        carol.sign_in(site, "carol", CREDENTIALS["api_keys"]["carol"])
        landed = carol.wait_for("!location.pathname.startsWith('/authz') && "
                                "document.body.innerText.includes('Welcome back, Carol Viewer')", "the dashboard")
        check("a viewer signs in", landed)
        carol.goto(f"{site}/projects/default/pipelines")
        carol.wait_for("document.body.innerText.includes('training-pipeline')", "the pipeline")
        menu = ("Array.from(document.querySelectorAll('button'))"
                ".find(b => b.getAttribute('aria-label') === 'Open pipeline actions')")
        delete_item = ("Array.from(document.querySelectorAll('[role=menuitem]'))"
                       ".find(item => item.innerText.trim() === 'Delete')")
        confirm_input = "document.querySelector('[role=dialog] input, [role=alertdialog] input')"
        confirm_button = ("Array.from(document.querySelectorAll('[role=dialog] button, [role=alertdialog] button'))"
                          ".find(button => button.innerText.trim() === 'Delete')")
        carol.click(menu)
        carol.click(delete_item)
        if carol.wait_for(f"!!{confirm_input}", "the confirmation"):
            carol.eval(f"{confirm_input}.focus()")
            carol.call("Input.insertText", text="DELETE")
            carol.click(confirm_button)
        refused = carol.wait_for("document.body.innerText.includes('Insufficient permissions to DELETE')",
                                 "the refusal")
        carol.screenshot(artifacts / "05-viewer-delete-refused.png")
        check("a viewer's delete in the dashboard is refused, with ZenML's message", refused)
        status, still = api(zenml_url, "GET", f"/api/v1/pipelines/{pipeline.get('id', '?')}", admin)
        check("... and the pipeline is still there", status == 200, still)

        # A person with no role in the workspace (grace: organization member only) is refused at
        # the sign-in, with a message, and gets no session.
        grace = DashboardBrowser(chromium, work / "profile-grace", logs["chromium"])
        browsers.append(grace)
        grace.sign_in(site, "grace", CREDENTIALS["api_keys"]["grace"])
        refused = grace.wait_for("document.querySelector('.error') && document.querySelector('.error').innerText",
                                 "a refusal")
        grace.screenshot(artifacts / "06-no-role-refused.png")
        check("a person with no role is refused at sign-in with a message",
              refused and "no access to the workspace `production`" in refused, refused)
        check("... and has no session", grace.eval("localStorage.getItem('isAuthenticated')") is None
              and not [c for c in grace.call("Network.getCookies", urls=[site + "/"])["cookies"]
                       if c["name"].startswith("zenml-server-")])

        # Sign-out ends the session: ZenML's cookie and the dashboard's flag are gone.
        bob.goto(f"{site}/authz/logout")
        out = bob.wait_for("location.pathname === '/authz/login' && document.body.innerText.includes('signed out')",
                           "the signed-out page")
        bob.screenshot(artifacts / "07-signed-out.png")
        check("sign-out lands on the sign-in page", out)
        after = bob.eval("fetch('/api/v1/current-user', {credentials: 'same-origin'}).then(r => r.status)")
        check("after sign-out ZenML answers 401", after == 401, after)
        check("after sign-out the dashboard's flag is gone", bob.eval("localStorage.getItem('isAuthenticated')") is None)
    finally:
        for browser in browsers:
            browser.close()
        e2e.stop(processes, logs)
        if e2e.failed:
            e2e.show_tails(*(work / f"{name}.log" for name in ("authz", "zenml", "nginx")),
                           work / "nginx" / "access.log")

    print(f"{e2e.passed} passed, {len(e2e.failed)} failed")
    sys.exit(1 if e2e.failed else 0)


if __name__ == "__main__":
    main()
