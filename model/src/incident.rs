//! Incidents and hypotheses: the shape every surface (API, CLI, replay, webhooks) shares.

use crate::entity::Entity;
use crate::signal::{Evidence, Severity, Signal};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Where an incident is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IncidentStatus {
    /// Something is wrong and nobody has said they are on it.
    Open,
    /// Someone is on it; it still deduplicates new signals.
    Acknowledged,
    /// Over; a new signal with the same fingerprint opens a new, linked incident.
    Resolved,
}

impl IncidentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            IncidentStatus::Open => "open",
            IncidentStatus::Acknowledged => "acknowledged",
            IncidentStatus::Resolved => "resolved",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(IncidentStatus::Open),
            "acknowledged" => Some(IncidentStatus::Acknowledged),
            "resolved" => Some(IncidentStatus::Resolved),
            _ => None,
        }
    }
    /// Open and acknowledged incidents still take signals.
    pub fn is_active(self) -> bool {
        !matches!(self, IncidentStatus::Resolved)
    }
}

impl fmt::Display for IncidentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A candidate root cause.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Hypothesis {
    pub entity: Entity,
    /// 0..1, comparable across rules and the generic ranker.
    pub score: f64,
    /// The id of the rule that proposed it, or `daytwo.generic` for the generic ranker.
    pub rule: String,
    pub explanation: String,
    pub remediation: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

/// A link to another incident.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    /// `previous`: the incident with the same fingerprint that resolved before this one opened.
    pub relation: String,
    pub incident_id: String,
}

/// A set of signals joined by time and topology, with ranked hypotheses.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Incident {
    pub id: String,
    /// Root-cause rule + root entity + cluster; never message text.
    pub fingerprint: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub opened_at: Timestamp,
    pub updated_at: Timestamp,
    pub resolved_at: Option<Timestamp>,
    pub title: String,
    /// Sorted by score, highest first.
    pub root_causes: Vec<Hypothesis>,
    pub signals: Vec<Signal>,
    #[serde(default)]
    pub links: Vec<Link>,
}

impl Incident {
    /// Sorts root causes by score, highest first (ties by rule id, so the order is stable).
    pub fn sort_root_causes(&mut self) {
        self.root_causes.sort_by(|a, b| {
            b.score
                .partial_cmp(&a.score)
                .unwrap_or(std::cmp::Ordering::Equal)
                .then_with(|| a.rule.cmp(&b.rule))
        });
    }

    pub fn top(&self) -> Option<&Hypothesis> {
        self.root_causes.first()
    }
}
