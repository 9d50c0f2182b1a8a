//! The one step every decision over HTTP takes: through the cache (when the question has a
//! key), then counted in the metrics and written to the decision log. The Cedar and the ZenML
//! handlers differ only in what they ask and how they label it.

use std::time::Instant;

use serde_json::{Map, Value, json};

use super::Call;
use crate::cache::CacheKey;
use crate::engine::Decision;
use crate::metrics::{Api, Handles, Outcome};

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

/// A question's decision cache lookup, made before the question is read any further.
pub(super) enum Lookup {
    /// Not cacheable, or the cache is off.
    Off,
    /// Cached: nothing is computed.
    Hit(Decision),
    /// To compute, then cache under this key.
    Miss(CacheKey),
}

impl Lookup {
    /// Looks `key` up (`None`: an uncacheable question).
    pub(super) fn new(call: &Call<'_>, key: Option<CacheKey>) -> Self {
        let cache = call.state.cache();
        match key {
            Some(key) if cache.enabled() => match cache.get(&key) {
                Some(decision) => Lookup::Hit(decision),
                None => Lookup::Miss(key),
            },
            _ => Lookup::Off,
        }
    }

    /// Whether the decision is cached.
    pub(super) fn hit(&self) -> bool {
        matches!(self, Lookup::Hit(_))
    }
}

/// Decides through the cache (`key`: `None` for an uncacheable question, or when the cache is
/// off), counts the decision and logs it with the API's own `fields` (built only when the log
/// is on). An error is an `error` outcome, never an allow.
pub(super) fn observe<E: std::fmt::Display>(
    call: &Call<'_>,
    handles: &mut Handles,
    labels: Labels<'_>,
    key: Option<CacheKey>,
    fields: impl FnOnce() -> Map<String, Value>,
    compute: impl FnOnce() -> Result<Decision, E>,
) -> Result<Decision, E> {
    observe_looked_up(call, handles, labels, Lookup::new(call, key), fields, compute)
}

/// [`observe`] after the cache was looked up: `compute` is called only on a miss.
pub(super) fn observe_looked_up<E: std::fmt::Display>(
    call: &Call<'_>,
    handles: &mut Handles,
    labels: Labels<'_>,
    lookup: Lookup,
    fields: impl FnOnce() -> Map<String, Value>,
    compute: impl FnOnce() -> Result<Decision, E>,
) -> Result<Decision, E> {
    let started = Instant::now();
    let metrics = call.state.metrics();
    let cached = lookup.hit();
    let timed = || {
        let decided = compute();
        metrics.engine_time(handles, labels.api, started.elapsed());
        decided
    };
    let result = match lookup {
        Lookup::Hit(decision) => Ok(decision),
        Lookup::Miss(key) => timed().inspect(|decision| call.state.cache().insert(key, decision.clone())),
        Lookup::Off => timed(),
    };
    let outcome = match &result {
        Ok(decision) if decision.allowed => Outcome::Allow,
        Ok(_) => Outcome::Deny,
        Err(_) => Outcome::Error,
    };
    let reasons = result.as_ref().map(|d| d.reasons.as_slice()).unwrap_or_default();
    metrics.decision(
        handles,
        labels.api,
        outcome,
        labels.action,
        labels.resource_type,
        reasons,
    );
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
        record.insert("cached".into(), json!(cached));
        record.insert("latency_us".into(), json!(started.elapsed().as_micros() as u64));
        log.record(Value::Object(record));
    }
    result
}
