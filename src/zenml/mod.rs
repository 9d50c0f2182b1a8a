//! ZenML on Cedar: resource strings, the request a ZenML question becomes, stand-ins, shares,
//! memberships (who may enter a workspace), tokens, and the ZenML decisions.
//!
//! A ZenML question is (workspace, user id, action, resource string). [`Decider::prepare`]
//! turns it into a Cedar request over the `ZenML` schema: the principal from the directory, the
//! resource (its stand-in, or a request-scoped entity in its project or workspace), and a
//! context naming the custom-role grid cells and the shares that would allow exactly this
//! request. [`Decider::decide`] decides it through the engine's one decision path. Knows no
//! HTTP: the ZenML API's handlers are `http::zenml`.

pub mod membership;
mod request;
pub mod resource;
pub mod shares;
pub(crate) mod standin;
pub mod token;

pub use membership::{Admission, Memberships, NotAMember, Reach};
pub use request::{Alias, Prepared, Question, ResourceAs};
pub use resource::{Resource, ResourceError};
pub use shares::{Grantee, ShareActions, ShareSet};

use std::sync::Arc;

use crate::directory::Directory;
use crate::engine::{self, AuthzRequest, Batch, Decision, Engine};
use crate::model::PROJECT;

/// Settings of the ZenML API.
#[derive(Debug, Clone)]
pub struct ZenmlConfig {
    /// Path prefix of every ZenML endpoint, e.g. `/zenml`.
    pub base_path: String,
    /// Lifetime of issued tokens, seconds (ZenML renews 5 minutes before expiry).
    pub token_ttl_secs: u64,
    /// Signing key of issued tokens.
    pub token_key: token::TokenKey,
    /// The ZenML server the dashboard sign-in completes at (`--dashboard-zenml-url`), if any.
    pub dashboard_zenml_url: Option<String>,
}

/// Why a ZenML question could not be evaluated (callers deny).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecisionError {
    /// The request does not fit the schema (a schema that no longer fits ZenML's model).
    #[error("request does not fit the schema: {0}")]
    Schema(String),
    /// The request's context could not be built.
    #[error("context: {0}")]
    Context(String),
    /// A request-scoped entity could not be built.
    #[error("entity: {0}")]
    Entity(String),
    /// The engine could not evaluate the request.
    #[error(transparent)]
    Engine(#[from] engine::DecideError),
}

/// The ZenML side of one snapshot: the directory and the tables the request builder fills as
/// questions come (per snapshot, so a reload starts them afresh).
#[derive(Debug)]
pub struct View {
    directory: Arc<Directory>,
    /// What the directory alone says (shared by the snapshots of one directory).
    facts: Arc<DirectoryFacts>,
    /// Whether the engine's store holds the stand-ins.
    stand_ins: bool,
    shapes: request::RequestShapes,
    contexts: request::ScopeContexts,
}

/// What a view learns of its directory alone, not of the policies: computed once per
/// directory and shared by the views of every snapshot that loads it unchanged (a policy edit
/// does not compute them again).
#[derive(Debug)]
pub struct DirectoryFacts {
    /// Who is a member of which workspace and project.
    memberships: Memberships,
    /// The organization admins' user ids (user-info asks on every request ZenML authenticates
    /// with a raw API key).
    organization_admins: std::collections::HashSet<String>,
}

impl DirectoryFacts {
    /// The facts of `directory`.
    pub fn of(directory: &Directory) -> Self {
        Self {
            memberships: Memberships::of(directory),
            organization_admins: directory.organization_admins(),
        }
    }
}

impl View {
    /// The view of `directory` with its `facts` ([`DirectoryFacts::of`] the same directory),
    /// whose store holds the stand-ins when `stand_ins`.
    pub fn new(directory: Arc<Directory>, facts: Arc<DirectoryFacts>, stand_ins: bool) -> Self {
        Self {
            facts,
            directory,
            stand_ins,
            shapes: Default::default(),
            contexts: Default::default(),
        }
    }

    /// The directory.
    pub fn directory(&self) -> &Directory {
        &self.directory
    }

    /// Who is a member of which workspace and project, by the directory's role bindings.
    pub fn memberships(&self) -> &Memberships {
        &self.facts.memberships
    }

    /// Whether `user_id` holds the organization's `admin` role, directly or through a team.
    pub fn is_organization_admin(&self, user_id: &str) -> bool {
        self.facts.organization_admins.contains(user_id)
    }

    /// Whether ZenML resources are evaluated as their stored stand-ins (`standin`).
    pub fn stand_ins(&self) -> bool {
        self.stand_ins
    }
}

/// ZenML decisions under one snapshot: its engine and its ZenML view.
#[derive(Debug, Clone, Copy)]
pub struct Decider<'s> {
    engine: &'s Engine,
    view: &'s View,
}

impl<'s> Decider<'s> {
    /// Decisions over `engine` with `view` (of the same snapshot).
    pub fn new(engine: &'s Engine, view: &'s View) -> Self {
        Self { engine, view }
    }

    /// The directory.
    pub fn directory(&self) -> &'s Directory {
        &self.view.directory
    }

    /// The engine.
    pub fn engine(&self) -> &'s Engine {
        self.engine
    }

    /// The Cedar request `question` becomes (or a deny before evaluation).
    pub fn prepare(
        &self,
        shares: &ShareSet,
        question: &Question<'_>,
        resource_as: ResourceAs,
    ) -> Result<Prepared, DecisionError> {
        request::prepare(self, shares, question, resource_as)
    }

    /// The decision for one ZenML question, as one of `batch` (uncached); `Err` when it could
    /// not be evaluated, which callers treat as a deny.
    pub fn decide(
        &self,
        shares: &ShareSet,
        question: &Question<'_>,
        batch: &mut Batch,
    ) -> Result<Decision, DecisionError> {
        match self.prepare(shares, question, ResourceAs::StandIn)? {
            Prepared::Request(request, alias) => self.decide_prepared(&request, alias.as_deref(), batch),
            Prepared::Denied(why) => Ok(Decision::denied(why)),
        }
    }

    /// Decides a prepared request; errors naming a stand-in name the real resource.
    pub fn decide_prepared(
        &self,
        request: &AuthzRequest,
        alias: Option<&Alias>,
        batch: &mut Batch,
    ) -> Result<Decision, DecisionError> {
        let mut decision = self.engine.decide(request, batch)?;
        if let Some((stand_in, real)) = alias
            && !decision.errors.is_empty()
        {
            let (stand_in, real) = (stand_in.to_string(), real.to_string());
            for error in &mut decision.errors {
                *error = error.replace(&stand_in, &real);
            }
        }
        Ok(decision)
    }

    /// `None` for full access to the type of the type-level `question`, else the ids of the
    /// instances the sidecar knows of (shared ones; for projects, also the directory's) for
    /// which `check` allows the question.
    pub fn allowed_ids(
        &self,
        shares: &ShareSet,
        question: &Question<'_>,
        mut check: impl FnMut(&Question<'_>) -> bool,
    ) -> Option<Vec<String>> {
        let (workspace, type_level) = (question.workspace_id, question.resource);
        if check(question) {
            return None;
        }
        let mut candidates: Vec<String> = shares
            .shared_ids(workspace, type_level.project_id.as_deref(), &type_level.type_name)
            .into_iter()
            .map(str::to_owned)
            .collect();
        if type_level.resource_type() == Some(PROJECT) {
            candidates.extend(
                self.directory()
                    .projects
                    .values()
                    .filter(|p| p.workspace_id == workspace)
                    .map(|p| p.named.id.clone()),
            );
            candidates.extend(shares.shared_projects(workspace).into_iter().map(str::to_owned));
        }
        candidates.sort();
        candidates.dedup();
        let ids = candidates
            .into_iter()
            .filter(|id| {
                let instance = Resource {
                    id: Some(id.clone()),
                    ..type_level.clone()
                };
                check(&Question {
                    resource: &instance,
                    ..*question
                })
            })
            .collect();
        Some(ids)
    }

    /// [`Self::allowed_ids`] with every check decided here, in one batch; a check that cannot be
    /// decided denies. For callers without a cache or metrics of their own (tools, tests).
    pub fn allowed_ids_decided(&self, shares: &ShareSet, question: &Question<'_>) -> Option<Vec<String>> {
        let mut batch = Batch::many();
        self.allowed_ids(shares, question, |q| {
            self.decide(shares, q, &mut batch).is_ok_and(|d| d.allowed)
        })
    }
}
