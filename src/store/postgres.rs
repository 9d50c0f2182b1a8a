//! The PostgreSQL share store: one database for many sidecars (one per ZenML server replica).
//!
//! The [`ShareStore`] interface is synchronous, and its callers already run it off the async
//! workers (`spawn_blocking`, the reload thread, start-up before the server's runtime). So the
//! store keeps the driver (`tokio-postgres` with a `deadpool` pool) on a small runtime of its
//! own, one worker thread, and each call waits for its query there. The request path never
//! waits: it reads the in-memory view ([`super::Shares`]). A call made on a worker thread of a
//! multi-threaded runtime hands that thread over first (`block_in_place`), so no worker blocks
//! on the network either way. An async trait would have put the runtime question on every
//! caller, SQLite's included, for no gain: the writes are serialised by `Shares` anyway.
//!
//! Architecture Invariant: the same semantics as SQLite. Every change is one transaction with
//! its audit rows; a replacement is an upsert of one row whose actions are one value, so two
//! replicas replacing the same (resource, grantee) at once end in one of the two states, never
//! a mix, and the audit table records both, in the order they took effect (writes of one
//! key take turns under a transaction-scoped advisory lock); `settle_memberships` locks the memberships table
//! for its transaction, so two replicas settling at once apply one after the other. A commit
//! returns only once PostgreSQL reports it durable (`synchronous_commit` as the server has it).
//!
//! Migrations (`migrations/postgres/NNNN_name.sql`) run at open, in one transaction under an
//! advisory lock (replicas starting together apply each once), recorded in
//! `zenml_authz_migrations`.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::{Changed, ShareEvent, ShareStore, StoreError, StoreHealth, StoredShare, grantee_columns};
use crate::zenml::Memberships;

/// The migrations, in order: (version, name, SQL). Each file under `migrations/postgres/` is
/// listed here once (a unit test checks).
pub const MIGRATIONS: &[(i32, &str, &str)] = &[(
    1,
    "0001_shares.sql",
    include_str!("../../migrations/postgres/0001_shares.sql"),
)];

/// Connections the pool keeps at most (writes are serialised by `Shares`; one more serves a
/// read during a write, and the rest a burst of command-line reads).
const POOL_SIZE: usize = 4;
/// How long a call waits for a connection, or for one to be made, before it fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The channel every committed change notifies (`LISTEN`/`NOTIFY`), delivered to every
/// sidecar on the database, the writer's own included.
pub const CHANNEL: &str = "zenml_authz_shares";
/// How long the listener waits before it connects again after losing its connection.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);
/// Longest notification payload sent; PostgreSQL's limit is 8000 bytes. A change that names
/// more resources says "everything" instead.
const MAX_PAYLOAD: usize = 7_900;
/// The payload that says "anything may have changed: reload all".
const EVERYTHING: &str = "*";
/// The advisory lock key that serialises migrations across replicas ("zenml-az" in ASCII).
const MIGRATION_LOCK: i64 = 0x7a65_6e6d_6c2d_617a;

/// A share store in a PostgreSQL database.
pub struct PostgresShareStore {
    /// The store's own runtime; `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
    pool: Pool,
    /// Where it is, without the password (for messages).
    target: String,
    /// Bumped when another process may have changed the shares (a notification, or a
    /// reconnect of the listener, after which some may have been missed).
    changes: tokio::sync::watch::Receiver<u64>,
    /// What the notifications named since the last [`ShareStore::take_changed`], and whether
    /// the database is reachable; shared with the listener.
    link: Arc<Mutex<Link>>,
}

/// The store's view of its database, written by the listener and by every call.
#[derive(Debug, Default)]
struct Link {
    /// Set while the listener has no connection: since when, and why.
    listener_down: Option<(SystemTime, String)>,
    /// Set by a call that could not reach the database, until one does.
    call_failed: Option<(SystemTime, String)>,
    /// The last failure of either, kept after recovery.
    last_error: Option<String>,
    /// Changes named by notifications and not yet taken.
    pending: Pending,
}

#[derive(Debug, Default)]
struct Pending {
    everything: bool,
    resources: BTreeSet<(String, String)>,
}

impl Link {
    fn down(slot: &mut Option<(SystemTime, String)>, last: &mut Option<String>, error: String) {
        let since = slot.as_ref().map_or_else(SystemTime::now, |(since, _)| *since);
        *last = Some(error.clone());
        *slot = Some((since, error));
    }

    fn everything(&mut self) {
        self.pending.everything = true;
        self.pending.resources.clear();
    }
}

impl std::fmt::Debug for PostgresShareStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresShareStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// Whether `location` names a PostgreSQL database (`postgres://` or `postgresql://`).
pub fn is_postgres_url(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// `url` without its password: `postgres://user@host:port/database`.
pub fn redacted(url: &str) -> String {
    let Ok(config) = url.parse::<tokio_postgres::Config>() else {
        return "postgres://(unparsable url)".to_owned();
    };
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(name) => format!("{name}:{port}"),
            #[cfg(unix)]
            tokio_postgres::config::Host::Unix(path) => format!("{}:{port}", path.display()),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

impl PostgresShareStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// applies the migrations it lacks.
    pub fn open(url: &str) -> Result<Self, StoreError> {
        let target = redacted(url);
        let failed = StoreError::Postgres;
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|error: tokio_postgres::Error| failed(error_text(&error)))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("zenml-authz");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("share-store")
            .enable_all()
            .build()
            .map_err(|error| failed(format!("cannot start its runtime: {error}")))?;
        let (changed, changes) = tokio::sync::watch::channel(0);
        let link = Arc::new(Mutex::new(Link::default()));
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                // A connection is checked before it is reused: after a database restart the
                // first write finds a fresh one instead of failing on a dead one.
                recycling_method: RecyclingMethod::Verified,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .recycle_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|error| failed(error.to_string()))?;
        let store = Self {
            runtime: Some(runtime),
            pool,
            target,
            changes,
            link: link.clone(),
        };
        store.run(migrate(store.pool.clone()))?;
        if let Some(runtime) = &store.runtime {
            runtime.spawn(listen(config, changed, link));
        }
        Ok(store)
    }

    /// Where the store is, without the password.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Runs `work` on the store's runtime and waits for it (see the module doc); notes
    /// whether it reached the database.
    fn run<T>(&self, work: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let runtime = self.runtime.as_ref().ok_or(StoreError::Poisoned)?;
        let result = match tokio::runtime::Handle::try_current() {
            Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| runtime.block_on(work))
            }
            _ => runtime.block_on(work),
        };
        if let Ok(mut link) = self.link.lock() {
            match &result {
                Err(StoreError::Unreachable(error)) => {
                    let link = &mut *link;
                    Link::down(&mut link.call_failed, &mut link.last_error, error.clone());
                }
                _ => link.call_failed = None,
            }
        }
        result
    }
}

// === impl PostgresShareStore ===

impl Drop for PostgresShareStore {
    fn drop(&mut self) {
        // Dropping a runtime waits for its threads, which an async context forbids (the view
        // may be dropped at the end of the server's runtime): let them end on their own.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl ShareStore for PostgresShareStore {
    fn load(&self) -> Result<Vec<StoredShare>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await?;
            let rows = client
                .query(
                    "SELECT workspace_id, resource, grantee_kind, grantee_id, actions FROM shares \
                     ORDER BY 1, 2, 3, 4",
                    &[],
                )
                .await?;
            shares_of(&rows)
        })
    }

    fn set(&self, share: &StoredShare, shared_by: Option<&str>) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let (kind, id) = grantee_columns(&share.grantee);
            let actions = share.actions.join(",");
            // Writes of one (resource, grantee) take turns, so the audit table's order is the
            // order they took effect in (a delete of a missing row would not wait otherwise).
            let key = format!("{}\n{}\n{kind}\n{id}", share.workspace, share.resource);
            transaction
                .execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", &[&key])
                .await?;
            if share.actions.is_empty() {
                delete_share(&transaction, share).await?;
            } else {
                // One statement, one row, one value: a concurrent replacement wins whole.
                transaction
                    .execute(
                        "INSERT INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions, shared_by)
                         VALUES ($1, $2, $3, $4, $5, $6)
                         ON CONFLICT (workspace_id, resource, grantee_kind, grantee_id) DO UPDATE SET
                           actions = EXCLUDED.actions, shared_by = EXCLUDED.shared_by, updated_at = now()",
                        &[&share.workspace, &share.resource, &kind, &id, &actions, &shared_by],
                    )
                    .await?;
            }
            transaction
                .execute(
                    "INSERT INTO share_events (kind, workspace_id, resource, grantee_kind, grantee_id, actions, shared_by)
                     VALUES ('set', $1, $2, $3, $4, $5, $6)",
                    &[&share.workspace, &share.resource, &kind, &id, &actions, &shared_by],
                )
                .await?;
            notify(&transaction, &payload(&share.workspace, std::slice::from_ref(&share.resource))).await?;
            transaction.commit().await?;
            Ok(())
        })
    }

    fn purge(&self, workspace: &str, resources: &[String]) -> Result<usize, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            let mut removed = 0;
            for resource in resources {
                removed += transaction
                    .execute(
                        "DELETE FROM shares WHERE workspace_id = $1 AND resource = $2",
                        &[&workspace, resource],
                    )
                    .await?;
                transaction
                    .execute(
                        "INSERT INTO share_events (kind, workspace_id, resource, reason) \
                         VALUES ('purge', $1, $2, $3)",
                        &[&workspace, resource, &super::RESOURCE_DELETED],
                    )
                    .await?;
            }
            notify(&transaction, &payload(workspace, resources)).await?;
            transaction.commit().await?;
            Ok(usize::try_from(removed).unwrap_or(usize::MAX))
        })
    }

    fn memberships(&self) -> Result<Memberships, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await?;
            let rows = client
                .query(
                    "SELECT grantee_kind, grantee_id, place_kind, place_id, workspace_id FROM memberships",
                    &[],
                )
                .await?;
            super::memberships_of(rows.iter().map(five_texts))
        })
    }

    fn settle_memberships(
        &self,
        current: &Memberships,
        purged: &[StoredShare],
        reason: &str,
    ) -> Result<(), StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let mut client = pool.get().await?;
            let transaction = client.transaction().await?;
            // Another replica settling at the same moment waits here, then replaces the rows.
            transaction
                .batch_execute("LOCK TABLE memberships IN SHARE ROW EXCLUSIVE MODE")
                .await?;
            for share in purged {
                let (kind, id) = grantee_columns(&share.grantee);
                delete_share(&transaction, share).await?;
                transaction
                    .execute(
                        "INSERT INTO share_events (kind, workspace_id, resource, grantee_kind, grantee_id, actions, reason)
                         VALUES ('purge', $1, $2, $3, $4, $5, $6)",
                        &[&share.workspace, &share.resource, &kind, &id, &share.actions.join(","), &reason],
                    )
                    .await?;
            }
            // What changed, each as one statement over arrays: a row a round trip took a
            // minute on a 100,000-user organization.
            let stored = transaction
                .query(
                    "SELECT grantee_kind, grantee_id, place_kind, place_id, workspace_id FROM memberships",
                    &[],
                )
                .await?
                .iter()
                .map(five_texts)
                .collect::<Result<Vec<_>, _>>()?;
            let (removed, added) = super::membership_changes(stored, current);
            if !removed.is_empty() {
                transaction
                    .execute(
                        "DELETE FROM memberships WHERE (grantee_kind, grantee_id, place_kind, place_id) IN
                         (SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]))",
                        &[
                            &column(&removed, |row| &row.0),
                            &column(&removed, |row| &row.1),
                            &column(&removed, |row| &row.2),
                            &column(&removed, |row| &row.3),
                        ],
                    )
                    .await?;
            }
            if !added.is_empty() {
                transaction
                    .execute(
                        "INSERT INTO memberships (grantee_kind, grantee_id, place_kind, place_id, workspace_id)
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[])",
                        &[
                            &column(&added, |row| row.0),
                            &column(&added, |row| row.1),
                            &column(&added, |row| row.2),
                            &column(&added, |row| row.3),
                            &column(&added, |row| row.4),
                        ],
                    )
                    .await?;
            }
            tracing::debug!(removed = removed.len(), added = added.len(), "remembered memberships updated");
            // The other replicas reload the purged shares' resources, and nothing when none
            // was purged (the remembered memberships are read by each replica's own settle).
            let mut by_workspace: BTreeMap<&str, Vec<String>> = BTreeMap::new();
            for share in purged {
                by_workspace.entry(&share.workspace).or_default().push(share.resource.clone());
            }
            for (workspace, resources) in by_workspace {
                notify(&transaction, &payload(workspace, &resources)).await?;
            }
            transaction.commit().await?;
            Ok(())
        })
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.changes.clone())
    }

    fn take_changed(&self) -> Changed {
        let Ok(mut link) = self.link.lock() else {
            return Changed::Everything;
        };
        let pending = std::mem::take(&mut link.pending);
        if pending.everything {
            Changed::Everything
        } else if pending.resources.is_empty() {
            Changed::Nothing
        } else {
            Changed::Resources(pending.resources)
        }
    }

    fn load_resources(&self, keys: &BTreeSet<(String, String)>) -> Result<Vec<StoredShare>, StoreError> {
        let (workspaces, resources): (Vec<&str>, Vec<&str>) = keys
            .iter()
            .map(|(workspace, resource)| (workspace.as_str(), resource.as_str()))
            .unzip();
        let pool = self.pool.clone();
        let loaded = self.run(async move {
            let client = pool.get().await?;
            let rows = client
                .query(
                    "SELECT workspace_id, resource, grantee_kind, grantee_id, actions FROM shares \
                     WHERE (workspace_id, resource) IN (SELECT * FROM unnest($1::text[], $2::text[])) \
                     ORDER BY 1, 2, 3, 4",
                    &[&workspaces, &resources],
                )
                .await?;
            shares_of(&rows)
        });
        if loaded.is_err()
            && let Ok(mut link) = self.link.lock()
        {
            link.everything();
        }
        loaded
    }

    fn location(&self) -> String {
        self.target.clone()
    }

    fn health(&self) -> StoreHealth {
        let Ok(link) = self.link.lock() else {
            return StoreHealth {
                unreachable_since: Some(SystemTime::UNIX_EPOCH),
                last_error: Some("the store's state lock was poisoned".to_owned()),
            };
        };
        let since = [&link.listener_down, &link.call_failed]
            .into_iter()
            .flatten()
            .map(|(since, _)| *since)
            .min();
        StoreHealth {
            unreachable_since: since,
            last_error: link.last_error.clone(),
        }
    }

    fn events(&self) -> Result<Vec<ShareEvent>, StoreError> {
        let pool = self.pool.clone();
        self.run(async move {
            let client = pool.get().await?;
            let rows = client
                .query(
                    "SELECT kind, workspace_id, resource, grantee_kind, grantee_id, actions, shared_by, reason \
                     FROM share_events ORDER BY id",
                    &[],
                )
                .await?;
            let mut events = Vec::with_capacity(rows.len());
            for (index, row) in rows.iter().enumerate() {
                let kind: Option<String> = row.try_get(3)?;
                let id: Option<String> = row.try_get(4)?;
                let actions: Option<String> = row.try_get(5)?;
                events.push(ShareEvent {
                    kind: row.try_get(0)?,
                    workspace: row.try_get(1)?,
                    resource: row.try_get(2)?,
                    grantee: super::optional_grantee(index, kind, id)?,
                    actions: actions.as_deref().map(super::split_actions),
                    shared_by: row.try_get(6)?,
                    reason: row.try_get(7)?,
                });
            }
            Ok(events)
        })
    }
}

/// The shares of rows of (workspace_id, resource, grantee_kind, grantee_id, actions).
fn shares_of(rows: &[tokio_postgres::Row]) -> Result<Vec<StoredShare>, StoreError> {
    super::shares_of(rows.iter().map(five_texts))
}

/// A row's five text columns, in order.
fn five_texts(row: &tokio_postgres::Row) -> Result<super::Row5, StoreError> {
    Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    ))
}

/// Deletes one grantee's share of one resource (its row, if any).
async fn delete_share(
    transaction: &deadpool_postgres::Transaction<'_>,
    share: &StoredShare,
) -> Result<(), StoreError> {
    let (kind, id) = grantee_columns(&share.grantee);
    transaction
        .execute(
            "DELETE FROM shares WHERE workspace_id = $1 AND resource = $2 \
             AND grantee_kind = $3 AND grantee_id = $4",
            &[&share.workspace, &share.resource, &kind, &id],
        )
        .await?;
    Ok(())
}

/// One column of `rows`, for a statement over arrays.
fn column<'r, T>(rows: &'r [T], pick: impl Fn(&'r T) -> &'r str) -> Vec<&'r str> {
    rows.iter().map(pick).collect()
}

/// The notification of a change of `resources` in `workspace`: JSON `[workspace, resource…]`,
/// or [`EVERYTHING`] when that would be too long.
fn payload(workspace: &str, resources: &[String]) -> String {
    let mut named = Vec::with_capacity(resources.len() + 1);
    named.push(workspace);
    named.extend(resources.iter().map(String::as_str));
    let text = serde_json::to_string(&named).unwrap_or_default();
    if text.is_empty() || text.len() > MAX_PAYLOAD {
        EVERYTHING.to_owned()
    } else {
        text
    }
}

/// What a notification's payload names (anything unreadable: everything).
fn named(payload: &str) -> Option<(String, Vec<String>)> {
    let mut named: Vec<String> = serde_json::from_str(payload).ok()?;
    if named.len() < 2 {
        return None;
    }
    let workspace = named.remove(0);
    Some((workspace, named))
}

/// Tells every listening sidecar, once `transaction` commits, what changed (`payload`).
async fn notify(transaction: &deadpool_postgres::Transaction<'_>, payload: &str) -> Result<(), StoreError> {
    transaction
        .execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await?;
    Ok(())
}

/// Listens on [`CHANNEL`] on a connection of its own, outside the pool, for as long as the
/// store lives: records what each notification names in `link` and bumps `changed`; after
/// every (re)connect it records "everything" (what was sent while it was away is lost). While
/// it has no connection, `link` says the database is unreachable.
async fn listen(
    config: tokio_postgres::Config,
    changed: tokio::sync::watch::Sender<u64>,
    link: Arc<Mutex<Link>>,
) {
    let mut lost = false;
    let down = |error: String| {
        if let Ok(mut link) = link.lock() {
            let link = &mut *link;
            Link::down(&mut link.listener_down, &mut link.last_error, error);
        }
    };
    loop {
        match config.connect(NoTls).await {
            Ok((client, mut connection)) => {
                let notified = changed.clone();
                let noted = link.clone();
                let driver = tokio::spawn(async move {
                    loop {
                        match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                            Some(Ok(tokio_postgres::AsyncMessage::Notification(notification))) => {
                                if let Ok(mut link) = noted.lock() {
                                    match named(notification.payload()) {
                                        Some(_) if link.pending.everything => {}
                                        Some((workspace, resources)) => {
                                            for resource in resources {
                                                link.pending.resources.insert((workspace.clone(), resource));
                                            }
                                        }
                                        None => link.everything(),
                                    }
                                }
                                notified.send_modify(|count| *count += 1);
                            }
                            Some(Ok(_)) => {}
                            Some(Err(error)) => return error_text(&error),
                            None => return "connection closed".to_owned(),
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        if lost {
                            tracing::info!("share store: listening for changes again");
                        }
                        if let Ok(mut link) = link.lock() {
                            link.listener_down = None;
                            link.everything();
                        }
                        changed.send_modify(|count| *count += 1);
                        let why = driver.await.unwrap_or_else(|error| error.to_string());
                        tracing::warn!(error = %why, "share store: lost the change listener's connection");
                        down(why);
                    }
                    Err(error) => {
                        driver.abort();
                        tracing::warn!(error = %error_text(&error), "share store: cannot listen for changes");
                        down(error_text(&error));
                    }
                }
            }
            Err(error) => {
                if !lost {
                    tracing::warn!(error = %error_text(&error), "share store: cannot connect the change listener");
                }
                down(error_text(&error));
            }
        }
        lost = true;
        if changed.is_closed() {
            return;
        }
        tokio::time::sleep(RECONNECT_DELAY).await;
    }
}

/// Applies, in one transaction under [`MIGRATION_LOCK`], every migration the database lacks;
/// refuses a database migrated by a newer version.
async fn migrate(pool: Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await?;
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    // Created only when missing (`IF NOT EXISTS` alone would log a notice at every start).
    let exists: bool = transaction
        .query_one("SELECT to_regclass('zenml_authz_migrations') IS NOT NULL", &[])
        .await?
        .try_get(0)?;
    if !exists {
        transaction
            .batch_execute(
                "CREATE TABLE zenml_authz_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT NOT NULL,
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
            )
            .await?;
    }
    let applied: Vec<i32> = transaction
        .query("SELECT version FROM zenml_authz_migrations ORDER BY version", &[])
        .await?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()?;
    let known = MIGRATIONS.last().map_or(0, |(version, _, _)| *version);
    if let Some(newer) = applied.iter().find(|version| **version > known) {
        return Err(StoreError::Postgres(format!(
            "the database has migration {newer}, newer than this version knows ({known}): \
             run the newer version"
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if applied.contains(version) {
            continue;
        }
        transaction
            .batch_execute(sql)
            .await
            .map_err(|error| StoreError::Postgres(format!("migration `{name}`: {}", error_text(&error))))?;
        transaction
            .execute(
                "INSERT INTO zenml_authz_migrations (version, name) VALUES ($1, $2)",
                &[version, name],
            )
            .await?;
        tracing::info!(version, name, "share store: migration applied");
    }
    transaction.commit().await?;
    Ok(())
}

/// The driver's error with the server's own message (its `Display` alone says `db error`).
fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => db.to_string(),
        None => match std::error::Error::source(error) {
            Some(source) => format!("{error}: {source}"),
            None => error.to_string(),
        },
    }
}

/// Whether `error` says the database could not be reached (rather than that it refused):
/// no connection, a lost or closed one, a timeout, or the server shutting down.
fn unreachable(error: &tokio_postgres::Error) -> bool {
    if let Some(db) = error.as_db_error() {
        let code = db.code().code();
        // Class 08: connection exception; 57P01-57P03: shutdown, crash, cannot connect now.
        return code.starts_with("08") || matches!(code, "57P01" | "57P02" | "57P03");
    }
    error.is_closed() || std::error::Error::source(error).is_some_and(|source| source.is::<std::io::Error>())
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(error: tokio_postgres::Error) -> Self {
        if unreachable(&error) {
            StoreError::Unreachable(error_text(&error))
        } else {
            StoreError::Postgres(error_text(&error))
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(error: deadpool_postgres::PoolError) -> Self {
        match error {
            deadpool_postgres::PoolError::Backend(error) => error.into(),
            deadpool_postgres::PoolError::Timeout(_) | deadpool_postgres::PoolError::Closed => {
                StoreError::Unreachable(error.to_string())
            }
            other => StoreError::Postgres(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_listed_once_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let listed: Vec<String> = MIGRATIONS.iter().map(|(_, name, _)| (*name).to_owned()).collect();
        assert_eq!(files, listed);
        for (index, (version, name, _)) in MIGRATIONS.iter().enumerate() {
            assert_eq!(usize::try_from(*version).unwrap(), index + 1, "{name}");
            assert!(name.starts_with(&format!("{version:04}_")), "{name}");
        }
    }

    #[test]
    fn a_notification_names_its_resources_or_everything() {
        let one = payload("w", &["p:pipeline/1".to_owned()]);
        assert_eq!(
            named(&one),
            Some(("w".to_owned(), vec!["p:pipeline/1".to_owned()]))
        );
        let many: Vec<String> = (0..1000).map(|i| format!("p:pipeline/{i:032}")).collect();
        assert_eq!(payload("w", &many), EVERYTHING);
        for unreadable in [EVERYTHING, "", "[]", "[\"w\"]", "{}", "not json"] {
            assert_eq!(named(unreadable), None, "{unreadable}");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let shown = redacted("postgres://alice:s3cret@db.example:6543/shares?sslmode=disable");
        assert_eq!(shown, "postgres://alice@db.example:6543/shares");
        assert!(!redacted("postgresql://u:s3cret@h/d").contains("s3cret"));
        assert!(is_postgres_url("postgresql://h/d") && !is_postgres_url("shares.db"));
    }
}
