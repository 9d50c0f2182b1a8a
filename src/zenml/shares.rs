//! Resource shares: who a single resource is shared with, for which actions.
//!
//! `ShareSet` is the in-memory index the decision path reads; the durable store (`store`) is
//! loaded into it at start and written before it on every change. Replace semantics as in
//! ZenML's `update_resource_membership`: the actions given for a (resource, user-or-team) pair
//! are its complete new set, and an empty set removes the share. Shares belong to the
//! workspace (ZenML server) that made them.

use std::collections::{BTreeSet, HashMap};

use super::resource::Resource;

/// Longest `user_id`, `team_id`, `sharing_user_id` or action name a share request may carry,
/// bytes. ZenML's ids are UUIDs (36 bytes) and its action names are single words; a longer
/// value is refused (400, field named) before it is looked up, stored, logged or echoed.
pub const MAX_SHARE_FIELD_BYTES: usize = 128;
/// Longest resource string a share request may carry, bytes. The longest ZenML writes,
/// `<project uuid>:<type>/<uuid>` or tenant-era `<server uuid>@server:<type>/<uuid>`, are about
/// 120.
pub const MAX_SHARE_RESOURCE_BYTES: usize = 256;
/// Most entries in a share request's `actions` (ZenML has ten actions).
pub const MAX_SHARE_ACTIONS: usize = 32;

/// Who a resource is shared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    /// A user or service account id.
    User(String),
    /// A team id.
    Team(String),
}

/// All shares, by workspace.
#[derive(Debug, Clone, Default)]
pub struct ShareSet {
    workspaces: HashMap<String, WorkspaceShares>,
}

/// One grantee's share of a resource: its actions.
#[derive(Debug, Clone)]
struct Grant {
    grantee: Grantee,
    actions: ShareActions,
}

/// ZenML's actions (`model::ACTIONS`) in name order: bit `i` of a [`ShareActions`] is
/// `ACTION_NAMES[i]`.
const ACTION_NAMES: [&str; 10] = [
    "backup_restore",
    "client",
    "create",
    "delete",
    "promote",
    "prune",
    "read",
    "read_secret_value",
    "share",
    "update",
];

/// A share's actions, as bits over ZenML's ten (a list of strings per share cost ~80 bytes).
/// Other names cannot be asked about and are not kept: the share API refuses them before.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ShareActions(u16);

impl ShareActions {
    /// The known actions among `names`.
    pub fn of<S: AsRef<str>>(names: impl IntoIterator<Item = S>) -> Self {
        let bits = names
            .into_iter()
            .filter_map(|name| ACTION_NAMES.iter().position(|known| *known == name.as_ref()))
            .fold(0u16, |bits, at| bits | (1 << at));
        ShareActions(bits)
    }

    /// Whether `action` is among them.
    pub fn contains(self, action: &str) -> bool {
        ACTION_NAMES
            .iter()
            .position(|known| *known == action)
            .is_some_and(|at| self.0 & (1 << at) != 0)
    }

    /// Whether there are none.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Their names, sorted.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        ACTION_NAMES
            .iter()
            .enumerate()
            .filter(move |(at, _)| self.0 & (1 << at) != 0)
            .map(|(_, name)| *name)
    }
}

// Compact on purpose: a large organization has tens of thousands of shares, most of them one
// grantee with one or two actions (a map per resource and a set per grant cost ~1 KiB a share).
#[derive(Debug, Clone, Default)]
struct WorkspaceShares {
    /// canonical resource string -> its grants, sorted by grantee.
    by_resource: HashMap<Box<str>, Vec<Grant>>,
    /// project id -> grantee -> number of shared resources in that project (implicit membership).
    by_project: HashMap<String, HashMap<Grantee, usize>>,
    /// grantee -> number of shared resources in the workspace (a guest may enter it).
    by_grantee: HashMap<Grantee, usize>,
    /// (project id or "", resource type) -> ids of shared instances (allowed-resource listing).
    by_type: HashMap<(String, String), BTreeSet<String>>,
}

impl ShareSet {
    /// Sets the complete action set of `grantee` on `resource` in `workspace`; an empty set
    /// removes the share. `resource` must name one instance.
    pub fn set(
        &mut self,
        workspace: &str,
        resource: &Resource,
        grantee: Grantee,
        actions: impl IntoIterator<Item = String>,
    ) {
        let Some(id) = &resource.id else {
            return;
        };
        let shares = self.workspaces.entry(workspace.to_owned()).or_default();
        let key = resource.to_string();
        let actions = ShareActions::of(actions);
        let grants = shares.by_resource.entry(key.as_str().into()).or_default();
        let position = grants.binary_search_by(|grant| grant.grantee.cmp(&grantee));
        let existed = position.is_ok();
        match position {
            Ok(at) if actions.is_empty() => {
                grants.remove(at);
            }
            Ok(at) => grants[at].actions = actions,
            Err(_) if actions.is_empty() => {}
            Err(at) => grants.insert(
                at,
                Grant {
                    grantee: grantee.clone(),
                    actions,
                },
            ),
        }
        grants.shrink_to_fit();
        let now_empty = grants.is_empty();
        if now_empty {
            shares.by_resource.remove(key.as_str());
        }
        let type_key = (
            resource.project_id.clone().unwrap_or_default(),
            resource.type_name.clone(),
        );
        if now_empty {
            remove_id(&mut shares.by_type, &type_key, id);
        } else {
            shares.by_type.entry(type_key).or_default().insert(id.clone());
        }
        match (existed, actions.is_empty()) {
            (false, false) => *shares.by_grantee.entry(grantee.clone()).or_default() += 1,
            (true, true) => decrement(&mut shares.by_grantee, &grantee),
            _ => {}
        }
        if let Some(project) = &resource.project_id {
            let counts = shares.by_project.entry(project.clone()).or_default();
            match (existed, actions.is_empty()) {
                (false, false) => *counts.entry(grantee).or_default() += 1,
                (true, true) => decrement(counts, &grantee),
                _ => {}
            }
            if counts.is_empty() {
                shares.by_project.remove(project);
            }
        }
        if shares.by_resource.is_empty() {
            self.workspaces.remove(workspace);
        }
    }

    /// Removes every share of `resource` in `workspace`.
    pub fn purge(&mut self, workspace: &str, resource: &Resource) {
        let Some(shares) = self.workspaces.get_mut(workspace) else {
            return;
        };
        let Some(grants) = shares.by_resource.remove(resource.to_string().as_str()) else {
            return;
        };
        if let Some(id) = &resource.id {
            let type_key = (
                resource.project_id.clone().unwrap_or_default(),
                resource.type_name.clone(),
            );
            remove_id(&mut shares.by_type, &type_key, id);
        }
        for grant in &grants {
            decrement(&mut shares.by_grantee, &grant.grantee);
        }
        if let Some(project) = &resource.project_id
            && let Some(counts) = shares.by_project.get_mut(project)
        {
            for grant in &grants {
                decrement(counts, &grant.grantee);
            }
            if counts.is_empty() {
                shares.by_project.remove(project);
            }
        }
        if shares.by_resource.is_empty() {
            self.workspaces.remove(workspace);
        }
    }

    /// Whether anything in `workspace` is shared (a resource's key need not be written out
    /// otherwise).
    pub fn any_in(&self, workspace: &str) -> bool {
        self.workspaces.contains_key(workspace)
    }

    /// Users and teams `resource_key` (canonical string) is shared with for `action`.
    pub fn shared_with(&self, workspace: &str, resource_key: &str, action: &str) -> (Vec<&str>, Vec<&str>) {
        let mut users = Vec::new();
        let mut teams = Vec::new();
        let grants = self
            .workspaces
            .get(workspace)
            .and_then(|shares| shares.by_resource.get(resource_key));
        for Grant { grantee, actions } in grants.into_iter().flatten() {
            if actions.contains(action) {
                match grantee {
                    Grantee::User(id) => users.push(id.as_str()),
                    Grantee::Team(id) => teams.push(id.as_str()),
                }
            }
        }
        (users, teams)
    }

    /// The grants of `resource_key` (canonical string) in `workspace`, by grantee: (grantee, its
    /// actions).
    pub fn grants(
        &self,
        workspace: &str,
        resource_key: &str,
    ) -> impl Iterator<Item = (&Grantee, ShareActions)> {
        self.workspaces
            .get(workspace)
            .and_then(|shares| shares.by_resource.get(resource_key))
            .into_iter()
            .flatten()
            .map(|grant| (&grant.grantee, grant.actions))
    }

    /// Users and teams that have at least one resource of `project_id` shared with them.
    pub fn project_grantees(&self, workspace: &str, project_id: &str) -> (Vec<&str>, Vec<&str>) {
        let mut users = Vec::new();
        let mut teams = Vec::new();
        let counts = self
            .workspaces
            .get(workspace)
            .and_then(|shares| shares.by_project.get(project_id));
        for grantee in counts.into_iter().flat_map(HashMap::keys) {
            match grantee {
                Grantee::User(id) => users.push(id.as_str()),
                Grantee::Team(id) => teams.push(id.as_str()),
            }
        }
        (users, teams)
    }

    /// Ids of the shared instances of `type_name` (in `project_id`, for project-scoped types).
    pub fn shared_ids(&self, workspace: &str, project_id: Option<&str>, type_name: &str) -> Vec<&str> {
        let key = (project_id.unwrap_or_default().to_owned(), type_name.to_owned());
        self.workspaces
            .get(workspace)
            .and_then(|shares| shares.by_type.get(&key))
            .map(|ids| ids.iter().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Projects of `workspace` with at least one shared resource.
    pub fn shared_projects(&self, workspace: &str) -> Vec<&str> {
        self.workspaces
            .get(workspace)
            .map(|shares| shares.by_project.keys().map(String::as_str).collect())
            .unwrap_or_default()
    }

    /// Whether `grantee` itself (not through a team) has at least one share in `workspace`.
    pub fn has_any(&self, workspace: &str, grantee: &Grantee) -> bool {
        self.workspaces
            .get(workspace)
            .is_some_and(|shares| shares.by_grantee.contains_key(grantee))
    }

    /// Every share: (workspace, canonical resource string, grantee, its actions).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, &Grantee, ShareActions)> {
        self.workspaces.iter().flat_map(|(workspace, shares)| {
            shares.by_resource.iter().flat_map(move |(resource, grants)| {
                grants
                    .iter()
                    .map(move |grant| (workspace.as_str(), &**resource, &grant.grantee, grant.actions))
            })
        })
    }

    /// Number of (resource, grantee) shares.
    pub fn len(&self) -> usize {
        self.workspaces
            .values()
            .flat_map(|shares| shares.by_resource.values())
            .map(Vec::len)
            .sum()
    }

    /// True when nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.workspaces.is_empty()
    }
}

fn remove_id(by_type: &mut HashMap<(String, String), BTreeSet<String>>, key: &(String, String), id: &str) {
    if let Some(ids) = by_type.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            by_type.remove(key);
        }
    }
}

fn decrement(counts: &mut HashMap<Grantee, usize>, grantee: &Grantee) {
    if let Some(count) = counts.get_mut(grantee) {
        *count -= 1;
        if *count == 0 {
            counts.remove(grantee);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
    const OTHER: &str = "d5320975-d92d-4b35-9413-9b848998b5bf";
    const P: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
    const R: &str = "11111111-1111-4111-8111-111111111111";

    fn pipeline() -> Resource {
        Resource::parse(&format!("{P}:pipeline/{R}")).unwrap()
    }

    #[test]
    fn share_actions_are_zenmls_by_name() {
        let mut sorted = crate::model::ACTIONS;
        sorted.sort_unstable();
        assert_eq!(ACTION_NAMES, sorted);
        let actions = ShareActions::of(["update", "read", "nonsense", "read"]);
        assert_eq!(actions.names().collect::<Vec<_>>(), ["read", "update"]);
        assert!(actions.contains("read") && !actions.contains("delete") && !actions.contains("nonsense"));
        assert!(ShareActions::of(["nonsense"]).is_empty());
    }

    #[test]
    fn set_replaces_and_empty_removes() {
        let mut shares = ShareSet::default();
        let key = pipeline().to_string();
        let user = || Grantee::User("u".into());
        shares.set(W, &pipeline(), user(), ["read".into(), "update".into()]);
        assert_eq!(shares.shared_with(W, &key, "update"), (vec!["u"], vec![]));
        assert_eq!(
            shares.shared_with(OTHER, &key, "update"),
            (vec![], vec![]),
            "workspace-scoped"
        );
        shares.set(W, &pipeline(), user(), ["read".into()]);
        assert_eq!(shares.shared_with(W, &key, "update"), (vec![], vec![]));
        assert_eq!(shares.shared_with(W, &key, "read"), (vec!["u"], vec![]));
        assert_eq!(shares.project_grantees(W, P), (vec!["u"], vec![]));
        assert_eq!(shares.shared_ids(W, Some(P), "pipeline"), vec![R]);
        assert_eq!(shares.shared_projects(W), vec![P]);
        assert!(shares.has_any(W, &user()) && !shares.has_any(OTHER, &user()));
        let all: Vec<_> = shares.iter().map(|(w, r, g, _)| (w, r, g.clone())).collect();
        assert_eq!(all, [(W, key.as_str(), user())]);
        shares.set(W, &pipeline(), user(), Vec::<String>::new());
        assert!(!shares.has_any(W, &user()));
        assert!(shares.is_empty());
        assert_eq!(shares.project_grantees(W, P), (vec![], vec![]));
        assert!(shares.shared_ids(W, Some(P), "pipeline").is_empty());
    }

    #[test]
    fn purge_removes_every_grantee_and_index_entry() {
        let mut shares = ShareSet::default();
        shares.set(W, &pipeline(), Grantee::User("u".into()), ["read".into()]);
        shares.set(W, &pipeline(), Grantee::Team("t".into()), ["read".into()]);
        assert_eq!(shares.len(), 2);
        shares.purge(W, &pipeline());
        assert!(shares.is_empty());
        assert!(!shares.has_any(W, &Grantee::Team("t".into())));
        assert_eq!(shares.project_grantees(W, P), (vec![], vec![]));
        assert!(shares.shared_ids(W, Some(P), "pipeline").is_empty());
    }

    #[test]
    fn type_level_resources_cannot_be_shared() {
        let mut shares = ShareSet::default();
        let type_level = Resource::parse(&format!("{P}:pipeline")).unwrap();
        shares.set(W, &type_level, Grantee::User("u".into()), ["read".into()]);
        assert!(shares.is_empty());
    }
}
