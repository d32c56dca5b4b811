//! The shipper: moves queued signals to the collector over OTLP/gRPC, oldest first.
//!
//! Entry type: [`Shipper`]; [`Shipper::run`] loops until shutdown: peek up to `batch_max`
//! records, export them with the generated `LogsServiceClient` (gzip, per-request timeout),
//! and delete them only when the collector answered OK. Errors back off exponentially with
//! jitter (`retry_initial` .. `retry_max`); a push wakes the loop at once.
//!
//! Invariants: records leave the queue only after an OK (at-least-once; the collector
//! deduplicates by signal id); a batch the collector rejects as INVALID_ARGUMENT is dropped
//! and logged at ERROR rather than retried forever; shutdown interrupts any wait or send
//! promptly and leaves unsent records on disk.

use crate::metrics::{DROP_REJECTED, Metrics, STAGE_EXPORT};
use crate::queue::{Queue, QueueError, Queued};
use daytwo_model::Signal;
use daytwo_model::otlp::signals_to_request;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

/// Exponential backoff with full jitter in `[d/2, d]`.
#[derive(Clone, Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Backoff {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    /// The next wait: between half and all of the current step; then the step doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.current;
        self.current = (self.current * 2).min(self.max);
        let half = d / 2;
        half + rand::rng().random_range(Duration::ZERO..=half)
    }

    pub fn reset(&mut self) {
        self.current = self.initial;
    }
}

/// What one export attempt came to.
#[derive(Debug)]
enum Outcome {
    /// Delivered (minus `rejected` records the collector refused); the queue records can go.
    Sent { rejected: u64 },
    /// The collector will never accept this batch.
    Rejected(String),
    /// Worth retrying later.
    Failed(String),
}

/// Sends queued signals to the collector.
pub struct Shipper {
    queue: Arc<Queue>,
    client: LogsServiceClient<Channel>,
    collector: String,
    batch_max: usize,
    backoff: Backoff,
    metrics: Metrics,
}

impl Shipper {
    /// `channel` is a lazily connecting channel to `collector` (named in logs).
    pub fn new(
        queue: Arc<Queue>,
        channel: Channel,
        collector: String,
        batch_max: usize,
        backoff: Backoff,
        metrics: Metrics,
    ) -> Self {
        let client = LogsServiceClient::new(channel)
            .send_compressed(CompressionEncoding::Gzip)
            .accept_compressed(CompressionEncoding::Gzip);
        Shipper {
            queue,
            client,
            collector,
            batch_max: batch_max.max(1),
            backoff,
            metrics,
        }
    }

    /// Ships until `shutdown` is cancelled.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            let batch = match self.peek().await {
                Ok(b) => b,
                Err(e) => {
                    error!(error = %e, "Cannot read the send queue; retrying.");
                    let d = self.backoff.next_delay();
                    if !self.wait(d, &shutdown).await {
                        return;
                    }
                    continue;
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = self.queue.pushed().notified() => continue,
                }
            }
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                o = self.export(&batch) => o,
            };
            let keys: Vec<u64> = batch.iter().map(|q| q.key).collect();
            match outcome {
                Outcome::Sent { rejected } => {
                    self.backoff.reset();
                    self.metrics
                        .signals_sent
                        .inc_by((keys.len() as u64).saturating_sub(rejected));
                    debug!(count = keys.len(), collector = %self.collector, "Signals delivered.");
                    self.ack(keys, &shutdown).await;
                }
                Outcome::Rejected(reason) => {
                    self.metrics
                        .queue_dropped
                        .with_label_values(&[DROP_REJECTED])
                        .inc_by(keys.len() as u64);
                    error!(
                        count = keys.len(),
                        collector = %self.collector,
                        reason = %reason,
                        "Collector rejected a batch of signals as invalid; dropped it."
                    );
                    self.ack(keys, &shutdown).await;
                }
                Outcome::Failed(reason) => {
                    self.metrics
                        .ship_errors
                        .with_label_values(&[STAGE_EXPORT])
                        .inc();
                    let delay = self.backoff.next_delay();
                    warn!(
                        collector = %self.collector,
                        queued = batch.len(),
                        retry_in_ms = delay.as_millis() as u64,
                        reason = %reason,
                        "Export to the collector failed; will retry."
                    );
                    if !self.wait(delay, &shutdown).await {
                        return;
                    }
                }
            }
        }
    }

    async fn peek(&self) -> Result<Vec<Queued>, QueueError> {
        let q = self.queue.clone();
        let n = self.batch_max;
        tokio::task::spawn_blocking(move || q.peek(n))
            .await
            .expect("queue peek task does not panic")
    }

    /// Removes delivered records, retrying a failing disk until shutdown.
    async fn ack(&mut self, keys: Vec<u64>, shutdown: &CancellationToken) {
        loop {
            let q = self.queue.clone();
            let k = keys.clone();
            match tokio::task::spawn_blocking(move || q.ack(&k)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => {
                    error!(error = %e, "Cannot remove delivered signals from the queue; retrying.")
                }
                Err(e) => error!(error = %e, "Queue ack task failed; retrying."),
            }
            let d = self.backoff.next_delay();
            if !self.wait(d, shutdown).await {
                return;
            }
        }
    }

    /// Sleeps `d`; false if shutdown came first.
    async fn wait(&self, d: Duration, shutdown: &CancellationToken) -> bool {
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn export(&mut self, batch: &[Queued]) -> Outcome {
        let signals: Vec<Signal> = batch.iter().map(|q| q.signal.clone()).collect();
        let req = signals_to_request(&signals);
        match self.client.export(req).await {
            Ok(resp) => {
                let mut rejected = 0;
                if let Some(p) = resp.into_inner().partial_success
                    && (p.rejected_log_records > 0 || !p.error_message.is_empty())
                {
                    if p.rejected_log_records > 0 {
                        rejected = p.rejected_log_records as u64;
                        self.metrics
                            .queue_dropped
                            .with_label_values(&[DROP_REJECTED])
                            .inc_by(p.rejected_log_records as u64);
                        error!(
                            rejected = p.rejected_log_records,
                            collector = %self.collector,
                            reason = %p.error_message,
                            "Collector rejected some signals of a batch."
                        );
                    } else {
                        info!(collector = %self.collector, message = %p.error_message, "Collector accepted a batch with a warning.");
                    }
                }
                Outcome::Sent { rejected }
            }
            Err(status) if status.code() == Code::InvalidArgument => {
                Outcome::Rejected(status.message().to_string())
            }
            Err(status) => Outcome::Failed(format!("{}: {}", status.code(), status.message())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_collector::{Answer, TestCollector, eventually};
    use daytwo_model::{Entity, EntityKind, Severity, Timestamp};
    use std::collections::HashSet;

    fn signal(n: u64) -> Signal {
        Signal {
            id: format!("sig-{n}"),
            name: "daytwo.kernel.oom_kill".into(),
            time: Timestamp::from_unix_secs(1_795_617_000 + n as i64),
            severity: Severity::Critical,
            entity: Entity::new(EntityKind::Host, "node-1").with_attr("host.name", "node-1"),
            resource: [("host.name".to_string(), serde_json::json!("node-1"))]
                .into_iter()
                .collect(),
            attributes: [("process.pid".to_string(), serde_json::json!(n))]
                .into_iter()
                .collect(),
            message: format!("signal {n}"),
            evidence: vec![],
        }
    }

    struct Rig {
        queue: Arc<Queue>,
        metrics: Metrics,
        stop: CancellationToken,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn start_shipper(url: &str, batch_max: usize) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::unregistered().unwrap();
        let queue = Arc::new(
            Queue::open(&dir.path().join("agent.redb"), 1 << 30, metrics.clone()).unwrap(),
        );
        let channel = tonic::transport::Endpoint::from_shared(url.to_string())
            .unwrap()
            .timeout(Duration::from_secs(10))
            .connect_timeout(Duration::from_secs(2))
            .connect_lazy();
        let shipper = Shipper::new(
            queue.clone(),
            channel,
            url.to_string(),
            batch_max,
            Backoff::new(Duration::from_millis(20), Duration::from_millis(200)),
            metrics.clone(),
        );
        let stop = CancellationToken::new();
        let task = tokio::spawn(shipper.run(stop.clone()));
        Rig {
            queue,
            metrics,
            stop,
            task,
            _dir: dir,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn delivers_everything_in_order_then_the_queue_is_empty() {
        let server = TestCollector::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
        let rig = start_shipper(&server.url(), 7);
        let want: Vec<Signal> = (0..100).map(signal).collect();
        for chunk in want.chunks(10) {
            rig.queue.push(chunk, None).unwrap();
        }
        eventually("all 100 signals arrive", || server.signals().len() >= 100).await;
        eventually("queue drains", || rig.queue.depth().unwrap() == 0).await;
        assert_eq!(server.signals(), want);
        assert_eq!(rig.metrics.signals_sent.get(), 100);
        assert_eq!(rig.metrics.queue_depth.get(), 0);
        assert_eq!(rig.metrics.queue_bytes.get(), 0);
        rig.stop.cancel();
        rig.task.await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_absent_collector_gets_everything_exactly_once_when_it_starts() {
        // Reserve a free port, then leave it closed: the collector is down.
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let rig = start_shipper(&format!("http://{addr}"), 4);
        let want: Vec<Signal> = (0..25).map(signal).collect();
        rig.queue.push(&want[..10], None).unwrap();
        eventually("exports fail while the collector is down", || {
            rig.metrics
                .ship_errors
                .with_label_values(&[STAGE_EXPORT])
                .get()
                >= 2
        })
        .await;
        rig.queue.push(&want[10..], None).unwrap();
        assert_eq!(rig.queue.depth().unwrap(), 25);

        let server = TestCollector::start(addr, Answer::Ok).await;
        eventually("all 25 signals arrive", || server.signals().len() >= 25).await;
        eventually("queue drains", || rig.queue.depth().unwrap() == 0).await;
        let got = server.signals();
        assert_eq!(got, want, "in order, each exactly once");
        let ids: HashSet<_> = got.iter().map(|s| s.id.clone()).collect();
        assert_eq!(ids.len(), 25);
        rig.stop.cancel();
        rig.task.await.unwrap();
        assert_eq!(server.signals().len(), 25);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_rejected_batch_is_dropped_not_retried_forever() {
        let server =
            TestCollector::start("127.0.0.1:0".parse().unwrap(), Answer::InvalidArgument).await;
        let rig = start_shipper(&server.url(), 2);
        rig.queue
            .push(&[signal(1), signal(2), signal(3)], None)
            .unwrap();
        eventually("poison batches are dropped", || {
            rig.queue.depth().unwrap() == 0
        })
        .await;
        assert_eq!(
            rig.metrics
                .queue_dropped
                .with_label_values(&[DROP_REJECTED])
                .get(),
            3
        );
        assert_eq!(rig.metrics.signals_sent.get(), 0);
        rig.stop.cancel();
        rig.task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_is_prompt_while_backing_off() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let rig = start_shipper(&format!("http://{addr}"), 4);
        rig.queue.push(&[signal(1)], None).unwrap();
        eventually("an export fails", || {
            rig.metrics
                .ship_errors
                .with_label_values(&[STAGE_EXPORT])
                .get()
                >= 1
        })
        .await;
        rig.stop.cancel();
        rig.task.await.unwrap();
        assert_eq!(rig.queue.depth().unwrap(), 1, "unsent stays on disk");
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let d1 = b.next_delay();
        assert!(d1 >= Duration::from_millis(50) && d1 <= Duration::from_millis(100));
        let d2 = b.next_delay();
        assert!(d2 >= Duration::from_millis(100) && d2 <= Duration::from_millis(200));
        let d3 = b.next_delay();
        assert!(d3 >= Duration::from_millis(175) && d3 <= Duration::from_millis(350));
        let d4 = b.next_delay();
        assert!(d4 <= Duration::from_millis(350));
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
