//! The `/dev/kmsg` source: kernel log records in, classified kernel events out (OOM kills, I/O
//! and filesystem errors, hung tasks, soft lockups, link changes, conntrack overflow, segfaults,
//! hardware errors).
//!
//! Layers, from pure to I/O:
//! * [`parse_record`] turns the bytes of one `read()` from `/dev/kmsg`
//!   (`PRIO,SEQ,TS_USEC,FLAGS[,…];MESSAGE` plus optional ` KEY=VALUE` continuation lines,
//!   non-printable bytes escaped as `\xNN`) into a [`KmsgRecord`]. It never panics.
//! * [`oom::OomClassifier`] is a state machine fed records in order; it emits one
//!   [`oom::OomKill`] at each `Killed process` line.
//! * [`signal::oom_signal`] turns an OOM kill plus the victim cgroup's files into the
//!   `daytwo.kernel.oom_kill` signal.
//! * [`kernel::classify`] recognises every other kernel event in one record;
//!   [`burst::BurstClassifier`] merges floods of one event and key (the same disk's I/O errors
//!   within 10 s of kernel time) into one [`burst::Burst`], and
//!   [`kernel_signal::kernel_signal`] turns a burst into its signal, with a count.
//! * [`reader`] is the thin async shell: it reads `/dev/kmsg` with `AsyncFd`, checkpoints the
//!   last processed sequence number per boot in the same redb transaction that queues a
//!   signal, looks up mount points ([`mounts`]), and converts kernel timestamps to wall-clock
//!   time.
//!
//! Not done here: following the console log or journald.

pub mod burst;
pub mod kernel;
pub mod kernel_signal;
pub mod mounts;
pub mod oom;
pub mod reader;
pub mod signal;

#[cfg(test)]
pub(crate) mod fixtures;

use std::fmt;

/// One kernel log record as `/dev/kmsg` delivers it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KmsgRecord {
    /// Syslog facility (`PRIO >> 3`): 0 for kernel messages.
    pub facility: u32,
    /// Syslog level (`PRIO & 7`): 0 emerg … 7 debug.
    pub level: u8,
    /// The kernel's 64-bit record sequence number, increasing by one per record within a boot.
    pub seq: u64,
    /// Microseconds since boot (the kernel's local clock) when the record was logged.
    pub ts_usec: u64,
    /// `-` for a normal record, `c` for a continuation start, `+` for a continuation.
    pub flags: String,
    /// The message with `\xNN` escapes decoded (invalid UTF-8 replaced by U+FFFD).
    pub message: String,
    /// Continuation-line properties (`SUBSYSTEM=`, `DEVICE=`), in order, decoded.
    pub properties: Vec<(String, String)>,
}

/// Why the bytes of one read could not be parsed as a kmsg record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KmsgParseError {
    /// No `;` separates the header from the message.
    #[error("kmsg record has no ';' between header and message")]
    NoMessageSeparator,
    /// A header field is missing or not a number.
    #[error("kmsg record header field {field} is missing or malformed: {value:?}")]
    BadHeaderField { field: &'static str, value: String },
}

impl KmsgRecord {
    /// The record as `/dev/kmsg` would deliver it (escaping bytes outside printable ASCII and
    /// the backslash). Used by tests and fixtures; `parse_record(r.encode()) == r` for records
    /// whose message has no U+FFFD from lossy decoding.
    pub fn encode(&self) -> Vec<u8> {
        let prio = (self.facility << 3) | u32::from(self.level & 7);
        let mut out = format!("{prio},{},{},{};", self.seq, self.ts_usec, self.flags).into_bytes();
        escape_into(self.message.as_bytes(), &mut out, false);
        out.push(b'\n');
        for (k, v) in &self.properties {
            out.push(b' ');
            escape_into(k.as_bytes(), &mut out, true);
            out.push(b'=');
            escape_into(v.as_bytes(), &mut out, false);
            out.push(b'\n');
        }
        out
    }
}

impl fmt::Display for KmsgRecord {
    /// The record as one log line (`PRIO,SEQ,TS,FLAGS;MESSAGE`), the form kept as evidence.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prio = (self.facility << 3) | u32::from(self.level & 7);
        write!(
            f,
            "{prio},{},{},{};{}",
            self.seq, self.ts_usec, self.flags, self.message
        )
    }
}

fn escape_into(bytes: &[u8], out: &mut Vec<u8>, escape_eq: bool) {
    for &b in bytes {
        if !(b' '..127).contains(&b) || b == b'\\' || (escape_eq && b == b'=') {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
        } else {
            out.push(b);
        }
    }
}

/// Decodes `\xNN` escapes; a backslash not followed by `x` and two hex digits is kept as is.
fn unescape(bytes: &[u8]) -> String {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1] == b'x'
            && let (Some(h), Some(l)) = (hex(bytes[i + 2]), hex(bytes[i + 3]))
        {
            out.push(h << 4 | l);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn header_number(field: Option<&[u8]>, name: &'static str) -> Result<u64, KmsgParseError> {
    let raw = field.unwrap_or_default();
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .ok_or_else(|| KmsgParseError::BadHeaderField {
            field: name,
            value: String::from_utf8_lossy(raw).into_owned(),
        })
}

/// Parses the bytes of one `read()` from `/dev/kmsg` (one record).
pub fn parse_record(bytes: &[u8]) -> Result<KmsgRecord, KmsgParseError> {
    let semi = bytes
        .iter()
        .position(|&b| b == b';')
        .ok_or(KmsgParseError::NoMessageSeparator)?;
    let (header, rest) = (&bytes[..semi], &bytes[semi + 1..]);
    let mut fields = header.split(|&b| b == b',');
    let prio = header_number(fields.next(), "PRIO")?;
    let prio = u32::try_from(prio).map_err(|_| KmsgParseError::BadHeaderField {
        field: "PRIO",
        value: prio.to_string(),
    })?;
    let seq = header_number(fields.next(), "SEQ")?;
    let ts_usec = header_number(fields.next(), "TS_USEC")?;
    // FLAGS is optional in very old kernels; later fields (caller id) are ignored.
    let flags = fields
        .next()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .unwrap_or_else(|| "-".to_string());

    let mut lines = rest.split(|&b| b == b'\n');
    let message = unescape(lines.next().unwrap_or_default());
    let mut properties = Vec::new();
    for line in lines {
        let Some(prop) = line.strip_prefix(b" ") else {
            continue;
        };
        match prop.iter().position(|&b| b == b'=') {
            Some(eq) => properties.push((unescape(&prop[..eq]), unescape(&prop[eq + 1..]))),
            None => properties.push((unescape(prop), String::new())),
        }
    }
    Ok(KmsgRecord {
        facility: prio >> 3,
        level: (prio & 7) as u8,
        seq,
        ts_usec,
        flags,
        message,
        properties,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_a_real_record() {
        let r = parse_record(b"3,422,68249689,-;Memory cgroup out of memory: Killed process 1693 (python3) total-vm:278712kB\n").unwrap();
        assert_eq!(r.facility, 0);
        assert_eq!(r.level, 3);
        assert_eq!(r.seq, 422);
        assert_eq!(r.ts_usec, 68_249_689);
        assert_eq!(r.flags, "-");
        assert!(r.message.starts_with("Memory cgroup out of memory"));
        assert!(r.properties.is_empty());
    }

    #[test]
    fn parses_facility_escapes_and_properties() {
        let raw = b"30,7,100,c,caller=T1;tab\\x09and \\xc3\\xa9 done\n SUBSYSTEM=pci\n DEVICE=+pci:0000:00:1f.0\n";
        let r = parse_record(raw).unwrap();
        assert_eq!(r.facility, 3);
        assert_eq!(r.level, 6);
        assert_eq!(r.flags, "c");
        assert_eq!(r.message, "tab\tand é done");
        assert_eq!(
            r.properties,
            vec![
                ("SUBSYSTEM".to_string(), "pci".to_string()),
                ("DEVICE".to_string(), "+pci:0000:00:1f.0".to_string()),
            ]
        );
    }

    #[test]
    fn rejects_malformed_headers() {
        assert_eq!(
            parse_record(b"no separator"),
            Err(KmsgParseError::NoMessageSeparator)
        );
        assert!(matches!(
            parse_record(b"x,1,2,-;m"),
            Err(KmsgParseError::BadHeaderField { field: "PRIO", .. })
        ));
        assert!(matches!(
            parse_record(b"6,,2,-;m"),
            Err(KmsgParseError::BadHeaderField { field: "SEQ", .. })
        ));
        assert!(matches!(
            parse_record(b"6,1;m"),
            Err(KmsgParseError::BadHeaderField {
                field: "TS_USEC",
                ..
            })
        ));
    }

    #[test]
    fn keeps_a_lone_backslash() {
        let r = parse_record(b"6,1,2,-;a\\b\\x4").unwrap();
        assert_eq!(r.message, "a\\b\\x4");
    }

    fn arb_record() -> impl Strategy<Value = KmsgRecord> {
        (
            0u32..=(u32::MAX >> 3),
            0u8..8,
            any::<u64>(),
            any::<u64>(),
            prop::sample::select(vec!["-", "c", "+"]),
            ".*",
            prop::collection::vec(("[A-Z][A-Z_]{0,10}", ".*"), 0..3),
        )
            .prop_map(
                |(facility, level, seq, ts_usec, flags, message, properties)| KmsgRecord {
                    facility,
                    level,
                    seq,
                    ts_usec,
                    flags: flags.to_string(),
                    message,
                    properties,
                },
            )
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_record(&bytes);
        }

        #[test]
        fn never_panics_on_near_valid_records(
            head in "[0-9,]{0,20}",
            body in prop::collection::vec(any::<u8>(), 0..256),
        ) {
            let mut bytes = head.into_bytes();
            bytes.push(b';');
            bytes.extend(body);
            let _ = parse_record(&bytes);
        }

        #[test]
        fn round_trips_valid_records(r in arb_record()) {
            let parsed = parse_record(&r.encode()).unwrap();
            prop_assert_eq!(parsed, r);
        }
    }
}
