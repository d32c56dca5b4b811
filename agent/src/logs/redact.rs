//! Secret redaction on the node, before a line is mined, kept as evidence or shipped.
//!
//! Entry type: [`Redactor`], built from the built-in [`BUILTIN_RULES`] plus operator
//! patterns ([`Redactor::new`]). [`Redactor::redact`] returns the input untouched (borrowed)
//! when no rule matches, which is the common case. Deciding that is the hot path, so it is
//! done in two steps: an ASCII record is first lowercased into a scratch buffer and checked
//! against [`GATE`], a pattern of plain literals (searched with SIMD) that every built-in
//! rule needs in order to match; only a record that passes the gate (or is not ASCII, where
//! Unicode case folding could make the gate miss) is scanned with the full `RegexSet`.
//! Operator patterns cannot be gated and are always scanned.
//!
//! A rule replaces the text of its capture group named `secret` (or, without one, the whole
//! match) with [`REDACTED`]. Invariants: redaction only ever removes text (a redacted line
//! never contains what a rule matched as the secret); rule names are fixed strings, safe as
//! metric labels. Not done: entropy-based detection, or secrets split across records.

use regex::bytes::{Regex, RegexSet};
use std::borrow::Cow;

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// The rules daytwo always applies: (name, pattern). Documented in docs/logs.md.
pub const BUILTIN_RULES: &[(&str, &str)] = &[
    (
        "private_key",
        r"(?s)(?P<secret>-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\z))",
    ),
    (
        "bearer_token",
        r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9\-._~+/]+=*)",
    ),
    (
        "url_password",
        r"\b[a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]+:(?P<secret>[^@\s/]+)@",
    ),
    (
        "key_value",
        r#"(?i)\b(?:passw(?:or)?d|pwd|secret|client[_-]?secret|token|access[_-]?token|refresh[_-]?token|api[_-]?key|apikey|access[_-]?key|secret[_-]?key|private[_-]?key|auth)"?\s*[:=]\s*"?(?P<secret>[^\s"'&,;}]+)"#,
    ),
    (
        "aws_access_key",
        r"\b(?P<secret>(?:AKIA|ASIA)[0-9A-Z]{16})\b",
    ),
];

/// What every built-in rule needs in an ASCII record, lowercased. It may match more than the
/// rules do (then the rules decide); it must never miss what a rule would match:
/// `private_key` needs `-----BEGIN`, `bearer_token` `bearer`, `url_password` `://`,
/// `aws_access_key` `AKIA` or `ASIA`, and `key_value` one of its keys (each ends in one of
/// the suffixes below) followed by an optional quote, ASCII white space and `:` or `=`.
/// `(?-u:\s)` is exactly what Unicode `\s` matches among ASCII bytes.
pub const GATE: &str =
    r#"bearer|://|akia|asia|-----begin|(?:pwd|sswd|ssword|secret|token|key|auth)"?(?-u:\s)*[:=]"#;

/// A pattern that does not compile; names it and its position in the configuration.
#[derive(Debug, thiserror::Error)]
#[error("redaction pattern #{index} ({pattern:?}) does not compile: {source}")]
pub struct RedactRuleInvalid {
    pub index: usize,
    pub pattern: String,
    #[source]
    pub source: regex::Error,
}

#[derive(Debug)]
struct Rule {
    name: &'static str,
    re: Regex,
    secret_group: Option<usize>,
}

/// The compiled rules. See the module docs.
#[derive(Debug)]
pub struct Redactor {
    set: RegexSet,
    rules: Vec<Rule>,
    /// [`GATE`], on lowercased ASCII.
    gate: Regex,
    /// The operator patterns alone (rule indices after the built-ins), if any.
    custom: Option<RegexSet>,
    /// The lowercased copy the gate reads.
    lower: std::cell::RefCell<Vec<u8>>,
}

impl Redactor {
    /// The built-in rules plus `extra` patterns (named `custom` in metrics).
    pub fn new(extra: &[String]) -> Result<Redactor, RedactRuleInvalid> {
        let mut rules = Vec::new();
        let mut patterns = Vec::new();
        let all = BUILTIN_RULES
            .iter()
            .map(|(n, p)| (*n, p.to_string()))
            .chain(extra.iter().map(|p| ("custom", p.clone())));
        for (index, (name, pattern)) in all.enumerate() {
            let re = Regex::new(&pattern).map_err(|source| RedactRuleInvalid {
                index: index.saturating_sub(BUILTIN_RULES.len()),
                pattern: pattern.clone(),
                source,
            })?;
            let secret_group = re.capture_names().position(|n| n == Some("secret"));
            rules.push(Rule {
                name,
                re,
                secret_group,
            });
            patterns.push(pattern);
        }
        let all_together = |source| RedactRuleInvalid {
            index: 0,
            pattern: "(all rules together)".into(),
            source,
        };
        let set = RegexSet::new(&patterns).map_err(all_together)?;
        let custom = if extra.is_empty() {
            None
        } else {
            Some(RegexSet::new(extra).map_err(all_together)?)
        };
        Ok(Redactor {
            set,
            rules,
            gate: Regex::new(GATE).expect("the redaction gate compiles"),
            custom,
            lower: Default::default(),
        })
    }

    /// False only when no built-in rule can match `text` (see [`GATE`]).
    fn builtin_may_match(&self, text: &[u8]) -> bool {
        if !text.is_ascii() {
            return true;
        }
        let mut lower = self.lower.borrow_mut();
        lower.clear();
        lower.extend_from_slice(text);
        lower.make_ascii_lowercase();
        let hit = self.gate.is_match(&lower);
        if lower.capacity() > 64 << 10 {
            *lower = Vec::new();
        }
        hit
    }

    /// `text` with every secret replaced; `hits` is called once per rule that matched.
    pub fn redact<'a>(&self, text: &'a [u8], mut hits: impl FnMut(&'static str)) -> Cow<'a, [u8]> {
        let matched: Vec<usize> = if self.builtin_may_match(text) {
            // One unanchored scan that stops at the first hit decides the common case.
            if !self.set.is_match(text) {
                return Cow::Borrowed(text);
            }
            self.set.matches(text).into_iter().collect()
        } else {
            match &self.custom {
                Some(c) if c.is_match(text) => c
                    .matches(text)
                    .into_iter()
                    .map(|i| i + BUILTIN_RULES.len())
                    .collect(),
                _ => return Cow::Borrowed(text),
            }
        };
        let mut cur: Cow<'a, [u8]> = Cow::Borrowed(text);
        for i in matched {
            let rule = &self.rules[i];
            let mut out = Vec::with_capacity(cur.len());
            let mut last = 0;
            let mut any = false;
            for caps in rule.re.captures_iter(&cur) {
                let m = match rule.secret_group {
                    Some(g) => caps.get(g),
                    None => caps.get(0),
                };
                let Some(m) = m else { continue };
                if m.start() < last {
                    continue;
                }
                out.extend_from_slice(&cur[last..m.start()]);
                out.extend_from_slice(REDACTED.as_bytes());
                last = m.end();
                any = true;
            }
            if any {
                out.extend_from_slice(&cur[last..]);
                cur = Cow::Owned(out);
                hits(rule.name);
            }
        }
        cur
    }

    /// The distinct rule names (metric label values).
    pub fn rule_names(&self) -> Vec<&'static str> {
        let mut v: Vec<&'static str> = self.rules.iter().map(|r| r.name).collect();
        v.dedup();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn red(s: &str) -> String {
        let r = Redactor::new(&[]).unwrap();
        String::from_utf8(r.redact(s.as_bytes(), |_| {}).into_owned()).unwrap()
    }

    #[test]
    fn built_in_rules() {
        assert_eq!(
            red("GET / Authorization: Bearer eyJhbGciOi.J9.abc== ok"),
            "GET / Authorization: Bearer [REDACTED] ok"
        );
        assert_eq!(
            red("connecting to postgres://app:s3cr3t@db:5432/x"),
            "connecting to postgres://app:[REDACTED]@db:5432/x"
        );
        assert_eq!(
            red("login user=bob password=hunter2 ok"),
            "login user=bob password=[REDACTED] ok"
        );
        assert_eq!(
            red(r#"{"user":"bob","api_key":"abc123","n":1}"#),
            r#"{"user":"bob","api_key":"[REDACTED]","n":1}"#
        );
        assert_eq!(red("secret: xyz"), "secret: [REDACTED]");
        assert_eq!(red("TOKEN=abc&x=1"), "TOKEN=[REDACTED]&x=1");
        assert_eq!(red("key AKIAIOSFODNN7EXAMPLE used"), "key [REDACTED] used");
        assert_eq!(
            red(
                "k\n-----BEGIN RSA PRIVATE KEY-----\nMIIE\nabc\n-----END RSA PRIVATE KEY-----\nafter"
            ),
            "k\n[REDACTED]\nafter"
        );
        assert_eq!(red("-----BEGIN PRIVATE KEY-----\nMIIE (cut)"), "[REDACTED]");
        let plain = "GET /api/v1/users 200 12ms tokens_total=5";
        assert_eq!(red(plain), plain);
    }

    #[test]
    fn nothing_to_redact_borrows() {
        let r = Redactor::new(&[]).unwrap();
        assert!(matches!(
            r.redact(b"request completed in 12 ms", |_| {}),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn custom_rules_and_hits() {
        let r = Redactor::new(&[
            r"ssn=(?P<secret>\d{3}-\d{2}-\d{4})".into(),
            r"card \d{16}".into(),
        ])
        .unwrap();
        let mut hits = Vec::new();
        let out = r.redact(b"ssn=123-45-6789 card 4111111111111111 password=x", |h| {
            hits.push(h)
        });
        assert_eq!(
            &*out,
            b"ssn=[REDACTED] [REDACTED] password=[REDACTED]".as_slice()
        );
        hits.sort();
        assert_eq!(hits, ["custom", "custom", "key_value"]);
        let err = Redactor::new(&["ok".into(), "(".into()]).unwrap_err();
        assert_eq!(err.index, 1);
        assert!(err.to_string().contains("#1"), "{err}");
    }

    proptest! {
        #[test]
        fn secrets_never_survive(prefix in "[a-z ]{0,20}", secret in "[A-Za-z0-9]{6,20}", suffix in "( [a-z]{0,10}){0,3}") {
            let r = Redactor::new(&[]).unwrap();
            for line in [
                format!("{prefix} password={secret}{suffix}"),
                format!("{prefix} Authorization: Bearer {secret}{suffix}"),
                format!("{prefix} https://u:{secret}@h/{suffix}"),
            ] {
                let out = r.redact(line.as_bytes(), |_| {});
                let out = String::from_utf8(out.into_owned()).unwrap();
                prop_assert!(!out.contains(&secret), "{line} -> {out}");
                prop_assert!(out.contains(REDACTED));
            }
        }

        /// The gate never hides a record a built-in rule would change.
        #[test]
        fn the_gate_never_misses_a_secret(
            parts in prop::collection::vec(prop_oneof![
                Just("password"), Just("PassWord"), Just("passwd"), Just("pwd"), Just("secret"),
                Just("Client_Secret"), Just("token"), Just("access-token"), Just("refresh_token"),
                Just("api_key"), Just("APIKEY"), Just("access_key"), Just("secret-key"),
                Just("private_key"), Just("auth"), Just("Authorization"), Just("Bearer"),
                Just("bearer"), Just("https://"), Just("u:p@"), Just("AKIA"), Just("ASIA"),
                Just("ABCDEFGHIJKLMNOP"), Just("-----BEGIN RSA PRIVATE KEY-----"),
                Just("-----END RSA PRIVATE KEY-----"), Just("\""), Just(":"), Just("="),
                Just(" "), Just("\t"), Just("\n"), Just("x"), Just("12"), Just("{"), Just("}"),
                Just("é"), Just("\u{212a}ey"),
            ], 0..12),
        ) {
            let r = Redactor::new(&[]).unwrap();
            let line = parts.concat();
            let full = r.set.is_match(line.as_bytes());
            if full {
                prop_assert!(r.builtin_may_match(line.as_bytes()), "{line:?}");
            }
        }

        #[test]
        fn redaction_never_panics(line in prop::collection::vec(any::<u8>(), 0..200)) {
            let r = Redactor::new(&[]).unwrap();
            let _ = r.redact(&line, |_| {});
        }
    }
}
