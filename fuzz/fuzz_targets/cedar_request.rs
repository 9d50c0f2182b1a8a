//! The Cedar JSON API's request decoder and the engine: arbitrary bytes ->
//! `serde_json::from_slice` -> `http::parse_request` -> `Engine::decide`, under the bundled
//! sample snapshot. A body is one request object or an `is_authorized` batch
//! (`{"requests": [...]}`, at most 16 items here).
//!
//! Asserts, beyond not panicking (a malformed request must be an `Err`, not a crash):
//! * no request-scoped entity redefines a stored one;
//! * the engine's decision (scope index, slice, index graph) equals Cedar's own answer with
//!   every policy over the whole store plus the request-scoped entities: same decision, same
//!   determining policies, same errors; when the engine cannot assemble the entities, neither
//!   can Cedar.
//!
//! (The cache key is the HTTP layer's, read from the body's text: `tests/http.rs` holds it to
//! the decisions it may answer.)
//!
//! Limits: bodies over 64 KiB are skipped (`FUZZ_MAX_BYTES` overrides; the server's body limit
//! is 1 MiB; 64 KiB keeps runs fast), and so are requests with more than 1024
//! `additional_entities` (`FUZZ_MAX_ENTITIES` overrides): request-scoped entities in one long
//! parent chain overflow the stack in Cedar's transitive closure (known finding, FUZZING.md),
//! which the request limits in `parse_request` now reject (entity count, chain depth).
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use zenml_authz::engine::{Batch, DecideError};
use zenml_authz::http::parse_request;
use zenml_authz_fuzz::{SAMPLE, reference};

const MAX_BATCH: usize = 16;

/// The largest body tried: 64 KiB, or `FUZZ_MAX_BYTES` (the server takes up to 1 MiB).
static MAX_BYTES: LazyLock<usize> = LazyLock::new(|| env_limit("FUZZ_MAX_BYTES", 64 * 1024));

/// At most this many `additional_entities` per request: 1024, or `FUZZ_MAX_ENTITIES`. Above
/// the server's default limit (256), so the limits' refusals are explored too.
static MAX_ENTITIES: LazyLock<usize> = LazyLock::new(|| env_limit("FUZZ_MAX_ENTITIES", 1024));

/// The server's default request limits (`parse_request` checks them before Cedar runs).
static LIMITS: LazyLock<zenml_authz::config::Limits> = LazyLock::new(zenml_authz::config::Limits::default);

fn env_limit(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn too_many_entities(item: &Value) -> bool {
    item.get("additional_entities")
        .and_then(Value::as_array)
        .is_some_and(|entities| entities.len() > *MAX_ENTITIES)
}

fuzz_target!(|data: &[u8]| {
    if data.len() > *MAX_BYTES {
        return;
    }
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let snapshot = &*SAMPLE;
    let items: Vec<&Value> = match body.as_object() {
        Some(object) if object.len() == 1 && object.contains_key("requests") => match &object["requests"] {
            Value::Array(items) => items.iter().take(MAX_BATCH).collect(),
            _ => return,
        },
        _ => vec![&body],
    };
    for item in items {
        if too_many_entities(item) {
            continue;
        }
        let Ok(request) = parse_request(snapshot, item, &LIMITS) else {
            continue;
        };
        for entity in request.entities.cedar().iter() {
            assert!(
                snapshot.engine.entities.get(&entity.uid()).is_none(),
                "request-scoped entity {} redefines a stored one",
                entity.uid()
            );
        }
        let decision = snapshot.engine.decide(&request, &mut Batch::single());
        let expected = reference(snapshot, &request, None);
        match (&decision, &expected) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "engine and Cedar disagree on {item}"),
            (Err(DecideError::Entities(_)), Err(_)) => {}
            _ => panic!("engine {decision:?} but Cedar {expected:?} for {item}"),
        }
    }
});
