//! Leading guards: the first conjuncts of a policy's `when` condition that are decided before
//! evaluation, by the request's principal and resource types and by which attributes its
//! context and entities have (`resource is ZenML::Stack || …`, `context has shared_with_users`,
//! `resource has project`).
//!
//! Why it is exact: Cedar evaluates a policy as `scope && when-body && …`, left to right, and
//! stops at the first false conjunct. A guard never errors (`is` and `has` cannot: `has` on an
//! entity that does not exist is false), so when one of the leading guards is false the policy
//! is not satisfied and reports no error, whatever follows. Only the *leading* guards count: a
//! guard after an ordinary conjunct may never be reached, and that conjunct may error.

use cedar_policy::{Context, Entities, EntityTypeName, EntityUid};
use serde_json::Value;

/// At most this many distinct `has` tests are indexed; later ones end a policy's guard prefix.
pub const MAX_ATOMS: usize = 8;

/// A variable a guard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Var {
    Principal,
    Resource,
    Context,
}

/// One `<var> has <attr>` test, shared by every policy that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Atom {
    var: Var,
    attr: String,
}

impl Atom {
    /// Whether the request has the attribute: the context's key, or the entity's attribute in
    /// `entities` (an entity that is not there has none, as in Cedar).
    pub fn holds(
        &self,
        principal: &EntityUid,
        resource: &EntityUid,
        context: Option<&Context>,
        entities: &Entities,
    ) -> bool {
        let entity = match self.var {
            Var::Context => return context.is_some_and(|context| context.get(&self.attr).is_some()),
            Var::Principal => principal,
            Var::Resource => resource,
        };
        entities
            .get(entity)
            .is_some_and(|entity| entity.attr(&self.attr).is_some())
    }
}

/// A guard expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Guard {
    /// `<var> has <attr>`: bit `n` of the request's atom mask.
    Has(usize),
    /// `principal is T` (`true`) or `resource is T` (`false`).
    Is(bool, EntityTypeName),
    Not(Box<Guard>),
    And(Box<Guard>, Box<Guard>),
    Or(Box<Guard>, Box<Guard>),
}

impl Guard {
    /// Its value for a request with these types and atom mask.
    pub fn holds(&self, principal: &EntityTypeName, resource: &EntityTypeName, mask: u32) -> bool {
        match self {
            Guard::Has(atom) => mask & (1 << atom) != 0,
            Guard::Is(true, type_name) => type_name == principal,
            Guard::Is(false, type_name) => type_name == resource,
            Guard::Not(inner) => !inner.holds(principal, resource, mask),
            Guard::And(left, right) => {
                left.holds(principal, resource, mask) && right.holds(principal, resource, mask)
            }
            Guard::Or(left, right) => {
                left.holds(principal, resource, mask) || right.holds(principal, resource, mask)
            }
        }
    }

    /// The atoms it reads, as a mask.
    pub fn atoms(&self) -> u32 {
        match self {
            Guard::Has(atom) => 1 << atom,
            Guard::Is(..) => 0,
            Guard::Not(inner) => inner.atoms(),
            Guard::And(left, right) | Guard::Or(left, right) => left.atoms() | right.atoms(),
        }
    }
}

/// The leading guards of a policy (its Cedar JSON), registering new atoms in `atoms`.
pub fn leading(policy: &Value, atoms: &mut Vec<Atom>) -> Vec<Guard> {
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

fn parse(expr: &Value, atoms: &mut Vec<Atom>) -> Option<Guard> {
    let Value::Object(node) = expr else { return None };
    if node.len() != 1 {
        return None;
    }
    let (op, args) = node.iter().next()?;
    match op.as_str() {
        "has" => {
            let atom = Atom {
                var: var(args.get("left")?)?,
                attr: args.get("attr")?.as_str()?.to_owned(),
            };
            let at = match atoms.iter().position(|known| *known == atom) {
                Some(at) => at,
                None if atoms.len() < MAX_ATOMS => {
                    atoms.push(atom);
                    atoms.len() - 1
                }
                None => return None,
            };
            Some(Guard::Has(at))
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
    use std::str::FromStr;

    use super::*;

    fn guards(condition: &str) -> (Vec<Guard>, Vec<Atom>) {
        let text = format!("permit (principal, action, resource) {condition};");
        let policy = cedar_policy::Policy::from_str(&text).unwrap();
        let mut atoms = Vec::new();
        (leading(&policy.to_json().unwrap(), &mut atoms), atoms)
    }

    #[test]
    fn only_the_leading_guards_of_the_first_when_count() {
        let stack = || Guard::Is(false, "ZenML::Stack".parse().unwrap());
        // (condition, number of leading guards, atoms)
        let table: [(&str, usize, usize); 9] = [
            ("", 0, 0),
            ("when { context has a && principal in context.a }", 1, 1),
            ("when { context has a && resource has b && context has a }", 3, 2),
            (
                "when { principal in resource.xs && resource is ZenML::Stack }",
                0,
                0,
            ),
            (
                "when { (resource is ZenML::Stack || !(resource has p)) && resource.p.q }",
                1,
                1,
            ),
            ("when { resource is ZenML::Stack in ZenML::W::\"w\" }", 0, 0),
            ("unless { resource is ZenML::Stack }", 0, 0),
            ("when { action has a }", 0, 0),
            ("when { resource.x has y }", 0, 0),
        ];
        for (condition, count, atom_count) in table {
            let (found, atoms) = guards(condition);
            assert_eq!((found.len(), atoms.len()), (count, atom_count), "{condition}");
        }
        let (found, _) = guards("when { resource is ZenML::Stack && principal.active }");
        assert_eq!(found, vec![stack()]);
    }

    #[test]
    fn guards_evaluate_on_types_and_the_atom_mask() {
        let (found, _) = guards("when { (resource is ZenML::Stack || !(context has p)) && true }");
        let [guard] = found.as_slice() else {
            panic!("one guard: {found:?}")
        };
        let user: EntityTypeName = "ZenML::User".parse().unwrap();
        let (stack, pipeline) = (
            "ZenML::Stack".parse().unwrap(),
            "ZenML::Pipeline".parse().unwrap(),
        );
        assert!(guard.holds(&user, &stack, 1));
        assert!(guard.holds(&user, &pipeline, 0));
        assert!(!guard.holds(&user, &pipeline, 1));
        assert_eq!(guard.atoms(), 1);
    }
}
