//! `daytwo replay` end to end: the real binary on recordings this test writes.

mod common;
#[path = "../collector/tests/synth/mod.rs"]
mod synth;

use std::io::Write;
use std::process::Command;

fn replay(files: &[&std::path::Path]) -> (i32, String, String) {
    let out = Command::new(common::bin())
        .arg("replay")
        .args(files)
        .args(["--format", "json"])
        .output()
        .expect("run daytwo replay");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_latency_step_in_one_service_names_that_service() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shop.otlp.jsonl");
    let mut f = std::fs::File::create(&path).unwrap();
    for l in synth::lines(600, 400, 80.0) {
        writeln!(f, "{l}").unwrap();
    }
    drop(f);
    let (code, stdout, stderr) = replay(&[&path]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("stdout is one JSON document");
    let incidents = v["incidents"].as_array().expect("incidents");
    assert!(!incidents.is_empty(), "{stdout}");
    let mut causes: Vec<&serde_json::Value> = incidents
        .iter()
        .flat_map(|i| i["root_causes"].as_array().unwrap())
        .collect();
    causes.sort_by(|a, b| {
        b["score"]
            .as_f64()
            .unwrap()
            .total_cmp(&a["score"].as_f64().unwrap())
    });
    assert_eq!(causes[0]["entity"]["name"], "cart", "{stdout}");
    assert_eq!(causes[0]["entity"]["kind"], "service");
    assert_eq!(causes[0]["rule"], "daytwo.generic");
    let inc = &incidents[0];
    for field in [
        "id",
        "fingerprint",
        "status",
        "severity",
        "opened_at",
        "updated_at",
        "title",
        "signals",
        "links",
    ] {
        assert!(
            inc.get(field).is_some(),
            "incident JSON lacks {field}: {inc}"
        );
    }
}

#[test]
fn an_empty_file_gives_no_incidents_and_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.jsonl");
    std::fs::write(&path, "").unwrap();
    let (code, stdout, stderr) = replay(&[&path]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout.trim(), r#"{"incidents":[]}"#);
}

#[test]
fn a_bad_line_names_file_and_line_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.jsonl");
    std::fs::write(
        &path,
        "{\"resourceLogs\":[]}\n{\"resourceMetrics\": \"x\"}\n",
    )
    .unwrap();
    let (code, stdout, stderr) = replay(&[&path]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains(&format!("{}:2:", path.display())),
        "{stderr}"
    );
}
