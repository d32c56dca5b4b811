//! End to end for the journald source, with the real `daytwo` binary. No systemd runs on this
//! machine, so `tests/fake-journalctl` stands in for journalctl: it replays
//! `DIR/journal.json` (lines exactly as `journalctl -o json` prints them, from
//! tests/fixtures/journald) and honours `--after-cursor`, `--lines=0` and `--follow`.
//!
//! * `daytwo up` reads a real OpenShift node's bootkube.service restart loop (systemd 239) and
//!   opens one incident naming the unit, with its last lines as evidence;
//! * `daytwo agent` ships journal entries to a real OTLP/gRPC receiver in this process through
//!   the log pipeline (unit and priority, redaction, a traceback joined, binary and null
//!   messages), restarts a journalctl that dies, and after `kill -9` resumes after the
//!   committed cursor: every entry arrives exactly once.

mod common;

use common::*;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn fake_journalctl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake-journalctl")
}

fn fixture(name: &str) -> String {
    read(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/journald")
            .join(name),
    )
}

fn append(p: &Path, s: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// The journal directory the fake reads, empty.
fn journal_dir(tmp: &Path) -> PathBuf {
    let d = tmp.join("journal");
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("journal.json"), "").unwrap();
    d
}

/// journalctl runs (their arguments) so far.
fn runs(dir: &Path) -> Vec<String> {
    read(&dir.join("runs")).lines().map(String::from).collect()
}

fn wait_runs(dir: &Path, n: usize, log: &Path) {
    assert!(
        wait_until(Duration::from_secs(20), || runs(dir).len() >= n),
        "journalctl was not started {n} times: {:?}\n{}",
        runs(dir),
        read(log)
    );
}

fn journald_args(dir: &Path) -> Vec<String> {
    [
        "--no-kmsg",
        "--no-node-metrics",
        "--journald",
        "on",
        "--journalctl",
        fake_journalctl().to_str().unwrap(),
        "--journald-directory",
        dir.to_str().unwrap(),
        "--journald-commit-interval-ms",
        "100",
        "--journald-restart-initial-ms",
        "50",
        "--journald-restart-max-ms",
        "200",
        "--log-multiline-timeout-ms",
        "300",
        "--retry-initial-ms",
        "50",
        "--retry-max-ms",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

fn metric(server: &str, name: &str) -> Option<f64> {
    let (_, body) = get(&format!("{server}/metrics"))?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_restart_loop_in_the_journal_opens_one_incident_naming_the_unit() {
    if require_program("journald e2e", "python3", "python3").is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = journal_dir(tmp.path());
    let log = tmp.path().join("up.log");
    let mut args: Vec<String> = [
        "up",
        "--data-dir",
        tmp.path().join("data").to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
        // The capture holds two scheduled restarts, 5 s apart.
        "--systemd-restart-loop-count",
        "2",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(journald_args(&dir));
    let d = Daytwo::start(&args, &log, true);
    wait_runs(&dir, 1, &log);
    assert!(runs(&dir)[0].contains("--lines=0"), "{:?}", runs(&dir));
    append(
        &dir.join("journal.json"),
        &fixture("bootkube-restart-loop.json"),
    );
    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents().into_iter().find(|i| {
            i["root_causes"][0]["entity"]["name"] == "bootkube.service"
                && i["signals"]
                    .as_array()
                    .is_some_and(|s| s.iter().any(|s| s["name"] == "daytwo.systemd.restart_loop"))
        })
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident for bootkube.service: {:?}\n{}",
            d.incidents(),
            read(&log)
        )
    });
    let rc = &inc["root_causes"][0];
    assert_eq!(rc["rule"], "node.systemd_unit_failed");
    assert_eq!(rc["entity"]["kind"], "unit");
    assert_eq!(inc["severity"], "critical");
    let explanation = rc["explanation"].as_str().unwrap();
    assert!(
        explanation.contains(
            "bootkube.service failed with result exit-code; its main process exited with status 127"
        ),
        "{explanation}"
    );
    let evidence: Vec<&str> = rc["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["text"].as_str())
        .collect();
    assert!(
        evidence.contains(
            &"bootkube.sh[15907]: /usr/local/bin/bootkube.sh: line 6: i-am-a-command-that-does-not-exist: command not found"
        ),
        "{evidence:#?}"
    );
    assert!(evidence.contains(&"systemd[1]: bootkube.service: Failed with result 'exit-code'."));
    // The failure and the loop that follows are one incident, not two pages.
    let for_unit = d
        .incidents()
        .into_iter()
        .filter(|i| i["root_causes"][0]["entity"]["name"] == "bootkube.service")
        .count();
    assert_eq!(for_unit, 1, "{:?}", d.incidents());
    let server = d.server();
    assert_eq!(
        metric(&server, "daytwo_agent_journald_entries_received_total"),
        Some(14.0)
    );
}

/// One raw log record as received.
#[derive(Clone, Debug)]
struct Rec {
    body: String,
    resource: BTreeMap<String, String>,
    event: String,
    attrs: BTreeMap<String, String>,
    /// OTLP severity_number and severity_text.
    severity: (i32, String),
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn map(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter()
        .map(|kv| (kv.key.clone(), text(&kv.value)))
        .collect()
}

/// A real OTLP/gRPC logs receiver that can be switched to answer UNAVAILABLE.
#[derive(Clone, Default)]
struct Sink {
    recs: Arc<Mutex<Vec<Rec>>>,
    down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if self.down.load(Ordering::SeqCst) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return Err(tonic::Status::unavailable("test receiver is down"));
        }
        let mut out = Vec::new();
        for rl in &request.get_ref().resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| map(&r.attributes))
                .unwrap_or_default();
            for r in rl.scope_logs.iter().flat_map(|s| &s.log_records) {
                out.push(Rec {
                    body: text(&r.body),
                    resource: resource.clone(),
                    event: r.event_name.clone(),
                    attrs: map(&r.attributes),
                    severity: (r.severity_number, r.severity_text.clone()),
                });
            }
        }
        self.recs.lock().unwrap().extend(out);
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

fn start_sink(rt: &tokio::runtime::Runtime) -> (Sink, String) {
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
    (sink, format!("http://{addr}"))
}

fn agent(tmp: &Path, dir: &Path, collector: &str, http: u16, log: &str) -> Daytwo {
    agent_with(tmp, dir, collector, http, log, &[])
}

fn agent_with(
    tmp: &Path,
    dir: &Path,
    collector: &str,
    http: u16,
    log: &str,
    extra: &[&str],
) -> Daytwo {
    let mut args: Vec<String> = [
        "agent",
        "--collector",
        collector,
        "--data-dir",
        tmp.join("data").to_str().unwrap(),
        "--http-addr",
        &format!("127.0.0.1:{http}"),
        "--metrics-interval-secs",
        "3600",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    args.extend(journald_args(dir));
    args.extend(extra.iter().map(|s| s.to_string()));
    let d = Daytwo::start(&args, &tmp.join(log), false);
    assert!(
        wait_until(Duration::from_secs(20), || get(&format!(
            "http://127.0.0.1:{http}/readyz"
        ))
        .is_some_and(|(c, _)| c == 200)),
        "agent not ready:\n{}",
        read(&tmp.join(log))
    );
    d
}

/// A journal entry of `numbers.service` as journald writes a unit's stdout line.
fn numbered(i: usize) -> String {
    serde_json::json!({
        "__CURSOR": format!("s=5d1c0ffee0dd4e4f9a5b6c7d8e9f0a1b;i={:x};b=8f1e2c9a4b7d4e0f9c3a5b6d7e8f9a0b;m={:x};t={:x};x={:016x}", 0x200000 + i, 9_000_000_000u64 + i as u64, 1_764_080_000_000_000u64 + i as u64 * 1000, i * 7919),
        "__REALTIME_TIMESTAMP": (1_764_080_000_000_000u64 + i as u64 * 1000).to_string(),
        "__MONOTONIC_TIMESTAMP": (9_000_000_000u64 + i as u64).to_string(),
        "_BOOT_ID": "8f1e2c9a4b7d4e0f9c3a5b6d7e8f9a0b",
        "PRIORITY": "6",
        "SYSLOG_IDENTIFIER": "numbers",
        "_TRANSPORT": "stdout",
        "_PID": "5151",
        "_COMM": "numbers",
        "_SYSTEMD_UNIT": "numbers.service",
        "_HOSTNAME": "web-3",
        "MESSAGE": format!("numbers line {i:04}"),
    })
    .to_string()
}

fn count(recs: &[Rec], body: &str) -> usize {
    recs.iter()
        .filter(|r| r.event.is_empty() && r.body == body)
        .count()
}

#[test]
fn journal_entries_arrive_once_through_a_dying_journalctl_and_kill_9() {
    if require_program("journald e2e", "python3", "python3").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sink, url) = start_sink(&rt);
    let tmp = tempfile::tempdir().unwrap();
    let dir = journal_dir(tmp.path());
    let journal = dir.join("journal.json");
    let http = free_port();
    let server = format!("http://127.0.0.1:{http}");
    let mut a1 = agent(tmp.path(), &dir, &url, http, "agent1.log");
    let log1 = tmp.path().join("agent1.log");
    wait_runs(&dir, 1, &log1);

    // 1. Real-shaped entries of a crash-looping unit (systemd 252).
    append(&journal, &fixture("worker-restart-loop.json"));
    let recs = || sink.recs.lock().unwrap().clone();
    assert!(
        wait_until(Duration::from_secs(20), || {
            let r = recs();
            count(&r, "Stopped worker.service - Queue worker.") == 3
                && r.iter().any(|r| r.event == "daytwo.systemd.restart_loop")
        }),
        "worker entries did not arrive: {:#?}\n{}",
        recs().iter().map(|r| &r.body).collect::<Vec<_>>(),
        read(&log1)
    );
    let r = recs();
    assert_eq!(
        count(
            &r,
            "connecting to redis at 127.0.0.1:6379 password=[REDACTED]"
        ),
        3
    );
    assert!(
        !r.iter().any(|r| r.body.contains("s3cr3t-pass")),
        "a secret left the node"
    );
    let trace = "Traceback (most recent call last):\n  File \"/srv/worker/main.py\", line 12, in <module>\nConnectionRefusedError: [Errno 111] Connection refused";
    assert_eq!(count(&r, trace), 3, "the traceback is one record per crash");
    let t = r.iter().find(|r| r.body == trace).unwrap();
    assert_eq!(t.resource["systemd.unit"], "worker.service");
    assert_eq!(t.resource["daytwo.journald.priority"], "3");
    assert_eq!(
        t.severity,
        (17, "err".to_string()),
        "PRIORITY 3 is OTLP ERROR"
    );
    assert!(!t.resource["host.name"].is_empty());
    assert_eq!(
        count(&r, "\u{1b}[31mERROR\u{1b}[0m lost connection"),
        1,
        "binary MESSAGE"
    );
    let exit = r
        .iter()
        .find(|r| r.body == "worker.service: Main process exited, code=exited, status=1/FAILURE")
        .expect("the manager's lines about the unit are the unit's");
    assert_eq!(exit.resource["systemd.unit"], "worker.service");
    assert_eq!(exit.resource["daytwo.journald.priority"], "5");
    assert_eq!(
        exit.severity,
        (10, "notice".to_string()),
        "PRIORITY 5 is OTLP INFO2"
    );
    let failed: Vec<&Rec> = r
        .iter()
        .filter(|r| r.event == "daytwo.systemd.unit_failed")
        .collect();
    assert_eq!(
        failed.len(),
        1,
        "one failure signal per window, the loop has its own"
    );
    assert_eq!(failed[0].attrs["systemd.unit"], "worker.service");
    assert_eq!(failed[0].attrs["daytwo.systemd.exit_status"], "1");
    assert_eq!(
        metric(
            &server,
            "daytwo_agent_journald_messages_total{kind=\"binary\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &server,
            "daytwo_agent_journald_messages_total{kind=\"null\"}"
        ),
        Some(1.0)
    );

    // 2. journalctl dies after 7 entries: restarted after the committed cursor.
    std::fs::write(dir.join("exit-after"), "7").unwrap();
    for i in 0..20 {
        append(&journal, &(numbered(i) + "\n"));
    }
    // A line that is not an entry is counted and skipped.
    append(&journal, "journalctl: this is not json\n");
    assert!(
        wait_until(Duration::from_secs(20), || (0..20)
            .all(|i| count(&recs(), &format!("numbers line {i:04}")) >= 1)),
        "entries after the restart did not arrive:\n{}",
        read(&log1)
    );
    let after_restart = runs(&dir);
    assert!(after_restart.len() >= 2, "{after_restart:?}");
    assert!(
        after_restart[1].contains("--after-cursor=s=5d1c0ffee0dd"),
        "{after_restart:?}"
    );
    assert!(metric(&server, "daytwo_agent_journald_restarts_total").unwrap() >= 1.0);
    assert_eq!(
        metric(
            &server,
            "daytwo_agent_journald_invalid_total{reason=\"json\"}"
        ),
        Some(1.0)
    );

    // 3. The receiver goes down; what is read waits in the disk queue; kill -9 mid-stream.
    sink.down.store(true, Ordering::SeqCst);
    for i in 20..40 {
        append(&journal, &(numbered(i) + "\n"));
    }
    assert!(
        wait_until(Duration::from_secs(20), || sink
            .refused
            .load(Ordering::SeqCst)
            >= 2),
        "the agent never retried"
    );
    a1.kill9();
    for i in 40..60 {
        append(&journal, &(numbered(i) + "\n"));
    }
    sink.down.store(false, Ordering::SeqCst);
    let _a2 = agent(tmp.path(), &dir, &url, http, "agent2.log");
    let log2 = tmp.path().join("agent2.log");
    assert!(
        wait_until(Duration::from_secs(30), || (0..60)
            .all(|i| count(&recs(), &format!("numbers line {i:04}")) >= 1)),
        "lost entries: {:?}\n{}",
        (0..60)
            .filter(|i| count(&recs(), &format!("numbers line {i:04}")) == 0)
            .collect::<Vec<_>>(),
        read(&log2)
    );
    // Let anything sent twice arrive before counting.
    std::thread::sleep(Duration::from_millis(500));
    let r = recs();
    let dups: HashMap<String, usize> = (0..60)
        .map(|i| format!("numbers line {i:04}"))
        .map(|b| (b.clone(), count(&r, &b)))
        .filter(|(_, n)| *n != 1)
        .collect();
    assert!(dups.is_empty(), "sent more than once: {dups:?}");
    assert_eq!(
        count(&r, "Stopped worker.service - Queue worker."),
        3,
        "re-sent after kill -9"
    );
    let last = runs(&dir).last().cloned().unwrap();
    assert!(last.contains("--after-cursor="), "{last}");
}

#[test]
fn a_cursor_journalctl_cannot_seek_to_falls_back_to_the_end_of_the_journal() {
    if require_program("journald e2e", "python3", "python3").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sink, url) = start_sink(&rt);
    let recs = || sink.recs.lock().unwrap().clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = journal_dir(tmp.path());
    let journal = dir.join("journal.json");
    let http = free_port();
    let server = format!("http://127.0.0.1:{http}");
    let mut a1 = agent(tmp.path(), &dir, &url, http, "agent1.log");
    wait_runs(&dir, 1, &tmp.path().join("agent1.log"));
    for i in 0..5 {
        append(&journal, &(numbered(i) + "\n"));
    }
    assert!(
        wait_until(Duration::from_secs(20), || count(
            &recs(),
            "numbers line 0004"
        ) == 1),
        "{}",
        read(&tmp.path().join("agent1.log"))
    );
    a1.stop();
    // The journal is replaced (vacuumed, or another machine's): the saved cursor is not in it,
    // and journalctl fails to seek to it.
    std::fs::write(&journal, fixture("worker-restart-loop.json")).unwrap();
    let _a2 = agent(tmp.path(), &dir, &url, http, "agent2.log");
    let log2 = tmp.path().join("agent2.log");
    assert!(
        wait_until(Duration::from_secs(30), || runs(&dir)
            .iter()
            .skip(1)
            .any(|r| r.contains("--lines=0"))),
        "never fell back to the end of the journal: {:?}\n{}",
        runs(&dir),
        read(&log2)
    );
    let failed = runs(&dir)
        .iter()
        .filter(|r| r.contains("--after-cursor="))
        .count();
    assert_eq!(failed, 3, "{:?}", runs(&dir));
    assert_eq!(
        metric(
            &server,
            "daytwo_agent_journald_errors_total{stage=\"cursor\"}"
        ),
        Some(1.0)
    );
    for i in 100..105 {
        append(&journal, &(numbered(i) + "\n"));
    }
    assert!(
        wait_until(Duration::from_secs(20), || (100..105)
            .all(|i| count(&recs(), &format!("numbers line {i:04}")) == 1)),
        "entries after the fallback did not arrive:\n{}",
        read(&log2)
    );
    // From the end: the replaced journal's old entries are not read.
    assert_eq!(count(&recs(), "Stopped worker.service - Queue worker."), 0);
}

#[test]
fn the_journal_is_the_buffer_while_the_raw_log_queue_is_full() {
    if require_program("journald e2e", "python3", "python3").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (sink, url) = start_sink(&rt);
    let recs = || sink.recs.lock().unwrap().clone();
    let tmp = tempfile::tempdir().unwrap();
    let dir = journal_dir(tmp.path());
    let journal = dir.join("journal.json");
    let http = free_port();
    let server = format!("http://127.0.0.1:{http}");
    let log = tmp.path().join("agent.log");
    let _a = agent_with(
        tmp.path(),
        &dir,
        &url,
        http,
        "agent.log",
        &["--log-queue-max-bytes", "2000"],
    );
    wait_runs(&dir, 1, &log);
    sink.down.store(true, Ordering::SeqCst);
    let n = 300;
    let mut all = String::new();
    for i in 0..n {
        all.push_str(&numbered(i));
        all.push('\n');
    }
    append(&journal, &all);
    // The queue fills, the receiver keeps refusing: reading stops well short of the end.
    assert!(
        wait_until(Duration::from_secs(20), || sink
            .refused
            .load(Ordering::SeqCst)
            >= 4),
        "the agent never retried:\n{}",
        read(&log)
    );
    let read_while_full = metric(&server, "daytwo_agent_journald_entries_received_total").unwrap();
    assert!(
        read_while_full < n as f64,
        "read {read_while_full} of {n} entries with a 2000-byte queue"
    );
    sink.down.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(30), || (0..n)
            .all(|i| count(&recs(), &format!("numbers line {i:04}")) >= 1)),
        "entries missing after the receiver came back:\n{}",
        read(&log)
    );
    let r = recs();
    let twice: Vec<usize> = (0..n)
        .filter(|i| count(&r, &format!("numbers line {i:04}")) != 1)
        .collect();
    assert!(twice.is_empty(), "not exactly once: {twice:?}");
}
