//! Routing and silencing: which receivers an incident's trigger goes to. Pure: the incident and
//! a clock value in, receiver names out; no I/O.
//!
//! Entry point: [`Policy::select`]. An incident is described by [`Labels`]: its severity, its top
//! root cause's rule, and the attributes of that root cause's entity (`k8s.cluster.name`,
//! `k8s.namespace.name`, `host.name`, …). A [`Matcher`] matches when every field it sets equals
//! the incident's; an empty matcher matches every incident.
//!
//! * Routes are tried in order; the first that matches decides, unless it says `continue: true`,
//!   in which case later routes are tried as well and receivers add up. No routes at all means
//!   every receiver; routes that all miss mean nobody (see docs/notify.md, "Routes").
//! * A silence or maintenance window that matches at the time of the trigger stops the trigger
//!   for every receiver. Follow-ups (acknowledge, resolve) are not routed here: they go to exactly
//!   the receivers the trigger went to (the outbox remembers them), so a silence never swallows
//!   the resolve of a page that went out, and a silenced page never gets a lone resolve.

use std::collections::BTreeMap;

use daytwo_model::{Incident, Timestamp};
use serde::{Deserialize, Serialize};

use super::Receiver;

/// What an incident is matched on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    /// `critical`, `warning` or `info`.
    pub severity: String,
    /// The rule of the top root cause (`daytwo.oom`, `daytwo.generic`, …); empty if none.
    pub rule: String,
    /// The top root cause's entity attributes, values as text.
    pub attributes: BTreeMap<String, String>,
}

impl Labels {
    /// The labels of `incident`.
    pub fn of(incident: &Incident) -> Labels {
        let top = incident.top();
        let attributes = top
            .map(|h| {
                h.entity
                    .attributes
                    .iter()
                    .map(|(k, v)| {
                        let v = match v {
                            serde_json::Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        (k.clone(), v)
                    })
                    .collect()
            })
            .unwrap_or_default();
        Labels {
            severity: incident.severity.as_str().to_string(),
            rule: top.map(|h| h.rule.clone()).unwrap_or_default(),
            attributes,
        }
    }
}

/// Which incidents a route, silence or maintenance window applies to. Every field that is set
/// must equal the incident's; unset fields match anything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Matcher {
    /// The incident's severity: `critical`, `warning` or `info`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    /// The root cause's `k8s.cluster.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// The root cause's `k8s.namespace.name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The top root cause's rule id, e.g. `daytwo.oom`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// Root-cause entity attributes that must all be equal, e.g. `{host.name: db-1}`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Labels {
    /// The value of a grouping label: `severity`, `rule`, `cluster` (`k8s.cluster.name`),
    /// `namespace` (`k8s.namespace.name`) or a root-cause attribute; empty when absent.
    pub fn value(&self, name: &str) -> String {
        let attr = |k: &str| self.attributes.get(k).cloned().unwrap_or_default();
        match name {
            "severity" => self.severity.clone(),
            "rule" => self.rule.clone(),
            "cluster" => attr("k8s.cluster.name"),
            "namespace" => attr("k8s.namespace.name"),
            other => attr(other),
        }
    }
}

impl Matcher {
    /// True when every field that is set equals the incident's.
    pub fn matches(&self, l: &Labels) -> bool {
        let attr = |k: &str| l.attributes.get(k).map(String::as_str);
        self.severity.as_deref().is_none_or(|s| s == l.severity)
            && self.rule.as_deref().is_none_or(|r| r == l.rule)
            && self
                .cluster
                .as_deref()
                .is_none_or(|c| attr("k8s.cluster.name") == Some(c))
            && self
                .namespace
                .as_deref()
                .is_none_or(|n| attr("k8s.namespace.name") == Some(n))
            && self.labels.iter().all(|(k, v)| attr(k) == Some(v.as_str()))
    }

    pub(crate) fn validate(&self, at: &str) -> Result<(), String> {
        if let Some(s) = &self.severity
            && !matches!(s.as_str(), "critical" | "warning" | "info")
        {
            return Err(format!(
                "{at}.match.severity: {s:?} is not critical, warning or info"
            ));
        }
        Ok(())
    }
}

/// One routing rule (`collector.routes[]`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Route {
    /// Which incidents this route takes; empty matches all.
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// Receiver names the incident goes to.
    pub receivers: Vec<String>,
    /// Keep trying later routes after this one matched (default false: first match wins).
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Group triggers for chatty receivers (kinds `webhook` and `slack`) by these labels:
    /// `severity`, `cluster`, `namespace`, `rule` or any root-cause entity attribute
    /// (`host.name`, …). Incidents of one group that open together go out as one message.
    /// Empty (default): no grouping, one message per incident. PagerDuty and Opsgenie are never
    /// grouped: they get one alert per incident, keyed by the incident id.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub group_by: Vec<String>,
    /// How long a new group waits for more incidents before its first message (default 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_wait_secs: Option<u64>,
    /// How long after a group's message the next one (with the incidents that joined since)
    /// may go out (default 300 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_interval_secs: Option<u64>,
    /// Send the trigger again every this many seconds while the incident is still open and
    /// unacknowledged (default: never).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repeat_interval_secs: Option<u64>,
}

/// Default `group_wait_secs` of a grouping route.
pub const DEFAULT_GROUP_WAIT_SECS: u64 = 30;
/// Default `group_interval_secs` of a grouping route.
pub const DEFAULT_GROUP_INTERVAL_SECS: u64 = 300;

impl Route {
    /// A route that sends every matching incident to `receivers`, nothing else set.
    pub fn to(matcher: Matcher, receivers: &[&str]) -> Route {
        Route {
            matcher,
            receivers: receivers.iter().map(|s| s.to_string()).collect(),
            continue_matching: false,
            group_by: Vec::new(),
            group_wait_secs: None,
            group_interval_secs: None,
            repeat_interval_secs: None,
        }
    }
}

/// How one receiver gets an incident's trigger, from the first route that sent it there.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// The receiver's name.
    pub receiver: String,
    /// Index of the route in `collector.routes` (`None` without routes).
    pub route: Option<usize>,
    /// Grouping labels and their values for this incident; empty: not grouped.
    pub group: Vec<(String, String)>,
    /// Seconds a new group waits.
    pub group_wait_secs: u64,
    /// Seconds between two messages of one group.
    pub group_interval_secs: u64,
    /// Seconds between repeats of an open, unacknowledged incident; `None`: no repeats.
    pub repeat_interval_secs: Option<u64>,
}

/// A one-off silence (`collector.silences[]`): matching triggers between `starts_at` and
/// `ends_at` are not sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Silence {
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// RFC 3339; the silence holds from here (inclusive)…
    pub starts_at: Timestamp,
    /// …to here (exclusive).
    pub ends_at: Timestamp,
    /// Why, and who: shown in the log line of every trigger it holds back.
    pub comment: String,
}

/// A recurring maintenance window (`collector.maintenance_windows[]`), in UTC: matching triggers
/// that fall into it are not sent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceWindow {
    #[serde(default, rename = "match")]
    pub matcher: Matcher,
    /// Days the window starts on (`mon` … `sun`); empty means every day.
    #[serde(default)]
    pub days: Vec<String>,
    /// `HH:MM` UTC, inclusive.
    pub start: String,
    /// `HH:MM` UTC, exclusive; earlier than `start` means the window runs past midnight.
    pub end: String,
    pub comment: String,
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn minute_of_day(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

impl MaintenanceWindow {
    /// True when `now` falls into one of this window's occurrences.
    pub fn is_active(&self, now: Timestamp) -> bool {
        let (Some(start), Some(end)) = (minute_of_day(&self.start), minute_of_day(&self.end))
        else {
            return false;
        };
        let secs = now.unix_nanos().div_euclid(1_000_000_000);
        let day = secs.div_euclid(86_400);
        let minute = (secs.rem_euclid(86_400) / 60) as u32;
        // 1970-01-01 was a Thursday: index 3 with Monday = 0.
        let weekday = |d: i64| DAYS[(d + 3).rem_euclid(7) as usize];
        let starts_on = |d: i64| self.days.is_empty() || self.days.iter().any(|x| x == weekday(d));
        if start <= end {
            starts_on(day) && (start..end).contains(&minute)
        } else {
            // Past midnight: the late part belongs to today's occurrence, the early part to
            // yesterday's.
            (minute >= start && starts_on(day)) || (minute < end && starts_on(day - 1))
        }
    }

    fn validate(&self, at: &str) -> Result<(), String> {
        self.matcher.validate(at)?;
        for (field, v) in [("start", &self.start), ("end", &self.end)] {
            if minute_of_day(v).is_none() {
                return Err(format!("{at}.{field}: {v:?} is not a HH:MM time (UTC)"));
            }
        }
        if self.start == self.end {
            return Err(format!(
                "{at}: start and end are both {:?}; the window would be empty",
                self.start
            ));
        }
        for d in &self.days {
            if !DAYS.contains(&d.as_str()) {
                return Err(format!(
                    "{at}.days: {d:?} is not one of mon, tue, wed, thu, fri, sat, sun"
                ));
            }
        }
        Ok(())
    }
}

/// Routes, silences and maintenance windows: everything that decides who gets a trigger.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub routes: Vec<Route>,
    #[serde(default)]
    pub silences: Vec<Silence>,
    #[serde(default)]
    pub maintenance_windows: Vec<MaintenanceWindow>,
}

/// Who a trigger goes to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Selection {
    /// Receiver names, in configuration order, each once.
    pub receivers: Vec<String>,
    /// The comment of the silence or maintenance window that held the trigger back; then
    /// `receivers` is empty.
    pub silenced_by: Option<String>,
    /// Routes exist and none matched.
    pub unrouted: bool,
}

impl Policy {
    /// The receivers `incident` is routed to, ignoring silences.
    pub fn route(&self, receivers: &[Receiver], labels: &Labels) -> (Vec<String>, bool) {
        if self.routes.is_empty() {
            return (receivers.iter().map(|r| r.name.clone()).collect(), false);
        }
        let mut wanted: Vec<&str> = Vec::new();
        let mut matched = false;
        for route in &self.routes {
            if !route.matcher.matches(labels) {
                continue;
            }
            matched = true;
            wanted.extend(route.receivers.iter().map(String::as_str));
            if !route.continue_matching {
                break;
            }
        }
        let names = receivers
            .iter()
            .filter(|r| wanted.contains(&r.name.as_str()))
            .map(|r| r.name.clone())
            .collect();
        (names, !matched)
    }

    /// Per receiver the incident is routed to: how it gets the trigger (grouping, repeats),
    /// from the first matching route that names it.
    pub fn plans(&self, receivers: &[Receiver], labels: &Labels) -> Vec<Plan> {
        let (names, _) = self.route(receivers, labels);
        names
            .into_iter()
            .map(|name| {
                let found = self
                    .routes
                    .iter()
                    .enumerate()
                    .find(|(_, r)| r.matcher.matches(labels) && r.receivers.contains(&name));
                match found {
                    Some((i, r)) => Plan {
                        receiver: name,
                        route: Some(i),
                        group: r
                            .group_by
                            .iter()
                            .map(|l| (l.clone(), labels.value(l)))
                            .collect(),
                        group_wait_secs: r.group_wait_secs.unwrap_or(DEFAULT_GROUP_WAIT_SECS),
                        group_interval_secs: r
                            .group_interval_secs
                            .unwrap_or(DEFAULT_GROUP_INTERVAL_SECS),
                        repeat_interval_secs: r.repeat_interval_secs.filter(|s| *s > 0),
                    },
                    None => Plan {
                        receiver: name,
                        ..Plan::default()
                    },
                }
            })
            .collect()
    }

    /// The silence or maintenance window holding back a trigger for `labels` at `now`.
    pub fn silenced_by(&self, labels: &Labels, now: Timestamp) -> Option<&str> {
        self.silences
            .iter()
            .find(|s| s.starts_at <= now && now < s.ends_at && s.matcher.matches(labels))
            .map(|s| s.comment.as_str())
            .or_else(|| {
                self.maintenance_windows
                    .iter()
                    .find(|w| w.matcher.matches(labels) && w.is_active(now))
                    .map(|w| w.comment.as_str())
            })
    }

    /// Who the trigger of `incident` goes to at `now`.
    pub fn select(&self, receivers: &[Receiver], incident: &Incident, now: Timestamp) -> Selection {
        let labels = Labels::of(incident);
        let (routed, unrouted) = self.route(receivers, &labels);
        match self.silenced_by(&labels, now) {
            Some(comment) => Selection {
                receivers: Vec::new(),
                silenced_by: Some(comment.to_string()),
                unrouted,
            },
            None => Selection {
                receivers: routed,
                silenced_by: None,
                unrouted,
            },
        }
    }

    /// Checks names and values, naming the config field at fault.
    pub fn validate(&self, receivers: &[Receiver]) -> Result<(), String> {
        for (i, route) in self.routes.iter().enumerate() {
            let at = format!("collector.routes[{i}]");
            route.matcher.validate(&at)?;
            if route.receivers.is_empty() {
                return Err(format!("{at}.receivers: name at least one receiver"));
            }
            if route.group_interval_secs == Some(0) {
                return Err(format!(
                    "{at}.group_interval_secs: must be at least 1 second"
                ));
            }
            if route.group_by.is_empty()
                && (route.group_wait_secs.is_some() || route.group_interval_secs.is_some())
            {
                return Err(format!(
                    "{at}.group_by: group_wait_secs and group_interval_secs need group_by (the labels to group on, e.g. [cluster, namespace])"
                ));
            }
            for name in &route.receivers {
                if !receivers.iter().any(|r| &r.name == name) {
                    return Err(format!(
                        "{at}.receivers: no receiver is named {name:?} (configured: {})",
                        receivers
                            .iter()
                            .map(|r| r.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
            }
        }
        for (i, s) in self.silences.iter().enumerate() {
            let at = format!("collector.silences[{i}]");
            s.matcher.validate(&at)?;
            if s.ends_at <= s.starts_at {
                return Err(format!(
                    "{at}: ends_at ({}) is not after starts_at ({})",
                    s.ends_at, s.starts_at
                ));
            }
        }
        for (i, w) in self.maintenance_windows.iter().enumerate() {
            w.validate(&format!("collector.maintenance_windows[{i}]"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daytwo_model::{Entity, EntityKind, Hypothesis, IncidentStatus, Severity};

    fn incident(severity: Severity, rule: &str, attrs: &[(&str, &str)]) -> Incident {
        let mut e = Entity::new(EntityKind::Pod, "shop/cart-1");
        for (k, v) in attrs {
            e = e.with_attr(k, *v);
        }
        let at = Timestamp::from_unix_secs(1_795_617_015);
        Incident {
            id: "i1".into(),
            fingerprint: "fp".into(),
            status: IncidentStatus::Open,
            severity,
            opened_at: at,
            updated_at: at,
            resolved_at: None,
            title: "t".into(),
            root_causes: vec![Hypothesis {
                entity: e,
                score: 0.9,
                rule: rule.into(),
                explanation: String::new(),
                remediation: String::new(),
                evidence: vec![],
            }],
            signals: vec![],
            links: vec![],
        }
    }

    fn receivers(names: &[&str]) -> Vec<Receiver> {
        names
            .iter()
            .map(|n| Receiver::webhook(*n, "http://127.0.0.1/x", None))
            .collect()
    }

    fn route(m: Matcher, to: &[&str], cont: bool) -> Route {
        Route {
            continue_matching: cont,
            ..Route::to(m, to)
        }
    }

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    #[test]
    fn labels_come_from_the_top_root_cause_and_the_incident() {
        let i = incident(
            Severity::Warning,
            "daytwo.oom",
            &[("k8s.namespace.name", "shop"), ("k8s.cluster.name", "eu-1")],
        );
        let l = Labels::of(&i);
        assert_eq!(l.severity, "warning");
        assert_eq!(l.rule, "daytwo.oom");
        assert_eq!(l.attributes["k8s.namespace.name"], "shop");
        let m = Matcher {
            cluster: Some("eu-1".into()),
            namespace: Some("shop".into()),
            severity: Some("warning".into()),
            rule: Some("daytwo.oom".into()),
            labels: [("k8s.cluster.name".to_string(), "eu-1".to_string())].into(),
        };
        assert!(m.matches(&l));
        assert!(Matcher::default().matches(&l));
        for wrong in [
            Matcher {
                cluster: Some("us-1".into()),
                ..Default::default()
            },
            Matcher {
                severity: Some("critical".into()),
                ..Default::default()
            },
            Matcher {
                labels: [("host.name".to_string(), "db-1".to_string())].into(),
                ..Default::default()
            },
        ] {
            assert!(!wrong.matches(&l), "{wrong:?}");
        }
    }

    #[test]
    fn first_matching_route_wins_unless_it_continues() {
        let rs = receivers(&["pd", "slack", "mail"]);
        let crit = Matcher {
            severity: Some("critical".into()),
            ..Default::default()
        };
        let shop = Matcher {
            namespace: Some("shop".into()),
            ..Default::default()
        };
        let i = incident(Severity::Critical, "r", &[("k8s.namespace.name", "shop")]);
        let now = i.opened_at;
        let p = Policy {
            routes: vec![
                route(crit.clone(), &["pd"], false),
                route(shop.clone(), &["slack"], false),
            ],
            ..Default::default()
        };
        assert_eq!(p.select(&rs, &i, now).receivers, ["pd"]);
        let p = Policy {
            routes: vec![route(crit, &["pd"], true), route(shop, &["slack"], false)],
            ..Default::default()
        };
        assert_eq!(p.select(&rs, &i, now).receivers, ["pd", "slack"]);
        let miss = incident(Severity::Info, "r", &[]);
        let s = p.select(&rs, &miss, now);
        assert!(s.receivers.is_empty() && s.unrouted);
        let none = Policy::default().select(&rs, &miss, now);
        assert_eq!(none.receivers, ["pd", "slack", "mail"]);
        assert!(!none.unrouted);
    }

    #[test]
    fn a_silence_holds_back_matching_triggers_only_while_it_lasts() {
        let rs = receivers(&["pd"]);
        let i = incident(Severity::Critical, "r", &[("k8s.namespace.name", "shop")]);
        let p = Policy {
            silences: vec![Silence {
                matcher: Matcher {
                    namespace: Some("shop".into()),
                    ..Default::default()
                },
                starts_at: ts("2026-01-01T10:00:00Z"),
                ends_at: ts("2026-01-01T12:00:00Z"),
                comment: "upgrade".into(),
            }],
            ..Default::default()
        };
        let during = p.select(&rs, &i, ts("2026-01-01T10:00:00Z"));
        assert_eq!(during.silenced_by.as_deref(), Some("upgrade"));
        assert!(during.receivers.is_empty());
        assert_eq!(
            p.select(&rs, &i, ts("2026-01-01T12:00:00Z")).receivers,
            ["pd"]
        );
        assert_eq!(
            p.select(&rs, &i, ts("2026-01-01T09:59:59Z")).receivers,
            ["pd"]
        );
        let other = incident(Severity::Critical, "r", &[("k8s.namespace.name", "db")]);
        assert_eq!(
            p.select(&rs, &other, ts("2026-01-01T11:00:00Z")).receivers,
            ["pd"]
        );
    }

    #[test]
    fn maintenance_windows_recur_on_their_days_and_may_cross_midnight() {
        // 2026-01-03 is a Saturday.
        let w = MaintenanceWindow {
            matcher: Matcher::default(),
            days: vec!["sat".into()],
            start: "22:00".into(),
            end: "02:00".into(),
            comment: "weekly".into(),
        };
        assert!(w.is_active(ts("2026-01-03T22:00:00Z")));
        assert!(w.is_active(ts("2026-01-04T01:59:00Z")));
        assert!(!w.is_active(ts("2026-01-04T02:00:00Z")));
        assert!(!w.is_active(ts("2026-01-03T21:59:00Z")));
        assert!(
            !w.is_active(ts("2026-01-03T01:00:00Z")),
            "Friday night's tail"
        );
        let daily = MaintenanceWindow {
            days: vec![],
            start: "03:00".into(),
            end: "04:00".into(),
            ..w.clone()
        };
        assert!(daily.is_active(ts("2026-01-07T03:30:00Z")));
        assert!(!daily.is_active(ts("2026-01-07T04:30:00Z")));
        let p = Policy {
            maintenance_windows: vec![daily],
            ..Default::default()
        };
        let i = incident(Severity::Critical, "r", &[]);
        let s = p.select(&receivers(&["pd"]), &i, ts("2026-01-07T03:30:00Z"));
        assert_eq!(s.silenced_by.as_deref(), Some("weekly"));
    }

    #[test]
    fn validation_names_the_field() {
        let rs = receivers(&["pd"]);
        let p = Policy {
            routes: vec![route(Matcher::default(), &["nope"], false)],
            ..Default::default()
        };
        let e = p.validate(&rs).unwrap_err();
        assert!(e.starts_with("collector.routes[0].receivers"), "{e}");
        let p = Policy {
            silences: vec![Silence {
                matcher: Matcher::default(),
                starts_at: ts("2026-01-01T12:00:00Z"),
                ends_at: ts("2026-01-01T10:00:00Z"),
                comment: String::new(),
            }],
            ..Default::default()
        };
        assert!(
            p.validate(&rs)
                .unwrap_err()
                .starts_with("collector.silences[0]")
        );
        let p = Policy {
            maintenance_windows: vec![MaintenanceWindow {
                matcher: Matcher::default(),
                days: vec!["someday".into()],
                start: "01:00".into(),
                end: "02:00".into(),
                comment: String::new(),
            }],
            ..Default::default()
        };
        let e = p.validate(&rs).unwrap_err();
        assert!(
            e.starts_with("collector.maintenance_windows[0].days"),
            "{e}"
        );
    }
}
