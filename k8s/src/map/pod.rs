//! Pods → container waiting reasons, terminations (restarts, OOMKilled), readiness lost,
//! evictions and unschedulable pods.
//!
//! Ids: a waiting reason is `(pod uid, container, reason, restart count)`; a termination is
//! numbered by the restart it causes: a container whose `lastState.terminated` goes with
//! restart count N reports termination N, and one that is `terminated` now with restart count
//! N reports termination N + 1, which is the same termination the kubelet will list as
//! `lastState` once it restarted the container, so both views yield one id. Readiness lost
//! is `(pod uid, container, running since)`: once per run of the container.

use super::{Context, Mapper, owner_attributes, rfc3339, signal, ts};
use crate::names;
use daytwo_model::{Attributes, Severity, Signal, Timestamp};
use k8s_openapi::api::core::v1::{ContainerStateTerminated, ContainerStatus, Pod};
use std::collections::BTreeMap;

/// Waiting reasons that mean the container cannot run (anything else, such as
/// `ContainerCreating` or `PodInitializing`, is normal start-up).
pub const BAD_WAITING_REASONS: &[&str] = &[
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "ErrImageNeverPull",
    "InvalidImageName",
    "ImageInspectError",
    "RegistryUnavailable",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
    "PreStartHookError",
    "PostStartHookError",
    "PreCreateHookError",
];

/// What the pod cache and the resource of every pod signal carry.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub node: Option<String>,
    /// `k8s.replicaset.name`, `k8s.deployment.name`, … (see [`owner_attributes`]).
    pub owner: Attributes,
    pub labels: BTreeMap<String, String>,
    /// `(container id, container name)` of every container, init and ephemeral containers
    /// included, as `status.*containerStatuses[].containerID` names them, without the
    /// `containerd://` (or `docker://`, `cri-o://`) prefix: what the node's cgroup paths carry.
    pub containers: Vec<(String, String)>,
    /// The PersistentVolumeClaims the pod mounts (names within its namespace), in
    /// `spec.volumes` order: `persistentVolumeClaim.claimName`, and for a generic ephemeral
    /// volume the claim Kubernetes creates for it, `<pod name>-<volume name>`.
    pub claims: Vec<String>,
}

impl PodMeta {
    pub fn from_pod(pod: &Pod) -> PodMeta {
        let m = &pod.metadata;
        PodMeta {
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            uid: m.uid.clone().unwrap_or_default(),
            node: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            owner: owner_attributes(m),
            labels: m.labels.clone().unwrap_or_default(),
            containers: pod
                .status
                .iter()
                .flat_map(|s| {
                    let lists = [
                        &s.init_container_statuses,
                        &s.container_statuses,
                        &s.ephemeral_container_statuses,
                    ];
                    lists.into_iter().flatten().flatten()
                })
                .filter_map(|c| {
                    let id = c.container_id.as_deref()?;
                    let id = id.split_once("://").map_or(id, |(_, id)| id);
                    (!id.is_empty()).then(|| (id.to_string(), c.name.clone()))
                })
                .collect(),
            claims: claims_of(pod),
        }
    }

    /// The name of the container with id `id` (no runtime prefix), if this pod has it.
    pub fn container_name(&self, id: &str) -> Option<&str> {
        self.containers
            .iter()
            .find(|(cid, _)| cid == id)
            .map(|(_, name)| name.as_str())
    }

    /// The resource attributes of a signal about this pod: identity, node, owner and labels
    /// (`k8s.pod.label.<key>`, as the OpenTelemetry semantic conventions name them).
    pub fn resource(&self, ctx: &Context) -> Attributes {
        let mut r = ctx.resource();
        r.insert(names::NAMESPACE.into(), self.namespace.clone().into());
        r.insert(names::POD_NAME.into(), self.name.clone().into());
        r.insert(names::POD_UID.into(), self.uid.clone().into());
        if let Some(n) = &self.node {
            r.insert(names::NODE.into(), n.clone().into());
        }
        for (k, v) in &self.owner {
            r.insert(k.clone(), v.clone());
        }
        for (k, v) in &self.labels {
            r.insert(format!("k8s.pod.label.{k}"), v.clone().into());
        }
        if !self.claims.is_empty() {
            r.insert(names::POD_CLAIMS.into(), self.claims.clone().into());
        }
        r
    }
}

/// The claims of a pod's volumes (see [`PodMeta::claims`]), without repeats.
pub fn claims_of(pod: &Pod) -> Vec<String> {
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let mut out: Vec<String> = Vec::new();
    for v in pod.spec.iter().flat_map(|s| s.volumes.iter().flatten()) {
        let claim = if let Some(c) = &v.persistent_volume_claim {
            c.claim_name.clone()
        } else if v.ephemeral.is_some() && !name.is_empty() {
            format!("{name}-{}", v.name)
        } else {
            continue;
        };
        if !claim.is_empty() && !out.contains(&claim) {
            out.push(claim);
        }
    }
    out
}

#[derive(Clone, Debug, PartialEq)]
pub struct Termination {
    pub reason: String,
    pub exit_code: i32,
    pub signal: Option<i32>,
    pub message: Option<String>,
    pub finished_at: Option<Timestamp>,
}

impl Termination {
    fn from(t: &ContainerStateTerminated) -> Termination {
        Termination {
            reason: t.reason.clone().unwrap_or_else(|| {
                if t.exit_code == 0 {
                    "Completed"
                } else {
                    "Error"
                }
                .to_string()
            }),
            exit_code: t.exit_code,
            signal: t.signal,
            message: t.message.clone(),
            finished_at: t.finished_at.as_ref().map(ts),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ContainerSnap {
    pub name: String,
    pub init: bool,
    pub restart_count: i32,
    pub ready: bool,
    pub image: String,
    /// `state.running.startedAt` (RFC 3339) while running.
    pub running_since: Option<String>,
    pub waiting: Option<(String, String)>,
    pub terminated: Option<Termination>,
    pub last_terminated: Option<Termination>,
}

impl ContainerSnap {
    fn from(c: &ContainerStatus, init: bool) -> ContainerSnap {
        let state = c.state.as_ref();
        ContainerSnap {
            name: c.name.clone(),
            init,
            restart_count: c.restart_count,
            ready: c.ready,
            image: c.image.clone(),
            running_since: state
                .and_then(|s| s.running.as_ref())
                .map(|r| r.started_at.as_ref().map(rfc3339).unwrap_or_default()),
            waiting: state.and_then(|s| s.waiting.as_ref()).map(|w| {
                (
                    w.reason.clone().unwrap_or_default(),
                    w.message.clone().unwrap_or_default(),
                )
            }),
            terminated: state
                .and_then(|s| s.terminated.as_ref())
                .map(Termination::from),
            last_terminated: c
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .map(Termination::from),
        }
    }

    /// The terminations this status shows, numbered as in the module docs.
    fn terminations(&self) -> impl Iterator<Item = (i32, &Termination, bool)> {
        let last = self
            .last_terminated
            .as_ref()
            .filter(|_| self.restart_count > 0)
            .map(|t| (self.restart_count, t, true));
        let now = self
            .terminated
            .as_ref()
            .map(|t| (self.restart_count + 1, t, false));
        last.into_iter().chain(now)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct PodSnap {
    pub meta: PodMeta,
    pub phase: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub deleting: bool,
    /// (message, last transition) of a `PodScheduled=False, reason Unschedulable` condition.
    pub unschedulable: Option<(String, String)>,
    pub containers: Vec<ContainerSnap>,
}

/// Maps pods; the agent runs it on its own node's pods, the collector may run it cluster-wide.
#[derive(Clone, Debug)]
pub struct PodMapper {
    pub ctx: Context,
}

impl PodMapper {
    pub fn new(ctx: Context) -> Self {
        PodMapper { ctx }
    }
}

/// A pod's tracking key: its uid, else namespace/name.
fn pod_key(pod: &Pod) -> String {
    let m = &pod.metadata;
    m.uid.clone().unwrap_or_else(|| {
        format!(
            "{}/{}",
            m.namespace.as_deref().unwrap_or(""),
            m.name.as_deref().unwrap_or("")
        )
    })
}

impl Mapper for PodMapper {
    type Object = Pod;
    type Snapshot = PodSnap;

    fn key(&self, pod: &Pod) -> String {
        pod_key(pod)
    }

    fn snapshot(&self, pod: &Pod) -> PodSnap {
        let status = pod.status.as_ref();
        let mut containers = Vec::new();
        if let Some(s) = status {
            for c in s.init_container_statuses.iter().flatten() {
                containers.push(ContainerSnap::from(c, true));
            }
            for c in s.container_statuses.iter().flatten() {
                containers.push(ContainerSnap::from(c, false));
            }
        }
        let unschedulable = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| {
                cs.iter().find(|c| {
                    c.type_ == "PodScheduled"
                        && c.status == "False"
                        && c.reason.as_deref() == Some("Unschedulable")
                })
            })
            .map(|c| {
                (
                    c.message.clone().unwrap_or_default(),
                    c.last_transition_time
                        .as_ref()
                        .map(rfc3339)
                        .unwrap_or_default(),
                )
            });
        PodSnap {
            meta: PodMeta::from_pod(pod),
            phase: status.and_then(|s| s.phase.clone()).unwrap_or_default(),
            reason: status.and_then(|s| s.reason.clone()),
            message: status.and_then(|s| s.message.clone()),
            deleting: pod.metadata.deletion_timestamp.is_some(),
            unschedulable,
            containers,
        }
    }

    fn diff(&mut self, prev: Option<&PodSnap>, new: &PodSnap, now: Timestamp) -> Vec<Signal> {
        let ctx = &self.ctx;
        let m = &new.meta;
        let resource = m.resource(ctx);
        let mut out = Vec::new();
        for c in &new.containers {
            let before = prev.and_then(|p| {
                p.containers
                    .iter()
                    .find(|o| o.name == c.name && o.init == c.init)
            });
            let entity = || ctx.container_entity(&m.namespace, &m.name, &m.uid, &c.name);
            let kind = if c.init {
                "init container"
            } else {
                "container"
            };

            if let Some((reason, msg)) = &c.waiting
                && BAD_WAITING_REASONS.contains(&reason.as_str())
            {
                let changed = before.is_none_or(|b| {
                    b.waiting.as_ref().map(|w| &w.0) != Some(reason)
                        || b.restart_count != c.restart_count
                });
                if changed {
                    let mut a = Attributes::new();
                    a.insert(names::WAITING_REASON.into(), reason.clone().into());
                    a.insert(names::MESSAGE.into(), msg.clone().into());
                    a.insert(names::RESTART_COUNT.into(), c.restart_count.into());
                    a.insert("container.image.name".into(), c.image.clone().into());
                    if let Some(t) = &c.last_terminated {
                        a.insert(
                            names::LAST_TERMINATED_REASON.into(),
                            t.reason.clone().into(),
                        );
                        a.insert(names::EXIT_CODE.into(), t.exit_code.into());
                    }
                    let message = format!(
                        "{kind} {} of pod {}/{} is waiting: {reason}{}{} (restarts: {}).",
                        c.name,
                        m.namespace,
                        m.name,
                        if msg.is_empty() { "" } else { ": " },
                        msg,
                        c.restart_count
                    );
                    out.push(signal(
                        names::CONTAINER_WAITING,
                        &[&m.uid, &c.name, reason, &c.restart_count.to_string()],
                        now,
                        Severity::Warning,
                        entity(),
                        resource.clone(),
                        a,
                        message,
                    ));
                }
            }

            for (n, t, restarted) in c.terminations() {
                if !restarted && t.exit_code == 0 {
                    continue; // finished its work (a Job's pod, an init container)
                }
                let seen = before.is_some_and(|b| b.terminations().any(|(bn, _, _)| bn == n));
                if seen {
                    continue;
                }
                let at = t.finished_at.unwrap_or(now);
                if before.is_none() && !ctx.is_recent(at, now) {
                    continue;
                }
                let mut a = Attributes::new();
                a.insert(
                    names::LAST_TERMINATED_REASON.into(),
                    t.reason.clone().into(),
                );
                a.insert(names::EXIT_CODE.into(), t.exit_code.into());
                a.insert(names::RESTART_COUNT.into(), c.restart_count.into());
                a.insert("container.image.name".into(), c.image.clone().into());
                if let Some(s) = t.signal {
                    a.insert("daytwo.k8s.signal".into(), s.into());
                }
                if let Some(msg) = &t.message {
                    a.insert(names::MESSAGE.into(), msg.clone().into());
                }
                let severity = if t.reason == "OOMKilled" {
                    Severity::Critical
                } else if t.exit_code != 0 {
                    Severity::Warning
                } else {
                    Severity::Info
                };
                let message = format!(
                    "{kind} {} of pod {}/{} terminated: {} (exit code {}){}.",
                    c.name,
                    m.namespace,
                    m.name,
                    t.reason,
                    t.exit_code,
                    if restarted {
                        format!("; restarted, {} restarts so far", c.restart_count)
                    } else {
                        String::new()
                    }
                );
                out.push(signal(
                    names::CONTAINER_TERMINATED,
                    &[&m.uid, &c.name, &n.to_string()],
                    at,
                    severity,
                    entity(),
                    resource.clone(),
                    a,
                    message,
                ));
            }

            if let Some(since) = &c.running_since
                && !c.ready
                && !c.init
                && !new.deleting
                && let Some(b) = before
                && b.ready
                && b.running_since.as_ref() == Some(since)
            {
                let mut a = Attributes::new();
                a.insert(names::PROBE.into(), "readiness".into());
                a.insert(names::RESTART_COUNT.into(), c.restart_count.into());
                a.insert(names::SOURCE.into(), "status".into());
                out.push(signal(
                    names::CONTAINER_PROBE_FAILED,
                    &[&m.uid, &c.name, "not_ready", since],
                    now,
                    Severity::Warning,
                    entity(),
                    resource.clone(),
                    a,
                    format!(
                        "container {} of pod {}/{} is running but no longer ready (its readiness probe fails).",
                        c.name, m.namespace, m.name
                    ),
                ));
            }
        }

        let evicted = |p: &PodSnap| p.phase == "Failed" && p.reason.as_deref() == Some("Evicted");
        if evicted(new) && !prev.is_some_and(evicted) {
            let msg = new.message.clone().unwrap_or_default();
            let mut a = Attributes::new();
            a.insert(names::REASON.into(), "Evicted".into());
            a.insert(names::MESSAGE.into(), msg.clone().into());
            a.insert(names::SOURCE.into(), "status".into());
            out.push(signal(
                names::POD_EVICTED,
                &[&m.uid],
                now,
                Severity::Warning,
                ctx.pod_entity(&m.namespace, &m.name, &m.uid),
                resource.clone(),
                a,
                format!("pod {}/{} was evicted: {msg}", m.namespace, m.name),
            ));
        }

        if let Some((msg, since)) = &new.unschedulable
            && prev.and_then(|p| p.unschedulable.as_ref()) != new.unschedulable.as_ref()
        {
            let mut a = Attributes::new();
            a.insert(names::REASON.into(), "Unschedulable".into());
            a.insert(names::MESSAGE.into(), msg.clone().into());
            a.insert(names::SINCE.into(), since.clone().into());
            a.insert(names::SOURCE.into(), "status".into());
            out.push(signal(
                names::POD_UNSCHEDULABLE,
                &[&m.uid, since],
                now,
                Severity::Warning,
                ctx.pod_entity(&m.namespace, &m.name, &m.uid),
                resource,
                a,
                format!("pod {}/{} cannot be scheduled: {msg}", m.namespace, m.name),
            ));
        }
        out
    }
}

/// (namespace, pod name) → the pod's claims.
type ClaimMap = std::collections::HashMap<(String, String), Vec<String>>;

/// The claims of the pods that are `Pending` now, by (namespace, name): what the collector's
/// [`super::event::EventMapper`] adds to a pod event's resource (`daytwo.k8s.pod.claims`), since
/// an event names its pod but not the pod's volumes. Shared between the watch that fills it
/// ([`PendingPodClaims`]) and the event mapper; cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct PodClaims {
    inner: std::sync::Arc<std::sync::Mutex<ClaimMap>>,
}

impl PodClaims {
    pub fn new() -> Self {
        PodClaims::default()
    }

    fn map(&self) -> std::sync::MutexGuard<'_, ClaimMap> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The claims of pod `namespace/name` (empty when unknown or it mounts none).
    pub fn get(&self, namespace: &str, name: &str) -> Vec<String> {
        self.map()
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
            .unwrap_or_default()
    }

    /// Pods held (only those that mount a claim).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn put(&self, namespace: &str, name: &str, claims: &[String]) {
        let key = (namespace.to_string(), name.to_string());
        if claims.is_empty() {
            self.map().remove(&key);
        } else {
            self.map().insert(key, claims.to_vec());
        }
    }
}

/// Fills a [`PodClaims`] from a pod watch (the collector's watches only `Pending` pods, field
/// selector `status.phase=Pending`: a pod whose claim fails stays Pending, and the API server
/// sends a pod that leaves the selection as deleted). Emits no signals.
#[derive(Clone, Debug)]
pub struct PendingPodClaims {
    pub claims: PodClaims,
}

impl PendingPodClaims {
    pub fn new(claims: PodClaims) -> Self {
        PendingPodClaims { claims }
    }
}

impl Mapper for PendingPodClaims {
    type Object = Pod;
    /// (namespace, name, claims).
    type Snapshot = (String, String, Vec<String>);

    fn key(&self, pod: &Pod) -> String {
        pod_key(pod)
    }

    fn snapshot(&self, pod: &Pod) -> Self::Snapshot {
        (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
            claims_of(pod),
        )
    }

    fn diff(
        &mut self,
        _prev: Option<&Self::Snapshot>,
        new: &Self::Snapshot,
        _: Timestamp,
    ) -> Vec<Signal> {
        self.claims.put(&new.0, &new.1, &new.2);
        Vec::new()
    }

    fn deleted(&mut self, prev: &Self::Snapshot, _: Timestamp) -> Vec<Signal> {
        self.claims.put(&prev.0, &prev.1, &[]);
        Vec::new()
    }
}
