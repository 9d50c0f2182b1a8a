//! The ZenML Pro RBAC backend API, byte for byte what a stock ZenML server's `ZenMLCloudRBAC`,
//! `ZenMLCloudConnection` and external authenticator send (`../shared/zenml-rbac-contract.md`
//! §3-§6). Every path is under the configured base path (default `/zenml`, so
//! `ZENML_SERVER_PRO_API_URL=http://127.0.0.1:8180/zenml`):
//!
//! * `POST /auth/login`: OAuth2 client credentials (workspace id + enrollment key) → bearer
//!   token; or `password=ZENPROKEY_…` (cloud-mode clients) → a user token
//! * `POST /rbac/check_permissions?user_id&action` with a JSON array of resource strings
//!   (0.90+), or `GET` with repeated `resources=` (0.75/0.80); tenant-era
//!   `<server>@server:<type>[/<id>]` strings too
//! * `GET /rbac/allowed_resource_ids?user_id&resource&action`
//! * `POST /rbac/resource_members`, `DELETE /rbac/resources?resources=…`
//! * `GET /rbac/user_team_ids?user_id`
//! * `GET /users/authorize_server?server_id` (Bearer `ZENPROKEY_…` or a user token): user info
//! * cloud mode: `PATCH /workspace_status` (`/tenant_status`),
//!   `GET /organizations/{org}/entitlement/{feature}`, `POST /usage-event`
//!
//! Every `/rbac/*` and cloud call needs a workspace token (`token`: valid only while the
//! workspace's enrollment key is the one it was minted from); the token fixes the workspace. A
//! `zenml-server-id` header that names another one is refused (403), one that is sent twice or
//! is not UTF-8 is malformed (400). Failed logins say only "invalid client credentials" or
//! "invalid API key", whatever the reason (logged at debug level).

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::request::{Prepared, Question, prepare_for_decision};
use super::resource::{PROJECT, Resource, action_from_wire};
use super::shares::{Grantee, MAX_SHARE_ACTIONS, MAX_SHARE_FIELD_BYTES, MAX_SHARE_RESOURCE_BYTES, ShareSet};
use super::token::{self, Subject};
use std::time::Instant;

use crate::cache::{CacheKey, RequestKey};
use crate::engine::{self, Decision, Memo};
use crate::http::Call;
use crate::http::{ApiError, bearer, json_response, read_body};
use crate::metrics::{Api, Outcome};
use crate::policy::PolicySnapshot;
use crate::pool::Deadline;
use crate::state::AppState;
use crate::store::ShareSnapshot;

/// Settings of the ZenML API.
#[derive(Debug, Clone)]
pub struct ZenmlConfig {
    /// Path prefix of every ZenML endpoint, e.g. `/zenml`.
    pub base_path: String,
    /// Lifetime of issued tokens, seconds (ZenML renews 5 minutes before expiry).
    pub token_ttl_secs: u64,
    /// Signing key of issued tokens.
    pub token_key: token::TokenKey,
}

/// Routes one request whose path is `path` below the base path.
pub async fn route(
    call: &Call<'_>,
    request: Request<Incoming>,
    path: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let state = call.state;
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let allow = allowed_methods(path).ok_or_else(|| ApiError::NotFound(request.uri().path().to_owned()))?;
    if !allow.split(", ").any(|m| m == method.as_str()) {
        return Err(ApiError::MethodNotAllowed {
            method: method.to_string(),
            allow,
        });
    }
    let body = read_body(request, state.limits()).await?;
    let snapshot = state.snapshot();
    match (method, path) {
        (Method::POST, "/auth/login") => login(state, &snapshot, &body),
        (Method::GET, "/users/authorize_server") => user_info(state, &snapshot, &headers, &query),
        (method, path) => {
            let workspace = authenticate_workspace(state, &snapshot, &headers)?;
            match (method, path) {
                (Method::POST, "/rbac/check_permissions") => {
                    let resources: Vec<String> = serde_json::from_slice(&body).map_err(|error| {
                        ApiError::BadRequest(format!(
                            "body: expected a JSON array of resource strings: {error}"
                        ))
                    })?;
                    check_permissions_page(call, snapshot, workspace, query, resources).await
                }
                (Method::GET, "/rbac/check_permissions") => {
                    let resources = params(&query, "resources");
                    check_permissions_page(call, snapshot, workspace, query, resources).await
                }
                (Method::GET, "/rbac/allowed_resource_ids") => {
                    let owned = call.to_owned_call();
                    state
                        .pool()
                        .run(move |deadline| {
                            allowed_resource_ids(&owned.call(), &snapshot, &workspace, &query, deadline)
                        })
                        .await?
                }
                (Method::POST, "/rbac/resource_members") => {
                    resource_members(call, &snapshot, &workspace, &body).await
                }
                (Method::DELETE, "/rbac/resources") => delete_resources(call, &workspace, &query).await,
                (Method::GET, "/rbac/user_team_ids") => user_team_ids(&snapshot, &query),
                (Method::PATCH, "/workspace_status" | "/tenant_status") | (Method::POST, "/usage-event") => {
                    Ok(json_response(StatusCode::OK, &json!({})))
                }
                (Method::GET, path) if path.starts_with("/organizations/") => entitlement(&snapshot, path),
                (_, path) => Err(ApiError::NotFound(path.to_owned())),
            }
        }
    }
}

fn allowed_methods(path: &str) -> Option<&'static str> {
    Some(match path {
        "/auth/login" | "/rbac/resource_members" | "/usage-event" => "POST",
        "/rbac/check_permissions" => "GET, POST",
        "/rbac/allowed_resource_ids" | "/rbac/user_team_ids" | "/users/authorize_server" => "GET",
        "/rbac/resources" => "DELETE",
        "/workspace_status" | "/tenant_status" => "PATCH",
        path if path.starts_with("/organizations/") && path.contains("/entitlement/") => "GET",
        _ => return None,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// All values of `key` in a query or form string.
fn params(query: &str, key: &str) -> Vec<String> {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

/// The one value of a required parameter.
fn param(query: &str, key: &str) -> Result<String, ApiError> {
    let mut values = params(query, key);
    match values.len() {
        1 => Ok(values.remove(0)),
        0 => Err(ApiError::BadRequest(format!("missing query parameter `{key}`"))),
        _ => Err(ApiError::BadRequest(format!(
            "query parameter `{key}` given more than once"
        ))),
    }
}

/// The workspace a service-to-service call comes from.
fn authenticate_workspace(
    state: &AppState,
    snapshot: &PolicySnapshot,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    // Checked against this request's snapshot: a rotated enrollment key or a workspace removed
    // from the directory ends the token at the reload.
    let subject = token::verify(
        &state.zenml().token_key,
        token,
        now(),
        snapshot.directory.as_deref(),
    )
    .map_err(|error| ApiError::Unauthorized(error.to_string()))?;
    let Subject::Workspace(workspace) = subject else {
        return Err(ApiError::Forbidden(
            "a user token cannot call the RBAC API".into(),
        ));
    };
    // A malformed header is a 400, not ignored: a proxy or client that sends two values, or
    // bytes no ZenML server sends, must not have one of them silently picked.
    let mut server_ids = headers.get_all(SERVER_ID_HEADER).iter();
    if let Some(value) = server_ids.next() {
        if server_ids.next().is_some() {
            return Err(ApiError::BadRequest(format!(
                "header `{SERVER_ID_HEADER}`: given more than once"
            )));
        }
        let server_id = std::str::from_utf8(value.as_bytes())
            .map_err(|_| ApiError::BadRequest(format!("header `{SERVER_ID_HEADER}`: not UTF-8")))?;
        if server_id != workspace {
            return Err(ApiError::Forbidden(format!(
                "`{SERVER_ID_HEADER}` `{server_id}` does not match the token's workspace"
            )));
        }
    }
    Ok(workspace)
}

/// The header a ZenML server names itself in (its workspace id).
const SERVER_ID_HEADER: &str = "zenml-server-id";

/// The one answer to a failed client-credentials login, whatever the reason.
const INVALID_CLIENT: &str = "invalid client credentials";
/// The one answer to a failed API-key login, whatever the reason.
const INVALID_API_KEY: &str = "invalid API key";

fn sha256(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A token for `subject`, minted from the credential whose stored hash is `credential_sha256`.
fn token_response(state: &AppState, subject: Subject, credential_sha256: &[u8; 32]) -> Response<Full<Bytes>> {
    let ttl = state.zenml().token_ttl_secs;
    let key = &state.zenml().token_key;
    let token = token::issue(key, subject, key.generation(credential_sha256), now() + ttl);
    json_response(
        StatusCode::OK,
        &json!({"access_token": token, "token_type": "bearer", "expires_in": ttl}),
    )
}

fn login(
    state: &AppState,
    snapshot: &PolicySnapshot,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let form =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("form body is not UTF-8".into()))?;
    let field = |key: &str| params(form, key).into_iter().next();
    let directory = snapshot
        .directory
        .as_ref()
        .ok_or_else(|| ApiError::Unauthorized("no ZenML directory is loaded".into()))?;
    // A cloud-mode client logging in with an API key gets a user token.
    if let Some(key) = field("password") {
        let (user, key_sha256) = api_key_user(snapshot, &key)?;
        return Ok(token_response(state, Subject::User(user), &key_sha256));
    }
    match field("grant_type").as_deref() {
        Some("client_credentials") | None => {}
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "grant_type: `{other}` is not supported; use `client_credentials`"
            )));
        }
    }
    let client_id =
        field("client_id").ok_or_else(|| ApiError::BadRequest("missing form field `client_id`".into()))?;
    let secret = field("client_secret")
        .ok_or_else(|| ApiError::BadRequest("missing form field `client_secret`".into()))?;
    // Hashed before the lookup, so an unknown workspace takes as long as a wrong secret; the
    // caller learns only that the pair is invalid, the log (debug) says why.
    let secret_sha256 = sha256(&secret);
    let refused = |reason: &str| {
        tracing::debug!(client_id = %client_id, reason, "client-credentials login refused");
        ApiError::Unauthorized(INVALID_CLIENT.into())
    };
    let Some(workspace) = directory.workspaces.get(&client_id) else {
        return Err(refused("unknown workspace"));
    };
    match workspace.enrollment_key_sha256 {
        Some(expected) if expected == secret_sha256 => {
            Ok(token_response(state, Subject::Workspace(client_id), &expected))
        }
        Some(_) => Err(refused("wrong client secret")),
        None => Err(refused("the workspace has no enrollment key")),
    }
}

/// The active user an API key belongs to, and the key's hash. Every refusal is the same
/// "invalid API key" to the caller; the log (debug) says why.
fn api_key_user(snapshot: &PolicySnapshot, key: &str) -> Result<(String, [u8; 32]), ApiError> {
    let key_sha256 = sha256(key);
    let refused = |reason: &str| {
        tracing::debug!(reason, "API key refused");
        ApiError::Unauthorized(INVALID_API_KEY.into())
    };
    let Some(directory) = snapshot.directory.as_ref() else {
        return Err(refused("no ZenML directory is loaded"));
    };
    let Some((user_id, revoked)) = directory.api_keys.get(&key_sha256) else {
        return Err(refused("unknown API key"));
    };
    if *revoked {
        return Err(refused("revoked API key"));
    }
    match directory.users.get(user_id) {
        Some(user) if user.active => Ok((user_id.clone(), key_sha256)),
        Some(_) => Err(refused("the account is deactivated")),
        None => Err(refused("the key's account is not in the directory")),
    }
}

fn user_info(
    state: &AppState,
    snapshot: &PolicySnapshot,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let credential = bearer(headers).ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let user_id = if credential.starts_with("ZENPROKEY_") {
        api_key_user(snapshot, credential)?.0
    } else {
        // Checked against this request's snapshot: a revoked key or a deactivated user ends
        // the token at the reload.
        match token::verify(
            &state.zenml().token_key,
            credential,
            now(),
            snapshot.directory.as_deref(),
        ) {
            Ok(Subject::User(user)) => user,
            Ok(Subject::Workspace(_)) => {
                return Err(ApiError::Unauthorized("a workspace token is not a user".into()));
            }
            Err(error) => return Err(ApiError::Unauthorized(error.to_string())),
        }
    };
    let directory = snapshot
        .directory
        .as_ref()
        .ok_or_else(|| ApiError::Unauthorized("no ZenML directory".into()))?;
    let server_id = param(query, "server_id")?;
    if !directory.workspaces.contains_key(&server_id) {
        return Err(ApiError::NotFound(format!("server `{server_id}`")));
    }
    let user = directory
        .users
        .get(&user_id)
        .filter(|u| u.active)
        .ok_or_else(|| ApiError::Unauthorized("unknown or deactivated account".into()))?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "id": user.named.id,
            "username": user.named.name,
            "email": user.email,
            "name": user.full_name.clone().unwrap_or_else(|| user.named.name.clone()),
            "is_superuser": false,
            "is_service_account": user.is_service_account,
            "avatar_url": null,
            "oidc_claims": {},
        }),
    ))
}

/// One ZenML question under one snapshot and share version, through the cache; anything that is
/// not an allow is `false`, and so is an evaluation that fails (fail closed).
fn allowed(
    call: &Call<'_>,
    snapshot: &PolicySnapshot,
    shares: &ShareSnapshot,
    question: &Question<'_>,
    memo: &mut Memo,
) -> bool {
    let started = Instant::now();
    let metrics = call.state.metrics();
    let key = CacheKey {
        revision: snapshot.revision.clone(),
        shares_version: shares.version,
        request: RequestKey::Zenml {
            workspace: question.workspace_id.to_owned(),
            user: question.user_id.to_owned(),
            action: question.action.to_owned(),
            resource: question.resource.to_string(),
        },
    };
    let cached = std::cell::Cell::new(true);
    let result = call.state.cache().get_or_compute(key, || {
        cached.set(false);
        let decided = decide_with(snapshot, &shares.set, question, memo);
        metrics.engine_time(Api::Zenml, started.elapsed());
        decided
    });
    let outcome = match &result {
        Ok(decision) if decision.allowed => Outcome::Allow,
        Ok(_) => Outcome::Deny,
        Err(_) => Outcome::Error,
    };
    // Bounded labels: anything this version does not know is `unknown`.
    let action = action_from_wire(question.action).unwrap_or("unknown");
    let resource_type = question.resource.resource_type().map_or("unknown", |t| t.wire);
    let reasons = result.as_ref().map(|d| d.reasons.as_slice()).unwrap_or_default();
    metrics.decision(Api::Zenml, outcome, action, resource_type, reasons);
    let log = call.state.decision_log();
    if log.enabled() {
        log.record(json!({
            "time": crate::decision_log::now(),
            "request_id": call.request_id,
            "api": Api::Zenml.label(),
            "workspace": question.workspace_id,
            "principal": question.user_id,
            "action": question.action,
            "resource": question.resource.to_string(),
            "decision": outcome.label(),
            "policies": reasons,
            "errors": result.as_ref().map(|d| d.errors.clone()).unwrap_or_else(|e| vec![e.clone()]),
            "revision": snapshot.revision,
            "shares_version": shares.version,
            "cached": cached.get(),
            "latency_us": started.elapsed().as_micros() as u64,
        }));
    }
    result.is_ok_and(|decision| decision.allowed)
}

/// The decision for one ZenML question (uncached); `Err` (logged) when it could not be
/// evaluated, which callers treat as a deny.
pub fn decide(
    snapshot: &PolicySnapshot,
    shares: &ShareSet,
    question: &Question<'_>,
) -> Result<Decision, String> {
    decide_with(snapshot, shares, question, &mut Memo::default())
}

/// [`decide`] for one question of a batch: equal Cedar requests of the batch are evaluated once
/// (`engine::Memo`).
pub fn decide_with(
    snapshot: &PolicySnapshot,
    shares: &ShareSet,
    question: &Question<'_>,
    memo: &mut Memo,
) -> Result<Decision, String> {
    let failed = match prepare_for_decision(snapshot, shares, question) {
        Ok(Prepared::Request(request)) => match engine::decide_with(snapshot, &request, memo) {
            Ok(decision) => return Ok(decision),
            Err(error) => error.to_string(),
        },
        Ok(Prepared::Denied(why)) => {
            return Ok(Decision {
                allowed: false,
                reasons: Vec::new(),
                errors: vec![why],
            });
        }
        Err(error) => error,
    };
    tracing::warn!(error = %failed, resource = %question.resource, "cannot decide: denied");
    Err(failed)
}

/// A wire resource string for `workspace`: `None` when it is a tenant-era string of another server.
fn parse_for(workspace: &str, raw: &str) -> Result<Option<Resource>, ApiError> {
    let (server, resource) =
        Resource::parse_wire(raw).map_err(|error| ApiError::BadRequest(error.to_string()))?;
    Ok(match server {
        Some(server) if server != workspace => None,
        _ => Some(resource),
    })
}

/// Pages of at most this many resources are answered inline; longer ones (their cost is the
/// caller's to choose) in the evaluation pool.
const INLINE_PAGE: usize = 16;

async fn check_permissions_page(
    call: &Call<'_>,
    snapshot: std::sync::Arc<PolicySnapshot>,
    workspace: String,
    query: String,
    resources: Vec<String>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if resources.len() <= INLINE_PAGE {
        return check_permissions(call, &snapshot, &workspace, &query, resources, &Deadline::never());
    }
    let owned = call.to_owned_call();
    call.state
        .pool()
        .run(move |deadline| {
            check_permissions(&owned.call(), &snapshot, &workspace, &query, resources, deadline)
        })
        .await?
}

fn check_permissions(
    call: &Call<'_>,
    snapshot: &PolicySnapshot,
    workspace: &str,
    query: &str,
    resources: Vec<String>,
    deadline: &Deadline,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let user_id = param(query, "user_id")?;
    let action = param(query, "action")?;
    let shares = call.state.shares().snapshot();
    let mut answer = serde_json::Map::with_capacity(resources.len());
    let mut memo = Memo::batch();
    let total = resources.len();
    for raw in resources {
        if deadline.expired() {
            return Err(ApiError::Overloaded(format!(
                "the page passed its deadline after {} of {total} resources",
                answer.len()
            )));
        }
        let allow = match parse_for(workspace, &raw)? {
            Some(resource) => {
                let question = Question {
                    workspace_id: workspace,
                    user_id: &user_id,
                    action: &action,
                    resource: &resource,
                };
                allowed(call, snapshot, &shares, &question, &mut memo)
            }
            None => false,
        };
        answer.insert(raw, Value::Bool(allow));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(answer)))
}

fn allowed_resource_ids(
    call: &Call<'_>,
    snapshot: &PolicySnapshot,
    workspace: &str,
    query: &str,
    deadline: &Deadline,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let user_id = param(query, "user_id")?;
    let action = param(query, "action")?;
    let raw = param(query, "resource")?;
    let Some(resource) = parse_for(workspace, &raw)? else {
        return Ok(json_response(
            StatusCode::OK,
            &json!({"full_access": false, "ids": []}),
        ));
    };
    if resource.id.is_some() {
        return Err(ApiError::BadRequest(format!(
            "resource `{raw}`: expected a type without an id"
        )));
    }
    let shares = call.state.shares().snapshot();
    let question = Question {
        workspace_id: workspace,
        user_id: &user_id,
        action: &action,
        resource: &resource,
    };
    let mut memo = Memo::batch();
    let mut late = false;
    let ids = allowed_ids_with(snapshot, &shares.set, &question, |q| {
        // Past the deadline every further check is false and the answer is refused below.
        late = late || deadline.expired();
        !late && allowed(call, snapshot, &shares, q, &mut memo)
    });
    if late {
        return Err(ApiError::Overloaded("the listing passed its deadline".to_owned()));
    }
    Ok(json_response(
        StatusCode::OK,
        &match ids {
            None => json!({"full_access": true, "ids": []}),
            Some(ids) => json!({"full_access": false, "ids": ids}),
        },
    ))
}

/// `None` for full access to the type, else the ids of the instances the sidecar knows of (shared
/// ones; for projects, also the directory's) that `check_permissions` allows.
pub fn allowed_ids(
    snapshot: &PolicySnapshot,
    shares: &ShareSet,
    workspace: &str,
    user_id: &str,
    action: &str,
    type_level: &Resource,
) -> Option<Vec<String>> {
    let question = Question {
        workspace_id: workspace,
        user_id,
        action,
        resource: type_level,
    };
    let mut memo = Memo::batch();
    allowed_ids_with(snapshot, shares, &question, |q| {
        decide_with(snapshot, shares, q, &mut memo).is_ok_and(|d| d.allowed)
    })
}

/// [`allowed_ids`] with the check to use (the API's is cached).
fn allowed_ids_with(
    snapshot: &PolicySnapshot,
    shares: &ShareSet,
    question: &Question<'_>,
    mut check: impl FnMut(&Question<'_>) -> bool,
) -> Option<Vec<String>> {
    let (workspace, type_level) = (question.workspace_id, question.resource);
    if check(question) {
        return None;
    }
    let mut candidates: Vec<String> = shares
        .shared_ids(workspace, type_level.project_id.as_deref(), &type_level.type_name)
        .into_iter()
        .map(str::to_owned)
        .collect();
    if type_level.resource_type() == Some(PROJECT) {
        if let Some(directory) = &snapshot.directory {
            candidates.extend(
                directory
                    .projects
                    .values()
                    .filter(|p| p.workspace_id == workspace)
                    .map(|p| p.named.id.clone()),
            );
        }
        candidates.extend(shares.shared_projects(workspace).into_iter().map(str::to_owned));
    }
    candidates.sort();
    candidates.dedup();
    let ids = candidates
        .into_iter()
        .filter(|id| {
            let instance = Resource {
                id: Some(id.clone()),
                ..type_level.clone()
            };
            check(&Question {
                resource: &instance,
                ..*question
            })
        })
        .collect();
    Some(ids)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MembershipBody {
    #[serde(default)]
    user_id: Option<String>,
    #[serde(default)]
    team_id: Option<String>,
    #[serde(default)]
    sharing_user_id: Option<String>,
    resource: String,
    actions: Vec<String>,
}

/// Refuses a share request whose fields exceed the share limits (`shares::MAX_SHARE_*`),
/// naming the field and never echoing the value.
fn check_share_bounds(body: &MembershipBody) -> Result<(), ApiError> {
    let too_long = |field: &str, value: &str, limit: usize| {
        (value.len() > limit).then(|| {
            ApiError::BadRequest(format!(
                "{field}: {} bytes, more than the {limit} allowed",
                value.len()
            ))
        })
    };
    let ids = [
        ("user_id", &body.user_id),
        ("team_id", &body.team_id),
        ("sharing_user_id", &body.sharing_user_id),
    ];
    let error = ids
        .into_iter()
        .find_map(|(field, value)| too_long(field, value.as_deref()?, MAX_SHARE_FIELD_BYTES))
        .or_else(|| too_long("resource", &body.resource, MAX_SHARE_RESOURCE_BYTES))
        .or_else(|| {
            (body.actions.len() > MAX_SHARE_ACTIONS).then(|| {
                ApiError::BadRequest(format!(
                    "actions: {} entries, more than the {MAX_SHARE_ACTIONS} allowed",
                    body.actions.len()
                ))
            })
        })
        .or_else(|| {
            body.actions
                .iter()
                .enumerate()
                .find_map(|(i, action)| too_long(&format!("actions[{i}]"), action, MAX_SHARE_FIELD_BYTES))
        });
    error.map_or(Ok(()), Err)
}

async fn resource_members(
    call: &Call<'_>,
    snapshot: &PolicySnapshot,
    workspace: &str,
    body: &[u8],
) -> Result<Response<Full<Bytes>>, ApiError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    let body: MembershipBody = serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let message = error.into_inner().to_string();
        ApiError::BadRequest(if path == "." {
            format!("body: {message}")
        } else {
            format!("{path}: {message}")
        })
    })?;
    check_share_bounds(&body)?;
    let directory = snapshot
        .directory
        .as_ref()
        .ok_or_else(|| ApiError::BadRequest("no ZenML directory".into()))?;
    let grantee = match (body.user_id, body.team_id) {
        (Some(user), None) if directory.users.contains_key(&user) => Grantee::User(user),
        (None, Some(team)) if directory.teams.contains_key(&team) => Grantee::Team(team),
        (Some(user), None) => return Err(ApiError::BadRequest(format!("user_id: unknown user `{user}`"))),
        (None, Some(team)) => return Err(ApiError::BadRequest(format!("team_id: unknown team `{team}`"))),
        _ => {
            return Err(ApiError::BadRequest(
                "give exactly one of `user_id` and `team_id`".into(),
            ));
        }
    };
    let Some(resource) = parse_for(workspace, &body.resource)? else {
        return Err(ApiError::Forbidden(format!(
            "resource `{}` belongs to another server",
            body.resource
        )));
    };
    if resource.id.is_none() {
        return Err(ApiError::BadRequest(format!(
            "resource `{}`: only a single resource (with an id) can be shared",
            body.resource
        )));
    }
    // A share can only take effect in the workspace whose project holds the resource.
    if let Some(project) = resource.scope_project().and_then(|id| directory.projects.get(id))
        && project.workspace_id != workspace
    {
        return Err(ApiError::Forbidden(format!(
            "resource `{}` is in project `{}` of another workspace",
            body.resource, project.named.name
        )));
    }
    let mut actions = Vec::with_capacity(body.actions.len());
    for action in &body.actions {
        let known = action_from_wire(action)
            .ok_or_else(|| ApiError::BadRequest(format!("actions: unknown action `{action}`")))?;
        actions.push(known.to_owned());
    }
    let record = json!({
        "time": crate::decision_log::now(),
        "request_id": call.request_id,
        "api": Api::Zenml.label(),
        "event": "share",
        "workspace": workspace,
        "resource": resource.to_string(),
        "grantee": match &grantee {
            Grantee::User(id) => json!({"user": id}),
            Grantee::Team(id) => json!({"team": id}),
        },
        "actions": actions,
        "shared_by": body.sharing_user_id,
    });
    let shares = call.state.shares_handle();
    let workspace = workspace.to_owned();
    let sharer = body.sharing_user_id;
    tokio::task::spawn_blocking(move || {
        shares.set(&workspace, &resource, grantee, actions, sharer.as_deref())
    })
    .await
    .map_err(|error| ApiError::Internal(format!("share write: {error}")))?
    .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    tracing::info!(resource = %record["resource"], grantee = %record["grantee"], actions = %record["actions"], "share set");
    call.state.decision_log().record(record);
    Ok(json_response(StatusCode::OK, &json!({})))
}

async fn delete_resources(
    call: &Call<'_>,
    workspace: &str,
    query: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let mut resources = Vec::new();
    for raw in params(query, "resources") {
        if let Some(resource) = parse_for(workspace, &raw)? {
            resources.push(resource);
        }
    }
    if resources.is_empty() {
        return Ok(json_response(StatusCode::OK, &json!({"deleted": 0})));
    }
    let record = json!({
        "time": crate::decision_log::now(),
        "request_id": call.request_id,
        "api": Api::Zenml.label(),
        "event": "purge",
        "workspace": workspace,
        "resources": resources.iter().map(ToString::to_string).collect::<Vec<_>>(),
    });
    let shares = call.state.shares_handle();
    let workspace = workspace.to_owned();
    let removed = tokio::task::spawn_blocking(move || shares.purge(&workspace, &resources))
        .await
        .map_err(|error| ApiError::Internal(format!("share purge: {error}")))?
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    call.state.decision_log().record(record);
    Ok(json_response(StatusCode::OK, &json!({"deleted": removed})))
}

fn user_team_ids(snapshot: &PolicySnapshot, query: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let user_id = param(query, "user_id")?;
    let teams = snapshot
        .directory
        .as_ref()
        .and_then(|d| d.users.get(&user_id))
        .map(|u| u.teams.clone())
        .unwrap_or_default();
    Ok(json_response(StatusCode::OK, &json!(teams)))
}

fn entitlement(snapshot: &PolicySnapshot, path: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["organizations", organization, "entitlement", feature] = parts.as_slice() else {
        return Err(ApiError::NotFound(path.to_owned()));
    };
    let known = snapshot
        .directory
        .as_ref()
        .is_some_and(|d| d.organization.id == *organization);
    if !known {
        return Err(ApiError::NotFound(format!("organization `{organization}`")));
    }
    // Self-hosted: no plan limits. Every feature is entitled.
    let body: BTreeMap<&str, Value> =
        BTreeMap::from([("feature", json!(feature)), ("entitled", json!(true))]);
    Ok(json_response(StatusCode::OK, &json!(body)))
}
