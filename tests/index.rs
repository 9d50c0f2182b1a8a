//! The scope index is exact: on random policy sets (every scope form, action groups, forbids,
//! conditions that error) and random requests, evaluating only the policies the index selects
//! (`Engine::decide`: the type-level set, plus the entity-keyed policies evaluated on their own and
//! combined) gives the same decision, determining policies and errors as Cedar evaluating the
//! whole set.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed step should stop the test"
)]

mod common;

use common::sample::ORG;

use std::str::FromStr;

use cedar_policy::{Authorizer, PolicySet};
use proptest::prelude::*;
use zenml_authz::index::{Over, ScopeIndex};
use zenml_authz::model::{ACTIONS, RESOURCE_TYPES};
use zenml_authz::zenml::{Grantee, Prepared, Question, Resource, ResourceAs, ShareSet};
use zenml_authz::{AuthzRequest, Batch, Snapshot};

const WORKSPACE: &str = "99baf825-b21e-442f-ba98-8246d8d9ac88";
const UNLISTED: &str = "33333333-3333-4333-8333-333333333333";
const ID: &str = "11111111-1111-4111-8111-111111111111";

fn snapshot() -> Snapshot {
    common::bundled_snapshot()
}

/// The choices a random policy is made of, as indexes into the lists below.
type PolicyChoice = (bool, usize, usize, usize, usize, usize, usize, usize);

fn policy_text(snapshot: &Snapshot, (forbid, p, a, r, c, x, y, z): PolicyChoice) -> String {
    let directory = snapshot.directory().unwrap();
    let mut users: Vec<&String> = directory.users.keys().collect();
    users.sort();
    let teams: Vec<&String> = directory.teams.keys().collect();
    let projects: Vec<&String> = directory.projects.keys().collect();
    let user = users[x % users.len()];
    let team = teams[y % teams.len()];
    let project = projects[z % projects.len()];
    let roles = [
        format!("{WORKSPACE}/developer"),
        format!("{WORKSPACE}/viewer"),
        format!("{project}/*"),
        format!("{project}/admin"),
        format!("{ORG}/admin"),
    ];
    let role = &roles[y % roles.len()];
    let action = |i: usize| ACTIONS[i % ACTIONS.len()];
    let type_name = RESOURCE_TYPES[(x + z) % RESOURCE_TYPES.len()].cedar;
    let principal = match p % 7 {
        0 => "principal".to_owned(),
        1 => format!("principal == ZenML::User::\"{user}\""),
        2 => format!("principal in ZenML::Team::\"{team}\""),
        3 => format!("principal in ZenML::Role::\"{role}\""),
        4 => "principal is ZenML::User".to_owned(),
        5 => format!("principal is ZenML::User in ZenML::Team::\"{team}\""),
        _ => format!("principal in ZenML::Role::\"{project}/model-promoter\""),
    };
    let action_scope = match a % 4 {
        0 => "action".to_owned(),
        1 => format!("action == ZenML::Action::\"{}\"", action(x)),
        2 => format!(
            "action in [ZenML::Action::\"{}\", ZenML::Action::\"{}\"]",
            action(y),
            action(z)
        ),
        _ => "action in ZenML::Action::\"write\"".to_owned(),
    };
    let resource = match r % 8 {
        0 => "resource".to_owned(),
        1 => format!("resource is ZenML::{type_name}"),
        2 => format!("resource == ZenML::Project::\"{project}\""),
        3 => format!("resource in ZenML::Project::\"{project}\""),
        4 => format!("resource in ZenML::Workspace::\"{WORKSPACE}\""),
        5 => format!("resource is ZenML::{type_name} in ZenML::Project::\"{project}\""),
        6 => format!("resource in ZenML::Organization::\"{ORG}\""),
        _ => format!("resource in ZenML::Project::\"{UNLISTED}\""),
    };
    let condition: &str = match c % 27 {
        0 => "",
        1 => "when { principal.active }",
        2 => "when { context has permissions && principal in context.permissions }",
        3 => "when { resource.workspace.name == \"production\" }",
        4 => "unless { principal.is_service_account }",
        // Errors for resources without a project (global types): error paths must agree too.
        5 => "when { resource.project.name == \"churn\" }",
        // Leading guards (the index decides them before evaluation), and guards that are not
        // leading (after a conjunct that may error: the index must not use them).
        6 => "when { resource has project && resource.project.name == \"churn\" }",
        7 => "when { context has shared_with_users && principal in context.shared_with_users }",
        8 => {
            "when { (resource is ZenML::Stack || resource is ZenML::Pipeline) && principal in resource.workspace.developers }"
        }
        9 => "when { !(resource has project) && resource.workspace.name == \"production\" }",
        10 => "when { resource.project.name == \"churn\" && resource is ZenML::Pipeline }",
        // Membership guards: known false only where Cedar finds false without an error (global
        // types have no `project`; only projects have `members`).
        11 => "when { principal in resource.project.admins && resource is ZenML::Pipeline }",
        12 => "when { resource has project && principal in resource.project.developers }",
        13 => "when { principal in resource.workspace.viewers || principal in resource.project.viewers }",
        14 => "when { !(principal in resource.workspace.admins) && principal.active }",
        15 => "when { principal in resource.members && principal in resource.workspace.developers }",
        // Whole conditions of guards (the index answers without Cedar when all are known),
        // with `unless`, boolean attributes and the action.
        16 => "unless { principal.active }",
        17 => {
            "when { principal in resource.workspace.developers } unless { action == ZenML::Action::\"create\" && resource is ZenML::ServiceAccount }"
        }
        18 => "when { principal.is_service_account || context has shared_with_teams }",
        19 => "unless { resource has project && principal in resource.project.viewers }",
        20 => {
            "when { ZenML::Action::\"read\" == action || principal in resource.workspace.organization.admins }"
        }
        // `==` with an entity literal: an atom in type-level policies, read per policy in
        // entity-keyed ones (a literal the store lacks, `UNLISTED`, is a project of some requests).
        22 => &format!("when {{ resource.project == ZenML::Project::\"{project}\" }}"),
        23 => {
            &format!("when {{ resource has project && resource.project == ZenML::Project::\"{project}\" }}")
        }
        24 => {
            &format!("when {{ resource.workspace == ZenML::Workspace::\"{WORKSPACE}\" && principal.active }}")
        }
        25 => &format!("when {{ ZenML::Project::\"{UNLISTED}\" == resource.project }}"),
        26 => &format!(
            "unless {{ resource == ZenML::Project::\"{project}\" || principal == ZenML::User::\"{user}\" }}"
        ),
        _ => "when { principal in resource.workspace.developers }",
    };
    let effect = if forbid { "forbid" } else { "permit" };
    format!("{effect} ({principal}, {action_scope}, {resource}) {condition};\n")
}

fn policy_choice() -> impl Strategy<Value = PolicyChoice> {
    (
        prop::bool::weighted(0.2),
        0..7usize,
        0..4usize,
        0..8usize,
        0..27usize,
        0..64usize,
        0..64usize,
        0..64usize,
    )
}

/// Cedar's answer as (allowed, sorted reasons, sorted errors).
fn answer(response: &cedar_policy::Response) -> (bool, Vec<String>, Vec<String>) {
    let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    let mut errors: Vec<String> = response.diagnostics().errors().map(ToString::to_string).collect();
    reasons.sort();
    errors.sort();
    (
        response.decision() == cedar_policy::Decision::Allow,
        reasons,
        errors,
    )
}

proptest! {
    // A fixed seed unless PROPTEST_RNG_SEED says otherwise (`random`: a new one each run, printed;
    // a number: that one): see common::proptest_config and README, "Development".
    #![proptest_config(common::proptest_config(96))]

    #[test]
    fn the_index_selects_exactly(
        choices in prop::collection::vec(policy_choice(), 1..40),
        requests in prop::collection::vec((0..64usize, 0..10usize, 0..64usize, any::<bool>()), 80),
    ) {
        let snapshot = snapshot();
        let text: String = choices.iter().map(|c| policy_text(&snapshot, *c)).collect();
        let policies = PolicySet::from_str(&text).unwrap();
        let index = ScopeIndex::build(&policies, &snapshot.engine.schema, &snapshot.engine.entities).unwrap();
        let engine = snapshot.engine.with_policies(policies.clone()).unwrap();
        let decider = snapshot.zenml().unwrap();
        let directory = snapshot.directory().unwrap();
        let mut users: Vec<&String> = directory.users.keys().collect();
        users.sort();
        let projects: Vec<String> = directory.projects.keys().cloned().chain([UNLISTED.to_owned()]).collect();
        let mut shares = ShareSet::default();
        shares.set(WORKSPACE, &Resource::parse(&format!("{}:pipeline/{ID}", projects[0])).unwrap(), Grantee::User(users[0].clone()), ["read".to_owned()]);
        let authorizer = Authorizer::new();
        for (u, a, r, instance) in requests {
            let resource_type = RESOURCE_TYPES[r % RESOURCE_TYPES.len()];
            let project = &projects[r % projects.len()];
            let mut text = if resource_type.project_scoped { format!("{project}:{}", resource_type.wire) } else { resource_type.wire.to_owned() };
            if instance {
                text = if resource_type.wire == "project" { format!("project/{project}") } else { format!("{text}/{ID}") };
            }
            let resource = Resource::parse(&text).unwrap();
            let question = Question { workspace_id: WORKSPACE, user_id: users[u % users.len()], action: ACTIONS[a], resource: &resource };
            let Prepared::Request(request, _) = decider.prepare(&shares, &question, ResourceAs::Written).unwrap() else { continue };
            let entities = (*snapshot.engine.entities).clone().add_entities(request.entities.cedar().iter().cloned(), None).unwrap();
            let whole = authorizer.is_authorized(&request.request, &policies, &entities);
            let selection = index.select(&request.request, Over::Unindexed(&entities));
            let selected = selection.as_ref().map_or(policies.policies().count(), |s| {
                s.type_level.set.policies().count() + s.entity_keyed.as_ref().map_or(0, |e| e.policies().count())
            });
            let narrowed = engine.decide(&request, &mut Batch::single()).unwrap();
            prop_assert_eq!(answer(&whole), (narrowed.allowed, narrowed.reasons, narrowed.errors), "{} {} {}\npolicies:\n{}", question.user_id, question.action, text, text);
            prop_assert!(selected <= policies.policies().count());
            // Over the stored entities (the resource as its stored stand-in, where the question
            // has one): the index reads guards and lineage from its graph.
            let Prepared::Request(request, _) = decider.prepare(&shares, &question, ResourceAs::StandIn).unwrap() else { continue };
            if request.entities.is_empty() {
                let whole = authorizer.is_authorized(&request.request, &policies, &snapshot.engine.entities);
                // The context as read when the request is made (by the snapshot's index: ignored
                // by this one), and as this index reads it beforehand.
                let reads = request.request.context().and_then(|context| engine.prepare_context(context));
                for reads in [request.context.clone(), reads] {
                    let request = AuthzRequest { context: reads, ..(*request).clone() };
                    let narrowed = engine.decide(&request, &mut Batch::single()).unwrap();
                    prop_assert_eq!(answer(&whole), (narrowed.allowed, narrowed.reasons, narrowed.errors), "stored: {} {} {}\npolicies:\n{}", question.user_id, question.action, text, text);
                }
            }
        }
    }
}

/// The index narrows: with many per-team grants, a request evaluates a small fraction.
#[test]
fn the_index_narrows_a_large_set() {
    let snapshot = snapshot();
    let directory = snapshot.directory().unwrap();
    let teams: Vec<&String> = directory.teams.keys().collect();
    let mut text = String::new();
    for i in 0..600 {
        let type_name = RESOURCE_TYPES[i % RESOURCE_TYPES.len()].cedar;
        let action = ACTIONS[(i / 24) % ACTIONS.len()];
        text.push_str(&format!(
            "permit (principal in ZenML::Team::\"{}\", action == ZenML::Action::\"{action}\", resource is ZenML::{type_name});\n",
            teams[i % teams.len()]
        ));
    }
    let policies = PolicySet::from_str(&text).unwrap();
    let index = ScopeIndex::build(&policies, &snapshot.engine.schema, &snapshot.engine.entities).unwrap();
    let bob = directory.find_user("bob").unwrap().named.id.clone();
    let resource = Resource::parse(&format!(
        "{}:pipeline/{ID}",
        directory.find_project("churn").unwrap().named.id
    ))
    .unwrap();
    let question = Question {
        workspace_id: WORKSPACE,
        user_id: &bob,
        action: "read",
        resource: &resource,
    };
    let Prepared::Request(request, _) = snapshot
        .zenml()
        .unwrap()
        .prepare(
            &ShareSet::default(),
            &question,
            zenml_authz::zenml::ResourceAs::Written,
        )
        .unwrap()
    else {
        panic!("denied before evaluation")
    };
    let entities = (*snapshot.engine.entities)
        .clone()
        .add_entities(request.entities.cedar().iter().cloned(), None)
        .unwrap();
    let selected = index
        .select(&request.request, Over::Unindexed(&entities))
        .unwrap();
    // Keyed policies without a condition: settled as satisfied where their scope matches.
    let evaluated = selected.entity_keyed.map_or(0, |e| e.policies().count());
    let count = selected.type_level.set.policies().count() + evaluated + selected.keyed_satisfied.len();
    assert!((1..=5).contains(&count), "selected {count} of 600");
    assert_eq!(evaluated, 0, "settled, not evaluated");
}

/// Guards narrow the bundled policies to the roles the caller holds: bob (Workspace Developer
/// through his team) reading a pipeline in churn keeps only the developer grant, dave (Project
/// Developer on churn) the project developer grant, an active account never the deactivation
/// forbid, and nobody's read a role policy for a role they lack; the guards settle each answer.
#[test]
fn membership_guards_leave_only_the_callers_roles() {
    let snapshot = snapshot();
    let directory = snapshot.directory().unwrap();
    let index = ScopeIndex::build(
        &snapshot.engine.policies,
        &snapshot.engine.schema,
        &snapshot.engine.entities,
    )
    .unwrap();
    let churn = directory.find_project("churn").unwrap().named.id.clone();
    // (user, action, resource type, the policies left to evaluate; each condition is made of
    // guards, all known, so the index settles the answer without Cedar: allowed, and why)
    type Row<'a> = (&'a str, &'a str, &'a str, &'a [&'a str], bool, &'a [&'a str]);
    let table: [Row<'_>; 8] = [
        (
            "bob",
            "read",
            "pipeline",
            &["workspace-developer"],
            true,
            &["workspace-developer"],
        ),
        ("bob", "delete", "pipeline", &[], false, &[]),
        (
            "dave",
            "read",
            "pipeline",
            &["project-developer"],
            true,
            &["project-developer"],
        ),
        ("ada", "update", "pipeline", &["org-admin"], true, &["org-admin"]),
        ("grace", "read", "pipeline", &[], false, &[]),
        // frank holds the custom role model-promoter on churn (`principal in context.permissions`).
        (
            "frank",
            "promote",
            "model",
            &["custom-role-grid"],
            true,
            &["custom-role-grid"],
        ),
        ("bob", "promote", "model", &[], false, &[]),
        // A deactivated account (still Workspace Admin on paper): the forbid is kept, and decides.
        (
            "mallory",
            "read",
            "pipeline",
            &["deactivated-principal", "workspace-admin"],
            false,
            &["deactivated-principal"],
        ),
    ];
    for (user, action, resource_type, expected, allowed, reasons) in table {
        let resource = Resource::parse(&format!("{churn}:{resource_type}/{ID}")).unwrap();
        let user_id = directory.find_user(user).unwrap().named.id.clone();
        let question = Question {
            workspace_id: WORKSPACE,
            user_id: &user_id,
            action,
            resource: &resource,
        };
        let Prepared::Request(request, _) = snapshot
            .zenml()
            .unwrap()
            .prepare(&ShareSet::default(), &question, ResourceAs::StandIn)
            .unwrap()
        else {
            panic!("{user}: denied before evaluation")
        };
        // Read from the index's graph, and through Cedar: the same narrowing.
        let reads = request
            .request
            .context()
            .and_then(|context| index.read_context(context));
        assert!(reads.is_some());
        for (read, over) in [
            ("graph", Over::Indexed(&snapshot.engine.entities, None)),
            (
                "graph, context read beforehand",
                Over::Indexed(&snapshot.engine.entities, reads.as_ref()),
            ),
            ("cedar", Over::Unindexed(&snapshot.engine.entities)),
        ] {
            let selected = index.select(&request.request, over).unwrap();
            let mut ids: Vec<String> = selected
                .type_level
                .set
                .policies()
                .chain(selected.entity_keyed.iter().flat_map(|e| e.policies()))
                .map(|p| p.id().to_string())
                .collect();
            ids.sort();
            assert_eq!(ids, expected, "{user} {action}, read through {read}");
            // Settled: the satisfied permits of an allow, the satisfied forbids of a deny.
            let settled = selected.type_level.settled.as_ref();
            assert_eq!(
                settled.map(|s| (
                    s.allowed,
                    s.reasons.iter().map(String::as_str).collect::<Vec<_>>()
                )),
                Some((allowed, reasons.to_vec())),
                "{user} {action}, settled through {read}"
            );
        }
    }
}
