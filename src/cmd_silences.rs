//! `daytwo silences add|list|expire`: maintenance silences over the HTTP API, in the manner of
//! `amtool silence add|query|expire`. A table by default, the API's JSON with `--json`; bad
//! matchers or durations exit 2, server errors 1.

use crate::cli::{SilencesArgs, SilencesCommand};
use crate::cmd_incidents::{age, send};
use crate::config::usage;
use anyhow::{Context, Result};
use serde_json::{Value, json};
use std::process::ExitCode;

pub fn run(args: SilencesArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: SilencesArgs) -> Result<ExitCode> {
    let base = args.server.trim_end_matches('/').to_string();
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(15))
        .user_agent(concat!("daytwo/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let url = format!("{base}/api/v1/silences");
    match args.command {
        SilencesCommand::Add {
            matchers,
            duration,
            start,
            end,
            comment,
            author,
        } => {
            let mut body = json!({
                "match": parse_matchers(&matchers)?,
                "created_by": author.filter(|a| !a.is_empty()).ok_or_else(|| usage("--author: say who makes the silence (or set $USER)"))?,
                "comment": comment,
            });
            if let Some(s) = start {
                body["starts_at"] = json!(s);
            }
            match (duration, end) {
                (Some(_), Some(_)) => return Err(usage("give --duration or --end, not both")),
                (Some(d), None) => body["duration_secs"] = json!(parse_duration(&d)?),
                (None, Some(e)) => body["ends_at"] = json!(e),
                (None, None) => body["duration_secs"] = json!(3600),
            }
            let mut req = client.post(&url).json(&body);
            if let Some(t) = args.token {
                req = req.bearer_auth(t);
            }
            let made = send(req, &base).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&made)?);
            } else {
                println!("{}", made["id"].as_str().unwrap_or(""));
            }
        }
        SilencesCommand::List { expired } => {
            let body = send(client.get(&url), &base).await?;
            let mut list: Vec<Value> = body["silences"]
                .as_array()
                .cloned()
                .context("the server's answer is not a silence list")?;
            if !expired {
                list.retain(|s| s["state"] != "expired");
            }
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json!({ "silences": list }))?
                );
            } else {
                print!("{}", table(&list));
            }
        }
        SilencesCommand::Expire { ids } => {
            for id in ids {
                let mut req = client.delete(format!("{url}/{id}"));
                if let Some(t) = &args.token {
                    req = req.bearer_auth(t);
                }
                let s = send(req, &base).await?;
                if args.json {
                    println!("{}", serde_json::to_string(&s)?);
                } else {
                    println!("silence {id} expired");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `KEY=VALUE` pairs into the API's matcher: severity, cluster, namespace and rule are fields,
/// anything else a root-cause entity attribute.
fn parse_matchers(args: &[String]) -> Result<Value> {
    let mut m = json!({});
    let mut labels = serde_json::Map::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            return Err(usage(format!(
                "matcher {a:?}: expected KEY=VALUE, e.g. cluster=prod-eu or host.name=db-1"
            )));
        };
        let (k, v) = (k.trim(), v.trim().trim_matches('"'));
        if k.is_empty() || v.is_empty() {
            return Err(usage(format!(
                "matcher {a:?}: both KEY and VALUE must be non-empty"
            )));
        }
        match k {
            "severity" | "cluster" | "namespace" | "rule" => m[k] = json!(v),
            _ => {
                labels.insert(k.to_string(), json!(v));
            }
        }
    }
    if !labels.is_empty() {
        m["labels"] = Value::Object(labels);
    }
    Ok(m)
}

/// `90s`, `30m`, `2h`, `1d`, `1h30m` into seconds.
fn parse_duration(s: &str) -> Result<u64> {
    let bad = || {
        usage(format!(
            "--duration {s:?}: expected a number with a unit, like 90s, 30m, 2h, 1d or 1h30m"
        ))
    };
    let mut total: u64 = 0;
    let mut num = String::new();
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num.parse().map_err(|_| bad())?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad()),
        };
        total = total.saturating_add(n.saturating_mul(unit));
    }
    if !num.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(total)
}

fn matchers_text(m: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(o) = m.as_object() {
        for (k, v) in o {
            match (k.as_str(), v) {
                ("labels", Value::Object(l)) => {
                    for (lk, lv) in l {
                        parts.push(format!("{lk}={}", lv.as_str().unwrap_or("")));
                    }
                }
                (k, v) => parts.push(format!("{k}={}", v.as_str().unwrap_or(""))),
            }
        }
    }
    parts.join(" ")
}

fn until(ends_at: &str) -> String {
    match daytwo_model::Timestamp::parse_rfc3339(ends_at) {
        Ok(t) => {
            let now = daytwo_model::Timestamp::from_system_time(std::time::SystemTime::now());
            if t <= now {
                format!("{} ago", age(t))
            } else {
                // age() of the mirror point gives the time left in the same units.
                let left = daytwo_model::Timestamp(now.0 - (t.0 - now.0));
                format!("in {}", age(left))
            }
        }
        Err(_) => ends_at.to_string(),
    }
}

/// An `amtool silence query`-style table.
fn table(list: &[Value]) -> String {
    if list.is_empty() {
        return "No silences.\n".into();
    }
    let header = ["ID", "STATE", "MATCHERS", "ENDS", "CREATED BY", "COMMENT"];
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|s| {
            let text = |k: &str| s[k].as_str().unwrap_or("").to_string();
            [
                text("id"),
                text("state"),
                matchers_text(&s["match"]),
                until(s["ends_at"].as_str().unwrap_or("")),
                text("created_by"),
                text("comment"),
            ]
        })
        .collect();
    crate::cmd_incidents::columns(&header, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_matchers_parse_like_amtool() {
        assert_eq!(parse_duration("90s").unwrap(), 90);
        assert_eq!(parse_duration("1h30m").unwrap(), 5400);
        assert_eq!(parse_duration("2d").unwrap(), 172_800);
        for bad in ["", "10", "h", "5x", "0s"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let m = parse_matchers(&["cluster=eu-1".into(), "host.name=db-1".into()]).unwrap();
        assert_eq!(
            m,
            json!({"cluster": "eu-1", "labels": {"host.name": "db-1"}})
        );
        assert!(parse_matchers(&["cluster".into()]).is_err());
        assert!(parse_matchers(&["=x".into()]).is_err());
        assert_eq!(matchers_text(&m), "cluster=eu-1 host.name=db-1");
    }
}
