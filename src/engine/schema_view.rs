//! What a request's parser asks of the schema, answered from tables built once per engine.
//!
//! Cedar's schema conformance check ([`EntitySchemaConformanceChecker`]) asks its schema for a
//! description of an entity type for the entity and again for every ancestor and entity
//! reference it checks, and Cedar's own schema builds each description anew (a copy of the
//! type's attributes and a scan of every type for allowed parents). [`SchemaView`] answers
//! the same questions from descriptions built once, so checking a request-scoped entity costs
//! what the check itself costs. Likewise, the schema's entity type names are looked up instead
//! of parsed. Both give exactly what Cedar gives (`tests/http.rs` compares request-scoped
//! entities read this way with Cedar's parser on random entities).

use std::collections::HashMap;
use std::sync::Arc;

use cedar_policy::{EntityTypeName, Schema};
use cedar_policy_core::ast;
use cedar_policy_core::entities::conformance::EntitySchemaConformanceChecker;
use cedar_policy_core::entities::{EntityTypeDescription, SchemaType};
use cedar_policy_core::validator::{CoreSchema, EntityTypeDescription as CoreDescription};
use nonempty::NonEmpty;
use smol_str::SmolStr;

use crate::index::{ScopedEntity, ScopedValue};

/// The tables of one schema: its entity types' names and descriptions.
#[derive(Debug, Default)]
pub struct SchemaTables {
    names: HashMap<Box<str>, EntityTypeName, rustc_hash::FxBuildHasher>,
    /// Each declared type's name as written (a metrics label), without formatting it again.
    labels: HashMap<EntityTypeName, Box<str>, rustc_hash::FxBuildHasher>,
    described: HashMap<ast::EntityType, Described, rustc_hash::FxBuildHasher>,
    /// Per entity type an entity of which [`SchemaTables::plainly_conforms`] may accept (not
    /// external, not enumerated, attributes not open): its required attributes and allowed
    /// ancestor types.
    plain: HashMap<ast::EntityType, PlainRules, rustc_hash::FxBuildHasher>,
}

/// What a plain entity of one type must have, read from its description once.
#[derive(Debug)]
struct PlainRules {
    required: Box<[SmolStr]>,
    /// Each declared attribute's type, converted once (the description converts the schema's
    /// type anew each time it is asked, a clone and allocations per attribute).
    attrs: HashMap<SmolStr, SchemaType, rustc_hash::FxBuildHasher>,
    /// Fx-hashed (the description's own set hashes each type with SipHash).
    ancestors: std::collections::HashSet<ast::EntityType, rustc_hash::FxBuildHasher>,
}

/// A description built once and shared.
#[derive(Debug, Clone)]
pub struct Described(Arc<CoreDescription>);

/// The schema as the conformance checker sees it, with [`SchemaTables`]' descriptions.
struct SchemaView<'s> {
    core: CoreSchema<'s>,
    tables: &'s SchemaTables,
}

impl SchemaTables {
    /// The tables of `schema`: every declared entity type and every action's type.
    pub fn new(schema: &Schema) -> Self {
        let validator = schema.as_ref();
        let core = CoreSchema::new(validator);
        let mut tables = Self::default();
        let types = schema
            .entity_types()
            .cloned()
            .chain(schema.actions().map(|action| action.type_name().clone()));
        for name in types {
            let core_type: &ast::EntityType = name.as_ref();
            if let Some(description) = cedar_policy_core::entities::Schema::entity_type(&core, core_type) {
                let plain = !description.is_external()
                    && description.enum_entity_eids().is_none()
                    && !description.open_attributes()
                    && !core_type.is_action();
                let described = Described(Arc::new(description));
                if plain {
                    let attrs = validator
                        .get_entity_type(core_type)
                        .into_iter()
                        .flat_map(|declared| declared.attributes().keys())
                        .filter_map(|name| Some((name.clone(), described.0.attr_type(name)?)))
                        .collect();
                    tables.plain.insert(
                        core_type.clone(),
                        PlainRules {
                            required: described.0.required_attrs().collect(),
                            attrs,
                            ancestors: described.0.allowed_parent_types().iter().cloned().collect(),
                        },
                    );
                }
                tables.described.insert(core_type.clone(), described);
            }
            let written = name.to_string().into_boxed_str();
            tables.labels.insert(name.clone(), written.clone());
            tables.names.insert(written, name);
        }
        tables
    }

    /// The declared entity type (or action type) written `name`, if the schema has it.
    pub fn type_name(&self, name: &str) -> Option<&EntityTypeName> {
        self.names.get(name)
    }

    /// A declared entity type (or action type) as written, if the schema has it.
    pub fn written(&self, type_name: &EntityTypeName) -> Option<&str> {
        self.labels.get(type_name).map(AsRef::as_ref)
    }

    /// Whether `entity` certainly conforms to the schema these tables were built from, read
    /// from the tables without Cedar's checker, for the plain shapes a request-scoped entity
    /// usually has: a type of [`PlainRules`], no tags, every required attribute, each
    /// attribute declared with the type of its value (a boolean, an integer, a string, or a
    /// reference to an entity of the declared type), ancestors of allowed types, and no
    /// reference or ancestor of an enumerated type or an action (whose ids the checker reads).
    /// `false` means "ask Cedar's checker" ([`SchemaTables::conforms`]), not "does not
    /// conform": anything else is left to it, so this can only accept what it accepts.
    pub(super) fn plainly_conforms(&self, entity: &impl PlainlyRead) -> bool {
        let Some(rules) = self.plain.get(entity.entity_type()) else {
            return false;
        };
        if entity.has_tags() || !rules.required.iter().all(|name| entity.has_attr(name)) {
            return false;
        }
        // Neither an action nor of an enumerated type: only its type is checked.
        let by_type = |uid: &ast::EntityUID| {
            !uid.entity_type().is_action()
                && self
                    .described
                    .get(uid.entity_type())
                    .is_none_or(|described| described.0.enum_entity_eids().is_none())
        };
        entity.all_attrs(|name, value| {
            let Some(expected) = rules.attrs.get(name) else {
                return false;
            };
            match (value, expected) {
                (Plainly::Bool, SchemaType::Bool)
                | (Plainly::Long, SchemaType::Long)
                | (Plainly::String, SchemaType::String) => true,
                (Plainly::Entity(uid), SchemaType::Entity { ty }) => uid.entity_type() == ty && by_type(uid),
                _ => false,
            }
        }) && entity
            .all_parents(|ancestor| by_type(ancestor) && rules.ancestors.contains(ancestor.entity_type()))
    }

    /// Whether `entity` conforms to `schema`, the schema these tables were built from, as
    /// Cedar's conformance checker decides ([`crate::engine::Engine::conforms`] passes its own).
    pub(super) fn conforms(&self, schema: &Schema, entity: &ast::Entity) -> bool {
        let view = SchemaView {
            core: CoreSchema::new(schema.as_ref()),
            tables: self,
        };
        EntitySchemaConformanceChecker::new(&view, cedar_policy_core::extensions::Extensions::all_available())
            .validate_entity(entity)
            .is_ok()
    }
}

impl cedar_policy_core::entities::Schema for SchemaView<'_> {
    type EntityTypeDescription = Described;
    type ActionEntityIterator = Vec<Arc<ast::Entity>>;

    fn entity_type(&self, entity_type: &ast::EntityType) -> Option<Described> {
        self.tables.described.get(entity_type).cloned()
    }

    fn action(&self, action: &ast::EntityUID) -> Option<Arc<ast::Entity>> {
        self.core.action(action)
    }

    fn entity_types_with_basename<'a>(
        &'a self,
        basename: &'a ast::UnreservedId,
    ) -> Box<dyn Iterator<Item = ast::EntityType> + 'a> {
        self.core.entity_types_with_basename(basename)
    }

    fn action_entities(&self) -> Vec<Arc<ast::Entity>> {
        self.core.action_entities().collect()
    }
}

impl EntityTypeDescription for Described {
    fn entity_type(&self) -> ast::EntityType {
        self.0.entity_type()
    }
    fn attr_type(&self, attr: &str) -> Option<SchemaType> {
        self.0.attr_type(attr)
    }
    fn tag_type(&self) -> Option<SchemaType> {
        self.0.tag_type()
    }
    fn required_attrs<'s>(&'s self) -> Box<dyn Iterator<Item = SmolStr> + 's> {
        self.0.required_attrs()
    }
    fn allowed_parent_types(&self) -> Arc<std::collections::HashSet<ast::EntityType>> {
        self.0.allowed_parent_types()
    }
    fn open_attributes(&self) -> bool {
        self.0.open_attributes()
    }
    fn enum_entity_eids(&self) -> Option<&NonEmpty<ast::Eid>> {
        self.0.enum_entity_eids()
    }
    fn is_external(&self) -> bool {
        self.0.is_external()
    }
}

/// An attribute value as [`SchemaTables::plainly_conforms`] reads it.
pub enum Plainly<'a> {
    /// A boolean.
    Bool,
    /// An integer.
    Long,
    /// A string.
    String,
    /// An entity reference.
    Entity(&'a ast::EntityUID),
    /// Anything else (left to Cedar's checker).
    Other,
}

/// What [`SchemaTables::plainly_conforms`] reads of an entity: a Cedar entity (its parents
/// not closed) or a request's plain one.
pub trait PlainlyRead {
    /// Its type.
    fn entity_type(&self) -> &ast::EntityType;
    /// Whether it has tags.
    fn has_tags(&self) -> bool;
    /// Whether it has the attribute `name`.
    fn has_attr(&self, name: &str) -> bool;
    /// Whether `f` holds for each attribute.
    fn all_attrs(&self, f: impl FnMut(&str, Plainly<'_>) -> bool) -> bool;
    /// Whether `f` holds for each parent.
    fn all_parents(&self, f: impl FnMut(&ast::EntityUID) -> bool) -> bool;
}

impl PlainlyRead for ast::Entity {
    fn entity_type(&self) -> &ast::EntityType {
        self.uid().entity_type()
    }

    fn has_tags(&self) -> bool {
        self.tags().next().is_some()
    }

    fn has_attr(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    fn all_attrs(&self, mut f: impl FnMut(&str, Plainly<'_>) -> bool) -> bool {
        use cedar_policy_core::ast::{Literal, PartialValue, ValueKind};
        self.attrs().all(|(name, value)| {
            let plainly = match value {
                PartialValue::Value(value) => match value.value_kind() {
                    ValueKind::Lit(Literal::Bool(_)) => Plainly::Bool,
                    ValueKind::Lit(Literal::Long(_)) => Plainly::Long,
                    ValueKind::Lit(Literal::String(_)) => Plainly::String,
                    ValueKind::Lit(Literal::EntityUID(uid)) => Plainly::Entity(uid),
                    _ => Plainly::Other,
                },
                PartialValue::Residual(_) => Plainly::Other,
            };
            f(name, plainly)
        })
    }

    fn all_parents(&self, f: impl FnMut(&ast::EntityUID) -> bool) -> bool {
        self.ancestors().all(f)
    }
}

impl PlainlyRead for ScopedEntity {
    fn entity_type(&self) -> &ast::EntityType {
        self.uid.as_ref().entity_type()
    }

    fn has_tags(&self) -> bool {
        false
    }

    fn has_attr(&self, name: &str) -> bool {
        self.attrs.iter().any(|(attr, _)| attr == name)
    }

    fn all_attrs(&self, mut f: impl FnMut(&str, Plainly<'_>) -> bool) -> bool {
        self.attrs.iter().all(|(name, value)| {
            f(
                name,
                match value {
                    ScopedValue::Bool(_) => Plainly::Bool,
                    ScopedValue::Long(_) => Plainly::Long,
                    ScopedValue::String(_) => Plainly::String,
                    ScopedValue::Entity(uid) => Plainly::Entity(uid.as_ref()),
                },
            )
        })
    }

    fn all_parents(&self, mut f: impl FnMut(&ast::EntityUID) -> bool) -> bool {
        self.parents.iter().all(|parent| f(parent.as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    /// The tables' own check accepts only what Cedar's conformance checker accepts (enumerated
    /// types, actions, undeclared or mistyped attributes, missing required ones and ancestors
    /// of other types are left to it), and does accept the plain entities.
    #[test]
    fn the_plain_check_accepts_only_what_cedar_accepts() {
        let (schema, _) = Schema::from_cedarschema_str(
            r#"
            entity Color enum ["red", "green"];
            entity Team in [Team];
            entity User in [Team] { name: String, age?: Long, admin: Bool, team?: Team, color?: Color, tags?: Set<String> };
            entity Box tags String;
            action read appliesTo { principal: User, resource: Team };
            "#,
        )
        .unwrap();
        let tables = SchemaTables::new(&schema);
        let uid = |text: &str| ast::EntityUID::from_str(text).unwrap();
        let make = |who: &str, attrs: Vec<(&str, ast::PartialValue)>, parents: Vec<&str>| {
            ast::Entity::new_with_attr_partial_value(
                uid(who),
                attrs.into_iter().map(|(name, value)| (SmolStr::new(name), value)),
                Default::default(),
                parents.into_iter().map(uid).collect(),
                [],
            )
        };
        let text = |text: &str| ast::PartialValue::from(ast::Value::from(text));
        let flag = |flag: bool| ast::PartialValue::from(ast::Value::from(flag));
        let long = |n: i64| ast::PartialValue::from(ast::Value::from(n));
        let entity = |text: &str| ast::PartialValue::from(ast::Value::from(uid(text)));
        let strings = ast::PartialValue::from(ast::Value::set([ast::Value::from("a")], None));
        let base = |extra: Vec<(&'static str, ast::PartialValue)>| {
            let mut attrs = vec![("name", text("n")), ("admin", flag(true))];
            attrs.extend(extra);
            attrs
        };
        // (entity, whether the plain check accepts it)
        let table = [
            (make(r#"User::"a""#, base(vec![]), vec![]), true),
            (
                make(r#"User::"b""#, base(vec![("age", long(3))]), vec![r#"Team::"t""#]),
                true,
            ),
            (
                make(
                    r#"User::"c""#,
                    base(vec![("team", entity(r#"Team::"t""#))]),
                    vec![r#"Team::"t""#, r#"Team::"u""#],
                ),
                true,
            ),
            (make(r#"Team::"t""#, vec![], vec![r#"Team::"u""#]), true),
            (make(r#"User::"d""#, vec![("name", text("n"))], vec![]), false),
            (
                make(r#"User::"e""#, base(vec![("age", text("3"))]), vec![]),
                false,
            ),
            (
                make(
                    r#"User::"f""#,
                    base(vec![("team", entity(r#"User::"t""#))]),
                    vec![],
                ),
                false,
            ),
            (
                make(r#"User::"g""#, base(vec![("other", flag(true))]), vec![]),
                false,
            ),
            (make(r#"User::"h""#, base(vec![]), vec![r#"User::"x""#]), false),
            (
                make(
                    r#"User::"i""#,
                    base(vec![("color", entity(r#"Color::"red""#))]),
                    vec![],
                ),
                false,
            ),
            (
                make(
                    r#"User::"j""#,
                    base(vec![("color", entity(r#"Color::"blue""#))]),
                    vec![],
                ),
                false,
            ),
            (
                make(r#"User::"k""#, base(vec![]), vec![r#"Action::"read""#]),
                false,
            ),
            (make(r#"User::"l""#, base(vec![("tags", strings)]), vec![]), false),
            (make(r#"Color::"red""#, vec![], vec![]), false),
            (make(r#"Color::"blue""#, vec![], vec![]), false),
            (make(r#"Nothing::"n""#, vec![], vec![]), false),
            (make(r#"Box::"b""#, vec![], vec![]), true),
        ];
        for (entity, plain) in &table {
            let cedar = tables.conforms(&schema, entity);
            let ours = tables.plainly_conforms(entity);
            assert_eq!(ours, *plain, "{}", entity.uid());
            assert!(!ours || cedar, "{}: accepted, but Cedar refuses it", entity.uid());
        }
        // Among those left to Cedar, some it accepts (a set, a declared color) and some not.
        let left: Vec<bool> = table
            .iter()
            .filter(|(_, plain)| !plain)
            .map(|(entity, _)| tables.conforms(&schema, entity))
            .collect();
        assert!(left.contains(&true) && left.contains(&false));
    }
}
