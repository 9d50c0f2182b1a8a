//! The decision engine: a Cedar snapshot ([`Engine`]) and the one decision path
//! ([`Engine::decide`]) that every caller takes: the HTTP APIs, the ZenML edge, the CLI and the
//! decision tables.
//!
//! Architecture Invariant: [`Engine::decide`] does no IO, takes no locks and never awaits; the
//! same engine and request always give the same decision. Deny is an outcome
//! (`allowed: false`), not an error; a [`DecideError`] means the request could not be
//! evaluated, and callers fail closed on it. The engine knows Cedar only: nothing of ZenML,
//! JSON or HTTP.
//!
//! Request-scoped entities (a ZenML resource, a caller's `additional_entities`) are never added
//! to the shared store. The request is evaluated over a *slice* instead: the request-scoped
//! entities plus copies of the stored entities the evaluation can reach (the principal, the
//! action, the resource, everything named by the context, by a request-scoped entity or by a
//! policy literal, and, transitively, everything their attributes name). Cedar looks entity
//! data up only by attribute access and `in` on the left-hand entity, whose ancestors are stored
//! with it, so the slice gives exactly the decision the merged store would, at a cost that does
//! not depend on the store's size.
//!
//! *Internal* entities are stored entities that are not part of the directory (the ZenML
//! stand-ins, `zenml::standin`): only a request that says so ([`AuthzRequest::internal`])
//! may name them; any other request is decided as if they did not exist.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use cedar_policy::{
    Authorizer, Context, Entities, Entity, EntityTypeName, EntityUid, PolicySet, Request, Schema,
};
use cedar_policy_core::ast;
use cedar_policy_core::entities::{Entities as CoreStore, NoEntitiesSchema, TCComputation};

use crate::index::{ContextReads, Graph, Over, ScopeIndex, ScopedEntity, Selection};
use crate::policy::PolicySource;

mod entity_store;
mod schema_view;
pub use entity_store::{Changes, EntityStore, Updated};
pub use schema_view::SchemaTables;

/// One loaded, validated, immutable Cedar snapshot: schema, policies, entities and the index
/// over them. Built whole by [`Engine::new`]; shared behind the snapshot's `Arc`.
#[derive(Debug)]
pub struct Engine {
    /// The merged schema of all schema files.
    pub schema: Schema,
    /// All policies, re-keyed to their stable ids (`@id` or `file:index`).
    pub policies: PolicySet,
    /// The stored entities (the directory's, internal ones, and the schema's actions).
    pub entities: Arc<Entities>,
    /// Policy id -> where it was written.
    pub policy_sources: HashMap<String, PolicySource>,
    /// Entity types declared by the schema (a fixed set, asked of every Cedar API request).
    pub entity_types: FxHashSet<EntityTypeName>,
    /// Actions declared by the schema.
    pub actions: FxHashSet<EntityUid>,
    /// The schema's type names and descriptions, for reading request-scoped entities.
    pub tables: SchemaTables,
    /// For every stored entity, the entities its attributes and tags refer to (slicing).
    attribute_refs: Arc<HashMap<EntityUid, Vec<EntityUid>>>,
    /// Entity literals in the policies whose data evaluation can read (slicing): not those only
    /// compared (`==`, right of `in`, scope constraints), which need no entity data.
    policy_literals: Vec<EntityUid>,
    /// Policies by scope; `None` when the set is evaluated whole.
    index: Option<ScopeIndex>,
    /// Which stored entities are internal (by shape; stored ones only), if any are stored.
    internal: Option<fn(&EntityUid) -> bool>,
    /// The stored parts of recent slices, by the stored entities they were reached from.
    stored_parts: moka::sync::Cache<Box<[EntityUid]>, Arc<StoredPart>>,
    /// Per action, the (principal type, resource type) of requests with an empty context the
    /// schema accepted: another of that shape is accepted too (read without a lock, copied on
    /// insert; at most the schema's valid shapes, as only accepted ones are kept).
    accepted_shapes: arc_swap::ArcSwap<FxHashMap<EntityUid, Vec<(EntityTypeName, EntityTypeName)>>>,
}

type FxHashSet<T> = HashSet<T, rustc_hash::FxBuildHasher>;
type FxHashMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// Most stored entities (counted once per part that holds them) the parts of recent slices
/// keep ([`Engine::stored_parts`]): a part is the few entities a principal, an action and a
/// resource reach, so this holds thousands of them, each a few hundred bytes of shared
/// references.
const STORED_PART_ENTITIES: u64 = 1 << 14;

/// The stored part of a slice: copies of the stored entities that some set of roots reaches,
/// closed as they are stored, built once and shared by every slice with those roots.
#[derive(Debug)]
struct StoredPart {
    store: CoreStore,
    /// Ancestors the copies list that are not among them (a parent the store does not hold).
    dangling: HashSet<ast::EntityUID>,
}

/// What an [`Engine`] is made of.
#[derive(Debug)]
pub struct Parts {
    /// The merged schema.
    pub schema: Schema,
    /// The policies, under their stable ids.
    pub policies: PolicySet,
    /// Policy id -> where it was written.
    pub policy_sources: HashMap<String, PolicySource>,
    /// The stored entities, closed and checked against the schema.
    pub entities: Arc<Entities>,
    /// For every stored entity, the entities its attributes and tags refer to.
    pub attribute_refs: Arc<HashMap<EntityUid, Vec<EntityUid>>>,
    /// The policies' entity literals whose data evaluation may read.
    pub policy_literals: Vec<EntityUid>,
    /// Which stored entities are internal (`None`: none are).
    pub internal: Option<fn(&EntityUid) -> bool>,
}

/// Sizes of an engine, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Static and template-linked policies.
    pub policies: usize,
    /// Policy templates.
    pub templates: usize,
    /// Entities, action entities included.
    pub entities: usize,
}

/// What the index read beforehand from a context many requests share
/// ([`Engine::prepare_context`]); opaque to callers.
pub type PreparedContext = ContextReads;

/// One authorization question.
#[derive(Debug, Clone)]
pub struct AuthzRequest {
    /// Principal, action, resource and context (already checked against the schema).
    pub request: Request,
    /// Request-scoped entities; they may not redefine a stored entity of the directory. Shared:
    /// the requests of one batch may carry the same ones ([`Batch`] then slices once).
    pub entities: Scoped,
    /// Entities named in the context or by the request-scoped entities (attributes, parents).
    pub referenced: Vec<EntityUid>,
    /// Whether the request names internal entities on purpose (the ZenML edge's stand-ins).
    /// Requests from outside never set it: they are decided as if internal entities did not
    /// exist.
    pub internal: bool,
    /// What [`Engine::prepare_context`] read from exactly this request's context, when the
    /// context is one many requests share.
    pub context: Option<Arc<PreparedContext>>,
}

impl AuthzRequest {
    /// A request from outside: no request-scoped entities, nothing prepared.
    pub fn new(request: Request) -> Self {
        Self {
            request,
            entities: Scoped::default(),
            referenced: Vec::new(),
            internal: false,
            context: None,
        }
    }
}

/// No request-scoped entities (shared: no allocation per request).
pub fn no_entities() -> Arc<[Entity]> {
    static EMPTY: std::sync::LazyLock<Arc<[Entity]>> = std::sync::LazyLock::new(|| Arc::from(Vec::new()));
    EMPTY.clone()
}

/// A request's request-scoped entities: Cedar's, or plain data ([`ScopedEntity`]) that the
/// schema's tables accepted (what the Cedar API's callers usually send), which the index's
/// layer reads as it is and which become Cedar entities only when Cedar evaluates over them (a
/// slice): once per list, shared by every request that carries the list. Cloning shares.
#[derive(Debug, Clone)]
pub struct Scoped(ScopedForm);

#[derive(Debug, Clone)]
enum ScopedForm {
    Cedar(Arc<[Entity]>),
    Plain(Arc<PlainList>),
}

/// Plain request-scoped entities, and their Cedar form once made.
#[derive(Debug)]
struct PlainList {
    entities: Box<[ScopedEntity]>,
    cedar: std::sync::OnceLock<Arc<[Entity]>>,
}

impl Default for Scoped {
    fn default() -> Self {
        Scoped(ScopedForm::Cedar(no_entities()))
    }
}

impl From<Arc<[Entity]>> for Scoped {
    fn from(entities: Arc<[Entity]>) -> Self {
        Scoped(ScopedForm::Cedar(entities))
    }
}

impl From<Vec<Entity>> for Scoped {
    fn from(entities: Vec<Entity>) -> Self {
        Scoped(ScopedForm::Cedar(entities.into()))
    }
}

impl Scoped {
    /// Plain entities, each accepted by [`Engine::plainly_conforms`] (the caller's promise: they
    /// are not checked again).
    pub fn plain(entities: Vec<ScopedEntity>) -> Self {
        Scoped(ScopedForm::Plain(Arc::new(PlainList {
            entities: entities.into(),
            cedar: std::sync::OnceLock::new(),
        })))
    }

    /// How many.
    pub fn len(&self) -> usize {
        match &self.0 {
            ScopedForm::Cedar(entities) => entities.len(),
            ScopedForm::Plain(list) => list.entities.len(),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// As Cedar entities (plain ones made so the first time they are asked for).
    pub fn cedar(&self) -> &Arc<[Entity]> {
        match &self.0 {
            ScopedForm::Cedar(entities) => entities,
            ScopedForm::Plain(list) => list
                .cedar
                .get_or_init(|| list.entities.iter().map(ScopedEntity::to_cedar).collect()),
        }
    }

    /// The first uid for which `pred` holds.
    fn find_uid(&self, mut pred: impl FnMut(&EntityUid) -> bool) -> Option<EntityUid> {
        match &self.0 {
            ScopedForm::Cedar(entities) => entities.iter().map(Entity::uid).find(|uid| pred(uid)),
            ScopedForm::Plain(list) => list
                .entities
                .iter()
                .map(|entity| &entity.uid)
                .find(|uid| pred(uid))
                .cloned(),
        }
    }

    /// Adds the entities they name (their parents, and the entities their attributes refer to)
    /// to `referenced`.
    pub fn add_named(&self, referenced: &mut Vec<EntityUid>) {
        match &self.0 {
            ScopedForm::Cedar(entities) => entities.iter().for_each(|entity| named_by(entity, referenced)),
            ScopedForm::Plain(list) => {
                for entity in &list.entities {
                    referenced.extend(entity.named().cloned());
                }
            }
        }
    }

    /// Their layer over `index`'s graph.
    fn layer(&self, index: &ScopeIndex) -> Option<crate::index::Layer> {
        match &self.0 {
            ScopedForm::Cedar(entities) => index.layer(entities),
            ScopedForm::Plain(list) => index.layer(&list.entities),
        }
    }

    /// The same request-scoped entities: uids, attributes and parents (Cedar's `Entity`
    /// equality compares uids only).
    fn same(&self, other: &Scoped) -> bool {
        match (&self.0, &other.0) {
            (ScopedForm::Plain(a), ScopedForm::Plain(b)) => Arc::ptr_eq(a, b) || a.entities == b.entities,
            (ScopedForm::Cedar(a), ScopedForm::Cedar(b)) => same_entities(a, b),
            _ => same_entities(self.cedar(), other.cedar()),
        }
    }
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

impl Decision {
    /// A deny decided before evaluation, and why.
    pub fn denied(why: impl Into<String>) -> Self {
        Self {
            allowed: false,
            reasons: Vec::new(),
            errors: vec![why.into()],
        }
    }
}

/// The answers of several sets of one request's policies, combined as Cedar combines policies:
/// a denying answer's reasons are its satisfied forbids, an allowing one's its permits.
#[derive(Default)]
struct Combined {
    forbids: Vec<String>,
    permits: Vec<String>,
    errors: Vec<String>,
}

impl Combined {
    fn add(&mut self, allowed: bool, reasons: impl Iterator<Item = String>) {
        if allowed {
            self.permits.extend(reasons);
        } else {
            self.forbids.extend(reasons);
        }
    }
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

/// The decisions of one caller's batch under one engine (a `check_permissions` page, an
/// `allowed_resource_ids` listing, a Cedar batch, an authoring grid).
///
/// Equal requests under one engine have equal decisions, so a batch remembers them by exact
/// Cedar request (only requests without request-scoped entities; bounded: after its capacity
/// it only looks up): many resources of one ZenML page map to the same stand-in request. And a
/// batch keeps the slice of its last request with request-scoped entities: a next request with
/// equal request-scoped entities and references whose principal, action and resource the slice
/// already holds (or the store does not) is evaluated over it, which is exactly the slice it
/// would get. `Batch::single()` remembers nothing (no copy is kept for nothing).
#[derive(Debug, Default)]
pub struct Batch {
    seen: Vec<(Request, Decision)>,
    capacity: usize,
    slice: Option<Slice>,
    /// The layer of the last request-scoped entities.
    layer: Option<KeptLayer>,
}

/// Request-scoped entities and their layer over the index's graph (`None`: they cannot be
/// layered).
type KeptLayer = (Scoped, Option<crate::index::Layer>);

/// A slice kept by a batch, with what it was built for.
#[derive(Debug)]
struct Slice {
    entities: Scoped,
    referenced: Vec<EntityUid>,
    built: Entities,
}

impl Batch {
    /// A batch of one request: remembers nothing.
    pub fn single() -> Self {
        Self::default()
    }

    /// A batch of many: up to 32 distinct requests (a lookup compares with each).
    pub fn many() -> Self {
        Self {
            seen: Vec::new(),
            capacity: 32,
            slice: None,
            layer: None,
        }
    }

    fn remembered(&self, request: &Request) -> Option<&Decision> {
        self.seen
            .iter()
            .find(|(seen, _)| same_request(seen, request))
            .map(|(_, decision)| decision)
    }
}

/// The same request-scoped entities: uids, attributes and parents (Cedar's `Entity` equality
/// compares uids only).
fn same_entities(a: &Arc<[Entity]>, b: &Arc<[Entity]>) -> bool {
    Arc::ptr_eq(a, b)
        || (a.len() == b.len()
            && a.iter()
                .zip(b.iter())
                .all(|(a, b)| AsRef::<ast::Entity>::as_ref(a).deep_eq(b.as_ref())))
}

/// Equal principal, action, resource and context.
fn same_request(a: &Request, b: &Request) -> bool {
    a.principal() == b.principal()
        && a.action() == b.action()
        && a.resource() == b.resource()
        && a.context() == b.context()
}

// === impl Engine ===

impl Engine {
    /// The engine of `parts`, with its scope index (reusing `graph`, the interning of the same
    /// entities by an earlier index, when it read what this one needs).
    pub fn new(parts: Parts, graph: Option<Arc<Graph>>) -> Self {
        let Parts {
            schema,
            policies,
            policy_sources,
            entities,
            attribute_refs,
            policy_literals,
            internal,
        } = parts;
        let index = ScopeIndex::build_reusing(&policies, &schema, &entities, graph);
        Self {
            entity_types: schema.entity_types().cloned().collect(),
            actions: schema.actions().cloned().collect(),
            tables: SchemaTables::new(&schema),
            schema,
            policies,
            entities,
            policy_sources,
            attribute_refs,
            policy_literals,
            index,
            internal,
            accepted_shapes: arc_swap::ArcSwap::default(),
            stored_parts: moka::sync::Cache::builder()
                .max_capacity(STORED_PART_ENTITIES)
                .weigher(|_, part: &Arc<StoredPart>| u32::try_from(part.store.len()).unwrap_or(u32::MAX))
                .build(),
        }
    }

    /// The same schema and entities with other policies (a what-if, or a test of the index):
    /// its own index, no policy sources.
    pub fn with_policies(&self, policies: PolicySet) -> Result<Engine, String> {
        let policy_literals = crate::policy::read_literals_of(&policies)?;
        Ok(Engine::new(
            Parts {
                schema: self.schema.clone(),
                policies,
                policy_sources: HashMap::new(),
                entities: self.entities.clone(),
                attribute_refs: self.attribute_refs.clone(),
                policy_literals,
                internal: self.internal,
            },
            self.index_graph().cloned(),
        ))
    }

    /// Sizes of this engine.
    pub fn counts(&self) -> Counts {
        Counts {
            policies: self.policies.policies().count(),
            templates: self.policies.templates().count(),
            entities: self.entities.len(),
        }
    }

    /// Whether `uid` is a stored internal entity (not part of the directory).
    pub fn is_internal(&self, uid: &EntityUid) -> bool {
        self.internal.is_some_and(|shape| shape(uid)) && self.entities.get(uid).is_some()
    }

    /// Whether `uid` is an entity of the directory (a stored entity that is not internal).
    pub fn in_directory(&self, uid: &EntityUid) -> bool {
        // The index's graph interns every stored entity (an Fx-hashed lookup; Cedar's store
        // hashes a uid with SipHash).
        let stored = match self.index_graph() {
            Some(graph) => graph.stored(uid).is_some(),
            None => self.entities.get(uid).is_some(),
        };
        stored && !self.is_internal(uid)
    }

    /// The request, checked against the schema (as `Request::new` checks it), unless `context`
    /// is empty and a request of its shape passed before under this engine: the check depends
    /// on nothing else then.
    pub fn request(
        &self,
        principal: EntityUid,
        action: EntityUid,
        resource: EntityUid,
        context: Context,
        context_is_empty: bool,
    ) -> Result<Request, Box<cedar_policy::RequestValidationError>> {
        if !context_is_empty {
            return Request::new(principal, action, resource, context, Some(&self.schema)).map_err(Box::new);
        }
        let accepted = self.accepted_shapes.load().get(&action).is_some_and(|shapes| {
            shapes
                .iter()
                .any(|(p, r)| p == principal.type_name() && r == resource.type_name())
        });
        if accepted {
            return Request::new(principal, action, resource, context, None).map_err(Box::new);
        }
        let shape = (principal.type_name().clone(), resource.type_name().clone());
        let action_of = action.clone();
        let request =
            Request::new(principal, action, resource, context, Some(&self.schema)).map_err(Box::new)?;
        // Racing first uses insert the same shape: either copy is right.
        self.accepted_shapes.rcu(|shapes| {
            let mut shapes = FxHashMap::clone(shapes);
            let known = shapes.entry(action_of.clone()).or_default();
            if !known.contains(&shape) {
                known.push(shape.clone());
            }
            shapes
        });
        Ok(request)
    }

    /// Whether `entity` conforms to the schema, as Cedar's conformance checker decides (with the
    /// descriptions of [`SchemaTables`]): what a request-scoped entity is asked after the
    /// tables' own check ([`Engine::plainly_conforms`]) was unsure of it, so that check is not
    /// made again.
    pub fn conforms(&self, entity: &ast::Entity) -> bool {
        self.tables.conforms(&self.schema, entity)
    }

    /// Whether the schema's tables accept `entity` as it is (without Cedar's checker, which
    /// [`Engine::conforms`] asks of its Cedar form when this is unsure): `true` only where
    /// Cedar's checker accepts it.
    pub fn plainly_conforms(&self, entity: &ScopedEntity) -> bool {
        self.tables.plainly_conforms(entity)
    }

    /// The scope index's interned entities, when the set is indexed.
    pub fn index_graph(&self) -> Option<&Arc<Graph>> {
        self.index.as_ref()?.graph()
    }

    /// What the index reads from `context`, to keep beside a context many requests share
    /// ([`AuthzRequest::context`]).
    pub fn prepare_context(&self, context: &Context) -> Option<Arc<PreparedContext>> {
        self.index.as_ref()?.read_context(context).map(Arc::new)
    }

    /// Decides `request`, as one of `batch`.
    pub fn decide(&self, request: &AuthzRequest, batch: &mut Batch) -> Result<Decision, DecideError> {
        if !request.entities.is_empty() {
            return self.decide_over_slice(request, batch);
        }
        if let Some(decision) = batch.remembered(&request.request) {
            return Ok(decision.clone());
        }
        let decision = if request.internal || !self.names_internal(request) {
            self.evaluate(
                &request.request,
                Over::Indexed(&self.entities, request.context.as_deref()),
            )
        } else {
            // Internal entities are not the caller's to name: decided over a slice, which
            // leaves them out, as plain Cedar over the directory would.
            let slice = self.slice(request)?;
            self.evaluate(&request.request, Over::Unindexed(&slice))
        };
        if batch.seen.len() < batch.capacity {
            batch.seen.push((request.request.clone(), decision.clone()));
        }
        Ok(decision)
    }

    /// A request with request-scoped entities: over the batch's slice when it fits, else over
    /// a new one (kept by a batch of many).
    fn decide_over_slice(&self, request: &AuthzRequest, batch: &mut Batch) -> Result<Decision, DecideError> {
        if let Some(uid) = self.redefined(request) {
            return Err(DecideError::Redefined(uid.to_string()));
        }
        if let Some(settled) = self.settle_scoped(request, batch) {
            return Ok(Decision {
                allowed: settled.allowed,
                reasons: settled.reasons,
                errors: Vec::new(),
            });
        }
        let reusable = batch.slice.as_ref().is_some_and(|slice| {
            slice.entities.same(&request.entities)
                && slice.referenced == request.referenced
                && [
                    request.request.principal(),
                    request.request.action(),
                    request.request.resource(),
                ]
                .into_iter()
                .flatten()
                .all(|uid| slice.built.get(uid).is_some() || !self.in_directory(uid))
        });
        if !reusable {
            let built = self.slice(request)?;
            if batch.capacity == 0 {
                return Ok(self.evaluate(&request.request, Over::Unindexed(&built)));
            }
            batch.slice = Some(Slice {
                entities: request.entities.clone(),
                referenced: request.referenced.clone(),
                built,
            });
        }
        match &batch.slice {
            Some(slice) => Ok(self.evaluate(&request.request, Over::Unindexed(&slice.built))),
            None => Err(DecideError::Entities("internal: no slice".into())),
        }
    }

    /// Evaluates `request` over `over`'s entities with only the policies the index selects
    /// (all of them without an index); `Over::Indexed` only with the stored entities. The
    /// decision, determining policies and errors are exactly those of evaluating the whole set
    /// with Cedar (`tests/index.rs` checks it on random sets).
    ///
    /// When entity-keyed policies apply, the type-level set and those few are evaluated separately and
    /// combined as Cedar combines policies: a satisfied forbid denies and determines the
    /// decision; otherwise a satisfied permit allows; errors from both count. That costs a
    /// second, small evaluation instead of copying the type-level set for every request. When
    /// the index's guards settle the type-level set (each policy's whole condition made of
    /// guards, all known: `TypeLevel::settled`), Cedar does not evaluate it; nor the
    /// entity-keyed policies the guards settle (`Selection::keyed_satisfied`, and those a false
    /// guard leaves out).
    fn evaluate(&self, request: &Request, over: Over<'_>) -> Decision {
        let authorizer = Authorizer::new();
        let entities = over.entities();
        let selection = self.index.as_ref().and_then(|index| index.select(request, over));
        let mut combined = Combined::default();
        let evaluate = |set: &PolicySet, combined: &mut Combined| {
            let answer = authorizer.is_authorized(request, set, entities);
            let reasons = answer.diagnostics().reason().map(ToString::to_string);
            combined.add(answer.decision() == cedar_policy::Decision::Allow, reasons);
            combined
                .errors
                .extend(answer.diagnostics().errors().map(ToString::to_string));
        };
        match &selection {
            Some(Selection {
                type_level,
                entity_keyed,
                keyed_satisfied,
            }) => {
                match &type_level.settled {
                    // The guards answered as Cedar would over the set, without an error.
                    Some(settled) if entity_keyed.is_none() && keyed_satisfied.is_empty() => {
                        return Decision {
                            allowed: settled.allowed,
                            reasons: settled.reasons.clone(),
                            errors: Vec::new(),
                        };
                    }
                    Some(settled) => combined.add(settled.allowed, settled.reasons.iter().cloned()),
                    None => evaluate(&type_level.set, &mut combined),
                }
                // Entity-keyed policies the guards found satisfied, each an answer of its own.
                for (forbid, id) in keyed_satisfied {
                    combined.add(!forbid, std::iter::once(id.clone()));
                }
                if let Some(set) = entity_keyed {
                    evaluate(set, &mut combined);
                }
            }
            None => evaluate(&self.policies, &mut combined),
        }
        let Combined {
            forbids,
            permits,
            mut errors,
        } = combined;
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

    /// The answer the index's guards settle for a request with request-scoped entities (none
    /// redefining a stored one), read over the stored entities with the request's on top:
    /// exactly the slice's answer, without making the slice. `None`: decide over a slice.
    fn settle_scoped(&self, request: &AuthzRequest, batch: &mut Batch) -> Option<crate::index::Settled> {
        // A slice leaves internal entities out: a request naming one is decided over it.
        if self.names_internal(request) {
            return None;
        }
        let index = self.index.as_ref()?;
        let fresh;
        let layer = if batch.capacity == 0 {
            fresh = request.entities.layer(index);
            fresh.as_ref()
        } else {
            // The batch's layer when its entities are these (a batch's items often share them).
            if !batch
                .layer
                .as_ref()
                .is_some_and(|(entities, _)| entities.same(&request.entities))
            {
                batch.layer = Some((request.entities.clone(), request.entities.layer(index)));
            }
            batch.layer.as_ref().and_then(|(_, layer)| layer.as_ref())
        };
        index.settle_scoped(&request.request, layer?)
    }

    /// Whether the index's guards answer `request` (with request-scoped entities) over its
    /// graph with the entities layered on top, without a slice, and if so whether it is allowed:
    /// the fast path the Cedar API's questions are meant to take (what a test checks stays
    /// taken; the answer is the same either way).
    pub fn settled_without_slice(&self, request: &AuthzRequest) -> Option<bool> {
        if request.entities.is_empty() || self.redefined(request).is_some() {
            return None;
        }
        self.settle_scoped(request, &mut Batch::single())
            .map(|settled| settled.allowed)
    }

    /// The first request-scoped entity of `request` that redefines one of the directory's.
    fn redefined(&self, request: &AuthzRequest) -> Option<EntityUid> {
        request.entities.find_uid(|uid| self.in_directory(uid))
    }

    /// Whether the principal, resource or an entity the request names is internal.
    fn names_internal(&self, request: &AuthzRequest) -> bool {
        self.internal.is_some()
            && request
                .request
                .principal()
                .into_iter()
                .chain(request.request.resource())
                .chain(&request.referenced)
                .any(|uid| self.is_internal(uid))
    }

    /// The entities `request` can reach: its own plus copies of the reachable stored ones
    /// (never an internal one). The stored ones depend only on the stored entities the request
    /// starts from (its principal, action, resource and the entities it names; the policies'
    /// literals are the same for all), so that part is built once for them and shared. (The
    /// caller has refused request-scoped entities that redefine a stored one.)
    fn slice(&self, request: &AuthzRequest) -> Result<Entities, DecideError> {
        let mut roots: Vec<EntityUid> = [
            request.request.principal(),
            request.request.action(),
            request.request.resource(),
        ]
        .into_iter()
        .flatten()
        .chain(request.referenced.iter())
        .filter(|uid| self.in_directory(uid))
        .cloned()
        .collect();
        roots.sort_unstable();
        roots.dedup();
        let roots = roots.into_boxed_slice();
        let part = match self.stored_parts.get(&roots) {
            Some(part) => part,
            None => {
                let part = Arc::new(StoredPart::new(self.reach(&roots))?);
                self.stored_parts.insert(roots, part.clone());
                part
            }
        };
        with_scoped(&part, request.entities.cedar())
    }

    /// Copies of the stored entities `roots` and the policies' literals reach through
    /// attributes (never an internal one).
    fn reach(&self, roots: &[EntityUid]) -> Vec<ast::Entity> {
        let mut pending: Vec<&EntityUid> = roots.iter().chain(self.policy_literals.iter()).collect();
        let mut seen: HashSet<&EntityUid> = HashSet::with_capacity(16);
        let mut copies = Vec::with_capacity(8);
        while let Some(uid) = pending.pop() {
            if !seen.insert(uid) {
                continue;
            }
            if let Some(entity) = self.entities.get(uid)
                && !self.is_internal(uid)
            {
                copies.push(AsRef::<ast::Entity>::as_ref(entity).clone());
                if let Some(refs) = self.attribute_refs.get(uid) {
                    pending.extend(refs.iter());
                }
            }
        }
        copies
    }
}

impl StoredPart {
    /// The part holding `copies` (distinct, closed); Cedar names two different copies with one
    /// uid.
    fn new(copies: Vec<ast::Entity>) -> Result<Self, DecideError> {
        let held: HashSet<&ast::EntityUID> = copies.iter().map(ast::Entity::uid).collect();
        let dangling = copies
            .iter()
            .flat_map(ast::Entity::ancestors)
            .filter(|uid| !held.contains(uid))
            .cloned()
            .collect();
        let store = CoreStore::from_entities(
            copies,
            None::<&NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            cedar_policy_core::extensions::Extensions::all_available(),
        )
        .map_err(|error| DecideError::Entities(error.to_string()))?;
        Ok(Self { store, dangling })
    }
}

/// The store of a slice: `part` (shared, not copied entity by entity) and `scoped`, a
/// request's own entities, each closed over `part` and the others, ancestors first. When a
/// copy lists one of `scoped` as an ancestor, or a uid is given twice, [`assemble`] decides
/// it (a copy must then be closed too, or Cedar names the duplicate).
fn with_scoped(part: &StoredPart, scoped: &[Entity]) -> Result<Entities, DecideError> {
    let mut all: Vec<ast::Entity> = scoped
        .iter()
        .map(|entity| AsRef::<ast::Entity>::as_ref(entity).clone())
        .collect();
    let mut position: FxHashMap<&ast::EntityUID, usize> = FxHashMap::default();
    for (at, entity) in all.iter().enumerate() {
        let stored = matches!(
            part.store.entity(entity.uid()),
            cedar_policy_core::entities::Dereference::Data(_)
        );
        if stored || part.dangling.contains(entity.uid()) || position.insert(entity.uid(), at).is_some() {
            return assemble(part.store.iter().cloned().collect(), scoped);
        }
    }
    // Each scoped entity's parents among the scoped ones: closed first.
    let listed: Vec<Vec<usize>> = all
        .iter()
        .map(|entity| {
            entity
                .ancestors()
                .filter_map(|uid| position.get(uid).copied())
                .collect()
        })
        .collect();
    drop(position);
    // A scoped entity's ancestors: its parents' (stored ones' from the part, scoped ones'
    // closed already).
    in_dependency_order(&listed, |at| {
        let mut more: Vec<ast::EntityUID> = all[at]
            .ancestors()
            .filter_map(|uid| match part.store.entity(uid) {
                cedar_policy_core::entities::Dereference::Data(stored) => Some(stored),
                _ => None,
            })
            .flat_map(|stored| stored.ancestors().cloned())
            .collect();
        more.extend(
            listed[at]
                .iter()
                .flat_map(|&parent| all[parent].ancestors().cloned()),
        );
        for uid in more {
            all[at].add_indirect_ancestor(uid);
        }
    })?;
    part.store
        .clone()
        .add_entities(
            all.into_iter().map(Arc::new),
            None::<&NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            cedar_policy_core::extensions::Extensions::all_available(),
        )
        .map(Entities::from)
        .map_err(|error| DecideError::Entities(error.to_string()))
}

/// Adds the entities `entity` names (its parents, and the entities its attributes refer to)
/// to `out`.
pub fn named_by(entity: &Entity, out: &mut Vec<EntityUid>) {
    let core: &ast::Entity = entity.as_ref();
    out.extend(core.parents().cloned().map(EntityUid::from));
    refers_to(entity, out);
}

/// Adds the entities `entity`'s attributes and tags name to `out` (read from the values, not
/// through JSON).
pub fn refers_to(entity: &Entity, out: &mut Vec<EntityUid>) {
    fn walk(value: &cedar_policy::EvalResult, out: &mut Vec<EntityUid>) {
        use cedar_policy::EvalResult;
        match value {
            EvalResult::EntityUid(uid) => out.push(uid.clone()),
            EvalResult::Set(set) => set.iter().for_each(|item| walk(item, out)),
            EvalResult::Record(record) => record.iter().for_each(|(_, item)| walk(item, out)),
            _ => {}
        }
    }
    // A value that is not concrete (partial evaluation only) names nothing to slice.
    for (_, value) in entity.attrs().chain(entity.tags()) {
        if let Ok(value) = value {
            walk(&value, out);
        }
    }
}

/// The store of a slice: `stored`, copies of stored entities (closed: each lists all its
/// ancestors), and `scoped`, a request's own entities (their parents only). Exactly
/// `Entities::from_entities(stored ++ scoped, None)` (`tests/engine.rs` compares them on random
/// slices), without Cedar recomputing the closure of every entity: its cost grows with every
/// ancestor of every copy, although only the request's entities, and copies that list one of
/// them as an ancestor (a parent the store does not hold), can lack ancestors. Those are closed
/// here, ancestors first; a cycle among them is an error, as Cedar's is.
pub fn slice_store(stored: &[Entity], scoped: &[Entity]) -> Result<Entities, DecideError> {
    let copies: Vec<ast::Entity> = stored.iter().map(|entity| entity.as_ref().clone()).collect();
    let distinct: HashSet<&ast::EntityUID> = copies.iter().map(ast::Entity::uid).collect();
    if distinct.len() < copies.len() {
        return assemble(copies, scoped);
    }
    with_scoped(&StoredPart::new(copies)?, scoped)
}

/// [`slice_store`] over copies of the stored entities.
fn assemble(stored: Vec<ast::Entity>, scoped: &[Entity]) -> Result<Entities, DecideError> {
    let first_scoped = stored.len();
    let mut all = stored;
    all.extend(
        scoped
            .iter()
            .map(|entity| AsRef::<ast::Entity>::as_ref(entity).clone()),
    );
    // For each entity that may lack ancestors (a request-scoped one, or a copy listing one as an
    // ancestor), the positions of the entities it lists as ancestors.
    let mut open: Vec<(usize, Vec<usize>)> = Vec::new();
    {
        let mut position: FxHashMap<&ast::EntityUID, usize> = FxHashMap::default();
        position.reserve(all.len());
        for (at, entity) in all.iter().enumerate() {
            if position.insert(entity.uid(), at).is_some() {
                // Two entities with one uid: Cedar names them.
                let entities = all.iter().map(|entity| Entity::from(entity.clone()));
                return Entities::from_entities(entities, None)
                    .map_err(|error| DecideError::Entities(error.to_string()));
            }
        }
        for (at, entity) in all.iter().enumerate() {
            let listed = || entity.ancestors().filter_map(|uid| position.get(uid).copied());
            if at >= first_scoped || listed().any(|ancestor| ancestor >= first_scoped) {
                open.push((at, listed().collect()));
            }
        }
    }
    // Ancestors first: an entity is closed once every open ancestor it lists is.
    let mut slot: Vec<Option<usize>> = vec![None; all.len()];
    for (index, (at, _)) in open.iter().enumerate() {
        slot[*at] = Some(index);
    }
    let waits: Vec<Vec<usize>> = open
        .iter()
        .map(|(_, listed)| listed.iter().filter_map(|&ancestor| slot[ancestor]).collect())
        .collect();
    in_dependency_order(&waits, |index| {
        let (at, listed) = &open[index];
        let more: Vec<ast::EntityUID> = listed
            .iter()
            .flat_map(|&ancestor| all[ancestor].ancestors().cloned())
            .collect();
        for uid in more {
            all[*at].add_indirect_ancestor(uid);
        }
    })?;
    CoreStore::from_entities(
        all,
        None::<&NoEntitiesSchema>,
        TCComputation::AssumeAlreadyComputed,
        cedar_policy_core::extensions::Extensions::all_available(),
    )
    .map(Entities::from)
    .map_err(|error| DecideError::Entities(error.to_string()))
}

/// [`crate::index::in_dependency_order`]; a cycle among the items is an error, as Cedar's is.
fn in_dependency_order(waits: &[Vec<usize>], close: impl FnMut(usize)) -> Result<(), DecideError> {
    if crate::index::in_dependency_order(waits, close) {
        Ok(())
    } else {
        Err(DecideError::Entities(
            "the request-scoped entities' parents form a cycle".into(),
        ))
    }
}
