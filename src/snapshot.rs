//! The snapshot: one revision of schema, policies and directory, loaded and validated together
//! and never changed afterwards, and the [`Loader`] that builds it.
//!
//! Architecture Invariant: a [`Snapshot`] is immutable. It is built whole by
//! [`Loader::load`] (all sources valid, or no snapshot at all) and shared behind an `Arc`; a
//! reload builds a new one and swaps it in, so every request reads exactly one revision. What a
//! load reuses from the previous one (parsed files, validations, the directory's store) belongs
//! to the `Loader` that made it: nothing is process-wide, and two loaders never share state.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use cedar_policy::{Entities, EntityUid, Schema};
use sha2::{Digest, Sha256};

use crate::directory::{self, Directory};
use crate::engine::{self, Changes, Engine, EntityStore};
use crate::error::{LoadError, error_chain};
use crate::index::Graph;
use crate::policy;
use crate::zenml::{self, standin};

/// Where the sources are: the three paths `serve`, `validate` and `test` take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    /// A directory searched recursively for `*.cedar`, or one file.
    pub policies: PathBuf,
    /// A directory searched recursively for `*.cedarschema` and `*.cedarschema.json`, or one file.
    pub schemas: PathBuf,
    /// The directory file: ZenML directory YAML, or Cedar entities JSON (`*.json`).
    pub directory: PathBuf,
}

/// One loaded, validated, immutable revision.
#[derive(Debug)]
pub struct Snapshot {
    /// Content hash of every source file (path and bytes): equal sources, equal revision.
    pub revision: String,
    /// When this snapshot was built.
    pub loaded_at: SystemTime,
    /// The Cedar side: schema, policies, entities, index; the one decision path.
    pub engine: Engine,
    /// The ZenML organization directory, when the directory file is one (not plain entities
    /// JSON), with the ZenML edge's per-snapshot tables.
    pub zenml: Option<zenml::View>,
    /// Validator warnings (the snapshot is valid; these are worth a look).
    pub warnings: Vec<LoadError>,
    /// How this load came by the directory's store.
    pub store: StoreOrigin,
}

/// How a load came by the directory's store (its entities and their closure).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOrigin {
    /// The previous load's: the directory file and the schema are unchanged (and the policies
    /// still allow stand-ins as before).
    Reused,
    /// The previous load's, updated with the entities that changed ([`EntityStore::update`]).
    Updated(Changes),
    /// Built from every entity.
    Built,
}

impl std::fmt::Display for StoreOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Reused => f.write_str("reused"),
            Self::Built => f.write_str("built"),
            Self::Updated(changes) => write!(
                f,
                "updated: {} added, {} changed, {} removed, {} closed again",
                changes.added, changes.changed, changes.removed, changes.reclosed
            ),
        }
    }
}

impl Snapshot {
    /// Sizes of this snapshot.
    pub fn counts(&self) -> engine::Counts {
        self.engine.counts()
    }

    /// The ZenML directory, if the directory file is one.
    pub fn directory(&self) -> Option<&Directory> {
        self.zenml.as_ref().map(zenml::View::directory)
    }

    /// ZenML decisions under this snapshot; `None` when the directory is plain Cedar entities.
    pub fn zenml(&self) -> Option<zenml::Decider<'_>> {
        Some(zenml::Decider::new(&self.engine, self.zenml.as_ref()?))
    }
}

/// Loads everything once, with no reuse (a CLI command).
pub fn load(sources: &Sources) -> Result<Snapshot, Vec<LoadError>> {
    Loader::default().load(sources)
}

/// Builds snapshots, keeping from each load what the next may reuse: the policy files' parsed
/// items and validations ([`policy::Reuse`]) and the directory's store (its entities, closure,
/// stand-ins and the index's interning), reused while the directory file and the schema are
/// unchanged and the policies still allow stand-ins as before. One per watcher or command.
#[derive(Debug, Default)]
pub struct Loader {
    policies: policy::Reuse,
    directory: Option<Arc<BuiltDirectory>>,
}

impl Loader {
    /// A loader with nothing to reuse yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Loads and validates everything; all problems at once, or a complete snapshot.
    pub fn load(&mut self, sources: &Sources) -> Result<Snapshot, Vec<LoadError>> {
        let mut errors = Vec::new();
        let files = policy::read_files(&sources.policies, &sources.schemas, &mut errors);
        let directory_text = match std::fs::read_to_string(&sources.directory) {
            Ok(text) => Some(text),
            Err(error) => {
                errors.push(LoadError::file(
                    &sources.directory,
                    format!("cannot read directory file: {error}"),
                ));
                None
            }
        };
        let mut hasher = Sha256::new();
        files.digest_into(&mut hasher);
        if let Some(text) = &directory_text {
            hasher.update(b"directory");
            hasher.update(text.as_bytes());
        }
        let checked = policy::check(&files, &mut self.policies, &mut errors);
        let (Some(checked), Some(text)) = (checked, directory_text) else {
            return Err(errors);
        };
        let key = directory_key(&files, &sources.directory, &text);
        let reused = self.directory.clone().filter(|built| {
            built.key == key && built.stand_ins == built.wants_stand_ins(&checked.all_literals)
        });
        let built = match reused {
            Some(built) => (built, StoreOrigin::Reused),
            None => {
                let loaded = match directory::load(&sources.directory, &text, &checked.schema) {
                    Ok(loaded) => loaded,
                    Err(mut directory_errors) => {
                        errors.append(&mut directory_errors);
                        return Err(errors);
                    }
                };
                if !errors.is_empty() {
                    return Err(errors);
                }
                // The previous store, under the same schema, is updated rather than rebuilt.
                let schema_key: [u8; 32] = files.schema_digest().finalize().into();
                let previous = self
                    .directory
                    .as_ref()
                    .filter(|built| built.schema_key == schema_key)
                    .map(Arc::as_ref);
                let built = Arc::new(build_directory(
                    loaded,
                    &text,
                    (key, schema_key),
                    previous,
                    &checked.all_literals,
                    &checked.schema,
                    &sources.directory,
                )?);
                self.directory = Some(built.clone());
                let origin = built.origin;
                (built, origin)
            }
        };
        let (built, origin) = built;
        if !errors.is_empty() {
            return Err(errors);
        }
        let graph = built
            .graph
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let engine = Engine::new(
            engine::Parts {
                schema: checked.schema,
                policies: checked.policies,
                policy_sources: checked.sources,
                entities: built.stored.entities().clone(),
                attribute_refs: built.refs.clone(),
                policy_literals: checked.read_literals,
                internal: built
                    .stand_ins
                    .then_some(standin::has_stand_in_shape as fn(&EntityUid) -> bool),
            },
            graph,
        );
        if let Some(graph) = engine.index_graph() {
            *built
                .graph
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(graph.clone());
        }
        let revision = hex::encode(hasher.finalize()).chars().take(16).collect();
        Ok(Snapshot {
            revision,
            loaded_at: SystemTime::now(),
            zenml: built
                .directory
                .clone()
                .zip(built.facts.clone())
                .map(|(directory, facts)| zenml::View::new(directory, facts, built.stand_ins)),
            engine,
            warnings: checked.warnings,
            store: origin,
        })
    }
}

/// A directory file's store, built: shared by the snapshots of every load that finds the
/// directory file and the schema unchanged.
#[derive(Debug)]
struct BuiltDirectory {
    /// Digest of the schema files and the directory file (path and text).
    key: [u8; 32],
    /// Digest of the schema files alone: a store built under them may be updated.
    schema_key: [u8; 32],
    stored: Stored,
    /// How it was made: [`StoreOrigin::Updated`] or [`StoreOrigin::Built`].
    origin: StoreOrigin,
    directory: Option<Arc<Directory>>,
    /// What the directory alone says, for every snapshot's ZenML view.
    facts: Option<Arc<zenml::DirectoryFacts>>,
    refs: Arc<HashMap<EntityUid, Vec<EntityUid>>>,
    /// Whether the store holds the ZenML stand-in resources.
    stand_ins: bool,
    /// The scope index's interning of `entities`, for the next index over the same store (it
    /// says which attributes it read; an index that needs others builds its own).
    graph: Mutex<Option<Arc<Graph>>>,
}

impl BuiltDirectory {
    /// Whether policies with these entity literals want the store with stand-ins.
    fn wants_stand_ins(&self, literals: &[EntityUid]) -> bool {
        self.directory.is_some() && standin::applicable(literals, &self.refs)
    }
}

fn directory_key(files: &policy::Files, path: &Path, text: &str) -> [u8; 32] {
    let mut digest = files.schema_digest();
    digest.update(b"directory");
    digest.update(path.to_string_lossy().as_bytes());
    digest.update([0]);
    digest.update(text.as_bytes());
    digest.finalize().into()
}

/// Builds the store of a loaded directory: its entities, plus the ZenML stand-in resources
/// when the policies allow them (`literals`); the transitive closure is computed once here.
fn build_directory(
    loaded: directory::Loaded,
    text: &str,
    (key, schema_key): ([u8; 32], [u8; 32]),
    previous: Option<&BuiltDirectory>,
    literals: &[EntityUid],
    schema: &Schema,
    path: &Path,
) -> Result<BuiltDirectory, Vec<LoadError>> {
    let (stored, directory, refs, stand_ins, origin, graph) = match loaded {
        directory::Loaded::Cedar(entities) => {
            let refs = attribute_refs(entities.iter());
            let stored = Stored::Cedar(Arc::new(entities));
            (stored, None, refs, false, StoreOrigin::Built, None)
        }
        directory::Loaded::Zenml(directory, mut built) => {
            let refs = attribute_refs(built.iter());
            // Stand-in resources for the ZenML path, where they are exact; stored with the
            // directory's entities and checked with them (only the changed ones, when the store
            // is updated).
            let stand_ins = standin::applicable(literals, &refs);
            let first_stand_in = built.len();
            if stand_ins {
                match standin::entities(&directory) {
                    Ok(extra) => built.extend(extra),
                    Err(error) => {
                        return Err(vec![LoadError::file(
                            path,
                            format!("stand-in resources: {error}"),
                        )]);
                    }
                }
            }
            let previous = previous.and_then(|previous| match &previous.stored {
                Stored::Directory(store) => Some((store, &previous.graph)),
                Stored::Cedar(_) => None,
            });
            let (store, origin, graph) =
                directory_store(built, first_stand_in, previous, schema, path, text)?;
            let directory = Some(Arc::new(*directory));
            (
                Stored::Directory(store),
                directory,
                refs,
                stand_ins,
                origin,
                graph,
            )
        }
    };
    let facts = directory
        .as_deref()
        .map(|directory| Arc::new(zenml::DirectoryFacts::of(directory)));
    Ok(BuiltDirectory {
        key,
        facts,
        schema_key,
        stored,
        origin,
        directory,
        refs: Arc::new(refs),
        stand_ins,
        graph: Mutex::new(graph),
    })
}

/// A directory file's entities in a store.
#[derive(Debug)]
enum Stored {
    /// A ZenML directory's: the next load under the same schema updates it.
    Directory(EntityStore),
    /// Plain Cedar entities JSON, stored by Cedar (and rebuilt by every load that changes it).
    Cedar(Arc<Entities>),
}

impl Stored {
    fn entities(&self) -> &Arc<Entities> {
        match self {
            Stored::Directory(store) => store.entities(),
            Stored::Cedar(entities) => entities,
        }
    }
}

/// A directory's store, how it was made, and the index's graph of it when that was updated too.
type StoreMade = (EntityStore, StoreOrigin, Option<Arc<Graph>>);

/// The store of a ZenML directory's entities (`built`, its stand-ins from `first_stand_in`
/// on), with the index's graph when it could be updated: the previous store (and graph)
/// updated with what changed, else every entity checked against the schema and closed; where
/// either is unsure, Cedar's store (and only when Cedar's check fails is each entity checked
/// again on its own, to report every mismatch at its entry).
fn directory_store(
    built: Vec<cedar_policy::Entity>,
    first_stand_in: usize,
    previous: Option<(&EntityStore, &Mutex<Option<Arc<Graph>>>)>,
    schema: &Schema,
    path: &Path,
    text: &str,
) -> Result<StoreMade, Vec<LoadError>> {
    if let Some((store, graph)) = previous
        && let Some(updated) = store.update(&built, schema)
    {
        let graph = graph
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .and_then(|graph| graph.updated(updated.store.entities(), &updated.touched))
            .map(Arc::new);
        return Ok((updated.store, StoreOrigin::Updated(updated.changes), graph));
    }
    if let Some(store) = EntityStore::build(&built, schema) {
        return Ok((store, StoreOrigin::Built, None));
    }
    // A schema that no longer fits ZenML's resources is said as such.
    let stand_ins = built[first_stand_in..].iter().cloned();
    if let Err(error) = Entities::from_entities(stand_ins, Some(schema)) {
        return Err(vec![LoadError::file(
            path,
            format!("stand-in resources: {}", error_chain(&error)),
        )]);
    }
    match Entities::from_entities(built, Some(schema)) {
        Ok(entities) => match EntityStore::adopt(entities, schema) {
            Some(store) => Ok((store, StoreOrigin::Built, None)),
            None => Err(vec![LoadError::file(
                path,
                "internal: the directory's entities could not be stored",
            )]),
        },
        Err(error) => {
            let mut errors = directory::schema_errors(path, text, schema);
            if errors.is_empty() {
                errors.push(LoadError::file(path, error_chain(&error)));
            }
            Err(errors)
        }
    }
}

/// Entity uid -> the entities its attributes and tags refer to (read from the stored values,
/// not through JSON: serializing the store would also write every closed ancestor set).
fn attribute_refs<'e>(
    entities: impl Iterator<Item = &'e cedar_policy::Entity>,
) -> HashMap<EntityUid, Vec<EntityUid>> {
    let mut refs = HashMap::new();
    for entity in entities {
        let mut found = Vec::new();
        crate::engine::refers_to(entity, &mut found);
        if !found.is_empty() {
            let mut seen = std::collections::HashSet::new();
            found.retain(|uid| seen.insert(uid.clone()));
            refs.insert(entity.uid(), found);
        }
    }
    refs
}
