//! From a ZenML question to a Cedar request.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;

use cedar_policy::{Context, Entity, EntityUid, Request, RestrictedExpression};

use super::resource::Resource;
use super::shares::ShareSet;
use super::{Decider, DecisionError, standin};
use crate::directory::{PROJECT_MEMBERS, PROJECT_ROLES, permission_id, role_id};
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
    let (engine, view) = (decider.engine, decider.view);
    let directory = &view.directory;
    let Some(user) = directory.users.get(question.user_id) else {
        return Ok(Prepared::Denied(format!("unknown user `{}`", question.user_id)));
    };
    let Some(resource_type) = question.resource.resource_type() else {
        return Ok(Prepared::Denied(format!(
            "unknown resource type `{}`",
            question.resource.type_name
        )));
    };
    let Some(action) = action_from_wire(question.action) else {
        return Ok(Prepared::Denied(format!("unknown action `{}`", question.action)));
    };
    if !directory.workspaces.contains_key(question.workspace_id) {
        return Ok(Prepared::Denied(format!(
            "unknown workspace `{}`",
            question.workspace_id
        )));
    }
    let workspace = uid("Workspace", question.workspace_id);
    let mut entities = Vec::with_capacity(2);
    let mut referenced = vec![workspace.clone()];

    // The project the resource is in (or is), stored or request-scoped.
    let project_id = question.resource.scope_project();
    let mut stored_scope = true;
    if let Some(project_id) = project_id {
        match directory.projects.get(project_id) {
            Some(project) if project.workspace_id == question.workspace_id => {}
            Some(_) => {
                return Ok(Prepared::Denied(format!(
                    "project `{project_id}` belongs to another workspace"
                )));
            }
            None => {
                entities.push(project_entity(project_id, &workspace)?);
                stored_scope = false;
            }
        }
        referenced.push(uid("Project", project_id));
    }
    let mut alias = None;

    // The resource itself: an instance, or the whole type ("*").
    let instance = question.resource.id.as_deref().unwrap_or("*");
    let resource = if resource_type == PROJECT {
        let resource = uid("Project", instance);
        if question.resource.id.is_none() {
            entities.push(project_entity("*", &workspace)?);
        }
        resource
    } else if resource_as == ResourceAs::StandIn
        && stored_scope
        && view.stand_ins
        && standin::exists(&resource_type, project_id.is_some())
    {
        // The stored stand-in of this type in this scope carries the same data.
        let real = uid(resource_type.cedar, instance);
        let scope = project_id.unwrap_or(question.workspace_id);
        let stand_in = uid(resource_type.cedar, &standin::id(scope));
        alias = Some((stand_in.clone(), real));
        stand_in
    } else {
        let resource = uid(resource_type.cedar, instance);
        let project = project_id.map(|project_id| uid("Project", project_id));
        entities.push(
            standin::resource_entity(resource.clone(), &workspace, project.as_ref())
                .map_err(DecisionError::Entity)?,
        );
        resource
    };

    // Context: the custom-role groups whose grid has this (scope, type, action) cell, at the
    // project and at the workspace, and the shares that would allow exactly this request.
    let permissions = || {
        let cells = [project_id, Some(question.workspace_id)];
        let groups = cells
            .into_iter()
            .flatten()
            .filter_map(|scope| {
                directory
                    .cell_roles
                    .get(&permission_id(scope, resource_type.wire, action))
            })
            .flatten()
            .map(|group| uid("Role", group))
            .collect();
        ("permissions".to_owned(), set(groups))
    };
    let (mut users, mut teams) = match &question.resource.id {
        Some(_) => shares.shared_with(question.workspace_id, &question.resource.to_string(), action),
        None => (Vec::new(), Vec::new()),
    };
    // Implicit membership: whoever has a resource of a project shared with them may see it.
    if resource_type == PROJECT
        && action == "read"
        && let Some(project_id) = &question.resource.id
    {
        let (project_users, project_teams) = shares.project_grantees(question.workspace_id, project_id);
        users.extend(project_users);
        teams.extend(project_teams);
    }
    // Only the grantees that can be the caller: the caller and the caller's teams (teams are
    // flat, so `principal in Team` is exactly team membership). A project can have hundreds of
    // grantees; the decision needs only these, and the context stays a few entries long.
    users.retain(|id| *id == user.named.id);
    teams.retain(|id| user.teams.iter().any(|team| team == id));
    let (context, context_reads) = if users.is_empty() && teams.is_empty() {
        view.contexts.get(
            engine,
            (question.workspace_id, project_id),
            &resource_type,
            action,
            || {
                Context::from_pairs([permissions()])
                    .map_err(|error| DecisionError::Context(error.to_string()))
            },
        )?
    } else {
        (shared_context(permissions(), &users, &teams)?, None)
    };
    let shape = view
        .shapes
        .slot(action, &resource_type, !users.is_empty(), !teams.is_empty());
    let checked = shape.and_then(OnceLock::get) == Some(&true);
    let request = Request::new(
        uid("User", &user.named.id),
        uid("Action", action),
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
    let request = request.map_err(|error| DecisionError::Schema(error.to_string()))?;
    Ok(Prepared::Request(
        Box::new(AuthzRequest {
            request,
            entities: if entities.is_empty() {
                crate::engine::no_entities()
            } else {
                entities.into()
            },
            referenced,
            internal: alias.is_some(),
            context: context_reads,
        }),
        alias.map(Box::new),
    ))
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
