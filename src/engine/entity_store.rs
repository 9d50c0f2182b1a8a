//! The store of a directory's entities, checked against the schema and transitively closed,
//! and updated by the next load from what changed.
//!
//! Cedar's `Entities::from_entities` checks and closes every entity it is given, and its update
//! methods scan the whole store once per updated entity. A load after a directory edit gives
//! the same entities but a few, so [`EntityStore::update`] compares them with the previous
//! store's (attributes, tags, parents), checks only the added and changed ones against the
//! schema, closes them and every stored entity below one of them or below a removed one, and
//! shares every other entity with the previous store (an `Arc`, not a copy).
//!
//! Architecture Invariant: a store built or updated here equals Cedar's
//! `Entities::from_entities(entities, Some(schema))` over the same entities, entity by entity
//! (attributes, tags, closed ancestors), with the schema's actions (`tests/reload_reuse.rs`,
//! after edits of every kind, and the unit tests below). Whatever it is unsure of (an entity of
//! an action type, a uid given twice, parents in a cycle, an entity that does not conform) it
//! refuses, and the caller asks Cedar.

use std::collections::HashSet;
use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityUid, Schema};
use cedar_policy_core::ast;
use cedar_policy_core::entities::{Dereference, Entities as CoreStore, NoEntitiesSchema, TCComputation};
use rustc_hash::FxBuildHasher;

use super::SchemaTables;

type FxHashMap<K, V> = std::collections::HashMap<K, V, FxBuildHasher>;
type FxHashSet<K> = HashSet<K, FxBuildHasher>;

/// A closed store and handles to its entities (all but the schema's actions), which the next
/// update shares.
#[derive(Debug)]
pub struct EntityStore {
    entities: Arc<Entities>,
    held: Vec<Arc<ast::Entity>>,
}

/// An [`EntityStore::update`]: the store, and what changed.
#[derive(Debug)]
pub struct Updated {
    /// The updated store.
    pub store: EntityStore,
    /// How many entities were added, changed, removed and closed again.
    pub changes: Changes,
    /// Those entities' uids (the ones whose data differs from the previous store's).
    pub touched: Vec<EntityUid>,
}

/// What an [`EntityStore::update`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    /// Entities that were not stored.
    pub added: usize,
    /// Stored entities whose attributes, tags or parents changed.
    pub changed: usize,
    /// Stored entities no longer given.
    pub removed: usize,
    /// Unchanged entities closed again: below a changed or removed one.
    pub reclosed: usize,
}

impl EntityStore {
    /// The store: the entities and the schema's actions.
    pub fn entities(&self) -> &Arc<Entities> {
        &self.entities
    }

    /// `entities` (each with its parents, not closed) checked against `schema` and closed,
    /// with the schema's actions. `None` where Cedar must decide: an entity does not conform
    /// or has an action's type, a uid is given twice, or parents form a cycle.
    pub fn build(entities: &[Entity], schema: &Schema) -> Option<Self> {
        let tables = SchemaTables::new(schema);
        let mut pending = Vec::with_capacity(entities.len());
        for entity in entities {
            let entity = core(entity);
            if !acceptable(&tables, schema, entity) {
                return None;
            }
            pending.push(entity.clone());
        }
        let closed = close(pending, |_| None)?;
        assemble(schema, closed.into_iter().map(Arc::new).collect())
    }

    /// A copy of Cedar's store, for the entities [`EntityStore::build`] leaves to Cedar and
    /// Cedar accepts (each entity copied once).
    pub fn adopt(entities: Entities, schema: &Schema) -> Option<Self> {
        let held = entities
            .iter()
            .map(core)
            .filter(|entity| !entity.uid().entity_type().is_action())
            .map(|entity| Arc::new(entity.clone()))
            .collect();
        assemble(schema, held)
    }

    /// The store of `entities` (as [`EntityStore::build`] takes them) under the same `schema`
    /// as this one, sharing every entity that is unchanged and not below a changed or removed
    /// one. `None` where [`EntityStore::build`] would refuse (the caller then builds anew).
    /// Even when nothing changed the store is a new one (a map of the shared entities).
    pub fn update(&self, entities: &[Entity], schema: &Schema) -> Option<Updated> {
        let stored: &CoreStore = self.entities.as_ref().as_ref();
        let tables = SchemaTables::new(schema);
        let mut changes = Changes::default();
        // Uids given, and those added, changed or removed.
        let mut given: FxHashSet<&ast::EntityUID> = FxHashSet::default();
        given.reserve(entities.len());
        let mut touched: FxHashSet<&ast::EntityUID> = FxHashSet::default();
        let mut pending = Vec::new();
        for entity in entities {
            let entity = core(entity);
            if !given.insert(entity.uid()) {
                return None;
            }
            match stored.entity(entity.uid()) {
                Dereference::Data(old) if same_facts(old, entity) => continue,
                Dereference::Data(_) => changes.changed += 1,
                _ => changes.added += 1,
            }
            if !acceptable(&tables, schema, entity) {
                return None;
            }
            touched.insert(entity.uid());
            pending.push(entity.clone());
        }
        for held in &self.held {
            if !given.contains(held.uid()) {
                touched.insert(held.uid());
                changes.removed += 1;
            }
        }
        let mut kept = Vec::with_capacity(self.held.len());
        if !touched.is_empty() {
            for held in &self.held {
                if touched.contains(held.uid()) {
                    continue;
                }
                if held.ancestors().any(|uid| touched.contains(uid)) {
                    let mut open = ast::Entity::clone(held);
                    for uid in held.indirect_ancestors() {
                        open.remove_indirect_ancestor(uid);
                    }
                    pending.push(open);
                    changes.reclosed += 1;
                } else {
                    kept.push(held.clone());
                }
            }
        } else {
            kept.extend(self.held.iter().cloned());
        }
        // A parent outside `pending` is kept (closed, unchanged) or removed (no data now).
        let closed = close(pending, |uid| match stored.entity(uid) {
            Dereference::Data(entity) if !touched.contains(uid) => Some(entity),
            _ => None,
        })?;
        let mut touched: Vec<EntityUid> = touched
            .iter()
            .filter(|uid| !given.contains(*uid))
            .map(|uid| EntityUid::from((*uid).clone()))
            .collect();
        touched.extend(closed.iter().map(|entity| EntityUid::from(entity.uid().clone())));
        kept.extend(closed.into_iter().map(Arc::new));
        Some(Updated {
            store: assemble(schema, kept)?,
            changes,
            touched,
        })
    }
}

fn core(entity: &Entity) -> &ast::Entity {
    entity.as_ref()
}

/// Whether this store may take `entity` unchecked by Cedar's store: not of an action type
/// (Cedar checks those after closing, against the schema's own), and conforming to the schema.
fn acceptable(tables: &SchemaTables, schema: &Schema, entity: &ast::Entity) -> bool {
    !entity.uid().entity_type().is_action()
        && (tables.plainly_conforms(entity) || tables.conforms(schema, entity))
}

/// Whether an entity as given (parents only) has the facts of a stored one (its attributes,
/// tags and parents; the stored one's other ancestors are its closure).
fn same_facts(stored: &ast::Entity, given: &ast::Entity) -> bool {
    stored.attrs_len() == given.attrs_len()
        && stored.tags_len() == given.tags_len()
        && stored.parents().count() == given.parents().count()
        && stored.attrs().eq(given.attrs())
        && stored.tags().eq(given.tags())
        && given
            .parents()
            .all(|parent| stored.parents().any(|other| other == parent))
}

/// `pending` (each with its parents and no other ancestors) closed, ancestors first: a
/// parent's ancestors are its own closure in `pending`, or those of `closed(parent)` (an
/// entity whose ancestors are complete), or none (a parent with no data, as in Cedar).
/// `None` when a uid repeats or parents form a cycle.
fn close<'s>(
    mut pending: Vec<ast::Entity>,
    closed: impl Fn(&ast::EntityUID) -> Option<&'s ast::Entity>,
) -> Option<Vec<ast::Entity>> {
    // Per entity: its parents in `pending` (positions), and the closed entities among the rest.
    let mut listed: Vec<Vec<usize>> = Vec::with_capacity(pending.len());
    let mut outside: Vec<Vec<&'s ast::Entity>> = Vec::with_capacity(pending.len());
    {
        let mut at: FxHashMap<&ast::EntityUID, usize> = FxHashMap::default();
        at.reserve(pending.len());
        for (i, entity) in pending.iter().enumerate() {
            if at.insert(entity.uid(), i).is_some() {
                return None;
            }
        }
        for entity in &pending {
            let (mut mine, mut theirs) = (Vec::new(), Vec::new());
            for parent in entity.parents() {
                match at.get(parent) {
                    Some(&p) => mine.push(p),
                    None => theirs.extend(closed(parent)),
                }
            }
            listed.push(mine);
            outside.push(theirs);
        }
    }
    let acyclic = crate::index::in_dependency_order(&listed, |node| {
        let mut more: Vec<ast::EntityUID> = outside[node]
            .iter()
            .flat_map(|entity| entity.ancestors().cloned())
            .collect();
        more.extend(listed[node].iter().flat_map(|&p| pending[p].ancestors().cloned()));
        for uid in more {
            pending[node].add_indirect_ancestor(uid);
        }
    });
    acyclic.then_some(pending)
}

/// The store of `held` (closed entities, no actions) and the schema's actions.
fn assemble(schema: &Schema, mut held: Vec<Arc<ast::Entity>>) -> Option<EntityStore> {
    // `build` collects its entities into their `Arc`s in place: the list would keep the room of
    // the entities themselves (~260 bytes each, 4.8 MB on the large set) for 8-byte handles.
    held.shrink_to_fit();
    let actions = Entities::from_entities(std::iter::empty(), Some(schema)).ok()?;
    let store = AsRef::<CoreStore>::as_ref(&actions)
        .clone()
        .add_entities(
            held.iter().cloned(),
            None::<&NoEntitiesSchema>,
            TCComputation::AssumeAlreadyComputed,
            cedar_policy_core::extensions::Extensions::all_available(),
        )
        .ok()?;
    Some(EntityStore {
        entities: Arc::new(Entities::from(store)),
        held,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::str::FromStr;

    use super::*;

    #[test]
    fn a_built_store_holds_no_spare_room() {
        let (schema, _) = Schema::from_cedarschema_str("entity T in [T];").unwrap();
        let uid = |id: &str| EntityUid::from_str(&format!("T::\"{id}\"")).unwrap();
        let entities: Vec<Entity> = (0..100)
            .map(|i| {
                let parents: HashSet<EntityUid> =
                    (i > 0).then(|| uid(&(i - 1).to_string())).into_iter().collect();
                Entity::new_no_attrs(uid(&i.to_string()), parents)
            })
            .collect();
        let store = EntityStore::build(&entities, &schema).unwrap();
        assert_eq!(store.held.len(), 100);
        // Collected in place from the entities, the list kept their room (~30 handles each).
        assert_eq!(store.held.capacity(), store.held.len());
        let last = store.entities().get(&uid("99")).unwrap();
        assert!(
            store
                .entities()
                .ancestors(&last.uid())
                .unwrap()
                .any(|a| *a == uid("0"))
        );
    }
}
