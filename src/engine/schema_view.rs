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

/// The tables of one schema: its entity types' names and descriptions.
#[derive(Debug, Default)]
pub struct SchemaTables {
    names: HashMap<Box<str>, EntityTypeName, rustc_hash::FxBuildHasher>,
    /// Each declared type's name as written (a metrics label), without formatting it again.
    labels: HashMap<EntityTypeName, Box<str>, rustc_hash::FxBuildHasher>,
    described: HashMap<ast::EntityType, Described, rustc_hash::FxBuildHasher>,
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
                tables
                    .described
                    .insert(core_type.clone(), Described(Arc::new(description)));
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
