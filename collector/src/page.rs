//! The web page on the HTTP port: `GET /` lists incidents (with the API's filters and paging)
//! and `GET /incidents/{id}` shows one: its root causes ranked with explanation, evidence and
//! remediation, and the timeline of its signals.
//!
//! Server-rendered HTML with inline CSS: no JavaScript, no fonts, images or stylesheets from
//! anywhere else, so it works in an air-gapped cluster and through `kubectl port-forward`. It is
//! read-only; acknowledging and resolving stay with the API and the CLI (they need the token).
//! Everything shown is escaped ([`esc`]): incident text comes from logs and alerts.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use daytwo_model::{Incident, IncidentStatus, Severity, Timestamp};
use serde::Deserialize;
use std::fmt::Write as _;

use crate::api::ApiState;
use crate::store::ListFilter;

/// Incidents per page.
const PAGE_SIZE: usize = 50;

/// HTML-escapes text for element content and double-quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a query parameter value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1b1f24;background:#f6f7f9}\
header{background:#1b1f24;color:#fff;padding:.6em 1.2em}header a{color:#fff;text-decoration:none;font-weight:600}\
main{padding:1em 1.2em;max-width:1200px}table{border-collapse:collapse;width:100%;background:#fff}\
th,td{text-align:left;padding:.35em .6em;border-bottom:1px solid #e1e4e8;vertical-align:top}\
th{background:#eef0f3;font-weight:600}form{margin:0 0 1em;display:flex;flex-wrap:wrap;gap:.5em;align-items:end}\
label{display:flex;flex-direction:column;font-size:12px;color:#57606a}input,select{font:inherit;padding:.2em}\
.sev{font-weight:600;padding:0 .4em;border-radius:3px}.critical{background:#ffd7d5;color:#82071e}\
.warning{background:#fff1c5;color:#7d4e00}.info{background:#ddf4ff;color:#0a3069}\
.resolved{color:#57606a}.box{background:#fff;border:1px solid #e1e4e8;padding:.8em 1em;margin:0 0 1em}\
pre{white-space:pre-wrap;word-break:break-all;background:#f6f8fa;padding:.5em;margin:.3em 0;font-size:12px}\
.muted{color:#57606a}.error{background:#ffebe9;border:1px solid #ff8182;padding:.6em;margin:0 0 1em}";

fn layout(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · daytwo</title><style>{STYLE}</style></head>\
         <body><header><a href=\"/\">daytwo</a> <span class=\"muted\">incidents</span></header>\
         <main>{body}</main></body></html>\n",
        esc(title)
    )
}

fn html(status: StatusCode, page: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        page,
    )
        .into_response()
}

fn sev(s: Severity) -> String {
    format!("<span class=\"sev {0}\">{0}</span>", s.as_str())
}

fn root_cause(i: &Incident) -> String {
    i.top()
        .map(|h| format!("{} {}", h.entity.kind, h.entity.name))
        .unwrap_or_else(|| "–".into())
}

/// The list page's query: the API's filters as a form sends them (empty fields mean unset).
#[derive(Debug, Default, Deserialize)]
pub struct IndexQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    entity: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    #[serde(default)]
    cursor: String,
}

fn some(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_string())
}

impl IndexQuery {
    fn filter(&self) -> Result<ListFilter, String> {
        let time = |name: &str, v: &str| {
            some(v)
                .map(|v| {
                    Timestamp::parse_rfc3339(&v).map_err(|e| {
                        format!("{name} {v:?}: {e}; expected RFC 3339 like 2026-11-25T14:00:00Z")
                    })
                })
                .transpose()
        };
        Ok(ListFilter {
            status: some(&self.status)
                .map(|s| {
                    IncidentStatus::parse(&s).ok_or_else(|| {
                        format!("status {s:?}: expected open, acknowledged or resolved")
                    })
                })
                .transpose()?,
            severity: some(&self.severity)
                .map(|s| {
                    Severity::parse(&s).ok_or_else(|| {
                        format!("severity {s:?}: expected info, warning or critical")
                    })
                })
                .transpose()?,
            host: None,
            cluster: some(&self.cluster),
            namespace: some(&self.namespace),
            entity: some(&self.entity),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
            limit: PAGE_SIZE,
            cursor: some(&self.cursor),
        })
    }

    /// The query string of these filters with another cursor.
    fn with_cursor(&self, cursor: &str) -> String {
        let mut q = Vec::new();
        for (k, v) in [
            ("status", &self.status),
            ("severity", &self.severity),
            ("cluster", &self.cluster),
            ("namespace", &self.namespace),
            ("entity", &self.entity),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if let Some(v) = some(v) {
                q.push(format!("{k}={}", enc(&v)));
            }
        }
        q.push(format!("cursor={}", enc(cursor)));
        q.join("&")
    }
}

fn select(name: &str, current: &str, options: &[&str]) -> String {
    let mut s = format!("<label>{name}<select name=\"{name}\"><option value=\"\">any</option>");
    for o in options {
        let sel = if *o == current.trim() {
            " selected"
        } else {
            ""
        };
        let _ = write!(s, "<option{sel}>{o}</option>");
    }
    s.push_str("</select></label>");
    s
}

fn input(name: &str, current: &str, hint: &str) -> String {
    format!(
        "<label>{name}<input name=\"{name}\" value=\"{}\" placeholder=\"{}\"></label>",
        esc(current),
        esc(hint)
    )
}

/// The incident list, as HTML.
pub fn render_index(
    q: &IndexQuery,
    incidents: &[Incident],
    next: Option<&str>,
    error: Option<&str>,
) -> String {
    let mut b = String::new();
    b.push_str("<form method=\"get\" action=\"/\">");
    b.push_str(&select(
        "status",
        &q.status,
        &["open", "acknowledged", "resolved"],
    ));
    b.push_str(&select(
        "severity",
        &q.severity,
        &["critical", "warning", "info"],
    ));
    b.push_str(&input("cluster", &q.cluster, "k8s.cluster.name"));
    b.push_str(&input("namespace", &q.namespace, "k8s.namespace.name"));
    b.push_str(&input("entity", &q.entity, "[KIND/]NAME"));
    b.push_str(&input("since", &q.since, "2026-11-25T00:00:00Z"));
    b.push_str(&input("until", &q.until, "RFC 3339"));
    b.push_str("<button type=\"submit\">Filter</button> <a href=\"/\">clear</a></form>");
    if let Some(e) = error {
        let _ = write!(b, "<div class=\"error\">{}</div>", esc(e));
    }
    if incidents.is_empty() {
        b.push_str("<p class=\"muted\">No incidents match.</p>");
    } else {
        b.push_str("<table><thead><tr><th>Opened</th><th>Severity</th><th>Status</th><th>Title</th><th>Root cause</th><th>Rule</th><th>ID</th></tr></thead><tbody>");
        for i in incidents {
            let class = if i.status == IncidentStatus::Resolved {
                " class=\"resolved\""
            } else {
                ""
            };
            let _ = write!(
                b,
                "<tr{class}><td>{}</td><td>{}</td><td>{}</td><td><a href=\"/incidents/{}\">{}</a></td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&i.opened_at.to_string()),
                sev(i.severity),
                esc(i.status.as_str()),
                enc(&i.id),
                esc(&i.title),
                esc(&root_cause(i)),
                esc(i.top().map(|h| h.rule.as_str()).unwrap_or("–")),
                esc(&i.id),
            );
        }
        b.push_str("</tbody></table>");
    }
    if let Some(n) = next {
        let _ = write!(
            b,
            "<p><a rel=\"next\" href=\"/?{}\">Older incidents →</a></p>",
            esc(&q.with_cursor(n))
        );
    }
    layout("Incidents", &b)
}

/// One incident, as HTML.
pub fn render_incident(i: &Incident) -> String {
    let mut b = String::new();
    let _ = write!(
        b,
        "<h1>{} {}</h1><div class=\"box\"><table>\
         <tr><th>ID</th><td><code>{}</code></td></tr>\
         <tr><th>Status</th><td>{}</td></tr>\
         <tr><th>Opened</th><td>{}</td></tr><tr><th>Updated</th><td>{}</td></tr>",
        sev(i.severity),
        esc(&i.title),
        esc(&i.id),
        esc(i.status.as_str()),
        esc(&i.opened_at.to_string()),
        esc(&i.updated_at.to_string()),
    );
    if let Some(r) = i.resolved_at {
        let _ = write!(
            b,
            "<tr><th>Resolved</th><td>{}</td></tr>",
            esc(&r.to_string())
        );
    }
    for l in &i.links {
        let _ = write!(
            b,
            "<tr><th>{}</th><td><a href=\"/incidents/{}\">{}</a></td></tr>",
            esc(if l.relation == "previous" {
                "Previous incident"
            } else {
                &l.relation
            }),
            enc(&l.incident_id),
            esc(&l.incident_id)
        );
    }
    let _ = write!(
        b,
        "<tr><th>Fingerprint</th><td><code>{}</code></td></tr></table></div>",
        esc(&i.fingerprint)
    );
    b.push_str("<h2>Root causes</h2>");
    if i.root_causes.is_empty() {
        b.push_str("<p class=\"muted\">No hypothesis yet.</p>");
    }
    for (n, h) in i.root_causes.iter().enumerate() {
        let _ = write!(
            b,
            "<div class=\"box\"><h3>{}. {} {} <span class=\"muted\">score {:.2} · rule <code>{}</code></span></h3>\
             <p>{}</p>",
            n + 1,
            esc(h.entity.kind.as_str()),
            esc(&h.entity.name),
            h.score,
            esc(&h.rule),
            esc(&h.explanation),
        );
        if !h.remediation.is_empty() {
            let _ = write!(
                b,
                "<p><strong>What to do:</strong> {}</p>",
                esc(&h.remediation)
            );
        }
        if !h.evidence.is_empty() {
            b.push_str("<h4>Evidence</h4>");
            for e in &h.evidence {
                let _ = write!(
                    b,
                    "<pre>{} [{}] {}</pre>",
                    esc(&e.time.to_string()),
                    esc(&e.kind),
                    esc(&e.text)
                );
            }
        }
        if !h.entity.attributes.is_empty() {
            b.push_str("<p class=\"muted\">");
            for (k, v) in &h.entity.attributes {
                let v = v
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| v.to_string());
                let _ = write!(b, "<code>{}={}</code> ", esc(k), esc(&v));
            }
            b.push_str("</p>");
        }
        b.push_str("</div>");
    }
    let mut signals: Vec<_> = i.signals.iter().collect();
    signals.sort_by_key(|s| s.time);
    let _ = write!(
        b,
        "<h2>Timeline <span class=\"muted\">({} signals)</span></h2>",
        signals.len()
    );
    b.push_str("<table><thead><tr><th>Time</th><th>Severity</th><th>Signal</th><th>Entity</th><th>Message and evidence</th></tr></thead><tbody>");
    for s in signals {
        let _ = write!(
            b,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{} {}</td><td>{}",
            esc(&s.time.to_string()),
            sev(s.severity),
            esc(&s.name),
            esc(s.entity.kind.as_str()),
            esc(&s.entity.name),
            esc(&s.message),
        );
        for e in &s.evidence {
            let _ = write!(
                b,
                "<pre>{} [{}] {}</pre>",
                esc(&e.time.to_string()),
                esc(&e.kind),
                esc(&e.text)
            );
        }
        b.push_str("</td></tr>");
    }
    b.push_str("</tbody></table>");
    let _ = write!(
        b,
        "<p class=\"muted\">JSON: <a href=\"/api/v1/incidents/{0}\">/api/v1/incidents/{1}</a> · acknowledge or resolve with <code>daytwo incidents ack {1}</code></p>",
        enc(&i.id),
        esc(&i.id)
    );
    layout(&i.title, &b)
}

/// `GET /`.
pub async fn index(
    State(st): State<ApiState>,
    q: Result<Query<IndexQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let q = match q {
        Ok(Query(q)) => q,
        Err(e) => {
            let q = IndexQuery::default();
            return html(
                StatusCode::BAD_REQUEST,
                render_index(&q, &[], None, Some(&e.body_text())),
            );
        }
    };
    let filter = match q.filter() {
        Ok(f) => f,
        Err(e) => {
            return html(
                StatusCode::BAD_REQUEST,
                render_index(&q, &[], None, Some(&e)),
            );
        }
    };
    let store = st.store.clone();
    match tokio::task::spawn_blocking(move || store.list_incidents(&filter)).await {
        Ok(Ok((incidents, next))) => html(
            StatusCode::OK,
            render_index(&q, &incidents, next.as_deref(), None),
        ),
        Ok(Err(e)) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            render_index(
                &q,
                &[],
                None,
                Some(&format!("The store could not be read: {e}")),
            ),
        ),
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            render_index(&q, &[], None, Some(&e.to_string())),
        ),
    }
}

/// `GET /incidents/{id}`.
pub async fn incident(State(st): State<ApiState>, Path(id): Path<String>) -> Response {
    let store = st.store.clone();
    let lookup = id.clone();
    match tokio::task::spawn_blocking(move || store.get_incident(&lookup)).await {
        Ok(Ok(Some(i))) => html(StatusCode::OK, render_incident(&i)),
        Ok(Ok(None)) => html(
            StatusCode::NOT_FOUND,
            layout(
                "Not found",
                &format!(
                    "<div class=\"error\">No incident {}. <a href=\"/\">All incidents</a></div>",
                    esc(&id)
                ),
            ),
        ),
        Ok(Err(e)) => html(
            StatusCode::SERVICE_UNAVAILABLE,
            layout(
                "Error",
                &format!("<div class=\"error\">{}</div>", esc(&e.to_string())),
            ),
        ),
        Err(e) => html(
            StatusCode::INTERNAL_SERVER_ERROR,
            layout(
                "Error",
                &format!("<div class=\"error\">{}</div>", esc(&e.to_string())),
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, EntityKind, Evidence, Hypothesis, Link};

    fn incident() -> Incident {
        let at = Timestamp::from_unix_secs(1_795_617_015);
        Incident {
            id: "3f9a0c1d2e4b5a69".into(),
            fingerprint: "fp".into(),
            status: IncidentStatus::Open,
            severity: Severity::Critical,
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            title: "<script>alert(1)</script> OOM".into(),
            root_causes: vec![Hypothesis {
                entity: Entity::new(EntityKind::Pod, "shop/cart-1")
                    .with_attr("k8s.namespace.name", "shop"),
                score: 0.93,
                rule: "daytwo.oom".into(),
                explanation: "usage 64.0 MiB of limit \"64.0 MiB\" & more".into(),
                remediation: "Raise the limit.".into(),
                evidence: vec![Evidence {
                    time: at,
                    kind: "log".into(),
                    text: "Killed process 42 <java>".into(),
                }],
            }],
            signals: vec![],
            links: vec![Link {
                relation: "previous".into(),
                incident_id: "00aa".into(),
            }],
        }
    }

    #[test]
    fn everything_shown_is_escaped_and_nothing_is_loaded_from_elsewhere() {
        let page = render_incident(&incident());
        assert!(!page.contains("<script"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt; OOM"));
        assert!(page.contains("&quot;64.0 MiB&quot; &amp; more"));
        assert!(page.contains("Killed process 42 &lt;java&gt;"));
        assert!(page.contains("<a href=\"/incidents/00aa\">00aa</a>"));
        assert!(page.contains("Raise the limit."));
        for external in ["src=", "http://", "https://", "<link"] {
            assert!(!page.contains(external), "{external} in {page}");
        }
        let list = render_index(&IndexQuery::default(), &[incident()], Some("123:abc"), None);
        assert!(list.contains("href=\"/?cursor=123%3Aabc\""), "{list}");
        assert!(!list.contains("<script"));
    }

    #[test]
    fn bad_filters_say_what_is_wrong() {
        let q = IndexQuery {
            since: "yesterday".into(),
            ..Default::default()
        };
        assert!(q.filter().unwrap_err().starts_with("since"));
        let q = IndexQuery {
            status: "done".into(),
            ..Default::default()
        };
        assert!(q.filter().unwrap_err().starts_with("status"));
        let q = IndexQuery {
            status: "open".into(),
            cluster: "eu-1".into(),
            ..Default::default()
        };
        assert_eq!(
            q.with_cursor("1:a"),
            "status=open&cluster=eu-1&cursor=1%3Aa"
        );
    }
}
