//! The journald source: `journalctl -o json --follow` as a child process → the log pipeline
//! (redaction, multi-line joining, template ids, log signals, raw OTLP records) and the systemd
//! unit detector (`daytwo.systemd.unit_failed`, `daytwo.systemd.restart_loop`).
//!
//! Entry types: [`JournaldConfig`] (part of [`crate::AgentConfig`]; [`JournaldConfig::check`]
//! decides whether the source runs here), [`JournaldSource`] (built by `Agent::new`, driven by
//! [`JournaldSource::run`]) and [`JournaldMetrics`]. The pure parts are [`entry`] (one JSON line
//! → fields) and [`systemd`] (unit failures and restart loops in event time).
//!
//! The child: `journalctl -o json --follow --all --no-pager` and either `--after-cursor=C
//! --no-tail` (resuming after the committed cursor) or, on the very first start, `--lines=0`
//! (from now on, as the kmsg source does). `--directory` when one is configured. A child that
//! exits (or cannot be spawned) is restarted after a backoff that doubles from
//! `restart_initial` to `restart_max` and resets once the child delivered an entry; every
//! restart is counted.
//!
//! Without loss: what was read since the last commit (raw-log batches, signals) and the
//! `__CURSOR` of the last entry they cover are committed in one transaction
//! ([`store`], [`crate::logs::store::LogStore::commit_with`]) every `commit_interval`. Held
//! multi-line records are flushed before each commit, so the cursor never passes an entry that
//! is still in memory: after `kill -9` journalctl resumes after the last durable entry, and
//! only the batch the collector had not acknowledged is sent again. The price: a stack trace
//! whose lines straddle a commit is sent as two records.
//!
//! Bad input: a line that is not JSON, a line longer than `max_line_bytes` (skipped to its
//! end), a `null` or binary `MESSAGE` are counted in `daytwo_agent_journald_*` and never stop
//! the source.

pub mod entry;
pub mod store;
pub mod systemd;

use crate::logs::detect::WorkloadRef;
use crate::logs::encode::LogSeverity;
use crate::logs::multiline::{Multiline, Record};
use crate::logs::parse::Stream;
use crate::logs::pipeline::Pipeline;
use crate::logs::redact::Redactor;
use crate::logs::store::LogStore;
use crate::logs::tail::{CheckpointChanges, FileInfo, RecordSink};
use crate::logs::{LogsConfig, mine, origin::Origin};
use crate::metrics::Metrics;
use daytwo_model::{Attributes, Entity, EntityKind, Signal, Timestamp};
use entry::{JournalEntry, parse_line};
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use systemd::{UnitDetectConfig, UnitDetector};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

/// Where journald keeps its files: persistent, then volatile.
pub const JOURNAL_DIRS: [&str; 2] = ["/var/log/journal", "/run/log/journal"];

/// Whether the source runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JournaldMode {
    /// On when the `journalctl` binary and a journal directory exist here.
    #[default]
    Auto,
    /// Always on (a missing binary is retried with backoff and counted).
    On,
    Off,
}

impl std::str::FromStr for JournaldMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(JournaldMode::Auto),
            "on" | "true" => Ok(JournaldMode::On),
            "off" | "false" => Ok(JournaldMode::Off),
            _ => Err(format!("{s:?}: expected auto, on or off")),
        }
    }
}

/// What the journald source runs and how.
#[derive(Clone, Debug, PartialEq)]
pub struct JournaldConfig {
    pub mode: JournaldMode,
    /// The journalctl binary (a name is looked up in `PATH`).
    pub journalctl: PathBuf,
    /// `--directory` for journalctl (a DaemonSet mounts the host's journal); `None`: the
    /// system journal.
    pub directory: Option<PathBuf>,
    /// First wait before restarting a child that exited (default 1 s).
    pub restart_initial: Duration,
    /// Longest wait between restarts (default 60 s).
    pub restart_max: Duration,
    /// How often what was read is committed with its cursor (default 1 s).
    pub commit_interval: Duration,
    /// Unit failure and restart-loop detection.
    pub systemd: UnitDetectConfig,
}

impl Default for JournaldConfig {
    fn default() -> Self {
        JournaldConfig {
            mode: JournaldMode::Auto,
            journalctl: PathBuf::from("journalctl"),
            directory: None,
            restart_initial: Duration::from_secs(1),
            restart_max: Duration::from_secs(60),
            commit_interval: Duration::from_secs(1),
            systemd: UnitDetectConfig::default(),
        }
    }
}

/// `path` as given, or the first match in `PATH` for a bare name.
pub fn find_binary(path: &Path) -> Option<PathBuf> {
    if path.components().count() > 1 {
        return path.is_file().then(|| path.to_path_buf());
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .map(|d| d.join(path))
        .find(|p| p.is_file())
}

impl JournaldConfig {
    /// Whether the source runs here: `Ok(())`, or why not (one line for the log).
    pub fn check(&self) -> Result<(), String> {
        match self.mode {
            JournaldMode::Off => Err("journald: off by configuration".into()),
            JournaldMode::On => Ok(()),
            JournaldMode::Auto => {
                if find_binary(&self.journalctl).is_none() {
                    return Err(format!(
                        "journald: {} not found; systemd journal reading is off (set --journalctl PATH or --journald on)",
                        self.journalctl.display()
                    ));
                }
                let dirs: Vec<PathBuf> = match &self.directory {
                    Some(d) => vec![d.clone()],
                    None => JOURNAL_DIRS.iter().map(PathBuf::from).collect(),
                };
                if !dirs.iter().any(|d| d.is_dir()) {
                    return Err(format!(
                        "journald: no journal directory ({}); systemd journal reading is off",
                        dirs.iter()
                            .map(|d| d.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                Ok(())
            }
        }
    }

    /// The journal directory named in raw records' `log.file.path`.
    fn journal_path(&self) -> String {
        match &self.directory {
            Some(d) => d.display().to_string(),
            None => JOURNAL_DIRS
                .iter()
                .find(|d| Path::new(d).is_dir())
                .unwrap_or(&JOURNAL_DIRS[0])
                .to_string(),
        }
    }

    /// journalctl's arguments, resuming after `cursor`.
    pub fn args(&self, cursor: Option<&str>) -> Vec<String> {
        let mut a: Vec<String> = ["-o", "json", "--follow", "--all", "--no-pager"]
            .map(String::from)
            .into();
        match cursor {
            Some(c) => {
                a.push(format!("--after-cursor={c}"));
                a.push("--no-tail".into());
            }
            None => a.push("--lines=0".into()),
        }
        if let Some(d) = &self.directory {
            a.push(format!("--directory={}", d.display()));
        }
        a
    }
}

/// `reason` label of `daytwo_agent_journald_invalid_total`: not a JSON object.
pub const INVALID_JSON: &str = "json";
/// `reason` label: longer than the maximum line length; skipped.
pub const INVALID_TOO_LONG: &str = "too_long";
/// `stage` label of `daytwo_agent_journald_errors_total`: the child could not be started.
pub const STAGE_SPAWN: &str = "spawn";
/// `stage` label: committing to the state file failed (retried).
pub const STAGE_COMMIT: &str = "commit";
/// `stage` label: journalctl failed [`CURSOR_GIVE_UP`] times in a row with the saved cursor
/// and printed nothing; the source starts from the end of the journal.
pub const STAGE_CURSOR: &str = "cursor";
/// See [`STAGE_CURSOR`].
pub const CURSOR_GIVE_UP: u32 = 3;

/// The source's own counters (registered with the agent's registry).
#[derive(Clone, Debug)]
pub struct JournaldMetrics {
    /// `daytwo_agent_journald_entries_received_total`
    pub entries: IntCounter,
    /// `daytwo_agent_journald_invalid_total{reason}`
    pub invalid: IntCounterVec,
    /// `daytwo_agent_journald_messages_total{kind="binary|null"}`
    pub messages: IntCounterVec,
    /// `daytwo_agent_journald_restarts_total`
    pub restarts: IntCounter,
    /// `daytwo_agent_journald_errors_total{stage}`
    pub errors: IntCounterVec,
    /// `daytwo_agent_journald_running`
    pub running: IntGauge,
}

impl JournaldMetrics {
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        Ok(JournaldMetrics {
            entries: IntCounter::new(
                "daytwo_agent_journald_entries_received_total",
                "Journal entries read from journalctl.",
            )?,
            invalid: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_journald_invalid_total",
                    "journalctl output lines that were not entries, by reason (json, too_long).",
                ),
                &["reason"],
            )?,
            messages: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_journald_messages_total",
                    "Entries whose MESSAGE was not a plain string: binary (a byte array) or null (over journalctl's size limit).",
                ),
                &["kind"],
            )?,
            restarts: IntCounter::new(
                "daytwo_agent_journald_restarts_total",
                "Times journalctl exited or could not be started and was started again.",
            )?,
            errors: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_journald_errors_total",
                    "journald source errors by stage (spawn, commit, cursor).",
                ),
                &["stage"],
            )?,
            running: IntGauge::new(
                "daytwo_agent_journald_running",
                "1 while a journalctl child is running.",
            )?,
        })
    }

    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Self::unregistered()?;
        registry.register(Box::new(m.entries.clone()))?;
        registry.register(Box::new(m.invalid.clone()))?;
        registry.register(Box::new(m.messages.clone()))?;
        registry.register(Box::new(m.restarts.clone()))?;
        registry.register(Box::new(m.errors.clone()))?;
        registry.register(Box::new(m.running.clone()))?;
        Ok(m)
    }
}

/// Units (or identifiers) whose records are joined and batched separately, at most this many.
const MAX_SOURCES: usize = 4096;

/// One unit's multi-line joiner and the pipeline sources of its priorities.
struct UnitLog {
    ml: Multiline,
    /// Priority of the record being held.
    held_priority: Option<u8>,
    /// Pipeline source per priority (`None`: no PRIORITY field).
    ids: HashMap<Option<u8>, Arc<FileInfo>>,
    last_seen_ms: u64,
}

/// The synchronous part: entries in, pipeline records and signals out. Clock-free (times are
/// arguments), so tests drive it without a child.
pub struct JournaldReader {
    host: String,
    journal_path: String,
    pipeline: Pipeline,
    detector: UnitDetector,
    units: HashMap<String, UnitLog>,
    multiline: bool,
    multiline_timeout_ms: u64,
    max_line_bytes: usize,
    next_id: u64,
    signals: Vec<Signal>,
    /// Cursor of the last entry fed.
    last_cursor: Option<String>,
}

impl JournaldReader {
    pub fn new(
        cfg: &JournaldConfig,
        logs: &LogsConfig,
        host: &str,
    ) -> Result<Self, crate::logs::LogsConfigInvalid> {
        let pipeline = Pipeline::new(
            host.to_string(),
            Redactor::new(&logs.redact)?,
            mine::default_miner(),
            logs.detect.clone(),
            logs.ship_raw,
        )
        .with_batch_max_bytes(logs.max_request_bytes);
        Ok(JournaldReader {
            host: host.to_string(),
            journal_path: cfg.journal_path(),
            pipeline,
            detector: UnitDetector::new(
                cfg.systemd.clone(),
                host.to_string(),
                Redactor::new(&logs.redact)?,
            ),
            units: HashMap::new(),
            multiline: logs.multiline,
            multiline_timeout_ms: logs.multiline_timeout.as_millis() as u64,
            max_line_bytes: logs.max_line_bytes,
            next_id: 1,
            signals: Vec::new(),
            last_cursor: None,
        })
    }

    /// The workload of a unit key: `unit:NAME`, `ident:NAME` or `host`.
    fn workload(&self, key: &str, priority: Option<u8>) -> WorkloadRef {
        let host = self.host.as_str();
        let mut resource = Attributes::new();
        resource.insert("host.name".into(), host.into());
        let mut attributes = Attributes::new();
        let entity = if let Some(u) = key.strip_prefix("unit:") {
            resource.insert("systemd.unit".into(), u.into());
            attributes.insert("systemd.unit".into(), u.into());
            Entity::new(EntityKind::Unit, u)
                .with_attr("systemd.unit", u)
                .with_attr("host.name", host)
        } else if let Some(i) = key.strip_prefix("ident:") {
            resource.insert("service.name".into(), i.into());
            Entity::new(EntityKind::Service, i)
                .with_attr("service.name", i)
                .with_attr("host.name", host)
        } else {
            Entity::new(EntityKind::Host, host).with_attr("host.name", host)
        };
        if let Some(p) = priority {
            resource.insert("daytwo.journald.priority".into(), p.to_string().into());
        }
        attributes.insert("log.file.path".into(), self.journal_path.clone().into());
        WorkloadRef {
            key: format!("journald:{key}"),
            entity,
            resource,
            attributes,
        }
    }

    fn source(&mut self, key: &str, priority: Option<u8>) -> Arc<FileInfo> {
        if let Some(i) = self.units.get(key).and_then(|u| u.ids.get(&priority)) {
            return i.clone();
        }
        let id = self.next_id;
        self.next_id += 1;
        let info = Arc::new(FileInfo {
            origin: Origin {
                path: format!("journald:{key}"),
                pod: None,
                container_id: None,
            },
            id,
        });
        let wl = self.workload(key, priority);
        let severity = priority.and_then(LogSeverity::from_syslog);
        self.pipeline
            .register_source_with_severity(id, &self.journal_path, wl, severity);
        if let Some(u) = self.units.get_mut(key) {
            u.ids.insert(priority, info.clone());
        }
        info
    }

    fn emit(&mut self, key: &str, priority: Option<u8>, rec: &Record, now_ns: i64) {
        let info = self.source(key, priority);
        self.pipeline.record(&info, Stream::None, rec, now_ns);
    }

    /// Feeds one entry read at wall time `now_ns` and monotonic `now_ms`.
    pub fn entry(&mut self, e: &JournalEntry, now_ns: i64, now_ms: u64) {
        let time_ns = e
            .realtime_us
            .map(|us| (us.min(i64::MAX as u64 / 1000) * 1000) as i64)
            .unwrap_or(now_ns);
        self.signals.extend(self.detector.entry(e, time_ns));
        let key = match (e.unit(), &e.identifier) {
            (Some(u), _) => format!("unit:{u}"),
            (None, Some(i)) => format!("ident:{i}"),
            (None, None) => "host".to_string(),
        };
        if !self.units.contains_key(&key) {
            if self.units.len() >= MAX_SOURCES {
                self.evict_oldest(now_ns);
            }
            self.units.insert(
                key.clone(),
                UnitLog {
                    ml: Multiline::new(
                        self.multiline,
                        self.multiline_timeout_ms,
                        self.max_line_bytes,
                    ),
                    held_priority: None,
                    ids: HashMap::new(),
                    last_seen_ms: now_ms,
                },
            );
        }
        let truncated = e.message.len() > self.max_line_bytes;
        let msg = &e.message[..e.message.len().min(self.max_line_bytes)];
        let u = self.units.get_mut(&key).expect("inserted above");
        u.last_seen_ms = now_ms;
        let was_holding = u.ml.held_offset().is_some();
        let prev_priority = u.held_priority;
        let done = u.ml.push(Some(time_ns), msg, truncated, 0, now_ms).cloned();
        // With joining, push hands back the previous record when this entry starts a new one
        // (the new one is held); without it, this very entry.
        let emitted_priority = if self.multiline {
            if done.is_some() || !was_holding {
                u.held_priority = e.priority;
            }
            prev_priority
        } else {
            e.priority
        };
        if let Some(rec) = done {
            self.emit(&key, emitted_priority, &rec, now_ns);
        }
        if let Some(c) = &e.cursor {
            self.last_cursor = Some(c.clone());
        }
    }

    fn evict_oldest(&mut self, now_ns: i64) {
        let Some(key) = self
            .units
            .iter()
            .min_by_key(|(_, u)| u.last_seen_ms)
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        self.flush_unit(&key, now_ns);
        if let Some(u) = self.units.remove(&key) {
            for info in u.ids.values() {
                self.pipeline.released(info);
            }
        }
    }

    fn flush_unit(&mut self, key: &str, now_ns: i64) {
        let Some(u) = self.units.get_mut(key) else {
            return;
        };
        let p = u.held_priority.take();
        if let Some(rec) = u.ml.flush().cloned() {
            self.emit(key, p, &rec, now_ns);
        }
    }

    /// Sends held multi-line records that waited past the timeout.
    pub fn tick(&mut self, now_ns: i64, now_ms: u64) {
        let due: Vec<String> = self
            .units
            .iter()
            .filter(|(_, u)| {
                u.ml.held_offset().is_some()
                    && now_ms.saturating_sub(u.last_seen_ms) >= self.multiline_timeout_ms
            })
            .map(|(k, _)| k.clone())
            .collect();
        for k in due {
            self.flush_unit(&k, now_ns);
        }
        self.pipeline.tick(now_ns);
    }

    /// The earliest time (ns) at which [`Self::tick`] could decide something (a silence), when
    /// nothing is held: the source sleeps until then.
    pub fn next_tick_due(&self) -> Option<i64> {
        self.pipeline.next_tick_due()
    }

    /// Everything read so far, with the cursor that covers exactly it (held records are
    /// flushed first).
    pub fn take_pending(&mut self, now_ns: i64) -> Pending {
        let keys: Vec<String> = self.units.keys().cloned().collect();
        for k in keys {
            self.flush_unit(&k, now_ns);
        }
        let mut signals = std::mem::take(&mut self.signals);
        signals.extend(self.pipeline.take_signals());
        Pending {
            batches: self.pipeline.take_batches(),
            signals,
            cursor: self.last_cursor.clone(),
        }
    }

    /// Bytes of encoded records not committed yet.
    pub fn pending_bytes(&self) -> u64 {
        self.pipeline.pending_bytes() as u64
    }

    /// Forgets the cursor of the last entry read (the journal it came from is gone).
    pub fn forget_cursor(&mut self) {
        self.last_cursor = None;
    }

    /// Gives committed buffers back.
    pub fn recycle(&mut self, p: Pending) {
        self.pipeline.recycle(p.batches);
    }

    /// Buffers the shipper did not keep (or spare ones of delivered batches), for reuse.
    pub fn recycle_bufs(&mut self, bufs: Vec<Vec<u8>>) {
        self.pipeline.recycle_bufs(bufs);
    }

    pub fn pipeline_stats(&self) -> &crate::logs::pipeline::PipelineStats {
        &self.pipeline.stats
    }
}

/// Read records and signals with the cursor that covers them: one transaction.
pub struct Pending {
    pub batches: Vec<crate::logs::encode::EncodedBatch>,
    pub signals: Vec<Signal>,
    pub cursor: Option<String>,
}

impl Pending {
    pub fn is_empty(&self) -> bool {
        self.batches.is_empty() && self.signals.is_empty()
    }
}

/// Longest sleep of an idle journald source (no entries, no silence due): it re-checks then.
const IDLE_WAKE: Duration = Duration::from_secs(60);

/// When an idle source wakes next: when the earliest silence is due (`due_ns`, wall clock),
/// at most [`IDLE_WAKE`] from now.
fn idle_deadline(due_ns: Option<i64>, now_ns: i64) -> tokio::time::Instant {
    let wait = due_ns.map_or(IDLE_WAKE, |due| {
        Duration::from_nanos(due.saturating_sub(now_ns).max(0) as u64).min(IDLE_WAKE)
    });
    tokio::time::Instant::now() + wait
}

/// Lines of journalctl's output, at most `max` bytes each (a longer one is skipped to its end).
///
/// Cancel-safe: [`LineReader::next_line`] may be dropped at its await point (the commit timer
/// wins a `select!`) without losing bytes; the partial line stays in `buf` and the next call
/// goes on with it.
struct LineReader<R> {
    r: BufReader<R>,
    /// The line being read; a complete one until the next call.
    buf: Vec<u8>,
    too_long: bool,
    complete: bool,
    max: usize,
}

impl<R: AsyncRead + Unpin> LineReader<R> {
    fn new(r: R, max: usize) -> Self {
        LineReader {
            r: BufReader::with_capacity(64 << 10, r),
            buf: Vec::new(),
            too_long: false,
            complete: false,
            max,
        }
    }

    /// The next line (without its newline) in `self.buf`: `Ok(Some(too_long))`, or `Ok(None)`
    /// at the end of the stream (a last line without a newline is returned first).
    async fn next_line(&mut self) -> std::io::Result<Option<bool>> {
        if self.complete {
            self.buf.clear();
            self.too_long = false;
            self.complete = false;
        }
        loop {
            let avail = self.r.fill_buf().await?;
            if avail.is_empty() {
                if self.buf.is_empty() && !self.too_long {
                    return Ok(None);
                }
                self.complete = true;
                return Ok(Some(self.too_long));
            }
            let (chunk, done) = match memchr::memchr(b'\n', avail) {
                Some(i) => (&avail[..i], Some(i + 1)),
                None => (avail, None),
            };
            if !self.too_long {
                if self.buf.len() + chunk.len() > self.max {
                    self.too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let n = done.unwrap_or(avail.len());
            self.r.consume(n);
            if done.is_some() {
                self.complete = true;
                return Ok(Some(self.too_long));
            }
        }
    }
}

/// The running source. See the module docs.
pub struct JournaldSource {
    cfg: JournaldConfig,
    reader: JournaldReader,
    store: Arc<LogStore>,
    cursor: Option<String>,
    metrics: Metrics,
    jm: JournaldMetrics,
    max_json_bytes: usize,
    /// Reading pauses while this many bytes of raw logs wait (`--log-queue-max-bytes`).
    queue_max_bytes: u64,
    last_records: u64,
    last_utf8: u64,
    last_redactions: HashMap<&'static str, u64>,
}

impl JournaldSource {
    pub fn new(
        cfg: JournaldConfig,
        logs: &LogsConfig,
        host: &str,
        store: Arc<LogStore>,
        queue: &crate::queue::Queue,
        metrics: Metrics,
        jm: JournaldMetrics,
    ) -> Result<Self, String> {
        let reader = JournaldReader::new(&cfg, logs, host).map_err(|e| e.to_string())?;
        let cursor = store::load_cursor(queue).map_err(|e| e.to_string())?;
        Ok(JournaldSource {
            cfg,
            reader,
            store,
            cursor,
            metrics,
            jm,
            // A JSON-escaped message takes up to 6 bytes per byte (\u00XX), plus the fields.
            queue_max_bytes: logs.queue_max_bytes,
            max_json_bytes: logs
                .max_line_bytes
                .saturating_mul(6)
                .saturating_add(1 << 16),
            last_records: 0,
            last_utf8: 0,
            last_redactions: HashMap::new(),
        })
    }

    fn spawn(&self) -> std::io::Result<tokio::process::Child> {
        let mut cmd = tokio::process::Command::new(&self.cfg.journalctl);
        cmd.args(self.cfg.args(self.cursor.as_deref()))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn()
    }

    fn export_metrics(&mut self) {
        let p = self.reader.pipeline_stats();
        let m = &self.metrics;
        m.logs_records_received
            .inc_by(p.records.saturating_sub(self.last_records));
        m.logs_invalid_utf8
            .inc_by(p.invalid_utf8.saturating_sub(self.last_utf8));
        self.last_records = p.records;
        self.last_utf8 = p.invalid_utf8;
        for (rule, n) in &p.redactions {
            let before = self.last_redactions.insert(rule, *n).unwrap_or(0);
            m.logs_redactions
                .with_label_values(&[rule])
                .inc_by(n.saturating_sub(before));
        }
    }

    /// Commits what was read, retrying a failing disk until it works or `shutdown` (then
    /// nothing of it is durable and the next start reads it again).
    async fn commit(&mut self, shutdown: &CancellationToken) -> bool {
        let now_ns = Timestamp::from_system_time(SystemTime::now()).0;
        let p = self.reader.take_pending(now_ns);
        self.export_metrics();
        // Nothing read since the start of this process: the saved cursor stays.
        if p.is_empty() && (p.cursor.is_none() || p.cursor == self.cursor) {
            self.reader.recycle(p);
            return true;
        }
        let mut next = Some(p);
        let mut delay = Duration::from_millis(100);
        loop {
            let pending = next.take().expect("set before each attempt");
            let store = self.store.clone();
            let (res, back) = tokio::task::spawn_blocking(move || {
                let res = store.commit_with(
                    &pending.signals,
                    &pending.batches,
                    &CheckpointChanges::default(),
                    &mut |w| match &pending.cursor {
                        Some(c) => store::write_cursor(w, c),
                        None => Ok(()),
                    },
                );
                (res, pending)
            })
            .await
            .expect("the commit task does not panic");
            match res {
                Ok(first) => {
                    for s in &back.signals {
                        info!(event = %s.name, entity = %s.entity.name, "{}", s.message);
                        self.metrics
                            .signals_emitted
                            .with_label_values(&[s.name.as_str()])
                            .inc();
                    }
                    if back.cursor.is_some() {
                        self.cursor = back.cursor.clone();
                    }
                    // Hand the batches to the shipper's memory (and wake it), as the file
                    // source does; the state file keeps the crash-safe copy.
                    let mut back = back;
                    let batches = std::mem::take(&mut back.batches);
                    let bufs = self.store.keep(first, batches);
                    self.reader.recycle_bufs(bufs);
                    self.metrics.logs_queue_bytes.set(self.store.bytes() as i64);
                    return true;
                }
                Err(e) => {
                    self.jm.errors.with_label_values(&[STAGE_COMMIT]).inc();
                    error!(error = %e, "Cannot commit journal entries to the state file; retrying (reading is paused).");
                    if shutdown.is_cancelled() {
                        return false;
                    }
                    next = Some(back);
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// Runs until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        info!(
            journalctl = %self.cfg.journalctl.display(),
            cursor = self.cursor.is_some(),
            "Journald source started."
        );
        let start = tokio::time::Instant::now();
        let mut backoff = self.cfg.restart_initial;
        let mut first = true;
        // journalctl runs in a row that failed at once with the saved cursor.
        let mut cursor_failures = 0u32;
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            if !first {
                self.jm.restarts.inc();
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(self.cfg.restart_max);
            }
            first = false;
            let mut child = match self.spawn() {
                Ok(c) => c,
                Err(e) => {
                    self.jm.errors.with_label_values(&[STAGE_SPAWN]).inc();
                    warn!(journalctl = %self.cfg.journalctl.display(), error = %e, retry_in = ?backoff, "Cannot start journalctl.");
                    continue;
                }
            };
            self.jm.running.set(1);
            if let Some(err) = child.stderr.take() {
                tokio::spawn(async move {
                    let mut lines = BufReader::new(err).lines();
                    while let Ok(Some(l)) = lines.next_line().await {
                        warn!(line = %l, "journalctl said:");
                    }
                });
            }
            let Some(out) = child.stdout.take() else {
                continue;
            };
            let mut out = LineReader::new(out, self.max_json_bytes);
            let with_cursor = self.cursor.is_some();
            let mut entries_this_run = 0u64;
            // Entries read since the last commit: only then is the commit timer armed at
            // `commit_interval`; an idle journal wakes the source only when a silence could be
            // due (or after IDLE_WAKE), not every second.
            let mut dirty = false;
            let mut next_commit = tokio::time::Instant::now() + IDLE_WAKE;
            let ended = loop {
                // Backpressure, as for files: while the raw-log queue is full, stop reading
                // (journalctl blocks on its pipe; the journal is the buffer).
                let full = self.store.bytes() + self.reader.pending_bytes() >= self.queue_max_bytes;
                if full {
                    // Re-check every commit interval whether the shipper made room.
                    next_commit =
                        next_commit.min(tokio::time::Instant::now() + self.cfg.commit_interval);
                }
                let read = tokio::select! {
                    _ = shutdown.cancelled() => break false,
                    _ = tokio::time::sleep_until(next_commit) => None,
                    r = out.next_line(), if !full => Some(r),
                };
                let now_ms = start.elapsed().as_millis() as u64;
                let now_ns = Timestamp::from_system_time(SystemTime::now()).0;
                match read {
                    None => {
                        self.reader.tick(now_ns, now_ms);
                        if !self.commit(&shutdown).await {
                            break false;
                        }
                        dirty = false;
                        next_commit = idle_deadline(self.reader.next_tick_due(), now_ns);
                    }
                    Some(Ok(None)) => break true,
                    Some(Err(e)) => {
                        warn!(error = %e, "Reading journalctl's output failed.");
                        break true;
                    }
                    Some(Ok(Some(true))) => {
                        self.jm.invalid.with_label_values(&[INVALID_TOO_LONG]).inc();
                    }
                    Some(Ok(Some(false))) => match parse_line(&out.buf) {
                        Ok(e) => {
                            self.jm.entries.inc();
                            if e.message_binary {
                                self.jm.messages.with_label_values(&["binary"]).inc();
                            }
                            if e.message_null {
                                self.jm.messages.with_label_values(&["null"]).inc();
                            }
                            backoff = self.cfg.restart_initial;
                            entries_this_run += 1;
                            self.reader.entry(&e, now_ns, now_ms);
                            if !dirty {
                                dirty = true;
                                next_commit =
                                    tokio::time::Instant::now() + self.cfg.commit_interval;
                            }
                        }
                        Err(err) => {
                            self.jm.invalid.with_label_values(&[INVALID_JSON]).inc();
                            warn!(error = %err, "journalctl printed a line that is not a journal entry; skipped.");
                        }
                    },
                }
            };
            self.jm.running.set(0);
            if !ended {
                // Shutdown: what was read but not committed is read again next time.
                let _ = child.start_kill();
                return;
            }
            let status = child.wait().await;
            // Everything it printed before exiting is kept.
            if !self.commit(&shutdown).await {
                return;
            }
            let failed = status.as_ref().map_or(true, |s| !s.success());
            if with_cursor && failed && entries_this_run == 0 {
                cursor_failures += 1;
            } else {
                cursor_failures = 0;
            }
            if cursor_failures >= CURSOR_GIVE_UP {
                // A cursor journalctl cannot seek to (the journal was replaced, or the state
                // file came from another machine) would stop the source for good.
                self.jm.errors.with_label_values(&[STAGE_CURSOR]).inc();
                error!(cursor = ?self.cursor, "journalctl keeps failing with the saved cursor; reading from the end of the journal instead. Entries since that cursor may be lost.");
                self.cursor = None;
                self.reader.forget_cursor();
                cursor_failures = 0;
            }
            warn!(status = ?status.ok(), retry_in = ?backoff, "journalctl exited; restarting it.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(multiline: bool) -> JournaldReader {
        let logs = LogsConfig {
            multiline,
            detect: None,
            ..LogsConfig::default()
        };
        JournaldReader::new(&JournaldConfig::default(), &logs, "node-1").unwrap()
    }

    #[tokio::test]
    async fn lines_survive_a_cancelled_read_and_long_lines_are_skipped() {
        let (mut w, r) = tokio::io::duplex(64);
        let mut lines = LineReader::new(r, 10);
        use tokio::io::AsyncWriteExt;
        w.write_all(b"hello").await.unwrap();
        // The read waits for the rest of the line; a timer wins and drops it.
        let t = tokio::time::timeout(Duration::from_millis(20), lines.next_line()).await;
        assert!(t.is_err());
        w.write_all(b" you\nthis line is too long\nok")
            .await
            .unwrap();
        drop(w);
        assert_eq!(lines.next_line().await.unwrap(), Some(false));
        assert_eq!(lines.buf, b"hello you");
        assert_eq!(lines.next_line().await.unwrap(), Some(true));
        assert_eq!(lines.next_line().await.unwrap(), Some(false));
        assert_eq!(lines.buf, b"ok");
        assert_eq!(lines.next_line().await.unwrap(), None);
    }

    #[test]
    fn args_resume_after_the_cursor() {
        let c = JournaldConfig {
            directory: Some("/host/var/log/journal".into()),
            ..JournaldConfig::default()
        };
        assert_eq!(
            c.args(None),
            [
                "-o",
                "json",
                "--follow",
                "--all",
                "--no-pager",
                "--lines=0",
                "--directory=/host/var/log/journal"
            ]
        );
        let a = c.args(Some("s=1;i=2"));
        assert!(a.contains(&"--after-cursor=s=1;i=2".to_string()));
        assert!(a.contains(&"--no-tail".to_string()));
    }

    #[test]
    fn auto_is_off_without_the_binary_and_says_why() {
        let c = JournaldConfig {
            journalctl: "/nonexistent/journalctl".into(),
            ..JournaldConfig::default()
        };
        let why = c.check().unwrap_err();
        assert!(why.contains("/nonexistent/journalctl not found"), "{why}");
        let off = JournaldConfig {
            mode: JournaldMode::Off,
            ..JournaldConfig::default()
        };
        assert!(off.check().is_err());
        let on = JournaldConfig {
            mode: JournaldMode::On,
            journalctl: "/nonexistent".into(),
            ..JournaldConfig::default()
        };
        assert!(on.check().is_ok());
    }

    /// Records as (resource, body, severity_number, severity_text).
    fn decode_with_severity(
        batches: &[crate::logs::encode::EncodedBatch],
    ) -> Vec<(Attributes, String, i32, String)> {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message;
        let mut out = Vec::new();
        for b in batches {
            let req = ExportLogsServiceRequest::decode(b.body()).unwrap();
            for rl in req.resource_logs {
                let res =
                    daytwo_model::otlp::attributes_from(&rl.resource.as_ref().unwrap().attributes);
                for sl in rl.scope_logs {
                    for r in sl.log_records {
                        let Some(Value::StringValue(s)) = r.body.unwrap().value else {
                            panic!("string body")
                        };
                        out.push((res.clone(), s, r.severity_number, r.severity_text));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn priority_is_the_records_severity_and_err_counts_as_error_level() {
        let logs = LogsConfig {
            multiline: false,
            detect: Some(crate::logs::detect::DetectConfig {
                burst_min_count: 3,
                ..Default::default()
            }),
            ..LogsConfig::default()
        };
        let mut r = JournaldReader::new(&JournaldConfig::default(), &logs, "node-1").unwrap();
        let entry = |i: usize, prio: &str, msg: &str| {
            format!(
                r#"{{"__CURSOR":"c{i}","__REALTIME_TIMESTAMP":"{}","_SYSTEMD_UNIT":"db.service","PRIORITY":"{prio}","MESSAGE":"{msg}","_PID":"7"}}"#,
                1_700_000_000_000_000u64 + i as u64
            )
        };
        // Text that no error word marks: only PRIORITY says these are errors.
        let mut lines = Vec::new();
        for i in 0..4 {
            lines.push(entry(i, "3", &format!("replica {i} lost its lease")));
            lines.push(entry(10 + i, "6", &format!("checkpoint {i} written")));
        }
        lines.push(entry(20, "0", "node going down"));
        lines.push(entry(21, "5", "config reloaded"));
        for (i, l) in lines.iter().enumerate() {
            r.entry(&parse_line(l.as_bytes()).unwrap(), 1, i as u64);
        }
        let p = r.take_pending(2);
        let recs = decode_with_severity(&p.batches);
        assert_eq!(recs.len(), lines.len());
        let sev = |body: &str| {
            let (_, _, n, t) = recs.iter().find(|(_, b, _, _)| b == body).unwrap();
            (*n, t.clone())
        };
        assert_eq!(sev("replica 0 lost its lease"), (17, "err".to_string()));
        assert_eq!(sev("checkpoint 3 written"), (9, "info".to_string()));
        assert_eq!(sev("node going down"), (21, "emerg".to_string()));
        assert_eq!(sev("config reloaded"), (10, "notice".to_string()));
        let bursts: Vec<&Signal> = p
            .signals
            .iter()
            .filter(|s| s.name == "daytwo.log.error_burst")
            .collect();
        assert_eq!(bursts.len(), 1, "{:?}", p.signals);
        assert_eq!(
            bursts[0].attributes["daytwo.log.template"],
            "replica <*> lost its lease"
        );
    }

    fn decode(batches: &[crate::logs::encode::EncodedBatch]) -> Vec<(Attributes, String)> {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        use prost::Message;
        let mut out = Vec::new();
        for b in batches {
            let req = ExportLogsServiceRequest::decode(b.body()).unwrap();
            for rl in req.resource_logs {
                let res =
                    daytwo_model::otlp::attributes_from(&rl.resource.as_ref().unwrap().attributes);
                for sl in rl.scope_logs {
                    for r in sl.log_records {
                        let Some(Value::StringValue(s)) = r.body.unwrap().value else {
                            panic!("string body")
                        };
                        out.push((res.clone(), s));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn entries_become_records_with_unit_and_priority_and_a_cursor() {
        let mut r = reader(true);
        let lines = [
            r#"{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1700000000000000","_SYSTEMD_UNIT":"web.service","PRIORITY":"3","MESSAGE":"Traceback (most recent call last):","_PID":"9"}"#,
            r#"{"__CURSOR":"c2","__REALTIME_TIMESTAMP":"1700000000000100","_SYSTEMD_UNIT":"web.service","PRIORITY":"3","MESSAGE":"  File \"app.py\", line 3, in <module>","_PID":"9"}"#,
            r#"{"__CURSOR":"c3","__REALTIME_TIMESTAMP":"1700000000000200","_SYSTEMD_UNIT":"web.service","PRIORITY":"3","MESSAGE":"ValueError: token=abc123secret","_PID":"9"}"#,
            r#"{"__CURSOR":"c4","__REALTIME_TIMESTAMP":"1700000000000300","SYSLOG_IDENTIFIER":"kernel","MESSAGE":[104,105,27,91,48,109]}"#,
            r#"{"__CURSOR":"c5","_SYSTEMD_UNIT":"web.service","PRIORITY":"6","MESSAGE":null}"#,
        ];
        for (i, l) in lines.iter().enumerate() {
            r.entry(&parse_line(l.as_bytes()).unwrap(), 1, i as u64);
        }
        let p = r.take_pending(2);
        assert_eq!(p.cursor.as_deref(), Some("c5"));
        let recs = decode(&p.batches);
        let web: Vec<&(Attributes, String)> = recs
            .iter()
            .filter(|(a, _)| a.get("systemd.unit").is_some_and(|u| u == "web.service"))
            .collect();
        assert_eq!(web.len(), 2, "{recs:?}");
        let trace = web
            .iter()
            .find(|(_, b)| b.starts_with("Traceback"))
            .unwrap();
        assert_eq!(trace.0["daytwo.journald.priority"], "3");
        assert!(trace.1.contains("\n  File \"app.py\""));
        assert!(trace.1.contains("token=[REDACTED]"), "{}", trace.1);
        assert!(!trace.1.contains("abc123secret"));
        let kernel = recs
            .iter()
            .find(|(a, _)| a.get("service.name").is_some())
            .unwrap();
        assert_eq!(kernel.1, "hi\u{1b}[0m");
        assert!(
            web.iter()
                .any(|(a, b)| b.is_empty() && a["daytwo.journald.priority"] == "6")
        );
        assert!(r.take_pending(3).batches.is_empty());
    }
}
