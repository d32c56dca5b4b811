//! The daytwo node agent: sources next to the data, signals to a disk queue, OTLP to the
//! collector.
//!
//! Entry types: [`AgentConfig`] (what to read and where to send), [`Agent`] (built with
//! [`Agent::new`], driven by [`Agent::run`] until a `CancellationToken` is cancelled) and
//! [`AgentError`].
//!
//! Tasks `run` starts, each with the shared shutdown token:
//! * [`kmsg`] — `/dev/kmsg` → OOM classifier → `daytwo.kernel.oom_kill` signals, pushed into
//!   the [`queue`] together with the kmsg checkpoint;
//! * [`shipper`] — queue → collector (OTLP logs), deleting only what the collector
//!   acknowledged;
//! * [`host_metrics`] — sysinfo → collector (OTLP metrics), best effort;
//! * [`logs`] — log files → raw OTLP log records (their own disk queue and shipper) and
//!   `daytwo.log.*` signals (the signal queue), committed with the file checkpoints;
//! * [`journald`] — `journalctl -o json --follow` → the same log pipeline as files (with
//!   `systemd.unit` and priority) and `daytwo.systemd.*` signals, the journal cursor committed
//!   with what it read;
//! * [`node`] — procfs, cgroups (v1 and v2) and `statvfs` → the `daytwo_node_*` and
//!   `daytwo_container_*` series on `/metrics`, and the series detectors' `daytwo.node.*` and
//!   `daytwo.container.*` signals (the signal queue);
//! * [`kube`] — this node's pods and Node object from the Kubernetes API → `daytwo.k8s.*`
//!   signals (the signal queue) and the pod cache log signals are joined with (when
//!   Kubernetes is configured; never blocks start-up).
//!
//! Invariants: a source that cannot run here (no permission for `/dev/kmsg`) is switched off
//! with one warning returned by `Agent::new`, and the rest runs; everything that must not be
//! lost goes through the disk queue first; every metric is defined in [`metrics`] (the scrape-time node and
//! container series in [`node::exposition`]). Not done
//! here: cluster-wide Kubernetes watches (the collector's), the agent's own HTTP endpoint (the binary serves the registry it
//! passed in).

pub mod cgroup;
pub mod host_metrics;
pub mod journald;
pub mod kmsg;
pub mod kube;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod queue;
pub mod shipper;

#[cfg(test)]
mod test_collector;

use crate::kmsg::reader::{
    KmsgPipeline, KmsgSource, boot_clock, open_kmsg, open_warning, read_boot_id,
};
use crate::metrics::Metrics;
use crate::queue::{Queue, QueueError};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use tracing::{info, warn};

/// The state file inside `data_dir`.
pub const STATE_FILE: &str = "agent.redb";
/// Per-request timeout of exports to the collector.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// What the agent reads and where it sends.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    /// The collector's OTLP/gRPC address, e.g. `http://127.0.0.1:4317`.
    pub collector: String,
    /// Agent state: the send queue and the source checkpoints (`agent.redb`).
    pub data_dir: PathBuf,
    /// The `host.name` resource attribute (default: this machine's hostname).
    pub host_name: String,
    /// The kernel log device (default `/dev/kmsg`).
    pub kmsg_path: PathBuf,
    /// Read kernel events at all.
    pub kmsg_enabled: bool,
    /// Root of the cgroup filesystems (default `/sys/fs/cgroup`): v1 memory at
    /// `<root>/memory/<path>`, v2 at `<root>/<path>` or `<root>/unified/<path>`.
    pub cgroup_root: PathBuf,
    /// How often host metrics are sampled and sent (default 10 s).
    pub metrics_interval: Duration,
    /// Upper bound of the disk queue in bytes; the oldest signals go first (default 256 MiB).
    pub queue_max_bytes: u64,
    /// First wait after a failed export (default 500 ms).
    pub retry_initial: Duration,
    /// Longest wait between export attempts (default 30 s).
    pub retry_max: Duration,
    /// Signals per export request (default 512).
    pub batch_max: usize,
    /// Log files (off unless sources are configured; see [`logs::LogsConfig`]).
    pub logs: logs::LogsConfig,
    /// Node and container health (on by default; see [`node::NodeConfig`]).
    pub node: node::NodeConfig,
    /// Kubernetes watches of this node (see [`kube::KubeConfig`]; `auto` by default).
    pub kube: kube::KubeConfig,
    /// The systemd journal (auto: on where journalctl and a journal exist; see
    /// [`journald::JournaldConfig`]). Uses `logs`' redaction, multi-line and detector settings.
    pub journald: journald::JournaldConfig,
    /// Benchmark mode: read the log sources once to their end without the disk queue or the
    /// network, print one `logs-bench …` line on stdout and stop.
    pub logs_bench: bool,
}

impl AgentConfig {
    /// A configuration with every default filled in.
    pub fn new(collector: String, data_dir: PathBuf) -> Self {
        AgentConfig {
            collector,
            data_dir,
            host_name: hostname(),
            kmsg_path: PathBuf::from("/dev/kmsg"),
            kmsg_enabled: true,
            cgroup_root: PathBuf::from("/sys/fs/cgroup"),
            metrics_interval: Duration::from_secs(10),
            queue_max_bytes: 256 * 1024 * 1024,
            retry_initial: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
            batch_max: 512,
            logs: logs::LogsConfig::default(),
            logs_bench: false,
            node: node::NodeConfig::default(),
            kube: kube::KubeConfig::new(),
            journald: journald::JournaldConfig::default(),
        }
    }
}

/// This machine's hostname (`localhost` if it cannot be read).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates on success
    // (and we stop at the first NUL or the end either way).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
        if !name.is_empty() {
            return name;
        }
    }
    "localhost".to_string()
}

/// Why the agent could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The data directory could not be created.
    #[error(
        "cannot create the agent data directory {path}: {source}. Choose a writable --data-dir."
    )]
    DataDirFailed {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The state file (queue and checkpoints) could not be opened.
    #[error("{source}")]
    StateOpenFailed {
        path: PathBuf,
        #[source]
        source: QueueError,
    },
    /// The collector address is not a valid URI.
    #[error(
        "invalid collector address {address:?}: {source}. Use a URL such as http://127.0.0.1:4317."
    )]
    InvalidCollectorAddress {
        address: String,
        #[source]
        source: tonic::transport::Error,
    },
    /// The agent's metrics could not be registered (already registered in that registry).
    #[error(
        "cannot register the agent's metrics: {source}. Is a second agent using the same registry?"
    )]
    MetricsRegisterFailed {
        #[source]
        source: prometheus::Error,
    },
    /// The log source's configuration cannot run (a glob or a redaction pattern).
    #[error("{0}")]
    LogsConfigInvalid(#[from] logs::LogsConfigInvalid),
    /// A task of the agent panicked; the agent stopped.
    #[error("agent task {task} failed: {detail}. This is a bug; please report it with the log.")]
    TaskFailed { task: &'static str, detail: String },
}

/// A configured agent, ready to run.
pub struct Agent {
    config: AgentConfig,
    queue: Arc<Queue>,
    endpoint: Endpoint,
    metrics: Metrics,
    kmsg: Option<KmsgSource>,
    logs: Option<(logs::LogsSource, Arc<logs::store::LogStore>)>,
    /// The journald source and the log store it commits to (shared with `logs`).
    journald: Option<(journald::JournaldSource, Arc<logs::store::LogStore>)>,
    /// The node source's latest snapshot, read by the collector registered for `/metrics`.
    node_latest: node::Latest,
    /// Recent memory samples per cgroup: written by the node source, read for OOM evidence.
    memory_history: node::history::MemoryHistory,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("config", &self.config)
            .field("kmsg", &self.kmsg.is_some())
            .field("logs", &self.logs.is_some())
            .field("journald", &self.journald.is_some())
            .finish()
    }
}

impl Agent {
    /// Opens state, checks sources; returns warnings for sources switched off (e.g.
    /// "/dev/kmsg: permission denied (needs root or CAP_SYSLOG); kernel events are off")
    /// instead of failing.
    pub fn new(
        config: AgentConfig,
        registry: &prometheus::Registry,
    ) -> Result<(Agent, Vec<String>), AgentError> {
        let metrics = Metrics::register(registry)
            .map_err(|source| AgentError::MetricsRegisterFailed { source })?;
        if config.logs.enabled {
            logs::tune_allocator();
        }
        // Node, container and agent-process series, built at scrape time (process_* even when
        // the node source is off).
        let node_latest = node::Latest::default();
        node::exposition::NodeCollector::new(node_latest.clone())
            .and_then(|c| registry.register(Box::new(c)))
            .map_err(|source| AgentError::MetricsRegisterFailed { source })?;
        std::fs::create_dir_all(&config.data_dir).map_err(|source| AgentError::DataDirFailed {
            path: config.data_dir.clone(),
            source,
        })?;
        let state = config.data_dir.join(STATE_FILE);
        let queue =
            Queue::open(&state, config.queue_max_bytes, metrics.clone()).map_err(|source| {
                AgentError::StateOpenFailed {
                    path: state.clone(),
                    source,
                }
            })?;
        let queue = Arc::new(queue);
        let endpoint = Endpoint::from_shared(config.collector.clone()).map_err(|source| {
            AgentError::InvalidCollectorAddress {
                address: config.collector.clone(),
                source,
            }
        })?;
        // The channel itself is made in `run`: connect_lazy spawns onto the runtime.
        let endpoint = endpoint
            .timeout(EXPORT_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT);

        let mut warnings = Vec::new();
        let memory_history = node::history::MemoryHistory::new();
        let kmsg = if config.kmsg_enabled {
            match Self::kmsg_source(&config, &queue, &metrics, &memory_history) {
                Ok(k) => Some(k),
                Err(w) => {
                    warn!(path = %config.kmsg_path.display(), reason = %w, "Kmsg source is off.");
                    warnings.push(w);
                    None
                }
            }
        } else {
            None
        };
        let logs = if config.logs.enabled && !config.logs.sources.is_empty() && !config.logs_bench {
            config.logs.validate()?;
            let store = logs::store::LogStore::open(queue.clone()).map_err(|source| {
                AgentError::StateOpenFailed {
                    path: state.clone(),
                    source,
                }
            })?;
            let store = Arc::new(store);
            match logs::LogsSource::new(
                config.logs.clone(),
                &config.host_name,
                store.clone(),
                metrics.clone(),
            ) {
                Ok(src) => Some((src, store)),
                Err(w) => {
                    let w = format!("log files: {w}; log reading is off");
                    warn!(reason = %w, "Log source is off.");
                    warnings.push(w);
                    None
                }
            }
        } else {
            if config.logs_bench {
                config.logs.validate()?;
            }
            None
        };
        let journald = match config.journald.check() {
            Ok(()) if !config.logs_bench => {
                let jm = journald::JournaldMetrics::register(registry)
                    .map_err(|source| AgentError::MetricsRegisterFailed { source })?;
                let store = match &logs {
                    Some((_, s)) => s.clone(),
                    None => Arc::new(logs::store::LogStore::open(queue.clone()).map_err(
                        |source| AgentError::StateOpenFailed {
                            path: state.clone(),
                            source,
                        },
                    )?),
                };
                match journald::JournaldSource::new(
                    config.journald.clone(),
                    &config.logs,
                    &config.host_name,
                    store.clone(),
                    &queue,
                    metrics.clone(),
                    jm,
                ) {
                    Ok(src) => Some((src, store)),
                    Err(w) => {
                        let w = format!("journald: {w}; systemd journal reading is off");
                        warn!(reason = %w, "Journald source is off.");
                        warnings.push(w);
                        None
                    }
                }
            }
            Ok(()) => None,
            Err(why) => {
                // Off is normal on hosts without systemd: one line, not a warning.
                info!(reason = %why, "Journald source is off.");
                None
            }
        };
        Ok((
            Agent {
                config,
                queue,
                endpoint,
                metrics,
                kmsg,
                logs,
                journald,
                node_latest,
                memory_history,
            },
            warnings,
        ))
    }

    fn kmsg_source(
        config: &AgentConfig,
        queue: &Arc<Queue>,
        metrics: &Metrics,
        memory: &node::history::MemoryHistory,
    ) -> Result<KmsgSource, String> {
        let path = &config.kmsg_path;
        let file = open_kmsg(path).map_err(|e| open_warning(path, &e))?;
        let boot_id = read_boot_id().map_err(|e| {
            format!(
                "/proc/sys/kernel/random/boot_id: {e} (needed to checkpoint kernel records); kernel events are off"
            )
        })?;
        let checkpoint = queue
            .checkpoint(&boot_id)
            .map_err(|e| format!("{e}; kernel events are off"))?;
        let pipeline = KmsgPipeline::new(
            boot_id,
            boot_clock(),
            config.host_name.clone(),
            config.cgroup_root.clone(),
            checkpoint,
        )
        .with_memory_history(memory.clone());
        KmsgSource::open(file, path.clone(), pipeline, queue.clone(), metrics.clone())
            .map_err(|e| open_warning(path, &e))
    }

    /// Runs until `shutdown` is cancelled, then returns cleanly (unsent signals stay on disk).
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), AgentError> {
        let Agent {
            config,
            queue,
            endpoint,
            metrics,
            kmsg,
            logs,
            journald,
            node_latest,
            memory_history,
        } = self;
        if config.logs_bench {
            let cfg = config.logs.clone();
            let host = config.host_name.clone();
            let report = tokio::task::spawn_blocking(move || logs::bench(&cfg, &host))
                .await
                .map_err(|e| AgentError::TaskFailed {
                    task: "logs_bench",
                    detail: e.to_string(),
                })??;
            println!(
                "logs-bench lines={} records={} bytes={} secs={:.3} lines_per_sec={:.0}",
                report.lines,
                report.records,
                report.bytes,
                report.secs,
                report.lines as f64 / report.secs.max(1e-9)
            );
            return Ok(());
        }
        let channel: Channel = endpoint.connect_lazy();
        info!(
            collector = %config.collector,
            data_dir = %config.data_dir.display(),
            host = %config.host_name,
            kmsg = kmsg.is_some(),
            logs = logs.is_some(),
            "Agent started."
        );
        let mut tasks = tokio::task::JoinSet::new();
        let shipper = shipper::Shipper::new(
            queue.clone(),
            channel.clone(),
            config.collector.clone(),
            config.batch_max,
            shipper::Backoff::new(config.retry_initial, config.retry_max),
            metrics.clone(),
        );
        let token = shutdown.clone();
        tasks.spawn(async move {
            shipper.run(token).await;
            "shipper"
        });
        let host = host_metrics::HostMetrics::new(
            channel,
            config.collector.clone(),
            config.host_name.clone(),
            config.metrics_interval,
            metrics.clone(),
        );
        // One sampler: with the node source on, the OTLP host metrics are its snapshots.
        let host = if config.node.enabled {
            host.with_node_snapshots(node_latest.clone())
        } else {
            host.with_proc_root(config.node.proc_root.clone())
        };
        let token = shutdown.clone();
        tasks.spawn(async move {
            host.run(token).await;
            "host_metrics"
        });
        let log_store = logs
            .as_ref()
            .map(|(_, s)| s.clone())
            .or_else(|| journald.as_ref().map(|(_, s)| s.clone()));
        if let Some(store) = log_store
            && config.logs.ship_raw
        {
            {
                // Its own connection: a log backlog never queues ahead of a signal.
                let log_channel = endpoint.connect_lazy();
                let ship = logs::ship::LogShipper::new(
                    store,
                    log_channel,
                    config.collector.clone(),
                    config.logs.compression,
                    config.logs.max_request_bytes,
                    shipper::Backoff::new(config.retry_initial, config.retry_max),
                    metrics.clone(),
                );
                let token = shutdown.clone();
                tasks.spawn(async move {
                    ship.run(token).await;
                    "log_shipper"
                });
            }
        }
        if let Some((source, _)) = journald {
            let token = shutdown.clone();
            tasks.spawn(async move {
                source.run(token).await;
                "journald"
            });
        }
        if let Some((source, _store)) = logs {
            let token = shutdown.clone();
            tasks.spawn(async move {
                source.run(token).await;
                "logs"
            });
        }
        if config.node.enabled {
            let source = node::NodeSource::new(
                config.node.clone(),
                config.cgroup_root.clone(),
                config.host_name.clone(),
                config.metrics_interval,
                node_latest,
                queue.clone(),
                metrics.clone(),
            )
            .with_memory_history(memory_history);
            let token = shutdown.clone();
            tasks.spawn(async move {
                source.run(token).await;
                "node"
            });
        }
        if let Some(k) = kmsg {
            let token = shutdown.clone();
            tasks.spawn(async move {
                k.run(token).await;
                "kmsg"
            });
        }
        {
            let source = kube::KubeSource::new(
                config.kube.clone(),
                config.host_name.clone(),
                queue.clone(),
                metrics.clone(),
            );
            let token = shutdown.clone();
            tasks.spawn(async move {
                source.run(token).await;
                "kube"
            });
        }
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok(name) if !shutdown.is_cancelled() => {
                    info!(task = name, "Agent task ended before shutdown.");
                }
                Ok(_) => {}
                Err(e) => {
                    shutdown.cancel();
                    result = Err(AgentError::TaskFailed {
                        task: "agent",
                        detail: e.to_string(),
                    });
                }
            }
        }
        info!(queued = queue.depth().unwrap_or(0), "Agent stopped.");
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_collector::{Answer, TestCollector, eventually};

    fn config(dir: &std::path::Path, collector: String) -> AgentConfig {
        let mut c = AgentConfig::new(collector, dir.join("agent"));
        c.metrics_interval = Duration::from_millis(100);
        c.host_name = "node-test".into();
        c
    }

    #[test]
    fn defaults() {
        let c = AgentConfig::new("http://127.0.0.1:4317".into(), "/tmp/x".into());
        assert_eq!(c.kmsg_path, PathBuf::from("/dev/kmsg"));
        assert!(c.kmsg_enabled);
        assert_eq!(c.cgroup_root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(c.metrics_interval, Duration::from_secs(10));
        assert_eq!(c.queue_max_bytes, 256 * 1024 * 1024);
        assert_eq!(c.retry_initial, Duration::from_millis(500));
        assert_eq!(c.retry_max, Duration::from_secs(30));
        assert_eq!(c.batch_max, 512);
        assert!(!c.host_name.is_empty());
    }

    #[test]
    fn a_missing_kmsg_is_a_warning_not_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path(), "http://127.0.0.1:4317".into());
        c.kmsg_path = tmp.path().join("no-kmsg");
        let (agent, warnings) = Agent::new(c, &prometheus::Registry::new()).unwrap();
        assert!(agent.kmsg.is_none());
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("no-kmsg"), "{warnings:?}");
        assert!(
            warnings[0].ends_with("kernel events are off"),
            "{warnings:?}"
        );
        assert!(tmp.path().join("agent").join(STATE_FILE).is_file());
    }

    #[test]
    fn a_bad_collector_address_names_it() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path(), "not a url".into());
        c.kmsg_enabled = false;
        let err = Agent::new(c, &prometheus::Registry::new()).unwrap_err();
        assert!(matches!(err, AgentError::InvalidCollectorAddress { .. }));
        assert!(err.to_string().contains("not a url"), "{err}");
    }

    #[test]
    fn a_state_file_in_use_is_state_open_failed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path(), "http://127.0.0.1:4317".into());
        c.kmsg_enabled = false;
        let (_a, _) = Agent::new(c.clone(), &prometheus::Registry::new()).unwrap();
        let err = Agent::new(c, &prometheus::Registry::new()).unwrap_err();
        assert!(matches!(err, AgentError::StateOpenFailed { .. }), "{err:?}");
        assert!(err.to_string().contains("agent.redb"), "{err}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_ships_host_metrics_and_stops_cleanly() {
        let server = TestCollector::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
        let tmp = tempfile::tempdir().unwrap();
        let mut c = config(tmp.path(), server.url());
        // Exercise the real /dev/kmsg when this runs as root; a warning otherwise.
        c.kmsg_enabled = true;
        let registry = prometheus::Registry::new();
        let (agent, _warnings) = Agent::new(c, &registry).unwrap();
        let stop = CancellationToken::new();
        let task = tokio::spawn(agent.run(stop.clone()));
        let exports = server.recorder.metric_exports.clone();
        eventually("host metrics arrive", || {
            !exports.lock().unwrap().is_empty()
        })
        .await;
        let req = exports.lock().unwrap()[0].clone();
        let res = req.resource_metrics[0].resource.as_ref().unwrap();
        assert_eq!(res.attributes[0].key, "host.name");
        stop.cancel();
        task.await.unwrap().unwrap();
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(names.contains(&"daytwo_agent_queue_depth".to_string()));
    }
}
