//! The raw-log shipper: `ResourceLogs` bytes, as the pipeline encoded them → the collector's
//! `LogsService/Export`, without decoding or copying them into one body.
//!
//! Uncompressed, a request goes out without tonic's codec ([`PartsBody`]: the gRPC prefix, then
//! each part as it lies in memory), its answer read as tonic's client reads it; gzipped, through
//! tonic (which compresses a copy anyway).
//!
//! Compression ([`Compression`], `--log-compression`): `auto` (the default) gzips unless the
//! collector is on loopback (see [`is_loopback`]; there gzip only costs CPU, docs/logs.md has
//! the measured cost), `gzip` always, `none` never.
//!
//! Entry type: [`LogShipper`], run by the agent next to (never instead of) the signal
//! [`crate::shipper::Shipper`], on its own HTTP/2 connection, so a log backlog never queues
//! ahead of a signal. Requests come from [`LogStore::next_request`]: just-committed batches
//! straight from memory, a backlog read from the state file. Same delivery contract as the
//! signal shipper: a batch leaves the disk only after the collector answered OK
//! (at-least-once), INVALID_ARGUMENT drops it (counted in
//! `daytwo_agent_logs_dropped_total{reason="rejected"}`), anything else retries the same
//! request with backoff. One request body is held in memory at a time (the one on the wire).
//! Each delivered request is acknowledged in the store (its read position moves, one `pwrite`)
//! before the next one goes out, so after a `kill -9` only the request on the wire, whose
//! answer had not been recorded, is sent again.

use super::store::{LogStore, Part, Request};
use crate::metrics::{DROP_REJECTED, LOG_STAGE_EXPORT, Metrics};
use crate::shipper::Backoff;
use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio_util::sync::CancellationToken;
use tonic::Code;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::transport::Channel;
use tracing::{debug, error, info, warn};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

/// Whether raw-log exports are gzipped (`--log-compression`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// gzip, except to a collector on loopback.
    #[default]
    Auto,
    Gzip,
    None,
}

impl Compression {
    /// Whether requests to `collector` are gzipped.
    pub fn gzip_for(self, collector: &str) -> bool {
        match self {
            Compression::Auto => !is_loopback(collector),
            Compression::Gzip => true,
            Compression::None => false,
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Compression::Auto),
            "gzip" => Ok(Compression::Gzip),
            "none" => Ok(Compression::None),
            other => Err(format!(
                "log compression {other:?} is not one of auto, gzip, none"
            )),
        }
    }
}

/// Sends pre-encoded request parts; decodes the response with prost.
#[derive(Clone, Copy, Debug, Default)]
pub struct RawCodec;

#[derive(Debug)]
pub struct RawEncoder;

#[derive(Debug)]
pub struct ResponseDecoder;

impl Encoder for RawEncoder {
    type Item = Request;
    type Error = tonic::Status;
    fn encode(&mut self, item: Request, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        dst.reserve(item.len());
        for p in &item.parts {
            dst.put_slice(p.bytes());
        }
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
    type Encode = Request;
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

/// A part of a request, as the owner of a `Bytes` (shared, not copied).
struct SharedPart(Part);

impl AsRef<[u8]> for SharedPart {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

/// An uncompressed export request as an HTTP/2 body: the gRPC message prefix, then each part
/// where it lies in memory. tonic's codec path copies a request into one buffer first, a fresh
/// allocation of up to 3 MiB per request (mapped, faulted in and unmapped again).
struct PartsBody {
    frames: VecDeque<Bytes>,
    left: u64,
}

impl PartsBody {
    fn new(req: &Request) -> Result<PartsBody, tonic::Status> {
        let len = req.len();
        let len32 = u32::try_from(len).map_err(|_| {
            tonic::Status::resource_exhausted(format!("export request of {len} bytes"))
        })?;
        let mut head = [0u8; 5]; // not compressed, then the length (big-endian)
        head[1..].copy_from_slice(&len32.to_be_bytes());
        let mut frames = VecDeque::with_capacity(req.parts.len() + 1);
        frames.push_back(Bytes::copy_from_slice(&head));
        for p in &req.parts {
            if !p.bytes().is_empty() {
                frames.push_back(Bytes::from_owner(SharedPart(p.clone())));
            }
        }
        Ok(PartsBody {
            frames,
            left: len as u64 + 5,
        })
    }
}

impl http_body::Body for PartsBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let next = self.frames.pop_front();
        if let Some(b) = &next {
            self.left -= b.len() as u64;
        }
        Poll::Ready(next.map(|b| Ok(http_body::Frame::data(b))))
    }

    fn is_end_stream(&self) -> bool {
        self.frames.is_empty()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
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
    /// Set when requests are sent uncompressed: they go out without tonic's codec
    /// ([`PartsBody`]).
    raw: Option<Channel>,
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
        compression: Compression,
        max_request_bytes: usize,
        backoff: Backoff,
        metrics: Metrics,
    ) -> Self {
        let raw = (!compression.gzip_for(&collector)).then(|| channel.clone());
        let mut grpc =
            tonic::client::Grpc::new(channel).accept_compressed(CompressionEncoding::Gzip);
        if compression.gzip_for(&collector) {
            grpc = grpc.send_compressed(CompressionEncoding::Gzip);
        } else if compression == Compression::Auto {
            // gzip (tonic's level 6) costs about twice the rest of the log path per line and
            // saves nothing on loopback.
            info!(collector = %collector, "The collector is on this host: raw logs are sent uncompressed (--log-compression auto).");
        }
        LogShipper {
            store,
            grpc,
            raw,
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

    /// The next request after `after`: from memory without blocking, else from the state
    /// file on the blocking pool.
    async fn next(&self, after: Option<u64>) -> Result<Request, String> {
        let max = self.max_request_bytes;
        if let Some(r) = self.store.next_in_memory(after, max) {
            return Ok(r);
        }
        let store = self.store.clone();
        match tokio::task::spawn_blocking(move || store.next_from_disk(after, max)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.to_string()),
            Err(e) => Err(format!("log queue read task failed: {e}")),
        }
    }

    /// Ships until `shutdown`: one request at a time, acknowledged in the store before the
    /// next is sent. A failed export is retried with the same request.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // The last key delivered.
        let mut after: Option<u64> = None;
        // A request that failed with a retryable error, sent again next.
        let mut retry: Option<Request> = None;
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            let req = match retry.take() {
                Some(r) => r,
                None => match self.next(after).await {
                    Ok(r) => r,
                    Err(e) => {
                        error!(error = %e, "Cannot read the log queue; retrying.");
                        if !self.wait(&shutdown).await {
                            break;
                        }
                        continue;
                    }
                },
            };
            if req.is_empty() {
                // notify_one keeps a permit when nobody waits: a commit between the read and
                // here still wakes us.
                let store = self.store.clone();
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = store.pushed().notified() => continue,
                }
            }
            let records = req.records;
            let sent = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.export(req.clone()) => r,
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
                    debug!(records, from_disk = req.from_disk, collector = %self.collector, "Raw logs delivered.");
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
                    retry = Some(req);
                    if !self.wait(&shutdown).await {
                        break;
                    }
                    continue;
                }
            }
            after = req.keys.last().copied().or(after);
            if !self.ack(&req.keys, &shutdown).await {
                break;
            }
            self.metrics.logs_queue_bytes.set(self.store.bytes() as i64);
            // The body is no longer needed: its buffers go back to the pipeline.
            self.store.recycle(req);
        }
    }

    /// Acknowledges delivered batches (blocking pool), retrying until it works; `false` at
    /// `shutdown` (they are sent again after a restart).
    async fn ack(&mut self, keys: &[u64], shutdown: &CancellationToken) -> bool {
        let keys: Arc<Vec<u64>> = Arc::new(keys.to_vec());
        loop {
            let (s, k) = (self.store.clone(), keys.clone());
            match tokio::task::spawn_blocking(move || s.ack(&k)).await {
                Ok(Ok(())) => return true,
                Ok(Err(e)) => {
                    error!(error = %e, "Cannot record delivered logs in the queue; retrying.")
                }
                Err(e) => error!(error = %e, "Log queue ack task failed; retrying."),
            }
            if !self.wait(shutdown).await {
                return false;
            }
        }
    }

    /// One export; Ok(rejected records) on success.
    async fn export(&mut self, req: Request) -> Result<u64, tonic::Status> {
        if let Some(channel) = &mut self.raw {
            return export_raw(channel, &req).await;
        }
        self.grpc
            .ready()
            .await
            .map_err(|e| tonic::Status::unavailable(format!("collector not ready: {e}")))?;
        let resp = self
            .grpc
            .unary(
                tonic::Request::new(req),
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

/// One uncompressed export over `channel`, the request's parts sent as they lie in memory;
/// the answer read as tonic's own client reads it (status in the headers of a trailers-only
/// answer, else the message then the trailers). Ok(rejected records) on success.
async fn export_raw(channel: &mut Channel, req: &Request) -> Result<u64, tonic::Status> {
    use tonic::codegen::Service;
    use tonic::codegen::http;
    let body = tonic::body::Body::new(PartsBody::new(req)?);
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static(EXPORT_PATH);
    *request.version_mut() = http::Version::HTTP_2;
    let h = request.headers_mut();
    h.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    h.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    std::future::poll_fn(|cx| channel.poll_ready(cx))
        .await
        .map_err(|e| tonic::Status::unavailable(format!("collector not ready: {e}")))?;
    let response = channel
        .call(request)
        .await
        .map_err(|e| tonic::Status::unavailable(format!("export failed: {e}")))?;
    if let Some(status) = tonic::Status::from_header_map(response.headers())
        && status.code() != Code::Ok
    {
        return Err(status);
    }
    let status_code = response.status();
    let mut answer = tonic::codec::Streaming::new_response(
        ResponseDecoder,
        response.into_body(),
        status_code,
        None,
        None,
    );
    let message = answer
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("the collector sent no export response"))?;
    answer.trailers().await?;
    Ok(message
        .partial_success
        .map_or(0, |p| p.rejected_log_records.max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(n: u64) -> daytwo_model::Signal {
        use daytwo_model::{Entity, EntityKind, Severity, Signal, Timestamp};
        Signal {
            id: format!("raw-{n}"),
            name: "daytwo.kernel.oom_kill".into(),
            time: Timestamp::from_unix_secs(1_795_617_000 + n as i64),
            severity: Severity::Critical,
            entity: Entity::new(EntityKind::Host, "node-1").with_attr("host.name", "node-1"),
            resource: Default::default(),
            attributes: Default::default(),
            message: format!("signal {n}"),
            evidence: vec![],
        }
    }

    /// A request of two parts, each the `ResourceLogs` field(s) of one encoded request.
    fn two_part_request() -> Request {
        use prost::Message;
        let part = |n| {
            Part::Read(Arc::new(
                daytwo_model::otlp::signals_to_request(&[signal(n)]).encode_to_vec(),
            ))
        };
        Request {
            keys: vec![1, 2],
            records: 2,
            parts: vec![part(1), part(2)],
            from_disk: true,
        }
    }

    fn channel(addr: std::net::SocketAddr) -> Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_lazy()
    }

    /// The uncompressed path (no tonic codec) delivers the parts as one request, reads an OK
    /// and an error answer as tonic does, and fails cleanly with nobody listening.
    #[tokio::test]
    async fn raw_exports_reach_a_real_collector_and_read_its_answers() {
        use crate::test_collector::{Answer, TestCollector};
        let ok = TestCollector::start("127.0.0.1:0".parse().unwrap(), Answer::Ok).await;
        let mut ch = channel(ok.addr);
        assert_eq!(export_raw(&mut ch, &two_part_request()).await.unwrap(), 0);
        let ids: Vec<String> = ok.signals().into_iter().map(|s| s.id).collect();
        assert_eq!(ids, ["raw-1", "raw-2"]);

        let bad =
            TestCollector::start("127.0.0.1:0".parse().unwrap(), Answer::InvalidArgument).await;
        let err = export_raw(&mut channel(bad.addr), &two_part_request())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let err = export_raw(&mut channel(addr), &two_part_request())
            .await
            .unwrap_err();
        assert_ne!(err.code(), Code::InvalidArgument, "{err:?}");
    }

    #[test]
    fn compression_choices() {
        use std::str::FromStr;
        assert!(Compression::Auto.gzip_for("http://10.0.0.1:4317"));
        assert!(!Compression::Auto.gzip_for("http://127.0.0.1:4317"));
        assert!(Compression::Gzip.gzip_for("http://127.0.0.1:4317"));
        assert!(!Compression::None.gzip_for("http://10.0.0.1:4317"));
        assert_eq!(Compression::from_str("gzip"), Ok(Compression::Gzip));
        assert!(
            Compression::from_str("zstd")
                .unwrap_err()
                .contains("auto, gzip, none")
        );
    }

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
