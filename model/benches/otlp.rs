//! OTLP encode/decode of signals: the agent's shipper and the collector's ingest both run it
//! for every batch (512 signals, the agent's default batch).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_model::otlp::{signals_from_request, signals_to_request};
use daytwo_model::{Entity, EntityKind, Evidence, Severity, Signal, Timestamp};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use prost::Message;
use std::hint::black_box;

fn batch(n: usize) -> Vec<Signal> {
    (0..n)
        .map(|i| {
            let cg = format!("/kubepods/burstable/pod{i:04}/c{i}");
            let attributes = serde_json::json!({
                "daytwo.oom.constraint": "memcg",
                "process.pid": 1000 + i,
                "process.executable.name": "java",
                "daytwo.cgroup.path": cg,
                "daytwo.memory.usage_bytes": 536870912u64,
                "daytwo.memory.limit_bytes": 536870912u64,
                "daytwo.memory.failcnt": 42,
            });
            Signal {
                id: format!("{i:032x}"),
                name: "daytwo.kernel.oom_kill".into(),
                time: Timestamp::from_unix_secs(1_795_617_015 + i as i64),
                severity: Severity::Critical,
                entity: Entity::new(EntityKind::Cgroup, cg.clone()).with_attr("host.name", format!("node-{}", i % 8)).with_attr("daytwo.cgroup.path", cg),
                resource: [("host.name".to_string(), format!("node-{}", i % 8).into())].into_iter().collect(),
                attributes: attributes.as_object().unwrap().clone().into_iter().collect(),
                message: "Kernel OOM-killed java in memory cgroup: usage 512.0 MiB of limit 512.0 MiB, failcnt 42.".into(),
                evidence: (0..8)
                    .map(|j| Evidence { time: Timestamp::from_unix_secs(1_795_617_015), kind: "log".into(), text: format!("kernel line {j} of the OOM report for pid {i}") })
                    .collect(),
            }
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let signals = batch(512);
    let req = signals_to_request(&signals);
    let bytes = req.encode_to_vec();
    let mut g = c.benchmark_group("otlp_signals");
    g.throughput(Throughput::Elements(signals.len() as u64));
    g.bench_function("encode_512", |b| {
        b.iter(|| black_box(signals_to_request(black_box(&signals)).encode_to_vec()))
    });
    g.bench_function("decode_512", |b| {
        b.iter(|| {
            let req = ExportLogsServiceRequest::decode(black_box(bytes.as_slice())).unwrap();
            black_box(signals_from_request(&req).0.len())
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
