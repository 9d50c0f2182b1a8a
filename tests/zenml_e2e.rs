//! A stock ZenML server (`zenml[server]` 0.98.0 and 0.80.2, each installed into a cached venv
//! by `scripts/zenml-venv.sh`) with zenml-authz as its Pro RBAC backend, configured as README's
//! "Use with ZenML" says, driven by ZenML's own Python client as personas of the sample
//! directory (`tests/e2e/zenml_e2e.py`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::process::Command;

/// The whole flow against one ZenML release (a venv per release, cached under target/).
fn a_real_zenml_server_uses_the_sidecar(version: &str) {
    let root = common::root();
    let venv = common::cli::setup("zenml-venv.sh", &[("ZENML_VERSION", version)]).remove(0);
    let work = tempfile::tempdir().unwrap();
    common::cli::assert_e2e_passed(
        Command::new(format!("{venv}/bin/python"))
            .arg(root.join("tests/e2e/zenml_e2e.py"))
            .arg(env!("CARGO_BIN_EXE_zenml-authz"))
            .arg(&venv)
            .arg(work.path().join("run")),
    );
}

#[test]
fn zenml_0_98() {
    a_real_zenml_server_uses_the_sidecar("0.98.0");
}

/// ZenML 0.80: `GET` permission checks, names from e-mails, logins with the key as bearer.
#[test]
fn zenml_0_80() {
    a_real_zenml_server_uses_the_sidecar("0.80.2");
}

#[test]
fn try_out_credentials_match_the_directory_hashes() {
    use sha2::{Digest, Sha256};
    let root = common::root();
    let credentials: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/e2e/try-out-credentials.json")).unwrap(),
    )
    .unwrap();
    let directory = std::fs::read_to_string(root.join("policies/directory.yaml")).unwrap();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let mut count = 0;
    for group in ["workspaces", "api_keys", "revoked_api_keys"] {
        for (name, secret) in credentials[group].as_object().unwrap() {
            let secret = secret.as_str().unwrap();
            let digest = hex::encode(Sha256::digest(secret.as_bytes()));
            assert!(
                directory.contains(&digest),
                "{group}.{name}: its hash is not in directory.yaml"
            );
            assert!(readme.contains(secret), "{group}.{name}: README does not list it");
            count += 1;
        }
    }
    assert_eq!(count, 18);
}
