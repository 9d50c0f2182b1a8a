//! Cedar's own CLI decides as the sidecar does over what `zenml-authz export` writes.
//!
//! The real binary exports the bundled sources; `scripts/cedar-cli.sh` provides `cedar`
//! (cedar-policy-cli at the cedar-policy version of Cargo.lock, built once into
//! target/tools); every decision-table row (`tests/decisions`) is prepared into the Cedar request
//! it is written as (`ResourceAs::Written`: the ZenML resource a request-scoped entity, added to
//! the exported entities) and decided by the engine; then one `cedar run-tests` process decides
//! them all and must give, for every request, the sidecar's decision, with the sidecar's
//! determining policies among Cedar's (`@id`s) and as many evaluation errors; and `cedar
//! authorize -v`, on one request per distinct (decision, determining policies), must name
//! exactly the sidecar's determining policies.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::{Value, json};
use zenml_authz::engine::Batch;
use zenml_authz::table;
use zenml_authz::zenml::{Prepared, ResourceAs};

/// The `cedar` binary of `scripts/cedar-cli.sh` (installing it on first use).
fn cedar_cli(root: &Path) -> PathBuf {
    let output = Command::new(root.join("scripts/cedar-cli.sh"))
        .current_dir(root)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "scripts/cedar-cli.sh failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    let path = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        path.is_file(),
        "scripts/cedar-cli.sh printed `{}`",
        path.display()
    );
    path
}

/// `cedar run-tests` output: test name -> what Cedar said of it (`ok`, or why not).
fn results(stdout: &str) -> BTreeMap<String, String> {
    let mut results = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in stdout.lines() {
        if let Some(rest) = line.strip_prefix("  test ") {
            let (name, said) = rest.split_once(" ... ").unwrap_or((rest, ""));
            results.insert(name.to_owned(), said.to_owned());
            current = Some(name.to_owned());
        } else if line.starts_with("results:") {
            current = None;
        } else if let Some(name) = &current
            && let Some(said) = results.get_mut(name)
        {
            said.push(' ');
            said.push_str(line.trim());
        }
    }
    results
}

#[test]
fn cedar_cli_decides_every_decision_table_request_as_the_sidecar() {
    let root = common::root();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    let export = Command::new(env!("CARGO_BIN_EXE_zenml-authz"))
        .current_dir(&root)
        .arg("export")
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        export.status.code(),
        Some(0),
        "export failed:\n{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let cedar = cedar_cli(&root);

    let snapshot = common::bundled_snapshot();
    let engine = &snapshot.engine;
    let decider = snapshot.zenml().unwrap();

    // The exported entities are the directory's: no stand-in, no action.
    let exported: Vec<Value> =
        serde_json::from_str(&std::fs::read_to_string(out.join("entities.json")).unwrap()).unwrap();
    for entity in &exported {
        let uid: cedar_policy::EntityUid = cedar_policy::EntityUid::from_json(entity["uid"].clone()).unwrap();
        assert!(
            engine.in_directory(&uid),
            "exported `{uid}` is not a directory entity"
        );
        assert!(!engine.actions.contains(&uid), "exported action `{uid}`");
    }

    // Cedar's validator accepts the exported policies under the exported schema.
    let validate = cedar_over_export(&cedar, "validate", &out).output().unwrap();
    assert!(
        validate.status.success(),
        "cedar validate:\n{}{}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );

    // Every row as the Cedar request it is written as, with the engine's decision.
    let (rows, errors) = table::rows(&snapshot, &[root.join("tests/decisions")]);
    assert!(errors.is_empty(), "{errors:#?}");
    let mut entity_files: HashMap<String, String> = HashMap::new();
    let mut tests = Vec::new();
    let mut described = Vec::new();
    let mut denied_before_evaluation = 0;
    for row in &rows {
        let prepared = decider
            .prepare(&row.shares, &row.question(), ResourceAs::Written)
            .unwrap_or_else(|error| panic!("{}: {error}", row.place()));
        let Prepared::Request(request, _) = prepared else {
            denied_before_evaluation += 1;
            continue;
        };
        let decision = decider
            .decide_prepared(&request, None, &mut Batch::single())
            .unwrap_or_else(|error| panic!("{}: {error}", row.place()));
        assert_eq!(
            decision.allowed,
            row.allow,
            "{}: {} {}",
            row.place(),
            row.persona,
            row.action
        );
        // The request-scoped entities (the resource, an unlisted project) join the exported
        // ones in a file per distinct set.
        let extra: Vec<Value> = request
            .entities
            .cedar()
            .iter()
            .map(|entity| entity.to_json_value().unwrap())
            .collect();
        let key = serde_json::to_string(&extra).unwrap();
        let next = entity_files.len();
        let file = entity_files
            .entry(key)
            .or_insert_with(|| {
                let name = format!("entities-{next}.json");
                let all: Vec<&Value> = exported.iter().chain(&extra).collect();
                std::fs::write(out.join(&name), serde_json::to_string(&all).unwrap()).unwrap();
                name
            })
            .clone();
        let cedar_request = &request.request;
        let name = format!("#{}", tests.len());
        let principal = cedar_request.principal().unwrap().to_string();
        let action = cedar_request.action().unwrap().to_string();
        let resource = cedar_request.resource().unwrap().to_string();
        let context = cedar_request.context().unwrap().to_json_value().unwrap();
        described.push(format!(
            "{name} {}: {} {} {} -> {principal} {action} {resource} context {context} ({file}): sidecar {} {:?}, {} error(s)",
            row.place(),
            row.persona,
            row.action,
            row.resource_text,
            if decision.allowed { "allow" } else { "deny" },
            decision.reasons,
            decision.errors.len(),
        ));
        tests.push(json!({
            "name": name,
            "request": {
                "principal": principal,
                "action": action,
                "resource": resource,
                "context": context,
            },
            "entities": file,
            "decision": if decision.allowed { "allow" } else { "deny" },
            "reason": decision.reasons,
            "num_errors": decision.errors.len(),
        }));
    }
    assert!(tests.len() >= 300, "only {} requests", tests.len());
    std::fs::write(
        out.join("tests.json"),
        serde_json::to_string_pretty(&tests).unwrap(),
    )
    .unwrap();

    let started = Instant::now();
    let run = cedar_over_export(&cedar, "run-tests", &out)
        .arg("--tests")
        .arg(out.join("tests.json"))
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let said = results(&stdout);
    let mut mismatches: Vec<String> = described
        .iter()
        .enumerate()
        .filter_map(|(n, description)| match said.get(&format!("#{n}")) {
            Some(result) if result == "ok" => None,
            Some(result) => Some(format!("{description}\n    cedar: {result}")),
            None => Some(format!("{description}\n    cedar: no result")),
        })
        .collect();

    // `run-tests` checks that the sidecar's determining policies are among Cedar's; `authorize
    // -v` lists Cedar's, so one request per distinct (decision, determining policies) of the
    // sidecar checks that they are exactly the same.
    let mut distinct: BTreeMap<(String, Vec<String>), usize> = BTreeMap::new();
    for (n, test) in tests.iter().enumerate() {
        let decision = test["decision"].as_str().unwrap().to_owned();
        let reasons: Vec<String> = serde_json::from_value(test["reason"].clone()).unwrap();
        distinct.entry((decision, reasons)).or_insert(n);
    }
    for ((decision, reasons), &n) in &distinct {
        let test = &tests[n];
        let request = out.join(format!("request-{n}.json"));
        std::fs::write(&request, test["request"].to_string()).unwrap();
        let authorize = cedar_over_export(&cedar, "authorize", &out)
            .arg("--entities")
            .arg(out.join(test["entities"].as_str().unwrap()))
            .arg("--request-json")
            .arg(&request)
            .arg("-v")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&authorize.stdout);
        let said = stdout
            .lines()
            .find(|line| matches!(*line, "ALLOW" | "DENY"))
            .unwrap_or_default()
            .to_lowercase();
        let mut determining: Vec<String> = stdout
            .split_once("due to the following policies:\n")
            .map(|(_, rest)| {
                rest.lines()
                    .take_while(|line| !line.trim().is_empty())
                    .map(|line| line.trim().to_owned())
                    .collect()
            })
            .unwrap_or_default();
        determining.sort();
        if said != *decision || determining != *reasons {
            mismatches.push(format!(
                "{}\n    cedar authorize: {said} {determining:?}\n{stdout}",
                described[n]
            ));
        }
    }
    assert!(
        mismatches.is_empty() && run.status.success(),
        "Cedar's CLI disagrees with the sidecar on {} of {} requests:\n{}\n\ncedar run-tests exit {:?}, stderr:\n{}",
        mismatches.len(),
        tests.len(),
        mismatches.join("\n"),
        run.status.code(),
        String::from_utf8_lossy(&run.stderr),
    );
    eprintln!(
        "cedar run-tests agreed with the sidecar on {} requests ({} rows; {} denied before evaluation; {} entity files) in {took:?}; \
         cedar authorize on {} requests, one per distinct decision and determining policies",
        tests.len(),
        rows.len(),
        denied_before_evaluation,
        entity_files.len(),
        distinct.len(),
    );
}

/// Cedar's CLI `command` over the exported policies and schema in `out`.
fn cedar_over_export(cedar: &Path, command: &str, out: &Path) -> Command {
    let mut invocation = Command::new(cedar);
    invocation
        .arg(command)
        .arg("--policies")
        .arg(out.join("policies.cedar"))
        .arg("--schema")
        .arg(out.join("schema.cedarschema"));
    invocation
}
