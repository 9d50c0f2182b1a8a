#!/usr/bin/env python3
"""Writes the committed seed inputs of the fuzz targets (FUZZING.md), from the README's
examples, the resource strings of tests/zenml_api.rs and the sample directory. Re-run after
changing this file: `python3 fuzz/seeds/generate.py` (from the repository root)."""

import json
import pathlib
import shutil

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEEDS = ROOT / "fuzz" / "seeds"

# The sample directory (policies/directory.yaml) and tests/zenml_api.rs.
PRODUCTION = "99baf825-b21e-442f-ba98-8246d8d9ac88"
STAGING = "d5320975-d92d-4b35-9413-9b848998b5bf"
CHURN = "dccff1d9-afc7-4c24-b5e8-e887447c69c0"
FRAUD = "45f60d6d-243d-4e8e-8b96-0ae5e16357de"
SANDBOX = "42f33105-edf6-4bee-8385-c589bb25ded0"
ID1 = "11111111-1111-4111-8111-111111111111"
ID2 = "22222222-2222-4222-8222-222222222222"
ID3 = "33333333-3333-4333-8333-333333333333"
ID_HEX = "abcdefab-cdef-4abc-8def-abcdefabcdef"
DAVE = "9a1b418a-a4d7-49df-aa12-860e622a068d"
GRACE = "7c43a64e-c811-4df9-a0f1-9b1a74220e53"
ERIN = "bd83f12c-3cd2-4db0-9bed-f2fa60d76d28"
ML_ENG = "bba0b1e4-baaf-4db0-862c-0a6718adc0fe"

RESOURCES = [
    "stack",
    f"stack/{ID1}",
    f"project/{CHURN}",
    f"{CHURN}:pipeline",
    f"{CHURN}:pipeline_run/{ID1}",
    f"{CHURN}:model/{ID2}",
    f"{FRAUD}:model/{ID3}",
    f"{FRAUD}:model_version",
    f"{SANDBOX}:artifact/{ID1}",
    f"{CHURN}:event_source/{ID1}",
    f"stack/{ID_HEX.upper()}",
    f"stack/{{{ID1}}}",
    f"secret/{ID2.replace('-', '')}",
    f"{PRODUCTION}@server:stack/{ID1}",
    f"{STAGING}@server:pipeline/{ID3}",
    f"{PRODUCTION}@server:stack",
    f"{PRODUCTION}@server:stack/x",
    f"nope:pipeline/{ID1}",
    "stack/",
    f"{CHURN}:stack",
    f"{CHURN}:",
    f"stack/{ID1}/x",
]


def entity(type_name, id_):
    return {"type": f"ZenML::{type_name}", "id": id_}


def uid(type_name, id_):
    return f'ZenML::{type_name}::"{id_}"'


STACK = "6f1c0000-0000-4000-8000-000000000001"
CEDAR = {
    "readme-allow": {
        "principal": uid("User", DAVE),
        "action": uid("Action", "read"),
        "resource": uid("Project", CHURN),
    },
    "readme-objects": {
        "principal": entity("User", GRACE),
        "action": entity("Action", "read"),
        "resource": entity("Project", CHURN),
    },
    "readme-additional-entities": {
        "principal": uid("User", ERIN),
        "action": uid("Action", "delete"),
        "resource": uid("Stack", STACK),
        "additional_entities": [
            {
                "uid": entity("Stack", STACK),
                "attrs": {"workspace": {"__entity": entity("Workspace", PRODUCTION)}},
                "parents": [entity("Workspace", PRODUCTION)],
            }
        ],
    },
    "readme-batch": {
        "requests": [
            {"principal": uid("User", DAVE), "action": uid("Action", "read"), "resource": uid("Project", CHURN)},
            {"principal": uid("User", DAVE), "action": uid("Action", "read"), "resource": uid("Project", FRAUD)},
            {"principal": uid("User", DAVE), "action": uid("Action", "fly"), "resource": uid("Project", FRAUD)},
        ]
    },
    "context-shares": {
        "principal": {"__entity": entity("User", DAVE)},
        "action": uid("Action", "update"),
        "resource": uid("PipelineRun", ID1),
        "context": {
            "permissions": [{"__entity": entity("Role", f"{CHURN}/model-promoter")}],
            "shared_with_users": [{"__entity": entity("User", DAVE)}],
            "shared_with_teams": [{"__entity": entity("Team", ML_ENG)}],
        },
        "additional_entities": [
            {
                "uid": entity("PipelineRun", ID1),
                "attrs": {
                    "workspace": {"__entity": entity("Workspace", PRODUCTION)},
                    "project": {"__entity": entity("Project", CHURN)},
                },
                "parents": [entity("Project", CHURN)],
            }
        ],
    },
    # Request-scoped roles in a short parent chain (the known finding is a long one).
    "role-chain": {
        "principal": uid("User", DAVE),
        "action": uid("Action", "read"),
        "resource": uid("Project", CHURN),
        "context": {"permissions": [{"__entity": entity("Role", "r0")}]},
        "additional_entities": [
            {"uid": entity("Role", f"r{i}"), "attrs": {}, "parents": [entity("Role", f"r{i + 1}")]}
            for i in range(3)
        ]
        + [{"uid": entity("Role", "r3"), "attrs": {}, "parents": [entity("Role", f"{CHURN}/developer")]}],
    },
    "entities-null": {
        "principal": uid("User", DAVE),
        "action": uid("Action", "client"),
        "resource": uid("Project", FRAUD),
        "entities": None,
        "context": None,
    },
}


def zenml_seed(workspace, user, action, shares, body):
    """Header bytes (`zenml_request`'s `Header`: workspace, user, action, share[4]) + body."""
    return bytes([workspace, user, action, *shares]) + body


def main():
    for target in ["resource_string", "cedar_request", "zenml_request", "directory"]:
        shutil.rmtree(SEEDS / target, ignore_errors=True)
        (SEEDS / target).mkdir(parents=True)

    for i, resource in enumerate(RESOURCES):
        (SEEDS / "resource_string" / f"{i:02}").write_text(resource)

    for name, body in CEDAR.items():
        (SEEDS / "cedar_request" / f"{name}.json").write_text(json.dumps(body, indent=1))

    # Picks are taken modulo the sorted lists: workspace 0 = production (99b...),
    # user/action indices vary; share bytes: grantee in bits 0-1, asked action bit 2, extra
    # action in bits 3-6.
    bodies = {
        "post-project-scoped": json.dumps([r for r in RESOURCES if r.startswith(CHURN) or r.startswith(FRAUD)]),
        "post-global": json.dumps(["stack", f"stack/{ID1}", f"project/{CHURN}", f"project/{SANDBOX}", "secret"]),
        "post-tenant-era": json.dumps([f"{PRODUCTION}@server:stack/{ID1}", f"{STAGING}@server:stack/{ID3}", f"{PRODUCTION}@server:pipeline"]),
        "get-lines": "\n".join([f"{CHURN}:pipeline_run/{ID1}", f"{CHURN}:pipeline", f"project/{FRAUD}"]),
    }
    headers = [
        (0, 3, 1, [0b101, 0b110, 0b0001001, 0]),
        (0, 7, 0, [0, 0, 0, 0]),
        (1, 11, 3, [0b111, 0b101, 0b0010011, 0b0100010]),
        (0, 0, 9, [1, 2, 3, 0b1010001]),
    ]
    for (name, body), (ws, user, action, shares) in zip(bodies.items(), headers):
        (SEEDS / "zenml_request" / name).write_bytes(zenml_seed(ws, user, action, shares, body.encode()))

    shutil.copy(ROOT / "policies" / "directory.yaml", SEEDS / "directory" / "sample.yaml")
    (SEEDS / "directory" / "small.yaml").write_text(
        f"""organization: {{id: 743818ac-9cc4-413c-aa3b-0d14700954e9, name: acme}}
tenants:
  - {{id: {PRODUCTION}, name: production}}
projects:
  - {{id: {CHURN}, name: churn, workspace: production}}
teams:
  - {{id: {ML_ENG}, name: ml-eng, members: [dave]}}
users:
  - {{id: {DAVE}, username: dave}}
service_accounts:
  - {{id: 1bc20b2c-3eb2-4348-86a1-d94f1b28b8e7, name: ci-bot}}
roles:
  - name: promoter
    scope: project
    base: viewer
    permissions: {{model: [promote, write], "*": [read]}}
bindings:
  - {{team: ml-eng, role: developer, workspace: production}}
  - {{user: dave, role: promoter, project: production/churn}}
  - {{service_account: ci-bot, role: admin, organization: acme}}
"""
    )
    (SEEDS / "directory" / "entities.json").write_text(
        json.dumps(
            [
                {"uid": entity("User", DAVE), "attrs": {"name": "dave", "is_service_account": False, "active": True}, "parents": [entity("Team", ML_ENG)]},
                {"uid": entity("Team", ML_ENG), "attrs": {"name": "ml-eng"}, "parents": []},
            ],
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
