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
use std::sync::Arc;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::engine::Batch;
use crate::error::LoadError;
use crate::questions::resolve_resource;
use crate::snapshot::Snapshot;
use crate::zenml::{Decider, Grantee, Prepared, Question, Resource, ResourceAs, ShareSet};

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

/// One row of a decision table: a ZenML question and the decision it must get.
#[derive(Debug, Clone)]
pub struct Row {
    /// The table file.
    pub path: PathBuf,
    /// Line of the row's case in the file.
    pub line: usize,
    /// Column of the row's case.
    pub column: usize,
    /// The case's index in the file's `cases`.
    pub index: usize,
    /// The persona as written.
    pub persona: String,
    /// The resource string as written (the project may be a name).
    pub resource_text: String,
    /// The workspace's id.
    pub workspace_id: String,
    /// The workspace's name.
    pub workspace_name: String,
    /// The user's id (a UUID the directory does not know stands for an unknown user).
    pub user_id: String,
    /// The ZenML action.
    pub action: String,
    /// The resource, its project resolved to an id.
    pub resource: Resource,
    /// The shares in force: the file's and the case's.
    pub shares: Arc<ShareSet>,
    /// Whether the row expects an allow.
    pub allow: bool,
    /// The determining policies an allow must have, when the case says.
    pub reasons: Option<Vec<String>>,
}

impl Row {
    /// The ZenML question of this row.
    pub fn question(&self) -> Question<'_> {
        Question {
            workspace_id: &self.workspace_id,
            user_id: &self.user_id,
            action: &self.action,
            resource: &self.resource,
        }
    }

    /// `file:line` of the row's case.
    pub fn place(&self) -> String {
        format!("{}:{}", self.path.display(), self.line)
    }

    fn error(&self, message: String) -> LoadError {
        LoadError::at_line(&self.path, self.line, self.column, message)
    }
}

/// Runs every row of every table file under `paths`; a path with no table files, or a file
/// that cannot be read or parsed, is an error, not a pass.
pub fn run(snapshot: &Snapshot, paths: &[PathBuf]) -> Report {
    let (rows, errors) = rows(snapshot, paths);
    let mut report = Report {
        errors,
        ..Report::default()
    };
    let Some(decider) = snapshot.zenml() else {
        return report;
    };
    for row in &rows {
        match decide_both_ways(&decider, &row.shares, &row.question()) {
            Err(message) => report
                .errors
                .push(row.error(format!("cases[{}]: {message}", row.index))),
            Ok(answer) => match row_failure(snapshot, row, &answer) {
                None => report.passed += 1,
                Some(failure) => report.failures.push(format!("{}: {failure}", row.place())),
            },
        }
    }
    report
}

/// Every row of every table file under `paths`, in file and row order, and what could not be
/// read (a path with no table files, a file that cannot be read or parsed, a bad row).
pub fn rows(snapshot: &Snapshot, paths: &[PathBuf]) -> (Vec<Row>, Vec<LoadError>) {
    let (mut rows, mut errors) = (Vec::new(), Vec::new());
    for path in paths {
        if !path.exists() {
            errors.push(LoadError::file(path, "no such file or directory"));
        } else if table_files(std::slice::from_ref(path)).is_empty() {
            errors.push(LoadError::file(
                path,
                "no decision-table files (*.yaml, *.yml) found",
            ));
        }
    }
    for file in &table_files(paths) {
        file_rows(snapshot, file, &mut rows, &mut errors);
    }
    (rows, errors)
}

fn file_rows(snapshot: &Snapshot, path: &Path, out: &mut Vec<Row>, errors: &mut Vec<LoadError>) {
    let table = match read_table(path) {
        Ok(table) => table,
        Err(error) => return errors.push(error),
    };
    if snapshot.directory().is_none() {
        return errors.push(LoadError::file(
            path,
            "decision tables need a ZenML directory file (YAML)",
        ));
    }
    let error_at = |at: &serde_saphyr::Location, message: String| {
        LoadError::at_line(path, at.line() as usize, at.column() as usize, message)
    };
    let mut file_shares = ShareSet::default();
    for share in &table.shares {
        if let Err(message) = add_share(
            snapshot,
            &mut file_shares,
            &share.value,
            table.workspace.as_deref(),
        ) {
            errors.push(error_at(&share.referenced, format!("shares: {message}")));
        }
    }
    for (index, spanned) in table.cases.iter().enumerate() {
        let case = &spanned.value;
        let resolved = case
            .expectations()
            .and_then(|wanted| Ok((wanted, resolve_case(snapshot, &table, case, &file_shares)?)));
        let (wanted, resolved) = match resolved {
            Ok(resolved) => resolved,
            Err(message) => {
                errors.push(error_at(
                    &spanned.referenced,
                    format!("cases[{index}]: {message}"),
                ));
                continue;
            }
        };
        let shares = Arc::new(resolved.shares);
        for (action, expect) in wanted {
            out.push(Row {
                path: path.to_path_buf(),
                line: spanned.referenced.line() as usize,
                column: spanned.referenced.column() as usize,
                index,
                persona: case.persona.clone(),
                resource_text: case.resource.clone(),
                workspace_id: resolved.workspace_id.clone(),
                workspace_name: resolved.workspace_name.clone(),
                user_id: resolved.user_id.clone(),
                action,
                resource: resolved.resource.clone(),
                shares: Arc::clone(&shares),
                allow: expect == Expect::Allow,
                reasons: case.reasons.clone(),
            });
        }
    }
}

/// Reads and parses one table file; errors carry the file and, for YAML errors, the line.
fn read_table(path: &Path) -> Result<TableFile, LoadError> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| LoadError::file(path, format!("cannot read: {error}")))?;
    serde_saphyr::from_str(&text).map_err(|error| {
        let message = crate::directory::yaml_message(&error);
        match error.location() {
            Some(at) => LoadError::at_line(path, at.line() as usize, at.column() as usize, message),
            None => LoadError::file(path, message),
        }
    })
}

impl Case {
    /// The case's expected decisions: its `action` + `expect`, then its `allow` and `deny`
    /// lists.
    fn expectations(&self) -> Result<Vec<(String, Expect)>, String> {
        let mut rows: Vec<(String, Expect)> = Vec::new();
        match (&self.action, self.expect) {
            (Some(action), Some(expect)) => rows.push((action.clone(), expect)),
            (None, None) => {}
            _ => return Err("`action` and `expect` go together".into()),
        }
        rows.extend(self.allow.iter().map(|a| (a.clone(), Expect::Allow)));
        rows.extend(self.deny.iter().map(|a| (a.clone(), Expect::Deny)));
        if rows.is_empty() {
            return Err("give `action` + `expect`, or `allow` / `deny` lists".into());
        }
        Ok(rows)
    }
}

/// What a case's names resolve to in the directory.
struct Resolved {
    workspace_id: String,
    workspace_name: String,
    user_id: String,
    resource: Resource,
    /// The file's shares plus the case's own.
    shares: ShareSet,
}

fn resolve_case(
    snapshot: &Snapshot,
    table: &TableFile,
    case: &Case,
    file_shares: &ShareSet,
) -> Result<Resolved, String> {
    let directory = snapshot.directory().ok_or("no ZenML directory")?;
    let workspace_key = case.workspace.as_deref().or(table.workspace.as_deref());
    let workspace = workspace_key
        .and_then(|key| directory.find_workspace(key))
        .ok_or_else(|| {
            format!(
                "unknown or missing workspace `{}`",
                workspace_key.unwrap_or_default()
            )
        })?;
    let user_id = match directory.find_user(&case.persona) {
        Some(user) => user.named.id.clone(),
        None if uuid::Uuid::parse_str(&case.persona).is_ok() => case.persona.clone(),
        None => {
            return Err(format!(
                "unknown persona `{}` (a UUID stands for an unknown user)",
                case.persona
            ));
        }
    };
    let resource = resolve_resource(snapshot.directory(), &case.resource)?;
    let mut shares = file_shares.clone();
    for share in &case.shares {
        add_share(snapshot, &mut shares, share, workspace_key)
            .map_err(|message| format!("shares: {message}"))?;
    }
    Ok(Resolved {
        workspace_id: workspace.named.id.clone(),
        workspace_name: workspace.named.name.clone(),
        user_id,
        resource,
        shares,
    })
}

/// A row's answer: allowed, determining policies (sorted), errors.
type Answer = (bool, Vec<String>, Vec<String>);

/// Decides a question as the server does (the stand-in resource where exact) and as written (a
/// request-scoped resource); the two must agree, else it is an error of the sidecar.
fn decide_both_ways(
    decider: &Decider<'_>,
    shares: &ShareSet,
    question: &Question<'_>,
) -> Result<Answer, String> {
    let decide = |resource_as: ResourceAs| match decider.prepare(shares, question, resource_as) {
        Ok(Prepared::Denied(why)) => Ok((false, Vec::new(), vec![why])),
        Ok(Prepared::Request(request, alias)) => Ok(
            match decider.decide_prepared(&request, alias.as_deref(), &mut Batch::single()) {
                Ok(decision) => (decision.allowed, decision.reasons, decision.errors),
                Err(error) => (false, Vec::new(), vec![error.to_string()]),
            },
        ),
        Err(error) => Err(error.to_string()),
    };
    match (decide(ResourceAs::StandIn), decide(ResourceAs::Written)) {
        (Ok(served), Ok(written)) if served == written => Ok(served),
        (Ok(served), Ok(written)) => Err(format!(
            "{}: internal: the stand-in resource decided {served:?}, the request-scoped one {written:?}",
            question.action
        )),
        (Err(message), _) | (_, Err(message)) => Err(message),
    }
}

/// `None` when the row got what it expects, else the failure's description.
fn row_failure(snapshot: &Snapshot, row: &Row, (allowed, reasons, errors): &Answer) -> Option<String> {
    let expect = if row.allow { Expect::Allow } else { Expect::Deny };
    let got = if *allowed { Expect::Allow } else { Expect::Deny };
    let reasons_ok = match (&row.reasons, got) {
        (Some(expected), Expect::Allow) => {
            let mut expected = expected.clone();
            expected.sort();
            &expected == reasons
        }
        _ => true,
    };
    if got == expect && reasons_ok {
        return None;
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
        "{} {} {} in workspace {}: expected {}, got {} (determining: {determining})",
        row.persona,
        row.action,
        row.resource_text,
        row.workspace_name,
        expectation(expect),
        expectation(got),
    );
    if !reasons_ok {
        line.push_str(&format!(
            "; expected determining policies {:?}",
            row.reasons.clone().unwrap_or_default()
        ));
    }
    if !errors.is_empty() {
        line.push_str(&format!("; errors: {}", errors.join("; ")));
    }
    Some(line)
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

fn add_share(
    snapshot: &Snapshot,
    shares: &mut ShareSet,
    share: &ShareEntry,
    default_workspace: Option<&str>,
) -> Result<(), String> {
    let directory = snapshot.directory().ok_or("no ZenML directory")?;
    let resource = resolve_resource(snapshot.directory(), &share.resource)?;
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
