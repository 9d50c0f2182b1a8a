//! Request-scoped entities as plain data ([`ScopedEntity`]): what a caller most often sends (a
//! resource and where it lives), read by the index's [`super::Layer`] as it is and made a Cedar
//! entity only when Cedar has to evaluate over it. [`LayerEntity`] is what a layer reads of a
//! request-scoped entity, of either form.

use std::collections::HashSet;

use cedar_policy::{Entity, EntityUid};
use cedar_policy_core::ast::{self, PartialValue};
use smol_str::SmolStr;

use super::data::{AttrValue, kept_value};

/// A request-scoped entity of the plain shapes: a uid, parents, and attributes that are
/// booleans, integers, strings or entity references (no tags, no sets or records). Exactly the
/// Cedar entity [`ScopedEntity::to_cedar`] makes of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopedEntity {
    /// Its uid.
    pub uid: EntityUid,
    /// Its parents as sent (a parent sent twice is one parent, as in Cedar's set).
    pub parents: Vec<EntityUid>,
    /// Its attributes, each name once.
    pub attrs: Vec<(SmolStr, ScopedValue)>,
}

/// An attribute value of a [`ScopedEntity`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopedValue {
    /// A boolean.
    Bool(bool),
    /// An integer.
    Long(i64),
    /// A string.
    String(SmolStr),
    /// An entity reference.
    Entity(EntityUid),
}

impl ScopedEntity {
    /// The Cedar entity this one is: its attributes as values (what Cedar's `Entity::new` would
    /// evaluate them to, without evaluating expressions), its parents as a set, no tags.
    pub fn to_core(&self) -> ast::Entity {
        let parents: HashSet<ast::EntityUID> = self.parents.iter().map(|uid| uid.as_ref().clone()).collect();
        let attrs = self.attrs.iter().map(|(name, value)| {
            let value: ast::Value = match value {
                ScopedValue::Bool(b) => (*b).into(),
                ScopedValue::Long(n) => (*n).into(),
                ScopedValue::String(text) => text.clone().into(),
                ScopedValue::Entity(uid) => uid.as_ref().clone().into(),
            };
            (name.clone(), PartialValue::from(value))
        });
        ast::Entity::new_with_attr_partial_value(
            self.uid.as_ref().clone(),
            attrs,
            HashSet::new(),
            parents,
            [],
        )
    }

    /// [`ScopedEntity::to_core`] as the API's entity.
    pub fn to_cedar(&self) -> Entity {
        Entity::from(self.to_core())
    }

    /// The entities it names: its parents and the entities its attributes refer to.
    pub fn named(&self) -> impl Iterator<Item = &EntityUid> {
        self.parents
            .iter()
            .chain(self.attrs.iter().filter_map(|(_, value)| match value {
                ScopedValue::Entity(uid) => Some(uid),
                _ => None,
            }))
    }
}

/// What a [`super::Layer`] reads of a request-scoped entity.
pub trait LayerEntity {
    /// Its uid.
    fn uid(&self) -> EntityUid;
    /// Its parents (not closed; a parent may come twice).
    fn parents(&self) -> impl Iterator<Item = EntityUid>;
    /// Its attributes' names.
    fn attr_names(&self) -> impl Iterator<Item = &str>;
    /// Its attribute `name` as the index keeps it, an entity numbered by `id` (`None`: one the
    /// data never met); `Some(None)` when it has no such value, `None` past the ids there are.
    fn kept_value(
        &self,
        name: &str,
        id: impl FnMut(&EntityUid) -> Option<u32>,
    ) -> Option<Option<AttrValue<'static, u32, ()>>>;

    /// Its attributes named in `kept` (by position: the slot), as the index keeps them: those it
    /// has (few) looked up among those kept, not each kept one asked of it.
    fn kept_attrs(
        &self,
        kept: &[String],
        mut id: impl FnMut(&EntityUid) -> Option<u32>,
    ) -> Option<Vec<(u16, AttrValue<'static, u32, ()>)>> {
        let mut values = Vec::new();
        for name in self.attr_names() {
            let Some(slot) = kept.iter().position(|attr| attr == name) else {
                continue;
            };
            let Some(value) = self.kept_value(name, &mut id)? else {
                continue;
            };
            values.push((u16::try_from(slot).ok()?, value));
        }
        Some(values)
    }
}

impl LayerEntity for Entity {
    fn uid(&self) -> EntityUid {
        Entity::uid(self)
    }

    fn parents(&self) -> impl Iterator<Item = EntityUid> {
        AsRef::<ast::Entity>::as_ref(self)
            .ancestors()
            .map(|parent| EntityUid::from(parent.clone()))
    }

    fn attr_names(&self) -> impl Iterator<Item = &str> {
        AsRef::<ast::Entity>::as_ref(self)
            .attrs()
            .map(|(name, _)| name.as_str())
    }

    fn kept_value(
        &self,
        name: &str,
        mut id: impl FnMut(&EntityUid) -> Option<u32>,
    ) -> Option<Option<AttrValue<'static, u32, ()>>> {
        match self.attr(name) {
            Some(value) => kept_value(value, |uid| Some(id(uid))).map(Some),
            None => Some(None),
        }
    }
}

impl LayerEntity for ScopedEntity {
    fn uid(&self) -> EntityUid {
        self.uid.clone()
    }

    fn parents(&self) -> impl Iterator<Item = EntityUid> {
        self.parents.iter().cloned()
    }

    fn attr_names(&self) -> impl Iterator<Item = &str> {
        self.attrs.iter().map(|(name, _)| name.as_str())
    }

    fn kept_value(
        &self,
        name: &str,
        mut id: impl FnMut(&EntityUid) -> Option<u32>,
    ) -> Option<Option<AttrValue<'static, u32, ()>>> {
        let Some((_, value)) = self.attrs.iter().find(|(attr, _)| attr == name) else {
            return Some(None);
        };
        // As `kept_value` converts the Cedar value: only entities and booleans are read.
        Some(Some(match value {
            ScopedValue::Entity(uid) => id(uid).map_or(AttrValue::Unmet, AttrValue::Entity),
            ScopedValue::Bool(b) => AttrValue::Bool(*b),
            ScopedValue::Long(_) | ScopedValue::String(_) => AttrValue::Other,
        }))
    }
}
