//! Template mining throughput on fixed-seed synthetic lines (not the Loghub data): a steady state
//! of ~200 templates with numbers, addresses, ids and words as variables, as an agent sees them.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use daytwo_detect::miner::Miner;
use std::hint::black_box;

/// A small deterministic generator (xorshift64*), so the bench needs no rand dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: &[&str] = &[
    "connection",
    "request",
    "failed",
    "started",
    "stopped",
    "worker",
    "block",
    "session",
    "timeout",
    "received",
    "sent",
    "user",
    "node",
    "disk",
    "volume",
    "pod",
    "container",
    "error",
    "warning",
    "retrying",
    "closed",
    "opened",
    "for",
    "from",
    "to",
    "with",
    "in",
    "on",
    "the",
];

fn lines(n: usize) -> Vec<String> {
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    // Each template: a fixed word sequence with variable slots.
    let templates: Vec<Vec<Option<&str>>> = (0..200)
        .map(|_| {
            let len = 4 + rng.below(12) as usize;
            (0..len)
                .map(|_| (rng.below(4) != 0).then(|| WORDS[rng.below(WORDS.len() as u64) as usize]))
                .collect()
        })
        .collect();
    (0..n)
        .map(|_| {
            let t = &templates[rng.below(templates.len() as u64) as usize];
            let mut line = String::with_capacity(128);
            for (i, slot) in t.iter().enumerate() {
                if i > 0 {
                    line.push(' ');
                }
                match slot {
                    Some(w) => line.push_str(w),
                    None => match rng.below(4) {
                        0 => line.push_str(&rng.below(100_000).to_string()),
                        1 => line.push_str(&format!(
                            "10.{}.{}.{}:{}",
                            rng.below(256),
                            rng.below(256),
                            rng.below(256),
                            rng.below(65536)
                        )),
                        2 => line.push_str(&format!("blk_{:x}", rng.next())),
                        _ => line.push_str(&format!("id={}", rng.below(1000))),
                    },
                }
            }
            line
        })
        .collect()
}

/// Structured container logs like `gen_cri_logs` writes (the CRI payload of its JSON lines):
/// ~400-byte JSON objects, a few messages, hex ids, numbers, user agents with spaces; each
/// masked line is different (an unmasked 5-hex-digit pod suffix), so nothing repeats exactly.
fn json_lines(n: usize) -> Vec<String> {
    let mut rng = Rng(0x1dea_5eed_0000_0042);
    const LEVELS: &[&str] = &["debug", "info", "info", "warn", "error"];
    const MSGS: &[&str] = &[
        "request completed",
        "cache miss",
        "upstream timeout, retrying",
        "user session refreshed",
        "db query slow",
    ];
    const UAS: &[&str] = &[
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
        "curl/8.5.0",
        "kube-probe/1.29",
    ];
    const SERVICES: &[&str] = &["checkout", "payments", "frontend", "catalog"];
    let pick = |rng: &mut Rng, xs: &[&'static str]| xs[rng.below(xs.len() as u64) as usize];
    (0..n)
        .map(|i| {
            let svc = pick(&mut rng, SERVICES);
            format!(
                "{{\"ts\":\"2024-06-01T00:{:02}:{:02}.{:09}Z\",\"level\":\"{}\",\"logger\":\"{svc}.http\",\"msg\":\"{}\",\"method\":\"GET\",\"path\":\"/api/v1/orders/{}\",\"status\":{},\"duration_ms\":{}.{:03},\"trace_id\":\"{:016x}{:016x}\",\"user_agent\":\"{}\",\"pod\":\"{svc}-{:010x}-{:05x}\"}}",
                (i / 60) % 60,
                i % 60,
                rng.below(1_000_000_000),
                pick(&mut rng, LEVELS),
                pick(&mut rng, MSGS),
                rng.below(1_000_000),
                [200, 201, 404, 500][rng.below(4) as usize],
                rng.below(250),
                rng.below(1000),
                rng.next(),
                rng.next(),
                pick(&mut rng, UAS),
                rng.next() & 0xff_ffff_ffff,
                rng.next() & 0xf_ffff,
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let input = lines(20_000);
    let mut warm = Miner::default();
    for l in &input {
        warm.add(l);
    }
    let mut g = c.benchmark_group("miner");
    g.throughput(Throughput::Elements(input.len() as u64));
    g.bench_function("add_steady_state", |b| {
        b.iter_batched_ref(
            || warm.clone(),
            |m| {
                for l in &input {
                    black_box(m.add(l));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.bench_function("add_from_empty", |b| {
        b.iter(|| {
            let mut m = Miner::default();
            for l in &input {
                black_box(m.add(l));
            }
            m.len()
        })
    });
    let json = json_lines(20_000);
    let mut warm_json = Miner::default();
    for l in &json {
        warm_json.add(l);
    }
    g.bench_function("add_json_lines_steady_state", |b| {
        b.iter_batched_ref(
            || warm_json.clone(),
            |m| {
                for l in &json {
                    black_box(m.add(l));
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
