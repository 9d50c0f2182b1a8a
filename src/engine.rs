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
use std::sync::Arc;

use cedar_policy::{Authorizer, Entities, Entity, EntityUid, PolicySet, Request};

use crate::index::{ContextReads, Over, ScopeIndex, Selection};

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
    /// What the snapshot's index read beforehand from exactly this request's context
    /// (`ScopeIndex::read_context`), when the context is one many requests share.
    pub context_reads: Option<Arc<ContextReads>>,
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

/// Decisions already made for one caller's batch (a `check_permissions` page, an
/// `allowed_resource_ids` listing), by exact Cedar request: many resources of one list page map
/// to the same stand-in request (same project, type and action, same shares for the caller),
/// and equal requests under one snapshot have equal decisions (`decide` is pure). Only requests
/// without request-scoped entities are remembered; errors are stored as evaluated and rewritten
/// for each resource. Bounded: after its capacity it only looks up. `Memo::default()` remembers
/// nothing (a single question: no copy of the request is kept for nothing).
#[derive(Debug, Default)]
pub struct Memo {
    seen: Vec<(Request, Decision)>,
    capacity: usize,
}

impl Memo {
    /// A memo for one batch: up to 32 distinct requests (a lookup compares with each).
    pub fn batch() -> Self {
        Self {
            seen: Vec::new(),
            capacity: 32,
        }
    }

    fn get(&self, request: &Request) -> Option<&Decision> {
        self.seen
            .iter()
            .find(|(seen, _)| same_request(seen, request))
            .map(|(_, decision)| decision)
    }
}

/// Equal principal, action, resource and context.
fn same_request(a: &Request, b: &Request) -> bool {
    a.principal() == b.principal()
        && a.action() == b.action()
        && a.resource() == b.resource()
        && a.context() == b.context()
}

/// Decides `request` under `snapshot`.
pub fn decide(snapshot: &PolicySnapshot, request: &AuthzRequest) -> Result<Decision, DecideError> {
    decide_with(snapshot, request, &mut Memo::default())
}

/// [`decide`], reusing the decision of an equal request made earlier in the same batch.
pub fn decide_with(
    snapshot: &PolicySnapshot,
    request: &AuthzRequest,
    memo: &mut Memo,
) -> Result<Decision, DecideError> {
    let remembered = if request.entities.is_empty() {
        memo.get(&request.request).cloned()
    } else {
        None
    };
    let mut decision = match remembered {
        Some(decision) => decision,
        None => {
            let decision = evaluate_request(snapshot, request)?;
            if request.entities.is_empty() && memo.seen.len() < memo.capacity {
                memo.seen.push((request.request.clone(), decision.clone()));
            }
            decision
        }
    };
    if let Some((stand_in, real)) = &request.alias
        && !decision.errors.is_empty()
    {
        let (stand_in, real) = (stand_in.to_string(), real.to_string());
        for error in &mut decision.errors {
            *error = error.replace(&stand_in, &real);
        }
    }
    Ok(decision)
}

/// `request`'s decision as evaluated (errors still name a stand-in resource as such).
fn evaluate_request(snapshot: &PolicySnapshot, request: &AuthzRequest) -> Result<Decision, DecideError> {
    let slice;
    // The stored stand-ins are the ZenML path's (`alias`); any other request naming one is
    // evaluated over a slice, which leaves them out, as plain Cedar over the directory would.
    let over =
        if request.entities.is_empty() && (request.alias.is_some() || !names_stand_in(snapshot, request)) {
            Over::Built(&snapshot.entities, request.context_reads.as_deref())
        } else {
            slice = self::slice(snapshot, request)?;
            Over::Other(&slice)
        };
    Ok(evaluate(
        &snapshot.policies,
        snapshot.index.as_ref(),
        &request.request,
        over,
    ))
}

/// Evaluates `request` over `over`'s entities with only the policies of `policies` that `index`
/// selects (all of them without an index); `Over::Built` only with the entities `index` was
/// built from. The decision, determining policies and errors are exactly
/// those of evaluating the whole set with Cedar (`tests/index.rs` checks it on random sets).
///
/// When entity-keyed policies apply, the base set and those few are evaluated separately and
/// combined as Cedar combines policies: a satisfied forbid denies and determines the decision;
/// otherwise a satisfied permit allows; errors from both count. That costs a second, small
/// evaluation instead of copying the base set for every request.
pub fn evaluate(
    policies: &PolicySet,
    index: Option<&ScopeIndex>,
    request: &Request,
    over: Over<'_>,
) -> Decision {
    let authorizer = Authorizer::new();
    let entities = over.entities();
    let selection = index.and_then(|index| index.select(request, over));
    let (base, extra) = match &selection {
        Some(Selection { base, extra }) => (&**base, extra.as_ref()),
        None => (policies, None),
    };
    // A denying answer's reasons are its satisfied forbids; an allowing one's, its permits.
    let (mut forbids, mut permits, mut errors) = (Vec::new(), Vec::new(), Vec::new());
    for set in std::iter::once(base).chain(extra) {
        let answer = authorizer.is_authorized(request, set, entities);
        let reasons = answer.diagnostics().reason().map(ToString::to_string);
        match answer.decision() {
            cedar_policy::Decision::Deny => forbids.extend(reasons),
            cedar_policy::Decision::Allow => permits.extend(reasons),
        }
        errors.extend(answer.diagnostics().errors().map(ToString::to_string));
    }
    let allowed = forbids.is_empty() && !permits.is_empty();
    let mut reasons = if forbids.is_empty() { permits } else { forbids };
    reasons.sort();
    reasons.dedup();
    errors.sort();
    Decision {
        allowed,
        reasons,
        errors,
    }
}

/// Whether the principal, resource or an entity the request names is a stored stand-in.
fn names_stand_in(snapshot: &PolicySnapshot, request: &AuthzRequest) -> bool {
    snapshot.stand_ins()
        && request
            .request
            .principal()
            .into_iter()
            .chain(request.request.resource())
            .chain(&request.referenced)
            .any(|uid| snapshot.is_stand_in(uid))
}

/// The entities `request` can reach: its own plus copies of the reachable stored ones (never
/// a stand-in: nothing reaches one but a ZenML request naming it, which needs no slice).
pub(crate) fn slice(snapshot: &PolicySnapshot, request: &AuthzRequest) -> Result<Entities, DecideError> {
    for entity in &request.entities {
        if snapshot.in_directory(&entity.uid()) {
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
        if let Some(entity) = snapshot.entities.get(uid)
            && !snapshot.is_stand_in(uid)
        {
            copies.push(entity.clone());
            if let Some(refs) = snapshot.attribute_refs.get(uid) {
                pending.extend(refs.iter());
            }
        }
    }
    Entities::from_entities(copies.into_iter().chain(request.entities.iter().cloned()), None)
        .map_err(|error| DecideError::Entities(error.to_string()))
}
