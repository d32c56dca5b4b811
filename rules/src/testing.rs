//! Rule unit tests, in the manner of `promtool test rules`: signals in, expected
//! hypotheses out.
//!
//! Entry points: [`parse_test_file`] (a YAML test file → [`TestFile`]), then the caller reads
//! [`TestFile::rule_file_paths`] and compiles them into a [`RuleSet`], then [`run_tests`]
//! (→ one [`TestOutcome`] per test). Each signal of a test is evaluated as a trigger, with
//! the test's other signals (and its `calls:`) as what joins can find, whatever their order
//! in the file; expectations are checked against the matches of all of a test's signals.
//! Like the rest of the crate this does no I/O.

use crate::error::{Location, RuleParseFailed};
use crate::join::JoinSource;
use crate::ruleset::{RuleMatch, RuleSet};
use crate::yaml;
use daytwo_model::{Attributes, Entity, EntityKind, Evidence, Severity, Signal, Timestamp};
use serde::Deserialize;
use serde_saphyr::Spanned;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The time a test signal gets when it sets none: 2026-01-01T00:00:00Z.
pub const DEFAULT_TEST_TIME: Timestamp = Timestamp::from_unix_secs(1_767_225_600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFileSpec {
    rule_files: Spanned<Vec<String>>,
    tests: Spanned<Vec<Spanned<TestSpec>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    name: Spanned<String>,
    signals: Spanned<Vec<SignalSpec>>,
    #[serde(default)]
    expect: Vec<Spanned<ExpectSpec>>,
    #[serde(default)]
    expect_not: Vec<Spanned<String>>,
    /// Service calls the topology knows (for `calls` and `upstream-of` joins).
    #[serde(default)]
    calls: Vec<CallSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallSpec {
    caller: String,
    callee: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalSpec {
    #[serde(default)]
    id: Option<String>,
    name: String,
    #[serde(default)]
    time: Option<Timestamp>,
    #[serde(default = "default_severity")]
    severity: Severity,
    entity: EntitySpec,
    #[serde(default)]
    resource: Attributes,
    #[serde(default)]
    attributes: Attributes,
    #[serde(default)]
    message: String,
    #[serde(default)]
    evidence: Vec<EvidenceSpec>,
}

fn default_severity() -> Severity {
    Severity::Info
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntitySpec {
    kind: EntityKind,
    name: String,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EvidenceSpec {
    #[serde(default)]
    time: Option<Timestamp>,
    kind: String,
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntityExpectSpec {
    #[serde(default)]
    kind: Option<EntityKind>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    attributes: Attributes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectSpec {
    rule: String,
    #[serde(default)]
    severity: Option<Severity>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    title_contains: Vec<String>,
    #[serde(default)]
    entity: Option<EntityExpectSpec>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    rank: Option<usize>,
    #[serde(default)]
    explanation_contains: Vec<String>,
    #[serde(default)]
    remediation_contains: Vec<String>,
    #[serde(default)]
    evidence_count: Option<usize>,
}

/// A parsed rule test file.
#[derive(Debug)]
pub struct TestFile {
    path: String,
    rule_files: Vec<String>,
    tests: Vec<TestCase>,
}

#[derive(Debug)]
struct TestCase {
    name: String,
    at: Location,
    signals: Vec<Signal>,
    expect: Vec<(Location, ExpectSpec)>,
    expect_not: Vec<(Location, String)>,
    calls: Vec<(String, String)>,
}

/// A test's signals and calls, as joins see them.
struct Pool<'a> {
    signals: &'a [Signal],
    calls: &'a [(String, String)],
}

impl JoinSource for Pool<'_> {
    fn signals(&self, event: &str, from: Timestamp, to: Timestamp) -> Vec<&Signal> {
        self.signals
            .iter()
            .filter(|s| s.name == event && s.time >= from && s.time <= to)
            .collect()
    }

    fn calls(&self, caller: &str, callee: &str, _at: Timestamp) -> bool {
        self.calls.iter().any(|(a, b)| a == caller && b == callee)
    }

    fn reaches(&self, from: &str, to: &str, _at: Timestamp) -> bool {
        let mut seen = vec![from];
        let mut i = 0;
        while i < seen.len() {
            let cur = seen[i];
            for (a, b) in self.calls {
                if a == cur && !seen.contains(&b.as_str()) {
                    if b == to {
                        return true;
                    }
                    seen.push(b);
                }
            }
            i += 1;
        }
        false
    }
}

impl TestFile {
    /// The path the file was parsed under.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `rule_files` exactly as written (relative to the test file unless absolute).
    pub fn rule_files(&self) -> &[String] {
        &self.rule_files
    }

    /// `rule_files` resolved against the test file's directory, ready to read.
    pub fn rule_file_paths(&self) -> Vec<PathBuf> {
        let dir = Path::new(&self.path).parent().unwrap_or(Path::new(""));
        self.rule_files.iter().map(|f| dir.join(f)).collect()
    }

    /// The names of the tests, in file order.
    pub fn test_names(&self) -> impl Iterator<Item = &str> {
        self.tests.iter().map(|t| t.name.as_str())
    }
}

/// The result of one test.
#[derive(Clone, Debug, PartialEq)]
pub struct TestOutcome {
    /// The test's `name`.
    pub name: String,
    /// Where the test is defined (`path:line:col`).
    pub location: Location,
    pub passed: bool,
    /// One message per unmet expectation, each saying what was expected and what happened.
    pub failures: Vec<String>,
}

/// Parses a rule test file (see docs/rules.md for the format).
pub fn parse_test_file(path: &str, text: &str) -> Result<TestFile, RuleParseFailed> {
    let spec: TestFileSpec = yaml::parse(
        path,
        text,
        "a rule test file is a mapping with `rule_files:` and `tests:`",
    )?;
    let invalid = |at: Location, message: String| RuleParseFailed::InvalidTest { at, message };
    if spec.rule_files.value.is_empty() {
        return Err(invalid(
            yaml::location(path, &spec.rule_files),
            "rule_files is empty: list the rule files these tests load, relative to this file"
                .into(),
        ));
    }
    if spec.tests.value.is_empty() {
        return Err(invalid(
            yaml::location(path, &spec.tests),
            "tests is empty: add at least one test".into(),
        ));
    }
    let mut names = HashSet::new();
    let mut tests = Vec::new();
    for t in spec.tests.value {
        let at = yaml::location(path, &t);
        let t = t.value;
        let name = t.name.value.clone();
        if !names.insert(name.clone()) {
            return Err(invalid(
                yaml::location(path, &t.name),
                format!("duplicate test name `{name}`: give each test its own name"),
            ));
        }
        if t.signals.value.is_empty() {
            return Err(invalid(
                yaml::location(path, &t.signals),
                format!("test `{name}`: signals is empty: give at least one trigger signal"),
            ));
        }
        if t.expect.is_empty() && t.expect_not.is_empty() {
            return Err(invalid(
                at,
                format!("test `{name}` checks nothing: add `expect:` or `expect_not:`"),
            ));
        }
        let signals = t
            .signals
            .value
            .into_iter()
            .enumerate()
            .map(|(i, s)| to_signal(&name, i, s))
            .collect();
        tests.push(TestCase {
            name,
            at,
            signals,
            expect: t
                .expect
                .into_iter()
                .map(|e| (yaml::location(path, &e), e.value))
                .collect(),
            expect_not: t
                .expect_not
                .into_iter()
                .map(|e| (yaml::location(path, &e), e.value))
                .collect(),
            calls: t.calls.into_iter().map(|c| (c.caller, c.callee)).collect(),
        });
    }
    Ok(TestFile {
        path: path.to_string(),
        rule_files: spec.rule_files.value,
        tests,
    })
}

fn to_signal(test: &str, index: usize, s: SignalSpec) -> Signal {
    let time = s.time.unwrap_or(DEFAULT_TEST_TIME);
    Signal {
        id: s
            .id
            .unwrap_or_else(|| daytwo_model::stable_id(&[test, &index.to_string()])),
        name: s.name,
        time,
        severity: s.severity,
        entity: Entity {
            kind: s.entity.kind,
            name: s.entity.name,
            attributes: s.entity.attributes,
        },
        resource: s.resource,
        attributes: s.attributes,
        message: s.message,
        evidence: s
            .evidence
            .into_iter()
            .map(|e| Evidence {
                time: e.time.unwrap_or(time),
                kind: e.kind,
                text: e.text,
            })
            .collect(),
    }
}

/// Runs every test of `tf` against `rules`.
pub fn run_tests(tf: &TestFile, rules: &RuleSet) -> Vec<TestOutcome> {
    tf.tests.iter().map(|t| run_test(t, rules)).collect()
}

/// A match, with its 1-based rank among the matches of the same signal.
struct Ranked<'a> {
    m: RuleMatch,
    rank: usize,
    signal: &'a Signal,
}

fn run_test(t: &TestCase, rules: &RuleSet) -> TestOutcome {
    let mut matched: Vec<Ranked> = Vec::new();
    let mut misses: Vec<(String, String)> = Vec::new();
    let pool = Pool {
        signals: &t.signals,
        calls: &t.calls,
    };
    for s in &t.signals {
        let (ms, why) = rules.evaluate_traced(s, &pool);
        for (i, m) in ms.into_iter().enumerate() {
            matched.push(Ranked {
                m,
                rank: i + 1,
                signal: s,
            });
        }
        for (rule, miss) in why {
            misses.push((rule.to_string(), miss.to_string()));
        }
    }
    let mut failures = Vec::new();
    let known = |id: &str| rules.get(id).is_some();
    for (at, e) in &t.expect {
        if !known(&e.rule) {
            failures.push(format!(
                "{at}: expected rule `{}` to match, but no loaded rule has that id (loaded: {})",
                e.rule,
                list(rules.rule_ids())
            ));
            continue;
        }
        let candidates: Vec<&Ranked> = matched.iter().filter(|r| r.m.rule == e.rule).collect();
        if candidates.is_empty() {
            failures.push(format!(
                "{at}: expected rule `{}` to match, but it did not: {}; matched: [{}]",
                e.rule,
                why_not(&e.rule, t, rules, &misses),
                list(matched.iter().map(|r| r.m.rule.as_str()))
            ));
            continue;
        }
        // Pass when any match satisfies everything; otherwise report the closest one.
        let best = candidates
            .iter()
            .map(|r| mismatches(e, r))
            .min_by_key(|m| m.len())
            .unwrap_or_default();
        if !best.is_empty() {
            failures.push(format!(
                "{at}: rule `{}` matched, but {}",
                e.rule,
                best.join("; ")
            ));
        }
    }
    for (at, id) in &t.expect_not {
        if !known(id) {
            failures.push(format!(
                "{at}: expected rule `{id}` not to match, but no loaded rule has that id (a typo would make this test pass vacuously; loaded: {})",
                list(rules.rule_ids())
            ));
            continue;
        }
        if let Some(r) = matched.iter().find(|r| &r.m.rule == id) {
            failures.push(format!(
                "{at}: expected rule `{id}` not to match, but it matched signal `{}` with title {:?}",
                r.signal.name, r.m.title
            ));
        }
    }
    TestOutcome {
        name: t.name.clone(),
        location: t.at.clone(),
        passed: failures.is_empty(),
        failures,
    }
}

fn list<'a>(ids: impl Iterator<Item = &'a str>) -> String {
    ids.collect::<Vec<_>>().join(", ")
}

fn why_not(rule: &str, t: &TestCase, rules: &RuleSet, misses: &[(String, String)]) -> String {
    let reasons: Vec<&str> = misses
        .iter()
        .filter(|(r, _)| r == rule)
        .map(|(_, why)| why.as_str())
        .collect();
    if !reasons.is_empty() {
        return reasons.join(", ");
    }
    let listens = rules
        .get(rule)
        .map(|r| r.events().join(", "))
        .unwrap_or_default();
    let names: Vec<&str> = t.signals.iter().map(|s| s.name.as_str()).collect();
    format!(
        "it listens for [{listens}] and the test's signals are [{}]",
        names.join(", ")
    )
}

/// What about match `r` differs from expectation `e` (empty: it satisfies it).
fn mismatches(e: &ExpectSpec, r: &Ranked) -> Vec<String> {
    let m = &r.m;
    let h = &m.hypothesis;
    let mut out = Vec::new();
    if let Some(sev) = e.severity
        && sev != m.severity
    {
        out.push(format!("expected severity {sev}, got {}", m.severity));
    }
    if let Some(title) = &e.title
        && title != &m.title
    {
        out.push(format!("expected title {title:?}, got {:?}", m.title));
    }
    for s in &e.title_contains {
        if !m.title.contains(s.as_str()) {
            out.push(format!(
                "expected title to contain {s:?}, got {:?}",
                m.title
            ));
        }
    }
    if let Some(ent) = &e.entity {
        if let Some(kind) = ent.kind
            && kind != h.entity.kind
        {
            out.push(format!(
                "expected entity kind {kind}, got {}",
                h.entity.kind
            ));
        }
        if let Some(name) = &ent.name
            && name != &h.entity.name
        {
            out.push(format!(
                "expected entity name {name:?}, got {:?}",
                h.entity.name
            ));
        }
        for (k, v) in &ent.attributes {
            let got = h.entity.attributes.get(k);
            if got != Some(v) {
                let got = got.map_or("nothing".to_string(), |g| g.to_string());
                out.push(format!("expected entity attribute {k} = {v}, got {got}"));
            }
        }
    }
    if let Some(score) = e.score
        && (score - h.score).abs() > 1e-9
    {
        out.push(format!("expected score {score}, got {}", h.score));
    }
    if let Some(rank) = e.rank
        && rank != r.rank
    {
        out.push(format!(
            "expected rank {rank} among the matches of its signal, got {}",
            r.rank
        ));
    }
    for s in &e.explanation_contains {
        if !h.explanation.contains(s.as_str()) {
            out.push(format!(
                "expected explanation to contain {s:?}, got {:?}",
                h.explanation
            ));
        }
    }
    for s in &e.remediation_contains {
        if !h.remediation.contains(s.as_str()) {
            out.push(format!(
                "expected remediation to contain {s:?}, got {:?}",
                h.remediation
            ));
        }
    }
    if let Some(n) = e.evidence_count
        && n != h.evidence.len()
    {
        out.push(format!(
            "expected {n} pieces of evidence, got {}",
            h.evidence.len()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Calls `f` with each signal of every shipped test case, the case's signals as a join
    /// source, and where it comes from (`file: case (signal)`).
    fn each_shipped_signal(mut f: impl FnMut(&Signal, &Pool<'_>, &str)) {
        for test in crate::BUILTIN_TESTS {
            let tf = parse_test_file(test.path, test.text).unwrap_or_else(|e| panic!("{e}"));
            for t in &tf.tests {
                let pool = Pool {
                    signals: &t.signals,
                    calls: &t.calls,
                };
                for s in &t.signals {
                    f(s, &pool, &format!("{}: {} ({})", test.path, t.name, s.name));
                }
            }
        }
    }

    /// Every signal of every shipped test case yields the same matches (titles, explanations,
    /// remediations, evidence) and the same reasons for each miss whether conditions and
    /// template holes run natively or in the CEL interpreter alone.
    #[test]
    fn native_evaluation_changes_nothing_in_the_shipped_tests() {
        let native = RuleSet::builtin();
        let interpreted = RuleSet::builtin().interpreted();
        let mut compared = 0;
        each_shipped_signal(|s, pool, at| {
            let fast = native.evaluate_traced(s, pool);
            let slow = interpreted.evaluate_traced(s, pool);
            assert_eq!(fast, slow, "{at}");
            compared += fast.0.len() + fast.1.len();
        });
        assert!(compared > 100, "{compared}");
    }

    /// A match left unrendered and rendered later reads exactly as the eager evaluation's
    /// (rendering sees only the match's own signals, not the source's kept variables), as
    /// triggers and as late joined signals; before rendering its texts are empty.
    #[test]
    fn rendering_later_gives_the_same_matches_in_the_shipped_tests() {
        let rules = RuleSet::builtin();
        let mut rendered = 0;
        each_shipped_signal(|s, pool, at| {
            for (now, later) in [
                (
                    rules.evaluate_with(s, pool),
                    rules.evaluate_unrendered(s, pool),
                ),
                (
                    rules.evaluate_joined(s, pool),
                    rules.evaluate_joined_unrendered(s, pool),
                ),
            ] {
                assert_eq!(now.len(), later.len(), "{at}");
                for (a, mut b) in now.into_iter().zip(later) {
                    assert!(a.rendered && !b.rendered);
                    assert!(b.title.is_empty() && b.hypothesis.explanation.is_empty());
                    rules.render(&mut b);
                    assert_eq!(a, b, "{at}");
                    rendered += 1;
                }
            }
        });
        assert!(rendered > 80, "{rendered}");
    }
}
