//! The server's state at one moment ([`Report`]): the one reading that `/v1/status` renders as
//! JSON and `/metrics` as Prometheus families, so the two can never disagree.

use std::time::SystemTime;

use prometheus::core::Collector;
use prometheus::proto::MetricFamily;
use prometheus::{Gauge, GaugeVec, IntCounter, IntCounterVec, Opts};
use serde_json::{Value, json};

use super::{AppState, ReloadStats};
use crate::cache::CacheStats;
use crate::engine::Counts;
use crate::store::{StoreHealth, SyncStats, Withheld};

/// What `/v1/status` and `/metrics` report of the state.
#[derive(Debug, Clone)]
pub struct Report {
    /// The active revision.
    pub revision: String,
    /// When it was loaded.
    pub loaded_at: SystemTime,
    /// Its sizes.
    pub counts: Counts,
    /// Its directory's sizes, when the directory is a ZenML one.
    pub directory: Option<DirectoryCounts>,
    /// Its validator warnings.
    pub warnings: Vec<String>,
    /// The errors of the last failed load, while the newest sources are invalid.
    pub last_load_error: Option<Vec<String>>,
    /// Whether shutdown has begun.
    pub draining: bool,
    /// The shares and their store.
    pub shares: SharesReport,
    /// Evaluation pool: threads, running, waiting.
    pub evaluation: (usize, usize, usize),
    /// Whether decisions are cached, and the cache's counts.
    pub cache: (bool, CacheStats),
    /// Reload counts and times.
    pub reloads: ReloadStats,
}

/// The shares and their store.
#[derive(Debug, Clone)]
pub struct SharesReport {
    /// Shares in the view (the last known ones while withheld).
    pub count: usize,
    /// The view's version.
    pub version: u64,
    /// Why every write is refused, if it is (a lost SQLite file).
    pub failure: Option<String>,
    /// Where they are kept (no password).
    pub store: String,
    /// Whether other replicas share the store (PostgreSQL).
    pub shared: bool,
    /// Whether the store reaches its database.
    pub health: StoreHealth,
    /// Set while the shares are withheld from decisions.
    pub withheld: Option<Withheld>,
    /// How reloads from the store went.
    pub sync: SyncStats,
}

/// Sizes of a ZenML directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirectoryCounts {
    /// Workspaces.
    pub workspaces: usize,
    /// Projects.
    pub projects: usize,
    /// Teams.
    pub teams: usize,
    /// Users (not service accounts).
    pub users: usize,
    /// Service accounts.
    pub service_accounts: usize,
    /// Custom roles.
    pub custom_roles: usize,
    /// Role bindings.
    pub bindings: usize,
}

impl Report {
    /// Reads the state now.
    pub fn of(state: &AppState) -> Self {
        let snapshot = state.snapshot();
        let directory = snapshot.directory().map(|directory| {
            let service_accounts = directory.users.values().filter(|u| u.is_service_account).count();
            DirectoryCounts {
                workspaces: directory.workspaces.len(),
                projects: directory.projects.len(),
                teams: directory.teams.len(),
                users: directory.users.len() - service_accounts,
                service_accounts,
                custom_roles: directory.custom_roles.len(),
                bindings: directory.role_bindings.len(),
            }
        });
        let shares = state.shares().snapshot();
        let pool = state.pool();
        Self {
            revision: snapshot.revision.clone(),
            loaded_at: snapshot.loaded_at,
            counts: snapshot.counts(),
            directory,
            warnings: snapshot.warnings.iter().map(ToString::to_string).collect(),
            last_load_error: state.last_load_error(),
            draining: state.is_draining(),
            shares: SharesReport {
                count: shares.withheld.as_ref().map_or(shares.set.len(), |w| w.held),
                version: shares.version,
                failure: state.shares().failure(),
                store: state.shares().location(),
                shared: state.shares().changes().is_some(),
                health: state.shares().health(),
                withheld: shares.withheld.clone(),
                sync: state.shares().sync_stats(),
            },
            evaluation: (pool.config().workers, pool.running(), pool.waiting()),
            cache: (state.cache().enabled(), state.cache().stats()),
            reloads: state.reloads(),
        }
    }

    /// The `/v1/status` body.
    pub fn to_json(&self) -> Value {
        let (cache_enabled, cache) = &self.cache;
        let mut body = json!({
            "revision": self.revision,
            "loaded_at": rfc3339(self.loaded_at),
            "counts": {
                "policies": self.counts.policies,
                "templates": self.counts.templates,
                "entities": self.counts.entities,
            },
            "warnings": self.warnings,
            "last_load_error": self.last_load_error,
            "draining": self.draining,
            "shares": {
                "count": self.shares.count,
                "version": self.shares.version,
                "error": self.shares.failure,
                "store": {
                    "location": self.shares.store,
                    "shared": self.shares.shared,
                    "reachable": self.shares.health.reachable(),
                    "unreachable_since": self.shares.health.unreachable_since.map(rfc3339),
                    "last_error": self.shares.health.last_error,
                },
                "synced_at": self.shares.sync.synced_at.map(rfc3339),
                "withheld": self.shares.withheld.is_some(),
                "withheld_since": self.shares.withheld.as_ref().map(|w| rfc3339(w.since)),
            },
            "evaluation": {
                "threads": self.evaluation.0,
                "running": self.evaluation.1,
                "waiting": self.evaluation.2,
            },
            "cache": {
                "enabled": cache_enabled,
                "hits": cache.hits,
                "misses": cache.misses,
                "entries": cache.entries,
                "bytes": cache.bytes,
            },
            "reloads": {
                "succeeded": self.reloads.succeeded,
                "unchanged": self.reloads.unchanged,
                "failed": self.reloads.failed,
                "last_success_at": self.reloads.last_success.map(rfc3339),
                "last_failure_at": self.reloads.last_failure.map(rfc3339),
            },
        });
        if let Some(directory) = &self.directory {
            let counts = &mut body["counts"];
            counts["workspaces"] = json!(directory.workspaces);
            counts["projects"] = json!(directory.projects);
            counts["teams"] = json!(directory.teams);
            counts["users"] = json!(directory.users);
            counts["service_accounts"] = json!(directory.service_accounts);
            counts["custom_roles"] = json!(directory.custom_roles);
            counts["bindings"] = json!(directory.bindings);
        }
        body
    }

    /// The state's Prometheus families (the event-time ones are `metrics::Metrics`').
    pub fn families(&self) -> Result<Vec<MetricFamily>, prometheus::Error> {
        let mut families = Families(Vec::new());
        self.cache_families(&mut families)?;
        self.reload_families(&mut families)?;
        self.snapshot_families(&mut families)?;
        Ok(families.0)
    }

    fn cache_families(&self, out: &mut Families) -> Result<(), prometheus::Error> {
        let (enabled, cache) = &self.cache;
        out.counter(
            "authz_cache_hits_total",
            "Decisions served from the cache.",
            cache.hits,
        )?;
        out.counter(
            "authz_cache_misses_total",
            "Decisions computed because the cache had none.",
            cache.misses,
        )?;
        out.counter(
            "authz_cache_evictions_total",
            "Cached decisions evicted for size.",
            cache.evictions,
        )?;
        out.gauge(
            "authz_cache_entries",
            "Decisions in the cache now (approximate).",
            cache.entries as f64,
        )?;
        out.gauge(
            "authz_cache_bytes",
            "Approximate bytes of the cached keys and decisions (bounded by --cache-max-bytes).",
            cache.bytes as f64,
        )?;
        out.gauge(
            "authz_cache_enabled",
            "1 when decisions are cached.",
            f64::from(u8::from(*enabled)),
        )
    }

    fn reload_families(&self, out: &mut Families) -> Result<(), prometheus::Error> {
        let reloads = &self.reloads;
        let counter = IntCounterVec::new(
            Opts::new(
                "authz_policy_reloads_total",
                "Reloads of the policy sources, by result.",
            ),
            &["result"],
        )?;
        counter.with_label_values(&["success"]).inc_by(reloads.succeeded);
        counter
            .with_label_values(&["unchanged"])
            .inc_by(reloads.unchanged);
        counter.with_label_values(&["failure"]).inc_by(reloads.failed);
        out.0.extend(counter.collect());
        out.gauge(
            "authz_policy_loaded_timestamp_seconds",
            "When the active policy snapshot was loaded.",
            seconds(self.loaded_at),
        )?;
        if let Some(at) = reloads.last_success {
            out.gauge(
                "authz_policy_last_reload_success_timestamp_seconds",
                "When the last valid (re)load finished.",
                seconds(at),
            )?;
        }
        if let Some(at) = reloads.last_failure {
            out.gauge(
                "authz_policy_last_reload_failure_timestamp_seconds",
                "When the last failed reload finished.",
                seconds(at),
            )?;
            let since = SystemTime::now()
                .duration_since(at)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default();
            out.gauge(
                "authz_policy_seconds_since_last_reload_failure",
                "Seconds since the last failed reload.",
                since,
            )?;
        }
        out.gauge(
            "authz_policy_reload_failing",
            "1 while the newest sources are invalid and an older snapshot is served.",
            f64::from(u8::from(self.last_load_error.is_some())),
        )
    }

    fn share_families(&self, out: &mut Families) -> Result<(), prometheus::Error> {
        let shares = &self.shares;
        out.gauge(
            "authz_shares",
            "Resource shares stored (the last known ones while withheld).",
            shares.count as f64,
        )?;
        out.gauge(
            "authz_share_store_up",
            "1 while the share store reaches its database.",
            f64::from(u8::from(shares.health.reachable())),
        )?;
        let down = shares
            .health
            .unreachable_since
            .and_then(|since| since.elapsed().ok())
            .map_or(0.0, |d| d.as_secs_f64());
        out.gauge(
            "authz_share_store_unreachable_seconds",
            "Seconds the share store has been unable to reach its database (0 while it can).",
            down,
        )?;
        out.gauge(
            "authz_shares_withheld",
            "1 while shares are withheld from decisions (database unreachable past --shares-max-stale-secs).",
            f64::from(u8::from(shares.withheld.is_some())),
        )?;
        if let Some(at) = shares.sync.synced_at {
            out.gauge(
                "authz_shares_last_sync_timestamp_seconds",
                "When the share view was last known to equal the store.",
                seconds(at),
            )?;
        }
        let reloads = IntCounterVec::new(
            Opts::new(
                "authz_share_reloads_total",
                "Reloads of the share view from a shared store, by result.",
            ),
            &["result"],
        )?;
        reloads
            .with_label_values(&["changed"])
            .inc_by(shares.sync.changed);
        reloads
            .with_label_values(&["unchanged"])
            .inc_by(shares.sync.unchanged);
        reloads.with_label_values(&["failed"]).inc_by(shares.sync.failed);
        out.0.extend(reloads.collect());
        Ok(())
    }

    fn snapshot_families(&self, out: &mut Families) -> Result<(), prometheus::Error> {
        let counts = &self.counts;
        out.gauge(
            "authz_policies",
            "Policies in the active snapshot.",
            counts.policies as f64,
        )?;
        out.gauge(
            "authz_policy_templates",
            "Policy templates in the active snapshot.",
            counts.templates as f64,
        )?;
        out.gauge(
            "authz_entities",
            "Entities in the active snapshot.",
            counts.entities as f64,
        )?;
        self.share_families(out)?;
        if let Some(directory) = &self.directory {
            let gauges = [
                (
                    "authz_directory_users",
                    "Users in the directory.",
                    directory.users,
                ),
                (
                    "authz_directory_service_accounts",
                    "Service accounts in the directory.",
                    directory.service_accounts,
                ),
                (
                    "authz_directory_teams",
                    "Teams in the directory.",
                    directory.teams,
                ),
                (
                    "authz_directory_bindings",
                    "Role bindings in the directory.",
                    directory.bindings,
                ),
                (
                    "authz_directory_custom_roles",
                    "Custom roles in the directory.",
                    directory.custom_roles,
                ),
                (
                    "authz_directory_workspaces",
                    "Workspaces in the directory.",
                    directory.workspaces,
                ),
                (
                    "authz_directory_projects",
                    "Projects in the directory.",
                    directory.projects,
                ),
            ];
            for (name, help, value) in gauges {
                out.gauge(name, help, value as f64)?;
            }
        }
        let info = GaugeVec::new(
            Opts::new(
                "authz_policy_revision_info",
                "The active policy revision (always 1).",
            ),
            &["revision"],
        )?;
        info.with_label_values(&[self.revision.as_str()]).set(1.0);
        out.0.extend(info.collect());
        Ok(())
    }
}

/// Families being collected.
struct Families(Vec<MetricFamily>);

impl Families {
    fn counter(&mut self, name: &str, help: &str, value: u64) -> Result<(), prometheus::Error> {
        let metric = IntCounter::new(name, help)?;
        metric.inc_by(value);
        self.0.extend(metric.collect());
        Ok(())
    }

    fn gauge(&mut self, name: &str, help: &str, value: f64) -> Result<(), prometheus::Error> {
        let metric = Gauge::new(name, help)?;
        metric.set(value);
        self.0.extend(metric.collect());
        Ok(())
    }
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

fn rfc3339(time: SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
