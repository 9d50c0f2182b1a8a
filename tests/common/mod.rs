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

/// The repository root (bundled policies, schemas, directory).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running sidecar; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
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

    /// Starts `zenml-authz serve` on the given sources.
    pub fn start_with(policies: &Path, schemas: &Path, directory: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
            .arg("serve")
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--policies")
            .arg(policies)
            .arg("--schemas")
            .arg(schemas)
            .arg("--directory")
            .arg(directory)
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
        Server { child, base }
    }

    fn agent() -> ureq::Agent {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
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
