//! Log signals, decided in event time: `daytwo.log.new_template`, `daytwo.log.error_burst`
//! and `daytwo.log.silence`.
//!
//! Entry type: [`LogDetector`]. The pipeline calls [`LogDetector::line`] for every record
//! (workload, event time, template id, whether the template is error-level, the text) and
//! [`LogDetector::tick`] with the current time once per poll; both return the signals they
//! decided. No clock is read here: every time is an argument, so the tests below drive it.
//!
//! Invariants: a workload's state is bounded (evidence ring of `evidence_lines` lines of at
//! most [`EVIDENCE_LINE_BYTES`], burst state only for error-level templates, at most
//! [`MAX_TEMPLATES_PER_WORKLOAD`] seen ids); signal ids derive from content (workload,
//! template, event-time bucket), so re-reading after a restart gives the same ids.
//! State is in memory: after a restart every workload warms up again.

use super::pipeline::FastMap;
use daytwo_model::{Attributes, Entity, Evidence, Severity, Signal, Timestamp, stable_id};
use std::collections::VecDeque;

pub const NEW_TEMPLATE_EVENT: &str = "daytwo.log.new_template";
pub const ERROR_BURST_EVENT: &str = "daytwo.log.error_burst";
pub const SILENCE_EVENT: &str = "daytwo.log.silence";
/// Evidence lines are cut to this many bytes.
pub const EVIDENCE_LINE_BYTES: usize = 1024;
pub const MAX_TEMPLATES_PER_WORKLOAD: usize = 20_000;
const NANOS: i64 = 1_000_000_000;

/// Detector thresholds (`agent.logs.detect` in the config file; docs/logs.md).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// A workload learns its templates for this long after its first line before any
    /// `new_template` signal.
    pub warmup_secs: u64,
    /// … and for at least this many lines.
    pub warmup_lines: u64,
    /// At most this many `new_template` signals per workload per minute (a rollout brings
    /// many at once; the rest are counted, not sent).
    pub new_template_max_per_minute: u32,
    /// Width of the error-rate buckets.
    pub burst_bucket_secs: u64,
    /// A bucket with at least `burst_factor` × the template's baseline …
    pub burst_factor: f64,
    /// … and at least this many lines is a burst.
    pub burst_min_count: u64,
    /// A workload is "steady" after logging for this long …
    pub silence_min_active_secs: u64,
    /// … at an average of at least this many lines per minute.
    pub silence_min_lines_per_minute: f64,
    /// Silence is a gap of at least `silence_factor` × its mean interval between lines …
    pub silence_factor: f64,
    /// … and at least this long.
    pub silence_min_secs: u64,
    /// Lines kept per workload as evidence.
    pub evidence_lines: usize,
}

impl Default for DetectConfig {
    fn default() -> Self {
        DetectConfig {
            warmup_secs: 600,
            warmup_lines: 100,
            new_template_max_per_minute: 5,
            burst_bucket_secs: 10,
            burst_factor: 5.0,
            burst_min_count: 20,
            silence_min_active_secs: 300,
            silence_min_lines_per_minute: 6.0,
            silence_factor: 10.0,
            silence_min_secs: 60,
            evidence_lines: 10,
        }
    }
}

/// Who logged a line: the signal entity plus the key that groups a workload's pods.
#[derive(Clone, Debug)]
pub struct WorkloadRef {
    /// Groups the pods of one owner and container, so a replaced pod keeps its history.
    pub key: String,
    pub entity: Entity,
    pub resource: Attributes,
    /// Extra signal attributes (`k8s.container.name`, `log.file.path`).
    pub attributes: Attributes,
}

#[derive(Debug, Default)]
struct Burst {
    bucket: i64,
    count: u64,
    baseline: f64,
    firing: bool,
}

#[derive(Debug)]
struct Workload {
    wl: WorkloadRef,
    first_seen: i64,
    lines: u64,
    seen: FastMap<u64, ()>,
    warm: bool,
    recent: VecDeque<(i64, String)>,
    new_window: (i64, u32),
    bursts: FastMap<u64, Burst>,
    streak_start: i64,
    streak_lines: u64,
    last_line: i64,
    silent: bool,
    live: bool,
}

/// Counters the caller turns into metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct DetectStats {
    pub new_templates_suppressed: u64,
}

/// See the module docs.
#[derive(Debug)]
pub struct LogDetector {
    cfg: DetectConfig,
    workloads: FastMap<String, Workload>,
    pub stats: DetectStats,
}

impl LogDetector {
    pub fn new(cfg: DetectConfig) -> Self {
        LogDetector {
            cfg,
            workloads: FastMap::default(),
            stats: DetectStats::default(),
        }
    }

    /// One record of `wl` at event time `t` (ns). `first_line` is what evidence shows.
    pub fn line(
        &mut self,
        wl: &WorkloadRef,
        t: i64,
        template: u64,
        template_text: &dyn Fn() -> String,
        is_error: bool,
        first_line: &str,
    ) -> Vec<Signal> {
        let cfg = &self.cfg;
        let w = match self.workloads.get_mut(&wl.key) {
            Some(w) => w,
            None => self.workloads.entry(wl.key.clone()).or_insert(Workload {
                wl: wl.clone(),
                first_seen: t,
                lines: 0,
                seen: FastMap::default(),
                warm: false,
                recent: VecDeque::new(),
                new_window: (t, 0),
                bursts: FastMap::default(),
                streak_start: t,
                streak_lines: 0,
                last_line: t,
                silent: false,
                live: true,
            }),
        };
        if w.wl.entity.name != wl.entity.name {
            // A replacement pod of the same workload: signals name the current one.
            w.wl = wl.clone();
        }
        w.live = true;
        // Evidence ring (reusing the oldest string's buffer).
        let mut slot = if w.recent.len() >= cfg.evidence_lines.max(1) {
            w.recent.pop_front().map(|(_, s)| s).unwrap_or_default()
        } else {
            String::new()
        };
        slot.clear();
        slot.push_str(cut(first_line, EVIDENCE_LINE_BYTES));
        w.recent.push_back((t, slot));
        w.lines += 1;
        // Silence bookkeeping.
        if w.silent || t.saturating_sub(w.last_line) > cfg.silence_min_secs as i64 * NANOS * 10 {
            w.streak_start = t;
            w.streak_lines = 0;
        }
        w.silent = false;
        w.streak_lines += 1;
        w.last_line = w.last_line.max(t);

        let mut out = Vec::new();
        // New templates.
        let is_new =
            w.seen.len() < MAX_TEMPLATES_PER_WORKLOAD && w.seen.insert(template, ()).is_none();
        if !w.warm
            && w.lines >= cfg.warmup_lines
            && t.saturating_sub(w.first_seen) >= cfg.warmup_secs as i64 * NANOS
        {
            w.warm = true;
        } else if w.warm && is_new {
            if t.saturating_sub(w.new_window.0) >= 60 * NANOS {
                w.new_window = (t, 0);
            }
            if w.new_window.1 < cfg.new_template_max_per_minute {
                w.new_window.1 += 1;
                let text = template_text();
                let mut attrs = w.wl.attributes.clone();
                attrs.insert(
                    "daytwo.log.template_id".into(),
                    format!("{template:016x}").into(),
                );
                attrs.insert("daytwo.log.template".into(), text.clone().into());
                out.push(signal(
                    w,
                    NEW_TEMPLATE_EVENT,
                    Severity::Info,
                    t,
                    stable_id(&[NEW_TEMPLATE_EVENT, &wl.key, &template.to_string()]),
                    format!(
                        "{} logged a line of a kind never seen before: {}",
                        w.wl.entity.name,
                        cut(&text, 200)
                    ),
                    attrs,
                ));
            } else {
                self.stats.new_templates_suppressed += 1;
            }
        }
        // Error bursts.
        if is_error {
            let bucket_ns = cfg.burst_bucket_secs.max(1) as i64 * NANOS;
            let bucket = t.div_euclid(bucket_ns);
            let b = w.bursts.entry(template).or_insert(Burst {
                bucket,
                ..Default::default()
            });
            if bucket > b.bucket {
                // Close the finished bucket and any empty ones after it (at most 100).
                let alpha = 0.2;
                let mut counts = std::iter::once(b.count).chain(std::iter::repeat_n(
                    0,
                    (bucket - b.bucket - 1).min(100) as usize,
                ));
                for c in counts.by_ref() {
                    b.baseline = (1.0 - alpha) * b.baseline + alpha * c as f64;
                }
                if b.firing && (b.count as f64) < threshold(cfg, b.baseline) / 2.0 {
                    b.firing = false;
                }
                b.bucket = bucket;
                b.count = 0;
            }
            if bucket == b.bucket {
                b.count += 1;
                let th = threshold(cfg, b.baseline);
                if !b.firing && b.count as f64 >= th {
                    b.firing = true;
                    let (count, baseline) = (b.count, b.baseline);
                    let text = template_text();
                    let mut attrs = w.wl.attributes.clone();
                    attrs.insert(
                        "daytwo.log.template_id".into(),
                        format!("{template:016x}").into(),
                    );
                    attrs.insert("daytwo.log.template".into(), text.clone().into());
                    attrs.insert("daytwo.log.count".into(), count.into());
                    attrs.insert(
                        "daytwo.log.window_secs".into(),
                        cfg.burst_bucket_secs.into(),
                    );
                    attrs.insert(
                        "daytwo.log.baseline".into(),
                        serde_json::Number::from_f64((baseline * 100.0).round() / 100.0)
                            .map(serde_json::Value::Number)
                            .unwrap_or(serde_json::Value::Null),
                    );
                    out.push(signal(
                        w,
                        ERROR_BURST_EVENT,
                        Severity::Warning,
                        t,
                        stable_id(&[ERROR_BURST_EVENT, &wl.key, &template.to_string(), &bucket.to_string()]),
                        format!(
                            "{} logged {count} errors like \"{}\" within {} s (baseline {:.1} per {} s).",
                            w.wl.entity.name,
                            cut(&text, 160),
                            cfg.burst_bucket_secs,
                            baseline,
                            cfg.burst_bucket_secs
                        ),
                        attrs,
                    ));
                }
            }
        }
        out
    }

    /// The files of workload `key` are all gone (pod deleted): its silence is expected.
    pub fn gone(&mut self, key: &str) {
        if let Some(w) = self.workloads.get_mut(key) {
            w.live = false;
        }
    }

    /// The earliest time (ns) at which [`Self::tick`] could decide a silence, if any workload
    /// is logging steadily enough to be watched: a source that has nothing else to do sleeps
    /// until then instead of ticking.
    pub fn next_due(&self) -> Option<i64> {
        self.workloads
            .values()
            .filter_map(|w| silence_deadline(&self.cfg, w).map(|(due, _, _)| due))
            .min()
    }

    /// Decides silences at time `now` (ns).
    pub fn tick(&mut self, now: i64) -> Vec<Signal> {
        let cfg = &self.cfg;
        let mut out = Vec::new();
        for (key, w) in &mut self.workloads {
            let Some((due, active, per_minute)) = silence_deadline(cfg, w) else {
                continue;
            };
            if now < due {
                continue;
            }
            let gap = now.saturating_sub(w.last_line);
            w.silent = true;
            let mut attrs = w.wl.attributes.clone();
            attrs.insert("daytwo.log.silent_secs".into(), (gap / NANOS).into());
            attrs.insert(
                "daytwo.log.lines_per_minute".into(),
                serde_json::Number::from_f64((per_minute * 10.0).round() / 10.0)
                    .map(serde_json::Value::Number)
                    .unwrap_or(serde_json::Value::Null),
            );
            attrs.insert(
                "daytwo.log.last_line_time".into(),
                Timestamp(w.last_line).to_string().into(),
            );
            let msg = format!(
                "{} stopped logging: nothing for {} s after {:.1} lines per minute for {} s.",
                w.wl.entity.name,
                gap / NANOS,
                per_minute,
                active / NANOS
            );
            out.push(signal(
                w,
                SILENCE_EVENT,
                Severity::Warning,
                now,
                stable_id(&[SILENCE_EVENT, key, &w.last_line.to_string()]),
                msg,
                attrs,
            ));
        }
        out
    }
}

/// When workload `w` counts as silent (ns), with its active span (ns) and lines per minute;
/// `None` while it is not watched (already silent, gone, or not logging steadily enough).
fn silence_deadline(cfg: &DetectConfig, w: &Workload) -> Option<(i64, i64, f64)> {
    if w.silent || !w.live || w.streak_lines < 2 {
        return None;
    }
    let active = w.last_line.saturating_sub(w.streak_start);
    if active < cfg.silence_min_active_secs as i64 * NANOS {
        return None;
    }
    let per_minute = w.streak_lines as f64 * 60.0 * NANOS as f64 / active.max(1) as f64;
    if per_minute < cfg.silence_min_lines_per_minute {
        return None;
    }
    let mean_gap = active as f64 / (w.streak_lines - 1) as f64;
    let after = (cfg.silence_factor * mean_gap).max(cfg.silence_min_secs as f64 * NANOS as f64);
    Some((
        w.last_line.saturating_add(after.ceil() as i64),
        active,
        per_minute,
    ))
}

fn threshold(cfg: &DetectConfig, baseline: f64) -> f64 {
    (cfg.burst_factor * baseline).max(cfg.burst_min_count as f64)
}

fn signal(
    w: &Workload,
    name: &str,
    severity: Severity,
    t: i64,
    id: String,
    message: String,
    attributes: Attributes,
) -> Signal {
    Signal {
        id,
        name: name.to_string(),
        time: Timestamp(t),
        severity,
        entity: w.wl.entity.clone(),
        resource: w.wl.resource.clone(),
        attributes,
        message,
        evidence: w
            .recent
            .iter()
            .map(|(t, s)| Evidence {
                time: Timestamp(*t),
                kind: "log".into(),
                text: s.clone(),
            })
            .collect(),
    }
}

/// `s` cut to at most `max` bytes at a char boundary.
pub fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Does a template look like an error? (Checked once per template.)
pub fn is_error_template(t: &str) -> bool {
    let lower = t.to_ascii_lowercase();
    [
        "error",
        "fatal",
        "panic",
        "exception",
        "failed",
        "failure",
        "traceback",
        "level=err",
        "critical",
    ]
    .iter()
    .any(|k| lower.contains(k))
        || t.starts_with('E') && t.as_bytes().get(1).is_some_and(u8::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::EntityKind;

    const S: i64 = NANOS;

    fn wl() -> WorkloadRef {
        WorkloadRef {
            key: "shop/web/nginx".into(),
            entity: Entity::new(EntityKind::Pod, "shop/web-1").with_attr("k8s.pod.uid", "u1"),
            resource: Attributes::new(),
            attributes: Attributes::new(),
        }
    }

    fn cfg() -> DetectConfig {
        DetectConfig {
            warmup_secs: 10,
            warmup_lines: 5,
            ..Default::default()
        }
    }

    fn feed(d: &mut LogDetector, t: i64, tpl: u64, err: bool) -> Vec<Signal> {
        d.line(
            &wl(),
            t,
            tpl,
            &|| format!("template {tpl}"),
            err,
            &format!("line {tpl} at {t}"),
        )
    }

    #[test]
    fn new_template_after_warmup_only_once_with_evidence() {
        let mut d = LogDetector::new(cfg());
        for i in 0..20 {
            assert!(
                feed(&mut d, i * S, (i % 3) as u64, false).is_empty(),
                "warm-up at {i}"
            );
        }
        // Template 99 first appeared during warm-up? No: it is new now.
        let s = feed(&mut d, 30 * S, 99, false);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, NEW_TEMPLATE_EVENT);
        assert_eq!(
            s[0].evidence.last().unwrap().text,
            format!("line 99 at {}", 30 * S)
        );
        assert_eq!(s[0].evidence.len(), 10);
        assert_eq!(s[0].attributes["daytwo.log.template"], "template 99");
        assert!(feed(&mut d, 31 * S, 99, false).is_empty());
        assert!(feed(&mut d, 32 * S, 1, false).is_empty());
    }

    #[test]
    fn new_templates_are_rate_limited() {
        let mut d = LogDetector::new(cfg());
        for i in 0..20 {
            feed(&mut d, i * S, 0, false);
        }
        let n: usize = (0..20)
            .map(|i| feed(&mut d, (30 + i) * S, 100 + i as u64, false).len())
            .sum();
        assert_eq!(n, 5);
        assert_eq!(d.stats.new_templates_suppressed, 15);
    }

    #[test]
    fn error_burst_against_baseline() {
        let mut d = LogDetector::new(cfg());
        // Baseline: 2 errors per 10 s bucket for 5 minutes.
        let mut t = 0;
        for _ in 0..30 {
            for k in 0..2 {
                assert!(
                    feed(&mut d, t + k * S, 7, true)
                        .iter()
                        .all(|s| s.name != ERROR_BURST_EVENT)
                );
            }
            t += 10 * S;
        }
        // Then 40 in one bucket: one burst signal.
        let mut bursts = Vec::new();
        for k in 0..40 {
            bursts.extend(
                feed(&mut d, t + k * S / 10, 7, true)
                    .into_iter()
                    .filter(|s| s.name == ERROR_BURST_EVENT),
            );
        }
        assert_eq!(bursts.len(), 1);
        assert_eq!(bursts[0].attributes["daytwo.log.count"], 20);
        assert_eq!(bursts[0].severity, Severity::Warning);
        // A non-error template never bursts.
        let mut d = LogDetector::new(cfg());
        let n: usize = (0..100)
            .map(|k| feed(&mut d, k * S / 100, 8, false).len())
            .sum();
        assert_eq!(n, 0);
    }

    #[test]
    fn silence_after_steady_logging_not_after_deletion() {
        let c = DetectConfig {
            silence_min_active_secs: 60,
            silence_min_secs: 30,
            ..cfg()
        };
        let mut d = LogDetector::new(c.clone());
        for i in 0..=120 {
            feed(&mut d, i * S, 1, false); // one line per second for two minutes
        }
        assert!(d.tick(125 * S).is_empty(), "a 5 s gap is not silence");
        let s = d.tick(151 * S);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].name, SILENCE_EVENT);
        assert_eq!(s[0].attributes["daytwo.log.silent_secs"], 31);
        assert!(d.tick(200 * S).is_empty(), "once per silence");
        // It logs again, steadily, then its pod is deleted: no silence.
        for i in 300..=400 {
            feed(&mut d, i * S, 1, false);
        }
        d.gone("shop/web/nginx");
        assert!(d.tick(1000 * S).is_empty());
        // Sparse logging is never "steady".
        let mut d = LogDetector::new(c);
        for i in 0..10 {
            feed(&mut d, i * 60 * S, 1, false);
        }
        assert!(d.tick(10_000 * S).is_empty());
    }

    #[test]
    fn next_due_is_exactly_when_tick_would_decide_the_silence() {
        let c = DetectConfig {
            silence_min_active_secs: 60,
            silence_min_secs: 30,
            ..cfg()
        };
        let mut d = LogDetector::new(c);
        assert_eq!(d.next_due(), None, "nothing watched yet");
        for i in 0..=120 {
            feed(&mut d, i * S, 1, false);
        }
        let due = d
            .next_due()
            .expect("a steadily logging workload is watched");
        assert_eq!(
            due,
            150 * S,
            "30 s (silence_min_secs) after the last line at 120 s"
        );
        assert!(d.tick(due - 1).is_empty(), "one nanosecond early");
        assert_eq!(d.tick(due).len(), 1);
        assert_eq!(d.next_due(), None, "a silent workload is not watched again");
        feed(&mut d, 400 * S, 1, false);
        assert_eq!(d.next_due(), None, "one line is not steady logging");
        d.gone("shop/web/nginx");
        assert_eq!(d.next_due(), None);
    }

    #[test]
    fn error_templates() {
        assert!(is_error_template("level=error msg=<*>"));
        assert!(is_error_template(
            "E1125 <*> reflector.go:<*> failed to list"
        ));
        assert!(is_error_template("java.lang.NullPointerException"));
        assert!(!is_error_template("GET /healthz 200"));
    }
}
