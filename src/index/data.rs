//! What the index reads of the entities a request is evaluated over, behind one trait
//! ([`EntityData`]) so that the guards ([`super::guards`]) and the entity-keyed selection are
//! written once:
//!
//! * [`GraphData`]: the store the index was built with, read from its [`Graph`] (dense ids,
//!   sorted ancestor lists, the attributes the guards read, converted once per snapshot): the
//!   fast path, taken whenever the request's principal and resource are stored entities;
//! * [`CedarData`]: any entities, read through Cedar's API (a slice with request-scoped
//!   entities, a principal or resource the store lacks, or a read the graph cannot answer).
//!
//! Both read as Cedar evaluates: `in` is equality or an ancestor, a missing entity has no
//! attributes, and what would make Cedar raise an error reads as [`AttrValue::Absent`] (an
//! attribute) or [`AttrValue::Other`] (a value that is neither an entity nor a boolean).

use std::borrow::{Borrow, Cow};
use std::cell::OnceCell;
use std::hash::Hash;

use cedar_policy::{Context, Entities, Entity, EntityTypeName, EntityUid, EvalResult, Record};

use super::graph::{Graph, in_dependency_order};
use super::guards::ContextReads;
use super::scoped::LayerEntity;

/// One attribute's value (or one context value), as the guards use it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttrValue<'a, E: Clone, R> {
    /// The attribute (or the entity holding it) is missing, or reading it would error.
    Absent,
    /// An entity.
    Entity(E),
    /// An entity the data has never met: not stored, and an ancestor of no stored entity
    /// (only a [`Graph`] knows this; Cedar's API gives the entity).
    Unmet,
    /// A set whose elements are all entities: those the data can name (an unmet one is no
    /// stored entity's ancestor, so leaving it out changes no `in`).
    Set(Cow<'a, [E]>),
    /// A record (reading into it: [`EntityData::record_attr`]).
    Record(R),
    /// A boolean.
    Bool(bool),
    /// Present, but not an entity, a set of entities or a boolean: `in` on it would error, and
    /// so would reading an attribute of it.
    Other,
}

impl<E: Clone, R: Clone> AttrValue<'_, E, R> {
    /// The same value, borrowing its set.
    pub fn borrowed(&self) -> AttrValue<'_, E, R> {
        match self {
            AttrValue::Absent => AttrValue::Absent,
            AttrValue::Entity(entity) => AttrValue::Entity(entity.clone()),
            AttrValue::Unmet => AttrValue::Unmet,
            AttrValue::Set(entities) => AttrValue::Set(Cow::Borrowed(entities)),
            AttrValue::Record(record) => AttrValue::Record(record.clone()),
            AttrValue::Bool(value) => AttrValue::Bool(*value),
            AttrValue::Other => AttrValue::Other,
        }
    }

    /// The same value, owning its set.
    pub fn into_owned(self) -> AttrValue<'static, E, R> {
        match self {
            AttrValue::Absent => AttrValue::Absent,
            AttrValue::Entity(entity) => AttrValue::Entity(entity),
            AttrValue::Unmet => AttrValue::Unmet,
            AttrValue::Set(entities) => AttrValue::Set(Cow::Owned(entities.into_owned())),
            AttrValue::Record(record) => AttrValue::Record(record),
            AttrValue::Bool(value) => AttrValue::Bool(value),
            AttrValue::Other => AttrValue::Other,
        }
    }
}

/// An [`AttrValue`] as `D` names entities and records.
pub type Value<'a, D> = AttrValue<'a, <D as EntityData<'a>>::Entity, <D as EntityData<'a>>::Record>;

/// The entities of one request, as the index reads them: types, ancestors, attributes, and the
/// request's context. `'a`: what the data borrows (the entities, the context).
pub trait EntityData<'a>: Copy + 'a {
    /// An entity as a request meets it (its principal or resource, an ancestor, a value).
    type Entity: Clone + Borrow<Self::EntityKey>;
    /// An entity as the index keys policies by it.
    type EntityKey: Eq + Hash + 'a;
    /// An entity type as the index keys policies by it.
    type TypeKey: Eq;
    /// A record value.
    type Record: Clone;

    /// The type of `entity`.
    fn type_of<'k>(&'k self, entity: &'k Self::EntityKey) -> &'k Self::TypeKey;

    /// The ancestors of `entity` (none when it is not stored).
    fn ancestors(&self, entity: &Self::EntityKey) -> impl Iterator<Item = &'a Self::EntityKey>;

    /// Cedar's `left in right` for two entities: equal, or `right` is an ancestor of `left`.
    fn within(&self, left: &Self::EntityKey, right: &Self::EntityKey) -> bool;

    /// `<entity>.<attr>` (`slot`: the attribute's place among those the index reads).
    /// `None`: this data cannot answer; read through Cedar.
    fn attr(&self, entity: &Self::Entity, attr: &str, slot: u16) -> Option<Value<'a, Self>>;

    /// `context.<attr>` of the request (`step`: the guards' step reading it).
    fn context_attr(&self, step: usize, attr: &str) -> Value<'a, Self>;

    /// `<record>.<attr>`. `None`: this data cannot answer; read through Cedar.
    fn record_attr(&self, record: &Self::Record, attr: &str) -> Option<Value<'a, Self>>;

    /// An entity named by a value; `None` when the data has never met it ([`AttrValue::Unmet`]).
    fn entity(&self, uid: Cow<'_, EntityUid>) -> Option<Self::Entity>;

    /// A record value.
    fn record(&self, record: Record) -> Self::Record;

    /// Whether `entity` is `uid`, literal `at` of the guards.
    fn is_literal(&self, entity: &Self::EntityKey, at: usize, uid: &EntityUid) -> bool;

    /// Whether the data has met `uid`, literal `at` (else an entity it never met may be it).
    fn knows_literal(&self, at: usize, uid: &EntityUid) -> bool;

    /// A value Cedar gave (from the context, a record or an entity's attributes).
    fn value(&self, value: EvalResult) -> Value<'a, Self> {
        match value {
            EvalResult::EntityUid(uid) => self
                .entity(Cow::Owned(uid))
                .map_or(AttrValue::Unmet, AttrValue::Entity),
            EvalResult::Set(set) => {
                let mut entities = Vec::new();
                for element in set.iter() {
                    let EvalResult::EntityUid(uid) = element else {
                        return AttrValue::Other;
                    };
                    entities.extend(self.entity(Cow::Borrowed(uid)));
                }
                AttrValue::Set(Cow::Owned(entities))
            }
            EvalResult::Record(record) => AttrValue::Record(self.record(record)),
            EvalResult::Bool(value) => AttrValue::Bool(value),
            _ => AttrValue::Other,
        }
    }
}

/// The store the index was built with, read from its [`Graph`]: entities by id, types by the
/// graph's type ids. Reading into a record is left to Cedar.
#[derive(Debug, Clone, Copy)]
pub struct GraphData<'a> {
    graph: &'a Graph,
    /// The guards' literals as the graph numbers them ([`super::guards::Atoms::literal_ids`]).
    literals: &'a [Option<u32>],
    context: Option<&'a Context>,
    /// The context's values read beforehand from this very context, for these guards.
    prepared: Option<&'a ContextReads>,
}

impl<'a> GraphData<'a> {
    /// The graph with the guards' literals as it numbers them, the request's context and what
    /// was read from it beforehand (only when made by the same guards from exactly this context).
    pub fn new(
        graph: &'a Graph,
        literals: &'a [Option<u32>],
        context: Option<&'a Context>,
        prepared: Option<&'a ContextReads>,
    ) -> Self {
        GraphData {
            graph,
            literals,
            context,
            prepared,
        }
    }
}

impl<'a> EntityData<'a> for GraphData<'a> {
    type Entity = u32;
    type EntityKey = u32;
    type TypeKey = u16;
    type Record = ();

    fn type_of<'k>(&'k self, entity: &'k u32) -> &'k u16 {
        self.graph.type_of(*entity)
    }

    fn ancestors(&self, entity: &u32) -> impl Iterator<Item = &'a u32> {
        self.graph.ancestors(*entity).iter()
    }

    fn within(&self, left: &u32, right: &u32) -> bool {
        self.graph.within(*left, *right)
    }

    fn attr(&self, entity: &u32, _: &str, slot: u16) -> Option<Value<'a, Self>> {
        Some(
            self.graph
                .attr(*entity, slot)
                .map_or(AttrValue::Absent, AttrValue::borrowed),
        )
    }

    fn context_attr(&self, step: usize, attr: &str) -> Value<'a, Self> {
        if let Some(value) = self.prepared.and_then(|prepared| prepared.step(step)) {
            return value.borrowed();
        }
        match self.context.and_then(|context| context.get(attr)) {
            Some(value) => self.value(value),
            None => AttrValue::Absent,
        }
    }

    fn record_attr(&self, _: &(), _: &str) -> Option<Value<'a, Self>> {
        None
    }

    fn entity(&self, uid: Cow<'_, EntityUid>) -> Option<u32> {
        self.graph.id(&uid)
    }

    fn record(&self, _: Record) {}

    fn is_literal(&self, entity: &u32, at: usize, _: &EntityUid) -> bool {
        self.literals.get(at).copied().flatten() == Some(*entity)
    }

    fn knows_literal(&self, at: usize, _: &EntityUid) -> bool {
        self.literals.get(at).copied().flatten().is_some()
    }
}

/// Any entities, read through Cedar's API.
#[derive(Debug, Clone, Copy)]
pub struct CedarData<'a> {
    entities: &'a Entities,
    context: Option<&'a Context>,
}

impl<'a> CedarData<'a> {
    /// `entities`, with the request's context.
    pub fn new(entities: &'a Entities, context: Option<&'a Context>) -> Self {
        CedarData { entities, context }
    }
}

/// An entity read through Cedar's API: its uid, and its data once looked up (a SipHash lookup
/// by uid; an entity whose attributes several steps read, such as `resource.workspace`, is
/// looked up once).
#[derive(Debug, Clone)]
pub struct CedarEntity<'a> {
    uid: Uid<'a>,
    data: OnceCell<Option<&'a Entity>>,
}

/// A uid, borrowed or boxed: small, as values are moved and kept per attribute step (an
/// `EntityUid` held inline is over a hundred bytes).
#[derive(Debug, Clone)]
enum Uid<'a> {
    Borrowed(&'a EntityUid),
    Owned(Box<EntityUid>),
}

impl<'a> CedarEntity<'a> {
    /// The entity `uid` names.
    pub fn new(uid: Cow<'a, EntityUid>) -> Self {
        let uid = match uid {
            Cow::Borrowed(uid) => Uid::Borrowed(uid),
            Cow::Owned(uid) => Uid::Owned(Box::new(uid)),
        };
        CedarEntity {
            uid,
            data: OnceCell::new(),
        }
    }
}

impl Borrow<EntityUid> for CedarEntity<'_> {
    fn borrow(&self) -> &EntityUid {
        match &self.uid {
            Uid::Borrowed(uid) => uid,
            Uid::Owned(uid) => uid,
        }
    }
}

impl<'a> EntityData<'a> for CedarData<'a> {
    type Entity = CedarEntity<'a>;
    type EntityKey = EntityUid;
    type TypeKey = EntityTypeName;
    type Record = Record;

    fn type_of<'k>(&'k self, entity: &'k EntityUid) -> &'k EntityTypeName {
        entity.type_name()
    }

    fn ancestors(&self, entity: &EntityUid) -> impl Iterator<Item = &'a EntityUid> {
        self.entities.ancestors(entity).into_iter().flatten()
    }

    fn within(&self, left: &EntityUid, right: &EntityUid) -> bool {
        left == right || self.entities.is_ancestor_of(right, left)
    }

    fn attr(&self, entity: &CedarEntity<'a>, attr: &str, _: u16) -> Option<Value<'a, Self>> {
        let data = entity.data.get_or_init(|| self.entities.get(entity.borrow()));
        Some(match data.and_then(|data| data.attr(attr)) {
            None => AttrValue::Absent,
            Some(Ok(value)) => self.value(value),
            // Cedar could not convert it: present, not a plain value.
            Some(Err(_)) => AttrValue::Other,
        })
    }

    fn context_attr(&self, _: usize, attr: &str) -> Value<'a, Self> {
        match self.context.and_then(|context| context.get(attr)) {
            Some(value) => self.value(value),
            None => AttrValue::Absent,
        }
    }

    fn record_attr(&self, record: &Record, attr: &str) -> Option<Value<'a, Self>> {
        Some(
            record
                .get(attr)
                .cloned()
                .map_or(AttrValue::Absent, |value| self.value(value)),
        )
    }

    fn entity(&self, uid: Cow<'_, EntityUid>) -> Option<CedarEntity<'a>> {
        Some(CedarEntity::new(Cow::Owned(uid.into_owned())))
    }

    fn record(&self, record: Record) -> Record {
        record
    }

    fn is_literal(&self, entity: &EntityUid, _: usize, uid: &EntityUid) -> bool {
        entity == uid
    }

    fn knows_literal(&self, _: usize, _: &EntityUid) -> bool {
        true
    }
}

/// An attribute's value as the index keeps it: `id` numbers each entity it names (`Some(None)`:
/// one the data never met, [`AttrValue::Unmet`] alone and left out of a set; `None`: past the ids
/// there are, and the whole read fails).
pub(super) fn kept_value<X>(
    value: Result<EvalResult, X>,
    mut id: impl FnMut(&EntityUid) -> Option<Option<u32>>,
) -> Option<AttrValue<'static, u32, ()>> {
    Some(match value {
        Ok(EvalResult::EntityUid(uid)) => id(&uid)?.map_or(AttrValue::Unmet, AttrValue::Entity),
        Ok(EvalResult::Set(set)) => {
            let mut ids = Vec::new();
            for element in set.iter() {
                // A set with another value: `in` on it errors.
                let EvalResult::EntityUid(uid) = element else {
                    return Some(AttrValue::Other);
                };
                ids.extend(id(uid)?);
            }
            AttrValue::Set(Cow::Owned(ids))
        }
        Ok(EvalResult::Record(_)) => AttrValue::Record(()),
        Ok(EvalResult::Bool(value)) => AttrValue::Bool(value),
        _ => AttrValue::Other,
    })
}

/// A request's own entities over a [`Graph`] ([`LayeredData`]): numbered after the graph's ids,
/// closed over the stored ones and each other, with the attributes the graph keeps converted
/// once. Built only when no uid of the request's entities is one the graph has met (so no stored
/// entity names one of them, and none is stored).
#[derive(Debug)]
pub struct Layer {
    /// The first id past the graph's.
    base: u32,
    /// Per layer id: its uid. The request's entities first, then the entities they name as
    /// parents that nothing stores (ids for `in`, without data).
    uids: Vec<EntityUid>,
    /// Per layer id: its type (the graph's id, or one past the graph's types).
    types: Vec<u16>,
    /// Per request entity: its ancestors, closed, sorted.
    ancestors: Vec<Vec<u32>>,
    /// Per request entity: (slot, value) of the attributes the graph keeps.
    attrs: Vec<Vec<(u16, AttrValue<'static, u32, ()>)>>,
    /// Types the graph has not met, numbered past its own.
    new_types: Vec<EntityTypeName>,
}

impl Layer {
    /// The layer of `scoped` over `graph`; `None` when the graph has met one of their uids, two
    /// share a uid, or their parents form a cycle (the slice then decides, and reports it).
    pub fn new<E: LayerEntity>(graph: &Graph, scoped: &[E]) -> Option<Layer> {
        let base = graph.id_count();
        let mut layer = Layer {
            base,
            uids: Vec::with_capacity(scoped.len()),
            types: Vec::with_capacity(scoped.len()),
            // Set once they are closed, below.
            ancestors: Vec::new(),
            attrs: Vec::with_capacity(scoped.len()),
            new_types: Vec::new(),
        };
        for entity in scoped {
            let uid = entity.uid();
            if graph.id(&uid).is_some() || layer.uids.contains(&uid) {
                return None;
            }
            layer.push(graph, uid)?;
        }
        // Parents: ids of the graph's, of the request's, or new ones.
        let mut parents: Vec<Vec<u32>> = Vec::with_capacity(scoped.len());
        for entity in scoped {
            let mut ids = Vec::new();
            for parent in entity.parents() {
                let id = match layer.id(graph, &parent) {
                    Some(id) => id,
                    None => layer.push(graph, parent)?,
                };
                ids.push(id);
            }
            parents.push(ids);
        }
        // Closed, ancestors first: a parent among the request's entities is closed before its
        // children; a cycle among them is left to the slice.
        let local = |parent: u32| {
            let at = parent.checked_sub(base)? as usize;
            (at < scoped.len()).then_some(at)
        };
        let waits: Vec<Vec<usize>> = parents
            .iter()
            .map(|ids| ids.iter().filter_map(|&parent| local(parent)).collect())
            .collect();
        let mut closed: Vec<Vec<u32>> = vec![Vec::new(); scoped.len()];
        let acyclic = in_dependency_order(&waits, |at| {
            let mut all = Vec::new();
            for &parent in &parents[at] {
                all.push(parent);
                match local(parent) {
                    Some(theirs) => all.extend_from_slice(&closed[theirs]),
                    None if parent < base => all.extend_from_slice(graph.ancestors(parent)),
                    None => {}
                }
            }
            all.sort_unstable();
            all.dedup();
            closed[at] = all;
        });
        if !acyclic {
            return None;
        }
        layer.ancestors = closed;
        // The kept attributes, as the graph converts a stored entity's.
        for entity in scoped {
            let kept = entity.kept_attrs(graph.attrs(), |uid| layer.id(graph, uid))?;
            layer.attrs.push(kept);
        }
        Some(layer)
    }

    /// The id of `uid`: the graph's, or the layer's.
    fn id(&self, graph: &Graph, uid: &EntityUid) -> Option<u32> {
        if let Some(id) = graph.id(uid) {
            return Some(id);
        }
        let at = self.uids.iter().position(|known| known == uid)?;
        Some(self.base + u32::try_from(at).ok()?)
    }

    /// A new layer id for `uid`.
    fn push(&mut self, graph: &Graph, uid: EntityUid) -> Option<u32> {
        let type_id = match graph.type_id(uid.type_name()) {
            Some(type_id) => type_id,
            None => {
                let at = match self.new_types.iter().position(|known| known == uid.type_name()) {
                    Some(at) => at,
                    None => {
                        self.new_types.push(uid.type_name().clone());
                        self.new_types.len() - 1
                    }
                };
                u16::try_from(graph.type_count() + at).ok()?
            }
        };
        let id = self.base.checked_add(u32::try_from(self.uids.len()).ok()?)?;
        self.uids.push(uid);
        self.types.push(type_id);
        Some(id)
    }

    /// The layer's own place of `id`, if it is one of the request's entities (those with
    /// ancestors).
    fn scoped_at(&self, id: u32) -> Option<usize> {
        let at = id.checked_sub(self.base)? as usize;
        (at < self.ancestors.len()).then_some(at)
    }
}

/// The store the index was built with ([`GraphData`]) with a request's own entities on top
/// ([`Layer`]): what a slice of the store and those entities would hold, read without making one.
#[derive(Debug, Clone, Copy)]
pub struct LayeredData<'a> {
    stored: GraphData<'a>,
    layer: &'a Layer,
}

impl<'a> LayeredData<'a> {
    /// `layer` over `stored`, which must be its graph.
    pub fn new(stored: GraphData<'a>, layer: &'a Layer) -> Self {
        LayeredData { stored, layer }
    }

    /// The ancestors of `id`, sorted (none for an id that is neither stored nor the request's).
    fn ancestors_of(&self, id: u32) -> &'a [u32] {
        let layer: &'a Layer = self.layer;
        match layer.scoped_at(id) {
            Some(at) => &layer.ancestors[at],
            None if id >= layer.base => &[],
            None => self.stored.graph.ancestors(id),
        }
    }

    /// A request's principal or resource: a stored entity or one of the request's own.
    pub fn entity_of(&self, uid: &EntityUid) -> Option<u32> {
        // The request's own first (a few, compared): none is a uid the graph has met
        // (`Layer::new`), so the graph is asked only for the others.
        let layer = self.layer;
        match layer.uids[..layer.ancestors.len()]
            .iter()
            .position(|own| own == uid)
        {
            Some(at) => layer.base.checked_add(u32::try_from(at).ok()?),
            None => self.stored.graph.stored(uid),
        }
    }
}

impl<'a> EntityData<'a> for LayeredData<'a> {
    type Entity = u32;
    type EntityKey = u32;
    type TypeKey = u16;
    type Record = ();

    fn type_of<'k>(&'k self, entity: &'k u32) -> &'k u16 {
        match entity.checked_sub(self.layer.base) {
            Some(at) => &self.layer.types[at as usize],
            None => self.stored.type_of(entity),
        }
    }

    fn ancestors(&self, entity: &u32) -> impl Iterator<Item = &'a u32> {
        self.ancestors_of(*entity).iter()
    }

    fn within(&self, left: &u32, right: &u32) -> bool {
        left == right || self.ancestors_of(*left).binary_search(right).is_ok()
    }

    fn attr(&self, entity: &u32, attr: &str, slot: u16) -> Option<Value<'a, Self>> {
        if *entity < self.layer.base {
            return self.stored.attr(entity, attr, slot);
        }
        let layer: &'a Layer = self.layer;
        Some(
            layer
                .scoped_at(*entity)
                .and_then(|at| layer.attrs[at].iter().find(|(kept, _)| *kept == slot))
                .map_or(AttrValue::Absent, |(_, value)| value.borrowed()),
        )
    }

    fn context_attr(&self, _: usize, attr: &str) -> Value<'a, Self> {
        match self.stored.context.and_then(|context| context.get(attr)) {
            Some(value) => self.value(value),
            None => AttrValue::Absent,
        }
    }

    fn record_attr(&self, _: &(), _: &str) -> Option<Value<'a, Self>> {
        None
    }

    fn entity(&self, uid: Cow<'_, EntityUid>) -> Option<u32> {
        self.layer.id(self.stored.graph, &uid)
    }

    fn record(&self, _: Record) {}

    fn is_literal(&self, entity: &u32, at: usize, uid: &EntityUid) -> bool {
        match entity.checked_sub(self.layer.base) {
            Some(local) => self.layer.uids[local as usize] == *uid,
            None => self.stored.is_literal(entity, at, uid),
        }
    }

    fn knows_literal(&self, at: usize, uid: &EntityUid) -> bool {
        self.stored.knows_literal(at, uid) || self.layer.uids.contains(uid)
    }
}
