//! End to end with real parts: the real `daytwo agent` binary tails real files in a temp
//! dir — rotated by rename and by copytruncate under steady writes, killed with SIGKILL and
//! restarted, a pod log directory appearing and disappearing, a Java stack trace, a secret —
//! and ships to a real OTLP/gRPC `LogsService` (tonic, gzip) running in this process, which
//! records every log record. Each test checks the exact lines that arrived: all of them,
//! each once.

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
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::codec::CompressionEncoding;

/// One raw log record as received.
#[derive(Clone, Debug)]
struct Rec {
    body: String,
    attrs: BTreeMap<String, String>,
    resource: BTreeMap<String, String>,
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
struct Sink {
    records: Arc<Mutex<Vec<Rec>>>,
    events: Arc<Mutex<Vec<Rec>>>,
    fail: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
    /// While set, the next request with raw records is recorded and then not answered
    /// until it is cleared (the agent sees no OK: a request on the wire).
    hold: Arc<AtomicBool>,
    /// The bodies of the held request, once one is held.
    held: Arc<Mutex<Option<Vec<String>>>>,
    /// A process SIGKILLed the moment a request is held (0: none): the agent dies with the
    /// request on the wire, right after its previous request was answered.
    kill_on_hold: Arc<AtomicU32>,
}

#[tonic::async_trait]
impl LogsService for Sink {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        if self.fail.load(Ordering::SeqCst) {
            self.failed.fetch_add(1, Ordering::SeqCst);
            return Err(tonic::Status::unavailable("test receiver is down"));
        }
        let mut recs = Vec::new();
        let mut events = Vec::new();
        for rl in &request.get_ref().resource_logs {
            let resource = rl
                .resource
                .as_ref()
                .map(|r| map(&r.attributes))
                .unwrap_or_default();
            for sl in &rl.scope_logs {
                for r in &sl.log_records {
                    let rec = Rec {
                        body: text(&r.body),
                        attrs: map(&r.attributes),
                        resource: resource.clone(),
                    };
                    if r.event_name.is_empty() {
                        recs.push(rec);
                    } else {
                        events.push(rec);
                    }
                }
            }
        }
        let hold = !recs.is_empty()
            && self.hold.load(Ordering::SeqCst)
            && self.held.lock().unwrap().is_none();
        if hold {
            *self.held.lock().unwrap() = Some(recs.iter().map(|r| r.body.clone()).collect());
            let pid = self.kill_on_hold.load(Ordering::SeqCst);
            if pid != 0 {
                // SAFETY: kill(2) on the pid of a child process this test started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGKILL);
                }
            }
        }
        self.records.lock().unwrap().extend(recs);
        self.events.lock().unwrap().extend(events);
        while hold && self.hold.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(tonic::Response::new(ExportLogsServiceResponse::default()))
    }
}

/// A real OTLP/gRPC logs receiver on 127.0.0.1:0.
struct Otlp {
    url: String,
    sink: Sink,
    _rt: tokio::runtime::Runtime,
}

impl Otlp {
    fn start() -> Otlp {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let sink = Sink::default();
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let svc = LogsServiceServer::new(sink.clone())
            .accept_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(64 << 20);
        rt.spawn(async move {
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
                .await
                .unwrap()
        });
        Otlp {
            url: format!("http://{addr}"),
            sink,
            _rt: rt,
        }
    }

    fn bodies(&self) -> Vec<String> {
        self.sink
            .records
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    fn records(&self) -> Vec<Rec> {
        self.sink.records.lock().unwrap().clone()
    }
}

fn agent(tmp: &Path, otlp: &Otlp, globs: &[&str], log_name: &str) -> Daytwo {
    Daytwo::start(
        &agent_args(tmp, otlp, globs, &[]),
        &tmp.join(log_name),
        true,
    )
}

fn agent_args(tmp: &Path, otlp: &Otlp, globs: &[&str], extra: &[&str]) -> Vec<String> {
    let data = tmp.join("data");
    let mut args: Vec<String> = [
        "agent",
        "--collector",
        &otlp.url,
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--no-kmsg",
        "--metrics-interval-secs",
        "3600",
        "--retry-initial-ms",
        "50",
        "--retry-max-ms",
        "300",
        "--log-poll-interval-ms",
        "100",
        "--log-rotate-wait-ms",
        "500",
        "--log-multiline-timeout-ms",
        "300",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for g in globs {
        args.push("--log-path".into());
        args.push(g.to_string());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

fn append(p: &Path, s: &str) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(p)
        .unwrap();
    f.write_all(s.as_bytes()).unwrap();
}

/// Asserts that `got` holds each of `want` exactly once (and nothing else with `prefix`).
fn assert_exactly_once(got: &[String], want: &[String], prefix: &str, log: &Path) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for g in got.iter().filter(|g| g.starts_with(prefix)) {
        *counts.entry(g.as_str()).or_default() += 1;
    }
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| !counts.contains_key(w.as_str()))
        .collect();
    let dups: Vec<(&&str, &usize)> = counts.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<&&str> = counts
        .keys()
        .filter(|k| !want.iter().any(|w| w == **k))
        .collect();
    assert!(
        missing.is_empty() && dups.is_empty() && extra.is_empty(),
        "missing {} (first {:?}), duplicated {} (first {:?}), unexpected {} (first {:?}); agent log:\n{}",
        missing.len(),
        missing.iter().take(3).collect::<Vec<_>>(),
        dups.len(),
        dups.iter().take(3).collect::<Vec<_>>(),
        extra.len(),
        extra.iter().take(3).collect::<Vec<_>>(),
        tail_of(&read(log))
    );
}

fn tail_of(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

fn wait_count(otlp: &Otlp, prefix: &str, n: usize, log: &Path) {
    let ok = wait_until(Duration::from_secs(60), || {
        otlp.bodies()
            .iter()
            .filter(|b| b.starts_with(prefix))
            .count()
            >= n
    });
    if !ok {
        let got = otlp
            .bodies()
            .iter()
            .filter(|b| b.starts_with(prefix))
            .count();
        panic!(
            "only {got} of {n} {prefix} lines arrived; agent log:\n{}",
            tail_of(&read(log))
        );
    }
    // Anything extra (a duplicate) would arrive right behind.
    std::thread::sleep(Duration::from_millis(500));
}

fn line(prefix: &str, i: usize) -> String {
    format!(
        "{prefix}-{i:05} GET /api/v1/orders/{i} status=200 took {}ms",
        i % 97
    )
}

#[test]
fn rotation_by_rename_under_steady_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let _agent = agent(tmp.path(), &otlp, &[&glob], "agent.log");
    let n = 3000;
    let want: Vec<String> = (0..n).map(|i| line("rename", i)).collect();
    let app = logs.join("app.log");
    // ~400 ms per file: a file must exist under a matching name for a few poll intervals
    // (100 ms) to be found at all — kubelet rotates at 10 MiB, far slower than that.
    for (i, l) in want.iter().enumerate() {
        append(&app, &format!("{l}\n"));
        if i % 500 == 499 {
            // Rotate: the old file is renamed out of the glob, a new one starts.
            std::fs::rename(&app, logs.join(format!("app.{}", i / 500))).unwrap();
        }
        if i % 5 == 0 {
            std::thread::sleep(Duration::from_millis(4));
        }
    }
    wait_count(&otlp, "rename-", n, &tmp.path().join("agent.log"));
    assert_exactly_once(
        &otlp.bodies(),
        &want,
        "rename-",
        &tmp.path().join("agent.log"),
    );
    let r = otlp
        .records()
        .into_iter()
        .find(|r| r.body == want[0])
        .unwrap();
    assert_eq!(r.attrs["log.file.path"], app.display().to_string());
    assert_eq!(r.attrs["daytwo.log.template_id"].len(), 16);
    assert!(r.resource.contains_key("host.name"));
}

#[test]
fn rotation_by_copytruncate_under_steady_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/app.log*", logs.display());
    let _agent = agent(tmp.path(), &otlp, &[&glob], "agent.log");
    let n = 3000;
    let want: Vec<String> = (0..n).map(|i| line("copy", i)).collect();
    let app = logs.join("app.log");
    let mut w = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&app)
        .unwrap();
    for (i, l) in want.iter().enumerate() {
        w.write_all(format!("{l}\n").as_bytes()).unwrap();
        if i % 500 == 499 {
            // logrotate's copytruncate (dateext-style names), the writer keeps its fd.
            std::fs::copy(&app, logs.join(format!("app.log.{}", i / 500))).unwrap();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&app)
                .unwrap()
                .set_len(0)
                .unwrap();
        }
        if i % 5 == 0 {
            std::thread::sleep(Duration::from_millis(4));
        }
    }
    wait_count(&otlp, "copy-", n, &tmp.path().join("agent.log"));
    assert_exactly_once(
        &otlp.bodies(),
        &want,
        "copy-",
        &tmp.path().join("agent.log"),
    );
}

#[test]
fn kill_9_mid_stream_then_restart_loses_and_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let app = logs.join("app.log");
    let n = 4000;
    let want: Vec<String> = (0..n).map(|i| line("crash", i)).collect();
    let mut agent1 = agent(tmp.path(), &otlp, &[&glob], "agent1.log");
    let writer = {
        let want = want.clone();
        let app = app.clone();
        std::thread::spawn(move || {
            for (i, l) in want.iter().enumerate() {
                append(&app, &format!("{l}\n"));
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        })
    };
    wait_count(&otlp, "crash-", 500, &tmp.path().join("agent1.log"));
    // The receiver goes down; once the agent has seen it fail twice, no export is in flight
    // and every line read since sits in the agent's disk queue.
    otlp.sink.fail.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || otlp
            .sink
            .failed
            .load(Ordering::SeqCst)
            >= 2),
        "the agent never retried"
    );
    agent1.kill9();
    std::thread::sleep(Duration::from_millis(300));
    otlp.sink.fail.store(false, Ordering::SeqCst);
    let _agent2 = agent(tmp.path(), &otlp, &[&glob], "agent2.log");
    writer.join().unwrap();
    wait_count(&otlp, "crash-", n, &tmp.path().join("agent2.log"));
    assert_exactly_once(
        &otlp.bodies(),
        &want,
        "crash-",
        &tmp.path().join("agent2.log"),
    );
    // One kind of line, one template id, before and after the restart (the miner's state is
    // saved with the checkpoints).
    let ids: std::collections::BTreeSet<String> = otlp
        .records()
        .iter()
        .filter(|r| r.body.starts_with("crash-"))
        .map(|r| r.attrs["daytwo.log.template_id"].clone())
        .collect();
    assert_eq!(ids.len(), 1, "template ids {ids:?}");
}

fn metric(d: &Daytwo, name: &str) -> Option<f64> {
    let (_, body) = get(&format!("{}/metrics", d.server()))?;
    body.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn a_pod_log_directory_appears_and_disappears() {
    let tmp = tempfile::tempdir().unwrap();
    let pods = tmp.path().join("pods");
    std::fs::create_dir(&pods).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/*/*/*.log", pods.display());
    let agent = agent(tmp.path(), &otlp, &[&glob], "agent.log");
    let dir: PathBuf = pods.join("shop_web-7d4b9c6f5-x2x8z_0b9f11aa-22bb/nginx");
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("0.log");
    let mut want = Vec::new();
    for i in 0..50 {
        let stream = if i % 2 == 0 { "stdout" } else { "stderr" };
        append(
            &f,
            &format!(
                "2026-11-25T14:31:{:02}.{:09}Z {stream} F {}\n",
                i % 60,
                i,
                line("pod", i)
            ),
        );
        want.push(line("pod", i));
    }
    // A long line split by the runtime: P, P, F.
    append(
        &f,
        "2026-11-25T14:32:00.000000001Z stdout P pod-partial first half, \n",
    );
    append(
        &f,
        "2026-11-25T14:32:00.000000002Z stdout P second half, \n",
    );
    append(&f, "2026-11-25T14:32:00.000000003Z stdout F and the end\n");
    want.push("pod-partial first half, second half, and the end".into());
    wait_count(&otlp, "pod", want.len(), &tmp.path().join("agent.log"));
    assert_exactly_once(&otlp.bodies(), &want, "pod", &tmp.path().join("agent.log"));
    let recs = otlp.records();
    let r = recs.iter().find(|r| r.body == want[1]).unwrap();
    assert_eq!(r.resource["k8s.namespace.name"], "shop");
    assert_eq!(r.resource["k8s.pod.name"], "web-7d4b9c6f5-x2x8z");
    assert_eq!(r.resource["k8s.pod.uid"], "0b9f11aa-22bb");
    assert_eq!(r.resource["k8s.container.name"], "nginx");
    assert_eq!(r.attrs["log.iostream"], "stderr");
    assert_eq!(metric(&agent, "daytwo_agent_logs_files_open"), Some(1.0));
    // The pod goes away with its logs: the file is finished and released.
    std::fs::remove_dir_all(pods.join("shop_web-7d4b9c6f5-x2x8z_0b9f11aa-22bb")).unwrap();
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &agent,
            "daytwo_agent_logs_files_open"
        ) == Some(0.0)),
        "the deleted pod's log stays open; agent log:\n{}",
        tail_of(&read(&tmp.path().join("agent.log")))
    );
    assert_exactly_once(&otlp.bodies(), &want, "pod", &tmp.path().join("agent.log"));
}

#[test]
fn a_java_stack_trace_is_one_record_and_secrets_are_redacted() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let _agent = agent(tmp.path(), &otlp, &[&glob], "agent.log");
    let trace = [
        "svc ERROR Exception in thread \"main\" java.lang.IllegalStateException: order 42 not found",
        "\tat com.shop.Orders.find(Orders.java:17)",
        "\tat com.shop.Api.handle(Api.java:88)",
        "Caused by: java.sql.SQLException: connection refused",
        "\t... 12 more",
    ];
    let mut text = String::from("svc INFO starting up\n");
    for l in trace {
        text.push_str(l);
        text.push('\n');
    }
    text.push_str("svc INFO connecting to postgres://app:s3cr3tpw@db:5432/shop\n");
    text.push_str("svc INFO login user=bob password=hunter2 ok\n");
    text.push_str(
        "svc DEBUG upstream call with Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.sig\n",
    );
    text.push_str("svc INFO done\n");
    append(&logs.join("svc.log"), &text);
    let want: Vec<String> = vec![
        "svc INFO starting up".into(),
        trace.join("\n"),
        "svc INFO connecting to postgres://app:[REDACTED]@db:5432/shop".into(),
        "svc INFO login user=bob password=[REDACTED] ok".into(),
        "svc DEBUG upstream call with Authorization: Bearer [REDACTED]".into(),
        "svc INFO done".into(),
    ];
    wait_count(&otlp, "svc ", want.len(), &tmp.path().join("agent.log"));
    let got = otlp.bodies();
    assert_eq!(got, want);
    for r in otlp.records() {
        for secret in ["s3cr3tpw", "hunter2", "eyJhbGciOiJIUzI1NiJ9"] {
            assert!(!r.body.contains(secret), "{r:?}");
            assert!(!r.attrs.values().any(|v| v.contains(secret)), "{r:?}");
        }
    }
}

#[test]
fn lines_read_are_shipped_once_durable_not_a_poll_interval_later() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let n = 500;
    let want: Vec<String> = (0..n).map(|i| line("burst", i)).collect();
    let mut text = want.join("\n");
    // The last line is held by multi-line joining (it might continue) until a later poll
    // sees its timeout: with one poll an hour, it is not expected here.
    text.push_str("\nlast line of the burst\n");
    append(&logs.join("app.log"), &text);
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let mut args = agent_args(tmp.path(), &otlp, &[&glob], &[]);
    // One poll an hour: the first one, at start, reads the whole file. Its commit used to
    // reach the shipper only at the next poll; the lines must arrive as soon as it is durable.
    let i = args
        .iter()
        .position(|a| a == "--log-poll-interval-ms")
        .unwrap();
    args[i + 1] = "3600000".into();
    let log = tmp.path().join("agent.log");
    let _agent = Daytwo::start(&args, &log, true);
    wait_count(&otlp, "burst-", n, &log);
    assert_exactly_once(&otlp.bodies(), &want, "burst-", &log);
}

/// Starts the agent as an unprivileged user (uid/gid 65534) when the tests run as root, so
/// that file permissions apply to it; as itself otherwise. `tmp` is opened up for it.
fn agent_unprivileged(tmp: &Path, args: &[String], log: &Path) -> Daytwo {
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o777)).unwrap();
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    // The unprivileged user may not be able to reach the build directory (a 0700 checkout,
    // as a fresh clone under `mktemp -d` is): run a copy from the opened-up temp dir.
    let exe = tmp.join("daytwo-unprivileged");
    if !exe.exists() {
        std::fs::copy(bin(), &exe).unwrap();
        std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cmd = Command::new(&exe);
    cmd.args(args)
        .env("DAYTWO_LOG_LEVEL", "info,daytwo=debug")
        .stdout(Stdio::piped())
        .stderr(logf);
    if unsafe { libc::geteuid() } == 0 {
        cmd.uid(65534).gid(65534);
    }
    let mut child = cmd.spawn().expect("spawn daytwo");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    let http = line
        .split_whitespace()
        .find_map(|p| p.strip_prefix("http="))
        .unwrap_or_else(|| panic!("first stdout line was {line:?}; log:\n{}", read(log)))
        .parse()
        .unwrap();
    let d = Daytwo {
        child,
        http: Some(http),
        otlp: None,
        log: log.to_path_buf(),
    };
    assert!(
        wait_until(Duration::from_secs(20), || get(&format!(
            "{}/readyz",
            d.server()
        ))
        .is_some_and(|(c, _)| c == 200)),
        "agent never became ready; log:\n{}",
        read(log)
    );
    d
}

fn labelled(d: &Daytwo, name: &str, label: &str) -> f64 {
    let Some((_, body)) = get(&format!("{}/metrics", d.server())) else {
        return 0.0;
    };
    body.lines()
        .find(|l| l.starts_with(name) && l.contains(label))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn bad_input_is_counted_never_fatal_and_nothing_readable_is_lost() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let args = agent_args(
        tmp.path(),
        &otlp,
        &[&glob],
        &["--log-max-line-bytes", "1048576"],
    );
    let log = tmp.path().join("agent.log");
    // A file nobody may read, there from the start.
    let locked = logs.join("locked.log");
    append(&locked, "bad-locked never readable\n");
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
    let agent = agent_unprivileged(tmp.path(), &args, &log);

    let a = logs.join("a.log");
    let mut bytes: Vec<u8> = b"bad-first line\n".to_vec();
    // Binary garbage (NUL and bytes that are not UTF-8), then a Latin-1 line.
    bytes.extend_from_slice(b"bad-garbage \x00\x01\xff\xfe\x80\x1b[0m tail\n");
    bytes.extend_from_slice(b"bad-latin1 caf\xe9\n");
    // A 50 MB line: cut at 1 MiB, the rest skipped.
    let mut long = b"bad-long ".to_vec();
    long.resize(50_000_000, b'x');
    bytes.extend_from_slice(&long);
    bytes.extend_from_slice(b"\nbad-after the long line\n");
    std::fs::write(&a, &bytes).unwrap();
    std::fs::set_permissions(&a, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A file that is read, then loses its read permission while the agent has it open, then
    // grows: the open descriptor still reads it.
    let b = logs.join("b.log");
    append(&b, "bad-b before\n");
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o644)).unwrap();
    // A file that vanishes once read.
    let gone = logs.join("gone.log");
    append(&gone, "bad-gone read before it vanished\n");
    std::fs::set_permissions(&gone, std::fs::Permissions::from_mode(0o644)).unwrap();
    wait_count(&otlp, "bad-", 7, &log);
    std::fs::set_permissions(&b, std::fs::Permissions::from_mode(0o000)).unwrap();
    append(&b, "bad-b after it became unreadable\n");
    std::fs::remove_file(&gone).unwrap();
    wait_count(&otlp, "bad-", 8, &log);

    let mut cut = long.clone();
    cut.truncate(1 << 20);
    let want: Vec<String> = vec![
        "bad-first line".into(),
        String::from_utf8_lossy(b"bad-garbage \x00\x01\xff\xfe\x80\x1b[0m tail").into_owned(),
        "bad-latin1 caf\u{fffd}".into(),
        String::from_utf8(cut).unwrap(),
        "bad-after the long line".into(),
        "bad-b before".into(),
        "bad-gone read before it vanished".into(),
        "bad-b after it became unreadable".into(),
    ];
    assert_exactly_once(&otlp.bodies(), &want, "bad-", &log);
    let recs = otlp.records();
    let long_rec = recs
        .iter()
        .find(|r| r.body.starts_with("bad-long"))
        .unwrap();
    assert_eq!(long_rec.attrs["daytwo.log.truncated"], "BoolValue(true)");
    assert_eq!(
        metric(&agent, "daytwo_agent_logs_lines_truncated_total"),
        Some(1.0)
    );
    assert_eq!(
        metric(&agent, "daytwo_agent_logs_invalid_utf8_total"),
        Some(2.0)
    );
    assert!(
        labelled(&agent, "daytwo_agent_logs_errors_total", "stage=\"open\"") >= 1.0,
        "the unreadable file is not counted; agent log:\n{}",
        tail_of(&read(&log))
    );
    // Logged once, however many polls saw it.
    std::thread::sleep(Duration::from_millis(500));
    let text = read(&log);
    let locked_name = locked.display().to_string();
    let mentions = text
        .lines()
        .filter(|l| l.contains(&locked_name) && (l.contains("WARN") || l.contains("ERROR")))
        .count();
    assert_eq!(mentions, 1, "agent log:\n{}", tail_of(&text));
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &agent,
            "daytwo_agent_logs_files_open"
        ) == Some(2.0)),
        "the vanished file is not released; agent log:\n{}",
        tail_of(&read(&log))
    );
}

/// Root is needed to mount a small tmpfs. Outside CI the test is skipped with a printed
/// reason; under CI=true it fails.
/// The delivery bound after `kill -9`: a request the collector received but whose answer the
/// agent never saw is sent again (at-least-once), and nothing else is: every request the
/// agent saw answered OK stays acknowledged, even when it dies the moment the next one is out.
#[test]
fn kill_9_while_a_request_awaits_its_answer_resends_exactly_that_request() {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let app = logs.join("app.log");
    let n = 6000;
    let want: Vec<String> = (0..n).map(|i| line("bound", i)).collect();
    let log1 = tmp.path().join("agent1.log");
    let mut agent1 = agent(tmp.path(), &otlp, &[&glob], "agent1.log");
    let writer = {
        let want = want.clone();
        let app = app.clone();
        std::thread::spawn(move || {
            for (i, l) in want.iter().enumerate() {
                append(&app, &format!("{l}\n"));
                if i % 20 == 0 {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        })
    };
    // Many requests delivered and acknowledged first; then the agent dies the moment its next
    // request arrives, just after the previous one was answered OK.
    wait_count(&otlp, "bound-", 1500, &log1);
    otlp.sink
        .kill_on_hold
        .store(agent1.child.id(), Ordering::SeqCst);
    otlp.sink.hold.store(true, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(30), || otlp
            .sink
            .held
            .lock()
            .unwrap()
            .is_some()),
        "no request was held; agent log:\n{}",
        tail_of(&read(&log1))
    );
    agent1.kill9();
    otlp.sink.hold.store(false, Ordering::SeqCst);
    let held: Vec<String> = otlp.sink.held.lock().unwrap().clone().unwrap();
    assert!(!held.is_empty());
    let log2 = tmp.path().join("agent2.log");
    let _agent2 = agent(tmp.path(), &otlp, &[&glob], "agent2.log");
    writer.join().unwrap();
    let distinct = || {
        otlp.bodies()
            .into_iter()
            .filter(|b| b.starts_with("bound-"))
            .collect::<std::collections::HashSet<String>>()
            .len()
    };
    assert!(
        wait_until(Duration::from_secs(60), || distinct() >= n),
        "only {} of {n} lines arrived; agent log:\n{}",
        distinct(),
        tail_of(&read(&log2))
    );
    // A duplicate would arrive right behind.
    std::thread::sleep(Duration::from_millis(500));
    let mut counts: HashMap<String, usize> = HashMap::new();
    for b in otlp
        .bodies()
        .into_iter()
        .filter(|b| b.starts_with("bound-"))
    {
        *counts.entry(b).or_default() += 1;
    }
    let mut dups: Vec<&String> = counts
        .iter()
        .filter(|(_, c)| **c > 1)
        .map(|(b, _)| b)
        .collect();
    dups.sort();
    let mut held_sorted: Vec<&String> = held.iter().collect();
    held_sorted.sort();
    assert!(
        counts.values().all(|c| *c <= 2),
        "a line arrived three times or more"
    );
    assert_eq!(
        dups.len(),
        held_sorted.len(),
        "duplicates beyond the request on the wire: {} duplicated, {} held (first duplicated {:?}); agent log:\n{}",
        dups.len(),
        held_sorted.len(),
        dups.iter().take(3).collect::<Vec<_>>(),
        tail_of(&read(&log2))
    );
    assert_eq!(
        dups, held_sorted,
        "the duplicates are exactly the held request"
    );
    let got: Vec<String> = counts.keys().cloned().collect();
    assert_exactly_once(&got, &want, "bound-", &log2);
}

fn need_root(test: &str, why: &str) -> bool {
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    if in_ci() {
        panic!("{test}: needs root ({why}); under CI=true this test must run");
    }
    eprintln!("SKIPPED {test}: needs root ({why})");
    false
}

#[test]
fn a_full_disk_holds_the_checkpoint_and_loses_nothing() {
    if !need_root(
        "a_full_disk_holds_the_checkpoint_and_loses_nothing",
        "mounts a tmpfs for the state file",
    ) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    std::fs::create_dir(&logs).unwrap();
    let data = tmp.path().join("data");
    std::fs::create_dir(&data).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=48m", "tmpfs"])
        .arg(&data)
        .status()
        .expect("run mount");
    assert!(st.success(), "mount -t tmpfs on {} failed", data.display());
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(data.clone());
    let otlp = Otlp::start();
    let glob = format!("{}/*.log", logs.display());
    let log = tmp.path().join("agent.log");
    let agent = Daytwo::start(&agent_args(tmp.path(), &otlp, &[&glob], &[]), &log, true);
    let app = logs.join("app.log");
    let want: Vec<String> = (0..2000).map(|i| line("full", i)).collect();
    for l in &want[..500] {
        append(&app, &format!("{l}\n"));
    }
    wait_count(&otlp, "full-", 500, &log);
    // Fill the state file's disk to the last byte.
    let filler = data.join("filler");
    {
        let mut f = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0u8; 1 << 20];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.write_all(&[0u8; 4096]);
        let _ = f.sync_all();
    }
    for l in &want[500..] {
        append(&app, &format!("{l}\n"));
    }
    assert!(
        wait_until(Duration::from_secs(30), || labelled(
            &agent,
            "daytwo_agent_logs_errors_total",
            "stage=\"commit\""
        ) >= 1.0),
        "no failed commit was counted; agent log:\n{}",
        tail_of(&read(&log))
    );
    assert!(agent_alive(&agent), "the agent died on a full disk");
    std::fs::remove_file(&filler).unwrap();
    wait_count(&otlp, "full-", want.len(), &log);
    assert_exactly_once(&otlp.bodies(), &want, "full-", &log);
}

fn agent_alive(d: &Daytwo) -> bool {
    get(&format!("{}/healthz", d.server())).is_some_and(|(c, _)| c == 200)
}
