//! The YAML shape of a rule file, as serde reads it (before validation).
//!
//! Every struct denies unknown fields, so a typo (`conditon:`) is an error with a location
//! rather than a silently ignored key. Values that are validated after parsing (ids, scores,
//! expressions, templates) are [`Spanned`] so their errors point at them. docs/rules.md
//! documents every field; keep the two in step.

use daytwo_model::Severity;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A rule file: `rules:` and nothing else.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleFileSpec {
    /// The rules of this file, in order.
    pub rules: Vec<Spanned<RuleSpec>>,
}

/// One rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RuleSpec {
    /// Unique across all loaded files; `[a-z0-9_.-]+`.
    pub id: Spanned<String>,
    /// What the rule recognises, for people reading the pack.
    pub description: String,
    /// Severity of the incident this rule's hypothesis opens.
    pub severity: Severity,
    /// Template: the incident title.
    pub title: Spanned<String>,
    /// Which signal triggers the rule.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Other signals joined to the trigger (docs/rules.md "Joins").
    #[serde(default)]
    pub join: Vec<Spanned<JoinSpec>>,
    /// The hypothesis the rule proposes.
    pub root_cause: RootCauseSpec,
}

/// `join[]` — one signal that must accompany the trigger.
///
/// `relation`, `order` and `within` are validated after parsing (not by serde), so a wrong
/// value rejects this rule only, with its location, while the rest of the file loads.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JoinSpec {
    /// How templates and `root_cause.entity` name it: `join.NAME`.
    pub name: Spanned<String>,
    /// The joined signal's event name, or a list of names.
    pub event: Spanned<EventNames>,
    /// How its entity relates to the anchor's: `same-entity`, `same-host`, `runs-on`, …
    pub relation: Spanned<String>,
    /// The signal the relation and window are measured from: `trigger` (default) or the
    /// name of an earlier join.
    #[serde(default)]
    pub of: Option<Spanned<String>>,
    /// `before`, `after` or `any` (default): when the joined signal happened, relative to
    /// the anchor.
    #[serde(default)]
    pub order: Option<Spanned<String>>,
    /// How far apart in event time, e.g. `30s`, `5m`, `1h`.
    pub within: Spanned<String>,
    /// CEL over the joined signal (its own variables, plus `trigger`).
    #[serde(default)]
    pub condition: Option<Spanned<String>>,
}

/// `match:` — which trigger signal a rule applies to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MatchSpec {
    /// The trigger's `event.name`, exactly; or a list of names, any of which matches.
    pub event: Spanned<EventNames>,
    /// CEL over the trigger; must return `true` for the rule to match.
    #[serde(default)]
    pub condition: Option<Spanned<String>>,
}

/// `root_cause:` — the hypothesis.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RootCauseSpec {
    /// Which entity is named as the cause.
    #[serde(default)]
    pub entity: Option<Spanned<EntitySpec>>,
    /// 0..=1, comparable across rules.
    pub score: Spanned<f64>,
    /// Template: why this entity is the cause, in plain language.
    pub explanation: Spanned<String>,
    /// Template: what to do about it.
    pub remediation: Spanned<String>,
    /// Which of the trigger's evidence to attach.
    #[serde(default)]
    pub evidence: EvidenceSelector,
}

/// Which entity a rule names as the root cause.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum EntitySelector {
    /// `signal`: the trigger signal's own entity (for an OOM kill: the victim's cgroup).
    #[default]
    Signal,
    /// `host`: the host the trigger was observed on (`host.name` of the signal's entity or
    /// resource); the rule does not match a signal without one.
    Host,
    /// `join.NAME`: the entity of the signal joined under that name.
    Join(String),
    /// `join.NAME.host`: the host that signal was observed on (as `host` for the trigger).
    JoinHost(String),
    /// `{kind, name, attributes}`: a fixed entity (for example the cluster's DNS service),
    /// with the trigger's `k8s.cluster.name` added when known.
    Fixed(daytwo_model::Entity),
}

/// `root_cause.entity` as written: a selector string or a fixed entity.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum EntitySpec {
    Selector(String),
    Fixed(FixedEntitySpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FixedEntitySpec {
    pub kind: daytwo_model::EntityKind,
    pub name: String,
    #[serde(default)]
    pub attributes: daytwo_model::Attributes,
}

/// Which of the trigger's evidence a hypothesis carries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EvidenceSelector {
    /// Every piece of evidence.
    #[default]
    All,
    /// Raw log lines only (`kind: log`).
    Logs,
    /// File reads only (`kind: reading`), e.g. cgroup counters at the time of the kill.
    Readings,
    /// Metric samples only (`kind: sample`).
    Samples,
    /// No evidence.
    None,
}

impl EvidenceSelector {
    /// Whether evidence of `kind` is kept.
    pub fn keeps(self, kind: &str) -> bool {
        match self {
            EvidenceSelector::All => true,
            EvidenceSelector::Logs => kind == "log",
            EvidenceSelector::Readings => kind == "reading",
            EvidenceSelector::Samples => kind == "sample",
            EvidenceSelector::None => false,
        }
    }
}

/// `event:` — one name or a list of names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EventNames(pub Vec<String>);

impl<'de> Deserialize<'de> for EventNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = EventNames;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an event name (e.g. daytwo.kernel.oom_kill) or a list of event names")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventNames, E> {
                Ok(EventNames(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<EventNames, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(EventNames(names))
            }
        }
        d.deserialize_any(V)
    }
}
