//! Provider payloads: turns a queued notification (the canonical
//! `{"version":"1","event":…,"incident":…}` body) into the request one receiver kind expects.
//! Pure and deterministic, so every retry of one delivery sends the same bytes as long as the
//! receiver's configuration is unchanged.
//!
//! Entry point: [`render`]. Credentials (PagerDuty routing key, Opsgenie API key, webhook secret)
//! come from the receiver's configuration at send time and are never stored in the outbox.
//!
//! * `webhook`: the canonical body itself, signed (docs/notify.md).
//! * `pagerduty`: Events API v2 (`POST …/v2/enqueue`), `dedup_key` = incident id.
//! * `opsgenie`: Alert API: create `POST …/v2/alerts` (`alias` = incident id), acknowledge and
//!   close `POST …/v2/alerts/{alias}/acknowledge|close?identifierType=alias`.
//! * `slack`: an incoming-webhook message (Block Kit with a `text` fallback); acknowledge and
//!   resolve are follow-up messages.

use daytwo_model::{Incident, Severity};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{NotifyEvent, Receiver, ReceiverKind};

/// PagerDuty's limit on `payload.summary`.
pub const PAGERDUTY_SUMMARY_MAX_CHARS: usize = 1024;
/// Opsgenie's limit on `message`.
pub const OPSGENIE_MESSAGE_MAX_CHARS: usize = 130;
const OPSGENIE_DESCRIPTION_MAX_CHARS: usize = 15_000;
const OPSGENIE_ENTITY_MAX_CHARS: usize = 512;
/// Opsgenie's limits on `tags`: 20 tags of at most 50 characters.
const OPSGENIE_TAGS: usize = 20;
const OPSGENIE_TAG_MAX_CHARS: usize = 50;
/// Opsgenie's limit on `details`: 8000 characters in all (keys and values).
const OPSGENIE_DETAILS_MAX_CHARS: usize = 8000;
/// Slack's limit on a header block's text.
const SLACK_HEADER_MAX_CHARS: usize = 150;
/// Slack's limit on a section's text (3000) with room for the label.
const SLACK_TEXT_MAX_CHARS: usize = 2900;
const EVIDENCE_LINES: usize = 5;
const AFFECTED_ENTITIES: usize = 10;

/// One HTTP request, ready to send.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered {
    pub url: String,
    /// Extra headers besides `Content-Type: application/json`.
    pub headers: Vec<(&'static str, String)>,
    pub body: String,
}

/// The canonical body as stored in the outbox.
#[derive(Deserialize)]
struct Canonical {
    event: NotifyEvent,
    incident: Incident,
    /// A grouped trigger's incidents (the first is `incident`); chatty receivers only.
    #[serde(default)]
    incidents: Vec<Incident>,
    /// Set on a repeated trigger: how many repeats so far.
    #[serde(default)]
    repeat: Option<u32>,
}

/// Incidents listed in one grouped Slack message; the rest are counted.
const SLACK_GROUP_LISTED: usize = 10;

/// The request `receiver` gets for a queued canonical `body`. `link` is the incident's address
/// in daytwo's API, when the collector knows its public URL.
pub fn render(receiver: &Receiver, body: &str, link: Option<&str>) -> Result<Rendered, String> {
    if receiver.kind == ReceiverKind::Webhook {
        let mut headers = Vec::new();
        if let Some(secret) = receiver.secret.as_deref().filter(|s| !s.is_empty()) {
            headers.push((
                "X-Daytwo-Signature",
                super::deliver::sign(secret, body.as_bytes()),
            ));
        }
        return Ok(Rendered {
            url: receiver.url.clone(),
            headers,
            body: body.to_string(),
        });
    }
    let c: Canonical = serde_json::from_str(body)
        .map_err(|e| format!("the queued notification does not decode: {e}"))?;
    let link = link.map(|base| {
        format!(
            "{}/api/v1/incidents/{}",
            base.trim_end_matches('/'),
            c.incident.id
        )
    });
    let link = link.as_deref();
    let (url, headers, value) = match receiver.kind {
        ReceiverKind::Webhook => unreachable!("handled above"),
        ReceiverKind::Pagerduty => (
            receiver.url.clone(),
            Vec::new(),
            pagerduty(
                receiver.routing_key.as_deref().unwrap_or(""),
                c.event,
                &c.incident,
                link,
            ),
        ),
        ReceiverKind::Opsgenie => {
            let key = receiver.api_key.as_deref().unwrap_or("");
            (
                opsgenie_url(&receiver.url, c.event, &c.incident.id)?,
                vec![("Authorization", format!("GenieKey {key}"))],
                opsgenie(c.event, &c.incident, link),
            )
        }
        ReceiverKind::Slack if c.incidents.len() > 1 => (
            receiver.url.clone(),
            Vec::new(),
            slack_group(&c.incidents, link),
        ),
        ReceiverKind::Slack => {
            let mut v = slack(c.event, &c.incident, link);
            if let Some(n) = c.repeat {
                let prefix = format!("Still open and unacknowledged (reminder {n}): ");
                v["text"] = json!(truncate(
                    &format!("{prefix}{}", v["text"].as_str().unwrap_or("")),
                    SLACK_TEXT_MAX_CHARS
                ));
                let header = &mut v["blocks"][0]["text"]["text"];
                *header = json!(truncate(
                    &format!("Still open: {}", header.as_str().unwrap_or("")),
                    SLACK_HEADER_MAX_CHARS
                ));
            }
            (receiver.url.clone(), Vec::new(), v)
        }
    };
    Ok(Rendered {
        url,
        headers,
        body: value.to_string(),
    })
}

/// At most `max` characters of `s`, ending in `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn attr<'a>(incident: &'a Incident, key: &str) -> Option<&'a str> {
    incident
        .top()
        .and_then(|h| h.entity.attributes.get(key))
        .and_then(Value::as_str)
}

/// Where it happened, for PagerDuty's `source`: host or node, else the root cause's name.
fn source(incident: &Incident) -> String {
    ["host.name", "k8s.node.name"]
        .iter()
        .find_map(|k| attr(incident, k))
        .map(str::to_string)
        .or_else(|| incident.top().map(|h| h.entity.name.clone()))
        .unwrap_or_else(|| "daytwo".to_string())
}

fn root_cause(incident: &Incident) -> String {
    incident
        .top()
        .map(|h| format!("{} {}", h.entity.kind, h.entity.name))
        .unwrap_or_else(|| "unknown".to_string())
}

/// Distinct entities the incident's signals are about, root cause first.
fn affected(incident: &Incident) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let all = incident
        .top()
        .map(|h| &h.entity)
        .into_iter()
        .chain(incident.signals.iter().map(|s| &s.entity));
    for e in all {
        let name = format!("{} {}", e.kind, e.name);
        if !out.contains(&name) {
            out.push(name);
        }
        if out.len() == AFFECTED_ENTITIES {
            break;
        }
    }
    out
}

fn evidence(incident: &Incident) -> Vec<String> {
    let from_cause = incident.top().map(|h| &h.evidence[..]).unwrap_or(&[]);
    let lines: Vec<String> = if from_cause.is_empty() {
        incident
            .signals
            .iter()
            .flat_map(|s| &s.evidence)
            .map(|e| e.text.clone())
            .take(EVIDENCE_LINES)
            .collect()
    } else {
        from_cause
            .iter()
            .map(|e| e.text.clone())
            .take(EVIDENCE_LINES)
            .collect()
    };
    lines.into_iter().map(|l| truncate(&l, 500)).collect()
}

fn pagerduty(
    routing_key: &str,
    event: NotifyEvent,
    incident: &Incident,
    link: Option<&str>,
) -> Value {
    if event != NotifyEvent::Trigger {
        return json!({
            "routing_key": routing_key,
            "dedup_key": incident.id,
            "event_action": event.as_str(),
        });
    }
    let top = incident.top();
    let severity = match incident.severity {
        Severity::Critical => "critical",
        Severity::Warning => "warning",
        Severity::Info => "info",
    };
    let mut details = json!({
        "incident_id": incident.id,
        "root_cause": root_cause(incident),
        "rule": top.map(|h| h.rule.as_str()).unwrap_or(""),
        "score": top.map(|h| h.score).unwrap_or(0.0),
        "explanation": top.map(|h| h.explanation.as_str()).unwrap_or(""),
        "remediation": top.map(|h| h.remediation.as_str()).unwrap_or(""),
        "affected": affected(incident),
        "evidence": evidence(incident),
    });
    let mut payload = json!({
        "summary": truncate(&incident.title, PAGERDUTY_SUMMARY_MAX_CHARS),
        "timestamp": incident.opened_at.to_string(),
        "severity": severity,
        "source": source(incident),
        "component": top.map(|h| format!("{} {}", h.entity.kind, h.entity.name)).unwrap_or_default(),
        "class": top.map(|h| h.rule.as_str()).unwrap_or(""),
    });
    if let Some(group) = attr(incident, "k8s.cluster.name").or(attr(incident, "k8s.namespace.name"))
    {
        payload["group"] = json!(group);
    }
    let mut body = json!({
        "routing_key": routing_key,
        "dedup_key": incident.id,
        "event_action": "trigger",
        "client": "daytwo",
    });
    if let Some(link) = link {
        details["evidence_link"] = json!(link);
        body["client_url"] = json!(link);
        body["links"] =
            json!([{"href": link, "text": "Incident, root cause and evidence in daytwo"}]);
    }
    payload["custom_details"] = details;
    body["payload"] = payload;
    body
}

fn opsgenie_url(base: &str, event: NotifyEvent, alias: &str) -> Result<String, String> {
    let base = base.trim_end_matches('/');
    let base = base.strip_suffix("/v2/alerts").unwrap_or(base);
    let mut url = reqwest::Url::parse(&format!("{base}/v2/alerts"))
        .map_err(|e| format!("the Opsgenie URL does not parse: {e}"))?;
    let action = match event {
        NotifyEvent::Trigger => return Ok(url.to_string()),
        NotifyEvent::Acknowledge => "acknowledge",
        NotifyEvent::Resolve => "close",
    };
    url.path_segments_mut()
        .map_err(|_| "the Opsgenie URL cannot take a path".to_string())?
        .push(alias)
        .push(action);
    url.set_query(Some("identifierType=alias"));
    Ok(url.to_string())
}

fn opsgenie(event: NotifyEvent, incident: &Incident, link: Option<&str>) -> Value {
    match event {
        NotifyEvent::Acknowledge => {
            return json!({"user": "daytwo", "source": "daytwo", "note": "Acknowledged in daytwo."});
        }
        NotifyEvent::Resolve => {
            return json!({"user": "daytwo", "source": "daytwo", "note": "Resolved in daytwo: the incident is over."});
        }
        NotifyEvent::Trigger => {}
    }
    let top = incident.top();
    let priority = match incident.severity {
        Severity::Critical => "P1",
        Severity::Warning => "P3",
        Severity::Info => "P5",
    };
    let mut description = format!("Root cause: {}", root_cause(incident));
    if let Some(h) = top {
        description.push_str(&format!(
            " (rule {}, score {:.2})\n\n{}",
            h.rule, h.score, h.explanation
        ));
        if !h.remediation.is_empty() {
            description.push_str(&format!("\n\nRemediation: {}", h.remediation));
        }
    }
    let ev = evidence(incident);
    if !ev.is_empty() {
        description.push_str("\n\nEvidence:\n");
        description.push_str(&ev.join("\n"));
    }
    if let Some(link) = link {
        description.push_str(&format!("\n\n{link}"));
    }
    // Opsgenie's details are a map of strings to strings.
    let mut details = serde_json::Map::new();
    let mut put = |k: &str, v: String| {
        details.insert(k.to_string(), Value::String(v));
    };
    put("incident_id", incident.id.clone());
    put("root_cause", root_cause(incident));
    put("rule", top.map(|h| h.rule.clone()).unwrap_or_default());
    put("severity", incident.severity.as_str().to_string());
    put("affected", affected(incident).join(", "));
    if let Some(link) = link {
        put("evidence_link", link.to_string());
    }
    cap_total(&mut details, OPSGENIE_DETAILS_MAX_CHARS);
    let mut tags = vec!["daytwo".to_string(), incident.severity.as_str().to_string()];
    if let Some(h) = top {
        tags.push(h.rule.clone());
    }
    let tags: Vec<String> = tags
        .iter()
        .take(OPSGENIE_TAGS)
        .map(|t| truncate(t, OPSGENIE_TAG_MAX_CHARS))
        .collect();
    json!({
        "message": truncate(&incident.title, OPSGENIE_MESSAGE_MAX_CHARS),
        "alias": incident.id,
        "description": truncate(&description, OPSGENIE_DESCRIPTION_MAX_CHARS),
        "tags": tags,
        "details": details,
        "entity": truncate(&root_cause(incident), OPSGENIE_ENTITY_MAX_CHARS),
        "priority": priority,
    })
}

/// Shortens the longest string values of `map` until its keys and values hold at most `max`
/// characters in all.
fn cap_total(map: &mut serde_json::Map<String, Value>, max: usize) {
    let len = |m: &serde_json::Map<String, Value>| -> usize {
        m.iter()
            .map(|(k, v)| k.chars().count() + v.as_str().map_or(0, |s| s.chars().count()))
            .sum()
    };
    while len(map) > max {
        let excess = len(map) - max;
        let Some((key, longest)) = map
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.chars().count())))
            .max_by_key(|(_, n)| *n)
        else {
            return;
        };
        if longest <= 1 {
            return;
        }
        let keep = longest.saturating_sub(excess).max(1);
        let cut = truncate(map[&key].as_str().unwrap_or(""), keep);
        map.insert(key, Value::String(cut));
    }
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn mrkdwn(text: String) -> Value {
    json!({"type": "mrkdwn", "text": truncate(&text, SLACK_TEXT_MAX_CHARS)})
}

/// One message for incidents that opened together (a route with `group_by`).
fn slack_group(incidents: &[Incident], link: Option<&str>) -> Value {
    let worst = incidents
        .iter()
        .map(|i| i.severity)
        .max()
        .unwrap_or(Severity::Info);
    let sev = worst.as_str().to_uppercase();
    let n = incidents.len();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("[{sev}] {n} incidents opened together"), SLACK_HEADER_MAX_CHARS)}}),
    ];
    for i in incidents.iter().take(SLACK_GROUP_LISTED) {
        let id_ref = match link {
            Some(base) => {
                let url = base.replace(&incidents[0].id, &i.id);
                format!("<{url}|{}>", esc(&i.id))
            }
            None => format!("`{}`", esc(&i.id)),
        };
        let mut text = format!(
            "*{}* ({}) {id_ref}\n*Root cause:* {}",
            esc(&i.title),
            i.severity.as_str(),
            esc(&root_cause(i))
        );
        if let Some(h) = i.top() {
            text.push_str(&format!(
                " (rule `{}`)\n{}",
                esc(&h.rule),
                esc(&h.explanation)
            ));
        }
        blocks.push(json!({"type": "section", "text": mrkdwn(text)}));
    }
    if n > SLACK_GROUP_LISTED {
        blocks.push(json!({"type": "context", "elements": [mrkdwn(format!("and {} more", n - SLACK_GROUP_LISTED))]}));
    }
    let titles: Vec<&str> = incidents.iter().map(|i| i.title.as_str()).collect();
    json!({
        "text": truncate(&format!("[{sev}] {n} incidents: {}", titles.join("; ")), SLACK_TEXT_MAX_CHARS),
        "blocks": blocks,
    })
}

fn slack(event: NotifyEvent, incident: &Incident, link: Option<&str>) -> Value {
    let id_ref = match link {
        Some(l) => format!("<{l}|{}>", esc(&incident.id)),
        None => format!("`{}`", esc(&incident.id)),
    };
    let context = json!({
        "type": "context",
        "elements": [mrkdwn(format!("daytwo incident {id_ref} · opened {}", incident.opened_at))],
    });
    let (icon, verb) = match event {
        NotifyEvent::Trigger => ("", ""),
        NotifyEvent::Acknowledge => (":eyes:", "Acknowledged"),
        NotifyEvent::Resolve => (":white_check_mark:", "Resolved"),
    };
    if event != NotifyEvent::Trigger {
        return json!({
            "text": truncate(&format!("{verb}: {}", incident.title), SLACK_TEXT_MAX_CHARS),
            "blocks": [
                {"type": "section", "text": mrkdwn(format!("{icon} *{verb}:* {}", esc(&incident.title)))},
                context,
            ],
        });
    }
    let top = incident.top();
    let sev = incident.severity.as_str().to_uppercase();
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": truncate(&format!("[{sev}] {}", incident.title), SLACK_HEADER_MAX_CHARS)}}),
    ];
    let mut cause = format!("*Root cause:* {}", esc(&root_cause(incident)));
    if let Some(h) = top {
        cause.push_str(&format!(
            " (rule `{}`, score {:.2})\n{}",
            esc(&h.rule),
            h.score,
            esc(&h.explanation)
        ));
    }
    blocks.push(json!({"type": "section", "text": mrkdwn(cause)}));
    let affected = affected(incident)
        .iter()
        .map(|a| format!("• {}", esc(a)))
        .collect::<Vec<_>>()
        .join("\n");
    blocks.push(json!({"type": "section", "fields": [
        mrkdwn(format!("*Severity*\n{}", incident.severity.as_str())),
        mrkdwn(format!("*Affected*\n{affected}")),
    ]}));
    if let Some(h) = top.filter(|h| !h.remediation.is_empty()) {
        blocks.push(json!({"type": "section", "text": mrkdwn(format!("*Remediation:* {}", esc(&h.remediation)))}));
    }
    let ev = evidence(incident);
    if !ev.is_empty() {
        let lines = ev.iter().map(|l| esc(l)).collect::<Vec<_>>().join("\n");
        blocks
            .push(json!({"type": "section", "text": mrkdwn(format!("*Evidence*\n```{lines}```"))}));
    }
    blocks.push(context);
    json!({
        "text": truncate(&format!("[{sev}] {} — root cause: {}", incident.title, root_cause(incident)), SLACK_TEXT_MAX_CHARS),
        "blocks": blocks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, EntityKind, Evidence, Hypothesis, IncidentStatus, Timestamp};
    use std::path::PathBuf;

    include!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/fixtures/notify/conform.rs"
    ));

    fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/notify")
    }

    fn incident(title: &str) -> Incident {
        let at = Timestamp::from_unix_secs(1_795_617_015);
        Incident {
            id: "3f9a0c1d2e4b5a69".into(),
            fingerprint: "fp".into(),
            status: IncidentStatus::Open,
            severity: Severity::Critical,
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            title: title.into(),
            root_causes: vec![Hypothesis {
                entity: Entity::new(EntityKind::Pod, "shop/cart-1")
                    .with_attr("k8s.namespace.name", "shop")
                    .with_attr("k8s.node.name", "node-7"),
                score: 0.93,
                rule: "daytwo.oom".into(),
                explanation: "The container hit its memory limit <512Mi> & was killed.".into(),
                remediation: "Raise the limit or find the leak.".into(),
                evidence: vec![Evidence {
                    time: at,
                    kind: "log".into(),
                    text: "Memory cgroup out of memory: Killed process 4242 (java)".into(),
                }],
            }],
            signals: vec![],
            links: vec![],
        }
    }

    fn canonical(event: NotifyEvent, i: &Incident) -> String {
        serde_json::to_string(&json!({"version": "1", "event": event, "incident": i})).unwrap()
    }

    /// Renders, then checks the request against the fixture; returns the body.
    fn check(r: &Receiver, event: NotifyEvent, i: &Incident, fixture: &str) -> Value {
        let out = render(r, &canonical(event, i), Some("https://daytwo.example.com")).unwrap();
        let url = reqwest::Url::parse(&out.url).unwrap();
        let mut headers: Vec<(String, String)> = out
            .headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        headers.push(("Content-Type".into(), "application/json".into()));
        let f = conform::load(&fixtures(), fixture);
        let body: Value = serde_json::from_str(&out.body).unwrap();
        let mut errs = conform::check_request(&f, "POST", url.path(), url.query(), &headers);
        errs.extend(conform::check_body(&f, &body));
        assert!(errs.is_empty(), "{errs:#?}\n{body:#}");
        body
    }

    fn pagerduty_receiver() -> Receiver {
        let mut r = Receiver::new(
            "pd",
            ReceiverKind::Pagerduty,
            "https://events.pagerduty.com/v2/enqueue",
        );
        r.routing_key = Some("R0UT1NGKEY".into());
        r
    }

    fn opsgenie_receiver() -> Receiver {
        let mut r = Receiver::new("og", ReceiverKind::Opsgenie, "https://api.opsgenie.com");
        r.api_key = Some("eb243592-faa2-4ba2".into());
        r
    }

    #[test]
    fn pagerduty_events_follow_the_documented_examples() {
        let long = "x".repeat(2000);
        let i = incident(&long);
        let r = pagerduty_receiver();
        let t = check(&r, NotifyEvent::Trigger, &i, "pagerduty_trigger");
        assert_eq!(t["routing_key"], "R0UT1NGKEY");
        assert_eq!(t["dedup_key"], i.id);
        assert_eq!(t["event_action"], "trigger");
        assert_eq!(t["payload"]["severity"], "critical");
        assert_eq!(t["payload"]["source"], "node-7");
        assert_eq!(
            t["payload"]["summary"].as_str().unwrap().chars().count(),
            1024
        );
        let d = &t["payload"]["custom_details"];
        assert_eq!(d["root_cause"], "pod shop/cart-1");
        assert!(d["explanation"].as_str().unwrap().contains("memory limit"));
        assert_eq!(d["remediation"], "Raise the limit or find the leak.");
        assert_eq!(
            d["evidence_link"],
            "https://daytwo.example.com/api/v1/incidents/3f9a0c1d2e4b5a69"
        );
        for (event, fixture) in [
            (NotifyEvent::Acknowledge, "pagerduty_acknowledge"),
            (NotifyEvent::Resolve, "pagerduty_resolve"),
        ] {
            let b = check(&r, event, &i, fixture);
            assert_eq!(b["dedup_key"], i.id);
            assert_eq!(b["routing_key"], "R0UT1NGKEY");
        }
    }

    #[test]
    fn opsgenie_requests_follow_the_documented_examples() {
        let i = incident(&"y".repeat(300));
        let r = opsgenie_receiver();
        let c = check(&r, NotifyEvent::Trigger, &i, "opsgenie_create");
        assert_eq!(c["alias"], i.id);
        assert_eq!(c["priority"], "P1");
        assert_eq!(c["message"].as_str().unwrap().chars().count(), 130);
        assert!(
            c["description"]
                .as_str()
                .unwrap()
                .contains("Raise the limit")
        );
        assert_eq!(c["entity"], "pod shop/cart-1");
        let ack = render(&r, &canonical(NotifyEvent::Acknowledge, &i), None).unwrap();
        assert_eq!(
            ack.url,
            "https://api.opsgenie.com/v2/alerts/3f9a0c1d2e4b5a69/acknowledge?identifierType=alias"
        );
        assert_eq!(
            ack.headers,
            [("Authorization", "GenieKey eb243592-faa2-4ba2".to_string())]
        );
        check(&r, NotifyEvent::Acknowledge, &i, "opsgenie_acknowledge");
        check(&r, NotifyEvent::Resolve, &i, "opsgenie_close");
        // A URL given with the path still works.
        let mut r2 = r.clone();
        r2.url = "https://api.eu.opsgenie.com/v2/alerts/".into();
        let close = render(&r2, &canonical(NotifyEvent::Resolve, &i), None).unwrap();
        assert_eq!(
            close.url,
            "https://api.eu.opsgenie.com/v2/alerts/3f9a0c1d2e4b5a69/close?identifierType=alias"
        );
    }

    #[test]
    fn slack_messages_follow_the_documented_examples_and_escape_mrkdwn() {
        let i = incident("api-1 OOM-killed");
        let r = Receiver::new(
            "slack",
            ReceiverKind::Slack,
            "https://hooks.slack.com/services/T0/B0/XX",
        );
        let t = check(&r, NotifyEvent::Trigger, &i, "slack_message");
        let text = t.to_string();
        assert!(text.contains("pod shop/cart-1"), "{text}");
        assert!(text.contains("&lt;512Mi&gt; &amp; was killed"), "{text}");
        assert!(text.contains(
            "<https://daytwo.example.com/api/v1/incidents/3f9a0c1d2e4b5a69|3f9a0c1d2e4b5a69>"
        ));
        assert!(
            t["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .chars()
                .count()
                <= 150
        );
        for e in [NotifyEvent::Acknowledge, NotifyEvent::Resolve] {
            let b = check(&r, e, &i, "slack_message");
            assert!(
                b["text"]
                    .as_str()
                    .unwrap()
                    .starts_with(if e == NotifyEvent::Resolve {
                        "Resolved"
                    } else {
                        "Acknowledged"
                    })
            );
        }
    }

    #[test]
    fn opsgenie_limits_hold_for_long_rules_and_many_affected_entities() {
        let mut i = incident("t");
        i.root_causes[0].rule = format!("team.{}", "x".repeat(80));
        i.root_causes[0].explanation = "e".repeat(20_000);
        for n in 0..10 {
            i.signals.push(daytwo_model::Signal {
                id: format!("s{n}"),
                name: "daytwo.test".into(),
                time: i.opened_at,
                severity: Severity::Critical,
                entity: Entity::new(EntityKind::Pod, format!("shop/{}-{n}", "p".repeat(900))),
                resource: Default::default(),
                attributes: Default::default(),
                message: "m".into(),
                evidence: vec![],
            });
        }
        let c = check(
            &opsgenie_receiver(),
            NotifyEvent::Trigger,
            &i,
            "opsgenie_create",
        );
        assert_eq!(c["tags"][2].as_str().unwrap().chars().count(), 50);
        assert!(c["details"]["affected"].as_str().unwrap().ends_with('…'));
        assert_eq!(c["details"]["incident_id"], i.id, "short fields stay whole");
        // The checker itself sees a breach.
        let f = conform::load(&fixtures(), "opsgenie_create");
        let mut over = c.clone();
        over["details"]["extra"] = json!("z".repeat(8000));
        over["tags"] = json!(vec!["t"; 21]);
        assert_eq!(
            conform::check_body(&f, &over).len(),
            2,
            "{:#?}",
            conform::check_body(&f, &over)
        );
    }

    #[test]
    fn grouped_and_repeated_slack_messages_follow_the_documented_examples() {
        let r = Receiver::new(
            "slack",
            ReceiverKind::Slack,
            "https://hooks.slack.com/services/T0/B0/XX",
        );
        let a = incident("api-1 OOM-killed");
        let mut b = incident("api-2 OOM-killed");
        b.id = "77aa00bb11cc22dd".into();
        let grouped = serde_json::to_string(&json!({
            "version": "1", "event": "trigger", "incident": a,
            "group": {"labels": {"cluster": "eu"}, "count": 2}, "incidents": [a, b],
        }))
        .unwrap();
        let out = render(&r, &grouped, Some("https://daytwo.example.com")).unwrap();
        let body: Value = serde_json::from_str(&out.body).unwrap();
        let f = conform::load(&fixtures(), "slack_message");
        let errs = conform::check_body(&f, &body);
        assert!(errs.is_empty(), "{errs:#?}\n{body:#}");
        let text = body.to_string();
        assert!(text.contains("2 incidents opened together"), "{text}");
        assert!(text.contains("api-2 OOM-killed") && text.contains("api-1 OOM-killed"));
        assert!(text.contains("https://daytwo.example.com/api/v1/incidents/77aa00bb11cc22dd|"));
        let repeated = serde_json::to_string(&json!({
            "version": "1", "event": "trigger", "repeat": 2, "incident": a,
        }))
        .unwrap();
        let out = render(&r, &repeated, None).unwrap();
        let body: Value = serde_json::from_str(&out.body).unwrap();
        assert!(conform::check_body(&f, &body).is_empty());
        assert!(body["text"].as_str().unwrap().contains("reminder 2"));
        assert!(
            body["blocks"][0]["text"]["text"]
                .as_str()
                .unwrap()
                .starts_with("Still open: ")
        );
    }

    #[test]
    fn the_checker_catches_a_field_the_provider_does_not_document() {
        let f = conform::load(&fixtures(), "pagerduty_trigger");
        let mut body = check(
            &pagerduty_receiver(),
            NotifyEvent::Trigger,
            &incident("t"),
            "pagerduty_trigger",
        );
        body["payload"]["severity"] = json!("fatal");
        body["incident"] = json!("nope");
        let errs = conform::check_body(&f, &body);
        assert_eq!(errs.len(), 2, "{errs:#?}");
    }

    #[test]
    fn webhook_bodies_are_the_stored_bytes_signed() {
        let i = incident("t");
        let body = canonical(NotifyEvent::Trigger, &i);
        let r = Receiver::webhook("w", "http://127.0.0.1/hook", Some("s".into()));
        let out = render(&r, &body, Some("https://x")).unwrap();
        assert_eq!(out.body, body);
        assert_eq!(out.headers[0].0, "X-Daytwo-Signature");
    }
}
