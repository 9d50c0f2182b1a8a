#!/usr/bin/env python3
"""Generates the benchmark data sets of zenml-authz (BENCHMARKS.md).

    scripts/gen-data.py [--out target/bench-data] [--sets sample,large,policies] [--refs names|ids] [--if-stale]

`--if-stale` regenerates only the sets that are missing or whose meta.json records other sources
(this generator, the bundled schemas and policies): what the benches and scripts/load.sh run.

Each set is a self-contained directory that `zenml-authz serve|validate` and the benches load:

    <out>/<set>/schemas/zenml.cedarschema   copy of schemas/
    <out>/<set>/policies/*.cedar            copy of the bundled policies (+ generated/*.cedar for `policies`)
    <out>/<set>/directory.yaml              the organization directory
    <out>/<set>/shares.db                   shares, in the SQLite schema of src/store.rs
    <out>/<set>/meta.json                   what to ask: workspace + enrollment key, questions, a batch of 20,
                                            an allowed_resource_ids question, a Cedar API request,
                                            and the fingerprint of the sources it was made from

Sets:
  sample    the bundled sample organization (policies/directory.yaml), a few shares
  large     (b) 10,000 users, 1,000 teams (~10 members), 20,000 bindings at organization/workspace/
            project scope (4 workspaces, 200 projects), 100 custom roles with grids, 50,000 shares
  policies  (c) the `large` organization plus 10,000 generated policies of the kind admins write
            (per-team and per-user grants on a project or workspace, per-user forbids), spread over
            actions and resource types; so it is also (b)+(c) for the reload and memory targets
  huge      (d) ten times `large`'s users, teams, bindings and projects (100,000 users, 10,000 teams,
            200,000 bindings, 2,000 projects) plus 50,000 generated policies; 50,000 shares. Only
            when asked for (`--sets huge`, `BENCH_SETS=huge`): it is not among the defaults

Deterministic: the same arguments give byte-identical files (fixed seed). Python 3 stdlib only.
"""

import argparse
import hashlib
import json
import os
import random
import shutil
import sqlite3
import sys
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

ACTIONS = ["create", "read", "update", "delete", "read_secret_value", "prune", "client", "promote",
           "backup_restore", "share"]
# (wire, Cedar type, project scoped) — src/zenml/resource.rs RESOURCE_TYPES
RESOURCE_TYPES = [
    ("artifact", "Artifact", True), ("artifact_version", "ArtifactVersion", True),
    ("code_repository", "CodeRepository", True), ("flavor", "Flavor", False),
    ("model", "Model", True), ("model_version", "ModelVersion", True),
    ("pipeline", "Pipeline", True), ("pipeline_run", "PipelineRun", True),
    ("pipeline_deployment", "PipelineDeployment", True), ("pipeline_build", "PipelineBuild", True),
    ("deployment", "Deployment", True), ("schedule", "Schedule", True),
    ("run_template", "RunTemplate", True), ("service", "Service", True),
    ("run_metadata", "RunMetadata", True), ("secret", "Secret", False),
    ("service_account", "ServiceAccount", False), ("service_connector", "ServiceConnector", False),
    ("stack", "Stack", False), ("stack_component", "StackComponent", False), ("tag", "Tag", False),
    ("project", "Project", False), ("trigger", "Trigger", True), ("webhook", "Webhook", True),
]
PROJECT_TYPES = [t for t in RESOURCE_TYPES if t[2]]
GLOBAL_TYPES = [t for t in RESOURCE_TYPES if not t[2] and t[0] != "project"]
CEDAR = {wire: cedar for wire, cedar, _ in RESOURCE_TYPES}
ORG_ROLES = ["admin", "manager", "viewer", "member", "billing_admin"]
WS_ROLES = ["admin", "developer", "contributor", "viewer", "stack_admin"]
PROJECT_ROLES = ["admin", "developer", "contributor", "viewer"]
# what ZenML asks most: reads (list, get), then creates and updates
ACTION_WEIGHTS = {"read": 60, "create": 10, "update": 10, "delete": 5, "share": 3, "promote": 3,
                  "client": 3, "read_secret_value": 2, "prune": 2, "backup_restore": 2}

SAMPLE = {
    "workspace": "99baf825-b21e-442f-ba98-8246d8d9ac88",
    "enrollment_key": "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0",
}


def new_uuid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def sha256(text):
    return hashlib.sha256(text.encode()).hexdigest()


def weighted_action(rng):
    return rng.choices(list(ACTION_WEIGHTS), weights=list(ACTION_WEIGHTS.values()))[0]


def q(text):
    """A YAML double-quoted scalar (our strings have no quotes or backslashes)."""
    return '"' + text + '"'


def copy_sources(target, with_directory):
    for sub in ("schemas", "policies"):
        dest = os.path.join(target, sub)
        os.makedirs(dest, exist_ok=True)
        for name in sorted(os.listdir(os.path.join(ROOT, sub))):
            if name.endswith(".cedar") or name.endswith(".cedarschema"):
                shutil.copyfile(os.path.join(ROOT, sub, name), os.path.join(dest, name))
    if with_directory:
        shutil.copyfile(os.path.join(ROOT, "policies", "directory.yaml"), os.path.join(target, "directory.yaml"))


def write_shares_db(path, shares):
    """`shares` rows: (workspace, resource, kind, grantee, [actions]); schema of src/store.rs."""
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    db = sqlite3.connect(path)
    db.executescript("""
PRAGMA journal_mode = WAL;
CREATE TABLE IF NOT EXISTS shares (
    workspace_id TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('user', 'team')),
    grantee_id   TEXT NOT NULL,
    actions      TEXT NOT NULL,
    shared_by    TEXT,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (workspace_id, resource, grantee_kind, grantee_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS share_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind         TEXT NOT NULL CHECK (kind IN ('set', 'purge')),
    workspace_id TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grantee_kind TEXT,
    grantee_id   TEXT,
    actions      TEXT,
    shared_by    TEXT
);
""")
    db.executemany(
        "INSERT OR REPLACE INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions, shared_by, updated_at)"
        " VALUES (?, ?, ?, ?, ?, NULL, '2026-01-01T00:00:00.000Z')",
        [(w, r, k, g, ",".join(sorted(set(a)))) for (w, r, k, g, a) in shares],
    )
    db.commit()
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


# ---- sample -----------------------------------------------------------------------------------

def gen_sample(target):
    copy_sources(target, with_directory=True)
    ws = SAMPLE["workspace"]
    churn, fraud = "dccff1d9-afc7-4c24-b5e8-e887447c69c0", "45f60d6d-243d-4e8e-8b96-0ae5e16357de"
    users = {  # persona -> id (policies/directory.yaml)
        "ada": "8fc22834-6a2b-46cc-8682-46129b366219", "bob": "8a5e8598-b203-4344-948f-32f6cd6c6e30",
        "dave": "9a1b418a-a4d7-49df-aa12-860e622a068d", "erin": "bd83f12c-3cd2-4db0-9bed-f2fa60d76d28",
        "grace": "7c43a64e-c811-4df9-a0f1-9b1a74220e53",
    }
    rng = random.Random(1)
    shared = [f"{churn}:pipeline/{new_uuid(rng)}" for _ in range(30)]
    shares = [(ws, r, "user", users["grace"], ["read"]) for r in shared]
    write_shares_db(os.path.join(target, "shares.db"), shares)
    questions = []
    for _ in range(1000):
        user = rng.choice(list(users.values()))
        kind = rng.random()
        if kind < 0.4:
            wire = rng.choice(PROJECT_TYPES)[0]
            resource, what = f"{rng.choice([churn, fraud])}:{wire}/{new_uuid(rng)}", "project resource"
        elif kind < 0.6:
            resource, what = rng.choice(shared), "shared resource"
        elif kind < 0.8:
            resource, what = f"{rng.choice(GLOBAL_TYPES)[0]}/{new_uuid(rng)}", "workspace resource"
        else:
            resource, what = f"{churn}:{rng.choice(PROJECT_TYPES)[0]}", "type level"
        questions.append({"user": user, "action": weighted_action(rng), "resource": resource, "kind": what})
    meta = {
        "set": "sample",
        "workspace": ws,
        "enrollment_key": SAMPLE["enrollment_key"],
        "questions": questions,
        "batch": {"user": users["grace"], "action": "read", "resources": shared[:20]},
        "allowed_ids": {"user": users["grace"], "action": "read", "resource": f"{churn}:pipeline"},
        "cedar": {"principal": f'ZenML::User::"{users["dave"]}"', "action": 'ZenML::Action::"read"',
                  "resource": f'ZenML::Project::"{churn}"'},
    }
    write_json(os.path.join(target, "meta.json"), meta)
    return {"users": 15, "shares": len(shares)}


# ---- large (b) --------------------------------------------------------------------------------

class Org:
    """The generated organization, kept for the `policies` set and the questions."""


def gen_org(rng, refs, scale=1):
    """The (b) organization, or `scale` times its projects, users, teams and bindings."""
    org = Org()
    org.refs = refs
    org.id = new_uuid(rng)
    org.name = "bigcorp"
    org.workspaces = []  # (id, name, enrollment key)
    for name in ["production", "staging", "research", "sandbox"]:
        org.workspaces.append((new_uuid(rng), name, f"zenml-authz-bench-enroll-{name}-{rng.getrandbits(64):016x}"))
    # 200 projects: 80 production, 60 staging, 40 research, 20 sandbox
    org.projects = []  # (id, name, workspace index)
    for wi, count in enumerate([80, 60, 40, 20]):
        for i in range(count * scale):
            org.projects.append((new_uuid(rng), f"project-{i:03d}", wi))
    org.users = [(new_uuid(rng), f"user{i:05d}") for i in range(10_000 * scale)]
    org.service_accounts = [(new_uuid(rng), f"bot-{i:03d}") for i in range(50)]
    org.teams = []  # (id, name, [member indices])
    for i in range(1_000 * scale):
        members = rng.sample(range(len(org.users)), rng.randint(5, 15))
        org.teams.append((new_uuid(rng), f"team-{i:04d}", members))
    org.roles = []  # (name, scope, base, {type: [actions]})
    for i in range(100):
        scope = "workspace" if i % 2 == 0 else "project"
        base = rng.choice([None, "viewer", "viewer", "contributor", "developer"])
        types = PROJECT_TYPES + ([("project", "Project", False)] if scope == "project" else GLOBAL_TYPES)
        grid = {}
        for wire, _, _ in rng.sample(types, rng.randint(2, 6)):
            grid[wire] = sorted(rng.sample(ACTIONS + ["write"], rng.randint(1, 3)))
        org.roles.append((f"custom-role-{i:03d}", scope, base, grid))
    # 20,000 bindings: 1% organization, 30% workspace, 69% project; holders 70% users, 25% teams,
    # 5% service accounts; 20% of workspace/project bindings are custom roles.
    org.bindings = []  # (holder kind, holder index, role, scope kind, scope index)
    ws_custom = [r for r in org.roles if r[1] == "workspace"]
    pr_custom = [r for r in org.roles if r[1] == "project"]
    for i in range(20_000 * scale):
        h = rng.random()
        if h < 0.70:
            holder = ("user", rng.randrange(len(org.users)))
        elif h < 0.95:
            holder = ("team", rng.randrange(len(org.teams)))
        else:
            holder = ("service_account", rng.randrange(len(org.service_accounts)))
        s = rng.random()
        if s < 0.01:
            role = "admin" if i % 40 == 0 else rng.choice(["viewer", "member", "manager", "billing_admin"])
            org.bindings.append(holder + (role, "organization", 0))
        elif s < 0.31:
            role = rng.choice(ws_custom)[0] if rng.random() < 0.2 else rng.choices(
                WS_ROLES, weights=[5, 40, 20, 30, 5])[0]
            org.bindings.append(holder + (role, "workspace", rng.choices(range(4), weights=[5, 3, 2, 1])[0]))
        else:
            role = rng.choice(pr_custom)[0] if rng.random() < 0.2 else rng.choices(
                PROJECT_ROLES, weights=[5, 45, 20, 30])[0]
            org.bindings.append(holder + (role, "project", rng.randrange(len(org.projects))))
    return org


def user_ref(org, index):
    uid, name = org.users[index]
    return uid if org.refs == "ids" else name


def write_directory(org, path):
    out = []
    w = out.append
    w("# Generated by scripts/gen-data.py: a large organization for the benchmarks (BENCHMARKS.md).")
    w(f"organization: {{id: {q(org.id)}, name: {org.name}}}")
    w("workspaces:")
    for wid, name, key in org.workspaces:
        w(f"  - {{id: {q(wid)}, name: {name}, enrollment_key_sha256: {sha256(key)}}}")
    w("projects:")
    for pid, name, wi in org.projects:
        ws = org.workspaces[wi]
        w(f"  - {{id: {q(pid)}, name: {name}, workspace: {q(ws[0] if org.refs == 'ids' else ws[1])}}}")
    w("users:")
    for i, (uid, name) in enumerate(org.users):
        # Every 10th user has an API key. More keys or e-mails would pass serde-saphyr's default
        # budget of 250,000 YAML nodes, which the directory loader uses (BENCHMARKS.md, findings).
        keys = f", api_keys: [{{name: laptop, sha256: {sha256(f'ZENPROKEY_{name}_{i:08x}')}}}]" if i % 10 == 0 else ""
        w(f"  - {{id: {q(uid)}, username: {name}{keys}}}")
    w("service_accounts:")
    for sid, name in org.service_accounts:
        w(f"  - {{id: {q(sid)}, name: {name}, api_keys: [{{name: ci, sha256: {sha256('ZENPROKEY_' + name)}}}]}}")
    w("teams:")
    for tid, name, members in org.teams:
        refs = ", ".join(q(user_ref(org, m)) for m in members)
        w(f"  - {{id: {q(tid)}, name: {name}, members: [{refs}]}}")
    w("roles:")
    for name, scope, base, grid in org.roles:
        w(f"  - name: {name}")
        w(f"    scope: {scope}")
        if base:
            w(f"    base: {base}")
        w("    permissions:")
        for wire, actions in grid.items():
            w(f"      {wire}: [{', '.join(actions)}]")
    w("bindings:")
    for kind, hi, role, scope, si in org.bindings:
        if kind == "user":
            holder = q(user_ref(org, hi))
        elif kind == "team":
            t = org.teams[hi]
            holder = q(t[0] if org.refs == "ids" else t[1])
        else:
            s = org.service_accounts[hi]
            holder = q(s[0] if org.refs == "ids" else s[1])
        if scope == "organization":
            where = q(org.id if org.refs == "ids" else org.name)
        elif scope == "workspace":
            ws = org.workspaces[si]
            where = q(ws[0] if org.refs == "ids" else ws[1])
        else:
            pid, pname, wi = org.projects[si]
            where = q(pid if org.refs == "ids" else f"{org.workspaces[wi][1]}/{pname}")
        w(f"  - {{{kind}: {holder}, role: {role}, {scope}: {where}}}")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def gen_shares(org, rng, count=50_000):
    """Shares skewed like real use: 20% of them in 10 hot projects."""
    hot = rng.sample(range(len(org.projects)), 10)
    shares = []
    for _ in range(count):
        r = rng.random()
        if r < 0.85:
            pi = rng.choice(hot) if rng.random() < 0.2 else rng.randrange(len(org.projects))
            pid, _, wi = org.projects[pi]
            resource = f"{pid}:{rng.choice(PROJECT_TYPES)[0]}/{new_uuid(rng)}"
        else:
            wi = rng.choices(range(4), weights=[5, 3, 2, 1])[0]
            resource = f"{rng.choice(GLOBAL_TYPES)[0]}/{new_uuid(rng)}"
        if rng.random() < 0.8:
            kind, grantee = "user", org.users[rng.randrange(len(org.users))][0]
        else:
            kind, grantee = "team", org.teams[rng.randrange(len(org.teams))][0]
        actions = rng.sample(["read", "update", "delete", "share", "promote"], rng.randint(1, 3))
        if "read" not in actions and rng.random() < 0.7:
            actions.append("read")
        shares.append((org.workspaces[wi][0], resource, kind, grantee, actions))
    return shares, hot


def holders_in_workspace(org, wi):
    """Users with any role in workspace `wi` (directly or through a team), and org admins."""
    team_members = {t: org.teams[t][2] for t in range(len(org.teams))}
    busy = set()
    for kind, hi, role, scope, si in org.bindings:
        hit = (scope == "organization" and role == "admin") or (scope == "workspace" and si == wi) or (
            scope == "project" and org.projects[si][2] == wi)
        if not hit:
            continue
        if kind == "user":
            busy.add(hi)
        elif kind == "team":
            busy.update(team_members[hi])
    return busy


def org_questions(org, rng, shares, hot, extra=None, count=2000):
    """Questions of workspace 0 (`production`), the one the HTTP harness logs in as."""
    wi = 0
    ws = org.workspaces[wi][0]
    projects = [p for p in org.projects if p[2] == wi]
    ws_shares = [s for s in shares if s[0] == ws]
    bound = sorted(holders_in_workspace(org, wi))
    questions = []
    for _ in range(count):
        if extra and rng.random() < 0.5:
            questions.append(dict(extra(rng), kind="generated policy"))
            continue
        r = rng.random()
        user = org.users[rng.choice(bound) if rng.random() < 0.8 else rng.randrange(len(org.users))][0]
        if r < 0.45:
            resource = f"{rng.choice(projects)[0]}:{rng.choice(PROJECT_TYPES)[0]}/{new_uuid(rng)}"
            what = "project resource"
        elif r < 0.65:
            s = rng.choice(ws_shares)
            resource, what = s[1], "shared resource"
            if s[2] == "user" and rng.random() < 0.5:
                user = s[3]
        elif r < 0.80:
            resource, what = f"{rng.choice(GLOBAL_TYPES)[0]}/{new_uuid(rng)}", "workspace resource"
        elif r < 0.90:
            resource, what = f"{rng.choice(projects)[0]}:{rng.choice(PROJECT_TYPES)[0]}", "type level"
        else:
            resource, what = f"project/{rng.choice(projects)[0]}", "project"
        questions.append({"user": user, "action": weighted_action(rng), "resource": resource, "kind": what})
    # ZenML's list page: 20 resources of a hot project, for a user without a role there.
    busy = holders_in_workspace(org, wi)
    hot_ws = [org.projects[h] for h in hot if org.projects[h][2] == wi] or projects
    hot_pid = hot_ws[0][0]
    counts = {}
    for s in ws_shares:
        if s[1].startswith(hot_pid + ":"):
            wire = s[1].split(":", 1)[1].split("/", 1)[0]
            counts[wire] = counts.get(wire, 0) + 1
    wire = max(sorted(counts), key=lambda k: counts[k])
    candidates = [s for s in ws_shares if s[1].startswith(f"{hot_pid}:{wire}/")]
    lister = next((s[3] for s in candidates if s[2] == "user" and org_index(org, s[3]) not in busy),
                  org.users[next(i for i in range(len(org.users)) if i not in busy)][0])
    batch_resources = [s[1] for s in ws_shares if s[1].startswith(hot_pid + ":")][:20]
    return {
        "workspace": ws,
        "enrollment_key": org.workspaces[wi][2],
        "questions": questions,
        "batch": {"user": lister, "action": "read", "resources": batch_resources},
        "allowed_ids": {"user": lister, "action": "read", "resource": f"{hot_pid}:{wire}",
                        "candidates": len(candidates)},
        "cedar": {"principal": f'ZenML::User::"{org.users[bound[0]][0]}"', "action": 'ZenML::Action::"read"',
                  "resource": f'ZenML::Project::"{projects[0][0]}"'},
    }


_USER_INDEX = {}


def org_index(org, user_id):
    if not _USER_INDEX:
        _USER_INDEX.update({uid: i for i, (uid, _) in enumerate(org.users)})
    return _USER_INDEX.get(user_id)


def gen_large(target, refs, seed=42, scale=1):
    rng = random.Random(seed)
    copy_sources(target, with_directory=False)
    org = gen_org(rng, refs, scale)
    write_directory(org, os.path.join(target, "directory.yaml"))
    shares, hot = gen_shares(org, rng)
    write_shares_db(os.path.join(target, "shares.db"), shares)
    meta = {"set": os.path.basename(target)}
    meta.update(org_questions(org, rng, shares, hot))
    write_json(os.path.join(target, "meta.json"), meta)
    return org, rng, shares, hot


# ---- policies (c) -----------------------------------------------------------------------------

def action_list(actions):
    if len(actions) == 1:
        return f'action == ZenML::Action::"{actions[0]}"'
    return "action in [" + ", ".join(f'ZenML::Action::"{a}"' for a in actions) + "]"


def gen_policies(org, rng, count=10_000):
    """Policies admins write on top of the role model; each returns (text, hit) where `hit` makes a
    question the policy applies to (for workspace `production`), or None."""
    policies = []
    ws_ids = [w[0] for w in org.workspaces]
    for i in range(count):
        pid, pname, wi = rng.choice(org.projects)
        wid = ws_ids[wi]
        ti = rng.randrange(len(org.teams))
        tid = org.teams[ti][0]
        ui = rng.randrange(len(org.users))
        uid = org.users[ui][0]
        actions = rng.sample(ACTIONS, rng.choices([1, 2, 3], weights=[4, 4, 2])[0])
        k = rng.random()
        if k < 0.40:
            wire, cedar, _ = rng.choice(PROJECT_TYPES)
            text = (f'// team {org.teams[ti][1]}: {", ".join(actions)} on {wire}s of {pname}\n'
                    f'@id("grant-team-{i:05d}")\n'
                    f'permit (principal in ZenML::Team::"{tid}", {action_list(actions)}, resource is ZenML::{cedar})\n'
                    f'when {{ resource.project == ZenML::Project::"{pid}" }};')
            hit = ("team", ti, rng.choice(actions), lambda r, pid=pid, wire=wire: f"{pid}:{wire}/{new_uuid(r)}")
        elif k < 0.55:
            wire, cedar, _ = rng.choice(PROJECT_TYPES)
            text = (f'@id("grant-user-{i:05d}")\n'
                    f'permit (principal == ZenML::User::"{uid}", {action_list(actions)}, resource is ZenML::{cedar})\n'
                    f'when {{ resource.project == ZenML::Project::"{pid}" }};')
            hit = ("user", ui, rng.choice(actions), lambda r, pid=pid, wire=wire: f"{pid}:{wire}/{new_uuid(r)}")
        elif k < 0.65:
            wire, cedar, _ = rng.choice(GLOBAL_TYPES)
            text = (f'@id("grant-team-ws-{i:05d}")\n'
                    f'permit (principal in ZenML::Team::"{tid}", {action_list(actions)}, resource is ZenML::{cedar})\n'
                    f'when {{ resource.workspace == ZenML::Workspace::"{wid}" }};')
            hit = ("team", ti, rng.choice(actions), lambda r, wire=wire: f"{wire}/{new_uuid(r)}")
        elif k < 0.75:
            text = (f'@id("grant-project-read-{i:05d}")\n'
                    f'permit (principal in ZenML::Team::"{tid}", action == ZenML::Action::"read", '
                    f'resource == ZenML::Project::"{pid}");')
            hit = ("team", ti, "read", lambda r, pid=pid: f"project/{pid}")
        elif k < 0.85:
            text = (f'@id("grant-project-scope-{i:05d}")\n'
                    f'permit (principal in ZenML::Team::"{tid}", {action_list(actions)}, '
                    f'resource in ZenML::Project::"{pid}");')
            hit = ("team", ti, rng.choice(actions),
                   lambda r, pid=pid: f"{pid}:{r.choice(PROJECT_TYPES)[0]}/{new_uuid(r)}")
        elif k < 0.95:
            denied = rng.sample(["delete", "prune", "update", "share"], rng.randint(1, 2))
            text = (f'// offboarding: {org.users[ui][1]} may no longer {" or ".join(denied)} in {pname}\n'
                    f'@id("forbid-user-{i:05d}")\n'
                    f'forbid (principal == ZenML::User::"{uid}", {action_list(denied)}, resource)\n'
                    f'when {{ resource has project && resource.project == ZenML::Project::"{pid}" }};')
            hit = ("user", ui, denied[0],
                   lambda r, pid=pid: f"{pid}:{r.choice(PROJECT_TYPES)[0]}/{new_uuid(r)}")
        else:
            wire, cedar, _ = rng.choice([t for t in GLOBAL_TYPES if t[0] in ("secret", "service_connector", "stack")])
            denied = {"secret": "read_secret_value", "service_connector": "client", "stack": "delete"}[wire]
            text = (f'@id("forbid-user-ws-{i:05d}")\n'
                    f'forbid (principal == ZenML::User::"{uid}", action == ZenML::Action::"{denied}", '
                    f'resource is ZenML::{cedar})\n'
                    f'when {{ resource.workspace == ZenML::Workspace::"{wid}" }};')
            hit = ("user", ui, denied, lambda r, wire=wire: f"{wire}/{new_uuid(r)}")
        policies.append((text, hit if wi == 0 else None))
    return policies


def gen_policy_set(target, refs, scale=1, count=10_000):
    org, rng, shares, hot = gen_large(target, refs, scale=scale)
    policies = gen_policies(org, rng, count)
    gen_dir = os.path.join(target, "policies", "generated")
    os.makedirs(gen_dir, exist_ok=True)
    per_file = 500
    for f in range(0, len(policies), per_file):
        with open(os.path.join(gen_dir, f"grants-{f // per_file:02d}.cedar"), "w") as out:
            out.write("// Generated by scripts/gen-data.py: per-team and per-user grants and forbids.\n\n")
            out.write("\n\n".join(text for text, _ in policies[f:f + per_file]) + "\n")
    hits = [h for _, h in policies if h is not None]

    def extra(r):
        kind, index, action, resource = r.choice(hits)
        if kind == "team":
            user = org.users[r.choice(org.teams[index][2])][0]
        else:
            user = org.users[index][0]
        return {"user": user, "action": action, "resource": resource(r)}

    meta = {"set": os.path.basename(target), "generated_policies": len(policies)}
    meta.update(org_questions(org, random.Random(7), shares, hot, extra=extra))
    write_json(os.path.join(target, "meta.json"), meta)
    return org, shares


def fingerprint():
    """What a data set is made from: this generator and the bundled schemas and policies (copied
    into every set). A set whose meta.json records another fingerprint is stale."""
    digest = hashlib.sha256()
    with open(os.path.abspath(__file__), "rb") as f:
        digest.update(f.read())
    for sub in ("schemas", "policies"):
        for name in sorted(os.listdir(os.path.join(ROOT, sub))):
            if name.endswith((".cedar", ".cedarschema", ".yaml")):
                digest.update(f"{sub}/{name}\0".encode())
                with open(os.path.join(ROOT, sub, name), "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()


def is_current(target, sources):
    try:
        with open(os.path.join(target, "meta.json")) as f:
            return json.load(f).get("sources") == sources
    except (OSError, ValueError):
        return False


def write_json(path, value):
    if os.path.basename(path) == "meta.json":
        value = dict(value, sources=fingerprint())
    with open(path, "w") as f:
        json.dump(value, f, indent=1, sort_keys=True)
        f.write("\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default=os.path.join(ROOT, "target", "bench-data"))
    parser.add_argument("--sets", default="sample,large,policies")
    parser.add_argument("--refs", choices=["names", "ids"], default="names",
                        help="how bindings and team members refer to entries (names: as people write them)")
    parser.add_argument("--if-stale", action="store_true",
                        help="only (re)generate sets that are missing or were made from other sources")
    args = parser.parse_args()
    sources = fingerprint()
    for name in args.sets.split(","):
        target = os.path.join(args.out, name)
        if args.if_stale and is_current(target, sources):
            continue
        if os.path.isdir(target):
            shutil.rmtree(target)
        os.makedirs(target)
        if name == "sample":
            gen_sample(target)
        elif name == "large":
            gen_large(target, args.refs)
        elif name == "policies":
            gen_policy_set(target, args.refs)
        elif name == "huge":
            gen_policy_set(target, args.refs, scale=10, count=50_000)
        else:
            sys.exit(f"unknown set `{name}` (sample, large, policies, huge)")
        size = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(target) for f in fs)
        print(f"{target}: {size / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
