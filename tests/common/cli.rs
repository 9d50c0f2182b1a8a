//! The real command line, run once: what it printed and how it exited. Included by the CLI's
//! test binaries on its own (`#[path = "common/cli.rs"] mod cli;`), without the server helpers.
#![allow(dead_code, reason = "each test binary uses a different part")]

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
