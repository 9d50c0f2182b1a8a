//! The scope index: for each request, only the policies whose scope can match it.
//!
//! Cedar evaluates every policy of the set it is given (~0.6 µs each), so a set that grows into
//! the thousands (per-team or per-project grants) would make every decision slow. The index
//! narrows the set by each policy's scope (action, principal and resource constraints) before
//! Cedar sees it:
//!
//! * per concrete action and (principal type, resource type), a `TypePair` of the policies
//!   whose scope mentions at most types (`principal`, `principal is T`, …), less those whose
//!   leading guards (`resource is T || …`, `context has k`, `resource has a`,
//!   `principal in resource.workspace.developers`: see [`guards`]) rule them out for the
//!   request: one prebuilt `PolicySet` per outcome of the tests the pair's guards make, built
//!   on first use and kept while the index's budget lasts;
//! * policies whose scope names an entity (`principal == X`, `principal in X`,
//!   `resource in X`, `is T in X`) are kept by that entity (`Keyed`) and selected for
//!   requests their scope matches (`==` the entity, `in` it, `is T in` it). Each is then read by
//!   its own guards (`==` with an entity literal among them, read per request: its
//!   `resource.project == ZenML::Project::"…"`): one a false guard rules out is left out, one
//!   whose whole condition is known true is satisfied without Cedar
//!   ([`Selection::keyed_satisfied`]), and the rest are returned as a small set of their own
//!   beside the prebuilt one, never merged into a copy of it:
//!   [`Engine::decide`](crate::engine::Engine::decide) evaluates both and combines the answers
//!   as Cedar would.
//!
//! When every policy of a prebuilt set is its scope and guards alone (`permit (principal,
//! action, resource) when { principal in resource.workspace.developers };`, `forbid … unless
//! { principal.active };`) and the request's guards are all known, the set's answer is settled
//! with it ([`TypeLevel::settled`]): the satisfied forbids deny, else the satisfied permits
//! allow, and Cedar does not evaluate it.
//!
//! The guards and the entity-keyed policies are read through one `data::EntityData`: the
//! index's [`Graph`] when the request is over the entities the index was built with and its
//! principal and resource are stored there (the fast path), Cedar's entities otherwise.
//!
//! Architecture Invariant: the index only ever over-includes. A policy left out has a scope,
//! or a leading guard, that is false for the request, so under Cedar's semantics it can neither
//! apply nor produce an error; evaluating the selection (`Engine::decide`) gives exactly the
//! decision, determining policies and errors of evaluating the whole set (a differential
//! property test checks this on random policy sets). Anything the index does not cover
//! (template-linked policies, an action or type the schema does not list) falls back to the
//! whole set.

mod data;
mod graph;
mod guards;
mod scoped;

use std::borrow::{Borrow, Cow};
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use arc_swap::ArcSwap;

pub use data::Layer;
use data::{CedarData, CedarEntity, EntityData, GraphData, LayeredData};
pub use graph::{Graph, in_dependency_order};
pub use guards::ContextReads;
use guards::{AtomValues, Atoms, Guard, Literals, Truth};
pub use scoped::{LayerEntity, ScopedEntity, ScopedValue};

use cedar_policy::{
    ActionConstraint, Entities, EntityTypeName, EntityUid, Policy, PolicyId, PolicySet, PrincipalConstraint,
    Request, ResourceConstraint, Schema,
};

/// The entities a request is evaluated over.
#[derive(Debug, Clone, Copy)]
pub enum Over<'e> {
    /// The entities the index was built with (the snapshot's store): the index reads the
    /// request's guards and ancestors from its own [`Graph`]; with what it read beforehand
    /// from the request's context ([`ScopeIndex::read_context`]), if kept.
    Indexed(&'e Entities, Option<&'e ContextReads>),
    /// Other entities (a slice with request-scoped entities): read through Cedar's API.
    Unindexed(&'e Entities),
}

impl<'e> Over<'e> {
    /// The entities.
    pub fn entities(self) -> &'e Entities {
        match self {
            Over::Indexed(entities, _) | Over::Unindexed(entities) => entities,
        }
    }
}

/// The policies to evaluate a request with.
#[derive(Debug)]
pub struct Selection {
    /// The type-level policies for the request's action, types and guards, prebuilt.
    pub type_level: Arc<TypeLevel>,
    /// The entity-keyed policies whose scope matches and whose guards do not settle them, when
    /// there are any.
    pub entity_keyed: Option<PolicySet>,
    /// The entity-keyed policies whose scope matches and whose guards (their whole condition,
    /// all known) are true: satisfied without an error. (Whether it is a forbid, its id.)
    pub keyed_satisfied: Vec<(bool, String)>,
}

/// The type-level policies a request's action, types and guard values select.
#[derive(Debug)]
pub struct TypeLevel {
    /// The policies whose scope and guards can match.
    pub set: PolicySet,
    /// Their answer without evaluation, when the guards are every one's whole condition and
    /// all are known: as Cedar would answer over `set` (no error can arise).
    pub settled: Option<Settled>,
}

/// An answer the guards settle, as Cedar gives it for one policy set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// Allow: a permit is satisfied and no forbid is.
    pub allowed: bool,
    /// The determining policies' ids, sorted: the satisfied forbids when some is, else the
    /// satisfied permits.
    pub reasons: Vec<String>,
}

/// A policy with its guards.
#[derive(Debug)]
struct Guarded {
    /// Its syntax tree (a `cedar_policy::Policy` is 408 bytes inline, this 80; one is made from
    /// it, without copying the tree, to put it in a request's set).
    policy: cedar_policy_core::ast::Policy,
    id: String,
    forbid: bool,
    guards: guards::Guards,
}

/// The index of one policy set.
#[derive(Debug)]
pub struct ScopeIndex {
    actions: FxHashMap<EntityUid, ActionBucket>,
    /// The entity-keyed policies with their guards (`Literals::PerPolicy`), each once.
    keyed: Vec<Guarded>,
    /// The guards' literals as the graph numbers them.
    literal_ids: Box<[Option<u32>]>,
    /// The type-level policies with their guards.
    type_level: Vec<Guarded>,
    /// The tests those guards make.
    atoms: Atoms,
    /// How many more policy sets the type pairs may keep.
    budget: AtomicUsize,
    /// The entities the index was built with, interned (`None` past `u32` ids).
    graph: Option<Arc<Graph>>,
}

/// At most this many policy sets are kept per index (each holds a few policies: a few MB).
const KEPT_SETS: usize = 4096;

/// Probed once per ancestor of a request's principal and resource: a fast hash, not SipHash
/// (the keys are policy literals, not attacker-chosen).
type FxHashMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

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
        if policies.policies().any(|policy| policy.template_id().is_some()) {
            return None;
        }
        let mut index = ScopeIndex {
            actions: FxHashMap::default(),
            keyed: Vec::new(),
            literal_ids: Box::default(),
            type_level: Vec::new(),
            atoms: Atoms::default(),
            budget: AtomicUsize::new(KEPT_SETS),
            graph: None,
        };
        // Actions and policies in id order, so that equal sets number their guards' atoms and
        // attributes alike (an index over an unchanged store can then take the previous index's
        // graph).
        let mut actions: Vec<EntityUid> = schema.actions().cloned().collect();
        actions.sort_unstable();
        let scoped = scoped_policies(policies);
        let covering = policies_per_action(&actions, &scoped, entities);
        // Per scoped policy, once it is met as type-level: its place in `index.type_level`.
        let mut type_level_at: Vec<Option<usize>> = vec![None; scoped.len()];
        // Per entity-keyed policy, once it is met: its place in `index.keyed`.
        let mut keyed_at: HashMap<PolicyId, usize> = HashMap::new();
        for (action, applicable) in actions.iter().zip(&covering) {
            let bucket = index.action_bucket(
                action,
                applicable,
                &scoped,
                &mut type_level_at,
                &mut keyed_at,
                schema,
            );
            index.actions.insert(action.clone(), bucket);
        }
        index.keyed.shrink_to_fit();
        index.type_level.shrink_to_fit();
        // The entity-keyed policies' guards after the type-level ones', whose atoms are kept
        // per outcome and so come first while the atoms last.
        for guarded in &mut index.keyed {
            guarded.guards = guards_of(&guarded.policy, &mut index.atoms, Literals::PerPolicy);
        }
        index.atoms.finish();
        index.graph = graph_for(&index.atoms, graph, entities);
        if let Some(graph) = &index.graph {
            index.literal_ids = index.atoms.literal_ids(graph);
            for bucket in index.actions.values_mut() {
                bucket.keyed_in_graph = bucket.keyed.in_graph(graph);
            }
        }
        Some(index)
    }

    /// The interned entities, to hand to the next index over the same store.
    pub fn graph(&self) -> Option<&Arc<Graph>> {
        self.graph.as_ref()
    }

    /// What the guards read from `context`, for requests over the index's entities with
    /// exactly this context (`Over::Indexed`): worth keeping for a context many requests share.
    pub fn read_context(&self, context: &cedar_policy::Context) -> Option<ContextReads> {
        Some(self.atoms.read_context(context, self.graph.as_ref()?))
    }

    /// The policies to evaluate `request` with, over `over` (for the guards and the principal's
    /// and resource's ancestors). `None`: evaluate the whole set.
    pub fn select(&self, request: &Request, over: Over<'_>) -> Option<Selection> {
        let (principal, action, resource) = (request.principal()?, request.action()?, request.resource()?);
        let (bucket, pair) = self.bucket_and_pair(principal, action, resource)?;
        if pair.atoms == 0 && bucket.keyed.is_empty() {
            // Nothing to read: the pair's one set.
            return Some(self.unguarded(pair));
        }
        let types = guards::Types {
            principal: principal.type_name(),
            resource: resource.type_name(),
            action,
        };
        // Over the index's own entities, with a stored principal and resource: the graph.
        if let (Over::Indexed(_, prepared), Some(graph)) = (over, &self.graph)
            && let (Some(principal), Some(resource)) = (graph.stored(principal), graph.stored(resource))
        {
            let data = GraphData::new(
                graph,
                &self.literal_ids,
                request.context(),
                self.atoms.own(prepared),
            );
            let selection = self.select_over(data, &bucket.keyed_in_graph, pair, types, principal, resource);
            if selection.is_some() {
                return selection;
            }
        }
        let data = CedarData::new(over.entities(), request.context());
        self.select_over(
            data,
            &bucket.keyed,
            pair,
            types,
            CedarEntity::new(Cow::Borrowed(principal)),
            CedarEntity::new(Cow::Borrowed(resource)),
        )
    }

    /// The action's policies, and those of the pair of the principal's and resource's types.
    fn bucket_and_pair(
        &self,
        principal: &EntityUid,
        action: &EntityUid,
        resource: &EntityUid,
    ) -> Option<(&ActionBucket, &TypePair)> {
        let bucket = self.actions.get(action)?;
        let pair = bucket
            .type_pairs
            .get(principal.type_name())?
            .get(resource.type_name())?;
        Some((bucket, pair))
    }

    /// The selection of a pair without atoms, for a request no entity-keyed policy admits.
    fn unguarded(&self, pair: &TypePair) -> Selection {
        Selection {
            type_level: pair.set(AtomValues::default(), &self.type_level, &self.budget),
            entity_keyed: None,
            keyed_satisfied: Vec::new(),
        }
    }

    /// Request-scoped entities `scoped` layered over the index's graph, for
    /// [`ScopeIndex::settle_scoped`]; `None` when they cannot be read that way (a uid the graph
    /// has met, two with one uid, a cycle among their parents).
    pub fn layer<E: LayerEntity>(&self, scoped: &[E]) -> Option<Layer> {
        Layer::new(self.graph.as_ref()?, scoped)
    }

    /// The answer for `request` with the request-scoped entities of `layer` (made by this
    /// index's [`ScopeIndex::layer`]) over the index's own entities, when the guards settle it:
    /// exactly Cedar's over a slice of them (read through the graph with the layer on top,
    /// [`LayeredData`]), without making the slice. `None`: not settled (or not read this way:
    /// entity-keyed policies for the action, a principal or resource neither stored nor in the
    /// layer).
    pub fn settle_scoped(&self, request: &Request, layer: &Layer) -> Option<Settled> {
        let graph = self.graph.as_ref()?;
        let (principal, action, resource) = (request.principal()?, request.action()?, request.resource()?);
        let (bucket, pair) = self.bucket_and_pair(principal, action, resource)?;
        if !bucket.keyed.is_empty() {
            return None;
        }
        let values = if pair.atoms == 0 {
            AtomValues::default()
        } else {
            let stored = GraphData::new(graph, &self.literal_ids, request.context(), None);
            let data = LayeredData::new(stored, layer);
            let (principal, resource) = (data.entity_of(principal)?, data.entity_of(resource)?);
            self.atoms
                .evaluation(data, principal, resource)
                .values(pair.atoms)?
        };
        pair.set(values, &self.type_level, &self.budget).settled.clone()
    }

    /// [`ScopeIndex::select`] over `data`, with `keyed` named as `data` names entities. `None`
    /// when `data` cannot answer.
    ///
    /// The entity-keyed policies whose scope matches are read by their own guards (each is
    /// admitted only when its scope holds): those a false guard rules out are left out, those
    /// whose whole condition is true are satisfied without Cedar, the rest are evaluated.
    fn select_over<'a, D: EntityData<'a>>(
        &self,
        data: D,
        keyed: &Keyed<D::EntityKey, D::TypeKey>,
        pair: &TypePair,
        types: guards::Types<'_>,
        principal: D::Entity,
        resource: D::Entity,
    ) -> Option<Selection> {
        let mut admitted = Vec::new();
        keyed.add_admitted(data, principal.borrow(), resource.borrow(), &mut admitted);
        if pair.atoms == 0 && admitted.is_empty() {
            return Some(self.unguarded(pair));
        }
        let mut evaluation = self.atoms.evaluation(data, principal, resource);
        let values = evaluation.values(pair.atoms)?;
        let type_level = pair.set(values, &self.type_level, &self.budget);
        // A policy reached twice (through two ancestors) counts once.
        admitted.sort_unstable();
        admitted.dedup();
        let mut keyed_satisfied = Vec::new();
        admitted.retain(|&place| {
            let guarded = &self.keyed[place];
            match guards::conjunction(&guarded.guards.leading, types, &mut evaluation) {
                Truth::False => false,
                Truth::True if guarded.guards.complete => {
                    keyed_satisfied.push((guarded.forbid, guarded.id.clone()));
                    false
                }
                _ => true,
            }
        });
        Some(Selection {
            type_level,
            entity_keyed: self.keyed_set(&admitted),
            keyed_satisfied,
        })
    }

    /// The set of the entity-keyed policies at `admitted` (distinct; `None` when there are none).
    fn keyed_set(&self, admitted: &[usize]) -> Option<PolicySet> {
        if admitted.is_empty() {
            return None;
        }
        let mut set = PolicySet::new();
        for &place in admitted {
            // Ids are unique in the source set: adding cannot fail.
            let _ = set.add(Policy::from(self.keyed[place].policy.clone()));
        }
        Some(set)
    }

    /// The policies of one action (`applicable`: positions in `scoped`): entity-keyed ones by
    /// their entity, type-level ones per (principal type, resource type) of the schema.
    /// `type_level_at` and `keyed_at` remember where a policy met for an earlier action went.
    fn action_bucket(
        &mut self,
        action: &EntityUid,
        applicable: &[usize],
        scoped: &[ScopedPolicy<'_>],
        type_level_at: &mut [Option<usize>],
        keyed_at: &mut HashMap<PolicyId, usize>,
        schema: &Schema,
    ) -> ActionBucket {
        let mut bucket = ActionBucket::default();
        // (place in `self.type_level`, principal key, resource key)
        let mut type_level: Vec<(usize, &UidKey, &UidKey)> = Vec::new();
        for &at in applicable {
            let ScopedPolicy {
                policy,
                principal,
                resource,
                ..
            } = &scoped[at];
            let (keyed, own, other) = match (principal.own(), resource.own()) {
                (Some(own), _) => (&mut bucket.keyed.by_principal, own, resource),
                (None, Some(own)) => (&mut bucket.keyed.by_resource, own, principal),
                (None, None) => {
                    let place = *type_level_at[at].get_or_insert_with(|| self.add_type_level(policy));
                    type_level.push((place, principal, resource));
                    continue;
                }
            };
            // Entity-keyed: its guards are read once every policy is placed.
            let next = self.keyed.len();
            let place = *keyed_at.entry(policy.id().clone()).or_insert(next);
            if place == next {
                self.keyed.push(Guarded {
                    policy: AsRef::<cedar_policy_core::ast::Policy>::as_ref(*policy).clone(),
                    id: policy.id().to_string(),
                    forbid: policy.effect() == cedar_policy::Effect::Forbid,
                    guards: guards::Guards::default(),
                });
            }
            // One entry for most keys: room for one (a default list grows to four).
            keyed
                .entry(own.0.clone())
                .or_insert_with(|| Vec::with_capacity(1))
                .push(Entry {
                    place,
                    own: own.1,
                    other: other.clone(),
                });
        }
        bucket.keyed.finish();
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
                let pair = self.type_pair(action, principal_type, resource_type, &type_level);
                bucket
                    .type_pairs
                    .entry(principal_type.clone())
                    .or_default()
                    .insert(resource_type.clone(), pair);
            }
        }
        bucket
    }

    /// Adds a type-level policy with its leading guards; its place in `self.type_level`.
    fn add_type_level(&mut self, policy: &Policy) -> usize {
        let guards = guards_of(policy.as_ref(), &mut self.atoms, Literals::Atoms);
        self.type_level.push(Guarded {
            policy: AsRef::<cedar_policy_core::ast::Policy>::as_ref(policy).clone(),
            id: policy.id().to_string(),
            forbid: policy.effect() == cedar_policy::Effect::Forbid,
            guards,
        });
        self.type_level.len() - 1
    }

    /// The type-level policies (of `type_level`: place, principal key, resource key) that can
    /// match a request of these types, less those a guard reading types only rules out.
    fn type_pair(
        &self,
        action: &EntityUid,
        principal_type: &EntityTypeName,
        resource_type: &EntityTypeName,
        type_level: &[(usize, &UidKey, &UidKey)],
    ) -> TypePair {
        let fits = |key: &UidKey, type_name: &EntityTypeName| match key {
            Key::Type(required) => required == type_name,
            _ => true,
        };
        let mut policies = Vec::new();
        let mut atoms = 0;
        for &(place, principal, resource) in type_level {
            if !fits(principal, principal_type) || !fits(resource, resource_type) {
                continue;
            }
            // A guard that reads types only is decided here, for the whole pair. (Leading type
            // tests before any atom: after an atom that may error, a false type test does not
            // rule the policy out.)
            let guards = &self.type_level[place].guards.leading;
            let types_only = guards.iter().take_while(|guard| guard.atoms() == 0).count();
            let types = guards::Types {
                principal: principal_type,
                resource: resource_type,
                action,
            };
            if guards::conjunction(&guards[..types_only], types, &mut AtomValues::default()) == Truth::False {
                continue;
            }
            atoms |= guards.iter().map(Guard::atoms).fold(0, |a, b| a | b);
            policies.push(place);
        }
        let pair = TypePair {
            action: action.clone(),
            principal_type: principal_type.clone(),
            resource_type: resource_type.clone(),
            policies,
            atoms,
            sets: ArcSwap::default(),
        };
        if atoms == 0 {
            // No request-dependent guards: the one set, built now.
            pair.set(AtomValues::default(), &self.type_level, &self.budget);
        }
        pair
    }
}

/// A policy's guards, read from the JSON form of the policy Cedar evaluates (its conditions as
/// one `when`, in their order: `Policy::to_json` would parse the policy's text again, a tenth
/// of a second for every thousand policies). A policy that cannot be written as JSON has none
/// (evaluated whenever its scope matches).
fn guards_of(
    evaluated: &cedar_policy_core::ast::Policy,
    atoms: &mut Atoms,
    literals: Literals,
) -> guards::Guards {
    let est = cedar_policy_core::est::Policy::from(evaluated.clone());
    serde_json::to_value(est)
        .map(|json| guards::leading(&json, atoms, literals))
        .unwrap_or_default()
}

/// A policy with its scope read once (Cedar's accessors convert and allocate).
struct ScopedPolicy<'p> {
    policy: &'p Policy,
    action: ActionConstraint,
    principal: UidKey,
    resource: UidKey,
}

/// The policies of `policies` with their scopes, in id order.
fn scoped_policies(policies: &PolicySet) -> Vec<ScopedPolicy<'_>> {
    let mut scoped: Vec<ScopedPolicy<'_>> = policies
        .policies()
        .map(|policy| ScopedPolicy {
            policy,
            action: policy.action_constraint(),
            principal: UidKey::principal(policy.principal_constraint()),
            resource: UidKey::resource(policy.resource_constraint()),
        })
        .collect();
    scoped.sort_unstable_by(|a, b| a.policy.id().cmp(b.policy.id()));
    scoped
}

/// Per action of `actions`, the positions in `scoped` of the policies whose action constraint
/// covers it (ascending): `action in A` covers the actions whose lineage (itself and its
/// groups, from `entities`) holds A. Each constraint is worked out once.
fn policies_per_action(
    actions: &[EntityUid],
    scoped: &[ScopedPolicy<'_>],
    entities: &Entities,
) -> Vec<Vec<usize>> {
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
    for (
        at,
        ScopedPolicy {
            action: constraint, ..
        },
    ) in scoped.iter().enumerate()
    {
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
    per_action
}

/// `graph` when it keeps the attributes `atoms` read, else a new graph of `entities`.
fn graph_for(atoms: &Atoms, graph: Option<Arc<Graph>>, entities: &Entities) -> Option<Arc<Graph>> {
    let attrs = atoms.attr_names();
    match graph {
        Some(graph) if graph.attrs() == attrs.as_slice() => Some(graph),
        _ => Graph::build(entities, &attrs).map(Arc::new),
    }
}

/// Policies of one action.
#[derive(Debug, Default)]
struct ActionBucket {
    /// Principal type -> resource type -> the policies with only type-level keys (looked up
    /// by reference, without copying the request's type names).
    type_pairs: FxHashMap<EntityTypeName, FxHashMap<EntityTypeName, TypePair>>,
    /// The policies whose scope names an entity.
    keyed: Keyed<EntityUid, EntityTypeName>,
    /// `keyed` as the index's graph numbers entities and types (a key it has not met cannot
    /// match a stored entity: left out).
    keyed_in_graph: Keyed<u32, u16>,
}

/// The type-level policies of one (action, principal type, resource type).
#[derive(Debug)]
struct TypePair {
    action: EntityUid,
    principal_type: EntityTypeName,
    resource_type: EntityTypeName,
    /// Places in `ScopeIndex::type_level` of the policies whose scope and type-only guards can
    /// match.
    policies: Vec<usize>,
    /// The atoms their remaining guards read (bits of `ScopeIndex::atoms`).
    atoms: u32,
    /// The policies per combination of those atoms' values seen so far (key: true bits, and
    /// unknown bits shifted by 32), built on first use. Read without a lock; a new one is added
    /// by copying the (small) map.
    sets: ArcSwap<FxHashMap<u64, Arc<TypeLevel>>>,
}

impl TypePair {
    /// The policies for a request with these atom values (over all of the index's atoms). At
    /// most `budget` sets are kept over the whole index; past it, one is built for the request.
    fn set(&self, values: AtomValues, type_level: &[Guarded], budget: &AtomicUsize) -> Arc<TypeLevel> {
        let values = values.masked(self.atoms);
        let key = u64::from(values.holds) | u64::from(values.unknown) << 32;
        if let Some(set) = self.sets.load().get(&key) {
            return Arc::clone(set);
        }
        let types = guards::Types {
            principal: &self.principal_type,
            resource: &self.resource_type,
            action: &self.action,
        };
        let mut set = PolicySet::new();
        // The satisfied forbids and permits, while every policy kept is settled.
        let mut settled = Some((Vec::new(), Vec::new()));
        for &place in &self.policies {
            let guarded = &type_level[place];
            let truth = guards::conjunction(&guarded.guards.leading, types, &mut { values });
            if truth == Truth::False {
                continue;
            }
            // Ids are unique in the source set: adding cannot fail.
            let _ = set.add(Policy::from(guarded.policy.clone()));
            match (&mut settled, truth) {
                (Some((forbids, permits)), Truth::True) if guarded.guards.complete => {
                    if guarded.forbid {
                        forbids.push(guarded.id.clone());
                    } else {
                        permits.push(guarded.id.clone());
                    }
                }
                _ => settled = None,
            }
        }
        let settled = settled.map(|(forbids, permits): (Vec<String>, Vec<String>)| {
            let allowed = forbids.is_empty() && !permits.is_empty();
            let mut reasons = if forbids.is_empty() { permits } else { forbids };
            reasons.sort();
            Settled { allowed, reasons }
        });
        let set = Arc::new(TypeLevel { set, settled });
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

/// What one side (principal or resource) of a policy's scope requires, as an index key: `E`
/// names entities and `T` types, as policies do ([`UidKey`]) or as a [`Graph`] numbers them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Key<E, T> {
    /// Any entity.
    Any,
    /// An entity of this type.
    Type(T),
    /// This entity or a descendant (`in`).
    In(E),
    /// This entity (`==`).
    Eq(E),
    /// This entity or a descendant, of this type (`is T in`).
    IsIn(T, E),
}

/// A [`Key`] as the policy writes it.
type UidKey = Key<EntityUid, EntityTypeName>;

impl UidKey {
    fn principal(constraint: PrincipalConstraint) -> UidKey {
        match constraint {
            PrincipalConstraint::Any => Key::Any,
            PrincipalConstraint::Is(type_name) => Key::Type(type_name),
            PrincipalConstraint::In(uid) => Key::In(uid),
            PrincipalConstraint::Eq(uid) => Key::Eq(uid),
            PrincipalConstraint::IsIn(type_name, uid) => Key::IsIn(type_name, uid),
        }
    }

    fn resource(constraint: ResourceConstraint) -> UidKey {
        match constraint {
            ResourceConstraint::Any => Key::Any,
            ResourceConstraint::Is(type_name) => Key::Type(type_name),
            ResourceConstraint::In(uid) => Key::In(uid),
            ResourceConstraint::Eq(uid) => Key::Eq(uid),
            ResourceConstraint::IsIn(type_name, uid) => Key::IsIn(type_name, uid),
        }
    }

    /// The key as `graph` numbers entities and types; `None` when the graph never met its
    /// entity or type, so that no stored entity meets it.
    fn in_graph(&self, graph: &Graph) -> Option<Key<u32, u16>> {
        Some(match self {
            Key::Any => Key::Any,
            Key::Type(type_name) => Key::Type(graph.type_id(type_name)?),
            Key::In(uid) => Key::In(graph.id(uid)?),
            Key::Eq(uid) => Key::Eq(graph.id(uid)?),
            Key::IsIn(type_name, uid) => Key::IsIn(graph.type_id(type_name)?, graph.id(uid)?),
        })
    }
}

impl<E, T: Clone> Key<E, T> {
    /// The entity it names, with what it requires of an entity found under it.
    fn own(&self) -> Option<(&E, Own<T>)> {
        match self {
            Key::Any | Key::Type(_) => None,
            Key::In(uid) => Some((uid, Own::In)),
            Key::Eq(uid) => Some((uid, Own::Eq)),
            Key::IsIn(type_name, uid) => Some((uid, Own::IsIn(type_name.clone()))),
        }
    }
}

impl<E: Eq, T: Eq> Key<E, T> {
    /// Whether `entity` (with its ancestors in `data`) meets it: exactly the scope constraint.
    fn admits<'a, D: EntityData<'a, EntityKey = E, TypeKey = T>>(&self, entity: &E, data: D) -> bool {
        match self {
            Key::Any => true,
            Key::Type(required) => required == data.type_of(entity),
            Key::In(key) => data.within(entity, key),
            Key::Eq(key) => entity == key,
            Key::IsIn(required, key) => required == data.type_of(entity) && data.within(entity, key),
        }
    }
}

/// The entity-keyed policies of one action, by the entity their scope names, with the other
/// side's key; `E` and `T` as in [`Key`].
#[derive(Debug)]
struct Keyed<E, T> {
    /// principal entity -> the policies keyed by it, with their resource key.
    by_principal: ByEntity<E, T>,
    /// resource entity -> the policies keyed by it (and a type-level principal key).
    by_resource: ByEntity<E, T>,
    /// The types of `by_principal`'s and `by_resource`'s keys: a principal's ancestors of other
    /// types (a user has hundreds of role and permission groups) are skipped without hashing.
    principal_types: Vec<T>,
    resource_types: Vec<T>,
}

/// Entity -> the policies keyed by it.
type ByEntity<E, T> = FxHashMap<E, Vec<Entry<E, T>>>;

/// An entity-keyed policy under its key entity.
#[derive(Debug)]
struct Entry<E, T> {
    /// Its place in `ScopeIndex::keyed`.
    place: usize,
    /// Its constraint on the side it is kept by (on the key entity).
    own: Own<T>,
    /// Its key on the other side.
    other: Key<E, T>,
}

/// The constraint on the key entity of an entity-keyed policy's own side.
#[derive(Debug, Clone)]
enum Own<T> {
    /// `in` it: the entity or a descendant.
    In,
    /// `==` it: the entity itself.
    Eq,
    /// `is T in` it.
    IsIn(T),
}

impl<T: Eq> Own<T> {
    /// Whether an entity found under the key entity (`itself`: the key entity, not one of its
    /// descendants) of type `type_of` meets it.
    fn admits(&self, itself: bool, type_of: &T) -> bool {
        match self {
            Own::In => true,
            Own::Eq => itself,
            Own::IsIn(required) => required == type_of,
        }
    }
}

impl<E, T> Default for Keyed<E, T> {
    fn default() -> Self {
        Keyed {
            by_principal: FxHashMap::default(),
            by_resource: FxHashMap::default(),
            principal_types: Vec::new(),
            resource_types: Vec::new(),
        }
    }
}

impl Keyed<EntityUid, EntityTypeName> {
    /// Fills in the types of the keys, once every policy is placed; each key's list is cut to
    /// its length (most keys have one policy: a list grown by pushing holds four, and an entry
    /// of string keys is ~300 bytes, ~15 MB over 10,000 generated policies).
    fn finish(&mut self) {
        for entries in self
            .by_principal
            .values_mut()
            .chain(self.by_resource.values_mut())
        {
            entries.shrink_to_fit();
        }
        fn key_types(keys: &ByEntity<EntityUid, EntityTypeName>) -> Vec<EntityTypeName> {
            let mut types: Vec<EntityTypeName> = keys.keys().map(|uid| uid.type_name().clone()).collect();
            types.sort_by_key(ToString::to_string);
            types.dedup();
            types
        }
        self.principal_types = key_types(&self.by_principal);
        self.resource_types = key_types(&self.by_resource);
    }

    /// The same policies as `graph` numbers entities and types; those with a key it never met
    /// are left out (no stored entity meets that key).
    fn in_graph(&self, graph: &Graph) -> Keyed<u32, u16> {
        let by_id = |keys: &ByEntity<EntityUid, EntityTypeName>| {
            keys.iter()
                .filter_map(|(uid, policies)| {
                    let policies = policies
                        .iter()
                        .filter_map(|entry| {
                            Some(Entry {
                                place: entry.place,
                                own: match &entry.own {
                                    Own::In => Own::In,
                                    Own::Eq => Own::Eq,
                                    Own::IsIn(type_name) => Own::IsIn(graph.type_id(type_name)?),
                                },
                                other: entry.other.in_graph(graph)?,
                            })
                        })
                        .collect();
                    Some((graph.id(uid)?, policies))
                })
                .collect()
        };
        let type_ids = |types: &[EntityTypeName]| types.iter().filter_map(|t| graph.type_id(t)).collect();
        Keyed {
            by_principal: by_id(&self.by_principal),
            by_resource: by_id(&self.by_resource),
            principal_types: type_ids(&self.principal_types),
            resource_types: type_ids(&self.resource_types),
        }
    }
}

impl<E: Eq + Hash, T: Eq> Keyed<E, T> {
    fn is_empty(&self) -> bool {
        self.by_principal.is_empty() && self.by_resource.is_empty()
    }

    /// Adds to `admitted` the policies keyed by `principal` or `resource`, or by an ancestor of
    /// either, whose other key admits the other.
    fn add_admitted<'a, D: EntityData<'a, EntityKey = E, TypeKey = T>>(
        &self,
        data: D,
        principal: &E,
        resource: &E,
        admitted: &mut Vec<usize>,
    ) {
        add_admitted(
            data,
            &self.by_principal,
            &self.principal_types,
            principal,
            resource,
            admitted,
        );
        add_admitted(
            data,
            &self.by_resource,
            &self.resource_types,
            resource,
            principal,
            admitted,
        );
    }
}

/// Adds to `admitted` the policies of `keyed` keyed by `entity` or one of its ancestors (only
/// those of `types`, the keys' types, are looked up) whose scope admits `entity` and `other`.
fn add_admitted<'a, D: EntityData<'a>>(
    data: D,
    keyed: &ByEntity<D::EntityKey, D::TypeKey>,
    types: &[D::TypeKey],
    entity: &D::EntityKey,
    other: &D::EntityKey,
    admitted: &mut Vec<usize>,
) where
    D::EntityKey: Eq,
{
    if keyed.is_empty() {
        return;
    }
    let mut add = |lineage_entity: &D::EntityKey, itself: bool| {
        if !types.contains(data.type_of(lineage_entity)) {
            return;
        }
        for entry in keyed.get(lineage_entity).into_iter().flatten() {
            if entry.own.admits(itself, data.type_of(entity)) && entry.other.admits(other, data) {
                admitted.push(entry.place);
            }
        }
    };
    add(entity, true);
    for ancestor in data.ancestors(entity) {
        add(ancestor, false);
    }
}
