//! `zenml-authz authorize`: one decision, explained, in Cedar terms or in ZenML terms.

use std::collections::HashSet;
use std::fmt::Write as _;

use cedar_policy::{Entity, EntityUid, Request};
use serde_json::{Value, json};

use super::{
    CommandOutput, decision_code, explain, find_user, on_snapshot, open_shares, resolve_action,
    resolve_workspace, resolve_zenml_resource, verdict, zenml_decider,
};
use crate::cli::AuthorizeArgs;
use crate::engine::{Batch, Decision};
use crate::model::uid;
use crate::snapshot::Snapshot;
use crate::zenml::{Prepared, Question, ResourceAs};

/// `zenml-authz authorize`: one decision, explained.
pub fn authorize(args: &AuthorizeArgs) -> CommandOutput {
    on_snapshot(&args.sources.sources(), |snapshot| {
        match (&args.principal, &args.user) {
            (Some(principal), None) => authorize_cedar(snapshot, args, principal),
            (None, Some(user)) => authorize_zenml(snapshot, args, user),
            _ => Err("give exactly one of `--principal` (Cedar terms) or `--user` (ZenML terms)".into()),
        }
    })
}

/// A command-line JSON value: the text itself, or `@path` for a file's contents.
fn json_arg(flag: &str, text: Option<&str>) -> Result<Value, String> {
    let Some(text) = text else {
        return Ok(Value::Null);
    };
    let text = match text.strip_prefix('@') {
        Some(path) => {
            std::fs::read_to_string(path).map_err(|error| format!("`{flag}`: `{path}`: {error}"))?
        }
        None => text.to_owned(),
    };
    serde_json::from_str(&text).map_err(|error| format!("`{flag}`: not JSON: {error}"))
}

/// An entity reference from the command line: `Type::"id"`, or its JSON object forms.
fn reference_arg(text: &str) -> Value {
    match serde_json::from_str::<Value>(text) {
        Ok(value @ Value::Object(_)) => value,
        _ => Value::String(text.to_owned()),
    }
}

fn authorize_cedar(
    snapshot: &Snapshot,
    args: &AuthorizeArgs,
    principal: &str,
) -> Result<CommandOutput, String> {
    if args.workspace.is_some() {
        return Err(
            "`--workspace` goes with `--user` (ZenML terms); a Cedar request names its entities itself"
                .into(),
        );
    }
    // A bare action name is the `ZenML` action of that name.
    let action = if args.action.contains("::") || args.action.trim_start().starts_with('{') {
        reference_arg(&args.action)
    } else {
        json!({"type": "ZenML::Action", "id": args.action})
    };
    let body = json!({
        "principal": reference_arg(principal),
        "action": action,
        "resource": reference_arg(&args.resource),
        "context": json_arg("--context", args.context.as_deref())?,
        "additional_entities": json_arg("--entities", args.entities.as_deref())?,
    });
    let request = crate::http::parse_request(snapshot, &body, &crate::config::Limits::default())?;
    let decision = snapshot
        .engine
        .decide(&request, &mut Batch::single())
        .map_err(|error| error.to_string())?;

    let mut out = String::new();
    let _ = writeln!(out, "{}", verdict(decision.allowed));
    let named = |uid: Option<&EntityUid>| uid.map(ToString::to_string).unwrap_or_default();
    let known = request
        .request
        .principal()
        .and_then(|p| snapshot.directory()?.users.get(p.id().unescaped()))
        .map(|user| format!(" ({})", user.named.name))
        .unwrap_or_default();
    let _ = writeln!(out, "principal: {}{known}", named(request.request.principal()));
    let _ = writeln!(out, "action: {}", named(request.request.action()));
    let _ = writeln!(out, "resource: {}", named(request.request.resource()));
    explain(snapshot, &decision, &mut out);
    // Entities the evaluation could not find are the usual reason for a surprising deny.
    let scoped: HashSet<EntityUid> = request.entities.cedar().iter().map(Entity::uid).collect();
    for (field, uid) in [
        ("principal", request.request.principal()),
        ("resource", request.request.resource()),
    ] {
        let Some(uid) = uid else { continue };
        if snapshot.engine.entities.get(uid).is_some() || scoped.contains(uid) {
            continue;
        }
        let mut note = format!("note: {field} `{uid}` is not in the directory");
        let id = uid.id().unescaped();
        if field == "principal"
            && let Some(user) = snapshot.directory().and_then(|d| d.find_user(id))
        {
            let _ = write!(note, " (`{id}` is `{}`)", uid_of("User", &user.named.id));
        } else if field == "resource" {
            note.push_str(" (pass it with `--entities`, or ask in ZenML terms with `--user`)");
        }
        let _ = writeln!(out, "{note}");
    }
    Ok(CommandOutput::answer(out, decision_code(decision.allowed)))
}

fn uid_of(type_name: &str, id: &str) -> String {
    uid(type_name, id).to_string()
}

fn authorize_zenml(
    snapshot: &Snapshot,
    args: &AuthorizeArgs,
    user_key: &str,
) -> Result<CommandOutput, String> {
    if args.context.is_some() || args.entities.is_some() {
        return Err(
            "`--context` and `--entities` go with `--principal` (Cedar terms); in ZenML terms they are built from the directory".into(),
        );
    }
    let decider = zenml_decider(snapshot)?;
    let directory = decider.directory();
    let user = find_user(directory, user_key)?;
    let action = resolve_action(&args.action)?;
    let resource = resolve_zenml_resource(directory, &args.resource)?;
    let workspace = resolve_workspace(directory, args.workspace.as_deref(), Some(&resource))?;
    let shares = open_shares(args.shares_db.as_deref())?;
    let question = Question {
        workspace_id: &workspace.named.id,
        user_id: &user.named.id,
        action,
        resource: &resource,
    };
    let prepared = decider
        .prepare(&shares.set, &question, ResourceAs::Written)
        .map_err(|error| error.to_string())?;
    let kind = if user.is_service_account {
        "service account"
    } else {
        "user"
    };
    let mut out = String::new();
    let (decision, cedar) = match &prepared {
        Prepared::Request(request, alias) => (
            decider
                .decide_prepared(request, alias.as_deref(), &mut Batch::single())
                .map_err(|error| error.to_string())?,
            Some(&request.request),
        ),
        Prepared::Denied(why) => (
            Decision {
                allowed: false,
                reasons: Vec::new(),
                errors: vec![format!("denied before evaluation: {why}")],
            },
            None,
        ),
    };
    let _ = writeln!(out, "{}", verdict(decision.allowed));
    let _ = writeln!(
        out,
        "principal: {} ({kind} {})",
        uid_of("User", &user.named.id),
        user.named.name
    );
    let _ = writeln!(out, "action: {}", uid_of("Action", action));
    let resource_uid = match (cedar.and_then(Request::resource), resource.resource_type()) {
        (Some(cedar), _) => cedar.to_string(),
        (None, Some(known)) => uid_of(known.cedar, resource.id.as_deref().unwrap_or("*")),
        (None, None) => resource.to_string(),
    };
    let _ = writeln!(out, "resource: {resource_uid} ({})", args.resource);
    let _ = writeln!(
        out,
        "workspace: {} ({})",
        workspace.named.name, workspace.named.id
    );
    explain(snapshot, &decision, &mut out);
    Ok(CommandOutput::answer(out, decision_code(decision.allowed)))
}

// ---- synthetic principals -------------------------------------------------------------
