//! Native evaluation of simple CEL expressions: a fast path next to the `cel` interpreter.
//!
//! Entry points: [`Native::compile`] (at load time: a CEL expression tree translated into
//! [`Native`], or `None` when it uses something this module does not implement) and
//! [`Native::eval`] (at run time: the value, read straight from the [`Signal`]s' own
//! attributes, or `None` — *bail out* — whenever the interpreter must decide).
//!
//! Why: the interpreter needs a signal's variables as CEL values, and converting a signal's
//! attribute maps costs far more than the comparisons most rule conditions and template holes
//! make (`attributes["k"] == "v"`, `"k" in attributes`, `entity.name.startsWith("/kubepods")`,
//! a ternary, a `exists` over a list of substrings). Those run here on the signal as it is,
//! and nothing is converted.
//!
//! Invariant: whenever [`Native::eval`] returns `Some(v)`, the interpreter returns the same
//! value for the same expression and variables. The subset is chosen so that this holds by
//! construction: every operator is implemented only for operand types whose CEL result is
//! unambiguous (same-type comparisons of strings, ints, uints, bools and non-NaN doubles;
//! `+` of strings; `in` on maps with string keys and on lists of same-typed scalars), and any
//! other case — a missing key, an error, a type mix, an overflow — bails out, so the
//! interpreter produces its own result or error. A property test holds the two to this
//! (`tests` below, and `ruleset`'s tests over the shipped packs).
//!
//! Deliberately not here: anything with timestamps, durations, bytes, regexes (`matches`),
//! arithmetic other than string `+`, map or struct literals, and optional syntax.

use cel::common::ast::{Expr, IdedExpr, LiteralValue, operators};
use daytwo_model::{Attributes, Signal};
use serde_json::Value as J;
use std::borrow::Cow;

/// A compiled expression.
#[derive(Debug)]
pub(crate) struct Native {
    root: N,
    /// The `join.NAME`s it reads, by [`Who::Join`] index.
    joins: Vec<String>,
}

/// Which signal a variable is read from.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    /// The signal the expression is about (a trigger, or a join candidate).
    This,
    /// `trigger`, in a join's condition.
    Trigger,
    /// `join.NAME`, in the templates of a rule with joins: index into [`Native::joins`].
    Join(usize),
}

/// One of a signal's variables ([`crate::VARIABLES`]), or the whole signal as a map.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Var {
    Name,
    Severity,
    Attributes,
    Resource,
    Entity,
    Message,
    Time,
    Whole,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum StrFn {
    Contains,
    StartsWith,
    EndsWith,
    LowerAscii,
    UpperAscii,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Conv {
    Int,
    Double,
    String,
}

#[derive(Debug)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
}

#[derive(Debug)]
enum N {
    Lit(Lit),
    Var(Who, Var),
    /// A comprehension's variable: the index into the stack of bound values.
    Local(usize),
    Index(Box<N>, Box<N>),
    Field(Box<N>, String),
    Has(Box<N>, String),
    Not(Box<N>),
    And(Box<N>, Box<N>),
    Or(Box<N>, Box<N>),
    Cond(Box<N>, Box<N>, Box<N>),
    Cmp(Cmp, Box<N>, Box<N>),
    In(Box<N>, Box<N>),
    Add(Box<N>, Box<N>),
    Str(StrFn, Box<N>, Option<Box<N>>),
    Conv(Conv, Box<N>),
    List(Vec<N>),
    /// `range.exists(x, body)` (`true`) or `range.all(x, body)` (`false`).
    Quant(bool, Box<N>, Box<N>),
}

/// A value during native evaluation, borrowing from the signals and the expression.
#[derive(Clone, Debug)]
pub(crate) enum V<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(Cow<'a, str>),
    /// `attributes`, `resource`, `entity.attributes`.
    Attrs(&'a Attributes),
    JsonMap(&'a serde_json::Map<String, J>),
    JsonList(&'a [J]),
    List(Vec<V<'a>>),
    /// `entity`: the map of `kind`, `name`, `attributes`.
    Entity(&'a Signal),
    /// A whole signal as a map (`trigger`, `join.NAME`).
    Signal(&'a Signal),
}

/// The signals an expression reads.
pub(crate) struct Env<'a> {
    pub(crate) this: &'a Signal,
    pub(crate) trigger: Option<&'a Signal>,
    /// `join.NAME` → its signal.
    pub(crate) joins: &'a [(&'a str, &'a Signal)],
}

/// Compile-time state: the comprehension variables in scope, innermost last, and what the
/// names `trigger` and `join` mean here.
struct Scope<'s> {
    bound: Vec<String>,
    allow_trigger: bool,
    join_names: &'s mut Vec<String>,
}

impl Native {
    /// Translates `e`, or `None` when it uses anything outside the native subset.
    /// `trigger` says whether the identifier `trigger` is a variable here (a join's condition).
    pub(crate) fn compile(e: &IdedExpr, trigger: bool) -> Option<Native> {
        let mut joins = Vec::new();
        let mut scope = Scope {
            bound: Vec::new(),
            allow_trigger: trigger,
            join_names: &mut joins,
        };
        let root = compile(e, &mut scope)?;
        Some(Native { root, joins })
    }

    /// The value of the expression, or `None` when the interpreter must decide (see the module
    /// documentation).
    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>) -> Option<V<'a>> {
        let mut locals = Vec::new();
        eval(&self.root, env, &self.joins, &mut locals)
    }
}

fn compile(e: &IdedExpr, s: &mut Scope<'_>) -> Option<N> {
    let b = |e: &IdedExpr, s: &mut Scope<'_>| compile(e, s).map(Box::new);
    Some(match &e.expr {
        Expr::Literal(l) => N::Lit(match l {
            LiteralValue::Boolean(v) => Lit::Bool(*v.inner()),
            LiteralValue::Int(v) => Lit::Int(*v.inner()),
            LiteralValue::UInt(v) => Lit::UInt(*v.inner()),
            LiteralValue::Double(v) => Lit::Double(*v.inner()),
            LiteralValue::String(v) => Lit::Str(v.inner().to_string()),
            LiteralValue::Null => Lit::Null,
            LiteralValue::Bytes(_) => return None,
        }),
        Expr::Ident(name) => {
            if let Some(i) = s.bound.iter().rposition(|b| b == name) {
                return Some(N::Local(i));
            }
            if name == "trigger" {
                return s.allow_trigger.then_some(N::Var(Who::Trigger, Var::Whole));
            }
            N::Var(Who::This, var(name)?)
        }
        Expr::Select(sel) => {
            // `join.NAME` names a joined signal (unless a comprehension bound `join`).
            if let Expr::Ident(root) = &sel.operand.expr
                && root == "join"
                && !s.bound.iter().any(|b| b == "join")
                && !sel.test
            {
                let i = match s.join_names.iter().position(|n| *n == sel.field) {
                    Some(i) => i,
                    None => {
                        s.join_names.push(sel.field.clone());
                        s.join_names.len() - 1
                    }
                };
                return Some(N::Var(Who::Join(i), Var::Whole));
            }
            let operand = b(&sel.operand, s)?;
            if sel.test {
                N::Has(operand, sel.field.clone())
            } else {
                N::Field(operand, sel.field.clone())
            }
        }
        Expr::List(l) => {
            if !l.optional_indices.is_empty() {
                return None;
            }
            N::List(
                l.elements
                    .iter()
                    .map(|x| compile(x, s))
                    .collect::<Option<_>>()?,
            )
        }
        Expr::Call(call) => {
            let f = call.func_name.as_str();
            match (&call.target, call.args.len()) {
                (None, 3) if f == operators::CONDITIONAL => N::Cond(
                    b(&call.args[0], s)?,
                    b(&call.args[1], s)?,
                    b(&call.args[2], s)?,
                ),
                (None, 2) => {
                    let (x, y) = (&call.args[0], &call.args[1]);
                    let cmp = match f {
                        operators::EQUALS => Some(Cmp::Eq),
                        operators::NOT_EQUALS => Some(Cmp::Ne),
                        operators::LESS => Some(Cmp::Lt),
                        operators::LESS_EQUALS => Some(Cmp::Le),
                        operators::GREATER => Some(Cmp::Gt),
                        operators::GREATER_EQUALS => Some(Cmp::Ge),
                        _ => None,
                    };
                    if let Some(c) = cmp {
                        N::Cmp(c, b(x, s)?, b(y, s)?)
                    } else {
                        match f {
                            operators::LOGICAL_AND => N::And(b(x, s)?, b(y, s)?),
                            operators::LOGICAL_OR => N::Or(b(x, s)?, b(y, s)?),
                            operators::INDEX => N::Index(b(x, s)?, b(y, s)?),
                            operators::IN => N::In(b(x, s)?, b(y, s)?),
                            operators::ADD => N::Add(b(x, s)?, b(y, s)?),
                            _ => return None,
                        }
                    }
                }
                (None, 1) => {
                    let x = &call.args[0];
                    match f {
                        operators::LOGICAL_NOT => N::Not(b(x, s)?),
                        "int" => N::Conv(Conv::Int, b(x, s)?),
                        "double" => N::Conv(Conv::Double, b(x, s)?),
                        "string" => N::Conv(Conv::String, b(x, s)?),
                        _ => return None,
                    }
                }
                (Some(t), n) => {
                    let func = match (f, n) {
                        ("contains", 1) => StrFn::Contains,
                        ("startsWith", 1) => StrFn::StartsWith,
                        ("endsWith", 1) => StrFn::EndsWith,
                        ("lowerAscii", 0) => StrFn::LowerAscii,
                        ("upperAscii", 0) => StrFn::UpperAscii,
                        _ => return None,
                    };
                    let arg = match call.args.first() {
                        Some(a) => Some(b(a, s)?),
                        None => None,
                    };
                    N::Str(func, b(t, s)?, arg)
                }
                _ => return None,
            }
        }
        Expr::Comprehension(c) => {
            // Only the `exists` and `all` macros, as the parser expands them: an accumulator
            // starting at false (true), stepped by `acc || body` (`acc && body`).
            if c.iter_var2.is_some() {
                return None;
            }
            let exists = match &c.accu_init.expr {
                Expr::Literal(LiteralValue::Boolean(v)) => !*v.inner(),
                _ => return None,
            };
            let Expr::Call(step) = &c.loop_step.expr else {
                return None;
            };
            let want = if exists {
                operators::LOGICAL_OR
            } else {
                operators::LOGICAL_AND
            };
            if step.func_name != want || step.target.is_some() || step.args.len() != 2 {
                return None;
            }
            let is_accu = |e: &IdedExpr| matches!(&e.expr, Expr::Ident(n) if *n == c.accu_var);
            if !is_accu(&step.args[0]) || !is_accu(&c.result) {
                return None;
            }
            let range = b(&c.iter_range, s)?;
            s.bound.push(c.iter_var.clone());
            let body = compile(&step.args[1], s);
            s.bound.pop();
            N::Quant(exists, range, Box::new(body?))
        }
        Expr::Map(_) | Expr::Struct(_) | Expr::Unspecified => return None,
    })
}

fn var(name: &str) -> Option<Var> {
    Some(match name {
        "name" => Var::Name,
        "severity" => Var::Severity,
        "attributes" => Var::Attributes,
        "resource" => Var::Resource,
        "entity" => Var::Entity,
        "message" => Var::Message,
        "time" => Var::Time,
        _ => return None,
    })
}

fn json<'a>(v: &'a J) -> V<'a> {
    match v {
        J::Null => V::Null,
        J::Bool(b) => V::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                V::Int(i)
            } else if let Some(u) = n.as_u64() {
                V::UInt(u)
            } else {
                V::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => V::Str(Cow::Borrowed(s)),
        J::Array(a) => V::JsonList(a),
        J::Object(o) => V::JsonMap(o),
    }
}

fn signal_var<'a>(s: &'a Signal, v: Var) -> V<'a> {
    match v {
        Var::Name => V::Str(Cow::Borrowed(&s.name)),
        Var::Severity => V::Str(Cow::Borrowed(s.severity.as_str())),
        Var::Attributes => V::Attrs(&s.attributes),
        Var::Resource => V::Attrs(&s.resource),
        Var::Entity => V::Entity(s),
        Var::Message => V::Str(Cow::Borrowed(&s.message)),
        Var::Time => V::Str(Cow::Owned(s.time.to_string())),
        Var::Whole => V::Signal(s),
    }
}

/// `container[key]` (also `container.key`) for a map; `None` for a missing key or anything
/// that is not a map with string keys.
fn index<'a>(container: V<'a>, key: &str) -> Option<V<'a>> {
    match container {
        V::Attrs(m) => m.get(key).map(json),
        V::JsonMap(m) => m.get(key).map(json),
        V::Entity(s) => Some(match key {
            "kind" => V::Str(Cow::Borrowed(s.entity.kind.as_str())),
            "name" => V::Str(Cow::Borrowed(&s.entity.name)),
            "attributes" => V::Attrs(&s.entity.attributes),
            _ => return None,
        }),
        V::Signal(s) => Some(signal_var(s, var(key)?)),
        _ => None,
    }
}

/// Whether the map `container` has `key`; `None` when it is not a map with string keys.
fn has_key(container: &V<'_>, key: &str) -> Option<bool> {
    Some(match container {
        V::Attrs(m) => m.contains_key(key),
        V::JsonMap(m) => m.contains_key(key),
        V::Entity(_) => matches!(key, "kind" | "name" | "attributes"),
        V::Signal(_) => var(key).is_some_and(|v| v != Var::Whole),
        _ => return None,
    })
}

/// Same-type scalar ordering; `None` for a type mix, NaN, or non-scalars.
fn compare(a: &V<'_>, b: &V<'_>) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (V::Int(x), V::Int(y)) => Some(x.cmp(y)),
        (V::UInt(x), V::UInt(y)) => Some(x.cmp(y)),
        (V::Double(x), V::Double(y)) => x.partial_cmp(y),
        (V::Str(x), V::Str(y)) => Some(x.as_ref().cmp(y.as_ref())),
        (V::Bool(x), V::Bool(y)) => Some(x.cmp(y)),
        _ => None,
    }
}

/// Whether `needle` equals an element; `None` when any element does not compare cleanly with
/// it (a type mix anywhere bails, so the interpreter decides).
fn in_list<'a>(needle: &V<'_>, items: impl Iterator<Item = V<'a>>) -> Option<bool> {
    let mut found = false;
    for item in items {
        if compare(needle, &item)?.is_eq() {
            found = true;
        }
    }
    Some(found)
}

fn truth(v: Option<V<'_>>) -> Option<bool> {
    match v? {
        V::Bool(b) => Some(b),
        _ => None,
    }
}

fn eval<'a>(n: &'a N, env: &Env<'a>, joins: &[String], locals: &mut Vec<V<'a>>) -> Option<V<'a>> {
    let ev = |n: &'a N, locals: &mut Vec<V<'a>>| eval(n, env, joins, locals);
    Some(match n {
        N::Lit(l) => match l {
            Lit::Null => V::Null,
            Lit::Bool(b) => V::Bool(*b),
            Lit::Int(i) => V::Int(*i),
            Lit::UInt(u) => V::UInt(*u),
            Lit::Double(d) => V::Double(*d),
            Lit::Str(s) => V::Str(Cow::Borrowed(s)),
        },
        N::Var(who, v) => {
            let s = match who {
                Who::This => env.this,
                Who::Trigger => env.trigger?,
                Who::Join(i) => {
                    let name = joins.get(*i)?;
                    env.joins.iter().find(|(n, _)| *n == name)?.1
                }
            };
            signal_var(s, *v)
        }
        N::Local(i) => locals.get(*i)?.clone(),
        N::Index(c, k) => {
            let c = ev(c, locals)?;
            match ev(k, locals)? {
                V::Str(k) => index(c, &k)?,
                _ => return None,
            }
        }
        N::Field(c, f) => index(ev(c, locals)?, f)?,
        N::Has(c, f) => V::Bool(has_key(&ev(c, locals)?, f)?),
        N::Not(x) => V::Bool(!truth(ev(x, locals))?),
        N::And(x, y) => match truth(ev(x, locals))? {
            false => V::Bool(false),
            true => V::Bool(truth(ev(y, locals))?),
        },
        N::Or(x, y) => match truth(ev(x, locals))? {
            true => V::Bool(true),
            false => V::Bool(truth(ev(y, locals))?),
        },
        N::Cond(c, x, y) => {
            if truth(ev(c, locals))? {
                ev(x, locals)?
            } else {
                ev(y, locals)?
            }
        }
        N::Cmp(op, x, y) => {
            let (a, b) = (ev(x, locals)?, ev(y, locals)?);
            if matches!(a, V::Bool(_)) && !matches!(op, Cmp::Eq | Cmp::Ne) {
                return None;
            }
            let o = compare(&a, &b)?;
            V::Bool(match op {
                Cmp::Eq => o.is_eq(),
                Cmp::Ne => o.is_ne(),
                Cmp::Lt => o.is_lt(),
                Cmp::Le => o.is_le(),
                Cmp::Gt => o.is_gt(),
                Cmp::Ge => o.is_ge(),
            })
        }
        N::In(x, c) => {
            let needle = ev(x, locals)?;
            let hay = ev(c, locals)?;
            V::Bool(match &hay {
                V::List(items) => in_list(&needle, items.iter().cloned())?,
                V::JsonList(items) => in_list(&needle, items.iter().map(json))?,
                map => match &needle {
                    V::Str(k) => has_key(map, k)?,
                    _ => return None,
                },
            })
        }
        N::Add(x, y) => match (ev(x, locals)?, ev(y, locals)?) {
            (V::Str(a), V::Str(b)) => V::Str(Cow::Owned(format!("{a}{b}"))),
            _ => return None,
        },
        N::Str(f, t, arg) => {
            let V::Str(t) = ev(t, locals)? else {
                return None;
            };
            let arg = match arg {
                Some(a) => match ev(a, locals)? {
                    V::Str(a) => Some(a),
                    _ => return None,
                },
                None => None,
            };
            match (f, arg) {
                (StrFn::Contains, Some(a)) => V::Bool(t.contains(a.as_ref())),
                (StrFn::StartsWith, Some(a)) => V::Bool(t.starts_with(a.as_ref())),
                (StrFn::EndsWith, Some(a)) => V::Bool(t.ends_with(a.as_ref())),
                (StrFn::LowerAscii, None) => {
                    if t.bytes().any(|b| b.is_ascii_uppercase()) {
                        V::Str(Cow::Owned(t.to_ascii_lowercase()))
                    } else {
                        V::Str(t)
                    }
                }
                (StrFn::UpperAscii, None) => {
                    if t.bytes().any(|b| b.is_ascii_lowercase()) {
                        V::Str(Cow::Owned(t.to_ascii_uppercase()))
                    } else {
                        V::Str(t)
                    }
                }
                _ => return None,
            }
        }
        N::Conv(c, x) => match (c, ev(x, locals)?) {
            (Conv::Int, V::Int(i)) => V::Int(i),
            (Conv::Int, V::UInt(u)) => V::Int(i64::try_from(u).ok()?),
            (Conv::Double, V::Int(i)) => V::Double(i as f64),
            (Conv::Double, V::UInt(u)) => V::Double(u as f64),
            (Conv::Double, V::Double(d)) => V::Double(d),
            (Conv::String, V::Str(s)) => V::Str(s),
            (Conv::String, V::Int(i)) => V::Str(Cow::Owned(i.to_string())),
            (Conv::String, V::UInt(u)) => V::Str(Cow::Owned(u.to_string())),
            _ => return None,
        },
        N::List(items) => V::List(items.iter().map(|x| ev(x, locals)).collect::<Option<_>>()?),
        N::Quant(exists, range, body) => {
            let range = ev(range, locals)?;
            // Map keys iterate in a different order in the interpreter (a hash map): evaluate
            // every key so that the result cannot depend on the order.
            let (items, ordered): (Vec<V<'a>>, bool) = match range {
                V::List(items) => (items, true),
                V::JsonList(items) => (items.iter().map(json).collect(), true),
                V::Attrs(m) => (m.keys().map(|k| V::Str(Cow::Borrowed(k))).collect(), false),
                V::JsonMap(m) => (m.keys().map(|k| V::Str(Cow::Borrowed(k))).collect(), false),
                _ => return None,
            };
            let mut decided = false;
            for item in items {
                locals.push(item);
                let r = truth(eval(body, env, joins, locals));
                locals.pop();
                if r? == *exists {
                    decided = true;
                    if ordered {
                        break;
                    }
                }
            }
            // exists: true when some element held; all: false when some element failed.
            V::Bool(if *exists { decided } else { !decided })
        }
    })
}

/// The expression's value as a bool: `None` when it bails out or is not a bool.
pub(crate) fn truth_of(n: &Native, env: &Env<'_>) -> Option<bool> {
    truth(n.eval(env))
}

impl V<'_> {
    /// The value as the interpreter would return it, for scalars (what a template hole prints
    /// or a filter reads); `None` for maps and lists.
    pub(crate) fn to_cel(&self) -> Option<cel::Value> {
        Some(match self {
            V::Null => cel::Value::Null,
            V::Bool(b) => cel::Value::Bool(*b),
            V::Int(i) => cel::Value::Int(*i),
            V::UInt(u) => cel::Value::UInt(*u),
            V::Double(d) => cel::Value::Float(*d),
            V::Str(s) => cel::Value::String(std::sync::Arc::new(s.to_string())),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::expr::{Cel, Scope, Vars};
    use daytwo_model::{Entity, EntityKind, Severity, Timestamp};
    use proptest::prelude::*;

    /// A signal whose attributes take the values the generated expressions compare with, of
    /// every JSON type, or are missing.
    fn signal(id: &str, a: u8, b: u8, n: u8, kind: u8) -> Signal {
        let pick = |x: u8| -> Option<J> {
            Some(match x % 9 {
                0 => return None,
                1 => J::from("x"),
                2 => J::from("Ab"),
                3 => J::from("no such host"),
                4 => J::from(1),
                5 => J::from(2.5),
                6 => J::from(true),
                7 => J::from(u64::MAX),
                _ => J::Null,
            })
        };
        let mut s = Signal {
            id: id.into(),
            name: ["daytwo.a", "daytwo.b"][a as usize % 2].into(),
            time: Timestamp::from_unix_secs(1_795_617_015 + i64::from(n)),
            severity: [Severity::Info, Severity::Warning, Severity::Critical][b as usize % 3],
            entity: Entity::new(
                [EntityKind::Pod, EntityKind::Node, EntityKind::Service][kind as usize % 3],
                ["x", "Ab", "/kubepods/p1"][n as usize % 3],
            )
            .with_attr("k", "x"),
            resource: [("host.name".to_string(), J::from("h1"))]
                .into_iter()
                .collect(),
            attributes: Default::default(),
            message: "Ab x".into(),
            evidence: vec![],
        };
        for (k, v) in [("a", pick(a)), ("b", pick(b)), ("n", pick(n))] {
            if let Some(v) = v {
                s.attributes.insert(k.into(), v);
            }
        }
        s
    }

    fn atom(trigger: bool, join: bool) -> BoxedStrategy<String> {
        // Atoms of untyped expressions.
        let mut atoms: Vec<&'static str> = vec![
            "attributes['a']",
            "attributes['b']",
            "attributes['n']",
            "attributes['missing']",
            "attributes.a",
            "resource['host.name']",
            "entity.name",
            "entity.kind",
            "entity.attributes['k']",
            "entity['name']",
            "name",
            "severity",
            "message",
            "time",
            "'x'",
            "'Ab'",
            "''",
            "1",
            "2",
            "1u",
            "2.5",
            "0.0",
            "true",
            "false",
            "null",
            "has(entity.name)",
            "has(attributes.a)",
            "'a' in attributes",
            "attributes",
            "['x', 'Ab']",
            "['x', 1]",
            "['no such host', 'x'].exists(p, attributes['a'].lowerAscii().contains(p))",
            "['x', 'Ab'].all(p, p != attributes['b'])",
            "attributes.exists(k, k.startsWith('a'))",
            "attributes.all(k, attributes[k] != 'x')",
        ];
        if trigger {
            atoms.extend([
                "trigger.entity.name",
                "trigger.attributes['a']",
                "trigger.name",
            ]);
        }
        if join {
            atoms.extend([
                "join.j.entity.name",
                "join.j.attributes['b']",
                "join.j.time",
            ]);
        }
        proptest::sample::select(atoms)
            .prop_map(str::to_string)
            .boxed()
    }

    /// Untyped expressions: mostly type errors, which must bail out.
    fn untyped(trigger: bool, join: bool) -> impl Strategy<Value = String> {
        atom(trigger, join).prop_recursive(4, 24, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone(), 0usize..12).prop_map(|(a, b, op)| {
                    let op = [
                        "==", "!=", "<", "<=", ">", ">=", "&&", "||", "+", "in", "==", "&&",
                    ][op];
                    format!("({a}) {op} ({b})")
                }),
                (inner.clone(), 0usize..8).prop_map(|(a, f)| match f {
                    0 => format!("!({a})"),
                    1 => format!("int({a})"),
                    2 => format!("double({a})"),
                    3 => format!("string({a})"),
                    4 => format!("({a}).lowerAscii()"),
                    5 => format!("({a}).upperAscii()"),
                    6 => format!("({a}) in ['x', 'Ab', 'h1']"),
                    _ => format!("({a}) in attributes"),
                }),
                (inner.clone(), inner.clone(), 0usize..3).prop_map(|(a, b, f)| {
                    let f = ["contains", "startsWith", "endsWith"][f];
                    format!("({a}).{f}({b})")
                }),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(c, a, b)| format!("({c}) ? ({a}) : ({b})")),
            ]
        })
    }

    fn pick(xs: Vec<&'static str>) -> BoxedStrategy<String> {
        proptest::sample::select(xs)
            .prop_map(str::to_string)
            .boxed()
    }

    /// String-typed expressions (when the attributes they read are strings).
    fn string(trigger: bool, join: bool) -> BoxedStrategy<String> {
        let mut leaves = vec![
            "attributes['a']",
            "attributes['b']",
            "entity.name",
            "entity.kind",
            "name",
            "severity",
            "message",
            "time",
            "'x'",
            "'Ab'",
            "''",
            "'no such host'",
            "resource['host.name']",
            "entity.attributes['k']",
            "string(attributes['n'])",
            "string(1)",
        ];
        if trigger {
            leaves.extend(["trigger.entity.name", "trigger.attributes['a']"]);
        }
        if join {
            leaves.extend([
                "join.j.entity.name",
                "join.j.attributes['a']",
                "join.j.time",
            ]);
        }
        pick(leaves)
            .prop_recursive(3, 12, 2, |inner| {
                prop_oneof![
                    inner.clone().prop_map(|a| format!("({a}).lowerAscii()")),
                    inner.clone().prop_map(|a| format!("({a}).upperAscii()")),
                    (inner.clone(), inner).prop_map(|(a, b)| format!("({a}) + ({b})")),
                ]
            })
            .boxed()
    }

    /// Number-typed expressions.
    fn number() -> BoxedStrategy<String> {
        pick(vec![
            "attributes['n']",
            "attributes['a']",
            "1",
            "2",
            "1u",
            "2.5",
            "0.0",
            "int(attributes['n'])",
            "double(attributes['n'])",
            "double(attributes['a'])",
            "int(1u)",
        ])
    }

    /// Bool-typed expressions: the shape of rule conditions.
    fn boolean(trigger: bool, join: bool) -> impl Strategy<Value = String> {
        let s = || string(trigger, join);
        let cmp = ["==", "!=", "<", "<=", ">", ">="];
        let leaf = prop_oneof![
            pick(vec![
                "true",
                "false",
                "has(entity.name)",
                "has(attributes.a)",
                "'a' in attributes",
                "attributes['a']",
                "['no such host', 'x'].exists(p, attributes['a'].lowerAscii().contains(p))",
                "['x', 'Ab'].all(p, p != attributes['b'])",
                "attributes.exists(k, k.startsWith('a'))",
                "attributes.all(k, attributes[k] != 'x')",
            ]),
            (s(), s(), proptest::sample::select(cmp.to_vec()))
                .prop_map(|(a, b, op)| format!("{a} {op} {b}")),
            (number(), number(), proptest::sample::select(cmp.to_vec()))
                .prop_map(|(a, b, op)| format!("{a} {op} {b}")),
            (s(), 0usize..3).prop_map(|(a, i)| match i {
                0 => format!("{a} in ['x', 'Ab', 'h1', 'pod']"),
                1 => format!("{a} in attributes"),
                _ => format!("{a} in resource"),
            }),
            (s(), s(), 0usize..3).prop_map(|(a, b, f)| {
                let f = ["contains", "startsWith", "endsWith"][f];
                format!("({a}).{f}({b})")
            }),
        ];
        leaf.prop_recursive(3, 16, 3, |inner| {
            prop_oneof![
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) && ({b})")),
                (inner.clone(), inner.clone()).prop_map(|(a, b)| format!("({a}) || ({b})")),
                inner.clone().prop_map(|a| format!("!({a})")),
                (inner.clone(), inner.clone(), inner)
                    .prop_map(|(c, a, b)| format!("({c}) ? ({a}) : ({b})")),
            ]
        })
    }

    fn expr(trigger: bool, join: bool) -> impl Strategy<Value = String> {
        prop_oneof![
            1 => untyped(trigger, join).boxed(),
            3 => boolean(trigger, join).boxed(),
            1 => string(trigger, join),
        ]
    }

    fn same(source: &str, this: &Signal, trigger: Option<&Signal>, join: Option<&Signal>) {
        let cel = Cel::new();
        let mut extra = Vec::new();
        if trigger.is_some() {
            extra.push("trigger");
        }
        if join.is_some() {
            extra.push("join");
        }
        let program = cel
            .compile_with(source, &extra)
            .expect("generated expressions parse");
        let Some(n) = Native::compile(program.expression(), trigger.is_some()) else {
            return;
        };
        let joins: Vec<(&str, &Signal)> = join.into_iter().map(|j| ("j", j)).collect();
        let env = Env {
            this,
            trigger,
            joins: &joins,
        };
        let Some(fast) = n.eval(&env) else {
            return;
        };
        let vars = Vars::fresh(this);
        let scope = match (trigger, join) {
            (Some(t), _) => Scope::with_trigger(vars, Vars::fresh(t)),
            (None, Some(j)) => Scope::with_joins(vars, vec![("j", Vars::fresh(j))]),
            _ => Scope::of(vars),
        };
        let slow = program.execute(&cel.context(&scope));
        match (fast.to_cel(), slow) {
            (Some(f), Ok(s)) => assert_eq!(f, s, "{source}"),
            (None, Ok(_)) => {} // a map or list: only its uses are compared
            (f, Err(e)) => panic!("{source}: native {f:?}, interpreter error {e}"),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Whenever the native evaluation returns a value, the interpreter returns the same.
        #[test]
        fn native_agrees_with_the_interpreter(
            source in expr(false, false),
            a in 0u8..9, b in 0u8..9, n in 0u8..9, kind in 0u8..3,
        ) {
            same(&source, &signal("s", a, b, n, kind), None, None);
        }

        #[test]
        fn native_agrees_with_trigger_and_joins(
            source in expr(true, false),
            source_j in expr(false, true),
            a in 0u8..9, b in 0u8..9, n in 0u8..9, kind in 0u8..3, a2 in 0u8..9,
        ) {
            let this = signal("s", a, b, n, kind);
            let other = signal("t", a2, b, a, kind + 1);
            same(&source, &this, Some(&other), None);
            same(&source_j, &this, None, Some(&other));
        }
    }

    #[test]
    fn the_shipped_packs_mostly_run_natively() {
        // Not a correctness check (the property tests are): a guard that the subset keeps
        // covering what the shipped rules write.
        let cel = Cel::new();
        let mut total = 0;
        let mut native = 0;
        for src in [
            "attributes['daytwo.oom.constraint'] == 'memcg'",
            "double(attributes['daytwo.anomaly.sigma']) > 0.0",
            "attributes['daytwo.change.kind'] in ['rollout', 'config']",
            "'daytwo.change.memory_limit_bytes.after' in attributes && int(attributes['daytwo.change.memory_limit_bytes.after']) < int(attributes['daytwo.change.memory_limit_bytes.before'])",
            "['no such host', 'servfail'].exists(p, attributes['daytwo.log.template'].lowerAscii().contains(p))",
        ] {
            total += 1;
            let p = cel.compile(src).unwrap();
            native += usize::from(Native::compile(p.expression(), false).is_some());
        }
        assert_eq!(native, total);
    }
}
