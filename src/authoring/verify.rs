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
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Effect, Entities, EntityUid, EvalResult, Policy,
    PolicyId, PolicySet, RequestEnv, ResourceConstraint, Schema, ValidationMode, Validator,
};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet, Env};
use serde_json::{Value, json};

use super::CommandOutput;
use crate::cli::{VerifyArgs, VerifyFormat, exit};
use crate::snapshot::Snapshot;

/// The annotation naming an invariant.
pub const INVARIANT_ANNOTATION: &str = "invariant";
/// The annotation making an entry a named property instead of a forbid/permit invariant.
pub const PROPERTY_ANNOTATION: &str = "property";
/// The one named property: no policy errors on a well-formed request.
pub const NEVER_ERRORS: &str = "never_errors";

/// Extra wall-clock time granted beyond the solver's own limit before a query is abandoned.
const WALL_CLOCK_SLACK: Duration = Duration::from_secs(5);

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

/// How the queries run.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The solver's time limit for one query.
    pub time_limit: Duration,
    /// Solver processes (threads) working at once.
    pub jobs: usize,
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

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

// === running ===

/// One query's answer in one environment.
enum Outcome {
    Holds(Duration),
    Broken(Box<Env>, Option<String>),
    NoAnswer(String),
}

/// Runs every query: `config.jobs` threads take environments in turn; the verdicts are in the
/// invariants' order, independent of scheduling.
pub fn run(snapshot: &Snapshot, invariants: &[Invariant], config: &Config) -> Vec<Verdict> {
    let schema = &snapshot.engine.schema;
    let mut environments: Vec<RequestEnv> = schema.request_envs().collect();
    environments.sort_by_key(describe_env);
    let actions = schema.action_entities().unwrap_or_else(|_| Entities::empty());
    let mut policies: Vec<Policy> = snapshot.engine.policies.policies().cloned().collect();
    policies.sort_by_key(|policy| policy.id().to_string());
    let next = AtomicUsize::new(0);
    // (environment index, invariant index) -> outcome
    let outcomes: Mutex<BTreeMap<(usize, usize), Outcome>> = Mutex::new(BTreeMap::new());
    let work = Work {
        schema,
        policy_set: &snapshot.engine.policies,
        policies: &policies,
        invariants,
        actions: &actions,
    };
    std::thread::scope(|scope| {
        for _ in 0..config.jobs.min(environments.len().max(1)) {
            scope.spawn(|| {
                let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let message = format!("cannot start the runtime: {error}");
                        record_all(&outcomes, &environments, invariants.len(), &next, &message);
                        return;
                    }
                };
                let mut solver = Solver::new(config.time_limit);
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(environment) = environments.get(index) else {
                        break;
                    };
                    let found = runtime.block_on(work.environment(environment, &mut solver));
                    if let Ok(mut outcomes) = outcomes.lock() {
                        for (invariant, outcome) in found {
                            outcomes.insert((index, invariant), outcome);
                        }
                    }
                }
                runtime.block_on(solver.stop());
            });
        }
    });
    let outcomes = outcomes.into_inner().unwrap_or_default();
    invariants
        .iter()
        .enumerate()
        .map(|(number, invariant)| verdict(snapshot, invariant, number, &environments, &outcomes))
        .collect()
}

/// When the runtime cannot start, every remaining environment is unanswered.
fn record_all(
    outcomes: &Mutex<BTreeMap<(usize, usize), Outcome>>,
    environments: &[RequestEnv],
    invariants: usize,
    next: &AtomicUsize,
    message: &str,
) {
    while next.fetch_add(1, Ordering::SeqCst) < environments.len() {}
    if let Ok(mut outcomes) = outcomes.lock() {
        for index in 0..environments.len() {
            for invariant in 0..invariants {
                outcomes
                    .entry((index, invariant))
                    .or_insert_with(|| Outcome::NoAnswer(message.to_owned()));
            }
        }
    }
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

/// Whether a policy's scope can match requests of `environment`: its action constraint names
/// the action or one of its groups, and a resource `is` / `==` names the resource type. A scope
/// that cannot match makes a forbid or permit apply to nothing (and a policy evaluates nothing
/// beyond its scope, so it cannot error).
fn may_match(policy: &Policy, environment: &RequestEnv, actions: &Entities) -> bool {
    let action = environment.action();
    let action_matches = |group: &EntityUid| group == action || actions.is_ancestor_of(group, action);
    let action_ok = match policy.action_constraint() {
        ActionConstraint::Any => true,
        ActionConstraint::Eq(uid) => &uid == action,
        ActionConstraint::In(groups) => groups.iter().any(action_matches),
    };
    let resource_ok = match policy.resource_constraint() {
        ResourceConstraint::Is(type_name) | ResourceConstraint::IsIn(type_name, _) => {
            &type_name == environment.resource()
        }
        ResourceConstraint::Eq(uid) => uid.type_name() == environment.resource(),
        ResourceConstraint::Any | ResourceConstraint::In(_) => true,
    };
    action_ok && resource_ok
}

/// One solver process, restarted after a failure (cvc5 1.0.3 aborts at its time limit).
struct Solver {
    time_limit: Duration,
    compiler: Option<CedarSymCompiler<LocalSolver>>,
}

impl Solver {
    fn new(time_limit: Duration) -> Self {
        Self {
            time_limit,
            compiler: None,
        }
    }

    fn compiler(&mut self) -> Result<&mut CedarSymCompiler<LocalSolver>, String> {
        if self.compiler.is_none() {
            let limit = format!("--tlimit-per={}", self.time_limit.as_millis().max(1));
            let solver = LocalSolver::cvc5_with_args([limit]).map_err(|error| {
                format!(
                    "cannot start cvc5 (`$CVC5`, else `cvc5` on the PATH): {}",
                    with_causes(&error)
                )
            })?;
            let compiler = CedarSymCompiler::new(solver).map_err(|error| error.to_string())?;
            self.compiler = Some(compiler);
        }
        self.compiler.as_mut().ok_or_else(|| "no solver".to_owned())
    }

    /// `check_implies(first, second)` with a counterexample.
    async fn implies(
        &mut self,
        first: &CompiledPolicySet,
        second: &CompiledPolicySet,
        policy: Option<String>,
    ) -> Outcome {
        let limit = self.time_limit + WALL_CLOCK_SLACK;
        let started = Instant::now();
        let answer = match self.compiler() {
            Ok(compiler) => tokio::time::timeout(
                limit,
                compiler.check_implies_with_counterexample_opt(first, second),
            )
            .await
            .map_err(|_| format!("no answer within {} ms", limit.as_millis()))
            .and_then(|answer| answer.map_err(|error| solver_message(&error))),
            Err(message) => Err(message),
        };
        self.outcome(answer, started, policy).await
    }

    async fn never_errors(&mut self, compiled: &CompiledPolicy, policy: String) -> Outcome {
        let limit = self.time_limit + WALL_CLOCK_SLACK;
        let started = Instant::now();
        let answer = match self.compiler() {
            Ok(compiler) => tokio::time::timeout(
                limit,
                compiler.check_never_errors_with_counterexample_opt(compiled),
            )
            .await
            .map_err(|_| format!("no answer within {} ms", limit.as_millis()))
            .and_then(|answer| answer.map_err(|error| solver_message(&error))),
            Err(message) => Err(message),
        };
        self.outcome(answer, started, Some(policy)).await
    }

    async fn outcome(
        &mut self,
        answer: Result<Option<Env>, String>,
        started: Instant,
        policy: Option<String>,
    ) -> Outcome {
        match answer {
            Ok(None) => Outcome::Holds(started.elapsed()),
            Ok(Some(env)) => Outcome::Broken(Box::new(env), policy),
            Err(message) => {
                // The process may be dead or mid-query: never reuse it.
                self.stop().await;
                Outcome::NoAnswer(message)
            }
        }
    }

    async fn stop(&mut self) {
        if let Some(mut compiler) = self.compiler.take() {
            let _ = compiler.solver_mut().clean_up().await;
        }
    }
}

/// The solver's error with its causes, on one line.
fn solver_message(error: &cedar_policy_symcc::err::Error) -> String {
    with_causes(error)
}

/// An error and its chain of causes, on one line.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    one_line(&message)
}

fn describe_env(environment: &RequestEnv) -> String {
    format!(
        "{} {} {}",
        environment.principal(),
        environment.action(),
        environment.resource()
    )
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
    let authorizer = Authorizer::new();
    let response = authorizer.is_authorized(&env.request, &snapshot.engine.policies, &env.entities);
    let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    reasons.sort();
    let errors: Vec<String> = response
        .diagnostics()
        .errors()
        .map(|error| one_line(&error.to_string()))
        .collect();
    let mut alone = PolicySet::new();
    let invariant_applies = alone.add(invariant.policy.clone()).is_ok()
        && authorizer
            .is_authorized(&env.request, &alone, &env.entities)
            .diagnostics()
            .reason()
            .next()
            .is_some();
    Counterexample {
        environment,
        policy,
        allowed: response.decision() == CedarDecision::Allow,
        reasons,
        errors,
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
    let roles = principal_roles(example);
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

/// The counterexample's entities, one line each, sorted: `uid { attr: value, … } in [groups]`,
/// each group of an entity followed by what it is (`(viewers of ZenML::Workspace::"w")`); a role group with no
/// attributes and no groups of its own is left out (it appears where it is used).
fn entity_lines(entities: &Entities) -> Vec<String> {
    let labels = role_labels(entities);
    let show = |uid: &EntityUid| match labels.get(uid) {
        Some(label) => format!("{uid} ({label})"),
        None => uid.to_string(),
    };
    let mut lines = Vec::new();
    for entity in entities.iter() {
        let uid = entity.uid();
        if uid.type_name().basename() == "Action" {
            continue;
        }
        let mut attrs: Vec<String> = entity
            .attrs()
            .map(|(name, value)| match value {
                Ok(EvalResult::EntityUid(target)) => format!("{name}: {target}"),
                Ok(value) => format!("{name}: {value}"),
                Err(_) => format!("{name}: ?"),
            })
            .collect();
        attrs.sort();
        let mut groups: Vec<String> = entities
            .ancestors(&uid)
            .into_iter()
            .flatten()
            .map(&show)
            .collect();
        groups.sort();
        if attrs.is_empty() && groups.is_empty() && uid.type_name().basename() == "Role" {
            continue;
        }
        let mut line = show(&uid);
        if !attrs.is_empty() {
            let _ = write!(line, " {{ {} }}", attrs.join(", "));
        }
        if !groups.is_empty() {
            let _ = write!(line, " in [{}]", groups.join(", "));
        }
        lines.push(line);
    }
    lines.sort();
    lines
}

/// What each role group of the counterexample is: the scope type and role attribute naming it
/// (`viewers of ZenML::Workspace::"w"`; several when the solver reused one group).
fn role_labels(entities: &Entities) -> BTreeMap<EntityUid, String> {
    let mut labels: BTreeMap<EntityUid, Vec<String>> = BTreeMap::new();
    for entity in entities.iter() {
        let uid = entity.uid();
        if !matches!(
            uid.type_name().basename(),
            "Organization" | "Workspace" | "Project"
        ) {
            continue;
        }
        for (name, value) in entity.attrs() {
            if let Ok(EvalResult::EntityUid(role)) = value
                && role.type_name().basename() == "Role"
            {
                labels.entry(role).or_default().push(format!("{name} of {uid}"));
            }
        }
    }
    labels
        .into_iter()
        .map(|(role, mut names)| {
            names.sort();
            names.dedup();
            (role, names.join(", "))
        })
        .collect()
}

/// The ZenML roles the principal holds at the resource's organization, workspace and project
/// (`workspace viewers`, …), read from the scopes' role attributes.
fn principal_roles(example: &Counterexample) -> Vec<String> {
    let entities = &example.env.entities;
    let (Some(principal), Some(resource)) = (example.env.request.principal(), example.env.request.resource())
    else {
        return Vec::new();
    };
    let attr = |uid: &EntityUid, name: &str| -> Option<EntityUid> {
        match entities.get(uid)?.attr(name)? {
            Ok(EvalResult::EntityUid(uid)) => Some(uid),
            _ => None,
        }
    };
    let is_type = |uid: &EntityUid, name: &str| uid.type_name().basename() == name;
    let project = if is_type(resource, "Project") {
        Some(resource.clone())
    } else {
        attr(resource, "project")
    };
    let workspace = attr(resource, "workspace");
    let organization = workspace.as_ref().and_then(|w| attr(w, "organization"));
    let mut held = Vec::new();
    let scopes = [
        (
            "organization",
            organization,
            &["admins", "managers", "viewers", "members", "billing_admins"][..],
        ),
        (
            "workspace",
            workspace,
            &["admins", "developers", "contributors", "viewers", "stack_admins"][..],
        ),
        (
            "project",
            project,
            &["members", "admins", "developers", "contributors", "viewers"][..],
        ),
    ];
    for (scope, uid, roles) in scopes {
        let Some(uid) = uid else { continue };
        for role in roles {
            if let Some(group) = attr(&uid, role)
                && (entities.is_ancestor_of(&group, principal) || &group == principal)
            {
                held.push(format!("{scope} {role}"));
            }
        }
    }
    held
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
                        "principal_holds": principal_roles(example),
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
