//! The HTTP API of the real `daytwo collector`, end to end: incident lists page with a `next`
//! cursor without repeating or skipping an incident (also while new incidents open), time-range
//! filters are inclusive at `since` and exclusive at `until`, a reopened fingerprint links to the
//! earlier incident, the silences calls check their input, and the OpenAPI document names every
//! route. Incidents are opened by POSTing Alertmanager payloads whose `startsAt` sets `opened_at`.

mod common;

use common::*;
use serde_json::{Value, json};
use std::time::Duration;

fn collector(tmp: &std::path::Path, extra: &[&str]) -> Daytwo {
    let data = tmp.join("data");
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
    ];
    args.extend_from_slice(extra);
    Daytwo::start(&args, &tmp.join("collector.log"), true)
}

/// Opens (or joins) an incident: one critical alert about pod `ns/pod` that started `ago`
/// seconds ago. Returns the ids of incidents it opened.
fn fire(d: &Daytwo, ns: &str, pod: &str, ago: i64, token: Option<&str>) -> Vec<String> {
    let starts = rfc3339_now_plus(-ago);
    let payload = json!({
        "version": "4", "status": "firing", "receiver": "daytwo",
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager.example:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "PodCrashLooping", "severity": "critical", "cluster": "eu-1", "namespace": ns, "pod": pod},
            "annotations": {"summary": format!("{pod} keeps crashing")},
            "startsAt": starts, "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus.example:9090/graph",
            "fingerprint": format!("fp-{ns}-{pod}"),
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
    v["incidents_opened"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap().to_string())
        .collect()
}

fn list(d: &Daytwo, query: &str) -> (u16, Value) {
    let (code, body) = request(
        "GET",
        &format!("{}/api/v1/incidents?{query}", d.server()),
        None,
        None,
    );
    (code, serde_json::from_str(&body).unwrap_or(Value::Null))
}

fn ids(page: &Value) -> Vec<String> {
    page["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_string())
        .collect()
}

fn opened_at(d: &Daytwo, id: &str) -> String {
    let (_, body) = get(&format!("{}/api/v1/incidents/{id}", d.server())).unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    v["opened_at"].as_str().unwrap().to_string()
}

#[test]
fn lists_page_with_a_cursor_and_filter_by_time_range() {
    let tmp = tempfile::tempdir().unwrap();
    let d = collector(tmp.path(), &[]);
    // Oldest first: ns0 opened 50 minutes ago … ns4 10 minutes ago.
    let mut opened = Vec::new();
    for (n, ago) in [3000, 2400, 1800, 1200, 600].into_iter().enumerate() {
        let got = fire(&d, &format!("ns{n}"), "p", ago, None);
        assert_eq!(got.len(), 1, "ns{n}: {got:?}\nlog:\n{}", read(&d.log));
        opened.push(got[0].clone());
    }
    let newest_first: Vec<String> = opened.iter().rev().cloned().collect();

    let (code, p1) = list(&d, "limit=2");
    assert_eq!(code, 200, "{p1}");
    assert_eq!(ids(&p1), newest_first[..2]);
    let next = p1["next"].as_str().expect("a next cursor").to_string();
    // An incident opening between two pages sorts before the first page: it never shows up
    // in later pages, and nothing is skipped or repeated.
    let late = fire(&d, "ns-late", "p", 0, None);
    assert_eq!(late.len(), 1);
    let (_, p2) = list(&d, &format!("limit=2&cursor={next}"));
    assert_eq!(ids(&p2), newest_first[2..4]);
    let next = p2["next"].as_str().expect("a next cursor").to_string();
    let (_, p3) = list(&d, &format!("limit=2&cursor={next}"));
    assert_eq!(ids(&p3), newest_first[4..]);
    assert_eq!(p3["next"], Value::Null, "the last page says so");
    let (_, all) = list(&d, "limit=1000");
    assert_eq!(ids(&all)[0], late[0]);
    assert_eq!(all["next"], Value::Null);

    // since is inclusive, until exclusive, both on opened_at.
    let since = opened_at(&d, &opened[1]);
    let until = opened_at(&d, &opened[3]);
    let enc = |t: &str| t.replace('+', "%2B").replace(':', "%3A");
    let (code, r) = list(&d, &format!("since={}&until={}", enc(&since), enc(&until)));
    assert_eq!(code, 200, "{r}");
    assert_eq!(ids(&r), [opened[2].clone(), opened[1].clone()]);
    // Paging inside a time range.
    let (_, r1) = list(&d, &format!("since={}&limit=1", enc(&since)));
    assert_eq!(ids(&r1), [late[0].clone()]);
    let mut seen = ids(&r1);
    let mut cursor = r1["next"].as_str().map(String::from);
    while let Some(c) = cursor {
        let (_, r) = list(&d, &format!("since={}&limit=1&cursor={c}", enc(&since)));
        seen.extend(ids(&r));
        cursor = r["next"].as_str().map(String::from);
    }
    let mut want = vec![late[0].clone()];
    want.extend(newest_first[..4].iter().cloned());
    assert_eq!(seen, want);

    for bad in [
        "cursor=garbage",
        "since=yesterday",
        "limit=ten",
        "status=done",
        "colour=red",
    ] {
        let (code, v) = list(&d, bad);
        assert_eq!(code, 400, "{bad}: {v}");
        assert!(v["error"].as_str().is_some_and(|e| !e.is_empty()), "{v}");
    }

    // The CLI pages the same way.
    let out = d.cli(&["incidents", "list", "--limit", "2"]);
    let more = out
        .lines()
        .find_map(|l| l.strip_prefix("More: add --cursor "))
        .unwrap_or_else(|| panic!("no hint for the next page:\n{out}"))
        .to_string();
    let out2 = d.cli(&["incidents", "list", "--limit", "2", "--cursor", &more]);
    assert!(out2.contains(&newest_first[1]), "{out2}");
    assert!(!out2.contains(&late[0]), "{out2}");
}

#[test]
fn a_reopened_fingerprint_opens_a_new_incident_linked_to_the_earlier_one() {
    let tmp = tempfile::tempdir().unwrap();
    let d = collector(tmp.path(), &[]);
    let first = fire(&d, "shop", "cart-1", 120, None);
    assert_eq!(first.len(), 1);
    let (code, body) = request(
        "POST",
        &format!("{}/api/v1/incidents/{}/resolve", d.server(), first[0]),
        None,
        None,
    );
    assert_eq!(code, 200, "{body}");
    // The same alert fires again later: a new incident, linked back.
    let second = fire(&d, "shop", "cart-1", 5, None);
    assert_eq!(second.len(), 1, "log:\n{}", read(&d.log));
    assert_ne!(second[0], first[0]);
    let (_, body) = get(&format!("{}/api/v1/incidents/{}", d.server(), second[0])).unwrap();
    let inc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        inc["links"],
        json!([{"relation": "previous", "incident_id": first[0]}])
    );
    let (_, body) = get(&format!("{}/api/v1/incidents/{}", d.server(), first[0])).unwrap();
    let old: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(old["status"], "resolved");
    assert_eq!(old["fingerprint"], inc["fingerprint"]);
    let shown = d.cli(&["incidents", "show", &second[0]]);
    assert!(shown.contains(&format!("previous {}", first[0])), "{shown}");
    // A third time: linked to the second, not the first.
    request(
        "POST",
        &format!("{}/api/v1/incidents/{}/resolve", d.server(), second[0]),
        None,
        None,
    );
    let third = fire(&d, "shop", "cart-1", 1, None);
    let (_, body) = get(&format!("{}/api/v1/incidents/{}", d.server(), third[0])).unwrap();
    let inc: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(inc["links"][0]["incident_id"], second[0].as_str());
}

#[test]
fn silences_calls_check_their_input_and_the_openapi_document_names_every_route() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("daytwo.yaml");
    std::fs::write(
        &config,
        format!(
            "collector:\n  silences:\n    - match: {{cluster: staging}}\n      starts_at: \"{}\"\n      ends_at: \"{}\"\n      comment: load test\n",
            rfc3339_now_plus(-60),
            rfc3339_now_plus(3600)
        ),
    )
    .unwrap();
    let d = collector(
        tmp.path(),
        &["--config", config.to_str().unwrap(), "--token", "t0k"],
    );
    let url = format!("{}/api/v1/silences", d.server());
    let good = json!({"match": {"namespace": "shop"}, "duration_secs": 600, "created_by": "bob", "comment": "CHG-9"});
    assert_eq!(request("POST", &url, Some(&good.to_string()), None).0, 401);
    for (body, field) in [
        (
            json!({"duration_secs": 600, "created_by": "bob", "comment": "x"}),
            "match",
        ),
        (
            json!({"match": {"severity": "fatal"}, "duration_secs": 600, "created_by": "bob", "comment": "x"}),
            "severity",
        ),
        (
            json!({"match": {"namespace": "shop"}, "created_by": "bob", "comment": "x"}),
            "ends_at",
        ),
        (
            json!({"match": {"namespace": "shop"}, "duration_secs": 600, "created_by": "", "comment": "x"}),
            "created_by",
        ),
        (
            json!({"match": {"namespace": "shop"}, "duration_secs": 600, "created_by": "bob", "comment": ""}),
            "comment",
        ),
        (
            json!({"match": {"namespace": "shop"}, "ends_at": rfc3339_now_plus(-10), "created_by": "bob", "comment": "x"}),
            "ends_at",
        ),
        (
            json!({"match": {"namespace": "shop"}, "duration_secs": 600, "created_by": "bob", "comment": "x", "colour": 1}),
            "colour",
        ),
    ] {
        let (code, resp) = request("POST", &url, Some(&body.to_string()), Some("t0k"));
        assert_eq!(code, 400, "{body}: {resp}");
        assert!(
            resp.contains(field),
            "{body}: the error names {field}: {resp}"
        );
    }
    let (code, made) = request("POST", &url, Some(&good.to_string()), Some("t0k"));
    assert_eq!(code, 201, "{made}");
    let made: Value = serde_json::from_str(&made).unwrap();
    assert_eq!(made["state"], "active");
    assert_eq!(made["source"], "api");
    let id = made["id"].as_str().unwrap().to_string();

    let (code, body) = request("GET", &url, None, None);
    assert_eq!(code, 200);
    let all: Value = serde_json::from_str(&body).unwrap();
    let listed: Vec<(&str, &str)> = all["silences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["source"].as_str().unwrap()))
        .collect();
    assert_eq!(listed, [(id.as_str(), "api"), ("config-0", "config")]);
    assert_eq!(
        request("GET", &format!("{url}?state=bogus"), None, None).0,
        400
    );
    assert_eq!(
        request("DELETE", &format!("{url}/config-0"), None, Some("t0k")).0,
        409
    );
    assert_eq!(
        request(
            "DELETE",
            &format!("{url}/ffffffffffffffff"),
            None,
            Some("t0k")
        )
        .0,
        404
    );
    assert_eq!(request("DELETE", &format!("{url}/{id}"), None, None).0, 401);
    let (code, body) = request("DELETE", &format!("{url}/{id}"), None, Some("t0k"));
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["state"],
        "expired"
    );
    let (_, body) = request("GET", &format!("{url}?state=expired"), None, None);
    let expired: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(expired["silences"][0]["id"], id.as_str());

    let (code, body) = get(&format!("{}/api/v1/openapi.json", d.server())).unwrap();
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&body).unwrap();
    let routes = [
        ("/api/v1/incidents", "get"),
        ("/api/v1/incidents/{id}", "get"),
        ("/api/v1/incidents/{id}/ack", "post"),
        ("/api/v1/incidents/{id}/resolve", "post"),
        ("/api/v1/alerts/alertmanager", "post"),
        ("/api/v1/notifications/dead", "get"),
        ("/api/v1/notifications/dead/{id}/retry", "post"),
        ("/api/v1/silences", "get"),
        ("/api/v1/silences", "post"),
        ("/api/v1/silences/{id}", "delete"),
    ];
    for (path, method) in routes {
        assert!(
            doc["paths"][path][method].is_object(),
            "openapi.json lacks {method} {path}"
        );
    }
    // Every documented route answers (no 404/405 from the router itself).
    for (path, method) in routes {
        let concrete = path.replace("{id}", "0");
        let (code, body) = request(
            &method.to_uppercase(),
            &format!("{}{concrete}", d.server()),
            Some("{}"),
            Some("t0k"),
        );
        assert_ne!(code, 405, "{method} {path}: {body}");
        if code == 404 {
            assert!(
                body.contains("error"),
                "{method} {path}: a routed 404 says why: {body}"
            );
        }
    }
}

/// GET with the response's Content-Type: (status, content type, body).
fn get_page(url: &str) -> (u16, String, String) {
    use std::io::{Read, Write};
    let rest = url.strip_prefix("http://").unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let mut s = std::net::TcpStream::connect(host).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut buf = String::new();
    s.read_to_string(&mut buf).unwrap();
    let status = buf.split_whitespace().nth(1).unwrap().parse().unwrap();
    let (head, body) = buf.split_once("\r\n\r\n").unwrap();
    let ctype = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-type:")
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    (status, ctype, body.to_string())
}

fn html_esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// Self-contained: no script, no stylesheet or image from anywhere, every link on this server.
fn assert_air_gapped(page: &str) {
    for banned in ["<script", "<link", "src=", "@import", "url("] {
        assert!(!page.contains(banned), "{banned} in the page:\n{page}");
    }
    for href in page.split("href=\"").skip(1) {
        assert!(href.starts_with('/'), "a link off this server: {href:.60}");
    }
}

#[test]
fn the_web_page_lists_incidents_and_shows_one_with_root_causes_evidence_and_timeline() {
    let tmp = tempfile::tempdir().unwrap();
    let d = collector(tmp.path(), &[]);
    let first = fire(&d, "shop", "cart-1", 300, None);
    request(
        "POST",
        &format!("{}/api/v1/incidents/{}/resolve", d.server(), first[0]),
        None,
        None,
    );
    let again = fire(&d, "shop", "cart-1", 60, None);
    let other = fire(&d, "web", "web-2", 30, None);
    let incident = |id: &str| -> Value {
        let (_, body) = get(&format!("{}/api/v1/incidents/{id}", d.server())).unwrap();
        serde_json::from_str(&body).unwrap()
    };

    let (code, ctype, page) = get_page(&format!("{}/", d.server()));
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert_air_gapped(&page);
    for id in [&first[0], &again[0], &other[0]] {
        assert!(
            page.contains(&format!("href=\"/incidents/{id}\"")),
            "{id} listed:\n{page}"
        );
        assert!(page.contains(&html_esc(incident(id)["title"].as_str().unwrap())));
    }
    // Newest first, as the API lists them.
    let pos = |id: &str| page.find(&format!("/incidents/{id}\"")).unwrap();
    assert!(pos(&other[0]) < pos(&again[0]) && pos(&again[0]) < pos(&first[0]));

    let (code, _, resolved) = get_page(&format!("{}/?status=resolved", d.server()));
    assert_eq!(code, 200);
    assert!(resolved.contains(&first[0]));
    assert!(!resolved.contains(&other[0]) && !resolved.contains(&again[0]));
    let (code, _, shop) = get_page(&format!("{}/?namespace=web&status=", d.server()));
    assert_eq!(code, 200);
    assert!(
        shop.contains(&other[0]) && !shop.contains(&again[0]),
        "{shop}"
    );
    let (code, _, bad) = get_page(&format!("{}/?since=yesterday", d.server()));
    assert_eq!(code, 400);
    assert!(bad.contains("since"), "{bad}");

    let (code, ctype, detail) = get_page(&format!("{}/incidents/{}", d.server(), again[0]));
    assert_eq!(code, 200, "{detail}");
    assert!(ctype.starts_with("text/html"));
    assert_air_gapped(&detail);
    let inc = incident(&again[0]);
    let top = &inc["root_causes"][0];
    for want in [
        "Root causes",
        "Timeline",
        "Previous incident",
        top["rule"].as_str().unwrap(),
        top["explanation"].as_str().unwrap(),
        top["entity"]["name"].as_str().unwrap(),
        inc["signals"][0]["name"].as_str().unwrap(),
    ] {
        assert!(
            detail.contains(&html_esc(want)),
            "{want:?} missing from the detail page:\n{detail}"
        );
    }
    if let Some(r) = top["remediation"].as_str().filter(|r| !r.is_empty()) {
        assert!(detail.contains(&html_esc(r)));
    }
    for e in top["evidence"].as_array().into_iter().flatten() {
        assert!(detail.contains(&html_esc(e["text"].as_str().unwrap())));
    }
    assert!(detail.contains(&format!("href=\"/incidents/{}\"", first[0])));
    let (code, _, missing) = get_page(&format!("{}/incidents/nope", d.server()));
    assert_eq!(code, 404);
    assert!(missing.contains("No incident nope"));
}
