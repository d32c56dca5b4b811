//! The notify metrics, all defined here so a move to another metrics crate stays local.
//!
//! Labels are bounded: `receiver` is an operator-configured name, `event` one of three,
//! `stage` one of `connect`, `timeout`, `send`, `response`, `render`, `store`.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

use super::NotifyError;

#[derive(Clone)]
pub(super) struct Metrics {
    /// Deliveries a receiver answered with 2xx.
    pub sent: IntCounterVec,
    /// Failed attempts by where they failed.
    pub errors: IntCounterVec,
    /// Deliveries that gave up and moved to the dead-letter table.
    pub dead_letters: IntCounterVec,
    /// Deliveries queued, as of the loop's last pass over the outbox.
    pub pending: IntGauge,
    /// 1 while a receiver's circuit breaker is open or probing, else 0.
    pub breaker_open: IntGaugeVec,
    /// Triggers held back by a silence or maintenance window, as of the last housekeeping pass.
    pub held: IntGauge,
    /// Held triggers sent because their silence ended while the incident was still open.
    pub released: IntCounter,
    /// Grouped messages queued (one per group flush).
    pub grouped: IntCounter,
    /// Repeated triggers queued for open, unacknowledged incidents.
    pub repeats: IntCounter,
}

impl Metrics {
    pub(super) fn register(registry: &Registry) -> Result<Metrics, NotifyError> {
        let err = NotifyError::MetricsRegistrationFailed;
        let m = Metrics {
            sent: IntCounterVec::new(
                Opts::new(
                    "daytwo_notify_sent_total",
                    "Notifications a receiver accepted with a 2xx answer.",
                ),
                &["receiver", "event"],
            )
            .map_err(err)?,
            errors: IntCounterVec::new(
                Opts::new(
                    "daytwo_notify_errors_total",
                    "Failed notification attempts, by stage: connect, timeout, send, response (non-2xx), store.",
                ),
                &["receiver", "stage"],
            )
            .map_err(err)?,
            dead_letters: IntCounterVec::new(
                Opts::new(
                    "daytwo_notify_dead_letters_total",
                    "Notifications that gave up after the maximum age and were dead-lettered.",
                ),
                &["receiver"],
            )
            .map_err(err)?,
            pending: IntGauge::new(
                "daytwo_notify_pending",
                "Notifications queued in the outbox, waiting to be sent or retried.",
            )
            .map_err(err)?,
            breaker_open: IntGaugeVec::new(
                Opts::new(
                    "daytwo_notify_breaker_open",
                    "1 while the receiver's circuit breaker is open (its notifications are held, then probed), else 0.",
                ),
                &["receiver"],
            )
            .map_err(err)?,
            held: IntGauge::new(
                "daytwo_notify_held",
                "Triggers held back by a silence or maintenance window; sent if their incident is still open when it ends.",
            )
            .map_err(err)?,
            released: IntCounter::new(
                "daytwo_notify_released_total",
                "Held triggers sent because their silence ended while the incident was still open.",
            )
            .map_err(err)?,
            grouped: IntCounter::new(
                "daytwo_notify_grouped_total",
                "Grouped trigger messages queued for chatty receivers (routes with group_by).",
            )
            .map_err(err)?,
            repeats: IntCounter::new(
                "daytwo_notify_repeats_total",
                "Triggers sent again for open, unacknowledged incidents (repeat_interval_secs).",
            )
            .map_err(err)?,
        };
        for c in [&m.released, &m.grouped, &m.repeats] {
            registry.register(Box::new(c.clone())).map_err(err)?;
        }
        registry.register(Box::new(m.held.clone())).map_err(err)?;
        registry.register(Box::new(m.sent.clone())).map_err(err)?;
        registry.register(Box::new(m.errors.clone())).map_err(err)?;
        registry
            .register(Box::new(m.dead_letters.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(m.pending.clone()))
            .map_err(err)?;
        registry
            .register(Box::new(m.breaker_open.clone()))
            .map_err(err)?;
        Ok(m)
    }
}
