//! Resource shares: who a single resource is shared with, for which actions.
//!
//! `ShareSet` is the in-memory index the decision path reads; the durable store (`store`) is
//! loaded into it at start and written before it on every change. Replace semantics as in
//! ZenML's `update_resource_membership`: the actions given for a (resource, user-or-team) pair
//! are its complete new set, and an empty set removes the share. Shares belong to the
//! workspace (ZenML server) that made them.

use std::borrow::Borrow;
use std::collections::{BTreeSet, HashMap};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

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
    who: Holder,
    actions: ShareActions,
}

/// A grantee as the set holds it: its id one `Arc<str>` shared by every share and count of it
/// in a workspace (50,000 shares of 11,000 grantees held 50,000 copies of their ids). Ordered,
/// hashed and compared as the [`Grantee`] it stands for (`Who`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Holder {
    User(Arc<str>),
    Team(Arc<str>),
}

/// A grantee, held ([`Holder`]) or asked about ([`Grantee`]): maps keyed by holders are looked up
/// with a borrowed grantee, no id copied.
trait Who {
    /// (a team, the id).
    fn parts(&self) -> (bool, &str);
}

impl Who for Holder {
    fn parts(&self) -> (bool, &str) {
        match self {
            Holder::User(id) => (false, id),
            Holder::Team(id) => (true, id),
        }
    }
}

impl Who for Grantee {
    fn parts(&self) -> (bool, &str) {
        match self {
            Grantee::User(id) => (false, id),
            Grantee::Team(id) => (true, id),
        }
    }
}

impl Hash for dyn Who + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state);
    }
}

impl PartialEq for dyn Who + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn Who + '_ {}

// As its borrowed form hashes: a map keyed by holders finds them by `&dyn Who`.
impl Hash for Holder {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self as &dyn Who).hash(state);
    }
}

impl<'a> Borrow<dyn Who + 'a> for Holder {
    fn borrow(&self) -> &(dyn Who + 'a) {
        self
    }
}

impl Holder {
    fn of(grantee: &Grantee) -> Holder {
        match grantee {
            Grantee::User(id) => Holder::User(id.as_str().into()),
            Grantee::Team(id) => Holder::Team(id.as_str().into()),
        }
    }

    fn grantee(&self) -> Grantee {
        match self {
            Holder::User(id) => Grantee::User(id.to_string()),
            Holder::Team(id) => Grantee::Team(id.to_string()),
        }
    }
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
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
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
// A resource's key is one `Arc<str>`, in `by_resource` and `by_type` alike, and a grantee's id
// one `Arc<str>` per workspace (the key of `by_grantee`, shared by its grants and counts).
// Sharded: every write makes a new `ShareSet` from the serving one, which then copies one shard
// of each map, not every share (a copy of 50,000 shares took ~10 ms of every write).
#[derive(Debug, Clone, Default)]
struct WorkspaceShares {
    /// canonical resource string -> its grants, sorted by grantee.
    by_resource: Sharded<Arc<str>, Vec<Grant>>,
    /// project id -> grantee -> number of shared resources in that project (implicit membership).
    by_project: Sharded<String, HashMap<Holder, usize>>,
    /// grantee -> number of shared resources in the workspace (a guest may enter it).
    by_grantee: Sharded<Holder, usize>,
    /// (project id or "", resource type) -> the canonical strings of its shared instances, whose
    /// ids end them (allowed-resource listing; one type and project: ordered as their ids).
    by_type: Sharded<(String, String), BTreeSet<Arc<str>>>,
}

/// Shards of a map, each shared until written: a clone copies [`SHARDS`] pointers, and a write
/// copies the one shard it changes, if another clone still holds it.
#[derive(Debug, Clone)]
struct Sharded<K, V> {
    /// Empty until the first insertion, then [`SHARDS`] maps.
    shards: Vec<Arc<HashMap<K, V>>>,
}

/// Shards per map: a write copies about 1/64 of the map's entries.
const SHARDS: usize = 64;

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded { shards: Vec::new() }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> Sharded<K, V> {
    /// The shard of a key (hashed as its borrowed form, as `HashMap` hashes it).
    fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
        (rustc_hash::FxBuildHasher.hash_one(key) as usize) % SHARDS
    }

    fn get<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        self.shards.get(Self::shard_of(key))?.get(key)
    }

    /// The stored key equal to `key` (to share it).
    fn key_of<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
    {
        Some(self.shards.get(Self::shard_of(key))?.get_key_value(key)?.0)
    }

    fn contains_key<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
    {
        self.get(key).is_some()
    }

    /// The value of `key`, if any, to change (its shard copied if shared).
    fn get_mut<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
    {
        if !self.contains_key(key) {
            return None;
        }
        Arc::make_mut(&mut self.shards[Self::shard_of(key)]).get_mut(key)
    }

    /// The value of `key`, inserted as `V::default()` if absent.
    fn entry_or_default(&mut self, key: K) -> &mut V
    where
        V: Default,
    {
        if self.shards.is_empty() {
            self.shards.resize_with(SHARDS, Default::default);
        }
        let at = Self::shard_of(key.borrow());
        Arc::make_mut(&mut self.shards[at]).entry(key).or_default()
    }

    fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
    {
        if !self.contains_key(key) {
            return None;
        }
        Arc::make_mut(&mut self.shards[Self::shard_of(key)]).remove(key)
    }

    fn is_empty(&self) -> bool {
        self.shards.iter().all(|shard| shard.is_empty())
    }

    fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.iter().map(|(key, _)| key)
    }

    fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }
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
        let written = resource.to_string();
        let actions = ShareActions::of(actions);
        // The ids already held, shared.
        let key: Arc<str> = match shares.by_resource.key_of(written.as_str()) {
            Some(key) => key.clone(),
            None => written.as_str().into(),
        };
        let who = match shares.by_grantee.key_of(&grantee as &dyn Who) {
            Some(who) => who.clone(),
            None => Holder::of(&grantee),
        };
        let grants = shares.by_resource.entry_or_default(key.clone());
        let position = grants.binary_search_by(|grant| grant.who.cmp(&who));
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
                    who: who.clone(),
                    actions,
                },
            ),
        }
        grants.shrink_to_fit();
        let now_empty = grants.is_empty();
        if now_empty {
            shares.by_resource.remove(&*key);
        }
        debug_assert!(key.ends_with(id.as_str()), "an instance's key ends with its id");
        let type_key = (
            resource.project_id.clone().unwrap_or_default(),
            resource.type_name.clone(),
        );
        if now_empty {
            remove_key(&mut shares.by_type, &type_key, &key);
        } else {
            shares.by_type.entry_or_default(type_key).insert(key);
        }
        match (existed, actions.is_empty()) {
            (false, false) => *shares.by_grantee.entry_or_default(who.clone()) += 1,
            (true, true) => decrement_sharded(&mut shares.by_grantee, &who),
            _ => {}
        }
        if let Some(project) = &resource.project_id {
            let counts = shares.by_project.entry_or_default(project.clone());
            match (existed, actions.is_empty()) {
                (false, false) => *counts.entry(who).or_default() += 1,
                (true, true) => decrement(counts, &who),
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
        let key = resource.to_string();
        let Some(grants) = shares.by_resource.remove(key.as_str()) else {
            return;
        };
        if resource.id.is_some() {
            let type_key = (
                resource.project_id.clone().unwrap_or_default(),
                resource.type_name.clone(),
            );
            remove_key(&mut shares.by_type, &type_key, &key);
        }
        for grant in &grants {
            decrement_sharded(&mut shares.by_grantee, &grant.who);
        }
        if let Some(project) = &resource.project_id
            && let Some(counts) = shares.by_project.get_mut(project)
        {
            for grant in &grants {
                decrement(counts, &grant.who);
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
        for Grant { who, actions } in grants.into_iter().flatten() {
            if actions.contains(action) {
                match who {
                    Holder::User(id) => users.push(&**id),
                    Holder::Team(id) => teams.push(&**id),
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
    ) -> impl Iterator<Item = (Grantee, ShareActions)> {
        self.workspaces
            .get(workspace)
            .and_then(|shares| shares.by_resource.get(resource_key))
            .into_iter()
            .flatten()
            .map(|grant| (grant.who.grantee(), grant.actions))
    }

    /// Users and teams that have at least one resource of `project_id` shared with them.
    pub fn project_grantees(&self, workspace: &str, project_id: &str) -> (Vec<&str>, Vec<&str>) {
        let mut users = Vec::new();
        let mut teams = Vec::new();
        let counts = self
            .workspaces
            .get(workspace)
            .and_then(|shares| shares.by_project.get(project_id));
        for who in counts.into_iter().flat_map(HashMap::keys) {
            match who {
                Holder::User(id) => users.push(&**id),
                Holder::Team(id) => teams.push(&**id),
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
            .map(|keys| keys.iter().map(|key| id_of(key)).collect())
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
            .is_some_and(|shares| shares.by_grantee.contains_key(grantee as &dyn Who))
    }

    /// Every share: (workspace, canonical resource string, grantee, its actions).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str, Grantee, ShareActions)> {
        self.workspaces.iter().flat_map(|(workspace, shares)| {
            shares.by_resource.iter().flat_map(move |(resource, grants)| {
                grants.iter().map(move |grant| {
                    (
                        workspace.as_str(),
                        &**resource,
                        grant.who.grantee(),
                        grant.actions,
                    )
                })
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

/// The id that ends an instance's canonical string (`[<project>:]<type>/<id>`; ids are UUIDs).
fn id_of(key: &str) -> &str {
    key.rsplit_once('/').map_or(key, |(_, id)| id)
}

fn remove_key(
    by_type: &mut Sharded<(String, String), BTreeSet<Arc<str>>>,
    type_key: &(String, String),
    key: &str,
) {
    if let Some(keys) = by_type.get_mut(type_key) {
        keys.remove(key);
        if keys.is_empty() {
            by_type.remove(type_key);
        }
    }
}

fn decrement(counts: &mut HashMap<Holder, usize>, grantee: &Holder) {
    if one_fewer(counts.get_mut(grantee)) {
        counts.remove(grantee);
    }
}

/// [`decrement`] of a workspace's counts.
fn decrement_sharded(counts: &mut Sharded<Holder, usize>, grantee: &Holder) {
    if one_fewer(counts.get_mut(grantee)) {
        counts.remove(grantee);
    }
}

/// Counts one fewer; whether none is left (the caller then removes the count).
fn one_fewer(count: Option<&mut usize>) -> bool {
    count.is_some_and(|count| {
        *count -= 1;
        *count == 0
    })
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
        let all: Vec<_> = shares.iter().map(|(w, r, g, _)| (w, r, g)).collect();
        assert_eq!(all, [(W, key.as_str(), user())]);
        shares.set(W, &pipeline(), user(), Vec::<String>::new());
        assert!(!shares.has_any(W, &user()));
        assert!(shares.is_empty());
        assert_eq!(shares.project_grantees(W, P), (vec![], vec![]));
        assert!(shares.shared_ids(W, Some(P), "pipeline").is_empty());
    }

    /// Every share of `shares` as (resource, grantee, actions), sorted.
    fn listed(shares: &ShareSet) -> Vec<(String, Grantee, Vec<&'static str>)> {
        let mut all: Vec<_> = shares
            .iter()
            .map(|(_, resource, grantee, actions)| (resource.to_owned(), grantee, actions.names().collect()))
            .collect();
        all.sort();
        all
    }

    #[test]
    fn a_copy_keeps_its_shares_while_the_other_is_written() {
        let resource =
            |i: usize| Resource::parse(&format!("{P}:pipeline/11111111-1111-4111-8111-{i:012}")).unwrap();
        let mut before = ShareSet::default();
        for i in 0..200 {
            before.set(
                W,
                &resource(i),
                Grantee::User(format!("u{}", i % 7)),
                ["read".into()],
            );
        }
        let listed_before = listed(&before);
        let mut after = before.clone();
        after.set(W, &resource(3), Grantee::User("u3".into()), Vec::<String>::new());
        after.set(W, &resource(500), Grantee::Team("t".into()), ["update".into()]);
        after.purge(W, &resource(10));
        // The copy written changed; the one it was made from did not, in every index.
        assert_eq!(listed(&before), listed_before);
        assert_eq!(before.len(), 200);
        assert_eq!(after.len(), 199);
        assert!(
            !before.has_any(W, &Grantee::Team("t".into())) && after.has_any(W, &Grantee::Team("t".into()))
        );
        assert_eq!(before.shared_ids(W, Some(P), "pipeline").len(), 200);
        assert_eq!(after.shared_ids(W, Some(P), "pipeline").len(), 199);
        assert_eq!(before.project_grantees(W, P).1, Vec::<&str>::new());
        assert_eq!(after.project_grantees(W, P).1, vec!["t"]);
        // And writes to the original leave the copy alone.
        before.purge(W, &resource(0));
        assert_eq!(after.len(), 199);
        assert_eq!(
            after.shared_with(W, &resource(0).to_string(), "read"),
            (vec!["u0"], vec![])
        );
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
