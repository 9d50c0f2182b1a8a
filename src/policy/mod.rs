//! The schema and policy files: reading (recursive, hidden entries skipped, symlinks
//! followed), parsing with stable ids (`@id`, else `file:index`) and source lines, strict
//! validation file by file on every core, and the entity literals the policies name (for
//! slicing). What a load may reuse from the previous one is a value its owner keeps
//! ([`Reuse`]); nothing here is process-wide.

mod load;

pub(crate) use load::collect_entity_refs;
pub use load::{
    Checked, Files, POLICY_SUFFIXES, Reuse, SCHEMA_SUFFIXES, check, read_files, read_literals_of,
    read_schema_files,
};

use std::path::PathBuf;
use std::sync::Arc;

/// Where one policy came from, for reasons and explanations (`file:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The policy file.
    pub path: PathBuf,
    /// 1-based line of the policy's first token (its first annotation, if any).
    pub line: Option<usize>,
    /// The policy's text as written.
    pub text: Arc<str>,
    /// Whether its id is the text's `@id` annotation (the loaded policy does not carry it).
    pub id_annotated: bool,
}
