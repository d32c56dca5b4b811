//! EndpointSlices → `daytwo.k8s.service.no_endpoints` when a Service's slices together hold
//! no ready endpoint, and `daytwo.k8s.service.endpoints_restored` when one is ready again.
//!
//! The state spans objects (a Service may have several slices), so this mapper aggregates by
//! the `kubernetes.io/service-name` label, and during a re-list it waits for the list to end
//! before judging (the first of two slices alone may look empty). Id: namespace, Service and
//! the resourceVersions of its slices at the transition, so the same transition re-observed
//! after a restart has the same id.

use super::{Context, Mapper, signal};
use crate::names;
use daytwo_model::{Attributes, EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

#[derive(Clone, Debug, PartialEq)]
pub struct SliceSnap {
    pub key: String,
    pub namespace: String,
    /// `None` for slices that belong to no Service (not judged).
    pub service: Option<String>,
    pub ready: usize,
    pub not_ready: usize,
    pub resource_version: String,
    /// `Pod/NAME` of the endpoints that are not ready.
    pub not_ready_targets: Vec<String>,
    /// The pods behind the slice's endpoints, ready or not (the Service → pod topology).
    pub pods: Vec<Backend>,
}

/// A pod behind a Service, from an endpoint's `targetRef` and `nodeName`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Backend {
    pub name: String,
    pub uid: String,
    pub node: String,
}

type Svc = (String, String);

#[derive(Debug, Default)]
pub struct EndpointSliceMapper {
    pub ctx: Context,
    slices: HashMap<Svc, BTreeMap<String, SliceSnap>>,
    bad: HashSet<Svc>,
    listing: bool,
    dirty: BTreeSet<Svc>,
}

impl EndpointSliceMapper {
    pub fn new(ctx: Context) -> Self {
        EndpointSliceMapper {
            ctx,
            ..Default::default()
        }
    }

    fn judge(&mut self, svc: &Svc, now: Timestamp) -> Vec<Signal> {
        if self.listing {
            self.dirty.insert(svc.clone());
            return Vec::new();
        }
        let Some(slices) = self.slices.get(svc) else {
            self.bad.remove(svc);
            return Vec::new();
        };
        let ready: usize = slices.values().map(|s| s.ready).sum();
        let not_ready: usize = slices.values().map(|s| s.not_ready).sum();
        let was_bad = self.bad.contains(svc);
        let name = match (ready == 0, was_bad) {
            (true, false) => {
                self.bad.insert(svc.clone());
                names::SERVICE_NO_ENDPOINTS
            }
            (false, true) => {
                self.bad.remove(svc);
                names::SERVICE_ENDPOINTS_RESTORED
            }
            _ => return Vec::new(),
        };
        let (ns, service) = svc;
        let rvs: Vec<&str> = slices
            .values()
            .map(|s| s.resource_version.as_str())
            .collect();
        let targets: Vec<&String> = slices.values().flat_map(|s| &s.not_ready_targets).collect();
        let mut pods: Vec<&Backend> = slices.values().flat_map(|s| &s.pods).collect();
        pods.sort();
        pods.dedup();
        let mut a = Attributes::new();
        // The Service → pod edges of the topology, at the time of the transition: the pods by
        // name (for rules), by uid and node (for the collector's topology), in one order.
        a.insert(
            names::ENDPOINT_PODS.into(),
            serde_json::json!(pods.iter().map(|p| &p.name).collect::<Vec<_>>()),
        );
        a.insert(
            names::ENDPOINT_POD_UIDS.into(),
            serde_json::json!(pods.iter().map(|p| &p.uid).collect::<Vec<_>>()),
        );
        a.insert(
            names::ENDPOINT_NODES.into(),
            serde_json::json!(pods.iter().map(|p| &p.node).collect::<Vec<_>>()),
        );
        a.insert(names::READY_ENDPOINTS.into(), (ready as i64).into());
        a.insert(names::NOT_READY_ENDPOINTS.into(), (not_ready as i64).into());
        a.insert(
            "daytwo.k8s.endpoints.not_ready_targets".into(),
            serde_json::json!(targets),
        );
        let mut resource = self.ctx.resource();
        resource.insert(names::NAMESPACE.into(), ns.clone().into());
        let message = if name == names::SERVICE_NO_ENDPOINTS {
            format!(
                "Service {ns}/{service} has no ready endpoint ({not_ready} not ready){}",
                if targets.is_empty() {
                    String::from(": no pod matches its selector or none is ready.")
                } else {
                    format!(
                        ": {}.",
                        targets
                            .iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
            )
        } else {
            format!("Service {ns}/{service} has {ready} ready endpoints again.")
        };
        let severity = if name == names::SERVICE_NO_ENDPOINTS {
            Severity::Warning
        } else {
            Severity::Info
        };
        vec![signal(
            name,
            &[ns, service, &rvs.join(",")],
            now,
            severity,
            self.ctx
                .object_entity(EntityKind::Service, ns, names::SERVICE, service),
            resource,
            a,
            message,
        )]
    }

    fn forget(&mut self, s: &SliceSnap) -> Option<Svc> {
        let svc = (s.namespace.clone(), s.service.clone()?);
        if let Some(m) = self.slices.get_mut(&svc) {
            m.remove(&s.key);
            if m.is_empty() {
                self.slices.remove(&svc);
            }
        }
        Some(svc)
    }
}

impl Mapper for EndpointSliceMapper {
    type Object = EndpointSlice;
    type Snapshot = SliceSnap;

    fn key(&self, s: &EndpointSlice) -> String {
        s.metadata.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                s.metadata.namespace.as_deref().unwrap_or(""),
                s.metadata.name.as_deref().unwrap_or("")
            )
        })
    }

    fn snapshot(&self, s: &EndpointSlice) -> SliceSnap {
        let mut ready = 0;
        let mut not_ready = 0;
        let mut not_ready_targets = Vec::new();
        let mut pods = Vec::new();
        for e in &s.endpoints {
            if let Some(t) = &e.target_ref
                && t.kind.as_deref() == Some("Pod")
                && let Some(name) = &t.name
            {
                pods.push(Backend {
                    name: name.clone(),
                    uid: t.uid.clone().unwrap_or_default(),
                    node: e.node_name.clone().unwrap_or_default(),
                });
            }
            // A missing `ready` means unknown, which consumers must treat as ready.
            let r = e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true);
            if r {
                ready += 1;
            } else {
                not_ready += 1;
                if let Some(t) = &e.target_ref {
                    not_ready_targets.push(format!(
                        "{}/{}",
                        t.kind.as_deref().unwrap_or("?"),
                        t.name.as_deref().unwrap_or("?")
                    ));
                }
            }
        }
        SliceSnap {
            key: self.key(s),
            namespace: s.metadata.namespace.clone().unwrap_or_default(),
            service: s
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(SERVICE_NAME_LABEL).cloned()),
            ready,
            not_ready,
            resource_version: s.metadata.resource_version.clone().unwrap_or_default(),
            not_ready_targets,
            pods,
        }
    }

    fn diff(&mut self, prev: Option<&SliceSnap>, new: &SliceSnap, now: Timestamp) -> Vec<Signal> {
        let mut out = Vec::new();
        if let Some(p) = prev
            && p.service != new.service
            && let Some(old) = self.forget(p)
        {
            out.extend(self.judge(&old, now));
        }
        let Some(service) = &new.service else {
            return out;
        };
        let svc = (new.namespace.clone(), service.clone());
        self.slices
            .entry(svc.clone())
            .or_default()
            .insert(new.key.clone(), new.clone());
        out.extend(self.judge(&svc, now));
        out
    }

    fn deleted(&mut self, prev: &SliceSnap, now: Timestamp) -> Vec<Signal> {
        match self.forget(prev) {
            Some(svc) => self.judge(&svc, now),
            None => Vec::new(),
        }
    }

    fn begin_init(&mut self) {
        self.listing = true;
    }

    fn end_init(&mut self, now: Timestamp) -> Vec<Signal> {
        self.listing = false;
        let dirty = std::mem::take(&mut self.dirty);
        dirty.iter().flat_map(|svc| self.judge(svc, now)).collect()
    }
}
