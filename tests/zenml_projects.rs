//! `zenml-authz zenml-projects` (issue 17, item 6): a directory's project ids synced from the
//! ZenML server that generated them. The rewrite of the file, byte for byte, on its own; then
//! the command against a real ZenML server (`zenml[server]==0.98.0`, from `scripts/zenml-venv.sh`)
//! wired to the real sidecar, which must grant a project role on ZenML's project after the sync.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use zenml_authz::directory::replace_project_ids;

const CHURN: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
const NEW: &str = "e1c2695c-2f63-495c-a668-6b986b74218b";

fn replace(text: &str, old: &str, new: &str) -> Result<String, String> {
    let changes = BTreeMap::from([(old.to_owned(), new.to_owned())]);
    replace_project_ids(Path::new("directory.yaml"), text, &changes).map_err(|error| error.to_string())
}

const FILE: &str = "\
# comment: keep me
organization: {id: 743818ac-9cc4-413c-aa3b-0d14700954e9, name: acme}
workspaces:
  - {id: 99baf825-b21e-442f-ba98-8246d8d9ac88, name: production}
projects:
  - id: dccff1d9-afc7-4c24-b5e8-e887447c69c0   # churn's id, from ZenML
    name: churn
    workspace: production
  - {id: \"45f60d6d-243d-4e8e-8b96-0ae5e16357de\", name: fraud, workspace: production}
  - id: 'aa0f3d0e-9f6c-4b53-8d3c-1b1c6a0a3f11'
    name: sandbox
    workspace: production
users:
  - {id: 8a5e8598-b203-4344-948f-32f6cd6c6e30, username: bob}
bindings:
  - {user: bob, role: developer, project: dccff1d9-afc7-4c24-b5e8-e887447c69c0}
  - {user: bob, role: viewer, project: churn}
  - user: bob
    role: viewer
    project: \"dccff1d9-afc7-4c24-b5e8-e887447c69c0\"
";

#[test]
fn a_plain_id_and_the_bindings_naming_it_are_rewritten_and_nothing_else() {
    let rewritten = replace(FILE, CHURN, NEW).unwrap();
    assert_eq!(rewritten, FILE.replace(CHURN, NEW));
}

#[test]
fn quoted_ids_keep_their_quotes() {
    let fraud = "45f60d6d-243d-4e8e-8b96-0ae5e16357de";
    assert_eq!(replace(FILE, fraud, NEW).unwrap(), FILE.replace(fraud, NEW));
    let sandbox = "aa0f3d0e-9f6c-4b53-8d3c-1b1c6a0a3f11";
    assert_eq!(replace(FILE, sandbox, NEW).unwrap(), FILE.replace(sandbox, NEW));
}

#[test]
fn ids_are_swapped_at_once() {
    let fraud = "45f60d6d-243d-4e8e-8b96-0ae5e16357de";
    let changes = BTreeMap::from([
        (CHURN.to_owned(), fraud.to_owned()),
        (fraud.to_owned(), CHURN.to_owned()),
    ]);
    let rewritten = replace_project_ids(Path::new("d.yaml"), FILE, &changes).unwrap();
    let expected = FILE.replace(CHURN, "@").replace(fraud, CHURN).replace('@', fraud);
    assert_eq!(rewritten, expected);
}

#[test]
fn an_unknown_id_or_an_unusual_form_changes_nothing() {
    let error = replace(FILE, NEW, CHURN).unwrap_err();
    assert!(
        error.contains(&format!("no project has the id `{NEW}`")),
        "{error}"
    );
    let block = FILE.replace(
        &format!("  - id: {CHURN}   # churn's id, from ZenML"),
        &format!("  - id: >-\n      {CHURN}"),
    );
    let error = replace(&block, CHURN, NEW).unwrap_err();
    assert!(error.starts_with("directory.yaml:7:"), "{error}");
    assert!(
        error.contains("not written as a plain or quoted scalar: write `e1c2695c"),
        "{error}"
    );
}
