//! Prometheus metrics, declared once, with help text and bounded labels (never a user or
//! resource id: actions and types are bounded by the schema, routes by the router, policy ids
//! by the policy set, and anything unknown is `unknown`).
//!
//! Two kinds: event-time metrics recorded where things happen (decisions, latencies, HTTP,
//! determining policies, decision-log drops), held in [`Metrics`]; and state metrics, read when
//! `/metrics` is scraped from the same `state::Report` that `/v1/status` renders (cache,
//! reloads, revision, sizes, shares), so the two can never disagree.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

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

/// The decision metrics a caller counted last, reused while their labels repeat (the items of
/// a batch or a ZenML page mostly share theirs): a vector's `with_label_values` hashes the
/// labels and takes the vector's lock at every call. One per call; the handles stay valid
/// (no label set is ever removed).
#[derive(Debug, Default)]
pub struct Handles {
    decision: Option<((Api, Outcome, String, String), IntCounter)>,
    determining: Option<(String, IntCounter)>,
    engine_time: Option<(Api, Histogram)>,
}

/// The metric in `slot` while its labels are the same (`same`), else the one `make` gives,
/// kept in `slot` for the next call.
fn reused<L, M>(
    slot: &mut Option<(L, M)>,
    same: impl FnOnce(&L) -> bool,
    make: impl FnOnce() -> (L, M),
) -> &M {
    if !slot.as_ref().is_some_and(|(labels, _)| same(labels)) {
        *slot = None;
    }
    &slot.get_or_insert_with(make).1
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
    shares_purged: IntCounterVec,
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
        let shares_purged = IntCounterVec::new(
            Opts::new(
                "authz_shares_purged_total",
                "Shares removed by the sidecar itself, by reason (`membership_removed`: the grantee \
                 stopped being a member of the workspace or project that holds the resource).",
            ),
            &["reason"],
        )?;
        let collectors: Vec<Box<dyn Collector>> = vec![
            Box::new(decisions.clone()),
            Box::new(decision_seconds.clone()),
            Box::new(determining.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_seconds.clone()),
            Box::new(in_flight.clone()),
            Box::new(decision_log_dropped.clone()),
            Box::new(shares_purged.clone()),
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
            shares_purged,
        })
    }

    /// Counts one answered decision and the policies that determined it (through `handles`).
    pub fn decision(
        &self,
        handles: &mut Handles,
        api: Api,
        outcome: Outcome,
        action: &str,
        resource_type: &str,
        reasons: &[String],
    ) {
        reused(
            &mut handles.decision,
            |(a, o, act, r)| (*a, *o) == (api, outcome) && act == action && r == resource_type,
            || {
                let labels = [api.label(), outcome.label(), action, resource_type];
                let counter = self.decisions.with_label_values(&labels);
                (
                    (api, outcome, action.to_owned(), resource_type.to_owned()),
                    counter,
                )
            },
        )
        .inc();
        for policy in reasons {
            reused(
                &mut handles.determining,
                |last| last == policy,
                || {
                    (
                        policy.clone(),
                        self.determining.with_label_values(&[policy.as_str()]),
                    )
                },
            )
            .inc();
        }
    }

    /// Records the engine time of one evaluated (uncached) decision (through `handles`).
    pub fn engine_time(&self, handles: &mut Handles, api: Api, elapsed: Duration) {
        reused(
            &mut handles.engine_time,
            |last| *last == api,
            || (api, self.decision_seconds.with_label_values(&[api.label()])),
        )
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

    /// Counts `count` shares purged because their grantees stopped being members.
    pub fn shares_purged_membership_removed(&self, count: usize) {
        self.shares_purged
            .with_label_values(&["membership_removed"])
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }

    /// Counts one dropped decision-log record.
    pub fn decision_log_dropped(&self) {
        self.decision_log_dropped.inc();
    }
}

/// The `/metrics` page: the event-time metrics of `metrics` plus the state's `families` (read
/// now), in Prometheus text format.
pub fn render(
    metrics: &Metrics,
    families: Vec<prometheus::proto::MetricFamily>,
) -> Result<String, prometheus::Error> {
    let mut all = metrics.registry.gather();
    all.extend(families);
    all.sort_by(|a, b| a.name().cmp(b.name()));
    let mut buffer = Vec::new();
    TextEncoder::new().encode(&all, &mut buffer)?;
    Ok(String::from_utf8_lossy(&buffer).into_owned())
}
