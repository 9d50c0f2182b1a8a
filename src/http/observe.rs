//! The one step every decision over HTTP takes: through the cache (when the question has a
//! key), then counted in the metrics and written to the decision log. The Cedar and the ZenML
//! handlers differ only in what they ask and how they label it.

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::Call;
use crate::cache::CacheKey;
use crate::engine::Decision;
use crate::metrics::{Api, Outcome};

/// How one decision is labelled in the metrics and the decision log.
pub(super) struct Labels<'a> {
    /// Which API asked.
    pub api: Api,
    /// The action's bounded label.
    pub action: &'a str,
    /// The resource type's bounded label.
    pub resource_type: &'a str,
    /// The revision decided under.
    pub revision: &'a str,
}

/// Decides through the cache (`key`: `None` for an uncacheable question), counts the decision
/// and logs it with the API's own `fields` (built only when the log is on). An error is an
/// `error` outcome, never an allow.
pub(super) fn observe<E: std::fmt::Display>(
    call: &Call<'_>,
    labels: Labels<'_>,
    key: Option<CacheKey>,
    fields: impl FnOnce() -> Map<String, Value>,
    compute: impl FnOnce() -> Result<Decision, E>,
) -> Result<Decision, E> {
    let started = Instant::now();
    let metrics = call.state.metrics();
    let cached = std::cell::Cell::new(true);
    let timed = || {
        cached.set(false);
        let decided = compute();
        metrics.engine_time(labels.api, started.elapsed());
        decided
    };
    let result = match key {
        Some(key) => call.state.cache().get_or_compute(key, timed),
        None => timed(),
    };
    let outcome = match &result {
        Ok(decision) if decision.allowed => Outcome::Allow,
        Ok(_) => Outcome::Deny,
        Err(_) => Outcome::Error,
    };
    let reasons = result.as_ref().map(|d| d.reasons.as_slice()).unwrap_or_default();
    metrics.decision(labels.api, outcome, labels.action, labels.resource_type, reasons);
    if let Err(error) = &result {
        tracing::warn!(%error, "cannot decide: denied");
    }
    let log = call.state.decision_log();
    if log.enabled() {
        let mut record = Map::new();
        record.insert("time".into(), json!(crate::decision_log::now()));
        record.insert("request_id".into(), json!(call.request_id));
        record.insert("api".into(), json!(labels.api.label()));
        record.extend(fields());
        record.insert("decision".into(), json!(outcome.label()));
        record.insert("policies".into(), json!(reasons));
        let errors = match &result {
            Ok(decision) => decision.errors.clone(),
            Err(error) => vec![error.to_string()],
        };
        record.insert("errors".into(), json!(errors));
        record.insert("revision".into(), json!(labels.revision));
        record.insert("cached".into(), json!(cached.get()));
        record.insert("latency_us".into(), json!(started.elapsed().as_micros() as u64));
        log.record(Value::Object(record));
    }
    result
}
