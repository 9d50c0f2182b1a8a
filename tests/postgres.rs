//! The real binary on a PostgreSQL share database (`--shares-db postgres://…`, or the URL from
//! `--shares-db-url-file`): a share made over HTTP survives a restart, and the database's
//! password is never printed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::postgres::{PrivateServer, TestDatabase};
use common::sample::{ADA, CHURN, DAVE, GRACE, PRODUCTION};
use common::{Server, query};
use serde_json::json;

/// The try-out enrollment key of `production` (its hash is in policies/directory.yaml).
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
/// A password in the URL: trust authentication ignores it, and no output may show it.
const PASSWORD: &str = "never-printed-hunter2";

/// `url` with [`PASSWORD`] for its user.
fn with_password(url: &str) -> String {
    url.replacen("postgres@", &format!("postgres:{PASSWORD}@"), 1)
}

fn headers(token: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", format!("Bearer {token}")),
        ("zenml-server-id", PRODUCTION.to_owned()),
    ]
}

fn share(server: &Server, token: &str, resource: &str, actions: &[&str]) -> u16 {
    share_with(server, token, GRACE, resource, actions)
}

fn share_with(server: &Server, token: &str, user: &str, resource: &str, actions: &[&str]) -> u16 {
    let [a, b] = headers(token);
    let body = json!({"user_id": user, "team_id": null, "sharing_user_id": ADA, "resource": resource, "actions": actions});
    let text = body.to_string();
    server
        .send(
            "POST",
            "/zenml/rbac/resource_members",
            &[(a.0, &a.1), (b.0, &b.1)],
            Some(("application/json", &text)),
        )
        .status
}

fn allows(server: &Server, token: &str, action: &str, resource: &str) -> bool {
    allows_for(server, token, GRACE, action, resource)
}

fn allows_for(server: &Server, token: &str, user: &str, action: &str, resource: &str) -> bool {
    let answer = server.check_permissions(token, PRODUCTION, user, action, &[resource.to_owned()]);
    answer[resource].as_bool().unwrap()
}

#[test]
fn a_share_made_over_http_survives_a_restart_on_postgres() {
    let database = TestDatabase::create();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "postgres-test-token-secret-0123456789abcdef").unwrap();
    let secret = secret.path().to_str().unwrap();
    let pipeline = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    let replaced = format!("{CHURN}:pipeline/22222222-2222-4222-8222-222222222222");

    let first = Server::start(&["--shares-db", &database.url, "--token-secret-file", secret]);
    let token = first.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    assert!(!allows(&first, &token, "update", &pipeline));
    assert_eq!(share(&first, &token, &pipeline, &["read", "update"]), 200);
    assert_eq!(share(&first, &token, &replaced, &["read", "delete"]), 200);
    assert_eq!(share(&first, &token, &replaced, &["delete"]), 200);
    assert!(allows(&first, &token, "update", &pipeline));
    drop(first);

    // The second start reads the URL, with a password, from a file.
    let url_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(url_file.path(), format!("{}\n", with_password(&database.url))).unwrap();
    let second = Server::start(&[
        "--shares-db-url-file",
        url_file.path().to_str().unwrap(),
        "--token-secret-file",
        secret,
    ]);
    for (action, resource, allowed) in [
        ("update", &pipeline, true),
        ("read", &pipeline, true),
        ("delete", &pipeline, false),
        ("read", &replaced, false),
        ("delete", &replaced, true),
    ] {
        assert_eq!(
            allows(&second, &token, action, resource),
            allowed,
            "{action} {resource}"
        );
    }
    let (_, status) = second.get("/v1/status");
    assert!(
        !status.to_string().contains(PASSWORD),
        "the status shows the password: {status}"
    );

    // The policy author's commands read the same database: grace may update the pipeline
    // through the share, and not delete it.
    for (action, code) in [("update", Some(0)), ("delete", Some(1))] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
            .current_dir(common::root())
            .args([
                "authorize",
                "--user",
                "grace",
                "--action",
                action,
                "--resource",
                &pipeline,
            ])
            .args(["--shares-db", &with_password(&database.url)])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), code, "authorize {action}: {text}");
        assert!(!text.contains(PASSWORD), "authorize prints the password: {text}");
    }
}

#[test]
fn an_unreachable_database_stops_the_start_naming_it_without_the_password() {
    let database = TestDatabase::create();
    let missing = format!("{}_missing", database.url);
    let mut child = common::serve_bundled(&common::root())
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--shares-db")
        .arg(with_password(&missing))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A guard against a hang only (a server that started after all would serve forever).
    let deadline = std::time::Instant::now() + common::HANG_GUARD;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server started on a missing database");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    let shown = format!("postgres://postgres@127.0.0.1:5432/{}_missing", database.name);
    assert!(
        stderr.contains(&shown) && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!stderr.contains(PASSWORD), "{stderr}");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(PASSWORD));
}

/// Polls `allows` on `server` until it answers `expected` (a guard against a hang only: how
/// fast is measured in BENCHMARKS.md, never asserted).
fn wait_for(server: &Server, token: &str, action: &str, resource: &str, expected: bool) {
    let deadline = std::time::Instant::now() + common::HANG_GUARD;
    while allows(server, token, action, resource) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "{action} on {resource} never became {expected}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Issue 18: two sidecars on one database; a share made through A is enforced by B, a revoke
/// through A denies on B, and a delete through B purges on A (no cached allow survives either).
#[test]
fn issue_18_a_share_and_its_revoke_through_one_sidecar_reach_the_other() {
    let database = TestDatabase::create();
    let secret = common::postgres::token_secret();
    // A long resync: the notification, not the safety net, must carry the change.
    let flags = common::postgres::replica_flags(&database.url, &secret);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Server::start(&flags);
    let b = Server::start(&flags);
    let token = a.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let pipeline = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    assert!(!allows(&b, &token, "update", &pipeline));

    assert_eq!(share(&a, &token, &pipeline, &["read", "update"]), 200);
    wait_for(&b, &token, "update", &pipeline, true);
    // B has cached the allow; the revoke through A must still deny on B.
    assert!(allows(&b, &token, "update", &pipeline));
    assert_eq!(share(&a, &token, &pipeline, &[]), 200);
    wait_for(&b, &token, "update", &pipeline, false);
    assert!(!allows(&a, &token, "update", &pipeline));

    // A deleted resource's shares, purged through B, are gone on A too (A had cached the allow).
    assert_eq!(share(&a, &token, &pipeline, &["read", "update"]), 200);
    wait_for(&b, &token, "update", &pipeline, true);
    assert!(allows(&a, &token, "update", &pipeline));
    let [h1, h2] = headers(&token);
    let reply = b.send(
        "DELETE",
        &format!("/zenml/rbac/resources?{}", query(&[("resources", &pipeline)])),
        &[(h1.0, &h1.1), (h2.0, &h2.1)],
        None,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    assert!(!allows(&b, &token, "update", &pipeline));
    wait_for(&a, &token, "update", &pipeline, false);
}

/// The value of the unlabelled series `name` in `/metrics`.
fn metric(server: &Server, name: &str) -> f64 {
    let reply = server.send("GET", "/metrics", &[], None);
    let text = reply
        .body
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| reply.body.to_string());
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series `{name}` in /metrics: {text}"))
}

/// Issue 18: the database stops (clients disconnected, as in a restart) under two replicas and
/// starts again. While it is down each replica says so (`/v1/status`, `/metrics`, and `/readyz`
/// where asked), refuses share writes with 503 and writes nothing, and decides from its last
/// known shares — until `--shares-max-stale-secs`, after which shares grant nothing while roles
/// still decide. When it is back both recover on their own with nothing lost: the shares are
/// restored, writes work and reach the other replica, and a row written without a notification
/// arrives with the periodic resync.
#[test]
fn issue_18_the_database_restarted_mid_test_both_recover_with_nothing_lost() {
    let postgres = PrivateServer::start();
    let url = postgres.url();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "postgres-test-token-secret-0123456789abcdef").unwrap();
    let secret = secret.path().to_str().unwrap();
    let common = ["--shares-db", &url, "--token-secret-file", secret];
    // A trusts its last known shares for the default 300 s and is not ready without its database;
    // B withholds them after 1 s and stays ready; B resyncs every second.
    let a = Server::start(
        &[
            &common[..],
            &["--shares-resync-secs", "86400", "--ready-requires-share-store"],
        ]
        .concat(),
    );
    let b = Server::start(
        &[
            &common[..],
            &["--shares-max-stale-secs", "1", "--shares-resync-secs", "1"],
        ]
        .concat(),
    );
    let token = a.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let pipeline = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    let other = format!("{CHURN}:pipeline/33333333-3333-4333-8333-333333333333");
    // Ada's access comes from her role, not from a share.
    let by_role = |server: &Server| allows_for(server, &token, ADA, "update", &pipeline);
    assert!(by_role(&a) && by_role(&b));
    assert_eq!(share(&a, &token, &pipeline, &["read", "update"]), 200);
    wait_for(&b, &token, "update", &pipeline, true);
    let reachable = |status: &serde_json::Value| status["shares"]["store"]["reachable"] == true;
    for server in [&a, &b] {
        let status = server.wait_status(reachable);
        assert_eq!(status["shares"]["store"]["shared"], true, "{status}");
        assert_eq!(status["shares"]["withheld"], false, "{status}");
        assert_eq!(metric(server, "authz_share_store_up"), 1.0);
    }
    assert_eq!(a.get("/readyz").0, 200);

    postgres.stop();
    for server in [&a, &b] {
        let status = server.wait_status(|status| !reachable(status));
        let store = &status["shares"]["store"];
        assert!(store["unreachable_since"].is_string(), "{status}");
        assert!(store["last_error"].is_string(), "{status}");
        assert_eq!(metric(server, "authz_share_store_up"), 0.0);
        // A write is refused whole, with a hint to retry.
        let [h1, h2] = headers(&token);
        let body = json!({"user_id": GRACE, "team_id": null, "sharing_user_id": ADA, "resource": other, "actions": ["read"]}).to_string();
        let reply = server.send(
            "POST",
            "/zenml/rbac/resource_members",
            &[(h1.0, &h1.1), (h2.0, &h2.1)],
            Some(("application/json", &body)),
        );
        assert_eq!(reply.status, 503, "{reply:?}");
        assert_eq!(reply.header("retry-after"), Some("1"), "{reply:?}");
        assert!(reply.message().contains("unreachable"), "{reply:?}");
    }
    let (ready, body) = a.get("/readyz");
    assert_eq!(ready, 503, "{body}");
    assert_eq!(body["status"], "share store unreachable", "{body}");
    assert_eq!(b.get("/readyz").0, 200);
    // A decides from its last known shares; B, past its bound, withholds them (roles decide).
    assert!(allows(&a, &token, "update", &pipeline));
    let status = b.wait_status(|status| status["shares"]["withheld"] == true);
    assert_eq!(status["shares"]["count"], 1, "{status}");
    assert_eq!(metric(&b, "authz_shares_withheld"), 1.0);
    assert!(!allows(&b, &token, "update", &pipeline));
    assert!(by_role(&a) && by_role(&b));

    postgres.resume();
    for server in [&a, &b] {
        server.wait_status(|status| reachable(status) && status["shares"]["withheld"] == false);
    }
    assert_eq!(a.get("/readyz").0, 200);
    assert_eq!(metric(&b, "authz_shares_withheld"), 0.0);
    // Nothing lost: the share is back on B, and writes through either reach the other.
    wait_for(&b, &token, "update", &pipeline, true);
    assert!(allows(&a, &token, "update", &pipeline));
    assert!(
        !allows(&a, &token, "read", &other),
        "the refused write left nothing"
    );
    assert_eq!(share(&b, &token, &pipeline, &[]), 200);
    wait_for(&a, &token, "update", &pipeline, false);
    assert_eq!(share(&a, &token, &other, &["read"]), 200);
    wait_for(&b, &token, "read", &other, true);
    // A row written without a notification (one lost with a connection) arrives with the resync.
    let third = format!("{CHURN}:pipeline/44444444-4444-4444-8444-444444444444");
    let database = url.clone();
    let insert = format!(
        "INSERT INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions) \
         VALUES ('{PRODUCTION}', '{third}', 'user', '{GRACE}', 'read')"
    );
    common::postgres::execute(&database, &insert).unwrap();
    wait_for(&b, &token, "read", &third, true);
    // The audit table has the three writes that were acknowledged, and not the refused ones.
    let audited =
        common::postgres::query_i64(&database, "SELECT count(*) FROM share_events WHERE kind = 'set'");
    assert_eq!(audited, 3);
    let status = b.get("/v1/status").1;
    assert!(status["shares"]["synced_at"].is_string(), "{status}");
}

/// A member removed from the directory while the database is down keeps no share for long: the
/// settling of memberships that failed at that reload is tried again once the database answers
/// (it used to wait for the next reload of the sources).
#[test]
fn issue_18_a_removal_while_the_database_is_down_is_settled_when_it_is_back() {
    let postgres = PrivateServer::start();
    let url = postgres.url();
    let sources = common::copy_sources();
    let directory = sources.path().join("policies/directory.yaml");
    let server = Server::start_with(
        &sources.path().join("policies"),
        &sources.path().join("schemas"),
        &directory,
        &["--shares-db", &url, "--watch-debounce-ms", "50"],
    );
    server.wait_status(|s| s["reloads"]["unchanged"] != 0);
    let token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let stack = "stack/11111111-1111-4111-8111-111111111111".to_owned();
    assert!(
        !allows_for(&server, &token, DAVE, "delete", &stack),
        "not by dave's role"
    );
    assert_eq!(share_with(&server, &token, DAVE, &stack, &["delete"]), 200);
    assert!(allows_for(&server, &token, DAVE, "delete", &stack));

    postgres.stop();
    server.wait_status(|s| s["shares"]["store"]["reachable"] == false);
    let (_, before) = server.get("/v1/status");
    let text = std::fs::read_to_string(&directory).unwrap();
    let binding = "  - {user: dave, role: developer, project: churn}\n";
    assert!(text.contains(binding), "directory.yaml binds dave");
    let edited = directory.with_extension("yaml.new");
    std::fs::write(&edited, text.replace(binding, "")).unwrap();
    std::fs::rename(&edited, &directory).unwrap();
    server.wait_status(|s| s["revision"] != before["revision"]);
    // The settling failed: the last known shares still decide.
    assert!(allows_for(&server, &token, DAVE, "delete", &stack));

    postgres.resume();
    let deadline = std::time::Instant::now() + common::HANG_GUARD;
    while allows_for(&server, &token, DAVE, "delete", &stack) {
        assert!(
            std::time::Instant::now() < deadline,
            "dave's share outlived his membership"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let purged = common::postgres::query_i64(
        &url,
        "SELECT count(*) FROM share_events WHERE kind = 'purge' AND reason = 'membership removed'",
    );
    assert_eq!(purged, 1);
}
