//! `zenml-authz verify`: invariants proved for every possible organization, not just the one in
//! the directory file, with Cedar's symbolic compiler (`cedar-policy-symcc`) and the cvc5 SMT
//! solver (`$CVC5`, else `cvc5` on the `PATH`).
//!
//! The invariants are Cedar policies in their own files (`invariants/*.cedar`), each annotated
//! `@invariant("short name")`, read as:
//!
//! * a `forbid` f: "f never changes a decision": every request the policies P allow, P ∪ {f}
//!   allows too (`check_implies(P, P ∪ {f})`), i.e. whenever P allows, f does not apply;
//! * a `permit` p: "whatever p permits, P permits" (`check_implies({p}, P)`);
//! * `@property("never_errors")`: no policy of P errors on a well-formed request (each policy,
//!   `check_never_errors`); the entry's scope (action, resource type) selects the requests.
//!
//! Each is asked once per request environment of the schema (principal type, action, resource
//! type) whose scope the invariant can match; an environment its scope cannot match holds
//! trivially. The answer is `proved` when every query is unsatisfiable, `refuted` with the
//! first counterexample (in environment order) replayed through Cedar's `Authorizer` on the
//! sidecar's policies, or `unknown` when the solver gave no answer (its time limit, a crash, no
//! solver): never read as proved. Queries run on `--jobs` threads, each with its own solver
//! process and one environment at a time (P compiled once per environment).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use cedar_policy::{
    Authorizer, Effect, Entities, EntityUid, Policy, PolicyId, PolicySet, RequestEnv, Schema, ValidationMode,
    Validator,
};
use cedar_policy_symcc::{CompiledPolicy, CompiledPolicySet, Env};
use serde_json::{Value, json};

use super::CommandOutput;
pub use super::symbolic::Config;
use super::symbolic::{
    Outcome, Solver, describe_env, entity_lines, may_match, one_line, per_environment, principal_roles,
};
use crate::cli::{VerifyArgs, VerifyFormat, exit};
use crate::snapshot::Snapshot;

/// The annotation naming an invariant.
pub const INVARIANT_ANNOTATION: &str = "invariant";
/// The annotation making an entry a named property instead of a forbid/permit invariant.
pub const PROPERTY_ANNOTATION: &str = "property";
/// The one named property: no policy errors on a well-formed request.
pub const NEVER_ERRORS: &str = "never_errors";

/// `zenml-authz verify`: loads the sources and the invariants, runs every query, prints one
/// line (or JSON object) per invariant.
pub fn verify(args: &VerifyArgs) -> CommandOutput {
    let snapshot = match super::load(&args.sources.sources()) {
        Ok(snapshot) => snapshot,
        Err(output) => return output,
    };
    let invariants = match read_invariants(&args.invariants, &snapshot.engine.schema) {
        Ok(invariants) => invariants,
        Err(errors) => {
            let mut stderr = String::new();
            for error in &errors {
                let _ = writeln!(stderr, "error: {error}");
            }
            return CommandOutput {
                stdout: String::new(),
                stderr,
                code: exit::ERROR,
            };
        }
    };
    let config = Config {
        time_limit: Duration::from_millis(args.time_limit_ms),
        jobs: usize::from(args.jobs.max(1)),
    };
    let verdicts = run(&snapshot, &invariants, &config);
    let code = exit_code(&verdicts);
    let stdout = match args.format {
        VerifyFormat::Text => render_text(&invariants, &verdicts),
        VerifyFormat::Json => render_json(&invariants, &verdicts),
    };
    CommandOutput::answer(stdout, code)
}

/// One invariant of an invariants file.
#[derive(Debug, Clone)]
pub struct Invariant {
    /// `@invariant("...")`.
    pub name: String,
    /// The file and the entry's place in it (`invariants/zenml.cedar #2`).
    pub location: String,
    /// What is asked.
    pub kind: Kind,
    /// The Cedar policy as written (its scope selects the environments).
    pub policy: Policy,
}

/// What an invariant asks of the policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A `forbid` that never changes a decision.
    Forbid,
    /// A `permit` whose every allow the policies allow.
    Permit,
    /// No policy errors.
    NeverErrors,
}

/// The answer for one invariant, over every environment.
#[derive(Debug)]
pub enum Verdict {
    /// Every query unsatisfiable.
    Proved {
        /// Time spent in queries (sum over environments).
        elapsed: Duration,
        /// Environments asked.
        queries: usize,
    },
    /// A counterexample, replayed.
    Refuted(Box<Counterexample>),
    /// No answer for at least one environment (and no counterexample).
    Unknown {
        /// The first solver message.
        message: String,
        /// The environment it was for.
        environment: String,
    },
}

/// A request and entities that break an invariant, and what the sidecar's policies decide.
#[derive(Debug)]
pub struct Counterexample {
    /// The environment (principal type, action, resource type).
    pub environment: String,
    /// The policy of P that errors (for `never_errors`).
    pub policy: Option<String>,
    /// The solver's concrete request and entities.
    pub env: Env,
    /// The replayed decision: allowed, determining policy ids, errors.
    pub allowed: bool,
    /// Determining policies of the replay.
    pub reasons: Vec<String>,
    /// Evaluation errors of the replay.
    pub errors: Vec<String>,
    /// Whether the invariant's own policy applies to the request.
    pub invariant_applies: bool,
}

// === reading ===

/// Reads every invariant of `path` (a `.cedar` file, or a directory searched recursively),
/// each validated against the schema; or every problem.
pub fn read_invariants(path: &Path, schema: &Schema) -> Result<Vec<Invariant>, Vec<String>> {
    let files = invariant_files(path).map_err(|error| vec![error])?;
    let mut errors = Vec::new();
    let mut invariants: Vec<Invariant> = Vec::new();
    for file in &files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(error) => {
                errors.push(format!("invariants `{}`: {error}", file.display()));
                continue;
            }
        };
        let parsed = match PolicySet::from_str(&text) {
            Ok(parsed) => parsed,
            Err(error) => {
                errors.push(format!(
                    "invariants `{}`: {}",
                    file.display(),
                    one_line(&format!("{:?}", miette::Report::new(error)))
                ));
                continue;
            }
        };
        // Cedar names a file's policies `policy0`, `policy1`, … in the order written.
        let mut policies: Vec<(usize, &Policy)> = parsed
            .policies()
            .map(|policy| {
                let number = policy.id().to_string().trim_start_matches("policy").parse();
                (number.unwrap_or(usize::MAX), policy)
            })
            .collect();
        policies.sort_by_key(|(number, _)| *number);
        for (number, policy) in policies {
            let location = format!("{} #{}", file.display(), number.saturating_add(1));
            match invariant(policy, location, schema, &invariants) {
                Ok(invariant) => invariants.push(invariant),
                Err(error) => errors.push(error),
            }
        }
    }
    if invariants.is_empty() && errors.is_empty() {
        errors.push(format!(
            "invariants `{}`: no invariant (a Cedar policy annotated `@invariant(\"name\")`)",
            path.display()
        ));
    }
    if errors.is_empty() {
        Ok(invariants)
    } else {
        Err(errors)
    }
}

fn invariant_files(path: &Path) -> Result<Vec<PathBuf>, String> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    if !path.is_dir() {
        return Err(format!(
            "invariants `{}`: no such file or directory",
            path.display()
        ));
    }
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
        let entry = entry.map_err(|error| format!("invariants `{}`: {error}", path.display()))?;
        let hidden = entry.file_name().to_string_lossy().starts_with('.') && entry.depth() > 0;
        if entry.file_type().is_file()
            && !hidden
            && entry.path().extension().is_some_and(|ext| ext == "cedar")
        {
            files.push(entry.into_path());
        }
    }
    Ok(files)
}

fn invariant(
    policy: &Policy,
    location: String,
    schema: &Schema,
    earlier: &[Invariant],
) -> Result<Invariant, String> {
    let Some(name) = policy.annotation(INVARIANT_ANNOTATION).map(str::to_owned) else {
        return Err(format!(
            "{location}: a policy without `@invariant(\"name\")`: every entry of an invariants file names what it states"
        ));
    };
    if let Some(other) = earlier.iter().find(|other| other.name == name) {
        return Err(format!(
            "{location}: invariant `{name}` is already defined at {}",
            other.location
        ));
    }
    let kind = match (policy.annotation(PROPERTY_ANNOTATION), policy.effect()) {
        (Some(NEVER_ERRORS), _) => Kind::NeverErrors,
        (Some(other), _) => {
            return Err(format!(
                "{location}: invariant `{name}`: unknown property `{other}` (one of {NEVER_ERRORS})"
            ));
        }
        (None, Effect::Forbid) => Kind::Forbid,
        (None, Effect::Permit) => Kind::Permit,
    };
    let policy = policy.new_id(PolicyId::new(format!("invariant: {name}")));
    let mut alone = PolicySet::new();
    alone
        .add(policy.clone())
        .map_err(|error| format!("{location}: invariant `{name}`: {error}"))?;
    let validation = Validator::new(schema.clone()).validate(&alone, ValidationMode::Strict);
    if !validation.validation_passed() {
        let messages: Vec<String> = validation
            .validation_errors()
            .map(|error| error.to_string())
            .collect();
        return Err(format!(
            "{location}: invariant `{name}` does not validate against the schema: {}",
            messages.join("; ")
        ));
    }
    Ok(Invariant {
        name,
        location,
        kind,
        policy,
    })
}

// === running ===

/// Runs every query: `config.jobs` threads take environments in turn; the verdicts are in the
/// invariants' order, independent of scheduling.
pub fn run(snapshot: &Snapshot, invariants: &[Invariant], config: &Config) -> Vec<Verdict> {
    let schema = &snapshot.engine.schema;
    let mut environments: Vec<RequestEnv> = schema.request_envs().collect();
    environments.sort_by_key(describe_env);
    let actions = schema.action_entities().unwrap_or_else(|_| Entities::empty());
    let mut policies: Vec<Policy> = snapshot.engine.policies.policies().cloned().collect();
    policies.sort_by_key(|policy| policy.id().to_string());
    let work = Work {
        schema,
        policy_set: &snapshot.engine.policies,
        policies: &policies,
        invariants,
        actions: &actions,
    };
    let answers = per_environment(
        &environments,
        config,
        async |environment: &RequestEnv, solver: &mut Solver| work.environment(environment, solver).await,
        |message| {
            (0..invariants.len())
                .map(|invariant| (invariant, Outcome::NoAnswer(message.clone())))
                .collect()
        },
    );
    // (environment index, invariant index) -> outcome
    let outcomes: BTreeMap<(usize, usize), Outcome> = answers
        .into_iter()
        .enumerate()
        .flat_map(|(index, found)| {
            found
                .into_iter()
                .map(move |(invariant, outcome)| ((index, invariant), outcome))
        })
        .collect();
    invariants
        .iter()
        .enumerate()
        .map(|(number, invariant)| verdict(snapshot, invariant, number, &environments, &outcomes))
        .collect()
}

/// What every thread reads.
struct Work<'a> {
    schema: &'a Schema,
    policy_set: &'a PolicySet,
    policies: &'a [Policy],
    invariants: &'a [Invariant],
    actions: &'a Entities,
}

impl Work<'_> {
    /// Every invariant whose scope can match `environment`, asked in it.
    async fn environment(&self, environment: &RequestEnv, solver: &mut Solver) -> Vec<(usize, Outcome)> {
        let mut found = Vec::new();
        let applicable: Vec<usize> = (0..self.invariants.len())
            .filter(|&i| may_match(&self.invariants[i].policy, environment, self.actions))
            .collect();
        if applicable.is_empty() {
            return found;
        }
        let compiled = CompiledPolicySet::compile(self.policy_set, environment, self.schema);
        for index in applicable {
            let invariant = &self.invariants[index];
            let outcome = match (&compiled, invariant.kind) {
                (Err(error), _) => Outcome::NoAnswer(format!("cannot compile the policies: {error}")),
                (Ok(compiled), Kind::Forbid) => self.forbid(compiled, invariant, environment, solver).await,
                (Ok(compiled), Kind::Permit) => self.permit(compiled, invariant, environment, solver).await,
                (Ok(_), Kind::NeverErrors) => self.never_errors(environment, solver).await,
            };
            found.push((index, outcome));
        }
        found
    }

    async fn forbid(
        &self,
        compiled: &CompiledPolicySet,
        invariant: &Invariant,
        environment: &RequestEnv,
        solver: &mut Solver,
    ) -> Outcome {
        let mut with = self.policy_set.clone();
        if let Err(error) = with.add(invariant.policy.clone()) {
            return Outcome::NoAnswer(format!("cannot add the invariant: {error}"));
        }
        let with = match CompiledPolicySet::compile(&with, environment, self.schema) {
            Ok(with) => with,
            Err(error) => return Outcome::NoAnswer(format!("cannot compile: {error}")),
        };
        solver.implies(compiled, &with, None).await
    }

    async fn permit(
        &self,
        compiled: &CompiledPolicySet,
        invariant: &Invariant,
        environment: &RequestEnv,
        solver: &mut Solver,
    ) -> Outcome {
        let alone = match CompiledPolicy::compile(&invariant.policy, environment, self.schema) {
            Ok(alone) => alone.into_compiled_policyset(),
            Err(error) => return Outcome::NoAnswer(format!("cannot compile: {error}")),
        };
        solver.implies(&alone, compiled, None).await
    }

    /// Each policy of P whose scope can match, in id order; the first that may error refutes.
    async fn never_errors(&self, environment: &RequestEnv, solver: &mut Solver) -> Outcome {
        let mut elapsed = Duration::ZERO;
        let mut unknown = None;
        for policy in self.policies {
            if !may_match(policy, environment, self.actions) {
                continue;
            }
            let compiled = match CompiledPolicy::compile(policy, environment, self.schema) {
                Ok(compiled) => compiled,
                Err(error) => {
                    unknown.get_or_insert(format!("cannot compile `{}`: {error}", policy.id()));
                    continue;
                }
            };
            match solver.never_errors(&compiled, policy.id().to_string()).await {
                Outcome::Holds(time) => elapsed += time,
                Outcome::NoAnswer(message) => {
                    unknown.get_or_insert(format!("policy `{}`: {message}", policy.id()));
                }
                broken @ Outcome::Broken(..) => return broken,
            }
        }
        match unknown {
            Some(message) => Outcome::NoAnswer(message),
            None => Outcome::Holds(elapsed),
        }
    }
}

/// Folds one invariant's outcomes (in environment order) into its verdict: the first
/// counterexample wins, then the first unknown; otherwise proved.
fn verdict(
    snapshot: &Snapshot,
    invariant: &Invariant,
    number: usize,
    environments: &[RequestEnv],
    outcomes: &BTreeMap<(usize, usize), Outcome>,
) -> Verdict {
    let mut elapsed = Duration::ZERO;
    let mut queries = 0;
    let mut unknown: Option<(String, String)> = None;
    for (index, environment) in environments.iter().enumerate() {
        match outcomes.get(&(index, number)) {
            None => {}
            Some(Outcome::Holds(time)) => {
                elapsed += *time;
                queries += 1;
            }
            Some(Outcome::Broken(env, policy)) => {
                return Verdict::Refuted(Box::new(replay(
                    snapshot,
                    invariant,
                    describe_env(environment),
                    policy.clone(),
                    (**env).clone(),
                )));
            }
            Some(Outcome::NoAnswer(message)) => {
                unknown.get_or_insert_with(|| (message.clone(), describe_env(environment)));
            }
        }
    }
    match unknown {
        Some((message, environment)) => Verdict::Unknown { message, environment },
        None => Verdict::Proved { elapsed, queries },
    }
}

/// Decides the counterexample with Cedar's `Authorizer` on the sidecar's policies, and on the
/// invariant alone (does it apply?).
fn replay(
    snapshot: &Snapshot,
    invariant: &Invariant,
    environment: String,
    policy: Option<String>,
    env: Env,
) -> Counterexample {
    let decided = super::symbolic::replay(&env, &snapshot.engine.policies);
    let mut alone = PolicySet::new();
    let invariant_applies = alone.add(invariant.policy.clone()).is_ok()
        && Authorizer::new()
            .is_authorized(&env.request, &alone, &env.entities)
            .diagnostics()
            .reason()
            .next()
            .is_some();
    Counterexample {
        environment,
        policy,
        allowed: decided.allowed,
        reasons: decided.reasons,
        errors: decided.errors,
        invariant_applies,
        env,
    }
}

// === output ===

fn exit_code(verdicts: &[Verdict]) -> i32 {
    if verdicts
        .iter()
        .any(|verdict| matches!(verdict, Verdict::Refuted(_)))
    {
        exit::REFUTED
    } else if verdicts
        .iter()
        .any(|verdict| matches!(verdict, Verdict::Unknown { .. }))
    {
        exit::UNKNOWN
    } else {
        exit::OK
    }
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Forbid => "forbid",
        Kind::Permit => "permit",
        Kind::NeverErrors => NEVER_ERRORS,
    }
}

fn render_text(invariants: &[Invariant], verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for (invariant, verdict) in invariants.iter().zip(verdicts) {
        match verdict {
            Verdict::Proved { elapsed, queries } => {
                let _ = writeln!(
                    out,
                    "proved   {} ({} ms, {queries} environments)",
                    invariant.name,
                    elapsed.as_millis()
                );
            }
            Verdict::Unknown { message, environment } => {
                let _ = writeln!(
                    out,
                    "unknown  {}: the solver gave no answer for {environment}: {message}",
                    invariant.name
                );
            }
            Verdict::Refuted(example) => {
                let _ = writeln!(out, "refuted  {} ({})", invariant.name, invariant.location);
                write_counterexample(&mut out, invariant, example);
            }
        }
    }
    let count = |wanted: fn(&Verdict) -> bool| verdicts.iter().filter(|v| wanted(v)).count();
    let _ = writeln!(
        out,
        "{} proved, {} refuted, {} unknown",
        count(|v| matches!(v, Verdict::Proved { .. })),
        count(|v| matches!(v, Verdict::Refuted(_))),
        count(|v| matches!(v, Verdict::Unknown { .. })),
    );
    out
}

fn write_counterexample(out: &mut String, invariant: &Invariant, example: &Counterexample) {
    let request = &example.env.request;
    let show = |uid: Option<&EntityUid>| uid.map(ToString::to_string).unwrap_or_else(|| "?".into());
    let _ = writeln!(out, "  counterexample ({}):", example.environment);
    let _ = writeln!(out, "    principal: {}", show(request.principal()));
    let _ = writeln!(out, "    action:    {}", show(request.action()));
    let _ = writeln!(out, "    resource:  {}", show(request.resource()));
    let context = request.context().map(ToString::to_string).unwrap_or_default();
    let _ = writeln!(out, "    context:   {}", one_line(&context));
    let roles = principal_roles(&example.env);
    if !roles.is_empty() {
        let _ = writeln!(out, "    the principal holds: {}", roles.join(", "));
    }
    let _ = writeln!(out, "    entities:");
    for line in entity_lines(&example.env.entities) {
        let _ = writeln!(out, "      {line}");
    }
    let decision = if example.allowed { "ALLOW" } else { "DENY" };
    let _ = write!(out, "  replayed on the policies: {decision}");
    if !example.reasons.is_empty() {
        let _ = write!(out, ", determining: {}", example.reasons.join(", "));
    }
    let _ = writeln!(out);
    for error in &example.errors {
        let _ = writeln!(out, "    error: {error}");
    }
    match invariant.kind {
        Kind::Forbid => {
            let applies = if example.invariant_applies {
                "applies"
            } else {
                "does not apply"
            };
            let _ = writeln!(out, "  the invariant's forbid {applies} to this request");
        }
        Kind::Permit => {
            let applies = if example.invariant_applies {
                "permits"
            } else {
                "does not permit"
            };
            let _ = writeln!(out, "  the invariant {applies} this request");
        }
        Kind::NeverErrors => {
            if let Some(policy) = &example.policy {
                let _ = writeln!(out, "  the policy that errors: {policy}");
            }
        }
    }
}

fn render_json(invariants: &[Invariant], verdicts: &[Verdict]) -> String {
    let items: Vec<Value> = invariants
        .iter()
        .zip(verdicts)
        .map(|(invariant, verdict)| {
            let mut item = json!({
                "name": invariant.name,
                "location": invariant.location,
                "kind": kind_name(invariant.kind),
            });
            match verdict {
                Verdict::Proved { elapsed, queries } => {
                    item["result"] = json!("proved");
                    item["millis"] = json!(elapsed.as_millis() as u64);
                    item["environments"] = json!(queries);
                }
                Verdict::Unknown { message, environment } => {
                    item["result"] = json!("unknown");
                    item["message"] = json!(message);
                    item["environment"] = json!(environment);
                }
                Verdict::Refuted(example) => {
                    let request = &example.env.request;
                    let show = |uid: Option<&EntityUid>| uid.map(ToString::to_string);
                    let entities = example.env.entities.to_json_value().unwrap_or(Value::Null);
                    item["result"] = json!("refuted");
                    item["counterexample"] = json!({
                        "environment": example.environment,
                        "principal": show(request.principal()),
                        "action": show(request.action()),
                        "resource": show(request.resource()),
                        "context": request.context().map(|context| one_line(&context.to_string())),
                        "principal_holds": principal_roles(&example.env),
                        "entities": entities,
                        "policy": example.policy,
                        "replay": {
                            "decision": if example.allowed { "allow" } else { "deny" },
                            "policies": example.reasons,
                            "errors": example.errors,
                            "invariant_applies": example.invariant_applies,
                        },
                    });
                }
            }
            item
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&json!({ "invariants": items })).unwrap_or_default();
    text.push('\n');
    text
}
