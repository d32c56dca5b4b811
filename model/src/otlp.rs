//! The mapping between signals and OTLP log records.
//!
//! A signal is an OTLP log record whose `event_name` is the signal's name. The reporting
//! resource's attributes become the OTLP resource; the event attributes become record
//! attributes; daytwo's own fields travel under `daytwo.*` keys so that any OTLP backend keeps
//! them and our collector can rebuild the exact signal:
//!
//! | key | value |
//! |---|---|
//! | `daytwo.signal.id` | string, stable id (redelivery is idempotent) |
//! | `daytwo.severity` | `info`, `warning` or `critical` |
//! | `daytwo.entity.kind`, `daytwo.entity.name` | what the signal is about |
//! | `daytwo.entity.attributes` | kvlist, the entity's identity attributes |
//! | `daytwo.evidence` | array of kvlists `{time, kind, text}` |
//!
//! Records from other OTel sources (an `event_name` but no `daytwo.*` keys) decode too: their
//! entity comes from the resource attributes and their id from their content.

use crate::entity::{Attributes, Entity, EntityKind};
use crate::ids::stable_id;
use crate::signal::{Evidence, Severity, Signal};
use crate::time::Timestamp;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, KeyValue, KeyValueList, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use opentelemetry_proto::tonic::resource::v1::Resource;

pub const KEY_SIGNAL_ID: &str = "daytwo.signal.id";
pub const KEY_SEVERITY: &str = "daytwo.severity";
pub const KEY_ENTITY_KIND: &str = "daytwo.entity.kind";
pub const KEY_ENTITY_NAME: &str = "daytwo.entity.name";
pub const KEY_ENTITY_ATTRIBUTES: &str = "daytwo.entity.attributes";
pub const KEY_EVIDENCE: &str = "daytwo.evidence";
/// The instrumentation scope daytwo's agent reports under.
pub const SCOPE_NAME: &str = "daytwo.agent";

/// Why a log record could not become a signal.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SignalDecodeFailed {
    #[error(
        "log record has no event_name (and no event.name attribute): it is a plain log, not a signal"
    )]
    NotAnEvent,
    #[error("attribute {key}: {problem}")]
    BadAttribute { key: &'static str, problem: String },
}

/// JSON value → OTLP AnyValue.
pub fn any_value(v: &serde_json::Value) -> AnyValue {
    use serde_json::Value;
    let value = match v {
        Value::Null => None,
        Value::Bool(b) => Some(any_value::Value::BoolValue(*b)),
        Value::Number(n) => Some(match n.as_i64() {
            Some(i) => any_value::Value::IntValue(i),
            None => any_value::Value::DoubleValue(n.as_f64().unwrap_or(f64::NAN)),
        }),
        Value::String(s) => Some(any_value::Value::StringValue(s.clone())),
        Value::Array(a) => Some(any_value::Value::ArrayValue(ArrayValue {
            values: a.iter().map(any_value).collect(),
        })),
        Value::Object(o) => Some(any_value::Value::KvlistValue(KeyValueList {
            values: o.iter().map(|(k, v)| key_value(k, v)).collect(),
        })),
    };
    AnyValue { value }
}

/// OTLP AnyValue → JSON value (bytes become lowercase hex).
pub fn json_value(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value;
    match &v.value {
        None => Value::Null,
        Some(any_value::Value::StringValue(s)) => Value::String(s.clone()),
        Some(any_value::Value::BoolValue(b)) => Value::Bool(*b),
        Some(any_value::Value::IntValue(i)) => Value::from(*i),
        Some(any_value::Value::DoubleValue(d)) => serde_json::Number::from_f64(*d)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(json_value).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => Value::Object(
            kv.values
                .iter()
                .map(|kv| {
                    (
                        kv.key.clone(),
                        kv.value.as_ref().map(json_value).unwrap_or(Value::Null),
                    )
                })
                .collect(),
        ),
        Some(any_value::Value::BytesValue(b)) => {
            Value::String(b.iter().map(|x| format!("{x:02x}")).collect())
        }
        #[allow(unreachable_patterns)]
        Some(_) => Value::Null,
    }
}

pub fn key_value(k: &str, v: &serde_json::Value) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(any_value(v)),
        ..Default::default()
    }
}

fn string_kv(k: &str, v: &str) -> KeyValue {
    key_value(k, &serde_json::Value::String(v.to_string()))
}

/// OTLP attributes → a flat JSON object.
pub fn attributes_from(kvs: &[KeyValue]) -> Attributes {
    kvs.iter()
        .map(|kv| {
            (
                kv.key.clone(),
                kv.value
                    .as_ref()
                    .map(json_value)
                    .unwrap_or(serde_json::Value::Null),
            )
        })
        .collect()
}

/// One signal → one OTLP log record (the resource travels separately).
pub fn signal_to_log_record(s: &Signal) -> LogRecord {
    let mut attributes: Vec<KeyValue> = s.attributes.iter().map(|(k, v)| key_value(k, v)).collect();
    attributes.push(string_kv(KEY_SIGNAL_ID, &s.id));
    attributes.push(string_kv(KEY_SEVERITY, s.severity.as_str()));
    attributes.push(string_kv(KEY_ENTITY_KIND, s.entity.kind.as_str()));
    attributes.push(string_kv(KEY_ENTITY_NAME, &s.entity.name));
    attributes.push(key_value(
        KEY_ENTITY_ATTRIBUTES,
        &serde_json::Value::Object(s.entity.attributes.clone().into_iter().collect()),
    ));
    if !s.evidence.is_empty() {
        let ev: Vec<serde_json::Value> = s
            .evidence
            .iter()
            .map(
                |e| serde_json::json!({"time": e.time.to_string(), "kind": e.kind, "text": e.text}),
            )
            .collect();
        attributes.push(key_value(KEY_EVIDENCE, &serde_json::Value::Array(ev)));
    }
    LogRecord {
        time_unix_nano: s.time.0.max(0) as u64,
        observed_time_unix_nano: s.time.0.max(0) as u64,
        severity_number: s.severity.otlp_number(),
        severity_text: s.severity.as_str().to_uppercase(),
        body: Some(AnyValue {
            value: Some(any_value::Value::StringValue(s.message.clone())),
        }),
        attributes,
        event_name: s.name.clone(),
        ..Default::default()
    }
}

/// Signals → one export request, one `ResourceLogs` per distinct resource, order preserved
/// within a resource.
pub fn signals_to_request(signals: &[Signal]) -> ExportLogsServiceRequest {
    let mut resource_logs: Vec<(Attributes, Vec<LogRecord>)> = Vec::new();
    for s in signals {
        let rec = signal_to_log_record(s);
        match resource_logs.iter_mut().find(|(r, _)| *r == s.resource) {
            Some((_, recs)) => recs.push(rec),
            None => resource_logs.push((s.resource.clone(), vec![rec])),
        }
    }
    ExportLogsServiceRequest {
        resource_logs: resource_logs
            .into_iter()
            .map(|(res, recs)| ResourceLogs {
                resource: Some(Resource {
                    attributes: res.iter().map(|(k, v)| key_value(k, v)).collect(),
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(
                        opentelemetry_proto::tonic::common::v1::InstrumentationScope {
                            name: SCOPE_NAME.to_string(),
                            version: env!("CARGO_PKG_VERSION").to_string(),
                            ..Default::default()
                        },
                    ),
                    log_records: recs,
                    ..Default::default()
                }],
                ..Default::default()
            })
            .collect(),
    }
}

/// The entity a plain OTel resource describes, most specific first.
pub fn entity_from_resource(res: &Attributes) -> Entity {
    let s = |k: &str| res.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let (kind, name) = if let Some(uid) = s("k8s.pod.uid") {
        (EntityKind::Pod, s("k8s.pod.name").unwrap_or(uid))
    } else if let Some(id) = s("container.id") {
        (EntityKind::Container, s("container.name").unwrap_or(id))
    } else if let Some(svc) = s("service.name") {
        (EntityKind::Service, svc)
    } else if let Some(n) = s("k8s.node.name") {
        (EntityKind::Node, n)
    } else if let Some(h) = s("host.name") {
        (EntityKind::Host, h)
    } else {
        (EntityKind::Service, "unknown_service".to_string())
    };
    let attributes = res
        .iter()
        .filter(|(k, _)| crate::entity::IDENTITY_KEYS.contains(&k.as_str()) || k.ends_with(".name"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Entity {
        kind,
        name,
        attributes,
    }
}

/// One log record (with its resource) → a signal.
pub fn signal_from_log_record(
    resource: &Attributes,
    rec: &LogRecord,
) -> Result<Signal, SignalDecodeFailed> {
    let mut attributes = attributes_from(&rec.attributes);
    let name = if !rec.event_name.is_empty() {
        rec.event_name.clone()
    } else if let Some(serde_json::Value::String(n)) = attributes.remove("event.name") {
        n
    } else {
        return Err(SignalDecodeFailed::NotAnEvent);
    };
    let time = Timestamp(
        if rec.time_unix_nano != 0 {
            rec.time_unix_nano
        } else {
            rec.observed_time_unix_nano
        }
        .min(i64::MAX as u64) as i64,
    );
    let message = rec.body.as_ref().map(json_value).map(|v| match v {
        serde_json::Value::String(s) => s,
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    });
    let message = message.unwrap_or_default();

    let severity = match attributes.remove(KEY_SEVERITY) {
        Some(serde_json::Value::String(s)) => {
            Severity::parse(&s).ok_or_else(|| SignalDecodeFailed::BadAttribute {
                key: KEY_SEVERITY,
                problem: format!("{s:?} is not one of info, warning, critical"),
            })?
        }
        Some(other) => {
            return Err(SignalDecodeFailed::BadAttribute {
                key: KEY_SEVERITY,
                problem: format!("expected a string, got {other}"),
            });
        }
        None => Severity::from_otlp_number(rec.severity_number),
    };

    let entity_kind = attributes.remove(KEY_ENTITY_KIND);
    let entity_name = attributes.remove(KEY_ENTITY_NAME);
    let entity_attrs = attributes.remove(KEY_ENTITY_ATTRIBUTES);
    let entity = match entity_kind {
        Some(serde_json::Value::String(k)) => {
            let kind = EntityKind::parse(&k).ok_or_else(|| SignalDecodeFailed::BadAttribute {
                key: KEY_ENTITY_KIND,
                problem: format!(
                    "{k:?} is not an entity kind (host, node, pod, container, cgroup, process, …)"
                ),
            })?;
            let name = entity_name
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            let attributes = match entity_attrs {
                Some(serde_json::Value::Object(o)) => o.into_iter().collect(),
                None | Some(serde_json::Value::Null) => Attributes::new(),
                Some(other) => {
                    return Err(SignalDecodeFailed::BadAttribute {
                        key: KEY_ENTITY_ATTRIBUTES,
                        problem: format!("expected a kvlist, got {other}"),
                    });
                }
            };
            Entity {
                kind,
                name,
                attributes,
            }
        }
        Some(other) => {
            return Err(SignalDecodeFailed::BadAttribute {
                key: KEY_ENTITY_KIND,
                problem: format!("expected a string, got {other}"),
            });
        }
        None => entity_from_resource(resource),
    };

    let evidence = match attributes.remove(KEY_EVIDENCE) {
        None | Some(serde_json::Value::Null) => Vec::new(),
        Some(serde_json::Value::Array(items)) => items
            .into_iter()
            .map(|item| {
                let get = |k: &str| {
                    item.get(k)
                        .and_then(|v| v.as_str())
                        .unwrap_or_default()
                        .to_string()
                };
                let t = get("time");
                let time =
                    Timestamp::parse_rfc3339(&t).map_err(|e| SignalDecodeFailed::BadAttribute {
                        key: KEY_EVIDENCE,
                        problem: format!("evidence time {t:?}: {e}"),
                    })?;
                Ok(Evidence {
                    time,
                    kind: get("kind"),
                    text: get("text"),
                })
            })
            .collect::<Result<_, _>>()?,
        Some(other) => {
            return Err(SignalDecodeFailed::BadAttribute {
                key: KEY_EVIDENCE,
                problem: format!("expected an array, got {other}"),
            });
        }
    };

    let id = match attributes.remove(KEY_SIGNAL_ID) {
        Some(serde_json::Value::String(id)) if !id.is_empty() => id,
        Some(serde_json::Value::String(_)) | None => {
            let res = serde_json::to_string(resource).unwrap_or_default();
            let attrs = serde_json::to_string(&attributes).unwrap_or_default();
            stable_id(&[&res, &time.0.to_string(), &name, &message, &attrs])
        }
        Some(other) => {
            return Err(SignalDecodeFailed::BadAttribute {
                key: KEY_SIGNAL_ID,
                problem: format!("expected a string, got {other}"),
            });
        }
    };

    Ok(Signal {
        id,
        name,
        time,
        severity,
        entity,
        resource: resource.clone(),
        attributes,
        message,
        evidence,
    })
}

/// Every record of an export request → signals; plain logs (no event name) are skipped and
/// counted in the second value, records that fail to decode are returned as errors.
pub fn signals_from_request(
    req: &ExportLogsServiceRequest,
) -> (Vec<Result<Signal, SignalDecodeFailed>>, usize) {
    let mut out = Vec::new();
    let mut plain = 0;
    for rl in &req.resource_logs {
        let resource = rl
            .resource
            .as_ref()
            .map(|r| attributes_from(&r.attributes))
            .unwrap_or_default();
        for sl in &rl.scope_logs {
            for rec in &sl.log_records {
                match signal_from_log_record(&resource, rec) {
                    Err(SignalDecodeFailed::NotAnEvent) => plain += 1,
                    other => out.push(other),
                }
            }
        }
    }
    (out, plain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> Signal {
        let entity = Entity::new(EntityKind::Cgroup, "/probe")
            .with_attr("host.name", "node-1")
            .with_attr("daytwo.cgroup.path", "/probe");
        let mut resource = Attributes::new();
        resource.insert("host.name".into(), "node-1".into());
        let mut attributes = Attributes::new();
        attributes.insert("process.pid".into(), 1693.into());
        attributes.insert("daytwo.memory.limit_bytes".into(), 67108864u64.into());
        Signal {
            id: "abc".into(),
            name: "daytwo.kernel.oom_kill".into(),
            time: Timestamp::from_unix_secs(1_795_617_015),
            severity: Severity::Critical,
            entity,
            resource,
            attributes,
            message: "killed".into(),
            evidence: vec![Evidence {
                time: Timestamp::from_unix_secs(1_795_617_015),
                kind: "log".into(),
                text: "Killed process".into(),
            }],
        }
    }

    #[test]
    fn signal_round_trips_through_otlp() {
        let s = sample();
        let req = signals_to_request(std::slice::from_ref(&s));
        let (decoded, plain) = signals_from_request(&req);
        assert_eq!(plain, 0);
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].as_ref().unwrap(), &s);
    }

    #[test]
    fn plain_logs_are_not_signals() {
        let rec = LogRecord {
            body: Some(any_value(&"hello".into())),
            ..Default::default()
        };
        assert_eq!(
            signal_from_log_record(&Attributes::new(), &rec),
            Err(SignalDecodeFailed::NotAnEvent)
        );
    }

    #[test]
    fn foreign_events_get_entity_from_resource_and_stable_id() {
        let mut res = Attributes::new();
        res.insert("service.name".into(), "cart".into());
        let rec = LogRecord {
            event_name: "app.crash".into(),
            time_unix_nano: 5,
            ..Default::default()
        };
        let a = signal_from_log_record(&res, &rec).unwrap();
        let b = signal_from_log_record(&res, &rec).unwrap();
        assert_eq!(a.entity.kind, EntityKind::Service);
        assert_eq!(a.entity.name, "cart");
        assert_eq!(a.id, b.id);
    }

    #[test]
    fn bad_severity_names_the_attribute() {
        let rec = LogRecord {
            event_name: "x".into(),
            attributes: vec![string_kv(KEY_SEVERITY, "loud")],
            ..Default::default()
        };
        let err = signal_from_log_record(&Attributes::new(), &rec).unwrap_err();
        assert!(err.to_string().contains("daytwo.severity"), "{err}");
    }

    proptest! {
        #[test]
        fn json_any_value_round_trips(s in ".*", i in any::<i64>(), b in any::<bool>()) {
            let v = serde_json::json!({"s": s, "i": i, "b": b, "a": [1, "x", null]});
            prop_assert_eq!(json_value(&any_value(&v)), v);
        }
    }
}
