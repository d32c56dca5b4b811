//! Host metrics: CPU, memory, swap, load and filesystem usage, sent as OTLP gauges.
//!
//! Entry type: [`HostMetrics`]; [`HostMetrics::run`] exports one `ExportMetricsServiceRequest`
//! with the generated `MetricsServiceClient` every `metrics_interval`. [`build_request`] is the
//! pure snapshot → request mapping.
//!
//! One sampler for the host: when the node source runs (the default) it takes the CPU, memory,
//! swap and load numbers with [`Sampler`] in the same pass as its `/metrics` series and puts
//! them in its snapshot (`NodeSnapshot::host_usage`, filesystems from its own `statvfs` list);
//! this task exports each new snapshot ([`HostMetrics::with_node_snapshots`]). Only with
//! `--no-node-metrics` does it sample by itself, with the same [`Sampler`] and the same
//! filesystem list.
//!
//! Names follow the OpenTelemetry `system.*` host-metrics conventions: `system.cpu.utilization`
//! (1), `system.cpu.load_average.{1m,5m,15m}` ({thread}), `system.memory.usage`
//! {`system.memory.state`=used|free} (By), `system.memory.limit` (By),
//! `system.memory.utilization` (1), `system.linux.memory.available` (By),
//! `system.paging.usage` {`system.paging.state`=used|free} (By) and per filesystem
//! `system.filesystem.usage` {`system.device`, `system.filesystem.mountpoint`,
//! `system.filesystem.type`, `system.filesystem.state`=used|free} (By) and
//! `system.filesystem.limit` (By). The resource carries `host.name`.
//!
//! Invariants: best effort — metrics are never queued on disk, a failed export is counted
//! (`daytwo_agent_ship_errors_total{stage="metrics"}`) and dropped, and nothing here can
//! delay signals; sysinfo runs on the blocking pool (a hung network mount cannot stall the
//! runtime).

use crate::metrics::{Metrics, STAGE_METRICS};
use daytwo_model::Timestamp;
use daytwo_model::otlp::SCOPE_NAME;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};
use sysinfo::System;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tracing::{debug, warn};

/// One filesystem's usage.
#[derive(Clone, Debug, PartialEq)]
pub struct FilesystemUsage {
    pub device: String,
    pub mountpoint: String,
    pub fs_type: String,
    pub total_bytes: u64,
    pub free_bytes: u64,
}

/// One sample of the host.
#[derive(Clone, Debug, PartialEq)]
pub struct HostSnapshot {
    /// 0..1 across all CPUs.
    pub cpu_utilization: f64,
    pub load_average: Option<[f64; 3]>,
    pub memory_total_bytes: u64,
    pub memory_used_bytes: u64,
    pub memory_free_bytes: u64,
    pub memory_available_bytes: u64,
    pub swap_total_bytes: u64,
    pub swap_used_bytes: u64,
    pub filesystems: Vec<FilesystemUsage>,
}

/// The OTLP view of the node source's filesystems (the same list as `/metrics`: pseudo and
/// per-pod mounts left out); free = what unprivileged writers have (`df` Avail).
pub fn filesystems_from(fs: &[crate::node::fs::Filesystem]) -> Vec<FilesystemUsage> {
    fs.iter()
        .map(|f| FilesystemUsage {
            device: f.mount.device.clone(),
            mountpoint: f.mount.mountpoint.clone(),
            fs_type: f.mount.fs_type.clone(),
            total_bytes: f.size_bytes,
            free_bytes: f.avail_bytes,
        })
        .collect()
}

/// Holds the sysinfo state between samples (CPU usage is a difference of two refreshes).
pub struct Sampler {
    system: System,
    /// Filesystems, when the node source does not read them (`--no-node-metrics`).
    fs: crate::node::fs::FsReader,
}

impl Sampler {
    pub fn new() -> Option<Self> {
        let mut system = System::new().ok()?;
        system.refresh_cpu_usage();
        Some(Sampler {
            system,
            fs: crate::node::fs::FsReader::new(crate::node::fs::DEFAULT_MOUNT_TIMEOUT),
        })
    }

    /// The filesystems of `<proc_root>/mounts`, each `statvfs` bounded (see
    /// [`crate::node::fs::FsReader`]). Blocking.
    pub fn read_filesystems(
        &mut self,
        proc_root: &std::path::Path,
    ) -> Vec<crate::node::fs::Filesystem> {
        self.fs.read(proc_root).filesystems
    }

    /// Refreshes CPU and memory and reads them, with `filesystems` (read by the caller).
    /// Blocking (reads /proc).
    pub fn sample(&mut self, filesystems: &[crate::node::fs::Filesystem]) -> HostSnapshot {
        self.system.refresh_cpu_usage();
        self.system.refresh_memory();
        let s = &self.system;
        HostSnapshot {
            cpu_utilization: f64::from(s.global_cpu_usage()) / 100.0,
            load_average: System::load_average()
                .ok()
                .map(|l| [l.one, l.five, l.fifteen]),
            memory_total_bytes: s.total_memory(),
            memory_used_bytes: s.used_memory(),
            memory_free_bytes: s.free_memory(),
            memory_available_bytes: s.available_memory(),
            swap_total_bytes: s.total_swap(),
            swap_used_bytes: s.used_swap(),
            filesystems: filesystems_from(filesystems),
        }
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

struct Builder {
    time: u64,
    metrics: Vec<Metric>,
}

impl Builder {
    fn gauge(
        &mut self,
        name: &str,
        unit: &str,
        description: &str,
        points: Vec<(Vec<KeyValue>, Value)>,
    ) {
        let data_points = points
            .into_iter()
            .map(|(attributes, v)| NumberDataPoint {
                attributes,
                time_unix_nano: self.time,
                value: Some(match v {
                    Value::Int(i) => number_data_point::Value::AsInt(i),
                    Value::Double(d) => number_data_point::Value::AsDouble(d),
                }),
                ..Default::default()
            })
            .collect();
        self.metrics.push(Metric {
            name: name.to_string(),
            description: description.to_string(),
            unit: unit.to_string(),
            data: Some(metric::Data::Gauge(Gauge { data_points })),
            ..Default::default()
        });
    }
}

enum Value {
    Int(i64),
    Double(f64),
}

fn int(b: u64) -> Value {
    Value::Int(i64::try_from(b).unwrap_or(i64::MAX))
}

/// The pure mapping of a snapshot to one export request.
pub fn build_request(
    s: &HostSnapshot,
    host_name: &str,
    time: Timestamp,
) -> ExportMetricsServiceRequest {
    let mut b = Builder {
        time: time.unix_nanos().max(0) as u64,
        metrics: Vec::new(),
    };
    b.gauge(
        "system.cpu.utilization",
        "1",
        "Fraction of CPU time in use across all CPUs.",
        vec![(vec![], Value::Double(s.cpu_utilization))],
    );
    if let Some([one, five, fifteen]) = s.load_average {
        for (name, v) in [
            ("system.cpu.load_average.1m", one),
            ("system.cpu.load_average.5m", five),
            ("system.cpu.load_average.15m", fifteen),
        ] {
            b.gauge(
                name,
                "{thread}",
                "Load average.",
                vec![(vec![], Value::Double(v))],
            );
        }
    }
    b.gauge(
        "system.memory.usage",
        "By",
        "Memory in use, by state.",
        vec![
            (
                vec![kv("system.memory.state", "used")],
                int(s.memory_used_bytes),
            ),
            (
                vec![kv("system.memory.state", "free")],
                int(s.memory_free_bytes),
            ),
        ],
    );
    b.gauge(
        "system.memory.limit",
        "By",
        "Total memory.",
        vec![(vec![], int(s.memory_total_bytes))],
    );
    if s.memory_total_bytes > 0 {
        b.gauge(
            "system.memory.utilization",
            "1",
            "Fraction of memory in use.",
            vec![(
                vec![kv("system.memory.state", "used")],
                Value::Double(s.memory_used_bytes as f64 / s.memory_total_bytes as f64),
            )],
        );
    }
    b.gauge(
        "system.linux.memory.available",
        "By",
        "Memory available for new work without swapping (MemAvailable).",
        vec![(vec![], int(s.memory_available_bytes))],
    );
    b.gauge(
        "system.paging.usage",
        "By",
        "Swap space, by state.",
        vec![
            (
                vec![kv("system.paging.state", "used")],
                int(s.swap_used_bytes),
            ),
            (
                vec![kv("system.paging.state", "free")],
                int(s.swap_total_bytes.saturating_sub(s.swap_used_bytes)),
            ),
        ],
    );
    if !s.filesystems.is_empty() {
        let ids = |f: &FilesystemUsage| {
            vec![
                kv("system.device", &f.device),
                kv("system.filesystem.mountpoint", &f.mountpoint),
                kv("system.filesystem.type", &f.fs_type),
            ]
        };
        let mut usage = Vec::new();
        let mut limit = Vec::new();
        for f in &s.filesystems {
            let used = f.total_bytes.saturating_sub(f.free_bytes);
            for (state, v) in [("used", used), ("free", f.free_bytes)] {
                let mut a = ids(f);
                a.push(kv("system.filesystem.state", state));
                usage.push((a, int(v)));
            }
            limit.push((ids(f), int(f.total_bytes)));
        }
        b.gauge(
            "system.filesystem.usage",
            "By",
            "Filesystem space, by state.",
            usage,
        );
        b.gauge("system.filesystem.limit", "By", "Filesystem size.", limit);
    }
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("host.name", host_name)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: SCOPE_NAME.to_string(),
                    version: env!("CARGO_PKG_VERSION").to_string(),
                    ..Default::default()
                }),
                metrics: b.metrics,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The host-metrics task.
pub struct HostMetrics {
    client: MetricsServiceClient<Channel>,
    collector: String,
    host_name: String,
    interval: Duration,
    metrics: Metrics,
    /// The node source's snapshots (`None`: sample here, reading mounts under `proc_root`).
    node: Option<crate::node::Latest>,
    proc_root: PathBuf,
}

impl HostMetrics {
    pub fn new(
        channel: Channel,
        collector: String,
        host_name: String,
        interval: Duration,
        metrics: Metrics,
    ) -> Self {
        HostMetrics {
            client: MetricsServiceClient::new(channel).send_compressed(CompressionEncoding::Gzip),
            collector,
            host_name,
            interval: interval.max(Duration::from_millis(100)),
            metrics,
            node: None,
            proc_root: PathBuf::from("/proc"),
        }
    }

    /// Exports the host numbers of the node source's snapshots instead of sampling again.
    pub fn with_node_snapshots(mut self, latest: crate::node::Latest) -> Self {
        self.node = Some(latest);
        self
    }

    /// Where mounts are read when this task samples by itself (default `/proc`).
    pub fn with_proc_root(mut self, proc_root: PathBuf) -> Self {
        self.proc_root = proc_root;
        self
    }

    /// The next snapshot to export: the node source's newest one not exported yet, or one
    /// sampled here. `None` when there is nothing new (or sampling is impossible).
    async fn next(
        &self,
        sampler: &mut Option<Sampler>,
        last: &mut Option<Timestamp>,
    ) -> Option<(HostSnapshot, Timestamp)> {
        if let Some(latest) = &self.node {
            let snap = latest.read().unwrap_or_else(|e| e.into_inner()).clone()?;
            if last.is_some_and(|t| t >= snap.time) {
                return None;
            }
            *last = Some(snap.time);
            return snap.host_usage.clone().map(|h| (h, snap.time));
        }
        let mut s = sampler.take()?;
        let proc_root = self.proc_root.clone();
        let (s, snap) = tokio::task::spawn_blocking(move || {
            let fs = s.read_filesystems(&proc_root);
            let snap = s.sample(&fs);
            (s, snap)
        })
        .await
        .ok()?;
        *sampler = Some(s);
        Some((snap, Timestamp::from_system_time(SystemTime::now())))
    }

    /// Exports every interval until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut sampler = None;
        if self.node.is_none() {
            sampler = tokio::task::spawn_blocking(Sampler::new)
                .await
                .ok()
                .flatten();
            if sampler.is_none() {
                warn!("Host metrics are off: sysinfo cannot read this system.");
                return;
            }
        }
        let mut last = None;
        let start = tokio::time::Instant::now() + self.interval;
        let mut tick = tokio::time::interval_at(start, self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let next = tokio::select! {
                _ = shutdown.cancelled() => return,
                n = self.next(&mut sampler, &mut last) => n,
            };
            let Some((snap, time)) = next else {
                if self.node.is_none() && sampler.is_none() {
                    warn!("Host metrics sampling failed; host metrics are off.");
                    return;
                }
                continue;
            };
            let req = build_request(&snap, &self.host_name, time);
            let res = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = self.client.export(req) => r,
            };
            match res {
                Ok(_) => {
                    self.metrics.host_metrics_sent.inc();
                    if failing {
                        debug!(collector = %self.collector, "Host metrics export recovered.");
                    }
                    failing = false;
                }
                Err(status) => {
                    self.metrics
                        .ship_errors
                        .with_label_values(&[STAGE_METRICS])
                        .inc();
                    if !failing {
                        warn!(collector = %self.collector, code = %status.code(), reason = %status.message(), "Host metrics export failed; dropping samples until it recovers.");
                    }
                    failing = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(req: &ExportMetricsServiceRequest) -> Vec<String> {
        req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.clone())
            .collect()
    }

    #[test]
    fn builds_semantic_convention_gauges() {
        let snap = HostSnapshot {
            cpu_utilization: 0.25,
            load_average: Some([1.0, 0.5, 0.25]),
            memory_total_bytes: 1000,
            memory_used_bytes: 600,
            memory_free_bytes: 100,
            memory_available_bytes: 400,
            swap_total_bytes: 50,
            swap_used_bytes: 10,
            filesystems: vec![FilesystemUsage {
                device: "/dev/vda1".into(),
                mountpoint: "/".into(),
                fs_type: "ext4".into(),
                total_bytes: 100,
                free_bytes: 30,
            }],
        };
        let req = build_request(&snap, "node-1", Timestamp(42));
        let rm = &req.resource_metrics[0];
        assert_eq!(rm.resource.as_ref().unwrap().attributes[0].key, "host.name");
        let n = names(&req);
        for want in [
            "system.cpu.utilization",
            "system.cpu.load_average.1m",
            "system.memory.usage",
            "system.memory.limit",
            "system.memory.utilization",
            "system.linux.memory.available",
            "system.paging.usage",
            "system.filesystem.usage",
            "system.filesystem.limit",
        ] {
            assert!(n.iter().any(|x| x == want), "{want} missing in {n:?}");
        }
        let fs = rm.scope_metrics[0]
            .metrics
            .iter()
            .find(|m| m.name == "system.filesystem.usage")
            .unwrap();
        assert_eq!(fs.unit, "By");
        let Some(metric::Data::Gauge(g)) = &fs.data else {
            panic!("gauge expected")
        };
        assert_eq!(g.data_points.len(), 2);
        assert_eq!(g.data_points[0].time_unix_nano, 42);
        assert_eq!(
            g.data_points[0].value,
            Some(number_data_point::Value::AsInt(70))
        );
        assert!(
            g.data_points[0]
                .attributes
                .iter()
                .any(|a| a.key == "system.filesystem.state")
        );
    }

    fn channel(url: &str) -> Channel {
        tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .connect_lazy()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_the_node_sources_snapshots_once_each_and_samples_alone_without_it() {
        use crate::test_collector::{Answer, TestCollector, eventually};
        let server = TestCollector::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
        let metrics = Metrics::unregistered().unwrap();
        let latest = crate::node::Latest::default();
        let usage = HostSnapshot {
            cpu_utilization: 0.5,
            load_average: None,
            memory_total_bytes: 10,
            memory_used_bytes: 4,
            memory_free_bytes: 6,
            memory_available_bytes: 6,
            swap_total_bytes: 0,
            swap_used_bytes: 0,
            filesystems: vec![],
        };
        *latest.write().unwrap() = Some(std::sync::Arc::new(crate::node::NodeSnapshot {
            time: Timestamp(77),
            host_usage: Some(usage),
            ..Default::default()
        }));
        let stop = CancellationToken::new();
        let from_node = HostMetrics::new(
            channel(&server.url()),
            server.url(),
            "node-1".into(),
            Duration::from_millis(100),
            metrics.clone(),
        )
        .with_node_snapshots(latest.clone());
        let task = tokio::spawn(from_node.run(stop.clone()));
        let exports = server.recorder.metric_exports.clone();
        eventually("the node snapshot is exported", || {
            !exports.lock().unwrap().is_empty()
        })
        .await;
        // The same snapshot is not sent again.
        tokio::time::sleep(Duration::from_millis(350)).await;
        stop.cancel();
        task.await.unwrap();
        let sent = exports.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "one snapshot, one export");
        let m = &sent[0].resource_metrics[0].scope_metrics[0].metrics[0];
        let Some(metric::Data::Gauge(g)) = &m.data else {
            panic!("gauge")
        };
        assert_eq!(g.data_points[0].time_unix_nano, 77, "the sample's own time");

        // Without the node source it samples by itself.
        let stop = CancellationToken::new();
        let alone = HostMetrics::new(
            channel(&server.url()),
            server.url(),
            "node-1".into(),
            Duration::from_millis(100),
            metrics,
        );
        let task = tokio::spawn(alone.run(stop.clone()));
        eventually("a self-sampled export", || {
            exports.lock().unwrap().len() >= 2
        })
        .await;
        stop.cancel();
        task.await.unwrap();
    }

    #[test]
    fn samples_this_host() {
        let mut s = Sampler::new().expect("sysinfo works on Linux");
        let fs = s.read_filesystems(std::path::Path::new("/proc"));
        let snap = s.sample(&fs);
        assert_eq!(snap.filesystems.len(), fs.len());
        assert!(snap.memory_total_bytes > 0);
        assert!(snap.memory_used_bytes <= snap.memory_total_bytes);
        assert!((0.0..=1.0).contains(&snap.cpu_utilization));
    }
}
