//! The log tables in the agent's state file: raw-log batches waiting for the collector and
//! the tailer's checkpoints.
//!
//! Entry type: [`LogStore`]. [`LogStore::commit`] writes, in *one* transaction through
//! [`Queue::push_with`], the log signals (into the signal queue), the raw-log batches and
//! the checkpoint changes that produced them: after a `kill -9` the tailer resumes exactly
//! where the durable batches end. The log shipper reads with [`LogStore::peek`] and deletes
//! with [`LogStore::ack`].
//!
//! Tables: `log_queue` (u64 sequence → `[count: u32 LE][ResourceLogs field bytes]`),
//! `log_meta` (`next_key`, `bytes`), `log_checkpoint` (fingerprint key → (offset,
//! fingerprint length, seen unix secs)). The raw-log queue is separate from the signal queue
//! so a backlog of logs never delays a signal; its byte bound is enforced by backpressure
//! (the tailer stops reading; the files are the buffer) rather than by dropping.

#![allow(clippy::result_large_err)]

use super::encode::EncodedBatch;
use super::tail::{CheckpointChanges, CheckpointEntry};
use crate::queue::{Queue, QueueError};
use daytwo_model::Signal;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

const LOG_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("log_queue");
const LOG_META: TableDefinition<&str, u64> = TableDefinition::new("log_meta");
const LOG_CHECKPOINTS: TableDefinition<u64, (u64, u64, u64)> =
    TableDefinition::new("log_checkpoint");
/// The template miner's saved state (JSON), under [`MINER_KEY`].
const LOG_MINER: TableDefinition<&str, &str> = TableDefinition::new("log_miner");
const MINER_KEY: &str = "state";
const NEXT_KEY: &str = "next_key";
const BYTES: &str = "bytes";

/// The oldest stored batches, as one export request.
#[derive(Debug, Default)]
pub struct Peeked {
    /// Their keys (for [`LogStore::ack`]).
    pub keys: Vec<u64>,
    /// Records in them.
    pub records: u64,
    /// Their `ResourceLogs` fields concatenated: an `ExportLogsServiceRequest`.
    pub body: Vec<u8>,
}

impl Peeked {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// One part of an export request: a batch still in memory, or bytes read from the state file.
#[derive(Clone, Debug)]
pub enum Part {
    Batch(Arc<EncodedBatch>),
    Read(Arc<Vec<u8>>),
}

impl Part {
    /// `ResourceLogs` fields of `ExportLogsServiceRequest`.
    pub fn bytes(&self) -> &[u8] {
        match self {
            Part::Batch(b) => b.body(),
            Part::Read(v) => v,
        }
    }
}

/// The oldest batches not yet handed out, as one export request (cheap to clone for a retry).
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Their keys (for [`LogStore::ack`]).
    pub keys: Vec<u64>,
    /// Records in them.
    pub records: u64,
    /// The request body: the parts concatenated.
    pub parts: Vec<Part>,
    /// Whether it was read from the state file rather than taken from memory.
    pub from_disk: bool,
}

impl Request {
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Body bytes.
    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.bytes().len()).sum()
    }
}

/// Batches kept in memory after their commit, oldest first, keys ascending.
#[derive(Debug, Default)]
struct Hot {
    batches: VecDeque<(u64, Arc<EncodedBatch>)>,
    bytes: usize,
    /// Buffers of delivered batches, for the pipeline's next ones.
    spare: Vec<Vec<u8>>,
}

/// Spare buffers kept for reuse.
const MAX_SPARE: usize = 4;

/// See the module docs.
#[derive(Debug)]
pub struct LogStore {
    queue: Arc<Queue>,
    bytes: AtomicU64,
    depth: AtomicU64,
    notify: Notify,
    hot: Mutex<Hot>,
    hot_max_bytes: usize,
    /// The oldest key in the table when it was opened (the first to send).
    first_key: u64,
}

impl LogStore {
    /// Creates the tables if needed.
    pub fn open(queue: Arc<Queue>) -> Result<LogStore, QueueError> {
        let init = || -> Result<(u64, u64, u64), redb::Error> {
            let w = queue.database()?.begin_write()?;
            let (bytes, depth, first);
            {
                let q = w.open_table(LOG_QUEUE)?;
                let meta = w.open_table(LOG_META)?;
                w.open_table(LOG_CHECKPOINTS)?;
                w.open_table(LOG_MINER)?;
                bytes = meta.get(BYTES)?.map(|v| v.value()).unwrap_or(0);
                depth = q.len()?;
                first = match q.first()? {
                    Some((k, _)) => k.value(),
                    None => meta.get(NEXT_KEY)?.map(|v| v.value()).unwrap_or(0),
                };
            }
            w.commit()?;
            Ok((bytes, depth, first))
        };
        let (bytes, depth, first_key) =
            init().map_err(|e| failed(&queue, "creating the log tables", e))?;
        Ok(LogStore {
            queue,
            bytes: AtomicU64::new(bytes),
            depth: AtomicU64::new(depth),
            notify: Notify::new(),
            hot: Mutex::new(Hot::default()),
            hot_max_bytes: 4 << 20,
            first_key,
        })
    }

    /// Keeps at most `bytes` of committed batches in memory for the shipper (default 4 MiB;
    /// 0: the shipper always reads the state file).
    pub fn with_hot_max_bytes(mut self, bytes: usize) -> Self {
        self.hot_max_bytes = bytes;
        self
    }

    /// Raised after a commit that stored raw logs.
    pub fn pushed(&self) -> &Notify {
        &self.notify
    }

    /// Bytes of raw logs waiting.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Batches waiting.
    pub fn depth(&self) -> u64 {
        self.depth.load(Ordering::Relaxed)
    }

    pub fn load_checkpoints(&self) -> Result<HashMap<u64, CheckpointEntry>, QueueError> {
        let read = || -> Result<HashMap<u64, CheckpointEntry>, redb::Error> {
            let r = self.queue.database()?.begin_read()?;
            let t = r.open_table(LOG_CHECKPOINTS)?;
            let mut out = HashMap::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let (offset, fp_len, seen_secs) = v.value();
                out.insert(
                    k.value(),
                    CheckpointEntry {
                        offset,
                        fp_len: fp_len as u32,
                        seen_secs,
                    },
                );
            }
            Ok(out)
        };
        read().map_err(|e| failed(&self.queue, "reading the log checkpoints", e))
    }

    /// Signals, raw-log batches (`(records, body)`) and checkpoint moves, in one transaction.
    /// Returns the key of the first batch (the others follow it), for [`LogStore::keep`].
    pub fn commit(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
    ) -> Result<u64, QueueError> {
        self.commit_full(signals, batches, changes, None, &mut |_| Ok(()))
    }

    /// Like [`LogStore::commit`], and runs `extra` in the same transaction: a source other
    /// than the tailer (journald) writes its own checkpoint with the batches it produced.
    pub fn commit_with(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
        extra: &mut dyn FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<u64, QueueError> {
        self.commit_full(signals, batches, changes, None, extra)
    }

    /// The template miner's last saved state.
    pub fn load_miner(&self) -> Result<Option<String>, QueueError> {
        let read = || -> Result<Option<String>, redb::Error> {
            let r = self.queue.database()?.begin_read()?;
            let t = r.open_table(LOG_MINER)?;
            Ok(t.get(MINER_KEY)?.map(|v| v.value().to_string()))
        };
        read().map_err(|e| failed(&self.queue, "reading the template miner state", e))
    }

    /// [`LogStore::commit`], also saving the template miner's state (when `Some`) in the same
    /// transaction, so it matches the checkpoints.
    pub fn commit_with_miner(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
        miner: Option<&str>,
    ) -> Result<u64, QueueError> {
        self.commit_full(signals, batches, changes, miner, &mut |_| Ok(()))
    }

    /// The one transaction behind every commit: batches, the miner's state, checkpoint moves
    /// and a source's own `extra` writes.
    fn commit_full(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
        miner: Option<&str>,
        extra: &mut dyn FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<u64, QueueError> {
        let mut added = 0u64;
        let mut first = 0u64;
        let mut also = |w: &redb::WriteTransaction| -> Result<(), redb::Error> {
            added = 0;
            if !batches.is_empty() {
                let mut q = w.open_table(LOG_QUEUE)?;
                let mut meta = w.open_table(LOG_META)?;
                let mut next = meta.get(NEXT_KEY)?.map(|v| v.value()).unwrap_or(0);
                first = next;
                let mut bytes = meta.get(BYTES)?.map(|v| v.value()).unwrap_or(0);
                for b in batches {
                    let value = b.value();
                    q.insert(next, value)?;
                    next += 1;
                    bytes += value.len() as u64;
                    added += value.len() as u64;
                }
                meta.insert(NEXT_KEY, next)?;
                meta.insert(BYTES, bytes)?;
            }
            if let Some(m) = miner {
                w.open_table(LOG_MINER)?.insert(MINER_KEY, m)?;
            }
            if !changes.is_empty() {
                let mut cp = w.open_table(LOG_CHECKPOINTS)?;
                for k in &changes.delete {
                    cp.remove(*k)?;
                }
                for (k, e) in &changes.put {
                    cp.insert(*k, (e.offset, e.fp_len as u64, e.seen_secs))?;
                }
            }
            extra(w)
        };
        self.queue.push_with(signals, &mut also)?;
        if !batches.is_empty() {
            self.bytes.fetch_add(added, Ordering::Relaxed);
            self.depth
                .fetch_add(batches.len() as u64, Ordering::Relaxed);
        }
        Ok(first)
    }

    /// After [`LogStore::commit`] of `batches` (the first under key `first`): keeps what fits
    /// in memory for the shipper and wakes it. Returns the buffers it did not keep, and spare
    /// buffers of delivered batches, for the pipeline's next batches.
    pub fn keep(&self, first: u64, batches: Vec<EncodedBatch>) -> Vec<Vec<u8>> {
        if batches.is_empty() {
            return Vec::new();
        }
        let mut back = Vec::new();
        {
            let mut hot = self.hot.lock().expect("log store lock");
            for (i, b) in batches.into_iter().enumerate() {
                let len = b.value().len();
                if hot.bytes + len <= self.hot_max_bytes {
                    hot.bytes += len;
                    hot.batches.push_back((first + i as u64, Arc::new(b)));
                } else {
                    // The shipper reads this one from the state file.
                    back.push(b.into_buf());
                }
            }
            back.append(&mut hot.spare);
        }
        self.notify.notify_one();
        back
    }

    /// Bytes of batches held in memory for the shipper.
    pub fn hot_bytes(&self) -> usize {
        self.hot.lock().expect("log store lock").bytes
    }

    /// The next request after key `after` (`None`: nothing sent yet), up to `max_bytes` of
    /// body (at least one batch): from memory when the batches there follow on, else read from
    /// the state file (blocking). Empty when nothing waits.
    pub fn next_request(
        &self,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<Request, QueueError> {
        if let Some(r) = self.next_in_memory(after, max_bytes) {
            return Ok(r);
        }
        self.next_from_disk(after, max_bytes)
    }

    /// The in-memory part of [`LogStore::next_request`]: `None` when the next batches must be
    /// read from the state file (or nothing waits). Never blocks on the disk.
    pub fn next_in_memory(&self, after: Option<u64>, max_bytes: usize) -> Option<Request> {
        let want = after.map_or(self.first_key, |k| k.saturating_add(1));
        {
            let mut hot = self.hot.lock().expect("log store lock");
            // Sent already (read from the disk while they waited here).
            while hot.batches.front().is_some_and(|(k, _)| *k < want) {
                let (_, b) = hot.batches.pop_front().expect("front");
                hot.bytes -= b.value().len();
            }
            if hot.batches.front().is_some_and(|(k, _)| *k == want) {
                let mut r = Request::default();
                let mut body = 0;
                while let Some((k, b)) = hot.batches.front() {
                    let len = b.body().len();
                    let follows = r.keys.last().is_none_or(|last| *k == last + 1);
                    if !follows || (!r.is_empty() && body + len > max_bytes) {
                        break;
                    }
                    let (k, b) = hot.batches.pop_front().expect("front");
                    hot.bytes -= b.value().len();
                    body += len;
                    r.keys.push(k);
                    r.records += b.records as u64;
                    r.parts.push(Part::Batch(b));
                }
                return Some(r);
            }
        }
        None
    }

    /// The disk part of [`LogStore::next_request`] (blocking).
    pub fn next_from_disk(
        &self,
        after: Option<u64>,
        max_bytes: usize,
    ) -> Result<Request, QueueError> {
        let p = self.peek_after(after, max_bytes)?;
        Ok(Request {
            keys: p.keys,
            records: p.records,
            parts: if p.body.is_empty() {
                Vec::new()
            } else {
                vec![Part::Read(Arc::new(p.body))]
            },
            from_disk: true,
        })
    }

    /// After [`LogStore::ack`] of a request: keeps the buffers of its in-memory batches.
    pub fn recycle(&self, r: Request) {
        let mut hot = self.hot.lock().expect("log store lock");
        for p in r.parts {
            if let Part::Batch(b) = p
                && hot.spare.len() < MAX_SPARE
                && let Ok(b) = Arc::try_unwrap(b)
            {
                hot.spare.push(b.into_buf());
            }
        }
    }

    /// The oldest batches, up to `max_bytes` of body (at least one), read straight into one
    /// request body.
    pub fn peek(&self, max_bytes: usize) -> Result<Peeked, QueueError> {
        self.peek_after(None, max_bytes)
    }

    /// Like [`LogStore::peek`], skipping keys up to `after` (sent, their ack in progress).
    pub fn peek_after(&self, after: Option<u64>, max_bytes: usize) -> Result<Peeked, QueueError> {
        let read = || -> Result<Peeked, redb::Error> {
            let r = self.queue.database()?.begin_read()?;
            let t = r.open_table(LOG_QUEUE)?;
            let mut out = Peeked::default();
            let from = after.map_or(0, |k| k.saturating_add(1));
            for item in t.range(from..)? {
                let (k, v) = item?;
                let v = v.value();
                let (count, body) = v.split_at(4.min(v.len()));
                if !out.is_empty() && out.body.len() + body.len() > max_bytes {
                    break;
                }
                let mut c = [0u8; 4];
                c[..count.len()].copy_from_slice(count);
                if out.is_empty() {
                    // Growing would copy; a little more than one request is enough.
                    out.body
                        .reserve_exact(body.len().max(max_bytes.min(body.len() * 2)));
                }
                out.body.extend_from_slice(body);
                out.keys.push(k.value());
                out.records += u32::from_le_bytes(c) as u64;
            }
            Ok(out)
        };
        read().map_err(|e| failed(&self.queue, "reading the log queue", e))
    }

    /// Deletes delivered batches.
    pub fn ack(&self, keys: &[u64]) -> Result<(), QueueError> {
        let write = || -> Result<(u64, u64), redb::Error> {
            let w = self.queue.database()?.begin_write()?;
            let (mut removed, mut bytes_left);
            {
                let mut q = w.open_table(LOG_QUEUE)?;
                let mut meta = w.open_table(LOG_META)?;
                bytes_left = meta.get(BYTES)?.map(|v| v.value()).unwrap_or(0);
                removed = 0;
                for k in keys {
                    if let Some(v) = q.remove(*k)? {
                        bytes_left = bytes_left.saturating_sub(v.value().len() as u64);
                        removed += 1;
                    }
                }
                if q.is_empty()? {
                    bytes_left = 0;
                }
                meta.insert(BYTES, bytes_left)?;
            }
            w.commit()?;
            Ok((removed, bytes_left))
        };
        let (removed, left) = write().map_err(|e| failed(&self.queue, "removing sent logs", e))?;
        self.bytes.store(left, Ordering::Relaxed);
        let _ = self
            .depth
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |d| {
                Some(d.saturating_sub(removed))
            });
        Ok(())
    }
}

fn failed(queue: &Queue, op: &'static str, e: impl Into<redb::Error>) -> QueueError {
    let e = e.into();
    queue.recover(&e);
    QueueError::StorageFailed {
        path: queue.path().to_path_buf(),
        op,
        source: Box::new(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;

    #[test]
    fn commit_peek_ack_and_checkpoints_survive_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        let open = || {
            let q =
                Arc::new(Queue::open(&path, 1 << 20, Metrics::unregistered().unwrap()).unwrap());
            LogStore::open(q).unwrap()
        };
        let s = open();
        let mut ch = CheckpointChanges::default();
        let e = CheckpointEntry {
            offset: 42,
            fp_len: 256,
            seen_secs: 9,
        };
        ch.put.push((7, e));
        let batches = [
            EncodedBatch::from_body(2, b"ab"),
            EncodedBatch::from_body(1, b"c"),
        ];
        s.commit(&[], &batches, &ch).unwrap();
        assert_eq!(s.bytes(), 4 + 2 + 4 + 1);
        assert_eq!(s.depth(), 2);
        let b = s.peek(1).unwrap();
        assert_eq!(b.keys.len(), 1, "at least one, then the byte bound");
        assert_eq!((b.records, b.body.as_slice()), (2, b"ab".as_slice()));
        assert_eq!(s.peek(3).unwrap().body, b"abc");
        let after = s.peek_after(Some(b.keys[0]), 1 << 20).unwrap();
        assert_eq!((after.records, after.body.as_slice()), (1, b"c".as_slice()));
        s.ack(&b.keys).unwrap();
        assert_eq!(s.bytes(), 5);
        drop(s);
        let s = open();
        assert_eq!(s.bytes(), 5);
        assert_eq!(s.depth(), 1);
        assert_eq!(s.load_checkpoints().unwrap()[&7], e);
        let mut ch = CheckpointChanges::default();
        ch.delete.push(7);
        assert_eq!(s.load_miner().unwrap(), None);
        s.commit_with_miner(&[], &[], &ch, Some("{\"m\":1}"))
            .unwrap();
        assert_eq!(s.load_miner().unwrap().as_deref(), Some("{\"m\":1}"));
        assert!(s.load_checkpoints().unwrap().is_empty());
        let rest = s.peek(1 << 20).unwrap();
        assert_eq!(rest.body, b"c");
        s.ack(&rest.keys).unwrap();
        assert_eq!(s.bytes(), 0);
    }

    fn body(r: &Request) -> Vec<u8> {
        r.parts.iter().flat_map(|p| p.bytes().to_vec()).collect()
    }

    #[test]
    fn requests_come_from_memory_then_from_disk_for_what_did_not_fit() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        let open = |hot: usize| {
            let q =
                Arc::new(Queue::open(&path, 1 << 20, Metrics::unregistered().unwrap()).unwrap());
            LogStore::open(q).unwrap().with_hot_max_bytes(hot)
        };
        // Room in memory for two 7-byte values (count + 3 body bytes).
        let s = open(14);
        let batches = vec![
            EncodedBatch::from_body(1, b"aaa"),
            EncodedBatch::from_body(2, b"bbb"),
            EncodedBatch::from_body(3, b"ccc"),
        ];
        let first = s
            .commit(&[], &batches, &CheckpointChanges::default())
            .unwrap();
        let back = s.keep(first, batches);
        assert_eq!(
            back.len(),
            1,
            "the third did not fit and comes back for reuse"
        );
        assert_eq!(s.hot_bytes(), 14);
        let r = s.next_request(None, 1 << 20).unwrap();
        assert!(!r.from_disk);
        assert_eq!(
            (r.keys.clone(), r.records, body(&r)),
            (vec![first, first + 1], 3, b"aaabbb".to_vec())
        );
        // The third is read from the state file.
        let r2 = s.next_request(r.keys.last().copied(), 1 << 20).unwrap();
        assert!(r2.from_disk);
        assert_eq!(
            (r2.keys.clone(), body(&r2)),
            (vec![first + 2], b"ccc".to_vec())
        );
        s.ack(&r.keys).unwrap();
        s.recycle(r);
        // Nothing is sent twice: the next request after the last key is empty.
        assert!(
            s.next_request(r2.keys.last().copied(), 1 << 20)
                .unwrap()
                .is_empty()
        );
        // Unacknowledged batches survive a restart and are read from the disk, oldest first.
        drop(s);
        let s = open(1 << 20);
        let r = s.next_request(None, 1 << 20).unwrap();
        assert!(r.from_disk);
        assert_eq!(r.keys, vec![first + 2]);
        s.ack(&r.keys).unwrap();
        // New batches after the backlog come from memory and follow on.
        let more = vec![EncodedBatch::from_body(4, b"ddd")];
        let k = s.commit(&[], &more, &CheckpointChanges::default()).unwrap();
        assert_eq!(k, first + 3);
        assert!(s.keep(k, more).is_empty());
        let r = s.next_request(Some(first + 2), 1 << 20).unwrap();
        assert!(!r.from_disk);
        assert_eq!(body(&r), b"ddd");
    }

    #[test]
    fn memory_copies_already_sent_from_disk_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let q = Arc::new(
            Queue::open(
                &tmp.path().join("a.redb"),
                1 << 20,
                Metrics::unregistered().unwrap(),
            )
            .unwrap(),
        );
        let s = LogStore::open(q).unwrap();
        let b = vec![
            EncodedBatch::from_body(1, b"x"),
            EncodedBatch::from_body(1, b"y"),
        ];
        let first = s.commit(&[], &b, &CheckpointChanges::default()).unwrap();
        // Read from the disk before the shell handed the memory copies over.
        let r = s.peek_after(None, 1 << 20).unwrap();
        assert_eq!(r.keys, vec![first, first + 1]);
        s.keep(first, b);
        assert!(s.next_request(Some(first + 1), 1 << 20).unwrap().is_empty());
        assert_eq!(s.hot_bytes(), 0, "the stale copies were dropped");
    }
}
