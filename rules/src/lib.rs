//! daytwo's rule engine: YAML rules with CEL conditions that turn a trigger signal into
//! an incident title and a root-cause hypothesis.
//!
//! Entry types: [`RuleSet`] (compile rule files with [`RuleSet::compile`], or take the
//! shipped packs with [`RuleSet::builtin`], then [`RuleSet::evaluate`] a signal into
//! [`RuleMatch`]es) and, for `daytwo rules test`, [`parse_test_file`] and [`run_tests`].
//! The file formats, CEL variables and template filters are documented in docs/rules.md.
//!
//! Invariants: a compiled [`RuleSet`] has unique, valid ids, scores in 0..=1, and every
//! condition and template parsed; every load error names `path:line:col`
//! ([`RuleParseFailed`]). Evaluation never fails: a condition that errors does not match,
//! a template hole whose value is missing renders `<unknown>`.
//!
//! Joins: a rule may require other signals related to its trigger (same entity, same host,
//! runs-on, owned-by, calls, upstream-of, same-cluster, mounts) within a window; the caller
//! hands them in through [`JoinSource`] ([`join`]).
//!
//! Speed: conditions and template holes within a native subset of CEL run on the signal as it
//! is, without the CEL interpreter (`native`, private; the interpreter remains the reference
//! and the fallback, and property tests hold the two equal); [`RuleSet::interpreted`] turns
//! the fast path off.
//!
//! Deliberately not here: I/O (callers read files and pass [`SourceFile`]s), clocks, async,
//! and the topology itself (the collector's; [`JoinSource`] is how rules ask it).

mod error;
mod expr;
pub mod join;
mod native;
mod ruleset;
mod spec;
mod template;
mod testing;
mod yaml;

pub use daytwo_model::{FastHash, FastHasher};
pub use error::{Location, RuleParseFailed};
pub use expr::{Prepared, VARIABLES};
pub use join::{Anchor, JoinSource, NoJoins, Order, Relation};
pub use ruleset::{BUILTIN_PACKS, BUILTIN_TESTS, Rule, RuleMatch, RuleSet, SourceFile};
pub use spec::{EntitySelector, EvidenceSelector};
pub use template::{Filter, UNKNOWN, human_bytes};
pub use testing::{DEFAULT_TEST_TIME, TestFile, TestOutcome, parse_test_file, run_tests};
