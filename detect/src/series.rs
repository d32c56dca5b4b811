//! Detectors over numeric series: thresholds with hysteresis, robust anomalies, forecasts.
//!
//! Entry types, one per question an operator asks of a series:
//! * [`Threshold`] — "is it above (or below) a level, for long enough?" Enter and exit levels
//!   (hysteresis) plus a minimum duration, so a noisy series does not flap.
//! * [`RobustAnomaly`] — "did it just change unusually?" A rolling median/MAD score that fires
//!   when `m` of the last `n` samples are more than `k` robust standard deviations away.
//! * [`Forecast`] — "when will it be full?" A Theil–Sen trend of usage against a capacity
//!   ("/var fills in about 40 minutes"), firing while the ETA is under a horizon.
//! * Thin helpers built from those: [`MemoryGrowth`] (working set against its limit),
//!   [`CpuThrottling`] (share of throttled CFS periods) and [`MemoryPressure`] (PSI
//!   `some avg10`).
//!
//! Every detector is built with `new(config)` (a serde config with `deny_unknown_fields`,
//! validated into the detector) and fed with `observe(t, value) -> Option<Detection>`. A
//! [`Detection`] names its [`DetectionKind`], the stated magnitude, one human sentence and the
//! samples around the change as evidence.
//!
//! Invariants shared by all detectors:
//! * Pure: no I/O, no clock reads. Time is the sample's timestamp; durations are differences of
//!   timestamps.
//! * Bounded memory per series: every buffer has a configured maximum length.
//! * Samples that are not finite (NaN, ±∞) or older than the previous sample are ignored (they
//!   change no state and never produce a detection).
//! * A detector reports transitions, not states: it fires once when a condition starts and
//!   (where there is an end) once when it ends.
//!
//! What each detector promises — the size of change it fires on, within what delay, and the noise
//! it stays silent on — is stated in its module and in docs/detectors.md, and checked by property
//! tests on synthetic series.

mod helpers;
mod robust;
mod threshold;
mod trend;

#[cfg(test)]
pub(crate) mod synth;

pub use helpers::{
    CpuThrottling, CpuThrottlingConfig, MemoryGrowth, MemoryGrowthConfig, MemoryPressure,
    MemoryPressureConfig,
};
pub use robust::{RobustAnomaly, RobustAnomalyConfig, Sides};
pub use threshold::{Direction, Threshold, ThresholdConfig, ThresholdState};
pub use trend::{Fit, Forecast, ForecastConfig, theil_sen};

use daytwo_model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// One sample of a series: its event time and value.
pub type Sample = (Timestamp, f64);

/// What a detection means to an operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionKind {
    /// The series went past its enter level and stayed there for the minimum duration.
    /// `magnitude` is the value at that moment.
    ThresholdFiring,
    /// A firing series came back past its exit level for the minimum duration.
    /// `magnitude` is the value at that moment.
    ThresholdResolved,
    /// The series departed from its recent median by more than `k` robust standard deviations
    /// in `m` of the last `n` samples. `magnitude` is the signed robust z-score of the latest
    /// sample (positive: above the median).
    Anomaly,
    /// At the current trend the series reaches its capacity within the horizon.
    /// `magnitude` is the estimated time to capacity in seconds (0 when already there).
    ForecastFiring,
    /// The trend no longer reaches capacity within the exit horizon. `magnitude` is the
    /// estimated time to capacity in seconds (`f64::INFINITY` when not growing).
    ForecastResolved,
}

impl DetectionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            DetectionKind::ThresholdFiring => "threshold_firing",
            DetectionKind::ThresholdResolved => "threshold_resolved",
            DetectionKind::Anomaly => "anomaly",
            DetectionKind::ForecastFiring => "forecast_firing",
            DetectionKind::ForecastResolved => "forecast_resolved",
        }
    }
}

/// One finding of a series detector.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Detection {
    pub kind: DetectionKind,
    /// The time of the sample that completed the condition.
    pub time: Timestamp,
    /// That sample's value (for a forecast: the fitted level at that time).
    pub value: f64,
    /// The stated magnitude; its meaning depends on `kind` (see [`DetectionKind`]).
    pub magnitude: f64,
    /// One human-readable sentence.
    pub message: String,
    /// The samples around the change, oldest first (at most the detector's evidence bound).
    pub evidence: Vec<Sample>,
}

/// A detector configuration that cannot work; names the field and what to change.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("invalid detector configuration: {field}: {reason}")]
pub struct DetectorConfigInvalid {
    /// The config field at fault (`enter`, `window_samples`, …).
    pub field: &'static str,
    /// What is wrong and what a valid value looks like.
    pub reason: String,
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> DetectorConfigInvalid {
    DetectorConfigInvalid {
        field,
        reason: reason.into(),
    }
}

pub(crate) fn require_finite(field: &'static str, v: f64) -> Result<(), DetectorConfigInvalid> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(invalid(field, format!("must be a finite number, got {v}")))
    }
}

/// Seconds between two timestamps (`b - a`), as f64.
pub(crate) fn secs_between(a: Timestamp, b: Timestamp) -> f64 {
    (b.unix_nanos() as f64 - a.unix_nanos() as f64) / 1e9
}

/// A FIFO of the most recent samples, never longer than its bound.
#[derive(Clone, Debug)]
pub(crate) struct Recent {
    buf: VecDeque<Sample>,
    max: usize,
}

impl Recent {
    pub(crate) fn new(max: usize) -> Self {
        Recent {
            buf: VecDeque::with_capacity(max.min(1024)),
            max,
        }
    }
    pub(crate) fn push(&mut self, s: Sample) {
        if self.max == 0 {
            return;
        }
        if self.buf.len() == self.max {
            self.buf.pop_front();
        }
        self.buf.push_back(s);
    }
    pub(crate) fn to_vec(&self) -> Vec<Sample> {
        self.buf.iter().copied().collect()
    }
}

/// Guards the shared input invariants: finite values, non-decreasing time.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Clock {
    last: Option<Timestamp>,
}

impl Clock {
    /// True when the sample may be used (and records its time).
    pub(crate) fn accept(&mut self, t: Timestamp, v: f64) -> bool {
        if !v.is_finite() || self.last.is_some_and(|l| t < l) {
            return false;
        }
        self.last = Some(t);
        true
    }
}

/// A value with its unit, the way an operator reads it.
pub(crate) fn format_value(v: f64, unit: &str) -> String {
    match unit {
        "bytes" => human_bytes(v),
        "ratio" => format!("{:.1}%", v * 100.0),
        "percent" => format!("{v:.1}%"),
        "seconds" => human_duration(v),
        "" => format_number(v),
        u => format!("{} {u}", format_number(v)),
    }
}

fn format_number(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// `67108864` → `64.0 MiB`.
pub(crate) fn human_bytes(b: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let neg = b < 0.0;
    let mut v = b.abs();
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    let sign = if neg { "-" } else { "" };
    if unit == 0 {
        format!("{sign}{v:.0} B")
    } else {
        format!("{sign}{v:.1} {}", UNITS[unit])
    }
}

/// `2400.0` → `40 minutes`; rounded the way people say it ("about 40 minutes").
pub(crate) fn human_duration(secs: f64) -> String {
    if !secs.is_finite() {
        return "never".to_string();
    }
    let s = secs.max(0.0);
    let plural = |n: f64, unit: &str| {
        let n = n.round() as i64;
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    };
    if s < 90.0 {
        plural(s, "second")
    } else if s < 90.0 * 60.0 {
        plural(s / 60.0, "minute")
    } else if s < 48.0 * 3600.0 {
        let h = s / 3600.0;
        if h < 10.0 {
            format!("{:.1} hours", h)
        } else {
            plural(h, "hour")
        }
    } else {
        plural(s / 86_400.0, "day")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_speech() {
        assert_eq!(human_duration(2400.0), "40 minutes");
        assert_eq!(human_duration(30.0), "30 seconds");
        assert_eq!(human_duration(60.0), "60 seconds");
        assert_eq!(human_duration(3.0 * 3600.0), "3.0 hours");
        assert_eq!(human_duration(3.0 * 86_400.0), "3 days");
        assert_eq!(human_duration(f64::INFINITY), "never");
    }

    #[test]
    fn values_carry_their_unit() {
        assert_eq!(format_value(67_108_864.0, "bytes"), "64.0 MiB");
        assert_eq!(format_value(0.25, "ratio"), "25.0%");
        assert_eq!(format_value(12.5, "percent"), "12.5%");
        assert_eq!(format_value(3.0, "req/s"), "3 req/s");
    }

    #[test]
    fn recent_is_bounded() {
        let mut r = Recent::new(3);
        for i in 0..10 {
            r.push((Timestamp::from_unix_secs(i), i as f64));
        }
        let v = r.to_vec();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0].1, 7.0);
    }

    #[test]
    fn clock_rejects_nan_and_time_travel() {
        let mut c = Clock::default();
        assert!(c.accept(Timestamp(10), 1.0));
        assert!(!c.accept(Timestamp(11), f64::NAN));
        assert!(!c.accept(Timestamp(9), 1.0));
        assert!(c.accept(Timestamp(10), 2.0));
    }
}
