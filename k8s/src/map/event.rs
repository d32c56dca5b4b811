//! Warning Events (core/v1) → the signal that names the same failure as the object mappers
//! (a `BackOff` of a pod's container is a `daytwo.k8s.container.waiting` with reason
//! `CrashLoopBackOff`), or `daytwo.k8s.event` for any other Warning.
//!
//! Each event object is reported once, when first seen (recent enough, see
//! [`Context::max_age`]); its later updates (`count` going up) are not new signals: the object
//! mappers report the ongoing state. Id: the event's uid. Normal events are ignored.

use super::{Context, Mapper, signal, ts};
use crate::names;
use daytwo_model::{Attributes, Entity, EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::core::v1::Event;

#[derive(Clone, Debug, PartialEq)]
pub struct EventSnap {
    pub uid: String,
    pub warning: bool,
    pub reason: String,
    pub message: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub object_uid: String,
    pub field_path: String,
    pub time: Option<Timestamp>,
    pub count: i32,
    pub source_host: Option<String>,
    pub source: String,
}

#[derive(Clone, Debug)]
pub struct EventMapper {
    pub ctx: Context,
    /// The claims of pending pods, when known: a Pod event's resource then carries its pod's
    /// `daytwo.k8s.pod.claims` (see [`super::pod::PodClaims`]).
    pub claims: Option<super::pod::PodClaims>,
}

impl EventMapper {
    pub fn new(ctx: Context) -> Self {
        EventMapper { ctx, claims: None }
    }

    /// An event mapper that adds the claims `claims` knows to its Pod events' resource.
    pub fn with_claims(ctx: Context, claims: super::pod::PodClaims) -> Self {
        EventMapper {
            ctx,
            claims: Some(claims),
        }
    }
}

/// The container a pod event is about: `spec.containers{app}` → `app`.
pub fn container_of(field_path: &str) -> Option<&str> {
    let start = field_path.find('{')? + 1;
    let end = field_path[start..].find('}')? + start;
    Some(&field_path[start..end]).filter(|s| !s.is_empty())
}

/// What a Warning event means: (event name, waiting reason or probe when it has one).
pub fn classify(kind: &str, reason: &str, message: &str) -> (&'static str, Option<&'static str>) {
    match (kind, reason) {
        ("Pod", "BackOff") if message.contains("pulling image") => {
            (names::CONTAINER_WAITING, Some("ImagePullBackOff"))
        }
        ("Pod", "BackOff") => (names::CONTAINER_WAITING, Some("CrashLoopBackOff")),
        ("Pod", "Failed") => {
            let waiting = if message.contains("ImagePullBackOff") {
                "ImagePullBackOff"
            } else if message.contains("ErrImagePull")
                || message.starts_with("Failed to pull image")
            {
                "ErrImagePull"
            } else if message.contains("InvalidImageName") {
                "InvalidImageName"
            } else if message.contains("ErrImageNeverPull") {
                "ErrImageNeverPull"
            } else if message.contains("not found")
                || message.contains("couldn't find key")
                || message.contains("CreateContainerConfigError")
            {
                "CreateContainerConfigError"
            } else {
                "CreateContainerError"
            };
            (names::CONTAINER_WAITING, Some(waiting))
        }
        ("Pod", "InspectFailed") => (names::CONTAINER_WAITING, Some("ImageInspectError")),
        ("Pod", "ErrImageNeverPull") => (names::CONTAINER_WAITING, Some("ErrImageNeverPull")),
        ("Pod", "Unhealthy") => {
            let probe = if message.starts_with("Liveness") {
                "liveness"
            } else if message.starts_with("Startup") {
                "startup"
            } else {
                "readiness"
            };
            (names::CONTAINER_PROBE_FAILED, Some(probe))
        }
        ("Pod", "FailedScheduling") => (names::POD_UNSCHEDULABLE, None),
        ("Pod", "Evicted") | ("Pod", "Preempted") => (names::POD_EVICTED, None),
        ("Pod", "FailedMount") | ("Pod", "FailedAttachVolume") | ("Pod", "FailedMapVolume") => {
            (names::POD_VOLUME_FAILED, None)
        }
        ("Pod", "FailedCreatePodSandBox") | ("Pod", "FailedKillPod") => {
            (names::POD_SANDBOX_FAILED, None)
        }
        ("PersistentVolumeClaim", "ProvisioningFailed")
        | ("PersistentVolumeClaim", "FailedBinding")
        | ("PersistentVolumeClaim", "ExternalExpanding")
        | ("PersistentVolumeClaim", "VolumeResizeFailed") => (names::VOLUME_CLAIM_FAILED, None),
        ("HorizontalPodAutoscaler", _) => (names::HPA_UNABLE_TO_SCALE, None),
        ("Job", "BackoffLimitExceeded")
        | ("Job", "DeadlineExceeded")
        | ("Job", "PodFailurePolicy") => (names::JOB_FAILED, None),
        (
            "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "ReplicationController",
            "FailedCreate",
        ) => (names::REPLICA_FAILURE, None),
        ("Deployment", "ProgressDeadlineExceeded") => (names::ROLLOUT_STUCK, None),
        _ => (names::WARNING_EVENT, None),
    }
}

impl Mapper for EventMapper {
    type Object = Event;
    type Snapshot = EventSnap;

    fn key(&self, e: &Event) -> String {
        e.metadata.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                e.metadata.namespace.as_deref().unwrap_or(""),
                e.metadata.name.as_deref().unwrap_or("")
            )
        })
    }

    fn snapshot(&self, e: &Event) -> EventSnap {
        let o = &e.involved_object;
        let time = e
            .series
            .as_ref()
            .and_then(|s| s.last_observed_time.as_ref())
            .map(|t| ts(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.0)))
            .or_else(|| e.last_timestamp.as_ref().map(ts))
            .or_else(|| {
                e.event_time
                    .as_ref()
                    .map(|t| ts(&k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t.0)))
            })
            .or_else(|| e.first_timestamp.as_ref().map(ts))
            .or_else(|| e.metadata.creation_timestamp.as_ref().map(ts));
        EventSnap {
            uid: self.key(e),
            warning: e.type_.as_deref() == Some("Warning"),
            reason: e.reason.clone().unwrap_or_default(),
            message: e.message.clone().unwrap_or_default(),
            kind: o.kind.clone().unwrap_or_default(),
            namespace: o
                .namespace
                .clone()
                .or_else(|| e.metadata.namespace.clone())
                .unwrap_or_default(),
            name: o.name.clone().unwrap_or_default(),
            object_uid: o.uid.clone().unwrap_or_default(),
            field_path: o.field_path.clone().unwrap_or_default(),
            time,
            count: e
                .series
                .as_ref()
                .and_then(|s| s.count)
                .or(e.count)
                .unwrap_or(1),
            source_host: e.source.as_ref().and_then(|s| s.host.clone()),
            source: e
                .reporting_component
                .clone()
                .filter(|s| !s.is_empty())
                .or_else(|| e.source.as_ref().and_then(|s| s.component.clone()))
                .unwrap_or_default(),
        }
    }

    fn diff(&mut self, prev: Option<&EventSnap>, e: &EventSnap, now: Timestamp) -> Vec<Signal> {
        if prev.is_some() || !e.warning {
            return Vec::new();
        }
        let at = e.time.unwrap_or(now);
        if !self.ctx.is_recent(at, now) {
            return Vec::new();
        }
        let ctx = &self.ctx;
        let (name, detail) = classify(&e.kind, &e.reason, &e.message);
        let container = container_of(&e.field_path);
        let mut a = Attributes::new();
        a.insert(names::REASON.into(), e.reason.clone().into());
        a.insert(names::MESSAGE.into(), e.message.clone().into());
        a.insert(names::OBJECT_KIND.into(), e.kind.clone().into());
        a.insert(names::OBJECT_NAME.into(), e.name.clone().into());
        a.insert(names::EVENT_COUNT.into(), e.count.into());
        a.insert(names::SOURCE.into(), format!("event/{}", e.source).into());
        if name == names::CONTAINER_WAITING {
            a.insert(
                names::WAITING_REASON.into(),
                detail.unwrap_or_default().into(),
            );
        }
        if name == names::CONTAINER_PROBE_FAILED {
            a.insert(names::PROBE.into(), detail.unwrap_or_default().into());
        }
        let mut resource = ctx.resource();
        if let Some(h) = &e.source_host {
            resource.insert(names::NODE.into(), h.clone().into());
        }
        let entity: Entity = match e.kind.as_str() {
            "Pod" => {
                resource.insert(names::NAMESPACE.into(), e.namespace.clone().into());
                resource.insert(names::POD_NAME.into(), e.name.clone().into());
                if !e.object_uid.is_empty() {
                    resource.insert(names::POD_UID.into(), e.object_uid.clone().into());
                }
                let claims = self
                    .claims
                    .as_ref()
                    .map(|c| c.get(&e.namespace, &e.name))
                    .unwrap_or_default();
                if !claims.is_empty() {
                    resource.insert(names::POD_CLAIMS.into(), claims.into());
                }
                match container {
                    Some(c) => ctx.container_entity(&e.namespace, &e.name, &e.object_uid, c),
                    None => ctx.pod_entity(&e.namespace, &e.name, &e.object_uid),
                }
            }
            "Node" => ctx.node_entity(&e.name),
            "Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet" | "Job" | "CronJob" => {
                ctx.workload_entity(&e.namespace, &e.kind, &e.name)
            }
            "HorizontalPodAutoscaler" => {
                ctx.object_entity(EntityKind::Workload, &e.namespace, names::HPA, &e.name)
            }
            "PersistentVolumeClaim" => {
                ctx.object_entity(EntityKind::Volume, &e.namespace, names::PVC, &e.name)
            }
            "Service" => {
                ctx.object_entity(EntityKind::Service, &e.namespace, names::SERVICE, &e.name)
            }
            _ => {
                let mut ent = Entity::new(
                    EntityKind::Cluster,
                    format!("{}/{}/{}", e.kind, e.namespace, e.name),
                );
                if let Some(c) = &ctx.cluster {
                    ent.attributes
                        .insert(names::CLUSTER.into(), c.clone().into());
                }
                ent.attributes
                    .insert(names::OBJECT_KIND.into(), e.kind.clone().into());
                ent.attributes.insert(
                    names::OBJECT_NAME.into(),
                    format!("{}/{}", e.namespace, e.name).into(),
                );
                ent
            }
        };
        let severity = match name {
            names::WARNING_EVENT => Severity::Info,
            names::JOB_FAILED => Severity::Critical,
            _ => Severity::Warning,
        };
        let object = match container {
            Some(c) => format!("{} {}/{} container {c}", e.kind, e.namespace, e.name),
            None if e.namespace.is_empty() => format!("{} {}", e.kind, e.name),
            None => format!("{} {}/{}", e.kind, e.namespace, e.name),
        };
        vec![signal(
            name,
            &[&e.uid],
            at,
            severity,
            entity,
            resource,
            a,
            format!("{object}: {} ({}): {}", e.reason, e.count, e.message),
        )]
    }
}
