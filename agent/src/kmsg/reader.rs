//! The async shell around `/dev/kmsg`: open, position, read, checkpoint.
//!
//! Entry types: [`KmsgSource`] (built by `Agent::new` with [`KmsgSource::open`], run by
//! `Agent::run`) and [`KmsgPipeline`], the synchronous record → signal step it drives, which
//! tests exercise without a kernel.
//!
//! Positioning: the checkpoint is the last processed sequence number of the current boot
//! (`/proc/sys/kernel/random/boot_id`). Without one (first start on this boot) reading begins
//! at the current end of the ring buffer (found by reading past the existing records, so the
//! end's sequence number is checkpointed at once); with one it begins at the start of the ring buffer
//! and skips records up to the checkpoint, so what the kernel logged while the agent was down
//! is read. Records overwritten before they were read (a gap in sequence numbers, or EPIPE)
//! are counted in `daytwo_agent_kmsg_lost_total`.
//!
//! Invariants: a checkpoint is only ever written at a record where the OOM classifier is idle
//! (never inside a half-read sequence); a signal and the checkpoint at its `Killed process`
//! record are committed in one transaction.

use super::oom::OomClassifier;
use super::signal::{BootClock, OOM_KILL_EVENT, cgroup_to_read, oom_signal};
use super::{KmsgParseError, parse_record};
use crate::cgroup;
use crate::metrics::Metrics;
use crate::queue::{Checkpoint, Queue};
use daytwo_model::{Signal, Timestamp};
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Largest record the kernel hands out (`CONSOLE_EXT_LOG_MAX`) with room to spare.
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// How often an idle checkpoint is committed when no signal moved it.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(5);
/// Wait between attempts when the queue cannot be written.
const PUSH_RETRY: Duration = Duration::from_secs(1);

/// This boot's id, the namespace of kmsg sequence numbers.
pub fn read_boot_id() -> io::Result<String> {
    Ok(std::fs::read_to_string("/proc/sys/kernel/random/boot_id")?
        .trim()
        .to_string())
}

/// Wall-clock time at boot: `CLOCK_REALTIME - CLOCK_MONOTONIC`, sampled now.
pub fn boot_clock() -> BootClock {
    fn now(clock: libc::clockid_t) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; both clocks exist on every Linux.
        unsafe { libc::clock_gettime(clock, &mut ts) };
        ts.tv_sec
            .saturating_mul(1_000_000_000)
            .saturating_add(ts.tv_nsec)
    }
    BootClock {
        boot_unix_nanos: now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC),
    }
}

/// The synchronous step: bytes of one record in, maybe a signal out.
pub struct KmsgPipeline {
    classifier: OomClassifier,
    boot_id: String,
    clock: BootClock,
    host_name: String,
    cgroup_root: PathBuf,
    /// Records up to and including this seq were processed before a restart.
    skip_through: Option<u64>,
    last_seq: Option<u64>,
    /// The latest seq after which the classifier was idle: safe to checkpoint.
    idle_seq: Option<u64>,
    committed_seq: Option<u64>,
}

/// What processing one record produced.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records missing before this one (overwritten in the ring buffer).
    pub lost: u64,
    /// False when the record was at or before the checkpoint and skipped.
    pub new: bool,
    pub parse_error: Option<KmsgParseError>,
    /// A classified event, with the checkpoint to commit with it.
    pub signal: Option<(Signal, Checkpoint)>,
}

impl KmsgPipeline {
    pub fn new(
        boot_id: String,
        clock: BootClock,
        host_name: String,
        cgroup_root: PathBuf,
        checkpoint: Option<u64>,
    ) -> Self {
        KmsgPipeline {
            classifier: OomClassifier::new(),
            boot_id,
            clock,
            host_name,
            cgroup_root,
            skip_through: checkpoint,
            last_seq: checkpoint,
            idle_seq: checkpoint,
            committed_seq: checkpoint,
        }
    }

    /// Processes the bytes of one read. `now` is the wall-clock time of the cgroup reading.
    pub fn process(&mut self, bytes: &[u8], now: Timestamp) -> Processed {
        let rec = match parse_record(bytes) {
            Ok(r) => r,
            Err(e) => {
                return Processed {
                    new: true,
                    parse_error: Some(e),
                    ..Processed::default()
                };
            }
        };
        if self.skip_through.is_some_and(|s| rec.seq <= s) {
            return Processed::default();
        }
        let mut out = Processed {
            new: true,
            ..Processed::default()
        };
        if let Some(last) = self.last_seq
            && rec.seq > last.saturating_add(1)
        {
            out.lost = rec.seq - last - 1;
        }
        self.last_seq = Some(rec.seq);
        if let Some(kill) = self.classifier.feed(&rec) {
            let cg = cgroup_to_read(&kill).and_then(|p| cgroup::read_memory(&self.cgroup_root, p));
            let signal = oom_signal(
                &kill,
                cg.as_ref(),
                &self.host_name,
                &self.boot_id,
                self.clock,
                now,
            );
            out.signal = Some((
                signal,
                Checkpoint {
                    boot_id: self.boot_id.clone(),
                    seq: rec.seq,
                },
            ));
        }
        if self.classifier.is_idle() {
            self.idle_seq = Some(rec.seq);
        }
        out
    }

    /// First start on this boot: everything up to `seq` (the newest record now in the ring
    /// buffer) counts as processed, and that becomes the first checkpoint.
    pub fn start_after(&mut self, seq: Option<u64>) {
        if seq.is_some() {
            self.skip_through = seq;
            self.last_seq = seq;
            self.idle_seq = seq;
        }
    }

    /// A checkpoint worth committing (idle and ahead of the last committed one).
    pub fn checkpoint_due(&self) -> Option<Checkpoint> {
        match (self.idle_seq, self.committed_seq) {
            (Some(i), Some(c)) if i <= c => None,
            (Some(i), _) => Some(Checkpoint {
                boot_id: self.boot_id.clone(),
                seq: i,
            }),
            (None, _) => None,
        }
    }

    /// Records that `seq` was committed.
    pub fn committed(&mut self, seq: u64) {
        if self.committed_seq.is_none_or(|c| seq > c) {
            self.committed_seq = Some(seq);
        }
    }
}

/// Opens `/dev/kmsg` (or `path`) for non-blocking reads.
pub fn open_kmsg(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
}

/// Reads past every record now in the ring buffer and returns the newest one's sequence
/// number (None when it is empty).
///
/// This is "begin at the current end" (what `lseek(SEEK_END)` does) but also learns where
/// the end is, so it can be checkpointed at once: otherwise an agent that saw no record before
/// it was stopped would, on restart, have no checkpoint and skip what the kernel logged while
/// it was down.
fn skip_to_end(file: &File) -> io::Result<Option<u64>> {
    let mut buf = vec![0u8; READ_BUFFER_BYTES];
    let mut last = None;
    loop {
        match (&*file).read(&mut buf) {
            Ok(0) => return Ok(last),
            Ok(n) => {
                if let Ok(r) = parse_record(&buf[..n]) {
                    last = Some(r.seq);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(last),
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A warning sentence for an operator when kmsg cannot be opened.
pub fn open_warning(path: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied (needs root or CAP_SYSLOG); kernel events are off",
            path.display()
        ),
        io::ErrorKind::NotFound => format!(
            "{}: not found (no kernel log device in this container?); kernel events are off",
            path.display()
        ),
        _ => format!("{}: {e}; kernel events are off", path.display()),
    }
}

/// The kmsg source, ready to run.
pub struct KmsgSource {
    /// Taken by `run` (owned by the `AsyncFd` from then on).
    file: Option<File>,
    path: PathBuf,
    pipeline: KmsgPipeline,
    queue: Arc<Queue>,
    metrics: Metrics,
}

impl KmsgSource {
    /// Positions an opened kmsg file by this boot's checkpoint (see module docs).
    /// `pipeline` carries the boot id and the checkpoint it was built with.
    pub fn open(
        file: File,
        path: PathBuf,
        pipeline: KmsgPipeline,
        queue: Arc<Queue>,
        metrics: Metrics,
    ) -> io::Result<Self> {
        let boot_id = pipeline.boot_id.clone();
        let mut pipeline = pipeline;
        match pipeline.committed_seq {
            Some(seq) => {
                info!(path = %path.display(), boot_id = %boot_id, checkpoint = seq, "Kmsg source resumes after its checkpoint.");
            }
            None => {
                let last = skip_to_end(&file)?;
                pipeline.start_after(last);
                info!(path = %path.display(), boot_id = %boot_id, last_seq = ?last, "Kmsg source starts at the end of the ring buffer (first start on this boot).");
            }
        }
        Ok(KmsgSource {
            file: Some(file),
            path,
            pipeline,
            queue,
            metrics,
        })
    }

    /// Reads until `shutdown`; a read error other than EAGAIN/EPIPE switches the source off.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let Some(file) = self.file.take() else {
            return;
        };
        // SAFETY: the File owns its descriptor, which stays open and unchanged until the
        // AsyncFd (its only owner from here on) is dropped.
        let afd = match unsafe { AsyncFd::register_with_interest(file, Interest::READABLE) } {
            Ok(a) => a,
            Err(e) => {
                error!(path = %self.path.display(), error = %e, "Kmsg source cannot poll the device; kernel events are off.");
                return;
            }
        };
        let mut buf = vec![0u8; READ_BUFFER_BYTES];
        let mut tick = tokio::time::interval(CHECKPOINT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.commit_idle_checkpoint().await,
                ready = afd.readable() => {
                    let mut guard = match ready {
                        Ok(g) => g,
                        Err(e) => {
                            error!(path = %self.path.display(), error = %e, "Kmsg poll failed; kernel events are off.");
                            break;
                        }
                    };
                    loop {
                        match guard.try_io(|f| f.get_ref().read(&mut buf)) {
                            Ok(Ok(0)) => break,
                            Ok(Ok(n)) => {
                                if !self.handle(&buf[..n], &shutdown).await {
                                    break;
                                }
                                // A long backlog (catching up after a restart) must not
                                // starve other tasks on this worker.
                                tokio::task::consume_budget().await;
                            }
                            // Records were overwritten before we read them; the next read
                            // continues at the oldest record still there, and the sequence
                            // gap is counted as lost.
                            Ok(Err(e)) if e.raw_os_error() == Some(libc::EPIPE) => {
                                debug!(path = %self.path.display(), "Kmsg reader fell behind the ring buffer.");
                            }
                            Ok(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                            Ok(Err(e)) => {
                                error!(path = %self.path.display(), error = %e, "Kmsg read failed; kernel events are off.");
                                self.commit_idle_checkpoint().await;
                                return;
                            }
                            Err(_would_block) => break,
                        }
                    }
                }
            }
        }
        self.commit_idle_checkpoint().await;
    }

    /// Processes one record; false when shutdown interrupted a queue retry.
    async fn handle(&mut self, bytes: &[u8], shutdown: &CancellationToken) -> bool {
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        let p = self.pipeline.process(bytes, now);
        if p.new {
            self.metrics.kmsg_records_received.inc();
        }
        if p.lost > 0 {
            self.metrics.kmsg_lost.inc_by(p.lost);
            warn!(
                lost = p.lost,
                "Kernel log records were overwritten before the agent read them."
            );
        }
        if let Some(e) = p.parse_error {
            self.metrics.kmsg_parse_errors.inc();
            debug!(error = %e, "Skipped a kmsg record that does not parse.");
        }
        let Some((signal, cp)) = p.signal else {
            return true;
        };
        info!(event = OOM_KILL_EVENT, signal_id = %signal.id, "{}", signal.message);
        let batch = [signal];
        loop {
            let queue = self.queue.clone();
            let (b, c) = (batch.clone(), cp.clone());
            let res = tokio::task::spawn_blocking(move || queue.push(&b, Some(&c))).await;
            match res {
                Ok(Ok(_)) => {
                    self.pipeline.committed(cp.seq);
                    self.metrics
                        .signals_emitted
                        .with_label_values(&[OOM_KILL_EVENT])
                        .inc();
                    return true;
                }
                Ok(Err(e)) => {
                    error!(error = %e, "Cannot queue a kernel event; retrying (the kernel keeps the record meanwhile).");
                }
                Err(e) => error!(error = %e, "Queue task failed; retrying."),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(PUSH_RETRY) => {}
            }
        }
    }

    async fn commit_idle_checkpoint(&mut self) {
        let Some(cp) = self.pipeline.checkpoint_due() else {
            return;
        };
        let queue = self.queue.clone();
        let c = cp.clone();
        match tokio::task::spawn_blocking(move || queue.set_checkpoint(&c)).await {
            Ok(Ok(())) => self.pipeline.committed(cp.seq),
            Ok(Err(e)) => warn!(error = %e, "Cannot write the kmsg checkpoint; will retry."),
            Err(e) => warn!(error = %e, "Checkpoint task failed; will retry."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::fixtures::{MEMCG_OOM_V1, records};

    fn pipeline(root: &Path, checkpoint: Option<u64>) -> KmsgPipeline {
        KmsgPipeline::new(
            "boot-a".into(),
            BootClock {
                boot_unix_nanos: 1_000_000_000_000_000_000,
            },
            "node-1".into(),
            root.to_path_buf(),
            checkpoint,
        )
    }

    fn run(p: &mut KmsgPipeline, fixture: &str) -> (Vec<Signal>, u64) {
        let mut signals = Vec::new();
        let mut lost = 0;
        for r in records(fixture) {
            let out = p.process(&r.encode(), Timestamp(0));
            lost += out.lost;
            if let Some((s, cp)) = out.signal {
                assert_eq!(cp.seq, 422);
                signals.push(s);
            }
        }
        (signals, lost)
    }

    #[test]
    fn emits_one_signal_reading_the_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("memory/probe1");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("memory.usage_in_bytes"), "0\n").unwrap();
        std::fs::write(dir.join("memory.limit_in_bytes"), "67108864\n").unwrap();
        let mut p = pipeline(tmp.path(), None);
        let (signals, lost) = run(&mut p, MEMCG_OOM_V1);
        assert_eq!(signals.len(), 1);
        let s = &signals[0];
        assert_eq!(s.attributes["daytwo.memory.source"], "cgroup");
        assert_eq!(s.attributes["daytwo.memory.limit_bytes"], 67_108_864);
        assert!(
            s.evidence
                .iter()
                .any(|e| e.text == "memory.usage_in_bytes=0")
        );
        // The fixture elides seq 371 and 399..=420.
        assert_eq!(lost, 1 + 22);
        assert_eq!(p.checkpoint_due().unwrap().seq, 422);
    }

    #[test]
    fn skips_records_up_to_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), Some(422));
        let (signals, _) = run(&mut p, MEMCG_OOM_V1);
        assert!(signals.is_empty());
        assert!(p.checkpoint_due().is_none());
    }

    #[test]
    fn checkpoints_only_at_idle_points() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), Some(100));
        let recs = records(MEMCG_OOM_V1);
        let idle = crate::kmsg::parse_record(b"6,343,1,-;eth0: link up").unwrap();
        p.process(&idle.encode(), Timestamp(0));
        assert_eq!(p.checkpoint_due().unwrap().seq, 343);
        p.committed(343);
        for r in &recs[..5] {
            p.process(&r.encode(), Timestamp(0));
        }
        assert!(
            p.checkpoint_due().is_none(),
            "mid-sequence must not checkpoint"
        );
    }

    #[test]
    fn a_first_start_checkpoints_the_end_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), None);
        assert!(p.checkpoint_due().is_none());
        p.start_after(Some(421));
        assert_eq!(p.checkpoint_due().unwrap().seq, 421);
        // The record right after the end is new and not a loss.
        let r = crate::kmsg::parse_record(b"6,422,1,-;hello").unwrap();
        let out = p.process(&r.encode(), Timestamp(0));
        assert!(out.new);
        assert_eq!(out.lost, 0);
        let old = crate::kmsg::parse_record(b"6,400,1,-;old").unwrap();
        assert!(!p.process(&old.encode(), Timestamp(0)).new);
    }

    #[test]
    fn counts_gaps_after_the_checkpoint_as_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), Some(10));
        let r = crate::kmsg::parse_record(b"6,15,1,-;hello").unwrap();
        assert_eq!(p.process(&r.encode(), Timestamp(0)).lost, 4);
    }

    #[test]
    fn parse_errors_are_reported_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), None);
        let out = p.process(b"garbage", Timestamp(0));
        assert!(out.parse_error.is_some());
        assert!(out.signal.is_none());
    }

    #[test]
    fn warnings_name_the_path_and_the_fix() {
        let e = io::Error::from_raw_os_error(libc::EACCES);
        assert_eq!(
            open_warning(Path::new("/dev/kmsg"), &e),
            "/dev/kmsg: permission denied (needs root or CAP_SYSLOG); kernel events are off"
        );
    }

    #[test]
    fn boot_clock_is_in_the_past() {
        let c = boot_clock();
        let now = Timestamp::from_system_time(std::time::SystemTime::now());
        assert!(c.boot_unix_nanos > 0 && c.boot_unix_nanos < now.unix_nanos());
    }
}
