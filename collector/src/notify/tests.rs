//! Delivery tests against a real HTTP receiver on 127.0.0.1, with the outbox in a real redb
//! file. Durations are small so the suite takes seconds; no test asserts a duration, and the
//! polling deadline only turns a hang into a failure.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use daytwo_model::{Entity, EntityKind, Hypothesis, Incident, IncidentStatus, Severity, Timestamp};
use hmac::{Hmac, Mac};
use redb::Database;
use sha2::Sha256;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::*;

// ---- a webhook receiver that answers from a script and records what it got ----

#[derive(Clone, Debug)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
    /// What the receiver answered.
    status: u16,
}

impl Received {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn delivery(&self) -> String {
        self.header("x-daytwo-delivery").unwrap_or("").to_string()
    }
    fn event(&self) -> String {
        self.header("x-daytwo-event").unwrap_or("").to_string()
    }
    fn incident_id(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap();
        v["incident"]["id"].as_str().unwrap().to_string()
    }
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

#[derive(Default)]
struct Script {
    /// Answers for the next requests, in order; then `otherwise`.
    next: VecDeque<u16>,
    otherwise: u16,
    got: Vec<Received>,
}

struct TestReceiver {
    url: String,
    script: Arc<Mutex<Script>>,
    server: JoinHandle<()>,
}

impl TestReceiver {
    async fn start(next: &[u16], otherwise: u16) -> TestReceiver {
        let script = Arc::new(Mutex::new(Script {
            next: next.iter().copied().collect(),
            otherwise,
            got: Vec::new(),
        }));
        async fn hook(
            State(script): State<Arc<Mutex<Script>>>,
            headers: HeaderMap,
            body: Bytes,
        ) -> (StatusCode, &'static str) {
            let mut s = script.lock().unwrap();
            let status = s.next.pop_front().unwrap_or(s.otherwise);
            s.got.push(Received {
                headers,
                body,
                status,
            });
            let answer = if (200..300).contains(&status) {
                "ok"
            } else {
                "receiver says no\n"
            };
            (StatusCode::from_u16(status).unwrap(), answer)
        }
        let app = Router::new()
            .route("/hook", post(hook))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        TestReceiver {
            url: format!("http://{addr}/hook"),
            script,
            server,
        }
    }
    fn received(&self) -> Vec<Received> {
        self.script.lock().unwrap().got.clone()
    }
    fn answer_from_now_on(&self, status: u16) {
        let mut s = self.script.lock().unwrap();
        s.next.clear();
        s.otherwise = status;
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

// ---- fixtures ----

fn incident(id: &str) -> Incident {
    let at = Timestamp::from_unix_secs(1_795_617_015);
    Incident {
        id: id.to_string(),
        fingerprint: format!("fp-{id}"),
        status: IncidentStatus::Open,
        severity: Severity::Critical,
        opened_at: at,
        updated_at: at,
        resolved_at: None,
        title: "api-1 OOM-killed".to_string(),
        root_causes: vec![Hypothesis {
            entity: Entity::new(EntityKind::Pod, "api-1").with_attr("k8s.pod.uid", "u-1"),
            score: 0.9,
            rule: "daytwo.oom".to_string(),
            explanation: "The container hit its memory limit.".to_string(),
            remediation: "Raise the limit or find the leak.".to_string(),
            evidence: vec![],
        }],
        signals: vec![],
        links: vec![],
    }
}

fn open_db(path: &Path) -> Arc<Database> {
    Arc::new(Database::create(path).unwrap())
}

fn fast_config(receivers: Vec<Receiver>) -> NotifyConfig {
    NotifyConfig {
        receivers,
        backoff_initial: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        request_timeout: Duration::from_secs(5),
        max_age: Duration::from_secs(3600),
        // High enough that the breaker stays out of the way of the retry tests.
        breaker_failures: 1000,
        ..NotifyConfig::default()
    }
}

fn now() -> Timestamp {
    super::now()
}

/// Enqueues like the store does: in its own write transaction, then commits.
fn enqueue_committed(db: &Database, receivers: &[Receiver], event: NotifyEvent, i: &Incident) {
    enqueue_with(db, receivers, &Policy::default(), event, i, now());
}

/// The same, with a routing policy and a clock value.
fn enqueue_with(
    db: &Database,
    receivers: &[Receiver],
    policy: &Policy,
    event: NotifyEvent,
    i: &Incident,
    at: Timestamp,
) {
    let txn = db.begin_write().unwrap();
    init_tables(&txn).unwrap();
    enqueue(&txn, receivers, policy, event, i, at).unwrap();
    txn.commit().unwrap();
}

struct Running {
    shutdown: CancellationToken,
    task: JoinHandle<()>,
    handle: Handle,
    registry: prometheus::Registry,
}

fn start(db: &Arc<Database>, config: NotifyConfig) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let registry = prometheus::Registry::new();
    let notifier = Notifier::new(db.clone(), config, &registry).unwrap();
    let handle = notifier.handle();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(notifier.run(shutdown.clone()));
    Running {
        shutdown,
        task,
        handle,
        registry,
    }
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("the notifier did not stop after shutdown")
            .unwrap();
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            for m in family.get_metric() {
                let pairs: HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                if labels.iter().all(|(k, v)| pairs.get(k) == Some(v)) {
                    return m.get_counter().get_value();
                }
            }
        }
        0.0
    }
}

/// Polls `cond` until it holds; panics naming `what` if it never does.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn pending(db: &Database) -> usize {
    Notifier::pending(db).unwrap()
}

fn db_path() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    (dir, path)
}

// ---- tests ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_has_the_contract_body_headers_and_a_verifiable_signature() {
    let rx = TestReceiver::start(&[], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("pager", &rx.url, Some("s3cret".into()))];
    let inc = incident("inc-1");
    let running = start(&db, fast_config(receivers.clone()));
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &inc);
    running.handle.wake();
    eventually("the trigger is delivered and removed", || {
        rx.received().len() == 1 && pending(&db) == 0
    })
    .await;

    let got = &rx.received()[0];
    let body: serde_json::Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body.as_object().unwrap().len(), 3, "{body}");
    assert_eq!(body["version"], "1");
    assert_eq!(body["event"], "trigger");
    assert_eq!(body["incident"], serde_json::to_value(&inc).unwrap());
    assert!(
        got.body
            .starts_with(br#"{"version":"1","event":"trigger","incident":{"id":"inc-1","#),
        "{}",
        String::from_utf8_lossy(&got.body)
    );

    assert_eq!(got.header("content-type"), Some("application/json"));
    assert!(got.header("user-agent").unwrap().starts_with("daytwo/"));
    assert_eq!(got.header("x-daytwo-event"), Some("trigger"));
    assert!(!got.delivery().is_empty());

    // Verify the signature the way a receiver would, without the module's code.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"s3cret").unwrap();
    mac.update(&got.body);
    let expected: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        got.header("x-daytwo-signature"),
        Some(format!("sha256={expected}").as_str())
    );

    assert_eq!(
        running.counter(
            "daytwo_notify_sent_total",
            &[("receiver", "pager"), ("event", "trigger")]
        ),
        1.0
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_and_sends_the_same_bytes_until_a_2xx() {
    let rx = TestReceiver::start(&[500, 500], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", &rx.url, None)];
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &incident("inc-1"));
    let running = start(&db, fast_config(receivers));
    eventually("the delivery succeeds and is removed", || pending(&db) == 0).await;

    let got = rx.received();
    let statuses: Vec<u16> = got.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 500, 200]);
    assert_eq!(got.iter().filter(|r| r.ok()).count(), 1);
    assert!(got.iter().all(|r| r.delivery() == got[0].delivery()));
    assert!(got.iter().all(|r| r.body == got[0].body));
    assert!(got.iter().all(|r| r.header("x-daytwo-signature").is_none()));
    assert_eq!(
        running.counter(
            "daytwo_notify_errors_total",
            &[("receiver", "hook"), ("stage", "response")]
        ),
        2.0
    );
    assert_eq!(
        running.counter("daytwo_notify_sent_total", &[("receiver", "hook")]),
        1.0
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolve_never_overtakes_its_failed_trigger() {
    let rx = TestReceiver::start(&[500], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", &rx.url, None)];
    let inc = incident("inc-1");
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &inc);
    enqueue_committed(&db, &receivers, NotifyEvent::Resolve, &inc);
    // A backoff long enough that an unblocked resolve would certainly go out first.
    let config = NotifyConfig {
        backoff_initial: Duration::from_millis(300),
        backoff_max: Duration::from_millis(300),
        ..fast_config(receivers)
    };
    let running = start(&db, config);
    eventually("both deliveries succeed", || pending(&db) == 0).await;

    let order: Vec<(String, u16)> = rx
        .received()
        .iter()
        .map(|r| (r.event(), r.status))
        .collect();
    assert_eq!(
        order,
        [
            ("trigger".to_string(), 500),
            ("trigger".to_string(), 200),
            ("resolve".to_string(), 200)
        ]
    );
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_receiver_or_incident_does_not_hold_back_others() {
    let down = TestReceiver::start(&[], 503).await;
    let up = TestReceiver::start(&[], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let both = vec![
        Receiver::webhook("down", &down.url, None),
        Receiver::webhook("up", &up.url, None),
    ];
    let running = start(&db, fast_config(both.clone()));
    enqueue_committed(&db, &both, NotifyEvent::Trigger, &incident("inc-1"));
    enqueue_committed(&db, &both, NotifyEvent::Trigger, &incident("inc-2"));
    running.handle.wake();
    eventually(
        "the healthy receiver gets both pages while the other keeps failing",
        || {
            let ids: Vec<String> = up.received().iter().map(Received::incident_id).collect();
            ids.contains(&"inc-1".to_string()) && ids.contains(&"inc-2".to_string())
        },
    )
    .await;
    eventually("the down receiver is tried for both incidents", || {
        let ids: Vec<String> = down.received().iter().map(Received::incident_id).collect();
        ids.contains(&"inc-1".to_string()) && ids.contains(&"inc-2".to_string())
    })
    .await;
    assert!(down.received().iter().all(|r| !r.ok()));
    eventually("only the down receiver's items stay queued", || {
        pending(&db) == 2
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_delivers_what_was_queued_exactly_once_and_in_order() {
    let rx = TestReceiver::start(&[], 503).await;
    let (_dir, path) = db_path();
    let receivers = vec![Receiver::webhook("hook", &rx.url, Some("k".into()))];
    let inc = incident("inc-1");

    let db = open_db(&path);
    let running = start(&db, fast_config(receivers.clone()));
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &inc);
    enqueue_committed(&db, &receivers, NotifyEvent::Acknowledge, &inc);
    running.handle.wake();
    eventually("the trigger was tried while the receiver was down", || {
        !rx.received().is_empty()
    })
    .await;
    running.stop().await;
    // Close the database as a dying process would: every handle gone.
    eventually("the notifier released the database", || {
        Arc::strong_count(&db) == 1
    })
    .await;
    drop(db);
    assert!(rx.received().iter().all(|r| !r.ok()));

    rx.answer_from_now_on(200);
    let db = open_db(&path);
    assert_eq!(pending(&db), 2);
    let running = start(&db, fast_config(receivers));
    eventually("the queued pages are delivered after the restart", || {
        pending(&db) == 0
    })
    .await;

    let ok: Vec<Received> = rx.received().into_iter().filter(Received::ok).collect();
    let events: Vec<String> = ok.iter().map(Received::event).collect();
    assert_eq!(events, ["trigger", "acknowledge"]);
    assert_ne!(ok[0].delivery(), ok[1].delivery());
    let first_try = rx.received()[0].clone();
    assert_eq!(
        first_try.delivery(),
        ok[0].delivery(),
        "delivery id is stable"
    );
    assert_eq!(first_try.body, ok[0].body, "body is byte-identical");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gives_up_into_the_dead_letter_table_after_max_age() {
    let rx = TestReceiver::start(&[], 400).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", &rx.url, None)];
    let config = NotifyConfig {
        max_age: Duration::from_millis(300),
        ..fast_config(receivers.clone())
    };
    let inc = incident("inc-1");
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &inc);
    let running = start(&db, config);
    eventually("the delivery is dead-lettered", || {
        !Notifier::dead_letters(&db).unwrap().is_empty()
    })
    .await;
    assert_eq!(pending(&db), 0);

    let dead = Notifier::dead_letters(&db).unwrap();
    assert_eq!(dead.len(), 1);
    let d = &dead[0];
    let got = rx.received();
    assert_eq!(d.receiver, "hook");
    assert_eq!(d.event, NotifyEvent::Trigger);
    assert_eq!(d.incident_id, "inc-1");
    assert_eq!(d.attempts as usize, got.len());
    assert_eq!(d.delivery_id, got[0].delivery());
    assert_eq!(d.body.as_bytes(), &got[0].body[..]);
    let last_error = d.last_error.as_deref().unwrap();
    assert!(
        last_error.contains("400") && last_error.contains("receiver says no"),
        "{last_error}"
    );
    // Counted right after the commit the loop above observed.
    eventually("the dead letter is counted", || {
        running.counter("daytwo_notify_dead_letters_total", &[("receiver", "hook")]) == 1.0
    })
    .await;
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_enqueue_time_still_gets_its_full_retry_window() {
    // As when the collector was down for days, or the caller passed an event time.
    let rx = TestReceiver::start(&[500], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", &rx.url, None)];
    let two_days_ago = now().minus(Duration::from_secs(2 * 24 * 3600));
    let txn = db.begin_write().unwrap();
    enqueue(
        &txn,
        &receivers,
        &Policy::default(),
        NotifyEvent::Trigger,
        &incident("inc-1"),
        two_days_ago,
    )
    .unwrap();
    txn.commit().unwrap();
    let running = start(&db, fast_config(receivers));
    eventually("the delivery goes through on its retry", || {
        pending(&db) == 0
    })
    .await;
    assert!(Notifier::dead_letters(&db).unwrap().is_empty());
    let statuses: Vec<u16> = rx.received().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [500, 200]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_refused_is_retried_and_counted_as_connect() {
    // Bind then drop to get a port nothing listens on.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook(
        "gone",
        format!("http://127.0.0.1:{port}/hook"),
        None,
    )];
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &incident("inc-1"));
    let running = start(&db, fast_config(receivers));
    eventually("two failed attempts recorded and counted", || {
        let records = outbox::records(&db).unwrap();
        records[0].1.attempts >= 2
            && running.counter(
                "daytwo_notify_errors_total",
                &[("receiver", "gone"), ("stage", "connect")],
            ) >= 2.0
    })
    .await;
    assert_eq!(pending(&db), 1);
    let records = outbox::records(&db).unwrap();
    assert!(records[0].1.last_error.is_some());
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_of_an_unconfigured_receiver_are_dead_lettered_at_max_age() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let old = vec![Receiver::webhook("old", "http://127.0.0.1:9/hook", None)];
    enqueue_committed(&db, &old, NotifyEvent::Trigger, &incident("inc-1"));
    let config = NotifyConfig {
        max_age: Duration::from_millis(200),
        ..fast_config(vec![])
    };
    let running = start(&db, config);
    eventually("the orphaned item is dead-lettered", || {
        Notifier::dead_letters(&db).unwrap().len() == 1
    })
    .await;
    let dead = Notifier::dead_letters(&db).unwrap();
    assert_eq!(dead[0].attempts, 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .unwrap()
            .contains("no longer configured")
    );
    assert_eq!(pending(&db), 0);
    running.stop().await;
}

#[test]
fn enqueue_belongs_to_the_callers_transaction() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![
        Receiver::webhook("a", "http://a.example/hook", None),
        Receiver::webhook("b", "http://b.example/hook", None),
    ];
    let txn = db.begin_write().unwrap();
    init_tables(&txn).unwrap();
    init_tables(&txn).unwrap();
    txn.commit().unwrap();

    let txn = db.begin_write().unwrap();
    enqueue(
        &txn,
        &receivers,
        &Policy::default(),
        NotifyEvent::Trigger,
        &incident("x"),
        now(),
    )
    .unwrap();
    txn.abort().unwrap();
    assert_eq!(pending(&db), 0, "an aborted transaction queues nothing");

    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &incident("x"));
    enqueue_committed(&db, &receivers, NotifyEvent::Resolve, &incident("x"));
    enqueue_committed(&db, &[], NotifyEvent::Resolve, &incident("x"));
    let records = outbox::records(&db).unwrap();
    assert_eq!(records.len(), 4);
    let ids: Vec<u64> = records.iter().map(|(id, _)| *id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let mut delivery_ids: Vec<&str> = records
        .iter()
        .map(|(_, r)| r.delivery_id.as_str())
        .collect();
    delivery_ids.sort();
    delivery_ids.dedup();
    assert_eq!(delivery_ids.len(), 4);
    assert_eq!(records[0].1.receiver, "a");
    assert_eq!(records[1].1.receiver, "b");
    assert_eq!(
        records[0].1.body, records[1].1.body,
        "one snapshot for all receivers"
    );
    assert_eq!(records[2].1.event, NotifyEvent::Resolve);
}

#[test]
fn sequence_numbers_are_not_reused_once_the_outbox_empties() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let rs = vec![Receiver::webhook("a", "http://a.example/hook", None)];
    enqueue_committed(&db, &rs, NotifyEvent::Trigger, &incident("x"));
    let (first, _) = outbox::records(&db).unwrap()[0].clone();
    outbox::delivered(&db, first).unwrap();
    assert_eq!(pending(&db), 0);
    enqueue_committed(&db, &rs, NotifyEvent::Resolve, &incident("x"));
    let (second, _) = outbox::records(&db).unwrap()[0].clone();
    assert!(second > first);
}

#[test]
fn receivers_from_urls_names_them_and_rejects_bad_urls() {
    let urls = vec![
        "http://127.0.0.1:9000/hook".to_string(),
        "https://pager.example.com/in?token=x".to_string(),
        "https://third.example/".to_string(),
    ];
    let rs = receivers_from_urls(&urls, Some("k".into())).unwrap();
    let names: Vec<&str> = rs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["webhook", "webhook-2", "webhook-3"]);
    assert!(rs.iter().all(|r| r.secret.as_deref() == Some("k")));
    assert!(rs.iter().all(|r| r.kind == ReceiverKind::Webhook));
    assert!(
        receivers_from_urls(&urls[..1], Some(String::new())).unwrap()[0]
            .secret
            .is_none()
    );

    for bad in [
        "ftp://example.com/x",
        "not a url",
        "http://",
        "/just/a/path",
        "mailto:a@b.c",
    ] {
        let err = receivers_from_urls(&[urls[0].clone(), bad.to_string()], None).unwrap_err();
        assert!(
            matches!(&err, NotifyError::InvalidReceiverUrl { url, .. } if url == bad),
            "{bad}: {err}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn config_validation_catches_duplicates_and_bad_backoff() {
    assert!(NotifyConfig::default().validate().is_ok());
    let dup = NotifyConfig {
        receivers: vec![
            Receiver::webhook("a", "http://x.example/", None),
            Receiver::webhook("a", "http://y.example/", None),
        ],
        ..NotifyConfig::default()
    };
    assert!(dup.validate().unwrap_err().to_string().contains("\"a\""));
    let inverted = NotifyConfig {
        backoff_initial: Duration::from_secs(10),
        backoff_max: Duration::from_secs(1),
        ..NotifyConfig::default()
    };
    assert!(inverted.validate().is_err());
}

#[test]
fn debug_output_hides_url_and_secret() {
    let r = Receiver::webhook("a", "https://hooks.example/T0KEN", Some("s3cret".into()));
    let s = format!("{r:?}");
    assert!(!s.contains("T0KEN") && !s.contains("s3cret"), "{s}");
}

#[test]
fn events_serialise_as_their_wire_names() {
    for (e, s) in [
        (NotifyEvent::Trigger, "trigger"),
        (NotifyEvent::Acknowledge, "acknowledge"),
        (NotifyEvent::Resolve, "resolve"),
    ] {
        assert_eq!(serde_json::to_value(e).unwrap(), s);
        assert_eq!(e.as_str(), s);
    }
}

#[test]
fn metrics_register_under_their_names() {
    let (_dir, path) = db_path();
    let registry = prometheus::Registry::new();
    let n = Notifier::new(open_db(&path), NotifyConfig::default(), &registry).unwrap();
    let m = &n.shared.metrics;
    m.sent.with_label_values(&["r", "trigger"]);
    m.errors.with_label_values(&["r", "connect"]);
    m.dead_letters.with_label_values(&["r"]);
    let mut names: Vec<String> = registry
        .gather()
        .iter()
        .map(|f| f.name().to_string())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "daytwo_notify_dead_letters_total",
            "daytwo_notify_errors_total",
            "daytwo_notify_grouped_total",
            "daytwo_notify_held",
            "daytwo_notify_pending",
            "daytwo_notify_released_total",
            "daytwo_notify_repeats_total",
            "daytwo_notify_sent_total"
        ]
    );
    let again = Notifier::new(open_db_again(&n), NotifyConfig::default(), &registry);
    assert!(matches!(
        again,
        Err(NotifyError::MetricsRegistrationFailed(_))
    ));
}

fn open_db_again(n: &Notifier) -> Arc<Database> {
    n.shared.db.clone()
}

// ---- routing, silences, breaker, fallback, dead-letter retry ----

fn silence_everything(comment: &str) -> Policy {
    let t = now();
    Policy {
        silences: vec![Silence {
            matcher: Matcher::default(),
            starts_at: t.minus(Duration::from_secs(60)),
            ends_at: t.plus(Duration::from_secs(3600)),
            comment: comment.into(),
        }],
        ..Default::default()
    }
}

fn events_of(db: &Database) -> Vec<(String, NotifyEvent, String)> {
    outbox::records(db)
        .unwrap()
        .into_iter()
        .map(|(_, r)| (r.receiver, r.event, r.incident_id))
        .collect()
}

impl Running {
    fn gauge(&self, name: &str, receiver: &str) -> Option<f64> {
        self.registry
            .gather()
            .into_iter()
            .find(|f| f.name() == name)?
            .get_metric()
            .iter()
            .find(|m| m.get_label().iter().any(|l| l.value() == receiver))
            .map(|m| m.get_gauge().get_value())
    }
}

#[test]
fn a_silenced_trigger_is_not_queued_and_gets_no_lone_resolve() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", "http://127.0.0.1:9/x", None)];
    let silenced = silence_everything("planned upgrade");
    let inc = incident("inc-1");
    enqueue_with(
        &db,
        &receivers,
        &silenced,
        NotifyEvent::Trigger,
        &inc,
        now(),
    );
    assert!(events_of(&db).is_empty(), "the trigger is held back");
    // Acknowledged and resolved while silenced: no lone follow-ups, and nothing held to send
    // once the silence is over.
    enqueue_committed(&db, &receivers, NotifyEvent::Acknowledge, &inc);
    enqueue_committed(&db, &receivers, NotifyEvent::Resolve, &inc);
    let later = now().plus(Duration::from_secs(7200));
    outbox::housekeep(&db, &receivers, &Policy::default(), later).unwrap();
    assert!(events_of(&db).is_empty(), "{:?}", events_of(&db));
}

#[test]
fn a_resolve_still_goes_out_when_the_silence_began_after_the_trigger() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", "http://127.0.0.1:9/x", None)];
    let inc = incident("inc-1");
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &inc);
    let silenced = silence_everything("maintenance");
    enqueue_with(
        &db,
        &receivers,
        &silenced,
        NotifyEvent::Resolve,
        &inc,
        now(),
    );
    let other = incident("inc-2");
    enqueue_with(
        &db,
        &receivers,
        &silenced,
        NotifyEvent::Trigger,
        &other,
        now(),
    );
    assert_eq!(
        events_of(&db),
        [
            ("hook".into(), NotifyEvent::Trigger, "inc-1".into()),
            ("hook".into(), NotifyEvent::Resolve, "inc-1".into()),
        ]
    );
}

#[test]
fn follow_ups_go_to_the_receivers_the_trigger_was_routed_to() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![
        Receiver::webhook("critical", "http://127.0.0.1:9/x", None),
        Receiver::webhook("other", "http://127.0.0.1:9/y", None),
    ];
    let route = |sev: Option<&str>, to: &str| {
        Route::to(
            Matcher {
                severity: sev.map(String::from),
                ..Default::default()
            },
            &[to],
        )
    };
    let routed = Policy {
        routes: vec![route(Some("critical"), "critical"), route(None, "other")],
        ..Default::default()
    };
    let inc = incident("inc-1"); // critical
    enqueue_with(&db, &receivers, &routed, NotifyEvent::Trigger, &inc, now());
    // Routes change before the resolve: it still follows the trigger.
    enqueue_committed(&db, &receivers, NotifyEvent::Resolve, &inc);
    assert_eq!(
        events_of(&db),
        [
            ("critical".into(), NotifyEvent::Trigger, "inc-1".into()),
            ("critical".into(), NotifyEvent::Resolve, "inc-1".into()),
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_breaker_opens_copies_to_the_fallback_once_then_probes_and_closes() {
    let primary = TestReceiver::start(&[], 503).await;
    let fallback = TestReceiver::start(&[], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let mut p = Receiver::webhook("primary", &primary.url, None);
    p.fallback = Some("backup".into());
    let receivers = vec![p, Receiver::webhook("backup", &fallback.url, None)];
    let only_primary = Policy {
        routes: vec![Route::to(Matcher::default(), &["primary"])],
        ..Default::default()
    };
    let config = NotifyConfig {
        breaker_failures: 3,
        breaker_cooldown: Duration::from_millis(200),
        policy: only_primary.clone(),
        ..fast_config(receivers.clone())
    };
    let running = start(&db, config);
    let inc = incident("inc-1");
    enqueue_with(
        &db,
        &receivers,
        &only_primary,
        NotifyEvent::Trigger,
        &inc,
        now(),
    );
    running.handle.wake();
    eventually("the breaker opens", || {
        running.gauge("daytwo_notify_breaker_open", "primary") == Some(1.0)
    })
    .await;
    eventually("the fallback gets the trigger", || {
        fallback
            .received()
            .iter()
            .any(|r| r.ok() && r.event() == "trigger")
    })
    .await;
    enqueue_committed(&db, &receivers, NotifyEvent::Resolve, &inc);
    running.handle.wake();
    eventually("the fallback gets the resolve too", || {
        fallback
            .received()
            .iter()
            .any(|r| r.ok() && r.event() == "resolve")
    })
    .await;
    let probes_before = primary.received().len();
    eventually("the primary keeps being probed", || {
        primary.received().len() >= probes_before + 2
    })
    .await;
    primary.answer_from_now_on(200);
    eventually("the primary takes both, the breaker closes", || {
        pending(&db) == 0 && running.gauge("daytwo_notify_breaker_open", "primary") == Some(0.0)
    })
    .await;
    let fb: Vec<String> = fallback.received().iter().map(Received::event).collect();
    assert_eq!(fb, ["trigger", "resolve"], "each copied once, in order");
    let ok: Vec<String> = primary
        .received()
        .iter()
        .filter(|r| r.ok())
        .map(Received::event)
        .collect();
    assert_eq!(ok, ["trigger", "resolve"]);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_can_be_queued_again_and_is_then_delivered() {
    let rx = TestReceiver::start(&[], 503).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", &rx.url, None)];
    let config = NotifyConfig {
        max_age: Duration::from_millis(200),
        ..fast_config(receivers.clone())
    };
    let running = start(&db, config);
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &incident("inc-1"));
    running.handle.wake();
    eventually("it is dead-lettered", || {
        Notifier::dead_letters(&db).unwrap().len() == 1
    })
    .await;
    let dead = Notifier::dead_letters(&db).unwrap().remove(0);
    rx.answer_from_now_on(200);
    assert!(
        running
            .handle
            .retry_dead_letter(&db, 999_999)
            .unwrap()
            .is_none()
    );
    let again = running
        .handle
        .retry_dead_letter(&db, dead.id)
        .unwrap()
        .unwrap();
    assert_eq!(again.delivery_id, dead.delivery_id);
    eventually("the retry is delivered", || {
        rx.received().iter().any(|r| r.ok()) && pending(&db) == 0
    })
    .await;
    assert!(Notifier::dead_letters(&db).unwrap().is_empty());
    let ok = rx.received().into_iter().find(|r| r.ok()).unwrap();
    assert_eq!(ok.delivery(), dead.delivery_id);
    running.stop().await;
}

#[test]
fn config_validation_names_the_field_for_provider_receivers() {
    let mut pd = Receiver::new(
        "pd",
        ReceiverKind::Pagerduty,
        "https://events.pagerduty.com/v2/enqueue",
    );
    let cfg = |r: Vec<Receiver>| NotifyConfig {
        receivers: r,
        ..NotifyConfig::default()
    };
    let e = cfg(vec![pd.clone()]).validate().unwrap_err().to_string();
    assert!(e.contains("collector.receivers[0].routing_key"), "{e}");
    pd.routing_key = Some("k".into());
    pd.fallback = Some("nobody".into());
    let e = cfg(vec![pd.clone()]).validate().unwrap_err().to_string();
    assert!(e.contains("collector.receivers[0].fallback"), "{e}");
    pd.fallback = None;
    let mut og = Receiver::new("og", ReceiverKind::Opsgenie, "https://api.opsgenie.com");
    og.routing_key = Some("k".into());
    let e = cfg(vec![pd.clone(), og])
        .validate()
        .unwrap_err()
        .to_string();
    assert!(e.contains("collector.receivers[1].api_key"), "{e}");
}

// ---- held triggers, stored silences, grouping and repeats (clock values, no loop) ----

/// Stores `i` as the store does (the housekeeping pass reads incidents from there).
fn store_incident(db: &Database, i: &Incident) {
    let txn = db.begin_write().unwrap();
    crate::store::put_incident(&txn, i).unwrap();
    txn.commit().unwrap();
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_secs(1_800_000_000 + secs)
}

fn bodies_of(db: &Database) -> Vec<(String, serde_json::Value)> {
    outbox::records(db)
        .unwrap()
        .into_iter()
        .map(|(_, r)| (r.receiver, serde_json::from_str(&r.body).unwrap()))
        .collect()
}

fn in_cluster(id: &str, cluster: &str) -> Incident {
    let mut i = incident(id);
    i.root_causes[0].entity = i.root_causes[0]
        .entity
        .clone()
        .with_attr("k8s.cluster.name", cluster);
    i
}

#[test]
fn a_held_trigger_goes_out_when_its_silence_ends_if_the_incident_is_still_open() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", "http://127.0.0.1:9/x", None)];
    let policy = Policy {
        silences: vec![Silence {
            matcher: Matcher::default(),
            starts_at: at(0),
            ends_at: at(100),
            comment: "upgrade".into(),
        }],
        ..Default::default()
    };
    let open = incident("still-open");
    let mut acked = incident("acked");
    store_incident(&db, &open);
    store_incident(&db, &acked);
    enqueue_with(
        &db,
        &receivers,
        &policy,
        NotifyEvent::Trigger,
        &open,
        at(10),
    );
    enqueue_with(
        &db,
        &receivers,
        &policy,
        NotifyEvent::Trigger,
        &acked,
        at(10),
    );
    assert!(events_of(&db).is_empty());
    let h = outbox::housekeep(&db, &receivers, &policy, at(50)).unwrap();
    assert_eq!(h.released, 0);
    assert!(events_of(&db).is_empty(), "still silenced");
    // Acknowledged during the silence: someone is on it, no late page.
    acked.status = IncidentStatus::Acknowledged;
    store_incident(&db, &acked);
    enqueue_with(
        &db,
        &receivers,
        &policy,
        NotifyEvent::Acknowledge,
        &acked,
        at(60),
    );
    let h = outbox::housekeep(&db, &receivers, &policy, at(100)).unwrap();
    assert_eq!(h.released, 1);
    assert_eq!(
        events_of(&db),
        [("hook".into(), NotifyEvent::Trigger, "still-open".into())]
    );
    // Released once; its resolve follows it.
    outbox::housekeep(&db, &receivers, &policy, at(200)).unwrap();
    enqueue_with(
        &db,
        &receivers,
        &policy,
        NotifyEvent::Resolve,
        &open,
        at(300),
    );
    assert_eq!(events_of(&db).len(), 2);
    assert_eq!(events_of(&db)[1].1, NotifyEvent::Resolve);
}

#[test]
fn a_stored_silence_holds_until_it_is_expired() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", "http://127.0.0.1:9/x", None)];
    let i = in_cluster("inc-1", "eu-1");
    let other = in_cluster("inc-2", "us-1");
    store_incident(&db, &i);
    store_incident(&db, &other);
    {
        let txn = db.begin_write().unwrap();
        init_tables(&txn).unwrap();
        txn.commit().unwrap();
    }
    let handle = Handle::new(receivers.clone(), Policy::default());
    let s = handle
        .add_silence(
            &db,
            silence::NewSilence {
                matcher: Matcher {
                    cluster: Some("eu-1".into()),
                    ..Default::default()
                },
                duration_secs: Some(3600),
                created_by: "alice".into(),
                comment: "CHG-7".into(),
                ..Default::default()
            },
        )
        .unwrap();
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &i);
    enqueue_committed(&db, &receivers, NotifyEvent::Trigger, &other);
    assert_eq!(
        events_of(&db),
        [("hook".into(), NotifyEvent::Trigger, "inc-2".into())],
        "only the other cluster pages"
    );
    outbox::housekeep(&db, &receivers, &Policy::default(), now()).unwrap();
    assert_eq!(events_of(&db).len(), 1, "still silenced");
    handle.expire_silence(&db, &s.id).unwrap().unwrap();
    let h = outbox::housekeep(&db, &receivers, &Policy::default(), now()).unwrap();
    assert_eq!(h.released, 1);
    assert_eq!(
        events_of(&db)[1],
        ("hook".into(), NotifyEvent::Trigger, "inc-1".into())
    );
}

#[test]
fn chatty_receivers_get_one_message_per_group_and_pagers_one_alert_per_incident() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let mut pd = Receiver::new(
        "pd",
        ReceiverKind::Pagerduty,
        "http://127.0.0.1:9/v2/enqueue",
    );
    pd.routing_key = Some("k".into());
    let receivers = vec![Receiver::webhook("chat", "http://127.0.0.1:9/x", None), pd];
    let policy = Policy {
        routes: vec![Route {
            group_by: vec!["cluster".into()],
            group_wait_secs: Some(30),
            group_interval_secs: Some(300),
            ..Route::to(Matcher::default(), &["chat", "pd"])
        }],
        ..Default::default()
    };
    let (i1, i2, i3) = (
        in_cluster("i1", "eu"),
        in_cluster("i2", "eu"),
        in_cluster("i3", "us"),
    );
    let early = in_cluster("early-resolved", "eu");
    for i in [&i1, &i2, &i3, &early] {
        store_incident(&db, i);
        enqueue_with(&db, &receivers, &policy, NotifyEvent::Trigger, i, at(0));
    }
    let pd_now: Vec<_> = events_of(&db).into_iter().map(|e| (e.0, e.2)).collect();
    assert_eq!(pd_now.len(), 4);
    assert!(pd_now.iter().all(|(r, _)| r == "pd"), "{pd_now:?}");
    // Resolved before its group went out: the chat receiver never hears of it.
    enqueue_with(
        &db,
        &receivers,
        &policy,
        NotifyEvent::Resolve,
        &early,
        at(5),
    );
    outbox::housekeep(&db, &receivers, &policy, at(29)).unwrap();
    assert_eq!(bodies_of(&db).iter().filter(|b| b.0 == "chat").count(), 0);
    let h = outbox::housekeep(&db, &receivers, &policy, at(30)).unwrap();
    assert_eq!(h.flushed, 2);
    let chat: Vec<serde_json::Value> = bodies_of(&db)
        .into_iter()
        .filter(|b| b.0 == "chat")
        .map(|b| b.1)
        .collect();
    assert_eq!(chat.len(), 2, "one message per cluster");
    let eu = chat
        .iter()
        .find(|b| b["group"]["labels"]["cluster"] == "eu")
        .unwrap();
    assert_eq!(eu["event"], "trigger");
    assert_eq!(eu["group"]["count"], 2);
    assert_eq!(eu["incident"]["id"], "i1");
    let ids: Vec<&str> = eu["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["i1", "i2"]);
    // A newcomer to a group that just sent waits for the group interval.
    let i4 = in_cluster("i4", "eu");
    store_incident(&db, &i4);
    enqueue_with(&db, &receivers, &policy, NotifyEvent::Trigger, &i4, at(40));
    outbox::housekeep(&db, &receivers, &policy, at(329)).unwrap();
    let chat_count = || bodies_of(&db).iter().filter(|b| b.0 == "chat").count();
    assert_eq!(chat_count(), 2);
    outbox::housekeep(&db, &receivers, &policy, at(330)).unwrap();
    assert_eq!(chat_count(), 3);
    // Follow-ups are per incident, to everyone the trigger reached.
    enqueue_with(&db, &receivers, &policy, NotifyEvent::Resolve, &i2, at(400));
    let resolves: Vec<String> = events_of(&db)
        .into_iter()
        .filter(|e| e.1 == NotifyEvent::Resolve && e.2 == "i2")
        .map(|e| e.0)
        .collect();
    assert_eq!(resolves, ["chat", "pd"]);
}

#[test]
fn an_open_unacknowledged_incident_is_repeated_until_acknowledged() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("hook", "http://127.0.0.1:9/x", None)];
    let policy = Policy {
        routes: vec![Route {
            repeat_interval_secs: Some(60),
            ..Route::to(Matcher::default(), &["hook"])
        }],
        ..Default::default()
    };
    let mut i = incident("inc-1");
    store_incident(&db, &i);
    enqueue_with(&db, &receivers, &policy, NotifyEvent::Trigger, &i, at(0));
    outbox::housekeep(&db, &receivers, &policy, at(59)).unwrap();
    assert_eq!(events_of(&db).len(), 1);
    let h = outbox::housekeep(&db, &receivers, &policy, at(60)).unwrap();
    assert_eq!(h.repeated, 1);
    assert_eq!(h.next, Some(at(120)));
    outbox::housekeep(&db, &receivers, &policy, at(120)).unwrap();
    let bodies = bodies_of(&db);
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[1].1["repeat"], 1);
    assert_eq!(bodies[2].1["repeat"], 2);
    assert_eq!(bodies[2].1["event"], "trigger");
    i.status = IncidentStatus::Acknowledged;
    store_incident(&db, &i);
    enqueue_with(
        &db,
        &receivers,
        &policy,
        NotifyEvent::Acknowledge,
        &i,
        at(130),
    );
    let h = outbox::housekeep(&db, &receivers, &policy, at(1000)).unwrap();
    assert_eq!(h.repeated, 0);
    assert_eq!(h.next, None, "nothing left to repeat");
    assert_eq!(events_of(&db).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fallback_waits_until_the_breaker_has_been_open_long_enough() {
    let primary = TestReceiver::start(&[], 503).await;
    let fallback = TestReceiver::start(&[], 200).await;
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let mut p = Receiver::webhook("primary", &primary.url, None);
    p.fallback = Some("backup".into());
    let receivers = vec![p, Receiver::webhook("backup", &fallback.url, None)];
    let only_primary = Policy {
        routes: vec![Route::to(Matcher::default(), &["primary"])],
        ..Default::default()
    };
    let config = NotifyConfig {
        breaker_failures: 2,
        breaker_cooldown: Duration::from_millis(100),
        fallback_after: Duration::from_secs(3600),
        policy: only_primary.clone(),
        ..fast_config(receivers.clone())
    };
    let running = start(&db, config);
    enqueue_with(
        &db,
        &receivers,
        &only_primary,
        NotifyEvent::Trigger,
        &incident("inc-1"),
        now(),
    );
    running.handle.wake();
    eventually("the breaker opens and probes twice", || {
        running.gauge("daytwo_notify_breaker_open", "primary") == Some(1.0)
            && primary.received().len() >= 4
    })
    .await;
    assert!(
        fallback.received().is_empty(),
        "open, but not for an hour yet: no copy"
    );
    running.stop().await;
}

#[test]
fn a_grouped_trigger_holds_back_the_follow_ups_of_every_incident_it_carries() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let receivers = vec![Receiver::webhook("chat", "http://127.0.0.1:9/x", None)];
    let policy = Policy {
        routes: vec![Route {
            group_by: vec!["cluster".into()],
            group_wait_secs: Some(1),
            ..Route::to(Matcher::default(), &["chat"])
        }],
        ..Default::default()
    };
    let (a, b) = (in_cluster("a", "eu"), in_cluster("b", "eu"));
    for i in [&a, &b] {
        store_incident(&db, i);
        enqueue_with(&db, &receivers, &policy, NotifyEvent::Trigger, i, at(0));
    }
    outbox::housekeep(&db, &receivers, &policy, at(1)).unwrap();
    enqueue_with(&db, &receivers, &policy, NotifyEvent::Resolve, &b, at(2));
    let registry = prometheus::Registry::new();
    let n = Notifier::new(db.clone(), fast_config(receivers.clone()), &registry).unwrap();
    let plan = outbox::plan(&n.shared, &HashSet::new(), at(10)).unwrap();
    let due: Vec<(NotifyEvent, String)> = plan
        .due
        .iter()
        .map(|d| (d.record.event, d.record.incident_id.clone()))
        .collect();
    assert_eq!(
        due,
        [(NotifyEvent::Trigger, "a".to_string())],
        "b's resolve waits behind the grouped trigger that carries b"
    );
    assert_eq!(plan.due[0].record.incident_ids, ["b"]);
    assert_eq!(plan.pending, 2);
}

mod properties {
    //! Whatever the order of opens, acks, resolves and clock ticks, with groups and a silence in
    //! play: every receiver gets at most one trigger per incident, an incident still open at the
    //! end got exactly one, and no follow-up ever goes to a receiver before that receiver's
    //! trigger for the incident.
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Open(usize),
        Ack(usize),
        Resolve(usize),
        Tick,
    }

    fn op() -> impl Strategy<Value = (Op, u32)> {
        (
            prop_oneof![
                (0..6usize).prop_map(Op::Open),
                (0..6usize).prop_map(Op::Ack),
                (0..6usize).prop_map(Op::Resolve),
                Just(Op::Tick),
            ],
            0..120u32,
        )
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]
        #[test]
        fn one_trigger_per_incident_and_receiver_and_follow_ups_after_it(ops in proptest::collection::vec(op(), 1..40)) {
            let (_dir, path) = db_path();
            let db = open_db(&path);
            let mut pd = Receiver::new("pd", ReceiverKind::Pagerduty, "http://127.0.0.1:9/v2/enqueue");
            pd.routing_key = Some("k".into());
            let receivers = vec![Receiver::webhook("chat", "http://127.0.0.1:9/x", None), pd];
            let policy = Policy {
                routes: vec![Route {
                    group_by: vec!["cluster".into()],
                    group_wait_secs: Some(30),
                    group_interval_secs: Some(60),
                    ..Route::to(Matcher::default(), &["chat", "pd"])
                }],
                silences: vec![Silence {
                    matcher: Matcher { cluster: Some("eu".into()), ..Default::default() },
                    starts_at: at(100),
                    ends_at: at(400),
                    comment: "window".into(),
                }],
                ..Default::default()
            };
            {
                let txn = db.begin_write().unwrap();
                init_tables(&txn).unwrap();
                txn.commit().unwrap();
            }
            let mut state: Vec<Option<Incident>> = vec![None; 6];
            // The last outbox sequence number before each incident's first ack or resolve: no
            // trigger for it may be queued after that.
            let mut settled: Vec<Option<u64>> = vec![None; 6];
            let last_seq = |db: &Database| outbox::records(db).unwrap().last().map_or(0, |(s, _)| *s);
            let mut t: i64 = 0;
            for (op, dt) in ops {
                t += i64::from(dt);
                match op {
                    Op::Open(n) if state[n].is_none() => {
                        let mut i = in_cluster(&format!("i{n}"), if n % 2 == 0 { "eu" } else { "us" });
                        i.opened_at = at(t);
                        store_incident(&db, &i);
                        enqueue_with(&db, &receivers, &policy, NotifyEvent::Trigger, &i, at(t));
                        state[n] = Some(i);
                    }
                    Op::Ack(n) => {
                        if let Some(i) = state[n].as_mut().filter(|i| i.status == IncidentStatus::Open) {
                            settled[n].get_or_insert(last_seq(&db));
                            i.status = IncidentStatus::Acknowledged;
                            store_incident(&db, i);
                            enqueue_with(&db, &receivers, &policy, NotifyEvent::Acknowledge, i, at(t));
                        }
                    }
                    Op::Resolve(n) => {
                        if let Some(i) = state[n].as_mut().filter(|i| i.status.is_active()) {
                            settled[n].get_or_insert(last_seq(&db));
                            i.status = IncidentStatus::Resolved;
                            store_incident(&db, i);
                            enqueue_with(&db, &receivers, &policy, NotifyEvent::Resolve, i, at(t));
                        }
                    }
                    _ => {
                        outbox::housekeep(&db, &receivers, &policy, at(t)).unwrap();
                    }
                }
            }
            // Long after every group wait and the silence.
            outbox::housekeep(&db, &receivers, &policy, at(t + 10_000)).unwrap();
            outbox::housekeep(&db, &receivers, &policy, at(t + 20_000)).unwrap();
            let records = outbox::records(&db).unwrap();
            for r in ["chat", "pd"] {
                for (n, i) in state.iter().enumerate() {
                    let Some(i) = i else { continue };
                    let about = |rec: &outbox::Record| {
                        rec.receiver == r
                            && (rec.incident_id == i.id || rec.incident_ids.contains(&i.id))
                    };
                    let triggers: Vec<u64> = records
                        .iter()
                        .filter(|(_, rec)| rec.event == NotifyEvent::Trigger && about(rec))
                        .map(|(seq, _)| *seq)
                        .collect();
                    prop_assert!(triggers.len() <= 1, "{r} got {} triggers for i{n}", triggers.len());
                    if let (Some(cut), Some(t)) = (settled[n], triggers.first()) {
                        prop_assert!(*t <= cut, "{} got i{}'s trigger after it was acknowledged or resolved", r, n);
                    }
                    if i.status == IncidentStatus::Open {
                        prop_assert_eq!(triggers.len(), 1, "{} never got open i{}", r, n);
                    }
                    let resolves = records
                        .iter()
                        .filter(|(_, rec)| rec.event == NotifyEvent::Resolve && about(rec))
                        .count();
                    prop_assert!(resolves <= 1);
                    if i.status == IncidentStatus::Resolved && !triggers.is_empty() {
                        prop_assert_eq!(resolves, 1, "{} was paged for i{} and never told it resolved", r, n);
                    }
                    for (seq, rec) in &records {
                        if rec.event != NotifyEvent::Trigger && about(rec) {
                            prop_assert!(
                                triggers.first().is_some_and(|t| t < seq),
                                "{} got a lone {:?} for i{}", r, rec.event, n
                            );
                        }
                    }
                }
            }
        }
    }
}

#[test]
fn a_pager_as_fallback_of_a_chatty_receiver_gets_one_alert_per_grouped_incident() {
    let (_dir, path) = db_path();
    let db = open_db(&path);
    let mut chat = Receiver::webhook("chat", "http://127.0.0.1:9/x", None);
    chat.fallback = Some("pd".into());
    let mut pd = Receiver::new(
        "pd",
        ReceiverKind::Pagerduty,
        "http://127.0.0.1:9/v2/enqueue",
    );
    pd.routing_key = Some("k".into());
    let receivers = vec![chat, pd];
    let policy = Policy {
        routes: vec![Route {
            group_by: vec!["cluster".into()],
            group_wait_secs: Some(1),
            ..Route::to(Matcher::default(), &["chat"])
        }],
        ..Default::default()
    };
    let (a, b) = (in_cluster("a", "eu"), in_cluster("b", "eu"));
    for i in [&a, &b] {
        store_incident(&db, i);
        enqueue_with(&db, &receivers, &policy, NotifyEvent::Trigger, i, at(0));
    }
    outbox::housekeep(&db, &receivers, &policy, at(1)).unwrap();
    let n = outbox::copy_to_fallback(&db, "chat", "pd", ReceiverKind::Pagerduty, at(2)).unwrap();
    assert_eq!(n, 2, "one copy per incident");
    enqueue_with(&db, &receivers, &policy, NotifyEvent::Resolve, &b, at(3));
    outbox::copy_to_fallback(&db, "chat", "pd", ReceiverKind::Pagerduty, at(4)).unwrap();
    let pd_got: Vec<(NotifyEvent, String, bool)> = outbox::records(&db)
        .unwrap()
        .into_iter()
        .filter(|(_, r)| r.receiver == "pd")
        .map(|(_, r)| {
            let body: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            (r.event, r.incident_id, body.get("incidents").is_some())
        })
        .collect();
    assert_eq!(
        pd_got,
        [
            (NotifyEvent::Trigger, "a".to_string(), false),
            (NotifyEvent::Trigger, "b".to_string(), false),
            (NotifyEvent::Resolve, "b".to_string(), false),
        ],
        "b's resolve follows b's own alert"
    );
}
