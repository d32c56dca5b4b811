//! Deployments, StatefulSets, DaemonSets and ReplicaSets → `daytwo.k8s.change` (rollouts and
//! scales with a field diff), stuck rollouts and replica failures.
//!
//! A change is reported when `metadata.generation` moves (every spec change moves it, status
//! updates never do) and names the fields that changed: container images, resource limits and
//! requests, env (names only; values are compared by hash and never copied), replicas, or
//! `spec.template` for anything else in the pod template (a `kubectl rollout restart`). Id:
//! `(uid, generation)`. ReplicaSets owned by a Deployment report no changes (their Deployment
//! does), only replica failures.

use super::{Context, Mapper, content_hash, parse_quantity, rfc3339, signal};
use crate::names;
use daytwo_model::{Attributes, Severity, Signal, Timestamp};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::marker::PhantomData;

/// One workload condition as the snapshot keeps it.
#[derive(Clone, Debug, PartialEq)]
pub struct Cond {
    pub type_: String,
    pub status: String,
    pub reason: String,
    pub message: String,
    pub since: String,
}

/// The parts of a workload kind the mapper reads.
pub trait Workload {
    const KIND: &'static str;
    fn meta(&self) -> &ObjectMeta;
    fn replicas(&self) -> Option<i32>;
    fn template(&self) -> Option<&PodTemplateSpec>;
    fn conditions(&self) -> Vec<Cond>;
}

macro_rules! conds {
    ($status:expr) => {
        $status
            .and_then(|s| s.conditions.as_ref())
            .map(|cs| {
                cs.iter()
                    .map(|c| Cond {
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
            .unwrap_or_default()
    };
}

impl Workload for Deployment {
    const KIND: &'static str = "Deployment";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn conditions(&self) -> Vec<Cond> {
        conds!(self.status.as_ref())
    }
}

impl Workload for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn conditions(&self) -> Vec<Cond> {
        conds!(self.status.as_ref())
    }
}

impl Workload for DaemonSet {
    const KIND: &'static str = "DaemonSet";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn replicas(&self) -> Option<i32> {
        None
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().map(|s| &s.template)
    }
    fn conditions(&self) -> Vec<Cond> {
        conds!(self.status.as_ref())
    }
}

impl Workload for ReplicaSet {
    const KIND: &'static str = "ReplicaSet";
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn template(&self) -> Option<&PodTemplateSpec> {
        self.spec.as_ref().and_then(|s| s.template.as_ref())
    }
    fn conditions(&self) -> Vec<Cond> {
        conds!(self.status.as_ref())
    }
}

/// A container of the pod template, as far as changes are concerned.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct ContainerSpec {
    pub image: String,
    /// `limits.memory`, `requests.cpu`, … → the quantity as written.
    pub resources: BTreeMap<String, String>,
    /// env name → hash of its value or reference (values never leave the mapper).
    pub env: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadSnap {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub generation: i64,
    pub replicas: Option<i32>,
    pub template_hash: String,
    pub containers: BTreeMap<String, ContainerSpec>,
    pub owned_by_deployment: bool,
    pub conditions: Vec<Cond>,
}

/// Maps one workload kind `W`.
#[derive(Clone, Debug)]
pub struct WorkloadMapper<W> {
    pub ctx: Context,
    _kind: PhantomData<fn() -> W>,
}

pub type DeploymentMapper = WorkloadMapper<Deployment>;
pub type StatefulSetMapper = WorkloadMapper<StatefulSet>;
pub type DaemonSetMapper = WorkloadMapper<DaemonSet>;
pub type ReplicaSetMapper = WorkloadMapper<ReplicaSet>;

impl<W> WorkloadMapper<W> {
    pub fn new(ctx: Context) -> Self {
        WorkloadMapper {
            ctx,
            _kind: PhantomData,
        }
    }
}

fn containers(t: Option<&PodTemplateSpec>) -> BTreeMap<String, ContainerSpec> {
    let mut out = BTreeMap::new();
    let Some(spec) = t.and_then(|t| t.spec.as_ref()) else {
        return out;
    };
    let all = spec
        .init_containers
        .iter()
        .flatten()
        .chain(spec.containers.iter());
    for c in all {
        let mut cs = ContainerSpec {
            image: c.image.clone().unwrap_or_default(),
            ..Default::default()
        };
        if let Some(r) = &c.resources {
            for (which, map) in [("limits", &r.limits), ("requests", &r.requests)] {
                for (k, q) in map.iter().flatten() {
                    cs.resources.insert(format!("{which}.{k}"), q.0.clone());
                }
            }
        }
        for e in c.env.iter().flatten() {
            let v = match (&e.value, &e.value_from) {
                (Some(v), _) => content_hash(&["value", v]),
                (None, Some(from)) => {
                    content_hash(&["from", &serde_json::to_string(from).unwrap_or_default()])
                }
                (None, None) => content_hash(&["empty"]),
            };
            cs.env.insert(e.name.clone(), v);
        }
        for (i, f) in c.env_from.iter().flatten().enumerate() {
            let v = serde_json::to_string(f).unwrap_or_default();
            cs.env
                .insert(format!("envFrom[{i}]"), content_hash(&["from", &v]));
        }
        out.insert(c.name.clone(), cs);
    }
    out
}

/// The changed field paths between two pod templates, in a stable order.
pub fn template_fields(
    before: &BTreeMap<String, ContainerSpec>,
    after: &BTreeMap<String, ContainerSpec>,
) -> Vec<String> {
    let mut fields = Vec::new();
    for (name, a) in after {
        let p = format!("spec.template.spec.containers[{name}]");
        match before.get(name) {
            None => fields.push(p),
            Some(b) => {
                if a.image != b.image {
                    fields.push(format!("{p}.image"));
                }
                let keys: std::collections::BTreeSet<&String> =
                    a.resources.keys().chain(b.resources.keys()).collect();
                for k in keys {
                    if a.resources.get(k) != b.resources.get(k) {
                        fields.push(format!("{p}.resources.{k}"));
                    }
                }
                let keys: std::collections::BTreeSet<&String> =
                    a.env.keys().chain(b.env.keys()).collect();
                for k in keys {
                    if a.env.get(k) != b.env.get(k) {
                        fields.push(format!("{p}.env[{k}]"));
                    }
                }
            }
        }
    }
    for name in before.keys() {
        if !after.contains_key(name) {
            fields.push(format!("spec.template.spec.containers[{name}]"));
        }
    }
    fields
}

impl<W: Workload> Mapper for WorkloadMapper<W> {
    type Object = W;
    type Snapshot = WorkloadSnap;

    fn key(&self, w: &W) -> String {
        let m = w.meta();
        m.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            )
        })
    }

    fn snapshot(&self, w: &W) -> WorkloadSnap {
        let m = w.meta();
        let template = w.template();
        WorkloadSnap {
            kind: W::KIND,
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            generation: m.generation.unwrap_or(0),
            replicas: w.replicas(),
            template_hash: content_hash(&[&serde_json::to_string(&template).unwrap_or_default()]),
            containers: containers(template),
            owned_by_deployment: m
                .owner_references
                .iter()
                .flatten()
                .any(|o| o.kind == "Deployment"),
            conditions: w.conditions(),
        }
    }

    fn diff(
        &mut self,
        prev: Option<&WorkloadSnap>,
        new: &WorkloadSnap,
        now: Timestamp,
    ) -> Vec<Signal> {
        let ctx = &self.ctx;
        let mut out = Vec::new();
        let entity = || ctx.workload_entity(&new.namespace, new.kind, &new.name);
        let resource = || {
            let mut r = ctx.resource();
            r.insert(names::NAMESPACE.into(), new.namespace.clone().into());
            if let Some(k) = super::owner_key(new.kind) {
                r.insert(k.into(), new.name.clone().into());
            }
            r
        };
        if let Some(p) = prev
            && p.generation != new.generation
            && !new.owned_by_deployment
            && (p.template_hash != new.template_hash || p.replicas != new.replicas)
        {
            let mut fields = Vec::new();
            let rollout = p.template_hash != new.template_hash;
            if rollout {
                fields = template_fields(&p.containers, &new.containers);
                if fields.is_empty() {
                    fields.push("spec.template".to_string());
                }
            }
            if p.replicas != new.replicas {
                fields.push("spec.replicas".into());
            }
            let mut a = Attributes::new();
            a.insert(
                names::CHANGE_KIND.into(),
                if rollout { "rollout" } else { "scale" }.into(),
            );
            a.insert(names::CHANGE_FIELDS.into(), serde_json::json!(fields));
            a.insert(names::GENERATION.into(), new.generation.into());
            let mut parts = Vec::new();
            // The first container whose image / memory limit changed carries before/after.
            for (name, c) in &new.containers {
                let Some(b) = p.containers.get(name) else {
                    continue;
                };
                if b.image != c.image && !a.contains_key(names::IMAGE_AFTER) {
                    a.insert(names::IMAGE_BEFORE.into(), b.image.clone().into());
                    a.insert(names::IMAGE_AFTER.into(), c.image.clone().into());
                    a.insert(names::CONTAINER.into(), name.clone().into());
                    parts.push(format!("image of {name} {} → {}", b.image, c.image));
                }
                let (bm, am) = (
                    b.resources.get("limits.memory"),
                    c.resources.get("limits.memory"),
                );
                if bm != am && !a.contains_key(names::MEMORY_LIMIT_AFTER) {
                    if let Some(v) = bm.and_then(|q| parse_quantity(q)) {
                        a.insert(names::MEMORY_LIMIT_BEFORE.into(), v.into());
                    }
                    if let Some(v) = am.and_then(|q| parse_quantity(q)) {
                        a.insert(names::MEMORY_LIMIT_AFTER.into(), v.into());
                    }
                    parts.push(format!(
                        "memory limit of {name} {} → {}",
                        bm.map(String::as_str).unwrap_or("none"),
                        am.map(String::as_str).unwrap_or("none")
                    ));
                }
            }
            if p.replicas != new.replicas {
                if let Some(r) = p.replicas {
                    a.insert(names::REPLICAS_BEFORE.into(), r.into());
                }
                if let Some(r) = new.replicas {
                    a.insert(names::REPLICAS_AFTER.into(), r.into());
                }
                parts.push(format!(
                    "replicas {} → {}",
                    p.replicas.map(|r| r.to_string()).unwrap_or("unset".into()),
                    new.replicas
                        .map(|r| r.to_string())
                        .unwrap_or("unset".into())
                ));
            }
            let summary = format!(
                "{} {}/{} changed: {}",
                new.kind,
                new.namespace,
                new.name,
                if parts.is_empty() {
                    fields.join(", ")
                } else {
                    parts.join("; ")
                }
            );
            a.insert(names::CHANGE_SUMMARY.into(), summary.clone().into());
            out.push(signal(
                names::CHANGE,
                &[&new.uid, &new.generation.to_string()],
                now,
                Severity::Info,
                entity(),
                resource(),
                a,
                summary,
            ));
        }

        for c in &new.conditions {
            let name = match (c.type_.as_str(), c.status.as_str(), c.reason.as_str()) {
                ("Progressing", "False", "ProgressDeadlineExceeded") => names::ROLLOUT_STUCK,
                ("ReplicaFailure", "True", _) => names::REPLICA_FAILURE,
                _ => continue,
            };
            let before = prev.and_then(|p| p.conditions.iter().find(|b| b.type_ == c.type_));
            if before
                .is_some_and(|b| b.status == c.status && b.reason == c.reason && b.since == c.since)
            {
                continue;
            }
            let mut a = Attributes::new();
            a.insert(names::CONDITION.into(), c.type_.clone().into());
            a.insert(names::REASON.into(), c.reason.clone().into());
            a.insert(names::MESSAGE.into(), c.message.clone().into());
            a.insert(names::SINCE.into(), c.since.clone().into());
            a.insert(names::GENERATION.into(), new.generation.into());
            a.insert(names::SOURCE.into(), "status".into());
            out.push(signal(
                name,
                &[&new.uid, &c.type_, &c.reason, &c.since],
                now,
                Severity::Warning,
                entity(),
                resource(),
                a,
                format!(
                    "{} {}/{}: {} {} ({}): {}",
                    new.kind, new.namespace, new.name, c.type_, c.status, c.reason, c.message
                ),
            ));
        }
        out
    }
}
