//! A threshold with hysteresis and a minimum duration: the detector that does not flap.
//!
//! Entry type: [`Threshold`], built from a [`ThresholdConfig`]. States: [`ThresholdState::Ok`]
//! and [`ThresholdState::Firing`]; `observe` returns a detection only on a transition.
//!
//! For `direction: above` (the default): from `ok`, every sample `>= enter` extends a run; the
//! first sample at which the run has lasted `min_duration_secs` (its time minus the run's first
//! sample's time) fires. From `firing`, every sample `<= exit` extends a run the same way and
//! resolves. A sample that breaks a run resets it. `exit < enter` is required, so between two
//! transitions the series has crossed the whole band and held there: noise inside the band, or
//! crossing one edge back and forth, never flaps. `direction: below` mirrors all comparisons.
//!
//! Stated sensitivity and delay: a step, ramp or spike that brings the series to `>= enter`
//! and keeps it there for `min_duration_secs` fires at the first sample at or after
//! `min_duration_secs` past the first sample at `>= enter`, so within `min_duration_secs` plus one
//! sample interval; a spike shorter than `min_duration_secs` never fires; noise whose peaks stay
//! below `enter` never fires.

use super::{
    Clock, Detection, DetectionKind, DetectorConfigInvalid, Recent, format_value, human_duration,
    invalid, require_finite, secs_between,
};
use daytwo_model::Timestamp;
use serde::{Deserialize, Serialize};

/// Which side of the levels is the problem.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// High values are bad (usage, latency, throttling): fires at `>= enter`.
    #[default]
    Above,
    /// Low values are bad (free space, throughput): fires at `<= enter`.
    Below,
}

/// Configuration of a [`Threshold`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdConfig {
    /// What the series measures, used in the sentence ("CPU throttling of /kubepods/pod1").
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Unit of the values: `bytes`, `ratio` (0..1, shown as %), `percent`, `seconds`, or any
    /// other text appended to the number. Empty for none.
    #[serde(default)]
    pub unit: String,
    /// The level at which the condition starts (inclusive).
    pub enter: f64,
    /// The level at which it ends (inclusive); must be strictly on the good side of `enter`.
    pub exit: f64,
    /// Which side of the levels is bad.
    #[serde(default)]
    pub direction: Direction,
    /// How long the series must stay past a level before the state changes, in seconds.
    #[serde(default)]
    pub min_duration_secs: f64,
    /// How many recent samples a detection carries as evidence.
    #[serde(default = "default_evidence")]
    pub evidence_samples: usize,
}

fn default_subject() -> String {
    "series".to_string()
}
fn default_evidence() -> usize {
    16
}

impl ThresholdConfig {
    /// A config with the defaults for everything but the levels.
    pub fn new(enter: f64, exit: f64) -> Self {
        ThresholdConfig {
            subject: default_subject(),
            unit: String::new(),
            enter,
            exit,
            direction: Direction::Above,
            min_duration_secs: 0.0,
            evidence_samples: default_evidence(),
        }
    }
}

/// Where a [`Threshold`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThresholdState {
    /// The series is on the good side (or has not stayed past `enter` long enough).
    Ok,
    /// The series went past `enter` for the minimum duration and has not come back past `exit`.
    Firing,
}

/// See the module docs.
#[derive(Clone, Debug)]
pub struct Threshold {
    cfg: ThresholdConfig,
    state: ThresholdState,
    /// First sample time of the current run past the level that would change the state.
    run_since: Option<Timestamp>,
    recent: Recent,
    clock: Clock,
}

impl Threshold {
    pub fn new(cfg: ThresholdConfig) -> Result<Self, DetectorConfigInvalid> {
        require_finite("enter", cfg.enter)?;
        require_finite("exit", cfg.exit)?;
        let banded = match cfg.direction {
            Direction::Above => cfg.exit < cfg.enter,
            Direction::Below => cfg.exit > cfg.enter,
        };
        if !banded {
            return Err(invalid(
                "exit",
                format!(
                    "must be strictly on the good side of enter ({}) for hysteresis; got {} \
                     (direction {:?})",
                    cfg.enter, cfg.exit, cfg.direction
                ),
            ));
        }
        if !(cfg.min_duration_secs.is_finite() && cfg.min_duration_secs >= 0.0) {
            return Err(invalid(
                "min_duration_secs",
                format!("must be >= 0, got {}", cfg.min_duration_secs),
            ));
        }
        Ok(Threshold {
            recent: Recent::new(cfg.evidence_samples),
            cfg,
            state: ThresholdState::Ok,
            run_since: None,
            clock: Clock::default(),
        })
    }

    pub fn state(&self) -> ThresholdState {
        self.state
    }

    pub fn config(&self) -> &ThresholdConfig {
        &self.cfg
    }

    /// Feeds one sample; returns a detection when the state changes.
    pub fn observe(&mut self, t: Timestamp, value: f64) -> Option<Detection> {
        if !self.clock.accept(t, value) {
            return None;
        }
        self.recent.push((t, value));
        let past = match (self.state, self.cfg.direction) {
            (ThresholdState::Ok, Direction::Above) => value >= self.cfg.enter,
            (ThresholdState::Ok, Direction::Below) => value <= self.cfg.enter,
            (ThresholdState::Firing, Direction::Above) => value <= self.cfg.exit,
            (ThresholdState::Firing, Direction::Below) => value >= self.cfg.exit,
        };
        if !past {
            self.run_since = None;
            return None;
        }
        let since = *self.run_since.get_or_insert(t);
        let held = secs_between(since, t);
        if held < self.cfg.min_duration_secs {
            return None;
        }
        self.run_since = None;
        let (kind, next) = match self.state {
            ThresholdState::Ok => (DetectionKind::ThresholdFiring, ThresholdState::Firing),
            ThresholdState::Firing => (DetectionKind::ThresholdResolved, ThresholdState::Ok),
        };
        self.state = next;
        Some(Detection {
            kind,
            time: t,
            value,
            magnitude: value,
            message: self.sentence(kind, value, held),
            evidence: self.recent.to_vec(),
        })
    }

    fn sentence(&self, kind: DetectionKind, value: f64, held: f64) -> String {
        let c = &self.cfg;
        let v = format_value(value, &c.unit);
        let side = match c.direction {
            Direction::Above => "above",
            Direction::Below => "below",
        };
        let back = match c.direction {
            Direction::Above => "below",
            Direction::Below => "above",
        };
        let held = if c.min_duration_secs > 0.0 {
            format!(" for {}", human_duration(held))
        } else {
            String::new()
        };
        match kind {
            DetectionKind::ThresholdFiring => format!(
                "{} is {v}, {side} {}{held}.",
                c.subject,
                format_value(c.enter, &c.unit)
            ),
            _ => format!(
                "{} is back to {v}, {back} {}{held}.",
                c.subject,
                format_value(c.exit, &c.unit)
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::synth::{at, series};
    use proptest::prelude::*;

    fn cfg(min_secs: f64) -> ThresholdConfig {
        ThresholdConfig {
            subject: "CPU throttling of /kubepods/pod1".into(),
            unit: "ratio".into(),
            min_duration_secs: min_secs,
            ..ThresholdConfig::new(0.5, 0.3)
        }
    }

    fn run(t: &mut Threshold, s: &[(Timestamp, f64)]) -> Vec<(usize, Detection)> {
        s.iter()
            .enumerate()
            .filter_map(|(i, (ts, v))| t.observe(*ts, *v).map(|d| (i, d)))
            .collect()
    }

    #[test]
    fn fires_after_the_minimum_duration_and_resolves_past_exit() {
        let mut t = Threshold::new(cfg(30.0)).unwrap();
        let values = [0.1, 0.6, 0.6, 0.6, 0.6, 0.4, 0.6, 0.2, 0.2, 0.2, 0.2];
        let s: Vec<_> = values
            .iter()
            .enumerate()
            .map(|(i, v)| (at(i, 10.0), *v))
            .collect();
        let d = run(&mut t, &s);
        assert_eq!(d.len(), 2, "{d:?}");
        assert_eq!(d[0].0, 4);
        assert_eq!(d[0].1.kind, DetectionKind::ThresholdFiring);
        assert_eq!(
            d[0].1.message,
            "CPU throttling of /kubepods/pod1 is 60.0%, above 50.0% for 30 seconds."
        );
        assert_eq!(d[0].1.evidence.len(), 5);
        assert_eq!(d[1].0, 10);
        assert_eq!(d[1].1.kind, DetectionKind::ThresholdResolved);
        assert_eq!(t.state(), ThresholdState::Ok);
    }

    #[test]
    fn below_mirrors_above() {
        let mut t = Threshold::new(ThresholdConfig {
            direction: Direction::Below,
            ..ThresholdConfig::new(10.0, 20.0)
        })
        .unwrap();
        assert!(t.observe(at(0, 1.0), 15.0).is_none());
        assert_eq!(
            t.observe(at(1, 1.0), 9.0).unwrap().kind,
            DetectionKind::ThresholdFiring
        );
        assert!(t.observe(at(2, 1.0), 19.0).is_none());
        assert_eq!(
            t.observe(at(3, 1.0), 21.0).unwrap().kind,
            DetectionKind::ThresholdResolved
        );
    }

    #[test]
    fn rejects_a_config_without_a_band() {
        let e = Threshold::new(ThresholdConfig::new(0.5, 0.5)).unwrap_err();
        assert_eq!(e.field, "exit");
        assert!(Threshold::new(ThresholdConfig::new(f64::NAN, 0.5)).is_err());
        let mut c = ThresholdConfig::new(0.5, 0.4);
        c.min_duration_secs = -1.0;
        assert!(Threshold::new(c).is_err());
    }

    #[test]
    fn config_denies_unknown_fields() {
        let ok: ThresholdConfig =
            serde_json::from_str(r#"{"enter":1,"exit":0.5,"min_duration_secs":60}"#).unwrap();
        assert_eq!(ok.min_duration_secs, 60.0);
        assert!(serde_json::from_str::<ThresholdConfig>(r#"{"enter":1,"exit":0,"x":1}"#).is_err());
    }

    // Property tests. Samples every 10 s, min duration 60 s; the levels are enter = 0.5,
    // exit = 0.3; the baseline is 0.1 with noise σ = 0.02 (bounded at ±6σ = 0.12 < enter).
    const STEP_SECS: f64 = 10.0;
    const MIN_SECS: f64 = 60.0;
    const SIGMA: f64 = 0.02;
    const BASE: f64 = 0.1;
    /// Stated delay: the minimum duration plus one sample interval.
    const DELAY_SAMPLES: usize = (MIN_SECS / STEP_SECS) as usize + 1;

    fn firings(s: &[(Timestamp, f64)]) -> Vec<usize> {
        let mut t = Threshold::new(cfg(MIN_SECS)).unwrap();
        run(&mut t, s)
            .into_iter()
            .filter(|(_, d)| d.kind == DetectionKind::ThresholdFiring)
            .map(|(i, _)| i)
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn fires_on_a_step_within_the_stated_delay(seed: u64, at_i in 20usize..200, level in 0.6f64..1.0) {
            let s = series(300, STEP_SECS, SIGMA, seed, |i| if i >= at_i { level } else { BASE });
            let f = firings(&s);
            prop_assert_eq!(f.len(), 1, "{:?}", f);
            prop_assert!(f[0] >= at_i && f[0] <= at_i + DELAY_SAMPLES, "fired at {} for a step at {}", f[0], at_i);
        }

        #[test]
        fn fires_on_a_ramp_within_the_stated_delay_after_crossing(seed: u64, at_i in 20usize..100, len in 1usize..60) {
            // From the baseline to 1.0 over `len` samples; it is past enter + 6σ from `cross`.
            let top = 1.0;
            let s = series(300, STEP_SECS, SIGMA, seed, |i| {
                if i < at_i { BASE } else { (BASE + (top - BASE) * (i - at_i) as f64 / len as f64).min(top) }
            });
            let cross = at_i + (((0.5 + 6.0 * SIGMA - BASE) / (top - BASE)) * len as f64).ceil() as usize;
            let f = firings(&s);
            prop_assert_eq!(f.len(), 1, "{:?}", f);
            prop_assert!(f[0] <= cross + DELAY_SAMPLES, "fired at {} for a crossing at {}", f[0], cross);
        }

        #[test]
        fn fires_on_a_spike_that_lasts_the_minimum_duration(seed: u64, at_i in 20usize..200, extra in 0usize..5) {
            let len = DELAY_SAMPLES + extra;
            let s = series(300, STEP_SECS, SIGMA, seed, |i| if (at_i..at_i + len).contains(&i) { 0.9 } else { BASE });
            let f = firings(&s);
            prop_assert_eq!(f.len(), 1, "{:?}", f);
            prop_assert!(f[0] < at_i + DELAY_SAMPLES);
        }

        #[test]
        fn ignores_a_spike_shorter_than_the_minimum_duration(seed: u64, at_i in 20usize..200, len in 1usize..DELAY_SAMPLES - 1) {
            let s = series(300, STEP_SECS, SIGMA, seed, |i| if (at_i..at_i + len).contains(&i) { 5.0 } else { BASE });
            prop_assert!(firings(&s).is_empty());
        }

        #[test]
        fn silent_on_noise_of_the_same_variance(seed: u64) {
            let s = series(300, STEP_SECS, SIGMA, seed, |_| BASE);
            prop_assert!(firings(&s).is_empty());
        }

        #[test]
        fn never_flaps_inside_the_band(seed: u64, center in 0.32f64..0.48) {
            // Once firing, noise inside the band (exit < x < enter) never resolves, and a series
            // that then hovers around enter never fires twice.
            let mut s = series(40, STEP_SECS, SIGMA, seed, |_| 0.9);
            s.extend(series(300, STEP_SECS, 0.05, seed ^ 1, |_| center).into_iter().enumerate()
                .map(|(i, (_, v))| (at(40 + i, STEP_SECS), v.clamp(0.301, 0.499))));
            let mut t = Threshold::new(cfg(MIN_SECS)).unwrap();
            let d = run(&mut t, &s);
            prop_assert_eq!(d.len(), 1);
            prop_assert_eq!(t.state(), ThresholdState::Firing);
        }
    }
}
