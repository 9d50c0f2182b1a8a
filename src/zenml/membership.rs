//! Who is a member of a workspace or a project (ZenML Pro's rule), computed once per snapshot.
//!
//! A user, service account or team is a **member** of a workspace when a role binding reaches
//! it: an organization `admin` or `viewer` binding, any binding at the workspace, or any binding
//! at one of its projects; of a project when an organization `admin` or `viewer` binding, a
//! binding at its workspace, or a binding at the project reaches it. Predefined and custom
//! roles count alike. A user's or service account's membership includes their teams' bindings;
//! a team's is its own. Organization `manager`, `member` and `billing_admin` reach no
//! workspace ("members can only see workspaces they've been explicitly granted access to").
//!
//! Two rules read it: who may enter a workspace ([`Memberships::admit`]: a member, or a guest
//! with a share there) and whose shares a removal takes away (`store::Shares::settle_memberships`:
//! the remembered [`Reach`] of each grantee against the current one).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::shares::{Grantee, ShareSet};
use crate::directory::{BindingScope, Directory, Holder};

/// Organization roles whose holders are members of every workspace and project.
pub const REACHING_ORGANIZATION_ROLES: [&str; 2] = ["admin", "viewer"];

/// Where one grantee's bindings reach: what makes it a member of which places.
///
/// Compact on purpose: every user and team has one, and most reach a few places. The ids are
/// shared (`Arc<str>`, one per place in a [`Memberships`]) in sorted vectors; B-trees of owned
/// strings cost ~1.5 KB a user (a leaf of eleven slots per set, a string per id).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reach {
    /// An organization admin or viewer binding: a member of every workspace and project.
    pub organization: bool,
    /// Workspaces with a binding at them.
    pub workspaces: Places<()>,
    /// Projects with a binding at them -> the project's workspace.
    pub projects: Places<Arc<str>>,
}

/// Place ids, sorted and distinct, each with a value (`()` for a set): a small sorted vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Places<V>(Vec<(Arc<str>, V)>);

impl<V> Default for Places<V> {
    fn default() -> Self {
        Places(Vec::new())
    }
}

impl<V: Clone> Places<V> {
    /// Adds `id` with `value`; an id already present keeps its value.
    pub fn insert(&mut self, id: impl Into<Arc<str>> + AsRef<str>, value: V) {
        if let Err(at) = self.find(id.as_ref()) {
            self.0.insert(at, (id.into(), value));
        }
    }

    /// Whether `id` is among them.
    pub fn contains(&self, id: &str) -> bool {
        self.find(id).is_ok()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ids with their values, in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &V)> {
        self.0.iter().map(|(id, value)| (&**id, value))
    }

    /// The values, in id order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, value)| value)
    }

    fn find(&self, id: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(held, _)| (**held).cmp(id))
    }

    /// Adds every place of `other` (shared ids, no copy of a string).
    fn union(&mut self, other: &Places<V>) {
        if other.0.iter().all(|(id, _)| self.contains(id)) {
            return;
        }
        self.0.extend(other.0.iter().cloned());
        self.settle();
    }

    /// Adds `id` with `value` without keeping the order: [`Places::settle`] (or a union, which
    /// settles) before any other use (many additions then cost one sort, not a shift each).
    pub(crate) fn push(&mut self, id: impl Into<Arc<str>>, value: V) {
        self.0.push((id.into(), value));
    }

    /// Sorted and distinct again, each id with its first value.
    fn settle(&mut self) {
        self.0.sort_by(|a, b| a.0.cmp(&b.0));
        self.0.dedup_by(|a, b| a.0 == b.0);
        self.0.shrink_to_fit();
    }
}

impl Places<()> {
    /// The ids, in order.
    pub fn ids(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|(id, ())| &**id)
    }
}

impl Reach {
    /// The reach of an organization binding (or not), bindings at `workspaces`, and bindings at
    /// `projects` given as (project, its workspace).
    pub fn of(organization: bool, workspaces: &[&str], projects: &[(&str, &str)]) -> Self {
        let mut reach = Reach {
            organization,
            ..Reach::default()
        };
        for workspace in workspaces {
            reach.workspaces.insert(*workspace, ());
        }
        for (project, workspace) in projects {
            reach.projects.insert(*project, Arc::from(*workspace));
        }
        reach
    }

    /// Whether nothing is reached.
    pub fn is_empty(&self) -> bool {
        !self.organization && self.workspaces.is_empty() && self.projects.is_empty()
    }

    /// Whether this reach makes its holder a member of `workspace`.
    pub fn member_of_workspace(&self, workspace: &str) -> bool {
        self.organization
            || self.workspaces.contains(workspace)
            || self.projects.values().any(|w| **w == *workspace)
    }

    /// Whether this reach makes its holder a member of `project` (in `workspace`).
    pub fn member_of_project(&self, project: &str, workspace: &str) -> bool {
        self.organization || self.projects.contains(project) || self.workspaces.contains(workspace)
    }

    /// Whether a grantee whose reach was `self` and is now `now` lost the membership that holds
    /// a share on a resource in `workspace` (and `project`, for a project-scoped one): they are
    /// no longer a member of the workspace, or of the project.
    pub fn lost(&self, now: &Reach, workspace: &str, project: Option<&str>) -> bool {
        let lost_workspace = self.member_of_workspace(workspace) && !now.member_of_workspace(workspace);
        let lost_project = project.is_some_and(|project| {
            self.member_of_project(project, workspace) && !now.member_of_project(project, workspace)
        });
        lost_workspace || lost_project
    }

    fn union(&mut self, other: &Reach) {
        self.organization |= other.organization;
        self.workspaces.union(&other.workspaces);
        self.projects.union(&other.projects);
    }
}

/// Every grantee's membership under one directory: users and service accounts (their teams'
/// bindings included) and teams (their own). Grantees that reach nothing are absent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Memberships {
    by_grantee: BTreeMap<Grantee, Reach>,
}

/// Why a user may not enter a workspace (a 403 to the ZenML server).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{user}` has no role in workspace `{workspace}` and nothing is shared with them there")]
pub struct NotAMember {
    /// The user's or service account's name.
    pub user: String,
    /// The workspace's name.
    pub workspace: String,
}

/// How a user was admitted to a workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// A role binding reaches the workspace.
    Member,
    /// Not a member, but something in the workspace is shared with them or one of their teams.
    Guest,
}

impl Admission {
    /// A short word for logs.
    pub fn label(self) -> &'static str {
        match self {
            Admission::Member => "member",
            Admission::Guest => "guest",
        }
    }
}

// === impl Memberships ===

impl Memberships {
    /// The memberships the role bindings of `directory` make.
    pub fn of(directory: &Directory) -> Self {
        type FxHashMap<K, V> = HashMap<K, V, rustc_hash::FxBuildHasher>;
        // Each holder's own bindings, hashed by id (a B-tree of grantees compares ids as
        // strings at every step, and a lookup by grantee would allocate one).
        let mut users: FxHashMap<&str, Reach> = FxHashMap::default();
        let mut teams: FxHashMap<&str, Reach> = FxHashMap::default();
        // One shared string per place id: the bindings' ids are shared already; the projects'
        // workspace ids once each here.
        let mut workspace_ids: FxHashMap<&str, Arc<str>> = FxHashMap::default();
        for binding in &directory.role_bindings {
            let reach = match &binding.holder {
                Holder::User(id) => users.entry(id).or_default(),
                Holder::Team(id) => teams.entry(id).or_default(),
            };
            match &binding.scope {
                BindingScope::Organization(_) => {
                    if REACHING_ORGANIZATION_ROLES.contains(&&*binding.role) {
                        reach.organization = true;
                    }
                }
                BindingScope::Workspace(id) => reach.workspaces.push(id.clone(), ()),
                BindingScope::Project(id) => {
                    if let Some(project) = directory.projects.get(&**id) {
                        let workspace = workspace_ids
                            .entry(&project.workspace_id)
                            .or_insert_with(|| project.workspace_id.as_str().into());
                        reach.projects.push(id.clone(), workspace.clone());
                    }
                }
            }
        }
        // Each holder's places sorted once (a holder bound at thousands of places would make
        // sorted insertions quadratic).
        for reach in users.values_mut().chain(teams.values_mut()) {
            reach.workspaces.settle();
            reach.projects.settle();
        }
        // A user's membership: their own bindings and their teams'.
        for user in directory.users.values() {
            for team in &user.teams {
                if let Some(reach) = teams.get(team.as_str()) {
                    users.entry(user.named.id.as_str()).or_default().union(reach);
                }
            }
        }
        let by_grantee = users
            .into_iter()
            .map(|(id, reach)| (Grantee::User(id.to_owned()), reach))
            .chain(
                teams
                    .into_iter()
                    .map(|(id, reach)| (Grantee::Team(id.to_owned()), reach)),
            )
            .collect();
        Self::new(by_grantee)
    }

    fn new(mut by_grantee: BTreeMap<Grantee, Reach>) -> Self {
        by_grantee.retain(|_, reach| !reach.is_empty());
        Self { by_grantee }
    }

    /// Memberships from stored rows (what a share store remembers). A reach's places may come
    /// unsorted ([`Places::push`], rows in any order): the union sorts them.
    pub fn from_reaches(reaches: impl IntoIterator<Item = (Grantee, Reach)>) -> Self {
        let mut by_grantee: BTreeMap<Grantee, Reach> = BTreeMap::new();
        for (grantee, reach) in reaches {
            by_grantee.entry(grantee).or_default().union(&reach);
        }
        Self::new(by_grantee)
    }

    /// Where `grantee`'s bindings reach (empty: a member of nothing).
    pub fn reach(&self, grantee: &Grantee) -> Option<&Reach> {
        self.by_grantee.get(grantee)
    }

    /// Every grantee with a membership, and its reach.
    pub fn iter(&self) -> impl Iterator<Item = (&Grantee, &Reach)> {
        self.by_grantee.iter()
    }

    /// Whether `user_id` (a user or service account, their teams included) is a member of
    /// `workspace_id`.
    pub fn is_member(&self, user_id: &str, workspace_id: &str) -> bool {
        let grantee = Grantee::User(user_id.to_owned());
        self.by_grantee
            .get(&grantee)
            .is_some_and(|reach| reach.member_of_workspace(workspace_id))
    }

    /// Whether `user_id` may enter `workspace_id` (ZenML's user-info call): as a member, as a
    /// guest (a share there to them or one of their teams), or not at all (why).
    pub fn admit(
        &self,
        directory: &Directory,
        shares: &ShareSet,
        user_id: &str,
        workspace_id: &str,
    ) -> Result<Admission, NotAMember> {
        if self.is_member(user_id, workspace_id) {
            return Ok(Admission::Member);
        }
        let user = directory.users.get(user_id);
        let teams = user.map(|u| u.teams.as_slice()).unwrap_or_default();
        let guest = shares.has_any(workspace_id, &Grantee::User(user_id.to_owned()))
            || teams
                .iter()
                .any(|team| shares.has_any(workspace_id, &Grantee::Team(team.clone())));
        if guest {
            return Ok(Admission::Guest);
        }
        Err(NotAMember {
            user: user.map_or_else(|| user_id.to_owned(), |u| u.named.name.clone()),
            workspace: directory
                .workspaces
                .get(workspace_id)
                .map_or_else(|| workspace_id.to_owned(), |w| w.named.name.clone()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: &str = "w";
    const P: &str = "p";

    #[test]
    fn places_are_sorted_distinct_and_keep_their_first_value() {
        let mut places: Places<Arc<str>> = Places::default();
        for (id, workspace) in [("p3", "w1"), ("p1", "w1"), ("p2", "w2"), ("p1", "w9")] {
            places.insert(id, Arc::from(workspace));
        }
        let mut other: Places<Arc<str>> = Places::default();
        other.insert("p0", Arc::from("w3"));
        other.insert("p2", Arc::from("w8"));
        places.union(&other);
        let held: Vec<(&str, &str)> = places.iter().map(|(id, w)| (id, &**w)).collect();
        assert_eq!(held, [("p0", "w3"), ("p1", "w1"), ("p2", "w2"), ("p3", "w1")]);
        assert!(places.contains("p0") && !places.contains("p4"));
    }

    #[test]
    fn a_holders_places_are_sorted_and_distinct_whatever_the_bindings_order() {
        use crate::directory::{Named, Place, Project, RoleBinding};
        let mut directory = Directory::default();
        for (project, workspace) in [("p1", "w1"), ("p2", "w2"), ("p3", "w1")] {
            directory.projects.insert(
                project.into(),
                Project {
                    named: Named {
                        id: project.into(),
                        name: project.into(),
                    },
                    uid: crate::model::uid("Project", project),
                    workspace_id: workspace.into(),
                },
            );
        }
        let place = Place {
            path: std::path::Path::new("directory.yaml").into(),
            line: 1,
            column: 1,
            index: 0,
        };
        // Out of order and twice: w3, w1, w3; p3, p1, p3, and p2 held through no binding.
        let scopes = [
            BindingScope::Workspace("w3".into()),
            BindingScope::Project("p3".into()),
            BindingScope::Workspace("w1".into()),
            BindingScope::Project("p1".into()),
            BindingScope::Workspace("w3".into()),
            BindingScope::Project("p3".into()),
        ];
        for scope in scopes {
            directory.role_bindings.push(RoleBinding {
                place: place.clone(),
                holder: Holder::Team("t".into()),
                scope,
                role: "developer".into(),
            });
        }
        let memberships = Memberships::of(&directory);
        let reach = memberships.reach(&Grantee::Team("t".into())).unwrap();
        assert_eq!(reach.workspaces.ids().collect::<Vec<_>>(), ["w1", "w3"]);
        let projects: Vec<(&str, &str)> = reach.projects.iter().map(|(p, w)| (p, &**w)).collect();
        assert_eq!(projects, [("p1", "w1"), ("p3", "w1")]);
        assert!(reach.member_of_project("p1", "w9") && reach.member_of_workspace("w3"));
        assert!(!reach.member_of_project("p2", "w2") && !reach.member_of_workspace("w2"));
    }

    #[test]
    fn a_project_binding_makes_a_member_of_its_workspace_and_a_workspace_binding_of_its_projects() {
        let project = Reach::of(false, &[], &[(P, W)]);
        assert!(project.member_of_workspace(W));
        assert!(project.member_of_project(P, W));
        assert!(!project.member_of_project("other", W));
        let workspace = Reach::of(false, &[W], &[]);
        assert!(workspace.member_of_project(P, W));
        assert!(!workspace.member_of_workspace("other"));
        let organization = Reach::of(true, &[], &[]);
        assert!(organization.member_of_workspace("any") && organization.member_of_project("any", "w2"));
    }

    #[test]
    fn lost_is_a_membership_that_held_the_share_and_is_gone() {
        let none = Reach::default();
        let workspace = Reach::of(false, &[W], &[]);
        let project = Reach::of(false, &[], &[(P, W)]);
        let other_project = Reach::of(false, &[], &[("q", W)]);
        // (before, after, resource's project, lost)
        let table: [(&Reach, &Reach, Option<&str>, bool); 8] = [
            (&workspace, &none, None, true),
            (&workspace, &none, Some(P), true),
            (&workspace, &project, Some(P), false),
            (&workspace, &project, None, false),
            (&project, &other_project, Some(P), true),
            (&project, &other_project, None, false),
            (&none, &none, Some(P), false),
            (&none, &workspace, None, false),
        ];
        for (index, (before, after, project, lost)) in table.into_iter().enumerate() {
            assert_eq!(before.lost(after, W, project), lost, "row {index}");
        }
    }
}
