//! Policy authoring on the command line: what `opa test`, `cerbos compile` and the `cedar` CLI
//! give their authors, in ZenML terms.
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
//!   members, bindings that change no decision, policies naming entities the directory lacks.
//!
//! Every command returns an [`Outcome`] (what to print, the exit code); `main` prints it. A
//! question goes through the same `zenml::prepare` and `engine::decide` as the server's, so the
//! CLI's answer is the sidecar's. A grid (what-can, the binding lints: hundreds of type-level
//! questions for one principal) evaluates the same prepared requests over one `engine::slice`
//! per scope instead of one per question; the slice is exact, so the decisions are the same.
//! Teams and roles are asked about through a synthetic active user who is a member of just
//! them.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Entity, EntityUid, PolicySet, Request, RestrictedExpression};
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use crate::cli::{AuthorizeArgs, FmtArgs, WhatCanArgs, WhoCanArgs, exit};
use crate::directory::{Directory, Project, User, Workspace, role_id};
use crate::engine::{AuthzRequest, Batch, Decision};
use crate::error::LoadError;
use crate::model::{ACTIONS, PROJECT, RESOURCE_TYPES, action_from_wire, uid};
use crate::snapshot::{Snapshot, Sources};
use crate::store::{ShareSnapshot, Shares, SqliteShareStore};
use crate::table::{describe_policy, resolve_resource};
use crate::zenml::{Decider, Prepared, Question, Resource, ResourceAs, ShareSet};

/// What a command prints, and its exit code.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The answer.
    pub stdout: String,
    /// Errors.
    pub stderr: String,
    /// The exit code (`cli::exit`).
    pub code: i32,
}

impl Outcome {
    fn error(message: impl std::fmt::Display) -> Self {
        Self {
            stdout: String::new(),
            stderr: format!("error: {message}\n"),
            code: exit::ERROR,
        }
    }

    /// Prints the outcome and returns its exit code.
    pub fn emit(self) -> i32 {
        print!("{}", self.stdout);
        eprint!("{}", self.stderr);
        self.code
    }
}

/// Loads the sources; invalid ones are an error outcome listing every problem.
fn load(sources: &Sources) -> Result<Snapshot, Outcome> {
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
        Outcome {
            stdout: String::new(),
            stderr,
            code: exit::ERROR,
        }
    })
}

fn zenml_decider(snapshot: &Snapshot) -> Result<Decider<'_>, String> {
    snapshot.zenml().ok_or_else(|| {
        "this needs a ZenML directory file (YAML); the directory is plain Cedar entities JSON".to_owned()
    })
}

fn zenml_directory(snapshot: &Snapshot) -> Result<&Directory, String> {
    zenml_decider(snapshot).map(|decider| decider.directory())
}

/// The shares stored by a running sidecar (`--shares-db`), or none.
fn open_shares(path: Option<&Path>) -> Result<Arc<ShareSnapshot>, String> {
    let Some(path) = path.filter(|path| path.as_os_str() != ":memory:") else {
        return Ok(Arc::default());
    };
    if !path.is_file() {
        return Err(format!("share database `{}`: no such file", path.display()));
    }
    let failed = |error: crate::store::StoreError| format!("share database `{}`: {error}", path.display());
    let store = SqliteShareStore::open(path).map_err(failed)?;
    let shares = Shares::open(Box::new(store)).map_err(failed)?;
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

/// A ZenML resource string whose project, or project id in `project/<id>`, may be a name.
fn resolve_zenml_resource(
    snapshot: &Snapshot,
    directory: &Directory,
    text: &str,
) -> Result<Resource, String> {
    let resolved = match text.strip_prefix("project/") {
        Some(key) if uuid::Uuid::parse_str(key).is_err() => match directory.find_project(key) {
            Some(project) => format!("project/{}", project.named.id),
            None => return Err(format!("resource `{text}`: unknown project `{key}`")),
        },
        _ => text.to_owned(),
    };
    let resource = resolve_resource(snapshot, &resolved)?;
    if resource.resource_type().is_none() {
        return Err(format!(
            "resource `{text}`: unknown resource type `{}` (one of {})",
            resource.type_name,
            RESOURCE_TYPES.map(|t| t.wire).join(", ")
        ));
    }
    Ok(resource)
}

/// The workspace named by `given`; else the workspace of the resource's project; else the
/// directory's only workspace.
fn resolve_workspace<'d>(
    directory: &'d Directory,
    given: Option<&str>,
    resource: Option<&Resource>,
) -> Result<&'d Workspace, String> {
    if let Some(key) = given {
        return directory
            .find_workspace(key)
            .ok_or_else(|| format!("unknown workspace `{key}`"));
    }
    let of_project = resource
        .and_then(Resource::scope_project)
        .and_then(|id| directory.projects.get(id))
        .and_then(|project| directory.workspaces.get(&project.workspace_id));
    if let Some(workspace) = of_project {
        return Ok(workspace);
    }
    let names: Vec<&str> = directory
        .workspaces
        .values()
        .map(|w| w.named.name.as_str())
        .collect();
    match names.len() {
        0 => Err("the directory has no workspaces".into()),
        1 => directory
            .workspaces
            .values()
            .next()
            .ok_or_else(|| "the directory has no workspaces".into()),
        n => Err(format!(
            "the directory has {n} workspaces ({}): name one with `--workspace`",
            names.join(", ")
        )),
    }
}

fn word(allowed: bool) -> &'static str {
    if allowed { "ALLOW" } else { "DENY" }
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

fn decision_code(allowed: bool) -> i32 {
    if allowed { exit::ALLOW } else { exit::DENY }
}

// ---- authorize ---------------------------------------------------------------------------

/// `zenml-authz authorize`: one decision, explained.
pub fn authorize(args: &AuthorizeArgs) -> Outcome {
    let snapshot = match load(&args.sources.sources()) {
        Ok(snapshot) => snapshot,
        Err(outcome) => return outcome,
    };
    let answer = match (&args.principal, &args.user) {
        (Some(principal), None) => authorize_cedar(&snapshot, args, principal),
        (None, Some(user)) => authorize_zenml(&snapshot, args, user),
        _ => Err("give exactly one of `--principal` (Cedar terms) or `--user` (ZenML terms)".into()),
    };
    answer.unwrap_or_else(Outcome::error)
}

/// A command-line JSON value: the text itself, or `@path` for a file's contents.
fn json_arg(flag: &str, text: Option<&str>) -> Result<Value, String> {
    let Some(text) = text else {
        return Ok(Value::Null);
    };
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|error| format!("`{flag}`: `{path}`: {error}"))?
        }
        None => text.to_owned(),
    };
    serde_json::from_str(&text).map_err(|error| format!("`{flag}`: not JSON: {error}"))
}

/// An entity reference from the command line: `Type::"id"`, or its JSON object forms.
fn reference_arg(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::String(text.to_owned()),
    }
}

fn authorize_cedar(snapshot: &Snapshot, args: &AuthorizeArgs, principal: &str) -> Result<Outcome, String> {
    if args.workspace.is_some() {
        return Err(
            "`--workspace` goes with `--user` (ZenML terms); a Cedar request names its entities itself"
                .into(),
        );
    }
    // A bare action name is the `ZenML` action of that name.
    let action = if args.action.contains("::") || args.action.trim_start().starts_with('{') {
        reference_arg(&args.action)
    } else {
        json!({"type": "ZenML::Action", "id": args.action})
    };
    let body = json!({
        "principal": reference_arg(principal),
        "action": action,
        "resource": reference_arg(&args.resource),
        "context": json_arg("--context", args.context.as_deref())?,
        "additional_entities": json_arg("--entities", args.entities.as_deref())?,
    });
    let (request, _) = crate::http::parse_request(snapshot, &body, &crate::config::Limits::default())?;
    let decision = snapshot
        .engine
        .decide(&request, &mut Batch::single())
        .map_err(|error| error.to_string())?;

    let mut out = String::new();
    let _ = writeln!(out, "{}", word(decision.allowed));
    let named = |uid: Option<&EntityUid>| uid.map(ToString::to_string).unwrap_or_default();
    let known = request
        .request
        .principal()
        .and_then(|p| snapshot.directory()?.users.get(p.id().unescaped()))
        .map(|user| format!(" ({})", user.named.name))
        .unwrap_or_default();
    let _ = writeln!(out, "principal: {}{known}", named(request.request.principal()));
    let _ = writeln!(out, "action: {}", named(request.request.action()));
    let _ = writeln!(out, "resource: {}", named(request.request.resource()));
    explain(snapshot, &decision, &mut out);
    // Entities the evaluation could not find are the usual reason for a surprising deny.
    let scoped: HashSet<EntityUid> = request.entities.iter().map(Entity::uid).collect();
    for (field, uid) in [
        ("principal", request.request.principal()),
        ("resource", request.request.resource()),
    ] {
        let Some(uid) = uid else { continue };
        if snapshot.engine.entities.get(uid).is_some() || scoped.contains(uid) {
            continue;
        }
        let mut note = format!("note: {field} `{uid}` is not in the directory");
        let id = uid.id().unescaped();
        if field == "principal"
            && let Some(user) = snapshot.directory().and_then(|d| d.find_user(id))
        {
            let _ = write!(note, " (`{id}` is `{}`)", uid_of("User", &user.named.id));
        } else if field == "resource" {
            note.push_str(" (pass it with `--entities`, or ask in ZenML terms with `--user`)");
        }
        let _ = writeln!(out, "{note}");
    }
    Ok(Outcome {
        stdout: out,
        stderr: String::new(),
        code: decision_code(decision.allowed),
    })
}

fn uid_of(type_name: &str, id: &str) -> String {
    uid(type_name, id).to_string()
}

fn authorize_zenml(snapshot: &Snapshot, args: &AuthorizeArgs, user_key: &str) -> Result<Outcome, String> {
    if args.context.is_some() || args.entities.is_some() {
        return Err(
            "`--context` and `--entities` go with `--principal` (Cedar terms); in ZenML terms they are built from the directory".into(),
        );
    }
    let directory = zenml_directory(snapshot)?;
    let user = find_user(directory, user_key)?;
    let action = resolve_action(&args.action)?;
    let resource = resolve_zenml_resource(snapshot, directory, &args.resource)?;
    let workspace = resolve_workspace(directory, args.workspace.as_deref(), Some(&resource))?;
    let shares = open_shares(args.shares_db.as_deref())?;
    let question = Question {
        workspace_id: &workspace.named.id,
        user_id: &user.named.id,
        action,
        resource: &resource,
    };
    let decider = zenml_decider(snapshot)?;
    let prepared = decider
        .prepare(&shares.set, &question, ResourceAs::Written)
        .map_err(|error| error.to_string())?;
    let kind = if user.is_service_account {
        "service account"
    } else {
        "user"
    };
    let mut out = String::new();
    let (decision, cedar) = match &prepared {
        Prepared::Request(request, alias) => (
            decider
                .decide_prepared(request, alias.as_deref(), &mut Batch::single())
                .map_err(|error| error.to_string())?,
            Some(&request.request),
        ),
        Prepared::Denied(why) => (
            Decision {
                allowed: false,
                reasons: Vec::new(),
                errors: vec![format!("denied before evaluation: {why}")],
            },
            None,
        ),
    };
    let _ = writeln!(out, "{}", word(decision.allowed));
    let _ = writeln!(
        out,
        "principal: {} ({kind} {})",
        uid_of("User", &user.named.id),
        user.named.name
    );
    let _ = writeln!(out, "action: {}", uid_of("Action", action));
    let resource_uid = match (cedar.and_then(Request::resource), resource.resource_type()) {
        (Some(cedar), _) => cedar.to_string(),
        (None, Some(known)) => uid_of(known.cedar, resource.id.as_deref().unwrap_or("*")),
        (None, None) => resource.to_string(),
    };
    let _ = writeln!(out, "resource: {resource_uid} ({})", args.resource);
    let _ = writeln!(
        out,
        "workspace: {} ({})",
        workspace.named.name, workspace.named.id
    );
    explain(snapshot, &decision, &mut out);
    Ok(Outcome {
        stdout: out,
        stderr: String::new(),
        code: decision_code(decision.allowed),
    })
}

// ---- synthetic principals -------------------------------------------------------------

/// Asks ZenML questions for real users or for synthetic ones (a member of one team, a holder
/// of one role): the request `zenml::prepare` builds for a real user, with the principal
/// replaced by a request-scoped active user whose parents are given.
struct Asker<'a> {
    snapshot: &'a Snapshot,
    shares: &'a ShareSet,
    /// Any user of the directory: `prepare` needs one to build the request.
    template_user: Option<&'a str>,
    /// The prepared questions of each grid scope (by scope id): they do not depend on the
    /// principal, so every principal's grid reuses them.
    prepared: RefCell<HashMap<String, Rc<PreparedScope>>>,
}

/// A scope's type-level questions, prepared for the template user.
struct PreparedScope {
    /// Row labels (resource types).
    labels: Vec<&'static str>,
    /// (row, action, request) for every question `prepare` did not deny outright.
    requests: Vec<(usize, &'static str, Request)>,
    /// The request-scoped entities of all of them (the type-level resources: one per uid).
    entities: Vec<Entity>,
    /// Every entity the requests name besides their principal: actions, resources, and what
    /// `prepare` lists as referenced (workspace, project).
    referenced: Vec<EntityUid>,
}

/// Who a question is about.
#[derive(Debug, Clone, Copy)]
enum Who<'a> {
    /// A user or service account of the directory, by id.
    User(&'a str),
    /// A synthetic active user, member (`in`) of exactly these entities.
    Probe(&'a [EntityUid]),
}

const PROBE_ID: &str = "zenml-authz:probe";

impl<'a> Asker<'a> {
    fn new(snapshot: &'a Snapshot, directory: &'a Directory, shares: &'a ShareSet) -> Self {
        Self {
            snapshot,
            shares,
            template_user: directory.users.keys().min().map(String::as_str),
            prepared: RefCell::default(),
        }
    }

    fn ask(
        &self,
        who: Who<'_>,
        workspace_id: &str,
        action: &str,
        resource: &Resource,
    ) -> Result<Decision, String> {
        let user_id = match who {
            Who::User(id) => id,
            Who::Probe(_) => self
                .template_user
                .ok_or("the directory has no users to build a request from")?,
        };
        let question = Question {
            workspace_id,
            user_id,
            action,
            resource,
        };
        let request = match zenml_decider(self.snapshot)?
            .prepare(self.shares, &question, ResourceAs::Written)
            .map_err(|error| error.to_string())?
        {
            Prepared::Request(request, _) => *request,
            Prepared::Denied(why) => {
                return Ok(Decision {
                    allowed: false,
                    reasons: Vec::new(),
                    errors: vec![why],
                });
            }
        };
        let request = match who {
            Who::User(_) => request,
            Who::Probe(parents) => self.with_probe(request, parents)?,
        };
        self.snapshot
            .engine
            .decide(&request, &mut Batch::single())
            .map_err(|error| error.to_string())
    }

    fn with_probe(&self, mut request: AuthzRequest, parents: &[EntityUid]) -> Result<AuthzRequest, String> {
        let probe = uid("User", PROBE_ID);
        let entity = probe_entity(parents)?;
        let inner = &request.request;
        let (Some(action), Some(resource), Some(context)) =
            (inner.action(), inner.resource(), inner.context())
        else {
            return Err("internal: an incomplete request".into());
        };
        request.request = Request::new(
            probe,
            action.clone(),
            resource.clone(),
            context.clone(),
            Some(&self.snapshot.engine.schema),
        )
        .map_err(|error| format!("request does not fit the schema: {error}"))?;
        request.entities = request.entities.iter().cloned().chain([entity]).collect();
        request.referenced.extend(parents.iter().cloned());
        Ok(request)
    }

    fn prepare_scope(&self, scope: GridScope<'_>) -> Result<Rc<PreparedScope>, String> {
        if let Some(prepared) = self.prepared.borrow().get(scope.id()) {
            return Ok(prepared.clone());
        }
        let user_id = self
            .template_user
            .ok_or("the directory has no users to build a request from")?;
        let decider = zenml_decider(self.snapshot)?;
        let questions = scope.questions();
        let mut requests = Vec::new();
        let mut entities: HashMap<EntityUid, Entity> = HashMap::new();
        let mut referenced: BTreeSet<EntityUid> = BTreeSet::new();
        for (row, (_, resource)) in questions.iter().enumerate() {
            for action in ACTIONS {
                let question = Question {
                    workspace_id: scope.workspace_id(),
                    user_id,
                    action,
                    resource,
                };
                let prepared = decider
                    .prepare(self.shares, &question, ResourceAs::Written)
                    .map_err(|error| error.to_string())?;
                if let Prepared::Request(prepared, _) = prepared {
                    let AuthzRequest {
                        request,
                        entities: scoped,
                        referenced: named,
                        ..
                    } = *prepared;
                    referenced.extend(named);
                    referenced.extend(request.action().cloned());
                    referenced.extend(request.resource().cloned());
                    for entity in scoped.iter() {
                        entities.entry(entity.uid()).or_insert_with(|| entity.clone());
                    }
                    requests.push((row, action, request));
                }
            }
        }
        let prepared = Rc::new(PreparedScope {
            labels: questions.iter().map(|(label, _)| *label).collect(),
            requests,
            entities: entities.into_values().collect(),
            referenced: referenced.into_iter().collect(),
        });
        self.prepared
            .borrow_mut()
            .insert(scope.id().to_owned(), prepared.clone());
        Ok(prepared)
    }

    /// Resource type -> allowed actions at one scope (only the cells of `only`, if given).
    /// Many questions for one principal: they are evaluated over one slice, the engine's
    /// (`engine::slice`) for all of them at once, instead of one slice per question; by the
    /// slice invariant the decisions are the same.
    fn grid(
        &self,
        who: Who<'_>,
        scope: GridScope<'_>,
        only: Option<&BTreeSet<Cell>>,
    ) -> Result<Vec<Row>, String> {
        let prepared = self.prepare_scope(scope)?;
        let mut rows: Vec<Row> = prepared.labels.iter().map(|label| (*label, Vec::new())).collect();
        self.evaluate(who, scope, only, |row, action, allowed| {
            if allowed && let Some((_, actions)) = rows.get_mut(row) {
                actions.push(action);
            }
            true
        })?;
        Ok(rows)
    }

    /// Evaluates the scope's questions (those in `only`, if given) for `who`, in order, calling
    /// `each(row, action, allowed)` until it returns false.
    fn evaluate(
        &self,
        who: Who<'_>,
        scope: GridScope<'_>,
        only: Option<&BTreeSet<Cell>>,
        mut each: impl FnMut(usize, &'static str, bool) -> bool,
    ) -> Result<(), String> {
        let prepared = self.prepare_scope(scope)?;
        let principal = match who {
            Who::User(id) => uid("User", id),
            Who::Probe(_) => uid("User", PROBE_ID),
        };
        let with_principal = |request: &Request| -> Result<Request, String> {
            let (Some(action), Some(resource), Some(context)) =
                (request.action(), request.resource(), request.context())
            else {
                return Err("internal: an incomplete request".into());
            };
            // Checked against the schema by `prepare`; only the principal changes.
            Request::new(
                principal.clone(),
                action.clone(),
                resource.clone(),
                context.clone(),
                None,
            )
            .map_err(|error| format!("request: {error}"))
        };
        let Some((_, _, first)) = prepared.requests.first() else {
            return Ok(());
        };
        let mut scoped = prepared.entities.clone();
        let mut referenced = prepared.referenced.clone();
        if let Who::Probe(parents) = who {
            scoped.push(probe_entity(parents)?);
            referenced.extend(parents.iter().cloned());
        }
        let _ = first;
        // Every question of the scope shares its request-scoped entities and references: the
        // batch slices once for all of them.
        let (scoped, mut batch): (std::sync::Arc<[Entity]>, _) = (scoped.into(), Batch::many());
        for (row, action, request) in &prepared.requests {
            let Some(label) = prepared.labels.get(*row).copied() else {
                continue;
            };
            if only.is_some_and(|cells| !cells.contains(&(scope.id().to_owned(), label, *action))) {
                continue;
            }
            let request = AuthzRequest {
                request: with_principal(request)?,
                entities: scoped.clone(),
                referenced: referenced.clone(),
                internal: false,
                context: None,
            };
            let decision = self
                .snapshot
                .engine
                .decide(&request, &mut batch)
                .map_err(|error| error.to_string())?;
            if !each(*row, action, decision.allowed) {
                break;
            }
        }
        Ok(())
    }
}

/// One row of a grid: a resource type and the actions allowed on it.
type Row = (&'static str, Vec<&'static str>);

/// The synthetic active user, member of `parents`.
fn probe_entity(parents: &[EntityUid]) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "name".to_owned(),
            RestrictedExpression::new_string(PROBE_ID.to_owned()),
        ),
        (
            "is_service_account".to_owned(),
            RestrictedExpression::new_bool(false),
        ),
        ("active".to_owned(), RestrictedExpression::new_bool(true)),
    ]);
    Entity::new(uid("User", PROBE_ID), attrs, parents.iter().cloned().collect())
        .map_err(|error| format!("probe entity: {error}"))
}

// ---- who-can -----------------------------------------------------------------------------

/// Who may do an action on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `user`, `service-account` or `team`.
    pub kind: &'static str,
    /// Username, service-account name or team name.
    pub name: String,
    /// The determining policies.
    pub reasons: Vec<String>,
}

/// Every user and service account of the directory that may do `action` on `resource` (sorted
/// by name), then every team whose members may do it by their membership alone (sorted).
pub fn who_may(
    snapshot: &Snapshot,
    shares: &ShareSet,
    workspace_id: &str,
    action: &str,
    resource: &Resource,
) -> Result<Vec<Grant>, String> {
    let directory = zenml_directory(snapshot)?;
    let asker = Asker::new(snapshot, directory, shares);
    let mut users: Vec<&User> = directory.users.values().collect();
    users.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    let mut grants = Vec::new();
    for user in users {
        let decision = asker.ask(Who::User(&user.named.id), workspace_id, action, resource)?;
        if decision.allowed {
            grants.push(Grant {
                kind: if user.is_service_account {
                    "service-account"
                } else {
                    "user"
                },
                name: user.named.name.clone(),
                reasons: decision.reasons,
            });
        }
    }
    let mut teams: Vec<_> = directory.teams.values().collect();
    teams.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    for team in teams {
        let parents = [uid("Team", &team.named.id)];
        let decision = asker.ask(Who::Probe(&parents), workspace_id, action, resource)?;
        if decision.allowed {
            grants.push(Grant {
                kind: "team",
                name: team.named.name.clone(),
                reasons: decision.reasons,
            });
        }
    }
    Ok(grants)
}

/// `zenml-authz who-can`: one line per user, service account and team that may.
pub fn who_can(args: &WhoCanArgs) -> Outcome {
    let snapshot = match load(&args.sources.sources()) {
        Ok(snapshot) => snapshot,
        Err(outcome) => return outcome,
    };
    who_can_in(&snapshot, args).unwrap_or_else(Outcome::error)
}

fn who_can_in(snapshot: &Snapshot, args: &WhoCanArgs) -> Result<Outcome, String> {
    let directory = zenml_directory(snapshot)?;
    let action = resolve_action(&args.action)?;
    let resource = resolve_zenml_resource(snapshot, directory, &args.resource)?;
    let workspace = resolve_workspace(directory, args.workspace.as_deref(), Some(&resource))?;
    let shares = open_shares(args.shares_db.as_deref())?;
    let grants = who_may(snapshot, &shares.set, &workspace.named.id, action, &resource)?;
    let teams = grants.iter().filter(|g| g.kind == "team").count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "who can {action} {} in workspace {}: {} of {} users and service accounts, {teams} of {} teams",
        args.resource,
        workspace.named.name,
        grants.len() - teams,
        directory.users.len(),
        directory.teams.len()
    );
    let width = grants.iter().map(|g| g.name.len()).max().unwrap_or(0);
    for grant in &grants {
        let reasons: Vec<String> = grant
            .reasons
            .iter()
            .map(|id| describe_policy(snapshot, id))
            .collect();
        let _ = writeln!(
            out,
            "{:<15} {:<width$} {}",
            grant.kind,
            grant.name,
            reasons.join(", ")
        );
    }
    Ok(Outcome {
        stdout: out,
        stderr: String::new(),
        code: exit::OK,
    })
}

// ---- what-can ----------------------------------------------------------------------------

/// A scope of a what-can grid.
#[derive(Debug, Clone, Copy)]
enum GridScope<'d> {
    Workspace(&'d Workspace),
    Project(&'d Project),
}

impl GridScope<'_> {
    /// The workspace's or project's id.
    fn id(&self) -> &str {
        match self {
            GridScope::Workspace(workspace) => &workspace.named.id,
            GridScope::Project(project) => &project.named.id,
        }
    }

    fn workspace_id(&self) -> &str {
        match self {
            GridScope::Workspace(workspace) => &workspace.named.id,
            GridScope::Project(project) => &project.workspace_id,
        }
    }

    /// The type-level questions of this scope: the workspace's global types, or the project
    /// itself and its project-scoped types. Labelled by resource type.
    fn questions(&self) -> Vec<(&'static str, Resource)> {
        match self {
            GridScope::Workspace(_) => RESOURCE_TYPES
                .iter()
                .filter(|t| !t.project_scoped)
                .map(|t| {
                    (
                        t.wire,
                        Resource {
                            project_id: None,
                            type_name: t.wire.to_owned(),
                            id: None,
                        },
                    )
                })
                .collect(),
            GridScope::Project(project) => std::iter::once((
                PROJECT.wire,
                Resource {
                    project_id: None,
                    type_name: PROJECT.wire.to_owned(),
                    id: Some(project.named.id.clone()),
                },
            ))
            .chain(RESOURCE_TYPES.iter().filter(|t| t.project_scoped).map(|t| {
                (
                    t.wire,
                    Resource {
                        project_id: Some(project.named.id.clone()),
                        type_name: t.wire.to_owned(),
                        id: None,
                    },
                )
            }))
            .collect(),
        }
    }
}

fn render_grid(out: &mut String, title: &str, rows: &[Row]) {
    let actions = |list: &[&str]| {
        if list.len() == ACTIONS.len() {
            "all".to_owned()
        } else {
            list.join(" ")
        }
    };
    let granted: Vec<_> = rows.iter().filter(|(_, list)| !list.is_empty()).collect();
    if granted.is_empty() {
        let _ = writeln!(out, "{title}: nothing");
        return;
    }
    let _ = writeln!(out, "{title}:");
    if granted.len() == rows.len() && rows.iter().all(|(_, list)| *list == rows[0].1) {
        let _ = writeln!(out, "  every type: {}", actions(&rows[0].1));
        return;
    }
    for (label, list) in granted {
        let _ = writeln!(out, "  {label:<20} {}", actions(list));
    }
}

/// `zenml-authz what-can`: a user's bindings and, per scope, type → actions.
pub fn what_can(args: &WhatCanArgs) -> Outcome {
    let sources = args.sources.sources();
    let snapshot = match load(&sources) {
        Ok(snapshot) => snapshot,
        Err(outcome) => return outcome,
    };
    what_can_in(&snapshot, &sources, args).unwrap_or_else(Outcome::error)
}

fn what_can_in(snapshot: &Snapshot, sources: &Sources, args: &WhatCanArgs) -> Result<Outcome, String> {
    let directory = zenml_directory(snapshot)?;
    let user = find_user(directory, &args.user)?;
    let workspaces: Vec<&Workspace> = match &args.workspace {
        Some(key) => vec![resolve_workspace(directory, Some(key), None)?],
        None => {
            let mut all: Vec<_> = directory.workspaces.values().collect();
            all.sort_by(|a, b| a.named.name.cmp(&b.named.name));
            all
        }
    };
    let bindings = read_bindings(directory, &sources.directory)?.1;

    let mut out = String::new();
    let kind = if user.is_service_account {
        "service account"
    } else {
        "user"
    };
    let mut teams: Vec<&str> = user
        .teams
        .iter()
        .filter_map(|id| directory.teams.get(id))
        .map(|t| t.named.name.as_str())
        .collect();
    teams.sort_unstable();
    let status = if user.active { "" } else { ", deactivated" };
    let team_list = if teams.is_empty() {
        "none".to_owned()
    } else {
        teams.join(", ")
    };
    let _ = writeln!(
        out,
        "{}: {kind} {}{status}; teams: {team_list}",
        user.named.name, user.named.id
    );
    let mine: Vec<(&Binding, Option<&str>)> = bindings
        .iter()
        .filter_map(|binding| match &binding.holder {
            Holder::User(id) if *id == user.named.id => Some((binding, None)),
            Holder::Team(id) if user.teams.contains(id) => {
                Some((binding, directory.teams.get(id).map(|t| t.named.name.as_str())))
            }
            _ => None,
        })
        .collect();
    if mine.is_empty() {
        let _ = writeln!(out, "bindings: none");
    } else {
        let _ = writeln!(out, "bindings:");
        for (binding, team) in mine {
            let custom = if directory.custom_roles.contains(&binding.role) {
                " (custom role)"
            } else {
                ""
            };
            let through = team.map(|t| format!(", through team {t}")).unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{custom} at {}{through} ({}:{})",
                binding.role,
                describe_scope(directory, &binding.scope),
                sources.directory.display(),
                binding.line
            );
        }
    }

    let shares = ShareSet::default();
    let asker = Asker::new(snapshot, directory, &shares);
    let who = Who::User(&user.named.id);
    for workspace in workspaces {
        let rows = asker.grid(who, GridScope::Workspace(workspace), None)?;
        render_grid(&mut out, &format!("workspace {}", workspace.named.name), &rows);
        let mut projects: Vec<&Project> = directory
            .projects
            .values()
            .filter(|p| p.workspace_id == workspace.named.id)
            .collect();
        projects.sort_by(|a, b| a.named.name.cmp(&b.named.name));
        for project in projects {
            let rows = asker.grid(who, GridScope::Project(project), None)?;
            let title = format!("project {} ({})", project.named.name, workspace.named.name);
            render_grid(&mut out, &title, &rows);
        }
    }
    Ok(Outcome {
        stdout: out,
        stderr: String::new(),
        code: exit::OK,
    })
}

// ---- the directory's bindings --------------------------------------------------------------

/// The parts of the directory file the lints and `what-can` need, with their places. The file
/// has been validated by `policy::load` already; this view ignores every other field.
#[derive(Debug, Default, Deserialize)]
struct DirectoryView {
    #[serde(default)]
    teams: Vec<Spanned<TeamView>>,
    #[serde(default)]
    roles: Vec<Spanned<RoleView>>,
    #[serde(default)]
    bindings: Vec<Spanned<BindingView>>,
}

#[derive(Debug, Deserialize)]
struct TeamView {
    name: String,
    #[serde(default)]
    members: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct RoleView {
    name: String,
}

#[derive(Debug, Deserialize)]
struct BindingView {
    role: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default, alias = "tenant")]
    workspace: Option<String>,
    #[serde(default)]
    project: Option<String>,
}

/// Who holds a binding: a user or service account, or a team (ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Holder {
    User(String),
    Team(String),
}

/// Where a binding holds its role (ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum BindingScope {
    Organization(String),
    Workspace(String),
    Project(String),
}

impl BindingScope {
    fn id(&self) -> &str {
        match self {
            BindingScope::Organization(id) | BindingScope::Workspace(id) | BindingScope::Project(id) => id,
        }
    }
}

/// One role binding of the directory, resolved.
#[derive(Debug, Clone)]
struct Binding {
    index: usize,
    line: usize,
    column: usize,
    holder: Holder,
    scope: BindingScope,
    role: String,
}

impl Binding {
    fn key(&self) -> (&Holder, &BindingScope, &str) {
        (&self.holder, &self.scope, &self.role)
    }

    /// `Role::"<scope-id>/<role>"`, the group a binding makes its holder a member of.
    fn group(&self) -> EntityUid {
        uid("Role", &role_id(self.scope.id(), &self.role))
    }
}

fn describe_scope(directory: &Directory, scope: &BindingScope) -> String {
    match scope {
        BindingScope::Organization(_) => format!("organization {}", directory.organization.name),
        BindingScope::Workspace(id) => format!(
            "workspace {}",
            directory
                .workspaces
                .get(id)
                .map_or(id.as_str(), |w| w.named.name.as_str())
        ),
        BindingScope::Project(id) => match directory.projects.get(id) {
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

/// Reads the directory file's teams, roles and bindings, bindings resolved like the loader does.
fn read_bindings(directory: &Directory, path: &Path) -> Result<(DirectoryView, Vec<Binding>), String> {
    let text =
        std::fs::read_to_string(path).map_err(|error| format!("{}: cannot read: {error}", path.display()))?;
    let view: DirectoryView = serde_saphyr::from_str(&text)
        .map_err(|error| format!("{}: {}", path.display(), crate::directory::yaml_message(&error)))?;
    let mut bindings = Vec::new();
    for (index, spanned) in view.bindings.iter().enumerate() {
        let b = &spanned.value;
        let holder = match (&b.user, &b.team, &b.service_account) {
            (Some(user), None, None) | (None, None, Some(user)) => directory
                .find_user(user)
                .map(|u| Holder::User(u.named.id.clone())),
            (None, Some(team), None) => directory
                .find_team(team)
                .map(|t| Holder::Team(t.named.id.clone())),
            _ => None,
        };
        let scope = match (&b.organization, &b.workspace, &b.project) {
            (Some(_), None, None) => Some(BindingScope::Organization(directory.organization.id.clone())),
            (None, Some(key), None) => directory
                .find_workspace(key)
                .map(|w| BindingScope::Workspace(w.named.id.clone())),
            (None, None, Some(key)) => directory
                .find_project(key)
                .map(|p| BindingScope::Project(p.named.id.clone())),
            _ => None,
        };
        // The loader has rejected anything that does not resolve.
        if let (Some(holder), Some(scope)) = (holder, scope) {
            bindings.push(Binding {
                index,
                line: spanned.referenced.line() as usize,
                column: spanned.referenced.column() as usize,
                holder,
                scope,
                role: b.role.clone(),
            });
        }
    }
    Ok((view, bindings))
}

// ---- lint ----------------------------------------------------------------------------------

/// Entity types whose every entity comes from the directory: a policy naming one the directory
/// lacks names something that can never be there.
const DIRECTORY_TYPES: [&str; 5] = [
    "ZenML::User",
    "ZenML::Team",
    "ZenML::Role",
    "ZenML::Organization",
    "ZenML::Workspace",
];

/// `validate`'s warnings beyond Cedar's validator (whose warnings are in the snapshot): valid
/// sources that are probably not what their author meant. Sorted by file and line.
///
/// * a policy naming a user, team, role, organization or workspace that the
///   directory does not have (that part of it can never match);
/// * a custom role no binding uses; a team without members;
/// * a binding that changes no decision: a duplicate, a role that grants nothing at its scope
///   under the current policies, or one whose every right its holder already has through other
///   bindings or teams. Organization bindings are not judged: organization roles also mean
///   things (membership, billing) that no ZenML server asks the sidecar about.
pub fn lint(snapshot: &Snapshot, sources: &Sources) -> Vec<LoadError> {
    let Some(directory) = snapshot.directory() else {
        return Vec::new();
    };
    let mut warnings = policy_literal_warnings(snapshot);
    match read_bindings(directory, &sources.directory) {
        Ok((view, bindings)) => {
            warnings.extend(directory_warnings(
                snapshot,
                directory,
                &sources.directory,
                &view,
                &bindings,
            ));
        }
        Err(message) => warnings.push(LoadError::file(&sources.directory, message)),
    }
    warnings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    warnings
}

fn policy_literal_warnings(snapshot: &Snapshot) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    let mut policies: Vec<_> = snapshot.engine.policies.policies().collect();
    policies.sort_by_key(|p| p.id().to_string());
    for policy in policies {
        let Ok(json) = policy.to_json() else { continue };
        let mut literals = Vec::new();
        crate::policy::collect_entity_refs(&json, &mut literals);
        let mut seen = HashSet::new();
        for literal in literals {
            let type_name = literal.type_name().to_string();
            if !DIRECTORY_TYPES.contains(&type_name.as_str())
                || snapshot.engine.entities.get(&literal).is_some()
                || !seen.insert(literal.to_string())
            {
                continue;
            }
            let id = policy.id().to_string();
            let message = format!(
                "policy `{id}` names `{literal}`, which is not in the directory: a condition on it can never match"
            );
            warnings.push(match snapshot.engine.policy_sources.get(&id) {
                Some(source) => match source.line {
                    Some(line) => LoadError::at_line(&source.path, line, 1, message),
                    None => LoadError::file(&source.path, message),
                },
                None => LoadError::file(Path::new("policies"), message),
            });
        }
    }
    warnings
}

/// One allowed cell of a grid: scope id, resource type, action.
type Cell = (String, &'static str, &'static str);

/// The scopes a role held at `scope` reaches: a workspace and every project in it, or a
/// project. (Organization bindings are not judged.)
fn reach<'d>(directory: &'d Directory, scope: &BindingScope) -> Vec<GridScope<'d>> {
    let mut scopes = Vec::new();
    match scope {
        BindingScope::Organization(_) => {}
        BindingScope::Workspace(id) => {
            if let Some(workspace) = directory.workspaces.get(id) {
                scopes.push(GridScope::Workspace(workspace));
                scopes.extend(
                    directory
                        .projects
                        .values()
                        .filter(|p| p.workspace_id == *id)
                        .map(GridScope::Project),
                );
            }
        }
        BindingScope::Project(id) => scopes.extend(directory.projects.get(id).map(GridScope::Project)),
    }
    scopes
}

/// Every cell `who` may at the scopes of `reach`.
fn allowed_cells(asker: &Asker<'_>, who: Who<'_>, reach: &[GridScope<'_>]) -> Result<BTreeSet<Cell>, String> {
    let mut cells = BTreeSet::new();
    for scope in reach {
        for (label, actions) in asker.grid(who, *scope, None)? {
            cells.extend(
                actions
                    .into_iter()
                    .map(|action| (scope.id().to_owned(), label, action)),
            );
        }
    }
    Ok(cells)
}

fn directory_warnings(
    snapshot: &Snapshot,
    directory: &Directory,
    path: &Path,
    view: &DirectoryView,
    bindings: &[Binding],
) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    let at = |line: usize, column: usize, message: String| LoadError::at_line(path, line, column, message);
    let used_roles: HashSet<&str> = bindings.iter().map(|b| b.role.as_str()).collect();
    for (i, role) in view.roles.iter().enumerate() {
        if !used_roles.contains(role.value.name.as_str()) {
            warnings.push(at(
                role.referenced.line() as usize,
                role.referenced.column() as usize,
                format!(
                    "roles[{i}] `{}`: unused role: no binding uses it",
                    role.value.name
                ),
            ));
        }
    }
    for (i, team) in view.teams.iter().enumerate() {
        if team.value.members.is_empty() {
            warnings.push(at(
                team.referenced.line() as usize,
                team.referenced.column() as usize,
                format!(
                    "teams[{i}] `{}`: the team has no members, so its bindings and shares reach nobody",
                    team.value.name
                ),
            ));
        }
    }

    let shares = ShareSet::default();
    let asker = Asker::new(snapshot, directory, &shares);
    // (scope id, role) -> the cells a holder of only that role may.
    let mut granted: HashMap<(String, String), Result<BTreeSet<Cell>, String>> = HashMap::new();
    let mut seen: HashMap<(&Holder, &BindingScope, &str), usize> = HashMap::new();
    for binding in bindings {
        let place = |message: String| {
            at(
                binding.line,
                binding.column,
                format!("bindings[{}]: {message}", binding.index),
            )
        };
        if let Some(first) = seen.get(&binding.key()) {
            warnings.push(place(format!(
                "no effect: the same holder, role and scope as bindings[{first}]"
            )));
            continue;
        }
        seen.insert(binding.key(), binding.index);
        if matches!(binding.scope, BindingScope::Organization(_)) {
            continue;
        }
        let scopes = reach(directory, &binding.scope);
        let cells = granted
            .entry((binding.scope.id().to_owned(), binding.role.clone()))
            .or_insert_with(|| allowed_cells(&asker, Who::Probe(&[binding.group()]), &scopes));
        let cells = match cells {
            Ok(cells) => cells,
            Err(message) => {
                warnings.push(place(format!("cannot judge its effect: {message}")));
                continue;
            }
        };
        let what = format!(
            "role `{}` at {}",
            binding.role,
            describe_scope(directory, &binding.scope)
        );
        if cells.is_empty() {
            warnings.push(place(format!(
                "no effect: {what} grants nothing under the current policies"
            )));
            continue;
        }
        // Everything else the holder is a member of: its teams, its other bindings' groups.
        let (name, mut others, teams) = match &binding.holder {
            Holder::User(id) => {
                let Some(user) = directory.users.get(id) else {
                    continue;
                };
                let teams: Vec<&str> = user
                    .teams
                    .iter()
                    .filter_map(|t| directory.teams.get(t))
                    .map(|t| t.named.name.as_str())
                    .collect();
                let parents: Vec<EntityUid> = user.teams.iter().map(|t| uid("Team", t)).collect();
                (user.named.name.as_str(), parents, teams)
            }
            Holder::Team(id) => {
                let Some(team) = directory.teams.get(id) else {
                    continue;
                };
                (team.named.name.as_str(), Vec::new(), Vec::new())
            }
        };
        others.extend(
            bindings
                .iter()
                .filter(|other| other.holder == binding.holder && other.key() != binding.key())
                .map(Binding::group),
        );
        let others: Vec<EntityUid> = others.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
        if others.is_empty() {
            continue;
        }
        let redundant = scopes.iter().all(|scope| {
            let mut all_allowed = true;
            let evaluated = asker.evaluate(Who::Probe(&others), *scope, Some(cells), |_, _, allowed| {
                all_allowed &= allowed;
                allowed
            });
            evaluated.is_ok() && all_allowed
        });
        if redundant {
            let through = if teams.is_empty() {
                "through other bindings".to_owned()
            } else {
                format!("through other bindings or teams ({})", teams.join(", "))
            };
            warnings.push(place(format!(
                "no effect: `{name}` already has everything {what} grants, {through}"
            )));
        }
    }
    warnings
}

// ---- fmt -----------------------------------------------------------------------------------

/// `*.cedar` files under each path (a file named explicitly is taken whatever its name),
/// sorted, hidden entries skipped, symlinks followed; and the paths that have none.
fn cedar_files(paths: &[PathBuf]) -> (Vec<PathBuf>, Vec<LoadError>) {
    let mut files = Vec::new();
    let mut errors = Vec::new();
    for path in paths {
        if path.is_file() {
            files.push(path.clone());
            continue;
        }
        if !path.is_dir() {
            errors.push(LoadError::file(path, "no such file or directory"));
            continue;
        }
        let before = files.len();
        let walker = walkdir::WalkDir::new(path)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|entry| {
                entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.')
            });
        for entry in walker {
            match entry {
                Ok(entry)
                    if entry.file_type().is_file()
                        && entry.file_name().to_string_lossy().ends_with(".cedar") =>
                {
                    files.push(entry.path().to_path_buf());
                }
                Ok(_) => {}
                Err(error) => {
                    let at = error.path().unwrap_or(path).to_path_buf();
                    errors.push(LoadError::file(&at, format!("cannot read: {error}")));
                }
            }
        }
        if files.len() == before {
            errors.push(LoadError::file(path, "no .cedar files found"));
        }
    }
    let mut seen = HashSet::new();
    files.retain(|file| seen.insert(file.clone()));
    (files, errors)
}

/// The `//` comments of Cedar text (string literals skipped), each trimmed, in order.
fn comments(text: &str) -> Vec<&str> {
    let mut found = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    let mut chars = text.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '/' if chars.peek().is_some_and(|(_, next)| *next == '/') => {
                let end = text[at..].find('\n').map_or(text.len(), |n| at + n);
                found.push(text[at..end].trim());
                while chars.peek().is_some_and(|(i, _)| *i < end) {
                    chars.next();
                }
            }
            _ => {}
        }
    }
    found
}

/// Formats one file's text: `Ok(None)` when it is already formatted (or has no policies),
/// `Ok(Some(text))` when formatting changes it, `Err` when it cannot or must not be formatted.
pub fn format_cedar(
    path: &Path,
    text: &str,
    config: &cedar_policy_formatter::Config,
) -> Result<Option<String>, LoadError> {
    // Cedar's own parser first: its errors carry a place.
    let parsed = PolicySet::from_str(text).map_err(|errors| {
        let first = errors.iter().next();
        let message = first.map_or_else(|| errors.to_string(), |e| e.to_string());
        let offset = first
            .and_then(miette::Diagnostic::labels)
            .and_then(|mut labels| labels.next())
            .map(|label| label.offset());
        match offset {
            Some(offset) => LoadError::at_offset(path, text, offset, format!("cannot format: {message}")),
            None => LoadError::file(path, format!("cannot format: {message}")),
        }
    })?;
    if parsed.policies().next().is_none() && parsed.templates().next().is_none() {
        return Ok(None);
    }
    let pretty = |input: &str| {
        cedar_policy_formatter::policies_str_to_pretty(input, config)
            .map_err(|error| LoadError::file(path, format!("cannot format: {error}")))
    };
    let formatted = pretty(text)?;
    if pretty(&formatted)? != formatted {
        return Err(LoadError::file(
            path,
            "not formatted: Cedar's formatter gives a different text when run again on this file",
        ));
    }
    if comments(text) != comments(&formatted) {
        return Err(LoadError::file(
            path,
            "not formatted: Cedar's formatter would drop or change comments in this file; format it by hand",
        ));
    }
    Ok((formatted != text).then_some(formatted))
}

/// Replaces `path`'s contents through a hidden temporary file and a rename, so that a watching
/// sidecar never reads half a file.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let target = std::fs::canonicalize(path)?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = target.with_file_name(format!(".{name}.zenml-authz-fmt"));
    std::fs::write(&temp, text)?;
    if let Ok(metadata) = std::fs::metadata(&target) {
        let _ = std::fs::set_permissions(&temp, metadata.permissions());
    }
    std::fs::rename(&temp, &target).inspect_err(|_| {
        let _ = std::fs::remove_file(&temp);
    })
}

/// `zenml-authz fmt`: format `.cedar` files with Cedar's formatter, or with `--check` list the
/// files it would change.
pub fn fmt(args: &FmtArgs) -> Outcome {
    let paths = if args.paths.is_empty() {
        vec![args.sources.policies.clone()]
    } else {
        args.paths.clone()
    };
    let config = cedar_policy_formatter::Config {
        line_width: args.line_width,
        indent_width: isize::try_from(args.indent_width).unwrap_or(2),
    };
    let (files, mut errors) = cedar_files(&paths);
    let mut out = String::new();
    let mut changed = 0;
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                errors.push(LoadError::file(file, format!("cannot read: {error}")));
                continue;
            }
        };
        match format_cedar(file, &text, &config) {
            Ok(None) => {}
            Ok(Some(_)) if args.check => {
                changed += 1;
                let _ = writeln!(out, "would reformat {}", file.display());
            }
            Ok(Some(formatted)) => match write_atomically(file, &formatted) {
                Ok(()) => {
                    changed += 1;
                    let _ = writeln!(out, "formatted {}", file.display());
                }
                Err(error) => errors.push(LoadError::file(file, format!("cannot write: {error}"))),
            },
            Err(error) => errors.push(error),
        }
    }
    let verb = if args.check {
        "would be reformatted"
    } else {
        "reformatted"
    };
    let _ = writeln!(out, "{changed} of {} file(s) {verb}", files.len());
    let mut stderr = String::new();
    for error in &errors {
        let _ = writeln!(stderr, "error: {error}");
    }
    let code = if !errors.is_empty() {
        exit::ERROR
    } else if args.check && changed > 0 {
        exit::UNFORMATTED
    } else {
        exit::OK
    };
    Outcome {
        stdout: out,
        stderr,
        code,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[test]
    fn comments_skip_string_literals() {
        let text = "// a\npermit (principal, action, resource) when { \"// not\" == \"x\\\"//\" }; // b\n";
        assert_eq!(comments(text), ["// a", "// b"]);
    }

    #[test]
    fn formatting_is_idempotent_and_keeps_comments() {
        let config = cedar_policy_formatter::Config::default();
        let text = "// header\n@id(\"x\") permit(principal,action  ,resource) // trailing\nwhen { true };\n";
        let once = format_cedar(Path::new("x.cedar"), text, &config)
            .unwrap()
            .unwrap();
        assert_eq!(format_cedar(Path::new("x.cedar"), &once, &config).unwrap(), None);
        assert_eq!(comments(&once), comments(text));
        assert!(once.contains("@id(\"x\")"), "{once}");
    }

    #[test]
    fn comment_only_files_are_left_alone() {
        let config = cedar_policy_formatter::Config::default();
        assert_eq!(
            format_cedar(Path::new("x.cedar"), "// nothing yet\n", &config).unwrap(),
            None
        );
        assert_eq!(format_cedar(Path::new("x.cedar"), "", &config).unwrap(), None);
    }

    #[test]
    fn unparseable_files_are_errors_with_a_place() {
        let config = cedar_policy_formatter::Config::default();
        let error = format_cedar(
            Path::new("x.cedar"),
            "permit (principal, action resource);\n",
            &config,
        )
        .unwrap_err();
        assert_eq!(error.line, Some(1), "{error}");
        assert!(error.message.starts_with("cannot format: "), "{error}");
    }
}
