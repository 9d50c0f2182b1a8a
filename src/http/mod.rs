//! The HTTP API: a `match (method, path)` router over hyper 1.
//!
//! * `POST /v1/is_authorized`: one Cedar decision (cedar-agent request shape)
//! * `POST /v1/batch_is_authorized`: many decisions, in order, under one snapshot
//! * `GET /healthz`: the process is alive
//! * `GET /readyz`: 200 while a valid snapshot is active and the server is not draining, else 503
//! * `GET /v1/status`: active revision, load time, sizes, last load error
//! * `<base>/…` (default `/zenml/…`): the ZenML Pro RBAC backend API, see [`crate::zenml::api`]
//!
//! Only this module and `zenml` know JSON shapes; the engine sees typed requests.

mod cedar;
mod error;

pub use cedar::{entity_uid, parse_request};
pub use error::{ApiError, json_response, respond};

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::state::AppState;

/// Routes one request. Never fails: every error becomes a response.
pub async fn handle(
    state: AppState,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let response = match route(&state, request).await {
        Ok(response) => response,
        Err(error) => respond(&error),
    };
    Ok(response)
}

async fn route(state: &AppState, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, ApiError> {
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let base = state.zenml().base_path.as_str();
    if let Some(rest) = path.strip_prefix(base).filter(|rest| rest.starts_with('/')) {
        return crate::zenml::api::route(state, request, rest).await;
    }
    let allow = match path.as_str() {
        "/healthz" | "/readyz" | "/v1/status" => "GET",
        "/v1/is_authorized" | "/v1/batch_is_authorized" => "POST",
        _ => return Err(ApiError::NotFound(path)),
    };
    if method.as_str() != allow {
        return Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        });
    }
    match (method, path.as_str()) {
        (Method::GET, "/healthz") => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        (Method::GET, "/readyz") => Ok(readiness(state)),
        (Method::GET, "/v1/status") => Ok(json_response(StatusCode::OK, &status(state))),
        (Method::POST, "/v1/is_authorized") => {
            let body = read_json(request, state.limits().max_body_bytes).await?;
            let snapshot = state.snapshot();
            Ok(json_response(
                StatusCode::OK,
                &cedar::is_authorized(&snapshot, state.cache(), &body)?,
            ))
        }
        (Method::POST, "/v1/batch_is_authorized") => {
            let body = read_json(request, state.limits().max_body_bytes).await?;
            let snapshot = state.snapshot();
            let answer =
                cedar::batch_is_authorized(&snapshot, state.cache(), &body, state.limits().max_batch_items)?;
            Ok(json_response(StatusCode::OK, &answer))
        }
        (_, path) => Err(ApiError::NotFound(path.to_owned())),
    }
}

fn readiness(state: &AppState) -> Response<Full<Bytes>> {
    let snapshot = state.snapshot();
    if state.is_draining() {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &json!({"status": "draining", "revision": snapshot.revision}),
        );
    }
    json_response(
        StatusCode::OK,
        &json!({"status": "ready", "revision": snapshot.revision}),
    )
}

fn status(state: &AppState) -> Value {
    let snapshot = state.snapshot();
    let counts = snapshot.counts();
    let loaded_at = rfc3339(snapshot.loaded_at);
    let mut body = json!({
        "revision": snapshot.revision,
        "loaded_at": loaded_at,
        "counts": {
            "policies": counts.policies,
            "templates": counts.templates,
            "entities": counts.entities,
        },
        "warnings": snapshot.warnings.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "last_load_error": state.last_load_error(),
        "draining": state.is_draining(),
        "shares": {"count": state.shares().snapshot().set.len(), "version": state.shares().snapshot().version},
        "cache": {
            "enabled": state.cache().enabled(),
            "hits": state.cache().stats().hits,
            "misses": state.cache().stats().misses,
            "entries": state.cache().stats().entries,
        },
        "reloads": reloads_json(&state.reloads()),
    });
    if let Some(directory) = &snapshot.directory {
        body["counts"]["workspaces"] = json!(directory.workspaces.len());
        body["counts"]["projects"] = json!(directory.projects.len());
        body["counts"]["teams"] = json!(directory.teams.len());
        body["counts"]["users"] = json!(directory.users.values().filter(|u| !u.is_service_account).count());
        body["counts"]["service_accounts"] =
            json!(directory.users.values().filter(|u| u.is_service_account).count());
        body["counts"]["custom_roles"] = json!(directory.custom_roles.len());
        body["counts"]["bindings"] = json!(directory.bindings);
    }
    body
}

fn rfc3339(time: std::time::SystemTime) -> String {
    time::OffsetDateTime::from(time)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn reloads_json(reloads: &crate::state::ReloadStats) -> Value {
    json!({
        "succeeded": reloads.succeeded,
        "unchanged": reloads.unchanged,
        "failed": reloads.failed,
        "last_success_at": reloads.last_success.map(rfc3339),
        "last_failure_at": reloads.last_failure.map(rfc3339),
    })
}

/// Reads a JSON body of at most `limit` bytes: 413 above it, 400 with serde's line and column
/// for malformed JSON.
pub async fn read_json(request: Request<Incoming>, limit: usize) -> Result<Value, ApiError> {
    let bytes = read_body(request, limit).await?;
    serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("malformed JSON: {error}")))
}

/// Reads a body of at most `limit` bytes.
pub async fn read_body(request: Request<Incoming>, limit: usize) -> Result<Bytes, ApiError> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    match Limited::new(request.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Err(error) => Err(ApiError::BadRequest(format!("cannot read request body: {error}"))),
    }
}
