//! The collector's processing step: store a batch of signals, correlate them, apply the rules,
//! and enqueue notifications, all in one durable transaction.
//!
//! Entry type: [`Pipeline`]. It is synchronous (redb commits block); async callers run it in
//! `spawn_blocking` behind a mutex. A batch is acknowledged to the sender only after its
//! transaction committed, so a crash at any point loses nothing the agent was told is safe;
//! a redelivered batch is a no-op because signal ids are stable.
//!
//! Each signal first teaches the [`Topology`] the edges its attributes imply and is held for
//! rule joins ([`Held`]); then the rules are matched ([`correlate::match_rules`]: as a trigger,
//! and as the late cause of triggers already held) and the correlator decides. Signals a rule
//! joined to the match (the trigger of a late match, the joined causes) are added to the
//! incident with it.
//!
//! An incident that holds anomaly signals (from [`crate::detect`]) is re-ranked by the generic
//! ranker ([`crate::rank`]) each time it changes: its `daytwo.generic` hypotheses are replaced by
//! the ranker's, over its signals and the topology's call graph ([`Pipeline::add_call`]);
//! hypotheses from rules stay as they are.

use crate::correlate::{self, Correlator, Decision, Held};
use crate::metrics::Metrics;
use crate::notify::{self, NotifyEvent};
use crate::rank::{self, CallGraph};
use crate::store::{self, Store, StoreError};
use crate::topology::Topology;
use daytwo_model::{Hypothesis, Incident, IncidentStatus, Link, Signal, Timestamp, stable_id};
use daytwo_rules::RuleSet;
use std::sync::Arc;
use std::time::Duration;

/// At most this many signals are kept inside one incident (the rest are counted, not stored
/// twice: every signal is in the signals table anyway).
pub const MAX_SIGNALS_PER_INCIDENT: usize = 200;

/// What one batch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IngestSummary {
    pub accepted: usize,
    pub duplicates: usize,
    pub opened: Vec<String>,
    pub joined: usize,
    pub held: usize,
}

/// Why an incident operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OperationFailed {
    #[error("incident {0} not found")]
    NotFound(String),
    #[error("incident {id} is {status}; {what}")]
    Conflict {
        id: String,
        status: IncidentStatus,
        what: &'static str,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub struct Pipeline {
    store: Store,
    rules: Arc<RuleSet>,
    correlator: Correlator,
    notify: notify::Handle,
    metrics: Metrics,
    topology: Topology,
    held: Held,
    window: Duration,
    topology_metrics: Option<TopologyMetrics>,
}

/// The topology's and join memory's gauges and counters, when registered
/// ([`Pipeline::set_topology_metrics`]).
#[derive(Clone)]
pub struct TopologyMetrics {
    /// `daytwo_topology_edges`: entity edges held.
    pub edges: prometheus::IntGauge,
    /// `daytwo_topology_edges_dropped_total`: edges dropped after the horizon or past the bound.
    pub dropped: prometheus::IntCounter,
    /// `daytwo_join_signals_held`: signals held in memory for rule joins.
    pub held: prometheus::IntGauge,
}

impl TopologyMetrics {
    /// Registers the three metrics.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let m = TopologyMetrics {
            edges: prometheus::IntGauge::new(
                "daytwo_topology_edges",
                "Entity edges (runs-on, owned-by) held in the collector's topology.",
            )?,
            dropped: prometheus::IntCounter::new(
                "daytwo_topology_edges_dropped_total",
                "Topology edges (calls included) dropped because they were not seen for the horizon, or past the size bound.",
            )?,
            held: prometheus::IntGauge::new(
                "daytwo_join_signals_held",
                "Signals held in memory for the joins of rules.",
            )?,
        };
        registry.register(Box::new(m.edges.clone()))?;
        registry.register(Box::new(m.dropped.clone()))?;
        registry.register(Box::new(m.held.clone()))?;
        Ok(m)
    }
}

/// How long signals are held for joins: the correlation window or the longest join, whichever
/// is longer.
fn held_horizon(window: Duration, rules: &RuleSet) -> Duration {
    window.max(rules.join_horizon())
}

impl Pipeline {
    /// Builds the pipeline and rebuilds correlation state from the store's active incidents.
    pub fn new(
        store: Store,
        rules: Arc<RuleSet>,
        window: Duration,
        quorum: usize,
        notify: notify::Handle,
        metrics: Metrics,
    ) -> Result<Pipeline, StoreError> {
        let mut correlator = Correlator::new(window).with_quorum(quorum);
        let active = store.active_incidents()?;
        for inc in &active {
            correlator.track(inc);
        }
        metrics.incidents_active.set(active.len() as i64);
        let held = Held::new(held_horizon(window, &rules));
        Ok(Pipeline {
            store,
            rules,
            correlator,
            notify,
            metrics,
            topology: Topology::new(
                crate::topology::DEFAULT_HORIZON,
                window.max(crate::topology::DEFAULT_SLACK),
            ),
            held,
            window,
            topology_metrics: None,
        })
    }

    /// Replaces the topology (to set its horizon and slack); call before ingesting.
    pub fn set_topology(&mut self, topology: Topology) {
        self.topology = topology;
    }

    /// Reports the topology's size and drops to these metrics after every batch.
    pub fn set_topology_metrics(&mut self, m: TopologyMetrics) {
        self.topology_metrics = Some(m);
    }

    /// Records a service → service call (from traces or `rpc.*` metrics) in the topology.
    pub fn add_call(&mut self, caller: &str, callee: &str, t: Timestamp) {
        self.topology.add_call(caller, callee, t);
    }

    pub fn calls(&self) -> &CallGraph {
        self.topology.calls()
    }

    pub fn topology(&self) -> &Topology {
        &self.topology
    }

    /// The rules in force.
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Replaces the generic ranker's hypotheses of an incident that holds anomaly signals.
    fn rerank(&self, inc: &mut Incident) {
        let ranked = rank::rank(&inc.signals, self.topology.calls());
        if ranked.is_empty() {
            return;
        }
        inc.root_causes
            .retain(|h| h.rule != crate::correlate::GENERIC_RULE);
        inc.root_causes.extend(ranked);
        inc.sort_root_causes();
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Swaps the rules in force (a reload); signals already held stay held.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.held.set_horizon(held_horizon(self.window, &rules));
        self.rules = rules;
    }

    fn report_topology(&self) {
        if let Some(m) = &self.topology_metrics {
            m.edges.set(self.topology.len() as i64);
            let reported = m.dropped.get();
            m.dropped
                .inc_by(self.topology.dropped_total().saturating_sub(reported));
            m.held.set(self.held.len() as i64);
        }
    }

    /// Processes a batch in event-time order, in one transaction.
    pub fn ingest(&mut self, mut signals: Vec<Signal>) -> Result<IngestSummary, StoreError> {
        signals.sort_by_key(|s| s.time);
        let mut sum = IngestSummary::default();
        let txn = self.store.begin_write()?;
        for s in signals {
            if store::has_signal(&txn, &s.id)? {
                sum.duplicates += 1;
                continue;
            }
            store::put_signal(&txn, &s)?;
            sum.accepted += 1;
            // Shared with the signals held for joins and the rule matches, not copied.
            let s = std::sync::Arc::new(s);
            self.topology.observe(&s);
            self.held.insert(&self.rules, &s);
            let mut matches = correlate::match_rules(&self.rules, &self.held, &self.topology, &s);
            let joined = joined_signals(&s, &matches);
            match self
                .correlator
                .decide_in(&s, &matches, Some(&self.topology))
            {
                Decision::Hold => sum.held += 1,
                Decision::Join {
                    incident_id,
                    hypotheses,
                } => {
                    let Some(mut inc) = store::get_incident_in(&txn, &incident_id)? else {
                        // The store is the authority; the correlator had stale state.
                        self.correlator.forget(&incident_id);
                        sum.held += 1;
                        continue;
                    };
                    for j in &joined {
                        add_signal(&mut inc, j);
                        self.correlator.touch(&incident_id, j);
                    }
                    let hypotheses = kept(&self.rules, &inc, &mut matches, hypotheses);
                    join(&mut inc, &s, hypotheses);
                    self.rerank(&mut inc);
                    store::put_incident(&txn, &inc)?;
                    self.correlator.touch(&incident_id, &s);
                    sum.joined += 1;
                }
                Decision::Open {
                    fingerprint,
                    severity,
                    title,
                    hypotheses,
                    context,
                } => {
                    let (active, last) = store::fingerprint_ids(&txn, &fingerprint)?;
                    if let Some(id) = active
                        && let Some(mut inc) = store::get_incident_in(&txn, &id)?
                    {
                        for j in &joined {
                            add_signal(&mut inc, j);
                        }
                        let hypotheses = kept(&self.rules, &inc, &mut matches, hypotheses);
                        join(&mut inc, &s, hypotheses);
                        self.rerank(&mut inc);
                        store::put_incident(&txn, &inc)?;
                        self.correlator.track(&inc);
                        sum.joined += 1;
                        continue;
                    }
                    // A rule-made incident: every match's text is kept, the best's title too.
                    let (title, hypotheses) = match matches.first() {
                        Some(_) => {
                            for m in &mut matches {
                                self.rules.render(m);
                            }
                            let h = matches.iter().map(|m| m.hypothesis.clone()).collect();
                            (matches[0].title.clone(), h)
                        }
                        None => (title, hypotheses),
                    };
                    let id = stable_id(&["incident", &fingerprint, &s.id])[..16].to_string();
                    let mut signals = context;
                    for j in joined {
                        if !signals.iter().any(|x| x.id == j.id) {
                            signals.push(j);
                        }
                    }
                    signals.sort_by_key(|x| x.time);
                    signals.push(Signal::clone(&s));
                    let mut inc = Incident {
                        id: id.clone(),
                        fingerprint,
                        status: IncidentStatus::Open,
                        severity,
                        opened_at: s.time,
                        updated_at: s.time,
                        resolved_at: None,
                        title,
                        root_causes: hypotheses,
                        signals,
                        links: last
                            .map(|prev| Link {
                                relation: "previous".into(),
                                incident_id: prev,
                            })
                            .into_iter()
                            .collect(),
                    };
                    // A late rule match whose earlier signals were in an incident resolved
                    // since: linked to it, never joined to it.
                    if let Some(r) = self.correlator.resolved_related(&s, &matches)
                        && inc.links.iter().all(|l| l.incident_id != r)
                    {
                        inc.links.push(Link {
                            relation: "related".into(),
                            incident_id: r,
                        });
                    }
                    inc.sort_root_causes();
                    self.rerank(&mut inc);
                    store::put_incident(&txn, &inc)?;
                    // The outbox runs on wall-clock time (retry deadlines), not event time.
                    let now = Timestamp::from_system_time(std::time::SystemTime::now());
                    self.notify.enqueue(&txn, NotifyEvent::Trigger, &inc, now)?;
                    self.correlator.track(&inc);
                    self.metrics
                        .incidents_opened
                        .with_label_values(&[inc.severity.as_str()])
                        .inc();
                    self.metrics.incidents_active.inc();
                    sum.opened.push(id);
                }
            }
        }
        txn.commit().map_err(redb::Error::from)?;
        self.report_topology();
        if !sum.opened.is_empty() {
            self.notify.wake();
        }
        self.metrics.signals_accepted.inc_by(sum.accepted as u64);
        self.metrics.signals_duplicate.inc_by(sum.duplicates as u64);
        Ok(sum)
    }

    /// Acknowledges an open incident (idempotent); the pagers are told once.
    pub fn acknowledge(&mut self, id: &str, now: Timestamp) -> Result<Incident, OperationFailed> {
        self.transition(id, now, IncidentStatus::Acknowledged)
    }

    /// Resolves every active incident whose newest signal (event time) is older than
    /// `now - quiet`: its signals have cleared. Returns the resolved ids. The pagers are told
    /// once per incident, as for a manual resolve.
    pub fn resolve_quiet(
        &mut self,
        now: Timestamp,
        quiet: std::time::Duration,
    ) -> Result<Vec<String>, StoreError> {
        let cutoff = now.minus(quiet);
        let stale: Vec<String> = self
            .store
            .active_incidents()?
            .into_iter()
            .filter(|i| i.updated_at < cutoff)
            .map(|i| i.id)
            .collect();
        let mut done = Vec::new();
        for id in stale {
            match self.transition(&id, now, IncidentStatus::Resolved) {
                Ok(_) => done.push(id),
                Err(OperationFailed::Store(e)) => return Err(e),
                // Resolved meanwhile, or gone: nothing to do.
                Err(_) => {}
            }
        }
        Ok(done)
    }

    /// Resolves an incident (idempotent); the pagers are told once.
    pub fn resolve(&mut self, id: &str, now: Timestamp) -> Result<Incident, OperationFailed> {
        self.transition(id, now, IncidentStatus::Resolved)
    }

    fn transition(
        &mut self,
        id: &str,
        now: Timestamp,
        to: IncidentStatus,
    ) -> Result<Incident, OperationFailed> {
        let txn = self.store.begin_write()?;
        let mut inc = store::get_incident_in(&txn, id)?
            .ok_or_else(|| OperationFailed::NotFound(id.to_string()))?;
        if inc.status == to {
            return Ok(inc);
        }
        if inc.status == IncidentStatus::Resolved {
            return Err(OperationFailed::Conflict {
                id: id.to_string(),
                status: inc.status,
                what: "a resolved incident cannot be acknowledged; a new signal opens a new, linked incident",
            });
        }
        inc.status = to;
        inc.updated_at = inc.updated_at.max(now);
        let event = match to {
            IncidentStatus::Resolved => {
                inc.resolved_at = Some(now);
                NotifyEvent::Resolve
            }
            IncidentStatus::Acknowledged => NotifyEvent::Acknowledge,
            IncidentStatus::Open => unreachable!("no transition back to open"),
        };
        store::put_incident(&txn, &inc)?;
        self.notify
            .enqueue(&txn, event, &inc, now)
            .map_err(StoreError::from)?;
        txn.commit().map_err(|e| StoreError::Io(e.into()))?;
        self.correlator.track(&inc);
        if to == IncidentStatus::Resolved {
            self.metrics.incidents_active.dec();
        }
        self.notify.wake();
        Ok(inc)
    }
}

/// The signals the matches joined to `s` (late triggers, joined causes), once each, `s` excluded.
fn joined_signals(s: &Signal, matches: &[daytwo_rules::RuleMatch]) -> Vec<Signal> {
    let mut out: Vec<Signal> = Vec::new();
    for m in matches {
        for j in &m.signals {
            if j.id != s.id && !out.iter().any(|x| x.id == j.id) {
                out.push(Signal::clone(j));
            }
        }
    }
    out
}

/// Adds a signal an incident does not hold yet (by id), within the bound.
fn add_signal(inc: &mut Incident, s: &Signal) {
    if inc.signals.len() < MAX_SIGNALS_PER_INCIDENT && !inc.signals.iter().any(|x| x.id == s.id) {
        inc.signals.push(s.clone());
    }
}

/// The hypotheses a signal's decision adds to `inc` ([`join`]), rendered: the decision's own
/// when no rule matched; else the matches' (which the decision leaves to the caller), of
/// which only those [`join`] keeps are rendered: a cause the incident does not name yet, or
/// names with a lower score.
fn kept(
    rules: &RuleSet,
    inc: &Incident,
    matches: &mut [daytwo_rules::RuleMatch],
    decided: Vec<Hypothesis>,
) -> Vec<Hypothesis> {
    if matches.is_empty() {
        return decided;
    }
    let named = |h: &Hypothesis| {
        let key = h.entity.key();
        inc.root_causes
            .iter()
            .any(|r| r.rule == h.rule && r.score >= h.score && r.entity.key() == key)
    };
    matches
        .iter_mut()
        .filter(|m| !named(&m.hypothesis))
        .map(|m| {
            rules.render(m);
            m.hypothesis.clone()
        })
        .collect()
}

/// Adds a signal and new hypotheses to an incident.
fn join(inc: &mut Incident, s: &Signal, hypotheses: Vec<Hypothesis>) {
    if inc.signals.len() < MAX_SIGNALS_PER_INCIDENT {
        inc.signals.push(s.clone());
    }
    inc.updated_at = inc.updated_at.max(s.time);
    for h in hypotheses {
        match inc
            .root_causes
            .iter_mut()
            .find(|r| r.rule == h.rule && r.entity.key() == h.entity.key())
        {
            Some(existing) => {
                if h.score > existing.score {
                    *existing = h;
                }
            }
            None => inc.root_causes.push(h),
        }
    }
    inc.sort_root_causes();
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, EntityKind, Severity};

    fn pipeline(dir: &std::path::Path) -> Pipeline {
        let registry = prometheus::Registry::new();
        Pipeline::new(
            Store::open(dir).unwrap(),
            Arc::new(RuleSet::builtin()),
            Duration::from_secs(300),
            2,
            crate::notify::Handle::disabled(),
            Metrics::new(&registry).unwrap(),
        )
        .unwrap()
    }

    fn container_waiting(id: &str, node: &str, t: i64) -> Signal {
        Signal {
            id: id.into(),
            name: "daytwo.k8s.container.waiting".into(),
            time: Timestamp::from_unix_secs(t),
            severity: Severity::Warning,
            entity: Entity::new(EntityKind::Container, format!("shop/{id}/app"))
                .with_attr("k8s.pod.uid", id)
                .with_attr("k8s.container.name", "app"),
            resource: [
                ("k8s.node.name".to_string(), node.into()),
                ("k8s.namespace.name".to_string(), "shop".into()),
            ]
            .into_iter()
            .collect(),
            attributes: [(
                "k8s.container.status.reason".to_string(),
                "CrashLoopBackOff".into(),
            )]
            .into_iter()
            .collect(),
            message: String::new(),
            evidence: vec![],
        }
    }

    fn node_not_ready(node: &str, t: i64) -> Signal {
        Signal {
            id: format!("nr-{node}-{t}"),
            name: "daytwo.k8s.node.condition".into(),
            time: Timestamp::from_unix_secs(t),
            severity: Severity::Critical,
            entity: Entity::new(EntityKind::Node, node).with_attr("k8s.node.name", node),
            resource: Default::default(),
            attributes: [
                ("k8s.node.condition.type".to_string(), "Ready".into()),
                ("k8s.node.condition.status".to_string(), "Unknown".into()),
            ]
            .into_iter()
            .collect(),
            message: "Kubelet stopped posting node status.".into(),
            evidence: vec![],
        }
    }

    fn incidents_by_rule(p: &Pipeline, rule: &str) -> Vec<Incident> {
        p.store()
            .active_incidents()
            .unwrap()
            .into_iter()
            .filter(|i| i.root_causes.iter().any(|h| h.rule == rule))
            .collect()
    }

    #[test]
    fn a_node_condition_reported_after_its_pods_failed_still_names_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path());
        // The pods' failures arrive first (in separate batches, as from separate agents)…
        p.ingest(vec![container_waiting("p1", "node-3", 1_000)])
            .unwrap();
        p.ingest(vec![container_waiting("p2", "node-3", 1_010)])
            .unwrap();
        p.ingest(vec![container_waiting("p9", "node-4", 1_010)])
            .unwrap();
        assert!(incidents_by_rule(&p, "cascades.node_not_ready").is_empty());
        // … then the node's condition, which happened before them, arrives late.
        p.ingest(vec![node_not_ready("node-3", 990)]).unwrap();
        let incs = incidents_by_rule(&p, "cascades.node_not_ready");
        assert_eq!(incs.len(), 1, "{incs:#?}");
        let inc = &incs[0];
        // The best cause is the node, whether named by the cascade or by the Kubernetes
        // pack's own rule for the NotReady condition (both hypotheses are in the incident).
        assert_eq!(inc.root_causes[0].entity.kind, EntityKind::Node);
        assert_eq!(inc.root_causes[0].entity.name, "node-3");
        let cascade = inc
            .root_causes
            .iter()
            .find(|h| h.rule == "cascades.node_not_ready")
            .unwrap();
        assert_eq!(cascade.entity.name, "node-3");
        let ids: std::collections::BTreeSet<&str> =
            inc.signals.iter().map(|s| s.id.as_str()).collect();
        assert!(
            ids.contains("p1") && ids.contains("p2") && ids.contains("nr-node-3-990"),
            "{ids:?}"
        );
        assert!(
            !ids.contains("p9"),
            "a pod on another node is not part of it"
        );
        // A later pod failure on the same node joins the same incident (same fingerprint).
        p.ingest(vec![container_waiting("p3", "node-3", 1_020)])
            .unwrap();
        let incs = incidents_by_rule(&p, "cascades.node_not_ready");
        assert_eq!(incs.len(), 1);
        assert!(incs[0].signals.iter().any(|s| s.id == "p3"));
    }

    #[test]
    fn a_signal_about_an_unknown_entity_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path());
        let s = Signal {
            id: "u1".into(),
            name: "vendor.thing.happened".into(),
            time: Timestamp::from_unix_secs(5_000),
            severity: Severity::Critical,
            // No identity attributes, a kind the topology has no edges for.
            entity: Entity::new(EntityKind::Volume, "mystery-disk"),
            resource: Default::default(),
            attributes: Default::default(),
            message: "something about a disk nobody told us about".into(),
            evidence: vec![],
        };
        let sum = p.ingest(vec![s.clone()]).unwrap();
        assert_eq!(sum.accepted, 1);
        assert_eq!(
            sum.opened.len(),
            1,
            "a critical signal opens an incident even so"
        );
        let inc = p.store().get_incident(&sum.opened[0]).unwrap().unwrap();
        assert_eq!(inc.signals[0], s);
        assert!(p.topology().machines(&s, s.time).is_empty());
        // Delivered again: a duplicate, not a loss.
        assert_eq!(p.ingest(vec![s]).unwrap().duplicates, 1);
    }

    #[test]
    fn a_hostless_signal_joins_the_incident_on_the_node_its_pod_ran_on() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = pipeline(dir.path());
        // An incident on node-3's host (a global OOM names the host).
        let mut oom = node_not_ready("node-3", 2_000);
        oom.id = "oom".into();
        oom.name = "daytwo.kernel.oom_kill".into();
        oom.entity = Entity::new(EntityKind::Host, "node-3").with_attr("host.name", "node-3");
        oom.resource.insert("host.name".into(), "node-3".into());
        oom.attributes = [("daytwo.oom.constraint".to_string(), "global".into())]
            .into_iter()
            .collect();
        let opened = p.ingest(vec![oom]).unwrap().opened;
        assert_eq!(opened.len(), 1);
        // The topology learns that service cart's pod runs on node-3 …
        let mut learn = container_waiting("p1", "node-3", 2_001);
        learn.severity = Severity::Info;
        learn.name = "app.heartbeat".into();
        learn.resource.insert("service.name".into(), "cart".into());
        p.ingest(vec![learn]).unwrap();
        // … so a warning about service cart alone (no host) joins the node's incident.
        let svc = Signal {
            id: "svc".into(),
            name: "daytwo.service.error_anomaly".into(),
            time: Timestamp::from_unix_secs(2_005),
            severity: Severity::Warning,
            entity: Entity::new(EntityKind::Service, "cart").with_attr("service.name", "cart"),
            resource: Default::default(),
            attributes: Default::default(),
            message: String::new(),
            evidence: vec![],
        };
        let sum = p.ingest(vec![svc]).unwrap();
        assert_eq!(sum.joined, 1, "{sum:?}");
        let inc = p.store().get_incident(&opened[0]).unwrap().unwrap();
        assert!(inc.signals.iter().any(|s| s.id == "svc"));
    }
}
