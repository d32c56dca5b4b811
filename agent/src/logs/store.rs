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
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

const LOG_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("log_queue");
const LOG_META: TableDefinition<&str, u64> = TableDefinition::new("log_meta");
const LOG_CHECKPOINTS: TableDefinition<u64, (u64, u64, u64)> =
    TableDefinition::new("log_checkpoint");
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

/// See the module docs.
#[derive(Debug)]
pub struct LogStore {
    queue: Arc<Queue>,
    bytes: AtomicU64,
    depth: AtomicU64,
    notify: Notify,
}

impl LogStore {
    /// Creates the tables if needed.
    pub fn open(queue: Arc<Queue>) -> Result<LogStore, QueueError> {
        let init = || -> Result<(u64, u64), redb::Error> {
            let w = queue.database().begin_write()?;
            let (bytes, depth);
            {
                let q = w.open_table(LOG_QUEUE)?;
                let meta = w.open_table(LOG_META)?;
                w.open_table(LOG_CHECKPOINTS)?;
                bytes = meta.get(BYTES)?.map(|v| v.value()).unwrap_or(0);
                depth = q.len()?;
            }
            w.commit()?;
            Ok((bytes, depth))
        };
        let (bytes, depth) = init().map_err(|e| failed(&queue, "creating the log tables", e))?;
        Ok(LogStore {
            queue,
            bytes: AtomicU64::new(bytes),
            depth: AtomicU64::new(depth),
            notify: Notify::new(),
        })
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
            let r = self.queue.database().begin_read()?;
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
    pub fn commit(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
    ) -> Result<(), QueueError> {
        self.commit_with(signals, batches, changes, &mut |_| Ok(()))
    }

    /// Like [`LogStore::commit`], and runs `extra` in the same transaction: a source other
    /// than the tailer (journald) writes its own checkpoint with the batches it produced.
    pub fn commit_with(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
        extra: &mut dyn FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<(), QueueError> {
        let mut added = 0u64;
        let mut also = |w: &redb::WriteTransaction| -> Result<(), redb::Error> {
            added = 0;
            if !batches.is_empty() {
                let mut q = w.open_table(LOG_QUEUE)?;
                let mut meta = w.open_table(LOG_META)?;
                let mut next = meta.get(NEXT_KEY)?.map(|v| v.value()).unwrap_or(0);
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
            self.notify.notify_one();
        }
        Ok(())
    }

    /// The oldest batches, up to `max_bytes` of body (at least one), read straight into one
    /// request body.
    pub fn peek(&self, max_bytes: usize) -> Result<Peeked, QueueError> {
        self.peek_after(None, max_bytes)
    }

    /// Like [`LogStore::peek`], skipping keys up to `after` (sent, their ack in progress).
    pub fn peek_after(&self, after: Option<u64>, max_bytes: usize) -> Result<Peeked, QueueError> {
        let read = || -> Result<Peeked, redb::Error> {
            let r = self.queue.database().begin_read()?;
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
                    // Untouched capacity costs no memory; growing would copy.
                    out.body.reserve_exact(body.len().max(max_bytes));
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
            let w = self.queue.database().begin_write()?;
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
    QueueError::StorageFailed {
        path: queue.path().to_path_buf(),
        op,
        source: Box::new(e.into()),
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
        s.commit(&[], &[], &ch).unwrap();
        assert!(s.load_checkpoints().unwrap().is_empty());
        let rest = s.peek(1 << 20).unwrap();
        assert_eq!(rest.body, b"c");
        s.ack(&rest.keys).unwrap();
        assert_eq!(s.bytes(), 0);
    }
}
