//! The reload guard: a valid policy set may still be a weaker one by accident. Before a reload
//! publishes a candidate snapshot, it must pass three checks against the active one:
//!
//! 1. **Required policies stay.** A policy (or template) annotated `@required` in the active
//!    set, e.g. `@required("deactivated accounts must always be denied")`, must still be in the
//!    candidate under the same id. Removing one takes two reloads on purpose: first drop the
//!    annotation, then the policy. The annotation guards against disappearance (a truncated or
//!    lost file), not against edits, which go through review and the decision tables.
//! 2. **No file is emptied.** A policy file that held policies and now holds none (while its
//!    policies are nowhere else) is what an editor crash or an interrupted, non-atomic copy
//!    leaves behind. Deleting the file is how to remove its policies on purpose.
//! 3. **The reload gate passes** (`--reload-gate`, optional): the decision tables are run against
//!    the candidate, and a failing row, or a table that cannot be run, refuses it.
//!
//! A refused candidate is handled like an invalid one: the active snapshot stays, and the
//! reasons go to the log and to `/v1/status` (`last_load_error`, `reloads.failed`).

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use crate::error::LoadError;
use crate::snapshot::Snapshot;

/// The annotation that marks a policy as one a reload may not drop.
pub const REQUIRED: &str = "required";

/// Why `candidate` may not replace `active`; empty when it may. `gate` are the decision-table
/// paths of `--reload-gate` (none: no gate).
pub fn check(active: &Snapshot, candidate: &Snapshot, gate: &[PathBuf]) -> Vec<LoadError> {
    let mut refusals = missing_required(active, candidate);
    refusals.extend(emptied_files(active, candidate, |path| path.is_file()));
    if !gate.is_empty() {
        refusals.extend(gate_failures(candidate, gate));
    }
    refusals
}

/// The active set's `@required` policies and templates: id → the annotation's value (the
/// reason; empty when written `@required` alone).
pub fn required(snapshot: &Snapshot) -> BTreeMap<String, String> {
    let policies = snapshot
        .engine
        .policies
        .policies()
        .filter_map(|p| Some((p.id().to_string(), p.annotation(REQUIRED)?.to_owned())));
    let templates = snapshot
        .engine
        .policies
        .templates()
        .filter_map(|t| Some((t.id().to_string(), t.annotation(REQUIRED)?.to_owned())));
    policies.chain(templates).collect()
}

/// Every policy and template id of a snapshot.
fn ids(snapshot: &Snapshot) -> HashSet<String> {
    snapshot
        .engine
        .policies
        .policies()
        .map(|p| p.id().to_string())
        .chain(snapshot.engine.policies.templates().map(|t| t.id().to_string()))
        .collect()
}

fn missing_required(active: &Snapshot, candidate: &Snapshot) -> Vec<LoadError> {
    let present = ids(candidate);
    required(active)
        .into_iter()
        .filter(|(id, _)| !present.contains(id))
        .map(|(id, reason)| {
            let why = if reason.is_empty() {
                String::new()
            } else {
                format!(" ({reason})")
            };
            let message = format!(
                "policy `{id}` is `@required`{why} but the new policies lack it; keeping revision `{}`; \
                 to remove it on purpose, first delete its `@required` annotation and let that reload, \
                 then delete the policy",
                active.revision
            );
            match active.engine.policy_sources.get(&id) {
                Some(source) => match source.line {
                    Some(line) => LoadError::at_line(&source.path, line, 1, message),
                    None => LoadError::file(&source.path, message),
                },
                None => LoadError::file(Path::new("policies"), message),
            }
        })
        .collect()
}

/// Files that held policies in `active` and hold none in `candidate`, though they still exist
/// (`exists`) and some of their policies are nowhere else.
fn emptied_files(active: &Snapshot, candidate: &Snapshot, exists: impl Fn(&Path) -> bool) -> Vec<LoadError> {
    let mut by_file: BTreeMap<&Path, Vec<&str>> = BTreeMap::new();
    for (id, source) in &active.engine.policy_sources {
        by_file.entry(source.path.as_path()).or_default().push(id);
    }
    let still_has: HashSet<&Path> = candidate
        .engine
        .policy_sources
        .values()
        .map(|source| source.path.as_path())
        .collect();
    let present = ids(candidate);
    by_file
        .into_iter()
        .filter(|(path, held)| {
            !still_has.contains(path) && held.iter().any(|id| !present.contains(*id)) && exists(path)
        })
        .map(|(path, mut held)| {
            held.sort_unstable();
            let names: Vec<String> = held.iter().map(|id| format!("`{id}`")).collect();
            LoadError::file(
                path,
                format!(
                    "policy file now holds no policies but held {} ({}); an emptied file is what an \
                     editor crash or an interrupted copy leaves, so keeping revision `{}`; to remove \
                     its policies on purpose, delete the file",
                    held.len(),
                    names.join(", "),
                    active.revision
                ),
            )
        })
        .collect()
}

fn gate_failures(candidate: &Snapshot, gate: &[PathBuf]) -> Vec<LoadError> {
    let report = crate::table::run(candidate, gate);
    if report.failures.is_empty() && report.errors.is_empty() {
        return Vec::new();
    }
    let place = gate
        .iter()
        .map(|path| format!("`{}`", path.display()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut refusals = vec![LoadError::file(
        Path::new("reload gate"),
        format!(
            "the decision tables {place} fail on the new policies ({} rows failed, {} passed, {} \
             errors); keeping the active policies",
            report.failures.len(),
            report.passed,
            report.errors.len()
        ),
    )];
    // The first failures say what broke; all of them would bury the status in rows.
    let listed: Vec<String> = report
        .errors
        .iter()
        .map(ToString::to_string)
        .chain(report.failures.iter().cloned())
        .collect();
    let more = listed.len().saturating_sub(GATE_LINES);
    refusals.extend(
        listed
            .into_iter()
            .take(GATE_LINES)
            .map(|line| LoadError::file(Path::new("reload gate"), line)),
    );
    if more > 0 {
        refusals.push(LoadError::file(
            Path::new("reload gate"),
            format!("{more} more; `zenml-authz test` lists them all"),
        ));
    }
    refusals
}

/// Failing rows and table errors listed in a refusal; the rest are counted.
const GATE_LINES: usize = 10;
