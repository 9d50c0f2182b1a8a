//! Issue 18: shares on PostgreSQL, through the real binary. Two sidecars A and B on one database
//! (`--shares-resync-secs 86400`: the notifications carry the changes) measure
//!
//! 1. the latency of a share write through A (`POST /zenml/rbac/resource_members`, the HTTP
//!    round trip: the commit and A's view update included);
//! 2. the cross-replica propagation: from sending a write to A until B's `check_permissions`
//!    answers the new way (B polled in a tight loop over a keep-alive connection; the poll's own
//!    round trip is reported as the resolution), and the same from A's acknowledgement;
//! 3. the same write on a sidecar with a SQLite file, for comparison;
//! 4. the decision path: `check_permissions` of one resource (share-granted, role-granted) on
//!    A and on the SQLite sidecar, cache on and off (the shares live in memory either way);
//! 5. (1) and (2) again with `BENCH_SHARES` shares inserted into the database before the
//!    sidecars start: every notification makes each replica reload every share.
//!
//! Prints Markdown tables; `harness = false`, no criterion. PostgreSQL on 127.0.0.1:5432 (trust
//! auth; `ZENML_AUTHZ_TEST_POSTGRES` names another admin URL, as for the tests): the bench
//! creates a database of its own (the tests' `TestDatabase`) and drops it at the end.
//!
//! `cargo bench --bench shares`; `BENCH_SAMPLES` (writes per row, default 1000),
//! `BENCH_SAMPLES_PRELOADED` (writes per row with the preloaded shares, default 100),
//! `BENCH_DECISIONS` (requests per decision row, default 20000), `BENCH_SHARES` (preloaded
//! shares, default 10000), `BENCH_PACED` and `BENCH_GAP_MS` (writes one at a time: how many,
//! default 20, and the pause before each, default 300 ms).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "bench code: a failed step should stop the bench"
)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The sample directory's ids (policies/directory.yaml).
const PRODUCTION: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
const CHURN: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
/// Shares (organization member: a share grants `update`).
const GRACE: &str = "7c43a64e-c811-4df9-a0f1-9b1a74220e53";
/// Organization admin: the sharing user.
const ADA: &str = "8fc22834-6a2b-46cc-8682-46129b366219";
/// Developer in `churn`: a role grants `read` on its pipelines.
const DAVE: &str = "9a1b418a-a4d7-49df-aa12-860e622a068d";
/// Grantees of the preloaded shares.
const USERS: [&str; 6] = [
    "8a5e8598-b203-4344-948f-32f6cd6c6e30",
    "783f4f04-072f-4dfd-bc1d-210bfa40fff2",
    "bd83f12c-3cd2-4db0-9bed-f2fa60d76d28",
    "4dba2e0e-f2cf-4f5c-a551-f4a184c52b13",
    "ac265805-624b-4e13-88d0-81a1415a3441",
    "59c64f49-e3c0-4459-a355-5fffaa113276",
];
/// The try-out enrollment key of `production` (README).
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
/// How long one write may take to show on B before the bench gives up (a hang guard only).
const HANG_GUARD: Duration = Duration::from_secs(30);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pipeline(n: u32) -> String {
    format!("{CHURN}:pipeline/00000000-0000-4000-8000-{n:012}")
}

// === PostgreSQL ===

/// The tests' database guard and queries (`TestDatabase`: a database of its own, dropped at
/// the end; `ZENML_AUTHZ_TEST_POSTGRES` names another server).
#[allow(dead_code, reason = "the bench uses the database guard and queries only")]
#[path = "../tests/common/postgres.rs"]
mod postgres;

use postgres::TestDatabase;

/// The resource and grantee of the database's first share.
fn first_share(url: &str) -> (String, String) {
    let rows = postgres::query(
        url,
        "SELECT resource, grantee_id FROM shares ORDER BY resource LIMIT 1",
    );
    (rows[0].get(0), rows[0].get(1))
}

// === The sidecar ===

/// A running `zenml-authz serve` on the bundled sources; killed on drop.
struct Sidecar {
    child: Child,
    /// `127.0.0.1:port`.
    address: String,
}

impl Sidecar {
    fn start(extra: &[&str]) -> Sidecar {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
            .env_remove("ZENML_AUTHZ_SHARES_DB")
            .env_remove("ZENML_AUTHZ_SHARES_DB_URL_FILE")
            .arg("serve")
            .arg("--policies")
            .arg(root.join("policies"))
            .arg("--schemas")
            .arg(root.join("schemas"))
            .arg("--directory")
            .arg(root.join("policies/directory.yaml"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zenml-authz");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the listening line");
        let address = line
            .trim()
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Sidecar { child, address }
    }

    fn connect(&self) -> Conn {
        Conn::connect(&self.address)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// === A minimal HTTP/1.1 keep-alive client (cheap, so it does not dominate) ===

struct Conn {
    stream: BufReader<TcpStream>,
    address: String,
}

impl Conn {
    fn connect(address: &str) -> Conn {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).unwrap();
        Conn {
            stream: BufReader::new(stream),
            address: address.to_owned(),
        }
    }

    /// A whole request: `method path`, extra header lines (each ending in `\r\n`), a body.
    fn build(&self, method: &str, path: &str, headers: &str, content_type: &str, body: &str) -> Vec<u8> {
        format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\n{headers}content-type: {content_type}\r\ncontent-length: {}\r\n\r\n{body}",
            self.address,
            body.len()
        )
        .into_bytes()
    }

    /// Sends a built request and reads its response: status and body.
    fn round_trip(&mut self, request: &[u8]) -> (u16, Vec<u8>) {
        self.stream.get_mut().write_all(request).expect("send");
        self.read_response()
    }

    fn read_response(&mut self) -> (u16, Vec<u8>) {
        let mut line = String::new();
        self.stream.read_line(&mut line).expect("status line");
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {line:?}"));
        let mut length = None;
        let mut chunked = false;
        loop {
            line.clear();
            self.stream.read_line(&mut line).expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            let (name, value) = header.split_once(':').expect("a header");
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = Some(value.parse::<usize>().expect("length"));
            } else if name.eq_ignore_ascii_case("transfer-encoding") && value.contains("chunked") {
                chunked = true;
            }
        }
        let mut body = Vec::new();
        if chunked {
            loop {
                line.clear();
                self.stream.read_line(&mut line).expect("chunk size");
                let size = usize::from_str_radix(line.trim(), 16).expect("chunk size");
                let start = body.len();
                body.resize(start + size + 2, 0);
                self.stream.read_exact(&mut body[start..]).expect("chunk");
                body.truncate(start + size);
                if size == 0 {
                    break;
                }
            }
        } else {
            body.resize(length.unwrap_or(0), 0);
            self.stream.read_exact(&mut body).expect("body");
        }
        (status, body)
    }
}

/// The ZenML server's headers (bearer token, server id).
fn zenml_headers(token: &str) -> String {
    format!("authorization: Bearer {token}\r\nzenml-server-id: {PRODUCTION}\r\n")
}

fn login(sidecar: &Sidecar) -> String {
    let mut conn = sidecar.connect();
    let form = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", PRODUCTION)
        .append_pair("client_secret", ENROLL_PRODUCTION)
        .append_pair("audience", "zenml-authz-bench")
        .append_pair("grant_type", "client_credentials")
        .finish();
    let request = conn.build(
        "POST",
        "/zenml/auth/login",
        "",
        "application/x-www-form-urlencoded",
        &form,
    );
    let (status, body) = conn.round_trip(&request);
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(status, 200, "login: {body}");
    body["access_token"].as_str().expect("access_token").to_owned()
}

/// A share write: `user` gets `actions` on `resource` (empty: revoked).
fn share_request(conn: &Conn, token: &str, user: &str, resource: &str, actions: &[&str]) -> Vec<u8> {
    let body = serde_json::json!({
        "user_id": user, "team_id": null, "sharing_user_id": ADA, "resource": resource, "actions": actions,
    });
    conn.build(
        "POST",
        "/zenml/rbac/resource_members",
        &zenml_headers(token),
        "application/json",
        &body.to_string(),
    )
}

/// `check_permissions` of one resource.
struct Check {
    request: Vec<u8>,
    resource: String,
}

impl Check {
    fn new(conn: &Conn, token: &str, user: &str, action: &str, resource: &str) -> Check {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("user_id", user)
            .append_pair("action", action)
            .finish();
        Check {
            request: conn.build(
                "POST",
                &format!("/zenml/rbac/check_permissions?{query}"),
                &zenml_headers(token),
                "application/json",
                &serde_json::json!([resource]).to_string(),
            ),
            resource: resource.to_owned(),
        }
    }

    fn ask(&self, conn: &mut Conn) -> bool {
        let (status, body) = conn.round_trip(&self.request);
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status, 200, "check_permissions: {body}");
        body[&self.resource].as_bool().expect("a decision")
    }
}

// === Measurements ===

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1e3)
}

fn row(backend: &str, shares: &str, what: &str, unit: fn(Duration) -> String, mut timings: Vec<Duration>) {
    let n = timings.len();
    let [p50, p90, p99, _, max, mean] = common::percentiles(&mut timings);
    println!(
        "| {backend} | {shares} | {what} | {n} | {} | {} | {} | {} | {} |",
        unit(p50),
        unit(p90),
        unit(p99),
        unit(max),
        unit(mean)
    );
}

/// `samples` sequential share writes through `sidecar`, alternating grant and revoke on four
/// resources (each write changes a share), after 20 unmeasured ones.
fn write_latency(sidecar: &Sidecar, token: &str, samples: u64) -> Vec<Duration> {
    let mut conn = sidecar.connect();
    let grants: Vec<Vec<u8>> = (0..4)
        .map(|r| share_request(&conn, token, GRACE, &pipeline(100 + r), &["read", "update"]))
        .collect();
    let revokes: Vec<Vec<u8>> = (0..4)
        .map(|r| share_request(&conn, token, GRACE, &pipeline(100 + r), &[]))
        .collect();
    let mut timings = Vec::with_capacity(samples as usize);
    for i in 0..samples as usize + 24 {
        let request = if (i / 4) % 2 == 0 {
            &grants[i % 4]
        } else {
            &revokes[i % 4]
        };
        let started = Instant::now();
        let (status, body) = conn.round_trip(request);
        let took = started.elapsed();
        assert_eq!(status, 200, "share write: {}", String::from_utf8_lossy(&body));
        if i >= 24 {
            timings.push(took);
        }
    }
    timings
}

/// What [`propagation`] measures.
struct Propagation {
    /// From sending the write to A until B's answer reflects it.
    from_send: Vec<Duration>,
    /// From A's acknowledgement until B's answer reflects it (zero when B was first).
    from_ack: Vec<Duration>,
    /// How often B answered the new way before A's acknowledgement arrived.
    before_ack: usize,
    /// B's poll round trips (the resolution).
    polls: Vec<Duration>,
}

/// `samples` writes through `a` alternating grant and revoke of one share; for each, B is polled
/// until it answers the new way. The write runs on a thread of its own, which times it.
fn propagation(a: &Sidecar, b: &Sidecar, token: &str, samples: u64) -> Propagation {
    let resource = pipeline(7);
    let writer_conn = a.connect();
    let grant = share_request(&writer_conn, token, GRACE, &resource, &["read", "update"]);
    let revoke = share_request(&writer_conn, token, GRACE, &resource, &[]);
    let (go, orders) = mpsc::channel::<bool>();
    let (done, acks) = mpsc::channel::<(Instant, Instant)>();
    let writer = std::thread::spawn(move || {
        let mut conn = writer_conn;
        for allow in orders {
            let request = if allow { &grant } else { &revoke };
            let sent = Instant::now();
            let (status, body) = conn.round_trip(request);
            let acked = Instant::now();
            assert_eq!(status, 200, "share write: {}", String::from_utf8_lossy(&body));
            done.send((sent, acked)).unwrap();
        }
    });
    let mut poller = b.connect();
    let check = Check::new(&poller, token, GRACE, "update", &resource);
    let mut allowed = check.ask(&mut poller);
    let mut out = Propagation {
        from_send: Vec::new(),
        from_ack: Vec::new(),
        before_ack: 0,
        polls: Vec::new(),
    };
    for i in 0..samples + 10 {
        let expected = !allowed;
        go.send(expected).unwrap();
        let guard = Instant::now() + HANG_GUARD;
        let seen = loop {
            let started = Instant::now();
            let answer = check.ask(&mut poller);
            let now = Instant::now();
            out.polls.push(now - started);
            if answer == expected {
                break now;
            }
            assert!(now < guard, "B never answered {expected}");
        };
        allowed = expected;
        let (sent, acked) = acks.recv().unwrap();
        if i >= 10 {
            out.from_send.push(seen - sent);
            out.from_ack.push(seen.saturating_duration_since(acked));
            if seen < acked {
                out.before_ack += 1;
            }
        }
    }
    drop(go);
    writer.join().unwrap();
    out
}

/// One row of the decision table: a connection and its question.
struct DecisionRow {
    label: [&'static str; 3],
    conn: Conn,
    check: Check,
    timings: Vec<Duration>,
}

/// `samples` sequential `check_permissions` per row, after 1000 unmeasured (each must allow);
/// the rows take turns in ten rounds, so that the host's drift spreads over all of them.
fn decisions(rows: &mut [DecisionRow], samples: u64) {
    for row in rows.iter_mut() {
        for _ in 0..1000 {
            assert!(
                row.check.ask(&mut row.conn),
                "{}",
                String::from_utf8_lossy(&row.check.request)
            );
        }
    }
    for round in 0..10 {
        let n = samples / 10 + u64::from(round < samples % 10);
        for row in rows.iter_mut() {
            for _ in 0..n {
                let started = Instant::now();
                std::hint::black_box(row.check.ask(&mut row.conn));
                row.timings.push(started.elapsed());
            }
        }
    }
}

/// Writes through `sidecar` one at a time with `gap` between them (so that the reloads each
/// notification starts are over before the next write), alternating grant and revoke.
fn paced_writes(sidecar: &Sidecar, token: &str, samples: u64, gap: Duration) -> Vec<Duration> {
    let mut conn = sidecar.connect();
    let resource = pipeline(8);
    let grant = share_request(&conn, token, GRACE, &resource, &["read", "update"]);
    let revoke = share_request(&conn, token, GRACE, &resource, &[]);
    (0..samples)
        .map(|i| {
            std::thread::sleep(gap);
            let started = Instant::now();
            let (status, body) = conn.round_trip(if i % 2 == 0 { &grant } else { &revoke });
            let took = started.elapsed();
            assert_eq!(status, 200, "share write: {}", String::from_utf8_lossy(&body));
            took
        })
        .collect()
}

/// The reload's query (`SELECT` of every share), from a client of the bench's own: what the
/// database and the transfer cost of each reload, apart from the sidecar's work.
fn select_all(url: &str, samples: u64) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        let driver = tokio::spawn(connection);
        let sql = "SELECT workspace_id, resource, grantee_kind, grantee_id, actions FROM shares";
        let mut timings = Vec::new();
        for i in 0..samples + 2 {
            let started = Instant::now();
            let rows = client.query(sql, &[]).await.unwrap();
            std::hint::black_box(rows.len());
            if i >= 2 {
                timings.push(started.elapsed());
            }
        }
        drop(client);
        let _ = driver.await;
        timings
    })
}

fn share(sidecar: &Sidecar, token: &str, user: &str, resource: &str, actions: &[&str]) {
    let mut conn = sidecar.connect();
    let request = share_request(&conn, token, user, resource, actions);
    let (status, body) = conn.round_trip(&request);
    assert_eq!(status, 200, "share write: {}", String::from_utf8_lossy(&body));
}

fn propagation_rows(backend: &str, shares: &str, p: Propagation) {
    let n = p.from_send.len();
    row(
        backend,
        shares,
        "propagation A → B, from sending the write",
        ms,
        p.from_send,
    );
    row(
        backend,
        shares,
        &format!(
            "propagation A → B, from A's acknowledgement (B first in {} of {n}: 0)",
            p.before_ack
        ),
        ms,
        p.from_ack,
    );
    row(
        backend,
        shares,
        "B's check_permissions poll round trip (the resolution)",
        ms,
        p.polls,
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every target for its benches
    }
    let started = Instant::now();
    let samples = env_num("BENCH_SAMPLES", 1000);
    let samples_preloaded = env_num("BENCH_SAMPLES_PRELOADED", 100);
    let decision_samples = env_num("BENCH_DECISIONS", 20_000);
    let preloaded = env_num("BENCH_SHARES", 10_000);
    let paced = env_num("BENCH_PACED", 20);
    let gap = Duration::from_millis(env_num("BENCH_GAP_MS", 300));

    let database = TestDatabase::create();
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "bench-token-secret-0123456789abcdef0123456789").unwrap();
    let secret = secret.path().to_str().unwrap().to_owned();
    let sqlite_dir = tempfile::tempdir().unwrap();
    let sqlite_file = sqlite_dir.path().join("shares.db");
    let sqlite_file = sqlite_file.to_str().unwrap();
    let postgres = [
        "--shares-db",
        database.url.as_str(),
        "--token-secret-file",
        &secret,
        "--shares-resync-secs",
        "86400",
    ];
    let sqlite = ["--shares-db", sqlite_file, "--token-secret-file", &secret];
    let with = |flags: &[&str], more: &[&str]| -> Vec<String> {
        flags.iter().chain(more).map(|s| (*s).to_owned()).collect()
    };
    let start = |args: Vec<String>| Sidecar::start(&args.iter().map(String::as_str).collect::<Vec<_>>());

    println!(
        "| backend | shares in the database | measurement | samples | p50 ms | p90 ms | p99 ms | max ms | mean ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    let (a, b) = (start(with(&postgres, &[])), start(with(&postgres, &[])));
    let token = login(&a);
    row(
        "PostgreSQL",
        "≤ 5",
        "share write through A (HTTP round trip)",
        ms,
        write_latency(&a, &token, samples),
    );
    propagation_rows("PostgreSQL", "≤ 5", propagation(&a, &b, &token, samples));
    row(
        "PostgreSQL",
        "≤ 5",
        &format!("share write through A, one every {} ms", gap.as_millis()),
        ms,
        paced_writes(&a, &token, paced, gap),
    );
    row(
        "PostgreSQL",
        "≤ 5",
        "the reload's SELECT of every share (bench's own client)",
        ms,
        select_all(&database.url, 20),
    );
    let s = start(with(&sqlite, &[]));
    row(
        "SQLite",
        "≤ 5",
        "share write (HTTP round trip)",
        ms,
        write_latency(&s, &token, samples),
    );

    // The decision path: the same questions on A (PostgreSQL) and on the SQLite sidecar, and on
    // two more with the cache off (every request decided).
    let decided = pipeline(9);
    let role = pipeline(10);
    share(&a, &token, GRACE, &decided, &["read", "update"]);
    share(&s, &token, GRACE, &decided, &["read", "update"]);
    // Started after the write: they load it (a SQLite sidecar does not follow another's writes).
    let a_uncached = start(with(&postgres, &["--cache", "off"]));
    let s_uncached = start(with(&sqlite, &["--cache", "off"]));
    let mut decision_rows = Vec::new();
    for (backend, cache, sidecar) in [
        ("PostgreSQL (A)", "on", &a),
        ("SQLite", "on", &s),
        ("PostgreSQL", "off", &a_uncached),
        ("SQLite", "off", &s_uncached),
    ] {
        for (what, user, action, resource) in [
            ("share-granted (`update`)", GRACE, "update", &decided),
            ("role-granted (`read`, project developer)", DAVE, "read", &role),
        ] {
            let conn = sidecar.connect();
            let check = Check::new(&conn, &token, user, action, resource);
            decision_rows.push(DecisionRow {
                label: [backend, cache, what],
                conn,
                check,
                timings: Vec::new(),
            });
        }
    }
    decisions(&mut decision_rows, decision_samples);
    drop((s, a_uncached, s_uncached, a, b));

    // (5) The same with many shares: inserted before the sidecars start.
    let users = USERS.map(|u| format!("'{u}'")).join(",");
    database
        .execute(&format!(
            "INSERT INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions, shared_by) \
             SELECT '{PRODUCTION}', '{CHURN}:pipeline/' || md5(i::text)::uuid::text, 'user', \
             (ARRAY[{users}])[1 + i % {n}], 'read,update', '{ADA}' FROM generate_series(1, {preloaded}) AS i",
            n = USERS.len()
        ))
        .unwrap_or_else(|error| panic!("preloading the shares: {error}"));
    let (a, b) = (start(with(&postgres, &[])), start(with(&postgres, &[])));
    {
        // A preloaded share is enforced (the rows parse and were loaded).
        let (resource, user) = first_share(&database.url);
        let mut conn = b.connect();
        assert!(Check::new(&conn, &token, &user, "update", &resource).ask(&mut conn));
    }
    let count = format!("{preloaded} + ≤ 6");
    row(
        "PostgreSQL",
        &count,
        "share write through A (HTTP round trip)",
        ms,
        write_latency(&a, &token, samples_preloaded),
    );
    propagation_rows(
        "PostgreSQL",
        &count,
        propagation(&a, &b, &token, samples_preloaded),
    );
    row(
        "PostgreSQL",
        &count,
        &format!("share write through A, one every {} ms", gap.as_millis()),
        ms,
        paced_writes(&a, &token, paced, gap),
    );
    row(
        "PostgreSQL",
        &count,
        "the reload's SELECT of every share (bench's own client)",
        ms,
        select_all(&database.url, 20),
    );
    drop((a, b));

    println!();
    println!(
        "| backend | cache | check_permissions of one resource | samples | p50 µs | p90 µs | p99 µs | max µs | mean µs |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for DecisionRow {
        label: [backend, cache, what],
        timings,
        ..
    } in decision_rows
    {
        row(backend, cache, what, common::us, timings);
    }
    drop(database);
    eprintln!("shares bench: {:.0} s", started.elapsed().as_secs_f64());
}
