//! Test support: start the real `zenml-authz` binary on 127.0.0.1:0 and talk HTTP to it.
#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failed step should stop the test"
)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

pub mod cli;
pub mod postgres;
pub mod sample;

/// The repository root (bundled policies, schemas, directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running sidecar; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// The folder of the server's own share database (`shares.db`), when the test gave no
    /// `--shares-db`: no test shares a database with another, or leaves one in the repository
    /// (the flag's default, `zenml-authz-shares.db`, is relative to the working directory).
    /// Removed on drop, after the server is killed.
    pub shares: Option<tempfile::TempDir>,
}

impl Server {
    /// Starts `zenml-authz serve` on the bundled sources, plus `extra` flags.
    pub fn start(extra: &[&str]) -> Server {
        let root = root();
        Server::start_with(
            &root.join("policies"),
            &root.join("schemas"),
            &root.join("policies/directory.yaml"),
            extra,
        )
    }

    /// Starts `zenml-authz serve` on the given sources; without `--shares-db` in `extra`, with a
    /// share database of its own in a temp dir ([`Server::shares`]).
    pub fn start_with(policies: &Path, schemas: &Path, directory: &Path, extra: &[&str]) -> Server {
        let mut command = serve_command(policies, schemas, directory);
        let shares = (!extra.iter().any(|arg| arg.starts_with("--shares-db"))).then(|| {
            let dir = tempfile::tempdir().expect("tempdir");
            command.arg("--shares-db").arg(dir.path().join("shares.db"));
            dir
        });
        let mut child = command
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--log-format")
            .arg("json")
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start zenml-authz");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the listening line");
        let base = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_owned();
        Server { child, base, shares }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(Duration::from_secs(10)))
            .build()
            .into()
    }

    /// POSTs a raw body; returns status and parsed JSON body.
    pub fn post_raw(&self, path: &str, body: &str) -> (u16, Value) {
        let response = Self::agent()
            .post(&format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .send(body)
            .expect("request");
        read(response)
    }

    /// POSTs JSON.
    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(path, &body.to_string())
    }

    /// GETs a path.
    pub fn get(&self, path: &str) -> (u16, Value) {
        read(
            Self::agent()
                .get(&format!("{}{path}", self.base))
                .call()
                .expect("request"),
        )
    }

    /// Any method, no body; returns status and headers of interest.
    pub fn request(&self, method: &str, path: &str) -> (u16, Option<String>) {
        let request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base))
            .body(())
            .expect("request");
        let response = Self::agent().run(request).expect("request");
        let allow = response
            .headers()
            .get("allow")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        (response.status().as_u16(), allow)
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `zenml-authz serve` on the given sources; the caller adds the rest (a `--shares-db` too:
/// the variable is cleared, and the default is a file in the working directory).
pub fn serve_command(policies: &Path, schemas: &Path, directory: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zenml-authz"));
    command
        .env_remove("ZENML_AUTHZ_SHARES_DB")
        .env_remove("ZENML_AUTHZ_SHARES_DB_URL_FILE")
        .arg("serve")
        .arg("--policies")
        .arg(policies)
        .arg("--schemas")
        .arg(schemas)
        .arg("--directory")
        .arg(directory);
    command
}

/// `zenml-authz serve` on the sources under `root` (`policies/`, `schemas/`,
/// `policies/directory.yaml`), e.g. the repository's bundled ones.
pub fn serve_bundled(root: &Path) -> Command {
    serve_command(
        &root.join("policies"),
        &root.join("schemas"),
        &root.join("policies/directory.yaml"),
    )
}

/// The bundled policies, schemas and sample directory.
pub fn bundled_sources() -> zenml_authz::Sources {
    let root = root();
    zenml_authz::Sources {
        policies: root.join("policies"),
        schemas: root.join("schemas"),
        directory: root.join("policies/directory.yaml"),
    }
}

/// The bundled sources, loaded.
pub fn bundled_snapshot() -> zenml_authz::Snapshot {
    zenml_authz::snapshot::load(&bundled_sources()).unwrap_or_else(|errors| panic!("{errors:#?}"))
}

/// Copies the bundled schemas and policies (directory file included) into a temp dir.
pub fn copy_sources() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for sub in ["schemas", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        for entry in std::fs::read_dir(root().join(sub)).expect("read_dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).expect("copy");
        }
    }
    dir
}

/// A response of [`Server::send`]: status, headers and body (JSON, else the text as a string).
pub struct Reply {
    pub status: u16,
    pub headers: ureq::http::HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The value of header `name`, if present and text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The error message of an error body (empty when there is none).
    pub fn message(&self) -> String {
        self.body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

/// A request body: content type and text.
pub type Body<'a> = Option<(&'a str, &'a str)>;

/// The `field` of each element of the array `list` (a batch's results, the console's records).
pub fn each_field<'a>(list: &'a Value, field: &str) -> Vec<&'a Value> {
    list.as_array()
        .expect("an array")
        .iter()
        .map(|element| &element[field])
        .collect()
}

/// `key=value&…`, form-urlencoded (so `:` is `%3A` and `/` is `%2F`, as ZenML's `requests`
/// sends them); a key may repeat.
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut serializer = form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs {
        serializer.append_pair(key, value);
    }
    serializer.finish()
}

/// A guard against a hang only: a wait fails when what it waits for has not happened at all
/// after this long. How fast anything is, is measured (BENCHMARKS.md), never asserted in tests.
pub const HANG_GUARD: Duration = Duration::from_secs(120);

impl Server {
    /// Polls `/v1/status` until `condition` holds, and returns it.
    pub fn wait_status(&self, condition: impl Fn(&Value) -> bool) -> Value {
        let deadline = std::time::Instant::now() + HANG_GUARD;
        loop {
            let (_, status) = self.get("/v1/status");
            if condition(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "status never matched: {status}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Any method, with extra headers and an optional body; panics if the server cannot be
    /// reached.
    pub fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Body<'_>) -> Reply {
        self.try_send(method, path, headers, body).expect("request")
    }

    /// Like [`Server::send`], but a transport failure (server gone) is an `Err`.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Reply, ureq::Error> {
        send_to(&self.base, method, path, headers, body)
    }

    /// POSTs a form-urlencoded body.
    pub fn post_form(&self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Reply {
        let form = query(fields);
        self.send(
            "POST",
            path,
            headers,
            Some(("application/x-www-form-urlencoded", &form)),
        )
    }

    /// Logs a workspace in at `/zenml/auth/login` as ZenML does (client credentials); returns
    /// the access token, panicking unless the login succeeds.
    pub fn zenml_login(&self, workspace: &str, secret: &str) -> String {
        let reply = self.post_form(
            "/zenml/auth/login",
            &[
                ("client_id", workspace),
                ("client_secret", secret),
                ("audience", "zenml-authz-tests"),
                ("grant_type", "client_credentials"),
            ],
            &[],
        );
        assert_eq!(reply.status, 200, "login of {workspace}: {reply:?}");
        reply.body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// `POST /zenml/rbac/check_permissions` as ZenML sends it for `workspace` (its bearer
    /// `token`): may `user` do `action` on each of `resources`? Panics unless it answers 200;
    /// returns the answer per resource string.
    pub fn check_permissions(
        &self,
        token: &str,
        workspace: &str,
        user: &str,
        action: &str,
        resources: &[String],
    ) -> Value {
        let authorization = format!("Bearer {token}");
        let body = serde_json::json!(resources).to_string();
        let reply = self.send(
            "POST",
            &format!(
                "/zenml/rbac/check_permissions?{}",
                query(&[("user_id", user), ("action", action)])
            ),
            &[("authorization", &authorization), ("zenml-server-id", workspace)],
            Some(("application/json", &body)),
        );
        assert_eq!(reply.status, 200, "{user} {action}: {reply:?}");
        reply.body
    }
}

/// One request to `base` (e.g. `http://127.0.0.1:1234`), outside of a [`Server`] (a writer
/// thread, a server that was killed).
pub fn send_to(
    base: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body<'_>,
) -> Result<Reply, ureq::Error> {
    let mut builder = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let agent = Server::agent();
    let mut response = match body {
        Some((content_type, text)) => agent.run(
            builder
                .header("content-type", content_type)
                .body(text.to_owned())
                .expect("request"),
        )?,
        None => agent.run(builder.body(()).expect("request"))?,
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.body_mut().read_to_string()?;
    let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A store as sorted entity JSON, parents sorted too: Cedar's entities compare by uid only, so
/// this compares attributes and parents as well.
pub fn store_json(entities: &cedar_policy::Entities) -> Vec<String> {
    let Ok(Value::Array(list)) = entities.to_json_value() else {
        panic!("entities JSON is an array");
    };
    let mut out: Vec<String> = list
        .into_iter()
        .map(|mut entity| {
            if let Some(Value::Array(parents)) = entity.get_mut("parents") {
                parents.sort_by_key(Value::to_string);
            }
            entity.to_string()
        })
        .collect();
    out.sort();
    out
}

/// The proptest seed when `PROPTEST_RNG_SEED` is not set: every run, CI's too, draws the same
/// cases.
pub const PROPTEST_SEED: u64 = 19;

/// A proptest configuration of `cases` cases, no failure files, and a seed from
/// `PROPTEST_RNG_SEED`: unset, [`PROPTEST_SEED`]; a number, that seed; `random`, a new seed on
/// every run, printed (shown with a failure) so that `PROPTEST_RNG_SEED=<seed>` repeats it.
/// (Proptest reads the variable itself too, and warns once that `random` is not a number.)
pub fn proptest_config(cases: u32) -> proptest::test_runner::Config {
    use proptest::test_runner::{Config, RngAlgorithm, RngSeed};
    let seed = match std::env::var("PROPTEST_RNG_SEED") {
        Err(std::env::VarError::NotPresent) => PROPTEST_SEED,
        Ok(value) if value == "random" => {
            use std::hash::{BuildHasher, Hasher};
            let seed = std::collections::hash_map::RandomState::new()
                .build_hasher()
                .finish();
            eprintln!("proptest seed {seed}: PROPTEST_RNG_SEED={seed} repeats this run");
            seed
        }
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("PROPTEST_RNG_SEED={value:?}: a number, or `random` for a new seed")),
        Err(error) => panic!("PROPTEST_RNG_SEED: {error}"),
    };
    Config {
        cases,
        failure_persistence: None,
        rng_algorithm: RngAlgorithm::ChaCha,
        rng_seed: RngSeed::Fixed(seed),
        ..Config::default()
    }
}
