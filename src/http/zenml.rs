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
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{HeaderMap, Method, Request, Response, StatusCode};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use super::observe::{Labels, observe};
use super::{ApiError, Call, ZenmlRoute, json_response, read_body};
use crate::auth::bearer;
use crate::cache::{CacheKey, RequestKey};
use crate::engine::Batch;
use crate::metrics::{Api, Handles};
use crate::model::action_from_wire;
use crate::pool::{Deadline, Pace};
use crate::snapshot::Snapshot;
use crate::state::AppState;
use crate::store::ShareSnapshot;
use crate::zenml::shares::{MAX_SHARE_ACTIONS, MAX_SHARE_FIELD_BYTES, MAX_SHARE_RESOURCE_BYTES};
use crate::zenml::token::{self, Subject};
use crate::zenml::{Decider, Grantee, Question, Resource};

/// Answers one request for `route` (its method already checked by the router); `path` is
/// the path below the base path.
pub(super) async fn route(
    call: &Call<'_>,
    request: Request<Incoming>,
    route: ZenmlRoute,
    path: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let state = call.state;
    let method = request.method().clone();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let headers = request.headers().clone();
    let body = read_body(request, state.limits()).await?;
    let snapshot = state.snapshot();
    match route {
        ZenmlRoute::Login => return login(state, &snapshot, &body),
        ZenmlRoute::AuthorizeServer => return user_info(state, &snapshot, &headers, &query),
        _ => {}
    }
    let workspace = authenticate_workspace(state, &snapshot, &headers)?;
    match route {
        ZenmlRoute::CheckPermissions => {
            let resources = if method == Method::POST {
                serde_json::from_slice(&body).map_err(|error| {
                    ApiError::BadRequest(format!(
                        "body: expected a JSON array of resource strings: {error}"
                    ))
                })?
            } else {
                params(&query, "resources")
            };
            check_permissions_page(call, snapshot, workspace, query, resources).await
        }
        ZenmlRoute::AllowedResourceIds => {
            let owned = call.to_owned_call();
            state
                .pool()
                .run(move |deadline| {
                    allowed_resource_ids(&owned.call(), &snapshot, &workspace, &query, deadline)
                })
                .await?
        }
        ZenmlRoute::ResourceMembers => resource_members(call, &snapshot, &workspace, &body).await,
        ZenmlRoute::Resources => delete_resources(call, &workspace, &query).await,
        ZenmlRoute::UserTeamIds => user_team_ids(&snapshot, &query),
        ZenmlRoute::WorkspaceStatus | ZenmlRoute::UsageEvent => Ok(json_response(StatusCode::OK, &json!({}))),
        ZenmlRoute::Entitlement => entitlement(&snapshot, path),
        ZenmlRoute::Login | ZenmlRoute::AuthorizeServer => Err(ApiError::NotFound(path.to_owned())),
    }
}

/// The ZenML decisions of `snapshot`, or why there are none (a 403 to the ZenML server).
fn decider(snapshot: &Snapshot) -> Result<Decider<'_>, ApiError> {
    snapshot.zenml().ok_or_else(|| {
        ApiError::Forbidden("the directory is plain Cedar entities, not a ZenML directory".into())
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
    snapshot: &Snapshot,
    headers: &HeaderMap,
) -> Result<String, ApiError> {
    let token = bearer(headers).ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    // Checked against this request's snapshot: a rotated enrollment key or a workspace removed
    // from the directory ends the token at the reload.
    let subject = token::verify(&state.zenml().token_key, token, now(), snapshot.directory())
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

fn login(state: &AppState, snapshot: &Snapshot, body: &[u8]) -> Result<Response<Full<Bytes>>, ApiError> {
    let form =
        std::str::from_utf8(body).map_err(|_| ApiError::BadRequest("form body is not UTF-8".into()))?;
    let field = |key: &str| params(form, key).into_iter().next();
    let directory = snapshot
        .directory()
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
fn api_key_user(snapshot: &Snapshot, key: &str) -> Result<(String, [u8; 32]), ApiError> {
    let key_sha256 = sha256(key);
    let refused = |reason: &str| {
        tracing::debug!(reason, "API key refused");
        ApiError::Unauthorized(INVALID_API_KEY.into())
    };
    let Some(directory) = snapshot.directory() else {
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
    snapshot: &Snapshot,
    headers: &HeaderMap,
    query: &str,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let credential = bearer(headers).ok_or_else(|| ApiError::Unauthorized("missing bearer token".into()))?;
    let user_id = if credential.starts_with("ZENPROKEY_") {
        api_key_user(snapshot, credential)?.0
    } else {
        // Checked against this request's snapshot: a revoked key or a deactivated user ends
        // the token at the reload.
        match token::verify(&state.zenml().token_key, credential, now(), snapshot.directory()) {
            Ok(Subject::User(user)) => user,
            Ok(Subject::Workspace(_)) => {
                return Err(ApiError::Unauthorized("a workspace token is not a user".into()));
            }
            Err(error) => return Err(ApiError::Unauthorized(error.to_string())),
        }
    };
    let directory = snapshot
        .directory()
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
    // Only members and guests enter a workspace (ZenML Pro); the rule is `zenml::membership`.
    let view = snapshot
        .zenml
        .as_ref()
        .ok_or_else(|| ApiError::Unauthorized("no ZenML directory".into()))?;
    let shares = state.shares().snapshot();
    match view
        .memberships()
        .admit(directory, &shares.set, &user_id, &server_id)
    {
        Ok(admission) => {
            tracing::debug!(principal.id = %user_id, workspace.id = %server_id, admission = admission.label(), "workspace entry admitted");
        }
        Err(refusal) => {
            tracing::info!(principal.id = %user_id, workspace.id = %server_id, reason = %refusal, "workspace entry refused");
            return Err(ApiError::Forbidden(refusal.to_string()));
        }
    }
    let admin = view.is_organization_admin(&user_id);
    Ok(json_response(StatusCode::OK, &external_user(user, admin)))
}

/// What ZenML's external authenticator is told about an account (`ExternalUserModel`; every
/// version ignores the fields it does not know).
///
/// * `is_service_account` is always `false`. ZenML 0.85-0.98 build a service account's model
///   without its external id when its API key is sent on every request
///   (`ServiceAccountResponse.to_user_model()`), and `ZenMLCloudRBAC` then skips every check for
///   it. Described as a user, the account is keyed by its external id on every path and every
///   check reaches the sidecar; the sidecar itself still knows it is a service account.
/// * `is_superuser` (0.98) and `is_admin` (0.85-0.90): organization admins are ZenML admins.
/// * `email` is always a string: ZenML 0.98 refuses (500) the second login of a user without
///   one, and before 0.85 it requires one and names the local account after it. An account
///   without an e-mail in the directory is sent `<name>@zenml-authz.invalid` (RFC 2606: never
///   delivered).
fn external_user(user: &crate::directory::User, admin: bool) -> Value {
    let email = user
        .email
        .clone()
        .unwrap_or_else(|| format!("{}@{NO_EMAIL_DOMAIN}", user.named.name));
    json!({
        "id": user.named.id,
        "username": user.named.name,
        "email": email,
        "name": user.full_name.clone().unwrap_or_else(|| user.named.name.clone()),
        "is_superuser": admin,
        "is_admin": admin,
        "is_service_account": false,
        "avatar_url": null,
        "oidc_claims": {},
    })
}

/// The domain of the e-mail sent for an account that has none (`.invalid`: RFC 2606).
const NO_EMAIL_DOMAIN: &str = "zenml-authz.invalid";

/// One ZenML question under one snapshot and share version, through the observed step
/// (cache, metrics, decision log); anything that is not an allow is `false`, and so is an
/// evaluation that fails (fail closed).
fn allowed(
    call: &Call<'_>,
    snapshot: &Snapshot,
    decider: &Decider<'_>,
    shares: &ShareSnapshot,
    question: &Question<'_>,
    batch: &mut Batch,
    handles: &mut Handles,
) -> bool {
    // Made only when the cache is on (its strings are copies).
    let key = call.state.cache().enabled().then(|| CacheKey {
        revision: snapshot.revision.clone(),
        shares_version: shares.version,
        request: RequestKey::Zenml {
            workspace: question.workspace_id.to_owned(),
            user: question.user_id.to_owned(),
            action: question.action.to_owned(),
            resource: question.resource.to_string(),
        },
    });
    // Bounded labels: anything this version does not know is `unknown`.
    let labels = Labels {
        api: Api::Zenml,
        action: action_from_wire(question.action).unwrap_or("unknown"),
        resource_type: question.resource.resource_type().map_or("unknown", |t| t.wire),
        revision: &snapshot.revision,
    };
    let fields = || {
        Map::from_iter([
            ("workspace".to_owned(), json!(question.workspace_id)),
            ("principal".to_owned(), json!(question.user_id)),
            ("action".to_owned(), json!(question.action)),
            ("resource".to_owned(), json!(question.resource.to_string())),
            ("shares_version".to_owned(), json!(shares.version)),
        ])
    };
    observe(call, handles, labels, key, fields, || {
        decider.decide(&shares.set, question, batch)
    })
    .is_ok_and(|decision| decision.allowed)
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
/// caller's to choose) once the evaluation pool admits them, on this task in slices (each
/// resource is a small decision).
const INLINE_PAGE: usize = 16;

async fn check_permissions_page(
    call: &Call<'_>,
    snapshot: Arc<Snapshot>,
    workspace: String,
    query: String,
    resources: Vec<String>,
) -> Result<Response<Full<Bytes>>, ApiError> {
    if resources.len() <= INLINE_PAGE {
        return check_permissions(
            call,
            &snapshot,
            &workspace,
            &query,
            resources,
            &mut Pace::inline(),
        )
        .await;
    }
    call.state
        .pool()
        .run_sliced(|mut pace| async move {
            check_permissions(call, &snapshot, &workspace, &query, resources, &mut pace).await
        })
        .await?
}

async fn check_permissions(
    call: &Call<'_>,
    snapshot: &Snapshot,
    workspace: &str,
    query: &str,
    resources: Vec<String>,
    pace: &mut Pace,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let user_id = param(query, "user_id")?;
    let action = param(query, "action")?;
    let decider = decider(snapshot)?;
    let shares = call.state.shares().snapshot();
    let mut answer = serde_json::Map::with_capacity(resources.len());
    let mut batch = Batch::many();
    let mut handles = Handles::default();
    let total = resources.len();
    for raw in resources {
        if !pace.go_on().await {
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
                allowed(
                    call,
                    snapshot,
                    &decider,
                    &shares,
                    &question,
                    &mut batch,
                    &mut handles,
                )
            }
            None => false,
        };
        answer.insert(raw, Value::Bool(allow));
    }
    Ok(json_response(StatusCode::OK, &Value::Object(answer)))
}

fn allowed_resource_ids(
    call: &Call<'_>,
    snapshot: &Snapshot,
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
    let decider = decider(snapshot)?;
    let shares = call.state.shares().snapshot();
    let question = Question {
        workspace_id: workspace,
        user_id: &user_id,
        action: &action,
        resource: &resource,
    };
    let mut batch = Batch::many();
    let mut handles = Handles::default();
    let mut late = false;
    let ids = decider.allowed_ids(&shares.set, &question, |q| {
        // Past the deadline every further check is false and the answer is refused below.
        late = late || deadline.expired();
        !late && allowed(call, snapshot, &decider, &shares, q, &mut batch, &mut handles)
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
    snapshot: &Snapshot,
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
        .directory()
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

fn user_team_ids(snapshot: &Snapshot, query: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let user_id = param(query, "user_id")?;
    let teams = snapshot
        .directory()
        .and_then(|d| d.users.get(&user_id))
        .map(|u| u.teams.clone())
        .unwrap_or_default();
    Ok(json_response(StatusCode::OK, &json!(teams)))
}

fn entitlement(snapshot: &Snapshot, path: &str) -> Result<Response<Full<Bytes>>, ApiError> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let ["organizations", organization, "entitlement", feature] = parts.as_slice() else {
        return Err(ApiError::NotFound(path.to_owned()));
    };
    let known = snapshot
        .directory()
        .is_some_and(|d| d.organization.id == *organization);
    if !known {
        return Err(ApiError::NotFound(format!("organization `{organization}`")));
    }
    // Self-hosted: no plan limits. Every feature is entitled.
    let body: BTreeMap<&str, Value> =
        BTreeMap::from([("feature", json!(feature)), ("entitled", json!(true))]);
    Ok(json_response(StatusCode::OK, &json!(body)))
}
