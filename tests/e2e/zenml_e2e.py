"""End to end: a stock ZenML server (zenml[server] 0.98 or 0.80) using zenml-authz as its Pro
RBAC backend, driven by ZenML's own Python client as personas of the sample directory.

Usage: python zenml_e2e.py <zenml-authz binary> <venv> <work dir>
Standard library only; the venv provides zenml. Exits 0 when every check passed; prints
`N passed, M failed`.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
CREDENTIALS = json.loads((HERE / "try-out-credentials.json").read_text())
ORG = "743818ac-9cc4-413c-aa3b-0d14700954e9"
PRODUCTION = "99baf825-b21e-442f-ba98-8246d8d9ac88"
CHURN = "dccff1d9-afc7-4c24-b5e8-e887447c69c0"  # the sample directory's id for project churn
TEAMS = {"platform": "f5135f22-db1c-457d-9d9e-b7d016a19800", "auditors": "fe018023-9456-47d2-b067-1334d4c1ef3a"}
USERS = {"grace": "7c43a64e-c811-4df9-a0f1-9b1a74220e53", "judy": "59c64f49-e3c0-4459-a355-5fffaa113276"}

passed, failed = 0, []


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url, deadline_s, process):
    end = time.time() + deadline_s
    while time.time() < end:
        if process.poll() is not None:
            raise SystemExit(f"process for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except urllib.error.HTTPError as error:
            if error.code < 500:
                return
        except OSError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"{url} did not come up in {deadline_s}s")


def start_zenml(venv, work, port, backend, login_url, log):
    """A stock ZenML server on `port`, configured as README's "Use with ZenML" says, with the
    sidecar's ZenML API at `backend` and `login_url` as its external login URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
    env.update({
        "ZENML_CONFIG_PATH": str(work / "server-config"),
        "ZENML_STORE_URL": f"sqlite:///{work / 'zenml.db'}",
        "ZENML_ANALYTICS_OPT_IN": "false",
        "ZENML_SERVER": "true",
        "ZENML_SERVER_RBAC_IMPLEMENTATION_SOURCE": "zenml.zen_server.rbac.zenml_cloud_rbac.ZenMLCloudRBAC",
        "ZENML_SERVER_AUTH_SCHEME": "EXTERNAL",
        "ZENML_SERVER_EXTERNAL_LOGIN_URL": login_url,
        "ZENML_SERVER_EXTERNAL_USER_INFO_URL": f"{backend}/users/authorize_server",
        "ZENML_SERVER_EXTERNAL_SERVER_ID": PRODUCTION,
        "ZENML_SERVER_JWT_TOKEN_EXPIRE_MINUTES": "60",
        "ZENML_SERVER_PRO_API_URL": backend,
        "ZENML_SERVER_PRO_DASHBOARD_URL": backend,
        "ZENML_SERVER_PRO_OAUTH2_CLIENT_SECRET": CREDENTIALS["workspaces"]["production"],
        "ZENML_SERVER_PRO_OAUTH2_AUDIENCE": "zenml-authz",
        "ZENML_SERVER_PRO_ORGANIZATION_ID": ORG,
        "ZENML_SERVER_PRO_WORKSPACE_ID": PRODUCTION,
    })
    return subprocess.Popen(
        [str(venv / "bin" / "uvicorn"), "zenml.zen_server.zen_server_api:app", "--host", "127.0.0.1",
         "--port", str(port), "--no-server-header"],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=work)


def stop(processes, logs):
    """Terminates `processes` (killing what does not end within 15 s) and closes `logs`."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    for process in processes:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    for log in logs.values():
        log.close()


def show_tails(*paths):
    """Prints the end of each log that exists (after a failed check)."""
    for path in paths:
        if path.exists():
            print(f"--- {path.name} (tail) ---\n{path.read_text(errors='replace')[-4000:]}")


def status(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=5) as response:
        return json.load(response)


def check(what, condition, detail=""):
    global passed
    if condition:
        passed += 1
        print(f"ok   {what}")
    else:
        failed.append(what)
        print(f"FAIL {what}: {detail}")


def zenml_version(python):
    out = subprocess.run([str(python), "-c", "import zenml; print(zenml.__version__)"],
                         capture_output=True, text=True, check=True)
    return tuple(int(part) for part in out.stdout.strip().split(".")[:2])


def main():
    binary, venv, work = (Path(arg).resolve() for arg in sys.argv[1:4])
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    python = venv / "bin" / "python"
    version = zenml_version(python)
    print(f"zenml {'.'.join(map(str, version))}")
    # The sidecar reads (and watches) a copy: the test binds a project role to the id ZenML
    # gives the project, as a person editing the directory would.
    policies = work / "policies"
    shutil.copytree(ROOT / "policies", policies)
    directory = policies / "directory.yaml"
    authz_port, zenml_port = free_port(), free_port()
    backend = f"http://127.0.0.1:{authz_port}/zenml"
    server_url = f"http://127.0.0.1:{zenml_port}"
    logs = {name: open(work / f"{name}.log", "w") for name in ("authz", "zenml")}
    processes = []

    def sidecar():
        return subprocess.Popen(
            [str(binary), "serve", "--listen", f"127.0.0.1:{authz_port}", "--log-format", "json",
             "--policies", str(policies), "--schemas", str(ROOT / "schemas"),
             "--directory", str(directory), "--shares-db", str(work / "shares.db")],
            env={**os.environ, "ZENML_AUTHZ_TOKEN_SECRET": "e2e-token-secret-0123456789abcdef"},
            stdout=logs["authz"], stderr=subprocess.STDOUT)

    def login(key):
        """A ZenML JWT for an API key, the way each version logs in: 0.98 exchanges the key
        (`password=`), 0.80 sends it as the external authenticator's bearer token."""
        if version >= (0, 85):
            request = urllib.request.Request(f"{server_url}/api/v1/login",
                                             data=urllib.parse.urlencode({"password": key}).encode())
        else:
            request = urllib.request.Request(f"{server_url}/api/v1/login", data=b"",
                                             headers={"Authorization": f"Bearer {key}"})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return json.load(response)["access_token"]
        except urllib.error.HTTPError as error:
            return None if error.code in (401, 403) else error.read().decode(errors="replace")

    tokens = {}

    def run(persona, op, *args, project=None, way=None):
        """One operation as `persona`, with the raw API key on every request (`way="key"`,
        0.98's default here) or with the JWT of a login (`way="login"`, the only way on 0.80)."""
        key = CREDENTIALS["api_keys"][persona]
        way = way or ("key" if version >= (0, 85) else "login")
        token = key
        if way == "login":
            if persona not in tokens:
                token = login(key)
                if token is None:
                    return {"ok": False, "error": "login refused"}
                tokens[persona] = token
            token = tokens[persona]
        persona_env = {k: v for k, v in os.environ.items() if not k.startswith("ZENML_")}
        persona_env.update({
            "ZENML_STORE_URL": server_url,
            "ZENML_STORE_API_TOKEN": token,
            "ZENML_CONFIG_PATH": str(work / f"client-{persona}-{way}"),
            "ZENML_ANALYTICS_OPT_IN": "false",
            "ZENML_LOGGING_VERBOSITY": "ERROR",
        })
        if project:
            persona_env["ZENML_ACTIVE_PROJECT_ID"] = project
        out = subprocess.run([str(python), str(HERE / "persona.py"), op, *args], env=persona_env,
                             capture_output=True, text=True, timeout=120)
        lines = [l for l in out.stdout.splitlines() if l.startswith("RESULT ")]
        if not lines:
            return {"ok": False, "error": "no result", "detail": (out.stdout + out.stderr)[-1500:]}
        return json.loads(lines[-1][len("RESULT "):])

    def local_name(persona):
        # ZenML before 0.85 names an external account after its e-mail (service accounts have
        # none in the directory: the sidecar sends one that is never delivered).
        if version >= (0, 85):
            return persona
        if persona in ("ci-bot", "deployer"):
            return f"{persona}@zenml-authz.invalid"
        return f"{persona}@acme.example"

    def not_admitted(result):
        # The sidecar's user-info says 403: ZenML refuses the credentials (0.98 on the request,
        # 0.80 at the login).
        return result.get("error") in ("CredentialsNotValid", "login refused")

    try:
        authz = sidecar()
        processes.append(authz)
        wait_http(f"http://127.0.0.1:{authz_port}/readyz", 30, authz)

        zenml = start_zenml(venv, work, zenml_port, backend, f"{backend}/login", logs["zenml"])
        processes.append(zenml)
        wait_http(f"{server_url}/health", 120, zenml)

        # Identity: a persona's API key logs in through the sidecar's user-info endpoint.
        who = run("bob", "whoami")
        check("bob logs in with his ZENPROKEY API key", who == {"ok": True, "value": local_name("bob")}, who)
        CREDENTIALS["api_keys"]["bob-revoked"] = CREDENTIALS["revoked_api_keys"]["bob"]
        who = run("bob-revoked", "whoami")
        check("a revoked key is refused", not who["ok"], who)
        who = run("mallory", "whoami")
        check("a deactivated account is refused", not who["ok"], who)
        who = run("ci-bot", "whoami", way="login")
        check("a service account without an e-mail logs in", who == {"ok": True, "value": local_name("ci-bot")}, who)

        admin = run("ada", "is_admin")
        check("decision: an organization admin is a ZenML admin", admin == {"ok": True, "value": True}, admin)
        admin = run("bob", "is_admin")
        check("a workspace developer is not a ZenML admin", admin == {"ok": True, "value": False}, admin)

        # The org admin creates the projects; a workspace viewer may not.
        created = run("ada", "create_project", "e2e")
        check("org admin creates a project", created["ok"], created)
        project = created.get("value")
        denied = run("carol", "create_project", "not-allowed")
        check("workspace viewer cannot create a project (403)", denied.get("error") == "forbidden", denied)

        # Project-scoped resources: developer creates, viewer cannot.
        model = run("bob", "create_model", "churn-model", project=project)
        check("workspace developer creates a model", model["ok"], model)
        model_id = model.get("value")
        denied = run("carol", "create_model", "viewer-model", project=project)
        check("workspace viewer's create gets 403", denied.get("error") == "forbidden", denied)
        seen = run("carol", "list_models", project=project)
        check("workspace viewer lists the developer's model", seen.get("value") == ["churn-model"], seen)
        read = run("carol", "get_model", model_id, project=project)
        check("workspace viewer reads the model", read.get("value") == "churn-model", read)

        # Only members enter the workspace: an organization member with no role in it is refused
        # at the door (until something is shared with her, below).
        read = run("grace", "get_model", model_id, project=project)
        check("an organization member with no role is refused entry", not_admitted(read), read)

        # Global types: a developer creates a secret; a viewer cannot.
        secret = run("bob", "create_secret", "bob-secret")
        check("workspace developer creates a secret", secret["ok"], secret)
        secret_id = secret.get("value")
        denied = run("carol", "create_secret", "carol-secret")
        check("workspace viewer cannot create a secret (403)", denied.get("error") == "forbidden", denied)

        # A project role on a project ZenML made: the directory's `churn` gets ZenML's id.
        churn = run("ada", "create_project", "churn")
        check("org admin creates project churn", churn["ok"], churn)
        fraud = run("ada", "create_project", "fraud")
        check("org admin creates project fraud", fraud["ok"], fraud)
        before = status(authz_port)["revision"]
        sync = subprocess.run(
            [str(binary), "zenml-projects", "--zenml-url", server_url, "--write",
             "--policies", str(policies), "--schemas", str(ROOT / "schemas"), "--directory", str(directory)],
            env={**os.environ, "ZENML_AUTHZ_ZENML_API_KEY": CREDENTIALS["api_keys"]["ada"]},
            capture_output=True, text=True, timeout=120)
        check("zenml-projects --write binds the directory's churn and fraud to ZenML's ids",
              sync.returncode == 0 and churn.get("value", "?") in directory.read_text()
              and CHURN not in directory.read_text(), sync.stdout + sync.stderr)
        end = time.time() + 30
        while status(authz_port)["revision"] == before and time.time() < end:
            time.sleep(0.2)
        check("the sidecar reloads the directory", status(authz_port)["revision"] != before)

        # ci-bot, a service account with Project Developer on churn, never exceeds that role,
        # whether it sends its raw API key on every request or logs in first (0.98 used to skip
        # every check on the raw-key path).
        for way in (("key", "login") if version >= (0, 85) else ("login",)):
            made = run("ci-bot", "create_model", f"ci-model-{way}", project=churn.get("value"), way=way)
            check(f"service account ({way}): creates a model in its project", made["ok"], made)
            for what, op, args, where in [
                ("creates a secret", "create_secret", (f"ci-secret-{way}",), None),
                ("reads another's secret", "get_secret", (secret_id or "",), None),
                ("creates a project", "create_project", (f"ci-project-{way}",), None),
                ("reads a model in a project it has no role in", "get_model", (model_id or "",), project),
                ("deletes a model in a project it has no role in", "delete_model", (model_id or "",), project),
            ]:
                result = run("ci-bot", op, *args, project=where, way=way)
                check(f"service account ({way}): never {what} (403)", result.get("error") == "forbidden", result)

        # The documented decisions (README "Decisions where the docs are silent"), as ZenML
        # runs them.
        made = run("bob", "create_project", "bob-project")
        check("decision: a workspace developer creates a project", made["ok"], made)
        values = run("bob", "get_secret", secret_id or "")
        check("workspace developer reads his own secret's values", values.get("value") == ["token"], values)
        admin_secret = run("ada", "create_secret", "ada-secret")
        values = run("bob", "get_secret", admin_secret.get("value", ""))
        check("decision: a workspace developer reads the values of others' secrets",
              values.get("value") == ["token"], values)
        values = run("carol", "get_secret", admin_secret.get("value", ""))
        check("a workspace viewer sees the secret without its values", values.get("value") == [], values)
        churn_id = churn.get("value")
        bobs = run("bob", "create_model", "bobs-churn-model", project=churn_id)
        check("workspace developer creates a model in churn", bobs["ok"], bobs)
        version_made = run("ken", "create_model_version", bobs.get("value", ""), "v-ken", project=churn_id)
        check("decision: a project contributor cannot add a version to another's model (403)",
              version_made.get("error") == "forbidden", version_made)
        kens = run("ken", "create_model", "kens-model", project=churn_id)
        version_made = run("ken", "create_model_version", kens.get("value", ""), "v1", project=churn_id)
        check("a project contributor adds a version to his own model", version_made["ok"], version_made)

        # A user share: exactly that model, and (implicit membership) its project; the list is
        # filtered to it.
        other = run("bob", "create_model", "other-model", project=project)
        check("workspace developer creates a second model", other["ok"], other)
        # 0.90 and later share with a user by external id: grace, who has no role, becomes a
        # guest. ZenML 0.80 names the user by their local account, which exists only after a
        # first login, and a non-member cannot log in before something is shared with them: on
        # 0.80 the share goes to heidi, a member (workspace contributor) who cannot read others'
        # models.
        sharee = "grace" if version >= (0, 90) else "heidi"
        if sharee == "heidi":
            read = run("heidi", "get_model", model_id, project=project)
            check("a workspace contributor cannot read others' models (403)", read.get("error") == "forbidden", read)
        grantee = USERS["grace"] if sharee == "grace" else local_name("heidi")
        shared = run("ada", "share", "model", model_id, "user", grantee, "read", project=project)
        check(f"org admin shares one model with {sharee}", shared["ok"], shared)
        seen = run(sharee, "list_models", project=project)
        check(f"{sharee}'s model list is filtered to the shared model", seen.get("value") == ["churn-model"], seen)
        read = run(sharee, "get_model", other.get("value", ""), project=project)
        check(f"{sharee} cannot read the model that was not shared (403)", read.get("error") == "forbidden", read)

        shares = 1
        if version >= (0, 90):
            # A share to a team grants its members access; erin (stack admin, team platform)
            # has no project access of her own. (Teams reach ZenML's share API in 0.90.)
            read = run("erin", "get_model", model_id, project=project)
            check("stack admin cannot read the model before the share", read.get("error") == "forbidden", read)
            shared = run("ada", "share", "model", model_id, "team", TEAMS["platform"], "read", project=project)
            check("org admin shares the model with team platform", shared["ok"], shared)
            read = run("erin", "get_model", model_id, project=project)
            check("a member of the team reads the shared model", read.get("value") == "churn-model", read)
            seen = run("erin", "list_models", project=project)
            check("the shared model is in the team member's list", seen.get("value") == ["churn-model"], seen)
            shares = 2

        # A removed member loses what was shared with her (ZenML Pro): judy, a member of the
        # workspace through her fraud and secret-reader roles, reads the model through a share
        # until both roles are removed from the directory.
        grantee = USERS["judy"] if version >= (0, 85) else local_name("judy")
        read = run("judy", "get_model", model_id, project=project)
        check("a member without a role in the project cannot read the model (403)",
              read.get("error") == "forbidden", read)
        shared = run("ada", "share", "model", model_id, "user", grantee, "read", project=project)
        check("org admin shares the model with judy", shared["ok"], shared)
        read = run("judy", "get_model", model_id, project=project)
        check("judy reads the shared model", read.get("value") == "churn-model", read)
        before = status(authz_port)
        text = directory.read_text()
        for line in ("  - {user: judy, role: viewer, project: fraud}\n",
                     "  - {user: judy, role: secret-reader, workspace: production}\n"):
            text = text.replace(line, "")
        directory.write_text(text)
        end = time.time() + 30
        while status(authz_port)["revision"] == before["revision"] and time.time() < end:
            time.sleep(0.2)
        after = status(authz_port)
        check("removing judy's roles purges her share",
              (before["shares"]["count"] - after["shares"]["count"]) == 1, (before["shares"], after["shares"]))
        tokens.pop("judy", None)
        read = run("judy", "get_model", model_id, project=project)
        check("judy, no longer a member, is refused entry", not_admitted(read), read)

        # Shares are durable: the sidecar restarts, the share is still in effect.
        authz.send_signal(signal.SIGTERM)
        authz.wait(timeout=30)
        authz = sidecar()
        processes.append(authz)
        wait_http(f"http://127.0.0.1:{authz_port}/readyz", 30, authz)
        read = run(sharee, "get_model", model_id, project=project)
        check("the share survives a sidecar restart", read.get("value") == "churn-model", read)

        # Deleting the resource purges its shares in the sidecar.
        before = status(authz_port)["shares"]["count"]
        deleted = run("bob", "delete_model", model_id, project=project)
        check("the owner deletes the model", deleted["ok"], deleted)
        after = status(authz_port)["shares"]["count"]
        check("deleting the model purged its shares", (before, after) == (shares, 0), (before, after))
    finally:
        stop(processes, logs)
        if failed:
            show_tails(work / "authz.log", work / "zenml.log")

    print(f"{passed} passed, {len(failed)} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
