//! The module layers (ARCHITECTURE.md, `src/lib.rs`): dependencies run one way. Every `crate::`
//! path in a module's code (comments aside) must name a module listed before it in [`LAYERS`],
//! so there is no import circle and the core (policy, directory, index, engine) knows nothing of
//! ZenML's HTTP API, the server or the CLI. A new module must be placed in the list.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, reason = "test code")]

use std::collections::BTreeSet;
use std::path::Path;

/// The modules of `src/`, leaves first: each may use only those before it.
const LAYERS: &[&str] = &[
    "error",
    "model",
    "config",
    "policy",
    "directory",
    "index",
    "engine",
    "zenml",
    "zenml_client",
    "snapshot",
    "questions",
    "store",
    "cache",
    "pool",
    "metrics",
    "decision_log",
    "auth",
    "state",
    "http",
    "server",
    "table",
    "watch",
    "cli",
    "authoring",
];

/// The top-level module a source file belongs to (`src/http/zenml.rs` -> `http`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let relative = file.strip_prefix(src).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// The modules a file's code names as `crate::<module>` (also inside `crate::{a, b::c}`).
fn uses(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for (at, _) in code.match_indices("crate::") {
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                group
                    .split(['}', ','])
                    .map(str::trim)
                    .take_while(|name| !name.is_empty())
                    .collect()
            } else {
                vec![rest]
            };
            for name in names {
                let module: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !module.is_empty() {
                    found.insert(module);
                }
            }
        }
    }
    found
}

#[test]
fn dependencies_run_one_way() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    let mut pending = vec![src.clone()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    let rank = |module: &str| LAYERS.iter().position(|layer| *layer == module);
    let mut violations = Vec::new();
    let mut seen = BTreeSet::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        seen.insert(module.clone());
        let Some(own) = rank(&module) else {
            violations.push(format!("{}: module `{module}` is not in LAYERS", file.display()));
            continue;
        };
        for used in uses(&std::fs::read_to_string(file).unwrap()) {
            match rank(&used) {
                Some(other) if other < own || used == module => {}
                Some(_) => violations.push(format!(
                    "{}: `{module}` uses `{used}`, which comes after it",
                    file.display()
                )),
                None => violations.push(format!(
                    "{}: `crate::{used}` is not a module in LAYERS",
                    file.display()
                )),
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
    let listed: BTreeSet<String> = LAYERS.iter().map(|layer| (*layer).to_owned()).collect();
    assert_eq!(listed, seen, "LAYERS names exactly the modules of src/");
}

#[test]
fn the_checker_sees_every_form_of_a_crate_path() {
    let table: [(&str, &[&str]); 5] = [
        ("use crate::engine::Batch;", &["engine"]),
        ("use crate::{http, zenml::Question};", &["http", "zenml"]),
        ("let x = crate::model::uid(\"User\", id);", &["model"]),
        ("// crate::http in a comment", &[]),
        ("use super::Call; // crate::state", &[]),
    ];
    for (line, expected) in table {
        let found: Vec<String> = uses(line).into_iter().collect();
        assert_eq!(found, *expected, "{line}");
    }
}
