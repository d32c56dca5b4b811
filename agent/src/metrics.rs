//! Every Prometheus metric the agent exports, defined in one place.
//!
//! Entry type: [`Metrics`], built once per [`crate::Agent`] and registered into the registry the
//! binary serves on `/metrics`. Keeping every definition here means a later move from the
//! `prometheus` crate to `prometheus-client` stays local to this file.
//!
//! Invariants: label values are bounded (event names we emit, fixed reasons and stages); no
//! label here ever carries a pid, a cgroup path or log text. The one other definition site is
//! [`crate::node::exposition`]: the node and container series built from kernel counters at
//! scrape time, whose `cgroup`, `mountpoint` and `device` labels are bounded by
//! `--node-max-cgroups` and fixed caps.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// `reason` label of `daytwo_agent_queue_dropped_total`: the queue hit `queue_max_bytes` and
/// dropped its oldest records.
pub const DROP_FULL: &str = "full";
/// `reason` label: the collector answered INVALID_ARGUMENT (or a partial success with rejected
/// records); retrying could never help.
pub const DROP_REJECTED: &str = "rejected";
/// `reason` label: a stored record no longer decodes as a signal (written by an incompatible
/// version or damaged on disk).
pub const DROP_UNDECODABLE: &str = "undecodable";

/// `stage` label of `daytwo_agent_ship_errors_total`: exporting signals (logs) failed.
pub const STAGE_EXPORT: &str = "export";
/// `stage` label: exporting host metrics failed (best-effort, never queued).
pub const STAGE_METRICS: &str = "metrics";

/// `stage` label of `daytwo_agent_logs_errors_total`: a log file could not be opened
/// (missing permission); logged once per path.
pub const LOG_STAGE_OPEN: &str = "open";
/// `stage` label: reading or stat-ing an open log file failed.
pub const LOG_STAGE_READ: &str = "read";
/// `stage` label: committing read logs and checkpoints to the state file failed (retried).
pub const LOG_STAGE_COMMIT: &str = "commit";
/// `stage` label: exporting raw logs to the collector failed (retried).
pub const LOG_STAGE_EXPORT: &str = "export";

/// `stage` label of `daytwo_agent_node_errors_total`: node signals could not be written to the
/// send queue (they are lost).
pub const NODE_STAGE_PUSH: &str = "push";

/// The agent's counters and gauges. Cheap to clone (every field is an `Arc` inside).
#[derive(Clone, Debug)]
pub struct Metrics {
    /// `daytwo_agent_kmsg_records_received_total`
    pub kmsg_records_received: IntCounter,
    /// `daytwo_agent_kmsg_lost_total`
    pub kmsg_lost: IntCounter,
    /// `daytwo_agent_kmsg_parse_errors_total`
    pub kmsg_parse_errors: IntCounter,
    /// `daytwo_agent_signals_emitted_total{event}`
    pub signals_emitted: IntCounterVec,
    /// `daytwo_agent_signals_sent_total`
    pub signals_sent: IntCounter,
    /// `daytwo_agent_queue_dropped_total{reason}`
    pub queue_dropped: IntCounterVec,
    /// `daytwo_agent_queue_depth`
    pub queue_depth: IntGauge,
    /// `daytwo_agent_queue_bytes`
    pub queue_bytes: IntGauge,
    /// `daytwo_agent_ship_errors_total{stage}`
    pub ship_errors: IntCounterVec,
    /// `daytwo_agent_host_metrics_sent_total`
    pub host_metrics_sent: IntCounter,
    /// `daytwo_agent_logs_lines_received_total`
    pub logs_lines_received: IntCounter,
    /// `daytwo_agent_logs_bytes_received_total`
    pub logs_bytes_received: IntCounter,
    /// `daytwo_agent_logs_records_received_total`
    pub logs_records_received: IntCounter,
    /// `daytwo_agent_logs_records_sent_total`
    pub logs_records_sent: IntCounter,
    /// `daytwo_agent_logs_dropped_total{reason}`
    pub logs_dropped: IntCounterVec,
    /// `daytwo_agent_logs_errors_total{stage}`
    pub logs_errors: IntCounterVec,
    /// `daytwo_agent_logs_lines_truncated_total`
    pub logs_lines_truncated: IntCounter,
    /// `daytwo_agent_logs_invalid_utf8_total`
    pub logs_invalid_utf8: IntCounter,
    /// `daytwo_agent_logs_lines_unparsed_total`
    pub logs_lines_unparsed: IntCounter,
    /// `daytwo_agent_logs_redactions_total{rule}`
    pub logs_redactions: IntCounterVec,
    /// `daytwo_agent_logs_rotations_total{kind}`
    pub logs_rotations: IntCounterVec,
    /// `daytwo_agent_logs_new_templates_suppressed_total`
    pub logs_new_templates_suppressed: IntCounter,
    /// `daytwo_agent_logs_files_open`
    pub logs_files_open: IntGauge,
    /// `daytwo_agent_logs_queue_bytes`
    pub logs_queue_bytes: IntGauge,
    /// `daytwo_agent_node_cgroups`
    pub node_cgroups: IntGauge,
    /// `daytwo_agent_node_cgroups_skipped`
    pub node_cgroups_skipped: IntGauge,
    /// `daytwo_agent_node_sample_seconds`
    pub node_sample_seconds: Gauge,
    /// `daytwo_agent_node_errors_total{stage}`
    pub node_errors: IntCounterVec,
    /// `daytwo_agent_kube_errors_total{resource}` and the other `daytwo_agent_kube_*` series
    /// of the Kubernetes watches (names defined by [`daytwo_k8s::watch::WatchMetrics`]).
    pub kube: daytwo_k8s::watch::WatchMetrics,
}

impl Metrics {
    /// Creates every metric and registers it into `registry`. Fails if a metric of the same
    /// name is already registered there (two agents sharing one registry).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let m = Metrics::unregistered()?;
        registry.register(Box::new(m.kmsg_records_received.clone()))?;
        registry.register(Box::new(m.kmsg_lost.clone()))?;
        registry.register(Box::new(m.kmsg_parse_errors.clone()))?;
        registry.register(Box::new(m.signals_emitted.clone()))?;
        registry.register(Box::new(m.signals_sent.clone()))?;
        registry.register(Box::new(m.queue_dropped.clone()))?;
        registry.register(Box::new(m.queue_depth.clone()))?;
        registry.register(Box::new(m.queue_bytes.clone()))?;
        registry.register(Box::new(m.ship_errors.clone()))?;
        registry.register(Box::new(m.host_metrics_sent.clone()))?;
        registry.register(Box::new(m.logs_lines_received.clone()))?;
        registry.register(Box::new(m.logs_bytes_received.clone()))?;
        registry.register(Box::new(m.logs_records_received.clone()))?;
        registry.register(Box::new(m.logs_records_sent.clone()))?;
        registry.register(Box::new(m.logs_dropped.clone()))?;
        registry.register(Box::new(m.logs_errors.clone()))?;
        registry.register(Box::new(m.logs_lines_truncated.clone()))?;
        registry.register(Box::new(m.logs_invalid_utf8.clone()))?;
        registry.register(Box::new(m.logs_lines_unparsed.clone()))?;
        registry.register(Box::new(m.logs_redactions.clone()))?;
        registry.register(Box::new(m.logs_rotations.clone()))?;
        registry.register(Box::new(m.logs_new_templates_suppressed.clone()))?;
        registry.register(Box::new(m.logs_files_open.clone()))?;
        registry.register(Box::new(m.logs_queue_bytes.clone()))?;
        registry.register(Box::new(m.node_cgroups.clone()))?;
        registry.register(Box::new(m.node_cgroups_skipped.clone()))?;
        registry.register(Box::new(m.node_sample_seconds.clone()))?;
        registry.register(Box::new(m.node_errors.clone()))?;
        m.kube.register(registry)?;
        Ok(m)
    }

    /// Metrics that are not registered anywhere (unit tests).
    pub fn unregistered() -> Result<Self, prometheus::Error> {
        let m = Metrics {
            kmsg_records_received: IntCounter::new(
                "daytwo_agent_kmsg_records_received_total",
                "Kernel log records read from /dev/kmsg.",
            )?,
            kmsg_lost: IntCounter::new(
                "daytwo_agent_kmsg_lost_total",
                "Kernel log records overwritten in the ring buffer before the agent read them.",
            )?,
            kmsg_parse_errors: IntCounter::new(
                "daytwo_agent_kmsg_parse_errors_total",
                "Kernel log records that did not parse and were skipped.",
            )?,
            signals_emitted: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_signals_emitted_total",
                    "Signals detected and written to the send queue, by event name.",
                ),
                &["event"],
            )?,
            signals_sent: IntCounter::new(
                "daytwo_agent_signals_sent_total",
                "Signals the collector acknowledged.",
            )?,
            queue_dropped: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_queue_dropped_total",
                    "Signals removed from the send queue without being delivered, by reason.",
                ),
                &["reason"],
            )?,
            queue_depth: IntGauge::new(
                "daytwo_agent_queue_depth",
                "Signals waiting in the disk-backed send queue.",
            )?,
            queue_bytes: IntGauge::new(
                "daytwo_agent_queue_bytes",
                "Bytes of signals waiting in the disk-backed send queue.",
            )?,
            ship_errors: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_ship_errors_total",
                    "Failed exports to the collector, by stage.",
                ),
                &["stage"],
            )?,
            host_metrics_sent: IntCounter::new(
                "daytwo_agent_host_metrics_sent_total",
                "Host metric exports the collector acknowledged.",
            )?,
            logs_lines_received: IntCounter::new(
                "daytwo_agent_logs_lines_received_total",
                "Lines read from log files (before CRI partial and multi-line joining).",
            )?,
            logs_bytes_received: IntCounter::new(
                "daytwo_agent_logs_bytes_received_total",
                "Bytes read from log files.",
            )?,
            logs_records_received: IntCounter::new(
                "daytwo_agent_logs_records_received_total",
                "Log records after joining (one per message or stack trace), mined and checked by detectors.",
            )?,
            logs_records_sent: IntCounter::new(
                "daytwo_agent_logs_records_sent_total",
                "Raw log records the collector acknowledged.",
            )?,
            logs_dropped: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_logs_dropped_total",
                    "Raw log records removed from the log queue without being delivered, by reason.",
                ),
                &["reason"],
            )?,
            logs_errors: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_logs_errors_total",
                    "Log source failures, by stage (open, read, commit, export).",
                ),
                &["stage"],
            )?,
            logs_lines_truncated: IntCounter::new(
                "daytwo_agent_logs_lines_truncated_total",
                "Log lines longer than the maximum line length, cut to it.",
            )?,
            logs_invalid_utf8: IntCounter::new(
                "daytwo_agent_logs_invalid_utf8_total",
                "Log records with invalid UTF-8, repaired with U+FFFD.",
            )?,
            logs_lines_unparsed: IntCounter::new(
                "daytwo_agent_logs_lines_unparsed_total",
                "Lines that did not have their file's format (CRI, Docker) and were kept as plain text.",
            )?,
            logs_redactions: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_logs_redactions_total",
                    "Log records in which a redaction rule replaced a secret, by rule.",
                ),
                &["rule"],
            )?,
            logs_rotations: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_logs_rotations_total",
                    "Log files renamed or deleted (kind=rename) or truncated (kind=truncate).",
                ),
                &["kind"],
            )?,
            logs_new_templates_suppressed: IntCounter::new(
                "daytwo_agent_logs_new_templates_suppressed_total",
                "New-template signals not sent because a workload exceeded its per-minute limit.",
            )?,
            logs_files_open: IntGauge::new(
                "daytwo_agent_logs_files_open",
                "Log files the agent holds open (including rotated files it is finishing).",
            )?,
            logs_queue_bytes: IntGauge::new(
                "daytwo_agent_logs_queue_bytes",
                "Bytes of raw log records waiting in the disk-backed log queue.",
            )?,
            node_cgroups: IntGauge::new(
                "daytwo_agent_node_cgroups",
                "Cgroups tracked by the last node sample.",
            )?,
            node_cgroups_skipped: IntGauge::new(
                "daytwo_agent_node_cgroups_skipped",
                "Cgroups seen but not tracked by the last node sample (over --node-max-cgroups).",
            )?,
            node_sample_seconds: Gauge::new(
                "daytwo_agent_node_sample_seconds",
                "Wall time the last node sample took (procfs, cgroups, statvfs).",
            )?,
            node_errors: IntCounterVec::new(
                Opts::new(
                    "daytwo_agent_node_errors_total",
                    "Node source failures, by stage (push: signals could not be queued).",
                ),
                &["stage"],
            )?,
            kube: daytwo_k8s::watch::WatchMetrics::new("daytwo_agent")?,
        };
        // Make the bounded label values visible at 0 from the start.
        for reason in [DROP_FULL, DROP_REJECTED, DROP_UNDECODABLE] {
            m.queue_dropped.with_label_values(&[reason]);
        }
        for stage in [STAGE_EXPORT, STAGE_METRICS] {
            m.ship_errors.with_label_values(&[stage]);
        }
        for stage in [
            LOG_STAGE_OPEN,
            LOG_STAGE_READ,
            LOG_STAGE_COMMIT,
            LOG_STAGE_EXPORT,
        ] {
            m.logs_errors.with_label_values(&[stage]);
        }
        for kind in ["rename", "truncate"] {
            m.logs_rotations.with_label_values(&[kind]);
        }
        m.logs_dropped.with_label_values(&[DROP_REJECTED]);
        m.node_errors.with_label_values(&[NODE_STAGE_PUSH]);
        Ok(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_metric_once() {
        let r = Registry::new();
        let m = Metrics::register(&r).unwrap();
        m.signals_emitted
            .with_label_values(&["daytwo.kernel.oom_kill"])
            .inc();
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_string()).collect();
        for n in [
            "daytwo_agent_kmsg_records_received_total",
            "daytwo_agent_kmsg_lost_total",
            "daytwo_agent_signals_emitted_total",
            "daytwo_agent_signals_sent_total",
            "daytwo_agent_queue_dropped_total",
            "daytwo_agent_queue_depth",
            "daytwo_agent_queue_bytes",
            "daytwo_agent_ship_errors_total",
        ] {
            assert!(names.iter().any(|x| x == n), "{n} missing from {names:?}");
        }
        assert!(
            Metrics::register(&r).is_err(),
            "second registration must fail"
        );
    }
}
