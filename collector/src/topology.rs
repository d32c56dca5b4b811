//! The topology: a time-versioned graph of entities, built from what arrives.
//!
//! Entry type: [`Topology`]. [`Topology::observe`] derives edges from a signal's entity and
//! resource attributes (OpenTelemetry semantic conventions):
//!
//! * `runs-on`: container → pod (`container.id` or pod + `k8s.container.name` → `k8s.pod.uid`
//!   or namespace/`k8s.pod.name`), pod → machine (`k8s.node.name`), process and cgroup →
//!   machine (`host.name`), service → pod (a service instance; service → machine without a
//!   pod);
//! * `owned-by`: pod (or container without a pod) → workload (the owner attributes,
//!   `k8s.deployment.name`, …, see [`daytwo_rules::join::workload_of`]);
//! * `mounts`: pod → PersistentVolumeClaim (`volume:NS/CLAIM`), from the claims a pod's
//!   signals list (`daytwo.k8s.pod.claims`, see [`daytwo_rules::join::claims_of`]);
//!
//! and [`Topology::add_call`] records service → service calls from client/server span pairs
//! into the one [`CallGraph`] the generic ranker also reads. A Kubernetes node and the host of
//! the same name are one machine (named as [`daytwo_rules::join::machine_of`] names it).
//!
//! Every edge keeps the event times it was first and last seen, so "did X run on Y at T" is
//! answered for that time: an edge holds at T when T is within its first..last seen, widened
//! by a slack (an edge is only observed when signals arrive). Memory is bounded: edges not
//! seen for the horizon (relative to the newest event time observed) are dropped and counted
//! ([`Topology::dropped_total`]), and so are the oldest edges past [`MAX_EDGES`].
//!
//! Pure: no I/O, no clock reads. Implements the topology half of the rule engine's
//! [`daytwo_rules::JoinSource`] (see [`crate::correlate::JoinView`]).

use crate::rank::CallGraph;
use daytwo_model::{EntityKind, Signal, Timestamp};
use daytwo_rules::FastHash;
use daytwo_rules::join::{claim_of, claims_of, machine_of, workload_parts};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// At most this many entity edges (calls are bounded by the call graph itself).
pub const MAX_EDGES: usize = 200_000;
/// Edges not seen for this long are dropped, by default.
pub const DEFAULT_HORIZON: Duration = Duration::from_secs(3600);
/// How far outside its first..last seen an edge still holds, by default.
pub const DEFAULT_SLACK: Duration = Duration::from_secs(300);

/// How two entities are related.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum EdgeKind {
    /// container → pod → machine; process, cgroup → machine; service → pod or machine.
    RunsOn,
    /// pod or container → workload.
    OwnedBy,
    /// pod → the PersistentVolumeClaims it mounts.
    Mounts,
}

/// When an edge was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seen {
    pub first: Timestamp,
    pub last: Timestamp,
}

/// The entity graph. Nodes are named by `KIND:identity` strings (`pod:UID`, `machine:NAME`,
/// …), each interned once: edges and traversals use the node's index, so a query hashes its
/// starting node's name once and then follows integers.
#[derive(Debug)]
pub struct Topology {
    /// Node name → index in `nodes`.
    ids: HashMap<Arc<str>, NodeId, FastHash>,
    nodes: Vec<Node>,
    edges: usize,
    calls: CallGraph,
    horizon: Duration,
    slack: Duration,
    newest: Timestamp,
    last_prune: Timestamp,
    dropped: u64,
    /// [`MAX_EDGES`], smaller in tests.
    max_edges: usize,
    /// The ids of the signal being learnt, kept for the next.
    scratch: Ids,
}

/// A node's index in [`Topology`]'s nodes; stable until the next prune compacts them.
type NodeId = u32;

/// A node and the edges out of it.
#[derive(Debug)]
struct Node {
    /// `KIND:identity`, shared with the name index.
    name: Arc<str>,
    out: Vec<Edge>,
    /// (kind, target) → position in `out`, kept once `out` is long (a Service over hundreds
    /// of pods), so that learning an edge does not compare it with every other.
    index: Option<HashMap<(EdgeKind, NodeId), usize, FastHash>>,
}

/// Out-degree past which a node indexes its edges.
const INDEX_MIN: usize = 32;

#[derive(Clone, Copy, Debug)]
struct Edge {
    kind: EdgeKind,
    to: NodeId,
    seen: Seen,
}

impl Node {
    fn position(&self, kind: EdgeKind, to: NodeId) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(&(kind, to)).copied(),
            None => self.out.iter().position(|e| e.kind == kind && e.to == to),
        }
    }

    /// Rebuilds the edge index after edges moved (or drops it for a short list).
    fn reindex(&mut self) {
        self.index = (self.out.len() > INDEX_MIN).then(|| {
            self.out
                .iter()
                .enumerate()
                .map(|(i, e)| ((e.kind, e.to), i))
                .collect()
        });
    }
}

impl Default for Topology {
    fn default() -> Self {
        Topology::new(DEFAULT_HORIZON, DEFAULT_SLACK)
    }
}

/// One signal's attributes, entity first, then resource.
fn attr<'a>(s: &'a Signal, key: &str) -> Option<&'a str> {
    s.entity
        .attributes
        .get(key)
        .or_else(|| s.resource.get(key))
        .and_then(|v| v.as_str())
        .filter(|v| !v.is_empty())
}

/// The levels of the graph a signal's attributes can name, one id each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Level {
    Container,
    Pod,
    Machine,
    Workload,
    Service,
    Process,
    Cgroup,
    Volume,
}

/// The ids a signal's attributes name, one per level, written into buffers kept from one
/// signal to the next (learning a signal's edges builds no string).
#[derive(Default, Debug)]
struct Ids {
    bufs: [String; 8],
    set: [bool; 8],
}

impl Ids {
    /// The ids `s` names at every level but volumes.
    fn fill(&mut self, s: &Signal) {
        for level in [
            Level::Container,
            Level::Pod,
            Level::Machine,
            Level::Workload,
            Level::Service,
            Level::Process,
            Level::Cgroup,
        ] {
            let i = level as usize;
            self.set[i] = write_id(s, level, &mut self.bufs[i]);
        }
    }

    fn get(&self, level: Level) -> Option<&str> {
        self.set[level as usize].then(|| self.bufs[level as usize].as_str())
    }
}

/// A pod's identity, as parts to write in a row: its uid, else namespace/name.
fn pod_identity(s: &Signal) -> Option<[&str; 3]> {
    match attr(s, "k8s.pod.uid") {
        Some(uid) => Some([uid, "", ""]),
        None => Some([
            attr(s, "k8s.namespace.name")?,
            "/",
            attr(s, "k8s.pod.name")?,
        ]),
    }
}

/// Writes into `buf` (cleared first) the graph id that `s`'s attributes name at `level`;
/// `false` when they name none.
fn write_id(s: &Signal, level: Level, buf: &mut String) -> bool {
    use std::fmt::Write;
    buf.clear();
    match level {
        Level::Pod => pod_identity(s).is_some_and(|[a, b, c]| put(buf, &["pod:", a, b, c])),
        // A container's id, else its pod and name.
        Level::Container => match attr(s, "container.id") {
            Some(c) => put(buf, &["container:", c]),
            None => match (pod_identity(s), attr(s, "k8s.container.name")) {
                (Some([a, b, c]), Some(name)) => put(buf, &["container:", a, b, c, "/", name]),
                _ => false,
            },
        },
        Level::Machine => machine_of(s).is_some_and(|m| put(buf, &["machine:", m])),
        Level::Workload => workload_parts(s).is_some_and(|w| {
            buf.push_str("workload:");
            w.write_to(buf);
            true
        }),
        Level::Service => attr(s, "service.name").is_some_and(|n| put(buf, &["service:", n])),
        Level::Process => {
            let pid = s
                .entity
                .attributes
                .get("process.pid")
                .or_else(|| s.resource.get("process.pid"));
            match (attr(s, "host.name"), pid) {
                (Some(h), Some(serde_json::Value::String(p))) if !p.is_empty() => {
                    put(buf, &["process:", h, "/", p])
                }
                (Some(h), Some(serde_json::Value::Number(n))) => {
                    write!(buf, "process:{h}/{n}").is_ok()
                }
                _ => false,
            }
        }
        Level::Cgroup => match (attr(s, "host.name"), attr(s, "daytwo.cgroup.path")) {
            (Some(h), Some(c)) => put(buf, &["cgroup:", h, "/", c]),
            _ => false,
        },
        // A PersistentVolumeClaim, `volume:NS/CLAIM` (the claim as
        // [`daytwo_rules::join::claim_of`] names it).
        Level::Volume => claim_of(s).is_some_and(|c| put(buf, &["volume:", &c])),
    }
}

/// Appends `parts` to `buf`; `true`.
fn put(buf: &mut String, parts: &[&str]) -> bool {
    for p in parts {
        buf.push_str(p);
    }
    true
}

/// Runs `f` with this thread's buffer for a name that is looked up or hashed, not kept
/// (cleared first), so that building it allocates nothing. `f` must not ask for it again.
pub(crate) fn with_name_buf<R>(f: impl FnOnce(&mut String) -> R) -> R {
    thread_local! {
        static BUF: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        f(buf)
    })
}

/// The level of the graph an entity of this kind is at.
fn level_of(kind: EntityKind) -> Option<Level> {
    Some(match kind {
        EntityKind::Container => Level::Container,
        EntityKind::Pod => Level::Pod,
        EntityKind::Node | EntityKind::Host => Level::Machine,
        EntityKind::Workload => Level::Workload,
        EntityKind::Service => Level::Service,
        EntityKind::Process => Level::Process,
        EntityKind::Cgroup => Level::Cgroup,
        EntityKind::Volume => Level::Volume,
        _ => return None,
    })
}

/// The graph id of the entity a signal is about (its own level), if its attributes name one.
/// Only that level's id is built.
pub fn entity_id(s: &Signal) -> Option<String> {
    let mut buf = String::new();
    entity_id_into(s, &mut buf).then_some(buf)
}

/// [`entity_id`], written into `buf` (cleared first); `false` when there is none.
fn entity_id_into(s: &Signal, buf: &mut String) -> bool {
    level_of(s.entity.kind).is_some_and(|level| write_id(s, level, buf))
}

impl Topology {
    pub fn new(horizon: Duration, slack: Duration) -> Self {
        Topology {
            ids: HashMap::default(),
            nodes: Vec::new(),
            edges: 0,
            calls: CallGraph::new(),
            horizon,
            slack,
            newest: Timestamp::default(),
            last_prune: Timestamp::default(),
            dropped: 0,
            max_edges: MAX_EDGES,
            scratch: Ids::default(),
        }
    }

    /// Learns the edges a signal's attributes imply, at the signal's time.
    pub fn observe(&mut self, s: &Signal) {
        let mut i = std::mem::take(&mut self.scratch);
        i.fill(s);
        let t = s.time;
        let mut add = |from: Level, kind, to: Level| {
            if let (Some(a), Some(b)) = (i.get(from), i.get(to)) {
                self.add(a, kind, b, t);
            }
        };
        // The lowest level present runs on the next one up.
        if i.get(Level::Pod).is_some() {
            add(Level::Container, EdgeKind::RunsOn, Level::Pod);
            add(Level::Pod, EdgeKind::RunsOn, Level::Machine);
            add(Level::Pod, EdgeKind::OwnedBy, Level::Workload);
            add(Level::Service, EdgeKind::RunsOn, Level::Pod);
        } else {
            add(Level::Container, EdgeKind::RunsOn, Level::Machine);
            add(Level::Container, EdgeKind::OwnedBy, Level::Workload);
            add(Level::Service, EdgeKind::RunsOn, Level::Machine);
        }
        add(Level::Process, EdgeKind::RunsOn, Level::Machine);
        add(Level::Cgroup, EdgeKind::RunsOn, Level::Machine);
        if let Some(pod) = i.get(Level::Pod) {
            for claim in claims_of(s) {
                self.add(pod, EdgeKind::Mounts, &format!("volume:{claim}"), t);
            }
        }
        self.observe_backends(s, &i);
        self.scratch = i;
        self.advance(t);
    }

    /// A Kubernetes Service's signal that lists the pods behind it (EndpointSlices'
    /// `targetRef`s: `daytwo.k8s.endpoints.pods`, `.pod_uids`, `.nodes`, one order) teaches
    /// service → pod and pod → machine edges at its time.
    fn observe_backends(&mut self, s: &Signal, i: &Ids) {
        let (Some(service), Some(ns)) = (i.get(Level::Service), attr(s, "k8s.namespace.name"))
        else {
            return;
        };
        let list = |key: &str| -> Vec<String> {
            s.attributes
                .get(key)
                .and_then(|v| v.as_array())
                .map(|a| {
                    a.iter()
                        .map(|v| v.as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (names, uids, nodes) = (
            list("daytwo.k8s.endpoints.pods"),
            list("daytwo.k8s.endpoints.pod_uids"),
            list("daytwo.k8s.endpoints.nodes"),
        );
        for (n, name) in names.iter().enumerate() {
            let pod = match uids.get(n).filter(|u| !u.is_empty()) {
                Some(uid) => format!("pod:{uid}"),
                None => format!("pod:{ns}/{name}"),
            };
            self.add(service, EdgeKind::RunsOn, &pod, s.time);
            if let Some(node) = nodes.get(n).filter(|n| !n.is_empty()) {
                self.add(&pod, EdgeKind::RunsOn, &format!("machine:{node}"), s.time);
            }
        }
    }

    /// Records a service → service call seen at `t` (from traces or `rpc.*` metrics).
    pub fn add_call(&mut self, caller: &str, callee: &str, t: Timestamp) {
        self.dropped += self.calls.add(caller, callee, t) as u64;
        self.advance(t);
    }

    /// The call graph (the ranker's input).
    pub fn calls(&self) -> &CallGraph {
        &self.calls
    }

    /// The index of the node named `name`, added if new.
    fn intern(&mut self, name: &str) -> NodeId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.nodes.len() as NodeId;
        let name: Arc<str> = Arc::from(name);
        self.ids.insert(Arc::clone(&name), id);
        self.nodes.push(Node {
            name,
            out: Vec::new(),
            index: None,
        });
        id
    }

    fn add(&mut self, from: &str, kind: EdgeKind, to: &str, t: Timestamp) {
        if from == to {
            return;
        }
        let (from, to) = (self.intern(from), self.intern(to));
        let node = &mut self.nodes[from as usize];
        match node.position(kind, to) {
            Some(i) => {
                let seen = &mut node.out[i].seen;
                seen.first = seen.first.min(t);
                seen.last = seen.last.max(t);
            }
            None => {
                node.out.push(Edge {
                    kind,
                    to,
                    seen: Seen { first: t, last: t },
                });
                let i = node.out.len() - 1;
                match &mut node.index {
                    Some(ix) => {
                        ix.insert((kind, to), i);
                    }
                    None if node.out.len() > INDEX_MIN => node.reindex(),
                    None => {}
                }
                self.edges += 1;
                if self.edges > self.max_edges {
                    self.drop_oldest(self.max_edges / 10);
                }
            }
        }
    }

    /// Moves the newest event time forward and drops what the horizon has passed, at most
    /// every tenth of the horizon (pruning scans every edge).
    fn advance(&mut self, t: Timestamp) {
        if t <= self.newest {
            return;
        }
        self.newest = t;
        let every = (self.horizon / 10).max(Duration::from_secs(1));
        if self.newest.minus(every) >= self.last_prune {
            self.last_prune = self.newest;
            self.prune(self.newest.minus(self.horizon));
        }
    }

    /// Drops every edge last seen before `cutoff`; returns how many.
    pub fn prune(&mut self, cutoff: Timestamp) -> usize {
        let n = self.remove_edges(|_, (_, e)| e.seen.last < cutoff);
        let n = n + self.calls.prune(cutoff);
        self.dropped += n as u64;
        n
    }

    /// Drops the `count` edges last seen longest ago (ties: the first found).
    fn drop_oldest(&mut self, count: usize) {
        let mut all: Vec<(Timestamp, NodeId, usize)> = self
            .nodes
            .iter()
            .enumerate()
            .flat_map(|(n, node)| {
                node.out
                    .iter()
                    .enumerate()
                    .map(move |(i, e)| (e.seen.last, n as NodeId, i))
            })
            .collect();
        all.sort_unstable();
        let doomed: std::collections::HashSet<(NodeId, usize), FastHash> = all
            .into_iter()
            .take(count)
            .map(|(_, n, i)| (n, i))
            .collect();
        let n = self.remove_edges(|from, (i, _)| doomed.contains(&(from, i)));
        self.dropped += n as u64;
    }

    /// Removes every edge `gone(from, edge)` picks, then the nodes no edge starts or ends at
    /// any more (compacting the indices); returns how many edges.
    fn remove_edges(&mut self, mut gone: impl FnMut(NodeId, (usize, &Edge)) -> bool) -> usize {
        let mut removed = 0;
        for (n, node) in self.nodes.iter_mut().enumerate() {
            let before = node.out.len();
            let mut i = 0;
            node.out.retain(|e| {
                let keep = !gone(n as NodeId, (i, e));
                i += 1;
                keep
            });
            if node.out.len() != before {
                removed += before - node.out.len();
                node.reindex();
            }
        }
        self.edges -= removed;
        if removed > 0 {
            self.compact();
        }
        removed
    }

    /// Forgets the nodes no edge starts or ends at, renumbering the rest.
    fn compact(&mut self) {
        let mut used = vec![false; self.nodes.len()];
        for (n, node) in self.nodes.iter().enumerate() {
            if !node.out.is_empty() {
                used[n] = true;
                for e in &node.out {
                    used[e.to as usize] = true;
                }
            }
        }
        if used.iter().all(|&u| u) {
            return;
        }
        let mut renumber = vec![NodeId::MAX; self.nodes.len()];
        let mut next = 0;
        for (n, &u) in used.iter().enumerate() {
            if u {
                renumber[n] = next;
                next += 1;
            }
        }
        let nodes = std::mem::take(&mut self.nodes);
        self.ids.clear();
        for (n, mut node) in nodes.into_iter().enumerate() {
            if !used[n] {
                continue;
            }
            for e in &mut node.out {
                e.to = renumber[e.to as usize];
            }
            node.reindex();
            self.ids.insert(Arc::clone(&node.name), renumber[n]);
            self.nodes.push(node);
        }
    }

    /// Entity edges held (calls not included).
    pub fn len(&self) -> usize {
        self.edges
    }

    pub fn is_empty(&self) -> bool {
        self.edges == 0 && self.calls.is_empty()
    }

    /// Edges dropped so far (horizon or size bound), calls included.
    pub fn dropped_total(&self) -> u64 {
        self.dropped
    }

    /// When the edge `from` -`kind`→ `to` was seen, by graph ids.
    pub fn seen(&self, from: &str, kind: EdgeKind, to: &str) -> Option<Seen> {
        let node = &self.nodes[*self.ids.get(from)? as usize];
        let i = node.position(kind, *self.ids.get(to)?)?;
        Some(node.out[i].seen)
    }

    fn holds(&self, seen: &Seen, at: Timestamp) -> bool {
        seen.first.minus(self.slack) <= at && at <= seen.last.plus(self.slack)
    }

    /// Every node reachable from `start` over `kinds` edges that held at `at`, up to `depth`
    /// hops, `start` excluded, by name.
    #[cfg(test)]
    fn reach(&self, start: &str, at: Timestamp, kinds: &[EdgeKind], depth: usize) -> Vec<&str> {
        let Some(&start) = self.ids.get(start) else {
            return Vec::new();
        };
        self.reach_ids(start, at, kinds, depth)
            .into_iter()
            .map(|n| &*self.nodes[n as usize].name)
            .collect()
    }

    /// [`Topology::reach`] by node index.
    fn reach_ids(
        &self,
        start: NodeId,
        at: Timestamp,
        kinds: &[EdgeKind],
        depth: usize,
    ) -> Vec<NodeId> {
        // Usually a handful of nodes (container → pod → machine): a list beats a hash set.
        // A service reaches every pod it runs on, hundreds: past a few, a set answers
        // "seen already?" instead of comparing with each.
        const LIST_MAX: usize = 16;
        let mut seen: Vec<NodeId> = Vec::new();
        let mut set: std::collections::HashSet<NodeId, FastHash> = Default::default();
        let mut frontier = 0..0;
        for d in 0..depth {
            let before = seen.len();
            // The nodes found at the previous hop (the start at the first), by position: `seen`
            // grows while they are walked.
            let hop = if d == 0 { 0..1 } else { frontier.clone() };
            for i in hop {
                let n = if d == 0 { start } else { seen[i] };
                for e in &self.nodes[n as usize].out {
                    if !kinds.contains(&e.kind) || !self.holds(&e.seen, at) || e.to == start {
                        continue;
                    }
                    let new = if seen.len() < LIST_MAX {
                        !seen.contains(&e.to)
                    } else {
                        if set.is_empty() {
                            set.extend(seen.iter().copied());
                        }
                        set.insert(e.to)
                    };
                    if new {
                        seen.push(e.to);
                    }
                }
            }
            if seen.len() == before {
                break;
            }
            frontier = before..seen.len();
        }
        seen
    }

    /// Each name after `prefix` of the nodes reachable from the entity of `s` at `at`, handed
    /// to `f` in walk order (not copied).
    fn each_reached<'a>(
        &'a self,
        s: &Signal,
        at: Timestamp,
        kinds: &[EdgeKind],
        depth: usize,
        prefix: &str,
        mut f: impl FnMut(&'a str),
    ) {
        let start = with_name_buf(|buf| {
            entity_id_into(s, buf)
                .then(|| self.ids.get(buf.as_str()).copied())
                .flatten()
        });
        let Some(start) = start else {
            return;
        };
        for n in self.reach_ids(start, at, kinds, depth) {
            if let Some(name) = self.nodes[n as usize].name.strip_prefix(prefix) {
                f(name);
            }
        }
    }

    /// [`Topology::each_reached`], as a sorted list of copies.
    fn reached(
        &self,
        s: &Signal,
        at: Timestamp,
        kinds: &[EdgeKind],
        depth: usize,
        prefix: &str,
    ) -> Vec<String> {
        let mut out = Vec::new();
        self.each_reached(s, at, kinds, depth, prefix, |n| out.push(n.to_string()));
        out.sort();
        out
    }

    /// [`Topology::machines`], each name handed to `f` (unsorted, not copied).
    pub fn for_each_machine(&self, s: &Signal, at: Timestamp, f: impl FnMut(&str)) {
        self.each_reached(s, at, &[EdgeKind::RunsOn], 3, "machine:", f);
    }

    /// The machines the entity of `s` ran on at `at` (container → pod → machine, …).
    pub fn machines(&self, s: &Signal, at: Timestamp) -> Vec<String> {
        self.reached(s, at, &[EdgeKind::RunsOn], 3, "machine:")
    }

    /// The workloads that owned the entity of `s` at `at` (container → pod → workload, …).
    pub fn workloads(&self, s: &Signal, at: Timestamp) -> Vec<String> {
        self.reached(
            s,
            at,
            &[EdgeKind::RunsOn, EdgeKind::OwnedBy],
            3,
            "workload:",
        )
    }

    /// The PersistentVolumeClaims (`NS/CLAIM`, see [`daytwo_rules::join::claim_of`]) the pod of
    /// `s` (a pod, or a container of it) mounted at `at`.
    pub fn claims(&self, s: &Signal, at: Timestamp) -> Vec<String> {
        if !matches!(s.entity.kind, EntityKind::Pod | EntityKind::Container) {
            return Vec::new();
        }
        self.reached(s, at, &[EdgeKind::RunsOn, EdgeKind::Mounts], 2, "volume:")
    }

    /// Whether `caller` called `callee` around `at`.
    pub fn calls_at(&self, caller: &str, callee: &str, at: Timestamp) -> bool {
        self.calls
            .seen(caller, callee)
            .is_some_and(|span| self.call_holds(span, at))
    }

    /// Whether a call first and last seen over `span` held at `at` (as an edge does).
    fn call_holds(&self, (first, last): (Timestamp, Timestamp), at: Timestamp) -> bool {
        self.holds(&Seen { first, last }, at)
    }

    /// The services `caller` called around `at` (see [`Topology::calls_at`]).
    pub fn callees_at<'a>(
        &'a self,
        caller: &'a str,
        at: Timestamp,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.calls
            .callees_seen(caller)
            .filter(move |(_, span)| self.call_holds(*span, at))
            .map(|(c, _)| c)
    }

    /// Whether `from` reaches `to` through calls around `at`.
    pub fn reaches(&self, from: &str, to: &str, at: Timestamp) -> bool {
        self.calls
            .reaches(from, to, (at.minus(self.slack), at.plus(self.slack)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, Severity};
    use std::collections::HashSet;

    fn sig(kind: EntityKind, name: &str, t: i64, attrs: &[(&str, &str)]) -> Signal {
        let mut s = Signal {
            id: format!("{name}@{t}"),
            name: "x".into(),
            time: Timestamp::from_unix_secs(t),
            severity: Severity::Warning,
            entity: Entity::new(kind, name),
            resource: Default::default(),
            attributes: Default::default(),
            message: String::new(),
            evidence: vec![],
        };
        for (k, v) in attrs {
            s.resource.insert(k.to_string(), (*v).into());
        }
        s
    }

    /// Each level's id, as docs/rules.md's topology names them, and the same id whether it is
    /// built for the signal's own entity or among all the levels its attributes name (with the
    /// buffers reused from a previous signal that named more).
    #[test]
    fn graph_ids_name_each_level() {
        use EntityKind as K;
        let k8s = [
            ("k8s.namespace.name", "shop"),
            ("k8s.pod.name", "web-1"),
            ("k8s.container.name", "app"),
            ("k8s.node.name", "n1"),
            ("k8s.replicaset.name", "web-7d9f8b6c5d"),
            ("service.name", "web"),
        ];
        let mut with_uid = k8s.to_vec();
        with_uid.push(("k8s.pod.uid", "u1"));
        let mut with_id = with_uid.clone();
        with_id.push(("container.id", "c0ffee"));
        let host = [("host.name", "h1"), ("daytwo.cgroup.path", "/kubepods/x")];
        let mut numeric_pid = sig(K::Process, "p", 0, &host);
        numeric_pid
            .resource
            .insert("process.pid".into(), serde_json::json!(4242));
        let cases: Vec<(Signal, Level, Option<&str>)> = vec![
            (
                sig(K::Container, "c", 0, &k8s),
                Level::Container,
                Some("container:shop/web-1/app"),
            ),
            (
                sig(K::Container, "c", 0, &with_uid),
                Level::Container,
                Some("container:u1/app"),
            ),
            (
                sig(K::Container, "c", 0, &with_id),
                Level::Container,
                Some("container:c0ffee"),
            ),
            (
                sig(K::Pod, "p", 0, &k8s),
                Level::Pod,
                Some("pod:shop/web-1"),
            ),
            (sig(K::Pod, "p", 0, &with_uid), Level::Pod, Some("pod:u1")),
            (
                sig(K::Node, "n1", 0, &[]),
                Level::Machine,
                Some("machine:n1"),
            ),
            (
                sig(K::Pod, "p", 0, &k8s),
                Level::Machine,
                Some("machine:n1"),
            ),
            (
                sig(K::Pod, "p", 0, &k8s),
                Level::Workload,
                Some("workload:/shop/deployment/web"),
            ),
            (
                sig(K::Pod, "p", 0, &k8s),
                Level::Service,
                Some("service:web"),
            ),
            (
                sig(
                    K::Process,
                    "p",
                    0,
                    &[("host.name", "h1"), ("process.pid", "17")],
                ),
                Level::Process,
                Some("process:h1/17"),
            ),
            (numeric_pid, Level::Process, Some("process:h1/4242")),
            (
                sig(K::Cgroup, "g", 0, &host),
                Level::Cgroup,
                Some("cgroup:h1//kubepods/x"),
            ),
            (
                sig(K::Process, "p", 0, &[("host.name", "h1")]),
                Level::Process,
                None,
            ),
            (
                sig(K::Container, "c", 0, &[("k8s.container.name", "app")]),
                Level::Container,
                None,
            ),
        ];
        let mut ids = Ids::default();
        for (s, level, want) in &cases {
            if level_of(s.entity.kind) == Some(*level) {
                assert_eq!(entity_id(s).as_deref(), *want, "{s:?}");
            }
            // After a signal that named every level: nothing stale is left.
            ids.fill(&sig(K::Container, "all", 0, &with_id));
            ids.fill(s);
            assert_eq!(ids.get(*level), *want, "{level:?} of {s:?}");
        }
    }

    fn pod_signal(t: i64, node: &str) -> Signal {
        sig(
            EntityKind::Container,
            "web/app",
            t,
            &[
                ("k8s.pod.uid", "u1"),
                ("k8s.container.name", "app"),
                ("k8s.namespace.name", "shop"),
                ("k8s.node.name", node),
                ("k8s.deployment.name", "web"),
                ("service.name", "web"),
            ],
        )
    }

    #[test]
    fn containers_run_on_pods_on_nodes_owned_by_workloads() {
        let mut t = Topology::new(Duration::from_secs(3600), Duration::from_secs(60));
        t.observe(&pod_signal(1000, "n1"));
        t.observe(&pod_signal(1100, "n1"));
        // A signal about the service alone (no node) finds the node through the pod.
        let svc = sig(EntityKind::Service, "web", 1050, &[("service.name", "web")]);
        assert_eq!(t.machines(&svc, svc.time), ["n1"]);
        let ctr = sig(
            EntityKind::Container,
            "web/app",
            1050,
            &[("k8s.pod.uid", "u1"), ("k8s.container.name", "app")],
        );
        assert_eq!(t.machines(&ctr, ctr.time), ["n1"]);
        assert_eq!(t.workloads(&ctr, ctr.time), ["/shop/deployment/web"]);
        let seen = t.seen("pod:u1", EdgeKind::RunsOn, "machine:n1").unwrap();
        assert_eq!(seen.first, Timestamp::from_unix_secs(1000));
        assert_eq!(seen.last, Timestamp::from_unix_secs(1100));
    }

    #[test]
    fn edges_hold_only_around_when_they_were_seen() {
        let mut t = Topology::new(Duration::from_secs(3600), Duration::from_secs(60));
        t.observe(&pod_signal(1000, "n1"));
        let svc = |at| sig(EntityKind::Service, "web", at, &[("service.name", "web")]);
        assert_eq!(
            t.machines(&svc(1030), Timestamp::from_unix_secs(1030)),
            ["n1"]
        );
        assert!(
            t.machines(&svc(500), Timestamp::from_unix_secs(500))
                .is_empty()
        );
        assert!(
            t.machines(&svc(2000), Timestamp::from_unix_secs(2000))
                .is_empty()
        );
    }

    #[test]
    fn unseen_edges_are_dropped_after_the_horizon_and_counted() {
        let mut t = Topology::new(Duration::from_secs(600), Duration::from_secs(60));
        t.observe(&pod_signal(1000, "n1"));
        t.add_call("a", "b", Timestamp::from_unix_secs(1000));
        let edges = t.len();
        assert!(edges >= 4, "{edges}");
        // Another pod keeps arriving; the first one's edges age out.
        for i in 0..20 {
            let mut s = pod_signal(1000 + 100 * i, "n2");
            s.resource.insert("k8s.pod.uid".into(), "u2".into());
            t.observe(&s);
        }
        assert!(t.seen("pod:u1", EdgeKind::RunsOn, "machine:n1").is_none());
        assert!(t.seen("pod:u2", EdgeKind::RunsOn, "machine:n2").is_some());
        assert!(t.calls().is_empty());
        assert!(t.dropped_total() > edges as u64);
    }

    #[test]
    fn calls_answer_direct_and_transitive_questions_in_time() {
        let mut t = Topology::new(Duration::from_secs(3600), Duration::from_secs(60));
        let at = Timestamp::from_unix_secs(1000);
        t.add_call("frontend", "checkout", at);
        t.add_call("checkout", "payment", at);
        assert!(t.calls_at("frontend", "checkout", at));
        assert!(!t.calls_at("frontend", "payment", at));
        assert_eq!(
            t.callees_at("frontend", at).collect::<Vec<_>>(),
            ["checkout"]
        );
        let later = Timestamp::from_unix_secs(5000);
        assert!(!t.calls_at("frontend", "checkout", later));
        assert_eq!(t.callees_at("frontend", later).count(), 0);
        assert!(t.reaches("frontend", "payment", at));
        assert!(!t.reaches("payment", "frontend", at));
        assert!(!t.reaches("frontend", "payment", Timestamp::from_unix_secs(5000)));
    }

    /// Service shop/checkout's signal listing its backends as an EndpointSlice mapper does.
    fn checkout_backed_by<S: AsRef<str>>(pods: &[S], uids: &[&str], nodes: &[S]) -> Signal {
        let mut svc = sig(
            EntityKind::Service,
            "shop/checkout",
            1000,
            &[("service.name", "checkout"), ("k8s.namespace.name", "shop")],
        );
        let list = |v: Vec<&str>| serde_json::json!(v);
        let a = &mut svc.attributes;
        a.insert(
            "daytwo.k8s.endpoints.pods".into(),
            list(pods.iter().map(AsRef::as_ref).collect()),
        );
        a.insert("daytwo.k8s.endpoints.pod_uids".into(), list(uids.to_vec()));
        a.insert(
            "daytwo.k8s.endpoints.nodes".into(),
            list(nodes.iter().map(AsRef::as_ref).collect()),
        );
        svc
    }

    #[test]
    fn a_services_backends_are_its_pods_on_their_nodes() {
        let mut t = Topology::new(Duration::from_secs(3600), Duration::from_secs(60));
        let svc = checkout_backed_by(&["checkout-1", "checkout-2"], &["u1", ""], &["n1", "n2"]);
        t.observe(&svc);
        assert!(
            t.seen("service:checkout", EdgeKind::RunsOn, "pod:u1")
                .is_some()
        );
        assert!(
            t.seen("service:checkout", EdgeKind::RunsOn, "pod:shop/checkout-2")
                .is_some()
        );
        assert_eq!(t.machines(&svc, svc.time), ["n1", "n2"]);
        // Another Service with no backends listed learns nothing.
        let other = sig(
            EntityKind::Service,
            "shop/cart",
            1000,
            &[("service.name", "cart"), ("k8s.namespace.name", "shop")],
        );
        t.observe(&other);
        assert!(t.machines(&other, other.time).is_empty());
    }

    #[test]
    fn a_service_on_many_pods_reaches_each_machine_once() {
        // 60 pods on 7 nodes, more than reach's list holds before it uses a set.
        let mut t = Topology::new(Duration::from_secs(3600), Duration::from_secs(60));
        let pods: Vec<String> = (0..60).map(|i| format!("checkout-{i}")).collect();
        let nodes: Vec<String> = (0..60).map(|i| format!("n{}", i % 7)).collect();
        let svc = checkout_backed_by(&pods, &[], &nodes);
        t.observe(&svc);
        let want: Vec<String> = (0..7).map(|i| format!("n{i}")).collect();
        assert_eq!(t.machines(&svc, svc.time), want);
        let reached = t.reach("service:checkout", svc.time, &[EdgeKind::RunsOn], 3);
        let distinct: HashSet<&str> = reached.iter().copied().collect();
        assert_eq!(reached.len(), distinct.len(), "{reached:?}");
        assert_eq!(reached.len(), 60 + 7);
    }

    #[test]
    fn pods_mount_the_claims_their_signals_list_at_that_time() {
        let mut t = Topology::new(Duration::from_secs(3600), Duration::from_secs(60));
        let mut pod = sig(
            EntityKind::Pod,
            "shop/db-0",
            1000,
            &[
                ("k8s.pod.uid", "u7"),
                ("k8s.namespace.name", "shop"),
                ("k8s.pod.name", "db-0"),
            ],
        );
        pod.resource.insert(
            "daytwo.k8s.pod.claims".into(),
            serde_json::json!(["data-db-0", "db-0-scratch"]),
        );
        t.observe(&pod);
        assert!(
            t.seen("pod:u7", EdgeKind::Mounts, "volume:shop/data-db-0")
                .is_some()
        );
        // A container of the pod (known by uid only) finds them through the pod.
        let ctr = sig(
            EntityKind::Container,
            "shop/db-0/postgres",
            1030,
            &[("k8s.pod.uid", "u7"), ("k8s.container.name", "postgres")],
        );
        t.observe(&ctr);
        assert_eq!(
            t.claims(&ctr, ctr.time),
            ["shop/data-db-0", "shop/db-0-scratch"]
        );
        // Only around when it was seen.
        assert!(t.claims(&ctr, Timestamp::from_unix_secs(5000)).is_empty());
        // A volume entity's id is its claim's.
        let claim = sig(
            EntityKind::Volume,
            "shop/data-db-0",
            1000,
            &[
                ("k8s.namespace.name", "shop"),
                ("k8s.persistentvolumeclaim.name", "data-db-0"),
            ],
        );
        assert_eq!(entity_id(&claim).as_deref(), Some("volume:shop/data-db-0"));
        // Another pod mounts nothing; a ConfigMap volume entity is no claim.
        let other = sig(
            EntityKind::Pod,
            "shop/web-1",
            1000,
            &[("k8s.pod.uid", "u8"), ("k8s.namespace.name", "shop")],
        );
        t.observe(&other);
        assert!(t.claims(&other, other.time).is_empty());
        let cm = sig(
            EntityKind::Volume,
            "shop/cfg",
            1000,
            &[
                ("k8s.namespace.name", "shop"),
                ("k8s.configmap.name", "cfg"),
            ],
        );
        assert_eq!(entity_id(&cm), None);
    }

    /// A container, pod, service, process or cgroup signal over a small space of names, so
    /// that edges are seen again, move and age out.
    fn world_signal(kind: u8, a: u8, b: u8, t: i64) -> Signal {
        let (pod, node, w) = (format!("u{a}"), format!("n{b}"), format!("w{}", a % 3));
        match kind {
            0 => sig(
                EntityKind::Container,
                "c",
                t,
                &[
                    ("k8s.pod.uid", &pod),
                    ("k8s.container.name", "app"),
                    ("k8s.namespace.name", "ns"),
                    ("k8s.node.name", &node),
                    ("k8s.deployment.name", &w),
                    ("service.name", &w),
                ],
            ),
            1 => sig(
                EntityKind::Pod,
                "p",
                t,
                &[("k8s.pod.uid", &pod), ("k8s.node.name", &node)],
            ),
            2 => sig(
                EntityKind::Process,
                "p",
                t,
                &[("host.name", &node), ("process.pid", &pod)],
            ),
            _ => sig(
                EntityKind::Cgroup,
                "g",
                t,
                &[("host.name", &node), ("daytwo.cgroup.path", &pod)],
            ),
        }
    }

    /// What the topology must answer, by brute force: every edge with its names and times.
    #[derive(Default)]
    struct Naive {
        edges: Vec<(String, EdgeKind, String, Seen)>,
    }

    impl Naive {
        fn learn(&mut self, t: &Topology) {
            // The edges as the real topology holds them now (adding is checked by `seen`).
            self.edges = t
                .nodes
                .iter()
                .flat_map(|n| {
                    n.out.iter().map(|e| {
                        (
                            n.name.to_string(),
                            e.kind,
                            t.nodes[e.to as usize].name.to_string(),
                            e.seen,
                        )
                    })
                })
                .collect();
        }

        fn reach(
            &self,
            start: &str,
            at: Timestamp,
            slack: Duration,
            kinds: &[EdgeKind],
        ) -> Vec<String> {
            let mut seen: Vec<String> = Vec::new();
            let mut frontier = vec![start.to_string()];
            for _ in 0..3 {
                let mut next = Vec::new();
                for n in &frontier {
                    for (from, kind, to, s) in &self.edges {
                        if from == n
                            && kinds.contains(kind)
                            && s.first.minus(slack) <= at
                            && at <= s.last.plus(slack)
                            && to != start
                            && !seen.contains(to)
                        {
                            seen.push(to.clone());
                            next.push(to.clone());
                        }
                    }
                }
                frontier = next;
            }
            seen
        }
    }

    proptest::proptest! {
        /// Whatever signals arrive, in whatever time order, and whatever is pruned: every edge
        /// is found by name with the times it was seen, and machines and workloads are what a
        /// brute-force walk over the same edges finds, also after pruning renumbered the nodes.
        #[test]
        fn interned_nodes_answer_as_a_walk_over_named_edges(
            steps in proptest::collection::vec((0u8..4, 0u8..6, 0u8..4, -200i64..400, 0u8..12), 1..60)
        ) {
            let slack = Duration::from_secs(60);
            let mut t = Topology::new(Duration::from_secs(900), slack);
            let mut clock = 10_000;
            let mut expected: HashMap<(String, EdgeKind, String), Seen> = HashMap::new();
            for (kind, a, b, dt, op) in steps {
                clock += dt;
                let s = world_signal(kind, a, b, clock);
                let before = t.dropped_total();
                t.observe(&s);
                if op == 0 {
                    t.prune(Timestamp::from_unix_secs(clock - 100));
                }
                let mut naive = Naive::default();
                naive.learn(&t);
                if t.dropped_total() == before {
                    // Nothing dropped: every edge learnt so far is still there, with its times.
                    for ((from, kind, to), seen) in &expected {
                        let got = t.seen(from, *kind, to);
                        proptest::prop_assert!(got.is_some(), "{from} {kind:?} {to}");
                        let got = got.unwrap();
                        proptest::prop_assert!(got.first <= seen.first && got.last >= seen.last);
                    }
                }
                expected = naive
                    .edges
                    .iter()
                    .map(|(f, k, to, s)| ((f.clone(), *k, to.clone()), *s))
                    .collect();
                proptest::prop_assert_eq!(expected.len(), t.len());
                for probe in 0..4 {
                    let q = world_signal(probe, a, b, clock);
                    let at = q.time;
                    let Some(id) = entity_id(&q) else { continue };
                    let names = |kinds: &[EdgeKind], prefix: &str| {
                        let mut v: Vec<String> = naive
                            .reach(&id, at, slack, kinds)
                            .iter()
                            .filter_map(|n| n.strip_prefix(prefix).map(str::to_string))
                            .collect();
                        v.sort();
                        v
                    };
                    proptest::prop_assert_eq!(t.machines(&q, at), names(&[EdgeKind::RunsOn], "machine:"));
                    let mut each = Vec::new();
                    t.for_each_machine(&q, at, |m| each.push(m.to_string()));
                    each.sort();
                    proptest::prop_assert_eq!(each, t.machines(&q, at));
                    proptest::prop_assert_eq!(
                        t.workloads(&q, at),
                        names(&[EdgeKind::RunsOn, EdgeKind::OwnedBy], "workload:")
                    );
                }
            }
        }
    }

    #[test]
    fn past_the_edge_bound_the_oldest_edges_go_and_the_rest_still_answer() {
        let mut t = Topology::new(Duration::from_secs(100_000), Duration::from_secs(0));
        t.max_edges = 20;
        // Pods u0..u29, each on its own node, one a second: one runs-on edge each; the 21st
        // crosses the bound and the two oldest edges go, and so on.
        for i in 0..30 {
            t.observe(&world_signal(1, i, i, 1000 + i64::from(i)));
        }
        assert!(t.len() <= 20, "{}", t.len());
        assert!(t.dropped_total() >= 10);
        assert!(t.seen("pod:u0", EdgeKind::RunsOn, "machine:n0").is_none());
        assert!(t.seen("pod:u29", EdgeKind::RunsOn, "machine:n29").is_some());
        let q = world_signal(1, 29, 29, 1029);
        assert_eq!(t.machines(&q, q.time), ["n29"]);
        // Nodes no edge names any more are forgotten, not kept with their names.
        assert!(
            t.ids.len() <= 2 * t.len(),
            "{} nodes for {} edges",
            t.ids.len(),
            t.len()
        );
        assert!(!t.ids.contains_key("pod:u0"));
    }

    #[test]
    fn unknown_entities_have_no_edges_and_no_answers() {
        let t = Topology::default();
        let s = sig(EntityKind::Volume, "disk-9", 10, &[]);
        assert!(t.machines(&s, s.time).is_empty());
        assert!(t.workloads(&s, s.time).is_empty());
        assert_eq!(entity_id(&s), None);
    }
}
