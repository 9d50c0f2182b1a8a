//! Hot reload: watch the policy sources, debounce, rebuild the whole snapshot off the request
//! path, and swap it in only when it is valid.
//!
//! One actor loop (`run`) receives file-system events, `SIGHUP`s and the shutdown signal. A
//! burst of events becomes one reload once the files have been quiet for the debounce period
//! (or the burst has lasted `MAX_DEBOUNCE`). A reload loads every source again (`Loader::load`)
//! on the [`LoadThread`], which also drops the snapshot a reload replaces; a valid result with a
//! new revision is published, an invalid one is logged with every error and recorded in
//! `/v1/status`, and the last good snapshot stays.
//!
//! Watching follows how files really change: editors that save by writing a temporary file and
//! renaming it, new and deleted files, directories replaced whole, and Kubernetes ConfigMap
//! volumes that swap a `..data` symlink. The roots and their parent directories are watched
//! and re-registered after every reload, so a replaced directory is watched again; a reload
//! whose sources are unchanged (same revision) changes nothing. `--watch poll` polls instead,
//! for file systems without change events.
//!
//! Only events that can change a source wake the actor (`Filter`): policy files (`*.cedar`),
//! schema files (`*.cedarschema`, `*.cedarschema.json`), the directory file, directories under
//! the source trees (created, removed or renamed into place), the source paths themselves and
//! ConfigMap `..data` swaps. The share database, its `-wal`/`-shm` files and log files kept
//! beside the sources never cause a reload.
//!
//! A valid candidate must also pass the reload [`guard`] before it is published: `@required`
//! policies stay, no policy file is emptied, and the `--reload-gate` decision tables pass.

pub mod guard;
mod load_thread;

pub use load_thread::{LoadThread, LoadThreadFailed};

use std::collections::HashSet;
use std::ffi::OsStr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::error::LoadError;
use crate::policy::{POLICY_SUFFIXES, SCHEMA_SUFFIXES};
use crate::snapshot::{Loader, Snapshot, Sources};
use crate::state::AppState;

/// How the sources are watched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum WatchMode {
    /// File-system change events (inotify, FSEvents, ...).
    Events,
    /// Poll the files (for network or FUSE file systems without events).
    Poll,
    /// Never reload by itself (`SIGHUP` still reloads).
    Off,
}

/// Watching settings.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    /// Events, poll or off.
    pub mode: WatchMode,
    /// Quiet time before a burst of changes is reloaded.
    pub debounce: Duration,
    /// Poll interval (`WatchMode::Poll`).
    pub poll_interval: Duration,
    /// Decision tables a candidate snapshot must pass before it is published (`--reload-gate`;
    /// empty: no gate).
    pub reload_gate: Vec<PathBuf>,
}

/// A burst that never goes quiet is still reloaded after this long.
pub const MAX_DEBOUNCE: Duration = Duration::from_secs(2);

/// What wakes the actor.
enum Event {
    /// Something changed under a watched path.
    Fs(notify::Event),
    /// The watcher itself failed (e.g. too many watches); reload to be safe.
    FsError(String),
}

/// Runs the reload actor until `shutdown` completes. `loader` made the active snapshot (what it
/// keeps makes the reloads cheap) on `loads`, which makes every reload too; `hangup` is the
/// `SIGHUP` listener, installed by the caller ([`hangup_signal`]) before it reports readiness.
pub async fn run(
    state: AppState,
    sources: Sources,
    mut loader: Loader,
    loads: LoadThread,
    config: WatchConfig,
    mut hangup: Hangup,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let (sender, mut receiver) = mpsc::unbounded_channel::<Event>();
    // Kept so that the channel stays open when no watcher holds a sender (`--watch off`).
    let _sender = sender.clone();
    let mut watcher = match start_watcher(&config, sender) {
        Ok(watcher) => watcher,
        Err(error) => {
            tracing::error!(%error, "cannot watch the policy sources; reload on SIGHUP only");
            None
        }
    };
    let mut registered = Registered::new();
    let mut filter = Filter::new(&sources);
    register(&mut watcher, &mut registered, &sources);
    filter.refresh();
    let gate = config.reload_gate.as_slice();
    // Edits between the initial load and the watch registration would otherwise go unseen
    // until the next one: check once now (unchanged sources change nothing). Not with
    // `--watch off`: then only SIGHUP reloads.
    if config.mode != WatchMode::Off {
        reload(&state, &sources, &mut loader, &loads, gate, "watch started").await;
    }
    tokio::pin!(shutdown);
    loop {
        let reason = tokio::select! {
            () = &mut shutdown => return,
            _ = recv_hangup(&mut hangup) => "SIGHUP",
            event = receiver.recv() => {
                let Some(event) = event else { return };
                if !filter.relevant(&event) {
                    continue;
                }
                if let Event::Fs(event) = &event {
                    tracing::debug!(kind = ?event.kind, paths = ?event.paths, "source change");
                }
                // Debounce: wait for the files to be quiet, but not forever.
                let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
                let quiet = tokio::time::sleep(config.debounce);
                tokio::pin!(quiet);
                loop {
                    tokio::select! {
                        () = &mut quiet => break,
                        () = tokio::time::sleep_until(deadline) => break,
                        more = receiver.recv() => match more {
                            // Only changes restart the quiet period.
                            Some(event) if filter.relevant(&event) => {
                                quiet.as_mut().reset(tokio::time::Instant::now() + config.debounce);
                            }
                            Some(_) => {}
                            None => break,
                        },
                    }
                }
                "file change"
            }
        };
        reload(&state, &sources, &mut loader, &loads, gate, reason).await;
        // A replaced directory needs a new watch; edits made before it was in place are caught
        // by one more check.
        let renewed = register(&mut watcher, &mut registered, &sources);
        filter.refresh();
        if renewed {
            reload(&state, &sources, &mut loader, &loads, gate, "watch renewed").await;
        }
    }
}

/// What a reload found.
enum Loaded {
    /// Valid, and accepted by the guard (or unchanged). Boxed: a snapshot's fields are large.
    Valid(Box<Snapshot>),
    /// Invalid sources: every error.
    Invalid(Vec<LoadError>),
    /// Valid, but the reload guard refused it: every reason.
    Refused(Vec<LoadError>),
}

/// Loads the sources again and publishes them if valid, new and accepted by the reload
/// [`guard`] (`gate`: the `--reload-gate` decision tables), on `loads`. Returns whether a new
/// snapshot was published. Only the actor calls it, one reload at a time, so the snapshot the
/// guard compares with is still the active one when the candidate is published.
pub async fn reload(
    state: &AppState,
    sources: &Sources,
    loader: &mut Loader,
    loads: &LoadThread,
    gate: &[PathBuf],
    reason: &str,
) -> bool {
    let load_sources = sources.clone();
    let active = state.snapshot();
    let gate = gate.to_vec();
    // The loader goes to the load thread and comes back with what this load keeps.
    let mut moved = std::mem::take(loader);
    let loaded = loads
        .run(move || {
            let loaded = match moved.load(&load_sources) {
                Err(errors) => Loaded::Invalid(errors),
                Ok(snapshot) if snapshot.revision == active.revision => Loaded::Valid(Box::new(snapshot)),
                Ok(snapshot) => {
                    // A valid set may still be a weaker one by accident: check it before it is seen.
                    let refusals = guard::check(&active, &snapshot, &gate);
                    if refusals.is_empty() {
                        Loaded::Valid(Box::new(snapshot))
                    } else {
                        Loaded::Refused(refusals)
                    }
                }
            };
            (moved, loaded)
        })
        .await;
    let loaded = match loaded {
        Ok((returned, loaded)) => {
            *loader = returned;
            loaded
        }
        Err(error) => {
            tracing::error!(%error, "reload task failed; keeping the active policies");
            state.record_load_error(vec![format!("reload task failed: {error}")]);
            return false;
        }
    };
    let active = state.snapshot().revision.clone();
    let (errors, what) = match loaded {
        Loaded::Valid(snapshot) => {
            if snapshot.revision == active {
                // Made on the load thread: freed there.
                loads.drop_there(snapshot);
                state.record_load_success(false);
                tracing::debug!(revision = %active, reason, "sources unchanged");
                return false;
            }
            let counts = snapshot.counts();
            tracing::info!(
                reason,
                from = %active,
                to = %snapshot.revision,
                policies = counts.policies,
                entities = counts.entities,
                store = %snapshot.store,
                "policies reloaded"
            );
            for warning in &snapshot.warnings {
                tracing::warn!(%warning, "policy validation warning");
            }
            // A removed member's shares go before the snapshot without their membership is
            // seen (only a load that becomes the active snapshot purges).
            let settling = state.clone();
            let snapshot = match tokio::task::spawn_blocking(move || {
                settling.settle_memberships(&snapshot);
                snapshot
            })
            .await
            {
                Ok(snapshot) => snapshot,
                Err(error) => {
                    tracing::error!(%error, "membership task failed; keeping the active policies");
                    state.record_load_error(vec![format!("membership task failed: {error}")]);
                    return false;
                }
            };
            // Counted before it is visible: whoever sees the new revision sees it counted.
            state.record_load_success(true);
            let replaced = state.publish(*snapshot);
            // Freed by the thread that allocated it (unless a request still holds it).
            loads.drop_there(replaced);
            return true;
        }
        Loaded::Invalid(errors) => (errors, "invalid policy sources; keeping the active policies"),
        Loaded::Refused(errors) => (
            errors,
            "valid policy sources refused by the reload guard; keeping the active policies",
        ),
    };
    for error in &errors {
        tracing::error!(%error, "{what}");
    }
    tracing::error!(errors = errors.len(), %active, reason, "reload failed");
    state.record_load_error(errors.iter().map(ToString::to_string).collect());
    false
}

fn start_watcher(
    config: &WatchConfig,
    sender: mpsc::UnboundedSender<Event>,
) -> notify::Result<Option<Box<dyn Watcher + Send>>> {
    let handler = move |result: notify::Result<notify::Event>| {
        let event = match result {
            Ok(event) => Event::Fs(event),
            Err(error) => Event::FsError(error.to_string()),
        };
        // The actor is gone only at shutdown; nothing to do then.
        let _ = sender.send(event);
    };
    Ok(match config.mode {
        WatchMode::Off => None,
        WatchMode::Events => Some(Box::new(RecommendedWatcher::new(
            handler,
            notify::Config::default(),
        )?)),
        WatchMode::Poll => {
            let poll = notify::Config::default()
                .with_poll_interval(config.poll_interval)
                .with_compare_contents(true);
            Some(Box::new(PollWatcher::new(handler, poll)?))
        }
    })
}

/// The directories to watch: each source directory recursively, and the parent directory of
/// every source non-recursively, so that a file or directory replaced by a rename is seen.
/// Files are never watched themselves: a watch follows the inode, which a rename replaces.
fn roots(sources: &Sources) -> Vec<(PathBuf, RecursiveMode)> {
    let mut roots: Vec<(PathBuf, RecursiveMode)> = Vec::new();
    let mut add = |path: PathBuf, mode: RecursiveMode| match roots.iter_mut().find(|(p, _)| *p == path) {
        Some(existing) if mode == RecursiveMode::Recursive => existing.1 = mode,
        Some(_) => {}
        None => roots.push((path, mode)),
    };
    for path in [&sources.policies, &sources.schemas, &sources.directory] {
        // Absolute, so that event paths compare with the `Filter`'s.
        let path = &absolute(path);
        if path.is_dir() {
            add(path.clone(), RecursiveMode::Recursive);
        }
        let parent = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        add(parent.to_path_buf(), RecursiveMode::NonRecursive);
    }
    roots
}

/// The roots as registered: path, mode and the identity (device, inode) of what was watched.
type Registered = Vec<(PathBuf, RecursiveMode, Option<(u64, u64)>)>;

/// Registers the roots whose directory is new or was replaced since the last call (a watch
/// follows the inode, so a directory renamed into place needs a new one). Unchanged roots keep
/// their watch: unwatching them would lose the events in between. Missing paths are skipped
/// (their parent is watched, so their return is seen). Returns whether anything was
/// (re-)registered.
fn register(
    watcher: &mut Option<Box<dyn Watcher + Send>>,
    registered: &mut Registered,
    sources: &Sources,
) -> bool {
    let Some(watcher) = watcher else {
        return false;
    };
    let mut changed = false;
    let mut now: Registered = Vec::new();
    for (path, mode) in roots(sources) {
        let identity = identity(&path);
        let before = registered
            .iter()
            .find(|(p, m, _)| *p == path && *m == mode)
            .map(|(_, _, id)| *id);
        if before != Some(identity) {
            changed = true;
            let _ = watcher.unwatch(&path);
            if identity.is_some()
                && let Err(error) = watcher.watch(&path, mode)
            {
                tracing::warn!(path = %path.display(), %error, "cannot watch");
            }
        }
        now.push((path, mode, identity));
    }
    *registered = now;
    changed
}

// The (device, inode) of what a path names now: `store` tells a replaced file the same way.
use crate::store::identity;

/// Which file-system events can change the sources. Only the paths of an event count, never
/// its mere arrival: the folders watched also hold other files (the share database and its
/// `-wal` and `-shm` files, logs), whose writes must not reload anything.
#[derive(Debug)]
struct Filter {
    /// The three source paths, absolute.
    sources: Vec<PathBuf>,
    /// The source directories searched recursively, with the name suffixes of their files.
    trees: Vec<(PathBuf, &'static [&'static str])>,
    /// The directories under the trees when last looked (a directory moved away is named by
    /// its old path only, which no longer says it was one).
    directories: HashSet<PathBuf>,
}

/// The name of the symlink a Kubernetes ConfigMap volume swaps to update its files.
const CONFIGMAP_DATA: &str = "..data";

// === impl Filter ===

impl Filter {
    fn new(sources: &Sources) -> Self {
        Self {
            sources: [&sources.policies, &sources.schemas, &sources.directory]
                .into_iter()
                .map(|path| absolute(path))
                .collect(),
            trees: vec![
                (absolute(&sources.policies), POLICY_SUFFIXES),
                (absolute(&sources.schemas), SCHEMA_SUFFIXES),
            ],
            directories: HashSet::new(),
        }
    }

    /// Looks again which directories are under the trees (as the loader walks them: hidden
    /// entries skipped, symlinks followed).
    fn refresh(&mut self) {
        self.directories = self
            .trees
            .iter()
            .filter(|(tree, _)| tree.is_dir())
            .flat_map(|(tree, _)| {
                walkdir::WalkDir::new(tree)
                    .follow_links(true)
                    .min_depth(1)
                    .into_iter()
                    .filter_entry(|entry| !entry.file_name().to_string_lossy().starts_with('.'))
                    .flatten()
                    .filter(|entry| entry.file_type().is_dir())
                    .map(|entry| entry.into_path())
            })
            .collect();
    }

    /// Whether an event can change the sources: access events, editor swap, backup and lock
    /// files, and files that are no source cannot.
    fn relevant(&self, event: &Event) -> bool {
        let event = match event {
            Event::FsError(error) => {
                tracing::warn!(%error, "file watcher error; reloading to be safe");
                return true;
            }
            Event::Fs(event) => event,
        };
        // Opening and reading (our own reloads read every file) change nothing; a closed write
        // does.
        use notify::event::{AccessKind, AccessMode, CreateKind, EventKind, RemoveKind};
        if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write)) {
            return false;
        }
        let folder = matches!(
            event.kind,
            EventKind::Create(CreateKind::Folder) | EventKind::Remove(RemoveKind::Folder)
        );
        // No paths: the watcher lost track (a queue overflow, a rescan); reload to be safe.
        event.paths.is_empty() || event.paths.iter().any(|path| self.is_source(path, folder))
    }

    /// Whether `path` (`folder`: the event says it is a directory) is, or may hold, a source.
    fn is_source(&self, path: &Path, folder: bool) -> bool {
        if is_editor_noise(path) {
            return false;
        }
        // A source itself, or a directory above one (replaced, moved, removed).
        if self.sources.iter().any(|source| source.starts_with(path)) {
            return true;
        }
        // A ConfigMap update: every file behind the symlinks changes at once.
        if path.file_name() == Some(OsStr::new(CONFIGMAP_DATA)) {
            return true;
        }
        self.trees.iter().any(|(tree, suffixes)| {
            let Ok(relative) = path.strip_prefix(tree) else {
                return false;
            };
            // The loader skips hidden entries, and whatever is under them.
            let hidden = relative
                .components()
                .any(|c| matches!(c, Component::Normal(name) if name.to_string_lossy().starts_with('.')));
            if hidden || relative.as_os_str().is_empty() {
                return false;
            }
            let name = path.file_name().map(OsStr::to_string_lossy).unwrap_or_default();
            suffixes.iter().any(|suffix| name.ends_with(suffix))
                || folder
                || self.directories.contains(path)
                || path.is_dir()
        })
    }
}

/// `path` made absolute against the working directory (as notify reports the paths of
/// watches registered so), without resolving symlinks.
fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Editor temporaries: vim's `.x.swp`/`4913`, emacs' `#x#`/`.#x`, `x~` backups.
pub fn is_editor_noise(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    name.ends_with('~')
        || name.ends_with(".swp")
        || name.ends_with(".swx")
        || name.ends_with(".swo")
        || name == "4913"
        || name.starts_with(".#")
        || (name.starts_with('#') && name.ends_with('#'))
}

/// A `SIGHUP` listener ([`hangup_signal`]); `None` when it could not be installed.
#[cfg(unix)]
pub type Hangup = Option<tokio::signal::unix::Signal>;
/// No `SIGHUP` here.
#[cfg(not(unix))]
pub type Hangup = Option<()>;

/// How often [`follow_shares`] looks at the share store's health.
const SHARE_HEALTH_TICK: Duration = Duration::from_secs(1);

/// What [`follow_shares`] does next, on a blocking thread.
#[derive(Debug, Clone)]
enum ShareWork {
    /// Take in what the notifications named.
    Refresh,
    /// Reload everything (the periodic safety net; and the database answers again while the
    /// shares are withheld).
    Resync,
    /// Withhold the shares: the database has been unreachable for this long (the last error).
    Withhold(Duration, Option<String>),
    /// Settle memberships again (the last settling failed).
    Settle,
}

/// The work the store's health calls for now, if any: cheap reads, on the async side, so that a
/// healthy store costs no blocking thread each second.
fn health_work(state: &AppState, shared: bool, max_stale: Duration) -> Option<ShareWork> {
    let shares = state.shares();
    let health = shares.health();
    let withheld = shares.snapshot().withheld.is_some();
    match health.unreachable_since {
        Some(since) => {
            let down = since.elapsed().unwrap_or_default();
            (shared && !withheld && down >= max_stale).then_some(ShareWork::Withhold(down, health.last_error))
        }
        None if withheld => Some(ShareWork::Resync),
        None => state.settle_pending().then_some(ShareWork::Settle),
    }
}

/// Follows the share store for as long as the server runs, one step at a time on a blocking
/// thread:
/// - each change notification from other sidecars on a shared database (PostgreSQL) takes in
///   what it named (`Shares::refresh`), and every `--shares-resync-secs` everything is reloaded
///   (`Shares::resync`); either makes a new view and version only when the shares differ;
/// - every second: while the database has been unreachable for longer than
///   `--shares-max-stale-secs`, the shares are withheld from decisions (`Shares::withhold`);
///   once it answers, withheld shares are reloaded and a failed settling of memberships is
///   tried again.
pub async fn follow_shares(state: AppState, shutdown: impl Future<Output = ()>) {
    let sync = state.share_sync();
    let mut changes = state.shares().changes();
    let mut resync = tokio::time::interval(sync.resync);
    resync.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resync.tick().await;
    let mut health = tokio::time::interval(SHARE_HEALTH_TICK);
    health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        let shared = changes.is_some();
        let work = tokio::select! {
            () = &mut shutdown => return,
            changed = async {
                match changes.as_mut() {
                    Some(changes) => changes.changed().await,
                    None => std::future::pending().await,
                }
            } => match changed {
                Ok(()) => ShareWork::Refresh,
                Err(_) => {
                    changes = None;
                    continue;
                }
            },
            _ = resync.tick(), if shared => ShareWork::Resync,
            _ = health.tick() => match health_work(&state, shared, sync.max_stale) {
                Some(work) => work,
                None => continue,
            },
        };
        let state = state.clone();
        if let Err(error) =
            tokio::task::spawn_blocking(move || share_step(&state, work, sync.max_stale)).await
        {
            tracing::warn!(%error, "share step failed");
        }
    }
}

fn share_step(state: &AppState, work: ShareWork, max_stale: Duration) {
    let shares = state.shares();
    let result = match work {
        ShareWork::Refresh => shares.refresh(),
        ShareWork::Resync => shares.resync(),
        ShareWork::Withhold(down, error) => {
            if shares.withhold().unwrap_or(false) {
                tracing::error!(
                    unreachable_secs = down.as_secs(),
                    max_stale_secs = max_stale.as_secs(),
                    error = error.as_deref().unwrap_or(""),
                    "share store unreachable for longer than --shares-max-stale-secs: shares withheld from decisions until it answers"
                );
            }
            return;
        }
        ShareWork::Settle => {
            state.settle_memberships(&state.snapshot());
            return;
        }
    };
    match result {
        Ok(true) => tracing::debug!("shares changed elsewhere: view updated"),
        Ok(false) => {}
        Err(error) => tracing::warn!(%error, "cannot reload the shares; keeping the last ones"),
    }
}

/// Installs the `SIGHUP` listener now (within the runtime). `serve` calls it before it reports
/// readiness: until then `SIGHUP`'s default action (ending the process) applies.
#[cfg(unix)]
pub fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        .map_err(|error| tracing::warn!(%error, "cannot listen for SIGHUP"))
        .ok()
}

#[cfg(unix)]
async fn recv_hangup(signal: &mut Option<tokio::signal::unix::Signal>) {
    match signal {
        Some(signal) => {
            signal.recv().await;
        }
        None => std::future::pending().await,
    }
}

/// No `SIGHUP` here.
#[cfg(not(unix))]
pub fn hangup_signal() -> Hangup {
    None
}

#[cfg(not(unix))]
async fn recv_hangup(_: &mut Option<()>) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 16, finding 8: only paths that are, or may hold, sources reload.
    #[test]
    fn issue_16_only_source_paths_are_relevant() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for sub in ["policies/extra", "policies/gone", "schemas", "policies/..2026_01"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        let sources = Sources {
            policies: root.join("policies"),
            schemas: root.join("schemas"),
            directory: root.join("policies/directory.yaml"),
        };
        let mut filter = Filter::new(&sources);
        filter.refresh();
        // `gone` was a directory when last looked, and is moved away now.
        std::fs::remove_dir(root.join("policies/gone")).unwrap();
        // (path under the temp dir, event says folder, relevant)
        let table: &[(&str, bool, bool)] = &[
            ("policies/workspace.cedar", false, true),
            ("policies/extra/new.cedar", false, true),
            ("policies/directory.yaml", false, true),
            ("schemas/zenml.cedarschema", false, true),
            ("schemas/zenml.cedarschema.json", false, true),
            ("policies", false, true),
            ("schemas", false, true),
            ("", false, true),
            ("..data", false, true),
            ("policies/..data", false, true),
            ("policies/extra", false, true),
            ("policies/gone", false, true),
            ("policies/created-then-removed", true, true),
            ("shares.db", false, false),
            ("shares.db-wal", false, false),
            ("shares.db-shm", false, false),
            ("shares.db.rescued-1700000000", false, false),
            ("decisions.log", false, false),
            ("policies/debug.log", false, false),
            ("policies/notes.yaml", false, false),
            ("policies/shares.db-journal", false, false),
            ("policies/never-a-directory", false, false),
            ("policies/.workspace.cedar.swp", false, false),
            ("policies/workspace.cedar~", false, false),
            ("policies/.hidden/x.cedar", false, false),
            ("policies/..2026_01/workspace.cedar", false, false),
            ("policies/..2026_01", true, false),
            ("schemas/workspace.cedar", false, false),
            ("workspace.cedar", false, false),
            ("zenml.cedarschema", false, false),
        ];
        for (path, folder, relevant) in table {
            let path = root.join(path);
            assert_eq!(filter.is_source(&path, *folder), *relevant, "{}", path.display());
        }
        // Reads change nothing; a lost track (no paths) reloads to be safe.
        use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
        let event =
            |kind: EventKind, path: &str| Event::Fs(notify::Event::new(kind).add_path(root.join(path)));
        assert!(!filter.relevant(&event(
            EventKind::Access(AccessKind::Open(AccessMode::Any)),
            "policies/workspace.cedar"
        )));
        assert!(filter.relevant(&event(
            EventKind::Modify(ModifyKind::Any),
            "policies/workspace.cedar"
        )));
        assert!(!filter.relevant(&event(EventKind::Modify(ModifyKind::Any), "shares.db-wal")));
        assert!(filter.relevant(&Event::Fs(notify::Event::new(EventKind::Other))));
    }

    #[test]
    fn editor_noise_is_recognised() {
        for noise in [
            ".workspace.cedar.swp",
            "workspace.cedar~",
            "4913",
            ".#workspace.cedar",
            "#workspace.cedar#",
        ] {
            assert!(is_editor_noise(Path::new(noise)), "{noise}");
        }
        for real in [
            "workspace.cedar",
            "..data",
            "directory.yaml",
            "..2026_11_23_14_00_00.1",
        ] {
            assert!(!is_editor_noise(Path::new(real)), "{real}");
        }
    }
}
