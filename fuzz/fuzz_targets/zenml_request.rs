//! The ZenML request path: a `check_permissions` body (a JSON array of resource strings) ->
//! `Resource::parse_wire` -> a `Question` -> `Decider::prepare` (as written, or with its
//! stand-in) -> `Engine::decide`, under the bundled sample snapshot and a
//! `ShareSet` the input fills.
//!
//! Input layout (`Header` is decoded with `arbitrary`, one byte per field, in order):
//! `workspace, user, action, share[0..4]`, then the body. Each of `workspace`, `user`, `action`
//! picks (modulo) from the sample's workspaces / users and service accounts / ZenML actions,
//! plus one unknown and one empty value. The body is a JSON array of strings when it starts
//! with `[` (the POST form; any other JSON is a 400 and skipped), else UTF-8 lines (the GET
//! form's repeated `resources=`). At most 8 resources per input.
//!
//! `share[i]`, for the i-th resource that parses and names one instance, shares it in the
//! question's workspace before anything is asked: bits 0-1 pick the grantee (none, the caller,
//! the caller's first team or a team of the sample, a sample user), bit 2 adds the asked
//! action, bits 3-6 (1..=10) add `ACTIONS[n-1]`.
//!
//! Asserts, beyond not panicking:
//! * `ResourceAs::Written` (the resource as a request-scoped entity, decided over a slice) and
//!   `ResourceAs::StandIn` (its stand-in, over the store) give the same outcome: the same
//!   deny-before-evaluation message, or the same decision, determining policies and errors;
//! * that decision equals Cedar's own answer (every policy, the whole store plus the
//!   request-scoped entities), which checks the stand-in, index graph and slice paths at once;
//! * an item of a batch (one `Batch::many()` across the body, as the API does) is decided as
//!   when asked alone;
//! * a type-level resource's `allowed_ids` is `None` exactly when the type-level check
//!   allows, and lists only ids whose instance check allows.
//!
//! Not covered: the share body (`POST /rbac/resource_members`): its decoder (`MembershipBody`)
//! is private to `http::zenml`; shares enter through the public `ShareSet::set` instead.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use zenml_authz::engine::Batch;
use zenml_authz::model::ACTIONS;
use zenml_authz::zenml::{DecisionError, Grantee, Prepared, Question, Resource, ResourceAs, ShareSet};
use zenml_authz_fuzz::{SAMPLE, reference};

const MAX_BYTES: usize = 64 * 1024;
const MAX_RESOURCES: usize = 8;
/// Nobody in the sample directory.
const STRANGER: &str = "0f0f0f0f-0f0f-4f0f-8f0f-0f0f0f0f0f0f";

#[derive(Arbitrary, Debug)]
struct Header {
    workspace: u8,
    user: u8,
    action: u8,
    share: [u8; 4],
}

fn pick<'a>(known: &'a [String], extra: &[&'a str], at: u8) -> &'a str {
    let at = usize::from(at) % (known.len() + extra.len());
    match known.get(at) {
        Some(value) => value,
        None => extra[at - known.len()],
    }
}

fn outcome(prepared: &Result<Prepared, DecisionError>) -> String {
    match prepared {
        Ok(Prepared::Request(..)) => "request".into(),
        Ok(Prepared::Denied(why)) => format!("denied: {why}"),
        Err(error) => format!("error: {error}"),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_BYTES {
        return;
    }
    let mut input = Unstructured::new(data);
    let Ok(header) = Header::arbitrary(&mut input) else {
        return;
    };
    let body = input.take_rest();
    let raws: Vec<String> = if body.first() == Some(&b'[') {
        match serde_json::from_slice::<Vec<String>>(body) {
            Ok(raws) => raws,
            Err(_) => return,
        }
    } else {
        match std::str::from_utf8(body) {
            Ok(text) => text.lines().map(str::to_owned).collect(),
            Err(_) => return,
        }
    };

    let snapshot = &*SAMPLE;
    let Some(directory) = snapshot.directory() else {
        panic!("the sample is a ZenML directory");
    };
    let mut workspaces: Vec<String> = directory.workspaces.keys().cloned().collect();
    let mut users: Vec<String> = directory.users.keys().cloned().collect();
    users.sort();
    let teams: Vec<String> = directory.teams.keys().cloned().collect();
    let actions: Vec<String> = ACTIONS.iter().map(|a| (*a).to_owned()).collect();
    workspaces.sort();
    let workspace = pick(&workspaces, &[STRANGER, ""], header.workspace);
    let user_id = pick(&users, &[STRANGER, ""], header.user);
    let action = pick(&actions, &["fly", ""], header.action);

    let resources: Vec<Resource> = raws
        .iter()
        .take(MAX_RESOURCES)
        .filter_map(|raw| match Resource::parse_wire(raw) {
            // Another server's tenant-era string is answered `false` without a question.
            Ok((Some(server), _)) if server != workspace => None,
            Ok((_, resource)) => Some(resource),
            // The API answers 400 for the whole body; the other strings are still worth asking.
            Err(_) => None,
        })
        .collect();

    let mut shares = ShareSet::default();
    let caller_team = directory.users.get(user_id).and_then(|u| u.teams.first());
    for (resource, share) in resources.iter().filter(|r| r.id.is_some()).zip(header.share) {
        let grantee = match share & 0b11 {
            0 => continue,
            1 => Grantee::User(user_id.to_owned()),
            2 => Grantee::Team(
                caller_team
                    .cloned()
                    .unwrap_or_else(|| teams[usize::from(share >> 3) % teams.len()].clone()),
            ),
            _ => Grantee::User(users[usize::from(share >> 3) % users.len()].clone()),
        };
        let mut granted = Vec::new();
        if share & 0b100 != 0 {
            granted.push(action.to_owned());
        }
        if let Some(extra) = usize::from((share >> 3) & 0b1111)
            .checked_sub(1)
            .and_then(|i| ACTIONS.get(i))
        {
            granted.push((*extra).to_owned());
        }
        shares.set(workspace, resource, grantee, granted);
    }

    let decider = snapshot.zenml().expect("a ZenML directory");
    let mut memo = Batch::many();
    for resource in &resources {
        let question = Question {
            workspace_id: workspace,
            user_id,
            action,
            resource,
        };
        let as_written = decider.prepare(&shares, &question, ResourceAs::Written);
        let for_decision = decider.prepare(&shares, &question, ResourceAs::StandIn);
        let single = decider.decide(&shares, &question, &mut Batch::single());
        let batched = decider.decide(&shares, &question, &mut memo);
        assert_eq!(
            single, batched,
            "batch and single decisions differ for {resource}"
        );
        match (&as_written, &for_decision) {
            (Ok(Prepared::Request(written, _)), Ok(Prepared::Request(standin, alias))) => {
                let written_decision = decider.decide_prepared(written, None, &mut Batch::single());
                let standin_decision =
                    decider.decide_prepared(standin, alias.as_deref(), &mut Batch::single());
                assert_eq!(
                    written_decision, standin_decision,
                    "stand-in and real resource decide differently for {question:?}"
                );
                // With the equality above, this also checks the slice path against Cedar
                // (a reference for each would cost a copy of the whole store per question).
                assert_eq!(
                    standin_decision.clone().map_err(|e| e.to_string()),
                    reference(snapshot, standin, alias.as_deref()),
                    "engine (stand-in) and Cedar disagree for {question:?}"
                );
                assert_eq!(
                    single.as_ref().ok(),
                    standin_decision.as_ref().ok(),
                    "Decider::decide differs from its prepared request for {question:?}"
                );
            }
            (Ok(Prepared::Denied(a)), Ok(Prepared::Denied(b))) => {
                assert_eq!(a, b);
                assert!(
                    single.as_ref().is_ok_and(|d| !d.allowed),
                    "a denied question allowed"
                );
            }
            (Err(_), Err(_)) => assert!(single.is_err(), "an unpreparable question decided"),
            _ => panic!(
                "written: {}, stand-in: {} for {question:?}",
                outcome(&as_written),
                outcome(&for_decision)
            ),
        }

        if resource.id.is_none() {
            let type_level = single.as_ref().is_ok_and(|d| d.allowed);
            let listed = decider.allowed_ids_decided(&shares, &question);
            match listed {
                None => assert!(type_level, "full access without a type-level allow: {question:?}"),
                Some(ids) => {
                    assert!(!type_level, "type-level allow without full access: {question:?}");
                    for id in ids {
                        let instance = Resource {
                            id: Some(id.clone()),
                            ..resource.clone()
                        };
                        let allowed = decider
                            .decide(
                                &shares,
                                &Question {
                                    resource: &instance,
                                    ..question
                                },
                                &mut Batch::single(),
                            )
                            .is_ok_and(|d| d.allowed);
                        assert!(allowed, "allowed_ids lists {id} whose check denies: {question:?}");
                    }
                }
            }
        }
    }
});
