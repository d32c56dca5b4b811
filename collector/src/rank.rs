//! The generic ranker: names a root cause for an incident that no rule explains, from the
//! anomaly signals in it and the call graph.
//!
//! Entry types: [`CallGraph`] (service → service calls seen in traces and in `rpc.*` metrics
//! with `peer.service`) and [`rank`], which turns an incident's signals into scored
//! [`Hypothesis`] values with rule [`GENERIC_RULE`].
//!
//! A candidate is a service (an anomaly on a pod counts for the pod's `service.name`; a
//! client-side latency change counts for the service called and half for the caller, and
//! only half for the service called too when that caller is the only one of its callers
//! whose calls moved). Its
//! score in 0..1 combines:
//!
//! * **strength**: the robust z-score of its strongest change, on a log scale (a 10 000σ jump
//!   of a CPU hog and a 20σ latency shift are both unusual, but not equally), plus a share of
//!   the strongest change of every other metric family that moved with it (corroboration);
//!   changes in the benign direction (less load, lower latency, more successes) count less,
//!   and so does the latency of its own calls out (it includes its callees' time);
//! * **onset**: how early it went wrong (the earliest of its strong changes), which decides
//!   which change can explain which, and breaks ties;
//! * **reach**: how many other anomalous services call it, directly or through others (a fault
//!   propagates from a callee to its callers), for a candidate with a change that can travel
//!   upstream at all, counting only callers that did not go wrong well before it did;
//! * **explanation**: a candidate whose own callees went wrong in the faulty direction as early
//!   and as strongly (by evidence other than what the candidate measured on its calls to them)
//!   is a symptom of them and is scored down, so the upstream end of a chain of slow services
//!   is not named as the cause, while a callee that only got quieter because its caller broke
//!   explains nothing.
//!
//! Pure: no I/O, no clock reads; the same signals and graph give the same hypotheses.

use crate::correlate::GENERIC_RULE;
use crate::detect::DETECTION_SIGNALS;
use daytwo_model::{Entity, EntityKind, Evidence, Hypothesis, Signal, Timestamp};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

/// At most this many call edges are kept (the least recently seen go first).
pub const MAX_EDGES: usize = 10_000;
/// At most this many hypotheses are proposed per incident.
pub const MAX_HYPOTHESES: usize = 5;

/// Service → service calls, each with the event times it was first and last seen.
///
/// The one call graph of the collector: the ranker reads it, and the topology
/// ([`crate::topology::Topology`]) owns it and answers the `calls` and `upstream-of` joins of
/// rules from it.
#[derive(Clone, Debug, Default)]
pub struct CallGraph {
    /// caller → callee → (first, last) seen: a lookup borrows the names, copies none.
    out: HashMap<String, BTreeMap<String, (Timestamp, Timestamp)>>,
    /// callee → callers, for lookups without a scan.
    inn: HashMap<String, BTreeSet<String>>,
    /// How many edges `out` holds.
    len: usize,
}

impl CallGraph {
    pub fn new() -> Self {
        CallGraph::default()
    }

    /// Records that `caller` called `callee` at `t`. Returns how many edges were dropped to
    /// stay within [`MAX_EDGES`] (the least recently seen go first).
    pub fn add(&mut self, caller: &str, callee: &str, t: Timestamp) -> usize {
        if caller.is_empty() || callee.is_empty() || caller == callee {
            return 0;
        }
        // A known edge (the common case, once per span) is updated without copying a name.
        if let Some((first, last)) = self.out.get_mut(caller).and_then(|c| c.get_mut(callee)) {
            *first = (*first).min(t);
            *last = (*last).max(t);
            return 0;
        }
        self.out
            .entry(caller.to_string())
            .or_default()
            .insert(callee.to_string(), (t, t));
        self.inn
            .entry(callee.to_string())
            .or_default()
            .insert(caller.to_string());
        self.len += 1;
        if self.len > MAX_EDGES {
            let mut all: Vec<(Timestamp, (&str, &str))> =
                self.edges().map(|(k, (_, last))| (last, k)).collect();
            all.sort();
            let drop: Vec<(String, String)> = all
                .into_iter()
                .take(MAX_EDGES / 10)
                .map(|(_, (a, b))| (a.to_string(), b.to_string()))
                .collect();
            let n = drop.len();
            for k in drop {
                self.remove(&k);
            }
            return n;
        }
        0
    }

    /// Every edge: (caller, callee) and when it was first and last seen.
    fn edges(&self) -> impl Iterator<Item = ((&str, &str), (Timestamp, Timestamp))> {
        self.out.iter().flat_map(|(caller, callees)| {
            callees
                .iter()
                .map(move |(callee, seen)| ((caller.as_str(), callee.as_str()), *seen))
        })
    }

    fn remove(&mut self, k: &(String, String)) {
        if let Some(callees) = self.out.get_mut(&k.0) {
            if callees.remove(&k.1).is_some() {
                self.len -= 1;
            }
            if callees.is_empty() {
                self.out.remove(&k.0);
            }
        }
        if let Some(callers) = self.inn.get_mut(&k.1) {
            callers.remove(&k.0);
            if callers.is_empty() {
                self.inn.remove(&k.1);
            }
        }
    }

    /// Drops every edge last seen before `cutoff`; returns how many.
    pub fn prune(&mut self, cutoff: Timestamp) -> usize {
        let stale: Vec<(String, String)> = self
            .edges()
            .filter(|(_, (_, last))| *last < cutoff)
            .map(|((a, b), _)| (a.to_string(), b.to_string()))
            .collect();
        for k in &stale {
            self.remove(k);
        }
        stale.len()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// When `caller` → `callee` was first and last seen.
    pub fn seen(&self, caller: &str, callee: &str) -> Option<(Timestamp, Timestamp)> {
        self.out.get(caller)?.get(callee).copied()
    }

    /// The services `svc` calls.
    pub fn callees<'a>(&'a self, svc: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.out
            .get(svc)
            .into_iter()
            .flat_map(|c| c.keys().map(String::as_str))
    }

    /// The services `svc` calls, each with when the call was first and last seen.
    pub fn callees_seen<'a>(
        &'a self,
        svc: &'a str,
    ) -> impl Iterator<Item = (&'a str, (Timestamp, Timestamp))> + 'a {
        self.out
            .get(svc)
            .into_iter()
            .flat_map(|c| c.iter().map(|(k, seen)| (k.as_str(), *seen)))
    }

    /// The services that call `svc`.
    pub fn callers<'a>(&'a self, svc: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.inn
            .get(svc)
            .into_iter()
            .flat_map(|c| c.iter().map(String::as_str))
    }

    /// Every service that reaches `svc` through calls (its transitive callers), excluding itself.
    pub fn upstream_of(&self, svc: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut queue = VecDeque::from([svc.to_string()]);
        while let Some(s) = queue.pop_front() {
            for c in self.callers(&s) {
                if c != svc && seen.insert(c.to_string()) {
                    queue.push_back(c.to_string());
                }
            }
        }
        seen
    }

    /// Whether `from` reaches `to` through calls whose edges were seen within `valid`
    /// (first seen no later than its end, last seen no earlier than its start).
    pub fn reaches(&self, from: &str, to: &str, valid: (Timestamp, Timestamp)) -> bool {
        let mut seen: BTreeSet<&str> = BTreeSet::new();
        let mut queue = VecDeque::from([from]);
        while let Some(s) = queue.pop_front() {
            for (c, (first, last)) in self.callees_seen(s) {
                if first > valid.1 || last < valid.0 {
                    continue;
                }
                if c == to {
                    return true;
                }
                if c != from && seen.insert(c) {
                    queue.push_back(c);
                }
            }
        }
        false
    }
}

/// One anomaly, as the ranker reads it from a signal.
#[derive(Clone, Debug)]
struct Anomaly<'a> {
    signal: &'a Signal,
    metric: String,
    sigma: f64,
    /// The series went up (the direction of the raw change, for the explanation).
    up: bool,
    /// The change is in the direction faults push a series: up, except for a ratio of good
    /// outcomes (a success ratio), where a fall means more failures; and any change of a
    /// service's fan-out (its own code took another path).
    worse: bool,
    onset: Timestamp,
    /// The calling service's share of a client-side latency change counted for the caller
    /// (see [`CALLER_SHARE`]): the service called, or `None` for the anomaly itself.
    via: Option<String>,
    /// For a client-side latency change: the service that measured it (the caller).
    caller: Option<String>,
    /// A client-side latency that names no service called (`http.client.*` without
    /// `peer.service`): the time the service waited on its dependencies, whichever they are.
    outbound: bool,
    /// A server-side latency on the calls from one caller only, while the service has other
    /// callers whose calls did not move: about what that caller sends as much as about it.
    one_edge: bool,
}

impl Anomaly<'_> {
    /// Strength on a log scale: ln(1 + |z|), lower for a change in the benign direction (a
    /// fault adds load, latency and errors far more often than it removes them).
    fn strength(&self) -> f64 {
        let mut s = (1.0 + self.sigma.abs()).ln();
        if self.via.is_some() || self.outbound || self.one_edge {
            s *= CALLER_SHARE;
        }
        if self.worse { s } else { s * DOWN_WEIGHT }
    }

    /// Whether this change travels upstream, to the callers of its service: latency, errors or
    /// load going up, or a changed fan-out (the service's own code took another path). A
    /// service whose traffic or latency *fell* is more likely the victim of a caller that
    /// stopped calling it than the cause of anything its callers see.
    fn propagates_up(&self) -> bool {
        self.worse
    }

    /// The family of its metric: the name without a quantile suffix, so p90, p95 and p99 of
    /// one latency count as one piece of evidence; for a client-side latency, also the service
    /// called, so a caller's slower calls to three services are three pieces of evidence, and
    /// the caller that measured it, so two callers that saw their calls to one service slow
    /// down are two independent witnesses of it.
    fn family(&self) -> (&str, Option<String>, Option<&str>) {
        let name = match self.metric.rsplit_once('.') {
            Some((head, q))
                if q.len() >= 2
                    && q.starts_with('p')
                    && q[1..].bytes().all(|b| b.is_ascii_digit()) =>
            {
                head
            }
            _ => &self.metric,
        };
        (
            name,
            self.caller.as_ref().map(|_| service_of(self.signal)),
            self.caller.as_deref(),
        )
    }
}

/// Changes in the benign direction count this much of one in the faulty direction.
const DOWN_WEIGHT: f64 = 0.7;
/// Anomalies within this much of a candidate's strongest one count for its onset.
const STRONG_SHARE: f64 = 0.5;
/// Each further metric family that moved adds this share of its strength to the candidate's.
const CORROBORATION: f64 = 0.3;

/// Whether a metric counts good outcomes, so that its fall is the faulty direction.
fn counts_success(metric: &str) -> bool {
    metric.to_ascii_lowercase().contains("success")
}

fn anomaly(s: &Signal) -> Option<Anomaly<'_>> {
    if !DETECTION_SIGNALS.contains(&s.name.as_str()) {
        return None;
    }
    let peak = s.attributes.get("daytwo.anomaly.sigma")?.as_f64()?;
    // A one-sample spike has a high peak and nothing sustained; the geometric mean of the
    // two keeps a lasting change ahead of a blip of the same height.
    let sustained = s
        .attributes
        .get("daytwo.anomaly.sustained_sigma")
        .and_then(|v| v.as_f64())
        .unwrap_or(peak);
    let sigma = peak.signum() * (peak.abs() * sustained.abs()).sqrt();
    let metric = s
        .attributes
        .get("metric.name")
        .and_then(|v| v.as_str())
        .unwrap_or(&s.name)
        .to_string();
    let up = sigma >= 0.0;
    Some(Anomaly {
        signal: s,
        worse: s.name == crate::detect::FANOUT_ANOMALY || up != counts_success(&metric),
        metric,
        sigma,
        up,
        onset: s.time,
        via: None,
        outbound: is_outbound(s),
        one_edge: false,
        caller: caller_of(s),
    })
}

/// A caller that went wrong more than this long before a candidate's change is not reached by
/// it (a fault travels from callee to caller, so it cannot have caused what came before it);
/// one interval of 1-minute metrics, which can put one fault's onsets that far apart.
const REACH_SLACK_NS: i64 = 60_000_000_000;

/// Client-side anomalies towards this many distinct services are the caller's.
const FAN_OUT: usize = 3;
/// A client-side latency change counts for the service called, and this share of it for the
/// caller: the time a caller measures includes its own (a starved CPU, its network, its
/// connection pool), so the caller is a candidate too, though a weaker one.
const CALLER_SHARE: f64 = 0.5;

/// The calling service of a client-side latency anomaly (span-derived, or an `rpc.client.*`
/// metric reported by the caller about `peer.service`).
fn caller_of(s: &Signal) -> Option<String> {
    if let Some(c) = s
        .attributes
        .get(crate::detect::CALLER)
        .and_then(|v| v.as_str())
    {
        return Some(c.to_string());
    }
    let metric = s.attributes.get("metric.name")?.as_str()?;
    if metric.starts_with("rpc.client") && s.attributes.contains_key("peer.service") {
        return s.resource.get("service.name")?.as_str().map(str::to_string);
    }
    None
}

/// Whether a signal is a client-side latency of the service that measured it with no service
/// called named: what it waited on its calls, so its own share of it is the caller's
/// ([`CALLER_SHARE`]), as for a client-side latency that names the callee.
fn is_outbound(s: &Signal) -> bool {
    let Some(metric) = s.attributes.get("metric.name").and_then(|v| v.as_str()) else {
        return false;
    };
    (metric.starts_with("http.client") || metric.starts_with("rpc.client"))
        && metric.contains("duration")
        && caller_of(s).is_none()
        && !s.attributes.contains_key("peer.service")
}

/// For each service, the peers (`peer` of its anomalies' signals) its anomalies name.
fn peers_by_service(
    anomalies: &[Anomaly],
    peer: impl Fn(&Signal) -> Option<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in anomalies {
        if let Some(p) = peer(a.signal) {
            out.entry(service_of(a.signal)).or_default().insert(p);
        }
    }
    out
}

/// The calling service named on a server-side call metric (`rpc.server.*` with
/// `peer.service`).
fn server_peer(s: &Signal) -> Option<&str> {
    let metric = s.attributes.get("metric.name")?.as_str()?;
    if !metric.starts_with("rpc.server") {
        return None;
    }
    s.attributes.get("peer.service")?.as_str()
}

/// The service a signal is about: `service.name` of its entity or resource, else the entity name.
pub fn service_of(s: &Signal) -> String {
    s.entity
        .attributes
        .get("service.name")
        .or_else(|| s.resource.get("service.name"))
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .unwrap_or_else(|| s.entity.name.clone())
}

struct Candidate<'a> {
    service: String,
    /// Strongest first.
    anomalies: Vec<Anomaly<'a>>,
    /// Its strongest anomaly's strength.
    top: f64,
    /// The strongest, plus [`CORROBORATION`] of the strongest of every other metric family.
    strength: f64,
    onset: Timestamp,
    /// The strength and onset of its strongest change that propagates upstream, if any.
    rise: Option<(f64, Timestamp)>,
}

/// The earliest onset among `anomalies` (strongest first) at least [`STRONG_SHARE`] as strong
/// as the first, with that first strength.
fn strength_onset<'a, 'b>(
    anomalies: impl Iterator<Item = &'b Anomaly<'a>>,
) -> Option<(f64, Timestamp)>
where
    'a: 'b,
{
    let mut top: Option<f64> = None;
    let mut onset: Option<Timestamp> = None;
    for a in anomalies {
        let s = a.strength();
        let t = *top.get_or_insert(s);
        if s >= t * STRONG_SHARE {
            onset = Some(onset.map_or(a.onset, |o| o.min(a.onset)));
        }
    }
    Some((top?, onset?))
}

fn candidate<'a>(service: String, mut anomalies: Vec<Anomaly<'a>>) -> Candidate<'a> {
    anomalies.sort_by(|a, b| b.strength().total_cmp(&a.strength()));
    let (top, onset) = strength_onset(anomalies.iter()).expect("a candidate has an anomaly");
    // Corroboration: one more family of metrics that moved with it (its CPU and its latency,
    // its memory and its request rate) makes a change more credible than one series alone;
    // quantiles of one latency are one family.
    let mut families: BTreeSet<(&str, Option<String>, Option<&str>)> = BTreeSet::new();
    let mut strength = 0.0;
    for a in &anomalies {
        if families.insert(a.family()) {
            strength += if families.len() == 1 {
                a.strength()
            } else {
                CORROBORATION * a.strength()
            };
        }
    }
    let rise = strength_onset(anomalies.iter().filter(|a| a.propagates_up()));
    Candidate {
        service,
        anomalies,
        top,
        strength,
        onset,
        rise,
    }
}

/// Ranks the services behind an incident's anomaly signals. Returns at most
/// [`MAX_HYPOTHESES`] hypotheses, highest score first; none when no signal is an anomaly.
pub fn rank(signals: &[Signal], graph: &CallGraph) -> Vec<Hypothesis> {
    let anomalies: Vec<Anomaly> = signals.iter().filter_map(anomaly).collect();
    // Client-side latency is about the service called, unless one caller saw calls to several
    // services go wrong: then the common factor is the caller (its CPU, its network), not them.
    let mut callees_by_caller: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for a in &anomalies {
        if let Some(c) = caller_of(a.signal) {
            callees_by_caller
                .entry(c)
                .or_default()
                .insert(service_of(a.signal));
        }
    }
    // Server-side latency per calling service (`rpc.server.*` with `peer.service`): when only
    // one of a service's callers saw it move, the caller's calls changed as much as the
    // service did.
    let server_edges = peers_by_service(&anomalies, |s| server_peer(s).map(str::to_string));
    // Client-side latency into a service measured by one caller only, while the service has
    // other callers whose calls did not move: as for a server latency on one caller's calls,
    // the calls that caller sends changed as much as the service did.
    let callers_by_callee = peers_by_service(&anomalies, caller_of);
    let mut by_service: BTreeMap<String, Vec<Anomaly>> = BTreeMap::new();
    for mut a in anomalies {
        let me = service_of(a.signal);
        if let Some(p) = server_peer(a.signal)
            && p != me
            && server_edges.get(&me).is_some_and(|e| e.len() == 1)
            && graph.callers(&me).filter(|c| *c != p).count() >= 1
        {
            let mut share = a.clone();
            share.via = Some(me.clone());
            by_service.entry(p.to_string()).or_default().push(share);
            a.one_edge = true;
        }
        let svc = match caller_of(a.signal) {
            Some(c)
                if callees_by_caller
                    .get(&c)
                    .is_some_and(|s| s.len() >= FAN_OUT) =>
            {
                c
            }
            Some(c) if c != service_of(a.signal) => {
                let callee = service_of(a.signal);
                if callers_by_callee.get(&callee).is_some_and(|s| s.len() == 1)
                    && graph.callers(&callee).any(|x| x != c)
                {
                    a.one_edge = true;
                }
                let mut share = a.clone();
                share.one_edge = false;
                share.via = Some(service_of(a.signal));
                by_service.entry(c).or_default().push(share);
                service_of(a.signal)
            }
            _ => service_of(a.signal),
        };
        by_service.entry(svc).or_default().push(a);
    }
    let cands: Vec<Candidate> = by_service
        .into_iter()
        .map(|(service, anomalies)| candidate(service, anomalies))
        .collect();
    if cands.is_empty() {
        return Vec::new();
    }
    let anomalous: BTreeSet<String> = cands.iter().map(|c| c.service.clone()).collect();
    let by_name: HashMap<&str, &Candidate> =
        cands.iter().map(|c| (c.service.as_str(), c)).collect();
    let mut scored: Vec<(f64, &Candidate, usize, Option<String>)> = cands
        .iter()
        .map(|c| {
            // Strength, absolute: ln(1+z) of 2.5 (z≈11) → 0.55, 9.2 (z=10⁴) → 0.95.
            let strength = 1.0 - (-c.strength / 3.0).exp();
            // Only a change that travels upstream reaches the callers: a service that merely
            // got quieter reaches nobody.
            let reach = match c.rise {
                Some((_, rose)) => graph
                    .upstream_of(&c.service)
                    .iter()
                    .filter_map(|s| by_name.get(s.as_str()))
                    .filter(|u| u.onset.0 >= rose.0.saturating_sub(REACH_SLACK_NS))
                    .count(),
                None => 0,
            };
            let reach_score = reach as f64 / (anomalous.len().max(2) - 1) as f64;
            // A callee whose latency, errors, load or fan-out went up no later and at least
            // about as strongly as this candidate's strongest change explains it. A callee that
            // only got quieter does not: that is what a broken caller does to its callees. Nor
            // does what this candidate measured itself on its calls to the callee: that time
            // holds the candidate's own delays too, so it cannot tell the two apart. Nor does
            // the callee's own time on this candidate's calls only (a server latency that moved
            // for one caller): a change in what the candidate sends shows there just as well.
            let explained_by = graph
                .callees(&c.service)
                .filter_map(|d| by_name.get(d).map(|v| (d, v)))
                .filter_map(|(d, callee)| {
                    let own = callee.anomalies.iter().filter(|a| {
                        a.propagates_up()
                            && a.caller.as_deref() != Some(c.service.as_str())
                            && !(a.one_edge && server_peer(a.signal) == Some(c.service.as_str()))
                    });
                    strength_onset(own).map(|r| (d, r))
                })
                .filter(|(_, (s, t))| *s >= c.top * 0.8 && *t <= c.onset)
                .map(|(d, _)| d.to_string())
                .min();
            let mut score = 0.85 * strength + 0.15 * reach_score;
            if explained_by.is_some() {
                score *= 0.6;
            }
            (score.clamp(0.0, 1.0), c, reach, explained_by)
        })
        .collect();
    scored.sort_by(|a, b| {
        b.0.total_cmp(&a.0)
            .then_with(|| a.1.onset.cmp(&b.1.onset))
            .then_with(|| a.1.service.cmp(&b.1.service))
    });
    scored
        .into_iter()
        .take(MAX_HYPOTHESES)
        .map(|(score, c, reach, explained_by)| hypothesis(c, score, reach, explained_by))
        .collect()
}

fn hypothesis(c: &Candidate, score: f64, reach: usize, explained_by: Option<String>) -> Hypothesis {
    let top = &c.anomalies[0];
    let first = top.signal;
    let mut entity =
        Entity::new(EntityKind::Service, &c.service).with_attr("service.name", c.service.as_str());
    for k in [
        "k8s.namespace.name",
        "k8s.cluster.name",
        "service.namespace",
    ] {
        if let Some(v) = first.attr(k) {
            entity = entity.with_attr(k, v.clone());
        }
    }
    let metrics: Vec<String> = c
        .anomalies
        .iter()
        .take(3)
        .map(|a| {
            let via = match &a.via {
                Some(d) => format!(" (its calls to {d})"),
                None if a.outbound => " (its calls out)".to_string(),
                None if a.one_edge => " (calls from one caller only)".to_string(),
                None => String::new(),
            };
            format!(
                "{}{via} {} {:.1}σ from {}",
                a.metric,
                if a.up { "up" } else { "down" },
                a.sigma.abs(),
                a.onset
            )
        })
        .collect();
    let mut explanation = format!(
        "{} went wrong first at {}: {}.",
        c.service,
        c.onset,
        metrics.join("; ")
    );
    if reach > 0 {
        explanation.push_str(&format!(
            " {reach} other anomalous service(s) call it, directly or through others."
        ));
    }
    if let Some(d) = explained_by {
        explanation.push_str(&format!(
            " It calls {d}, which went wrong as early and as strongly, so it may be a symptom."
        ));
    }
    let evidence: Vec<Evidence> = c
        .anomalies
        .iter()
        .take(3)
        .flat_map(|a| a.signal.evidence.iter().cloned())
        .collect();
    Hypothesis {
        entity,
        score,
        rule: GENERIC_RULE.to_string(),
        explanation,
        remediation: format!(
            "Look at {} around {}: {} changed most. Check recent rollouts, resource limits and its own dependencies.",
            c.service, c.onset, top.metric
        ),
        evidence,
    }
}

#[cfg(test)]
mod tests;
