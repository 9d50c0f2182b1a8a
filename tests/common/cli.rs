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

/// Runs `scripts/<name>` (a setup script: installs what a test needs where it is missing) with
/// `env`; its stdout lines, panicking with its stderr when it fails.
pub fn setup(name: &str, env: &[(&str, &str)]) -> Vec<String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scripts")
        .join(name);
    let output = Command::new("bash")
        .arg(script)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The path of `cvc5`, installed by `scripts/ensure-cvc5.sh` where missing, once per test
/// binary (the script locks too, for test binaries running at once).
pub fn cvc5() -> String {
    static PATH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PATH.get_or_init(|| setup("ensure-cvc5.sh", &[]).remove(0))
        .clone()
}

/// Runs an end-to-end script (`tests/e2e/*.py`, which prints `N passed, M failed` last) to its
/// end and asserts that it passed with at least one check.
pub fn assert_e2e_passed(command: &mut Command) {
    let output = command.output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let last = stdout.lines().last().unwrap_or_default();
    assert!(
        last.ends_with(" passed, 0 failed") && !last.starts_with("0 "),
        "{stdout}"
    );
}

/// Asserts that a browser test kept a PNG screenshot `<step>.png` in `dir` for every step.
pub fn assert_screenshots(dir: &std::path::Path, steps: &[&str]) {
    for step in steps {
        let png = std::fs::read(dir.join(format!("{step}.png"))).unwrap();
        assert!(png.starts_with(b"\x89PNG"), "{step}");
    }
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
