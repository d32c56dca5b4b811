//! Templates: text with `{{ EXPR }}` and `{{ EXPR | filter }}` holes, EXPR being CEL over
//! the same variables as a rule's condition.
//!
//! Entry points: [`Template::parse`] (at load time; every syntax error is found here) and
//! [`Template::render`] (never fails: a hole whose expression errors, such as a missing
//! attribute, or yields null renders as [`UNKNOWN`]).
//!
//! There is no escaping syntax: to write a literal `{{`, use a CEL string, `{{ "{{" }}`.

use crate::expr::{self, Cel, ExprError, Scope, outside_literals};
use crate::native::{self, Native};
use cel::{Context, Program};

/// What a hole renders as when its value is missing.
pub const UNKNOWN: &str = "<unknown>";

/// A transformation applied to a hole's value, written after a `|`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// An integer number of bytes in binary units with one decimal: `64.0 MiB`, `512 B`.
    Bytes,
}

impl Filter {
    /// Every filter, by name, for documentation and error messages.
    pub const ALL: &[(&'static str, Filter)] = &[("bytes", Filter::Bytes)];

    fn parse(name: &str) -> Option<Filter> {
        Filter::ALL
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, f)| *f)
    }

    fn apply(self, v: &cel::Value) -> Option<String> {
        match self {
            Filter::Bytes => expr::to_number(v).map(human_bytes),
        }
    }
}

/// `n` bytes in binary units: `512 B`, `1.5 KiB`, `64.0 MiB`.
pub fn human_bytes(n: f64) -> String {
    const UNITS: &[&str] = &["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let sign = if n < 0.0 { "-" } else { "" };
    let mut v = n.abs();
    if v < 1024.0 {
        return format!("{sign}{} B", v.round() as u64);
    }
    let mut unit = UNITS[0];
    v /= 1024.0;
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{sign}{v:.1} {unit}")
}

/// Why a template does not parse. `offset` is in bytes into the template text.
#[derive(Debug)]
pub(crate) enum TemplateError {
    /// The template itself is malformed.
    Syntax { message: String, offset: usize },
    /// An expression inside `{{ }}` that starts at byte `offset` of the template.
    Expr { error: ExprError, offset: usize },
}

enum Part {
    Text(String),
    Hole {
        program: Program,
        /// The expression evaluated natively, when it is in the native subset.
        native: Option<Box<Native>>,
        filters: Vec<Filter>,
        /// Byte offset of the expression in the template, and its source.
        offset: usize,
        source: String,
    },
}

/// A parsed template.
pub(crate) struct Template {
    parts: Vec<Part>,
    /// What a rendering usually needs: the text plus a little per hole.
    len_hint: usize,
}

impl Template {
    #[cfg(test)]
    pub(crate) fn parse(cel: &Cel, text: &str) -> Result<Template, TemplateError> {
        Template::parse_with(cel, text, &[])
    }

    /// [`Template::parse`] with `extra` variables allowed (`join` in a rule with joins).
    pub(crate) fn parse_with(
        cel: &Cel,
        text: &str,
        extra: &[&str],
    ) -> Result<Template, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = 0;
        while let Some(open) = text[rest..].find("{{").map(|i| rest + i) {
            if open > rest {
                parts.push(Part::Text(text[rest..open].to_string()));
            }
            let inner_start = open + 2;
            let Some(close) = find_close(text, inner_start) else {
                return Err(TemplateError::Syntax {
                    message: "`{{` is never closed by `}}`".into(),
                    offset: open,
                });
            };
            let inner = &text[inner_start..close];
            let mut pieces = split_pipes(inner).into_iter();
            let (expr_start, expr_end) = pieces.next().unwrap_or((0, inner.len()));
            let source = &inner[expr_start..expr_end];
            if source.trim().is_empty() {
                return Err(TemplateError::Syntax {
                    message: "empty `{{ }}`: put a CEL expression inside, e.g. `{{ attributes['process.pid'] }}`".into(),
                    offset: open,
                });
            }
            let program = cel
                .compile_with(source, extra)
                .map_err(|error| TemplateError::Expr {
                    error,
                    offset: inner_start + expr_start,
                })?;
            let mut filters = Vec::new();
            for (s, e) in pieces {
                let name = inner[s..e].trim();
                let Some(filter) = Filter::parse(name) else {
                    let known: Vec<String> =
                        Filter::ALL.iter().map(|(n, _)| format!("`{n}`")).collect();
                    let blank = inner[s..e].len() - inner[s..e].trim_start().len();
                    return Err(TemplateError::Syntax {
                        message: format!(
                            "unknown filter `{name}`; the filters are {}",
                            known.join(", ")
                        ),
                        offset: inner_start + s + blank,
                    });
                };
                filters.push(filter);
            }
            parts.push(Part::Hole {
                native: Native::compile(program.expression(), false).map(Box::new),
                program,
                filters,
                offset: inner_start + expr_start,
                source: source.to_string(),
            });
            rest = close + 2;
        }
        if rest < text.len() {
            parts.push(Part::Text(text[rest..].to_string()));
        }
        let len_hint = parts
            .iter()
            .map(|p| match p {
                Part::Text(t) => t.len(),
                Part::Hole { .. } => 24,
            })
            .sum();
        Ok(Template { parts, len_hint })
    }

    /// Renders against a signal's variables (`env` natively, `scope` through the CEL
    /// interpreter, whose context is built in `ctx` the first time a hole needs it); missing
    /// values become [`UNKNOWN`].
    pub(crate) fn render<'v>(
        &self,
        env: &native::Env<'_>,
        cel: &Cel,
        scope: &'v Scope<'_>,
        ctx: &mut Option<Context<'v, 'v>>,
    ) -> String {
        let mut out = String::with_capacity(self.len_hint);
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Hole {
                    program,
                    native,
                    filters,
                    ..
                } => {
                    // Natively when it can; a certain error renders as missing without
                    // asking the interpreter.
                    let fast = match native.as_ref().filter(|_| cel.native).map(|n| n.eval(env)) {
                        Some(Ok(v)) if filters.is_empty() && v.write_text(&mut out) => continue,
                        Some(Ok(v)) => v.to_cel().map(Some),
                        Some(Err(native::Bail::Error)) => Some(None),
                        _ => None,
                    };
                    let value = match fast {
                        Some(v) => v,
                        None => program
                            .execute(ctx.get_or_insert_with(|| cel.context(scope)))
                            .ok(),
                    };
                    let text = value.and_then(|v| match filters.split_first() {
                        None => expr::to_text(&v),
                        // Filters turn a value into text, so only the first can see the value;
                        // later ones see that text as a string value.
                        Some((first, more)) => {
                            let mut s = first.apply(&v)?;
                            for f in more {
                                s = f.apply(&cel::Value::from(s))?;
                            }
                            Some(s)
                        }
                    });
                    out.push_str(text.as_deref().unwrap_or(UNKNOWN));
                }
            }
        }
        out
    }
}

impl Template {
    /// Every `join.NAME` the holes select: the name and its byte offset in the template.
    pub(crate) fn join_refs(&self) -> Vec<(String, usize)> {
        let mut out = Vec::new();
        for part in &self.parts {
            if let Part::Hole {
                program,
                offset,
                source,
                ..
            } = part
            {
                for (name, id) in expr::join_refs(program) {
                    let at = Cel::offset_of_id(program, source, id).unwrap_or(0);
                    out.push((name, offset + at));
                }
            }
        }
        out
    }
}

/// The byte index of the `}}` closing a hole whose contents start at `from`, skipping
/// `}}` inside CEL string literals.
fn find_close(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    outside_literals(&bytes[from..])
        .map(|(i, b)| (from + i, b))
        .find(|&(i, b)| b == b'}' && bytes.get(i + 1) == Some(&b'}'))
        .map(|(i, _)| i)
}

/// Splits a hole's contents on `|` (but not `||`, nor inside string literals) into byte
/// ranges: the expression, then one range per filter.
fn split_pipes(inner: &str) -> Vec<(usize, usize)> {
    let bytes = inner.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut skip_next = false;
    for (i, b) in outside_literals(bytes) {
        if std::mem::take(&mut skip_next) || b != b'|' {
            continue;
        }
        if bytes.get(i + 1) == Some(&b'|') {
            // `||` is CEL's "or", not a filter pipe.
            skip_next = true;
            continue;
        }
        out.push((start, i));
        start = i + 1;
    }
    out.push((start, inner.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, EntityKind, Severity, Signal, Timestamp};

    fn signal() -> Signal {
        let mut s = Signal {
            id: "1".into(),
            name: "daytwo.kernel.oom_kill".into(),
            time: Timestamp::from_unix_secs(0),
            severity: Severity::Critical,
            entity: Entity::new(EntityKind::Cgroup, "/probe1"),
            resource: Default::default(),
            attributes: Default::default(),
            message: String::new(),
            evidence: vec![],
        };
        s.attributes
            .insert("daytwo.memory.limit_bytes".into(), 67_108_864u64.into());
        s.attributes.insert("process.pid".into(), 1693.into());
        s.attributes.insert("ok".into(), true.into());
        s
    }

    fn render(text: &str) -> String {
        let cel = Cel::new();
        let t = Template::parse(&cel, text).unwrap();
        let s = signal();
        let scope = crate::expr::Scope::of(crate::expr::Vars::fresh(&s));
        let env = native::Env {
            this: &s,
            trigger: None,
            joins: &[],
        };
        t.render(&env, &cel, &scope, &mut None)
    }

    #[test]
    fn renders_values_filters_and_unknowns() {
        assert_eq!(
            render(
                "limit {{ attributes['daytwo.memory.limit_bytes'] | bytes }} pid {{attributes['process.pid']}}"
            ),
            "limit 64.0 MiB pid 1693"
        );
        assert_eq!(render("{{ attributes['nope'] }}!"), "<unknown>!");
        assert_eq!(render("{{ attributes['nope'] | bytes }}"), "<unknown>");
        assert_eq!(
            render("{{ entity.name }} {{ entity.kind }}"),
            "/probe1 cgroup"
        );
        assert_eq!(render("{{ attributes['ok'] || false }}"), "true");
        assert_eq!(render("{{ '}}' }}"), "}}");
        assert_eq!(render("no holes"), "no holes");
        assert_eq!(render("{{ 'x' | bytes }}"), "<unknown>");
    }

    #[test]
    fn syntax_errors_say_where() {
        let cel = Cel::new();
        match Template::parse(&cel, "abc {{ name ") {
            Err(TemplateError::Syntax { offset, .. }) => assert_eq!(offset, 4),
            _ => panic!(),
        }
        match Template::parse(&cel, "{{ name | byts }}") {
            Err(TemplateError::Syntax { offset, message }) => {
                assert_eq!(offset, 10);
                assert!(message.contains("`byts`"), "{message}");
            }
            _ => panic!(),
        }
        match Template::parse(&cel, "x {{ }}") {
            Err(TemplateError::Syntax { offset, .. }) => assert_eq!(offset, 2),
            _ => panic!(),
        }
        match Template::parse(&cel, "x {{ name == }}") {
            Err(TemplateError::Expr { offset, .. }) => assert_eq!(offset, 4),
            _ => panic!(),
        }
    }

    #[test]
    fn bytes_are_binary_with_one_decimal() {
        assert_eq!(human_bytes(512.0), "512 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(67_108_864.0), "64.0 MiB");
        assert_eq!(human_bytes(8.0 * 1024.0 * 1024.0 * 1024.0), "8.0 GiB");
        assert_eq!(human_bytes(-2048.0), "-2.0 KiB");
    }
}
