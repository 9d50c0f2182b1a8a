//! The HTTP API: a `match (method, path)` router over hyper 1.
//!
//! * `POST /v1/is_authorized`: one Cedar decision (cedar-agent request shape)
//! * `POST /v1/batch_is_authorized`: many decisions, in order, under one snapshot
//! * `GET /healthz`: the process is alive
//! * `GET /readyz`: 200 while a valid snapshot is active and the server is not draining, else 503
//! * `GET /v1/status`: active revision, load time, sizes, last load error
//! * `GET /metrics`: Prometheus metrics (see [`crate::metrics`])
//! * `<base>/…` (default `/zenml/…`): the ZenML Pro RBAC backend API, see [`crate::zenml::api`]
//!
//! With `--admin-listen`, a second listener serves `/healthz`, `/readyz` and `/metrics` (open,
//! for probes and scrapers), and the main one stops serving `/metrics`. When caller tokens are
//! configured ([`crate::auth`]), the Cedar API, `/v1/status` and the main listener's `/metrics`
//! need one; `/healthz` and `/readyz` never do, and the ZenML API has its own credentials.
//!
//! Only this module and `zenml` know JSON shapes; the engine sees typed requests.

mod cedar;
mod error;

pub use cedar::{entity_uid, parse_request};
pub use error::{ApiError, json_response, respond};

use std::convert::Infallible;
use std::time::Instant;

use tracing::Instrument;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};

use crate::config::Limits;
use crate::state::AppState;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// `--listen`: every API.
    Main,
    /// `--admin-listen`: health, readiness and metrics only.
    Admin,
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Anyone (health, readiness, metrics on the admin listener).
    Open,
    /// A caller token, when any is configured.
    Caller,
}

/// Routes one request. Never fails: every error becomes a response.
pub async fn handle(
    state: AppState,
    listener: Listener,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    let route_label = route_label(&state.zenml().base_path, request.uri().path());
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method(), route = route_label);
    // Decremented on drop: a client that hangs up mid-request is no longer in flight.
    let _in_flight = InFlight::enter(state.metrics().in_flight().clone());
    let call = Call {
        state: &state,
        request_id: &request_id,
    };
    let mut response = match route(&call, listener, request).instrument(span.clone()).await {
        Ok(response) => response,
        Err(error) => {
            span.in_scope(|| match &error {
                ApiError::Internal(_) | ApiError::Unavailable(_) => tracing::error!(%error, "request failed"),
                ApiError::Overloaded(_) => tracing::warn!(%error, "request shed"),
                _ => tracing::debug!(%error, "request refused"),
            });
            respond(&error)
        }
    };
    if let Ok(value) = header::HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16();
    state.metrics().http(route_label, status, started.elapsed());
    span.in_scope(|| {
        tracing::debug!(
            status,
            elapsed_us = started.elapsed().as_micros() as u64,
            "answered"
        )
    });
    Ok(response)
}

/// The request header carrying a request id, accepted from callers and set on every response.
pub const REQUEST_ID: &str = "x-request-id";

/// One request being answered: the state and its request id (for logs and the decision log).
#[derive(Debug, Clone, Copy)]
pub struct Call<'a> {
    /// Shared state.
    pub state: &'a AppState,
    /// The request id (`x-request-id`, or generated).
    pub request_id: &'a str,
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, token
/// trimmed), for the caller tokens and the ZenML API alike.
pub fn bearer(headers: &hyper::HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A [`Call`] that owns what it refers to, for work moved to the evaluation pool.
#[derive(Debug, Clone)]
pub struct OwnedCall {
    state: AppState,
    request_id: String,
}

impl Call<'_> {
    /// This call, owning its parts.
    pub fn to_owned_call(&self) -> OwnedCall {
        OwnedCall {
            state: self.state.clone(),
            request_id: self.request_id.to_owned(),
        }
    }
}

impl OwnedCall {
    /// The call it owns.
    pub fn call(&self) -> Call<'_> {
        Call {
            state: &self.state,
            request_id: &self.request_id,
        }
    }
}

/// The caller's `x-request-id` when it is a sane token (at most 128 characters of letters,
/// digits and `-_.:`), else a new one.
fn request_id(headers: &hyper::HeaderMap) -> String {
    let given = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.:".contains(c))
        });
    match given {
        Some(id) => id.to_owned(),
        None => uuid::Uuid::new_v4().simple().to_string(),
    }
}

/// The bounded `route` label of a path: the route template, or `other`.
fn route_label(base: &str, path: &str) -> &'static str {
    if let Some(rest) = path.strip_prefix(base).filter(|rest| rest.starts_with('/')) {
        return match rest {
            "/auth/login" => "{zenml}/auth/login",
            "/rbac/check_permissions" => "{zenml}/rbac/check_permissions",
            "/rbac/allowed_resource_ids" => "{zenml}/rbac/allowed_resource_ids",
            "/rbac/resource_members" => "{zenml}/rbac/resource_members",
            "/rbac/resources" => "{zenml}/rbac/resources",
            "/rbac/user_team_ids" => "{zenml}/rbac/user_team_ids",
            "/users/authorize_server" => "{zenml}/users/authorize_server",
            "/workspace_status" | "/tenant_status" => "{zenml}/workspace_status",
            "/usage-event" => "{zenml}/usage-event",
            rest if rest.starts_with("/organizations/") => {
                "{zenml}/organizations/{org}/entitlement/{feature}"
            }
            _ => "other",
        };
    }
    match path {
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        "/v1/status" => "/v1/status",
        "/v1/is_authorized" => "/v1/is_authorized",
        "/v1/batch_is_authorized" => "/v1/batch_is_authorized",
        _ => "other",
    }
}

/// Holds the in-flight gauge up for as long as it lives.
struct InFlight(prometheus::IntGauge);

impl InFlight {
    fn enter(gauge: prometheus::IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn route(
    call: &Call<'_>,
    listener: Listener,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let state = call.state;
    let path = request.uri().path().to_owned();
    let method = request.method().clone();
    let base = state.zenml().base_path.as_str();
    if listener == Listener::Main
        && let Some(rest) = path.strip_prefix(base).filter(|rest| rest.starts_with('/'))
    {
        return crate::zenml::api::route(call, request, rest).await;
    }
    let (allow, access) = match (listener, path.as_str()) {
        (_, "/healthz" | "/readyz") => ("GET", Access::Open),
        (Listener::Admin, "/metrics") => ("GET", Access::Open),
        (Listener::Main, "/metrics") if state.admin_separate() => {
            return Err(ApiError::NotFound(format!(
                "{path} (metrics are served on the admin address, --admin-listen)"
            )));
        }
        (Listener::Main, "/metrics" | "/v1/status") => ("GET", Access::Caller),
        (Listener::Main, "/v1/is_authorized" | "/v1/batch_is_authorized") => ("POST", Access::Caller),
        _ => return Err(ApiError::NotFound(path)),
    };
    if access == Access::Caller && !state.caller_tokens().is_empty() {
        let caller = state
            .caller_tokens()
            .verify(bearer(request.headers()))
            .map_err(|error| ApiError::Unauthorized(error.to_string()))?;
        tracing::debug!(caller, "caller authenticated");
    }
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
        (Method::GET, "/metrics") => {
            let text = crate::metrics::render(state)
                .map_err(|error| ApiError::Internal(format!("metrics: {error}")))?;
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(response)
        }
        (Method::POST, "/v1/is_authorized") => {
            let body = read_json(request, state.limits()).await?;
            Ok(json_response(
                StatusCode::OK,
                &cedar::is_authorized(call, body).await?,
            ))
        }
        (Method::POST, "/v1/batch_is_authorized") => {
            let body = read_json(request, state.limits()).await?;
            Ok(json_response(
                StatusCode::OK,
                &cedar::batch_is_authorized(call, body).await?,
            ))
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
        "shares": {
            "count": state.shares().snapshot().set.len(),
            "version": state.shares().snapshot().version,
            "error": state.shares().failure(),
        },
        "evaluation": {
            "threads": state.pool().config().workers,
            "running": state.pool().running(),
            "waiting": state.pool().waiting(),
        },
        "cache": {
            "enabled": state.cache().enabled(),
            "hits": state.cache().stats().hits,
            "misses": state.cache().stats().misses,
            "entries": state.cache().stats().entries,
            "bytes": state.cache().stats().bytes,
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

/// Reads a JSON body within the limits: 413 above the size limit, 408 past the body timeout,
/// 400 with serde's line and column for malformed JSON.
pub async fn read_json(request: Request<Incoming>, limits: &Limits) -> Result<Value, ApiError> {
    let bytes = read_body(request, limits).await?;
    serde_json::from_slice(&bytes).map_err(|error| ApiError::BadRequest(format!("malformed JSON: {error}")))
}

/// Reads a body of at most `limits.max_body_bytes`, arriving within `limits.body_timeout` (a
/// client trickling bytes gets 408 and loses the connection).
pub async fn read_body(request: Request<Incoming>, limits: &Limits) -> Result<Bytes, ApiError> {
    let limit = limits.max_body_bytes;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit as u64) {
        return Err(ApiError::PayloadTooLarge(limit));
    }
    let collected = tokio::time::timeout(
        limits.body_timeout,
        Limited::new(request.into_body(), limit).collect(),
    )
    .await
    .map_err(|_| ApiError::RequestTimeout(limits.body_timeout))?;
    match collected {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::PayloadTooLarge(limit)),
        Err(error) => Err(ApiError::BadRequest(format!("cannot read request body: {error}"))),
    }
}
