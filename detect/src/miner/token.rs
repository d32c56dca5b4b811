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

const fn byte_table(bytes: &[u8], whitespace: bool) -> [bool; 256] {
    let mut t = [false; 256];
    let mut i = 0;
    while i < bytes.len() {
        t[bytes[i] as usize] = true;
        i += 1;
    }
    if whitespace {
        // u8::is_ascii_whitespace
        t[b' ' as usize] = true;
        t[b'\t' as usize] = true;
        t[b'\n' as usize] = true;
        t[0x0c] = true;
        t[b'\r' as usize] = true;
    }
    t
}

const PATH_DELIMS: &[u8] = b",!;:=|\"'[](){}";
static PATH_DELIM: [bool; 256] = byte_table(PATH_DELIMS, true);
static DELIM: [bool; 256] = {
    let mut t = byte_table(PATH_DELIMS, true);
    let more = b".-+@#$%&";
    let mut i = 0;
    while i < more.len() {
        t[more[i] as usize] = true;
        i += 1;
    }
    t
};

/// Ends a piece for the path rule.
fn is_path_delim(b: u8) -> bool {
    PATH_DELIM[b as usize]
}

/// Ends a piece for every other rule.
pub(crate) fn is_delim(b: u8) -> bool {
    DELIM[b as usize]
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

/// Byte offset of the first `<*>` in `b` at or after `from`. (`str::find` builds a two-way
/// searcher per call, which costs more than the search on tokens this short.)
pub(crate) fn find_wild(b: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    while i + 3 <= b.len() {
        match b[i..b.len() - 2].iter().position(|&c| c == b'<') {
            Some(p) => {
                let at = i + p;
                if b[at + 1] == b'*' && b[at + 2] == b'>' {
                    return Some(at);
                }
                i = at + 1;
            }
            None => return None,
        }
    }
    None
}

pub(crate) fn contains_wild(b: &[u8]) -> bool {
    find_wild(b, 0).is_some()
}

/// First occurrence of `needle` in `hay` (`Some(0)` for an empty needle), like `str::find`.
fn find_bytes(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let Some((&first, rest)) = needle.split_first() else {
        return Some(0);
    };
    if hay.len() < needle.len() {
        return None;
    }
    let last_start = hay.len() - needle.len();
    let mut i = 0;
    while i <= last_start {
        let p = hay[i..=last_start].iter().position(|&c| c == first)?;
        let at = i + p;
        if &hay[at + 1..at + needle.len()] == rest {
            return Some(at);
        }
        i = at + 1;
    }
    None
}

pub(crate) fn kind_of(tok: &str) -> Kind {
    let b = tok.as_bytes();
    if b == WILD.as_bytes() {
        return Kind::Wild;
    }
    // (digit or `<` or `=`) and (digit or `<*>` or key=value), or a date word; the first
    // factor follows from the second.
    let any = b.iter().fold(0, |any, &c| any | CLASS[c as usize]);
    let key = || {
        b.iter()
            .position(|&c| c == b'=')
            .is_some_and(|k| k > 0 && k + 1 < b.len())
    };
    if any & DIGIT != 0 || key() || (any & LT != 0 && contains_wild(b)) || is_date_word(tok) {
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
    // Compared as integers: a slice `contains` of `&str`s calls `memcmp` for every word.
    const WORDS: [&[u8; 3]; 19] = [
        b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun", b"Jan", b"Feb", b"Mar", b"Apr",
        b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
    ];
    let key = |w: &[u8; 3]| u32::from_le_bytes([w[0], w[1], w[2], 0]);
    match <&[u8; 3]>::try_from(tok.as_bytes()) {
        Ok(w) => WORDS.iter().any(|d| key(d) == key(w)),
        Err(_) => false,
    }
}

/// Does `tok` fit `pattern`, where each `<*>` in the pattern stands for one or more characters?
pub(crate) fn glob(pattern: &str, tok: &str) -> bool {
    let pb = pattern.as_bytes();
    let Some(w) = find_wild(pb, 0) else {
        return pattern == tok;
    };
    let Some(mut rest) = tok.strip_prefix(&pattern[..w]) else {
        return false;
    };
    // The parts between `<*>`s, then the last part after the final one.
    let mut from = w + 3;
    loop {
        match find_wild(pb, from) {
            Some(next) => {
                let part = &pb[from..next];
                // Each <*> takes at least one character.
                let Some(r) = rest.get(1..) else {
                    return false;
                };
                match find_bytes(r.as_bytes(), part) {
                    Some(i) => rest = &rest[1 + i + part.len()..],
                    None => return false,
                }
                from = next + 3;
            }
            None => {
                let last = &pattern[from..];
                return rest.len() > last.len() && rest.ends_with(last);
            }
        }
    }
}

fn is_special_word(p: &[u8]) -> bool {
    const WORDS: [&[u8]; 5] = [b"true", b"false", b"null", b"root", b"admin"];
    (p.len() == 4 || p.len() == 5) && WORDS.iter().any(|w| p.eq_ignore_ascii_case(w))
}

fn is_path(p: &[u8]) -> bool {
    // ^(/[^/]+)+$
    p.len() >= 2 && p[0] == b'/' && p[p.len() - 1] != b'/' && !p.windows(2).any(|w| w == b"//")
}

/// Can `tok` be left exactly as it is? True for the common case (plain words), cheaply: no
/// digit, `/`, `<` or non-ASCII byte, and no special word between separators ("user=root").
fn is_plain(tok: &[u8]) -> bool {
    let mut from = 0;
    for (i, &b) in tok.iter().enumerate() {
        if b.is_ascii_digit() || b == b'/' || b == b'<' || b >= 0x80 {
            return false;
        }
        if is_delim(b) {
            if is_special_word(&tok[from..i]) {
                return false;
            }
            from = i + 1;
        }
    }
    !is_special_word(&tok[from..])
}

/// Appends the canonical (masked) form of one whitespace-free token to `out`.
#[cfg(test)]
pub(crate) fn canon_token(tok: &str, out: &mut String) {
    canon_token_with(tok, out, &mut String::new());
}

/// Byte classes for the single-pass piece rules.
const DIGIT: u8 = 1;
const HEX: u8 = 2;
const LT: u8 = 4;
const SLASH: u8 = 8;
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_digit() {
            t[i] |= DIGIT;
        }
        if c.is_ascii_hexdigit() {
            t[i] |= HEX;
        }
        i += 1;
    }
    t[b'<' as usize] |= LT;
    t[b'/' as usize] |= SLASH;
    t
};

/// Whether a piece (between separators) becomes `<*>`: all digits, a hexadecimal number, a
/// special word, or a mask with other characters and no `/`; given the AND (`all`) and OR (`any`) of the piece's byte
/// classes.
fn masks_classified(p: &[u8], all: u8, any: u8) -> bool {
    if p.is_empty() {
        return false;
    }
    if all & DIGIT != 0 || (any & LT != 0 && any & SLASH == 0 && contains_wild(p)) {
        return true;
    }
    if is_special_word(p) {
        return true;
    }
    // A hexadecimal number: `0x1f`, or 8+ hex digits with a digit.
    if p.len() > 2 && p[0] == b'0' && (p[1] | 0x20) == b'x' {
        return p[2..].iter().all(u8::is_ascii_hexdigit);
    }
    p.len() >= 8 && all & HEX != 0 && any & DIGIT != 0
}

/// Canonicalises one whitespace-free token into `out` and returns the result's kind; a plain
/// word without separators (the common token) takes one pass over its bytes.
#[cfg(test)]
pub(crate) fn canon_kind(tok: &str, out: &mut String, stage: &mut String) -> Kind {
    let any = tok.bytes().fold(0, |any, c| any | SCAN[c as usize]);
    if any & SCAN_NONWORD == 0
        && let Some(kind) = word_kind(tok)
    {
        out.push_str(tok);
        return kind;
    }
    canon_kind_scanned(tok, any, out, stage)
}

/// [`canon_kind`] for a token whose [`SCAN`] classes (OR-ed over its bytes) are `any`,
/// already known not to be a plain word that stays as it is.
pub(crate) fn canon_kind_scanned(tok: &str, any: u8, out: &mut String, stage: &mut String) -> Kind {
    let a = out.len();
    let what = canon_scanned(tok, any, out, stage);
    let o = &out.as_bytes()[a..];
    if o == WILD.as_bytes() {
        return Kind::Wild;
    }
    // kind_of(o), from what masking saw: a digit survives only in a kept piece, and a `<*>`
    // is either written by masking or a kept piece's literal one.
    let key = || memchr_byte(b'=', o).is_some_and(|k| k > 0 && k + 1 < o.len());
    if what.kept_digit
        || what.masked
        || (what.literal_lt && contains_wild(o))
        || key()
        || is_date_word(&out[a..])
    {
        Kind::VarLike
    } else {
        Kind::Const
    }
}

fn memchr_byte(b: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&c| c == b)
}

/// Byte classes of the tokenizer's scan ([`SCAN`]).
pub(crate) const SCAN_SPACE: u8 = 1;
/// Not a byte of a plain word (see `WORD`).
pub(crate) const SCAN_NONWORD: u8 = 2;
/// A byte that makes a token not plain ([`is_plain`]): digit, `/`, `<`, non-ASCII.
const SCAN_UNPLAIN: u8 = 4;
const SCAN_SLASH: u8 = 8;

/// One lookup per byte gives what the tokenizer needs to know of it.
pub(crate) static SCAN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        if c.is_ascii_whitespace() {
            t[i] |= SCAN_SPACE;
        }
        if !WORD[i] {
            t[i] |= SCAN_NONWORD;
        }
        if c.is_ascii_digit() || c == b'/' || c == b'<' || c >= 0x80 {
            t[i] |= SCAN_UNPLAIN;
        }
        if c == b'/' {
            t[i] |= SCAN_SLASH;
        }
        i += 1;
    }
    t
};

/// For a token of plain-word bytes only (`WORD`): `None` when masking changes it (a special word),
/// otherwise its kind (it is kept as it is, and has no digit, `<` or `=`).
pub(crate) fn word_kind(tok: &str) -> Option<Kind> {
    if is_special_word(tok.as_bytes()) {
        None
    } else if is_date_word(tok) {
        Some(Kind::VarLike)
    } else {
        Some(Kind::Const)
    }
}

/// Bytes of a plain word: ASCII, not a digit, `/`, `<` or separator.
static WORD: [bool; 256] = {
    let mut t = [false; 256];
    let mut i = 0;
    while i < 128 {
        let c = i as u8;
        t[i] = !c.is_ascii_digit() && c != b'/' && c != b'<' && !DELIM[i];
        i += 1;
    }
    t
};

/// [`canon_token`] with a caller-owned working buffer, so that it does not allocate.
pub(crate) fn canon_token_with(tok: &str, out: &mut String, stage: &mut String) {
    let any = tok.bytes().fold(0, |any, c| any | SCAN[c as usize]);
    canon_scanned(tok, any, out, stage);
}

/// What masking a token saw, for its kind.
#[derive(Clone, Copy, Default)]
pub(crate) struct Masked {
    /// Some piece that was kept holds a digit.
    kept_digit: bool,
    /// Some piece became `<*>`.
    masked: bool,
    /// Some kept piece holds a `<`.
    literal_lt: bool,
}

/// Piece classes and the separator bit in one table: one lookup per byte in the piece pass.
const PIECE_DELIM: u8 = 0x80;
static PIECE: [u8; 256] = {
    let mut t = CLASS;
    let mut i = 0;
    while i < 256 {
        if DELIM[i] {
            t[i] |= PIECE_DELIM;
        }
        i += 1;
    }
    t
};

/// [`canon_token_with`] given the token's [`SCAN`] classes `scan`.
///
/// One pass over the pieces. The path rule, which the rules define as a first pass over the
/// coarser pieces between path separators, is applied on the way: a piece that starts with `/`
/// right after a path separator (or at the start) is looked ahead to the next path separator,
/// and that whole stretch becomes one `<*>` when it is a path. A path stretch is bounded by
/// path separators, which are separators too, so this is the same as masking it first.
fn canon_scanned(tok: &str, scan: u8, out: &mut String, stage: &mut String) -> Masked {
    if scan & SCAN_UNPLAIN == 0 && is_plain(tok.as_bytes()) {
        out.push_str(tok);
        return Masked::default();
    }
    let start = out.len();
    let paths = scan & SCAN_SLASH != 0;
    let b = tok.as_bytes();
    let (mut i, mut from, mut copied) = (0, 0, 0);
    let mut what = Masked::default();
    // Whether the previous piece became `<*>`.
    let mut prev_masked = false;
    loop {
        if paths && i < b.len() && b[i] == b'/' && (i == 0 || is_path_delim(b[i - 1])) {
            let end = b[i..]
                .iter()
                .position(|&c| is_path_delim(c))
                .map_or(b.len(), |p| i + p);
            if is_path(&b[i..end]) {
                // Preceded by a path separator (never `.`): no collapse with the piece before.
                out.push_str(&tok[copied..i]);
                out.push_str(WILD);
                copied = end;
                prev_masked = true;
                what.masked = true;
                if end == b.len() {
                    break;
                }
                i = end + 1;
                from = i;
                continue;
            }
        }
        let (mut all, mut any) = (u8::MAX, 0u8);
        while i < b.len() {
            let c = PIECE[b[i] as usize];
            if c & PIECE_DELIM != 0 {
                break;
            }
            all &= c;
            any |= c;
            i += 1;
        }
        let piece = &b[from..i];
        if masks_classified(piece, all, any) {
            if prev_masked && b[from - 1] == b'.' {
                // `<*>.<*>` collapses: the `<*>` already written covers this piece too.
                debug_assert_eq!(copied, from - 1);
            } else {
                out.push_str(&tok[copied..from]);
                out.push_str(WILD);
            }
            copied = i;
            prev_masked = true;
            what.masked = true;
        } else {
            what.literal_lt |= any & LT != 0;
            what.kept_digit |= any & DIGIT != 0;
            prev_masked = false;
        }
        if i == b.len() {
            break;
        }
        i += 1;
        from = i;
    }
    out.push_str(&tok[copied..]);
    if what.literal_lt {
        collapse(out, start, stage);
    }
    what
}

/// Where a `<*>` at `i` is followed by `<*>` or `.<*>`: the start of the next one.
fn chained(b: &[u8], i: usize) -> Option<usize> {
    let rest = &b[i + 3..];
    if rest.starts_with(b"<*>") {
        Some(i + 3)
    } else if rest.starts_with(b".<*>") {
        Some(i + 4)
    } else {
        None
    }
}

/// Collapses `<*>.<*>` and `<*><*>` into `<*>` in `out[start..]`, as often as they occur.
///
/// `<*>` cannot overlap itself and collapsing never forms a new one, so this is one pass: every
/// run of `<*>`s joined by nothing or by single dots becomes one `<*>` (the same result as
/// replacing `<*>.<*>` until none is left, then `<*><*>`).
fn collapse(out: &mut String, start: usize, work: &mut String) {
    let b = &out.as_bytes()[start..];
    let mut any = false;
    let mut i = 0;
    while let Some(w) = find_wild(b, i) {
        if chained(b, w).is_some() {
            any = true;
            break;
        }
        i = w + 3;
    }
    if !any {
        return;
    }
    work.clear();
    let s = &out[start..];
    let mut from = 0;
    while let Some(mut w) = find_wild(b, from) {
        work.push_str(&s[from..w]);
        work.push_str(WILD);
        while let Some(next) = chained(b, w) {
            w = next;
        }
        from = w + 3;
    }
    work.push_str(&s[from..]);
    out.truncate(start);
    out.push_str(work);
}

/// The lengths of the longest common prefix of `a` and `b` that ends just after a separator,
/// and of the longest common suffix (not overlapping it) that starts at one.
fn shared_edges(ab: &[u8], bb: &[u8]) -> (usize, usize) {
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
    (pre, suf)
}

/// True only if [`generalise`]`(a, b)` is `a` itself, for a canonical `a` (a template token)
/// other than `<*>`: `a` is already its shared prefix, one `<*>` and its shared suffix. Cheap:
/// no masking pass.
pub(crate) fn generalise_keeps(a: &str, b: &str) -> bool {
    // `<*>` itself is left to the slow path, which also decides its kind.
    if a == WILD || b == WILD {
        return false;
    }
    let (pre, suf) = shared_edges(a.as_bytes(), b.as_bytes());
    pre + WILD.len() + suf == a.len() && &a.as_bytes()[pre..pre + WILD.len()] == WILD.as_bytes()
}

/// The most specific token that covers both `a` and `b` (already canonical, different): the
/// pieces (between separators) they share at the start and at the end are kept and the rest
/// becomes one `<*>` (`rhost=<*>` + `rhost=host.example.net` → `rhost=<*>`).
pub(crate) fn generalise(a: &str, b: &str) -> String {
    let mut out = String::new();
    generalise_into(a, b, &mut out, &mut String::new(), &mut String::new());
    out
}

/// [`generalise`] into `out` (cleared first), with caller-owned working buffers.
pub(crate) fn generalise_into(
    a: &str,
    b: &str,
    out: &mut String,
    raw: &mut String,
    stage: &mut String,
) {
    out.clear();
    if a == WILD || b == WILD {
        out.push_str(WILD);
        return;
    }
    let (pre, suf) = shared_edges(a.as_bytes(), b.as_bytes());
    raw.clear();
    raw.push_str(&a[..pre]);
    raw.push_str(WILD);
    raw.push_str(&a[a.len() - suf..]);
    canon_token_with(raw, out, stage);
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
    fn date_words() {
        for w in ["Mon", "Dec", "May"] {
            assert!(is_date_word(w) && reference::is_date_word(w));
        }
        for w in ["mon", "Ma", "Mayo", "", "Xyz"] {
            assert!(!is_date_word(w) && !reference::is_date_word(w));
        }
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

    /// The straightforward implementation these rules were first written as; the fast one
    /// must agree with it exactly.
    mod reference {
        #![allow(dead_code)]
        use super::super::{Kind, WILD};

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
        fn is_delim(b: u8) -> bool {
            is_path_delim(b) || matches!(b, b'.' | b'-' | b'+' | b'@' | b'#' | b'$' | b'%' | b'&')
        }

        pub(super) fn kind_of(tok: &str) -> Kind {
            if tok == WILD {
                Kind::Wild
            } else if tok
                .bytes()
                .any(|b| b.is_ascii_digit() || b == b'<' || b == b'=')
                && (tok.bytes().any(|b| b.is_ascii_digit())
                    || tok.contains(WILD)
                    || key_of(tok).is_some())
                || is_date_word(tok)
            {
                Kind::VarLike
            } else {
                Kind::Const
            }
        }

        /// `key` of a `key=value` token with a non-empty value: the value is likely variable.
        fn key_of(tok: &str) -> Option<&str> {
            let (k, v) = tok.split_once('=')?;
            (!k.is_empty() && !v.is_empty()).then_some(k)
        }

        /// Day and month names: parts of a date inside a message.
        pub(super) fn is_date_word(tok: &str) -> bool {
            const WORDS: [&str; 19] = [
                "Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun", "Jan", "Feb", "Mar", "Apr", "May",
                "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            tok.len() == 3 && WORDS.contains(&tok)
        }

        /// Does `tok` fit `pattern`, where each `<*>` in the pattern stands for one or more characters?
        pub(super) fn glob(pattern: &str, tok: &str) -> bool {
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
            b.len() >= 2
                && b[0] == b'/'
                && b[b.len() - 1] != b'/'
                && !b.windows(2).any(|w| w == b"//")
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
        pub(super) fn canon_token(tok: &str, out: &mut String) {
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
        fn for_pieces<'a>(
            s: &'a str,
            delim: fn(u8) -> bool,
            mut f: impl FnMut(&'a str, Option<char>),
        ) {
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
        pub(super) fn generalise(a: &str, b: &str) -> String {
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
    }

    fn reference_generalise(a: &str, b: &str) -> String {
        reference::generalise(a, b)
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4096))]

        #[test]
        fn agrees_with_the_reference(
            a in "[a-fA-F0-9xX./:=<*>_ -]{0,24}|[ -~]{0,16}|\\PC{0,8}|(<\\*>|[.0-9a/]|true|root){0,8}",
            b in "[a-fx0-9./:=<*>_-]{0,16}|(<\\*>|[.0-9a/]){0,6}",
        ) {
            for t in a.split_ascii_whitespace().chain([a.as_str(), b.as_str()]) {
                let mut x = String::from("pre");
                canon_token(t, &mut x);
                let mut y = String::from("pre");
                reference::canon_token(t, &mut y);
                proptest::prop_assert_eq!(&x, &y, "canon {:?}", t);
                proptest::prop_assert_eq!(kind_of(t), reference::kind_of(t), "kind {:?}", t);
                proptest::prop_assert_eq!(is_date_word(t), reference::is_date_word(t));
                let mut z = String::from("pre");
                let k = canon_kind(t, &mut z, &mut String::new());
                proptest::prop_assert_eq!(&z, &y, "canon_kind {:?}", t);
                proptest::prop_assert_eq!(k, reference::kind_of(&y[3..]), "canon_kind {:?}", t);
                proptest::prop_assert_eq!(glob(t, &b), reference::glob(t, &b), "glob {:?} {:?}", t, b);
                proptest::prop_assert_eq!(glob(&x[3..], &b), reference::glob(&x[3..], &b));
                if !t.is_empty() && !b.is_empty() && t != b {
                    proptest::prop_assert_eq!(generalise(t, &b), reference_generalise(t, &b));
                }
                // Masking is idempotent, so a canonical template token that generalise
                // would rebuild unchanged can be kept without masking it again.
                let canon_t = &x[3..];
                let mut again = String::new();
                canon_token(canon_t, &mut again);
                proptest::prop_assert_eq!(&again, canon_t, "idempotent {:?}", t);
                let mut cb = String::new();
                canon_token(&b, &mut cb);
                if !canon_t.is_empty() && !cb.is_empty() && canon_t != cb {
                    let g = generalise(canon_t, &cb);
                    proptest::prop_assert!(
                        !generalise_keeps(canon_t, &cb) || g == canon_t, "keeps {:?} {:?}", canon_t, cb
                    );
                }
            }
        }
    }
}
