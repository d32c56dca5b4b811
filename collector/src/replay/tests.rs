use super::*;
use proptest::prelude::*;

#[test]
fn each_line_type_parses() {
    let cases = [
        (r#"{"resourceMetrics":[]}"#, "metrics"),
        (r#"{"resourceLogs":[]}"#, "logs"),
        (r#"{"resourceSpans":[]}"#, "traces"),
        (r#"  {  "resourceSpans" : [] }"#, "traces"),
    ];
    for (line, want) in cases {
        let got = match parse_line(line.trim()).unwrap() {
            Export::Metrics(_) => "metrics",
            Export::Logs(_) => "logs",
            Export::Traces(_) => "traces",
        };
        assert_eq!(got, want, "{line}");
    }
}

#[test]
fn bad_lines_say_what_is_wrong() {
    let cases = [
        ("not json", "not a JSON object"),
        ("[1,2]", "not a JSON object"),
        (
            r#"{"somethingElse":[]}"#,
            "unknown export type \"somethingElse\"",
        ),
        (
            r#"{"resourceMetrics":{}}"#,
            "invalid ExportMetricsServiceRequest",
        ),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}"#,
            "invalid ExportTraceServiceRequest",
        ),
    ];
    for (line, want) in cases {
        let err = parse_line(line).unwrap_err();
        assert!(err.contains(want), "{line}: {err}");
    }
}

#[test]
fn a_bad_line_is_reported_with_its_number() {
    let text = "{\"resourceLogs\":[]}\n\n{\"resourceLogs\":[]}\n{oops\n";
    let err = read_lines(text.as_bytes(), Path::new("rec.jsonl"), 0).unwrap_err();
    assert_eq!(err.to_string().split(": ").next().unwrap(), "rec.jsonl:4");
}

#[test]
fn plain_and_gzip_read_the_same() {
    use std::io::Write;
    let dir = tempfile::tempdir().unwrap();
    let text = "{\"resourceLogs\":[]}\n{\"resourceSpans\":[]}\n";
    let plain = dir.path().join("a.jsonl");
    std::fs::write(&plain, text).unwrap();
    let gz = dir.path().join("a.data");
    let mut w = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).unwrap(),
        flate2::Compression::default(),
    );
    w.write_all(text.as_bytes()).unwrap();
    w.finish().unwrap();
    let a = read_file(&plain, 0).unwrap();
    let b = read_file(&gz, 0).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(
        a.iter().map(|l| (&l.export, l.line)).collect::<Vec<_>>(),
        b.iter().map(|l| (&l.export, l.line)).collect::<Vec<_>>()
    );
}

#[test]
fn a_missing_file_is_named() {
    let err = read_file(Path::new("/nonexistent/rec.jsonl"), 0).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/rec.jsonl"), "{err}");
}

proptest! {
    /// Any gauge point written the way the file exporter writes it reads back exactly, with
    /// the line's time the earliest point time, whether the file is plain or gzip.
    #[test]
    fn gauge_lines_round_trip(points in proptest::collection::vec((1u64..4_000_000_000_000_000_000, -1e12f64..1e12), 1..20), gzip: bool) {
        use std::io::Write;
        let dps: Vec<serde_json::Value> = points.iter().map(|(t, v)| serde_json::json!({"timeUnixNano": t.to_string(), "asDouble": v})).collect();
        let line = serde_json::json!({"resourceMetrics": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "x"}}]},
            "scopeMetrics": [{"metrics": [{"name": "m", "gauge": {"dataPoints": dps}}]}]}]}).to_string();
        let mut bytes = Vec::new();
        if gzip {
            let mut w = flate2::write::GzEncoder::new(&mut bytes, flate2::Compression::fast());
            writeln!(w, "{line}").unwrap();
            w.finish().unwrap();
        } else {
            writeln!(bytes, "{line}").unwrap();
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, &bytes).unwrap();
        let lines = read_file(&p, 0).unwrap();
        prop_assert_eq!(lines.len(), 1);
        prop_assert_eq!(lines[0].time, points.iter().map(|(t, _)| *t as i64).min().unwrap());
        let Export::Metrics(req) = &lines[0].export else { panic!("not metrics") };
        let Some(Data::Gauge(g)) = &req.resource_metrics[0].scope_metrics[0].metrics[0].data else { panic!("not a gauge") };
        for (p, (t, v)) in g.data_points.iter().zip(&points) {
            prop_assert_eq!(p.time_unix_nano, *t);
            // serde_json parses decimals to within an ulp or so, not always bit-exactly.
            let Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsDouble(got)) = p.value else { panic!("not a double") };
            prop_assert!((got - v).abs() <= 1e-12 * v.abs().max(1.0), "{} vs {}", got, v);
        }
    }
}

/// One line: a gauge point of `metric` for service `svc` (namespace `shop`) at `secs`.
fn point_line(svc: &str, metric: &str, secs: u64, v: f64) -> Line {
    let text = serde_json::json!({"resourceMetrics": [{"resource": {"attributes": [
        {"key": "service.name", "value": {"stringValue": svc}},
        {"key": "k8s.namespace.name", "value": {"stringValue": "shop"}}]},
        "scopeMetrics": [{"metrics": [{"name": metric, "gauge": {"dataPoints": [
            {"timeUnixNano": (secs * 1_000_000_000).to_string(), "asDouble": v}]}}]}]}]})
    .to_string();
    Line {
        file: 0,
        line: 0,
        time: (secs * 1_000_000_000) as i64,
        export: parse_line(&text).unwrap(),
    }
}

/// Replays one-minute series of `services` × `metrics` for `minutes`, each value from `f`.
fn replay_minutes(
    services: &[&str],
    metrics: &[&str],
    minutes: u64,
    f: impl Fn(usize, usize, u64) -> f64,
) -> ReplayReport {
    let mut lines = Vec::new();
    for m in 0..minutes {
        for (si, svc) in services.iter().enumerate() {
            for (mi, metric) in metrics.iter().enumerate() {
                lines.push(point_line(
                    svc,
                    metric,
                    1_700_000_000 + 60 * m,
                    f(si, mi, m),
                ));
            }
        }
    }
    run(lines, &ReplayOptions::default()).unwrap()
}

/// Deterministic noise in [-1, 1) from a seed.
fn unit_noise(seed: u64) -> f64 {
    let x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    (x as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
}

const SERVICES: &[&str] = &["cart", "checkout", "email", "payment"];
const METRICS: &[&str] = &[
    "http.server.request.duration.p99",
    "http.server.request.rate",
    "container.cpu.usage",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    /// The quorum keeps noise from paging: services whose metrics only jitter, each with one
    /// single-minute blip as large as you like somewhere, open no incident.
    #[test]
    fn noise_and_single_blips_open_nothing(
        seed in 0u64..1_000_000,
        blips in proptest::collection::vec((0usize..4, 0usize..3, 8u64..40, 2.0f64..50.0), 0..4),
        jitter in 0.0f64..0.05,
    ) {
        let r = replay_minutes(SERVICES, METRICS, 40, |s, m, t| {
            let base = [0.2, 3.0, 0.5][m];
            let mut v = base * (1.0 + jitter * unit_noise(seed ^ ((s as u64) << 40) ^ ((m as u64) << 32) ^ t));
            for &(bs, bm, bt, factor) in &blips {
                if (bs, bm, bt) == (s, m, t) {
                    v *= factor;
                }
            }
            v
        });
        prop_assert!(r.incidents.is_empty(), "{:#?}", r.incidents);
    }
}

#[test]
fn one_strong_lasting_symptom_alone_opens_nothing() {
    // One service's request rate up 75 % for good, everything else calm: a single symptom,
    // below the quorum of 2. A quiet service's rate moving by a request every few seconds is
    // what normal traffic does too (docs/replay.md, "Correlation").
    let r = replay_minutes(SERVICES, METRICS, 30, |s, m, t| {
        let base = [0.2, 0.27, 0.5][m] * (1.0 + 0.02 * unit_noise((s * 7 + m) as u64 * 1000 + t));
        if (s, m) == (2, 1) && t >= 15 {
            base * 1.75
        } else {
            base
        }
    });
    assert!(r.signals >= 1, "the change is detected: {r:?}");
    assert!(r.incidents.is_empty(), "{:#?}", r.incidents);
}

#[test]
fn two_services_going_wrong_together_open_one_incident() {
    // The positive control for the two tests above: the same calm world, with a fault in one
    // service that its caller's latency shows too, opens an incident.
    let r = replay_minutes(SERVICES, METRICS, 30, |s, m, t| {
        let base = [0.2, 3.0, 0.5][m] * (1.0 + 0.02 * unit_noise((s * 7 + m) as u64 * 1000 + t));
        if m == 0 && (s == 1 || s == 2) && (15..20).contains(&t) {
            base * 5.0
        } else {
            base
        }
    });
    assert_eq!(r.incidents.len(), 1, "{:#?}", r.incidents);
}
