//! The real command line, run once: what it printed and how it exited. Included by the CLI's
//! test binaries on its own (`#[path = "common/cli.rs"] mod cli;`), without the server helpers.
#![allow(
    dead_code,
    clippy::unwrap_used,
    reason = "each test binary uses a different part; a failed step should stop the test"
)]

use std::process::Command;

/// What a run printed and how it exited.
pub struct Run {
    /// The exit code (-1: ended by a signal).
    pub code: i32,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// `zenml-authz` (the binary under test), to be given its arguments.
pub fn zenml_authz() -> Command {
    Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
}

/// Runs `command` to its end.
pub fn run(command: &mut Command) -> Run {
    let output = command.output().expect("the binary runs");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The path of `cvc5`, installed by `scripts/ensure-cvc5.sh` where missing, once per test
/// binary (the script locks too, for test binaries running at once).
pub fn cvc5() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| {
        let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-cvc5.sh");
        let output = Command::new("bash").arg(script).output().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    })
    .clone()
}

/// A "solver" in `dir` that does what cvc5 1.0.3 does at its time limit: abort.
pub fn dying_solver(dir: &std::path::Path) -> String {
    let solver = dir.join("cvc5");
    std::fs::write(&solver, "#!/bin/sh\nkill -ABRT $$\n").unwrap();
    let mut permissions = std::fs::metadata(&solver).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut permissions, 0o755);
    std::fs::set_permissions(&solver, permissions).unwrap();
    solver.to_str().unwrap().to_owned()
}
