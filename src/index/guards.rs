//! Leading guards: the first conjuncts of a policy's conditions that are decided before
//! evaluation, by the request's principal and resource types and action, by which attributes its
//! context and entities have, by boolean attributes, and by the principal's membership in
//! entities its attributes name (`resource is ZenML::Stack || …`, `context has
//! shared_with_users`, `resource has project`, `principal.active`, `action == …`,
//! `principal in resource.workspace.developers`).
//!
//! Why it is exact: Cedar evaluates a policy as `scope && when-body && !unless-body …`, left to
//! right, and stops at the first false conjunct. `is`, `has` and `==` on the action never error
//! (`has` on an entity that does not exist is false); a membership test or a boolean attribute is
//! *unknown* wherever Cedar would raise an error (a missing entity or attribute, a value of
//! another type). So when a guard is false and every guard before it is true, the policy is not
//! satisfied and reports no error, whatever follows ([`conjunction`]). Only the *leading* guards
//! count: a guard after an ordinary conjunct may never be reached, and that conjunct may error.
//! When every conjunct of every condition is a guard (`Guards::complete`) and all are true, the
//! policy is satisfied without an error: the index then answers for it without Cedar.
//!
//! The atoms are evaluated once per request by one [`Evaluation`] over any [`EntityData`]: the
//! index's graph, or Cedar's entities.

use std::borrow::Borrow;

use cedar_policy::{Context, EntityTypeName, EntityUid};
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
    /// A boolean attribute used as a condition (`principal.active`): its value when it is a
    /// boolean, unknown otherwise (Cedar errors on a missing attribute or a value that is not a
    /// boolean).
    Holds(usize),
    /// `<origin> == <entity literal>` (either way round; the literal's place in
    /// [`Atoms::literal`]): unknown where reading the origin errors, false for a value that is
    /// not an entity (Cedar's `==` on values of different kinds is false, not an error).
    Equals(Origin, usize),
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
    /// The entity literals `==` guards compare with, each once.
    literals: Vec<EntityUid>,
    literal_at: FxHashMap<EntityUid, usize>,
}

type FxHashMap<K, V> = std::collections::HashMap<K, V, rustc_hash::FxBuildHasher>;

impl Default for Atoms {
    fn default() -> Self {
        Atoms {
            id: ATOMS_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            steps: Vec::new(),
            names: Vec::new(),
            atoms: Vec::new(),
            literals: Vec::new(),
            literal_at: FxHashMap::default(),
        }
    }
}

impl Atoms {
    /// The attribute names the steps read, by slot: what a [`Graph`] must keep.
    pub fn attr_names(&self) -> Vec<&str> {
        self.names.iter().map(String::as_str).collect()
    }

    /// Done registering: drops what only registering needs.
    pub fn finish(&mut self) {
        self.literal_at = FxHashMap::default();
    }

    /// Literal `at` of the `==` guards.
    pub fn literal(&self, at: usize) -> &EntityUid {
        &self.literals[at]
    }

    /// The literals of the `==` guards as `graph` numbers entities (`None`: not in the graph, so
    /// no stored entity and no value a stored attribute holds): for [`GraphData`].
    pub fn literal_ids(&self, graph: &Graph) -> Box<[Option<u32>]> {
        self.literals.iter().map(|uid| graph.id(uid)).collect()
    }

    fn literal_of(&mut self, uid: EntityUid) -> usize {
        if let Some(&at) = self.literal_at.get(&uid) {
            return at;
        }
        self.literals.push(uid.clone());
        self.literal_at.insert(uid, self.literals.len() - 1);
        self.literals.len() - 1
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

    /// A request's view of the atoms over `data`: its atoms and attribute steps read once, when
    /// first asked for.
    pub fn evaluation<'e, 'a, D: EntityData<'a>>(
        &'e self,
        data: D,
        principal: D::Entity,
        resource: D::Entity,
    ) -> Evaluation<'e, 'a, D> {
        Evaluation {
            atoms: self,
            data,
            principal,
            resource,
            steps: vec![None; self.steps.len()],
            read: 0,
            values: AtomValues::default(),
        }
    }

    /// What the context steps read from `context` over `graph`, for [`Atoms::values`] over a
    /// [`GraphData`] of requests with exactly this context.
    pub fn read_context(&self, context: &Context, graph: &Graph) -> ContextReads {
        let data = GraphData::new(graph, &[], Some(context), None);
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

/// One request's view of the atoms over `data`, with the attribute steps and atoms read so far
/// ([`Atoms::evaluation`]).
pub struct Evaluation<'e, 'a, D: EntityData<'a>> {
    atoms: &'e Atoms,
    data: D,
    principal: D::Entity,
    resource: D::Entity,
    /// Per step, once read: its value.
    steps: Vec<Option<AttrValue<'a, D::Entity, D::Record>>>,
    /// The atoms read so far (bits), and their values.
    read: u32,
    values: AtomValues,
}

impl<'a, D: EntityData<'a>> Evaluation<'_, 'a, D> {
    /// The values of the atoms of `wanted`. `None` when the data cannot answer (the graph, for a
    /// read into a record).
    pub fn values(&mut self, wanted: u32) -> Option<AtomValues> {
        for at in 0..self.atoms.atoms.len() {
            if wanted & (1 << at) != 0 {
                self.atom_at(at)?;
            }
        }
        Some(self.values.masked(wanted))
    }

    /// Atom `at`'s value, read once. `None` when the data cannot answer.
    fn atom_at(&mut self, at: usize) -> Option<Truth> {
        if self.read & (1 << at) == 0 {
            let atoms = self.atoms;
            match self.atom(&atoms.atoms[at])? {
                Truth::True => self.values.holds |= 1 << at,
                Truth::False => {}
                Truth::Unknown => self.values.unknown |= 1 << at,
            }
            self.read |= 1 << at;
        }
        Some(self.values.of(at))
    }

    /// `<origin> == literal`, as Cedar evaluates it. `None` when the data cannot answer.
    fn equals(&mut self, origin: Origin, literal: usize) -> Option<Truth> {
        let (data, uid) = (self.data, self.atoms.literal(literal));
        let value = match origin {
            // (`context` itself is no guard: `parse` refuses it, and `var` cannot answer.)
            Origin::Var(var) => {
                let entity = self.var(var)?;
                return Some(Truth::of(data.is_literal(entity.borrow(), literal, uid)));
            }
            Origin::Step(step) => self.step(step)?,
        };
        Some(match value {
            AttrValue::Entity(entity) => Truth::of(data.is_literal(entity.borrow(), literal, uid)),
            // An entity the data never met is not a literal it met; whether it is one the data
            // never met either, only its uid tells: read through Cedar.
            AttrValue::Unmet if data.knows_literal(literal, uid) => Truth::False,
            AttrValue::Unmet => return None,
            AttrValue::Absent => Truth::Unknown,
            AttrValue::Set(_) | AttrValue::Record(_) | AttrValue::Bool(_) | AttrValue::Other => Truth::False,
        })
    }

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
                    AttrValue::Unmet
                    | AttrValue::Set(_)
                    | AttrValue::Bool(_)
                    | AttrValue::Other
                    | AttrValue::Absent => AttrValue::Absent,
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
                    AttrValue::Absent | AttrValue::Record(_) | AttrValue::Bool(_) | AttrValue::Other => {
                        Truth::Unknown
                    }
                }
            }
            Atom::Holds(step) => match self.step(*step)? {
                AttrValue::Bool(value) => Truth::of(*value),
                _ => Truth::Unknown,
            },
            Atom::Equals(origin, literal) => self.equals(*origin, *literal)?,
        })
    }
}

/// What a guard's value depends on besides the request's types and action: its atoms, and the
/// `==` tests that are not atoms.
pub trait Facts {
    /// Atom `at`.
    fn atom(&mut self, at: usize) -> Truth;
    /// `<origin> == literal` ([`Guard::Equals`]).
    fn equals(&mut self, origin: Origin, literal: usize) -> Truth;
}

/// Atom values known beforehand; an `==` test that is not an atom is unknown.
impl Facts for AtomValues {
    fn atom(&mut self, at: usize) -> Truth {
        self.of(at)
    }

    fn equals(&mut self, _: Origin, _: usize) -> Truth {
        Truth::Unknown
    }
}

/// Read on demand, once; unknown where the data cannot answer (Cedar then evaluates).
impl<'a, D: EntityData<'a>> Facts for Evaluation<'_, 'a, D> {
    fn atom(&mut self, at: usize) -> Truth {
        self.atom_at(at).unwrap_or(Truth::Unknown)
    }

    fn equals(&mut self, origin: Origin, literal: usize) -> Truth {
        Evaluation::equals(self, origin, literal).unwrap_or(Truth::Unknown)
    }
}

/// What a guard reads of a request besides its atoms: the principal's and resource's types and
/// the action.
#[derive(Debug, Clone, Copy)]
pub struct Types<'t> {
    pub principal: &'t EntityTypeName,
    pub resource: &'t EntityTypeName,
    pub action: &'t EntityUid,
}

/// A guard expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// An atom: bit `n` of the request's [`AtomValues`].
    Atom(usize),
    /// `principal is T` (`true`) or `resource is T` (`false`). (Boxed, as `Action`'s uid: a
    /// guard is kept per entity-keyed policy, thousands of them.)
    Is(bool, Box<EntityTypeName>),
    /// `action == A`.
    Action(Box<EntityUid>),
    /// `<origin> == <entity literal>` where it is not an atom (an entity-keyed policy's: their
    /// literals are many, each read by few requests).
    Equals(Origin, usize),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    /// Its value for a request with these types, action and facts, with Cedar's short-circuit
    /// `&&` and `||`: an unknown (possibly erroring) operand that is evaluated makes the whole
    /// unknown.
    pub fn truth(&self, types: Types<'_>, facts: &mut impl Facts) -> Truth {
        match self {
            Guard::Atom(atom) => facts.atom(*atom),
            Guard::Is(true, type_name) => Truth::of(**type_name == *types.principal),
            Guard::Is(false, type_name) => Truth::of(**type_name == *types.resource),
            Guard::Action(action) => Truth::of(**action == *types.action),
            Guard::Equals(origin, literal) => facts.equals(*origin, *literal),
            Guard::Not(inner) => match inner.truth(types, facts) {
                Truth::True => Truth::False,
                Truth::False => Truth::True,
                Truth::Unknown => Truth::Unknown,
            },
            Guard::And(left, right) => match left.truth(types, facts) {
                Truth::True => right.truth(types, facts),
                other => other,
            },
            Guard::Or(left, right) => match left.truth(types, facts) {
                Truth::False => right.truth(types, facts),
                other => other,
            },
        }
    }

    /// The atoms it reads, as a mask.
    pub fn atoms(&self) -> u32 {
        match self {
            Guard::Atom(atom) => 1 << atom,
            Guard::Is(..) | Guard::Action(_) | Guard::Equals(..) => 0,
            Guard::Not(inner) => inner.atoms(),
            Guard::And(left, right) | Guard::Or(left, right) => left.atoms() | right.atoms(),
        }
    }
}

/// The value of a conjunction of guards, as Cedar evaluates it: left to right, stopping at the
/// first false one. False: certainly not satisfied, and no error (every guard before the false
/// one is true); true: satisfied without an error; unknown: evaluate to know.
pub fn conjunction(guards: &[Guard], types: Types<'_>, facts: &mut impl Facts) -> Truth {
    for guard in guards {
        match guard.truth(types, facts) {
            Truth::True => {}
            other => return other,
        }
    }
    Truth::True
}

/// The guards of a policy (its Cedar JSON), registering new atoms in `atoms`: its leading guards,
/// and whether they are its whole condition (`complete`: every `when` and `unless` clause made
/// of guards only). The scope is not among them: the index matches it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guards {
    pub leading: Vec<Guard>,
    pub complete: bool,
}

/// How a policy's `==` tests with an entity literal are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Literals {
    /// As atoms: a type-level policy's (its sets are kept per atom outcome).
    Atoms,
    /// As [`Guard::Equals`], read per request: an entity-keyed policy's (thousands of literals,
    /// each read by the few requests that select its policy).
    PerPolicy,
}

/// The guards of a policy (its Cedar JSON): Cedar evaluates a policy as its scope `&&` each
/// condition in order (a `when` body, or `!` an `unless` body), so the conjuncts of its
/// conditions in that order are its guards while each can be read as one.
pub fn leading(policy: &Value, atoms: &mut Atoms, literals: Literals) -> Guards {
    let mut guards = Guards::default();
    let Some(conditions) = policy.get("conditions").and_then(Value::as_array) else {
        return guards;
    };
    for condition in conditions {
        let Some(body) = condition.get("body") else {
            return guards;
        };
        match condition.get("kind").and_then(Value::as_str) {
            Some("when") => {
                let mut conjuncts = Vec::new();
                flatten_and(body, &mut conjuncts);
                for conjunct in conjuncts {
                    match parse(conjunct, atoms, literals) {
                        Some(guard) => guards.leading.push(guard),
                        None => return guards,
                    }
                }
            }
            Some("unless") => match parse(body, atoms, literals) {
                Some(guard) => guards.leading.push(Guard::Not(Box::new(guard))),
                None => return guards,
            },
            _ => return guards,
        }
    }
    guards.complete = true;
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

/// `left == right` with an entity literal on one side: (the other side, the literal).
fn entity_literal(args: &Value) -> Option<(&Value, EntityUid)> {
    let (left, right) = (args.get("left")?, args.get("right")?);
    // An entity literal only, as Cedar writes one (`__entity`): not a record literal with `type`
    // and `id` fields, nor a string that reads as a uid (the table below).
    let literal = |side: &Value| {
        let value = side.get("Value")?;
        value.get("__entity")?;
        EntityUid::from_json(value.clone()).ok()
    };
    match literal(right) {
        Some(uid) => Some((left, uid)),
        None => Some((right, literal(left)?)),
    }
}

fn parse(expr: &Value, atoms: &mut Atoms, literals: Literals) -> Option<Guard> {
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
        "." => match origin(expr, atoms)? {
            Origin::Step(step) => Some(Guard::Atom(atoms.atom(Atom::Holds(step))?)),
            Origin::Var(_) => None,
        },
        "==" => {
            let (other, literal) = entity_literal(args)?;
            if other.get("Var").and_then(Value::as_str) == Some("action") {
                return Some(Guard::Action(Box::new(literal)));
            }
            let origin = origin(other, atoms)?;
            if origin == Origin::Var(Var::Context) {
                return None;
            }
            let literal = atoms.literal_of(literal);
            Some(match literals {
                Literals::Atoms => Guard::Atom(atoms.atom(Atom::Equals(origin, literal))?),
                Literals::PerPolicy => Guard::Equals(origin, literal),
            })
        }
        "is" if args.get("in").is_none() => {
            let principal = match var(args.get("left")?)? {
                Var::Principal => true,
                Var::Resource => false,
                Var::Context => return None,
            };
            let type_name = args.get("entity_type")?.as_str()?.parse().ok()?;
            Some(Guard::Is(principal, Box::new(type_name)))
        }
        "!" => Some(Guard::Not(Box::new(parse(args.get("arg")?, atoms, literals)?))),
        "&&" | "||" => {
            let left = Box::new(parse(args.get("left")?, atoms, literals)?);
            let right = Box::new(parse(args.get("right")?, atoms, literals)?);
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

    fn parsed(condition: &str) -> (Guards, Atoms) {
        let text = format!("permit (principal, action, resource) {condition};");
        let policy = cedar_policy::Policy::from_str(&text).unwrap();
        let mut atoms = Atoms::default();
        (
            leading(&policy.to_json().unwrap(), &mut atoms, Literals::Atoms),
            atoms,
        )
    }

    /// The guards of a condition as an entity-keyed policy's (`==` read per policy).
    fn per_policy(condition: &str) -> (Vec<Guard>, Atoms) {
        let text = format!("permit (principal, action, resource) when {{ {condition} }};");
        let policy = cedar_policy::Policy::from_str(&text).unwrap();
        let mut atoms = Atoms::default();
        let found = leading(&policy.to_json().unwrap(), &mut atoms, Literals::PerPolicy);
        assert!(found.complete, "{condition}");
        (found.leading, atoms)
    }

    fn guards(condition: &str) -> (Vec<Guard>, Atoms) {
        let (guards, atoms) = parsed(condition);
        (guards.leading, atoms)
    }

    fn rules_out(
        guards: &[Guard],
        principal: &EntityTypeName,
        resource: &EntityTypeName,
        values: AtomValues,
    ) -> bool {
        let action = EntityUid::from_str("A::\"a\"").unwrap();
        let types = Types {
            principal,
            resource,
            action: &action,
        };
        conjunction(guards, types, &mut { values }) == Truth::False
    }

    #[test]
    fn the_guards_are_the_conditions_conjuncts_while_each_reads_as_one() {
        let stack = || Guard::Is(false, Box::new("ZenML::Stack".parse().unwrap()));
        // (condition, number of guards, atoms, attribute steps, whole condition)
        let table: [(&str, usize, usize, usize, bool); 26] = [
            ("", 0, 0, 0, true),
            ("when { context has a && principal in context.a }", 2, 2, 1, true),
            (
                "when { context has a && resource has b && context has a }",
                3,
                2,
                2,
                true,
            ),
            (
                "when { principal in resource.xs && resource is ZenML::Stack }",
                2,
                1,
                1,
                true,
            ),
            (
                "when { principal in resource.w.xs && principal in resource.w.ys }",
                2,
                2,
                3,
                true,
            ),
            (
                "when { (resource is ZenML::Stack || !(resource has p)) && resource.p.q }",
                2,
                2,
                2,
                true,
            ),
            (
                "when { (resource is ZenML::Stack || !(resource has p)) && resource.p.q == 1 }",
                1,
                1,
                1,
                false,
            ),
            (
                "when { resource is ZenML::Stack in ZenML::W::\"w\" }",
                0,
                0,
                0,
                false,
            ),
            ("when { principal in ZenML::W::\"w\" }", 0, 0, 0, false),
            ("when { context.a in resource.xs }", 0, 0, 0, false),
            ("unless { resource is ZenML::Stack }", 1, 0, 0, true),
            ("unless { principal.active }", 1, 1, 1, true),
            (
                "when { principal.active } unless { action == A::\"a\" && resource is T }",
                2,
                1,
                1,
                true,
            ),
            ("when { A::\"a\" == action }", 1, 0, 0, true),
            ("when { action == \"A::\\\"a\\\"\" }", 0, 0, 0, false),
            ("when { action == resource }", 0, 0, 0, false),
            ("when { action in A::\"a\" }", 0, 0, 0, false),
            ("when { action has a }", 0, 0, 0, false),
            ("when { resource.x has y }", 0, 0, 0, false),
            ("when { context.flag }", 1, 1, 1, true),
            ("when { principal }", 0, 0, 0, false),
            ("when { resource.p == W::\"w\" }", 1, 1, 1, true),
            ("when { W::\"w\" == resource.p.q }", 1, 1, 2, true),
            // A record literal, even one with `type` and `id`, is no entity.
            ("when { resource.p == {type: \"W\", id: \"w\"} }", 0, 0, 0, false),
            ("when { resource.p == \"W::\\\"w\\\"\" }", 0, 0, 0, false),
            ("when { context == W::\"w\" }", 0, 0, 0, false),
        ];
        for (condition, count, atom_count, step_count, complete) in table {
            let (found, atoms) = parsed(condition);
            assert_eq!(
                (
                    found.leading.len(),
                    atoms.atoms.len(),
                    atoms.steps.len(),
                    found.complete
                ),
                (count, atom_count, step_count, complete),
                "{condition}"
            );
        }
        let (found, _) = guards("when { resource is ZenML::Stack && principal.active == true }");
        assert_eq!(found, vec![stack()]);
        // Later conditions follow the first: `unless` as the negation of its body.
        let (found, _) =
            parsed("when { resource is ZenML::Stack } unless { resource is ZenML::Stack } when { 1 < 2 }");
        assert_eq!(found.leading, vec![stack(), Guard::Not(Box::new(stack()))]);
        assert!(!found.complete);
    }

    #[test]
    fn guards_evaluate_with_short_circuits_over_three_values() {
        let user: EntityTypeName = "ZenML::User".parse().unwrap();
        let (stack, pipeline): (EntityTypeName, EntityTypeName) = (
            "ZenML::Stack".parse().unwrap(),
            "ZenML::Pipeline".parse().unwrap(),
        );
        let action = EntityUid::from_str("A::\"a\"").unwrap();
        let types = |principal, resource, action| Types {
            principal,
            resource,
            action,
        };
        let (found, _) = guards("when { (resource is ZenML::Stack || !(context has p)) && true }");
        let [guard] = found.as_slice() else {
            panic!("one guard: {found:?}")
        };
        let has = AtomValues { holds: 1, unknown: 0 };
        assert_eq!(
            guard.truth(types(&user, &stack, &action), &mut { has }),
            Truth::True
        );
        assert_eq!(
            guard.truth(types(&user, &pipeline, &action), &mut { AtomValues::default() }),
            Truth::True
        );
        assert_eq!(
            guard.truth(types(&user, &pipeline, &action), &mut { has }),
            Truth::False
        );
        // The action, either way round; another action is false.
        let other = EntityUid::from_str("A::\"b\"").unwrap();
        for condition in ["when { action == A::\"a\" }", "when { A::\"a\" == action }"] {
            let (found, _) = guards(condition);
            let [guard] = found.as_slice() else {
                panic!("one guard: {found:?}")
            };
            let none = AtomValues::default();
            assert_eq!(
                guard.truth(types(&user, &stack, &action), &mut { none }),
                Truth::True
            );
            assert_eq!(
                guard.truth(types(&user, &stack, &other), &mut { none }),
                Truth::False
            );
        }
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
            {"uid": {"type": "U", "id": "alice"}, "attrs": {"active": true}, "parents": [{"type": "G", "id": "devs"}]},
            {"uid": {"type": "G", "id": "devs"}, "attrs": {"active": "yes"}, "parents": []},
            {"uid": {"type": "W", "id": "w"}, "attrs": {
                "developers": {"__entity": {"type": "G", "id": "devs"}},
                "viewers": {"__entity": {"type": "G", "id": "views"}},
                "name": "w",
                "mixed": [{"__entity": {"type": "G", "id": "devs"}}, 1],
                "teams": [{"__entity": {"type": "G", "id": "x"}}, {"__entity": {"type": "G", "id": "devs"}}],
                "strangers": [{"__entity": {"type": "G", "id": "x"}}, {"__entity": {"type": "G", "id": "y"}}],
                "owner": {"__entity": {"type": "U", "id": "alice"}}
            }, "parents": []},
            {"uid": {"type": "R", "id": "r"}, "attrs": {"workspace": {"__entity": {"type": "W", "id": "w"}}, "flag": false}, "parents": []},
            {"uid": {"type": "R", "id": "lost"}, "attrs": {"workspace": {"__entity": {"type": "W", "id": "gone"}}}, "parents": []}
        ]"#;
        let entities = Entities::from_json_str(schema_free, None).unwrap();
        let uid = |text: &str| EntityUid::from_str(text).unwrap();
        let context = Context::from_json_str(
            r#"{"groups": [{"__entity": {"type": "G", "id": "devs"}}], "other": [{"__entity": {"type": "G", "id": "x"}}],
                "many": [{"__entity": {"type": "G", "id": "x"}}, {"__entity": {"type": "G", "id": "y"}}, {"__entity": {"type": "G", "id": "devs"}}],
                "one": {"__entity": {"type": "G", "id": "devs"}}, "numbers": [1, 2], "yes": true, "record": {"g": {"__entity": {"type": "G", "id": "devs"}}},
                "nobody": {"__entity": {"type": "G", "id": "nobody"}}}"#,
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
            // Booleans as conditions: their value, or unknown where Cedar errors.
            ("principal.active", "U::\"alice\"", "R::\"r\"", Truth::True),
            ("principal.active", "G::\"devs\"", "R::\"r\"", Truth::Unknown),
            ("principal.active", "U::\"bob\"", "R::\"r\"", Truth::Unknown),
            ("resource.flag", "U::\"alice\"", "R::\"r\"", Truth::False),
            (
                "resource.workspace.owner.active",
                "G::\"devs\"",
                "R::\"r\"",
                Truth::True,
            ),
            ("principal.active.x", "U::\"alice\"", "R::\"r\"", Truth::Unknown),
            ("context.yes", "U::\"alice\"", "R::\"r\"", Truth::True),
            ("context.numbers", "U::\"alice\"", "R::\"r\"", Truth::Unknown),
            // `==` with an entity literal: never an error but where reading the other side errs;
            // false for a value that is no entity.
            (
                "resource.workspace == W::\"w\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "W::\"w\" == resource.workspace",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "resource.workspace == W::\"v\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "resource.workspace == W::\"gone\"",
                "U::\"alice\"",
                "R::\"lost\"",
                Truth::True,
            ),
            (
                "resource.workspace == W::\"w\"",
                "U::\"alice\"",
                "R::\"lost\"",
                Truth::False,
            ),
            (
                "resource.workspace.owner == U::\"alice\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "resource.workspace.owner == U::\"alice\"",
                "U::\"alice\"",
                "R::\"lost\"",
                Truth::Unknown,
            ),
            (
                "resource.nothing == W::\"w\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
            (
                "resource.flag == W::\"w\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "resource.workspace.teams == G::\"x\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "resource.workspace.name == G::\"x\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "principal == U::\"alice\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "principal == U::\"alice\"",
                "G::\"devs\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "resource == U::\"nobody\"",
                "G::\"devs\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "context.one == G::\"devs\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "context.numbers == G::\"devs\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "context.nobody == G::\"devs\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "context.nobody == G::\"nobody\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "context.nobody == G::\"else\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::False,
            ),
            (
                "context.record.g == G::\"devs\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::True,
            ),
            (
                "context.missing == G::\"devs\"",
                "U::\"alice\"",
                "R::\"r\"",
                Truth::Unknown,
            ),
        ];
        let mut on_graph = 0;
        for (condition, principal, resource, truth) in table {
            let (found, atoms) = guards(&format!("when {{ {condition} }}"));
            assert_eq!(found, vec![Guard::Atom(0)], "{condition}");
            let (principal_uid, resource_uid) = (uid(principal), uid(resource));
            let cedar = CedarData::new(&entities, Some(&context));
            let (cedar_principal, cedar_resource) = (
                CedarEntity::new(Cow::Borrowed(&principal_uid)),
                CedarEntity::new(Cow::Borrowed(&resource_uid)),
            );
            let values = atoms
                .evaluation(cedar, cedar_principal.clone(), cedar_resource.clone())
                .values(1)
                .unwrap();
            assert_eq!(values.of(0), truth, "{condition} for {principal} on {resource}");
            // An entity-keyed policy's `==` (not an atom), read on demand: the same truth.
            let (per_policy, keyed_atoms) = per_policy(condition);
            let action = uid("A::\"a\"");
            let types = Types {
                principal: principal_uid.type_name(),
                resource: resource_uid.type_name(),
                action: &action,
            };
            let mut on_demand = keyed_atoms.evaluation(cedar, cedar_principal, cedar_resource);
            assert_eq!(
                conjunction(&per_policy, types, &mut on_demand),
                truth,
                "per policy: {condition} for {principal} on {resource}"
            );
            // Read from the graph (stored principal and resource; reads into records, and an
            // entity the graph never met compared with a literal it never met, excepted): the
            // same truth.
            let graph = Graph::build(&entities, &atoms.attr_names()).unwrap();
            if let (Some(p), Some(r)) = (graph.stored(&principal_uid), graph.stored(&resource_uid)) {
                let literals = atoms.literal_ids(&graph);
                let data = GraphData::new(&graph, &literals, Some(&context), None);
                let stored = atoms.evaluation(data, p, r).values(1);
                // The context read beforehand: the same.
                let reads = atoms.read_context(&context, &graph);
                let prepared = GraphData::new(&graph, &literals, Some(&context), Some(&reads));
                let read_before = atoms.evaluation(prepared, p, r).values(1);
                assert_eq!(read_before, stored, "context read beforehand: {condition}");
                let keyed_literals = keyed_atoms.literal_ids(&graph);
                let keyed_data = GraphData::new(&graph, &keyed_literals, Some(&context), None);
                let per_policy_truth =
                    conjunction(&per_policy, types, &mut keyed_atoms.evaluation(keyed_data, p, r));
                // (An entity the graph never met against a literal it never met.)
                let unmet_both =
                    condition.starts_with("context.nobody") && !condition.ends_with("G::\"devs\"");
                if condition.contains("record.") || unmet_both {
                    assert_eq!(stored, None, "graph: {condition} is left to Cedar");
                    assert_eq!(per_policy_truth, Truth::Unknown, "graph, per policy: {condition}");
                } else {
                    assert_eq!(
                        stored,
                        Some(values),
                        "graph: {condition} for {principal} on {resource}"
                    );
                    assert_eq!(per_policy_truth, truth, "graph, per policy: {condition}");
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
        assert_eq!(on_graph, 51, "rows read from the graph");
    }
}
