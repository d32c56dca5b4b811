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

mod spans_scales {
    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};

    fn span(
        trace: u64,
        id: u64,
        parent: Option<u64>,
        kind: SpanKind,
        start_ns: u64,
        dur_ns: u64,
    ) -> Span {
        Span {
            trace_id: trace.to_be_bytes().repeat(2),
            span_id: id.to_be_bytes().to_vec(),
            parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            name: "op".into(),
            kind: kind as i32,
            start_time_unix_nano: start_ns,
            end_time_unix_nano: start_ns + dur_ns,
            ..Default::default()
        }
    }

    fn export(svc: &str, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![kv("service.name", svc), kv("k8s.namespace.name", "shop")],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// One request per second for `secs` seconds to service `ad`: a SERVER span lasting
    /// `dur(i)` ns with `kids(i)` INTERNAL children.
    fn run_spans(secs: u64, dur: impl Fn(u64) -> u64, kids: impl Fn(u64) -> u64) -> Vec<Signal> {
        let mut d = Detect::default();
        let mut out = Vec::new();
        for i in 0..secs {
            let t = (1_000 + i) * 1_000_000_000;
            let mut v = vec![span(i + 1, 1, None, SpanKind::Server, t, dur(i))];
            for k in 0..kids(i) {
                v.push(span(
                    i + 1,
                    10 + k,
                    Some(1),
                    SpanKind::Internal,
                    t + 1000,
                    1000,
                ));
            }
            out.extend(d.traces(&export("ad", v)));
        }
        out.extend(d.flush());
        out
    }

    /// Like `run_spans` (10 ms, no children), with an event named `event` on every other
    /// SERVER span from 600 s on.
    fn run_events(event: &str) -> Vec<Signal> {
        use opentelemetry_proto::tonic::trace::v1::span::Event;
        let mut d = Detect::default();
        let mut out = Vec::new();
        for i in 0..900u64 {
            let t = (1_000 + i) * 1_000_000_000;
            let mut s = span(i + 1, 1, None, SpanKind::Server, t, 10_000_000);
            if i >= 600 && i % 2 == 0 {
                s.events.push(Event {
                    time_unix_nano: t + 1000,
                    name: event.into(),
                    ..Default::default()
                });
            }
            out.extend(d.traces(&export("ad", vec![s])));
        }
        out.extend(d.flush());
        out
    }

    #[test]
    fn exception_events_on_server_spans_are_errors() {
        // The handler starts throwing on one request in two; the spans record the exception
        // as an event and leave the status unset.
        let sigs = run_events("exception");
        let e = named(&sigs, "span.server.error.ratio");
        assert_eq!(e.len(), 1, "{sigs:#?}");
        assert_eq!(e[0].name, ERROR_ANOMALY);
        assert_eq!(e[0].attributes["daytwo.anomaly.direction"], "up");
        assert!(
            e[0].time >= Timestamp::from_unix_secs(1600)
                && e[0].time < Timestamp::from_unix_secs(1630),
            "{:?}",
            e[0].time
        );
        // Near miss: any other event (a retry, a log line) is not a failure.
        let sigs = run_events("retry");
        assert!(
            named(&sigs, "span.server.error.ratio").is_empty(),
            "{sigs:#?}"
        );
    }

    fn named<'a>(sigs: &'a [Signal], metric: &str) -> Vec<&'a Signal> {
        sigs.iter()
            .filter(|s| s.attributes["metric.name"] == metric)
            .collect()
    }

    #[test]
    fn fan_out_falls_when_the_handler_stops_half_way() {
        // Every request did 3 things; from 600 s on, one request in two stops after the first.
        let sigs = run_spans(
            900,
            |_| 10_000_000,
            |i| if i >= 600 && i % 2 == 0 { 1 } else { 3 },
        );
        let f = named(&sigs, "span.server.children");
        assert_eq!(f.len(), 1, "{sigs:#?}");
        assert_eq!(f[0].name, FANOUT_ANOMALY);
        assert_eq!(f[0].attributes["daytwo.anomaly.direction"], "down");
        assert!(
            f[0].time >= Timestamp::from_unix_secs(1600)
                && f[0].time < Timestamp::from_unix_secs(1630)
        );
        assert!(
            FANOUT_ANOMALY.starts_with("daytwo.service.")
                && DETECTION_SIGNALS.contains(&FANOUT_ANOMALY)
        );
    }

    #[test]
    fn fan_out_noise_of_the_same_variance_is_silent() {
        // Children vary between 1 and 3 per request all along (the variance of the step above).
        let sigs = run_spans(
            900,
            |_| 10_000_000,
            |i| 1 + (noise(i) + 1.0).floor() as u64 * 2,
        );
        // The bucket means are quantised (0.4 apart), so more than half the baseline often
        // sits on one value and the detector may flag a move; its measured strength stays
        // that of the noise.
        for s in named(&sigs, "span.server.children") {
            let z = s.attributes["daytwo.anomaly.sigma"].as_f64().unwrap().abs();
            assert!(z < 5.0, "{s:#?}");
        }
    }

    #[test]
    fn a_latency_drop_to_almost_nothing_is_seen_on_the_log_scale() {
        // 60..190 ms (a wide spread: on a linear scale a drop to 0 is < 3σ), then 0.5 ms.
        let dur = |i: u64| {
            if i >= 600 {
                500_000
            } else {
                (125.0e6 + 65.0e6 * noise(i)) as u64
            }
        };
        let sigs = run_spans(900, dur, |_| 1);
        let l = named(&sigs, "span.server.duration.p50");
        assert_eq!(l.len(), 1, "{sigs:#?}");
        assert_eq!(l[0].attributes["daytwo.anomaly.direction"], "down");
        assert_eq!(l[0].attributes["daytwo.anomaly.scale"], "log");
        let sigma = l[0].attributes["daytwo.anomaly.sigma"].as_f64().unwrap();
        assert!(sigma < -10.0, "{sigma}");
        // The baseline is reported in seconds, not in log units.
        let base = l[0].attributes["daytwo.anomaly.baseline"].as_f64().unwrap();
        assert!((0.06..0.19).contains(&base), "{base}");
    }

    #[test]
    fn latency_noise_on_the_log_scale_is_silent() {
        let sigs = run_spans(900, |i| (125.0e6 + 65.0e6 * noise(i)) as u64, |_| 1);
        assert!(
            named(&sigs, "span.server.duration.p50").is_empty(),
            "{sigs:#?}"
        );
    }
}

#[test]
fn the_spread_floor_keeps_a_quantised_baseline_honest() {
    use series::spread_floor;
    // More than half the baseline on one value, real excursions besides: the MAD is 0, the
    // floor is not, and a move like the earlier ones is a few σ, not thousands. (The largest
    // deviation is left out, so it takes more than one earlier excursion.)
    let pre = [
        0.005, 0.005, 0.005, 0.0078, 0.005, 0.0082, 0.005, 0.005, 0.0075, 0.005,
    ];
    let f = spread_floor(&pre, 0.005);
    assert!(f > 0.0005, "{f}");
    assert!((0.0082 - 0.005) / f < 5.0);
    // Gaussian-like noise: the floor stays below the MAD's σ, so it changes nothing.
    let g: Vec<f64> = (0..200)
        .map(|i| noise(i) + noise(i + 7919) + noise(i + 104729))
        .collect();
    let mut s = g.clone();
    s.sort_by(f64::total_cmp);
    let med = s[100];
    let mut dev: Vec<f64> = g.iter().map(|x| (x - med).abs()).collect();
    dev.sort_by(f64::total_cmp);
    let mad_sigma = 1.4826 * dev[100];
    assert!(
        spread_floor(&g, med) < mad_sigma,
        "{} vs {mad_sigma}",
        spread_floor(&g, med)
    );
    assert_eq!(spread_floor(&[], 1.0), 0.0);
}

#[test]
fn a_one_minute_series_with_a_flipping_level_is_not_hundreds_of_sigma() {
    // A node level that flips between two values now and then (another pod's load), then flips
    // once more: detected maybe, but measured against the spread it always had. (One earlier
    // flip alone would be left out as the tail of an earlier incident.)
    let mut d = Detect::default();
    let mut out = Vec::new();
    let levels = [
        0.18, 0.75, 0.18, 0.19, 0.74, 0.18, 0.18, 0.75, 0.18, 0.75, 0.76, 0.75,
    ];
    for (i, v) in levels.iter().enumerate() {
        out.extend(d.metrics(&gauge(
            "cart",
            "k8s.node.cpu.utilization",
            vec![],
            60 * i as u64,
            *v,
        )));
    }
    out.extend(d.flush());
    for s in &out {
        let z = s.attributes["daytwo.anomaly.sigma"].as_f64().unwrap().abs();
        assert!(z < 20.0, "{s:#?}");
    }
}

/// A one-minute series fed `values` (one per minute); every signal it gives.
fn minutes(values: &[f64]) -> Vec<Signal> {
    let mut d = Detect::default();
    let mut out = Vec::new();
    for (i, v) in values.iter().enumerate() {
        let req = gauge(
            "checkout",
            "rpc.client.duration.p50",
            vec![kv("peer.service", "email")],
            60 * i as u64,
            *v,
        );
        out.extend(d.metrics(&req));
    }
    out.extend(d.flush());
    out
}

#[test]
fn a_baseline_that_begins_in_an_earlier_faults_tail_drops_it() {
    // The recording starts as an earlier fault ends (two slow minutes), the calls settle at
    // 3-4 ms, and then a new fault makes them take 750 ms for three minutes. With the tail
    // in its 5-sample baseline, the median would turn to the fault's own level by its third
    // minute and nothing would be confirmed.
    let out = minutes(&[
        0.875, 1.375, 0.003, 0.0037, 0.003, 0.004, 0.75, 0.75, 0.75, 0.0035, 0.003,
    ]);
    assert_eq!(out.len(), 1, "{out:#?}");
    let s = &out[0];
    assert_eq!(s.time, Timestamp::from_unix_secs(6 * 60), "{s:#?}");
    assert_eq!(s.attributes["daytwo.anomaly.direction"], "up");
    // Its measured strength is still honest about what the series did before (the dropped
    // tail counts in the spread floor): well above k, far below the 1 % floor's 10⁴.
    let sigma = s.attributes["daytwo.anomaly.sigma"].as_f64().unwrap();
    assert!(sigma > 3.0 && sigma < 100.0, "{sigma}");
}

#[test]
fn a_fault_early_in_a_series_is_not_taken_for_its_baseline() {
    // Four normal minutes, then a fault that lasts: the newer run is the change, not the
    // normal, and is detected as before.
    let out = minutes(&[
        0.0034, 0.0039, 0.003, 0.0035, 0.375, 0.375, 0.375, 0.375, 0.004,
    ]);
    assert_eq!(out.len(), 1, "{out:#?}");
    // The fault's first minute is the warm-up's fifth sample (not scored); its second one
    // is the onset.
    assert_eq!(out[0].time, Timestamp::from_unix_secs(5 * 60));
    assert_eq!(out[0].attributes["daytwo.anomaly.direction"], "up");
}

#[test]
fn a_settled_baseline_is_never_trimmed() {
    // Ten calm minutes fill the window; a fault of three minutes followed by calm again is
    // one detection, and the calm after it is not a second one.
    let mut v = vec![
        0.003, 0.0035, 0.0032, 0.003, 0.0034, 0.0031, 0.003, 0.0033, 0.003, 0.0032,
    ];
    v.extend([0.5, 0.5, 0.5, 0.003, 0.0031, 0.003, 0.0032, 0.003]);
    let out = minutes(&v);
    assert_eq!(out.len(), 1, "{out:#?}");
    assert_eq!(out[0].time, Timestamp::from_unix_secs(10 * 60));
}
