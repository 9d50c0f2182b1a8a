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
#[path = "common/zenml_server.rs"]
mod zenml_server;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy as _;
use serde_json::json;
use zenml_authz::authoring::{State, compare};
use zenml_authz::directory::replace_project_ids;
use zenml_authz::zenml_client;
use zenml_server::ZenmlServer;

const CHURN: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
const NEW: &str = "e1c2695c-2f63-495c-a668-6b986b74218b";
/// The id of a ZenML server's `default` project.
const DEFAULT_PROJECT: &str = "0b9ebfad-71b7-4aea-a675-167358e2af64";

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

/// The sample directory's ids of the production projects, before the sync.
const SAMPLE_CHURN: &str = CHURN;
const SAMPLE_FRAUD: &str = "45f60d6d-243d-4e8e-8b96-0ae5e16357de";

/// Whether `stdout` has a line whose words are `words` (a table row).
fn has_row(stdout: &str, words: &str) -> bool {
    let wanted: Vec<&str> = words.split_whitespace().collect();
    stdout
        .lines()
        .any(|line| line.split_whitespace().collect::<Vec<_>>() == wanted)
}

/// The first line where `actual` differs from `expected`, for a short failure message.
fn first_difference(expected: &str, actual: &str) -> String {
    let mut actual_lines = actual.lines();
    for (number, wanted) in expected.lines().enumerate() {
        let got = actual_lines.next();
        if got != Some(wanted) {
            return format!("line {}: expected {wanted:?}, found {got:?}", number + 1);
        }
    }
    format!(
        "extra or missing bytes at the end: {:?}",
        actual.get(expected.len()..)
    )
}

fn text(output: &Output) -> String {
    format!(
        "exit {:?}\n{}\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn project_ids_are_synced_from_a_real_zenml_server_and_bind_the_project_role() {
    let venv = zenml_server::venv();
    let sources = common::copy_sources();
    let policies = sources.path().join("policies");
    let schemas = sources.path().join("schemas");
    let directory = policies.join("directory.yaml");
    let original = std::fs::read_to_string(&directory).unwrap();
    let sidecar = common::Server::start_with(&policies, &schemas, &directory, &[]);
    let work = tempfile::tempdir().unwrap();
    let zenml = ZenmlServer::start(&venv, &sidecar.base, work.path());

    // The organization admin creates the projects; ZenML picks their ids.
    let ada = zenml.login("ada");
    let mut ids = BTreeMap::new();
    for name in ["churn", "fraud"] {
        let body = json!({"name": name, "description": format!("{name} models")});
        let (status, project) = zenml.request("POST", "/api/v1/projects", &ada, Some(&body));
        assert_eq!(status, 200, "create project {name}: {project}");
        ids.insert(name, project["id"].as_str().unwrap().to_owned());
    }
    let (churn, fraud) = (ids["churn"].as_str(), ids["fraud"].as_str());
    assert_ne!(churn, SAMPLE_CHURN);

    // dave is a project developer on the directory's `churn`, which is not ZenML's yet.
    let dave = zenml.login("dave");
    let create_pipeline = |name: &str, project: &str| {
        let body = json!({"name": name, "project": project});
        zenml.request("POST", "/api/v1/pipelines", &dave, Some(&body))
    };
    let (status, body) = create_pipeline("before-sync", churn);
    assert_eq!(status, 403, "dave, before the sync: {body}");

    let key_file = work.path().join("ada.key");
    std::fs::write(&key_file, format!("{}\n", zenml_server::api_key("ada"))).unwrap();
    let run = |key_file: &Path, extra: &[&str]| -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_zenml-authz"));
        for (key, _) in std::env::vars() {
            if key.starts_with("ZENML_AUTHZ_") {
                command.env_remove(key);
            }
        }
        command
            .arg("zenml-projects")
            .args(["--zenml-url", &zenml.url, "--workspace", "production"])
            .arg("--api-key-file")
            .arg(key_file)
            .arg("--policies")
            .arg(&policies)
            .arg("--schemas")
            .arg(&schemas)
            .arg("--directory")
            .arg(&directory)
            .args(extra)
            .output()
            .unwrap()
    };

    // A key ZenML refuses (on both login forms) is an error, not a difference.
    let bad_key = work.path().join("bad.key");
    std::fs::write(&bad_key, "ZENPROKEY_nobody_00000000000000000000000000000000").unwrap();
    let refused = run(&bad_key, &[]);
    assert_eq!(refused.status.code(), Some(4), "{}", text(&refused));
    assert!(
        text(&refused).contains("refused the API key"),
        "{}",
        text(&refused)
    );

    // The table: both ids differ, ZenML's own `default` project is only in ZenML.
    let first = run(&key_file, &[]);
    let stdout = String::from_utf8_lossy(&first.stdout).into_owned();
    assert_eq!(first.status.code(), Some(1), "{}", text(&first));
    assert!(
        has_row(&stdout, "PROJECT ZENML ID DIRECTORY ID STATE"),
        "{stdout}"
    );
    assert!(
        has_row(&stdout, &format!("churn {churn} {SAMPLE_CHURN} id differs")),
        "{stdout}"
    );
    assert!(
        has_row(&stdout, &format!("fraud {fraud} {SAMPLE_FRAUD} id differs")),
        "{stdout}"
    );
    let default_row = |line: &str| {
        let words: Vec<&str> = line.split_whitespace().collect();
        words.len() == 6 && words[0] == "default" && words[2..] == ["-", "only", "in", "ZenML"]
    };
    assert!(stdout.lines().any(default_row), "{stdout}");
    assert!(
        stdout.contains("    name: default\n    workspace: production\n"),
        "{stdout}"
    );
    assert_eq!(
        std::fs::read_to_string(&directory).unwrap(),
        original,
        "no --write, no change"
    );

    // --write: the two ids, and not one other byte.
    let before = sidecar.get("/v1/status").1["revision"].clone();
    let written = run(&key_file, &["--write"]);
    assert_eq!(written.status.code(), Some(0), "{}", text(&written));
    let expected = original.replace(SAMPLE_CHURN, churn).replace(SAMPLE_FRAUD, fraud);
    let actual = std::fs::read_to_string(&directory).unwrap();
    assert!(actual == expected, "{}", first_difference(&expected, &actual));

    // A second run finds everything in place.
    let second = run(&key_file, &[]);
    let stdout = String::from_utf8_lossy(&second.stdout).into_owned();
    assert_eq!(second.status.code(), Some(0), "{}", text(&second));
    assert!(
        has_row(&stdout, &format!("churn {churn} {churn} matches")),
        "{stdout}"
    );
    assert!(
        has_row(&stdout, &format!("fraud {fraud} {fraud} matches")),
        "{stdout}"
    );

    // The sidecar reloads the file it watches; dave's role now holds on ZenML's churn, and
    // only there.
    let deadline = Instant::now() + Duration::from_secs(60);
    while sidecar.get("/v1/status").1["revision"] == before {
        assert!(
            Instant::now() < deadline,
            "the sidecar did not reload the directory"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, body) = create_pipeline("after-sync", churn);
    assert_eq!(status, 200, "dave, after the sync: {body}");
    let (status, body) = create_pipeline("not-his-project", fraud);
    assert_eq!(status, 403, "dave in fraud: {body}");
}

/// The bundled directory's production projects (churn, fraud) against a ZenML project list.
fn compared(zenml: &[(&str, &str)]) -> Vec<(String, State)> {
    let snapshot = common::bundled_snapshot();
    let directory = snapshot.directory().unwrap();
    let production = directory.find_workspace("production").unwrap();
    let projects: Vec<zenml_client::Project> = zenml
        .iter()
        .map(|(name, id)| zenml_client::Project {
            id: (*id).to_owned(),
            name: (*name).to_owned(),
        })
        .collect();
    compare(directory, production, &projects)
        .into_iter()
        .map(|row| (row.name, row.state))
        .collect()
}

#[test]
fn projects_match_by_name_then_by_id() {
    let renamed = State::NameDiffers {
        zenml_name: "fraud-v2".into(),
    };
    assert_eq!(
        compared(&[
            ("churn", SAMPLE_CHURN),
            ("fraud-v2", SAMPLE_FRAUD),
            ("extra", NEW)
        ]),
        [
            ("churn".to_owned(), State::Matches),
            ("extra".to_owned(), State::OnlyInZenml),
            ("fraud".to_owned(), renamed),
        ]
    );
    assert_eq!(
        compared(&[
            ("churn", NEW),
            ("sandbox", "42f33105-edf6-4bee-8385-c589bb25ded0")
        ]),
        [
            ("churn".to_owned(), State::IdDiffers),
            ("fraud".to_owned(), State::OnlyInDirectory),
            // The staging workspace's project of that name is another workspace's.
            ("sandbox".to_owned(), State::OnlyInZenml),
        ]
    );
}

/// A stand-in for a ZenML server at `127.0.0.1:<port>` that, like ZenML 0.80, refuses the
/// form login and takes the API key as a bearer on `POST /api/v1/login`, and lists
/// `projects` one per page. Each request line it got (with `bearer` when it had the API key
/// as bearer) goes to the returned log.
fn fake_zenml(
    api_key: &'static str,
    projects: Vec<(&'static str, &'static str)>,
) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = log.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let mut stream = stream.unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let (mut length, mut authorization) = (0, String::new());
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header.split_once(": ").unwrap();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap(),
                    "authorization" => authorization = value.to_owned(),
                    _ => {}
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let target = line.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            let key_as_bearer = authorization == format!("Bearer {api_key}");
            let with_key = if key_as_bearer { " bearer" } else { "" };
            requests.lock().unwrap().push(format!("{target}{with_key}"));
            let page = target
                .split("page=")
                .nth(1)
                .and_then(|rest| rest.split('&').next()?.parse::<usize>().ok());
            let (status, answer) = match (target.as_str(), page) {
                ("GET /api/v1/info", _) => {
                    (200, json!({"id": zenml_server::PRODUCTION, "version": "0.80.2"}))
                }
                ("POST /api/v1/login", _) if key_as_bearer => (200, json!({"access_token": "jwt-1"})),
                ("POST /api/v1/login", _) => (401, json!({"detail": ["CredentialsNotValid", "no"]})),
                (_, Some(page)) if authorization == "Bearer jwt-1" => {
                    let (name, id) = projects[page - 1];
                    let items = json!([{"id": id, "name": name, "body": {}}]);
                    (
                        200,
                        json!({"index": page, "max_size": 1, "total_pages": projects.len(), "total": projects.len(), "items": items}),
                    )
                }
                _ => (401, json!({"detail": "not authenticated"})),
            };
            let body = answer.to_string();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, log)
}

/// `zenml-authz zenml-projects` on the bundled sources with the API key in its variable.
fn zenml_projects(url: &str, api_key: Option<&str>, extra: &[&str]) -> Output {
    let root = common::root();
    let mut command = Command::new(env!("CARGO_BIN_EXE_zenml-authz"));
    for (key, _) in std::env::vars() {
        if key.starts_with("ZENML_AUTHZ_") {
            command.env_remove(key);
        }
    }
    if let Some(key) = api_key {
        command.env("ZENML_AUTHZ_ZENML_API_KEY", key);
    }
    command
        .current_dir(&root)
        .args(["zenml-projects", "--zenml-url", url])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_server_that_refuses_the_form_login_gets_the_key_as_bearer_and_every_page_is_read() {
    let key = "ZENPROKEY_zero_eighty";
    let (url, log) = fake_zenml(
        key,
        vec![
            ("churn", NEW),
            ("fraud", SAMPLE_FRAUD),
            ("default", DEFAULT_PROJECT),
        ],
    );
    let output = zenml_projects(&url, Some(key), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    assert!(
        has_row(&stdout, &format!("churn {NEW} {SAMPLE_CHURN} id differs")),
        "{stdout}"
    );
    assert!(
        has_row(&stdout, &format!("fraud {SAMPLE_FRAUD} {SAMPLE_FRAUD} matches")),
        "{stdout}"
    );
    assert!(
        has_row(&stdout, &format!("default {DEFAULT_PROJECT} - only in ZenML")),
        "{stdout}"
    );
    // The workspace came from the server's id (no --workspace).
    assert!(stdout.starts_with("workspace production ("), "{stdout}");
    let requests = log.lock().unwrap().clone();
    assert_eq!(
        requests,
        [
            "GET /api/v1/info",
            "POST /api/v1/login",
            "POST /api/v1/login bearer",
            "GET /api/v1/projects?page=1&size=100",
            "GET /api/v1/projects?page=2&size=100",
            "GET /api/v1/projects?page=3&size=100",
        ]
    );
}

/// (URL, API key in the variable, flags, exit code, part of the output).
type Case<'a> = (&'a str, Option<&'a str>, &'a [&'a str], i32, &'a str);

#[test]
fn usage_errors_no_key_on_the_command_line_and_an_unreachable_server() {
    // Usage errors (2) before anything is asked of a server; a closed port is an error (4).
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let cases: [Case; 5] = [
        (
            &closed,
            None,
            &["--api-key", "ZENPROKEY_x"],
            2,
            "`--api-key` is refused",
        ),
        (&closed, None, &[], 2, "give `--api-key-file`"),
        (
            &closed,
            Some("k"),
            &["--api-key-file", "Cargo.toml"],
            2,
            "not both",
        ),
        (
            "ftp://zenml",
            Some("k"),
            &[],
            2,
            "give an http:// or https:// URL",
        ),
        (&closed, Some("k"), &[], 4, "/api/v1/info`"),
    ];
    for (url, key, extra, code, message) in cases {
        let output = zenml_projects(url, key, extra);
        assert_eq!(output.status.code(), Some(code), "{extra:?}: {}", text(&output));
        assert!(text(&output).contains(message), "{extra:?}: {}", text(&output));
    }
}

#[test]
fn plain_http_to_another_host_is_flagged() {
    let remote = |url: &str| {
        zenml_client::Client::new(url, Duration::from_secs(1))
            .unwrap()
            .is_plain_http_remote()
    };
    assert!(remote("http://zenml.example.com"));
    assert!(remote("http://10.0.0.1:8080/zenml/"));
    assert!(!remote("https://zenml.example.com"));
    assert!(!remote("http://127.0.0.1:8080"));
    assert!(!remote("http://localhost:8080"));
    assert!(!remote("http://[::1]:8080"));
}

/// How one project entry, and the binding naming it, are written in a generated directory.
#[derive(Debug, Clone)]
struct Written {
    flow: bool,
    /// 0 plain, 1 single-quoted, 2 double-quoted (the id; the binding's id reference too).
    quote: usize,
    comment: bool,
    /// The binding names the project by id (else by name).
    binding_by_id: bool,
    /// The id is changed.
    changed: bool,
}

const GENERATED_IDS: [&str; 4] = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "33333333-3333-4333-8333-333333333333",
    "44444444-4444-4444-8444-444444444444",
];
const GENERATED_NEW_IDS: [&str; 4] = [
    "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
    "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
    "cccccccc-cccc-4ccc-8ccc-cccccccccccc",
    "dddddddd-dddd-4ddd-8ddd-dddddddddddd",
];

/// The bundled sources, loaded once (their schema checks the generated directories).
static SAMPLE: std::sync::LazyLock<zenml_authz::Snapshot> =
    std::sync::LazyLock::new(common::bundled_snapshot);

/// A directory whose projects (and the bindings naming them) are written as `entries` say.
fn generated_directory(entries: &[Written]) -> String {
    let quoted = |id: &str, quote: usize| match quote {
        1 => format!("'{id}'"),
        2 => format!("\"{id}\""),
        _ => id.to_owned(),
    };
    let mut text = String::from(
        "organization: {id: 743818ac-9cc4-413c-aa3b-0d14700954e9, name: acme}\n\
         workspaces:\n  - {id: 99baf825-b21e-442f-ba98-8246d8d9ac88, name: production}\n\
         users:\n  - {id: 8a5e8598-b203-4344-948f-32f6cd6c6e30, username: bob}\n\
         projects:\n",
    );
    for (i, entry) in entries.iter().enumerate() {
        let id = quoted(GENERATED_IDS[i], entry.quote);
        let comment = if entry.comment { "   # from ZenML: id" } else { "" };
        if entry.flow {
            text.push_str(&format!(
                "  - {{id: {id}, name: p{i}, workspace: production}}{comment}\n"
            ));
        } else {
            text.push_str(&format!(
                "  - name: p{i}\n    id: {id}{comment}\n    workspace: production\n"
            ));
        }
    }
    text.push_str("bindings:\n");
    for (i, entry) in entries.iter().enumerate() {
        let project = if entry.binding_by_id {
            quoted(GENERATED_IDS[i], entry.quote)
        } else {
            format!("p{i}")
        };
        text.push_str(&format!("  - {{user: bob, role: viewer, project: {project}}}\n"));
    }
    text
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 64, ..Default::default() })]

    /// However the projects are written, the changed ids (in the entries and the bindings
    /// naming them by id) are the only bytes that change, and the result loads with them.
    #[test]
    fn only_the_changed_ids_change(
        entries in proptest::collection::vec(
            (proptest::bool::ANY, 0..3usize, proptest::bool::ANY, proptest::bool::ANY, proptest::bool::ANY)
                .prop_map(|(flow, quote, comment, binding_by_id, changed)| Written {
                    flow, quote, comment, binding_by_id, changed
                }),
            1..=4,
        )
    ) {
        let text = generated_directory(&entries);
        let changes: BTreeMap<String, String> = entries
            .iter()
            .enumerate()
            .filter(|(_, entry)| entry.changed)
            .map(|(i, _)| (GENERATED_IDS[i].to_owned(), GENERATED_NEW_IDS[i].to_owned()))
            .collect();
        let mut expected = text.clone();
        for (old, new) in &changes {
            expected = expected.replace(old, new);
        }
        let path = Path::new("directory.yaml");
        let rewritten = replace_project_ids(path, &text, &changes).unwrap();
        proptest::prop_assert_eq!(&rewritten, &expected);
        let schema = &SAMPLE.engine.schema;
        let Ok(zenml_authz::directory::Loaded::Zenml(directory, _)) =
            zenml_authz::directory::load(path, &rewritten, schema)
        else {
            panic!("the rewritten directory does not load:\n{rewritten}");
        };
        for (i, entry) in entries.iter().enumerate() {
            let id = if entry.changed { GENERATED_NEW_IDS[i] } else { GENERATED_IDS[i] };
            proptest::prop_assert_eq!(&directory.projects[id].named.name, &format!("p{i}"));
        }
    }
}

/// Runs `--write` on a copy of the bundled sources against a stand-in whose only project is
/// `churn` with `churn_id`: the output, and whether the directory file is as it was and no
/// hidden (temp) file is left beside it.
fn write_against(churn_id: &'static str) -> (Output, bool) {
    let key = "ZENPROKEY_zero_eighty";
    let (url, _) = fake_zenml(key, vec![("churn", churn_id)]);
    let sources = common::copy_sources();
    let directory = sources.path().join("policies/directory.yaml");
    let original = std::fs::read_to_string(&directory).unwrap();
    let flag = |path: &str| sources.path().join(path).display().to_string();
    let (policies, schemas, file) = (flag("policies"), flag("schemas"), flag("policies/directory.yaml"));
    let output = zenml_projects(
        &url,
        Some(key),
        &[
            "--write",
            "--policies",
            &policies,
            "--schemas",
            &schemas,
            "--directory",
            &file,
        ],
    );
    let hidden_files = std::fs::read_dir(sources.path().join("policies"))
        .unwrap()
        .filter(|entry| {
            entry
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with('.')
        })
        .count();
    let unchanged = std::fs::read_to_string(&directory).unwrap() == original && hidden_files == 0;
    (output, unchanged)
}

#[test]
fn a_rewrite_that_would_not_load_is_not_written() {
    // ZenML's churn has the id the directory gives fraud, which ZenML does not have.
    let (output, unchanged) = write_against(SAMPLE_FRAUD);
    let all = text(&output);
    assert_eq!(output.status.code(), Some(4), "{all}");
    assert!(
        has_row(&all, &format!("churn {SAMPLE_FRAUD} {SAMPLE_CHURN} id differs")),
        "{all}"
    );
    assert!(all.contains("the directory's project `fraud` has it"), "{all}");
    assert!(unchanged, "{all}");
    // An id the directory does not accept (upper case): the loaded result says so.
    let (output, unchanged) = write_against("E1C2695C-2F63-495C-A668-6B986B74218B");
    let all = text(&output);
    assert_eq!(output.status.code(), Some(4), "{all}");
    assert!(all.contains("the rewritten directory would not load"), "{all}");
    assert!(all.contains("write the UUID as ZenML does"), "{all}");
    assert!(
        all.contains("/policies/directory.yaml:25:5: projects[0] `churn`"),
        "{all}"
    );
    assert!(unchanged, "{all}");
}
