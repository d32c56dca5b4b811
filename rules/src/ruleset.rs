//! Compiled rules and their evaluation against a trigger signal.
//!
//! Entry type: [`RuleSet`], built by [`RuleSet::compile`] from rule files the caller has
//! read (this crate does no I/O) or by [`RuleSet::builtin`] from the packs shipped in the
//! binary. Invariants once built: ids are unique and valid, scores are in 0..=1, every
//! condition and template parsed. [`RuleSet::evaluate`] is pure and deterministic: the same
//! signal always yields the same matches in the same order.
//!
//! Not here (yet): joins across several signals (runs-on, owned-by, calls, before/after).
//! A rule's trigger is one signal; the `match` and `root_cause.entity` shapes leave room
//! for more.

use crate::error::{Location, RuleParseFailed};
use crate::expr::{Cel, ExprError};
use crate::spec::{EntitySelector, EvidenceSelector, RuleFileSpec, RuleSpec};
use crate::template::{Template, TemplateError};
use crate::yaml;
use cel::{Context, Program, Value};
use daytwo_model::{Entity, EntityKind, Hypothesis, Severity, Signal};
use serde_saphyr::Spanned;
use std::collections::HashMap;

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
];

/// One compiled rule.
pub struct Rule {
    id: String,
    description: String,
    severity: Severity,
    title: Template,
    events: Vec<String>,
    condition: Option<Program>,
    condition_source: Option<String>,
    entity: EntitySelector,
    score: f64,
    explanation: Template,
    remediation: Template,
    evidence: EvidenceSelector,
    defined_at: Location,
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
    pub fn entity(&self) -> EntitySelector {
        self.entity
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
}

/// Why a rule that listens for a signal's event did not match it (for test reports).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Miss {
    ConditionFalse,
    ConditionNotBool(String),
    ConditionFailed(String),
    NoHost,
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
        }
    }
}

/// A set of compiled rules, indexed by trigger event name.
pub struct RuleSet {
    cel: Cel,
    rules: Vec<Rule>,
    by_event: HashMap<String, Vec<usize>>,
}

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

    fn compile_here(files: &[SourceFile]) -> Result<RuleSet, Vec<RuleParseFailed>> {
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
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut by_event: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            for e in &r.events {
                by_event.entry(e.clone()).or_default().push(i);
            }
        }
        Ok(RuleSet {
            cel,
            rules,
            by_event,
        })
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

    /// Every rule that matches the trigger, best score first (ties: by rule id).
    ///
    /// A rule matches when the trigger's `name` is one of its `match.event` names and its
    /// condition (if any) returns `true`. A condition that fails (a missing attribute, a
    /// type mismatch) or returns a non-bool does not match.
    pub fn evaluate(&self, trigger: &Signal) -> Vec<RuleMatch> {
        self.evaluate_traced(trigger).0
    }

    /// [`RuleSet::evaluate`], plus why each listening rule that did not match missed.
    pub(crate) fn evaluate_traced(&self, trigger: &Signal) -> (Vec<RuleMatch>, Vec<(&str, Miss)>) {
        let mut matches = Vec::new();
        let mut misses = Vec::new();
        let Some(candidates) = self.by_event.get(&trigger.name) else {
            return (matches, misses);
        };
        let ctx = self.cel.context(trigger);
        for &i in candidates {
            let rule = &self.rules[i];
            match rule.apply(&ctx, trigger) {
                Ok(m) => matches.push(m),
                Err(miss) => misses.push((rule.id.as_str(), miss)),
            }
        }
        matches.sort_by(|a, b| {
            b.hypothesis
                .score
                .total_cmp(&a.hypothesis.score)
                .then_with(|| a.rule.cmp(&b.rule))
        });
        (matches, misses)
    }
}

impl Rule {
    fn apply(&self, ctx: &Context<'_, '_>, trigger: &Signal) -> Result<RuleMatch, Miss> {
        if let Some(cond) = &self.condition {
            match cond.execute(ctx) {
                Ok(Value::Bool(true)) => {}
                Ok(Value::Bool(false)) => return Err(Miss::ConditionFalse),
                Ok(other) => {
                    return Err(Miss::ConditionNotBool(
                        crate::expr::to_text(&other).unwrap_or_else(|| format!("{other:?}")),
                    ));
                }
                Err(e) => return Err(Miss::ConditionFailed(e.to_string())),
            }
        }
        let entity = match self.entity {
            EntitySelector::Signal => trigger.entity.clone(),
            EntitySelector::Host => host_entity(trigger).ok_or(Miss::NoHost)?,
        };
        let evidence = trigger
            .evidence
            .iter()
            .filter(|e| self.evidence.keeps(&e.kind))
            .cloned()
            .collect();
        Ok(RuleMatch {
            rule: self.id.clone(),
            severity: self.severity,
            title: self.title.render(ctx),
            hypothesis: Hypothesis {
                entity,
                score: self.score,
                rule: self.id.clone(),
                explanation: self.explanation.render(ctx),
                remediation: self.remediation.render(ctx),
                evidence,
            },
        })
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
            Ok(p) => Some(p),
            Err(e) => {
                errors.push(expr_error(file, &id, "match.condition", c, 0, e));
                None
            }
        },
    };

    let mut template = |field: &str, t: &Spanned<String>| match Template::parse(cel, &t.value) {
        Ok(t) => Some(t),
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

    match (title, explanation, remediation) {
        (Some(title), Some(explanation), Some(remediation)) if errors.is_empty() => Ok(Rule {
            id,
            description: spec.description,
            severity: spec.severity,
            title,
            events,
            condition,
            condition_source: spec.matcher.condition.map(|c| c.value),
            entity: spec.root_cause.entity,
            score,
            explanation,
            remediation,
            evidence: spec.root_cause.evidence,
            defined_at,
        }),
        _ => Err(errors),
    }
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
