//! Compiled rules and their evaluation against a trigger signal.
//!
//! Entry type: [`RuleSet`], built by [`RuleSet::compile`] from rule files the caller has
//! read (this crate does no I/O) or by [`RuleSet::builtin`] from the packs shipped in the
//! binary. Invariants once built: ids are unique and valid, scores are in 0..=1, every
//! condition and template parsed. [`RuleSet::evaluate`] is pure and deterministic: the same
//! signal always yields the same matches in the same order.
//!
//! Joins: a rule may require other signals next to its trigger (`join:`, see [`crate::join`]).
//! [`RuleSet::evaluate_with`] looks them up through a [`JoinSource`]; when a joined signal
//! arrives after its trigger, [`RuleSet::evaluate_joined`] finds the triggers it completes,
//! so the order in which a cause and its symptoms arrive does not matter.

use crate::error::{Location, RuleParseFailed};
use crate::expr::{Cel, ExprError, Prepared, Scope, Vars};
use crate::join::{JoinSource, NoJoins, Order, Relation};
use crate::native::{self, Native};
use crate::spec::{EntitySelector, EntitySpec, EvidenceSelector, JoinSpec, RuleFileSpec, RuleSpec};
use crate::template::{Template, TemplateError};
use crate::yaml;
use cel::{Context, Program, Value};
use daytwo_model::FastHash;
use daytwo_model::{Entity, EntityKind, Hypothesis, Severity, Signal};
use serde_saphyr::Spanned;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::time::Duration;

/// A rule file's path and contents; the caller did the I/O.
#[derive(Clone, Copy, Debug)]
pub struct SourceFile<'a> {
    /// The path as it should appear in error messages (`rules/packs/node.yaml`).
    pub path: &'a str,
    pub text: &'a str,
}

/// The rule packs shipped inside the binary.
pub const BUILTIN_PACKS: &[SourceFile<'static>] = &[
    SourceFile {
        path: "rules/packs/node.yaml",
        text: include_str!("../packs/node.yaml"),
    },
    SourceFile {
        path: "rules/packs/kubernetes.yaml",
        text: include_str!("../packs/kubernetes.yaml"),
    },
    SourceFile {
        path: "rules/packs/cascades.yaml",
        text: include_str!("../packs/cascades.yaml"),
    },
];

/// The unit tests of the shipped packs (`daytwo rules test` can run them without files).
pub const BUILTIN_TESTS: &[SourceFile<'static>] = &[
    SourceFile {
        path: "rules/packs/node.test.yaml",
        text: include_str!("../packs/node.test.yaml"),
    },
    SourceFile {
        path: "rules/packs/kubernetes.test.yaml",
        text: include_str!("../packs/kubernetes.test.yaml"),
    },
    SourceFile {
        path: "rules/packs/cascades.test.yaml",
        text: include_str!("../packs/cascades.test.yaml"),
    },
];

/// At most this many candidates are tried per join (nearest in time first), and this many
/// triggers per late evaluation: bounds the work one signal can cause.
const MAX_CANDIDATES: usize = 64;
const MAX_LATE_TRIGGERS: usize = 256;
/// At most this many joins per rule.
pub const MAX_JOINS: usize = 8;

/// One compiled `join:` entry.
struct Join {
    name: String,
    events: Vec<String>,
    relation: Relation,
    /// The anchor: `None` for the trigger, else the index of an earlier join (joins are
    /// stored so that an anchor always comes before the joins measured from it).
    of: Option<usize>,
    order: Order,
    within: Duration,
    condition: Option<Condition>,
}

/// A compiled condition, with what evaluation can reuse: its top-level `&&` operands split
/// into those that read `trigger` and those that depend on the signal alone, whose outcome a
/// signal's [`Prepared`] caches (a held signal is tested against the same join many times).
/// `a && b` is `true` exactly when both are `true` (CEL's `&&` is `false` or an error
/// otherwise), so testing the operands apart decides the same.
struct Condition {
    program: Program,
    /// The whole condition evaluated natively, when it is a trigger's and in the native subset.
    native: Option<Native>,
    /// This condition's slot in [`Prepared`]'s outcome cache.
    slot: usize,
    /// Operands that read `trigger`; empty for a trigger's own condition.
    dependent: Vec<Operand>,
    /// The other operands (all of them when `dependent` is empty).
    local: Vec<Operand>,
    /// Whether the part that depends on the signal alone runs natively and cheaply, so that
    /// it is evaluated each time rather than cached in [`Prepared`] (looking the outcome up
    /// would cost as much).
    cheap: bool,
}

/// One `&&` operand of a condition, and its native form when it has one.
struct Operand {
    expr: cel::common::ast::IdedExpr,
    native: Option<Native>,
}

impl Operand {
    /// Whether this operand is `true`: natively where it can, else by the CEL interpreter on
    /// `ctx`, built from `scope` the first time an operand of the condition needs it.
    fn holds<'v>(
        &self,
        cel: &Cel,
        env: &native::Env<'_>,
        scope: &'v Scope<'_>,
        ctx: &mut Option<Context<'v, 'v>>,
    ) -> bool {
        match self
            .native
            .as_ref()
            .filter(|_| cel.native)
            .and_then(|n| native::is_true(n, env))
        {
            Some(b) => b,
            None => matches!(
                ctx.get_or_insert_with(|| cel.context(scope))
                    .resolve(&self.expr),
                Ok(Value::Bool(true))
            ),
        }
    }
}

impl Condition {
    /// `trigger`: whether the condition may read `trigger` (a join's).
    fn new(program: Program, trigger: bool) -> Self {
        let mut operands = Vec::new();
        conjuncts(program.expression(), &mut operands);
        let (dependent, local): (Vec<_>, Vec<_>) = operands
            .into_iter()
            .map(|expr| Operand {
                native: Native::compile(&expr, trigger),
                expr,
            })
            .partition(|o| reads_ident(&o.expr, "trigger"));
        let native = Native::compile(program.expression(), trigger);
        let cheap = if dependent.is_empty() {
            native.as_ref().is_some_and(Native::cheap)
        } else {
            local
                .iter()
                .all(|o| o.native.as_ref().is_some_and(Native::cheap))
        };
        Condition {
            native,
            program,
            slot: 0,
            dependent,
            local,
            cheap,
        }
    }

    /// [`Condition::local`] natively, when native evaluation decides it.
    fn local_native(&self, v: &Vars<'_>) -> Option<Result<(), Miss>> {
        let env = native::Env {
            this: v.signal,
            trigger: None,
            joins: &[],
        };
        if self.dependent.is_empty() {
            let b = native::bool_of(self.native.as_ref()?, &env)?;
            return Some(if b { Ok(()) } else { Err(Miss::ConditionFalse) });
        }
        for o in &self.local {
            if !native::is_true(o.native.as_ref()?, &env)? {
                return Some(Err(Miss::ConditionFalse));
            }
        }
        Some(Ok(()))
    }

    /// Whether the condition holds for `v` on its own (a trigger's condition), or, for a join's
    /// condition, whether the operands that do not read `trigger` hold for the candidate `v`.
    /// Cached in `v`'s [`Prepared`]. Natively where it can ([`Native`]), else by the CEL
    /// interpreter, whose context is only built when needed.
    fn local(&self, cel: &Cel, generation: u64, v: &Vars<'_>) -> Result<(), Miss> {
        if self.cheap
            && cel.native
            && let Some(r) = self.local_native(v)
        {
            return r;
        }
        v.outcome(generation, self.slot, || {
            let env = native::Env {
                this: v.signal,
                trigger: None,
                joins: &[],
            };
            if self.dependent.is_empty() {
                if let Some(b) = self
                    .native
                    .as_ref()
                    .filter(|_| cel.native)
                    .and_then(|n| native::bool_of(n, &env))
                {
                    return if b { Ok(()) } else { Err(Miss::ConditionFalse) };
                }
                let scope = Scope::of(v.clone());
                return check(&self.program, &cel.context(&scope));
            }
            let scope = Scope::of(v.clone());
            let mut ctx = None;
            for o in &self.local {
                if !o.holds(cel, &env, &scope, &mut ctx) {
                    return Err(Miss::ConditionFalse);
                }
            }
            Ok(())
        })
    }

    /// Whether a join's condition holds for candidate `c` with trigger `t`.
    fn holds(&self, cel: &Cel, generation: u64, c: &Vars<'_>, t: &Vars<'_>) -> bool {
        if self.local(cel, generation, c).is_err() {
            return false;
        }
        if self.dependent.is_empty() {
            return true;
        }
        let env = native::Env {
            this: c.signal,
            trigger: Some(t.signal),
            joins: &[],
        };
        let scope = Scope::with_trigger(c.clone(), t.clone());
        let mut ctx = None;
        self.dependent
            .iter()
            .all(|o| o.holds(cel, &env, &scope, &mut ctx))
    }
}

/// The operands of a chain of `&&`, left to right.
fn conjuncts(e: &cel::common::ast::IdedExpr, out: &mut Vec<cel::common::ast::IdedExpr>) {
    use cel::common::ast::Expr;
    match &e.expr {
        Expr::Call(c)
            if c.func_name == cel::common::ast::operators::LOGICAL_AND
                && c.target.is_none()
                && c.args.len() == 2 =>
        {
            conjuncts(&c.args[0], out);
            conjuncts(&c.args[1], out);
        }
        _ => out.push(e.clone()),
    }
}

/// Whether `e` names the identifier `name` anywhere (also where a comprehension shadows it:
/// that only costs a cache hit).
fn reads_ident(e: &cel::common::ast::IdedExpr, name: &str) -> bool {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        if let cel::common::ast::Expr::Ident(n) = &e.expr
            && n == name
        {
            return true;
        }
        stack.extend(crate::expr::children(e));
    }
    false
}

/// One compiled rule.
pub struct Rule {
    id: String,
    description: String,
    severity: Severity,
    title: Template,
    events: Vec<String>,
    condition: Option<Condition>,
    condition_source: Option<String>,
    entity: EntitySelector,
    score: f64,
    explanation: Template,
    remediation: Template,
    evidence: EvidenceSelector,
    defined_at: Location,
    joins: Vec<Join>,
    /// The farthest a joined signal can be from the trigger (windows along the longest chain).
    reach: Duration,
}

impl Rule {
    pub fn id(&self) -> &str {
        &self.id
    }
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Severity of the incident this rule opens.
    pub fn severity(&self) -> Severity {
        self.severity
    }
    /// The trigger event names this rule listens for.
    pub fn events(&self) -> &[String] {
        &self.events
    }
    /// The CEL condition as written, if any.
    pub fn condition(&self) -> Option<&str> {
        self.condition_source.as_deref()
    }
    pub fn entity(&self) -> &EntitySelector {
        &self.entity
    }
    /// The names of the rule's joins, in evaluation order.
    pub fn join_names(&self) -> impl Iterator<Item = &str> {
        self.joins.iter().map(|j| j.name.as_str())
    }
    /// The relations of the joins measured from the trigger: those a late joined signal asks
    /// [`JoinSource::triggers`] about.
    pub fn trigger_relations(&self) -> impl Iterator<Item = Relation> {
        self.joins
            .iter()
            .filter(|j| j.of.is_none())
            .map(|j| j.relation)
    }
    pub fn score(&self) -> f64 {
        self.score
    }
    pub fn evidence(&self) -> EvidenceSelector {
        self.evidence
    }
    /// Where the rule starts (the `-` of its list item).
    pub fn defined_at(&self) -> &Location {
        &self.defined_at
    }
}

impl std::fmt::Debug for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rule")
            .field("id", &self.id)
            .field("events", &self.events)
            .field("condition", &self.condition_source)
            .field("score", &self.score)
            .field("defined_at", &self.defined_at.to_string())
            .finish_non_exhaustive()
    }
}

/// A rule that matched a trigger: the incident it opens and the cause it proposes.
#[derive(Clone, Debug, PartialEq)]
pub struct RuleMatch {
    /// The rule's id (also `hypothesis.rule`).
    pub rule: String,
    /// Severity of the incident this match opens.
    pub severity: Severity,
    /// The rendered title.
    pub title: String,
    pub hypothesis: Hypothesis,
    /// The trigger, then each joined signal in join order (empty joins: the trigger alone),
    /// shared with the [`JoinSource`] that holds them ([`JoinSource::shared`]) rather than
    /// copied.
    pub signals: Vec<std::sync::Arc<Signal>>,
    /// Whether `title`, `hypothesis.explanation` and `hypothesis.remediation` are rendered.
    /// The `*_unrendered` evaluations leave them empty for [`RuleSet::render`], so that a
    /// caller renders only the matches whose text it keeps.
    pub rendered: bool,
}

/// Why a rule that listens for a signal's event did not match it (for test reports).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Miss {
    ConditionFalse,
    ConditionNotBool(String),
    ConditionFailed(String),
    NoHost,
    /// No held signal satisfied this join.
    JoinUnmatched {
        name: String,
        events: Vec<String>,
        relation: Relation,
    },
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::ConditionFalse => f.write_str("its condition returned false"),
            Miss::ConditionNotBool(v) => {
                write!(f, "its condition returned {v}, not a bool")
            }
            Miss::ConditionFailed(e) => write!(f, "its condition failed: {e}"),
            Miss::NoHost => f.write_str(
                "it names the host as root cause but the signal has no host.name (entity or resource)",
            ),
            Miss::JoinUnmatched {
                name,
                events,
                relation,
            } => write!(
                f,
                "join `{name}` found no [{}] signal that is {} and meets its window and condition",
                events.join(", "),
                relation.as_str()
            ),
        }
    }
}

/// A set of compiled rules, indexed by trigger event name.
pub struct RuleSet {
    cel: Cel,
    rules: Vec<Rule>,
    by_event: HashMap<String, Vec<usize>, FastHash>,
    /// Join event name → rules with a join listening for it.
    by_join_event: HashMap<String, Vec<usize>, FastHash>,
    /// Event names a caller must hold for joins: join events and triggers of rules with joins.
    held_events: HashSet<String, FastHash>,
    /// Join event name → the relations of the joins listening for it, once each.
    join_relations: HashMap<String, Vec<Relation>, FastHash>,
    horizon: Duration,
    /// Distinguishes this rule set's condition slots from another's in a [`Prepared`].
    generation: u64,
}

/// The generation of the next rule set compiled.
static GENERATION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl std::fmt::Debug for RuleSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuleSet")
            .field("rules", &self.rules)
            .finish_non_exhaustive()
    }
}

impl RuleSet {
    /// Parses and validates rule files. Reports every problem it can find, across all
    /// files: every validation error of every rule, but only the first YAML error of a file
    /// (after a syntax error the rest of that file cannot be read reliably).
    pub fn compile(files: &[SourceFile]) -> Result<RuleSet, Vec<RuleParseFailed>> {
        // The CEL parser (ANTLR-generated) recurses deeply: in a debug build a dozen nested
        // parentheses take a couple of MiB of stack. Parse on a thread with a large stack so
        // `rules check` works from any caller's thread; the expression limits in `expr`
        // bound what that stack must hold. The stack is reserved, not committed.
        const PARSE_STACK_BYTES: usize = 256 << 20;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("daytwo-rules-compile".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || RuleSet::compile_here(files))
                .ok()
                .map(|h| h.join())
        })
        .unwrap_or_else(|| Ok(RuleSet::compile_here(files)))
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    /// Like [`RuleSet::compile`], but keeps every rule that is valid: a rule with an error is
    /// left out (and so is every rule of a file that is not readable YAML), and the errors
    /// are returned next to the rules that loaded. What a running collector uses on reload.
    pub fn compile_partial(files: &[SourceFile]) -> (RuleSet, Vec<RuleParseFailed>) {
        const PARSE_STACK_BYTES: usize = 256 << 20;
        std::thread::scope(|scope| {
            std::thread::Builder::new()
                .name("daytwo-rules-compile".into())
                .stack_size(PARSE_STACK_BYTES)
                .spawn_scoped(scope, || RuleSet::compile_partial_here(files))
                .ok()
                .map(|h| h.join())
        })
        .unwrap_or_else(|| Ok(RuleSet::compile_partial_here(files)))
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }

    fn compile_here(files: &[SourceFile]) -> Result<RuleSet, Vec<RuleParseFailed>> {
        let (set, errors) = RuleSet::compile_partial_here(files);
        if errors.is_empty() {
            Ok(set)
        } else {
            Err(errors)
        }
    }

    fn compile_partial_here(files: &[SourceFile]) -> (RuleSet, Vec<RuleParseFailed>) {
        let cel = Cel::new();
        let mut errors = Vec::new();
        let mut rules: Vec<Rule> = Vec::new();
        let mut first_seen: HashMap<String, Location> = HashMap::new();
        for file in files {
            let spec: RuleFileSpec = match yaml::parse(
                file.path,
                file.text,
                "a rule file is a mapping with a `rules:` list",
            ) {
                Ok(s) => s,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            for rule in spec.rules {
                let id_at = yaml::location(file.path, &rule.value.id);
                let id = rule.value.id.value.clone();
                if let Some(first) = first_seen.get(&id) {
                    errors.push(RuleParseFailed::DuplicateId {
                        at: id_at,
                        id,
                        first: first.clone(),
                    });
                    continue;
                }
                first_seen.insert(id, id_at);
                match compile_rule(&cel, file, rule) {
                    Ok(r) => rules.push(r),
                    Err(mut es) => errors.append(&mut es),
                }
            }
        }
        let mut slot = 0;
        for r in &mut rules {
            let joins = r.joins.iter_mut().filter_map(|j| j.condition.as_mut());
            for c in r.condition.iter_mut().chain(joins) {
                c.slot = slot;
                slot += 1;
            }
        }
        let mut by_event: HashMap<String, Vec<usize>, FastHash> = HashMap::default();
        let mut by_join_event: HashMap<String, Vec<usize>, FastHash> = HashMap::default();
        let mut held_events = HashSet::default();
        let mut join_relations: HashMap<String, Vec<Relation>, FastHash> = HashMap::default();
        let mut horizon = Duration::ZERO;
        for (i, r) in rules.iter().enumerate() {
            for e in &r.events {
                by_event.entry(e.clone()).or_default().push(i);
            }
            if r.joins.is_empty() {
                continue;
            }
            horizon = horizon.max(r.reach);
            held_events.extend(r.events.iter().cloned());
            for j in &r.joins {
                for e in &j.events {
                    held_events.insert(e.clone());
                    let rels = join_relations.entry(e.clone()).or_default();
                    if !rels.contains(&j.relation) {
                        rels.push(j.relation);
                    }
                    let v = by_join_event.entry(e.clone()).or_default();
                    if v.last() != Some(&i) {
                        v.push(i);
                    }
                }
            }
        }
        (
            RuleSet {
                cel,
                rules,
                by_event,
                by_join_event,
                held_events,
                join_relations,
                horizon,
                generation: GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            },
            errors,
        )
    }

    /// The same rules evaluated by the CEL interpreter alone, without the native fast path for
    /// simple conditions and template holes: what tests hold the fast path to (the results
    /// are the same, only slower).
    pub fn interpreted(mut self) -> RuleSet {
        self.cel.native = false;
        self.generation = GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// The packs shipped with daytwo ([`BUILTIN_PACKS`]).
    ///
    /// # Panics
    ///
    /// Only if a shipped pack is broken, which this crate's tests rule out.
    pub fn builtin() -> RuleSet {
        match RuleSet::compile(BUILTIN_PACKS) {
            Ok(set) => set,
            Err(errors) => {
                let lines: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
                panic!("a shipped rule pack is broken:\n{}", lines.join("\n"))
            }
        }
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Rule ids in load order.
    pub fn rule_ids(&self) -> impl Iterator<Item = &str> {
        self.rules.iter().map(|r| r.id.as_str())
    }

    /// The rules in load order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The rule with this id.
    pub fn get(&self, id: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.id == id)
    }

    /// Every rule that matches the trigger on its own, best score first (ties: by rule id).
    ///
    /// A rule matches when the trigger's `name` is one of its `match.event` names and its
    /// condition (if any) returns `true`. A condition that fails (a missing attribute, a
    /// type mismatch) or returns a non-bool does not match. Rules with joins never match
    /// here (there is nothing to join); use [`RuleSet::evaluate_with`].
    pub fn evaluate(&self, trigger: &Signal) -> Vec<RuleMatch> {
        self.evaluate_traced(trigger, &NoJoins).0
    }

    /// Every rule that matches the trigger, joining the signals `source` holds.
    pub fn evaluate_with(&self, trigger: &Signal, source: &dyn JoinSource) -> Vec<RuleMatch> {
        self.evaluate_traced(trigger, source).0
    }

    /// [`RuleSet::evaluate_with`], with the matches' texts left for [`RuleSet::render`].
    pub fn evaluate_unrendered(&self, trigger: &Signal, source: &dyn JoinSource) -> Vec<RuleMatch> {
        self.evaluate_in(trigger, source).0
    }

    /// [`RuleSet::evaluate_joined`], with the matches' texts left for [`RuleSet::render`].
    pub fn evaluate_joined_unrendered(
        &self,
        joined: &Signal,
        source: &dyn JoinSource,
    ) -> Vec<RuleMatch> {
        self.joined_in(joined, source)
    }

    /// Renders a match's title, explanation and remediation if they are not yet (a match of
    /// the `*_unrendered` evaluations of this rule set), from the match's own signals; the
    /// eager evaluations render every match this way. A match of a rule this set does not
    /// have keeps empty texts.
    pub fn render(&self, m: &mut RuleMatch) {
        if m.rendered {
            return;
        }
        let Some(rule) = self.get(&m.rule) else {
            return;
        };
        let Some((trigger, chosen)) = m.signals.split_first() else {
            return;
        };
        let tv = Vars::of(trigger, &NoJoins);
        let chosen: Vec<Vars<'_>> = chosen.iter().map(|c| Vars::of(c, &NoJoins)).collect();
        let (title, explanation, remediation) = rule.texts(&self.cel, &tv, &chosen);
        m.title = title;
        m.hypothesis.explanation = explanation;
        m.hypothesis.remediation = remediation;
        m.rendered = true;
    }

    /// The matches that `joined`, a signal that arrived after its trigger, completes: for each
    /// rule with a join listening for `joined`'s event, every held trigger within the rule's
    /// reach is evaluated again, and the matches whose joins chose `joined` are returned, best
    /// first. `source` must already hold `joined`.
    pub fn evaluate_joined(&self, joined: &Signal, source: &dyn JoinSource) -> Vec<RuleMatch> {
        let mut out = self.joined_in(joined, source);
        out.iter_mut().for_each(|m| self.render(m));
        out
    }

    fn joined_in(&self, joined: &Signal, source: &dyn JoinSource) -> Vec<RuleMatch> {
        let mut out = Vec::new();
        let Some(rules) = self.by_join_event.get(&joined.name) else {
            return out;
        };
        let joined_vars = Vars::of(joined, source);
        let mut anchors = Anchors::default();
        for &i in rules {
            let rule = &self.rules[i];
            // The joins `joined` can fill (with a chain, any join listening for its event) whose
            // operands that do not read `trigger` hold for it: those hold or fail whatever the
            // trigger, so a join they fail cannot be filled by `joined` for any trigger.
            let slots: Vec<usize> = rule
                .joins
                .iter()
                .enumerate()
                .filter(|(_, j)| j.events.contains(&joined.name))
                .filter(|(_, j)| {
                    j.condition
                        .as_ref()
                        .is_none_or(|c| c.local(&self.cel, self.generation, &joined_vars).is_ok())
                })
                .map(|(i, _)| i)
                .collect();
            if slots.is_empty() {
                continue;
            }
            let from = joined.time.minus(rule.reach);
            let to = joined.time.plus(rule.reach);
            let direct: Vec<&Join> = rule
                .joins
                .iter()
                .filter(|j| j.events.contains(&joined.name))
                .collect();
            // When every join listening for this event is measured from the trigger, ask for
            // the triggers related to `joined` (an indexed lookup in the collector) and test
            // relation and window before the full evaluation; otherwise every held trigger.
            let all_direct = direct.iter().all(|j| j.of.is_none());
            let mut triggers: Vec<&Signal> = Vec::new();
            for e in &rule.events {
                if all_direct {
                    for j in &direct {
                        // Only triggers whose window for this join can hold `joined` (the
                        // check below keeps exactly those): `before` means `joined` is at most
                        // `within` earlier than the trigger, so the trigger is at most `within`
                        // later than `joined`.
                        let (from, to) = match j.order {
                            Order::Before => (joined.time, joined.time.plus(j.within)),
                            Order::After => (joined.time.minus(j.within), joined.time),
                            Order::Any => (joined.time.minus(j.within), joined.time.plus(j.within)),
                        };
                        triggers.extend(source.triggers(&rule.id, e, from, to, j.relation, joined));
                    }
                } else {
                    triggers.extend(source.signals(e, from, to));
                }
            }
            triggers.retain(|t| t.id != joined.id);
            triggers.sort_by(|a, b| {
                a.time
                    .abs_diff(joined.time)
                    .cmp(&b.time.abs_diff(joined.time))
                    .then_with(|| a.id.cmp(&b.id))
            });
            triggers.dedup_by(|a, b| a.id == b.id);
            if all_direct {
                triggers.retain(|t| {
                    direct.iter().any(|j| {
                        let (from, to) = j.order.range(t.time, j.within);
                        joined.time >= from
                            && joined.time <= to
                            && crate::join::related_to(
                                j.relation,
                                &anchors.get(j.relation, t, source),
                                joined,
                                source,
                            )
                    })
                });
            }
            for t in triggers.into_iter().take(MAX_LATE_TRIGGERS) {
                let tv = Vars::of(t, source);
                for &slot in &slots {
                    if let Ok(m) = rule.apply(
                        &self.cel,
                        self.generation,
                        &tv,
                        source,
                        Some((slot, &joined_vars)),
                        &mut anchors,
                    ) {
                        out.push(m);
                        break;
                    }
                }
            }
        }
        sort_matches(&mut out);
        out
    }

    /// The rules with joins that `s` arms as a trigger: those listening for its event whose
    /// condition it passes. A caller that remembers this for the signals it holds can answer
    /// [`JoinSource::triggers`] with just these (a late joined signal then skips every held
    /// signal that could never be a trigger).
    pub fn armed(&self, s: &Signal) -> Vec<&str> {
        self.armed_prepared(s, &Prepared::new())
    }

    /// [`RuleSet::armed`], with `s`'s CEL variables kept in `prepared` (which the caller keeps
    /// with `s` and hands back through [`JoinSource::prepared`]).
    pub fn armed_prepared(&self, s: &Signal, prepared: &Prepared) -> Vec<&str> {
        self.armed_rules(s, prepared)
            .into_iter()
            .map(|r| r.id.as_str())
            .collect()
    }

    /// [`RuleSet::armed_prepared`], as the rules themselves.
    pub fn armed_rules(&self, s: &Signal, prepared: &Prepared) -> Vec<&Rule> {
        let Some(candidates) = self.by_event.get(&s.name) else {
            return Vec::new();
        };
        let joining: Vec<&Rule> = candidates
            .iter()
            .map(|&i| &self.rules[i])
            .filter(|r| !r.joins.is_empty())
            .collect();
        if joining.is_empty() {
            return Vec::new();
        }
        let v = Vars::with(s, prepared);
        joining
            .into_iter()
            .filter(|r| {
                r.condition
                    .as_ref()
                    .is_none_or(|c| c.local(&self.cel, self.generation, &v).is_ok())
            })
            .collect()
    }

    /// Event names a caller should hold for joins (the join events, and the triggers of rules
    /// with joins so that a late joined signal finds them). Empty when no rule joins.
    pub fn held_events(&self) -> &HashSet<String, FastHash> {
        &self.held_events
    }

    /// The relations of the joins that listen for `event` (a signal of that event is looked up
    /// as a join candidate by these relations only); empty when no join listens for it.
    pub fn join_relations(&self, event: &str) -> &[Relation] {
        self.join_relations.get(event).map_or(&[], Vec::as_slice)
    }

    /// How far apart in event time a trigger and a signal joined to it can be, over all rules
    /// (zero when no rule joins): how long a caller should hold signals for joins.
    pub fn join_horizon(&self) -> Duration {
        self.horizon
    }

    /// [`RuleSet::evaluate_with`], plus why each listening rule that did not match missed.
    pub(crate) fn evaluate_traced(
        &self,
        trigger: &Signal,
        source: &dyn JoinSource,
    ) -> (Vec<RuleMatch>, Vec<(&str, Miss)>) {
        let (mut matches, misses) = self.evaluate_in(trigger, source);
        matches.iter_mut().for_each(|m| self.render(m));
        (matches, misses)
    }

    fn evaluate_in(
        &self,
        trigger: &Signal,
        source: &dyn JoinSource,
    ) -> (Vec<RuleMatch>, Vec<(&str, Miss)>) {
        let mut matches = Vec::new();
        let mut misses = Vec::new();
        let Some(candidates) = self.by_event.get(&trigger.name) else {
            return (matches, misses);
        };
        let tv = Vars::of(trigger, source);
        let mut anchors = Anchors::default();
        for &i in candidates {
            let rule = &self.rules[i];
            match rule.apply(&self.cel, self.generation, &tv, source, None, &mut anchors) {
                Ok(m) => matches.push(m),
                Err(miss) => misses.push((rule.id.as_str(), miss)),
            }
        }
        sort_matches(&mut matches);
        (matches, misses)
    }
}

fn sort_matches(matches: &mut [RuleMatch]) {
    matches.sort_by(|a, b| {
        b.hypothesis
            .score
            .total_cmp(&a.hypothesis.score)
            .then_with(|| a.rule.cmp(&b.rule))
    });
}

impl Rule {
    /// Evaluates the rule for `trigger`. `force` = (join index, signal): that join may only
    /// choose that signal (how a late joined signal completes a held trigger without the
    /// search for every other candidate).
    fn apply<'s>(
        &self,
        cel: &Cel,
        generation: u64,
        tv: &Vars<'s>,
        source: &'s dyn JoinSource,
        force: Option<(usize, &Vars<'s>)>,
        anchors: &mut Anchors<'s>,
    ) -> Result<RuleMatch, Miss> {
        let trigger = tv.signal;
        if let Some(cond) = &self.condition {
            cond.local(cel, generation, tv)?;
        }
        let mut chosen: Vec<Vars<'s>> = Vec::with_capacity(self.joins.len());
        if !self.joins.is_empty()
            && let Err(j) =
                self.join_from(0, cel, generation, tv, source, force, &mut chosen, anchors)
        {
            let join = &self.joins[j];
            return Err(Miss::JoinUnmatched {
                name: join.name.clone(),
                events: join.events.clone(),
                relation: join.relation,
            });
        }
        let entity = match &self.entity {
            EntitySelector::Signal => trigger.entity.clone(),
            EntitySelector::Host => host_entity(trigger).ok_or(Miss::NoHost)?,
            EntitySelector::Join(name) => self.chosen(name, &chosen).entity.clone(),
            EntitySelector::JoinHost(name) => {
                host_entity(self.chosen(name, &chosen)).ok_or(Miss::NoHost)?
            }
            EntitySelector::Fixed(e) => {
                let mut e = e.clone();
                if !e.attributes.contains_key("k8s.cluster.name")
                    && let Some(c) = trigger.entity.cluster().or_else(|| {
                        trigger
                            .resource
                            .get("k8s.cluster.name")
                            .and_then(|v| v.as_str())
                    })
                {
                    e.attributes
                        .insert("k8s.cluster.name".into(), c.to_string().into());
                }
                e
            }
        };
        let evidence: Vec<daytwo_model::Evidence> = std::iter::once(trigger)
            .chain(chosen.iter().map(|v| v.signal))
            .flat_map(|s| s.evidence.iter())
            .filter(|e| self.evidence.keeps(&e.kind))
            .cloned()
            .collect();
        let signals: Vec<std::sync::Arc<Signal>> = std::iter::once(trigger)
            .chain(chosen.iter().map(|v| v.signal))
            .map(|s| {
                source
                    .shared(s)
                    .unwrap_or_else(|| std::sync::Arc::new(s.clone()))
            })
            .collect();
        // The texts are rendered on demand ([`RuleSet::render`]).
        Ok(RuleMatch {
            rule: self.id.clone(),
            severity: self.severity,
            title: String::new(),
            hypothesis: Hypothesis {
                entity,
                score: self.score,
                rule: self.id.clone(),
                explanation: String::new(),
                remediation: String::new(),
                evidence,
            },
            signals,
            rendered: false,
        })
    }

    /// The rendered title, explanation and remediation for a trigger and the signals its
    /// joins chose (in join order).
    fn texts<'s>(&self, cel: &Cel, tv: &Vars<'s>, chosen: &[Vars<'s>]) -> (String, String, String) {
        let joined: Vec<(&str, &Signal)> = self
            .joins
            .iter()
            .map(|j| j.name.as_str())
            .zip(chosen.iter().map(|v| v.signal))
            .collect();
        let env = native::Env {
            this: tv.signal,
            trigger: None,
            joins: &joined,
        };
        let scope = if self.joins.is_empty() {
            Scope::of(tv.clone())
        } else {
            Scope::with_joins(
                tv.clone(),
                self.joins
                    .iter()
                    .map(|j| j.name.as_str())
                    .zip(chosen.iter().cloned())
                    .collect(),
            )
        };
        let mut ctx = None;
        (
            self.title.render(&env, cel, &scope, &mut ctx),
            self.explanation.render(&env, cel, &scope, &mut ctx),
            self.remediation.render(&env, cel, &scope, &mut ctx),
        )
    }

    /// The signal chosen for the join named `name`.
    fn chosen<'s>(&self, name: &str, chosen: &[Vars<'s>]) -> &'s Signal {
        let i = self
            .joins
            .iter()
            .position(|j| j.name == name)
            .expect("root_cause.entity names a join, checked at load time");
        chosen[i].signal
    }

    /// Chooses a signal for join `j` and every later join (backtracking over candidates,
    /// nearest to the anchor first). Returns the index of the join that found nothing.
    #[allow(clippy::too_many_arguments)] // recursion state; a struct would only rename it
    fn join_from<'s>(
        &self,
        j: usize,
        cel: &Cel,
        generation: u64,
        tv: &Vars<'s>,
        source: &'s dyn JoinSource,
        force: Option<(usize, &Vars<'s>)>,
        chosen: &mut Vec<Vars<'s>>,
        anchors: &mut Anchors<'s>,
    ) -> Result<(), usize> {
        let Some(join) = self.joins.get(j) else {
            return Ok(());
        };
        let trigger = tv.signal;
        let anchor: &Signal = match join.of {
            None => trigger,
            Some(a) => chosen[a].signal,
        };
        let (from, to) = join.order.range(anchor.time, join.within);
        let facts = anchors.get(join.relation, anchor, source);
        let forced = match force {
            Some((fj, fv)) if fj == j => Some(fv),
            _ => None,
        };
        let mut candidates: Vec<&'s Signal> = match forced {
            Some(fv) => {
                let fs = fv.signal;
                if join.events.contains(&fs.name) && fs.time >= from && fs.time <= to {
                    vec![fs]
                } else {
                    Vec::new()
                }
            }
            None => source.candidates(&join.events, from, to, join.relation, &facts),
        };
        // Nearest first (ties: by id); the relation is then checked lazily, in that order, so
        // that a join satisfied by its nearest candidates does not test all the others. The
        // order, the duplicates dropped and the first MAX_CANDIDATES are those of filtering
        // first: a stable sort keeps the related candidates in the same relative order, and
        // `chosen` is the same at every check (what a try pushes, it pops).
        candidates.sort_by(|a, b| {
            a.time
                .abs_diff(anchor.time)
                .cmp(&b.time.abs_diff(anchor.time))
                .then_with(|| a.id.cmp(&b.id))
        });
        let mut deepest = j;
        let mut previous: Option<&str> = None;
        let mut tried = 0;
        for c in candidates {
            if tried == MAX_CANDIDATES {
                break;
            }
            if c.id == trigger.id
                || chosen.iter().any(|x| x.signal.id == c.id)
                || !crate::join::related_to(join.relation, &facts, c, source)
                // `dedup_by` on the related candidates: a run of one id keeps its first.
                || previous == Some(c.id.as_str())
            {
                continue;
            }
            previous = Some(c.id.as_str());
            tried += 1;
            let cv = match forced {
                Some(fv) => fv.clone(),
                None => Vars::of(c, source),
            };
            if let Some(cond) = &join.condition
                && !cond.holds(cel, generation, &cv, tv)
            {
                continue;
            }
            chosen.push(cv);
            match self.join_from(j + 1, cel, generation, tv, source, force, chosen, anchors) {
                Ok(()) => return Ok(()),
                Err(failed) => deepest = deepest.max(failed),
            }
            chosen.pop();
        }
        Err(deepest)
    }
}

/// What relations need to know about their anchors ([`crate::join::Anchor`]: the machines and
/// workloads the topology says a signal's entity had), computed once per anchor during one
/// evaluation (the source does not change meanwhile) rather than once per rule and per join,
/// and shared by every join that measures from that anchor.
#[derive(Default)]
struct Anchors<'s> {
    /// (address of the anchor signal, which facts) → the anchor: a few per evaluation,
    /// searched in order (no hash table to build for each evaluation).
    memo: Vec<((usize, u8), Rc<crate::join::Anchor<'s>>)>,
}

impl<'s> Anchors<'s> {
    fn get(
        &mut self,
        relation: Relation,
        signal: &'s Signal,
        source: &dyn JoinSource,
    ) -> Rc<crate::join::Anchor<'s>> {
        // Relations that need the same facts share one anchor.
        let facts = match relation {
            Relation::SameHost | Relation::RunsOn => 0,
            Relation::OwnedBy => 1,
            _ => 2,
        };
        let key = (std::ptr::from_ref(signal) as usize, facts);
        if let Some((_, a)) = self.memo.iter().find(|(k, _)| *k == key) {
            return Rc::clone(a);
        }
        let a = Rc::new(crate::join::Anchor::new(relation, signal, source));
        self.memo.push((key, Rc::clone(&a)));
        a
    }
}

/// Runs a condition: `Ok` when it returned `true`.
fn check(cond: &Program, ctx: &Context<'_, '_>) -> Result<(), Miss> {
    match cond.execute(ctx) {
        Ok(Value::Bool(true)) => Ok(()),
        Ok(Value::Bool(false)) => Err(Miss::ConditionFalse),
        Ok(other) => Err(Miss::ConditionNotBool(
            crate::expr::to_text(&other).unwrap_or_else(|| format!("{other:?}")),
        )),
        Err(e) => Err(Miss::ConditionFailed(e.to_string())),
    }
}

/// The host a signal was observed on, identified by `host.name` (and the cluster, when
/// known, so fingerprints of same-named hosts in two clusters differ).
fn host_entity(s: &Signal) -> Option<Entity> {
    let host = s.host()?.to_string();
    let mut e = Entity::new(EntityKind::Host, host.clone()).with_attr("host.name", host);
    let cluster = s
        .entity
        .cluster()
        .or_else(|| s.resource.get("k8s.cluster.name").and_then(|v| v.as_str()));
    if let Some(c) = cluster {
        e = e.with_attr("k8s.cluster.name", c.to_string());
    }
    Some(e)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-')
        })
}

/// Validates one parsed rule; returns every problem found in it.
fn compile_rule(
    cel: &Cel,
    file: &SourceFile,
    rule: Spanned<RuleSpec>,
) -> Result<Rule, Vec<RuleParseFailed>> {
    let path = file.path;
    let defined_at = yaml::location(path, &rule);
    let spec = rule.value;
    let id = spec.id.value.clone();
    let mut errors = Vec::new();

    if !valid_id(&id) {
        errors.push(RuleParseFailed::InvalidId {
            at: yaml::location(path, &spec.id),
            id: id.clone(),
        });
    }

    let score = spec.root_cause.score.value;
    if !(0.0..=1.0).contains(&score) {
        errors.push(RuleParseFailed::ScoreOutOfRange {
            at: yaml::location(path, &spec.root_cause.score),
            rule: id.clone(),
            score,
        });
    }

    let events = spec.matcher.event.value.0.clone();
    let event_at = yaml::location(path, &spec.matcher.event);
    let event_problem = if events.is_empty() {
        Some("the list is empty: name at least one event, e.g. daytwo.kernel.oom_kill".to_string())
    } else if events.iter().any(|e| e.trim().is_empty()) {
        Some(
            "an event name is empty: name the trigger's event.name, e.g. daytwo.kernel.oom_kill"
                .to_string(),
        )
    } else {
        events
            .iter()
            .enumerate()
            .find(|(i, e)| events[..*i].contains(e))
            .map(|(_, e)| format!("`{e}` is listed twice"))
    };
    if let Some(problem) = event_problem {
        errors.push(RuleParseFailed::InvalidEvent {
            at: event_at,
            rule: id.clone(),
            problem,
        });
    }

    let condition = match &spec.matcher.condition {
        None => None,
        Some(c) => match cel.compile(&c.value) {
            Ok(p) => Some(Condition::new(p, false)),
            Err(e) => {
                errors.push(expr_error(file, &id, "match.condition", c, 0, e));
                None
            }
        },
    };

    let joins = compile_joins(cel, file, &id, &spec.join, &mut errors);
    let join_names: Vec<String> = spec
        .join
        .iter()
        .map(|j| j.value.name.value.clone())
        .collect();
    let extra: &[&str] = if spec.join.is_empty() { &[] } else { &["join"] };
    let entity = compile_entity(file, &id, &spec.root_cause.entity, &join_names, &mut errors);
    let mut template =
        |field: &str, t: &Spanned<String>| match Template::parse_with(cel, &t.value, extra) {
            Ok(parsed) => {
                for (name, offset) in parsed.join_refs() {
                    if !join_names.contains(&name) {
                        errors.push(RuleParseFailed::Join {
                            at: yaml::location_in(path, file.text, t, offset),
                            rule: id.clone(),
                            field: field.to_string(),
                            message: undefined_join(&name, &join_names),
                        });
                    }
                }
                Some(parsed)
            }
            Err(TemplateError::Syntax { message, offset }) => {
                errors.push(RuleParseFailed::Template {
                    at: yaml::location_in(path, file.text, t, offset),
                    rule: id.clone(),
                    field: field.to_string(),
                    message,
                });
                None
            }
            Err(TemplateError::Expr { error, offset }) => {
                errors.push(expr_error(file, &id, field, t, offset, error));
                None
            }
        };
    let title = template("title", &spec.title);
    let explanation = template("root_cause.explanation", &spec.root_cause.explanation);
    let remediation = template("root_cause.remediation", &spec.root_cause.remediation);

    match (title, explanation, remediation, joins) {
        (Some(title), Some(explanation), Some(remediation), Some((joins, reach)))
            if errors.is_empty() =>
        {
            Ok(Rule {
                id,
                description: spec.description,
                severity: spec.severity,
                title,
                events,
                condition,
                condition_source: spec.matcher.condition.map(|c| c.value),
                entity,
                score,
                explanation,
                remediation,
                evidence: spec.root_cause.evidence,
                defined_at,
                joins,
                reach,
            })
        }
        _ => Err(errors),
    }
}

fn undefined_join(name: &str, defined: &[String]) -> String {
    if defined.is_empty() {
        format!("`join.{name}` names a join, but this rule has no `join:`")
    } else {
        format!(
            "`join.{name}` names a join that is not defined; the joins are {}",
            defined
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    }
}

fn valid_join_name(n: &str) -> bool {
    let mut b = n.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_lowercase())
        && b.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        && n != "trigger"
}

/// Validates `root_cause.entity`.
fn compile_entity(
    file: &SourceFile,
    rule: &str,
    spec: &Option<Spanned<EntitySpec>>,
    joins: &[String],
    errors: &mut Vec<RuleParseFailed>,
) -> EntitySelector {
    let Some(spec) = spec else {
        return EntitySelector::Signal;
    };
    let at = yaml::location(file.path, spec);
    let err = |message: String| RuleParseFailed::Join {
        at: at.clone(),
        rule: rule.to_string(),
        field: "root_cause.entity".into(),
        message,
    };
    match &spec.value {
        EntitySpec::Fixed(f) => EntitySelector::Fixed(Entity {
            kind: f.kind,
            name: f.name.clone(),
            attributes: f.attributes.clone(),
        }),
        EntitySpec::Selector(s) => match s.as_str() {
            "signal" => EntitySelector::Signal,
            "host" => EntitySelector::Host,
            other => match other.strip_prefix("join.") {
                Some(name) if joins.iter().any(|j| j == name) => {
                    EntitySelector::Join(name.to_string())
                }
                Some(name)
                    if name
                        .strip_suffix(".host")
                        .is_some_and(|n| joins.iter().any(|j| j == n)) =>
                {
                    EntitySelector::JoinHost(name.trim_end_matches(".host").to_string())
                }
                Some(name) => {
                    errors.push(err(undefined_join(name, joins)));
                    EntitySelector::Signal
                }
                None => {
                    errors.push(err(format!(
                        "unknown selector `{other}`: use `signal`, `host`, `join.NAME`, `join.NAME.host` or a fixed entity `{{kind, name, attributes}}`"
                    )));
                    EntitySelector::Signal
                }
            },
        },
    }
}

/// Validates `join:`; returns the joins in evaluation order (every anchor before the joins
/// measured from it) and the rule's reach, or `None` after pushing the errors.
fn compile_joins(
    cel: &Cel,
    file: &SourceFile,
    rule: &str,
    specs: &[Spanned<JoinSpec>],
    errors: &mut Vec<RuleParseFailed>,
) -> Option<(Vec<Join>, Duration)> {
    let path = file.path;
    let before = errors.len();
    let err = |at: Location, i: usize, field: &str, message: String| RuleParseFailed::Join {
        at,
        rule: rule.to_string(),
        field: format!("join[{i}].{field}"),
        message,
    };
    if specs.len() > MAX_JOINS {
        errors.push(err(
            yaml::location(path, &specs[MAX_JOINS]),
            MAX_JOINS,
            "name",
            format!("a rule has at most {MAX_JOINS} joins"),
        ));
        return None;
    }
    let names: Vec<&str> = specs.iter().map(|j| j.value.name.value.as_str()).collect();
    let mut parsed = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let j = &spec.value;
        let name = j.name.value.as_str();
        if !valid_join_name(name) {
            errors.push(err(
                yaml::location(path, &j.name),
                i,
                "name",
                format!("invalid join name `{name}`: use a lowercase letter then lowercase letters, digits or `_` (not `trigger`), e.g. `node`"),
            ));
        } else if names[..i].contains(&name) {
            errors.push(err(
                yaml::location(path, &j.name),
                i,
                "name",
                format!("join `{name}` is defined twice in this rule; give each join its own name"),
            ));
        }
        let events = j.event.value.0.clone();
        if events.is_empty() || events.iter().any(|e| e.trim().is_empty()) {
            errors.push(err(
                yaml::location(path, &j.event),
                i,
                "event",
                "name at least one event, e.g. daytwo.k8s.node.condition".into(),
            ));
        }
        let relation = Relation::parse(&j.relation.value);
        if relation.is_none() {
            let known: Vec<String> = Relation::ALL
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect();
            errors.push(err(
                yaml::location(path, &j.relation),
                i,
                "relation",
                format!(
                    "unknown relation `{}`; the relations are {}",
                    j.relation.value,
                    known.join(", ")
                ),
            ));
        }
        let order = match &j.order {
            None => Some(Order::Any),
            Some(o) => {
                let parsed = Order::parse(&o.value);
                if parsed.is_none() {
                    errors.push(err(
                        yaml::location(path, o),
                        i,
                        "order",
                        format!(
                            "unknown order `{}`; use `before`, `after` or `any`",
                            o.value
                        ),
                    ));
                }
                parsed
            }
        };
        let within = match crate::join::parse_window(&j.within.value) {
            Ok(d) => Some(d),
            Err(message) => {
                errors.push(err(yaml::location(path, &j.within), i, "within", message));
                None
            }
        };
        let of = match &j.of {
            None => Some(None),
            Some(o) if o.value == "trigger" => Some(None),
            Some(o) => {
                match names.iter().position(|n| *n == o.value) {
                    Some(k) if k == i => {
                        errors.push(err(
                        yaml::location(path, o),
                        i,
                        "of",
                        format!("join `{name}` is measured from itself; use `trigger` or another join"),
                    ));
                        None
                    }
                    Some(k) => Some(Some(k)),
                    None => {
                        let mut msg = undefined_join(
                            &o.value,
                            &names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
                        );
                        msg = msg.replacen(
                            &format!("`join.{}`", o.value),
                            &format!("`of: {}`", o.value),
                            1,
                        );
                        errors.push(err(
                            yaml::location(path, o),
                            i,
                            "of",
                            format!("{msg} (or `trigger`)"),
                        ));
                        None
                    }
                }
            }
        };
        let condition = match &j.condition {
            None => None,
            Some(c) => match cel.compile_with(&c.value, &["trigger"]) {
                Ok(p) => Some(Condition::new(p, true)),
                Err(e) => {
                    errors.push(expr_error(
                        file,
                        rule,
                        &format!("join[{i}].condition"),
                        c,
                        0,
                        e,
                    ));
                    None
                }
            },
        };
        parsed.push((events, relation, of, order, within, condition));
    }
    if errors.len() > before {
        return None;
    }
    // Order the joins so that every anchor comes first; what cannot be ordered is a cycle.
    let anchors: Vec<Option<usize>> = parsed.iter().map(|p| p.2.flatten()).collect();
    let mut order: Vec<usize> = Vec::new();
    let mut placed = vec![false; specs.len()];
    while order.len() < specs.len() {
        let next = (0..specs.len()).find(|&i| !placed[i] && anchors[i].is_none_or(|a| placed[a]));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                let i = (0..specs.len()).find(|&i| !placed[i]).unwrap_or(0);
                let mut cycle = vec![names[i]];
                let mut k = anchors[i];
                while let Some(a) = k {
                    if cycle.contains(&names[a]) {
                        cycle.push(names[a]);
                        break;
                    }
                    cycle.push(names[a]);
                    k = anchors[a];
                }
                let at = specs[i]
                    .value
                    .of
                    .as_ref()
                    .map(|o| yaml::location(path, o))
                    .unwrap_or_else(|| yaml::location(path, &specs[i]));
                errors.push(err(
                    at,
                    i,
                    "of",
                    format!(
                        "the joins' `of:` form a cycle ({}); one of them must be measured from `trigger`",
                        cycle.join(" → ")
                    ),
                ));
                return None;
            }
        }
    }
    let position: HashMap<usize, usize> = order.iter().enumerate().map(|(p, i)| (*i, p)).collect();
    let mut slots: Vec<Option<_>> = parsed.into_iter().map(Some).collect();
    let mut joins = Vec::new();
    let mut reach_of: Vec<Duration> = Vec::new();
    for &i in &order {
        let (events, relation, of, order, within, condition) = slots[i].take()?;
        let of = of.flatten().map(|a| position[&a]);
        let within = within?;
        let reach = of.map_or(Duration::ZERO, |a| reach_of[a]) + within;
        reach_of.push(reach);
        joins.push(Join {
            name: names[i].to_string(),
            events,
            relation: relation?,
            of,
            order: order?,
            within,
            condition,
        });
    }
    let reach = reach_of.into_iter().max().unwrap_or(Duration::ZERO);
    Some((joins, reach))
}

/// A CEL error in `field`, whose expression starts at byte `base` of the spanned value.
fn expr_error(
    file: &SourceFile,
    rule: &str,
    field: &str,
    value: &Spanned<String>,
    base: usize,
    error: ExprError,
) -> RuleParseFailed {
    match error {
        ExprError::Syntax { message, offset } => RuleParseFailed::CelSyntax {
            at: yaml::location_in(file.path, file.text, value, base + offset.unwrap_or(0)),
            rule: rule.to_string(),
            field: field.to_string(),
            message,
        },
        ExprError::TooComplex { message, offset } => RuleParseFailed::CelTooComplex {
            at: yaml::location_in(file.path, file.text, value, base + offset.unwrap_or(0)),
            rule: rule.to_string(),
            field: field.to_string(),
            message,
        },
        ExprError::UnknownVariable { name, offset } => RuleParseFailed::UnknownVariable {
            at: yaml::location_in(file.path, file.text, value, base + offset.unwrap_or(0)),
            rule: rule.to_string(),
            field: field.to_string(),
            name,
        },
    }
}
