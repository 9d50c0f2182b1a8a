//! `zenml-authz who-can`: every user, service account and team that may do an action on a
//! resource.

use std::fmt::Write as _;

use super::questioner::{Questioner, Who};
use super::{
    CommandOutput, on_snapshot, open_shares, resolve_action, resolve_workspace, resolve_zenml_resource,
    zenml_decider,
};
use crate::cli::{WhoCanArgs, exit};
use crate::directory::User;
use crate::engine::Batch;
use crate::model::uid;
use crate::snapshot::Snapshot;
use crate::table::describe_policy;
use crate::zenml::{Resource, ShareSet};

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
pub fn who_may(
    snapshot: &Snapshot,
    shares: &ShareSet,
    workspace_id: &str,
    action: &str,
    resource: &Resource,
) -> Result<Vec<Grant>, String> {
    let decider = zenml_decider(snapshot)?;
    let directory = decider.directory();
    let questioner = Questioner::new(decider, shares);
    let mut batch = Batch::many();
    let question = (workspace_id, action, resource);
    let mut users: Vec<&User> = directory.users.values().collect();
    users.sort_by(|a, b| a.named.name.cmp(&b.named.name));
    let mut grants = Vec::new();
    for user in users {
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

/// `zenml-authz who-can`: one line per user, service account and team that may.
pub fn who_can(args: &WhoCanArgs) -> CommandOutput {
    on_snapshot(&args.sources.sources(), |snapshot| who_can_in(snapshot, args))
}

fn who_can_in(snapshot: &Snapshot, args: &WhoCanArgs) -> Result<CommandOutput, String> {
    let directory = zenml_decider(snapshot)?.directory();
    let action = resolve_action(&args.action)?;
    let resource = resolve_zenml_resource(snapshot, directory, &args.resource)?;
    let workspace = resolve_workspace(directory, args.workspace.as_deref(), Some(&resource))?;
    let shares = open_shares(args.shares_db.as_deref())?;
    let grants = who_may(snapshot, &shares.set, &workspace.named.id, action, &resource)?;
    let teams = grants.iter().filter(|g| g.kind == "team").count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "who can {action} {} in workspace {}: {} of {} users and service accounts, {teams} of {} teams",
        args.resource,
        workspace.named.name,
        grants.len() - teams,
        directory.users.len(),
        directory.teams.len()
    );
    let width = grants.iter().map(|g| g.name.len()).max().unwrap_or(0);
    for grant in &grants {
        let reasons: Vec<String> = grant
            .reasons
            .iter()
            .map(|id| describe_policy(snapshot, id))
            .collect();
        let _ = writeln!(
            out,
            "{:<15} {:<width$} {}",
            grant.kind,
            grant.name,
            reasons.join(", ")
        );
    }
    Ok(CommandOutput::answer(out, exit::OK))
}
