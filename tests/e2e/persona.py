"""One operation as one persona, through ZenML's own Python client.

Run with the venv's python and the persona's environment (ZENML_STORE_URL,
ZENML_STORE_API_TOKEN=ZENPROKEY_..., ZENML_CONFIG_PATH, ZENML_ACTIVE_PROJECT_ID).
Prints one JSON line: {"ok": true, "value": ...} or {"ok": false, "error": "forbidden"|...}.
"""

import json
import sys
import uuid

import zenml
from zenml.client import Client
from zenml.constants import API, VERSION_1
from zenml.exceptions import IllegalOperationError

ZENML_VERSION = tuple(int(part) for part in zenml.__version__.split(".")[:2])


def run(op, args):
    client = Client()
    if op == "whoami":
        return client.active_user.name
    if op == "is_admin":
        return client.active_user.is_admin
    if op == "create_project":
        return str(client.create_project(name=args[0], description="e2e").id)
    if op == "create_model":
        return str(client.create_model(name=args[0]).id)
    if op == "create_model_version":
        return str(client.create_model_version(model_name_or_id=uuid.UUID(args[0]), name=args[1]).id)
    if op == "list_models":
        return sorted(m.name for m in client.list_models(size=100).items)
    if op == "get_model":
        return client.get_model(uuid.UUID(args[0])).name
    if op == "delete_model":
        client.delete_model(uuid.UUID(args[0]))
        return None
    if op == "create_secret":
        return str(client.create_secret(name=args[0], values={"token": "s3cr3t"}).id)
    if op == "get_secret":
        return sorted(client.get_secret(uuid.UUID(args[0])).secret_values)
    if op == "share":
        resource_type, resource_id, kind, grantee = args[:4]
        params = {"resource_type": resource_type, "resource_id": resource_id}
        if ZENML_VERSION >= (0, 90):
            params[f"{kind}_id"] = grantee
            path = "/users/resource_membership"
        else:  # 0.80: users only, named in the path
            path = f"/users/{grantee}/resource_membership"
        url = client.zen_store.url + API + VERSION_1 + path
        client.zen_store._request("POST", url, params=params, json=args[4:])
        return None
    raise SystemExit(f"unknown operation {op}")


def main():
    op, args = sys.argv[1], sys.argv[2:]
    try:
        result = {"ok": True, "value": run(op, args)}
    except IllegalOperationError as error:
        result = {"ok": False, "error": "forbidden", "detail": str(error)[:300]}
    except KeyError as error:
        result = {"ok": False, "error": "not_found", "detail": str(error)[:300]}
    except Exception as error:  # noqa: BLE001 - reported to the orchestrator, which fails the test
        result = {"ok": False, "error": type(error).__name__, "detail": str(error)[:500]}
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
