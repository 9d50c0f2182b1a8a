//! `zenml-authz impact --base <directory | git revision>`: every decision an edit of the
//! policies, schemas or directory changes, before it merges.
//!
//! Both sides are loaded like every command loads (all valid, or every error, said of which
//! side), then asked the `what-can` grid — the type-level questions (resource type × action)
//! of every workspace and project — for every user and service account of either directory,
//! through the same [`Questioner`] and `Engine::decide`. Teams count through their members.
//! A scope or principal only one side has is denied everything on the other (a new project,
//! a removed user). Each changed cell is reported with the determining policies before and
//! after.
//!
//! Principals that no policy can tell apart at a scope are asked once: a type-level question
//! does not depend on its principal except through the principal's entity, and a policy sees
//! that entity only through its uid (as a literal), the attributes it reads, and membership
//! tests (`in`) against entities it can reach from the request — the scope's organization,
//! workspace and project (and what their attributes name), the role groups of those scopes
//! (the custom-role groups of `context.permissions` among them) and the policies' literals.
//! So the principals are grouped at each scope by (named-by-a-literal uid, values of the read
//! attributes, ancestors among those entities) on each side, and one of each group asks for
//! all of them. Where the schema and a scope's entities are the same on both sides, a
//! principal whose facts are the same too is not asked when the policies are the same, and is
//! asked only the actions the differing policies' heads name when they are not.
//!
//! Then, symbolically (cvc5, [`super::symbolic::compare_policy_sets`]): in each request
//! environment of the current schema that an edited policy can match, whether the two policy
//! sets decide every request alike, for every entity store the schema allows, with an example
//! request and entities of each direction that differs, replayed on both sides. So an edit that
//! changes nothing for today's directory but would for tomorrow's is still caught.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use cedar_policy::{EntityUid, EvalResult};
use serde_json::{Value, json};

use super::symbolic::{self, Asked, Comparison, Equivalence, Example, Replay};
use super::{CommandOutput, zenml_decider};
use crate::cli::{ImpactArgs, ImpactFormat, exit};
use crate::directory::Directory;
use crate::engine::Decision;
use crate::error::LoadError;
use crate::model::uid;
use crate::questions::{GridScope, Questioner, Who};
use crate::snapshot::{Snapshot, Sources};
use crate::zenml::ShareSet;

/// `zenml-authz impact`: the decisions that differ between `--base` and the current sources.
pub fn impact(args: &ImpactArgs) -> CommandOutput {
    let current_sources = args.sources.sources();
    let base = match materialize_base(&args.base, &current_sources) {
        Ok(base) => base,
        Err(output) => return output,
    };
    let base_label = format!("base `{}`", args.base);
    let base_snapshot = crate::snapshot::load(&base.sources);
    let current_snapshot = crate::snapshot::load(&current_sources);
    let (base_snapshot, current_snapshot) = match (base_snapshot, current_snapshot) {
        (Ok(base_snapshot), Ok(current_snapshot)) => (base_snapshot, current_snapshot),
        (base_result, current_result) => {
            let mut stderr = String::new();
            if let Err(errors) = base_result {
                invalid_side(&mut stderr, &base_label, &errors, base.root.as_deref());
            }
            if let Err(errors) = current_result {
                invalid_side(&mut stderr, "current sources", &errors, None);
            }
            return CommandOutput {
                stdout: String::new(),
                stderr,
                code: exit::ERROR,
            };
        }
    };
    let started = Instant::now();
    let same_schema = schema_files(&base.sources.schemas) == schema_files(&current_sources.schemas);
    let report = match compare(&base_snapshot, &current_snapshot, same_schema) {
        Ok(report) => report,
        Err(message) => return CommandOutput::error(message),
    };
    tracing::debug!(elapsed_ms = started.elapsed().as_millis(), "impact compared");
    let symbolic = if args.no_symbolic {
        Symbolic::Skipped("--no-symbolic")
    } else {
        let config = symbolic::Config {
            time_limit: std::time::Duration::from_millis(args.time_limit_ms),
            jobs: usize::from(args.jobs.max(1)),
        };
        Symbolic::Run(symbolic::compare_policy_sets(
            &base_snapshot.engine.policies,
            &current_snapshot.engine.policies,
            &current_snapshot.engine.schema,
            &config,
        ))
    };
    let sides = Sides {
        base: &base_snapshot,
        current: &current_snapshot,
        base_root: base.root.as_deref(),
        base_name: &args.base,
        same_schema,
    };
    let stdout = match args.format {
        ImpactFormat::Markdown => render_markdown(&report, &symbolic, &sides, args.max_rows),
        ImpactFormat::Json => render_json(&report, &symbolic, &sides),
    };
    let code = if !report.changes.is_empty() || symbolic.differs() {
        exit::CHANGED
    } else if symbolic.unknown() {
        exit::UNKNOWN
    } else {
        exit::OK
    };
    CommandOutput::answer(stdout, code)
}

/// The symbolic half of the report.
enum Symbolic {
    /// Not run, and why.
    Skipped(&'static str),
    Run(Comparison),
}

impl Symbolic {
    fn differs(&self) -> bool {
        matches!(self, Self::Run(c) if c.asked.iter().any(|a| matches!(a.answer, Equivalence::Differs { .. })))
    }

    fn unknown(&self) -> bool {
        matches!(self, Self::Run(c) if c.asked.iter().any(|a| matches!(a.answer, Equivalence::Unknown(_))))
    }
}

// ---- the base --------------------------------------------------------------------------

/// The base's sources, and the temporary copy they were extracted into (a git revision).
struct BaseSources {
    sources: Sources,
    /// The temporary directory holding a git revision's files; removed on drop.
    root: Option<PathBuf>,
}

impl Drop for BaseSources {
    fn drop(&mut self) {
        if let Some(root) = &self.root {
            let _ = std::fs::remove_dir_all(root);
        }
    }
}

/// `--base`: an existing directory (the current relative source paths under it), else a git
/// revision of the repository the sources are in (its files extracted into a temporary
/// directory).
fn materialize_base(base: &str, current: &Sources) -> Result<BaseSources, CommandOutput> {
    let usage = |message: String| CommandOutput {
        stdout: String::new(),
        stderr: format!("error: {message}\n"),
        code: exit::USAGE,
    };
    let cwd = std::env::current_dir()
        .map_err(|error| CommandOutput::error(format!("current directory: {error}")))?;
    let paths = [&current.policies, &current.schemas, &current.directory];
    if Path::new(base).is_dir() {
        let mut relative = Vec::new();
        for path in paths {
            relative.push(relative_to(path, &cwd).ok_or_else(|| {
                usage(format!(
                    "`--base {base}` is a directory, but `{}` is not under the current directory: give the \
                     source paths relative to it",
                    path.display()
                ))
            })?);
        }
        let root = Path::new(base);
        return Ok(BaseSources {
            sources: Sources {
                policies: root.join(&relative[0]),
                schemas: root.join(&relative[1]),
                directory: root.join(&relative[2]),
            },
            root: None,
        });
    }
    let anchor = if current.policies.is_dir() {
        current.policies.clone()
    } else {
        current
            .policies
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    };
    let toplevel = git(&anchor, &["rev-parse", "--show-toplevel"]).map_err(|_| {
        usage(format!(
            "`--base {base}`: not a directory, and `{}` is not in a git repository to read a revision from",
            anchor.display()
        ))
    })?;
    let toplevel = PathBuf::from(String::from_utf8_lossy(&toplevel).trim());
    let commit = format!("{base}^{{commit}}");
    git(&toplevel, &["rev-parse", "--verify", "--quiet", &commit]).map_err(|_| {
        usage(format!(
            "`--base {base}`: neither a directory nor a revision of the git repository `{}`",
            toplevel.display()
        ))
    })?;
    let canonical_top = toplevel.canonicalize().unwrap_or_else(|_| toplevel.clone());
    let mut relative = Vec::new();
    for path in paths {
        let absolute = path
            .canonicalize()
            .or_else(|_| std::path::absolute(path))
            .map_err(|error| CommandOutput::error(format!("`{}`: {error}", path.display())))?;
        relative.push(relative_to(&absolute, &canonical_top).ok_or_else(|| {
            usage(format!(
                "`{}` is not in the git repository `{}`",
                path.display(),
                toplevel.display()
            ))
        })?);
    }
    let root = std::env::temp_dir().join(format!(
        "zenml-authz-impact-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    ));
    let materialized = BaseSources {
        sources: Sources {
            policies: root.join(&relative[0]),
            schemas: root.join(&relative[1]),
            directory: root.join(&relative[2]),
        },
        root: Some(root.clone()),
    };
    std::fs::create_dir_all(&root).map_err(|error| {
        CommandOutput::error(format!("temporary directory `{}`: {error}", root.display()))
    })?;
    // Only the paths the revision has: a missing one is the base's load error, said as such.
    let present: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().replace('\\', "/"))
        .filter(|p| git(&toplevel, &["cat-file", "-e", &format!("{base}:{p}")]).is_ok())
        .collect();
    if !present.is_empty() {
        extract(&toplevel, base, &present, &root)
            .map_err(|message| CommandOutput::error(format!("base `{base}`: {message}")))?;
    }
    Ok(materialized)
}

/// `path` relative to `root` (a relative `path` is taken as relative to it already).
fn relative_to(path: &Path, root: &Path) -> Option<PathBuf> {
    if path.is_relative() {
        return Some(path.to_path_buf());
    }
    path.strip_prefix(root).ok().map(Path::to_path_buf)
}

/// Runs `git -C dir args`, its stdout on success.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|error| format!("cannot run git: {error}"))?;
    if output.status.success() {
        Ok(output.stdout)
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

/// `git archive <revision> -- <paths> | tar -x -C <into>`.
fn extract(toplevel: &Path, revision: &str, paths: &[String], into: &Path) -> Result<(), String> {
    let mut archive = Command::new("git")
        .arg("-C")
        .arg(toplevel)
        .args(["archive", "--format=tar", revision, "--"])
        .args(paths)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| format!("cannot run git: {error}"))?;
    let Some(tar_input) = archive.stdout.take() else {
        return Err("git archive: no output".into());
    };
    let untar = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(into)
        .stdin(tar_input)
        .output()
        .map_err(|error| format!("cannot run tar: {error}"))?;
    let archived = archive
        .wait_with_output()
        .map_err(|error| format!("git archive: {error}"))?;
    if !archived.status.success() {
        return Err(format!(
            "git archive: {}",
            String::from_utf8_lossy(&archived.stderr).trim()
        ));
    }
    if !untar.status.success() {
        return Err(format!("tar: {}", String::from_utf8_lossy(&untar.stderr).trim()));
    }
    Ok(())
}

/// The errors of one side's invalid sources, said of that side.
fn invalid_side(stderr: &mut String, side: &str, errors: &[LoadError], root: Option<&Path>) {
    for error in errors {
        let text = error.to_string();
        let text = match root {
            Some(root) => text.replace(&format!("{}/", root.display()), ""),
            None => text,
        };
        let _ = writeln!(stderr, "error: {side}: {text}");
    }
    let _ = writeln!(
        stderr,
        "error: the {side}'s policy sources are invalid ({} error(s)); `zenml-authz validate` lists them",
        errors.len()
    );
}

// ---- the comparison --------------------------------------------------------------------

/// What differs, cell by cell.
struct Report {
    principals: Vec<Principal>,
    scopes: Vec<Scope>,
    /// Sorted by principal, scope, then grid order.
    changes: Vec<Change>,
    /// Questions asked, both sides together.
    questions: usize,
    /// Groups of principals answered from a scope alike ([`Memo`]) instead of asked.
    reused: usize,
}

/// A user or service account of either directory.
struct Principal {
    id: String,
    name: String,
    service_account: bool,
}

/// A workspace or project of either directory.
struct Scope {
    id: String,
    /// `workspace` or `project`.
    kind: &'static str,
    name: String,
    /// The workspace's name (a project's workspace; a workspace's own).
    workspace: String,
}

/// One cell that differs.
struct Change {
    principal: usize,
    scope: usize,
    resource_type: &'static str,
    action: &'static str,
    /// Shared by every member of the group and every scope alike.
    before: std::sync::Arc<Decision>,
    after: std::sync::Arc<Decision>,
}

/// One side's facts about a principal, for grouping.
struct Facts {
    /// `None` when the side's directory lacks the principal; else its ancestors ([`Interned`]).
    ancestors: Option<Vec<u32>>,
    /// Named by a policy literal, or with an entity among its read attributes: asked alone.
    alone: bool,
    /// The values of the attributes some policy reads ([`Interned`]).
    attributes: u32,
}

/// Numbers for the principals' ancestors and read attribute values, shared by both sides, so
/// that grouping compares numbers (ten thousand principals at two hundred scopes).
#[derive(Default)]
struct Interned {
    ids: HashMap<EntityUid, u32>,
    /// Number → uid.
    uids: Vec<EntityUid>,
    /// Scope id -> the numbers of its role groups (`Role::"<scope-id>/<role>"`).
    role_groups: HashMap<String, Vec<u32>>,
    attributes: HashMap<String, u32>,
}

// === impl Interned ===

impl Interned {
    fn id(&mut self, uid: &EntityUid) -> u32 {
        if let Some(id) = self.ids.get(uid) {
            return *id;
        }
        let id = u32::try_from(self.ids.len()).unwrap_or(u32::MAX);
        self.ids.insert(uid.clone(), id);
        self.uids.push(uid.clone());
        if uid.type_name().basename() == "Role"
            && let Some((scope, _)) = uid.id().unescaped().split_once('/')
        {
            self.role_groups.entry(scope.to_owned()).or_default().push(id);
        }
        id
    }

    fn attributes(&mut self, text: String) -> u32 {
        let next = u32::try_from(self.attributes.len()).unwrap_or(u32::MAX);
        *self.attributes.entry(text).or_insert(next)
    }

    /// The numbers of the entities relevant at a scope: those reachable from it or from the
    /// literals, and the role groups of its scope ids.
    fn relevant(&self, relevant: &Relevant, literal_ids: &HashSet<u32>) -> HashSet<u32> {
        let mut ids: HashSet<u32> = literal_ids.clone();
        ids.extend(
            relevant
                .from_scope
                .iter()
                .filter_map(|uid| self.ids.get(uid).copied()),
        );
        for scope in &relevant.scope_ids {
            ids.extend(self.role_groups.get(scope).into_iter().flatten().copied());
        }
        ids
    }
}

/// Whether both sides have the same policies (ids and text).
fn same_policies(base: &Snapshot, current: &Snapshot) -> bool {
    let texts = |snapshot: &Snapshot| -> HashMap<String, String> {
        snapshot
            .engine
            .policies
            .policies()
            .map(|p| (p.id().to_string(), p.to_string()))
            .chain(
                snapshot
                    .engine
                    .policies
                    .templates()
                    .map(|t| (t.id().to_string(), t.to_string())),
            )
            .collect()
    };
    texts(base) == texts(current)
}

/// The schema files under `root` (or the file itself): (path relative to it, bytes), sorted.
fn schema_files(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files: Vec<(PathBuf, Vec<u8>)> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|entry| entry.file_type().is_file())
        .filter_map(|entry| {
            let relative = entry.path().strip_prefix(root).ok()?.to_path_buf();
            Some((relative, std::fs::read(entry.path()).ok()?))
        })
        .collect();
    files.sort();
    files
}

/// `name{attribute=value,…}<ancestor,…>;` of a stored entity (attributes `keep` says, sorted;
/// ancestors sorted), values and uids as `value` and `uid` write them; `name;` when not stored.
fn write_entity(
    out: &mut String,
    snapshot: &Snapshot,
    entity_uid: &EntityUid,
    name: &str,
    keep: impl Fn(&str) -> bool,
    value: impl Fn(&EvalResult) -> String,
    uid: impl Fn(&EntityUid) -> String,
) {
    out.push_str(name);
    if let Some(entity) = snapshot.engine.entities.get(entity_uid) {
        let mut attributes: Vec<String> = entity
            .attrs()
            .filter(|(attribute, _)| keep(attribute))
            .map(|(attribute, found)| match found {
                Ok(found) => format!("{attribute}={}", value(&found)),
                Err(_) => format!("{attribute}=?"),
            })
            .collect();
        attributes.sort();
        let mut ancestors: Vec<String> = snapshot
            .engine
            .entities
            .ancestors(entity_uid)
            .map(|found| found.map(&uid).collect())
            .unwrap_or_default();
        ancestors.sort();
        let _ = write!(out, "{{{}}}<{}>", attributes.join(","), ancestors.join(","));
    }
    out.push(';');
}

/// What one scope's decisions read besides the principal, on one side: each entity reachable
/// from it (uid, attributes, ancestors) and the custom-role groups of its cells.
fn environment(snapshot: &Snapshot, reached: &HashSet<EntityUid>, scope_ids: &[String]) -> String {
    let mut out = String::new();
    let mut reached: Vec<&EntityUid> = reached.iter().collect();
    reached.sort();
    for uid in reached {
        write_entity(
            &mut out,
            snapshot,
            uid,
            &uid.to_string(),
            |_| true,
            |value| value.to_string(),
            ToString::to_string,
        );
    }
    if let Some(directory) = snapshot.directory()
        && !scope_ids.is_empty()
    {
        let mut cells: Vec<String> = directory
            .cell_roles
            .iter()
            .filter(|(cell, _)| {
                cell.split_once('/')
                    .is_some_and(|(scope, _)| scope_ids.iter().any(|id| id == scope))
            })
            .map(|(cell, groups)| format!("{cell}={}", groups.join(",")))
            .collect();
        cells.sort();
        out.push_str(&cells.join(";"));
    }
    out
}

/// The actions whose decisions the policies that differ between the sides (added, removed or
/// edited; both versions) can change, read from their action heads; `None`: any action.
fn changed_actions(base: &Snapshot, current: &Snapshot) -> Option<BTreeSet<&'static str>> {
    if base.engine.policies.templates().next().is_some()
        || current.engine.policies.templates().next().is_some()
    {
        return None;
    }
    let leaf = |entity: &Value| -> Option<&'static str> {
        let id = entity.get("id")?.as_str()?;
        crate::model::ACTIONS.iter().copied().find(|action| *action == id)
    };
    let mut actions = BTreeSet::new();
    for policy in symbolic::differing(&base.engine.policies, &current.engine.policies)
        .iter()
        .flatten()
    {
        let json = policy.to_json().ok();
        let head = &json.as_ref()?["action"];
        match head["op"].as_str()? {
            "==" => {
                actions.insert(leaf(&head["entity"])?);
            }
            "in" => {
                if let Some(entities) = head.get("entities").and_then(Value::as_array) {
                    for entity in entities {
                        actions.insert(leaf(entity)?);
                    }
                } else {
                    actions.insert(leaf(&head["entity"])?);
                }
            }
            _ => return None,
        }
    }
    Some(actions)
}

fn compare(base: &Snapshot, current: &Snapshot, same_schema: bool) -> Result<Report, String> {
    let same_policies = same_policies(base, current);
    let actions = if same_policies {
        None
    } else {
        changed_actions(base, current)
    };
    let base_decider = zenml_decider(base).map_err(|e| format!("base: {e}"))?;
    let current_decider = zenml_decider(current)?;
    let (base_dir, current_dir) = (base_decider.directory(), current_decider.directory());
    let principals = union_principals(base_dir, current_dir);
    let scopes = union_scopes(base_dir, current_dir);
    let literals: HashSet<EntityUid> = literals(base).into_iter().chain(literals(current)).collect();
    let read: BTreeSet<String> = read_attributes(base)
        .into_iter()
        .chain(read_attributes(current))
        .collect();
    let mut interned = Interned::default();
    let base_facts: Vec<Facts> = principals
        .iter()
        .map(|p| facts(base, &p.id, &literals, &read, &mut interned))
        .collect();
    let current_facts: Vec<Facts> = principals
        .iter()
        .map(|p| facts(current, &p.id, &literals, &read, &mut interned))
        .collect();
    let base_reach = reachable(base, literals.iter().cloned().collect());
    let current_reach = reachable(current, literals.iter().cloned().collect());
    let literal_ids = |reach: &HashSet<EntityUid>| -> HashSet<u32> {
        reach
            .iter()
            .filter_map(|uid| interned.ids.get(uid).copied())
            .collect()
    };
    let (base_literal_ids, current_literal_ids) = (literal_ids(&base_reach), literal_ids(&current_reach));
    // Same policies, schema and literal entities: at a scope whose environment is the same too,
    // principals whose facts are the same on both sides decide alike (and are not asked).
    let same_data =
        same_schema && environment(base, &base_reach, &[]) == environment(current, &current_reach, &[]);
    let edited = if same_policies {
        None
    } else {
        edited_policies(base, current, &mut interned)?
    };
    let edited = &edited;
    let memo = std::sync::Mutex::new(Memo::default());
    let mut literal_list: Vec<&EntityUid> = literals.iter().collect();
    literal_list.sort();
    let rules = Rules {
        same_data,
        same_policies,
        actions: actions.as_ref(),
        read: &read,
        literals: &literal_list,
        memo: &memo,
        edited: edited.as_ref(),
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(scopes.len())
        .max(1);
    let (principals_ref, scopes_ref) = (&principals, &scopes);
    let (base_facts, current_facts) = (&base_facts, &current_facts);
    let (base_literal_ids, current_literal_ids) = (&base_literal_ids, &current_literal_ids);
    let interned = &interned;
    let results: Vec<Result<(Vec<Change>, usize), String>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let shares = ShareSet::default();
                    let edited_questioners: Vec<Option<Questioner<'_>>> = [base, current]
                        .iter()
                        .enumerate()
                        .map(|(side, snapshot)| {
                            let engine = &edited.as_ref()?.engines[side];
                            let view = snapshot.zenml.as_ref()?;
                            Some(Questioner::new(crate::zenml::Decider::new(engine, view), &shares))
                        })
                        .collect();
                    let [base_edited, current_edited]: [Option<Questioner<'_>>; 2] = edited_questioners
                        .try_into()
                        .map_err(|_| "internal: two sides".to_owned())?;
                    let sides = [
                        Side {
                            questioner: Questioner::new(base_decider, &shares),
                            edited: base_edited,
                            snapshot: base,
                            directory: base_dir,
                            facts: base_facts,
                            literal_ids: base_literal_ids,
                        },
                        Side {
                            questioner: Questioner::new(current_decider, &shares),
                            edited: current_edited,
                            snapshot: current,
                            directory: current_dir,
                            facts: current_facts,
                            literal_ids: current_literal_ids,
                        },
                    ];
                    let mut changes = Vec::new();
                    let mut questions = 0;
                    for index in (t..scopes_ref.len()).step_by(threads) {
                        questions += compare_scope(
                            &sides,
                            principals_ref,
                            &scopes_ref[index],
                            index,
                            rules,
                            interned,
                            &mut changes,
                        )?;
                    }
                    Ok((changes, questions))
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker
                    .join()
                    .unwrap_or_else(|_| Err("internal: a comparing thread failed".into()))
            })
            .collect()
    });
    let mut changes = Vec::new();
    let mut questions = 0;
    for result in results {
        let (found, asked) = result?;
        changes.extend(found);
        questions += asked;
    }
    let reused = memo.lock().map_or(0, |memo| memo.reused);
    changes.sort_by_key(|c| (c.principal, c.scope));
    Ok(Report {
        principals,
        scopes,
        changes,
        questions,
        reused,
    })
}

/// One side of the comparison, as a worker holds it.
/// What the two sides share, for skipping questions whose answers cannot differ.
#[derive(Clone, Copy)]
struct Rules<'a> {
    /// Same schema, and the same entities reachable from the policies' literals.
    same_data: bool,
    same_policies: bool,
    /// The actions the differing policies can change (`None`: any).
    actions: Option<&'a BTreeSet<&'static str>>,
    /// The attributes some policy reads.
    read: &'a BTreeSet<String>,
    /// The entity literals of both sides' policies, sorted.
    literals: &'a [&'a EntityUid],
    /// The answers found so far, for scopes alike.
    memo: &'a std::sync::Mutex<Memo>,
    /// The edited policies, when the policies differ (and there are no templates).
    edited: Option<&'a Edited>,
}

/// One side of the comparison, as a worker holds it.
struct Side<'a> {
    questioner: Questioner<'a>,
    /// Over this side's versions of the edited policies only, when the policies differ: a
    /// cell where none of them applies on either side is decided alike ([`Edited`]).
    edited: Option<Questioner<'a>>,
    snapshot: &'a Snapshot,
    directory: &'a Directory,
    /// Per principal.
    facts: &'a [Facts],
    /// The [`Interned`] numbers of the entities reachable from the literals.
    literal_ids: &'a HashSet<u32>,
}

/// The policies that differ between the sides (added, removed, or edited: both versions), and
/// what they can see of a principal besides its uid and read attributes: membership in the
/// entities reachable from a scope through the attributes they read, from their literals, and
/// (when they read the context) in the scope's role groups.
struct Edited {
    /// Each side's versions of them, with the side's schema and entities.
    engines: [crate::engine::Engine; 2],
    /// The attributes they read.
    read: BTreeSet<String>,
    /// Entities reachable from their literals (through any attribute), on the base side.
    literal_ids: HashSet<u32>,
    /// Whether they read `context`.
    context: bool,
}

/// Compares one scope for every principal: groups them, asks one of each group on both sides,
/// records the cells that differ for every member. Returns how many questions were asked.
fn compare_scope(
    sides: &[Side<'_>; 2],
    principals: &[Principal],
    scope: &Scope,
    scope_index: usize,
    rules: Rules<'_>,
    interned: &Interned,
    changes: &mut Vec<Change>,
) -> Result<usize, String> {
    // Per side: the grid scope (if the side has it) and the entities relevant to it.
    let views: Vec<Option<(GridScope<'_>, Relevant)>> = sides
        .iter()
        .map(|side| {
            grid_scope(side.directory, scope)
                .map(|grid| (grid, relevant(side.snapshot, side.directory, grid)))
        })
        .collect();
    let relevant_ids: Vec<Option<HashSet<u32>>> = sides
        .iter()
        .zip(&views)
        .map(|(side, view)| {
            view.as_ref()
                .map(|(_, relevant)| interned.relevant(relevant, side.literal_ids))
        })
        .collect();
    let same_environment = rules.same_data
        && match (&views[0], &views[1]) {
            (Some((_, base_relevant)), Some((_, current_relevant))) => {
                environment(
                    sides[0].snapshot,
                    &base_relevant.from_scope,
                    &base_relevant.scope_ids,
                ) == environment(
                    sides[1].snapshot,
                    &current_relevant.from_scope,
                    &current_relevant.scope_ids,
                )
            }
            _ => false,
        };
    // The scope up to its ids, on both sides: scopes alike this way decide alike for principals
    // whose facts are alike up to the same ids (their answers are reused, [`Memo`]).
    let canonical: Vec<Option<Canonical<'_>>> = sides
        .iter()
        .zip(&views)
        .map(|(side, view)| {
            view.as_ref()
                .map(|(_, relevant)| Canonical::new(side.snapshot, relevant, rules))
        })
        .collect();
    let lock = || {
        rules
            .memo
            .lock()
            .map_err(|_| "internal: a comparing thread failed".to_owned())
    };
    let scope_shape = {
        let mut memo = lock()?;
        (
            same_environment,
            canonical
                .iter()
                .map(|c| c.as_ref().map(|c| memo.intern(&c.environment)))
                .collect::<Vec<_>>(),
        )
    };
    // What the edited policies can see of a principal here (base side; with the same
    // environment on both sides, the same on the current side).
    let edited_ids: Option<HashSet<u32>> = match (rules.edited, &views[0]) {
        (Some(edited), Some((_, relevant))) if same_environment => {
            let mut ids = edited.literal_ids.clone();
            let roots: Vec<EntityUid> = relevant.roots.clone();
            ids.extend(
                reachable_through(sides[0].snapshot, roots, Some(&edited.read))
                    .iter()
                    .filter_map(|uid| interned.ids.get(uid).copied()),
            );
            if edited.context {
                for scope in &relevant.scope_ids {
                    ids.extend(interned.role_groups.get(scope).into_iter().flatten().copied());
                }
            }
            Some(ids)
        }
        _ => None,
    };
    let mut candidates_by_facts: HashMap<Vec<u32>, BTreeSet<(&'static str, &'static str)>> = HashMap::new();
    // A side's key: absent, or (asked alone as itself, read attributes, relevant ancestors).
    const ABSENT: u32 = u32::MAX;
    const SHARED: u32 = u32::MAX - 1;
    let mut groups: HashMap<[Vec<u32>; 2], Vec<usize>> = HashMap::new();
    let mut order: Vec<[Vec<u32>; 2]> = Vec::new();
    for index in 0..principals.len() {
        let mut parts = [Vec::new(), Vec::new()];
        for ((side, relevant), key) in sides.iter().zip(&relevant_ids).zip(&mut parts) {
            let facts = &side.facts[index];
            match (&facts.ancestors, relevant) {
                (Some(ancestors), Some(relevant)) => {
                    key.push(if facts.alone {
                        u32::try_from(index).unwrap_or(SHARED)
                    } else {
                        SHARED
                    });
                    key.push(facts.attributes);
                    key.extend(ancestors.iter().filter(|a| relevant.contains(a)));
                }
                _ => key.push(ABSENT),
            }
        }
        if rules.same_policies
            && same_environment
            && parts[0] == parts[1]
            && parts[0].first() != Some(&ABSENT)
        {
            // Same rules, same environment, same facts: the same decisions on both sides.
            continue;
        }
        let group = groups.entry(parts).or_insert_with_key(|key| {
            order.push(key.clone());
            Vec::new()
        });
        group.push(index);
    }
    let mut questions = 0;
    for key in order {
        let Some(members) = groups.get(&key) else { continue };
        let Some(&first) = members.first() else { continue };
        // The group's facts up to the scope's ids: answered at a scope alike, reused here.
        let mut shape_key = Vec::new();
        let mut shared = lock()?;
        for (part, canonical) in key.iter().zip(&canonical) {
            let mut canonical_part = part.clone();
            if let (Some(canonical), Some(&marker)) = (canonical, part.first())
                && marker != ABSENT
            {
                let ancestors = &mut canonical_part[2..];
                for ancestor in ancestors.iter_mut() {
                    *ancestor = shared.intern(&canonical.uid(&interned.uids[*ancestor as usize]));
                }
                ancestors.sort_unstable();
            }
            shape_key.push(canonical_part);
        }
        let shape_key = (scope_shape.clone(), shape_key);
        if let Some(found) = shared.answers.get(&shape_key) {
            for (cell, was, is) in found {
                record(changes, members, scope_index, *cell, was, is);
            }
            shared.reused += 1;
            continue;
        }
        drop(shared);
        // Same environment and facts, other policies: only the actions they name can change.
        let only = (same_environment && key[0] == key[1] && key[0].first() != Some(&ABSENT))
            .then_some(rules.actions)
            .flatten();
        // Same environment and facts: only cells where an edited policy applies on a side can
        // change, and whether one does depends on the facts the edited policies see.
        let candidates = match (&edited_ids, &views[0]) {
            (Some(edited_ids), Some((grid_scope, _)))
                if same_environment && key[0] == key[1] && key[0].first() != Some(&ABSENT) =>
            {
                let mut coarse: Vec<u32> = key[0][..2].to_vec();
                coarse.extend(key[0][2..].iter().filter(|a| edited_ids.contains(a)));
                let found = match candidates_by_facts.get(&coarse) {
                    Some(found) => found.clone(),
                    None => {
                        let who = Who::User(&principals[first].id);
                        let mut found = BTreeSet::new();
                        for side in sides {
                            let Some(questioner) = &side.edited else { continue };
                            let mut asking = questioner.asking(who, *grid_scope)?;
                            for question in 0..asking.len() {
                                let Some(cell) = asking.question(question) else {
                                    continue;
                                };
                                if only.is_some_and(|actions| !actions.contains(cell.1)) {
                                    continue;
                                }
                                questions += 1;
                                if !asking.decide(question)?.reasons.is_empty() {
                                    found.insert(cell);
                                }
                            }
                        }
                        candidates_by_facts.insert(coarse, found.clone());
                        found
                    }
                };
                if found.is_empty() {
                    lock()?.answers.insert(shape_key, Vec::new());
                    continue;
                }
                Some(found)
            }
            _ => None,
        };
        let mut grids: Vec<HashMap<(&'static str, &'static str), Decision>> = Vec::new();
        for (side, view) in sides.iter().zip(&views) {
            let mut grid = HashMap::new();
            if let (Some(_), Some((scope, _))) = (&side.facts[first].ancestors, view) {
                let mut asking = side.questioner.asking(Who::User(&principals[first].id), *scope)?;
                for question in 0..asking.len() {
                    let Some(cell) = asking.question(question) else {
                        continue;
                    };
                    if only.is_some_and(|actions| !actions.contains(cell.1)) {
                        continue;
                    }
                    if candidates.as_ref().is_some_and(|found| !found.contains(&cell)) {
                        continue;
                    }
                    grid.insert(cell, asking.decide(question)?);
                    questions += 1;
                }
            }
            grids.push(grid);
        }
        let (Some(before), Some(after)) = (grids.first(), grids.get(1)) else {
            continue;
        };
        let cells: BTreeSet<(usize, (&'static str, &'static str))> = before
            .keys()
            .chain(after.keys())
            .map(|cell| (grid_order(cell), *cell))
            .collect();
        let mut found = Vec::new();
        for (_, cell) in cells {
            let was = std::sync::Arc::new(before.get(&cell).cloned().unwrap_or_else(|| Decision::denied("")));
            let is = std::sync::Arc::new(after.get(&cell).cloned().unwrap_or_else(|| Decision::denied("")));
            if was.allowed == is.allowed {
                continue;
            }
            record(changes, members, scope_index, cell, &was, &is);
            found.push((cell, was, is));
        }
        lock()?.answers.insert(shape_key, found);
    }
    Ok(questions)
}

/// One changed cell for every member of a group.
fn record(
    changes: &mut Vec<Change>,
    members: &[usize],
    scope: usize,
    cell: (&'static str, &'static str),
    before: &std::sync::Arc<Decision>,
    after: &std::sync::Arc<Decision>,
) {
    changes.extend(members.iter().map(|&principal| Change {
        principal,
        scope,
        resource_type: cell.0,
        action: cell.1,
        before: before.clone(),
        after: after.clone(),
    }));
}

/// A scope's environment, and its principals' facts, in the scope's own terms: the
/// organization, workspace and project ids (and the role groups named after them) replaced by
/// their places. Two scopes with the same canonical environment on both sides differ only in
/// those ids; a policy sees ids only through equality and membership, and a literal that names
/// one is part of the environment (so it is not replaced away), so a group whose canonical facts
/// are the same at both decides the same cells alike at both.
#[derive(Default)]
struct Memo {
    /// Canonical strings (environments, entities) → numbers.
    strings: HashMap<String, u32>,
    /// (scope shape, canonical group key) → the cells that changed: (cell, before, after).
    #[allow(clippy::type_complexity, reason = "a key and its answers, read only here")]
    answers: HashMap<
        (MemoShape, Vec<Vec<u32>>),
        Vec<(
            (&'static str, &'static str),
            std::sync::Arc<Decision>,
            std::sync::Arc<Decision>,
        )>,
    >,
    /// Groups answered from another scope.
    reused: usize,
}

/// (whether the scope's environment is the same on both sides, each side's canonical
/// environment number or `None` when the side lacks the scope)
type MemoShape = (bool, Vec<Option<u32>>);

impl Memo {
    fn intern(&mut self, text: &str) -> u32 {
        if let Some(id) = self.strings.get(text) {
            return *id;
        }
        let id = u32::try_from(self.strings.len()).unwrap_or(u32::MAX);
        self.strings.insert(text.to_owned(), id);
        id
    }
}

/// One side's view of a scope with its ids replaced by their places (`§0` organization, `§1`
/// workspace, `§2` project).
struct Canonical<'a> {
    scope_ids: &'a [String],
    environment: String,
}

impl<'a> Canonical<'a> {
    fn new(snapshot: &Snapshot, relevant: &'a Relevant, rules: Rules<'_>) -> Self {
        let mut this = Self {
            scope_ids: &relevant.scope_ids,
            environment: String::new(),
        };
        let mut out = String::new();
        let mut reached: Vec<(String, &EntityUid)> = relevant
            .from_scope
            .iter()
            .map(|uid| (this.uid(uid), uid))
            .collect();
        reached.sort();
        for (name, uid) in reached {
            write_entity(
                &mut out,
                snapshot,
                uid,
                &name,
                |attribute| rules.read.contains(attribute),
                |value| this.value(value),
                |uid| this.uid(uid),
            );
        }
        // A literal naming this scope (or one of its groups) is not like one naming another.
        out.push_str("|literals:");
        for literal in rules.literals {
            out.push_str(&this.uid(literal));
            out.push(',');
        }
        if let Some(directory) = snapshot.directory() {
            let mut cells: Vec<String> = directory
                .cell_roles
                .iter()
                .filter(|(cell, _)| {
                    cell.split_once('/')
                        .is_some_and(|(scope, _)| this.scope_ids.iter().any(|id| id == scope))
                })
                .map(|(cell, groups)| {
                    let mut groups: Vec<String> = groups.iter().map(|g| this.id(g)).collect();
                    groups.sort();
                    format!("{}={}", this.id(cell), groups.join(","))
                })
                .collect();
            cells.sort();
            out.push_str("|cells:");
            out.push_str(&cells.join(";"));
        }
        this.environment = out;
        this
    }

    /// An id with a leading scope id (`<scope-id>` or `<scope-id>/…`) replaced by its place.
    fn id(&self, id: &str) -> String {
        for (place, scope) in self.scope_ids.iter().enumerate() {
            if id == scope {
                return format!("§{place}");
            }
            if let Some(rest) = id.strip_prefix(scope.as_str())
                && rest.starts_with('/')
            {
                return format!("§{place}{rest}");
            }
        }
        format!("={id}")
    }

    fn uid(&self, uid: &EntityUid) -> String {
        format!("{}::{}", uid.type_name(), self.id(uid.id().unescaped()))
    }

    fn value(&self, value: &EvalResult) -> String {
        match value {
            EvalResult::EntityUid(uid) => self.uid(uid),
            EvalResult::Set(set) => {
                let mut items: Vec<String> = set.iter().map(|item| self.value(item)).collect();
                items.sort();
                format!("[{}]", items.join(","))
            }
            EvalResult::Record(record) => {
                let items: Vec<String> = record
                    .iter()
                    .map(|(name, item)| format!("{name}:{}", self.value(item)))
                    .collect();
                format!("{{{}}}", items.join(","))
            }
            other => other.to_string(),
        }
    }
}

/// A cell's place in the what-can grid: project first, then the model's type and action order.
fn grid_order((resource_type, action): &(&str, &str)) -> usize {
    let row = if *resource_type == crate::model::PROJECT.wire {
        0
    } else {
        1 + crate::model::RESOURCE_TYPES
            .iter()
            .position(|t| t.wire == *resource_type)
            .unwrap_or(usize::MAX / 1024)
    };
    let column = crate::model::ACTIONS
        .iter()
        .position(|a| a == action)
        .unwrap_or(crate::model::ACTIONS.len());
    row * 64 + column
}

/// What a scope reaches on one side: the entities a policy can test a principal's membership
/// in there, besides the literals' (their numbers: [`Interned::relevant`]).
struct Relevant {
    /// The scope's organization, workspace and project.
    roots: Vec<EntityUid>,
    /// Reachable from the scope: its organization, workspace and project and what they name.
    from_scope: HashSet<EntityUid>,
    /// Scope ids whose role groups (`Role::"<scope-id>/<role>"`, custom ones too) count.
    scope_ids: Vec<String>,
}

fn relevant(snapshot: &Snapshot, directory: &Directory, scope: GridScope<'_>) -> Relevant {
    let mut scope_ids = vec![directory.organization.id.clone()];
    let mut roots = vec![uid("Organization", &directory.organization.id)];
    match scope {
        GridScope::Workspace(workspace) => {
            scope_ids.push(workspace.named.id.clone());
            roots.push(uid("Workspace", &workspace.named.id));
        }
        GridScope::Project(project) => {
            scope_ids.push(project.workspace_id.clone());
            scope_ids.push(project.named.id.clone());
            roots.push(uid("Workspace", &project.workspace_id));
            roots.push(uid("Project", &project.named.id));
        }
    }
    Relevant {
        from_scope: reachable(snapshot, roots.clone()),
        roots,
        scope_ids,
    }
}

/// The policies that differ between the sides as an [`Edited`]; `None` with templates (a
/// linked policy's text is its template's).
fn edited_policies(
    base: &Snapshot,
    current: &Snapshot,
    interned: &mut Interned,
) -> Result<Option<Edited>, String> {
    let (before, after) = (&base.engine.policies, &current.engine.policies);
    if before.templates().next().is_some() || after.templates().next().is_some() {
        return Ok(None);
    }
    let sides = symbolic::differing(before, after);
    let mut read = BTreeSet::new();
    let mut literals = Vec::new();
    let mut context = false;
    for policy in sides.iter().flatten() {
        let json = policy.to_json().map_err(|error| format!("internal: {error}"))?;
        read.extend(read_attributes_of(&json));
        crate::policy::collect_entity_refs(&json, &mut literals);
        context |= json.to_string().contains(r#""Var":"context""#);
    }
    let literal_ids = reachable(base, literals)
        .iter()
        .map(|uid| interned.id(uid))
        .collect();
    let engine = |snapshot: &Snapshot, policies: &[cedar_policy::Policy]| {
        let set = cedar_policy::PolicySet::from_policies(policies.iter().cloned())
            .map_err(|error| format!("internal: {error}"))?;
        snapshot.engine.with_policies(set)
    };
    Ok(Some(Edited {
        engines: [engine(base, &sides[0])?, engine(current, &sides[1])?],
        read,
        literal_ids,
        context,
    }))
}

/// `roots` and every stored entity their attributes name, transitively.
fn reachable(snapshot: &Snapshot, roots: Vec<EntityUid>) -> HashSet<EntityUid> {
    reachable_through(snapshot, roots, None)
}

/// `roots` and every stored entity their attributes (only those named in `through`, when
/// given) name, transitively.
fn reachable_through(
    snapshot: &Snapshot,
    mut roots: Vec<EntityUid>,
    through: Option<&BTreeSet<String>>,
) -> HashSet<EntityUid> {
    let mut seen = HashSet::new();
    while let Some(next) = roots.pop() {
        if !seen.insert(next.clone()) {
            continue;
        }
        if let Some(entity) = snapshot.engine.entities.get(&next) {
            let mut found = Vec::new();
            for (name, value) in entity.attrs() {
                if through.is_some_and(|through| !through.contains(name)) {
                    continue;
                }
                if let Ok(value) = value {
                    entity_values(&value, &mut found);
                }
            }
            roots.extend(found.into_iter().filter(|uid| !seen.contains(uid)));
        }
    }
    seen
}

fn entity_values(value: &EvalResult, out: &mut Vec<EntityUid>) {
    match value {
        EvalResult::EntityUid(uid) => out.push(uid.clone()),
        EvalResult::Set(set) => set.iter().for_each(|item| entity_values(item, out)),
        EvalResult::Record(record) => record.iter().for_each(|(_, item)| entity_values(item, out)),
        _ => {}
    }
}

/// Every entity literal of the snapshot's policies.
fn literals(snapshot: &Snapshot) -> Vec<EntityUid> {
    let mut found = Vec::new();
    for policy in snapshot.engine.policies.policies() {
        if let Ok(json) = policy.to_json() {
            crate::policy::collect_entity_refs(&json, &mut found);
        }
    }
    found
}

/// Every attribute name a policy (as JSON) reads (`e.attr`, `e has attr`).
fn read_attributes_of(json: &Value) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    read_walk(json, &mut out);
    out
}

/// Every attribute name a policy of the snapshot reads (`e.attr`, `e has attr`).
fn read_attributes(snapshot: &Snapshot) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for policy in snapshot.engine.policies.policies() {
        if let Ok(json) = policy.to_json() {
            read_walk(&json, &mut out);
        }
    }
    for template in snapshot.engine.policies.templates() {
        if let Ok(json) = template.to_json() {
            read_walk(&json, &mut out);
        }
    }
    out
}

fn read_walk(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(fields) => {
            for (key, nested) in fields {
                if (key == "." || key == "has")
                    && let Some(attr) = nested.get("attr").and_then(Value::as_str)
                {
                    out.insert(attr.to_owned());
                }
                read_walk(nested, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|item| read_walk(item, out)),
        _ => {}
    }
}

fn facts(
    snapshot: &Snapshot,
    id: &str,
    literals: &HashSet<EntityUid>,
    read: &BTreeSet<String>,
    interned: &mut Interned,
) -> Facts {
    let principal = uid("User", id);
    let in_directory = snapshot.directory().is_some_and(|d| d.users.contains_key(id));
    let Some(entity) = snapshot.engine.entities.get(&principal).filter(|_| in_directory) else {
        return Facts {
            ancestors: None,
            alone: false,
            attributes: 0,
        };
    };
    let mut alone = literals.contains(&principal);
    let mut attributes = String::new();
    for name in read {
        match entity.attr(name) {
            Some(Ok(value)) => {
                let mut found = Vec::new();
                entity_values(&value, &mut found);
                alone |= !found.is_empty();
                let _ = write!(attributes, "{name}={value};");
            }
            Some(Err(_)) => alone = true,
            None => {}
        }
    }
    let mut ancestors: Vec<u32> = snapshot
        .engine
        .entities
        .ancestors(&principal)
        .map(|found| found.map(|uid| interned.id(uid)).collect())
        .unwrap_or_default();
    ancestors.sort_unstable();
    Facts {
        ancestors: Some(ancestors),
        alone,
        attributes: interned.attributes(attributes),
    }
}

fn union_principals(base: &Directory, current: &Directory) -> Vec<Principal> {
    let mut by_id: HashMap<&str, Principal> = HashMap::new();
    for user in base.users.values().chain(current.users.values()) {
        by_id.insert(
            &user.named.id,
            Principal {
                id: user.named.id.clone(),
                name: user.named.name.clone(),
                service_account: user.is_service_account,
            },
        );
    }
    let mut principals: Vec<Principal> = by_id.into_values().collect();
    principals.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    principals
}

fn union_scopes(base: &Directory, current: &Directory) -> Vec<Scope> {
    let mut by_id: HashMap<String, Scope> = HashMap::new();
    for directory in [base, current] {
        let workspace_name = |id: &str| {
            directory
                .workspaces
                .get(id)
                .map_or_else(|| id.to_owned(), |w| w.named.name.clone())
        };
        for workspace in directory.workspaces.values() {
            by_id.insert(
                workspace.named.id.clone(),
                Scope {
                    id: workspace.named.id.clone(),
                    kind: "workspace",
                    name: workspace.named.name.clone(),
                    workspace: workspace.named.name.clone(),
                },
            );
        }
        for project in directory.projects.values() {
            by_id.insert(
                project.named.id.clone(),
                Scope {
                    id: project.named.id.clone(),
                    kind: "project",
                    name: project.named.name.clone(),
                    workspace: workspace_name(&project.workspace_id),
                },
            );
        }
    }
    let mut scopes: Vec<Scope> = by_id.into_values().collect();
    scopes.sort_by(|a, b| {
        (&a.workspace, a.kind != "workspace", &a.name, &a.id).cmp(&(
            &b.workspace,
            b.kind != "workspace",
            &b.name,
            &b.id,
        ))
    });
    scopes
}

fn grid_scope<'d>(directory: &'d Directory, scope: &Scope) -> Option<GridScope<'d>> {
    match scope.kind {
        "workspace" => directory.workspaces.get(&scope.id).map(GridScope::Workspace),
        _ => directory.projects.get(&scope.id).map(GridScope::Project),
    }
}

// ---- rendering -------------------------------------------------------------------------

/// The two snapshots, to name determining policies by file and line.
struct Sides<'a> {
    base: &'a Snapshot,
    current: &'a Snapshot,
    /// A git revision's temporary copy: removed from the base's file names.
    base_root: Option<&'a Path>,
    base_name: &'a str,
    /// Whether the schema files are the same on both sides.
    same_schema: bool,
}

impl Sides<'_> {
    /// `(id, file, line)` of a determining policy of one side.
    fn policy(&self, before: bool, id: &str) -> (String, Option<String>, Option<usize>) {
        let snapshot = if before { self.base } else { self.current };
        match snapshot.engine.policy_sources.get(id) {
            Some(source) => {
                let path = match (before, self.base_root) {
                    (true, Some(root)) => source.path.strip_prefix(root).unwrap_or(&source.path),
                    _ => source.path.as_path(),
                };
                (id.to_owned(), Some(path.display().to_string()), source.line)
            }
            None => (id.to_owned(), None, None),
        }
    }

    fn describe(&self, before: bool, decision: &Decision) -> String {
        if decision.reasons.is_empty() {
            return if decision.allowed {
                "allowed".into()
            } else {
                "no permit applies".into()
            };
        }
        decision
            .reasons
            .iter()
            .map(|id| match self.policy(before, id) {
                (id, Some(file), Some(line)) => format!("{id} ({file}:{line})"),
                (id, Some(file), None) => format!("{id} ({file})"),
                (id, None, _) => id,
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn json(&self, before: bool, decision: &Decision) -> Value {
        let policies: Vec<Value> = decision
            .reasons
            .iter()
            .map(|id| {
                let (id, file, line) = self.policy(before, id);
                json!({"id": id, "file": file, "line": line})
            })
            .collect();
        json!({
            "decision": if decision.allowed { "allow" } else { "deny" },
            "policies": policies,
        })
    }
}

fn direction(change: &Change) -> &'static str {
    if change.after.allowed {
        "deny → allow"
    } else {
        "allow → deny"
    }
}

fn principal_label(principal: &Principal) -> String {
    let kind = if principal.service_account {
        "service account"
    } else {
        "user"
    };
    format!("{} ({kind})", principal.name)
}

fn scope_label(scope: &Scope) -> String {
    match scope.kind {
        "workspace" => format!("workspace {}", scope.name),
        _ => format!("project {} ({})", scope.name, scope.workspace),
    }
}

/// The summary line's counts.
fn counts(report: &Report) -> (usize, usize, usize, usize) {
    let allowed = report.changes.iter().filter(|c| c.after.allowed).count();
    let principals: HashSet<usize> = report.changes.iter().map(|c| c.principal).collect();
    let scopes: HashSet<usize> = report.changes.iter().map(|c| c.scope).collect();
    (
        allowed,
        report.changes.len() - allowed,
        principals.len(),
        scopes.len(),
    )
}

fn render_markdown(report: &Report, symbolic: &Symbolic, sides: &Sides<'_>, max_rows: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### Policy impact: `{}` → current sources\n",
        sides.base_name
    );
    let asked = format!(
        "{} users and service accounts × {} workspaces and projects, {} questions, {} answered from a scope alike",
        report.principals.len(),
        report.scopes.len(),
        report.questions,
        plural(report.reused, "group")
    );
    let _ = writeln!(out, "#### In this directory (its users and service accounts)\n");
    if report.changes.is_empty() {
        let _ = writeln!(out, "**no decision changes** ({asked})\n");
        markdown_symbolic(&mut out, symbolic, sides);
        return out;
    }
    let (allowed, denied, principals, scopes) = counts(report);
    let _ = writeln!(
        out,
        "**{} decision changes**: {allowed} deny → allow, {denied} allow → deny, for {} at {} ({asked})\n",
        report.changes.len(),
        plural(principals, "principal"),
        plural(scopes, "scope"),
    );
    let mut rows = 0;
    let mut shown = 0;
    for group in report
        .changes
        .chunk_by(|a, b| a.principal == b.principal && a.scope == b.scope)
    {
        let Some(first) = group.first() else { continue };
        if rows >= max_rows {
            break;
        }
        let _ = writeln!(
            out,
            "##### {} · {}\n",
            principal_label(&report.principals[first.principal]),
            scope_label(&report.scopes[first.scope])
        );
        let _ = writeln!(out, "| change | resource type | action | before | after |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for change in group.iter().take(max_rows - rows) {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                direction(change),
                change.resource_type,
                change.action,
                sides.describe(true, &change.before),
                sides.describe(false, &change.after)
            );
            rows += 1;
            shown += 1;
        }
        out.push('\n');
    }
    if shown < report.changes.len() {
        let _ = writeln!(
            out,
            "… and {} more changes (`--format json` lists every one)\n",
            report.changes.len() - shown
        );
    }
    markdown_symbolic(&mut out, symbolic, sides);
    out
}

/// Environments whose examples the Markdown shows in full (JSON: every one).
const EXAMPLES_SHOWN: usize = 3;

/// The symbolic section: equivalent, or the environments that differ with examples, or unknown.
fn markdown_symbolic(out: &mut String, symbolic: &Symbolic, sides: &Sides<'_>) {
    let _ = writeln!(
        out,
        "#### For every organization the schema allows (symbolic, cvc5)\n"
    );
    let comparison = match symbolic {
        Symbolic::Skipped(why) => {
            let _ = writeln!(out, "not run ({why})");
            return;
        }
        Symbolic::Run(comparison) => comparison,
    };
    let asked = format!(
        "{} of {} request environments asked, those an edited policy can match; {:.1} s",
        comparison.asked.len(),
        comparison.environments,
        comparison.elapsed.as_secs_f64()
    );
    let differ: Vec<(&Asked, Option<&Example>, Option<&Example>)> = comparison
        .asked
        .iter()
        .filter_map(|asked| match &asked.answer {
            Equivalence::Differs {
                deny_to_allow,
                allow_to_deny,
            } => Some((asked, deny_to_allow.as_deref(), allow_to_deny.as_deref())),
            _ => None,
        })
        .collect();
    let unknown: Vec<(String, &String)> = comparison
        .asked
        .iter()
        .filter_map(|asked| match &asked.answer {
            Equivalence::Unknown(message) => Some((asked.label(), message)),
            _ => None,
        })
        .collect();
    if differ.is_empty() && unknown.is_empty() {
        let _ = writeln!(
            out,
            "**equivalent**: the two policy sets decide every request alike ({asked})"
        );
    } else if !differ.is_empty() {
        let _ = writeln!(
            out,
            "**the policy sets differ in {}** ({asked})\n",
            plural(differ.len(), "request environment")
        );
        // One row per (principal type, action): the resource types of each direction.
        let mut rows: BTreeMap<(&str, &str), [Vec<&str>; 2]> = BTreeMap::new();
        for (asked, up, down) in &differ {
            let row = rows.entry((&asked.principal, &asked.action)).or_default();
            for (column, example) in row.iter_mut().zip([up, down]) {
                if example.is_some() {
                    column.push(&asked.resource);
                }
            }
        }
        let _ = writeln!(out, "| principal · action | deny → allow on | allow → deny on |");
        let _ = writeln!(out, "|---|---|---|");
        for ((principal, action), columns) in &rows {
            let all = comparison
                .resource_types
                .get(&((*principal).to_owned(), (*action).to_owned()))
                .copied()
                .unwrap_or(0);
            let [up, down] = columns.clone().map(|types| match types.len() {
                0 => "—".to_owned(),
                n if n == all => format!("every resource type ({n})"),
                _ => types.join(", "),
            });
            let _ = writeln!(out, "| {principal} · {action} | {up} | {down} |");
        }
        out.push('\n');
        for (asked, up, down) in differ.iter().take(EXAMPLES_SHOWN) {
            for (direction, example) in [("deny → allow", up), ("allow → deny", down)] {
                if let Some(example) = example {
                    markdown_example(out, &asked.label(), direction, example, sides);
                }
            }
        }
        if differ.len() > EXAMPLES_SHOWN {
            let _ = writeln!(
                out,
                "… examples for {} more (`--format json` has every one)\n",
                plural(differ.len() - EXAMPLES_SHOWN, "environment")
            );
        }
    } else {
        let _ = writeln!(
            out,
            "**no difference found, but not proved equivalent** ({asked})\n"
        );
    }
    if !unknown.is_empty() {
        let _ = writeln!(
            out,
            "**unknown in {}** (the solver gave no answer: never read as equivalent):\n",
            plural(unknown.len(), "request environment")
        );
        for (environment, message) in unknown {
            let _ = writeln!(out, "- {environment}: {message}");
        }
        out.push('\n');
    }
    if !sides.same_schema {
        let _ = writeln!(
            out,
            "_The schemas differ: both policy sets were compared under the current schema._"
        );
    }
}

/// One example request, its entities and both sides' decisions, in a collapsed block.
fn markdown_example(
    out: &mut String,
    environment: &str,
    direction: &str,
    example: &Example,
    sides: &Sides<'_>,
) {
    let request = &example.env.request;
    let show = |uid: Option<&EntityUid>| uid.map(ToString::to_string).unwrap_or_else(|| "?".into());
    let _ = writeln!(
        out,
        "<details><summary>{environment}: {direction}, for example</summary>\n\n```text"
    );
    let _ = writeln!(out, "principal: {}", show(request.principal()));
    let _ = writeln!(out, "action:    {}", show(request.action()));
    let _ = writeln!(out, "resource:  {}", show(request.resource()));
    let context = request.context().map(ToString::to_string).unwrap_or_default();
    let _ = writeln!(out, "context:   {}", symbolic::one_line(&context));
    let roles = symbolic::principal_roles(&example.env);
    if !roles.is_empty() {
        let _ = writeln!(out, "the principal holds: {}", roles.join(", "));
    }
    let _ = writeln!(out, "entities:");
    for line in symbolic::entity_lines(&example.env.entities) {
        let _ = writeln!(out, "  {line}");
    }
    let _ = writeln!(out, "```\n");
    let _ = writeln!(
        out,
        "- before: {}\n- after: {}\n\n</details>\n",
        sides.describe(true, &decision(&example.before)),
        sides.describe(false, &decision(&example.after))
    );
}

/// A replayed decision as the engine's.
fn decision(replay: &Replay) -> Decision {
    Decision {
        allowed: replay.allowed,
        reasons: replay.reasons.clone(),
        errors: replay.errors.clone(),
    }
}

/// `1 scope`, `2 scopes`.
fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn render_json(report: &Report, symbolic: &Symbolic, sides: &Sides<'_>) -> String {
    let (allowed, denied, principals, scopes) = counts(report);
    let changes: Vec<Value> = report
        .changes
        .iter()
        .map(|change| {
            let principal = &report.principals[change.principal];
            let scope = &report.scopes[change.scope];
            json!({
                "principal": {
                    "id": principal.id,
                    "name": principal.name,
                    "kind": if principal.service_account { "service_account" } else { "user" },
                },
                "scope": {"kind": scope.kind, "id": scope.id, "name": scope.name, "workspace": scope.workspace},
                "resource_type": change.resource_type,
                "action": change.action,
                "change": if change.after.allowed { "deny_to_allow" } else { "allow_to_deny" },
                "before": sides.json(true, &change.before),
                "after": sides.json(false, &change.after),
            })
        })
        .collect();
    let value = json!({
        "base": sides.base_name,
        "changed": !report.changes.is_empty(),
        "summary": {
            "changes": report.changes.len(),
            "deny_to_allow": allowed,
            "allow_to_deny": denied,
            "principals_changed": principals,
            "scopes_changed": scopes,
            "principals": report.principals.len(),
            "scopes": report.scopes.len(),
            "questions": report.questions,
            "groups_reused": report.reused,
        },
        "changes": changes,
        "symbolic": json_symbolic(symbolic, sides),
    });
    let mut text = serde_json::to_string_pretty(&value).unwrap_or_default();
    text.push('\n');
    text
}

fn json_symbolic(symbolic: &Symbolic, sides: &Sides<'_>) -> Value {
    let comparison = match symbolic {
        Symbolic::Skipped(why) => return json!({"status": "not_run", "reason": why}),
        Symbolic::Run(comparison) => comparison,
    };
    let example = |direction: &str, environment: &str, example: &Example| {
        let request = &example.env.request;
        let show = |uid: Option<&EntityUid>| uid.map(ToString::to_string);
        json!({
            "environment": environment,
            "change": direction,
            "principal": show(request.principal()),
            "action": show(request.action()),
            "resource": show(request.resource()),
            "context": request.context().map(|context| symbolic::one_line(&context.to_string())),
            "principal_holds": symbolic::principal_roles(&example.env),
            "entities": example.env.entities.to_json_value().unwrap_or(Value::Null),
            "before": sides.json(true, &decision(&example.before)),
            "after": sides.json(false, &decision(&example.after)),
        })
    };
    let mut differences = Vec::new();
    let mut unknown = Vec::new();
    let mut equivalent = Vec::new();
    for asked in &comparison.asked {
        let environment = &asked.label();
        match &asked.answer {
            Equivalence::Equivalent => equivalent.push(json!(environment)),
            Equivalence::Unknown(message) => {
                unknown.push(json!({"environment": environment, "message": message}));
            }
            Equivalence::Differs {
                deny_to_allow,
                allow_to_deny,
            } => {
                if let Some(up) = deny_to_allow {
                    differences.push(example("deny_to_allow", environment, up));
                }
                if let Some(down) = allow_to_deny {
                    differences.push(example("allow_to_deny", environment, down));
                }
            }
        }
    }
    let status = if symbolic.differs() {
        "differs"
    } else if symbolic.unknown() {
        "unknown"
    } else {
        "equivalent"
    };
    json!({
        "status": status,
        "environments": comparison.environments,
        "asked": comparison.asked.len(),
        "millis": u64::try_from(comparison.elapsed.as_millis()).unwrap_or(u64::MAX),
        "same_schema": sides.same_schema,
        "equivalent": equivalent,
        "differences": differences,
        "unknown": unknown,
    })
}
