//! Collector-side detection: the agent's series detectors applied to OTLP metrics and traces
//! that arrive from anywhere (an OTel SDK, an OTel Collector, a recorded file).
//!
//! Entry type: [`Detect`]. Feed it export requests in event-time order with
//! [`Detect::metrics`] and [`Detect::traces`]; each returns the signals that are ready, which the
//! caller hands to [`crate::pipeline::Pipeline::ingest`] like any other signal. At the end of a
//! recording, [`Detect::flush`] returns the episodes still being measured. Call edges seen in
//! traces (a CLIENT span in one service whose child SERVER span is in another) come out of
//! [`Detect::take_calls`] for the ranker's call graph.
//!
//! * **Metrics.** Every gauge and sum data point feeds one series, keyed by the resource's
//!   identity, the metric name and the point attributes. A monotonic cumulative sum becomes a
//!   rate per second first. Histograms and summaries are not scored (yet).
//! * **Traces.** SERVER and CONSUMER spans are bucketed per service (resource `service.name`) by
//!   start time into [`SPAN_BUCKET_SECS`] intervals, giving per-service latency p50 and p99,
//!   call rate and error ratio series, plus, per calling service, the latency it observes on
//!   its CLIENT spans into each service (`span.client.duration.p50`, about the service called,
//!   with [`CALLER`] naming the caller). A bucket in which no span at all arrived is a gap in the recording, not
//!   zero traffic, and is skipped.
//!
//! Each series runs a [`RobustAnomaly`] (rolling median/MAD). Its window, warm-up and
//! measuring horizon follow the series' own sampling interval, measured from its first
//! samples, so 1 s and 1 min series are handled by one configuration (see [`SeriesTuning`]).
//! When it fires, the episode is *measured* for a horizon against the baseline frozen just
//! before the onset; the signal is emitted once the horizon is over (or at [`Detect::flush`]),
//! with the onset as its time and the peak and sustained robust z-scores as attributes, so the
//! ranker can compare the strength of changes across series.
//!
//! Invariants: bounded memory (at most [`MAX_SERIES`] series, least recently seen evicted; a
//! bounded span index); pure apart from the data it is fed (no I/O, no clock reads); the same
//! input in the same order gives the same signals with the same ids.

mod series;
mod spans;

pub use series::{SeriesTuning, anomaly_signal_name};

use daytwo_model::otlp::{attributes_from, entity_from_resource};
use daytwo_model::{Attributes, Signal, Timestamp};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, NumberDataPoint, metric::Data, number_data_point,
};
use series::Series;
use std::collections::HashMap;
use std::sync::Arc;

/// At most this many series are tracked; the least recently seen are evicted beyond it.
pub const MAX_SERIES: usize = 50_000;
/// Spans are aggregated per service in buckets of this many seconds.
pub const SPAN_BUCKET_SECS: i64 = 5;

/// The signal emitted for an anomaly in a metric series.
pub const METRIC_ANOMALY: &str = "daytwo.metric.anomaly";
/// The signal emitted for an anomaly in a service's span latency (its own or as its callers see it).
pub const LATENCY_ANOMALY: &str = "daytwo.service.latency_anomaly";
/// The signal emitted for an anomaly in a service's call rate.
pub const THROUGHPUT_ANOMALY: &str = "daytwo.service.throughput_anomaly";
/// The signal emitted for an anomaly in a service's share of failed calls.
pub const ERROR_ANOMALY: &str = "daytwo.service.error_anomaly";
/// The signal emitted for an anomaly in a service's fan-out: child spans per server span, how
/// much work its own handler does per request.
pub const FANOUT_ANOMALY: &str = "daytwo.service.fanout_anomaly";
/// Span-derived latencies are scored on `ln(seconds + this)` (see `Series::log_scale`).
pub const LATENCY_LOG_OFFSET_SECS: f64 = 0.001;

/// On client-side latency anomalies from spans: the service that made the calls.
pub const CALLER: &str = "daytwo.caller.service";

/// Every signal name [`Detect`] emits (the ranker's input).
pub const DETECTION_SIGNALS: &[&str] = &[
    METRIC_ANOMALY,
    LATENCY_ANOMALY,
    THROUGHPUT_ANOMALY,
    ERROR_ANOMALY,
    FANOUT_ANOMALY,
];

/// A caller → callee edge seen in traces, with the time it was last seen.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Call {
    pub caller: String,
    pub callee: String,
}

/// Collector-side detection state. See the module docs.
pub struct Detect {
    series: HashMap<String, Series>,
    tuning: SeriesTuning,
    spans: spans::SpanStats,
    /// Cumulative sums: the previous (time, value) per series key, to turn them into rates.
    cumulative: HashMap<String, (Timestamp, f64)>,
    /// Call edges named by `rpc.*` metrics since the last [`Detect::take_calls`].
    calls: HashMap<Call, Timestamp>,
    out: Vec<Signal>,
}

impl Default for Detect {
    fn default() -> Self {
        Detect::new(SeriesTuning::default())
    }
}

impl Detect {
    pub fn new(tuning: SeriesTuning) -> Detect {
        Detect {
            series: HashMap::new(),
            tuning,
            spans: spans::SpanStats::new(SPAN_BUCKET_SECS),
            cumulative: HashMap::new(),
            calls: HashMap::new(),
            out: Vec::new(),
        }
    }

    /// How many series are tracked.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Feeds every number data point of a metrics export; returns the signals that are ready.
    pub fn metrics(&mut self, req: &ExportMetricsServiceRequest) -> Vec<Signal> {
        for rm in &req.resource_metrics {
            let resource = Arc::new(
                rm.resource
                    .as_ref()
                    .map(|r| attributes_from(&r.attributes))
                    .unwrap_or_default(),
            );
            let res_key = resource_key(&resource);
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    match &m.data {
                        Some(Data::Gauge(g)) => {
                            for p in &g.data_points {
                                self.point(&resource, &res_key, &m.name, &m.unit, p, false);
                            }
                        }
                        Some(Data::Sum(s)) => {
                            let cumulative = s.is_monotonic
                                && s.aggregation_temporality
                                    == AggregationTemporality::Cumulative as i32;
                            for p in &s.data_points {
                                self.point(&resource, &res_key, &m.name, &m.unit, p, cumulative);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        self.evict();
        std::mem::take(&mut self.out)
    }

    /// Feeds the spans of a trace export; returns the signals that are ready.
    pub fn traces(&mut self, req: &ExportTraceServiceRequest) -> Vec<Signal> {
        let mut samples = Vec::new();
        for rs in &req.resource_spans {
            let resource = rs
                .resource
                .as_ref()
                .map(|r| attributes_from(&r.attributes))
                .unwrap_or_default();
            for ss in &rs.scope_spans {
                for span in &ss.spans {
                    self.spans.span(&resource, span, &mut samples);
                }
            }
        }
        self.feed_span_samples(samples);
        self.evict();
        std::mem::take(&mut self.out)
    }

    /// End of the input: closes the last complete span bucket and emits every episode still
    /// being measured.
    pub fn flush(&mut self) -> Vec<Signal> {
        let mut samples = Vec::new();
        self.spans.flush(&mut samples);
        self.feed_span_samples(samples);
        let mut keys: Vec<&String> = self.series.keys().collect();
        keys.sort();
        let keys: Vec<String> = keys.into_iter().cloned().collect();
        for k in keys {
            if let Some(s) = self.series.get_mut(&k)
                && let Some(sig) = s.finish()
            {
                self.out.push(sig);
            }
        }
        std::mem::take(&mut self.out)
    }

    /// The call edges seen since the last call, with the time each was last seen.
    pub fn take_calls(&mut self) -> Vec<(Call, Timestamp)> {
        let mut v = self.spans.take_calls();
        v.extend(self.calls.drain());
        v.sort();
        v
    }

    fn feed_span_samples(&mut self, samples: Vec<spans::SpanSample>) {
        for s in samples {
            let key = format!("{}\u{1f}{}", s.service_key, s.metric);
            let tuning = &self.tuning;
            let series = self.series.entry(key.clone()).or_insert_with(|| {
                let series = Series::new(
                    key,
                    s.signal,
                    s.resource.clone(),
                    entity_from_resource(&s.resource),
                    s.metric.to_string(),
                    s.unit.to_string(),
                    s.caller
                        .iter()
                        .map(|c| (CALLER.to_string(), serde_json::Value::from(c.as_str())))
                        .collect(),
                    tuning.clone(),
                );
                series.with_scale(s.scale)
            });
            if let Some(sig) = series.observe(s.time, s.value) {
                self.out.push(sig);
            }
        }
    }

    fn point(
        &mut self,
        resource: &Arc<Attributes>,
        res_key: &str,
        name: &str,
        unit: &str,
        p: &NumberDataPoint,
        cumulative: bool,
    ) {
        let Some(v) = p.value.as_ref().map(|v| match v {
            number_data_point::Value::AsDouble(d) => *d,
            number_data_point::Value::AsInt(i) => *i as f64,
        }) else {
            return;
        };
        let t = Timestamp(p.time_unix_nano.min(i64::MAX as u64) as i64);
        let attrs = attributes_from(&p.attributes);
        self.call_from_metric(resource, name, &attrs, t);
        let mut key = format!("{res_key}\u{1f}{name}");
        for (k, v) in &attrs {
            key.push('\u{1f}');
            key.push_str(k);
            key.push('=');
            key.push_str(&v.to_string());
        }
        let v = if cumulative {
            let prev = self.cumulative.insert(key.clone(), (t, v));
            match prev {
                Some((pt, pv)) if t > pt && v >= pv => (v - pv) / ((t.0 - pt.0) as f64 / 1e9),
                // First point or a counter reset: no rate yet.
                _ => return,
            }
        } else {
            v
        };
        let tuning = &self.tuning;
        let series = self.series.entry(key.clone()).or_insert_with(|| {
            Series::new(
                key,
                METRIC_ANOMALY,
                resource.clone(),
                metric_entity(resource, name, &attrs),
                name.to_string(),
                unit.to_string(),
                attrs,
                tuning.clone(),
            )
        });
        if let Some(sig) = series.observe(t, v) {
            self.out.push(sig);
        }
    }

    /// `rpc.client.*` with `peer.service` on the caller's resource, `rpc.server.*` on the
    /// callee's: either names a call edge.
    fn call_from_metric(&mut self, res: &Attributes, name: &str, attrs: &Attributes, t: Timestamp) {
        let Some(peer) = attrs.get("peer.service").and_then(|v| v.as_str()) else {
            return;
        };
        let Some(me) = res.get("service.name").and_then(|v| v.as_str()) else {
            return;
        };
        let (caller, callee) = if name.starts_with("rpc.client") {
            (me, peer)
        } else if name.starts_with("rpc.server") {
            (peer, me)
        } else {
            return;
        };
        let e = self
            .calls
            .entry(Call {
                caller: caller.to_string(),
                callee: callee.to_string(),
            })
            .or_insert(t);
        *e = (*e).max(t);
    }

    /// Keeps the series map bounded: drops the least recently seen tenth beyond the limit.
    fn evict(&mut self) {
        if self.series.len() <= MAX_SERIES {
            return;
        }
        let mut seen: Vec<(Timestamp, String)> = self
            .series
            .iter()
            .map(|(k, s)| (s.last_seen(), k.clone()))
            .collect();
        seen.sort();
        for (_, k) in seen.into_iter().take(MAX_SERIES / 10) {
            self.series.remove(&k);
            self.cumulative.remove(&k);
        }
    }
}

/// The entity a metric series is about: its resource's, except for client-side call metrics
/// (`rpc.client.*` with `peer.service`), which measure the service called: a slow or
/// unreachable callee shows there first, in every caller.
fn metric_entity(resource: &Attributes, name: &str, attrs: &Attributes) -> daytwo_model::Entity {
    if name.starts_with("rpc.client")
        && let Some(peer) = attrs.get("peer.service").and_then(|v| v.as_str())
    {
        let mut e = daytwo_model::Entity::new(daytwo_model::EntityKind::Service, peer)
            .with_attr("service.name", peer);
        for k in [
            "k8s.namespace.name",
            "k8s.cluster.name",
            "service.namespace",
        ] {
            if let Some(v) = resource.get(k) {
                e = e.with_attr(k, v.clone());
            }
        }
        return e;
    }
    entity_from_resource(resource)
}

/// The identity part of a resource: its identity attributes, in a fixed order.
fn resource_key(res: &Attributes) -> String {
    let mut k = String::new();
    for id in daytwo_model::entity::IDENTITY_KEYS {
        if let Some(v) = res.get(*id) {
            k.push_str(id);
            k.push('=');
            match v {
                serde_json::Value::String(s) => k.push_str(s),
                other => k.push_str(&other.to_string()),
            }
            k.push(';');
        }
    }
    k
}

#[cfg(test)]
mod tests;
