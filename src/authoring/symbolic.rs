//! What `verify` and `impact` share: cvc5 through Cedar's symbolic compiler
//! (`cedar-policy-symcc`), one solver process per thread and one request environment
//! (principal type, action, resource type) at a time, and counterexamples written for people.
//!
//! [`compare_policy_sets`] is `impact`'s symbolic half: per request environment an edited
//! policy can match, whether the base and current policy sets decide every request alike
//! (`check_implies` both ways), and where not, a request and entity store on which they differ,
//! replayed through Cedar's `Authorizer` on both sets. cvc5 1.0.3 aborts at its time limit
//! instead of answering `unknown`: any solver failure is "unknown", never "equivalent".

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cedar_policy::{
    ActionConstraint, Authorizer, Decision as CedarDecision, Entities, EntityUid, EvalResult, Policy,
    PolicySet, RequestEnv, ResourceConstraint, Schema,
};
use cedar_policy_symcc::solver::LocalSolver;
use cedar_policy_symcc::{CedarSymCompiler, CompiledPolicy, CompiledPolicySet, Env};

/// Extra wall-clock time granted beyond the solver's own limit before a query is abandoned.
const WALL_CLOCK_SLACK: Duration = Duration::from_secs(5);

/// How the queries run.
#[derive(Debug, Clone, Copy)]
pub struct Config {
    /// The solver's time limit for one query.
    pub time_limit: Duration,
    /// Solver processes (threads) working at once.
    pub jobs: usize,
}

/// One query's answer in one environment.
pub(super) enum Outcome {
    Holds(Duration),
    Broken(Box<Env>, Option<String>),
    NoAnswer(String),
}

/// Whether a policy's scope can match requests of `environment`: its action constraint names
/// the action or one of its groups, and a resource `is` / `==` names the resource type. A scope
/// that cannot match makes a forbid or permit apply to nothing (and a policy evaluates nothing
/// beyond its scope, so it cannot error).
pub(super) fn may_match(policy: &Policy, environment: &RequestEnv, actions: &Entities) -> bool {
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
pub(super) struct Solver {
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
    pub(super) async fn implies(
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

    pub(super) async fn never_errors(&mut self, compiled: &CompiledPolicy, policy: String) -> Outcome {
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

    pub(super) async fn stop(&mut self) {
        if let Some(mut compiler) = self.compiler.take() {
            let _ = compiler.solver_mut().clean_up().await;
        }
    }
}

/// The solver's error with its causes, on one line.
pub(super) fn solver_message(error: &cedar_policy_symcc::err::Error) -> String {
    with_causes(error)
}

/// An error and its chain of causes, on one line.
pub(super) fn with_causes(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(message, ": {cause}");
        source = cause.source();
    }
    one_line(&message)
}

pub(super) fn describe_env(environment: &RequestEnv) -> String {
    format!(
        "{} {} {}",
        environment.principal(),
        environment.action(),
        environment.resource()
    )
}

/// The counterexample's entities, one line each, sorted: `uid { attr: value, … } in [groups]`,
/// each group of an entity followed by what it is (`(viewers of ZenML::Workspace::"w")`); a role group with no
/// attributes and no groups of its own is left out (it appears where it is used).
pub(super) fn entity_lines(entities: &Entities) -> Vec<String> {
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
pub(super) fn role_labels(entities: &Entities) -> BTreeMap<EntityUid, String> {
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
pub(super) fn principal_roles(env: &Env) -> Vec<String> {
    let entities = &env.entities;
    let (Some(principal), Some(resource)) = (env.request.principal(), env.request.resource()) else {
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

/// Whitespace folded: one line.
pub(super) fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Runs `work` for every environment on `config.jobs` threads, each with its own solver process
/// and runtime; the answers in the environments' order, independent of scheduling. When a
/// thread cannot start its runtime, `failed` answers the environments it would have taken.
pub(super) fn per_environment<T, W, F>(
    environments: &[RequestEnv],
    config: &Config,
    work: W,
    failed: F,
) -> Vec<T>
where
    T: Send,
    W: AsyncFn(&RequestEnv, &mut Solver) -> T + Sync,
    F: Fn(String) -> T + Sync,
{
    let next = AtomicUsize::new(0);
    let answers: Mutex<BTreeMap<usize, T>> = Mutex::new(BTreeMap::new());
    let record = |index: usize, answer: T| {
        if let Ok(mut answers) = answers.lock() {
            answers.insert(index, answer);
        }
    };
    std::thread::scope(|scope| {
        for _ in 0..config.jobs.max(1).min(environments.len().max(1)) {
            scope.spawn(|| {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
                let runtime = match runtime {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let message = format!("cannot start the runtime: {error}");
                        loop {
                            let index = next.fetch_add(1, Ordering::SeqCst);
                            if index >= environments.len() {
                                return;
                            }
                            record(index, failed(message.clone()));
                        }
                    }
                };
                let mut solver = Solver::new(config.time_limit);
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(environment) = environments.get(index) else {
                        break;
                    };
                    let answer = runtime.block_on(work(environment, &mut solver));
                    record(index, answer);
                }
                runtime.block_on(solver.stop());
            });
        }
    });
    let mut answers = answers.into_inner().unwrap_or_default();
    (0..environments.len())
        .map(|index| {
            answers
                .remove(&index)
                .unwrap_or_else(|| failed("internal: no answer was recorded".into()))
        })
        .collect()
}

// === impact: are two policy sets equivalent? ===

/// A request on which the two policy sets differ, and what each decides (Cedar's
/// `Authorizer`, the solver's entities).
#[derive(Debug)]
pub(super) struct Example {
    /// The solver's request and entity store.
    pub env: Env,
    /// Replayed on the base policies.
    pub before: Replay,
    /// Replayed on the current policies.
    pub after: Replay,
}

/// One side's decision of an [`Example`].
#[derive(Debug)]
pub(super) struct Replay {
    pub allowed: bool,
    /// Determining policy ids, sorted.
    pub reasons: Vec<String>,
    /// Evaluation errors, one line each.
    pub errors: Vec<String>,
}

/// One request environment's answer.
#[derive(Debug)]
pub(super) enum Equivalence {
    /// Every request of the environment is decided alike.
    Equivalent,
    /// At least one direction differs; an example of each that does.
    Differs {
        /// Denied on the base, allowed now.
        deny_to_allow: Option<Box<Example>>,
        /// Allowed on the base, denied now.
        allow_to_deny: Option<Box<Example>>,
    },
    /// No answer (solver limit, no solver, a set that cannot be compiled): never "equivalent".
    Unknown(String),
}

/// One request environment asked, in ZenML's words (types without their namespace).
#[derive(Debug)]
pub(super) struct Asked {
    pub principal: String,
    pub action: String,
    pub resource: String,
    pub answer: Equivalence,
}

impl Asked {
    /// `User · update · Stack`.
    pub fn label(&self) -> String {
        format!("{} · {} · {}", self.principal, self.action, self.resource)
    }
}

/// The symbolic comparison of two policy sets under one schema.
#[derive(Debug)]
pub(super) struct Comparison {
    /// The schema's request environments.
    pub environments: usize,
    /// How many resource types the schema has for each (principal type, action).
    pub resource_types: BTreeMap<(String, String), usize>,
    /// The environments some edited policy can match (the others are decided by the same
    /// policies on both sides), with their answers, in order.
    pub asked: Vec<Asked>,
    /// Wall time of the comparison.
    pub elapsed: Duration,
}

/// (principal type, action, resource type) of an environment, in ZenML's words.
fn names(environment: &RequestEnv) -> (String, String, String) {
    (
        environment.principal().basename().to_owned(),
        environment.action().id().unescaped().to_owned(),
        environment.resource().basename().to_owned(),
    )
}

/// The policies that differ between the sets, by id and text: `[base's, current's]` (an edited
/// policy is in both, a removed one in the first, an added one in the second), in id order.
pub(super) fn differing(base: &PolicySet, current: &PolicySet) -> [Vec<Policy>; 2] {
    let texts = |set: &PolicySet| -> BTreeMap<String, (String, Policy)> {
        set.policies()
            .map(|policy| (policy.id().to_string(), (policy.to_string(), policy.clone())))
            .collect()
    };
    let (before, after) = (texts(base), texts(current));
    let only_in = |this: &BTreeMap<String, (String, Policy)>, other: &BTreeMap<String, (String, Policy)>| {
        this.iter()
            .filter(|(id, (text, _))| other.get(*id).is_none_or(|(other_text, _)| other_text != text))
            .map(|(_, (_, policy))| policy.clone())
            .collect()
    };
    [only_in(&before, &after), only_in(&after, &before)]
}

/// Per request environment of `schema` that a policy edited between `base` and `current` can
/// match: whether both sets decide every request of it alike (`check_implies` both ways), with
/// an example of each direction that differs, replayed on both sets.
pub(super) fn compare_policy_sets(
    base: &PolicySet,
    current: &PolicySet,
    schema: &Schema,
    config: &Config,
) -> Comparison {
    let started = Instant::now();
    let mut environments: Vec<RequestEnv> = schema.request_envs().collect();
    environments.sort_by_key(describe_env);
    let actions = schema.action_entities().unwrap_or_else(|_| Entities::empty());
    let edited: Vec<Policy> = differing(base, current).into_iter().flatten().collect();
    let asked: Vec<RequestEnv> = environments
        .iter()
        .filter(|environment| {
            edited
                .iter()
                .any(|policy| may_match(policy, environment, &actions))
        })
        .cloned()
        .collect();
    let answers = per_environment(
        &asked,
        config,
        async |environment: &RequestEnv, solver: &mut Solver| {
            equivalence(base, current, schema, environment, solver).await
        },
        Equivalence::Unknown,
    );
    let mut resource_types: BTreeMap<(String, String), usize> = BTreeMap::new();
    for environment in &environments {
        let (principal, action, _) = names(environment);
        *resource_types.entry((principal, action)).or_default() += 1;
    }
    Comparison {
        environments: environments.len(),
        resource_types,
        asked: asked
            .iter()
            .zip(answers)
            .map(|(environment, answer)| {
                let (principal, action, resource) = names(environment);
                Asked {
                    principal,
                    action,
                    resource,
                    answer,
                }
            })
            .collect(),
        elapsed: started.elapsed(),
    }
}

async fn equivalence(
    base: &PolicySet,
    current: &PolicySet,
    schema: &Schema,
    environment: &RequestEnv,
    solver: &mut Solver,
) -> Equivalence {
    let before = match CompiledPolicySet::compile(base, environment, schema) {
        Ok(compiled) => compiled,
        Err(error) => {
            return Equivalence::Unknown(format!(
                "the base policies cannot be compiled against the current schema: {}",
                one_line(&error.to_string())
            ));
        }
    };
    let after = match CompiledPolicySet::compile(current, environment, schema) {
        Ok(compiled) => compiled,
        Err(error) => {
            return Equivalence::Unknown(format!(
                "the current policies cannot be compiled: {}",
                one_line(&error.to_string())
            ));
        }
    };
    // base ⇒ current fails on a request the base allows and the current set denies.
    let allow_to_deny = solver.implies(&before, &after, None).await;
    let deny_to_allow = solver.implies(&after, &before, None).await;
    let mut examples = [None, None];
    for (slot, (outcome, now_allowed)) in examples
        .iter_mut()
        .zip([(deny_to_allow, true), (allow_to_deny, false)])
    {
        match outcome {
            Outcome::Holds(_) => {}
            Outcome::NoAnswer(message) => return Equivalence::Unknown(message),
            Outcome::Broken(env, _) => {
                let example = Example {
                    before: replay(&env, base),
                    after: replay(&env, current),
                    env: *env,
                };
                // The solver's claim, checked by Cedar's own authorizer.
                if example.before.allowed == now_allowed || example.after.allowed != now_allowed {
                    return Equivalence::Unknown(format!(
                        "the solver's example does not replay as a difference (base {}, current {})",
                        allow_word(example.before.allowed),
                        allow_word(example.after.allowed)
                    ));
                }
                *slot = Some(Box::new(example));
            }
        }
    }
    match examples {
        [None, None] => Equivalence::Equivalent,
        [deny_to_allow, allow_to_deny] => Equivalence::Differs {
            deny_to_allow,
            allow_to_deny,
        },
    }
}

fn allow_word(allowed: bool) -> &'static str {
    if allowed { "allows" } else { "denies" }
}

/// Decides the solver's request with Cedar's `Authorizer` on `policies`.
pub(super) fn replay(env: &Env, policies: &PolicySet) -> Replay {
    let response = Authorizer::new().is_authorized(&env.request, policies, &env.entities);
    let mut reasons: Vec<String> = response.diagnostics().reason().map(ToString::to_string).collect();
    reasons.sort();
    Replay {
        allowed: response.decision() == CedarDecision::Allow,
        reasons,
        errors: response
            .diagnostics()
            .errors()
            .map(|error| one_line(&error.to_string()))
            .collect(),
    }
}
