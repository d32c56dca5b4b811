//! YAML plumbing shared by rule files and test files: parse with serde-saphyr, turn its
//! errors into [`RuleParseFailed::Yaml`] with `path:line:col`, and map a position inside a
//! scalar's value back to a position in the file.
//!
//! serde-saphyr reports the location of the node that failed; [`Spanned`] values carry the
//! location (and byte offset) of the scalar they came from, which is how CEL and template
//! errors found after parsing still point at the right line and column.

use crate::error::{Location, RuleParseFailed};
use serde::de::DeserializeOwned;
use serde_saphyr::{DefaultMessageFormatter, MessageFormatter, Spanned};

/// Deserializes `text` (the contents of `path`) into `T`.
pub(crate) fn parse<T: DeserializeOwned>(
    path: &str,
    text: &str,
    what: &str,
) -> Result<T, RuleParseFailed> {
    if is_blank(text) {
        return Err(RuleParseFailed::Yaml {
            at: Location::new(path, 1, 1),
            message: format!("the file is empty: {what} (see docs/rules.md)"),
        });
    }
    serde_saphyr::from_str::<T>(text).map_err(|e| {
        let (line, column) = e
            .location()
            .map(|l| (l.line(), l.column()))
            .unwrap_or((0, 0));
        let message = DefaultMessageFormatter.format_message(e.without_snippet());
        // serde-saphyr reports a missing field where the mapping ended; point at where it
        // starts instead, which is where the field has to be added.
        let line = if message.starts_with("missing field") {
            mapping_start(text, line, column)
        } else {
            line
        };
        RuleParseFailed::Yaml {
            at: Location::new(path, line, column),
            message: polish(&message),
        }
    })
}

/// True for text that holds no YAML node (only blanks and comments).
fn is_blank(text: &str) -> bool {
    text.lines().all(|l| {
        let l = l.trim();
        l.is_empty() || l.starts_with('#') || l == "---" || l == "..."
    })
}

/// The first line of the block mapping that has a key at (`line`, `column`): walks up
/// over lines indented deeper than the key (nested values) and over sibling keys, and stops
/// at a `- ` item marker or at a shallower line. Returns `line` when unsure.
fn mapping_start(text: &str, line: u64, column: u64) -> u64 {
    let lines: Vec<&str> = text.lines().collect();
    let (Ok(first), Ok(key_col)) = (usize::try_from(line), usize::try_from(column)) else {
        return line;
    };
    if first == 0 || first > lines.len() || key_col == 0 {
        return line;
    }
    let mut start = first;
    for i in (1..=first).rev() {
        let Some((key_at, is_item)) = first_key(lines[i - 1]) else {
            continue;
        };
        if key_at == key_col {
            start = i;
            if is_item {
                break;
            }
        } else if key_at < key_col {
            break;
        }
    }
    start as u64
}

/// The 1-based column of the first key of a line, after any `- ` item markers, and
/// whether there was a marker; `None` for blank and comment lines.
fn first_key(l: &str) -> Option<(usize, bool)> {
    let trimmed = l.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return None;
    }
    let mut key_at = l.len() - trimmed.len();
    let mut rest = trimmed;
    let mut is_item = false;
    while let Some(r) = rest.strip_prefix("- ") {
        let r2 = r.trim_start();
        key_at += rest.len() - r2.len();
        rest = r2;
        is_item = true;
    }
    Some((key_at + 1, is_item))
}

/// serde's `expected one of a, b` lists read better, and match rustc's style, with the
/// names in backticks; control characters never reach a terminal.
fn polish(message: &str) -> String {
    let message: String = message
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    const MARK: &str = ", expected one of ";
    match message.split_once(MARK) {
        Some((head, list)) if !list.contains('`') => {
            let names: Vec<String> = list.split(", ").map(|n| format!("`{n}`")).collect();
            format!("{head}{MARK}{}", names.join(", "))
        }
        _ => message,
    }
}

/// The location of a spanned value.
pub(crate) fn location<T>(path: &str, s: &Spanned<T>) -> Location {
    Location::new(path, s.referenced.line(), s.referenced.column())
}

/// The location of byte `offset` of a spanned string's *value*.
///
/// Exact for plain and quoted single-line scalars and for the first line of a block
/// scalar: the value's text up to `offset` is checked against the file, and when they
/// differ (escapes, folding) the start of the scalar is returned instead, which is never
/// wrong, only less precise.
pub(crate) fn location_in(path: &str, text: &str, s: &Spanned<String>, offset: usize) -> Location {
    let start = location(path, s);
    let Some(prefix) = s.value.get(..offset) else {
        return start;
    };
    if prefix.contains('\n') {
        return start;
    }
    let Some(source) = s
        .referenced
        .span()
        .byte_offset()
        .and_then(|b| usize::try_from(b).ok())
        .and_then(|b| text.get(b..))
    else {
        return start;
    };
    let (quote, body) = match source.chars().next() {
        Some(q @ ('\'' | '"')) => (1, &source[q.len_utf8()..]),
        _ => (0, source),
    };
    if body.starts_with(prefix) {
        Location::new(
            path,
            start.line,
            start.column + quote + prefix.chars().count() as u64,
        )
    } else {
        start
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_lists_get_backticks() {
        assert_eq!(
            polish("unknown field `x`, expected one of a, b"),
            "unknown field `x`, expected one of `a`, `b`"
        );
        assert_eq!(polish("line\nbreak"), "line break");
    }

    #[test]
    fn missing_fields_point_at_the_mapping() {
        let text = "rules:\n  - id: a\n    x:\n      y: 1\n    z: 2\n  - id: b\n";
        assert_eq!(mapping_start(text, 5, 5), 2);
        assert_eq!(mapping_start(text, 6, 5), 6);
        assert_eq!(mapping_start(text, 4, 7), 4);
        assert_eq!(mapping_start(text, 99, 5), 99);
    }

    #[test]
    fn blank_files_are_detected() {
        assert!(is_blank(""));
        assert!(is_blank("# only a comment\n\n---\n"));
        assert!(!is_blank("rules: []"));
    }

    #[derive(serde::Deserialize)]
    struct One {
        v: Spanned<String>,
    }

    #[test]
    fn offsets_map_into_plain_and_quoted_scalars() {
        for (text, col) in [("v: abcd\n", 6), ("v: 'abcd'\n", 7), ("v: \"abcd\"\n", 7)] {
            let one: One = serde_saphyr::from_str(text).unwrap();
            let at = location_in("f", text, &one.v, 2);
            assert_eq!((at.line, at.column), (1, col), "{text}");
        }
        // An escape before the offset: fall back to the start of the scalar.
        let text = "v: 'a''bcd'\n";
        let one: One = serde_saphyr::from_str(text).unwrap();
        let at = location_in("f", text, &one.v, 3);
        assert_eq!((at.line, at.column), (1, 4));
    }
}
