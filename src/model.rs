//! ZenML's vocabulary (`src/zenml/zen_server/rbac/models.py`): its resource types and actions,
//! and the names of the `ZenML` entity types. A leaf: every layer may use it, it uses none.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{EntityId, EntityTypeName, EntityUid};

/// One ZenML resource type: its wire string, its Cedar entity type and its scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceType {
    /// The `ResourceType` string ZenML sends, e.g. `pipeline_run`.
    pub wire: &'static str,
    /// The entity type in the `ZenML` namespace, e.g. `PipelineRun`.
    pub cedar: &'static str,
    /// Whether instances live in a project (`Resource.project_id` is required) or in the workspace.
    pub project_scoped: bool,
}

const fn project(wire: &'static str, cedar: &'static str) -> ResourceType {
    ResourceType {
        wire,
        cedar,
        project_scoped: true,
    }
}

const fn global(wire: &'static str, cedar: &'static str) -> ResourceType {
    ResourceType {
        wire,
        cedar,
        project_scoped: false,
    }
}

/// All 24 resource types of zenml 0.98 (`is_project_scoped()` is false exactly for the globals).
pub const RESOURCE_TYPES: [ResourceType; 24] = [
    project("artifact", "Artifact"),
    project("artifact_version", "ArtifactVersion"),
    project("code_repository", "CodeRepository"),
    global("flavor", "Flavor"),
    project("model", "Model"),
    project("model_version", "ModelVersion"),
    project("pipeline", "Pipeline"),
    project("pipeline_run", "PipelineRun"),
    project("pipeline_deployment", "PipelineDeployment"),
    project("pipeline_build", "PipelineBuild"),
    project("deployment", "Deployment"),
    project("schedule", "Schedule"),
    project("run_template", "RunTemplate"),
    project("service", "Service"),
    project("run_metadata", "RunMetadata"),
    global("secret", "Secret"),
    global("service_account", "ServiceAccount"),
    global("service_connector", "ServiceConnector"),
    global("stack", "Stack"),
    global("stack_component", "StackComponent"),
    global("tag", "Tag"),
    global("project", "Project"),
    project("trigger", "Trigger"),
    project("webhook", "Webhook"),
];

/// The `project` resource type, which is also the project scope.
pub const PROJECT: ResourceType = global("project", "Project");

impl ResourceType {
    /// The type with this wire string, if ZenML 0.98 has it.
    pub fn from_wire(wire: &str) -> Option<ResourceType> {
        RESOURCE_TYPES.iter().copied().find(|t| t.wire == wire)
    }

    /// `ZenML::<Cedar name>`.
    pub fn entity_type(&self) -> String {
        format!("ZenML::{}", self.cedar)
    }
}

/// The ten ZenML actions (`Action` StrEnum).
pub const ACTIONS: [&str; 10] = [
    "create",
    "read",
    "update",
    "delete",
    "read_secret_value",
    "prune",
    "client",
    "promote",
    "backup_restore",
    "share",
];

/// Action groups of the schema, usable in custom role grids: group name -> members.
pub const ACTION_GROUPS: [(&str, &[&str]); 2] = [
    ("write", &["create", "update", "delete", "prune"]),
    ("*", &ACTIONS),
];

/// The ZenML action with this name, if any.
pub fn action_from_wire(name: &str) -> Option<&'static str> {
    ACTIONS.iter().copied().find(|a| *a == name)
}

/// The actions a grid entry (`read`, `write`, `*`) stands for.
pub fn expand_action(name: &str) -> Option<Vec<&'static str>> {
    if let Some(action) = action_from_wire(name) {
        return Some(vec![action]);
    }
    ACTION_GROUPS
        .iter()
        .find(|(group, _)| *group == name)
        .map(|(_, members)| members.to_vec())
}

/// Every `ZenML::` entity type this crate names, parsed once: `EntityTypeName::from_str`
/// runs Cedar's parser, far too slow for every request.
static TYPE_NAMES: LazyLock<HashMap<&'static str, EntityTypeName, rustc_hash::FxBuildHasher>> =
    LazyLock::new(|| {
        let fixed = [
            "User",
            "Team",
            "Role",
            "Organization",
            "Workspace",
            "Project",
            "Action",
        ];
        fixed
            .into_iter()
            .chain(RESOURCE_TYPES.iter().map(|t| t.cedar))
            .filter_map(|name| Some((name, EntityTypeName::from_str(&format!("ZenML::{name}")).ok()?)))
            .collect()
    });

/// The entity uid `ZenML::<type>::"<id>"` for one of the model's types.
pub fn uid(type_name: &str, id: &str) -> EntityUid {
    EntityUid::from_type_name_and_id(self::type_name(type_name), EntityId::new(id))
}

/// Every action of [`ACTIONS`] as `ZenML::Action::"<action>"`, made once.
static ACTION_UIDS: LazyLock<HashMap<&'static str, EntityUid, rustc_hash::FxBuildHasher>> =
    LazyLock::new(|| {
        ACTIONS
            .iter()
            .map(|action| (*action, uid("Action", action)))
            .collect()
    });

/// `ZenML::Action::"<action>"`.
pub fn action_uid(action: &str) -> EntityUid {
    ACTION_UIDS
        .get(action)
        .cloned()
        .unwrap_or_else(|| uid("Action", action))
}

/// The entity type `ZenML::<type>`.
pub fn type_name(name: &str) -> EntityTypeName {
    match TYPE_NAMES.get(name) {
        Some(parsed) => parsed.clone(),
        None => EntityTypeName::from_str(&format!("ZenML::{name}")).unwrap_or_else(|_| unknown_type()),
    }
}

#[allow(clippy::expect_used, reason = "a literal, valid type name")]
fn unknown_type() -> EntityTypeName {
    EntityTypeName::from_str("ZenML::Unknown").expect("valid type name")
}

/// A UUID in its canonical form (hyphenated, lower case), written without the formatting
/// machinery (a page of resources has a UUID or two each); `None` when `value` is no UUID.
pub fn canonical_uuid(value: &str) -> Option<String> {
    let parsed = uuid::Uuid::parse_str(value).ok()?;
    Some(
        parsed
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            .to_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The canonical form is uuid's own, for every form (canonical, upper case, no hyphens,
    /// braces, URN, invalid) as uuid parses and writes it.
    #[test]
    fn uuids_are_written_as_uuid_writes_them() {
        let mut inputs: Vec<String> = [
            "dccff1d9-afc7-4c24-b5e8-e887447c69c0",
            "DCCFF1D9-AFC7-4C24-B5E8-E887447C69C0",
            "dccff1d9afc74c24b5e8e887447c69c0",
            "{dccff1d9-afc7-4c24-b5e8-e887447c69c0}",
            "urn:uuid:dccff1d9-afc7-4c24-b5e8-e887447c69c0",
            "dccff1d9-afc7-4c24-b5e8-e887447c69cg",
            "dccff1d9-afc7-4c24-b5e8e-887447c69c0",
            "dccff1d9-afc7-4c24-b5e8-e887447c69c",
            "",
        ]
        .map(str::to_owned)
        .to_vec();
        // And strings of 36 characters (a fixed seed): half from lower-case hex digits, half also
        // from upper case, hyphens and a letter that is no digit.
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        for round in 0..2000u32 {
            let alphabet: &[u8] = if round.is_multiple_of(2) {
                b"0123456789abcdef"
            } else {
                b"0123456789abcdefABF-g"
            };
            let text: String = (0..36)
                .map(|at| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    // Mostly a well-placed hyphen, so that many are valid.
                    if [8, 13, 18, 23].contains(&at) && !state.is_multiple_of(8) {
                        '-'
                    } else {
                        char::from(alphabet[(state % alphabet.len() as u64) as usize])
                    }
                })
                .collect();
            inputs.push(text);
        }
        let mut valid = 0;
        for input in &inputs {
            let expected = uuid::Uuid::parse_str(input)
                .ok()
                .map(|u| u.hyphenated().to_string());
            valid += usize::from(expected.is_some());
            assert_eq!(canonical_uuid(input), expected, "{input}");
        }
        assert!(valid > 500, "{valid} valid inputs");
    }
}
