//! systemd unit failures and restart loops, decided from journald entries in event time.
//! Pure: no I/O, no clock (every time is an entry's `__REALTIME_TIMESTAMP`).
//!
//! Entry type: [`UnitDetector`]; feed every entry with [`UnitDetector::entry`] and it returns
//! the signals it decided:
//! * `daytwo.systemd.unit_failed` — the manager logged that a unit failed: MESSAGE_ID
//!   `d9b373ed55a64feb8242e02dbe79a49c` (`SD_MESSAGE_UNIT_FAILURE_RESULT`, "Failed with result
//!   'exit-code'.", field `UNIT_RESULT`), or, from systemd before v243 which logged that line
//!   without an id, the same sentence from PID 1; or MESSAGE_ID `be02cf6855d2428ba40df7e9d022f03d`
//!   (`SD_MESSAGE_UNIT_FAILED`: a start job failed, `JOB_RESULT` `failed` or `timeout`). At most
//!   one per unit per `restart_loop_window_secs` (a crash loop is one failure that repeats; the
//!   loop has its own signal).
//! * `daytwo.systemd.restart_loop` — `restart_loop_count` restarts scheduled by the manager
//!   (MESSAGE_ID `5eb03494b6584870a536b337290809b3`, `SD_MESSAGE_UNIT_RESTART_SCHEDULED`, field
//!   `N_RESTARTS`) within `restart_loop_window_secs`. Once per episode: the next one needs a
//!   window without restarts first.
//!
//! The exit of the unit's main process (MESSAGE_ID `98e322203f7a4ed290d09fe03c09fe15`,
//! `SD_MESSAGE_UNIT_PROCESS_EXIT`, fields `EXIT_CODE`, `EXIT_STATUS`; or the pre-v243 sentence
//! "Main process exited, code=…, status=…") is remembered and reported with the failure.
//! Ids are systemd's `sd-messages.h`.
//!
//! Invariants: only entries from the manager count (a process can write `MESSAGE_ID=` itself);
//! state is bounded ([`MAX_UNITS`] units, `evidence_lines` lines and at most
//! `restart_loop_count` restart times per unit); signal ids derive from host, unit and the
//! triggering entry's cursor (or time), so re-reading after a restart gives the same ids.

use super::entry::JournalEntry;
use crate::logs::redact::Redactor;
use daytwo_model::{
    Attributes, Entity, EntityKind, Evidence, Severity, Signal, Timestamp, stable_id,
};
use std::collections::{HashMap, VecDeque};

pub const UNIT_FAILED_EVENT: &str = "daytwo.systemd.unit_failed";
pub const RESTART_LOOP_EVENT: &str = "daytwo.systemd.restart_loop";

/// `SD_MESSAGE_UNIT_FAILURE_RESULT`: "Failed with result '…'." (systemd ≥ 243).
pub const MSG_UNIT_FAILURE_RESULT: &str = "d9b373ed55a64feb8242e02dbe79a49c";
/// `SD_MESSAGE_UNIT_FAILED`: a start job failed ("Failed to start …").
pub const MSG_UNIT_FAILED: &str = "be02cf6855d2428ba40df7e9d022f03d";
/// `SD_MESSAGE_UNIT_RESTART_SCHEDULED`: "Scheduled restart job, restart counter is at N."
pub const MSG_UNIT_RESTART_SCHEDULED: &str = "5eb03494b6584870a536b337290809b3";
/// `SD_MESSAGE_UNIT_PROCESS_EXIT`: "Main process exited, code=…, status=…".
pub const MSG_UNIT_PROCESS_EXIT: &str = "98e322203f7a4ed290d09fe03c09fe15";

/// Units tracked at once; the least recently seen is forgotten beyond it.
pub const MAX_UNITS: usize = 4096;
/// Evidence lines are cut to this many bytes.
const EVIDENCE_LINE_BYTES: usize = 1024;
const MICROS: i64 = 1_000;

/// Detector settings (`agent.journald.systemd` in the config file; docs/signals.md).
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnitDetectConfig {
    /// Restarts within the window that make a loop.
    pub restart_loop_count: u32,
    /// The window, in seconds of event time.
    pub restart_loop_window_secs: u64,
    /// Lines of the unit kept as evidence.
    pub evidence_lines: usize,
}

impl Default for UnitDetectConfig {
    fn default() -> Self {
        UnitDetectConfig {
            restart_loop_count: 3,
            restart_loop_window_secs: 300,
            evidence_lines: 10,
        }
    }
}

impl UnitDetectConfig {
    pub fn validate(&self) -> Result<(), String> {
        if self.restart_loop_count < 2 {
            return Err("restart_loop_count must be at least 2".into());
        }
        if self.restart_loop_window_secs == 0 {
            return Err("restart_loop_window_secs must be at least 1".into());
        }
        Ok(())
    }
}

#[derive(Debug, Default)]
struct UnitState {
    lines: VecDeque<(i64, String)>,
    restarts: VecDeque<i64>,
    looping: bool,
    last_failed: Option<i64>,
    /// (EXIT_CODE, EXIT_STATUS) of the main process's last exit.
    last_exit: Option<(String, String)>,
    n_restarts: Option<u64>,
    last_seen: i64,
}

/// What a signal says, before its id, entity and evidence are added.
struct Draft {
    name: &'static str,
    severity: Severity,
    attributes: Attributes,
    message: String,
}

/// See the module docs.
pub struct UnitDetector {
    cfg: UnitDetectConfig,
    host: String,
    redactor: Redactor,
    units: HashMap<String, UnitState>,
}

/// `unit: Failed with result 'exit-code'.` → `exit-code` (systemd before v243 had no id).
fn failure_result_sentence<'a>(unit: &str, msg: &'a str) -> Option<&'a str> {
    let rest = msg
        .strip_prefix(unit)?
        .strip_prefix(": Failed with result '")?;
    rest.strip_suffix("'.")
}

/// `unit: Main process exited, code=exited, status=127/n/a` → (`exited`, `127`).
fn exit_sentence(unit: &str, msg: &str) -> Option<(String, String)> {
    let rest = msg
        .strip_prefix(unit)?
        .strip_prefix(": Main process exited, code=")?;
    let (code, status) = rest.split_once(", status=")?;
    let status = status.split('/').next()?;
    Some((code.to_string(), status.to_string()))
}

fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

impl UnitDetector {
    pub fn new(cfg: UnitDetectConfig, host: String, redactor: Redactor) -> Self {
        UnitDetector {
            cfg,
            host,
            redactor,
            units: HashMap::new(),
        }
    }

    /// Units with state.
    pub fn tracked(&self) -> usize {
        self.units.len()
    }

    /// The entity of a unit's signals.
    pub fn entity(&self, unit: &str) -> Entity {
        Entity::new(EntityKind::Unit, unit)
            .with_attr("systemd.unit", unit)
            .with_attr("host.name", self.host.as_str())
    }

    /// Feeds one entry at event time `time_ns`; returns the signals it completes.
    pub fn entry(&mut self, e: &JournalEntry, time_ns: i64) -> Vec<Signal> {
        let Some(unit) = e.unit() else {
            return Vec::new();
        };
        if !self.units.contains_key(unit) && self.units.len() >= MAX_UNITS {
            // Forget the unit seen longest ago.
            if let Some(old) = self
                .units
                .iter()
                .min_by_key(|(_, s)| s.last_seen)
                .map(|(k, _)| k.clone())
            {
                self.units.remove(&old);
            }
        }
        let cfg = self.cfg.clone();
        let st = self.units.entry(unit.to_string()).or_default();
        st.last_seen = st.last_seen.max(time_ns);
        let msg = e.message_text();
        let who = match (&e.identifier, e.pid) {
            (Some(i), Some(p)) => format!("{i}[{p}]: "),
            (Some(i), None) => format!("{i}: "),
            (None, Some(p)) => format!("[{p}]: "),
            (None, None) => String::new(),
        };
        if cfg.evidence_lines > 0 {
            if st.lines.len() >= cfg.evidence_lines {
                st.lines.pop_front();
            }
            st.lines
                .push_back((time_ns, format!("{who}{}", cut(&msg, EVIDENCE_LINE_BYTES))));
        }
        if !e.from_manager() {
            return Vec::new();
        }
        let window = cfg.restart_loop_window_secs as i64 * 1_000_000_000;
        let id = e.message_id.as_deref();
        let mut out = Vec::new();
        if id == Some(MSG_UNIT_PROCESS_EXIT) {
            if let (Some(c), Some(s)) = (&e.exit_code, &e.exit_status) {
                st.last_exit = Some((c.clone(), s.clone()));
            }
        } else if id.is_none()
            && let Some(x) = exit_sentence(unit, &msg)
        {
            st.last_exit = Some(x);
        }
        let failed: Option<String> = match id {
            Some(MSG_UNIT_FAILURE_RESULT) => {
                Some(e.unit_result.clone().unwrap_or_else(|| "unknown".into()))
            }
            Some(MSG_UNIT_FAILED) => match e.job_result.as_deref() {
                Some(r @ ("failed" | "timeout")) => Some(format!("job-{r}")),
                _ => None,
            },
            None => failure_result_sentence(unit, &msg).map(str::to_string),
            _ => None,
        };
        if let Some(result) = failed
            && st
                .last_failed
                .is_none_or(|t| time_ns - t >= window || time_ns < t)
        {
            st.last_failed = Some(time_ns);
            let st = &self.units[unit];
            out.push(self.failed_signal(unit, st, e, time_ns, &result));
        }
        let st = self.units.get_mut(unit).expect("inserted above");
        if id == Some(MSG_UNIT_RESTART_SCHEDULED) {
            if let Some(n) = e.n_restarts {
                st.n_restarts = Some(n);
            }
            while st.restarts.front().is_some_and(|&t| time_ns - t >= window) {
                st.restarts.pop_front();
            }
            if st.restarts.is_empty() {
                // A window without restarts ended the previous episode.
                st.looping = false;
            }
            st.restarts.push_back(time_ns);
            while st.restarts.len() > cfg.restart_loop_count as usize {
                st.restarts.pop_front();
            }
            if !st.looping && st.restarts.len() >= cfg.restart_loop_count as usize {
                st.looping = true;
                let st = &self.units[unit];
                out.push(self.loop_signal(unit, st, e, time_ns));
            }
        }
        out
    }

    fn evidence(&self, st: &UnitState) -> Vec<Evidence> {
        st.lines
            .iter()
            .map(|(t, l)| Evidence {
                time: Timestamp(*t),
                kind: "log".into(),
                text: String::from_utf8_lossy(&self.redactor.redact(l.as_bytes(), |_| {}))
                    .into_owned(),
            })
            .collect()
    }

    fn base(&self, unit: &str, st: &UnitState, e: &JournalEntry) -> Attributes {
        let mut a = Attributes::new();
        a.insert("systemd.unit".into(), unit.into());
        if let Some((c, s)) = &st.last_exit {
            a.insert("daytwo.systemd.exit_code".into(), c.clone().into());
            a.insert("daytwo.systemd.exit_status".into(), s.clone().into());
        }
        if let Some(n) = st.n_restarts {
            a.insert("daytwo.systemd.restarts".into(), n.into());
        }
        if let Some(i) = &e.invocation_id {
            a.insert("daytwo.systemd.invocation_id".into(), i.clone().into());
        }
        if let Some(b) = &e.boot_id {
            a.insert("daytwo.systemd.boot_id".into(), b.clone().into());
        }
        a
    }

    fn signal(
        &self,
        d: Draft,
        unit: &str,
        e: &JournalEntry,
        time_ns: i64,
        st: &UnitState,
    ) -> Signal {
        let Draft {
            name,
            severity,
            attributes,
            message,
        } = d;
        let key = e.cursor.clone().unwrap_or_else(|| time_ns.to_string());
        let mut resource = Attributes::new();
        resource.insert("host.name".into(), self.host.clone().into());
        Signal {
            id: stable_id(&["journald", &self.host, name, unit, &key]),
            name: name.into(),
            time: Timestamp(time_ns),
            severity,
            entity: self.entity(unit),
            resource,
            attributes,
            message,
            evidence: self.evidence(st),
        }
    }

    fn exit_words(st: &UnitState) -> String {
        match &st.last_exit {
            Some((c, s)) if c == "exited" => format!(", main process exited with status {s}"),
            Some((c, s)) => format!(", main process {c} by signal {s}"),
            None => String::new(),
        }
    }

    fn failed_signal(
        &self,
        unit: &str,
        st: &UnitState,
        e: &JournalEntry,
        time_ns: i64,
        result: &str,
    ) -> Signal {
        let mut a = self.base(unit, st, e);
        a.insert("daytwo.systemd.result".into(), result.into());
        let message = format!(
            "systemd unit {unit} on {} failed (result {result}{}).",
            self.host,
            Self::exit_words(st)
        );
        let d = Draft {
            name: UNIT_FAILED_EVENT,
            severity: Severity::Warning,
            attributes: a,
            message,
        };
        self.signal(d, unit, e, time_ns, st)
    }

    fn loop_signal(&self, unit: &str, st: &UnitState, e: &JournalEntry, time_ns: i64) -> Signal {
        let mut a = self.base(unit, st, e);
        let n = st.restarts.len() as u64;
        let span_ns = st.restarts.back().copied().unwrap_or(time_ns)
            - st.restarts.front().copied().unwrap_or(time_ns);
        a.insert("daytwo.systemd.restarts_in_window".into(), n.into());
        a.insert(
            "daytwo.systemd.window_secs".into(),
            self.cfg.restart_loop_window_secs.into(),
        );
        a.insert(
            "daytwo.systemd.loop_secs".into(),
            ((span_ns / MICROS) as f64 / 1e6).into(),
        );
        let counter = st
            .n_restarts
            .map(|c| format!("; restart counter at {c}"))
            .unwrap_or_default();
        let message = format!(
            "systemd unit {unit} on {} is in a restart loop: {n} restarts in {:.0} s{}{counter}.",
            self.host,
            span_ns as f64 / 1e9,
            Self::exit_words(st)
        );
        let d = Draft {
            name: RESTART_LOOP_EVENT,
            severity: Severity::Critical,
            attributes: a,
            message,
        };
        self.signal(d, unit, e, time_ns, st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journald::entry::parse_line;
    use proptest::prelude::*;

    const S: i64 = 1_000_000_000;

    fn det(count: u32, window: u64) -> UnitDetector {
        UnitDetector::new(
            UnitDetectConfig {
                restart_loop_count: count,
                restart_loop_window_secs: window,
                evidence_lines: 4,
            },
            "node-1".into(),
            Redactor::new(&[]).unwrap(),
        )
    }

    fn manager(unit: &str, id: Option<&str>, msg: &str, extra: &str) -> JournalEntry {
        let id = id
            .map(|i| format!(r#","MESSAGE_ID":"{i}""#))
            .unwrap_or_default();
        parse_line(
            format!(
                r#"{{"_PID":"1","_SYSTEMD_UNIT":"init.scope","SYSLOG_IDENTIFIER":"systemd","UNIT":"{unit}","MESSAGE":"{msg}"{id}{extra}}}"#
            )
            .as_bytes(),
        )
        .unwrap()
    }

    fn app(unit: &str, msg: &str) -> JournalEntry {
        parse_line(
            format!(r#"{{"_PID":"77","_SYSTEMD_UNIT":"{unit}","SYSLOG_IDENTIFIER":"app","MESSAGE":"{msg}"}}"#)
                .as_bytes(),
        )
        .unwrap()
    }

    fn restart(unit: &str, n: u64) -> JournalEntry {
        manager(
            unit,
            Some(MSG_UNIT_RESTART_SCHEDULED),
            &format!("{unit}: Scheduled restart job, restart counter is at {n}."),
            &format!(r#","N_RESTARTS":"{n}""#),
        )
    }

    fn failure(unit: &str) -> JournalEntry {
        manager(
            unit,
            Some(MSG_UNIT_FAILURE_RESULT),
            &format!("{unit}: Failed with result 'exit-code'."),
            r#","UNIT_RESULT":"exit-code""#,
        )
    }

    #[test]
    fn a_failure_names_the_unit_result_exit_and_last_lines() {
        let mut d = det(3, 300);
        assert!(
            d.entry(&app("web.service", "listening on :80"), S)
                .is_empty()
        );
        assert!(
            d.entry(&app("web.service", "password=hunter2 rejected"), 2 * S)
                .is_empty()
        );
        let exit = manager(
            "web.service",
            Some(MSG_UNIT_PROCESS_EXIT),
            "web.service: Main process exited, code=exited, status=1/FAILURE",
            r#","EXIT_CODE":"exited","EXIT_STATUS":"1""#,
        );
        assert!(d.entry(&exit, 3 * S).is_empty());
        let out = d.entry(&failure("web.service"), 3 * S);
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.name, UNIT_FAILED_EVENT);
        assert_eq!(s.entity.kind, EntityKind::Unit);
        assert_eq!(s.entity.name, "web.service");
        assert_eq!(s.attributes["daytwo.systemd.result"], "exit-code");
        assert_eq!(s.attributes["daytwo.systemd.exit_status"], "1");
        assert_eq!(
            s.message,
            "systemd unit web.service on node-1 failed (result exit-code, main process exited with status 1)."
        );
        let ev: Vec<&str> = s.evidence.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(ev.len(), 4);
        assert_eq!(ev[0], "app[77]: listening on :80");
        assert!(
            ev[1].contains("[REDACTED]") && !ev[1].contains("hunter2"),
            "{ev:?}"
        );
        assert!(ev[3].ends_with("Failed with result 'exit-code'."));
    }

    #[test]
    fn systemd_239_sentences_without_ids_count() {
        let mut d = det(3, 300);
        d.entry(
            &manager(
                "bootkube.service",
                None,
                "bootkube.service: Main process exited, code=exited, status=127/n/a",
                "",
            ),
            S,
        );
        let out = d.entry(
            &manager(
                "bootkube.service",
                None,
                "bootkube.service: Failed with result 'exit-code'.",
                "",
            ),
            S,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].attributes["daytwo.systemd.exit_status"], "127");
    }

    #[test]
    fn forged_ids_from_a_unit_process_do_not_count() {
        let mut d = det(2, 300);
        let forged = parse_line(
            br#"{"_PID":"4242","_SYSTEMD_UNIT":"evil.service","UNIT":"sshd.service","MESSAGE_ID":"d9b373ed55a64feb8242e02dbe79a49c","UNIT_RESULT":"exit-code"}"#,
        )
        .unwrap();
        assert!(d.entry(&forged, S).is_empty());
        assert!(d.entry(&forged, 2 * S).is_empty());
    }

    #[test]
    fn a_loop_fires_once_per_episode_and_failures_once_per_window() {
        let mut d = det(3, 60);
        let mut events = Vec::new();
        for i in 0..6 {
            let t = i * 10 * S;
            events.extend(d.entry(&failure("db.service"), t));
            events.extend(d.entry(&restart("db.service", 10 + i as u64), t + S));
        }
        let names: Vec<&str> = events.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, [UNIT_FAILED_EVENT, RESTART_LOOP_EVENT]);
        let l = &events[1];
        assert_eq!(l.severity, Severity::Critical);
        assert_eq!(l.attributes["daytwo.systemd.restarts"], 12);
        assert_eq!(l.attributes["daytwo.systemd.restarts_in_window"], 3);
        // Quiet for a whole window: a new episode is a new signal.
        let t = 200 * S;
        let again: Vec<Signal> = (0..3)
            .flat_map(|i| d.entry(&restart("db.service", 20 + i), t + i as i64 * S))
            .collect();
        assert_eq!(again.len(), 1);
        assert_ne!(again[0].id, l.id);
    }

    #[test]
    fn restarts_spread_wider_than_the_window_are_no_loop() {
        let mut d = det(3, 60);
        let out: Vec<Signal> = (0..10)
            .flat_map(|i| d.entry(&restart("cron.service", i), i as i64 * 31 * S))
            .collect();
        assert!(out.is_empty(), "{out:?}");
    }

    #[test]
    fn ids_are_stable_across_a_reread() {
        let line = br#"{"__CURSOR":"s=a;i=1","_PID":"1","UNIT":"x.service","MESSAGE_ID":"d9b373ed55a64feb8242e02dbe79a49c","UNIT_RESULT":"signal","MESSAGE":"x"}"#;
        let e = parse_line(line).unwrap();
        let a = det(3, 60).entry(&e, S);
        let b = det(3, 60).entry(&e, S);
        assert_eq!(a[0].id, b[0].id);
        assert_eq!(a[0].attributes["daytwo.systemd.result"], "signal");
    }

    #[test]
    fn units_are_bounded() {
        let mut d = det(3, 60);
        for i in 0..(MAX_UNITS + 10) {
            d.entry(&app(&format!("u{i}.service"), "x"), i as i64);
        }
        assert_eq!(d.tracked(), MAX_UNITS);
    }

    proptest! {
        /// Fires iff some `count` consecutive restarts fit in the window; at most once while
        /// they keep coming closer than a window apart.
        #[test]
        fn loop_iff_count_restarts_within_window(gaps in proptest::collection::vec(1i64..120, 1..20)) {
            let (count, window) = (3usize, 60i64);
            let mut d = det(count as u32, window as u64);
            let mut t = 0;
            let mut times = Vec::new();
            let mut fired = 0;
            for g in &gaps {
                t += g * S;
                times.push(t);
                fired += d.entry(&restart("p.service", 1), t).len();
            }
            let any_loop = times.windows(count).any(|w| w[count - 1] - w[0] < window * S);
            prop_assert_eq!(fired > 0, any_loop);
            let all_close = gaps.iter().skip(1).all(|g| *g < window);
            if all_close {
                prop_assert!(fired <= 1);
            }
        }
    }
}
