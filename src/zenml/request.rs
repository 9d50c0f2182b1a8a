//! From a ZenML question to a Cedar request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use cedar_policy::{Context, Entity, EntityUid, Request, RestrictedExpression};

use super::resource::Resource;
use super::shares::ShareSet;
use super::{Decider, DecisionError, standin};
use crate::directory::{Directory, PROJECT_MEMBERS, PROJECT_ROLES, User, permission_id, role_id};
use crate::engine::{AuthzRequest, Engine, PreparedContext};
use crate::model::{ACTIONS, PROJECT, RESOURCE_TYPES, ResourceType, action_from_wire, uid};

/// One ZenML authorization question.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// The workspace asking (fixed by the caller's credentials).
    pub workspace_id: &'a str,
    /// ZenML's `user_id`: the external id of a user or service account.
    pub user_id: &'a str,
    /// The ZenML action.
    pub action: &'a str,
    /// The parsed resource.
    pub resource: &'a Resource,
}

/// What a question becomes.
#[derive(Debug, Clone)]
pub enum Prepared {
    /// A Cedar request to decide, and the resource it stands for when it names the resource's
    /// stand-in (errors naming the stand-in are reported with the real resource).
    Request(Box<AuthzRequest>, Option<Box<Alias>>),
    /// Denied before evaluation, and why (unknown user, type, action or workspace).
    Denied(String),
}

/// (stand-in, real resource): the request names a stored stand-in in place of the resource.
pub type Alias = (EntityUid, EntityUid);

/// How the resource of a question is evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceAs {
    /// As a request-scoped entity: the request as written, for explanations.
    Written,
    /// As its stored stand-in where the snapshot allows (`standin`): the same decision
    /// without a per-request entity slice. What the ZenML API and decision tables decide with.
    StandIn,
}

/// Whether the schema accepts each *shape* of ZenML request, learnt on first use: a shape is the
/// (action, resource type, which optional context keys are present) of a request, and it alone
/// decides schema validity here, because the principal is always a `User` and the context
/// always holds sets of `Role`, `User` and `Team` uids. Checking a request
/// against the schema was about half of preparing it (callgrind), so a shape the schema has
/// accepted once is not checked again for this snapshot; a shape it rejected is checked every
/// time (for its message). (Exact unless the schema makes one of those types an enumerated
/// entity type, which ZenML's uuid ids could not satisfy anyway.)
#[derive(Debug)]
pub(super) struct RequestShapes(Box<[OnceLock<bool>]>);

impl Default for RequestShapes {
    fn default() -> Self {
        Self(
            (0..ACTIONS.len() * RESOURCE_TYPES.len() * 4)
                .map(|_| OnceLock::new())
                .collect(),
        )
    }
}

/// The (action, resource type) pair's index in `0..ACTIONS.len() * RESOURCE_TYPES.len()`: the
/// slot of per-snapshot tables that have one entry per pair.
fn action_type_at(action: &str, resource_type: &ResourceType) -> Option<usize> {
    let action = ACTIONS.iter().position(|a| *a == action)?;
    let type_at = RESOURCE_TYPES
        .iter()
        .position(|t| t.cedar == resource_type.cedar)?;
    Some(action * RESOURCE_TYPES.len() + type_at)
}

impl RequestShapes {
    fn slot(
        &self,
        action: &str,
        resource_type: &ResourceType,
        users: bool,
        teams: bool,
    ) -> Option<&OnceLock<bool>> {
        let keys = usize::from(users) | usize::from(teams) << 1;
        self.0.get(action_type_at(action, resource_type)? * 4 + keys)
    }
}

/// The context of a request for which nothing is shared with the caller: only the custom-role
/// groups whose grid has its (resource type, action) cell at its project or workspace, so a
/// function of (workspace, project, resource type, action). Built once per snapshot and
/// then shared (a `Context` is reference-counted): building one was a third of preparing a
/// request (perf). Read without a lock; a new scope is added by copying the map. At most
/// `KEPT_SCOPES` scopes are kept; past that, contexts are built per request.
#[derive(Debug, Default)]
pub(super) struct ScopeContexts {
    /// workspace -> project ("" for the workspace itself) -> one slot per (type, action).
    scopes: ArcSwap<HashMap<Box<str>, WorkspaceScopes>>,
    kept: std::sync::atomic::AtomicUsize,
}

const KEPT_SCOPES: usize = 1024;

/// A shared context, with what the snapshot's index reads from it (`ScopeIndex::read_context`).
type Shared = (Context, Option<Arc<PreparedContext>>);

/// One scope's contexts, one slot per (resource type, action).
type ContextSlots = Arc<[OnceLock<Shared>]>;

/// A workspace's scopes: project id ("" for the workspace itself) -> its contexts.
type WorkspaceScopes = HashMap<Box<str>, ContextSlots>;

impl ScopeContexts {
    /// The slots of one scope, made on first use while under the bound.
    fn scope(&self, workspace: &str, project: Option<&str>) -> Option<ContextSlots> {
        let project = project.unwrap_or("");
        let found = self
            .scopes
            .load()
            .get(workspace)
            .and_then(|projects| projects.get(project))
            .cloned();
        if found.is_some() {
            return found;
        }
        use std::sync::atomic::Ordering::Relaxed;
        self.kept
            .fetch_update(Relaxed, Relaxed, |kept| (kept < KEPT_SCOPES).then_some(kept + 1))
            .ok()?;
        let made: ContextSlots = (0..ACTIONS.len() * RESOURCE_TYPES.len())
            .map(|_| OnceLock::new())
            .collect();
        // Racing first uses of a scope: the slots stored first are the ones kept and used.
        self.scopes.rcu(|scopes| {
            let mut scopes = HashMap::clone(scopes);
            scopes
                .entry(workspace.into())
                .or_default()
                .entry(project.into())
                .or_insert_with(|| Arc::clone(&made));
            scopes
        });
        self.scopes
            .load()
            .get(workspace)
            .and_then(|projects| projects.get(project))
            .cloned()
    }

    /// The context for (scope, type, action), built by `build` on first use and prepared by
    /// `engine` then; past the bound, built for the request (and not prepared beforehand).
    fn get(
        &self,
        engine: &Engine,
        (workspace, project): (&str, Option<&str>),
        resource_type: &ResourceType,
        action: &str,
        build: impl FnOnce() -> Result<Context, DecisionError>,
    ) -> Result<Shared, DecisionError> {
        let at = action_type_at(action, resource_type);
        let slot = at.and_then(|at| Some((self.scope(workspace, project)?, at)));
        let Some(slot) = slot.as_ref().and_then(|(slots, at)| slots.get(*at)) else {
            return Ok((build()?, None));
        };
        if let Some(shared) = slot.get() {
            return Ok(shared.clone());
        }
        let context = build()?;
        let reads = engine.prepare_context(&context);
        // Racing first uses build equal contexts: whichever is stored is right.
        Ok(slot.get_or_init(|| (context, reads)).clone())
    }
}

/// Turns `question` into a Cedar request under `decider`'s snapshot (or an immediate deny).
pub(super) fn prepare(
    decider: &Decider<'_>,
    shares: &ShareSet,
    question: &Question<'_>,
    resource_as: ResourceAs,
) -> Result<Prepared, DecisionError> {
    match build(decider, shares, question, resource_as) {
        Ok(prepared) => Ok(prepared),
        Err(Stop::Denied(why)) => Ok(Prepared::Denied(why)),
        Err(Stop::Failed(error)) => Err(error),
    }
}

/// Why preparing stopped: a deny before evaluation, or a request that cannot be built.
enum Stop {
    Denied(String),
    Failed(DecisionError),
}

impl From<DecisionError> for Stop {
    fn from(error: DecisionError) -> Self {
        Stop::Failed(error)
    }
}

/// The question's names, each known to the snapshot.
struct Known<'d> {
    user: &'d User,
    resource_type: ResourceType,
    action: &'static str,
    workspace: EntityUid,
}

/// The request-scoped entities of a request, and the stored ones it names.
struct Scoped {
    entities: Vec<Entity>,
    referenced: Vec<EntityUid>,
}

fn build(
    decider: &Decider<'_>,
    shares: &ShareSet,
    question: &Question<'_>,
    resource_as: ResourceAs,
) -> Result<Prepared, Stop> {
    let (engine, view) = (decider.engine, decider.view);
    let known = known(&view.directory, question)?;
    let mut scoped = Scoped {
        entities: Vec::with_capacity(2),
        referenced: vec![known.workspace.clone()],
    };
    let project_id = question.resource.scope_project();
    let stored_scope = scoped.project(&view.directory, question, project_id, &known.workspace)?;
    let stand_in = resource_as == ResourceAs::StandIn
        && stored_scope
        && view.stand_ins
        && standin::exists(&known.resource_type, project_id.is_some());
    let (resource, alias) = scoped.resource(question, &known, project_id, stand_in)?;
    let (users, teams) = grantees(shares, question, &known);
    let (context, context_reads) = if users.is_empty() && teams.is_empty() {
        view.contexts.get(
            engine,
            (question.workspace_id, project_id),
            &known.resource_type,
            known.action,
            || {
                Context::from_pairs([permissions(&view.directory, question, &known, project_id)])
                    .map_err(|error| DecisionError::Context(error.to_string()))
            },
        )?
    } else {
        let permissions = permissions(&view.directory, question, &known, project_id);
        (shared_context(permissions, &users, &teams)?, None)
    };
    let shape = view.shapes.slot(
        known.action,
        &known.resource_type,
        !users.is_empty(),
        !teams.is_empty(),
    );
    let request = checked_request(
        engine,
        shape,
        known.user.uid.clone(),
        crate::model::action_uid(known.action),
        resource,
        context,
    )?;
    Ok(Prepared::Request(
        Box::new(AuthzRequest {
            request,
            entities: if scoped.entities.is_empty() {
                crate::engine::Scoped::default()
            } else {
                scoped.entities.into()
            },
            referenced: scoped.referenced,
            internal: alias.is_some(),
            context: context_reads,
        }),
        alias.map(Box::new),
    ))
}

/// The question's user, resource type, action and workspace, or a deny naming the unknown one.
fn known<'d>(directory: &'d Directory, question: &Question<'_>) -> Result<Known<'d>, Stop> {
    let Some(user) = directory.users.get(question.user_id) else {
        return Err(Stop::Denied(format!("unknown user `{}`", question.user_id)));
    };
    let Some(resource_type) = question.resource.resource_type() else {
        return Err(Stop::Denied(format!(
            "unknown resource type `{}`",
            question.resource.type_name
        )));
    };
    let Some(action) = action_from_wire(question.action) else {
        return Err(Stop::Denied(format!("unknown action `{}`", question.action)));
    };
    let Some(workspace) = directory.workspaces.get(question.workspace_id) else {
        return Err(Stop::Denied(format!(
            "unknown workspace `{}`",
            question.workspace_id
        )));
    };
    Ok(Known {
        user,
        resource_type,
        action,
        workspace: workspace.uid.clone(),
    })
}

impl Scoped {
    /// The project the resource is in (or is): stored, or request-scoped when the directory does
    /// not list it (then `false`). A project of another workspace is a deny.
    fn project(
        &mut self,
        directory: &Directory,
        question: &Question<'_>,
        project_id: Option<&str>,
        workspace: &EntityUid,
    ) -> Result<bool, Stop> {
        let Some(project_id) = project_id else {
            return Ok(true);
        };
        let stored = match directory.projects.get(project_id) {
            Some(project) if project.workspace_id == question.workspace_id => {
                self.referenced.push(project.uid.clone());
                true
            }
            Some(_) => {
                return Err(Stop::Denied(format!(
                    "project `{project_id}` belongs to another workspace"
                )));
            }
            None => {
                self.entities.push(project_entity(project_id, workspace)?);
                self.referenced.push(uid("Project", project_id));
                false
            }
        };
        Ok(stored)
    }

    /// The resource itself, an instance or the whole type (`*`): a project, the stored stand-in
    /// of its type in its scope (with the alias to the real resource), or a request-scoped entity.
    fn resource(
        &mut self,
        question: &Question<'_>,
        known: &Known<'_>,
        project_id: Option<&str>,
        stand_in: bool,
    ) -> Result<(EntityUid, Option<Alias>), Stop> {
        let instance = question.resource.id.as_deref().unwrap_or("*");
        if known.resource_type == PROJECT {
            if question.resource.id.is_none() {
                self.entities.push(project_entity("*", &known.workspace)?);
            }
            return Ok((uid("Project", instance), None));
        }
        let resource = uid(known.resource_type.cedar, instance);
        if stand_in {
            // The stored stand-in of this type in this scope carries the same data.
            let scope = project_id.unwrap_or(question.workspace_id);
            let stand_in = uid(known.resource_type.cedar, &standin::id(scope));
            return Ok((stand_in.clone(), Some((stand_in, resource))));
        }
        let project = project_id.map(|project_id| uid("Project", project_id));
        self.entities.push(
            standin::resource_entity(resource.clone(), &known.workspace, project.as_ref())
                .map_err(DecisionError::Entity)?,
        );
        Ok((resource, None))
    }
}

/// The users and teams the resource is shared with for this action that can be the caller: the
/// caller and the caller's teams (teams are flat, so `principal in Team` is exactly team
/// membership). A project can have hundreds of grantees; the decision needs only these, and the
/// context stays a few entries long.
fn grantees<'s>(
    shares: &'s ShareSet,
    question: &Question<'_>,
    known: &Known<'_>,
) -> (Vec<&'s str>, Vec<&'s str>) {
    let (mut users, mut teams) = match &question.resource.id {
        Some(_) if shares.any_in(question.workspace_id) => shares.shared_with(
            question.workspace_id,
            &question.resource.to_string(),
            known.action,
        ),
        _ => (Vec::new(), Vec::new()),
    };
    // Implicit membership: whoever has a resource of a project shared with them may see it.
    if known.resource_type == PROJECT
        && known.action == "read"
        && let Some(project_id) = &question.resource.id
    {
        let (project_users, project_teams) = shares.project_grantees(question.workspace_id, project_id);
        users.extend(project_users);
        teams.extend(project_teams);
    }
    users.retain(|id| *id == known.user.named.id);
    teams.retain(|id| known.user.teams.iter().any(|team| team == id));
    (users, teams)
}

/// `context.permissions`: the custom-role groups whose grid has this (scope, type, action) cell,
/// at the project and at the workspace.
fn permissions(
    directory: &Directory,
    question: &Question<'_>,
    known: &Known<'_>,
    project_id: Option<&str>,
) -> (String, RestrictedExpression) {
    let cells = [project_id, Some(question.workspace_id)];
    let groups = cells
        .into_iter()
        .flatten()
        .filter_map(|scope| {
            directory
                .cell_roles
                .get(&permission_id(scope, known.resource_type.wire, known.action))
        })
        .flatten()
        .map(|group| uid("Role", group))
        .collect();
    ("permissions".to_owned(), set(groups))
}

/// The Cedar request, checked against the schema unless a request of its shape passed before
/// under this snapshot; the verdict is remembered for the shape.
fn checked_request(
    engine: &Engine,
    shape: Option<&OnceLock<bool>>,
    principal: EntityUid,
    action: EntityUid,
    resource: EntityUid,
    context: Context,
) -> Result<Request, DecisionError> {
    let checked = shape.and_then(OnceLock::get) == Some(&true);
    let request = Request::new(
        principal,
        action,
        resource,
        context,
        (!checked).then_some(&engine.schema),
    );
    if let Some(shape) = shape
        && !checked
    {
        // Racing first uses compute the same verdict: whichever is stored is right.
        let _ = shape.set(request.is_ok());
    }
    request.map_err(|error| DecisionError::Schema(error.to_string()))
}

fn set(uids: Vec<EntityUid>) -> RestrictedExpression {
    RestrictedExpression::new_set(uids.into_iter().map(RestrictedExpression::new_entity_uid))
}

/// The context of a request with shares for the caller.
fn shared_context(
    permissions: (String, RestrictedExpression),
    users: &[&str],
    teams: &[&str],
) -> Result<Context, DecisionError> {
    let mut pairs = vec![permissions];
    if !users.is_empty() {
        pairs.push((
            "shared_with_users".to_owned(),
            set(users.iter().map(|id| uid("User", id)).collect()),
        ));
    }
    if !teams.is_empty() {
        pairs.push((
            "shared_with_teams".to_owned(),
            set(teams.iter().map(|id| uid("Team", id)).collect()),
        ));
    }
    Context::from_pairs(pairs).map_err(|error| DecisionError::Context(error.to_string()))
}

/// A project the directory does not list (created in ZenML, no project bindings): it sits in
/// the workspace, and its role groups exist in name only.
fn project_entity(project_id: &str, workspace: &EntityUid) -> Result<Entity, DecisionError> {
    let role = |name: &str| RestrictedExpression::new_entity_uid(uid("Role", &role_id(project_id, name)));
    let mut attrs = HashMap::from([
        (
            "name".to_owned(),
            RestrictedExpression::new_string(project_id.to_owned()),
        ),
        (
            "workspace".to_owned(),
            RestrictedExpression::new_entity_uid(workspace.clone()),
        ),
        ("members".to_owned(), role(PROJECT_MEMBERS)),
    ]);
    for (name, attribute) in PROJECT_ROLES {
        attrs.insert(attribute.to_owned(), role(name));
    }
    Entity::new(
        uid("Project", project_id),
        attrs,
        HashSet::from([workspace.clone()]),
    )
    .map_err(|error| DecisionError::Entity(format!("project: {error}")))
}
