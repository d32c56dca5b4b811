//! Nodes → condition turned bad / cleared, and cordons.
//!
//! A condition is bad when `Ready` is not `True`, or when any other condition (MemoryPressure,
//! DiskPressure, PIDPressure, NetworkUnavailable, and node-problem-detector's KernelDeadlock,
//! ReadonlyFilesystem, … ) is `True`. Ids are `(node, type, status, lastTransitionTime)`: the
//! agent on the node and the collector watching all nodes report the same transition with the
//! same id.

use super::{Context, Mapper, rfc3339, signal};
use crate::names;
use daytwo_model::{Attributes, Severity, Signal, Timestamp};
use k8s_openapi::api::core::v1::Node;

#[derive(Clone, Debug, PartialEq)]
pub struct Condition {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub since: String,
}

impl Condition {
    pub fn is_bad(&self) -> bool {
        if self.type_ == "Ready" {
            self.status != "True"
        } else {
            self.status == "True"
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct NodeSnap {
    pub name: String,
    pub conditions: Vec<Condition>,
    pub unschedulable: bool,
    pub resource_version: String,
}

#[derive(Clone, Debug)]
pub struct NodeMapper {
    pub ctx: Context,
}

impl NodeMapper {
    pub fn new(ctx: Context) -> Self {
        NodeMapper { ctx }
    }

    fn condition_signal(&self, node: &str, c: &Condition, cleared: bool, now: Timestamp) -> Signal {
        let mut a = Attributes::new();
        a.insert(names::CONDITION_TYPE.into(), c.type_.clone().into());
        a.insert(names::CONDITION_STATUS.into(), c.status.clone().into());
        a.insert(names::REASON.into(), c.reason.clone().into());
        a.insert(names::MESSAGE.into(), c.message.clone().into());
        a.insert(names::SINCE.into(), c.since.clone().into());
        let (name, severity) = if cleared {
            (names::NODE_CONDITION_CLEARED, Severity::Info)
        } else if c.type_ == "Ready" || c.type_ == "NetworkUnavailable" {
            (names::NODE_CONDITION, Severity::Critical)
        } else {
            (names::NODE_CONDITION, Severity::Warning)
        };
        let mut resource = self.ctx.resource();
        resource.insert(names::NODE.into(), node.into());
        let message = if cleared {
            format!(
                "node {node}: {} is {} again ({}).",
                c.type_, c.status, c.reason
            )
        } else {
            format!(
                "node {node}: {}={} ({}): {}",
                c.type_, c.status, c.reason, c.message
            )
        };
        signal(
            name,
            &[node, &c.type_, &c.status, &c.since],
            now,
            severity,
            self.ctx.node_entity(node),
            resource,
            a,
            message,
        )
    }
}

impl Mapper for NodeMapper {
    type Object = Node;
    type Snapshot = NodeSnap;

    fn key(&self, n: &Node) -> String {
        n.metadata.name.clone().unwrap_or_default()
    }

    fn snapshot(&self, n: &Node) -> NodeSnap {
        let conditions = n
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| Condition {
                        type_: c.type_.clone(),
                        status: c.status.clone(),
                        reason: c.reason.clone().unwrap_or_default(),
                        message: c.message.clone().unwrap_or_default(),
                        since: c
                            .last_transition_time
                            .as_ref()
                            .map(rfc3339)
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        NodeSnap {
            name: n.metadata.name.clone().unwrap_or_default(),
            conditions,
            unschedulable: n
                .spec
                .as_ref()
                .and_then(|s| s.unschedulable)
                .unwrap_or(false),
            resource_version: n.metadata.resource_version.clone().unwrap_or_default(),
        }
    }

    fn diff(&mut self, prev: Option<&NodeSnap>, new: &NodeSnap, now: Timestamp) -> Vec<Signal> {
        let mut out = Vec::new();
        for c in &new.conditions {
            let before = prev.and_then(|p| p.conditions.iter().find(|b| b.type_ == c.type_));
            if c.is_bad() {
                if before.is_none_or(|b| !b.is_bad() || b.status != c.status || b.since != c.since)
                {
                    out.push(self.condition_signal(&new.name, c, false, now));
                }
            } else if let Some(b) = before
                && b.is_bad()
            {
                out.push(self.condition_signal(&new.name, c, true, now));
            }
        }
        if let Some(p) = prev
            && p.unschedulable != new.unschedulable
            && new.unschedulable
        {
            let mut a = Attributes::new();
            a.insert(names::CHANGE_KIND.into(), "cordon".into());
            a.insert(
                names::CHANGE_FIELDS.into(),
                serde_json::json!(["spec.unschedulable"]),
            );
            let summary = format!("node {} was cordoned (spec.unschedulable=true)", new.name);
            a.insert(names::CHANGE_SUMMARY.into(), summary.clone().into());
            let mut resource = self.ctx.resource();
            resource.insert(names::NODE.into(), new.name.clone().into());
            // Nodes have no generation: the resourceVersion that carried the cordon names it.
            out.push(signal(
                names::CHANGE,
                &[&new.name, "cordon", &new.resource_version],
                now,
                Severity::Info,
                self.ctx.node_entity(&new.name),
                resource,
                a,
                summary,
            ));
        }
        out
    }
}
