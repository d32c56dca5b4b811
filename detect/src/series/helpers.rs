//! Thin detectors for the resource questions of the node-health issue, built from the general
//! ones: memory growth (a [`Forecast`] of the working set against its limit), CPU throttling
//! (a [`Threshold`] on the share of throttled CFS periods) and memory pressure (a [`Threshold`]
//! on PSI `some avg10`).
//!
//! Each keeps the general detector's stated sensitivity and delay (see their modules) and only
//! adds the input conversion, defaults that suit the resource, and an operator's sentence.

use super::{
    Detection, DetectionKind, DetectorConfigInvalid, Forecast, ForecastConfig, Threshold,
    ThresholdConfig, human_bytes, human_duration,
};
use daytwo_model::Timestamp;
use serde::{Deserialize, Serialize};

/// Configuration of a [`MemoryGrowth`] detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryGrowthConfig {
    /// Whose memory ("pod shop/cart-7d9f", "cgroup /system.slice/app.service").
    pub subject: String,
    /// The memory limit in bytes (`memory.max` / `memory.limit_in_bytes`).
    pub limit_bytes: f64,
    /// Fire when the working set reaches the limit within this many seconds.
    #[serde(default = "default_memory_horizon")]
    pub horizon_secs: f64,
    /// How far back the trend looks, in seconds.
    #[serde(default = "default_memory_window")]
    pub window_secs: f64,
}

fn default_memory_horizon() -> f64 {
    3600.0
}
fn default_memory_window() -> f64 {
    3600.0
}

/// A working set growing towards its limit: "memory of X reaches its limit in about 25
/// minutes". Feed it the working set (usage minus inactive file cache) in bytes.
#[derive(Clone, Debug)]
pub struct MemoryGrowth {
    forecast: Forecast,
    subject: String,
}

impl MemoryGrowth {
    pub fn new(cfg: MemoryGrowthConfig) -> Result<Self, DetectorConfigInvalid> {
        let forecast = Forecast::new(ForecastConfig {
            subject: cfg.subject.clone(),
            unit: "bytes".into(),
            horizon_secs: cfg.horizon_secs,
            window_secs: cfg.window_secs,
            ..ForecastConfig::new(cfg.limit_bytes)
        })?;
        Ok(MemoryGrowth {
            forecast,
            subject: cfg.subject,
        })
    }

    /// A changed limit (the pod was resized) applies from the next sample.
    pub fn set_limit(&mut self, limit_bytes: f64) {
        self.forecast.set_capacity(limit_bytes);
    }

    pub fn observe(&mut self, t: Timestamp, working_set_bytes: f64) -> Option<Detection> {
        let mut d = self.forecast.observe(t, working_set_bytes)?;
        let fit = self.forecast.last_fit()?;
        let limit = human_bytes(self.forecast.config().capacity);
        let ws = human_bytes(fit.level);
        let rate = human_bytes(fit.slope_per_sec * 60.0);
        d.message = match d.kind {
            DetectionKind::ForecastFiring if fit.eta_secs <= 0.0 => format!(
                "Memory of {} is at its limit: working set {ws} of {limit}.",
                self.subject
            ),
            DetectionKind::ForecastFiring => format!(
                "Memory of {} grows {rate} per minute and reaches its limit {limit} in about {} (working set {ws}).",
                self.subject,
                human_duration(fit.eta_secs)
            ),
            _ => format!(
                "Memory of {} no longer grows towards its limit {limit} (working set {ws}, {rate} per minute).",
                self.subject
            ),
        };
        Some(d)
    }
}

/// Configuration of a [`CpuThrottling`] detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuThrottlingConfig {
    /// Whose CPU ("container cart in pod shop/cart-7d9f").
    pub subject: String,
    /// Fire when at least this share (0..1) of the CFS periods in an interval were throttled.
    #[serde(default = "default_throttle_enter")]
    pub enter_ratio: f64,
    /// Resolve when the share falls to this or below.
    #[serde(default = "default_throttle_exit")]
    pub exit_ratio: f64,
    /// How long the share must stay past a level before the state changes, in seconds.
    #[serde(default = "default_throttle_min")]
    pub min_duration_secs: f64,
}

fn default_throttle_enter() -> f64 {
    0.25
}
fn default_throttle_exit() -> f64 {
    0.10
}
fn default_throttle_min() -> f64 {
    60.0
}

impl CpuThrottlingConfig {
    pub fn new(subject: impl Into<String>) -> Self {
        CpuThrottlingConfig {
            subject: subject.into(),
            enter_ratio: default_throttle_enter(),
            exit_ratio: default_throttle_exit(),
            min_duration_secs: default_throttle_min(),
        }
    }
}

/// CPU throttling: the share of CFS periods throttled per interval, above a level with
/// hysteresis. Feed it the ratio ([`CpuThrottling::observe`]) or the cumulative `cpu.stat`
/// counters ([`CpuThrottling::observe_counters`]).
#[derive(Clone, Debug)]
pub struct CpuThrottling {
    threshold: Threshold,
    last_counters: Option<(u64, u64)>,
}

impl CpuThrottling {
    pub fn new(cfg: CpuThrottlingConfig) -> Result<Self, DetectorConfigInvalid> {
        Ok(CpuThrottling {
            threshold: Threshold::new(ThresholdConfig {
                subject: format!("CPU throttling of {}", cfg.subject),
                unit: "ratio".into(),
                min_duration_secs: cfg.min_duration_secs,
                ..ThresholdConfig::new(cfg.enter_ratio, cfg.exit_ratio)
            })?,
            last_counters: None,
        })
    }

    /// `throttled_ratio` = throttled periods / periods over the interval ending at `t`.
    pub fn observe(&mut self, t: Timestamp, throttled_ratio: f64) -> Option<Detection> {
        self.threshold.observe(t, throttled_ratio)
    }

    /// The cumulative `nr_periods` and `nr_throttled` of `cpu.stat` (v1 and v2 alike). The
    /// first call only remembers them; a counter that went backwards (the cgroup was recreated)
    /// restarts the differences; an interval without periods (an idle cgroup) is not a sample.
    pub fn observe_counters(
        &mut self,
        t: Timestamp,
        nr_periods: u64,
        nr_throttled: u64,
    ) -> Option<Detection> {
        let prev = self.last_counters.replace((nr_periods, nr_throttled));
        let (p0, t0) = prev?;
        if nr_periods < p0 || nr_throttled < t0 {
            return None;
        }
        let periods = nr_periods - p0;
        if periods == 0 {
            return None;
        }
        let ratio = ((nr_throttled - t0) as f64 / periods as f64).min(1.0);
        self.threshold.observe(t, ratio)
    }
}

/// Configuration of a [`MemoryPressure`] detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryPressureConfig {
    /// Whose pressure ("host node-1", "cgroup /kubepods/burstable/pod…").
    pub subject: String,
    /// Fire when `some avg10` (percent of time some task stalled on memory) reaches this.
    #[serde(default = "default_psi_enter")]
    pub enter_percent: f64,
    /// Resolve when it falls to this or below.
    #[serde(default = "default_psi_exit")]
    pub exit_percent: f64,
    /// How long it must stay past a level before the state changes, in seconds.
    #[serde(default = "default_psi_min")]
    pub min_duration_secs: f64,
}

fn default_psi_enter() -> f64 {
    10.0
}
fn default_psi_exit() -> f64 {
    5.0
}
fn default_psi_min() -> f64 {
    30.0
}

impl MemoryPressureConfig {
    pub fn new(subject: impl Into<String>) -> Self {
        MemoryPressureConfig {
            subject: subject.into(),
            enter_percent: default_psi_enter(),
            exit_percent: default_psi_exit(),
            min_duration_secs: default_psi_min(),
        }
    }
}

/// Memory pressure: PSI `some avg10` (from `/proc/pressure/memory` or a cgroup's
/// `memory.pressure`) above a level with hysteresis.
#[derive(Clone, Debug)]
pub struct MemoryPressure {
    threshold: Threshold,
}

impl MemoryPressure {
    pub fn new(cfg: MemoryPressureConfig) -> Result<Self, DetectorConfigInvalid> {
        Ok(MemoryPressure {
            threshold: Threshold::new(ThresholdConfig {
                subject: format!("Memory pressure (PSI some avg10) of {}", cfg.subject),
                unit: "percent".into(),
                min_duration_secs: cfg.min_duration_secs,
                ..ThresholdConfig::new(cfg.enter_percent, cfg.exit_percent)
            })?,
        })
    }

    pub fn observe(&mut self, t: Timestamp, some_avg10_percent: f64) -> Option<Detection> {
        self.threshold.observe(t, some_avg10_percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::synth::{at, series};
    use proptest::prelude::*;

    const MIB: f64 = 1024.0 * 1024.0;

    #[test]
    fn memory_growth_speaks_of_the_limit() {
        let mut m = MemoryGrowth::new(MemoryGrowthConfig {
            subject: "pod shop/cart-7d9f".into(),
            limit_bytes: 512.0 * MIB,
            horizon_secs: 3600.0,
            window_secs: 3600.0,
        })
        .unwrap();
        // 200 MiB growing 4 MiB per minute, sampled every 15 s.
        let d: Vec<_> = (0..400)
            .filter_map(|i| m.observe(at(i, 15.0), 200.0 * MIB + 4.0 * MIB * i as f64 / 4.0))
            .collect();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].kind, DetectionKind::ForecastFiring);
        assert!(
            d[0].message.starts_with(
                "Memory of pod shop/cart-7d9f grows 4.0 MiB per minute and reaches its limit 512.0 MiB in about "
            ),
            "{}",
            d[0].message
        );
    }

    #[test]
    fn throttling_from_counters() {
        let mut c = CpuThrottling::new(CpuThrottlingConfig {
            min_duration_secs: 20.0,
            ..CpuThrottlingConfig::new("container cart")
        })
        .unwrap();
        let mut periods = 0u64;
        let mut throttled = 0u64;
        let mut out = Vec::new();
        for i in 0..20 {
            periods += 100;
            throttled += if i < 10 { 5 } else { 60 };
            out.extend(c.observe_counters(at(i, 10.0), periods, throttled));
        }
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].time, at(12, 10.0));
        assert_eq!(
            out[0].message,
            "CPU throttling of container cart is 60.0%, above 25.0% for 20 seconds."
        );
        // A reset counter and an idle interval are not samples.
        assert!(c.observe_counters(at(30, 10.0), 10, 10).is_none());
        assert!(c.observe_counters(at(31, 10.0), 10, 10).is_none());
    }

    #[test]
    fn pressure_resolves_below_exit() {
        let mut p = MemoryPressure::new(MemoryPressureConfig {
            min_duration_secs: 0.0,
            ..MemoryPressureConfig::new("host node-1")
        })
        .unwrap();
        assert!(p.observe(at(0, 10.0), 9.9).is_none());
        let d = p.observe(at(1, 10.0), 12.5).unwrap();
        assert_eq!(
            d.message,
            "Memory pressure (PSI some avg10) of host node-1 is 12.5%, above 10.0%."
        );
        assert!(p.observe(at(2, 10.0), 6.0).is_none());
        assert_eq!(
            p.observe(at(3, 10.0), 4.0).unwrap().kind,
            DetectionKind::ThresholdResolved
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        // Stated: default levels and 30 s minimum, samples every 10 s → fires within 4 samples
        // of a step to ≥ 10% + 6σ; silent on noise (σ = 1%) around 2%.
        #[test]
        fn pressure_fires_on_a_step_and_not_on_noise(seed: u64, at_i in 10usize..100, level in 16.0f64..100.0) {
            let mut p = MemoryPressure::new(MemoryPressureConfig::new("host")).unwrap();
            let s = series(200, 10.0, 1.0, seed, |i| if i >= at_i { level } else { 2.0 });
            let f: Vec<usize> = s.iter().enumerate().filter_map(|(i, (t, v))| p.observe(*t, *v).map(|_| i)).collect();
            prop_assert_eq!(f.len(), 1);
            prop_assert!(f[0] >= at_i && f[0] <= at_i + 4);
            let mut q = MemoryPressure::new(MemoryPressureConfig::new("host")).unwrap();
            let noise = series(200, 10.0, 1.0, seed, |_| 2.0);
            prop_assert!(noise.iter().all(|(t, v)| q.observe(*t, *v).is_none()));
        }

        // Stated: default levels and 60 s minimum, samples every 10 s → fires within 7 samples
        // of throttling ≥ 25% + 6σ; silent on noise (σ = 2%) around 5%.
        #[test]
        fn throttling_fires_on_a_step_and_not_on_noise(seed: u64, at_i in 10usize..100, level in 0.37f64..1.0) {
            let mut c = CpuThrottling::new(CpuThrottlingConfig::new("c")).unwrap();
            let s = series(200, 10.0, 0.02, seed, |i| if i >= at_i { level } else { 0.05 });
            let f: Vec<usize> = s.iter().enumerate().filter_map(|(i, (t, v))| c.observe(*t, *v).map(|_| i)).collect();
            prop_assert_eq!(f.len(), 1);
            prop_assert!(f[0] >= at_i && f[0] <= at_i + 7);
            let mut q = CpuThrottling::new(CpuThrottlingConfig::new("c")).unwrap();
            let noise = series(200, 10.0, 0.02, seed, |_| 0.05);
            prop_assert!(noise.iter().all(|(t, v)| q.observe(*t, *v).is_none()));
        }

        // Stated (Forecast): a working set growing to its limit within 0.8 × horizon fires
        // within one window of the growth starting; flat noise is silent.
        #[test]
        fn memory_growth_fires_on_growth_and_not_on_noise(seed: u64, at_i in 0usize..100) {
            let limit = 1024.0 * MIB;
            let mk = || MemoryGrowth::new(MemoryGrowthConfig {
                subject: "p".into(), limit_bytes: limit, horizon_secs: 3600.0, window_secs: 1800.0,
            }).unwrap();
            // From 300 MiB, +20 MiB/min: at limit 36 minutes after the start.
            let s = series(at_i + 250, 10.0, 2.0 * MIB, seed, |i| {
                if i < at_i { 300.0 * MIB } else { 300.0 * MIB + 20.0 * MIB * (i - at_i) as f64 / 6.0 }
            });
            let mut m = mk();
            let f: Vec<usize> = s.iter().enumerate().filter_map(|(i, (t, v))| m.observe(*t, *v).map(|_| i)).collect();
            prop_assert!(!f.is_empty());
            prop_assert!(f[0] >= at_i && f[0] <= at_i + 186, "{:?} at {}", f, at_i);
            let mut q = mk();
            let noise = series(400, 10.0, 2.0 * MIB, seed, |_| 300.0 * MIB);
            prop_assert!(noise.iter().all(|(t, v)| q.observe(*t, *v).is_none()));
        }
    }
}
