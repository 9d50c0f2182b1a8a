//! `zenml-authz impact`: the real binary over real edits of copies of the bundled policies and
//! directory, one run per case. Each case edits one side and checks exactly the cells that must
//! change (and nothing else), with the determining policies before and after.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

#[path = "common/cli.rs"]
mod cli;

use cli::Run;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `zenml-authz <args>` in `dir` (where `policies/` and `schemas/` are) with the real cvc5.
fn run_in(dir: &Path, args: &[&str]) -> Run {
    run_with_solver(dir, args, &cli::cvc5())
}

/// Runs `zenml-authz <args>` in `dir` with `CVC5=<solver>`.
fn run_with_solver(dir: &Path, args: &[&str], solver: &str) -> Run {
    cli::run(
        cli::zenml_authz()
            .current_dir(dir)
            .args(args)
            .env("CVC5", solver)
            .env_remove("ZENML_AUTHZ_POLICIES")
            .env_remove("ZENML_AUTHZ_SCHEMAS")
            .env_remove("ZENML_AUTHZ_DIRECTORY"),
    )
}

/// A copy of the bundled schemas and policies (with `policies/directory.yaml`) in `dir`.
fn copy_sources_into(dir: &Path) {
    for sub in ["schemas", "policies"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
        for entry in std::fs::read_dir(root().join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.join(sub).join(entry.file_name())).unwrap();
        }
    }
}

/// Two copies of the bundled sources: (base, current).
fn two_copies() -> (tempfile::TempDir, tempfile::TempDir) {
    let (base, current) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    copy_sources_into(base.path());
    copy_sources_into(current.path());
    (base, current)
}

/// Replaces the first `find` in `dir/file` by `replace`.
fn edit(dir: &Path, file: &str, find: &str, replace: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(find), "fixture: `{find}` not in {file}");
    std::fs::write(&path, text.replacen(find, replace, 1)).unwrap();
}

/// `impact --base <base>` run in `current`.
fn impact(base: &Path, current: &Path) -> Run {
    run_in(current, &["impact", "--base", base.to_str().unwrap()])
}

/// `<id> (policies/<file>:<line>)` of a bundled policy, its line read from `dir`.
fn policy(dir: &Path, id: &str, file: &str) -> String {
    let text = std::fs::read_to_string(dir.join("policies").join(file)).unwrap();
    let line = text
        .lines()
        .position(|l| l.contains(&format!("@id(\"{id}\")")))
        .unwrap_or_else(|| panic!("`{id}` not in {file}"))
        + 1;
    format!("{id} (policies/{file}:{line})")
}

/// The heading of the report's symbolic section.
const SYMBOLIC: &str = "#### For every organization the schema allows (symbolic, cvc5)";

/// The concrete section's tables: `(principal · scope, rows)`, a row as `[change, type,
/// action, before, after]`.
fn sections(markdown: &str) -> Vec<(String, Vec<[String; 5]>)> {
    let mut sections: Vec<(String, Vec<[String; 5]>)> = Vec::new();
    for line in markdown.lines().take_while(|line| *line != SYMBOLIC) {
        if let Some(title) = line.strip_prefix("##### ") {
            sections.push((title.to_owned(), Vec::new()));
        } else if line.starts_with("| ") && !line.starts_with("| change ") {
            let cells: Vec<String> = line
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().to_owned())
                .collect();
            let row: [String; 5] = cells.try_into().unwrap();
            sections.last_mut().unwrap().1.push(row);
        }
    }
    sections
}

/// The symbolic section's table: `(principal · action, deny → allow on, allow → deny on)`.
fn symbolic_rows(markdown: &str) -> Vec<(String, String, String)> {
    markdown
        .lines()
        .skip_while(|line| *line != SYMBOLIC)
        .filter(|line| line.starts_with("| ") && !line.starts_with("| principal · action "))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
            (cells[0].to_owned(), cells[1].to_owned(), cells[2].to_owned())
        })
        .collect()
}

/// (section title, change, type, action) of every row.
fn cells(markdown: &str) -> BTreeSet<(String, String, String, String)> {
    sections(markdown)
        .into_iter()
        .flat_map(|(title, rows)| {
            rows.into_iter()
                .map(move |[change, ty, action, ..]| (title.clone(), change, ty, action))
        })
        .collect()
}

#[test]
fn no_edit_changes_no_decision_and_exits_0() {
    let (base, current) = two_copies();
    let out = impact(base.path(), current.path());
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("**no decision changes**"), "{out:?}");
    assert!(sections(&out.stdout).is_empty(), "{out:?}");
    // No policy differs: equivalent without a query.
    let symbolic = out.stdout.split(SYMBOLIC).nth(1).unwrap();
    assert!(symbolic.contains("**equivalent**"), "{out:?}");
    assert!(symbolic.contains("(0 of "), "{out:?}");
}

#[test]
fn a_new_project_binding_allows_exactly_that_user_there() {
    let (base, current) = two_copies();
    edit(
        current.path(),
        "policies/directory.yaml",
        "  - {user: judy, role: viewer, project: fraud}\n",
        "  - {user: judy, role: viewer, project: fraud}\n  - {user: grace, role: developer, project: fraud}\n",
    );
    let out = impact(base.path(), current.path());
    assert_eq!(out.code, 1, "{out:?}");
    let found = sections(&out.stdout);
    let titles: Vec<&str> = found.iter().map(|(title, _)| title.as_str()).collect();
    assert_eq!(titles, ["grace (user) · project fraud (production)"], "{out:?}");
    let developer = policy(current.path(), "project-developer", "project.cedar");
    let member = policy(current.path(), "project-member-read-project", "project.cedar");
    // Decision table: (type, action, the determining policy after); before, nothing permits.
    let expected = [
        ("project", "read", member.as_str()),
        ("pipeline", "create", developer.as_str()),
        ("pipeline", "read", developer.as_str()),
        ("model", "create", developer.as_str()),
        ("model_version", "read", developer.as_str()),
        ("pipeline_run", "read", developer.as_str()),
    ];
    let rows = &found[0].1;
    for (ty, action, after) in expected {
        let row = ["deny → allow", ty, action, "no permit applies", after].map(str::to_owned);
        assert!(rows.contains(&row), "missing {row:?}\n{out:?}");
    }
    // Only create and read, only deny → allow: the developer role's grid.
    for [change, _, action, ..] in rows {
        assert_eq!(change, "deny → allow", "{out:?}");
        assert!(action == "create" || action == "read", "{out:?}");
    }
    assert!(
        out.stdout.contains(&format!(
            "**{} decision changes**: {} deny → allow, 0 allow → deny, for 1 principal at 1 scope",
            rows.len(),
            rows.len()
        )),
        "{out:?}"
    );
}

#[test]
fn widening_the_workspace_viewer_role_allows_updates_to_its_holders_only() {
    let (base, current) = two_copies();
    edit(
        current.path(),
        "policies/workspace.cedar",
        "@id(\"workspace-viewer\")\npermit (\n  principal,\n  action == ZenML::Action::\"read\",",
        "@id(\"workspace-viewer\")\npermit (\n  principal,\n  action in [ZenML::Action::\"read\", ZenML::Action::\"update\"],",
    );
    let out = impact(base.path(), current.path());
    assert_eq!(out.code, 1, "{out:?}");
    let viewer = policy(current.path(), "workspace-viewer", "workspace.cedar");
    let found = sections(&out.stdout);
    // Every change is an update newly allowed by the edited policy.
    for (title, rows) in &found {
        for [change, _, action, _, after] in rows {
            assert_eq!(
                (change.as_str(), action.as_str()),
                ("deny → allow", "update"),
                "{title}\n{out:?}"
            );
            assert!(after.contains(&viewer), "{title}: {after}\n{out:?}");
        }
    }
    // Workspace viewers: carol (directly and through auditors), deployer (auditors) in
    // production, nina in staging; not mallory (deactivated), not judy (a project viewer).
    let principals: BTreeSet<&str> = found
        .iter()
        .map(|(title, _)| title.split(" · ").next().unwrap())
        .collect();
    assert_eq!(
        principals,
        BTreeSet::from(["carol (user)", "deployer (service account)", "nina (user)"]),
        "{out:?}"
    );
    let all = cells(&out.stdout);
    for (title, ty) in [
        ("carol (user) · project churn (production)", "pipeline"),
        ("carol (user) · workspace production", "stack"),
        ("deployer (service account) · project churn (production)", "model"),
        ("nina (user) · project sandbox (staging)", "pipeline_run"),
    ] {
        let cell = (
            title.to_owned(),
            "deny → allow".to_owned(),
            ty.to_owned(),
            "update".to_owned(),
        );
        assert!(all.contains(&cell), "missing {cell:?}\n{out:?}");
    }
    // deployer already updates models in fraud (model-promoter there); nina views staging only.
    for cell in [
        ("deployer (service account) · project fraud (production)", "model"),
        ("nina (user) · workspace production", "stack"),
    ] {
        let cell = (
            cell.0.to_owned(),
            "deny → allow".to_owned(),
            cell.1.to_owned(),
            "update".to_owned(),
        );
        assert!(!all.contains(&cell), "unexpected {cell:?}\n{out:?}");
    }
    // Symbolically: for every organization, users may newly update, in every environment of
    // `update` (and no other action), and nothing becomes a deny.
    let rows = symbolic_rows(&out.stdout);
    assert_eq!(rows.len(), 1, "{out:?}");
    let (who, up, down) = &rows[0];
    assert_eq!((who.as_str(), down.as_str()), ("User · update", "—"), "{out:?}");
    let every = up
        .strip_prefix("every resource type (")
        .and_then(|rest| rest.strip_suffix(')'))
        .unwrap_or_else(|| panic!("{up}\n{out:?}"));
    assert!(
        out.stdout.contains(&format!(
            "**the policy sets differ in {every} request environments**"
        )),
        "{out:?}"
    );
    // The first example, replayed on both sides: a workspace viewer, denied before, allowed by
    // the edited policy after.
    let example = out.stdout.split("<details>").nth(1).unwrap();
    assert!(
        example.contains("the principal holds: workspace viewers"),
        "{example}"
    );
    assert!(
        example.contains(&format!("- before: no permit applies\n- after: {viewer}\n")),
        "{example}"
    );
}

#[test]
fn dropped_parentheses_that_let_everyone_create_stacks_are_found() {
    let (base, current) = two_copies();
    // The contributor's type test loses its parentheses: `a || b && c` is `a || (b && c)`,
    // so anyone may create a stack.
    edit(
        current.path(),
        "policies/workspace.cedar",
        "  (resource is ZenML::Stack ||",
        "  resource is ZenML::Stack ||",
    );
    edit(
        current.path(),
        "policies/workspace.cedar",
        "   resource is ZenML::Tag) &&\n  principal in resource.workspace.contributors",
        "   resource is ZenML::Tag &&\n  principal in resource.workspace.contributors",
    );
    let out = impact(base.path(), current.path());
    assert_eq!(out.code, 1, "{out:?}");
    let contributor = policy(current.path(), "workspace-contributor", "workspace.cedar");
    let hole = |title: &str| {
        (
            title.to_owned(),
            "deny → allow".to_owned(),
            "stack".to_owned(),
            "create".to_owned(),
        )
    };
    let all = cells(&out.stdout);
    // grace is only an organization member; ken has project roles only.
    for title in [
        "grace (user) · workspace production",
        "grace (user) · workspace staging",
        "ken (user) · workspace production",
    ] {
        assert!(all.contains(&hole(title)), "missing {title}\n{out:?}");
    }
    let grace = &sections(&out.stdout)
        .into_iter()
        .find(|(title, _)| title == "grace (user) · workspace production")
        .unwrap()
        .1;
    assert!(
        grace.iter().any(|[_, ty, action, before, after]| ty == "stack"
            && action == "create"
            && before == "no permit applies"
            && *after == contributor),
        "{out:?}"
    );
    // The deactivated account stays denied; nothing becomes a deny.
    assert!(!out.stdout.contains("mallory"), "{out:?}");
    assert!(out.stdout.contains(", 0 allow → deny,"), "{out:?}");
}

#[test]
fn issue_21_a_git_revision_is_the_base() {
    let repo = tempfile::tempdir().unwrap();
    copy_sources_into(repo.path());
    let git = |args: &[&str]| {
        let status = std::process::Command::new("git")
            .current_dir(repo.path())
            .args(["-c", "user.name=test", "-c", "user.email=test@example.com"])
            .args(args)
            .output()
            .unwrap();
        assert!(status.status.success(), "git {args:?}: {status:?}");
    };
    git(&["init", "--quiet"]);
    git(&["add", "."]);
    git(&["commit", "--quiet", "-m", "bundled sources"]);
    edit(
        repo.path(),
        "policies/directory.yaml",
        "  - {user: judy, role: viewer, project: fraud}\n",
        "  - {user: judy, role: viewer, project: fraud}\n  - {user: grace, role: viewer, project: churn}\n",
    );
    git(&["commit", "--quiet", "-am", "grace views churn"]);
    let out = run_in(repo.path(), &["impact", "--base", "HEAD~1", "--format", "json"]);
    assert_eq!(out.code, 1, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["base"], "HEAD~1");
    let changes = report["changes"].as_array().unwrap();
    assert!(!changes.is_empty(), "{out:?}");
    for change in changes {
        assert_eq!(change["principal"]["name"], "grace", "{change}");
        assert_eq!(change["scope"]["name"], "churn", "{change}");
        assert_eq!(change["change"], "deny_to_allow", "{change}");
        assert_eq!(change["action"], "read", "{change}");
        assert_eq!(change["before"]["policies"], serde_json::json!([]), "{change}");
    }
    let pipeline = changes
        .iter()
        .find(|c| c["resource_type"] == "pipeline")
        .unwrap_or_else(|| panic!("no pipeline read\n{out:?}"));
    let viewer = &pipeline["after"]["policies"][0];
    assert_eq!(viewer["id"], "project-viewer");
    assert_eq!(viewer["file"], "policies/project.cedar");
    assert_eq!(report["summary"]["changes"], changes.len());
    // A directory edit: the policy sets are the same, equivalent without a query.
    assert_eq!(report["symbolic"]["status"], "equivalent");
    assert_eq!(report["symbolic"]["asked"], 0);
}

#[test]
fn invalid_base_sources_exit_4_naming_the_base() {
    let (base, current) = two_copies();
    edit(
        base.path(),
        "policies/project.cedar",
        "@id(\"project-viewer\")",
        "@id(\"project-viewer\")\npermit (principal, action, resource) when { principal.nonsense };\n@id(\"x\")",
    );
    let out = impact(base.path(), current.path());
    assert_eq!(out.code, 4, "{out:?}");
    let base_name = format!("base `{}`", base.path().display());
    assert!(out.stderr.contains(&format!("error: {base_name}: ")), "{out:?}");
    assert!(out.stderr.contains("project.cedar"), "{out:?}");
    assert!(!out.stderr.contains("current sources"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn an_edit_that_changes_nothing_today_but_would_tomorrow_is_caught() {
    let (base, current) = two_copies();
    // Deactivation forgets service accounts: no service account is deactivated today, so no
    // decision of this directory changes; the first one deactivated would keep its roles.
    edit(
        current.path(),
        "policies/service_accounts.cedar",
        "unless { principal.active };",
        "unless { principal.active || principal.is_service_account };",
    );
    let out = run_in(
        current.path(),
        &[
            "impact",
            "--base",
            base.path().to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert_eq!(out.code, 1, "{out:?}");
    let report: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["summary"]["changes"], 0, "{out:?}");
    let symbolic = &report["symbolic"];
    assert_eq!(symbolic["status"], "differs", "{out:?}");
    assert_eq!(symbolic["unknown"], serde_json::json!([]), "{out:?}");
    let differences = symbolic["differences"].as_array().unwrap();
    assert!(!differences.is_empty(), "{out:?}");
    let deactivation = "deactivated-principal";
    for difference in differences {
        // Each example: a deactivated service account, denied by the deactivation forbid before,
        // allowed after; never the other way.
        assert_eq!(difference["change"], "deny_to_allow", "{difference}");
        let principal = difference["principal"].as_str().unwrap();
        let entity = difference["entities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| format!("{}::{}", e["uid"]["type"].as_str().unwrap(), e["uid"]["id"]) == principal)
            .unwrap_or_else(|| panic!("{principal} not among the entities\n{difference}"));
        assert_eq!(entity["attrs"]["active"], false, "{difference}");
        assert_eq!(entity["attrs"]["is_service_account"], true, "{difference}");
        assert_eq!(difference["before"]["decision"], "deny", "{difference}");
        assert_eq!(
            difference["before"]["policies"][0]["id"], deactivation,
            "{difference}"
        );
        assert_eq!(difference["after"]["decision"], "allow", "{difference}");
    }

    // A solver that gives no answer: nothing found, but never "equivalent" (exit 5).
    let dir = tempfile::tempdir().unwrap();
    let dying = cli::dying_solver(dir.path());
    let args = ["impact", "--base", base.path().to_str().unwrap()];
    let out = run_with_solver(current.path(), &args, &dying);
    assert_eq!(out.code, 5, "{out:?}");
    let section = out.stdout.split(SYMBOLIC).nth(1).unwrap();
    assert!(
        section.contains("**no difference found, but not proved equivalent**"),
        "{out:?}"
    );
    assert!(section.contains("**unknown in "), "{out:?}");

    // Without the symbolic comparison, only today's directory counts: nothing changes.
    let out = run_with_solver(current.path(), &[&args[..], &["--no-symbolic"]].concat(), &dying);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.contains("not run (--no-symbolic)"), "{out:?}");
}

#[test]
fn a_policy_naming_one_project_changes_that_project_only() {
    let (base, current) = two_copies();
    // Answers found at one project are reused at projects alike up to their ids (churn and
    // fraud are): a policy naming churn must keep churn apart.
    let churn = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
    let added = format!(
        "\n@id(\"churn-developers-promote\")\npermit (principal, action == ZenML::Action::\"promote\", resource)\n\
         when {{ resource has project && resource.project == ZenML::Project::\"{churn}\" && \
         principal in resource.workspace.developers }};\n"
    );
    let path = current.path().join("policies/project.cedar");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(&added);
    std::fs::write(&path, text).unwrap();
    let out = run_in(
        current.path(),
        &["impact", "--base", base.path().to_str().unwrap(), "--no-symbolic"],
    );
    assert_eq!(out.code, 1, "{out:?}");
    // Workspace developers of production (ml-eng: bob, nina) may now promote in churn only.
    let titles: BTreeSet<String> = sections(&out.stdout)
        .into_iter()
        .map(|(title, _)| title)
        .collect();
    assert_eq!(
        titles,
        BTreeSet::from([
            "bob (user) · project churn (production)".to_owned(),
            "nina (user) · project churn (production)".to_owned(),
        ]),
        "{out:?}"
    );
    for (_, change, _, action) in cells(&out.stdout) {
        assert_eq!(
            (change.as_str(), action.as_str()),
            ("deny → allow", "promote"),
            "{out:?}"
        );
    }
}
