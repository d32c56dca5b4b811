//! The collector over real sockets: OTLP/gRPC in (plain and gzip), the size limit answered
//! RESOURCE_EXHAUSTED, malformed protobuf answered INVALID_ARGUMENT, redelivery idempotent,
//! and the HTTP API showing, acknowledging and resolving the incident.

use daytwo_collector::{Collector, CollectorConfig};
use daytwo_model::{Entity, EntityKind, Evidence, Severity, Signal, Timestamp};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tonic::Code;

fn oom_signal(id: &str, cgroup: &str, secs: i64) -> Signal {
    let attrs = serde_json::json!({
        "daytwo.oom.constraint": "memcg",
        "process.pid": 4242,
        "process.executable.name": "leaky",
        "daytwo.cgroup.path": cgroup,
        "daytwo.memory.usage_bytes": 67108864u64,
        "daytwo.memory.limit_bytes": 67108864u64,
        "daytwo.memory.failcnt": 12,
    });
    Signal {
        id: id.into(),
        name: "daytwo.kernel.oom_kill".into(),
        time: Timestamp::from_unix_secs(secs),
        severity: Severity::Critical,
        entity: Entity::new(EntityKind::Cgroup, cgroup)
            .with_attr("host.name", "node-1")
            .with_attr("daytwo.cgroup.path", cgroup),
        resource: [("host.name".to_string(), "node-1".into())]
            .into_iter()
            .collect(),
        attributes: attrs.as_object().unwrap().clone().into_iter().collect(),
        message: "OOM".into(),
        evidence: vec![Evidence {
            time: Timestamp::from_unix_secs(secs),
            kind: "log".into(),
            text: "Killed process 4242 (leaky)".into(),
        }],
    }
}

struct Running {
    otlp: String,
    http: String,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

async fn start(max_recv_bytes: usize) -> Running {
    start_with(max_recv_bytes, None).await
}

async fn start_with(max_recv_bytes: usize, auto_resolve_after: Option<Duration>) -> Running {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let config = CollectorConfig {
        data_dir: dir.path().to_path_buf(),
        otlp_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        notify: Default::default(),
        rules: Arc::new(daytwo_rules::RuleSet::builtin()),
        rules_paths: Vec::new(),
        rules_reload_interval: None,
        correlation_window: Duration::from_secs(300),
        quorum: daytwo_collector::correlate::DEFAULT_QUORUM,
        auto_resolve_after,
        max_recv_bytes,
        token: Some("t0ken".into()),
    };
    let registry = prometheus::Registry::new();
    let c = Collector::bind(config, &registry).await.unwrap();
    let (otlp, http) = (
        format!("http://{}", c.otlp_addr()),
        format!("http://{}", c.http_addr()),
    );
    let stop = CancellationToken::new();
    let s = stop.clone();
    let task = tokio::spawn(async move { c.run(s).await.unwrap() });
    Running {
        otlp,
        http,
        stop,
        task,
        _dir: dir,
    }
}

async fn http_json(
    method: reqwest::Method,
    url: &str,
    token: Option<&str>,
) -> (u16, serde_json::Value) {
    let mut req = reqwest::Client::new().request(method, url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let code = resp.status().as_u16();
    (code, resp.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test]
async fn signals_over_otlp_become_one_incident_and_redelivery_is_a_no_op() {
    let r = start(1 << 20).await;
    let mut client = LogsServiceClient::connect(r.otlp.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    let req = daytwo_model::otlp::signals_to_request(&[oom_signal("s1", "/kubepods/pod1", 100)]);
    client.export(req.clone()).await.unwrap();
    client.export(req).await.unwrap(); // redelivery: same id
    let second = daytwo_model::otlp::signals_to_request(&[oom_signal("s2", "/kubepods/pod1", 160)]);
    client.export(second).await.unwrap(); // same cause while open: joins, no new incident

    let (code, list) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/v1/incidents", r.http),
        None,
    )
    .await;
    assert_eq!(code, 200);
    let incidents = list["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{list}");
    assert!(list["next"].is_null());
    let inc = &incidents[0];
    assert_eq!(inc["root_causes"][0]["rule"], "node.memory_cgroup_oom");
    assert_eq!(inc["root_causes"][0]["entity"]["name"], "/kubepods/pod1");
    assert_eq!(inc["signals"].as_array().unwrap().len(), 2);
    let id = inc["id"].as_str().unwrap();

    // Writes need the token.
    let (code, _) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/v1/incidents/{id}/resolve", r.http),
        None,
    )
    .await;
    assert_eq!(code, 401);
    let (code, body) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/v1/incidents/{id}/ack", r.http),
        Some("t0ken"),
    )
    .await;
    assert_eq!((code, body["status"].as_str()), (200, Some("acknowledged")));
    let (code, body) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/v1/incidents/{id}/resolve", r.http),
        Some("t0ken"),
    )
    .await;
    assert_eq!((code, body["status"].as_str()), (200, Some("resolved")));
    assert!(body["resolved_at"].is_string());
    let (code, _) = http_json(
        reqwest::Method::POST,
        &format!("{}/api/v1/incidents/{id}/ack", r.http),
        Some("t0ken"),
    )
    .await;
    assert_eq!(code, 409);

    // The same cause after the resolve: a new incident, linked to the old one.
    client
        .export(daytwo_model::otlp::signals_to_request(&[oom_signal(
            "s3",
            "/kubepods/pod1",
            900,
        )]))
        .await
        .unwrap();
    let (_, list) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/v1/incidents?status=open", r.http),
        None,
    )
    .await;
    let open = list["incidents"].as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_ne!(open[0]["id"], id);
    assert_eq!(open[0]["links"][0]["incident_id"], id);

    // Filters: entity (name or kind/name), time range, namespace.
    let count = |q: &'static str| {
        let url = format!("{}/api/v1/incidents?{q}", r.http);
        async move {
            let (code, body) = http_json(reqwest::Method::GET, &url, None).await;
            assert_eq!(code, 200, "{q}: {body}");
            body["incidents"].as_array().unwrap().len()
        }
    };
    assert_eq!(count("entity=/kubepods/pod1").await, 2);
    assert_eq!(count("entity=cgroup//kubepods/pod1").await, 2);
    assert_eq!(count("entity=pod//kubepods/pod1").await, 0);
    assert_eq!(
        count("until=1970-01-01T00:05:00Z").await,
        1,
        "only the one opened at 100 s"
    );
    assert_eq!(
        count("since=1970-01-01T00:05:00Z").await,
        1,
        "only the one opened at 900 s"
    );
    assert_eq!(count("since=2100-01-01T00:00:00Z").await, 0);
    assert_eq!(count("namespace=shop").await, 0);
    let (code, body) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/v1/incidents?since=yesterday", r.http),
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("since"), "{body}");

    let (code, _) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/v1/incidents/nope", r.http),
        None,
    )
    .await;
    assert_eq!(code, 404);
    let (code, body) = http_json(
        reqwest::Method::GET,
        &format!("{}/api/v1/incidents?status=bogus", r.http),
        None,
    )
    .await;
    assert_eq!(code, 400);
    assert!(body["error"].as_str().unwrap().contains("status"), "{body}");
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn oversized_is_resource_exhausted_and_malformed_is_invalid_argument_and_the_server_lives_on()
{
    let r = start(64 * 1024).await;
    let mut client = LogsServiceClient::connect(r.otlp.clone()).await.unwrap();
    let mut big = oom_signal("big", "/x", 100);
    big.message = "x".repeat(200 * 1024);
    let err = client
        .export(daytwo_model::otlp::signals_to_request(&[big]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");

    // A message whose field 1 has the wrong wire type: not an ExportLogsServiceRequest.
    #[derive(Clone, PartialEq, prost::Message)]
    struct Bogus {
        #[prost(uint64, tag = "1")]
        x: u64,
    }
    let channel = tonic::transport::Endpoint::from_shared(r.otlp.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let codec: tonic_prost::ProstCodec<Bogus, ExportLogsServiceResponse> =
        tonic_prost::ProstCodec::default();
    let err = grpc
        .unary(tonic::Request::new(Bogus { x: 7 }), path, codec)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");

    // A record that is an event but carries a bad daytwo attribute: rejected by name.
    let mut req = daytwo_model::otlp::signals_to_request(&[oom_signal("bad", "/x", 100)]);
    for kv in &mut req.resource_logs[0].scope_logs[0].log_records[0].attributes {
        if kv.key == "daytwo.severity" {
            kv.value = Some(daytwo_model::otlp::any_value(&"loud".into()));
        }
    }
    let err = client.export(req).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(
        err.message().contains("daytwo.severity"),
        "{}",
        err.message()
    );

    // Still serving.
    let ok: ExportLogsServiceRequest =
        daytwo_model::otlp::signals_to_request(&[oom_signal("fine", "/x", 100)]);
    client.export(ok).await.unwrap();
    let body = reqwest::get(format!("{}/metrics", r.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("daytwo_collector_records_rejected_total{reason=\"invalid_signal\"} 1"),
        "{body}"
    );
    r.stop.cancel();
    r.task.await.unwrap();
}

#[tokio::test]
async fn an_incident_whose_signals_cleared_auto_resolves() {
    let r = start_with(1 << 20, Some(Duration::from_secs(30))).await;
    let mut client = LogsServiceClient::connect(r.otlp.clone()).await.unwrap();
    let now = Timestamp::from_system_time(std::time::SystemTime::now()).0 / 1_000_000_000;
    // One OOM an hour ago (quiet for longer than 30 s) and one just now (not quiet).
    client
        .export(daytwo_model::otlp::signals_to_request(&[
            oom_signal("old", "/old", now - 3600),
            oom_signal("new", "/new", now),
        ]))
        .await
        .unwrap();
    let mut statuses = std::collections::BTreeMap::new();
    for _ in 0..100 {
        let (_, list) = http_json(
            reqwest::Method::GET,
            &format!("{}/api/v1/incidents", r.http),
            None,
        )
        .await;
        statuses = list["incidents"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["root_causes"][0]["entity"]["name"]
                        .as_str()
                        .unwrap()
                        .to_string(),
                    i["status"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if statuses.get("/old").map(String::as_str) == Some("resolved") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        statuses.get("/old").map(String::as_str),
        Some("resolved"),
        "{statuses:?}"
    );
    assert_eq!(
        statuses.get("/new").map(String::as_str),
        Some("open"),
        "{statuses:?}"
    );
    r.stop.cancel();
    r.task.await.unwrap();
}

/// Sends pre-encoded bytes as one logs export (to send what no generated client would).
#[derive(Clone, Copy, Default)]
struct RawBytes;
struct RawEnc;
struct RespDec;

impl tonic::codec::Encoder for RawEnc {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RespDec {
    type Item = ExportLogsServiceResponse;
    type Error = tonic::Status;
    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        use prost::Message;
        Ok(Some(ExportLogsServiceResponse::decode(src).unwrap()))
    }
}

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = ExportLogsServiceResponse;
    type Encoder = RawEnc;
    type Decoder = RespDec;
    fn encoder(&mut self) -> RawEnc {
        RawEnc
    }
    fn decoder(&mut self) -> RespDec {
        RespDec
    }
}

/// Raw log records as an agent ships them (plain and gzip) are counted without being decoded
/// into messages; one whose body is not UTF-8 is still INVALID_ARGUMENT, as prost says; a
/// request mixing raw records and a signal stores the signal and counts the rest.
#[tokio::test]
async fn plain_log_records_are_counted_and_bad_ones_still_rejected() {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, any_value::Value};
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use prost::Message;
    let r = start(1 << 20).await;
    let raw = |bodies: &[&str]| ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: bodies
                    .iter()
                    .map(|b| LogRecord {
                        time_unix_nano: 1,
                        body: Some(AnyValue {
                            value: Some(Value::StringValue(b.to_string())),
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let mut client = LogsServiceClient::connect(r.otlp.clone()).await.unwrap();
    client.export(raw(&["a", "b", "c"])).await.unwrap();
    let mut gz = LogsServiceClient::connect(r.otlp.clone())
        .await
        .unwrap()
        .send_compressed(tonic::codec::CompressionEncoding::Gzip);
    gz.export(raw(&["d", "e"])).await.unwrap();
    let mut mixed = daytwo_model::otlp::signals_to_request(&[oom_signal("m", "/x", 100)]);
    mixed.resource_logs.extend(raw(&["f"]).resource_logs);
    client.export(mixed).await.unwrap();

    let mut bad = raw(&["héllo"]).encode_to_vec();
    let at = bad.windows(2).position(|w| w == "é".as_bytes()).unwrap();
    bad[at] = 0xff;
    let channel = tonic::transport::Endpoint::from_shared(r.otlp.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
    );
    let err = grpc
        .unary(tonic::Request::new(bad), path.clone(), RawBytes)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    // An empty request is a valid one (no records).
    grpc.ready().await.unwrap();
    grpc.unary(tonic::Request::new(Vec::new()), path, RawBytes)
        .await
        .unwrap();

    let body = reqwest::get(format!("{}/metrics", r.http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        body.contains("daytwo_collector_log_records_received_total 6"),
        "{body}"
    );
    assert!(
        body.contains("daytwo_collector_signals_received_total 1"),
        "{body}"
    );
    r.stop.cancel();
    r.task.await.unwrap();
}
