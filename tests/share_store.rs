//! One share-store suite, run against both backends: SQLite (a file in a temporary directory)
//! and PostgreSQL (a database of its own on the local server, dropped at the end). Each test
//! takes a [`Backend`] that opens the same storage again as often as asked, like a restart or
//! a second replica.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use std::sync::Arc;

use zenml_authz::store::{
    MEMBERSHIP_REMOVED, PostgresShareStore, RESOURCE_DELETED, ShareEvent, ShareSnapshot, ShareStore, Shares,
    SqliteShareStore, StoredShare,
};
use zenml_authz::zenml::{Grantee, Memberships, Reach, Resource};

const W: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
const R: &str = "stack/11111111-1111-4111-8111-111111111111";
const R2: &str = "stack/22222222-2222-4222-8222-222222222222";

/// Opens one storage, again and again.
trait Backend {
    fn open(&self) -> Box<dyn ShareStore>;
}

struct Sqlite(tempfile::TempDir);

impl Backend for Sqlite {
    fn open(&self) -> Box<dyn ShareStore> {
        Box::new(SqliteShareStore::open(&self.0.path().join("nested/shares.db")).unwrap())
    }
}

struct Postgres(common::postgres::TestDatabase);

impl Backend for Postgres {
    fn open(&self) -> Box<dyn ShareStore> {
        Box::new(PostgresShareStore::open(&self.0.url).unwrap())
    }
}

/// Each test, once per backend.
macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(#[test]
            fn $test() {
                super::$test(&super::Sqlite(tempfile::tempdir().unwrap()));
            })*
        }
        mod postgres {
            $(#[test]
            fn $test() {
                super::$test(&super::Postgres(crate::common::postgres::TestDatabase::create()));
            })*
        }
    };
}

suite!(
    shares_survive_reopening,
    an_empty_action_set_removes_the_row,
    a_purge_removes_every_share_of_the_resource_in_its_workspace_only,
    memberships_are_remembered_and_settling_purges_with_the_reason,
    each_settle_leaves_exactly_its_memberships_remembered,
    concurrent_replacements_from_two_stores_end_whole_and_are_all_audited,
    a_resync_takes_in_what_another_store_wrote_with_a_new_version,
);

fn share(resource: &str, grantee: Grantee, actions: &[&str]) -> StoredShare {
    StoredShare {
        workspace: W.into(),
        resource: resource.into(),
        grantee,
        actions: actions.iter().map(|a| (*a).to_owned()).collect(),
    }
}

fn shares_survive_reopening(backend: &dyn Backend) {
    let resource = Resource::parse(R).unwrap();
    {
        let shares = Shares::open(backend.open()).unwrap();
        shares
            .set(
                W,
                &resource,
                Grantee::Team("t".into()),
                vec!["update".into(), "read".into()],
                Some("u0"),
            )
            .unwrap();
        shares
            .set(W, &resource, Grantee::User("u".into()), vec!["read".into()], None)
            .unwrap();
        assert_eq!(shares.snapshot().version, 2);
    }
    let store = backend.open();
    let mut loaded = store.load().unwrap();
    loaded.sort_by(|a, b| a.grantee.cmp(&b.grantee));
    assert_eq!(loaded.len(), 2);
    assert_eq!(loaded[1].actions, ["read", "update"]);
    let shares = Shares::open(store).unwrap();
    assert_eq!(
        shares.snapshot().set.shared_with(W, R, "update"),
        (vec![], vec!["t"])
    );
    shares.purge(W, std::slice::from_ref(&resource)).unwrap();
    assert!(shares.snapshot().set.is_empty());
    assert!(backend.open().load().unwrap().is_empty());
}

fn an_empty_action_set_removes_the_row(backend: &dyn Backend) {
    let store = backend.open();
    let user = || Grantee::User("u".into());
    store.set(&share(R, user(), &["read"]), None).unwrap();
    store.set(&share(R, user(), &[]), None).unwrap();
    assert!(store.load().unwrap().is_empty());
    let kinds: Vec<_> = store
        .events()
        .unwrap()
        .into_iter()
        .map(|event| (event.kind, event.actions))
        .collect();
    assert_eq!(
        kinds,
        [
            ("set".to_owned(), Some(vec!["read".to_owned()])),
            ("set".to_owned(), Some(vec![]))
        ]
    );
}

fn a_purge_removes_every_share_of_the_resource_in_its_workspace_only(backend: &dyn Backend) {
    let store = backend.open();
    store
        .set(&share(R, Grantee::User("u".into()), &["read"]), Some("ada"))
        .unwrap();
    store
        .set(&share(R, Grantee::Team("t".into()), &["read", "update"]), None)
        .unwrap();
    store
        .set(&share(R2, Grantee::User("u".into()), &["read"]), None)
        .unwrap();
    let mut elsewhere = share(R, Grantee::User("u".into()), &["read"]);
    elsewhere.workspace = "other-workspace".into();
    store.set(&elsewhere, None).unwrap();

    assert_eq!(store.purge(W, &[R.to_owned()]).unwrap(), 2);
    let left: Vec<(String, String)> = backend
        .open()
        .load()
        .unwrap()
        .into_iter()
        .map(|s| (s.workspace, s.resource))
        .collect();
    assert_eq!(
        left,
        [
            ("99baf825-b21e-442f-ba98-8246d8d9ac88".to_owned(), R2.to_owned()),
            ("other-workspace".to_owned(), R.to_owned())
        ]
    );
    let events = store.events().unwrap();
    assert_eq!(events[0].shared_by.as_deref(), Some("ada"));
    assert_eq!(
        events.last().unwrap(),
        &ShareEvent {
            kind: "purge".into(),
            workspace: W.into(),
            resource: R.into(),
            grantee: None,
            actions: None,
            shared_by: None,
            reason: Some(RESOURCE_DELETED.into()),
        }
    );
}

fn memberships_are_remembered_and_settling_purges_with_the_reason(backend: &dyn Backend) {
    let mut reach = Reach {
        organization: true,
        ..Reach::default()
    };
    reach.workspaces.insert(W, ());
    reach.projects.insert("p", W.into());
    let current = Memberships::from_reaches([
        (Grantee::User("u".into()), reach.clone()),
        (Grantee::Team("t".into()), Reach::default()),
    ]);
    let kept = share(R2, Grantee::User("u".into()), &["read"]);
    let lost = share(R, Grantee::User("u".into()), &["read", "update"]);
    {
        let store = backend.open();
        assert_eq!(store.memberships().unwrap(), Memberships::default());
        store.set(&kept, None).unwrap();
        store.set(&lost, None).unwrap();
        store
            .settle_memberships(&current, std::slice::from_ref(&lost), MEMBERSHIP_REMOVED)
            .unwrap();
    }
    let store = backend.open();
    assert_eq!(store.memberships().unwrap(), current);
    assert_eq!(
        store.memberships().unwrap().reach(&Grantee::User("u".into())),
        Some(&reach)
    );
    assert_eq!(store.load().unwrap(), [kept]);
    assert_eq!(
        store.events().unwrap().last().unwrap(),
        &ShareEvent {
            kind: "purge".into(),
            workspace: W.into(),
            resource: R.into(),
            grantee: Some(Grantee::User("u".into())),
            actions: Some(vec!["read".into(), "update".into()]),
            shared_by: None,
            reason: Some(MEMBERSHIP_REMOVED.into()),
        }
    );
    // Settling again replaces what is remembered, whole.
    store
        .settle_memberships(&Memberships::default(), &[], MEMBERSHIP_REMOVED)
        .unwrap();
    assert_eq!(backend.open().memberships().unwrap(), Memberships::default());
}

/// A settle writes only what changed since the remembered rows: whatever the step (a grantee
/// added or gone, a place added or gone, the organization flag turned, a project moved to
/// another workspace, everything emptied and filled again), what is read back is the step's
/// memberships exactly, also from a store opened afresh.
fn each_settle_leaves_exactly_its_memberships_remembered(backend: &dyn Backend) {
    let user = |id: &str| Grantee::User(id.into());
    let team = |id: &str| Grantee::Team(id.into());
    // (step, memberships)
    let steps = [
        (
            "first",
            Memberships::from_reaches([
                (user("u"), Reach::of(false, &["w1"], &[("p1", "w1")])),
                (user("v"), Reach::of(true, &[], &[])),
                (team("t"), Reach::of(false, &["w1", "w2"], &[])),
            ]),
        ),
        (
            "a grantee gone, one added, a place added, the flag turned",
            Memberships::from_reaches([
                (user("u"), Reach::of(false, &["w1", "w2"], &[("p1", "w1")])),
                (user("v"), Reach::of(false, &["w2"], &[])),
                (user("x"), Reach::of(false, &[], &[("p2", "w2")])),
            ]),
        ),
        (
            "a project moved to another workspace, a place gone",
            Memberships::from_reaches([
                (user("u"), Reach::of(false, &["w1"], &[("p1", "w2")])),
                (user("v"), Reach::of(false, &["w2"], &[])),
                (user("x"), Reach::of(false, &[], &[("p2", "w2")])),
            ]),
        ),
        ("emptied", Memberships::default()),
        (
            "filled again",
            Memberships::from_reaches([(team("t"), Reach::of(true, &["w1"], &[("p1", "w1"), ("p3", "w3")]))]),
        ),
    ];
    let store = backend.open();
    for (step, memberships) in steps {
        store
            .settle_memberships(&memberships, &[], MEMBERSHIP_REMOVED)
            .unwrap();
        assert_eq!(store.memberships().unwrap(), memberships, "{step}");
        assert_eq!(
            backend.open().memberships().unwrap(),
            memberships,
            "{step}: reopened"
        );
    }
}

/// Writes each store makes in the concurrency test.
const WRITES: usize = 200;

/// Two stores on one storage (two replicas) replace the same (resource, grantee)s at once, one
/// granting its action list, the other alternating its list and a revoke, key after key: each
/// share ends as one of the lists (or revoked), never a mix; the audit log has every write, and
/// its last row for each key is the state the key ended in (the audit order is the order the
/// writes took effect, also when a revoke finds no row yet).
fn concurrent_replacements_from_two_stores_end_whole_and_are_all_audited(backend: &dyn Backend) {
    let lists: [[&[&str]; 2]; 2] = [
        [&["read", "update"], &["read", "update"]],
        [&[], &["delete", "share"]],
    ];
    let stores: Vec<Arc<dyn ShareStore>> = vec![Arc::from(backend.open()), Arc::from(backend.open())];
    // Both write each key at the same moment.
    let barrier = Arc::new(std::sync::Barrier::new(2));
    let key = |write: usize| format!("stack/{write:08}-1111-4111-8111-111111111111");
    let writers: Vec<_> = stores
        .iter()
        .zip(lists)
        .map(|(store, alternating)| {
            let store = Arc::clone(store);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                for write in 0..WRITES {
                    let actions = alternating[write % 2];
                    barrier.wait();
                    store
                        .set(&share(&key(write), Grantee::User("u".into()), actions), None)
                        .unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let owned = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect::<Vec<_>>();
    let loaded = backend.open().load().unwrap();
    let events = stores[0].events().unwrap();
    assert_eq!(events.len(), 2 * WRITES);
    for (list, expected) in [
        (&["read", "update"][..], WRITES),
        (&["delete", "share"], WRITES / 2),
        (&[], WRITES / 2),
    ] {
        let count = events
            .iter()
            .filter(|event| event.actions.as_deref() == Some(&owned(list)))
            .count();
        assert_eq!(count, expected, "{list:?}");
    }
    for write in 0..WRITES {
        let resource = key(write);
        let rows: Vec<&StoredShare> = loaded.iter().filter(|s| s.resource == resource).collect();
        let ended = match rows.as_slice() {
            [] => Vec::new(),
            [one] => one.actions.clone(),
            more => panic!("one row at most: {more:?}"),
        };
        assert!(
            [&["read", "update"][..], &["delete", "share"], &[]]
                .iter()
                .any(|list| ended == owned(list)),
            "a mix: {ended:?}"
        );
        let last = events
            .iter()
            .rev()
            .find(|event| event.resource == resource)
            .and_then(|event| event.actions.clone());
        assert_eq!(
            last,
            Some(ended),
            "{resource}: the last audit row is the state it ended in"
        );
    }
}

/// What another store (another sidecar) wrote reaches the view by `Shares::resync`, with a new
/// version each time it differs (the decision cache keys on it), and only then.
fn a_resync_takes_in_what_another_store_wrote_with_a_new_version(backend: &dyn Backend) {
    let shares = Shares::open(backend.open()).unwrap();
    let other = backend.open();
    assert!(!shares.resync().unwrap(), "nothing changed");
    assert_eq!(shares.snapshot().version, 0);

    other
        .set(&share(R, Grantee::User("u".into()), &["update", "read"]), None)
        .unwrap();
    assert!(shares.resync().unwrap());
    assert_eq!(shares.snapshot().version, 1);
    assert_eq!(
        shares.snapshot().set.shared_with(W, R, "update"),
        (vec!["u"], vec![])
    );
    assert!(!shares.resync().unwrap(), "the same shares: the same version");
    assert_eq!(shares.snapshot().version, 1);

    other
        .set(&share(R, Grantee::User("u".into()), &[]), None)
        .unwrap();
    assert!(shares.resync().unwrap());
    assert_eq!(shares.snapshot().version, 2);
    assert!(shares.snapshot().set.is_empty());

    // A stored share none of whose actions ZenML has (a newer sidecar's) grants nothing: the
    // view holds the same shares, so no resync is a change (each was, and bumped the version).
    other
        .set(&share(R, Grantee::User("u".into()), &["teleport"]), None)
        .unwrap();
    for _ in 0..2 {
        assert!(
            !shares.resync().unwrap(),
            "no action ZenML has: nothing to decide on"
        );
    }
    assert_eq!(shares.snapshot().version, 2);
}

/// Waits (on a runtime of its own) until `changes` reports a change.
fn next_change(changes: &mut tokio::sync::watch::Receiver<u64>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async { tokio::time::timeout(common::HANG_GUARD, changes.changed()).await })
        .expect("a change notification")
        .unwrap();
}

/// The view after the next notification, which must have changed it.
fn refreshed(shares: &Shares, changes: &mut tokio::sync::watch::Receiver<u64>) -> Arc<ShareSnapshot> {
    next_change(changes);
    assert!(shares.refresh().unwrap(), "the notification changed the view");
    shares.snapshot()
}

/// PostgreSQL: a write through another store notifies this one naming the resource it changed,
/// and `Shares::refresh` reloads only what was named (a row written without a notification
/// stays out until `Shares::resync`, the periodic safety net); a settle names the resources it
/// purged, and nothing when it purged none. The listener's first connect says "everything".
#[test]
fn postgres_a_notification_names_what_changed_and_a_refresh_reloads_only_that() {
    let database = common::postgres::TestDatabase::create();
    let shares = Shares::open(Box::new(PostgresShareStore::open(&database.url).unwrap())).unwrap();
    let other = PostgresShareStore::open(&database.url).unwrap();
    let mut changes = shares.changes().expect("PostgreSQL reports changes");
    // The listener connected: everything may have changed, and nothing did.
    next_change(&mut changes);
    assert!(!shares.refresh().unwrap());
    assert_eq!(shares.snapshot().version, 0);

    other
        .set(&share(R, Grantee::User("u".into()), &["read"]), None)
        .unwrap();
    assert_eq!(
        refreshed(&shares, &mut changes).set.shared_with(W, R, "read"),
        (vec!["u"], vec![])
    );
    assert!(!shares.refresh().unwrap(), "taken: nothing left to reload");

    // A row without a notification, then a notified write of another resource.
    database
        .execute(&format!(
            "INSERT INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions) \
             VALUES ('{W}', '{R2}', 'team', 't', 'read')"
        ))
        .unwrap();
    other
        .set(&share(R, Grantee::Team("t".into()), &["delete"]), None)
        .unwrap();
    let view = refreshed(&shares, &mut changes);
    assert_eq!(view.set.shared_with(W, R, "delete"), (vec![], vec!["t"]));
    assert_eq!(view.set.shared_with(W, R, "read"), (vec!["u"], vec![]));
    assert_eq!(view.set.shared_with(W, R2, "read"), (vec![], vec![]), "not named");
    assert!(shares.resync().unwrap());
    assert_eq!(
        shares.snapshot().set.shared_with(W, R2, "read"),
        (vec![], vec!["t"])
    );
    assert_eq!(shares.snapshot().version, view.version + 1);

    // A notified write that grants nothing ZenML decides on (an action it does not have, a
    // newer sidecar's) leaves the view as it was: no new version, the decision cache kept.
    let version = shares.snapshot().version;
    other
        .set(&share(R2, Grantee::User("v".into()), &["teleport"]), None)
        .unwrap();
    next_change(&mut changes);
    assert!(
        !shares.refresh().unwrap(),
        "no action ZenML has: nothing to decide on"
    );
    assert_eq!(shares.snapshot().version, version);

    // A settle notifies the resources of the shares it purged, and nothing when it purged
    // none: a row written without a notification stays out of the view both times (a settle
    // that said "everything" would have reloaded it), while the purge and a later notified
    // write are seen.
    let current = Memberships::from_reaches([(Grantee::User("u".into()), Reach::of(false, &[W], &[]))]);
    other
        .settle_memberships(&current, &[], MEMBERSHIP_REMOVED)
        .unwrap();
    database
        .execute(&format!(
            "INSERT INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions) \
             VALUES ('{W}', '{R2}', 'user', 'w', 'update')"
        ))
        .unwrap();
    let lost = share(R, Grantee::Team("t".into()), &["delete"]);
    other
        .settle_memberships(&current, std::slice::from_ref(&lost), MEMBERSHIP_REMOVED)
        .unwrap();
    let view = refreshed(&shares, &mut changes);
    assert_eq!(
        view.set.shared_with(W, R, "delete"),
        (vec![], vec![]),
        "the purge is seen"
    );
    assert_eq!(
        view.set.shared_with(W, R2, "update"),
        (vec![], vec![]),
        "not named"
    );
    other
        .set(&share(R, Grantee::User("u".into()), &["update"]), None)
        .unwrap();
    let view = refreshed(&shares, &mut changes);
    assert_eq!(view.set.shared_with(W, R, "update"), (vec!["u"], vec![]));
    assert_eq!(
        view.set.shared_with(W, R2, "update"),
        (vec![], vec![]),
        "still not named"
    );
}
