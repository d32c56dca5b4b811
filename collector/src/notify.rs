//! Notifications: pages to webhooks, PagerDuty, Opsgenie and Slack, delivered from a
//! disk-backed outbox.
//!
//! The pipeline calls [`Handle::enqueue`] inside the same redb write transaction that opens,
//! acknowledges or resolves an incident, so a page is never lost between "incident changed" and
//! "page queued", even on kill -9. The [`Notifier`] delivery loop then POSTs each queued item to
//! its receiver and deletes it only after a 2xx answer. Entry types: [`Receiver`],
//! [`NotifyConfig`], [`Notifier`], and [`Handle`], which the collector passes to the pipeline and
//! the API (receivers, routing policy and the loop's wake-up, wired explicitly); the contract a
//! receiver sees is in docs/notify.md.
//!
//! Invariants:
//! * Each queued delivery carries the exact body bytes serialised at enqueue time, so every
//!   retry sends a byte-identical body with the same `X-Daytwo-Delivery` id.
//! * Deliveries for the same incident to the same receiver go out in enqueue order (a resolve
//!   never overtakes its trigger); other incidents and other receivers never wait on them.
//! * Delivery is at-least-once: a kill between a receiver's 2xx and the delete that follows
//!   resends that delivery once, with the same id, on the next start.
//! * A delivery that keeps failing for [`NotifyConfig::max_age`] moves to a dead-letter table
//!   (see [`Notifier::dead_letters`]); nothing is dropped silently. An operator can put a dead
//!   letter back into the outbox ([`Handle::retry_dead_letter`]).
//! * The outbox holds the canonical event (`{"version":"1","event":…,"incident":…}`); the
//!   provider payload ([`render`]) and the credentials (URL, secret, routing key, API key) are
//!   applied at send time from the current configuration, so fixing a receiver and restarting
//!   delivers what queued, and no credential is ever written to disk.
//! * Who gets a trigger is decided at enqueue time by routes, silences and maintenance windows
//!   ([`route`], [`silence`]); acknowledge and resolve follow the trigger to the same receivers.
//!   A silenced trigger is held and sent when the silence ends if the incident is still open;
//!   routes may group chatty receivers' triggers and repeat unacknowledged ones (the loop's
//!   housekeeping pass does both).
//! * Each receiver has a circuit breaker ([`breaker`]): after
//!   [`NotifyConfig::breaker_failures`] consecutive failures nothing is sent to it for
//!   [`NotifyConfig::breaker_cooldown`], then one probe. While it is open, its deliveries are
//!   also copied, once each, to its `fallback` receiver if it has one.

mod backoff;
pub mod breaker;
mod deliver;
mod metrics;
mod outbox;
pub mod render;
pub mod route;
pub mod silence;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use daytwo_model::Timestamp;
use redb::Database;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

pub use outbox::{enqueue, init_tables};
pub use route::{MaintenanceWindow, Matcher, Policy, Route, Silence};

use breaker::{Breaker, Permit};
use metrics::Metrics;
use outbox::{OrOutbox, Plan};

/// The longest the delivery loop sleeps without rescanning the outbox, so a wall-clock jump or
/// an enqueue whose committer forgot to wake us delays delivery by at most this much.
const MAX_IDLE: Duration = Duration::from_secs(30);
/// How many deliveries to one receiver may be in flight at once. Per receiver, so a receiver
/// that hangs until the request timeout never holds back another receiver's pages.
const MAX_IN_FLIGHT_PER_RECEIVER: usize = 8;
/// How long the loop waits before rescanning after the outbox could not be read.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// What kind of endpoint a receiver is; decides the payload and headers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReceiverKind {
    /// A generic webhook: `POST` of `{"version":"1","event":…,"incident":{…}}`, signed with
    /// HMAC-SHA256 when a secret is set (docs/notify.md).
    #[default]
    Webhook,
    /// PagerDuty Events API v2: trigger, acknowledge and resolve one alert per incident
    /// (`dedup_key` = incident id). Needs `routing_key`.
    Pagerduty,
    /// Opsgenie Alert API: create, acknowledge and close one alert per incident (`alias` =
    /// incident id). Needs `api_key`.
    Opsgenie,
    /// A Slack incoming webhook: one message per trigger, follow-up messages for acknowledge
    /// and resolve.
    Slack,
}

impl ReceiverKind {
    /// The config and metric name.
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiverKind::Webhook => "webhook",
            ReceiverKind::Pagerduty => "pagerduty",
            ReceiverKind::Opsgenie => "opsgenie",
            ReceiverKind::Slack => "slack",
        }
    }

    /// The URL used when the configuration gives none (the provider's public endpoint).
    pub fn default_url(self) -> Option<&'static str> {
        match self {
            ReceiverKind::Pagerduty => Some("https://events.pagerduty.com/v2/enqueue"),
            ReceiverKind::Opsgenie => Some("https://api.opsgenie.com"),
            ReceiverKind::Webhook | ReceiverKind::Slack => None,
        }
    }
}

/// One place pages are sent to, as the operator configured it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receiver {
    /// Operator-chosen name; a metric label and the key queued deliveries refer to, so keep it
    /// stable across restarts (`webhook`, `webhook-2`, … for `--webhook` flags).
    pub name: String,
    /// `http://` or `https://` URL the page is POSTed to. Never logged: it may hold a token.
    pub url: String,
    /// Shared secret for `X-Daytwo-Signature` (webhook only); no signature header when unset.
    #[serde(default)]
    pub secret: Option<String>,
    /// The receiver's kind: decides the payload, the path and the credentials.
    #[serde(default)]
    pub kind: ReceiverKind,
    /// PagerDuty integration key (kind `pagerduty`).
    #[serde(default)]
    pub routing_key: Option<String>,
    /// Opsgenie API integration key, sent as `Authorization: GenieKey KEY` (kind `opsgenie`).
    #[serde(default)]
    pub api_key: Option<String>,
    /// Another receiver's name: while this receiver's circuit breaker is open, its deliveries
    /// are also queued, once each, to that receiver.
    #[serde(default)]
    pub fallback: Option<String>,
}

impl Receiver {
    /// A generic webhook receiver.
    pub fn webhook(
        name: impl Into<String>,
        url: impl Into<String>,
        secret: Option<String>,
    ) -> Self {
        Receiver {
            name: name.into(),
            url: url.into(),
            secret,
            kind: ReceiverKind::Webhook,
            routing_key: None,
            api_key: None,
            fallback: None,
        }
    }

    /// A receiver of another kind; set its credential fields afterwards.
    pub fn new(name: impl Into<String>, kind: ReceiverKind, url: impl Into<String>) -> Self {
        Receiver {
            kind,
            ..Receiver::webhook(name, url, None)
        }
    }
}

impl fmt::Debug for Receiver {
    /// Leaves the URL and secret out: both can carry credentials and Debug output ends up in logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Receiver")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field(
                "routing_key",
                &self.routing_key.as_ref().map(|_| "<redacted>"),
            )
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("fallback", &self.fallback)
            .finish_non_exhaustive()
    }
}

/// What happened to the incident that a delivery tells the receiver about.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyEvent {
    /// A new incident opened: page someone.
    Trigger,
    /// Someone is on it: stop escalating.
    Acknowledge,
    /// It is over: close the page.
    Resolve,
}

impl NotifyEvent {
    /// The wire name (`trigger`, `acknowledge`, `resolve`), also used as a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            NotifyEvent::Trigger => "trigger",
            NotifyEvent::Acknowledge => "acknowledge",
            NotifyEvent::Resolve => "resolve",
        }
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the delivery loop sends and retries.
#[derive(Clone, Debug)]
pub struct NotifyConfig {
    /// Where pages go; names must be unique.
    pub receivers: Vec<Receiver>,
    /// Delay before the first retry; doubles per failed attempt (`--notify-backoff-initial-ms`).
    pub backoff_initial: Duration,
    /// The longest delay between two attempts (`--notify-backoff-max-ms`).
    pub backoff_max: Duration,
    /// Limit on one POST, connect to last body byte.
    pub request_timeout: Duration,
    /// A delivery still failing this long after it was queued moves to the dead-letter table.
    pub max_age: Duration,
    /// Routes, silences and maintenance windows (who gets a trigger).
    pub policy: Policy,
    /// Consecutive failed attempts to one receiver that open its circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker holds deliveries before one probe goes out.
    pub breaker_cooldown: Duration,
    /// How long a receiver's breaker must have been open (without closing in between) before
    /// its deliveries are also copied to its `fallback` receiver; zero: as soon as it opens.
    pub fallback_after: Duration,
    /// The collector's address as on-call engineers reach it (`https://daytwo.example.com`);
    /// pages link to `{public_url}/api/v1/incidents/{id}`. No link when unset.
    pub public_url: Option<String>,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            receivers: Vec::new(),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(5 * 60),
            request_timeout: Duration::from_secs(10),
            max_age: Duration::from_secs(24 * 60 * 60),
            policy: Policy::default(),
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(60),
            fallback_after: Duration::ZERO,
            public_url: None,
        }
    }
}

impl NotifyConfig {
    /// Checks what a typo in flags or the config file could get wrong.
    pub fn validate(&self) -> Result<(), NotifyError> {
        let invalid = |reason: String| Err(NotifyError::InvalidConfig { reason });
        if self.backoff_initial.is_zero() {
            return invalid("the initial notification backoff must be above 0 ms".into());
        }
        if self.backoff_max < self.backoff_initial {
            return invalid(format!(
                "the maximum notification backoff ({} ms) is below the initial one ({} ms)",
                self.backoff_max.as_millis(),
                self.backoff_initial.as_millis()
            ));
        }
        if self.request_timeout.is_zero() {
            return invalid("the notification request timeout must be above 0".into());
        }
        if self.breaker_failures == 0 {
            return invalid("the notification breaker threshold must be at least 1 failure".into());
        }
        if self.breaker_cooldown.is_zero() {
            return invalid("the notification breaker cool-down must be above 0 ms".into());
        }
        if let Some(u) = &self.public_url {
            validate_url(u)?;
        }
        let mut names = HashSet::new();
        for (i, r) in self.receivers.iter().enumerate() {
            let at = format!("collector.receivers[{i}]");
            if r.name.is_empty() {
                return invalid(format!("{at}.name: a receiver needs a name"));
            }
            if !names.insert(r.name.as_str()) {
                return invalid(format!(
                    "{at}.name: receiver name {:?} is used twice; names must be unique",
                    r.name
                ));
            }
            validate_url(&r.url)?;
            let present = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
            match r.kind {
                ReceiverKind::Pagerduty if !present(&r.routing_key) => {
                    return invalid(format!(
                        "{at}.routing_key: receiver {:?} of kind pagerduty needs the integration key of an Events API v2 integration",
                        r.name
                    ));
                }
                ReceiverKind::Opsgenie if !present(&r.api_key) => {
                    return invalid(format!(
                        "{at}.api_key: receiver {:?} of kind opsgenie needs the key of an Opsgenie API integration",
                        r.name
                    ));
                }
                _ => {}
            }
            if r.kind != ReceiverKind::Pagerduty && r.routing_key.is_some() {
                return invalid(format!(
                    "{at}.routing_key: only receivers of kind pagerduty take a routing key ({:?} is {})",
                    r.name,
                    r.kind.as_str()
                ));
            }
            if r.kind != ReceiverKind::Opsgenie && r.api_key.is_some() {
                return invalid(format!(
                    "{at}.api_key: only receivers of kind opsgenie take an API key ({:?} is {})",
                    r.name,
                    r.kind.as_str()
                ));
            }
            if r.kind != ReceiverKind::Webhook && r.secret.is_some() {
                return invalid(format!(
                    "{at}.secret: only receivers of kind webhook are signed ({:?} is {})",
                    r.name,
                    r.kind.as_str()
                ));
            }
            if let Some(f) = &r.fallback {
                if f == &r.name {
                    return invalid(format!(
                        "{at}.fallback: {:?} cannot be its own fallback",
                        r.name
                    ));
                }
                if !self.receivers.iter().any(|o| &o.name == f) {
                    return invalid(format!("{at}.fallback: no receiver is named {f:?}"));
                }
            }
        }
        self.policy
            .validate(&self.receivers)
            .map_err(|reason| NotifyError::InvalidConfig { reason })
    }
}

/// Something the notify module could not do.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// A receiver URL is not an absolute http(s) URL with a host. Fix the flag or config.
    #[error(
        "invalid webhook URL {url:?}: {reason}; expected http://HOST[:PORT]/PATH or https://HOST[:PORT]/PATH"
    )]
    InvalidReceiverUrl { url: String, reason: String },
    /// The notify configuration contradicts itself. Fix the flag or config.
    #[error("invalid notification config: {reason}")]
    InvalidConfig { reason: String },
    /// Reading or writing the outbox in the embedded store failed; retrying may help if the
    /// disk was full or busy.
    #[error("notification outbox: {op} failed: {source}")]
    OutboxFailed {
        op: &'static str,
        #[source]
        source: redb::Error,
    },
    /// A stored outbox record does not decode: the store was written by an incompatible
    /// version or damaged. Retrying does not help.
    #[error("notification outbox record {id} is unreadable: {source}")]
    OutboxRecordCorrupt {
        id: u64,
        #[source]
        source: serde_json::Error,
    },
    /// The incident could not be serialised to JSON (a bug; retrying does not help).
    #[error("serialising the notification payload failed: {0}")]
    PayloadEncodeFailed(#[source] serde_json::Error),
    /// The HTTP client could not be built (TLS provider missing or unusable).
    #[error("building the webhook HTTP client failed: {0}")]
    ClientBuildFailed(#[source] reqwest::Error),
    /// The notify metrics could not be registered (registered twice in one registry?).
    #[error("registering notification metrics failed: {0}")]
    MetricsRegistrationFailed(#[source] prometheus::Error),
}

/// Turns `--webhook URL` flags into receivers named `webhook`, `webhook-2`, `webhook-3`, …,
/// all sharing `secret` (`--webhook-secret`).
pub fn receivers_from_urls(
    urls: &[String],
    secret: Option<String>,
) -> Result<Vec<Receiver>, NotifyError> {
    let secret = secret.filter(|s| !s.is_empty());
    urls.iter()
        .enumerate()
        .map(|(i, url)| {
            validate_url(url)?;
            let name = if i == 0 {
                "webhook".to_string()
            } else {
                format!("webhook-{}", i + 1)
            };
            Ok(Receiver::webhook(name, url.clone(), secret.clone()))
        })
        .collect()
}

fn validate_url(url: &str) -> Result<(), NotifyError> {
    let bad = |reason: &str| NotifyError::InvalidReceiverUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(&e.to_string()))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(bad(&format!(
            "scheme {:?} is not http or https",
            parsed.scheme()
        )));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("no host"));
    }
    Ok(())
}

/// The URL a receiver of `kind` uses when the configuration gives `url` (or none).
pub fn receiver_url(kind: ReceiverKind, url: Option<&str>) -> Result<String, NotifyError> {
    match url.filter(|u| !u.is_empty()).or(kind.default_url()) {
        Some(u) => {
            validate_url(u)?;
            Ok(u.to_string())
        }
        None => Err(NotifyError::InvalidConfig {
            reason: format!("a receiver of kind {} needs a url", kind.as_str()),
        }),
    }
}

/// A delivery that gave up after [`NotifyConfig::max_age`], kept for operators to inspect.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The outbox sequence number (enqueue order).
    pub id: u64,
    /// The `X-Daytwo-Delivery` value every attempt carried.
    pub delivery_id: String,
    pub receiver: String,
    pub event: NotifyEvent,
    pub incident_id: String,
    /// How many POSTs were tried.
    pub attempts: u32,
    pub first_enqueued_at: Timestamp,
    pub dead_at: Timestamp,
    /// The last failure: transport error, or HTTP status and body prefix.
    pub last_error: Option<String>,
    /// The exact JSON body that was to be POSTed.
    pub body: String,
    /// A grouped trigger's other incidents (besides `incident_id`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incident_ids: Vec<String>,
}

/// What the pipeline and the API need of notifications: the receivers, the routing policy
/// and the delivery loop's wake-up. Cheap to clone; built by [`Notifier::new`] and handed out
/// with [`Notifier::handle`] (or [`Handle::disabled`] where nothing is ever sent, as in replay).
#[derive(Clone)]
pub struct Handle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    receivers: Vec<Receiver>,
    policy: Policy,
    waker: Notify,
}

impl Handle {
    fn new(receivers: Vec<Receiver>, policy: Policy) -> Handle {
        Handle {
            inner: Arc::new(HandleInner {
                receivers,
                policy,
                waker: Notify::new(),
            }),
        }
    }

    /// A handle with no receivers: [`Handle::enqueue`] queues nothing.
    pub fn disabled() -> Handle {
        Handle::new(Vec::new(), Policy::default())
    }

    /// Queues the notifications of one incident change inside `txn` (see [`enqueue`]), with
    /// this collector's receivers and routing policy. Call [`Handle::wake`] after the commit.
    pub fn enqueue(
        &self,
        txn: &redb::WriteTransaction,
        event: NotifyEvent,
        incident: &daytwo_model::Incident,
        now: Timestamp,
    ) -> Result<(), NotifyError> {
        enqueue(
            txn,
            &self.inner.receivers,
            &self.inner.policy,
            event,
            incident,
            now,
        )
    }

    /// Wakes the delivery loop (after a commit that queued something, or changed silences); a
    /// wake before the loop waits is remembered, not lost.
    pub fn wake(&self) {
        self.inner.waker.notify_one();
    }

    /// The routing policy in force (routes, configured silences, maintenance windows).
    pub fn policy(&self) -> &Policy {
        &self.inner.policy
    }

    /// Puts dead letter `id` back into the outbox, due now with a fresh max age, and wakes the
    /// delivery loop. `None` when there is no dead letter with that id.
    pub fn retry_dead_letter(
        &self,
        db: &Database,
        id: u64,
    ) -> Result<Option<DeadLetter>, NotifyError> {
        let dead = outbox::retry_dead_letter(db, id, now())?;
        if let Some(d) = &dead {
            info!(
                receiver = %d.receiver,
                event = %d.event,
                incident = %d.incident_id,
                delivery = %d.delivery_id,
                "Dead letter queued again on request."
            );
            self.wake();
        }
        Ok(dead)
    }

    /// Stores a silence made through the API ([`silence::add`]).
    pub fn add_silence(
        &self,
        db: &Database,
        new: silence::NewSilence,
    ) -> Result<silence::Silence, silence::SilenceError> {
        let s = silence::add(db, new, now())?;
        info!(silence = %s.id, created_by = %s.created_by, comment = %s.comment, starts_at = %s.starts_at, ends_at = %s.ends_at, "Silence added.");
        Ok(s)
    }

    /// Ends a stored silence now and wakes the loop, so triggers it held go out at once if their
    /// incidents are still open. `None` when there is no such silence.
    pub fn expire_silence(
        &self,
        db: &Database,
        id: &str,
    ) -> Result<Option<silence::Silence>, NotifyError> {
        let s = silence::expire(db, id, now())?;
        if s.is_some() {
            info!(silence = %id, "Silence expired on request.");
            self.wake();
        }
        Ok(s)
    }
}

/// The delivery loop: sends due outbox items until shutdown. Build with [`Notifier::new`],
/// hand [`Notifier::handle`] to the pipeline and the API, then
/// `tokio::spawn(notifier.run(token))`.
pub struct Notifier {
    shared: Arc<Shared>,
    handle: Handle,
}

/// What the loop and its delivery tasks share.
struct Shared {
    db: Arc<Database>,
    receivers: HashMap<String, Receiver>,
    config: NotifyConfig,
    client: reqwest::Client,
    metrics: Metrics,
}

/// What one delivery task learned about its receiver.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The receiver took it.
    Taken,
    /// The receiver failed (transport error or non-2xx).
    Failed,
    /// Nothing was learned (the outbox could not be updated, or the item was not sendable).
    Inconclusive,
}

impl Notifier {
    /// Validates `config`, creates the outbox tables if missing, builds the HTTP client and
    /// registers the `daytwo_notify_*` metrics in `registry`.
    pub fn new(
        db: Arc<Database>,
        config: NotifyConfig,
        registry: &prometheus::Registry,
    ) -> Result<Notifier, NotifyError> {
        config.validate()?;
        let txn = db.begin_write().or_outbox("begin write")?;
        init_tables(&txn)?;
        txn.commit().or_outbox("commit outbox tables")?;
        let client = deliver::build_client(&config)?;
        let metrics = Metrics::register(registry)?;
        let receivers = config
            .receivers
            .iter()
            .map(|r| (r.name.clone(), r.clone()))
            .collect();
        let handle = Handle::new(config.receivers.clone(), config.policy.clone());
        for r in &config.receivers {
            metrics
                .breaker_open
                .with_label_values(&[r.name.as_str()])
                .set(0);
        }
        Ok(Notifier {
            shared: Arc::new(Shared {
                db,
                receivers,
                config,
                client,
                metrics,
            }),
            handle,
        })
    }

    /// What the pipeline and the API use to queue notifications and wake this loop.
    pub fn handle(&self) -> Handle {
        self.handle.clone()
    }

    /// Delivers due items until `shutdown` is cancelled. Returns promptly on shutdown:
    /// in-flight requests are abandoned and their items stay queued for the next start.
    pub async fn run(self, shutdown: CancellationToken) {
        let shared = self.shared;
        let mut tasks: JoinSet<(u64, String, Outcome)> = JoinSet::new();
        let mut in_flight: HashSet<u64> = HashSet::new();
        let mut per_receiver: HashMap<String, usize> = HashMap::new();
        let mut warned_unknown: HashSet<String> = HashSet::new();
        let mut breakers: HashMap<String, Breaker> = HashMap::new();
        loop {
            let fallback_wake = copy_to_fallbacks(&shared, &breakers).await;
            let housekeeping_due = housekeep(&shared).await;
            let mut breaker_wake: Option<tokio::time::Instant> = fallback_wake;
            let sleep_for = match scan(&shared, &in_flight).await {
                Ok(plan) => {
                    shared.metrics.pending.set(plan.pending as i64);
                    for name in plan.unknown_receivers {
                        if warned_unknown.insert(name.clone()) {
                            warn!(
                                receiver = %name,
                                "Queued notifications name a receiver that is not configured; they are kept until max age, then dead-lettered. Configure the receiver again to deliver them."
                            );
                        }
                    }
                    for item in plan.due {
                        let busy = per_receiver
                            .entry(item.record.receiver.clone())
                            .or_default();
                        if *busy >= MAX_IN_FLIGHT_PER_RECEIVER {
                            continue; // picked up again when one of its deliveries finishes
                        }
                        let breaker = breakers.entry(item.record.receiver.clone()).or_default();
                        match breaker.permit(tokio::time::Instant::now()) {
                            Permit::Send => {}
                            Permit::Probe => info!(
                                receiver = %item.record.receiver,
                                delivery = %item.record.delivery_id,
                                "Circuit breaker half-open: sending one notification as a probe."
                            ),
                            Permit::Wait(until) => {
                                if let Some(t) = until {
                                    breaker_wake = Some(breaker_wake.map_or(t, |w| w.min(t)));
                                }
                                continue;
                            }
                        }
                        *busy += 1;
                        in_flight.insert(item.id);
                        tasks.spawn(deliver::deliver(shared.clone(), item));
                    }
                    let now = now();
                    let next_due = match (plan.next_due, housekeeping_due) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    next_due
                        .map(|t| {
                            Duration::from_nanos(
                                t.unix_nanos().saturating_sub(now.unix_nanos()).max(0) as u64,
                            )
                        })
                        .unwrap_or(MAX_IDLE)
                        .min(MAX_IDLE)
                        .min(
                            breaker_wake
                                .map(|t| t.saturating_duration_since(tokio::time::Instant::now()))
                                .unwrap_or(MAX_IDLE),
                        )
                }
                Err(e) => {
                    error!(error = %e, "Reading the notification outbox failed; retrying.");
                    STORE_RETRY
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    finish(&shared, done, &mut in_flight, &mut per_receiver, &mut breakers);
                    while let Some(done) = tasks.try_join_next() {
                        finish(&shared, done, &mut in_flight, &mut per_receiver, &mut breakers);
                    }
                }
                () = self.handle.inner.waker.notified() => {}
                () = tokio::time::sleep(sleep_for) => {}
            }
        }
        tasks.shutdown().await;
    }

    /// Deliveries that gave up, oldest first.
    pub fn dead_letters(db: &Database) -> Result<Vec<DeadLetter>, NotifyError> {
        outbox::dead_letters(db)
    }

    /// How many deliveries are queued (due or waiting for a retry).
    pub fn pending(db: &Database) -> Result<usize, NotifyError> {
        outbox::pending(db)
    }
}

/// Held triggers, grouped messages and repeats that are due; returns when to look again.
async fn housekeep(shared: &Arc<Shared>) -> Option<Timestamp> {
    let s = shared.clone();
    let done = tokio::task::spawn_blocking(move || {
        outbox::housekeep(&s.db, &s.config.receivers, &s.config.policy, now())
    })
    .await;
    match done {
        Ok(Ok(h)) => {
            let m = &shared.metrics;
            m.held.set(h.held as i64);
            m.released.inc_by(h.released as u64);
            m.grouped.inc_by(h.flushed as u64);
            m.repeats.inc_by(h.repeated as u64);
            h.next
        }
        Ok(Err(e)) => {
            error!(error = %e, "Sending held, grouped or repeated notifications failed; will retry.");
            Some(now().plus(STORE_RETRY))
        }
        Err(e) => {
            error!(error = %e, "The notification housekeeping task failed; will retry.");
            Some(now().plus(STORE_RETRY))
        }
    }
}

/// While a receiver with a fallback has had its breaker open for
/// [`NotifyConfig::fallback_after`], copies its queued deliveries (once each) to the fallback
/// receiver. Returns when a breaker that is open but not for long enough yet will be.
async fn copy_to_fallbacks(
    shared: &Arc<Shared>,
    breakers: &HashMap<String, Breaker>,
) -> Option<tokio::time::Instant> {
    let mut wake: Option<tokio::time::Instant> = None;
    let instant = tokio::time::Instant::now();
    for (name, breaker) in breakers {
        let Some(opened) = breaker.opened_at() else {
            continue;
        };
        let Some(to) = shared.receivers.get(name).and_then(|r| r.fallback.clone()) else {
            continue;
        };
        let due = opened + shared.config.fallback_after;
        if due > instant {
            wake = Some(wake.map_or(due, |w| w.min(due)));
            continue;
        }
        let (db, from) = (shared.db.clone(), name.clone());
        let to2 = to.clone();
        let to_kind = shared
            .receivers
            .get(&to)
            .map_or(ReceiverKind::Webhook, |r| r.kind);
        match tokio::task::spawn_blocking(move || {
            outbox::copy_to_fallback(&db, &from, &to2, to_kind, now())
        })
        .await
        {
            Ok(Ok(0)) => {}
            Ok(Ok(n)) => warn!(
                receiver = %name,
                fallback = %to,
                copies = n,
                "Receiver is failing (circuit breaker open): notifications also queued to its fallback."
            ),
            Ok(Err(e)) => {
                error!(receiver = %name, fallback = %to, error = %e, "Queueing notifications to the fallback receiver failed; will retry.")
            }
            Err(e) => {
                error!(receiver = %name, fallback = %to, error = %e, "The fallback copy task failed; will retry.")
            }
        }
    }
    wake
}

fn finish(
    shared: &Shared,
    done: Result<(u64, String, Outcome), tokio::task::JoinError>,
    in_flight: &mut HashSet<u64>,
    per_receiver: &mut HashMap<String, usize>,
    breakers: &mut HashMap<String, Breaker>,
) {
    match done {
        Ok((id, receiver, outcome)) => {
            in_flight.remove(&id);
            if let Some(n) = per_receiver.get_mut(&receiver) {
                *n = n.saturating_sub(1);
            }
            let breaker = breakers.entry(receiver.clone()).or_default();
            let was_open = breaker.is_open();
            match outcome {
                Outcome::Taken => breaker.on_success(),
                Outcome::Failed => {
                    let cfg = &shared.config;
                    if breaker.on_failure(
                        tokio::time::Instant::now(),
                        cfg.breaker_failures,
                        cfg.breaker_cooldown,
                    ) {
                        warn!(
                            receiver = %receiver,
                            failures = cfg.breaker_failures,
                            cooldown = %humantime::format_duration(cfg.breaker_cooldown),
                            fallback = shared.receivers.get(&receiver).and_then(|r| r.fallback.as_deref()).unwrap_or("none"),
                            "Circuit breaker opened: the receiver keeps failing; holding its notifications, then probing."
                        );
                    }
                }
                Outcome::Inconclusive => breaker.on_inconclusive(),
            }
            let open = breaker.is_open();
            if open != was_open {
                shared
                    .metrics
                    .breaker_open
                    .with_label_values(&[receiver.as_str()])
                    .set(open as i64);
                if !open {
                    info!(receiver = %receiver, "Circuit breaker closed: the receiver took a notification.");
                }
            }
        }
        // Tasks are only aborted at shutdown, and a panic is a bug: the item stays queued and
        // its id stays marked in flight until restart, which is the safe direction.
        Err(e) => error!(error = %e, "A notification delivery task failed."),
    }
}

async fn scan(shared: &Arc<Shared>, in_flight: &HashSet<u64>) -> Result<Plan, String> {
    let shared = shared.clone();
    let in_flight = in_flight.clone();
    match tokio::task::spawn_blocking(move || outbox::plan(&shared, &in_flight, now())).await {
        Ok(plan) => plan.map_err(|e| e.to_string()),
        Err(e) => Err(format!("the outbox scan task failed: {e}")),
    }
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}
