//! Rules reload without a restart, with the real binary: `daytwo up` runs with a rules
//! directory; a rule file written while it runs is picked up, and the next signal (a real
//! Alertmanager webhook payload over HTTP) gets the new rule's hypothesis. A broken file keeps
//! its previous version, is logged once with path:line:col, and moves the error counter.

mod common;

use common::*;
use std::path::Path;
use std::time::Duration;

const OLD_RULE: &str = "\
rules:
  - id: local.disk_alert
    description: The disk alert names the host.
    severity: warning
    title: \"Disk alert on {{ entity.name }}\"
    match:
      event: prometheus.alert.firing
      condition: 'attributes[\"prometheus.alert.name\"] == \"DiskAlmostFull\"'
    root_cause:
      score: 0.5
      explanation: disk
      remediation: clean up
";

fn new_rule(id: &str, alert: &str) -> String {
    format!(
        "\
rules:
  - id: {id}
    description: Error-rate alerts on a pod name the pod.
    severity: critical
    title: \"{alert} on {{{{ entity.name }}}}\"
    match:
      event: prometheus.alert.firing
      condition: 'attributes[\"prometheus.alert.name\"] == \"{alert}\"'
    root_cause:
      score: 0.77
      explanation: \"{{{{ entity.name }}}} fires {alert}\"
      remediation: look at the pod
"
    )
}

fn alert(name: &str, pod: &str) -> String {
    format!(
        r#"{{"receiver": "daytwo", "status": "firing", "version": "4",
  "groupKey": "{{}}:{{alertname=\"{name}\"}}", "truncatedAlerts": 0,
  "groupLabels": {{"alertname": "{name}"}},
  "commonLabels": {{"alertname": "{name}", "namespace": "shop", "pod": "{pod}", "severity": "warning"}},
  "commonAnnotations": {{}}, "externalURL": "http://alertmanager:9093",
  "alerts": [{{"status": "firing",
    "labels": {{"alertname": "{name}", "namespace": "shop", "pod": "{pod}", "severity": "warning"}},
    "annotations": {{"summary": "{name} on {pod}"}},
    "startsAt": "{}", "endsAt": "0001-01-01T00:00:00Z",
    "generatorURL": "", "fingerprint": "{pod}{name}"}}]}}"#,
        rfc3339_now_plus(0)
    )
}

fn metric(d: &Daytwo, name: &str) -> f64 {
    get(&format!("{}/metrics", d.server()))
        .and_then(|(_, body)| {
            body.lines()
                .find(|l| l.starts_with(name) && !l.starts_with('#'))
                .and_then(|l| l.split_whitespace().last())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(-1.0)
}

fn write(path: &Path, text: &str) {
    // Write then rename, as editors and ConfigMap updates do: the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn hypothesis_rules(d: &Daytwo) -> Vec<String> {
    d.incidents()
        .iter()
        .flat_map(|i| i["root_causes"].as_array().cloned().unwrap_or_default())
        .filter_map(|h| h["rule"].as_str().map(str::to_string))
        .collect()
}

#[test]
fn a_rule_written_while_up_runs_names_the_next_signals_cause() {
    let tmp = tempfile::tempdir().unwrap();
    let rules = tmp.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("old.yaml"), OLD_RULE).unwrap();
    let data = tmp.path().join("data");
    let d = Daytwo::start(
        &[
            "up",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-addr",
            "127.0.0.1:0",
            "--no-kmsg",
            "--no-logs",
            "--rules",
            rules.to_str().unwrap(),
            "--rules-reload-interval-ms",
            "100",
        ],
        &tmp.path().join("up.log"),
        true,
    );
    assert_eq!(
        metric(&d, "daytwo_rules_reloads_total"),
        0.0,
        "{}",
        read(&d.log)
    );

    // A new rule file while it runs.
    write(
        &rules.join("new.yaml"),
        &new_rule("local.error_rate", "HighErrorRate"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &d,
            "daytwo_rules_reloads_total"
        ) >= 1.0),
        "no reload; log:\n{}",
        read(&d.log)
    );
    let url = format!("{}/api/v1/alerts/alertmanager", d.server());
    let (code, body) = post_json(&url, &alert("HighErrorRate", "cart-1")).unwrap();
    assert!(code < 300, "{code} {body}");
    let rules_seen = wait_for(Duration::from_secs(20), || {
        let r = hypothesis_rules(&d);
        r.contains(&"local.error_rate".to_string()).then_some(r)
    });
    assert!(
        rules_seen.is_some(),
        "no hypothesis from the new rule: {:?}; log:\n{}",
        hypothesis_rules(&d),
        read(&d.log)
    );

    // A broken edit of the new file: logged once with its location, counted, and the
    // previous version of the file stays in force.
    write(
        &rules.join("new.yaml"),
        &new_rule("local.error_rate", "HighErrorRate").replace("score: 0.77", "score: 1.77"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &d,
            "daytwo_rules_reload_errors_total"
        ) >= 1.0),
        "no reload error counted; log:\n{}",
        read(&d.log)
    );
    let where_ = format!("{}:10:14", rules.join("new.yaml").display());
    // Let a few more polls pass: the error must not be logged again.
    std::thread::sleep(Duration::from_millis(500));
    let log = read(&d.log);
    assert_eq!(
        log.matches(&where_).count(),
        1,
        "the error at {where_} should be logged exactly once; log:\n{log}"
    );
    assert_eq!(
        metric(&d, "daytwo_rules_reload_errors_total"),
        1.0,
        "one failed reload"
    );
    let (code, _) = post_json(&url, &alert("HighErrorRate", "cart-2")).unwrap();
    assert!(code < 300);
    assert!(
        wait_until(Duration::from_secs(20), || {
            d.incidents().iter().any(|i| {
                i["title"].as_str() == Some("HighErrorRate on shop/cart-2")
                    && i["root_causes"][0]["rule"] == "local.error_rate"
            })
        }),
        "the previous version of the broken file should still match; incidents: {:?}",
        d.incidents()
    );

    // Fixing it is a good reload again.
    let before = metric(&d, "daytwo_rules_reloads_total");
    write(
        &rules.join("new.yaml"),
        &new_rule("local.error_rate2", "HighErrorRate"),
    );
    assert!(
        wait_until(Duration::from_secs(20), || metric(
            &d,
            "daytwo_rules_reloads_total"
        ) > before),
        "no reload after the fix; log:\n{}",
        read(&d.log)
    );
}
