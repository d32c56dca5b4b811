//! The first correlator: joins signals into incidents by time and topology (same entity or
//! same host, within a window of event time). Pure: no I/O, no clock reads.
//!
//! Entry type: [`Correlator`]. For each signal it returns a [`Decision`]:
//!
//! * a rule matched → the incident is identified by its *fingerprint* (top rule + root
//!   entity + cluster): join the active incident with that fingerprint, or open one;
//! * no rule matched → join an active incident on the same entity or host whose last signal is
//!   within the window (a symptom of it); otherwise a critical signal opens an incident of its
//!   own with the generic ranker's hypothesis; warning symptoms are held as context, and once
//!   a *quorum* of distinct symptoms (signal names, default 2) gathers on one entity within the
//!   window they open an incident on that entity together; anything else stays held as context
//!   for an incident that may open later on the same host.
//!
//! Signals without a host (services and pods an application reports about itself, such as the
//! collector's own metric and trace anomalies) are grouped by their Kubernetes namespace
//! (`k8s.namespace.name`, within `k8s.cluster.name`) instead: an application's services live
//! in one namespace, and a fault in one of them shows up as symptoms in its callers.
//!
//! "Connected in topology" includes what the [`Topology`] learnt from other signals: a signal
//! about a service or container with no host of its own joins an incident on the machine its
//! pod ran on at that time ([`Correlator::decide_in`]).
//!
//! Rules with joins are evaluated by [`match_rules`] against the signals [`Held`] for joins
//! and the topology ([`JoinView`]): as a trigger when a signal arrives, and again for the
//! triggers a later signal completes, so a cause that arrives after its symptom still names it.
//! A match completed late joins the open incident its earlier signals (or the entity it blames)
//! are already part of, so the order of arrival does not split one outage into two incidents.
//!
//! Invariants: fingerprints never contain message text; a resolved incident is forgotten here
//! and never takes new signals (the store links a reopened fingerprint to the old incident).

use crate::topology::Topology;
use daytwo_model::{Entity, Hypothesis, Incident, Severity, Signal, Timestamp, stable_id};
use daytwo_rules::{Anchor, FastHash, JoinSource, Prepared, Relation, Rule, RuleMatch, RuleSet};
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

/// At most this many signals are held for joins, in total and per event name.
pub const HELD_MAX: usize = 100_000;
const HELD_PER_EVENT: usize = 20_000;

/// Signals held in memory for the joins of rules: only the event names some rule joins on
/// (or triggers with joins), for as long as the longest join reaches (at least the
/// correlation window), bounded in count. Indexed by event name and, within it, by what
/// relations look up (machine, workload, service, entity), so a join looks at its related
/// candidates, not at every signal of the window; the triggers that armed a rule are indexed
/// again per rule, so a late joined signal looks only at the triggers it may complete. Each
/// held signal keeps its CEL variables ([`Prepared`]), converted once.
#[derive(Debug, Default)]
pub struct Held {
    by_event: HashMap<String, EventQueue, FastHash>,
    /// Address of a held signal → its entry: the signal shared by the caller is found without
    /// hashing or comparing its id.
    by_ptr: HashMap<usize, Arc<Entry>, PtrHash>,
    len: usize,
    horizon: Duration,
    newest: Timestamp,
    dropped: u64,
}

/// One held signal: the signal, its CEL variables, and the rules with joins it armed as a
/// trigger ([`RuleSet::armed_prepared`]).
#[derive(Debug)]
struct Entry {
    /// Shared with the caller (and with the rule matches that name it), never copied.
    signal: Arc<Signal>,
    prepared: Prepared,
    /// Every key it is found under ([`entry_keys`]).
    keys: Vec<Key>,
}

/// Held entries in event-time order, with their times inline so that a search by time reads
/// one contiguous array.
type Queue = VecDeque<(Timestamp, Arc<Entry>)>;

/// One event name's held signals, in event-time order, and the same by lookup key.
#[derive(Debug, Default)]
struct EventQueue {
    all: Queue,
    by_key: HashMap<Key, Queue, KeyHash>,
}

/// A lookup key of the held-signal index: a 64-bit hash of what it names (a machine, a
/// workload, …), so that keys are built and compared without allocating. Two names that hash
/// alike would only put a signal among the candidates of a lookup it does not belong to,
/// which the engine's relation check on every candidate then rejects.
type Key = u64;

/// The hasher of maps keyed by [`Key`]s, which are hashes already.
#[derive(Clone, Copy, Default)]
struct KeyHash;

#[derive(Clone, Copy, Default)]
struct KeyHasher(u64);

impl std::hash::BuildHasher for KeyHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

impl std::hash::Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    fn write_usize(&mut self, n: usize) {
        let h = (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        self.0 = h ^ (h >> 29);
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The hasher of maps keyed by a held signal's address: a multiply spreads the aligned
/// address over every bit.
#[derive(Clone, Copy, Default)]
struct PtrHash;

impl std::hash::BuildHasher for PtrHash {
    type Hasher = KeyHasher;
    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// The address of a signal, the key of [`Held`]'s `by_ptr`.
fn addr(s: &Signal) -> usize {
    std::ptr::from_ref(s) as usize
}

/// The [`Key`] of `text` under `prefix` (`b'm'` machine, `b'w'` workload, `b's'` service,
/// `b'e'` entity).
fn key(prefix: u8, text: &str) -> Key {
    use std::hash::{BuildHasher, Hasher};
    let mut h = FastHash.build_hasher();
    h.write_u8(prefix);
    h.write(text.as_bytes());
    h.finish()
}

/// The [`key`] of the workload of `s` ([`daytwo_rules::join::workload_of`]), its name
/// written into a buffer kept for the next.
fn workload_key(s: &Signal) -> Option<Key> {
    let w = daytwo_rules::join::workload_parts(s)?;
    Some(crate::topology::with_name_buf(|buf| {
        w.write_to(buf);
        key(b'w', buf)
    }))
}

/// The keys a held signal can be found under, with their prefixes: entity, machine, workload,
/// service (see [`key`]); only those whose prefix `wanted` (each costs attribute lookups).
fn held_keys(s: &Signal, wanted: impl Fn(u8) -> bool) -> Vec<(u8, Key)> {
    let mut keys = Vec::with_capacity(4);
    if wanted(b'e') {
        keys.push((b'e', key(b'e', &s.entity.key())));
    }
    if wanted(b'm') {
        keys.extend(daytwo_rules::join::machine_of(s).map(|m| (b'm', key(b'm', m))));
    }
    if wanted(b'w') {
        keys.extend(workload_key(s).map(|k| (b'w', k)));
    }
    if wanted(b's') {
        keys.extend(daytwo_rules::join::service_of(s).map(|v| (b's', key(b's', v))));
    }
    keys
}

/// The prefix of the [`held_keys`] a late joined signal looks triggers up by for `relation`
/// (see [`JoinView::triggers`]), or `None` when it looks at every armed trigger.
fn key_prefix(relation: Relation) -> Option<u8> {
    match relation {
        Relation::SameHost | Relation::RunsOn => Some(b'm'),
        Relation::OwnedBy => Some(b'w'),
        Relation::SameEntity => Some(b'e'),
        Relation::Calls => Some(b's'),
        Relation::UpstreamOf | Relation::SameCluster | Relation::Mounts => None,
    }
}

/// The key of the queue of held triggers that armed `rule`, under `key` (one of
/// [`held_keys`]) or, for relations with no key, under all of them.
fn armed_key(rule: &str, key: Option<Key>) -> Key {
    use std::hash::{BuildHasher, Hasher};
    let mut h = FastHash.build_hasher();
    h.write_u8(b't');
    h.write(rule.as_bytes());
    match key {
        Some(k) => h.write_u64(k),
        None => h.write_u8(0),
    }
    h.finish()
}

/// Every key a held signal is found under: as a join candidate, the [`held_keys`] that the
/// relations of the joins listening for its event (`joined_by`) look candidates up by; as a
/// trigger that armed the rules `armed`, for each rule the keys its trigger relations look up
/// ([`key_prefix`], see [`JoinView::triggers`]).
fn entry_keys(s: &Signal, armed: &[&Rule], joined_by: &[Relation]) -> Vec<Key> {
    let by = |relations: &[Relation], prefix: u8| {
        relations.iter().any(|&rel| key_prefix(rel) == Some(prefix))
    };
    let triggered: Vec<Vec<Relation>> = armed
        .iter()
        .map(|rule| rule.trigger_relations().collect())
        .collect();
    let keys = held_keys(s, |prefix| {
        by(joined_by, prefix) || triggered.iter().any(|rels| by(rels, prefix))
    });
    let mut all = Vec::with_capacity(keys.len() * (1 + armed.len()) + armed.len());
    for (rule, relations) in armed.iter().zip(&triggered) {
        let r = rule.id();
        if relations.iter().any(|&rel| key_prefix(rel).is_none()) {
            all.push(armed_key(r, None));
        }
        all.extend(
            keys.iter()
                .filter(|(prefix, _)| by(relations, *prefix))
                .map(|(_, k)| armed_key(r, Some(*k))),
        );
    }
    all.extend(
        keys.iter()
            .filter(|(prefix, _)| by(joined_by, *prefix))
            .map(|(_, k)| *k),
    );
    all
}

fn insert_ordered(q: &mut Queue, e: Arc<Entry>) {
    let t = e.signal.time;
    // Most signals arrive in event-time order: an append.
    if q.back().is_none_or(|(last, _)| *last <= t) {
        q.push_back((t, e));
        return;
    }
    let at = partition_from_back(q, |x| x <= t);
    q.insert(at, (t, e));
}

/// `q.partition_point(|(t, _)| below(*t))`, searched from the back: the index of the first
/// entry whose time is not `below`. Lookups are mostly about recent event times (a join's
/// window ends at or near the newest signal), whose entries are the last few of a queue that
/// holds up to the join horizon: steps of 1, 2, 4, … back from the end find the boundary in
/// about log2(entries after it) reads of recently written memory, where a binary search over
/// the whole queue reads log2(len) entries spread over all of it (cache misses, mostly).
fn partition_from_back(q: &Queue, below: impl Fn(Timestamp) -> bool) -> usize {
    // Every entry at `hi` or later is not `below`.
    let mut hi = q.len();
    let mut step = 1;
    let lo = loop {
        if step > hi {
            break 0;
        }
        let i = hi - step;
        if below(q[i].0) {
            break i + 1;
        }
        hi = i;
        step *= 2;
    };
    // Entries before `lo` are `below`; the boundary is in lo..=hi.
    let (mut lo, mut hi) = (lo, hi);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if below(q[mid].0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

fn in_range(q: &Queue, from: Timestamp, to: Timestamp) -> impl Iterator<Item = &Signal> {
    let start = partition_from_back(q, |t| t < from);
    q.range(start..)
        .take_while(move |(t, _)| *t <= to)
        .map(|(_, e)| &*e.signal)
}

impl EventQueue {
    /// Whether some held signal of this event other than `except` may fall within
    /// `from..=to`. A signal that arrives in event-time order asks about triggers later than
    /// itself, which have not come yet: looking at the newest few answers that without a key
    /// or a search.
    fn may_hold(&self, from: Timestamp, to: Timestamp, except: &Signal) -> bool {
        for (t, e) in self.all.iter().rev().take(4) {
            if *t < from {
                return false;
            }
            if *t <= to && !std::ptr::eq(&*e.signal, except) {
                return true;
            }
        }
        // Out of order, or several at one time: the search decides.
        self.all.front().is_some_and(|(first, _)| *first <= to)
    }

    fn pop_front(&mut self) -> Option<Arc<Entry>> {
        let (_, e) = self.all.pop_front()?;
        for k in &e.keys {
            if let Some(q) = self.by_key.get_mut(k) {
                if let Some(i) = q.iter().position(|(_, x)| Arc::ptr_eq(x, &e)) {
                    q.remove(i);
                }
                if q.is_empty() {
                    self.by_key.remove(k);
                }
            }
        }
        Some(e)
    }
}

impl Held {
    /// Holds signals for `horizon` of event time behind the newest one seen.
    pub fn new(horizon: Duration) -> Self {
        Held {
            horizon,
            ..Default::default()
        }
    }

    pub fn set_horizon(&mut self, horizon: Duration) {
        self.horizon = horizon;
    }

    /// Holds `s` if some rule joins on its event (sharing it, not copying it); drops what fell
    /// behind the horizon. [`match_rules`] on the same `Arc` then finds the held entry at once.
    pub fn insert(&mut self, rules: &RuleSet, s: &Arc<Signal>) {
        if !rules.held_events().contains(&s.name) {
            return;
        }
        self.newest = self.newest.max(s.time);
        let cutoff = self.newest.minus(self.horizon);
        let prepared = Prepared::new();
        let keys = entry_keys(
            s,
            &rules.armed_rules(s, &prepared),
            rules.join_relations(&s.name),
        );
        let e = Arc::new(Entry {
            signal: Arc::clone(s),
            prepared,
            keys,
        });
        if !self.by_event.contains_key(&s.name) {
            self.by_event.insert(s.name.clone(), EventQueue::default());
        }
        let Some(q) = self.by_event.get_mut(&s.name) else {
            return;
        };
        for k in &e.keys {
            match q.by_key.get_mut(k) {
                Some(kq) => insert_ordered(kq, e.clone()),
                None => {
                    q.by_key
                        .insert(*k, VecDeque::from([(e.signal.time, e.clone())]));
                }
            }
        }
        self.by_ptr.insert(addr(s), e.clone());
        // Most signals arrive in event-time order, so this is an append.
        insert_ordered(&mut q.all, e);
        self.len += 1;
        while q.all.front().is_some_and(|(t, _)| *t < cutoff) || q.all.len() > HELD_PER_EVENT {
            if let Some(e) = q.pop_front() {
                forget_ptr(&mut self.by_ptr, &e);
            }
            self.len -= 1;
            self.dropped += 1;
        }
        if self.len > HELD_MAX {
            self.shrink();
        }
    }

    /// Drops everything behind the horizon, and the oldest half of the largest queue.
    fn shrink(&mut self) {
        let cutoff = self.newest.minus(self.horizon);
        for q in self.by_event.values_mut() {
            while q.all.front().is_some_and(|(t, _)| *t < cutoff) {
                if let Some(e) = q.pop_front() {
                    forget_ptr(&mut self.by_ptr, &e);
                }
                self.len -= 1;
                self.dropped += 1;
            }
        }
        if let Some(q) = self.by_event.values_mut().max_by_key(|q| q.all.len()) {
            for _ in 0..q.all.len() / 2 {
                if let Some(e) = q.pop_front() {
                    forget_ptr(&mut self.by_ptr, &e);
                }
                self.len -= 1;
                self.dropped += 1;
            }
        }
        self.by_event.retain(|_, q| !q.all.is_empty());
    }

    /// The held entry of `s` (the very signal held), if `s` is held.
    fn entry(&self, s: &Signal) -> Option<&Entry> {
        self.by_ptr
            .get(&addr(s))
            .map(|e| &**e)
            .filter(|e| std::ptr::eq(&*e.signal, s))
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Signals dropped (past the horizon or the count bound).
    pub fn dropped_total(&self) -> u64 {
        self.dropped
    }
}

/// Forgets the address of a dropped entry, unless another entry holds the same signal.
fn forget_ptr(by_ptr: &mut HashMap<usize, Arc<Entry>, PtrHash>, e: &Arc<Entry>) {
    let a = addr(&e.signal);
    if by_ptr.get(&a).is_some_and(|x| Arc::ptr_eq(x, e)) {
        by_ptr.remove(&a);
    }
}

/// What a rule's joins see: the held signals and the topology.
pub struct JoinView<'a> {
    pub held: &'a Held,
    pub topology: &'a Topology,
    /// The signal being matched, shared with the matches that name it even when it is not
    /// held.
    pub current: Option<&'a Arc<Signal>>,
}

impl JoinSource for JoinView<'_> {
    fn signals(&self, event: &str, from: Timestamp, to: Timestamp) -> Vec<&Signal> {
        let Some(q) = self.held.by_event.get(event) else {
            return Vec::new();
        };
        in_range(&q.all, from, to).collect()
    }

    fn prepared(&self, s: &Signal) -> Option<&Prepared> {
        // Only for the very signal held: the variables belong to that one.
        self.held.entry(s).map(|e| &e.prepared)
    }

    fn shared(&self, s: &Signal) -> Option<Arc<Signal>> {
        match self.current {
            Some(c) if std::ptr::eq(&**c, s) => Some(Arc::clone(c)),
            _ => self.held.entry(s).map(|e| Arc::clone(&e.signal)),
        }
    }

    fn candidates(
        &self,
        events: &[String],
        from: Timestamp,
        to: Timestamp,
        relation: Relation,
        anchor: &Anchor,
    ) -> Vec<&Signal> {
        let mut queues = events
            .iter()
            .filter_map(|e| self.held.by_event.get(e.as_str()))
            .peekable();
        if queues.peek().is_none() {
            return Vec::new();
        }
        // The anchor's index keys, once for all the events.
        let keys: Vec<Key> = match relation {
            Relation::SameHost | Relation::RunsOn => {
                anchor.machines.iter().map(|m| key(b'm', m)).collect()
            }
            Relation::OwnedBy => anchor.workloads.iter().map(|w| key(b'w', w)).collect(),
            Relation::SameEntity => vec![key(b'e', &anchor.signal.entity.key())],
            // Only the services it called at the anchor's time: the relation asks no more.
            Relation::Calls => match daytwo_rules::join::service_of(anchor.signal) {
                Some(svc) => self
                    .topology
                    .callees_at(svc, anchor.signal.time)
                    .map(|c| key(b's', c))
                    .collect(),
                None => Vec::new(),
            },
            Relation::UpstreamOf | Relation::SameCluster | Relation::Mounts => {
                return queues.flat_map(|q| in_range(&q.all, from, to)).collect();
            }
        };
        let mut out = Vec::new();
        for q in queues {
            for kq in keys.iter().filter_map(|k| q.by_key.get(k)) {
                out.extend(in_range(kq, from, to));
            }
        }
        out
    }

    fn triggers(
        &self,
        rule: &str,
        event: &str,
        from: Timestamp,
        to: Timestamp,
        relation: Relation,
        joined: &Signal,
    ) -> Vec<&Signal> {
        let Some(q) = self
            .held
            .by_event
            .get(event)
            .filter(|q| q.may_hold(from, to, joined))
        else {
            return Vec::new();
        };
        use daytwo_rules::join::{machine_of, service_of};
        // The keys under which a trigger that `joined` relates to is held.
        let keys: Option<Vec<Key>> = match relation {
            Relation::SameHost | Relation::RunsOn => machine_of(joined).map(|m| vec![key(b'm', m)]),
            Relation::OwnedBy => workload_key(joined).map(|k| vec![k]),
            Relation::SameEntity => Some(vec![key(b'e', &joined.entity.key())]),
            Relation::Calls => service_of(joined).map(|svc| {
                self.topology
                    .calls()
                    .callers(svc)
                    .map(|c| key(b's', c))
                    .collect()
            }),
            Relation::UpstreamOf | Relation::SameCluster | Relation::Mounts => None,
        };
        // Triggers are indexed by their own attributes (machine, workload, service): a late
        // cause finds the triggers that name its machine or workload themselves, as every
        // pod-scoped signal does (k8s.node.name, owner attributes).
        match keys {
            Some(keys) => keys
                .iter()
                .filter_map(|k| q.by_key.get(&armed_key(rule, Some(*k))))
                .flat_map(|kq| in_range(kq, from, to))
                .collect(),
            _ => q
                .by_key
                .get(&armed_key(rule, None))
                .map(|kq| in_range(kq, from, to).collect())
                .unwrap_or_default(),
        }
    }

    fn machines(&self, s: &Signal, at: Timestamp) -> Vec<String> {
        self.topology.machines(s, at)
    }

    fn workloads(&self, s: &Signal, at: Timestamp) -> Vec<String> {
        self.topology.workloads(s, at)
    }

    fn claims(&self, s: &Signal, at: Timestamp) -> Vec<String> {
        self.topology.claims(s, at)
    }

    fn calls(&self, caller: &str, callee: &str, at: Timestamp) -> bool {
        self.topology.calls_at(caller, callee, at)
    }

    fn reaches(&self, from: &str, to: &str, at: Timestamp) -> bool {
        self.topology.reaches(from, to, at)
    }
}

/// Every rule match a signal brings: the rules it triggers (with their joins), then the
/// matches of earlier triggers that this signal completes as a joined signal. Best first.
/// `held` must already hold `s` (see [`Held::insert`]; the same `Arc`, whose held entry
/// carries the variables converted when it was held).
///
/// The matches' texts are not rendered: the caller renders ([`RuleSet::render`]) those it
/// keeps (most matches repeat a cause their incident names already).
pub fn match_rules(
    rules: &RuleSet,
    held: &Held,
    topology: &Topology,
    s: &Arc<Signal>,
) -> Vec<RuleMatch> {
    let view = JoinView {
        held,
        topology,
        current: Some(s),
    };
    let s: &Signal = s;
    let mut matches = rules.evaluate_unrendered(s, &view);
    if !held.is_empty() {
        let late = rules.evaluate_joined_unrendered(s, &view);
        if !late.is_empty() {
            matches.extend(late);
            matches.sort_by(|a, b| {
                b.hypothesis
                    .score
                    .total_cmp(&a.hypothesis.score)
                    .then_with(|| a.rule.cmp(&b.rule))
            });
        }
    }
    matches
}

/// The rule id the generic ranker uses for hypotheses no rule proposed.
pub const GENERIC_RULE: &str = "daytwo.generic";
/// How many non-incident signals are kept as context, in total and per host.
const RECENT_MAX: usize = 16_384;
const RECENT_PER_KEY: usize = 256;
/// Two distinct symptoms on one entity open an incident when no rule explains them.
pub const DEFAULT_QUORUM: usize = 2;

/// A key of the active-incident index: a 64-bit hash ([`key`]) of an entity key (`b'E'`), a
/// host (`b'H'`) or a namespace group (`b'G'`, [`group_key`]).
type TopoKey = u64;

fn entity_tkey(entity_key: &str) -> TopoKey {
    key(b'E', entity_key)
}

fn host_tkey(host: &str) -> TopoKey {
    key(b'H', host)
}

fn group_tkey(group: &str) -> TopoKey {
    key(b'G', group)
}

/// What the correlator knows about an active incident.
#[derive(Clone, Debug)]
struct Active {
    id: String,
    fingerprint: String,
    /// Fingerprints of its other rule hypotheses (another rule naming the same cause, such as
    /// a cascade and the Kubernetes rule for one NotReady node): a later match of any of them
    /// joins this incident instead of opening a second one for the same cause.
    aliases: Vec<String>,
    /// Every index key it is found under, once each: its entities' keys, its hosts and the
    /// namespace groups (`ns:<cluster>/<namespace>`) of its host-less signals.
    keys: HashSet<TopoKey, KeyHash>,
    last_signal_at: Timestamp,
}

/// What to do with one signal.
///
/// `hypotheses` are those the correlator proposes itself (the generic ranker's, for a signal
/// no rule matched). When rules matched, it is empty: the matches' own hypotheses are the
/// causes, and the caller takes them from its matches (rendering those it keeps, see
/// [`RuleSet::render`]) rather than the correlator copying every one.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Add the signal (and any new hypotheses) to this incident.
    Join {
        incident_id: String,
        hypotheses: Vec<Hypothesis>,
    },
    /// Open a new incident.
    Open {
        fingerprint: String,
        severity: Severity,
        /// The best match's title (empty while it is unrendered), or the correlator's own.
        title: String,
        /// Sorted by score, highest first.
        hypotheses: Vec<Hypothesis>,
        /// Held signals on the same host within the window before this one.
        context: Vec<Signal>,
    },
    /// Keep as context; no incident.
    Hold,
}

/// The correlator's state: active incidents (indexed by fingerprint and by entity/host) and
/// recent held signals per host. Every lookup is by key, so a decision costs the same with
/// ten or ten thousand active incidents.
#[derive(Debug)]
pub struct Correlator {
    window: Duration,
    /// Distinct warning symptoms on one entity within the window that open an incident.
    quorum: usize,
    /// Active incidents by slot (a freed slot is reused), and when each last had a signal
    /// (the same as its `last_signal_at`, in one dense array for the scans of
    /// [`Correlator::related_active`]).
    active: Vec<Option<Active>>,
    last_at: Vec<Timestamp>,
    free: Vec<u32>,
    /// Incident id → its slot.
    slot_of: HashMap<String, u32, FastHash>,
    by_fingerprint: HashMap<String, String, FastHash>,
    /// Entity key, host, namespace group ([`TopoKey`]) → the slots of the active incidents
    /// found under it, in no order. A hash collision of two keys could only make an incident
    /// under one a candidate for a signal about the other: with 64-bit hashes of the few
    /// thousand keys in play, odds of about 1 in 10^11.
    by_topology: HashMap<TopoKey, Vec<u32>, KeyHash>,
    /// Held signals by host (or entity key when there is no host), oldest first.
    recent: HashMap<String, VecDeque<Signal>>,
    recent_len: usize,
    /// Entity key → the most recently resolved incident that held it, and when it resolved
    /// (at most [`RESOLVED_MAX`]): a late rule match that would have joined it opens a new
    /// incident linked to it ([`Correlator::resolved_related`]).
    resolved: HashMap<String, (String, Timestamp)>,
    /// Fingerprints computed so far (rule, entity key and cluster → [`fingerprint`]), so that
    /// the SHA-256 of [`stable_id`] runs once per cause rather than once per rule match; at
    /// most [`FINGERPRINTS_MAX`], then started over. Keyed by a hash of the three parts; the
    /// parts themselves are compared on a hit, so two causes never share a fingerprint (a
    /// cause whose hash another holds is computed each time, not remembered).
    fingerprints: HashMap<u64, Remembered, KeyHash>,
    /// Applied to the hash of the parts: all ones; a test clears it so that every fingerprint
    /// shares one hash and only the comparison of the parts tells them apart.
    fingerprint_mask: u64,
}

/// One fingerprint [`Correlator`] remembers, with the parts it was made of.
#[derive(Debug)]
struct Remembered {
    rule: Box<str>,
    entity_key: Box<str>,
    cluster: Box<str>,
    fingerprint: String,
}

/// How many fingerprints [`Correlator`] remembers.
const FINGERPRINTS_MAX: usize = 65_536;

/// How many entities of resolved incidents are remembered for `related` links.
const RESOLVED_MAX: usize = 4096;

/// The fingerprint of an incident: rule + root entity + cluster, never text.
pub fn fingerprint(rule: &str, entity: &Entity) -> String {
    stable_id(&[
        "fingerprint/v1",
        rule,
        &entity.key(),
        entity.cluster().unwrap_or(""),
    ])
}

/// The key under which an active incident answers for its root causes' entities: a rule that
/// blames another entity for a signal (a cascade naming a node for its pod's crash) joins the
/// incident already open for that entity, whichever rule opened it.
fn cause_key(entity: &Entity) -> String {
    fingerprint(CAUSE_RULE, entity)
}

/// The rule id of [`cause_key`]s.
const CAUSE_RULE: &str = "daytwo.cause";

/// The generic ranker's hypothesis for a critical signal no rule explains.
pub fn generic_hypothesis(s: &Signal) -> Hypothesis {
    Hypothesis {
        entity: s.entity.clone(),
        score: 0.5,
        rule: GENERIC_RULE.to_string(),
        explanation: format!(
            "No rule explains this {} signal on {} {}; it is the earliest critical signal on this entity. {}",
            s.name, s.entity.kind, s.entity.name, s.message
        )
        .trim_end()
        .to_string(),
        remediation: format!(
            "Inspect {} {} around {} and consider writing a rule for `{}` (docs/rules.md).",
            s.entity.kind, s.entity.name, s.time, s.name
        ),
        evidence: s.evidence.clone(),
    }
}

impl Correlator {
    pub fn new(window: Duration) -> Self {
        Correlator {
            window,
            quorum: DEFAULT_QUORUM,
            active: Vec::new(),
            last_at: Vec::new(),
            free: Vec::new(),
            slot_of: HashMap::default(),
            by_fingerprint: HashMap::default(),
            by_topology: HashMap::default(),
            recent: HashMap::new(),
            recent_len: 0,
            resolved: HashMap::new(),
            fingerprints: HashMap::default(),
            fingerprint_mask: u64::MAX,
        }
    }

    /// [`fingerprint`], remembered.
    fn fingerprint(&mut self, rule: &str, entity: &Entity) -> String {
        self.fingerprint_keyed(rule, &entity.key(), entity)
    }

    /// [`Correlator::fingerprint`], with the entity's key computed already.
    fn fingerprint_keyed(&mut self, rule: &str, entity_key: &str, entity: &Entity) -> String {
        use std::hash::{BuildHasher, Hasher};
        let cluster = entity.cluster().unwrap_or("");
        let mut h = FastHash.build_hasher();
        for part in [rule, entity_key, cluster] {
            h.write_usize(part.len());
            h.write(part.as_bytes());
        }
        let hash = h.finish() & self.fingerprint_mask;
        let remembered = self.fingerprints.get(&hash);
        if let Some(r) = remembered
            && &*r.rule == rule
            && &*r.entity_key == entity_key
            && &*r.cluster == cluster
        {
            return r.fingerprint.clone();
        }
        let fp = stable_id(&["fingerprint/v1", rule, entity_key, cluster]);
        if remembered.is_some() {
            // Another cause holds this hash: this one is computed each time.
            return fp;
        }
        if self.fingerprints.len() >= FINGERPRINTS_MAX {
            self.fingerprints.clear();
        }
        self.fingerprints.insert(
            hash,
            Remembered {
                rule: rule.into(),
                entity_key: entity_key.into(),
                cluster: cluster.into(),
                fingerprint: fp.clone(),
            },
        );
        fp
    }

    /// Sets the quorum: how many distinct warning symptoms (signal names) on one entity within
    /// the window open an incident when no rule explains them (at least 1).
    pub fn with_quorum(mut self, quorum: usize) -> Self {
        self.quorum = quorum.max(1);
        self
    }

    /// Starts (or refreshes) tracking an active incident; forgets it once it is resolved.
    pub fn track(&mut self, inc: &Incident) {
        self.forget(&inc.id);
        if !inc.status.is_active() {
            self.remember_resolved(inc);
            return;
        }
        let mut a = Active {
            id: inc.id.clone(),
            fingerprint: inc.fingerprint.clone(),
            aliases: Vec::new(),
            keys: HashSet::default(),
            last_signal_at: inc.updated_at,
        };
        for h in &inc.root_causes {
            a.keys.insert(entity_tkey(&h.entity.key()));
            a.keys.extend(h.entity.host().map(host_tkey));
        }
        for s in &inc.signals {
            a.keys.insert(entity_tkey(&s.entity.key()));
            a.keys.extend(s.host().map(host_tkey));
            a.keys.extend(group_key(s).as_deref().map(group_tkey));
            a.last_signal_at = a.last_signal_at.max(s.time);
        }
        self.by_fingerprint
            .insert(a.fingerprint.clone(), inc.id.clone());
        for h in &inc.root_causes {
            if h.rule == GENERIC_RULE {
                continue;
            }
            for fp in [fingerprint(&h.rule, &h.entity), cause_key(&h.entity)] {
                if fp != a.fingerprint && !self.by_fingerprint.contains_key(&fp) {
                    self.by_fingerprint.insert(fp.clone(), inc.id.clone());
                    a.aliases.push(fp);
                }
            }
        }
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.active.push(None);
                self.last_at.push(Timestamp::default());
                (self.active.len() - 1) as u32
            }
        };
        for k in &a.keys {
            self.by_topology.entry(*k).or_default().push(slot);
        }
        self.last_at[slot as usize] = a.last_signal_at;
        self.active[slot as usize] = Some(a);
        self.slot_of.insert(inc.id.clone(), slot);
    }

    pub fn forget(&mut self, incident_id: &str) {
        let Some(slot) = self.slot_of.remove(incident_id) else {
            return;
        };
        let Some(a) = self.active[slot as usize].take() else {
            return;
        };
        self.free.push(slot);
        for fp in std::iter::once(&a.fingerprint).chain(&a.aliases) {
            if self
                .by_fingerprint
                .get(fp)
                .is_some_and(|id| id == incident_id)
            {
                self.by_fingerprint.remove(fp);
            }
        }
        for k in &a.keys {
            if let Some(slots) = self.by_topology.get_mut(k) {
                if let Some(i) = slots.iter().position(|x| *x == slot) {
                    slots.swap_remove(i);
                }
                if slots.is_empty() {
                    self.by_topology.remove(k);
                }
            }
        }
    }

    /// The active incident with this fingerprint, if any.
    pub fn active_for(&self, fp: &str) -> Option<&str> {
        self.by_fingerprint.get(fp).map(String::as_str)
    }

    /// Decides what one signal does, given the rules that matched it (best first).
    pub fn decide(&mut self, s: &Signal, matches: &[RuleMatch]) -> Decision {
        self.decide_in(s, matches, None)
    }

    /// [`Correlator::decide`], with the machines the topology says the signal's entity ran on
    /// at its time counting as its hosts when joining related incidents.
    pub fn decide_in(
        &mut self,
        s: &Signal,
        matches: &[RuleMatch],
        topology: Option<&Topology>,
    ) -> Decision {
        // Asked of the topology only when a related incident is looked for: the index keys of
        // the machines the signal's entity ran on (no names copied or sorted).
        let hosts = || -> Vec<TopoKey> {
            let mut keys = Vec::new();
            if let Some(t) = topology {
                t.for_each_machine(s, s.time, |m| keys.push(host_tkey(m)));
            }
            keys
        };
        if let Some(top) = matches.first() {
            // Each blamed entity's key, once.
            let blamed: Vec<String> = matches.iter().map(|m| m.hypothesis.entity.key()).collect();
            let fp = self.fingerprint_keyed(&top.rule, &blamed[0], &top.hypothesis.entity);
            // The matches' hypotheses are the caller's (see [`Decision`]).
            let hypotheses = Vec::new();
            // Below critical, for a host-less signal (a service's own anomaly, grouped by
            // namespace), a rule's explanation enriches the incident the signal already belongs
            // to (a caller's anomaly explained by its callee's is part of the same outage)
            // rather than splitting it into an incident of its own.
            if self.active_for(&fp).is_none()
                && s.host().is_none()
                && matches.iter().all(|m| m.severity < Severity::Critical)
                && let Some(id) = self.related_active_keyed(s, hosts())
            {
                return Decision::Join {
                    incident_id: id,
                    hypotheses,
                };
            }
            // The best match's fingerprint first, then any other match's: an incident already
            // open for the same cause under another rule takes the signal.
            let mut active = self.active_for(&fp).map(str::to_string);
            for (m, key) in matches.iter().zip(&blamed).skip(1) {
                if active.is_some() {
                    break;
                }
                let other = self.fingerprint_keyed(&m.rule, key, &m.hypothesis.entity);
                active = self.active_for(&other).map(str::to_string);
            }
            // A rule that blames another entity than the signal's own: the incident already
            // open for that cause takes the signal.
            if active.is_none() {
                let own = s.entity.key();
                for (m, key) in matches.iter().zip(&blamed) {
                    if active.is_some() {
                        break;
                    }
                    if *key != own {
                        let cause = self.fingerprint_keyed(CAUSE_RULE, key, &m.hypothesis.entity);
                        active = self.active_for(&cause).map(str::to_string);
                    }
                }
            }
            // A match completed late: its other signals (the trigger, or a joined signal that
            // came first) or its root entity are already part of an open incident, which
            // takes it (a Service's endpoint loss that opened an incident before its pod's
            // crash arrived). Resolved incidents are forgotten, so they never take it.
            let active = active.or_else(|| self.late_match_home(s, matches));
            if let Some(id) = active {
                return Decision::Join {
                    incident_id: id,
                    hypotheses,
                };
            }
            let severity = matches
                .iter()
                .map(|m| m.severity)
                .max()
                .unwrap_or(Severity::Warning);
            return Decision::Open {
                fingerprint: fp,
                severity,
                title: top.title.clone(),
                hypotheses,
                context: self.context_for(s),
            };
        }
        if let Some(id) = self.related_active_keyed(s, hosts()) {
            return Decision::Join {
                incident_id: id,
                hypotheses: Vec::new(),
            };
        }
        if s.severity == Severity::Critical {
            let fp = self.fingerprint(GENERIC_RULE, &s.entity);
            let h = generic_hypothesis(s);
            if let Some(id) = self.active_for(&fp) {
                // Outside the window, but the same unexplained cause is still open: dedupe.
                return Decision::Join {
                    incident_id: id.to_string(),
                    hypotheses: vec![h],
                };
            }
            return Decision::Open {
                fingerprint: fp,
                severity: Severity::Critical,
                title: format!("{} on {} {}", s.name, s.entity.kind, s.entity.name),
                hypotheses: vec![h],
                context: self.context_for(s),
            };
        }
        self.hold(s);
        if s.severity >= Severity::Warning
            && let Some(d) = self.quorum_reached(s)
        {
            return d;
        }
        Decision::Hold
    }

    /// Records that a signal joined an incident at its event time.
    pub fn touch(&mut self, incident_id: &str, s: &Signal) {
        let Some(&slot) = self.slot_of.get(incident_id) else {
            return;
        };
        let Some(a) = self.active[slot as usize].as_mut() else {
            return;
        };
        a.last_signal_at = a.last_signal_at.max(s.time);
        self.last_at[slot as usize] = a.last_signal_at;
        let keys = [
            Some(entity_tkey(&s.entity.key())),
            s.host().map(host_tkey),
            group_key(s).as_deref().map(group_tkey),
        ];
        for k in keys.into_iter().flatten() {
            if a.keys.insert(k) {
                self.by_topology.entry(k).or_default().push(slot);
            }
        }
    }

    /// The active incident whose last signal is nearest before or after `s` within the
    /// window (the most recent one; ties: the smallest id) among those found under `keys`.
    fn newest_under(&self, keys: &[TopoKey], s: &Signal) -> Option<String> {
        let mut best: Option<(Timestamp, &str)> = None;
        for slot in keys
            .iter()
            .filter_map(|k| self.by_topology.get(k))
            .flatten()
        {
            let last = self.last_at[*slot as usize];
            if last.abs_diff(s.time) > self.window || best.is_some_and(|(b, _)| last < b) {
                continue;
            }
            let Some(a) = &self.active[*slot as usize] else {
                continue;
            };
            if best.is_none_or(|(b, id)| last > b || a.id.as_str() < id) {
                best = Some((last, &a.id));
            }
        }
        best.map(|(_, id)| id.to_string())
    }

    #[cfg(test)]
    fn related_active(&self, s: &Signal, hosts: &[String]) -> Option<String> {
        self.related_active_keyed(s, hosts.iter().map(|h| host_tkey(h)).collect())
    }

    /// [`Correlator::related_active`], with the other hosts as index keys ([`host_tkey`]).
    fn related_active_keyed(&self, s: &Signal, hosts: Vec<TopoKey>) -> Option<String> {
        let mut keys = hosts;
        keys.push(entity_tkey(&s.entity.key()));
        keys.extend(s.host().map(host_tkey));
        keys.extend(group_key(s).as_deref().map(group_tkey));
        self.newest_under(&keys, s)
    }

    /// Remembers the entities of a resolved incident, for [`Correlator::resolved_related`].
    fn remember_resolved(&mut self, inc: &Incident) {
        let at = inc.resolved_at.unwrap_or(inc.updated_at);
        let keys = inc
            .root_causes
            .iter()
            .map(|h| h.entity.key())
            .chain(inc.signals.iter().map(|s| s.entity.key()));
        for k in keys {
            self.resolved.insert(k, (inc.id.clone(), at));
        }
        while self.resolved.len() > RESOLVED_MAX {
            let Some(oldest) = self
                .resolved
                .iter()
                .min_by(|a, b| a.1.1.cmp(&b.1.1).then_with(|| a.0.cmp(b.0)))
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.resolved.remove(&oldest);
        }
    }

    /// The resolved incident a late rule match would have joined had it still been open (the
    /// one that held its earlier signals' entities or the entity it blames, most recently
    /// resolved first): the new incident the match opens links to it (`related`).
    pub fn resolved_related(&self, s: &Signal, matches: &[RuleMatch]) -> Option<String> {
        matches
            .iter()
            .filter(|m| m.signals.iter().any(|x| x.id != s.id))
            .flat_map(|m| {
                m.signals
                    .iter()
                    .filter(|x| x.id != s.id)
                    .map(|x| x.entity.key())
                    .chain([m.hypothesis.entity.key()])
            })
            .filter_map(|k| self.resolved.get(&k))
            .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(&a.0)))
            .map(|(id, _)| id.clone())
    }

    /// The open incident a late rule match belongs to: one that already holds the entity of
    /// another of the match's signals (they arrived before `s`) or of its root cause. The
    /// most recently active wins; ties by id.
    fn late_match_home(&self, s: &Signal, matches: &[RuleMatch]) -> Option<String> {
        matches
            .iter()
            .filter(|m| m.signals.iter().any(|x| x.id != s.id))
            .flat_map(|m| {
                m.signals
                    .iter()
                    .filter(|x| x.id != s.id)
                    .map(|x| x.entity.key())
                    .chain([m.hypothesis.entity.key()])
            })
            .filter_map(|k| self.by_topology.get(&entity_tkey(&k)))
            .flatten()
            .filter_map(|slot| self.active[*slot as usize].as_ref())
            .max_by(|a, b| {
                a.last_signal_at
                    .cmp(&b.last_signal_at)
                    .then_with(|| b.id.cmp(&a.id))
            })
            .map(|a| a.id.clone())
    }

    /// When the held warning symptoms on `s`'s entity (s included) reach the quorum, takes them
    /// out of the held context and opens (or joins) the generic incident for that entity.
    fn quorum_reached(&mut self, s: &Signal) -> Option<Decision> {
        let key = recent_key(s);
        let entity = s.entity.key();
        let lower = s.time.minus(self.window);
        let q = self.recent.get(&key)?;
        let same = |r: &Signal| r.entity.key() == entity && r.time >= lower && r.time <= s.time;
        // In a namespace group (one application) symptoms on different services add up, and
        // the other services' held symptoms within the window come along as context: one of
        // them may be the cause the ranker names. Signals arrive out of event-time order
        // (detections are measured before they are sent), so the window is either side.
        let whole_group = key.starts_with("ns:");
        let window = self.window;
        let in_window = |r: &Signal| r.time.abs_diff(s.time) <= window;
        let names: BTreeSet<String> = q
            .iter()
            .filter(|r| r.severity >= Severity::Warning)
            .filter_map(|r| {
                if whole_group && in_window(r) {
                    Some(format!(
                        "{} on {} {}",
                        symptom(r),
                        r.entity.kind,
                        r.entity.name
                    ))
                } else if same(r) {
                    Some(symptom(r))
                } else {
                    None
                }
            })
            .collect();
        if names.len() < self.quorum {
            return None;
        }
        let count = names.len();
        let symptoms = names.into_iter().collect::<Vec<_>>().join(", ");
        let q = self.recent.get_mut(&key)?;
        let (mut taken, keep): (Vec<Signal>, Vec<Signal>) = q
            .drain(..)
            .partition(|r| same(r) || (whole_group && in_window(r)));
        *q = keep.into();
        self.recent_len -= taken.len();
        taken.retain(|r| r.id != s.id);
        let fp = self.fingerprint(GENERIC_RULE, &s.entity);
        let severity = taken
            .iter()
            .map(|r| r.severity)
            .chain([s.severity])
            .max()
            .unwrap_or(s.severity);
        let earliest = taken
            .iter()
            .map(|r| r.time)
            .chain([s.time])
            .min()
            .unwrap_or(s.time);
        let h = Hypothesis {
            entity: s.entity.clone(),
            score: 0.4,
            rule: GENERIC_RULE.to_string(),
            explanation: format!(
                "{count} distinct symptoms on {} {} within {} s, starting {earliest}: {symptoms}. No rule names a cause; \
                 this entity is where they meet.",
                s.entity.kind,
                s.entity.name,
                self.window.as_secs()
            ),
            remediation: format!(
                "Look at {} {} first; the signals below are in time order. A rule for this pattern \
                 (docs/rules.md) would name the cause next time.",
                s.entity.kind, s.entity.name
            ),
            evidence: taken
                .iter()
                .chain([s])
                .flat_map(|r| r.evidence.iter().take(3).cloned())
                .collect(),
        };
        if let Some(id) = self.active_for(&fp) {
            return Some(Decision::Join {
                incident_id: id.to_string(),
                hypotheses: vec![h],
            });
        }
        Some(Decision::Open {
            fingerprint: fp,
            severity,
            title: format!("{count} symptoms on {} {}", s.entity.kind, s.entity.name),
            hypotheses: vec![h],
            context: taken,
        })
    }

    fn hold(&mut self, s: &Signal) {
        let key = recent_key(s);
        let q = self.recent.entry(key).or_default();
        q.push_back(s.clone());
        self.recent_len += 1;
        if q.len() > RECENT_PER_KEY {
            q.pop_front();
            self.recent_len -= 1;
        }
        if self.recent_len > RECENT_MAX {
            // Drop the key whose newest held signal is oldest: the stalest context goes first.
            if let Some(stale) = self
                .recent
                .iter()
                .min_by_key(|(_, q)| q.back().map(|s| s.time))
                .map(|(k, _)| k.clone())
                && let Some(q) = self.recent.remove(&stale)
            {
                self.recent_len -= q.len();
            }
        }
    }

    fn context_for(&mut self, s: &Signal) -> Vec<Signal> {
        let lower = s.time.minus(self.window);
        let Some(q) = self.recent.get_mut(&recent_key(s)) else {
            return Vec::new();
        };
        let (take, keep): (Vec<Signal>, Vec<Signal>) = q
            .drain(..)
            .partition(|r| r.time >= lower && r.time <= s.time);
        self.recent_len -= take.len();
        if keep.is_empty() {
            self.recent.remove(&recent_key(s));
        } else {
            *q = keep.into();
        }
        take
    }
}

/// What makes two signals distinct symptoms: the event name, and for Prometheus alerts (one
/// event name for every alert) the alert name.
fn symptom(s: &Signal) -> String {
    let detail = ["prometheus.alert.name", "metric.name"]
        .iter()
        .find_map(|k| s.attributes.get(*k).and_then(|v| v.as_str()));
    match detail {
        Some(d) => format!("{} {d}", s.name),
        None => s.name.clone(),
    }
}

/// Held context is grouped by host, else by namespace, else by entity.
fn recent_key(s: &Signal) -> String {
    match s.host() {
        Some(h) => format!("host:{h}"),
        None => group_key(s).unwrap_or_else(|| format!("entity:{}", s.entity.key())),
    }
}

/// The namespace group of a host-less signal: `ns:<cluster>/<namespace>`.
fn group_key(s: &Signal) -> Option<String> {
    if s.host().is_some() {
        return None;
    }
    let ns = s.attr("k8s.namespace.name")?.as_str()?;
    let cluster = s
        .attr("k8s.cluster.name")
        .and_then(|v| v.as_str())
        .unwrap_or("");
    Some(format!("ns:{cluster}/{ns}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{EntityKind, IncidentStatus};

    fn sig(id: &str, host: &str, cg: &str, secs: i64, sev: Severity) -> Signal {
        Signal {
            id: id.into(),
            name: "test.event".into(),
            time: Timestamp::from_unix_secs(secs),
            severity: sev,
            entity: Entity::new(EntityKind::Cgroup, cg)
                .with_attr("host.name", host)
                .with_attr("daytwo.cgroup.path", cg),
            resource: [("host.name".to_string(), host.into())]
                .into_iter()
                .collect(),
            attributes: Default::default(),
            message: String::new(),
            evidence: vec![],
        }
    }

    fn rule_match(s: &Signal, rule: &str) -> RuleMatch {
        RuleMatch {
            rule: rule.into(),
            severity: Severity::Critical,
            title: "t".into(),
            hypothesis: Hypothesis {
                entity: s.entity.clone(),
                score: 0.9,
                rule: rule.into(),
                explanation: "e".into(),
                remediation: "r".into(),
                evidence: vec![],
            },
            signals: vec![Arc::new(s.clone())],
            rendered: true,
        }
    }

    /// `c.decide`, with the rule matches' hypotheses in the decision, as the pipeline adds
    /// them to the incident.
    fn decide(c: &mut Correlator, s: &Signal, matches: &[RuleMatch]) -> Decision {
        let mut d = c.decide(s, matches);
        if let Decision::Join { hypotheses, .. } | Decision::Open { hypotheses, .. } = &mut d
            && !matches.is_empty()
        {
            assert!(
                hypotheses.is_empty(),
                "the correlator copied the matches' hypotheses"
            );
            *hypotheses = matches.iter().map(|m| m.hypothesis.clone()).collect();
        }
        d
    }

    fn open_incident(id: &str, d: &Decision, s: &Signal) -> Incident {
        let Decision::Open {
            fingerprint,
            severity,
            title,
            hypotheses,
            ..
        } = d
        else {
            panic!("expected open, got {d:?}")
        };
        Incident {
            id: id.into(),
            fingerprint: fingerprint.clone(),
            status: IncidentStatus::Open,
            severity: *severity,
            opened_at: s.time,
            updated_at: s.time,
            resolved_at: None,
            title: title.clone(),
            root_causes: hypotheses.clone(),
            signals: vec![s.clone()],
            links: vec![],
        }
    }

    #[test]
    fn same_rule_and_entity_dedupes_while_active() {
        let mut c = Correlator::new(Duration::from_secs(300));
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        let d = decide(&mut c, &a, &[rule_match(&a, "r")]);
        c.track(&open_incident("i1", &d, &a));
        let b = sig("b", "h", "/x", 5000, Severity::Critical);
        assert!(
            matches!(decide(&mut c, &b, &[rule_match(&b, "r")]), Decision::Join { ref incident_id, .. } if incident_id == "i1")
        );
    }

    /// The remembered fingerprints are the computed ones, for parts that run together alike
    /// ("ab" + "c" and "a" + "bc"), with and without a cluster, asked repeatedly and past the
    /// bound where the memory starts over.
    #[test]
    fn remembered_fingerprints_are_the_computed_ones() {
        remembered_fingerprints(u64::MAX);
        // Every fingerprint under one hash: the parts alone tell them apart.
        remembered_fingerprints(0);
    }

    fn remembered_fingerprints(mask: u64) {
        let mut c = Correlator::new(Duration::from_secs(300));
        c.fingerprint_mask = mask;
        let mut cases = Vec::new();
        for (rule, name) in [("ab", "c"), ("a", "bc"), ("abc", ""), ("", "abc")] {
            for cluster in [None, Some("east"), Some("")] {
                let mut e = Entity::new(EntityKind::Node, name);
                if let Some(cl) = cluster {
                    e = e.with_attr("k8s.cluster.name", cl);
                }
                cases.push((rule.to_string(), e));
            }
        }
        let mut seen = HashSet::new();
        for round in 0..3 {
            for (rule, e) in &cases {
                let want = fingerprint(rule, e);
                assert_eq!(c.fingerprint(rule, e), want, "round {round}: {rule} {e:?}");
                if round == 0 {
                    seen.insert(want);
                }
            }
        }
        // Distinct parts, distinct fingerprints.
        assert_eq!(seen.len(), cases.len());
        let past_bound = if mask == 0 {
            100
        } else {
            FINGERPRINTS_MAX + 10
        };
        for i in 0..past_bound {
            let e = Entity::new(EntityKind::Node, format!("n{i}"));
            assert_eq!(c.fingerprint("r", &e), fingerprint("r", &e));
        }
        assert!(c.fingerprints.len() <= FINGERPRINTS_MAX);
        let (rule, e) = &cases[0];
        assert_eq!(c.fingerprint(rule, e), fingerprint(rule, e));
    }

    #[test]
    fn different_cgroups_open_different_incidents() {
        let mut c = Correlator::new(Duration::from_secs(300));
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        let d = decide(&mut c, &a, &[rule_match(&a, "r")]);
        c.track(&open_incident("i1", &d, &a));
        let b = sig("b", "h", "/y", 101, Severity::Critical);
        assert!(matches!(
            decide(&mut c, &b, &[rule_match(&b, "r")]),
            Decision::Open { .. }
        ));
    }

    #[test]
    fn resolved_incident_never_swallows_new_signals() {
        let mut c = Correlator::new(Duration::from_secs(300));
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        let d = decide(&mut c, &a, &[rule_match(&a, "r")]);
        let mut inc = open_incident("i1", &d, &a);
        c.track(&inc);
        inc.status = IncidentStatus::Resolved;
        c.track(&inc);
        let b = sig("b", "h", "/x", 101, Severity::Warning);
        assert_eq!(decide(&mut c, &b, &[]), Decision::Hold);
        let e = sig("e", "h", "/x", 102, Severity::Critical);
        assert!(matches!(
            decide(&mut c, &e, &[rule_match(&e, "r")]),
            Decision::Open { .. }
        ));
    }

    #[test]
    fn unexplained_symptoms_join_by_host_within_window_only() {
        let mut c = Correlator::new(Duration::from_secs(60));
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        let d = decide(&mut c, &a, &[rule_match(&a, "r")]);
        c.track(&open_incident("i1", &d, &a));
        let near = sig("n", "h", "/other", 130, Severity::Warning);
        assert!(matches!(decide(&mut c, &near, &[]), Decision::Join { .. }));
        let far = sig("f", "h", "/other", 1000, Severity::Warning);
        assert_eq!(decide(&mut c, &far, &[]), Decision::Hold);
        let elsewhere = sig("o", "other-host", "/x", 101, Severity::Warning);
        assert_eq!(decide(&mut c, &elsewhere, &[]), Decision::Hold);
    }

    #[test]
    fn held_signals_become_context_of_a_later_incident_on_the_same_host() {
        let mut c = Correlator::new(Duration::from_secs(60));
        let w = sig("w", "h", "/x", 90, Severity::Warning);
        assert_eq!(decide(&mut c, &w, &[]), Decision::Hold);
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        match decide(&mut c, &a, &[rule_match(&a, "r")]) {
            Decision::Open { context, .. } => assert_eq!(
                context.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(),
                ["w"]
            ),
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn a_quorum_of_distinct_symptoms_on_one_entity_opens_one_incident() {
        let mut c = Correlator::new(Duration::from_secs(60));
        let mut a = sig("a", "h", "/x", 100, Severity::Warning);
        a.name = "latency".into();
        assert_eq!(decide(&mut c, &a, &[]), Decision::Hold);
        let mut same = sig("a2", "h", "/x", 101, Severity::Warning);
        same.name = "latency".into();
        assert_eq!(
            decide(&mut c, &same, &[]),
            Decision::Hold,
            "the same symptom twice is not a quorum"
        );
        let mut other_entity = sig("o", "h", "/y", 102, Severity::Warning);
        other_entity.name = "errors".into();
        assert_eq!(
            decide(&mut c, &other_entity, &[]),
            Decision::Hold,
            "symptoms on other entities do not add up"
        );
        let mut b = sig("b", "h", "/x", 103, Severity::Warning);
        b.name = "errors".into();
        match decide(&mut c, &b, &[]) {
            Decision::Open {
                context,
                hypotheses,
                ..
            } => {
                let ids: Vec<&str> = context.iter().map(|s| s.id.as_str()).collect();
                assert_eq!(ids, ["a", "a2"]);
                assert_eq!(hypotheses[0].rule, GENERIC_RULE);
                assert_eq!(hypotheses[0].entity.name, "/x");
            }
            d => panic!("{d:?}"),
        }
        let mut info = sig("i", "h", "/z", 104, Severity::Info);
        info.name = "one".into();
        let mut info2 = sig("i2", "h", "/z", 105, Severity::Info);
        info2.name = "two".into();
        assert_eq!(decide(&mut c, &info, &[]), Decision::Hold);
        assert_eq!(
            decide(&mut c, &info2, &[]),
            Decision::Hold,
            "info signals never make a quorum"
        );
    }

    /// A rule with a join: `trigger` joined to `cause`, blaming `cause`'s entity.
    fn joined_match(trigger: &Signal, cause: &Signal, rule: &str) -> RuleMatch {
        let mut m = rule_match(cause, rule);
        m.signals = vec![Arc::new(trigger.clone()), Arc::new(cause.clone())];
        m
    }

    #[test]
    fn a_late_match_joins_the_incident_its_trigger_opened() {
        // The trigger (a Service's outage) arrives first and opens an incident under its own
        // rule; the cause it joins to (a pod's crash) arrives later and completes the match.
        let mut c = Correlator::new(Duration::from_secs(60));
        let trigger = sig("t", "svc-host", "/svc", 100, Severity::Critical);
        let d = decide(&mut c, &trigger, &[rule_match(&trigger, "service_down")]);
        c.track(&open_incident("i1", &d, &trigger));
        let cause = sig("c", "node-1", "/pod", 130, Severity::Warning);
        let late = joined_match(&trigger, &cause, "backend_failing");
        assert!(
            matches!(decide(&mut c, &cause, &[late]), Decision::Join { ref incident_id, .. } if incident_id == "i1")
        );
    }

    #[test]
    fn a_match_whose_cause_came_first_joins_the_causes_incident() {
        // The other order: the pod's crash opened its incident; the Service's outage names it.
        let mut c = Correlator::new(Duration::from_secs(60));
        let cause = sig("c", "node-1", "/pod", 100, Severity::Critical);
        let d = decide(&mut c, &cause, &[rule_match(&cause, "crash_loop")]);
        c.track(&open_incident("i1", &d, &cause));
        let trigger = sig("t", "svc-host", "/svc", 130, Severity::Critical);
        let m = joined_match(&trigger, &cause, "backend_failing");
        assert!(
            matches!(decide(&mut c, &trigger, &[m]), Decision::Join { ref incident_id, .. } if incident_id == "i1")
        );
    }

    #[test]
    fn a_resolved_incident_never_takes_a_late_match() {
        let mut c = Correlator::new(Duration::from_secs(60));
        let trigger = sig("t", "svc-host", "/svc", 100, Severity::Critical);
        let d = decide(&mut c, &trigger, &[rule_match(&trigger, "service_down")]);
        let mut inc = open_incident("i1", &d, &trigger);
        c.track(&inc);
        inc.status = IncidentStatus::Resolved;
        c.track(&inc);
        let cause = sig("c", "node-1", "/pod", 130, Severity::Warning);
        let late = joined_match(&trigger, &cause, "backend_failing");
        assert!(matches!(
            decide(&mut c, &cause, std::slice::from_ref(&late)),
            Decision::Open { .. }
        ));
        // The new incident is linked to the resolved one.
        assert_eq!(c.resolved_related(&cause, &[late]).as_deref(), Some("i1"));
        // A match on one signal alone is not a late match: no link.
        let alone = rule_match(&cause, "crash_loop");
        assert_eq!(c.resolved_related(&cause, &[alone]), None);
    }

    #[test]
    fn a_single_signal_match_on_a_symptom_entity_still_opens_its_own() {
        // Only a match completed by earlier signals looks for their incident: a rule firing on
        // one signal about an entity that is a symptom in an open incident keeps its own
        // fingerprint, as before.
        let mut c = Correlator::new(Duration::from_secs(300));
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        let d = decide(&mut c, &a, &[rule_match(&a, "r")]);
        c.track(&open_incident("i1", &d, &a));
        let symptom = sig("s", "other", "/y", 101, Severity::Warning);
        c.touch("i1", &symptom);
        let b = sig("b", "other", "/y", 102, Severity::Critical);
        assert!(matches!(
            decide(&mut c, &b, &[rule_match(&b, "q")]),
            Decision::Open { .. }
        ));
    }

    #[test]
    fn critical_without_rule_opens_generic() {
        let mut c = Correlator::new(Duration::from_secs(60));
        let a = sig("a", "h", "/x", 100, Severity::Critical);
        match decide(&mut c, &a, &[]) {
            Decision::Open { hypotheses, .. } => assert_eq!(hypotheses[0].rule, GENERIC_RULE),
            d => panic!("{d:?}"),
        }
    }

    /// The reference the fast path is held to: every signal so far, searched in full, with
    /// no index, no kept variables and no armed-trigger lists (the trait's defaults), and the
    /// same topology.
    struct Reference<'a> {
        signals: &'a [Signal],
        topology: &'a Topology,
    }

    impl JoinSource for Reference<'_> {
        fn signals(&self, event: &str, from: Timestamp, to: Timestamp) -> Vec<&Signal> {
            self.signals
                .iter()
                .filter(|s| s.name == event && s.time >= from && s.time <= to)
                .collect()
        }
        fn machines(&self, s: &Signal, at: Timestamp) -> Vec<String> {
            self.topology.machines(s, at)
        }
        fn workloads(&self, s: &Signal, at: Timestamp) -> Vec<String> {
            self.topology.workloads(s, at)
        }
        fn claims(&self, s: &Signal, at: Timestamp) -> Vec<String> {
            self.topology.claims(s, at)
        }
        fn calls(&self, caller: &str, callee: &str, at: Timestamp) -> bool {
            self.topology.calls_at(caller, callee, at)
        }
        fn reaches(&self, from: &str, to: &str, at: Timestamp) -> bool {
            self.topology.reaches(from, to, at)
        }
    }

    static RULES: std::sync::LazyLock<RuleSet> = std::sync::LazyLock::new(RuleSet::builtin);
    /// The same rules with every condition and template run by the CEL interpreter.
    static INTERPRETED: std::sync::LazyLock<RuleSet> =
        std::sync::LazyLock::new(|| RuleSet::builtin().interpreted());

    /// One signal of a small world (3 nodes, 4 pods on them, 3 services calling each other, 2
    /// workloads) that the shipped rules with joins listen for: kind `k`, on thing `n`, with
    /// variant `v`, at `secs`.
    fn world_signal(i: usize, k: u8, n: u8, v: u8, secs: i64) -> Signal {
        use serde_json::json;
        let node = format!("n{}", n % 3);
        let pod = n % 4;
        let svc = format!("svc{}", n % 3);
        let w = format!("w{}", pod % 2);
        let pod_resource = || -> daytwo_model::Attributes {
            [
                ("k8s.cluster.name", json!("c")),
                ("k8s.namespace.name", json!("ns")),
                ("k8s.pod.uid", json!(format!("uid{pod}"))),
                ("k8s.pod.name", json!(format!("{w}-{pod}"))),
                ("k8s.node.name", json!(format!("n{}", pod % 3))),
                ("k8s.deployment.name", json!(w.clone())),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
        };
        let attrs = |pairs: &[(&str, serde_json::Value)]| -> daytwo_model::Attributes {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect()
        };
        let (name, entity, resource, attributes) = match k % 7 {
            0 | 1 => (
                if k.is_multiple_of(7) {
                    "daytwo.k8s.container.waiting"
                } else {
                    "daytwo.k8s.container.terminated"
                },
                Entity::new(EntityKind::Container, format!("{w}-{pod}/app"))
                    .with_attr("k8s.pod.uid", format!("uid{pod}"))
                    .with_attr("k8s.container.name", "app"),
                pod_resource(),
                attrs(&[
                    ("k8s.container.status.reason", json!("CrashLoopBackOff")),
                    (
                        "k8s.container.status.last_terminated_reason",
                        json!(if v.is_multiple_of(2) {
                            "OOMKilled"
                        } else {
                            "Error"
                        }),
                    ),
                ]),
            ),
            2 => (
                "daytwo.k8s.node.condition",
                Entity::new(EntityKind::Node, node.clone()).with_attr("k8s.node.name", node),
                Default::default(),
                attrs(&[
                    (
                        "k8s.node.condition.type",
                        json!(["Ready", "MemoryPressure", "DiskPressure"][v as usize % 3]),
                    ),
                    (
                        "k8s.node.condition.status",
                        json!(if v.is_multiple_of(2) { "False" } else { "True" }),
                    ),
                ]),
            ),
            3 => (
                ["daytwo.kernel.io_error", "daytwo.kernel.hung_task"][v as usize % 2],
                Entity::new(EntityKind::Host, node.clone()).with_attr("host.name", node.clone()),
                attrs(&[("host.name", json!(node))]),
                Default::default(),
            ),
            4 => (
                if v.is_multiple_of(2) {
                    "daytwo.service.latency_anomaly"
                } else {
                    "daytwo.service.error_anomaly"
                },
                Entity::new(EntityKind::Service, svc.clone()).with_attr("service.name", svc),
                Default::default(),
                attrs(&[("daytwo.anomaly.sigma", json!(v as f64 - 1.0))]),
            ),
            5 => (
                "daytwo.log.error_burst",
                Entity::new(EntityKind::Workload, w.clone())
                    .with_attr("k8s.namespace.name", "ns")
                    .with_attr("k8s.deployment.name", w.clone()),
                attrs(&[("k8s.cluster.name", json!("c"))]),
                attrs(&[(
                    "daytwo.log.template",
                    json!(if v.is_multiple_of(3) {
                        "dial tcp: lookup <*> on <*>:53: no such host"
                    } else {
                        "ERROR request <*> failed"
                    }),
                )]),
            ),
            _ => (
                "daytwo.k8s.change",
                Entity::new(EntityKind::Workload, w.clone())
                    .with_attr("k8s.namespace.name", "ns")
                    .with_attr("k8s.deployment.name", w.clone()),
                attrs(&[("k8s.cluster.name", json!("c"))]),
                attrs(&[
                    (
                        "daytwo.change.kind",
                        json!(["rollout", "scale", "config"][v as usize % 3]),
                    ),
                    ("daytwo.change.memory_limit_bytes.before", json!(512)),
                    (
                        "daytwo.change.memory_limit_bytes.after",
                        json!(if v.is_multiple_of(2) { 256 } else { 1024 }),
                    ),
                ]),
            ),
        };
        Signal {
            id: format!("s{i}"),
            name: name.into(),
            time: Timestamp::from_unix_secs(secs),
            severity: Severity::Warning,
            entity,
            resource,
            attributes,
            message: format!("m{i}"),
            evidence: vec![],
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// The fast path (held signals indexed by event, machine, workload, service and armed
        /// rule; CEL variables and conditions cached per signal) yields exactly the matches of
        /// the reference, which searches every signal so far with every condition and template
        /// run by the CEL interpreter, for any sequence of signals, in or out of event-time order.
        #[test]
        fn the_fast_path_matches_exactly_what_a_full_search_matches(
            steps in proptest::collection::vec((0u8..7, 0u8..12, 0u8..6, -120i64..300), 1..40)
        ) {
            let rules = &*RULES;
            let mut topology = Topology::new(Duration::from_secs(3 * 3600), Duration::from_secs(300));
            let t0 = 1_795_617_015;
            for (a, b) in [("svc0", "svc1"), ("svc1", "svc2"), ("svc2", "svc0")] {
                topology.add_call(a, b, Timestamp::from_unix_secs(t0));
            }
            let mut held = Held::new(Duration::from_secs(6 * 3600));
            let mut all: Vec<Signal> = Vec::new();
            let mut t = t0;
            for (i, (k, n, v, dt)) in steps.into_iter().enumerate() {
                t += dt;
                // Services keep calling each other, so `calls` holds whenever they are checked.
                for (a, b) in [("svc0", "svc1"), ("svc1", "svc2"), ("svc2", "svc0")] {
                    topology.add_call(a, b, Timestamp::from_unix_secs(t));
                }
                let s = Arc::new(world_signal(i, k, n, v, t));
                topology.observe(&s);
                held.insert(rules, &s);
                if rules.held_events().contains(&s.name) {
                    all.push(Signal::clone(&s));
                }
                let mut fast = match_rules(rules, &held, &topology, &s);
                for m in &mut fast {
                    rules.render(m);
                }
                let reference = Reference { signals: &all, topology: &topology };
                let mut slow = INTERPRETED.evaluate_with(&s, &reference);
                slow.extend(INTERPRETED.evaluate_joined(&s, &reference));
                slow.sort_by(|a, b| {
                    b.hypothesis
                        .score
                        .total_cmp(&a.hypothesis.score)
                        .then_with(|| a.rule.cmp(&b.rule))
                });
                proptest::prop_assert_eq!(fast, slow, "signal {} ({})", i, s.name);
            }
        }
    }

    /// The reference the active-incident index is held to: each active incident's entity
    /// keys, hosts and namespace groups as strings, every one of them read on each lookup
    /// (the correlator before the index).
    #[derive(Default)]
    struct Scan {
        incidents: std::collections::BTreeMap<String, (BTreeSet<String>, Timestamp)>,
    }

    impl Scan {
        fn track(&mut self, inc: &Incident) {
            self.incidents.remove(&inc.id);
            if !inc.status.is_active() {
                return;
            }
            let mut keys = BTreeSet::new();
            let mut last = inc.updated_at;
            for h in &inc.root_causes {
                keys.insert(format!("entity:{}", h.entity.key()));
                keys.extend(h.entity.host().map(|h| format!("host:{h}")));
            }
            for s in &inc.signals {
                keys.insert(format!("entity:{}", s.entity.key()));
                keys.extend(s.host().map(|h| format!("host:{h}")));
                keys.extend(group_key(s));
                last = last.max(s.time);
            }
            self.incidents.insert(inc.id.clone(), (keys, last));
        }

        fn touch(&mut self, id: &str, s: &Signal) {
            if let Some((keys, last)) = self.incidents.get_mut(id) {
                *last = (*last).max(s.time);
                keys.insert(format!("entity:{}", s.entity.key()));
                keys.extend(s.host().map(|h| format!("host:{h}")));
                keys.extend(group_key(s));
            }
        }

        /// The most recent incident under any of `keys` (within `window` of `at`, if given);
        /// ties: the smallest id.
        fn newest(&self, keys: &[String], at: Option<(Timestamp, Duration)>) -> Option<String> {
            self.incidents
                .iter()
                .filter(|(_, (ks, _))| keys.iter().any(|k| ks.contains(k)))
                .filter(|(_, (_, last))| at.is_none_or(|(t, w)| last.abs_diff(t) <= w))
                .max_by(|(ia, (_, a)), (ib, (_, b))| a.cmp(b).then_with(|| ib.cmp(ia)))
                .map(|(id, _)| id.clone())
        }
    }

    /// A signal of a small world for the index test: on host `h` (or, for `h` ≥ 3, without a
    /// host, in namespace `h % 2`), about container `g`.
    fn index_signal(n: usize, h: u8, g: u8, secs: i64, critical: bool) -> Signal {
        let sev = if critical {
            Severity::Critical
        } else {
            Severity::Warning
        };
        if h < 3 {
            return sig(
                &format!("s{n}"),
                &format!("h{h}"),
                &format!("/c{g}"),
                secs,
                sev,
            );
        }
        let mut s = sig(&format!("s{n}"), "x", &format!("/c{g}"), secs, sev);
        s.entity = Entity::new(EntityKind::Service, format!("svc{g}"))
            .with_attr("service.name", format!("svc{g}"))
            .with_attr("k8s.namespace.name", format!("ns{}", h % 2));
        s.resource = [("k8s.cluster.name".to_string(), "c".into())]
            .into_iter()
            .collect();
        s
    }

    proptest::proptest! {
        /// The index of active incidents by entity, host and namespace group (hashed keys,
        /// slots, a dense array of last-signal times) answers every lookup exactly as a full
        /// scan of every active incident's keys does, through any sequence of opens, joins,
        /// touches by late-joined signals and resolves.
        #[test]
        fn indexed_incident_lookup_equals_a_full_scan(
            steps in proptest::collection::vec(
                (0u8..5, 0u8..4, -30i64..90, proptest::bool::ANY, 0u8..4, 0u8..8, 0u8..8),
                1..150,
            )
        ) {
            let window = Duration::from_secs(60);
            let mut c = Correlator::new(window);
            let mut scan = Scan::default();
            let mut open: std::collections::BTreeMap<String, Incident> = Default::default();
            let mut t = 1_000;
            for (n, (h, g, dt, critical, matched, extra, resolve)) in steps.into_iter().enumerate() {
                t += dt;
                let s = index_signal(n, h, g, t, critical);
                // Machines the topology would add: any of the three hosts.
                let hosts: Vec<String> =
                    (0..3).filter(|i| extra & (1 << i) != 0).map(|i| format!("h{i}")).collect();
                let mut keys = vec![format!("entity:{}", s.entity.key())];
                keys.extend(s.host().map(|h| format!("host:{h}")));
                keys.extend(hosts.iter().map(|h| format!("host:{h}")));
                keys.extend(group_key(&s));
                proptest::prop_assert_eq!(
                    c.related_active(&s, &hosts),
                    scan.newest(&keys, Some((s.time, window))),
                    "related_active, signal {}", n
                );
                // A late match whose other signal is an earlier one about container `extra`.
                let earlier = index_signal(n + 10_000, extra % 5, extra % 4, t - 5, false);
                let m = joined_match(&earlier, &s, "r");
                let home_keys: Vec<String> = [&earlier.entity, &s.entity]
                    .iter()
                    .map(|e| format!("entity:{}", e.key()))
                    .collect();
                proptest::prop_assert_eq!(
                    c.late_match_home(&s, std::slice::from_ref(&m)),
                    scan.newest(&home_keys, None),
                    "late_match_home, signal {}", n
                );
                let matches = match matched {
                    0 => vec![rule_match(&s, "r")],
                    1 => vec![m],
                    _ => vec![],
                };
                match decide(&mut c, &s, &matches) {
                    Decision::Join { incident_id, .. } => {
                        if matched == 1 {
                            c.touch(&incident_id, &earlier);
                            scan.touch(&incident_id, &earlier);
                        }
                        c.touch(&incident_id, &s);
                        scan.touch(&incident_id, &s);
                    }
                    d @ Decision::Open { .. } => {
                        let inc = open_incident(&format!("i{n}"), &d, &s);
                        c.track(&inc);
                        scan.track(&inc);
                        open.insert(inc.id.clone(), inc);
                    }
                    Decision::Hold => {}
                }
                if resolve == 0 && let Some(id) = open.keys().nth(n % 3).cloned() {
                    let mut inc = open.remove(&id).unwrap();
                    inc.status = IncidentStatus::Resolved;
                    c.track(&inc);
                    scan.track(&inc);
                }
            }
        }
    }

    proptest::proptest! {
        /// The search from the back finds the boundary a binary search over the whole queue
        /// finds, for any times (ties included), any boundary and a queue that wrapped around.
        #[test]
        fn searching_a_held_queue_from_the_back_finds_what_a_binary_search_finds(
            mut times in proptest::collection::vec(0i64..50, 0..200),
            popped in 0usize..40,
            bounds in proptest::collection::vec(-5i64..60, 1..20),
        ) {
            times.sort_unstable();
            let e = Arc::new(Entry {
                signal: Arc::new(sig("s", "h", "/c", 0, Severity::Warning)),
                prepared: Prepared::new(),
                keys: vec![],
            });
            let mut q: Queue = VecDeque::with_capacity(times.len());
            // Fill, drop from the front and fill again, so the ring buffer wraps.
            for _ in 0..popped.min(times.len()) {
                q.push_back((Timestamp::from_unix_secs(-10), e.clone()));
            }
            for _ in 0..popped.min(times.len()) {
                q.pop_front();
            }
            for &t in &times {
                q.push_back((Timestamp::from_unix_secs(t), e.clone()));
            }
            for b in bounds {
                let b = Timestamp::from_unix_secs(b);
                proptest::prop_assert_eq!(
                    partition_from_back(&q, |t| t < b),
                    q.partition_point(|(t, _)| *t < b)
                );
                proptest::prop_assert_eq!(
                    partition_from_back(&q, |t| t <= b),
                    q.partition_point(|(t, _)| *t <= b)
                );
            }
        }
    }

    proptest::proptest! {
        /// Whatever the order of signals, opens and resolves: a join names an active incident,
        /// no two active incidents share a fingerprint, and a rule match never opens a second
        /// incident for an active fingerprint.
        #[test]
        fn decisions_stay_consistent_with_the_active_set(
            steps in proptest::collection::vec((0u8..3, 0u8..3, 0i64..400, proptest::bool::ANY, proptest::bool::ANY, 0u8..10), 1..120)
        ) {
            let mut c = Correlator::new(Duration::from_secs(60));
            let mut active: std::collections::HashMap<String, Incident> = Default::default();
            let mut t = 0;
            for (n, (h, g, dt, critical, matched, resolve)) in steps.into_iter().enumerate() {
                t += dt;
                let s = sig(&format!("s{n}"), &format!("h{h}"), &format!("/c{g}"), t,
                    if critical { Severity::Critical } else { Severity::Warning });
                let m = if matched { vec![rule_match(&s, "r")] } else { vec![] };
                match decide(&mut c, &s, &m) {
                    Decision::Join { incident_id, .. } => {
                        proptest::prop_assert!(active.contains_key(&incident_id));
                        c.touch(&incident_id, &s);
                    }
                    d @ Decision::Open { .. } => {
                        let inc = open_incident(&format!("i{n}"), &d, &s);
                        proptest::prop_assert!(active.values().all(|a| a.fingerprint != inc.fingerprint));
                        c.track(&inc);
                        active.insert(inc.id.clone(), inc);
                    }
                    Decision::Hold => proptest::prop_assert!(!matched),
                }
                if resolve == 0 && let Some(id) = active.keys().min().cloned() {
                    let mut inc = active.remove(&id).unwrap();
                    inc.status = IncidentStatus::Resolved;
                    c.track(&inc);
                }
            }
        }
    }
}
