//! The outbox: queued deliveries and dead letters in the collector's redb database.
//!
//! Tables (all prefixed `daytwo_notify_`, owned by this module alone):
//! * `outbox`: `u64` sequence → JSON [`Record`]. The sequence is the enqueue order, which is
//!   also the per-(receiver, incident) send order.
//! * `dead_letters`: `u64` sequence → JSON [`DeadLetter`], for deliveries that gave up.
//! * `meta`: `next_seq` (never reused, even once the outbox is empty) and `instance` (random,
//!   drawn once per database), which together make delivery ids unique even if the data
//!   directory is wiped and a receiver still remembers ids it saw before.
//! * `policy`: the routes, silences and maintenance windows in force, written by
//!   [`super::Notifier::new`] from the configuration so that [`enqueue`] (called by the store,
//!   which knows nothing of routing) applies them inside the caller's transaction.
//! * `paged`: incident id → JSON list of the receivers its trigger was queued for. Follow-ups
//!   (acknowledge, resolve) go to exactly those receivers; the entry is removed with the resolve.
//!   An incident without an entry (opened before this table existed) falls back to routing.
//! * `fallback_paged`: `"{fallback}\0{incident}"` for triggers copied to a fallback receiver,
//!   so that the same incident's follow-ups are copied too, and nothing else is.
//!
//! Every write here is one redb transaction, so a record is either queued, or delivered and
//! gone, or dead-lettered; never two of those and never none.

use std::collections::HashSet;
use std::time::Duration;

use daytwo_model::{Incident, Timestamp};
use redb::{
    Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition, TableError,
    WriteTransaction,
};
use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::route::Policy;
use super::{DeadLetter, NotifyError, NotifyEvent, Receiver, Shared};

const OUTBOX: TableDefinition<u64, &str> = TableDefinition::new("daytwo_notify_outbox");
const DEAD_LETTERS: TableDefinition<u64, &str> = TableDefinition::new("daytwo_notify_dead_letters");
const META: TableDefinition<&str, u64> = TableDefinition::new("daytwo_notify_meta");
const POLICY: TableDefinition<&str, &str> = TableDefinition::new("daytwo_notify_policy");
const PAGED: TableDefinition<&str, &str> = TableDefinition::new("daytwo_notify_paged");
const FALLBACK_PAGED: TableDefinition<&str, u64> =
    TableDefinition::new("daytwo_notify_fallback_paged");
const POLICY_KEY: &str = "policy";
const META_NEXT_SEQ: &str = "next_seq";
const META_INSTANCE: &str = "instance";

/// One queued delivery, as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct Record {
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
}

/// The webhook body: `{"version":"1","event":…,"incident":{…}}`.
#[derive(Serialize)]
struct Payload<'a> {
    version: &'static str,
    event: NotifyEvent,
    incident: &'a Incident,
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
    txn.open_table(POLICY).or_outbox("create policy table")?;
    txn.open_table(PAGED).or_outbox("create paged table")?;
    txn.open_table(FALLBACK_PAGED)
        .or_outbox("create fallback table")?;
    let mut meta = txn.open_table(META).or_outbox("create meta table")?;
    instance(&mut meta)?;
    Ok(())
}

/// Stores the routing policy [`enqueue`] applies from now on (call at start, with the
/// configuration's routes, silences and maintenance windows).
pub fn write_policy(txn: &WriteTransaction, policy: &Policy) -> Result<(), NotifyError> {
    let json = serde_json::to_string(policy).map_err(NotifyError::PayloadEncodeFailed)?;
    txn.open_table(POLICY)
        .or_outbox("open policy table")?
        .insert(POLICY_KEY, json.as_str())
        .or_outbox("write policy")?;
    Ok(())
}

fn read_policy(txn: &WriteTransaction) -> Result<Policy, NotifyError> {
    let table = txn.open_table(POLICY).or_outbox("open policy table")?;
    let Some(json) = table.get(POLICY_KEY).or_outbox("read policy")? else {
        return Ok(Policy::default());
    };
    serde_json::from_str(json.value())
        .map_err(|source| NotifyError::OutboxRecordCorrupt { id: 0, source })
}

/// Which of `receivers` this event for `incident` goes to, recording trigger targets in `paged`.
fn targets<'a>(
    txn: &WriteTransaction,
    receivers: &'a [Receiver],
    event: NotifyEvent,
    incident: &Incident,
    now: Timestamp,
) -> Result<Vec<&'a Receiver>, NotifyError> {
    let policy = read_policy(txn)?;
    let mut paged = txn.open_table(PAGED).or_outbox("open paged table")?;
    let names: Vec<String> = match event {
        NotifyEvent::Trigger => {
            let sel = policy.select(receivers, incident, now);
            if let Some(comment) = &sel.silenced_by {
                info!(incident = %incident.id, silence = %comment, "Trigger held back by a silence or maintenance window; no receiver is paged, and no resolve will follow.");
            } else if sel.unrouted {
                warn!(incident = %incident.id, severity = %incident.severity, "No route matched the incident, so nobody is paged; add a catch-all route (match: {{}}) last to page someone for everything.");
            }
            let json =
                serde_json::to_string(&sel.receivers).map_err(NotifyError::PayloadEncodeFailed)?;
            paged
                .insert(incident.id.as_str(), json.as_str())
                .or_outbox("record paged receivers")?;
            sel.receivers
        }
        NotifyEvent::Acknowledge | NotifyEvent::Resolve => {
            let stored = paged
                .get(incident.id.as_str())
                .or_outbox("read paged receivers")?
                .map(|g| g.value().to_string());
            if event == NotifyEvent::Resolve {
                paged
                    .remove(incident.id.as_str())
                    .or_outbox("forget paged receivers")?;
            }
            match stored {
                Some(json) => serde_json::from_str(&json)
                    .map_err(|source| NotifyError::OutboxRecordCorrupt { id: 0, source })?,
                // Opened before the paged table existed: its trigger went to every receiver
                // the routes (if any) pick.
                None => {
                    policy
                        .route(receivers, &super::route::Labels::of(incident))
                        .0
                }
            }
        }
    };
    Ok(receivers
        .iter()
        .filter(|r| names.contains(&r.name))
        .collect())
}

/// Enqueues one delivery per receiver this event goes to, with this incident snapshot, inside
/// the caller's transaction: the deliveries exist exactly when the caller's change commits.
///
/// A trigger goes to the receivers the stored routes pick, or to none while a silence or
/// maintenance window matches ([`super::route::Policy::select`]); which receivers that was is
/// remembered, and the incident's acknowledge and resolve go to exactly those (so a resolve
/// still reaches a receiver that was paged before a silence began, and a silenced incident
/// never gets a lone resolve). `receivers` are the configured receivers.
/// Wake the loop with [`super::Notifier::waker`] after the commit.
///
/// `now` should be the wall-clock time of the enqueue: the first attempt is due at `now`. An
/// event time works too (an old one is simply due at once), because
/// [`super::NotifyConfig::max_age`] counts from the later of `now` and the first failed attempt.
pub fn enqueue(
    txn: &WriteTransaction,
    receivers: &[Receiver],
    event: NotifyEvent,
    incident: &Incident,
    now: Timestamp,
) -> Result<(), NotifyError> {
    if receivers.is_empty() {
        return Ok(());
    }
    let targets = targets(txn, receivers, event, incident, now)?;
    if targets.is_empty() {
        return Ok(());
    }
    let body = serde_json::to_string(&Payload {
        version: "1",
        event,
        incident,
    })
    .map_err(NotifyError::PayloadEncodeFailed)?;
    let mut meta = txn.open_table(META).or_outbox("open meta table")?;
    let instance = instance(&mut meta)?;
    let mut seq = meta
        .get(META_NEXT_SEQ)
        .or_outbox("read next sequence")?
        .map_or(1, |g| g.value());
    let mut outbox = txn.open_table(OUTBOX).or_outbox("open outbox table")?;
    for receiver in targets {
        let record = Record {
            delivery_id: format!("{instance:016x}-{seq}"),
            receiver: receiver.name.clone(),
            event,
            incident_id: incident.id.clone(),
            body: body.clone(),
            attempts: 0,
            first_enqueued_at: now,
            first_failed_at: None,
            next_attempt_at: now,
            last_error: None,
            fallback_for: None,
            fallback_done: false,
        };
        let json = serde_json::to_string(&record).map_err(NotifyError::PayloadEncodeFailed)?;
        outbox
            .insert(seq, json.as_str())
            .or_outbox("insert delivery")?;
        seq += 1;
    }
    meta.insert(META_NEXT_SEQ, seq)
        .or_outbox("write next sequence")?;
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
            if !seen.insert((head.receiver.clone(), head.incident_id)) || in_flight.contains(&id) {
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

/// Copies queued deliveries of receiver `from` (whose breaker is open) to its fallback `to`,
/// each at most once. A trigger is copied unless `to` was paged for that incident directly; an
/// acknowledge or resolve is copied only if its incident's trigger was copied to `to` before, so
/// the fallback never gets a lone resolve. Copies keep the canonical body, get a new delivery
/// id, and are never copied again. Returns how many copies were queued.
pub(super) fn copy_to_fallback(
    db: &Database,
    from: &str,
    to: &str,
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
            let key = format!("{to}\0{}", record.incident_id);
            let copy = match record.event {
                NotifyEvent::Trigger => {
                    let direct = paged
                        .get(record.incident_id.as_str())
                        .or_outbox("read paged receivers")?
                        .and_then(|g| serde_json::from_str::<Vec<String>>(g.value()).ok())
                        .is_some_and(|names| names.iter().any(|n| n == to));
                    if !direct {
                        fallback
                            .insert(key.as_str(), now.unix_nanos() as u64)
                            .or_outbox("record fallback page")?;
                    }
                    !direct
                }
                NotifyEvent::Acknowledge | NotifyEvent::Resolve => {
                    let had_trigger = fallback
                        .get(key.as_str())
                        .or_outbox("read fallback page")?
                        .is_some();
                    if had_trigger && record.event == NotifyEvent::Resolve {
                        fallback
                            .remove(key.as_str())
                            .or_outbox("forget fallback page")?;
                    }
                    had_trigger
                }
            };
            if copy {
                let dup = Record {
                    delivery_id: format!("{instance:016x}-{seq}"),
                    receiver: to.to_string(),
                    event: record.event,
                    incident_id: record.incident_id.clone(),
                    body: record.body.clone(),
                    attempts: 0,
                    first_enqueued_at: now,
                    first_failed_at: None,
                    next_attempt_at: now,
                    last_error: None,
                    fallback_for: Some(from.to_string()),
                    fallback_done: false,
                };
                let json = serde_json::to_string(&dup).map_err(NotifyError::PayloadEncodeFailed)?;
                outbox
                    .insert(seq, json.as_str())
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
