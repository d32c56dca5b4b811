//! A fleet of simulated agents against one `daytwo collector`, for sizing (bench/fleet_sizing.sh,
//! docs/kubernetes.md "Sizing").
//!
//! Each simulated node sends what a real agent sends, through the same code: host metrics built
//! by the agent's own `host_metrics::build_request` and exported with the generated
//! `MetricsServiceClient` (gzip), and now and then a signal encoded by the model's
//! `signals_to_request` and exported with the `LogsServiceClient` (gzip) the agent's shipper
//! uses; optionally raw log records. Every node has its own gRPC connection, as every agent has.
//!
//! Time is compressed: one *step* is one metrics interval of every node, sent as fast as the
//! collector accepts it (at most `--in-flight` exports at once), with event times that advance
//! by the interval per step. So the collector does one interval's work per node per step, and
//! its CPU-seconds divided by nodes × steps is the cost of one node-interval.
//!
//! Output: one line, `fleet-sim nodes=N steps=S node_intervals=… metric_exports=… signals=…
//! log_records=… errors=… secs=…`. Exit 1 when any export failed.

use clap::Parser;
use daytwo_agent::host_metrics::{FilesystemUsage, HostSnapshot, build_request};
use daytwo_model::{Entity, EntityKind, Evidence, Severity, Signal, Timestamp, stable_id};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tonic::codec::CompressionEncoding;
use tonic::transport::{Channel, Endpoint};

#[derive(Parser, Debug)]
#[command(about = "Simulated agents against one daytwo collector (bench/fleet_sizing.sh).")]
struct Args {
    /// The collector's OTLP/gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:4317")]
    collector: String,
    /// Simulated nodes (one gRPC connection each).
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Metrics intervals to send per node.
    #[arg(long, default_value_t = 30)]
    steps: u64,
    /// The agents' metrics interval: event time advances this much per step.
    #[arg(long, default_value_t = 10)]
    interval_secs: u64,
    /// Signals per 1,000 node-intervals (kernel OOM kills and CPU throttling, half each).
    #[arg(long, default_value_t = 5)]
    signals_per_mille: u64,
    /// Raw log records per node-interval (the agent ships raw logs by default; 0 = none).
    #[arg(long, default_value_t = 0)]
    log_lines: usize,
    /// Exports in flight at once across the fleet.
    #[arg(long, default_value_t = 256)]
    in_flight: usize,
    /// Seed of the simulated values.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// splitmix64: small, seeded, good enough for simulated gauges.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A uniform value in [0, 1) from (seed, node, step, salt).
fn unit(seed: u64, node: usize, step: u64, salt: u64) -> f64 {
    let h = mix(seed ^ mix(node as u64 ^ mix(step ^ mix(salt))));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

const GIB: u64 = 1 << 30;

/// One node's host snapshot at one step: a per-node baseline plus noise, so the collector's
/// detectors see ordinary, varying series.
fn snapshot(seed: u64, node: usize, step: u64) -> HostSnapshot {
    let base = unit(seed, node, 0, 1);
    let noise = |salt| unit(seed, node, step, salt);
    let mem_total = (16 + 16 * (node as u64 % 4)) * GIB;
    let used_ratio = 0.3 + 0.4 * base + 0.05 * noise(2);
    let mem_used = (mem_total as f64 * used_ratio) as u64;
    let load = 4.0 * base + noise(3);
    HostSnapshot {
        cpu_utilization: (0.1 + 0.5 * base + 0.1 * noise(4)).min(1.0),
        load_average: Some([load, load * 0.9, load * 0.8]),
        memory_total_bytes: mem_total,
        memory_used_bytes: mem_used,
        memory_free_bytes: mem_total / 20,
        memory_available_bytes: mem_total - mem_used,
        swap_total_bytes: 0,
        swap_used_bytes: 0,
        filesystems: vec![
            FilesystemUsage {
                device: "/dev/nvme0n1p1".into(),
                mountpoint: "/".into(),
                fs_type: "ext4".into(),
                total_bytes: 100 * GIB,
                free_bytes: ((40.0 + 20.0 * base - step as f64 * 0.01) * GIB as f64) as u64,
            },
            FilesystemUsage {
                device: "/dev/nvme1n1".into(),
                mountpoint: "/var/lib/containerd".into(),
                fs_type: "xfs".into(),
                total_bytes: 200 * GIB,
                free_bytes: ((120.0 - 30.0 * base + 2.0 * noise(5)) * GIB as f64) as u64,
            },
        ],
    }
}

/// A signal as the agent emits it: a kernel OOM kill (critical) or CPU throttling (warning)
/// in one of the node's pod cgroups.
fn signal(seed: u64, host: &str, node: usize, step: u64, time: Timestamp) -> Signal {
    let pod = mix(seed ^ node as u64 ^ (step / 60)) % 20;
    let path = format!("/kubepods/burstable/pod{pod:04x}/c{:04x}", (pod * 7) % 16);
    let entity = Entity::new(EntityKind::Cgroup, path.clone())
        .with_attr("host.name", host)
        .with_attr("daytwo.cgroup.path", path.clone());
    let mut resource = daytwo_model::Attributes::new();
    resource.insert("host.name".into(), host.into());
    let mut attributes = daytwo_model::Attributes::new();
    attributes.insert("daytwo.cgroup.path".into(), path.clone().into());
    let oom = unit(seed, node, step, 6) < 0.5;
    let (name, severity, message) = if oom {
        attributes.insert("daytwo.oom.constraint".into(), "memcg".into());
        attributes.insert("daytwo.memory.limit_bytes".into(), (512u64 << 20).into());
        attributes.insert("daytwo.memory.usage_bytes".into(), (512u64 << 20).into());
        attributes.insert("process.executable.name".into(), "java".into());
        (
            "daytwo.kernel.oom_kill",
            Severity::Critical,
            format!(
                "Kernel OOM-killed java (pid 4242) in memory cgroup {path}: usage 512.0 MiB of limit 512.0 MiB."
            ),
        )
    } else {
        attributes.insert("daytwo.cpu.throttled_ratio".into(), 0.42.into());
        attributes.insert("daytwo.cpu.limit_cores".into(), 0.5.into());
        (
            "daytwo.container.cpu_throttled",
            Severity::Warning,
            format!("{path} on {host} was CPU-throttled in 42% of periods."),
        )
    };
    Signal {
        id: stable_id(&["fleet-sim", host, name, &step.to_string()]),
        name: name.into(),
        time,
        severity,
        entity,
        resource,
        attributes,
        message: message.clone(),
        evidence: vec![Evidence {
            time,
            kind: "log".into(),
            text: message,
        }],
    }
}

/// `n` plain log records as the agent's raw log shipper sends them (no `event.name`).
fn raw_logs(host: &str, n: usize, time: Timestamp) -> ExportLogsServiceRequest {
    let kv = |k: &str, v: &str| KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    };
    let records = (0..n)
        .map(|i| LogRecord {
            time_unix_nano: time.unix_nanos() as u64 + i as u64,
            observed_time_unix_nano: time.unix_nanos() as u64 + i as u64,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(any_value::Value::StringValue(format!(
                    "2026-11-25T10:00:00.000Z INFO request handled path=/api/v1/items/{i} status=200 duration_ms={}",
                    i % 97
                ))),
            }),
            attributes: vec![kv("log.file.path", "/var/log/pods/shop_web-0_uid/web/0.log")],
            ..Default::default()
        })
        .collect();
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("host.name", host)],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

#[derive(Default)]
struct Totals {
    metric_exports: AtomicU64,
    signals: AtomicU64,
    log_records: AtomicU64,
    errors: AtomicU64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let endpoint = match Endpoint::from_shared(args.collector.clone()) {
        Ok(e) => e
            .timeout(Duration::from_secs(30))
            .connect_timeout(Duration::from_secs(5)),
        Err(e) => {
            eprintln!("--collector {:?}: {e}", args.collector);
            return std::process::ExitCode::from(2);
        }
    };
    // One connection per node, as one agent per node has.
    let channels: Vec<Channel> = (0..args.nodes).map(|_| endpoint.connect_lazy()).collect();
    let totals = Arc::new(Totals::default());
    let gate = Arc::new(tokio::sync::Semaphore::new(args.in_flight.max(1)));
    let interval = Duration::from_secs(args.interval_secs.max(1));
    let start_time = Timestamp::from_system_time(SystemTime::now())
        .minus(interval * u32::try_from(args.steps).unwrap_or(u32::MAX));
    let started = Instant::now();
    for step in 0..args.steps {
        let time = start_time.plus(interval * u32::try_from(step).unwrap_or(u32::MAX));
        let mut tasks = tokio::task::JoinSet::new();
        for (node, channel) in channels.iter().enumerate() {
            let permit = gate.clone().acquire_owned().await.expect("semaphore open");
            let channel = channel.clone();
            let totals = totals.clone();
            let (seed, per_mille, log_lines) = (args.seed, args.signals_per_mille, args.log_lines);
            tasks.spawn(async move {
                let _permit = permit;
                let host = format!("node-{node:05}");
                let req = build_request(&snapshot(seed, node, step), &host, time);
                let mut metrics = MetricsServiceClient::new(channel.clone())
                    .send_compressed(CompressionEncoding::Gzip);
                match metrics.export(req).await {
                    Ok(_) => totals.metric_exports.fetch_add(1, Ordering::Relaxed),
                    Err(_) => totals.errors.fetch_add(1, Ordering::Relaxed),
                };
                let mut logs = LogsServiceClient::new(channel)
                    .send_compressed(CompressionEncoding::Gzip)
                    .accept_compressed(CompressionEncoding::Gzip);
                if (unit(seed, node, step, 7) * 1000.0) < per_mille as f64 {
                    let s = signal(seed, &host, node, step, time);
                    let req = daytwo_model::otlp::signals_to_request(&[s]);
                    match logs.export(req).await {
                        Ok(_) => totals.signals.fetch_add(1, Ordering::Relaxed),
                        Err(_) => totals.errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
                if log_lines > 0 {
                    match logs.export(raw_logs(&host, log_lines, time)).await {
                        Ok(_) => totals
                            .log_records
                            .fetch_add(log_lines as u64, Ordering::Relaxed),
                        Err(_) => totals.errors.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    }
    let secs = started.elapsed().as_secs_f64();
    let errors = totals.errors.load(Ordering::Relaxed);
    println!(
        "fleet-sim nodes={} steps={} node_intervals={} metric_exports={} signals={} log_records={} errors={} secs={:.2}",
        args.nodes,
        args.steps,
        args.nodes as u64 * args.steps,
        totals.metric_exports.load(Ordering::Relaxed),
        totals.signals.load(Ordering::Relaxed),
        totals.log_records.load(Ordering::Relaxed),
        errors,
        secs
    );
    if errors > 0 {
        std::process::ExitCode::from(1)
    } else {
        std::process::ExitCode::SUCCESS
    }
}
