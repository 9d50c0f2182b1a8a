//! The scope index: for each request, only the policies whose scope can match it.
//!
//! Cedar evaluates every policy of the set it is given (~0.6 µs each), so a set that grows into
//! the thousands (per-team or per-project grants) would make every decision slow. The index
//! narrows the set by each policy's scope (action, principal and resource constraints) before
//! Cedar sees it:
//!
//! * per concrete action and (principal type, resource type), a prebuilt base `PolicySet` of the
//!   policies whose scope mentions at most types (`principal`, `principal is T`, …);
//! * policies whose scope names an entity (`principal == X`, `principal in X`,
//!   `resource in X`, `is T in X`) are kept by that entity and added for requests whose principal
//!   or resource is that entity or one of its descendants.
//!
//! Architecture Invariant: the index only ever over-includes. A policy left out has a scope
//! that is false for the request, so under Cedar's semantics it can neither apply nor produce
//! an error; evaluating the selected set gives exactly the decision, determining policies and
//! errors of evaluating the whole set (a differential property test checks this on random
//! policy sets). Anything the index does not cover (template-linked policies, an action or type
//! the schema does not list) falls back to the whole set.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint,
    Request, ResourceConstraint, Schema,
};

/// What one side (principal or resource) of a policy's scope requires, as an index key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key {
    /// Any entity.
    Any,
    /// An entity of this type.
    Type(EntityTypeName),
    /// This entity or a descendant (`==`, `in`, `is T in`: all imply this).
    Under(EntityUid),
}

impl Key {
    fn principal(constraint: PrincipalConstraint) -> Key {
        match constraint {
            PrincipalConstraint::Any => Key::Any,
            PrincipalConstraint::Is(type_name) => Key::Type(type_name),
            PrincipalConstraint::In(uid)
            | PrincipalConstraint::Eq(uid)
            | PrincipalConstraint::IsIn(_, uid) => Key::Under(uid),
        }
    }

    fn resource(constraint: ResourceConstraint) -> Key {
        match constraint {
            ResourceConstraint::Any => Key::Any,
            ResourceConstraint::Is(type_name) => Key::Type(type_name),
            ResourceConstraint::In(uid) | ResourceConstraint::Eq(uid) | ResourceConstraint::IsIn(_, uid) => {
                Key::Under(uid)
            }
        }
    }

    /// Whether an entity of `type_name` with these `lineage` (itself and its ancestors) can meet it.
    fn admits(&self, type_name: &EntityTypeName, lineage: &HashSet<&EntityUid>) -> bool {
        match self {
            Key::Any => true,
            Key::Type(required) => required == type_name,
            Key::Under(uid) => lineage.contains(uid),
        }
    }
}

/// Policies of one action.
#[derive(Debug, Default)]
struct ActionBucket {
    /// (principal type, resource type) -> the policies with only type-level keys.
    base: HashMap<(EntityTypeName, EntityTypeName), PolicySet>,
    /// principal entity -> policies keyed by it, with their resource key.
    by_principal: HashMap<EntityUid, Vec<(PolicyId, Key)>>,
    /// resource entity -> policies keyed by it (and a type-level principal key).
    by_resource: HashMap<EntityUid, Vec<(PolicyId, Key)>>,
}

/// The index of one policy set.
#[derive(Debug)]
pub struct ScopeIndex {
    actions: HashMap<EntityUid, ActionBucket>,
    /// The policies, by id, for building per-request sets.
    policies: HashMap<PolicyId, Policy>,
}

impl ScopeIndex {
    /// Indexes `policies` for the actions and types of `schema`; `entities` gives the action
    /// hierarchy. `None` when the set has template-linked policies (not indexed: evaluated whole).
    pub fn build(policies: &PolicySet, schema: &Schema, entities: &Entities) -> Option<ScopeIndex> {
        if policies.policies().any(|p| p.template_id().is_some()) {
            return None;
        }
        let mut index = ScopeIndex {
            actions: HashMap::new(),
            policies: HashMap::new(),
        };
        let actions: Vec<EntityUid> = schema.actions().cloned().collect();
        for action in &actions {
            let lineage: HashSet<&EntityUid> = std::iter::once(action)
                .chain(entities.ancestors(action).into_iter().flatten())
                .collect();
            let mut bucket = ActionBucket::default();
            let mut type_level: Vec<(&Policy, Key, Key)> = Vec::new();
            for policy in policies.policies() {
                let applies = match policy.action_constraint() {
                    ActionConstraint::Any => true,
                    ActionConstraint::Eq(uid) => uid == *action,
                    ActionConstraint::In(list) => list.iter().any(|uid| lineage.contains(uid)),
                };
                if !applies {
                    continue;
                }
                let principal = Key::principal(policy.principal_constraint());
                let resource = Key::resource(policy.resource_constraint());
                match (&principal, &resource) {
                    (Key::Under(uid), _) => bucket
                        .by_principal
                        .entry(uid.clone())
                        .or_default()
                        .push((policy.id().clone(), resource)),
                    (_, Key::Under(uid)) => bucket
                        .by_resource
                        .entry(uid.clone())
                        .or_default()
                        .push((policy.id().clone(), principal)),
                    _ => type_level.push((policy, principal, resource)),
                }
                index
                    .policies
                    .entry(policy.id().clone())
                    .or_insert_with(|| policy.clone());
            }
            let principal_types: Vec<EntityTypeName> = schema
                .principals_for_action(action)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            let resource_types: Vec<EntityTypeName> = schema
                .resources_for_action(action)
                .into_iter()
                .flatten()
                .cloned()
                .collect();
            for principal_type in &principal_types {
                for resource_type in &resource_types {
                    let mut set = PolicySet::new();
                    for (policy, principal, resource) in &type_level {
                        let fits = |key: &Key, type_name: &EntityTypeName| match key {
                            Key::Type(required) => required == type_name,
                            _ => true,
                        };
                        if fits(principal, principal_type) && fits(resource, resource_type) {
                            // Ids are unique in the source set: adding cannot fail.
                            let _ = set.add((*policy).clone());
                        }
                    }
                    bucket
                        .base
                        .insert((principal_type.clone(), resource_type.clone()), set);
                }
            }
            index.actions.insert(action.clone(), bucket);
        }
        Some(index)
    }

    /// The policies to evaluate `request` with, where `entities` are the entities it is
    /// evaluated over (for the principal's and resource's ancestors). `None`: evaluate the
    /// whole set.
    pub fn select<'a>(&'a self, request: &Request, entities: &Entities) -> Option<Cow<'a, PolicySet>> {
        let (principal, action, resource) = (request.principal()?, request.action()?, request.resource()?);
        let bucket = self.actions.get(action)?;
        let base = bucket
            .base
            .get(&(principal.type_name().clone(), resource.type_name().clone()))?;
        if bucket.by_principal.is_empty() && bucket.by_resource.is_empty() {
            return Some(Cow::Borrowed(base));
        }
        let principal_lineage: HashSet<&EntityUid> = std::iter::once(principal)
            .chain(entities.ancestors(principal).into_iter().flatten())
            .collect();
        let resource_lineage: HashSet<&EntityUid> = std::iter::once(resource)
            .chain(entities.ancestors(resource).into_iter().flatten())
            .collect();
        let mut extra: Vec<&PolicyId> = Vec::new();
        for uid in &principal_lineage {
            for (id, resource_key) in bucket.by_principal.get(*uid).into_iter().flatten() {
                if resource_key.admits(resource.type_name(), &resource_lineage) {
                    extra.push(id);
                }
            }
        }
        for uid in &resource_lineage {
            for (id, principal_key) in bucket.by_resource.get(*uid).into_iter().flatten() {
                if principal_key.admits(principal.type_name(), &principal_lineage) {
                    extra.push(id);
                }
            }
        }
        if extra.is_empty() {
            return Some(Cow::Borrowed(base));
        }
        let mut set = base.clone();
        for id in extra {
            if let Some(policy) = self.policies.get(id) {
                // A policy reached twice (through two ancestors) is added once.
                let _ = set.add(policy.clone());
            }
        }
        Some(Cow::Owned(set))
    }
}
