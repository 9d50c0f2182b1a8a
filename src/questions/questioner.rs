//! Many ZenML questions, for real users or for synthetic ones (a member of one team, a holder
//! of some roles), the way `who-can`, `what-can` and the binding lints ask them.
//!
//! A question is prepared by `zenml::Decider::prepare` for a real user (the request the server
//! would decide, its resource written out as a request-scoped entity) and decided by the one
//! decision path, `Engine::decide`. For a synthetic principal the prepared request keeps its
//! action, resource and context and takes a request-scoped active user whose parents are given.
//!
//! The type-level questions of a scope (a grid: resource type × action) do not depend on the
//! principal, so they are prepared once per scope. One principal's questions at one scope
//! ([`Asking`]) share one `Arc` of request-scoped entities (the scope's type-level resources,
//! and the synthetic user) and one set of references, so one `Batch::many()` slices once for
//! all of them; by the slice invariant the decisions are those of asking one by one.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::sync::Arc;

use cedar_policy::{Entity, EntityUid, Request, RestrictedExpression};

use crate::directory::{BindingScope, Directory, Project, Workspace};
use crate::engine::{AuthzRequest, Batch, Decision, Engine};
use crate::model::{ACTIONS, PROJECT, RESOURCE_TYPES, uid};
use crate::zenml::{Decider, Prepared, Question, Resource, ResourceAs, ShareSet};

/// The id of the synthetic user that stands for a team or a set of roles.
const MEMBER_ID: &str = "zenml-authz:probe";

/// Who a question is about.
#[derive(Debug, Clone, Copy)]
pub enum Who<'a> {
    /// A user or service account of the directory, by id.
    User(&'a str),
    /// A synthetic active user, member (`in`) of exactly these entities (teams, role groups).
    MemberOf(&'a [EntityUid]),
}

/// A scope of a grid: a workspace (its global types) or a project (itself and its
/// project-scoped types).
#[derive(Debug, Clone, Copy)]
pub enum GridScope<'d> {
    /// A workspace: its global resource types.
    Workspace(&'d Workspace),
    /// A project: itself and its project-scoped resource types.
    Project(&'d Project),
}

/// One row of a grid: a resource type and the actions allowed on it.
pub type Row = (&'static str, Vec<&'static str>);

/// Asks ZenML questions under one snapshot, with one set of shares.
pub struct Questioner<'a> {
    decider: Decider<'a>,
    shares: &'a ShareSet,
    /// Any user of the directory: `prepare` needs one to build a request.
    template_user: Option<&'a str>,
    /// The prepared questions of each grid scope, by scope id.
    scopes: RefCell<HashMap<String, Rc<ScopeQuestions>>>,
}

/// A scope's type-level questions, prepared for the template user.
pub struct ScopeQuestions {
    /// Row labels (resource types).
    labels: Vec<&'static str>,
    /// Every question `prepare` did not deny outright, in grid order.
    questions: Vec<ScopeQuestion>,
    /// The request-scoped entities of all of them (the type-level resources: one per uid).
    entities: Vec<Entity>,
    /// Every entity the requests name besides their principal: actions, resources, and what
    /// `prepare` lists as referenced (workspace, project).
    referenced: Vec<EntityUid>,
}

/// One type-level question of a scope.
pub struct ScopeQuestion {
    /// Its row in the grid.
    pub row: usize,
    /// The action.
    pub action: &'static str,
    /// The request, for the template user.
    request: Request,
}

/// One principal's questions at one scope: one set of request-scoped entities, one batch.
pub struct Asking<'a> {
    engine: &'a Engine,
    scope: Rc<ScopeQuestions>,
    principal: EntityUid,
    /// The request-scoped entities of every question (shared: the batch slices once).
    entities: Arc<[Entity]>,
    /// The entities every question names besides its principal.
    referenced: Vec<EntityUid>,
    /// The last request asked; only its Cedar request changes from question to question.
    request: Option<AuthzRequest>,
    batch: Batch,
}

// === impl GridScope ===

impl GridScope<'_> {
    /// The same workspace or project as a binding's scope.
    pub fn binding_scope(&self) -> BindingScope {
        match self {
            GridScope::Workspace(workspace) => BindingScope::Workspace(workspace.named.id.as_str().into()),
            GridScope::Project(project) => BindingScope::Project(project.named.id.as_str().into()),
        }
    }

    /// The workspace's or project's id.
    pub fn id(&self) -> &str {
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

// === impl Questioner ===

impl<'a> Questioner<'a> {
    /// A questioner over the decider's snapshot, with these shares.
    pub fn new(decider: Decider<'a>, shares: &'a ShareSet) -> Self {
        let directory: &'a Directory = decider.directory();
        Self {
            decider,
            shares,
            template_user: directory.users.keys().min().map(String::as_str),
            scopes: RefCell::default(),
        }
    }

    /// One question, as one of `batch`.
    pub fn ask(
        &self,
        who: Who<'_>,
        question: (&str, &str, &Resource),
        batch: &mut Batch,
    ) -> Result<Decision, String> {
        let (workspace_id, action, resource) = question;
        let user_id = match who {
            Who::User(id) => id,
            Who::MemberOf(_) => self.template_user()?,
        };
        let question = Question {
            workspace_id,
            user_id,
            action,
            resource,
        };
        let request = match self
            .decider
            .prepare(self.shares, &question, ResourceAs::Written)
            .map_err(|error| error.to_string())?
        {
            Prepared::Request(request, _) => *request,
            Prepared::Denied(why) => return Ok(Decision::denied(why)),
        };
        let request = match who {
            Who::User(_) => request,
            Who::MemberOf(parents) => self.with_member(request, parents)?,
        };
        self.decider
            .engine()
            .decide(&request, batch)
            .map_err(|error| error.to_string())
    }

    /// Resource type -> allowed actions at one scope.
    pub fn grid(&self, who: Who<'_>, scope: GridScope<'_>) -> Result<Vec<Row>, String> {
        let mut asking = self.asking(who, scope)?;
        let mut rows: Vec<Row> = asking
            .scope
            .labels
            .iter()
            .map(|label| (*label, Vec::new()))
            .collect();
        for index in 0..asking.len() {
            if asking.allowed(index)?
                && let Some(question) = asking.scope.questions.get(index)
                && let Some((_, actions)) = rows.get_mut(question.row)
            {
                actions.push(question.action);
            }
        }
        Ok(rows)
    }

    /// `who`'s questions at `scope`, to be asked one by one ([`Asking::allowed`]).
    pub fn asking(&self, who: Who<'_>, scope: GridScope<'_>) -> Result<Asking<'a>, String> {
        let prepared = self.scope_questions(scope)?;
        let mut entities = prepared.entities.clone();
        let mut referenced = prepared.referenced.clone();
        let principal = match who {
            Who::User(id) => uid("User", id),
            Who::MemberOf(parents) => {
                entities.push(member_entity(parents)?);
                referenced.extend(parents.iter().cloned());
                uid("User", MEMBER_ID)
            }
        };
        Ok(Asking {
            engine: self.decider.engine(),
            scope: prepared,
            principal,
            entities: entities.into(),
            referenced,
            request: None,
            batch: Batch::many(),
        })
    }

    /// How many questions `scope` has (those `prepare` does not deny outright).
    pub fn question_count(&self, scope: GridScope<'_>) -> Result<usize, String> {
        Ok(self.scope_questions(scope)?.questions.len())
    }

    fn template_user(&self) -> Result<&'a str, String> {
        self.template_user
            .ok_or_else(|| "the directory has no users to build a request from".to_owned())
    }

    /// `request` asked by a synthetic active user who is a member of `parents`.
    fn with_member(&self, mut request: AuthzRequest, parents: &[EntityUid]) -> Result<AuthzRequest, String> {
        let inner = &request.request;
        let (Some(action), Some(resource), Some(context)) =
            (inner.action(), inner.resource(), inner.context())
        else {
            return Err("internal: an incomplete request".into());
        };
        request.request = Request::new(
            uid("User", MEMBER_ID),
            action.clone(),
            resource.clone(),
            context.clone(),
            Some(&self.decider.engine().schema),
        )
        .map_err(|error| format!("request does not fit the schema: {error}"))?;
        request.entities = request
            .entities
            .cedar()
            .iter()
            .cloned()
            .chain([member_entity(parents)?])
            .collect::<Vec<_>>()
            .into();
        request.referenced.extend(parents.iter().cloned());
        Ok(request)
    }

    /// The type-level questions of `scope`, prepared on first use.
    fn scope_questions(&self, scope: GridScope<'_>) -> Result<Rc<ScopeQuestions>, String> {
        if let Some(prepared) = self.scopes.borrow().get(scope.id()) {
            return Ok(prepared.clone());
        }
        let user_id = self.template_user()?;
        let labelled = scope.questions();
        let mut questions = Vec::new();
        let mut entities: HashMap<EntityUid, Entity> = HashMap::new();
        let mut referenced: BTreeSet<EntityUid> = BTreeSet::new();
        for (row, (_, resource)) in labelled.iter().enumerate() {
            for action in ACTIONS {
                let question = Question {
                    workspace_id: scope.workspace_id(),
                    user_id,
                    action,
                    resource,
                };
                let prepared = self
                    .decider
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
                    for entity in scoped.cedar().iter() {
                        entities.entry(entity.uid()).or_insert_with(|| entity.clone());
                    }
                    questions.push(ScopeQuestion { row, action, request });
                }
            }
        }
        let prepared = Rc::new(ScopeQuestions {
            labels: labelled.iter().map(|(label, _)| *label).collect(),
            questions,
            entities: entities.into_values().collect(),
            referenced: referenced.into_iter().collect(),
        });
        self.scopes
            .borrow_mut()
            .insert(scope.id().to_owned(), prepared.clone());
        Ok(prepared)
    }
}

// === impl Asking ===

impl Asking<'_> {
    /// How many questions the scope has.
    pub fn len(&self) -> usize {
        self.scope.questions.len()
    }

    /// Whether the scope has no questions.
    pub fn is_empty(&self) -> bool {
        self.scope.questions.is_empty()
    }

    /// The resource type (row label) and action of the `index`th question.
    pub fn question(&self, index: usize) -> Option<(&'static str, &'static str)> {
        let question = self.scope.questions.get(index)?;
        Some((*self.scope.labels.get(question.row)?, question.action))
    }

    /// Whether the principal may do the `index`th question of the scope.
    pub fn allowed(&mut self, index: usize) -> Result<bool, String> {
        Ok(self.decide(index)?.allowed)
    }

    /// The decision on the `index`th question of the scope, with its determining policies.
    pub fn decide(&mut self, index: usize) -> Result<Decision, String> {
        let Some(question) = self.scope.questions.get(index) else {
            return Err("internal: no such question".into());
        };
        let asked = &question.request;
        let (Some(action), Some(resource), Some(context)) =
            (asked.action(), asked.resource(), asked.context())
        else {
            return Err("internal: an incomplete request".into());
        };
        // Checked against the schema by `prepare`; only the principal changes.
        let cedar = Request::new(
            self.principal.clone(),
            action.clone(),
            resource.clone(),
            context.clone(),
            None,
        )
        .map_err(|error| format!("request: {error}"))?;
        let request = match &mut self.request {
            Some(request) => {
                request.request = cedar;
                request
            }
            None => self.request.insert(AuthzRequest {
                request: cedar,
                entities: self.entities.clone().into(),
                referenced: self.referenced.clone(),
                internal: false,
                context: None,
            }),
        };
        self.engine
            .decide(request, &mut self.batch)
            .map_err(|error| error.to_string())
    }
}

/// The synthetic active user, member of `parents`.
fn member_entity(parents: &[EntityUid]) -> Result<Entity, String> {
    let attrs = HashMap::from([
        (
            "name".to_owned(),
            RestrictedExpression::new_string(MEMBER_ID.to_owned()),
        ),
        (
            "is_service_account".to_owned(),
            RestrictedExpression::new_bool(false),
        ),
        ("active".to_owned(), RestrictedExpression::new_bool(true)),
    ]);
    Entity::new(uid("User", MEMBER_ID), attrs, parents.iter().cloned().collect())
        .map_err(|error| format!("probe entity: {error}"))
}
