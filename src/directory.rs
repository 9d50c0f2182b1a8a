//! The organization directory: `policies/directory.yaml`, the file people edit.
//!
//! It lists the organization, its workspaces and projects, teams, users, service accounts,
//! custom roles and role bindings, and becomes Cedar entities (see schemas/zenml.cedarschema):
//!
//! * every scope gets one `ZenML::Role` group per predefined role, `Role::"<scope-id>/<role>"`;
//!   a project's role groups also sit in its `Role::"<project-id>/*"` (any project role) group;
//! * a binding makes the user or team a member of the role group at its scope;
//! * a custom role bound at a scope gets a group `Role::"<scope-id>/<role name>"` that sits in
//!   its base role's group; its grid is kept as data ([`Directory::cell_roles`]): for each cell
//!   `<scope-id>/<type>/<action>`, the custom-role groups that grant it. A request carries the
//!   groups of its cells in `context.permissions` (the closure of the entity store then holds
//!   no per-cell ancestors: half of a large organization's links).
//!
//! Every problem names the entry and its line: `policies/directory.yaml:88:5: bindings[3]:
//! unknown team `ml-eng``. A file ending in `.json` is read as plain Cedar entities instead.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use cedar_policy::{Entities, Entity, EntityId, EntityTypeName, EntityUid, RestrictedExpression, Schema};
use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use crate::error::{LoadError, error_chain};
use crate::model::{PROJECT, RESOURCE_TYPES, ResourceType, expand_action};

/// Predefined organization roles, with the `Organization` attribute naming each group.
pub const ORGANIZATION_ROLES: [(&str, &str); 5] = [
    ("admin", "admins"),
    ("manager", "managers"),
    ("viewer", "viewers"),
    ("member", "members"),
    ("billing_admin", "billing_admins"),
];

/// Predefined workspace roles, with the `Workspace` attribute naming each group.
pub const WORKSPACE_ROLES: [(&str, &str); 5] = [
    ("admin", "admins"),
    ("developer", "developers"),
    ("contributor", "contributors"),
    ("viewer", "viewers"),
    ("stack_admin", "stack_admins"),
];

/// Predefined project roles, with the `Project` attribute naming each group.
pub const PROJECT_ROLES: [(&str, &str); 4] = [
    ("admin", "admins"),
    ("developer", "developers"),
    ("contributor", "contributors"),
    ("viewer", "viewers"),
];

/// The group every project role group sits in: `Role::"<project-id>/*"`.
pub const PROJECT_MEMBERS: &str = "*";

/// The directory, resolved and indexed for the ZenML API (names, ids, key hashes).
#[derive(Debug, Clone, Default)]
pub struct Directory {
    /// The organization.
    pub organization: Named,
    /// Workspaces by id.
    pub workspaces: BTreeMap<String, Workspace>,
    /// Projects by id.
    pub projects: BTreeMap<String, Project>,
    /// Teams by id.
    pub teams: BTreeMap<String, Team>,
    /// Users and service accounts by id (ZenML sends both as `user_id`). Hashed, not ordered:
    /// looked up on every request, where a B-tree of ten thousand heap-allocated keys costs a
    /// cache miss per comparison. A fast hash (the keys are the directory's, never inserted
    /// from a request). Boxed: a `User` is ~350 bytes, and a table of them kept a third of its
    /// buckets empty at that size (2 MB of 10,000 users).
    pub users: HashMap<String, Box<User>, rustc_hash::FxBuildHasher>,
    /// SHA-256 of an API key -> (user id, revoked).
    pub api_keys: HashMap<[u8; 32], (String, bool)>,
    /// The custom roles (`roles:`), in file order.
    pub custom_roles: Vec<CustomRole>,
    /// Custom-role grid cell `<scope-id>/<resource type>/<action>` -> the ids of the custom-role
    /// groups bound at that scope whose grid has the cell (`Role::"<scope-id>/<role name>"`).
    pub cell_roles: HashMap<String, Vec<String>>,
    /// The role bindings (`bindings:`), in file order, resolved to ids.
    pub role_bindings: Vec<RoleBinding>,
    /// Names -> ids, so that lookups by name cost the same for ten users or ten thousand.
    names: NameIndex,
}

/// Name -> id maps of a [`Directory`] (users, teams and workspaces have unique names; project
/// names are unique per workspace).
#[derive(Debug, Clone, Default)]
struct NameIndex {
    users: HashMap<String, String>,
    teams: HashMap<String, String>,
    workspaces: HashMap<String, String>,
    /// Project name -> ids of the projects of that name (one per workspace at most).
    projects: HashMap<String, Vec<String>>,
}

/// An id and a human name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Named {
    /// The stable id.
    pub id: String,
    /// The human name.
    pub name: String,
}

/// A workspace (one ZenML server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// Id and name.
    pub named: Named,
    /// `ZenML::Workspace::"<id>"`, made once (every request names it).
    pub uid: EntityUid,
    /// SHA-256 of the enrollment key (the OAuth2 client secret), if one is set.
    pub enrollment_key_sha256: Option<[u8; 32]>,
}

/// A project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Project {
    /// Id and name.
    pub named: Named,
    /// `ZenML::Project::"<id>"`, made once.
    pub uid: EntityUid,
    /// The workspace it is in.
    pub workspace_id: String,
}

/// A team.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Team {
    /// Id and name.
    pub named: Named,
    /// Member user and service-account ids.
    pub members: Vec<String>,
    /// Its entry in the file (`teams[index]`).
    pub place: Place,
}

/// Where an entry of the directory file is written: the file, the entry's line and column, and
/// its index in its list (`bindings[3]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The directory file.
    pub path: Arc<Path>,
    /// Line of the entry (1-based).
    pub line: usize,
    /// Column of the entry (1-based).
    pub column: usize,
    /// The entry's index in its list.
    pub index: usize,
}

impl Place {
    /// A message about the entry at this place: `path:line:column: message`.
    pub fn error(&self, message: String) -> LoadError {
        LoadError::at_line(&self.path, self.line, self.column, message)
    }
}

/// A custom role (`roles:`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomRole {
    /// Its name.
    pub name: String,
    /// Its entry in the file (`roles[index]`).
    pub place: Place,
}

/// Who holds a role binding (ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    /// A user or a service account.
    User(Arc<str>),
    /// A team.
    Team(Arc<str>),
}

/// Where a role binding holds its role (ids).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BindingScope {
    /// The organization.
    Organization(Arc<str>),
    /// A workspace.
    Workspace(Arc<str>),
    /// A project.
    Project(Arc<str>),
}

impl BindingScope {
    /// The organization's, workspace's or project's id.
    pub fn id(&self) -> &str {
        match self {
            BindingScope::Organization(id) | BindingScope::Workspace(id) | BindingScope::Project(id) => id,
        }
    }
}

/// One role binding (`bindings:`), resolved: its holder holds `role` at `scope`. Its ids and
/// role name are shared with the directory's other bindings (an organization has hundreds of
/// thousands of bindings over far fewer holders, scopes and roles).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleBinding {
    /// Its entry in the file (`bindings[index]`).
    pub place: Place,
    /// Who holds the role.
    pub holder: Holder,
    /// Where.
    pub scope: BindingScope,
    /// The role's name: predefined at the scope's level, or custom.
    pub role: Arc<str>,
}

impl RoleBinding {
    /// The id of the group the binding makes its holder a member of, `Role::"<scope-id>/<role>"`.
    pub fn group_id(&self) -> String {
        role_id(self.scope.id(), &self.role)
    }
}

/// A user or an organization service account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// Id and username (service accounts: their name).
    pub named: Named,
    /// `ZenML::User::"<id>"`, made once (a request names it).
    pub uid: EntityUid,
    /// Display name.
    pub full_name: Option<String>,
    /// E-mail address.
    pub email: Option<String>,
    /// An organization service account.
    pub is_service_account: bool,
    /// False once deactivated.
    pub active: bool,
    /// Ids of the teams the user is in.
    pub teams: Vec<String>,
    /// SHA-256 of each of the user's API keys, revoked ones too ([`Directory::api_keys`] says
    /// which); a user token is valid only while the key it was minted from is listed here.
    pub api_keys: Vec<[u8; 32]>,
}

// === impl Directory ===

impl Directory {
    /// A user or service account by id, username/name, or `None`.
    pub fn find_user(&self, key: &str) -> Option<&User> {
        self.users
            .get(key)
            .or_else(|| self.users.get(self.names.users.get(key)?))
            .map(|user| &**user)
    }

    /// A workspace by id or name.
    pub fn find_workspace(&self, key: &str) -> Option<&Workspace> {
        self.workspaces
            .get(key)
            .or_else(|| self.workspaces.get(self.names.workspaces.get(key)?))
    }

    /// A project by id, by `workspace/name`, or by name when that name is unique.
    pub fn find_project(&self, key: &str) -> Option<&Project> {
        if let Some(project) = self.projects.get(key) {
            return Some(project);
        }
        if let Some((workspace, name)) = key.split_once('/') {
            let workspace = self.find_workspace(workspace)?;
            return self
                .projects_named(name)
                .find(|p| p.workspace_id == workspace.named.id);
        }
        let mut matches = self.projects_named(key);
        let first = matches.next()?;
        matches.next().is_none().then_some(first)
    }

    /// The projects called `name` (in any workspace).
    fn projects_named<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a Project> + 'a {
        let ids = self
            .names
            .projects
            .get(name)
            .map(Vec::as_slice)
            .unwrap_or_default();
        ids.iter().filter_map(|id| self.projects.get(id))
    }

    /// A team by id or name.
    pub fn find_team(&self, key: &str) -> Option<&Team> {
        self.teams
            .get(key)
            .or_else(|| self.teams.get(self.names.teams.get(key)?))
    }

    /// The projects of a workspace, by name.
    pub fn projects_in(&self, workspace_id: &str) -> Vec<&Project> {
        let mut projects: Vec<&Project> = self
            .projects
            .values()
            .filter(|project| project.workspace_id == workspace_id)
            .collect();
        projects.sort_by(|a, b| a.named.name.cmp(&b.named.name));
        projects
    }

    /// The names of a user's teams, sorted.
    pub fn team_names(&self, user: &User) -> Vec<&str> {
        let mut names: Vec<&str> = user
            .teams
            .iter()
            .filter_map(|id| self.teams.get(id))
            .map(|team| team.named.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The usernames and service-account names of a team's members, sorted.
    pub fn member_names(&self, team: &Team) -> Vec<&str> {
        let mut names: Vec<&str> = team
            .members
            .iter()
            .filter_map(|id| self.users.get(id))
            .map(|user| user.named.name.as_str())
            .collect();
        names.sort_unstable();
        names
    }

    /// The custom role called `name`.
    pub fn custom_role(&self, name: &str) -> Option<&CustomRole> {
        self.custom_roles.iter().find(|role| role.name == name)
    }

    /// The ids of the users and service accounts that hold the organization's `admin` role,
    /// directly or through a team.
    pub fn organization_admins(&self) -> HashSet<String> {
        let mut users: HashSet<String> = HashSet::new();
        let mut teams: HashSet<&str> = HashSet::new();
        for binding in &self.role_bindings {
            if matches!(binding.scope, BindingScope::Organization(_)) && *binding.role == *"admin" {
                match &binding.holder {
                    Holder::User(id) => users.insert(id.to_string()),
                    Holder::Team(id) => teams.insert(id),
                };
            }
        }
        for user in self.users.values() {
            if user.teams.iter().any(|team| teams.contains(team.as_str())) {
                users.insert(user.named.id.clone());
            }
        }
        users
    }
}

/// What a directory file holds.
#[derive(Debug)]
pub enum Loaded {
    /// A ZenML directory (YAML): its index and its entities, not yet checked against the
    /// schema nor assembled into a store: the caller adds its own and builds the store once,
    /// with the schema (which adds the actions); when that fails, [`schema_errors`] says where.
    Zenml(Box<Directory>, Vec<Entity>),
    /// Plain Cedar entities (JSON), with the schema's actions.
    Cedar(Entities),
}

/// Loads the directory file: YAML directory, or Cedar entities JSON when the name ends in `.json`.
pub fn load(path: &Path, text: &str, schema: &Schema) -> Result<Loaded, Vec<LoadError>> {
    if path.extension().is_some_and(|ext| ext == "json") {
        return entities_from_json(path, text, schema).map(Loaded::Cedar);
    }
    let file: DirectoryFile = parse_yaml(text).map_err(|error| {
        let message = yaml_message(&error);
        match error.location() {
            Some(location) => vec![LoadError::at_line(
                path,
                location.line() as usize,
                location.column() as usize,
                message,
            )],
            None => vec![LoadError::file(path, message)],
        }
    })?;
    let mut builder = Builder::new(path);
    let directory = builder.resolve(&file);
    let entities = builder.unchecked_entities();
    if !builder.errors.is_empty() {
        return Err(builder.errors);
    }
    // The directory is kept as long as the snapshot; the file's parse and the builder's maps,
    // made in the same pass, are not. Copied once all are made, it sits in memory of its own,
    // and the allocator's pages it shared with them are freed whole when they go (4 MiB of the
    // (c) set's resident memory; BENCHMARKS.md, "Issue 22, session 21").
    let copied = directory.clone();
    drop(directory);
    match (copied, entities) {
        (Some(directory), Some(entities)) => Ok(Loaded::Zenml(Box::new(directory), entities)),
        _ => Err(vec![LoadError::file(path, "directory could not be built")]),
    }
}

/// The directory file's text with project ids replaced (`changes`: old id -> new id), for
/// `zenml-authz zenml-projects --write`: each project's `id:` and each binding's `project:` that
/// names the project by that id. Every other byte stays as it was (comments, order, quoting,
/// layout): the values are found by their byte spans in this parser's reading of the file.
/// An id to change that no project has, or one written in a form not rewritten here (a block
/// scalar, an alias, an escape), is an error at its place; the text is then not changed at all.
pub fn replace_project_ids(
    path: &Path,
    text: &str,
    changes: &BTreeMap<String, String>,
) -> Result<String, LoadError> {
    let file: DirectoryFile = parse_yaml(text).map_err(|error| {
        let message = yaml_message(&error);
        match error.location() {
            Some(location) => LoadError::at_line(
                path,
                location.line() as usize,
                location.column() as usize,
                message,
            ),
            None => LoadError::file(path, message),
        }
    })?;
    let mut edits = Vec::new();
    let mut changed = BTreeSet::new();
    for project in &file.projects {
        if let Some(new_id) = changes.get(&project.value.id.value) {
            edits.push(scalar_edit(path, text, &project.value.id, new_id)?);
            changed.insert(project.value.id.value.as_str());
        }
    }
    for binding in &file.bindings {
        let Some(project) = &binding.value.project else {
            continue;
        };
        // An alias (`*churn`) follows its anchor, which is the project's `id:` itself or
        // another binding's value: only the anchored text is rewritten.
        if let Some(new_id) = changes.get(&project.value)
            && project.referenced == project.defined
        {
            edits.push(scalar_edit(path, text, project, new_id)?);
        }
    }
    if let Some(unknown) = changes.keys().find(|old| !changed.contains(old.as_str())) {
        return Err(LoadError::file(
            path,
            format!("no project has the id `{unknown}`"),
        ));
    }
    edits.sort_by_key(|(range, _)| range.start);
    if edits.windows(2).any(|pair| pair[0].0.end > pair[1].0.start) {
        return Err(LoadError::file(
            path,
            "project ids overlap in the file (anchors?): edit them by hand",
        ));
    }
    let mut rewritten = String::with_capacity(text.len());
    let mut done = 0;
    for (range, replacement) in &edits {
        rewritten.push_str(&text[done..range.start]);
        rewritten.push_str(replacement);
        done = range.end;
    }
    rewritten.push_str(&text[done..]);
    Ok(rewritten)
}

/// The byte range of a scalar as written and what replaces it: `new` in the same quoting.
fn scalar_edit(
    path: &Path,
    text: &str,
    scalar: &Spanned<String>,
    new: &str,
) -> Result<(std::ops::Range<usize>, String), LoadError> {
    let location = scalar.referenced;
    let at = |message: String| {
        LoadError::at_line(
            path,
            location.line() as usize,
            location.column() as usize,
            message,
        )
    };
    let span = location.span();
    let old = &scalar.value;
    let range = match (span.byte_offset(), span.byte_len()) {
        (Some(start), Some(len)) => usize::try_from(start)
            .ok()
            .zip(usize::try_from(start + len).ok())
            .map(|(start, end)| start..end),
        _ => None,
    };
    let Some((range, written)) = range.and_then(|range| Some((range.clone(), text.get(range)?))) else {
        return Err(at(format!(
            "cannot find `{old}` in the text; write `{new}` by hand"
        )));
    };
    let replacement = if written == old {
        new.to_owned()
    } else if written == format!("\"{old}\"") {
        format!("\"{new}\"")
    } else if written == format!("'{old}'") {
        format!("'{new}'")
    } else {
        return Err(at(format!(
            "`{old}` is not written as a plain or quoted scalar: write `{new}` there by hand"
        )));
    };
    Ok((range, replacement))
}

/// Where the entities of a ZenML directory file do not match `schema`: each entity checked on
/// its own, errors at the entry that made it (slower than checking the store at once; for
/// when that check failed).
pub fn schema_errors(path: &Path, text: &str, schema: &Schema) -> Vec<LoadError> {
    checked_entities(path, text, schema).err().unwrap_or_default()
}

/// The entities of a ZenML directory file, each parsed and checked against `schema` on its
/// own (Cedar's JSON form), with the schema's actions: the slow path [`schema_errors`] takes.
pub fn checked_entities(path: &Path, text: &str, schema: &Schema) -> Result<Vec<Entity>, Vec<LoadError>> {
    let file: DirectoryFile =
        parse_yaml(text).map_err(|error| vec![LoadError::file(path, yaml_message(&error))])?;
    let mut builder = Builder::new(path);
    let resolved = builder.resolve(&file);
    let entities = builder.entities(schema);
    match (resolved, entities) {
        (Some(_), Some(entities)) if builder.errors.is_empty() => Ok(entities),
        _ if builder.errors.is_empty() => Err(vec![LoadError::file(path, "directory could not be built")]),
        _ => Err(builder.errors),
    }
}

/// Entity uids from the builder's `(type, id)` strings, each type name parsed once and each uid
/// made once: an entity's uid, its children's parents and the attributes naming it share one id
/// (a UUID is longer than an inline `SmolStr` and is allocated each time it is made: ~50,000
/// uids for 18,000 entities on the large set).
#[derive(Default)]
struct Uids {
    types: HashMap<String, EntityTypeName>,
    /// type name -> id -> its uid.
    made: HashMap<String, HashMap<String, EntityUid>>,
}

impl Uids {
    fn uid(&mut self, type_name: &str, id: &str) -> Option<EntityUid> {
        if let Some(made) = self.made.get(type_name).and_then(|ids| ids.get(id)) {
            return Some(made.clone());
        }
        let parsed = match self.types.get(type_name) {
            Some(known) => known.clone(),
            None => {
                let parsed = EntityTypeName::from_str(type_name).ok()?;
                self.types.insert(type_name.to_owned(), parsed.clone());
                parsed
            }
        };
        let uid = EntityUid::from_type_name_and_id(parsed, EntityId::new(id));
        self.made
            .entry(type_name.to_owned())
            .or_default()
            .insert(id.to_owned(), uid.clone());
        Some(uid)
    }

    /// A directory attribute value (JSON as the builder writes it) as a Cedar expression.
    fn restricted(&mut self, value: &Value) -> Option<RestrictedExpression> {
        Some(match value {
            Value::String(text) => RestrictedExpression::new_string(text.clone()),
            Value::Bool(flag) => RestrictedExpression::new_bool(*flag),
            Value::Number(number) => RestrictedExpression::new_long(number.as_i64()?),
            Value::Array(items) => RestrictedExpression::new_set(
                items
                    .iter()
                    .map(|item| self.restricted(item))
                    .collect::<Option<Vec<_>>>()?,
            ),
            Value::Object(fields) => match fields.get("__entity") {
                Some(Value::Object(uid)) => RestrictedExpression::new_entity_uid(
                    self.uid(uid.get("type")?.as_str()?, uid.get("id")?.as_str()?)?,
                ),
                Some(_) => return None,
                None => RestrictedExpression::new_record(
                    fields
                        .iter()
                        .map(|(name, value)| Some((name.clone(), self.restricted(value)?)))
                        .collect::<Option<Vec<_>>>()?,
                )
                .ok()?,
            },
            Value::Null => return None,
        })
    }

    /// One entity from the builder's value (`{"attrs": {...}}`) and parents, unchecked.
    fn entity(
        &mut self,
        (type_name, id): &(String, String),
        value: &Value,
        parents: Option<&BTreeSet<(String, String)>>,
    ) -> Option<Entity> {
        let uid = self.uid(type_name, id)?;
        let parents = parents
            .into_iter()
            .flatten()
            .map(|(parent_type, parent_id)| self.uid(parent_type, parent_id))
            .collect::<Option<HashSet<_>>>()?;
        let attrs = match value.get("attrs") {
            Some(Value::Object(attrs)) => attrs
                .iter()
                .map(|(name, value)| Some((name.clone(), self.restricted(value)?)))
                .collect::<Option<HashMap<_, _>>>()?,
            _ => HashMap::new(),
        };
        Entity::new(uid, attrs, parents).ok()
    }
}

// ---- The file format --------------------------------------------------------------------

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFile {
    organization: Spanned<OrganizationEntry>,
    #[serde(default, alias = "tenants")]
    workspaces: Vec<Spanned<WorkspaceEntry>>,
    #[serde(default)]
    projects: Vec<Spanned<ProjectEntry>>,
    #[serde(default)]
    teams: Vec<Spanned<TeamEntry>>,
    #[serde(default)]
    users: Vec<Spanned<UserEntry>>,
    #[serde(default)]
    service_accounts: Vec<Spanned<ServiceAccountEntry>>,
    #[serde(default)]
    roles: Vec<Spanned<RoleEntry>>,
    #[serde(default)]
    bindings: Vec<Spanned<BindingEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct OrganizationEntry {
    id: String,
    name: String,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WorkspaceEntry {
    id: String,
    name: String,
    #[serde(default)]
    enrollment_key_sha256: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectEntry {
    /// Spanned: `zenml-projects --write` rewrites it in place ([`project_id_edits`]).
    id: Spanned<String>,
    name: String,
    #[serde(alias = "tenant")]
    workspace: String,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TeamEntry {
    id: String,
    name: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    id: String,
    username: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    api_keys: Vec<ApiKeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceAccountEntry {
    id: String,
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    active: bool,
    #[serde(default)]
    api_keys: Vec<ApiKeyEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApiKeyEntry {
    name: String,
    sha256: String,
    #[serde(default)]
    revoked: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum RoleScope {
    #[serde(alias = "tenant")]
    Workspace,
    Project,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RoleEntry {
    name: String,
    scope: RoleScope,
    #[serde(default)]
    base: Option<String>,
    #[serde(default)]
    #[allow(dead_code, reason = "documentation for people reading the file")]
    description: Option<String>,
    #[serde(default)]
    permissions: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BindingEntry {
    role: String,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    team: Option<String>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    organization: Option<String>,
    #[serde(default, alias = "tenant")]
    workspace: Option<String>,
    /// Spanned: a project named by id follows its project's id ([`project_id_edits`]).
    #[serde(default)]
    project: Option<Spanned<String>>,
}

// ---- Resolution -------------------------------------------------------------------------

/// A scope a role can be held at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScopeKind {
    Organization,
    Workspace,
    Project,
}

/// A custom role once checked: scope, base role, and its grid as (resource type, action) cells.
type CheckedRole = (RoleScope, Option<String>, Vec<(String, &'static str)>);

/// Where an entity came from in the file: line, column and entry name.
type EntryAt = (usize, usize, String);

struct Builder<'a> {
    path: &'a Path,
    /// The same path, shared by the [`Place`]s of the resolved directory.
    shared_path: Arc<Path>,
    errors: Vec<LoadError>,
    /// Entity JSON by uid key ("Type::id"), with the place of the entry that made it. Hashed:
    /// a (d) directory makes 178k entities and looks them up twice as often, and a B-tree of
    /// string pairs compared its keys' common prefixes a seventh of a reload; read in key order
    /// ([`in_key_order`]).
    entities: HashMap<(String, String), (Value, Option<EntryAt>), rustc_hash::FxBuildHasher>,
    /// Extra parents per entity key.
    parents: HashMap<(String, String), BTreeSet<(String, String)>, rustc_hash::FxBuildHasher>,
    /// Custom-role grid cell -> the custom-role groups that grant it.
    cell_roles: BTreeMap<String, BTreeSet<String>>,
    /// The bindings' ids and role names, each once.
    shared: HashSet<Arc<str>, rustc_hash::FxBuildHasher>,
}

/// The entries of a builder's map in key order (the order every load has: the same entities,
/// errors and ids whatever the hash).
fn in_key_order<V, S>(map: &HashMap<(String, String), V, S>) -> Vec<(&(String, String), &V)> {
    let mut entries: Vec<_> = map.iter().collect();
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    entries
}

fn role_uid(scope_id: &str, role: &str) -> (String, String) {
    ("ZenML::Role".to_owned(), format!("{scope_id}/{role}"))
}

fn entity_ref(key: &(String, String)) -> Value {
    json!({"__entity": {"type": key.0, "id": key.1}})
}

impl<'a> Builder<'a> {
    fn new(path: &'a Path) -> Self {
        Self {
            path,
            shared_path: Arc::from(path),
            errors: Vec::new(),
            entities: HashMap::default(),
            parents: HashMap::default(),
            cell_roles: BTreeMap::new(),
            shared: HashSet::default(),
        }
    }

    /// The place of the `index`th entry of a list.
    fn place<T>(&self, spanned: &Spanned<T>, index: usize) -> Place {
        Place {
            path: self.shared_path.clone(),
            line: spanned.referenced.line() as usize,
            column: spanned.referenced.column() as usize,
            index,
        }
    }

    fn error<T>(&mut self, spanned: &Spanned<T>, entry: &str, message: impl std::fmt::Display) {
        self.errors.push(LoadError::at_line(
            self.path,
            spanned.referenced.line() as usize,
            spanned.referenced.column() as usize,
            format!("{entry}: {message}"),
        ));
    }

    /// Reports an id that is not a canonical UUID; returns whether it is one.
    fn uuid<T>(&mut self, spanned: &Spanned<T>, entry: &str, id: &str) -> bool {
        match crate::model::canonical_uuid(id) {
            Some(canonical) if canonical == id => true,
            Some(canonical) => {
                self.error(
                    spanned,
                    entry,
                    format!("id `{id}`: write the UUID as ZenML does, `{canonical}`"),
                );
                false
            }
            None => {
                self.error(spanned, entry, format!("id `{id}` is not a UUID"));
                false
            }
        }
    }

    fn sha256<T>(&mut self, spanned: &Spanned<T>, entry: &str, hex_digest: &str) -> Option<[u8; 32]> {
        let mut digest = [0u8; 32];
        match hex::decode_to_slice(hex_digest, &mut digest) {
            Ok(()) => Some(digest),
            Err(_) => {
                self.error(
                    spanned,
                    entry,
                    format!("`{hex_digest}` is not a SHA-256 digest (64 hex digits)"),
                );
                None
            }
        }
    }

    fn add_entity<T>(
        &mut self,
        spanned: &Spanned<T>,
        entry: &str,
        entity_type: &str,
        id: &str,
        attrs: Value,
    ) {
        let key = (format!("ZenML::{entity_type}"), id.to_owned());
        if self.entities.contains_key(&key) {
            self.error(spanned, entry, format!("duplicate id `{id}`"));
            return;
        }
        let place = (
            spanned.referenced.line() as usize,
            spanned.referenced.column() as usize,
            entry.to_owned(),
        );
        self.entities.insert(key, (json!({"attrs": attrs}), Some(place)));
    }

    fn add_group(&mut self, key: (String, String)) {
        self.entities
            .entry(key)
            .or_insert_with(|| (json!({"attrs": {}}), None));
    }

    fn add_parent(&mut self, child: (String, String), parent: (String, String)) {
        self.parents.entry(child).or_default().insert(parent);
    }

    fn role_groups(&mut self, scope_id: &str, roles: &[(&str, &str)]) -> serde_json::Map<String, Value> {
        let mut attrs = serde_json::Map::new();
        for (role, attribute) in roles {
            let key = role_uid(scope_id, role);
            self.add_group(key.clone());
            attrs.insert((*attribute).to_owned(), entity_ref(&key));
        }
        attrs
    }

    /// Resolves the whole file, step by step: each step reads what the earlier ones resolved
    /// (projects name workspaces, teams name users, bindings name all of them).
    fn resolve(&mut self, file: &DirectoryFile) -> Option<Directory> {
        let mut directory = Directory::default();
        self.organization(&mut directory, &file.organization);
        self.workspaces(&mut directory, &file.workspaces);
        self.projects(&mut directory, &file.projects);
        self.users(&mut directory, &file.users, &file.service_accounts);
        self.teams(&mut directory, &file.teams);
        let custom = self.custom_roles(&mut directory, &file.roles);
        self.bindings(&mut directory, &custom, &file.bindings);
        directory.cell_roles = std::mem::take(&mut self.cell_roles)
            .into_iter()
            .map(|(cell, roles)| (cell, roles.into_iter().collect()))
            .collect();
        Some(directory)
    }

    /// The organization, with its role groups.
    fn organization(&mut self, directory: &mut Directory, org: &Spanned<OrganizationEntry>) {
        self.uuid(org, "organization", &org.value.id);
        let mut attrs = self.role_groups(&org.value.id, &ORGANIZATION_ROLES);
        attrs.insert("name".into(), json!(org.value.name));
        self.add_entity(
            org,
            "organization",
            "Organization",
            &org.value.id,
            Value::Object(attrs),
        );
        directory.organization = Named {
            id: org.value.id.clone(),
            name: org.value.name.clone(),
        };
    }

    /// The workspaces, each with its role groups, in the organization.
    fn workspaces(&mut self, directory: &mut Directory, workspaces: &[Spanned<WorkspaceEntry>]) {
        let org_key = (
            "ZenML::Organization".to_owned(),
            directory.organization.id.clone(),
        );
        for (i, ws) in workspaces.iter().enumerate() {
            let entry = format!("workspaces[{i}] `{}`", ws.value.name);
            // A malformed id is reported but the entry still counts, so that references to
            // it resolve and one typo gives one error.
            self.uuid(ws, &entry, &ws.value.id);
            if self.name_taken(directory, ws, &entry, &ws.value.name, ScopeKind::Workspace) {
                continue;
            }
            let key_hash = match &ws.value.enrollment_key_sha256 {
                Some(digest) => match self.sha256(ws, &entry, digest) {
                    Some(digest) => Some(digest),
                    None => continue,
                },
                None => None,
            };
            let mut attrs = self.role_groups(&ws.value.id, &WORKSPACE_ROLES);
            attrs.insert("name".into(), json!(ws.value.name));
            attrs.insert("organization".into(), entity_ref(&org_key));
            self.add_entity(ws, &entry, "Workspace", &ws.value.id, Value::Object(attrs));
            self.add_parent(("ZenML::Workspace".into(), ws.value.id.clone()), org_key.clone());
            directory.workspaces.insert(
                ws.value.id.clone(),
                Workspace {
                    named: Named {
                        id: ws.value.id.clone(),
                        name: ws.value.name.clone(),
                    },
                    uid: crate::model::uid("Workspace", &ws.value.id),
                    enrollment_key_sha256: key_hash,
                },
            );
            (directory.names.workspaces).insert(ws.value.name.clone(), ws.value.id.clone());
        }
    }

    /// The projects, each with its role groups and its any-project-role group, in their
    /// workspaces.
    fn projects(&mut self, directory: &mut Directory, projects: &[Spanned<ProjectEntry>]) {
        for (i, project) in projects.iter().enumerate() {
            let entry = format!("projects[{i}] `{}`", project.value.name);
            self.uuid(project, &entry, &project.value.id.value);
            let Some(workspace) = directory.find_workspace(&project.value.workspace).cloned() else {
                self.error(
                    project,
                    &entry,
                    format!("unknown workspace `{}`", project.value.workspace),
                );
                continue;
            };
            let duplicate_name = directory
                .projects_named(&project.value.name)
                .any(|p| p.workspace_id == workspace.named.id);
            if duplicate_name {
                self.error(
                    project,
                    &entry,
                    format!(
                        "duplicate project name `{}` in workspace `{}`",
                        project.value.name, workspace.named.name
                    ),
                );
                continue;
            }
            let mut attrs = self.role_groups(&project.value.id.value, &PROJECT_ROLES);
            let members = role_uid(&project.value.id.value, PROJECT_MEMBERS);
            self.add_group(members.clone());
            for (role, _) in PROJECT_ROLES {
                self.add_parent(role_uid(&project.value.id.value, role), members.clone());
            }
            attrs.insert("members".into(), entity_ref(&members));
            attrs.insert("name".into(), json!(project.value.name));
            let workspace_key = ("ZenML::Workspace".to_owned(), workspace.named.id.clone());
            attrs.insert("workspace".into(), entity_ref(&workspace_key));
            self.add_entity(
                project,
                &entry,
                "Project",
                &project.value.id.value,
                Value::Object(attrs),
            );
            self.add_parent(
                ("ZenML::Project".into(), project.value.id.value.clone()),
                workspace_key,
            );
            directory.projects.insert(
                project.value.id.value.clone(),
                Project {
                    named: Named {
                        id: project.value.id.value.clone(),
                        name: project.value.name.clone(),
                    },
                    uid: crate::model::uid("Project", &project.value.id.value),
                    workspace_id: workspace.named.id.clone(),
                },
            );
            directory
                .names
                .projects
                .entry(project.value.name.clone())
                .or_default()
                .push(project.value.id.value.clone());
        }
    }

    /// Users and service accounts: both `ZenML::User`, in one namespace of names.
    fn users(
        &mut self,
        directory: &mut Directory,
        users: &[Spanned<UserEntry>],
        service_accounts: &[Spanned<ServiceAccountEntry>],
    ) {
        for (i, user) in users.iter().enumerate() {
            let entry = format!("users[{i}] `{}`", user.value.username);
            let u = &user.value;
            self.add_user(
                directory,
                user,
                &entry,
                &u.id,
                &u.username,
                u.name.clone(),
                u.email.clone(),
                false,
                u.active,
                &u.api_keys,
            );
        }
        for (i, account) in service_accounts.iter().enumerate() {
            let entry = format!("service_accounts[{i}] `{}`", account.value.name);
            let a = &account.value;
            self.add_user(
                directory,
                account,
                &entry,
                &a.id,
                &a.name,
                a.description.clone(),
                None,
                true,
                a.active,
                &a.api_keys,
            );
        }
    }

    /// The teams: each member user is `in` its teams.
    fn teams(&mut self, directory: &mut Directory, teams: &[Spanned<TeamEntry>]) {
        for (i, team) in teams.iter().enumerate() {
            let entry = format!("teams[{i}] `{}`", team.value.name);
            self.uuid(team, &entry, &team.value.id);
            if self.name_taken(directory, team, &entry, &team.value.name, ScopeKind::Organization) {
                continue;
            }
            let team_key = ("ZenML::Team".to_owned(), team.value.id.clone());
            let mut members = Vec::new();
            for member in &team.value.members {
                match directory.find_user(member).map(|u| u.named.id.clone()) {
                    Some(user_id) => {
                        self.add_parent(("ZenML::User".into(), user_id.clone()), team_key.clone());
                        if let Some(user) = directory.users.get_mut(&user_id) {
                            user.teams.push(team.value.id.clone());
                        }
                        members.push(user_id);
                    }
                    None => self.error(
                        team,
                        &entry,
                        format!("unknown member `{member}` (not a user or service account)"),
                    ),
                }
            }
            self.add_entity(
                team,
                &entry,
                "Team",
                &team.value.id,
                json!({"name": team.value.name}),
            );
            directory.teams.insert(
                team.value.id.clone(),
                Team {
                    named: Named {
                        id: team.value.id.clone(),
                        name: team.value.name.clone(),
                    },
                    members,
                    place: self.place(team, i),
                },
            );
            (directory.names.teams).insert(team.value.name.clone(), team.value.id.clone());
        }
    }

    /// The custom roles, checked, by name (for the bindings); listed on the directory.
    fn custom_roles(
        &mut self,
        directory: &mut Directory,
        roles: &[Spanned<RoleEntry>],
    ) -> BTreeMap<String, CheckedRole> {
        let mut custom: BTreeMap<String, CheckedRole> = BTreeMap::new();
        for (i, role) in roles.iter().enumerate() {
            let entry = format!("roles[{i}] `{}`", role.value.name);
            if let Some(cells) = self.custom_role(role, &entry) {
                if custom.contains_key(&role.value.name) {
                    self.error(role, &entry, "duplicate role name");
                    continue;
                }
                custom.insert(
                    role.value.name.clone(),
                    (role.value.scope, role.value.base.clone(), cells),
                );
                directory.custom_roles.push(CustomRole {
                    name: role.value.name.clone(),
                    place: self.place(role, i),
                });
            }
        }
        custom
    }

    /// The role bindings: each makes its holder a member of the role's group at its scope.
    fn bindings(
        &mut self,
        directory: &mut Directory,
        custom: &BTreeMap<String, CheckedRole>,
        bindings: &[Spanned<BindingEntry>],
    ) {
        for (i, binding) in bindings.iter().enumerate() {
            let entry = format!("bindings[{i}]");
            if let Some((holder, scope)) = self.bind(directory, custom, binding, &entry) {
                let role = self.shared(&binding.value.role);
                directory.role_bindings.push(RoleBinding {
                    place: self.place(binding, i),
                    holder,
                    scope,
                    role,
                });
            }
        }
        directory.role_bindings.shrink_to_fit();
    }

    /// `text` as one shared string per distinct value.
    fn shared(&mut self, text: &str) -> Arc<str> {
        if let Some(held) = self.shared.get(text) {
            return held.clone();
        }
        let held: Arc<str> = text.into();
        self.shared.insert(held.clone());
        held
    }

    /// True (and an error) when a workspace or team name is used twice.
    fn name_taken<T>(
        &mut self,
        directory: &Directory,
        spanned: &Spanned<T>,
        entry: &str,
        name: &str,
        kind: ScopeKind,
    ) -> bool {
        let taken = match kind {
            ScopeKind::Workspace => directory.names.workspaces.contains_key(name),
            _ => directory.names.teams.contains_key(name),
        };
        if taken {
            self.error(spanned, entry, format!("duplicate name `{name}`"));
        }
        taken
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "users and service accounts share every field"
    )]
    fn add_user<T>(
        &mut self,
        directory: &mut Directory,
        spanned: &Spanned<T>,
        entry: &str,
        id: &str,
        name: &str,
        full_name: Option<String>,
        email: Option<String>,
        is_service_account: bool,
        active: bool,
        api_keys: &[ApiKeyEntry],
    ) {
        self.uuid(spanned, entry, id);
        if directory.names.users.contains_key(name) {
            self.error(
                spanned,
                entry,
                format!("duplicate username `{name}` (users and service accounts share one namespace)"),
            );
            return;
        }
        let mut key_hashes = Vec::with_capacity(api_keys.len());
        for key in api_keys {
            let key_entry = format!("{entry}: api key `{}`", key.name);
            let Some(digest) = self.sha256(spanned, &key_entry, &key.sha256) else {
                continue;
            };
            if directory
                .api_keys
                .insert(digest, (id.to_owned(), key.revoked))
                .is_some()
            {
                self.error(spanned, &key_entry, "the same key hash is listed twice");
            }
            key_hashes.push(digest);
        }
        let mut attrs = json!({"name": name, "is_service_account": is_service_account, "active": active});
        if let Some(email) = &email {
            attrs["email"] = json!(email);
        }
        self.add_entity(spanned, entry, "User", id, attrs);
        directory.users.insert(
            id.to_owned(),
            Box::new(User {
                named: Named {
                    id: id.to_owned(),
                    name: name.to_owned(),
                },
                uid: crate::model::uid("User", id),
                full_name,
                email,
                is_service_account,
                active,
                teams: Vec::new(),
                api_keys: key_hashes,
            }),
        );
        (directory.names.users).insert(name.to_owned(), id.to_owned());
    }

    /// Checks a custom role and expands its grid into (resource type, action) cells.
    fn custom_role(&mut self, role: &Spanned<RoleEntry>, entry: &str) -> Option<Vec<(String, &'static str)>> {
        let r = &role.value;
        let predefined: Vec<&str> = match r.scope {
            RoleScope::Workspace => WORKSPACE_ROLES.iter().map(|(n, _)| *n).collect(),
            RoleScope::Project => PROJECT_ROLES.iter().map(|(n, _)| *n).collect(),
        };
        let mut ok = true;
        let reserved = ORGANIZATION_ROLES
            .iter()
            .chain(WORKSPACE_ROLES.iter())
            .any(|(n, _)| *n == r.name);
        if reserved || r.name == PROJECT_MEMBERS || r.name.contains('/') || r.name.is_empty() {
            self.error(
                role,
                entry,
                "the name is a predefined role or contains `/`; choose another",
            );
            ok = false;
        }
        if let Some(base) = &r.base
            && !predefined.contains(&base.as_str())
        {
            self.error(
                role,
                entry,
                format!(
                    "base `{base}` is not a predefined {} role (one of {})",
                    scope_word(r.scope),
                    predefined.join(", ")
                ),
            );
            ok = false;
        }
        let mut cells = Vec::new();
        for (type_name, actions) in &r.permissions {
            let types: Vec<ResourceType> = if type_name == "*" {
                RESOURCE_TYPES.to_vec()
            } else {
                match ResourceType::from_wire(type_name) {
                    Some(t) => vec![t],
                    None => {
                        self.error(
                            role,
                            entry,
                            format!("permissions: unknown resource type `{type_name}`"),
                        );
                        ok = false;
                        continue;
                    }
                }
            };
            if r.scope == RoleScope::Project
                && type_name != "*"
                && !types.iter().all(|t| t.project_scoped || *t == PROJECT)
            {
                self.error(
                    role,
                    entry,
                    format!(
                        "permissions: `{type_name}` is a workspace-level type; a project role cannot grant it"
                    ),
                );
                ok = false;
                continue;
            }
            for action in actions {
                match expand_action(action) {
                    Some(expanded) => {
                        for t in &types {
                            if r.scope == RoleScope::Project && !(t.project_scoped || *t == PROJECT) {
                                continue;
                            }
                            for a in &expanded {
                                cells.push((t.wire.to_owned(), *a));
                            }
                        }
                    }
                    None => {
                        self.error(role, entry, format!("permissions: `{type_name}`: unknown action `{action}` (an action, `write` or `*`)"));
                        ok = false;
                    }
                }
            }
        }
        cells.sort();
        cells.dedup();
        ok.then_some(cells)
    }

    /// Resolves one binding and makes its holder a member of the role's group at its scope;
    /// `None` (and an error) when it does not resolve.
    fn bind(
        &mut self,
        directory: &Directory,
        custom: &BTreeMap<String, CheckedRole>,
        binding: &Spanned<BindingEntry>,
        entry: &str,
    ) -> Option<(Holder, BindingScope)> {
        let holder = self.binding_holder(directory, binding, entry)?;
        let scope = self.binding_scope(directory, binding, entry)?;
        let b = &binding.value;
        let (kind, scope_id) = match &scope {
            BindingScope::Organization(id) => (ScopeKind::Organization, id),
            BindingScope::Workspace(id) => (ScopeKind::Workspace, id),
            BindingScope::Project(id) => (ScopeKind::Project, id),
        };
        let member = match &holder {
            Holder::User(id) => ("ZenML::User".to_owned(), id.to_string()),
            Holder::Team(id) => ("ZenML::Team".to_owned(), id.to_string()),
        };
        // Which role.
        let predefined: &[(&str, &str)] = match kind {
            ScopeKind::Organization => &ORGANIZATION_ROLES,
            ScopeKind::Workspace => &WORKSPACE_ROLES,
            ScopeKind::Project => &PROJECT_ROLES,
        };
        if predefined.iter().any(|(name, _)| *name == b.role) {
            self.add_parent(member, role_uid(scope_id, &b.role));
            return Some((holder, scope));
        }
        let Some((role_scope, base, cells)) = custom.get(&b.role) else {
            let names: Vec<&str> = predefined.iter().map(|(n, _)| *n).collect();
            self.error(
                binding,
                entry,
                format!(
                    "unknown role `{}` (predefined {} roles: {}; or a custom role under `roles:`)",
                    b.role,
                    kind_word(kind),
                    names.join(", ")
                ),
            );
            return None;
        };
        let matches = matches!(
            (role_scope, kind),
            (RoleScope::Workspace, ScopeKind::Workspace) | (RoleScope::Project, ScopeKind::Project)
        );
        if !matches {
            self.error(
                binding,
                entry,
                format!(
                    "custom role `{}` is a {} role; bind it to a {}",
                    b.role,
                    scope_word(*role_scope),
                    scope_word(*role_scope)
                ),
            );
            return None;
        }
        let group = role_uid(scope_id, &b.role);
        self.add_group(group.clone());
        if let Some(base) = base {
            self.add_parent(group.clone(), role_uid(scope_id, base));
        }
        if kind == ScopeKind::Project {
            self.add_parent(group.clone(), role_uid(scope_id, PROJECT_MEMBERS));
        }
        for (type_name, action) in cells {
            self.cell_roles
                .entry(permission_id(scope_id, type_name, action))
                .or_default()
                .insert(group.1.clone());
        }
        self.add_parent(member, group);
        Some((holder, scope))
    }

    /// Who a binding names: a user, a service account or a team (exactly one).
    fn binding_holder(
        &mut self,
        directory: &Directory,
        binding: &Spanned<BindingEntry>,
        entry: &str,
    ) -> Option<Holder> {
        let b = &binding.value;
        // (a user?, its id) when found; what was named, for the error otherwise.
        let (found, named) = match (&b.user, &b.team, &b.service_account) {
            (Some(user), None, None) => (
                directory
                    .find_user(user)
                    .filter(|u| !u.is_service_account)
                    .map(|u| (true, u.named.id.as_str())),
                Some(("user", user)),
            ),
            (None, None, Some(account)) => (
                directory
                    .find_user(account)
                    .filter(|u| u.is_service_account)
                    .map(|u| (true, u.named.id.as_str())),
                Some(("service account", account)),
            ),
            (None, Some(team), None) => (
                directory.find_team(team).map(|t| (false, t.named.id.as_str())),
                Some(("team", team)),
            ),
            _ => (None, None),
        };
        let Some((user, id)) = found else {
            let unknown = match named {
                Some((kind, name)) => format!("unknown {kind} `{name}`"),
                None => "name exactly one of `user`, `team` or `service_account`".to_owned(),
            };
            self.error(binding, entry, unknown);
            return None;
        };
        let id = self.shared(id);
        Some(if user { Holder::User(id) } else { Holder::Team(id) })
    }

    /// Where a binding holds its role: the organization, a workspace or a project (exactly
    /// one).
    fn binding_scope(
        &mut self,
        directory: &Directory,
        binding: &Spanned<BindingEntry>,
        entry: &str,
    ) -> Option<BindingScope> {
        let b = &binding.value;
        let problem = match (&b.organization, &b.workspace, &b.project) {
            (Some(org), None, None) => {
                if *org == directory.organization.name || *org == directory.organization.id {
                    return Some(BindingScope::Organization(
                        self.shared(&directory.organization.id),
                    ));
                }
                format!("unknown organization `{org}`")
            }
            (None, Some(ws), None) => match directory.find_workspace(ws) {
                Some(w) => return Some(BindingScope::Workspace(self.shared(&w.named.id))),
                None => format!("unknown workspace `{ws}`"),
            },
            (None, None, Some(Spanned { value: project, .. })) => match directory.find_project(project) {
                Some(p) => return Some(BindingScope::Project(self.shared(&p.named.id))),
                None => {
                    let ambiguous = directory
                        .projects
                        .values()
                        .filter(|p| p.named.name == *project)
                        .count()
                        > 1;
                    let hint = if ambiguous {
                        " (the name is in several workspaces: write `<workspace>/<project>` or the id)"
                    } else {
                        ""
                    };
                    format!("unknown project `{project}`{hint}")
                }
            },
            _ => "name exactly one scope: `organization`, `workspace` or `project`".to_owned(),
        };
        self.error(binding, entry, problem);
        None
    }

    /// Builds every entity, unchecked (see [`Loaded::Zenml`]), without the actions.
    fn unchecked_entities(&mut self) -> Option<Vec<Entity>> {
        let mut built = Vec::with_capacity(self.entities.len());
        let mut uids = Uids::default();
        for (key, (value, _)) in in_key_order(&self.entities) {
            match uids.entity(key, value, self.parents.get(key)) {
                Some(entity) => built.push(entity),
                None => {
                    self.errors.push(LoadError::file(
                        self.path,
                        format!("internal: entity {}::\"{}\" could not be built", key.0, key.1),
                    ));
                    return None;
                }
            }
        }
        Some(built)
    }

    /// Builds and schema-checks every entity, with the schema's actions; errors name the
    /// directory entry that made it.
    fn entities(&mut self, schema: &Schema) -> Option<Vec<Entity>> {
        let mut built = Vec::new();
        for (key, (value, place)) in in_key_order(&self.entities) {
            let parents: Vec<Value> = self
                .parents
                .get(key)
                .into_iter()
                .flatten()
                .map(|p| json!({"type": p.0, "id": p.1}))
                .collect();
            let mut value = value.clone();
            value["uid"] = json!({"type": key.0, "id": key.1});
            value["parents"] = Value::Array(parents);
            match Entity::from_json_value(value, Some(schema)) {
                Ok(entity) => built.push(entity),
                Err(error) => {
                    let message = format!("does not match the schema: {}", error_chain(&error));
                    self.errors.push(match place {
                        Some((line, column, entry)) => {
                            LoadError::at_line(self.path, *line, *column, format!("{entry}: {message}"))
                        }
                        None => LoadError::file(self.path, format!("{}::\"{}\": {message}", key.0, key.1)),
                    });
                }
            }
        }
        // Parents that name no entity (a binding to a group never declared) are bugs here.
        for (child, parents) in in_key_order(&self.parents) {
            if !self.entities.contains_key(child) {
                self.errors.push(LoadError::file(
                    self.path,
                    format!(
                        "internal: parents for undeclared entity {}::\"{}\"",
                        child.0, child.1
                    ),
                ));
            }
            let _ = parents;
        }
        if !self.errors.is_empty() {
            return None;
        }
        let actions = match schema.action_entities() {
            Ok(actions) => actions,
            Err(error) => {
                self.errors
                    .push(LoadError::file(self.path, format!("schema actions: {error}")));
                return None;
            }
        };
        built.extend(actions.iter().cloned());
        Some(built)
    }
}

/// A directory file's YAML, under serde-saphyr's budget with the counts that grow with the
/// file raised to its size: a node, an event or a scalar byte each takes at least a byte of the
/// file (aliases, which could multiply them, keep the library's own caps), so an organization
/// of 100,000 users loads while the work stays linear in what the operator wrote.
fn parse_yaml<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_saphyr::Error> {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_nodes = budget.max_nodes.max(text.len());
    budget.max_events = budget.max_events.max(text.len().saturating_mul(2));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(text.len());
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    serde_saphyr::from_str_with_options(text, options)
}

/// serde-saphyr's message without its own `error: line N column M:` prefix (the caller adds
/// `path:line:column`), on one line.
pub(crate) fn yaml_message(error: &serde_saphyr::Error) -> String {
    let text = error.to_string();
    let first = text.lines().next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let without_place = match first.split_once(": ") {
        Some((place, rest)) if place.starts_with("line ") && place.contains(" column ") => rest,
        _ => first,
    };
    without_place.to_owned()
}

/// The key of a custom-role grid cell in [`Directory::cell_roles`]: `<scope-id>/<type>/<action>`.
pub fn permission_id(scope_id: &str, type_name: &str, action: &str) -> String {
    format!("{scope_id}/{type_name}/{action}")
}

/// `Role::"<scope-id>/<role>"`'s id.
pub fn role_id(scope_id: &str, role: &str) -> String {
    format!("{scope_id}/{role}")
}

fn scope_word(scope: RoleScope) -> &'static str {
    match scope {
        RoleScope::Workspace => "workspace",
        RoleScope::Project => "project",
    }
}

fn kind_word(kind: ScopeKind) -> &'static str {
    match kind {
        ScopeKind::Organization => "organization",
        ScopeKind::Workspace => "workspace",
        ScopeKind::Project => "project",
    }
}
/// Reads `Entities` from Cedar entities JSON, validated against the schema.
fn entities_from_json(path: &Path, text: &str, schema: &Schema) -> Result<Entities, Vec<LoadError>> {
    Entities::from_json_str(text, Some(schema)).map_err(|error| {
        let diagnostic: &dyn miette::Diagnostic = &error;
        let mut message = error_chain(&error);
        if let Some(help) = diagnostic.help() {
            message.push_str(&format!(" (help: {help})"));
        }
        vec![LoadError::file(path, message)]
    })
}

#[cfg(test)]
mod tests {
    use super::parse_yaml;

    /// The budget grows with the file: more nodes than serde-saphyr's default cap (250,000) load
    /// when the file holds them, while aliases that multiply a small file are still refused.
    #[test]
    fn the_yaml_budget_grows_with_the_file_not_with_aliases() {
        let many: String = (0..300_000).map(|n| format!("- {}\n", n % 10)).collect();
        let parsed: Vec<u8> = parse_yaml(&many).expect("300,000 scalars in 1.2 MB");
        assert_eq!(parsed.len(), 300_000);
        let mut bomb = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for level in 1..10 {
            let up = level - 1;
            let refs = vec![format!("*a{up}"); 10].join(", ");
            bomb.push_str(&format!("a{level}: &a{level} [{refs}]\n"));
        }
        let refused = parse_yaml::<serde_json::Value>(&bomb).expect_err("a billion nodes from 600 bytes");
        assert!(refused.to_string().contains("budget"), "{refused}");
    }
}
