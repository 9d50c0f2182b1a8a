//! Durable shares: the [`ShareStore`] interface, its SQLite implementation, and [`Shares`], the
//! live view the decision path reads.
//!
//! Architecture Invariant: a share change is acknowledged only after the store has committed it
//! (SQLite in WAL mode with `synchronous = FULL`: the commit is on disk), and the in-memory
//! [`ShareSet`] is updated only after that. A crash at any moment loses no acknowledged share
//! and leaves no half-written one (one transaction per change).
//!
//! A database file deleted or replaced under a running server (an `rm`, a clean-up job, a
//! restore copied over it) would take every later write with it: SQLite keeps writing to the
//! open, unlinked file, and the next start finds nothing. So [`SqliteShareStore`] compares the
//! path's (device, inode), and its WAL's, with those it opened, before and after every write;
//! on a difference it refuses that write and every later one (a `503`, naming the path) until a
//! restart, and saves what it holds, every acknowledged share, to `<path>.rescued-<seconds>`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rusqlite::{Connection, params};

use std::cmp::Ordering;
use std::collections::BTreeMap;

use crate::zenml::{Grantee, Memberships, Reach, Resource, ShareActions, ShareSet};

mod postgres;
pub use postgres::{MIGRATIONS, PostgresShareStore, is_postgres_url, redacted};

/// A storage failure; the change was not made.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed.
    #[error("share store: {0}")]
    Database(#[from] rusqlite::Error),
    /// A stored row that cannot be read back.
    #[error("share store: row {0}: {1}")]
    Corrupt(usize, String),
    /// The store's lock was poisoned by a panic in another thread.
    #[error("share store: unavailable after an earlier failure")]
    Poisoned,
    /// The database file was deleted or replaced while serving: writes would not be durable.
    #[error("share store: {0}")]
    FileLost(String),
    /// PostgreSQL refused or failed (the message names the database, never its password).
    #[error("share store: {0}")]
    Postgres(String),
    /// The database could not be reached (no connection, a lost one, a timeout): nothing was
    /// changed, and the store reports itself unreachable until a call succeeds again.
    #[error("share store unreachable: {0}")]
    Unreachable(String),
}

/// What may have changed in the store since the last look ([`ShareStore::take_changed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Nothing known.
    Nothing,
    /// The shares of these (workspace, canonical resource) keys.
    Resources(std::collections::BTreeSet<(String, String)>),
    /// Possibly anything: a reconnect (notifications may have been lost), or a change too large
    /// to name.
    Everything,
}

/// Whether the store can reach its database, as last seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreHealth {
    /// Since when it cannot (`None` while it can).
    pub unreachable_since: Option<std::time::SystemTime>,
    /// The last failure to reach it (kept after it recovers, for the status page).
    pub last_error: Option<String>,
}

impl StoreHealth {
    /// Whether the database is reachable.
    pub fn reachable(&self) -> bool {
        self.unreachable_since.is_none()
    }
}

/// Where the shares are kept, as `--shares-db` names it.
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// In memory only (`:memory:`).
    Memory,
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl Location {
    /// What `--shares-db` (or the URL file) says.
    pub fn parse(text: &std::ffi::OsStr) -> Self {
        match text.to_str() {
            Some(":memory:") => Location::Memory,
            Some(url) if is_postgres_url(url) => Location::Postgres(url.to_owned()),
            _ => Location::Sqlite(PathBuf::from(text)),
        }
    }

    /// Opens (creating or migrating if needed) the store.
    pub fn open(&self) -> Result<Box<dyn ShareStore>, StoreError> {
        Ok(match self {
            Location::Memory => Box::new(SqliteShareStore::in_memory()?),
            Location::Sqlite(path) => Box::new(SqliteShareStore::open(path)?),
            Location::Postgres(url) => Box::new(PostgresShareStore::open(url)?),
        })
    }
}

/// Shown without a password.
impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Memory => f.write_str(":memory:"),
            Location::Sqlite(path) => write!(f, "{}", path.display()),
            Location::Postgres(url) => f.write_str(&redacted(url)),
        }
    }
}

/// As displayed: never the password.
impl std::fmt::Debug for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

/// One row of the audit log (`share_events`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareEvent {
    /// `set` or `purge`.
    pub kind: String,
    /// The workspace.
    pub workspace: String,
    /// The canonical resource string.
    pub resource: String,
    /// Whose share; `None` for a purge of a whole resource.
    pub grantee: Option<Grantee>,
    /// The actions set (or the purged share's); `None` for a purge of a whole resource.
    pub actions: Option<Vec<String>>,
    /// Who shared (a `set`), when the ZenML server said.
    pub shared_by: Option<String>,
    /// Why it was purged ([`RESOURCE_DELETED`], [`MEMBERSHIP_REMOVED`]).
    pub reason: Option<String>,
}

/// One share as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredShare {
    /// The workspace (ZenML server) it was made in.
    pub workspace: String,
    /// The canonical resource string.
    pub resource: String,
    /// Who it is shared with.
    pub grantee: Grantee,
    /// The shared actions, sorted.
    pub actions: Vec<String>,
}

/// Where shares are kept: [`SqliteShareStore`] on one machine, [`PostgresShareStore`] for many
/// replicas. Calls block: make them off the async workers (`spawn_blocking`).
pub trait ShareStore: Send + Sync + std::fmt::Debug {
    /// Every stored share.
    fn load(&self) -> Result<Vec<StoredShare>, StoreError>;
    /// Replaces the actions of `share.grantee` on `share.resource` (empty: removes the share),
    /// recording `shared_by` in the audit log. Durable when it returns `Ok`.
    fn set(&self, share: &StoredShare, shared_by: Option<&str>) -> Result<(), StoreError>;
    /// Removes every share of `resources` in `workspace`; returns how many were removed.
    /// Durable when it returns `Ok`.
    fn purge(&self, workspace: &str, resources: &[String]) -> Result<usize, StoreError>;
    /// The memberships remembered by the last [`ShareStore::settle_memberships`] (empty before
    /// the first).
    fn memberships(&self) -> Result<Memberships, StoreError>;
    /// In one transaction: removes each of `purged` (an audit row each, with `reason`) and
    /// replaces the remembered memberships with `current`. Durable when it returns `Ok`.
    fn settle_memberships(
        &self,
        current: &Memberships,
        purged: &[StoredShare],
        reason: &str,
    ) -> Result<(), StoreError>;
    /// The audit log, oldest first.
    fn events(&self) -> Result<Vec<ShareEvent>, StoreError>;
    /// Changes made by other processes: the value is bumped whenever the stored shares may have
    /// changed elsewhere (then [`Shares::refresh`] reloads them). `None`: only this process
    /// writes (SQLite).
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
    /// Why the store refuses every write from now on, if it does (e.g. its file was deleted).
    fn failure(&self) -> Option<String> {
        None
    }
    /// What changed elsewhere since the last call (and forgets it). A store whose
    /// [`ShareStore::changes`] is `None` never has anything to report.
    fn take_changed(&self) -> Changed {
        Changed::Everything
    }
    /// The stored shares of these (workspace, canonical resource) keys. A store that fails
    /// here remembers that everything may have changed (the next look reloads all).
    fn load_resources(
        &self,
        keys: &std::collections::BTreeSet<(String, String)>,
    ) -> Result<Vec<StoredShare>, StoreError> {
        Ok(self
            .load()?
            .into_iter()
            .filter(|share| keys.contains(&(share.workspace.clone(), share.resource.clone())))
            .collect())
    }
    /// Where the store is, as `/v1/status` shows it (never a password).
    fn location(&self) -> String;
    /// Whether the database is reachable (always, for a local file).
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }
}

/// SQLite share store: one file, created on first use.
#[derive(Debug)]
pub struct SqliteShareStore {
    inner: Mutex<Sqlite>,
}

#[derive(Debug)]
struct Sqlite {
    connection: Connection,
    /// The database file as opened; `None` in memory.
    file: Option<OpenedFile>,
    /// Set once the file was found deleted or replaced: every later write is refused with it.
    lost: Option<String>,
}

/// A database file and its WAL, as opened: what a write must still find at their paths.
#[derive(Debug)]
struct OpenedFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    wal: PathBuf,
    wal_identity: Option<(u64, u64)>,
}

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
-- A page cache of 256 KiB, not SQLite's default 2 MiB: the shares are read once into memory
-- (and again on a resync, a full scan no cache holds); a write touches a few pages, and each
-- write waits on fsync far longer than on reading one from the system's file cache.
PRAGMA cache_size = -256;
CREATE TABLE IF NOT EXISTS shares (
    workspace_id TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('user', 'team')),
    grantee_id   TEXT NOT NULL,
    actions      TEXT NOT NULL,
    shared_by    TEXT,
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    PRIMARY KEY (workspace_id, resource, grantee_kind, grantee_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS share_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    at           TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    kind         TEXT NOT NULL CHECK (kind IN ('set', 'purge')),
    workspace_id TEXT NOT NULL,
    resource     TEXT NOT NULL,
    grantee_kind TEXT,
    grantee_id   TEXT,
    actions      TEXT,
    shared_by    TEXT,
    reason       TEXT
);
CREATE TABLE IF NOT EXISTS memberships (
    grantee_kind TEXT NOT NULL CHECK (grantee_kind IN ('user', 'team')),
    grantee_id   TEXT NOT NULL,
    place_kind   TEXT NOT NULL CHECK (place_kind IN ('organization', 'workspace', 'project')),
    place_id     TEXT NOT NULL,
    workspace_id TEXT NOT NULL,
    PRIMARY KEY (grantee_kind, grantee_id, place_kind, place_id)
) WITHOUT ROWID;
";

/// Databases made before `share_events.reason` existed get the column (`NULL` in old rows).
const ADD_REASON: &str = "ALTER TABLE share_events ADD COLUMN reason TEXT";

impl SqliteShareStore {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|error| {
                StoreError::Database(rusqlite::Error::ToSqlConversionFailure(Box::new(error)))
            })?;
        }
        let store = Self::with(Connection::open(path)?)?;
        // The schema statements wrote the file and its WAL: both exist now.
        let mut wal = path.as_os_str().to_owned();
        wal.push("-wal");
        let wal = PathBuf::from(wal);
        let file = OpenedFile {
            identity: identity(path),
            wal_identity: identity(&wal),
            path: path.to_path_buf(),
            wal,
        };
        if let Ok(mut inner) = store.inner.lock() {
            inner.file = Some(file);
        }
        Ok(store)
    }

    /// A store that lives in memory only (tests, `--shares-db :memory:`).
    pub fn in_memory() -> Result<Self, StoreError> {
        Self::with(Connection::open_in_memory()?)
    }

    fn with(connection: Connection) -> Result<Self, StoreError> {
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.execute_batch(SCHEMA)?;
        let has_reason = connection
            .prepare("SELECT 1 FROM pragma_table_info('share_events') WHERE name = 'reason'")?
            .exists([])?;
        if !has_reason {
            connection.execute_batch(ADD_REASON)?;
        }
        Ok(Self {
            inner: Mutex::new(Sqlite {
                connection,
                file: None,
                lost: None,
            }),
        })
    }

    /// Runs `write` (one transaction) only while the database file is the one opened, and
    /// succeeds only if it still is once committed: a commit into a deleted file is not durable.
    fn write<T>(
        &self,
        write: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut inner = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        inner.check()?;
        let written = write(&mut inner.connection)?;
        inner.check()?;
        Ok(written)
    }

    /// The journal mode and the `synchronous` level the connection runs with, as SQLite reports
    /// them: `("wal", "full")` for a file, what the invariant above rests on (tests/durability.rs).
    pub fn durability(&self) -> Result<(String, &'static str), StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        let journal = inner
            .connection
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
        let level: i64 = inner
            .connection
            .query_row("PRAGMA synchronous", [], |row| row.get(0))?;
        let synchronous = match level {
            0 => "off",
            1 => "normal",
            2 => "full",
            3 => "extra",
            _ => "unknown",
        };
        Ok((journal, synchronous))
    }
}

// === impl Sqlite ===

impl Sqlite {
    /// Fails, from now on, once the database file or its WAL is no longer the one opened.
    fn check(&mut self) -> Result<(), StoreError> {
        if let Some(lost) = &self.lost {
            return Err(StoreError::FileLost(lost.clone()));
        }
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        let wal = identity(&file.wal);
        // SQLite creates the WAL with the first transaction that needs it: known from then on.
        if file.wal_identity.is_none() {
            file.wal_identity = wal;
        }
        let what = match (identity(&file.path), wal) {
            (None, _) => "was deleted",
            (Some(now), _) if Some(now) != file.identity => "was replaced",
            (_, None) if file.wal_identity.is_some() => "lost its WAL file (deleted)",
            (_, wal) if wal != file.wal_identity => "had its WAL file replaced",
            _ => return Ok(()),
        };
        let path = file.path.clone();
        let rescue = match rescue(&self.connection, &path) {
            Ok(saved) => format!(
                "every acknowledged share was saved to `{}`: to keep them, stop the server, remove \
                 `{}` and its `-wal` and `-shm` files if left, move the saved file there and start \
                 the server",
                saved.display(),
                path.display()
            ),
            Err(error) => format!(
                "saving the acknowledged shares failed ({error}); they are served from memory until \
                 the server stops"
            ),
        };
        let message = format!(
            "database file `{}` {what} while serving, so no write could be durable; refusing share \
             writes until a restart; {rescue}",
            path.display()
        );
        tracing::error!(path = %path.display(), "share store: {message}");
        self.lost = Some(message.clone());
        Err(StoreError::FileLost(message))
    }
}

/// Copies the whole database, as `connection` still sees it, to a new file beside `path`
/// (`VACUUM INTO`: one consistent copy), synced to disk; returns its path.
fn rescue(connection: &Connection, path: &Path) -> Result<PathBuf, String> {
    let seconds = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".rescued-{seconds}"));
    let saved = PathBuf::from(name);
    let target = saved
        .to_str()
        .ok_or_else(|| format!("`{}` is not UTF-8", saved.display()))?;
    connection
        .execute("VACUUM INTO ?1", params![target])
        .map_err(|error| error.to_string())?;
    // SQLite does not sync the copy; a rescue that a power cut can undo is none.
    std::fs::File::open(&saved)
        .and_then(|file| file.sync_all())
        .map_err(|error| format!("`{}`: {error}", saved.display()))?;
    if let Some(parent) = saved.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::File::open(parent)
            .and_then(|dir| dir.sync_all())
            .map_err(|error| format!("`{}`: {error}", parent.display()))?;
    }
    Ok(saved)
}

/// The (device, inode) of what `path` names now, if anything.
#[cfg(unix)]
pub(crate) fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

/// Without inodes, only a deletion can be told: a file present counts as the one opened.
#[cfg(not(unix))]
pub(crate) fn identity(path: &Path) -> Option<(u64, u64)> {
    path.exists().then_some((0, 0))
}

fn grantee_columns(grantee: &Grantee) -> (&'static str, &str) {
    match grantee {
        Grantee::User(id) => ("user", id),
        Grantee::Team(id) => ("team", id),
    }
}

/// A row of five text columns (the shares and memberships tables are read this way).
fn five_texts(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, String, String, String)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

/// The grantee a stored row names (`grantee_kind`, `grantee_id`); `index` is the row's, for the
/// error.
fn stored_grantee(index: usize, kind: &str, id: String) -> Result<Grantee, StoreError> {
    match kind {
        "user" => Ok(Grantee::User(id)),
        "team" => Ok(Grantee::Team(id)),
        other => Err(StoreError::Corrupt(index, format!("grantee kind `{other}`"))),
    }
}

/// A stored action list (`read,update`).
fn split_actions(actions: &str) -> Vec<String> {
    actions
        .split(',')
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
        .collect()
}

/// An audit row's grantee columns, both or neither.
fn optional_grantee(
    index: usize,
    kind: Option<String>,
    id: Option<String>,
) -> Result<Option<Grantee>, StoreError> {
    match (kind, id) {
        (Some(kind), Some(id)) => stored_grantee(index, &kind, id).map(Some),
        _ => Ok(None),
    }
}

/// Five text columns of a stored row, as both backends read them.
type Row5 = (String, String, String, String, String);

/// The shares of rows of (workspace, resource, grantee kind, grantee id, actions).
fn shares_of(rows: impl Iterator<Item = Result<Row5, StoreError>>) -> Result<Vec<StoredShare>, StoreError> {
    let mut shares = Vec::new();
    for (index, row) in rows.enumerate() {
        let (workspace, resource, kind, id, actions) = row?;
        shares.push(StoredShare {
            workspace,
            resource,
            grantee: stored_grantee(index, &kind, id)?,
            actions: split_actions(&actions),
        });
    }
    Ok(shares)
}

/// The memberships remembered in rows of (grantee kind, grantee id, place kind, place id,
/// workspace).
fn memberships_of(rows: impl Iterator<Item = Result<Row5, StoreError>>) -> Result<Memberships, StoreError> {
    let mut reaches: BTreeMap<Grantee, Reach> = BTreeMap::new();
    for (index, row) in rows.enumerate() {
        let (kind, id, place_kind, place_id, workspace_id) = row?;
        let grantee = stored_grantee(index, &kind, id)?;
        add_place(
            reaches.entry(grantee).or_default(),
            index,
            &place_kind,
            place_id,
            workspace_id,
        )?;
    }
    Ok(Memberships::from_reaches(reaches))
}

/// Adds a remembered membership row's place to `reach`.
fn add_place(
    reach: &mut Reach,
    index: usize,
    place_kind: &str,
    place_id: String,
    workspace_id: String,
) -> Result<(), StoreError> {
    match place_kind {
        "organization" => reach.organization = true,
        "workspace" => {
            reach.workspaces.push(place_id, ());
        }
        "project" => {
            reach.projects.push(place_id, Arc::<str>::from(workspace_id));
        }
        other => return Err(StoreError::Corrupt(index, format!("place kind `{other}`"))),
    }
    Ok(())
}

/// A remembered membership row as [`membership_rows`] makes it: grantee kind and id, place kind
/// and id, the place's workspace.
type MembershipRow<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

/// What makes the remembered rows `stored` equal to `current`'s: the stored rows to delete (by
/// their key, the first four columns) and the rows to insert, in key order, deletions first (a
/// project that moved to another workspace is both). A settle then writes what changed, not
/// every row: on a 100,000-user organization a one-binding edit is a handful of rows, not
/// 600,000. Both sides sorted and merged (a hash set of 600,000 rows took three times as long).
fn membership_changes(mut stored: Vec<Row5>, current: &Memberships) -> (Vec<Row5>, Vec<MembershipRow<'_>>) {
    let mut wanted = membership_rows(current);
    wanted.sort_unstable();
    stored.sort_unstable();
    let mut wanted = wanted.into_iter().peekable();
    let (mut removed, mut added) = (Vec::new(), Vec::new());
    // Two lifetimes: the wanted rows borrow `current`, a stored row is this function's.
    fn order(wanted: MembershipRow<'_>, row: &Row5) -> Ordering {
        wanted.cmp(&(&row.0, &row.1, &row.2, &row.3, &row.4))
    }
    for row in stored {
        while let Some(next) = wanted.next_if(|next| order(*next, &row).is_lt()) {
            added.push(next);
        }
        if wanted.next_if(|next| order(*next, &row).is_eq()).is_none() {
            removed.push(row);
        }
    }
    added.extend(wanted);
    (removed, added)
}

/// The memberships table's rows for `memberships`: (grantee kind, grantee id, place kind,
/// place id, workspace id).
fn membership_rows(memberships: &Memberships) -> Vec<MembershipRow<'_>> {
    let mut rows = Vec::new();
    for (grantee, reach) in memberships.iter() {
        let (kind, id) = grantee_columns(grantee);
        if reach.organization {
            rows.push((kind, id, "organization", "", ""));
        }
        for workspace in reach.workspaces.ids() {
            rows.push((kind, id, "workspace", workspace, workspace));
        }
        for (project, workspace) in reach.projects.iter() {
            rows.push((kind, id, "project", project, &**workspace));
        }
    }
    rows
}

impl ShareStore for SqliteShareStore {
    fn load(&self) -> Result<Vec<StoredShare>, StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        let mut statement = inner.connection.prepare(
            "SELECT workspace_id, resource, grantee_kind, grantee_id, actions FROM shares ORDER BY 1, 2, 3, 4",
        )?;
        let rows = statement.query_map([], five_texts)?;
        shares_of(rows.map(|row| row.map_err(StoreError::from)))
    }

    fn set(&self, share: &StoredShare, shared_by: Option<&str>) -> Result<(), StoreError> {
        self.write(|connection| set(connection, share, shared_by))
    }

    fn purge(&self, workspace: &str, resources: &[String]) -> Result<usize, StoreError> {
        self.write(|connection| purge(connection, workspace, resources))
    }

    fn memberships(&self) -> Result<Memberships, StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        let mut statement = inner.connection.prepare(
            "SELECT grantee_kind, grantee_id, place_kind, place_id, workspace_id FROM memberships",
        )?;
        let rows = statement.query_map([], five_texts)?;
        memberships_of(rows.map(|row| row.map_err(StoreError::from)))
    }

    fn settle_memberships(
        &self,
        current: &Memberships,
        purged: &[StoredShare],
        reason: &str,
    ) -> Result<(), StoreError> {
        self.write(|connection| settle_memberships(connection, current, purged, reason))
    }

    fn events(&self) -> Result<Vec<ShareEvent>, StoreError> {
        let inner = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        let mut statement = inner.connection.prepare(
            "SELECT kind, workspace_id, resource, grantee_kind, grantee_id, actions, shared_by, reason
             FROM share_events ORDER BY id",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, Option<String>>(3)?,
                row.get::<_, Option<String>>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, Option<String>>(6)?,
                row.get::<_, Option<String>>(7)?,
            ))
        })?;
        let mut events = Vec::new();
        for (index, row) in rows.enumerate() {
            let (kind, workspace, resource, grantee_kind, grantee_id, actions, shared_by, reason) = row?;
            events.push(ShareEvent {
                kind,
                workspace,
                resource,
                grantee: optional_grantee(index, grantee_kind, grantee_id)?,
                actions: actions.as_deref().map(split_actions),
                shared_by,
                reason,
            });
        }
        Ok(events)
    }

    fn failure(&self) -> Option<String> {
        self.inner.lock().ok().and_then(|inner| inner.lost.clone())
    }

    fn location(&self) -> String {
        self.inner
            .lock()
            .ok()
            .and_then(|inner| inner.file.as_ref().map(|file| file.path.display().to_string()))
            .unwrap_or_else(|| ":memory:".to_owned())
    }
}

fn settle_memberships(
    connection: &mut Connection,
    current: &Memberships,
    purged: &[StoredShare],
    reason: &str,
) -> Result<(), StoreError> {
    let transaction = connection.transaction()?;
    for share in purged {
        let (kind, id) = grantee_columns(&share.grantee);
        transaction.execute(
            "DELETE FROM shares WHERE workspace_id = ?1 AND resource = ?2 AND grantee_kind = ?3 AND grantee_id = ?4",
            params![share.workspace, share.resource, kind, id],
        )?;
        transaction.execute(
            "INSERT INTO share_events (kind, workspace_id, resource, grantee_kind, grantee_id, actions, reason)
             VALUES ('purge', ?1, ?2, ?3, ?4, ?5, ?6)",
            params![share.workspace, share.resource, kind, id, share.actions.join(","), reason],
        )?;
    }
    let stored = transaction
        .prepare("SELECT grantee_kind, grantee_id, place_kind, place_id, workspace_id FROM memberships")?
        .query_map([], five_texts)?
        .collect::<Result<Vec<_>, _>>()?;
    let (removed, added) = membership_changes(stored, current);
    {
        let mut delete = transaction.prepare(
            "DELETE FROM memberships WHERE grantee_kind = ?1 AND grantee_id = ?2 AND place_kind = ?3 AND place_id = ?4",
        )?;
        for (kind, id, place_kind, place_id, _) in &removed {
            delete.execute(params![kind, id, place_kind, place_id])?;
        }
        let mut insert = transaction.prepare(
            "INSERT INTO memberships (grantee_kind, grantee_id, place_kind, place_id, workspace_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        for (kind, id, place_kind, place_id, workspace) in &added {
            insert.execute(params![kind, id, place_kind, place_id, workspace])?;
        }
    }
    transaction.commit()?;
    tracing::debug!(
        removed = removed.len(),
        added = added.len(),
        "remembered memberships updated"
    );
    Ok(())
}

fn set(connection: &mut Connection, share: &StoredShare, shared_by: Option<&str>) -> Result<(), StoreError> {
    let transaction = connection.transaction()?;
    let (kind, id) = grantee_columns(&share.grantee);
    let actions = share.actions.join(",");
    if share.actions.is_empty() {
        transaction.execute(
                "DELETE FROM shares WHERE workspace_id = ?1 AND resource = ?2 AND grantee_kind = ?3 AND grantee_id = ?4",
                params![share.workspace, share.resource, kind, id],
            )?;
    } else {
        transaction.execute(
            "INSERT INTO shares (workspace_id, resource, grantee_kind, grantee_id, actions, shared_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (workspace_id, resource, grantee_kind, grantee_id) DO UPDATE SET
                   actions = excluded.actions, shared_by = excluded.shared_by,
                   updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
            params![share.workspace, share.resource, kind, id, actions, shared_by],
        )?;
    }
    transaction.execute(
            "INSERT INTO share_events (kind, workspace_id, resource, grantee_kind, grantee_id, actions, shared_by)
             VALUES ('set', ?1, ?2, ?3, ?4, ?5, ?6)",
            params![share.workspace, share.resource, kind, id, actions, shared_by],
        )?;
    transaction.commit()?;
    Ok(())
}

fn purge(connection: &mut Connection, workspace: &str, resources: &[String]) -> Result<usize, StoreError> {
    let transaction = connection.transaction()?;
    let mut removed = 0;
    for resource in resources {
        removed += transaction.execute(
            "DELETE FROM shares WHERE workspace_id = ?1 AND resource = ?2",
            params![workspace, resource],
        )?;
        transaction.execute(
            "INSERT INTO share_events (kind, workspace_id, resource, reason) VALUES ('purge', ?1, ?2, ?3)",
            params![workspace, resource, RESOURCE_DELETED],
        )?;
    }
    transaction.commit()?;
    Ok(removed)
}

/// The audit reason of a purge the ZenML server asked for (`DELETE /rbac/resources`).
pub const RESOURCE_DELETED: &str = "resource deleted";
/// The audit reason (and metric label) of a share purged because its grantee stopped being a
/// member of the place that holds the resource.
pub const MEMBERSHIP_REMOVED: &str = "membership removed";

/// One grantee's actions on a resource, as loaded (names ZenML does not have left out, as the
/// view leaves them out).
type Grant<'a> = (&'a Grantee, ShareActions);

/// The view of `stored`. Stored rows that no longer parse are skipped with a warning (they
/// cannot match any request). Each share goes into the set as it is read, and nothing else is
/// built beside it: what a load leaves behind (the rows) is freed at once, not interleaved with
/// the set it keeps (a copy of every share made alongside left the allocator's pages of the
/// set half used: 7 MiB of the server's resident memory on 50,000 shares, BENCHMARKS.md).
fn build_set(stored: Vec<StoredShare>) -> ShareSet {
    let mut set = ShareSet::default();
    for share in stored {
        match Resource::parse(&share.resource) {
            Ok(resource) => set.set(&share.workspace, &resource, share.grantee, share.actions),
            Err(error) => tracing::warn!(%error, "skipping a stored share"),
        }
    }
    set
}

/// Whether two views hold the same shares (each listed, borrowed, in one order).
fn same_shares(a: &ShareSet, b: &ShareSet) -> bool {
    fn listed(set: &ShareSet) -> Vec<(&str, &str, Grantee, ShareActions)> {
        let mut listed: Vec<_> = set.iter().collect();
        listed.sort_unstable();
        listed
    }
    a.len() == b.len() && listed(a) == listed(b)
}

/// One consistent view of all shares, with a version that changes on every write.
#[derive(Debug, Default)]
pub struct ShareSnapshot {
    /// Bumped by every change (cache keys include it).
    pub version: u64,
    /// The shares the decisions read (empty while they are withheld).
    pub set: ShareSet,
    /// Set while the shares are withheld from decisions (see [`Shares::withhold`]).
    pub withheld: Option<Withheld>,
}

/// Shares withheld from decisions: the database has been unreachable for too long to trust the
/// last known ones (a revoke made through another replica may be missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// When they were withheld.
    pub since: SystemTime,
    /// How many shares the last known view held.
    pub held: usize,
}

/// How the view's reloads from the store went (for `/v1/status` and `/metrics`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncStats {
    /// Reloads that changed the view.
    pub changed: u64,
    /// Reloads that found the view current.
    pub unchanged: u64,
    /// Reloads that failed (the view kept).
    pub failed: u64,
    /// When the view was last known to equal the store (a reload, or a write through this
    /// process).
    pub synced_at: Option<SystemTime>,
}

/// The live shares: the durable store, and the in-memory view swapped after every write.
#[derive(Debug)]
pub struct Shares {
    store: Box<dyn ShareStore>,
    current: ArcSwap<ShareSnapshot>,
    /// Serialises writers so that store order and view order agree.
    writer: Mutex<()>,
    sync: Mutex<SyncStats>,
}

impl Shares {
    /// Loads every stored share into memory. Stored rows that no longer parse are skipped with a
    /// warning (they cannot match any request).
    pub fn open(store: Box<dyn ShareStore>) -> Result<Self, StoreError> {
        let set = build_set(store.load()?);
        Ok(Self {
            store,
            current: ArcSwap::from_pointee(ShareSnapshot {
                version: 0,
                set,
                withheld: None,
            }),
            writer: Mutex::new(()),
            sync: Mutex::new(SyncStats {
                synced_at: Some(SystemTime::now()),
                ..SyncStats::default()
            }),
        })
    }

    /// Changes made by other sidecars on the same database ([`ShareStore::changes`]).
    pub fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.store.changes()
    }

    /// Where the store is (never a password).
    pub fn location(&self) -> String {
        self.store.location()
    }

    /// Whether the store reaches its database.
    pub fn health(&self) -> StoreHealth {
        self.store.health()
    }

    /// How the reloads went.
    pub fn sync_stats(&self) -> SyncStats {
        self.sync.lock().map(|s| *s).unwrap_or_default()
    }

    fn count(&self, result: &Result<bool, StoreError>) {
        if let Ok(mut sync) = self.sync.lock() {
            match result {
                Ok(true) => sync.changed += 1,
                Ok(false) => sync.unchanged += 1,
                Err(_) => sync.failed += 1,
            }
            if result.is_ok() {
                sync.synced_at = Some(SystemTime::now());
            }
        }
    }

    fn synced(&self) {
        if let Ok(mut sync) = self.sync.lock() {
            sync.synced_at = Some(SystemTime::now());
        }
    }

    /// Takes in what changed elsewhere since the last look ([`ShareStore::take_changed`]): the
    /// named resources' shares, or all of them; a new view with a new version only when they
    /// differ (so no cached decision outlives a remote change, and no cache is dropped for
    /// nothing). Returns whether the view changed.
    pub fn refresh(&self) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let result = match self.store.take_changed() {
            Changed::Nothing => Ok(false),
            Changed::Everything => self.reload_all(),
            Changed::Resources(_) if self.current.load().withheld.is_some() => self.reload_all(),
            Changed::Resources(keys) => self.reload_resources(&keys),
        };
        self.count(&result);
        result
    }

    /// Reloads every share from the store (the periodic safety net); a new view only when
    /// they differ. Returns whether the view changed.
    pub fn resync(&self) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let result = self.reload_all();
        self.count(&result);
        result
    }

    /// With the writer lock held.
    fn reload_all(&self) -> Result<bool, StoreError> {
        let set = build_set(self.store.load()?);
        let current = self.current.load();
        if current.withheld.is_none() {
            if same_shares(&set, &current.set) {
                return Ok(false);
            }
        } else {
            tracing::info!(shares = set.len(), "share store reachable again: shares restored");
        }
        self.current.store(Arc::new(ShareSnapshot {
            version: current.version + 1,
            set,
            withheld: None,
        }));
        Ok(true)
    }

    /// With the writer lock held: replaces the shares of `keys` with the stored ones.
    fn reload_resources(
        &self,
        keys: &std::collections::BTreeSet<(String, String)>,
    ) -> Result<bool, StoreError> {
        let stored = self.store.load_resources(keys)?;
        let current = self.current.load();
        let mut loaded: BTreeMap<(String, String), Vec<Grant<'_>>> = BTreeMap::new();
        for share in &stored {
            let actions = ShareActions::of(&share.actions);
            loaded
                .entry((share.workspace.clone(), share.resource.clone()))
                .or_default()
                .push((&share.grantee, actions));
        }
        let mut set: Option<ShareSet> = None;
        for (workspace, key) in keys {
            let Ok(resource) = Resource::parse(key) else {
                tracing::warn!(resource = %key, "skipping a stored share");
                continue;
            };
            let key = resource.to_string();
            let mut now = loaded
                .remove(&(workspace.clone(), key.clone()))
                .unwrap_or_default();
            now.sort();
            // A share without an action ZenML has is not in the view: not one to compare.
            now.retain(|(_, actions)| !actions.is_empty());
            let held = current.set.grants(workspace, &key);
            if held.eq(now.iter().map(|&(grantee, actions)| (grantee.clone(), actions))) {
                continue;
            }
            let set = set.get_or_insert_with(|| current.set.clone());
            set.purge(workspace, &resource);
            for (grantee, actions) in now {
                set.set(
                    workspace,
                    &resource,
                    grantee.clone(),
                    actions.names().map(str::to_owned),
                );
            }
        }
        let Some(set) = set else {
            return Ok(false);
        };
        self.current.store(Arc::new(ShareSnapshot {
            version: current.version + 1,
            set,
            withheld: None,
        }));
        Ok(true)
    }

    /// Withholds every share from decisions (a new, empty view with a new version, so no cached
    /// allow survives) until the next reload from the store succeeds. Called when the database
    /// has been unreachable for longer than `--shares-max-stale-secs`: a revoke made through
    /// another replica may be missing, and a share must not outlive its revoke unboundedly.
    /// Returns whether it did (false: already withheld).
    pub fn withhold(&self) -> Result<bool, StoreError> {
        let _writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let current = self.current.load();
        if current.withheld.is_some() {
            return Ok(false);
        }
        self.current.store(Arc::new(ShareSnapshot {
            version: current.version + 1,
            set: ShareSet::default(),
            withheld: Some(Withheld {
                since: SystemTime::now(),
                held: current.set.len(),
            }),
        }));
        Ok(true)
    }

    /// Why every share write is refused from now on, if it is (the database file was deleted
    /// or replaced while serving; a restart recovers).
    pub fn failure(&self) -> Option<String> {
        self.store.failure()
    }

    /// The current shares; hold the `Arc` for a whole request.
    pub fn snapshot(&self) -> Arc<ShareSnapshot> {
        self.current.load_full()
    }

    /// After a write committed while the view is withheld: the whole view from the store (the
    /// database answers again). A failure leaves the view withheld.
    fn after_write(&self, current: &ShareSnapshot, apply: impl FnOnce(&mut ShareSet)) {
        if current.withheld.is_some() {
            if let Err(error) = self.reload_all() {
                tracing::warn!(%error, "share written, but the shares cannot be reloaded yet");
            }
            return;
        }
        let mut set = current.set.clone();
        apply(&mut set);
        self.current.store(Arc::new(ShareSnapshot {
            version: current.version + 1,
            set,
            withheld: None,
        }));
        self.synced();
    }

    /// Replaces `grantee`'s actions on `resource` durably, then in memory.
    pub fn set(
        &self,
        workspace: &str,
        resource: &Resource,
        grantee: Grantee,
        actions: Vec<String>,
        shared_by: Option<&str>,
    ) -> Result<(), StoreError> {
        let _writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let mut actions = actions;
        actions.sort();
        actions.dedup();
        let stored = StoredShare {
            workspace: workspace.to_owned(),
            resource: resource.to_string(),
            grantee: grantee.clone(),
            actions: actions.clone(),
        };
        self.store.set(&stored, shared_by)?;
        self.after_write(&self.current.load(), |set| {
            set.set(workspace, resource, grantee, actions);
        });
        Ok(())
    }

    /// Keeps ZenML Pro's rule that a removed member loses what was shared with them: compares
    /// the memberships the store remembers with `current` (the active snapshot's), removes every
    /// stored share whose grantee is no longer a member of the workspace or project that holds
    /// its resource (audited with [`MEMBERSHIP_REMOVED`]), and remembers `current`, in one
    /// transaction; then the view (a new version when something was removed). Returns the
    /// removed shares. A grantee that was never a member (a guest) keeps its shares. The shares
    /// are read from the store, not the view, which may lag behind another replica's writes.
    pub fn settle_memberships(&self, current: &Memberships) -> Result<Vec<StoredShare>, StoreError> {
        let _writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let remembered = self.store.memberships()?;
        if remembered == *current {
            return Ok(Vec::new());
        }
        let nothing = Reach::default();
        let mut purged = Vec::new();
        for share in self.store.load()? {
            let Some(before) = remembered.reach(&share.grantee) else {
                continue;
            };
            let now = current.reach(&share.grantee).unwrap_or(&nothing);
            let Ok(resource) = Resource::parse(&share.resource) else {
                continue;
            };
            if before.lost(now, &share.workspace, resource.scope_project()) {
                purged.push(share);
            }
        }
        self.store
            .settle_memberships(current, &purged, MEMBERSHIP_REMOVED)?;
        if !purged.is_empty() {
            self.after_write(&self.current.load(), |set| {
                for share in &purged {
                    if let Ok(resource) = Resource::parse(&share.resource) {
                        set.set(&share.workspace, &resource, share.grantee.clone(), Vec::new());
                    }
                }
            });
        }
        Ok(purged)
    }

    /// Removes every share of `resources` durably, then in memory.
    pub fn purge(&self, workspace: &str, resources: &[Resource]) -> Result<usize, StoreError> {
        let _writer = self.writer.lock().map_err(|_| StoreError::Poisoned)?;
        let keys: Vec<String> = resources.iter().map(ToString::to_string).collect();
        let removed = self.store.purge(workspace, &keys)?;
        self.after_write(&self.current.load(), |set| {
            for resource in resources {
                set.purge(workspace, resource);
            }
        });
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
    const R: &str = "stack/11111111-1111-4111-8111-111111111111";

    /// The connection's page cache is bounded to 256 KiB (SQLite's default, 2 MiB, stayed
    /// resident after the first load read every share through it).
    #[test]
    fn the_page_cache_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteShareStore::open(&dir.path().join("shares.db")).unwrap();
        let inner = store.inner.lock().unwrap();
        let pages: i64 = inner
            .connection
            .query_row("PRAGMA cache_size", [], |row| row.get(0))
            .unwrap();
        assert_eq!(pages, -256, "a negative size is KiB");
    }

    /// Issue 16: a database file deleted (or replaced, or its WAL deleted) under a running
    /// store refuses that write and every later one, naming the path, changes nothing in
    /// memory, and saves every acknowledged share beside it.
    #[test]
    fn issue_16_a_lost_database_file_refuses_writes_and_keeps_what_was_acknowledged() {
        let resource = Resource::parse(R).unwrap();
        let other = Resource::parse("stack/22222222-2222-4222-8222-222222222222").unwrap();
        let suffix = |path: &Path, end: &str| {
            let mut name = path.as_os_str().to_owned();
            name.push(end);
            PathBuf::from(name)
        };
        type Lose = fn(&Path, &Path);
        let cases: [(&str, Lose, &str); 3] = [
            (
                "deleted",
                |db, _| std::fs::remove_file(db).unwrap(),
                "was deleted",
            ),
            (
                "replaced",
                |db, _| {
                    std::fs::remove_file(db).unwrap();
                    std::fs::write(db, b"").unwrap();
                },
                "was replaced",
            ),
            (
                "wal deleted",
                |_, wal| std::fs::remove_file(wal).unwrap(),
                "lost its WAL file",
            ),
        ];
        for (what, lose, expected) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("shares.db");
            let shares = Shares::open(Box::new(SqliteShareStore::open(&path).unwrap())).unwrap();
            shares
                .set(W, &resource, Grantee::User("u".into()), vec!["read".into()], None)
                .unwrap();
            lose(&path, &suffix(&path, "-wal"));
            for attempt in 0..2 {
                let error = shares
                    .set(W, &other, Grantee::User("u".into()), vec!["read".into()], None)
                    .unwrap_err()
                    .to_string();
                assert!(
                    error.contains(&format!("`{}` {expected}", path.display()))
                        && error.contains("refusing share writes until a restart"),
                    "{what} (write {attempt}): {error}"
                );
            }
            assert!(
                shares.purge(W, std::slice::from_ref(&resource)).is_err(),
                "{what}"
            );
            assert_eq!(shares.snapshot().version, 1, "{what}: the view is unchanged");
            assert!(shares.failure().is_some(), "{what}");
            let rescued: Vec<PathBuf> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|entry| entry.unwrap().path())
                .filter(|p| {
                    p.to_string_lossy().contains(".rescued-") && !p.to_string_lossy().ends_with("-wal")
                })
                .collect();
            assert_eq!(rescued.len(), 1, "{what}: {rescued:?}");
            let saved = SqliteShareStore::open(&rescued[0]).unwrap().load().unwrap();
            assert_eq!(
                saved.iter().map(|s| s.resource.as_str()).collect::<Vec<_>>(),
                [R],
                "{what}: the acknowledged share, and only it"
            );
        }
    }

    /// Issue 17: what `settle_memberships` remembers is read back equal after a reopen, and a
    /// database made before `share_events.reason` gets the column.
    #[test]
    fn memberships_are_remembered_across_reopening_and_old_databases_gain_the_reason_column() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shares.db");
        {
            let old = Connection::open(&path).unwrap();
            old.execute_batch(
                "CREATE TABLE share_events (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT, kind TEXT NOT NULL,
                 workspace_id TEXT NOT NULL, resource TEXT NOT NULL, grantee_kind TEXT, grantee_id TEXT,
                 actions TEXT, shared_by TEXT);
                 INSERT INTO share_events (kind, workspace_id, resource) VALUES ('purge', 'w', 'r');",
            )
            .unwrap();
        }
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
        {
            let store = SqliteShareStore::open(&path).unwrap();
            assert_eq!(store.memberships().unwrap(), Memberships::default());
            store
                .settle_memberships(&current, &[], MEMBERSHIP_REMOVED)
                .unwrap();
        }
        let store = SqliteShareStore::open(&path).unwrap();
        assert_eq!(store.memberships().unwrap(), current);
        assert_eq!(
            store.memberships().unwrap().reach(&Grantee::User("u".into())),
            Some(&reach)
        );
        let inner = store.inner.lock().unwrap();
        let reasons: i64 = inner
            .connection
            .query_row(
                "SELECT count(*) FROM share_events WHERE reason IS NULL",
                [],
                |row| row.get(0),
            )
            .unwrap();
        assert_eq!(reasons, 1, "the old row is kept, without a reason");
    }
}
