//! End to end with the real `daytwo up` binary and a fake Kubernetes API server on 127.0.0.1
//! (no API server can run here). The fake serves LIST and WATCH from fixtures that are real
//! Kubernetes JSON (tests/fixtures/kubernetes, see its README); `daytwo up` reaches it through
//! a kubeconfig, as it would reach a cluster.
//!
//! * a pod of this node going into CrashLoopBackOff → an incident from
//!   `kubernetes.crash_loop_back_off` naming the container;
//! * a FailedScheduling Warning event (collector) → `kubernetes.pod_unschedulable`;
//! * a bad rollout (the Deployment's image changed) followed by CrashLoopBackOff of its new
//!   pod → one incident naming the rollout through `cascades.change_then_errors`;
//! * a node turning NotReady (reported by the agent and the collector, stored once) and its
//!   pod crash-looping after it → one incident on the node, the pod's failure part of it;
//! * a Service whose only pod crash-loops → one incident on the pod, the Service's endpoint
//!   loss part of it (`kubernetes.service_backend_failing`);
//! * an Ingress naming a missing Service, TLS Secret and IngressClass, and a Deployment with
//!   no ready replica past its grace period → incidents from the configuration analyzers,
//!   emitted once, cleared once when the Ingress is fixed;
//! * the API server unreachable → the agent still starts and is ready, and the failures are
//!   counted in `daytwo_agent_kube_errors_total`;
//! * a standalone `daytwo agent` ships its node's Kubernetes signals over OTLP, and the raw
//!   records of a pod's log file carry the pod's owner, node and labels from the pod watch.

mod common;

use common::*;
use daytwo_k8s::fake::{FakeApiServer, Gate, WatchEnd, WatchSession, list};
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

fn fixture(file: &str, name: &str) -> Value {
    let path = format!(
        "{}/tests/fixtures/kubernetes/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: Value = serde_json::from_str(&read(Path::new(&path))).unwrap();
    all[name].clone()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

fn up_args(data: &Path, kubeconfig: &Path) -> Vec<String> {
    [
        "up",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
        "--no-logs",
        "--no-kmsg",
        "--no-node-metrics",
        "--retry-initial-ms",
        "100",
        "--retry-max-ms",
        "500",
        "--kube",
        "on",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "node-1",
        "--cluster-name",
        "e2e",
        "--kube-retry-max-ms",
        "500",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// The collector's watch of Pending pods (for the claims they mount): its own script, so it
/// does not take the list and watch sessions scripted for the agent's pod watch.
const PENDING_PODS: &str = "/api/v1/pods?fieldSelector=status.phase=Pending";

/// No Pending pods for the collector's watch.
fn no_pending_pods(api: &FakeApiServer) {
    api.push_list(PENDING_PODS, list("Pod", "v1", "1", Vec::new()));
}

fn find_incident<'a>(incidents: &'a [Value], rule: &str) -> Option<&'a Value> {
    incidents
        .iter()
        .find(|i| i["root_causes"][0]["rule"] == rule)
}

#[test]
fn crash_loop_and_node_not_ready_become_incidents_with_kubernetes_rules() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    no_pending_pods(&api);
    api.push_list(
        "/api/v1/pods",
        list("Pod", "v1", "104211", vec![fixture("pods.json", "running")]),
    );
    api.push_watch(
        "/api/v1/pods",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", fixture("pods.json", "crashloop")),
    );
    // (A node going NotReady, and its pods with it, is the cascade test below.)
    // The collector's cluster-wide Events watch: a pending pod of another node that the
    // scheduler cannot place, happening now.
    let mut event = fixture("events.json", "failed_scheduling");
    let now = rfc3339_now_plus(0);
    event["firstTimestamp"] = Value::from(now.clone());
    event["lastTimestamp"] = Value::from(now);
    event["involvedObject"]["name"] = Value::from("batch-7c9d5-pq2zt");
    event["involvedObject"]["uid"] = Value::from("9a8b7c6d-0000-4000-8000-00000000beef");
    // The collector's service account may not read Secrets here: that watch fails, is
    // counted, and everything else runs.
    api.forbid("/api/v1/secrets");
    api.push_list("/api/v1/events", list("Event", "v1", "5000", vec![]));
    api.push_watch(
        "/api/v1/events",
        WatchSession::new(WatchEnd::Hold).event("ADDED", event),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let log = tmp.path().join("daytwo.log");
    let d = Daytwo::start(&up_args(&tmp.path().join("data"), &kubeconfig), &log, true);

    let rules = [
        "kubernetes.crash_loop_back_off",
        "kubernetes.pod_unschedulable",
    ];
    let incidents = wait_for(Duration::from_secs(30), || {
        let all = d.incidents();
        rules
            .iter()
            .all(|r| find_incident(&all, r).is_some())
            .then_some(all)
    })
    .unwrap_or_else(|| {
        panic!(
            "no Kubernetes incidents; incidents: {:#?}\nrequests: {:#?}\nlog:\n{}",
            d.incidents(),
            api.requests(),
            read(&log)
        )
    });

    let crash = find_incident(&incidents, "kubernetes.crash_loop_back_off").unwrap();
    let cause = &crash["root_causes"][0];
    assert_eq!(cause["entity"]["kind"], "container");
    assert_eq!(cause["entity"]["name"], "shop/checkout-7d4b9c8f6-x2x9k/app");
    assert_eq!(cause["entity"]["attributes"]["k8s.container.name"], "app");
    assert_eq!(cause["entity"]["attributes"]["k8s.cluster.name"], "e2e");
    assert!(
        crash["title"]
            .as_str()
            .unwrap()
            .contains("CrashLoopBackOff: container app"),
        "{crash:#}"
    );
    assert!(
        cause["explanation"]
            .as_str()
            .unwrap()
            .contains("(Deployment checkout)"),
        "{cause:#}"
    );

    let pending = find_incident(&incidents, "kubernetes.pod_unschedulable").unwrap();
    assert_eq!(
        pending["root_causes"][0]["entity"]["name"],
        "shop/batch-7c9d5-pq2zt"
    );
    assert!(
        pending["root_causes"][0]["explanation"]
            .as_str()
            .unwrap()
            .contains("2 Insufficient cpu"),
        "{pending:#}"
    );

    // The agent watched only its own node's pods, resuming from the list's resourceVersion;
    // the collector only the Pending pods (for their claims), no other pods.
    let (pod_requests, others): (Vec<_>, Vec<_>) =
        api.requests_for("/api/v1/pods").into_iter().partition(|r| {
            r.query.get("fieldSelector").map(String::as_str) == Some("spec.nodeName=node-1")
        });
    assert!(!pod_requests.is_empty());
    assert!(!others.is_empty(), "the collector watches Pending pods");
    for r in &others {
        assert_eq!(
            r.query.get("fieldSelector").map(String::as_str),
            Some("status.phase=Pending"),
            "{r:?}"
        );
    }
    let watch = pod_requests.iter().find(|r| r.is_watch()).unwrap();
    assert_eq!(
        watch.query.get("resourceVersion").map(String::as_str),
        Some("104211")
    );
    // The collector watched cluster-wide objects once each, including Events.
    assert!(!api.requests_for("/api/v1/events").is_empty());
    assert!(!api.requests_for("/apis/apps/v1/deployments").is_empty());
    let secrets = api.requests_for("/api/v1/secrets");
    assert!(!secrets.is_empty());
    assert!(
        secrets
            .iter()
            .all(|r| r.query["fieldSelector"] == "type!=helm.sh/release.v1")
    );
    let forbidden = || -> f64 {
        get(&format!("{}/metrics", d.server()))
            .map(|(_, body)| {
                body.lines()
                    .filter(|l| {
                        l.starts_with("daytwo_collector_kube_errors_total")
                            && l.contains("resource=\"secrets\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(10), || forbidden() >= 1.0),
        "the forbidden Secrets watch was not counted"
    );
    drop(d);
}

#[test]
fn an_unreachable_api_server_does_not_stop_the_agent() {
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    // Nothing listens on this port: every list fails with connection refused.
    let port = free_port();
    std::fs::write(
        &kubeconfig,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n    server: http://127.0.0.1:{port}\ncontexts:\n- name: gone\n  context:\n    cluster: gone\n    user: gone\ncurrent-context: gone\nusers:\n- name: gone\n  user:\n    token: x\n"
        ),
    )
    .unwrap();
    let log = tmp.path().join("daytwo.log");
    // `start` waits for /readyz: it answers although the API server never does.
    let d = Daytwo::start(&up_args(&tmp.path().join("data"), &kubeconfig), &log, true);
    d.wait_agent_ready();
    let errors = |name: &str| -> f64 {
        get(&format!("{}/metrics", d.server()))
            .map(|(_, body)| {
                body.lines()
                    .filter(|l| l.starts_with(name) && l.contains("resource=\"pods\""))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(Duration::from_secs(20), || errors(
            "daytwo_agent_kube_errors_total"
        ) >= 2.0),
        "errors not counted; log:\n{}",
        read(&log)
    );
    assert!(errors("daytwo_collector_kube_errors_total") >= 0.0);
    // Logged once per outage, not once per retry.
    let warned = read(&log)
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("Kubernetes watch failed"))
        .count();
    assert_eq!(warned, 1, "log:\n{}", read(&log));
    drop(d);
}

mod otlp {
    //! A real OTLP/gRPC logs receiver on 127.0.0.1 that records records and events with their
    //! resource, standing in for the collector of a standalone `daytwo agent`.
    use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
        LogsService, LogsServiceServer,
    };
    use opentelemetry_proto::tonic::collector::logs::v1::{
        ExportLogsServiceRequest, ExportLogsServiceResponse,
    };
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Debug)]
    pub struct Rec {
        pub event: String,
        pub body: String,
        pub resource: BTreeMap<String, String>,
    }

    fn text(v: &Option<AnyValue>) -> String {
        match v.as_ref().and_then(|v| v.value.as_ref()) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            Some(other) => format!("{other:?}"),
            None => String::new(),
        }
    }

    fn map(kvs: &[KeyValue]) -> BTreeMap<String, String> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), text(&kv.value)))
            .collect()
    }

    #[derive(Clone, Default)]
    pub struct Sink(pub Arc<Mutex<Vec<Rec>>>);

    #[tonic::async_trait]
    impl LogsService for Sink {
        async fn export(
            &self,
            request: tonic::Request<ExportLogsServiceRequest>,
        ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
            let mut g = self.0.lock().unwrap();
            for rl in &request.get_ref().resource_logs {
                let resource = rl
                    .resource
                    .as_ref()
                    .map(|r| map(&r.attributes))
                    .unwrap_or_default();
                for sl in &rl.scope_logs {
                    for r in &sl.log_records {
                        g.push(Rec {
                            event: r.event_name.clone(),
                            body: text(&r.body),
                            resource: resource.clone(),
                        });
                    }
                }
            }
            Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
        }
    }

    /// Serves on `rt`; returns the URL and the sink.
    pub fn start(rt: &tokio::runtime::Runtime) -> (String, Sink) {
        let sink = Sink::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = LogsServiceServer::new(sink.clone())
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip);
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap()
        });
        (format!("http://{addr}"), sink)
    }
}

#[test]
fn a_standalone_agent_ships_kubernetes_signals_and_joins_pod_logs_to_their_owner() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    let (collector, sink) = otlp::start(&rt);
    let pod = fixture("pods.json", "running");
    let uid = pod["metadata"]["uid"].as_str().unwrap().to_string();
    api.push_list("/api/v1/pods", list("Pod", "v1", "104211", vec![pod]));
    api.push_watch(
        "/api/v1/pods",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", fixture("pods.json", "crashloop")),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let pod_dir = tmp
        .path()
        .join(format!("pods/shop_checkout-7d4b9c8f6-x2x9k_{uid}/app"));
    std::fs::create_dir_all(&pod_dir).unwrap();
    let glob = format!("{}/pods/*/*/*.log", tmp.path().display());
    let args: Vec<String> = [
        "agent",
        "--collector",
        &collector,
        "--data-dir",
        tmp.path().join("data").to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--no-kmsg",
        "--no-node-metrics",
        "--metrics-interval-secs",
        "3600",
        "--retry-initial-ms",
        "50",
        "--retry-max-ms",
        "300",
        "--log-poll-interval-ms",
        "100",
        "--log-path",
        &glob,
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "node-1",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let log = tmp.path().join("agent.log");
    let d = Daytwo::start(&args, &log, true);

    // The pod list is in the cache once the watch that follows it was requested.
    assert!(
        wait_until(Duration::from_secs(20), || api
            .requests_for("/api/v1/pods")
            .iter()
            .any(|r| r.is_watch())),
        "no pod watch; log:\n{}",
        read(&log)
    );
    std::fs::write(
        pod_dir.join("0.log"),
        "2026-11-25T14:10:29.000000000Z stderr F panic: config: PAYMENT_URL not set\n",
    )
    .unwrap();

    let recs = wait_for(Duration::from_secs(20), || {
        let g = sink.0.lock().unwrap().clone();
        let raw = g
            .iter()
            .any(|r| r.event.is_empty() && r.body.contains("PAYMENT_URL"));
        let waiting = g.iter().any(|r| r.event == "daytwo.k8s.container.waiting");
        (raw && waiting).then_some(g)
    })
    .unwrap_or_else(|| panic!("got {:#?}\nlog:\n{}", sink.0.lock().unwrap(), read(&log)));
    let raw = recs
        .iter()
        .find(|r| r.event.is_empty() && r.body.contains("PAYMENT_URL"))
        .unwrap();
    assert_eq!(raw.resource["k8s.pod.uid"], uid);
    assert_eq!(raw.resource["k8s.deployment.name"], "checkout");
    assert_eq!(raw.resource["k8s.replicaset.name"], "checkout-7d4b9c8f6");
    assert_eq!(raw.resource["k8s.node.name"], "node-1");
    assert_eq!(raw.resource["k8s.pod.label.app"], "checkout");
    let waiting = recs
        .iter()
        .find(|r| r.event == "daytwo.k8s.container.waiting")
        .unwrap();
    assert_eq!(waiting.resource["k8s.deployment.name"], "checkout");
    assert_eq!(waiting.resource["k8s.node.name"], "node-1");
    assert!(waiting.body.contains("CrashLoopBackOff"), "{waiting:?}");
    drop(d);
}

/// The recorded cascade "a bad rollout followed by CrashLoopBackOff": the collector sees the
/// Deployment's image change first, then this node's agent sees the new pod crash-looping; the
/// incident names the rollout (the Deployment), through the cascade rules, not the container.
#[test]
fn a_bad_rollout_followed_by_crash_loop_names_the_rollout() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    no_pending_pods(&api);
    // The collector's Deployments watch: checkout goes from image v2.0 to v2.1.
    api.push_list(
        "/apis/apps/v1/deployments",
        list(
            "Deployment",
            "apps/v1",
            "7001",
            vec![fixture("deployments.json", "v2_0")],
        ),
    );
    api.push_watch(
        "/apis/apps/v1/deployments",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", fixture("deployments.json", "v2_1")),
    );
    let tmp = tempfile::tempdir().unwrap();
    let (d, otlp_port, log) = collector_only_up(&api, tmp.path(), "deployments");
    assert!(
        d.incidents().is_empty(),
        "a change alone opens nothing: {:#?}",
        d.incidents()
    );

    // Then node-1's agent sees the new pod crash-looping.
    api.push_list(
        "/api/v1/pods",
        list("Pod", "v1", "104211", vec![fixture("pods.json", "running")]),
    );
    api.push_watch(
        "/api/v1/pods",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", fixture("pods.json", "crashloop")),
    );
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let (agent, agent_log) = node_1_agent(tmp.path(), &kubeconfig, otlp_port);

    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents()
            .into_iter()
            .find(|i| i["root_causes"][0]["rule"] == "cascades.change_then_errors")
    })
    .unwrap_or_else(|| {
        panic!(
            "no rollout incident; incidents: {:#?}\nlog:\n{}\nagent log:\n{}",
            d.incidents(),
            read(&log),
            read(&agent_log)
        )
    });
    let cause = &inc["root_causes"][0];
    assert_eq!(cause["entity"]["kind"], "workload", "{cause:#}");
    assert_eq!(
        cause["entity"]["attributes"]["k8s.deployment.name"], "checkout",
        "{cause:#}"
    );
    let explanation = cause["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("registry.example/shop/checkout:v2.0")
            && explanation.contains("registry.example/shop/checkout:v2.1"),
        "{explanation}"
    );
    // The container's own rule is a lesser hypothesis of the same incident, not a second page.
    assert!(
        inc["root_causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["rule"] == "kubernetes.crash_loop_back_off"),
        "{inc:#}"
    );
    let names: Vec<&str> = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"daytwo.k8s.change") && names.contains(&"daytwo.k8s.container.waiting"),
        "{names:?}"
    );
    drop(agent);
    drop(d);
}

/// `daytwo up` whose collector watches the cluster through the fake while its own agent
/// watches no pods (no `--node-name`), on a known OTLP port for a node's agent started later;
/// returns once the collector reported a signal from `resource`'s watch.
fn collector_only_up(
    api: &FakeApiServer,
    dir: &Path,
    resource: &str,
) -> (Daytwo, u16, std::path::PathBuf) {
    let kubeconfig = api.write_kubeconfig(dir).unwrap();
    let otlp_port = free_port();
    let mut args = up_args(&dir.join("data"), &kubeconfig);
    let i = args.iter().position(|a| a == "--node-name").unwrap();
    args.drain(i..i + 2);
    let i = args.iter().position(|a| a == "--otlp-addr").unwrap();
    args[i + 1] = format!("127.0.0.1:{otlp_port}");
    let log = dir.join("daytwo.log");
    let d = Daytwo::start(&args, &log, true);
    let label = format!("resource=\"{resource}\"");
    let seen = || -> bool {
        get(&format!("{}/metrics", d.server())).is_some_and(|(_, body)| {
            body.lines().any(|l| {
                l.starts_with("daytwo_collector_kube_signals_total")
                    && l.contains(&label)
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(1.0)
            })
        })
    };
    assert!(
        wait_until(Duration::from_secs(30), seen),
        "the collector reported nothing from {resource}; log:\n{}",
        read(&log)
    );
    (d, otlp_port, log)
}

/// A standalone agent for node-1 shipping to the collector on `otlp_port`.
fn node_1_agent(dir: &Path, kubeconfig: &Path, otlp_port: u16) -> (Daytwo, std::path::PathBuf) {
    let agent_args: Vec<String> = [
        "agent",
        "--collector",
        &format!("http://127.0.0.1:{otlp_port}"),
        "--data-dir",
        dir.join("agent").to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--no-kmsg",
        "--no-node-metrics",
        "--no-logs",
        "--retry-initial-ms",
        "50",
        "--retry-max-ms",
        "300",
        "--kube",
        "on",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--node-name",
        "node-1",
        "--cluster-name",
        "e2e",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let agent_log = dir.join("agent.log");
    let agent = Daytwo::start(&agent_args, &agent_log, true);
    (agent, agent_log)
}

/// The recorded cascade "a node NotReady with its pods": the collector sees node-1 go NotReady,
/// then node-1's agent sees its pod crash-looping; the pod's failure joins the node's incident
/// (one incident, the node its root cause), it does not page on its own.
#[test]
fn a_node_not_ready_with_its_pods_failing_is_one_incident_on_the_node() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    no_pending_pods(&api);
    let mut not_ready = fixture("nodes.json", "not_ready");
    let recent = rfc3339_now_plus(-60);
    for c in not_ready["status"]["conditions"].as_array_mut().unwrap() {
        if c["type"] == "Ready" {
            c["lastTransitionTime"] = Value::from(recent.clone());
        }
    }
    api.push_list(
        "/api/v1/nodes",
        list("Node", "v1", "203001", vec![fixture("nodes.json", "ready")]),
    );
    api.push_watch(
        "/api/v1/nodes",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", not_ready.clone()),
    );
    let tmp = tempfile::tempdir().unwrap();
    let (d, otlp_port, log) = collector_only_up(&api, tmp.path(), "nodes");
    let node_incident = wait_for(Duration::from_secs(30), || {
        d.incidents()
            .into_iter()
            .find(|i| i["root_causes"][0]["entity"]["name"] == "node-1")
    })
    .unwrap_or_else(|| panic!("no node incident; log:\n{}", read(&log)));

    // node-1's agent: its Node (still NotReady) and its pod crash-looping.
    api.push_list(
        "/api/v1/nodes",
        list("Node", "v1", "203002", vec![not_ready]),
    );
    api.push_list(
        "/api/v1/pods",
        list("Pod", "v1", "104211", vec![fixture("pods.json", "running")]),
    );
    api.push_watch(
        "/api/v1/pods",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", fixture("pods.json", "crashloop")),
    );
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let (agent, agent_log) = node_1_agent(tmp.path(), &kubeconfig, otlp_port);
    let id = node_incident["id"].as_str().unwrap().to_string();
    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents().into_iter().find(|i| {
            i["id"] == id.as_str()
                && i["signals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == "daytwo.k8s.container.waiting")
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "the pod's failure did not join the node's incident; incidents: {:#?}\nlog:\n{}\nagent log:\n{}",
            d.incidents(),
            read(&log),
            read(&agent_log)
        )
    });
    assert_eq!(inc["root_causes"][0]["entity"]["kind"], "node", "{inc:#}");
    assert_eq!(inc["root_causes"][0]["entity"]["name"], "node-1", "{inc:#}");
    assert!(
        inc["root_causes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|h| h["rule"] == "cascades.node_not_ready" && h["entity"]["name"] == "node-1"),
        "{inc:#}"
    );
    assert_eq!(inc["severity"], "critical");
    // The agent's report of its NotReady node (from its own list) and the collector's are one
    // signal: ids come from the object and its state, not from who saw it.
    let conditions = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "daytwo.k8s.node.condition")
        .count();
    assert_eq!(conditions, 1, "{inc:#}");
    // No second incident for the crash.
    let all = d.incidents();
    assert_eq!(all.len(), 1, "{all:#?}");
    drop(agent);
    drop(d);
}

/// The recorded cascade "a Service whose only pod crash-loops": node-1's pod goes into
/// CrashLoopBackOff (an incident on its container), then the Service's EndpointSlice loses its
/// last ready endpoint. The Service's outage joins the pod's incident (one page, the pod its
/// root cause), through `kubernetes.service_backend_failing` and the EndpointSlice's targets;
/// the Service → pod → node edges are in the topology.
#[test]
fn a_service_whose_only_pod_crash_loops_is_one_incident_on_the_pod() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    no_pending_pods(&api);
    api.push_list(
        "/api/v1/pods",
        list("Pod", "v1", "104211", vec![fixture("pods.json", "running")]),
    );
    api.push_watch(
        "/api/v1/pods",
        WatchSession::new(WatchEnd::Hold).event("MODIFIED", fixture("pods.json", "crashloop")),
    );
    // The collector's EndpointSlices: the Service is served at first; its slice turns
    // not-ready only once the test opens the gate (after the pod's incident exists).
    let gate = Gate::new();
    api.push_list(
        "/apis/discovery.k8s.io/v1/endpointslices",
        list(
            "EndpointSlice",
            "discovery.k8s.io/v1",
            "104300",
            vec![fixture("endpointslices.json", "ready")],
        ),
    );
    api.push_watch(
        "/apis/discovery.k8s.io/v1/endpointslices",
        WatchSession::new(WatchEnd::Hold)
            .after(&gate)
            .event("MODIFIED", fixture("endpointslices.json", "not_ready")),
    );
    api.push_list(
        "/api/v1/services",
        list(
            "Service",
            "v1",
            "104001",
            vec![fixture("services.json", "checkout")],
        ),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let log = tmp.path().join("daytwo.log");
    let d = Daytwo::start(&up_args(&tmp.path().join("data"), &kubeconfig), &log, true);
    let crash = wait_for(Duration::from_secs(30), || {
        find_incident(&d.incidents(), "kubernetes.crash_loop_back_off").cloned()
    })
    .unwrap_or_else(|| panic!("no crash-loop incident; log:\n{}", read(&log)));
    let id = crash["id"].as_str().unwrap().to_string();

    gate.open();
    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents().into_iter().find(|i| {
            i["id"] == id.as_str()
                && i["signals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == "daytwo.k8s.service.no_endpoints")
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "the Service's endpoint loss did not join the pod's incident; incidents: {:#?}\nlog:\n{}",
            d.incidents(),
            read(&log)
        )
    });
    let causes = inc["root_causes"].as_array().unwrap();
    assert_eq!(causes[0]["entity"]["kind"], "container", "{inc:#}");
    assert_eq!(
        causes[0]["entity"]["name"], "shop/checkout-7d4b9c8f6-x2x9k/app",
        "{inc:#}"
    );
    let cascade = causes
        .iter()
        .find(|h| h["rule"] == "kubernetes.service_backend_failing")
        .unwrap_or_else(|| panic!("{inc:#}"));
    assert_eq!(
        cascade["entity"]["name"], "shop/checkout-7d4b9c8f6-x2x9k/app",
        "{inc:#}"
    );
    assert!(
        cascade["explanation"]
            .as_str()
            .unwrap()
            .contains("Service shop/checkout has no ready endpoint"),
        "{cascade:#}"
    );
    let lost = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "daytwo.k8s.service.no_endpoints")
        .unwrap();
    assert_eq!(
        lost["attributes"]["daytwo.k8s.endpoints.pods"],
        serde_json::json!(["checkout-7d4b9c8f6-x2x9k"])
    );
    assert_eq!(
        lost["attributes"]["daytwo.k8s.endpoints.nodes"],
        serde_json::json!(["node-1"])
    );
    // One page: no incident of its own for the Service.
    let all = d.incidents();
    assert_eq!(all.len(), 1, "{all:#?}");
    // The collector watched Services (for the analyzers) once, cluster-wide.
    assert!(!api.requests_for("/api/v1/services").is_empty());
    drop(d);
}

/// k8sgpt's configuration analyzers end to end: an Ingress whose backend Service, TLS Secret
/// and IngressClass do not exist, and a Deployment with no ready replica past its grace
/// period, each become an incident through the Kubernetes rules; what is fine (the
/// Services, classes and Secrets that do exist) does not.
#[test]
fn configuration_findings_and_unavailable_deployments_become_incidents() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    no_pending_pods(&api);
    api.push_list(
        "/apis/networking.k8s.io/v1/ingresses",
        list(
            "Ingress",
            "networking.k8s.io/v1",
            "105002",
            vec![fixture("ingresses.json", "broken")],
        ),
    );
    // Later (the test opens the gate) the Ingress is fixed: its findings clear.
    let fixed = Gate::new();
    api.push_watch(
        "/apis/networking.k8s.io/v1/ingresses",
        WatchSession::new(WatchEnd::Hold)
            .after(&fixed)
            .event("MODIFIED", fixture("ingresses.json", "ok")),
    );
    api.push_list(
        "/apis/networking.k8s.io/v1/ingressclasses",
        list(
            "IngressClass",
            "networking.k8s.io/v1",
            "100101",
            vec![fixture("ingressclasses.json", "nginx")],
        ),
    );
    api.push_list(
        "/api/v1/services",
        list(
            "Service",
            "v1",
            "104001",
            vec![fixture("services.json", "checkout")],
        ),
    );
    api.push_list(
        "/api/v1/secrets",
        list(
            "Secret",
            "v1",
            "104160",
            vec![fixture("config.json", "secret_tls")],
        ),
    );
    api.push_list(
        "/apis/apps/v1/deployments",
        list(
            "Deployment",
            "apps/v1",
            "7120",
            vec![fixture("deployments.json", "unavailable")],
        ),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let log = tmp.path().join("daytwo.log");
    let mut args = up_args(&tmp.path().join("data"), &kubeconfig);
    args.extend(
        [
            "--kube-analyze-interval-ms",
            "200",
            "--kube-replicas-grace-secs",
            "1",
        ]
        .map(String::from),
    );
    let d = Daytwo::start(&args, &log, true);
    let rules = [
        "kubernetes.ingress_misconfigured",
        "kubernetes.deployment_unavailable",
    ];
    let incidents = wait_for(Duration::from_secs(30), || {
        let all = d.incidents();
        (rules
            .iter()
            .all(|r| {
                all.iter().any(|i| {
                    i["root_causes"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|h| h["rule"] == *r)
                })
            })
            // The analyzers judge each kind once its first list is in: the three Ingress
            // findings may come in more than one tick.
            && all
                .iter()
                .flat_map(|i| i["signals"].as_array().unwrap())
                .filter(|s| s["name"] == "daytwo.k8s.misconfiguration")
                .count()
                >= 3)
            .then_some(all)
    })
    .unwrap_or_else(|| {
        panic!(
            "no analyzer incidents; incidents: {:#?}\nlog:\n{}",
            d.incidents(),
            read(&log)
        )
    });
    let hypotheses: Vec<&Value> = incidents
        .iter()
        .flat_map(|i| i["root_causes"].as_array().unwrap())
        .collect();
    // The Ingress's three findings are signals of one incident (one rule, one Ingress; a
    // host-less warning may also join the namespace's open incident, here the Deployment's).
    let with_findings: Vec<&Value> = incidents
        .iter()
        .filter(|i| {
            i["signals"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["name"] == "daytwo.k8s.misconfiguration")
        })
        .collect();
    assert_eq!(with_findings.len(), 1, "{incidents:#?}");
    let ingress = with_findings[0]["root_causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["rule"] == "kubernetes.ingress_misconfigured")
        .unwrap();
    assert_eq!(ingress["entity"]["attributes"]["k8s.ingress.name"], "shop");
    let messages: Vec<&str> = with_findings[0]["signals"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"] == "daytwo.k8s.misconfiguration")
        .filter_map(|s| s["message"].as_str())
        .collect();
    assert_eq!(messages.len(), 3, "{messages:#?}");
    let all_text = messages.join("\n");
    for want in [
        "the Service shop/api, which does not exist",
        "the IngressClass traefik, which does not exist",
        "the Secret shop/shop-tls-2027",
    ] {
        assert!(all_text.contains(want), "{want}: {all_text}");
    }
    // The backend that exists (checkout) is no finding.
    assert!(!all_text.contains("shop/checkout"), "{all_text}");
    let dep = hypotheses
        .iter()
        .find(|h| h["rule"] == "kubernetes.deployment_unavailable")
        .unwrap();
    assert_eq!(
        dep["entity"]["attributes"]["k8s.deployment.name"],
        "checkout"
    );
    assert!(
        dep["explanation"]
            .as_str()
            .unwrap()
            .contains("0 of 3 replicas ready"),
        "{dep:#}"
    );
    // Findings are emitted once, not per tick: the analyzers' signal count stays put.
    let analyzer_signals = || -> f64 {
        get(&format!("{}/metrics", d.server()))
            .map(|(_, body)| {
                body.lines()
                    .filter(|l| {
                        l.starts_with("daytwo_collector_kube_signals_total")
                            && l.contains("resource=\"analyzers\"")
                    })
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum()
            })
            .unwrap_or(0.0)
    };
    let before = analyzer_signals();
    assert_eq!(before, 4.0, "3 Ingress findings and 1 Deployment");
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(analyzer_signals(), before);

    // Fixed: each finding clears once, and the clearing joins the incident that holds it.
    fixed.open();
    let cleared = wait_for(Duration::from_secs(30), || {
        let n = d
            .incidents()
            .iter()
            .flat_map(|i| i["signals"].as_array().unwrap().clone())
            .filter(|s| s["name"] == "daytwo.k8s.misconfiguration_cleared")
            .count();
        (n >= 3).then_some(n)
    })
    .unwrap_or_else(|| panic!("no cleared findings; incidents: {:#?}", d.incidents()));
    assert_eq!(cleared, 3);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(analyzer_signals(), before + 3.0);
    drop(d);
}

/// A PersistentVolumeClaim that cannot be provisioned, and the Pending pod that mounts it:
/// the collector's Pending-pod watch knows the pod's claims, so the kubelet's FailedMount
/// event about it carries them, joins the claim's ProvisioningFailed through `mounts`, and
/// the one incident names the claim as the cause.
#[test]
fn a_failed_claim_and_the_pending_pod_that_mounts_it_are_one_incident_on_the_claim() {
    let rt = runtime();
    let api = rt.block_on(FakeApiServer::start()).unwrap();
    api.push_list(
        PENDING_PODS,
        list(
            "Pod",
            "v1",
            "104810",
            vec![fixture("pods.json", "mounts_claims")],
        ),
    );
    let stamp = |mut e: Value, t: String| {
        e["firstTimestamp"] = Value::from(t.clone());
        e["lastTimestamp"] = Value::from(t);
        e
    };
    let provisioning = stamp(
        fixture("events.json", "provisioning_failed"),
        rfc3339_now_plus(-60),
    );
    let mount = stamp(
        fixture("events.json", "failed_mount_claim"),
        rfc3339_now_plus(0),
    );
    // The events come once the collector holds the Pending pods (its watch follows the list).
    let listed = Gate::new();
    api.push_list("/api/v1/events", list("Event", "v1", "5000", vec![]));
    api.push_watch(
        "/api/v1/events",
        WatchSession::new(WatchEnd::Hold)
            .after(&listed)
            .event("ADDED", provisioning)
            .event("ADDED", mount),
    );
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = api.write_kubeconfig(tmp.path()).unwrap();
    let log = tmp.path().join("daytwo.log");
    let d = Daytwo::start(&up_args(&tmp.path().join("data"), &kubeconfig), &log, true);
    assert!(
        wait_until(Duration::from_secs(30), || api
            .requests_for("/api/v1/pods")
            .iter()
            .any(|r| r.is_watch()
                && r.query.get("fieldSelector").map(String::as_str)
                    == Some("status.phase=Pending"))),
        "no Pending-pod watch; log:\n{}",
        read(&log)
    );
    listed.open();
    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents().into_iter().find(|i| {
            i["root_causes"][0]["rule"] == "cascades.volume_claim_failed"
                && i["signals"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|s| s["name"] == "daytwo.k8s.pod.volume_failed")
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident rooted on the claim; incidents: {:#?}\nlog:\n{}",
            d.incidents(),
            read(&log)
        )
    });
    let cause = &inc["root_causes"][0];
    assert_eq!(cause["entity"]["kind"], "volume", "{inc:#}");
    assert_eq!(cause["entity"]["name"], "shop/data-db-0", "{inc:#}");
    let explanation = cause["explanation"].as_str().unwrap();
    assert!(explanation.contains("pod shop/db-0"), "{explanation}");
    assert!(explanation.contains("fast-ssd"), "{explanation}");
    let mount = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "daytwo.k8s.pod.volume_failed")
        .unwrap();
    assert_eq!(
        mount["resource"]["daytwo.k8s.pod.claims"],
        serde_json::json!(["data-db-0", "db-0-scratch"]),
        "{mount:#}"
    );
    // One incident: the pod's failure did not open one of its own.
    let all = d.incidents();
    assert_eq!(all.len(), 1, "{all:#?}");
    drop(d);
}
