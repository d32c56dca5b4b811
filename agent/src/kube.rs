//! The agent's Kubernetes source (`kube`): its own node's pods and its own Node object →
//! `daytwo.k8s.*` signals in the send queue, and the pod cache that joins log signals to
//! their workload.
//!
//! Entry type: [`KubeSource`], built from [`KubeConfig`] and run like every other source with
//! the shutdown token. Two watches, both narrow so a thousand agents cost the API server what
//! a thousand kubelets already do: pods with `spec.nodeName=<node>` and the Node with
//! `metadata.name=<node>` (the collector watches cluster-wide objects once). The mapping is
//! [`daytwo_k8s::map`]: pure, diff-based, with ids that the collector deduplicates, so an
//! agent and the collector reporting the same node transition is one signal.
//!
//! Invariants: this source never blocks the agent's start or readiness (connecting reads
//! files only; every request happens in the task and is retried with backoff); an API server
//! that is down or unreachable is logged once and counted in
//! `daytwo_agent_kube_errors_total{resource}` while the node-local sources go on.
//!
//! Pod cache: uid → namespace, name, owner (`k8s.deployment.name`, …), node and labels, filled
//! from the pod watch. [`pod_resource`] reads it; the log pipeline adds its answer to the
//! resource of pod log files it opens (files opened before the first pod list completes keep
//! the path's attributes only).

use crate::metrics::Metrics;
use crate::queue::Queue;
use daytwo_k8s::client::{ClientOptions, connect};
use daytwo_k8s::map::node::NodeMapper;
use daytwo_k8s::map::pod::{PodMapper, PodMeta};
use daytwo_k8s::watch::{self, Backoff, Watch};
use daytwo_k8s::{Context, Tracker};
use daytwo_model::{Attributes, Signal};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Kubernetes settings of the agent (flags `--kube`, `--kubeconfig`, `--node-name`,
/// `--cluster-name`).
#[derive(Clone, Debug, Default)]
pub struct KubeConfig {
    pub client: ClientOptions,
    /// The node this agent runs on (`spec.nodeName` of its pods); from the downward API in
    /// the DaemonSet. Without it the pod and node watches are off.
    pub node_name: Option<String>,
    /// `k8s.cluster.name` on every Kubernetes signal.
    pub cluster_name: Option<String>,
    /// Occurrences (restarts) older than this when first seen are history, not signals.
    pub max_age: Duration,
    /// Retry waits of failed lists and watches.
    pub backoff: Backoff,
}

impl KubeConfig {
    pub fn new() -> Self {
        KubeConfig {
            max_age: Duration::from_secs(15 * 60),
            ..Default::default()
        }
    }
}

type Cache = RwLock<HashMap<String, Arc<PodMeta>>>;

fn cache() -> &'static Cache {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// What the pod cache knows about a pod beyond its log path: `k8s.node.name`, the owner
/// attributes and `k8s.pod.label.*`. Empty when the pod is unknown (Kubernetes off, or not
/// listed yet).
pub fn pod_resource(uid: &str) -> Attributes {
    let Some(meta) = cache().read().ok().and_then(|c| c.get(uid).cloned()) else {
        return Attributes::new();
    };
    let mut r = Attributes::new();
    if let Some(n) = &meta.node {
        r.insert("k8s.node.name".into(), n.clone().into());
    }
    for (k, v) in &meta.owner {
        r.insert(k.clone(), v.clone());
    }
    for (k, v) in &meta.labels {
        r.insert(format!("k8s.pod.label.{k}"), v.clone().into());
    }
    r
}

/// The pod cache's entry for pod `uid` (`None`: Kubernetes off, or the pod not listed yet).
pub fn pod_meta(uid: &str) -> Option<Arc<PodMeta>> {
    cache().read().ok().and_then(|c| c.get(uid).cloned())
}

fn observe_pod(ev: &watcher::Event<Pod>) {
    let Ok(mut c) = cache().write() else { return };
    match ev {
        watcher::Event::InitApply(p) | watcher::Event::Apply(p) => {
            let m = PodMeta::from_pod(p);
            if !m.uid.is_empty() {
                c.insert(m.uid.clone(), Arc::new(m));
            }
        }
        watcher::Event::Delete(p) => {
            if let Some(uid) = &p.metadata.uid {
                c.remove(uid);
            }
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

/// The agent's Kubernetes source.
pub struct KubeSource {
    config: KubeConfig,
    host_name: String,
    queue: Arc<Queue>,
    metrics: Metrics,
}

impl KubeSource {
    pub fn new(config: KubeConfig, host_name: String, queue: Arc<Queue>, metrics: Metrics) -> Self {
        KubeSource {
            config,
            host_name,
            queue,
            metrics,
        }
    }

    /// Runs until `shutdown`. When Kubernetes is off or cannot be configured (one line says
    /// why) it just waits for `shutdown`, so the agent does not report a task that ended.
    pub async fn run(self, shutdown: CancellationToken) {
        let token = shutdown.clone();
        self.watch(shutdown).await;
        token.cancelled().await;
    }

    async fn watch(self, shutdown: CancellationToken) {
        let KubeSource {
            config,
            host_name,
            queue,
            metrics,
        } = self;
        let (client, url) = match connect(&config.client).await {
            Ok(Some(c)) => c,
            Ok(None) => return,
            Err(e) => {
                metrics.kube.errors.with_label_values(&["client"]).inc();
                warn!(error = %e, "Kubernetes watches are off.");
                return;
            }
        };
        let Some(node) = config.node_name.clone() else {
            info!(
                api = %url,
                "Kubernetes is configured but no --node-name (DAYTWO_NODE_NAME) is set: the agent does not know its node, so pod and node watches are off."
            );
            return;
        };
        info!(api = %url, node = %node, "Watching this node's pods and Node object.");
        let ctx = Context {
            cluster: config.cluster_name.clone(),
            host: Some(host_name),
            max_age: config.max_age,
        };
        let (tx, mut rx) = mpsc::channel::<Vec<Signal>>(64);
        let mut tasks = tokio::task::JoinSet::new();
        let pods = Watch {
            resource: "pods",
            api: kube::Api::<Pod>::all(client.clone()),
            config: watcher::Config::default().fields(&format!("spec.nodeName={node}")),
            tracker: Tracker::new(PodMapper::new(ctx.clone())),
        };
        {
            let (tx, m, b, s) = (
                tx.clone(),
                metrics.kube.clone(),
                config.backoff,
                shutdown.clone(),
            );
            tasks.spawn(async move {
                watch::run(pods, tx, m, b, s, observe_pod).await;
                "pods"
            });
        }
        let nodes = Watch {
            resource: "nodes",
            api: kube::Api::<Node>::all(client),
            config: watcher::Config::default().fields(&format!("metadata.name={node}")),
            tracker: Tracker::new(NodeMapper::new(ctx)),
        };
        watch::spawn(
            &mut tasks,
            nodes,
            tx,
            metrics.kube.clone(),
            config.backoff,
            shutdown.clone(),
        );
        // Into the disk queue, in the order the watches produced them.
        loop {
            let signals = tokio::select! {
                _ = shutdown.cancelled() => break,
                s = rx.recv() => match s { Some(s) => s, None => break },
            };
            for s in &signals {
                metrics.signals_emitted.with_label_values(&[&s.name]).inc();
            }
            let q = queue.clone();
            match tokio::task::spawn_blocking(move || q.push(&signals, None)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    metrics.kube.errors.with_label_values(&["queue"]).inc();
                    warn!(error = %e, "Kubernetes signals could not be queued; they are lost.");
                }
                Err(e) => warn!(error = %e, "Queueing Kubernetes signals panicked."),
            }
        }
        tasks.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::origin::Origin;

    fn pod(state: &str) -> Pod {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/fixtures/kubernetes/pods.json"
        );
        let all: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        serde_json::from_value(all[state].clone()).unwrap()
    }

    #[test]
    fn pod_cache_adds_owner_node_and_labels_to_pod_log_resources() {
        let p = pod("running");
        let uid = p.metadata.uid.clone().unwrap();
        let log = format!("/var/log/pods/shop_checkout-7d4b9c8f6-x2x9k_{uid}/app/0.log");
        // Unknown pod: the path's attributes only.
        let before = Origin::from_path(std::path::Path::new(&log)).resource("node-1");
        assert!(!before.contains_key("k8s.deployment.name"));
        observe_pod(&watcher::Event::InitApply(p.clone()));
        let r = Origin::from_path(std::path::Path::new(&log)).resource("node-1");
        assert_eq!(r["k8s.deployment.name"], "checkout");
        assert_eq!(r["k8s.replicaset.name"], "checkout-7d4b9c8f6");
        assert_eq!(r["k8s.node.name"], "node-1");
        assert_eq!(r["k8s.pod.label.app"], "checkout");
        assert_eq!(r["k8s.container.name"], "app");
        observe_pod(&watcher::Event::Delete(p));
        assert!(pod_resource(&uid).is_empty());
    }
}
