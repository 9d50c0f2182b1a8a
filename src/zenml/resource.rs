//! ZenML resource strings (`src/zenml/zen_server/rbac/models.py`).
//!
//! A resource string is `[<project_uuid>:]<type>[/<resource_uuid>]`: parsed exactly like
//! ZenML's `Resource.parse` (split once on the first `:`, then on `/`), and always echoed back
//! byte for byte by the API, never re-rendered.

use std::fmt;

use crate::model::ResourceType;

/// What a resource string names, once parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The project, for project-scoped types.
    pub project_id: Option<String>,
    /// The type's wire string as sent (it may be a type this version does not know).
    pub type_name: String,
    /// The resource's id; `None` for type-level questions (create, list, prune).
    pub id: Option<String>,
}

/// Why a resource string cannot be a ZenML resource.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// Empty type, empty id, extra separators.
    #[error("resource `{0}`: expected `[<project_uuid>:]<type>[/<resource_uuid>]`")]
    Syntax(String),
    /// A project or resource id that is not a UUID.
    #[error("resource `{input}`: `{value}` is not a UUID")]
    NotUuid {
        /// The whole resource string.
        input: String,
        /// The offending part.
        value: String,
    },
    /// A project-scoped type without a project, or a global type with one.
    #[error("resource `{input}`: type `{type_name}` {reason}")]
    Scope {
        /// The whole resource string.
        input: String,
        /// The resource type.
        type_name: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl Resource {
    /// Parses like ZenML's `Resource.parse`. Unknown types parse (they are denied, not errors);
    /// a known type must have a project exactly when it is project-scoped.
    pub fn parse(input: &str) -> Result<Resource, ResourceError> {
        let syntax = || ResourceError::Syntax(input.to_owned());
        let (project_id, rest) = match input.split_once(':') {
            Some((project, rest)) => (Some(project), rest),
            None => (None, input),
        };
        let (type_name, id) = match rest.split_once('/') {
            Some((type_name, id)) => (type_name, Some(id)),
            None => (rest, None),
        };
        let valid_type = !type_name.is_empty()
            && type_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit());
        if !valid_type || id.is_some_and(|id| id.contains('/')) {
            return Err(syntax());
        }
        let uuid = |value: &str| -> Result<String, ResourceError> {
            crate::model::canonical_uuid(value).ok_or_else(|| ResourceError::NotUuid {
                input: input.to_owned(),
                value: value.to_owned(),
            })
        };
        let project_id = project_id.map(uuid).transpose()?;
        let id = id.map(uuid).transpose()?;
        if let Some(known) = ResourceType::from_wire(type_name) {
            let reason = match (known.project_scoped, project_id.is_some()) {
                (true, false) => Some("is project-scoped and needs `<project_uuid>:`"),
                (false, true) => Some("is global and takes no project"),
                _ => None,
            };
            if let Some(reason) = reason {
                return Err(ResourceError::Scope {
                    input: input.to_owned(),
                    type_name: type_name.to_owned(),
                    reason,
                });
            }
        }
        Ok(Resource {
            project_id,
            type_name: type_name.to_owned(),
            id,
        })
    }

    /// Parses any wire form ZenML has used: the current `[<project>:]<type>[/<id>]`, or the
    /// tenant-era `<server_id>@server:<type>[/<id>]` of ZenML <= 0.75, which names the server
    /// (workspace) and no project. Returns the server id of the tenant-era form.
    pub fn parse_wire(input: &str) -> Result<(Option<String>, Resource), ResourceError> {
        let Some((server, rest)) = input.split_once("@server:") else {
            return Resource::parse(input).map(|resource| (None, resource));
        };
        let server = crate::model::canonical_uuid(server).ok_or_else(|| ResourceError::NotUuid {
            input: input.to_owned(),
            value: server.to_owned(),
        })?;
        // Reuse the current parser on a global-looking remainder, then drop its scope check:
        // in the tenant era every type lived directly in the server.
        let (type_name, id) = match rest.split_once('/') {
            Some((type_name, id)) => (type_name, Some(id)),
            None => (rest, None),
        };
        let probe = match id {
            Some(id) => format!("tag/{id}"),
            None => "tag".to_owned(),
        };
        let parsed = Resource::parse(&probe).map_err(|_| ResourceError::Syntax(input.to_owned()))?;
        let valid_type = !type_name.is_empty()
            && type_name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit());
        if !valid_type {
            return Err(ResourceError::Syntax(input.to_owned()));
        }
        Ok((
            Some(server),
            Resource {
                project_id: None,
                type_name: type_name.to_owned(),
                id: parsed.id,
            },
        ))
    }

    /// The resource type, if this ZenML version has it.
    pub fn resource_type(&self) -> Option<ResourceType> {
        ResourceType::from_wire(&self.type_name)
    }

    /// The project this resource is in, or is (`project/<id>`).
    pub fn scope_project(&self) -> Option<&str> {
        match (&self.project_id, self.type_name.as_str(), &self.id) {
            (Some(project), _, _) => Some(project),
            (None, "project", Some(id)) => Some(id),
            _ => None,
        }
    }
}

impl fmt::Display for Resource {
    /// The canonical string (lower-case hyphenated UUIDs), used as the key of shares.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(project) = &self.project_id {
            write!(f, "{project}:")?;
        }
        write!(f, "{}", self.type_name)?;
        if let Some(id) = &self.id {
            write!(f, "/{id}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::model::{PROJECT, RESOURCE_TYPES};

    const P: &str = "0b3e0d0c-7e6a-4d4b-9d57-3b0f1f8f9a11";
    const R: &str = "9a2d4e6f-1111-4c4c-8888-000000000001";

    #[test]
    fn parses_every_documented_shape() {
        let table: [(&str, Option<&str>, &str, Option<&str>); 5] = [
            ("stack", None, "stack", None),
            (&format!("stack/{R}"), None, "stack", Some(R)),
            (&format!("project/{P}"), None, "project", Some(P)),
            (&format!("{P}:pipeline"), Some(P), "pipeline", None),
            (&format!("{P}:pipeline_run/{R}"), Some(P), "pipeline_run", Some(R)),
        ];
        for (input, project, type_name, id) in table {
            let parsed = Resource::parse(input).unwrap();
            assert_eq!(parsed.project_id.as_deref(), project, "{input}");
            assert_eq!(parsed.type_name, type_name, "{input}");
            assert_eq!(parsed.id.as_deref(), id, "{input}");
            assert_eq!(parsed.to_string(), input);
        }
    }

    #[test]
    fn rejects_malformed_strings_naming_them() {
        for input in [
            "",
            "Stack",
            "stack/",
            &format!("stack/{R}/x"),
            "stack/not-a-uuid",
            &format!("nope:pipeline/{R}"),
            &format!("pipeline/{R}"),
            &format!("{P}:stack"),
        ] {
            let error = Resource::parse(input).unwrap_err();
            assert!(error.to_string().contains(&format!("`{input}`")), "{error}");
        }
    }

    #[test]
    fn tenant_era_strings_name_the_server_and_no_project() {
        let server = "99baf825-b21e-442f-ba98-8246d8d9ac88";
        let (got_server, resource) = Resource::parse_wire(&format!("{server}@server:pipeline/{R}")).unwrap();
        assert_eq!(got_server.as_deref(), Some(server));
        assert_eq!(
            (
                resource.project_id,
                resource.type_name.as_str(),
                resource.id.as_deref()
            ),
            (None, "pipeline", Some(R))
        );
        let (_, type_level) = Resource::parse_wire(&format!("{server}@server:stack")).unwrap();
        assert_eq!(type_level.id, None);
        for bad in [
            "nope@server:stack",
            &format!("{server}@server:"),
            &format!("{server}@server:stack/x"),
        ] {
            assert!(Resource::parse_wire(bad).is_err(), "{bad}");
        }
        let (none, current) = Resource::parse_wire(&format!("{P}:pipeline")).unwrap();
        assert_eq!((none, current.project_id.as_deref()), (None, Some(P)));
    }

    #[test]
    fn unknown_types_parse_so_they_can_be_denied() {
        let parsed = Resource::parse(&format!("{P}:event_source/{R}")).unwrap();
        assert_eq!(parsed.resource_type(), None);
    }

    #[test]
    fn upper_case_uuids_are_canonicalised_for_share_keys() {
        let upper = R.to_uppercase();
        let parsed = Resource::parse(&format!("stack/{upper}")).unwrap();
        assert_eq!(parsed.to_string(), format!("stack/{R}"));
    }

    #[test]
    fn the_table_has_the_eight_global_types() {
        let globals: Vec<_> = RESOURCE_TYPES
            .iter()
            .filter(|t| !t.project_scoped)
            .map(|t| t.wire)
            .collect();
        assert_eq!(
            globals,
            [
                "flavor",
                "secret",
                "service_account",
                "service_connector",
                "stack",
                "stack_component",
                "tag",
                "project"
            ]
        );
        assert_eq!(ResourceType::from_wire("project"), Some(PROJECT));
    }
}
