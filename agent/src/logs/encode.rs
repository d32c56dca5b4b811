//! Raw log records → OTLP protobuf bytes, written by hand on the hot path.
//!
//! Entry type: [`FileBatch`]: one per file, holding the resource (encoded once) and the
//! records read since the last commit; [`FileBatch::finish`] gives an [`EncodedBatch`]: the
//! bytes of one `ResourceLogs` *including its field tag* in `ExportLogsServiceRequest`
//! (field 1), so an export body is just stored values concatenated and nothing is decoded or
//! re-encoded on the way to the collector. A message body is copied once, from the read
//! buffer into the batch; the batch buffer is what the state file stores.
//!
//! Record shape (docs/logs.md): body = the message; attributes `log.file.path`,
//! `log.iostream` (container logs), `daytwo.log.template_id` (16 hex digits, the id
//! `daytwo logs templates` prints), `daytwo.log.truncated` (only when true); time = the line's
//! own timestamp when it has one; observed time = when it was read; `severity_number` and
//! `severity_text` when the source states a level (journald's `PRIORITY`, see
//! [`LogSeverity::from_syslog`]). No event name: these are plain logs, not signals. Invariant:
//! the output decodes with opentelemetry-proto (tested).

use daytwo_model::Attributes;

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// `tag`, length, bytes.
fn put_bytes(out: &mut Vec<u8>, tag: u8, b: &[u8]) {
    out.push(tag);
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// Length of an `AnyValue{string_value}` holding `n` bytes.
fn any_string_len(n: usize) -> usize {
    1 + varint_len(n as u64) + n
}

/// A `KeyValue` with a string value, as a length-delimited field `tag`.
fn put_kv_string(out: &mut Vec<u8>, tag: u8, key: &str, val: &[u8]) {
    let any = any_string_len(val.len());
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + varint_len(any as u64) + any;
    out.push(tag);
    put_varint(out, kv as u64);
    put_bytes(out, 0x0A, key.as_bytes());
    out.push(0x12);
    put_varint(out, any as u64);
    put_bytes(out, 0x0A, val);
}

fn put_kv_bool(out: &mut Vec<u8>, tag: u8, key: &str, val: bool) {
    let any = 2;
    let kv = 1 + varint_len(key.len() as u64) + key.len() + 1 + 1 + any;
    out.push(tag);
    put_varint(out, kv as u64);
    put_bytes(out, 0x0A, key.as_bytes());
    out.push(0x12);
    put_varint(out, any as u64);
    out.push(0x10);
    out.push(val as u8);
}

/// Pre-encoded attribute `log.iostream`.
fn iostream_kv(s: &str) -> Vec<u8> {
    let mut v = Vec::new();
    put_kv_string(&mut v, 0x32, "log.iostream", s.as_bytes());
    v
}

/// A record's level as OTLP states it (`severity_number`, `severity_text`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LogSeverity {
    /// OTLP `SeverityNumber` (1 TRACE … 24 FATAL4).
    pub number: u8,
    /// The level as the source names it.
    pub text: &'static str,
}

impl LogSeverity {
    /// A syslog / journald `PRIORITY` (0 emerg … 7 debug), mapped as OpenTelemetry's log data
    /// model does (appendix B, "Syslog"): emerg FATAL, alert ERROR3, crit ERROR2, err ERROR,
    /// warning WARN, notice INFO2, info INFO, debug DEBUG. The text is the syslog keyword
    /// (what `journalctl -p` accepts). `None` above 7.
    pub fn from_syslog(priority: u8) -> Option<LogSeverity> {
        let (number, text) = match priority {
            0 => (21, "emerg"),
            1 => (19, "alert"),
            2 => (18, "crit"),
            3 => (17, "err"),
            4 => (13, "warning"),
            5 => (10, "notice"),
            6 => (9, "info"),
            7 => (5, "debug"),
            _ => return None,
        };
        Some(LogSeverity { number, text })
    }

    /// ERROR (17) or worse: counts as an error-level line for the detectors.
    pub fn is_error(self) -> bool {
        self.number >= 17
    }
}

/// Hex digits of a template id.
const ID_HEX: usize = 16;

/// The records of one file since the last commit, encoded in place: `buf` starts with `head`
/// reserved bytes where [`FileBatch::finish`] writes the count and the `ResourceLogs` /
/// `ScopeLogs` headers (their lengths are known only then), right-aligned against the
/// records, so a body is written once and never copied again before the state file.
#[derive(Debug)]
pub struct FileBatch {
    /// `Resource` message bytes.
    resource: Vec<u8>,
    /// `InstrumentationScope` message bytes.
    scope: Vec<u8>,
    /// `log.file.path` attribute, encoded once.
    path_kv: Vec<u8>,
    stdout_kv: Vec<u8>,
    stderr_kv: Vec<u8>,
    truncated_kv: Vec<u8>,
    /// `daytwo.log.template_id` attribute without its 16 hex digits (they come last).
    template_kv_head: Vec<u8>,
    /// `severity_number` and `severity_text` fields of every record (empty: none).
    severity: Vec<u8>,
    head: usize,
    /// `head` reserved bytes, then concatenated `ScopeLogs.log_records` fields.
    buf: Vec<u8>,
    pub count: u32,
}

/// One finished batch: `[records: u32 LE][ResourceLogs field of ExportLogsServiceRequest]`,
/// the value stored in the log queue, inside a buffer that can be reused afterwards.
#[derive(Debug)]
pub struct EncodedBatch {
    pub records: u32,
    buf: Vec<u8>,
    start: usize,
}

impl EncodedBatch {
    /// A batch from a count and a `ResourceLogs` field (copies; tests and tools).
    pub fn from_body(records: u32, body: &[u8]) -> EncodedBatch {
        let mut buf = Vec::with_capacity(4 + body.len());
        buf.extend_from_slice(&records.to_le_bytes());
        buf.extend_from_slice(body);
        EncodedBatch {
            records,
            buf,
            start: 0,
        }
    }

    /// The stored value: the count, then the `ResourceLogs` field.
    pub fn value(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// The `ResourceLogs` field alone.
    pub fn body(&self) -> &[u8] {
        &self.value()[4..]
    }

    /// The buffer, for the next batch.
    pub fn into_buf(self) -> Vec<u8> {
        self.buf
    }
}

const SCOPE_NAME: &str = daytwo_model::otlp::SCOPE_NAME;

impl FileBatch {
    pub fn new(resource: &Attributes, path: &str) -> FileBatch {
        let mut res = Vec::new();
        for (k, v) in resource {
            match v {
                serde_json::Value::String(s) => put_kv_string(&mut res, 0x0A, k, s.as_bytes()),
                other => put_kv_string(&mut res, 0x0A, k, other.to_string().as_bytes()),
            }
        }
        let mut scope = Vec::with_capacity(SCOPE_NAME.len() + 16);
        put_bytes(&mut scope, 0x0A, SCOPE_NAME.as_bytes());
        put_bytes(&mut scope, 0x12, env!("CARGO_PKG_VERSION").as_bytes());
        let mut path_kv = Vec::new();
        put_kv_string(&mut path_kv, 0x32, "log.file.path", path.as_bytes());
        let mut truncated_kv = Vec::new();
        put_kv_bool(&mut truncated_kv, 0x32, "daytwo.log.truncated", true);
        let mut template_kv_head = Vec::new();
        put_kv_string(
            &mut template_kv_head,
            0x32,
            "daytwo.log.template_id",
            &[b'0'; ID_HEX],
        );
        template_kv_head.truncate(template_kv_head.len() - ID_HEX);
        // count, then tag + the longest varint + bytes for ResourceLogs, Resource, ScopeLogs
        // and the scope.
        let head = 4 + (1 + 10) + (1 + 10 + res.len()) + (1 + 10) + (1 + 10 + scope.len());
        let buf = vec![0; head];
        FileBatch {
            resource: res,
            scope,
            path_kv,
            stdout_kv: iostream_kv("stdout"),
            stderr_kv: iostream_kv("stderr"),
            truncated_kv,
            template_kv_head,
            severity: Vec::new(),
            head,
            buf,
            count: 0,
        }
    }

    /// Every record of this batch gets `severity`.
    pub fn with_severity(mut self, severity: Option<LogSeverity>) -> FileBatch {
        self.severity.clear();
        if let Some(s) = severity {
            self.severity.push(0x10); // severity_number, field 2, varint
            put_varint(&mut self.severity, s.number as u64);
            put_bytes(&mut self.severity, 0x1A, s.text.as_bytes()); // severity_text, field 3
        }
        self
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Bytes of records waiting.
    pub fn bytes(&self) -> usize {
        self.buf.len() - self.head
    }

    /// Appends one record. `stream` is `stdout`, `stderr` or empty.
    pub fn push(
        &mut self,
        time_ns: Option<i64>,
        observed_ns: i64,
        stream: &str,
        body: &[u8],
        template_id: u64,
        truncated: bool,
    ) {
        let stream_kv: &[u8] = match stream {
            "stdout" => &self.stdout_kv,
            "stderr" => &self.stderr_kv,
            _ => &[],
        };
        let any = any_string_len(body.len());
        let len = if time_ns.is_some() { 9 } else { 0 }
            + self.severity.len()
            + 1
            + varint_len(any as u64)
            + any
            + self.path_kv.len()
            + stream_kv.len()
            + self.template_kv_head.len()
            + ID_HEX
            + if truncated {
                self.truncated_kv.len()
            } else {
                0
            }
            + 9;
        let r = &mut self.buf;
        r.reserve(1 + varint_len(len as u64) + len);
        let before = r.len();
        r.push(0x12); // ScopeLogs.log_records
        put_varint(r, len as u64);
        if let Some(t) = time_ns {
            r.push(0x09);
            r.extend_from_slice(&(t.max(0) as u64).to_le_bytes());
        }
        r.extend_from_slice(&self.severity);
        // body: AnyValue{string_value}
        r.push(0x2A);
        put_varint(r, any as u64);
        put_bytes(r, 0x0A, body);
        r.extend_from_slice(&self.path_kv);
        r.extend_from_slice(stream_kv);
        r.extend_from_slice(&self.template_kv_head);
        let mut hex = [0u8; ID_HEX];
        for (i, h) in hex.iter_mut().enumerate() {
            let nib = (template_id >> (60 - 4 * i)) & 0xf;
            *h = b"0123456789abcdef"[nib as usize];
        }
        r.extend_from_slice(&hex);
        if truncated {
            r.extend_from_slice(&self.truncated_kv);
        }
        r.push(0x59); // observed_time_unix_nano, field 11, fixed64
        r.extend_from_slice(&(observed_ns.max(0) as u64).to_le_bytes());
        debug_assert_eq!(r.len() - before, 1 + varint_len(len as u64) + len);
        self.count += 1;
    }

    /// Everything pushed, as one [`EncodedBatch`]; the batch continues in `next` (a spare
    /// buffer, emptied here).
    pub fn finish(&mut self, mut next: Vec<u8>) -> EncodedBatch {
        let records_len = self.bytes();
        let scope_logs_len =
            1 + varint_len(self.scope.len() as u64) + self.scope.len() + records_len;
        let rl_len = 1
            + varint_len(self.resource.len() as u64)
            + self.resource.len()
            + 1
            + varint_len(scope_logs_len as u64)
            + scope_logs_len;
        let mut hdr = Vec::with_capacity(self.head);
        hdr.extend_from_slice(&self.count.to_le_bytes());
        hdr.push(0x0A); // ExportLogsServiceRequest.resource_logs
        put_varint(&mut hdr, rl_len as u64);
        put_bytes(&mut hdr, 0x0A, &self.resource);
        hdr.push(0x12); // ResourceLogs.scope_logs
        put_varint(&mut hdr, scope_logs_len as u64);
        put_bytes(&mut hdr, 0x0A, &self.scope);
        let start = self.head - hdr.len();
        self.buf[start..self.head].copy_from_slice(&hdr);
        next.clear();
        next.resize(self.head, 0);
        let buf = std::mem::replace(&mut self.buf, next);
        let records = std::mem::take(&mut self.count);
        EncodedBatch {
            records,
            buf,
            start,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    use prost::Message;

    #[test]
    fn decodes_with_opentelemetry_proto() {
        let mut res = Attributes::new();
        res.insert("host.name".into(), "n1".into());
        res.insert("k8s.pod.uid".into(), "u-1".into());
        let mut b = FileBatch::new(&res, "/var/log/pods/a_b_c/d/0.log");
        let long = "é".repeat(200);
        b.push(
            Some(5),
            7,
            "stderr",
            long.as_bytes(),
            0x0123_4567_89ab_cdef,
            true,
        );
        b.push(None, 8, "", b"plain", 1, false);
        let first = b.finish(Vec::new());
        assert_eq!(first.records, 2);
        assert_eq!(&first.value()[..4], &2u32.to_le_bytes());
        let mut body = first.body().to_vec();
        assert!(b.is_empty());
        b.push(Some(9), 9, "stdout", b"second batch", 2, false);
        body.extend_from_slice(b.finish(first.into_buf()).body());
        let req = ExportLogsServiceRequest::decode(body.as_slice()).unwrap();
        assert_eq!(req.resource_logs.len(), 2);
        let rl = &req.resource_logs[0];
        let attrs = daytwo_model::otlp::attributes_from(&rl.resource.as_ref().unwrap().attributes);
        assert_eq!(attrs, res);
        let sl = &rl.scope_logs[0];
        assert_eq!(sl.scope.as_ref().unwrap().name, "daytwo.agent");
        let r = &sl.log_records[0];
        assert_eq!(r.time_unix_nano, 5);
        assert_eq!(r.observed_time_unix_nano, 7);
        assert!(r.event_name.is_empty());
        assert_eq!(
            r.body.as_ref().unwrap().value,
            Some(Value::StringValue(long.clone()))
        );
        let a = daytwo_model::otlp::attributes_from(&r.attributes);
        assert_eq!(a["log.file.path"], "/var/log/pods/a_b_c/d/0.log");
        assert_eq!(a["log.iostream"], "stderr");
        assert_eq!(a["daytwo.log.template_id"], "0123456789abcdef");
        assert_eq!(a["daytwo.log.truncated"], true);
        assert_eq!((r.severity_number, r.severity_text.as_str()), (0, ""));
        let r = &sl.log_records[1];
        assert_eq!(r.time_unix_nano, 0);
        let a = daytwo_model::otlp::attributes_from(&r.attributes);
        assert!(!a.contains_key("log.iostream"));
        assert!(!a.contains_key("daytwo.log.truncated"));
        assert_eq!(
            req.resource_logs[1].scope_logs[0].log_records[0]
                .body
                .as_ref()
                .unwrap()
                .value,
            Some(Value::StringValue("second batch".into()))
        );
    }

    #[test]
    fn severity_is_encoded_on_every_record_of_a_batch() {
        let mut b = FileBatch::new(&Attributes::new(), "journald")
            .with_severity(LogSeverity::from_syslog(3));
        b.push(None, 1, "", b"disk failed", 7, false);
        b.push(Some(2), 3, "", b"again", 7, true);
        let req = ExportLogsServiceRequest::decode(b.finish(Vec::new()).body()).unwrap();
        let recs = &req.resource_logs[0].scope_logs[0].log_records;
        assert_eq!(recs.len(), 2);
        for r in recs {
            assert_eq!(r.severity_number, 17);
            assert_eq!(r.severity_text, "err");
        }
        assert_eq!(recs[1].time_unix_nano, 2);
    }

    #[test]
    fn syslog_priorities_map_like_opentelemetry() {
        let got: Vec<(i32, &str)> = (0..8)
            .map(|p| {
                let s = LogSeverity::from_syslog(p).unwrap();
                (s.number as i32, s.text)
            })
            .collect();
        use opentelemetry_proto::tonic::logs::v1::SeverityNumber as N;
        assert_eq!(
            got,
            vec![
                (N::Fatal as i32, "emerg"),
                (N::Error3 as i32, "alert"),
                (N::Error2 as i32, "crit"),
                (N::Error as i32, "err"),
                (N::Warn as i32, "warning"),
                (N::Info2 as i32, "notice"),
                (N::Info as i32, "info"),
                (N::Debug as i32, "debug"),
            ]
        );
        assert_eq!(LogSeverity::from_syslog(8), None);
        assert!(LogSeverity::from_syslog(3).unwrap().is_error());
        assert!(!LogSeverity::from_syslog(4).unwrap().is_error());
    }
}
