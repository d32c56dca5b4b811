//! Flood control for kernel events: lines of the same event and key within a window of kernel
//! time become one [`Burst`], and so one signal with a count.
//!
//! Entry type: [`BurstClassifier`]. Feed it every record in sequence order with
//! [`BurstClassifier::feed`]; call [`BurstClassifier::flush`] with the kernel's current time when
//! no record arrives, so a burst is not held back by a quiet log.
//!
//! A burst opens at its first line and closes `window` later (kernel time: `ts_usec` of the
//! records, never the wall clock); it is emitted by the first record, or the first flush, at or
//! after that moment. Events whose window is 0 (read-only remounts, hung tasks, soft lockups)
//! are emitted at their line. The burst's identity is its first record's sequence number, so
//! re-reading the same records after a restart yields the same bursts.
//!
//! Invariants: pure (no I/O, no clock); at most [`MAX_OPEN_BURSTS`] bursts are open (past that
//! the oldest is closed early) and each keeps at most [`MAX_BURST_LINES`] lines;
//! [`BurstClassifier::oldest_open_seq`] tells the reader the earliest record a checkpoint must
//! not pass.

use super::KmsgRecord;
use super::kernel::{KernelEvent, classify};
use daytwo_model::Severity;

/// At most this many raw lines are kept as evidence for one burst: the first ones and the
/// latest.
pub const MAX_BURST_LINES: usize = 10;

/// At most this many bursts are open at once (distinct devices, interfaces, processes…).
pub const MAX_OPEN_BURSTS: usize = 64;

/// A run of lines of one event and key, emitted as one signal.
#[derive(Clone, Debug, PartialEq)]
pub struct Burst {
    /// The first line's event, with later lines folded in ([`KernelEvent::merge`]).
    pub event: KernelEvent,
    /// The worst severity of its lines.
    pub severity: Severity,
    /// How many lines it merged.
    pub lines_seen: u64,
    /// How many errors they reported (EDAC lines can report several; context lines none).
    pub error_count: u64,
    /// Sequence number of the first record: the burst's identity within a boot.
    pub first_seq: u64,
    pub first_ts_usec: u64,
    pub last_ts_usec: u64,
    /// The first `MAX_BURST_LINES - 1` lines and the latest one.
    pub lines: Vec<KmsgRecord>,
    closes_at_usec: u64,
    key: (&'static str, String),
}

impl Burst {
    fn open(event: KernelEvent, rec: &KmsgRecord) -> Self {
        let window = event.burst_window_usec();
        Burst {
            key: (event.event_name(), event.burst_key()),
            severity: event.severity(),
            error_count: event.error_count(),
            lines_seen: 1,
            first_seq: rec.seq,
            first_ts_usec: rec.ts_usec,
            last_ts_usec: rec.ts_usec,
            lines: vec![rec.clone()],
            closes_at_usec: rec.ts_usec.saturating_add(window),
            event,
        }
    }

    fn absorb(&mut self, event: &KernelEvent, rec: &KmsgRecord) {
        self.event.merge(event);
        self.severity = self.severity.max(event.severity());
        self.lines_seen += 1;
        self.error_count += event.error_count();
        self.last_ts_usec = self.last_ts_usec.max(rec.ts_usec);
        if self.lines.len() == MAX_BURST_LINES {
            self.lines.pop();
        }
        self.lines.push(rec.clone());
    }
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct BurstClassifier {
    open: Vec<Burst>,
}

impl BurstClassifier {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first record of the oldest open burst: a checkpoint must stay before it.
    pub fn oldest_open_seq(&self) -> Option<u64> {
        self.open.iter().map(|b| b.first_seq).min()
    }

    /// True when no burst is open.
    pub fn is_idle(&self) -> bool {
        self.open.is_empty()
    }

    /// Feeds the next record; returns the bursts it closed (oldest first), including its own
    /// when its event has no window.
    pub fn feed(&mut self, rec: &KmsgRecord) -> Vec<Burst> {
        let mut closed = self.close_until(rec.ts_usec);
        let Some(event) = classify(&rec.message) else {
            return closed;
        };
        let key = (event.event_name(), event.burst_key());
        if let Some(b) = self.open.iter_mut().find(|b| b.key == key) {
            b.absorb(&event, rec);
            return closed;
        }
        let burst = Burst::open(event, rec);
        if burst.closes_at_usec <= rec.ts_usec {
            closed.push(burst);
            return closed;
        }
        if self.open.len() == MAX_OPEN_BURSTS {
            closed.push(self.open.remove(0));
        }
        self.open.push(burst);
        closed
    }

    /// Closes the bursts whose window ended at or before `now_usec` (kernel time since boot).
    pub fn flush(&mut self, now_usec: u64) -> Vec<Burst> {
        self.close_until(now_usec)
    }

    fn close_until(&mut self, now_usec: u64) -> Vec<Burst> {
        if self.open.iter().all(|b| b.closes_at_usec > now_usec) {
            return Vec::new();
        }
        let (done, open): (Vec<Burst>, Vec<Burst>) = std::mem::take(&mut self.open)
            .into_iter()
            .partition(|b| b.closes_at_usec <= now_usec);
        self.open = open;
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kmsg::fixtures::{KERNEL_EVENTS, io_error_flood};
    use crate::kmsg::parse_record;

    #[test]
    fn a_flood_on_one_disk_becomes_one_burst_with_a_count() {
        let mut c = BurstClassifier::new();
        let recs = io_error_flood();
        let mut out = Vec::new();
        for r in &recs {
            let closed = c.feed(r);
            if !closed.is_empty() {
                out.push((r.seq, closed));
            }
        }
        // The 50-line flood closes at the 51st line (11 s after its first); the late line
        // opens a second burst, closed by the unrelated line 20 s later.
        assert_eq!(out.len(), 2, "{out:?}");
        let (at, first) = &out[0];
        assert_eq!(*at, 2050);
        assert_eq!(first.len(), 1);
        let b = &first[0];
        assert_eq!(b.lines_seen, 50);
        assert_eq!(b.error_count, 50);
        assert_eq!(b.first_seq, 2000);
        assert_eq!(b.severity, Severity::Critical);
        assert_eq!(b.lines.len(), MAX_BURST_LINES);
        assert_eq!(b.lines[0].seq, 2000);
        assert_eq!(b.lines.last().unwrap().seq, 2049);
        assert_eq!(b.last_ts_usec, 500_000_000 + 49 * 80_000);
        assert_eq!(out[1].1[0].first_seq, 2050);
        assert_eq!(out[1].1[0].lines_seen, 1);
        assert!(c.is_idle());
    }

    #[test]
    fn open_bursts_hold_the_checkpoint_and_flush_closes_them() {
        let mut c = BurstClassifier::new();
        let r = parse_record(b"6,10,1000000,-;eth0: Link is Down").unwrap();
        assert!(c.feed(&r).is_empty());
        assert_eq!(c.oldest_open_seq(), Some(10));
        assert!(c.flush(10_999_999).is_empty());
        let b = c.flush(11_000_000);
        assert_eq!(b.len(), 1);
        assert_eq!(c.oldest_open_seq(), None);
    }

    #[test]
    fn windowless_events_are_emitted_at_their_line() {
        let mut c = BurstClassifier::new();
        let r = parse_record(b"2,7,5,-;EXT4-fs (sda1): Remounting filesystem read-only").unwrap();
        let b = c.feed(&r);
        assert_eq!(b.len(), 1);
        assert!(c.is_idle());
    }

    #[test]
    fn machine_check_lines_merge_into_one_uncorrected_burst() {
        let mut c = BurstClassifier::new();
        for (line, _) in KERNEL_EVENTS {
            c.feed(&parse_record(line.as_bytes()).unwrap());
        }
        let bursts = c.flush(u64::MAX);
        let mce: Vec<_> = bursts
            .iter()
            .filter(|b| matches!(b.event, KernelEvent::HardwareError { source: "mce", .. }))
            .collect();
        assert_eq!(mce.len(), 1);
        assert_eq!(mce[0].lines_seen, 4);
        assert_eq!(mce[0].error_count, 2);
        assert_eq!(mce[0].severity, Severity::Critical);
        // Every line of the fixture that names an event is in exactly one burst (the
        // windowless ones were emitted by feed and are not here).
        let in_bursts: u64 = bursts.iter().map(|b| b.lines_seen).sum();
        let named = KERNEL_EVENTS.iter().filter(|(_, n)| n.is_some()).count() as u64;
        let windowless = 5; // three read-only, one hung task, one soft lockup
        assert_eq!(in_bursts + windowless, named);
    }

    #[test]
    fn the_number_of_open_bursts_is_bounded() {
        let mut c = BurstClassifier::new();
        let mut closed = 0;
        for i in 0..200u64 {
            let line = format!("6,{i},{},-;eth{i}: Link is Down", i * 10);
            closed += c.feed(&parse_record(line.as_bytes()).unwrap()).len();
        }
        assert_eq!(c.open.len(), MAX_OPEN_BURSTS);
        assert_eq!(closed, 200 - MAX_OPEN_BURSTS);
    }
}
