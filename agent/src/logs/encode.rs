//! Raw log records → OTLP protobuf bytes, written by hand on the hot path.
//!
//! Entry type: [`FileBatch`]: one per file, holding the resource (encoded once) and the
//! records read since the last commit; [`FileBatch::finish`] gives the bytes of one
//! `ResourceLogs` *including its field tag* in `ExportLogsServiceRequest` (field 1), so an
//! export body is just stored values concatenated and nothing is decoded or re-encoded on
//! the way to the collector.
//!
//! Record shape (docs/logs.md): body = the message; attributes `log.file.path`,
//! `log.iostream` (container logs), `daytwo.log.template_id` (16 hex digits, the id
//! `daytwo logs templates` prints), `daytwo.log.truncated` (only when true); time = the line's
//! own timestamp when it has one; observed time = when it was read. No event name: these are
//! plain logs, not signals. Invariant: the output decodes with opentelemetry-proto (tested).

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

/// The records of one file since the last commit.
#[derive(Debug)]
pub struct FileBatch {
    /// `Resource` message bytes.
    resource: Vec<u8>,
    /// `log.file.path` attribute, encoded once.
    path_kv: Vec<u8>,
    stdout_kv: Vec<u8>,
    stderr_kv: Vec<u8>,
    /// Concatenated `ScopeLogs.log_records` fields.
    records: Vec<u8>,
    scratch: Vec<u8>,
    pub count: u32,
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
        let mut path_kv = Vec::new();
        put_kv_string(&mut path_kv, 0x32, "log.file.path", path.as_bytes());
        FileBatch {
            resource: res,
            path_kv,
            stdout_kv: iostream_kv("stdout"),
            stderr_kv: iostream_kv("stderr"),
            records: Vec::new(),
            scratch: Vec::new(),
            count: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn bytes(&self) -> usize {
        self.records.len()
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
        let r = &mut self.scratch;
        r.clear();
        if let Some(t) = time_ns {
            r.push(0x09);
            r.extend_from_slice(&(t.max(0) as u64).to_le_bytes());
        }
        // body: AnyValue{string_value}
        let any = any_string_len(body.len());
        r.push(0x2A);
        put_varint(r, any as u64);
        put_bytes(r, 0x0A, body);
        r.extend_from_slice(&self.path_kv);
        match stream {
            "stdout" => r.extend_from_slice(&self.stdout_kv),
            "stderr" => r.extend_from_slice(&self.stderr_kv),
            _ => {}
        }
        let mut hex = [0u8; 16];
        for (i, h) in hex.iter_mut().enumerate() {
            let nib = (template_id >> (60 - 4 * i)) & 0xf;
            *h = b"0123456789abcdef"[nib as usize];
        }
        put_kv_string(r, 0x32, "daytwo.log.template_id", &hex);
        if truncated {
            put_kv_bool(r, 0x32, "daytwo.log.truncated", true);
        }
        r.push(0x59); // observed_time_unix_nano, field 11, fixed64
        r.extend_from_slice(&(observed_ns.max(0) as u64).to_le_bytes());
        put_bytes(&mut self.records, 0x12, r);
        self.count += 1;
    }

    /// The `ResourceLogs` field (tag included) of everything pushed; empties the batch.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut scope = Vec::with_capacity(SCOPE_NAME.len() + 16);
        put_bytes(&mut scope, 0x0A, SCOPE_NAME.as_bytes());
        put_bytes(&mut scope, 0x12, env!("CARGO_PKG_VERSION").as_bytes());
        let scope_logs_len = 1 + varint_len(scope.len() as u64) + scope.len() + self.records.len();
        let rl_len = 1
            + varint_len(self.resource.len() as u64)
            + self.resource.len()
            + 1
            + varint_len(scope_logs_len as u64)
            + scope_logs_len;
        let mut out = Vec::with_capacity(rl_len + 12);
        out.push(0x0A);
        put_varint(&mut out, rl_len as u64);
        put_bytes(&mut out, 0x0A, &self.resource);
        out.push(0x12);
        put_varint(&mut out, scope_logs_len as u64);
        put_bytes(&mut out, 0x0A, &scope);
        out.extend_from_slice(&self.records);
        self.records.clear();
        self.count = 0;
        if self.records.capacity() > 8 << 20 {
            self.records.shrink_to(1 << 20);
        }
        out
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
        let mut body = b.finish();
        assert!(b.is_empty());
        b.push(Some(9), 9, "stdout", b"second batch", 2, false);
        body.extend(b.finish());
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
}
