//! The collector's cluster-wide Kubernetes watches: objects every agent would otherwise watch
//! N times, watched once here, turned into `daytwo.k8s.*` signals and ingested like signals
//! that arrived over OTLP (stored, deduplicated by id, correlated, matched by rules).
//!
//! Entry: [`run`], started by [`crate::Collector::run`] when [`crate::Collector::set_kube`]
//! configured it. Watched (all namespaces, read-only: `list` and `watch` verbs): Nodes,
//! Events (core/v1), Deployments, StatefulSets, DaemonSets, ReplicaSets, Jobs (batch/v1),
//! HorizontalPodAutoscalers (autoscaling/v2), PersistentVolumeClaims, ConfigMaps, Secrets
//! (names and hashes only) and EndpointSlices (discovery.k8s.io/v1). Pods are the agents'
//! (each watches its own node's); the collector watches only `Pending` pods (field selector
//! `status.phase=Pending`), for the PersistentVolumeClaims they mount: a pod whose claim fails
//! stays Pending, and its FailedMount/FailedScheduling events name the pod but not its
//! volumes, so the event mapper adds the pod's `daytwo.k8s.pod.claims` from that watch (no
//! signals of its own; a small set at any fleet size). For the configuration analyzers
//! ([`daytwo_k8s::map::cluster`]) also Services, Ingresses, IngressClasses, NetworkPolicies
//! (networking.k8s.io/v1), PodDisruptionBudgets (policy/v1), CronJobs (batch/v1) and
//! StorageClasses (storage.k8s.io/v1); Deployments, StatefulSets, DaemonSets, Jobs and Secrets feed
//! the same index from their own watches. The analyzers run every `analyze_interval` and
//! report findings as they appear and clear.
//!
//! Invariants: never blocks the collector's start or `/readyz`; a resource the service
//! account may not list (403) or an unreachable API server is logged once per outage and
//! counted in `daytwo_collector_kube_errors_total{resource}` while the rest runs.

use crate::pipeline::Pipeline;
use daytwo_k8s::client::{ClientOptions, connect};
use daytwo_k8s::map::cluster::{Analyzer, AnalyzerConfig, ClusterIndex, Indexing, index_only};
use daytwo_k8s::map::config::{ConfigMapMapper, SecretMapper};
use daytwo_k8s::map::endpoints::EndpointSliceMapper;
use daytwo_k8s::map::event::EventMapper;
use daytwo_k8s::map::hpa::HpaMapper;
use daytwo_k8s::map::job::JobMapper;
use daytwo_k8s::map::node::NodeMapper;
use daytwo_k8s::map::pod::{PendingPodClaims, PodClaims};
use daytwo_k8s::map::pvc::PvcMapper;
use daytwo_k8s::map::workload::{
    DaemonSetMapper, DeploymentMapper, ReplicaSetMapper, StatefulSetMapper,
};
use daytwo_k8s::watch::{self, Backoff, Watch, WatchMetrics};
use daytwo_k8s::{Context, Mapper, Tracker};
use daytwo_model::Signal;
use kube::runtime::watcher;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// The resources [`run`] watches (the `resource` metric label), for RBAC and docs.
pub const RESOURCES: &[&str] = &[
    "nodes",
    "pods",
    "events",
    "deployments",
    "statefulsets",
    "daemonsets",
    "replicasets",
    "jobs",
    "horizontalpodautoscalers",
    "persistentvolumeclaims",
    "configmaps",
    "secrets",
    "endpointslices",
    "services",
    "ingresses",
    "ingressclasses",
    "networkpolicies",
    "poddisruptionbudgets",
    "cronjobs",
    "storageclasses",
];

/// Kubernetes settings of the collector (`--kube`, `--kubeconfig`, `--cluster-name`).
#[derive(Clone, Debug)]
pub struct KubeConfig {
    pub client: ClientOptions,
    pub cluster_name: Option<String>,
    /// Warning events older than this when first seen are history, not signals.
    pub max_age: Duration,
    pub backoff: Backoff,
    /// How often the configuration analyzers look at the cluster (default 30 s).
    pub analyze_interval: Duration,
    pub analyzer: AnalyzerConfig,
}

impl Default for KubeConfig {
    fn default() -> Self {
        KubeConfig {
            client: ClientOptions::default(),
            cluster_name: None,
            max_age: Duration::from_secs(15 * 60),
            backoff: Backoff::default(),
            analyze_interval: Duration::from_secs(30),
            analyzer: AnalyzerConfig::default(),
        }
    }
}

/// Spawns one watch task per resource, all feeding one channel.
struct Spawner<'a> {
    tasks: tokio::task::JoinSet<&'static str>,
    tx: &'a mpsc::Sender<Vec<Signal>>,
    metrics: &'a WatchMetrics,
    backoff: Backoff,
    shutdown: &'a CancellationToken,
}

impl Spawner<'_> {
    fn add<M>(&mut self, resource: &'static str, api: kube::Api<M::Object>, mapper: M)
    where
        M: Mapper + Send + 'static,
        M::Snapshot: Send,
        M::Object:
            kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
    {
        self.add_with(resource, api, mapper, watcher::Config::default());
    }

    fn add_with<M>(
        &mut self,
        resource: &'static str,
        api: kube::Api<M::Object>,
        mapper: M,
        config: watcher::Config,
    ) where
        M: Mapper + Send + 'static,
        M::Snapshot: Send,
        M::Object:
            kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
    {
        watch::spawn(
            &mut self.tasks,
            Watch {
                resource,
                api,
                config,
                tracker: Tracker::new(mapper),
            },
            self.tx.clone(),
            self.metrics.clone(),
            self.backoff,
            self.shutdown.clone(),
        );
    }
}

/// Watches until `shutdown`; returns early only when Kubernetes is off or unconfigurable.
pub async fn run(
    config: KubeConfig,
    pipeline: Arc<Mutex<Pipeline>>,
    metrics: WatchMetrics,
    shutdown: CancellationToken,
) {
    let (client, url) = match connect(&config.client).await {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            metrics.errors.with_label_values(&["client"]).inc();
            warn!(error = %e, "Kubernetes watches are off.");
            return;
        }
    };
    info!(api = %url, resources = RESOURCES.len(), "Watching cluster-wide Kubernetes objects.");
    let ctx = Context {
        cluster: config.cluster_name.clone(),
        host: None,
        max_age: config.max_age,
    };
    let (tx, mut rx) = mpsc::channel::<Vec<Signal>>(64);
    let mut sp = Spawner {
        tasks: tokio::task::JoinSet::new(),
        tx: &tx,
        metrics: &metrics,
        backoff: config.backoff,
        shutdown: &shutdown,
    };
    let c = || client.clone();
    use kube::Api;
    let index = ClusterIndex::new();
    let ix = |m| Indexing::new(m, index.clone());
    sp.add("nodes", Api::all(c()), NodeMapper::new(ctx.clone()));
    // Pending pods' claims, for the events about them (see the module docs).
    let claims = PodClaims::new();
    sp.add_with(
        "pods",
        Api::all(c()),
        PendingPodClaims::new(claims.clone()),
        watcher::Config::default().fields("status.phase=Pending"),
    );
    sp.add(
        "events",
        Api::all(c()),
        EventMapper::with_claims(ctx.clone(), claims),
    );
    sp.add(
        "deployments",
        Api::all(c()),
        Indexing::new(DeploymentMapper::new(ctx.clone()), index.clone()),
    );
    sp.add(
        "statefulsets",
        Api::all(c()),
        Indexing::new(StatefulSetMapper::new(ctx.clone()), index.clone()),
    );
    sp.add(
        "daemonsets",
        Api::all(c()),
        Indexing::new(DaemonSetMapper::new(ctx.clone()), index.clone()),
    );
    sp.add(
        "replicasets",
        Api::all(c()),
        ReplicaSetMapper::new(ctx.clone()),
    );
    sp.add(
        "jobs",
        Api::all(c()),
        Indexing::new(JobMapper::new(ctx.clone()), index.clone()),
    );
    sp.add(
        "horizontalpodautoscalers",
        Api::all(c()),
        HpaMapper::new(ctx.clone()),
    );
    sp.add(
        "persistentvolumeclaims",
        Api::all(c()),
        PvcMapper::new(ctx.clone()),
    );
    sp.add(
        "configmaps",
        Api::all(c()),
        ConfigMapMapper::new(ctx.clone()),
    );
    // Helm keeps every release in a large Secret rewritten on each upgrade: the upgrade itself
    // shows as the workloads' rollouts, so those Secrets are not watched.
    sp.add_with(
        "secrets",
        Api::all(c()),
        ix(SecretMapper::new(ctx.clone())),
        watcher::Config::default().fields("type!=helm.sh/release.v1"),
    );
    sp.add(
        "endpointslices",
        Api::all(c()),
        EndpointSliceMapper::new(ctx.clone()),
    );
    use daytwo_k8s::k8s_openapi::api as k;
    sp.add(
        "services",
        Api::all(c()),
        index_only::<k::core::v1::Service>(&index),
    );
    sp.add(
        "ingresses",
        Api::all(c()),
        index_only::<k::networking::v1::Ingress>(&index),
    );
    sp.add(
        "ingressclasses",
        Api::all(c()),
        index_only::<k::networking::v1::IngressClass>(&index),
    );
    sp.add(
        "networkpolicies",
        Api::all(c()),
        index_only::<k::networking::v1::NetworkPolicy>(&index),
    );
    sp.add(
        "poddisruptionbudgets",
        Api::all(c()),
        index_only::<k::policy::v1::PodDisruptionBudget>(&index),
    );
    sp.add(
        "cronjobs",
        Api::all(c()),
        index_only::<k::batch::v1::CronJob>(&index),
    );
    sp.add(
        "storageclasses",
        Api::all(c()),
        index_only::<k::storage::v1::StorageClass>(&index),
    );
    // The analyzers: findings as they appear and clear, on a timer (a grace period elapses
    // without any watch event).
    let mut analyzer = Analyzer::new(ctx, index, config.analyzer);
    let (atx, am, ad) = (tx.clone(), metrics.clone(), shutdown.clone());
    let every = config.analyze_interval.max(Duration::from_millis(10));
    sp.tasks.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ad.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now = daytwo_model::Timestamp::from_system_time(std::time::SystemTime::now());
            let signals = analyzer.tick(now);
            if signals.is_empty() {
                continue;
            }
            am.signals
                .with_label_values(&["analyzers"])
                .inc_by(signals.len() as u64);
            if atx.send(signals).await.is_err() {
                break;
            }
        }
        "analyzers"
    });
    let mut t = sp.tasks;
    drop(tx);
    loop {
        let signals = tokio::select! {
            _ = shutdown.cancelled() => break,
            s = rx.recv() => match s { Some(s) => s, None => break },
        };
        let p = pipeline.clone();
        let result = tokio::task::spawn_blocking(move || {
            p.lock().unwrap_or_else(|e| e.into_inner()).ingest(signals)
        })
        .await;
        match result {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                metrics.errors.with_label_values(&["store"]).inc();
                warn!(error = %e, "Kubernetes signals could not be stored; they are lost.");
            }
            Err(e) => warn!(error = %e, "Storing Kubernetes signals panicked."),
        }
    }
    t.shutdown().await;
}
