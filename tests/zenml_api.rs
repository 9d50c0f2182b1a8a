//! The ZenML Pro RBAC backend API under `/zenml`, end to end over real HTTP against the real
//! binary, request by request as a stock ZenML server sends them
//! (`../shared/zenml-rbac-contract.md` §3-§6).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{
    ADA, BOB, CAROL, CHURN, CI_BOT, DAVE, ERIN, FRAUD, GRACE, IVAN, MALLORY, ML_ENG, NINA, ORG, PLATFORM,
    PRODUCTION, STAGING,
};

use std::collections::BTreeSet;

use common::{Reply, Server, query};
use serde_json::{Map, Value, json};

// The sample directory (policies/directory.yaml).

/// Nobody in the directory.
const STRANGER: &str = "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f";

// Try-out credentials of the sample directory (their SHA-256 hashes are in directory.yaml; the
// plain values are published in README).
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
const ENROLL_STAGING: &str = "zenml-authz-enroll-staging-bdcf23dbfaa83fcf90df149cf9e4385e";
const KEY_ADA: &str = "ZENPROKEY_ada_5211b6a4144bc0c91a9ef21efca2a834";
const KEY_BOB: &str = "ZENPROKEY_bob_030618f7340f60133ae8272cec5e267e";
const KEY_BOB_REVOKED: &str = "ZENPROKEY_bobold_7726d28e76acfc270d0f6e5a4e36a8a6";
const KEY_MALLORY: &str = "ZENPROKEY_mallory_f7c719f0b2574ab186bc0d0cf870cf65";
const KEY_CI_BOT: &str = "ZENPROKEY_cibot_8f7735b45952f79318293fb2b59bd134";

// Resource ids no test shares with anyone but its own.
const ID1: &str = "11111111-1111-4111-8111-111111111111";
const ID2: &str = "22222222-2222-4222-8222-222222222222";
const ID3: &str = "33333333-3333-4333-8333-333333333333";
/// An id with letters, to be sent in upper case.
const ID_HEX: &str = "abcdefab-cdef-4abc-8def-abcdefabcdef";

/// A sidecar (shares in memory) and a production workspace token for it.
struct Zen {
    server: Server,
    token: String,
}

impl Zen {
    fn start() -> Zen {
        let server = Server::start(&["--shares-db", ":memory:"]);
        let token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
        Zen { server, token }
    }

    /// A call with this token (and no `zenml-server-id`), JSON body if any.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Reply {
        self.call_as(&self.token, method, path, body)
    }

    fn call_as(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let bearer = format!("Bearer {token}");
        let text = body.map(Value::to_string);
        self.server.send(
            method,
            path,
            &[("authorization", &bearer), ("zenml-server-version", "0.98.0")],
            text.as_deref().map(|t| ("application/json", t)),
        )
    }

    /// `POST /rbac/check_permissions` (0.90+), expecting 200.
    fn check_as(&self, token: &str, user: &str, action: &str, resources: &[&str]) -> Map<String, Value> {
        let path = format!(
            "/zenml/rbac/check_permissions?{}",
            query(&[("user_id", user), ("action", action)])
        );
        let reply = self.call_as(token, "POST", &path, Some(&json!(resources)));
        assert_eq!(
            reply.status, 200,
            "check {user} {action} {resources:?}: {reply:?}"
        );
        reply.body.as_object().expect("an object").clone()
    }

    fn check(&self, user: &str, action: &str, resources: &[&str]) -> Map<String, Value> {
        self.check_as(&self.token, user, action, resources)
    }

    /// The decision on one resource.
    fn allows(&self, user: &str, action: &str, resource: &str) -> bool {
        let answer = self.check(user, action, &[resource]);
        answer[resource].as_bool().expect("a bool")
    }

    /// `GET /rbac/check_permissions` with repeated `resources=` (0.75/0.80), expecting 200.
    fn check_get(&self, user: &str, action: &str, resources: &[&str]) -> Map<String, Value> {
        let mut pairs = vec![("user_id", user), ("action", action)];
        pairs.extend(resources.iter().map(|r| ("resources", *r)));
        let reply = self.call(
            "GET",
            &format!("/zenml/rbac/check_permissions?{}", query(&pairs)),
            None,
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body.as_object().expect("an object").clone()
    }

    /// `POST /rbac/resource_members` as ZenML sends it (the other grantee field is `null`).
    fn share(&self, grantee: Grantee<'_>, resource: &str, actions: &[&str]) -> Reply {
        let (user, team) = match grantee {
            Grantee::User(id) => (json!(id), Value::Null),
            Grantee::Team(id) => (Value::Null, json!(id)),
        };
        self.call(
            "POST",
            "/zenml/rbac/resource_members",
            Some(&json!({
                "user_id": user, "team_id": team, "sharing_user_id": ADA,
                "resource": resource, "actions": actions,
            })),
        )
    }

    fn share_ok(&self, grantee: Grantee<'_>, resource: &str, actions: &[&str]) {
        let reply = self.share(grantee, resource, actions);
        assert!(
            (200..300).contains(&reply.status),
            "share {resource} {actions:?}: {reply:?}"
        );
    }

    /// `GET /rbac/allowed_resource_ids`.
    fn allowed_ids(&self, user: &str, resource: &str, action: &str) -> Reply {
        self.call(
            "GET",
            &format!(
                "/zenml/rbac/allowed_resource_ids?{}",
                query(&[("user_id", user), ("resource", resource), ("action", action)])
            ),
            None,
        )
    }
}

/// Header or form pairs of one table row.
type Pairs<'a> = Vec<(&'a str, &'a str)>;

#[derive(Clone, Copy)]
enum Grantee<'a> {
    User(&'a str),
    Team(&'a str),
}

fn pipeline(project: &str, id: &str) -> String {
    format!("{project}:pipeline/{id}")
}

// ===== login ==================================================================================

#[test]
fn login_with_client_credentials() {
    let server = Server::start(&["--shares-db", ":memory:"]);
    // (what, form fields, expected status, a word the error message must contain)
    let table: Vec<(&str, Pairs, u16, &str)> = vec![
        (
            "production, right secret",
            vec![
                ("client_id", PRODUCTION),
                ("client_secret", ENROLL_PRODUCTION),
                ("audience", "x"),
                ("grant_type", "client_credentials"),
            ],
            200,
            "",
        ),
        (
            "staging, right secret",
            vec![
                ("client_id", STAGING),
                ("client_secret", ENROLL_STAGING),
                ("grant_type", "client_credentials"),
            ],
            200,
            "",
        ),
        (
            "no grant_type defaults to client credentials",
            vec![("client_id", PRODUCTION), ("client_secret", ENROLL_PRODUCTION)],
            200,
            "",
        ),
        (
            "wrong secret",
            vec![
                ("client_id", PRODUCTION),
                ("client_secret", "guess"),
                ("grant_type", "client_credentials"),
            ],
            401,
            "invalid client credentials",
        ),
        (
            "another workspace's secret",
            vec![
                ("client_id", PRODUCTION),
                ("client_secret", ENROLL_STAGING),
                ("grant_type", "client_credentials"),
            ],
            401,
            "invalid client credentials",
        ),
        (
            "unknown workspace",
            vec![
                ("client_id", STRANGER),
                ("client_secret", ENROLL_PRODUCTION),
                ("grant_type", "client_credentials"),
            ],
            401,
            "invalid client credentials",
        ),
        (
            "missing client_id",
            vec![
                ("client_secret", ENROLL_PRODUCTION),
                ("grant_type", "client_credentials"),
            ],
            400,
            "client_id",
        ),
        (
            "missing client_secret",
            vec![("client_id", PRODUCTION), ("grant_type", "client_credentials")],
            400,
            "client_secret",
        ),
        (
            "unsupported grant_type",
            vec![
                ("client_id", PRODUCTION),
                ("client_secret", ENROLL_PRODUCTION),
                ("grant_type", "authorization_code"),
            ],
            400,
            "grant_type",
        ),
        ("empty form", vec![], 400, "client_id"),
    ];
    for (what, fields, status, word) in table {
        let reply = server.post_form(
            "/zenml/auth/login",
            &fields,
            &[("zenml-server-version", "0.98.0")],
        );
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        if status == 200 {
            let token = reply.body["access_token"].as_str().unwrap_or_default();
            assert!(!token.is_empty(), "{what}: {reply:?}");
            assert_eq!(reply.body["token_type"], "bearer", "{what}");
            let expires_in = reply.body["expires_in"].as_u64().unwrap_or_default();
            assert!(expires_in >= 3600, "{what}: expires_in {expires_in}");
        } else {
            assert!(reply.message().contains(word), "{what}: {reply:?}");
            assert!(reply.body.get("access_token").is_none(), "{what}");
        }
        if status == 401 {
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}");
        }
    }
}

// ===== authentication of /rbac/* ==============================================================

#[test]
fn rbac_calls_need_this_workspaces_token() {
    let zen = Zen::start();
    let good = format!("Bearer {}", zen.token);
    // Flip one character of the signature: a forged token.
    let mut forged = zen.token.clone();
    let last = forged.pop().unwrap();
    forged.push(if last == 'A' { 'B' } else { 'A' });
    let forged = format!("Bearer {forged}");
    let lower_scheme = good.replacen("Bearer", "bearer", 1);
    let api_key = format!("Bearer {KEY_BOB}");
    let user_token = {
        let reply = zen
            .server
            .post_form("/zenml/auth/login", &[("password", KEY_BOB)], &[]);
        assert_eq!(reply.status, 200, "{reply:?}");
        format!("Bearer {}", reply.body["access_token"].as_str().unwrap())
    };
    let path = format!(
        "/zenml/rbac/check_permissions?{}",
        query(&[("user_id", BOB), ("action", "read")])
    );
    // (what, headers, expected status)
    let table: Vec<(&str, Pairs, u16)> = vec![
        ("the workspace token", vec![("authorization", &good)], 200),
        (
            "the token and its own zenml-server-id",
            vec![("authorization", &good), ("zenml-server-id", PRODUCTION)],
            200,
        ),
        (
            "lower-case bearer scheme",
            vec![("authorization", &lower_scheme)],
            200,
        ),
        ("no token", vec![], 401),
        (
            "no token, a server id",
            vec![("zenml-server-id", PRODUCTION)],
            401,
        ),
        (
            "garbage token",
            vec![("authorization", "Bearer not-a-token")],
            401,
        ),
        ("empty bearer", vec![("authorization", "Bearer ")], 401),
        ("basic auth", vec![("authorization", "Basic YWRhOnB3")], 401),
        ("forged signature", vec![("authorization", &forged)], 401),
        (
            "an API key is not a workspace token",
            vec![("authorization", &api_key)],
            401,
        ),
        (
            "zenml-server-id of another workspace",
            vec![("authorization", &good), ("zenml-server-id", STAGING)],
            403,
        ),
        (
            "zenml-server-id of an unknown server",
            vec![("authorization", &good), ("zenml-server-id", STRANGER)],
            403,
        ),
        (
            "a user token (API-key login)",
            vec![("authorization", &user_token)],
            403,
        ),
    ];
    let body = json!(["stack"]).to_string();
    for (what, headers, status) in table {
        let reply = zen
            .server
            .send("POST", &path, &headers, Some(("application/json", &body)));
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        match status {
            200 => assert_eq!(reply.body, json!({"stack": true}), "{what}"),
            401 => {
                assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}");
                assert_eq!(reply.body["error"]["code"], "unauthorized", "{what}");
            }
            _ => assert_eq!(reply.body["error"]["code"], "forbidden", "{what}"),
        }
    }
    // Every other /rbac/* and cloud endpoint is guarded the same way.
    for (method, path) in [
        (
            "GET",
            "/zenml/rbac/check_permissions?user_id=x&action=read&resources=stack",
        ),
        (
            "GET",
            "/zenml/rbac/allowed_resource_ids?user_id=x&action=read&resource=stack",
        ),
        ("POST", "/zenml/rbac/resource_members"),
        (
            "DELETE",
            "/zenml/rbac/resources?resources=stack%2F11111111-1111-4111-8111-111111111111",
        ),
        ("GET", "/zenml/rbac/user_team_ids?user_id=x"),
        ("PATCH", "/zenml/workspace_status"),
        ("PATCH", "/zenml/tenant_status"),
        ("POST", "/zenml/usage-event"),
        ("GET", &format!("/zenml/organizations/{ORG}/entitlement/pipeline")),
    ] {
        let reply = zen.server.send(method, path, &[], None);
        assert_eq!(reply.status, 401, "{method} {path}: {reply:?}");
        assert_eq!(
            reply.header("www-authenticate"),
            Some("Bearer"),
            "{method} {path}"
        );
        let reply = zen.server.send(
            method,
            path,
            &[("authorization", &good), ("zenml-server-id", STAGING)],
            None,
        );
        assert_eq!(reply.status, 403, "{method} {path} from staging: {reply:?}");
    }
}

#[test]
fn a_staging_token_gets_staging_answers() {
    let zen = Zen::start();
    let staging = zen.server.zenml_login(STAGING, ENROLL_STAGING);
    let churn_pipeline = format!("{CHURN}:pipeline");
    // (user, action, resource, production's answer, staging's answer)
    let table: Vec<(&str, &str, &str, bool, bool)> = vec![
        (BOB, "read", "stack", true, false), // ml-eng: developer of production only
        (BOB, "create", &churn_pipeline, true, false), // churn is a production project
        (IVAN, "read", "stack", false, true), // admin of staging only
        (IVAN, "delete", "stack", false, true),
        (NINA, "read", "stack", true, true), // developer of production, viewer of staging
        (NINA, "update", "stack", true, false),
        (CAROL, "read", "secret", true, false),
        (ADA, "delete", "stack", true, true), // organization admin
        (GRACE, "read", "stack", false, false),
        (MALLORY, "read", "stack", false, false), // deactivated
    ];
    for (user, action, resource, in_production, in_staging) in table {
        let production = zen.check(user, action, &[resource]);
        assert_eq!(
            production[resource],
            json!(in_production),
            "{user} {action} {resource} from production"
        );
        let answer = zen.check_as(&staging, user, action, &[resource]);
        assert_eq!(
            answer[resource],
            json!(in_staging),
            "{user} {action} {resource} from staging"
        );
    }
    // A share made by production is production's: staging does not see it.
    let stack = format!("stack/{ID1}");
    zen.share_ok(Grantee::User(GRACE), &stack, &["read"]);
    assert!(zen.allows(GRACE, "read", &stack));
    assert_eq!(
        zen.check_as(&staging, GRACE, "read", &[&stack])[&stack],
        json!(false)
    );
}

// ===== check_permissions ======================================================================

#[test]
fn post_and_get_forms_give_identical_answers() {
    let zen = Zen::start();
    zen.share_ok(Grantee::User(GRACE), &pipeline(CHURN, ID1), &["read", "update"]);
    let resources_owned: Vec<String> = vec![
        "stack".into(),
        format!("stack/{ID1}"),
        "secret".into(),
        format!("secret/{ID2}"),
        "project".into(),
        format!("project/{CHURN}"),
        format!("project/{FRAUD}"),
        format!("{CHURN}:pipeline"),
        pipeline(CHURN, ID1),
        format!("{CHURN}:pipeline_run/{ID2}"),
        format!("{FRAUD}:model/{ID3}"),
        format!("{FRAUD}:model_version"),
        format!("{CHURN}:event_source/{ID1}"),
        format!("{PRODUCTION}@server:stack"),
        format!("{STAGING}@server:stack"),
    ];
    let resources: Vec<&str> = resources_owned.iter().map(String::as_str).collect();
    let mut compared = 0;
    for user in [ADA, BOB, CAROL, DAVE, GRACE, MALLORY, CI_BOT, STRANGER] {
        for action in ["read", "create", "update", "delete", "fly"] {
            let post = zen.check(user, action, &resources);
            let get = zen.check_get(user, action, &resources);
            assert_eq!(post, get, "{user} {action}");
            assert_eq!(post.len(), resources.len(), "{user} {action}: {post:?}");
            compared += 1;
        }
    }
    assert_eq!(compared, 40);
    // Spot checks that the comparison is not between two all-false answers.
    let bob = zen.check_get(BOB, "read", &resources);
    assert_eq!(bob["stack"], json!(true));
    let grace = zen.check_get(GRACE, "update", &resources);
    assert_eq!(grace[&pipeline(CHURN, ID1)], json!(true));
    assert_eq!(grace["stack"], json!(false));
}

#[test]
fn the_answer_has_every_input_string_as_a_key() {
    let zen = Zen::start();
    let upper_stack = format!("stack/{}", ID1.to_uppercase().replace('1', "A"));
    let lower_stack = upper_stack.to_lowercase();
    let upper_project = format!("{}:pipeline", CHURN.to_uppercase());
    let unhyphenated = format!("stack/{}", ID2.replace('-', ""));
    let inputs: Vec<String> = vec![
        "stack".into(),
        "stack".into(), // a duplicate
        upper_stack.clone(),
        lower_stack.clone(),
        upper_project.clone(),
        format!("{CHURN}:pipeline"),
        unhyphenated.clone(),
        format!("{CHURN}:event_source/{ID1}"), // a type 0.98 does not know
        format!("{CHURN}:pipeline/{ID3}"),
        format!("{CHURN}:pipeline/{ID3}"),
    ];
    let refs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    for (user, action) in [(BOB, "read"), (BOB, "create"), (GRACE, "read"), (ADA, "delete")] {
        let reply = zen.call(
            "POST",
            &format!(
                "/zenml/rbac/check_permissions?{}",
                query(&[("user_id", user), ("action", action)])
            ),
            Some(&json!(refs)),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        let answer = reply.body.as_object().unwrap();
        let keys: BTreeSet<&str> = answer.keys().map(String::as_str).collect();
        let expected: BTreeSet<&str> = refs.iter().copied().collect();
        assert_eq!(
            keys, expected,
            "{user} {action}: keys are the inputs, byte for byte"
        );
        assert!(answer.values().all(Value::is_boolean), "{answer:?}");
        // A UUID's case and hyphens do not change the decision.
        assert_eq!(answer[&upper_stack], answer[&lower_stack], "{user} {action}");
        assert_eq!(
            answer[&upper_project],
            answer[&format!("{CHURN}:pipeline")],
            "{user} {action}"
        );
        assert_eq!(answer[&unhyphenated], answer[&lower_stack], "{user} {action}");
        // Unknown types are denied, even to the organization admin.
        assert_eq!(answer[&format!("{CHURN}:event_source/{ID1}")], json!(false));
    }
    let bob = zen.check(BOB, "read", &refs);
    assert_eq!(bob[&upper_stack], json!(true));
    assert_eq!(bob[&upper_project], json!(true));
    // A share is found whatever the case of the UUID it is asked with.
    zen.share_ok(Grantee::User(GRACE), &lower_stack, &["read"]);
    let grace = zen.check(GRACE, "read", &refs);
    assert_eq!(grace[&upper_stack], json!(true));
    assert_eq!(grace[&lower_stack], json!(true));
    assert_eq!(grace["stack"], json!(false));
    // An empty list is an empty answer.
    assert!(zen.check(BOB, "read", &[]).is_empty());
}

#[test]
fn unknown_users_types_and_actions_are_denied() {
    let zen = Zen::start();
    let everything: Vec<String> = vec![
        "stack".into(),
        format!("stack/{ID1}"),
        "project".into(),
        format!("project/{CHURN}"),
        format!("{CHURN}:pipeline"),
        format!("{FRAUD}:model/{ID2}"),
        "flavor".into(),
    ];
    let refs: Vec<&str> = everything.iter().map(String::as_str).collect();
    // ada is allowed all of it: the denials below are about the unknowns.
    let ada = zen.check(ADA, "read", &refs);
    assert!(ada.values().all(|v| v == true), "{ada:?}");
    for user in [STRANGER, "not-a-uuid", ""] {
        let answer = zen.check(user, "read", &refs);
        assert_eq!(answer.len(), refs.len());
        assert!(answer.values().all(|v| v == false), "user {user:?}: {answer:?}");
    }
    // Unknown actions (and the pre-0.98 types) are denied, not errors.
    for action in ["fly", "READ", "admin", "write"] {
        let answer = zen.check(ADA, action, &refs);
        assert!(answer.values().all(|v| v == false), "action {action}: {answer:?}");
    }
    for unknown in [
        format!("{CHURN}:event_source"),
        format!("{CHURN}:trigger_execution/{ID1}"),
        format!("{CHURN}:action/{ID1}"),
        "user".to_owned(),
        format!("user/{ADA}"),
    ] {
        assert!(!zen.allows(ADA, "read", &unknown), "{unknown}");
    }
}

#[test]
fn unparseable_resource_strings_are_400_naming_them() {
    let zen = Zen::start();
    let bad_inputs = [
        String::new(),
        "Stack".into(),
        "stack/".into(),
        "stack/not-a-uuid".into(),
        format!("stack/{ID1}/x"),
        format!("nope:pipeline/{ID1}"),
        format!("pipeline/{ID1}"), // project-scoped without a project
        format!("{CHURN}:stack"),  // global with a project
        format!("{CHURN}:"),
        "nope@server:stack".into(),
        format!("{PRODUCTION}@server:stack/x"),
    ];
    for bad in &bad_inputs {
        let inputs = vec!["stack".to_owned(), bad.clone()];
        let path = format!(
            "/zenml/rbac/check_permissions?{}",
            query(&[("user_id", BOB), ("action", "read")])
        );
        let reply = zen.call("POST", &path, Some(&json!(inputs)));
        assert_eq!(reply.status, 400, "{bad:?}: {reply:?}");
        assert!(
            reply.message().contains(&format!("`{bad}`")),
            "{bad:?}: the message names it: {reply:?}"
        );
        // The same through the GET form.
        let get_path = format!(
            "/zenml/rbac/check_permissions?{}",
            query(&[
                ("user_id", BOB),
                ("action", "read"),
                ("resources", "stack"),
                ("resources", bad)
            ])
        );
        let reply = zen.call("GET", &get_path, None);
        assert_eq!(reply.status, 400, "GET {bad:?}: {reply:?}");
        assert!(
            reply.message().contains(&format!("`{bad}`")),
            "GET {bad:?}: {reply:?}"
        );
    }
    // Malformed requests around the resources.
    let check = "/zenml/rbac/check_permissions";
    let table: Vec<(&str, String, Option<Value>, &str)> = vec![
        (
            "no user_id",
            format!("{check}?action=read"),
            Some(json!(["stack"])),
            "user_id",
        ),
        (
            "no action",
            format!("{check}?user_id={BOB}"),
            Some(json!(["stack"])),
            "action",
        ),
        (
            "user_id twice",
            format!("{check}?user_id={BOB}&user_id={ADA}&action=read"),
            Some(json!(["stack"])),
            "user_id",
        ),
        (
            "a body that is not an array",
            format!("{check}?user_id={BOB}&action=read"),
            Some(json!({"resources": ["stack"]})),
            "body",
        ),
        (
            "an array of non-strings",
            format!("{check}?user_id={BOB}&action=read"),
            Some(json!([1, 2])),
            "body",
        ),
    ];
    for (what, path, body, word) in table {
        let reply = zen.call("POST", &path, body.as_ref());
        assert_eq!(reply.status, 400, "{what}: {reply:?}");
        assert!(reply.message().contains(word), "{what}: {reply:?}");
    }
    let reply = zen.server.send(
        "POST",
        &format!("{check}?user_id={BOB}&action=read"),
        &[("authorization", &format!("Bearer {}", zen.token))],
        Some(("application/json", "[\"stack\",")),
    );
    assert_eq!(reply.status, 400, "truncated JSON: {reply:?}");
}

#[test]
fn tenant_era_resource_strings() {
    let zen = Zen::start();
    let own = format!("{PRODUCTION}@server:stack");
    let own_instance = format!("{PRODUCTION}@server:stack/{ID1}");
    let other = format!("{STAGING}@server:stack");
    let answer = zen.check(BOB, "read", &[&own, &own_instance, &other, "stack"]);
    assert_eq!(answer[&own], json!(true), "{answer:?}");
    assert_eq!(answer[&own_instance], json!(true), "{answer:?}");
    assert_eq!(
        answer[&other],
        json!(false),
        "another server's resource: {answer:?}"
    );
    assert_eq!(answer["stack"], json!(true));
    // ivan administers staging, but production's token cannot ask about staging's resources.
    assert_eq!(zen.check(IVAN, "read", &[&other])[&other], json!(false));
    assert_eq!(zen.check(ADA, "delete", &[&other])[&other], json!(false));
    // Asked from staging, they are staging's.
    let staging = zen.server.zenml_login(STAGING, ENROLL_STAGING);
    assert_eq!(
        zen.check_as(&staging, IVAN, "read", &[&other])[&other],
        json!(true)
    );
    assert_eq!(zen.check_as(&staging, IVAN, "read", &[&own])[&own], json!(false));
    // The GET form takes them too.
    let get = zen.check_get(BOB, "read", &[&own, &other]);
    assert_eq!(get[&own], json!(true));
    assert_eq!(get[&other], json!(false));
}

// ===== allowed_resource_ids ===================================================================

#[test]
fn allowed_resource_ids_table() {
    let zen = Zen::start();
    let churn_pipeline = format!("{CHURN}:pipeline");
    let fraud_pipeline = format!("{FRAUD}:pipeline");
    let own_tenant = format!("{PRODUCTION}@server:stack");
    let other_tenant = format!("{STAGING}@server:stack");
    zen.share_ok(Grantee::User(GRACE), &pipeline(CHURN, ID1), &["read"]);
    zen.share_ok(Grantee::User(GRACE), &pipeline(CHURN, ID2), &["read", "update"]);
    zen.share_ok(Grantee::User(GRACE), &format!("stack/{ID3}"), &["read"]);
    zen.share_ok(Grantee::User(DAVE), &pipeline(CHURN, ID3), &["delete"]);
    // (user, resource, action, expected full_access, expected ids)
    let table: Vec<(&str, &str, &str, bool, Vec<&str>)> = vec![
        (CAROL, &churn_pipeline, "read", true, vec![]), // workspace viewer
        (CAROL, "stack", "read", true, vec![]),
        (CAROL, &churn_pipeline, "delete", false, vec![]),
        (ADA, &churn_pipeline, "delete", true, vec![]), // organization admin
        (BOB, &churn_pipeline, "read", true, vec![]),   // workspace developer
        (DAVE, &churn_pipeline, "read", true, vec![]),  // project developer on churn
        (DAVE, &fraud_pipeline, "read", false, vec![]),
        (DAVE, &churn_pipeline, "delete", false, vec![ID3]), // a developer may not delete; shared
        (GRACE, &churn_pipeline, "read", false, vec![ID1, ID2]),
        (GRACE, &churn_pipeline, "update", false, vec![ID2]),
        (GRACE, &churn_pipeline, "delete", false, vec![]),
        (GRACE, &fraud_pipeline, "read", false, vec![]),
        (GRACE, "stack", "read", false, vec![ID3]),
        (GRACE, "project", "read", false, vec![CHURN]), // implicit membership of churn
        (GRACE, "secret", "read", false, vec![]),
        (STRANGER, &churn_pipeline, "read", false, vec![]),
        (MALLORY, &churn_pipeline, "read", false, vec![]),
        (GRACE, &own_tenant, "read", false, vec![ID3]),
        (ADA, &other_tenant, "read", false, vec![]),
    ];
    for (user, resource, action, full_access, ids) in table {
        let reply = zen.allowed_ids(user, resource, action);
        assert_eq!(reply.status, 200, "{user} {resource} {action}: {reply:?}");
        assert_eq!(
            reply.body,
            json!({"full_access": full_access, "ids": ids}),
            "{user} {resource} {action}"
        );
        // Consistent with check_permissions.
        for id in ids {
            let instance = if resource.contains(':') && !resource.contains('@') {
                format!("{resource}/{id}")
            } else {
                format!("{}/{id}", resource.rsplit(':').next().unwrap())
            };
            assert!(zen.allows(user, action, &instance), "{user} {action} {instance}");
            assert!(uuid::Uuid::parse_str(id).is_ok());
        }
    }
    // A full access holder's type-level check agrees.
    assert!(zen.allows(CAROL, "read", &churn_pipeline));
    assert!(!zen.allows(GRACE, "read", &churn_pipeline));

    // Bad questions.
    let path = "/zenml/rbac/allowed_resource_ids";
    let with_id = pipeline(CHURN, ID1);
    let table: Vec<(&str, String, &str)> = vec![
        (
            "resource with an id",
            format!(
                "{path}?{}",
                query(&[("user_id", GRACE), ("resource", &with_id), ("action", "read")])
            ),
            &with_id,
        ),
        (
            "unparseable resource",
            format!(
                "{path}?{}",
                query(&[("user_id", GRACE), ("resource", "Stack"), ("action", "read")])
            ),
            "`Stack`",
        ),
        (
            "no resource",
            format!("{path}?{}", query(&[("user_id", GRACE), ("action", "read")])),
            "resource",
        ),
        (
            "no user_id",
            format!("{path}?{}", query(&[("resource", "stack"), ("action", "read")])),
            "user_id",
        ),
        (
            "no action",
            format!("{path}?{}", query(&[("user_id", GRACE), ("resource", "stack")])),
            "action",
        ),
    ];
    for (what, path, word) in table {
        let reply = zen.call("GET", &path, None);
        assert_eq!(reply.status, 400, "{what}: {reply:?}");
        assert!(reply.message().contains(word), "{what}: {reply:?}");
    }
}

// ===== resource_members =======================================================================

#[test]
fn sharing_with_a_user_replaces_the_actions() {
    let zen = Zen::start();
    let resource = pipeline(CHURN, ID1);
    let project = format!("project/{CHURN}");
    let actions = ["read", "update", "delete", "share"];
    let rights = |user: &str| -> Vec<bool> {
        actions
            .iter()
            .map(|action| zen.allows(user, action, &resource))
            .collect()
    };
    assert_eq!(rights(GRACE), [false; 4]);
    assert!(!zen.allows(GRACE, "read", &project));
    // (shared actions, grace's rights on read/update/delete/share, may she read the project)
    let steps: Vec<(Vec<&str>, [bool; 4], bool)> = vec![
        (vec!["read", "update"], [true, true, false, false], true),
        (vec!["read"], [true, false, false, false], true),
        (vec!["update", "delete", "share"], [false, true, true, true], true),
        (vec!["read", "read"], [true, false, false, false], true),
        (vec![], [false; 4], false),
        (vec!["delete"], [false, false, true, false], true),
        (vec![], [false; 4], false),
    ];
    for (shared, expected, project_read) in steps {
        zen.share_ok(Grantee::User(GRACE), &resource, &shared);
        assert_eq!(rights(GRACE), expected, "after sharing {shared:?}");
        assert_eq!(
            zen.allows(GRACE, "read", &project),
            project_read,
            "after sharing {shared:?}"
        );
        // Nobody else gains anything.
        assert_eq!(rights(ERIN), [false; 4], "after sharing {shared:?}");
    }
    // Only that one resource.
    zen.share_ok(Grantee::User(GRACE), &resource, &["read"]);
    for other in [
        pipeline(CHURN, ID2),
        pipeline(FRAUD, ID1),
        format!("{CHURN}:pipeline_run/{ID1}"),
        format!("{CHURN}:pipeline"),
    ] {
        assert!(!zen.allows(GRACE, "read", &other), "{other}");
    }
    // Replacing one grantee leaves another one's share alone.
    zen.share_ok(Grantee::User(DAVE), &pipeline(FRAUD, ID1), &["read"]);
    zen.share_ok(Grantee::User(GRACE), &pipeline(FRAUD, ID1), &["update"]);
    assert!(zen.allows(DAVE, "read", &pipeline(FRAUD, ID1)));
    assert!(!zen.allows(DAVE, "update", &pipeline(FRAUD, ID1)));
    assert!(!zen.allows(GRACE, "read", &pipeline(FRAUD, ID1)));
    assert!(zen.allows(GRACE, "update", &pipeline(FRAUD, ID1)));
}

#[test]
fn sharing_with_a_team_reaches_its_members() {
    let zen = Zen::start();
    let model = format!("{CHURN}:model/{ID2}");
    // erin is in `platform` (stack admin: nothing in projects); grace is in no team.
    assert!(!zen.allows(ERIN, "read", &model));
    // (shared actions, erin's read, erin's update)
    let steps: Vec<(Vec<&str>, bool, bool)> = vec![
        (vec!["read", "update"], true, true),
        (vec!["read"], true, false),
        (vec![], false, false),
        (vec!["update"], false, true),
    ];
    for (shared, read, update) in steps {
        zen.share_ok(Grantee::Team(PLATFORM), &model, &shared);
        assert_eq!(zen.allows(ERIN, "read", &model), read, "after {shared:?}");
        assert_eq!(zen.allows(ERIN, "update", &model), update, "after {shared:?}");
        assert!(
            !zen.allows(GRACE, "read", &model),
            "not a member, after {shared:?}"
        );
        assert!(
            !zen.allows(GRACE, "update", &model),
            "not a member, after {shared:?}"
        );
    }
    // A user share and a team share on one resource are separate grants.
    zen.share_ok(Grantee::User(ERIN), &model, &["delete"]);
    zen.share_ok(Grantee::Team(PLATFORM), &model, &[]);
    assert!(zen.allows(ERIN, "delete", &model));
    assert!(!zen.allows(ERIN, "update", &model));
    // A team share gives its members the project, like a user share.
    zen.share_ok(
        Grantee::Team(PLATFORM),
        &format!("{FRAUD}:artifact/{ID3}"),
        &["read"],
    );
    assert!(zen.allows(ERIN, "read", &format!("project/{FRAUD}")));
    assert!(!zen.allows(GRACE, "read", &format!("project/{FRAUD}")));
}

#[test]
fn resource_members_rejects_bad_bodies() {
    let zen = Zen::start();
    let resource = pipeline(CHURN, ID1);
    let body = |user: Value, team: Value, resource: &str, actions: Value| json!({"user_id": user, "team_id": team, "sharing_user_id": ADA, "resource": resource, "actions": actions});
    let tenant_other = format!("{STAGING}@server:stack/{ID1}");
    // (what, body, expected status, word the message must contain)
    let table: Vec<(&str, Value, u16, &str)> = vec![
        (
            "unknown user_id",
            body(json!(STRANGER), Value::Null, &resource, json!(["read"])),
            400,
            "user_id",
        ),
        (
            "unknown team_id",
            body(Value::Null, json!(STRANGER), &resource, json!(["read"])),
            400,
            "team_id",
        ),
        (
            "a user id as team_id",
            body(Value::Null, json!(GRACE), &resource, json!(["read"])),
            400,
            "team_id",
        ),
        (
            "both user_id and team_id",
            body(json!(GRACE), json!(ML_ENG), &resource, json!(["read"])),
            400,
            "user_id",
        ),
        (
            "neither user_id nor team_id",
            body(Value::Null, Value::Null, &resource, json!(["read"])),
            400,
            "user_id",
        ),
        (
            "neither, fields absent",
            json!({"resource": resource, "actions": ["read"]}),
            400,
            "user_id",
        ),
        (
            "no resource",
            json!({"user_id": GRACE, "actions": ["read"]}),
            400,
            "resource",
        ),
        (
            "no actions",
            json!({"user_id": GRACE, "resource": resource}),
            400,
            "actions",
        ),
        (
            "actions not a list",
            body(json!(GRACE), Value::Null, &resource, json!("read")),
            400,
            "actions",
        ),
        (
            "unknown action",
            body(json!(GRACE), Value::Null, &resource, json!(["read", "fly"])),
            400,
            "fly",
        ),
        (
            "a type, not one resource",
            body(
                json!(GRACE),
                Value::Null,
                &format!("{CHURN}:pipeline"),
                json!(["read"]),
            ),
            400,
            "resource",
        ),
        (
            "unparseable resource",
            body(json!(GRACE), Value::Null, "stack/nope", json!(["read"])),
            400,
            "`stack/nope`",
        ),
        (
            "another server's resource",
            body(json!(GRACE), Value::Null, &tenant_other, json!(["read"])),
            403,
            &tenant_other,
        ),
        ("a JSON array", json!(["read"]), 400, "body"),
    ];
    for (what, body, status, word) in table {
        let reply = zen.call("POST", "/zenml/rbac/resource_members", Some(&body));
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert!(reply.message().contains(word), "{what}: {reply:?}");
    }
    // Malformed JSON names the line and column.
    let reply = zen.server.send(
        "POST",
        "/zenml/rbac/resource_members",
        &[("authorization", &format!("Bearer {}", zen.token))],
        Some(("application/json", "{\"user_id\": ")),
    );
    assert_eq!(reply.status, 400, "malformed JSON: {reply:?}");
    assert!(reply.message().contains("line 1"), "{reply:?}");
    // None of them shared anything.
    assert!(!zen.allows(GRACE, "read", &resource));
    let ids = zen.allowed_ids(GRACE, &format!("{CHURN}:pipeline"), "read");
    assert_eq!(ids.body, json!({"full_access": false, "ids": []}));
}

// ===== DELETE /rbac/resources =================================================================

#[test]
fn deleting_resources_purges_their_shares() {
    let zen = Zen::start();
    let first = pipeline(CHURN, ID1);
    let second = format!("stack/{ID_HEX}");
    let kept = pipeline(CHURN, ID3);
    zen.share_ok(Grantee::User(GRACE), &first, &["read", "update"]);
    zen.share_ok(Grantee::Team(PLATFORM), &first, &["read"]);
    zen.share_ok(Grantee::User(GRACE), &second, &["read"]);
    zen.share_ok(Grantee::User(DAVE), &kept, &["delete"]);
    assert!(zen.allows(GRACE, "update", &first));
    assert!(zen.allows(ERIN, "read", &first));
    assert!(zen.allows(GRACE, "read", &format!("project/{CHURN}")));

    let path = format!(
        "/zenml/rbac/resources?{}",
        query(&[
            ("resources", &first),
            ("resources", &second.to_uppercase().replace("STACK", "stack"))
        ])
    );
    let reply = zen.call("DELETE", &path, None);
    assert!((200..300).contains(&reply.status), "{reply:?}");
    assert!(!zen.allows(GRACE, "read", &first));
    assert!(!zen.allows(GRACE, "update", &first));
    assert!(!zen.allows(ERIN, "read", &first));
    assert!(
        !zen.allows(GRACE, "read", &second),
        "purged through an upper-case UUID"
    );
    assert!(
        !zen.allows(GRACE, "read", &format!("project/{CHURN}")),
        "no implicit membership left"
    );
    assert!(
        zen.allows(DAVE, "delete", &kept),
        "another resource keeps its share"
    );
    let ids = zen.allowed_ids(GRACE, &format!("{CHURN}:pipeline"), "read");
    assert_eq!(ids.body, json!({"full_access": false, "ids": []}));

    // Deleting again, deleting nothing, deleting what was never shared, and another server's
    // tenant-era resource are all fine.
    for resources in [
        vec![first.clone()],
        vec![],
        vec![format!("stack/{ID3}")],
        vec![format!("{STAGING}@server:stack/{ID3}")],
    ] {
        let pairs: Vec<(&str, &str)> = resources.iter().map(|r| ("resources", r.as_str())).collect();
        let reply = zen.call(
            "DELETE",
            &format!("/zenml/rbac/resources?{}", query(&pairs)),
            None,
        );
        assert!((200..300).contains(&reply.status), "{resources:?}: {reply:?}");
    }
    assert!(zen.allows(DAVE, "delete", &kept));
    // A resource can be shared again after it was purged.
    zen.share_ok(Grantee::User(GRACE), &first, &["read"]);
    assert!(zen.allows(GRACE, "read", &first));
    // An unparseable resource is a 400 naming it.
    let reply = zen.call("DELETE", "/zenml/rbac/resources?resources=Stack", None);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.message().contains("`Stack`"), "{reply:?}");
}

// ===== user_team_ids ==========================================================================

#[test]
fn user_team_ids_lists_the_users_teams() {
    let zen = Zen::start();
    let table: Vec<(&str, Vec<&str>)> = vec![
        (BOB, vec![ML_ENG]),
        (NINA, vec![ML_ENG]),
        (ERIN, vec![PLATFORM]),
        (GRACE, vec![]),
        (STRANGER, vec![]),
    ];
    for (user, teams) in table {
        let reply = zen.call(
            "GET",
            &format!("/zenml/rbac/user_team_ids?{}", query(&[("user_id", user)])),
            None,
        );
        assert_eq!(reply.status, 200, "{user}: {reply:?}");
        let mut got: Vec<String> = serde_json::from_value(reply.body).unwrap();
        got.sort();
        assert_eq!(got, teams, "{user}");
    }
    let reply = zen.call("GET", "/zenml/rbac/user_team_ids", None);
    assert_eq!(reply.status, 400, "{reply:?}");
    assert!(reply.message().contains("user_id"), "{reply:?}");
}

// ===== identity: /users/authorize_server and API-key login =====================================

#[test]
fn authorize_server_returns_the_key_owner() {
    let server = Server::start(&["--shares-db", ":memory:"]);
    let workspace_token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let info = |credential: Option<&str>, server_id: Option<&str>| -> Reply {
        let path = match server_id {
            Some(id) => format!("/zenml/users/authorize_server?{}", query(&[("server_id", id)])),
            None => "/zenml/users/authorize_server".to_owned(),
        };
        let bearer = credential.map(|c| format!("Bearer {c}"));
        let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
        server.send("GET", &path, &headers, None)
    };
    let reply = info(Some(KEY_BOB), Some(PRODUCTION));
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body,
        json!({
            "id": BOB, "username": "bob", "email": "bob@acme.example", "name": "Bob Builder",
            "is_superuser": false, "is_admin": false, "is_service_account": false,
            "avatar_url": null, "oidc_claims": {},
        })
    );
    // A service account is described as a user, so that ZenML keys it by its external id on
    // every path (0.98's raw-key path would otherwise skip every check); organization admins
    // are ZenML admins; an account without an e-mail gets one that is never delivered (ZenML
    // 0.98 refuses a repeat login without one; before 0.85 it names the account).
    // (who, key, is admin, e-mail sent)
    let table = [
        ("ci-bot", KEY_CI_BOT, false, "ci-bot@zenml-authz.invalid"),
        ("ada", KEY_ADA, true, "ada@acme.example"),
        ("bob", KEY_BOB, false, "bob@acme.example"),
    ];
    for (who, key, admin, email) in table {
        let reply = info(Some(key), Some(PRODUCTION));
        assert_eq!(reply.status, 200, "{who}: {reply:?}");
        assert_eq!(reply.body["username"], who, "{who}");
        assert_eq!(reply.body["is_service_account"], false, "{who}");
        assert_eq!(reply.body["is_superuser"], admin, "{who}");
        assert_eq!(reply.body["is_admin"], admin, "{who}");
        assert_eq!(reply.body["email"], email, "{who}");
    }

    // (what, credential, server_id, expected status)
    let table: Vec<(&str, Option<&str>, Option<&str>, u16)> = vec![
        // Issue 17: bob's roles are all in production (tests/membership.rs has the whole rule).
        ("bob, staging", Some(KEY_BOB), Some(STAGING), 403),
        ("bob's revoked key", Some(KEY_BOB_REVOKED), Some(PRODUCTION), 401),
        ("mallory (deactivated)", Some(KEY_MALLORY), Some(PRODUCTION), 401),
        (
            "an unknown key",
            Some("ZENPROKEY_nobody_00000000000000000000000000000000"),
            Some(PRODUCTION),
            401,
        ),
        ("not a key", Some("hello"), Some(PRODUCTION), 401),
        ("no credential", None, Some(PRODUCTION), 401),
        ("a workspace token", Some(&workspace_token), Some(PRODUCTION), 401),
        ("an unknown server_id", Some(KEY_BOB), Some(STRANGER), 404),
        ("no server_id", Some(KEY_BOB), None, 400),
    ];
    for (what, credential, server_id, status) in table {
        let reply = info(credential, server_id);
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        if status == 401 {
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"), "{what}");
        }
        if status != 200 {
            assert!(reply.body.get("id").is_none(), "{what}: {reply:?}");
        }
    }
}

#[test]
fn api_key_login_gives_a_user_token() {
    let zen = Zen::start();
    // What a cloud-mode client sends: `password=ZENPROKEY_…`, no grant type.
    let reply = zen
        .server
        .post_form("/zenml/auth/login", &[("password", KEY_BOB)], &[]);
    assert_eq!(reply.status, 200, "{reply:?}");
    let token = reply.body["access_token"].as_str().unwrap().to_owned();
    assert!(!token.is_empty());
    assert_eq!(reply.body["token_type"], "bearer");
    assert!(reply.body["expires_in"].as_u64().unwrap() >= 3600);

    // The server's user-info call with that token names bob.
    let reply = zen.server.send(
        "GET",
        &format!("/zenml/users/authorize_server?server_id={PRODUCTION}"),
        &[("authorization", &format!("Bearer {token}"))],
        None,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.body["id"], BOB);
    assert_eq!(reply.body["username"], "bob");

    // But a user token is not a workspace: /rbac/* refuses it.
    for (method, path, body) in [
        (
            "POST",
            format!("/zenml/rbac/check_permissions?user_id={BOB}&action=read"),
            Some(json!(["stack"])),
        ),
        (
            "GET",
            format!("/zenml/rbac/allowed_resource_ids?user_id={BOB}&action=read&resource=stack"),
            None,
        ),
        (
            "POST",
            "/zenml/rbac/resource_members".to_owned(),
            Some(json!({"user_id": BOB, "resource": format!("stack/{ID1}"), "actions": ["delete"]})),
        ),
    ] {
        let reply = zen.call_as(&token, method, &path, body.as_ref());
        assert_eq!(reply.status, 403, "{method} {path}: {reply:?}");
    }
    assert!(
        !zen.allows(BOB, "delete", &format!("stack/{ID1}")),
        "the share was refused"
    );

    // Keys that cannot log in.
    for (what, key) in [
        ("revoked", KEY_BOB_REVOKED),
        ("deactivated", KEY_MALLORY),
        ("unknown", "ZENPROKEY_nobody_00000000000000000000000000000000"),
    ] {
        let reply = zen
            .server
            .post_form("/zenml/auth/login", &[("password", key)], &[]);
        assert_eq!(reply.status, 401, "{what}: {reply:?}");
        assert!(reply.body.get("access_token").is_none(), "{what}");
    }
}

// ===== cloud extras, methods, paths ===========================================================

#[test]
fn cloud_mode_extras() {
    let zen = Zen::start();
    let usage = json!({
        "organization_id": ORG, "feature": "pipeline", "total": 1,
        "metadata": {"workspace_id": PRODUCTION, "resource_id": ID1},
    });
    let entitlement = |org: &str, feature: &str| format!("/zenml/organizations/{org}/entitlement/{feature}");
    // (method, path, body, expected status)
    let table: Vec<(&str, String, Option<Value>, u16)> = vec![
        ("PATCH", "/zenml/workspace_status".into(), None, 200),
        ("PATCH", "/zenml/tenant_status".into(), None, 200),
        ("POST", "/zenml/usage-event".into(), Some(usage.clone()), 200),
        (
            "POST",
            "/zenml/usage-event".into(),
            Some(json!({"organization_id": ORG, "feature": "model", "total": -1, "metadata": {}})),
            200,
        ),
        ("GET", entitlement(ORG, "pipeline"), None, 200),
        ("GET", entitlement(ORG, "pipeline_run"), None, 200),
        ("GET", entitlement(ORG, "project"), None, 200),
        ("GET", entitlement(STRANGER, "pipeline"), None, 404),
        (
            "GET",
            format!("/zenml/organizations/{ORG}/entitlement/pipeline/extra"),
            None,
            404,
        ),
    ];
    for (method, path, body, status) in table {
        let reply = zen.call(method, &path, body.as_ref());
        assert_eq!(reply.status, status, "{method} {path}: {reply:?}");
    }
    let reply = zen.call("GET", &entitlement(STRANGER, "pipeline"), None);
    assert!(reply.message().contains(STRANGER), "{reply:?}");
}

#[test]
fn wrong_methods_are_405_and_unknown_paths_404() {
    let zen = Zen::start();
    // (method, path, expected Allow)
    let table = [
        ("GET", "/zenml/auth/login", "POST"),
        ("PUT", "/zenml/rbac/check_permissions", "GET, POST"),
        ("DELETE", "/zenml/rbac/check_permissions", "GET, POST"),
        ("POST", "/zenml/rbac/allowed_resource_ids", "GET"),
        ("GET", "/zenml/rbac/resource_members", "POST"),
        ("GET", "/zenml/rbac/resources", "DELETE"),
        ("POST", "/zenml/rbac/resources", "DELETE"),
        ("POST", "/zenml/rbac/user_team_ids", "GET"),
        ("POST", "/zenml/users/authorize_server", "GET"),
        ("GET", "/zenml/workspace_status", "PATCH"),
        ("POST", "/zenml/tenant_status", "PATCH"),
        ("GET", "/zenml/usage-event", "POST"),
    ];
    for (method, path, allow) in table {
        // With and without a token: the method is checked first.
        for token in [None, Some(&zen.token)] {
            let bearer = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = bearer.iter().map(|b| ("authorization", b.as_str())).collect();
            let reply = zen.server.send(method, path, &headers, None);
            assert_eq!(reply.status, 405, "{method} {path}: {reply:?}");
            assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
            assert_eq!(reply.body["error"]["code"], "method_not_allowed");
        }
    }
    for path in [
        "/zenml/nope",
        "/zenml/",
        "/zenml/rbac",
        "/zenml/rbac/",
        "/zenml/rbac/check_permissions/extra",
        "/zenml/auth/logout",
        "/zenml/organizations",
        "/zenml/users/authorize_server/x",
        "/zenmlx/auth/login",
    ] {
        for method in ["GET", "POST"] {
            let reply = zen.call(method, path, None);
            assert_eq!(reply.status, 404, "{method} {path}: {reply:?}");
            assert_eq!(reply.body["error"]["code"], "not_found", "{method} {path}");
        }
    }
}

/// A resource in a project of another workspace can never be decided here: sharing it is
/// refused rather than stored without effect.
#[test]
fn sharing_a_resource_of_another_workspaces_project_is_forbidden() {
    const SANDBOX: &str = "42f33105-edf6-4bee-8385-c589bb25ded0"; // project of staging
    let zen = Zen::start();
    for resource in [pipeline(SANDBOX, ID1), format!("project/{SANDBOX}")] {
        let reply = zen.share(Grantee::User(GRACE), &resource, &["read"]);
        assert_eq!(reply.status, 403, "{resource}: {reply:?}");
        let message = reply.body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("of another workspace") && message.contains("sandbox"),
            "{message}"
        );
    }
    // An unlisted project is this workspace's: sharing in it works.
    zen.share_ok(Grantee::User(GRACE), &pipeline(ID3, ID1), &["read"]);
    assert!(zen.allows(GRACE, "read", &pipeline(ID3, ID1)));
}
