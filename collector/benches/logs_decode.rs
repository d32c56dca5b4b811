//! The collector's cost per raw-log export: a 3 MiB request of agent-shaped plain records
//! (~400-byte bodies, `log.file.path`, `log.iostream`, `daytwo.log.template_id`), checked and
//! counted by the scan the logs service uses (`logs_decode/scan`) versus decoded into
//! opentelemetry-proto's types as before (`logs_decode/prost`). Fixed input, no randomness.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_collector::ingest::plain_records;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use std::hint::black_box;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn request() -> (Vec<u8>, u64) {
    let mut records = Vec::new();
    let mut bytes = 0;
    let mut i = 0u64;
    while bytes < 3 << 20 {
        let body = format!(
            "{{\"ts\":\"2024-06-01T00:00:00.{i:09}Z\",\"level\":\"info\",\"logger\":\"checkout.http\",\
             \"msg\":\"request completed\",\"method\":\"GET\",\"path\":\"/api/v1/orders/{i}\",\
             \"status\":200,\"duration_ms\":{}.{:03},\"trace_id\":\"{:032x}\",\"span_id\":\"{:016x}\",\
             \"user_agent\":\"Go-http-client/1.1\",\"pod\":\"checkout-7d4b9c6f5-x2x8z\"}}",
            i % 250,
            i % 1000,
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15),
            i.wrapping_mul(0x51_7c_c1_b7),
        );
        bytes += body.len() + 160;
        records.push(LogRecord {
            time_unix_nano: 1_717_200_000_000_000_000 + i,
            observed_time_unix_nano: 1_717_200_000_000_000_000 + i,
            body: Some(AnyValue {
                value: Some(Value::StringValue(body)),
            }),
            attributes: vec![
                kv(
                    "log.file.path",
                    "/var/log/pods/shop_checkout-7d4b9c6f5-x2x8z_0f7c/app/0.log",
                ),
                kv("log.iostream", "stdout"),
                kv("daytwo.log.template_id", "8f3c2a61d0b94e17"),
            ],
            ..Default::default()
        });
        i += 1;
    }
    let n = records.len() as u64;
    let req = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(Resource {
                attributes: vec![kv("k8s.pod.name", "checkout-7d4b9c6f5-x2x8z")],
                ..Default::default()
            }),
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    (req.encode_to_vec(), n)
}

fn bench(c: &mut Criterion) {
    let (body, n) = request();
    assert_eq!(plain_records(&body), Some(n));
    let mut g = c.benchmark_group("logs_decode");
    g.throughput(Throughput::Elements(n));
    g.bench_function("scan", |b| b.iter(|| plain_records(black_box(&body))));
    g.bench_function("prost", |b| {
        b.iter(|| ExportLogsServiceRequest::decode(black_box(body.as_slice())).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
