//! The collector's processing step: store a batch of signals, correlate them, apply the rules,
//! and enqueue notifications, all in one durable transaction.
//!
//! Entry type: [`Pipeline`]. It is synchronous (redb commits block); async callers run it in
//! `spawn_blocking` behind a mutex. A batch is acknowledged to the sender only after its
//! transaction committed, so a crash at any point loses nothing the agent was told is safe;
//! a redelivered batch is a no-op because signal ids are stable.
//!
//! An incident that holds anomaly signals (from [`crate::detect`]) is re-ranked by the generic
//! ranker ([`crate::rank`]) each time it changes: its `daytwo.generic` hypotheses are replaced by
//! the ranker's, over its signals and the call graph the pipeline keeps ([`Pipeline::add_call`]);
//! hypotheses from rules stay as they are.

use crate::correlate::{Correlator, Decision};
use crate::metrics::Metrics;
use crate::notify::{self, NotifyEvent};
use crate::rank::{self, CallGraph};
use crate::store::{self, Store, StoreError};
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
    calls: CallGraph,
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
        Ok(Pipeline {
            store,
            rules,
            correlator,
            notify,
            metrics,
            calls: CallGraph::new(),
        })
    }

    /// Records a service → service call (from traces or `rpc.*` metrics) for the ranker.
    pub fn add_call(&mut self, caller: &str, callee: &str, t: Timestamp) {
        self.calls.add(caller, callee, t);
    }

    pub fn calls(&self) -> &CallGraph {
        &self.calls
    }

    /// Replaces the generic ranker's hypotheses of an incident that holds anomaly signals.
    fn rerank(&self, inc: &mut Incident) {
        let ranked = rank::rank(&inc.signals, &self.calls);
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

    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        self.rules = rules;
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
            let matches = self.rules.evaluate(&s);
            match self.correlator.decide(&s, &matches) {
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
                        join(&mut inc, &s, hypotheses);
                        self.rerank(&mut inc);
                        store::put_incident(&txn, &inc)?;
                        self.correlator.track(&inc);
                        sum.joined += 1;
                        continue;
                    }
                    let id = stable_id(&["incident", &fingerprint, &s.id])[..16].to_string();
                    let mut signals = context;
                    signals.push(s.clone());
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
