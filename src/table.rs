//! Decision tables: YAML files of expected decisions, run by `zenml-authz test` and by the test
//! suite.
//!
//! ```yaml
//! description: what this file covers
//! workspace: production              # default workspace of the cases (name or id)
//! shares:                            # optional shares, as ZenML would have stored them
//!   - {resource: "churn:pipeline/<uuid>", team: ml-eng, actions: [read]}
//! cases:
//!   # one row: persona, action, resource, expected decision
//!   - {persona: carol, action: read, resource: stack, expect: allow}
//!   # several rows at once: the actions allowed and the actions denied on one resource
//!   - persona: bob
//!     resource: "churn:pipeline/<uuid>"
//!     allow: [create, read]
//!     deny: [update, delete, share]
//!     reasons: [workspace-developer]   # optional: the determining policies of the allows
//! ```
//!
//! A persona is a username, a service-account name or an id; a UUID the directory does not
//! know stands for an unknown user (denied). In a resource string the project may be written
//! by name (`churn:pipeline/...`) instead of its UUID.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::engine::Batch;
use crate::error::LoadError;
use crate::snapshot::Snapshot;
use crate::zenml::{Grantee, Prepared, Question, Resource, ResourceAs, ShareSet};

/// The outcome of running decision tables.
#[derive(Debug, Default)]
pub struct Report {
    /// Rows that gave the expected decision.
    pub passed: usize,
    /// Rows that did not, each described on one line.
    pub failures: Vec<String>,
    /// Files or rows that could not be run (bad syntax, unknown persona).
    pub errors: Vec<LoadError>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TableFile {
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: Option<String>,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    shares: Vec<Spanned<ShareEntry>>,
    cases: Vec<Spanned<Case>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShareEntry {
    resource: String,
    /// The workspace the share was made in; default: the file's, or the case's.
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    team: Option<String>,
    actions: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Expect {
    Allow,
    Deny,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    persona: String,
    resource: String,
    #[serde(default)]
    workspace: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    expect: Option<Expect>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    reasons: Option<Vec<String>>,
    #[serde(default)]
    shares: Vec<ShareEntry>,
}

/// `*.yaml` / `*.yml` files under each path (or the path itself), sorted.
pub fn table_files(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        for entry in walkdir::WalkDir::new(path)
            .sort_by_file_name()
            .into_iter()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy();
            if entry.file_type().is_file() && (name.ends_with(".yaml") || name.ends_with(".yml")) {
                files.push(entry.path().to_path_buf());
            }
        }
    }
    files
}

/// Runs every row of every table file under `paths`; a path with no table files, or a file
/// that cannot be read or parsed, is an error, not a pass.
pub fn run(snapshot: &Snapshot, paths: &[PathBuf]) -> Report {
    let mut report = Report::default();
    for path in paths {
        if !path.exists() {
            report
                .errors
                .push(LoadError::file(path, "no such file or directory"));
        } else if table_files(std::slice::from_ref(path)).is_empty() {
            report.errors.push(LoadError::file(
                path,
                "no decision-table files (*.yaml, *.yml) found",
            ));
        }
    }
    for file in &table_files(paths) {
        run_file(snapshot, file, &mut report);
    }
    report
}

fn run_file(snapshot: &Snapshot, path: &Path, report: &mut Report) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) => {
            return report
                .errors
                .push(LoadError::file(path, format!("cannot read: {error}")));
        }
    };
    let table: TableFile = match serde_saphyr::from_str(&text) {
        Ok(table) => table,
        Err(error) => {
            let message = crate::directory::yaml_message(&error);
            return report.errors.push(match error.location() {
                Some(at) => LoadError::at_line(path, at.line() as usize, at.column() as usize, message),
                None => LoadError::file(path, message),
            });
        }
    };
    let Some(decider) = snapshot.zenml() else {
        return report.errors.push(LoadError::file(
            path,
            "decision tables need a ZenML directory file (YAML)",
        ));
    };
    let directory = decider.directory();
    let error_at =
        |line: usize, column: usize, message: String| LoadError::at_line(path, line, column, message);

    let mut file_shares = ShareSet::default();
    for share in &table.shares {
        if let Err(message) = add_share(
            snapshot,
            &mut file_shares,
            &share.value,
            table.workspace.as_deref(),
        ) {
            report.errors.push(error_at(
                share.referenced.line() as usize,
                share.referenced.column() as usize,
                format!("shares: {message}"),
            ));
        }
    }

    for (index, case) in table.cases.iter().enumerate() {
        let line = case.referenced.line() as usize;
        let column = case.referenced.column() as usize;
        let case = &case.value;
        let place = format!("{}:{line}", path.display());
        let mut rows: Vec<(String, Expect)> = Vec::new();
        match (&case.action, case.expect) {
            (Some(action), Some(expect)) => rows.push((action.clone(), expect)),
            (None, None) => {}
            _ => {
                report.errors.push(error_at(
                    line,
                    column,
                    format!("cases[{index}]: `action` and `expect` go together"),
                ));
                continue;
            }
        }
        rows.extend(case.allow.iter().map(|a| (a.clone(), Expect::Allow)));
        rows.extend(case.deny.iter().map(|a| (a.clone(), Expect::Deny)));
        if rows.is_empty() {
            report.errors.push(error_at(
                line,
                column,
                format!("cases[{index}]: give `action` + `expect`, or `allow` / `deny` lists"),
            ));
            continue;
        }
        let workspace_key = case.workspace.as_deref().or(table.workspace.as_deref());
        let Some(workspace) = workspace_key.and_then(|key| directory.find_workspace(key)) else {
            report.errors.push(error_at(
                line,
                column,
                format!(
                    "cases[{index}]: unknown or missing workspace `{}`",
                    workspace_key.unwrap_or_default()
                ),
            ));
            continue;
        };
        let user_id = match directory.find_user(&case.persona) {
            Some(user) => user.named.id.clone(),
            None if uuid::Uuid::parse_str(&case.persona).is_ok() => case.persona.clone(),
            None => {
                report.errors.push(error_at(
                    line,
                    column,
                    format!(
                        "cases[{index}]: unknown persona `{}` (a UUID stands for an unknown user)",
                        case.persona
                    ),
                ));
                continue;
            }
        };
        let resource = match resolve_resource(snapshot, &case.resource) {
            Ok(resource) => resource,
            Err(message) => {
                report
                    .errors
                    .push(error_at(line, column, format!("cases[{index}]: {message}")));
                continue;
            }
        };
        let mut shares = file_shares.clone();
        let mut bad_share = false;
        for share in &case.shares {
            if let Err(message) = add_share(snapshot, &mut shares, share, workspace_key) {
                report.errors.push(error_at(
                    line,
                    column,
                    format!("cases[{index}]: shares: {message}"),
                ));
                bad_share = true;
            }
        }
        if bad_share {
            continue;
        }
        for (action, expect) in rows {
            let question = Question {
                workspace_id: &workspace.named.id,
                user_id: &user_id,
                action: &action,
                resource: &resource,
            };
            // Decided as the server decides (stand-in resources where exact), and checked
            // against the request as written (a request-scoped resource): the two must agree.
            let decide = |resource_as: ResourceAs| match decider.prepare(&shares, &question, resource_as) {
                Ok(Prepared::Denied(why)) => Ok((false, Vec::new(), vec![why])),
                Ok(Prepared::Request(request, alias)) => Ok(
                    match decider.decide_prepared(&request, alias.as_deref(), &mut Batch::single()) {
                        Ok(decision) => (decision.allowed, decision.reasons, decision.errors),
                        Err(error) => (false, Vec::new(), vec![error.to_string()]),
                    },
                ),
                Err(error) => Err(error.to_string()),
            };
            let served = decide(ResourceAs::StandIn);
            let written = decide(ResourceAs::Written);
            let (allowed, reasons, errors) = match (served, written) {
                (Ok(served), Ok(written)) if served == written => served,
                (Ok(served), Ok(written)) => {
                    report.errors.push(error_at(
                        line,
                        column,
                        format!(
                            "cases[{index}]: {action}: internal: the stand-in resource decided {served:?}, \
                             the request-scoped one {written:?}"
                        ),
                    ));
                    continue;
                }
                (Err(message), _) | (_, Err(message)) => {
                    report
                        .errors
                        .push(error_at(line, column, format!("cases[{index}]: {message}")));
                    continue;
                }
            };
            let got = if allowed { Expect::Allow } else { Expect::Deny };
            let reasons_ok = match (&case.reasons, got) {
                (Some(expected), Expect::Allow) => {
                    let mut expected = expected.clone();
                    expected.sort();
                    expected == reasons
                }
                _ => true,
            };
            if got == expect && reasons_ok {
                report.passed += 1;
                continue;
            }
            let determining = if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons
                    .iter()
                    .map(|id| describe_policy(snapshot, id))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let mut line = format!(
                "{place}: {} {action} {} in workspace {}: expected {}, got {} (determining: {determining})",
                case.persona,
                case.resource,
                workspace.named.name,
                expectation(expect),
                expectation(got),
            );
            if !reasons_ok {
                line.push_str(&format!(
                    "; expected determining policies {:?}",
                    case.reasons.clone().unwrap_or_default()
                ));
            }
            if !errors.is_empty() {
                line.push_str(&format!("; errors: {}", errors.join("; ")));
            }
            report.failures.push(line);
        }
    }
}

/// `policy-id (file:line)`.
pub fn describe_policy(snapshot: &Snapshot, id: &str) -> String {
    match snapshot.engine.policy_sources.get(id) {
        Some(source) => format!(
            "{id} ({}{})",
            source.path.display(),
            source.line.map(|l| format!(":{l}")).unwrap_or_default()
        ),
        None => id.to_owned(),
    }
}

/// `allow` or `deny`, as a decision table writes it.
fn expectation(expect: Expect) -> &'static str {
    match expect {
        Expect::Allow => "allow",
        Expect::Deny => "deny",
    }
}

/// A resource string whose project part may be a project name from the directory.
pub(crate) fn resolve_resource(snapshot: &Snapshot, text: &str) -> Result<Resource, String> {
    let resolved = match (text.split_once(':'), snapshot.directory()) {
        (Some((project, rest)), Some(directory)) if uuid::Uuid::parse_str(project).is_err() => {
            let project = directory
                .find_project(project)
                .ok_or_else(|| format!("resource `{text}`: unknown project `{project}`"))?;
            format!("{}:{rest}", project.named.id)
        }
        _ => text.to_owned(),
    };
    Resource::parse(&resolved).map_err(|error| error.to_string())
}

fn add_share(
    snapshot: &Snapshot,
    shares: &mut ShareSet,
    share: &ShareEntry,
    default_workspace: Option<&str>,
) -> Result<(), String> {
    let directory = snapshot.directory().ok_or("no ZenML directory")?;
    let resource = resolve_resource(snapshot, &share.resource)?;
    if resource.id.is_none() {
        return Err(format!(
            "resource `{}`: only a single resource (with an id) can be shared",
            share.resource
        ));
    }
    let grantee = match (&share.user, &share.team) {
        (Some(user), None) => Grantee::User(
            directory
                .find_user(user)
                .ok_or(format!("unknown user `{user}`"))?
                .named
                .id
                .clone(),
        ),
        (None, Some(team)) => Grantee::Team(
            directory
                .find_team(team)
                .ok_or(format!("unknown team `{team}`"))?
                .named
                .id
                .clone(),
        ),
        _ => return Err("name exactly one of `user` or `team`".into()),
    };
    let mut actions = BTreeMap::new();
    for action in &share.actions {
        let known = crate::model::action_from_wire(action).ok_or(format!("unknown action `{action}`"))?;
        actions.insert(known.to_owned(), ());
    }
    let workspace_key = share
        .workspace
        .as_deref()
        .or(default_workspace)
        .unwrap_or_default();
    let workspace = directory
        .find_workspace(workspace_key)
        .ok_or(format!("unknown or missing workspace `{workspace_key}`"))?;
    shares.set(&workspace.named.id, &resource, grantee, actions.into_keys());
    Ok(())
}
