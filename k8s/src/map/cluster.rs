//! Findings about the state of objects, across objects: k8sgpt's configuration analyzers
//! (Ingress, NetworkPolicy, PodDisruptionBudget, CronJob, StatefulSet) and its Deployment
//! analyzer (replicas not ready), as live signals instead of a periodic report.
//!
//! Two halves:
//!
//! * [`ClusterIndex`]: what the analyzers need to know about the cluster, shared by the
//!   collector's watches. [`Indexing`] wraps a watch's mapper (or [`Quiet`], a mapper with no
//!   signals of its own) and records each object's [`Entry`] in the index; a kind counts as
//!   *listed* once its first list completed, and a finding that needs a kind ("the Service an
//!   Ingress names does not exist") is only judged once that kind is listed (a watch the
//!   service account may not list never judges: no false "not found").
//! * [`Analyzer`]: evaluated on a timer ([`Analyzer::tick`]), it computes the current set of
//!   findings from the index and emits `daytwo.k8s.misconfiguration` (or
//!   `daytwo.k8s.workload.replicas_not_ready`) once when a finding appears and
//!   `…_cleared` (`daytwo.k8s.workload.replicas_ready`) once when it goes away, never per
//!   re-list or tick.
//!
//! Ids: a finding's id is `(object uid, finding code, detail, object generation)`; a cleared
//! signal's adds the generation at clearing (or `deleted`). The same finding re-derived after a
//! restart has the same id (the collector dedupes it). Replicas not ready: `(uid, generation,
//! Available condition's transition time)`, judged after a grace period from the earlier of
//! that transition (when Available is False) and the first observation, so a normal rollout
//! does not fire.
//!
//! Pure: no I/O, no clock (the caller passes `now`).

use super::{Context, Mapper, rfc3339, signal};
use crate::names;
use daytwo_model::{Attributes, Entity, EntityKind, Severity, Signal, Timestamp};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Secret, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressClass, NetworkPolicy};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::api::storage::v1::StorageClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The kinds the index keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Service,
    Secret,
    IngressClass,
    StorageClass,
    Ingress,
    NetworkPolicy,
    PodDisruptionBudget,
    CronJob,
    StatefulSet,
    Deployment,
    DaemonSet,
    Job,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::Secret => "Secret",
            Kind::IngressClass => "IngressClass",
            Kind::StorageClass => "StorageClass",
            Kind::Ingress => "Ingress",
            Kind::NetworkPolicy => "NetworkPolicy",
            Kind::PodDisruptionBudget => "PodDisruptionBudget",
            Kind::CronJob => "CronJob",
            Kind::StatefulSet => "StatefulSet",
            Kind::Deployment => "Deployment",
            Kind::DaemonSet => "DaemonSet",
            Kind::Job => "Job",
        }
    }
}

/// An object's identity as the analyzers report it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Meta {
    pub uid: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
    pub generation: i64,
}

impl Meta {
    fn of(m: &ObjectMeta) -> Meta {
        Meta {
            uid: m.uid.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            name: m.name.clone().unwrap_or_default(),
            generation: m.generation.unwrap_or(0),
        }
    }

    fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A label selector, as far as matching pod template labels goes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector {
    pub match_labels: BTreeMap<String, String>,
    /// (key, operator, values).
    pub expressions: Vec<(String, String, Vec<String>)>,
}

impl Selector {
    fn of(s: &LabelSelector) -> Selector {
        Selector {
            match_labels: s.match_labels.clone().unwrap_or_default(),
            expressions: s
                .match_expressions
                .iter()
                .flatten()
                .map(|e| {
                    (
                        e.key.clone(),
                        e.operator.clone(),
                        e.values.clone().unwrap_or_default(),
                    )
                })
                .collect(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.expressions.is_empty()
    }

    /// Whether `labels` satisfy the selector (the API's semantics: every term must hold; an
    /// empty selector selects everything; an unknown operator selects nothing).
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.expressions.iter().all(|(k, op, vals)| {
                let v = labels.get(k);
                match op.as_str() {
                    "In" => v.is_some_and(|v| vals.contains(v)),
                    "NotIn" => v.is_none_or(|v| !vals.contains(v)),
                    "Exists" => v.is_some(),
                    "DoesNotExist" => v.is_none(),
                    _ => false,
                }
            })
    }

    fn describe(&self) -> String {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for (k, op, vals) in &self.expressions {
            parts.push(format!("{k} {op} ({})", vals.join(",")));
        }
        parts.join(", ")
    }
}

/// What the index keeps of one object.
#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    Service,
    Secret,
    IngressClass {
        default: bool,
    },
    StorageClass {
        default: bool,
    },
    Ingress {
        /// `spec.ingressClassName`, else the `kubernetes.io/ingress.class` annotation.
        class: Option<String>,
        /// Backend Service names (default backend and every path), in order, once each.
        services: Vec<String>,
        /// `spec.tls[].secretName`, once each.
        tls_secrets: Vec<String>,
    },
    NetworkPolicy {
        pod_selector: Selector,
        /// An ingress rule with no `from` and no `ports` (every source, every port).
        ingress_allows_all: bool,
        /// An egress rule with no `to` and no `ports`, with Egress among the policy types.
        egress_allows_all: bool,
    },
    PodDisruptionBudget {
        /// `status.observedGeneration` is set: the controller has computed the status.
        observed: bool,
        disruptions_allowed: i32,
        current_healthy: i32,
        desired_healthy: i32,
        expected_pods: i32,
    },
    CronJob {
        schedule: String,
        suspend: bool,
        starting_deadline_seconds: Option<i64>,
        template_labels: BTreeMap<String, String>,
    },
    StatefulSet {
        service_name: String,
        /// `storageClassName` of each volumeClaimTemplate that names one: (template, class).
        storage_classes: Vec<(String, String)>,
        template_labels: BTreeMap<String, String>,
    },
    Deployment {
        replicas: i32,
        ready_replicas: i32,
        paused: bool,
        /// The `Available` condition: (status, reason, lastTransitionTime).
        available: Option<(String, String, String)>,
        available_since: Option<Timestamp>,
        template_labels: BTreeMap<String, String>,
    },
    DaemonSet {
        template_labels: BTreeMap<String, String>,
    },
    Job {
        template_labels: BTreeMap<String, String>,
    },
}

/// One indexed object.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub meta: Meta,
    pub obj: Obj,
}

#[derive(Debug, Default)]
struct State {
    objects: HashMap<Kind, BTreeMap<String, Entry>>,
    listed: HashSet<Kind>,
}

/// The objects the analyzers read, shared by the watches that fill it (cheap to clone).
#[derive(Clone, Debug, Default)]
pub struct ClusterIndex(Arc<Mutex<State>>);

impl ClusterIndex {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn put(&self, kind: Kind, e: Entry) {
        self.lock()
            .objects
            .entry(kind)
            .or_default()
            .insert(e.meta.key(), e);
    }

    pub fn remove(&self, kind: Kind, meta: &Meta) {
        if let Some(m) = self.lock().objects.get_mut(&kind) {
            m.remove(&meta.key());
        }
    }

    /// The first list of `kind` completed: absence from the index now means absence.
    pub fn set_listed(&self, kind: Kind) {
        self.lock().listed.insert(kind);
    }

    pub fn is_listed(&self, kind: Kind) -> bool {
        self.lock().listed.contains(&kind)
    }

    /// How many objects of `kind` are indexed.
    pub fn len(&self, kind: Kind) -> usize {
        self.lock().objects.get(&kind).map_or(0, |m| m.len())
    }
}

/// A Kubernetes type the index can keep.
pub trait Indexable {
    const KIND: Kind;
    fn entry(&self) -> Entry;
}

fn labels_of(t: Option<&ObjectMeta>) -> BTreeMap<String, String> {
    t.and_then(|m| m.labels.clone()).unwrap_or_default()
}

impl Indexable for Service {
    const KIND: Kind = Kind::Service;
    fn entry(&self) -> Entry {
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::Service,
        }
    }
}

impl Indexable for Secret {
    const KIND: Kind = Kind::Secret;
    fn entry(&self) -> Entry {
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::Secret,
        }
    }
}

const DEFAULT_INGRESS_CLASS: &str = "ingressclass.kubernetes.io/is-default-class";
const DEFAULT_STORAGE_CLASS: &str = "storageclass.kubernetes.io/is-default-class";

fn annotated_true(m: &ObjectMeta, key: &str) -> bool {
    m.annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .is_some_and(|v| v == "true")
}

impl Indexable for IngressClass {
    const KIND: Kind = Kind::IngressClass;
    fn entry(&self) -> Entry {
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::IngressClass {
                default: annotated_true(&self.metadata, DEFAULT_INGRESS_CLASS),
            },
        }
    }
}

impl Indexable for StorageClass {
    const KIND: Kind = Kind::StorageClass;
    fn entry(&self) -> Entry {
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::StorageClass {
                default: annotated_true(&self.metadata, DEFAULT_STORAGE_CLASS),
            },
        }
    }
}

fn push_once(v: &mut Vec<String>, s: &str) {
    if !s.is_empty() && !v.iter().any(|x| x == s) {
        v.push(s.to_string());
    }
}

impl Indexable for Ingress {
    const KIND: Kind = Kind::Ingress;
    fn entry(&self) -> Entry {
        let spec = self.spec.as_ref();
        let class = spec
            .and_then(|s| s.ingress_class_name.clone())
            .or_else(|| {
                self.metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get("kubernetes.io/ingress.class").cloned())
            })
            .filter(|c| !c.is_empty());
        let mut services = Vec::new();
        if let Some(svc) = spec
            .and_then(|s| s.default_backend.as_ref())
            .and_then(|b| b.service.as_ref())
        {
            push_once(&mut services, &svc.name);
        }
        for rule in spec.and_then(|s| s.rules.as_ref()).into_iter().flatten() {
            for path in rule.http.iter().flat_map(|h| &h.paths) {
                if let Some(svc) = &path.backend.service {
                    push_once(&mut services, &svc.name);
                }
            }
        }
        let mut tls_secrets = Vec::new();
        for t in spec.and_then(|s| s.tls.as_ref()).into_iter().flatten() {
            if let Some(n) = &t.secret_name {
                push_once(&mut tls_secrets, n);
            }
        }
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::Ingress {
                class,
                services,
                tls_secrets,
            },
        }
    }
}

impl Indexable for NetworkPolicy {
    const KIND: Kind = Kind::NetworkPolicy;
    fn entry(&self) -> Entry {
        let spec = self.spec.as_ref();
        let types: Vec<String> = spec
            .and_then(|s| s.policy_types.clone())
            .unwrap_or_default();
        let ingress_allows_all = spec.and_then(|s| s.ingress.as_ref()).is_some_and(|rules| {
            rules.iter().any(|r| {
                r.from.as_ref().is_none_or(|f| f.is_empty())
                    && r.ports.as_ref().is_none_or(|p| p.is_empty())
            })
        });
        let egress_allows_all = types.iter().any(|t| t == "Egress")
            && spec.and_then(|s| s.egress.as_ref()).is_some_and(|rules| {
                rules.iter().any(|r| {
                    r.to.as_ref().is_none_or(|f| f.is_empty())
                        && r.ports.as_ref().is_none_or(|p| p.is_empty())
                })
            });
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::NetworkPolicy {
                pod_selector: spec
                    .and_then(|s| s.pod_selector.as_ref())
                    .map(Selector::of)
                    .unwrap_or_default(),
                ingress_allows_all,
                egress_allows_all,
            },
        }
    }
}

impl Indexable for PodDisruptionBudget {
    const KIND: Kind = Kind::PodDisruptionBudget;
    fn entry(&self) -> Entry {
        let st = self.status.as_ref();
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::PodDisruptionBudget {
                observed: st.and_then(|s| s.observed_generation).is_some(),
                disruptions_allowed: st.map_or(0, |s| s.disruptions_allowed),
                current_healthy: st.map_or(0, |s| s.current_healthy),
                desired_healthy: st.map_or(0, |s| s.desired_healthy),
                expected_pods: st.map_or(0, |s| s.expected_pods),
            },
        }
    }
}

impl Indexable for CronJob {
    const KIND: Kind = Kind::CronJob;
    fn entry(&self) -> Entry {
        let spec = self.spec.as_ref();
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::CronJob {
                schedule: spec.map(|s| s.schedule.clone()).unwrap_or_default(),
                suspend: spec.and_then(|s| s.suspend).unwrap_or(false),
                starting_deadline_seconds: spec.and_then(|s| s.starting_deadline_seconds),
                template_labels: labels_of(
                    spec.and_then(|s| s.job_template.spec.as_ref())
                        .and_then(|j| j.template.metadata.as_ref()),
                ),
            },
        }
    }
}

impl Indexable for StatefulSet {
    const KIND: Kind = Kind::StatefulSet;
    fn entry(&self) -> Entry {
        let spec = self.spec.as_ref();
        let storage_classes = spec
            .and_then(|s| s.volume_claim_templates.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|t| {
                let class = t.spec.as_ref()?.storage_class_name.clone()?;
                (!class.is_empty()).then(|| (t.metadata.name.clone().unwrap_or_default(), class))
            })
            .collect();
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::StatefulSet {
                service_name: spec
                    .and_then(|s| s.service_name.clone())
                    .unwrap_or_default(),
                storage_classes,
                template_labels: labels_of(spec.and_then(|s| s.template.metadata.as_ref())),
            },
        }
    }
}

impl Indexable for Deployment {
    const KIND: Kind = Kind::Deployment;
    fn entry(&self) -> Entry {
        let spec = self.spec.as_ref();
        let st = self.status.as_ref();
        let available = st
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Available"));
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::Deployment {
                replicas: spec.and_then(|s| s.replicas).unwrap_or(1),
                ready_replicas: st.and_then(|s| s.ready_replicas).unwrap_or(0),
                paused: spec.and_then(|s| s.paused).unwrap_or(false),
                available: available.map(|c| {
                    (
                        c.status.clone(),
                        c.reason.clone().unwrap_or_default(),
                        c.last_transition_time
                            .as_ref()
                            .map(rfc3339)
                            .unwrap_or_default(),
                    )
                }),
                available_since: available
                    .and_then(|c| c.last_transition_time.as_ref())
                    .map(super::ts),
                template_labels: labels_of(spec.and_then(|s| s.template.metadata.as_ref())),
            },
        }
    }
}

impl Indexable for DaemonSet {
    const KIND: Kind = Kind::DaemonSet;
    fn entry(&self) -> Entry {
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::DaemonSet {
                template_labels: labels_of(
                    self.spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref()),
                ),
            },
        }
    }
}

impl Indexable for Job {
    const KIND: Kind = Kind::Job;
    fn entry(&self) -> Entry {
        Entry {
            meta: Meta::of(&self.metadata),
            obj: Obj::Job {
                template_labels: labels_of(
                    self.spec
                        .as_ref()
                        .and_then(|s| s.template.metadata.as_ref()),
                ),
            },
        }
    }
}

/// Wraps a watch's mapper so that every object it sees is also recorded in a
/// [`ClusterIndex`]; the wrapped mapper's signals pass through unchanged.
pub struct Indexing<M> {
    pub inner: M,
    index: ClusterIndex,
}

impl<M> Indexing<M> {
    pub fn new(inner: M, index: ClusterIndex) -> Self {
        Indexing { inner, index }
    }
}

impl<M> Mapper for Indexing<M>
where
    M: Mapper,
    M::Object: Indexable,
{
    type Object = M::Object;
    type Snapshot = (M::Snapshot, Entry);

    fn key(&self, o: &M::Object) -> String {
        self.inner.key(o)
    }

    fn snapshot(&self, o: &M::Object) -> Self::Snapshot {
        (self.inner.snapshot(o), o.entry())
    }

    fn diff(
        &mut self,
        prev: Option<&Self::Snapshot>,
        new: &Self::Snapshot,
        now: Timestamp,
    ) -> Vec<Signal> {
        self.index.put(M::Object::KIND, new.1.clone());
        self.inner.diff(prev.map(|p| &p.0), &new.0, now)
    }

    fn deleted(&mut self, prev: &Self::Snapshot, now: Timestamp) -> Vec<Signal> {
        self.index.remove(M::Object::KIND, &prev.1.meta);
        self.inner.deleted(&prev.0, now)
    }

    fn begin_init(&mut self) {
        self.inner.begin_init();
    }

    fn end_init(&mut self, now: Timestamp) -> Vec<Signal> {
        self.index.set_listed(M::Object::KIND);
        self.inner.end_init(now)
    }
}

/// A mapper with no signals of its own, for kinds watched only for the index.
pub struct Quiet<T>(PhantomData<fn() -> T>);

impl<T> Default for Quiet<T> {
    fn default() -> Self {
        Quiet(PhantomData)
    }
}

impl<T: k8s_openapi::Metadata<Ty = ObjectMeta>> Mapper for Quiet<T> {
    type Object = T;
    type Snapshot = ();

    fn key(&self, o: &T) -> String {
        let m = o.metadata();
        m.uid.clone().unwrap_or_else(|| {
            format!(
                "{}/{}",
                m.namespace.as_deref().unwrap_or(""),
                m.name.as_deref().unwrap_or("")
            )
        })
    }

    fn snapshot(&self, _: &T) {}

    fn diff(&mut self, _: Option<&()>, _: &(), _: Timestamp) -> Vec<Signal> {
        Vec::new()
    }
}

/// An index-only watch: `Indexing<Quiet<T>>`.
pub fn index_only<T>(index: &ClusterIndex) -> Indexing<Quiet<T>> {
    Indexing::new(Quiet::default(), index.clone())
}

/// One finding about one object.
#[derive(Clone, Debug, PartialEq)]
pub struct Finding {
    pub kind: Kind,
    pub meta: Meta,
    /// `ingress.backend_service_not_found`, … (docs/signals.md, "Kubernetes").
    pub code: &'static str,
    /// What the finding is about within the object (the missing Service's name, …); empty
    /// when the code says it all.
    pub detail: String,
    pub message: String,
    pub severity: Severity,
    /// Extra attributes (replica counts, the selector, …).
    pub attributes: Attributes,
    /// Part of the id beyond (uid, code, detail, generation): the episode.
    pub episode: String,
}

impl Finding {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.kind.as_str(),
            self.meta.key(),
            self.code,
            self.detail
        )
    }

    fn replicas(&self) -> bool {
        self.code == REPLICAS_NOT_READY
    }
}

pub const REPLICAS_NOT_READY: &str = "deployment.replicas_not_ready";

/// The analyzers' settings.
#[derive(Clone, Copy, Debug)]
pub struct AnalyzerConfig {
    /// How long a Deployment may have fewer ready replicas than it wants before it is a
    /// finding (a normal rollout or scale-up stays under it). Default 5 minutes.
    pub replicas_grace: Duration,
}

impl Default for AnalyzerConfig {
    fn default() -> Self {
        AnalyzerConfig {
            replicas_grace: Duration::from_secs(300),
        }
    }
}

/// Turns the index's current findings into appear/clear signals.
pub struct Analyzer {
    pub ctx: Context,
    index: ClusterIndex,
    config: AnalyzerConfig,
    active: BTreeMap<String, Finding>,
    /// Deployment key → when it was first seen short of ready replicas (this episode).
    short_since: HashMap<String, Timestamp>,
}

impl Analyzer {
    pub fn new(ctx: Context, index: ClusterIndex, config: AnalyzerConfig) -> Self {
        Analyzer {
            ctx,
            index,
            config,
            active: BTreeMap::new(),
            short_since: HashMap::new(),
        }
    }

    /// Findings active now.
    pub fn active(&self) -> impl Iterator<Item = &Finding> {
        self.active.values()
    }

    /// Evaluates every analyzer at `now`: signals for findings that appeared and cleared.
    pub fn tick(&mut self, now: Timestamp) -> Vec<Signal> {
        let current: BTreeMap<String, Finding> = {
            let index = self.index.clone();
            let st = index.lock();
            let mut v = analyze(&st);
            v.extend(self.replicas(&st, now));
            v.into_iter().map(|f| (f.key(), f)).collect()
        };
        let mut out = Vec::new();
        let gone: Vec<String> = self
            .active
            .keys()
            .filter(|k| !current.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            if let Some(f) = self.active.remove(&k) {
                let now_gen = {
                    let st = self.index.lock();
                    st.objects
                        .get(&f.kind)
                        .and_then(|m| m.get(&f.meta.key()))
                        .map(|e| e.meta.generation.to_string())
                        .unwrap_or_else(|| "deleted".into())
                };
                out.push(self.cleared(&f, &now_gen, now));
            }
        }
        for (k, f) in current {
            if !self.active.contains_key(&k) {
                out.push(self.found(&f, now));
                self.active.insert(k, f);
            }
        }
        out
    }

    fn entity(&self, f: &Finding) -> Entity {
        let (ns, name) = (&f.meta.namespace, &f.meta.name);
        match f.kind {
            Kind::Deployment | Kind::StatefulSet | Kind::DaemonSet | Kind::CronJob | Kind::Job => {
                self.ctx.workload_entity(ns, f.kind.as_str(), name)
            }
            Kind::Ingress => self
                .ctx
                .object_entity(EntityKind::Service, ns, names::INGRESS, name),
            Kind::NetworkPolicy => {
                self.ctx
                    .object_entity(EntityKind::Workload, ns, names::NETWORK_POLICY, name)
            }
            Kind::PodDisruptionBudget => {
                self.ctx
                    .object_entity(EntityKind::Workload, ns, names::PDB, name)
            }
            Kind::Service => self
                .ctx
                .object_entity(EntityKind::Service, ns, names::SERVICE, name),
            Kind::Secret | Kind::IngressClass | Kind::StorageClass => {
                let mut e =
                    self.ctx
                        .object_entity(EntityKind::Cluster, ns, names::OBJECT_NAME, name);
                e.attributes
                    .insert(names::OBJECT_KIND.into(), f.kind.as_str().into());
                e
            }
        }
    }

    fn attrs(&self, f: &Finding) -> (Attributes, Attributes) {
        let mut a = f.attributes.clone();
        a.insert(names::FINDING.into(), f.code.into());
        if !f.detail.is_empty() {
            a.insert(names::FINDING_DETAIL.into(), f.detail.clone().into());
        }
        a.insert(names::OBJECT_KIND.into(), f.kind.as_str().into());
        a.insert(names::OBJECT_NAME.into(), f.meta.name.clone().into());
        a.insert(names::GENERATION.into(), f.meta.generation.into());
        let mut r = self.ctx.resource();
        if !f.meta.namespace.is_empty() {
            r.insert(names::NAMESPACE.into(), f.meta.namespace.clone().into());
        }
        if let Some(k) = super::owner_key(f.kind.as_str()) {
            r.insert(k.into(), f.meta.name.clone().into());
        }
        (a, r)
    }

    fn id_parts(f: &Finding) -> Vec<String> {
        vec![
            f.meta.uid.clone(),
            f.code.to_string(),
            f.detail.clone(),
            f.meta.generation.to_string(),
            f.episode.clone(),
        ]
    }

    fn found(&self, f: &Finding, now: Timestamp) -> Signal {
        let (a, r) = self.attrs(f);
        let name = if f.replicas() {
            names::REPLICAS_NOT_READY
        } else {
            names::MISCONFIGURATION
        };
        let parts = Self::id_parts(f);
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        signal(
            name,
            &parts,
            now,
            f.severity,
            self.entity(f),
            r,
            a,
            f.message.clone(),
        )
    }

    fn cleared(&self, f: &Finding, now_gen: &str, now: Timestamp) -> Signal {
        let (a, r) = self.attrs(f);
        let name = if f.replicas() {
            names::REPLICAS_READY
        } else {
            names::MISCONFIGURATION_CLEARED
        };
        let mut parts = Self::id_parts(f);
        parts.push(now_gen.to_string());
        let parts: Vec<&str> = parts.iter().map(String::as_str).collect();
        let message = if now_gen == "deleted" {
            format!(
                "{} {} was deleted; no longer: {}",
                f.kind.as_str(),
                f.meta.key(),
                f.message
            )
        } else {
            format!("Resolved: {}", f.message)
        };
        signal(
            name,
            &parts,
            now,
            Severity::Info,
            self.entity(f),
            r,
            a,
            message,
        )
    }

    /// Deployments with fewer ready replicas than wanted for longer than the grace period.
    fn replicas(&mut self, st: &State, now: Timestamp) -> Vec<Finding> {
        let mut out = Vec::new();
        let mut short_now = HashSet::new();
        for e in st
            .objects
            .get(&Kind::Deployment)
            .into_iter()
            .flat_map(|m| m.values())
        {
            let Obj::Deployment {
                replicas,
                ready_replicas,
                paused,
                available,
                available_since,
                ..
            } = &e.obj
            else {
                continue;
            };
            if *paused || *replicas <= 0 || ready_replicas >= replicas {
                continue;
            }
            let key = e.meta.key();
            short_now.insert(key.clone());
            let first = *self.short_since.entry(key).or_insert(now);
            // When the Deployment itself says it has been unavailable for a while (after a
            // restart of ours), that is when the episode began.
            let since = match (available, available_since) {
                (Some((status, _, _)), Some(t)) if status == "False" => first.min(*t),
                _ => first,
            };
            if now.minus(self.config.replicas_grace) < since {
                continue;
            }
            let mut attributes = Attributes::new();
            attributes.insert(names::REPLICAS_DESIRED.into(), (*replicas).into());
            attributes.insert(names::REPLICAS_READY_COUNT.into(), (*ready_replicas).into());
            attributes.insert(names::SINCE.into(), since.to_string().into());
            let mut message = format!(
                "Deployment {} has {ready_replicas} of {replicas} replicas ready since {since}",
                e.meta.key()
            );
            if let Some((status, reason, _)) = available {
                attributes.insert(names::REASON.into(), reason.clone().into());
                message.push_str(&format!(" (Available={status}, {reason})"));
            }
            message.push('.');
            out.push(Finding {
                kind: Kind::Deployment,
                meta: e.meta.clone(),
                code: REPLICAS_NOT_READY,
                detail: String::new(),
                message,
                severity: if *ready_replicas == 0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                attributes,
                episode: available.as_ref().map(|a| a.2.clone()).unwrap_or_default(),
            });
        }
        self.short_since.retain(|k, _| short_now.contains(k));
        out
    }
}

fn finding(
    e: &Entry,
    kind: Kind,
    code: &'static str,
    detail: &str,
    severity: Severity,
    message: String,
) -> Finding {
    Finding {
        kind,
        meta: e.meta.clone(),
        code,
        detail: detail.to_string(),
        message,
        severity,
        attributes: Attributes::new(),
        episode: String::new(),
    }
}

/// Every configuration finding of the cluster as indexed (no time involved).
fn analyze(st: &State) -> Vec<Finding> {
    let listed = |k: Kind| st.listed.contains(&k);
    let of = |k: Kind| st.objects.get(&k).into_iter().flat_map(|m| m.values());
    let exists = |k: Kind, ns: &str, name: &str| {
        st.objects
            .get(&k)
            .is_some_and(|m| m.contains_key(&format!("{ns}/{name}")))
    };
    let mut out = Vec::new();

    // Ingress: its class, its backend Services, its TLS Secrets.
    let default_class =
        of(Kind::IngressClass).any(|e| matches!(e.obj, Obj::IngressClass { default: true }));
    for e in of(Kind::Ingress) {
        let Obj::Ingress {
            class,
            services,
            tls_secrets,
        } = &e.obj
        else {
            continue;
        };
        let ns = &e.meta.namespace;
        let who = format!("Ingress {}", e.meta.key());
        if listed(Kind::IngressClass) {
            match class {
                Some(c) if !exists(Kind::IngressClass, "", c) => out.push(finding(
                    e,
                    Kind::Ingress,
                    "ingress.class_not_found",
                    c,
                    Severity::Warning,
                    format!("{who} uses the IngressClass {c}, which does not exist: no controller serves it."),
                )),
                None if !default_class => out.push(finding(
                    e,
                    Kind::Ingress,
                    "ingress.class_not_set",
                    "",
                    Severity::Warning,
                    format!("{who} names no IngressClass and the cluster has no default one: no controller serves it."),
                )),
                _ => {}
            }
        }
        if listed(Kind::Service) {
            for s in services {
                if !exists(Kind::Service, ns, s) {
                    out.push(finding(
                        e,
                        Kind::Ingress,
                        "ingress.backend_service_not_found",
                        s,
                        Severity::Warning,
                        format!("{who} routes to the Service {ns}/{s}, which does not exist: those requests fail with 503."),
                    ));
                }
            }
        }
        if listed(Kind::Secret) {
            for s in tls_secrets {
                if !exists(Kind::Secret, ns, s) {
                    out.push(finding(
                        e,
                        Kind::Ingress,
                        "ingress.tls_secret_not_found",
                        s,
                        Severity::Warning,
                        format!("{who} uses the Secret {ns}/{s} as its TLS certificate, which does not exist: the controller serves a default certificate."),
                    ));
                }
            }
        }
    }

    // NetworkPolicy: allows all traffic; selects no pods (of any workload's pod template).
    const WORKLOADS: [Kind; 5] = [
        Kind::Deployment,
        Kind::StatefulSet,
        Kind::DaemonSet,
        Kind::Job,
        Kind::CronJob,
    ];
    let workloads_listed = WORKLOADS.iter().all(|k| listed(*k));
    for e in of(Kind::NetworkPolicy) {
        let Obj::NetworkPolicy {
            pod_selector,
            ingress_allows_all,
            egress_allows_all,
        } = &e.obj
        else {
            continue;
        };
        let who = format!("NetworkPolicy {}", e.meta.key());
        let scope = if pod_selector.is_empty() {
            "every pod of its namespace".to_string()
        } else {
            format!("the pods with {}", pod_selector.describe())
        };
        for (dir, all) in [
            ("ingress", ingress_allows_all),
            ("egress", egress_allows_all),
        ] {
            if *all {
                out.push(finding(
                    e,
                    Kind::NetworkPolicy,
                    "networkpolicy.allows_all",
                    dir,
                    Severity::Warning,
                    format!("{who} allows all {dir} traffic of {scope} (a rule with no peers and no ports): it isolates nothing in that direction."),
                ));
            }
        }
        if !pod_selector.is_empty() && workloads_listed {
            let ns = &e.meta.namespace;
            let selects = WORKLOADS
                .into_iter()
                .flat_map(&of)
                .filter(|w| &w.meta.namespace == ns)
                .any(|w| match &w.obj {
                    Obj::Deployment {
                        template_labels, ..
                    }
                    | Obj::StatefulSet {
                        template_labels, ..
                    }
                    | Obj::DaemonSet { template_labels }
                    | Obj::Job { template_labels }
                    | Obj::CronJob {
                        template_labels, ..
                    } => pod_selector.matches(template_labels),
                    _ => false,
                });
            if !selects {
                let mut f = finding(
                    e,
                    Kind::NetworkPolicy,
                    "networkpolicy.selects_no_pods",
                    "",
                    Severity::Warning,
                    format!(
                        "{who} selects no pods: no Deployment, StatefulSet, DaemonSet, Job or CronJob of {ns} has pods labelled {}, so it protects nothing.",
                        pod_selector.describe()
                    ),
                );
                f.attributes
                    .insert(names::SELECTOR.into(), pod_selector.describe().into());
                out.push(f);
            }
        }
    }

    // PodDisruptionBudget: expected pods not met; no disruption allowed; no pods at all.
    for e in of(Kind::PodDisruptionBudget) {
        let Obj::PodDisruptionBudget {
            observed,
            disruptions_allowed,
            current_healthy,
            desired_healthy,
            expected_pods,
        } = &e.obj
        else {
            continue;
        };
        if !observed {
            continue;
        }
        let who = format!("PodDisruptionBudget {}", e.meta.key());
        let (code, sev, msg) = if *expected_pods == 0 {
            (
                "pdb.no_pods",
                Severity::Warning,
                format!(
                    "{who} selects no pods: it protects nothing (check its selector against the pods' labels)."
                ),
            )
        } else if current_healthy < desired_healthy {
            (
                "pdb.expected_pods_not_met",
                Severity::Warning,
                format!(
                    "{who} needs {desired_healthy} healthy pods and has {current_healthy} of {expected_pods}: no voluntary disruption (drain, eviction) is allowed until more are healthy."
                ),
            )
        } else if *disruptions_allowed == 0 {
            (
                "pdb.disruptions_not_allowed",
                Severity::Warning,
                format!(
                    "{who} allows no disruption with all {current_healthy} pods healthy (minAvailable equals the replicas, or maxUnavailable is 0): node drains and upgrades will block on its pods."
                ),
            )
        } else {
            continue;
        };
        let mut f = finding(e, Kind::PodDisruptionBudget, code, "", sev, msg);
        for (k, v) in [
            (names::PDB_DISRUPTIONS_ALLOWED, disruptions_allowed),
            (names::PDB_CURRENT_HEALTHY, current_healthy),
            (names::PDB_DESIRED_HEALTHY, desired_healthy),
            (names::PDB_EXPECTED_PODS, expected_pods),
        ] {
            f.attributes.insert(k.into(), (*v).into());
        }
        out.push(f);
    }

    // CronJob: suspended; invalid schedule; negative starting deadline.
    for e in of(Kind::CronJob) {
        let Obj::CronJob {
            schedule,
            suspend,
            starting_deadline_seconds,
            ..
        } = &e.obj
        else {
            continue;
        };
        let who = format!("CronJob {}", e.meta.key());
        if *suspend {
            out.push(finding(
                e,
                Kind::CronJob,
                "cronjob.suspended",
                "",
                Severity::Info,
                format!("{who} is suspended: it starts no Jobs until spec.suspend is false."),
            ));
            continue;
        }
        if let Err(why) = validate_cron(schedule) {
            let mut f = finding(
                e,
                Kind::CronJob,
                "cronjob.invalid_schedule",
                "",
                Severity::Warning,
                format!("{who} has an invalid schedule \"{schedule}\": {why}. It never runs."),
            );
            f.attributes
                .insert(names::SCHEDULE.into(), schedule.clone().into());
            out.push(f);
        }
        if let Some(d) = starting_deadline_seconds
            && *d < 0
        {
            out.push(finding(
                e,
                Kind::CronJob,
                "cronjob.negative_starting_deadline",
                "",
                Severity::Warning,
                format!("{who} has a negative startingDeadlineSeconds ({d}): every run counts as missed."),
            ));
        }
    }

    // StatefulSet: its governing Service; the storage classes of its claim templates.
    for e in of(Kind::StatefulSet) {
        let Obj::StatefulSet {
            service_name,
            storage_classes,
            ..
        } = &e.obj
        else {
            continue;
        };
        let ns = &e.meta.namespace;
        let who = format!("StatefulSet {}", e.meta.key());
        if listed(Kind::Service)
            && !service_name.is_empty()
            && !exists(Kind::Service, ns, service_name)
        {
            out.push(finding(
                e,
                Kind::StatefulSet,
                "statefulset.service_not_found",
                service_name,
                Severity::Warning,
                format!("{who} names the Service {ns}/{service_name} as its governing Service, which does not exist: its pods get no stable DNS names."),
            ));
        }
        if listed(Kind::StorageClass) {
            for (template, class) in storage_classes {
                if !exists(Kind::StorageClass, "", class) {
                    out.push(finding(
                        e,
                        Kind::StatefulSet,
                        "statefulset.storage_class_not_found",
                        class,
                        Severity::Warning,
                        format!("{who} claims volumes ({template}) of the StorageClass {class}, which does not exist: its claims stay Pending and its pods with them."),
                    ));
                }
            }
        }
    }
    out
}

/// Checks a CronJob schedule as the CronJob controller parses it (robfig/cron's standard
/// parser: five fields, or a descriptor such as `@daily` or `@every 1h30m`).
pub fn validate_cron(schedule: &str) -> Result<(), String> {
    let s = schedule.trim();
    if s.is_empty() {
        return Err("empty spec string".into());
    }
    let s = match s.strip_prefix("TZ=").or_else(|| s.strip_prefix("CRON_TZ=")) {
        Some(rest) => match rest.split_once(' ') {
            Some((_, r)) => r.trim(),
            None => return Err("provided bad location".into()),
        },
        None => s,
    };
    if let Some(d) = s.strip_prefix('@') {
        return match d {
            "yearly" | "annually" | "monthly" | "weekly" | "daily" | "midnight" | "hourly" => {
                Ok(())
            }
            _ => match d.strip_prefix("every ") {
                Some(dur) if parse_go_duration(dur.trim()) => Ok(()),
                Some(dur) => Err(format!("failed to parse duration @every {dur}")),
                None => Err(format!("unrecognized descriptor: @{d}")),
            },
        };
    }
    let fields: Vec<&str> = s.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    const MONTHS: &[&str] = &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    const DAYS: &[&str] = &["sun", "mon", "tue", "wed", "thu", "fri", "sat"];
    let specs: [(&str, u32, u32, &[&str], u32); 5] = [
        ("minute", 0, 59, &[], 0),
        ("hour", 0, 23, &[], 0),
        ("day of month", 1, 31, &[], 0),
        ("month", 1, 12, MONTHS, 1),
        ("day of week", 0, 6, DAYS, 0),
    ];
    for (i, (f, (what, lo, hi, names, base))) in fields.iter().zip(specs).enumerate() {
        let question_ok = i == 2 || i == 4;
        for part in f.split(',') {
            check_cron_part(part, lo, hi, names, base, question_ok)
                .map_err(|e| format!("{what} field \"{f}\": {e}"))?;
        }
    }
    Ok(())
}

fn check_cron_part(
    part: &str,
    lo: u32,
    hi: u32,
    names: &[&str],
    base: u32,
    question_ok: bool,
) -> Result<(), String> {
    let (range, step) = match part.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s
                .parse()
                .map_err(|_| format!("failed to parse int from {s}"))?;
            if step == 0 {
                return Err(format!("step of range should be a positive number: {part}"));
            }
            (r, Some(step))
        }
        None => (part, None),
    };
    let value = |t: &str| -> Result<u32, String> {
        if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(t)) {
            return Ok(i as u32 + base);
        }
        t.parse::<u32>()
            .map_err(|_| format!("failed to parse int from {t}"))
    };
    if range == "*" || (question_ok && range == "?") {
        return Ok(());
    }
    let (a, b) = match range.split_once('-') {
        Some((a, b)) => (value(a)?, value(b)?),
        None => {
            let v = value(range)?;
            // `N/step` means N through the maximum.
            (v, if step.is_some() { hi } else { v })
        }
    };
    if a < lo {
        return Err(format!("beginning of range ({a}) below minimum ({lo})"));
    }
    if b > hi {
        return Err(format!("end of range ({b}) above maximum ({hi})"));
    }
    if a > b {
        return Err(format!(
            "beginning of range ({a}) beyond end of range ({b})"
        ));
    }
    Ok(())
}

/// A Go duration (`1h30m`, `90s`, `500ms`), as `@every` takes.
fn parse_go_duration(s: &str) -> bool {
    if s.is_empty() {
        return false;
    }
    let mut rest = s;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if n == 0 || rest[..n].parse::<f64>().is_err() {
            return false;
        }
        rest = &rest[n..];
        let unit = ["ns", "us", "µs", "ms", "s", "m", "h"]
            .iter()
            .filter(|u| rest.starts_with(**u))
            .max_by_key(|u| u.len());
        match unit {
            Some(u) => rest = &rest[u.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cron_schedules_parse_as_the_controller_parses_them() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * 1-5",
            "30 2 1,15 * *",
            "0 0 * JAN,jul SUN",
            "0 12 ? * MON-FRI",
            "@daily",
            "@every 1h30m",
            "TZ=Europe/Paris 0 8 * * *",
            "5/15 * * * *",
        ] {
            assert_eq!(validate_cron(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "0 24 * * *",
            "0 0 0 * *",
            "0 0 * 13 *",
            "0 0 * * 7",
            "*/0 * * * *",
            "5-1 * * * *",
            "@fortnightly",
            "@every soon",
            "0 0 * FOO *",
            "? * * * *",
        ] {
            assert!(validate_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn selectors_match_as_the_api_does() {
        let labels: BTreeMap<String, String> = [
            ("app".to_string(), "web".to_string()),
            ("tier".into(), "fe".into()),
        ]
        .into();
        let mut s = Selector::default();
        assert!(s.matches(&labels), "empty selects all");
        s.match_labels.insert("app".into(), "web".into());
        assert!(s.matches(&labels));
        s.expressions
            .push(("tier".into(), "In".into(), vec!["fe".into(), "be".into()]));
        assert!(s.matches(&labels));
        s.expressions
            .push(("canary".into(), "DoesNotExist".into(), vec![]));
        assert!(s.matches(&labels));
        s.expressions
            .push(("tier".into(), "NotIn".into(), vec!["fe".into()]));
        assert!(!s.matches(&labels));
    }
}
