//! `zenml-authz verify`, the real binary with the real cvc5 (installed by
//! `scripts/ensure-cvc5.sh` where missing): the bundled invariants are proved on the bundled
//! policies; a policy letting workspace viewers delete is refuted with a counterexample that the
//! replay shows allowed; a solver that dies is `unknown`, never `proved`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

#[path = "common/cli.rs"]
mod cli;

use cli::{Run, cvc5};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The names of the bundled invariants, in file order.
fn bundled_names() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("invariants/zenml.cedar")).unwrap();
    text.lines()
        .filter_map(|line| line.strip_prefix("@invariant(\""))
        .map(|rest| rest.trim_end_matches("\")").to_owned())
        .collect()
}

/// `zenml-authz verify` in the repository root with `CVC5` set.
fn verify(cvc5: &str, args: &[&str]) -> Run {
    cli::run(
        cli::zenml_authz()
            .current_dir(root())
            .env("CVC5", cvc5)
            .arg("verify")
            .args(args),
    )
}

/// The bundled invariant named `name`, as written (annotations to the closing `};`).
fn bundled_entry(name: &str) -> String {
    let text = std::fs::read_to_string(root().join("invariants/zenml.cedar")).unwrap();
    let start = text.find(&format!("@invariant(\"{name}\")")).unwrap();
    let end = start + text[start..].find("};").unwrap() + 2;
    format!("{}\n", &text[start..end])
}

/// The bundled policies copied into `dir`, plus `extra` as `extra.cedar`.
fn policies_with(dir: &Path, extra: &str) {
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "cedar") {
            std::fs::copy(&path, dir.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(dir.join("extra.cedar"), extra).unwrap();
}

#[test]
fn bundled_invariants_are_proved_on_the_bundled_policies() {
    let run = verify(&cvc5(), &[]);
    assert_eq!(run.code, 0, "{run:?}");
    let names = bundled_names();
    assert!(names.len() >= 7, "{names:?}");
    for name in &names {
        let proved = run
            .stdout
            .lines()
            .any(|line| line.starts_with(&format!("proved   {name} (")) && line.ends_with("environments)"));
        assert!(proved, "`{name}` not proved: {run:?}");
    }
    assert!(
        run.stdout
            .contains(&format!("{} proved, 0 refuted, 0 unknown", names.len())),
        "{run:?}"
    );
}

#[test]
fn a_policy_letting_workspace_viewers_delete_is_refuted_and_replayed() {
    let dir = tempfile::tempdir().unwrap();
    // Lean: the viewers invariant and one that the new policy keeps, not the whole file.
    let invariants = dir.path().join("invariants.cedar");
    let viewers = "viewers never create, update, delete or share";
    let deactivated = "a deactivated principal is always denied";
    std::fs::write(&invariants, bundled_entry(viewers) + &bundled_entry(deactivated)).unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    policies_with(
        &policies,
        "@id(\"viewers-delete\")\n\
         permit (principal, action == ZenML::Action::\"delete\", resource)\n\
         when { principal in resource.workspace.viewers };\n",
    );
    let run = verify(
        &cvc5(),
        &[
            "--policies",
            policies.to_str().unwrap(),
            "--invariants",
            invariants.to_str().unwrap(),
            "--format",
            "text",
        ],
    );
    assert_eq!(run.code, 1, "{run:?}");
    let out = &run.stdout;
    // The viewers invariant, with a counterexample for a delete and its replay: allowed by the
    // new policy, which the invariant's forbid would have denied.
    let start = out
        .find(&format!("refuted  {viewers}"))
        .unwrap_or_else(|| panic!("{run:?}"));
    let section: String = out[start..]
        .lines()
        .skip(1)
        .take_while(|line| line.starts_with("  "))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        section.contains("counterexample (ZenML::User ZenML::Action::\"delete\""),
        "{section}"
    );
    assert!(section.contains("principal: ZenML::User::"), "{section}");
    assert!(
        section.contains("action:    ZenML::Action::\"delete\""),
        "{section}"
    );
    assert!(
        section.contains("the principal holds: ") && section.contains("workspace viewers"),
        "{section}"
    );
    assert!(section.contains("entities:"), "{section}");
    assert!(
        section.contains("replayed on the policies: ALLOW, determining: viewers-delete"),
        "{section}"
    );
    assert!(
        section.contains("the invariant's forbid applies to this request"),
        "{section}"
    );
    // The other still holds.
    assert!(out.contains(&format!("proved   {deactivated} (")), "{run:?}");
    assert!(out.contains("1 proved, 1 refuted, 0 unknown"), "{run:?}");
}

#[test]
fn a_solver_that_dies_is_unknown_never_proved() {
    let dir = tempfile::tempdir().unwrap();
    let solver = cli::dying_solver(dir.path());
    // An invariant whose queries need the solver (one the symbolic compiler settles by itself,
    // such as the deactivation forbid that the policies contain verbatim, is proved without it).
    let stacks = "only organization admins, workspace admins and stack admins delete stacks";
    let invariants = dir.path().join("invariants.cedar");
    std::fs::write(&invariants, bundled_entry(stacks)).unwrap();
    let run = verify(
        &solver,
        &["--invariants", invariants.to_str().unwrap(), "--format", "json"],
    );
    assert_eq!(run.code, 5, "{run:?}");
    let answer: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let items = answer["invariants"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{run:?}");
    assert_eq!(items[0]["name"], stacks, "{run:?}");
    assert_eq!(items[0]["result"], "unknown", "{run:?}");
    let message = items[0]["message"].as_str().unwrap();
    assert!(message.contains("terminated"), "{message}");
}
