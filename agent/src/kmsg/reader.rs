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
//! Classification: every record goes to the OOM classifier and to the kernel-event burst
//! classifier ([`super::burst`]). A burst is emitted when a later record, or the checkpoint tick
//! ([`KmsgPipeline::flush`] with the kernel's current `CLOCK_MONOTONIC`), passes the end of its
//! window; filesystem events get their mount point from `/proc/1/mountinfo` and
//! `/sys/class/block/<dev>/dev` at that moment.
//!
//! Invariants: a checkpoint is only ever written at a record where the OOM classifier is idle
//! (never inside a half-read sequence) and before the first record of every open burst; the
//! signals a record (or a flush) produced and that checkpoint are committed in one transaction.
//! Because of the second rule the checkpoint committed with a signal may lie before the
//! signal's own record (a burst on another device was open); after a crash such a signal is
//! produced again with the same id, which the collector stores once.

use super::burst::{Burst, BurstClassifier};
use super::kernel::KernelEvent;
use super::kernel_signal::kernel_signal;
use super::mounts;
use super::oom::OomClassifier;
use super::signal::{BootClock, cgroup_to_read, oom_signal};
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

/// The kernel's monotonic clock in microseconds: the clock of kmsg timestamps.
pub fn kernel_now_usec() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC exists on every Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec.max(0) as u64)
        .saturating_mul(1_000_000)
        .saturating_add(ts.tv_nsec.max(0) as u64 / 1000)
}

/// The synchronous step: bytes of one record in, signals out.
pub struct KmsgPipeline {
    classifier: OomClassifier,
    bursts: BurstClassifier,
    /// Where mount points are looked up (`/proc/1/mountinfo`: the host's with `hostPID`).
    mountinfo: PathBuf,
    /// `/sys/class/block`, for a device's `major:minor`.
    sys_class_block: PathBuf,
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
    /// Recent memory samples per cgroup (the node source's), for the OOM signal's evidence.
    memory: Option<crate::node::history::MemoryHistory>,
}

/// What processing one record (or a flush) produced.
#[derive(Debug, Default)]
pub struct Processed {
    /// Records missing before this one (overwritten in the ring buffer).
    pub lost: u64,
    /// False when the record was at or before the checkpoint and skipped.
    pub new: bool,
    pub parse_error: Option<KmsgParseError>,
    /// Classified events, oldest first.
    pub signals: Vec<Signal>,
    /// The checkpoint to commit with `signals` (None when it would not move forward).
    pub checkpoint: Option<Checkpoint>,
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
            bursts: BurstClassifier::new(),
            mountinfo: PathBuf::from("/proc/1/mountinfo"),
            sys_class_block: PathBuf::from("/sys/class/block"),
            boot_id,
            clock,
            host_name,
            cgroup_root,
            skip_through: checkpoint,
            last_seq: checkpoint,
            idle_seq: checkpoint,
            committed_seq: checkpoint,
            memory: None,
        }
    }

    /// Adds the victim cgroup's recent memory samples to each OOM signal's evidence.
    pub fn with_memory_history(mut self, h: crate::node::history::MemoryHistory) -> Self {
        self.memory = Some(h);
        self
    }

    /// Looks mount points up in other files than `/proc/1/mountinfo` and `/sys/class/block`.
    pub fn with_mount_sources(mut self, mountinfo: PathBuf, sys_class_block: PathBuf) -> Self {
        self.mountinfo = mountinfo;
        self.sys_class_block = sys_class_block;
        self
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
        let mut signals: Vec<Signal> = self
            .bursts
            .feed(&rec)
            .iter()
            .map(|b| self.burst_signal(b))
            .collect();
        if let Some(kill) = self.classifier.feed(&rec) {
            let cg = cgroup_to_read(&kill).and_then(|p| cgroup::read_memory(&self.cgroup_root, p));
            let mut s = oom_signal(
                &kill,
                cg.as_ref(),
                &self.host_name,
                &self.boot_id,
                self.clock,
                now,
            );
            if let Some(h) = &self.memory {
                crate::kmsg::oom::add_memory_samples(&mut s, &kill, h);
            }
            signals.push(s);
        }
        out.checkpoint = self.advance(rec.seq, !signals.is_empty());
        out.signals = signals;
        out
    }

    /// Emits the bursts whose window ended by `now_usec` (kernel time since boot), for when
    /// no record arrives to close them.
    pub fn flush(&mut self, now_usec: u64) -> Processed {
        let signals: Vec<Signal> = self
            .bursts
            .flush(now_usec)
            .iter()
            .map(|b| self.burst_signal(b))
            .collect();
        let checkpoint = match self.last_seq {
            Some(seq) => self.advance(seq, !signals.is_empty()),
            None => None,
        };
        Processed {
            signals,
            checkpoint,
            ..Processed::default()
        }
    }

    /// Moves the idle point after `seq` was processed; with signals, returns the checkpoint
    /// to commit with them when it moves forward.
    fn advance(&mut self, seq: u64, with_signals: bool) -> Option<Checkpoint> {
        if !self.classifier.is_idle() {
            return None;
        }
        let safe = match self.bursts.oldest_open_seq() {
            Some(open) => seq.min(open.saturating_sub(1)),
            None => seq,
        };
        if self.idle_seq.is_none_or(|i| safe > i) {
            self.idle_seq = Some(safe);
        }
        let safe = self.idle_seq?;
        (with_signals && self.committed_seq.is_none_or(|c| safe > c)).then(|| Checkpoint {
            boot_id: self.boot_id.clone(),
            seq: safe,
        })
    }

    fn burst_signal(&self, b: &Burst) -> Signal {
        let mount = match &b.event {
            KernelEvent::FsError { device, .. } | KernelEvent::FsReadOnly { device, .. } => {
                self.mount_point(device)
            }
            _ => None,
        };
        kernel_signal(
            b,
            &self.host_name,
            &self.boot_id,
            self.clock,
            mount.as_deref(),
        )
    }

    fn mount_point(&self, device: &str) -> Option<String> {
        if device.is_empty() || device.contains('/') || device.starts_with('.') {
            return None;
        }
        let info = std::fs::read_to_string(&self.mountinfo).ok()?;
        let dev = std::fs::read_to_string(self.sys_class_block.join(device).join("dev")).ok();
        mounts::mount_point(&info, device, dev.as_deref().map(str::trim))
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
                _ = tick.tick() => {
                    if !self.flush_bursts(&shutdown).await {
                        break;
                    }
                    self.commit_idle_checkpoint().await;
                }
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
        self.push(p.signals, p.checkpoint, shutdown).await
    }

    /// Emits the bursts whose window has passed; false when shutdown interrupted a retry.
    async fn flush_bursts(&mut self, shutdown: &CancellationToken) -> bool {
        let p = self.pipeline.flush(kernel_now_usec());
        self.push(p.signals, p.checkpoint, shutdown).await
    }

    /// Queues `signals` with `cp` in one transaction, retrying until it succeeds; false when
    /// shutdown interrupted a retry.
    async fn push(
        &mut self,
        signals: Vec<Signal>,
        cp: Option<Checkpoint>,
        shutdown: &CancellationToken,
    ) -> bool {
        if signals.is_empty() {
            return true;
        }
        for s in &signals {
            info!(event = %s.name, signal_id = %s.id, "{}", s.message);
        }
        loop {
            let queue = self.queue.clone();
            let (b, c) = (signals.clone(), cp.clone());
            let res = tokio::task::spawn_blocking(move || queue.push(&b, c.as_ref())).await;
            match res {
                Ok(Ok(_)) => {
                    if let Some(cp) = &cp {
                        self.pipeline.committed(cp.seq);
                    }
                    for s in &signals {
                        self.metrics
                            .signals_emitted
                            .with_label_values(&[s.name.as_str()])
                            .inc();
                    }
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
            if !out.signals.is_empty() {
                assert_eq!(out.checkpoint.as_ref().unwrap().seq, 422);
                signals.extend(out.signals);
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
        assert!(out.signals.is_empty());
    }

    fn feed(p: &mut KmsgPipeline, line: &[u8]) -> Processed {
        let r = crate::kmsg::parse_record(line).unwrap();
        p.process(&r.encode(), Timestamp(0))
    }

    #[test]
    fn a_flood_is_one_signal_and_holds_the_checkpoint_while_open() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), Some(1999));
        let recs = crate::kmsg::fixtures::io_error_flood();
        let mut emitted = Vec::new();
        for r in &recs[..50] {
            let out = p.process(&r.encode(), Timestamp(0));
            assert!(out.signals.is_empty());
            // The burst's first record is 2000: nothing after 1999 may be checkpointed.
            assert!(p.checkpoint_due().is_none());
        }
        for r in &recs[50..] {
            let out = p.process(&r.encode(), Timestamp(0));
            if !out.signals.is_empty() {
                emitted.push((r.seq, out.signals, out.checkpoint));
            }
        }
        assert_eq!(emitted.len(), 2);
        let (at, signals, cp) = &emitted[0];
        assert_eq!(*at, 2050);
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].name, "daytwo.kernel.io_error");
        assert_eq!(signals[0].attributes["daytwo.kernel.event_count"], 50);
        // The late line (2050) opened a new burst: the checkpoint stops before it.
        assert_eq!(cp.as_ref().unwrap().seq, 2049);
        assert_eq!(emitted[1].2.as_ref().unwrap().seq, 2051);
    }

    #[test]
    fn an_oom_kill_during_an_open_burst_checkpoints_before_the_burst() {
        let tmp = tempfile::tempdir().unwrap();
        let mut p = pipeline(tmp.path(), Some(340));
        assert!(
            feed(&mut p, b"6,341,68000000,-;eth0: Link is Down")
                .signals
                .is_empty()
        );
        let (signals, _) = run_collect(&mut p, MEMCG_OOM_V1);
        assert_eq!(signals.len(), 1);
        assert_eq!(signals[0].0.name, "daytwo.kernel.oom_kill");
        // Committed with the kill: 340, not 422, since the link burst (341) is open; and 340
        // is already committed, so no checkpoint moves.
        assert!(signals[0].1.is_none());
        // The kernel clock passes the window: the flush emits the link signal and the
        // checkpoint catches up.
        let out = p.flush(68_000_000 + 10_000_000);
        assert_eq!(out.signals.len(), 1);
        assert_eq!(out.signals[0].name, "daytwo.kernel.link_down");
        assert_eq!(out.checkpoint.unwrap().seq, 422);
    }

    fn run_collect(
        p: &mut KmsgPipeline,
        fixture: &str,
    ) -> (Vec<(Signal, Option<Checkpoint>)>, u64) {
        let mut out = Vec::new();
        let mut lost = 0;
        for r in records(fixture) {
            let o = p.process(&r.encode(), Timestamp(0));
            lost += o.lost;
            for s in o.signals {
                out.push((s, o.checkpoint.clone()));
            }
        }
        (out, lost)
    }

    #[test]
    fn filesystem_signals_name_the_mount_point() {
        let tmp = tempfile::tempdir().unwrap();
        let info = tmp.path().join("mountinfo");
        std::fs::write(
            &info,
            "22 1 253:0 / / rw - ext4 /dev/mapper/vg-root rw\n25 22 8:17 / /var rw - ext4 /dev/sdb1 rw\n",
        )
        .unwrap();
        let sys = tmp.path().join("sys");
        std::fs::create_dir_all(sys.join("dm-0")).unwrap();
        std::fs::write(sys.join("dm-0/dev"), "253:0\n").unwrap();
        let mut p = pipeline(tmp.path(), Some(1)).with_mount_sources(info, sys);
        let out = feed(
            &mut p,
            b"2,2,5,-;EXT4-fs (dm-0): Remounting filesystem read-only",
        );
        assert_eq!(out.signals.len(), 1);
        let s = &out.signals[0];
        assert_eq!(s.name, "daytwo.kernel.fs_readonly");
        assert_eq!(s.entity.name, "/");
        assert_eq!(s.attributes["mount.point"], "/");
        assert_eq!(out.checkpoint.unwrap().seq, 2);
        let out = feed(
            &mut p,
            b"2,3,6,-;EXT4-fs (sdb1): Remounting filesystem read-only",
        );
        assert_eq!(out.signals[0].entity.attributes["mount.point"], "/var");
    }

    #[test]
    fn kernel_time_is_monotonic_usec() {
        let a = kernel_now_usec();
        let b = kernel_now_usec();
        assert!(a > 0 && b >= a);
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
