//! The log source: tail every log file a node has, without loss, and turn it into raw OTLP
//! log records plus log signals.
//!
//! Entry types: [`LogsConfig`] (what to read, how), [`LogsSource`] (built by `Agent::new`,
//! run by `Agent::run`) and [`bench`] (the same pipeline without the disk, for
//! `bench/logs_throughput.sh`).
//!
//! The path of a line: [`tail`] (glob discovery, fingerprints, rotation, `pread`) →
//! [`parse`] (CRI / Docker / plain framing, CRI partials joined) → [`multiline`] (stack
//! traces joined) → [`pipeline`]: UTF-8 repair, [`redact`], template id ([`mine`]),
//! detectors ([`detect`]: `daytwo.log.new_template`, `daytwo.log.error_burst`,
//! `daytwo.log.silence`) and [`encode`] → [`store`]: raw-log batches, the signals and the
//! tailer's checkpoints committed in one redb transaction → [`ship`]: raw logs to the
//! collector (signals go through the agent's signal queue and shipper).
//!
//! Invariants: after `kill -9` nothing committed is lost and nothing is read twice except a
//! record that was held (a CRI partial or multi-line record in progress) and the batch the
//! collector had not acknowledged; a file that cannot be read is counted and logged once;
//! the raw-log queue is bounded by backpressure (reading pauses; files are the buffer).
//! Everything synchronous runs on the blocking pool; the shell reads the clock and passes
//! times in.

pub mod detect;
pub mod encode;
pub mod mine;
pub mod multiline;
pub mod origin;
pub mod parse;
pub mod pipeline;
pub mod redact;
pub mod ship;
pub mod store;
pub mod tail;

use crate::metrics::{LOG_STAGE_COMMIT, LOG_STAGE_OPEN, LOG_STAGE_READ, Metrics};
use detect::DetectConfig;
use pipeline::Pipeline;
use redact::Redactor;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use store::LogStore;
use tail::{SourceSpec, TailConfig, TailStats, Tailer};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// The glob a DaemonSet agent reads when no path is configured and `/var/log/pods` exists.
pub const DEFAULT_POD_GLOB: &str = "/var/log/pods/*/*/*.log";

/// What the log source reads and how. Defaults in [`LogsConfig::default`].
#[derive(Clone, Debug)]
pub struct LogsConfig {
    /// Read logs at all (`--no-logs` turns it off).
    pub enabled: bool,
    /// Files to read.
    pub sources: Vec<SourceSpec>,
    /// How often files are looked for and read (default 1 s).
    pub poll_interval: Duration,
    /// Longer lines are cut to this (default 1 MiB) and counted.
    pub max_line_bytes: usize,
    /// Join stack traces into one record (default on).
    pub multiline: bool,
    /// A held multi-line record is emitted after this long without a continuation (1 s).
    pub multiline_timeout: Duration,
    /// A rotated or deleted file is released this long after its last growth (5 s).
    pub rotate_wait: Duration,
    /// Extra redaction patterns (regex; a `secret` group limits what is replaced).
    pub redact: Vec<String>,
    /// Ship raw records (default on; detection runs either way).
    pub ship_raw: bool,
    /// gzip raw-log exports: `auto` (default: unless the collector is on loopback), `gzip`,
    /// `none`.
    pub compression: ship::Compression,
    /// Reading pauses while this many bytes of raw logs wait on disk (256 MiB).
    pub queue_max_bytes: u64,
    /// Bytes read per poll across all files (1 MiB); a commit holds one or two polls.
    pub read_budget_bytes: usize,
    /// Export requests carry at most this many bytes of records (3 MiB), several batches:
    /// a round trip to the collector per 3 MiB rather than per MiB, and still under the
    /// 4 MiB that gRPC servers (the OpenTelemetry Collector's included) accept by default.
    pub max_request_bytes: usize,
    /// Stored batches carry about this many bytes of records (192 KiB).
    pub batch_bytes: usize,
    /// Log signals; `None` turns detection off.
    pub detect: Option<DetectConfig>,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            enabled: true,
            sources: Vec::new(),
            poll_interval: Duration::from_secs(1),
            max_line_bytes: 1 << 20,
            multiline: true,
            multiline_timeout: Duration::from_secs(1),
            rotate_wait: Duration::from_secs(5),
            redact: Vec::new(),
            ship_raw: true,
            compression: ship::Compression::Auto,
            queue_max_bytes: 256 << 20,
            read_budget_bytes: 1 << 20,
            max_request_bytes: 3 << 20,
            // Below the allocator's mmap threshold (see `tune_allocator`): batch and
            // state-file buffers are reused from the heap instead of mapped per batch.
            batch_bytes: 192 << 10,
            detect: Some(DetectConfig::default()),
        }
    }
}

/// The `agent.logs` section of the config file (docs/logs.md). Every field is optional;
/// flags win over it.
#[derive(Clone, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogsFile {
    /// Read logs at all.
    pub enabled: Option<bool>,
    /// `[{glob, format}]`; `format` is auto, cri, docker or plain.
    #[serde(default)]
    pub paths: Vec<SourceSpec>,
    pub poll_interval_ms: Option<u64>,
    pub max_line_bytes: Option<usize>,
    pub multiline: Option<bool>,
    pub multiline_timeout_ms: Option<u64>,
    pub rotate_wait_ms: Option<u64>,
    /// Extra redaction patterns.
    #[serde(default)]
    pub redact: Vec<String>,
    pub ship_raw: Option<bool>,
    /// `false`: the same as `compression: none` (older name).
    pub compress: Option<bool>,
    /// `auto`, `gzip` or `none`.
    pub compression: Option<ship::Compression>,
    pub queue_max_bytes: Option<u64>,
    /// Detector thresholds.
    pub detect: Option<DetectConfig>,
    pub detect_enabled: Option<bool>,
}

/// A log configuration that cannot run.
#[derive(Debug, thiserror::Error)]
pub enum LogsConfigInvalid {
    #[error(transparent)]
    Glob(#[from] tail::GlobInvalid),
    #[error(transparent)]
    Redact(#[from] redact::RedactRuleInvalid),
    #[error("{0}")]
    Value(String),
}

impl LogsConfig {
    /// The pod-log glob when `/var/log/pods` exists here (a Kubernetes node).
    pub fn default_sources(root: &Path) -> Vec<SourceSpec> {
        if root.join("var/log/pods").is_dir() {
            vec![SourceSpec {
                glob: DEFAULT_POD_GLOB.into(),
                format: parse::Format::Auto,
            }]
        } else {
            Vec::new()
        }
    }

    /// Checks that globs and patterns compile and values make sense.
    pub fn validate(&self) -> Result<(), LogsConfigInvalid> {
        if self.max_line_bytes < 64 {
            return Err(LogsConfigInvalid::Value(
                "--log-max-line-bytes must be at least 64".into(),
            ));
        }
        if self.poll_interval.is_zero() {
            return Err(LogsConfigInvalid::Value(
                "--log-poll-interval-ms must be at least 1".into(),
            ));
        }
        Redactor::new(&self.redact)?;
        Tailer::new(self.tail_config(), HashMap::new())?;
        Ok(())
    }

    fn tail_config(&self) -> TailConfig {
        TailConfig {
            sources: self.sources.clone(),
            max_line_bytes: self.max_line_bytes,
            multiline: self.multiline,
            multiline_timeout_ms: self.multiline_timeout.as_millis() as u64,
            rotate_wait_ms: self.rotate_wait.as_millis() as u64,
            read_budget_bytes: self.read_budget_bytes.max(64 << 10),
            checkpoint_ttl_secs: 24 * 3600,
        }
    }

    fn pipeline(&self, host: &str) -> Result<Pipeline, LogsConfigInvalid> {
        self.pipeline_with(host, mine::default_miner())
    }

    fn pipeline_with(
        &self,
        host: &str,
        miner: Box<dyn mine::TemplateMiner>,
    ) -> Result<Pipeline, LogsConfigInvalid> {
        Ok(Pipeline::new(
            host.to_string(),
            Redactor::new(&self.redact)?,
            miner,
            self.detect.clone(),
            self.ship_raw,
        )
        .with_batch_max_bytes(self.batch_bytes.min(self.max_request_bytes)))
    }
}

/// The running source. See the module docs.
pub struct LogsSource {
    cfg: LogsConfig,
    tailer: Tailer,
    pipeline: Pipeline,
    store: Arc<LogStore>,
    metrics: Metrics,
    last: TailStats,
    last_records: u64,
    last_utf8: u64,
    last_redactions: HashMap<&'static str, u64>,
    last_suppressed: u64,
    /// When the miner's state was last handed to a commit.
    miner_saved_at: Option<std::time::Instant>,
}

impl std::fmt::Debug for LogsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogsSource")
            .field("sources", &self.cfg.sources)
            .finish()
    }
}

impl LogsSource {
    pub fn new(
        cfg: LogsConfig,
        host: &str,
        store: Arc<LogStore>,
        metrics: Metrics,
    ) -> Result<LogsSource, String> {
        let checkpoints = store.load_checkpoints().map_err(|e| e.to_string())?;
        let tailer = Tailer::new(cfg.tail_config(), checkpoints).map_err(|e| e.to_string())?;
        let saved = store.load_miner().map_err(|e| e.to_string())?;
        let (miner, invalid) = mine::load_miner(saved.as_deref());
        if let Some(reason) = invalid {
            warn!(reason = %reason, "The saved template miner state does not load; starting a fresh miner (template ids of known templates may change).");
        }
        let pipeline = cfg.pipeline_with(host, miner).map_err(|e| e.to_string())?;
        Ok(LogsSource {
            cfg,
            tailer,
            pipeline,
            store,
            metrics,
            miner_saved_at: None,
            last: TailStats::default(),
            last_records: 0,
            last_utf8: 0,
            last_redactions: HashMap::new(),
            last_suppressed: 0,
        })
    }

    fn export_metrics(&mut self) {
        let s = self.tailer.stats;
        let l = self.last;
        let m = &self.metrics;
        m.logs_lines_received.inc_by(s.lines_read - l.lines_read);
        m.logs_bytes_received.inc_by(s.bytes_read - l.bytes_read);
        m.logs_lines_truncated
            .inc_by(s.lines_truncated - l.lines_truncated);
        m.logs_lines_unparsed
            .inc_by(s.lines_unparsed - l.lines_unparsed);
        m.logs_rotations
            .with_label_values(&["rename"])
            .inc_by(s.rotations_rename - l.rotations_rename);
        m.logs_rotations
            .with_label_values(&["truncate"])
            .inc_by(s.rotations_truncate - l.rotations_truncate);
        m.logs_errors
            .with_label_values(&[LOG_STAGE_OPEN])
            .inc_by(s.open_errors - l.open_errors);
        m.logs_errors
            .with_label_values(&[LOG_STAGE_READ])
            .inc_by(s.read_errors - l.read_errors);
        m.logs_files_open.set(s.files_open as i64);
        self.last = s;
        let p = &self.pipeline.stats;
        m.logs_records_received
            .inc_by(p.records - self.last_records);
        m.logs_invalid_utf8.inc_by(p.invalid_utf8 - self.last_utf8);
        self.last_records = p.records;
        self.last_utf8 = p.invalid_utf8;
        for (rule, n) in &p.redactions {
            let before = self.last_redactions.insert(rule, *n).unwrap_or(0);
            m.logs_redactions
                .with_label_values(&[rule])
                .inc_by(n - before);
        }
        let sup = self.pipeline.new_templates_suppressed();
        m.logs_new_templates_suppressed
            .inc_by(sup - self.last_suppressed);
        self.last_suppressed = sup;
        m.logs_queue_bytes.set(self.store.bytes() as i64);
    }

    /// One poll (blocking): what it read waits in the pipeline and the tailer until
    /// [`LogsSource::take_pending`]. Returns whether more data is waiting now.
    fn poll(&mut self, now_ms: u64) -> bool {
        let now_ns = daytwo_model::Timestamp::from_system_time(SystemTime::now()).0;
        let read = self.store.bytes() < self.cfg.queue_max_bytes;
        self.tailer.poll(now_ms, now_ns, read, &mut self.pipeline);
        self.pipeline.tick(now_ns);
        self.export_metrics();
        read && !self.tailer.caught_up()
    }

    /// Everything read since the last call, with the checkpoints that cover exactly it (and
    /// the miner's state when it changed, at most every [`MINER_SAVE_EVERY`]).
    fn take_pending(&mut self) -> Pending {
        let due = self
            .miner_saved_at
            .is_none_or(|t| t.elapsed() >= MINER_SAVE_EVERY);
        let miner = if due {
            self.pipeline.miner_state_if_changed()
        } else {
            None
        };
        if miner.is_some() {
            self.miner_saved_at = Some(std::time::Instant::now());
        }
        Pending {
            batches: self.pipeline.take_batches(),
            signals: self.pipeline.take_signals(),
            changes: self.tailer.take_checkpoint_changes(),
            miner,
        }
    }

    /// After a commit: counts its signals, hands its batches to the shipper (in memory) and
    /// keeps the buffers the shipper does not need.
    fn committed(&mut self, (done, first): (Pending, u64)) {
        for s in &done.signals {
            self.metrics
                .signals_emitted
                .with_label_values(&[s.name.as_str()])
                .inc();
        }
        let spare = if self.cfg.ship_raw {
            self.store.keep(first, done.batches)
        } else {
            done.batches.into_iter().map(|b| b.into_buf()).collect()
        };
        self.pipeline.recycle_bufs(spare);
        self.metrics.logs_queue_bytes.set(self.store.bytes() as i64);
    }

    /// Runs until `shutdown`.
    ///
    /// Reading and committing overlap: while one commit (and its fsync) runs on the blocking
    /// pool, the next polls read on; what they read is committed next, in one transaction
    /// (group commit, bounded by [`MAX_PENDING_BUDGETS`] read budgets). Commits stay in
    /// order and each carries the checkpoints of exactly its records, so a crash at any
    /// point re-reads only what no durable commit covers.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(
            paths = ?self.cfg.sources.iter().map(|s| s.glob.as_str()).collect::<Vec<_>>(),
            poll_ms = self.cfg.poll_interval.as_millis() as u64,
            ship_raw = self.cfg.ship_raw,
            "Log source started."
        );
        let start = tokio::time::Instant::now();
        let interval = self.cfg.poll_interval;
        let max_pending = self.cfg.read_budget_bytes * MAX_PENDING_BUDGETS;
        let mut inflight: Option<tokio::task::JoinHandle<Option<(Pending, u64)>>> = None;
        loop {
            if shutdown.is_cancelled() {
                if let Some(h) = inflight.take() {
                    let _ = h.await;
                }
                return;
            }
            let now_ms = start.elapsed().as_millis() as u64;
            let (back, more) = match tokio::task::spawn_blocking(move || {
                let more = self.poll(now_ms);
                (self, more)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    error!(error = %e, "The log source failed; log reading stopped. This is a bug; please report it with the log.");
                    return;
                }
            };
            self = back;
            let busy = inflight.as_ref().is_some_and(|h| !h.is_finished());
            if busy
                && more
                && !shutdown.is_cancelled()
                && self.pipeline.pending_bytes() < max_pending
            {
                // The previous commit is still syncing: read on into the same batches.
                tokio::task::yield_now().await;
                continue;
            }
            if let Some(h) = inflight.take()
                && !self.finish_commit(h.await)
            {
                return;
            }
            if shutdown.is_cancelled() {
                // What was read since the last commit is not durable, and neither are the
                // checkpoints past it: the next start reads it again.
                return;
            }
            let pending = self.take_pending();
            if !pending.is_empty() {
                let store = self.store.clone();
                let metrics = self.metrics.clone();
                let token = shutdown.clone();
                inflight = Some(tokio::task::spawn_blocking(move || {
                    commit(&store, &metrics, pending, &token)
                }));
            }
            if more {
                tokio::task::yield_now().await;
                continue;
            }
            // Caught up: the next poll is an interval away. The commit in flight goes to the
            // shipper as soon as it is durable, not at that poll (the last lines of a burst
            // waited up to a poll interval).
            let next_poll = tokio::time::Instant::now() + interval;
            if let Some(h) = inflight.as_mut() {
                tokio::select! {
                    _ = shutdown.cancelled() => {}
                    _ = tokio::time::sleep_until(next_poll) => {}
                    r = h => {
                        inflight = None;
                        if !self.finish_commit(r) {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep_until(next_poll) => {}
            }
        }
    }

    /// Takes a finished commit's outcome; `false` when reading must stop (given up at
    /// shutdown, or the task failed).
    fn finish_commit(&mut self, r: Result<Option<(Pending, u64)>, tokio::task::JoinError>) -> bool {
        match r {
            Ok(Some(done)) => {
                self.committed(done);
                true
            }
            // Given up at shutdown: nothing of it (nor its checkpoints) is durable.
            Ok(None) => false,
            Err(e) => {
                error!(error = %e, "The log commit task failed; log reading stopped. This is a bug; please report it with the log.");
                false
            }
        }
    }
}

/// Keeps the process's heap close to what it uses (glibc only; elsewhere nothing).
///
/// The log path moves large buffers between threads (read, encode, commit, send). glibc's
/// defaults give every thread that allocates its own arena, each keeping freed holes: the
/// agent's peak RSS on the 1 GiB benchmark was 104–107 MiB with them. Arenas are capped at 2,
/// and the mmap threshold is fixed at 512 KiB: the many 192 KiB batch and state-file buffers
/// are reused from the heap, while the one 1 MiB request buffer per export is mapped and
/// returned (a 256 KiB threshold with 1 MiB batches cost ~20% of the agent's CPU in page
/// faults; a 2 MiB one let the heap grow to 68–73 MiB).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes glibc's allocator parameters; it is safe to call at any time.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 512 << 10);
    }
}

/// How many read budgets a group commit may hold while the previous commit syncs.
const MAX_PENDING_BUDGETS: usize = 2;

/// The template miner's state is saved with a commit when it changed, at most this often.
const MINER_SAVE_EVERY: Duration = Duration::from_secs(10);

/// Read records, their signals and the checkpoints that cover them: one transaction.
struct Pending {
    batches: Vec<encode::EncodedBatch>,
    signals: Vec<daytwo_model::Signal>,
    changes: tail::CheckpointChanges,
    miner: Option<String>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        self.batches.is_empty()
            && self.signals.is_empty()
            && self.changes.is_empty()
            && self.miner.is_none()
    }
}

/// Commits `p` (blocking), retrying a failing disk until it works or `shutdown` (then
/// `None`: nothing was committed). Returns it with the key of its first batch.
fn commit(
    store: &LogStore,
    metrics: &Metrics,
    p: Pending,
    shutdown: &CancellationToken,
) -> Option<(Pending, u64)> {
    let mut delay = Duration::from_millis(100);
    loop {
        match store.commit_with_miner(&p.signals, &p.batches, &p.changes, p.miner.as_deref()) {
            Ok(first) => return Some((p, first)),
            Err(e) => {
                metrics
                    .logs_errors
                    .with_label_values(&[LOG_STAGE_COMMIT])
                    .inc();
                error!(error = %e, "Cannot commit read logs to the state file; retrying (reading is paused).");
                if shutdown.is_cancelled() {
                    // Not committed: the checkpoints did not move either, so the next start
                    // reads these lines again.
                    return None;
                }
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// What [`bench`] measured.
#[derive(Clone, Copy, Debug)]
pub struct BenchReport {
    pub lines: u64,
    pub records: u64,
    pub bytes: u64,
    pub secs: f64,
}

/// Reads every configured file to its end once through the whole pipeline (tail, framing,
/// partial and multi-line joining, redaction, template ids, detectors, OTLP encoding), then
/// throws the output away: the throughput of everything but the disk queue and the network.
pub fn bench(cfg: &LogsConfig, host: &str) -> Result<BenchReport, LogsConfigInvalid> {
    let mut tailer = Tailer::new(cfg.tail_config(), HashMap::new())?;
    let mut pipeline = cfg.pipeline(host)?;
    let start = std::time::Instant::now();
    loop {
        let now_ms = start.elapsed().as_millis() as u64;
        let now_ns = daytwo_model::Timestamp::from_system_time(SystemTime::now()).0;
        tailer.poll(now_ms, now_ns, true, &mut pipeline);
        pipeline.tick(now_ns);
        let batches = pipeline.take_batches();
        pipeline.recycle(batches);
        drop(pipeline.take_signals());
        drop(tailer.take_checkpoint_changes());
        if tailer.caught_up() {
            break;
        }
    }
    // The end of input: what multi-line joining still holds is finished, so that `records`
    // counts every record the live agent ships (there, after the multi-line timeout).
    let now_ns = daytwo_model::Timestamp::from_system_time(SystemTime::now()).0;
    tailer.flush_held(now_ns, &mut pipeline);
    pipeline.tick(now_ns);
    Ok(BenchReport {
        lines: tailer.stats.lines_read,
        records: pipeline.stats.records,
        bytes: tailer.stats.bytes_read,
        secs: start.elapsed().as_secs_f64(),
    })
}
