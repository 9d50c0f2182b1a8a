//! What the fuzz targets share: the bundled sample snapshot (`policies/`, `schemas/`,
//! `policies/directory.yaml`), loaded once per process, and the reference decision the targets
//! compare the engine with (Cedar's own authorizer, the whole policy set, the whole store).

use std::path::PathBuf;
use std::sync::LazyLock;

use cedar_policy::{Authorizer, Entities};
use zenml_authz::engine::{AuthzRequest, Decision};
use zenml_authz::zenml::Alias;
use zenml_authz::{Snapshot, Sources};

/// The bundled sample, loaded once per fuzzing process (a load takes a good fraction of a
/// second; every input is judged against the same snapshot).
pub static SAMPLE: LazyLock<Snapshot> = LazyLock::new(|| {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let sources = Sources {
        policies: root.join("policies"),
        schemas: root.join("schemas"),
        directory: root.join("policies/directory.yaml"),
    };
    match zenml_authz::snapshot::load(&sources) {
        Ok(snapshot) => snapshot,
        Err(errors) => {
            let errors: Vec<String> = errors.iter().map(ToString::to_string).collect();
            panic!("the bundled sample does not load:\n{}", errors.join("\n"))
        }
    }
});

/// Cedar's answer for `request` without anything the engine adds: every policy of the snapshot
/// (no scope index), over the snapshot's whole store (less its internal entities, the ZenML
/// stand-ins, unless the request is internal) plus the request-scoped entities (no slice, no
/// stand-in graph). Errors naming the stand-in of `alias` are rewritten to the real resource, as
/// the ZenML `Decider` does. `Err` when the entities cannot be assembled (e.g. two
/// request-scoped entities with one uid), where the engine must fail too.
///
/// The engine promises exactly this decision, determining policies and errors
/// (ARCHITECTURE.md: the slice is exact, the scope index only over-includes, a stand-in decides
/// as the real resource would, internal entities are invisible to other requests).
pub fn reference(
    snapshot: &Snapshot,
    request: &AuthzRequest,
    alias: Option<&Alias>,
) -> Result<Decision, String> {
    let engine = &snapshot.engine;
    let merged;
    let entities = if request.entities.is_empty() && request.internal {
        &*engine.entities
    } else {
        merged = Entities::from_entities(
            engine
                .entities
                .iter()
                .filter(|entity| request.internal || !engine.is_internal(&entity.uid()))
                .cloned()
                .chain(request.entities.cedar().iter().cloned()),
            None,
        )
        .map_err(|error| error.to_string())?;
        &merged
    };
    let answer = Authorizer::new().is_authorized(&request.request, &engine.policies, entities);
    let allowed = answer.decision() == cedar_policy::Decision::Allow;
    let mut reasons: Vec<String> = answer.diagnostics().reason().map(ToString::to_string).collect();
    let mut errors: Vec<String> = answer.diagnostics().errors().map(ToString::to_string).collect();
    if let Some((stand_in, real)) = alias {
        let (stand_in, real) = (stand_in.to_string(), real.to_string());
        for error in &mut errors {
            *error = error.replace(&stand_in, &real);
        }
    }
    reasons.sort();
    reasons.dedup();
    errors.sort();
    Ok(Decision {
        allowed,
        reasons,
        errors,
    })
}
