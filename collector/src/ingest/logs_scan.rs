//! Reads an OTLP `ExportLogsServiceRequest` without decoding it into owned messages, for the
//! common case of plain log records (an agent's raw logs), which the collector only counts.
//!
//! Entry point: [`LogsCodec`], the gRPC codec of the logs service ([`super::LogsServer`]): it
//! hands the service a [`LogsExport`], either [`LogsExport::Plain`] (every record checked,
//! none is a signal: just the count) or [`LogsExport::Full`] (prost-decoded as before, for
//! requests holding signals or anything [`plain_records`] does not vouch for).
//!
//! Why: decoding a request into opentelemetry-proto's types allocates several strings and
//! vectors per record (body, attribute keys and values) only to drop them again; that was
//! most of the collector's CPU on a stream of raw logs, which shares its cores with the
//! agent. The scan checks the same things prost does (wire types of the fields it knows,
//! lengths, UTF-8 of strings) and allocates nothing.
//!
//! Invariant: `plain_records` returns `Some(n)` only for bytes that prost decodes into a
//! request of `n` log records, none with an event name (field or `event.name` attribute);
//! anything it is unsure of (groups, deep nesting, an event name) is `None`, and the caller
//! decodes with prost, whose answer, error included, is then the answer (property-tested
//! against prost below).

use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// A decoded logs export.
#[derive(Debug)]
pub enum LogsExport {
    /// Plain log records only (no signal among them): how many.
    Plain { records: u64 },
    /// Decoded in full (it may hold signals).
    Full(ExportLogsServiceRequest),
}

impl LogsExport {
    /// Decodes `bytes` (one gRPC message): scanned when it is plain logs, else with prost.
    pub fn decode(bytes: prost::bytes::Bytes) -> Result<LogsExport, prost::DecodeError> {
        match plain_records(&bytes) {
            Some(records) => Ok(LogsExport::Plain { records }),
            None => ExportLogsServiceRequest::decode(bytes).map(LogsExport::Full),
        }
    }
}

/// Nesting (messages inside messages) beyond which the scan gives up and prost decides
/// (prost's own limit is 100).
const MAX_DEPTH: u32 = 32;

/// What one field holds, its wire type checked.
#[derive(Clone, Copy)]
enum Wire<'a> {
    Varint,
    Fixed64,
    Fixed32,
    Len(&'a [u8]),
}

fn varint(b: &[u8], i: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for k in 0..10 {
        let c = *b.get(*i)?;
        *i += 1;
        // The tenth byte holds the 64th bit only (prost rejects more).
        if k == 9 && c > 1 {
            return None;
        }
        v |= ((c & 0x7f) as u64) << (7 * k);
        if c < 0x80 {
            return Some(v);
        }
    }
    None
}

/// Calls `f` with every field of the message `b` (number, value); `None` when `b` is not
/// well-formed protobuf (or uses groups), or when `f` says so.
fn fields<'a>(b: &'a [u8], mut f: impl FnMut(u32, Wire<'a>) -> Option<()>) -> Option<()> {
    let mut i = 0;
    while i < b.len() {
        let key = varint(b, &mut i)?;
        if key > u32::MAX as u64 || key >> 3 == 0 {
            return None;
        }
        let w = match key & 7 {
            0 => {
                varint(b, &mut i)?;
                Wire::Varint
            }
            1 => {
                i = i.checked_add(8).filter(|&e| e <= b.len())?;
                Wire::Fixed64
            }
            2 => {
                let n = varint(b, &mut i)?;
                let end = i.checked_add(usize::try_from(n).ok()?)?;
                let v = b.get(i..end)?;
                i = end;
                Wire::Len(v)
            }
            5 => {
                i = i.checked_add(4).filter(|&e| e <= b.len())?;
                Wire::Fixed32
            }
            // Groups (3, 4) are left to prost; 6 and 7 are not wire types.
            _ => return None,
        };
        f((key >> 3) as u32, w)?;
    }
    Some(())
}

fn len(w: Wire<'_>) -> Option<&[u8]> {
    match w {
        Wire::Len(v) => Some(v),
        _ => None,
    }
}

fn string(w: Wire<'_>) -> Option<()> {
    std::str::from_utf8(len(w)?).ok().map(|_| ())
}

fn varint_field(w: Wire<'_>) -> Option<()> {
    matches!(w, Wire::Varint).then_some(())
}

fn fixed64(w: Wire<'_>) -> Option<()> {
    matches!(w, Wire::Fixed64).then_some(())
}

fn fixed32(w: Wire<'_>) -> Option<()> {
    matches!(w, Wire::Fixed32).then_some(())
}

/// Counts records; `None` once a record is a signal (the request is then decoded in full).
#[derive(Default)]
struct Tally {
    records: u64,
}

/// The number of log records in `b`, an `ExportLogsServiceRequest`, when prost would decode
/// it and none of them has an event name; else `None` (see the module docs).
pub fn plain_records(b: &[u8]) -> Option<u64> {
    let mut t = Tally::default();
    fields(b, |f, w| match f {
        1 => resource_logs(len(w)?, &mut t, 1),
        _ => Some(()),
    })?;
    Some(t.records)
}

fn resource_logs(b: &[u8], t: &mut Tally, depth: u32) -> Option<()> {
    fields(b, |f, w| match f {
        1 => resource(len(w)?, depth + 1),
        2 => scope_logs(len(w)?, t, depth + 1),
        3 => string(w),
        _ => Some(()),
    })
}

fn resource(b: &[u8], depth: u32) -> Option<()> {
    fields(b, |f, w| match f {
        1 => key_value(len(w)?, depth + 1).map(|_| ()),
        2 => varint_field(w),
        3 => entity_ref(len(w)?),
        _ => Some(()),
    })
}

fn entity_ref(b: &[u8]) -> Option<()> {
    fields(b, |f, w| match f {
        1..=4 => string(w),
        _ => Some(()),
    })
}

fn scope_logs(b: &[u8], t: &mut Tally, depth: u32) -> Option<()> {
    fields(b, |f, w| match f {
        1 => scope(len(w)?, depth + 1),
        2 => log_record(len(w)?, t, depth + 1),
        3 => string(w),
        _ => Some(()),
    })
}

fn scope(b: &[u8], depth: u32) -> Option<()> {
    fields(b, |f, w| match f {
        1 | 2 => string(w),
        3 => key_value(len(w)?, depth + 1).map(|_| ()),
        4 => varint_field(w),
        _ => Some(()),
    })
}

fn log_record(b: &[u8], t: &mut Tally, depth: u32) -> Option<()> {
    t.records += 1;
    fields(b, |f, w| match f {
        1 | 11 => fixed64(w),
        2 | 7 => varint_field(w),
        3 => string(w),
        5 => any_value(len(w)?, depth + 1),
        // A record with an `event.name` attribute is a signal.
        6 => (!key_value(len(w)?, depth + 1)?).then_some(()),
        8 => fixed32(w),
        9 | 10 => len(w).map(|_| ()),
        // A record with an event name (even an empty one) is left to the full decode.
        12 => None,
        _ => Some(()),
    })
}

/// Checks a `KeyValue`; `Some(true)` when (one of) its key(s) is `event.name`.
fn key_value(b: &[u8], depth: u32) -> Option<bool> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut event = false;
    fields(b, |f, w| match f {
        1 => {
            let k = len(w)?;
            event |= k == b"event.name";
            string(w)
        }
        2 => any_value(len(w)?, depth + 1),
        3 => varint_field(w),
        _ => Some(()),
    })?;
    Some(event)
}

fn any_value(b: &[u8], depth: u32) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    fields(b, |f, w| match f {
        1 => string(w),
        2 | 3 | 8 => varint_field(w),
        4 => fixed64(w),
        // ArrayValue { values: repeated AnyValue = 1 }
        5 => fields(len(w)?, |f, w| match f {
            1 => any_value(len(w)?, depth + 2),
            _ => Some(()),
        }),
        // KeyValueList { values: repeated KeyValue = 1 }
        6 => fields(len(w)?, |f, w| match f {
            1 => key_value(len(w)?, depth + 2).map(|_| ()),
            _ => Some(()),
        }),
        7 => len(w).map(|_| ()),
        _ => Some(()),
    })
}

/// The logs service's codec: requests as [`LogsExport`], responses with prost.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogsCodec;

#[derive(Debug)]
pub struct LogsDecoder;

#[derive(Debug)]
pub struct ResponseEncoder;

impl Decoder for LogsDecoder {
    type Item = LogsExport;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<LogsExport>, Status> {
        use prost::bytes::Buf;
        let bytes = src.copy_to_bytes(src.remaining());
        // The same status tonic's prost codec gives (rewritten to INVALID_ARGUMENT by
        // `rewrite_status`).
        LogsExport::decode(bytes)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

impl Encoder for ResponseEncoder {
    type Item = ExportLogsServiceResponse;
    type Error = Status;
    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("could not encode the response: {e}")))
    }
}

impl Codec for LogsCodec {
    type Encode = ExportLogsServiceResponse;
    type Decode = LogsExport;
    type Encoder = ResponseEncoder;
    type Decoder = LogsDecoder;
    fn encoder(&mut self) -> ResponseEncoder {
        ResponseEncoder
    }
    fn decoder(&mut self) -> LogsDecoder {
        LogsDecoder
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList, any_value::Value,
    };
    use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use proptest::prelude::*;

    fn kv(k: &str, v: Value) -> KeyValue {
        KeyValue {
            key: k.into(),
            value: Some(AnyValue { value: Some(v) }),
            ..Default::default()
        }
    }

    fn record(body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: 1,
            observed_time_unix_nano: 2,
            body: Some(AnyValue {
                value: Some(Value::StringValue(body.into())),
            }),
            attributes: vec![kv("log.iostream", Value::StringValue("stdout".into()))],
            ..Default::default()
        }
    }

    fn request(records: Vec<LogRecord>) -> ExportLogsServiceRequest {
        ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(Resource {
                    attributes: vec![kv("host.name", Value::StringValue("n1".into()))],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs {
                    scope: Some(InstrumentationScope {
                        name: "daytwo.agent".into(),
                        ..Default::default()
                    }),
                    log_records: records,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    #[test]
    fn plain_records_are_counted_and_signals_are_decoded() {
        let plain = request(vec![record("a"), record("b"), record("c")]).encode_to_vec();
        assert_eq!(plain_records(&plain), Some(3));
        assert!(matches!(
            LogsExport::decode(plain.into()).unwrap(),
            LogsExport::Plain { records: 3 }
        ));
        let mut named = record("x");
        named.event_name = "daytwo.node.oom_kill".into();
        let mut attr = record("y");
        attr.attributes
            .push(kv("event.name", Value::StringValue("k".into())));
        for r in [named, attr] {
            let b = request(vec![record("a"), r]).encode_to_vec();
            assert_eq!(plain_records(&b), None);
            assert!(matches!(
                LogsExport::decode(b.into()).unwrap(),
                LogsExport::Full(_)
            ));
        }
        assert_eq!(plain_records(&[]), Some(0));
    }

    #[test]
    fn what_prost_rejects_is_left_to_prost() {
        // Invalid UTF-8 in a record's body string.
        let mut b = request(vec![record("héllo")]).encode_to_vec();
        let at = b.windows(2).position(|w| w == "é".as_bytes()).unwrap();
        b[at] = 0xff;
        assert_eq!(plain_records(&b), None);
        assert!(LogsExport::decode(b.into()).is_err());
        // A field with the wrong wire type (field 1 of the request as a varint).
        assert_eq!(plain_records(&[0x08, 0x07]), None);
        assert!(LogsExport::decode(vec![0x08, 0x07].into()).is_err());
        // Truncated.
        let b = request(vec![record("abc")]).encode_to_vec();
        assert_eq!(plain_records(&b[..b.len() - 1]), None);
        // Deep nesting: the scan gives up, prost decides (here: fine, under its limit).
        let mut v = AnyValue {
            value: Some(Value::StringValue("leaf".into())),
        };
        for _ in 0..40 {
            v = AnyValue {
                value: Some(Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let mut r = record("deep");
        r.body = Some(v);
        let b = request(vec![r]).encode_to_vec();
        assert_eq!(plain_records(&b), None);
        assert!(matches!(
            LogsExport::decode(b.into()).unwrap(),
            LogsExport::Full(_)
        ));
    }

    fn any_value() -> impl Strategy<Value = AnyValue> {
        let leaf = prop_oneof![
            ".{0,12}".prop_map(Value::StringValue),
            any::<bool>().prop_map(Value::BoolValue),
            any::<i64>().prop_map(Value::IntValue),
            any::<f64>().prop_map(Value::DoubleValue),
            proptest::collection::vec(any::<u8>(), 0..8).prop_map(Value::BytesValue),
        ]
        .prop_map(|v| AnyValue { value: Some(v) });
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4)
                    .prop_map(|values| Value::ArrayValue(ArrayValue { values })),
                proptest::collection::vec(("[a-z.]{0,10}", inner), 0..4).prop_map(|kvs| {
                    Value::KvlistValue(KeyValueList {
                        values: kvs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: Some(v),
                                ..Default::default()
                            })
                            .collect(),
                    })
                }),
            ]
            .prop_map(|v| AnyValue { value: Some(v) })
        })
    }

    fn log_record() -> impl Strategy<Value = LogRecord> {
        (
            any::<u64>(),
            0i32..25,
            ".{0,6}",
            proptest::option::of(any_value()),
            proptest::collection::vec(("[a-z.]{0,11}", any_value()), 0..4),
            proptest::collection::vec(any::<u8>(), 0..17),
            prop_oneof![4 => Just(String::new()), 1 => "[a-z.]{1,12}"],
        )
            .prop_map(|(t, sev, text, body, attrs, trace, event)| LogRecord {
                time_unix_nano: t,
                observed_time_unix_nano: t / 2,
                severity_number: sev,
                severity_text: text,
                body,
                attributes: attrs
                    .into_iter()
                    .map(|(key, v)| KeyValue {
                        key,
                        value: Some(v),
                        ..Default::default()
                    })
                    .collect(),
                trace_id: trace,
                event_name: event,
                ..Default::default()
            })
    }

    fn export() -> impl Strategy<Value = ExportLogsServiceRequest> {
        proptest::collection::vec(
            (
                proptest::collection::vec(("[a-z.]{0,10}", any_value()), 0..3),
                proptest::collection::vec(proptest::collection::vec(log_record(), 0..5), 0..3),
            ),
            0..3,
        )
        .prop_map(|rls| ExportLogsServiceRequest {
            resource_logs: rls
                .into_iter()
                .map(|(attrs, scopes)| ResourceLogs {
                    resource: Some(Resource {
                        attributes: attrs
                            .into_iter()
                            .map(|(key, v)| KeyValue {
                                key,
                                value: Some(v),
                                ..Default::default()
                            })
                            .collect(),
                        ..Default::default()
                    }),
                    scope_logs: scopes
                        .into_iter()
                        .map(|log_records| ScopeLogs {
                            log_records,
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                })
                .collect(),
        })
    }

    fn is_plain(r: &ExportLogsServiceRequest) -> bool {
        r.resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .flat_map(|sl| &sl.log_records)
            .all(|r| {
                r.event_name.is_empty() && !r.attributes.iter().any(|kv| kv.key == "event.name")
            })
    }

    fn count(r: &ExportLogsServiceRequest) -> u64 {
        r.resource_logs
            .iter()
            .flat_map(|rl| &rl.scope_logs)
            .map(|sl| sl.log_records.len() as u64)
            .sum()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Every well-formed request of plain records is counted exactly; one holding a
        /// signal is never taken for plain.
        #[test]
        fn counts_what_prost_decodes(req in export()) {
            let b = req.encode_to_vec();
            match plain_records(&b) {
                Some(n) => {
                    prop_assert!(is_plain(&req));
                    prop_assert_eq!(n, count(&req));
                }
                None => prop_assert!(!is_plain(&req)),
            }
        }

        /// Damaged bytes: whatever the scan vouches for, prost decodes, to as many records,
        /// none a signal.
        #[test]
        fn never_vouches_for_what_prost_rejects(
            req in export(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4),
        ) {
            let mut b = req.encode_to_vec();
            for (at, byte, op) in edits {
                if b.is_empty() {
                    break;
                }
                let i = at.index(b.len());
                match op {
                    0 => b[i] = byte,
                    1 => b.truncate(i),
                    _ => b.insert(i, byte),
                }
            }
            if let Some(n) = plain_records(&b) {
                let decoded = ExportLogsServiceRequest::decode(b.as_slice());
                prop_assert!(decoded.is_ok(), "scan said {n} records; prost: {decoded:?}");
                let decoded = decoded.unwrap();
                prop_assert_eq!(n, count(&decoded));
                prop_assert!(is_plain(&decoded));
            }
        }
    }
}
