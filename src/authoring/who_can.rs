//! `zenml-authz who-can`: every user, service account and team that may do an action on a
//! resource.

use std::fmt::Write as _;

use super::{
    CommandOutput, on_snapshot, open_shares, resolve_action, resolve_workspace, resolve_zenml_resource,
    zenml_decider,
};
use crate::cli::{WhoCanArgs, exit};
use crate::questions::who_may;
use crate::snapshot::Snapshot;
use crate::table::describe_policy;

/// `zenml-authz who-can`: one line per user, service account and team that may.
pub fn who_can(args: &WhoCanArgs) -> CommandOutput {
    on_snapshot(&args.sources.sources(), |snapshot| who_can_in(snapshot, args))
}

fn who_can_in(snapshot: &Snapshot, args: &WhoCanArgs) -> Result<CommandOutput, String> {
    let decider = zenml_decider(snapshot)?;
    let directory = decider.directory();
    let action = resolve_action(&args.action)?;
    let resource = resolve_zenml_resource(directory, &args.resource)?;
    let workspace = resolve_workspace(directory, args.workspace.as_deref(), Some(&resource))?;
    let shares = open_shares(args.shares_db.as_deref())?;
    let question = (workspace.named.id.as_str(), action, &resource);
    let grants = who_may(decider, &shares.set, question, &|| true)?;
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
