//! The outbox: queued deliveries and dead letters in the collector's redb database.
//!
//! Tables (all prefixed `daytwo_notify_`, owned by this module alone):
//! * `outbox`: `u64` sequence → JSON [`Record`]. The sequence is the enqueue order, which is
//!   also the per-(receiver, incident) send order.
//! * `dead_letters`: `u64` sequence → JSON [`DeadLetter`], for deliveries that gave up.
//! * `meta`: `next_seq` (never reused, even once the outbox is empty) and `instance` (random,
//!   drawn once per database), which together make delivery ids unique even if the data
//!   directory is wiped and a receiver still remembers ids it saw before.
//! * `paged`: incident id → JSON list of the receivers its trigger was queued for. Follow-ups
//!   (acknowledge, resolve) go to exactly those receivers; the entry is removed with the resolve.
//!   An incident without an entry (opened before this table existed) falls back to routing.
//! * `held`: incident id → JSON [`Held`], triggers held back by a silence or maintenance
//!   window. [`housekeep`] sends the trigger once nothing silences the incident any more, if it
//!   is still open; an acknowledge or resolve drops it.
//! * `groups`: `"{receiver}\0{route}\0{group key}"` → JSON [`Group`]: incidents waiting to go
//!   out together to a chatty receiver (webhook, Slack) on a route with `group_by`. A grouped
//!   delivery lists its other incidents in [`Record::incident_ids`], and their later
//!   notifications to that receiver wait behind it.
//! * `repeats`: `"{incident}\0{receiver}"` → JSON [`Repeat`]: when to send an open,
//!   unacknowledged incident's trigger again (routes with `repeat_interval_secs`).
//! * `fallback_paged`: `"{fallback}\0{incident}"` for triggers copied to a fallback receiver,
//!   so that the same incident's follow-ups are copied too, and nothing else is.
//! * `silences`: silences made through the API ([`super::silence`]).
//!
//! The routing policy (routes, configured silences, maintenance windows) is not stored: the
//! caller passes it to [`enqueue`] (through [`super::Handle`]), so the configuration in force is
//! always the one applied. The `daytwo_notify_policy` table of earlier versions is left unused.
//!
//! Every write here is one redb transaction, so a record is either queued, or delivered and
//! gone, or dead-lettered; never two of those and never none.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use daytwo_model::{Incident, IncidentStatus, Timestamp};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::route::{Labels, Plan as RoutePlan, Policy};
use super::{DeadLetter, NotifyError, NotifyEvent, Receiver, ReceiverKind, Shared};

const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("daytwo_notify_outbox");
const DEAD_LETTERS: TableDefinition<u64, &str> = TableDefinition::new("daytwo_notify_dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("daytwo_notify_meta");
const PAGED: TableDefinition<&str, &str> = TableDefinition::new("daytwo_notify_paged");
const FALLBACK_PAGED: TableDefinition<&str, u64> =
    TableDefinition::new("daytwo_notify_fallback_paged");
const HELD: TableDefinition<&str, &str> = TableDefinition::new("daytwo_notify_held");
const GROUPS: TableDefinition<&str, &str> = TableDefinition::new("daytwo_notify_groups");
const REPEATS: TableDefinition<&str, &str> = TableDefinition::new("daytwo_notify_repeats");
/// How often held triggers are looked at again (a silence can end at any moment).
const HELD_RECHECK: Duration = Duration::from_secs(1);
const META_NEXT_SEQ: &str = "next_seq";
const META_INSTANCE: &str = "instance";

/// One queued delivery, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Sent as `X-Daytwo-Delivery`; the same on every attempt.
    pub delivery_id: String,
    pub receiver: String,
    pub event: NotifyEvent,
    pub incident_id: String,
    /// The exact request body, serialised once at enqueue time.
    pub body: String,
    /// Failed attempts so far.
    pub attempts: u32,
    pub first_enqueued_at: Timestamp,
    /// Wall-clock time of the first failed attempt; the dead-letter clock starts at the later
    /// of this and `first_enqueued_at`, so a page queued while the collector was down (or
    /// enqueued with an old event time) still gets its full `max_age` of retries.
    #[serde(default)]
    pub first_failed_at: Option<Timestamp>,
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// Set on a copy made for a fallback receiver: the receiver whose breaker opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_for: Option<String>,
    /// Set on an original once it was considered for its receiver's fallback (copied or not),
    /// so each delivery is copied at most once.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fallback_done: bool,
    /// A grouped message's other incidents (besides `incident_id`): their later notifications
    /// to this receiver wait behind it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incident_ids: Vec<String>,
}

/// A trigger held back by a silence or maintenance window.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Held {
    held_at: Timestamp,
    /// The silence's comment, for the log line when it is released.
    by: String,
}

/// Incidents waiting to go out together to one receiver.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Group {
    receiver: String,
    /// Grouping label → value, shown to the receiver.
    labels: BTreeMap<String, String>,
    /// Incidents not sent yet, in the order they opened.
    members: Vec<String>,
    /// When the waiting members go out.
    flush_at: Option<Timestamp>,
    /// When the group last sent a message.
    last_flush: Option<Timestamp>,
    group_interval_secs: u64,
    repeat_interval_secs: Option<u64>,
}

/// The next repeat of an open, unacknowledged incident's trigger to one receiver.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Repeat {
    next_at: Timestamp,
    interval_secs: u64,
    /// Repeats sent so far.
    count: u32,
}

impl Record {
    /// When this delivery gives up if it is still failing.
    fn deadline(&self, max_age: Duration) -> Timestamp {
        let start = match self.first_failed_at {
            Some(t) => t.max(self.first_enqueued_at),
            None => self.first_enqueued_at,
        };
        start.plus(max_age)
    }
}

/// The fields a scan needs, so it skips over bodies without allocating them.
#[derive(Deserialize)]
struct Head {
    receiver: String,
    incident_id: String,
    first_enqueued_at: Timestamp,
    next_attempt_at: Timestamp,
    #[serde(default)]
    incident_ids: Vec<String>,
}

/// The webhook body: `{"version":"1","event":…,"incident":{…}}`, plus `repeat` on a repeated
/// trigger and `group` and `incidents` on a grouped one.
#[derive(Serialize)]
struct Payload<'a> {
    version: &'static str,
    event: NotifyEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    repeat: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<GroupInfo<'a>>,
    incident: &'a Incident,
    #[serde(skip_serializing_if = "Option::is_none")]
    incidents: Option<&'a [Incident]>,
}

/// `group` in a grouped message: the grouping labels and how many incidents it carries.
#[derive(Serialize)]
struct GroupInfo<'a> {
    labels: &'a BTreeMap<String, String>,
    count: usize,
}

impl<'a> Payload<'a> {
    fn single(event: NotifyEvent, incident: &'a Incident) -> Payload<'a> {
        Payload {
            version: "1",
            event,
            repeat: None,
            group: None,
            incident,
            incidents: None,
        }
    }

    fn encode(&self) -> Result<String, NotifyError> {
        serde_json::to_string(self).map_err(NotifyError::PayloadEncodeFailed)
    }
}

/// A delivery the loop should send now.
pub(super) struct Due {
    pub id: u64,
    pub record: Record,
}

/// What one pass over the outbox found.
pub(super) struct Plan {
    /// Heads of their (receiver, incident) queue whose time has come, in enqueue order.
    pub due: Vec<Due>,
    /// The earliest time a waiting head becomes due.
    pub next_due: Option<Timestamp>,
    /// Items still queued after this pass.
    pub pending: usize,
    /// Receivers named by queued items but absent from the configuration.
    pub unknown_receivers: Vec<String>,
}

/// Maps any redb error to [`NotifyError::OutboxFailed`] naming the operation.
pub(super) trait OrOutbox<T> {
    fn or_outbox(self, op: &'static str) -> Result<T, NotifyError>;
}

impl<T, E: Into<redb::Error>> OrOutbox<T> for Result<T, E> {
    fn or_outbox(self, op: &'static str) -> Result<T, NotifyError> {
        self.map_err(|e| NotifyError::OutboxFailed {
            op,
            source: e.into(),
        })
    }
}

/// Creates the outbox tables if missing (call once at open, in its own transaction or the
/// store's). Idempotent; [`super::Notifier::new`] calls it too.
pub fn init_tables(txn: &WriteTransaction) -> Result<(), NotifyError> {
    txn.open_table(OUTBOX).or_outbox("create outbox table")?;
    txn.open_table(DEAD_LETTERS)
        .or_outbox("create dead-letter table")?;
    txn.open_table(PAGED).or_outbox("create paged table")?;
    txn.open_table(FALLBACK_PAGED)
        .or_outbox("create fallback table")?;
    txn.open_table(HELD).or_outbox("create held table")?;
    txn.open_table(GROUPS).or_outbox("create group table")?;
    txn.open_table(REPEATS).or_outbox("create repeat table")?;
    txn.open_table(super::silence::SILENCES)
        .or_outbox("create silence table")?;
    let mut meta = txn.open_table(META).or_outbox("create meta table")?;
    instance(&mut meta)?;
    Ok(())
}

fn corrupt(source: serde_json::Error) -> NotifyError {
    NotifyError::OutboxRecordCorrupt { id: 0, source }
}

fn encode<T: Serialize>(v: &T) -> Result<String, NotifyError> {
    serde_json::to_string(v).map_err(NotifyError::PayloadEncodeFailed)
}

/// Appends one delivery per `(receiver, incident_ids)` with `body`, in order.
fn push(
    txn: &WriteTransaction,
    event: NotifyEvent,
    body: &str,
    to: &[(&str, &str, Vec<String>)],
    now: Timestamp,
) -> Result<(), NotifyError> {
    if to.is_empty() {
        return Ok(());
    }
    let mut meta = txn.open_table(META).or_outbox("open meta table")?;
    let instance = instance(&mut meta)?;
    let mut seq = meta
        .get(META_NEXT_SEQ)
        .or_outbox("read next sequence")?
        .map_or(1, |g| g.value());
    let mut outbox = txn.open_table(OUTBOX).or_outbox("open outbox table")?;
    for (receiver, incident_id, others) in to {
        let record = Record {
            delivery_id: format!("{instance:016x}-{seq}"),
            receiver: receiver.to_string(),
            event,
            incident_id: incident_id.to_string(),
            body: body.to_string(),
            attempts: 0,
            first_enqueued_at: now,
            first_failed_at: None,
            next_attempt_at: now,
            last_error: None,
            fallback_for: None,
            fallback_done: false,
            incident_ids: others.clone(),
        };
        outbox
            .insert(seq, encode(&record)?.as_str())
            .or_outbox("insert delivery")?;
        seq += 1;
    }
    meta.insert(META_NEXT_SEQ, seq)
        .or_outbox("write next sequence")?;
    Ok(())
}

fn repeat_key(incident: &str, receiver: &str) -> String {
    format!("{incident}\0{receiver}")
}

/// Schedules the first repeat of `incident`'s trigger to `receiver`, if its route asks for it.
fn schedule_repeat(
    txn: &WriteTransaction,
    incident: &str,
    receiver: &str,
    interval_secs: Option<u64>,
    now: Timestamp,
) -> Result<(), NotifyError> {
    let Some(secs) = interval_secs else {
        return Ok(());
    };
    let r = Repeat {
        next_at: now.plus(Duration::from_secs(secs)),
        interval_secs: secs,
        count: 0,
    };
    txn.open_table(REPEATS)
        .or_outbox("open repeat table")?
        .insert(
            repeat_key(incident, receiver).as_str(),
            encode(&r)?.as_str(),
        )
        .or_outbox("schedule repeat")?;
    Ok(())
}

/// Adds `receiver` to the receivers `incident`'s follow-ups go to.
fn add_paged(txn: &WriteTransaction, incident: &str, receiver: &str) -> Result<(), NotifyError> {
    let mut paged = txn.open_table(PAGED).or_outbox("open paged table")?;
    let mut names: Vec<String> = match paged.get(incident).or_outbox("read paged receivers")? {
        Some(g) => serde_json::from_str(g.value()).map_err(corrupt)?,
        None => Vec::new(),
    };
    if !names.iter().any(|n| n == receiver) {
        names.push(receiver.to_string());
    }
    paged
        .insert(incident, encode(&names)?.as_str())
        .or_outbox("record paged receivers")?;
    Ok(())
}

/// Whether a chatty receiver gets grouped messages (PagerDuty and Opsgenie keep one alert per
/// incident, keyed by its id).
fn groups_messages(kind: ReceiverKind) -> bool {
    matches!(kind, ReceiverKind::Webhook | ReceiverKind::Slack)
}

/// The trigger of `incident`: held while silenced, else to each routed receiver at once, into
/// its group, or both.
fn trigger(
    txn: &WriteTransaction,
    receivers: &[Receiver],
    policy: &Policy,
    incident: &Incident,
    now: Timestamp,
) -> Result<(), NotifyError> {
    let labels = Labels::of(incident);
    let silenced = match policy.silenced_by(&labels, now) {
        Some(c) => Some(c.to_string()),
        None => super::silence::active(txn, &labels, now)?,
    };
    if let Some(by) = silenced {
        info!(incident = %incident.id, silence = %by, "Trigger held back by a silence or maintenance window; it is sent if the incident is still open when the silence ends, and no lone resolve follows otherwise.");
        txn.open_table(PAGED)
            .or_outbox("open paged table")?
            .insert(incident.id.as_str(), "[]")
            .or_outbox("record paged receivers")?;
        let held = Held { held_at: now, by };
        txn.open_table(HELD)
            .or_outbox("open held table")?
            .insert(incident.id.as_str(), encode(&held)?.as_str())
            .or_outbox("hold trigger")?;
        return Ok(());
    }
    let plans = policy.plans(receivers, &labels);
    if plans.is_empty() && !policy.routes.is_empty() {
        warn!(incident = %incident.id, severity = %incident.severity, "No route matched the incident, so nobody is paged; add a catch-all route (match: {{}}) last to page someone for everything.");
    }
    let mut now_to: Vec<&RoutePlan> = Vec::new();
    for plan in &plans {
        let kind = receivers
            .iter()
            .find(|r| r.name == plan.receiver)
            .map_or(ReceiverKind::Webhook, |r| r.kind);
        if plan.group.is_empty() || !groups_messages(kind) {
            now_to.push(plan);
        } else {
            join_group(txn, plan, &incident.id, now)?;
        }
    }
    let names: Vec<&str> = now_to.iter().map(|p| p.receiver.as_str()).collect();
    txn.open_table(PAGED)
        .or_outbox("open paged table")?
        .insert(incident.id.as_str(), encode(&names)?.as_str())
        .or_outbox("record paged receivers")?;
    let body = Payload::single(NotifyEvent::Trigger, incident).encode()?;
    let to: Vec<(&str, &str, Vec<String>)> = names
        .iter()
        .map(|n| (*n, incident.id.as_str(), Vec::new()))
        .collect();
    push(txn, NotifyEvent::Trigger, &body, &to, now)?;
    for plan in now_to {
        schedule_repeat(
            txn,
            &incident.id,
            &plan.receiver,
            plan.repeat_interval_secs,
            now,
        )?;
    }
    Ok(())
}

fn group_key(plan: &RoutePlan) -> String {
    let values: Vec<String> = plan.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\0{}\0{}",
        plan.receiver,
        plan.route.unwrap_or(0),
        values.join(",")
    )
}

/// Puts `incident` into its group for `plan.receiver`; the group goes out at its `flush_at`.
fn join_group(
    txn: &WriteTransaction,
    plan: &RoutePlan,
    incident: &str,
    now: Timestamp,
) -> Result<(), NotifyError> {
    let key = group_key(plan);
    let mut groups = txn.open_table(GROUPS).or_outbox("open group table")?;
    let mut g: Group = match groups.get(key.as_str()).or_outbox("read group")? {
        Some(v) => serde_json::from_str(v.value()).map_err(corrupt)?,
        None => Group {
            receiver: plan.receiver.clone(),
            labels: plan.group.iter().cloned().collect(),
            members: Vec::new(),
            flush_at: None,
            last_flush: None,
            group_interval_secs: plan.group_interval_secs,
            repeat_interval_secs: plan.repeat_interval_secs,
        },
    };
    g.group_interval_secs = plan.group_interval_secs;
    g.repeat_interval_secs = plan.repeat_interval_secs;
    if !g.members.iter().any(|m| m == incident) {
        g.members.push(incident.to_string());
    }
    if g.flush_at.is_none() {
        let interval = Duration::from_secs(g.group_interval_secs);
        g.flush_at = Some(match g.last_flush {
            // The group sent a message lately: the newcomers go out one interval after it.
            Some(last) if last.plus(interval) > now => last.plus(interval),
            // A new group (or one quiet for a whole interval) waits for company first.
            _ => now.plus(Duration::from_secs(plan.group_wait_secs)),
        });
    }
    groups
        .insert(key.as_str(), encode(&g)?.as_str())
        .or_outbox("write group")?;
    Ok(())
}

/// Drops `incident` from everything that would still send its trigger: a held trigger, a
/// group it waits in, scheduled repeats.
fn forget_pending_triggers(txn: &WriteTransaction, incident: &str) -> Result<(), NotifyError> {
    txn.open_table(HELD)
        .or_outbox("open held table")?
        .remove(incident)
        .or_outbox("drop held trigger")?;
    let mut groups = txn.open_table(GROUPS).or_outbox("open group table")?;
    let mut changed = Vec::new();
    for entry in groups.range::<&str>(..).or_outbox("scan groups")? {
        let (k, v) = entry.or_outbox("scan groups")?;
        let mut g: Group = serde_json::from_str(v.value()).map_err(corrupt)?;
        if g.members.iter().any(|m| m == incident) {
            g.members.retain(|m| m != incident);
            if g.members.is_empty() {
                g.flush_at = None;
            }
            changed.push((k.value().to_string(), g));
        }
    }
    for (k, g) in changed {
        groups
            .insert(k.as_str(), encode(&g)?.as_str())
            .or_outbox("write group")?;
    }
    let mut repeats = txn.open_table(REPEATS).or_outbox("open repeat table")?;
    let prefix = format!("{incident}\0");
    let keys: Vec<String> = repeats
        .range::<&str>(prefix.as_str()..)
        .or_outbox("scan repeats")?
        .map_while(|e| {
            e.ok()
                .map(|(k, _)| k.value().to_string())
                .filter(|k| k.starts_with(&prefix))
        })
        .collect();
    for k in keys {
        repeats.remove(k.as_str()).or_outbox("drop repeat")?;
    }
    Ok(())
}

/// Enqueues the notifications of one incident change inside the caller's transaction: they
/// exist exactly when the caller's change commits.
///
/// A trigger goes to the receivers `policy`'s routes pick: at once, or (chatty receivers on a
/// route with `group_by`) into a group that goes out as one message after `group_wait_secs`.
/// While a silence (configured in `policy`, or stored through the API) or a maintenance window
/// matches, the trigger is held instead, and sent by [`housekeep`] if the incident is still open
/// when nothing silences it any more. Which receivers got the trigger is remembered, and the
/// incident's acknowledge and resolve go to exactly those: a resolve still reaches a receiver
/// paged before a silence began, and an incident that never paged gets no lone resolve. An
/// acknowledge or resolve also cancels a held trigger, a pending group entry and repeats.
/// Wake the loop ([`super::Handle::wake`]) after the commit.
///
/// `now` should be the wall-clock time of the enqueue: the first attempt is due at `now`.
pub fn enqueue(
    txn: &WriteTransaction,
    receivers: &[Receiver],
    policy: &Policy,
    event: NotifyEvent,
    incident: &Incident,
    now: Timestamp,
) -> Result<(), NotifyError> {
    if receivers.is_empty() {
        return Ok(());
    }
    if event == NotifyEvent::Trigger {
        return trigger(txn, receivers, policy, incident, now);
    }
    forget_pending_triggers(txn, &incident.id)?;
    let stored = {
        let mut paged = txn.open_table(PAGED).or_outbox("open paged table")?;
        let stored = paged
            .get(incident.id.as_str())
            .or_outbox("read paged receivers")?
            .map(|g| g.value().to_string());
        if event == NotifyEvent::Resolve {
            paged
                .remove(incident.id.as_str())
                .or_outbox("forget paged receivers")?;
        }
        stored
    };
    let names: Vec<String> = match stored {
        Some(json) => serde_json::from_str(&json).map_err(corrupt)?,
        // Opened before the paged table existed: its trigger went to every receiver the routes
        // (if any) pick.
        None => policy.route(receivers, &Labels::of(incident)).0,
    };
    let to: Vec<(&str, &str, Vec<String>)> = receivers
        .iter()
        .filter(|r| names.contains(&r.name))
        .map(|r| (r.name.as_str(), incident.id.as_str(), Vec::new()))
        .collect();
    let body = Payload::single(event, incident).encode()?;
    push(txn, event, &body, &to, now)
}

fn read_incident(txn: &WriteTransaction, id: &str) -> Result<Option<Incident>, NotifyError> {
    let table = txn
        .open_table(crate::store::INCIDENTS)
        .or_outbox("open incident table")?;
    let raw = table.get(id).or_outbox("read incident")?;
    raw.map(|g| serde_json::from_slice(g.value()).map_err(corrupt))
        .transpose()
}

/// What [`housekeep`] did.
#[derive(Debug, Default)]
pub(super) struct Housekeeping {
    /// Held triggers sent now that no silence matches.
    pub released: usize,
    /// Grouped messages queued.
    pub flushed: usize,
    /// Repeated triggers queued.
    pub repeated: usize,
    /// Triggers still held by a silence after this pass.
    pub held: usize,
    /// When to look again.
    pub next: Option<Timestamp>,
}

impl Housekeeping {
    fn wake_at(&mut self, t: Timestamp) {
        self.next = Some(self.next.map_or(t, |n| n.min(t)));
    }
}

/// Time-driven notifications: held triggers whose silence ended, groups whose wait is over,
/// repeats that are due. A read pass first, so the usual case (nothing due) costs no write.
pub(super) fn housekeep(
    db: &Database,
    receivers: &[Receiver],
    policy: &Policy,
    now: Timestamp,
) -> Result<Housekeeping, NotifyError> {
    let mut out = Housekeeping::default();
    let mut due = false;
    {
        let txn = db.begin_read().or_outbox("begin read")?;
        if let Ok(held) = txn.open_table(HELD) {
            out.held = held.len().or_outbox("count held triggers")? as usize;
            if out.held > 0 {
                // Decide here whether any held trigger can go, so that a long silence costs no
                // write transaction per pass.
                let stored = super::silence::list(db)?;
                let incidents = txn.open_table(crate::store::INCIDENTS).ok();
                for entry in held.range::<&str>(..).or_outbox("scan held triggers")? {
                    let (k, _) = entry.or_outbox("scan held triggers")?;
                    let incident = match &incidents {
                        Some(t) => t
                            .get(k.value())
                            .or_outbox("read incident")?
                            .and_then(|g| serde_json::from_slice::<Incident>(g.value()).ok()),
                        None => None,
                    };
                    match incident {
                        Some(i) if i.status == IncidentStatus::Open => {
                            let labels = Labels::of(&i);
                            let silenced = policy.silenced_by(&labels, now).is_some()
                                || stored.iter().any(|s| s.covers(&labels, now));
                            if silenced {
                                out.wake_at(now.plus(HELD_RECHECK));
                            } else {
                                due = true;
                            }
                        }
                        // Acknowledged, resolved or gone: drop it.
                        _ => due = true,
                    }
                }
            }
        }
        if let Ok(groups) = txn.open_table(GROUPS) {
            for entry in groups.range::<&str>(..).or_outbox("scan groups")? {
                let (_, v) = entry.or_outbox("scan groups")?;
                let g: Group = serde_json::from_str(v.value()).map_err(corrupt)?;
                match g.flush_at {
                    Some(t) if t <= now => due = true,
                    Some(t) => out.wake_at(t),
                    None => {}
                }
                let expiry = g
                    .last_flush
                    .map(|t| t.plus(Duration::from_secs(g.group_interval_secs)));
                if g.members.is_empty() && expiry.is_none_or(|t| t <= now) {
                    due = true; // garbage
                }
            }
        }
        if let Ok(repeats) = txn.open_table(REPEATS) {
            for entry in repeats.range::<&str>(..).or_outbox("scan repeats")? {
                let (_, v) = entry.or_outbox("scan repeats")?;
                let r: Repeat = serde_json::from_str(v.value()).map_err(corrupt)?;
                if r.next_at <= now {
                    due = true;
                } else {
                    out.wake_at(r.next_at);
                }
            }
        }
    }
    if !due {
        return Ok(out);
    }
    let txn = db.begin_write().or_outbox("begin write")?;
    release_held(&txn, receivers, policy, now, &mut out)?;
    flush_groups(&txn, now, &mut out)?;
    send_repeats(&txn, policy, now, &mut out)?;
    txn.commit().or_outbox("commit housekeeping")?;
    Ok(out)
}

fn release_held(
    txn: &WriteTransaction,
    receivers: &[Receiver],
    policy: &Policy,
    now: Timestamp,
    out: &mut Housekeeping,
) -> Result<(), NotifyError> {
    let held: Vec<(String, Held)> = {
        let table = txn.open_table(HELD).or_outbox("open held table")?;
        let mut v = Vec::new();
        for entry in table.range::<&str>(..).or_outbox("scan held triggers")? {
            let (k, h) = entry.or_outbox("scan held triggers")?;
            v.push((
                k.value().to_string(),
                serde_json::from_str(h.value()).map_err(corrupt)?,
            ));
        }
        v
    };
    for (id, h) in held {
        let incident = read_incident(txn, &id)?;
        let Some(incident) = incident.filter(|i| i.status == IncidentStatus::Open) else {
            txn.open_table(HELD)
                .or_outbox("open held table")?
                .remove(id.as_str())
                .or_outbox("drop held trigger")?;
            out.held = out.held.saturating_sub(1);
            continue;
        };
        let labels = Labels::of(&incident);
        let still = policy.silenced_by(&labels, now).is_some()
            || super::silence::active(txn, &labels, now)?.is_some();
        if still {
            out.wake_at(now.plus(HELD_RECHECK));
            continue;
        }
        txn.open_table(HELD)
            .or_outbox("open held table")?
            .remove(id.as_str())
            .or_outbox("release held trigger")?;
        info!(incident = %id, silence = %h.by, held_since = %h.held_at, "Silence over and the incident is still open: sending its trigger now.");
        trigger(txn, receivers, policy, &incident, now)?;
        out.released += 1;
        out.held = out.held.saturating_sub(1);
    }
    Ok(())
}

fn flush_groups(
    txn: &WriteTransaction,
    now: Timestamp,
    out: &mut Housekeeping,
) -> Result<(), NotifyError> {
    let groups: Vec<(String, Group)> = {
        let table = txn.open_table(GROUPS).or_outbox("open group table")?;
        let mut v = Vec::new();
        for entry in table.range::<&str>(..).or_outbox("scan groups")? {
            let (k, g) = entry.or_outbox("scan groups")?;
            v.push((
                k.value().to_string(),
                serde_json::from_str(g.value()).map_err(corrupt)?,
            ));
        }
        v
    };
    for (key, mut g) in groups {
        let interval = Duration::from_secs(g.group_interval_secs);
        if g.flush_at.is_none_or(|t| t > now) {
            let idle = g.last_flush.is_none_or(|t| t.plus(interval) <= now);
            if g.members.is_empty() && idle {
                txn.open_table(GROUPS)
                    .or_outbox("open group table")?
                    .remove(key.as_str())
                    .or_outbox("drop idle group")?;
            }
            continue;
        }
        let mut incidents = Vec::new();
        for id in &g.members {
            if let Some(i) = read_incident(txn, id)?.filter(|i| i.status.is_active()) {
                incidents.push(i);
            }
        }
        g.members.clear();
        g.flush_at = None;
        if let Some(first) = incidents.first() {
            let body = Payload {
                version: "1",
                event: NotifyEvent::Trigger,
                repeat: None,
                group: Some(GroupInfo {
                    labels: &g.labels,
                    count: incidents.len(),
                }),
                incident: first,
                incidents: Some(&incidents),
            }
            .encode()?;
            let others: Vec<String> = incidents[1..].iter().map(|i| i.id.clone()).collect();
            push(
                txn,
                NotifyEvent::Trigger,
                &body,
                &[(g.receiver.as_str(), first.id.as_str(), others)],
                now,
            )?;
            for i in &incidents {
                add_paged(txn, &i.id, &g.receiver)?;
                schedule_repeat(txn, &i.id, &g.receiver, g.repeat_interval_secs, now)?;
            }
            g.last_flush = Some(now);
            out.flushed += 1;
            info!(receiver = %g.receiver, incidents = incidents.len(), "Grouped trigger queued.");
        }
        txn.open_table(GROUPS)
            .or_outbox("open group table")?
            .insert(key.as_str(), encode(&g)?.as_str())
            .or_outbox("write group")?;
    }
    Ok(())
}

fn send_repeats(
    txn: &WriteTransaction,
    policy: &Policy,
    now: Timestamp,
    out: &mut Housekeeping,
) -> Result<(), NotifyError> {
    let repeats: Vec<(String, Repeat)> = {
        let table = txn.open_table(REPEATS).or_outbox("open repeat table")?;
        let mut v = Vec::new();
        for entry in table.range::<&str>(..).or_outbox("scan repeats")? {
            let (k, r) = entry.or_outbox("scan repeats")?;
            let r: Repeat = serde_json::from_str(r.value()).map_err(corrupt)?;
            if r.next_at <= now {
                v.push((k.value().to_string(), r));
            }
        }
        v
    };
    for (key, mut r) in repeats {
        let Some((incident_id, receiver)) = key.split_once('\0') else {
            continue;
        };
        let incident =
            read_incident(txn, incident_id)?.filter(|i| i.status == IncidentStatus::Open);
        let mut table = txn.open_table(REPEATS).or_outbox("open repeat table")?;
        let Some(incident) = incident else {
            table.remove(key.as_str()).or_outbox("drop repeat")?;
            continue;
        };
        let labels = Labels::of(&incident);
        let silenced = policy.silenced_by(&labels, now).is_some()
            || super::silence::active(txn, &labels, now)?.is_some();
        r.next_at = now.plus(Duration::from_secs(r.interval_secs));
        out.wake_at(r.next_at);
        if !silenced {
            r.count += 1;
        }
        table
            .insert(key.as_str(), encode(&r)?.as_str())
            .or_outbox("write repeat")?;
        drop(table);
        if silenced {
            continue;
        }
        let body = Payload {
            repeat: Some(r.count),
            ..Payload::single(NotifyEvent::Trigger, &incident)
        }
        .encode()?;
        push(
            txn,
            NotifyEvent::Trigger,
            &body,
            &[(receiver, incident_id, Vec::new())],
            now,
        )?;
        out.repeated += 1;
        info!(receiver = %receiver, incident = %incident_id, repeat = r.count, "Incident still open and unacknowledged: trigger repeated.");
    }
    Ok(())
}

/// This database's random instance id, drawn on first use.
fn instance(meta: &mut redb::Table<&str, u64>) -> Result<u64, NotifyError> {
    if let Some(v) = meta.get(META_INSTANCE).or_outbox("read instance id")? {
        return Ok(v.value());
    }
    let v = rand::random::<u64>();
    meta.insert(META_INSTANCE, v)
        .or_outbox("write instance id")?;
    Ok(v)
}

/// One pass over the outbox: which heads are due, and when to look again. Items of receivers
/// that are no longer configured are dead-lettered once they are older than `max_age`.
pub(super) fn plan(
    shared: &Shared,
    in_flight: &HashSet<u64>,
    now: Timestamp,
) -> Result<Plan, NotifyError> {
    let mut plan = Plan {
        due: Vec::new(),
        next_due: None,
        pending: 0,
        unknown_receivers: Vec::new(),
    };
    let mut expired = Vec::new();
    {
        let txn = shared.db.begin_read().or_outbox("begin read")?;
        let table = match txn.open_table(OUTBOX) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(plan),
            Err(e) => return Err(e).or_outbox("open outbox table"),
        };
        // (receiver, incident) queues whose head has been seen: later items wait behind it.
        let mut seen: HashSet<(String, String)> = HashSet::new();
        let mut unknown: HashSet<String> = HashSet::new();
        for entry in table.range::<u64>(..).or_outbox("scan outbox")? {
            let (k, v) = entry.or_outbox("scan outbox")?;
            let id = k.value();
            plan.pending += 1;
            let head: Head = match serde_json::from_str(v.value()) {
                Ok(h) => h,
                Err(e) => {
                    let e = NotifyError::OutboxRecordCorrupt { id, source: e };
                    error!(error = %e, "Skipping an unreadable queued notification.");
                    continue;
                }
            };
            // A grouped message holds every incident it carries: each one's later notifications
            // to this receiver wait behind it.
            let mut blocked = false;
            for i in std::iter::once(&head.incident_id).chain(&head.incident_ids) {
                blocked |= !seen.insert((head.receiver.clone(), i.clone()));
            }
            if blocked || in_flight.contains(&id) {
                continue;
            }
            let wake_at = if !shared.receivers.contains_key(&head.receiver) {
                let deadline = head.first_enqueued_at.plus(shared.config.max_age);
                if deadline <= now {
                    expired.push(id);
                    continue;
                }
                unknown.insert(head.receiver);
                deadline
            } else if head.next_attempt_at <= now {
                match serde_json::from_str(v.value()) {
                    Ok(record) => plan.due.push(Due { id, record }),
                    Err(source) => {
                        let e = NotifyError::OutboxRecordCorrupt { id, source };
                        error!(error = %e, "Skipping an unreadable queued notification.");
                    }
                }
                continue;
            } else {
                head.next_attempt_at
            };
            plan.next_due = Some(plan.next_due.map_or(wake_at, |t| t.min(wake_at)));
        }
        plan.unknown_receivers = unknown.into_iter().collect();
    }
    for id in expired {
        let reason = "its receiver is no longer configured".to_string();
        if let Some(dead) =
            fail(&shared.db, id, now, reason, Duration::ZERO, Duration::ZERO)?.dead_letter()
        {
            super::deliver::report_dead_letter(shared, &dead);
            plan.pending -= 1;
        }
    }
    Ok(plan)
}

/// Removes a delivered item.
pub(super) fn delivered(db: &Database, id: u64) -> Result<(), NotifyError> {
    let txn = db.begin_write().or_outbox("begin write")?;
    txn.open_table(OUTBOX)
        .or_outbox("open outbox table")?
        .remove(id)
        .or_outbox("delete delivered item")?;
    txn.commit().or_outbox("commit delivered item")
}

/// What became of a delivery after a failed attempt.
#[derive(Debug)]
pub(super) enum AfterFailure {
    /// Queued again for `next_attempt_at`.
    Retry {
        attempts: u32,
        next_attempt_at: Timestamp,
    },
    /// Moved to the dead-letter table.
    DeadLettered(Box<DeadLetter>),
    /// The item was no longer queued.
    Gone,
}

impl AfterFailure {
    fn dead_letter(self) -> Option<Box<DeadLetter>> {
        match self {
            AfterFailure::DeadLettered(d) => Some(d),
            _ => None,
        }
    }
}

/// Records a failed attempt: retry after `backoff` (never later than the item's dead-letter
/// deadline, so the last attempt happens at `max_age`), or dead-letter the item if its
/// deadline has passed. The deadline is `max_age` after the later of the enqueue and the
/// first failure.
pub(super) fn fail(
    db: &Database,
    id: u64,
    now: Timestamp,
    error: String,
    backoff: Duration,
    max_age: Duration,
) -> Result<AfterFailure, NotifyError> {
    let txn = db.begin_write().or_outbox("begin write")?;
    let after = {
        let mut outbox = txn.open_table(OUTBOX).or_outbox("open outbox table")?;
        let Some(json) = outbox
            .get(id)
            .or_outbox("read queued item")?
            .map(|g| g.value().to_string())
        else {
            return Ok(AfterFailure::Gone);
        };
        let mut record: Record = serde_json::from_str(&json)
            .map_err(|source| NotifyError::OutboxRecordCorrupt { id, source })?;
        record.attempts = record.attempts.saturating_add(1);
        record.last_error = Some(error);
        record.first_failed_at.get_or_insert(now);
        let deadline = record.deadline(max_age);
        if now >= deadline {
            outbox.remove(id).or_outbox("delete dead item")?;
            let dead = DeadLetter {
                id,
                delivery_id: record.delivery_id,
                receiver: record.receiver,
                event: record.event,
                incident_id: record.incident_id,
                attempts: record.attempts,
                first_enqueued_at: record.first_enqueued_at,
                dead_at: now,
                last_error: record.last_error,
                body: record.body,
                incident_ids: record.incident_ids,
            };
            let json = serde_json::to_string(&dead).map_err(NotifyError::PayloadEncodeFailed)?;
            txn.open_table(DEAD_LETTERS)
                .or_outbox("open dead-letter table")?
                .insert(id, json.as_str())
                .or_outbox("insert dead letter")?;
            AfterFailure::DeadLettered(Box::new(dead))
        } else {
            record.next_attempt_at = now.plus(backoff).min(deadline);
            let json = serde_json::to_string(&record).map_err(NotifyError::PayloadEncodeFailed)?;
            outbox
                .insert(id, json.as_str())
                .or_outbox("update queued item")?;
            AfterFailure::Retry {
                attempts: record.attempts,
                next_attempt_at: record.next_attempt_at,
            }
        }
    };
    txn.commit().or_outbox("commit failed attempt")?;
    Ok(after)
}

/// How many deliveries are queued.
pub(super) fn pending(db: &Database) -> Result<usize, NotifyError> {
    let txn = db.begin_read().or_outbox("begin read")?;
    match txn.open_table(OUTBOX) {
        Ok(t) => Ok(t.len().or_outbox("count outbox")? as usize),
        Err(TableError::TableDoesNotExist(_)) => Ok(0),
        Err(e) => Err(e).or_outbox("open outbox table"),
    }
}

/// All dead letters, oldest first.
pub(super) fn dead_letters(db: &Database) -> Result<Vec<DeadLetter>, NotifyError> {
    let txn = db.begin_read().or_outbox("begin read")?;
    let table = match txn.open_table(DEAD_LETTERS) {
        Ok(t) => t,
        Err(TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e).or_outbox("open dead-letter table"),
    };
    let mut out = Vec::new();
    for entry in table.range::<u64>(..).or_outbox("scan dead letters")? {
        let (k, v) = entry.or_outbox("scan dead letters")?;
        let id = k.value();
        out.push(
            serde_json::from_str(v.value())
                .map_err(|source| NotifyError::OutboxRecordCorrupt { id, source })?,
        );
    }
    Ok(out)
}

/// Copies queued deliveries of receiver `from` (whose breaker is open) to its fallback `to`
/// (of kind `to_kind`), each at most once. A grouped trigger is copied as it is to a chatty
/// fallback, and split into one trigger per incident for a pager (PagerDuty, Opsgenie), so a
/// pager never gets one alert for several incidents. A trigger is copied unless `to` was paged for that incident directly; an
/// acknowledge or resolve is copied only if its incident's trigger was copied to `to` before, so
/// the fallback never gets a lone resolve. Copies keep the canonical body, get a new delivery
/// id, and are never copied again. Returns how many copies were queued.
pub(super) fn copy_to_fallback(
    db: &Database,
    from: &str,
    to: &str,
    to_kind: ReceiverKind,
    now: Timestamp,
) -> Result<usize, NotifyError> {
    // A read pass first: the common case (nothing new to copy) then costs no write commit.
    let candidates: Vec<(u64, Record)> = {
        let txn = db.begin_read().or_outbox("begin read")?;
        let table = match txn.open_table(OUTBOX) {
            Ok(t) => t,
            Err(TableError::TableDoesNotExist(_)) => return Ok(0),
            Err(e) => return Err(e).or_outbox("open outbox table"),
        };
        let mut out = Vec::new();
        for entry in table.range::<u64>(..).or_outbox("scan outbox")? {
            let (k, v) = entry.or_outbox("scan outbox")?;
            let Ok(record) = serde_json::from_str::<Record>(v.value()) else {
                continue;
            };
            if record.receiver == from && record.fallback_for.is_none() && !record.fallback_done {
                out.push((k.value(), record));
            }
        }
        out
    };
    if candidates.is_empty() {
        return Ok(0);
    }
    let txn = db.begin_write().or_outbox("begin write")?;
    let mut copied = 0;
    {
        let mut outbox = txn.open_table(OUTBOX).or_outbox("open outbox table")?;
        let paged = txn.open_table(PAGED).or_outbox("open paged table")?;
        let mut fallback = txn
            .open_table(FALLBACK_PAGED)
            .or_outbox("open fallback table")?;
        let mut meta = txn.open_table(META).or_outbox("open meta table")?;
        let instance = instance(&mut meta)?;
        let mut seq = meta
            .get(META_NEXT_SEQ)
            .or_outbox("read next sequence")?
            .map_or(1, |g| g.value());
        for (id, mut record) in candidates {
            // Delivered or changed since the read pass: leave it alone.
            let current = outbox
                .get(id)
                .or_outbox("read queued item")?
                .map(|g| g.value().to_string());
            if current.is_none() {
                continue;
            }
            let dup = |seq: u64, incident_id: &str, others: Vec<String>, body: String| Record {
                delivery_id: format!("{instance:016x}-{seq}"),
                receiver: to.to_string(),
                event: record.event,
                incident_id: incident_id.to_string(),
                body,
                attempts: 0,
                first_enqueued_at: now,
                first_failed_at: None,
                next_attempt_at: now,
                last_error: None,
                fallback_for: Some(from.to_string()),
                fallback_done: false,
                incident_ids: others,
            };
            let mut copies: Vec<Record> = Vec::new();
            match record.event {
                NotifyEvent::Trigger => {
                    // Every incident the trigger carries (a grouped one carries several), unless
                    // the fallback was paged for it directly.
                    let carried: Vec<&String> = std::iter::once(&record.incident_id)
                        .chain(&record.incident_ids)
                        .collect();
                    let mut fresh: Vec<String> = Vec::new();
                    for id in carried {
                        let direct = paged
                            .get(id.as_str())
                            .or_outbox("read paged receivers")?
                            .and_then(|g| serde_json::from_str::<Vec<String>>(g.value()).ok())
                            .is_some_and(|names| names.iter().any(|n| n == to));
                        if !direct {
                            fallback
                                .insert(format!("{to}\0{id}").as_str(), now.unix_nanos() as u64)
                                .or_outbox("record fallback page")?;
                            fresh.push(id.clone());
                        }
                    }
                    let grouped = !record.incident_ids.is_empty();
                    if fresh.is_empty() {
                    } else if grouped && !groups_messages(to_kind) {
                        // A pager as the fallback of a chatty receiver: one alert per incident.
                        let v: serde_json::Value =
                            serde_json::from_str(&record.body).map_err(corrupt)?;
                        for inc in v["incidents"].as_array().into_iter().flatten() {
                            let inc: Incident =
                                serde_json::from_value(inc.clone()).map_err(corrupt)?;
                            if fresh.contains(&inc.id) {
                                let body = Payload::single(NotifyEvent::Trigger, &inc).encode()?;
                                copies.push(dup(
                                    seq + copies.len() as u64,
                                    &inc.id,
                                    Vec::new(),
                                    body,
                                ));
                            }
                        }
                    } else {
                        copies.push(dup(
                            seq,
                            &record.incident_id,
                            record.incident_ids.clone(),
                            record.body.clone(),
                        ));
                    }
                }
                NotifyEvent::Acknowledge | NotifyEvent::Resolve => {
                    let key = format!("{to}\0{}", record.incident_id);
                    let had_trigger = fallback
                        .get(key.as_str())
                        .or_outbox("read fallback page")?
                        .is_some();
                    if had_trigger && record.event == NotifyEvent::Resolve {
                        fallback
                            .remove(key.as_str())
                            .or_outbox("forget fallback page")?;
                    }
                    if had_trigger {
                        copies.push(dup(
                            seq,
                            &record.incident_id,
                            Vec::new(),
                            record.body.clone(),
                        ));
                    }
                }
            }
            for c in copies {
                outbox
                    .insert(seq, encode(&c)?.as_str())
                    .or_outbox("insert fallback delivery")?;
                seq += 1;
                copied += 1;
            }
            record.fallback_done = true;
            let json = serde_json::to_string(&record).map_err(NotifyError::PayloadEncodeFailed)?;
            outbox
                .insert(id, json.as_str())
                .or_outbox("mark fallback done")?;
        }
        meta.insert(META_NEXT_SEQ, seq)
            .or_outbox("write next sequence")?;
    }
    txn.commit().or_outbox("commit fallback copies")?;
    Ok(copied)
}

/// Moves dead letter `id` back into the outbox, due now, with its attempts reset and a fresh
/// max age; it keeps its sequence number (so it sends before later notifications about the same
/// incident that are still queued) and its delivery id (so a receiver that did get it after all
/// can recognise it). Returns the dead letter, or `None` if there is none with that id.
pub(super) fn retry_dead_letter(
    db: &Database,
    id: u64,
    now: Timestamp,
) -> Result<Option<DeadLetter>, NotifyError> {
    let txn = db.begin_write().or_outbox("begin write")?;
    let dead = {
        let mut dead_letters = txn
            .open_table(DEAD_LETTERS)
            .or_outbox("open dead-letter table")?;
        let Some(json) = dead_letters
            .remove(id)
            .or_outbox("remove dead letter")?
            .map(|g| g.value().to_string())
        else {
            return Ok(None);
        };
        let dead: DeadLetter = serde_json::from_str(&json)
            .map_err(|source| NotifyError::OutboxRecordCorrupt { id, source })?;
        let record = Record {
            delivery_id: dead.delivery_id.clone(),
            receiver: dead.receiver.clone(),
            event: dead.event,
            incident_id: dead.incident_id.clone(),
            body: dead.body.clone(),
            attempts: 0,
            first_enqueued_at: now,
            first_failed_at: None,
            next_attempt_at: now,
            last_error: dead.last_error.clone(),
            fallback_for: None,
            fallback_done: false,
            incident_ids: dead.incident_ids.clone(),
        };
        let json = serde_json::to_string(&record).map_err(NotifyError::PayloadEncodeFailed)?;
        txn.open_table(OUTBOX)
            .or_outbox("open outbox table")?
            .insert(id, json.as_str())
            .or_outbox("requeue dead letter")?;
        dead
    };
    txn.commit().or_outbox("commit dead-letter retry")?;
    Ok(Some(dead))
}

/// Every queued record, in enqueue order (for tests and diagnostics).
#[cfg(test)]
pub(super) fn records(db: &Database) -> Result<Vec<(u64, Record)>, NotifyError> {
    let txn = db.begin_read().or_outbox("begin read")?;
    let table = txn.open_table(OUTBOX).or_outbox("open outbox table")?;
    let mut out = Vec::new();
    for entry in table.range::<u64>(..).or_outbox("scan outbox")? {
        let (k, v) = entry.or_outbox("scan outbox")?;
        let id = k.value();
        let record = serde_json::from_str(v.value())
            .map_err(|source| NotifyError::OutboxRecordCorrupt { id, source })?;
        out.push((id, record));
    }
    Ok(out)
}
