//! Policy authoring on the command line: what `opa test`, `cerbos compile` and the `cedar` CLI
//! give their authors, in ZenML terms. One file per command:
//!
//! * [`authorize`]: one decision, in Cedar terms (`--principal`, `--context`, `--entities`) or in
//!   ZenML terms (`--user`, a resource string whose project may be a name), with the determining
//!   policies (`file:line` and their text) and the evaluation errors;
//! * [`who_can`]: every user, service account and team that may do an action on a resource;
//! * [`what_can`]: a user's bindings (direct and through teams) and, per workspace and project,
//!   resource type → allowed actions;
//! * [`fmt`]: Cedar's own formatter over `.cedar` files; a file whose comments it would lose is
//!   left alone;
//! * [`lint`]: `validate`'s warnings beyond Cedar's own: unused custom roles, teams without
//!   members, bindings that change no decision, policies naming entities the directory lacks;
//! * [`export`]: the entities, policies and schema the sidecar evaluates, as files for Cedar's
//!   own tools;
//! * [`zenml_projects`]: a ZenML server's projects next to the directory's projects of that
//!   workspace; `--write` copies ZenML's generated ids into the directory file, in place;
//! * [`verify`]: invariants proved for every possible organization (symbolic analysis, cvc5).
//! * [`impact`]: every what-can cell of every user and service account that an edit changes,
//!   against a base directory or git revision, with the determining policies before and after.
//!
//! Every command returns a [`CommandOutput`] (what to print, the exit code); `main` prints it.
//! A ZenML question is prepared by the same `zenml::Decider` as the server's and decided by the
//! one decision path, `Engine::decide`, so the CLI's answer is the sidecar's. Many questions
//! (a what-can grid, the binding lints, who-can) go through a [`crate::questions::Questioner`]: the
//! type-level questions of a scope are prepared once, and one principal's questions at a scope
//! share one set of request-scoped entities, so one `Batch` slices once for all of them.
//! Teams and roles are asked about through a synthetic active user who is a member of just
//! them. The role bindings, teams and custom roles, with their places in the file, are the
//! resolved directory's (`directory::Directory`): the directory file has one parser.

mod authorize;
mod export;
mod fmt;
mod impact;
mod lint;
mod symbolic;
mod verify;
mod what_can;
mod who_can;
mod zenml_projects;

pub use authorize::authorize;
pub use export::export;
pub use fmt::{fmt, format_cedar};
pub use impact::impact;
pub use lint::lint;
pub use verify::verify;
pub use what_can::what_can;
pub use who_can::who_can;
pub use zenml_projects::{Row, State, compare, zenml_projects};

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use crate::cli::exit;
use crate::directory::{BindingScope, Directory, User};
use crate::engine::Decision;
use crate::model::{ACTIONS, action_from_wire};
pub(crate) use crate::questions::{resolve_workspace, resolve_zenml_resource};
use crate::snapshot::{Snapshot, Sources};
use crate::store::{Location, ShareSnapshot, Shares};
use crate::table::describe_policy;
use crate::zenml::Decider;

/// What a command prints, and its exit code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CommandOutput {
    /// The answer.
    pub stdout: String,
    /// Errors.
    pub stderr: String,
    /// The exit code (`cli::exit`).
    pub code: i32,
}

// === impl CommandOutput ===

impl CommandOutput {
    /// Prints the output and returns its exit code.
    pub fn emit(self) -> i32 {
        print!("{}", self.stdout);
        eprint!("{}", self.stderr);
        self.code
    }

    /// An answer on stdout with `code`.
    fn answer(stdout: String, code: i32) -> Self {
        Self {
            stdout,
            stderr: String::new(),
            code,
        }
    }

    /// One error line and the error exit code.
    fn error(message: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
            code: exit::ERROR,
        }
    }
}

/// Loads the sources; invalid ones are an error output listing every problem.
fn load(sources: &Sources) -> Result<Snapshot, CommandOutput> {
    crate::snapshot::load(sources).map_err(|errors| {
        let mut stderr = String::new();
        for error in &errors {
            let _ = writeln!(stderr, "error: {error}");
        }
        let _ = writeln!(
            stderr,
            "error: the policy sources are invalid ({} error(s)); `zenml-authz validate` lists them",
            errors.len()
        );
        CommandOutput {
            stdout: String::new(),
            stderr,
            code: exit::ERROR,
        }
    })
}

/// Loads the sources and runs `command` on the snapshot; an error it returns is one error line.
fn on_snapshot(
    sources: &Sources,
    command: impl FnOnce(&Snapshot) -> Result<CommandOutput, String>,
) -> CommandOutput {
    match load(sources) {
        Ok(snapshot) => command(&snapshot).unwrap_or_else(CommandOutput::error),
        Err(output) => output,
    }
}

fn zenml_decider(snapshot: &Snapshot) -> Result<Decider<'_>, String> {
    snapshot.zenml().ok_or_else(|| {
        "this needs a ZenML directory file (YAML); the directory is plain Cedar entities JSON".to_owned()
    })
}

/// The shares stored by a running sidecar (`--shares-db`: a SQLite file or a PostgreSQL URL),
/// or none. A SQLite file that is not there is an error, not a new empty database.
fn open_shares(path: Option<&Path>) -> Result<Arc<ShareSnapshot>, String> {
    let location = match path.map(|path| Location::parse(path.as_os_str())) {
        None | Some(Location::Memory) => return Ok(Arc::default()),
        Some(location) => location,
    };
    if let Location::Sqlite(path) = &location
        && !path.is_file()
    {
        return Err(format!("share database `{}`: no such file", path.display()));
    }
    let failed = |error: crate::store::StoreError| format!("share database `{location}`: {error}");
    let store = location.open().map_err(failed)?;
    let shares = Shares::open(store).map_err(failed)?;
    Ok(shares.snapshot())
}

fn find_user<'d>(directory: &'d Directory, key: &str) -> Result<&'d User, String> {
    directory.find_user(key).ok_or_else(|| {
        format!("unknown user `{key}`: not a username, service-account name or id in the directory")
    })
}

fn resolve_action(action: &str) -> Result<&'static str, String> {
    action_from_wire(action)
        .ok_or_else(|| format!("unknown action `{action}` (one of {})", ACTIONS.join(", ")))
}

/// The verdict line of a decision: `ALLOW` or `DENY`.
fn verdict(allowed: bool) -> &'static str {
    if allowed { "ALLOW" } else { "DENY" }
}

/// The exit code of a decision.
fn decision_code(allowed: bool) -> i32 {
    if allowed { exit::ALLOW } else { exit::DENY }
}

/// The decision's lines: determining policies with their text, evaluation errors.
fn explain(snapshot: &Snapshot, decision: &Decision, out: &mut String) {
    if decision.reasons.is_empty() {
        let why = if decision.allowed {
            ""
        } else {
            " (no permit applies)"
        };
        let _ = writeln!(out, "determining policies: none{why}");
    } else {
        let _ = writeln!(out, "determining policies:");
        for id in &decision.reasons {
            let _ = writeln!(out, "  {}", describe_policy(snapshot, id));
            if let Some(source) = snapshot.engine.policy_sources.get(id) {
                for line in source.text.lines() {
                    let _ = writeln!(out, "    {line}");
                }
            }
        }
    }
    if decision.errors.is_empty() {
        let _ = writeln!(out, "errors: none");
    } else {
        let _ = writeln!(out, "errors:");
        for error in &decision.errors {
            let _ = writeln!(
                out,
                "  {}",
                error.split_whitespace().collect::<Vec<_>>().join(" ")
            );
        }
    }
}

/// `organization <name>`, `workspace <name>` or `project <name> (<workspace>)`.
fn describe_scope(directory: &Directory, scope: &BindingScope) -> String {
    match scope {
        BindingScope::Organization(_) => format!("organization {}", directory.organization.name),
        BindingScope::Workspace(id) => format!(
            "workspace {}",
            directory
                .workspaces
                .get(&**id)
                .map_or(&**id, |w| w.named.name.as_str())
        ),
        BindingScope::Project(id) => match directory.projects.get(&**id) {
            Some(project) => {
                let workspace = directory
                    .workspaces
                    .get(&project.workspace_id)
                    .map_or(project.workspace_id.as_str(), |w| w.named.name.as_str());
                format!("project {} ({workspace})", project.named.name)
            }
            None => format!("project {id}"),
        },
    }
}
