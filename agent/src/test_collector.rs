//! A real in-process OTLP/gRPC server (tonic, gzip) that records what it receives, for tests.

use daytwo_model::Signal;
use daytwo_model::otlp::signals_from_request;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{
    LogsService, LogsServiceServer,
};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

/// What the server answers to log exports.
#[derive(Clone, Copy, Debug)]
pub enum Answer {
    Ok,
    InvalidArgument,
}

#[derive(Clone)]
pub struct Recorder {
    pub signals: Arc<Mutex<Vec<Signal>>>,
    pub metric_exports: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
    pub answer: Answer,
}

#[tonic::async_trait]
impl LogsService for Recorder {
    async fn export(
        &self,
        request: Request<ExportLogsServiceRequest>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        if let Answer::InvalidArgument = self.answer {
            return Err(Status::invalid_argument("records are malformed"));
        }
        let (decoded, _) = signals_from_request(request.get_ref());
        let mut got = self.signals.lock().unwrap();
        for s in decoded {
            got.push(s.map_err(|e| Status::invalid_argument(e.to_string()))?);
        }
        Ok(Response::new(ExportLogsServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Recorder {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        self.metric_exports
            .lock()
            .unwrap()
            .push(request.into_inner());
        Ok(Response::new(ExportMetricsServiceResponse::default()))
    }
}

/// A running test collector; stops when dropped.
pub struct TestCollector {
    pub addr: SocketAddr,
    pub recorder: Recorder,
    stop: CancellationToken,
}

impl Drop for TestCollector {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl TestCollector {
    /// Starts on `addr` (use port 0 for any free port).
    pub async fn start(addr: SocketAddr, answer: Answer) -> TestCollector {
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorder = Recorder {
            signals: Default::default(),
            metric_exports: Default::default(),
            answer,
        };
        let stop = CancellationToken::new();
        let router = tonic::transport::Server::builder()
            .add_service(
                LogsServiceServer::new(recorder.clone())
                    .accept_compressed(CompressionEncoding::Gzip),
            )
            .add_service(
                MetricsServiceServer::new(recorder.clone())
                    .accept_compressed(CompressionEncoding::Gzip),
            );
        let s = stop.clone();
        tokio::spawn(async move {
            router
                .serve_with_incoming_shutdown(
                    tonic::transport::server::TcpIncoming::from(listener),
                    s.cancelled_owned(),
                )
                .await
                .unwrap();
        });
        TestCollector {
            addr,
            recorder,
            stop,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn signals(&self) -> Vec<Signal> {
        self.recorder.signals.lock().unwrap().clone()
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after 30 s (a hang, not a
/// timing assertion).
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "never happened: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
