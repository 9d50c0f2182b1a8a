//! Metrics, request ids and the decision log, checked with Prometheus' own tools (`promtool`,
//! installed by `scripts/ensure-promtool.sh` where missing).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{BOB, CHURN, DAVE, GRACE, PRODUCTION};

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};

use common::Server;
use serde_json::{Value, json};

/// The path of `promtool`, installed once per test run (the script also locks, for other runs).
fn promtool() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| common::cli::setup("ensure-promtool.sh", &[]).remove(0))
        .clone()
}

fn reads_churn(user: &str) -> Value {
    json!({"principal": format!("ZenML::User::\"{user}\""), "action": "ZenML::Action::\"read\"", "resource": format!("ZenML::Project::\"{CHURN}\"")})
}

fn credentials() -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(common::root().join("tests/e2e/try-out-credentials.json")).unwrap(),
    )
    .unwrap()
}

/// The value of one exact series line of a Prometheus text page.
fn value(page: &str, series: &str) -> f64 {
    page.lines()
        .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
        .unwrap_or_else(|| panic!("no series `{series}` in /metrics"))
        .trim()
        .parse()
        .unwrap()
}

fn metrics(server: &Server) -> String {
    let reply = server.send("GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200);
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    reply.body.as_str().unwrap().to_owned()
}

#[test]
fn counters_move_with_a_known_sequence_and_promtool_accepts_the_page() {
    let promtool = promtool();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("decisions.jsonl");
    let server = Server::start(&["--shares-db", ":memory:", "--decision-log", log.to_str().unwrap()]);

    // Cedar API: dave's read allowed 3 times (1 miss, 2 hits), grace's denied twice (1 miss, 1 hit);
    // then both in a batch, all hits.
    for _ in 0..3 {
        assert_eq!(
            server.post("/v1/is_authorized", &reads_churn(DAVE)).1["decision"],
            "Allow"
        );
    }
    for _ in 0..2 {
        assert_eq!(
            server.post("/v1/is_authorized", &reads_churn(GRACE)).1["decision"],
            "Deny"
        );
    }
    // A batch of the same two questions, interleaved (each counted under its own labels: a
    // batch's items reuse the metric handles of the one before while the labels repeat).
    let items = [DAVE, DAVE, GRACE, DAVE].map(reads_churn);
    let (status, reply) = server.post("/v1/batch_is_authorized", &json!({"requests": items}));
    assert_eq!(status, 200, "{reply}");
    let decisions = common::each_field(&reply["results"], "decision");
    assert_eq!(decisions, ["Allow", "Allow", "Deny", "Allow"]);
    let (status, _) = server.post_raw("/v1/is_authorized", "{");
    assert_eq!(status, 400);
    // ZenML API: bob may read churn's pipelines and stacks; grace may read no stack.
    let secret = credentials()["workspaces"]["production"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = server.zenml_login(PRODUCTION, &secret);
    let bearer = format!("Bearer {token}");
    let check = |user: &str, resources: Value| {
        let path = format!("/zenml/rbac/check_permissions?user_id={user}&action=read");
        let body = resources.to_string();
        let reply = server.send(
            "POST",
            &path,
            &[("authorization", &bearer), ("x-request-id", "zenml-check-1")],
            Some(("application/json", &body)),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.headers["x-request-id"], "zenml-check-1");
        reply.body
    };
    assert_eq!(
        check(BOB, json!([format!("{CHURN}:pipeline"), "stack"])),
        json!({format!("{CHURN}:pipeline"): true, "stack": true})
    );
    assert_eq!(check(GRACE, json!(["stack"])), json!({"stack": false}));

    let page = metrics(&server);
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(page.as_bytes()).unwrap();
    let checked = child.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );

    // (series, expected value)
    let table: Vec<(String, f64)> = vec![
        (r#"authz_decisions_total{action="read",api="cedar",outcome="allow",resource_type="ZenML::Project"}"#.into(), 6.0),
        (r#"authz_decisions_total{action="read",api="cedar",outcome="deny",resource_type="ZenML::Project"}"#.into(), 3.0),
        (r#"authz_decisions_total{action="read",api="zenml",outcome="allow",resource_type="pipeline"}"#.into(), 1.0),
        (r#"authz_decisions_total{action="read",api="zenml",outcome="allow",resource_type="stack"}"#.into(), 1.0),
        (r#"authz_decisions_total{action="read",api="zenml",outcome="deny",resource_type="stack"}"#.into(), 1.0),
        ("authz_cache_hits_total".into(), 7.0),
        ("authz_cache_misses_total".into(), 5.0),
        (r#"authz_decision_duration_seconds_count{api="cedar"}"#.into(), 2.0),
        (r#"authz_decision_duration_seconds_count{api="zenml"}"#.into(), 3.0),
        (r#"authz_http_requests_total{route="/v1/is_authorized",status="200"}"#.into(), 5.0),
        (r#"authz_http_requests_total{route="/v1/is_authorized",status="400"}"#.into(), 1.0),
        (r#"authz_http_requests_total{route="/v1/batch_is_authorized",status="200"}"#.into(), 1.0),
        (r#"authz_http_requests_total{route="{zenml}/rbac/check_permissions",status="200"}"#.into(), 2.0),
        (r#"authz_http_requests_total{route="{zenml}/auth/login",status="200"}"#.into(), 1.0),
        (r#"authz_policy_determining_total{policy_id="project-member-read-project"}"#.into(), 6.0),
        (r#"authz_policy_reloads_total{result="failure"}"#.into(), 0.0),
        ("authz_policy_reload_failing".into(), 0.0),
        ("authz_decision_log_dropped_total".into(), 0.0),
        ("authz_http_requests_in_flight".into(), 1.0),
        ("authz_directory_bindings".into(), 20.0),
        ("authz_shares".into(), 0.0),
    ];
    for (series, expected) in table {
        assert_eq!(value(&page, &series), expected, "{series}");
    }
    let (_, status) = server.get("/v1/status");
    let revision = status["revision"].as_str().unwrap();
    assert_eq!(
        value(
            &page,
            &format!(r#"authz_policy_revision_info{{revision="{revision}"}}"#)
        ),
        1.0
    );
    assert!(value(&page, "process_resident_memory_bytes") > 1e6);
    assert!(page.contains("# HELP authz_decisions_total "), "help text");

    // The decision log: one record per decision, with the request ids.
    // (A guard against a hang only, not a bound on the writer's speed.)
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let records: Vec<Value> = loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        let records: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        if records.len() >= 12 || std::time::Instant::now() > deadline {
            break records;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(records.len(), 12, "{records:#?}");
    for record in &records {
        for field in [
            "time",
            "request_id",
            "api",
            "principal",
            "action",
            "resource",
            "decision",
            "policies",
            "revision",
            "latency_us",
            "cached",
        ] {
            assert!(record.get(field).is_some(), "{field} missing in {record}");
        }
    }
    let zenml: Vec<&Value> = records.iter().filter(|r| r["api"] == "zenml").collect();
    assert_eq!(zenml.len(), 3);
    assert!(zenml.iter().all(|r| r["request_id"] == "zenml-check-1"));
    assert_eq!(records.iter().filter(|r| r["decision"] == "deny").count(), 4);
    assert_eq!(records.iter().filter(|r| r["cached"] == true).count(), 7);
}

#[test]
fn every_response_has_a_request_id() {
    let server = Server::start(&["--shares-db", ":memory:"]);
    let generated = server.send("GET", "/healthz", &[], None);
    let id = generated.headers["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 32, "{id}");
    let given = server.send("GET", "/nope", &[("x-request-id", "trace-42")], None);
    assert_eq!(given.status, 404);
    assert_eq!(given.headers["x-request-id"], "trace-42");
    let long = "x".repeat(200);
    for unsafe_id in ["has spaces", "quote\"s", long.as_str()] {
        let reply = server.send("GET", "/healthz", &[("x-request-id", unsafe_id)], None);
        let got = reply.headers["x-request-id"].to_str().unwrap();
        assert!(
            got != unsafe_id && got.len() == 32,
            "{unsafe_id:?} must be replaced, got {got}"
        );
    }
}

#[test]
fn the_alert_rules_pass_promtool_and_their_unit_tests() {
    let promtool = promtool();
    let dir = common::root().join("deploy/prometheus");
    for args in [
        vec!["check", "rules", "alerts.yaml"],
        vec!["test", "rules", "alerts.test.yaml"],
    ] {
        let output = Command::new(&promtool)
            .args(&args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn dashboards_and_alerts_use_only_metrics_that_exist() {
    let server = Server::start(&["--shares-db", ":memory:"]);
    // Make every labelled family appear at least once.
    server.post("/v1/is_authorized", &reads_churn(DAVE));
    let page = metrics(&server);
    let exported: BTreeSet<String> = page
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .map(|l| l.split(' ').next().unwrap().to_owned())
        .collect();
    let root = common::root();
    let dashboard = std::fs::read_to_string(root.join("deploy/grafana/zenml-authz.json")).unwrap();
    let _: Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let alerts = std::fs::read_to_string(root.join("deploy/prometheus/alerts.yaml")).unwrap();
    let mut used = BTreeSet::new();
    for text in [&dashboard, &alerts] {
        for (i, _) in text.match_indices("authz_") {
            if i > 0 && text.as_bytes()[i - 1].is_ascii_alphanumeric() {
                continue;
            }
            let name: String = text[i..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            used.insert(name);
        }
    }
    assert!(used.len() >= 15, "{used:?}");
    for name in used {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name);
        assert!(
            exported.contains(family),
            "`{name}` is used in deploy/ but not exported"
        );
    }
}

/// A decision log that cannot keep up drops records (counted) instead of slowing requests.
#[test]
fn a_stuck_decision_log_drops_and_counts_instead_of_blocking() {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stuck");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    // A reader that never reads: the pipe fills (64 KiB), then the writer thread blocks.
    let _reader = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc_nonblock())
        .open(&fifo)
        .unwrap();
    let server = Server::start(&[
        "--shares-db",
        ":memory:",
        "--cache",
        "off",
        "--decision-log",
        fifo.to_str().unwrap(),
        "--decision-log-queue",
        "4",
    ]);
    // A request that waited for the stuck writer would wait forever (the pipe is never read):
    // every one is answered, and some records are dropped.
    for _ in 0..600 {
        let (status, _) = server.post("/v1/is_authorized", &reads_churn(DAVE));
        assert_eq!(status, 200);
    }
    let dropped = value(&metrics(&server), "authz_decision_log_dropped_total");
    assert!(dropped > 0.0, "nothing dropped");
}

/// `O_NONBLOCK`, so that opening the FIFO's read end does not wait for a writer.
fn libc_nonblock() -> i32 {
    0o4000
}
