//! A real Alertmanager (Debian's prometheus-alertmanager) posts its webhook to the real
//! `daytwo collector`: two alerts that share a cause (the same pod) become one incident and one
//! page, and the resolved notifications are taken as signals too.

mod common;

use common::*;
use std::process::{Command, Stdio};
use std::time::Duration;

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_alerts_with_one_cause_are_one_incident_and_one_page() {
    let test = "two_alerts_with_one_cause_are_one_incident_and_one_page";
    let Some(am_bin) = require_program(test, "prometheus-alertmanager", "prometheus-alertmanager")
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let receiver = Receiver::start();
    let url = receiver.url();
    let data = tmp.path().join("data");
    let d = Daytwo::start(
        &[
            "collector",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            "127.0.0.1:0",
            "--otlp-addr",
            "127.0.0.1:0",
            "--webhook",
            &url,
            "--notify-backoff-initial-ms",
            "100",
        ],
        &tmp.path().join("collector.log"),
        true,
    );

    let am_port = free_port();
    let config = tmp.path().join("alertmanager.yml");
    std::fs::write(
        &config,
        format!(
            "route:\n  receiver: daytwo\n  group_by: [namespace, pod]\n  group_wait: 0s\n  group_interval: 1s\n  repeat_interval: 1h\n\
             receivers:\n  - name: daytwo\n    webhook_configs:\n      - url: {}/api/v1/alerts/alertmanager\n        send_resolved: true\n",
            d.server()
        ),
    )
    .unwrap();
    let am_log = tmp.path().join("alertmanager.log");
    let _am = Killed(
        Command::new(am_bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                tmp.path().join("am").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&am_log).unwrap())
            .spawn()
            .unwrap(),
    );
    let am = format!("http://127.0.0.1:{am_port}");
    assert!(
        wait_until(Duration::from_secs(30), || get(&format!("{am}/-/ready"))
            .is_some_and(|(c, _)| c == 200)),
        "alertmanager not ready:\n{}",
        read(&am_log)
    );

    let alerts = |ends: Option<String>| {
        let ends = ends
            .map(|e| format!(r#","endsAt":"{e}""#))
            .unwrap_or_default();
        let starts = rfc3339_now_plus(-5);
        format!(
            r#"[{{"labels":{{"alertname":"HighErrorRate","namespace":"shop","pod":"cart-1","severity":"warning"}},"annotations":{{"summary":"5xx above 5%"}},"startsAt":"{starts}"{ends}}},
               {{"labels":{{"alertname":"HighLatency","namespace":"shop","pod":"cart-1","severity":"warning"}},"annotations":{{"summary":"p99 above 2 s"}},"startsAt":"{starts}"{ends}}}]"#
        )
    };
    let (code, body) = post_json(&format!("{am}/api/v2/alerts"), &alerts(None)).unwrap();
    assert_eq!(code, 200, "{body}");

    let inc = wait_for(Duration::from_secs(30), || {
        d.incidents()
            .into_iter()
            .find(|i| i["root_causes"][0]["entity"]["name"] == "shop/cart-1")
    })
    .unwrap_or_else(|| {
        panic!(
            "no incident; collector log:\n{}\nalertmanager log:\n{}",
            read(&d.log),
            read(&am_log)
        )
    });
    assert_eq!(inc["root_causes"][0]["entity"]["kind"], "pod");
    let names: Vec<String> = inc["signals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            s["attributes"]["prometheus.alert.name"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert!(
        names.contains(&"HighErrorRate".into()) && names.contains(&"HighLatency".into()),
        "{names:?}"
    );
    let id = inc["id"].as_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(15), || receiver
        .delivered(&id, "trigger")
        .len()
        == 1));

    // Resolve both in Alertmanager: it posts `resolved`, which joins the same incident.
    let (code, body) = post_json(
        &format!("{am}/api/v2/alerts"),
        &alerts(Some(rfc3339_now_plus(-1))),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    assert!(
        wait_until(Duration::from_secs(30), || {
            let fresh: serde_json::Value =
                serde_json::from_str(&d.cli(&["incidents", "show", &id, "--json"])).unwrap();
            fresh["signals"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["name"] == "prometheus.alert.resolved")
                .count()
                == 2
        }),
        "resolved alerts never arrived; collector log:\n{}",
        read(&d.log)
    );
    std::thread::sleep(Duration::from_secs(1));
    let all = d.incidents();
    assert_eq!(all.len(), 1, "one incident, not two: {all:#?}");
    assert_eq!(
        receiver.delivered(&id, "trigger").len(),
        1,
        "one page, not two"
    );
    let (code, metrics) = get(&format!("{}/metrics", d.server())).unwrap();
    assert_eq!(code, 200);
    assert!(
        metrics.contains("daytwo_collector_alerts_received_total{status=\"firing\"} 2"),
        "{metrics}"
    );
}
