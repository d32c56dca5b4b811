//! Every metric the collector core defines, in one place (so a later move from the frozen
//! `prometheus` crate stays local). Labels are bounded: signal types, outcomes, severities.

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

#[derive(Clone)]
pub struct Metrics {
    /// OTLP export requests by signal type (`logs`, `metrics`, `traces`) and outcome.
    pub otlp_requests: IntCounterVec,
    /// Log records received that are signals (have an event name).
    pub signals_received: IntCounter,
    /// Signals stored and correlated for the first time.
    pub signals_accepted: IntCounter,
    /// Signals received again (redelivery) and ignored.
    pub signals_duplicate: IntCounter,
    /// Records rejected, by reason.
    pub records_rejected: IntCounterVec,
    /// Plain log records (no event name) received.
    pub log_records: IntCounter,
    pub metric_points: IntCounter,
    pub spans: IntCounter,
    pub incidents_opened: IntCounterVec,
    pub incidents_active: IntGauge,
    /// Alerts received from Alertmanager, by status.
    pub alerts_received: IntCounterVec,
    /// Alertmanager payloads or alerts that could not be read.
    pub alerts_rejected: IntCounter,
}

impl Metrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Metrics> {
        let m = Metrics {
            otlp_requests: IntCounterVec::new(
                Opts::new(
                    "daytwo_collector_otlp_requests_total",
                    "OTLP export requests by signal type and outcome.",
                ),
                &["signal", "outcome"],
            )?,
            signals_received: IntCounter::new(
                "daytwo_collector_signals_received_total",
                "Signals (log records with an event name) received over OTLP.",
            )?,
            signals_accepted: IntCounter::new(
                "daytwo_collector_signals_accepted_total",
                "Signals stored and correlated for the first time.",
            )?,
            signals_duplicate: IntCounter::new(
                "daytwo_collector_signals_duplicate_total",
                "Signals received again (redelivery) and ignored.",
            )?,
            records_rejected: IntCounterVec::new(
                Opts::new(
                    "daytwo_collector_records_rejected_total",
                    "OTLP records rejected, by reason.",
                ),
                &["reason"],
            )?,
            log_records: IntCounter::new(
                "daytwo_collector_log_records_received_total",
                "Plain OTLP log records (no event name) received.",
            )?,
            metric_points: IntCounter::new(
                "daytwo_collector_metric_points_received_total",
                "OTLP metric data points received.",
            )?,
            spans: IntCounter::new(
                "daytwo_collector_spans_received_total",
                "OTLP spans received.",
            )?,
            incidents_opened: IntCounterVec::new(
                Opts::new(
                    "daytwo_collector_incidents_opened_total",
                    "Incidents opened, by severity.",
                ),
                &["severity"],
            )?,
            incidents_active: IntGauge::new(
                "daytwo_collector_incidents_active",
                "Incidents open or acknowledged right now.",
            )?,
            alerts_received: IntCounterVec::new(
                Opts::new(
                    "daytwo_collector_alerts_received_total",
                    "Alertmanager alerts received, by status.",
                ),
                &["status"],
            )?,
            alerts_rejected: IntCounter::new(
                "daytwo_collector_alerts_rejected_total",
                "Alertmanager payloads or alerts that could not be read.",
            )?,
        };
        registry.register(Box::new(m.alerts_received.clone()))?;
        registry.register(Box::new(m.alerts_rejected.clone()))?;
        registry.register(Box::new(m.otlp_requests.clone()))?;
        registry.register(Box::new(m.signals_received.clone()))?;
        registry.register(Box::new(m.signals_accepted.clone()))?;
        registry.register(Box::new(m.signals_duplicate.clone()))?;
        registry.register(Box::new(m.records_rejected.clone()))?;
        registry.register(Box::new(m.log_records.clone()))?;
        registry.register(Box::new(m.metric_points.clone()))?;
        registry.register(Box::new(m.spans.clone()))?;
        registry.register(Box::new(m.incidents_opened.clone()))?;
        registry.register(Box::new(m.incidents_active.clone()))?;
        Ok(m)
    }
}
