//! `zenml-authz what-can`: a user's bindings (direct and through teams) and, per workspace and
//! project, resource type → allowed actions.

use std::fmt::Write as _;

use super::{CommandOutput, describe_scope, find_user, on_snapshot, resolve_workspace, zenml_decider};
use crate::cli::{WhatCanArgs, exit};
use crate::directory::Workspace;
use crate::model::ACTIONS;
use crate::questions::{Questioner, Row, Subject, Who, bindings_of, grid_scopes};
use crate::snapshot::Snapshot;
use crate::zenml::ShareSet;

/// `zenml-authz what-can`: a user's bindings and, per scope, type → actions.
pub fn what_can(args: &WhatCanArgs) -> CommandOutput {
    on_snapshot(&args.sources.sources(), |snapshot| what_can_in(snapshot, args))
}

fn what_can_in(snapshot: &Snapshot, args: &WhatCanArgs) -> Result<CommandOutput, String> {
    let decider = zenml_decider(snapshot)?;
    let directory = decider.directory();
    let user = find_user(directory, &args.user)?;
    let workspaces: Vec<&Workspace> = match &args.workspace {
        Some(key) => vec![resolve_workspace(directory, Some(key), None)?],
        None => {
            let mut all: Vec<_> = directory.workspaces.values().collect();
            all.sort_by(|a, b| a.named.name.cmp(&b.named.name));
            all
        }
    };

    let mut out = String::new();
    let kind = if user.is_service_account {
        "service account"
    } else {
        "user"
    };
    let teams = directory.team_names(user);
    let status = if user.active { "" } else { ", deactivated" };
    let team_list = if teams.is_empty() {
        "none".to_owned()
    } else {
        teams.join(", ")
    };
    let _ = writeln!(
        out,
        "{}: {kind} {}{status}; teams: {team_list}",
        user.named.name, user.named.id
    );
    let mine = bindings_of(directory, Subject::User(user));
    if mine.is_empty() {
        let _ = writeln!(out, "bindings: none");
    } else {
        let _ = writeln!(out, "bindings:");
        for held in mine {
            let binding = held.binding;
            let custom = if directory.custom_role(&binding.role).is_some() {
                " (custom role)"
            } else {
                ""
            };
            let through = held
                .through
                .map(|t| format!(", through team {}", t.named.name))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {}{custom} at {}{through} ({}:{})",
                binding.role,
                describe_scope(directory, &binding.scope),
                binding.place.path.display(),
                binding.place.line
            );
        }
    }

    let shares = ShareSet::default();
    let questioner = Questioner::new(decider, &shares);
    let who = Who::User(&user.named.id);
    for scope in grid_scopes(directory, &workspaces) {
        let rows = questioner.grid(who, scope)?;
        let title = describe_scope(directory, &scope.binding_scope());
        render_grid(&mut out, &title, &rows);
    }
    Ok(CommandOutput::answer(out, exit::OK))
}

fn render_grid(out: &mut String, title: &str, rows: &[Row]) {
    let actions = |list: &[&str]| {
        if list.len() == ACTIONS.len() {
            "all".to_owned()
        } else {
            list.join(" ")
        }
    };
    let granted: Vec<_> = rows.iter().filter(|(_, list)| !list.is_empty()).collect();
    if granted.is_empty() {
        let _ = writeln!(out, "{title}: nothing");
        return;
    }
    let _ = writeln!(out, "{title}:");
    if granted.len() == rows.len() && rows.iter().all(|(_, list)| *list == rows[0].1) {
        let _ = writeln!(out, "  every type: {}", actions(&rows[0].1));
        return;
    }
    for (label, list) in granted {
        let _ = writeln!(out, "  {label:<20} {}", actions(list));
    }
}
