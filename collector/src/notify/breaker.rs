//! A circuit breaker per receiver: after `threshold` consecutive failed attempts it opens, and
//! nothing is sent to that receiver for `cooldown`; then one delivery goes out as a probe
//! (half-open). A probe that succeeds closes the breaker; one that fails opens it again.
//!
//! Pure: the caller passes the time. The state lives in memory, so a restart closes every
//! breaker (the first attempts after a restart find out again whether the receiver is up).
//! While a breaker is open, deliveries stay queued; their retry schedule and max age are not
//! touched, so nothing is lost by waiting.

use std::time::Duration;

use tokio::time::Instant;

/// Where a breaker is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Sending normally.
    Closed,
    /// The receiver keeps failing: nothing is sent until `until`.
    Open { until: Instant },
    /// The cool-down is over and one probe is in flight.
    HalfOpen,
}

/// What the delivery loop may do with a due delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Permit {
    /// Send it.
    Send,
    /// Send it as the one probe.
    Probe,
    /// Hold it; look again at `Some(t)` (or when the probe finishes).
    Wait(Option<Instant>),
}

#[derive(Clone, Debug)]
pub struct Breaker {
    state: State,
    failures: u32,
    /// When it last opened from closed; kept through probes and re-opens until it closes.
    opened_at: Option<Instant>,
}

impl Default for Breaker {
    fn default() -> Self {
        Breaker {
            state: State::Closed,
            failures: 0,
            opened_at: None,
        }
    }
}

impl Breaker {
    pub fn state(&self) -> State {
        self.state
    }

    /// True while open or probing.
    pub fn is_open(&self) -> bool {
        self.state != State::Closed
    }

    /// Since when the receiver has been failing without a success: set when the breaker opens,
    /// cleared when it closes. `None` while closed.
    pub fn opened_at(&self) -> Option<Instant> {
        self.opened_at.filter(|_| self.is_open())
    }

    /// Whether a due delivery may go out now.
    pub fn permit(&mut self, now: Instant) -> Permit {
        match self.state {
            State::Closed => Permit::Send,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                Permit::Probe
            }
            State::Open { until } => Permit::Wait(Some(until)),
            State::HalfOpen => Permit::Wait(None),
        }
    }

    /// A delivery was taken: close.
    pub fn on_success(&mut self) {
        self.state = State::Closed;
        self.failures = 0;
        self.opened_at = None;
    }

    /// An attempt failed. Returns true when this failure opened a closed breaker.
    pub fn on_failure(&mut self, now: Instant, threshold: u32, cooldown: Duration) -> bool {
        self.failures = self.failures.saturating_add(1);
        match self.state {
            State::Closed if self.failures >= threshold.max(1) => {
                self.state = State::Open {
                    until: now + cooldown,
                };
                self.opened_at = Some(now);
                true
            }
            State::Closed => false,
            // A failed probe, or an attempt that was in flight when the breaker opened.
            State::HalfOpen | State::Open { .. } => {
                self.state = State::Open {
                    until: now + cooldown,
                };
                false
            }
        }
    }

    /// The probe (or a delivery) ended without telling us anything about the receiver (the
    /// outbox could not be updated): let the next due delivery probe again.
    pub fn on_inconclusive(&mut self) {
        if self.state == State::HalfOpen {
            self.state = State::Open {
                until: Instant::now(),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_probes_after_the_cooldown_and_closes_on_success() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(10);
        let mut b = Breaker::default();
        assert_eq!(b.permit(t0), Permit::Send);
        assert!(!b.on_failure(t0, 3, cool));
        assert!(!b.on_failure(t0, 3, cool));
        assert!(b.on_failure(t0, 3, cool), "the third failure opens it");
        assert!(b.is_open());
        assert_eq!(b.opened_at(), Some(t0));
        assert_eq!(b.permit(t0), Permit::Wait(Some(t0 + cool)));
        let later = t0 + cool;
        assert_eq!(b.permit(later), Permit::Probe);
        assert_eq!(b.permit(later), Permit::Wait(None), "one probe at a time");
        assert!(
            !b.on_failure(later, 3, cool),
            "a failed probe re-opens, not newly"
        );
        assert_eq!(b.permit(later), Permit::Wait(Some(later + cool)));
        assert_eq!(b.permit(later + cool), Permit::Probe);
        assert_eq!(b.opened_at(), Some(t0), "open since the first opening");
        b.on_success();
        assert_eq!(b.opened_at(), None);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(b.permit(later + cool), Permit::Send);
        assert!(!b.on_failure(later, 3, cool), "the count restarted");
    }

    #[test]
    fn success_resets_the_count_of_consecutive_failures() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        b.on_failure(t0, 2, Duration::from_secs(1));
        b.on_success();
        assert!(!b.on_failure(t0, 2, Duration::from_secs(1)));
        assert!(b.on_failure(t0, 2, Duration::from_secs(1)));
    }
}
