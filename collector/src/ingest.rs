//! OTLP/gRPC ingest: logs (signals and plain logs), metrics and traces.
//!
//! Entry point: [`serve`]. A logs export of plain records only (an agent's raw logs, by far
//! the most common request) is checked and counted without being decoded into owned messages
//! ([`LogsServer`], `ingest/logs_scan.rs`). Log records with an event name are decoded into signals and handed
//! to the [`Pipeline`]; the export is answered only after the pipeline committed them, so an
//! agent that got OK may delete its copy. Records that fail to decode are rejected one by one
//! with OTLP's partial success (a request whose every record is bad is answered
//! INVALID_ARGUMENT). Gzip is accepted. A request over the size limit is answered
//! RESOURCE_EXHAUSTED and malformed protobuf INVALID_ARGUMENT (see [`rewrite_status`]); the
//! process keeps running either way.
//!
//! Metrics and spans go through collector-side detection ([`crate::detect::Detect`], one
//! instance shared by all connections, fed in arrival order): the anomaly signals it finds and
//! the call edges it sees go to the same pipeline as the agents' signals. Detection keeps no
//! per-request state, so a retried export at worst feeds samples the detectors already saw, and
//! they ignore samples older than the last one.

mod logs_scan;

use crate::detect::Detect;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::LogsService;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};
use tracing::{error, warn};

pub use logs_scan::{LogsExport, plain_records};

/// The default limit on one decoded OTLP request (the OTel Collector's default is 4 MiB on
/// the client side; we accept more so a full agent batch always fits).
pub const DEFAULT_MAX_RECV_BYTES: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct Ingest {
    pipeline: Arc<Mutex<Pipeline>>,
    detect: Arc<Mutex<Detect>>,
    metrics: Metrics,
}

impl Ingest {
    pub fn new(pipeline: Arc<Mutex<Pipeline>>, metrics: Metrics) -> Self {
        Ingest {
            pipeline,
            detect: Arc::new(Mutex::new(Detect::default())),
            metrics,
        }
    }

    /// Runs detection on one export (metrics or traces) and hands what it found to the
    /// pipeline, off the async threads.
    async fn detect(
        &self,
        what: &'static str,
        run: impl FnOnce(&mut Detect) -> Vec<daytwo_model::Signal> + Send + 'static,
    ) -> Result<(), Status> {
        let detect = self.detect.clone();
        let pipeline = self.pipeline.clone();
        let result = tokio::task::spawn_blocking(move || {
            let (signals, calls) = {
                let mut d = detect.lock().unwrap_or_else(|e| e.into_inner());
                let signals = run(&mut d);
                (signals, d.take_calls())
            };
            if signals.is_empty() && calls.is_empty() {
                return Ok(0);
            }
            let mut p = pipeline.lock().unwrap_or_else(|e| e.into_inner());
            for (c, t) in calls {
                p.add_call(&c.caller, &c.callee, t);
            }
            if signals.is_empty() {
                return Ok(0);
            }
            p.ingest(signals).map(|s| s.accepted)
        })
        .await
        .map_err(|e| Status::internal(format!("detection task failed: {e}")))?;
        match result {
            Ok(_) => Ok(()),
            Err(e) => {
                self.metrics
                    .otlp_requests
                    .with_label_values(&[what, "error"])
                    .inc();
                error!(error = %e, "Could not store detected signals; the sender will retry.");
                Err(Status::unavailable(format!(
                    "could not store detected signals: {e}"
                )))
            }
        }
    }
}

/// How many data points a metrics export holds.
pub fn count_points(req: &ExportMetricsServiceRequest) -> u64 {
    let mut points = 0u64;
    for rm in &req.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                points += match &m.data {
                    Some(Data::Gauge(g)) => g.data_points.len(),
                    Some(Data::Sum(s)) => s.data_points.len(),
                    Some(Data::Histogram(h)) => h.data_points.len(),
                    Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                } as u64;
            }
        }
    }
    points
}

#[tonic::async_trait]
impl LogsService for Ingest {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        self.export_logs(LogsExport::Full(request.into_inner()))
            .await
    }
}

impl Ingest {
    /// One logs export, as [`LogsServer`] decoded it: plain records are only counted.
    pub async fn export_logs(
        &self,
        export: LogsExport,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let req = match export {
            LogsExport::Plain { records } => {
                self.metrics.log_records.inc_by(records);
                self.metrics
                    .otlp_requests
                    .with_label_values(&["logs", "ok"])
                    .inc();
                return Ok(Response::new(ExportLogsServiceResponse {
                    partial_success: None,
                }));
            }
            LogsExport::Full(req) => req,
        };
        // Plain log records (agents' raw logs) are only counted: a request holding nothing
        // else is counted without decoding any record into a signal (which converts every
        // record's attributes first), the common case by far.
        let is_plain = |r: &opentelemetry_proto::tonic::logs::v1::LogRecord| {
            r.event_name.is_empty() && !r.attributes.iter().any(|kv| kv.key == "event.name")
        };
        let all_plain = req
            .resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .all(|sl| sl.log_records.iter().all(is_plain));
        let (decoded, plain) = if all_plain {
            let n = req
                .resource_logs
                .iter()
                .flat_map(|rl| &rl.scope_logs)
                .map(|sl| sl.log_records.len())
                .sum();
            (Vec::new(), n)
        } else {
            daytwo_model::otlp::signals_from_request(&req)
        };
        self.metrics.log_records.inc_by(plain as u64);
        let mut signals = Vec::with_capacity(decoded.len());
        let mut rejected = 0i64;
        let mut first_error = None;
        for d in decoded {
            match d {
                Ok(s) => signals.push(s),
                Err(e) => {
                    rejected += 1;
                    self.metrics
                        .records_rejected
                        .with_label_values(&["invalid_signal"])
                        .inc();
                    first_error.get_or_insert_with(|| e.to_string());
                }
            }
        }
        if rejected > 0 && signals.is_empty() && plain == 0 {
            self.metrics
                .otlp_requests
                .with_label_values(&["logs", "invalid"])
                .inc();
            let msg = first_error.unwrap_or_default();
            warn!(rejected, error = %msg, "Rejected an OTLP logs export: no record is a valid signal.");
            return Err(Status::invalid_argument(format!(
                "all {rejected} log records were rejected; first: {msg}"
            )));
        }
        self.metrics.signals_received.inc_by(signals.len() as u64);
        if !signals.is_empty() {
            let pipeline = self.pipeline.clone();
            let result = tokio::task::spawn_blocking(move || {
                let mut p = pipeline.lock().unwrap_or_else(|e| e.into_inner());
                p.ingest(signals)
            })
            .await
            .map_err(|e| Status::internal(format!("ingest task failed: {e}")))?;
            if let Err(e) = result {
                self.metrics
                    .otlp_requests
                    .with_label_values(&["logs", "error"])
                    .inc();
                error!(error = %e, "Could not store signals; the sender will retry.");
                return Err(Status::unavailable(format!("could not store signals: {e}")));
            }
        }
        self.metrics
            .otlp_requests
            .with_label_values(&["logs", "ok"])
            .inc();
        let partial_success = (rejected > 0).then(|| ExportLogsPartialSuccess {
            rejected_log_records: rejected,
            error_message: first_error.unwrap_or_default(),
        });
        Ok(Response::new(ExportLogsServiceResponse { partial_success }))
    }
}

#[tonic::async_trait]
impl MetricsService for Ingest {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let req = request.into_inner();
        self.metrics.metric_points.inc_by(count_points(&req));
        self.detect("metrics", move |d| d.metrics(&req)).await?;
        self.metrics
            .otlp_requests
            .with_label_values(&["metrics", "ok"])
            .inc();
        Ok(Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Ingest {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let req = request.into_inner();
        let spans: usize = req
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.metrics.spans.inc_by(spans as u64);
        self.detect("traces", move |d| d.traces(&req)).await?;
        self.metrics
            .otlp_requests
            .with_label_values(&["traces", "ok"])
            .inc();
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// tonic answers an over-limit message with OUT_OF_RANGE and undecodable protobuf with
/// INTERNAL; OTLP senders read RESOURCE_EXHAUSTED and INVALID_ARGUMENT as "do not retry this
/// as is", which is what both mean. This rewrites those two trailers-only answers (they carry
/// `grpc-status` in the headers) and leaves every other status alone.
pub fn rewrite_status<B>(mut resp: http::Response<B>) -> http::Response<B> {
    let h = resp.headers();
    let code = h
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let msg = h
        .get("grpc-message")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let new = match code {
        "11" if msg.contains("message%20length%20too%20large")
            || msg.contains("message length too large") =>
        {
            Some("8")
        }
        "13" if msg.contains("decod") || msg.contains("decompress") => Some("3"),
        _ => None,
    };
    if let Some(new) = new {
        resp.headers_mut()
            .insert("grpc-status", http::HeaderValue::from_static(new));
    }
    resp
}

/// The OTLP logs service (`LogsService/Export`): opentelemetry-proto's generated
/// `LogsServiceServer`, with [`logs_scan::LogsCodec`] in place of the prost codec so that a
/// request of plain log records is counted without being decoded into owned messages.
/// Gzip is accepted; the decoded size is limited to `max_recv_bytes`.
#[derive(Clone)]
pub struct LogsServer {
    ingest: Ingest,
    max_recv_bytes: usize,
}

const LOGS_EXPORT_PATH: &str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

impl tonic::server::NamedService for LogsServer {
    const NAME: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
}

struct ExportLogs(Ingest);

impl tonic::server::UnaryService<LogsExport> for ExportLogs {
    type Response = ExportLogsServiceResponse;
    type Future = tonic::codegen::BoxFuture<Response<ExportLogsServiceResponse>, Status>;
    fn call(&mut self, request: Request<LogsExport>) -> Self::Future {
        let ingest = self.0.clone();
        Box::pin(async move { ingest.export_logs(request.into_inner()).await })
    }
}

impl<B> tower::Service<http::Request<B>> for LogsServer
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<tonic::codegen::StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = tonic::codegen::BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        if req.uri().path() != LOGS_EXPORT_PATH {
            return Box::pin(async move {
                let mut response = http::Response::new(tonic::body::Body::default());
                let headers = response.headers_mut();
                headers.insert(
                    Status::GRPC_STATUS,
                    (tonic::Code::Unimplemented as i32).into(),
                );
                headers.insert(
                    http::header::CONTENT_TYPE,
                    tonic::metadata::GRPC_CONTENT_TYPE,
                );
                Ok(response)
            });
        }
        let ingest = self.ingest.clone();
        let max = self.max_recv_bytes;
        Box::pin(async move {
            let mut accept = tonic::codec::EnabledCompressionEncodings::default();
            accept.enable(CompressionEncoding::Gzip);
            let mut grpc = tonic::server::Grpc::new(logs_scan::LogsCodec)
                .apply_compression_config(accept, Default::default())
                .apply_max_message_size_config(Some(max), None);
            Ok(grpc.unary(ExportLogs(ingest), req).await)
        })
    }
}

/// Serves OTLP/gRPC on `listener` until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    ingest: Ingest,
    max_recv_bytes: usize,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let logs = LogsServer {
        ingest: ingest.clone(),
        max_recv_bytes,
    };
    let metrics = MetricsServiceServer::new(ingest.clone())
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_recv_bytes);
    let traces = TraceServiceServer::new(ingest)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_recv_bytes);
    tonic::transport::Server::builder()
        // Room for a whole agent request (3 MiB) in flight, so that sending one never waits
        // for a WINDOW_UPDATE (hyper's default windows are 1 MiB), in frames of 256 KiB
        // rather than 16 KiB.
        .initial_stream_window_size(8 << 20)
        .initial_connection_window_size(16 << 20)
        .max_frame_size(256 << 10)
        .layer(tower::util::MapResponseLayer::new(
            rewrite_status::<tonic::body::Body>,
        ))
        .add_service(logs)
        .add_service(metrics)
        .add_service(traces)
        .serve_with_incoming_shutdown(
            // TCP_NODELAY: an export's answer is three small writes (headers, message,
            // trailers); with Nagle's algorithm the later ones waited for the client's delayed
            // ACK, 40 ms per request (`TcpIncoming::from` leaves the option unset).
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
            shutdown.cancelled_owned(),
        )
        .await
}
