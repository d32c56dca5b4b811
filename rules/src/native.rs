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

#[derive(Clone, Debug)]
enum Lit {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Double(f64),
    Str(String),
}

#[derive(Clone, Debug)]
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
    /// `range.exists(x, body)` (`true`) or `range.all(x, body)` (`false`), with the body's
    /// loop-invariant parts computed once ([`Hoisted`]) when it has any.
    Quant(bool, Box<N>, Box<N>, Option<Box<Hoisted>>),
}

/// A comprehension's body with its loop-invariant, costly parts (a string lowered, joined or
/// converted that does not read the element: `attributes["k"].lowerAscii()` in
/// `[…].exists(p, attributes["k"].lowerAscii().contains(p))`) taken out: `lets` are
/// evaluated once before the loop and pushed onto the stack of bound values below the
/// element, and `body` reads them as locals. The expressions are pure, so each element's
/// result is the plain body's; when a `let` fails, the plain body runs instead, so a failure
/// surfaces (or is absorbed by a short circuit) exactly as it would have.
#[derive(Clone, Debug)]
struct Hoisted {
    lets: Vec<N>,
    body: N,
}

impl N {
    /// The direct children, in evaluation order.
    fn children(&self) -> Vec<&N> {
        match self {
            N::Lit(_) | N::Var(..) | N::Local(_) => Vec::new(),
            N::Index(x, y)
            | N::And(x, y)
            | N::Or(x, y)
            | N::Cmp(_, x, y)
            | N::In(x, y)
            | N::Add(x, y) => vec![x, y],
            N::Field(x, _) | N::Has(x, _) | N::Not(x) | N::Conv(_, x) => vec![x],
            N::Cond(c, x, y) => vec![c, x, y],
            N::Str(_, t, a) => std::iter::once(&**t).chain(a.as_deref()).collect(),
            N::List(items) => items.iter().collect(),
            N::Quant(_, r, b, _) => vec![r, b],
        }
    }

    /// Whether it reads no bound value at `depth` or deeper (the element of a comprehension
    /// at that depth, or of one nested in it) and holds no comprehension.
    fn invariant(&self, depth: usize) -> bool {
        match self {
            N::Local(i) => *i < depth,
            N::Quant(..) => false,
            n => n.children().into_iter().all(|c| c.invariant(depth)),
        }
    }

    /// Whether evaluating it builds a string (worth doing once rather than per element).
    fn builds_string(&self) -> bool {
        matches!(
            self,
            N::Str(StrFn::LowerAscii | StrFn::UpperAscii, ..)
                | N::Add(..)
                | N::Conv(Conv::String, _)
        ) || self.children().into_iter().any(N::builds_string)
    }

    /// The tree with every bound-value index at `depth` or deeper moved up by `by`, and (when
    /// `lets` is given) every maximal invariant subtree that builds a string replaced by a
    /// read of the value pushed for it at `depth + its index in lets`.
    fn lift(&self, depth: usize, by: usize, lets: &mut Option<&mut Vec<N>>) -> N {
        if let Some(l) = lets.as_deref_mut()
            && !matches!(self, N::Local(_))
            && self.invariant(depth)
            && self.builds_string()
        {
            l.push(self.clone());
            return N::Local(depth + l.len() - 1);
        }
        let mut f = |n: &N| Box::new(n.lift(depth, by, lets));
        match self {
            N::Local(i) if *i >= depth => N::Local(i + by),
            N::Lit(_) | N::Var(..) | N::Local(_) => self.clone(),
            N::Index(x, y) => N::Index(f(x), f(y)),
            N::And(x, y) => N::And(f(x), f(y)),
            N::Or(x, y) => N::Or(f(x), f(y)),
            N::Cmp(c, x, y) => N::Cmp(*c, f(x), f(y)),
            N::In(x, y) => N::In(f(x), f(y)),
            N::Add(x, y) => N::Add(f(x), f(y)),
            N::Field(x, name) => N::Field(f(x), name.clone()),
            N::Has(x, name) => N::Has(f(x), name.clone()),
            N::Not(x) => N::Not(f(x)),
            N::Conv(c, x) => N::Conv(*c, f(x)),
            N::Cond(c, x, y) => N::Cond(f(c), f(x), f(y)),
            N::Str(g, t, a) => N::Str(*g, f(t), a.as_deref().map(&mut f)),
            N::List(items) => N::List(items.iter().map(|x| *f(x)).collect()),
            // A nested comprehension keeps its own hoisting; only its indices move.
            N::Quant(e, r, b, h) => {
                let mut none = None;
                let mut g = |n: &N| Box::new(n.lift(depth, by, &mut none));
                N::Quant(
                    *e,
                    g(r),
                    g(b),
                    h.as_ref().map(|h| {
                        Box::new(Hoisted {
                            lets: h.lets.iter().map(|l| *g(l)).collect(),
                            body: *g(&h.body),
                        })
                    }),
                )
            }
        }
    }
}

/// The hoisted form of a comprehension body compiled with its element at `depth`, or `None`
/// when no part of it is worth hoisting.
fn hoist(body: &N, depth: usize) -> Option<Box<Hoisted>> {
    // A first pass finds the lets (in the order they are met); the second replaces them the
    // same way and moves the element's index and everything nested above them.
    let mut lets = Vec::new();
    body.lift(depth, 0, &mut Some(&mut lets));
    if lets.is_empty() {
        return None;
    }
    let mut again = Vec::new();
    let body = body.lift(depth, lets.len(), &mut Some(&mut again));
    Some(Box::new(Hoisted { lets, body }))
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

    /// Whether evaluating it costs about as little as looking a cached outcome up: no
    /// comprehension, no string built (`lowerAscii`, `+`, `string()`), at most a few reads.
    pub(crate) fn cheap(&self) -> bool {
        fn walk(n: &N, budget: &mut usize) -> bool {
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            match n {
                N::Lit(_) | N::Var(..) | N::Local(_) => true,
                N::Quant(..) | N::Add(..) => false,
                N::Str(f, t, a) => {
                    !matches!(f, StrFn::LowerAscii | StrFn::UpperAscii)
                        && walk(t, budget)
                        && a.as_deref().is_none_or(|a| walk(a, budget))
                }
                N::Conv(Conv::String, _) => false,
                N::Conv(_, x) | N::Not(x) | N::Field(x, _) | N::Has(x, _) => walk(x, budget),
                N::Index(x, y) | N::And(x, y) | N::Or(x, y) | N::Cmp(_, x, y) | N::In(x, y) => {
                    walk(x, budget) && walk(y, budget)
                }
                N::Cond(c, x, y) => walk(c, budget) && walk(x, budget) && walk(y, budget),
                N::List(items) => items.iter().all(|x| walk(x, budget)),
            }
        }
        walk(&self.root, &mut 24)
    }

    /// The value of the expression; [`Bail::Error`] when the interpreter certainly fails on it
    /// too, [`Bail::Unsure`] when only the interpreter can tell (see the module documentation).
    pub(crate) fn eval<'a>(&'a self, env: &Env<'a>) -> Result<V<'a>, Bail> {
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
            let depth = s.bound.len();
            s.bound.push(c.iter_var.clone());
            let body = compile(&step.args[1], s);
            s.bound.pop();
            let body = body?;
            let hoisted = hoist(&body, depth);
            N::Quant(exists, range, Box::new(body), hoisted)
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

/// Why native evaluation stopped without a value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Bail {
    /// The interpreter fails on this too, for certain: a key the map does not have, read
    /// where nothing can absorb the error (see [`eval`]).
    Error,
    /// Only the interpreter can tell (a type mix, an overflow, an unsupported case).
    Unsure,
}

type R<'a> = Result<V<'a>, Bail>;

/// `container[key]` (also `container.key`): a map without that key is an error, as in the
/// interpreter; anything but a map with string keys is for the interpreter to judge.
fn index<'a>(container: V<'a>, key: &str) -> R<'a> {
    let found = match container {
        V::Attrs(m) => m.get(key).map(json),
        V::JsonMap(m) => m.get(key).map(json),
        V::Entity(s) => match key {
            "kind" => Some(V::Str(Cow::Borrowed(s.entity.kind.as_str()))),
            "name" => Some(V::Str(Cow::Borrowed(&s.entity.name))),
            "attributes" => Some(V::Attrs(&s.entity.attributes)),
            _ => None,
        },
        V::Signal(s) => var(key).map(|v| signal_var(s, v)),
        _ => return Err(Bail::Unsure),
    };
    found.ok_or(Bail::Error)
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

/// Both operands of a strict operator (the interpreter evaluates both, in order, and fails
/// when either fails): a certain error in either is certain, whatever the other does.
fn both<'a>(x: R<'a>, y: impl FnOnce() -> R<'a>) -> Result<(V<'a>, V<'a>), Bail> {
    let y = y();
    match (x, y) {
        (Ok(a), Ok(b)) => Ok((a, b)),
        (Err(Bail::Error), _) | (_, Err(Bail::Error)) => Err(Bail::Error),
        _ => Err(Bail::Unsure),
    }
}

/// `x && y` (`and`) or `x || y`, as the interpreter decides them: the left operand first;
/// when it does not decide, the right one, whose failure is the result's; an error on the
/// left is absorbed when the right one decides.
fn logic<'a>(and: bool, x: R<'a>, y: impl FnOnce() -> R<'a>) -> R<'a> {
    // The value that decides: false for `&&`, true for `||`.
    let decisive = !and;
    match x {
        Ok(V::Bool(b)) if b == decisive => return Ok(V::Bool(b)),
        Ok(V::Bool(_)) => {
            return match y()? {
                V::Bool(b) => Ok(V::Bool(b)),
                _ => Err(Bail::Error),
            };
        }
        _ => {}
    }
    // The left operand failed (or is not a bool, which the interpreter treats as failing), or
    // native evaluation could not tell what it is.
    let left_failed = matches!(x, Ok(_) | Err(Bail::Error));
    match y() {
        // The right operand decides whatever the left one was.
        Ok(V::Bool(b)) if b == decisive => Ok(V::Bool(b)),
        Ok(_) if left_failed => Err(Bail::Error),
        Err(Bail::Error) if left_failed => Err(Bail::Error),
        _ => Err(Bail::Unsure),
    }
}

/// Evaluates `n`. See [`Bail`] for what a failure means.
fn eval<'a>(n: &'a N, env: &Env<'a>, joins: &[String], locals: &mut Vec<V<'a>>) -> R<'a> {
    use Bail::{Error, Unsure};
    macro_rules! ev {
        ($n:expr) => {
            eval($n, env, joins, locals)
        };
    }
    // `x.contains(p)` on values already at hand (a hoisted string and a comprehension's
    // element, or a literal): compared where they are, not copied.
    if let N::Str(f, t, Some(a)) = n
        && let Some(b) = str_test_in_place(*f, t, a, locals)
    {
        return Ok(V::Bool(b));
    }
    Ok(match n {
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
                Who::Trigger => env.trigger.ok_or(Unsure)?,
                Who::Join(i) => {
                    let name = joins.get(*i).ok_or(Unsure)?;
                    env.joins.iter().find(|(n, _)| *n == name).ok_or(Unsure)?.1
                }
            };
            signal_var(s, *v)
        }
        N::Local(i) => locals.get(*i).ok_or(Unsure)?.clone(),
        N::Index(c, k) => {
            let c = ev!(c);
            let (c, k) = both(c, || ev!(k))?;
            match k {
                V::Str(k) => index(c, &k)?,
                _ => return Err(Unsure),
            }
        }
        N::Field(c, f) => index(ev!(c)?, f)?,
        N::Has(c, f) => V::Bool(has_key(&ev!(c)?, f).ok_or(Unsure)?),
        N::Not(x) => match ev!(x)? {
            V::Bool(b) => V::Bool(!b),
            _ => return Err(Unsure),
        },
        N::And(x, y) => {
            let x = ev!(x);
            logic(true, x, || ev!(y))?
        }
        N::Or(x, y) => {
            let x = ev!(x);
            logic(false, x, || ev!(y))?
        }
        N::Cond(c, x, y) => match ev!(c)? {
            V::Bool(true) => ev!(x)?,
            V::Bool(false) => ev!(y)?,
            _ => return Err(Unsure),
        },
        N::Cmp(op, x, y) => {
            let x = ev!(x);
            let (a, b) = both(x, || ev!(y))?;
            if matches!(a, V::Bool(_)) && !matches!(op, Cmp::Eq | Cmp::Ne) {
                return Err(Unsure);
            }
            let o = compare(&a, &b).ok_or(Unsure)?;
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
            let x = ev!(x);
            let (needle, hay) = both(x, || ev!(c))?;
            V::Bool(
                match &hay {
                    V::List(items) => in_list(&needle, items.iter().cloned()),
                    V::JsonList(items) => in_list(&needle, items.iter().map(json)),
                    map => match &needle {
                        V::Str(k) => has_key(map, k),
                        _ => None,
                    },
                }
                .ok_or(Unsure)?,
            )
        }
        N::Add(x, y) => {
            let x = ev!(x);
            match both(x, || ev!(y))? {
                (V::Str(a), V::Str(b)) => V::Str(Cow::Owned(format!("{a}{b}"))),
                _ => return Err(Unsure),
            }
        }
        N::Str(f, t, arg) => {
            let t = ev!(t);
            let (t, arg) = match arg {
                Some(a) => {
                    let (t, a) = both(t, || ev!(a))?;
                    (t, Some(a))
                }
                None => (t?, None),
            };
            let V::Str(t) = t else {
                return Err(Unsure);
            };
            let arg = match arg {
                Some(V::Str(a)) => Some(a),
                Some(_) => return Err(Unsure),
                None => None,
            };
            match (f, arg) {
                (StrFn::Contains, Some(a)) => V::Bool(contains(&t, &a)),
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
                _ => return Err(Unsure),
            }
        }
        N::Conv(c, x) => match (c, ev!(x)?) {
            (Conv::Int, V::Int(i)) => V::Int(i),
            (Conv::Int, V::UInt(u)) => V::Int(i64::try_from(u).map_err(|_| Unsure)?),
            (Conv::Double, V::Int(i)) => V::Double(i as f64),
            (Conv::Double, V::UInt(u)) => V::Double(u as f64),
            (Conv::Double, V::Double(d)) => V::Double(d),
            (Conv::String, V::Str(s)) => V::Str(s),
            (Conv::String, V::Int(i)) => V::Str(Cow::Owned(i.to_string())),
            (Conv::String, V::UInt(u)) => V::Str(Cow::Owned(u.to_string())),
            _ => return Err(Unsure),
        },
        N::List(items) => {
            // Every element is evaluated, in order; the first failure is the list's.
            let mut out = Vec::with_capacity(items.len());
            let mut failed = None;
            for x in items {
                match ev!(x) {
                    Ok(v) => out.push(v),
                    Err(e) => {
                        failed = Some(match (failed, e) {
                            (Some(Error), _) | (_, Error) => Error,
                            _ => Unsure,
                        })
                    }
                }
            }
            if let Some(e) = failed {
                return Err(e);
            }
            V::List(out)
        }
        N::Quant(exists, range, body, hoisted) => {
            let range = ev!(range)?;
            // Map keys iterate in a different order in the interpreter (a hash map): evaluate
            // every key so that the result cannot depend on the order.
            let (items, ordered): (Vec<V<'a>>, bool) = match range {
                V::List(items) => (items, true),
                V::JsonList(items) => (items.iter().map(json).collect(), true),
                V::Attrs(m) => (m.keys().map(|k| V::Str(Cow::Borrowed(k))).collect(), false),
                V::JsonMap(m) => (m.keys().map(|k| V::Str(Cow::Borrowed(k))).collect(), false),
                _ => return Err(Unsure),
            };
            // The invariant parts once, below the element; if one fails, the plain body.
            let base = locals.len();
            let mut body: &N = body;
            if let Some(h) = hoisted
                && !items.is_empty()
            {
                let mut all = true;
                for l in &h.lets {
                    match ev!(l) {
                        Ok(v) => locals.push(v),
                        Err(_) => {
                            all = false;
                            break;
                        }
                    }
                }
                if all {
                    body = &h.body;
                } else {
                    locals.truncate(base);
                }
            }
            let mut decided = false;
            let mut failed = false;
            for item in items {
                locals.push(item);
                let r = eval(body, env, joins, locals);
                locals.pop();
                // Any failure inside: the interpreter decides how it propagates.
                let Ok(V::Bool(b)) = r else {
                    failed = true;
                    break;
                };
                if b == *exists {
                    decided = true;
                    if ordered {
                        break;
                    }
                }
            }
            locals.truncate(base);
            if failed {
                return Err(Unsure);
            }
            // exists: true when some element held; all: false when some element failed.
            V::Bool(if *exists { decided } else { !decided })
        }
    })
}

/// `t.contains(a)`, `t.startsWith(a)` or `t.endsWith(a)` when both operands are strings read
/// in place (bound values or string literals); `None` for anything else, which the general
/// path evaluates (and judges, for a value that is not a string).
fn str_test_in_place(f: StrFn, t: &N, a: &N, locals: &[V<'_>]) -> Option<bool> {
    fn text<'x>(n: &'x N, locals: &'x [V<'_>]) -> Option<&'x str> {
        match n {
            N::Local(i) => match locals.get(*i)? {
                V::Str(s) => Some(s.as_ref()),
                _ => None,
            },
            N::Lit(Lit::Str(s)) => Some(s),
            _ => None,
        }
    }
    let (t, a) = (text(t, locals)?, text(a, locals)?);
    Some(match f {
        StrFn::Contains => contains(t, a),
        StrFn::StartsWith => t.starts_with(a),
        StrFn::EndsWith => t.ends_with(a),
        StrFn::LowerAscii | StrFn::UpperAscii => return None,
    })
}

/// Whether `needle` occurs in `haystack`, as `str::contains`. A short haystack (a log
/// template, an attribute value) is searched directly, each occurrence of the needle's first
/// byte compared in place: for the lists of phrases rules test one by one
/// (`[...].exists(p, text.contains(p))`), building a two-way searcher per phrase costs more
/// than the search. Both strings are UTF-8, so a byte match is a match of characters.
fn contains(haystack: &str, needle: &str) -> bool {
    const DIRECT_MAX: usize = 256;
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    let Some(&first) = n.first() else {
        return true;
    };
    if h.len() > DIRECT_MAX {
        return haystack.contains(needle);
    }
    let Some(last) = h.len().checked_sub(n.len()) else {
        return false;
    };
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, &h[from..=last]) {
        let at = from + i;
        if &h[at..at + n.len()] == n {
            return true;
        }
        from = at + 1;
        if from > last {
            break;
        }
    }
    false
}

/// What a condition operand tested as "returns `true`" gives: `Some(true)` when it does,
/// `Some(false)` when it certainly does not (false, not a bool, or a certain error), `None`
/// when only the interpreter can tell.
pub(crate) fn is_true(n: &Native, env: &Env<'_>) -> Option<bool> {
    match n.eval(env) {
        Ok(v) => Some(matches!(v, V::Bool(true))),
        Err(Bail::Error) => Some(false),
        Err(Bail::Unsure) => None,
    }
}

/// A whole condition's outcome when native evaluation is certain of it and it is a bool;
/// `None` otherwise (the interpreter then also says why it failed).
pub(crate) fn bool_of(n: &Native, env: &Env<'_>) -> Option<bool> {
    match n.eval(env) {
        Ok(V::Bool(b)) => Some(b),
        _ => None,
    }
}

impl V<'_> {
    /// Appends the value as [`crate::expr::to_text`] writes it (and a null as
    /// [`crate::template::UNKNOWN`], as a template hole does); `false`, writing nothing, for
    /// maps and lists.
    pub(crate) fn write_text(&self, out: &mut String) -> bool {
        use std::fmt::Write;
        match self {
            V::Null => out.push_str(crate::template::UNKNOWN),
            V::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            V::Int(i) => {
                let _ = write!(out, "{i}");
            }
            V::UInt(u) => {
                let _ = write!(out, "{u}");
            }
            V::Double(d) => {
                let _ = write!(out, "{d}");
            }
            V::Str(s) => out.push_str(s),
            _ => return false,
        }
        true
    }

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
                // Invariant parts hoisted out of the loop: failing ones (a missing key), over
                // an empty range, behind a short circuit, nested, with the element beside them.
                "['no such host', 'x'].exists(p, attributes['zz'].lowerAscii().contains(p))",
                "[].exists(p, attributes['zz'].lowerAscii() == p)",
                "['x', 'ab'].exists(p, p == 'q' && attributes['zz'].upperAscii() == p)",
                "['x', 'ab'].all(p, p.startsWith('a') || (attributes['a'] + 'b').contains(p))",
                "['a', 'B'].exists(p, ['x', 'b'].exists(q, (p + q).lowerAscii() == attributes['a'].lowerAscii() + q))",
                "['a', 'b'].exists(p, attributes.exists(k, k.lowerAscii() == p.lowerAscii() && string(attributes[k]).lowerAscii() != p))",
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
        let fast = n.eval(&env);
        let vars = Vars::fresh(this);
        let scope = match (trigger, join) {
            (Some(t), _) => Scope::with_trigger(vars, Vars::fresh(t)),
            (None, Some(j)) => Scope::with_joins(vars, vec![("j", Vars::fresh(j))]),
            _ => Scope::of(vars),
        };
        let slow = program.execute(&cel.context(&scope));
        match (fast, slow) {
            (Ok(f), Ok(s)) => {
                // A map or list: only its uses are compared.
                if let Some(c) = f.to_cel() {
                    assert_eq!(c, s, "{source}");
                    // And a template hole prints it as the interpreter's value prints.
                    let mut text = String::new();
                    assert!(f.write_text(&mut text));
                    let want = crate::expr::to_text(&s);
                    assert_eq!(text, want.as_deref().unwrap_or(crate::template::UNKNOWN));
                }
            }
            (Ok(f), Err(e)) => panic!("{source}: native {f:?}, interpreter error {e}"),
            (Err(Bail::Error), Ok(s)) => {
                panic!("{source}: native says it fails, the interpreter returns {s:?}")
            }
            (Err(_), _) => {}
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

    proptest! {
        /// The direct search finds exactly what `str::contains` finds, on short and long
        /// haystacks, with needles taken from the haystack or made up, empty or not.
        #[test]
        fn contains_is_str_contains(
            h in "[abé]{0,300}",
            n in "[abé]{0,4}",
            from in 0usize..300,
            len in 0usize..6,
        ) {
            prop_assert_eq!(super::contains(&h, &n), h.contains(n.as_str()));
            let chars: Vec<char> = h.chars().collect();
            let from = from.min(chars.len());
            let inside: String = chars[from..(from + len).min(chars.len())].iter().collect();
            prop_assert!(super::contains(&h, &inside));
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
