//! The async shell around a [`Tracker`]: kube-runtime's watcher in, signals out.
//!
//! Entry: [`run`], one task per resource kind. The watcher lists, then watches from the list's
//! resourceVersion; when a stream is cut it resumes from the last resourceVersion it saw; on
//! `410 Gone` (the version is too old) it re-lists from scratch. The tracker turns each of
//! these into the same diff, so replays yield nothing new (see [`crate::map`]).
//!
//! Errors never stop the task: each is counted in `*_kube_errors_total{resource}`, the first
//! failure of an outage is logged at WARN once per process (the API server being down fails
//! every watch at once: one line, not one per resource and retry; the rest go to DEBUG), its
//! end at INFO, and the watch retries after a backoff that doubles up to its maximum and
//! resets on the next success. A `410 Gone` is a normal
//! desync, logged at INFO and counted in `*_kube_relists_total`.
//!
//! Output goes on a bounded channel: a slow consumer slows the watch, never drops signals.

use crate::map::{Mapper, Tracker};
use daytwo_model::{Signal, Timestamp};
use futures::StreamExt;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use std::fmt::Debug;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The counters of the Kubernetes watches of one process, labelled by `resource` (a fixed
/// set: `pods`, `nodes`, `events`, …). Cheap to clone.
#[derive(Clone, Debug)]
pub struct WatchMetrics {
    /// `<prefix>_kube_watch_events_total{resource}`: watcher events handled.
    pub events: IntCounterVec,
    /// `<prefix>_kube_errors_total{resource}`: failed lists, watches and broken streams.
    pub errors: IntCounterVec,
    /// `<prefix>_kube_relists_total{resource}`: (re-)lists started (1 at start, +1 per desync).
    pub relists: IntCounterVec,
    /// `<prefix>_kube_signals_total{resource}`: signals produced.
    pub signals: IntCounterVec,
    /// `<prefix>_kube_objects{resource}`: objects tracked.
    pub objects: IntGaugeVec,
}

impl WatchMetrics {
    /// Creates the metrics, named `<prefix>_kube_…` (`daytwo_agent`, `daytwo_collector`).
    pub fn new(prefix: &str) -> Result<Self, prometheus::Error> {
        let c = |name: &str, help: &str| {
            IntCounterVec::new(
                Opts::new(format!("{prefix}_kube_{name}"), help),
                &["resource"],
            )
        };
        Ok(WatchMetrics {
            events: c("watch_events_total", "Kubernetes watch events handled.")?,
            errors: c(
                "errors_total",
                "Failed Kubernetes lists and watches and broken watch streams (retried with backoff).",
            )?,
            relists: c(
                "relists_total",
                "Kubernetes (re-)lists: one at start, one after each desync (410 Gone).",
            )?,
            signals: c("signals_total", "Signals produced from Kubernetes objects.")?,
            objects: IntGaugeVec::new(
                Opts::new(
                    format!("{prefix}_kube_objects"),
                    "Kubernetes objects tracked for diffs.",
                ),
                &["resource"],
            )?,
        })
    }

    pub fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.events.clone()))?;
        registry.register(Box::new(self.errors.clone()))?;
        registry.register(Box::new(self.relists.clone()))?;
        registry.register(Box::new(self.signals.clone()))?;
        registry.register(Box::new(self.objects.clone()))?;
        Ok(())
    }
}

/// Waits between failed attempts.
#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub initial: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

/// One watch: which resource (a metric label), how to list it, and the tracker to feed.
pub struct Watch<M: Mapper> {
    pub resource: &'static str,
    pub api: Api<M::Object>,
    pub config: watcher::Config,
    pub tracker: Tracker<M>,
}

/// Watches of this process that are failing right now: the first logs the outage at WARN,
/// the last to recover logs its end.
static FAILING: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

fn now() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// Runs one watch until `shutdown` (or until the receiver of `out` is gone). `observe` sees
/// every watcher event before the tracker does (the agent's pod cache hangs there).
pub async fn run<M, F>(
    w: Watch<M>,
    out: mpsc::Sender<Vec<Signal>>,
    metrics: WatchMetrics,
    backoff: Backoff,
    shutdown: CancellationToken,
    mut observe: F,
) where
    M: Mapper + Send,
    M::Object: kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + 'static,
    F: FnMut(&Event<M::Object>) + Send,
{
    let Watch {
        resource,
        api,
        config,
        mut tracker,
    } = w;
    let stream = watcher::watcher(api, config);
    let mut stream = std::pin::pin!(stream);
    let mut delay = backoff.initial;
    let mut failing = false;
    let label = [resource];
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return,
            n = stream.next() => n,
        };
        let Some(item) = next else {
            return; // the watcher never ends on its own
        };
        let event = match item {
            Ok(ev) => ev,
            Err(watcher::Error::WatchError(status)) if status.code == 410 => {
                metrics.errors.with_label_values(&label).inc();
                info!(
                    resource,
                    "Watch restarted after desync (410 Gone): re-listing."
                );
                continue;
            }
            Err(e) => {
                metrics.errors.with_label_values(&label).inc();
                if failing {
                    debug!(resource, error = %e, "Kubernetes watch still failing.");
                } else {
                    failing = true;
                    if FAILING.fetch_add(1, std::sync::atomic::Ordering::AcqRel) == 0 {
                        warn!(
                            resource,
                            error = %e,
                            retry_ms = delay.as_millis() as u64,
                            "Kubernetes watch failed; retrying with backoff (further failures are counted in *_kube_errors_total, not logged). Node-local detection is not affected."
                        );
                    } else {
                        debug!(resource, error = %e, "Kubernetes watch failed too.");
                    }
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(backoff.max);
                continue;
            }
        };
        // `Init` only says a (re)list is starting, not that the API server answered: the
        // outage ends with the first object or the end of a list.
        if failing && !matches!(event, Event::Init) {
            failing = false;
            if FAILING.fetch_sub(1, std::sync::atomic::Ordering::AcqRel) == 1 {
                info!(resource, "Kubernetes watches recovered.");
            }
        }
        delay = backoff.initial;
        metrics.events.with_label_values(&label).inc();
        observe(&event);
        let t = now();
        let signals = match &event {
            Event::Init => {
                metrics.relists.with_label_values(&label).inc();
                tracker.init();
                Vec::new()
            }
            Event::InitApply(o) | Event::Apply(o) => tracker.apply(o, t),
            Event::Delete(o) => tracker.delete(o, t),
            Event::InitDone => {
                debug!(
                    resource,
                    objects = tracker.len(),
                    "Kubernetes list complete."
                );
                tracker.init_done(t)
            }
        };
        metrics
            .objects
            .with_label_values(&label)
            .set(tracker.len() as i64);
        if signals.is_empty() {
            continue;
        }
        metrics
            .signals
            .with_label_values(&label)
            .inc_by(signals.len() as u64);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            sent = out.send(signals) => if sent.is_err() { return },
        }
    }
}

/// Spawns [`run`] for one watch into `tasks`, with no observer.
pub fn spawn<M>(
    tasks: &mut tokio::task::JoinSet<&'static str>,
    w: Watch<M>,
    out: mpsc::Sender<Vec<Signal>>,
    metrics: WatchMetrics,
    backoff: Backoff,
    shutdown: CancellationToken,
) where
    M: Mapper + Send + 'static,
    M::Snapshot: Send,
    M::Object: kube::Resource + Clone + serde::de::DeserializeOwned + Debug + Send + Sync + 'static,
{
    let resource = w.resource;
    tasks.spawn(async move {
        run(w, out, metrics, backoff, shutdown, |_| {}).await;
        resource
    });
}
