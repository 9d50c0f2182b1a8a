//! The scope index: for each request, only the policies whose scope can match it.
//!
//! Cedar evaluates every policy of the set it is given (~0.6 µs each), so a set that grows into
//! the thousands (per-team or per-project grants) would make every decision slow. The index
//! narrows the set by each policy's scope (action, principal and resource constraints) before
//! Cedar sees it:
//!
//! * per concrete action and (principal type, resource type), a base `PolicySet` of the
//!   policies whose scope mentions at most types (`principal`, `principal is T`, …), less those
//!   whose leading guards (`resource is T || …`, `context has k`, `resource has a`,
//!   `principal in resource.workspace.developers`: see [`guards`]) rule them out for the
//!   request: one set per outcome of the tests the bucket's guards make, built on first use
//!   and kept while the index's budget lasts;
//! * policies whose scope names an entity (`principal == X`, `principal in X`,
//!   `resource in X`, `is T in X`) are kept by that entity and selected for requests whose
//!   principal or resource is that entity or one of its descendants. They are returned as a
//!   small set of their own beside the prebuilt base set, never merged into a copy of it:
//!   `engine::evaluate` evaluates both and combines the answers as Cedar would.
//!
//! Architecture Invariant: the index only ever over-includes. A policy left out has a scope,
//! or a leading guard, that is false for the request, so under Cedar's semantics it can neither
//! apply nor produce an error; evaluating the selection (`engine::evaluate`) gives exactly the
//! decision, determining policies and errors of evaluating the whole set (a differential property test checks this on random
//! policy sets). Anything the index does not cover (template-linked policies, an action or type
//! the schema does not list) falls back to the whole set.

mod graph;
mod guards;

use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

pub use graph::Graph;
pub use guards::ContextReads;
use guards::{Atoms, Guard, Truths};

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

    /// Whether `entity` (with its ancestors in `entities`) can meet it.
    fn admits(&self, entity: &EntityUid, entities: &Entities) -> bool {
        match self {
            Key::Any => true,
            Key::Type(required) => required == entity.type_name(),
            Key::Under(uid) => uid == entity || entities.is_ancestor_of(uid, entity),
        }
    }
}

/// A [`Key`] as the index's graph numbers types and entities; `None`: the graph never met it,
/// so no stored entity meets the key.
#[derive(Debug, Clone, Copy)]
enum StoredKey {
    Any,
    Type(Option<u16>),
    Under(Option<u32>),
}

impl StoredKey {
    fn of(key: &Key, graph: &Graph) -> StoredKey {
        match key {
            Key::Any => StoredKey::Any,
            Key::Type(type_name) => StoredKey::Type(graph.type_id(type_name)),
            Key::Under(uid) => StoredKey::Under(graph.id(uid)),
        }
    }

    /// [`Key::admits`] for a stored entity.
    fn admits(self, entity: u32, graph: &Graph) -> bool {
        match self {
            StoredKey::Any => true,
            StoredKey::Type(required) => required == Some(graph.type_of(entity)),
            StoredKey::Under(key) => key.is_some_and(|key| graph.within(entity, key)),
        }
    }
}

/// The entities a request is evaluated over.
#[derive(Debug, Clone, Copy)]
pub enum Over<'e> {
    /// The entities the index was built with (the snapshot's store): the index reads the
    /// request's guards and ancestors from its own tables ([`graph`]); with what it read
    /// beforehand from the request's context ([`ScopeIndex::read_context`]), if kept.
    Built(&'e Entities, Option<&'e ContextReads>),
    /// Other entities (a slice with request-scoped entities): read through Cedar's API.
    Other(&'e Entities),
}

impl<'e> Over<'e> {
    /// The entities.
    pub fn entities(self) -> &'e Entities {
        match self {
            Over::Built(entities, _) | Over::Other(entities) => entities,
        }
    }
}

/// The type-level policies of one (action, principal type, resource type).
#[derive(Debug)]
struct Base {
    principal_type: EntityTypeName,
    resource_type: EntityTypeName,
    /// Indexes into `ScopeIndex::type_level` of the policies whose scope and type-only guards
    /// can match.
    policies: Vec<usize>,
    /// The atoms their remaining guards read (bits of `ScopeIndex::atoms`).
    atoms: u32,
    /// The policy set per combination of those atoms' truths seen so far (key: true bits, and
    /// unknown bits shifted by 32), built on first use. Read without a lock; a new set is added
    /// by copying the (small) map.
    sets: ArcSwap<FxHashMap<u64, Arc<PolicySet>>>,
}

impl Base {
    /// The set for a request with these atom truths (over all of the index's atoms). At most
    /// `budget` sets are kept over the whole index; past it, a set is built for the request.
    fn set(
        &self,
        truths: Truths,
        type_level: &[(Policy, Vec<Guard>)],
        budget: &AtomicUsize,
    ) -> Arc<PolicySet> {
        let truths = truths.masked(self.atoms);
        let key = u64::from(truths.holds) | u64::from(truths.unknown) << 32;
        if let Some(set) = self.sets.load().get(&key) {
            return Arc::clone(set);
        }
        let mut set = PolicySet::new();
        for &at in &self.policies {
            let (policy, guards) = &type_level[at];
            if !guards::rules_out(guards, &self.principal_type, &self.resource_type, truths) {
                // Ids are unique in the source set: adding cannot fail.
                let _ = set.add(policy.clone());
            }
        }
        let set = Arc::new(set);
        let kept = budget
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| left.checked_sub(1))
            .is_ok();
        if kept {
            // Racing first uses build equal sets: whichever is stored is right.
            self.sets.rcu(|sets| {
                let mut sets = FxHashMap::clone(sets);
                sets.entry(key).or_insert_with(|| Arc::clone(&set));
                sets
            });
        }
        set
    }
}

/// At most this many policy sets are kept per index (each holds a few policies: a few MB).
const KEPT_SETS: usize = 4096;

/// Policies of one action.
#[derive(Debug, Default)]
struct ActionBucket {
    /// (principal type, resource type) -> the policies with only type-level keys.
    base: HashMap<(EntityTypeName, EntityTypeName), Base>,
    /// principal entity -> policies keyed by it, with their resource key.
    by_principal: FxHashMap<EntityUid, Vec<(PolicyId, Key)>>,
    /// resource entity -> policies keyed by it (and a type-level principal key).
    by_resource: FxHashMap<EntityUid, Vec<(PolicyId, Key)>>,
    /// The types of `by_principal`'s and `by_resource`'s keys: a principal's ancestors of other
    /// types (a user has hundreds of role and permission groups) are skipped without hashing.
    principal_key_types: Vec<EntityTypeName>,
    resource_key_types: Vec<EntityTypeName>,
    /// `by_principal` and `by_resource`, the type lists too, as the index's graph numbers
    /// entities and types (keys it has not met cannot match a stored entity: left out).
    by_principal_id: FxHashMap<u32, Vec<(PolicyId, StoredKey)>>,
    by_resource_id: FxHashMap<u32, Vec<(PolicyId, StoredKey)>>,
    principal_key_type_ids: Vec<u16>,
    resource_key_type_ids: Vec<u16>,
}

/// Probed once per ancestor of a request's principal and resource: a fast hash, not SipHash
/// (the keys are policy literals, not attacker-chosen).
type FxHashMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// `uid` and its ancestors in `entities`, of the `types` some policy is keyed by.
fn keyed<'e>(
    uid: &'e EntityUid,
    entities: &'e Entities,
    types: &'e [EntityTypeName],
) -> impl Iterator<Item = &'e EntityUid> {
    std::iter::once(uid)
        .chain(entities.ancestors(uid).into_iter().flatten())
        .filter(|uid| types.contains(uid.type_name()))
}

/// [`keyed`] for a stored entity, read from `graph` (types by the graph's ids).
fn keyed_stored<'g>(graph: &'g Graph, id: u32, types: &'g [u16]) -> impl Iterator<Item = u32> {
    std::iter::once(id)
        .chain(graph.ancestors(id).iter().copied())
        .filter(|id| types.contains(&graph.type_of(*id)))
}

/// The policies to evaluate a request with.
#[derive(Debug)]
pub struct Selection {
    /// The prebuilt set of type-level policies for the request's action, types and guards.
    pub base: Arc<PolicySet>,
    /// The entity-keyed policies whose scope can match, when there are any.
    pub extra: Option<PolicySet>,
}

/// The index of one policy set.
#[derive(Debug)]
pub struct ScopeIndex {
    actions: HashMap<EntityUid, ActionBucket>,
    /// The entity-keyed policies, by id, for building per-request sets.
    policies: HashMap<PolicyId, Policy>,
    /// The type-level policies with their leading guards.
    type_level: Vec<(Policy, Vec<Guard>)>,
    /// The tests those guards make.
    atoms: Atoms,
    /// How many more policy sets the buckets may keep.
    budget: AtomicUsize,
    /// The entities the index was built with, interned (`None` past `u32` ids).
    graph: Option<Arc<Graph>>,
}

impl ScopeIndex {
    /// Indexes `policies` for the actions and types of `schema`; `entities` gives the action
    /// hierarchy. `None` when the set has template-linked policies (not indexed: evaluated whole).
    pub fn build(policies: &PolicySet, schema: &Schema, entities: &Entities) -> Option<ScopeIndex> {
        Self::build_reusing(policies, schema, entities, None)
    }

    /// [`ScopeIndex::build`], taking `graph` (an earlier index's, over the same `entities`)
    /// when it holds the attributes this index reads.
    pub fn build_reusing(
        policies: &PolicySet,
        schema: &Schema,
        entities: &Entities,
        graph: Option<Arc<Graph>>,
    ) -> Option<ScopeIndex> {
        if policies.policies().any(|p| p.template_id().is_some()) {
            return None;
        }
        let mut index = ScopeIndex {
            actions: HashMap::new(),
            policies: HashMap::new(),
            type_level: Vec::new(),
            atoms: Atoms::default(),
            budget: AtomicUsize::new(KEPT_SETS),
            graph: None,
        };
        // Type-level policies (every scope key a type or any), with their leading guards.
        let mut type_level_at: HashMap<PolicyId, usize> = HashMap::new();
        let mut actions: Vec<EntityUid> = schema.actions().cloned().collect();
        actions.sort_unstable();
        // Actions and policies in id order, so that equal sets number their guards' atoms and attributes alike
        // (an index over an unchanged store can then take the previous index's graph).
        // Each policy's scope is read once (Cedar's accessors convert and allocate).
        let mut scoped: Vec<(&Policy, ActionConstraint, Key, Key)> = policies
            .policies()
            .map(|policy| {
                (
                    policy,
                    policy.action_constraint(),
                    Key::principal(policy.principal_constraint()),
                    Key::resource(policy.resource_constraint()),
                )
            })
            .collect();
        scoped.sort_unstable_by(|a, b| a.0.id().cmp(b.0.id()));
        // Which actions each policy's action constraint covers, worked out once per policy:
        // `action in A` covers the actions whose lineage (itself and its groups) holds A.
        let mut covered_by: FxHashMap<&EntityUid, Vec<usize>> = FxHashMap::default();
        for (at, action) in actions.iter().enumerate() {
            let lineage: HashSet<&EntityUid> = std::iter::once(action)
                .chain(entities.ancestors(action).into_iter().flatten())
                .collect();
            for uid in lineage {
                covered_by.entry(uid).or_default().push(at);
            }
        }
        let mut per_action: Vec<Vec<usize>> = vec![Vec::new(); actions.len()];
        for (at, (_, constraint, _, _)) in scoped.iter().enumerate() {
            let mut covered: Vec<usize> = match constraint {
                ActionConstraint::Any => (0..actions.len()).collect(),
                ActionConstraint::Eq(uid) => actions
                    .iter()
                    .position(|action| action == uid)
                    .into_iter()
                    .collect(),
                ActionConstraint::In(list) => list
                    .iter()
                    .filter_map(|uid| covered_by.get(uid))
                    .flatten()
                    .copied()
                    .collect(),
            };
            covered.sort_unstable();
            covered.dedup();
            for action in covered {
                per_action[action].push(at);
            }
        }
        for (action, applicable) in actions.iter().zip(&per_action) {
            let mut bucket = ActionBucket::default();
            let mut type_level: Vec<(usize, &Key, &Key)> = Vec::new();
            for (policy, _, principal, resource) in applicable.iter().map(|&at| &scoped[at]) {
                match (principal, resource) {
                    (Key::Under(uid), _) => bucket
                        .by_principal
                        .entry(uid.clone())
                        .or_default()
                        .push((policy.id().clone(), resource.clone())),
                    (_, Key::Under(uid)) => bucket
                        .by_resource
                        .entry(uid.clone())
                        .or_default()
                        .push((policy.id().clone(), principal.clone())),
                    _ => {
                        let at = *type_level_at.entry(policy.id().clone()).or_insert_with(|| {
                            // A policy that cannot be read as JSON has no guards (evaluated whenever its scope matches).
                            let guards = policy
                                .to_json()
                                .map(|json| guards::leading(&json, &mut index.atoms))
                                .unwrap_or_default();
                            index.type_level.push(((*policy).clone(), guards));
                            index.type_level.len() - 1
                        });
                        type_level.push((at, principal, resource));
                        continue;
                    }
                }
                // Entity-keyed: looked up by id when a request selects it.
                index
                    .policies
                    .entry(policy.id().clone())
                    .or_insert_with(|| (*policy).clone());
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
                    let mut policies = Vec::new();
                    let mut atoms = 0;
                    for (at, principal, resource) in &type_level {
                        let fits = |key: &Key, type_name: &EntityTypeName| match key {
                            Key::Type(required) => required == type_name,
                            _ => true,
                        };
                        if !fits(principal, principal_type) || !fits(resource, resource_type) {
                            continue;
                        }
                        // A guard that reads types only is decided here, for the whole bucket.
                        // (Leading type tests before any atom: after an atom that may
                        // error, a false type test does not rule the policy out.)
                        let guards = &index.type_level[*at].1;
                        let types_only = guards.iter().take_while(|guard| guard.atoms() == 0).count();
                        if guards::rules_out(
                            &guards[..types_only],
                            principal_type,
                            resource_type,
                            Truths::default(),
                        ) {
                            continue;
                        }
                        atoms |= guards.iter().map(Guard::atoms).fold(0, |a, b| a | b);
                        policies.push(*at);
                    }
                    let base = Base {
                        principal_type: principal_type.clone(),
                        resource_type: resource_type.clone(),
                        policies,
                        atoms,
                        sets: ArcSwap::default(),
                    };
                    if atoms == 0 {
                        // No request-dependent guards: the one set, built now.
                        base.set(Truths::default(), &index.type_level, &index.budget);
                    }
                    bucket
                        .base
                        .insert((principal_type.clone(), resource_type.clone()), base);
                }
            }
            let key_types = |keys: &FxHashMap<EntityUid, Vec<(PolicyId, Key)>>| {
                let mut types: Vec<EntityTypeName> = keys.keys().map(|uid| uid.type_name().clone()).collect();
                types.sort_by_key(ToString::to_string);
                types.dedup();
                types
            };
            bucket.principal_key_types = key_types(&bucket.by_principal);
            bucket.resource_key_types = key_types(&bucket.by_resource);
            index.actions.insert(action.clone(), bucket);
        }
        let attrs = index.atoms.attr_names();
        index.graph = match graph {
            Some(graph) if graph.attrs() == attrs.as_slice() => Some(graph),
            _ => Graph::build(entities, &attrs).map(Arc::new),
        };
        if let Some(graph) = &index.graph {
            let ids = |types: &[EntityTypeName]| types.iter().filter_map(|t| graph.type_id(t)).collect();
            let by_id = |keys: &FxHashMap<EntityUid, Vec<(PolicyId, Key)>>| {
                keys.iter()
                    .filter_map(|(uid, policies)| {
                        let policies = policies
                            .iter()
                            .map(|(id, key)| (id.clone(), StoredKey::of(key, graph)))
                            .collect();
                        Some((graph.id(uid)?, policies))
                    })
                    .collect()
            };
            for bucket in index.actions.values_mut() {
                bucket.principal_key_type_ids = ids(&bucket.principal_key_types);
                bucket.resource_key_type_ids = ids(&bucket.resource_key_types);
                bucket.by_principal_id = by_id(&bucket.by_principal);
                bucket.by_resource_id = by_id(&bucket.by_resource);
            }
        }
        Some(index)
    }

    /// The interned entities, to hand to the next index over the same store.
    pub fn graph(&self) -> Option<&Arc<Graph>> {
        self.graph.as_ref()
    }

    /// What the guards read from `context`, for requests over the index's entities with
    /// exactly this context (`Over::Built`): worth keeping for a context many requests share.
    pub fn read_context(&self, context: &cedar_policy::Context) -> Option<ContextReads> {
        Some(self.atoms.read_context(context, self.graph.as_ref()?))
    }

    /// The policies to evaluate `request` with, over `over` (for the guards and the principal's
    /// and resource's ancestors). `None`: evaluate the whole set.
    pub fn select(&self, request: &Request, over: Over<'_>) -> Option<Selection> {
        let (principal, action, resource) = (request.principal()?, request.action()?, request.resource()?);
        let bucket = self.actions.get(action)?;
        let base = bucket
            .base
            .get(&(principal.type_name().clone(), resource.type_name().clone()))?;
        // Over the index's own entities, with a stored principal and resource: the graph (its
        // two lookups only when guards or entity-keyed policies will read them).
        let has_keyed = !bucket.by_principal.is_empty() || !bucket.by_resource.is_empty();
        let (stored, reads) = match over {
            Over::Built(_, reads) if base.atoms != 0 || has_keyed => (
                self.graph
                    .as_ref()
                    .and_then(|graph| Some((graph, (graph.stored(principal)?, graph.stored(resource)?)))),
                reads,
            ),
            Over::Built(..) | Over::Other(_) => (None, None),
        };
        let entities = over.entities();
        let truths = stored
            .and_then(|(graph, ids)| {
                self.atoms
                    .evaluate_stored(base.atoms, graph, ids, request.context(), reads)
            })
            .unwrap_or_else(|| {
                self.atoms
                    .evaluate(base.atoms, principal, resource, request.context(), entities)
            });
        let base = base.set(truths, &self.type_level, &self.budget);
        if !has_keyed {
            return Some(Selection { base, extra: None });
        }
        let mut extra: Vec<&PolicyId> = Vec::new();
        match stored {
            Some((graph, (principal, resource))) => {
                // Each side's lineage, filtered by type id; the other side's key read by id.
                let principals = keyed_stored(graph, principal, &bucket.principal_key_type_ids);
                pick(
                    &bucket.by_principal_id,
                    principals,
                    |key| key.admits(resource, graph),
                    &mut extra,
                );
                let resources = keyed_stored(graph, resource, &bucket.resource_key_type_ids);
                pick(
                    &bucket.by_resource_id,
                    resources,
                    |key| key.admits(principal, graph),
                    &mut extra,
                );
            }
            None => {
                let principals = keyed(principal, entities, &bucket.principal_key_types);
                pick(
                    &bucket.by_principal,
                    principals,
                    |key| key.admits(resource, entities),
                    &mut extra,
                );
                let resources = keyed(resource, entities, &bucket.resource_key_types);
                pick(
                    &bucket.by_resource,
                    resources,
                    |key| key.admits(principal, entities),
                    &mut extra,
                );
            }
        }
        if extra.is_empty() {
            return Some(Selection { base, extra: None });
        }
        let mut set = PolicySet::new();
        for id in extra {
            if let Some(policy) = self.policies.get(id) {
                // A policy reached twice (through two ancestors) is added once.
                let _ = set.add(policy.clone());
            }
        }
        Some(Selection {
            base,
            extra: Some(set),
        })
    }
}

/// The policies of `keys` keyed by one of `lineage` whose other key `admits` the request.
fn pick<'k, Q: Hash + Eq, L: Borrow<Q>, K>(
    keys: &'k FxHashMap<Q, Vec<(PolicyId, K)>>,
    lineage: impl Iterator<Item = L>,
    admits: impl Fn(&K) -> bool,
    extra: &mut Vec<&'k PolicyId>,
) {
    if keys.is_empty() {
        return;
    }
    for entity in lineage {
        for (id, key) in keys.get(entity.borrow()).into_iter().flatten() {
            if admits(key) {
                extra.push(id);
            }
        }
    }
}
