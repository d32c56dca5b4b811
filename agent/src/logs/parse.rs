//! Line formats: CRI (`TIMESTAMP STREAM P|F MESSAGE`), Docker json-file and plain text, and
//! the joining of CRI partial records.
//!
//! Entry points: [`Format::detect`] (what a file's first line looks like), [`parse_line`]
//! (one line → one [`Parsed`] record borrowing the input) and [`PartialJoiner`] (CRI `P`
//! records held until their `F`).
//!
//! Invariants: parsing never panics and never allocates for CRI and plain lines (Docker
//! lines allocate only when the JSON string holds escapes); a line that does not have the
//! shape of its file's format is passed through as plain text (and counted by the caller)
//! rather than dropped. Not done here: reading, multi-line joining, UTF-8 repair.

use memchr::memchr;
use std::borrow::Cow;

/// How the lines of a file are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Decide from the first line of each file (CRI, then Docker, else plain).
    Auto,
    /// containerd / CRI-O: `2026-11-25T14:31:06.123456789Z stdout F message`.
    Cri,
    /// Docker json-file: `{"log":"message\n","stream":"stdout","time":"…"}`.
    Docker,
    /// One message per line, no framing.
    Plain,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        Some(match s {
            "auto" => Format::Auto,
            "cri" => Format::Cri,
            "docker" => Format::Docker,
            "plain" => Format::Plain,
            _ => return None,
        })
    }

    /// The format a file's first line shows (never `Auto`).
    pub fn detect(first_line: &[u8]) -> Format {
        if parse_cri(first_line).is_some() {
            Format::Cri
        } else if first_line.starts_with(b"{\"log\":") && parse_docker(first_line).is_some() {
            Format::Docker
        } else {
            Format::Plain
        }
    }
}

/// The output stream a container line came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Stream {
    Stdout,
    Stderr,
    /// Plain files have no stream.
    None,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
            Stream::None => "",
        }
    }
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct Parsed<'a> {
    /// Event time from the line, nanoseconds since the epoch (None for plain lines).
    pub time: Option<i64>,
    pub stream: Stream,
    /// CRI `P`: more of this message follows in the next record of the same stream.
    pub partial: bool,
    /// The message, without its trailing newline.
    pub message: Cow<'a, [u8]>,
}

/// Parses `line` (without its `\n`) as `format`; a line that does not fit falls back to
/// plain (`ok == false`).
pub fn parse_line(format: Format, line: &[u8]) -> (Parsed<'_>, bool) {
    let parsed = match format {
        Format::Cri => parse_cri(line),
        Format::Docker => parse_docker(line),
        Format::Plain | Format::Auto => None,
    };
    match parsed {
        Some(p) => (p, true),
        None => (
            Parsed {
                time: None,
                stream: Stream::None,
                partial: false,
                message: Cow::Borrowed(line),
            },
            matches!(format, Format::Plain | Format::Auto),
        ),
    }
}

/// `TIMESTAMP STREAM P|F MESSAGE`. Older runtimes omit the tag; then it is `F`.
pub fn parse_cri(line: &[u8]) -> Option<Parsed<'_>> {
    let sp1 = memchr(b' ', line)?;
    let time = parse_rfc3339(&line[..sp1])?;
    let rest = &line[sp1 + 1..];
    let (stream, rest) = if let Some(r) = rest.strip_prefix(b"stdout") {
        (Stream::Stdout, r)
    } else if let Some(r) = rest.strip_prefix(b"stderr") {
        (Stream::Stderr, r)
    } else {
        return None;
    };
    let rest = match rest.first() {
        None => return Some(cri(time, stream, false, rest)),
        Some(b' ') => &rest[1..],
        Some(_) => return None,
    };
    let (partial, message) = match rest {
        [b'P'] => (true, &rest[1..]),
        [b'F'] => (false, &rest[1..]),
        [b'P', b' ', m @ ..] => (true, m),
        [b'F', b' ', m @ ..] => (false, m),
        m => (false, m),
    };
    Some(cri(time, stream, partial, message))
}

fn cri(time: i64, stream: Stream, partial: bool, message: &[u8]) -> Parsed<'_> {
    Parsed {
        time: Some(time),
        stream,
        partial,
        message: Cow::Borrowed(message),
    }
}

/// `{"log":"…","stream":"stdout","time":"…"}` as Docker's json-file driver writes it. A
/// message without a trailing `\n` is a partial (Docker splits at 16 KiB).
pub fn parse_docker(line: &[u8]) -> Option<Parsed<'_>> {
    let mut log: Option<Cow<'_, [u8]>> = None;
    let mut stream = Stream::None;
    let mut time = None;
    let mut i = skip_ws(line, 0);
    if line.get(i) != Some(&b'{') {
        return None;
    }
    i += 1;
    loop {
        i = skip_ws(line, i);
        match line.get(i)? {
            b'}' => break,
            b',' => {
                i += 1;
                continue;
            }
            b'"' => {}
            _ => return None,
        }
        let (key, next) = json_string(line, i)?;
        i = skip_ws(line, next);
        if line.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(line, i + 1);
        if line.get(i) == Some(&b'"') {
            let (value, next) = json_string(line, i)?;
            i = next;
            match &*key {
                b"log" => log = Some(value),
                b"stream" => {
                    stream = match &*value {
                        b"stdout" => Stream::Stdout,
                        b"stderr" => Stream::Stderr,
                        _ => Stream::None,
                    }
                }
                b"time" => time = parse_rfc3339(&value),
                _ => {}
            }
        } else {
            // A non-string value (attrs objects are not written by json-file; skip scalars).
            while i < line.len() && !matches!(line[i], b',' | b'}') {
                i += 1;
            }
        }
    }
    let mut log = log?;
    let partial = !log.ends_with(b"\n");
    if !partial {
        log = match log {
            Cow::Borrowed(b) => Cow::Borrowed(&b[..b.len() - 1]),
            Cow::Owned(mut v) => {
                v.pop();
                Cow::Owned(v)
            }
        };
    }
    Some(Parsed {
        time,
        stream,
        partial,
        message: log,
    })
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\r') {
        i += 1;
    }
    i
}

/// A JSON string starting at `b[start] == '"'`: (decoded bytes, index after the closing quote).
fn json_string(b: &[u8], start: usize) -> Option<(Cow<'_, [u8]>, usize)> {
    let body = &b[start + 1..];
    // Fast path: no escapes before the closing quote.
    let k = memchr::memchr2(b'"', b'\\', body)?;
    if body[k] == b'"' {
        return Some((Cow::Borrowed(&body[..k]), start + 1 + k + 1));
    }
    // An escape: decode into an owned buffer from here on.
    let mut out = Vec::with_capacity(body.len());
    out.extend_from_slice(&body[..k]);
    let mut j = k;
    while j < body.len() {
        match body[j] {
            b'"' => return Some((Cow::Owned(out), start + 1 + j + 1)),
            b'\\' => {
                let c = *body.get(j + 1)?;
                j += 2;
                match c {
                    b'n' => out.push(b'\n'),
                    b't' => out.push(b'\t'),
                    b'r' => out.push(b'\r'),
                    b'b' => out.push(8),
                    b'f' => out.push(12),
                    b'/' => out.push(b'/'),
                    b'\\' => out.push(b'\\'),
                    b'"' => out.push(b'"'),
                    b'u' => {
                        let (ch, used) = json_unicode(&body[j..])?;
                        j += used;
                        let mut buf = [0u8; 4];
                        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
                    }
                    _ => return None,
                }
            }
            c => {
                out.push(c);
                j += 1;
            }
        }
    }
    None
}

/// `XXXX` (after `\u`), with a following `\uXXXX` low surrogate if needed. Invalid
/// surrogates become U+FFFD.
fn json_unicode(b: &[u8]) -> Option<(char, usize)> {
    let hex = |s: &[u8]| -> Option<u32> {
        let s = std::str::from_utf8(s.get(..4)?).ok()?;
        u32::from_str_radix(s, 16).ok()
    };
    let hi = hex(b)?;
    if (0xD800..0xDC00).contains(&hi) {
        if b.get(4..6) == Some(b"\\u")
            && let Some(lo) = hex(&b[6..])
            && (0xDC00..0xE000).contains(&lo)
        {
            let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
            return Some((char::from_u32(c).unwrap_or('\u{FFFD}'), 10));
        }
        return Some(('\u{FFFD}', 4));
    }
    Some((char::from_u32(hi).unwrap_or('\u{FFFD}'), 4))
}

/// RFC 3339 (`2026-11-25T14:31:06.123456789Z` or with a `±HH:MM` offset) → Unix nanoseconds.
/// Strict about shape, lenient about the number of fraction digits (0..=9).
pub fn parse_rfc3339(s: &[u8]) -> Option<i64> {
    fn num(s: &[u8], a: usize, b: usize) -> Option<i64> {
        let mut n = 0i64;
        for &c in s.get(a..b)? {
            if !c.is_ascii_digit() {
                return None;
            }
            n = n * 10 + (c - b'0') as i64;
        }
        Some(n)
    }
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || !matches!(s[10], b'T' | b't' | b' ')
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let (y, mo, d) = (num(s, 0, 4)?, num(s, 5, 7)?, num(s, 8, 10)?);
    let (h, mi, sec) = (num(s, 11, 13)?, num(s, 14, 16)?, num(s, 17, 19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0i64;
    if s.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < s.len() && s[i].is_ascii_digit() {
            if i - start < 9 {
                nanos = nanos * 10 + (s[i] - b'0') as i64;
            }
            i += 1;
        }
        let digits = (i - start).min(9);
        if digits == 0 {
            return None;
        }
        nanos *= 10i64.pow(9 - digits as u32);
    }
    let offset_secs = match s.get(i..)? {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), rest @ ..] if rest.len() == 5 && rest[2] == b':' => {
            let o = num(rest, 0, 2)? * 3600 + num(rest, 3, 5)? * 60;
            if *sign == b'+' { o } else { -o }
        }
        _ => return None,
    };
    let days = days_from_civil(y, mo, d);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec - offset_secs;
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// An unfinished message given up by [`PartialJoiner::drain`]:
/// (stream, time, message, truncated, offset of its first part).
pub type Unfinished = (Stream, Option<i64>, Vec<u8>, bool, u64);

/// Holds CRI `P` (and Docker partial) records until the record that ends the message,
/// per stream, bounded by `max_bytes` (the rest of an over-long message is dropped and the
/// message marked truncated).
#[derive(Debug, Default)]
pub struct PartialJoiner {
    stdout: Pending,
    stderr: Pending,
    other: Pending,
}

#[derive(Debug, Default)]
struct Pending {
    buf: Vec<u8>,
    time: Option<i64>,
    truncated: bool,
    active: bool,
    /// File offset of the first part.
    offset: u64,
}

/// What [`PartialJoiner::push`] gives back.
pub enum Joined<'a> {
    /// Held: more parts are expected.
    Held,
    /// A complete message (a single `F` record borrows the input).
    Done {
        time: Option<i64>,
        message: Cow<'a, [u8]>,
        truncated: bool,
        /// File offset of the message's first record.
        offset: u64,
    },
}

impl PartialJoiner {
    pub fn new() -> Self {
        Self::default()
    }

    fn slot(&mut self, s: Stream) -> &mut Pending {
        match s {
            Stream::Stdout => &mut self.stdout,
            Stream::Stderr => &mut self.stderr,
            Stream::None => &mut self.other,
        }
    }

    /// True when any stream holds an unfinished message.
    pub fn holding(&self) -> bool {
        self.stdout.active || self.stderr.active || self.other.active
    }

    /// The file offset of the oldest unfinished message, if any.
    pub fn held_offset(&self) -> Option<u64> {
        [&self.stdout, &self.stderr, &self.other]
            .iter()
            .filter(|s| s.active)
            .map(|s| s.offset)
            .min()
    }

    /// Adds one parsed record that began at file offset `offset`.
    pub fn push<'a>(&mut self, p: Parsed<'a>, offset: u64, max_bytes: usize) -> Joined<'a> {
        let slot = self.slot(p.stream);
        if !slot.active {
            if !p.partial {
                let truncated = p.message.len() > max_bytes;
                let message = if truncated {
                    match p.message {
                        Cow::Borrowed(b) => Cow::Borrowed(&b[..max_bytes]),
                        Cow::Owned(mut v) => {
                            v.truncate(max_bytes);
                            Cow::Owned(v)
                        }
                    }
                } else {
                    p.message
                };
                return Joined::Done {
                    time: p.time,
                    message,
                    truncated,
                    offset,
                };
            }
            slot.active = true;
            slot.offset = offset;
            slot.time = p.time;
            slot.truncated = false;
            slot.buf.clear();
        }
        let room = max_bytes.saturating_sub(slot.buf.len());
        if p.message.len() > room {
            slot.truncated = true;
        }
        slot.buf
            .extend_from_slice(&p.message[..p.message.len().min(room)]);
        if p.partial {
            return Joined::Held;
        }
        slot.active = false;
        Joined::Done {
            time: slot.time,
            message: Cow::Owned(std::mem::take(&mut slot.buf)),
            truncated: slot.truncated,
            offset: slot.offset,
        }
    }

    /// Gives up every unfinished message (the file ended without its `F`):
    /// (stream, time, message, truncated, offset).
    pub fn drain(&mut self) -> Vec<Unfinished> {
        let mut out = Vec::new();
        for (stream, slot) in [
            (Stream::Stdout, &mut self.stdout),
            (Stream::Stderr, &mut self.stderr),
            (Stream::None, &mut self.other),
        ] {
            if slot.active {
                slot.active = false;
                out.push((
                    stream,
                    slot.time,
                    std::mem::take(&mut slot.buf),
                    slot.truncated,
                    slot.offset,
                ));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: i64 = 1_795_617_066_123_456_789;

    #[test]
    fn cri_full_and_partial() {
        let (p, ok) = parse_line(
            Format::Cri,
            b"2026-11-25T14:31:06.123456789Z stdout F hello world",
        );
        assert!(ok);
        assert_eq!(p.time, Some(T));
        assert_eq!(p.stream, Stream::Stdout);
        assert!(!p.partial);
        assert_eq!(&*p.message, b"hello world");
        let p = parse_cri(b"2026-11-25T14:31:06.123456789Z stderr P part").unwrap();
        assert!(p.partial);
        assert_eq!(p.stream, Stream::Stderr);
        let p = parse_cri(b"2026-11-25T14:31:06.123456789Z stdout F").unwrap();
        assert_eq!(&*p.message, b"");
        // Old CRI-O without the tag.
        let p = parse_cri(b"2026-11-25T15:31:06.123456789+01:00 stdout no tag here").unwrap();
        assert_eq!(p.time, Some(T));
        assert_eq!(&*p.message, b"no tag here");
    }

    #[test]
    fn not_cri_falls_back_to_plain() {
        let (p, ok) = parse_line(Format::Cri, b"Nov 25 14:31:06 host sshd[1]: hi");
        assert!(!ok);
        assert_eq!(&*p.message, b"Nov 25 14:31:06 host sshd[1]: hi");
        assert_eq!(
            Format::detect(b"Nov 25 14:31:06 host sshd[1]: hi"),
            Format::Plain
        );
        assert_eq!(
            Format::detect(b"2026-11-25T14:31:06Z stdout F x"),
            Format::Cri
        );
        assert_eq!(
            Format::detect(br#"{"log":"x\n","stream":"stdout","time":"2026-11-25T14:31:06Z"}"#),
            Format::Docker
        );
    }

    #[test]
    fn docker_lines() {
        let p = parse_docker(
            br#"{"log":"GET /a \"ok\" \u00e9\n","stream":"stderr","time":"2026-11-25T14:31:06.123456789Z"}"#,
        )
        .unwrap();
        assert_eq!(&*p.message, "GET /a \"ok\" é".as_bytes());
        assert_eq!(p.stream, Stream::Stderr);
        assert_eq!(p.time, Some(T));
        assert!(!p.partial);
        let p = parse_docker(br#"{"log":"no newline","stream":"stdout","time":"x"}"#).unwrap();
        assert!(p.partial);
        assert_eq!(p.time, None);
        assert!(matches!(p.message, Cow::Borrowed(_)));
        assert!(parse_docker(br#"{"log":"unterminated"#).is_none());
    }

    #[test]
    fn rfc3339_variants() {
        assert_eq!(parse_rfc3339(b"1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339(b"1970-01-01T00:00:01.5Z"),
            Some(1_500_000_000)
        );
        assert_eq!(parse_rfc3339(b"1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(
            parse_rfc3339(b"2026-11-25T14:30:15Z"),
            Some(1_795_617_015_000_000_000)
        );
        assert_eq!(parse_rfc3339(b"2026-13-25T14:30:15Z"), None);
        assert_eq!(parse_rfc3339(b"2026-11-25T14:30:15"), None);
        assert_eq!(parse_rfc3339(b"2026-11-25T14:30:15.Z"), None);
    }

    #[test]
    fn partials_join_per_stream_and_are_bounded() {
        let mut j = PartialJoiner::new();
        let p = |s, partial, m: &'static [u8]| Parsed {
            time: Some(1),
            stream: s,
            partial,
            message: Cow::Borrowed(m),
        };
        assert!(matches!(
            j.push(p(Stream::Stdout, true, b"ab"), 10, 100),
            Joined::Held
        ));
        // An interleaved stderr line is complete on its own.
        match j.push(p(Stream::Stderr, false, b"err"), 20, 100) {
            Joined::Done { message, .. } => assert_eq!(&*message, b"err"),
            Joined::Held => panic!(),
        }
        assert!(matches!(
            j.push(p(Stream::Stdout, true, b"cd"), 30, 100),
            Joined::Held
        ));
        assert_eq!(j.held_offset(), Some(10));
        match j.push(p(Stream::Stdout, false, b"ef"), 40, 100) {
            Joined::Done {
                message, truncated, ..
            } => {
                assert_eq!(&*message, b"abcdef");
                assert!(!truncated);
            }
            Joined::Held => panic!(),
        }
        assert!(!j.holding());
        assert!(matches!(
            j.push(p(Stream::Stdout, true, b"abcd"), 0, 5),
            Joined::Held
        ));
        match j.push(p(Stream::Stdout, false, b"efgh"), 9, 5) {
            Joined::Done {
                message, truncated, ..
            } => {
                assert_eq!(&*message, b"abcde");
                assert!(truncated);
            }
            Joined::Held => panic!(),
        }
    }

    proptest! {
        #[test]
        fn parsers_never_panic(line in prop::collection::vec(any::<u8>(), 0..200)) {
            for f in [Format::Cri, Format::Docker, Format::Plain, Format::Auto] {
                let _ = parse_line(f, &line);
            }
            let _ = Format::detect(&line);
            let _ = parse_rfc3339(&line);
        }

        #[test]
        fn structured_noise_never_panics(
            ts in "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
            rest in "( (stdout|stderr|x)( [PF])?)?( .{0,20})?",
            json in r#"\{("log":"([^"\\]|\\.|\\u[0-9a-fA-F]{0,4}){0,10}"?,?)?("stream":"std(out|err)",?)?("time":"[^"]*")?\}?"#,
        ) {
            let line = format!("{ts}{rest}");
            let _ = parse_cri(line.as_bytes());
            let _ = parse_docker(json.as_bytes());
        }

        #[test]
        fn cri_round_trips(secs in 0i64..4_000_000_000, nanos in 0i64..1_000_000_000, partial: bool, stderr: bool, msg in "[^\n]{0,100}") {
            let t = daytwo_model::Timestamp(secs * 1_000_000_000 + nanos);
            let ts = humantime_nanos(t);
            let line = format!("{ts} {} {} {msg}", if stderr { "stderr" } else { "stdout" }, if partial { "P" } else { "F" });
            let p = parse_cri(line.as_bytes()).unwrap();
            prop_assert_eq!(p.time, Some(t.0));
            prop_assert_eq!(p.partial, partial);
            prop_assert_eq!(&*p.message, msg.as_bytes());
        }

        #[test]
        fn joining_partials_gives_back_the_message(parts in prop::collection::vec("[a-z ]{0,10}", 1..8), max in 1usize..60) {
            let mut j = PartialJoiner::new();
            let whole: String = parts.concat();
            let mut out = None;
            for (i, part) in parts.iter().enumerate() {
                let last = i + 1 == parts.len();
                let p = Parsed { time: Some(7), stream: Stream::Stdout, partial: !last, message: Cow::Borrowed(part.as_bytes()) };
                match j.push(p, i as u64, max) {
                    Joined::Held => prop_assert!(!last),
                    Joined::Done { message, truncated, time, .. } => {
                        prop_assert!(last);
                        prop_assert_eq!(time, Some(7));
                        out = Some((message.into_owned(), truncated));
                    }
                }
            }
            let (msg, truncated) = out.unwrap();
            let want = &whole.as_bytes()[..whole.len().min(max)];
            prop_assert_eq!(&msg[..], want);
            prop_assert_eq!(truncated, whole.len() > max);
        }
    }

    fn humantime_nanos(t: daytwo_model::Timestamp) -> String {
        // Timestamp's Display drops trailing zero nanos; CRI always writes 9 digits.
        let s = t.to_string();
        let (date, frac) = s.split_once('.').unwrap_or((s.trim_end_matches('Z'), "Z"));
        let digits: String = frac.trim_end_matches('Z').chars().collect();
        format!("{date}.{:0<9}Z", digits)
    }
}
