//! The disk-backed send queue (and the kmsg checkpoints), in one redb file. Other sources
//! add their own tables to the same file and commit them with [`Queue::push_with`].
//!
//! Entry type: [`Queue`], opened on `<data_dir>/agent.redb`. Sources call [`Queue::push`]
//! (optionally with a source [`Checkpoint`] committed in the same write transaction); the
//! shipper calls [`Queue::peek`] and, once the collector acknowledged a batch, [`Queue::ack`].
//!
//! Invariants:
//! * A signal is on disk (committed, fsynced) before anyone tries to send it, and is removed
//!   only by `ack` — so `kill -9` at any moment loses nothing that was pushed.
//! * A source's checkpoint moves in the same transaction as the signals it produced, so a
//!   crash can neither lose a signal (checkpoint ahead of the queue) nor duplicate one
//!   (queue ahead of the checkpoint).
//! * Keys are a `u64` sequence that only grows (persisted in the `meta` table), so reading in
//!   key order is FIFO order, across restarts.
//! * The sum of stored record sizes never exceeds `max_bytes` after a push returns: the oldest
//!   records are dropped first and counted as `daytwo_agent_queue_dropped_total{reason="full"}`.
//!
//! The queue is synchronous (redb); async callers run it on the blocking pool.

// The private transaction closures return redb's large error type; it is boxed at this
// module's boundary (`QueueError`), and errors here are rare (a failing disk).
#![allow(clippy::result_large_err)]

use crate::metrics::{DROP_FULL, DROP_UNDECODABLE, Metrics};
use daytwo_model::Signal;
use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::Notify;
use tracing::warn;

const QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("queue");
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const KMSG_CHECKPOINTS: TableDefinition<&str, u64> = TableDefinition::new("kmsg_checkpoint");
const META_NEXT_KEY: &str = "next_key";
/// redb page cache of the state file.
const QUEUE_CACHE_BYTES: usize = 4 << 20;
const META_BYTES: &str = "bytes";

/// A failure of the agent's state file.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The state file could not be opened or created.
    #[error(
        "cannot open the agent state file {path}: {source}. Check that the directory is writable \
         and that no other daytwo agent uses the same data directory."
    )]
    OpenFailed {
        path: PathBuf,
        #[source]
        source: Box<redb::Error>,
    },
    /// A read or write of the state file failed; retrying may help if the disk recovers.
    #[error(
        "agent state file {path}: {op} failed: {source}. Check free disk space and the disk's health."
    )]
    StorageFailed {
        path: PathBuf,
        op: &'static str,
        #[source]
        source: Box<redb::Error>,
    },
}

/// Where a source has read up to. Today only the kmsg source: the last processed record
/// sequence number of one boot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub boot_id: String,
    pub seq: u64,
}

/// One queued signal.
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    /// Queue key; pass it to [`Queue::ack`].
    pub key: u64,
    pub signal: Signal,
}

/// The disk-backed FIFO of signals waiting for the collector. See the module docs.
pub struct Queue {
    /// `None` only between closing the file after an I/O error and opening it again
    /// (see [`Queue::recover`]).
    db: RwLock<Option<Arc<Database>>>,
    path: PathBuf,
    max_bytes: u64,
    metrics: Metrics,
    pushed: Notify,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue")
            .field("path", &self.path)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl Queue {
    /// Opens (or creates) the state file at `path`.
    pub fn open(path: &Path, max_bytes: u64, metrics: Metrics) -> Result<Self, QueueError> {
        let open_failed = |source: redb::Error| QueueError::OpenFailed {
            path: path.to_path_buf(),
            source: Box::new(source),
        };
        // A small page cache: the agent must stay within tens of MiB of RSS; the queue is
        // read once, in order.
        let db = open_db(path).map_err(open_failed)?;
        // Create the tables so readers never see "table does not exist".
        let init = || -> Result<(), redb::Error> {
            let w = db.begin_write()?;
            w.open_table(QUEUE)?;
            w.open_table(META)?;
            w.open_table(KMSG_CHECKPOINTS)?;
            w.commit()?;
            Ok(())
        };
        init().map_err(open_failed)?;
        let q = Queue {
            db: RwLock::new(Some(Arc::new(db))),
            path: path.to_path_buf(),
            max_bytes,
            metrics,
            pushed: Notify::new(),
        };
        q.update_gauges().map_err(open_failed)?;
        Ok(q)
    }

    /// The underlying database, for other sources' tables (`logs::store`).
    /// The state file's database. Fails with `PreviousIo` while it is being reopened after
    /// an I/O error; a retry opens it again.
    pub fn database(&self) -> Result<Arc<Database>, redb::Error> {
        let db = self.db.read().expect("queue lock").clone();
        match db {
            Some(db) => Ok(db),
            None => {
                self.reopen();
                Err(redb::Error::PreviousIo)
            }
        }
    }

    /// After a failed write, redb refuses every later transaction ("Previous I/O error
    /// occurred") until the file is closed and opened again: a disk that was full once would
    /// stop the agent's queue for good. When `e` says so, this closes the file and opens it
    /// again (redb repairs it to its last commit); the caller's retry then works once the disk
    /// does. Returns whether `e` was such an error.
    pub fn recover(&self, e: &redb::Error) -> bool {
        let poisoned = matches!(
            e,
            redb::Error::PreviousIo | redb::Error::Io(_) | redb::Error::Corrupted(_)
        );
        if poisoned {
            self.reopen();
        }
        poisoned
    }

    fn reopen(&self) {
        let mut slot = self.db.write().expect("queue lock");
        if let Some(db) = slot.take() {
            if Arc::strong_count(&db) > 1 {
                // A transaction elsewhere still holds it; the next error tries again.
                *slot = Some(db);
                return;
            }
            drop(db);
        }
        match open_db(&self.path) {
            Ok(db) => {
                warn!(path = %self.path.display(), "Reopened the agent state file after an I/O error.");
                *slot = Some(Arc::new(db));
            }
            Err(e) => {
                warn!(path = %self.path.display(), error = %e, "Cannot reopen the agent state file yet; retrying.");
            }
        }
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The notification raised after every push that stored something.
    pub fn pushed(&self) -> &Notify {
        &self.pushed
    }

    fn failed(&self, op: &'static str) -> impl FnOnce(redb::Error) -> QueueError + '_ {
        move |source| {
            self.recover(&source);
            QueueError::StorageFailed {
                path: self.path.clone(),
                op,
                source: Box::new(source),
            }
        }
    }

    fn update_gauges(&self) -> Result<(), redb::Error> {
        let (depth, bytes) = self.stats()?;
        self.metrics.queue_depth.set(depth as i64);
        self.metrics.queue_bytes.set(bytes as i64);
        Ok(())
    }

    fn stats(&self) -> Result<(u64, u64), redb::Error> {
        let r = self.database()?.begin_read()?;
        let depth = r.open_table(QUEUE)?.len()?;
        let bytes = r
            .open_table(META)?
            .get(META_BYTES)?
            .map(|v| v.value())
            .unwrap_or(0);
        Ok((depth, bytes))
    }

    /// Number of queued signals.
    pub fn depth(&self) -> Result<u64, QueueError> {
        self.stats()
            .map(|s| s.0)
            .map_err(self.failed("reading the queue depth"))
    }

    /// Bytes of queued signals (their JSON encoding).
    pub fn bytes(&self) -> Result<u64, QueueError> {
        self.stats()
            .map(|s| s.1)
            .map_err(self.failed("reading the queue size"))
    }

    /// Appends `signals` (in order) and, in the same transaction, moves `checkpoint`. Drops
    /// the oldest records while the queue is over its byte bound; returns how many were
    /// dropped.
    pub fn push(
        &self,
        signals: &[Signal],
        checkpoint: Option<&Checkpoint>,
    ) -> Result<u64, QueueError> {
        self.push_with(signals, &mut |w| match checkpoint {
            Some(cp) => write_checkpoint(w, cp),
            None => Ok(()),
        })
    }

    /// Appends `signals` like [`Queue::push`] and runs `also` inside the same write
    /// transaction, so another source's state (the log tailer's checkpoints and raw-log
    /// batches) commits atomically with the signals it produced.
    pub fn push_with(
        &self,
        signals: &[Signal],
        also: &mut dyn FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<u64, QueueError> {
        let encoded: Vec<Vec<u8>> = signals
            .iter()
            .map(|s| serde_json::to_vec(s).expect("a Signal always serialises"))
            .collect();
        let mut write = || -> Result<u64, redb::Error> {
            let w = self.database()?.begin_write()?;
            let mut dropped = 0;
            {
                let mut queue = w.open_table(QUEUE)?;
                let mut meta = w.open_table(META)?;
                let mut next = meta.get(META_NEXT_KEY)?.map(|v| v.value()).unwrap_or(0);
                let mut bytes = meta.get(META_BYTES)?.map(|v| v.value()).unwrap_or(0);
                for value in &encoded {
                    queue.insert(next, value.as_slice())?;
                    next += 1;
                    bytes += value.len() as u64;
                    while bytes > self.max_bytes {
                        let Some((_, v)) = queue.pop_first()? else {
                            bytes = 0;
                            break;
                        };
                        bytes = bytes.saturating_sub(v.value().len() as u64);
                        dropped += 1;
                    }
                }
                meta.insert(META_NEXT_KEY, next)?;
                meta.insert(META_BYTES, bytes)?;
            }
            also(&w)?;
            w.commit()?;
            Ok(dropped)
        };
        let dropped = write().map_err(self.failed("queueing signals"))?;
        if dropped > 0 {
            self.metrics
                .queue_dropped
                .with_label_values(&[DROP_FULL])
                .inc_by(dropped);
            warn!(
                dropped,
                max_bytes = self.max_bytes,
                "Send queue is full; dropped the oldest signals."
            );
        }
        self.update_gauges()
            .map_err(self.failed("reading the queue size"))?;
        if !signals.is_empty() {
            self.pushed.notify_one();
        }
        Ok(dropped)
    }

    /// Moves a source checkpoint without queueing anything.
    pub fn set_checkpoint(&self, checkpoint: &Checkpoint) -> Result<(), QueueError> {
        let write = || -> Result<(), redb::Error> {
            let w = self.database()?.begin_write()?;
            write_checkpoint(&w, checkpoint)?;
            w.commit()?;
            Ok(())
        };
        write().map_err(self.failed("writing the kmsg checkpoint"))
    }

    /// The kmsg checkpoint of `boot_id`, if this boot has one.
    pub fn checkpoint(&self, boot_id: &str) -> Result<Option<u64>, QueueError> {
        let read = || -> Result<Option<u64>, redb::Error> {
            let r = self.database()?.begin_read()?;
            let t = r.open_table(KMSG_CHECKPOINTS)?;
            Ok(t.get(boot_id)?.map(|v| v.value()))
        };
        read().map_err(self.failed("reading the kmsg checkpoint"))
    }

    /// Up to `max` oldest signals, oldest first, without removing them. Records that no
    /// longer decode are removed and counted (`reason="undecodable"`).
    pub fn peek(&self, max: usize) -> Result<Vec<Queued>, QueueError> {
        let read = || -> Result<(Vec<Queued>, Vec<u64>), redb::Error> {
            let r = self.database()?.begin_read()?;
            let t = r.open_table(QUEUE)?;
            let mut out = Vec::new();
            let mut bad = Vec::new();
            for item in t.iter()? {
                if out.len() >= max {
                    break;
                }
                let (k, v) = item?;
                match serde_json::from_slice::<Signal>(v.value()) {
                    Ok(signal) => out.push(Queued {
                        key: k.value(),
                        signal,
                    }),
                    Err(e) => {
                        warn!(key = k.value(), error = %e, "Queued record does not decode; dropping it.");
                        bad.push(k.value());
                    }
                }
            }
            Ok((out, bad))
        };
        let (out, bad) = read().map_err(self.failed("reading the queue"))?;
        if !bad.is_empty() {
            let n = self.remove(&bad)?;
            self.metrics
                .queue_dropped
                .with_label_values(&[DROP_UNDECODABLE])
                .inc_by(n);
        }
        Ok(out)
    }

    /// Removes acknowledged records. Keys no longer present (dropped while in flight) are
    /// ignored. Returns how many were removed.
    pub fn ack(&self, keys: &[u64]) -> Result<u64, QueueError> {
        self.remove(keys)
    }

    fn remove(&self, keys: &[u64]) -> Result<u64, QueueError> {
        let write = || -> Result<u64, redb::Error> {
            let w = self.database()?.begin_write()?;
            let mut removed = 0;
            {
                let mut queue = w.open_table(QUEUE)?;
                let mut meta = w.open_table(META)?;
                let mut bytes = meta.get(META_BYTES)?.map(|v| v.value()).unwrap_or(0);
                for k in keys {
                    if let Some(v) = queue.remove(*k)? {
                        bytes = bytes.saturating_sub(v.value().len() as u64);
                        removed += 1;
                    }
                }
                if queue.is_empty()? {
                    bytes = 0;
                }
                meta.insert(META_BYTES, bytes)?;
            }
            w.commit()?;
            Ok(removed)
        };
        let removed = write().map_err(self.failed("removing sent signals"))?;
        self.update_gauges()
            .map_err(self.failed("reading the queue size"))?;
        Ok(removed)
    }
}

/// Sets this boot's checkpoint and forgets other boots' (their records are gone).
fn open_db(path: &Path) -> Result<Database, redb::Error> {
    Ok(Database::builder()
        .set_cache_size(QUEUE_CACHE_BYTES)
        .create(path)?)
}

fn write_checkpoint(w: &redb::WriteTransaction, cp: &Checkpoint) -> Result<(), redb::Error> {
    let mut t = w.open_table(KMSG_CHECKPOINTS)?;
    t.retain(|boot, _| boot == cp.boot_id)?;
    t.insert(cp.boot_id.as_str(), cp.seq)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, EntityKind, Severity, Timestamp};
    use proptest::prelude::*;

    fn signal(n: u64, pad: usize) -> Signal {
        Signal {
            id: format!("id-{n}"),
            name: "daytwo.kernel.oom_kill".into(),
            time: Timestamp::from_unix_secs(n as i64),
            severity: Severity::Critical,
            entity: Entity::new(EntityKind::Host, "h"),
            resource: Default::default(),
            attributes: Default::default(),
            message: "x".repeat(pad),
            evidence: vec![],
        }
    }

    fn size(s: &Signal) -> u64 {
        serde_json::to_vec(s).unwrap().len() as u64
    }

    fn open(dir: &Path, max: u64) -> Queue {
        Queue::open(
            &dir.join("agent.redb"),
            max,
            Metrics::unregistered().unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn fifo_ack_and_reopen() {
        let tmp = tempfile::tempdir().unwrap();
        let q = open(tmp.path(), 1 << 20);
        q.push(&[signal(1, 1), signal(2, 1)], None).unwrap();
        q.push(&[signal(3, 1)], None).unwrap();
        let batch = q.peek(2).unwrap();
        assert_eq!(
            batch
                .iter()
                .map(|b| b.signal.id.as_str())
                .collect::<Vec<_>>(),
            ["id-1", "id-2"]
        );
        assert_eq!(q.ack(&[batch[0].key, batch[1].key]).unwrap(), 2);
        assert_eq!(q.depth().unwrap(), 1);
        drop(q);
        let q = open(tmp.path(), 1 << 20);
        assert_eq!(q.depth().unwrap(), 1);
        assert_eq!(q.bytes().unwrap(), size(&signal(3, 1)));
        q.push(&[signal(4, 1)], None).unwrap();
        let rest = q.peek(10).unwrap();
        assert_eq!(
            rest.iter()
                .map(|b| b.signal.id.as_str())
                .collect::<Vec<_>>(),
            ["id-3", "id-4"]
        );
        assert!(rest[0].key < rest[1].key);
    }

    #[test]
    fn drops_oldest_when_full_and_counts() {
        let tmp = tempfile::tempdir().unwrap();
        let one = size(&signal(1, 100));
        let metrics = Metrics::unregistered().unwrap();
        let q = Queue::open(&tmp.path().join("agent.redb"), one * 2, metrics.clone()).unwrap();
        q.push(&[signal(1, 100), signal(2, 100)], None).unwrap();
        assert_eq!(q.push(&[signal(3, 100)], None).unwrap(), 1);
        let ids: Vec<_> = q
            .peek(10)
            .unwrap()
            .into_iter()
            .map(|b| b.signal.id)
            .collect();
        assert_eq!(ids, ["id-2", "id-3"]);
        assert_eq!(
            metrics.queue_dropped.with_label_values(&[DROP_FULL]).get(),
            1
        );
        assert_eq!(metrics.queue_depth.get(), 2);
        assert_eq!(metrics.queue_bytes.get() as u64, one * 2);
    }

    #[test]
    fn checkpoint_moves_with_the_push_and_forgets_old_boots() {
        let tmp = tempfile::tempdir().unwrap();
        let q = open(tmp.path(), 1 << 20);
        assert_eq!(q.checkpoint("boot-a").unwrap(), None);
        let cp = Checkpoint {
            boot_id: "boot-a".into(),
            seq: 422,
        };
        q.push(&[signal(1, 1)], Some(&cp)).unwrap();
        assert_eq!(q.checkpoint("boot-a").unwrap(), Some(422));
        q.set_checkpoint(&Checkpoint {
            boot_id: "boot-b".into(),
            seq: 7,
        })
        .unwrap();
        drop(q);
        let q = open(tmp.path(), 1 << 20);
        assert_eq!(q.checkpoint("boot-a").unwrap(), None);
        assert_eq!(q.checkpoint("boot-b").unwrap(), Some(7));
        assert_eq!(q.depth().unwrap(), 1);
    }

    #[test]
    fn undecodable_records_are_dropped_and_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let metrics = Metrics::unregistered().unwrap();
        let q = Queue::open(&tmp.path().join("agent.redb"), 1 << 20, metrics.clone()).unwrap();
        q.push(&[signal(1, 1)], None).unwrap();
        {
            let w = q.database().unwrap().begin_write().unwrap();
            {
                let mut t = w.open_table(QUEUE).unwrap();
                t.insert(0u64, b"not json".as_slice()).unwrap();
            }
            w.commit().unwrap();
        }
        let got = q.peek(10).unwrap();
        assert_eq!(got.len(), 0);
        assert_eq!(
            metrics
                .queue_dropped
                .with_label_values(&[DROP_UNDECODABLE])
                .get(),
            1
        );
        assert_eq!(q.depth().unwrap(), 0);
    }

    #[test]
    fn a_second_open_of_the_same_file_fails_with_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let _q = open(tmp.path(), 1 << 20);
        let err = Queue::open(
            &tmp.path().join("agent.redb"),
            1 << 20,
            Metrics::unregistered().unwrap(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("agent.redb"), "{err}");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Push(Vec<usize>),
        Peek(usize),
        AckFirst(usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec(0usize..300, 1..4).prop_map(Op::Push),
            (1usize..6).prop_map(Op::Peek),
            (1usize..6).prop_map(Op::AckFirst),
            Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

        #[test]
        fn stays_fifo_and_bounded(ops in prop::collection::vec(op(), 1..30), max in 200u64..2000) {
            let tmp = tempfile::tempdir().unwrap();
            let mut q = open(tmp.path(), max);
            // The model: what must be in the queue, oldest first.
            let mut model: std::collections::VecDeque<Signal> = Default::default();
            let mut n = 0u64;
            for op in ops {
                match op {
                    Op::Push(pads) => {
                        let batch: Vec<Signal> = pads.iter().map(|&p| { n += 1; signal(n, p) }).collect();
                        q.push(&batch, None).unwrap();
                        for s in batch {
                            model.push_back(s);
                            while model.iter().map(size).sum::<u64>() > max {
                                model.pop_front();
                            }
                        }
                    }
                    Op::Peek(k) => {
                        let got: Vec<Signal> = q.peek(k).unwrap().into_iter().map(|b| b.signal).collect();
                        let want: Vec<Signal> = model.iter().take(k).cloned().collect();
                        prop_assert_eq!(got, want);
                    }
                    Op::AckFirst(k) => {
                        let keys: Vec<u64> = q.peek(k).unwrap().iter().map(|b| b.key).collect();
                        q.ack(&keys).unwrap();
                        for _ in 0..keys.len() { model.pop_front(); }
                    }
                    Op::Reopen => {
                        drop(q);
                        q = open(tmp.path(), max);
                    }
                }
                prop_assert!(q.bytes().unwrap() <= max);
                prop_assert_eq!(q.bytes().unwrap(), model.iter().map(size).sum::<u64>());
                prop_assert_eq!(q.depth().unwrap(), model.len() as u64);
            }
            let all: Vec<Signal> = q.peek(usize::MAX).unwrap().into_iter().map(|b| b.signal).collect();
            prop_assert_eq!(all, model.into_iter().collect::<Vec<_>>());
        }
    }
}
