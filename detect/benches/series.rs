//! Series detectors hot path: `observe()` throughput per detector on fixed-seed input.
//! Input: 10 000 samples, 10 s apart, Gaussian-like noise (SplitMix64, Irwin–Hall) with a step
//! a third of the way in and a fill in the last third, so the detectors do their real work
//! (scoring, firing, re-arming) rather than a warm-up path.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use daytwo_detect::series::{
    CpuThrottling, CpuThrottlingConfig, Forecast, ForecastConfig, RobustAnomaly,
    RobustAnomalyConfig, Threshold, ThresholdConfig,
};
use daytwo_model::Timestamp;
use std::hint::black_box;

const LEN: usize = 10_000;

fn input() -> Vec<(Timestamp, f64)> {
    let mut state = 0x5EED_u64;
    let mut uniform = move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    (0..LEN)
        .map(|i| {
            let noise: f64 = (0..12).map(|_| uniform()).sum::<f64>() - 6.0;
            let level = match i {
                _ if i < LEN / 3 => 40.0,
                _ if i < 2 * LEN / 3 => 55.0,
                _ => 55.0 + 0.01 * (i - 2 * LEN / 3) as f64,
            };
            (
                Timestamp::from_unix_secs(1_795_617_000 + 10 * i as i64),
                level + noise,
            )
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let data = input();
    let mut g = c.benchmark_group("series_observe");
    g.throughput(Throughput::Elements(LEN as u64));

    g.bench_function("threshold", |b| {
        b.iter_batched(
            || {
                Threshold::new(ThresholdConfig {
                    min_duration_secs: 60.0,
                    ..ThresholdConfig::new(50.0, 45.0)
                })
                .unwrap()
            },
            |mut d| {
                for (t, v) in &data {
                    black_box(d.observe(*t, *v));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("robust_anomaly_w120", |b| {
        b.iter_batched(
            || RobustAnomaly::new(RobustAnomalyConfig::default()).unwrap(),
            |mut d| {
                for (t, v) in &data {
                    black_box(d.observe(*t, *v));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("forecast_64", |b| {
        b.iter_batched(
            || {
                Forecast::new(ForecastConfig {
                    unit: String::new(),
                    ..ForecastConfig::new(100.0)
                })
                .unwrap()
            },
            |mut d| {
                for (t, v) in &data {
                    black_box(d.observe(*t, *v));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("cpu_throttling", |b| {
        b.iter_batched(
            || CpuThrottling::new(CpuThrottlingConfig::new("c")).unwrap(),
            |mut d| {
                for (t, v) in &data {
                    black_box(d.observe(*t, *v / 100.0));
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
