//! Spans → per-service series and call edges.
//!
//! Spans are bucketed by start time. A bucket closes once spans [`GRACE_BUCKETS`] buckets later
//! have arrived (exports are roughly in time order, not exactly), and then yields, for every
//! service seen so far: its call rate (SERVER and CONSUMER spans per second, 0 when it had none
//! while others had spans), latency p50 and p99 of those spans, their error ratio (error status
//! or an `exception` event), and the p50
//! of the CLIENT spans its callers made into it, and its *fan-out*: the mean number of child
//! spans (its own INTERNAL and CLIENT spans, database calls, …) per SERVER/CONSUMER span
//! (`span.server.children`). Fan-out is how much work the service's own handler does per
//! request: an exception thrown half-way, or a changed return value that sends the code down
//! another path, changes it in the service whose code changed, even when no span carries an
//! error status and latency barely moves. A bucket that no span at all fell into is a gap in
//! the data and yields nothing.
//!
//! Call edges come from parent links: a SERVER/CONSUMER span whose parent span belongs to
//! another service is a call from that service. Parents and children may arrive in either
//! order (live exporters send a child that ended first before its parent); a bounded index of
//! recent spans and of children still waiting for their parent covers both.

use super::Call;
use super::series::Scale;
use daytwo_model::{Attributes, Timestamp};
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

/// A bucket closes when spans this many buckets after its end have arrived.
const GRACE_BUCKETS: i64 = 1;
/// Spans indexed for parent links are kept for this many buckets.
const INDEX_BUCKETS: i64 = 6;
/// At most this many spans are indexed (the oldest go first).
const MAX_INDEXED: usize = 500_000;
/// Fewer spans than this in a bucket give no latency quantile.
const MIN_FOR_QUANTILE: usize = 3;
/// Fewer SERVER spans than this in a bucket give no fan-out.
const MIN_FOR_FANOUT: usize = 1;
/// The fan-out series: child spans per SERVER/CONSUMER span.
pub(super) const FANOUT_METRIC: &str = "span.server.children";
/// Fewer calls than this in a bucket give no error ratio.
const MIN_FOR_RATIO: u32 = 5;

/// One value of a span-derived series.
pub(super) struct SpanSample {
    pub service_key: String,
    pub resource: Arc<Attributes>,
    pub metric: &'static str,
    pub unit: &'static str,
    pub signal: &'static str,
    pub time: Timestamp,
    pub value: f64,
    /// For client-side latency: the calling service.
    pub caller: Option<String>,
    /// The scale its series is scored on.
    pub scale: Scale,
}

#[derive(Default)]
struct Acc {
    server: Vec<f64>,
    /// Keys of those SERVER/CONSUMER spans, to count their children when the bucket closes.
    server_keys: Vec<Vec<u8>>,
    errors: u32,
    /// Durations of the CLIENT spans calling this service, by calling service.
    inbound_client: HashMap<u32, Vec<f64>>,
}

#[derive(Clone, Copy)]
struct Indexed {
    svc: u32,
    duration: f64,
    bucket: i64,
}

pub(super) struct SpanStats {
    bucket_ns: i64,
    buckets: BTreeMap<i64, HashMap<u32, Acc>>,
    services: Vec<(String, Arc<Attributes>)>,
    by_key: HashMap<String, u32>,
    index: HashMap<Vec<u8>, Indexed>,
    /// SERVER spans whose parent has not arrived yet: parent key → (service, bucket).
    waiting: HashMap<Vec<u8>, (u32, i64)>,
    /// Child spans seen per parent span key (children may arrive before their parent).
    children: HashMap<Vec<u8>, u32>,
    order: VecDeque<(i64, Vec<u8>)>,
    watermark: i64,
    closed_before: i64,
    calls: HashMap<Call, Timestamp>,
}

fn span_key(trace: &[u8], span: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(trace.len() + span.len());
    k.extend_from_slice(trace);
    k.extend_from_slice(span);
    k
}

/// A SERVER/CONSUMER span that failed: error status, or an `exception` event (OpenTelemetry's
/// semantic convention for an exception recorded on a span), which many instrumentations
/// record on the span where a handler threw without setting the status.
fn failed(span: &Span) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == StatusCode::Error as i32)
        || span.events.iter().any(|e| e.name == EXCEPTION_EVENT)
}

/// The span event name OpenTelemetry's semantic conventions give a recorded exception.
const EXCEPTION_EVENT: &str = "exception";

fn is_server(kind: i32) -> bool {
    kind == SpanKind::Server as i32 || kind == SpanKind::Consumer as i32
}

impl SpanStats {
    pub(super) fn new(bucket_secs: i64) -> Self {
        SpanStats {
            bucket_ns: bucket_secs * 1_000_000_000,
            buckets: BTreeMap::new(),
            services: Vec::new(),
            by_key: HashMap::new(),
            index: HashMap::new(),
            waiting: HashMap::new(),
            children: HashMap::new(),
            order: VecDeque::new(),
            watermark: i64::MIN,
            closed_before: i64::MIN,
            calls: HashMap::new(),
        }
    }

    pub(super) fn take_calls(&mut self) -> Vec<(Call, Timestamp)> {
        let mut v: Vec<(Call, Timestamp)> = self.calls.drain().collect();
        v.sort();
        v
    }

    fn service(&mut self, resource: &Attributes) -> Option<u32> {
        let name = resource.get("service.name")?.as_str()?;
        let ns = resource
            .get("k8s.namespace.name")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let cluster = resource
            .get("k8s.cluster.name")
            .and_then(|v| v.as_str())
            .unwrap_or("");
        let key = format!("svc={name};ns={ns};cluster={cluster}");
        if let Some(i) = self.by_key.get(&key) {
            return Some(*i);
        }
        let keep = [
            "service.name",
            "service.namespace",
            "k8s.namespace.name",
            "k8s.cluster.name",
        ];
        let attrs: Attributes = resource
            .iter()
            .filter(|(k, _)| keep.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let i = self.services.len() as u32;
        self.services.push((key.clone(), Arc::new(attrs)));
        self.by_key.insert(key, i);
        Some(i)
    }

    fn link(&mut self, caller: u32, callee: u32, client_duration: f64, bucket: i64) {
        if caller == callee {
            return;
        }
        let t = Timestamp(bucket);
        let call = Call {
            caller: self.service_name(caller),
            callee: self.service_name(callee),
        };
        let e = self.calls.entry(call).or_insert(t);
        *e = (*e).max(t);
        if bucket >= self.closed_before
            && let Some(acc) = self
                .buckets
                .get_mut(&bucket)
                .map(|b| b.entry(callee).or_default())
        {
            acc.inbound_client
                .entry(caller)
                .or_default()
                .push(client_duration);
        }
    }

    fn service_name(&self, i: u32) -> String {
        self.services[i as usize]
            .1
            .get("service.name")
            .and_then(|v| v.as_str())
            .unwrap_or_default()
            .to_string()
    }

    /// Takes one span; pushes the samples of any bucket it closes.
    pub(super) fn span(&mut self, resource: &Attributes, span: &Span, out: &mut Vec<SpanSample>) {
        let Some(svc) = self.service(resource) else {
            return;
        };
        let start = span.start_time_unix_nano.min(i64::MAX as u64) as i64;
        let end = span.end_time_unix_nano.min(i64::MAX as u64) as i64;
        let duration = (end.saturating_sub(start)).max(0) as f64 / 1e9;
        let bucket = start - start.rem_euclid(self.bucket_ns);
        if bucket < self.closed_before {
            // Too late for its bucket, which was already measured.
            return;
        }
        let key = span_key(&span.trace_id, &span.span_id);
        let server = is_server(span.kind);
        let acc = self
            .buckets
            .entry(bucket)
            .or_default()
            .entry(svc)
            .or_default();
        if server {
            acc.server.push(duration);
            acc.server_keys.push(key.clone());
            if failed(span) {
                acc.errors += 1;
            }
        }
        if !span.parent_span_id.is_empty() {
            let pkey = span_key(&span.trace_id, &span.parent_span_id);
            let n = self.children.entry(pkey.clone()).or_insert(0);
            *n += 1;
            if *n == 1 {
                self.order.push_back((bucket, pkey));
            }
        }
        // Link to the parent (already here) or wait for it.
        if server && !span.parent_span_id.is_empty() {
            let pkey = span_key(&span.trace_id, &span.parent_span_id);
            match self.index.get(&pkey).copied() {
                Some(p) => self.link(p.svc, svc, p.duration, p.bucket),
                None => {
                    self.waiting.insert(pkey.clone(), (svc, bucket));
                    self.order.push_back((bucket, pkey));
                }
            }
        }
        if let Some((child, _)) = self.waiting.remove(&key) {
            self.link(svc, child, duration, bucket);
        }
        self.index.insert(
            key.clone(),
            Indexed {
                svc,
                duration,
                bucket,
            },
        );
        self.order.push_back((bucket, key));
        if start > self.watermark {
            self.watermark = start;
            self.close(self.watermark - GRACE_BUCKETS * self.bucket_ns, out);
        }
        self.prune();
    }

    /// End of input: closes every complete bucket (the last, partial one is dropped).
    pub(super) fn flush(&mut self, out: &mut Vec<SpanSample>) {
        if self.watermark == i64::MIN {
            return;
        }
        self.close(self.watermark, out);
        self.buckets.clear();
    }

    /// Closes every bucket that ends at or before `upto`.
    fn close(&mut self, upto: i64, out: &mut Vec<SpanSample>) {
        while let Some((&b, _)) = self.buckets.first_key_value() {
            if b + self.bucket_ns > upto {
                break;
            }
            let (b, accs) = self.buckets.pop_first().expect("non-empty");
            self.closed_before = b + self.bucket_ns;
            self.emit(b, accs, out);
        }
    }

    fn emit(&self, bucket: i64, mut accs: HashMap<u32, Acc>, out: &mut Vec<SpanSample>) {
        let secs = self.bucket_ns as f64 / 1e9;
        let time = Timestamp(bucket);
        for (i, (key, resource)) in self.services.iter().enumerate() {
            let acc = accs.remove(&(i as u32)).unwrap_or_default();
            let mut push =
                |metric: &'static str, unit: &'static str, value: f64, caller: Option<String>| {
                    let scale = match unit {
                        "s" => Scale::Log {
                            offset: super::LATENCY_LOG_OFFSET_SECS,
                        },
                        "{call}/s" => Scale::Count { per_secs: secs },
                        _ => Scale::Linear,
                    };
                    out.push(SpanSample {
                        scale,
                        service_key: match &caller {
                            Some(c) => format!("{key};caller={c}"),
                            None => key.clone(),
                        },
                        caller,
                        resource: resource.clone(),
                        metric,
                        unit,
                        signal: super::anomaly_signal_name(metric),
                        time,
                        value,
                    })
                };
            let calls = acc.server.len();
            if calls >= MIN_FOR_FANOUT {
                let kids: u64 = acc
                    .server_keys
                    .iter()
                    .map(|k| u64::from(self.children.get(k).copied().unwrap_or(0)))
                    .sum();
                push(FANOUT_METRIC, "{span}", kids as f64 / calls as f64, None);
            }
            push(
                "span.server.call.rate",
                "{call}/s",
                calls as f64 / secs,
                None,
            );
            if calls >= MIN_FOR_QUANTILE {
                let mut d = acc.server;
                d.sort_by(f64::total_cmp);
                push("span.server.duration.p50", "s", quantile(&d, 0.5), None);
                push("span.server.duration.p99", "s", quantile(&d, 0.99), None);
            }
            if calls as u32 >= MIN_FOR_RATIO {
                push(
                    "span.server.error.ratio",
                    "1",
                    acc.errors as f64 / calls as f64,
                    None,
                );
            }
            let mut callers: Vec<(u32, Vec<f64>)> = acc.inbound_client.into_iter().collect();
            callers.sort_by_key(|(c, _)| *c);
            for (caller, mut d) in callers {
                if d.len() >= MIN_FOR_QUANTILE {
                    d.sort_by(f64::total_cmp);
                    let name = self.service_name(caller);
                    push(
                        "span.client.duration.p50",
                        "s",
                        quantile(&d, 0.5),
                        Some(name),
                    );
                }
            }
        }
    }

    fn prune(&mut self) {
        let cutoff = self
            .watermark
            .saturating_sub(INDEX_BUCKETS * self.bucket_ns);
        while let Some((b, _)) = self.order.front() {
            if *b >= cutoff && self.order.len() <= MAX_INDEXED {
                break;
            }
            let (_, k) = self.order.pop_front().expect("non-empty");
            self.index.remove(&k);
            self.waiting.remove(&k);
            self.children.remove(&k);
        }
    }
}

/// The `q` quantile of sorted values (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
