//! The operators' console: one page (`/console/`, with its script and stylesheet) and the
//! read-only API it calls. The page itself holds no data and is open; the API is behind the
//! Cedar API's caller tokens (the page asks for one and keeps it in the tab's session storage,
//! sent as `Authorization: Bearer`, never in a URL):
//!
//! * `GET /v1/directory`: the organization, its workspaces and projects, users, service
//!   accounts and teams, and the vocabulary (actions, resource types);
//! * `GET /v1/role-matrix?scope=<workspace or project>`: what each role reaching the scope
//!   grants there, resource type × action, as `what-can` asks;
//! * `GET /v1/what-can?who=<user, service account or team>[&workspace=]`: its bindings with
//!   their file and line, and per workspace and project the actions it may do;
//! * `GET /v1/who-can?action=&resource=[&workspace=]`: every user, service account and team
//!   that may, with the determining policies' file and line (the live shares count);
//! * `GET /v1/decisions?after=<n>`: the decision log's records numbered above `n`, from its
//!   in-memory tail (the log's own records: no context, entities or credentials).
//!
//! Every answer names the revision it was computed from. The questions are answered on the
//! evaluation pool under its deadline (they cost what the directory's size makes them cost).
//! The status view reads `GET /v1/status`.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode, header};
use serde_json::{Value, json};

use super::pages::{CSS, JAVASCRIPT, asset, page};
use super::{ApiError, Call, json_response};
use crate::directory::{BindingScope, Directory};
use crate::model::{ACTIONS, RESOURCE_TYPES, action_from_wire};
use crate::questions::{
    GridScope, Questioner, Row, Subject, Who, bindings_of, grid_scopes, resolve_workspace,
    resolve_zenml_resource, role_matrix, who_may,
};
use crate::snapshot::Snapshot;
use crate::zenml::{Decider, ShareSet};

const INDEX_PAGE: &str = include_str!("console/index.html");
const CONSOLE_JS: &str = include_str!("console/console.js");
const CONSOLE_CSS: &str = include_str!("console/console.css");

/// The console's routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ConsoleRoute {
    /// `/console`: redirects to `/console/`.
    Bare,
    /// `/console/`: the page.
    Page,
    /// `/console/console.js`.
    Script,
    /// `/console/console.css`.
    Style,
    /// `/v1/directory`.
    Directory,
    /// `/v1/role-matrix`.
    RoleMatrix,
    /// `/v1/what-can`.
    WhatCan,
    /// `/v1/who-can`.
    WhoCan,
    /// `/v1/decisions`.
    Decisions,
}

/// Answers one console request (method and access already checked).
pub(super) async fn route(
    call: &Call<'_>,
    query: &str,
    route: ConsoleRoute,
) -> Result<Response<Full<Bytes>>, ApiError> {
    let question = match route {
        ConsoleRoute::Bare => {
            let mut response = Response::new(Full::new(Bytes::new()));
            *response.status_mut() = StatusCode::PERMANENT_REDIRECT;
            response
                .headers_mut()
                .insert(header::LOCATION, header::HeaderValue::from_static("console/"));
            return Ok(response);
        }
        ConsoleRoute::Page => return Ok(page(StatusCode::OK, INDEX_PAGE.to_owned())),
        ConsoleRoute::Script => return Ok(asset(CONSOLE_JS, JAVASCRIPT)),
        ConsoleRoute::Style => return Ok(asset(CONSOLE_CSS, CSS)),
        ConsoleRoute::Decisions => return Ok(json_response(StatusCode::OK, &decisions(call, query)?)),
        question => question,
    };
    let params: HashMap<String, String> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
    let owned = call.to_owned_call();
    let answer = call
        .state
        .pool()
        .run(move |deadline| {
            let call = owned.call();
            let snapshot = call.state.snapshot();
            let shares = call.state.shares().snapshot();
            let asked = Asked {
                snapshot: &snapshot,
                shares: &shares.set,
                params: &params,
                keep_going: &|| !deadline.expired(),
            };
            match question {
                ConsoleRoute::Directory => directory(&asked),
                ConsoleRoute::RoleMatrix => matrix(&asked),
                ConsoleRoute::WhatCan => what_can(&asked),
                _ => who_can(&asked),
            }
        })
        .await??;
    Ok(json_response(StatusCode::OK, &answer))
}

/// One question to the console's API, in the pool.
struct Asked<'a> {
    snapshot: &'a Snapshot,
    shares: &'a ShareSet,
    params: &'a HashMap<String, String>,
    keep_going: &'a dyn Fn() -> bool,
}

impl Asked<'_> {
    fn directory(&self) -> Result<&Directory, ApiError> {
        self.snapshot.directory().ok_or_else(|| {
            ApiError::BadRequest(
                "the console needs a ZenML directory file (YAML); this directory is plain Cedar entities JSON".into(),
            )
        })
    }

    fn required(&self, name: &str) -> Result<&str, ApiError> {
        self.optional(name)
            .ok_or_else(|| ApiError::BadRequest(format!("the query parameter `{name}` is required")))
    }

    fn optional(&self, name: &str) -> Option<&str> {
        self.params
            .get(name)
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }

    fn decider(&self) -> Result<Decider<'_>, ApiError> {
        self.snapshot
            .zenml()
            .ok_or_else(|| ApiError::BadRequest("no ZenML directory".into()))
    }

    fn questioner(&self) -> Result<Questioner<'_>, ApiError> {
        Ok(Questioner::new(self.decider()?, self.shares))
    }

    fn stopped(&self) -> Result<(), ApiError> {
        if (self.keep_going)() {
            Ok(())
        } else {
            Err(ApiError::Overloaded("the question passed its deadline".into()))
        }
    }
}

/// `/v1/directory`.
fn directory(asked: &Asked<'_>) -> Result<Value, ApiError> {
    let directory = asked.directory()?;
    let mut workspaces: Vec<_> = directory.workspaces.values().collect();
    workspaces.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    let workspaces: Vec<Value> = workspaces
        .into_iter()
        .map(|workspace| {
            let projects = directory.projects_in(&workspace.named.id);
            json!({
                "id": workspace.named.id,
                "name": workspace.named.name,
                "projects": projects
                    .iter()
                    .map(|p| json!({"id": p.named.id, "name": p.named.name}))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut users: Vec<_> = directory.users.values().collect();
    users.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    let mut teams: Vec<_> = directory.teams.values().collect();
    teams.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    Ok(json!({
        "revision": asked.snapshot.revision,
        "organization": {"id": directory.organization.id, "name": directory.organization.name},
        "workspaces": workspaces,
        "users": users.iter().map(|user| json!({
            "id": user.named.id,
            "name": user.named.name,
            "kind": user_kind(user.is_service_account),
            "active": user.active,
        })).collect::<Vec<_>>(),
        "teams": teams.iter().map(|team| json!({
            "id": team.named.id,
            "name": team.named.name,
            "members": team.members.len(),
        })).collect::<Vec<_>>(),
        "custom_roles": directory.custom_roles.iter().map(|role| json!({
            "name": role.name,
            "file": role.place.path.display().to_string(),
            "line": role.place.line,
        })).collect::<Vec<_>>(),
        "actions": ACTIONS,
        "resource_types": RESOURCE_TYPES.map(|t| t.wire),
    }))
}

/// `/v1/role-matrix?scope=`.
fn matrix(asked: &Asked<'_>) -> Result<Value, ApiError> {
    let directory = asked.directory()?;
    let key = asked.required("scope")?;
    let scope = find_grid_scope(directory, key)?;
    let questioner = asked.questioner()?;
    let matrix = role_matrix(&questioner, directory, scope).map_err(ApiError::Internal)?;
    let types: Vec<&str> = matrix
        .first()
        .map(|role| role.rows.iter().map(|(label, _)| *label).collect())
        .unwrap_or_default();
    Ok(json!({
        "revision": asked.snapshot.revision,
        "scope": binding_scope_json(directory, &scope.binding_scope()),
        "types": types,
        "actions": ACTIONS,
        "roles": matrix.iter().map(|role| json!({
            "role": role.role,
            "custom": role.custom,
            "bound_at": binding_scope_json(directory, &role.bound_at),
            "grants": grants_json(&role.rows),
        })).collect::<Vec<_>>(),
    }))
}

/// `/v1/what-can?who=[&workspace=]`.
fn what_can(asked: &Asked<'_>) -> Result<Value, ApiError> {
    let directory = asked.directory()?;
    let key = asked.required("who")?;
    let subject = Subject::find(directory, key).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown `{key}`: not a username, service-account name, team name or id in the directory"
        ))
    })?;
    let workspaces: Vec<_> = match asked.optional("workspace") {
        Some(key) => vec![resolve_workspace(directory, Some(key), None).map_err(ApiError::BadRequest)?],
        None => {
            let mut all: Vec<_> = directory.workspaces.values().collect();
            all.sort_by(|a, b| a.named.name.cmp(&b.named.name));
            all
        }
    };
    let subject_json = match subject {
        Subject::User(user) => {
            let teams = directory.team_names(user);
            json!({
                "kind": user_kind(user.is_service_account),
                "id": user.named.id,
                "name": user.named.name,
                "active": user.active,
                "teams": teams,
            })
        }
        Subject::Team(team) => {
            let members = directory.member_names(team);
            json!({
                "kind": "team",
                "id": team.named.id,
                "name": team.named.name,
                "members": members,
                "file": team.place.path.display().to_string(),
                "line": team.place.line,
            })
        }
    };
    let bindings: Vec<Value> = bindings_of(directory, subject)
        .iter()
        .map(|held| {
            json!({
                "role": held.binding.role,
                "custom": directory.custom_role(&held.binding.role).is_some(),
                "scope": binding_scope_json(directory, &held.binding.scope),
                "through_team": held.through.map(|team| team.named.name.as_str()),
                "file": held.binding.place.path.display().to_string(),
                "line": held.binding.place.line,
            })
        })
        .collect();
    let questioner = asked.questioner()?;
    let team_group;
    let who = match subject {
        Subject::User(user) => Who::User(&user.named.id),
        Subject::Team(team) => {
            team_group = [crate::model::uid("Team", &team.named.id)];
            Who::MemberOf(&team_group)
        }
    };
    let mut scopes = Vec::new();
    for scope in grid_scopes(directory, &workspaces) {
        asked.stopped()?;
        let rows = questioner.grid(who, scope).map_err(ApiError::Internal)?;
        let mut described = binding_scope_json(directory, &scope.binding_scope());
        if let Value::Object(fields) = &mut described {
            fields.insert("grants".into(), grants_json(&rows));
        }
        scopes.push(described);
    }
    Ok(json!({
        "revision": asked.snapshot.revision,
        "subject": subject_json,
        "bindings": bindings,
        "scopes": scopes,
    }))
}

/// `/v1/who-can?action=&resource=[&workspace=]`.
fn who_can(asked: &Asked<'_>) -> Result<Value, ApiError> {
    let directory = asked.directory()?;
    let action_text = asked.required("action")?;
    let action = action_from_wire(action_text).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown action `{action_text}` (one of {})",
            ACTIONS.join(", ")
        ))
    })?;
    let resource_text = asked.required("resource")?;
    let resource = resolve_zenml_resource(directory, resource_text).map_err(ApiError::BadRequest)?;
    let workspace = resolve_workspace(directory, asked.optional("workspace"), Some(&resource))
        .map_err(ApiError::BadRequest)?;
    let decider = asked.decider()?;
    let question = (workspace.named.id.as_str(), action, &resource);
    let grants = who_may(decider, asked.shares, question, asked.keep_going).map_err(|error| {
        if (asked.keep_going)() {
            ApiError::Internal(error)
        } else {
            ApiError::Overloaded(error)
        }
    })?;
    let teams = grants.iter().filter(|grant| grant.kind == "team").count();
    Ok(json!({
        "revision": asked.snapshot.revision,
        "question": {
            "action": action,
            "resource": resource_text,
            "workspace": {"id": workspace.named.id, "name": workspace.named.name},
        },
        "principals": directory.users.len(),
        "teams": directory.teams.len(),
        "allowed_principals": grants.len() - teams,
        "allowed_teams": teams,
        "grants": grants.iter().map(|grant| json!({
            "kind": grant.kind,
            "name": grant.name,
            "policies": grant.reasons.iter().map(|id| policy_json(asked.snapshot, id)).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    }))
}

/// `/v1/decisions?after=`: answered at once (a lock and a copy of at most the tail's size).
fn decisions(call: &Call<'_>, query: &str) -> Result<Value, ApiError> {
    let after = match form_urlencoded::parse(query.as_bytes()).find(|(key, _)| key == "after") {
        None => 0,
        Some((_, value)) => value.parse::<u64>().map_err(|_| {
            ApiError::BadRequest(format!(
                "`after` must be a record number (a non-negative integer), not `{value}`"
            ))
        })?,
    };
    let log = call.state.decision_log();
    let recent = log.recent();
    let (records, last) = recent.after(after);
    Ok(json!({
        "enabled": log.enabled(),
        "kept": recent.capacity(),
        "last": last,
        "records": records.iter().map(|(number, record)| {
            let mut record = (**record).clone();
            if let Value::Object(fields) = &mut record {
                fields.insert("number".into(), json!(number));
            }
            record
        }).collect::<Vec<_>>(),
    }))
}

/// A workspace or project by id or name (`workspace/project` for a project name that is not
/// unique); a workspace first.
fn find_grid_scope<'d>(directory: &'d Directory, key: &str) -> Result<GridScope<'d>, ApiError> {
    if let Some(workspace) = directory.find_workspace(key) {
        return Ok(GridScope::Workspace(workspace));
    }
    directory
        .find_project(key)
        .map(GridScope::Project)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown scope `{key}`: not a workspace or project of the directory"
            ))
        })
}

fn user_kind(is_service_account: bool) -> &'static str {
    if is_service_account {
        "service-account"
    } else {
        "user"
    }
}

/// Where a binding holds its role: kind, id, name, and a project's workspace.
fn binding_scope_json(directory: &Directory, scope: &BindingScope) -> Value {
    match scope {
        BindingScope::Organization(id) => {
            json!({"kind": "organization", "id": id, "name": directory.organization.name})
        }
        BindingScope::Workspace(id) => json!({
            "kind": "workspace",
            "id": id,
            "name": directory.workspaces.get(&**id).map(|w| w.named.name.as_str()),
        }),
        BindingScope::Project(id) => {
            let project = directory.projects.get(&**id);
            json!({
                "kind": "project",
                "id": id,
                "name": project.map(|p| p.named.name.as_str()),
                "workspace": project
                    .and_then(|p| directory.workspaces.get(&p.workspace_id))
                    .map(|w| w.named.name.as_str()),
            })
        }
    }
}

/// Resource type -> allowed actions, in the grid's order.
fn grants_json(rows: &[Row]) -> Value {
    Value::Array(
        rows.iter()
            .map(|(label, actions)| json!({"type": label, "actions": actions}))
            .collect(),
    )
}

/// A policy by id, with its file and line.
fn policy_json(snapshot: &Snapshot, id: &str) -> Value {
    match snapshot.engine.policy_sources.get(id) {
        Some(source) => json!({
            "id": id,
            "file": source.path.display().to_string(),
            "line": source.line,
        }),
        None => json!({"id": id}),
    }
}
