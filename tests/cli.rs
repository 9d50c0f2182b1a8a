//! The policy-authoring commands, driven as the real binary on the bundled sources and on
//! fixtures: `authorize`, `who-can`, `what-can`, `fmt`, `export`, `validate`'s warnings, and the README's
//! "Writing policies" examples.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

#[path = "common/cli.rs"]
mod cli;

use cli::Run;
use std::path::{Path, PathBuf};

const CHURN: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
const PRODUCTION: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
const STAGING: &str = "d5320975-d92d-4b35-9413-9b848998b5bf";
const BOB: &str = "8a5e8598-b203-4344-948f-32f6cd6c6e30";
const DAVE: &str = "9a1b418a-a4d7-49df-aa12-860e622a068d";
const FRANK: &str = "4dba2e0e-f2cf-4f5c-a551-f4a184c52b13";
const PIPELINE: &str = "11111111-1111-4111-8111-111111111111";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `zenml-authz <args>` in `dir` (where `policies/` and `schemas/` are).
fn run_in(dir: &Path, args: &[&str]) -> Run {
    cli::run(
        cli::zenml_authz()
            .current_dir(dir)
            .args(args)
            .env_remove("ZENML_AUTHZ_SHARES_DB"),
    )
}

/// Runs on the bundled sources.
fn run(args: &[&str]) -> Run {
    run_in(&root(), args)
}

/// A copy of the bundled schemas and policies in a temporary directory.
fn copy_sources() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["schemas", "policies"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        for entry in std::fs::read_dir(root().join(sub)).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(sub).join(entry.file_name())).unwrap();
        }
    }
    dir
}

/// Replaces the first `find` in `dir/file` by `replace`.
fn edit(dir: &Path, file: &str, find: &str, replace: &str) {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(find), "fixture: `{find}` not in {file}");
    std::fs::write(&path, text.replacen(find, replace, 1)).unwrap();
}

/// 1-based line of the first line of `dir/file` containing `needle`.
fn line_of(dir: &Path, file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(dir.join(file)).unwrap();
    text.lines()
        .position(|line| line.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` not in {file}"))
        + 1
}

/// `<id> (policies/<file>:<line>)` for a bundled policy.
fn policy(id: &str, file: &str) -> String {
    let line = line_of(&root(), &format!("policies/{file}"), &format!("@id(\"{id}\")"));
    format!("{id} (policies/{file}:{line})")
}

// ---- authorize -------------------------------------------------------------------------

#[test]
fn authorize_in_zenml_terms_allows_with_the_determining_policy_and_its_text() {
    let resource = format!("churn:pipeline/{PIPELINE}");
    let out = run(&[
        "authorize",
        "--user",
        "bob",
        "--action",
        "read",
        "--resource",
        &resource,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[..6],
        [
            "ALLOW".to_owned(),
            format!("principal: ZenML::User::\"{BOB}\" (user bob)"),
            "action: ZenML::Action::\"read\"".to_owned(),
            format!("resource: ZenML::Pipeline::\"{PIPELINE}\" ({resource})"),
            format!("workspace: production ({PRODUCTION})"),
            "determining policies:".to_owned(),
        ],
        "{out:?}"
    );
    assert_eq!(
        lines[6],
        format!("  {}", policy("workspace-developer", "workspace.cedar"))
    );
    // The policy's text, as written, indented under it.
    assert_eq!(lines[7], "    @id(\"workspace-developer\")");
    assert!(
        lines.contains(&"    when { principal in resource.workspace.developers }"),
        "{out:?}"
    );
    assert_eq!(lines.last(), Some(&"errors: none"));
    assert_eq!(out.stderr, "");
}

#[test]
fn authorize_denies_with_exit_1_and_names_a_forbid() {
    let out = run(&[
        "authorize",
        "--user",
        "grace",
        "--action",
        "read",
        "--resource",
        "project/churn",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.starts_with("DENY\n"), "{out:?}");
    assert!(
        out.stdout.contains(&format!(
            "resource: ZenML::Project::\"{CHURN}\" (project/churn)\n"
        )),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("determining policies: none (no permit applies)\nerrors: none\n"),
        "{out:?}"
    );

    // Mallory is deactivated: the forbid decides, and is shown with its text.
    let out = run(&[
        "authorize",
        "--user",
        "mallory",
        "--action",
        "read",
        "--resource",
        "stack",
        "--workspace",
        "production",
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    let expected = format!(
        "determining policies:\n  {}\n    @id(\"deactivated-principal\")\n    @required(\"deactivated accounts must always be denied\")\n    forbid (principal, action, resource)\n    unless {{ principal.active }};\nerrors: none\n",
        policy("deactivated-principal", "service_accounts.cedar")
    );
    assert!(out.stdout.ends_with(&expected), "{out:?}");
}

#[test]
fn authorize_resolves_users_projects_and_workspaces_by_name_or_id() {
    // The user by id, the project by UUID, the service account by name.
    for (user, resource) in [
        (DAVE, format!("{CHURN}:pipeline")),
        ("dave", format!("project/{CHURN}")),
        ("ci-bot", "churn:pipeline_run".to_owned()),
        ("ci-bot", "production/churn:pipeline_run".to_owned()),
    ] {
        let out = run(&[
            "authorize",
            "--user",
            user,
            "--action",
            "create",
            "--resource",
            &resource,
        ]);
        let expect = if resource.starts_with("project/") { 1 } else { 0 };
        assert_eq!(out.code, expect, "{user} {resource}: {out:?}");
        assert!(
            out.stdout
                .contains(&format!("workspace: production ({PRODUCTION})")),
            "{out:?}"
        );
    }
    // A workspace named explicitly that the project is not in: a deny before evaluation.
    let out = run(&[
        "authorize",
        "--user",
        "dave",
        "--action",
        "read",
        "--resource",
        "churn:pipeline",
        "--workspace",
        STAGING,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stdout.contains(&format!(
        "errors:\n  denied before evaluation: project `{CHURN}` belongs to another workspace\n"
    )));
}

#[test]
fn authorize_in_cedar_terms_takes_context_and_entities() {
    let entities = format!(
        r#"[{{"uid": {{"type": "ZenML::Model", "id": "m1"}}, "attrs": {{"workspace": {{"__entity": {{"type": "ZenML::Workspace", "id": "{PRODUCTION}"}}}}, "project": {{"__entity": {{"type": "ZenML::Project", "id": "{CHURN}"}}}}}}, "parents": [{{"type": "ZenML::Project", "id": "{CHURN}"}}]}}]"#
    );
    let context =
        format!(r#"{{"permissions": [{{"type": "ZenML::Role", "id": "{CHURN}/model-promoter"}}]}}"#);
    let principal = format!("ZenML::User::\"{FRANK}\"");
    let dir = tempfile::tempdir().unwrap();
    let entities_file = dir.path().join("entities.json");
    std::fs::write(&entities_file, &entities).unwrap();
    let from_file = format!("@{}", entities_file.display());
    for entities in [entities.as_str(), from_file.as_str()] {
        let out = run(&[
            "authorize",
            "--principal",
            &principal,
            "--action",
            "ZenML::Action::\"promote\"",
            "--resource",
            "ZenML::Model::\"m1\"",
            "--entities",
            entities,
            "--context",
            &context,
        ]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.stdout.lines().take(6).collect::<Vec<_>>(),
            [
                "ALLOW",
                &format!("principal: {principal} (frank)"),
                "action: ZenML::Action::\"promote\"",
                "resource: ZenML::Model::\"m1\"",
                "determining policies:",
                &format!("  {}", policy("custom-role-grid", "custom_roles.cedar")),
            ]
        );
    }
    // Without the context the grid cell is not there: deny. A bare action name is a ZenML action.
    let out = run(&[
        "authorize",
        "--principal",
        &principal,
        "--action",
        "promote",
        "--resource",
        "ZenML::Model::\"m1\"",
        "--entities",
        &entities,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
}

#[test]
fn authorize_in_cedar_terms_reports_evaluation_errors_and_unknown_entities() {
    let project = format!("ZenML::Project::\"{CHURN}\"");
    let out = run(&[
        "authorize",
        "--principal",
        "ZenML::User::\"dave\"",
        "--action",
        "read",
        "--resource",
        &project,
    ]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stdout.contains(
            "errors:\n  error while evaluating policy `deactivated-principal`: entity `ZenML::User::\"dave\"` does not exist\n"
        ),
        "{out:?}"
    );
    assert!(
        out.stdout.ends_with(&format!(
            "note: principal `ZenML::User::\"dave\"` is not in the directory (`dave` is `ZenML::User::\"{DAVE}\"`)\n"
        )),
        "{out:?}"
    );
}

#[test]
fn authorize_errors_exit_4_naming_the_bad_input() {
    let table: [(&[&str], &str); 9] = [
        (
            &["--user", "zed", "--action", "read", "--resource", "stack"],
            "error: unknown user `zed`",
        ),
        (
            &["--user", "bob", "--action", "fly", "--resource", "churn:pipeline"],
            "error: unknown action `fly` (one of create, read,",
        ),
        (
            &["--user", "bob", "--action", "read", "--resource", "nope:pipeline"],
            "error: resource `nope:pipeline`: unknown project `nope`",
        ),
        (
            &["--user", "bob", "--action", "read", "--resource", "churn:widget"],
            "error: resource `churn:widget`: unknown resource type `widget`",
        ),
        (
            &["--user", "bob", "--action", "read", "--resource", "stack/x"],
            "error: resource `stack/x`: `x` is not a UUID",
        ),
        (
            &["--user", "bob", "--action", "read", "--resource", "stack"],
            "error: the directory has 2 workspaces (production, staging): name one with `--workspace`",
        ),
        (
            &[
                "--user",
                "bob",
                "--action",
                "read",
                "--resource",
                "stack",
                "--workspace",
                "qa",
            ],
            "error: unknown workspace `qa`",
        ),
        (
            &[
                "--principal",
                "ZenML::User::\"x\"",
                "--action",
                "read",
                "--resource",
                "ZenML::Stack::\"s\"",
                "--context",
                "{oops",
            ],
            "error: `--context`: not JSON:",
        ),
        (
            &[
                "--principal",
                "ZenML::Userr::\"x\"",
                "--action",
                "read",
                "--resource",
                "ZenML::Stack::\"s\"",
            ],
            "error: principal: unknown entity type `ZenML::Userr`",
        ),
    ];
    for (args, message) in table {
        let out = run(&[&["authorize"], args].concat());
        assert_eq!(out.code, 4, "{args:?}: {out:?}");
        assert!(out.stderr.starts_with(message), "{args:?}: {out:?}");
        assert_eq!(out.stdout, "", "{args:?}");
    }
    // Exactly one of --principal and --user: a usage error (clap's 2).
    for args in [
        &["--action", "read", "--resource", "stack"][..],
        &[
            "--user",
            "bob",
            "--principal",
            "ZenML::User::\"x\"",
            "--action",
            "read",
            "--resource",
            "stack",
        ],
    ] {
        let out = run(&[&["authorize"], args].concat());
        assert_eq!(out.code, 2, "{out:?}");
    }
}

#[test]
fn authorize_on_invalid_sources_is_an_error_not_a_deny() {
    let dir = copy_sources();
    edit(
        dir.path(),
        "policies/project.cedar",
        "resource.project.viewers",
        "resource.project.watchers",
    );
    let out = run_in(
        dir.path(),
        &[
            "authorize",
            "--user",
            "bob",
            "--action",
            "read",
            "--resource",
            "stack",
        ],
    );
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("error: policies/project.cedar:"), "{out:?}");
    assert!(out.stderr.contains("the policy sources are invalid"), "{out:?}");
}

#[test]
fn help_documents_the_exit_codes() {
    let out = run(&["authorize", "--help"]);
    assert_eq!(out.code, 0);
    let help = out.stdout.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("Exit codes: 0 ALLOW, 1 DENY, 4 error"), "{help}");
    for command in ["who-can", "what-can", "fmt", "export"] {
        let out = run(&[command, "--help"]);
        assert!(out.stdout.contains("Exit codes:"), "{command}: {out:?}");
    }
}

// ---- who-can -------------------------------------------------------------------------------

#[test]
fn who_can_lists_users_then_teams_sorted_one_line_each() {
    let out = run(&[
        "who-can",
        "--action",
        "delete",
        "--resource",
        "stack",
        "--workspace",
        "production",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let admin = policy("org-admin", "organization.cedar");
    let stack_admin = policy("workspace-stack-admin", "workspace.cedar");
    assert_eq!(
        out.stdout,
        format!(
            "who can delete stack in workspace production: 2 of 15 users and service accounts, 1 of 3 teams\n\
             user            ada      {admin}\n\
             user            erin     {stack_admin}\n\
             team            platform {stack_admin}\n"
        )
    );
}

#[test]
fn who_can_finds_workspace_project_and_custom_role_holders() {
    let out = run(&["who-can", "--action", "read", "--resource", "churn:pipeline"]);
    assert_eq!(out.code, 0, "{out:?}");
    let names: Vec<(&str, &str)> = out
        .stdout
        .lines()
        .skip(1)
        .map(|line| {
            let mut words = line.split_whitespace();
            (words.next().unwrap(), words.next().unwrap())
        })
        .collect();
    assert_eq!(
        names,
        [
            ("user", "ada"),
            ("user", "bob"),
            ("user", "carol"),
            ("service-account", "ci-bot"),
            ("user", "dave"),
            ("service-account", "deployer"),
            ("user", "frank"),
            ("user", "nina"),
            ("team", "auditors"),
            ("team", "ml-eng"),
        ],
        "{out:?}"
    );
    // Frank's custom role: its base viewer reads; promoting is the grid's.
    assert!(out.stdout.contains(&format!(
        "user            frank    {}\n",
        policy("project-viewer", "project.cedar")
    )));
    let out = run(&["who-can", "--action", "promote", "--resource", "churn:model"]);
    assert!(
        out.stdout.ends_with(&format!(
            "user            frank {}\n",
            policy("custom-role-grid", "custom_roles.cedar")
        )),
        "{out:?}"
    );
    // Errors like authorize's.
    let out = run(&["who-can", "--action", "read", "--resource", "nope:pipeline"]);
    assert_eq!(out.code, 4, "{out:?}");
}

#[test]
fn shares_from_the_share_database_count_for_authorize_and_who_can() {
    use zenml_authz::store::{ShareStore, SqliteShareStore, StoredShare};
    use zenml_authz::zenml::Grantee;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("shares.db");
    let grace = "7c43a64e-c811-4df9-a0f1-9b1a74220e53";
    let resource = format!("{CHURN}:pipeline/{PIPELINE}");
    SqliteShareStore::open(&db)
        .unwrap()
        .set(
            &StoredShare {
                workspace: PRODUCTION.to_owned(),
                resource: resource.clone(),
                grantee: Grantee::User(grace.to_owned()),
                actions: vec!["read".to_owned()],
            },
            Some(BOB),
        )
        .unwrap();
    let db = db.to_str().unwrap();
    let ask = |extra: &[&str]| {
        run(&[
            &[
                "authorize",
                "--user",
                "grace",
                "--action",
                "read",
                "--resource",
                &resource,
            ][..],
            extra,
        ]
        .concat())
    };
    assert_eq!(ask(&[]).code, 1);
    let out = ask(&["--shares-db", db]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("  {}\n", policy("share-user", "sharing.cedar"))),
        "{out:?}"
    );
    let out = run(&[
        "who-can",
        "--action",
        "read",
        "--resource",
        &resource,
        "--shares-db",
        db,
    ]);
    assert!(
        out.stdout.contains("\nuser            grace    share-user ("),
        "{out:?}"
    );
    // A database that is not there is an error, not an empty one.
    let out = ask(&["--shares-db", "no/such.db"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(
        out.stderr.contains("share database `no/such.db`: no such file"),
        "{out:?}"
    );
}

// ---- what-can ------------------------------------------------------------------------------

#[test]
fn what_can_shows_bindings_and_a_grid_per_scope() {
    let out = run(&["what-can", "--user", "judy"]);
    assert_eq!(out.code, 0, "{out:?}");
    let viewer = line_of(
        &root(),
        "policies/directory.yaml",
        "{user: judy, role: viewer, project: fraud}",
    );
    let reader = line_of(
        &root(),
        "policies/directory.yaml",
        "{user: judy, role: secret-reader, workspace: production}",
    );
    assert_eq!(
        out.stdout,
        format!(
            "judy: user 59c64f49-e3c0-4459-a355-5fffaa113276; teams: none\n\
             bindings:\n\
             \x20 viewer at project fraud (production) (policies/directory.yaml:{viewer})\n\
             \x20 secret-reader (custom role) at workspace production (policies/directory.yaml:{reader})\n\
             workspace production:\n\
             \x20 secret               read read_secret_value\n\
             project churn (production): nothing\n\
             project fraud (production):\n\
             \x20 every type: read\n\
             workspace staging: nothing\n\
             project sandbox (staging): nothing\n"
        )
    );
}

#[test]
fn what_can_includes_team_bindings_and_deactivation() {
    let out = run(&["what-can", "--user", "bob", "--workspace", "production"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with("bob: user 8a5e8598-b203-4344-948f-32f6cd6c6e30; teams: ml-eng\nbindings:\n"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("  developer at workspace production, through team ml-eng (policies/directory.yaml:"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("  stack                create read update\n"),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("  service_connector    create read client\n"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("staging"), "{out:?}");

    let out = run(&["what-can", "--user", "ada"]);
    assert_eq!(out.stdout.matches("  every type: all\n").count(), 5, "{out:?}");

    let out = run(&["what-can", "--user", "mallory"]);
    assert!(
        out.stdout.lines().next().unwrap().contains(", deactivated;"),
        "{out:?}"
    );
    assert!(!out.stdout.contains("every type"), "{out:?}");

    let out = run(&["what-can", "--user", "zed"]);
    assert_eq!(out.code, 4, "{out:?}");
}

// ---- fmt -----------------------------------------------------------------------------------

const UNFORMATTED: &str = "// Header comment.\n\n// Viewers read.\n@id(\"viewers-read\")\npermit(principal,action==ZenML::Action::\"read\",resource) // trailing\nwhen {principal in resource.workspace.viewers};\n";

#[test]
fn fmt_check_names_the_files_and_fmt_rewrites_them_idempotently() {
    let dir = copy_sources();
    let policies = dir.path().join("policies");
    for entry in std::fs::read_dir(&policies).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "cedar") {
            std::fs::remove_file(path).unwrap();
        }
    }
    std::fs::create_dir_all(policies.join("extra")).unwrap();
    std::fs::write(policies.join("extra/viewers.cedar"), UNFORMATTED).unwrap();
    // Hidden files (editor swap files) are not touched.
    std::fs::write(policies.join(".swap.cedar"), UNFORMATTED).unwrap();

    let out = run_in(dir.path(), &["fmt", "--check"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(
        out.stdout,
        "would reformat policies/extra/viewers.cedar\n1 of 1 file(s) would be reformatted\n"
    );
    assert_eq!(
        std::fs::read_to_string(policies.join("extra/viewers.cedar")).unwrap(),
        UNFORMATTED,
        "--check changes nothing"
    );

    let out = run_in(dir.path(), &["fmt"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "formatted policies/extra/viewers.cedar\n1 of 1 file(s) reformatted\n"
    );
    let once = std::fs::read(policies.join("extra/viewers.cedar")).unwrap();
    let text = String::from_utf8(once.clone()).unwrap();
    for kept in [
        "// Header comment.",
        "// Viewers read.",
        "@id(\"viewers-read\")",
        "// trailing",
    ] {
        assert!(text.contains(kept), "{kept} lost:\n{text}");
    }
    assert!(text.contains("permit (\n  principal,\n"), "{text}");

    // Idempotent: the second run changes no byte, and --check is clean.
    let out = run_in(dir.path(), &["fmt"]);
    assert_eq!(out.stdout, "0 of 1 file(s) reformatted\n", "{out:?}");
    assert_eq!(std::fs::read(policies.join("extra/viewers.cedar")).unwrap(), once);
    let out = run_in(dir.path(), &["fmt", "--check", "policies/extra"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        std::fs::read_to_string(policies.join(".swap.cedar")).unwrap(),
        UNFORMATTED
    );
}

#[test]
fn fmt_on_the_bundled_policies_keeps_every_decision() {
    let dir = copy_sources();
    let out = run_in(dir.path(), &["fmt"]);
    assert_eq!(out.code, 0, "{out:?}");
    let out = run_in(dir.path(), &["fmt", "--check"]);
    assert_eq!(out.code, 0, "{out:?}");
    for file in std::fs::read_dir(root().join("policies")).unwrap() {
        let file = file.unwrap().path();
        if file.extension().is_some_and(|e| e == "cedar") {
            let before = std::fs::read_to_string(&file).unwrap();
            let after =
                std::fs::read_to_string(dir.path().join("policies").join(file.file_name().unwrap())).unwrap();
            let comments = |text: &str| -> Vec<String> {
                text.lines()
                    .filter_map(|l| l.find("//").map(|at| l[at..].trim().to_owned()))
                    .collect()
            };
            assert_eq!(comments(&before), comments(&after), "{}", file.display());
        }
    }
    let out = run_in(dir.path(), &["validate"]);
    assert_eq!(out.code, 0, "{out:?}");
    let decisions = root().join("tests/decisions");
    let out = run_in(dir.path(), &["test", decisions.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.ends_with(" passed, 0 failed\n"), "{out:?}");
}

#[test]
fn fmt_refuses_files_that_do_not_parse_and_missing_paths() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("good.cedar"), UNFORMATTED).unwrap();
    std::fs::write(
        dir.path().join("bad.cedar"),
        "permit (principal, action resource);\n",
    )
    .unwrap();
    let out = run_in(dir.path(), &["fmt", "bad.cedar", "good.cedar", "missing"]);
    assert_eq!(out.code, 4, "{out:?}");
    assert!(out.stderr.contains("error: bad.cedar:1:"), "{out:?}");
    assert!(out.stderr.contains("cannot format: "), "{out:?}");
    assert!(
        out.stderr.contains("error: missing: no such file or directory"),
        "{out:?}"
    );
    // The good file is still formatted; the bad one is left as it was.
    assert_eq!(
        out.stdout, "formatted good.cedar\n1 of 2 file(s) reformatted\n",
        "{out:?}"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("bad.cedar")).unwrap(),
        "permit (principal, action resource);\n"
    );
}

// ---- export ---------------------------------------------------------------------------------

#[test]
fn export_writes_entities_policies_and_schema_with_every_policy_id() {
    let dir = copy_sources();
    // A policy without `@id` is exported under its sidecar id, `file:index`.
    std::fs::write(
        dir.path().join("policies/extra.cedar"),
        "permit (principal, action == ZenML::Action::\"read\", resource is ZenML::Stack)\nwhen { principal.is_service_account };\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    let out_run = run_in(dir.path(), &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(out_run.code, 0, "{out_run:?}");
    assert!(out_run.stdout.starts_with("exported "), "{out_run:?}");
    assert!(
        out_run
            .stdout
            .contains(" entities, 20 policies and the schema to "),
        "{out_run:?}"
    );

    let policies = std::fs::read_to_string(out.join("policies.cedar")).unwrap();
    let ids: Vec<&str> = policies
        .lines()
        .filter_map(|line| line.strip_prefix("@id(\"")?.strip_suffix("\")"))
        .collect();
    assert_eq!(ids.len(), 20, "{policies}");
    assert!(ids.contains(&"extra.cedar:0"), "{policies}");
    // Every bundled policy, under the `@id` it was written with.
    for entry in std::fs::read_dir(root().join("policies")).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        for id in text
            .lines()
            .filter_map(|line| line.strip_prefix("@id(\"")?.strip_suffix("\")"))
        {
            assert!(ids.contains(&id), "`{id}` missing from {policies}");
        }
    }
    assert!(policies.contains(&format!(
        "// {}:1\n",
        Path::new("policies").join("extra.cedar").display()
    )));

    let schema = std::fs::read_to_string(out.join("schema.cedarschema")).unwrap();
    assert_eq!(
        schema,
        std::fs::read_to_string(root().join("schemas/zenml.cedarschema")).unwrap()
    );
    let entities: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("entities.json")).unwrap()).unwrap();
    let uids: Vec<String> = entities
        .as_array()
        .unwrap()
        .iter()
        .map(|entity| format!("{}::{}", entity["uid"]["type"], entity["uid"]["id"]))
        .collect();
    assert!(uids.iter().any(|uid| uid.contains(BOB)), "{uids:?}");
    assert!(
        !uids.iter().any(|uid| uid.contains("Action")),
        "actions come from the schema: {uids:?}"
    );
    // Nothing but the directory: no stand-in resources (no entity of a resource type).
    assert!(
        !uids.iter().any(|uid| uid.starts_with("\"ZenML::Pipeline\"")),
        "{uids:?}"
    );

    // The entities, served as a Cedar entities JSON directory, export to the same file.
    let again = dir.path().join("again");
    let out_run = run_in(
        dir.path(),
        &[
            "export",
            "--directory",
            out.join("entities.json").to_str().unwrap(),
            "--out",
            again.to_str().unwrap(),
        ],
    );
    assert_eq!(out_run.code, 0, "{out_run:?}");
    assert_eq!(
        std::fs::read_to_string(again.join("entities.json")).unwrap(),
        std::fs::read_to_string(out.join("entities.json")).unwrap()
    );
}

#[test]
fn export_exits_1_on_invalid_sources_and_4_when_it_cannot_write() {
    let dir = copy_sources();
    edit(dir.path(), "policies/workspace.cedar", "permit", "permit permit");
    let out = dir.path().join("out");
    let out_run = run_in(dir.path(), &["export", "--out", out.to_str().unwrap()]);
    assert_eq!(out_run.code, 1, "{out_run:?}");
    assert!(out_run.stderr.contains("error: "), "{out_run:?}");
    assert!(!out.exists(), "nothing is written from invalid sources");

    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let out_run = run(&["export", "--out", file.to_str().unwrap()]);
    assert_eq!(out_run.code, 4, "{out_run:?}");
    assert!(out_run.stderr.starts_with("error: "), "{out_run:?}");
}

// ---- validate warnings ----------------------------------------------------------------------

#[test]
fn validate_warns_about_unused_roles_empty_teams_and_bindings_without_effect() {
    let dir = copy_sources();
    let d = dir.path();
    let directory = "policies/directory.yaml";
    edit(
        d,
        directory,
        "teams:\n",
        "teams:\n  - id: 0e5f5a39-3e3c-4d6e-9f57-6f1f3a1b2c3d\n    name: nobody\n",
    );
    edit(
        d,
        directory,
        "bindings:\n",
        "  - name: unused-role\n    scope: project\n    base: viewer\n  - name: hollow\n    scope: workspace\n\nbindings:\n",
    );
    let text = std::fs::read_to_string(d.join(directory)).unwrap();
    std::fs::write(
        d.join(directory),
        format!(
            "{text}  - {{user: dave, role: developer, project: churn}}   # duplicate\n  - {{user: grace, role: hollow, workspace: production}}   # grants nothing\n  - {{user: bob, role: viewer, workspace: production}}   # bob develops there through ml-eng\n"
        ),
    )
    .unwrap();
    std::fs::write(
        d.join("policies/pinned.cedar"),
        "@id(\"pin-alice\")\npermit (principal == ZenML::User::\"alice\", action, resource);\n",
    )
    .unwrap();

    let out = run_in(d, &["validate"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("valid: "), "{out:?}");
    let at = |needle: &str| line_of(d, directory, needle);
    let dave = at("{user: dave, role: developer, project: churn}");
    let expected = [
        format!(
            "warning: {directory}:{}:5: teams[0] `nobody`: the team has no members, so its bindings and shares reach nobody",
            at("name: nobody") - 1
        ),
        format!(
            "warning: {directory}:{}:5: roles[2] `unused-role`: unused role: no binding uses it",
            at("name: unused-role")
        ),
        format!(
            "warning: {directory}:{}:5: bindings[6]: no effect: `carol` already has everything role `viewer` at workspace production grants, through other bindings or teams (auditors)",
            at("{user: carol, role: viewer, workspace: production}")
        ),
        format!(
            "warning: {directory}:{}:5: bindings[20]: no effect: the same holder, role and scope as bindings[7]",
            at("# duplicate")
        ),
        format!(
            "warning: {directory}:{}:5: bindings[21]: no effect: role `hollow` at workspace production grants nothing under the current policies",
            at("# grants nothing")
        ),
        format!(
            "warning: {directory}:{}:5: bindings[22]: no effect: `bob` already has everything role `viewer` at workspace production grants, through other bindings or teams (ml-eng)",
            at("# bob develops")
        ),
        "warning: policies/pinned.cedar:1:1: policy `pin-alice` names `ZenML::User::\"alice\"`, which is not in the directory: a condition on it can never match".to_owned(),
    ];
    assert!(dave < at("# duplicate"));
    let got: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(got, expected, "{out:?}");
}

#[test]
fn validate_on_the_bundled_sources_has_only_warnings() {
    let out = run(&["validate"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("valid: "), "{out:?}");
    assert!(
        out.stderr.lines().all(|line| line.starts_with("warning: ")),
        "{out:?}"
    );
}

// ---- README ----------------------------------------------------------------------------------

/// `$ zenml-authz ...` lines of the README's "Writing policies" console blocks, each with the
/// output shown under it.
fn readme_examples() -> Vec<(Vec<String>, String)> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let start = readme
        .find("## Writing policies")
        .expect("a Writing policies section");
    let section = &readme[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |end| end + 3)];
    let mut examples = Vec::new();
    for block in section.split("```console\n").skip(1) {
        let block = &block[..block.find("```").unwrap()];
        let mut current: Option<(Vec<String>, String)> = None;
        for line in block.lines() {
            if let Some(command) = line.strip_prefix("$ zenml-authz ") {
                examples.extend(current.take());
                current = Some((shell_words(command), String::new()));
            } else if let Some((_, output)) = current.as_mut() {
                output.push_str(line);
                output.push('\n');
            }
        }
        examples.extend(current);
    }
    examples
}

/// Splits a command line like a POSIX shell for the quoting the README uses.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, ' ') => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            (None, c) => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

#[test]
fn the_readme_examples_print_what_the_readme_shows() {
    let examples = readme_examples();
    assert!(examples.len() >= 3, "found {} examples", examples.len());
    for (args, shown) in examples {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = run(&args);
        assert!(out.code == 0 || out.code == 1, "{args:?}: {out:?}");
        assert_eq!(
            out.stdout,
            shown,
            "README example `zenml-authz {}`",
            args.join(" ")
        );
    }
}
