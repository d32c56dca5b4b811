use super::*;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Gauge, Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

fn gauge(
    svc: &str,
    name: &str,
    attrs: Vec<KeyValue>,
    t_secs: u64,
    v: f64,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", svc), kv("k8s.namespace.name", "shop")],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.into(),
                    data: Some(Data::Gauge(Gauge {
                        data_points: vec![NumberDataPoint {
                            attributes: attrs,
                            time_unix_nano: t_secs * 1_000_000_000,
                            value: Some(number_data_point::Value::AsDouble(v)),
                            ..Default::default()
                        }],
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Small deterministic noise in [-1, 1).
fn noise(i: u64) -> f64 {
    let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (x as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

fn run(series: impl Fn(u64) -> f64, n: u64, name: &str, attrs: Vec<KeyValue>) -> Vec<Signal> {
    let mut d = Detect::default();
    let mut out = Vec::new();
    for i in 0..n {
        out.extend(d.metrics(&gauge("cart", name, attrs.clone(), 1000 + i, series(i))));
    }
    out.extend(d.flush());
    out
}

#[test]
fn a_step_in_a_gauge_becomes_one_anomaly_signal_at_its_onset() {
    let sigs = run(
        |i| 100.0 + noise(i) + if i >= 300 { 40.0 } else { 0.0 },
        400,
        "http.server.request.duration.p99",
        vec![],
    );
    assert_eq!(sigs.len(), 1, "{sigs:#?}");
    let s = &sigs[0];
    assert_eq!(s.name, METRIC_ANOMALY);
    assert_eq!(s.time, Timestamp::from_unix_secs(1300));
    assert_eq!(s.entity.name, "cart");
    assert_eq!(s.attributes["daytwo.anomaly.direction"], "up");
    assert_eq!(
        s.attributes["metric.name"],
        "http.server.request.duration.p99"
    );
    let sigma = s.attributes["daytwo.anomaly.sigma"].as_f64().unwrap();
    assert!(sigma > 20.0, "{sigma}");
    assert!(!s.evidence.is_empty());
    // The same input gives the same id (redelivery is idempotent).
    let again = run(
        |i| 100.0 + noise(i) + if i >= 300 { 40.0 } else { 0.0 },
        400,
        "http.server.request.duration.p99",
        vec![],
    );
    assert_eq!(again[0].id, s.id);
}

#[test]
fn noise_alone_is_silent() {
    let sigs = run(|i| 50.0 + noise(i), 1000, "container.cpu.usage", vec![]);
    assert!(sigs.is_empty(), "{sigs:#?}");
}

#[test]
fn a_one_minute_series_is_scored_after_a_few_samples() {
    let mut d = Detect::default();
    let mut out = Vec::new();
    for i in 0..12u64 {
        let v = 0.2 + 0.01 * noise(i) + if i >= 8 { 1.0 } else { 0.0 };
        out.extend(d.metrics(&gauge("cart", "container.cpu.usage", vec![], 60 * i, v)));
    }
    out.extend(d.flush());
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].time, Timestamp::from_unix_secs(8 * 60));
}

#[test]
fn client_call_latency_is_about_the_service_called_and_names_an_edge() {
    let mut d = Detect::default();
    let mut out = Vec::new();
    for i in 0..400u64 {
        let v = 0.01 + 0.0001 * noise(i) + if i >= 300 { 0.2 } else { 0.0 };
        let req = gauge(
            "checkout",
            "rpc.client.duration.p50",
            vec![kv("peer.service", "payment")],
            i,
            v,
        );
        out.extend(d.metrics(&req));
    }
    out.extend(d.flush());
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].entity.name, "payment");
    assert_eq!(out[0].entity.attributes["service.name"], "payment");
    assert_eq!(out[0].attributes["peer.service"], "payment");
    let calls = d.take_calls();
    assert_eq!(
        calls
            .iter()
            .map(|(c, _)| (c.caller.as_str(), c.callee.as_str()))
            .collect::<Vec<_>>(),
        [("checkout", "payment")]
    );
}

#[test]
fn the_series_map_is_bounded() {
    let mut d = Detect::default();
    for i in 0..(MAX_SERIES as u64 + 10) {
        d.metrics(&gauge("cart", &format!("m{i}"), vec![], i, 1.0));
    }
    assert!(d.series_count() <= MAX_SERIES, "{}", d.series_count());
}
