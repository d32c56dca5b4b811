//! CEL for rules: one environment, the variables a signal binds, compile-time checks and
//! the conversion of results to text.
//!
//! Entry points: [`Cel::new`] (the environment: the CEL standard library plus the `strings`
//! extension), [`Cel::compile`] (parse, then reject variables that do not exist so typos
//! fail at load time, not silently at 3 a.m.) and [`Cel::context`] (the variables a [`Scope`]
//! resolves: a signal's `name`, `severity`, `attributes`, `resource`, `entity`, `message`,
//! `time`, plus `trigger` or `join`). A signal's variables are converted to CEL once, when an
//! expression first reads them, and kept in its [`Prepared`].
//!
//! The cel crate has no type checker, so "returns a bool" is only known when a condition
//! runs; a condition that errors or returns something else does not match (see
//! [`crate::RuleSet::evaluate`]).

use cel::common::ast::{EntryExpr, Expr, IdedEntryExpr, IdedExpr};
use cel::common::value::{CowVal, Val};
use cel::context::VariableResolver;
use cel::objects::{Key, Map};
use cel::{Context, Env, Program, Value};
use daytwo_model::{Attributes, Signal};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

/// The variables a rule expression can use, in the order docs/rules.md lists them.
pub const VARIABLES: &[&str] = &[
    "name",
    "severity",
    "attributes",
    "resource",
    "entity",
    "message",
    "time",
];

/// Identifiers CEL resolves itself (type names used as `type(x) == int`).
const BUILTIN_IDENTS: &[&str] = &[
    "int",
    "uint",
    "double",
    "bool",
    "string",
    "bytes",
    "list",
    "map",
    "null_type",
    "type",
    "dyn",
];

/// Why an expression did not compile. Offsets are bytes into the expression's source.
#[derive(Debug)]
pub(crate) enum ExprError {
    Syntax {
        message: String,
        offset: Option<usize>,
    },
    UnknownVariable {
        name: String,
        offset: Option<usize>,
    },
    /// Over one of the size limits ([`MAX_EXPR_BYTES`], [`MAX_BRACKET_NESTING`],
    /// [`MAX_AST_DEPTH`]).
    TooComplex {
        message: String,
        offset: Option<usize>,
    },
}

/// The CEL environment every rule is compiled against and executed in.
pub(crate) struct Cel {
    env: Arc<Env>,
    /// Whether conditions and template holes in the native subset run natively
    /// ([`crate::native`]); off only for the reference in tests ([`crate::RuleSet::interpreted`]).
    pub(crate) native: bool,
}

impl Cel {
    pub(crate) fn new() -> Self {
        let mut env = Env::stdlib();
        // Declaring a standard extension on a fresh stdlib cannot conflict.
        env.add_extension(cel::extensions::strings)
            .expect("the cel strings extension declares on a fresh stdlib environment");
        Cel {
            env: Arc::new(env),
            native: true,
        }
    }

    /// Parses `source` and checks that it only names known variables and stays within the
    /// size limits. Call it on a thread with a large stack (see [`crate::RuleSet::compile`]).
    pub(crate) fn compile(&self, source: &str) -> Result<Program, ExprError> {
        self.compile_with(source, &[])
    }

    /// [`Cel::compile`], with `extra` variables allowed besides [`VARIABLES`] (`trigger` in a
    /// join's condition, `join` in the templates of a rule with joins).
    pub(crate) fn compile_with(&self, source: &str, extra: &[&str]) -> Result<Program, ExprError> {
        if source.len() > MAX_EXPR_BYTES {
            return Err(ExprError::TooComplex {
                message: format!(
                    "the expression is {} bytes long; the limit is {MAX_EXPR_BYTES}: split the rule",
                    source.len()
                ),
                offset: None,
            });
        }
        if let Some(offset) = too_deep_brackets(source) {
            return Err(ExprError::TooComplex {
                message: format!(
                    "brackets nest more than {MAX_BRACKET_NESTING} deep here: simplify the expression"
                ),
                offset: Some(offset),
            });
        }
        let program = self.env.compile(source).map_err(|errors| {
            // The grammar's own errors ("Syntax error: …") say what is wrong where; errors
            // from building the tree after them ("Incomplete `IndexContext`!") only echo them.
            let grammar: Vec<_> = errors
                .errors
                .iter()
                .filter(|e| e.msg.starts_with("Syntax error: "))
                .collect();
            let chosen = if grammar.is_empty() {
                errors.errors.iter().collect()
            } else {
                grammar
            };
            let offset = chosen
                .first()
                .and_then(|e| offset_of(source, e.pos.0, e.pos.1));
            let mut messages: Vec<String> = chosen
                .iter()
                .map(|e| {
                    e.msg
                        .strip_prefix("Syntax error: ")
                        .unwrap_or(&e.msg)
                        .to_string()
                })
                .collect();
            messages.dedup();
            if messages.is_empty() {
                messages.push("the expression does not parse".into());
            }
            ExprError::Syntax {
                message: messages.join("; "),
                offset,
            }
        })?;
        let depth = ast_depth(program.expression());
        if depth > MAX_AST_DEPTH {
            return Err(ExprError::TooComplex {
                message: format!(
                    "the expression nests {depth} operations deep; the limit is {MAX_AST_DEPTH} (evaluation recurses once per level): split it, or join conditions with && and ||, which do not count"
                ),
                offset: None,
            });
        }
        let mut bound: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if let Some((name, id)) = unknown_ident(program.expression(), &mut bound) {
            let offset = program
                .source_info()
                .offset_for(id)
                .and_then(|(start, _)| char_to_byte(source, start as usize));
            return Err(ExprError::UnknownVariable { name, offset });
        }
        Ok(program)
    }

    /// The byte offset in `source` of expression `id` of `program`.
    pub(crate) fn offset_of_id(program: &Program, source: &str, id: u64) -> Option<usize> {
        program
            .source_info()
            .offset_for(id)
            .and_then(|(start, _)| char_to_byte(source, start as usize))
    }

    /// A context whose variables `scope` resolves: nothing is converted to CEL until an
    /// expression reads it, and what a [`Prepared`] converted once is borrowed, not copied.
    pub(crate) fn context<'v>(&self, scope: &'v Scope<'_>) -> Context<'v, 'v> {
        let mut ctx = Context::with_env(Arc::clone(&self.env));
        ctx.set_variable_resolver(scope);
        ctx
    }
}

/// A signal's CEL variables, each converted once, on first use, and kept: a held signal is a
/// join candidate or a late trigger many times, and converting its attributes to CEL values is
/// the costly part of evaluating a condition on it. Pair one `Prepared` with one signal for
/// its whole life (see [`crate::JoinSource::prepared`]); it starts empty.
#[derive(Default)]
pub struct Prepared {
    /// One per [`VARIABLES`] entry, in that order.
    vars: [OnceLock<Box<dyn Val>>; 7],
    /// The signal as one map ([`signal_value`]): `trigger` and `join.NAME`.
    whole: OnceLock<Box<dyn Val>>,
    /// Outcomes of the conditions that depend on this signal alone, with the slot a
    /// [`crate::RuleSet`] gave each, for the rule set of generation `.0` (a reload starts over).
    /// A signal meets a handful of conditions, so a short list, not a table of every slot.
    outcomes: Mutex<(u64, Vec<(usize, Outcome)>)>,
}

/// A cached condition outcome: `Ok` when it returned `true`, else why not.
pub(crate) type Outcome = Result<(), crate::ruleset::Miss>;

impl Prepared {
    pub fn new() -> Self {
        Prepared::default()
    }
}

impl std::fmt::Debug for Prepared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let built = self.vars.iter().filter(|v| v.get().is_some()).count();
        f.debug_struct("Prepared")
            .field("variables_built", &built)
            .finish_non_exhaustive()
    }
}

fn to_val(v: Value) -> Box<dyn Val> {
    // What `Context::add_variable_from_value` does; maps, strings and numbers always convert.
    v.try_into()
        .expect("a signal's variables are maps, strings and numbers, which CEL always converts")
}

/// Variable `i` of [`VARIABLES`] for `signal`.
fn variable(i: usize, signal: &Signal) -> Value {
    match i {
        0 => signal.name.clone().into(),
        1 => signal.severity.as_str().into(),
        2 => map_value(&signal.attributes),
        3 => map_value(&signal.resource),
        4 => entity_value(signal),
        5 => signal.message.clone().into(),
        _ => signal.time.to_string().into(),
    }
}

/// A signal with its [`Prepared`] variables, borrowed from a caller that keeps them (a held
/// signal) or made for one evaluation.
#[derive(Clone)]
pub(crate) struct Vars<'a> {
    pub(crate) signal: &'a Signal,
    prepared: Prep<'a>,
}

#[derive(Clone)]
enum Prep<'a> {
    Borrowed(&'a Prepared),
    Owned(Arc<Prepared>),
}

impl<'a> Vars<'a> {
    /// `signal` with the variables `source` keeps for it, else fresh ones.
    pub(crate) fn of(signal: &'a Signal, source: &'a dyn crate::JoinSource) -> Self {
        match source.prepared(signal) {
            Some(p) => Vars::with(signal, p),
            None => Vars::fresh(signal),
        }
    }

    pub(crate) fn with(signal: &'a Signal, prepared: &'a Prepared) -> Self {
        Vars {
            signal,
            prepared: Prep::Borrowed(prepared),
        }
    }

    pub(crate) fn fresh(signal: &'a Signal) -> Self {
        Vars {
            signal,
            prepared: Prep::Owned(Arc::new(Prepared::default())),
        }
    }

    fn prepared(&self) -> &Prepared {
        match &self.prepared {
            Prep::Borrowed(p) => p,
            Prep::Owned(p) => p,
        }
    }

    fn get(&self, name: &str) -> Option<&dyn Val> {
        let i = VARIABLES.iter().position(|v| *v == name)?;
        Some(
            self.prepared().vars[i]
                .get_or_init(|| to_val(variable(i, self.signal)))
                .as_ref(),
        )
    }

    /// The outcome in `slot` for rule set `generation`, computed by `f` the first time.
    pub(crate) fn outcome(
        &self,
        generation: u64,
        slot: usize,
        f: impl FnOnce() -> Outcome,
    ) -> Outcome {
        let cache = &self.prepared().outcomes;
        {
            let c = cache.lock().unwrap_or_else(|e| e.into_inner());
            if c.0 == generation
                && let Some((_, o)) = c.1.iter().find(|(s, _)| *s == slot)
            {
                return o.clone();
            }
        }
        let o = f();
        let mut c = cache.lock().unwrap_or_else(|e| e.into_inner());
        if c.0 != generation {
            *c = (generation, Vec::new());
        }
        if !c.1.iter().any(|(s, _)| *s == slot) {
            c.1.push((slot, o.clone()));
        }
        o
    }

    fn whole(&self) -> &dyn Val {
        self.prepared()
            .whole
            .get_or_init(|| to_val(signal_value(self.signal)))
            .as_ref()
    }
}

/// What an expression sees: a signal's variables, plus `trigger` in a join's condition and
/// `join` (with `join.NAME`) in the templates of a rule with joins.
pub(crate) struct Scope<'a> {
    vars: Vars<'a>,
    trigger: Option<Vars<'a>>,
    joins: Vec<(&'a str, Vars<'a>)>,
}

impl<'a> Scope<'a> {
    /// A signal's own variables.
    pub(crate) fn of(vars: Vars<'a>) -> Self {
        Scope {
            vars,
            trigger: None,
            joins: Vec::new(),
        }
    }

    /// A join candidate's variables and `trigger`.
    pub(crate) fn with_trigger(vars: Vars<'a>, trigger: Vars<'a>) -> Self {
        Scope {
            vars,
            trigger: Some(trigger),
            joins: Vec::new(),
        }
    }

    /// The trigger's variables and `join.NAME` for each chosen signal.
    pub(crate) fn with_joins(vars: Vars<'a>, joins: Vec<(&'a str, Vars<'a>)>) -> Self {
        Scope {
            vars,
            trigger: None,
            joins,
        }
    }
}

impl VariableResolver for Scope<'_> {
    fn resolve<'b>(&'b self, name: &str) -> Option<CowVal<'b, 'b>> {
        if let Some(t) = &self.trigger
            && name == "trigger"
        {
            return Some(CowVal::Borrowed(t.whole()));
        }
        if !self.joins.is_empty() {
            // `join.node.entity.name` is looked up as `join.node.entity.name`, `join.node.entity`,
            // `join.node`, then `join`: answer `join.node` with that signal's map, borrowed.
            if let Some(rest) = name.strip_prefix("join.") {
                return self
                    .joins
                    .iter()
                    .find(|(n, _)| *n == rest)
                    .map(|(_, v)| CowVal::Borrowed(v.whole()));
            }
            if name == "join" {
                let map: HashMap<Key, Value> = self
                    .joins
                    .iter()
                    .map(|(n, v)| (Key::from(n.to_string()), signal_value(v.signal)))
                    .collect();
                return Some(CowVal::Owned(to_val(Value::Map(Map {
                    map: Arc::new(map),
                }))));
            }
        }
        self.vars.get(name).map(CowVal::Borrowed)
    }
}

fn entity_value(signal: &Signal) -> Value {
    let mut entity: HashMap<Key, Value> = HashMap::new();
    entity.insert(
        Key::from("kind".to_string()),
        signal.entity.kind.as_str().into(),
    );
    entity.insert(
        Key::from("name".to_string()),
        signal.entity.name.clone().into(),
    );
    entity.insert(
        Key::from("attributes".to_string()),
        map_value(&signal.entity.attributes),
    );
    Value::Map(Map {
        map: Arc::new(entity),
    })
}

/// A signal as one CEL map (`name`, `severity`, `attributes`, `resource`, `entity`,
/// `message`, `time`): how `trigger` and `join.NAME` appear to expressions.
pub(crate) fn signal_value(signal: &Signal) -> Value {
    let mut m: HashMap<Key, Value> = HashMap::new();
    for (i, name) in VARIABLES.iter().enumerate() {
        m.insert(Key::from(name.to_string()), variable(i, signal));
    }
    Value::Map(Map { map: Arc::new(m) })
}

/// Every `join.NAME` an expression selects, with the id of the selecting expression.
pub(crate) fn join_refs(program: &Program) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![program.expression()];
    while let Some(e) = stack.pop() {
        if let Expr::Select(sel) = &e.expr
            && let Expr::Ident(name) = &sel.operand.expr
            && name == "join"
        {
            out.push((sel.field.clone(), sel.operand.id));
        }
        stack.extend(children(e));
    }
    out
}

/// The longest expression accepted, in bytes; rules are short, and this bounds the work
/// and stack the parser can be asked for.
pub const MAX_EXPR_BYTES: usize = 8192;
/// The deepest nesting of `(`, `[` and `{` accepted (the parser recurses per level).
pub const MAX_BRACKET_NESTING: usize = 32;
/// The deepest expression tree accepted: evaluation recurses once per level, on the
/// caller's thread (a tokio worker has 2 MiB of stack; a debug build uses tens of KiB per
/// level). Chains of `&&` and `||` are balanced by the parser and barely count.
pub const MAX_AST_DEPTH: usize = 32;

/// The byte offset of the first bracket nested deeper than [`MAX_BRACKET_NESTING`],
/// ignoring brackets inside string literals.
fn too_deep_brackets(source: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in outside_literals(source.as_bytes()) {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_BRACKET_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// The bytes of CEL source outside its string literals (`'…'` and `"…"`, with backslash
/// escapes), with their offsets; the quote characters themselves are not yielded. Every scan
/// for structure (brackets, template holes, filter pipes) goes through this one lexer.
pub(crate) fn outside_literals(bytes: &[u8]) -> impl Iterator<Item = (usize, u8)> + '_ {
    let mut quote: Option<u8> = None;
    let mut escaped = false;
    bytes
        .iter()
        .enumerate()
        .filter_map(move |(i, &b)| match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if b == b'\\' {
                    escaped = true;
                } else if b == q {
                    quote = None;
                }
                None
            }
            None if b == b'\'' || b == b'"' => {
                quote = Some(b);
                None
            }
            None => Some((i, b)),
        })
}

/// The depth of an expression tree, computed without recursion.
fn ast_depth(root: &IdedExpr) -> usize {
    let mut max = 0;
    let mut stack = vec![(root, 1usize)];
    while let Some((e, d)) = stack.pop() {
        max = max.max(d);
        stack.extend(children(e).into_iter().map(|c| (c, d + 1)));
    }
    max
}

/// The direct subexpressions of `e`.
pub(crate) fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    fn entries(entries: &[IdedEntryExpr]) -> Vec<&IdedExpr> {
        let mut out = Vec::new();
        for entry in entries {
            match &entry.expr {
                EntryExpr::StructField(f) => out.push(&f.value),
                EntryExpr::MapEntry(m) => {
                    out.push(&m.key);
                    out.push(&m.value);
                }
            }
        }
        out
    }
    match &e.expr {
        Expr::Call(call) => call
            .target
            .as_deref()
            .into_iter()
            .chain(&call.args)
            .collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => entries(&m.entries),
        Expr::Struct(st) => entries(&st.entries),
        Expr::Select(sel) => vec![&sel.operand],
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => Vec::new(),
    }
}

/// The first identifier that is neither a rule variable, a CEL builtin, nor bound by an
/// enclosing comprehension (`x` in `list.exists(x, …)`), with its expression id.
fn unknown_ident(e: &IdedExpr, bound: &mut Vec<String>) -> Option<(String, u64)> {
    match &e.expr {
        Expr::Ident(name) => {
            let known = name.starts_with('@')
                || VARIABLES.contains(&name.as_str())
                || BUILTIN_IDENTS.contains(&name.as_str())
                || bound.iter().any(|b| b == name);
            (!known).then(|| (name.clone(), e.id))
        }
        Expr::Call(call) => call
            .target
            .as_deref()
            .and_then(|t| unknown_ident(t, bound))
            .or_else(|| call.args.iter().find_map(|a| unknown_ident(a, bound))),
        Expr::Comprehension(c) => {
            if let Some(found) = unknown_ident(&c.iter_range, bound) {
                return Some(found);
            }
            if let Some(found) = unknown_ident(&c.accu_init, bound) {
                return Some(found);
            }
            let depth = bound.len();
            bound.push(c.iter_var.clone());
            if let Some(v2) = &c.iter_var2 {
                bound.push(v2.clone());
            }
            bound.push(c.accu_var.clone());
            let found = [&c.loop_cond, &c.loop_step, &c.result]
                .into_iter()
                .find_map(|x| unknown_ident(x, bound));
            bound.truncate(depth);
            found
        }
        Expr::List(list) => list.elements.iter().find_map(|x| unknown_ident(x, bound)),
        Expr::Map(map) => map.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::StructField(f) => unknown_ident(&f.value, bound),
            EntryExpr::MapEntry(m) => {
                unknown_ident(&m.key, bound).or_else(|| unknown_ident(&m.value, bound))
            }
        }),
        Expr::Struct(s) => s.entries.iter().find_map(|entry| match &entry.expr {
            EntryExpr::StructField(f) => unknown_ident(&f.value, bound),
            EntryExpr::MapEntry(m) => {
                unknown_ident(&m.key, bound).or_else(|| unknown_ident(&m.value, bound))
            }
        }),
        Expr::Select(s) => unknown_ident(&s.operand, bound),
        Expr::Literal(_) | Expr::Unspecified => None,
    }
}

/// Byte offset of 1-based (`line`, `column`) in `source`, columns counted in characters.
fn offset_of(source: &str, line: isize, column: isize) -> Option<usize> {
    let (line, column) = (usize::try_from(line).ok()?, usize::try_from(column).ok()?);
    if line == 0 || column == 0 {
        return None;
    }
    let mut start = 0;
    for (i, l) in source.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            let within = l
                .char_indices()
                .nth(column - 1)
                .map(|(b, _)| b)
                .unwrap_or(l.len());
            return Some(start + within);
        }
        start += l.len();
    }
    Some(source.len())
}

fn char_to_byte(source: &str, chars: usize) -> Option<usize> {
    source
        .char_indices()
        .map(|(b, _)| b)
        .chain(std::iter::once(source.len()))
        .nth(chars)
}

fn map_value(attrs: &Attributes) -> Value {
    let map: HashMap<Key, Value> = attrs
        .iter()
        .map(|(k, v)| (Key::from(k.clone()), json_to_cel(v)))
        .collect();
    Value::Map(Map { map: Arc::new(map) })
}

/// JSON → CEL. Integers stay integers (`int` when they fit, else `uint`) so that
/// `attributes["process.pid"] == 1693` holds.
pub(crate) fn json_to_cel(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    match v {
        J::Null => Value::Null,
        J::Bool(b) => Value::Bool(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::Int(i)
            } else if let Some(u) = n.as_u64() {
                Value::UInt(u)
            } else {
                Value::Float(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        J::String(s) => Value::String(Arc::new(s.clone())),
        J::Array(a) => Value::List(Arc::new(a.iter().map(json_to_cel).collect())),
        J::Object(o) => {
            let map: HashMap<Key, Value> = o
                .iter()
                .map(|(k, v)| (Key::from(k.clone()), json_to_cel(v)))
                .collect();
            Value::Map(Map { map: Arc::new(map) })
        }
    }
}

/// A CEL value as an operator reads it in a title or explanation; `None` for values that
/// have no sensible text (null, functions, opaque values).
pub(crate) fn to_text(v: &Value) -> Option<String> {
    Some(match v {
        Value::String(s) => s.to_string(),
        Value::Int(i) => i.to_string(),
        Value::UInt(u) => u.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Bytes(b) => String::from_utf8_lossy(b).into_owned(),
        Value::List(items) => {
            let parts: Vec<String> = items
                .iter()
                .map(|i| to_text(i).unwrap_or_else(|| crate::template::UNKNOWN.into()))
                .collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Map(m) => {
            let mut parts: Vec<String> = m
                .map
                .iter()
                .map(|(k, v)| {
                    let k = match k {
                        Key::String(s) => s.to_string(),
                        Key::Int(i) => i.to_string(),
                        Key::Uint(u) => u.to_string(),
                        Key::Bool(b) => b.to_string(),
                    };
                    let v = to_text(v).unwrap_or_else(|| crate::template::UNKNOWN.into());
                    format!("{k}: {v}")
                })
                .collect();
            parts.sort();
            format!("{{{}}}", parts.join(", "))
        }
        Value::Timestamp(t) => t.to_rfc3339(),
        Value::Duration(d) => format!("{}s", d.num_milliseconds() as f64 / 1000.0),
        _ => return None,
    })
}

/// A CEL value as a number, for filters such as `bytes`; strings holding a number count.
pub(crate) fn to_number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::UInt(u) => Some(*u as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        Value::String(s) => s.trim().parse::<f64>().ok().filter(|f| f.is_finite()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(src: &str) -> ExprError {
        Cel::new().compile(src).expect_err("should not compile")
    }

    #[test]
    fn typos_in_variables_are_caught() {
        match err("atributes['x'] == 1") {
            ExprError::UnknownVariable { name, offset } => {
                assert_eq!(name, "atributes");
                assert_eq!(offset, Some(0));
            }
            other => panic!("{other:?}"),
        }
        match err("name == 'a' && foo") {
            ExprError::UnknownVariable { name, offset } => {
                assert_eq!(name, "foo");
                assert_eq!(offset, Some(15));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn comprehension_variables_are_in_scope() {
        let cel = Cel::new();
        cel.compile("attributes.exists(k, k.startsWith('daytwo.'))")
            .unwrap();
        cel.compile("[1, 2].map(x, x * 2).all(y, y > 0)").unwrap();
        cel.compile("type(attributes['a']) == int").unwrap();
        assert!(cel.compile("[1].map(x, x) == [z]").is_err());
    }

    #[test]
    fn syntax_errors_have_an_offset() {
        match err("name == ") {
            ExprError::Syntax { offset, message } => {
                assert!(offset.is_some(), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn offsets_count_characters_per_line() {
        assert_eq!(offset_of("ab\ncd", 2, 2), Some(4));
        assert_eq!(offset_of("é=1", 1, 2), Some(2));
        assert_eq!(offset_of("x", 0, 0), None);
    }
}
