//! Resource shares: who a single resource is shared with, for which actions.
//!
//! `ShareSet` is the in-memory index the decision path reads; the durable store (ZenML API
//! issue) loads into it. Replace semantics as in ZenML's `update_resource_membership`: the
//! actions given for a (resource, user-or-team) pair are its complete new set.

use std::collections::{BTreeSet, HashMap};

use super::resource::Resource;

/// Who a resource is shared with.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Grantee {
    /// A user or service account id.
    User(String),
    /// A team id.
    Team(String),
}

/// All shares, indexed by canonical resource string.
#[derive(Debug, Clone, Default)]
pub struct ShareSet {
    by_resource: HashMap<String, HashMap<Grantee, BTreeSet<String>>>,
    /// project id -> grantee -> number of shared resources in that project (implicit membership).
    by_project: HashMap<String, HashMap<Grantee, usize>>,
}

impl ShareSet {
    /// Sets the complete action set of `grantee` on `resource`; an empty set removes the share.
    pub fn set(&mut self, resource: &Resource, grantee: Grantee, actions: impl IntoIterator<Item = String>) {
        let key = resource.to_string();
        let actions: BTreeSet<String> = actions.into_iter().collect();
        let grants = self.by_resource.entry(key.clone()).or_default();
        let existed = grants.contains_key(&grantee);
        if actions.is_empty() {
            grants.remove(&grantee);
        } else {
            grants.insert(grantee.clone(), actions.clone());
        }
        if grants.is_empty() {
            self.by_resource.remove(&key);
        }
        if let Some(project) = &resource.project_id {
            let counts = self.by_project.entry(project.clone()).or_default();
            match (existed, actions.is_empty()) {
                (false, false) => *counts.entry(grantee).or_default() += 1,
                (true, true) => decrement(counts, &grantee),
                _ => {}
            }
            if counts.is_empty() {
                self.by_project.remove(project);
            }
        }
    }

    /// Removes every share of `resource`.
    pub fn purge(&mut self, resource: &Resource) {
        let Some(grants) = self.by_resource.remove(&resource.to_string()) else {
            return;
        };
        if let Some(project) = &resource.project_id
            && let Some(counts) = self.by_project.get_mut(project)
        {
            for grantee in grants.keys() {
                decrement(counts, grantee);
            }
            if counts.is_empty() {
                self.by_project.remove(project);
            }
        }
    }

    /// Users and teams `resource` (canonical string) is shared with for `action`.
    pub fn shared_with(&self, resource_key: &str, action: &str) -> (Vec<&str>, Vec<&str>) {
        let mut users = Vec::new();
        let mut teams = Vec::new();
        if let Some(grants) = self.by_resource.get(resource_key) {
            for (grantee, actions) in grants {
                if actions.contains(action) {
                    match grantee {
                        Grantee::User(id) => users.push(id.as_str()),
                        Grantee::Team(id) => teams.push(id.as_str()),
                    }
                }
            }
        }
        (users, teams)
    }

    /// Users and teams that have at least one resource of `project_id` shared with them.
    pub fn project_grantees(&self, project_id: &str) -> (Vec<&str>, Vec<&str>) {
        let mut users = Vec::new();
        let mut teams = Vec::new();
        for grantee in self
            .by_project
            .get(project_id)
            .into_iter()
            .flat_map(HashMap::keys)
        {
            match grantee {
                Grantee::User(id) => users.push(id.as_str()),
                Grantee::Team(id) => teams.push(id.as_str()),
            }
        }
        (users, teams)
    }

    /// Number of (resource, grantee) shares.
    pub fn len(&self) -> usize {
        self.by_resource.values().map(HashMap::len).sum()
    }

    /// True when nothing is shared.
    pub fn is_empty(&self) -> bool {
        self.by_resource.is_empty()
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

    const P: &str = "dccff1d9-afc7-4c24-b5e8-e887447c69c0";
    const R: &str = "11111111-1111-4111-8111-111111111111";

    fn pipeline() -> Resource {
        Resource::parse(&format!("{P}:pipeline/{R}")).unwrap()
    }

    #[test]
    fn set_replaces_and_empty_removes() {
        let mut shares = ShareSet::default();
        let key = pipeline().to_string();
        shares.set(
            &pipeline(),
            Grantee::User("u".into()),
            ["read".into(), "update".into()],
        );
        assert_eq!(shares.shared_with(&key, "update"), (vec!["u"], vec![]));
        shares.set(&pipeline(), Grantee::User("u".into()), ["read".into()]);
        assert_eq!(shares.shared_with(&key, "update"), (vec![], vec![]));
        assert_eq!(shares.shared_with(&key, "read"), (vec!["u"], vec![]));
        assert_eq!(shares.project_grantees(P), (vec!["u"], vec![]));
        shares.set(&pipeline(), Grantee::User("u".into()), Vec::<String>::new());
        assert!(shares.is_empty());
        assert_eq!(shares.project_grantees(P), (vec![], vec![]));
    }

    #[test]
    fn purge_removes_every_grantee_and_project_membership() {
        let mut shares = ShareSet::default();
        shares.set(&pipeline(), Grantee::User("u".into()), ["read".into()]);
        shares.set(&pipeline(), Grantee::Team("t".into()), ["read".into()]);
        assert_eq!(shares.len(), 2);
        shares.purge(&pipeline());
        assert!(shares.is_empty());
        assert_eq!(shares.project_grantees(P), (vec![], vec![]));
    }
}
