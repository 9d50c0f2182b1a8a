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
