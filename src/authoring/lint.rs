//! `validate`'s warnings beyond Cedar's validator: valid sources that are probably not what
//! their author meant.
//!
//! A binding is judged by asking, at every scope it reaches, the type-level questions (resource
//! type × action) for a synthetic user holding only its role ("what does the role grant
//! here") and, where that is allowed, for one holding everything else its holder has ("does it
//! have that already"). A binding is judged effective at the first cell its role grants and the
//! rest does not; only a binding that turns out to change nothing is asked about everywhere.
//! What a role grants at a scope is asked once per (role group, scope) and shared by every
//! binding of that role there (and by the workers: bindings are judged grouped by role group,
//! the groups spread over the cores).
//!
//! When the policies are *membership-monotone* ([`membership_monotone`], checked on their
//! JSON form: groups read only through positive membership tests in permits), a holder who is
//! in a group (directly, or through a team that holds it) may do whatever that group is already
//! known to grant, so those questions are not asked again for the holder; the answers are
//! exactly those of asking (`validate`'s warnings are byte for byte the same).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;

use cedar_policy::{EntityUid, PolicySet};
use serde_json::Value;

use super::describe_scope;
use crate::directory::{BindingScope, Directory, Holder, RoleBinding};
use crate::error::LoadError;
use crate::model::uid;
use crate::questions::{Asking, GridScope, Questioner, Who};
use crate::snapshot::Snapshot;
use crate::zenml::{Decider, ShareSet};

/// Entity types whose every entity comes from the directory: a policy naming one the directory
/// lacks names something that can never be there.
const DIRECTORY_TYPES: [&str; 5] = [
    "ZenML::User",
    "ZenML::Team",
    "ZenML::Role",
    "ZenML::Organization",
    "ZenML::Workspace",
];

/// `validate`'s warnings beyond Cedar's validator (whose warnings are in the snapshot): valid
/// sources that are probably not what their author meant. Sorted by file and line.
///
/// * a policy naming a user, team, role, organization or workspace that the
///   directory does not have (that part of it can never match);
/// * a custom role no binding uses; a team without members;
/// * a binding that changes no decision: a duplicate, a role that grants nothing at its scope
///   under the current policies, or one whose every right its holder already has through other
///   bindings or teams. Organization bindings are not judged: organization roles also mean
///   things (membership, billing) that no ZenML server asks the sidecar about.
pub fn lint(snapshot: &Snapshot) -> Vec<LoadError> {
    let Some(decider) = snapshot.zenml() else {
        return Vec::new();
    };
    let mut warnings = policy_literal_warnings(snapshot);
    let directory = decider.directory();
    warnings.extend(directory_warnings(directory));
    warnings.extend(binding_warnings(
        decider,
        directory,
        membership_monotone(&snapshot.engine.policies),
    ));
    warnings.sort_by(|a, b| (&a.path, a.line, a.column).cmp(&(&b.path, b.line, b.column)));
    warnings
}

fn policy_literal_warnings(snapshot: &Snapshot) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    let mut policies: Vec<_> = snapshot.engine.policies.policies().collect();
    policies.sort_by_key(|p| p.id().to_string());
    for policy in policies {
        let Ok(json) = policy.to_json() else { continue };
        let mut literals = Vec::new();
        crate::policy::collect_entity_refs(&json, &mut literals);
        let mut seen = HashSet::new();
        for literal in literals {
            let type_name = literal.type_name().to_string();
            if !DIRECTORY_TYPES.contains(&type_name.as_str())
                || snapshot.engine.entities.get(&literal).is_some()
                || !seen.insert(literal.to_string())
            {
                continue;
            }
            let id = policy.id().to_string();
            let message = format!(
                "policy `{id}` names `{literal}`, which is not in the directory: a condition on it can never match"
            );
            warnings.push(match snapshot.engine.policy_sources.get(&id) {
                Some(source) => match source.line {
                    Some(line) => LoadError::at_line(&source.path, line, 1, message),
                    None => LoadError::file(&source.path, message),
                },
                None => LoadError::file(Path::new("policies"), message),
            });
        }
    }
    warnings
}

/// Custom roles no binding uses; teams without members.
fn directory_warnings(directory: &Directory) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    let used_roles: HashSet<&str> = directory
        .role_bindings
        .iter()
        .map(|binding| &*binding.role)
        .collect();
    for role in &directory.custom_roles {
        if !used_roles.contains(role.name.as_str()) {
            warnings.push(role.place.error(format!(
                "roles[{}] `{}`: unused role: no binding uses it",
                role.place.index, role.name
            )));
        }
    }
    let mut teams: Vec<_> = directory.teams.values().collect();
    teams.sort_by_key(|team| team.place.index);
    for team in teams {
        if team.members.is_empty() {
            warnings.push(team.place.error(format!(
                "teams[{}] `{}`: the team has no members, so its bindings and shares reach nobody",
                team.place.index, team.named.name
            )));
        }
    }
    warnings
}

/// What a binding changes.
enum Judgement {
    /// Some decision depends on it.
    Effective,
    /// Its role grants nothing at its scope.
    GrantsNothing,
    /// Its holder has everything it grants through other bindings or teams.
    AlreadyHeld,
}

/// The warnings of bindings that change no decision. Duplicates are found in file order; the
/// others are judged grouped by role group (what a role grants at a scope is then asked over
/// one slice and shared), the groups spread over the cores.
fn binding_warnings(decider: Decider<'_>, directory: &Directory, monotone: bool) -> Vec<LoadError> {
    let mut warnings = Vec::new();
    let mut by_holder: HashMap<&Holder, Vec<&RoleBinding>> = HashMap::new();
    for binding in &directory.role_bindings {
        by_holder.entry(&binding.holder).or_default().push(binding);
    }
    let mut first_of: HashMap<(&Holder, &BindingScope, &str), usize> = HashMap::new();
    let mut judged: Vec<&RoleBinding> = Vec::new();
    for binding in &directory.role_bindings {
        let key = (&binding.holder, &binding.scope, &*binding.role);
        if let Some(first) = first_of.get(&key) {
            warnings.push(binding_warning(
                binding,
                format!("no effect: the same holder, role and scope as bindings[{first}]"),
            ));
            continue;
        }
        first_of.insert(key, binding.place.index);
        if !matches!(binding.scope, BindingScope::Organization(_)) {
            judged.push(binding);
        }
    }
    // Stable: file order within a role group.
    judged.sort_by(|a, b| (a.scope.id(), &a.role).cmp(&(b.scope.id(), &b.role)));
    let mut groups: Vec<&[&RoleBinding]> = judged
        .chunk_by(|a, b| a.scope == b.scope && a.role == b.role)
        .collect();
    // The widest groups (workspace roles) first, so that the cores finish together.
    groups.sort_by_key(|group| std::cmp::Reverse(group.first().map_or(0, |b| reach_width(directory, b))));
    let threads = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(groups.len())
        .max(1);
    let answers = Answers::default();
    let judged_warnings: Vec<Vec<LoadError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                let (groups, by_holder, answers) = (&groups, &by_holder, &answers);
                scope.spawn(move || {
                    let shares = ShareSet::default();
                    let questioner = Questioner::new(decider, &shares);
                    let mut warnings = Vec::new();
                    let mut grants = RoleGrants {
                        answers,
                        current: String::new(),
                        askings: HashMap::new(),
                        monotone,
                    };
                    for group in groups.iter().skip(t).step_by(threads) {
                        for binding in group.iter() {
                            warnings.extend(judge_binding(
                                &questioner,
                                directory,
                                by_holder,
                                &mut grants,
                                binding,
                            ));
                        }
                    }
                    warnings
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|worker| {
                worker.join().unwrap_or_else(|_| {
                    vec![LoadError::file(
                        Path::new("directory"),
                        "internal: judging the bindings did not complete",
                    )]
                })
            })
            .collect()
    });
    warnings.extend(judged_warnings.into_iter().flatten());
    warnings
}

/// How many scopes a binding reaches (a workspace binding: the workspace and its projects).
fn reach_width(directory: &Directory, binding: &RoleBinding) -> usize {
    match &binding.scope {
        BindingScope::Workspace(id) => {
            1 + directory
                .projects
                .values()
                .filter(|p| *p.workspace_id == **id)
                .count()
        }
        _ => 1,
    }
}

/// A warning at a binding.
fn binding_warning(binding: &RoleBinding, message: String) -> LoadError {
    binding
        .place
        .error(format!("bindings[{}]: {message}", binding.place.index))
}

/// The warning of one (non-organization, first-of-its-kind) binding, if it changes nothing.
fn judge_binding<'a>(
    questioner: &Questioner<'a>,
    directory: &Directory,
    by_holder: &HashMap<&Holder, Vec<&RoleBinding>>,
    grants: &mut RoleGrants<'a, '_>,
    binding: &RoleBinding,
) -> Option<LoadError> {
    // Everything else the holder is a member of: its teams, its other bindings' groups.
    let (name, mut others, teams) = match &binding.holder {
        Holder::User(id) => {
            let user = directory.users.get(&**id)?;
            let teams: Vec<&str> = user
                .teams
                .iter()
                .filter_map(|t| directory.teams.get(t))
                .map(|t| t.named.name.as_str())
                .collect();
            let parents: Vec<EntityUid> = user.teams.iter().map(|t| uid("Team", t)).collect();
            (user.named.name.as_str(), parents, teams)
        }
        Holder::Team(id) => {
            let team = directory.teams.get(&**id)?;
            (team.named.name.as_str(), Vec::new(), Vec::new())
        }
    };
    others.extend(
        by_holder
            .get(&binding.holder)
            .into_iter()
            .flatten()
            .filter(|other| other.scope != binding.scope || other.role != binding.role)
            .map(|other| uid("Role", &other.group_id())),
    );
    let others: Vec<EntityUid> = others.into_iter().collect::<BTreeSet<_>>().into_iter().collect();
    // The role groups among the holder's other memberships: its other bindings' and its
    // teams' bindings' (a member of a team is a member of the team's groups).
    let teams_held = match &binding.holder {
        Holder::User(id) => directory.users.get(&**id).map(|user| user.teams.as_slice()),
        Holder::Team(_) => None,
    };
    let role_groups: BTreeSet<String> = teams_held
        .into_iter()
        .flatten()
        .map(|team| Holder::Team(team.as_str().into()))
        .chain([binding.holder.clone()])
        .flat_map(|holder| {
            by_holder
                .get(&holder)
                .into_iter()
                .flatten()
                .copied()
                .collect::<Vec<_>>()
        })
        .filter(|other| {
            other.holder != binding.holder || other.scope != binding.scope || other.role != binding.role
        })
        .map(|other| other.group_id())
        .collect();
    let what = format!(
        "role `{}` at {}",
        binding.role,
        describe_scope(directory, &binding.scope)
    );
    let message = match judge(questioner, directory, grants, binding, &others, &role_groups) {
        Ok(Judgement::Effective) => return None,
        Ok(Judgement::GrantsNothing) => {
            format!("no effect: {what} grants nothing under the current policies")
        }
        Ok(Judgement::AlreadyHeld) => {
            let through = if teams.is_empty() {
                "through other bindings".to_owned()
            } else {
                format!("through other bindings or teams ({})", teams.join(", "))
            };
            format!("no effect: `{name}` already has everything {what} grants, {through}")
        }
        Err(message) => format!("cannot judge its effect: {message}"),
    };
    Some(binding_warning(binding, message))
}

/// What role groups grant at each scope, learnt question by question while their bindings are
/// judged: (group id, scope id) -> per question, whether a member of just that group may
/// (`None`: not asked yet). Shared by the workers: each writes only its own groups' answers,
/// and reads the others' only for what they are known to grant.
type Answers = Mutex<HashMap<(String, String), Vec<Option<bool>>>>;

/// One worker's view of [`Answers`]: the askings of the group it is judging (one slice per
/// scope).
struct RoleGrants<'a, 'w> {
    answers: &'w Answers,
    /// The group whose askings these are.
    current: String,
    askings: HashMap<String, Asking<'a>>,
    /// Whether a member of more groups keeps every permission ([`membership_monotone`]).
    monotone: bool,
}

/// How a binding fares at one scope of its reach.
enum AtScope {
    /// Its role grants something there that its holder does not otherwise have.
    Effective,
    /// Its role grants nothing there.
    Nothing,
    /// Its holder otherwise has everything its role grants there.
    Held,
}

/// Judges a (non-organization, first-of-its-kind) binding whose holder is otherwise a member
/// of `others`, among them (directly or through teams) of `role_groups`. `Err` when what its
/// role grants cannot be asked.
fn judge<'a>(
    questioner: &Questioner<'a>,
    directory: &Directory,
    grants: &mut RoleGrants<'a, '_>,
    binding: &RoleBinding,
    others: &[EntityUid],
    role_groups: &BTreeSet<String>,
) -> Result<Judgement, String> {
    let group_id = binding.group_id();
    if grants.current != group_id {
        grants.askings.clear();
        grants.current.clone_from(&group_id);
    }
    let mut grants_something = false;
    for scope in reach(directory, &binding.scope) {
        let count = questioner.question_count(scope)?;
        let key = (group_id.clone(), scope.id().to_owned());
        // Under monotony, what one of the other groups is known to grant, the holder has.
        let mut known_held = vec![false; count];
        let mut answers = {
            let memo = grants.answers.lock().map_err(|_| "internal: a worker failed")?;
            if grants.monotone {
                for other in role_groups {
                    let other_key = (other.clone(), scope.id().to_owned());
                    for (held, answer) in known_held
                        .iter_mut()
                        .zip(memo.get(&other_key).into_iter().flatten())
                    {
                        *held |= *answer == Some(true);
                    }
                }
            }
            memo.get(&key).cloned().unwrap_or_else(|| vec![None; count])
        };
        let verdict = judge_scope(questioner, grants, scope, &mut answers, &known_held, others);
        if let Ok(mut memo) = grants.answers.lock() {
            memo.insert(key, answers);
        }
        match verdict? {
            AtScope::Effective => return Ok(Judgement::Effective),
            AtScope::Held => grants_something = true,
            AtScope::Nothing => {}
        }
    }
    Ok(if grants_something {
        Judgement::AlreadyHeld
    } else {
        Judgement::GrantsNothing
    })
}

/// A binding at one scope: `answers` are its role group's there (filled as asked),
/// `known_held` the questions its holder is known to be allowed otherwise.
fn judge_scope<'a>(
    questioner: &Questioner<'a>,
    grants: &mut RoleGrants<'a, '_>,
    scope: GridScope<'_>,
    answers: &mut [Option<bool>],
    known_held: &[bool],
    others: &[EntityUid],
) -> Result<AtScope, String> {
    let group = [uid("Role", &grants.current)];
    let mut verdict = AtScope::Nothing;
    let mut everything_else: Option<Asking<'_>> = None;
    for (index, answer) in answers.iter_mut().enumerate() {
        let allowed = match *answer {
            Some(allowed) => allowed,
            None => {
                if !grants.askings.contains_key(scope.id()) {
                    let asking = questioner.asking(Who::MemberOf(&group), scope)?;
                    grants.askings.insert(scope.id().to_owned(), asking);
                }
                let Some(asking) = grants.askings.get_mut(scope.id()) else {
                    return Err("internal: no asking".into());
                };
                *answer.insert(asking.allowed(index)?)
            }
        };
        if !allowed {
            continue;
        }
        verdict = AtScope::Held;
        if others.is_empty() {
            return Ok(AtScope::Effective);
        }
        if known_held.get(index).copied().unwrap_or(false) {
            continue;
        }
        let asking = match &mut everything_else {
            Some(asking) => asking,
            None => match questioner.asking(Who::MemberOf(others), scope) {
                Ok(asking) => everything_else.insert(asking),
                Err(_) => return Ok(AtScope::Effective),
            },
        };
        // A question the rest cannot answer is not one it already has.
        if !asking.allowed(index).unwrap_or(false) {
            return Ok(AtScope::Effective);
        }
    }
    Ok(verdict)
}

/// Whether being a member of more groups never loses a permission: every `permit` reads the
/// principal's groups only through membership tests (`principal in e`, `principal is T in e`)
/// in its scope or in `when` conditions that are conjunctions of disjunctions of such tests
/// and of conditions that do not depend on the principal's groups; no `forbid` and no `unless`
/// depends on them; no templates. Then a synthetic member of groups `O` may do whatever a
/// member of one `h` in `O` may (same uid, same attributes, more ancestors): every permit
/// satisfied for `h` is for `O` (with the same short-circuits up to the first true
/// disjunct, so no new error), and every forbid is decided the same.
fn membership_monotone(policies: &PolicySet) -> bool {
    if policies.templates().next().is_some() {
        return false;
    }
    policies.policies().all(|policy| {
        let Ok(json) = policy.to_json() else {
            return false;
        };
        let permit = json["effect"] == "permit";
        let head = &json["principal"];
        let head_tests_groups = head["op"] == "in" || (head["op"] == "is" && head.get("in").is_some());
        if head_tests_groups && !permit {
            return false;
        }
        let Some(conditions) = json["conditions"].as_array() else {
            return false;
        };
        conditions.iter().all(|condition| {
            let body = &condition["body"];
            if permit && condition["kind"] == "when" {
                monotone_conjunction(body)
            } else {
                !reads_groups(body)
            }
        })
    })
}

/// A conjunction whose conjuncts are group-free or disjunctions of membership tests and
/// group-free conditions.
fn monotone_conjunction(expr: &Value) -> bool {
    match expr.get("&&") {
        Some(and) => monotone_conjunction(&and["left"]) && monotone_conjunction(&and["right"]),
        None => monotone_disjunction(expr),
    }
}

fn monotone_disjunction(expr: &Value) -> bool {
    if let Some(or) = expr.get("||") {
        return monotone_disjunction(&or["left"]) && monotone_disjunction(&or["right"]);
    }
    !reads_groups(expr) || membership_test(expr)
}

/// `principal in e` or `principal is T in e`, `e` group-free.
fn membership_test(expr: &Value) -> bool {
    let principal = serde_json::json!({"Var": "principal"});
    if let Some(test) = expr.get("in") {
        return test["left"] == principal && !reads_groups(&test["right"]);
    }
    if let Some(test) = expr.get("is") {
        return test["left"] == principal && test.get("in").is_none_or(|within| !reads_groups(within));
    }
    false
}

/// Whether evaluating `expr` may read the principal's groups: an `in` (or `is … in`) whose
/// left side mentions the principal.
fn reads_groups(expr: &Value) -> bool {
    match expr {
        Value::Object(fields) => fields.iter().any(|(key, value)| {
            let tests_left = (key == "in" || (key == "is" && value.get("in").is_some()))
                && mentions_principal(&value["left"]);
            tests_left || reads_groups(value)
        }),
        Value::Array(items) => items.iter().any(reads_groups),
        _ => false,
    }
}

fn mentions_principal(expr: &Value) -> bool {
    match expr {
        Value::Object(fields) => fields
            .iter()
            .any(|(key, value)| (key == "Var" && value == "principal") || mentions_principal(value)),
        Value::Array(items) => items.iter().any(mentions_principal),
        _ => false,
    }
}

/// The scopes a role held at `scope` reaches: a workspace and every project in it, or a
/// project. (Organization bindings are not judged.)
fn reach<'d>(directory: &'d Directory, scope: &BindingScope) -> Vec<GridScope<'d>> {
    let mut scopes = Vec::new();
    match scope {
        BindingScope::Organization(_) => {}
        BindingScope::Workspace(id) => {
            if let Some(workspace) = directory.workspaces.get(&**id) {
                scopes.push(GridScope::Workspace(workspace));
                scopes.extend(
                    directory
                        .projects
                        .values()
                        .filter(|p| *p.workspace_id == **id)
                        .map(GridScope::Project),
                );
            }
        }
        BindingScope::Project(id) => scopes.extend(directory.projects.get(&**id).map(GridScope::Project)),
    }
    scopes
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "test code")]
    use super::*;

    #[track_caller]
    fn monotone(text: &str) -> bool {
        membership_monotone(&text.parse::<PolicySet>().unwrap())
    }

    #[test]
    fn membership_monotony_is_recognised_only_where_it_holds() {
        let monotone_sets = [
            "permit (principal in ZenML::Role::\"a\", action, resource);",
            "permit (principal, action, resource) when { resource has project && principal in resource.project.admins };",
            "permit (principal, action, resource) when { principal in context.permissions || principal in resource.viewers };",
            "permit (principal, action, resource) when { principal in resource.admins } unless { action == ZenML::Action::\"create\" };",
            "forbid (principal, action, resource) unless { principal.active };",
        ];
        for text in monotone_sets {
            assert!(monotone(text), "{text}");
        }
        let other_sets = [
            "forbid (principal in ZenML::Role::\"a\", action, resource);",
            "forbid (principal, action, resource) when { principal in resource.banned };",
            "permit (principal, action, resource) when { !(principal in resource.banned) };",
            "permit (principal, action, resource) unless { principal in resource.banned };",
            "permit (principal, action, resource) when { if principal in resource.a then true else false };",
            "permit (principal, action, resource) when { (principal in resource.a) == false };",
            "permit (principal == ?principal, action, resource);",
        ];
        for text in other_sets {
            assert!(!monotone(text), "{text}");
        }
    }
}
