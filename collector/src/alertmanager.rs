//! Alertmanager in: its webhook payload (version 4) becomes signals, so the Prometheus alerting
//! rules a team already has feed correlation like any other signal. Pure mapping, no I/O.
//!
//! Entry point: [`signals_from_webhook`]. Each alert becomes one signal:
//!
//! * name `prometheus.alert.firing` or `prometheus.alert.resolved`;
//! * entity from the labels, most specific first: `pod` (+`namespace`) → pod, `container` → container,
//!   `node`/`kubernetes_node` → node, `service` → service, `instance` → host (port stripped),
//!   `job` → service; otherwise a service named after the alert;
//! * severity from the `severity` label (`critical`/`page`/`error` → critical, `warning` → warning,
//!   else info; resolved alerts are info);
//! * id from Alertmanager's alert fingerprint, `startsAt` and status, so the repeats Alertmanager
//!   sends every `repeat_interval` are recognised as the same observation and ignored.

use daytwo_model::{
    Attributes, Entity, EntityKind, Evidence, Severity, Signal, Timestamp, stable_id,
};
use serde::Deserialize;
use std::collections::BTreeMap;

pub const FIRING: &str = "prometheus.alert.firing";
pub const RESOLVED: &str = "prometheus.alert.resolved";

/// The webhook body Alertmanager POSTs (only the fields we read; others are ignored so newer
/// Alertmanager versions keep working).
#[derive(Debug, Deserialize)]
pub struct Webhook {
    pub version: Option<String>,
    #[serde(default)]
    pub alerts: Vec<Alert>,
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
}

#[derive(Debug, Deserialize)]
pub struct Alert {
    pub status: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt", default)]
    pub ends_at: String,
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    #[serde(default)]
    pub fingerprint: String,
}

/// Why an alert could not become a signal.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AlertRejected {
    #[error("alerts[{index}]: status {status:?} is neither firing nor resolved")]
    BadStatus { index: usize, status: String },
    #[error("alerts[{index}]: {field} {value:?} is not an RFC 3339 time")]
    BadTime {
        index: usize,
        field: &'static str,
        value: String,
    },
    #[error("alerts[{index}]: labels have no alertname")]
    NoAlertName { index: usize },
}

/// Every alert of a webhook → a signal (or the reason it was rejected).
pub fn signals_from_webhook(w: &Webhook) -> Vec<Result<Signal, AlertRejected>> {
    w.alerts
        .iter()
        .enumerate()
        .map(|(i, a)| signal_from_alert(i, a))
        .collect()
}

fn signal_from_alert(index: usize, a: &Alert) -> Result<Signal, AlertRejected> {
    let firing = match a.status.as_str() {
        "firing" => true,
        "resolved" => false,
        other => {
            return Err(AlertRejected::BadStatus {
                index,
                status: other.to_string(),
            });
        }
    };
    let alertname = a
        .labels
        .get("alertname")
        .ok_or(AlertRejected::NoAlertName { index })?;
    let starts = Timestamp::parse_rfc3339(&a.starts_at).map_err(|_| AlertRejected::BadTime {
        index,
        field: "startsAt",
        value: a.starts_at.clone(),
    })?;
    let time = if firing {
        starts
    } else {
        Timestamp::parse_rfc3339(&a.ends_at).map_err(|_| AlertRejected::BadTime {
            index,
            field: "endsAt",
            value: a.ends_at.clone(),
        })?
    };
    let label = |k: &str| {
        a.labels
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    };

    let mut resource = Attributes::new();
    if let Some(c) = label("cluster") {
        resource.insert("k8s.cluster.name".into(), c.into());
    }
    let mut entity = entity_from_labels(&label, alertname);
    for (k, v) in &resource {
        entity.attributes.insert(k.clone(), v.clone());
    }

    let mut attributes = Attributes::new();
    attributes.insert("prometheus.alert.name".into(), alertname.as_str().into());
    if !a.fingerprint.is_empty() {
        attributes.insert(
            "prometheus.alert.fingerprint".into(),
            a.fingerprint.as_str().into(),
        );
    }
    attributes.insert(
        "prometheus.alert.starts_at".into(),
        a.starts_at.as_str().into(),
    );
    if !a.generator_url.is_empty() {
        attributes.insert(
            "prometheus.alert.generator_url".into(),
            a.generator_url.as_str().into(),
        );
    }
    for (k, v) in &a.labels {
        attributes.insert(format!("prometheus.label.{k}"), v.as_str().into());
    }
    for (k, v) in &a.annotations {
        attributes.insert(format!("prometheus.annotation.{k}"), v.as_str().into());
    }
    let severity = if !firing {
        Severity::Info
    } else {
        match label("severity").map(str::to_ascii_lowercase).as_deref() {
            Some("critical" | "page" | "error" | "high") => Severity::Critical,
            Some("warning" | "warn" | "medium") => Severity::Warning,
            _ => Severity::Info,
        }
    };
    let summary = a
        .annotations
        .get("summary")
        .or_else(|| a.annotations.get("description"))
        .or_else(|| a.annotations.get("message"))
        .cloned()
        .unwrap_or_default();
    let message = format!(
        "Prometheus alert {alertname} {} on {} {}{}{}",
        if firing { "firing" } else { "resolved" },
        entity.kind,
        entity.name,
        if summary.is_empty() { "" } else { ": " },
        summary
    );
    let labels_text = a
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let identity = if a.fingerprint.is_empty() {
        labels_text.clone()
    } else {
        a.fingerprint.clone()
    };
    Ok(Signal {
        id: stable_id(&["alertmanager", &identity, &a.starts_at, &a.status]),
        name: if firing { FIRING } else { RESOLVED }.to_string(),
        time,
        severity,
        entity,
        resource,
        attributes,
        message,
        evidence: vec![Evidence {
            time,
            kind: "alert".into(),
            text: format!("{alertname}{{{labels_text}}} {}", a.status),
        }],
    })
}

fn entity_from_labels<'a>(label: &impl Fn(&str) -> Option<&'a str>, alertname: &str) -> Entity {
    let ns = label("namespace");
    let with_ns = |e: Entity| match ns {
        Some(n) => e.with_attr("k8s.namespace.name", n),
        None => e,
    };
    let qualified = |name: &str| match ns {
        Some(n) => format!("{n}/{name}"),
        None => name.to_string(),
    };
    if let Some(pod) = label("pod") {
        // Without the pod UID, namespace and name are the identity.
        return with_ns(
            Entity::new(EntityKind::Pod, qualified(pod)).with_attr("k8s.pod.name", pod),
        );
    }
    if let Some(c) = label("container") {
        return with_ns(
            Entity::new(EntityKind::Container, qualified(c)).with_attr("k8s.container.name", c),
        );
    }
    if let Some(node) = label("node").or_else(|| label("kubernetes_node")) {
        return Entity::new(EntityKind::Node, node).with_attr("k8s.node.name", node);
    }
    if let Some(svc) = label("service") {
        return with_ns(Entity::new(EntityKind::Service, svc).with_attr("service.name", svc));
    }
    if let Some(inst) = label("instance") {
        let host = strip_port(inst);
        return Entity::new(EntityKind::Host, host).with_attr("host.name", host);
    }
    if let Some(job) = label("job") {
        return with_ns(Entity::new(EntityKind::Service, job).with_attr("service.name", job));
    }
    Entity::new(EntityKind::Service, alertname).with_attr("service.name", alertname)
}

/// `10.0.0.1:9100` → `10.0.0.1`, `[::1]:9100` → `::1`, `node-1` → `node-1`.
fn strip_port(instance: &str) -> &str {
    if let Some(rest) = instance.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match instance.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => instance,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Shaped exactly as Alertmanager 0.25's webhook (notify/webhook: version "4").
    const PAYLOAD: &str = r#"{
      "receiver": "daytwo", "status": "firing", "version": "4",
      "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
      "groupLabels": {"alertname": "HighErrorRate"},
      "commonLabels": {"alertname": "HighErrorRate", "namespace": "shop", "pod": "cart-7d9f", "severity": "warning"},
      "commonAnnotations": {"summary": "5xx above 5%"},
      "externalURL": "http://alertmanager:9093",
      "alerts": [
        {"status": "firing",
         "labels": {"alertname": "HighErrorRate", "namespace": "shop", "pod": "cart-7d9f", "severity": "warning", "cluster": "prod-eu"},
         "annotations": {"summary": "5xx above 5%"},
         "startsAt": "2026-11-25T14:31:06.123Z", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prometheus:9090/graph?g0.expr=...", "fingerprint": "c7ba9f3a1b2c3d4e"},
        {"status": "resolved",
         "labels": {"alertname": "NodeDown", "instance": "10.0.0.7:9100", "job": "node", "severity": "critical"},
         "annotations": {}, "startsAt": "2026-11-25T14:00:00Z", "endsAt": "2026-11-25T14:30:00Z",
         "generatorURL": "", "fingerprint": "0011223344556677"}
      ]
    }"#;

    #[test]
    fn real_payload_becomes_signals_on_the_labelled_entities() {
        let w: Webhook = serde_json::from_str(PAYLOAD).unwrap();
        let s: Vec<Signal> = signals_from_webhook(&w)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(s[0].name, FIRING);
        assert_eq!(s[0].severity, Severity::Warning);
        assert_eq!(s[0].entity.kind, EntityKind::Pod);
        assert_eq!(s[0].entity.name, "shop/cart-7d9f");
        assert_eq!(s[0].entity.cluster(), Some("prod-eu"));
        assert_eq!(s[0].attributes["prometheus.alert.name"], "HighErrorRate");
        assert!(s[0].message.contains("5xx above 5%"));
        assert_eq!(s[1].name, RESOLVED);
        assert_eq!(s[1].severity, Severity::Info);
        assert_eq!(s[1].entity.kind, EntityKind::Host);
        assert_eq!(s[1].entity.name, "10.0.0.7");
        assert_eq!(
            s[1].time,
            Timestamp::parse_rfc3339("2026-11-25T14:30:00Z").unwrap()
        );
    }

    #[test]
    fn repeats_have_the_same_id_and_resolution_a_different_one() {
        let w: Webhook = serde_json::from_str(PAYLOAD).unwrap();
        let a = signals_from_webhook(&w);
        let b = signals_from_webhook(&w);
        assert_eq!(a[0].as_ref().unwrap().id, b[0].as_ref().unwrap().id);
        assert_ne!(a[0].as_ref().unwrap().id, a[1].as_ref().unwrap().id);
    }

    #[test]
    fn bad_alerts_are_rejected_by_index_and_field() {
        let w: Webhook = serde_json::from_str(
            r#"{"alerts":[{"status":"firing","labels":{"alertname":"X"},"startsAt":"yesterday"},
                          {"status":"pending","labels":{"alertname":"X"},"startsAt":"2026-11-25T14:00:00Z"},
                          {"status":"firing","labels":{},"startsAt":"2026-11-25T14:00:00Z"}]}"#,
        )
        .unwrap();
        let r = signals_from_webhook(&w);
        assert_eq!(
            r[0].as_ref().unwrap_err().to_string(),
            "alerts[0]: startsAt \"yesterday\" is not an RFC 3339 time"
        );
        assert!(matches!(
            r[1],
            Err(AlertRejected::BadStatus { index: 1, .. })
        ));
        assert_eq!(r[2], Err(AlertRejected::NoAlertName { index: 2 }));
    }

    #[test]
    fn ports_are_stripped_from_instances() {
        assert_eq!(strip_port("10.0.0.1:9100"), "10.0.0.1");
        assert_eq!(strip_port("[::1]:9100"), "::1");
        assert_eq!(strip_port("node-1"), "node-1");
        assert_eq!(strip_port("fe80::1"), "fe80::1");
    }
}
