//! Issue 16, "Close every way in": each finding reproduced against the real binary, with the
//! fixed outcome (the sidecar stays up, answers precisely, never allows by accident).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "tests")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

use cedar_policy::{Authorizer, Entities};
use common::sample::{BOB, CHURN, DAVE, PRODUCTION};
use common::{Server, send_to};
use serde_json::{Value, json};

/// `n` request-scoped roles, `r0` in `r1` in … (a parent chain), plus `cycle` closing it.
fn role_chain(n: usize, cycle: bool) -> Vec<Value> {
    (0..n)
        .map(|i| {
            let parent = if i + 1 < n {
                vec![json!({"type": "ZenML::Role", "id": format!("r{}", i + 1)})]
            } else if cycle {
                vec![json!({"type": "ZenML::Role", "id": "r0"})]
            } else {
                vec![]
            };
            json!({"uid": {"type": "ZenML::Role", "id": format!("r{i}")}, "attrs": {}, "parents": parent})
        })
        .collect()
}

/// Dave, a developer of project `churn`, reads it (Allow), with `entities`.
fn request_with(entities: Vec<Value>) -> Value {
    json!({
        "principal": {"type": "ZenML::User", "id": DAVE},
        "action": {"type": "ZenML::Action", "id": "read"},
        "resource": {"type": "ZenML::Project", "id": CHURN},
        "additional_entities": entities,
    })
}

fn healthy(server: &Server) {
    assert_eq!(server.get("/healthz").0, 200, "the server stays healthy");
}

/// Finding 1: a long parent chain of request-scoped entities crashed the process (stack
/// overflow in Cedar's closure); now every bound is checked before Cedar sees the entities.
#[test]
fn issue_16_1_request_payloads_are_bounded_before_evaluation() {
    // A larger body limit, so the payloads reach the request limits.
    let server = Server::start(&["--max-body-bytes", "4194304"]);
    let long_id = "x".repeat(1025);
    let rows: Vec<(&str, Value, u16, &str)> = vec![
        (
            "9,000-entity chain (the crash)",
            request_with(role_chain(9000, false)),
            400,
            "--max-request-entities",
        ),
        (
            "257 entities",
            request_with(role_chain(257, false)),
            400,
            "more than the limit of 256",
        ),
        (
            "chain of 33",
            request_with(role_chain(33, false)),
            400,
            "--max-entity-depth",
        ),
        (
            "cycle of 3",
            request_with(role_chain(3, true)),
            400,
            "form a cycle",
        ),
        ("chain of 32", request_with(role_chain(32, false)), 200, ""),
        (
            "1 KiB + 1 principal id",
            json!({"principal": {"type": "ZenML::User", "id": long_id}, "action": {"type": "ZenML::Action", "id": "read"}, "resource": {"type": "ZenML::Project", "id": CHURN}}),
            400,
            "principal: an entity id of 1025 bytes",
        ),
        (
            "1 MB principal id (the cache finding)",
            json!({"principal": {"type": "ZenML::User", "id": "p".repeat(1 << 20)}, "action": {"type": "ZenML::Action", "id": "read"}, "resource": {"type": "ZenML::Project", "id": CHURN}}),
            400,
            "--max-id-bytes",
        ),
        (
            "entity naming a long id",
            request_with(vec![
                json!({"uid": {"type": "ZenML::Role", "id": "r"}, "attrs": {}, "parents": [{"type": "ZenML::Role", "id": long_id}]}),
            ]),
            400,
            "additional_entities[0]: an entity id of 1025 bytes",
        ),
    ];
    for (what, body, status, message) in rows {
        let (got, answer) = server.post("/v1/is_authorized", &body);
        assert_eq!(got, status, "{what}: {answer}");
        if status == 400 {
            let text = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(text.contains(message), "{what}: {text}");
        }
        healthy(&server);
    }
    // In a batch, the bad item gets its own error and the others are answered.
    let (status, answer) = server.post(
        "/v1/batch_is_authorized",
        &json!({"requests": [request_with(role_chain(5000, false)), request_with(vec![])]}),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["results"][0]["error"]["code"], "bad_request", "{answer}");
    assert_eq!(answer["results"][1]["decision"], "Allow", "{answer}");
    healthy(&server);
    // A small batch with one item too large to answer inline (five entities) runs on a blocking
    // thread, the others sliced on the async worker: each path answers as a single request.
    for items in [
        vec![request_with(role_chain(5, false)), request_with(vec![])],
        vec![request_with(role_chain(4, false)), request_with(vec![])],
    ] {
        let singles: Vec<Value> = items
            .iter()
            .map(|item| server.post("/v1/is_authorized", item).1["decision"].clone())
            .collect();
        let (status, answer) = server.post("/v1/batch_is_authorized", &json!({"requests": items}));
        assert_eq!(status, 200, "{answer}");
        let batched: Vec<Value> = answer["results"]
            .as_array()
            .unwrap()
            .iter()
            .map(|result| result["decision"].clone())
            .collect();
        assert_eq!(batched, singles, "{answer}");
    }
}

/// Work whose cost the caller controls runs in the evaluation pool; when it is full the
/// request is shed with 503 and `Retry-After` (a queue of 0 refuses every request the pool
/// admits, batches included, whether they then run sliced or on a blocking thread), and
/// cheap decisions are still answered inline: without request-scoped entities, or with at most
/// four in a body of at most 4 KiB.
#[test]
fn issue_16_1_a_full_evaluation_pool_sheds_with_503_and_retry_after() {
    let server = Server::start(&["--evaluation-threads", "1", "--evaluation-queue", "0"]);
    let shed = server.send(
        "POST",
        "/v1/is_authorized",
        &[],
        Some((
            "application/json",
            &request_with(role_chain(5, false)).to_string(),
        )),
    );
    assert_eq!(shed.status, 503, "{shed:?}");
    assert_eq!(shed.header("retry-after"), Some("1"));
    assert_eq!(shed.body["error"]["code"], "overloaded");
    let (status, answer) = server.post("/v1/is_authorized", &request_with(vec![]));
    assert_eq!(
        (status, answer["decision"].as_str()),
        (200, Some("Allow")),
        "{answer}"
    );
    let (status, answer) = server.post("/v1/is_authorized", &request_with(role_chain(4, false)));
    assert_eq!(status, 200, "four small entities are answered inline: {answer}");
    let padded: Vec<Value> = (0..4)
        .map(|i| json!({"uid": {"type": "ZenML::Role", "id": format!("{i}{}", "r".repeat(1000))}, "attrs": {}, "parents": []}))
        .collect();
    let shed = server.send(
        "POST",
        "/v1/is_authorized",
        &[],
        Some(("application/json", &request_with(padded).to_string())),
    );
    assert_eq!(
        shed.status, 503,
        "four entities in more than 4 KiB go to the pool: {shed:?}"
    );
    let (status, _) = server.post("/v1/batch_is_authorized", &json!({"requests": []}));
    assert_eq!(status, 503, "a batch is always admitted by the pool");
}

/// Finding 2: a client that sends headers and then trickles its body held a connection slot
/// forever. Now the body has a timeout (408, connection closed), so slow clients are cut and
/// `/healthz` answers again.
#[test]
fn issue_16_2_slow_bodies_are_cut() {
    let server = Server::start(&["--body-timeout-secs", "1", "--max-connections", "4"]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let slow: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream
                .write_all(b"POST /v1/is_authorized HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{")
                .unwrap();
            stream
        })
        .collect();
    // Every slot is taken; the health check waits in the backlog until the slow ones are cut.
    healthy(&server);
    for mut stream in slow {
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut answer = String::new();
        // The server answers 408 and closes: read_to_string returns at the close.
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("connection: close"),
            "{answer}"
        );
    }
}

/// Finding 3: the decision cache was bounded by entries only; unique long keys grew it (and
/// RSS) without limit. Now it is bounded in bytes.
#[test]
fn issue_16_3_the_cache_stays_within_its_byte_bound() {
    let max_bytes: u64 = 1 << 20;
    let server = Server::start(&["--cache-max-bytes", &max_bytes.to_string()]);
    let id = "u".repeat(1000);
    for i in 0..2000 {
        let body = json!({
            "principal": {"type": "ZenML::User", "id": format!("{id}{i}")},
            "action": {"type": "ZenML::Action", "id": "read"},
            "resource": {"type": "ZenML::Project", "id": CHURN},
        });
        let (status, answer) = server.post("/v1/is_authorized", &body);
        assert_eq!(
            (status, answer["decision"].as_str()),
            (200, Some("Deny")),
            "{answer}"
        );
    }
    let (_, status) = server.get("/v1/status");
    let cache = &status["cache"];
    // 2,000 entries of ~1.4 KB would be ~2.8 MB; moka applies its bound lazily, so allow a
    // batch of pending writes on top.
    let bytes = cache["bytes"].as_u64().unwrap();
    let entries = cache["entries"].as_u64().unwrap();
    assert!(bytes <= max_bytes + max_bytes / 4, "{cache}");
    assert!(entries < 1000, "{cache}");
    assert_eq!(cache["misses"], 2000, "{cache}");
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

/// Finding 4: the Cedar API, `/v1/status` and `/metrics` needed no credentials. With caller
/// tokens configured each needs one; health and readiness stay open; the ZenML API keeps its
/// own credentials.
#[test]
fn issue_16_4_caller_tokens_guard_the_cedar_api_status_and_metrics() {
    let token = "t".repeat(64);
    let hashes = format!("ci:sha256:{}", sha256_hex(&token));
    let server = Server::start(&["--api-token-hashes", &hashes]);
    let good = format!("Bearer {token}");
    let bad = format!("Bearer {}", "u".repeat(64));
    let body = request_with(vec![]).to_string();
    let rows: [(&str, &str, Option<&str>, u16); 10] = [
        ("POST", "/v1/is_authorized", None, 401),
        ("POST", "/v1/is_authorized", Some(&bad), 401),
        ("POST", "/v1/is_authorized", Some(&good), 200),
        ("POST", "/v1/batch_is_authorized", None, 401),
        ("GET", "/v1/status", None, 401),
        ("GET", "/v1/status", Some(&good), 200),
        ("GET", "/metrics", None, 401),
        ("GET", "/metrics", Some(&good), 200),
        ("GET", "/healthz", None, 200),
        ("GET", "/readyz", None, 200),
    ];
    for (method, path, authorization, status) in rows {
        let headers: Vec<(&str, &str)> = authorization.map(|a| ("authorization", a)).into_iter().collect();
        let payload = (method == "POST").then_some(("application/json", body.as_str()));
        let reply = server.send(method, path, &headers, payload);
        assert_eq!(
            reply.status, status,
            "{method} {path} {authorization:?}: {reply:?}"
        );
        if status == 401 {
            assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        }
    }
}

/// Without caller tokens the server refuses a non-loopback address unless told so, and the
/// admin listener serves health and metrics only, openly.
#[test]
fn issue_16_4_no_unauthenticated_api_beyond_loopback_and_the_admin_listener() {
    let root = common::root();
    let serve = |extra: &[&str]| {
        common::serve_bundled(&root)
            .args(["--shares-db", ":memory:"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let refused = serve(&["--listen", "0.0.0.0:0"]).wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without caller tokens"),
        "{stderr}"
    );

    // Told so explicitly, it starts.
    let mut allowed = serve(&["--listen", "0.0.0.0:0", "--allow-unauthenticated"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(allowed.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert!(line.starts_with("listening on http://0.0.0.0:"), "{line}");
    let _ = allowed.kill();
    let _ = allowed.wait();

    // The admin listener: health, readiness and metrics, open; the main one no longer serves
    // metrics, and the admin one nothing else.
    let mut child = serve(&["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"]);
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut next = |prefix: &str| {
        let line = lines.next().unwrap().unwrap();
        line.strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned()
    };
    let main = next("listening on ");
    let admin = next("admin listening on ");
    let rows = [
        (admin.as_str(), "/metrics", 200),
        (admin.as_str(), "/healthz", 200),
        (admin.as_str(), "/readyz", 200),
        (admin.as_str(), "/v1/status", 404),
        (main.as_str(), "/metrics", 404),
        (main.as_str(), "/v1/status", 200),
    ];
    for (base, path, status) in rows {
        let reply = send_to(base, "GET", path, &[], None).unwrap();
        assert_eq!(reply.status, status, "{base}{path}: {reply:?}");
    }
    let reply = send_to(
        &admin,
        "POST",
        "/v1/is_authorized",
        &[],
        Some(("application/json", "{}")),
    )
    .unwrap();
    assert_eq!(reply.status, 404);
    let _ = child.kill();
    let _ = child.wait();
}

/// `hash-token` reads the token from standard input and refuses a short one.
#[test]
fn issue_16_4_hash_token_prints_the_line_for_the_tokens_file() {
    let run = |token: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
            .args(["hash-token", "--name", "ci"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    };
    let token = "k".repeat(64);
    let output = run(&format!("{token}\n"));
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        format!("ci sha256:{}", sha256_hex(&token))
    );
    assert_eq!(run("short\n").status.code(), Some(4));
}

/// Finding 10: the ZenML path's stand-ins (`"<scope>/*"` ids) leaked into the Cedar API. A
/// Cedar API request now answers exactly as Cedar over the directory's own entities would: a
/// decision table of requests naming stand-in ids, with and without unrelated request-scoped
/// entities, compared with Cedar's authorizer over the store less the stand-ins.
#[test]
fn issue_16_10_the_cedar_api_answers_as_plain_cedar_over_the_directory() {
    let snapshot = common::bundled_snapshot();
    assert!(
        snapshot.zenml.as_ref().unwrap().stand_ins(),
        "the sample uses stand-ins"
    );
    let directory_only: Vec<_> = snapshot
        .engine
        .entities
        .iter()
        .filter(|entity| !snapshot.engine.is_internal(&entity.uid()))
        .cloned()
        .collect();
    assert!(
        directory_only.len() < snapshot.engine.entities.len(),
        "stand-ins are stored"
    );
    let stand_in = format!("{PRODUCTION}/*");
    let unrelated = json!({"uid": {"type": "ZenML::Role", "id": "unrelated"}, "attrs": {}, "parents": []});
    let own_stack = json!({
        "uid": {"type": "ZenML::Stack", "id": stand_in},
        "attrs": {"workspace": {"__entity": {"type": "ZenML::Workspace", "id": PRODUCTION}}},
        "parents": [{"type": "ZenML::Workspace", "id": PRODUCTION}],
    });
    let ask = |action: &str, entities: Vec<Value>| {
        json!({
            "principal": {"type": "ZenML::User", "id": BOB},
            "action": {"type": "ZenML::Action", "id": action},
            "resource": {"type": "ZenML::Stack", "id": stand_in},
            "additional_entities": entities,
        })
    };
    let rows = [
        ("stand-in id, nothing else", ask("read", vec![])),
        (
            "stand-in id, an unrelated entity",
            ask("read", vec![unrelated.clone()]),
        ),
        ("stand-in id, delete", ask("delete", vec![])),
        (
            "the caller's own entity with a stand-in's id",
            ask("read", vec![own_stack]),
        ),
        ("the caller's own entity, delete", ask("delete", vec![unrelated])),
    ];
    let limits = zenml_authz::config::Limits::default();
    for (what, body) in rows {
        let request = zenml_authz::http::parse_request(&snapshot, &body, &limits)
            .unwrap_or_else(|error| panic!("{what}: {error}"));
        let ours = snapshot
            .engine
            .decide(&request, &mut zenml_authz::Batch::single())
            .unwrap();
        let store = Entities::from_entities(
            directory_only
                .iter()
                .cloned()
                .chain(request.entities.cedar().iter().cloned()),
            None,
        )
        .unwrap();
        let cedar = Authorizer::new().is_authorized(&request.request, &snapshot.engine.policies, &store);
        let mut reasons: Vec<String> = cedar.diagnostics().reason().map(ToString::to_string).collect();
        reasons.sort();
        let mut errors: Vec<String> = cedar.diagnostics().errors().map(ToString::to_string).collect();
        errors.sort();
        assert_eq!(
            ours.allowed,
            cedar.decision() == cedar_policy::Decision::Allow,
            "{what}"
        );
        assert_eq!(ours.reasons, reasons, "{what}");
        assert_eq!(ours.errors, errors, "{what}");
    }
}

/// Reads one HTTP/1.1 response (headers and a `content-length` body) from `stream`.
fn read_response(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            if bytes.len() >= end + 4 + length {
                return text;
            }
        }
        let read = stream.read(&mut chunk).expect("a response");
        assert!(read > 0, "closed before a whole response: {text}");
        bytes.extend_from_slice(&chunk[..read]);
    }
}

/// Whether the server closes `stream` (a read returns end of file or a reset) before the
/// 30 s guard; a read that times out means it kept it open.
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut rest = Vec::new();
    match stream.read_to_end(&mut rest) {
        Ok(_) => true,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// ZenML keeps its connections to the sidecar in a pool and, over `http://`, does not retry: a
/// server that closed idle connections at the header timeout (10 s) raced ZenML reusing one at
/// that moment, and the permission check became a 500 (seen in the real-ZenML test). An idle
/// keep-alive connection now lasts `--idle-timeout-secs`; a client that trickles its headers, or
/// connects and sends nothing, is still cut at `--header-timeout-secs`.
#[test]
fn idle_keep_alive_connections_outlive_the_header_timeout_and_slow_heads_do_not() {
    const GET: &[u8] = b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n";
    let server = Server::start(&["--header-timeout-secs", "1", "--idle-timeout-secs", "60"]);
    let address = server.base.trim_start_matches("http://").to_owned();
    let mut kept = TcpStream::connect(&address).unwrap();
    kept.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    kept.write_all(GET).unwrap();
    assert!(read_response(&mut kept).starts_with("HTTP/1.1 200"));
    // Idle for twice the header timeout, then reused.
    std::thread::sleep(Duration::from_secs(2));
    kept.write_all(GET).unwrap();
    assert!(read_response(&mut kept).starts_with("HTTP/1.1 200"));
    // A request whose body arrives apart from its head (as Python's client sends a POST): the
    // body is not taken for the next request's head, so the idle wait after it is not cut.
    let body = json!({
        "principal": {"type": "ZenML::User", "id": DAVE},
        "action": {"type": "ZenML::Action", "id": "read"},
        "resource": {"type": "ZenML::Project", "id": CHURN},
    })
    .to_string();
    let head = format!(
        "POST /v1/is_authorized HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    kept.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    kept.write_all(body.as_bytes()).unwrap();
    assert!(read_response(&mut kept).starts_with("HTTP/1.1 200"));
    std::thread::sleep(Duration::from_secs(2));
    kept.write_all(GET).unwrap();
    assert!(read_response(&mut kept).starts_with("HTTP/1.1 200"));
    // The same connection, after its long idle waits, then trickling a head: cut at the header
    // timeout, not the idle one (one timer serves both deadlines).
    kept.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    assert!(
        closed_by_server(&mut kept),
        "a trickled head on an idle connection outlived the header timeout"
    );

    let mut trickling = TcpStream::connect(&address).unwrap();
    trickling.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let mut silent = TcpStream::connect(&address).unwrap();
    assert!(
        closed_by_server(&mut trickling),
        "a trickled head outlived the header timeout"
    );
    assert!(
        closed_by_server(&mut silent),
        "a silent connection outlived the header timeout"
    );

    // The idle timeout still ends an idle connection.
    let short = Server::start(&["--header-timeout-secs", "1", "--idle-timeout-secs", "2"]);
    let mut idle = TcpStream::connect(short.base.trim_start_matches("http://")).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    idle.write_all(GET).unwrap();
    assert!(read_response(&mut idle).starts_with("HTTP/1.1 200"));
    assert!(
        closed_by_server(&mut idle),
        "an idle connection outlived the idle timeout"
    );
}
