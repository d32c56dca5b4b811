//! A robust anomaly detector for any series: rolling median/MAD, `m` of `n` confirmation.
//!
//! Entry type: [`RobustAnomaly`], built from a [`RobustAnomalyConfig`].
//!
//! Each sample `x` is scored against the previous `window_samples` samples (not including
//! itself): `z = (x - median) / (1.4826 · MAD)`, the robust z-score (1.4826 · MAD estimates the
//! standard deviation σ of Gaussian noise, and neither the median nor the MAD moves much when a
//! few samples are extreme). A sample is flagged when `|z| > k`. The detector fires when `m` of
//! the last `n` samples are flagged on the same side, then stays quiet (one detection per
//! episode) until none of the last `n` samples is flagged. Every sample, flagged or not, then
//! joins the window, so a lasting step becomes the new normal after about `window_samples / 2`
//! samples. No score is computed until the window holds `min_samples` samples.
//!
//! When the MAD is 0 (a series that sat on one value), any departure scores ±∞ unless
//! `min_scale` sets a floor; set it for quantised series (counts, integers).
//!
//! Stated sensitivity and delay (defaults `k = 5`, `m = 3`, `n = 5`, `window_samples = 120`,
//! a full window, σ the standard deviation of the noise):
//! * a **step** of ≥ 10σ fires within `n` samples of the step (at the `m`-th shifted sample when
//!   all are flagged);
//! * a **spike** of ≥ 10σ lasting ≥ `m` samples fires within `m` samples of its start (a spike
//!   shorter than `m` samples is deliberately ignored);
//! * a **ramp** that reaches ≥ 10σ within `R ≤ 20` samples and stays there fires within
//!   `R + n` samples of its start;
//! * **noise** alone — at the same σ, or Gaussian-like noise of the same variance as the whole
//!   step series — stays silent (the score is scale-free).
//!
//! It deliberately does not detect slow drifts: a ramp much longer than the window becomes its
//! own baseline. Use [`super::Forecast`] for trends.

use super::{
    Clock, Detection, DetectionKind, DetectorConfigInvalid, Recent, format_value, invalid,
    require_finite,
};
use daytwo_model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Which departures count.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sides {
    /// Both rises and drops.
    #[default]
    Both,
    /// Only rises (latency, error rate).
    Up,
    /// Only drops (throughput, free space).
    Down,
}

/// Configuration of a [`RobustAnomaly`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RobustAnomalyConfig {
    /// What the series measures, used in the sentence.
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Unit of the values (see `ThresholdConfig::unit`).
    #[serde(default)]
    pub unit: String,
    /// How many past samples form the baseline (median and MAD).
    #[serde(default = "default_window")]
    pub window_samples: usize,
    /// How many samples the window needs before any sample is scored.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// The robust z-score beyond which a sample is flagged.
    #[serde(default = "default_k")]
    pub k: f64,
    /// How many flagged samples (same side) among the last `n` fire.
    #[serde(default = "default_m")]
    pub m: usize,
    /// The confirmation window, in samples.
    #[serde(default = "default_n")]
    pub n: usize,
    /// Which departures count.
    #[serde(default)]
    pub sides: Sides,
    /// A floor for the robust σ, in the series' unit (0: none).
    #[serde(default)]
    pub min_scale: f64,
    /// How many recent samples a detection carries as evidence.
    #[serde(default = "default_evidence")]
    pub evidence_samples: usize,
}

fn default_subject() -> String {
    "series".to_string()
}
fn default_window() -> usize {
    120
}
fn default_min_samples() -> usize {
    30
}
fn default_k() -> f64 {
    5.0
}
fn default_m() -> usize {
    3
}
fn default_n() -> usize {
    5
}
fn default_evidence() -> usize {
    32
}

impl Default for RobustAnomalyConfig {
    fn default() -> Self {
        RobustAnomalyConfig {
            subject: default_subject(),
            unit: String::new(),
            window_samples: default_window(),
            min_samples: default_min_samples(),
            k: default_k(),
            m: default_m(),
            n: default_n(),
            sides: Sides::Both,
            min_scale: 0.0,
            evidence_samples: default_evidence(),
        }
    }
}

/// Consistency factor: 1.4826 · MAD estimates σ for Gaussian noise.
const MAD_TO_SIGMA: f64 = 1.4826;

/// See the module docs.
#[derive(Clone, Debug)]
pub struct RobustAnomaly {
    cfg: RobustAnomalyConfig,
    /// The baseline in arrival order (for eviction) and sorted (for the median).
    window: VecDeque<f64>,
    sorted: Vec<f64>,
    /// Scratch space for the absolute deviations.
    scratch: Vec<f64>,
    /// The last `n` flags: +1 above, -1 below, 0 not flagged.
    flags: VecDeque<i8>,
    active: bool,
    /// After a detection, the same direction stays quiet until the window has turned over
    /// once (the baseline has absorbed a lasting shift): (direction, samples left).
    refractory: (i8, usize),
    recent: Recent,
    clock: Clock,
}

/// The median of a sorted, non-empty slice.
fn median_sorted(s: &[f64]) -> f64 {
    let n = s.len();
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

/// The median of an unsorted, non-empty slice (reorders it).
fn median_select(s: &mut [f64]) -> f64 {
    let n = s.len();
    let mid = n / 2;
    let (left, m, _) = s.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        let lower = left.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (lower + m) / 2.0
    }
}

impl RobustAnomaly {
    pub fn new(cfg: RobustAnomalyConfig) -> Result<Self, DetectorConfigInvalid> {
        require_finite("k", cfg.k)?;
        if cfg.k <= 0.0 {
            return Err(invalid("k", format!("must be > 0, got {}", cfg.k)));
        }
        if cfg.window_samples < 3 {
            return Err(invalid(
                "window_samples",
                format!("must be >= 3, got {}", cfg.window_samples),
            ));
        }
        if cfg.min_samples < 3 || cfg.min_samples > cfg.window_samples {
            return Err(invalid(
                "min_samples",
                format!(
                    "must be between 3 and window_samples ({}), got {}",
                    cfg.window_samples, cfg.min_samples
                ),
            ));
        }
        if cfg.n == 0 || cfg.m == 0 || cfg.m > cfg.n {
            return Err(invalid(
                "m",
                format!("need 1 <= m <= n, got m = {}, n = {}", cfg.m, cfg.n),
            ));
        }
        if !(cfg.min_scale.is_finite() && cfg.min_scale >= 0.0) {
            return Err(invalid(
                "min_scale",
                format!("must be >= 0, got {}", cfg.min_scale),
            ));
        }
        Ok(RobustAnomaly {
            window: VecDeque::with_capacity(cfg.window_samples),
            sorted: Vec::with_capacity(cfg.window_samples),
            scratch: Vec::with_capacity(cfg.window_samples),
            flags: VecDeque::with_capacity(cfg.n),
            recent: Recent::new(cfg.evidence_samples),
            active: false,
            refractory: (0, 0),
            clock: Clock::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &RobustAnomalyConfig {
        &self.cfg
    }

    /// A detector whose baseline already holds `baseline` (oldest first, at most the window's
    /// size kept), unscored: for a caller that restarts a baseline on samples it has seen
    /// (the settled part of a series whose first samples were the tail of an earlier episode).
    pub fn seeded(
        cfg: RobustAnomalyConfig,
        baseline: impl IntoIterator<Item = f64>,
    ) -> Result<Self, DetectorConfigInvalid> {
        let mut d = RobustAnomaly::new(cfg)?;
        for v in baseline.into_iter().filter(|v| v.is_finite()) {
            d.admit(v);
        }
        Ok(d)
    }

    /// The samples of the current window, oldest first.
    pub fn window(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.window.iter().copied()
    }

    /// The current baseline: (median, robust σ), once the window holds `min_samples`.
    pub fn baseline(&mut self) -> Option<(f64, f64)> {
        if self.sorted.len() < self.cfg.min_samples {
            return None;
        }
        let med = median_sorted(&self.sorted);
        self.scratch.clear();
        self.scratch
            .extend(self.sorted.iter().map(|x| (x - med).abs()));
        let mad = median_select(&mut self.scratch);
        Some((med, (MAD_TO_SIGMA * mad).max(self.cfg.min_scale)))
    }

    /// Feeds one sample; returns a detection when an episode starts.
    pub fn observe(&mut self, t: Timestamp, value: f64) -> Option<Detection> {
        if !self.clock.accept(t, value) {
            return None;
        }
        self.recent.push((t, value));
        let scored = self.baseline().map(|(med, scale)| {
            let z = if scale > 0.0 {
                (value - med) / scale
            } else if value == med {
                0.0
            } else {
                f64::INFINITY.copysign(value - med)
            };
            (med, scale, z)
        });
        let flag = match scored {
            Some((_, _, z)) if z > self.cfg.k && self.cfg.sides != Sides::Down => 1,
            Some((_, _, z)) if z < -self.cfg.k && self.cfg.sides != Sides::Up => -1,
            _ => 0,
        };
        if self.flags.len() == self.cfg.n {
            self.flags.pop_front();
        }
        self.flags.push_back(flag);
        self.admit(value);
        self.refractory.1 = self.refractory.1.saturating_sub(1);

        if self.active {
            if self.flags.iter().all(|f| *f == 0) {
                self.active = false;
            }
            return None;
        }
        let ups = self.flags.iter().filter(|f| **f > 0).count();
        let downs = self.flags.iter().filter(|f| **f < 0).count();
        if flag == 0 || (ups < self.cfg.m && downs < self.cfg.m) {
            return None;
        }
        let direction: i8 = if ups >= self.cfg.m { 1 } else { -1 };
        if self.refractory.0 == direction && self.refractory.1 > 0 {
            // The same lasting shift, seen again while the window still holds the old level.
            return None;
        }
        self.refractory = (direction, self.cfg.window_samples);
        self.active = true;
        let (med, scale, z) = scored.expect("a flagged sample was scored");
        let flagged = ups.max(downs);
        let c = &self.cfg;
        let side = if z > 0.0 { "above" } else { "below" };
        let message = format!(
            "{} is {}, {:.1}σ {side} its median {} (robust σ {}) in {flagged} of the last {} samples.",
            c.subject,
            format_value(value, &c.unit),
            z.abs(),
            format_value(med, &c.unit),
            format_value(scale, &c.unit),
            self.flags.len(),
        );
        Some(Detection {
            kind: DetectionKind::Anomaly,
            time: t,
            value,
            magnitude: z,
            message,
            evidence: self.recent.to_vec(),
        })
    }

    fn admit(&mut self, value: f64) {
        if self.window.len() == self.cfg.window_samples
            && let Some(old) = self.window.pop_front()
        {
            let i = self.sorted.partition_point(|x| x.total_cmp(&old).is_lt());
            self.sorted.remove(i);
        }
        self.window.push_back(value);
        let i = self.sorted.partition_point(|x| x.total_cmp(&value).is_lt());
        self.sorted.insert(i, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::synth::{at, series, variance};
    use proptest::prelude::*;

    fn detect(s: &[(Timestamp, f64)]) -> Vec<(usize, Detection)> {
        let mut d = RobustAnomaly::new(RobustAnomalyConfig {
            subject: "p99 latency of checkout".into(),
            unit: "ms".into(),
            ..RobustAnomalyConfig::default()
        })
        .unwrap();
        s.iter()
            .enumerate()
            .filter_map(|(i, (t, v))| d.observe(*t, *v).map(|x| (i, x)))
            .collect()
    }

    #[test]
    fn medians() {
        assert_eq!(median_sorted(&[1.0, 2.0, 3.0]), 2.0);
        assert_eq!(median_sorted(&[1.0, 2.0, 3.0, 10.0]), 2.5);
        assert_eq!(median_select(&mut [10.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median_select(&mut [5.0, 1.0, 3.0]), 3.0);
    }

    #[test]
    fn a_step_fires_once_with_evidence_and_a_sentence() {
        let s = series(300, 10.0, 2.0, 42, |i| if i >= 200 { 140.0 } else { 100.0 });
        let d = detect(&s);
        assert_eq!(d.len(), 1, "{d:?}");
        let (i, det) = &d[0];
        assert_eq!(*i, 202);
        assert_eq!(det.kind, DetectionKind::Anomaly);
        assert!(det.magnitude > 10.0);
        assert_eq!(det.evidence.len(), 32);
        assert_eq!(det.evidence.last().unwrap().0, s[202].0);
        assert!(
            det.message.starts_with("p99 latency of checkout is 1"),
            "{}",
            det.message
        );
        assert!(
            det.message.contains("above its median 100."),
            "{}",
            det.message
        );
        assert!(det.message.ends_with("in 3 of the last 5 samples."));
    }

    #[test]
    fn a_flat_series_fires_on_any_change_unless_floored() {
        let s: Vec<_> = (0..100)
            .map(|i| (at(i, 1.0), if (60..63).contains(&i) { 1.0 } else { 0.0 }))
            .collect();
        assert_eq!(detect(&s).len(), 1);
        let mut floored = RobustAnomaly::new(RobustAnomalyConfig {
            min_scale: 1.0,
            ..RobustAnomalyConfig::default()
        })
        .unwrap();
        assert!(s.iter().all(|(t, v)| floored.observe(*t, *v).is_none()));
    }

    #[test]
    fn bounded_memory() {
        let mut d = RobustAnomaly::new(RobustAnomalyConfig::default()).unwrap();
        for i in 0..10_000 {
            d.observe(at(i, 1.0), (i % 7) as f64);
        }
        assert_eq!(d.window.len(), 120);
        assert_eq!(d.sorted.len(), 120);
        assert_eq!(d.flags.len(), 5);
    }

    #[test]
    fn rejects_bad_configs() {
        let bad = |f: fn(&mut RobustAnomalyConfig)| {
            let mut c = RobustAnomalyConfig::default();
            f(&mut c);
            RobustAnomaly::new(c).unwrap_err().field
        };
        assert_eq!(bad(|c| c.m = 6), "m");
        assert_eq!(bad(|c| c.k = 0.0), "k");
        assert_eq!(bad(|c| c.window_samples = 2), "window_samples");
        assert_eq!(bad(|c| c.min_samples = 500), "min_samples");
    }

    // Property tests: σ = 1 noise around 100, a full window (200 samples) before the change,
    // changes of the stated 10σ (or more) in either direction.
    const SIGMA: f64 = 1.0;
    const BASE: f64 = 100.0;
    const N: usize = 5;
    const M: usize = 3;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn fires_on_a_step_within_n_samples(seed: u64, at_i in 200usize..300, size in 10.0f64..50.0, up: bool) {
            let size = if up { size } else { -size };
            let s = series(400, 10.0, SIGMA, seed, |i| if i >= at_i { BASE + size } else { BASE });
            let d = detect(&s);
            prop_assert_eq!(d.len(), 1, "{:?}", d);
            prop_assert!(d[0].0 >= at_i && d[0].0 < at_i + N, "fired at {} for a step at {}", d[0].0, at_i);
            prop_assert_eq!(d[0].1.magnitude > 0.0, up);
        }

        #[test]
        fn fires_on_a_spike_of_m_samples_within_m_samples(seed: u64, at_i in 200usize..300, size in 10.0f64..1e6, extra in 0usize..3) {
            let len = M + extra;
            let s = series(400, 10.0, SIGMA, seed, |i| if (at_i..at_i + len).contains(&i) { BASE + size } else { BASE });
            let d = detect(&s);
            prop_assert_eq!(d.len(), 1, "{:?}", d);
            prop_assert_eq!(d[0].0, at_i + M - 1);
        }

        #[test]
        fn ignores_a_spike_shorter_than_m_samples(seed: u64, at_i in 200usize..300, size in 10.0f64..1e6) {
            let s = series(400, 10.0, SIGMA, seed, |i| if (at_i..at_i + M - 1).contains(&i) { BASE + size } else { BASE });
            prop_assert!(detect(&s).is_empty());
        }

        #[test]
        fn fires_on_a_ramp_within_r_plus_n_samples(seed: u64, at_i in 200usize..300, r in 1usize..=20, size in 10.0f64..50.0) {
            let s = series(400, 10.0, SIGMA, seed, |i| {
                if i < at_i { BASE } else { BASE + size * (((i - at_i + 1) as f64) / r as f64).min(1.0) }
            });
            let d = detect(&s);
            prop_assert_eq!(d.len(), 1, "{:?}", d);
            prop_assert!(d[0].0 < at_i + r + N, "fired at {} for a ramp at {} over {}", d[0].0, at_i, r);
        }

        #[test]
        fn silent_on_noise_of_the_same_sigma(seed: u64) {
            let s = series(1000, 10.0, SIGMA, seed, |_| BASE);
            prop_assert!(detect(&s).is_empty());
        }

        #[test]
        fn silent_on_noise_with_the_variance_of_a_step_series(seed: u64, size in 10.0f64..50.0) {
            let step = series(400, 10.0, SIGMA, seed, |i| if i >= 200 { BASE + size } else { BASE });
            let sigma = variance(&step).sqrt();
            let s = series(1000, 10.0, sigma, seed ^ 0xA5A5, |_| BASE);
            prop_assert!(detect(&s).is_empty());
        }
    }
}
