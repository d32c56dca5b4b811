//! Synthetic series for the property tests: a seeded PRNG and Gaussian-like noise.
//!
//! Noise is Irwin–Hall: the sum of 12 uniforms minus 6, scaled by σ. It has mean 0, variance
//! σ² and a bell shape within ±3σ, and is bounded by ±6σ, so "silent on noise" properties are
//! decided by the detector, not by a one-in-a-billion tail sample.

use super::Sample;
use daytwo_model::Timestamp;

/// SplitMix64: small, fast, and good enough for test data.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Gaussian-like (Irwin–Hall, 12 terms): mean 0, standard deviation `sigma`.
    pub fn noise(&mut self, sigma: f64) -> f64 {
        let s: f64 = (0..12).map(|_| self.uniform()).sum();
        (s - 6.0) * sigma
    }
}

/// Start of every synthetic series (an arbitrary 2026 instant).
pub const T0: i64 = 1_795_617_000;

/// The time of sample `i` when samples are `step_secs` apart.
pub fn at(i: usize, step_secs: f64) -> Timestamp {
    Timestamp::from_unix_nanos(T0 * 1_000_000_000 + (i as f64 * step_secs * 1e9) as i64)
}

/// `len` samples `step_secs` apart: `shape(i)` plus noise of standard deviation `sigma`.
pub fn series(
    len: usize,
    step_secs: f64,
    sigma: f64,
    seed: u64,
    shape: impl Fn(usize) -> f64,
) -> Vec<Sample> {
    let mut rng = Rng::new(seed);
    (0..len)
        .map(|i| (at(i, step_secs), shape(i) + rng.noise(sigma)))
        .collect()
}

/// The population variance of the values of a series.
pub fn variance(s: &[Sample]) -> f64 {
    let n = s.len() as f64;
    let mean = s.iter().map(|x| x.1).sum::<f64>() / n;
    s.iter().map(|x| (x.1 - mean).powi(2)).sum::<f64>() / n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_has_the_stated_moments_and_bound() {
        let mut r = Rng::new(7);
        let xs: Vec<f64> = (0..100_000).map(|_| r.noise(2.0)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
        assert!((var - 4.0).abs() < 0.1, "{var}");
        assert!(xs.iter().all(|x| x.abs() <= 12.0));
    }
}
