//! Multi-line joining: stack traces (Java, Python, Go panics) become one record.
//!
//! Entry type: [`Multiline`], one per file and stream. [`Multiline::push`] takes a complete
//! message and gives back the previous record when this message starts a new one;
//! [`Multiline::flush_due`] gives back the held record once nothing was appended to it for
//! `timeout` (event-independent: the caller passes its monotonic "now" in milliseconds, so
//! this module reads no clock).
//!
//! The rule ([`is_continuation`]): a message continues the previous one when it starts with
//! whitespace, `at `, `Caused by:`, `... N more`/`...`, `File "`, `goroutine N [`, or when the
//! previous record is a `Traceback (most recent call last):` or a Go `panic:` still in its
//! header. Invariants: a record holds at most `max_lines` lines and `max_bytes` bytes (then it
//! is emitted and a new one starts); the offset of a held record's first line is kept so the
//! caller never checkpoints past text that has not left the pipeline.

use memchr::memmem;

/// One joined record.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// Event time of the first line (None for plain lines).
    pub time: Option<i64>,
    /// The lines, joined with `\n`.
    pub text: Vec<u8>,
    /// Bytes of the first line alone (mining and templates use it).
    pub first_line_len: usize,
    /// Some line was cut at the maximum length.
    pub truncated: bool,
    /// Lines in the record.
    pub lines: u32,
}

/// See the module docs.
#[derive(Debug)]
pub struct Multiline {
    /// The record being built (valid while `holding`).
    held: Record,
    holding: bool,
    /// The last finished record; its buffer is reused (no allocation per line).
    ready: Record,
    /// File offset where the held record begins (for checkpoints).
    held_offset: u64,
    last_push_ms: u64,
    timeout_ms: u64,
    max_lines: u32,
    max_bytes: usize,
    enabled: bool,
}

fn empty() -> Record {
    Record {
        time: None,
        text: Vec::new(),
        first_line_len: 0,
        truncated: false,
        lines: 0,
    }
}

impl Multiline {
    pub fn new(enabled: bool, timeout_ms: u64, max_bytes: usize) -> Self {
        Multiline {
            held: empty(),
            holding: false,
            ready: empty(),
            held_offset: 0,
            last_push_ms: 0,
            timeout_ms,
            max_lines: 500,
            max_bytes,
            enabled,
        }
    }

    /// Where the held record began in the file, if one is held.
    pub fn held_offset(&self) -> Option<u64> {
        self.holding.then_some(self.held_offset)
    }

    /// Adds a complete message that began at file offset `offset`. Returns a finished record
    /// when `message` starts a new one (or joining is off).
    pub fn push(
        &mut self,
        time: Option<i64>,
        message: &[u8],
        truncated: bool,
        offset: u64,
        now_ms: u64,
    ) -> Option<&Record> {
        self.last_push_ms = now_ms;
        if self.holding {
            let h = &mut self.held;
            if h.lines < self.max_lines
                && h.text.len() + 1 + message.len() <= self.max_bytes
                && is_continuation(message, &h.text)
            {
                h.text.push(b'\n');
                h.text.extend_from_slice(message);
                h.lines += 1;
                h.truncated |= truncated;
                return None;
            }
        }
        let finished = self.holding;
        if finished || !self.enabled {
            std::mem::swap(&mut self.held, &mut self.ready);
        }
        let h = &mut self.held;
        h.time = time;
        h.text.clear();
        h.text.extend_from_slice(message);
        h.first_line_len = message.len();
        h.truncated = truncated;
        h.lines = 1;
        if !self.enabled {
            std::mem::swap(&mut self.held, &mut self.ready);
            self.holding = false;
            return Some(&self.ready);
        }
        self.holding = true;
        self.held_offset = offset;
        finished.then_some(&self.ready)
    }

    /// The held record if nothing was added for the timeout.
    pub fn flush_due(&mut self, now_ms: u64) -> Option<&Record> {
        if self.holding && now_ms.saturating_sub(self.last_push_ms) >= self.timeout_ms {
            return self.flush();
        }
        None
    }

    /// The held record, whatever its age (the file is finished).
    pub fn flush(&mut self) -> Option<&Record> {
        if !self.holding {
            return None;
        }
        self.holding = false;
        std::mem::swap(&mut self.held, &mut self.ready);
        Some(&self.ready)
    }
}

/// Does `line` continue the record whose text so far is `prev`?
pub fn is_continuation(line: &[u8], prev: &[u8]) -> bool {
    // Searched from the end with SIMD: `prev` is usually one long line.
    let last_nl = memchr::memrchr(b'\n', prev);
    let last = match last_nl {
        Some(i) => &prev[i + 1..],
        None => prev,
    };
    match line.first() {
        // Go prints an empty line between `panic: …` and the goroutine dump.
        None => return prev.starts_with(b"panic: ") && last.starts_with(b"panic: "),
        Some(b' ' | b'\t') => return true,
        _ => {}
    }
    const STARTS: &[&[u8]] = &[b"at ", b"Caused by:", b"...", b"File \"", b"goroutine "];
    if STARTS.iter().any(|s| line.starts_with(s)) {
        if line.starts_with(b"goroutine ") {
            // `goroutine 1 [running]:`
            return memchr::memchr(b'[', line).is_some();
        }
        return true;
    }
    // Python: the exception line after the frames (`ValueError: x`) ends the traceback.
    let multi = last_nl.is_some();
    if prev.starts_with(b"Traceback (") || multi && memmem::find(prev, b"\nTraceback (").is_some() {
        // Still inside the traceback until its exception line has been added: the last line
        // so far is a frame (indented) or the header.
        return last.starts_with(b" ") || last.starts_with(b"Traceback (");
    }
    if line.starts_with(b"Traceback (") {
        return false;
    }
    // Go panic: `panic: boom`, an empty line, `goroutine 1 [running]:` (handled above),
    // then function lines (`main.main()`, `created by …`) and tab-indented file lines.
    if multi && prev.starts_with(b"panic: ") && memmem::find(prev, b"\ngoroutine ").is_some() {
        return line.ends_with(b")") || line.starts_with(b"created by ");
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(lines: &[&str]) -> Vec<String> {
        let mut m = Multiline::new(true, 1000, 1 << 20);
        let mut out = Vec::new();
        let mut off = 0;
        for l in lines {
            if let Some(r) = m.push(None, l.as_bytes(), false, off, 0) {
                out.push(String::from_utf8(r.text.clone()).unwrap());
            }
            off += l.len() as u64 + 1;
        }
        if let Some(r) = m.flush() {
            out.push(String::from_utf8(r.text.clone()).unwrap());
        }
        out
    }

    #[test]
    fn java_trace_is_one_record() {
        let got = run(&[
            "INFO start",
            "Exception in thread \"main\" java.lang.IllegalStateException: boom",
            "\tat com.example.App.run(App.java:10)",
            "\tat com.example.App.main(App.java:3)",
            "Caused by: java.io.IOException: disk",
            "\t... 2 more",
            "INFO next",
        ]);
        assert_eq!(got.len(), 3, "{got:?}");
        assert!(got[1].starts_with("Exception in thread"));
        assert!(got[1].ends_with("\t... 2 more"));
        assert_eq!(got[1].lines().count(), 5);
    }

    #[test]
    fn python_traceback_is_one_record() {
        let got = run(&[
            "Traceback (most recent call last):",
            "  File \"app.py\", line 3, in <module>",
            "    main()",
            "ValueError: bad",
            "next line",
        ]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[0].ends_with("ValueError: bad"));
    }

    #[test]
    fn go_panic_is_one_record() {
        let got = run(&[
            "panic: runtime error: index out of range",
            "",
            "goroutine 1 [running]:",
            "main.main()",
            "\t/app/main.go:5 +0x1d",
            "exit status 2",
        ]);
        assert_eq!(got.len(), 2, "{got:?}");
        assert_eq!(got[0].lines().count(), 5);
        assert_eq!(got[1], "exit status 2");
    }

    #[test]
    fn flush_after_timeout_and_off_switch() {
        let mut m = Multiline::new(true, 100, 1 << 20);
        assert!(m.push(None, b"a", false, 0, 1000).is_none());
        assert_eq!(m.held_offset(), Some(0));
        assert!(m.flush_due(1050).is_none());
        assert_eq!(m.flush_due(1100).unwrap().text, b"a");
        assert!(m.flush().is_none());
        assert_eq!(m.held_offset(), None);
        let mut off = Multiline::new(false, 100, 1 << 20);
        assert_eq!(off.push(None, b"a", false, 0, 0).unwrap().text, b"a");
        assert!(off.push(None, b"  b", false, 2, 0).is_some());
    }

    #[test]
    fn bounded_by_bytes() {
        let mut m = Multiline::new(true, 100, 10);
        assert!(m.push(None, b"head", false, 0, 0).is_none());
        assert!(
            m.push(None, b" 12345", false, 5, 0).is_some(),
            "would exceed 10 bytes"
        );
    }
}
