//! End to end with real parts: a real OOM kill in a real memory cgroup becomes an incident
//! with its cause, is queried with the CLI, and pages a real HTTP receiver once; the agent's
//! disk queue and kmsg checkpoint survive a collector or agent that is down, and the outbox
//! survives kill -9.
//!
//! Every daytwo reads the same /dev/kmsg, so these tests run one at a time (a lock) and
//! match only their own cgroup names.

mod common;

use common::*;
use std::sync::Mutex;
use std::time::Duration;

static KMSG: Mutex<()> = Mutex::new(());

const LIMIT: u64 = 64 * 1024 * 1024;
const ALLOC: u64 = 256 * 1024 * 1024;

fn fast_flags<'a>(data: &'a str, webhook: &'a str) -> Vec<&'a str> {
    vec![
        "--data-dir",
        data,
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
        "--webhook",
        webhook,
        "--notify-backoff-initial-ms",
        "100",
        "--notify-backoff-max-ms",
        "500",
        "--retry-initial-ms",
        "100",
        "--retry-max-ms",
        "500",
    ]
}

#[test]
fn oom_kill_becomes_one_incident_with_its_cause_and_one_page() {
    if !can_inject_oom("oom_kill_becomes_one_incident_with_its_cause_and_one_page") {
        return;
    }
    let _guard = KMSG.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let receiver = Receiver::start();
    let url = receiver.url();
    let d = Daytwo::start(
        &["up", "--metrics-interval-secs", "1"]
            .into_iter()
            .chain(fast_flags(data.to_str().unwrap(), &url))
            .collect::<Vec<_>>(),
        &tmp.path().join("up.log"),
        true,
    );
    d.wait_agent_ready();

    let cg = MemCgroup::new("up", LIMIT);
    // The node source samples the new cgroup (its limit is on /metrics) before the kill, so
    // the OOM signal can carry the memory series that led to it.
    let limit_series = format!(
        "daytwo_container_memory_limit_bytes{{cgroup=\"{}\",pod_uid=\"\",container_id=\"\"}} {LIMIT}",
        cg.path
    );
    assert!(
        wait_until(Duration::from_secs(20), || get(&format!(
            "{}/metrics",
            d.server()
        ))
        .is_some_and(|(_, body)| body.lines().any(|l| l == limit_series))),
        "the node source never sampled {}; log:\n{}",
        cg.path,
        read(&d.log)
    );
    let (pid, killed) = cg.allocate(ALLOC);
    assert!(
        killed,
        "the kernel did not OOM-kill the allocating process in {}",
        cg.path
    );

    let inc = wait_for(Duration::from_secs(30), || {
        let all = d.incidents();
        incident_for_cgroup(&all, &cg.path)
            .first()
            .map(|i| (*i).clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident for {} within 30 s; log:\n{}",
            cg.path,
            read(&d.log)
        )
    });

    assert_eq!(inc["status"], "open");
    assert_eq!(inc["severity"], "critical");
    let top = &inc["root_causes"][0];
    assert_eq!(top["rule"], "node.memory_cgroup_oom");
    assert_eq!(top["entity"]["kind"], "cgroup");
    assert_eq!(top["entity"]["name"], cg.path.as_str());
    let explanation = top["explanation"].as_str().unwrap();
    assert!(
        explanation.contains("python3"),
        "explanation names the process: {explanation}"
    );
    assert!(
        explanation.contains("64.0 MiB"),
        "explanation quotes usage and limit: {explanation}"
    );
    assert!(!top["remediation"].as_str().unwrap().is_empty());
    let signal = &inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "daytwo.kernel.oom_kill")
        .unwrap();
    assert_eq!(signal["attributes"]["process.pid"], pid);
    assert_eq!(signal["attributes"]["process.executable.name"], "python3");
    assert_eq!(signal["attributes"]["daytwo.memory.limit_bytes"], LIMIT);
    // The memory series of the cgroup before the kill, as samples.
    let samples: Vec<&str> = signal["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "sample")
        .filter_map(|e| e["text"].as_str())
        .collect();
    let usage_prefix = format!("memory.usage_bytes{{cgroup=\"{}\"}}=", cg.path);
    assert!(
        samples.iter().any(|t| t.starts_with(&usage_prefix)),
        "no usage samples of {}: {samples:?}",
        cg.path
    );
    assert!(
        samples.contains(&format!("memory.limit_bytes{{cgroup=\"{}\"}}={LIMIT}", cg.path).as_str()),
        "no limit sample: {samples:?}"
    );
    // The rule keeps all evidence: the samples reach the hypothesis too.
    assert!(
        top["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "sample"),
        "{}",
        top["evidence"]
    );

    // The table view names it too.
    let table = d.cli(&["incidents", "list"]);
    assert!(
        table.contains(inc["id"].as_str().unwrap()) && table.contains(&cg.path),
        "{table}"
    );
    let shown = d.cli(&["incidents", "show", inc["id"].as_str().unwrap()]);
    assert!(
        shown.contains("node.memory_cgroup_oom") && shown.contains("python3"),
        "{shown}"
    );

    let id = inc["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(15), || receiver
            .delivered(&id, "trigger")
            .len()
            == 1),
        "the receiver never got the trigger; log:\n{}",
        read(&d.log)
    );
    let trigger = &receiver.delivered(&id, "trigger")[0];
    assert_eq!(trigger.body["version"], "1");
    assert_eq!(
        trigger.body["incident"]["root_causes"][0]["entity"]["name"],
        cg.path.as_str()
    );

    let out = d.cli(&["incidents", "resolve", &id]);
    assert!(out.contains("resolved"), "{out}");
    assert!(
        wait_until(Duration::from_secs(15), || receiver
            .delivered(&id, "resolve")
            .len()
            == 1),
        "the receiver never got the resolve; log:\n{}",
        read(&d.log)
    );
    // Give a duplicate every chance to show up, then count.
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(
        receiver.delivered(&id, "trigger").len(),
        1,
        "exactly one trigger"
    );
    assert_eq!(
        receiver.delivered(&id, "resolve").len(),
        1,
        "exactly one resolve"
    );
    let all = d.incidents();
    assert_eq!(
        incident_for_cgroup(&all, &cg.path).len(),
        1,
        "exactly one incident for {}",
        cg.path
    );
}

#[test]
fn agent_queue_and_kmsg_checkpoint_survive_a_down_collector_and_a_killed_agent() {
    if !can_inject_oom(
        "agent_queue_and_kmsg_checkpoint_survive_a_down_collector_and_a_killed_agent",
    ) {
        return;
    }
    let _guard = KMSG.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let cdata = tmp.path().join("collector");
    let adata = tmp.path().join("agent");
    let receiver = Receiver::start();
    let url = receiver.url();
    let otlp = format!("127.0.0.1:{}", free_port());
    let collector_args = |http: &str| {
        vec![
            "collector".to_string(),
            "--data-dir".into(),
            cdata.to_str().unwrap().into(),
            "--http-addr".into(),
            http.into(),
            "--otlp-addr".into(),
            otlp.clone(),
            "--webhook".into(),
            url.clone(),
            "--notify-backoff-initial-ms".into(),
            "100".into(),
        ]
    };
    let agent_args = vec![
        "agent".to_string(),
        "--data-dir".into(),
        adata.to_str().unwrap().into(),
        "--collector".into(),
        format!("http://{otlp}"),
        "--retry-initial-ms".into(),
        "100".into(),
        "--retry-max-ms".into(),
        "300".into(),
        "--metrics-interval-secs".into(),
        "1".into(),
        "--http-addr".into(),
        "127.0.0.1:0".into(),
    ];
    let agent_log = tmp.path().join("agent.log");
    let start_collector = || {
        Daytwo::start(
            &collector_args("127.0.0.1:0"),
            &tmp.path().join("collector.log"),
            true,
        )
    };
    let start_agent = || {
        let before = read(&agent_log).matches(AGENT_READY).count();
        let a = Daytwo::start(&agent_args, &agent_log, true);
        // Only once its sources are open is a fault sure to be seen (the first start begins at
        // the current end of the kernel log).
        assert!(
            wait_until(Duration::from_secs(20), || read(&agent_log)
                .matches(AGENT_READY)
                .count()
                > before),
            "agent did not start; log:\n{}",
            read(&agent_log)
        );
        a
    };

    let mut collector = start_collector();
    let mut agent = start_agent();

    // 1. Collector down: the OOM is queued on the agent's disk and arrives later, once.
    collector.kill9();
    let cg1 = MemCgroup::new("queued", LIMIT);
    assert!(cg1.allocate(ALLOC).1, "no OOM kill in {}", cg1.path);
    std::thread::sleep(Duration::from_secs(2));
    let collector2 = start_collector();
    let inc1 = wait_for(Duration::from_secs(30), || {
        let all = collector2.incidents();
        incident_for_cgroup(&all, &cg1.path)
            .first()
            .map(|i| (*i).clone())
    })
    .unwrap_or_else(|| panic!("queued OOM never arrived; agent log:\n{}", read(&agent_log)));
    drop(collector);
    collector = collector2;

    // 2. Agent killed: the OOM the kernel logged meanwhile is read from the checkpoint.
    agent.kill9();
    let cg2 = MemCgroup::new("checkpoint", LIMIT);
    assert!(cg2.allocate(ALLOC).1, "no OOM kill in {}", cg2.path);
    let agent2 = start_agent();
    let inc2 = wait_for(Duration::from_secs(30), || {
        let all = collector.incidents();
        incident_for_cgroup(&all, &cg2.path)
            .first()
            .map(|i| (*i).clone())
    })
    .unwrap_or_else(|| {
        panic!(
            "OOM while the agent was down never arrived; agent log:\n{}",
            read(&agent_log)
        )
    });

    // Nothing duplicated: one incident per cgroup, one trigger per incident, one signal each.
    std::thread::sleep(Duration::from_secs(2));
    let all = collector.incidents();
    assert_eq!(incident_for_cgroup(&all, &cg1.path).len(), 1);
    assert_eq!(incident_for_cgroup(&all, &cg2.path).len(), 1);
    for inc in [&inc1, &inc2] {
        let id = inc["id"].as_str().unwrap();
        assert!(wait_until(Duration::from_secs(15), || receiver
            .delivered(id, "trigger")
            .len()
            == 1));
        let fresh: serde_json::Value =
            serde_json::from_str(&collector.cli(&["incidents", "show", id, "--json"])).unwrap();
        let ooms = fresh["signals"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["name"] == "daytwo.kernel.oom_kill")
            .count();
        assert_eq!(ooms, 1, "one OOM signal in {id}");
    }
    // The agent's own /metrics counts what the collector acknowledged since its restart.
    let (code, metrics) = get(&format!("{}/metrics", agent2.server())).unwrap();
    assert_eq!(code, 200);
    let sent: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("daytwo_agent_signals_sent_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no daytwo_agent_signals_sent_total in\n{metrics}"));
    assert!(sent >= 1.0, "{metrics}");
}

#[test]
fn a_page_that_was_failing_when_the_collector_was_killed_is_delivered_once() {
    if !can_inject_oom("a_page_that_was_failing_when_the_collector_was_killed_is_delivered_once") {
        return;
    }
    let _guard = KMSG.lock().unwrap_or_else(|e| e.into_inner());
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let receiver = Receiver::start();
    receiver
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let url = receiver.url();
    let args: Vec<&str> = ["up"]
        .into_iter()
        .chain(fast_flags(data.to_str().unwrap(), &url))
        .collect();
    let mut d = Daytwo::start(&args, &tmp.path().join("up.log"), true);
    d.wait_agent_ready();

    let cg = MemCgroup::new("outbox", LIMIT);
    assert!(cg.allocate(ALLOC).1, "no OOM kill in {}", cg.path);
    let inc = wait_for(Duration::from_secs(30), || {
        let all = d.incidents();
        incident_for_cgroup(&all, &cg.path)
            .first()
            .map(|i| (*i).clone())
    })
    .unwrap_or_else(|| panic!("no incident; log:\n{}", read(&d.log)));
    let id = inc["id"].as_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(15), || receiver
            .attempts(&id, "trigger")
            >= 2),
        "the receiver saw no failing attempts; log:\n{}",
        read(&d.log)
    );
    d.kill9();
    receiver
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let d2 = Daytwo::start(&args, &tmp.path().join("up2.log"), true);
    assert!(
        wait_until(Duration::from_secs(20), || receiver
            .delivered(&id, "trigger")
            .len()
            == 1),
        "the page was not delivered after restart; log:\n{}",
        read(&d2.log)
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        receiver.delivered(&id, "trigger").len(),
        1,
        "delivered exactly once"
    );
    let all = d2.incidents();
    assert_eq!(
        incident_for_cgroup(&all, &cg.path).len(),
        1,
        "no duplicate incident after restart"
    );
}
