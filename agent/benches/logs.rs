//! Log hot path: CRI framing and partial joining of a fixed-seed mix of container lines, and
//! redaction (the no-secret common case, decided by the literal gate) over it.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_agent::logs::parse::{Format, Joined, PartialJoiner, parse_line};
use std::hint::black_box;

/// Deterministic CRI lines: JSON app logs, klog-style text, a Java trace, partials.
fn corpus(n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut x: u64 = 42;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for i in 0..n {
        let r = next();
        let ts = format!(
            "2026-11-25T14:{:02}:{:02}.{:09}Z",
            (i / 60) % 60,
            i % 60,
            r % 1_000_000_000
        );
        match r % 100 {
            0..=91 => out.extend_from_slice(format!(
                "{ts} stdout F {{\"level\": \"info\", \"ts\": \"{ts}\", \"service\": \"checkout\", \"msg\": \"request completed\", \"method\": \"GET\", \"path\": \"/api/v1/orders/{}\", \"status\": 200, \"latency_ms\": {}, \"trace_id\": \"{:016x}{:016x}\", \"user_id\": {}}}\n",
                r % 9973, r % 500, next(), next(), r % 100_000
            ).as_bytes()),
            92..=97 => out.extend_from_slice(format!(
                "{ts} stderr F I1125 14:31:06.{:06} 1 reflector.go:{}] Listing and watching *v1.Pod from k8s.io/client-go/informers/factory.go:{}\n",
                r % 1_000_000, r % 400, r % 150
            ).as_bytes()),
            98 => {
                out.extend_from_slice(format!("{ts} stderr F java.lang.IllegalStateException: order {} not found\n", r % 1000).as_bytes());
                for f in 0..6 {
                    out.extend_from_slice(format!("{ts} stderr F \tat com.shop.Orders.find(Orders.java:{})\n", 10 + f).as_bytes());
                }
            }
            _ => {
                let big = "x".repeat(16 * 1024);
                out.extend_from_slice(format!("{ts} stdout P {{\"blob\": \"{big}\n").as_bytes());
                out.extend_from_slice(format!("{ts} stdout F {big}\"}}\n").as_bytes());
            }
        }
    }
    out
}

fn cri(c: &mut Criterion) {
    let data = corpus(20_000);
    let lines = data.iter().filter(|&&b| b == b'\n').count() as u64;
    let mut g = c.benchmark_group("logs");
    g.throughput(Throughput::Elements(lines));
    g.bench_function("cri_parse_and_join", |b| {
        b.iter(|| {
            let mut j = PartialJoiner::new();
            let mut n = 0usize;
            let mut off = 0u64;
            for line in data.split(|&b| b == b'\n') {
                let (p, _) = parse_line(Format::Cri, line);
                if let Joined::Done { message, .. } = j.push(p, off, 1 << 20) {
                    n += message.len();
                }
                off += line.len() as u64 + 1;
            }
            black_box(n)
        })
    });
    let redactor = daytwo_agent::logs::redact::Redactor::new(&[]).unwrap();
    g.bench_function("redact_no_secret", |b| {
        b.iter(|| {
            let mut n = 0usize;
            for line in data.split(|&b| b == b'\n') {
                n += redactor.redact(line, |_| {}).len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, cri);
criterion_main!(benches);
