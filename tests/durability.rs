//! Shares are durable: a share acknowledged with a 2xx survives `kill -9` at any moment, and
//! shares and purges survive a clean restart (store.rs, "Architecture Invariant"); the store
//! commits with `synchronous = FULL`, which a power cut needs and `kill -9` cannot tell.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{ADA, CHURN, ERIN, GRACE, PLATFORM, PRODUCTION};

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{Server, query, send_to};
use serde_json::json;

/// The try-out enrollment key of `production` (its hash is in policies/directory.yaml).
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
/// The token secret, the same at every restart (so tokens survive them).
const TOKEN_SECRET: &str = "durability-test-token-secret-0123456789abcdef";

/// Writer threads in the kill test, and how many writes each makes at most (the kill comes
/// within 150 ms of the first acknowledgement, long before).
const WRITERS: usize = 2;
const MAX_WRITES: usize = 2_000;
/// A guard against a hang only: a wait fails when nothing has happened at all after this long.
const HANG_GUARD: Duration = Duration::from_secs(120);
/// Rounds of write, `kill -9`, restart on the same file.
const ROUNDS: usize = 3;

fn start(db: &Path) -> Server {
    // Read at start-up, before the server prints its address: the file may go afterwards.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), TOKEN_SECRET).unwrap();
    Server::start(&[
        "--shares-db",
        db.to_str().unwrap(),
        "--token-secret-file",
        secret.path().to_str().unwrap(),
    ])
}

fn headers(token: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", format!("Bearer {token}")),
        ("zenml-server-id", PRODUCTION.to_owned()),
    ]
}

/// `POST /zenml/rbac/resource_members`; `Err` when the server is gone.
fn share(
    base: &str,
    token: &str,
    grantee: (&str, &str),
    resource: &str,
    actions: &[&str],
) -> Result<u16, ureq::Error> {
    let [a, b] = headers(token);
    let mut body = json!({"user_id": null, "team_id": null, "sharing_user_id": ADA, "resource": resource, "actions": actions});
    body[grantee.0] = json!(grantee.1);
    let text = body.to_string();
    send_to(
        base,
        "POST",
        "/zenml/rbac/resource_members",
        &[(a.0, &a.1), (b.0, &b.1)],
        Some(("application/json", &text)),
    )
    .map(|reply| reply.status)
}

/// `check_permissions` for `user` and `action` on `resources`, expecting 200 and every key.
fn check(server: &Server, token: &str, user: &str, action: &str, resources: &[String]) -> Vec<bool> {
    let [a, b] = headers(token);
    let body = json!(resources).to_string();
    let reply = server.send(
        "POST",
        &format!(
            "/zenml/rbac/check_permissions?{}",
            query(&[("user_id", user), ("action", action)])
        ),
        &[(a.0, &a.1), (b.0, &b.1)],
        Some(("application/json", &body)),
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    resources
        .iter()
        .map(|r| {
            reply.body[r]
                .as_bool()
                .unwrap_or_else(|| panic!("no answer for {r}: {reply:?}"))
        })
        .collect()
}

fn allows(server: &Server, token: &str, user: &str, action: &str, resource: &str) -> bool {
    check(server, token, user, action, &[resource.to_owned()])[0]
}

/// Waits for the process to exit.
fn wait(server: &mut Server) -> std::process::ExitStatus {
    let deadline = Instant::now() + HANG_GUARD;
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "the sidecar did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

/// SIGTERM, then the exit status (0 after a graceful drain).
fn terminate(server: &mut Server) -> std::process::ExitStatus {
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait(server)
}

/// What one writer thread did.
struct Written {
    /// Resources whose share was acknowledged with a 2xx.
    acknowledged: Vec<String>,
    /// Requests sent.
    sent: usize,
    /// True when a request failed in transport (the server was killed under it).
    cut_off: bool,
}

/// Shares distinct stacks with grace until the server dies or `MAX_WRITES` are made.
fn writer(base: String, token: String, round: usize, thread: usize, acks: Arc<AtomicUsize>) -> Written {
    let mut written = Written {
        acknowledged: Vec::new(),
        sent: 0,
        cut_off: false,
    };
    for n in 0..MAX_WRITES {
        let resource = format!("stack/{round:08x}-{thread:04x}-4000-8000-{n:012x}");
        written.sent += 1;
        match share(&base, &token, ("user_id", GRACE), &resource, &["read"]) {
            Ok(status) if (200..300).contains(&status) => {
                written.acknowledged.push(resource);
                acks.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {}
            Err(_) => {
                written.cut_off = true;
                break;
            }
        }
    }
    written
}

#[test]
fn acknowledged_shares_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shares.db");
    let mut acknowledged: Vec<String> = Vec::new();
    let mut token = String::new();
    for round in 0..ROUNDS {
        let mut server = start(&db);
        // Every share acknowledged before any earlier kill is in effect after the restart.
        if round == 0 {
            token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
        }
        // The token is signed with the fixed secret, so it is still valid after a restart.
        assert_eq!(server.get("/readyz").0, 200);
        let answers = check(&server, &token, GRACE, "read", &acknowledged);
        let lost: Vec<&String> = acknowledged
            .iter()
            .zip(&answers)
            .filter(|(_, allowed)| !**allowed)
            .map(|(r, _)| r)
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: acknowledged shares lost: {lost:?}"
        );

        // Write from several threads; kill -9 after a random short delay while they write.
        let acks = Arc::new(AtomicUsize::new(0));
        let writers: Vec<_> = (0..WRITERS)
            .map(|thread| {
                let (base, token, acks) = (server.base.clone(), token.clone(), Arc::clone(&acks));
                thread::spawn(move || writer(base, token, round, thread, acks))
            })
            .collect();
        let deadline = Instant::now() + HANG_GUARD;
        while acks.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "no share was acknowledged");
            thread::sleep(Duration::from_millis(1));
        }
        let delay = Duration::from_millis(u64::try_from(uuid::Uuid::new_v4().as_u128() % 150).unwrap());
        thread::sleep(delay);
        server.child.kill().unwrap(); // SIGKILL
        let status = wait(&mut server);
        assert_eq!(status.signal(), Some(9), "round {round}: {status:?}");
        let results: Vec<Written> = writers.into_iter().map(|w| w.join().unwrap()).collect();
        assert!(
            results.iter().any(|w| w.cut_off),
            "round {round}: the kill came after the writes ({} ms delay): raise MAX_WRITES",
            delay.as_millis()
        );
        let sent: usize = results.iter().map(|w| w.sent).sum();
        let acked: usize = results.iter().map(|w| w.acknowledged.len()).sum();
        assert!(acked > 0 && acked <= sent);
        eprintln!(
            "round {round}: delay {} ms, sent {sent}, acked {acked}",
            delay.as_millis()
        );
        acknowledged.extend(results.into_iter().flat_map(|w| w.acknowledged));
    }

    // The last restart: every acknowledged share of every round is in effect.
    let server = start(&db);
    assert_eq!(server.get("/readyz").0, 200);
    let answers = check(&server, &token, GRACE, "read", &acknowledged);
    let lost: Vec<&String> = acknowledged
        .iter()
        .zip(&answers)
        .filter(|(_, allowed)| !**allowed)
        .map(|(r, _)| r)
        .collect();
    assert!(lost.is_empty(), "acknowledged shares lost: {lost:?}");
    // Exactly what was shared: read, with grace, nothing else.
    let sample = [acknowledged[0].clone()];
    assert_eq!(check(&server, &token, GRACE, "update", &sample), [false]);
    assert_eq!(
        check(&server, &token, ERIN, "delete", &["stack".to_owned()]),
        [true]
    );
    // The store still takes writes.
    let resource = format!("{CHURN}:pipeline/99999999-9999-4999-8999-999999999999");
    assert_eq!(
        share(&server.base, &token, ("user_id", GRACE), &resource, &["read"]).unwrap(),
        200
    );
    assert!(allows(&server, &token, GRACE, "read", &resource));
}

/// What the kill test cannot see: with `synchronous = OFF` or `NORMAL` a `kill -9` loses nothing
/// either (the kernel keeps what was written); a power cut would. So the store reports the
/// settings its connection runs with, and `serve` opens its file through the same `open`.
#[test]
fn the_store_commits_in_wal_mode_with_synchronous_full() {
    let dir = tempfile::tempdir().unwrap();
    let store = zenml_authz::store::SqliteShareStore::open(&dir.path().join("shares.db")).unwrap();
    assert_eq!(store.durability().unwrap(), ("wal".to_owned(), "full"));
}

/// Each test server keeps its shares in its own database (`common::Server` gives it one in a
/// temp dir): a share made on one server is not there on the next one a test starts.
#[test]
fn test_servers_share_no_database() {
    let resource = "stack/55555555-5555-4555-8555-555555555555";
    let first = Server::start(&[]);
    let own = first.shares.as_ref().unwrap().path().join("shares.db");
    let token = first.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    assert_eq!(
        share(&first.base, &token, ("user_id", GRACE), resource, &["read"]).unwrap(),
        200
    );
    assert!(allows(&first, &token, GRACE, "read", resource));
    assert!(own.exists(), "the share went to {}", own.display());
    drop(first);

    let second = Server::start(&[]);
    let token = second.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    assert!(!allows(&second, &token, GRACE, "read", resource));
}

#[test]
fn shares_survive_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nested/shares.db");
    let pipeline = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    let replaced = format!("{CHURN}:pipeline/22222222-2222-4222-8222-222222222222");
    let removed = "stack/33333333-3333-4333-8333-333333333333".to_owned();
    let model = format!("{CHURN}:model/44444444-4444-4444-8444-444444444444");
    let mut server = start(&db);
    let token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let grace = ("user_id", GRACE);
    for (grantee, resource, actions) in [
        (grace, &pipeline, vec!["read", "update"]),
        (grace, &replaced, vec!["read", "update", "delete"]),
        (grace, &replaced, vec!["delete"]),
        (grace, &removed, vec!["read"]),
        (grace, &removed, vec![]),
        (("team_id", PLATFORM), &model, vec!["read"]),
    ] {
        assert_eq!(
            share(&server.base, &token, grantee, resource, &actions).unwrap(),
            200
        );
    }
    let expected = |server: &Server| {
        // (user, action, resource, allowed)
        let table = [
            (GRACE, "read", &pipeline, true),
            (GRACE, "update", &pipeline, true),
            (GRACE, "delete", &pipeline, false),
            (GRACE, "read", &replaced, false),
            (GRACE, "delete", &replaced, true),
            (GRACE, "read", &removed, false),
            (ERIN, "read", &model, true),
            (ERIN, "update", &model, false),
            (GRACE, "read", &model, false),
            (GRACE, "read", &format!("project/{CHURN}"), true),
        ];
        for (user, action, resource, allowed) in table {
            assert_eq!(
                allows(server, &token, user, action, resource),
                allowed,
                "{user} {action} {resource}"
            );
        }
    };
    expected(&server);
    let status = terminate(&mut server);
    assert_eq!(status.code(), Some(0), "SIGTERM stops cleanly: {status:?}");
    drop(server);

    let server = start(&db);
    assert_eq!(server.get("/readyz").0, 200);
    expected(&server);
}

#[test]
fn a_purge_survives_a_clean_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shares.db");
    let purged = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    let kept = "stack/22222222-2222-4222-8222-222222222222".to_owned();
    let mut server = start(&db);
    let token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    assert_eq!(
        share(&server.base, &token, ("user_id", GRACE), &purged, &["read"]).unwrap(),
        200
    );
    assert_eq!(
        share(&server.base, &token, ("team_id", PLATFORM), &purged, &["read"]).unwrap(),
        200
    );
    assert_eq!(
        share(&server.base, &token, ("user_id", GRACE), &kept, &["read"]).unwrap(),
        200
    );
    assert!(allows(&server, &token, GRACE, "read", &purged));
    assert!(allows(&server, &token, ERIN, "read", &purged));

    let [a, b] = headers(&token);
    let reply = server.send(
        "DELETE",
        &format!("/zenml/rbac/resources?{}", query(&[("resources", &purged)])),
        &[(a.0, &a.1), (b.0, &b.1)],
        None,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let expected = |server: &Server| {
        assert!(!allows(server, &token, GRACE, "read", &purged));
        assert!(!allows(server, &token, ERIN, "read", &purged));
        assert!(!allows(
            server,
            &token,
            GRACE,
            "read",
            &format!("project/{CHURN}")
        ));
        assert!(allows(server, &token, GRACE, "read", &kept));
    };
    expected(&server);
    let status = terminate(&mut server);
    assert_eq!(status.code(), Some(0), "{status:?}");
    drop(server);

    let server = start(&db);
    expected(&server);
    // The same holds after a kill -9 right after the purge was acknowledged.
    let reply = server.send(
        "DELETE",
        &format!("/zenml/rbac/resources?{}", query(&[("resources", &kept)])),
        &[(a.0, &a.1), (b.0, &b.1)],
        None,
    );
    assert_eq!(reply.status, 200, "{reply:?}");
    let mut server = server;
    server.child.kill().unwrap();
    wait(&mut server);
    drop(server);
    let server = start(&db);
    assert!(!allows(&server, &token, GRACE, "read", &kept));
    assert_eq!(server.get("/readyz").0, 200);
}

/// Issue 16, finding 9: the database file deleted under a running server. SQLite would keep
/// committing into the unlinked file, and every write acknowledged after it would be gone at
/// the next start. Now the first write after the deletion, and every later one, is a 503 naming
/// the path; nothing changes in memory; and every acknowledged share is saved beside the path,
/// from where the documented recovery (stop, move it into place, start) brings it back.
#[test]
fn issue_16_a_deleted_database_refuses_writes_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shares.db");
    let acknowledged = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    let refused = format!("{CHURN}:pipeline/22222222-2222-4222-8222-222222222222");
    let mut server = start(&db);
    let token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let grace = ("user_id", GRACE);
    assert_eq!(
        share(&server.base, &token, grace, &acknowledged, &["read"]).unwrap(),
        200
    );
    std::fs::remove_file(&db).unwrap();

    let [a, b] = headers(&token);
    let body = json!({"user_id": GRACE, "team_id": null, "sharing_user_id": ADA, "resource": refused, "actions": ["read"]}).to_string();
    let purge = format!("/zenml/rbac/resources?{}", query(&[("resources", &acknowledged)]));
    // (what, method, path, body): every write is refused, not only the first.
    let writes: [(&str, &str, &str, common::Body<'_>); 3] = [
        (
            "share",
            "POST",
            "/zenml/rbac/resource_members",
            Some(("application/json", &body)),
        ),
        (
            "share again",
            "POST",
            "/zenml/rbac/resource_members",
            Some(("application/json", &body)),
        ),
        ("purge", "DELETE", &purge, None),
    ];
    for (what, method, path, body) in writes {
        let reply = server.send(method, path, &[(a.0, &a.1), (b.0, &b.1)], body);
        assert_eq!(reply.status, 503, "{what}: {reply:?}");
        let message = reply.message();
        assert!(
            message.contains(&format!(
                "database file `{}` was deleted while serving",
                db.display()
            )) && message.contains("refusing share writes until a restart")
                && message.contains("every acknowledged share was saved to"),
            "{what}: {message}"
        );
    }
    // Memory agrees with what was acknowledged: the refused share is not served.
    assert!(allows(&server, &token, GRACE, "read", &acknowledged));
    assert!(!allows(&server, &token, GRACE, "read", &refused));
    assert_eq!(terminate(&mut server).code(), Some(0));
    drop(server);

    // The documented recovery: remove what the deleted file left (its WAL would be replayed
    // onto the saved copy), move the saved copy into place, start.
    let saved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().contains("shares.db.rescued-"))
        .collect();
    assert_eq!(saved.len(), 1, "{saved:?}");
    assert!(!db.exists());
    for leftover in ["shares.db-wal", "shares.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(leftover));
    }
    std::fs::rename(&saved[0], &db).unwrap();
    let server = start(&db);
    assert!(
        allows(&server, &token, GRACE, "read", &acknowledged),
        "nothing acknowledged is lost"
    );
    assert!(!allows(&server, &token, GRACE, "read", &refused));
    assert_eq!(
        share(&server.base, &token, grace, &refused, &["read"]).unwrap(),
        200,
        "writes work again after the restart"
    );
}
