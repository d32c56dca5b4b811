//! One line of `journalctl -o json` → [`JournalEntry`]. Pure: no I/O.
//!
//! Entry type: [`parse_line`]. The shapes it accepts are journald's, exactly as documented in
//! systemd's "Journal JSON Format" (docs/JOURNAL_EXPORT_FORMATS.md):
//! * a field is a JSON string when its value is printable UTF-8;
//! * an array of numbers (0–255) when it holds non-printable bytes or invalid UTF-8 (a
//!   `MESSAGE` with an escape sequence, a binary payload);
//! * `null` when it is larger than journalctl's threshold and `--all` was not given;
//! * an array of the above when the field has several values in one entry (the first one is
//!   used here);
//! * `__CURSOR`, `__REALTIME_TIMESTAMP` (µs since the epoch, as a string), `__MONOTONIC_TIMESTAMP`
//!   come from the journal file. systemd before v240 printed `{ "K" : "V", … }`, later versions
//!   `{"K":"V",…}`: both are plain JSON.
//!
//! Which unit an entry belongs to ([`JournalEntry::unit`]) follows `journalctl -u`: the
//! manager's own lines about a unit (`_PID=1`, or a user manager's `_COMM=systemd`) carry it in
//! `UNIT` / `USER_UNIT`, everything else in the trusted `_SYSTEMD_UNIT` / `_SYSTEMD_USER_UNIT`
//! (fields starting with `_` are set by journald and cannot be forged by the logging process;
//! `UNIT=` and `MESSAGE_ID=` can, so they are believed only from the manager).
//!
//! Invariants: never panics on any input (property-tested); a line that is not a JSON object is
//! an error naming what is wrong, and the caller counts it and moves on.

use serde_json::{Map, Value};
use std::borrow::Cow;

/// A line that is not a journal entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JournalLineInvalid {
    /// Not JSON at all (a truncated line, a journalctl warning printed on stdout).
    #[error("not JSON: {0}")]
    NotJson(String),
    /// JSON, but not an object.
    #[error("not a JSON object")]
    NotObject,
}

/// The fields of one journal entry the agent uses.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JournalEntry {
    /// `__CURSOR`: where to resume after this entry (`--after-cursor`).
    pub cursor: Option<String>,
    /// `__REALTIME_TIMESTAMP` in µs since the epoch.
    pub realtime_us: Option<u64>,
    /// `MESSAGE` as bytes (a string's UTF-8, or the byte array); empty when absent or null.
    pub message: Vec<u8>,
    /// `MESSAGE` was `null` (larger than journalctl's limit without `--all`).
    pub message_null: bool,
    /// `MESSAGE` was a byte array (non-printable or non-UTF-8 payload).
    pub message_binary: bool,
    /// `PRIORITY` 0 (emerg) … 7 (debug).
    pub priority: Option<u8>,
    pub identifier: Option<String>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub hostname: Option<String>,
    pub boot_id: Option<String>,
    pub transport: Option<String>,
    /// `_SYSTEMD_UNIT` (or `_SYSTEMD_USER_UNIT`): the unit whose process wrote the entry.
    pub systemd_unit: Option<String>,
    /// `UNIT` / `USER_UNIT`: the unit the manager writes about.
    pub about_unit: Option<String>,
    pub message_id: Option<String>,
    /// `UNIT_RESULT` of a failure-result message (`exit-code`, `signal`, `core-dump`, …).
    pub unit_result: Option<String>,
    /// `EXIT_CODE` of a process-exit message: `exited`, `killed` or `dumped`.
    pub exit_code: Option<String>,
    /// `EXIT_STATUS`: the exit status, or the signal number.
    pub exit_status: Option<String>,
    /// `N_RESTARTS` of a restart-scheduled message.
    pub n_restarts: Option<u64>,
    /// `JOB_TYPE` and `JOB_RESULT` of a job message.
    pub job_type: Option<String>,
    pub job_result: Option<String>,
    pub invocation_id: Option<String>,
}

impl JournalEntry {
    /// Written by a service manager (PID 1, or a user's `systemd --user`) rather than by a
    /// unit's own process: only then are `UNIT=` and `MESSAGE_ID=` trusted.
    pub fn from_manager(&self) -> bool {
        self.pid == Some(1)
            || (self.comm.as_deref() == Some("systemd") && self.systemd_unit.is_some())
    }

    /// The unit the entry belongs to, as `journalctl -u` would show it.
    pub fn unit(&self) -> Option<&str> {
        if self.from_manager()
            && let Some(u) = &self.about_unit
        {
            return Some(u);
        }
        self.systemd_unit.as_deref()
    }

    /// The message as text (invalid UTF-8 replaced).
    pub fn message_text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(&self.message)
    }
}

/// The first value of a field as bytes: a string, a byte array, or the first of several
/// values. `None` for `null`, a missing field or anything else.
fn bytes(v: &Value) -> Option<Cow<'_, [u8]>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s.as_bytes())),
        Value::Array(items) if items.iter().all(Value::is_number) => Some(Cow::Owned(
            items
                .iter()
                .map(|n| n.as_u64().map_or(b'?', |b| u8::try_from(b).unwrap_or(b'?')))
                .collect(),
        )),
        Value::Array(items) => items.iter().find_map(bytes),
        Value::Number(n) => Some(Cow::Owned(n.to_string().into_bytes())),
        _ => None,
    }
}

fn text(m: &Map<String, Value>, key: &str) -> Option<String> {
    let b = bytes(m.get(key)?)?;
    let s = String::from_utf8_lossy(&b).into_owned();
    (!s.is_empty()).then_some(s)
}

fn number<T: std::str::FromStr>(m: &Map<String, Value>, key: &str) -> Option<T> {
    text(m, key)?.trim().parse().ok()
}

/// Parses one line of `journalctl -o json`.
pub fn parse_line(line: &[u8]) -> Result<JournalEntry, JournalLineInvalid> {
    let v: Value = serde_json::from_slice(line).map_err(|e| {
        let mut s = e.to_string();
        s.truncate(200);
        JournalLineInvalid::NotJson(s)
    })?;
    let Value::Object(m) = v else {
        return Err(JournalLineInvalid::NotObject);
    };
    let (message, message_null, message_binary) = match m.get("MESSAGE") {
        None => (Vec::new(), false, false),
        Some(Value::Null) => (Vec::new(), true, false),
        Some(v) => {
            let binary = matches!(v, Value::Array(a) if a.iter().all(Value::is_number));
            (
                bytes(v).map(Cow::into_owned).unwrap_or_default(),
                false,
                binary,
            )
        }
    };
    Ok(JournalEntry {
        cursor: text(&m, "__CURSOR"),
        realtime_us: number(&m, "__REALTIME_TIMESTAMP"),
        message,
        message_null,
        message_binary,
        priority: number::<u8>(&m, "PRIORITY").filter(|p| *p <= 7),
        identifier: text(&m, "SYSLOG_IDENTIFIER"),
        pid: number(&m, "_PID"),
        comm: text(&m, "_COMM"),
        hostname: text(&m, "_HOSTNAME"),
        boot_id: text(&m, "_BOOT_ID"),
        transport: text(&m, "_TRANSPORT"),
        systemd_unit: text(&m, "_SYSTEMD_UNIT").or_else(|| text(&m, "_SYSTEMD_USER_UNIT")),
        about_unit: text(&m, "UNIT").or_else(|| text(&m, "USER_UNIT")),
        message_id: text(&m, "MESSAGE_ID").map(|s| s.to_ascii_lowercase()),
        unit_result: text(&m, "UNIT_RESULT"),
        exit_code: text(&m, "EXIT_CODE"),
        exit_status: text(&m, "EXIT_STATUS"),
        n_restarts: number(&m, "N_RESTARTS"),
        job_type: text(&m, "JOB_TYPE"),
        job_result: text(&m, "JOB_RESULT"),
        invocation_id: text(&m, "INVOCATION_ID").or_else(|| text(&m, "USER_INVOCATION_ID")),
    })
}

/// journald's `PRIORITY` (syslog levels) as a word.
pub fn priority_name(p: u8) -> &'static str {
    match p {
        0 => "emerg",
        1 => "alert",
        2 => "crit",
        3 => "err",
        4 => "warning",
        5 => "notice",
        6 => "info",
        _ => "debug",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn strings_byte_arrays_nulls_and_multiple_values() {
        let e = parse_line(
            br#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1604690191243757","MESSAGE":[102,111,111,10,98,97,114,255],"PRIORITY":"3","_PID":"16853","_SYSTEMD_UNIT":"a.service","_UDEV_DEVLINK":["/dev/alias1","/dev/alias2"]}"#,
        )
        .unwrap();
        assert_eq!(e.cursor.as_deref(), Some("s=1;i=2"));
        assert_eq!(e.realtime_us, Some(1_604_690_191_243_757));
        assert_eq!(e.message, b"foo\nbar\xff");
        assert!(e.message_binary && !e.message_null);
        assert_eq!(e.message_text(), "foo\nbar\u{fffd}");
        assert_eq!(e.priority, Some(3));
        assert_eq!(e.unit(), Some("a.service"));
        let e = parse_line(br#"{"MESSAGE":null,"UNIT":"x.service","_PID":"4242"}"#).unwrap();
        assert!(e.message_null && e.message.is_empty());
        // UNIT= written by an ordinary process is not believed.
        assert_eq!(e.unit(), None);
        let e = parse_line(br#"{"MESSAGE":["first",[104,105]],"PRIORITY":"9"}"#).unwrap();
        assert_eq!(e.message, b"first");
        assert_eq!(e.priority, None, "9 is no syslog priority");
    }

    #[test]
    fn the_manager_names_the_unit_it_writes_about() {
        // systemd 239 spacing, as journalctl printed it then.
        let e = parse_line(
            br#"{ "_PID" : "1", "_SYSTEMD_UNIT" : "init.scope", "UNIT" : "bootkube.service", "MESSAGE_ID" : "5EB03494B6584870A536B337290809B3", "N_RESTARTS" : "277" }"#,
        )
        .unwrap();
        assert!(e.from_manager());
        assert_eq!(e.unit(), Some("bootkube.service"));
        assert_eq!(
            e.message_id.as_deref(),
            Some("5eb03494b6584870a536b337290809b3")
        );
        assert_eq!(e.n_restarts, Some(277));
        let user = parse_line(
            br#"{"_COMM":"systemd","_PID":"1201","_SYSTEMD_USER_UNIT":"init.scope","_SYSTEMD_UNIT":"user@1000.service","USER_UNIT":"sync.service"}"#,
        )
        .unwrap();
        assert_eq!(user.unit(), Some("sync.service"));
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(matches!(
            parse_line(b"{\"MESSAGE\":"),
            Err(JournalLineInvalid::NotJson(_))
        ));
        assert_eq!(parse_line(b"[1,2]"), Err(JournalLineInvalid::NotObject));
        assert!(parse_line(b"").is_err());
    }

    proptest! {
        #[test]
        fn never_panics_on_bytes(b in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_line(&b);
        }

        #[test]
        fn never_panics_on_json_shapes(
            msg in prop_oneof![
                any::<String>().prop_map(serde_json::Value::from),
                proptest::collection::vec(any::<i64>(), 0..16).prop_map(serde_json::Value::from),
                Just(serde_json::Value::Null),
                any::<f64>().prop_map(serde_json::Value::from),
            ],
            pid in any::<String>(),
        ) {
            let line = serde_json::json!({"MESSAGE": msg, "_PID": pid, "N_RESTARTS": pid, "PRIORITY": pid});
            let e = parse_line(line.to_string().as_bytes()).unwrap();
            let _ = e.unit();
            let _ = e.message_text();
        }
    }
}
