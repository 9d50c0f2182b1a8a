//! People sign in to a stock ZenML 0.98 server's own dashboard through zenml-authz: a real
//! browser (Debian's chromium, headless) behind a real nginx running
//! `deploy/nginx/zenml-dashboard.conf` as shipped, driven by `tests/e2e/dashboard_e2e.py` over
//! the DevTools protocol. A developer signs in and sees the projects page and a pipeline; a
//! viewer's delete in the dashboard's UI is refused; a person with no role in the workspace is
//! refused at sign-in with a message; sign-out ends the session. Screenshots of every step are
//! kept in `target/test-artifacts/dashboard/`. Chromium and nginx are installed by
//! `scripts/ensure-browser.sh` where missing, ZenML by `scripts/zenml-venv.sh`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::process::Command;

#[test]
fn people_sign_in_to_the_zenml_dashboard_through_the_sidecar() {
    let root = common::root();
    let venv = common::cli::setup("zenml-venv.sh", &[("ZENML_VERSION", "0.98.0")]).remove(0);
    let tools = common::cli::setup("ensure-browser.sh", &[]);
    let (chromium, nginx) = (&tools[0], &tools[1]);
    let work = tempfile::tempdir().unwrap();
    let artifacts = root.join("target/test-artifacts/dashboard");
    common::cli::assert_e2e_passed(
        Command::new(format!("{venv}/bin/python"))
            .arg(root.join("tests/e2e/dashboard_e2e.py"))
            .arg(env!("CARGO_BIN_EXE_zenml-authz"))
            .arg(&venv)
            .arg(work.path().join("run"))
            .arg(chromium)
            .arg(nginx)
            .arg(&artifacts),
    );
    common::cli::assert_screenshots(
        &artifacts,
        &[
            "01-sign-in-page",
            "02-developer-signed-in",
            "04-developer-pipeline",
            "05-viewer-delete-refused",
            "06-no-role-refused",
            "07-signed-out",
        ],
    );
}
