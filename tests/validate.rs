//! `zenml-authz validate` on the bundled sources and on broken copies of them: every error is
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]
//! printed at once, with file, line and column.

mod common;

use assert_cmd::Command;

/// Runs `validate` on a copy of the bundled sources after applying `edits`
/// (file relative to the copy, text to find, replacement).
fn validate_with(edits: &[Edit<'_>]) -> (i32, String, String) {
    let dir = common::copy_sources();
    for (file, find, replace) in edits {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(find), "fixture: `{find}` not in {file}");
        std::fs::write(&path, text.replacen(find, replace, 1)).unwrap();
    }
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(dir.path())
        .arg("validate")
        .output()
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A fixture edit: file (relative to the copy), text to find, replacement.
type Edit<'a> = (&'a str, &'a str, &'a str);

/// The 1-based line of the first line containing `needle` in a bundled file.
fn line_of(file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(common::root().join(file)).unwrap();
    text.lines().position(|l| l.contains(needle)).unwrap() + 1
}

#[test]
fn the_bundled_sources_are_valid() {
    let (code, stdout, stderr) = validate_with(&[]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("valid: "), "{stdout}");
    assert!(stdout.contains("revision"), "{stdout}");
}

#[test]
fn each_kind_of_breakage_is_reported_at_its_place() {
    let bob = line_of("policies/directory.yaml", "username: bob") - 1;
    let ada = line_of("policies/directory.yaml", "username: ada") - 1;
    let dave_binding = line_of(
        "policies/directory.yaml",
        "{user: dave, role: developer, project: churn}",
    );
    let ml_eng_binding = line_of(
        "policies/directory.yaml",
        "{team: ml-eng, role: developer, workspace: production}",
    );
    let ci_bot_binding = line_of(
        "policies/directory.yaml",
        "{service_account: ci-bot, role: developer, project: churn}",
    );
    // (what, edits, expected error line prefix, expected text in it)
    let table: Vec<(&str, Vec<Edit<'_>>, String, &str)> = vec![
        (
            "policy syntax error",
            vec![(
                "policies/sharing.cedar",
                "permit (principal, action, resource)\nwhen\n{ context has shared_with_teams",
                "permit (principal, action, resource\nwhen\n{ context has shared_with_teams",
            )],
            // The `when` after the unclosed scope is the unexpected token.
            format!(
                "policies/sharing.cedar:{}:",
                line_of("policies/sharing.cedar", "{ context has shared_with_teams") - 1
            ),
            "unexpected token",
        ),
        (
            "unknown attribute (strict validation)",
            vec![(
                "policies/project.cedar",
                "resource.project.viewers",
                "resource.project.watchers",
            )],
            format!(
                "policies/project.cedar:{}:",
                line_of("policies/project.cedar", "resource.project.viewers")
            ),
            "attribute `watchers` on entity type `ZenML::Project` not found",
        ),
        (
            "undeclared schema type",
            vec![(
                "schemas/zenml.cedarschema",
                "name: String,\n    email?: String,",
                "name: Strin,\n    email?: String,",
            )],
            format!(
                "schemas/zenml.cedarschema:{}:",
                line_of("schemas/zenml.cedarschema", "email?: String") - 1
            ),
            "Strin",
        ),
        (
            "directory: unknown team in a binding",
            vec![(
                "policies/directory.yaml",
                "{team: ml-eng, role: developer, workspace: production}",
                "{team: ml-engineers, role: developer, workspace: production}",
            )],
            format!("policies/directory.yaml:{ml_eng_binding}:"),
            "unknown team `ml-engineers`",
        ),
        (
            "directory: unknown service account in a binding",
            vec![(
                "policies/directory.yaml",
                "{service_account: ci-bot, role: developer, project: churn}",
                "{service_account: ci-robot, role: developer, project: churn}",
            )],
            format!("policies/directory.yaml:{ci_bot_binding}:"),
            "unknown service account `ci-robot`",
        ),
        (
            "directory: a binding naming two holders",
            vec![(
                "policies/directory.yaml",
                "{service_account: ci-bot, role: developer, project: churn}",
                "{service_account: ci-bot, team: ml-eng, role: developer, project: churn}",
            )],
            format!("policies/directory.yaml:{ci_bot_binding}:"),
            "name exactly one of `user`, `team` or `service_account`",
        ),
        (
            "directory: unknown role",
            vec![(
                "policies/directory.yaml",
                "{user: dave, role: developer, project: churn}",
                "{user: dave, role: wizard, project: churn}",
            )],
            format!("policies/directory.yaml:{dave_binding}:"),
            "unknown role `wizard`",
        ),
        (
            "directory: id that is not a UUID",
            vec![(
                "policies/directory.yaml",
                "id: 8a5e8598-b203-4344-948f-32f6cd6c6e30",
                "id: bob-1",
            )],
            format!("policies/directory.yaml:{bob}:"),
            "users[1] `bob`: id `bob-1` is not a UUID",
        ),
        (
            "directory: an entry the schema no longer fits",
            vec![("schemas/zenml.cedarschema", "email?: String,", "email?: Long,")],
            format!("policies/directory.yaml:{ada}:"),
            "users[0] `ada`: does not match the schema",
        ),
        (
            "directory: unknown field",
            vec![(
                "policies/directory.yaml",
                "    name: fraud\n",
                "    name: fraud\n    colour: red\n",
            )],
            format!(
                "policies/directory.yaml:{}:",
                line_of("policies/directory.yaml", "name: fraud") + 1
            ),
            "unknown field `colour`",
        ),
        (
            "directory: custom role granting a workspace type at project scope",
            vec![(
                "policies/directory.yaml",
                "      model_version: [update]",
                "      model_version: [update]\n      stack: [read]",
            )],
            format!(
                "policies/directory.yaml:{}:",
                line_of("policies/directory.yaml", "name: model-promoter")
            ),
            "`stack` is a workspace-level type; a project role cannot grant it",
        ),
        (
            "a schema the ZenML stand-in resources no longer fit (said of them, not of the directory)",
            vec![(
                "schemas/zenml.cedarschema",
                "entity Pipeline in [Project] = { workspace: Workspace, project: Project };",
                "entity Pipeline in [Project] = { workspace: Workspace, project: Project, owner: String };",
            )],
            "policies/directory.yaml: stand-in resources:".to_owned(),
            "owner",
        ),
    ];
    for (what, edits, place, text) in table {
        let (code, _, stderr) = validate_with(&edits);
        assert_eq!(code, 1, "{what}: {stderr}");
        let line = stderr
            .lines()
            .find(|l| l.contains(text))
            .unwrap_or_else(|| panic!("{what}: `{text}` not in\n{stderr}"));
        assert!(
            line.starts_with(&format!("error: {place}")),
            "{what}: expected `{place}` in `{line}`"
        );
    }
}

#[test]
fn all_errors_are_reported_at_once() {
    let (code, _, stderr) = validate_with(&[
        (
            "policies/project.cedar",
            "resource.project.viewers",
            "resource.project.watchers",
        ),
        (
            "policies/workspace.cedar",
            "resource.workspace.viewers",
            "resource.workspace.lookers",
        ),
        (
            "policies/directory.yaml",
            "{user: dave, role: developer, project: churn}",
            "{user: davy, role: developer, project: churn}",
        ),
        (
            "policies/directory.yaml",
            "{user: heidi, role: contributor, workspace: production}",
            "{user: heidi, role: contributor, workspace: prod}",
        ),
    ]);
    assert_eq!(code, 1);
    for text in [
        "watchers",
        "lookers",
        "unknown user `davy`",
        "unknown workspace `prod`",
    ] {
        assert!(stderr.contains(text), "`{text}` missing from\n{stderr}");
    }
    assert!(stderr.trim_end().ends_with("invalid: 4 error(s)"), "{stderr}");
}

#[test]
fn plain_cedar_entities_json_also_loads() {
    let dir = common::copy_sources();
    let entities = r#"[{"uid": {"type": "ZenML::User", "id": "alice"}, "attrs": {"name": "alice", "is_service_account": false, "active": true}, "parents": []}]"#;
    std::fs::write(dir.path().join("entities.json"), entities).unwrap();
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(dir.path())
        .args(["validate", "--directory", "entities.json"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::write(
        dir.path().join("entities.json"),
        entities.replace("\"active\": true", "\"active\": 1"),
    )
    .unwrap();
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(dir.path())
        .args(["validate", "--directory", "entities.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("entities.json: ") && stderr.contains("active"),
        "{stderr}"
    );
}

#[test]
fn missing_paths_and_every_flag_from_the_environment() {
    let output = Command::cargo_bin("zenml-authz")
        .unwrap()
        .current_dir(common::root())
        .env("ZENML_AUTHZ_POLICIES", "no-such-dir")
        .arg("validate")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("error: no-such-dir: no such file or directory"),
        "{stderr}"
    );
    let help = Command::cargo_bin("zenml-authz")
        .unwrap()
        .args(["serve", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for var in [
        "ZENML_AUTHZ_POLICIES",
        "ZENML_AUTHZ_SCHEMAS",
        "ZENML_AUTHZ_DIRECTORY",
        "ZENML_AUTHZ_LISTEN",
        "ZENML_AUTHZ_MAX_BODY_BYTES",
        "ZENML_AUTHZ_MAX_BATCH",
        "ZENML_AUTHZ_MAX_CONNECTIONS",
        "ZENML_AUTHZ_HEADER_TIMEOUT",
        "ZENML_AUTHZ_SHUTDOWN_GRACE",
        "ZENML_AUTHZ_LOG",
        "ZENML_AUTHZ_LOG_FORMAT",
        "ZENML_AUTHZ_ZENML_BASE_PATH",
        "ZENML_AUTHZ_TOKEN_TTL",
        "ZENML_AUTHZ_TOKEN_SECRET_FILE",
        "ZENML_AUTHZ_SHARES_DB",
    ] {
        // Secrets show no value: `[env: NAME]`; the others `[env: NAME=default]`.
        assert!(
            help.contains(&format!("[env: {var}=")) || help.contains(&format!("[env: {var}]")),
            "{var} missing from serve --help"
        );
    }
    // The secret itself has a variable and no flag (a command line is readable by every user).
    assert!(
        help.replace("ZENML_AUTHZ_TOKEN_SECRET_FILE", "")
            .contains("ZENML_AUTHZ_TOKEN_SECRET"),
        "the secret's variable is named"
    );
    assert!(!help.contains("--token-secret "), "no flag for the secret itself");
    let usage = Command::cargo_bin("zenml-authz")
        .unwrap()
        .arg("serve")
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(usage.status.code(), Some(2));
}

/// Reloads reuse the validation of unchanged files; that must never let an unvalidated policy
/// through: a file whose policy was skipped (duplicate id) and then kept is validated, and a
/// file broken, fixed and broken again is judged each time.
#[test]
fn reloads_validate_every_policy_they_keep() {
    let dir = common::copy_sources();
    let sources = zenml_authz::Sources {
        policies: dir.path().join("policies"),
        schemas: dir.path().join("schemas"),
        directory: dir.path().join("policies/directory.yaml"),
    };
    let load = || {
        zenml_authz::snapshot::load(&sources)
            .map(|_| ())
            .map_err(|errors| format!("{errors:?}"))
    };
    let write =
        |name: &str, text: &str| std::fs::write(dir.path().join("policies").join(name), text).unwrap();
    let well_typed = "@id(\"x\")\npermit (principal, action, resource) when { principal.active };\n";
    let ill_typed =
        "@id(\"x\")\npermit (principal, action, resource) when { principal.no_such_attribute };\n";
    let mixed =
        format!("@id(\"y\")\npermit (principal, action, resource) when {{ principal.active }};\n{ill_typed}");
    let steps: [(&str, &str, Result<(), &str>); 6] = [
        ("a.cedar", well_typed, Ok(())),
        // b's `x` repeats a's: it is left out, b's `y` alone is validated
        ("b.cedar", &mixed, Err("duplicate policy id `x`")),
        // a emptied: b's ill-typed `x` is kept now (b unchanged) and must be validated
        ("a.cedar", "", Err("no_such_attribute")),
        ("b.cedar", well_typed, Ok(())),
        ("b.cedar", ill_typed, Err("no_such_attribute")),
        ("b.cedar", well_typed, Ok(())),
    ];
    assert_eq!(load(), Ok(()));
    for (step, (file, text, expected)) in steps.into_iter().enumerate() {
        write(file, text);
        match (load(), expected) {
            (Ok(()), Ok(())) => {}
            (Err(errors), Err(needle)) => assert!(errors.contains(needle), "step {step}: {errors}"),
            (got, expected) => panic!("step {step}: expected {expected:?}, got {got:?}"),
        }
    }
}

#[test]
fn the_directory_store_built_at_once_equals_the_one_checked_entity_by_entity() {
    // The load makes the directory's entities unchecked and checks them with the store, at once;
    // `checked_entities` parses and checks each through Cedar's JSON form. Same store.
    let root = common::root();
    let schema_text = std::fs::read_to_string(root.join("schemas/zenml.cedarschema")).unwrap();
    let (schema, _) = cedar_policy::Schema::from_cedarschema_str(&schema_text).unwrap();
    let path = std::path::Path::new("policies/directory.yaml");
    let text = std::fs::read_to_string(root.join(path)).unwrap();
    let Ok(zenml_authz::directory::Loaded::Zenml(_, unchecked)) =
        zenml_authz::directory::load(path, &text, &schema)
    else {
        panic!("the bundled directory loads");
    };
    let at_once = cedar_policy::Entities::from_entities(unchecked, Some(&schema)).unwrap();
    let checked = zenml_authz::directory::checked_entities(path, &text, &schema).unwrap();
    let one_by_one = cedar_policy::Entities::from_entities(checked, None).unwrap();
    assert_eq!(at_once.len(), one_by_one.len());
    assert!(
        common::store_json(&at_once) == common::store_json(&one_by_one),
        "the stores differ"
    );
    assert!(zenml_authz::directory::schema_errors(path, &text, &schema).is_empty());
}
