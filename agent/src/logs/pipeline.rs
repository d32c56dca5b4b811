//! The per-record steps after the tailer: UTF-8 repair, redaction, template assignment,
//! detection and encoding. Synchronous and clock-free (times come with each record).
//!
//! Entry type: [`Pipeline`], the tailer's [`RecordSink`]. After each poll the shell takes
//! [`Pipeline::take_batches`] and [`Pipeline::take_signals`] and commits them with the
//! tailer's checkpoints.
//!
//! Invariants: what leaves this module (raw records, signal messages, evidence) has been
//! through the [`Redactor`]; templates are mined from the redacted first line of a record.

use super::detect::{DetectConfig, LogDetector, WorkloadRef, is_error_template};
use super::encode::{EncodedBatch, FileBatch, LogSeverity};
use super::mine::TemplateMiner;
use super::multiline::Record;
use super::parse::Stream;
use super::redact::Redactor;
use super::tail::{FileInfo, RecordSink};
use daytwo_model::{Attributes, Signal};
use std::borrow::Cow;
use std::collections::HashMap;

/// A `HashMap` with the project's fast hasher ([`daytwo_model::FastHash`]): SipHash's DoS
/// resistance is not needed for keys that are already hashes or come from paths, and it cost
/// ~4% of the log path.
pub type FastMap<K, V> = HashMap<K, V, daytwo_model::FastHash>;
use std::sync::Arc;

struct FileState {
    wl: WorkloadRef,
    batch: FileBatch,
    /// The source states ERROR or worse for all its records (journald `PRIORITY` ≤ 3).
    error_level: bool,
}

/// Counters the shell turns into metrics.
#[derive(Debug, Default, Clone)]
pub struct PipelineStats {
    pub records: u64,
    pub invalid_utf8: u64,
    pub redactions: HashMap<&'static str, u64>,
}

/// Spare batch buffers kept for the next batches: a commit of two read budgets makes about
/// ten batches.
const MAX_SPARE: usize = 8;

/// What a new batch buffer starts with: a full batch and a typical record more, so that it is
/// not grown (and copied) record by record. Not touched until written, so a batch that stays
/// small costs no memory for the rest.
fn batch_capacity(batch_max_bytes: usize) -> usize {
    batch_max_bytes.min(1 << 20) + (16 << 10)
}

/// A spare buffer, or a new one of `cap` bytes.
fn next_buf(spare: &mut Vec<Vec<u8>>, cap: usize) -> Vec<u8> {
    spare.pop().unwrap_or_else(|| Vec::with_capacity(cap))
}

/// See the module docs.
pub struct Pipeline {
    host: String,
    redactor: Redactor,
    miner: Box<dyn TemplateMiner>,
    detector: Option<LogDetector>,
    ship_raw: bool,
    files: FastMap<u64, FileState>,
    workload_files: FastMap<String, u32>,
    error_templates: FastMap<u64, bool>,
    signals: Vec<Signal>,
    released: Vec<u64>,
    /// Buffers of committed batches, reused for the next ones.
    spare: Vec<Vec<u8>>,
    /// A file's batch is finished once it holds this many bytes (one export request).
    batch_max_bytes: usize,
    /// Batches finished early (see `batch_max_bytes`), oldest first.
    ready: Vec<EncodedBatch>,
    /// The miner's change counter when its state was last taken.
    miner_saved: u64,
    pub stats: PipelineStats,
}

impl Pipeline {
    pub fn new(
        host: String,
        redactor: Redactor,
        miner: Box<dyn TemplateMiner>,
        detect: Option<DetectConfig>,
        ship_raw: bool,
    ) -> Self {
        Pipeline {
            host,
            redactor,
            miner,
            detector: detect.map(LogDetector::new),
            ship_raw,
            files: FastMap::default(),
            workload_files: FastMap::default(),
            error_templates: FastMap::default(),
            signals: Vec::new(),
            released: Vec::new(),
            spare: Vec::new(),
            batch_max_bytes: usize::MAX,
            ready: Vec::new(),
            miner_saved: 0,
            stats: PipelineStats::default(),
        }
    }

    /// Finishes a file's batch once it holds `bytes` (default: never), so a stored batch,
    /// and the export request made of it, stays about that size.
    pub fn with_batch_max_bytes(mut self, bytes: usize) -> Self {
        self.batch_max_bytes = bytes.max(1);
        self
    }

    /// Encoded `ResourceLogs` of every file with records since the last call (a file's in
    /// order). Hand them back with [`Pipeline::recycle`] once committed.
    pub fn take_batches(&mut self) -> Vec<EncodedBatch> {
        let spare = &mut self.spare;
        let cap = batch_capacity(self.batch_max_bytes);
        let mut out = std::mem::take(&mut self.ready);
        out.extend(
            self.files
                .values_mut()
                .filter(|f| !f.batch.is_empty())
                .map(|f| f.batch.finish(next_buf(spare, cap))),
        );
        for id in std::mem::take(&mut self.released) {
            let Some(f) = self.files.remove(&id) else {
                continue;
            };
            let key = f.wl.key;
            if let Some(n) = self.workload_files.get_mut(&key) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    self.workload_files.remove(&key);
                    if let Some(d) = &mut self.detector {
                        d.gone(&key);
                    }
                }
            }
        }
        out
    }

    /// Hook for sources that are not files (journald): registers source `id` with its own
    /// workload, resource and `log.file.path`, so [`RecordSink::record`] with a [`FileInfo`]
    /// of that id uses them instead of what a path would say. Ids must not collide with the
    /// tailer's (each source has its own pipeline). [`RecordSink::released`] forgets it.
    pub fn register_source(&mut self, id: u64, path: &str, wl: WorkloadRef) {
        self.register_source_with_severity(id, path, wl, None);
    }

    /// [`Pipeline::register_source`] for a source whose records all have one level (journald
    /// keeps a source per unit and `PRIORITY`): raw records carry it as OTLP
    /// `severity_number` / `severity_text`, and at ERROR or worse every record counts as
    /// error-level for `error_burst`, whatever its text says.
    pub fn register_source_with_severity(
        &mut self,
        id: u64,
        path: &str,
        wl: WorkloadRef,
        severity: Option<LogSeverity>,
    ) {
        if self.files.contains_key(&id) {
            return;
        }
        *self.workload_files.entry(wl.key.clone()).or_default() += 1;
        self.files.insert(
            id,
            FileState {
                batch: FileBatch::new(&wl.resource, path).with_severity(severity),
                wl,
                error_level: severity.is_some_and(LogSeverity::is_error),
            },
        );
    }

    /// Keeps the buffers of committed batches for the next ones (a few, bounded).
    pub fn recycle(&mut self, batches: Vec<EncodedBatch>) {
        self.recycle_bufs(batches.into_iter().map(EncodedBatch::into_buf).collect());
    }

    /// [`Pipeline::recycle`] for buffers already taken out of their batches.
    pub fn recycle_bufs(&mut self, bufs: Vec<Vec<u8>>) {
        for buf in bufs {
            if self.spare.len() >= MAX_SPARE {
                break;
            }
            // A batch is bounded by the read budget; a buffer far larger came from an
            // unusual poll and is not worth keeping.
            if buf.capacity() <= self.batch_max_bytes.saturating_mul(2).max(1 << 20) {
                self.spare.push(buf);
            }
        }
    }

    /// Bytes of encoded records waiting for `take_batches`.
    pub fn pending_bytes(&self) -> usize {
        self.files.values().map(|f| f.batch.bytes()).sum::<usize>()
            + self.ready.iter().map(|b| b.value().len()).sum::<usize>()
    }

    /// Signals decided since the last call.
    pub fn take_signals(&mut self) -> Vec<Signal> {
        std::mem::take(&mut self.signals)
    }

    /// The earliest time (ns) at which [`Self::tick`] could decide something.
    pub fn next_tick_due(&self) -> Option<i64> {
        self.detector.as_ref().and_then(|d| d.next_due())
    }

    /// Decides silences at `now_ns`.
    pub fn tick(&mut self, now_ns: i64) {
        if let Some(d) = &mut self.detector {
            self.signals.extend(d.tick(now_ns));
        }
    }

    /// The miner's state when it changed since the last call (for the state file).
    pub fn miner_state_if_changed(&mut self) -> Option<String> {
        let c = self.miner.changes();
        if c == self.miner_saved {
            return None;
        }
        self.miner_saved = c;
        self.miner.save()
    }

    /// Suppressed `new_template` signals so far.
    pub fn new_templates_suppressed(&self) -> u64 {
        self.detector
            .as_ref()
            .map_or(0, |d| d.stats.new_templates_suppressed)
    }

    fn file_state<'a>(
        files: &'a mut FastMap<u64, FileState>,
        workload_files: &mut FastMap<String, u32>,
        host: &str,
        file: &FileInfo,
    ) -> &'a mut FileState {
        files.entry(file.id).or_insert_with(|| {
            let o = &file.origin;
            let resource = o.resource(host);
            let mut attributes = Attributes::new();
            attributes.insert("log.file.path".into(), o.path.clone().into());
            if let Some(p) = &o.pod {
                attributes.insert("k8s.container.name".into(), p.container.clone().into());
            }
            let key = o.workload_key();
            *workload_files.entry(key.clone()).or_default() += 1;
            FileState {
                batch: FileBatch::new(&resource, &o.path),
                error_level: false,
                wl: WorkloadRef {
                    key,
                    entity: o.entity(host),
                    resource,
                    attributes,
                },
            }
        })
    }
}

impl RecordSink for Pipeline {
    fn record(&mut self, file: &Arc<FileInfo>, stream: Stream, rec: &Record, observed_ns: i64) {
        self.stats.records += 1;
        // The one UTF-8 check of a record; repair is the rare path.
        let text: Cow<'_, str> = match std::str::from_utf8(&rec.text) {
            Ok(s) => Cow::Borrowed(s),
            Err(_) => {
                self.stats.invalid_utf8 += 1;
                Cow::Owned(String::from_utf8_lossy(&rec.text).into_owned())
            }
        };
        let stats = &mut self.stats;
        let redacted = self.redactor.redact(text.as_bytes(), |rule| {
            *stats.redactions.entry(rule).or_default() += 1;
        });
        let body: Cow<'_, str> = match redacted {
            // Untouched: still the text checked above.
            Cow::Borrowed(_) => Cow::Borrowed(&*text),
            Cow::Owned(v) => match String::from_utf8(v) {
                Ok(s) => Cow::Owned(s),
                Err(e) => Cow::Owned(String::from_utf8_lossy(e.as_bytes()).into_owned()),
            },
        };
        let first = match memchr::memchr(b'\n', body.as_bytes()) {
            Some(i) => &body[..i],
            None => &body[..],
        };
        let (template, _new) = self.miner.add(first);
        let f = Self::file_state(&mut self.files, &mut self.workload_files, &self.host, file);
        if let Some(d) = &mut self.detector {
            let miner = &self.miner;
            let is_error = f.error_level
                || *self.error_templates.entry(template).or_insert_with(|| {
                    miner
                        .template(template)
                        .is_some_and(|t| is_error_template(&t))
                });
            let t = rec.time.unwrap_or(observed_ns);
            let text_of = || miner.template(template).unwrap_or_default();
            let out = d.line(&f.wl, t, template, &text_of, is_error, first);
            self.signals.extend(out);
        }
        if self.ship_raw {
            f.batch.push(
                rec.time,
                observed_ns,
                stream.as_str(),
                body.as_bytes(),
                template,
                rec.truncated,
            );
            if f.batch.bytes() >= self.batch_max_bytes {
                let next = next_buf(&mut self.spare, batch_capacity(self.batch_max_bytes));
                self.ready.push(f.batch.finish(next));
            }
        }
    }

    fn released(&mut self, file: &Arc<FileInfo>) {
        // Its last records are still in the batch: forget it once that was taken.
        self.released.push(file.id);
    }
}
