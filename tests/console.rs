//! The operators' console (`/console/`) and the read-only API it calls: the page is open, the
//! API is behind the Cedar API's caller tokens; its answers are the CLI's (`what-can`,
//! `who-can`) for the sample organization; the role matrix is what each role grants; the live
//! tail is the decision log's own records. The page itself is driven in a real browser by
//! `console_e2e.py` (below).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::{Server, query};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const TOKEN: &str = "console-test-token-0123456789abcdef0123456789abcdef";

fn with_token() -> Server {
    let hashes = format!("console:sha256:{}", hex::encode(Sha256::digest(TOKEN)));
    Server::start(&["--api-token-hashes", &hashes, "--decision-log", "memory"])
}

fn get(server: &Server, path: &str) -> common::Reply {
    let bearer = format!("Bearer {TOKEN}");
    server.send("GET", path, &[("authorization", &bearer)], None)
}

fn ok(server: &Server, path: &str) -> Value {
    let reply = get(server, path);
    assert_eq!(reply.status, 200, "{path}: {reply:?}");
    reply.body
}

#[test]
fn the_page_is_open_and_its_api_needs_a_caller_token() {
    let server = with_token();
    let bad = format!("Bearer {}", "x".repeat(48));
    let good = format!("Bearer {TOKEN}");
    // (path, authorization, status, content type's start)
    let rows: &[(&str, Option<&str>, u16, &str)] = &[
        ("/console/", None, 200, "text/html"),
        ("/console/console.js", None, 200, "text/javascript"),
        ("/console/console.css", None, 200, "text/css"),
        ("/v1/directory", None, 401, "application/json"),
        ("/v1/directory", Some(&bad), 401, "application/json"),
        ("/v1/directory", Some(&good), 200, "application/json"),
        ("/v1/role-matrix?scope=churn", None, 401, "application/json"),
        (
            "/v1/role-matrix?scope=churn",
            Some(&good),
            200,
            "application/json",
        ),
        ("/v1/what-can?who=bob", None, 401, "application/json"),
        ("/v1/what-can?who=bob", Some(&good), 200, "application/json"),
        (
            "/v1/who-can?action=read&resource=churn:pipeline",
            None,
            401,
            "application/json",
        ),
        (
            "/v1/who-can?action=read&resource=churn:pipeline",
            Some(&good),
            200,
            "application/json",
        ),
        ("/v1/decisions", None, 401, "application/json"),
        ("/v1/decisions", Some(&good), 200, "application/json"),
    ];
    for (path, authorization, status, content_type) in rows {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
        let reply = server.send("GET", path, &headers, None);
        assert_eq!(reply.status, *status, "{path} {authorization:?}: {reply:?}");
        let got = reply.header("content-type").unwrap_or_default();
        assert!(got.starts_with(content_type), "{path}: {got}");
    }
    // The page: a strict CSP, no inline script; `/console` sends the browser to it.
    let page = server.send("GET", "/console/", &[], None);
    let csp = page.header("content-security-policy").unwrap();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(page.header("x-frame-options"), Some("DENY"));
    let bare = server.send("GET", "/console", &[], None);
    assert_eq!((bare.status, bare.header("location")), (308, Some("console/")));
    let post = server.send("POST", "/v1/directory", &[("authorization", &good)], None);
    assert_eq!(post.status, 405, "{post:?}");
}

#[test]
fn bad_questions_are_precise_400s() {
    let server = with_token();
    let rows = [
        ("/v1/role-matrix", "`scope` is required"),
        ("/v1/role-matrix?scope=nowhere", "unknown scope `nowhere`"),
        ("/v1/what-can", "`who` is required"),
        ("/v1/what-can?who=nobody", "unknown `nobody`"),
        (
            "/v1/what-can?who=bob&workspace=nowhere",
            "unknown workspace `nowhere`",
        ),
        ("/v1/who-can?resource=churn:pipeline", "`action` is required"),
        (
            "/v1/who-can?action=fly&resource=churn:pipeline",
            "unknown action `fly`",
        ),
        (
            "/v1/who-can?action=read&resource=nowhere:pipeline",
            "unknown project `nowhere`",
        ),
        (
            "/v1/who-can?action=read&resource=churn:spaceship",
            "unknown resource type `spaceship`",
        ),
        (
            "/v1/who-can?action=read&resource=secret",
            "name one with `--workspace`",
        ),
        ("/v1/decisions?after=-1", "`after` must be a record number"),
    ];
    for (path, message) in rows {
        let reply = get(&server, path);
        assert_eq!(reply.status, 400, "{path}: {reply:?}");
        assert!(reply.message().contains(message), "{path}: {reply:?}");
    }
}

/// The role matrix of the sample organization: (scope, where the role is bound, role, resource
/// type) -> the actions a holder of that role alone may do there.
#[test]
fn the_role_matrix_shows_what_each_role_grants() {
    let server = with_token();
    let all = json!(zenml_authz::model::ACTIONS);
    let rows: &[(&str, &str, &str, &str, Value)] = &[
        ("churn", "organization", "admin", "pipeline", all.clone()),
        ("churn", "organization", "member", "pipeline", json!([])),
        ("churn", "workspace", "viewer", "pipeline", json!(["read"])),
        ("churn", "workspace", "viewer", "model", json!(["read"])),
        (
            "churn",
            "project",
            "model-promoter",
            "model",
            json!(["read", "update", "promote"]),
        ),
        ("churn", "project", "model-promoter", "pipeline", json!(["read"])),
        ("churn", "workspace", "secret-reader", "pipeline", json!([])),
        (
            "production",
            "workspace",
            "secret-reader",
            "secret",
            json!(["read", "read_secret_value"]),
        ),
        ("production", "workspace", "secret-reader", "stack", json!([])),
        ("production", "workspace", "admin", "secret", all.clone()),
        ("production", "workspace", "viewer", "secret", json!(["read"])),
        ("staging", "workspace", "admin", "secret", all),
    ];
    for (scope, bound_at, role, resource_type, expected) in rows {
        let matrix = ok(
            &server,
            &format!("/v1/role-matrix?{}", query(&[("scope", scope)])),
        );
        let types = matrix["types"].as_array().unwrap();
        let row = types
            .iter()
            .position(|t| t == resource_type)
            .unwrap_or_else(|| panic!("{scope}: no row {resource_type} in {types:?}"));
        let column = matrix["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["role"] == *role && r["bound_at"]["kind"] == *bound_at)
            .unwrap_or_else(|| panic!("{scope}: no column {bound_at} {role}"));
        assert_eq!(column["grants"][row]["type"], *resource_type);
        assert_eq!(
            column["grants"][row]["actions"], *expected,
            "{scope}: {role} bound at the {bound_at}, on {resource_type}"
        );
    }
    // Custom roles appear only where they are bound, marked custom.
    let production = ok(&server, "/v1/role-matrix?scope=production");
    let customs: Vec<&str> = production["roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["custom"] == true)
        .map(|r| r["role"].as_str().unwrap())
        .collect();
    assert_eq!(customs, ["secret-reader"]);
}

/// `what-can` in the CLI's words, from the API's answer.
fn what_can_text(answer: &Value) -> String {
    let mut out = String::new();
    for scope in answer["scopes"].as_array().unwrap() {
        let title = match scope["kind"].as_str().unwrap() {
            "workspace" => format!("workspace {}", scope["name"].as_str().unwrap()),
            _ => format!(
                "project {} ({})",
                scope["name"].as_str().unwrap(),
                scope["workspace"].as_str().unwrap()
            ),
        };
        let rows: Vec<(String, Vec<String>)> = scope["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| {
                let actions = row["actions"].as_array().unwrap();
                let actions = actions.iter().map(|a| a.as_str().unwrap().to_owned()).collect();
                (row["type"].as_str().unwrap().to_owned(), actions)
            })
            .collect();
        let text = |list: &[String]| {
            if list.len() == 10 {
                "all".to_owned()
            } else {
                list.join(" ")
            }
        };
        let granted: Vec<_> = rows.iter().filter(|(_, list)| !list.is_empty()).collect();
        if granted.is_empty() {
            out += &format!("{title}: nothing\n");
        } else if granted.len() == rows.len() && rows.iter().all(|(_, list)| *list == rows[0].1) {
            out += &format!("{title}:\n  every type: {}\n", text(&rows[0].1));
        } else {
            out += &format!("{title}:\n");
            for (label, list) in granted {
                out += &format!("  {label:<20} {}\n", text(list));
            }
        }
    }
    out
}

/// The bindings that reach `name` as the directory file writes them (its own, and those of
/// its teams): `role scope-kind scope-name team-or--`.
fn bindings_in_file(yaml: &Value, name: &str) -> BTreeSet<String> {
    let teams: Vec<&str> = yaml["teams"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|team| team["members"].as_array().unwrap().iter().any(|m| m == name))
        .map(|team| team["name"].as_str().unwrap())
        .collect();
    let mut found = BTreeSet::new();
    for binding in yaml["bindings"].as_array().unwrap() {
        let through = match (&binding["user"], &binding["service_account"], &binding["team"]) {
            (Value::String(user), _, _) | (_, Value::String(user), _) if user == name => "-",
            (_, _, Value::String(team)) if teams.contains(&team.as_str()) => team.as_str(),
            _ => continue,
        };
        let (kind, scope) = ["organization", "workspace", "project"]
            .into_iter()
            .find_map(|kind| binding[kind].as_str().map(|scope| (kind, scope)))
            .unwrap();
        found.insert(format!(
            "{} {kind} {scope} {through}",
            binding["role"].as_str().unwrap()
        ));
    }
    found
}

/// For every user and service account of the sample, the console's what-can is the CLI's, and
/// every binding it lists is the entry at its file and line; who-can agrees with the CLI too.
#[test]
fn the_console_answers_what_the_cli_answers() {
    let server = with_token();
    let root = common::root();
    let directory = ok(&server, "/v1/directory");
    let text = std::fs::read_to_string(root.join("policies/directory.yaml")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let yaml: Value = serde_saphyr::from_str(&text).unwrap();
    let users = directory["users"].as_array().unwrap();
    assert_eq!(users.len(), 15, "{directory}");
    for user in users {
        let name = user["name"].as_str().unwrap();
        let answer = ok(&server, &format!("/v1/what-can?who={name}"));
        assert_eq!(answer["subject"]["name"], *name);
        let cli = common::cli::run(common::cli::zenml_authz().args(["what-can", "--user", name]));
        assert_eq!(cli.code, 0, "{cli:?}");
        let grids = cli
            .stdout
            .split_once("\nworkspace ")
            .map(|(_, grids)| format!("workspace {grids}"));
        assert_eq!(what_can_text(&answer), grids.unwrap(), "what-can {name}");
        for binding in answer["bindings"].as_array().unwrap() {
            assert!(
                binding["file"]
                    .as_str()
                    .unwrap()
                    .ends_with("policies/directory.yaml"),
                "{binding}"
            );
            let line = lines[binding["line"].as_u64().unwrap() as usize - 1];
            let holder = binding["through_team"].as_str().unwrap_or(name);
            let role = format!("role: {}", binding["role"].as_str().unwrap());
            assert!(
                line.contains(&role) && line.contains(&format!(": {holder},")),
                "{name}: {binding} at {line:?}"
            );
        }
        let shown: BTreeSet<String> = answer["bindings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                let (role, scope) = (&b["role"], &b["scope"]);
                let through = b["through_team"].as_str().unwrap_or("-");
                format!(
                    "{} {} {} {through}",
                    role.as_str().unwrap(),
                    scope["kind"].as_str().unwrap(),
                    scope["name"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(shown, bindings_in_file(&yaml, name), "the bindings of {name}");
    }
    // A team: its own bindings, members, and what a member gets from the team alone.
    let team = ok(&server, "/v1/what-can?who=ml-eng");
    assert_eq!(team["subject"]["kind"], "team");
    assert_eq!(team["subject"]["members"], json!(["bob", "nina"]));
    let roles: Vec<&str> = team["bindings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["member", "developer"]);

    for (action, resource) in [
        ("delete", "churn:pipeline"),
        ("read_secret_value", "secret"),
        ("promote", "fraud:model"),
    ] {
        let path = format!(
            "/v1/who-can?{}",
            query(&[
                ("action", action),
                ("resource", resource),
                ("workspace", "production")
            ])
        );
        let answer = ok(&server, &path);
        let api: BTreeSet<String> = answer["grants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| format!("{} {}", g["kind"].as_str().unwrap(), g["name"].as_str().unwrap()))
            .collect();
        let cli = common::cli::run(common::cli::zenml_authz().args([
            "who-can",
            "--action",
            action,
            "--resource",
            resource,
            "--workspace",
            "production",
        ]));
        assert_eq!(cli.code, 0, "{cli:?}");
        let expected: BTreeSet<String> = cli
            .stdout
            .lines()
            .skip(1)
            .map(|line| line.split_whitespace().take(2).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(api, expected, "who can {action} {resource}");
        assert!(!api.is_empty(), "who can {action} {resource}");
        for grant in answer["grants"].as_array().unwrap() {
            for policy in grant["policies"].as_array().unwrap() {
                assert!(policy["file"].as_str().unwrap().contains("policies/"), "{policy}");
                assert!(policy["line"].as_u64().unwrap() > 0, "{policy}");
            }
        }
    }
}

/// The live tail holds the decision log's last records, numbered, oldest first; a cursor reads
/// only newer ones; without a decision log the tail says it is off.
#[test]
fn the_tail_is_the_decision_logs_last_records() {
    let hashes = format!("console:sha256:{}", hex::encode(Sha256::digest(TOKEN)));
    let server = Server::start(&[
        "--api-token-hashes",
        &hashes,
        "--decision-log",
        "memory",
        "--decision-log-tail",
        "3",
    ]);
    let bearer = format!("Bearer {TOKEN}");
    let users = ["ada", "bob", "carol", "dave", "erin"];
    let directory = ok(&server, "/v1/directory");
    let id_of = |name: &str| {
        directory["users"]
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["name"] == name)
            .unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    for name in users {
        let body = json!({
            "principal": {"type": "ZenML::User", "id": id_of(name)},
            "action": {"type": "ZenML::Action", "id": "read"},
            "resource": {"type": "ZenML::Project", "id": directory["workspaces"][0]["projects"][0]["id"]},
            "context": {"shared_with_users": [{"type": "ZenML::User", "id": id_of("mallory")}]},
        })
        .to_string();
        let reply = server.send(
            "POST",
            "/v1/is_authorized",
            &[("authorization", &bearer)],
            Some(("application/json", &body)),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
    }
    // The writer thread numbers records as it writes them.
    let deadline = std::time::Instant::now() + common::HANG_GUARD;
    let tail = loop {
        let tail = ok(&server, "/v1/decisions?after=0");
        if tail["last"] == 5 || std::time::Instant::now() > deadline {
            break tail;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(
        (
            tail["enabled"].clone(),
            tail["kept"].clone(),
            tail["last"].clone()
        ),
        (json!(true), json!(3), json!(5))
    );
    let records = tail["records"].as_array().unwrap();
    let numbers: Vec<u64> = records.iter().map(|r| r["number"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [3, 4, 5]);
    for (record, name) in records.iter().zip(&users[2..]) {
        assert!(
            record["principal"].as_str().unwrap().contains(&id_of(name)),
            "{record}"
        );
        assert!(
            record.get("context").is_none() && !record.to_string().contains(&id_of("mallory")),
            "{record}"
        );
    }
    let newer = ok(&server, "/v1/decisions?after=4");
    let numbers = common::each_field(&newer["records"], "number");
    assert_eq!(numbers, [&json!(5)]);
    assert_eq!(ok(&server, "/v1/decisions?after=5")["records"], json!([]));

    let without = Server::start(&["--api-token-hashes", &hashes]);
    let off = ok(&without, "/v1/decisions");
    assert_eq!(
        (off["enabled"].clone(), off["records"].clone()),
        (json!(false), json!([]))
    );
}

/// The console in a real browser (Debian's chromium, headless, over the DevTools protocol from
/// `tests/e2e/console_e2e.py`): each view renders the sample organization's answers, compared
/// with the API's; screenshots in `target/test-artifacts/console/`.
#[test]
fn the_console_renders_the_sample_organization_in_a_browser() {
    let root = common::root();
    let venv = common::cli::setup("zenml-venv.sh", &[("ZENML_VERSION", "0.98.0")]).remove(0);
    let tools = common::cli::setup("ensure-browser.sh", &[]);
    let sources = common::copy_sources();
    let work = tempfile::tempdir().unwrap();
    let artifacts = root.join("target/test-artifacts/console");
    common::cli::assert_e2e_passed(
        Command::new(format!("{venv}/bin/python"))
            .arg(root.join("tests/e2e/console_e2e.py"))
            .arg(env!("CARGO_BIN_EXE_zenml-authz"))
            .arg(sources.path())
            .arg(work.path())
            .arg(&tools[0])
            .arg(&artifacts),
    );
    common::cli::assert_screenshots(
        &artifacts,
        &[
            "01-token",
            "02-status",
            "03-roles",
            "04-what-can",
            "05-who-can",
            "06-decisions",
            "07-load-error",
        ],
    );
}
