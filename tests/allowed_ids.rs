//! `list_allowed_resource_ids` agrees with `check_permissions` (contract §8, "Semantics to
//! preserve"): for random shares, users, actions and type-level resources, every instance the
//! sidecar knows of (shared ids of that type and project, and for `project` the workspace's
//! projects) is allowed by `check` exactly when `full_access` is set or it is in `ids`, and
//! every listed id is allowed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::{PRODUCTION, STAGING};

use std::collections::BTreeSet;
use std::sync::LazyLock;

use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use zenml_authz::Batch;
use zenml_authz::Snapshot;
use zenml_authz::model::{ACTIONS, RESOURCE_TYPES};
use zenml_authz::zenml::{Grantee, Prepared, Question, Resource, ShareSet};

/// A project ZenML created that the directory does not list (no bindings).
const UNLISTED_PROJECT: &str = "33333333-3333-4333-8333-333333333333";
/// A user the directory does not know.
const STRANGER: &str = "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f";
/// Resource ids; few, so that shares of one type and project collide and get replaced.
const IDS: [&str; 4] = [
    "11111111-1111-4111-8111-111111111111",
    "22222222-2222-4222-8222-222222222222",
    "abcdefab-cdef-4abc-8def-abcdefabcdef",
    "44444444-4444-4444-8444-444444444444",
];

static SNAPSHOT: LazyLock<Snapshot> = LazyLock::new(common::bundled_snapshot);

fn directory() -> &'static zenml_authz::directory::Directory {
    SNAPSHOT.directory().unwrap()
}

/// Directory projects (both workspaces) and one unlisted project.
fn projects() -> Vec<String> {
    directory()
        .projects
        .keys()
        .cloned()
        .chain([UNLISTED_PROJECT.to_owned()])
        .collect()
}

/// The projects a workspace's ZenML server can have: its directory projects, and an unlisted
/// one (a ZenML server never shares a resource of another server's project).
fn projects_of(workspace: &str) -> Vec<String> {
    directory()
        .projects
        .values()
        .filter(|p| p.workspace_id == workspace)
        .map(|p| p.named.id.clone())
        .chain([UNLISTED_PROJECT.to_owned()])
        .collect()
}

/// One share as generated: who, which resource, which actions (applied in order, so a later
/// share of the same resource and grantee replaces an earlier one; no actions removes it).
#[derive(Debug, Clone)]
struct RawShare {
    workspace: &'static str,
    type_name: &'static str,
    project: String,
    id: &'static str,
    grantee: Grantee,
    actions: Vec<&'static str>,
}

impl RawShare {
    /// `<project>:<type>/<id>`, `<type>/<id>` or `project/<project>`.
    fn resource(&self) -> Resource {
        let text = type_level(self.type_name, &self.project);
        let text = match self.type_name {
            "project" => format!("project/{}", self.project),
            _ => format!("{text}/{}", self.id),
        };
        Resource::parse(&text).unwrap()
    }
}

/// The type-level resource string of `type_name` (in `project` when project-scoped, or when the
/// type is unknown to this version).
fn type_level(type_name: &str, project: &str) -> String {
    let global = RESOURCE_TYPES
        .iter()
        .any(|t| t.wire == type_name && !t.project_scoped);
    if global {
        type_name.to_owned()
    } else {
        format!("{project}:{type_name}")
    }
}

/// The question, partly as a pointer into the shares so that it often hits one.
#[derive(Debug, Clone)]
struct RawQuestion {
    workspace: &'static str,
    user: String,
    action: &'static str,
    type_name: &'static str,
    project: String,
    /// Ask about this share's type and project, and maybe as its grantee (or a member of its
    /// team) and for one of its actions.
    follow: Option<(Index, bool, bool, Index)>,
}

#[derive(Debug, Clone)]
struct Case {
    shares: Vec<RawShare>,
    question: RawQuestion,
}

fn workspace() -> impl Strategy<Value = &'static str> {
    prop_oneof![3 => Just(PRODUCTION), 1 => Just(STAGING)]
}

fn type_name() -> impl Strategy<Value = &'static str> {
    let types: Vec<&'static str> = RESOURCE_TYPES.iter().map(|t| t.wire).collect();
    prop_oneof![
        // The types ZenML lists most, so that shares collide.
        6 => select(vec!["pipeline", "stack", "project", "model", "secret"]),
        3 => select(types),
    ]
}

fn grantee() -> impl Strategy<Value = Grantee> {
    let mut users: Vec<String> = directory().users.keys().cloned().collect();
    users.sort();
    let teams: Vec<String> = directory().teams.keys().cloned().collect();
    prop_oneof![
        3 => select(users).prop_map(Grantee::User),
        1 => select(teams).prop_map(Grantee::Team),
    ]
}

fn raw_share() -> impl Strategy<Value = RawShare> {
    (
        workspace(),
        type_name(),
        any::<Index>(),
        select(IDS.to_vec()),
        grantee(),
        proptest::sample::subsequence(ACTIONS.to_vec(), 0..=4),
    )
        .prop_map(|(workspace, type_name, project, id, grantee, actions)| RawShare {
            workspace,
            type_name,
            project: project.get(&projects_of(workspace)).clone(),
            id,
            grantee,
            actions,
        })
}

fn raw_question() -> impl Strategy<Value = RawQuestion> {
    let mut users: Vec<String> = directory().users.keys().cloned().collect();
    users.sort();
    users.push(STRANGER.to_owned());
    let mut actions = ACTIONS.to_vec();
    actions.push("fly");
    let mut types: Vec<&'static str> = RESOURCE_TYPES.iter().map(|t| t.wire).collect();
    types.push("event_source");
    (
        workspace(),
        select(users),
        select(actions),
        prop_oneof![3 => type_name(), 1 => select(types)],
        select(projects()),
        proptest::option::weighted(
            0.8,
            (any::<Index>(), any::<bool>(), any::<bool>(), any::<Index>()),
        ),
    )
        .prop_map(
            |(workspace, user, action, type_name, project, follow)| RawQuestion {
                workspace,
                user,
                action,
                type_name,
                project,
                follow,
            },
        )
}

fn case() -> impl Strategy<Value = Case> {
    (proptest::collection::vec(raw_share(), 0..12), raw_question())
        .prop_map(|(shares, question)| Case { shares, question })
}

/// `check_permissions` for one resource: allowed only on an `Allow` (fail closed).
fn check(shares: &ShareSet, workspace: &str, user: &str, action: &str, resource: &Resource) -> bool {
    let question = Question {
        workspace_id: workspace,
        user_id: user,
        action,
        resource,
    };
    match SNAPSHOT
        .zenml()
        .unwrap()
        .prepare(shares, &question, zenml_authz::zenml::ResourceAs::Written)
    {
        Ok(Prepared::Request(request, _)) => SNAPSHOT
            .engine
            .decide(&request, &mut Batch::single())
            .is_ok_and(|d| d.allowed),
        Ok(Prepared::Denied(_)) | Err(_) => false,
    }
}

/// What one case found, for the check that the property was not vacuous.
#[derive(Debug, Default)]
struct Seen {
    full_access: usize,
    listed: usize,
    unlisted_candidates: usize,
}

fn run_case(case: &Case, seen: &mut Seen) -> Result<(), TestCaseError> {
    // The shares, as the API would have applied them.
    let mut shares = ShareSet::default();
    for share in &case.shares {
        let actions = share.actions.iter().map(|a| (*a).to_owned());
        shares.set(share.workspace, &share.resource(), share.grantee.clone(), actions);
    }

    // The question: of any workspace, about any project (another workspace's too).
    let q = &case.question;
    let (mut user, mut action, mut type_name, mut project) =
        (q.user.clone(), q.action, q.type_name, q.project.clone());
    let mut workspace = q.workspace;
    if let Some((pick, as_grantee, for_action, member)) = &q.follow
        && !case.shares.is_empty()
    {
        let share = pick.get(&case.shares);
        workspace = share.workspace;
        type_name = share.type_name;
        project = share.project.clone();
        if *as_grantee {
            match &share.grantee {
                Grantee::User(id) => user = id.clone(),
                Grantee::Team(team) => {
                    let members = &directory().teams[team].members;
                    if !members.is_empty() {
                        user = member.get(members).clone();
                    }
                }
            }
        }
        if *for_action && !share.actions.is_empty() {
            action = share.actions[member.index(share.actions.len())];
        }
    }
    let type_level = Resource::parse(&type_level(type_name, &project)).unwrap();

    let answer = allowed_ids(&SNAPSHOT, &shares, workspace, &user, action, &type_level);
    let full_access = answer.is_none();
    let ids = answer.unwrap_or_default();

    // Every instance the sidecar knows of: shared ids of this type (and project) in this
    // workspace, whatever their grantees or actions now; for `project`, also the workspace's
    // projects and the projects of its shares.
    let mut known: BTreeSet<String> = BTreeSet::new();
    for share in case.shares.iter().filter(|s| s.workspace == workspace) {
        let resource = share.resource();
        if resource.type_name == type_level.type_name && resource.project_id == type_level.project_id {
            known.insert(resource.id.clone().unwrap());
        }
        if type_name == "project"
            && let Some(project) = &resource.project_id
        {
            known.insert(project.clone());
        }
    }
    if type_name == "project" {
        known.extend(
            directory()
                .projects
                .values()
                .filter(|p| p.workspace_id == workspace)
                .map(|p| p.named.id.clone()),
        );
    }

    let context = format!("{workspace} {user} {action} {type_level}: full_access={full_access} ids={ids:?}");
    let unique: BTreeSet<&String> = ids.iter().collect();
    prop_assert_eq!(unique.len(), ids.len(), "duplicate ids: {}", context);
    if full_access {
        seen.full_access += 1;
    }
    seen.listed += ids.len();
    let instance = |id: &str| Resource {
        id: Some(id.to_owned()),
        ..type_level.clone()
    };
    for id in &ids {
        prop_assert!(
            known.contains(id),
            "listed an id the sidecar does not know of: {} ({})",
            id,
            context
        );
        prop_assert!(
            check(&shares, workspace, &user, action, &instance(id)),
            "listed but not allowed: {} ({})",
            id,
            context
        );
    }
    for id in &known {
        let allowed = check(&shares, workspace, &user, action, &instance(id));
        let listed = full_access || ids.contains(id);
        if !listed {
            seen.unlisted_candidates += 1;
        }
        prop_assert_eq!(
            allowed,
            listed,
            "check({}) disagrees with the listing ({})",
            instance(id),
            context
        );
    }
    Ok(())
}

fn run(runner: &mut TestRunner) -> Seen {
    let seen = std::cell::RefCell::new(Seen::default());
    let result = runner.run(&case(), |case| run_case(&case, &mut seen.borrow_mut()));
    if let Err(error) = result {
        panic!("{error}");
    }
    seen.into_inner()
}

fn config() -> Config {
    common::proptest_config(64)
}

/// 64 cases: the same on every run unless `PROPTEST_RNG_SEED` says otherwise (`random`: new
/// ones each run, the seed printed; a number: that seed); see `common::proptest_config`.
#[test]
fn allowed_ids_agree_with_check_permissions() {
    run(&mut TestRunner::new(config()));
}

/// 64 fixed cases, which exercise the property: some listings are full, some list shared ids,
/// and some known ids are (rightly) left out.
#[test]
fn the_property_is_not_vacuous() {
    let mut runner = TestRunner::new_with_rng(config(), TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let seen = run(&mut runner);
    assert!(seen.full_access > 0, "{seen:?}");
    assert!(seen.listed > 0, "{seen:?}");
    assert!(seen.unlisted_candidates > 0, "{seen:?}");
}

/// A hand-made case of the same property, so that a failure of the harness itself shows.
#[test]
fn a_known_case() {
    let grace = directory().find_user("grace").unwrap().named.id.clone();
    let churn = directory().find_project("churn").unwrap().named.id.clone();
    let mut shares = ShareSet::default();
    let shared = Resource::parse(&format!("{churn}:pipeline/{}", IDS[0])).unwrap();
    shares.set(
        PRODUCTION,
        &shared,
        Grantee::User(grace.clone()),
        ["read".to_owned()],
    );
    let type_level = Resource::parse(&format!("{churn}:pipeline")).unwrap();
    assert_eq!(
        allowed_ids(&SNAPSHOT, &shares, PRODUCTION, &grace, "read", &type_level),
        Some(vec![IDS[0].to_owned()])
    );
    assert_eq!(
        allowed_ids(&SNAPSHOT, &shares, STAGING, &grace, "read", &type_level),
        Some(vec![]),
        "shares are the workspace's"
    );
    assert_eq!(
        allowed_ids(
            &SNAPSHOT,
            &shares,
            PRODUCTION,
            &grace,
            "read",
            &Resource::parse("project").unwrap()
        ),
        Some(vec![churn]),
        "implicit membership"
    );
    let carol = directory().find_user("carol").unwrap().named.id.clone();
    assert_eq!(
        allowed_ids(&SNAPSHOT, &shares, PRODUCTION, &carol, "read", &type_level),
        None,
        "a workspace viewer reads every pipeline"
    );
    assert!(check(&shares, PRODUCTION, &grace, "read", &shared));
    assert!(!check(&shares, PRODUCTION, &grace, "update", &shared));
}

/// `allowed_resource_ids` for a type-level resource, decided uncached (as the API decides it).
fn allowed_ids(
    snapshot: &Snapshot,
    shares: &ShareSet,
    workspace: &str,
    user_id: &str,
    action: &str,
    type_level: &Resource,
) -> Option<Vec<String>> {
    let decider = snapshot.zenml().unwrap();
    let question = Question {
        workspace_id: workspace,
        user_id,
        action,
        resource: type_level,
    };
    decider.allowed_ids_decided(shares, &question)
}
