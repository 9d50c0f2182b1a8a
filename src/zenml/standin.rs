//! Stand-in resources: the ZenML decision path without request-scoped entities.
//!
//! A ZenML resource (`<project>:model/<uuid>`, or the whole type) is not in the directory; its
//! only data is where it lives: `{workspace, project}` and its project (or workspace) as parent.
//! Evaluating it as a request-scoped entity means building a per-request entity slice, which
//! costs Cedar a transitive-closure pass over the slice on every decision (most of a decision's
//! time). Instead every snapshot stores one *stand-in* entity per (scope, resource type), with
//! exactly that data, id `"<scope id>/*"`, and the ZenML path evaluates the request with the
//! stand-in as its resource: no slice, the shared store only.
//!
//! Architecture Invariant: a stand-in gives exactly the decision, determining policies and
//! errors the real resource would. It carries the same attributes and ancestors, and a policy
//! can tell two entities of one type apart only by comparing them with another entity value of
//! that type, so stand-ins are used only when no policy literal and no stored attribute names
//! an entity of a stand-in type ([`applicable`]); otherwise every question takes the slice path.
//! Errors naming the stand-in are rewritten to name the real resource (`engine::decide`). The
//! differential test `tests/decisions.rs` compares both paths on every decision-table row.

use std::collections::{HashMap, HashSet};

use cedar_policy::{Entity, EntityTypeName, EntityUid, RestrictedExpression};

use crate::directory::Directory;
use crate::model::{RESOURCE_TYPES, ResourceType};
use crate::model::{type_name, uid};

/// The id of the stand-in for resources in `scope` (a project or workspace id).
pub(crate) fn id(scope: &str) -> String {
    format!("{scope}/*")
}

/// The entity of a ZenML resource `resource` in `workspace` and, for project-scoped resources,
/// `project`. The one definition of a resource's data, shared by requests and stand-ins.
pub(crate) fn resource_entity(
    resource: EntityUid,
    workspace: &EntityUid,
    project: Option<&EntityUid>,
) -> Result<Entity, String> {
    let mut attrs = HashMap::from([(
        "workspace".to_owned(),
        RestrictedExpression::new_entity_uid(workspace.clone()),
    )]);
    let parent = match project {
        Some(project) => {
            attrs.insert(
                "project".to_owned(),
                RestrictedExpression::new_entity_uid(project.clone()),
            );
            project.clone()
        }
        None => workspace.clone(),
    };
    Entity::new(resource, attrs, HashSet::from([parent])).map_err(|error| format!("resource entity: {error}"))
}

/// The stand-in types: every ZenML resource type but `Project` (projects are directory
/// entities); project-scoped ones have stand-ins in projects, global ones in workspaces.
fn types(project_scoped: bool) -> impl Iterator<Item = &'static str> {
    RESOURCE_TYPES
        .iter()
        .filter(move |t| t.cedar != "Project" && t.project_scoped == project_scoped)
        .map(|t| t.cedar)
}

/// Whether `uid` has the shape of a stand-in: an id `"<scope>/*"` and a stand-in type. (Whether
/// one is stored is the engine's to say: `Engine::is_internal`.)
pub(crate) fn has_stand_in_shape(uid: &EntityUid) -> bool {
    uid.id().unescaped().ends_with("/*")
        && uid.type_name().namespace() == "ZenML"
        && RESOURCE_TYPES
            .iter()
            .any(|t| t.cedar != "Project" && t.cedar == uid.type_name().basename())
}

/// Whether a resource of `resource_type` in a project (`in_project`) or not has a stand-in.
pub(crate) fn exists(resource_type: &ResourceType, in_project: bool) -> bool {
    resource_type.cedar != "Project" && resource_type.project_scoped == in_project
}

/// Whether stand-ins are exact for these policies and stored entities: nothing names an entity
/// of a stand-in type.
pub(crate) fn applicable<'a>(
    policy_literals: impl IntoIterator<Item = &'a EntityUid>,
    attribute_refs: &HashMap<EntityUid, Vec<EntityUid>>,
) -> bool {
    let names: HashSet<EntityTypeName> = types(true).chain(types(false)).map(type_name).collect();
    let is_resource = |uid: &EntityUid| names.contains(uid.type_name());
    !policy_literals.into_iter().any(is_resource) && !attribute_refs.values().flatten().any(is_resource)
}

/// One stand-in per (workspace, type) and (project, type) of the directory.
pub(crate) fn entities(directory: &Directory) -> Result<Vec<Entity>, String> {
    let mut out = Vec::with_capacity((directory.workspaces.len() + directory.projects.len()) * 23);
    for workspace_id in directory.workspaces.keys() {
        let workspace = uid("Workspace", workspace_id);
        for name in types(false) {
            out.push(resource_entity(uid(name, &id(workspace_id)), &workspace, None)?);
        }
    }
    for (project_id, project) in &directory.projects {
        let workspace = uid("Workspace", &project.workspace_id);
        let project_uid = uid("Project", project_id);
        for name in types(true) {
            out.push(resource_entity(
                uid(name, &id(project_id)),
                &workspace,
                Some(&project_uid),
            )?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stand_ins_are_off_when_anything_names_a_resource_entity() {
        let model = uid("Model", "m");
        let (project, team) = (uid("Project", "p"), uid("Team", "t"));
        type Refs = HashMap<EntityUid, Vec<EntityUid>>;
        let refs = |pairs: &[(&EntityUid, &EntityUid)]| -> Refs {
            pairs
                .iter()
                .map(|(from, to)| ((*from).clone(), vec![(*to).clone()]))
                .collect()
        };
        let table: [(&[&EntityUid], Refs, bool); 5] = [
            (&[], refs(&[]), true),
            (&[&project, &team], refs(&[(&team, &project)]), true),
            (&[&model], refs(&[]), false),
            (&[&uid("Stack", "s")], refs(&[]), false),
            (&[&team], refs(&[(&team, &model)]), false),
        ];
        for (i, (literals, attribute_refs, expected)) in table.into_iter().enumerate() {
            assert_eq!(
                applicable(literals.iter().copied(), &attribute_refs),
                expected,
                "row {i}"
            );
        }
    }
}
