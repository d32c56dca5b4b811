//! Signals: one observation about one entity at one time, with evidence.

use crate::entity::{Attributes, Entity};
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};
use std::fmt;

/// How urgent a signal or incident is to an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing; never pages on its own.
    Info,
    /// Something degraded; pages when a rule says so.
    Warning,
    /// Something failed (a process killed, a disk full); opens an incident on its own.
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "info" => Some(Severity::Info),
            "warning" => Some(Severity::Warning),
            "critical" => Some(Severity::Critical),
            _ => None,
        }
    }
    /// The OTLP severity number used when a signal becomes a log record.
    pub fn otlp_number(self) -> i32 {
        match self {
            Severity::Info => 9,      // INFO
            Severity::Warning => 13,  // WARN
            Severity::Critical => 21, // FATAL
        }
    }
    /// The severity of a plain OTLP log record without a daytwo severity attribute.
    pub fn from_otlp_number(n: i32) -> Self {
        match n {
            21.. => Severity::Critical,
            13..=20 => Severity::Warning,
            _ => Severity::Info,
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A piece of evidence: a log line, a sample or a file read around the signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    pub time: Timestamp,
    /// `log` (a raw line), `sample` (a metric value) or `reading` (a file read at that moment).
    pub kind: String,
    /// The line or value as text, exactly as read.
    pub text: String,
}

/// One observation about one entity at one time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// Stable id: the same observation delivered twice has the same id.
    pub id: String,
    /// The OpenTelemetry `event.name`, e.g. `daytwo.kernel.oom_kill` (docs/signals.md).
    pub name: String,
    pub time: Timestamp,
    pub severity: Severity,
    /// The entity the observation is about (the victim cgroup of an OOM kill, not the host).
    pub entity: Entity,
    /// The resource that reported it (`host.name`, `k8s.node.name`, …).
    #[serde(default)]
    pub resource: Attributes,
    /// Event attributes, semantic-convention keys where one exists.
    #[serde(default)]
    pub attributes: Attributes,
    /// One human-readable sentence.
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub evidence: Vec<Evidence>,
}

impl Signal {
    /// An attribute as a string, looked up in the event attributes, then the entity's,
    /// then the resource's.
    pub fn attr(&self, key: &str) -> Option<&serde_json::Value> {
        self.attributes
            .get(key)
            .or_else(|| self.entity.attributes.get(key))
            .or_else(|| self.resource.get(key))
    }

    /// The host this signal was observed on, if any.
    pub fn host(&self) -> Option<&str> {
        self.entity
            .host()
            .or_else(|| self.resource.get("host.name").and_then(|v| v.as_str()))
    }
}
