//! The stored entities as the index reads them: dense ids, sorted ancestor lists and the
//! attributes the guards read (entities, sets of entities, booleans), built once per snapshot.
//!
//! Through Cedar's public API, every membership test (`Entities::is_ancestor_of`) is two SipHash
//! lookups of an `EntityUid` with a string comparison of its type path, and every attribute read
//! (`Entity::attr`) converts and clones the value: together about a third of a decision. Here a
//! request looks its principal and resource up once (a fast hash), and each guard is then a
//! binary search over `u32`s or a read of a precomputed attribute.
//!
//! Architecture Invariant: a `Graph` answers for the entities it was built from and no others.
//! Every uid it can meet there (stored entities, their ancestors, the entities their read
//! attributes name) has an id; a uid without one is none of those, so it is neither a stored
//! entity nor an ancestor of one.

use std::collections::HashMap;

use cedar_policy::{Entities, EntityTypeName, EntityUid};

use super::data::{AttrValue, kept_value};

type FxHashMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;

/// A stored attribute's value, as the guards use it (never [`AttrValue::Absent`] or
/// [`AttrValue::Unmet`]: the graph interns every entity a kept attribute names). Reading into a
/// record is left to Cedar.
pub type Stored = AttrValue<'static, u32, ()>;

#[derive(Debug, Default, Clone)]
struct Node {
    /// Whether the entity is stored (not only named as an ancestor or by an attribute).
    stored: bool,
    /// Ids of its ancestors (transitively closed, as Cedar stores them), sorted.
    ancestors: Box<[u32]>,
    /// (attribute slot, value) for the attributes it has among those the graph was built for.
    attrs: Box<[(u16, Stored)]>,
}

/// The stored entities, interned.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    ids: FxHashMap<EntityUid, u32>,
    /// Per id: the index of its type in `types`.
    type_of: Vec<u16>,
    types: Vec<EntityTypeName>,
    /// Per type: its index in `types` (a request's entity types are looked up here).
    type_ids: FxHashMap<EntityTypeName, u16>,
    nodes: Vec<Node>,
    /// The attributes kept, by slot.
    attrs: Box<[String]>,
}

impl Graph {
    /// Interns `entities`, keeping of their attributes those named in `attrs` (slot = position).
    /// `None` past `u32`/`u16` ids (not expected: the index then reads through Cedar).
    pub fn build(entities: &Entities, attrs: &[&str]) -> Option<Graph> {
        let mut graph = Graph::default();
        let mut type_ids = FxHashMap::default();
        u16::try_from(attrs.len()).ok()?;
        graph.attrs = attrs.iter().map(|attr| (*attr).to_owned()).collect();
        for entity in entities.iter() {
            graph.store(entity, entities, &mut type_ids)?;
        }
        graph.type_ids = type_ids;
        Some(graph)
    }

    /// This graph for `entities`, a store that differs from the one it was built for only in
    /// the entities `touched` (added, changed, removed, or closed again): those are interned
    /// anew (a removed one keeps its id, no longer stored), every other node is copied.
    /// `None` as for [`Graph::build`].
    pub fn updated(&self, entities: &Entities, touched: &[EntityUid]) -> Option<Graph> {
        let mut graph = self.clone();
        let mut type_ids = std::mem::take(&mut graph.type_ids);
        for uid in touched {
            match entities.get(uid) {
                Some(entity) => graph.store(entity, entities, &mut type_ids)?,
                None => {
                    if let Some(id) = graph.id(uid) {
                        graph.nodes[id as usize] = Node::default();
                    }
                }
            }
        }
        graph.type_ids = type_ids;
        Some(graph)
    }

    /// Interns `entity` of `entities` as stored: its closed ancestors and kept attributes.
    fn store(
        &mut self,
        entity: &cedar_policy::Entity,
        entities: &Entities,
        type_ids: &mut FxHashMap<EntityTypeName, u16>,
    ) -> Option<()> {
        let id = self.intern(&entity.uid(), type_ids)?;
        let mut ancestors: Vec<u32> = Vec::new();
        for ancestor in entities.ancestors(&entity.uid()).into_iter().flatten() {
            ancestors.push(self.intern(ancestor, type_ids)?);
        }
        ancestors.sort_unstable();
        ancestors.dedup();
        let mut kept = Vec::new();
        for slot in 0..self.attrs.len() {
            let Some(value) = entity.attr(&self.attrs[slot]) else {
                continue;
            };
            let value = kept_value(value, |uid| self.intern(uid, type_ids).map(Some))?;
            kept.push((u16::try_from(slot).ok()?, value));
        }
        let node = &mut self.nodes[id as usize];
        node.stored = true;
        node.ancestors = ancestors.into();
        node.attrs = kept.into();
        Some(())
    }

    /// Whether this graph answers as `fresh` (a graph built for the same entities, with the
    /// same attributes) does, uid by uid: every uid `fresh` has met, this one has, equally
    /// stored, with the same ancestors and kept attributes. This one may have met more (an
    /// updated graph keeps the ids of removed entities); those must not be stored. For tests.
    pub fn answers_like(&self, fresh: &Graph) -> Result<(), String> {
        if self.attrs != fresh.attrs {
            return Err(format!("attributes {:?} against {:?}", self.attrs, fresh.attrs));
        }
        let names = |graph: &Graph| {
            let mut names = vec![None; graph.nodes.len()];
            for (uid, &id) in &graph.ids {
                names[id as usize] = Some(uid.to_string());
            }
            names
        };
        let (ours, theirs) = (names(self), names(fresh));
        let describe = |graph: &Graph, names: &[Option<String>], id: u32| {
            let name = |id: &u32| names[*id as usize].clone().unwrap_or_default();
            let node = &graph.nodes[id as usize];
            let mut ancestors: Vec<String> = node.ancestors.iter().map(name).collect();
            ancestors.sort();
            let attrs: Vec<String> = node
                .attrs
                .iter()
                .map(|(slot, value)| match value {
                    AttrValue::Entity(id) => format!("{slot}: {}", name(id)),
                    AttrValue::Set(ids) => {
                        let mut ids: Vec<String> = ids.iter().map(name).collect();
                        ids.sort();
                        format!("{slot}: {ids:?}")
                    }
                    other => format!("{slot}: {other:?}"),
                })
                .collect();
            (node.stored, ancestors, attrs)
        };
        for (uid, &id) in &fresh.ids {
            let Some(our_id) = self.id(uid) else {
                return Err(format!("{uid} has no id"));
            };
            let (a, b) = (describe(self, &ours, our_id), describe(fresh, &theirs, id));
            if a != b {
                return Err(format!("{uid}: {a:?} against {b:?}"));
            }
        }
        for (uid, &id) in &self.ids {
            if fresh.id(uid).is_none() && self.nodes[id as usize].stored {
                return Err(format!("{uid} is stored here only"));
            }
        }
        Ok(())
    }

    /// The attributes the graph keeps, by slot.
    pub fn attrs(&self) -> &[String] {
        &self.attrs
    }

    fn intern(&mut self, uid: &EntityUid, type_ids: &mut FxHashMap<EntityTypeName, u16>) -> Option<u32> {
        if let Some(&id) = self.ids.get(uid) {
            return Some(id);
        }
        let id = u32::try_from(self.nodes.len()).ok()?;
        let type_id = match type_ids.get(uid.type_name()) {
            Some(&type_id) => type_id,
            None => {
                let type_id = u16::try_from(self.types.len()).ok()?;
                self.types.push(uid.type_name().clone());
                type_ids.insert(uid.type_name().clone(), type_id);
                type_id
            }
        };
        self.ids.insert(uid.clone(), id);
        self.type_of.push(type_id);
        self.nodes.push(Node::default());
        Some(id)
    }

    /// How many ids the graph has given (ids are below this).
    pub fn id_count(&self) -> u32 {
        u32::try_from(self.nodes.len()).unwrap_or(u32::MAX)
    }

    /// How many types the graph has met (type ids are below this).
    pub fn type_count(&self) -> usize {
        self.types.len()
    }

    /// The id of `uid`, if the graph has met it.
    pub fn id(&self, uid: &EntityUid) -> Option<u32> {
        self.ids.get(uid).copied()
    }

    /// The id of `uid` when it is a stored entity.
    pub fn stored(&self, uid: &EntityUid) -> Option<u32> {
        self.id(uid).filter(|&id| self.nodes[id as usize].stored)
    }

    /// The type of an id, as an index into the graph's types ([`Graph::type_id`]).
    pub fn type_of(&self, id: u32) -> &u16 {
        &self.type_of[id as usize]
    }

    /// The graph's index of a type, if any entity it has met is of that type.
    pub fn type_id(&self, type_name: &EntityTypeName) -> Option<u16> {
        self.type_ids.get(type_name).copied()
    }

    /// The ancestors of `id`, sorted (none unless stored).
    pub fn ancestors(&self, id: u32) -> &[u32] {
        &self.nodes[id as usize].ancestors
    }

    /// Cedar's `left in right` for two entities the graph has met: equal, or an ancestor.
    pub fn within(&self, left: u32, right: u32) -> bool {
        left == right || self.ancestors(left).binary_search(&right).is_ok()
    }

    /// `<id>.<attribute of slot>`: `None` when the entity is not stored or lacks it.
    pub fn attr(&self, id: u32, slot: u16) -> Option<&Stored> {
        let node = &self.nodes[id as usize];
        if !node.stored {
            return None;
        }
        node.attrs
            .iter()
            .find(|(at, _)| *at == slot)
            .map(|(_, value)| value)
    }
}

/// Calls `close` on each of `waits.len()` items after every item it waits for (`waits[i]`):
/// closing ancestors before descendants. False when a cycle leaves some never called.
pub fn in_dependency_order(waits: &[Vec<usize>], mut close: impl FnMut(usize)) -> bool {
    // Most often nothing waits (a request's entities none of which is another's parent).
    if waits.iter().all(Vec::is_empty) {
        (0..waits.len()).for_each(close);
        return true;
    }
    let mut waiting_on: Vec<usize> = waits.iter().map(Vec::len).collect();
    let mut waited_by: Vec<Vec<usize>> = vec![Vec::new(); waits.len()];
    for (item, needs) in waits.iter().enumerate() {
        for &other in needs {
            waited_by[other].push(item);
        }
    }
    let mut ready: Vec<usize> = (0..waits.len()).filter(|&item| waiting_on[item] == 0).collect();
    let mut closed = 0;
    while let Some(item) = ready.pop() {
        closed += 1;
        close(item);
        for next in std::mem::take(&mut waited_by[item]) {
            waiting_on[next] -= 1;
            if waiting_on[next] == 0 {
                ready.push(next);
            }
        }
    }
    closed == waits.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interns_ancestors_and_the_attributes_asked_for() {
        let entities = Entities::from_json_str(
            r#"[
                {"uid": {"type": "T", "id": "a"}, "attrs": {"up": {"__entity": {"type": "T", "id": "b"}},
                 "all": [{"__entity": {"type": "T", "id": "c"}}], "mixed": [1, {"__entity": {"type": "T", "id": "c"}}],
                 "name": "a", "rec": {"x": 1}},
                 "parents": [{"type": "G", "id": "g"}]},
                {"uid": {"type": "G", "id": "g"}, "attrs": {}, "parents": [{"type": "G", "id": "top"}]},
                {"uid": {"type": "T", "id": "b"}, "attrs": {}, "parents": []}
            ]"#,
            None,
        )
        .unwrap();
        let graph = Graph::build(&entities, &["up", "all", "mixed", "name", "rec", "absent"]).unwrap();
        let uid = |t: &str, id: &str| -> EntityUid { format!("{t}::\"{id}\"").parse().unwrap() };
        let (a, b, g, top) = (
            graph.stored(&uid("T", "a")).unwrap(),
            graph.stored(&uid("T", "b")).unwrap(),
            graph.stored(&uid("G", "g")).unwrap(),
            graph.id(&uid("G", "top")).unwrap(),
        );
        let c = graph.id(&uid("T", "c")).unwrap();
        // Named but not stored: an id, no data.
        assert_eq!(graph.stored(&uid("G", "top")), None);
        assert_eq!(graph.stored(&uid("T", "c")), None);
        assert_eq!(graph.id(&uid("T", "nowhere")), None);
        // The closure, as Cedar computes it (a in g in top).
        assert!(graph.within(a, g) && graph.within(a, top) && graph.within(g, top) && graph.within(a, a));
        assert!(!graph.within(g, a) && !graph.within(a, b) && !graph.within(top, g));
        assert_eq!(graph.attr(a, 0), Some(&AttrValue::Entity(b)));
        assert_eq!(graph.attr(a, 1), Some(&AttrValue::Set(vec![c].into())));
        assert_eq!(graph.attr(a, 2), Some(&AttrValue::Other));
        assert_eq!(graph.attr(a, 3), Some(&AttrValue::Other));
        assert_eq!(graph.attr(a, 4), Some(&AttrValue::Record(())));
        assert_eq!(graph.attr(a, 5), None);
        assert_eq!(graph.attr(b, 0), None);
        assert_eq!(graph.attr(c, 0), None);
        assert_eq!(*graph.type_of(a), graph.type_id(&"T".parse().unwrap()).unwrap());
        assert_ne!(graph.type_of(a), graph.type_of(g));
    }
}
