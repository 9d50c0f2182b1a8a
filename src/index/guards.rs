//! Leading guards: the first conjuncts of a policy's `when` condition that are decided before
//! evaluation, by the request's principal and resource types, by which attributes its context
//! and entities have, and by the principal's membership in entities its attributes name
//! (`resource is ZenML::Stack || …`, `context has shared_with_users`, `resource has project`,
//! `principal in resource.workspace.developers`).
//!
//! Why it is exact: Cedar evaluates a policy as `scope && when-body && …`, left to right, and
//! stops at the first false conjunct. `is` and `has` never error (`has` on an entity that does
//! not exist is false); a membership test is *unknown* wherever Cedar would raise an error (a
//! missing entity or attribute, a value that is not an entity). So when a leading guard is
//! false and every guard before it is true, the policy is not satisfied and reports no error,
//! whatever follows ([`rules_out`]). Only the *leading* guards count: a guard after an ordinary
//! conjunct may never be reached, and that conjunct may error.
//!
//! The atoms are evaluated once per request by one [`Evaluation`] over any [`EntityData`]: the
//! index's graph, or Cedar's entities.

use std::borrow::Borrow;

use cedar_policy::{Context, EntityTypeName};
use serde_json::Value;

use super::data::{AttrValue, EntityData, GraphData};
use super::graph::Graph;

/// At most this many distinct atoms (`has` and `in` tests) are indexed; later ones end a
/// policy's guard prefix.
pub const MAX_ATOMS: usize = 32;

/// A variable a guard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Principal,
    Resource,
    Context,
}

/// Where an attribute path starts: a variable, or an earlier step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Var(Var),
    Step(usize),
}

/// One attribute access `<origin>.<attr>`, shared by every atom that reads it (so
/// `resource.workspace` is looked up once per request however many atoms go through it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    from: Origin,
    attr: String,
    /// The attribute's position in [`Atoms::attr_names`] (its slot in a [`Graph`]).
    slot: u16,
}

/// A test decided before evaluation, shared by every policy that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Atom {
    /// `<var> has <attr>` (the step `<var>.<attr>`): never errors.
    Has(usize),
    /// `<var> in <origin>`, e.g. `principal in resource.workspace.developers`: known false only
    /// when Cedar would evaluate it to false without an error.
    In(Var, Origin),
}

/// The value of an atom for one request. `Unknown` stands for "may error" (a missing entity or
/// attribute, a value that is not an entity): the policy is then evaluated, for its error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truth {
    True,
    False,
    Unknown,
}

impl Truth {
    fn of(value: bool) -> Truth {
        if value { Truth::True } else { Truth::False }
    }
}

/// The atoms of one request: bit `n` of `holds` (of `unknown`) when atom `n` is true (unknown).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AtomValues {
    pub holds: u32,
    pub unknown: u32,
}

impl AtomValues {
    fn of(&self, atom: usize) -> Truth {
        if self.unknown & (1 << atom) != 0 {
            Truth::Unknown
        } else {
            Truth::of(self.holds & (1 << atom) != 0)
        }
    }

    /// Only the atoms of `mask`.
    pub fn masked(self, mask: u32) -> AtomValues {
        AtomValues {
            holds: self.holds & mask,
            unknown: self.unknown & mask,
        }
    }
}

/// The atoms and attribute steps the guards of one policy set read.
#[derive(Debug)]
pub struct Atoms {
    /// Unique to this value (see [`ContextReads`]).
    id: u64,
    steps: Vec<Step>,
    /// The distinct attribute names the steps read.
    names: Vec<String>,
    atoms: Vec<Atom>,
}

impl Default for Atoms {
    fn default() -> Self {
        Atoms {
            id: ATOMS_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            steps: Vec::new(),
            names: Vec::new(),
            atoms: Vec::new(),
        }
    }
}

impl Atoms {
    /// The attribute names the steps read, by slot: what a [`Graph`] must keep.
    pub fn attr_names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    fn step(&mut self, from: Origin, attr: &str) -> Option<usize> {
        let slot = match self.names.iter().position(|name| name == attr) {
            Some(slot) => slot,
            None => {
                self.names.push(attr.to_owned());
                self.names.len() - 1
            }
        };
        let step = Step {
            from,
            attr: attr.to_owned(),
            slot: u16::try_from(slot).ok()?,
        };
        Some(match self.steps.iter().position(|known| *known == step) {
            Some(at) => at,
            None => {
                self.steps.push(step);
                self.steps.len() - 1
            }
        })
    }

    fn atom(&mut self, atom: Atom) -> Option<usize> {
        match self.atoms.iter().position(|known| *known == atom) {
            Some(at) => Some(at),
            None if self.atoms.len() < MAX_ATOMS => {
                self.atoms.push(atom);
                Some(self.atoms.len() - 1)
            }
            None => None,
        }
    }

    /// The values of the atoms of `wanted` for a request with this principal and resource over
    /// `data`, each atom and attribute step read once. `None` when `data` cannot answer (the
    /// graph, for a read into a record): read through Cedar instead.
    pub fn values<'a, D: EntityData<'a>>(
        &self,
        wanted: u32,
        data: D,
        principal: D::Entity,
        resource: D::Entity,
    ) -> Option<AtomValues> {
        let mut values = AtomValues::default();
        if wanted == 0 {
            return Some(values);
        }
        let mut request = Evaluation {
            atoms: self,
            data,
            principal,
            resource,
            steps: vec![None; self.steps.len()],
        };
        for (at, atom) in self.atoms.iter().enumerate() {
            if wanted & (1 << at) == 0 {
                continue;
            }
            match request.atom(atom)? {
                Truth::True => values.holds |= 1 << at,
                Truth::False => {}
                Truth::Unknown => values.unknown |= 1 << at,
            }
        }
        Some(values)
    }

    /// What the context steps read from `context` over `graph`, for [`Atoms::values`] over a
    /// [`GraphData`] of requests with exactly this context.
    pub fn read_context(&self, context: &Context, graph: &Graph) -> ContextReads {
        let data = GraphData::new(graph, Some(context), None);
        ContextReads {
            atoms: self.id,
            steps: self
                .steps
                .iter()
                .enumerate()
                .map(|(at, step)| match step.from {
                    Origin::Var(Var::Context) => Some(data.context_attr(at, &step.attr).into_owned()),
                    _ => None,
                })
                .collect(),
        }
    }

    /// `reads` when these atoms made them (their step numbers are these atoms' own).
    pub fn own<'r>(&self, reads: Option<&'r ContextReads>) -> Option<&'r ContextReads> {
        reads.filter(|reads| reads.atoms == self.id)
    }
}

/// The context steps of the atoms, read once from a context that many requests share
/// ([`Atoms::read_context`]): per step, its value for a context step, `None` for others.
/// Used only by the atoms that read them ([`Atoms::own`]): others read the context.
#[derive(Debug, Clone)]
pub struct ContextReads {
    atoms: u64,
    steps: Box<[Option<AttrValue<'static, u32, ()>>]>,
}

impl ContextReads {
    /// The value of context step `at`, if read beforehand.
    pub fn step(&self, at: usize) -> Option<&AttrValue<'static, u32, ()>> {
        self.steps.get(at)?.as_ref()
    }
}

/// Numbers every [`Atoms`], so that [`ContextReads`] are used only by the atoms that made them.
static ATOMS_MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// One request's view of the atoms over `data`, with the attribute steps read so far.
struct Evaluation<'e, 'a, D: EntityData<'a>> {
    atoms: &'e Atoms,
    data: D,
    principal: D::Entity,
    resource: D::Entity,
    /// Per step, once read: its value.
    steps: Vec<Option<AttrValue<'a, D::Entity, D::Record>>>,
}

impl<'a, D: EntityData<'a>> Evaluation<'_, 'a, D> {
    fn var(&self, var: Var) -> Option<&D::Entity> {
        match var {
            Var::Principal => Some(&self.principal),
            Var::Resource => Some(&self.resource),
            Var::Context => None,
        }
    }

    /// The step's value, read on first use (as Cedar reads `<origin>.<attr>`); `None` when the
    /// data cannot answer.
    fn step(&mut self, at: usize) -> Option<&AttrValue<'a, D::Entity, D::Record>> {
        if self.steps[at].is_none() {
            let (atoms, data) = (self.atoms, self.data);
            let step = &atoms.steps[at];
            let value = match step.from {
                Origin::Var(Var::Context) => data.context_attr(at, &step.attr),
                Origin::Var(var) => match self.var(var) {
                    Some(entity) => data.attr(entity, &step.attr, step.slot)?,
                    None => AttrValue::Absent,
                },
                Origin::Step(from) => match self.step(from)? {
                    AttrValue::Entity(entity) => data.attr(entity, &step.attr, step.slot)?,
                    AttrValue::Record(record) => data.record_attr(record, &step.attr)?,
                    // An unmet entity is not stored: Cedar errors, as on a missing attribute or
                    // on reading a set's or a string's attribute.
                    AttrValue::Unmet | AttrValue::Set(_) | AttrValue::Other | AttrValue::Absent => {
                        AttrValue::Absent
                    }
                },
            };
            self.steps[at] = Some(value);
        }
        self.steps[at].as_ref()
    }

    fn atom(&mut self, atom: &Atom) -> Option<Truth> {
        Some(match atom {
            Atom::Has(step) => Truth::of(!matches!(self.step(*step)?, AttrValue::Absent)),
            Atom::In(left, right) => {
                let data = self.data;
                let Some(left_entity) = self.var(*left).cloned() else {
                    return Some(Truth::Unknown);
                };
                let left: &D::EntityKey = left_entity.borrow();
                // Cedar's `in`: the left entity equals the right one or has it as an ancestor; a
                // set on the right: any of its elements, which must all be entities.
                let right = match right {
                    Origin::Var(var) => {
                        return Some(self.var(*var).map_or(Truth::Unknown, |right| {
                            Truth::of(data.within(left, right.borrow()))
                        }));
                    }
                    Origin::Step(step) => self.step(*step)?,
                };
                match right {
                    AttrValue::Entity(right) => Truth::of(data.within(left, right.borrow())),
                    // Met nowhere: not the (stored) left entity, nor one of its ancestors.
                    AttrValue::Unmet => Truth::False,
                    AttrValue::Set(rights) => {
                        Truth::of(rights.iter().any(|right| data.within(left, right.borrow())))
                    }
                    AttrValue::Absent | AttrValue::Record(_) | AttrValue::Other => Truth::Unknown,
                }
            }
        })
    }
}

/// A guard expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// An atom: bit `n` of the request's [`AtomValues`].
    Atom(usize),
    /// `principal is T` (`true`) or `resource is T` (`false`).
    Is(bool, EntityTypeName),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    /// Its value for a request with these types and atoms, with Cedar's short-circuit `&&` and
    /// `||`: an unknown (possibly erroring) operand that is evaluated makes the whole unknown.
    pub fn truth(&self, principal: &EntityTypeName, resource: &EntityTypeName, values: AtomValues) -> Truth {
        match self {
            Guard::Atom(atom) => values.of(*atom),
            Guard::Is(true, type_name) => Truth::of(type_name == principal),
            Guard::Is(false, type_name) => Truth::of(type_name == resource),
            Guard::Not(inner) => match inner.truth(principal, resource, values) {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::Unknown => Truth::Unknown,
            },
            Guard::And(left, right) => match left.truth(principal, resource, values) {
                Truth::True => right.truth(principal, resource, values),
                other => other,
            },
            Guard::Or(left, right) => match left.truth(principal, resource, values) {
                Truth::False => right.truth(principal, resource, values),
                other => other,
            },
        }
    }

    /// The atoms it reads, as a mask.
    pub fn atoms(&self) -> u32 {
        match self {
            Guard::Atom(atom) => 1 << atom,
            Guard::Is(..) => 0,
            Guard::Not(inner) => inner.atoms(),
            Guard::And(left, right) | Guard::Or(left, right) => left.atoms() | right.atoms(),
        }
    }
}

/// Whether a policy with these leading guards is left out for a request: Cedar evaluates the
/// conjuncts in order and stops at the first false one, so the policy is certainly not
/// satisfied, and reports no error, when a guard is false and every guard before it is true.
pub fn rules_out(
    guards: &[Guard],
    principal: &EntityTypeName,
    resource: &EntityTypeName,
    values: AtomValues,
) -> bool {
    for guard in guards {
        match guard.truth(principal, resource, values) {
            Truth::True => {}
            Truth::False => return true,
            Truth::Unknown => return false,
        }
    }
    false
}

/// The leading guards of a policy (its Cedar JSON), registering new atoms in `atoms`.
pub fn leading(policy: &Value, atoms: &mut Atoms) -> Vec<Guard> {
    let mut guards = Vec::new();
    let Some(first) = policy
        .get("conditions")
        .and_then(Value::as_array)
        .and_then(|conditions| conditions.first())
    else {
        return guards;
    };
    if first.get("kind").and_then(Value::as_str) != Some("when") {
        return guards;
    }
    let Some(body) = first.get("body") else {
        return guards;
    };
    let mut conjuncts = Vec::new();
    flatten_and(body, &mut conjuncts);
    for conjunct in conjuncts {
        match parse(conjunct, atoms) {
            Some(guard) => guards.push(guard),
            None => break,
        }
    }
    guards
}

/// `a && b && c` as `[a, b, c]`, in evaluation order.
fn flatten_and<'v>(expr: &'v Value, out: &mut Vec<&'v Value>) {
    match expr.get("&&") {
        Some(and) => {
            if let (Some(left), Some(right)) = (and.get("left"), and.get("right")) {
                flatten_and(left, out);
                flatten_and(right, out);
            } else {
                out.push(expr);
            }
        }
        None => out.push(expr),
    }
}

fn var(expr: &Value) -> Option<Var> {
    match expr.get("Var")?.as_str()? {
        "principal" => Some(Var::Principal),
        "resource" => Some(Var::Resource),
        "context" => Some(Var::Context),
        _ => None,
    }
}

/// A variable, or an attribute path from one (`resource.workspace.developers`).
fn origin(expr: &Value, atoms: &mut Atoms) -> Option<Origin> {
    if let Some(var) = var(expr) {
        return Some(Origin::Var(var));
    }
    let access = expr.get(".")?;
    let from = origin(access.get("left")?, atoms)?;
    Some(Origin::Step(atoms.step(from, access.get("attr")?.as_str()?)?))
}

fn parse(expr: &Value, atoms: &mut Atoms) -> Option<Guard> {
    let Value::Object(node) = expr else { return None };
    if node.len() != 1 {
        return None;
    }
    let (op, args) = node.iter().next()?;
    match op.as_str() {
        "has" => {
            let step = atoms.step(Origin::Var(var(args.get("left")?)?), args.get("attr")?.as_str()?)?;
            Some(Guard::Atom(atoms.atom(Atom::Has(step))?))
        }
        "in" => {
            // The left side an entity variable, the right a variable or an attribute path.
            let left = match var(args.get("left")?)? {
                Var::Context => return None,
                entity => entity,
            };
            let right = origin(args.get("right")?, atoms)?;
            Some(Guard::Atom(atoms.atom(Atom::In(left, right))?))
        }
        "is" if args.get("in").is_none() => {
            let principal = match var(args.get("left")?)? {
                Var::Principal => true,
                Var::Resource => false,
                Var::Context => return None,
            };
            let type_name = args.get("entity_type")?.as_str()?.parse().ok()?;
            Some(Guard::Is(principal, type_name))
        }
        "!" => Some(Guard::Not(Box::new(parse(args.get("arg")?, atoms)?))),
        "&&" | "||" => {
            let left = Box::new(parse(args.get("left")?, atoms)?);
            let right = Box::new(parse(args.get("right")?, atoms)?);
            Some(if op == "&&" {
                Guard::And(left, right)
            } else {
                Guard::Or(left, right)
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::str::FromStr;

    use cedar_policy::{Entities, EntityUid};

    use super::super::data::{CedarData, CedarEntity};
    use super::*;

    fn guards(condition: &str) -> (Vec<Guard>, Atoms) {
        let text = format!("permit (principal, action, resource) {condition};");
        let policy = cedar_policy::Policy::from_str(&text).unwrap();
        let mut atoms = Atoms::default();
        (leading(&policy.to_json().unwrap(), &mut atoms), atoms)
    }

    #[test]
    fn only_the_leading_guards_of_the_first_when_count() {
        let stack = || Guard::Is(false, "ZenML::Stack".parse().unwrap());
        // (condition, number of leading guards, atoms, attribute steps)
        let table: [(&str, usize, usize, usize); 12] = [
            ("", 0, 0, 0),
            ("when { context has a && principal in context.a }", 2, 2, 1),
            (
                "when { context has a && resource has b && context has a }",
                3,
                2,
                2,
            ),
            (
                "when { principal in resource.xs && resource is ZenML::Stack }",
                2,
                1,
                1,
            ),
            (
                "when { principal in resource.w.xs && principal in resource.w.ys }",
                2,
                2,
                3,
            ),
            (
                "when { (resource is ZenML::Stack || !(resource has p)) && resource.p.q }",
                1,
                1,
                1,
            ),
            ("when { resource is ZenML::Stack in ZenML::W::\"w\" }", 0, 0, 0),
            ("when { principal in ZenML::W::\"w\" }", 0, 0, 0),
            ("when { context.a in resource.xs }", 0, 0, 0),
            ("unless { resource is ZenML::Stack }", 0, 0, 0),
            ("when { action has a }", 0, 0, 0),
            ("when { resource.x has y }", 0, 0, 0),
        ];
        for (condition, count, atom_count, step_count) in table {
            let (found, atoms) = guards(condition);
            assert_eq!(
                (found.len(), atoms.atoms.len(), atoms.steps.len()),
                (count, atom_count, step_count),
                "{condition}"
            );
        }
        let (found, _) = guards("when { resource is ZenML::Stack && principal.active }");
        assert_eq!(found, vec![stack()]);
    }

    #[test]
    fn guards_evaluate_with_short_circuits_over_three_values() {
        let user: EntityTypeName = "ZenML::User".parse().unwrap();
        let (stack, pipeline): (EntityTypeName, EntityTypeName) = (
            "ZenML::Stack".parse().unwrap(),
            "ZenML::Pipeline".parse().unwrap(),
        );
        let (found, _) = guards("when { (resource is ZenML::Stack || !(context has p)) && true }");
        let [guard] = found.as_slice() else {
            panic!("one guard: {found:?}")
        };
        let has = AtomValues { holds: 1, unknown: 0 };
        assert_eq!(guard.truth(&user, &stack, has), Truth::True);
        assert_eq!(guard.truth(&user, &pipeline, AtomValues::default()), Truth::True);
        assert_eq!(guard.truth(&user, &pipeline, has), Truth::False);
        assert_eq!(guard.atoms(), 1);

        // `principal in resource.xs` (atom 0) before a type test: an unknown (erroring) first
        // conjunct keeps the policy even where the type test is false.
        let (found, _) = guards("when { principal in resource.xs && resource is ZenML::Stack }");
        let unknown = AtomValues { holds: 0, unknown: 1 };
        let (yes, no) = (AtomValues { holds: 1, unknown: 0 }, AtomValues::default());
        // (atom values, resource type, ruled out)
        let table = [
            (no, &stack, true),
            (yes, &stack, false),
            (yes, &pipeline, true),
            (unknown, &pipeline, false),
            (unknown, &stack, false),
        ];
        for (values, resource, out) in table {
            assert_eq!(
                rules_out(&found, &user, resource, values),
                out,
                "{values:?} {resource}"
            );
        }
        let (found, _) = guards("when { (resource is ZenML::Stack || principal in resource.xs) }");
        assert!(!rules_out(&found, &user, &pipeline, unknown));
        assert!(rules_out(&found, &user, &pipeline, no));
        assert!(!rules_out(&found, &user, &stack, unknown));
        let (found, _) = guards("when { !(principal in resource.xs) }");
        assert!(!rules_out(&found, &user, &pipeline, unknown));
        assert!(rules_out(&found, &user, &pipeline, yes));
    }

    #[test]
    fn membership_atoms_read_like_cedar() {
        let schema_free = r#"[
            {"uid": {"type": "U", "id": "alice"}, "attrs": {}, "parents": [{"type": "G", "id": "devs"}]},
            {"uid": {"type": "G", "id": "devs"}, "attrs": {}, "parents": []},
            {"uid": {"type": "W", "id": "w"}, "attrs": {
                "developers": {"__entity": {"type": "G", "id": "devs"}},
                "viewers": {"__entity": {"type": "G", "id": "views"}},
                "name": "w",
                "mixed": [{"__entity": {"type": "G", "id": "devs"}}, 1],
                "teams": [{"__entity": {"type": "G", "id": "x"}}, {"__entity": {"type": "G", "id": "devs"}}],
                "strangers": [{"__entity": {"type": "G", "id": "x"}}, {"__entity": {"type": "G", "id": "y"}}],
                "owner": {"__entity": {"type": "U", "id": "alice"}}
            }, "parents": []},
            {"uid": {"type": "R", "id": "r"}, "attrs": {"workspace": {"__entity": {"type": "W", "id": "w"}}}, "parents": []},
            {"uid": {"type": "R", "id": "lost"}, "attrs": {"workspace": {"__entity": {"type": "W", "id": "gone"}}}, "parents": []}
        ]"#;
        let entities = Entities::from_json_str(schema_free, None).unwrap();
        let uid = |text: &str| EntityUid::from_str(text).unwrap();
        let context = Context::from_json_str(
            r#"{"groups": [{"__entity": {"type": "G", "id": "devs"}}], "other": [{"__entity": {"type": "G", "id": "x"}}],
                "many": [{"__entity": {"type": "G", "id": "x"}}, {"__entity": {"type": "G", "id": "y"}}, {"__entity": {"type": "G", "id": "devs"}}],
                "one": {"__entity": {"type": "G", "id": "devs"}}, "numbers": [1, 2], "record": {"g": {"__entity": {"type": "G", "id": "devs"}}}}"#,
            None,
        )
        .unwrap();
        // (condition, principal, resource, truth of its one atom)
        let table = [
            (
                "principal in resource.workspace.developers",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in resource.workspace.viewers",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "principal in resource.workspace.developers",
                "U::\"bob\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "principal in resource.workspace.developers",
                "G::\"devs\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in resource.workspace.developers",
                "U::\"alice\"",
                "R::\"lost\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace.developers",
                "U::\"alice\"",
                "R::\"none\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace.admins",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace.name",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace.mixed",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "principal in context.groups",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in context.other",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "principal in context.missing",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            ("principal in resource", "R::\"r\"", "R::\"r\"", Truth::True),
            ("resource has workspace", "U::\"alice\"", "R::\"r\"", Truth::True),
            (
                "resource has workspace",
                "U::\"alice\"",
                "R::\"none\"",
                Truth::False,
            ),
            ("context has other", "U::\"alice\"", "R::\"r\"", Truth::True),
            // Sets of several entities, stored and in the context; values that are not entities.
            (
                "principal in resource.workspace.teams",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in resource.workspace.strangers",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "principal in context.many",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in context.one",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in context.numbers",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in context.record.g",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in context.record",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in context.one.x",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace.teams.x",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "principal in resource.workspace.owner",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal in resource.workspace.owner",
                "G::\"devs\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "resource in principal",
                "G::\"devs\"",
                "U::\"alice\"",
                Truth::True,
            ),
            ("principal has workspace", "R::\"lost\"", "R::\"r\"", Truth::True),
        ];
        let mut on_graph = 0;
        for (condition, principal, resource, truth) in table {
            let (found, atoms) = guards(&format!("when {{ {condition} }}"));
            assert_eq!(found, vec![Guard::Atom(0)], "{condition}");
            let (principal_uid, resource_uid) = (uid(principal), uid(resource));
            let cedar = CedarData::new(&entities, Some(&context));
            let values = atoms
                .values(
                    1,
                    cedar,
                    CedarEntity::new(Cow::Borrowed(&principal_uid)),
                    CedarEntity::new(Cow::Borrowed(&resource_uid)),
                )
                .unwrap();
            assert_eq!(values.of(0), truth, "{condition} for {principal} on {resource}");
            // Read from the graph (stored principal and resource; reads into records excepted):
            // the same truth.
            let graph = Graph::build(&entities, &atoms.attr_names()).unwrap();
            if let (Some(p), Some(r)) = (graph.stored(&principal_uid), graph.stored(&resource_uid)) {
                let stored = atoms.values(1, GraphData::new(&graph, Some(&context), None), p, r);
                // The context read beforehand: the same.
                let reads = atoms.read_context(&context, &graph);
                let read_before = atoms.values(1, GraphData::new(&graph, Some(&context), Some(&reads)), p, r);
                assert_eq!(read_before, stored, "context read beforehand: {condition}");
                if condition.contains("record.") {
                    assert_eq!(stored, None, "graph: {condition} is left to Cedar");
                } else {
                    assert_eq!(
                        stored,
                        Some(values),
                        "graph: {condition} for {principal} on {resource}"
                    );
                    on_graph += 1;
                }
            }
            // And Cedar agrees: true, false, or an evaluation error.
            let policy = cedar_policy::PolicySet::from_str(&format!(
                "permit (principal, action, resource) when {{ {condition} }};"
            ))
            .unwrap();
            let request = cedar_policy::Request::new(
                uid(principal),
                uid("A::\"a\""),
                uid(resource),
                context.clone(),
                None,
            )
            .unwrap();
            let answer = cedar_policy::Authorizer::new().is_authorized(&request, &policy, &entities);
            let cedar = if answer.diagnostics().errors().next().is_some() {
                Truth::Unknown
            } else {
                Truth::of(answer.decision() == cedar_policy::Decision::Allow)
            };
            assert_eq!(cedar, truth, "Cedar on {condition} for {principal} on {resource}");
        }
        assert_eq!(on_graph, 26, "rows read from the graph");
    }
}
