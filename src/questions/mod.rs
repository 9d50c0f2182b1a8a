//! The questions people ask of an organization, answered by the one decision path: who may do
//! an action on a resource ([`who_may`]), which bindings reach a user, service account or team
//! ([`bindings_of`]), what they may do at each workspace and project (a grid per scope,
//! [`Questioner::grid`] over [`grid_scopes`]), and what each role grants at a scope
//! ([`role_matrix`]). The CLI (`who-can`, `what-can`, the binding lints, `impact`) renders
//! them as text, the console's API (`http::console`) as JSON: both read the same answers.
//!
//! Knows no format: no text, JSON or HTTP.

mod questioner;

pub use questioner::{Asking, GridScope, Questioner, Row, Who};

use crate::directory::{
    BindingScope, Directory, Holder, ORGANIZATION_ROLES, PROJECT_ROLES, RoleBinding, Team, User,
    WORKSPACE_ROLES, Workspace, role_id,
};
use crate::engine::Batch;
use crate::model::{RESOURCE_TYPES, uid};
use crate::zenml::{Decider, Resource, ShareSet};

/// Who may do an action on a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `user`, `service-account` or `team`.
    pub kind: &'static str,
    /// Username, service-account name or team name.
    pub name: String,
    /// The determining policies.
    pub reasons: Vec<String>,
}

/// Every user and service account of the directory that may do `action` on `resource` (sorted
/// by name), then every team whose members may do it by their membership alone (sorted).
/// `keep_going` is asked between principals: `false` ends the search with an error (a
/// caller's deadline).
pub fn who_may(
    decider: Decider<'_>,
    shares: &ShareSet,
    question: (&str, &str, &Resource),
    keep_going: &dyn Fn() -> bool,
) -> Result<Vec<Grant>, String> {
    let directory = decider.directory();
    let questioner = Questioner::new(decider, shares);
    let mut batch = Batch::many();
    let stopped = || "stopped: the deadline passed".to_owned();
    let mut users: Vec<&User> = directory.users.values().map(|user| &**user).collect();
    users.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    let mut grants = Vec::new();
    for user in users {
        if !keep_going() {
            return Err(stopped());
        }
        let decision = questioner.ask(Who::User(&user.named.id), question, &mut batch)?;
        if decision.allowed {
            grants.push(Grant {
                kind: if user.is_service_account {
                    "service-account"
                } else {
                    "user"
                },
                name: user.named.name.clone(),
                reasons: decision.reasons,
            });
        }
    }
    let mut teams: Vec<_> = directory.teams.values().collect();
    teams.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    for team in teams {
        if !keep_going() {
            return Err(stopped());
        }
        let parents = [uid("Team", &team.named.id)];
        let decision = questioner.ask(Who::MemberOf(&parents), question, &mut batch)?;
        if decision.allowed {
            grants.push(Grant {
                kind: "team",
                name: team.named.name.clone(),
                reasons: decision.reasons,
            });
        }
    }
    Ok(grants)
}

/// Whose bindings and grids: a user or service account, or a team.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'d> {
    /// A user or service account.
    User(&'d User),
    /// A team (its members hold its bindings).
    Team(&'d Team),
}

/// A binding that reaches a subject, and the team it comes through (for a user's team's
/// bindings).
#[derive(Debug, Clone, Copy)]
pub struct Held<'d> {
    /// The binding, with its place in the directory file.
    pub binding: &'d RoleBinding,
    /// The team it is held through, if not directly.
    pub through: Option<&'d Team>,
}

impl<'d> Subject<'d> {
    /// The user, service account or team named `key` (id or name); users first.
    pub fn find(directory: &'d Directory, key: &str) -> Option<Self> {
        directory
            .find_user(key)
            .map(Subject::User)
            .or_else(|| directory.find_team(key).map(Subject::Team))
    }
}

/// The bindings that reach `subject`, in file order: a user's own and those of its teams; a
/// team's own.
pub fn bindings_of<'d>(directory: &'d Directory, subject: Subject<'d>) -> Vec<Held<'d>> {
    directory
        .role_bindings
        .iter()
        .filter_map(|binding| match (&binding.holder, subject) {
            (Holder::User(id), Subject::User(user)) if **id == *user.named.id => Some(Held {
                binding,
                through: None,
            }),
            (Holder::Team(id), Subject::User(user)) if user.teams.iter().any(|team| **team == **id) => {
                Some(Held {
                    binding,
                    through: directory.teams.get(&**id),
                })
            }
            (Holder::Team(id), Subject::Team(team)) if **id == *team.named.id => Some(Held {
                binding,
                through: None,
            }),
            _ => None,
        })
        .collect()
}

/// The grid scopes of `workspaces`, in the order `what-can` shows them: each workspace, then
/// its projects by name.
pub fn grid_scopes<'d>(directory: &'d Directory, workspaces: &[&'d Workspace]) -> Vec<GridScope<'d>> {
    let mut scopes = Vec::new();
    for workspace in workspaces {
        scopes.push(GridScope::Workspace(workspace));
        let projects = directory.projects_in(&workspace.named.id);
        scopes.extend(projects.into_iter().map(GridScope::Project));
    }
    scopes
}

/// What one role grants at a grid scope when bound at `bound_at`.
#[derive(Debug, Clone)]
pub struct RoleGrants {
    /// Where the role is bound: the organization, the scope's workspace, or the project.
    pub bound_at: BindingScope,
    /// The role's name.
    pub role: String,
    /// Whether it is a custom role (`roles:`).
    pub custom: bool,
    /// Resource type -> the actions a holder of just this role may do at the scope.
    pub rows: Vec<Row>,
}

/// The role matrix of one grid scope: for every role that reaches it (the organization's
/// roles, the workspace's, and for a project the project's; predefined ones, then the custom
/// roles bound there), what a holder of that role alone may do there, asked as `what-can`
/// asks (a synthetic active user, member of the role's group at the scope it is bound at).
pub fn role_matrix(
    questioner: &Questioner<'_>,
    directory: &Directory,
    scope: GridScope<'_>,
) -> Result<Vec<RoleGrants>, String> {
    let workspace_id = match scope {
        GridScope::Workspace(workspace) => workspace.named.id.clone(),
        GridScope::Project(project) => project.workspace_id.clone(),
    };
    let mut levels = vec![
        (
            BindingScope::Organization(directory.organization.id.as_str().into()),
            ORGANIZATION_ROLES.map(|(role, _)| role).as_slice().to_vec(),
        ),
        (
            BindingScope::Workspace(workspace_id.into()),
            WORKSPACE_ROLES.map(|(role, _)| role).as_slice().to_vec(),
        ),
    ];
    if let GridScope::Project(project) = scope {
        levels.push((
            BindingScope::Project(project.named.id.as_str().into()),
            PROJECT_ROLES.map(|(role, _)| role).as_slice().to_vec(),
        ));
    }
    let mut matrix = Vec::new();
    for (bound_at, predefined) in levels {
        let mut custom: Vec<&str> = directory
            .role_bindings
            .iter()
            .filter(|binding| binding.scope == bound_at && directory.custom_role(&binding.role).is_some())
            .map(|binding| &*binding.role)
            .collect();
        custom.sort_unstable();
        custom.dedup();
        let roles = predefined
            .into_iter()
            .map(|role| (role, false))
            .chain(custom.into_iter().map(|role| (role, true)));
        for (role, is_custom) in roles {
            let group = [uid("Role", &role_id(bound_at.id(), role))];
            let rows = questioner.grid(Who::MemberOf(&group), scope)?;
            matrix.push(RoleGrants {
                bound_at: bound_at.clone(),
                role: role.to_owned(),
                custom: is_custom,
                rows,
            });
        }
    }
    Ok(matrix)
}

/// A resource string whose project part may be a project name from the directory.
pub fn resolve_resource(directory: Option<&Directory>, text: &str) -> Result<Resource, String> {
    let resolved = match (text.split_once(':'), directory) {
        (Some((project, rest)), Some(directory)) if uuid::Uuid::parse_str(project).is_err() => {
            let project = directory
                .find_project(project)
                .ok_or_else(|| format!("resource `{text}`: unknown project `{project}`"))?;
            format!("{}:{rest}", project.named.id)
        }
        _ => text.to_owned(),
    };
    Resource::parse(&resolved).map_err(|error| error.to_string())
}

/// A ZenML resource string whose project, or project id in `project/<id>`, may be a name.
pub fn resolve_zenml_resource(directory: &Directory, text: &str) -> Result<Resource, String> {
    let resolved = match text.strip_prefix("project/") {
        Some(key) if uuid::Uuid::parse_str(key).is_err() => match directory.find_project(key) {
            Some(project) => format!("project/{}", project.named.id),
            None => return Err(format!("resource `{text}`: unknown project `{key}`")),
        },
        _ => text.to_owned(),
    };
    let resource = resolve_resource(Some(directory), &resolved)?;
    if resource.resource_type().is_none() {
        return Err(format!(
            "resource `{text}`: unknown resource type `{}` (one of {})",
            resource.type_name,
            RESOURCE_TYPES.map(|t| t.wire).join(", ")
        ));
    }
    Ok(resource)
}

/// The workspace named by `given`; else the workspace of the resource's project; else the
/// directory's only workspace.
pub fn resolve_workspace<'d>(
    directory: &'d Directory,
    given: Option<&str>,
    resource: Option<&Resource>,
) -> Result<&'d Workspace, String> {
    if let Some(key) = given {
        return directory
            .find_workspace(key)
            .ok_or_else(|| format!("unknown workspace `{key}`"));
    }
    let of_project = resource
        .and_then(Resource::scope_project)
        .and_then(|id| directory.projects.get(id))
        .and_then(|project| directory.workspaces.get(&project.workspace_id));
    if let Some(workspace) = of_project {
        return Ok(workspace);
    }
    let names: Vec<&str> = directory
        .workspaces
        .values()
        .map(|w| w.named.name.as_str())
        .collect();
    match names.len() {
        0 => Err("the directory has no workspaces".into()),
        1 => directory
            .workspaces
            .values()
            .next()
            .ok_or_else(|| "the directory has no workspaces".into()),
        n => Err(format!(
            "the directory has {n} workspaces ({}): name one with `--workspace`",
            names.join(", ")
        )),
    }
}
