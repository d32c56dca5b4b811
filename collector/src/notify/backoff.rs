//! Retry delays: exponential from the initial backoff, capped, with equal jitter.
//!
//! Equal jitter (half the capped delay, plus a random share of the other half) spreads the
//! retries of many deliveries that failed together (a receiver restart) while keeping a floor,
//! so a retry never comes right on the heels of a failure.

use std::time::Duration;

/// The delay before the next attempt after `failures` failed attempts (1 for the first
/// failure). `jitter` is a random number in `0.0..=1.0`.
pub(super) fn delay(initial: Duration, max: Duration, failures: u32, jitter: f64) -> Duration {
    let doublings = failures.saturating_sub(1).min(31);
    let capped = initial
        .checked_mul(1u32 << doublings)
        .map_or(max, |d| d.min(max));
    let half = capped / 2;
    half + (capped - half).mul_f64(jitter.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_then_caps() {
        let s = Duration::from_secs;
        assert_eq!(delay(s(1), s(300), 1, 1.0), s(1));
        assert_eq!(delay(s(1), s(300), 2, 1.0), s(2));
        assert_eq!(delay(s(1), s(300), 4, 1.0), s(8));
        assert_eq!(delay(s(1), s(300), 10, 1.0), s(300));
        assert_eq!(delay(s(1), s(300), u32::MAX, 0.0), s(150));
        assert_eq!(delay(s(1), s(300), 0, 0.0), Duration::from_millis(500));
    }

    proptest! {
        #[test]
        fn stays_within_half_and_whole_of_the_capped_delay(
            initial_ms in 1u64..10_000,
            extra_ms in 0u64..1_000_000,
            failures in 0u32..200,
            jitter in 0.0f64..=1.0,
        ) {
            let initial = Duration::from_millis(initial_ms);
            let max = Duration::from_millis(initial_ms + extra_ms);
            let d = delay(initial, max, failures, jitter);
            prop_assert!(d <= max);
            prop_assert!(d >= initial / 2);
            let capped = initial
                .checked_mul(1u32 << failures.saturating_sub(1).min(31))
                .map_or(max, |c| c.min(max));
            prop_assert!(d >= capped / 2 && d <= capped);
        }
    }
}
