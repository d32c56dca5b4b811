//! Token-level rules: splitting a line into whitespace tokens, masking the parts of a token that
//! are obviously variable, and generalising two tokens into one.
//!
//! The masking rules are the generic canonicalisation rules of the Loghub-2.0 benchmark
//! (Khan et al., "Guidelines for assessing the accuracy of log message template identification
//! techniques", ICSE 2022), plus hexadecimal numbers:
//!
//! * a path-like piece (`/a/b`, between `, ! ; : = | " ' [ ] ( ) { }`) becomes `<*>`;
//! * a piece (between the separators above and `. - + @ # $ % &`) that is all digits, a
//!   hexadecimal number (`0x1f`, or 8+ hex digits with a digit), a boolean or one of `null`,
//!   `root`, `admin` becomes `<*>`; a piece that contains `<*>` and other characters (`blk<*>`)
//!   becomes `<*>`;
//! * `<*>.<*>` and `<*><*>` collapse to `<*>` (so an IPv4 address is one `<*>`).
//!
//! Separators are kept, so `10.0.0.1:8080` reads `<*>:<*>` and `uid=0` reads `uid=<*>`.
//! Nothing here allocates on a token that needs no change.

/// Ends a piece for the path rule.
fn is_path_delim(b: u8) -> bool {
    matches!(
        b,
        b',' | b'!'
            | b';'
            | b':'
            | b'='
            | b'|'
            | b'"'
            | b'\''
            | b'['
            | b']'
            | b'('
            | b')'
            | b'{'
            | b'}'
    ) || b.is_ascii_whitespace()
}

/// Ends a piece for every other rule.
pub(crate) fn is_delim(b: u8) -> bool {
    is_path_delim(b) || matches!(b, b'.' | b'-' | b'+' | b'@' | b'#' | b'$' | b'%' | b'&')
}

/// What a token is, for matching.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) enum Kind {
    /// Letters and punctuation only: compared exactly.
    Const,
    /// Contains a digit or a masked part: likely (part of) a variable; two such tokens are a
    /// soft match.
    VarLike,
    /// Exactly `<*>`, where only variable-looking tokens have been seen: matches a token with a
    /// digit or a mask, not a plain word.
    Wild,
    /// Exactly `<*>`, where plain words differed: matches anything.
    Any,
}

pub(crate) const WILD: &str = "<*>";

pub(crate) fn kind_of(tok: &str) -> Kind {
    if tok == WILD {
        Kind::Wild
    } else if tok
        .bytes()
        .any(|b| b.is_ascii_digit() || b == b'<' || b == b'=')
        && (tok.bytes().any(|b| b.is_ascii_digit()) || tok.contains(WILD) || key_of(tok).is_some())
        || is_date_word(tok)
    {
        Kind::VarLike
    } else {
        Kind::Const
    }
}

/// `key` of a `key=value` token with a non-empty value: the value is likely variable.
pub(crate) fn key_of(tok: &str) -> Option<&str> {
    let (k, v) = tok.split_once('=')?;
    (!k.is_empty() && !v.is_empty()).then_some(k)
}

/// Day and month names: parts of a date inside a message.
pub(crate) fn is_date_word(tok: &str) -> bool {
    const WORDS: [&str; 19] = [
        "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Jan", "Feb", "Mar", "Apr", "May", "Jun",
        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    tok.len() == 3 && WORDS.contains(&tok)
}

/// Does `tok` fit `pattern`, where each `<*>` in the pattern stands for one or more characters?
pub(crate) fn glob(pattern: &str, tok: &str) -> bool {
    let mut parts = pattern.split(WILD);
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = tok.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        // Each <*> takes at least one character.
        match rest.get(1..).and_then(|r| r.find(part)) {
            Some(i) => rest = &rest[1 + i + part.len()..],
            None => return false,
        }
    }
    rest.len() > last.len() && rest.ends_with(last)
}

fn is_special_word(p: &str) -> bool {
    const WORDS: [&str; 5] = ["true", "false", "null", "root", "admin"];
    p.len() <= 5 && WORDS.iter().any(|w| p.eq_ignore_ascii_case(w))
}

fn is_hex_number(p: &str) -> bool {
    let b = p.as_bytes();
    if b.len() > 2 && b[0] == b'0' && (b[1] | 0x20) == b'x' {
        return b[2..].iter().all(u8::is_ascii_hexdigit);
    }
    b.len() >= 8 && b.iter().all(u8::is_ascii_hexdigit) && b.iter().any(u8::is_ascii_digit)
}

fn masks_piece(p: &str) -> bool {
    !p.is_empty()
        && (p.bytes().all(|b| b.is_ascii_digit())
            || (p.contains(WILD) && !p.contains('/'))
            || is_special_word(p)
            || is_hex_number(p))
}

fn is_path(p: &str) -> bool {
    // ^(/[^/]+)+$
    let b = p.as_bytes();
    b.len() >= 2 && b[0] == b'/' && b[b.len() - 1] != b'/' && !b.windows(2).any(|w| w == b"//")
}

/// Can `tok` be left exactly as it is? True for the common case (plain words), cheaply.
fn is_plain(tok: &str) -> bool {
    let mut letters_only = true;
    for &b in tok.as_bytes() {
        if b.is_ascii_digit() || b == b'/' || b == b'<' || b >= 0x80 {
            return false;
        }
        letters_only &= b.is_ascii_alphabetic();
    }
    // Special words can hide between separators ("user=root"), so only short-circuit on
    // tokens without separators, or without any special word at all.
    if letters_only {
        return !is_special_word(tok);
    }
    !tok.split(|c: char| c.is_ascii() && is_delim(c as u8))
        .any(is_special_word)
}

/// Appends the canonical (masked) form of one whitespace-free token to `out`.
pub(crate) fn canon_token(tok: &str, out: &mut String) {
    if is_plain(tok) {
        out.push_str(tok);
        return;
    }
    let start = out.len();
    // Path rule first, on the coarser pieces; then the piece rules on the result.
    let staged;
    let tok = if tok.contains('/') {
        let mut stage = String::with_capacity(tok.len());
        for_pieces(tok, is_path_delim, |piece, delim| {
            if is_path(piece) {
                stage.push_str(WILD);
            } else {
                stage.push_str(piece);
            }
            if let Some(d) = delim {
                stage.push(d);
            }
        });
        staged = stage;
        staged.as_str()
    } else {
        tok
    };
    for_pieces(tok, is_delim, |piece, delim| {
        if masks_piece(piece) {
            out.push_str(WILD);
        } else {
            out.push_str(piece);
        }
        if let Some(d) = delim {
            out.push(d);
        }
    });
    collapse(out, start);
}

/// Calls `f(piece, delimiter_after)` for each piece of `s` split on ASCII bytes where `delim`
/// holds; the last call has no delimiter.
fn for_pieces<'a>(s: &'a str, delim: fn(u8) -> bool, mut f: impl FnMut(&'a str, Option<char>)) {
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        if delim(b) {
            f(&s[from..i], Some(b as char));
            from = i + 1;
        }
    }
    f(&s[from..], None);
}

/// Collapses `<*>.<*>` and `<*><*>` into `<*>` in `out[start..]`.
fn collapse(out: &mut String, start: usize) {
    if !out[start..].contains("<*>.<*>") && !out[start..].contains("<*><*>") {
        return;
    }
    let mut s = out[start..].to_string();
    while s.contains("<*>.<*>") {
        s = s.replace("<*>.<*>", WILD);
    }
    while s.contains("<*><*>") {
        s = s.replace("<*><*>", WILD);
    }
    out.truncate(start);
    out.push_str(&s);
}

/// The most specific token that covers both `a` and `b` (already canonical, different): the
/// pieces (between separators) they share at the start and at the end are kept and the rest
/// becomes one `<*>` (`rhost=<*>` + `rhost=host.example.net` → `rhost=<*>`).
pub(crate) fn generalise(a: &str, b: &str) -> String {
    if a == WILD || b == WILD {
        return WILD.to_string();
    }
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    // Longest common prefix ending just after a separator, and suffix starting at one.
    let mut pre = 0;
    for (i, (x, y)) in ab.iter().zip(bb).enumerate() {
        if x != y {
            break;
        }
        if is_delim(*x) {
            pre = i + 1;
        }
    }
    let mut suf = 0;
    for (i, (x, y)) in ab.iter().rev().zip(bb.iter().rev()).enumerate() {
        if x != y || i + 1 + pre > ab.len().min(bb.len()) {
            break;
        }
        if is_delim(*x) {
            suf = i + 1;
        }
    }
    let mut raw = String::with_capacity(pre + suf + 3);
    raw.push_str(&a[..pre]);
    raw.push_str(WILD);
    raw.push_str(&a[a.len() - suf..]);
    let mut out = String::with_capacity(raw.len());
    canon_token(&raw, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(t: &str) -> String {
        let mut s = String::new();
        canon_token(t, &mut s);
        s
    }

    #[test]
    fn masks_like_loghub() {
        assert_eq!(c("10.251.43.21:50010"), "<*>:<*>");
        assert_eq!(c("uid=0"), "uid=<*>");
        assert_eq!(c("user=root"), "user=<*>");
        assert_eq!(c("(root)"), "(<*>)");
        assert_eq!(c("/etc/cron.hourly)"), "<*>)");
        assert_eq!(c("0x0b85eee0,"), "<*>,");
        assert_eq!(c("mice.c(123)]:"), "mice.c(<*>)]:");
        assert_eq!(c("blk_-123"), "blk_-<*>");
        assert_eq!(c("terminating"), "terminating");
        assert_eq!(c("ext3"), "ext3");
        assert_eq!(c("False"), "<*>");
        assert_eq!(c("07:07:00"), "<*>:<*>:<*>");
    }

    #[test]
    fn globs() {
        assert!(glob("[<*>]", "[Thunderbird_D7]"));
        assert!(glob("<*>:<*>", "a:b"));
        assert!(!glob("<*>:<*>", ":b"));
        assert!(glob("x<*>y<*>z", "x1y2z"));
        assert!(!glob("x<*>y<*>z", "xyz"));
        assert!(!glob("abc", "abd"));
    }

    #[test]
    fn generalises_piecewise() {
        assert_eq!(
            generalise("rhost=<*>", "rhost=a-b.example.net"),
            "rhost=<*>"
        );
        assert_eq!(generalise("()", "(a-1.example.net)"), "(<*>)");
        assert_eq!(generalise("yarn,curi", "yarn"), "<*>");
        assert_eq!(generalise("abc", "def"), "<*>");
    }
}
