//! The decision engine: a pure function of (snapshot, request).
//!
//! Architecture Invariant: [`decide`] does no IO, takes no locks and never awaits; the same
//! snapshot and request always give the same decision. Deny is an outcome (`allowed: false`),
//! not an error; a [`DecideError`] means the request could not be evaluated, and callers fail
//! closed on it.
//!
//! Request-scoped entities (a ZenML resource, a caller's `additional_entities`) are never added
//! to the shared store. The request is evaluated over a *slice* instead: the request-scoped
//! entities plus copies of the stored entities the evaluation can reach (the principal, the
//! action, the resource, everything named by the context, by a request-scoped entity or by a
//! policy literal, and, transitively, everything their attributes name). Cedar looks entity
//! data up only by attribute access and `in` on the left-hand entity, whose ancestors are stored
//! with it, so the slice gives exactly the decision the merged store would, at a cost that does
//! not depend on the store's size.

use std::collections::HashSet;

use cedar_policy::{Authorizer, Entities, Entity, EntityUid, Request};

use crate::policy::PolicySnapshot;

/// One authorization question.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    /// Principal, action, resource and context (already checked against the schema).
    pub request: Request,
    /// Request-scoped entities; they may not redefine a stored entity.
    pub entities: Vec<Entity>,
    /// Entities named in the context or by the request-scoped entities (attributes, parents).
    pub referenced: Vec<EntityUid>,
    /// (stand-in, real resource) when the resource is evaluated as a stored stand-in with the
    /// same data (`zenml::standin`): errors are reported with the real resource's uid.
    pub alias: Option<(EntityUid, EntityUid)>,
}

/// The answer: allow or deny, the policies that determined it, and evaluation errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// True only when some permit applied and no forbid did.
    pub allowed: bool,
    /// Ids of the determining policies, sorted.
    pub reasons: Vec<String>,
    /// Policies that failed to evaluate (they were skipped, as Cedar specifies).
    pub errors: Vec<String>,
}

/// Why a request could not be evaluated at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecideError {
    /// A request-scoped entity has the uid of a stored one.
    #[error("entity `{0}` is already in the directory; request-scoped entities cannot redefine it")]
    Redefined(String),
    /// The slice could not be assembled (e.g. two request-scoped entities with one uid).
    #[error("request-scoped entities: {0}")]
    Entities(String),
}

/// Decides `request` under `snapshot`.
pub fn decide(snapshot: &PolicySnapshot, request: &AuthzRequest) -> Result<Decision, DecideError> {
    let slice;
    let entities = if request.entities.is_empty() {
        &snapshot.entities
    } else {
        slice = self::slice(snapshot, request)?;
        &slice
    };
    // Only the policies whose scope can match (see `index`), or all of them.
    let selected = snapshot
        .index
        .as_ref()
        .and_then(|index| index.select(&request.request, entities));
    let policies = selected.as_deref().unwrap_or(&snapshot.policies);
    let response = Authorizer::new().is_authorized(&request.request, policies, entities);
    let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    reasons.sort();
    let mut errors: Vec<String> = response.diagnostics().errors().map(ToString::to_string).collect();
    if let Some((stand_in, real)) = &request.alias
        && !errors.is_empty()
    {
        let (stand_in, real) = (stand_in.to_string(), real.to_string());
        for error in &mut errors {
            *error = error.replace(&stand_in, &real);
        }
    }
    Ok(Decision {
        allowed: response.decision() == cedar_policy::Decision::Allow,
        reasons,
        errors,
    })
}

/// The entities `request` can reach: its own plus copies of the reachable stored ones.
pub(crate) fn slice(snapshot: &PolicySnapshot, request: &AuthzRequest) -> Result<Entities, DecideError> {
    for entity in &request.entities {
        if snapshot.entities.get(&entity.uid()).is_some() {
            return Err(DecideError::Redefined(entity.uid().to_string()));
        }
    }
    let mut pending: Vec<&EntityUid> = Vec::with_capacity(16);
    pending.extend(request.request.principal());
    pending.extend(request.request.action());
    pending.extend(request.request.resource());
    pending.extend(request.referenced.iter());
    pending.extend(snapshot.policy_literals.iter());

    let mut seen: HashSet<&EntityUid> = HashSet::with_capacity(16);
    let mut copies = Vec::with_capacity(8);
    while let Some(uid) = pending.pop() {
        if !seen.insert(uid) {
            continue;
        }
        if let Some(entity) = snapshot.entities.get(uid) {
            copies.push(entity.clone());
            if let Some(refs) = snapshot.attribute_refs.get(uid) {
                pending.extend(refs.iter());
            }
        }
    }
    Entities::from_entities(copies.into_iter().chain(request.entities.iter().cloned()), None)
        .map_err(|error| DecideError::Entities(error.to_string()))
}
