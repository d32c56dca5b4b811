//! End to end with the real `daytwo collector` and real HTTP receivers on 127.0.0.1: a
//! receiver that is down through retries and an open circuit breaker still gets every page,
//! once, in order; silences hold back triggers but not the resolve of a page that went out;
//! PagerDuty-, Opsgenie- and Slack-shaped endpoints get requests that match the providers'
//! documented examples (tests/fixtures/notify); dead letters are listed and retried over the API.
//!
//! Incidents are opened by POSTing an Alertmanager payload with one critical alert, and
//! resolved with the API, so no kernel faults are needed.

mod common;

#[path = "fixtures/notify/conform.rs"]
mod conform_rs;

use common::*;
use conform_rs::conform;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request a fake endpoint got.
#[derive(Clone, Debug)]
struct Got {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: Value,
    answered: u16,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A real HTTP server on loopback that records every request on any path; answers 503 while
/// `down`, else 202 (what PagerDuty and Opsgenie answer).
struct Fake {
    addr: std::net::SocketAddr,
    got: Arc<Mutex<Vec<Got>>>,
    down: Arc<AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

impl Fake {
    fn start() -> Fake {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got: Arc<Mutex<Vec<Got>>> = Arc::default();
        let down = Arc::new(AtomicBool::new(false));
        let (g, d) = (got.clone(), down.clone());
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: axum::http::HeaderMap,
                  body: axum::body::Bytes| {
                let (g, d) = (g.clone(), d.clone());
                async move {
                    let answered = if d.load(Ordering::SeqCst) { 503 } else { 202 };
                    g.lock().unwrap().push(Got {
                        method: method.to_string(),
                        path: uri.path().to_string(),
                        query: uri.query().map(String::from),
                        headers: headers
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                            .collect(),
                        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                        answered,
                    });
                    axum::http::StatusCode::from_u16(answered).unwrap()
                }
            },
        );
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Fake {
            addr,
            got,
            down,
            _rt: rt,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Requests answered 2xx.
    fn taken(&self) -> Vec<Got> {
        self.got()
            .into_iter()
            .filter(|g| g.answered < 300)
            .collect()
    }
}

/// Opens an incident: one critical alert about pod `namespace/pod` in `cluster`. Returns the
/// incident id. (Alerts in the same cluster and namespace join one incident, so each test
/// incident gets its own namespace.)
fn open_incident(
    d: &Daytwo,
    cluster: &str,
    namespace: &str,
    pod: &str,
    token: Option<&str>,
) -> String {
    let payload = json!({
        "version": "4",
        "status": "firing",
        "receiver": "daytwo",
        "groupLabels": {},
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "PodCrashLooping", "severity": "critical", "cluster": cluster, "namespace": namespace, "pod": pod},
            "annotations": {"summary": format!("{pod} keeps crashing")},
            "startsAt": rfc3339_now_plus(-5),
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph",
            "fingerprint": format!("fp-{cluster}-{namespace}-{pod}"),
        }],
    });
    let (code, body) = request(
        "POST",
        &format!("{}/api/v1/alerts/alertmanager", d.server()),
        Some(&payload.to_string()),
        token,
    );
    assert_eq!(code, 200, "{body}\nlog:\n{}", read(&d.log));
    let v: Value = serde_json::from_str(&body).unwrap();
    let opened = v["incidents_opened"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        opened.len(),
        1,
        "one critical alert opens one incident: {body}\nlog:\n{}",
        read(&d.log)
    );
    opened[0].as_str().unwrap().to_string()
}

fn act(d: &Daytwo, id: &str, action: &str, token: Option<&str>) {
    let (code, body) = request(
        "POST",
        &format!("{}/api/v1/incidents/{id}/{action}", d.server()),
        None,
        token,
    );
    assert_eq!(code, 200, "{action} {id}: {body}");
}

fn collector(data: &Path, log: &Path, extra: &[&str]) -> Daytwo {
    let mut args = vec![
        "collector",
        "--data-dir",
        data.to_str().unwrap(),
        "--http-addr",
        "127.0.0.1:0",
        "--otlp-addr",
        "127.0.0.1:0",
        "--auto-resolve-after-secs",
        "0",
        "--notify-backoff-initial-ms",
        "50",
        "--notify-backoff-max-ms",
        "200",
    ];
    args.extend_from_slice(extra);
    Daytwo::start(&args, log, true)
}

fn metric(d: &Daytwo, line_prefix: &str) -> Option<f64> {
    let (_, text) = get(&format!("{}/metrics", d.server()))?;
    text.lines()
        .find(|l| l.starts_with(line_prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// (event, incident id) of a generic webhook delivery.
fn webhook_event(g: &Got) -> (String, String) {
    (
        g.body["event"].as_str().unwrap_or("").to_string(),
        g.body["incident"]["id"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn a_receiver_down_through_retries_and_an_open_breaker_gets_every_page_once_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Fake::start();
    hook.down.store(true, Ordering::SeqCst);
    let url = hook.url("/hook");
    let d = collector(
        &tmp.path().join("data"),
        &tmp.path().join("collector.log"),
        &[
            "--webhook",
            &url,
            "--notify-breaker-failures",
            "3",
            "--notify-breaker-cooldown-ms",
            "300",
        ],
    );
    let a = open_incident(&d, "eu-1", "shop", "cart-1", None);
    let b = open_incident(&d, "eu-1", "web", "web-2", None);
    act(&d, &a, "resolve", None);
    let c = open_incident(&d, "eu-1", "db", "pg-0", None);

    assert!(
        wait_until(Duration::from_secs(30), || hook.got().len() >= 6
            && metric(&d, "daytwo_notify_breaker_open{receiver=\"webhook\"}")
                == Some(1.0)),
        "expected at least six failed attempts and an open breaker; got {} attempts; log:\n{}",
        hook.got().len(),
        read(&d.log)
    );
    assert!(hook.taken().is_empty());
    assert!(read(&d.log).contains("Circuit breaker opened"));

    hook.down.store(false, Ordering::SeqCst);
    let want = [
        ("trigger".to_string(), a.clone()),
        ("trigger".to_string(), b.clone()),
        ("resolve".to_string(), a.clone()),
        ("trigger".to_string(), c.clone()),
    ];
    assert!(
        wait_until(Duration::from_secs(30), || hook.taken().len() >= want.len()
            && metric(&d, "daytwo_notify_breaker_open{receiver=\"webhook\"}")
                == Some(0.0)),
        "not everything arrived once the receiver was up: {:?}\nlog:\n{}",
        hook.taken().iter().map(webhook_event).collect::<Vec<_>>(),
        read(&d.log)
    );
    std::thread::sleep(Duration::from_millis(500));
    let taken: Vec<(String, String)> = hook.taken().iter().map(webhook_event).collect();
    for w in &want {
        assert_eq!(
            taken.iter().filter(|t| *t == w).count(),
            1,
            "{w:?} arrives exactly once: {taken:?}"
        );
    }
    assert_eq!(taken.len(), want.len(), "{taken:?}");
    let pos = |e: &str, id: &str| taken.iter().position(|t| t.0 == e && t.1 == id).unwrap();
    assert!(pos("trigger", &a) < pos("resolve", &a), "{taken:?}");
    // Every attempt of one notification carried the same delivery id.
    let got = hook.got();
    let ids_of = |e: &str, id: &str| {
        got.iter()
            .filter(|g| webhook_event(g) == (e.to_string(), id.to_string()))
            .map(|g| g.header("x-daytwo-delivery").unwrap_or("").to_string())
            .collect::<std::collections::HashSet<_>>()
    };
    assert_eq!(ids_of("trigger", &a).len(), 1);
}

#[test]
fn a_silence_holds_back_the_trigger_but_not_the_resolve_of_a_page_that_went_out() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Fake::start();
    let data = tmp.path().join("data");
    let log = tmp.path().join("collector.log");
    let write_config = |silenced: bool| {
        let silences = if silenced {
            format!(
                "  silences:\n    - match: {{cluster: eu-1}}\n      starts_at: \"{}\"\n      ends_at: \"{}\"\n      comment: shop upgrade (ops-1234)\n",
                rfc3339_now_plus(-60),
                rfc3339_now_plus(3600)
            )
        } else {
            String::new()
        };
        let path = tmp.path().join("daytwo.yaml");
        std::fs::write(
            &path,
            format!(
                "collector:\n  receivers:\n    - name: oncall\n      kind: webhook\n      url: {}\n{silences}",
                hook.url("/hook")
            ),
        )
        .unwrap();
        path
    };

    // Paged before the silence.
    let config = write_config(false);
    let mut d = collector(&data, &log, &["--config", config.to_str().unwrap()]);
    let before = open_incident(&d, "eu-1", "shop", "cart-1", None);
    assert!(wait_until(Duration::from_secs(20), || {
        hook.taken()
            .iter()
            .any(|g| webhook_event(g) == ("trigger".into(), before.clone()))
    }));
    d.stop();

    // The silence begins (a restart with the new configuration).
    let config = write_config(true);
    let d = collector(&data, &log, &["--config", config.to_str().unwrap()]);
    let during = open_incident(&d, "eu-1", "web", "web-2", None);
    let elsewhere = open_incident(&d, "us-1", "shop", "cart-1", None);
    act(&d, &during, "ack", None);
    act(&d, &during, "resolve", None);
    act(&d, &before, "resolve", None);
    act(&d, &elsewhere, "resolve", None);
    assert!(
        wait_until(Duration::from_secs(20), || {
            let t: Vec<_> = hook.taken().iter().map(webhook_event).collect();
            t.contains(&("resolve".into(), before.clone()))
                && t.contains(&("resolve".into(), elsewhere.clone()))
        }),
        "log:\n{}",
        read(&d.log)
    );
    std::thread::sleep(Duration::from_millis(500));
    let taken: Vec<(String, String)> = hook.taken().iter().map(webhook_event).collect();
    assert!(
        !taken.iter().any(|t| t.1 == during),
        "the silenced incident sends nothing, not even a lone resolve: {taken:?}"
    );
    assert_eq!(
        taken.iter().filter(|t| t.1 == before).count(),
        2,
        "trigger before the silence, resolve during it: {taken:?}"
    );
    assert!(read(&d.log).contains("shop upgrade (ops-1234)"));
}

#[test]
fn pagerduty_opsgenie_and_slack_get_their_documented_payloads() {
    let tmp = tempfile::tempdir().unwrap();
    let pd = Fake::start();
    let og = Fake::start();
    let slack = Fake::start();
    let config = tmp.path().join("daytwo.yaml");
    std::fs::write(
        &config,
        format!(
            "collector:\n  public_url: https://daytwo.example.com\n  receivers:\n\
             \x20   - {{name: pd, kind: pagerduty, url: \"{}\", routing_key: R0UT1NGKEY0123456789abcdefghijkl}}\n\
             \x20   - {{name: og, kind: opsgenie, url: \"{}\", api_key: eb243592-faa2-4ba2-a551q-1afdf565c889}}\n\
             \x20   - {{name: slack, kind: slack, url: \"{}\"}}\n",
            pd.url("/v2/enqueue"),
            og.url(""),
            slack.url("/services/T0000/B0000/XXXX"),
        ),
    )
    .unwrap();
    let d = collector(
        &tmp.path().join("data"),
        &tmp.path().join("collector.log"),
        &["--config", config.to_str().unwrap()],
    );
    let id = open_incident(&d, "eu-1", "shop", "cart-1", None);
    for fake in [&pd, &og, &slack] {
        assert!(
            wait_until(Duration::from_secs(20), || fake.taken().len() == 1),
            "log:\n{}",
            read(&d.log)
        );
    }
    act(&d, &id, "ack", None);
    act(&d, &id, "resolve", None);
    for fake in [&pd, &og, &slack] {
        assert!(
            wait_until(Duration::from_secs(20), || fake.taken().len() == 3),
            "log:\n{}",
            read(&d.log)
        );
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/notify");
    let check = |g: &Got, fixture: &str| {
        let f = conform::load(&fixtures, fixture);
        let mut errs =
            conform::check_request(&f, &g.method, &g.path, g.query.as_deref(), &g.headers);
        errs.extend(conform::check_body(&f, &g.body));
        assert!(errs.is_empty(), "{errs:#?}\n{:#}", g.body);
    };

    let p = pd.taken();
    for (g, fixture) in p.iter().zip([
        "pagerduty_trigger",
        "pagerduty_acknowledge",
        "pagerduty_resolve",
    ]) {
        check(g, fixture);
        assert_eq!(g.body["routing_key"], "R0UT1NGKEY0123456789abcdefghijkl");
        assert_eq!(g.body["dedup_key"], id.as_str());
    }
    let t = &p[0].body;
    assert_eq!(t["payload"]["severity"], "critical");
    assert_eq!(
        t["payload"]["custom_details"]["root_cause"],
        "pod shop/cart-1"
    );
    assert_eq!(
        t["payload"]["custom_details"]["evidence_link"],
        format!("https://daytwo.example.com/api/v1/incidents/{id}")
    );
    assert!(
        t["payload"]["custom_details"]["explanation"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );

    let o = og.taken();
    for (g, fixture) in o
        .iter()
        .zip(["opsgenie_create", "opsgenie_acknowledge", "opsgenie_close"])
    {
        check(g, fixture);
        assert_eq!(
            g.header("authorization"),
            Some("GenieKey eb243592-faa2-4ba2-a551q-1afdf565c889")
        );
    }
    assert_eq!(o[0].body["alias"], id.as_str());
    assert_eq!(o[0].body["priority"], "P1");
    assert_eq!(o[1].path, format!("/v2/alerts/{id}/acknowledge"));
    assert_eq!(o[2].path, format!("/v2/alerts/{id}/close"));

    let s = slack.taken();
    for g in &s {
        check(g, "slack_message");
        assert_eq!(g.path, "/services/T0000/B0000/XXXX");
    }
    assert!(s[0].body.to_string().contains("pod shop/cart-1"));
    assert!(
        s[1].body["text"]
            .as_str()
            .unwrap()
            .starts_with("Acknowledged")
    );
    assert!(s[2].body["text"].as_str().unwrap().starts_with("Resolved"));
}

#[test]
fn dead_letters_are_listed_and_retried_over_the_api() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Fake::start();
    hook.down.store(true, Ordering::SeqCst);
    let url = hook.url("/hook");
    let d = collector(
        &tmp.path().join("data"),
        &tmp.path().join("collector.log"),
        &[
            "--webhook",
            &url,
            "--notify-max-age-secs",
            "1",
            // Keep the breaker out of the way: an open breaker holds deliveries, and a held
            // delivery is only dead-lettered at its next attempt.
            "--notify-breaker-failures",
            "1000",
            "--token",
            "s3cret",
        ],
    );
    let id = open_incident(&d, "eu-1", "shop", "cart-1", Some("s3cret"));
    let dead = wait_for(Duration::from_secs(30), || {
        let (code, body) = get(&format!("{}/api/v1/notifications/dead", d.server()))?;
        assert_eq!(code, 200, "{body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        v["dead_letters"].as_array()?.first().cloned()
    })
    .unwrap_or_else(|| panic!("nothing was dead-lettered; log:\n{}", read(&d.log)));
    assert_eq!(dead["incident_id"], id.as_str());
    assert_eq!(dead["receiver"], "webhook");
    assert_eq!(dead["event"], "trigger");
    let retry = format!(
        "{}/api/v1/notifications/dead/{}/retry",
        d.server(),
        dead["id"]
    );
    assert_eq!(request("POST", &retry, None, None).0, 401);
    assert_eq!(request("POST", &retry, None, Some("wrong")).0, 401);
    hook.down.store(false, Ordering::SeqCst);
    let (code, body) = request("POST", &retry, None, Some("s3cret"));
    assert_eq!(code, 202, "{body}");
    assert_eq!(
        request(
            "POST",
            &format!("{}/api/v1/notifications/dead/999999/retry", d.server()),
            None,
            Some("s3cret")
        )
        .0,
        404
    );
    assert!(
        wait_until(Duration::from_secs(20), || hook
            .taken()
            .iter()
            .any(|g| webhook_event(g) == ("trigger".into(), id.clone()))),
        "log:\n{}",
        read(&d.log)
    );
    let (_, body) = get(&format!("{}/api/v1/notifications/dead", d.server())).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["dead_letters"],
        json!([])
    );
    let taken = hook.taken();
    assert_eq!(
        taken[0].header("x-daytwo-delivery"),
        dead["delivery_id"].as_str()
    );
}

/// Runs `daytwo ARGS --server URL`: (exit code, stdout, stderr).
fn daytwo_cli(d: &Daytwo, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(bin())
        .args(args)
        .arg("--server")
        .arg(d.server())
        .env_remove("DAYTWO_TOKEN")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn events(fake: &Fake) -> Vec<(String, String)> {
    fake.taken().iter().map(webhook_event).collect()
}

#[test]
fn a_silence_made_with_the_cli_survives_a_restart_and_its_held_trigger_goes_out_when_it_is_expired()
{
    let tmp = tempfile::tempdir().unwrap();
    let hook = Fake::start();
    let data = tmp.path().join("data");
    let log = tmp.path().join("collector.log");
    let url = hook.url("/hook");
    let flags = ["--webhook", url.as_str(), "--token", "s3cret"];
    let mut d = collector(&data, &log, &flags);
    // Paged before the silence: its resolve must still arrive during the silence.
    let before = open_incident(&d, "eu-1", "db", "pg-0", Some("s3cret"));
    assert!(
        wait_until(Duration::from_secs(20), || events(&hook)
            .contains(&("trigger".into(), before.clone()))),
        "log:\n{}",
        read(&d.log)
    );
    let add = [
        "silences",
        "add",
        "cluster=eu-1",
        "--duration",
        "1h",
        "--comment",
        "shop upgrade (CHG-77)",
        "--author",
        "alice",
    ];
    let (code, _, err) = daytwo_cli(&d, &add);
    assert_eq!(code, 1, "no token: the server refuses: {err}");
    assert!(err.contains("401"), "{err}");
    let (code, _, err) = daytwo_cli(&d, &["silences", "add", "cluster", "-c", "x"]);
    assert_eq!(code, 2, "a malformed matcher is a usage error: {err}");
    let mut with_token = add.to_vec();
    with_token.extend(["--token", "s3cret"]);
    let (code, out, err) = daytwo_cli(&d, &with_token);
    assert_eq!(code, 0, "{err}");
    let id = out.trim().to_string();
    assert_eq!(id.len(), 16, "add prints the id: {out:?}");

    let held = open_incident(&d, "eu-1", "shop", "cart-1", Some("s3cret"));
    let short = open_incident(&d, "eu-1", "web", "web-2", Some("s3cret"));
    let elsewhere = open_incident(&d, "us-1", "shop", "cart-1", Some("s3cret"));
    act(&d, &short, "resolve", Some("s3cret"));
    act(&d, &before, "resolve", Some("s3cret"));
    assert!(
        wait_until(Duration::from_secs(20), || {
            let e = events(&hook);
            e.contains(&("trigger".into(), elsewhere.clone()))
                && e.contains(&("resolve".into(), before.clone()))
        }),
        "log:\n{}",
        read(&d.log)
    );

    // The silence is stored: it outlives a restart and still holds.
    d.stop();
    let d = collector(&data, &log, &flags);
    let (code, out, err) = daytwo_cli(&d, &["silences", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap();
    let s = &listed["silences"][0];
    assert_eq!(s["id"], id.as_str());
    assert_eq!(s["state"], "active");
    assert_eq!(s["created_by"], "alice");
    assert_eq!(s["match"], json!({"cluster": "eu-1"}));
    let (_, table, _) = daytwo_cli(&d, &["silences", "list"]);
    assert!(
        table.contains(&id) && table.contains("cluster=eu-1") && table.contains("CHG-77"),
        "{table}"
    );
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        !events(&hook).iter().any(|e| e.1 == held || e.1 == short),
        "nothing for silenced incidents: {:?}",
        events(&hook)
    );

    assert!(
        wait_until(Duration::from_secs(10), || metric(
            &d,
            "daytwo_notify_held "
        ) == Some(1.0)),
        "one trigger held (the resolved one was dropped)"
    );
    let (code, _, err) = daytwo_cli(&d, &["silences", "expire", &id, "--token", "s3cret"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(Duration::from_secs(20), || events(&hook)
            .contains(&("trigger".into(), held.clone()))),
        "the held trigger goes out once the silence is expired; log:\n{}",
        read(&d.log)
    );
    assert!(wait_until(Duration::from_secs(10), || {
        metric(&d, "daytwo_notify_released_total ") == Some(1.0)
            && metric(&d, "daytwo_notify_held ") == Some(0.0)
    }));
    act(&d, &held, "resolve", Some("s3cret"));
    assert!(wait_until(Duration::from_secs(20), || events(&hook)
        .contains(&("resolve".into(), held.clone()))));
    std::thread::sleep(Duration::from_millis(500));
    let got = events(&hook);
    assert!(
        !got.iter().any(|e| e.1 == short),
        "resolved while silenced: never paged, no lone resolve: {got:?}"
    );
    assert_eq!(got.iter().filter(|e| e.1 == held).count(), 2, "{got:?}");
    let (_, out, _) = daytwo_cli(&d, &["silences", "list", "--json"]);
    assert_eq!(
        serde_json::from_str::<Value>(&out).unwrap()["silences"],
        json!([]),
        "an expired silence is hidden without --expired"
    );
    let (_, out, _) = daytwo_cli(&d, &["silences", "list", "--expired", "--json"]);
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["silences"][0]["state"], "expired");
    assert!(read(&d.log).contains("shop upgrade (CHG-77)"));
}

#[test]
fn chatty_receivers_get_one_message_per_group_pagers_one_alert_per_incident_and_repeats_stop_at_ack()
 {
    let tmp = tempfile::tempdir().unwrap();
    let chat = Fake::start();
    let pd = Fake::start();
    let config = tmp.path().join("daytwo.yaml");
    std::fs::write(
        &config,
        format!(
            "collector:\n  receivers:\n\
             \x20   - {{name: chat, kind: webhook, url: \"{}\"}}\n\
             \x20   - {{name: pd, kind: pagerduty, url: \"{}\", routing_key: R0UT1NGKEY}}\n\
             \x20 routes:\n\
             \x20   - match: {{}}\n\
             \x20     receivers: [chat, pd]\n\
             \x20     group_by: [cluster]\n\
             \x20     group_wait_secs: 3\n\
             \x20     group_interval_secs: 3600\n\
             \x20     repeat_interval_secs: 1\n",
            chat.url("/hook"),
            pd.url("/v2/enqueue"),
        ),
    )
    .unwrap();
    let d = collector(
        &tmp.path().join("data"),
        &tmp.path().join("collector.log"),
        &["--config", config.to_str().unwrap()],
    );
    let a = open_incident(&d, "eu-1", "shop", "cart-1", None);
    let b = open_incident(&d, "eu-1", "web", "web-2", None);
    let c = open_incident(&d, "us-1", "db", "pg-0", None);
    let first_triggers = |f: &Fake| -> Vec<Value> {
        f.taken()
            .into_iter()
            .filter(|g| g.body["event"] == "trigger" && g.body.get("repeat").is_none())
            .map(|g| g.body)
            .collect()
    };
    assert!(
        wait_until(Duration::from_secs(20), || first_triggers(&chat).len() >= 2),
        "log:\n{}",
        read(&d.log)
    );
    let groups = first_triggers(&chat);
    assert_eq!(groups.len(), 2, "one message per cluster: {groups:#?}");
    let eu = groups
        .iter()
        .find(|g| g["group"]["labels"]["cluster"] == "eu-1")
        .expect("an eu-1 group");
    let ids: Vec<&str> = eu["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [a.as_str(), b.as_str()], "{eu:#}");
    assert_eq!(eu["group"]["count"], 2);
    assert_eq!(eu["incident"]["id"], a.as_str());
    let us = groups
        .iter()
        .find(|g| g["group"]["labels"]["cluster"] == "us-1")
        .unwrap();
    assert_eq!(us["incident"]["id"], c.as_str());
    assert_eq!(metric(&d, "daytwo_notify_grouped_total "), Some(2.0));

    // PagerDuty: one alert per incident, keyed by its id, whatever the grouping.
    let pd_keys = || -> Vec<String> {
        pd.taken()
            .iter()
            .filter(|g| g.body["event_action"] == "trigger")
            .map(|g| g.body["dedup_key"].as_str().unwrap().to_string())
            .collect()
    };
    assert!(wait_until(Duration::from_secs(20), || {
        let k = pd_keys();
        [&a, &b, &c].iter().all(|id| k.contains(id))
    }));

    // Repeats while open and unacknowledged.
    let repeats_of = |f: &Fake, id: &str| {
        f.taken()
            .iter()
            .filter(|g| g.body["repeat"].is_u64() && g.body["incident"]["id"] == id)
            .count()
    };
    assert!(
        wait_until(Duration::from_secs(20), || repeats_of(&chat, &a) >= 2),
        "log:\n{}",
        read(&d.log)
    );
    let r = chat
        .taken()
        .into_iter()
        .find(|g| g.body["repeat"] == 1 && g.body["incident"]["id"] == a.as_str())
        .unwrap();
    assert_eq!(r.body["event"], "trigger");
    assert!(
        r.body.get("incidents").is_none(),
        "repeats are per incident"
    );
    act(&d, &a, "ack", None);
    assert!(wait_until(Duration::from_secs(20), || events(&chat)
        .contains(&("acknowledge".into(), a.clone()))));
    let after_ack = repeats_of(&chat, &a);
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(repeats_of(&chat, &a), after_ack, "no repeat after the ack");
    assert!(repeats_of(&chat, &b) > 0, "b is still open and repeats");
    assert!(
        wait_until(Duration::from_secs(20), || pd
            .taken()
            .iter()
            .any(
                |g| g.body["event_action"] == "acknowledge" && g.body["dedup_key"] == a.as_str()
            )),
        "the pager hears the ack"
    );
}

#[test]
fn a_receiver_that_keeps_failing_hands_its_pages_to_its_fallback() {
    let tmp = tempfile::tempdir().unwrap();
    let primary = Fake::start();
    let backup = Fake::start();
    primary.down.store(true, Ordering::SeqCst);
    let config = tmp.path().join("daytwo.yaml");
    std::fs::write(
        &config,
        format!(
            "collector:\n  receivers:\n\
             \x20   - {{name: primary, kind: webhook, url: \"{}\", fallback: backup}}\n\
             \x20   - {{name: backup, kind: webhook, url: \"{}\"}}\n\
             \x20 routes:\n    - match: {{}}\n      receivers: [primary]\n",
            primary.url("/hook"),
            backup.url("/hook"),
        ),
    )
    .unwrap();
    let d = collector(
        &tmp.path().join("data"),
        &tmp.path().join("collector.log"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--notify-breaker-failures",
            "3",
            "--notify-breaker-cooldown-ms",
            "500",
            "--notify-fallback-after-ms",
            "300",
        ],
    );
    let id = open_incident(&d, "eu-1", "shop", "cart-1", None);
    assert!(
        wait_until(Duration::from_secs(20), || events(&backup)
            .contains(&("trigger".into(), id.clone()))),
        "the fallback gets the page while the primary's breaker is open; log:\n{}",
        read(&d.log)
    );
    assert!(
        primary.got().len() >= 3,
        "the breaker opened after 3 failures"
    );
    assert!(read(&d.log).contains("also queued to its fallback"));
    act(&d, &id, "resolve", None);
    assert!(wait_until(Duration::from_secs(20), || events(&backup)
        .contains(&("resolve".into(), id.clone()))));
    primary.down.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(20), || events(&primary).len() >= 2),
        "the primary gets its pages once it is back; log:\n{}",
        read(&d.log)
    );
    std::thread::sleep(Duration::from_millis(500));
    let want = vec![
        ("trigger".to_string(), id.clone()),
        ("resolve".to_string(), id.clone()),
    ];
    assert_eq!(events(&primary), want, "in order, once each");
    assert_eq!(events(&backup), want, "copied once each");
}

#[test]
fn kill_9_in_the_middle_of_retries_delivers_the_page_once_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let hook = Fake::start();
    hook.down.store(true, Ordering::SeqCst);
    let data = tmp.path().join("data");
    let log = tmp.path().join("collector.log");
    let url = hook.url("/hook");
    let flags = [
        "--webhook",
        url.as_str(),
        "--notify-breaker-failures",
        "1000",
    ];
    let mut d = collector(&data, &log, &flags);
    let id = open_incident(&d, "eu-1", "shop", "cart-1", None);
    assert!(
        wait_until(Duration::from_secs(20), || hook.got().len() >= 3),
        "log:\n{}",
        read(&d.log)
    );
    d.kill9();
    let failed_before = hook.got().len();
    hook.down.store(false, Ordering::SeqCst);
    let d = collector(&data, &log, &flags);
    assert!(
        wait_until(Duration::from_secs(20), || !hook.taken().is_empty()),
        "log:\n{}",
        read(&d.log)
    );
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(events(&hook), [("trigger".to_string(), id.clone())], "once");
    let ids: std::collections::HashSet<String> = hook
        .got()
        .iter()
        .map(|g| g.header("x-daytwo-delivery").unwrap_or("").to_string())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "every attempt, before and after the kill, is one delivery"
    );
    assert!(hook.got().len() > failed_before);
}
