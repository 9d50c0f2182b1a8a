//! ZenML resource strings: `Resource::parse` and `Resource::parse_wire` on arbitrary text.
//!
//! Asserts, beyond not panicking:
//! * a parsed resource's canonical form (`Display`) parses again to an equal resource, and
//!   is a fixed point (rendering the re-parsed resource gives the same string);
//! * `parse_wire` of a string without `@server:` is exactly `parse`; a tenant-era result
//!   re-rendered as `<server>@server:<type>[/<id>]` parses again to the same server and resource;
//! * a known type has a project exactly when it is project-scoped (current form), and the
//!   tenant-era form never has one;
//! * canonical ids are lower-case hyphenated UUIDs;
//! * every error names the whole input (the API echoes it in its 400).
#![no_main]

use libfuzzer_sys::fuzz_target;
use zenml_authz::zenml::{Resource, ResourceError};

/// ZenML's resource strings are short; longer inputs only slow the search.
const MAX_BYTES: usize = 4096;

fn canonical_uuid(id: &str) -> bool {
    id.len() == 36
        && id.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_digit() || ('a'..='f').contains(&c),
        })
}

fn assert_names_input(error: &ResourceError, input: &str) {
    let message = error.to_string();
    assert!(
        message.contains(&format!("`{input}`")),
        "error {message:?} does not name the input {input:?}"
    );
}

fn assert_canonical(resource: &Resource) {
    for id in resource.project_id.iter().chain(&resource.id) {
        assert!(canonical_uuid(id), "non-canonical id {id:?} in {resource:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_BYTES {
        return;
    }
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };

    let parsed = Resource::parse(input);
    match &parsed {
        Ok(resource) => {
            assert_canonical(resource);
            if let Some(known) = resource.resource_type() {
                assert_eq!(
                    known.project_scoped,
                    resource.project_id.is_some(),
                    "scope rule broken for {input:?}"
                );
            }
            let canonical = resource.to_string();
            let again = Resource::parse(&canonical).unwrap_or_else(|error| {
                panic!("canonical {canonical:?} of {input:?} does not parse: {error}")
            });
            assert_eq!(
                &again, resource,
                "canonical {canonical:?} of {input:?} parses differently"
            );
            assert_eq!(
                again.to_string(),
                canonical,
                "canonical form of {input:?} is not a fixed point"
            );
        }
        Err(error) => assert_names_input(error, input),
    }

    let wire = Resource::parse_wire(input);
    if !input.contains("@server:") {
        assert_eq!(
            wire,
            parsed.clone().map(|resource| (None, resource)),
            "parse_wire differs from parse for {input:?}"
        );
    }
    match &wire {
        Ok((None, resource)) => {
            let canonical = resource.to_string();
            assert_eq!(
                Resource::parse_wire(&canonical).ok(),
                Some((None, resource.clone())),
                "canonical {canonical:?} of {input:?} parses differently on the wire"
            );
        }
        Ok((Some(server), resource)) => {
            assert!(
                canonical_uuid(server),
                "non-canonical server id {server:?} from {input:?}"
            );
            assert_canonical(resource);
            assert_eq!(resource.project_id, None, "tenant-era {input:?} got a project");
            let canonical = format!("{server}@server:{resource}");
            assert_eq!(
                Resource::parse_wire(&canonical).ok(),
                Some((Some(server.clone()), resource.clone())),
                "tenant-era canonical {canonical:?} of {input:?} parses differently"
            );
        }
        Err(error) => assert_names_input(error, input),
    }
});
