//! The ZenML edge's credentials against the real binary (issue 16, "Close every way in"): the
//! token secret's strength and sources, tokens forged or of the old format, tokens of revoked or
//! rotated credentials, the token lifetime's bounds, malformed `zenml-server-id` headers,
//! oversized share fields, and failed logins that all look alike.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{ADA, BOB, CHURN, CI_BOT, PRODUCTION, STAGING};

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{Reply, Server, query};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use zenml_authz::zenml::token::{self, Subject, TokenKey};

// Try-out credentials of the sample directory (README "Try-out credentials").
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
const ENROLL_STAGING: &str = "zenml-authz-enroll-staging-bdcf23dbfaa83fcf90df149cf9e4385e";
const KEY_ADA: &str = "ZENPROKEY_ada_5211b6a4144bc0c91a9ef21efca2a834";
const KEY_BOB: &str = "ZENPROKEY_bob_030618f7340f60133ae8272cec5e267e";
const KEY_BOB_REVOKED: &str = "ZENPROKEY_bobold_7726d28e76acfc270d0f6e5a4e36a8a6";
const KEY_MALLORY: &str = "ZENPROKEY_mallory_f7c719f0b2574ab186bc0d0cf870cf65";
const KEY_CI_BOT: &str = "ZENPROKEY_cibot_8f7735b45952f79318293fb2b59bd134";

/// A token secret of the minimum length (32 bytes).
const SECRET: &str = "credentials-test-secret-32-bytes";
/// Another one.
const OTHER_SECRET: &str = "another-credentials-test-secret-";
/// The new enrollment key of `production` after the rotation test rotates it.
const ENROLL_PRODUCTION_NEW: &str = "zenml-authz-enroll-production-rotated-0123456789abcdef";

/// Nobody in the directory.
const STRANGER: &str = "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f";
const ID1: &str = "11111111-1111-4111-8111-111111111111";

type Env<'a> = [(&'a str, &'a str)];
/// How a server is started: flags and environment.
type Setup<'a> = (Vec<&'a str>, Vec<(&'a str, &'a str)>);

/// Starts `serve` with `args` and environment `env` on the sources in `sources` (the bundled
/// ones when `None`), its shares in `work`.
fn start(work: &Path, sources: Option<&Path>, args: &[&str], env: &Env<'_>) -> Server {
    let mut child = serve_command(work, sources, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("did not start: {line:?} ({args:?}, {env:?})"))
        .to_owned();
    Server {
        child,
        base,
        shares: None,
    }
}

fn serve_command(work: &Path, sources: Option<&Path>, args: &[&str], env: &Env<'_>) -> Command {
    let root = sources.map_or_else(common::root, Path::to_owned);
    let shares = work.join("shares.db").to_str().unwrap().to_owned();
    let mut command = common::serve_bundled(&root);
    command
        .args([
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
            "--shares-db",
            &shares,
        ])
        .args(args)
        .env_remove(token::ENV_TOKEN_SECRET)
        .env_remove("ZENML_AUTHZ_TOKEN_SECRET_FILE")
        .env_remove("ZENML_AUTHZ_TOKEN_TTL")
        .envs(env.iter().copied());
    command
}

/// Runs `serve` expecting it to refuse to start: its exit code and stderr. A server that starts
/// instead (its first line is its address) is stopped and the test fails.
fn refusal(work: &Path, args: &[&str], env: &Env<'_>) -> (Option<i32>, String) {
    let mut child = serve_command(work, None, args, env)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // One line, not to the end: a server that started keeps its stdout open.
    let mut first_line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first_line)
        .unwrap();
    if first_line.contains("listening on") {
        let _ = child.kill();
        let _ = child.wait();
        panic!("started, but should have refused ({args:?}, {env:?})");
    }
    let mut stderr = String::new();
    child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
    (child.wait().unwrap().code(), stderr)
}

fn secret_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// `/zenml/auth/login` with form `fields`.
fn login(server: &Server, fields: &[(&str, &str)]) -> Reply {
    server.post_form("/zenml/auth/login", fields, &[])
}

/// A workspace token (client credentials), or the failed reply.
fn workspace_token(server: &Server, workspace: &str, secret: &str) -> String {
    let reply = login(server, &[("client_id", workspace), ("client_secret", secret)]);
    assert_eq!(reply.status, 200, "login of {workspace}: {reply:?}");
    reply.body["access_token"].as_str().unwrap().to_owned()
}

/// A user token (API-key login, as cloud-mode clients do).
fn user_token(server: &Server, api_key: &str) -> String {
    let reply = login(server, &[("password", api_key)]);
    assert_eq!(reply.status, 200, "login with {api_key}: {reply:?}");
    reply.body["access_token"].as_str().unwrap().to_owned()
}

/// `check_permissions` with a workspace token (and `extra` headers): what every `/rbac/*` call
/// goes through.
fn rbac(server: &Server, token: &str, extra: &[(&str, &str)]) -> Reply {
    let bearer = format!("Bearer {token}");
    let mut headers = vec![("authorization", bearer.as_str())];
    headers.extend_from_slice(extra);
    let path = format!(
        "/zenml/rbac/check_permissions?{}",
        query(&[("user_id", BOB), ("action", "read")])
    );
    let body = json!(["stack"]).to_string();
    server.send("POST", &path, &headers, Some(("application/json", &body)))
}

/// `/users/authorize_server` with a bearer credential (a user token or an API key).
fn user_info(server: &Server, credential: &str) -> Reply {
    let bearer = format!("Bearer {credential}");
    let path = format!(
        "/zenml/users/authorize_server?{}",
        query(&[("server_id", PRODUCTION)])
    );
    server.send("GET", &path, &[("authorization", &bearer)], None)
}

fn sha256(text: &str) -> [u8; 32] {
    Sha256::digest(text.as_bytes()).into()
}

// ===== the secret =============================================================================

#[test]
fn weak_or_misplaced_secrets_and_lifetimes_out_of_bounds_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = &SECRET[1..];
    let empty_file = secret_file(dir.path(), "empty", "\n");
    let short_file = secret_file(dir.path(), "short", &format!("{short}\n"));
    let good_file = secret_file(dir.path(), "good", SECRET);
    let missing = dir.path().join("missing").to_str().unwrap().to_owned();
    // (what, flags, environment, the message stderr must contain); exit code 2 for every row.
    let table: Vec<(&str, Setup, &str)> = vec![
        (
            "empty variable",
            (vec![], vec![("ZENML_AUTHZ_TOKEN_SECRET", "")]),
            "error: token secret from `ZENML_AUTHZ_TOKEN_SECRET` is empty",
        ),
        (
            "31-byte variable",
            (vec![], vec![("ZENML_AUTHZ_TOKEN_SECRET", short)]),
            "error: token secret from `ZENML_AUTHZ_TOKEN_SECRET` is 31 bytes: at least 32 are required",
        ),
        (
            "empty file (a newline)",
            (vec!["--token-secret-file", &empty_file], vec![]),
            "is empty",
        ),
        (
            "31-byte file (and a newline)",
            (vec!["--token-secret-file", &short_file], vec![]),
            "is 31 bytes: at least 32 are required",
        ),
        (
            "31-byte file from the variable",
            (vec![], vec![("ZENML_AUTHZ_TOKEN_SECRET_FILE", &short_file)]),
            "is 31 bytes",
        ),
        (
            "missing file",
            (vec!["--token-secret-file", &missing], vec![]),
            "error: token secret file `",
        ),
        (
            "both variable and file",
            (
                vec!["--token-secret-file", &good_file],
                vec![("ZENML_AUTHZ_TOKEN_SECRET", SECRET)],
            ),
            "not both",
        ),
        (
            "the removed flag, even with a strong secret",
            (vec!["--token-secret", SECRET], vec![]),
            "`--token-secret` is no longer accepted",
        ),
        (
            "lifetime above 24 h",
            (vec!["--token-ttl-secs", "86401"], vec![]),
            "301..=86400",
        ),
        (
            "lifetime above 24 h from the variable",
            (vec![], vec![("ZENML_AUTHZ_TOKEN_TTL", "1000000")]),
            "301..=86400",
        ),
        (
            "lifetime under ZenML's renewal margin",
            (vec!["--token-ttl-secs", "300"], vec![]),
            "301..=86400",
        ),
    ];
    for (what, (args, env), message) in table {
        let (code, stderr) = refusal(dir.path(), &args, &env);
        assert_eq!(code, Some(2), "{what}: {stderr}");
        assert!(stderr.contains(message), "{what}: {stderr}");
        assert!(
            !stderr.contains(SECRET),
            "{what}: the secret is never printed: {stderr}"
        );
    }
    // The bounds themselves are accepted.
    for ttl in ["301", "86400"] {
        let server = start(
            dir.path(),
            None,
            &["--token-ttl-secs", ttl],
            &[("ZENML_AUTHZ_TOKEN_SECRET", SECRET)],
        );
        let reply = login(
            &server,
            &[("client_id", PRODUCTION), ("client_secret", ENROLL_PRODUCTION)],
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        assert_eq!(reply.body["expires_in"], json!(ttl.parse::<u64>().unwrap()));
    }
}

#[test]
fn a_secret_file_keeps_tokens_valid_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "secret", &format!("{SECRET}\n"));
    let other = secret_file(dir.path(), "other", OTHER_SECRET);
    let with_file = ["--token-secret-file", file.as_str()];
    let (workspace, user) = {
        let first = start(dir.path(), None, &with_file, &[]);
        let tokens = (
            workspace_token(&first, PRODUCTION, ENROLL_PRODUCTION),
            user_token(&first, KEY_BOB),
        );
        assert_eq!(rbac(&first, &tokens.0, &[]).status, 200);
        assert_eq!(user_info(&first, &tokens.1).status, 200);
        tokens
    };
    let random = {
        let unset = start(dir.path(), None, &[], &[]);
        workspace_token(&unset, PRODUCTION, ENROLL_PRODUCTION)
    };
    // (what, flags, environment, the first server's tokens are valid)
    let table: Vec<(&str, Setup, bool)> = vec![
        ("the same file", (with_file.to_vec(), vec![]), true),
        (
            "the same secret from the variable (the file's newline is not part of it)",
            (vec![], vec![("ZENML_AUTHZ_TOKEN_SECRET", SECRET)]),
            true,
        ),
        (
            "the same file from the variable",
            (vec![], vec![("ZENML_AUTHZ_TOKEN_SECRET_FILE", &file)]),
            true,
        ),
        (
            "another secret",
            (vec!["--token-secret-file", &other], vec![]),
            false,
        ),
        ("no secret: a random key", (vec![], vec![]), false),
    ];
    for (what, (args, env), valid) in table {
        let restarted = start(dir.path(), None, &args, &env);
        let (workspace_status, user_status) = if valid { (200, 200) } else { (401, 401) };
        let reply = rbac(&restarted, &workspace, &[]);
        assert_eq!(
            reply.status, workspace_status,
            "{what}: workspace token: {reply:?}"
        );
        let reply = user_info(&restarted, &user);
        assert_eq!(reply.status, user_status, "{what}: user token: {reply:?}");
        if valid {
            assert_eq!(reply.body["id"], BOB, "{what}");
        }
        // A random key is per process: a token of an earlier process never verifies.
        assert_eq!(
            rbac(&restarted, &random, &[]).status,
            401,
            "{what}: random-key token"
        );
    }
}

// ===== forged and old-format tokens ===========================================================

/// A `zat1` token (the format before generations): HMAC-SHA256 keyed with the bare SHA-256 of
/// the secret, as the sidecar used to sign them.
fn old_format_token(secret: &str, subject: Value) -> String {
    let claims = json!({"sub": subject, "exp": 4_102_444_800_u64});
    let signed = format!("zat1.{}", URL_SAFE_NO_PAD.encode(claims.to_string()));
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&sha256(secret)).unwrap();
    mac.update(signed.as_bytes());
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// A current-format token signed with the keys derived from `secret`, for a credential whose
/// stored hash is `credential_sha256`.
fn token_for(secret: &[u8], subject: Subject, credential_sha256: &[u8; 32]) -> String {
    let key = TokenKey::derive(secret);
    token::issue(&key, subject, key.generation(credential_sha256), 4_102_444_800)
}

#[test]
fn forged_and_old_format_tokens_are_refused() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path(), None, &[], &[("ZENML_AUTHZ_TOKEN_SECRET", SECRET)]);
    let production = || Subject::Workspace(PRODUCTION.into());
    let bob = || Subject::User(BOB.into());
    let workspace_subject = json!({"kind": "workspace", "id": PRODUCTION});
    let user_subject = json!({"kind": "user", "id": BOB});
    let enrollment = sha256(ENROLL_PRODUCTION);
    let bob_key = sha256(KEY_BOB);
    // (what, workspace token, user token, accepted)
    let table = [
        (
            "signed with the server's secret (the forging below is right)",
            token_for(SECRET.as_bytes(), production(), &enrollment),
            token_for(SECRET.as_bytes(), bob(), &bob_key),
            true,
        ),
        (
            "signed with the empty-string key",
            token_for(b"", production(), &enrollment),
            token_for(b"", bob(), &bob_key),
            false,
        ),
        (
            "old format, signed with the empty-string key",
            old_format_token("", workspace_subject.clone()),
            old_format_token("", user_subject.clone()),
            false,
        ),
        (
            "old format, signed with the server's secret",
            old_format_token(SECRET, workspace_subject),
            old_format_token(SECRET, user_subject),
            false,
        ),
        (
            "the server's secret, generation of another credential",
            token_for(SECRET.as_bytes(), production(), &sha256(ENROLL_STAGING)),
            token_for(SECRET.as_bytes(), bob(), &sha256(KEY_ADA)),
            false,
        ),
        (
            "the server's secret, generation of no key (workspace), of a revoked key (user)",
            token_for(SECRET.as_bytes(), production(), &sha256("")),
            token_for(SECRET.as_bytes(), bob(), &sha256(KEY_BOB_REVOKED)),
            false,
        ),
    ];
    for (what, workspace, user, accepted) in table {
        let reply = rbac(&server, &workspace, &[]);
        assert_eq!(
            reply.status,
            if accepted { 200 } else { 401 },
            "{what}: workspace: {reply:?}"
        );
        let reply = user_info(&server, &user);
        assert_eq!(
            reply.status,
            if accepted { 200 } else { 401 },
            "{what}: user: {reply:?}"
        );
    }
}

// ===== revocation =============================================================================

/// Replaces `find` by `replace` in the copied directory, by rename (as editors save), and waits
/// for the sidecar to publish the new revision.
fn edit_directory(server: &Server, dir: &Path, edits: &[(&str, &str)]) {
    let (_, before) = server.get("/v1/status");
    let path = dir.join("policies/directory.yaml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (find, replace) in edits {
        assert_eq!(text.matches(find).count(), 1, "fixture: `{find}`");
        text = text.replacen(find, replace, 1);
    }
    let temporary = dir.join("policies/directory.yaml.tmp~");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, &path).unwrap();
    // A generous deadline: a debug build on a busy machine reloads slowly.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, status) = server.get("/v1/status");
        assert_eq!(status["last_load_error"], Value::Null, "the edit is valid");
        if status["revision"] != before["revision"] {
            return;
        }
        assert!(Instant::now() < deadline, "no reload: {status}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn revoking_a_key_or_rotating_an_enrollment_key_ends_its_tokens_at_the_reload() {
    let dir = common::copy_sources();
    let file = secret_file(dir.path(), "secret", SECRET);
    let server = start(dir.path(), Some(dir.path()), &["--token-secret-file", &file], &[]);
    let production = workspace_token(&server, PRODUCTION, ENROLL_PRODUCTION);
    let staging = workspace_token(&server, STAGING, ENROLL_STAGING);
    let bob = user_token(&server, KEY_BOB);
    let ada = user_token(&server, KEY_ADA);
    let ci_bot = user_token(&server, KEY_CI_BOT);
    for token in [&production, &staging] {
        assert_eq!(rbac(&server, token, &[]).status, 200);
    }
    for token in [&bob, &ada, &ci_bot] {
        assert_eq!(user_info(&server, token).status, 200);
    }

    // Revoke bob's key, deactivate ada, rotate production's enrollment key.
    let new_hash = hex::encode(sha256(ENROLL_PRODUCTION_NEW));
    edit_directory(
        &server,
        dir.path(),
        &[
            (
                "{name: try-out, sha256: 9357281c64157e232982e00848143b5ff49f685adaf553c49358218404d0f640}",
                "{name: try-out, sha256: 9357281c64157e232982e00848143b5ff49f685adaf553c49358218404d0f640, revoked: true}",
            ),
            (
                "    email: ada@acme.example\n",
                "    email: ada@acme.example\n    active: false\n",
            ),
            (
                "d3e915f87830dfbf85307e9e511c5c4dd864a27cff9fcc19d19b750cdf320da0",
                &new_hash,
            ),
        ],
    );
    // Every token is unexpired (an hour to go): only the generation check refuses them.
    // (what, reply, expected status, the message)
    let revoked = "unauthorized: revoked token: its credential was revoked or replaced; log in again";
    let table = [
        (
            "production's token, key rotated",
            rbac(&server, &production, &[]),
            401,
            revoked,
        ),
        ("staging's token", rbac(&server, &staging, &[]), 200, ""),
        ("bob's token, key revoked", user_info(&server, &bob), 401, revoked),
        (
            "ada's token, account deactivated",
            user_info(&server, &ada),
            401,
            revoked,
        ),
        ("ci-bot's token", user_info(&server, &ci_bot), 200, ""),
        (
            "production, old key",
            login(
                &server,
                &[("client_id", PRODUCTION), ("client_secret", ENROLL_PRODUCTION)],
            ),
            401,
            "unauthorized: invalid client credentials",
        ),
        (
            "production, new key",
            login(
                &server,
                &[
                    ("client_id", PRODUCTION),
                    ("client_secret", ENROLL_PRODUCTION_NEW),
                ],
            ),
            200,
            "",
        ),
        (
            "bob's key",
            login(&server, &[("password", KEY_BOB)]),
            401,
            "unauthorized: invalid API key",
        ),
    ];
    for (what, reply, status, message) in table {
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert_eq!(reply.message(), message, "{what}");
    }
    let rotated = workspace_token(&server, PRODUCTION, ENROLL_PRODUCTION_NEW);
    assert_eq!(rbac(&server, &rotated, &[]).status, 200, "the new key's token");
}

// ===== zenml-server-id ========================================================================

/// One raw HTTP/1.1 request to `server` (headers as bytes, repeats kept): status and body.
fn raw(server: &Server, path: &str, headers: &[(&str, &[u8])], body: &str) -> (u16, String) {
    let address = server.base.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: {address}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
        body.len()
    )
    .into_bytes();
    for (name, value) in headers {
        request.extend_from_slice(name.as_bytes());
        request.extend_from_slice(b": ");
        request.extend_from_slice(value);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"\r\n");
    request.extend_from_slice(body.as_bytes());
    stream.write_all(&request).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[test]
fn a_duplicated_or_non_utf8_server_id_is_a_bad_request() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path(), None, &[], &[]);
    let token = workspace_token(&server, PRODUCTION, ENROLL_PRODUCTION);
    let bearer = format!("Bearer {token}");
    let path = format!(
        "/zenml/rbac/check_permissions?{}",
        query(&[("user_id", BOB), ("action", "read")])
    );
    let mut latin1 = PRODUCTION.as_bytes().to_vec();
    latin1.push(0xe9);
    // (what, zenml-server-id values, expected status, a word of the message)
    let table: Vec<(&str, Vec<&[u8]>, u16, &str)> = vec![
        ("none", vec![], 200, ""),
        ("its own", vec![PRODUCTION.as_bytes()], 200, ""),
        (
            "another workspace",
            vec![STAGING.as_bytes()],
            403,
            "does not match",
        ),
        (
            "UTF-8, not ASCII",
            vec!["prødüction".as_bytes()],
            403,
            "does not match",
        ),
        (
            "its own twice",
            vec![PRODUCTION.as_bytes(), PRODUCTION.as_bytes()],
            400,
            "header `zenml-server-id`: given more than once",
        ),
        (
            "its own and another",
            vec![PRODUCTION.as_bytes(), STAGING.as_bytes()],
            400,
            "header `zenml-server-id`: given more than once",
        ),
        (
            "not UTF-8",
            vec![&latin1],
            400,
            "header `zenml-server-id`: not UTF-8",
        ),
    ];
    for (what, values, status, word) in table {
        let mut headers: Vec<(&str, &[u8])> = vec![("authorization", bearer.as_bytes())];
        headers.extend(values.into_iter().map(|value| ("zenml-server-id", value)));
        let (got, body) = raw(&server, &path, &headers, r#"["stack"]"#);
        assert_eq!(got, status, "{what}: {body}");
        assert!(body.contains(word), "{what}: {body}");
    }
}

// ===== share bounds ===========================================================================

#[test]
fn oversized_share_fields_are_refused_by_name() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path(), None, &[], &[]);
    let token = workspace_token(&server, PRODUCTION, ENROLL_PRODUCTION);
    let resource = format!("{CHURN}:pipeline/{ID1}");
    let share = |body: &Value| {
        let text = body.to_string();
        server.send(
            "POST",
            "/zenml/rbac/resource_members",
            &[("authorization", &format!("Bearer {token}"))],
            Some(("application/json", &text)),
        )
    };
    let base = json!({"user_id": BOB, "sharing_user_id": ADA, "resource": resource, "actions": ["read"]});
    let with = |field: &str, value: Value| {
        let mut body = base.clone();
        body[field] = value;
        body
    };
    let long = |n: usize| "a".repeat(n);
    let long_resource = format!("{CHURN}:pipeline/{}", long(10_240));
    let long_resource_message = format!(
        "resource: {} bytes, more than the 256 allowed",
        long_resource.len()
    );
    // (what, body, expected status, the message's start)
    let table = [
        ("a share within the limits", base.clone(), 200, ""),
        (
            "sharing_user_id of 128 bytes",
            with("sharing_user_id", json!(long(128))),
            200,
            "",
        ),
        (
            "sharing_user_id of 500 KB",
            with("sharing_user_id", json!(long(500_000))),
            400,
            "sharing_user_id: 500000 bytes, more than the 128 allowed",
        ),
        (
            "user_id of 129 bytes",
            with("user_id", json!(long(129))),
            400,
            "user_id: 129 bytes",
        ),
        (
            "team_id of 10 KB",
            json!({"team_id": long(10_240), "resource": resource, "actions": ["read"]}),
            400,
            "team_id: 10240 bytes",
        ),
        (
            "resource of 10 KB",
            with("resource", json!(long_resource)),
            400,
            long_resource_message.as_str(),
        ),
        (
            "33 actions",
            with("actions", json!(vec!["read"; 33])),
            400,
            "actions: 33 entries, more than the 32 allowed",
        ),
        (
            "an action of 1 KB",
            with("actions", json!(["read", long(1024)])),
            400,
            "actions[1]: 1024 bytes",
        ),
    ];
    for (what, body, status, message) in table {
        let reply = share(&body);
        assert_eq!(reply.status, status, "{what}: {reply:?}");
        assert!(reply.message().starts_with(message), "{what}: {reply:?}");
        assert!(reply.message().len() < 200, "{what}: the value is not echoed");
    }
}

// ===== failed logins look alike ===============================================================

#[test]
fn failed_logins_do_not_say_why() {
    let work = tempfile::tempdir().unwrap();
    let server = start(work.path(), None, &[], &[]);
    let client = |id: &str, secret: &str| login(&server, &[("client_id", id), ("client_secret", secret)]);
    // Each group must give one and the same 401 body, whatever the reason.
    let groups = [
        (
            "client credentials",
            vec![
                ("unknown workspace", client(STRANGER, ENROLL_PRODUCTION)),
                ("wrong secret", client(PRODUCTION, "guess")),
                ("another workspace's secret", client(PRODUCTION, ENROLL_STAGING)),
                (
                    "unknown workspace, its own name as the secret",
                    client(STRANGER, STRANGER),
                ),
            ],
        ),
        (
            "API-key login",
            vec![
                (
                    "unknown key",
                    login(
                        &server,
                        &[("password", "ZENPROKEY_nobody_00000000000000000000000000000000")],
                    ),
                ),
                ("revoked key", login(&server, &[("password", KEY_BOB_REVOKED)])),
                (
                    "deactivated account",
                    login(&server, &[("password", KEY_MALLORY)]),
                ),
            ],
        ),
        (
            "API key as user-info credential",
            vec![
                (
                    "unknown key",
                    user_info(&server, "ZENPROKEY_nobody_00000000000000000000000000000000"),
                ),
                ("revoked key", user_info(&server, KEY_BOB_REVOKED)),
                ("deactivated account", user_info(&server, KEY_MALLORY)),
            ],
        ),
    ];
    for (group, replies) in groups {
        let (_, first) = &replies[0];
        for (what, reply) in &replies {
            assert_eq!(reply.status, 401, "{group}: {what}: {reply:?}");
            assert_eq!(reply.body, first.body, "{group}: {what} differs from the first");
            assert_eq!(
                reply.header("www-authenticate"),
                Some("Bearer"),
                "{group}: {what}"
            );
        }
        let message = first.message();
        assert!(
            message == "unauthorized: invalid client credentials"
                || message == "unauthorized: invalid API key",
            "{group}: {message}"
        );
    }
    // The API key as a user-info credential is refused the same way, and ADA's is accepted.
    assert_eq!(user_info(&server, KEY_ADA).body["id"], ADA);
    assert_eq!(user_info(&server, KEY_CI_BOT).body["id"], CI_BOT);
}
