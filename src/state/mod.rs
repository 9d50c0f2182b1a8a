//! What every request handler shares: the active snapshot, limits and lifecycle flags; and
//! the one [`Report`] of them that `/v1/status` and `/metrics` both render.

mod report;

pub use report::{DirectoryCounts, Report, SharesReport};

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use crate::auth::CallerTokens;
use crate::cache::DecisionCache;
use crate::config::{Limits, ShareSync};
use crate::decision_log::DecisionLog;
use crate::metrics::Metrics;
use crate::pool::EvalPool;
use crate::snapshot::Snapshot;
use crate::store::Shares;
use crate::zenml::ZenmlConfig;

/// Cheap to clone; one per server.
#[derive(Clone, Debug)]
pub struct AppState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The active snapshot. `ArcSwap` rather than a lock: a request loads the current `Arc`
    /// without blocking a concurrent swap, and keeps its snapshot until it finishes.
    snapshot: ArcSwap<Snapshot>,
    limits: Limits,
    /// ZenML API settings (base path, tokens).
    zenml: ZenmlConfig,
    /// Durable shares and their in-memory view.
    shares: Arc<Shares>,
    /// Decisions, keyed by revision, share version and request.
    cache: DecisionCache,
    /// Event-time Prometheus metrics.
    metrics: Metrics,
    /// The audit log of decisions and shares.
    decision_log: DecisionLog,
    /// Counts and times of reloads.
    reloads: std::sync::Mutex<ReloadStats>,
    /// Set when shutdown begins: `/readyz` turns 503 so load balancers stop sending traffic.
    draining: AtomicBool,
    /// The errors of the last failed load, cleared by the next good one.
    last_load_error: std::sync::Mutex<Option<Vec<String>>>,
    /// Where work whose cost the caller controls runs.
    pool: EvalPool,
    /// Tokens of callers of the Cedar API, `/v1/status` and `/metrics` (none: open).
    caller_tokens: CallerTokens,
    /// Whether `/metrics` is served on a separate admin listener.
    admin_separate: bool,
    /// How the shares follow a shared database.
    share_sync: ShareSync,
    /// Set while the last settling of memberships failed (retried until it succeeds).
    settle_pending: AtomicBool,
}

/// Everything a server needs besides its snapshot.
#[derive(Debug)]
pub struct Services {
    /// Request limits.
    pub limits: Limits,
    /// ZenML API settings.
    pub zenml: ZenmlConfig,
    /// Durable shares.
    pub shares: Shares,
    /// Decision cache.
    pub cache: DecisionCache,
    /// Metrics.
    pub metrics: Metrics,
    /// Decision log.
    pub decision_log: DecisionLog,
    /// The evaluation pool.
    pub pool: EvalPool,
    /// Caller tokens.
    pub caller_tokens: CallerTokens,
    /// Whether an admin listener serves `/metrics`.
    pub admin_separate: bool,
    /// How the shares follow a shared database.
    pub share_sync: ShareSync,
}

/// Counts and times of reloads since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReloadStats {
    /// Reloads that published a new revision.
    pub succeeded: u64,
    /// Reloads whose sources were valid but unchanged.
    pub unchanged: u64,
    /// Reloads that found errors (the active snapshot stayed).
    pub failed: u64,
    /// When the last valid load finished.
    pub last_success: Option<std::time::SystemTime>,
    /// When the last failed load finished.
    pub last_failure: Option<std::time::SystemTime>,
}

// === impl AppState ===

impl AppState {
    /// State serving `snapshot` with `services`.
    pub fn new(snapshot: Snapshot, services: Services) -> Self {
        let Services {
            limits,
            zenml,
            shares,
            cache,
            metrics,
            decision_log,
            pool,
            caller_tokens,
            admin_separate,
            share_sync,
        } = services;
        Self {
            inner: Arc::new(Inner {
                snapshot: ArcSwap::from_pointee(snapshot),
                limits,
                zenml,
                shares: Arc::new(shares),
                cache,
                metrics,
                decision_log,
                reloads: std::sync::Mutex::new(ReloadStats::default()),
                draining: AtomicBool::new(false),
                last_load_error: std::sync::Mutex::new(None),
                pool,
                caller_tokens,
                admin_separate,
                share_sync,
                settle_pending: AtomicBool::new(false),
            }),
        }
    }

    /// The active snapshot; hold it for the whole request.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot.load_full()
    }

    /// Makes `snapshot` the active one and clears the last load error; returns the one it
    /// replaced.
    pub fn publish(&self, snapshot: Snapshot) -> Arc<Snapshot> {
        let replaced = self.inner.snapshot.swap(Arc::new(snapshot));
        if let Ok(mut last) = self.inner.last_load_error.lock() {
            *last = None;
        }
        replaced
    }

    /// Records a failed load; the active snapshot stays.
    pub fn record_load_error(&self, errors: Vec<String>) {
        if let Ok(mut last) = self.inner.last_load_error.lock() {
            *last = Some(errors);
        }
        if let Ok(mut reloads) = self.inner.reloads.lock() {
            reloads.failed += 1;
            reloads.last_failure = Some(std::time::SystemTime::now());
        }
    }

    /// Records a successful reload (`changed`: a new revision was published).
    pub fn record_load_success(&self, changed: bool) {
        if let Ok(mut last) = self.inner.last_load_error.lock() {
            *last = None;
        }
        if let Ok(mut reloads) = self.inner.reloads.lock() {
            if changed {
                reloads.succeeded += 1;
            } else {
                reloads.unchanged += 1;
            }
            reloads.last_success = Some(std::time::SystemTime::now());
        }
    }

    /// Purges the shares of grantees that are no longer members under `snapshot`, the one that
    /// becomes (or is) the active snapshot (`store::Shares::settle_memberships`), then logs and
    /// counts them. Blocking (SQLite). A plain-Cedar directory has no memberships: nothing to do.
    /// A store failure is logged and leaves [`AppState::settle_pending`] set: `follow_shares`
    /// tries again, with the active snapshot, once the store answers (nothing was remembered).
    pub fn settle_memberships(&self, snapshot: &Snapshot) {
        let Some(view) = &snapshot.zenml else {
            return;
        };
        let started = std::time::Instant::now();
        match self.inner.shares.settle_memberships(view.memberships()) {
            Ok(purged) => {
                self.inner.settle_pending.store(false, Ordering::Relaxed);
                tracing::info!(
                    revision = %snapshot.revision,
                    purged = purged.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "memberships settled"
                );
                for share in &purged {
                    let (kind, id) = match &share.grantee {
                        crate::zenml::Grantee::User(id) => ("user", id),
                        crate::zenml::Grantee::Team(id) => ("team", id),
                    };
                    tracing::info!(
                        workspace.id = %share.workspace,
                        resource.id = %share.resource,
                        grantee.kind = kind,
                        grantee.id = %id,
                        revision = %snapshot.revision,
                        reason = crate::store::MEMBERSHIP_REMOVED,
                        "share purged"
                    );
                    self.inner.decision_log.record(serde_json::json!({
                        "time": crate::decision_log::now(),
                        "event": "purge",
                        "reason": crate::store::MEMBERSHIP_REMOVED,
                        "workspace": share.workspace,
                        "resource": share.resource,
                        "grantee": {kind: id},
                        "actions": share.actions,
                        "revision": snapshot.revision,
                    }));
                }
                if !purged.is_empty() {
                    self.inner.metrics.shares_purged_membership_removed(purged.len());
                }
            }
            Err(error) => {
                self.inner.settle_pending.store(true, Ordering::Relaxed);
                tracing::error!(%error, revision = %snapshot.revision, "cannot settle memberships; retried until the share store answers");
            }
        }
    }

    /// Reload counts and times.
    pub fn reloads(&self) -> ReloadStats {
        self.inner.reloads.lock().map(|r| *r).unwrap_or_default()
    }

    /// The decision cache.
    pub fn cache(&self) -> &DecisionCache {
        &self.inner.cache
    }

    /// Event-time metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// The decision log.
    pub fn decision_log(&self) -> &DecisionLog {
        &self.inner.decision_log
    }

    /// The errors of the last failed load, if the last load failed.
    pub fn last_load_error(&self) -> Option<Vec<String>> {
        self.inner
            .last_load_error
            .lock()
            .ok()
            .and_then(|last| last.clone())
    }

    /// Request limits.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// ZenML API settings.
    pub fn zenml(&self) -> &ZenmlConfig {
        &self.inner.zenml
    }

    /// The shares.
    pub fn shares(&self) -> &Shares {
        &self.inner.shares
    }

    /// How the shares follow a shared database.
    pub fn share_sync(&self) -> ShareSync {
        self.inner.share_sync
    }

    /// Whether the last settling of memberships failed (and must be tried again).
    pub fn settle_pending(&self) -> bool {
        self.inner.settle_pending.load(Ordering::Relaxed)
    }

    /// The shares, as an owned handle for blocking tasks.
    pub fn shares_handle(&self) -> Arc<Shares> {
        self.inner.shares.clone()
    }

    /// The evaluation pool.
    pub fn pool(&self) -> &EvalPool {
        &self.inner.pool
    }

    /// Tokens of the sidecar's own callers.
    pub fn caller_tokens(&self) -> &CallerTokens {
        &self.inner.caller_tokens
    }

    /// Whether `/metrics` is on the admin listener.
    pub fn admin_separate(&self) -> bool {
        self.inner.admin_separate
    }

    /// The state now, as `/v1/status` and `/metrics` report it.
    pub fn report(&self) -> Report {
        Report::of(self)
    }

    /// Marks the server as shutting down.
    pub fn start_draining(&self) {
        self.inner.draining.store(true, Ordering::SeqCst);
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::SeqCst)
    }
}
