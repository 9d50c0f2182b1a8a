//! Test support: a stock ZenML server (`zenml[server]`, from the venv `scripts/zenml-venv.sh`
//! makes) whose Pro RBAC backend is a running sidecar, set up as README's "Use with ZenML"
//! says, as the sample directory's workspace `production`. Include it with
//! `#[path = "common/zenml_server.rs"] mod zenml_server;` next to `mod common;`.
#![allow(dead_code, reason = "each test binary uses a different part")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test support: a failed step should stop the test"
)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The sample organization.
pub const ORGANIZATION: &str = "743818ac-9cc4-413c-aa3b-0d14700954e9";
/// The sample workspace `production`: the server's external server id.
pub const PRODUCTION: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";

/// The try-out credentials (`tests/e2e/try-out-credentials.json`).
pub fn credentials() -> Value {
    let path = super::common::root().join("tests/e2e/try-out-credentials.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A persona's try-out API key.
pub fn api_key(persona: &str) -> String {
    credentials()["api_keys"][persona].as_str().unwrap().to_owned()
}

/// The venv with ZenML (created once, cached under target/).
pub fn venv() -> PathBuf {
    let output = Command::new("bash")
        .arg(super::common::root().join("scripts/zenml-venv.sh"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "zenml-venv.sh: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
}

/// A running ZenML server; killed on drop.
pub struct ZenmlServer {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    log: PathBuf,
}

impl ZenmlServer {
    /// Starts uvicorn on a free port with a fresh SQLite database in `work`; `sidecar` is the
    /// sidecar's base URL (its ZenML API is `<sidecar>/zenml`). Returns once `/health` answers.
    pub fn start(venv: &Path, sidecar: &str, work: &Path) -> ZenmlServer {
        let backend = format!("{sidecar}/zenml");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = work.join("zenml.log");
        let out = File::create(&log).unwrap();
        let enrollment = credentials()["workspaces"]["production"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut command = Command::new(venv.join("bin/uvicorn"));
        for (key, _) in std::env::vars() {
            if key.starts_with("ZENML_") {
                command.env_remove(key);
            }
        }
        let child = command
            .args(["zenml.zen_server.zen_server_api:app", "--host", "127.0.0.1"])
            .arg("--port")
            .arg(port.to_string())
            .arg("--no-server-header")
            .current_dir(work)
            .env("ZENML_CONFIG_PATH", work.join("server-config"))
            .env(
                "ZENML_STORE_URL",
                format!("sqlite:///{}", work.join("zenml.db").display()),
            )
            .env("ZENML_ANALYTICS_OPT_IN", "false")
            .env("ZENML_SERVER", "true")
            .env(
                "ZENML_SERVER_RBAC_IMPLEMENTATION_SOURCE",
                "zenml.zen_server.rbac.zenml_cloud_rbac.ZenMLCloudRBAC",
            )
            .env("ZENML_SERVER_AUTH_SCHEME", "EXTERNAL")
            .env("ZENML_SERVER_EXTERNAL_LOGIN_URL", format!("{backend}/login"))
            .env(
                "ZENML_SERVER_EXTERNAL_USER_INFO_URL",
                format!("{backend}/users/authorize_server"),
            )
            .env("ZENML_SERVER_EXTERNAL_SERVER_ID", PRODUCTION)
            .env("ZENML_SERVER_PRO_API_URL", &backend)
            .env("ZENML_SERVER_PRO_DASHBOARD_URL", &backend)
            .env("ZENML_SERVER_PRO_OAUTH2_CLIENT_SECRET", enrollment)
            .env("ZENML_SERVER_PRO_OAUTH2_AUDIENCE", "zenml-authz")
            .env("ZENML_SERVER_PRO_ORGANIZATION_ID", ORGANIZATION)
            .env("ZENML_SERVER_PRO_WORKSPACE_ID", PRODUCTION)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .unwrap();
        let mut server = ZenmlServer {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        };
        server.wait_healthy();
        server
    }

    /// Waits for `/health` while the process runs (start-up takes ~5 s; the limit only keeps
    /// a broken start from hanging the test).
    fn wait_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("ZenML exited with {status}:\n{}", self.log_tail());
            }
            if let Ok((200, _)) = self.try_request("GET", "/health", None, None) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "ZenML did not start:\n{}",
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The last lines of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Logs a persona in with their API key (`POST /api/v1/login`, `password=<key>`); the
    /// server's access token.
    pub fn login(&self, persona: &str) -> String {
        let response = agent()
            .post(&format!("{}/api/v1/login", self.url))
            .send_form([("password", api_key(persona).as_str())])
            .unwrap();
        let (status, body) = read(response);
        assert_eq!(status, 200, "login as {persona}: {body}\n{}", self.log_tail());
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// A request to the server's API with a bearer token and an optional JSON body.
    pub fn request(&self, method: &str, path: &str, token: &str, body: Option<&Value>) -> (u16, Value) {
        self.try_request(method, path, Some(token), body).unwrap()
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), ureq::Error> {
        let mut request = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = match body {
            Some(body) => agent().run(
                request
                    .header("content-type", "application/json")
                    .body(body.to_string())
                    .unwrap(),
            ),
            None => agent().run(request.body(()).unwrap()),
        }?;
        Ok(read(response))
    }
}

impl Drop for ZenmlServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(60)))
        .build()
        .into()
}

fn read(mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}
