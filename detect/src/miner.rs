//! The online log template miner: turns each log line into a template id, as the agent reads it.
//!
//! Entry type: [`Miner`], built from a [`MinerConfig`] ([`MinerConfig::default`] is the one
//! configuration we ship and score). [`Miner::add`] assigns a line to a cluster of similar lines
//! (creating one when nothing is similar enough) and returns its [`TemplateId`];
//! [`Miner::template`] gives the cluster's current template, variables written `<*>`.
//!
//! How a line is assigned (a Drain-family parser, He et al. 2017, with these changes):
//!
//! 1. **Masking.** The line is split on whitespace (at most [`MinerConfig::max_tokens`] tokens)
//!    and each token's obviously variable parts are masked with generic rules (numbers, hex,
//!    IPs, paths, booleans; see `miner/token.rs`), keeping separators: `uid=0` → `uid=<*>`.
//! 2. **Candidates.** Clusters are indexed by token count and the leading constant tokens. The
//!    line is compared with the clusters of its index entry; when none is similar enough, with
//!    every cluster of the same token count (so a variable in a leading position does not split a
//!    template), and the cluster found is then indexed under the line's entry too.
//! 3. **Fit.** Position by position: equal tokens, a `<*>` in the template (one that has only
//!    seen variable-looking tokens does not take a plain word), and two variable-looking tokens
//!    that are alike (pattern fit, same `key=`, same letters, shared word-bearing edge, date
//!    words) agree. The cluster with the fewest disagreements takes the line if they are within
//!    `1 -` [`MinerConfig::similarity_threshold`] of the positions; its template generalises
//!    where they differ, keeping the prefix and suffix the tokens share (`rhost=<*>` +
//!    `rhost=a.example.net` → `rhost=<*>`).
//!
//! A line that fits nothing starts a cluster, unless it differs from
//! [`MinerConfig::min_sibling_values`]` - 1` clusters at one same non-leading position, in a plain
//! word, and nowhere else: that position is then a variable and those clusters merge (see
//! `merge_siblings`). docs/logs-templates.md has the whole story and the measured accuracy.
//!
//! Invariants:
//! * **Ids are stable.** An id, once returned, always names the same cluster. When clusters merge
//!   (a template generalised until it equals another, or sibling merging), the younger clusters
//!   fold into the oldest and their ids become aliases: [`Miner::resolve`] and [`Miner::template`] follow it.
//!   Ids derive from the first line's masked form (a 64-bit FNV-1a hash, probed on collision), so
//!   two nodes that first see the same kind of line give it the same id.
//! * **Templates only generalise**: a constant token may become `<*>` (or partly `<*>`), never
//!   the reverse.
//! * **Bounded memory**: at most [`MinerConfig::max_clusters`] clusters; beyond that the least
//!   recently used tenth is evicted (its ids stop resolving; a line like it later gets a new id).
//! * **Deterministic**: the same lines in the same order give the same ids and templates, and
//!   [`Miner::to_json`] / [`Miner::from_json`] round-trip the state exactly, including what later
//!   lines will be assigned.
//!
//! It deliberately does not read files, join multi-line messages, or look at the clock.

mod token;

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use token::{
    Kind, SCAN, SCAN_NONWORD, SCAN_SPACE, WILD, canon_kind_scanned, contains_wild, generalise,
    generalise_into, generalise_keeps, glob, is_date_word, key_of, kind_of, word_kind,
};

/// Names one cluster of lines (one template). Stable for the life of the miner's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TemplateId(pub u64);

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// What [`Miner::add`] did with a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The cluster the line joined.
    pub id: TemplateId,
    /// True when the line started a new cluster (a template never seen before).
    pub is_new: bool,
}

/// The miner's knobs. The default is the configuration we ship and score; it is meant to work
/// on any log without tuning.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MinerConfig {
    /// Share (0..=1) of a line's token positions that must match a cluster's template for the
    /// line to join it.
    pub similarity_threshold: f64,
    /// How many leading tokens (besides the token count) key the candidate index.
    pub index_depth: usize,
    /// Distinct plain words seen at one position, in lines otherwise alike, that make the
    /// position a variable (user names, host names); fewer stay separate templates.
    pub min_sibling_values: usize,
    /// Maximum number of clusters kept; beyond it the least recently used tenth is evicted.
    pub max_clusters: usize,
    /// Tokens of a line that are considered; the rest of a longer line is one `<*>`.
    pub max_tokens: usize,
    /// A line that is one JSON object with a message field (`msg`, `message`, `@message`,
    /// `log`) is mined as `{its keys} [level] message` (see [`json_line`]) instead of as
    /// JSON text.
    pub json_message: bool,
}

impl Default for MinerConfig {
    fn default() -> Self {
        Self {
            similarity_threshold: 0.9,
            index_depth: 2,
            min_sibling_values: 3,
            max_clusters: 50_000,
            max_tokens: 512,
            json_message: true,
        }
    }
}

/// Loading a miner's state failed.
#[derive(Debug, thiserror::Error)]
pub enum MinerStateError {
    /// The state is not valid JSON of the expected shape (a retry will not help; start a fresh
    /// miner, which gives new ids).
    #[error("miner state is not valid: {0}")]
    Parse(#[from] serde_json::Error),
    /// The state was written by an incompatible version of the miner.
    #[error("miner state has version {found}, this build reads version {expected}")]
    Version { found: u32, expected: u32 },
}

const STATE_VERSION: u32 = 1;

#[derive(Clone, Debug, Serialize, Deserialize)]
struct Cluster {
    id: TemplateId,
    /// Creation order: breaks ties deterministically.
    seq: u64,
    tokens: Vec<Box<str>>,
    kinds: Vec<Kind>,
    size: u64,
    last_seen: u64,
    /// Index entries (hashes) this cluster is registered under.
    routes: Vec<u64>,
}

/// A fast, deterministic hasher for keys that are already hashes or small integers.
#[derive(Default, Clone, Copy)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(b as u64);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(n as u64)
    }
    fn write_usize(&mut self, n: usize) {
        self.write_u64(n as u64)
    }
}

type Map<K, V> = HashMap<K, V, BuildHasherDefault<MixHasher>>;

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        h = (h ^ b as u64).wrapping_mul(FNV_PRIME);
    }
    h
}

/// Per-line working memory, reused so that assigning a line allocates nothing in the common case.
#[derive(Clone, Debug, Default)]
struct Scratch {
    buf: String,
    spans: Vec<(u32, u32, Kind)>,
    candidates: Vec<u32>,
    pool: Vec<u32>,
    /// Working buffers of the token rules.
    stage: String,
    raw: String,
    general: String,
    /// The line to mine of a JSON line ([`json_line`]).
    json: String,
}

/// Masked lines longer than this are not remembered (long lines rarely repeat exactly).
const MEMO_MAX_BYTES: usize = 512;
/// Entries of the assignment memo (a power of two; direct-mapped by the masked line's hash).
const MEMO_ENTRIES: usize = 4096;

/// One remembered assignment: a masked line (`buf`, token `spans`) that joined cluster `slot`
/// without changing anything, when the clusters of its length were as they were at `stamp`.
#[derive(Clone, Debug, Default)]
struct MemoEntry {
    /// False until recorded.
    used: bool,
    hash: u64,
    stamp: u64,
    slot: u32,
    buf: String,
    spans: Vec<(u32, u32)>,
}

/// Remembers recent assignments that changed nothing, so that a masked line seen before skips
/// the candidate search while no cluster of its token count has changed since.
///
/// Exact, not a heuristic: whether a line joins a cluster, and which, depends only on the line's
/// masked tokens and on the clusters (templates, kinds, index entries) of its token count.
/// Every change to those ([`Miner::touch`]) advances that length's stamp and so retires the
/// entries recorded before it; an entry is only recorded when its own assignment changed
/// nothing, so replaying it is the same assignment (the cluster's size and recency aside).
#[derive(Clone, Debug, Default)]
struct Memo {
    entries: Vec<MemoEntry>,
    /// Logical clock, advanced by every change to the clusters.
    clock: u64,
    /// Per token count: the clock value of the last change to clusters of that length.
    changed: Vec<u64>,
    window: HitWindow,
}

/// Lines per trial window of a cache, and how many lines it rests after a poor window.
const MEMO_WINDOW: u32 = 4096;
const MEMO_REST: u32 = 8 * MEMO_WINDOW;

/// Whether a cache ([`Memo`], [`TextMemo`]) is worth consulting. On logs where it never hits
/// (an unmasked id in every line), hashing, probing and recording cost more than it saves:
/// after a window of [`MEMO_WINDOW`] lookups with fewer than 1 in 8 hits it rests for
/// [`MEMO_REST`] lines, then tries again. Both caches are exact, so skipping one never
/// changes an assignment, only how fast it is found.
#[derive(Clone, Debug, Default)]
struct HitWindow {
    /// Lookups and hits in the current trial window.
    probes: u32,
    hits: u32,
    /// Lines left to skip the cache for, after a window where it rarely hit.
    resting: u32,
}

impl HitWindow {
    /// Whether to use the cache for this line.
    fn active(&mut self) -> bool {
        if self.resting > 0 {
            self.resting -= 1;
            return false;
        }
        if self.probes >= MEMO_WINDOW {
            if self.hits < self.probes / 8 {
                self.resting = MEMO_REST;
            }
            self.probes = 0;
            self.hits = 0;
            return self.resting == 0;
        }
        true
    }

    fn probed(&mut self, hit: bool) {
        self.probes += 1;
        self.hits += hit as u32;
    }
}

impl Memo {
    /// Whether to use the memo for this line (see [`HitWindow`]).
    fn active(&mut self) -> bool {
        self.window.active()
    }

    fn touch(&mut self, n: usize) {
        self.clock += 1;
        if self.changed.len() <= n {
            self.changed.resize(n + 1, 0);
        }
        self.changed[n] = self.clock;
    }

    fn lookup(&mut self, hash: u64, s: &Scratch) -> Option<u32> {
        self.window.probes += 1;
        let e = self.entries.get(hash as usize & (MEMO_ENTRIES - 1))?;
        let n = s.spans.len();
        let fresh = e.used
            && e.hash == hash
            && self.changed.get(n).copied().unwrap_or(0) <= e.stamp
            && e.spans.len() == n
            && e.buf == s.buf
            && e.spans
                .iter()
                .zip(&s.spans)
                .all(|(&(a, b), sp)| a == sp.0 && b == sp.1);
        self.window.hits += fresh as u32;
        fresh.then_some(e.slot)
    }

    fn record(&mut self, hash: u64, s: &Scratch, slot: u32) {
        if self.entries.is_empty() {
            self.entries.resize_with(MEMO_ENTRIES, MemoEntry::default);
        }
        let e = &mut self.entries[hash as usize & (MEMO_ENTRIES - 1)];
        e.used = true;
        e.hash = hash;
        e.stamp = self.clock;
        e.slot = slot;
        e.buf.clear();
        e.buf.push_str(&s.buf);
        e.spans.clear();
        e.spans.extend(s.spans.iter().map(|sp| (sp.0, sp.1)));
    }
}

const HASH_K: u64 = 0x9e37_79b9_7f4a_7c15;

fn hash_mix(h: u64, w: u64) -> u64 {
    (h.rotate_left(23) ^ w).wrapping_mul(HASH_K)
}

/// Mixes `b` into `h`, 8 bytes at a time.
fn hash_bytes(mut h: u64, b: &[u8]) -> u64 {
    let mut chunks = b.chunks_exact(8);
    for c in &mut chunks {
        h = hash_mix(h, u64::from_le_bytes(c.try_into().expect("8 bytes")));
    }
    let mut last = [0u8; 8];
    let rest = chunks.remainder();
    last[..rest.len()].copy_from_slice(rest);
    hash_mix(h, u64::from_le_bytes(last) ^ ((rest.len() as u64) << 59))
}

/// Lines to mine longer than this are not remembered by the [`TextMemo`].
const TEXT_MEMO_MAX_BYTES: usize = 512;
/// Entries of the [`TextMemo`] (a power of two; direct-mapped by the text's hash).
const TEXT_MEMO_ENTRIES: usize = 1024;

/// One remembered tokenization: `text` split and masked into `buf` / `spans`, and the memo
/// hash of that result once computed.
#[derive(Clone, Debug, Default)]
struct TextEntry {
    used: bool,
    hash: u64,
    text: String,
    buf: String,
    spans: Vec<(u32, u32, Kind)>,
    line_hash: Option<u64>,
}

/// Remembers how recent JSON lines' texts to mine (key list, level, message; see [`json_line`])
/// were split and masked, so that one seen before (the common case) skips tokenizing and
/// masking, most of the cost of such a line after the JSON scan.
///
/// Exact: tokenizing and masking depend only on the text and the configuration
/// (`max_tokens`), never on the clusters, so a remembered result is the result.
#[derive(Clone, Debug, Default)]
struct TextMemo {
    entries: Vec<TextEntry>,
    window: HitWindow,
}

impl TextMemo {
    /// Writes the remembered tokenization of `text` (hash `hash`) into `s`; `None` when it is
    /// not remembered, else the entry's index.
    fn fill(&mut self, hash: u64, text: &str, s: &mut Scratch) -> Option<usize> {
        let i = hash as usize & (TEXT_MEMO_ENTRIES - 1);
        let hit = self
            .entries
            .get(i)
            .is_some_and(|e| e.used && e.hash == hash && e.text == text);
        self.window.probed(hit);
        if !hit {
            return None;
        }
        let e = &self.entries[i];
        s.buf.clear();
        s.buf.push_str(&e.buf);
        s.spans.clear();
        s.spans.extend_from_slice(&e.spans);
        Some(i)
    }

    fn record(&mut self, hash: u64, text: &str, s: &Scratch) -> usize {
        if self.entries.is_empty() {
            self.entries
                .resize_with(TEXT_MEMO_ENTRIES, TextEntry::default);
        }
        let i = hash as usize & (TEXT_MEMO_ENTRIES - 1);
        let e = &mut self.entries[i];
        e.used = true;
        e.hash = hash;
        e.text.clear();
        e.text.push_str(text);
        e.buf.clear();
        e.buf.push_str(&s.buf);
        e.spans.clear();
        e.spans.extend_from_slice(&s.spans);
        e.line_hash = None;
        i
    }
}

/// A fast hash of a masked line (its bytes and token boundaries), for the memo.
fn line_hash(s: &Scratch) -> u64 {
    let mix = hash_mix;
    let mut h = hash_bytes(mix(0, s.spans.len() as u64), s.buf.as_bytes());
    for pair in s.spans.chunks(2) {
        let hi = pair.get(1).map_or(0, |sp| sp.0 as u64);
        h = mix(h, pair[0].0 as u64 | hi << 32);
    }
    h ^ (h >> 29)
}

/// The online template miner. See the module documentation.
#[derive(Clone, Debug)]
pub struct Miner {
    config: MinerConfig,
    /// Cluster slots; `None` after eviction or merge (reused later).
    slots: Vec<Option<Cluster>>,
    free: Vec<u32>,
    by_id: Map<TemplateId, u32>,
    aliases: Map<TemplateId, TemplateId>,
    index: Map<u64, Vec<u32>>,
    by_len: Map<usize, Vec<u32>>,
    tick: u64,
    next_seq: u64,
    live: usize,
    /// Boxed so that taking it for a line moves a pointer, not the buffers' headers.
    scratch: Option<Box<Scratch>>,
    memo: Memo,
    text_memo: TextMemo,
}

impl Default for Miner {
    fn default() -> Self {
        Self::new(MinerConfig::default())
    }
}

#[derive(Serialize, Deserialize)]
struct State {
    version: u32,
    config: MinerConfig,
    tick: u64,
    next_seq: u64,
    clusters: Vec<Cluster>,
    aliases: Vec<(TemplateId, TemplateId)>,
}

impl Serialize for Miner {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.state().serialize(s)
    }
}

impl<'de> Deserialize<'de> for Miner {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let state = State::deserialize(d)?;
        if state.version != STATE_VERSION {
            return Err(serde::de::Error::custom(format!(
                "miner state has version {}, this build reads version {STATE_VERSION}",
                state.version
            )));
        }
        Ok(Self::from_state(state))
    }
}

impl Miner {
    pub fn new(config: MinerConfig) -> Self {
        Self {
            config,
            slots: Vec::new(),
            free: Vec::new(),
            by_id: Map::default(),
            aliases: Map::default(),
            index: Map::default(),
            by_len: Map::default(),
            tick: 0,
            next_seq: 0,
            live: 0,
            scratch: None,
            memo: Memo::default(),
            text_memo: TextMemo::default(),
        }
    }

    pub fn config(&self) -> &MinerConfig {
        &self.config
    }

    /// A counter that moves whenever a cluster is created, changed, merged or dropped: a
    /// saved state is current while it has not moved.
    pub fn changes(&self) -> u64 {
        self.memo.clock
    }

    /// Number of live clusters (templates).
    pub fn len(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The id a (possibly merged) id now goes by, or `None` when it was evicted or never issued.
    pub fn resolve(&self, mut id: TemplateId) -> Option<TemplateId> {
        for _ in 0..64 {
            if self.by_id.contains_key(&id) {
                return Some(id);
            }
            id = *self.aliases.get(&id)?;
        }
        None
    }

    /// The current template of a cluster, tokens joined by one space, variables as `<*>`.
    pub fn template(&self, id: TemplateId) -> Option<String> {
        let slot = *self.by_id.get(&self.resolve(id)?)?;
        let c = self.slots[slot as usize].as_ref()?;
        Some(c.tokens.join(" "))
    }

    /// Assigns a line to a cluster, creating one if nothing is similar enough.
    pub fn add(&mut self, line: &str) -> Assignment {
        self.tick += 1;
        let mut scratch = self.scratch.take().unwrap_or_default();
        let mut json = std::mem::take(&mut scratch.json);
        let from_json = self.config.json_message && json_line(line, &mut json);
        let text = if from_json { json.as_str() } else { line };
        // Split and masked before? Only asked of a JSON line's key list, level and message,
        // which repeat by construction; a text line rarely repeats exactly, and its masked form
        // is what the assignment memo below remembers. (Long texts are not remembered.)
        let text_hash =
            (from_json && text.len() <= TEXT_MEMO_MAX_BYTES && self.text_memo.window.active())
                .then(|| hash_bytes(text.len() as u64, text.as_bytes()));
        let entry = match text_hash {
            Some(th) => match self.text_memo.fill(th, text, &mut scratch) {
                Some(i) => Some(i),
                None => {
                    tokenize(text, self.config.max_tokens, &mut scratch);
                    Some(self.text_memo.record(th, text, &scratch))
                }
            },
            None => {
                tokenize(text, self.config.max_tokens, &mut scratch);
                None
            }
        };
        scratch.json = json;
        // Long lines are not remembered; skip hashing them.
        let hash = (scratch.buf.len() <= MEMO_MAX_BYTES && self.memo.active()).then(|| {
            let e = entry.map(|i| &mut self.text_memo.entries[i]);
            match e {
                Some(TextEntry {
                    line_hash: Some(h), ..
                }) => *h,
                Some(e) => *e.line_hash.insert(line_hash(&scratch)),
                None => line_hash(&scratch),
            }
        });
        if let Some(slot) = hash.and_then(|h| self.memo.lookup(h, &scratch))
            && let Some(c) = self.slots[slot as usize].as_mut()
        {
            // What `join` would do: the line fits the template as it is.
            c.size += 1;
            c.last_seen = self.tick;
            let id = c.id;
            self.scratch = Some(scratch);
            return Assignment { id, is_new: false };
        }
        let clock = self.memo.clock;
        let route = self.route(&scratch);
        let found = self.best_in_route(route, &mut scratch).or_else(|| {
            let best = self.best_in_len(&mut scratch)?;
            self.register(best, route);
            Some(best)
        });
        let assignment = match found {
            Some(slot) => {
                let id = self.join(slot, &mut scratch);
                if let Some(hash) = hash.filter(|_| self.memo.clock == clock) {
                    self.memo.record(hash, &scratch, slot);
                }
                Assignment { id, is_new: false }
            }
            None => match self.merge_siblings(route, &mut scratch) {
                Some(id) => Assignment { id, is_new: false },
                None => {
                    let id = self.create(route, &scratch);
                    Assignment { id, is_new: true }
                }
            },
        };
        self.scratch = Some(scratch);
        assignment
    }

    fn route(&self, s: &Scratch) -> u64 {
        let mut h = fnv(FNV_OFFSET, &(s.spans.len() as u64).to_le_bytes());
        for &(a, b, kind) in s.spans.iter().take(self.config.index_depth) {
            h = match kind {
                Kind::Const => fnv(h, &s.buf.as_bytes()[a as usize..b as usize]),
                _ => fnv(h, WILD.as_bytes()),
            };
            h = fnv(h, b" ");
        }
        h
    }

    fn best_in_route(&self, route: u64, s: &mut Scratch) -> Option<u32> {
        s.candidates.clear();
        let leaf = self.index.get(&route)?;
        s.candidates.extend_from_slice(leaf);
        self.best_of(&s.candidates, s)
    }

    fn best_in_len(&self, s: &mut Scratch) -> Option<u32> {
        let all = self.by_len.get(&s.spans.len())?;
        let mut pool = std::mem::take(&mut s.pool);
        // Those already tried in the route failed; skipping them is only an optimisation.
        pool.clear();
        pool.extend(all.iter().copied().filter(|c| !s.candidates.contains(c)));
        let best = self.best_of(&pool, s);
        s.pool = pool;
        best
    }

    fn best_of(&self, candidates: &[u32], s: &Scratch) -> Option<u32> {
        let n = s.spans.len();
        let mut best: Option<(usize, u64, u32)> = None;
        for &slot in candidates {
            let Some(c) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            if c.tokens.len() != n {
                continue;
            }
            let limit = best.map(|b| b.0);
            let Some(score) = mismatches(c, s, self.config.similarity_threshold, limit) else {
                continue;
            };
            let better = match best {
                None => true,
                Some((bs, bseq, _)) => score < bs || (score == bs && c.seq < bseq),
            };
            if better {
                best = Some((score, c.seq, slot));
            }
        }
        best.map(|b| b.2)
    }

    fn register(&mut self, slot: u32, route: u64) {
        let leaf = self.index.entry(route).or_default();
        if !leaf.contains(&slot) {
            leaf.push(slot);
            if let Some(c) = self.slots[slot as usize].as_mut() {
                c.routes.push(route);
                self.memo.touch(c.tokens.len());
            }
        }
    }

    fn join(&mut self, slot: u32, s: &mut Scratch) -> TemplateId {
        let tick = self.tick;
        let c = self.slots[slot as usize].as_mut().expect("live slot");
        c.size += 1;
        c.last_seen = tick;
        let (mut changed, mut touched) = (false, false);
        for (i, &(a, b, kind)) in s.spans.iter().enumerate() {
            let tok = &s.buf[a as usize..b as usize];
            match c.kinds[i] {
                Kind::Any => {}
                Kind::Wild => {
                    if kind == Kind::Const {
                        c.kinds[i] = Kind::Any;
                        touched = true;
                    }
                }
                _ if &*c.tokens[i] == tok => {}
                // The template already covers the token: generalising gives it back.
                Kind::VarLike if generalise_keeps(&c.tokens[i], tok) => {}
                old => {
                    let g = &mut s.general;
                    generalise_into(&c.tokens[i], tok, g, &mut s.raw, &mut s.stage);
                    let k = match kind_of(g) {
                        Kind::Wild if old == Kind::Const || kind == Kind::Const => Kind::Any,
                        k => k,
                    };
                    touched |= k != old;
                    c.kinds[i] = k;
                    if *c.tokens[i] != **g {
                        c.tokens[i] = Box::from(g.as_str());
                        changed = true;
                    }
                }
            }
        }
        let id = c.id;
        if changed || touched {
            self.memo.touch(s.spans.len());
        }
        if changed {
            return self.merge_equal(slot);
        }
        id
    }

    /// After `slot`'s template changed: if another cluster now has the very same template, the
    /// younger of the two is folded into the older. Returns the surviving id.
    fn merge_equal(&mut self, slot: u32) -> TemplateId {
        let c = self.slots[slot as usize].as_ref().expect("live slot");
        let n = c.tokens.len();
        let other = self.by_len.get(&n).and_then(|v| {
            v.iter().copied().find(|&o| {
                o != slot
                    && self.slots[o as usize]
                        .as_ref()
                        .is_some_and(|oc| oc.tokens == c.tokens)
            })
        });
        let Some(other) = other else {
            return c.id;
        };
        let (keep, drop) = {
            let oc = self.slots[other as usize].as_ref().expect("live slot");
            if oc.seq < c.seq {
                (other, slot)
            } else {
                (slot, other)
            }
        };
        self.absorb(keep, drop);
        self.slots[keep as usize].as_ref().expect("live slot").id
    }

    /// A line that fits no cluster may still show that a position holding plain words is a
    /// variable: when it differs from [`MinerConfig::min_sibling_values`]` - 1` clusters of its
    /// length at the same single position, and nowhere else, those clusters are merged into the
    /// oldest (the others become its aliases) with a `<*>` at that position, and the line joins.
    fn merge_siblings(&mut self, route: u64, s: &mut Scratch) -> Option<TemplateId> {
        let need = self.config.min_sibling_values.max(2) - 1;
        let n = s.spans.len();
        let all = self.by_len.get(&n)?;
        if all.len() < need || n < 2 {
            return None;
        }
        // Position -> clusters differing from the line only there.
        let mut at: Vec<(usize, u32)> = Vec::new();
        for &slot in all {
            let Some(c) = self.slots[slot as usize].as_ref() else {
                continue;
            };
            // A leading word that differs is usually the subject of a different message
            // ("cupsd startup succeeded", "klogd startup succeeded"), not a variable.
            if let Some(p) = single_difference(c, s).filter(|&p| p > 0) {
                at.push((p, slot));
            }
        }
        if at.len() < need {
            return None;
        }
        at.sort_unstable();
        let mut best: Option<(usize, usize)> = None; // (start, len) of the largest run
        let mut i = 0;
        while i < at.len() {
            let j = at[i..].iter().take_while(|x| x.0 == at[i].0).count();
            if j >= need && best.is_none_or(|b| j > b.1) {
                best = Some((i, j));
            }
            i += j;
        }
        let (start, len) = best?;
        let pos = at[start].0;
        let mut group: Vec<u32> = at[start..start + len].iter().map(|x| x.1).collect();
        group.sort_by_key(|&g| self.slots[g as usize].as_ref().map_or(u64::MAX, |c| c.seq));
        let keep = group[0];
        {
            let k = self.slots[keep as usize].as_mut().expect("live slot");
            k.tokens[pos] = Box::from(WILD);
            k.kinds[pos] = Kind::Any;
            self.memo.touch(n);
        }
        for &g in &group[1..] {
            self.absorb(keep, g);
        }
        self.register(keep, route);
        Some(self.join(keep, s))
    }

    /// Folds cluster `drop` into `keep`; `drop`'s id becomes an alias of `keep`'s.
    fn absorb(&mut self, keep: u32, drop: u32) {
        let gone = self.remove(drop);
        let k = self.slots[keep as usize].as_mut().expect("live slot");
        k.size += gone.size;
        k.last_seen = k.last_seen.max(gone.last_seen);
        for (i, t) in gone.tokens.iter().enumerate() {
            if k.kinds[i] != Kind::Any && k.tokens[i] != *t {
                let g = generalise(&k.tokens[i], t);
                k.kinds[i] = match kind_of(&g) {
                    Kind::Wild if k.kinds[i] == Kind::Const || gone.kinds[i] == Kind::Const => {
                        Kind::Any
                    }
                    kind => kind,
                };
                k.tokens[i] = g.into_boxed_str();
            }
        }
        let keep_id = k.id;
        self.memo.touch(k.tokens.len());
        self.aliases.insert(gone.id, keep_id);
        for r in gone.routes {
            self.register(keep, r);
        }
    }

    fn create(&mut self, route: u64, s: &Scratch) -> TemplateId {
        if self.live >= self.config.max_clusters.max(1) {
            self.evict();
        }
        let tokens: Vec<Box<str>> = s
            .spans
            .iter()
            .map(|&(a, b, _)| Box::from(&s.buf[a as usize..b as usize]))
            .collect();
        let mut h = FNV_OFFSET;
        for t in &tokens {
            h = fnv(fnv(h, t.as_bytes()), b" ");
        }
        let mut id = TemplateId(h);
        while self.by_id.contains_key(&id) || self.aliases.contains_key(&id) {
            id = TemplateId(id.0.wrapping_add(1));
        }
        let cluster = Cluster {
            id,
            seq: self.next_seq,
            kinds: s.spans.iter().map(|sp| sp.2).collect(),
            tokens,
            size: 1,
            last_seen: self.tick,
            routes: Vec::new(),
        };
        self.next_seq += 1;
        let slot = self.insert(cluster);
        self.register(slot, route);
        id
    }

    fn insert(&mut self, c: Cluster) -> u32 {
        let (id, n) = (c.id, c.tokens.len());
        let slot = match self.free.pop() {
            Some(f) => {
                self.slots[f as usize] = Some(c);
                f
            }
            None => {
                self.slots.push(Some(c));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_id.insert(id, slot);
        self.by_len.entry(n).or_default().push(slot);
        self.live += 1;
        self.memo.touch(n);
        slot
    }

    fn remove(&mut self, slot: u32) -> Cluster {
        let c = self.slots[slot as usize].take().expect("live slot");
        self.by_id.remove(&c.id);
        if let Some(v) = self.by_len.get_mut(&c.tokens.len()) {
            v.retain(|&x| x != slot);
            if v.is_empty() {
                self.by_len.remove(&c.tokens.len());
            }
        }
        for r in &c.routes {
            if let Some(v) = self.index.get_mut(r) {
                v.retain(|&x| x != slot);
                if v.is_empty() {
                    self.index.remove(r);
                }
            }
        }
        self.free.push(slot);
        self.live -= 1;
        self.memo.touch(c.tokens.len());
        c
    }

    /// Drops the least recently used tenth of the clusters (at least one), and aliases that
    /// point at them.
    fn evict(&mut self) {
        let mut order: Vec<(u64, u64, u32)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.as_ref().map(|c| (c.last_seen, c.seq, i as u32)))
            .collect();
        order.sort_unstable();
        let n = (self.live / 10).max(1);
        for &(_, _, slot) in order.iter().take(n) {
            self.remove(slot);
        }
        let by_id = &self.by_id;
        let aliases = self.aliases.clone();
        self.aliases.retain(|_, to| {
            let mut t = *to;
            for _ in 0..64 {
                if by_id.contains_key(&t) {
                    return true;
                }
                match aliases.get(&t) {
                    Some(n) => t = *n,
                    None => return false,
                }
            }
            false
        });
    }

    fn state(&self) -> State {
        let mut clusters: Vec<Cluster> = self.slots.iter().flatten().cloned().collect();
        clusters.sort_by_key(|c| c.seq);
        let mut aliases: Vec<_> = self.aliases.iter().map(|(a, b)| (*a, *b)).collect();
        aliases.sort_unstable();
        State {
            version: STATE_VERSION,
            config: self.config.clone(),
            tick: self.tick,
            next_seq: self.next_seq,
            clusters,
            aliases,
        }
    }

    fn from_state(state: State) -> Self {
        let mut m = Miner::new(state.config);
        m.tick = state.tick;
        m.next_seq = state.next_seq;
        for mut c in state.clusters {
            let routes = std::mem::take(&mut c.routes);
            let slot = m.insert(c);
            for r in routes {
                m.register(slot, r);
            }
        }
        m.aliases = state.aliases.into_iter().collect();
        m
    }

    /// The whole state as JSON (config, clusters, aliases), for [`Miner::from_json`].
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.state()).expect("miner state serialises")
    }

    /// A miner from [`Miner::to_json`]'s output; it assigns later lines exactly as the miner
    /// that was saved would have.
    pub fn from_json(s: &str) -> Result<Miner, MinerStateError> {
        let state: State = serde_json::from_str(s)?;
        if state.version != STATE_VERSION {
            return Err(MinerStateError::Version {
                found: state.version,
                expected: STATE_VERSION,
            });
        }
        Ok(Self::from_state(state))
    }
}

/// How well a line fits a template: the number of positions where they differ, or `None` when
/// that is too many.
///
/// Differences must stay within `1 - threshold` of all positions, and of the positions where
/// the template has not already lost a word to `<*>` (so a template does not keep eroding).
fn mismatches(c: &Cluster, s: &Scratch, threshold: f64, best: Option<usize>) -> Option<usize> {
    let n = s.spans.len();
    let slack = 1.0 - threshold;
    // No candidate with more differences than this can be accepted or beat the best so far.
    let budget = ((slack * n as f64 + 1e-9).floor() as usize).min(best.unwrap_or(usize::MAX));
    let (mut miss, mut wild) = (0usize, 0usize);
    // The cheap comparisons first, the `alike` ones (which scan both tokens) after: the count
    // is the same in any order, and a line that differs in plain words leaves early.
    let mut soft = false;
    for (i, &(a, b, kind)) in s.spans.iter().enumerate() {
        let tok = &s.buf[a as usize..b as usize];
        let ok = match c.kinds[i] {
            Kind::Any => {
                wild += 1;
                true
            }
            Kind::Wild => kind != Kind::Const,
            Kind::VarLike => {
                // Decided below, unless it is plainly equal or plainly not alike.
                let t = &*c.tokens[i];
                if t == tok || kind == Kind::Const {
                    t == tok
                } else {
                    soft = true;
                    true
                }
            }
            Kind::Const => &*c.tokens[i] == tok,
        };
        miss += !ok as usize;
        if miss > budget {
            return None;
        }
    }
    if soft {
        for (i, &(a, b, kind)) in s.spans.iter().enumerate() {
            if c.kinds[i] != Kind::VarLike || kind == Kind::Const {
                continue;
            }
            let (t, tok) = (&*c.tokens[i], &s.buf[a as usize..b as usize]);
            if t != tok && !alike(t, tok) {
                miss += 1;
                if miss > budget {
                    return None;
                }
            }
        }
    }
    let fixed = n - wild;
    if miss as f64 > slack * n as f64 + 1e-9 || miss as f64 > slack * fixed as f64 + 1e-9 {
        return None;
    }
    Some(miss)
}

/// The one position where a line differs from a template (plain words on both sides), if it
/// differs at exactly one.
fn single_difference(c: &Cluster, s: &Scratch) -> Option<usize> {
    let mut found = None;
    for (i, &(a, b, kind)) in s.spans.iter().enumerate() {
        let tok = &s.buf[a as usize..b as usize];
        let ok = match c.kinds[i] {
            Kind::Any => true,
            Kind::Wild => kind != Kind::Const,
            Kind::VarLike => {
                &*c.tokens[i] == tok || (kind != Kind::Const && alike(&c.tokens[i], tok))
            }
            Kind::Const => &*c.tokens[i] == tok,
        };
        if !ok {
            if found.is_some() || kind != Kind::Const || c.kinds[i] != Kind::Const {
                return None;
            }
            found = Some(i);
        }
    }
    found
}

/// Two variable-looking tokens (template `t`, line `tok`) are alike when the line fits the
/// template's pattern (`[<*>]` ~ `[node_7]`), they are values of the same key (`rhost=a` ~
/// `rhost=b`), or they have the same letters outside hexadecimal runs and masks (`blk_-<*>` ~
/// `blk_123`, `0x1f` ~ `<*>`, but `core.<*>` !~ `port=<*>`).
fn alike(t: &str, tok: &str) -> bool {
    if contains_wild(t.as_bytes()) && glob(t, tok) {
        return true;
    }
    if let (Some(a), Some(b)) = (key_of(t), key_of(tok)) {
        return a == b;
    }
    if is_date_word(t) && is_date_word(tok) {
        return true;
    }
    same_skeleton(t, tok) || shares_word_edge(t, tok)
}

/// Do the tokens start or end with the same separator-bounded run holding a letter
/// (`a-1.example.com` ~ `b7.example.com`)?
fn shares_word_edge(a: &str, b: &str) -> bool {
    let (x, y) = (a.as_bytes(), b.as_bytes());
    let mut letter = false;
    for (p, q) in x.iter().zip(y) {
        if p != q {
            break;
        }
        letter |= p.is_ascii_alphabetic();
        if letter && token::is_delim(*p) {
            return true;
        }
    }
    letter = false;
    for (p, q) in x.iter().rev().zip(y.iter().rev()) {
        if p != q {
            break;
        }
        letter |= p.is_ascii_alphabetic();
        if letter && token::is_delim(*p) {
            return true;
        }
    }
    false
}

/// Do the tokens have the same letters, in order, outside words (ASCII alphanumeric runs) that
/// are all hexadecimal digits?
fn same_skeleton(a: &str, b: &str) -> bool {
    Letters::new(a).eq(Letters::new(b))
}

/// The letters [`same_skeleton`] compares, without allocating.
struct Letters<'a> {
    b: &'a [u8],
    i: usize,
    /// End of the current word (letters are taken from `i` up to it).
    end: usize,
}

impl<'a> Letters<'a> {
    fn new(s: &'a str) -> Self {
        Self {
            b: s.as_bytes(),
            i: 0,
            end: 0,
        }
    }
}

impl Iterator for Letters<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        loop {
            while self.i < self.end {
                let c = self.b[self.i];
                self.i += 1;
                if c.is_ascii_alphabetic() {
                    return Some(c);
                }
            }
            // The next word that is not all hexadecimal digits.
            let start = self.i
                + self.b[self.i..]
                    .iter()
                    .position(u8::is_ascii_alphanumeric)?;
            let len = self.b[start..]
                .iter()
                .position(|c| !c.is_ascii_alphanumeric())
                .unwrap_or(self.b.len() - start);
            let word = &self.b[start..start + len];
            if word.iter().all(u8::is_ascii_hexdigit) {
                self.i = start + len;
                self.end = self.i;
            } else {
                self.i = start;
                self.end = start + len;
            }
        }
    }
}

/// Splits `line` into masked tokens in `s.buf` / `s.spans`.
///
/// Tokens that masking keeps as they are (most words) are not copied one by one: `buf` takes
/// unchanged stretches of the line, spaces included, in one go (`copied` is how far the line
/// has been written), so only the spans say where tokens are.
/// Fields holding a JSON line's message, by preference.
const JSON_MESSAGE_KEYS: [&[u8]; 4] = [b"msg", b"message", b"@message", b"log"];
/// Fields holding a JSON line's level.
const JSON_LEVEL_KEYS: [&[u8]; 5] = [b"level", b"lvl", b"severity", b"levelname", b"loglevel"];

/// End of the JSON string starting after the opening quote at `i` (the index of the closing
/// quote), or `None` if it does not end.
fn json_string_end(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let j = i + quote_or_backslash(b.get(i..)?)?;
        if b[j] == b'"' {
            return Some(j);
        }
        i = j + 2;
        if i > b.len() {
            return None;
        }
    }
}

/// Index of the first `"` or `\\` in `b`, 8 bytes at a time (SWAR): JSON strings are most of a
/// JSON line's bytes, and this search was the largest cost of mining one.
fn quote_or_backslash(b: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    const QUOTES: u64 = LO * b'"' as u64;
    const BACKSLASHES: u64 = LO * b'\\' as u64;
    let mut chunks = b.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let w = u64::from_le_bytes(c.try_into().expect("8 bytes"));
        let (q, s) = (w ^ QUOTES, w ^ BACKSLASHES);
        // A zero byte of q or s is a match. The lowest flagged byte is always a real one (a
        // borrow only flags bytes above a real match), and the lowest is all we need.
        let m = ((q.wrapping_sub(LO) & !q) | (s.wrapping_sub(LO) & !s)) & HI;
        if m != 0 {
            return Some(at + (m.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\')
        .map(|p| at + p)
}

/// End (exclusive) of the JSON value starting at `i` (not a string): a nested object or array,
/// or a number / literal; `None` when it does not end inside `b`.
fn json_value_end(b: &[u8], mut i: usize) -> Option<usize> {
    match b.get(i)? {
        b'{' | b'[' => {
            let mut depth = 0usize;
            while i < b.len() {
                match b[i] {
                    b'"' => i = json_string_end(b, i + 1)?,
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let n = b[i..]
                .iter()
                .position(|c| matches!(c, b',' | b'}' | b' ' | b'\t' | b'\r' | b'\n'))?;
            (n > 0).then_some(i + n)
        }
    }
}

/// The line to mine for a JSON object line with a message field: `{k1,k2,…} [level] message`,
/// the keys in the order the line has them (its top-level key list is part of the template's
/// identity), the level's value when it has one, then the message (as written, escapes
/// included). Written into `out`; false (and `out` unspecified) when `line` is not one JSON
/// object, or has no string message field. Only scans: no allocation beyond `out`.
///
/// Why: a structured line's payload is mostly fields whose values vary (trace ids, durations,
/// paths); mined as text it is a long line of mostly `<*>` whose template splits on whichever
/// values happen to look constant, and masking it is most of the miner's cost. The message
/// is what a person reads as "the kind of line".
pub(crate) fn json_line(line: &str, out: &mut String) -> bool {
    let text = line.trim_ascii();
    let b = text.as_bytes();
    if b.len() < 2 || b[0] != b'{' || b[b.len() - 1] != b'}' {
        return false;
    }
    out.clear();
    out.push('{');
    let mut message: Option<(usize, usize, usize)> = None; // (preference, start, end)
    let mut level: Option<(usize, usize)> = None;
    let mut i = 1;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return false;
        }
        if b[i] == b'}' && i == b.len() - 1 && out.len() == 1 {
            return false; // {}
        }
        if b[i] != b'"' {
            return false;
        }
        let Some(kend) = json_string_end(b, i + 1) else {
            return false;
        };
        let i_key = i + 1;
        let key = &b[i_key..kend];
        i = kend + 1;
        skip_ws(&mut i);
        if b.get(i) != Some(&b':') {
            return false;
        }
        i += 1;
        skip_ws(&mut i);
        let vstart = i;
        let is_string = b.get(i) == Some(&b'"');
        let vend = if is_string {
            match json_string_end(b, i + 1) {
                Some(e) => e + 1,
                None => return false,
            }
        } else {
            match json_value_end(b, i) {
                Some(e) => e,
                None => return false,
            }
        };
        if out.len() > 1 {
            out.push(',');
        }
        // Keys are mined as one token: whitespace in one would split it. (The slice is
        // bounded by ASCII quotes, so it is whole UTF-8.)
        let key_str = &text[i_key..kend];
        // Whitespace and non-ASCII are at most `b' '` or at least 0x80; the rare key with a
        // control character takes the slow path too, which keeps it as it is.
        if key.iter().any(|&c| c <= b' ' || c >= 0x80) {
            for c in key_str.chars() {
                out.push(if c.is_whitespace() { '_' } else { c });
            }
        } else {
            out.push_str(key_str);
        }
        if is_string {
            if let Some(p) = JSON_MESSAGE_KEYS.iter().position(|k| *k == key)
                && message.is_none_or(|m| p < m.0)
            {
                message = Some((p, vstart + 1, vend - 1));
            }
            if level.is_none() && JSON_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
                level = Some((vstart + 1, vend - 1));
            }
        } else if level.is_none() && JSON_LEVEL_KEYS.iter().any(|k| k.eq_ignore_ascii_case(key)) {
            level = Some((vstart, vend));
        }
        i = vend;
        skip_ws(&mut i);
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') if i == b.len() - 1 => break,
            _ => return false,
        }
    }
    let Some((_, ms, me)) = message else {
        return false;
    };
    out.push('}');
    // `b` is `text`: its slices at these offsets are whole UTF-8 sequences (they are
    // bounded by ASCII quotes), so the str slices below cannot split a character.
    if let Some((ls, le)) = level {
        out.push(' ');
        out.push_str(&text[ls..le]);
    }
    out.push(' ');
    out.push_str(&text[ms..me]);
    true
}

fn tokenize(line: &str, max_tokens: usize, s: &mut Scratch) {
    s.buf.clear();
    s.spans.clear();
    let max_tokens = max_tokens.max(1);
    let b = line.as_bytes();
    let (mut i, mut copied) = (0, 0);
    loop {
        while i < b.len() && SCAN[b[i] as usize] & SCAN_SPACE != 0 {
            i += 1;
        }
        if i == b.len() {
            break;
        }
        let start = i;
        let mut any = 0u8;
        let mut n = 0;
        for &c in &b[i..] {
            let c = SCAN[c as usize];
            if c & SCAN_SPACE != 0 {
                break;
            }
            any |= c;
            n += 1;
        }
        i += n;
        let word = any & SCAN_NONWORD == 0;
        if s.spans.len() == max_tokens {
            // The rest of the line is one variable.
            s.buf.push_str(&line[copied..start]);
            let a = s.buf.len();
            s.buf.push_str(WILD);
            s.spans.push((a as u32, s.buf.len() as u32, Kind::Wild));
            return;
        }
        let tok = &line[start..i];
        if let Some(kind) = word.then(|| word_kind(tok)).flatten() {
            let a = s.buf.len() + (start - copied);
            s.spans.push((a as u32, (a + tok.len()) as u32, kind));
        } else {
            s.buf.push_str(&line[copied..start]);
            let a = s.buf.len();
            let kind = canon_kind_scanned(tok, any, &mut s.buf, &mut s.stage);
            s.spans.push((a as u32, s.buf.len() as u32, kind));
            copied = i;
        }
    }
    s.buf.push_str(&line[copied..]);
}

#[cfg(test)]
mod tests;
