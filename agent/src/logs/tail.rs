//! The file tailer: finds files by glob, follows them by fingerprint across rotation, reads
//! complete lines, and hands joined records to a [`RecordSink`].
//!
//! Entry type: [`Tailer`]; the async shell calls [`Tailer::poll`] once per poll interval on
//! the blocking pool, then commits [`Tailer::take_checkpoint_changes`] together with what
//! the sink produced. Synchronous on purpose: plain `pread`s are the fastest way to read and
//! polling (not inotify) is what survives rotation, copytruncate and watch limits.
//!
//! Identity: a file is its [`Fingerprint`], a hash of its first [`FP_BYTES`] bytes (or of all
//! of it while shorter; the key is moved to the longer fingerprint as it grows), so a file
//! renamed by rotation keeps its offset and a new file at the old path starts at 0.
//! Checkpoints map fingerprint → offset of the first byte not yet handed to the sink
//! *completely* (a CRI partial or a multi-line record still held keeps the offset at its
//! start), so a crash re-reads what was held and nothing else.
//!
//! Rotation: a file whose path no longer leads to it (renamed away or deleted) is read to
//! its end and released once it has not grown for `rotate_wait`; a file that shrank below
//! its offset or whose first bytes changed (copytruncate) restarts at 0; a copy with the
//! fingerprint of a file still being read is not read twice (it waits, and takes over from
//! the checkpoint once the original was truncated or released).
//!
//! Not done here: parsing beyond framing (see [`super::parse`]), redaction, mining.

use super::multiline::{Multiline, Record};
use super::origin::Origin;
use super::parse::{Format, Joined, PartialJoiner, Stream, parse_line};
use globset::{GlobBuilder, GlobMatcher};
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use tracing::{debug, info, warn};

/// Bytes hashed into a fingerprint.
pub const FP_BYTES: usize = 256;
const CHUNK: usize = 256 * 1024;

/// Where one source's files are and how they are framed.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSpec {
    /// A glob (`*`, `?`, `[…]`, `{a,b}`, `**`), e.g. `/var/log/pods/*/*/*.log`.
    pub glob: String,
    /// `auto` (default), `cri`, `docker` or `plain`.
    #[serde(default = "auto")]
    pub format: Format,
}

fn auto() -> Format {
    Format::Auto
}

/// Tailer knobs (built by the agent from `LogsConfig`).
#[derive(Clone, Debug)]
pub struct TailConfig {
    pub sources: Vec<SourceSpec>,
    pub max_line_bytes: usize,
    pub multiline: bool,
    pub multiline_timeout_ms: u64,
    pub rotate_wait_ms: u64,
    /// Bytes read per poll across all files (bounds one commit).
    pub read_budget_bytes: usize,
    /// Unowned checkpoints (files gone while we were down, truncated files' old content)
    /// are forgotten after this long.
    pub checkpoint_ttl_secs: u64,
}

/// The identity of a file's content. `key` includes the number of bytes hashed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub key: u64,
    pub len: u32,
}

impl Fingerprint {
    pub fn of(prefix: &[u8]) -> Fingerprint {
        let mut h =
            0xcbf2_9ce4_8422_2325u64 ^ (prefix.len() as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        for &b in prefix {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Keep 0 free as "none".
        Fingerprint {
            key: h.max(1),
            len: prefix.len() as u32,
        }
    }
}

/// A stored checkpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CheckpointEntry {
    pub offset: u64,
    pub fp_len: u32,
    /// Unix seconds of the last update (for forgetting unowned entries).
    pub seen_secs: u64,
}

/// Checkpoint writes to commit: upserts and deletions by fingerprint key.
#[derive(Debug, Default)]
pub struct CheckpointChanges {
    pub put: Vec<(u64, CheckpointEntry)>,
    pub delete: Vec<u64>,
}

impl CheckpointChanges {
    pub fn is_empty(&self) -> bool {
        self.put.is_empty() && self.delete.is_empty()
    }
}

/// What a file is, for the sink.
#[derive(Debug)]
pub struct FileInfo {
    pub origin: Origin,
    /// Unique for the life of the tailer (one per opened file).
    pub id: u64,
}

/// Receives records; implemented by the pipeline (and by tests).
pub trait RecordSink {
    fn record(&mut self, file: &Arc<FileInfo>, stream: Stream, rec: &Record, observed_ns: i64);
    /// The file is finished and closed.
    fn released(&mut self, _file: &Arc<FileInfo>) {}
}

/// Counters since the tailer was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TailStats {
    pub bytes_read: u64,
    pub lines_read: u64,
    pub lines_truncated: u64,
    /// Lines that did not fit their file's format (passed on as plain).
    pub lines_unparsed: u64,
    pub files_opened: u64,
    pub files_released: u64,
    pub rotations_rename: u64,
    pub rotations_truncate: u64,
    pub open_errors: u64,
    pub read_errors: u64,
    pub files_open: u64,
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum State {
    /// No fingerprint yet (empty file, or just truncated).
    New,
    /// A copy of a file still being read: not read until the original lets go.
    Twin,
    Active,
}

struct Tracked {
    /// (device, inode).
    key: (u64, u64),
    info: Arc<FileInfo>,
    path: PathBuf,
    file: File,
    format: Format,
    fp: Option<Fingerprint>,
    state: State,
    /// Bytes handed to the joiners (complete lines).
    read_offset: u64,
    /// An incomplete last line already read.
    carry: Vec<u8>,
    /// Skipping the rest of an over-long line.
    discarding: bool,
    last_size: u64,
    orphan: bool,
    idle_since_ms: Option<u64>,
    partial: PartialJoiner,
    multiline: [Multiline; 3],
    /// The committed offset last written to `checkpoints`.
    committed: u64,
}

impl Tracked {
    fn pos(&self) -> u64 {
        self.read_offset + self.carry.len() as u64
    }

    fn committed_offset(&self) -> u64 {
        let mut o = self.read_offset;
        if let Some(p) = self.partial.held_offset() {
            o = o.min(p);
        }
        for m in &self.multiline {
            if let Some(h) = m.held_offset() {
                o = o.min(h);
            }
        }
        o
    }
}

struct Glob {
    spec: SourceSpec,
    root: PathBuf,
    matcher: GlobMatcher,
    /// Components below `root` (None with `**`: any depth up to 16).
    depth: Option<usize>,
}

/// A glob that does not compile.
#[derive(Debug, thiserror::Error)]
#[error("log path glob {glob:?} is invalid: {source}")]
pub struct GlobInvalid {
    pub glob: String,
    #[source]
    pub source: globset::Error,
}

/// See the module docs.
pub struct Tailer {
    cfg: TailConfig,
    globs: Vec<Glob>,
    files: HashMap<(u64, u64), Tracked>,
    owners: HashMap<u64, (u64, u64)>,
    checkpoints: HashMap<u64, CheckpointEntry>,
    changes: CheckpointChanges,
    buf: Vec<u8>,
    warned: HashSet<PathBuf>,
    next_id: u64,
    pub stats: TailStats,
}

impl std::fmt::Debug for Tailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tailer")
            .field("files", &self.files.len())
            .field("checkpoints", &self.checkpoints.len())
            .finish()
    }
}

fn has_meta(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

impl Tailer {
    /// A tailer resuming from `checkpoints` (as stored).
    pub fn new(
        cfg: TailConfig,
        checkpoints: HashMap<u64, CheckpointEntry>,
    ) -> Result<Tailer, GlobInvalid> {
        let mut globs = Vec::new();
        for spec in &cfg.sources {
            let matcher = GlobBuilder::new(&spec.glob)
                .literal_separator(true)
                .build()
                .map_err(|source| GlobInvalid {
                    glob: spec.glob.clone(),
                    source,
                })?
                .compile_matcher();
            let path = Path::new(&spec.glob);
            let mut root = PathBuf::new();
            let mut rest = 0;
            let mut any_depth = false;
            let mut in_root = true;
            for c in path.components() {
                let s = c.as_os_str().to_string_lossy();
                if in_root && !has_meta(&s) {
                    root.push(c);
                } else {
                    in_root = false;
                    rest += 1;
                    any_depth |= s.contains("**");
                }
            }
            if rest == 0 {
                // A literal path: its directory is the root.
                root.pop();
                rest = 1;
            }
            if root.as_os_str().is_empty() {
                root.push(Component::CurDir);
            }
            globs.push(Glob {
                spec: spec.clone(),
                root,
                matcher,
                depth: (!any_depth).then_some(rest),
            });
        }
        Ok(Tailer {
            buf: Vec::with_capacity(CHUNK + cfg.max_line_bytes),
            cfg,
            globs,
            files: HashMap::new(),
            owners: HashMap::new(),
            checkpoints,
            changes: CheckpointChanges::default(),
            warned: HashSet::new(),
            next_id: 0,
            stats: TailStats::default(),
        })
    }

    /// The checkpoint writes since the last call (commit them with the records).
    pub fn take_checkpoint_changes(&mut self) -> CheckpointChanges {
        std::mem::take(&mut self.changes)
    }

    /// Files currently open.
    pub fn open_files(&self) -> usize {
        self.files.len()
    }

    /// True when every active file has been read to its end (as of the last poll).
    pub fn caught_up(&self) -> bool {
        self.files
            .values()
            .all(|t| t.state != State::Active || t.pos() >= t.last_size)
    }

    /// Hands on every record held for multi-line joining, whatever its age: the end of input
    /// for a run that reads its files once (`daytwo agent --log-bench`). The live agent never
    /// calls this: a held record waits for its timeout, and its offset stays uncommitted.
    pub fn flush_held(&mut self, now_ns: i64, sink: &mut dyn RecordSink) {
        for t in self.files.values_mut() {
            for i in 0..3 {
                if let Some(rec) = t.multiline[i].flush() {
                    sink.record(&t.info, stream_of(i), rec, now_ns);
                }
            }
        }
    }

    fn set_checkpoint(&mut self, key: u64, entry: CheckpointEntry) {
        if self.checkpoints.get(&key) != Some(&entry) {
            self.checkpoints.insert(key, entry);
            self.changes.delete.retain(|k| *k != key);
            self.changes.put.retain(|(k, _)| *k != key);
            self.changes.put.push((key, entry));
        }
    }

    fn delete_checkpoint(&mut self, key: u64) {
        if self.checkpoints.remove(&key).is_some() {
            self.changes.put.retain(|(k, _)| *k != key);
            self.changes.delete.push(key);
        }
    }

    /// One poll: discover, detect rotation, read up to the budget (when `read`), flush
    /// timed-out multi-line records, release finished files.
    pub fn poll(&mut self, now_ms: u64, now_unix_ns: i64, read: bool, sink: &mut dyn RecordSink) {
        let seen = self.discover();
        let now_secs = (now_unix_ns / 1_000_000_000).max(0) as u64;
        let mut keys: Vec<(u64, u64)> = self.files.keys().copied().collect();
        keys.sort_unstable();
        for key in &keys {
            if !seen.contains(key)
                && let Some(t) = self.files.get_mut(key)
                && !t.orphan
            {
                t.orphan = true;
                self.stats.rotations_rename += 1;
                debug!(path = %t.path.display(), "Log file was renamed or deleted; reading it to its end.");
            }
        }
        let mut budget = if read { self.cfg.read_budget_bytes } else { 0 };
        for key in keys {
            let Some(mut t) = self.files.remove(&key) else {
                continue;
            };
            let keep = self.step(&mut t, now_ms, now_unix_ns, now_secs, &mut budget, sink);
            if keep {
                self.files.insert(key, t);
            } else {
                self.release(t, now_ms, now_unix_ns, sink);
            }
        }
        // Forget unowned checkpoints that nobody came back for.
        let ttl = self.cfg.checkpoint_ttl_secs;
        let stale: Vec<u64> = self
            .checkpoints
            .iter()
            .filter(|(k, e)| {
                !self.owners.contains_key(k) && now_secs.saturating_sub(e.seen_secs) > ttl
            })
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.delete_checkpoint(k);
        }
        self.stats.files_open = self.files.len() as u64;
    }

    /// Expands every glob; opens files not tracked yet. Returns the keys seen.
    fn discover(&mut self) -> HashSet<(u64, u64)> {
        let mut seen = HashSet::new();
        let mut found: Vec<(PathBuf, Format)> = Vec::new();
        for g in &self.globs {
            let mut stack = vec![(g.root.clone(), 0usize)];
            if g.depth == Some(1) && !has_meta(&g.spec.glob) {
                found.push((PathBuf::from(&g.spec.glob), g.spec.format));
                continue;
            }
            while let Some((dir, depth)) = stack.pop() {
                let Ok(rd) = std::fs::read_dir(&dir) else {
                    continue;
                };
                for entry in rd.flatten() {
                    let p = entry.path();
                    let is_dir = entry
                        .file_type()
                        .map(|ft| ft.is_dir() || (ft.is_symlink() && p.is_dir()))
                        .unwrap_or(false);
                    let d = depth + 1;
                    if is_dir {
                        if g.depth.is_none_or(|max| d < max) && d < 16 {
                            stack.push((p, d));
                        }
                    } else if g.depth.is_none_or(|max| d == max) && g.matcher.is_match(&p) {
                        found.push((p, g.spec.format));
                    }
                }
            }
        }
        for (path, format) in found {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            if !meta.is_file() {
                continue;
            }
            let key = (meta.dev(), meta.ino());
            if !seen.insert(key) {
                continue;
            }
            if let Some(t) = self.files.get_mut(&key) {
                if t.path != path {
                    debug!(from = %t.path.display(), to = %path.display(), "Log file renamed.");
                    t.path = path;
                    t.orphan = false;
                }
                continue;
            }
            match File::open(&path) {
                Ok(file) => {
                    self.warned.remove(&path);
                    self.stats.files_opened += 1;
                    self.next_id += 1;
                    let info = Arc::new(FileInfo {
                        origin: Origin::from_path(&path),
                        id: self.next_id,
                    });
                    let ml = || {
                        Multiline::new(
                            self.cfg.multiline,
                            self.cfg.multiline_timeout_ms,
                            self.cfg.max_line_bytes,
                        )
                    };
                    self.files.insert(
                        key,
                        Tracked {
                            key,
                            info,
                            path,
                            file,
                            format,
                            fp: None,
                            state: State::New,
                            read_offset: 0,
                            carry: Vec::new(),
                            discarding: false,
                            last_size: 0,
                            orphan: false,
                            idle_since_ms: None,
                            partial: PartialJoiner::new(),
                            multiline: [ml(), ml(), ml()],
                            committed: 0,
                        },
                    );
                }
                Err(e) => {
                    seen.remove(&key);
                    if self.warned.insert(path.clone()) {
                        self.stats.open_errors += 1;
                        warn!(path = %path.display(), error = %e, "Cannot open a log file; skipping it until it can be read.");
                    }
                }
            }
        }
        seen
    }

    /// Reads the first `len` bytes of `t`.
    fn prefix(file: &File, len: usize) -> Option<Vec<u8>> {
        let mut b = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match file.read_at(&mut b[got..], got as u64) {
                Ok(0) => return None,
                Ok(n) => got += n,
                Err(_) => return None,
            }
        }
        Some(b)
    }

    /// The stored offset for a file whose first bytes give `fp`, also trying unowned
    /// shorter fingerprints of the same file (it grew while we were not looking).
    fn lookup(&mut self, file: &File, fp: Fingerprint) -> u64 {
        if let Some(e) = self.checkpoints.get(&fp.key) {
            return e.offset;
        }
        let mut lens: Vec<u32> = self
            .checkpoints
            .iter()
            .filter(|(k, e)| e.fp_len < fp.len && !self.owners.contains_key(k))
            .map(|(_, e)| e.fp_len)
            .collect();
        lens.sort_unstable();
        lens.dedup();
        for len in lens.into_iter().rev() {
            let Some(p) = Self::prefix(file, len as usize) else {
                continue;
            };
            let short = Fingerprint::of(&p);
            if let Some(e) = self.checkpoints.get(&short.key).copied()
                && e.fp_len == len
            {
                self.delete_checkpoint(short.key);
                return e.offset;
            }
        }
        0
    }

    /// Advances one file; false when it is finished and should be released.
    fn step(
        &mut self,
        t: &mut Tracked,
        now_ms: u64,
        now_ns: i64,
        now_secs: u64,
        budget: &mut usize,
        sink: &mut dyn RecordSink,
    ) -> bool {
        let size = match t.file.metadata() {
            Ok(m) => m.len(),
            Err(e) => {
                self.stats.read_errors += 1;
                warn!(path = %t.path.display(), error = %e, "Cannot stat an open log file; releasing it.");
                return false;
            }
        };
        // Truncation or rewrite (copytruncate): smaller than what we read, or other first bytes.
        if t.state == State::Active {
            let mut truncated = size < t.pos();
            if !truncated
                && size != t.last_size
                && let Some(fp) = t.fp
            {
                truncated = Self::prefix(&t.file, fp.len as usize)
                    .is_none_or(|p| Fingerprint::of(&p) != fp);
            }
            if truncated {
                self.stats.rotations_truncate += 1;
                info!(path = %t.path.display(), size, offset = t.pos(), "Log file was truncated; reading it from the start.");
                // Held records are complete lines: hand them on. An incomplete last line is
                // not: a copy of the old content (copytruncate) reads it whole.
                self.finish_records(t, false, now_ns, sink);
                if let Some(fp) = t.fp.take() {
                    if self.owners.get(&fp.key) == Some(&self.key_of(t)) {
                        self.owners.remove(&fp.key);
                    }
                    // The old content's checkpoint stays, at everything handed on, for a
                    // copy to take over.
                    self.set_checkpoint(
                        fp.key,
                        CheckpointEntry {
                            offset: t.read_offset,
                            fp_len: fp.len,
                            seen_secs: now_secs,
                        },
                    );
                }
                t.state = State::New;
                t.read_offset = 0;
                t.carry.clear();
                t.discarding = false;
                t.committed = 0;
            }
        }
        if matches!(t.state, State::New | State::Twin) && size > 0 {
            let len = (size as usize).min(FP_BYTES);
            if let Some(p) = Self::prefix(&t.file, len) {
                let fp = Fingerprint::of(&p);
                let me = self.key_of(t);
                match self.owners.get(&fp.key) {
                    Some(o) if *o != me && self.files.contains_key(o) => {
                        t.state = State::Twin;
                    }
                    _ => {
                        self.owners.insert(fp.key, me);
                        let offset = self.lookup(&t.file, fp);
                        t.fp = Some(fp);
                        t.state = State::Active;
                        t.read_offset = offset;
                        t.committed = offset;
                        if offset > 0 {
                            debug!(path = %t.path.display(), offset, "Resuming a log file from its checkpoint.");
                        }
                        self.set_checkpoint(
                            fp.key,
                            CheckpointEntry {
                                offset,
                                fp_len: fp.len,
                                seen_secs: now_secs,
                            },
                        );
                    }
                }
            }
        }
        // A short fingerprint grows with the file.
        if t.state == State::Active
            && let Some(fp) = t.fp
            && (fp.len as usize) < FP_BYTES
            && size > fp.len as u64
        {
            let len = (size as usize).min(FP_BYTES);
            if let Some(p) = Self::prefix(&t.file, len) {
                let new = Fingerprint::of(&p);
                if self.owners.get(&fp.key) == Some(&self.key_of(t)) {
                    self.owners.remove(&fp.key);
                }
                self.delete_checkpoint(fp.key);
                self.owners.insert(new.key, self.key_of(t));
                t.fp = Some(new);
                t.committed = u64::MAX; // force a write below
            }
        }
        if t.state == State::Active && *budget > 0 && size > t.pos() {
            self.read(t, size, now_ms, now_ns, budget, sink);
        }
        t.last_size = size;
        // A held multi-line record waits for its timeout only once the file is read to its
        // end: while reading is paused (the raw-log queue is full, or this poll's budget ran
        // out) its next lines may be the rest of it, unread, and must not be cut off.
        if size <= t.pos() {
            for i in 0..3 {
                if let Some(rec) = t.multiline[i].flush_due(now_ms) {
                    sink.record(&t.info, stream_of(i), rec, now_ns);
                }
            }
        }
        if let Some(fp) = t.fp
            && t.state == State::Active
        {
            let c = t.committed_offset();
            if c != t.committed {
                t.committed = c;
                self.set_checkpoint(
                    fp.key,
                    CheckpointEntry {
                        offset: c,
                        fp_len: fp.len,
                        seen_secs: now_secs,
                    },
                );
            }
        }
        if t.orphan {
            let at_end = t.state != State::Active || t.pos() >= size;
            if !at_end {
                t.idle_since_ms = None;
            } else {
                let since = *t.idle_since_ms.get_or_insert(now_ms);
                if now_ms.saturating_sub(since) >= self.cfg.rotate_wait_ms {
                    return false;
                }
            }
        }
        true
    }

    fn key_of(&self, t: &Tracked) -> (u64, u64) {
        t.key
    }

    /// Hands every held record on (the file is finished or its content was replaced).
    fn finish_records(
        &mut self,
        t: &mut Tracked,
        with_carry: bool,
        now_ns: i64,
        sink: &mut dyn RecordSink,
    ) {
        if with_carry && !t.carry.is_empty() && !t.discarding {
            let carry = std::mem::take(&mut t.carry);
            let off = t.read_offset;
            t.read_offset += carry.len() as u64;
            self.line(t, &carry, off, false, 0, now_ns, sink);
        }
        t.carry.clear();
        for (stream, time, msg, truncated, offset) in t.partial.drain() {
            let i = stream_index(stream);
            if let Some(rec) = t.multiline[i].push(time, &msg, truncated, offset, 0) {
                sink.record(&t.info, stream, rec, now_ns);
            }
        }
        for i in 0..3 {
            if let Some(rec) = t.multiline[i].flush() {
                sink.record(&t.info, stream_of(i), rec, now_ns);
            }
        }
    }

    fn release(&mut self, mut t: Tracked, now_ms: u64, now_ns: i64, sink: &mut dyn RecordSink) {
        let _ = now_ms;
        self.finish_records(&mut t, true, now_ns, sink);
        let me = self.key_of(&t);
        if let Some(fp) = t.fp
            && self.owners.get(&fp.key) == Some(&me)
        {
            self.owners.remove(&fp.key);
            // A waiting copy takes over from this checkpoint (or the TTL forgets it).
            let twin = self.files.values().any(|o| o.state == State::Twin);
            if !twin {
                self.delete_checkpoint(fp.key);
            }
        }
        self.stats.files_released += 1;
        debug!(path = %t.path.display(), "Finished a rotated or deleted log file.");
        sink.released(&t.info);
    }

    /// Reads from `t.pos()` towards `size` (or further, if it grew), line by line.
    fn read(
        &mut self,
        t: &mut Tracked,
        size: u64,
        now_ms: u64,
        now_ns: i64,
        budget: &mut usize,
        sink: &mut dyn RecordSink,
    ) {
        let max = self.cfg.max_line_bytes.max(1);
        let mut buf = std::mem::take(&mut self.buf);
        let mut size = size;
        while *budget > 0 {
            let pos = t.pos();
            if pos >= size {
                // Catch appends made while we read, without another fstat per chunk.
                match t.file.metadata() {
                    Ok(m) if m.len() > pos => size = m.len(),
                    _ => break,
                }
            }
            buf.clear();
            buf.extend_from_slice(&t.carry);
            t.carry.clear();
            let have = buf.len();
            let want = CHUNK.min(*budget).min((size - pos) as usize).max(1);
            buf.resize(have + want, 0);
            let n = match t.file.read_at(&mut buf[have..], pos) {
                Ok(n) => n,
                Err(e) => {
                    self.stats.read_errors += 1;
                    warn!(path = %t.path.display(), error = %e, "Reading a log file failed; will retry.");
                    buf.truncate(have);
                    t.carry.extend_from_slice(&buf);
                    break;
                }
            };
            buf.truncate(have + n);
            if n == 0 {
                t.carry.extend_from_slice(&buf);
                break;
            }
            self.stats.bytes_read += n as u64;
            *budget = budget.saturating_sub(n);
            let mut start = 0;
            while let Some(i) = memchr::memchr(b'\n', &buf[start..]) {
                let end = start + i;
                let line = &buf[start..end];
                let off = t.read_offset;
                t.read_offset += (end - start + 1) as u64;
                start = end + 1;
                if t.discarding {
                    t.discarding = false;
                    continue;
                }
                if line.len() > max {
                    self.stats.lines_truncated += 1;
                    self.line(t, &line[..max], off, true, now_ms, now_ns, sink);
                } else {
                    self.line(t, line, off, false, now_ms, now_ns, sink);
                }
            }
            let tail = &buf[start..];
            if t.discarding {
                t.read_offset += tail.len() as u64;
            } else if tail.len() >= max {
                self.stats.lines_truncated += 1;
                let off = t.read_offset;
                t.read_offset += tail.len() as u64;
                t.discarding = true;
                let cut = tail[..max].to_vec();
                self.line(t, &cut, off, true, now_ms, now_ns, sink);
            } else {
                t.carry.extend_from_slice(tail);
            }
        }
        self.buf = buf;
    }

    /// One complete line at file offset `off`.
    #[allow(clippy::too_many_arguments)]
    fn line(
        &mut self,
        t: &mut Tracked,
        line: &[u8],
        off: u64,
        truncated: bool,
        now_ms: u64,
        now_ns: i64,
        sink: &mut dyn RecordSink,
    ) {
        self.stats.lines_read += 1;
        if t.format == Format::Auto {
            t.format = Format::detect(line);
        }
        let (parsed, ok) = parse_line(t.format, line);
        if !ok {
            self.stats.lines_unparsed += 1;
        }
        let stream = parsed.stream;
        let max = self.cfg.max_line_bytes;
        if let Joined::Done {
            time,
            message,
            truncated: cut,
            offset,
        } = t.partial.push(parsed, off, max)
        {
            let i = stream_index(stream);
            if let Some(rec) = t.multiline[i].push(time, &message, truncated || cut, offset, now_ms)
            {
                sink.record(&t.info, stream, rec, now_ns);
            }
        }
    }
}

fn stream_index(s: Stream) -> usize {
    match s {
        Stream::Stdout => 0,
        Stream::Stderr => 1,
        Stream::None => 2,
    }
}

fn stream_of(i: usize) -> Stream {
    match i {
        0 => Stream::Stdout,
        1 => Stream::Stderr,
        _ => Stream::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[derive(Default)]
    struct Collect {
        lines: Vec<(String, String)>,
        released: usize,
    }

    impl RecordSink for Collect {
        fn record(&mut self, f: &Arc<FileInfo>, _s: Stream, rec: &Record, _o: i64) {
            let name = Path::new(&f.origin.path)
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned();
            self.lines
                .push((name, String::from_utf8_lossy(&rec.text).into_owned()));
        }
        fn released(&mut self, _f: &Arc<FileInfo>) {
            self.released += 1;
        }
    }

    fn cfg(glob: String) -> TailConfig {
        TailConfig {
            sources: vec![SourceSpec {
                glob,
                format: Format::Auto,
            }],
            max_line_bytes: 64,
            multiline: false,
            multiline_timeout_ms: 100,
            rotate_wait_ms: 0,
            read_budget_bytes: 1 << 20,
            checkpoint_ttl_secs: 3600,
        }
    }

    fn append(p: &Path, s: &str) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap();
        f.write_all(s.as_bytes()).unwrap();
    }

    fn texts(c: &Collect) -> Vec<&str> {
        c.lines.iter().map(|(_, l)| l.as_str()).collect()
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range
            .map(|i| format!("line number {i:04} of the test file\n"))
            .collect()
    }

    fn apply(store: &mut HashMap<u64, CheckpointEntry>, ch: CheckpointChanges) {
        for k in ch.delete {
            store.remove(&k);
        }
        for (k, e) in ch.put {
            store.insert(k, e);
        }
    }

    /// A tailer of `*.log` in a new directory, joining multi-line records, and its sink.
    fn multiline_tailer() -> (tempfile::TempDir, Tailer, Collect) {
        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(format!("{}/*.log", tmp.path().display()));
        c.multiline = true;
        c.max_line_bytes = 1024;
        let t = Tailer::new(c, HashMap::new()).unwrap();
        (tmp, t, Collect::default())
    }

    #[test]
    fn a_stack_trace_is_not_cut_while_reading_is_paused() {
        let (tmp, mut t, mut got) = multiline_tailer();
        let log = tmp.path().join("app.log");
        append(&log, "java.lang.IllegalStateException: boom\n");
        t.poll(0, 0, true, &mut got);
        // The rest of the trace is written while the queue is full: nothing is read.
        append(
            &log,
            "\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)\nnext line\n",
        );
        t.poll(5_000, 0, false, &mut got);
        assert!(got.lines.is_empty(), "cut while paused: {:?}", texts(&got));
        // Reading resumes: one record, whole.
        t.poll(5_001, 0, true, &mut got);
        t.poll(10_000, 0, true, &mut got);
        assert_eq!(
            texts(&got),
            [
                "java.lang.IllegalStateException: boom\n\tat a.B.c(B.java:1)\n\tat a.B.d(B.java:2)",
                "next line"
            ]
        );
    }

    #[test]
    fn flush_held_finishes_what_multiline_joining_holds() {
        let (tmp, mut t, mut got) = multiline_tailer();
        let log = tmp.path().join("app.log");
        append(
            &log,
            "first\nTraceback (most recent call last):\n  File \"x.py\", line 1\n",
        );
        t.poll(0, 0, true, &mut got);
        assert!(t.caught_up());
        assert_eq!(texts(&got), ["first"], "the trace is held for its timeout");
        t.flush_held(0, &mut got);
        assert_eq!(
            texts(&got),
            [
                "first",
                "Traceback (most recent call last):\n  File \"x.py\", line 1"
            ]
        );
        // Nothing is held any more: a second flush and a late poll add nothing.
        t.flush_held(0, &mut got);
        t.poll(60_000, 0, true, &mut got);
        assert_eq!(got.lines.len(), 2);
    }

    #[test]
    fn reads_lines_follows_rename_and_resumes_from_checkpoints() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("app.log");
        append(&log, &lines(0..10));
        append(&log, "partial");
        let mut store = HashMap::new();
        let mut t = Tailer::new(
            cfg(format!("{}/*.log", tmp.path().display())),
            store.clone(),
        )
        .unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        assert_eq!(c.lines.len(), 10);
        append(&log, " line\n");
        t.poll(1, 0, true, &mut c);
        assert_eq!(texts(&c)[10], "partial line");
        apply(&mut store, t.take_checkpoint_changes());
        // Rotate by rename, write to the new file and a bit more to the old one.
        std::fs::rename(&log, tmp.path().join("app.log.1")).unwrap();
        append(&tmp.path().join("app.log.1"), "late line\n");
        append(&log, &lines(100..103));
        t.poll(2, 0, true, &mut c);
        t.poll(3, 0, true, &mut c);
        let got = texts(&c);
        assert_eq!(got.len(), 15, "{got:?}");
        assert!(got.contains(&"late line"));
        assert_eq!(c.released, 1);
        assert_eq!(t.open_files(), 1);
        apply(&mut store, t.take_checkpoint_changes());
        assert_eq!(store.len(), 1, "the released file's checkpoint is gone");
        // A restart resumes at the checkpoint: nothing is read twice.
        drop(t);
        append(&log, &lines(103..105));
        let mut t = Tailer::new(
            cfg(format!("{}/*.log", tmp.path().display())),
            store.clone(),
        )
        .unwrap();
        let mut c2 = Collect::default();
        t.poll(0, 0, true, &mut c2);
        assert_eq!(
            texts(&c2),
            [
                "line number 0103 of the test file",
                "line number 0104 of the test file"
            ]
        );
    }

    #[test]
    fn copytruncate_reads_the_tail_from_the_copy_once() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("app.log");
        append(&log, &lines(0..20));
        let mut t = Tailer::new(
            cfg(format!("{}/app.log*", tmp.path().display())),
            HashMap::new(),
        )
        .unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        assert_eq!(c.lines.len(), 20);
        // Lines written after our last read, then copy + truncate, then new lines.
        append(&log, &lines(20..25));
        std::fs::copy(&log, tmp.path().join("app.log.1")).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&log, &lines(25..60)); // longer than before: size alone cannot tell
        for i in 1..5 {
            t.poll(i, 0, true, &mut c);
        }
        let mut got: Vec<&str> = texts(&c);
        got.sort();
        let want_all = lines(0..60);
        let mut want: Vec<&str> = want_all.lines().collect();
        want.sort();
        assert_eq!(got, want);
        assert_eq!(t.stats.rotations_truncate, 1);
    }

    #[test]
    fn long_lines_are_cut_and_counted_and_short_files_grow_their_fingerprint() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("a.log");
        append(&log, "short\n");
        let mut store = HashMap::new();
        let mut t = Tailer::new(
            cfg(format!("{}/a.log", tmp.path().display())),
            store.clone(),
        )
        .unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        apply(&mut store, t.take_checkpoint_changes());
        assert_eq!(store.values().next().unwrap().fp_len, 6);
        let long = "x".repeat(200);
        append(&log, &format!("{long}\nafter\n{long}"));
        t.poll(1, 0, true, &mut c);
        append(&log, "yyy\nend\n");
        t.poll(2, 0, true, &mut c);
        assert_eq!(
            texts(&c),
            ["short", &long[..64], "after", &long[..64], "end"]
        );
        assert_eq!(t.stats.lines_truncated, 2);
        apply(&mut store, t.take_checkpoint_changes());
        assert_eq!(store.len(), 1);
        let e = store.values().next().unwrap();
        assert_eq!(e.fp_len as usize, FP_BYTES);
        assert_eq!(e.offset, std::fs::metadata(&log).unwrap().len());
        // Restart after the file grew past a short checkpoint: the short key is found.
        let tmp2 = tempfile::tempdir().unwrap();
        let l2 = tmp2.path().join("b.log");
        append(&l2, "one\n");
        let mut store = HashMap::new();
        let mut t = Tailer::new(
            cfg(format!("{}/b.log", tmp2.path().display())),
            store.clone(),
        )
        .unwrap();
        t.poll(0, 0, true, &mut Collect::default());
        apply(&mut store, t.take_checkpoint_changes());
        drop(t);
        append(&l2, &lines(0..10));
        let mut t = Tailer::new(cfg(format!("{}/b.log", tmp2.path().display())), store).unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        assert_eq!(c.lines.len(), 10);
        assert_eq!(texts(&c)[0], "line number 0000 of the test file");
    }

    #[test]
    fn unreadable_and_vanishing_files_are_counted_not_fatal() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("a.log");
        append(&log, &lines(0..3));
        let mut t = Tailer::new(
            cfg(format!("{}/*.log", tmp.path().display())),
            HashMap::new(),
        )
        .unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        std::fs::remove_file(&log).unwrap();
        t.poll(1, 0, true, &mut c);
        assert_eq!(t.open_files(), 0);
        assert_eq!(c.released, 1);
        // A directory the agent may not read (only meaningful without root).
        let locked = tmp.path().join("b.log");
        append(&locked, "x\n");
        std::fs::set_permissions(&locked, std::os::unix::fs::PermissionsExt::from_mode(0o000))
            .unwrap();
        t.poll(2, 0, true, &mut c);
        t.poll(3, 0, true, &mut c);
        if unsafe { libc::geteuid() } != 0 {
            assert_eq!(t.stats.open_errors, 1, "counted and logged once");
        }
    }

    #[test]
    fn cri_partials_hold_the_checkpoint() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("0.log");
        append(
            &log,
            "2026-11-25T14:31:06.000000001Z stdout F first full line of the file\n",
        );
        append(&log, "2026-11-25T14:31:06.000000002Z stdout P part one, \n");
        let mut store = HashMap::new();
        let wide = || TailConfig {
            max_line_bytes: 1024,
            ..cfg(format!("{}/0.log", tmp.path().display()))
        };
        let mut t = Tailer::new(wide(), store.clone()).unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        apply(&mut store, t.take_checkpoint_changes());
        assert_eq!(texts(&c), ["first full line of the file"]);
        let first = "2026-11-25T14:31:06.000000001Z stdout F first full line of the file\n";
        assert_eq!(store.values().next().unwrap().offset, first.len() as u64);
        drop(t);
        append(&log, "2026-11-25T14:31:06.000000003Z stdout F part two\n");
        let mut t = Tailer::new(wide(), store).unwrap();
        let mut c = Collect::default();
        t.poll(0, 0, true, &mut c);
        assert_eq!(texts(&c), ["part one, part two"]);
    }
}
