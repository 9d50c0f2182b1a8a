//! Hot reload: watch the policy sources, debounce, rebuild the whole snapshot off the request
//! path, and swap it in only when it is valid.
//!
//! One actor loop (`run`) receives file-system events, `SIGHUP`s and the shutdown signal. A
//! burst of events becomes one reload once the files have been quiet for the debounce period
//! (or the burst has lasted `MAX_DEBOUNCE`). A reload loads every source again (`policy::load`)
//! on a blocking thread; a valid result with a new revision is published, an invalid one is
//! logged with every error and recorded in `/v1/status`, and the last good snapshot stays.
//!
//! Watching follows how files really change: editors that save by writing a temporary file and
//! renaming it, new and deleted files, directories replaced whole, and Kubernetes ConfigMap
//! volumes that swap a `..data` symlink. The roots and their parent directories are watched
//! and re-registered after every reload, so a replaced directory is watched again; a reload
//! whose sources are unchanged (same revision) changes nothing. `--watch poll` polls instead,
//! for file systems without change events.
//!
//! A valid candidate must also pass the reload [`guard`] before it is published: `@required`
//! policies stay, no policy file is emptied, and the `--reload-gate` decision tables pass.

pub mod guard;

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::{PollWatcher, RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::policy::{self, Sources};
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

/// Runs the reload actor until `shutdown` completes.
pub async fn run(
    state: AppState,
    sources: Sources,
    config: WatchConfig,
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
    register(&mut watcher, &mut registered, &sources);
    let mut hangup = hangup_signal();
    let gate = config.reload_gate.as_slice();
    // Edits between the initial load and the watch registration would otherwise go unseen
    // until the next one: check once now (unchanged sources change nothing). Not with
    // `--watch off`: then only SIGHUP reloads.
    if config.mode != WatchMode::Off {
        reload(&state, &sources, gate, "watch started").await;
    }
    tokio::pin!(shutdown);
    loop {
        let reason = tokio::select! {
            () = &mut shutdown => return,
            _ = recv_hangup(&mut hangup) => "SIGHUP",
            event = receiver.recv() => {
                let Some(event) = event else { return };
                if !relevant(&event) {
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
                            Some(event) if relevant(&event) => {
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
        reload(&state, &sources, gate, reason).await;
        // A replaced directory needs a new watch; edits made before it was in place are caught
        // by one more check.
        if register(&mut watcher, &mut registered, &sources) {
            reload(&state, &sources, gate, "watch renewed").await;
        }
    }
}

/// What a reload found.
enum Loaded {
    /// Valid, and accepted by the guard (or unchanged). Boxed: a snapshot's fields are large.
    Valid(Box<policy::PolicySnapshot>),
    /// Invalid sources: every error.
    Invalid(Vec<policy::LoadError>),
    /// Valid, but the reload guard refused it: every reason.
    Refused(Vec<policy::LoadError>),
}

/// Loads the sources again and publishes them if valid, new and accepted by the reload
/// [`guard`] (`gate`: the `--reload-gate` decision tables). Returns whether a new snapshot was
/// published. Only the actor calls it, one reload at a time, so the snapshot the guard compares
/// with is still the active one when the candidate is published.
pub async fn reload(state: &AppState, sources: &Sources, gate: &[PathBuf], reason: &str) -> bool {
    let load_sources = sources.clone();
    let active = state.snapshot();
    let gate = gate.to_vec();
    let loaded = tokio::task::spawn_blocking(move || match policy::load(&load_sources) {
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
    })
    .await;
    let loaded = match loaded {
        Ok(loaded) => loaded,
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
                "policies reloaded"
            );
            for warning in &snapshot.warnings {
                tracing::warn!(%warning, "policy validation warning");
            }
            // Counted before it is visible: whoever sees the new revision sees it counted.
            state.record_load_success(true);
            state.publish(*snapshot);
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

#[cfg(unix)]
fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(not(unix))]
fn identity(path: &Path) -> Option<(u64, u64)> {
    path.exists().then_some((0, 0))
}

/// Whether an event can change the sources: access events and editor swap, backup and lock
/// files cannot. (ConfigMap `..data` swaps are relevant: they are how the files change.)
fn relevant(event: &Event) -> bool {
    let event = match event {
        Event::FsError(error) => {
            tracing::warn!(%error, "file watcher error; reloading to be safe");
            return true;
        }
        Event::Fs(event) => event,
    };
    // Opening and reading (our own reloads read every file) change nothing; a closed write does.
    use notify::event::{AccessKind, AccessMode, EventKind};
    if matches!(event.kind, EventKind::Access(kind) if kind != AccessKind::Close(AccessMode::Write)) {
        return false;
    }
    event.paths.is_empty() || event.paths.iter().any(|path| !is_editor_noise(path))
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

#[cfg(unix)]
fn hangup_signal() -> Option<tokio::signal::unix::Signal> {
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

#[cfg(not(unix))]
fn hangup_signal() -> Option<()> {
    None
}

#[cfg(not(unix))]
async fn recv_hangup(_: &mut Option<()>) {
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

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
