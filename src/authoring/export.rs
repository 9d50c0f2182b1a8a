//! `zenml-authz export`: the Cedar the sidecar evaluates, as files Cedar's own tools read
//! (`cedar authorize`, `cedar run-tests`, `cedar validate`, symbolic analysis):
//!
//! * `entities.json`: the directory as Cedar entities JSON, exactly the stored entities the
//!   engine evaluates against, less the internal ZenML stand-ins ([`Engine::is_internal`]: they
//!   are never visible to a request from outside) and less the action entities (the schema
//!   supplies them; Cedar adds them when it reads the file with the schema). Each entity's
//!   `parents` are its whole (transitively closed) ancestor set, as stored.
//! * `policies.cedar`: the merged policy set, every policy and template under its sidecar id as
//!   an `@id("...")` annotation (Cedar's CLI names policies by `@id`), so the determining
//!   policies Cedar reports are the sidecar's reasons. Each policy is preceded by a comment with
//!   the file and line it was written at.
//! * `schema.cedarschema`: the schema; one Cedar-syntax schema file verbatim (comments kept),
//!   several files merged into one.
//!
//! Each file is checked before it is written: the policies parse back to exactly the sidecar's
//! ids and the schema parses back to the same entity types and actions.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::str::FromStr;

use cedar_policy::{PolicySet, Schema, SchemaFragment};
use serde_json::Value;

use super::CommandOutput;
use crate::cli::{ExportArgs, exit};
use crate::engine::Engine;
use crate::policy;
use crate::snapshot::{Snapshot, Sources};

/// The file of the directory's entities.
pub const ENTITIES_FILE: &str = "entities.json";
/// The file of the merged policy set.
pub const POLICIES_FILE: &str = "policies.cedar";
/// The file of the schema.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// The exported files' contents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    /// `entities.json`: a JSON array of Cedar entities.
    pub entities: String,
    /// `policies.cedar`: every policy and template, each with its `@id`.
    pub policies: String,
    /// `schema.cedarschema`: the schema in Cedar syntax.
    pub schema: String,
    /// How many entities `entities` holds.
    pub entity_count: usize,
    /// How many policies and templates `policies` holds.
    pub policy_count: usize,
}

/// `zenml-authz export`: loads the sources and writes the three files into `--out`.
pub fn export(args: &ExportArgs) -> CommandOutput {
    let sources = args.sources.sources();
    let snapshot = match crate::snapshot::load(&sources) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            let mut stderr = String::new();
            for error in &errors {
                let _ = writeln!(stderr, "error: {error}");
            }
            let _ = writeln!(stderr, "invalid: {} error(s)", errors.len());
            return CommandOutput {
                stdout: String::new(),
                stderr,
                code: exit::INVALID,
            };
        }
    };
    let export = match render(&snapshot, &sources) {
        Ok(export) => export,
        Err(message) => return CommandOutput::error(message),
    };
    if let Err(message) = write(&export, &args.out) {
        return CommandOutput::error(message);
    }
    CommandOutput {
        stdout: format!(
            "exported {} entities, {} policies and the schema to {} (revision {})\n",
            export.entity_count,
            export.policy_count,
            args.out.display(),
            snapshot.revision
        ),
        stderr: String::new(),
        code: exit::OK,
    }
}

/// The three files of `snapshot`, whose schema files are read again from `sources` (a schema
/// that changed in between is refused: it must parse to the snapshot's types and actions).
pub fn render(snapshot: &Snapshot, sources: &Sources) -> Result<Export, String> {
    let engine = &snapshot.engine;
    let (entities, entity_count) = entities_json(engine)?;
    let (body, policy_count) = policies_text(engine)?;
    let policies = format!(
        "// The policies of zenml-authz revision {} (`zenml-authz export`), each under its sidecar id.\n\n{body}",
        snapshot.revision
    );
    let schema = schema_text(engine, sources)?;
    Ok(Export {
        entities,
        policies,
        schema,
        entity_count,
        policy_count,
    })
}

/// Writes the files into `out` (created when missing; the three files are replaced).
pub fn write(export: &Export, out: &Path) -> Result<(), String> {
    std::fs::create_dir_all(out).map_err(|error| format!("`{}`: {error}", out.display()))?;
    for (name, text) in [
        (ENTITIES_FILE, &export.entities),
        (POLICIES_FILE, &export.policies),
        (SCHEMA_FILE, &export.schema),
    ] {
        let path = out.join(name);
        std::fs::write(&path, text).map_err(|error| format!("`{}`: {error}", path.display()))?;
    }
    Ok(())
}

/// The stored entities as a Cedar entities JSON array, sorted by uid (parents sorted too),
/// without internal entities and without the schema's actions; and how many.
pub fn entities_json(engine: &Engine) -> Result<(String, usize), String> {
    let mut entities = Vec::new();
    for entity in engine.entities.iter() {
        let uid = entity.uid();
        if engine.actions.contains(&uid) || engine.is_internal(&uid) {
            continue;
        }
        let mut value = entity
            .to_json_value()
            .map_err(|error| format!("entity `{uid}`: {error}"))?;
        if let Some(Value::Array(parents)) = value.get_mut("parents") {
            parents.sort_by_key(ToString::to_string);
        }
        entities.push((uid.to_string(), value));
    }
    entities.sort_by(|a, b| a.0.cmp(&b.0));
    let count = entities.len();
    let array = Value::Array(entities.into_iter().map(|(_, value)| value).collect());
    let mut text = serde_json::to_string_pretty(&array).map_err(|error| format!("entities: {error}"))?;
    text.push('\n');
    Ok((text, count))
}

/// Every policy and template in Cedar syntax with its sidecar id as `@id`, in the order written
/// (by file and line), each after a `// file:line` comment; and how many. Template-linked
/// policies have no Cedar text and are refused (policy files cannot link templates).
pub fn policies_text(engine: &Engine) -> Result<(String, usize), String> {
    let mut items = Vec::new();
    for policy in engine.policies.policies() {
        let id = policy.id().to_string();
        if policy.template_id().is_some() {
            return Err(format!(
                "policy `{id}` is linked to a template: linked policies have no Cedar text"
            ));
        }
        // The text as written (the load keeps no `@id` annotation in the syntax tree: its source
        // says whether the text has one, and then it is the id).
        let source = engine.policy_sources.get(&id);
        let annotated = match source {
            Some(source) => source.id_annotated.then(|| id.clone()),
            None => policy.annotation("id").map(str::to_owned),
        };
        let text = source
            .map(|source| source.text.to_string())
            .or_else(|| policy.to_cedar())
            .ok_or_else(|| format!("policy `{id}` has no Cedar text"))?;
        items.push((id, annotated, text));
    }
    for template in engine.policies.templates() {
        let id = template.id().to_string();
        let text = template.to_cedar();
        items.push((id, template.annotation("id").map(str::to_owned), text));
    }
    let place = |id: &str| {
        engine
            .policy_sources
            .get(id)
            .map(|source| (source.path.clone(), source.line.unwrap_or(0)))
    };
    items.sort_by(|a, b| (place(&a.0), &a.0).cmp(&(place(&b.0), &b.0)));

    let mut out = String::new();
    for (id, annotated, text) in &items {
        if let Some(source) = engine.policy_sources.get(id) {
            let line = source.line.map(|line| format!(":{line}")).unwrap_or_default();
            let _ = writeln!(out, "// {}{line}", source.path.display());
        }
        match annotated {
            Some(annotated) if annotated == id => {}
            Some(annotated) => {
                return Err(format!(
                    "policy `{id}` is annotated `@id(\"{annotated}\")`: the annotation must be its id"
                ));
            }
            None => {
                let _ = writeln!(out, "@id(\"{}\")", cedar_string(id));
            }
        }
        out.push_str(text.trim_end());
        out.push_str("\n\n");
    }

    // What Cedar's CLI will read: the same ids, each once.
    let parsed =
        PolicySet::from_str(&out).map_err(|error| format!("exported policies do not parse: {error}"))?;
    let mut read = Vec::new();
    for (annotation, kind) in parsed
        .policies()
        .map(|p| (p.annotation("id"), "policy"))
        .chain(parsed.templates().map(|t| (t.annotation("id"), "template")))
    {
        read.push(
            annotation
                .ok_or(format!("an exported {kind} has no `@id`"))?
                .to_owned(),
        );
    }
    let unique: BTreeSet<&String> = read.iter().collect();
    let expected: BTreeSet<&String> = items.iter().map(|(id, _, _)| id).collect();
    if unique.len() != read.len() || unique != expected {
        return Err("exported policies do not read back to the sidecar's policy ids".into());
    }
    Ok((out, items.len()))
}

/// `text` as the inside of a Cedar string literal.
fn cedar_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// The schema files of `sources` as one Cedar-syntax schema: a single `.cedarschema` file
/// verbatim, else every fragment merged (namespace by namespace) and printed by Cedar. It must
/// declare exactly `engine`'s entity types and actions.
pub fn schema_text(engine: &Engine, sources: &Sources) -> Result<String, String> {
    let schemas = &sources.schemas;
    let mut errors = Vec::new();
    let files = policy::read_schema_files(schemas, &mut errors);
    let files: Vec<(&Path, &str)> = files.schema_files().collect();
    if files.is_empty() {
        let why = errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(format!("no schema files under `{}`: {why}", schemas.display()));
    }
    let text = match files.as_slice() {
        [(path, text)] if !path.to_string_lossy().ends_with(".json") => (*text).to_owned(),
        _ => merged_schema(&files)?,
    };
    let (schema, _warnings) = Schema::from_cedarschema_str(&text)
        .map_err(|error| format!("exported schema does not parse: {error}"))?;
    let types: BTreeSet<String> = schema.entity_types().map(ToString::to_string).collect();
    let actions: BTreeSet<String> = schema.actions().map(ToString::to_string).collect();
    let expected_types: BTreeSet<String> = engine.entity_types.iter().map(ToString::to_string).collect();
    let expected_actions: BTreeSet<String> = engine.actions.iter().map(ToString::to_string).collect();
    if types != expected_types || actions != expected_actions {
        return Err(format!(
            "the schema files under `{}` changed since they were loaded; export again",
            schemas.display()
        ));
    }
    Ok(text)
}

/// Several schema fragments (Cedar or JSON syntax) as one Cedar-syntax schema.
fn merged_schema(files: &[(&Path, &str)]) -> Result<String, String> {
    let mut merged = serde_json::Map::new();
    for (path, text) in files {
        let fragment = if path.to_string_lossy().ends_with(".json") {
            SchemaFragment::from_json_str(text).map_err(|error| error.to_string())
        } else {
            SchemaFragment::from_cedarschema_str(text)
                .map(|(fragment, _warnings)| fragment)
                .map_err(|error| error.to_string())
        }
        .map_err(|error| format!("`{}`: {error}", path.display()))?;
        let Value::Object(namespaces) = fragment
            .to_json_value()
            .map_err(|error| format!("`{}`: {error}", path.display()))?
        else {
            return Err(format!(
                "`{}`: a schema fragment is not a JSON object",
                path.display()
            ));
        };
        for (namespace, body) in namespaces {
            let Value::Object(body) = body else {
                return Err(format!(
                    "`{}`: namespace `{namespace}` is not an object",
                    path.display()
                ));
            };
            let into = merged
                .entry(namespace)
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            let Value::Object(into) = into else { continue };
            for (section, declarations) in body {
                match (into.get_mut(&section), declarations) {
                    (Some(Value::Object(existing)), Value::Object(more)) => existing.extend(more),
                    (_, declarations) => {
                        into.insert(section, declarations);
                    }
                }
            }
        }
    }
    let fragment = SchemaFragment::from_json_value(Value::Object(merged))
        .map_err(|error| format!("merged schema: {error}"))?;
    let text = fragment
        .to_cedarschema()
        .map_err(|error| format!("merged schema: {error}"))?;
    let sources: Vec<String> = files.iter().map(|(path, _)| path.display().to_string()).collect();
    Ok(format!(
        "// Merged by `zenml-authz export` from {}.\n{text}",
        sources.join(", ")
    ))
}
