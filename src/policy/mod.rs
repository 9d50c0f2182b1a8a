//! The policy snapshot: schema, policies, directory entities and revision, loaded and validated
//! together and never changed afterwards.
//!
//! Architecture Invariant: a `PolicySnapshot` is immutable. It is built whole by [`load`] (all
//! sources valid, or no snapshot at all) and shared behind an `Arc`; a reload builds a new one
//! and swaps it in, so every request reads exactly one revision.

mod error;
mod load;

pub use error::{LoadError, error_chain, line_col};
pub(crate) use load::{POLICY_SUFFIXES, SCHEMA_SUFFIXES};
pub use load::{Sources, load};
pub(crate) use load::{collect_entity_refs, entities_from_json};

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use cedar_policy::{Entities, EntityTypeName, EntityUid, PolicySet, Schema};

use crate::directory::Directory;

/// Where one policy came from, for reasons and explanations (`file:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The policy file.
    pub path: PathBuf,
    /// 1-based line of the policy's first token (its first annotation, if any).
    pub line: Option<usize>,
    /// The policy's text as written.
    pub text: Arc<str>,
}

/// One loaded, validated, immutable set of schema, policies and entities.
#[derive(Debug)]
pub struct PolicySnapshot {
    /// Content hash of every source file (path and bytes): equal sources, equal revision.
    pub revision: String,
    /// When this snapshot was built.
    pub loaded_at: SystemTime,
    /// The merged schema of all schema files.
    pub schema: Schema,
    /// All policies, re-keyed to their stable ids (`@id` or `file:index`).
    pub policies: PolicySet,
    /// The directory's entities plus the schema's action entities.
    pub entities: Arc<Entities>,
    /// Policy id -> where it was written.
    pub policy_sources: HashMap<String, PolicySource>,
    /// The ZenML organization directory, when the directory file is one (not plain entities JSON).
    pub directory: Option<Arc<Directory>>,
    /// Validator warnings (the snapshot is valid; these are worth a look).
    pub warnings: Vec<LoadError>,
    /// Entity types declared by the schema.
    pub entity_types: HashSet<EntityTypeName>,
    /// Actions declared by the schema.
    pub actions: HashSet<EntityUid>,
    /// For every stored entity, the entities its attributes and tags refer to (slicing).
    pub(crate) attribute_refs: Arc<HashMap<EntityUid, Vec<EntityUid>>>,
    /// Entity literals in the policies whose data evaluation can read (slicing): not those only
    /// compared (`==`, right of `in`, scope constraints), which need no entity data.
    pub(crate) policy_literals: Vec<EntityUid>,
    /// Whether the ZenML path may evaluate resources as their stored stand-ins (`zenml::standin`).
    pub(crate) stand_ins: bool,
    /// Policies by scope; `None` when the set is evaluated whole.
    pub(crate) index: Option<crate::index::ScopeIndex>,
    /// ZenML request shapes the schema has accepted (`zenml::request::RequestShapes`).
    pub(crate) request_shapes: crate::zenml::request::RequestShapes,
    /// ZenML request contexts without shares, per scope (`zenml::request::ScopeContexts`).
    pub(crate) contexts: crate::zenml::request::ScopeContexts,
}

/// Sizes of a snapshot, for status and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Static and template-linked policies.
    pub policies: usize,
    /// Policy templates.
    pub templates: usize,
    /// Entities, action entities included.
    pub entities: usize,
}

// === impl PolicySnapshot ===

impl PolicySnapshot {
    /// Sizes of this snapshot.
    pub fn counts(&self) -> Counts {
        Counts {
            policies: self.policies.policies().count(),
            templates: self.policies.templates().count(),
            entities: self.entities.len(),
        }
    }

    /// Whether the store holds the ZenML stand-in resources (`zenml::standin`): the policies
    /// name no resource entity, so a resource may be evaluated as its stand-in.
    pub fn stand_ins(&self) -> bool {
        self.stand_ins
    }

    /// Whether `uid` is one of the ZenML stand-ins this snapshot stores: internal to the ZenML
    /// path, they are not part of the directory, and the Cedar API never sees them (a request
    /// naming one is decided as plain Cedar over the directory would: it does not exist).
    pub fn is_stand_in(&self, uid: &EntityUid) -> bool {
        self.stand_ins && crate::zenml::standin::has_stand_in_shape(uid) && self.entities.get(uid).is_some()
    }

    /// Whether `uid` is an entity of the directory (a stored entity that is not a stand-in).
    pub fn in_directory(&self, uid: &EntityUid) -> bool {
        self.entities.get(uid).is_some() && !self.is_stand_in(uid)
    }

    /// The scope index's interned entities, when the set is indexed.
    pub fn index_graph(&self) -> Option<&Arc<crate::index::Graph>> {
        self.index.as_ref()?.graph()
    }
}
