//! The directory loader: `directory::load(path, text, schema)` on arbitrary text, against the
//! bundled schema: YAML (a ZenML directory), or Cedar entities JSON when the text starts with
//! `[` (the loader picks by the file name; the target names the file `fuzz.json` then, else
//! `fuzz.yaml`).
//!
//! Asserts, beyond not panicking:
//! * a failed load reports at least one error, and every error names the file;
//! * for a ZenML directory, the store built at once from the unchecked entities
//!   (`Entities::from_entities` with the schema, as `policy::load` does) succeeds exactly when
//!   the entity-by-entity check (`directory::checked_entities`, the path that reports errors
//!   at their entry) does, and then both stores are equal (`tests/validate.rs`'s property on
//!   arbitrary directories);
//! * the resolved index is consistent: team members are users who list the team, users' teams
//!   exist, projects' workspaces exist.
//!
//! Not covered: the stand-in entities `policy::load` adds to the store (`zenml::standin` is
//! private), and reading the files (the target passes text).
#![no_main]

use std::path::Path;

use cedar_policy::Entities;
use libfuzzer_sys::fuzz_target;
use zenml_authz::directory::{self, Loaded};
use zenml_authz_fuzz::SAMPLE;

const MAX_BYTES: usize = 64 * 1024;

/// A store as sorted entity JSON texts, parents sorted (equal stores, equal lists).
fn store_json(entities: &Entities) -> Vec<String> {
    let Ok(serde_json::Value::Array(list)) = entities.to_json_value() else {
        panic!("entities JSON is an array");
    };
    let mut out: Vec<String> = list
        .into_iter()
        .map(|mut entity| {
            if let Some(serde_json::Value::Array(parents)) = entity.get_mut("parents") {
                parents.sort_by_key(serde_json::Value::to_string);
            }
            entity.to_string()
        })
        .collect();
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_BYTES {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let schema = &SAMPLE.engine.schema;
    let name = if text.trim_start().starts_with('[') {
        "fuzz.json"
    } else {
        "fuzz.yaml"
    };
    let path = Path::new(name);
    let loaded = directory::load(path, text, schema);
    let (index, unchecked) = match loaded {
        Err(errors) => {
            assert!(!errors.is_empty(), "a failed load without errors");
            for error in &errors {
                assert!(
                    error.to_string().starts_with(name),
                    "error without the file: {error}"
                );
            }
            return;
        }
        Ok(Loaded::Cedar(_)) => return,
        Ok(Loaded::Zenml(index, unchecked)) => (index, unchecked),
    };

    for team in index.teams.values() {
        for member in &team.members {
            let user = index
                .users
                .get(member)
                .unwrap_or_else(|| panic!("team {} has unknown member {member}", team.named.id));
            assert!(
                user.teams.contains(&team.named.id),
                "{member} does not list team {}",
                team.named.id
            );
        }
    }
    for user in index.users.values() {
        for team in &user.teams {
            assert!(
                index.teams.contains_key(team),
                "user {} in unknown team {team}",
                user.named.id
            );
        }
    }
    for project in index.projects.values() {
        assert!(
            index.workspaces.contains_key(&project.workspace_id),
            "project {} in unknown workspace {}",
            project.named.id,
            project.workspace_id
        );
    }

    let at_once = Entities::from_entities(unchecked, Some(schema));
    let checked = directory::checked_entities(path, text, schema);
    match (at_once, checked) {
        (Ok(at_once), Ok(checked)) => {
            let one_by_one = match Entities::from_entities(checked, None) {
                Ok(entities) => entities,
                Err(error) => panic!("checked entities do not make a store: {error}"),
            };
            assert!(
                store_json(&at_once) == store_json(&one_by_one),
                "the store built at once differs from the one checked entity by entity"
            );
        }
        (Err(_), Err(errors)) => {
            assert!(!errors.is_empty());
            for error in &errors {
                assert!(
                    error.to_string().starts_with(name),
                    "error without the file: {error}"
                );
            }
        }
        (Ok(_), Err(errors)) => panic!(
            "the store built at once accepts what the entity check rejects: {}",
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        (Err(error), Ok(_)) => panic!("the entity check accepts what the store rejects: {error}"),
    }
});
