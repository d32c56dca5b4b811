//! Node health: per-cgroup (per-container) and host resource usage, exposed on the agent's
//! `/metrics` and fed to the series detectors, whose findings become signals.
//!
//! Entry types: [`NodeConfig`] (part of [`crate::AgentConfig`]), [`NodeSource`] (built by
//! [`NodeSource::new`], driven by [`NodeSource::run`] until shutdown) and [`NodeSnapshot`], one
//! sample of everything.
//!
//! Layers, from pure to I/O:
//! * [`procfs`], [`fs`] and [`cgroups`] read the kernel's files into plain structs; their
//!   parsers are pure and tested on captured text;
//! * [`exposition`] turns the latest snapshot into Prometheus metric families at scrape time
//!   (a custom `prometheus::core::Collector`), so the series of a vanished cgroup or mount
//!   disappear with it;
//! * [`detect`] feeds the snapshot to the `daytwo-detect` series detectors and builds the
//!   `daytwo.node.*` / `daytwo.container.*` signals (pure: the snapshot carries its time);
//! * [`NodeSource::run`] samples every `metrics_interval` on the blocking pool and pushes the
//!   signals into the disk queue.
//!
//! Invariants: label values are bounded — at most `max_cgroups` cgroups (default 2000, the rest
//! counted in `daytwo_agent_node_cgroups_skipped`), [`fs::MAX_FILESYSTEMS`] mounts and
//! [`procfs::MAX_DEVICES`] disks and interfaces; a file that cannot be read means a missing
//! value, never a failed sample; a detector's firing gives one signal whose id is
//! `stable_id(["node", host, event, entity key, firing time])`, so a redelivery is idempotent.
//! Not done here: pod names and namespaces (the cgroup path only carries the pod UID; the
//! Kubernetes watch will join them), per-process metrics.

pub mod cgroups;
pub mod detect;
pub mod exposition;
pub mod fs;
pub mod history;
pub mod procfs;
pub mod resets;

use crate::metrics::{Metrics, NODE_STAGE_PUSH};
use crate::queue::Queue;
use daytwo_model::Timestamp;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Default bound on the cgroups tracked per interval.
pub const DEFAULT_MAX_CGROUPS: usize = 2000;

/// What the node source reads.
#[derive(Clone, Debug, PartialEq)]
pub struct NodeConfig {
    /// Sample node and cgroup metrics and run their detectors at all (default true).
    pub enabled: bool,
    /// The proc filesystem to read host counters and mounts from (default `/proc`; a
    /// DaemonSet mounts the host's, e.g. `/host/proc`).
    pub proc_root: PathBuf,
    /// At most this many cgroups are tracked per interval; the rest are counted (default 2000).
    pub max_cgroups: usize,
    /// How long one `statvfs` may take before its mount counts as unresponsive and is left
    /// out of samples until it answers (default 5 s, as node_exporter's mount timeout).
    pub mount_timeout: Duration,
    /// Detector levels and durations.
    pub detect: detect::DetectConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            enabled: true,
            proc_root: PathBuf::from("/proc"),
            max_cgroups: DEFAULT_MAX_CGROUPS,
            mount_timeout: fs::DEFAULT_MOUNT_TIMEOUT,
            detect: detect::DetectConfig::default(),
        }
    }
}

/// One sample of the node.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NodeSnapshot {
    /// When the sample was taken (wall clock, read by the shell).
    pub time: Timestamp,
    pub filesystems: Vec<fs::Filesystem>,
    pub host: procfs::HostCounters,
    pub cgroups: Vec<cgroups::CgroupStats>,
    /// Cgroups seen but not tracked because `max_cgroups` was reached.
    pub cgroups_skipped: u64,
    /// Counters that went backwards, cumulative since the agent started (set by the source).
    pub counter_resets: resets::Resets,
    /// Kernel files that existed but could not be read, cumulative (procfs and cgroups).
    pub read_errors: u64,
    /// CPU, memory, swap and load (sysinfo) with these filesystems: what the OTLP host
    /// metrics export (`None` when sysinfo cannot read this system).
    pub host_usage: Option<crate::host_metrics::HostSnapshot>,
    /// Mounts whose `statvfs` ran past `mount_timeout` and has not returned since (left out of
    /// `filesystems`).
    pub filesystems_unresponsive: Vec<fs::Mount>,
    /// `statvfs` calls that ran past the timeout, since the start.
    pub mount_timeouts: u64,
}

/// Reads one snapshot. Blocking (procfs, sysfs and `statvfs`). `cgroups` keeps its buffers and
/// the cgroups' limits from one sample to the next.
pub fn sample(
    proc_root: &std::path::Path,
    fs_reader: &mut fs::FsReader,
    cgroups: &mut cgroups::Sampler,
    max_cgroups: usize,
    system: Option<&mut crate::host_metrics::Sampler>,
) -> NodeSnapshot {
    let fs_read = fs_reader.read(proc_root);
    let filesystems = fs_read.filesystems;
    let host = procfs::read_host(proc_root);
    let (cgs, cgroups_skipped) = cgroups.sample(max_cgroups);
    let host_usage = system.map(|s| s.sample(&filesystems));
    NodeSnapshot {
        time: Timestamp::from_system_time(SystemTime::now()),
        filesystems,
        host,
        cgroups: cgs,
        cgroups_skipped,
        counter_resets: resets::Resets::default(),
        read_errors: procfs::read_errors() + cgroups.read_errors(),
        host_usage,
        filesystems_unresponsive: fs_read.unresponsive,
        mount_timeouts: fs_reader.timeouts_total,
    }
}

/// The latest snapshot, shared between the sampling task and the scrape-time collector.
pub type Latest = Arc<RwLock<Option<Arc<NodeSnapshot>>>>;

/// The node-health task.
pub struct NodeSource {
    config: NodeConfig,
    cgroup_root: PathBuf,
    host_name: String,
    interval: Duration,
    latest: Latest,
    queue: Arc<Queue>,
    metrics: Metrics,
    memory: Option<history::MemoryHistory>,
}

impl NodeSource {
    /// `latest` is the slot the [`exposition::NodeCollector`] registered for `/metrics` reads.
    pub fn new(
        config: NodeConfig,
        cgroup_root: PathBuf,
        host_name: String,
        interval: Duration,
        latest: Latest,
        queue: Arc<Queue>,
        metrics: Metrics,
    ) -> Self {
        NodeSource {
            config,
            cgroup_root,
            host_name,
            interval: interval.max(Duration::from_millis(100)),
            latest,
            queue,
            metrics,
            memory: None,
        }
    }

    /// Also keeps every cgroup's recent memory samples in `h` (the OOM signal's evidence).
    pub fn with_memory_history(mut self, h: history::MemoryHistory) -> Self {
        self.memory = Some(h);
        self
    }

    /// Samples, exposes and detects every interval until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let NodeSource {
            config,
            cgroup_root,
            host_name,
            interval,
            latest,
            queue,
            metrics,
            memory,
        } = self;
        let hierarchies = cgroups::Hierarchies::detect(&cgroup_root);
        if hierarchies.is_empty() {
            warn!(root = %cgroup_root.display(), "No cgroup hierarchy found; container metrics are off.");
        }
        let detect_cfg = config.detect.for_interval(interval);
        let mut detectors = detect::NodeDetectors::new(host_name.clone(), detect_cfg);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut warned_skipped = false;
        let proc_root = Arc::new(config.proc_root.clone());
        let mut sampler = Some(cgroups::Sampler::new(&hierarchies));
        let mut fs_reader = Some(fs::FsReader::new(config.mount_timeout));
        // CPU and memory for the OTLP host metrics, taken in the same pass.
        let mut system = tokio::task::spawn_blocking(crate::host_metrics::Sampler::new)
            .await
            .ok()
            .flatten();
        if system.is_none() {
            warn!("sysinfo cannot read this system; the OTLP host metrics are off.");
        }
        let mut resets_seen = resets::ResetTracker::default();
        let mut resets_total = resets::Resets::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let (pr, max) = (proc_root.clone(), config.max_cgroups);
            let Some(mut s) = sampler.take() else { return };
            let Some(mut fsr) = fs_reader.take() else {
                return;
            };
            let mut sys = system.take();
            let sampled = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let snap = sample(&pr, &mut fsr, &mut s, max, sys.as_mut());
                (snap, s, fsr, sys, started.elapsed())
            });
            let (mut snap, s, fsr, sys, took) = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = sampled => match r {
                    Ok(v) => v,
                    Err(e) => {
                        warn!(error = %e, "Node sampling failed; node metrics are off.");
                        return;
                    }
                },
            };
            sampler = Some(s);
            fs_reader = Some(fsr);
            system = sys;
            metrics.node_sample_seconds.set(took.as_secs_f64());
            metrics.node_cgroups.set(snap.cgroups.len() as i64);
            metrics
                .node_cgroups_skipped
                .set(snap.cgroups_skipped as i64);
            if snap.cgroups_skipped > 0 && !warned_skipped {
                warn!(
                    tracked = snap.cgroups.len(),
                    skipped = snap.cgroups_skipped,
                    "More cgroups than --node-max-cgroups; the deepest are not tracked."
                );
                warned_skipped = true;
            }
            let r = resets_seen.observe(&snap);
            if r != resets::Resets::default() {
                debug!(
                    cgroups = r.cgroup,
                    disks = r.disk,
                    interfaces = r.network,
                    "Kernel counters went backwards (recreated cgroups or reloaded devices)."
                );
            }
            resets_total.add(r);
            snap.counter_resets = resets_total;
            if let Some(h) = &memory {
                h.record(&snap);
            }
            let signals = detectors.observe(&snap);
            *latest.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(snap));
            if signals.is_empty() {
                continue;
            }
            for s in &signals {
                info!(event = %s.name, entity = %s.entity.name, "{}", s.message);
                metrics
                    .signals_emitted
                    .with_label_values(&[s.name.as_str()])
                    .inc();
            }
            let q = queue.clone();
            let pushed = tokio::task::spawn_blocking(move || q.push(&signals, None)).await;
            match pushed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => {
                    metrics
                        .node_errors
                        .with_label_values(&[NODE_STAGE_PUSH])
                        .inc();
                    error!(error = %e, "Node signals could not be queued; they are lost.");
                }
                Err(e) => debug!(error = %e, "Queue push task ended."),
            }
        }
    }
}
