//! The ZenML access model's decision tables (`tests/decisions/*.yaml`): every row must hold,
//! and `zenml-authz test` must run the same files with the documented output and exit codes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use assert_cmd::Command;
use zenml_authz::table;

#[test]
fn every_decision_table_row_holds() {
    let snapshot = common::bundled_snapshot();
    let tables = common::root().join("tests/decisions");
    let files = table::table_files(std::slice::from_ref(&tables));
    assert!(files.len() >= 5, "decision tables missing: {files:?}");
    let report = table::run(&snapshot, &[tables]);
    let problems: Vec<String> = report
        .failures
        .iter()
        .cloned()
        .chain(report.errors.iter().map(ToString::to_string))
        .collect();
    assert!(
        problems.is_empty(),
        "{} rows passed, but:\n{}",
        report.passed,
        problems.join("\n")
    );
    assert!(report.passed >= 300, "only {} rows", report.passed);
}

#[test]
fn the_test_command_runs_the_tables_and_reports_failures_precisely() {
    let root = common::root();
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(&root)
        .arg("test")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    let last = stdout.lines().last().unwrap();
    assert!(last.ends_with(" passed, 0 failed"), "{stdout}");

    // A wrong expectation, an unknown persona and a malformed file.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("wrong.yaml"),
        "workspace: production\ncases:\n  - {persona: carol, action: read, resource: stack, expect: allow}\n  - {persona: carol, action: delete, resource: stack, expect: allow}\n  - {persona: nobody, action: read, resource: stack, expect: deny}\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("broken.yaml"), "cases: [\n").unwrap();
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(&root)
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let wrong = dir.path().join("wrong.yaml");
    let expected_fail = format!(
        "FAIL {}:4: carol delete stack in workspace production: expected allow, got deny (determining: none)",
        wrong.display()
    );
    assert!(
        stdout.lines().any(|l| l == expected_fail),
        "expected `{expected_fail}` in\n{stdout}"
    );
    assert!(
        stdout.contains(&format!("ERROR {}:5:", wrong.display()))
            && stdout.contains("unknown persona `nobody`"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("ERROR {}:", dir.path().join("broken.yaml").display())),
        "{stdout}"
    );
    assert_eq!(stdout.lines().last(), Some("1 passed, 3 failed"), "{stdout}");
}

#[test]
fn a_failing_allow_names_the_determining_policies_with_file_and_line() {
    let root = common::root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("t.yaml"),
        "workspace: production\ncases:\n  - {persona: carol, action: read, resource: stack, expect: deny}\n",
    )
    .unwrap();
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(&root)
        .arg("test")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let policy_line = std::fs::read_to_string(root.join("policies/workspace.cedar"))
        .unwrap()
        .lines()
        .position(|l| l.contains("@id(\"workspace-viewer\")"))
        .unwrap()
        + 1;
    let expected = format!(
        "expected deny, got allow (determining: workspace-viewer (policies/workspace.cedar:{policy_line}))"
    );
    assert!(stdout.contains(&expected), "expected `{expected}` in\n{stdout}");
}
