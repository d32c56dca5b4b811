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
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
