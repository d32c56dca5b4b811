//! The pure mapping from Kubernetes objects to signals: no I/O, no clock (the caller passes
//! `now`), no async.
//!
//! Entry types: [`Mapper`] (one per resource kind: [`pod::PodMapper`], [`node::NodeMapper`],
//! [`event::EventMapper`], [`workload::DeploymentMapper`] …) and [`Tracker`], which keeps one
//! snapshot per object plus the ids of the signals already emitted for it, and is driven with
//! the watcher's events (`init`, `apply`, `delete`, `init_done`).
//!
//! Invariants:
//! * a signal's id depends only on the object's identity and the state it reports (pod uid,
//!   container, restart count, reason; node, condition, status, transition time; object uid
//!   and generation), never on `now`, so two agents, an agent and the collector, or one
//!   process before and after a restart emit the same id for the same observation;
//! * a [`Tracker`] emits each id at most once per object while it tracks the object, whatever
//!   the watcher replays (a re-list after a reconnect or a `410 Gone` re-delivers every object:
//!   unchanged ones yield nothing);
//! * *state* signals (a container waiting, a node condition, a failed Job) are emitted at
//!   first sight, because the state is current; *occurrence* signals (a restart, a Warning
//!   event) are emitted at first sight only when they happened within [`Context::max_age`]
//!   of `now`, so starting the watch never replays an hour of old events as new ones.
//!
//! Time of a signal: the occurrence's own time when the object records one (a termination's
//! `finishedAt`, an event's last timestamp), else `now`, the time it was observed.

pub mod cluster;
pub mod config;
pub mod endpoints;
pub mod event;
pub mod hpa;
pub mod job;
pub mod node;
pub mod pod;
pub mod pvc;
pub mod workload;

use crate::names;
use daytwo_model::{Attributes, Entity, EntityKind, Severity, Signal, Timestamp, stable_id};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

/// What every mapper needs to know about where it runs.
#[derive(Clone, Debug)]
pub struct Context {
    /// `k8s.cluster.name`, on every entity and resource when set.
    pub cluster: Option<String>,
    /// `host.name` of the reporting agent (its signals were observed on that host); `None`
    /// in the collector.
    pub host: Option<String>,
    /// Occurrences older than this at first sight are not emitted (default 15 min).
    pub max_age: Duration,
}

impl Default for Context {
    fn default() -> Self {
        Context {
            cluster: None,
            host: None,
            max_age: Duration::from_secs(15 * 60),
        }
    }
}

impl Context {
    /// Whether an occurrence at `at` is recent enough to report at first sight.
    pub fn is_recent(&self, at: Timestamp, now: Timestamp) -> bool {
        at >= now.minus(self.max_age)
    }

    fn with_cluster(&self, mut attrs: Attributes) -> Attributes {
        if let Some(c) = &self.cluster {
            attrs.insert(names::CLUSTER.into(), c.clone().into());
        }
        attrs
    }

    /// The resource of a signal about a node or cluster object.
    pub fn resource(&self) -> Attributes {
        let mut r = self.with_cluster(Attributes::new());
        if let Some(h) = &self.host {
            r.insert(names::HOST.into(), h.clone().into());
        }
        r
    }

    pub fn node_entity(&self, node: &str) -> Entity {
        let mut e = Entity::new(EntityKind::Node, node);
        e.attributes = self.with_cluster(e.attributes);
        e.attributes.insert(names::NODE.into(), node.into());
        e
    }

    pub fn pod_entity(&self, ns: &str, pod: &str, uid: &str) -> Entity {
        let mut e = Entity::new(EntityKind::Pod, format!("{ns}/{pod}"));
        e.attributes = self.with_cluster(e.attributes);
        e.attributes.insert(names::NAMESPACE.into(), ns.into());
        e.attributes.insert(names::POD_NAME.into(), pod.into());
        if !uid.is_empty() {
            e.attributes.insert(names::POD_UID.into(), uid.into());
        }
        e
    }

    pub fn container_entity(&self, ns: &str, pod: &str, uid: &str, container: &str) -> Entity {
        let mut e = self.pod_entity(ns, pod, uid);
        e.kind = EntityKind::Container;
        e.name = format!("{ns}/{pod}/{container}");
        e.attributes
            .insert(names::CONTAINER.into(), container.into());
        e
    }

    /// A workload (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job, CronJob) named by its
    /// owner attribute (`k8s.deployment.name`, …) in its namespace.
    pub fn workload_entity(&self, ns: &str, kind: &str, name: &str) -> Entity {
        let mut e = Entity::new(EntityKind::Workload, format!("{ns}/{name}"));
        e.attributes = self.with_cluster(e.attributes);
        e.attributes.insert(names::NAMESPACE.into(), ns.into());
        if let Some(key) = owner_key(kind) {
            e.attributes.insert(key.into(), name.into());
        }
        e.attributes
            .insert(names::WORKLOAD_KIND.into(), kind.into());
        e
    }

    /// A namespaced object that is not a workload (ConfigMap, Secret, PVC, HPA, Service),
    /// identified by `key` = its name.
    pub fn object_entity(&self, kind: EntityKind, ns: &str, key: &str, name: &str) -> Entity {
        let mut e = Entity::new(kind, format!("{ns}/{name}"));
        e.attributes = self.with_cluster(e.attributes);
        e.attributes.insert(names::NAMESPACE.into(), ns.into());
        e.attributes.insert(key.into(), name.into());
        e
    }
}

/// The owner attribute for a workload kind (`Deployment` → `k8s.deployment.name`).
pub fn owner_key(kind: &str) -> Option<&'static str> {
    Some(match kind {
        "Deployment" => names::DEPLOYMENT,
        "ReplicaSet" => names::REPLICASET,
        "StatefulSet" => names::STATEFULSET,
        "DaemonSet" => names::DAEMONSET,
        "Job" => names::JOB,
        "CronJob" => names::CRONJOB,
        "HorizontalPodAutoscaler" => names::HPA,
        _ => return None,
    })
}

/// A pod's owners as semantic-convention attributes: the controller reference, and the
/// Deployment above a ReplicaSet (its name minus the `pod-template-hash` suffix) or the CronJob
/// above a Job (its name minus the scheduled-time suffix), as the OpenTelemetry Collector's
/// k8sattributes processor derives them without extra API calls.
pub fn owner_attributes(meta: &ObjectMeta) -> Attributes {
    let mut out = Attributes::new();
    let Some(owner) = meta
        .owner_references
        .iter()
        .flatten()
        .find(|o| o.controller == Some(true))
        .or_else(|| meta.owner_references.iter().flatten().next())
    else {
        return out;
    };
    if let Some(key) = owner_key(&owner.kind) {
        out.insert(key.into(), owner.name.clone().into());
    }
    match owner.kind.as_str() {
        "ReplicaSet" => {
            let hash = meta
                .labels
                .as_ref()
                .and_then(|l| l.get("pod-template-hash"));
            if let Some(h) = hash
                && let Some(dep) = owner.name.strip_suffix(&format!("-{h}"))
            {
                out.insert(names::DEPLOYMENT.into(), dep.into());
            }
        }
        "Job" => {
            if let Some((cron, ts)) = owner.name.rsplit_once('-')
                && ts.len() >= 8
                && ts.bytes().all(|b| b.is_ascii_digit())
            {
                out.insert(names::CRONJOB.into(), cron.into());
            }
        }
        _ => {}
    }
    out
}

/// The owner of a pod as (kind, name) for humans: the Deployment over the ReplicaSet, the
/// CronJob over the Job.
pub fn top_owner(attrs: &Attributes) -> Option<(&'static str, String)> {
    for (key, kind) in [
        (names::DEPLOYMENT, "Deployment"),
        (names::CRONJOB, "CronJob"),
        (names::STATEFULSET, "StatefulSet"),
        (names::DAEMONSET, "DaemonSet"),
        (names::JOB, "Job"),
        (names::REPLICASET, "ReplicaSet"),
    ] {
        if let Some(v) = attrs.get(key).and_then(|v| v.as_str()) {
            return Some((kind, v.to_string()));
        }
    }
    None
}

pub fn ts(t: &Time) -> Timestamp {
    Timestamp::from_unix_nanos(
        t.0.as_nanosecond()
            .clamp(i64::MIN as i128, i64::MAX as i128) as i64,
    )
}

pub fn rfc3339(t: &Time) -> String {
    ts(t).to_string()
}

/// Builds a signal; the id is `stable_id(["k8s", name, id_parts…])`.
// Every argument is a required field of the signal; a builder would only rename them.
#[allow(clippy::too_many_arguments)]
pub fn signal(
    name: &str,
    id_parts: &[&str],
    time: Timestamp,
    severity: Severity,
    entity: Entity,
    resource: Attributes,
    attributes: Attributes,
    message: String,
) -> Signal {
    let mut parts = vec!["k8s", name];
    parts.extend_from_slice(id_parts);
    Signal {
        id: stable_id(&parts),
        name: name.into(),
        time,
        severity,
        entity,
        resource,
        attributes,
        message,
        evidence: Vec::new(),
    }
}

/// Turns one kind of Kubernetes object into signals, by difference with what was seen before.
///
/// `snapshot` keeps what later diffs need (small: a Node's conditions, not its image list).
/// `diff` must be deterministic in (previous snapshot, new snapshot, `now`) apart from signal
/// times, and its ids must not depend on `now`.
pub trait Mapper {
    type Object;
    type Snapshot;
    /// The object's identity across updates (its uid, or namespace/name when it has none).
    fn key(&self, obj: &Self::Object) -> String;
    fn snapshot(&self, obj: &Self::Object) -> Self::Snapshot;
    fn diff(
        &mut self,
        prev: Option<&Self::Snapshot>,
        new: &Self::Snapshot,
        now: Timestamp,
    ) -> Vec<Signal>;
    /// The object is gone (a watch DELETED, or absent from a re-list).
    fn deleted(&mut self, _prev: &Self::Snapshot, _now: Timestamp) -> Vec<Signal> {
        Vec::new()
    }
    /// A re-list starts: mappers that aggregate across objects may hold back until it ends.
    fn begin_init(&mut self) {}
    /// A re-list ended (after the deletions it implied were delivered).
    fn end_init(&mut self, _now: Timestamp) -> Vec<Signal> {
        Vec::new()
    }
}

/// At most this many emitted ids are remembered per object; older ones may be emitted again
/// after a re-list (the collector still dedupes them by id).
const EMITTED_PER_OBJECT: usize = 256;

struct Entry<S> {
    snap: S,
    emitted: HashSet<String>,
    order: VecDeque<String>,
}

/// Per-object state between watch events, so that replays yield nothing new.
pub struct Tracker<M: Mapper> {
    mapper: M,
    objects: HashMap<String, Entry<M::Snapshot>>,
    /// Keys seen since the current re-list began (`Some` between `init` and `init_done`).
    listing: Option<HashSet<String>>,
    emitted_global: HashSet<String>,
}

impl<M: Mapper> Tracker<M> {
    pub fn new(mapper: M) -> Self {
        Tracker {
            mapper,
            objects: HashMap::new(),
            listing: None,
            emitted_global: HashSet::new(),
        }
    }

    pub fn mapper(&self) -> &M {
        &self.mapper
    }

    /// How many objects are tracked.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// A (re-)list begins: objects not delivered before [`Tracker::init_done`] are deleted.
    pub fn init(&mut self) {
        self.listing = Some(HashSet::new());
        self.mapper.begin_init();
    }

    /// An object was added or modified (watch) or listed (re-list).
    pub fn apply(&mut self, obj: &M::Object, now: Timestamp) -> Vec<Signal> {
        let key = self.mapper.key(obj);
        if let Some(l) = &mut self.listing {
            l.insert(key.clone());
        }
        let snap = self.mapper.snapshot(obj);
        let prev = self.objects.remove(&key);
        let signals = self.mapper.diff(prev.as_ref().map(|e| &e.snap), &snap, now);
        let mut entry = match prev {
            Some(e) => Entry { snap, ..e },
            None => Entry {
                snap,
                emitted: HashSet::new(),
                order: VecDeque::new(),
            },
        };
        let mut out = Vec::with_capacity(signals.len());
        for s in signals {
            if entry.emitted.insert(s.id.clone()) {
                entry.order.push_back(s.id.clone());
                if entry.order.len() > EMITTED_PER_OBJECT
                    && let Some(old) = entry.order.pop_front()
                {
                    entry.emitted.remove(&old);
                }
                out.push(s);
            }
        }
        self.objects.insert(key, entry);
        out
    }

    /// An object was deleted.
    pub fn delete(&mut self, obj: &M::Object, now: Timestamp) -> Vec<Signal> {
        let key = self.mapper.key(obj);
        match self.objects.remove(&key) {
            Some(e) => {
                let out = self.mapper.deleted(&e.snap, now);
                self.filter_global(out)
            }
            None => Vec::new(),
        }
    }

    /// The re-list is complete: objects it did not deliver were deleted while we were away.
    pub fn init_done(&mut self, now: Timestamp) -> Vec<Signal> {
        let mut out = Vec::new();
        if let Some(seen) = self.listing.take() {
            let gone: Vec<String> = self
                .objects
                .keys()
                .filter(|k| !seen.contains(*k))
                .cloned()
                .collect();
            for k in gone {
                if let Some(e) = self.objects.remove(&k) {
                    out.extend(self.mapper.deleted(&e.snap, now));
                }
            }
        }
        out.extend(self.mapper.end_init(now));
        self.filter_global(out)
    }

    /// Signals not tied to one tracked object (aggregates, deletions) are deduplicated here.
    fn filter_global(&mut self, signals: Vec<Signal>) -> Vec<Signal> {
        if self.emitted_global.len() > 65_536 {
            self.emitted_global.clear();
        }
        signals
            .into_iter()
            .filter(|s| self.emitted_global.insert(s.id.clone()))
            .collect()
    }
}

/// Parses a Kubernetes quantity (`512Mi`, `1G`, `1.5Gi`, `128974848`, `1e9`, `100m`) into a
/// number of base units, rounded down; `None` when it is not a quantity.
pub fn parse_quantity(q: &str) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let mult: f64 = match suffix {
        "" => 1.0,
        "Ki" => 1024.0,
        "Mi" => 1024.0 * 1024.0,
        "Gi" => 1024.0 * 1024.0 * 1024.0,
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        _ => return None,
    };
    let n: f64 = num.parse().ok()?;
    let v = n * mult;
    v.is_finite().then_some(v.floor() as i64)
}

/// A short hex hash of some content (a ConfigMap's data, a pod template): enough to tell two
/// versions apart, never enough to recover the content.
pub fn content_hash(parts: &[&str]) -> String {
    stable_id(parts)[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("512Mi"), Some(536_870_912));
        assert_eq!(parse_quantity("1Gi"), Some(1_073_741_824));
        assert_eq!(parse_quantity("1.5Gi"), Some(1_610_612_736));
        assert_eq!(parse_quantity("500M"), Some(500_000_000));
        assert_eq!(parse_quantity("128974848"), Some(128_974_848));
        assert_eq!(parse_quantity("1e9"), Some(1_000_000_000));
        assert_eq!(parse_quantity("100m"), Some(0));
        assert_eq!(parse_quantity("lots"), None);
        assert_eq!(parse_quantity("5Xi"), None);
    }

    fn meta(owner_kind: &str, owner: &str, hash: Option<&str>) -> ObjectMeta {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
        ObjectMeta {
            owner_references: Some(vec![OwnerReference {
                kind: owner_kind.into(),
                name: owner.into(),
                controller: Some(true),
                ..Default::default()
            }]),
            labels: hash.map(|h| [("pod-template-hash".to_string(), h.to_string())].into()),
            ..Default::default()
        }
    }

    #[test]
    fn owners() {
        let a = owner_attributes(&meta("ReplicaSet", "checkout-7d4b9c8f6", Some("7d4b9c8f6")));
        assert_eq!(a[names::REPLICASET], "checkout-7d4b9c8f6");
        assert_eq!(a[names::DEPLOYMENT], "checkout");
        let a = owner_attributes(&meta("ReplicaSet", "standalone", None));
        assert!(!a.contains_key(names::DEPLOYMENT));
        let a = owner_attributes(&meta("Job", "backup-29391840", None));
        assert_eq!(a[names::JOB], "backup-29391840");
        assert_eq!(a[names::CRONJOB], "backup");
        let a = owner_attributes(&meta("Job", "migrate-v2", None));
        assert!(!a.contains_key(names::CRONJOB));
        let a = owner_attributes(&meta("StatefulSet", "db", None));
        assert_eq!(top_owner(&a), Some(("StatefulSet", "db".into())));
    }
}
