//! The watch loop against the fake API server: list, watch from the list's resourceVersion,
//! a stream cut mid-line (resume from the last resourceVersion seen), a `410 Gone` ERROR
//! event (re-list), and no duplicate signal across any of it.

use daytwo_k8s::fake::{FakeApiServer, WatchEnd, WatchSession, list};
use daytwo_k8s::map::pod::PodMapper;
use daytwo_k8s::watch::{self, Backoff, Watch, WatchMetrics};
use daytwo_k8s::{Context, Tracker, names};
use daytwo_model::Signal;
use k8s_openapi::api::core::v1::Pod;
use kube::runtime::watcher;
use serde_json::Value;
use std::collections::HashSet;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

fn fixture(file: &str, name: &str) -> Value {
    let path = format!(
        "{}/../tests/fixtures/kubernetes/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    let all: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    all[name].clone()
}

struct Running {
    api: FakeApiServer,
    rx: mpsc::Receiver<Vec<Signal>>,
    stop: CancellationToken,
    metrics: WatchMetrics,
    task: tokio::task::JoinHandle<()>,
}

async fn start(api: FakeApiServer) -> Running {
    let config = kube::Config::new(api.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    let ctx = Context {
        cluster: Some("test".into()),
        host: None,
        max_age: Duration::from_secs(10 * 365 * 86400),
    };
    let (tx, rx) = mpsc::channel(16);
    let metrics = WatchMetrics::new("test").unwrap();
    let stop = CancellationToken::new();
    let w = Watch {
        resource: "pods",
        api: kube::Api::<Pod>::all(client),
        config: watcher::Config::default().fields("spec.nodeName=node-1"),
        tracker: Tracker::new(PodMapper::new(ctx)),
    };
    let backoff = Backoff {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(50),
    };
    let task = tokio::spawn(watch::run(
        w,
        tx,
        metrics.clone(),
        backoff,
        stop.clone(),
        |_| {},
    ));
    Running {
        api,
        rx,
        stop,
        metrics,
        task,
    }
}

impl Running {
    /// Signals until `n` arrived (panics after 10 s).
    async fn take(&mut self, n: usize) -> Vec<Signal> {
        let mut out = Vec::new();
        while out.len() < n {
            match tokio::time::timeout(Duration::from_secs(10), self.rx.recv()).await {
                Ok(Some(s)) => out.extend(s),
                _ => panic!(
                    "only {} of {n} signals: {out:#?}\nrequests: {:#?}",
                    out.len(),
                    self.api.requests()
                ),
            }
        }
        out
    }

    /// Waits until the fake saw `n` requests for pods.
    async fn requests(&self, n: usize) -> Vec<daytwo_k8s::fake::Recorded> {
        for _ in 0..500 {
            let r = self.api.requests_for("/api/v1/pods");
            if r.len() >= n {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("fewer than {n} requests: {:#?}", self.api.requests());
    }

    async fn stop(mut self) -> Vec<Signal> {
        // Nothing more may come: drain what is left after the last expected request.
        tokio::time::sleep(Duration::from_millis(200)).await;
        self.stop.cancel();
        self.task.await.unwrap();
        let mut rest = Vec::new();
        while let Ok(s) = self.rx.try_recv() {
            rest.extend(s);
        }
        rest
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_stream_and_410_resume_and_relist_without_duplicates() {
    let api = FakeApiServer::start().await.unwrap();
    let pods = "/api/v1/pods";
    api.push_list(
        pods,
        list("Pod", "v1", "100", vec![fixture("pods.json", "running")]),
    );
    // Watch 1: the pod crash-loops, then the connection drops in the middle of a line.
    api.push_watch(
        pods,
        WatchSession::new(WatchEnd::Close)
            .event("MODIFIED", fixture("pods.json", "crashloop"))
            .raw("{\"type\":\"MODIFIED\",\"object\":{\"kind\":\"Po"),
    );
    // Watch 2 (resumed): the API server has compacted past our version: 410 Gone.
    api.push_watch(pods, WatchSession::new(WatchEnd::Close).gone("104388"));
    // Re-list: the same crash-looping pod again, nothing new.
    api.push_list(
        pods,
        list("Pod", "v1", "200", vec![fixture("pods.json", "crashloop")]),
    );
    // Watch 3: the same object re-delivered, then a real change (another restart).
    api.push_watch(
        pods,
        WatchSession::new(WatchEnd::Hold)
            .event("MODIFIED", fixture("pods.json", "crashloop"))
            .event("MODIFIED", fixture("pods.json", "restarted")),
    );
    let mut r = start(api).await;
    let first = r.take(2).await;
    let mut got: Vec<&str> = first.iter().map(|s| s.name.as_str()).collect();
    got.sort();
    assert_eq!(got, [names::CONTAINER_TERMINATED, names::CONTAINER_WAITING]);
    let second = r.take(1).await;
    assert_eq!(second[0].name, names::CONTAINER_TERMINATED);
    assert_eq!(second[0].attributes[names::RESTART_COUNT], 4);

    let reqs = r.requests(5).await;
    let summary: Vec<(bool, Option<&str>)> = reqs
        .iter()
        .map(|q| {
            (
                q.is_watch(),
                q.query.get("resourceVersion").map(String::as_str),
            )
        })
        .collect();
    // list, watch from the list's version, resume from the last object's version after the
    // cut, re-list after 410, watch from the new list's version.
    assert!(!summary[0].0, "a list first");
    assert_eq!(summary[1], (true, Some("100")));
    assert_eq!(summary[2], (true, Some("104388")));
    assert!(!summary[3].0, "a re-list after 410");
    assert_eq!(summary[4], (true, Some("200")));
    for q in &reqs {
        assert_eq!(q.query["fieldSelector"], "spec.nodeName=node-1");
    }
    let metrics = r.metrics.clone();
    let rest = r.stop().await;
    assert!(rest.is_empty(), "unexpected: {rest:#?}");
    let ids: HashSet<&String> = first.iter().chain(&second).map(|s| &s.id).collect();
    assert_eq!(ids.len(), 3, "no duplicates");
    assert_eq!(metrics.relists.with_label_values(&["pods"]).get(), 2);
    assert!(metrics.errors.with_label_values(&["pods"]).get() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_reports_what_changed_while_the_watch_was_down() {
    let api = FakeApiServer::start().await.unwrap();
    let pods = "/api/v1/pods";
    api.push_list(
        pods,
        list("Pod", "v1", "100", vec![fixture("pods.json", "running")]),
    );
    api.push_watch(pods, WatchSession::new(WatchEnd::Close).gone("100"));
    // While we were away the pod was OOM-killed.
    api.push_list(
        pods,
        list("Pod", "v1", "300", vec![fixture("pods.json", "oomkilled")]),
    );
    let mut r = start(api).await;
    let s = r.take(1).await;
    assert_eq!(s[0].name, names::CONTAINER_TERMINATED);
    assert_eq!(s[0].attributes[names::LAST_TERMINATED_REASON], "OOMKilled");
    r.requests(4).await;
    assert!(r.stop().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_list_is_retried_until_it_answers() {
    let api = FakeApiServer::start().await.unwrap();
    let pods = "/api/v1/pods";
    // Not JSON of a list: the first list fails to decode and is retried after backoff.
    api.push_list(pods, serde_json::json!({"kind": "Status", "code": 500}));
    api.push_list(
        pods,
        list("Pod", "v1", "100", vec![fixture("pods.json", "crashloop")]),
    );
    let mut r = start(api).await;
    let s = r.take(2).await;
    assert!(s.iter().any(|s| s.name == names::CONTAINER_WAITING));
    assert!(r.metrics.errors.with_label_values(&["pods"]).get() >= 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_object_is_counted_and_the_watch_goes_on() {
    let api = FakeApiServer::start().await.unwrap();
    let pods = "/api/v1/pods";
    api.push_list(
        pods,
        list("Pod", "v1", "100", vec![fixture("pods.json", "running")]),
    );
    // A pod whose restartCount is a string: not a Pod this client can decode.
    let mut bad = fixture("pods.json", "crashloop");
    bad["status"]["containerStatuses"][0]["restartCount"] = Value::from("three");
    api.push_watch(
        pods,
        WatchSession::new(WatchEnd::Hold)
            .event("MODIFIED", bad)
            .event("MODIFIED", fixture("pods.json", "oomkilled")),
    );
    let mut r = start(api).await;
    let s = r.take(1).await;
    assert_eq!(s[0].attributes[names::LAST_TERMINATED_REASON], "OOMKilled");
    assert!(r.metrics.errors.with_label_values(&["pods"]).get() >= 1);
    assert!(r.stop().await.is_empty());
}
