//! Issue 17, items 2 and 3: ZenML Pro's membership rules, through the real binary over HTTP.
//!
//! * Only members enter a workspace: `GET /zenml/users/authorize_server?server_id=<workspace>`
//!   admits a user or service account with a role in the workspace or one of its projects
//!   (their teams' roles too), an organization admin or viewer, or a guest with a share there
//!   (to them or one of their teams); everyone else is a 403 that says why.
//! * A removed member loses what was shared with them: when a load that becomes the active
//!   snapshot removes a user's or team's membership of a workspace or project, their shares
//!   there are purged, audited (`share_events`, reason `membership removed`) and counted
//!   (`authz_shares_purged_total{reason="membership_removed"}`); a guest keeps theirs; a removal
//!   made while the sidecar was stopped is caught at the next start; an invalid edit purges
//!   nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::sample::{
    ADA, AUDITORS, BOB, CAROL, CHURN, CI_BOT, DAVE, ERIN, FRAUD, GRACE, IVAN, KEN, NINA, PLATFORM,
    PRODUCTION, STAGING,
};
use common::{HANG_GUARD, Reply, Server, query};
use serde_json::{Value, json};

const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
const ENROLL_STAGING: &str = "zenml-authz-enroll-staging-bdcf23dbfaa83fcf90df149cf9e4385e";

/// The try-out API keys of README.md.
const KEYS: &[(&str, &str)] = &[
    ("ada", "ZENPROKEY_ada_5211b6a4144bc0c91a9ef21efca2a834"),
    ("bob", "ZENPROKEY_bob_030618f7340f60133ae8272cec5e267e"),
    ("carol", "ZENPROKEY_carol_34dcc64647914996512f6908e9b38175"),
    ("dave", "ZENPROKEY_dave_77e83052d2c3bf574222c23de9d5181f"),
    ("erin", "ZENPROKEY_erin_1af509ecba8c13874203ebd6925522ba"),
    ("frank", "ZENPROKEY_frank_4ff3d9cf2a790ad361a9b27df5ae25d9"),
    ("grace", "ZENPROKEY_grace_00ac2b33519bb4dcef5d79e0c84f1461"),
    ("heidi", "ZENPROKEY_heidi_82e633e1fe1e9f01e9f512822664e443"),
    ("ivan", "ZENPROKEY_ivan_1ee0e14b923cfd11e918779b1d74559b"),
    ("judy", "ZENPROKEY_judy_d7ba9134d2987c1108f8f169fd00b1ea"),
    ("ken", "ZENPROKEY_ken_2309a331b44dddada3e5d275274b1c19"),
    ("mallory", "ZENPROKEY_mallory_f7c719f0b2574ab186bc0d0cf870cf65"),
    ("nina", "ZENPROKEY_nina_dea0957c4e06ccf4d73424d0f7cd8dcb"),
    ("ci-bot", "ZENPROKEY_cibot_8f7735b45952f79318293fb2b59bd134"),
    ("deployer", "ZENPROKEY_deployer_04e8cbffaf6487546874d3ba2fdd721e"),
];

const ID1: &str = "11111111-1111-4111-8111-111111111111";
const ID2: &str = "22222222-2222-4222-8222-222222222222";
const ID3: &str = "33333333-3333-4333-8333-333333333333";
const ID4: &str = "44444444-4444-4444-8444-444444444444";

fn key(name: &str) -> &'static str {
    KEYS.iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no key for {name}"))
        .1
}

/// ZenML's user-info call for `name` entering `workspace`.
fn enter(server: &Server, name: &str, workspace: &str) -> Reply {
    let path = format!(
        "/zenml/users/authorize_server?{}",
        query(&[("server_id", workspace)])
    );
    let bearer = format!("Bearer {}", key(name));
    server.send("GET", &path, &[("authorization", &bearer)], None)
}

/// A ZenML server's calls to the RBAC API, with its workspace token.
struct Workspace<'s> {
    server: &'s Server,
    token: String,
}

impl<'s> Workspace<'s> {
    fn login(server: &'s Server, id: &str, secret: &str) -> Self {
        Workspace {
            server,
            token: server.zenml_login(id, secret),
        }
    }

    fn call(&self, method: &str, path: &str, body: &Value) -> Reply {
        let bearer = format!("Bearer {}", self.token);
        let text = body.to_string();
        self.server.send(
            method,
            path,
            &[("authorization", &bearer)],
            Some(("application/json", &text)),
        )
    }

    /// Shares `resource` with a user (`team: false`) or a team for `actions`.
    fn share(&self, grantee: &str, team: bool, resource: &str, actions: &[&str]) {
        let (user_id, team_id) = if team {
            (Value::Null, json!(grantee))
        } else {
            (json!(grantee), Value::Null)
        };
        let reply = self.call(
            "POST",
            "/zenml/rbac/resource_members",
            &json!({"user_id": user_id, "team_id": team_id, "sharing_user_id": ADA,
                    "resource": resource, "actions": actions}),
        );
        assert_eq!(reply.status, 200, "share {resource}: {reply:?}");
    }

    fn allows(&self, user: &str, action: &str, resource: &str) -> bool {
        let path = format!(
            "/zenml/rbac/check_permissions?{}",
            query(&[("user_id", user), ("action", action)])
        );
        let reply = self.call("POST", &path, &json!([resource]));
        assert_eq!(reply.status, 200, "{reply:?}");
        reply.body[resource].as_bool().expect("a bool")
    }
}

// ===== item 2: only members enter a workspace =================================================

/// Every persona of policies/directory.yaml entering production and staging, as ZenML Pro says,
/// and guests admitted by a share only (directly, or through a team).
#[test]
fn issue_17_only_members_and_guests_enter_a_workspace() {
    let server = Server::start(&[]);
    // (persona, workspace, expected status, why)
    let table: &[(&str, &str, u16, &str)] = &[
        ("ada", PRODUCTION, 200, "organization admin"),
        ("ada", STAGING, 200, "organization admin"),
        ("carol", PRODUCTION, 200, "organization viewer"),
        ("carol", STAGING, 200, "organization viewer: viewers may connect"),
        ("grace", PRODUCTION, 403, "organization member, no role"),
        ("grace", STAGING, 403, "organization member, no role"),
        ("ivan", PRODUCTION, 403, "admin of staging only"),
        ("ivan", STAGING, 200, "workspace admin"),
        ("dave", PRODUCTION, 200, "project developer on churn"),
        ("dave", STAGING, 403, "no role in staging"),
        (
            "ci-bot",
            PRODUCTION,
            200,
            "service account, project developer on churn",
        ),
        ("ci-bot", STAGING, 403, "no role in staging"),
        ("bob", PRODUCTION, 200, "workspace developer through team ml-eng"),
        ("bob", STAGING, 403, "no role in staging"),
        ("nina", STAGING, 200, "her own workspace viewer role"),
        ("erin", PRODUCTION, 200, "stack admin through team platform"),
        ("frank", PRODUCTION, 200, "custom role on project churn"),
        (
            "judy",
            PRODUCTION,
            200,
            "project viewer and a workspace custom role",
        ),
        (
            "deployer",
            PRODUCTION,
            200,
            "service account, workspace viewer through team auditors",
        ),
        ("deployer", STAGING, 403, "no role in staging"),
        ("mallory", PRODUCTION, 401, "deactivated: no account at all"),
    ];
    let check = |table: &[(&str, &str, u16, &str)]| {
        for (persona, workspace, status, why) in table {
            let reply = enter(&server, persona, workspace);
            assert_eq!(
                reply.status, *status,
                "{persona} → {workspace} ({why}): {reply:?}"
            );
            if *status == 200 {
                assert_eq!(reply.body["username"], *persona, "{persona}");
            } else {
                assert!(reply.body.get("id").is_none(), "{persona}: {reply:?}");
            }
        }
    };
    check(table);

    // The refusal says why, in the body's message.
    let reply = enter(&server, "grace", PRODUCTION);
    assert_eq!(
        reply.message(),
        "forbidden: `grace` has no role in workspace `production` and nothing is shared with them \
         there",
        "{reply:?}"
    );
    assert_eq!(reply.body["error"]["code"], "forbidden", "{reply:?}");
    let reply = enter(&server, "ivan", PRODUCTION);
    assert!(
        reply
            .message()
            .contains("`ivan` has no role in workspace `production`"),
        "{reply:?}"
    );

    // Guests: a share makes grace a guest of production only; a share with team auditors makes
    // its member deployer a guest of staging.
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    production.share(GRACE, false, &format!("{CHURN}:pipeline/{ID1}"), &["read"]);
    let staging = Workspace::login(&server, STAGING, ENROLL_STAGING);
    staging.share(AUDITORS, true, &format!("stack/{ID2}"), &["read"]);
    check(&[
        ("grace", PRODUCTION, 200, "a guest: a pipeline is shared with her"),
        ("grace", STAGING, 403, "the share is in production"),
        (
            "deployer",
            STAGING,
            200,
            "a guest: a stack is shared with team auditors",
        ),
        ("carol", STAGING, 200, "organization viewer (and in auditors)"),
    ]);
    // Unshared again: no longer a guest.
    production.share(GRACE, false, &format!("{CHURN}:pipeline/{ID1}"), &[]);
    check(&[("grace", PRODUCTION, 403, "the share was removed")]);
}

// ===== item 3: a removed member loses what was shared with them ===============================

/// A server on a copy of the bundled sources, with a share database of its own in that copy.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Sandbox {
            dir: common::copy_sources(),
        }
    }

    fn directory(&self) -> PathBuf {
        self.dir.path().join("policies/directory.yaml")
    }

    fn database(&self) -> PathBuf {
        self.dir.path().join("state/shares.db")
    }

    fn start(&self) -> Server {
        let database = self.database();
        let decision_log = self.decision_log();
        let server = Server::start_with(
            &self.dir.path().join("policies"),
            &self.dir.path().join("schemas"),
            &self.directory(),
            &[
                "--shares-db",
                database.to_str().unwrap(),
                "--watch-debounce-ms",
                "50",
                "--decision-log",
                decision_log.to_str().unwrap(),
            ],
        );
        // The watcher checks the sources once it is registered: wait for that check, so that
        // an edit is never read half-written by it.
        server.wait_status(|s| s["reloads"]["unchanged"] != 0);
        server
    }

    fn decision_log(&self) -> PathBuf {
        self.dir.path().join("state/decisions.jsonl")
    }

    /// Waits until the decision log holds `count` membership purges; returns their resources.
    fn logged_purges(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + HANG_GUARD;
        loop {
            let text = std::fs::read_to_string(self.decision_log()).unwrap_or_default();
            let purges: Vec<String> = text
                .lines()
                .filter_map(|line| serde_json::from_str::<Value>(line).ok())
                .filter(|record| record["event"] == "purge" && record["reason"] == "membership removed")
                .map(|record| record["resource"].as_str().unwrap().to_owned())
                .collect();
            if purges.len() >= count {
                return purges;
            }
            assert!(Instant::now() < deadline, "decision log: {purges:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Rewrites the directory file with `line` (which must be in it) replaced by `with`.
    fn edit(&self, line: &str, with: &str) {
        let path = self.directory();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains(line), "directory.yaml holds {line}");
        save_by_rename(&path, &text.replace(line, with));
    }

    /// Edits the directory under `server` and waits for the new revision.
    fn edit_and_reload(&self, server: &Server, line: &str, with: &str) {
        let (_, before) = server.get("/v1/status");
        self.edit(line, with);
        server.wait_status(|s| s["revision"] != before["revision"]);
    }

    /// (grantee kind, grantee id, resource, actions) of every audited membership purge.
    fn purges(&self) -> Vec<(String, String, String, String)> {
        let connection = rusqlite::Connection::open(self.database()).unwrap();
        let mut statement = connection
            .prepare(
                "SELECT grantee_kind, grantee_id, resource, actions FROM share_events
                 WHERE kind = 'purge' AND reason = 'membership removed' ORDER BY id",
            )
            .unwrap();
        statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }
}

fn save_by_rename(path: &Path, text: &str) {
    let temporary = path.with_extension("yaml.tmp~");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

/// The value of `authz_shares_purged_total{reason="membership_removed"}` (0 when absent).
fn purged_metric(server: &Server) -> u64 {
    let reply = server.send("GET", "/metrics", &[], None);
    assert_eq!(reply.status, 200);
    let text = reply.body.as_str().unwrap_or_default().to_owned();
    text.lines()
        .find_map(|line| line.strip_prefix("authz_shares_purged_total{reason=\"membership_removed\"} "))
        .map_or(0, |value| value.trim().parse().unwrap())
}

const DAVE_BINDING: &str = "  - {user: dave, role: developer, project: churn}\n";
const KEN_CHURN_BINDING: &str = "  - {user: ken, role: contributor, project: churn}\n";
const PLATFORM_BINDING: &str = "  - {team: platform, role: stack_admin, workspace: production}\n";
const ML_ENG_MEMBERS: &str = "    members: [bob, nina]\n";

#[test]
fn issue_17_a_member_whose_binding_is_removed_loses_their_shares() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let stack = format!("stack/{ID1}");
    let pipeline = format!("{CHURN}:pipeline/{ID2}");
    assert!(!production.allows(DAVE, "delete", &stack), "not by dave's role");
    production.share(DAVE, false, &stack, &["delete"]);
    production.share(DAVE, false, &pipeline, &["delete", "update"]);
    assert!(
        production.allows(DAVE, "delete", &stack),
        "by the share (and now cached)"
    );
    assert_eq!(purged_metric(&server), 0);

    sandbox.edit_and_reload(&server, DAVE_BINDING, "");
    assert!(
        !production.allows(DAVE, "delete", &stack),
        "the share went with the membership"
    );
    assert!(!production.allows(DAVE, "delete", &pipeline));
    let mut purges = sandbox.purges();
    purges.sort();
    assert_eq!(
        purges,
        [
            (
                "user".into(),
                DAVE.into(),
                pipeline.clone(),
                "delete,update".into()
            ),
            ("user".into(), DAVE.into(), stack.clone(), "delete".into()),
        ]
    );
    assert_eq!(purged_metric(&server), 2);
    let mut logged = sandbox.logged_purges(2);
    logged.sort();
    assert_eq!(logged, [pipeline.clone(), stack.clone()]);
    // No longer a member, nothing shared: dave no longer enters production.
    assert_eq!(enter(&server, "dave", PRODUCTION).status, 403);
    // A later reload purges nothing more, and a new share to dave (now a guest) stays.
    production.share(DAVE, false, &stack, &["delete"]);
    sandbox.edit_and_reload(&server, "# The organization directory", "# The directory");
    assert!(production.allows(DAVE, "delete", &stack), "a guest's share stays");
    assert_eq!(sandbox.purges().len(), 2);
    assert_eq!(purged_metric(&server), 2);
}

/// ken is admin of project fraud and contributor of churn: losing churn, he stays a member of
/// production (through fraud) but loses what was shared with him in churn, and only that.
#[test]
fn issue_17_a_member_who_loses_one_project_loses_the_shares_in_that_project_only() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let in_churn = format!("{CHURN}:pipeline/{ID1}");
    let in_fraud = format!("{FRAUD}:pipeline/{ID2}");
    let stack = format!("stack/{ID3}");
    for resource in [&in_churn, &in_fraud, &stack] {
        production.share(KEN, false, resource, &["share"]);
    }
    assert!(production.allows(KEN, "share", &in_churn));

    sandbox.edit_and_reload(&server, KEN_CHURN_BINDING, "");
    assert!(!production.allows(KEN, "share", &in_churn), "churn's share went");
    assert!(
        production.allows(KEN, "share", &in_fraud),
        "still a member of fraud"
    );
    assert!(
        production.allows(KEN, "share", &stack),
        "still a member of production"
    );
    assert_eq!(
        sandbox.purges(),
        [("user".into(), KEN.into(), in_churn.clone(), "share".into())]
    );
    assert_eq!(enter(&server, "ken", PRODUCTION).status, 200);
}

#[test]
fn issue_17_a_team_that_loses_its_binding_loses_its_shares() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let pipeline = format!("{CHURN}:pipeline/{ID3}");
    assert!(
        !production.allows(ERIN, "delete", &pipeline),
        "not by erin's role"
    );
    production.share(PLATFORM, true, &pipeline, &["delete"]);
    // A share to ada (organization admin) in the same project is untouched.
    production.share(ADA, false, &pipeline, &["delete"]);
    assert!(
        production.allows(ERIN, "delete", &pipeline),
        "through team platform"
    );

    sandbox.edit_and_reload(&server, PLATFORM_BINDING, "");
    assert!(!production.allows(ERIN, "delete", &pipeline));
    assert_eq!(
        sandbox.purges(),
        [("team".into(), PLATFORM.into(), pipeline.clone(), "delete".into())]
    );
    assert_eq!(purged_metric(&server), 1);
}

#[test]
fn issue_17_a_user_removed_from_the_team_that_made_them_a_member_loses_their_own_shares() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let stack = format!("stack/{ID4}");
    assert!(!production.allows(BOB, "delete", &stack), "not by bob's role");
    production.share(BOB, false, &stack, &["delete"]);
    production.share(NINA, false, &stack, &["delete"]);
    assert!(production.allows(BOB, "delete", &stack));

    // Out of ml-eng, bob is an organization member with no role: no longer a member.
    sandbox.edit_and_reload(&server, ML_ENG_MEMBERS, "    members: [nina]\n");
    assert!(!production.allows(BOB, "delete", &stack), "bob's own share went");
    assert!(
        production.allows(NINA, "delete", &stack),
        "nina is still in ml-eng"
    );
    assert_eq!(
        sandbox.purges(),
        [("user".into(), BOB.into(), stack.clone(), "delete".into())]
    );
}

#[test]
fn issue_17_a_guest_who_was_never_a_member_keeps_what_was_shared() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let staging = Workspace::login(&server, STAGING, ENROLL_STAGING);
    let pipeline = format!("{CHURN}:pipeline/{ID1}");
    let stack = format!("stack/{ID2}");
    production.share(GRACE, false, &pipeline, &["read"]);
    // ivan is a member of staging, never of production: a guest there.
    production.share(IVAN, false, &stack, &["read"]);
    staging.share(CAROL, false, &stack, &["update"]);
    // Any removal reloads and settles the memberships; then a restart settles them again.
    sandbox.edit_and_reload(&server, DAVE_BINDING, "");
    drop(server);
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let staging = Workspace::login(&server, STAGING, ENROLL_STAGING);
    assert!(
        production.allows(GRACE, "read", &pipeline),
        "grace keeps her share"
    );
    assert!(
        production.allows(IVAN, "read", &stack),
        "ivan keeps his share in production"
    );
    assert!(
        staging.allows(CAROL, "update", &stack),
        "carol is still an organization viewer"
    );
    assert!(sandbox.purges().is_empty(), "{:?}", sandbox.purges());
    assert_eq!(enter(&server, "grace", PRODUCTION).status, 200, "a guest enters");
}

#[test]
fn issue_17_a_removal_made_while_stopped_is_caught_at_the_next_start() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let stack = format!("stack/{ID1}");
    production.share(DAVE, false, &stack, &["delete"]);
    production.share(CI_BOT, false, &stack, &["delete"]);
    assert!(production.allows(DAVE, "delete", &stack));
    drop(server);

    sandbox.edit(DAVE_BINDING, "");
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    assert!(!production.allows(DAVE, "delete", &stack), "purged at start");
    assert!(
        production.allows(CI_BOT, "delete", &stack),
        "ci-bot is still a member"
    );
    assert_eq!(
        sandbox.purges(),
        [("user".into(), DAVE.into(), stack.clone(), "delete".into())]
    );
    assert_eq!(purged_metric(&server), 1);
}

#[test]
fn issue_17_an_invalid_edit_purges_nothing() {
    let sandbox = Sandbox::new();
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    let stack = format!("stack/{ID1}");
    production.share(DAVE, false, &stack, &["delete"]);
    // dave's binding removed, but the file refers to a team that does not exist: invalid.
    let (_, before) = server.get("/v1/status");
    sandbox.edit(
        DAVE_BINDING,
        "  - {team: no-such-team, role: viewer, workspace: production}\n",
    );
    let status = server.wait_status(|s| s["reloads"]["failed"] != 0);
    assert_eq!(
        status["revision"], before["revision"],
        "the active snapshot stays"
    );
    assert!(production.allows(DAVE, "delete", &stack), "nothing purged");
    assert!(sandbox.purges().is_empty());
    assert_eq!(purged_metric(&server), 0);
    // Restarting on the invalid file is refused; the share is still there for a fixed file.
    drop(server);
    sandbox.edit(
        "  - {team: no-such-team, role: viewer, workspace: production}\n",
        DAVE_BINDING,
    );
    let server = sandbox.start();
    let production = Workspace::login(&server, PRODUCTION, ENROLL_PRODUCTION);
    assert!(production.allows(DAVE, "delete", &stack));
    assert!(sandbox.purges().is_empty());
}

/// The refusal is logged at info (principal, workspace, why), and never with the credential.
#[test]
fn issue_17_a_refused_entry_is_logged_without_the_key() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = common::serve_bundled(&common::root())
        .args([
            "--shares-db",
            ":memory:",
            "--listen",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ])
        .args(["--log", "info"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().strip_prefix("listening on ").unwrap().to_owned();
    // Killed on drop, also when an assertion fails.
    let server = Server {
        child,
        base,
        shares: None,
    };
    let path = format!(
        "/zenml/users/authorize_server?{}",
        query(&[("server_id", PRODUCTION)])
    );
    let bearer = format!("Bearer {}", key("grace"));
    let reply = server.send("GET", &path, &[("authorization", &bearer)], None);
    assert_eq!(reply.status, 403, "{reply:?}");
    let deadline = Instant::now() + HANG_GUARD;
    let refused = loop {
        let text = std::fs::read_to_string(&log).unwrap();
        if let Some(line) = text.lines().find(|l| l.contains("workspace entry refused")) {
            break line.to_owned();
        }
        assert!(Instant::now() < deadline, "no refusal logged: {text}");
        std::thread::sleep(Duration::from_millis(20));
    };
    drop(server);
    let record: Value = serde_json::from_str(&refused).unwrap();
    assert_eq!(record["level"], "INFO", "{record}");
    assert_eq!(record["fields"]["principal.id"], GRACE, "{record}");
    assert_eq!(record["fields"]["workspace.id"], PRODUCTION, "{record}");
    assert!(
        record["fields"]["reason"]
            .as_str()
            .unwrap()
            .contains("`grace` has no role in workspace `production`"),
        "{record}"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(!text.contains(key("grace")), "the API key is never logged");
}
