//! Prometheus metrics, declared once, with help text and bounded labels (never a user or
//! resource id: actions and types are bounded by the schema, routes by the router, policy ids
//! by the policy set, and anything unknown is `unknown`).
//!
//! Two kinds: event-time metrics recorded where things happen (decisions, latencies, HTTP,
//! determining policies, decision-log drops), held in [`Metrics`]; and state metrics read from
//! the [`AppState`] when `/metrics` is scraped (cache, reloads, revision, sizes, shares), so
//! they can never disagree with `/v1/status`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus::core::Collector;
use prometheus::{
    Encoder, Gauge, GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::state::AppState;

/// Which API a decision was made for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `/v1/is_authorized`, `/v1/batch_is_authorized`.
    Cedar,
    /// `/zenml/rbac/*`.
    Zenml,
}

impl Api {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Api::Cedar => "cedar",
            Api::Zenml => "zenml",
        }
    }
}

/// How a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Allowed.
    Allow,
    /// Denied (an outcome, not an error).
    Deny,
    /// Could not be evaluated; answered as a deny (fail closed) or an error.
    Error,
}

impl Outcome {
    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
            Outcome::Error => "error",
        }
    }
}

/// Event-time metrics.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    decision_seconds: HistogramVec,
    determining: IntCounterVec,
    http_requests: IntCounterVec,
    http_seconds: HistogramVec,
    in_flight: IntGauge,
    decision_log_dropped: IntCounter,
}

const ENGINE_BUCKETS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 1e-2, 5e-2,
];
const HTTP_BUCKETS: &[f64] = &[
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 0.5, 1.0,
];

// === impl Metrics ===

impl Metrics {
    /// Creates and registers every metric (and the process collector: RSS, CPU, fds).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let decisions = IntCounterVec::new(
            Opts::new(
                "authz_decisions_total",
                "Decisions answered, by API, outcome, action and resource type.",
            ),
            &["api", "outcome", "action", "resource_type"],
        )?;
        let decision_seconds = HistogramVec::new(
            HistogramOpts::new(
                "authz_decision_duration_seconds",
                "Time to evaluate one decision with the engine (cache misses only).",
            )
            .buckets(ENGINE_BUCKETS.to_vec()),
            &["api"],
        )?;
        let determining = IntCounterVec::new(
            Opts::new(
                "authz_policy_determining_total",
                "Decisions each policy determined (find dead or over-broad policies).",
            ),
            &["policy_id"],
        )?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "authz_http_requests_total",
                "HTTP requests answered, by route and status.",
            ),
            &["route", "status"],
        )?;
        let http_seconds = HistogramVec::new(
            HistogramOpts::new(
                "authz_http_request_duration_seconds",
                "Time to answer an HTTP request, by route.",
            )
            .buckets(HTTP_BUCKETS.to_vec()),
            &["route"],
        )?;
        let in_flight = IntGauge::new(
            "authz_http_requests_in_flight",
            "HTTP requests being answered now.",
        )?;
        let decision_log_dropped = IntCounter::new(
            "authz_decision_log_dropped_total",
            "Decision-log records dropped because the log's queue was full.",
        )?;
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(decisions.clone()),
            Box::new(decision_seconds.clone()),
            Box::new(determining.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(decision_log_dropped.clone()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            decisions,
            decision_seconds,
            determining,
            http_requests,
            http_seconds,
            in_flight,
            decision_log_dropped,
        })
    }

    /// Counts one answered decision and the policies that determined it.
    pub fn decision(
        &self,
        api: Api,
        outcome: Outcome,
        action: &str,
        resource_type: &str,
        reasons: &[String],
    ) {
        self.decisions
            .with_label_values(&[api.label(), outcome.label(), action, resource_type])
            .inc();
        for policy in reasons {
            self.determining.with_label_values(&[policy.as_str()]).inc();
        }
    }

    /// Records the engine time of one evaluated (uncached) decision.
    pub fn engine_time(&self, api: Api, elapsed: Duration) {
        self.decision_seconds
            .with_label_values(&[api.label()])
            .observe(elapsed.as_secs_f64());
    }

    /// Records one answered HTTP request.
    pub fn http(&self, route: &str, status: u16, elapsed: Duration) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_seconds
            .with_label_values(&[route])
            .observe(elapsed.as_secs_f64());
    }

    /// The in-flight gauge.
    pub fn in_flight(&self) -> &IntGauge {
        &self.in_flight
    }

    /// Counts one dropped decision-log record.
    pub fn decision_log_dropped(&self) {
        self.decision_log_dropped.inc();
    }
}

fn seconds(time: SystemTime) -> f64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

/// The `/metrics` page: event-time metrics plus the state read now, in Prometheus text format.
pub fn render(state: &AppState) -> Result<String, prometheus::Error> {
    let mut families = state.metrics().registry.gather();
    families.extend(state_families(state)?);
    families.sort_by(|a, b| a.name().cmp(b.name()));
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&families, &mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}

/// Metric families computed from the state at scrape time.
fn state_families(state: &AppState) -> Result<Vec<prometheus::proto::MetricFamily>, prometheus::Error> {
    let mut families = Vec::new();
    let mut counter = |name: &str, help: &str, value: u64| -> Result<(), prometheus::Error> {
        let metric = IntCounter::new(name, help)?;
        metric.inc_by(value);
        families.extend(metric.collect());
        Ok(())
    };
    let cache = state.cache().stats();
    counter(
        "authz_cache_hits_total",
        "Decisions served from the cache.",
        cache.hits,
    )?;
    counter(
        "authz_cache_misses_total",
        "Decisions computed because the cache had none.",
        cache.misses,
    )?;
    counter(
        "authz_cache_evictions_total",
        "Cached decisions evicted for size.",
        cache.evictions,
    )?;

    let reloads = state.reloads();
    let reload_counter = IntCounterVec::new(
        Opts::new(
            "authz_policy_reloads_total",
            "Reloads of the policy sources, by result.",
        ),
        &["result"],
    )?;
    reload_counter
        .with_label_values(&["success"])
        .inc_by(reloads.succeeded);
    reload_counter
        .with_label_values(&["unchanged"])
        .inc_by(reloads.unchanged);
    reload_counter
        .with_label_values(&["failure"])
        .inc_by(reloads.failed);
    families.extend(reload_counter.collect());

    let snapshot = state.snapshot();
    let counts = snapshot.counts();
    let mut gauge = |name: &str, help: &str, value: f64| -> Result<(), prometheus::Error> {
        let metric = Gauge::new(name, help)?;
        metric.set(value);
        families.extend(metric.collect());
        Ok(())
    };
    gauge(
        "authz_cache_entries",
        "Decisions in the cache now (approximate).",
        cache.entries as f64,
    )?;
    gauge(
        "authz_cache_bytes",
        "Approximate bytes of the cached keys and decisions (bounded by --cache-max-bytes).",
        cache.bytes as f64,
    )?;
    gauge(
        "authz_cache_enabled",
        "1 when decisions are cached.",
        f64::from(u8::from(state.cache().enabled())),
    )?;
    gauge(
        "authz_policy_loaded_timestamp_seconds",
        "When the active policy snapshot was loaded.",
        seconds(snapshot.loaded_at),
    )?;
    if let Some(at) = reloads.last_success {
        gauge(
            "authz_policy_last_reload_success_timestamp_seconds",
            "When the last valid (re)load finished.",
            seconds(at),
        )?;
    }
    if let Some(at) = reloads.last_failure {
        gauge(
            "authz_policy_last_reload_failure_timestamp_seconds",
            "When the last failed reload finished.",
            seconds(at),
        )?;
        let since = SystemTime::now()
            .duration_since(at)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        gauge(
            "authz_policy_seconds_since_last_reload_failure",
            "Seconds since the last failed reload.",
            since,
        )?;
    }
    gauge(
        "authz_policy_reload_failing",
        "1 while the newest sources are invalid and an older snapshot is served.",
        f64::from(u8::from(state.last_load_error().is_some())),
    )?;
    gauge(
        "authz_policies",
        "Policies in the active snapshot.",
        counts.policies as f64,
    )?;
    gauge(
        "authz_policy_templates",
        "Policy templates in the active snapshot.",
        counts.templates as f64,
    )?;
    gauge(
        "authz_entities",
        "Entities in the active snapshot.",
        counts.entities as f64,
    )?;
    let shares = state.shares().snapshot();
    gauge("authz_shares", "Resource shares stored.", shares.set.len() as f64)?;
    if let Some(directory) = &snapshot.directory {
        let service_accounts = directory.users.values().filter(|u| u.is_service_account).count();
        gauge(
            "authz_directory_users",
            "Users in the directory.",
            (directory.users.len() - service_accounts) as f64,
        )?;
        gauge(
            "authz_directory_service_accounts",
            "Service accounts in the directory.",
            service_accounts as f64,
        )?;
        gauge(
            "authz_directory_teams",
            "Teams in the directory.",
            directory.teams.len() as f64,
        )?;
        gauge(
            "authz_directory_bindings",
            "Role bindings in the directory.",
            directory.bindings as f64,
        )?;
        gauge(
            "authz_directory_custom_roles",
            "Custom roles in the directory.",
            directory.custom_roles.len() as f64,
        )?;
        gauge(
            "authz_directory_workspaces",
            "Workspaces in the directory.",
            directory.workspaces.len() as f64,
        )?;
        gauge(
            "authz_directory_projects",
            "Projects in the directory.",
            directory.projects.len() as f64,
        )?;
    }
    let info = GaugeVec::new(
        Opts::new(
            "authz_policy_revision_info",
            "The active policy revision (always 1).",
        ),
        &["revision"],
    )?;
    info.with_label_values(&[snapshot.revision.as_str()]).set(1.0);
    families.extend(info.collect());
    Ok(families)
}
