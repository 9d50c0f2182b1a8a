//! The HTTP API, end to end: the real binary on 127.0.0.1:0, real HTTP requests.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{ADA, CAROL, CHURN, DAVE, GRACE, MALLORY, PRODUCTION};

use common::Server;
use serde_json::{Value, json};

fn user(id: &str) -> String {
    format!("ZenML::User::\"{id}\"")
}

fn action(name: &str) -> String {
    format!("ZenML::Action::\"{name}\"")
}

/// A stack in the production workspace, as a request-scoped entity.
fn stack_entity(id: &str) -> Value {
    json!({
        "uid": {"type": "ZenML::Stack", "id": id},
        "attrs": {"workspace": {"__entity": {"type": "ZenML::Workspace", "id": PRODUCTION}}},
        "parents": [{"type": "ZenML::Workspace", "id": PRODUCTION}]
    })
}

fn stack_request(principal: &str, action_name: &str) -> Value {
    json!({
        "principal": user(principal),
        "action": action(action_name),
        "resource": {"type": "ZenML::Stack", "id": "s1"},
        "additional_entities": [stack_entity("s1")],
    })
}

#[test]
fn cedar_api_decision_table() {
    let server = Server::start(&[]);
    let churn = json!({"__entity": {"type": "ZenML::Project", "id": CHURN}});
    // (what, request, expected decision, expected determining policies)
    let table: Vec<(&str, Value, &str, Vec<&str>)> = vec![
        (
            "org admin reads a stack",
            stack_request(ADA, "read"),
            "Allow",
            vec!["org-admin"],
        ),
        (
            "org admin deletes a stack",
            stack_request(ADA, "delete"),
            "Allow",
            vec!["org-admin"],
        ),
        (
            "workspace viewer reads a stack",
            stack_request(CAROL, "read"),
            "Allow",
            vec!["workspace-viewer"],
        ),
        (
            "workspace viewer cannot delete",
            stack_request(CAROL, "delete"),
            "Deny",
            vec![],
        ),
        (
            "member with no role reads nothing",
            stack_request(GRACE, "read"),
            "Deny",
            vec![],
        ),
        (
            "deactivated admin is forbidden",
            stack_request(MALLORY, "read"),
            "Deny",
            vec!["deactivated-principal"],
        ),
        (
            "project developer reads a stored project (no request-scoped entities)",
            json!({"principal": user(DAVE), "action": action("read"), "resource": churn}),
            "Allow",
            vec!["project-member-read-project"],
        ),
        (
            "project developer cannot update the project",
            json!({"principal": {"type": "ZenML::User", "id": DAVE}, "action": {"type": "ZenML::Action", "id": "update"}, "resource": churn}),
            "Deny",
            vec![],
        ),
        (
            "workspace viewer reads every project",
            json!({"principal": user(CAROL), "action": action("read"), "resource": format!("ZenML::Project::\"{CHURN}\""), "context": {}}),
            "Allow",
            vec!["workspace-viewer"],
        ),
        (
            "a share in the context grants exactly that action",
            json!({
                "principal": user(GRACE), "action": action("read"), "resource": {"type": "ZenML::Stack", "id": "s1"},
                "context": {"shared_with_users": [{"__entity": {"type": "ZenML::User", "id": GRACE}}]},
                "additional_entities": [stack_entity("s1")],
            }),
            "Allow",
            vec!["share-user"],
        ),
    ];
    for (what, request, decision, reasons) in table {
        let (status, body) = server.post("/v1/is_authorized", &request);
        assert_eq!(status, 200, "{what}: {body}");
        assert_eq!(body["decision"], decision, "{what}: {body}");
        assert_eq!(body["diagnostics"]["reason"], json!(reasons), "{what}: {body}");
        assert!(body["diagnostics"]["revision"].is_string(), "{what}: {body}");
    }
}

#[test]
fn unknown_principal_is_denied_with_the_evaluation_error() {
    let server = Server::start(&[]);
    let (status, body) = server.post("/v1/is_authorized", &stack_request("nobody", "read"));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["decision"], "Deny");
    let errors = body["diagnostics"]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains("deactivated-principal")),
        "{body}"
    );
}

#[test]
fn bad_input_table() {
    let server = Server::start(&["--max-batch", "3"]);
    let good = stack_request(CAROL, "read");
    let mut unknown_field = good.clone();
    unknown_field["princpal"] = json!("x");
    let mut with_entities = good.clone();
    with_entities["entities"] = json!([]);
    let mut redefine = good.clone();
    redefine["additional_entities"] = json!([{
        "uid": {"type": "ZenML::User", "id": ADA},
        "attrs": {"name": "evil", "is_service_account": false, "active": true}, "parents": []
    }]);
    let mut bad_entity = good.clone();
    bad_entity["additional_entities"] =
        json!([{"uid": {"type": "ZenML::Stack", "id": "s1"}, "attrs": {"workspace": 7}, "parents": []}]);
    // (what, path, raw body, expected status, expected message part)
    let table: Vec<(&str, &str, String, u16, &str)> = vec![
        ("malformed JSON", "/v1/is_authorized", "{\"principal\": ".into(), 400, "malformed JSON: EOF while parsing"),
        ("not an object", "/v1/is_authorized", "[]".into(), 400, "expected a JSON object"),
        ("missing principal", "/v1/is_authorized", json!({"action": action("read"), "resource": "ZenML::Stack::\"s\""}).to_string(), 400, "missing field `principal`"),
        ("unknown field", "/v1/is_authorized", unknown_field.to_string(), 400, "unknown field `princpal`"),
        ("store replacement", "/v1/is_authorized", with_entities.to_string(), 400, "entities: replacing the store"),
        ("unknown entity type", "/v1/is_authorized", json!({"principal": "ZenML::Robot::\"r\"", "action": action("read"), "resource": "ZenML::Stack::\"s\""}).to_string(), 400, "principal: unknown entity type `ZenML::Robot`"),
        ("unknown action", "/v1/is_authorized", json!({"principal": user(ADA), "action": action("fly"), "resource": "ZenML::Stack::\"s\""}).to_string(), 400, "action: unknown action `ZenML::Action::\"fly\"`"),
        ("not an entity reference", "/v1/is_authorized", json!({"principal": user(ADA), "action": action("read"), "resource": 42}).to_string(), 400, "resource: expected an entity reference"),
        ("unparseable entity reference", "/v1/is_authorized", json!({"principal": "alice", "action": action("read"), "resource": "ZenML::Stack::\"s\""}).to_string(), 400, "principal: `alice`"),
        ("resource type the action does not apply to", "/v1/is_authorized", json!({"principal": user(ADA), "action": action("read"), "resource": user(ADA)}).to_string(), 400, "resource:"),
        ("context attribute of the wrong type", "/v1/is_authorized", json!({"principal": user(ADA), "action": action("read"), "resource": "ZenML::Stack::\"s\"", "context": {"permissions": "all"}}).to_string(), 400, "context:"),
        ("context not an object", "/v1/is_authorized", json!({"principal": user(ADA), "action": action("read"), "resource": "ZenML::Stack::\"s\"", "context": [1]}).to_string(), 400, "context: expected a JSON object"),
        ("request-scoped entity not matching the schema", "/v1/is_authorized", bad_entity.to_string(), 400, "additional_entities[0]:"),
        ("request-scoped entity redefining a stored one", "/v1/is_authorized", redefine.to_string(), 400, "is already in the directory"),
        ("batch without requests", "/v1/batch_is_authorized", "{}".into(), 400, "missing field `requests`"),
        ("batch requests not an array", "/v1/batch_is_authorized", json!({"requests": {}}).to_string(), 400, "requests: expected an array"),
        ("batch over the item limit", "/v1/batch_is_authorized", json!({"requests": [good, good, good, good]}).to_string(), 400, "4 items is more than the limit of 3"),
        ("batch requests null", "/v1/batch_is_authorized", json!({"requests": null}).to_string(), 400, "requests: expected an array"),
        ("batch not an object", "/v1/batch_is_authorized", "[{}]".into(), 400, "request body: expected a JSON object with `requests`"),
        ("batch with another field", "/v1/batch_is_authorized", json!({"requests": [], "extra": [1, {"a": 2}]}).to_string(), 400, "unknown field `extra`; expected `requests`"),
        ("batch malformed", "/v1/batch_is_authorized", "{\"requests\": [{}".into(), 400, "malformed JSON: EOF while parsing"),
        ("trailing characters", "/v1/is_authorized", format!("{good} x"), 400, "malformed JSON: trailing characters"),
        ("request-scoped entities not an array", "/v1/is_authorized", json!({"principal": user(ADA), "action": action("read"), "resource": "ZenML::Stack::\"s\"", "additional_entities": {}}).to_string(), 400, "additional_entities: expected an array of Cedar entities"),
    ];
    for (what, path, body, status, message) in table {
        let (got_status, got) = server.post_raw(path, &body);
        assert_eq!(got_status, status, "{what}: {got}");
        assert_eq!(got["error"]["code"], "bad_request", "{what}: {got}");
        let text = got["error"]["message"].as_str().unwrap_or_default();
        assert!(text.contains(message), "{what}: expected `{message}` in `{text}`");
    }
}

#[test]
fn batch_answers_in_order_and_a_bad_item_gets_its_own_error() {
    let server = Server::start(&[]);
    let body = json!({"requests": [
        stack_request(ADA, "read"),
        {"principal": user(ADA), "action": action("fly"), "resource": "ZenML::Stack::\"s\""},
        stack_request(GRACE, "read"),
        [stack_request(ADA, "read")],
    ]});
    let (status, answer) = server.post("/v1/batch_is_authorized", &body);
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 4);
    assert_eq!(
        results[3]["error"]["message"],
        "requests[3]: request: expected a JSON object"
    );
    assert_eq!(results[0]["decision"], "Allow");
    assert_eq!(results[1]["error"]["code"], "bad_request");
    assert!(
        results[1]["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("requests[1]: action: unknown action")
    );
    assert!(
        results[1].get("decision").is_none(),
        "an error is not a decision: {answer}"
    );
    assert_eq!(results[2]["decision"], "Deny");
}

/// A batch whose items share request-scoped entities (parsed once, sliced once), change them
/// (a stack of another workspace, a temporary team), return to them, or are bad, answers each
/// item exactly as `/v1/is_authorized` answers it alone.
#[test]
fn batch_items_sharing_entities_answer_as_single_requests() {
    use common::sample::{BOB, ML_ENG, STAGING};
    let server = Server::start(&[]);
    let staging_stack = json!([{
        "uid": {"type": "ZenML::Stack", "id": "s2"},
        "attrs": {"workspace": {"__entity": {"type": "ZenML::Workspace", "id": STAGING}}},
        "parents": [{"type": "ZenML::Workspace", "id": STAGING}]
    }]);
    let temp_team = json!([
        stack_entity("s1"),
        {"uid": {"type": "ZenML::User", "id": "temp"}, "attrs": {"name": "temp", "is_service_account": false, "active": true},
         "parents": [{"type": "ZenML::Team", "id": ML_ENG}]},
    ]);
    let mut items = Vec::new();
    for (principal, action_name) in [
        (BOB, "update"),
        (CAROL, "update"),
        (ADA, "delete"),
        (GRACE, "read"),
        (DAVE, "read"),
        (MALLORY, "update"),
    ] {
        items.push(stack_request(principal, action_name));
        items.push(
            json!({"principal": user(principal), "action": action(action_name),
            "resource": {"type": "ZenML::Stack", "id": "s2"}, "additional_entities": staging_stack}),
        );
        items.push(stack_request(principal, action_name));
    }
    items.push(json!({"principal": user("temp"), "action": action("update"), "resource": {"type": "ZenML::Stack", "id": "s1"}, "additional_entities": temp_team}));
    items.push(json!({"principal": user("temp"), "action": action("update"), "resource": {"type": "ZenML::Stack", "id": "s1"}, "additional_entities": temp_team}));
    items.push(json!({"principal": user(BOB), "action": action("update"), "resource": {"type": "ZenML::Stack", "id": "s1"},
        "additional_entities": [stack_entity("s1"), stack_entity("s1")]}));
    items.push(stack_request(BOB, "update"));
    // The same stack id with other data right after: read anew (staging: Deny, production: Allow).
    let s2 = |entities: &Value| {
        json!({"principal": user(BOB), "action": action("update"),
            "resource": {"type": "ZenML::Stack", "id": "s2"}, "additional_entities": entities})
    };
    items.push(s2(&staging_stack));
    let mut production_s2 = staging_stack.clone();
    production_s2[0]["attrs"]["workspace"]["__entity"]["id"] = json!(PRODUCTION);
    production_s2[0]["parents"][0]["id"] = json!(PRODUCTION);
    items.push(s2(&production_s2));
    // And with a stack no earlier item sent (no cached answer: each item decided in the batch).
    for workspace in [STAGING, PRODUCTION] {
        items.push(json!({"principal": user(BOB), "action": action("update"),
        "resource": {"type": "ZenML::Stack", "id": "s3"}, "additional_entities": [{
            "uid": {"type": "ZenML::Stack", "id": "s3"},
            "attrs": {"workspace": {"__entity": {"type": "ZenML::Workspace", "id": workspace}}},
            "parents": [{"type": "ZenML::Workspace", "id": workspace}]
        }]}));
    }
    // Every item's entities have the plain shapes (the batch is read in one pass); again with an
    // item whose stack's uid is sent in the `__entity` form, which is not: the whole batch is
    // then read again with each item's entities as sent.
    let mut with_sent = items.clone();
    with_sent.push(json!({"principal": user(BOB), "action": action("update"),
    "resource": {"type": "ZenML::Stack", "id": "s4"}, "additional_entities": [{
        "uid": {"__entity": {"type": "ZenML::Stack", "id": "s4"}},
        "attrs": {"workspace": {"__entity": {"type": "ZenML::Workspace", "id": PRODUCTION}}},
        "parents": [{"type": "ZenML::Workspace", "id": PRODUCTION}]
    }]}));
    for batch in [&items, &with_sent] {
        answers_as_single_requests(&server, batch, items.len());
    }
}

/// Posts `items` as one batch and checks each result against the item posted alone, and the
/// first `checked` results' decisions against what [`batch_items_sharing_entities_answer_as_single_requests`]'s
/// items are.
fn answers_as_single_requests(server: &Server, items: &[Value], checked: usize) {
    let (status, answer) = server.post("/v1/batch_is_authorized", &json!({"requests": items}));
    assert_eq!(status, 200, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), items.len());
    let mut allowed = 0;
    for (i, (item, result)) in items.iter().zip(results).enumerate() {
        let (status, alone) = server.post("/v1/is_authorized", item);
        if status == 200 {
            assert_eq!(result["decision"], alone["decision"], "item {i}: {item}");
            assert_eq!(
                result["diagnostics"]["reason"], alone["diagnostics"]["reason"],
                "item {i}"
            );
            assert_eq!(
                result["diagnostics"]["errors"], alone["diagnostics"]["errors"],
                "item {i}"
            );
            allowed += usize::from(alone["decision"] == "Allow");
        } else {
            let message = alone["error"]["message"].as_str().unwrap();
            assert_eq!(
                result["error"]["message"],
                format!("requests[{i}]: {message}"),
                "item {i}"
            );
        }
    }
    // Both outcomes occur: bob updates production's stack, not staging's.
    assert!(
        allowed > 0 && allowed < items.len(),
        "{allowed} of {}",
        items.len()
    );
    assert_eq!(results[0]["decision"], "Allow", "{answer}");
    assert_eq!(results[1]["decision"], "Deny", "{answer}");
    // s2 and s3 in staging, then in production (the same uid with other data: read anew).
    let last = checked - 1;
    let decisions: Vec<&Value> = results[last - 3..=last]
        .iter()
        .map(|result| &result["decision"])
        .collect();
    assert_eq!(
        decisions,
        [json!("Deny"), json!("Allow"), json!("Deny"), json!("Allow")]
            .iter()
            .collect::<Vec<_>>(),
        "{answer}"
    );
    for result in &results[checked..] {
        assert_eq!(result["decision"], "Allow", "{answer}");
    }
}

/// The decision cache answers a Cedar request again only when everything it was decided on is
/// sent again: principal, action, resource, context and request-scoped entities (as read: the
/// same entity sent with its keys in another order is the same; one not of the plain shapes
/// as its text). A
/// request whose stack moved to another workspace is decided anew (a key without the entities
/// would answer it Allow from the cache); errors are never cached; nothing is counted for a
/// request refused before its lookup.
#[test]
fn the_cache_answers_a_cedar_request_only_for_the_same_entities_and_context() {
    use common::sample::{BOB, STAGING};
    let server = Server::start(&[]);
    let moved = {
        let mut request = stack_request(BOB, "update");
        request["additional_entities"][0]["attrs"]["workspace"]["__entity"]["id"] = json!(STAGING);
        request["additional_entities"][0]["parents"][0]["id"] = json!(STAGING);
        request
    };
    let reordered = {
        let entity = stack_entity("s1");
        let mut request = stack_request(BOB, "update");
        request["additional_entities"] =
            json!([{"parents": entity["parents"], "attrs": entity["attrs"], "uid": entity["uid"]}]);
        request
    };
    let mistyped = {
        let mut request = stack_request(BOB, "update");
        request["additional_entities"][0]["attrs"]["workspace"] = json!(7);
        request
    };
    let mut with_context = stack_request(BOB, "update");
    with_context["context"] = json!({});
    let mut unknown_field = stack_request(BOB, "update");
    unknown_field["colour"] = json!("blue");
    let stored = json!({"principal": user(CAROL), "action": action("read"),
        "resource": {"type": "ZenML::Project", "id": CHURN}});
    // (what, request, status, decision, cache hits and misses after it)
    type Row<'a> = (&'a str, &'a Value, u16, &'a str, (u64, u64));
    let table: [Row; 10] = [
        ("first", &stack_request(BOB, "update"), 200, "Allow", (0, 1)),
        (
            "the same again",
            &stack_request(BOB, "update"),
            200,
            "Allow",
            (1, 1),
        ),
        ("the stack in staging", &moved, 200, "Deny", (1, 2)),
        ("staging again", &moved, 200, "Deny", (2, 2)),
        // The same entity, its keys sent in another order: cached as read, not as sent.
        (
            "the entity's keys in another order",
            &reordered,
            200,
            "Allow",
            (3, 2),
        ),
        (
            "an empty context sent, as none",
            &with_context,
            200,
            "Allow",
            (4, 2),
        ),
        ("a mistyped attribute", &mistyped, 400, "", (4, 2)),
        ("the mistyped attribute again", &mistyped, 400, "", (4, 2)),
        ("an unknown field", &unknown_field, 400, "", (4, 2)),
        ("no request-scoped entities", &stored, 200, "Allow", (4, 3)),
    ];
    for (what, request, status, decision, counts) in table {
        let (got, answer) = server.post("/v1/is_authorized", request);
        assert_eq!(got, status, "{what}: {answer}");
        if status == 200 {
            assert_eq!(answer["decision"], decision, "{what}: {answer}");
        }
        let (_, state) = server.get("/v1/status");
        let cache = &state["cache"];
        assert_eq!(
            (cache["hits"].as_u64().unwrap(), cache["misses"].as_u64().unwrap()),
            counts,
            "{what}"
        );
    }
    // A batch item is looked up the same way: both answered from the cache now.
    let (status, answer) = server.post(
        "/v1/batch_is_authorized",
        &json!({"requests": [stack_request(BOB, "update"), moved]}),
    );
    assert_eq!(status, 200, "{answer}");
    let decisions = common::each_field(&answer["results"], "decision");
    assert_eq!(decisions, [&json!("Allow"), &json!("Deny")]);
    let (_, state) = server.get("/v1/status");
    assert_eq!(state["cache"]["hits"], 6, "{state}");
}

#[test]
fn request_scoped_entities_never_leak_into_the_store() {
    let server = Server::start(&[]);
    let (_, before) = server.get("/v1/status");
    let admin_group = json!({"type": "ZenML::Role", "id": format!("{PRODUCTION}/admin")});
    let with_temp_user = json!({
        "principal": user("temp"), "action": action("delete"), "resource": {"type": "ZenML::Stack", "id": "s1"},
        "additional_entities": [
            stack_entity("s1"),
            {"uid": {"type": "ZenML::User", "id": "temp"}, "attrs": {"name": "temp", "is_service_account": false, "active": true}, "parents": [admin_group]},
        ],
    });
    let (_, first) = server.post("/v1/is_authorized", &with_temp_user);
    assert_eq!(first["decision"], "Allow", "{first}");
    assert_eq!(first["diagnostics"]["reason"], json!(["workspace-admin"]));
    let (_, second) = server.post("/v1/is_authorized", &stack_request("temp", "delete"));
    assert_eq!(
        second["decision"], "Deny",
        "the temporary user must be gone: {second}"
    );
    let (_, after) = server.get("/v1/status");
    assert_eq!(after["counts"]["entities"], before["counts"]["entities"]);
    assert_eq!(after["revision"], before["revision"]);
}

#[test]
fn body_over_the_limit_is_413() {
    let server = Server::start(&["--max-body-bytes", "256"]);
    let big = json!({"principal": user(ADA), "action": action("read"), "resource": "ZenML::Stack::\"s\"", "context": {"x": "y".repeat(1000)}});
    let (status, body) = server.post("/v1/is_authorized", &big);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    assert!(body["error"]["message"].as_str().unwrap().contains("256 bytes"));
    // The limit is per request: a small one still works on the same server.
    let (status, _) = server.post("/v1/is_authorized", &json!({"principal": user(ADA), "action": action("read"), "resource": format!("ZenML::Project::\"{CHURN}\"")}));
    assert_eq!(status, 200);
}

#[test]
fn routing_errors_are_404_and_405_with_allow() {
    let server = Server::start(&[]);
    let table = [
        ("GET", "/nope", 404, None),
        ("GET", "/v1/is_authorized", 405, Some("POST")),
        ("DELETE", "/v1/batch_is_authorized", 405, Some("POST")),
        ("POST", "/healthz", 405, Some("GET")),
        ("PUT", "/v1/status", 405, Some("GET")),
    ];
    for (method, path, status, allow) in table {
        let (got, got_allow) = server.request(method, path);
        assert_eq!(got, status, "{method} {path}");
        assert_eq!(got_allow.as_deref(), allow, "{method} {path}");
    }
}

#[test]
fn health_readiness_and_status() {
    let server = Server::start(&[]);
    let (status, health) = server.get("/healthz");
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let (status, ready) = server.get("/readyz");
    assert_eq!(status, 200);
    assert_eq!(ready["status"], "ready");
    let (status, info) = server.get("/v1/status");
    assert_eq!(status, 200);
    assert_eq!(info["revision"], ready["revision"]);
    assert_eq!(info["revision"].as_str().unwrap().len(), 16);
    assert!(info["loaded_at"].as_str().unwrap().ends_with('Z'), "{info}");
    assert_eq!(info["last_load_error"], Value::Null);
    let counts = &info["counts"];
    for (key, at_least) in [
        ("policies", 15),
        ("entities", 50),
        ("users", 10),
        ("teams", 3),
        ("bindings", 15),
        ("service_accounts", 2),
        ("custom_roles", 2),
    ] {
        assert!(counts[key].as_u64().unwrap() >= at_least, "{key}: {info}");
    }
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut server = Server::start(&[]);
    let (status, _) = server.get("/readyz");
    assert_eq!(status, 200);
    let pid = server.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = server.child.wait().unwrap();
    assert_eq!(exit.code(), Some(0));
}

#[test]
fn invalid_sources_exit_before_binding_and_name_file_and_line() {
    let dir = common::copy_sources();
    let broken = dir.path().join("policies/workspace.cedar");
    let text = std::fs::read_to_string(&broken).unwrap();
    std::fs::write(
        &broken,
        text.replacen(
            "principal in resource.workspace.viewers",
            "principal in resource.workspace.watchers",
            1,
        ),
    )
    .unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json"])
        .arg("--policies")
        .arg(dir.path().join("policies"))
        .arg("--schemas")
        .arg(dir.path().join("schemas"))
        .arg("--directory")
        .arg(dir.path().join("policies/directory.yaml"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening on"), "must not bind: {stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = text
        .lines()
        .position(|l| l.contains("principal in resource.workspace.viewers"))
        .unwrap()
        + 1;
    let expected = format!("workspace.cedar:{line}:");
    assert!(stderr.contains(&expected), "expected `{expected}` in {stderr}");
    assert!(stderr.contains("watchers"), "{stderr}");
}

/// A request-scoped entity in JSON, from a pool of shapes over the bundled schema: declared and
/// undeclared types, the three uid forms, required, optional, undeclared and mistyped
/// attributes, every JSON value kind, allowed and disallowed parents, tags, stray keys.
fn entity_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let types = prop::sample::select(vec![
        "ZenML::Stack",
        "ZenML::User",
        "ZenML::Team",
        "ZenML::Role",
        "ZenML::Pipeline",
        "ZenML::Workspace",
        "ZenML::Action",
        "ZenML::Nothing",
        "Stack",
    ]);
    let uid_form = 0..4u8;
    let values = prop::sample::select(vec![
        json!(true),
        json!(7),
        json!(1.5),
        json!(u64::MAX),
        json!("text"),
        json!(null),
        json!({"__entity": {"type": "ZenML::Workspace", "id": PRODUCTION}}),
        json!({"__entity": {"type": "ZenML::Project", "id": CHURN}}),
        json!({"__entity": {"type": "ZenML::Workspace", "id": PRODUCTION}, "x": 1}),
        json!({"type": "ZenML::Workspace", "id": PRODUCTION}),
        json!({"__extn": {"fn": "ip", "arg": "10.0.0.1"}}),
        json!(["a", "b"]),
        json!({"a": 1}),
    ]);
    let names = prop::sample::select(vec![
        "workspace",
        "project",
        "name",
        "email",
        "active",
        "is_service_account",
        "extra",
    ]);
    // What each type needs (so that many entities are valid), then up to two changes.
    let valid = |type_name: &str, flags: (bool, bool)| -> Vec<(&'static str, Value)> {
        let workspace = json!({"__entity": {"type": "ZenML::Workspace", "id": PRODUCTION}});
        let project = json!({"__entity": {"type": "ZenML::Project", "id": CHURN}});
        match type_name {
            "ZenML::User" => vec![
                ("name", json!("u")),
                ("active", json!(flags.0)),
                ("is_service_account", json!(flags.1)),
            ],
            "ZenML::Team" => vec![("name", json!("t"))],
            "ZenML::Stack" => vec![("workspace", workspace)],
            "ZenML::Pipeline" => vec![("workspace", workspace), ("project", project)],
            _ => Vec::new(),
        }
    };
    let changes = prop::collection::vec((names, values), 0..3);
    let flags = (any::<bool>(), any::<bool>());
    let parents = prop::collection::vec(
        prop::sample::select(vec![
            json!({"type": "ZenML::Workspace", "id": PRODUCTION}),
            json!({"type": "ZenML::Project", "id": CHURN}),
            json!({"type": "ZenML::Team", "id": "t"}),
            json!({"type": "ZenML::Role", "id": "r"}),
            json!({"__entity": {"type": "ZenML::Role", "id": "r"}}),
            json!("ZenML::Role::\"r\""),
        ]),
        0..3,
    );
    let extras = prop::sample::select(vec![
        json!(null),
        json!({"tags": {}}),
        json!({"tags": {"t": 1}}),
        json!({"stray": 1}),
    ]);
    (types, uid_form, flags, changes, parents, extras).prop_map(move |(type_name, form, flags, changes, parents, extra)| {
        let mut attrs = valid(type_name, flags);
        attrs.extend(changes);
        let id = json!({"type": type_name, "id": "e1"});
        let uid = match form {
            0 | 1 => id,
            2 => json!({"__entity": id}),
            _ => json!(format!("{type_name}::\"e1\"")),
        };
        let mut entity = json!({"uid": uid, "attrs": attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect::<serde_json::Map<_, _>>(), "parents": parents});
        if let (Value::Object(entity), Value::Object(extra)) = (&mut entity, extra) {
            entity.extend(extra);
        }
        entity
    })
}

/// Entity texts a JSON value cannot show: keys sent twice, escapes, whitespace. Read as Cedar's
/// own parser reads the same text: the same entity, or an error on both sides.
#[test]
fn request_scoped_entity_texts_are_read_as_cedar_reads_them() {
    let snapshot = common::bundled_snapshot();
    let w = r#"{"type": "ZenML::Workspace", "id": "99baf825-b21e-442f-ba98-8246d8d9ac88"}"#;
    let texts = [
        format!(
            r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"}}, "attrs": {{"workspace": {{"__entity": {w}}}}}, "parents": [{w}]}}"#
        ),
        format!(
            r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"}}, "attrs": {{"workspace": {{"__entity": {w}}}, "workspace": 1}}, "parents": []}}"#
        ),
        format!(
            r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"}}, "attrs": {{}}, "attrs": {{"workspace": {{"__entity": {w}}}}}, "parents": []}}"#
        ),
        format!(
            r#"{{"uid": {{"type": "ZenML::Stack", "id": "s", "id": "t"}}, "attrs": {{"workspace": {{"__entity": {w}}}}}}}"#
        ),
        format!(
            r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"\n"}}, "attrs": {{"workspace": {{"__entity": {w}}}}}}}"#
        ),
        // `parents` missing (Cedar's parser refuses it), or sent over several lines.
        format!(
            "{{\n  \"uid\" : {{ \"type\" : \"ZenML::Stack\", \"id\" : \"s\" }},\n  \"attrs\": {{ \"workspace\": {{ \"__entity\": {w} }} }}\n}}"
        ),
        format!(
            "{{\n  \"uid\" : {{ \"type\" : \"ZenML::Stack\", \"id\" : \"s\" }},\n  \"attrs\": {{ \"workspace\": {{ \"__entity\": {w} }} }},\n \"parents\": [ ] }}"
        ),
        format!(r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"}}, "parents": [{w}]}}"#),
        format!(
            r#"{{"uid": {{"type": "ZenML::Stack", "id": "s"}}, "attrs": {{"workspace": {{"__entity": {w}, "__entity": {w}}}}}}}"#
        ),
        r#"{"uid": {"type": "ZenML::Stack", "id": "s"}, "attrs": {"workspace": 1e2}}"#.to_owned(),
        r#"{"uid": {"type": "ZenML::Stack", "id": "s"}, "attrs": {"workspace": -0}}"#.to_owned(),
        r#"{"uid": {"type": "ZenML::Stack", "id": "s"}, "tags": null}"#.to_owned(),
        r#"[{"uid": {"type": "ZenML::Stack", "id": "s"}}]"#.to_owned(),
        // An entity, or its uid, sent as an array of its fields' values.
        format!(r#"[{{"type": "ZenML::Stack", "id": "s"}}, {{"workspace": {{"__entity": {w}}}}}, [{w}]]"#),
        format!(
            r#"{{"uid": ["ZenML::Stack", "s"], "attrs": {{"workspace": {{"__entity": {w}}}}}, "parents": [{w}]}}"#
        ),
        // Escapes, and `tags` sent empty.
        format!(
            r#"{{"uid": {{"type": "ZenML::St\u0061ck", "id": "\u0073"}}, "attrs": {{"workspace": {{"__entity": {w}}}}}, "parents": [{w}], "tags": {{}}}}"#
        ),
    ];
    let as_store = |entity: cedar_policy::Entity| {
        common::store_json(&cedar_policy::Entities::from_entities([entity], None).unwrap())
    };
    for text in texts {
        let ours = zenml_authz::http::request_entity(&text, &snapshot.engine);
        let cedar = cedar_policy::Entity::from_json_str(&text, Some(&snapshot.engine.schema));
        match (ours, cedar) {
            (Ok(ours), Ok(cedar)) => assert_eq!(as_store(ours), as_store(cedar), "{text}"),
            (Err(_), Err(_)) => {}
            (ours, cedar) => panic!(
                "{text}\nours: {:?}\nCedar: {:?}",
                ours.map(|_| ()),
                cedar.map(|_| ())
            ),
        }
    }
}

proptest::proptest! {
    #![proptest_config(common::proptest_config(1024))]

    /// The sidecar reads a request-scoped entity exactly as Cedar's own parser does with the
    /// schema: the same entity (uid, attributes, parents), or an error on both sides.
    #[test]
    fn request_scoped_entities_are_read_as_cedar_reads_them(value in entity_json()) {
        static SNAPSHOT: std::sync::LazyLock<zenml_authz::Snapshot> = std::sync::LazyLock::new(common::bundled_snapshot);
        let schema = &SNAPSHOT.engine.schema;
        let as_store = |entity: cedar_policy::Entity| {
            common::store_json(&cedar_policy::Entities::from_entities([entity], None).unwrap())
        };
        // The text as sent, compact or spread over lines.
        for text in [value.to_string(), serde_json::to_string_pretty(&value).unwrap()] {
            let ours = zenml_authz::http::request_entity(&text, &SNAPSHOT.engine);
            let cedar = cedar_policy::Entity::from_json_value(value.clone(), Some(schema));
            match (ours, cedar) {
                (Ok(ours), Ok(cedar)) => proptest::prop_assert_eq!(as_store(ours), as_store(cedar), "{}", text),
                (Err(_), Err(_)) => {}
                (ours, cedar) => proptest::prop_assert!(false, "{text}\nours: {:?}\nCedar: {:?}", ours.map(|_| ()), cedar.map(|_| ())),
            }
        }
    }
}
