//! What can be wrong with a rule file or a rule test file, always with `path:line:col`.
//!
//! Entry type: [`RuleParseFailed`]. Every variant carries a [`Location`] so that
//! `daytwo rules check` can print one `path:line:col: what is wrong` line per problem, the
//! way compilers and `promtool check rules` do. None of these errors is transient: retrying
//! without editing the file gives the same result.

use std::fmt;

/// A position in a rule or test file: 1-based line and column (in characters).
///
/// Line and column are 0 only when the YAML parser could not tell where a problem is (rare:
/// an empty file is reported at 1:1).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Location {
    /// The path as the caller gave it in [`crate::SourceFile::path`].
    pub path: String,
    pub line: u64,
    pub column: u64,
}

impl Location {
    pub fn new(path: impl Into<String>, line: u64, column: u64) -> Self {
        Location {
            path: path.into(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.path, self.line, self.column)
    }
}

/// Why a rule file (or a rule test file) could not be loaded.
///
/// `Display` is `path:line:col: what is wrong (and what to do)`, ready to print as is.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuleParseFailed {
    /// The file is not YAML, or its YAML does not have the shape of a rule (test) file: an
    /// unknown or missing field, a value of the wrong type, a duplicated key.
    #[error("{at}: {message}")]
    Yaml { at: Location, message: String },

    /// A rule id uses characters outside `[a-z0-9_.-]`, or is empty.
    #[error(
        "{at}: invalid rule id `{id}`: use only lowercase letters, digits, `.`, `_` and `-` (e.g. `node.memory_cgroup_oom`)"
    )]
    InvalidId { at: Location, id: String },

    /// Two rules (in the same or in different files) have the same id; ids name incidents'
    /// root causes and fingerprints, so they must be unique across everything loaded.
    #[error("{at}: duplicate rule id `{id}` (first defined at {first}); rename one of them")]
    DuplicateId {
        at: Location,
        id: String,
        first: Location,
    },

    /// `root_cause.score` is not a number in 0..=1.
    #[error(
        "{at}: rule {rule}: root_cause.score: {score} is outside 0..=1 (scores are comparable across rules: 1 means certain)"
    )]
    ScoreOutOfRange {
        at: Location,
        rule: String,
        score: f64,
    },

    /// `match.event` is empty, an empty list, or has an empty or repeated entry.
    #[error("{at}: rule {rule}: match.event: {problem}")]
    InvalidEvent {
        at: Location,
        rule: String,
        problem: String,
    },

    /// A CEL expression (the condition, or an expression inside `{{ }}` in a template) does
    /// not parse.
    #[error("{at}: rule {rule}: {field}: CEL syntax error: {message}")]
    CelSyntax {
        at: Location,
        rule: String,
        /// `match.condition`, `title`, `root_cause.explanation` or `root_cause.remediation`.
        field: String,
        message: String,
    },

    /// A CEL expression is over a size limit (length, bracket nesting, tree depth) that
    /// keeps parsing and evaluation within a thread's stack.
    #[error("{at}: rule {rule}: {field}: CEL expression too complex: {message}")]
    CelTooComplex {
        at: Location,
        rule: String,
        field: String,
        message: String,
    },

    /// A CEL expression names a variable that does not exist (most often a typo).
    #[error(
        "{at}: rule {rule}: {field}: unknown variable `{name}`; the variables are name, severity, attributes, resource, entity, message and time (plus trigger in a join condition, join in the templates of a rule with joins)"
    )]
    UnknownVariable {
        at: Location,
        rule: String,
        field: String,
        name: String,
    },

    /// A template is malformed: `{{` without `}}`, an empty `{{ }}`, an unknown filter.
    #[error("{at}: rule {rule}: {field}: {message}")]
    Template {
        at: Location,
        rule: String,
        field: String,
        message: String,
    },

    /// A `join:` entry or a reference to one is wrong: an unknown relation or order, a bad
    /// window, a duplicate or invalid join name, `of:` or `join.NAME` naming a join that
    /// does not exist, joins whose `of:` form a cycle; or `root_cause.entity` is not one of
    /// the selectors.
    #[error("{at}: rule {rule}: {field}: {message}")]
    Join {
        at: Location,
        rule: String,
        field: String,
        message: String,
    },

    /// A rule test file parses as YAML but makes no sense: no tests, a test without
    /// signals or without expectations, two tests with the same name.
    #[error("{at}: {message}")]
    InvalidTest { at: Location, message: String },
}

impl RuleParseFailed {
    /// Where the problem is.
    pub fn location(&self) -> &Location {
        match self {
            RuleParseFailed::Yaml { at, .. }
            | RuleParseFailed::InvalidId { at, .. }
            | RuleParseFailed::DuplicateId { at, .. }
            | RuleParseFailed::ScoreOutOfRange { at, .. }
            | RuleParseFailed::InvalidEvent { at, .. }
            | RuleParseFailed::CelSyntax { at, .. }
            | RuleParseFailed::CelTooComplex { at, .. }
            | RuleParseFailed::UnknownVariable { at, .. }
            | RuleParseFailed::Template { at, .. }
            | RuleParseFailed::Join { at, .. }
            | RuleParseFailed::InvalidTest { at, .. } => at,
        }
    }
}
