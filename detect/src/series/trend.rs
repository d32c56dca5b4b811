//! Forecasts: when does a usage series reach its capacity? ("/var fills in about 40 minutes").
//!
//! Entry types: [`Forecast`], built from a [`ForecastConfig`], and [`theil_sen`], the robust
//! line fit it uses.
//!
//! The fit: over the samples of the last `window_secs`, the slope is the median of the slopes
//! of all sample pairs (Theil–Sen; up to 29% of the samples may be outliers without moving
//! it) and the level at the latest sample is the median of `y - slope·t`, plus `slope·t_now`.
//! The ETA is `(capacity - level) / slope` when the slope is positive, 0 when the level has
//! reached capacity, and infinite otherwise.
//!
//! States: quiet, and firing. Quiet → firing when the ETA drops below `horizon_secs`;
//! firing → quiet when it rises above `horizon_secs · exit_factor` (hysteresis: an ETA hovering
//! at the horizon does not flap). No forecast is made until the window holds `min_samples`
//! samples spanning at least `min_span_secs`.
//!
//! Bounded memory and work: at most `max_samples` samples are kept. Samples closer than
//! `window_secs / max_samples` to the previous kept one replace the newest kept sample, so the
//! fit always ends at the latest sample; each `observe` costs O(max_samples²).
//!
//! Stated sensitivity and delay (defaults: window 30 min, horizon 1 h, 64 samples):
//! * a **fill** (a step in the fill rate: a ramp in the level) whose true time to capacity is at
//!   most 0.8 × horizon when the window has seen it for its whole length fires no later than
//!   `window_secs` plus two sample intervals after the fill starts, and reports an ETA within
//!   ±25% of the truth once the window covers only the fill;
//! * a **spike** (one sample, of any size, even past capacity) never fires;
//! * **noise** of the same σ on a flat series with headroom ≥ 20σ never fires.
//!
//! A step in the level (a large file written at once) is not a trend: it may or may not fire
//! while it is inside the window, depending on the noise. Use a [`super::Threshold`] on the
//! level for "is it full now".

use super::{
    Clock, Detection, DetectionKind, DetectorConfigInvalid, Sample, format_value, human_duration,
    invalid, require_finite, secs_between,
};
use daytwo_model::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;

/// Configuration of a [`Forecast`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForecastConfig {
    /// What fills, used in the sentence ("/var on node-1").
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Unit of the values and of `capacity` (see `ThresholdConfig::unit`); `bytes` by default.
    #[serde(default = "default_unit")]
    pub unit: String,
    /// The level at which the resource is full, in the series' unit.
    pub capacity: f64,
    /// Fire when the ETA to capacity is below this many seconds.
    #[serde(default = "default_horizon")]
    pub horizon_secs: f64,
    /// Resolve when the ETA rises above `horizon_secs · exit_factor` (must be > 1).
    #[serde(default = "default_exit_factor")]
    pub exit_factor: f64,
    /// How far back the trend looks, in seconds.
    #[serde(default = "default_window")]
    pub window_secs: f64,
    /// At most this many samples are kept (and fitted) per window.
    #[serde(default = "default_max_samples")]
    pub max_samples: usize,
    /// No forecast with fewer samples than this in the window.
    #[serde(default = "default_min_samples")]
    pub min_samples: usize,
    /// No forecast until the window's samples span this many seconds (default: half the
    /// window).
    #[serde(default)]
    pub min_span_secs: Option<f64>,
    /// How many recent samples a detection carries as evidence.
    #[serde(default = "default_evidence")]
    pub evidence_samples: usize,
}

fn default_subject() -> String {
    "series".to_string()
}
fn default_unit() -> String {
    "bytes".to_string()
}
fn default_horizon() -> f64 {
    3600.0
}
fn default_exit_factor() -> f64 {
    1.5
}
fn default_window() -> f64 {
    1800.0
}
fn default_max_samples() -> usize {
    64
}
fn default_min_samples() -> usize {
    8
}
fn default_evidence() -> usize {
    32
}

impl ForecastConfig {
    /// A config with the defaults for everything but the capacity.
    pub fn new(capacity: f64) -> Self {
        ForecastConfig {
            subject: default_subject(),
            unit: default_unit(),
            capacity,
            horizon_secs: default_horizon(),
            exit_factor: default_exit_factor(),
            window_secs: default_window(),
            max_samples: default_max_samples(),
            min_samples: default_min_samples(),
            min_span_secs: None,
            evidence_samples: default_evidence(),
        }
    }
}

/// A trend fitted at one sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Fit {
    /// Units per second (Theil–Sen).
    pub slope_per_sec: f64,
    /// The fitted level at the latest sample.
    pub level: f64,
    /// Seconds until the fitted line reaches capacity (0 if there; ∞ if not growing).
    pub eta_secs: f64,
    /// Seconds covered by the fitted samples.
    pub span_secs: f64,
}

/// The Theil–Sen line through `(x, y)` points: `(slope, intercept)`, both medians. `scratch`
/// is reused between calls. None with fewer than two distinct `x`.
pub fn theil_sen(points: &[(f64, f64)], scratch: &mut Vec<f64>) -> Option<(f64, f64)> {
    scratch.clear();
    for (i, a) in points.iter().enumerate() {
        for b in &points[i + 1..] {
            let dx = b.0 - a.0;
            if dx != 0.0 {
                scratch.push((b.1 - a.1) / dx);
            }
        }
    }
    if scratch.is_empty() {
        return None;
    }
    let slope = median(scratch);
    scratch.clear();
    scratch.extend(points.iter().map(|(x, y)| y - slope * x));
    let intercept = median(scratch);
    Some((slope, intercept))
}

fn median(s: &mut [f64]) -> f64 {
    let n = s.len();
    let mid = n / 2;
    let (left, m, _) = s.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        (left.iter().copied().fold(f64::NEG_INFINITY, f64::max) + m) / 2.0
    }
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Forecast {
    cfg: ForecastConfig,
    samples: VecDeque<Sample>,
    firing: bool,
    last_fit: Option<Fit>,
    points: Vec<(f64, f64)>,
    scratch: Vec<f64>,
    clock: Clock,
}

impl Forecast {
    pub fn new(cfg: ForecastConfig) -> Result<Self, DetectorConfigInvalid> {
        require_finite("capacity", cfg.capacity)?;
        for (field, v) in [
            ("horizon_secs", cfg.horizon_secs),
            ("window_secs", cfg.window_secs),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return Err(invalid(field, format!("must be > 0 seconds, got {v}")));
            }
        }
        if !(cfg.exit_factor.is_finite() && cfg.exit_factor > 1.0) {
            return Err(invalid(
                "exit_factor",
                format!("must be > 1 for hysteresis, got {}", cfg.exit_factor),
            ));
        }
        if cfg.max_samples < 3 || cfg.max_samples > 4096 {
            return Err(invalid(
                "max_samples",
                format!("must be between 3 and 4096, got {}", cfg.max_samples),
            ));
        }
        if cfg.min_samples < 2 || cfg.min_samples > cfg.max_samples {
            return Err(invalid(
                "min_samples",
                format!(
                    "must be between 2 and max_samples ({}), got {}",
                    cfg.max_samples, cfg.min_samples
                ),
            ));
        }
        if let Some(s) = cfg.min_span_secs
            && !(s.is_finite() && s >= 0.0 && s <= cfg.window_secs)
        {
            return Err(invalid(
                "min_span_secs",
                format!(
                    "must be between 0 and window_secs ({}), got {s}",
                    cfg.window_secs
                ),
            ));
        }
        Ok(Forecast {
            samples: VecDeque::with_capacity(cfg.max_samples),
            points: Vec::with_capacity(cfg.max_samples),
            scratch: Vec::with_capacity(cfg.max_samples * cfg.max_samples / 2),
            firing: false,
            last_fit: None,
            clock: Clock::default(),
            cfg,
        })
    }

    pub fn config(&self) -> &ForecastConfig {
        &self.cfg
    }

    /// True while the ETA is (or was last seen) under the horizon.
    pub fn is_firing(&self) -> bool {
        self.firing
    }

    /// The fit made at the latest sample, if there was enough data.
    pub fn last_fit(&self) -> Option<Fit> {
        self.last_fit
    }

    /// Changes the capacity (a resized volume, a new memory limit); takes effect at the next
    /// sample.
    pub fn set_capacity(&mut self, capacity: f64) {
        if capacity.is_finite() {
            self.cfg.capacity = capacity;
        }
    }

    /// Feeds one sample; returns a detection when the forecast starts or stops firing.
    pub fn observe(&mut self, t: Timestamp, value: f64) -> Option<Detection> {
        if !self.clock.accept(t, value) {
            return None;
        }
        self.keep((t, value));
        self.last_fit = self.fit();
        let fit = self.last_fit?;
        let c = &self.cfg;
        let kind = if !self.firing && fit.eta_secs < c.horizon_secs {
            DetectionKind::ForecastFiring
        } else if self.firing && fit.eta_secs > c.horizon_secs * c.exit_factor {
            DetectionKind::ForecastResolved
        } else {
            return None;
        };
        self.firing = kind == DetectionKind::ForecastFiring;
        let skip = self.samples.len().saturating_sub(c.evidence_samples);
        Some(Detection {
            kind,
            time: t,
            value: fit.level,
            magnitude: fit.eta_secs,
            message: self.sentence(kind, &fit),
            evidence: self.samples.iter().skip(skip).copied().collect(),
        })
    }

    fn keep(&mut self, s: Sample) {
        let spacing = self.cfg.window_secs / self.cfg.max_samples as f64;
        let n = self.samples.len();
        let replace = n >= 2 && secs_between(self.samples[n - 2].0, s.0) < spacing;
        if replace {
            self.samples[n - 1] = s;
        } else {
            if n == self.cfg.max_samples {
                self.samples.pop_front();
            }
            self.samples.push_back(s);
        }
        while let Some(first) = self.samples.front()
            && secs_between(first.0, s.0) > self.cfg.window_secs
        {
            self.samples.pop_front();
        }
    }

    fn fit(&mut self) -> Option<Fit> {
        let c = &self.cfg;
        let (first, last) = (*self.samples.front()?, *self.samples.back()?);
        let span = secs_between(first.0, last.0);
        let min_span = c.min_span_secs.unwrap_or(c.window_secs / 2.0);
        if self.samples.len() < c.min_samples || span < min_span {
            return None;
        }
        self.points.clear();
        self.points.extend(
            self.samples
                .iter()
                .map(|(t, v)| (secs_between(first.0, *t), *v)),
        );
        let (slope, intercept) = theil_sen(&self.points, &mut self.scratch)?;
        let level = intercept + slope * span;
        let eta_secs = if level >= c.capacity {
            0.0
        } else if slope > 0.0 {
            (c.capacity - level) / slope
        } else {
            f64::INFINITY
        };
        Some(Fit {
            slope_per_sec: slope,
            level,
            eta_secs,
            span_secs: span,
        })
    }

    fn sentence(&self, kind: DetectionKind, fit: &Fit) -> String {
        let c = &self.cfg;
        let level = format_value(fit.level, &c.unit);
        let cap = format_value(c.capacity, &c.unit);
        let rate = format_value(fit.slope_per_sec * 60.0, &c.unit);
        let over = human_duration(fit.span_secs);
        match kind {
            DetectionKind::ForecastFiring if fit.eta_secs <= 0.0 => {
                format!("{} is full: {level} of {cap}.", c.subject)
            }
            DetectionKind::ForecastFiring => format!(
                "{} fills in about {}: {level} of {cap} used, growing {rate} per minute over the last {over}.",
                c.subject,
                human_duration(fit.eta_secs)
            ),
            _ if fit.eta_secs.is_finite() => format!(
                "{} no longer fills soon: about {} to go at {rate} per minute ({level} of {cap}).",
                c.subject,
                human_duration(fit.eta_secs)
            ),
            _ => format!(
                "{} stopped growing: {level} of {cap}, {rate} per minute over the last {over}.",
                c.subject
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::synth::{at, series};
    use proptest::prelude::*;

    const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

    fn var_forecast() -> Forecast {
        Forecast::new(ForecastConfig {
            subject: "/var on node-1".into(),
            ..ForecastConfig::new(100.0 * GIB)
        })
        .unwrap()
    }

    fn run(f: &mut Forecast, s: &[Sample]) -> Vec<(usize, Detection)> {
        s.iter()
            .enumerate()
            .filter_map(|(i, (t, v))| f.observe(*t, *v).map(|d| (i, d)))
            .collect()
    }

    #[test]
    fn theil_sen_ignores_outliers() {
        let mut pts: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, 3.0 + 2.0 * i as f64)).collect();
        pts[5].1 = 1e9;
        pts[12].1 = -1e9;
        let (m, b) = theil_sen(&pts, &mut Vec::new()).unwrap();
        assert!((m - 2.0).abs() < 1e-9 && (b - 3.0).abs() < 1e-9, "{m} {b}");
        assert!(theil_sen(&[(1.0, 1.0), (1.0, 2.0)], &mut Vec::new()).is_none());
    }

    #[test]
    fn says_when_var_fills() {
        // 50 GiB used, filling 20 GiB per 30 minutes, sampled every 10 s.
        let rate = 20.0 * GIB / 1800.0;
        let s: Vec<_> = (0..400)
            .map(|i| (at(i, 10.0), 50.0 * GIB + rate * 10.0 * i as f64))
            .collect();
        let mut f = var_forecast();
        let d = run(&mut f, &s);
        assert_eq!(d.len(), 1);
        let (i, det) = &d[0];
        // The first forecast is made once the window spans 15 minutes (sample 90): 50 + 10 GiB
        // used, 40 GiB to go at 20 GiB per 30 minutes = 60 minutes, not below the horizon; the
        // next sample is.
        assert_eq!(*i, 91);
        assert_eq!(det.kind, DetectionKind::ForecastFiring);
        assert!((det.magnitude - 3590.0).abs() < 1.0, "{}", det.magnitude);
        assert_eq!(
            det.message,
            "/var on node-1 fills in about 60 minutes: 60.1 GiB of 100.0 GiB used, growing 682.7 MiB per minute over the last 15 minutes."
        );
        assert!(det.evidence.len() <= 32);
        assert_eq!(det.evidence.last().unwrap().0, s[91].0);
        assert!(f.samples.len() <= 64);
    }

    #[test]
    fn resolves_with_hysteresis_when_the_fill_stops() {
        let rate = 40.0 * GIB / 3600.0;
        let mut s: Vec<_> = (0..200)
            .map(|i| (at(i, 10.0), 50.0 * GIB + rate * 10.0 * i as f64))
            .collect();
        let top = s.last().unwrap().1;
        s.extend((200..600).map(|i| (at(i, 10.0), top)));
        let mut f = var_forecast();
        let d = run(&mut f, &s);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].1.kind, DetectionKind::ForecastFiring);
        assert_eq!(d[1].1.kind, DetectionKind::ForecastResolved);
        assert!(d[1].1.magnitude > 5400.0);
        assert!(!f.is_firing());
    }

    #[test]
    fn full_is_said_plainly() {
        let mut f = var_forecast();
        let s: Vec<_> = (0..100).map(|i| (at(i, 10.0), 100.0 * GIB)).collect();
        let d = run(&mut f, &s);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].1.magnitude, 0.0);
        assert_eq!(
            d[0].1.message,
            "/var on node-1 is full: 100.0 GiB of 100.0 GiB."
        );
    }

    #[test]
    fn rejects_bad_configs() {
        let mut c = ForecastConfig::new(1.0);
        c.exit_factor = 1.0;
        assert_eq!(Forecast::new(c).unwrap_err().field, "exit_factor");
        let mut c = ForecastConfig::new(1.0);
        c.min_samples = 100;
        assert_eq!(Forecast::new(c).unwrap_err().field, "min_samples");
        assert!(Forecast::new(ForecastConfig::new(f64::INFINITY)).is_err());
    }

    // Property tests: capacity 100 (units), samples every 10 s, noise σ = 0.1 on a level of 40
    // (headroom 600σ); horizon 1 h, window 30 min.
    const SIGMA: f64 = 0.1;
    const CAP: f64 = 100.0;
    const L0: f64 = 40.0;
    const STEP: f64 = 10.0;
    const WINDOW_SAMPLES: usize = 180;
    const SPACING_SAMPLES: usize = 3; // 1800 s / 64 = 28 s

    fn forecast() -> Forecast {
        Forecast::new(ForecastConfig {
            unit: String::new(),
            ..ForecastConfig::new(CAP)
        })
        .unwrap()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn fires_on_a_fill_within_one_window(seed: u64, at_i in 0usize..300, eta_frac in 0.3f64..0.8) {
            // The fill rate puts the true ETA at eta_frac × horizon one window after the start.
            let level_then = |rate: f64| L0 + rate * 1800.0;
            // Solve (CAP - (L0 + r·1800)) / r = eta → r = (CAP - L0) / (eta + 1800).
            let eta = eta_frac * 3600.0;
            let rate = (CAP - L0) / (eta + 1800.0);
            prop_assume!(level_then(rate) < CAP);
            let s = series(at_i + WINDOW_SAMPLES + 60, STEP, SIGMA, seed, |i| {
                if i < at_i { L0 } else { (L0 + rate * STEP * (i - at_i) as f64).min(CAP) }
            });
            let mut f = forecast();
            let d = run(&mut f, &s);
            prop_assert!(!d.is_empty());
            let (i, det) = &d[0];
            prop_assert_eq!(det.kind, DetectionKind::ForecastFiring);
            prop_assert!(*i >= at_i, "fired at {} before the fill at {}", i, at_i);
            prop_assert!(*i <= at_i + WINDOW_SAMPLES + 2 * SPACING_SAMPLES, "fired at {} for a fill at {}", i, at_i);
            // Once the window covers only the fill, the ETA is within ±25%.
            let j = at_i + WINDOW_SAMPLES + SPACING_SAMPLES;
            let mut g = forecast();
            for (t, v) in &s[..=j] { g.observe(*t, *v); }
            let fit = g.last_fit().unwrap();
            let truth = (CAP - (L0 + rate * STEP * (j - at_i) as f64)) / rate;
            prop_assert!((fit.eta_secs / truth - 1.0).abs() < 0.25, "eta {} vs {}", fit.eta_secs, truth);
        }

        #[test]
        fn silent_on_a_spike_of_any_size(seed: u64, at_i in 0usize..400, size in 1.0f64..1000.0) {
            let s = series(600, STEP, SIGMA, seed, |i| if i == at_i { L0 + size } else { L0 });
            prop_assert!(run(&mut forecast(), &s).is_empty());
        }

        #[test]
        fn silent_on_noise_of_the_same_sigma(seed: u64) {
            let s = series(600, STEP, SIGMA, seed, |_| L0);
            prop_assert!(run(&mut forecast(), &s).is_empty());
        }

        #[test]
        fn silent_on_noise_with_the_least_headroom_stated(seed: u64, sigma in 0.01f64..3.0) {
            // Headroom of exactly 20σ.
            let s = series(600, STEP, sigma, seed, |_| CAP - 20.0 * sigma);
            prop_assert!(run(&mut forecast(), &s).is_empty());
        }
    }
}
