//! The raw-log shipper: stored `ResourceLogs` bytes → the collector's `LogsService/Export`,
//! without decoding them.
//!
//! Compression: gzip when configured (the default), except to a collector on loopback, where
//! it would only cost CPU (see [`is_loopback`] and docs/logs.md for the measured cost).
//!
//! Entry type: [`LogShipper`], run by the agent next to (never instead of) the signal
//! [`crate::shipper::Shipper`], on its own HTTP/2 connection, so a log backlog never queues
//! ahead of a signal. Same delivery contract as the signal shipper: a batch leaves the disk
//! only after the collector answered OK (at-least-once), INVALID_ARGUMENT drops it (counted
//! in `daytwo_agent_logs_dropped_total{reason="rejected"}`), anything else retries with
//! backoff.

use super::store::LogStore;
use crate::metrics::{DROP_REJECTED, LOG_STAGE_EXPORT, Metrics};
use crate::shipper::Backoff;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use std::sync::Arc;
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Sends pre-encoded request bodies; decodes the response with prost.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

#[derive(Debug)]
pub struct RawEncoder;

#[derive(Debug)]
pub struct ResponseDecoder;

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for ResponseDecoder {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, tonic::Status> {
        use prost::Message;
        ExportLogsServiceResponse::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable export response: {e}")))
    }
}

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

/// Whether the collector address names this host (`localhost`, `127.0.0.0/8`, `::1`).
pub fn is_loopback(collector: &str) -> bool {
    let Ok(uri) = collector.parse::<tonic::codegen::http::Uri>() else {
        return false;
    };
    let Some(host) = uri.host() else {
        return false;
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// See the module docs.
pub struct LogShipper {
    store: Arc<LogStore>,
    grpc: tonic::client::Grpc<Channel>,
    collector: String,
    max_request_bytes: usize,
    backoff: Backoff,
    metrics: Metrics,
}

impl LogShipper {
    pub fn new(
        store: Arc<LogStore>,
        channel: Channel,
        collector: String,
        compress: bool,
        max_request_bytes: usize,
        backoff: Backoff,
        metrics: Metrics,
    ) -> Self {
        let mut grpc =
            tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
        if compress && is_loopback(&collector) {
            // gzip (tonic's level 6) costs about twice the rest of the log path per line and
            // saves nothing on loopback.
            info!(collector = %collector, "The collector is on this host: raw logs are sent uncompressed.");
        } else if compress {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        }
        LogShipper {
            store,
            grpc,
            collector,
            max_request_bytes,
            backoff,
            metrics,
        }
    }

    async fn wait(&mut self, shutdown: &CancellationToken) -> bool {
        let d = self.backoff.next_delay();
        tokio::select! {
            _ = shutdown.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    /// Ships until `shutdown`. The ack (a durable delete) of one request overlaps the next
    /// export; at most one ack is in flight, and the next peek skips the keys it covers.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut acking: Option<tokio::task::JoinHandle<()>> = None;
        // The last key handed to `acking`.
        let mut after: Option<u64> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let store = self.store.clone();
            let max = self.max_request_bytes;
            let batch =
                match tokio::task::spawn_blocking(move || store.peek_after(after, max)).await {
                    Ok(Ok(b)) => b,
                    Ok(Err(e)) => {
                        error!(error = %e, "Cannot read the log queue; retrying.");
                        if !self.wait(&shutdown).await {
                            break;
                        }
                        continue;
                    }
                    Err(e) => {
                        error!(error = %e, "Log queue read task failed; retrying.");
                        if !self.wait(&shutdown).await {
                            break;
                        }
                        continue;
                    }
                };
            if batch.is_empty() {
                if let Some(h) = acking.take() {
                    let _ = h.await;
                    self.metrics.logs_queue_bytes.set(self.store.bytes() as i64);
                }
                // notify_one keeps a permit when nobody waits: a commit between the peek and
                // here still wakes us.
                let store = self.store.clone();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = store.pushed().notified() => continue,
                }
            }
            let records = batch.records;
            let keys = batch.keys;
            let body = batch.body;
            let sent = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.export(body) => r,
            };
            match sent {
                Ok(rejected) => {
                    self.backoff.reset();
                    self.metrics
                        .logs_records_sent
                        .inc_by(records.saturating_sub(rejected));
                    if rejected > 0 {
                        self.metrics
                            .logs_dropped
                            .with_label_values(&[DROP_REJECTED])
                            .inc_by(rejected);
                    }
                    debug!(records, collector = %self.collector, "Raw logs delivered.");
                }
                Err(status) if status.code() == Code::InvalidArgument => {
                    self.metrics
                        .logs_dropped
                        .with_label_values(&[DROP_REJECTED])
                        .inc_by(records);
                    error!(records, collector = %self.collector, reason = %status.message(), "Collector rejected a batch of raw logs as invalid; dropped it.");
                }
                Err(status) => {
                    self.metrics
                        .logs_errors
                        .with_label_values(&[LOG_STAGE_EXPORT])
                        .inc();
                    warn!(collector = %self.collector, records, reason = %status, "Export of raw logs failed; will retry.");
                    if !self.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            }
            if let Some(h) = acking.take() {
                let _ = h.await;
                self.metrics.logs_queue_bytes.set(self.store.bytes() as i64);
            }
            after = keys.last().copied().or(after);
            let store = self.store.clone();
            let token = shutdown.clone();
            let mut backoff = self.backoff.clone();
            acking = Some(tokio::spawn(async move {
                loop {
                    let s = store.clone();
                    let k = keys.clone();
                    match tokio::task::spawn_blocking(move || s.ack(&k)).await {
                        Ok(Ok(())) => return,
                        Ok(Err(e)) => {
                            error!(error = %e, "Cannot remove delivered logs from the queue; retrying.")
                        }
                        Err(e) => error!(error = %e, "Log queue ack task failed; retrying."),
                    }
                    tokio::select! {
                        _ = token.cancelled() => return,
                        _ = tokio::time::sleep(backoff.next_delay()) => {}
                    }
                }
            }));
        }
        // An ack in progress finishes (or gives up at shutdown) before we return.
        if let Some(h) = acking.take() {
            let _ = h.await;
        }
    }

    /// One export; Ok(rejected records) on success.
    async fn export(&mut self, body: Vec<u8>) -> Result<u64, tonic::Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("collector not ready: {e}")))?;
        let resp = self
            .grpc
            .unary(
                tonic::Request::new(body),
                PathAndQuery::from_static(EXPORT_PATH),
                RawCodec,
            )
            .await?;
        Ok(resp
            .into_inner()
            .partial_success
            .map_or(0, |p| p.rejected_log_records.max(0) as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_collectors() {
        for c in [
            "http://127.0.0.1:4317",
            "http://localhost:4317",
            "https://127.1.2.3",
            "http://[::1]:4317",
        ] {
            assert!(is_loopback(c), "{c}");
        }
        for c in [
            "http://10.0.0.1:4317",
            "http://collector.daytwo:4317",
            "http://[2001:db8::1]:4317",
            "not a url",
        ] {
            assert!(!is_loopback(c), "{c}");
        }
    }
}
