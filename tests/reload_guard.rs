//! The reload guard (issue 16, finding 7), end to end: a valid but weaker policy set (a file
//! emptied by an editor crash, a truncated copy, a lost `@required` policy, a set that fails the
//! decision tables) never replaces the active one; a deliberate removal still can.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{CAROL, CHURN, MALLORY};

use std::path::Path;
use std::time::{Duration, Instant};

use common::Server;
use serde_json::{Value, json};

/// The `workspace-viewer` policy as `zenml-authz fmt` writes it in policies/workspace.cedar.
const VIEWER_PERMIT: &str = "permit (\n  principal,\n  action == ZenML::Action::\"read\",\n  resource\n)\nwhen { principal in resource.workspace.viewers };";
const VIEWER_FORBID: &str = "forbid (\n  principal,\n  action == ZenML::Action::\"read\",\n  resource\n)\nwhen { principal in resource.workspace.viewers };";
const REQUIRED: &str = "@required(\"deactivated accounts must always be denied\")\n";

fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec!["--shares-db", ":memory:", "--watch-debounce-ms", "50"];
    args.extend_from_slice(extra);
    let server = Server::start_with(
        &dir.join("policies"),
        &dir.join("schemas"),
        &dir.join("policies/directory.yaml"),
        &args,
    );
    // Wait for the watcher's first check, so that no edit is read half-written by it.
    wait_status(&server, "the first check", |s| s["reloads"]["unchanged"] != 0);
    server
}

/// Polls `/v1/status` until `condition` holds (a generous deadline: a debug build on a busy
/// machine reloads slowly; nothing here measures speed).
fn wait_status(server: &Server, what: &str, condition: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, status) = server.get("/v1/status");
        if condition(&status) {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: status never matched: {status}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `principal` reads project churn.
fn reads_churn(server: &Server, principal: &str) -> String {
    let request = json!({"principal": format!("ZenML::User::\"{principal}\""), "action": "ZenML::Action::\"read\"", "resource": format!("ZenML::Project::\"{CHURN}\"")});
    let (status, body) = server.post("/v1/is_authorized", &request);
    assert_eq!(status, 200, "{body}");
    body["decision"].as_str().unwrap().to_owned()
}

/// The 1-based line of the first line of `path` containing `needle`.
fn line_of(path: &Path, needle: &str) -> usize {
    let text = std::fs::read_to_string(path).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

/// What a step should do to the served policies.
enum Expect {
    /// Refused: the revision stays, and `last_load_error` contains each of these.
    Refused(Vec<String>),
    /// Published: a new revision, no error.
    Published,
}

/// One change to the sources (in the temp dir), what the guard should do with it, and what
/// mallory (deactivated, still a workspace admin on paper) may do afterwards.
struct Step {
    change: Box<dyn Fn(&Path)>,
    expect: Expect,
    mallory: &'static str,
}

#[test]
fn issue_16_a_reload_never_loses_a_required_policy_or_empties_a_file() {
    let dir = common::copy_sources();
    let root = dir.path().to_path_buf();
    let policies = root.join("policies");
    let accounts = policies.join("service_accounts.cedar");
    let original = std::fs::read_to_string(&accounts).unwrap();
    let workspace = std::fs::read_to_string(policies.join("workspace.cedar")).unwrap();
    let header: String = original.lines().take(4).map(|l| format!("{l}\n")).collect();
    let at = format!(
        "service_accounts.cedar:{}:",
        line_of(&accounts, "@id(\"deactivated-principal\")")
    );
    let required = vec![
        at.clone(),
        "policy `deactivated-principal` is `@required` (deactivated accounts must always be denied) \
         but the new policies lack it"
            .to_owned(),
        "to remove it on purpose, first delete its `@required` annotation and let that reload, then \
         delete the policy"
            .to_owned(),
    ];
    let emptied =
        |file: &str, held: &str| format!("{file}: policy file now holds no policies but held {held}");
    let mut both = required.clone();
    both.push(emptied("service_accounts.cedar", "1 (`deactivated-principal`)"));
    both.push("to remove its policies on purpose, delete the file".to_owned());

    let write = |name: &'static str, text: String| {
        move |dir: &Path| std::fs::write(dir.join("policies").join(name), &text).unwrap()
    };
    // (what, steps; the sources are restored after each scenario)
    let scenarios: Vec<(&str, Vec<Step>)> = vec![
        (
            "an editor crash leaves service_accounts.cedar empty",
            vec![Step {
                change: Box::new(write("service_accounts.cedar", String::new())),
                expect: Expect::Refused(both.clone()),
                mallory: "Deny",
            }],
        ),
        (
            "a truncated copy leaves only its header comment",
            vec![Step {
                change: Box::new(write("service_accounts.cedar", header.clone())),
                expect: Expect::Refused(both.clone()),
                mallory: "Deny",
            }],
        ),
        (
            "service_accounts.cedar deleted",
            vec![Step {
                change: Box::new(|dir: &Path| {
                    std::fs::remove_file(dir.join("policies/service_accounts.cedar")).unwrap()
                }),
                expect: Expect::Refused(required.clone()),
                mallory: "Deny",
            }],
        ),
        (
            "the required policy cut from a file that keeps another policy",
            vec![Step {
                change: Box::new(write(
                    "service_accounts.cedar",
                    format!("{header}@id(\"extra-viewers\")\n{VIEWER_PERMIT}\n"),
                )),
                expect: Expect::Refused(required.clone()),
                mallory: "Deny",
            }],
        ),
        (
            "workspace.cedar (no required policy) emptied",
            vec![Step {
                change: Box::new(write("workspace.cedar", String::new())),
                expect: Expect::Refused(vec![emptied("workspace.cedar", "8 (`workspace-admin`, ")]),
                mallory: "Deny",
            }],
        ),
        (
            "the policy moved to another file, leaving its old file empty",
            vec![Step {
                change: Box::new({
                    let original = original.clone();
                    move |dir: &Path| {
                        std::fs::write(dir.join("policies/service_accounts.cedar"), "").unwrap();
                        std::fs::write(dir.join("policies/moved.cedar"), &original).unwrap();
                    }
                }),
                expect: Expect::Published,
                mallory: "Deny",
            }],
        ),
        (
            "removed on purpose: the annotation first, then the policy",
            vec![
                Step {
                    change: Box::new(write("service_accounts.cedar", original.replace(REQUIRED, ""))),
                    expect: Expect::Published,
                    mallory: "Deny",
                },
                Step {
                    change: Box::new(|dir: &Path| {
                        std::fs::remove_file(dir.join("policies/service_accounts.cedar")).unwrap()
                    }),
                    expect: Expect::Published,
                    mallory: "Allow",
                },
            ],
        ),
    ];
    assert!(original.contains(REQUIRED), "the bundled policy is annotated");

    let server = start(&root, &[]);
    let good = wait_status(&server, "start", |_| true)["revision"].clone();
    for (what, steps) in scenarios {
        for (index, step) in steps.into_iter().enumerate() {
            let before = wait_status(&server, what, |_| true);
            (step.change)(&root);
            let failed = before["reloads"]["failed"].as_u64().unwrap();
            match step.expect {
                Expect::Refused(needles) => {
                    let status = wait_status(&server, what, |s| {
                        s["reloads"]["failed"].as_u64().unwrap() > failed
                    });
                    assert_eq!(
                        status["revision"], before["revision"],
                        "{what}: the revision stays"
                    );
                    let errors = status["last_load_error"].to_string();
                    for needle in &needles {
                        let needle = serde_json::to_string(needle).unwrap();
                        assert!(
                            errors.contains(needle.trim_matches('"')),
                            "{what}: no {needle} in {errors}"
                        );
                    }
                }
                Expect::Published => {
                    wait_status(&server, what, |s| {
                        s["revision"] != before["revision"] && s["last_load_error"].is_null()
                    });
                }
            }
            assert_eq!(
                reads_churn(&server, MALLORY),
                step.mallory,
                "{what} (step {index})"
            );
        }
        // Back to the bundled sources: the original revision, and no error.
        std::fs::write(&accounts, &original).unwrap();
        std::fs::write(policies.join("workspace.cedar"), &workspace).unwrap();
        let _ = std::fs::remove_file(policies.join("moved.cedar"));
        wait_status(&server, what, |s| {
            s["revision"] == good && s["last_load_error"].is_null()
        });
    }
}

#[test]
fn issue_16_the_reload_gate_runs_the_decision_tables_before_publishing() {
    let dir = common::copy_sources();
    let tables = dir.path().join("decisions");
    std::fs::create_dir_all(&tables).unwrap();
    for entry in std::fs::read_dir(common::root().join("tests/decisions")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), tables.join(entry.file_name())).unwrap();
    }
    let server = start(dir.path(), &["--reload-gate", tables.to_str().unwrap()]);
    let path = dir.path().join("policies/workspace.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    let before = wait_status(&server, "start", |_| true);

    // Valid Cedar, nothing required lost, but workspace viewers can no longer read.
    assert!(
        text.contains(VIEWER_PERMIT),
        "workspace.cedar holds {VIEWER_PERMIT}"
    );
    std::fs::write(&path, text.replace(VIEWER_PERMIT, VIEWER_FORBID)).unwrap();
    let status = wait_status(&server, "a failing edit", |s| s["reloads"]["failed"] == 1);
    assert_eq!(status["revision"], before["revision"], "{status}");
    let errors = status["last_load_error"].as_array().unwrap();
    let first = errors[0].as_str().unwrap();
    assert!(
        first.starts_with(&format!(
            "reload gate: the decision tables `{}` fail on the new policies (",
            tables.display()
        )) && first.ends_with("; keeping the active policies"),
        "{first}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains(": expected allow, got deny")),
        "a failing row is named: {status}"
    );
    assert_eq!(
        reads_churn(&server, CAROL),
        "Allow",
        "the active policies still decide"
    );

    // An edit the tables accept is published.
    std::fs::write(&path, format!("// reviewed\n{text}")).unwrap();
    let status = wait_status(&server, "a passing edit", |s| {
        s["revision"] != before["revision"] && s["last_load_error"].is_null()
    });
    assert_eq!(status["reloads"]["succeeded"], 1, "{status}");
    assert_eq!(reads_churn(&server, CAROL), "Allow");
}
