//! `daytwo incidents list|show|ack|resolve`: the on-call view over the HTTP API.
//! Tables by default (like `kubectl get`), the Incident JSON with `--json`.

use crate::cli::{IncidentsArgs, IncidentsCommand};
use anyhow::{Context, Result, anyhow};
use daytwo_model::Incident;
use std::process::ExitCode;

pub fn run(args: IncidentsArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: IncidentsArgs) -> Result<ExitCode> {
    let base = args.server.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .user_agent(concat!("daytwo/", env!("CARGO_PKG_VERSION")))
        .build()?;
    match args.command {
        IncidentsCommand::List {
            status,
            severity,
            cluster,
            namespace,
            entity,
            since,
            until,
            limit,
            cursor,
        } => {
            let mut q: Vec<(&str, String)> = vec![("limit", limit.to_string())];
            if let Some(s) = status {
                q.push(("status", s));
            }
            for (k, v) in [
                ("severity", severity),
                ("cluster", cluster),
                ("namespace", namespace),
                ("entity", entity),
                ("since", since),
                ("until", until),
                ("cursor", cursor),
            ] {
                if let Some(v) = v {
                    q.push((k, v));
                }
            }
            let req = client.get(format!("{base}/api/v1/incidents")).query(&q);
            let body: serde_json::Value = send(req, &base).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let incidents: Vec<Incident> = serde_json::from_value(body["incidents"].clone())
                    .context("the server's answer is not an incident list")?;
                print!("{}", table(&incidents));
                if let Some(next) = body["next"].as_str() {
                    println!("More: add --cursor {next}");
                }
            }
        }
        IncidentsCommand::Show { id } => {
            let body: serde_json::Value =
                send(client.get(format!("{base}/api/v1/incidents/{id}")), &base).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&body)?);
            } else {
                let inc: Incident = serde_json::from_value(body)
                    .context("the server's answer is not an incident")?;
                print!("{}", detail(&inc));
            }
        }
        IncidentsCommand::Ack { id } => {
            write_call(&client, &base, &id, "ack", args.token, args.json).await?
        }
        IncidentsCommand::Resolve { id } => {
            write_call(&client, &base, &id, "resolve", args.token, args.json).await?
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn write_call(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    verb: &str,
    token: Option<String>,
    json: bool,
) -> Result<()> {
    let mut req = client.post(format!("{base}/api/v1/incidents/{id}/{verb}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let body: serde_json::Value = send(req, base).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        let inc: Incident =
            serde_json::from_value(body).context("the server's answer is not an incident")?;
        println!("incident {} {}", inc.id, inc.status);
    }
    Ok(())
}

pub(crate) async fn send(req: reqwest::RequestBuilder, base: &str) -> Result<serde_json::Value> {
    let resp = req.send().await.map_err(|e| {
        anyhow!("cannot reach the daytwo server at {base}: {e} (is `daytwo up` running? set --server or DAYTWO_SERVER)")
    })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        let msg = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(text);
        return Err(anyhow!("server answered {status}: {msg}"));
    }
    serde_json::from_str(&text).with_context(|| format!("the server at {base} did not answer JSON"))
}

fn root_cause(inc: &Incident) -> String {
    inc.top()
        .map(|h| format!("{} {}", h.entity.kind, h.entity.name))
        .unwrap_or_else(|| "-".into())
}

/// Time since `t`, the way `kubectl get` shows AGE: `45s`, `12m`, `3h`, `2d`.
pub(crate) fn age(t: daytwo_model::Timestamp) -> String {
    let now = daytwo_model::Timestamp::from_system_time(std::time::SystemTime::now());
    let secs = (now.0 - t.0).max(0) / 1_000_000_000;
    match secs {
        0..=119 => format!("{secs}s"),
        120..=7199 => format!("{}m", secs / 60),
        7200..=172_799 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86_400),
    }
}

/// A `kubectl get`-style table.
pub fn table(incidents: &[Incident]) -> String {
    if incidents.is_empty() {
        return "No incidents.\n".into();
    }
    let rows: Vec<[String; 7]> = incidents
        .iter()
        .map(|i| {
            [
                i.id.clone(),
                i.status.to_string(),
                i.severity.to_string(),
                age(i.opened_at),
                root_cause(i),
                i.top()
                    .map(|h| h.rule.clone())
                    .unwrap_or_else(|| "-".into()),
                i.title.clone(),
            ]
        })
        .collect();
    let header = [
        "ID",
        "STATUS",
        "SEVERITY",
        "OPENED",
        "ROOT CAUSE",
        "RULE",
        "TITLE",
    ];
    columns(&header, &rows)
}

/// A kubectl-style table: a header row, then one row per item, columns padded to their widest
/// cell and two spaces apart, the last column unpadded.
pub(crate) fn columns<R: AsRef<[String]>>(header: &[&str], rows: &[R]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        for (i, c) in cells.iter().enumerate() {
            if i == last {
                out.push_str(c);
            } else {
                out.push_str(&format!("{:<w$}  ", c, w = widths[i]));
            }
        }
        out.push('\n');
    };
    line(header.to_vec());
    for r in rows {
        line(r.as_ref().iter().map(String::as_str).collect());
    }
    out
}

/// A readable view of one incident.
pub fn detail(i: &Incident) -> String {
    let mut o = String::new();
    o.push_str(&format!("Incident:  {}\n", i.id));
    o.push_str(&format!("Title:     {}\n", i.title));
    o.push_str(&format!("Status:    {}\n", i.status));
    o.push_str(&format!("Severity:  {}\n", i.severity));
    o.push_str(&format!("Opened:    {}\n", i.opened_at));
    o.push_str(&format!("Updated:   {}\n", i.updated_at));
    if let Some(r) = i.resolved_at {
        o.push_str(&format!("Resolved:  {r}\n"));
    }
    for l in &i.links {
        o.push_str(&format!("Link:      {} {}\n", l.relation, l.incident_id));
    }
    o.push_str("\nRoot causes:\n");
    for (n, h) in i.root_causes.iter().enumerate() {
        o.push_str(&format!(
            "  {}. {} {}  (score {:.2}, rule {})\n",
            n + 1,
            h.entity.kind,
            h.entity.name,
            h.score,
            h.rule
        ));
        o.push_str(&format!("     Why:  {}\n", h.explanation));
        o.push_str(&format!("     Do:   {}\n", h.remediation));
        if !h.evidence.is_empty() {
            o.push_str("     Evidence:\n");
            for e in &h.evidence {
                o.push_str(&format!("       {} [{}] {}\n", e.time, e.kind, e.text));
            }
        }
    }
    o.push_str(&format!("\nSignals ({}):\n", i.signals.len()));
    for s in &i.signals {
        o.push_str(&format!(
            "  {}  {:<8}  {}  {} {}: {}\n",
            s.time, s.severity, s.name, s.entity.kind, s.entity.name, s.message
        ));
    }
    o
}
