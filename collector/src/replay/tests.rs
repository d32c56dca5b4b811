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
