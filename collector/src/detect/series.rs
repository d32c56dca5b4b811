//! One detected series: a [`RobustAnomaly`] sized to the series' sampling interval, plus the
//! measurement of each episode it fires on.
//!
//! The detector decides *that* something changed; the episode measurement says *how much*:
//! every sample from the onset (the first flagged sample of the confirming run) until the
//! horizon is scored against the baseline (median, robust σ) frozen just before the onset, so a
//! step or a ramp is measured at its full size rather than at the third flagged sample.

use daytwo_detect::series::{RobustAnomaly, RobustAnomalyConfig, Sample, Sides};
use daytwo_model::{Attributes, Entity, Evidence, Severity, Signal, Timestamp, stable_id};
use std::collections::VecDeque;
use std::sync::Arc;

/// How detection adapts to a series' sampling interval. One configuration serves every
/// series: the numbers are durations, converted to samples once the interval is known.
#[derive(Clone, Debug)]
pub struct SeriesTuning {
    /// The baseline spans this long (in samples: clamped to `window_min..=window_max`).
    pub window_secs: f64,
    pub window_min: usize,
    pub window_max: usize,
    /// No sample is scored before the baseline spans this long (clamped to `warmup_min..=30`).
    pub warmup_secs: f64,
    pub warmup_min: usize,
    /// An episode is measured for this long after it fires (clamped to `horizon_min..=60`
    /// samples) before its signal is emitted.
    pub horizon_secs: f64,
    pub horizon_min: usize,
    /// Robust z-score beyond which a sample is flagged.
    pub k: f64,
    /// `m` flagged samples among the last `n` confirm a change.
    pub m: usize,
    pub n: usize,
    /// Floor of the robust σ, as a share of the series' typical level, so a series that sat on
    /// one value does not score every small move as infinitely unusual.
    pub relative_floor: f64,
    /// z-scores are capped here (a series that was exactly constant would score ±∞).
    pub max_sigma: f64,
}

impl Default for SeriesTuning {
    fn default() -> Self {
        SeriesTuning {
            window_secs: 600.0,
            window_min: 10,
            window_max: 120,
            warmup_secs: 60.0,
            warmup_min: 5,
            horizon_secs: 120.0,
            horizon_min: 3,
            k: 5.0,
            m: 3,
            n: 5,
            relative_floor: 0.01,
            max_sigma: 1e4,
        }
    }
}

fn samples(secs: f64, interval: f64, lo: usize, hi: usize) -> usize {
    ((secs / interval).round() as usize).clamp(lo, hi.max(lo))
}

/// The signal name for a series of derived metric `metric` (span-derived or plain).
pub fn anomaly_signal_name(metric: &str) -> &'static str {
    if metric.starts_with("span.") {
        if metric.contains("duration") {
            super::LATENCY_ANOMALY
        } else if metric.contains("error") {
            super::ERROR_ANOMALY
        } else if metric == super::spans::FANOUT_METRIC {
            super::FANOUT_ANOMALY
        } else {
            super::THROUGHPUT_ANOMALY
        }
    } else {
        super::METRIC_ANOMALY
    }
}

/// An episode being measured.
#[derive(Debug)]
struct Episode {
    onset: Timestamp,
    fired: Timestamp,
    fired_value: f64,
    median: f64,
    sigma: f64,
    /// z-scores of the samples from the onset on, against the frozen baseline.
    zs: Vec<f64>,
    up: bool,
    remaining: usize,
    evidence: Vec<Sample>,
}

pub(super) struct Series {
    key: String,
    signal: &'static str,
    resource: Arc<Attributes>,
    entity: Entity,
    metric: String,
    unit: String,
    point_attrs: Attributes,
    tuning: SeriesTuning,
    /// Samples kept until the interval is known (the second distinct timestamp).
    warm: Vec<Sample>,
    det: Option<RobustAnomaly>,
    horizon: usize,
    floor: f64,
    /// The last `n` (time, z) pairs, z against the baseline before each sample.
    recent: VecDeque<(Timestamp, f64)>,
    /// The last samples, for evidence.
    tail: VecDeque<Sample>,
    episode: Option<Episode>,
    last_seen: Timestamp,
    /// The scale the series is scored on.
    scale: Scale,
    /// Steps left in which a settling baseline may still drop a leading run of samples from
    /// an earlier episode (see [`Series::settle`]); 0 once the baseline is settled.
    settling: usize,
}

/// The scale a series is scored on, so that its z-scores are honest about its noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Scale {
    /// The value itself; the σ floor is `relative_floor` of the series' first level.
    Linear,
    /// `ln(value + offset)`: for latencies, whose changes are multiplicative. The σ floor is
    /// `relative_floor` in log units (a 1% change).
    Log { offset: f64 },
    /// A rate of events counted over `per_secs`: scored on the Anscombe transform of the count,
    /// `2·sqrt(count + 3/8)`, whose noise is ≈ 1 for Poisson counts at any level. The σ floor
    /// is 1, so a handful of calls more or less in a quiet service is not a 100σ event.
    Count { per_secs: f64 },
}

impl Scale {
    fn apply(self, v: f64) -> Option<f64> {
        match self {
            Scale::Linear => Some(v),
            Scale::Log { offset } => (v + offset > 0.0).then(|| (v + offset).ln()),
            Scale::Count { per_secs } => (v >= 0.0).then(|| 2.0 * (v * per_secs + 0.375).sqrt()),
        }
    }

    fn invert(self, v: f64) -> f64 {
        match self {
            Scale::Linear => v,
            Scale::Log { offset } => v.exp() - offset,
            Scale::Count { per_secs } => ((v / 2.0).powi(2) - 0.375).max(0.0) / per_secs,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Scale::Linear => "linear",
            Scale::Log { .. } => "log",
            Scale::Count { .. } => "count",
        }
    }
}

impl Series {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
        key: String,
        signal: &'static str,
        resource: Arc<Attributes>,
        entity: Entity,
        metric: String,
        unit: String,
        point_attrs: Attributes,
        tuning: SeriesTuning,
    ) -> Series {
        Series {
            key,
            signal,
            resource,
            entity,
            metric,
            unit,
            point_attrs,
            tuning,
            warm: Vec::new(),
            det: None,
            horizon: 0,
            floor: 0.0,
            recent: VecDeque::new(),
            tail: VecDeque::new(),
            episode: None,
            last_seen: Timestamp(i64::MIN),
            scale: Scale::Linear,
            settling: 0,
        }
    }

    /// Scores the series on another scale (see [`Scale`]). A log scale suits latencies: a
    /// drop from 125 ms to 0.5 ms is as unusual as a rise from 125 ms to 30 s, yet on a linear
    /// scale the drop can never be more than `median / σ` away. A count scale suits call rates.
    pub(super) fn with_scale(mut self, scale: Scale) -> Series {
        self.scale = scale;
        self
    }

    /// A value on the series' own scale back in its unit.
    fn unscaled(&self, v: f64) -> f64 {
        self.scale.invert(v)
    }

    pub(super) fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    /// Feeds one sample; returns a signal when an episode's measurement is complete.
    pub(super) fn observe(&mut self, t: Timestamp, v: f64) -> Option<Signal> {
        if !v.is_finite() || t < self.last_seen {
            return None;
        }
        let v = self.scale.apply(v)?;
        self.last_seen = t;
        if self.det.is_none() {
            self.warm.push((t, v));
            let first = self.warm[0].0;
            let &(t2, _) = self.warm.iter().find(|(ti, _)| *ti > first)?;
            let interval = (t2.0 - first.0) as f64 / 1e9;
            self.start(interval);
            let warm = std::mem::take(&mut self.warm);
            let mut out = None;
            for (t, v) in warm {
                if let Some(s) = self.step(t, v) {
                    out = Some(s);
                }
            }
            return out;
        }
        self.step(t, v)
    }

    fn start(&mut self, interval: f64) {
        let tu = &self.tuning;
        let window = samples(tu.window_secs, interval, tu.window_min, tu.window_max);
        let warmup = samples(tu.warmup_secs, interval, tu.warmup_min, 30).min(window);
        self.horizon = samples(tu.horizon_secs, interval, tu.horizon_min, 60);
        self.floor = self.floor_for(self.warm.iter().map(|(_, v)| *v));
        // A baseline settles during its first `warmup` scored samples (see `settle`).
        self.settling = warmup;
        let det = RobustAnomaly::new(RobustAnomalyConfig {
            subject: self.metric.clone(),
            unit: String::new(),
            window_samples: window,
            min_samples: warmup,
            k: tu.k,
            m: tu.m,
            n: tu.n,
            sides: Sides::Both,
            min_scale: self.floor,
            evidence_samples: 32,
        })
        .expect("the tuning always gives a valid config");
        self.det = Some(det);
    }

    /// The σ floor for a series whose typical samples are `level_of` (see [`Scale`]).
    fn floor_for(&self, level_of: impl Iterator<Item = f64>) -> f64 {
        let (sum, n) = level_of.fold((0.0, 0usize), |(s, n), v| (s + v.abs(), n + 1));
        match self.scale {
            Scale::Linear => (sum / n.max(1) as f64 * self.tuning.relative_floor).max(1e-12),
            Scale::Log { .. } => self.tuning.relative_floor,
            Scale::Count { .. } => 1.0,
        }
    }

    /// A young baseline that begins with the tail of an earlier episode drops that tail.
    ///
    /// While the baseline settles (its first `warmup` scored samples, before any episode),
    /// when the window splits into an older run A and a newer run B (at least `m` samples,
    /// more than A's, every one within `k`·σ of B's median; σ: B's robust σ with the series'
    /// floor) such that every sample of A lies more than `k`·σ *above* B's median, A was the
    /// end of something else (the recovery from an earlier fault) and B is the series'
    /// normal: the baseline restarts from B, with a σ floor of at least the spread B had.
    /// Without this, a 1-minute series whose first samples still carry an earlier fault has
    /// those in most of its 5-sample baseline, and the next fault's samples turn the median
    /// to their own level before they can confirm. Only the higher side is taken for a
    /// fault's tail (faults push latency, load and errors up, as the ranker assumes); a newer
    /// run no longer than the older one is never taken for the normal (that is a change, the
    /// detector's business); and a settled baseline is never trimmed. The measured strength
    /// of a later episode still counts the dropped samples in its spread floor, so a series
    /// that has been at the fault's level before is not called a 600σ event.
    fn settle(&mut self) {
        if self.settling == 0 || self.episode.is_some() {
            return;
        }
        let Some(det) = self.det.as_mut() else {
            return;
        };
        if det.baseline().is_none() {
            return;
        }
        let w: Vec<f64> = det.window().collect();
        let cfg = det.config().clone();
        self.settling -= 1;
        let (k, m) = (self.tuning.k, self.tuning.m);
        let mut cut = None;
        for i in (1..w.len()).rev() {
            let (a, b) = w.split_at(i);
            if b.len() < m || b.len() <= a.len() {
                continue;
            }
            let (med, mad) = median_mad(b);
            let sigma = (1.4826 * mad).max(self.floor_for(b.iter().copied()));
            let settled = b.iter().all(|x| (x - med).abs() <= k * sigma);
            if settled && a.iter().all(|x| *x > med + k * sigma) {
                cut = Some(i);
                break;
            }
        }
        let Some(i) = cut else {
            return;
        };
        let b = &w[i..];
        // A few samples' MAD is often 0: the new floor is also the spread B actually had.
        let med = median_mad(b).0;
        let spread = 1.2533 * b.iter().map(|x| (x - med).abs()).sum::<f64>() / b.len() as f64;
        let floor = self.floor_for(b.iter().copied()).max(spread);
        let mut cfg = cfg;
        cfg.min_samples = b.len().clamp(3, cfg.window_samples);
        cfg.min_scale = floor;
        let Ok(fresh) = RobustAnomaly::seeded(cfg, b.iter().copied()) else {
            return;
        };
        self.det = Some(fresh);
        self.floor = floor;
        self.recent.clear();
    }

    fn step(&mut self, t: Timestamp, v: f64) -> Option<Signal> {
        self.settle();
        let n = self.tuning.n;
        let max = self.tuning.max_sigma;
        let det = self.det.as_mut()?;
        let baseline = det.baseline();
        let z = baseline
            .map(|(med, sigma)| ((v - med) / sigma.max(self.floor)).clamp(-max, max))
            .unwrap_or(0.0);
        self.recent.push_back((t, z));
        if self.recent.len() > n {
            self.recent.pop_front();
        }
        self.tail.push_back((t, v));
        if self.tail.len() > 16 {
            self.tail.pop_front();
        }
        let fired = det.observe(t, v);
        let mut out = None;
        if let Some(ep) = self.episode.as_mut() {
            ep.zs
                .push(((v - ep.median) / ep.sigma.max(self.floor)).clamp(-max, max));
            if ep.evidence.len() < 48 {
                ep.evidence.push((t, v));
            }
            ep.remaining = ep.remaining.saturating_sub(1);
            if ep.remaining == 0 {
                out = self.finish();
            }
        }
        if let Some(d) = fired
            && let Some((median, sigma)) = baseline
        {
            self.settling = 0;
            if self.episode.is_some() {
                out = self.finish();
            }
            let up = d.magnitude > 0.0;
            let k = self.tuning.k;
            let flagged = |z: f64| if up { z > k } else { z < -k };
            let onset_idx = self
                .recent
                .iter()
                .position(|(_, z)| flagged(*z))
                .unwrap_or(self.recent.len() - 1);
            let episode_len = self.recent.len() - onset_idx;
            let onset = self.recent[onset_idx].0;
            // The episode is measured against the baseline's σ, but never against less than
            // the spread the samples just before the onset actually had (see `spread_floor`).
            // The window now ends with the episode's samples; the rest is the baseline.
            // Only a short baseline needs it (with `SHORT_BASELINE` samples or more, the MAD
            // is a reliable estimate of σ), and span-derived series, which are statistics of
            // a few spans per bucket and often quantised (a mean of 5 small counts).
            let window_len = self.det.as_ref().map_or(0, |d| d.window().len());
            let floor2 = if window_len < SHORT_BASELINE || self.metric.starts_with("span.") {
                let pre: Vec<f64> = self
                    .tail
                    .iter()
                    .take(self.tail.len().saturating_sub(episode_len))
                    .map(|(_, v)| *v)
                    .collect();
                spread_floor(&pre, median)
            } else {
                0.0
            };
            let sigma = sigma.max(self.floor).max(floor2);
            let zs: Vec<f64> = self
                .tail
                .iter()
                .skip(self.tail.len().saturating_sub(episode_len))
                .map(|(_, x)| ((x - median) / sigma).clamp(-max, max))
                .collect();
            let before = self.tail.len().saturating_sub(zs.len() + 12);
            self.episode = Some(Episode {
                onset,
                fired: t,
                fired_value: v,
                median,
                sigma,
                zs,
                up,
                remaining: self.horizon,
                evidence: self.tail.iter().skip(before).copied().collect(),
            });
        }
        out
    }

    /// Emits the episode being measured, if any.
    pub(super) fn finish(&mut self) -> Option<Signal> {
        let ep = self.episode.take()?;
        let sign = if ep.up { 1.0 } else { -1.0 };
        // Only the samples on the episode's side count: a spike back through the median
        // is not part of the change.
        let mut on_side: Vec<f64> = ep.zs.iter().map(|z| (z * sign).max(0.0)).collect();
        on_side.sort_by(f64::total_cmp);
        let peak = on_side.last().copied().unwrap_or(0.0);
        let sustained = if on_side.is_empty() {
            0.0
        } else {
            on_side[on_side.len() / 2]
        };
        let direction = if ep.up { "up" } else { "down" };
        let mut attributes = self.point_attrs.clone();
        let num = |x: f64| {
            serde_json::Number::from_f64(x)
                .map(serde_json::Value::Number)
                .unwrap_or(serde_json::Value::Null)
        };
        attributes.insert("metric.name".into(), self.metric.clone().into());
        if !self.unit.is_empty() {
            attributes.insert("metric.unit".into(), self.unit.clone().into());
        }
        attributes.insert("daytwo.anomaly.direction".into(), direction.into());
        attributes.insert("daytwo.anomaly.sigma".into(), num(sign * peak));
        attributes.insert(
            "daytwo.anomaly.sustained_sigma".into(),
            num(sign * sustained),
        );
        attributes.insert(
            "daytwo.anomaly.baseline".into(),
            num(self.unscaled(ep.median)),
        );
        attributes.insert("daytwo.anomaly.baseline_sigma".into(), num(ep.sigma));
        attributes.insert(
            "daytwo.anomaly.value".into(),
            num(self.unscaled(ep.fired_value)),
        );
        attributes.insert("daytwo.anomaly.scale".into(), self.scale.name().into());
        attributes.insert(
            "daytwo.anomaly.detected_at".into(),
            ep.fired.to_string().into(),
        );
        attributes.insert("daytwo.anomaly.samples".into(), (ep.zs.len() as i64).into());
        let who = self
            .entity
            .attributes
            .get("service.name")
            .and_then(|v| v.as_str())
            .unwrap_or(&self.entity.name)
            .to_string();
        let message = format!(
            "{} of {who} went {direction} from its median {} to {} ({:.1}σ at peak, {:.1}σ sustained), starting {}.",
            self.metric,
            short(self.unscaled(ep.median)),
            short(self.unscaled(ep.fired_value)),
            peak,
            sustained,
            ep.onset
        );
        let evidence = ep
            .evidence
            .iter()
            .map(|(t, v)| Evidence {
                time: *t,
                kind: "sample".into(),
                text: format!("{} {}", self.metric, short(self.unscaled(*v))),
            })
            .collect();
        Some(Signal {
            id: stable_id(&["detect/v1", &self.key, &ep.onset.0.to_string()]),
            name: self.signal.to_string(),
            time: ep.onset,
            severity: Severity::Warning,
            entity: self.entity.clone(),
            resource: (*self.resource).clone(),
            attributes,
            message,
            evidence,
        })
    }
}

/// Baselines shorter than this get the [`spread_floor`]: the MAD of a handful of samples is
/// itself too uncertain to trust alone.
pub(super) const SHORT_BASELINE: usize = 30;

/// A floor for the σ an episode is measured with: 1.2533 × the mean absolute deviation from
/// the baseline median of the (up to 16) samples before the onset, the largest tenth (at least
/// one) left out.
/// Applied when the baseline window is short (fewer than [`SHORT_BASELINE`] samples).
///
/// The detector's robust σ (1.4826 × MAD) is right for Gaussian noise, where this floor is
/// ≈ 0.8σ and changes nothing. But when more than half of a short baseline sat on one value
/// and the rest moved (a quantised latency quantile, a node level flipping between two
/// values, a quiet service's counts), the MAD is 0 or tiny while the series plainly varies,
/// and an excursion no larger than the ones before would be measured as hundreds of σ. The
/// detector still decides *that* the series changed (it needs the MAD's robustness to the
/// change itself); this only keeps the measured *strength* honest.
pub(super) fn spread_floor(pre: &[f64], median: f64) -> f64 {
    if pre.is_empty() {
        return 0.0;
    }
    let mut dev: Vec<f64> = pre.iter().map(|x| (x - median).abs()).collect();
    dev.sort_by(f64::total_cmp);
    // The largest tenth, and at least the largest one from three samples on: a short
    // baseline may begin with the tail of an earlier incident.
    let drop = if dev.len() >= 3 {
        (dev.len() / 10).max(1)
    } else {
        0
    };
    let keep = dev.len() - drop;
    1.2533 * dev[..keep].iter().sum::<f64>() / keep as f64
}

/// The median and the median absolute deviation of a non-empty slice.
fn median_mad(xs: &[f64]) -> (f64, f64) {
    let mid = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        }
    };
    let mut v = xs.to_vec();
    let med = mid(&mut v);
    let mut dev: Vec<f64> = xs.iter().map(|x| (x - med).abs()).collect();
    (med, mid(&mut dev))
}

/// A number the way an operator reads it in a sentence.
fn short(v: f64) -> String {
    if v != 0.0 && (v.abs() >= 1e6 || v.abs() < 1e-3) {
        format!("{v:.3e}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}
