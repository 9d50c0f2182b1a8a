//! Hot reload and the decision cache, end to end: edit the sources under a running server.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{CAROL, CHURN, PRODUCTION};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{HANG_GUARD, Server};
use serde_json::{Value, json};

/// The `workspace-viewer` policy as `zenml-authz fmt` writes it in policies/workspace.cedar.
const VIEWER_PERMIT: &str = "permit (\n  principal,\n  action == ZenML::Action::\"read\",\n  resource\n)\nwhen { principal in resource.workspace.viewers };";
const VIEWER_FORBID: &str = "forbid (\n  principal,\n  action == ZenML::Action::\"read\",\n  resource\n)\nwhen { principal in resource.workspace.viewers };";

/// Carol (workspace viewer) reads project churn: allowed by `workspace-viewer` unless flipped.
fn carol_reads_churn() -> Value {
    json!({"principal": format!("ZenML::User::\"{CAROL}\""), "action": "ZenML::Action::\"read\"", "resource": format!("ZenML::Project::\"{CHURN}\"")})
}

fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut args = vec![];
    if !extra.contains(&"--shares-db") {
        args.extend(["--shares-db", ":memory:"]);
    }
    if !extra.contains(&"--watch-debounce-ms") {
        args.extend(["--watch-debounce-ms", "50"]);
    }
    args.extend_from_slice(extra);
    let server = Server::start_with(
        &dir.join("policies"),
        &dir.join("schemas"),
        &dir.join("policies/directory.yaml"),
        &args,
    );
    // A watcher checks the sources once it is registered; wait for that check, so that a
    // test's edit is never read half-written by it.
    if !extra.contains(&"off") {
        server.wait_status(|s| s["reloads"]["unchanged"] != 0);
    }
    server
}

/// `text` (workspace.cedar) with the `workspace-viewer` permit turned into a forbid.
fn flipped(text: &str) -> String {
    assert!(
        text.contains(VIEWER_PERMIT),
        "workspace.cedar holds {VIEWER_PERMIT}"
    );
    text.replace(VIEWER_PERMIT, VIEWER_FORBID)
}

fn decision(server: &Server) -> (String, String) {
    let (status, body) = server.post("/v1/is_authorized", &carol_reads_churn());
    assert_eq!(status, 200, "{body}");
    (
        body["decision"].as_str().unwrap().to_owned(),
        body["diagnostics"]["revision"].as_str().unwrap().to_owned(),
    )
}

/// Writes `text` to `path` the way editors do: a temporary file, then a rename.
fn save_by_rename(path: &Path, text: &str) {
    let temporary = path.with_extension("cedar.tmp~");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

fn workspace_policies(dir: &Path) -> PathBuf {
    dir.join("policies/workspace.cedar")
}

#[test]
fn an_edit_flips_the_decision_and_the_revision() {
    let dir = common::copy_sources();
    let server = start(dir.path(), &[]);
    let (allowed, before) = decision(&server);
    assert_eq!(allowed, "Allow");
    let path = workspace_policies(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, flipped(&text)).unwrap();
    let status = server.wait_status(|s| s["revision"] != before.as_str());
    let (denied, revision) = decision(&server);
    assert_eq!(denied, "Deny");
    assert_eq!(revision, status["revision"].as_str().unwrap());
    assert_eq!(status["reloads"]["succeeded"], 1);
}

#[test]
fn a_broken_edit_keeps_the_last_good_policies_until_it_is_fixed() {
    let dir = common::copy_sources();
    let server = start(dir.path(), &[]);
    let (_, good) = decision(&server);
    let path = dir.path().join("policies/project.cedar");
    let text = std::fs::read_to_string(&path).unwrap();
    let broken_line = text.lines().count() + 1;
    std::fs::write(&path, format!("{text}permit (principal, action, resource\n")).unwrap();
    let status = server.wait_status(|s| !s["last_load_error"].is_null());
    let errors = status["last_load_error"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .contains(&format!("project.cedar:{}:", broken_line + 1))
            || e.as_str()
                .unwrap()
                .contains(&format!("project.cedar:{broken_line}:"))),
        "{status}"
    );
    assert_eq!(status["revision"], good.as_str(), "the active revision stays");
    assert_eq!(
        decision(&server),
        ("Allow".to_owned(), good.clone()),
        "old decisions are still served"
    );
    let (ready, _) = server.get("/readyz");
    assert_eq!(ready, 200, "still ready on the last good snapshot");
    std::fs::write(&path, &text).unwrap();
    let status = server.wait_status(|s| s["last_load_error"].is_null());
    assert_eq!(
        status["revision"],
        good.as_str(),
        "the fixed sources are the good ones again"
    );
    assert!(status["reloads"]["failed"].as_u64().unwrap() >= 1, "{status}");
}

#[test]
fn every_way_files_change_triggers_a_reload() {
    let dir = common::copy_sources();
    let server = start(dir.path(), &[]);
    let path = workspace_policies(dir.path());
    let original = std::fs::read_to_string(&path).unwrap();
    let new_file = dir.path().join("policies/extra/forbid-viewers.cedar");
    // (what, change, expected decision after it)
    type Change<'a> = Box<dyn Fn() + 'a>;
    let steps: Vec<(&str, Change<'_>, &str)> = vec![
        (
            "atomic rename save",
            Box::new(|| save_by_rename(&path, &flipped(&original))),
            "Deny",
        ),
        (
            "in-place write",
            Box::new(|| std::fs::write(&path, &original).unwrap()),
            "Allow",
        ),
        (
            "new file in a new directory",
            Box::new(|| {
                std::fs::create_dir_all(new_file.parent().unwrap()).unwrap();
                std::fs::write(&new_file, format!("@id(\"extra\")\n{VIEWER_FORBID}\n")).unwrap();
            }),
            "Deny",
        ),
        (
            "deleted file",
            Box::new(|| std::fs::remove_file(&new_file).unwrap()),
            "Allow",
        ),
        (
            "a directory of policies renamed into place",
            Box::new(|| {
                let staged = dir.path().join("staged/forbid");
                std::fs::create_dir_all(&staged).unwrap();
                std::fs::write(
                    staged.join("viewers.cedar"),
                    format!("@id(\"moved-in\")\n{VIEWER_FORBID}\n"),
                )
                .unwrap();
                std::fs::rename(&staged, dir.path().join("policies/moved")).unwrap();
            }),
            "Deny",
        ),
        (
            "that directory renamed away again",
            Box::new(|| {
                std::fs::rename(
                    dir.path().join("policies/moved"),
                    dir.path().join("staged/forbid"),
                )
                .unwrap();
            }),
            "Allow",
        ),
        (
            // Garbage in an editor's swap and backup files: a reload that read them would fail.
            "an edit saved beside editor swap and backup files",
            Box::new(|| {
                std::fs::write(dir.path().join("policies/.workspace.cedar.swp"), "garbage").unwrap();
                std::fs::write(dir.path().join("policies/workspace.cedar~"), "garbage").unwrap();
                save_by_rename(&path, &flipped(&original));
            }),
            "Deny",
        ),
    ];
    for (what, change, expected) in steps {
        let (_, before) = decision(&server);
        change();
        // Every step changes the sources, so only a reload that took effect ends the wait: a
        // new revision, and the decision the new sources give.
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let (got, revision) = decision(&server);
            if got == expected && revision != before {
                break;
            }
            let (_, status) = server.get("/v1/status");
            assert!(
                status["last_load_error"].is_null(),
                "{what}: the reload failed: {status}"
            );
            assert!(Instant::now() < deadline, "{what}: still {got} under {revision}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let (_, status) = server.get("/v1/status");
    assert!(status["last_load_error"].is_null(), "{status}");
    assert_eq!(status["reloads"]["failed"], 0, "{status}");
}

#[test]
fn a_whole_directory_replaced_and_a_configmap_symlink_swap_reload() {
    // A Kubernetes ConfigMap volume: files are symlinks into `..data`, itself a symlink to a
    // timestamped directory that is swapped atomically.
    let dir = tempfile::tempdir().unwrap();
    let bundled = common::root();
    let configmap = dir.path().join("policies");
    std::fs::create_dir_all(&configmap).unwrap();
    let version = |name: &str, viewer: &str| {
        let data = configmap.join(name);
        std::fs::create_dir_all(&data).unwrap();
        for entry in std::fs::read_dir(bundled.join("policies")).unwrap() {
            let entry = entry.unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(data.join(entry.file_name()), text.replace(VIEWER_PERMIT, viewer)).unwrap();
        }
    };
    version("..2026_11_23_01", VIEWER_PERMIT);
    std::os::unix::fs::symlink("..2026_11_23_01", configmap.join("..data")).unwrap();
    for entry in std::fs::read_dir(bundled.join("policies")).unwrap() {
        let name = entry.unwrap().file_name();
        std::os::unix::fs::symlink(Path::new("..data").join(&name), configmap.join(&name)).unwrap();
    }
    let schemas = dir.path().join("schemas");
    std::fs::create_dir_all(&schemas).unwrap();
    std::fs::copy(
        bundled.join("schemas/zenml.cedarschema"),
        schemas.join("zenml.cedarschema"),
    )
    .unwrap();
    let server = start(dir.path(), &[]);
    assert_eq!(decision(&server).0, "Allow");

    // The kubelet's update: new data directory, new `..data_tmp` link, atomic rename over `..data`.
    version("..2026_11_23_02", VIEWER_FORBID);
    std::os::unix::fs::symlink("..2026_11_23_02", configmap.join("..data_tmp")).unwrap();
    std::fs::rename(configmap.join("..data_tmp"), configmap.join("..data")).unwrap();
    std::fs::remove_dir_all(configmap.join("..2026_11_23_01")).unwrap();
    wait_for(&server, "Deny", "configmap swap");

    // The schemas directory replaced whole by a rename.
    let (_, before) = server.get("/v1/status");
    let replacement = dir.path().join("schemas.new");
    std::fs::create_dir_all(&replacement).unwrap();
    let schema = std::fs::read_to_string(schemas.join("zenml.cedarschema")).unwrap();
    std::fs::write(
        replacement.join("zenml.cedarschema"),
        format!("// replaced\n{schema}"),
    )
    .unwrap();
    std::fs::rename(&schemas, dir.path().join("schemas.old")).unwrap();
    std::fs::rename(&replacement, &schemas).unwrap();
    server.wait_status(|s| s["revision"] != before["revision"]);
}

fn wait_for(server: &Server, expected: &str, what: &str) {
    let deadline = Instant::now() + HANG_GUARD;
    while decision(server).0 != expected {
        assert!(
            Instant::now() < deadline,
            "{what}: decision never became {expected}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The server installs its signal handlers before it prints its address, so a `SIGHUP` sent the
/// moment that line is read reloads (before installation, `SIGHUP` would end the process).
#[test]
fn sighup_reloads_and_poll_mode_watches_without_events() {
    let dir = common::copy_sources();
    let path = workspace_policies(dir.path());
    let original = std::fs::read_to_string(&path).unwrap();
    let server = start(dir.path(), &["--watch", "off"]);
    std::fs::write(&path, flipped(&original)).unwrap();
    let pid = server.child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for(&server, "Deny", "SIGHUP");
    let (_, status) = server.get("/v1/status");
    let reloads = &status["reloads"];
    assert_eq!(
        (&reloads["succeeded"], &reloads["unchanged"], &reloads["failed"]),
        (&json!(1), &json!(0), &json!(0)),
        "one reload, the SIGHUP's (--watch off: no check at start, no watcher): {status}"
    );

    let poll_dir = common::copy_sources();
    let polled = start(poll_dir.path(), &["--watch", "poll", "--watch-poll-ms", "100"]);
    let path = workspace_policies(poll_dir.path());
    std::fs::write(&path, flipped(&original)).unwrap();
    wait_for(&polled, "Deny", "poll mode");
}

#[test]
fn the_cache_counts_and_never_outlives_a_reload() {
    let dir = common::copy_sources();
    let server = start(dir.path(), &[]);
    for _ in 0..3 {
        assert_eq!(decision(&server).0, "Allow");
    }
    let (_, status) = server.get("/v1/status");
    assert_eq!(
        (
            status["cache"]["hits"].as_u64(),
            status["cache"]["misses"].as_u64()
        ),
        (Some(2), Some(1)),
        "{status}"
    );
    let path = workspace_policies(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, flipped(&text)).unwrap();
    wait_for(&server, "Deny", "reload with a warm cache");

    let uncached_dir = common::copy_sources();
    let uncached = start(uncached_dir.path(), &["--cache", "off"]);
    decision(&uncached);
    decision(&uncached);
    let (_, status) = uncached.get("/v1/status");
    assert_eq!(
        status["cache"],
        json!({"enabled": false, "hits": 0, "misses": 0, "entries": 0, "bytes": 0})
    );
}

/// Under continuous concurrent load, the policy flips ≥ 50 times: no request fails, every
/// answer matches the revision it reports, and once `/v1/status` shows a revision no request
/// sent afterwards is answered under an older one.
#[test]
fn flipping_under_load_never_fails_or_goes_back() {
    const FLIPS: usize = 50;
    let dir = common::copy_sources();
    let server = Arc::new(start(dir.path(), &["--watch-debounce-ms", "10"]));
    let path = workspace_policies(dir.path());
    let original = std::fs::read_to_string(&path).unwrap();
    let forbid = flipped(&original);
    // Every version is unique (a counter comment), so every revision is too.
    let write_version = |k: usize| {
        let text = if k % 2 == 1 { &forbid } else { &original };
        save_by_rename(&path, &format!("// flip {k}\n{text}"));
    };
    write_version(0);
    let first = server.wait_status(|s| s["reloads"]["succeeded"] == 1);

    let stop = Arc::new(AtomicBool::new(false));
    // (sent at, revision, decision) of every answer.
    let answers = Arc::new(Mutex::new(Vec::<(Instant, String, String)>::new()));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (server, stop, answers, failures) =
                (server.clone(), stop.clone(), answers.clone(), failures.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let sent = Instant::now();
                    let (status, body) = server.post("/v1/is_authorized", &carol_reads_churn());
                    if status != 200 {
                        failures.lock().unwrap().push(format!("{status}: {body}"));
                        continue;
                    }
                    let revision = body["diagnostics"]["revision"].as_str().unwrap().to_owned();
                    let decided = body["decision"].as_str().unwrap().to_owned();
                    answers.lock().unwrap().push((sent, revision, decided));
                }
            })
        })
        .collect();

    // revision -> (flip number, when /v1/status first showed it)
    let mut seen: Vec<(String, usize, Instant)> =
        vec![(first["revision"].as_str().unwrap().to_owned(), 0, Instant::now())];
    for k in 1..=FLIPS {
        let previous = seen.last().unwrap().0.clone();
        write_version(k);
        let status = server.wait_status(|s| s["revision"] != previous.as_str());
        seen.push((status["revision"].as_str().unwrap().to_owned(), k, Instant::now()));
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        reader.join().unwrap();
    }

    assert!(
        failures.lock().unwrap().is_empty(),
        "failed requests: {:?}",
        failures.lock().unwrap()
    );
    let answers = answers.lock().unwrap();
    assert!(
        answers.len() > FLIPS * 4,
        "too little load: {} answers",
        answers.len()
    );
    let flip_of = |revision: &str| seen.iter().find(|(r, _, _)| r == revision).map(|(_, k, _)| *k);
    for (sent, revision, decided) in answers.iter() {
        let k = flip_of(revision).unwrap_or_else(|| panic!("answer under an unknown revision {revision}"));
        let expected = if k % 2 == 1 { "Deny" } else { "Allow" };
        assert_eq!(
            decided, expected,
            "revision {revision} (flip {k}) answered {decided}"
        );
        // The newest revision status had shown before this request was sent.
        let shown = seen
            .iter()
            .filter(|(_, _, at)| at <= sent)
            .map(|(_, k, _)| *k)
            .max()
            .unwrap_or(0);
        assert!(
            k >= shown,
            "a request sent after status showed flip {shown} was answered under flip {k}"
        );
    }
    let (_, status) = server.get("/v1/status");
    assert_eq!(status["reloads"]["succeeded"].as_u64(), Some(FLIPS as u64 + 1));
}

/// The try-out enrollment key of `production` (its hash is in policies/directory.yaml).
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";

/// Issue 16, finding 8: the share database (and its `-wal`/`-shm`), the decision log and other
/// logs kept beside the sources and inside the policy folder are written to all the time; none
/// of it reloads, while a policy edit still does.
#[test]
fn issue_16_shares_and_logs_beside_the_sources_never_reload() {
    let dir = common::copy_sources();
    let db = dir.path().join("shares.db");
    let decision_log = dir.path().join("decisions.log");
    let server = start(
        dir.path(),
        &[
            "--shares-db",
            db.to_str().unwrap(),
            "--decision-log",
            decision_log.to_str().unwrap(),
        ],
    );
    let token = server.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let (_, before) = server.get("/v1/status");
    let logs = [
        dir.path().join("debug.log"),
        dir.path().join("policies/debug.log"),
    ];
    for round in 0..20 {
        let body = json!({"user_id": CAROL, "team_id": null, "sharing_user_id": CAROL, "resource": format!("stack/11111111-1111-4111-8111-{round:012}"), "actions": ["read"]}).to_string();
        let reply = server.send(
            "POST",
            "/zenml/rbac/resource_members",
            &[
                ("authorization", &format!("Bearer {token}")),
                ("zenml-server-id", PRODUCTION),
            ],
            Some(("application/json", &body)),
        );
        assert_eq!(reply.status, 200, "{reply:?}");
        decision(&server);
        for log in &logs {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(log)
                .unwrap();
            writeln!(file, "round {round}").unwrap();
        }
        // A journal that comes and goes (SQLite's rollback mode, a log rotation).
        let journal = dir.path().join("policies/other.db-journal");
        std::fs::write(&journal, "x").unwrap();
        std::fs::remove_file(&journal).unwrap();
        // Paced (not timed): with a filter that let these through, each round would be a
        // burst of its own, reloaded once the debounce is quiet.
        std::thread::sleep(Duration::from_millis(100));
    }
    // The edit comes after every write above: once it is published, the watcher has seen them.
    let path = workspace_policies(dir.path());
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, flipped(&text)).unwrap();
    let status = server.wait_status(|s| s["revision"] != before["revision"]);
    assert_eq!(decision(&server).0, "Deny");
    assert_eq!(status["shares"]["count"], 20, "{status}");
    assert_eq!(
        (
            &status["reloads"]["succeeded"],
            &status["reloads"]["unchanged"],
            &status["reloads"]["failed"]
        ),
        (
            &json!(before["reloads"]["succeeded"].as_u64().unwrap() + 1),
            &before["reloads"]["unchanged"],
            &before["reloads"]["failed"]
        ),
        "only the policy edit reloaded: {status}"
    );
    assert!(
        std::fs::metadata(&decision_log).unwrap().len() > 0,
        "the decision log was written beside the sources"
    );
}
