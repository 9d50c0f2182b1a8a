//! A reload reuses the directory's store (entities, closure, index graph) exactly while the
//! directory file and the schema are unchanged, and what it reuses equals a fresh build.
//!
//! One test in its own binary: the store kept for reuse is the process's latest load, so no
//! other load may run beside it.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::path::Path;
use std::sync::Arc;

use cedar_policy::EntityUid;
use zenml_authz::{Loader, Snapshot, Sources};

fn sources(dir: &Path) -> Sources {
    Sources {
        policies: dir.join("policies"),
        schemas: dir.join("schemas"),
        directory: dir.join("policies/directory.yaml"),
    }
}

fn load(loader: &mut Loader, dir: &Path) -> Snapshot {
    loader
        .load(&sources(dir))
        .unwrap_or_else(|errors| panic!("{errors:#?}"))
}

/// The store as sorted entity JSON (order-free comparison).
fn store(snapshot: &Snapshot) -> Vec<String> {
    common::store_json(&snapshot.engine.entities)
}

/// Whether two stores hold the same entities (without printing them all when not).
fn equal_stores(a: &Snapshot, b: &Snapshot) -> bool {
    let (a, b) = (store(a), store(b));
    if a != b {
        let only_a = a.iter().filter(|e| !b.contains(e)).take(2).collect::<Vec<_>>();
        let only_b = b.iter().filter(|e| !a.contains(e)).take(2).collect::<Vec<_>>();
        eprintln!("stores differ: only in the first {only_a:?}, only in the second {only_b:?}");
    }
    a == b
}

fn append(path: &Path, text: &str) {
    let mut current = std::fs::read_to_string(path).unwrap();
    current.push_str(text);
    std::fs::write(path, current).unwrap();
}

fn same_store(a: &Snapshot, b: &Snapshot) -> bool {
    let graph = |s: &Snapshot| s.engine.index_graph().map(|g| Arc::as_ptr(g) as usize);
    let shared = Arc::ptr_eq(&a.engine.entities, &b.engine.entities);
    if shared {
        // Everything built from the directory goes with it.
        assert!(std::ptr::eq(a.directory().unwrap(), b.directory().unwrap()));
        let memberships = |s: &Snapshot| s.zenml.as_ref().unwrap().memberships() as *const _;
        assert_eq!(
            memberships(a),
            memberships(b),
            "the directory's memberships are shared too"
        );
        assert_eq!(graph(a), graph(b), "the index graph is shared with the store");
    }
    shared
}

#[test]
fn the_directory_store_is_rebuilt_exactly_when_its_inputs_change() {
    let dir = common::copy_sources();
    let fresh = common::copy_sources(); // loaded from another path: never reused
    let mut loader = Loader::new();
    let first = load(&mut loader, dir.path());
    assert!(
        first.zenml.as_ref().unwrap().stand_ins(),
        "the bundled policies allow stand-ins"
    );

    // Nothing changed, then a policy edit: the store is reused.
    let again = load(&mut loader, dir.path());
    assert!(same_store(&first, &again));
    append(
        &dir.path().join("policies/organization.cedar"),
        "\n@id(\"nobody-deletes-nothing\")\nforbid (principal, action == ZenML::Action::\"delete\", resource) when { false };\n",
    );
    let edited = load(&mut loader, dir.path());
    assert_ne!(edited.revision, first.revision);
    assert!(
        edited
            .engine
            .policies
            .policy(&"nobody-deletes-nothing".parse().unwrap())
            .is_some()
    );
    assert!(same_store(&first, &edited));

    // A policy naming a resource: the store is rebuilt without stand-ins, and with them again
    // once the policy is gone.
    let pin = dir.path().join("policies/pin.cedar");
    std::fs::write(
        &pin,
        "forbid (principal, action, resource == ZenML::Pipeline::\"0b7c7c7e-59a5-4a0e-8b6d-1b1f0a3c9d01\");\n",
    )
    .unwrap();
    // The same text in a second file (parsed once per load, by text): its own ids and place.
    std::fs::copy(&pin, dir.path().join("policies/pin2.cedar")).unwrap();
    let pinned = load(&mut loader, dir.path());
    for id in ["pin.cedar:0", "pin2.cedar:0"] {
        let source = &pinned.engine.policy_sources[id];
        assert_eq!(
            (source.line, source.path.file_name().unwrap()),
            (Some(1), std::ffi::OsStr::new(&id[..id.len() - 2]))
        );
    }
    std::fs::remove_file(dir.path().join("policies/pin2.cedar")).unwrap();
    assert!(!pinned.zenml.as_ref().unwrap().stand_ins());
    assert!(!same_store(&edited, &pinned));
    assert!(
        store(&pinned).len() < store(&edited).len(),
        "no stand-in resources"
    );
    std::fs::remove_file(&pin).unwrap();
    let unpinned = load(&mut loader, dir.path());
    assert!(unpinned.zenml.as_ref().unwrap().stand_ins());
    assert!(!same_store(&pinned, &unpinned));
    assert!(equal_stores(&unpinned, &first));

    // A directory edit: rebuilt, and equal to a build from scratch of the same files.
    let yaml = dir.path().join("policies/directory.yaml");
    let text = std::fs::read_to_string(&yaml).unwrap();
    let edited_text = text.replacen("members: [bob, nina]", "members: [bob]", 1);
    assert_ne!(edited_text, text);
    std::fs::write(&yaml, &edited_text).unwrap();
    let moved = load(&mut loader, dir.path());
    assert!(!same_store(&unpinned, &moved));
    let nina: EntityUid = r#"ZenML::User::"7f5b82c8-1a37-4260-ae25-977b5c4f47ec""#.parse().unwrap();
    let team: EntityUid = r#"ZenML::Team::"bba0b1e4-baaf-4db0-862c-0a6718adc0fe""#.parse().unwrap();
    let in_team = |s: &Snapshot| s.engine.entities.ancestors(&nina).unwrap().any(|a| *a == team);
    assert!(in_team(&unpinned) && !in_team(&moved), "nina left ml-eng");
    for sub in ["policies/organization.cedar", "policies/directory.yaml"] {
        std::fs::copy(dir.path().join(sub), fresh.path().join(sub)).unwrap();
    }
    let scratch = load(&mut Loader::new(), fresh.path());
    assert!(equal_stores(&moved, &scratch));

    // A schema edit (a comment): rebuilt, the same entities.
    append(&dir.path().join("schemas/zenml.cedarschema"), "\n// edited\n");
    let schema_edited = load(&mut loader, dir.path());
    assert!(!same_store(&moved, &schema_edited));
    assert!(equal_stores(&schema_edited, &moved));

    // A broken directory edit fails the load; the store kept for reuse is still the last good
    // one (the next good load reuses it).
    std::fs::write(&yaml, "organization: [").unwrap();
    assert!(loader.load(&sources(dir.path())).is_err());
    std::fs::write(&yaml, &edited_text).unwrap();
    let fixed = load(&mut loader, dir.path());
    assert!(same_store(&schema_edited, &fixed));
}

/// A directory edit updates the previous store (only what changed is checked and closed again)
/// and the index's graph of it, and both equal a build from scratch of the same files, for edits of every kind: a
/// member leaves a team, a team gains a binding (its members are closed again), a user is added
/// with a binding, a project moves to another workspace, a user and a team are removed, a
/// custom role's grid changes, and every edit undone.
#[test]
fn a_directory_edit_updates_the_store_as_a_fresh_build_would() {
    use zenml_authz::engine::Changes;
    use zenml_authz::snapshot::StoreOrigin;

    let dir = common::copy_sources();
    let fresh = common::copy_sources();
    let yaml = dir.path().join("policies/directory.yaml");
    let original = std::fs::read_to_string(&yaml).unwrap();
    let mut loader = Loader::new();
    let first = load(&mut loader, dir.path());
    assert_eq!(first.store, StoreOrigin::Built);

    let changes = |added, changed, removed, reclosed| Changes {
        added,
        changed,
        removed,
        reclosed,
    };
    // (what, replaced, by, the changes expected): applied one after the other.
    let carol_entry = entry(&original, "  - id: 783f4f04-072f-4dfd-bc1d-210bfa40fff2\n");
    let table: &[(&str, &str, &str, Changes)] = &[
        (
            "nina leaves ml-eng",
            "members: [bob, nina]",
            "members: [bob]",
            changes(0, 1, 0, 0),
        ),
        (
            "ml-eng gains a binding: bob, its member, is closed again",
            "bindings:\n",
            "bindings:\n  - {team: ml-eng, role: viewer, workspace: staging}\n",
            changes(0, 1, 0, 1),
        ),
        (
            "a user is added, with a binding",
            "\n# Organization service accounts",
            "  - id: 0c1d2e3f-4a5b-4c6d-8e7f-8091a2b3c4d5\n    username: zed\n\n# Organization service accounts",
            changes(1, 0, 0, 0),
        ),
        (
            "zed's binding",
            "bindings:\n",
            "bindings:\n  - {user: zed, role: developer, project: sandbox}\n",
            changes(0, 1, 0, 0),
        ),
        (
            "fraud moves to staging: the project and its 16 stand-in resources",
            "name: fraud\n    workspace: production",
            "name: fraud\n    workspace: staging",
            changes(0, 17, 0, 0),
        ),
        ("carol is removed", &carol_entry, "", changes(0, 0, 1, 0)),
        (
            "the platform team is removed (erin, its member, changes)",
            "  - id: f5135f22-db1c-457d-9d9e-b7d016a19800\n    name: platform\n    members: [erin]\n",
            "",
            changes(0, 1, 1, 0),
        ),
        (
            "model-promoter no longer updates models",
            "model: [promote, update]",
            "model: [promote]",
            changes(0, 0, 0, 0),
        ),
    ];
    let mut text = original.clone();
    for (what, replaced, by, expected) in table {
        assert!(text.contains(replaced), "{what}: `{replaced}` is in the file");
        text = text.replacen(replaced, by, 1);
        // Bindings of what was removed go with it.
        if *what == "carol is removed" {
            text = text
                .lines()
                .filter(|line| !line.contains("user: carol"))
                .map(|line| format!("{line}\n"))
                .collect::<String>()
                .replace("members: [carol, deployer]", "members: [deployer]");
        }
        if what.starts_with("the platform team is removed") {
            text = text
                .lines()
                .filter(|line| !line.contains("team: platform"))
                .map(|line| format!("{line}\n"))
                .collect();
        }
        std::fs::write(&yaml, &text).unwrap();
        let updated = load(&mut loader, dir.path());
        std::fs::write(fresh.path().join("policies/directory.yaml"), &text).unwrap();
        let scratch = load(&mut Loader::new(), fresh.path());
        assert_eq!(scratch.store, StoreOrigin::Built);
        assert!(
            equal_stores(&updated, &scratch),
            "{what}: the updated store equals a fresh one"
        );
        let graph = |s: &Snapshot| s.engine.index_graph().cloned().expect("an index graph");
        if let Err(difference) = graph(&updated).answers_like(&graph(&scratch)) {
            panic!("{what}: the updated index graph answers otherwise: {difference}");
        }
        assert_eq!(updated.store, StoreOrigin::Updated(*expected), "{what}");
    }

    // Every edit undone: the first store's entities again.
    std::fs::write(&yaml, &original).unwrap();
    let undone = load(&mut loader, dir.path());
    assert!(matches!(undone.store, StoreOrigin::Updated(_)));
    assert!(equal_stores(&undone, &first));
}

/// The lines of the list entry of `text` that starts with `first` (up to the next entry or
/// section).
fn entry(text: &str, first: &str) -> String {
    let start = text.find(first).expect("the entry is in the file");
    let rest = &text[start + first.len()..];
    let end = rest
        .find("\n  - ")
        .into_iter()
        .chain(rest.find("\n\n"))
        .min()
        .map_or(rest.len(), |at| at + 1);
    text[start..start + first.len() + end].to_owned()
}
