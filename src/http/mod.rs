//! The HTTP API: a `match (method, path)` router over hyper 1.
//!
//! * `POST /v1/is_authorized`: one Cedar decision (cedar-agent request shape)
//! * `POST /v1/batch_is_authorized`: many decisions, in order, under one snapshot
//! * `GET /healthz`: the process is alive
//! * `GET /readyz`: 200 while a valid snapshot is active and the server is not draining (and,
//!   with `--ready-requires-share-store`, the share database answers), else 503
//! * `GET /v1/status`: active revision, load time, sizes, last load error
//! * `GET /metrics`: Prometheus metrics (see [`crate::metrics`])
//! * `<base>/…` (default `/zenml/…`): the ZenML Pro RBAC backend API (`zenml.rs`)
//! * `/authz/…`: the ZenML dashboard's sign-in pages, with `--dashboard-zenml-url` (`signin.rs`)
//! * `/console/`: the operators' console, and the read-only API it calls (`/v1/directory`,
//!   `/v1/role-matrix`, `/v1/what-can`, `/v1/who-can`, `/v1/decisions`; `console.rs`)
//!
//! With `--admin-listen`, a second listener serves `/healthz`, `/readyz` and `/metrics` (open,
//! for probes and scrapers), and the main one stops serving `/metrics`. When caller tokens are
//! configured ([`crate::auth`]), the Cedar API, the console's API, `/v1/status` and the main
//! listener's `/metrics` need one; `/healthz` and `/readyz` never do, and the ZenML API has its own credentials.
//!
//! Every route is in one table ([`ROUTES`]): its path, methods, access and metric label.
//! Every decision takes one observed step (`observe.rs`: cache, metrics, decision log). Only
//! this module knows HTTP and the APIs' JSON; the engine sees typed requests.

mod cedar;
mod console;
mod error;
mod observe;
mod pages;
mod raw_json;
mod signin;
mod zenml;

pub use cedar::{entity_uid, parse_request, request_entity};
pub use error::{ApiError, json_response, respond};

use std::convert::Infallible;
use std::time::Instant;

use tracing::Instrument;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use serde_json::json;

use crate::auth::bearer;
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
    /// The ZenML API's own credentials (checked by its handlers).
    Zenml,
}

/// The sidecar's own routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Healthz,
    Readyz,
    Metrics,
    Status,
    IsAuthorized,
    BatchIsAuthorized,
    Zenml(ZenmlRoute),
    Signin(signin::SigninRoute),
    Console(console::ConsoleRoute),
}

/// The ZenML API's routes, below the base path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ZenmlRoute {
    Login,
    CheckPermissions,
    AllowedResourceIds,
    ResourceMembers,
    Resources,
    UserTeamIds,
    AuthorizeServer,
    WorkspaceStatus,
    UsageEvent,
    Entitlement,
}

/// One route: its path (below the ZenML base path for ZenML routes; `{…}` matches one
/// segment), its methods, who may call it, and its metric label.
struct RouteSpec {
    route: Route,
    path: &'static str,
    methods: &'static str,
    access: Access,
    label: &'static str,
}

const fn spec(
    route: Route,
    path: &'static str,
    methods: &'static str,
    access: Access,
    label: &'static str,
) -> RouteSpec {
    RouteSpec {
        route,
        path,
        methods,
        access,
        label,
    }
}

/// Every route of the sidecar, once.
const ROUTES: &[RouteSpec] = &[
    spec(Route::Healthz, "/healthz", "GET", Access::Open, "/healthz"),
    spec(Route::Readyz, "/readyz", "GET", Access::Open, "/readyz"),
    spec(Route::Metrics, "/metrics", "GET", Access::Caller, "/metrics"),
    spec(Route::Status, "/v1/status", "GET", Access::Caller, "/v1/status"),
    spec(
        Route::IsAuthorized,
        "/v1/is_authorized",
        "POST",
        Access::Caller,
        "/v1/is_authorized",
    ),
    spec(
        Route::BatchIsAuthorized,
        "/v1/batch_is_authorized",
        "POST",
        Access::Caller,
        "/v1/batch_is_authorized",
    ),
    zenml_spec(ZenmlRoute::Login, "/auth/login", "POST", "{zenml}/auth/login"),
    zenml_spec(
        ZenmlRoute::CheckPermissions,
        "/rbac/check_permissions",
        "GET, POST",
        "{zenml}/rbac/check_permissions",
    ),
    zenml_spec(
        ZenmlRoute::AllowedResourceIds,
        "/rbac/allowed_resource_ids",
        "GET",
        "{zenml}/rbac/allowed_resource_ids",
    ),
    zenml_spec(
        ZenmlRoute::ResourceMembers,
        "/rbac/resource_members",
        "POST",
        "{zenml}/rbac/resource_members",
    ),
    zenml_spec(
        ZenmlRoute::Resources,
        "/rbac/resources",
        "DELETE",
        "{zenml}/rbac/resources",
    ),
    zenml_spec(
        ZenmlRoute::UserTeamIds,
        "/rbac/user_team_ids",
        "GET",
        "{zenml}/rbac/user_team_ids",
    ),
    zenml_spec(
        ZenmlRoute::AuthorizeServer,
        "/users/authorize_server",
        "GET",
        "{zenml}/users/authorize_server",
    ),
    zenml_spec(
        ZenmlRoute::WorkspaceStatus,
        "/workspace_status",
        "PATCH",
        "{zenml}/workspace_status",
    ),
    zenml_spec(
        ZenmlRoute::WorkspaceStatus,
        "/tenant_status",
        "PATCH",
        "{zenml}/workspace_status",
    ),
    zenml_spec(
        ZenmlRoute::UsageEvent,
        "/usage-event",
        "POST",
        "{zenml}/usage-event",
    ),
    zenml_spec(
        ZenmlRoute::Entitlement,
        "/organizations/{org}/entitlement/{feature}",
        "GET",
        "{zenml}/organizations/{org}/entitlement/{feature}",
    ),
    // The pages and the console last: the decision routes above are matched first.
    console_spec(console::ConsoleRoute::Bare, "/console", Access::Open),
    console_spec(console::ConsoleRoute::Page, "/console/", Access::Open),
    console_spec(console::ConsoleRoute::Script, "/console/console.js", Access::Open),
    console_spec(console::ConsoleRoute::Style, "/console/console.css", Access::Open),
    console_spec(console::ConsoleRoute::Directory, "/v1/directory", Access::Caller),
    console_spec(
        console::ConsoleRoute::RoleMatrix,
        "/v1/role-matrix",
        Access::Caller,
    ),
    console_spec(console::ConsoleRoute::WhatCan, "/v1/what-can", Access::Caller),
    console_spec(console::ConsoleRoute::WhoCan, "/v1/who-can", Access::Caller),
    console_spec(console::ConsoleRoute::Decisions, "/v1/decisions", Access::Caller),
    signin_spec(signin::SigninRoute::Login, "/authz/login", "GET, POST"),
    signin_spec(signin::SigninRoute::Logout, "/authz/logout", "GET"),
    signin_spec(signin::SigninRoute::SignedInScript, "/authz/signed-in.js", "GET"),
    signin_spec(
        signin::SigninRoute::SignedOutScript,
        "/authz/signed-out.js",
        "GET",
    ),
    signin_spec(
        signin::SigninRoute::DashboardShim,
        "/authz/dashboard-shim.js",
        "GET",
    ),
    signin_spec(signin::SigninRoute::Style, "/authz/style.css", "GET"),
];

/// A console page (open: it holds no data) or a console API route (behind caller tokens).
const fn console_spec(route: console::ConsoleRoute, path: &'static str, access: Access) -> RouteSpec {
    spec(Route::Console(route), path, "GET", access, path)
}

/// A sign-in page: open (people sign in there), its path its label.
const fn signin_spec(route: signin::SigninRoute, path: &'static str, methods: &'static str) -> RouteSpec {
    spec(Route::Signin(route), path, methods, Access::Open, path)
}

const fn zenml_spec(
    route: ZenmlRoute,
    path: &'static str,
    methods: &'static str,
    label: &'static str,
) -> RouteSpec {
    spec(Route::Zenml(route), path, methods, Access::Zenml, label)
}

/// The route of `path` (the ZenML ones below `base`), and the path below the base for those.
fn find_route<'p>(base: &str, path: &'p str) -> Option<(&'static RouteSpec, &'p str)> {
    let below_base = path.strip_prefix(base).filter(|rest| rest.starts_with('/'));
    ROUTES.iter().find_map(|spec| {
        let candidate = match spec.route {
            Route::Zenml(_) => below_base?,
            _ => path,
        };
        matches(spec.path, candidate).then_some((spec, candidate))
    })
}

/// Whether `path` matches `template` (`{…}` segments match any one non-empty segment).
fn matches(template: &str, path: &str) -> bool {
    if !template.contains('{') {
        return template == path;
    }
    let (mut want, mut got) = (template.split('/'), path.split('/'));
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with('{') && w.ends_with('}') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

/// Routes one request. Never fails: every error becomes a response.
pub async fn handle(
    state: AppState,
    listener: Listener,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    // The route, once: its spec and where the path below the ZenML base starts.
    let path = request.uri().path();
    let found =
        find_route(&state.zenml().base_path, path).map(|(spec, below)| (spec, path.len() - below.len()));
    let route_label = found.map_or("other", |(spec, _)| spec.label);
    let span = tracing::info_span!("request", request_id = %request_id, method = %request.method(), route = route_label);
    // Decremented on drop: a client that hangs up mid-request is no longer in flight.
    let _in_flight = InFlight::enter(state.metrics().in_flight().clone());
    let call = Call {
        state: &state,
        request_id: &request_id,
    };
    let mut response = match route(&call, listener, found, request)
        .instrument(span.clone())
        .await
    {
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

/// Answers `request`, whose path is `found`'s route (its spec, and where the path below the
/// ZenML base starts), if any.
async fn route(
    call: &Call<'_>,
    listener: Listener,
    found: Option<(&'static RouteSpec, usize)>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let state = call.state;
    let path = request.uri().path().to_owned();
    let Some((spec, below_base)) = found.and_then(|(spec, at)| Some((spec, path.get(at..)?))) else {
        return Err(ApiError::NotFound(path));
    };
    let access = match (listener, spec.route) {
        (_, Route::Healthz | Route::Readyz) | (Listener::Admin, Route::Metrics) => Access::Open,
        (Listener::Admin, _) => return Err(ApiError::NotFound(path)),
        (Listener::Main, Route::Metrics) if state.admin_separate() => {
            return Err(ApiError::NotFound(format!(
                "{path} (metrics are served on the admin address, --admin-listen)"
            )));
        }
        (Listener::Main, _) => spec.access,
    };
    if access == Access::Caller && !state.caller_tokens().is_empty() {
        let caller = state
            .caller_tokens()
            .verify(bearer(request.headers()))
            .map_err(|error| ApiError::Unauthorized(error.to_string()))?;
        tracing::debug!(caller, "caller authenticated");
    }
    let method = request.method().clone();
    if !spec.methods.split(", ").any(|allowed| allowed == method.as_str()) {
        return Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow: spec.methods,
        });
    }
    match spec.route {
        Route::Healthz => Ok(json_response(StatusCode::OK, &json!({"status": "ok"}))),
        Route::Readyz => Ok(readiness(state)),
        Route::Status => Ok(json_response(StatusCode::OK, &state.report().to_json())),
        Route::Metrics => {
            let families = state
                .report()
                .families()
                .map_err(|error| ApiError::Internal(format!("metrics: {error}")))?;
            let text = crate::metrics::render(state.metrics(), families)
                .map_err(|error| ApiError::Internal(format!("metrics: {error}")))?;
            let mut response = Response::new(Full::new(Bytes::from(text)));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            Ok(response)
        }
        Route::IsAuthorized => {
            let body = read_body(request, state.limits()).await?;
            Ok(error::bytes_response(
                StatusCode::OK,
                cedar::is_authorized(call, body).await?.to_json(),
            ))
        }
        Route::BatchIsAuthorized => {
            let body = read_body(request, state.limits()).await?;
            Ok(error::bytes_response(
                StatusCode::OK,
                cedar::batch_is_authorized(call, body).await?.to_json(),
            ))
        }
        Route::Zenml(route) => {
            let below_base = below_base.to_owned();
            zenml::route(call, request, route, &below_base).await
        }
        Route::Signin(route) => signin::route(call, request, route).await,
        Route::Console(route) => console::route(call, request.uri().query().unwrap_or_default(), route).await,
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
    if state.share_sync().ready_requires_store {
        let health = state.shares().health();
        if !health.reachable() {
            return json_response(
                StatusCode::SERVICE_UNAVAILABLE,
                &json!({
                    "status": "share store unreachable",
                    "revision": snapshot.revision,
                    "error": health.last_error,
                }),
            );
        }
    }
    json_response(
        StatusCode::OK,
        &json!({"status": "ready", "revision": snapshot.revision}),
    )
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
