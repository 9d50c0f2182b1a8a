//! Issue 18: many replicas, one truth.
//!
//! Several sidecars on one PostgreSQL share database (one per ZenML server replica): a thousand
//! concurrent, contending share writes through two of them end with every sidecar, a fresh one
//! included, answering exactly what the database's final `shares` table (plus the roles) grants;
//! and a workspace token issued by one sidecar is accepted by every sidecar with the same token
//! secret, and refused by one with another secret.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::postgres::TestDatabase;
use common::sample::{
    ADA, AUDITORS, CAROL, CHURN, DAVE, DEPLOYER, ERIN, FRAUD, GRACE, JUDY, PLATFORM, PRODUCTION,
};
use common::{Server, query, send_to};
use serde_json::json;

/// The try-out enrollment key of `production` (its hash is in policies/directory.yaml).
const ENROLL_PRODUCTION: &str = "zenml-authz-enroll-production-d2087639f707d7a2ce661c0aa9f663d0";
/// The seed of the write sequence: every run sends the same writes (their interleaving is the
/// scheduler's).
const SEED: u64 = 0x5eed_0018_0000_0001;
/// How many share writes, through how many client threads.
const WRITES: usize = 1_000;
const THREADS: usize = 16;
/// The actions the writes share, subsets of these (the empty set revokes).
const ACTIONS: [&str; 3] = ["read", "update", "delete"];

/// A small, fixed pseudo-random sequence (xorshift64*): no dependency, same on every platform.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap()
    }
}

/// Who a share is for: `("user" | "team", id)`, as the `shares` table's `grantee_kind` and
/// `grantee_id`.
type Grantee = (&'static str, &'static str);

/// The grantees the writes contend on: two users, two teams.
const GRANTEES: [Grantee; 4] = [
    ("user", GRACE),
    ("user", DAVE),
    ("team", PLATFORM),
    ("team", AUDITORS),
];

/// The members of the teams in [`GRANTEES`] (policies/directory.yaml).
fn team_members(team: &str) -> &'static [&'static str] {
    match team {
        PLATFORM => &[ERIN],
        AUDITORS => &[CAROL, DEPLOYER],
        _ => panic!("no members listed for team {team}"),
    }
}

/// The users the grid asks about: every user grantee, every member of a team grantee, and judy,
/// who is neither (no write may reach her).
const GRID_USERS: [&str; 6] = [GRACE, DAVE, ERIN, CAROL, DEPLOYER, JUDY];

/// Twenty resources of the production workspace: pipelines and models in churn and fraud.
fn resources() -> Vec<String> {
    (0..20u32)
        .map(|i| {
            let project = if i < 10 { CHURN } else { FRAUD };
            let kind = if i % 3 == 0 { "model" } else { "pipeline" };
            format!("{project}:{kind}/00000000-0000-4000-8000-{:012x}", 0x18_0000 + i)
        })
        .collect()
}

/// One share write: which sidecar (0 = A, 1 = B), the resource, the grantee and the complete
/// new action set.
#[derive(Debug, Clone)]
struct Write {
    sidecar: usize,
    resource: String,
    grantee: Grantee,
    actions: Vec<&'static str>,
}

/// The [`WRITES`] writes, from [`SEED`].
fn writes(resources: &[String]) -> Vec<Write> {
    let mut rng = XorShift(SEED);
    (0..WRITES)
        .map(|_| {
            let sidecar = rng.below(2);
            let resource = resources[rng.below(resources.len())].clone();
            let grantee = GRANTEES[rng.below(GRANTEES.len())];
            let mask = rng.below(1 << ACTIONS.len());
            let actions = ACTIONS
                .iter()
                .enumerate()
                .filter(|(bit, _)| mask & (1 << bit) != 0)
                .map(|(_, action)| *action)
                .collect();
            Write {
                sidecar,
                resource,
                grantee,
                actions,
            }
        })
        .collect()
}

fn headers(token: &str) -> [(&'static str, String); 2] {
    [
        ("authorization", format!("Bearer {token}")),
        ("zenml-server-id", PRODUCTION.to_owned()),
    ]
}

/// Sends `write` to the sidecar at `base`; returns the status.
fn send_write(base: &str, token: &str, write: &Write) -> u16 {
    let (user, team) = match write.grantee {
        ("user", id) => (Some(id), None),
        (_, id) => (None, Some(id)),
    };
    let body = json!({
        "user_id": user,
        "team_id": team,
        "sharing_user_id": ADA,
        "resource": write.resource,
        "actions": write.actions,
    })
    .to_string();
    let [a, b] = headers(token);
    let reply = send_to(
        base,
        "POST",
        "/zenml/rbac/resource_members",
        &[(a.0, &a.1), (b.0, &b.1)],
        Some(("application/json", &body)),
    )
    .unwrap();
    if reply.status != 200 {
        eprintln!("{write:?}: {reply:?}");
    }
    reply.status
}

/// One answer per (user, action, resource).
type Grid = BTreeMap<(&'static str, &'static str, String), bool>;

/// Asks `server` the whole grid: one `check_permissions` per (user, action), every resource in
/// the body.
fn grid(server: &Server, token: &str, resources: &[String]) -> Grid {
    let mut answers = Grid::new();
    for user in GRID_USERS {
        for action in ACTIONS {
            let answer = server.check_permissions(token, PRODUCTION, user, action, resources);
            for resource in resources {
                let allowed = answer[resource.as_str()]
                    .as_bool()
                    .unwrap_or_else(|| panic!("no answer for {resource}: {answer}"));
                answers.insert((user, action, resource.clone()), allowed);
            }
        }
    }
    answers
}

/// The cells where `left` and `right` differ, for a failure message.
fn differences(left: &Grid, right: &Grid) -> Vec<String> {
    left.iter()
        .filter(|(cell, allowed)| right.get(*cell) != Some(allowed))
        .map(|((user, action, resource), allowed)| {
            format!(
                "{user} {action} {resource}: {allowed} vs {:?}",
                right.get(&(*user, *action, resource.clone()))
            )
        })
        .collect()
}

/// One row of the `shares` table.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ShareRow {
    workspace: String,
    resource: String,
    grantee_kind: String,
    grantee_id: String,
    actions: String,
}

/// Reads the final `shares` table and the `share_events` kinds, directly from the database.
fn read_database(url: &str) -> (Vec<ShareRow>, BTreeMap<String, i64>) {
    let shares = common::postgres::query(
        url,
        "SELECT workspace_id, resource, grantee_kind, grantee_id, actions FROM shares",
    )
    .iter()
    .map(|row| ShareRow {
        workspace: row.get(0),
        resource: row.get(1),
        grantee_kind: row.get(2),
        grantee_id: row.get(3),
        actions: row.get(4),
    })
    .collect();
    let events = common::postgres::query(url, "SELECT kind, count(*) FROM share_events GROUP BY kind")
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect();
    (shares, events)
}

/// A token secret file with `text`.
fn secret_file(text: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}

#[test]
fn a_thousand_concurrent_share_writes_through_two_replicas_end_consistent() {
    let database = TestDatabase::create();
    let secret = common::postgres::token_secret();
    // A long resync: the notifications, not the safety net, must carry the changes.
    let flags = common::postgres::replica_flags(&database.url, &secret);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Server::start(&flags);
    let b = Server::start(&flags);
    let token = a.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    let resources = resources();
    let writes = writes(&resources);

    // The sequence contends: many writes per (resource, grantee), revokes among them, both
    // sidecars, both kinds of grantee.
    let keys: BTreeSet<(&str, Grantee)> = writes.iter().map(|w| (w.resource.as_str(), w.grantee)).collect();
    assert!(keys.len() <= resources.len() * GRANTEES.len());
    assert!(writes.len() >= 8 * keys.len(), "{} keys", keys.len());
    assert!(writes.iter().filter(|w| w.actions.is_empty()).count() >= 50);
    assert!(writes.iter().filter(|w| w.sidecar == 1).count() >= 400);
    assert!(writes.iter().filter(|w| w.grantee.0 == "team").count() >= 300);

    // THREADS clients at once; thread t sends writes t, t + THREADS, … in order, each to its
    // sidecar.
    let bases = [a.base.clone(), b.base.clone()];
    let statuses: Vec<(usize, u16)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (writes, bases, token) = (&writes, &bases, &token);
                scope.spawn(move || {
                    (thread..writes.len())
                        .step_by(THREADS)
                        .map(|i| (i, send_write(&bases[writes[i].sidecar], token, &writes[i])))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect()
    });
    assert_eq!(statuses.len(), WRITES);
    let refused: Vec<_> = statuses.iter().filter(|(_, s)| *s != 200).collect();
    assert!(refused.is_empty(), "writes not answered 200: {refused:?}");

    // The database's final state, read directly.
    let (rows, events) = read_database(&database.url);
    assert_eq!(
        events,
        BTreeMap::from([("set".to_owned(), i64::try_from(WRITES).unwrap())]),
        "share_events"
    );
    // Each row is a (resource, grantee) of the writes, and holds the last action set one of the
    // threads wrote for it (each thread's writes are in order; which thread's last write won is
    // the interleaving's); a (resource, grantee) without a row was last revoked by some thread.
    let mut last_by_thread: BTreeMap<(&str, Grantee), BTreeMap<usize, String>> = BTreeMap::new();
    for (i, write) in writes.iter().enumerate() {
        let mut sorted = write.actions.clone();
        sorted.sort_unstable();
        last_by_thread
            .entry((write.resource.as_str(), write.grantee))
            .or_default()
            .insert(i % THREADS, sorted.join(","));
    }
    let mut stored: BTreeMap<(&str, Grantee), &str> = BTreeMap::new();
    for row in &rows {
        assert_eq!(row.workspace, PRODUCTION, "{row:?}");
        let resource = resources
            .iter()
            .find(|r| **r == row.resource)
            .unwrap_or_else(|| panic!("a row for an unknown resource: {row:?}"));
        let grantee = GRANTEES
            .iter()
            .find(|(kind, id)| *kind == row.grantee_kind && *id == row.grantee_id)
            .unwrap_or_else(|| panic!("a row for an unknown grantee: {row:?}"));
        assert!(!row.actions.is_empty(), "an empty share row: {row:?}");
        assert!(
            stored
                .insert((resource.as_str(), *grantee), &row.actions)
                .is_none(),
            "two rows for one share: {row:?}"
        );
    }
    for (key, lasts) in &last_by_thread {
        let now = stored.get(key).copied().unwrap_or("");
        assert!(
            lasts.values().any(|last| last == now),
            "{key:?} is {now:?} in the database, the last write of no thread: {lasts:?}"
        );
    }
    assert!(rows.len() >= 20, "only {} shares remain", rows.len());

    // Which cells the database's shares grant: a row for the user, or for a team they are in.
    let shares_grant = |user: &str, action: &str, resource: &str| {
        rows.iter().any(|row| {
            row.resource == resource
                && row.actions.split(',').any(|a| a == action)
                && match row.grantee_kind.as_str() {
                    "user" => row.grantee_id == user,
                    _ => team_members(&row.grantee_id).contains(&user),
                }
        })
    };

    // What the roles alone grant: a sidecar on a fresh, empty database.
    let empty = TestDatabase::create();
    let roles_only = {
        let c2 = Server::start(&[
            "--shares-db",
            &empty.url,
            "--token-secret-file",
            secret.path().to_str().unwrap(),
        ]);
        grid(&c2, &token, &resources)
    };
    let expected: Grid = roles_only
        .iter()
        .map(|((user, action, resource), by_roles)| {
            let allowed = *by_roles || shares_grant(user, action, resource);
            ((*user, *action, resource.clone()), allowed)
        })
        .collect();
    // The grid can tell: shares decide some cells, and some cells are denied.
    let decided_by_shares = expected
        .iter()
        .filter(|(cell, allowed)| **allowed && !roles_only[*cell])
        .count();
    assert!(decided_by_shares >= 20, "{decided_by_shares} cells");
    assert!(expected.values().any(|allowed| !allowed));
    assert_eq!(expected.len(), GRID_USERS.len() * ACTIONS.len() * resources.len());

    // A and B converge on the database's truth (the hang guard only bounds a wait that would
    // never end).
    let deadline = std::time::Instant::now() + common::HANG_GUARD;
    loop {
        let (on_a, on_b) = (grid(&a, &token, &resources), grid(&b, &token, &resources));
        if on_a == expected && on_b == expected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the replicas never agreed with the database:\nA vs database: {:#?}\nB vs database: {:#?}\nA vs B: {:#?}",
            differences(&on_a, &expected),
            differences(&on_b, &expected),
            differences(&on_a, &on_b)
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A fresh sidecar on the same database answers the same, at once.
    let c = Server::start(&flags);
    let on_c = grid(&c, &token, &resources);
    assert!(
        on_c == expected,
        "C vs database: {:#?}",
        differences(&on_c, &expected)
    );
    let (on_a, on_b) = (grid(&a, &token, &resources), grid(&b, &token, &resources));
    assert!(on_a == on_c, "A vs C: {:#?}", differences(&on_a, &on_c));
    assert!(on_b == on_c, "B vs C: {:#?}", differences(&on_b, &on_c));
}

fn check_status(server: &Server, token: &str) -> u16 {
    let [a, b] = headers(token);
    let pipeline = format!("{CHURN}:pipeline/11111111-1111-4111-8111-111111111111");
    let body = json!([pipeline]).to_string();
    let reply = server.send(
        "POST",
        &format!(
            "/zenml/rbac/check_permissions?{}",
            query(&[("user_id", ADA), ("action", "read")])
        ),
        &[(a.0, &a.1), (b.0, &b.1)],
        Some(("application/json", &body)),
    );
    if reply.status == 200 {
        assert_eq!(reply.body[pipeline.as_str()], json!(true), "{reply:?}");
    }
    reply.status
}

#[test]
fn a_workspace_token_from_one_replica_works_on_every_replica() {
    let database = TestDatabase::create();
    let secret = secret_file("replicas-test-token-secret-0123456789abcdef");
    let secret = secret.path().to_str().unwrap();
    let flags = ["--shares-db", &database.url, "--token-secret-file", secret];
    let a = Server::start(&flags);
    let b = Server::start(&flags);
    let token = a.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    assert_eq!(check_status(&a, &token), 200);
    assert_eq!(check_status(&b, &token), 200);
    // A replica started after the login accepts it too.
    let c = Server::start(&flags);
    assert_eq!(check_status(&c, &token), 200);

    // Another secret: the token is refused, and D's own tokens work.
    let other = secret_file("another-token-secret-fedcba9876543210fedcba");
    let d = Server::start(&[
        "--shares-db",
        &database.url,
        "--token-secret-file",
        other.path().to_str().unwrap(),
    ]);
    assert_eq!(check_status(&d, &token), 401);
    let own = d.zenml_login(PRODUCTION, ENROLL_PRODUCTION);
    assert_eq!(check_status(&d, &own), 200);
    // and D's token is refused by A, B and C
    for server in [&a, &b, &c] {
        assert_eq!(check_status(server, &own), 401);
    }
}
