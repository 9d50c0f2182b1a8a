//! Reading, parsing and validating the schema and policy files.
//!
//! Every problem is collected: a broken schema, a policy that does not parse and a policy the
//! validator rejects are all reported in one go, each with its file, line and column.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{
    EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Schema, SchemaFragment, ValidationMode,
    Validator,
};
use sha2::{Digest, Sha256};

use super::PolicySource;
use crate::error::{LoadError, from_diagnostic};

/// The name suffixes of policy files (the watcher reacts to exactly these).
pub const POLICY_SUFFIXES: &[&str] = &[".cedar"];
/// The name suffixes of schema files (the watcher reacts to exactly these).
pub const SCHEMA_SUFFIXES: &[&str] = &[".cedarschema", ".cedarschema.json"];

/// The schema and policy files, as read.
#[derive(Debug)]
pub struct Files {
    /// Where the schema files were searched for.
    schemas_root: PathBuf,
    schemas: Vec<SourceFile>,
    policies: Vec<SourceFile>,
}

/// Reads the policy files under `policies` and the schema files under `schemas` (each a
/// directory searched recursively, or one file); what cannot be read goes to `errors`.
pub fn read_files(policies: &Path, schemas: &Path, errors: &mut Vec<LoadError>) -> Files {
    let mut files = read_schema_files(schemas, errors);
    files.policies = read_sources(policies, POLICY_SUFFIXES, errors);
    files
}

/// Reads only the schema files under `schemas` (no policy file is read).
pub fn read_schema_files(schemas: &Path, errors: &mut Vec<LoadError>) -> Files {
    Files {
        schemas_root: schemas.to_path_buf(),
        schemas: read_sources(schemas, SCHEMA_SUFFIXES, errors),
        policies: Vec::new(),
    }
}

impl Files {
    /// Feeds every file (kind, path and bytes) to `hasher`: equal files, equal digest.
    pub fn digest_into(&self, hasher: &mut Sha256) {
        for (kind, files) in [("schema", &self.schemas), ("policy", &self.policies)] {
            for file in files.iter() {
                hasher.update(kind.as_bytes());
                hasher.update(file.path.to_string_lossy().as_bytes());
                hasher.update([0]);
                hasher.update(file.text.as_bytes());
                hasher.update([0]);
            }
        }
    }

    /// A digest of the schema files (paths and texts), to extend into the keys of what a
    /// load reuses.
    pub fn schema_digest(&self) -> Sha256 {
        schema_digest(&self.schemas)
    }

    /// The schema files as read, `(path, text)` in path order.
    pub fn schema_files(&self) -> impl Iterator<Item = (&Path, &str)> {
        self.schemas
            .iter()
            .map(|file| (file.path.as_path(), file.text.as_str()))
    }
}

/// The policies, parsed and validated against the schema.
#[derive(Debug)]
pub struct Checked {
    /// The merged schema.
    pub schema: Schema,
    /// All policies, re-keyed to their stable ids (`@id` or `file:index`).
    pub policies: PolicySet,
    /// Policy id -> where it was written.
    pub sources: HashMap<String, PolicySource>,
    /// Validator warnings.
    pub warnings: Vec<LoadError>,
    /// Every entity literal of the policies (scope and conditions), sorted.
    pub all_literals: Vec<EntityUid>,
    /// The literals whose entity data evaluation may read, sorted.
    pub read_literals: Vec<EntityUid>,
}

/// What a load keeps for the next one: each unchanged file's parsed items and each unchanged
/// file's validation. Owned by whoever loads (a `snapshot::Loader`); only the files of the
/// latest load are kept.
#[derive(Debug, Default)]
pub struct Reuse {
    /// Parsed items by digest of a file's relative path and text (which decide the ids): a
    /// reload parses only the files that changed, and the policy set shares the kept items (an
    /// item re-keyed to its id is a copy of the parsed policy; keeping the parsed one as well
    /// would double the policies' memory). Duplicate ids are settled on every load.
    parsed: HashMap<[u8; 32], FileItems>,
    /// Analyses by (schema, file path, file text, ids taken) digest: validation is per policy,
    /// so a file's result depends on nothing else.
    analyses: HashMap<[u8; 32], Analysis>,
}

/// Parses the schema and the policies and validates them (strict mode); every problem goes to
/// `errors`. `None` when the schema is unusable (nothing can be validated without it).
pub fn check(files: &Files, reuse: &mut Reuse, errors: &mut Vec<LoadError>) -> Option<Checked> {
    let schema = parse_schema(&files.schemas_root, &files.schemas, errors);
    let parsed = parse_policies(&files.policies, &mut reuse.parsed, errors);
    let schema = schema?;
    let analysis = analyze_policies(&schema, &files.schemas, &parsed, &mut reuse.analyses);
    errors.extend(analysis.errors);
    Some(Checked {
        schema,
        policies: parsed.set,
        sources: parsed.sources,
        warnings: analysis.warnings,
        all_literals: analysis.all_literals,
        read_literals: analysis.read_literals,
    })
}

/// A digest of the schema files (paths and texts), to extend into the keys of what a load reuses.
fn schema_digest(schema_files: &[SourceFile]) -> Sha256 {
    let mut digest = Sha256::new();
    for file in schema_files {
        digest.update(file.path.to_string_lossy().as_bytes());
        digest.update([0]);
        digest.update(file.text.as_bytes());
        digest.update([0]);
    }
    digest
}

/// One source file's path (as found, relative to the working directory) and contents.
#[derive(Debug)]
struct SourceFile {
    path: PathBuf,
    /// Path relative to the searched directory, used in fallback policy ids.
    relative: String,
    text: String,
}

/// Files under `root` (or `root` itself) whose names end in one of `suffixes`, sorted by path.
/// Hidden files and directories (editor swap files, Kubernetes ConfigMap `..data` folders) are
/// skipped; symlinks are followed.
fn read_sources(root: &Path, suffixes: &[&str], errors: &mut Vec<LoadError>) -> Vec<SourceFile> {
    let mut files = Vec::new();
    if root.is_file() {
        match std::fs::read_to_string(root) {
            Ok(text) => files.push(SourceFile {
                path: root.to_path_buf(),
                relative: root
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                text,
            }),
            Err(error) => errors.push(LoadError::file(root, format!("cannot read: {error}"))),
        }
        return files;
    }
    if !root.is_dir() {
        errors.push(LoadError::file(root, "no such file or directory"));
        return files;
    }
    let walker = walkdir::WalkDir::new(root)
        .follow_links(true)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|entry| entry.depth() == 0 || !entry.file_name().to_string_lossy().starts_with('.'));
    for entry in walker {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                let path = error.path().unwrap_or(root).to_path_buf();
                errors.push(LoadError::file(&path, format!("cannot read: {error}")));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy();
        if !entry.file_type().is_file() || !suffixes.iter().any(|suffix| name.ends_with(suffix)) {
            continue;
        }
        let path = entry.path().to_path_buf();
        let relative = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .replace('\\', "/");
        match std::fs::read_to_string(&path) {
            Ok(text) => files.push(SourceFile { path, relative, text }),
            Err(error) => errors.push(LoadError::file(&path, format!("cannot read: {error}"))),
        }
    }
    if files.is_empty() && errors.is_empty() {
        errors.push(LoadError::file(
            root,
            format!("no {} files found", suffixes.join(" or ")),
        ));
    }
    files
}

fn parse_schema(root: &Path, files: &[SourceFile], errors: &mut Vec<LoadError>) -> Option<Schema> {
    let mut fragments = Vec::new();
    let mut failed = false;
    for file in files {
        let fragment = if file.relative.ends_with(".json") {
            SchemaFragment::from_json_str(&file.text).map_err(|e| from_diagnostic(&file.path, &file.text, &e))
        } else {
            SchemaFragment::from_cedarschema_str(&file.text)
                .map(|(fragment, _warnings)| fragment)
                .map_err(|e| from_diagnostic(&file.path, &file.text, &e))
        };
        match fragment {
            Ok(fragment) => fragments.push(fragment),
            Err(error) => {
                errors.push(error);
                failed = true;
            }
        }
    }
    if failed || files.is_empty() {
        return None;
    }
    match Schema::from_schema_fragments(fragments) {
        Ok(schema) => Some(schema),
        Err(error) => {
            // The error's label points into one of the files; find which by its text.
            let message = error.to_string();
            let located = files.iter().find_map(|file| {
                let diagnostic: &dyn miette::Diagnostic = &error;
                let span = diagnostic.labels()?.next()?;
                let source = diagnostic.source_code()?;
                let contents = source.read_span(span.inner(), 0, 0).ok()?;
                let snippet = std::str::from_utf8(contents.data()).ok()?;
                (file.text.get(span.offset()..span.offset() + span.len()) == Some(snippet))
                    .then(|| from_diagnostic(&file.path, &file.text, diagnostic))
            });
            errors.push(located.unwrap_or_else(|| LoadError::file(root, message)));
            None
        }
    }
}

/// Policies of all files, re-keyed to stable ids, with where each was written.
struct ParsedPolicies {
    set: PolicySet,
    sources: HashMap<String, PolicySource>,
    /// policy id -> (path, full file text), for locating validation errors.
    files: HashMap<String, (PathBuf, std::sync::Arc<str>)>,
}

/// One policy or template of a file, as parsed, with what the load reads of it. A policy is
/// kept as its syntax tree (80 bytes; a `cedar_policy::Policy` is 408 inline, 4 MB of 10,000 in
/// the items a loader keeps), and made a `Policy` again, sharing the tree, when it is added.
#[derive(Debug, Clone)]
enum Item {
    Policy(cedar_policy_core::ast::Policy),
    Template(Box<cedar_policy::Template>),
}

/// A file's policy or template as Cedar parsed it.
enum Parsed {
    Policy(cedar_policy::Policy),
    Template(cedar_policy::Template),
}

/// A file's items in written order: (item under its id, the id, its text as written, whether
/// the id is the text's `@id` annotation, which the item no longer carries).
type FileItems = Arc<[(Item, String, Arc<str>, bool)]>;

/// Parses one file's text into its items, in the order written.
fn parse_file(file: &SourceFile) -> Result<FileItems, Vec<LoadError>> {
    let file_set = PolicySet::from_str(&file.text).map_err(|parse_errors| {
        parse_errors
            .iter()
            .map(|error| from_diagnostic(&file.path, &file.text, error))
            .collect::<Vec<_>>()
    })?;
    // Cedar numbers a file's policies and templates policy0, policy1, ... in the order
    // written; keep them in that one sequence.
    let mut items: Vec<(usize, Parsed)> = file_set
        .policies()
        .map(|p| (number(p.id()), Parsed::Policy(p.clone())))
        .chain(
            file_set
                .templates()
                .map(|t| (number(t.id()), Parsed::Template(t.clone()))),
        )
        .collect();
    items.sort_by_key(|(n, _)| *n);
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(index, (_, item))| {
            let (annotated, text) = match &item {
                Parsed::Policy(p) => (p.annotation("id").map(str::to_owned), p.to_cedar()),
                Parsed::Template(t) => (t.annotation("id").map(str::to_owned), Some(t.to_cedar())),
            };
            let id_annotated = annotated.is_some();
            let id = annotated.unwrap_or_else(|| format!("{}:{index}", file.relative));
            let item = match item {
                Parsed::Policy(p) => Item::Policy(kept(&p, &id)),
                Parsed::Template(t) => Item::Template(Box::new(t.new_id(PolicyId::new(&id)))),
            };
            (item, id, Arc::from(text.unwrap_or_default()), id_annotated)
        })
        .collect())
}

/// `policy` under `id`, as a load keeps it: its syntax tree without the `@id` annotation (which
/// `id` is, or a file-and-index id when it had none) and without a copy of its text. Cedar keeps
/// a policy's annotations in a B-tree whose one leaf holds eleven (~900 bytes for the one `@id`,
/// 9 MB of 10,000 policies), and a copy of its text in every clone of a parsed `Policy` (the
/// load's set, the index's, a request's); the text as written is the [`PolicySource`]'s. Other
/// annotations stay (`@required` is read by the reload guard).
fn kept(policy: &cedar_policy::Policy, id: &str) -> cedar_policy_core::ast::Policy {
    use cedar_policy_core::ast;
    let parsed: &ast::Policy = policy.as_ref();
    let template = parsed.template();
    if !parsed.is_static() {
        return parsed.new_id(ast::PolicyID::from_string(id));
    }
    let annotations: ast::Annotations = template
        .annotations()
        .filter(|(key, _)| key.as_ref() != "id")
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let stripped = ast::Template::new_shared(
        ast::PolicyID::from_string(id),
        template.loc().cloned(),
        Arc::new(annotations),
        template.effect(),
        template.principal_constraint().clone(),
        template.action_constraint().clone(),
        template.resource_constraint().clone(),
        template.non_scope_constraints_arc().cloned(),
    );
    match ast::StaticPolicy::try_from(stripped) {
        Ok(stripped) => ast::Policy::from(stripped),
        Err(_) => parsed.new_id(ast::PolicyID::from_string(id)),
    }
}

fn parse_policies(
    files: &[SourceFile],
    cache: &mut HashMap<[u8; 32], FileItems>,
    errors: &mut Vec<LoadError>,
) -> ParsedPolicies {
    let mut parsed = ParsedPolicies {
        set: PolicySet::new(),
        sources: HashMap::new(),
        files: HashMap::new(),
    };
    let mut kept: HashMap<[u8; 32], FileItems> = HashMap::with_capacity(files.len());
    for file in files {
        let mut digest = Sha256::new();
        digest.update(file.relative.as_bytes());
        digest.update([0]);
        digest.update(file.text.as_bytes());
        let digest: [u8; 32] = digest.finalize().into();
        let items = match kept.get(&digest).or_else(|| cache.get(&digest)).cloned() {
            Some(items) => items,
            None => match parse_file(file) {
                Ok(items) => items,
                Err(mut parse_errors) => {
                    errors.append(&mut parse_errors);
                    continue;
                }
            },
        };
        kept.insert(digest, items.clone());
        let file_text: std::sync::Arc<str> = file.text.as_str().into();
        // Each policy's text is searched for after the previous one's, and its line counted
        // from there: one pass over the file (counting from the start each time was quadratic,
        // an eighth of loading 10,000 policies).
        let (mut cursor, mut line) = (0, 1);
        let mut place = |text: &str| -> Option<usize> {
            let found = (!text.is_empty())
                .then(|| file.text.get(cursor..)?.find(text))
                .flatten();
            let start = cursor + found?;
            line += file
                .text
                .get(cursor..start)
                .map_or(0, |skipped| skipped.matches('\n').count());
            let at_line = line;
            line += text.matches('\n').count();
            cursor = start + text.len();
            Some(at_line)
        };
        for (item, id, text, id_annotated) in items.iter() {
            let id = id.clone();
            let line = place(text);
            let text = text.clone();
            if let Some(previous) = parsed.sources.get(&id) {
                let message = format!(
                    "duplicate policy id `{id}`: already used at {}{}",
                    previous.path.display(),
                    previous.line.map(|l| format!(":{l}")).unwrap_or_default()
                );
                errors.push(match line {
                    Some(line) => LoadError::at_line(&file.path, line, 1, message),
                    None => LoadError::file(&file.path, message),
                });
                continue;
            }
            let added = match item {
                Item::Policy(p) => parsed
                    .set
                    .add(cedar_policy::Policy::from(p.clone()))
                    .map_err(|e| e.to_string()),
                Item::Template(t) => parsed.set.add_template((**t).clone()).map_err(|e| e.to_string()),
            };
            if let Err(message) = added {
                errors.push(LoadError::file(&file.path, message));
                continue;
            }
            parsed
                .files
                .insert(id.clone(), (file.path.clone(), file_text.clone()));
            parsed.sources.insert(
                id,
                PolicySource {
                    path: file.path.clone(),
                    line,
                    text,
                    id_annotated: *id_annotated,
                },
            );
        }
    }
    // Keep the files of this load only.
    *cache = kept;
    parsed
}

fn number(id: &PolicyId) -> usize {
    id.to_string()
        .trim_start_matches("policy")
        .parse::<usize>()
        .unwrap_or(usize::MAX)
}

/// What validation and literal analysis found in the policies.
#[derive(Debug, Clone, Default)]
struct Analysis {
    errors: Vec<LoadError>,
    warnings: Vec<LoadError>,
    /// Every entity literal (scope and conditions).
    all_literals: Vec<EntityUid>,
    /// The literals whose entity data evaluation may read (see [`read_literals`]).
    read_literals: Vec<EntityUid>,
}

impl Analysis {
    /// Each literal once, sorted, the lists cut to their length.
    fn distinct_literals(&mut self) {
        for literals in [&mut self.all_literals, &mut self.read_literals] {
            // Uids compare by type and id; ordering by their text allocated at every comparison
            // (four fifths of re-validating one file of a 10,000-policy set).
            literals.sort_unstable();
            literals.dedup();
            literals.shrink_to_fit();
        }
    }
}

/// Validates the policies (strict mode) and collects their entity literals: file by file,
/// reusing unchanged files' results and spreading the rest over the available cores.
fn analyze_policies(
    schema: &Schema,
    schema_files: &[SourceFile],
    parsed: &ParsedPolicies,
    cache: &mut HashMap<[u8; 32], Analysis>,
) -> Analysis {
    let validator = Validator::new(schema.clone());
    // Templates and their links are validated together, as one set.
    if parsed.set.templates().next().is_some() {
        return analyze(&validator, &parsed.set, parsed);
    }
    let schema_digest = schema_digest(schema_files);
    // Group the policies by file, in file order. A group's key covers the schema, the file
    // and the ids of the policies taken from it (a policy whose id another file already used
    // is left out, so the same text can yield different groups).
    let mut groups: Vec<(Sha256, PolicySet)> = Vec::new();
    let mut by_path: HashMap<&Path, usize> = HashMap::new();
    for policy in parsed.set.policies() {
        let Some((path, text)) = parsed.files.get(policy.id().to_string().as_str()) else {
            continue;
        };
        let at = *by_path.entry(path.as_path()).or_insert_with(|| {
            let mut digest = schema_digest.clone();
            digest.update(path.to_string_lossy().as_bytes());
            digest.update([0]);
            digest.update(text.as_bytes());
            digest.update([0]);
            groups.push((digest, PolicySet::new()));
            groups.len() - 1
        });
        groups[at].0.update(policy.id().to_string().as_bytes());
        groups[at].0.update([0]);
        // Ids are unique in the source set: adding cannot fail.
        let _ = groups[at].1.add(policy.clone());
    }
    let groups: Vec<([u8; 32], PolicySet)> = groups
        .into_iter()
        .map(|(digest, set)| (digest.finalize().into(), set))
        .collect();
    let mut results: Vec<Option<Analysis>> =
        { groups.iter().map(|(key, _)| cache.get(key).cloned()).collect() };
    let pending: Vec<usize> = (0..groups.len()).filter(|i| results[*i].is_none()).collect();
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(pending.len())
        .max(1);
    let fresh: Vec<(usize, Analysis)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (pending, groups, validator) = (&pending, &groups, &validator);
                scope.spawn(move || {
                    pending
                        .iter()
                        .skip(t)
                        .step_by(threads)
                        .map(|&i| (i, analyze(validator, &groups[i].1, parsed)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| worker.join().unwrap_or_default())
            .collect()
    });
    for (i, analysis) in fresh {
        results[i] = Some(analysis);
    }
    cache.clear();
    let mut total = Analysis::default();
    for ((key, _), result) in groups.iter().zip(results) {
        // A worker that panicked leaves its files without a result: fail closed (invalid).
        let Some(result) = result else {
            total.errors.push(LoadError::file(
                Path::new("policies"),
                "internal: policy validation did not complete",
            ));
            continue;
        };
        cache.insert(*key, result.clone());
        total.errors.extend(result.errors);
        total.warnings.extend(result.warnings);
        total.all_literals.extend(result.all_literals);
        total.read_literals.extend(result.read_literals);
    }
    total.distinct_literals();
    total
}

/// Validation and literals of one set of policies.
fn analyze(validator: &Validator, set: &PolicySet, parsed: &ParsedPolicies) -> Analysis {
    let mut analysis = Analysis::default();
    let result = validator.validate(set, ValidationMode::Strict);
    let locate = |policy_id: &PolicyId, diagnostic: &dyn miette::Diagnostic| -> LoadError {
        match parsed.files.get(policy_id.to_string().as_str()) {
            Some((path, text)) => {
                let mut error = from_diagnostic(path, text, diagnostic);
                if !error.message.contains(&format!("`{policy_id}`")) {
                    error.message = format!("policy `{policy_id}`: {}", error.message);
                }
                error
            }
            None => LoadError::file(
                Path::new("policies"),
                format!("policy `{policy_id}`: {diagnostic}"),
            ),
        }
    };
    for error in result.validation_errors() {
        analysis.errors.push(locate(error.policy_id(), error));
    }
    for warning in result.validation_warnings() {
        analysis.warnings.push(locate(warning.policy_id(), warning));
    }
    let jsons = set
        .policies()
        .map(|policy| (policy.id(), policy.to_json()))
        .chain(
            set.templates()
                .map(|template| (template.id(), template.to_json())),
        );
    for (id, json) in jsons {
        match json {
            Ok(json) => {
                collect_entity_refs(&json, &mut analysis.all_literals);
                condition_literals(&json, &mut analysis.read_literals);
            }
            // Unindexed literals would make slices and stand-ins inexact: fail closed.
            Err(error) => analysis.errors.push(LoadError::file(
                Path::new("policies"),
                format!("policy `{id}`: cannot index its entity literals: {error}"),
            )),
        }
    }
    if set.templates().next().is_some()
        && let Ok(json) = set.clone().to_json()
        && let Some(links) = json.get("templateLinks")
    {
        // Link values name entities too (compared only: they fill scope slots).
        collect_entity_refs(links, &mut analysis.all_literals);
    }
    // A loader keeps every file's analysis for the next load, and most literals repeat: the
    // same team, project or action in many policies of a file.
    analysis.distinct_literals();
    analysis
}

/// The entity literals of `set`'s policies whose data evaluation may read, sorted (slicing
/// must copy them); an error when a policy cannot be read as JSON.
pub fn read_literals_of(set: &PolicySet) -> Result<Vec<EntityUid>, String> {
    let mut out = Vec::new();
    for policy in set.policies() {
        let json = policy
            .to_json()
            .map_err(|error| format!("policy `{}`: {error}", policy.id()))?;
        condition_literals(&json, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// The literals of a policy's (Cedar JSON) conditions whose entity data evaluation may read.
fn condition_literals(policy: &serde_json::Value, out: &mut Vec<EntityUid>) {
    let conditions = policy.get("conditions").and_then(serde_json::Value::as_array);
    for condition in conditions.into_iter().flatten() {
        if let Some(body) = condition.get("body") {
            read_literals(body, false, out);
        }
    }
}

/// The entity literals of a policy condition (Cedar JSON expression) whose entity data
/// evaluation may read: attribute and tag access, the left of `in`, anything not known to be only
/// compared. `compared`: the value at hand is only compared for equality or membership (operands
/// of `==`/`!=`, the right of `in`, `contains*` arguments), which reads no entity data.
fn read_literals(expr: &serde_json::Value, compared: bool, out: &mut Vec<EntityUid>) {
    use serde_json::Value;
    let Value::Object(node) = expr else { return };
    let Some((op, body)) = node.iter().next().filter(|_| node.len() == 1) else {
        if !compared {
            collect_entity_refs(expr, out);
        }
        return;
    };
    let side = |key: &str| body.get(key);
    match op.as_str() {
        "Value" => {
            if !compared {
                collect_entity_refs(body, out);
            }
        }
        "Set" => {
            for item in body.as_array().into_iter().flatten() {
                read_literals(item, compared, out);
            }
        }
        "==" | "!=" | "containsAll" | "containsAny" | "contains" => {
            for key in ["left", "right"] {
                if let Some(operand) = side(key) {
                    read_literals(operand, true, out);
                }
            }
        }
        "in" => {
            if let Some(left) = side("left") {
                read_literals(left, false, out);
            }
            if let Some(right) = side("right") {
                read_literals(right, true, out);
            }
        }
        "is" => {
            if let Some(left) = side("left") {
                read_literals(left, false, out);
            }
            if let Some(right) = side("in") {
                read_literals(right, true, out);
            }
        }
        "if-then-else" => {
            if let Some(condition) = side("if") {
                read_literals(condition, false, out);
            }
            for key in ["then", "else"] {
                if let Some(branch) = side(key) {
                    read_literals(branch, compared, out);
                }
            }
        }
        "Var" | "Slot" | "Unknown" => {}
        _ => {
            // Any other operator (`.`, `has`, `&&`, `like`, extension calls, records, ...) may
            // read its operands' data: every operand below is read.
            let operands: Vec<&Value> = match body {
                Value::Object(fields) => fields.values().collect(),
                Value::Array(items) => items.iter().collect(),
                _ => Vec::new(),
            };
            for operand in operands {
                match operand {
                    Value::Array(items) => items.iter().for_each(|item| read_literals(item, false, out)),
                    _ => read_literals(operand, false, out),
                }
            }
        }
    }
}

/// Every entity reference in a Cedar JSON value: `{"__entity": {"type", "id"}}`, or any object
/// with string `type` and `id` (schema-based JSON). Over-collecting is harmless (slicing).
pub(crate) fn collect_entity_refs(value: &serde_json::Value, out: &mut Vec<EntityUid>) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(uid) = map
                .get("__entity")
                .and_then(entity_ref)
                .or_else(|| entity_ref(value))
            {
                out.push(uid);
            }
            for nested in map.values() {
                collect_entity_refs(nested, out);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_entity_refs(item, out);
            }
        }
        _ => {}
    }
}

fn entity_ref(value: &serde_json::Value) -> Option<EntityUid> {
    let type_name = value.get("type")?.as_str()?;
    let id = value.get("id")?.as_str()?;
    let type_name = EntityTypeName::from_str(type_name).ok()?;
    Some(EntityUid::from_type_name_and_id(type_name, EntityId::new(id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The literals of `condition` whose data evaluation may read.
    fn read(condition: &str) -> Vec<String> {
        let text = format!(
            "permit (principal in T::\"scope\", action, resource == T::\"r\") when {{ {condition} }};"
        );
        let policy = cedar_policy::Policy::from_str(&text).unwrap();
        let mut out = Vec::new();
        condition_literals(&policy.to_json().unwrap(), &mut out);
        let mut out: Vec<String> = out.iter().map(ToString::to_string).collect();
        out.sort();
        out.dedup();
        out
    }

    #[test]
    fn a_kept_policy_loses_only_its_id_annotation_and_decides_alike() {
        use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request};
        let text = r#"@id("grant") @required("keep") @reason("audit")
permit (principal == T::"alice", action, resource) when { resource.open } unless { principal == T::"bob" };"#;
        let parsed = cedar_policy::Policy::from_str(text).unwrap();
        let policy = cedar_policy::Policy::from(kept(&parsed, "grant"));
        assert_eq!(policy.id().to_string(), "grant");
        assert_eq!(policy.annotation("id"), None);
        assert_eq!(policy.annotation("required"), Some("keep"));
        assert_eq!(policy.annotation("reason"), Some("audit"));
        assert_eq!(policy.effect(), parsed.effect());
        // The same decision for every request: the scope and both conditions are kept.
        let uid = |id: &str| EntityUid::from_str(&format!("T::\"{id}\"")).unwrap();
        let resource = |open: bool| {
            Entities::from_json_str(
                &format!(
                    r#"[{{"uid": {{"type": "T", "id": "r"}}, "attrs": {{"open": {open}}}, "parents": []}}]"#
                ),
                None,
            )
            .unwrap()
        };
        let set = |policy: &cedar_policy::Policy| {
            let mut set = PolicySet::new();
            set.add(policy.clone()).unwrap();
            set
        };
        for (principal, open) in [("alice", true), ("alice", false), ("bob", true), ("carol", true)] {
            let request = Request::new(uid(principal), uid("a"), uid("r"), Context::empty(), None).unwrap();
            let decide = |policy| {
                Authorizer::new()
                    .is_authorized(&request, &set(policy), &resource(open))
                    .decision()
            };
            assert_eq!(decide(&policy), decide(&parsed), "{principal}, open: {open}");
        }
        // A clone carries no copy of the text.
        assert_eq!(policy.to_cedar().map(|t| t.contains("@id")), Some(false));
    }

    #[test]
    fn literals_only_compared_need_no_entity_data() {
        let table: [(&str, &[&str]); 10] = [
            (r#"principal in T::"a""#, &[]),
            (r#"principal in [T::"a", T::"b"]"#, &[]),
            (r#"resource.owner == T::"a" || T::"b" != principal"#, &[]),
            (
                r#"[T::"a"].contains(principal) && principal.xs.containsAny([T::"b"])"#,
                &[],
            ),
            (r#"principal is T in T::"a""#, &[]),
            (r#"T::"a".name == "x""#, &[r#"T::"a""#]),
            (r#"T::"a" in principal"#, &[r#"T::"a""#]),
            (r#"T::"a" has name"#, &[r#"T::"a""#]),
            (
                r#"(if principal.flag then T::"a" else T::"b").name == "x""#,
                &[r#"T::"a""#, r#"T::"b""#],
            ),
            (
                r#"(if T::"c" in principal then T::"a" else T::"b") == principal"#,
                &[r#"T::"c""#],
            ),
        ];
        for (condition, expected) in table {
            assert_eq!(read(condition), *expected, "{condition}");
        }
    }

    #[test]
    fn each_policy_is_placed_at_its_first_line() {
        // Multi-line policies, comments, blank lines, an annotation, policies whose text
        // repeats an earlier one's, two on one line: each is found after the previous one.
        let text = "// header\n\npermit (principal, action, resource);\n\
                    @id(\"two\")\nforbid (\n  principal,\n  action,\n  resource\n);\n\
                    // a comment\npermit (principal, action, resource);\n\
                    permit (principal, action, resource); permit (principal, action, resource)\n\
                    when { true };\n";
        let file = SourceFile {
            path: PathBuf::from("policies/a.cedar"),
            relative: "a.cedar".into(),
            text: text.into(),
        };
        let mut errors = Vec::new();
        let parsed = parse_policies(std::slice::from_ref(&file), &mut HashMap::new(), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        let line = |id: &str| parsed.sources.get(id).and_then(|s| s.line);
        let expected = [
            ("a.cedar:0", Some(3)),
            ("two", Some(4)),
            ("a.cedar:2", Some(11)),
            ("a.cedar:3", Some(12)),
            ("a.cedar:4", Some(12)),
        ];
        for (id, want) in expected {
            assert_eq!(line(id), want, "{id}");
        }
    }
}
