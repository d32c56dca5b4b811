//! Silences made at run time through the API or `daytwo silences add`, stored in the collector's
//! database so they survive restarts (in the manner of Alertmanager's silences and `amtool`).
//!
//! Entry points: [`add`], [`list`], [`expire`], and [`active`] (which the outbox asks, inside
//! its write transaction, whether a trigger is silenced). A silence is a [`Matcher`] plus a
//! time window (`starts_at` inclusive, `ends_at` exclusive), who made it and why. Expiring one
//! sets its `ends_at` to now and keeps it, so the list still shows what was silenced and when;
//! nothing is ever deleted. Silences from the configuration file (`collector.silences`) are not
//! stored here: they are part of the routing policy and change with the file.
//!
//! What a silence does to pages is the outbox's business (docs/notify.md): a silenced trigger is
//! held, a resolve still reaches receivers paged before the silence, and an incident still open
//! when its silence ends gets its trigger then.

use daytwo_model::Timestamp;
use redb::{
    Database, ReadableDatabase, ReadableTable, TableDefinition, TableError, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use super::NotifyError;
use super::outbox::OrOutbox;
use super::route::{Labels, Matcher};

/// silence id → JSON [`Silence`].
pub(super) const SILENCES: TableDefinition<&str, &str> =
    TableDefinition::new("daytwo_notify_silences");

/// A stored silence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Silence {
    /// Random, 16 hex digits; what `expire` takes.
    pub id: String,
    /// Which incidents it holds back; at least one field is set.
    #[serde(rename = "match")]
    pub matcher: Matcher,
    /// Holds from here (inclusive)…
    pub starts_at: Timestamp,
    /// …to here (exclusive); set to the moment of expiry by [`expire`].
    pub ends_at: Timestamp,
    /// Who made it (`--author`, default the user name).
    pub created_by: String,
    /// Why: a ticket, a change number. Shown in the log line of every trigger it holds.
    pub comment: String,
    pub created_at: Timestamp,
    /// Set when it was expired by hand before its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expired_at: Option<Timestamp>,
}

/// Where a silence is in its life, at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Starts later.
    Pending,
    /// Holding back matching triggers now.
    Active,
    /// Over (ended or expired by hand).
    Expired,
}

impl Silence {
    /// Where this silence is at `now`.
    pub fn state(&self, now: Timestamp) -> State {
        if now >= self.ends_at {
            State::Expired
        } else if now < self.starts_at {
            State::Pending
        } else {
            State::Active
        }
    }

    /// True when it holds back a trigger for `labels` at `now`.
    pub fn covers(&self, labels: &Labels, now: Timestamp) -> bool {
        self.state(now) == State::Active && self.matcher.matches(labels)
    }
}

/// A request to create a silence (`POST /api/v1/silences`).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewSilence {
    /// Which incidents; at least one field must be set.
    #[serde(rename = "match", default)]
    pub matcher: Matcher,
    /// Default: now.
    #[serde(default)]
    pub starts_at: Option<Timestamp>,
    /// Either this…
    #[serde(default)]
    pub ends_at: Option<Timestamp>,
    /// …or this many seconds after `starts_at`.
    #[serde(default)]
    pub duration_secs: Option<u64>,
    pub created_by: String,
    pub comment: String,
}

/// Why a silence could not be created; the message names the field.
#[derive(Debug, thiserror::Error)]
pub enum SilenceError {
    /// The request is wrong; fix it and send it again.
    #[error("{0}")]
    Invalid(String),
    /// The store failed; retrying may help.
    #[error(transparent)]
    Store(#[from] NotifyError),
}

impl NewSilence {
    /// Checks the request and turns it into a silence with a fresh id.
    pub fn validate(self, now: Timestamp) -> Result<Silence, SilenceError> {
        let bad = |m: String| Err(SilenceError::Invalid(m));
        let m = &self.matcher;
        if m.severity.is_none()
            && m.cluster.is_none()
            && m.namespace.is_none()
            && m.rule.is_none()
            && m.labels.is_empty()
        {
            return bad("match: set at least one of severity, cluster, namespace, rule, labels (a silence of everything belongs in the configuration file)".into());
        }
        m.validate("silence").map_err(SilenceError::Invalid)?;
        if self.created_by.trim().is_empty() {
            return bad("created_by: say who makes the silence".into());
        }
        if self.comment.trim().is_empty() {
            return bad(
                "comment: say why (a ticket or change number helps the next person)".into(),
            );
        }
        let starts_at = self.starts_at.unwrap_or(now);
        let ends_at = match (self.ends_at, self.duration_secs) {
            (Some(_), Some(_)) => {
                return bad("ends_at and duration_secs: give one, not both".into());
            }
            (Some(e), None) => e,
            (None, Some(0)) => return bad("duration_secs: must be at least 1".into()),
            (None, Some(d)) => starts_at.plus(std::time::Duration::from_secs(d)),
            (None, None) => return bad("ends_at: give ends_at or duration_secs".into()),
        };
        if ends_at <= starts_at {
            return bad(format!(
                "ends_at: {ends_at} is not after starts_at ({starts_at})"
            ));
        }
        if ends_at <= now {
            return bad(format!("ends_at: {ends_at} is already over"));
        }
        Ok(Silence {
            id: format!("{:016x}", rand::random::<u64>()),
            matcher: self.matcher,
            starts_at,
            ends_at,
            created_by: self.created_by.trim().to_string(),
            comment: self.comment.trim().to_string(),
            created_at: now,
            expired_at: None,
        })
    }
}

/// Stores a new silence; returns it with its id.
pub fn add(db: &Database, new: NewSilence, now: Timestamp) -> Result<Silence, SilenceError> {
    let silence = new.validate(now)?;
    let json = serde_json::to_string(&silence).map_err(NotifyError::PayloadEncodeFailed)?;
    let txn = db.begin_write().or_outbox("begin write")?;
    txn.open_table(SILENCES)
        .or_outbox("open silence table")?
        .insert(silence.id.as_str(), json.as_str())
        .or_outbox("insert silence")?;
    txn.commit().or_outbox("commit silence")?;
    Ok(silence)
}

/// Every stored silence, newest first.
pub fn list(db: &Database) -> Result<Vec<Silence>, NotifyError> {
    let txn = db.begin_read().or_outbox("begin read")?;
    let table = match txn.open_table(SILENCES) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e).or_outbox("open silence table"),
    };
    let mut out = read_all(&table)?;
    out.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// Ends silence `id` now (if it is not over yet). `None` when there is no such silence.
pub fn expire(db: &Database, id: &str, now: Timestamp) -> Result<Option<Silence>, NotifyError> {
    let txn = db.begin_write().or_outbox("begin write")?;
    let out = {
        let mut table = txn.open_table(SILENCES).or_outbox("open silence table")?;
        let Some(json) = table
            .get(id)
            .or_outbox("read silence")?
            .map(|g| g.value().to_string())
        else {
            return Ok(None);
        };
        let mut s: Silence = serde_json::from_str(&json)
            .map_err(|source| NotifyError::OutboxRecordCorrupt { id: 0, source })?;
        if s.ends_at > now {
            s.ends_at = now.max(s.starts_at);
            s.expired_at = Some(now);
            let json = serde_json::to_string(&s).map_err(NotifyError::PayloadEncodeFailed)?;
            table
                .insert(id, json.as_str())
                .or_outbox("update silence")?;
        }
        s
    };
    txn.commit().or_outbox("commit silence expiry")?;
    Ok(Some(out))
}

fn read_all(
    table: &impl ReadableTable<&'static str, &'static str>,
) -> Result<Vec<Silence>, NotifyError> {
    let mut out = Vec::new();
    for entry in table.range::<&str>(..).or_outbox("scan silences")? {
        let (_, v) = entry.or_outbox("scan silences")?;
        match serde_json::from_str(v.value()) {
            Ok(s) => out.push(s),
            Err(e) => tracing::error!(error = %e, "Skipping an unreadable stored silence."),
        }
    }
    Ok(out)
}

/// The comment of a stored silence holding back a trigger for `labels` at `now` (inside the
/// outbox's write transaction).
pub(super) fn active(
    txn: &WriteTransaction,
    labels: &Labels,
    now: Timestamp,
) -> Result<Option<String>, NotifyError> {
    let table = txn.open_table(SILENCES).or_outbox("open silence table")?;
    Ok(read_all(&table)?
        .into_iter()
        .find(|s| s.covers(labels, now))
        .map(|s| format!("{} ({}, silence {})", s.comment, s.created_by, s.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn new(ns: &str) -> NewSilence {
        NewSilence {
            matcher: Matcher {
                namespace: Some(ns.into()),
                ..Default::default()
            },
            duration_secs: Some(3600),
            created_by: "alice".into(),
            comment: "CHG-1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        let now = ts("2026-01-01T10:00:00Z");
        let err = |n: NewSilence| n.validate(now).unwrap_err().to_string();
        assert!(
            err(NewSilence {
                matcher: Matcher::default(),
                ..new("a")
            })
            .starts_with("match:")
        );
        assert!(
            err(NewSilence {
                created_by: " ".into(),
                ..new("a")
            })
            .starts_with("created_by")
        );
        assert!(
            err(NewSilence {
                comment: String::new(),
                ..new("a")
            })
            .starts_with("comment")
        );
        assert!(
            err(NewSilence {
                duration_secs: None,
                ..new("a")
            })
            .starts_with("ends_at")
        );
        assert!(
            err(NewSilence {
                ends_at: Some(ts("2026-01-01T09:00:00Z")),
                duration_secs: None,
                ..new("a")
            })
            .starts_with("ends_at")
        );
        assert!(
            err(NewSilence {
                matcher: Matcher {
                    severity: Some("fatal".into()),
                    ..Default::default()
                },
                ..new("a")
            })
            .starts_with("silence.match.severity")
        );
        let s = new("shop").validate(now).unwrap();
        assert_eq!(s.starts_at, now);
        assert_eq!(s.ends_at, ts("2026-01-01T11:00:00Z"));
        assert_eq!(s.id.len(), 16);
    }

    #[test]
    fn states_follow_the_window_and_expiry_keeps_the_record() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("db.redb")).unwrap();
        let now = ts("2026-01-01T10:00:00Z");
        let s = add(&db, new("shop"), now).unwrap();
        let labels = |ns: &str| Labels {
            severity: "critical".into(),
            rule: "r".into(),
            attributes: [("k8s.namespace.name".to_string(), ns.to_string())].into(),
        };
        assert_eq!(s.state(now), State::Active);
        assert!(s.covers(&labels("shop"), now));
        assert!(!s.covers(&labels("db"), now));
        assert_eq!(s.state(ts("2026-01-01T09:59:59Z")), State::Pending);
        assert_eq!(s.state(ts("2026-01-01T11:00:00Z")), State::Expired);
        let later = ts("2026-01-01T10:30:00Z");
        let e = expire(&db, &s.id, later).unwrap().unwrap();
        assert_eq!(e.state(later), State::Expired);
        assert_eq!(e.ends_at, later);
        assert_eq!(e.expired_at, Some(later));
        assert!(expire(&db, "nope", later).unwrap().is_none());
        let all = list(&db).unwrap();
        assert_eq!(all, vec![e.clone()]);
        // Expiring twice changes nothing.
        let again = expire(&db, &s.id, ts("2026-01-01T10:45:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(again, e);
    }
}
