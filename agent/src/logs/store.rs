//! The durable copy of raw-log batches waiting for the collector, and the tailer's
//! checkpoints.
//!
//! Entry type: [`LogStore`]. [`LogStore::commit`] makes a poll's output durable as one unit:
//! the raw-log batches are appended to a segment file and synced, then *one* redb
//! transaction (through [`Queue::push_with`]) writes the log signals (into the signal
//! queue), the checkpoint changes that produced them, and the sequence number after the last
//! batch (`log_meta.next_key`, the commit mark). After a `kill -9` the tailer resumes exactly
//! where the durable batches end. The log shipper reads with [`LogStore::next_request`] and
//! acknowledges with [`LogStore::ack`].
//!
//! Why not a redb table for the batches (as before): every batch was written into the B-tree
//! and deleted again after the collector's OK, about 4 CPU-s per GiB of logs, and deletes had
//! to be grouped to be affordable, so a `kill -9` could resend up to 16 delivered batches.
//! A disk buffer needs neither: it is a queue, so it is append-only segments plus a
//! read position.
//!
//! On disk, next to the state file (`<data-dir>/agent/agent.log-queue/`):
//! * `<first seq, 20 digits>.seg`: records `[seq: u64 LE][len: u32 LE][value: len bytes]`,
//!   value = `[count: u32 LE][ResourceLogs field bytes]`, written sequentially, synced
//!   (`fdatasync`) once per commit before its redb transaction, so a batch under the commit
//!   mark is on the disk even after a power loss. A segment is rotated past
//!   [`SEGMENT_BYTES`] and deleted whole once every batch in it is acknowledged. At open,
//!   records at or past the commit mark (written by a commit whose transaction never
//!   happened) and a torn tail are cut off.
//! * `acked`: the first sequence number not yet acknowledged (`[v: u64 LE][!v: u64 LE]`),
//!   overwritten in place with `pwrite` after every acknowledged request and **not** synced:
//!   a `kill -9` does not lose page-cache writes, so after one only the request on the wire
//!   is sent again. A power loss can lose recent `acked` writes (and segment deletions): the
//!   batches since the last one that reached the disk are sent again, never lost.
//!
//! Tables in the state file: `log_meta` (`next_key`), `log_checkpoint` (fingerprint key →
//! (offset, fingerprint length, seen unix secs)), `log_miner`. `log_queue` is the former
//! batch table: batches found there at open are moved to a segment once. The raw-log queue
//! is separate from the signal queue so a backlog of logs never delays a signal; its byte
//! bound is enforced by backpressure (the tailer stops reading; the files are the buffer)
//! rather than by dropping.

#![allow(clippy::result_large_err)]

use super::encode::EncodedBatch;
use super::tail::{CheckpointChanges, CheckpointEntry};
use crate::queue::{Queue, QueueError};
use daytwo_model::Signal;
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;
use tracing::warn;

/// The former batch table (migrated at open).
const LOG_QUEUE: TableDefinition<u64, &[u8]> = TableDefinition::new("log_queue");
const LOG_META: TableDefinition<&str, u64> = TableDefinition::new("log_meta");
const LOG_CHECKPOINTS: TableDefinition<u64, (u64, u64, u64)> =
    TableDefinition::new("log_checkpoint");
/// The template miner's saved state (JSON), under [`MINER_KEY`].
const LOG_MINER: TableDefinition<&str, &str> = TableDefinition::new("log_miner");
const MINER_KEY: &str = "state";
/// The commit mark: batches below it are durable.
const NEXT_KEY: &str = "next_key";
/// A segment takes no new commit once this large (so a delivered backlog frees its disk
/// space in steps of about this size).
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// Segment record header: seq (8) + value length (4).
const REC_HEAD: usize = 12;
const ACKED_FILE: &str = "acked";

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

/// One part of an export request: a batch still in memory, or bytes read from a segment.
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
    /// Whether it was read from the disk rather than taken from memory.
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
    /// The body buffer of the last request read from the disk, for the next one: a request
    /// (up to 3 MiB) is above the allocator's mmap threshold, and a fresh mapping per
    /// request cost the agent ~5% of its CPU in page faults.
    read_spare: Option<Vec<u8>>,
}

/// Spare buffers kept for reuse.
const MAX_SPARE: usize = 4;

/// Where a committed, unacknowledged batch lies.
#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u64,
    /// Its segment (the segment's first seq).
    segment: u64,
    /// Offset of its value in the segment.
    offset: u64,
    /// Value length (count + body).
    len: u32,
    records: u32,
}

/// The appending end: only one commit writes at a time, and batches reach the segment in
/// commit order.
#[derive(Debug)]
struct Writer {
    /// The segment being appended to (its first seq) and its file.
    segment: u64,
    file: File,
    /// End of the durable records in it.
    end: u64,
    /// The commit mark: the seq of the next batch.
    next: u64,
}

/// The reading end: what waits, in seq order.
#[derive(Debug)]
struct Index {
    entries: VecDeque<Entry>,
    /// Segments on disk, ascending; the last one is the writer's.
    segments: VecDeque<u64>,
    /// First seq not yet acknowledged.
    acked: u64,
    acked_file: File,
}

/// See the module docs.
#[derive(Debug)]
pub struct LogStore {
    queue: Arc<Queue>,
    dir: PathBuf,
    bytes: AtomicU64,
    depth: AtomicU64,
    notify: Notify,
    hot: Mutex<Hot>,
    hot_max_bytes: usize,
    writer: Mutex<Writer>,
    index: Mutex<Index>,
    /// A segment takes no new commit once this large.
    segment_bytes: u64,
    /// The oldest unacknowledged key when opened (the first to send).
    first_key: u64,
}

/// Batches of the former `log_queue` table: (key, value).
type OldBatches = Vec<(u64, Vec<u8>)>;

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.seg"))
}

fn io_failed(path: &Path, op: &'static str, e: std::io::Error) -> QueueError {
    QueueError::StorageFailed {
        path: path.to_path_buf(),
        op,
        source: Box::new(redb::Error::Io(e)),
    }
}

/// Reads the `acked` file: `None` when missing or torn.
fn read_acked(f: &File) -> Option<u64> {
    let mut b = [0u8; 16];
    f.read_exact_at(&mut b, 0).ok()?;
    let v = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let check = u64::from_le_bytes(b[8..].try_into().expect("8 bytes"));
    (check == !v).then_some(v)
}

fn write_acked(f: &File, v: u64) -> std::io::Result<()> {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&v.to_le_bytes());
    b[8..].copy_from_slice(&(!v).to_le_bytes());
    f.write_all_at(&b, 0)
}

/// Syncs a directory, so a file created in it survives a power loss.
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Scans one segment: its records with seq in `[from, below)` (earlier ones skipped), and
/// the end of its valid records (where a torn or uncommitted tail starts).
fn scan_segment(
    path: &Path,
    segment: u64,
    from: u64,
    below: u64,
    out: &mut VecDeque<Entry>,
) -> std::io::Result<(u64, bool)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let mut pos = 0u64;
    let mut head = [0u8; REC_HEAD + 4];
    let mut expect: Option<u64> = None;
    loop {
        if pos + REC_HEAD as u64 + 4 > len {
            return Ok((pos, pos == len));
        }
        f.read_exact_at(&mut head, pos)?;
        let seq = u64::from_le_bytes(head[..8].try_into().expect("8 bytes"));
        let vlen = u32::from_le_bytes(head[8..12].try_into().expect("4 bytes"));
        let records = u32::from_le_bytes(head[12..16].try_into().expect("4 bytes"));
        let in_order = seq == expect.unwrap_or(segment);
        if !in_order || seq >= below || vlen < 4 || pos + REC_HEAD as u64 + vlen as u64 > len {
            return Ok((pos, false));
        }
        if seq >= from {
            out.push_back(Entry {
                seq,
                segment,
                offset: pos + REC_HEAD as u64,
                len: vlen,
                records,
            });
        }
        expect = Some(seq + 1);
        pos += REC_HEAD as u64 + vlen as u64;
    }
}

impl LogStore {
    /// Creates the tables and the queue directory if needed, and recovers the queue: batches
    /// under the commit mark and not acknowledged wait again.
    pub fn open(queue: Arc<Queue>) -> Result<LogStore, QueueError> {
        let path = queue.path().to_path_buf();
        let dir = path.with_extension("log-queue");
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_failed(&dir, "creating the log queue directory", e))?;
        let init = || -> Result<(u64, OldBatches), redb::Error> {
            let w = queue.database()?.begin_write()?;
            let (next, old);
            {
                let q = w.open_table(LOG_QUEUE)?;
                let meta = w.open_table(LOG_META)?;
                w.open_table(LOG_CHECKPOINTS)?;
                w.open_table(LOG_MINER)?;
                next = meta.get(NEXT_KEY)?.map(|v| v.value()).unwrap_or(0);
                let mut o = Vec::new();
                for item in q.iter()? {
                    let (k, v) = item?;
                    o.push((k.value(), v.value().to_vec()));
                }
                old = o;
            }
            w.commit()?;
            Ok((next, old))
        };
        let (mut committed, old) =
            init().map_err(|e| failed(&queue, "creating the log tables", e))?;

        // Segments on disk, ascending.
        let mut segments: Vec<u64> = std::fs::read_dir(&dir)
            .map_err(|e| io_failed(&dir, "listing the log queue", e))?
            .filter_map(|d| {
                let name = d.ok()?.file_name();
                name.to_str()?.strip_suffix(".seg")?.parse::<u64>().ok()
            })
            .collect();
        segments.sort_unstable();
        let acked_path = dir.join(ACKED_FILE);
        let acked_file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&acked_path)
            .map_err(|e| io_failed(&acked_path, "opening the log queue's read position", e))?;

        // Batches of the former table: moved to a segment once, numbered from its first key
        // on (no segment exists yet then), and the table emptied.
        if !old.is_empty() && segments.is_empty() {
            let first = old[0].0;
            let p = segment_path(&dir, first);
            let mut buf = Vec::new();
            for (i, (_, v)) in old.iter().enumerate() {
                buf.extend_from_slice(&(first + i as u64).to_le_bytes());
                buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
                buf.extend_from_slice(v);
            }
            std::fs::write(&p, &buf)
                .and_then(|()| File::open(&p)?.sync_all())
                .and_then(|()| sync_dir(&dir))
                .map_err(|e| io_failed(&p, "migrating the log queue", e))?;
            segments.push(first);
            committed = first + old.len() as u64;
            let drain = || -> Result<(), redb::Error> {
                let w = queue.database()?.begin_write()?;
                {
                    let mut q = w.open_table(LOG_QUEUE)?;
                    q.retain(|_, _| false)?;
                    w.open_table(LOG_META)?.insert(NEXT_KEY, committed)?;
                }
                w.commit()?;
                Ok(())
            };
            drain().map_err(|e| failed(&queue, "migrating the log queue", e))?;
            write_acked(&acked_file, first)
                .map_err(|e| io_failed(&acked_path, "migrating the log queue", e))?;
        }
        let saved_acked = read_acked(&acked_file);

        // Scan: what waits, and where each segment's valid records end.
        let from = saved_acked.unwrap_or(0).min(committed);
        let mut entries = VecDeque::new();
        let mut kept: VecDeque<u64> = VecDeque::new();
        let mut end = 0u64;
        for seg in segments {
            let p = segment_path(&dir, seg);
            if seg > committed {
                // Started by a commit whose transaction never happened.
                let _ = std::fs::remove_file(&p);
                continue;
            }
            let (valid, clean) = scan_segment(&p, seg, from, committed, &mut entries)
                .map_err(|e| io_failed(&p, "reading the log queue", e))?;
            if !clean {
                // A tail past the commit mark (or torn by a crash before its sync): cut.
                let f = std::fs::OpenOptions::new()
                    .write(true)
                    .open(&p)
                    .map_err(|e| io_failed(&p, "repairing the log queue", e))?;
                f.set_len(valid)
                    .map_err(|e| io_failed(&p, "repairing the log queue", e))?;
            }
            kept.push_back(seg);
            end = valid;
        }
        if saved_acked.is_none() && committed > 0 && !entries.is_empty() {
            warn!(dir = %dir.display(), "The log queue's read position is missing or torn; sending every stored batch again.");
        }
        let acked = entries.front().map_or(committed, |e| e.seq);
        // Segments whose batches were all acknowledged (a deletion lost in a crash).
        while kept.len() >= 2 && kept[1] <= acked {
            let s = kept.pop_front().expect("two");
            let _ = std::fs::remove_file(segment_path(&dir, s));
        }
        let (segment, end) = match kept.back() {
            Some(s) => (*s, end),
            None => {
                kept.push_back(committed);
                (committed, 0)
            }
        };
        let p = segment_path(&dir, segment);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(&p)
            .map_err(|e| io_failed(&p, "opening the log queue", e))?;
        sync_dir(&dir).map_err(|e| io_failed(&dir, "opening the log queue", e))?;
        write_acked(&acked_file, acked)
            .map_err(|e| io_failed(&acked_path, "writing the log queue's read position", e))?;
        let bytes = entries.iter().map(|e| e.len as u64).sum();
        let depth = entries.len() as u64;
        Ok(LogStore {
            queue,
            dir,
            bytes: AtomicU64::new(bytes),
            depth: AtomicU64::new(depth),
            notify: Notify::new(),
            hot: Mutex::new(Hot::default()),
            hot_max_bytes: 4 << 20,
            writer: Mutex::new(Writer {
                segment,
                file,
                end,
                next: committed,
            }),
            index: Mutex::new(Index {
                entries,
                segments: kept,
                acked,
                acked_file,
            }),
            segment_bytes: SEGMENT_BYTES,
            first_key: acked,
        })
    }

    /// Starts a new segment once one holds `bytes` (default [`SEGMENT_BYTES`]; tests).
    pub fn with_segment_bytes(mut self, bytes: u64) -> Self {
        self.segment_bytes = bytes.max(1);
        self
    }

    /// The directory of the segment files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Keeps at most `bytes` of committed batches in memory for the shipper (default 4 MiB;
    /// 0: the shipper always reads the segments).
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

    /// Appends `batches` (seqs from `w.next`) at the end of the writer's segment, rotating
    /// first when it is full, and syncs them. Nothing moves in `w` but the segment: a failed
    /// commit writes the same bytes at the same place again.
    fn append(&self, w: &mut Writer, batches: &[EncodedBatch]) -> Result<Vec<Entry>, QueueError> {
        if w.end >= self.segment_bytes {
            // Nothing after the last committed batch stays behind (a failed commit's bytes).
            w.file.set_len(w.end).map_err(|e| {
                io_failed(
                    &segment_path(&self.dir, w.segment),
                    "closing a log queue segment",
                    e,
                )
            })?;
            let p = segment_path(&self.dir, w.next);
            let file = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(&p)
                .and_then(|f| sync_dir(&self.dir).map(|()| f))
                .map_err(|e| io_failed(&p, "starting a log queue segment", e))?;
            *w = Writer {
                segment: w.next,
                file,
                end: 0,
                next: w.next,
            };
            self.index
                .lock()
                .expect("log queue lock")
                .segments
                .push_back(w.segment);
        }
        let total: usize = batches.iter().map(|b| REC_HEAD + b.value().len()).sum();
        let mut buf = Vec::with_capacity(total.min(64 << 10));
        let mut entries = Vec::with_capacity(batches.len());
        let mut pos = w.end;
        let mut write_at = w.end;
        let p = || segment_path(&self.dir, w.segment);
        for (i, b) in batches.iter().enumerate() {
            let seq = w.next + i as u64;
            let v = b.value();
            buf.extend_from_slice(&seq.to_le_bytes());
            buf.extend_from_slice(&(v.len() as u32).to_le_bytes());
            entries.push(Entry {
                seq,
                segment: w.segment,
                offset: pos + REC_HEAD as u64,
                len: v.len() as u32,
                records: b.records,
            });
            pos += (REC_HEAD + v.len()) as u64;
            // Headers gather in `buf`; a large value goes out straight from its batch.
            if v.len() > 4096 {
                w.file
                    .write_all_at(&buf, write_at)
                    .and_then(|()| w.file.write_all_at(v, write_at + buf.len() as u64))
                    .map_err(|e| io_failed(&p(), "appending to the log queue", e))?;
                write_at = pos;
                buf.clear();
            } else {
                buf.extend_from_slice(v);
            }
        }
        if !buf.is_empty() {
            w.file
                .write_all_at(&buf, write_at)
                .map_err(|e| io_failed(&p(), "appending to the log queue", e))?;
        }
        w.file
            .sync_data()
            .map_err(|e| io_failed(&p(), "syncing the log queue", e))?;
        Ok(entries)
    }

    /// The one commit behind every commit: batches to their segment, then one transaction
    /// with the commit mark, the miner's state, checkpoint moves and a source's own `extra`
    /// writes.
    fn commit_full(
        &self,
        signals: &[Signal],
        batches: &[EncodedBatch],
        changes: &CheckpointChanges,
        miner: Option<&str>,
        extra: &mut dyn FnMut(&redb::WriteTransaction) -> Result<(), redb::Error>,
    ) -> Result<u64, QueueError> {
        let mut w = self.writer.lock().expect("log queue lock");
        let first = w.next;
        let entries = if batches.is_empty() {
            Vec::new()
        } else {
            self.append(&mut w, batches).inspect_err(|_| {
                // Best effort: the next commit writes here again anyway.
                let _ = w.file.set_len(w.end);
            })?
        };
        let next = first + batches.len() as u64;
        let mut also = |t: &redb::WriteTransaction| -> Result<(), redb::Error> {
            if !batches.is_empty() {
                t.open_table(LOG_META)?.insert(NEXT_KEY, next)?;
            }
            if let Some(m) = miner {
                t.open_table(LOG_MINER)?.insert(MINER_KEY, m)?;
            }
            if !changes.is_empty() {
                let mut cp = t.open_table(LOG_CHECKPOINTS)?;
                for k in &changes.delete {
                    cp.remove(*k)?;
                }
                for (k, e) in &changes.put {
                    cp.insert(*k, (e.offset, e.fp_len as u64, e.seen_secs))?;
                }
            }
            extra(t)
        };
        if let Err(e) = self.queue.push_with(signals, &mut also) {
            if !batches.is_empty() {
                let _ = w.file.set_len(w.end);
            }
            return Err(e);
        }
        if !batches.is_empty() {
            w.next = next;
            w.end = entries.last().map_or(w.end, |e| e.offset + e.len as u64);
            let added: u64 = entries.iter().map(|e| e.len as u64).sum();
            let mut ix = self.index.lock().expect("log queue lock");
            ix.entries.extend(entries);
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
                    // The shipper reads this one from its segment.
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
            match p {
                Part::Batch(b) => {
                    if hot.spare.len() < MAX_SPARE
                        && let Ok(b) = Arc::try_unwrap(b)
                    {
                        hot.spare.push(b.into_buf());
                    }
                }
                Part::Read(v) => {
                    if let Ok(v) = Arc::try_unwrap(v) {
                        hot.read_spare = Some(v);
                    }
                }
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
        // Which batches (the index is only locked to copy their places).
        let picked: Vec<Entry> = {
            let ix = self.index.lock().expect("log queue lock");
            let from = after.map_or(0, |k| k.saturating_add(1));
            let start = ix.entries.partition_point(|e| e.seq < from);
            let mut body = 0usize;
            let mut out = Vec::new();
            for e in ix.entries.range(start..) {
                let len = e.len as usize - 4;
                if !out.is_empty() && body + len > max_bytes {
                    break;
                }
                body += len;
                out.push(*e);
            }
            out
        };
        let mut out = Peeked::default();
        if picked.is_empty() {
            return Ok(out);
        }
        let total: usize = picked.iter().map(|e| e.len as usize - 4).sum();
        if let Some(spare) = self.hot.lock().expect("log store lock").read_spare.take() {
            out.body = spare;
            out.body.clear();
        }
        out.body.resize(total, 0);
        let mut at = 0usize;
        let mut file: Option<(u64, File)> = None;
        for e in &picked {
            if file.as_ref().is_none_or(|(s, _)| *s != e.segment) {
                let p = segment_path(&self.dir, e.segment);
                let f =
                    File::open(&p).map_err(|err| io_failed(&p, "reading the log queue", err))?;
                file = Some((e.segment, f));
            }
            let (_, f) = file.as_ref().expect("opened above");
            let len = e.len as usize - 4;
            f.read_exact_at(&mut out.body[at..at + len], e.offset + 4)
                .map_err(|err| {
                    io_failed(
                        &segment_path(&self.dir, e.segment),
                        "reading the log queue",
                        err,
                    )
                })?;
            at += len;
            out.keys.push(e.seq);
            out.records += e.records as u64;
        }
        Ok(out)
    }

    /// Acknowledges delivered batches: `keys` are the oldest waiting ones, in order (what the
    /// shipper sent). The read position moves past the last one (one `pwrite`, not synced:
    /// see the module docs) and segments with nothing left to send are deleted.
    pub fn ack(&self, keys: &[u64]) -> Result<(), QueueError> {
        let Some(&last) = keys.iter().max() else {
            return Ok(());
        };
        let mut ix = self.index.lock().expect("log queue lock");
        if last < ix.acked {
            return Ok(());
        }
        let acked = last + 1;
        let acked_path = self.dir.join(ACKED_FILE);
        write_acked(&ix.acked_file, acked)
            .map_err(|e| io_failed(&acked_path, "writing the log queue's read position", e))?;
        ix.acked = acked;
        let mut removed = 0u64;
        let mut freed = 0u64;
        while ix.entries.front().is_some_and(|e| e.seq < acked) {
            let e = ix.entries.pop_front().expect("front");
            removed += 1;
            freed += e.len as u64;
        }
        while ix.segments.len() >= 2 && ix.segments[1] <= acked {
            let s = ix.segments.pop_front().expect("two");
            let p = segment_path(&self.dir, s);
            if let Err(e) = std::fs::remove_file(&p)
                && e.kind() != std::io::ErrorKind::NotFound
            {
                // Sent again after a restart if it is still there; never lost.
                warn!(path = %p.display(), error = %e, "Cannot delete a delivered log queue segment.");
            }
        }
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| {
                Some(b.saturating_sub(freed))
            });
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

    fn open_at(path: &Path) -> LogStore {
        let q = Arc::new(Queue::open(path, 1 << 20, Metrics::unregistered().unwrap()).unwrap());
        LogStore::open(q).unwrap()
    }

    fn segments(s: &LogStore) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(s.dir())
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".seg"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn after_a_crash_only_unacknowledged_batches_wait_and_emptied_segments_go() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        let s = open_at(&path).with_segment_bytes(40);
        let mut keys = Vec::new();
        for i in 0..10u8 {
            let b = [EncodedBatch::from_body(1, &[b'a' + i; 10])];
            keys.push(s.commit(&[], &b, &CheckpointChanges::default()).unwrap());
        }
        assert_eq!(keys, (0..10).collect::<Vec<u64>>());
        // 26-byte records, a new segment once one holds 40 bytes: two per segment.
        assert_eq!(segments(&s).len(), 5);
        s.ack(&keys[..5]).unwrap();
        // Segments 0 and 2 hold only acknowledged batches; 4 holds 4 (acked) and 5 (not).
        assert_eq!(segments(&s).len(), 3);
        assert_eq!(s.depth(), 5);
        // kill -9: no shutdown path runs; the next process opens what is on the disk.
        drop(s);
        let s = open_at(&path);
        let r = s.next_request(None, 1 << 20).unwrap();
        assert!(r.from_disk);
        assert_eq!(r.keys, vec![5, 6, 7, 8, 9]);
        assert_eq!(
            body(&r),
            b"ffffffffffgggggggggghhhhhhhhhhiiiiiiiiiijjjjjjjjjj"
        );
        assert_eq!((s.depth(), s.bytes()), (5, 5 * 14));
        s.ack(&r.keys).unwrap();
        drop(s);
        let s = open_at(&path);
        assert!(s.next_request(None, 1 << 20).unwrap().is_empty());
        assert_eq!((s.depth(), s.bytes()), (0, 0));
        // Numbering goes on.
        let k = s
            .commit(
                &[],
                &[EncodedBatch::from_body(1, b"z")],
                &CheckpointChanges::default(),
            )
            .unwrap();
        assert_eq!(k, 10);
    }

    #[test]
    fn bytes_past_the_commit_mark_are_cut_and_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        let s = open_at(&path);
        s.commit(
            &[],
            &[EncodedBatch::from_body(1, b"one")],
            &CheckpointChanges::default(),
        )
        .unwrap();
        let seg = s.dir().join(&segments(&s)[0]);
        drop(s);
        // A crash after the segment write of batch 1 but before its transaction, then a
        // torn half record.
        let mut extra = Vec::new();
        extra.extend_from_slice(&1u64.to_le_bytes());
        extra.extend_from_slice(&7u32.to_le_bytes());
        extra.extend_from_slice(&[1, 0, 0, 0, b't', b'w', b'o']);
        extra.extend_from_slice(&2u64.to_le_bytes()[..5]);
        let mut f = std::fs::OpenOptions::new().append(true).open(&seg).unwrap();
        std::io::Write::write_all(&mut f, &extra).unwrap();
        drop(f);
        let s = open_at(&path);
        let r = s.next_request(None, 1 << 20).unwrap();
        assert_eq!((r.keys.clone(), body(&r)), (vec![0], b"one".to_vec()));
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), 12 + 7);
        let k = s
            .commit(
                &[],
                &[EncodedBatch::from_body(1, b"three")],
                &CheckpointChanges::default(),
            )
            .unwrap();
        assert_eq!(k, 1, "the uncommitted batch's number is used again");
        drop(s);
        let s = open_at(&path);
        let r = s.next_request(None, 1 << 20).unwrap();
        assert_eq!(body(&r), b"onethree");
    }

    #[test]
    fn a_torn_read_position_sends_everything_stored_again() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        let s = open_at(&path);
        let b = [
            EncodedBatch::from_body(1, b"x"),
            EncodedBatch::from_body(1, b"y"),
        ];
        s.commit(&[], &b, &CheckpointChanges::default()).unwrap();
        s.ack(&[0]).unwrap();
        let acked = s.dir().join(ACKED_FILE);
        drop(s);
        std::fs::write(&acked, [0xff; 16]).unwrap();
        let s = open_at(&path);
        assert_eq!(s.next_request(None, 1 << 20).unwrap().keys, vec![0, 1]);
    }

    #[test]
    fn batches_of_the_former_table_are_moved_to_a_segment() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("agent.redb");
        {
            let q = Queue::open(&path, 1 << 20, Metrics::unregistered().unwrap()).unwrap();
            let db = q.database().unwrap();
            let w = db.begin_write().unwrap();
            {
                let mut t = w.open_table(LOG_QUEUE).unwrap();
                for (k, v) in [(7u64, b"old7"), (8, b"old8")] {
                    let mut value = 1u32.to_le_bytes().to_vec();
                    value.extend_from_slice(v);
                    t.insert(k, value.as_slice()).unwrap();
                }
                w.open_table(LOG_META).unwrap().insert(NEXT_KEY, 9).unwrap();
            }
            w.commit().unwrap();
        }
        let s = open_at(&path);
        let r = s.next_request(None, 1 << 20).unwrap();
        assert_eq!(
            (r.keys.clone(), body(&r)),
            (vec![7, 8], b"old7old8".to_vec())
        );
        let k = s
            .commit(
                &[],
                &[EncodedBatch::from_body(1, b"new")],
                &CheckpointChanges::default(),
            )
            .unwrap();
        assert_eq!(k, 9);
        s.ack(&[7]).unwrap();
        drop(s);
        let s = open_at(&path);
        assert_eq!(body(&s.next_request(None, 1 << 20).unwrap()), b"old8new");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever the order of commits, acknowledgements and restarts, what waits after a
        /// restart is exactly what was committed and not acknowledged, in order.
        #[test]
        fn the_queue_is_committed_minus_acknowledged(
            ops in proptest::collection::vec((0u8..4, 1usize..4, 1usize..60), 1..40)
        ) {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join("agent.redb");
            let mut s = open_at(&path).with_segment_bytes(100);
            let mut model: VecDeque<(u64, Vec<u8>)> = VecDeque::new();
            let mut n = 0u64;
            for (op, count, size) in ops {
                match op {
                    0 | 1 => {
                        let batches: Vec<EncodedBatch> = (0..count)
                            .map(|i| EncodedBatch::from_body(1, &vec![b'a' + ((n as usize + i) % 26) as u8; size]))
                            .collect();
                        let first = s.commit(&[], &batches, &CheckpointChanges::default()).unwrap();
                        for (i, b) in batches.iter().enumerate() {
                            model.push_back((first + i as u64, b.body().to_vec()));
                        }
                        n += count as u64;
                    }
                    2 => {
                        let k: Vec<u64> = model.iter().take(count).map(|(k, _)| *k).collect();
                        s.ack(&k).unwrap();
                        model.drain(..k.len());
                    }
                    _ => {
                        drop(s);
                        s = open_at(&path).with_segment_bytes(100);
                    }
                }
                let p = s.peek(usize::MAX).unwrap();
                let want: Vec<u64> = model.iter().map(|(k, _)| *k).collect();
                proptest::prop_assert_eq!(&p.keys, &want);
                let body: Vec<u8> = model.iter().flat_map(|(_, b)| b.clone()).collect();
                proptest::prop_assert_eq!(p.body, body);
                proptest::prop_assert_eq!(s.depth(), model.len() as u64);
            }
        }
    }
}
