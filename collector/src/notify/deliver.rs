//! One delivery attempt: POST the stored body, then record the outcome in the outbox.
//!
//! Never logs a receiver's URL (webhook URLs often carry a token in the path or query):
//! logs and stored errors name the receiver, and reqwest errors are stripped of their URL.

use std::fmt::Write as _;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use reqwest::StatusCode;
use reqwest::header::CONTENT_TYPE;
use sha2::Sha256;
use tracing::{error, info, warn};

use super::outbox::{self, AfterFailure, Due, Record};
use super::{
    DeadLetter, NotifyConfig, NotifyError, Outcome, Receiver, STORE_RETRY, Shared, backoff, render,
};

/// How much of a refusing receiver's answer goes into logs and `last_error`.
const BODY_PREFIX_BYTES: usize = 256;

/// The HTTP client, built once per notifier.
pub(super) fn build_client(config: &NotifyConfig) -> Result<reqwest::Client, NotifyError> {
    // The binary installs ring first thing; doing it here as well (then a no-op) keeps tests
    // and embedders from reqwest's panic when no rustls provider is installed.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("daytwo/", env!("CARGO_PKG_VERSION")))
        .timeout(config.request_timeout)
        .connect_timeout(config.request_timeout)
        // A redirect would turn the POST into a GET; a 3xx is a misconfigured URL, so it is
        // reported like any other non-2xx answer.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(NotifyError::ClientBuildFailed)
}

/// `sha256=<hex HMAC-SHA256 of body keyed with secret>`, the `X-Daytwo-Signature` value.
pub(super) fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(body);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for b in mac.finalize().into_bytes() {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Why an attempt failed.
struct Failure {
    /// The `stage` metric label.
    stage: &'static str,
    /// Stored as `last_error` and logged.
    message: String,
    /// The answer, when the receiver answered.
    status: Option<StatusCode>,
}

/// Sends one due delivery and records the outcome. Returns the item id and receiver name so
/// the loop can release their in-flight slots, and what the attempt says about the receiver
/// (for its circuit breaker).
pub(super) async fn deliver(shared: Arc<Shared>, due: Due) -> (u64, String, Outcome) {
    let Due { id, record } = due;
    let done = |o| (id, record.receiver.clone(), o);
    // The plan only hands out items of configured receivers.
    let Some(receiver) = shared.receivers.get(&record.receiver) else {
        return done(Outcome::Inconclusive);
    };
    let result = post(&shared, receiver, &record).await;
    let outcome = if result.is_ok() {
        Outcome::Taken
    } else {
        Outcome::Failed
    };
    let now = super::now();
    let db = shared.db.clone();
    match result {
        Ok(status) => {
            shared
                .metrics
                .sent
                .with_label_values(&[receiver.name.as_str(), record.event.as_str()])
                .inc();
            match tokio::task::spawn_blocking(move || outbox::delivered(&db, id)).await {
                Ok(Ok(())) => info!(
                    receiver = %receiver.name,
                    event = %record.event,
                    incident = %record.incident_id,
                    delivery = %record.delivery_id,
                    status = status.as_u16(),
                    retries = record.attempts,
                    "Notification delivered."
                ),
                stored => {
                    store_failed(&shared, receiver, &record, outcome_error(stored));
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
        Err(failure) => {
            shared
                .metrics
                .errors
                .with_label_values(&[receiver.name.as_str(), failure.stage])
                .inc();
            let config = &shared.config;
            let wait = backoff::delay(
                config.backoff_initial,
                config.backoff_max,
                record.attempts.saturating_add(1),
                rand::random::<f64>(),
            );
            let max_age = config.max_age;
            let message = failure.message.clone();
            let after = tokio::task::spawn_blocking(move || {
                outbox::fail(&db, id, now, message, wait, max_age)
            })
            .await;
            match after {
                Ok(Ok(AfterFailure::Retry {
                    attempts,
                    next_attempt_at,
                })) => log_retry(receiver, &record, &failure, attempts, next_attempt_at),
                Ok(Ok(AfterFailure::DeadLettered(dead))) => report_dead_letter(&shared, &dead),
                Ok(Ok(AfterFailure::Gone)) => {}
                Ok(Err(e)) => {
                    store_failed(&shared, receiver, &record, e.to_string());
                    tokio::time::sleep(STORE_RETRY).await;
                }
                Err(e) => {
                    store_failed(&shared, receiver, &record, e.to_string());
                    tokio::time::sleep(STORE_RETRY).await;
                }
            }
        }
    }
    done(outcome)
}

async fn post(
    shared: &Shared,
    receiver: &Receiver,
    record: &Record,
) -> Result<StatusCode, Failure> {
    let rendered = render::render(receiver, &record.body, shared.config.public_url.as_deref())
        .map_err(|message| Failure {
            stage: "render",
            message,
            status: None,
        })?;
    let mut request = shared
        .client
        .post(&rendered.url)
        .header(CONTENT_TYPE, "application/json")
        .header("X-Daytwo-Delivery", &record.delivery_id)
        .header("X-Daytwo-Event", record.event.as_str());
    for (name, value) in rendered.headers {
        request = request.header(name, value);
    }
    let response = request
        .body(rendered.body)
        .send()
        .await
        .map_err(transport_failure)?;
    let status = response.status();
    if status.is_success() {
        return Ok(status);
    }
    let prefix = body_prefix(response).await;
    Err(Failure {
        stage: "response",
        message: format!("HTTP {status}: {prefix}"),
        status: Some(status),
    })
}

fn transport_failure(e: reqwest::Error) -> Failure {
    let stage = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "send"
    };
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        let _ = write!(message, ": {s}");
        source = s.source();
    }
    Failure {
        stage,
        message,
        status: None,
    }
}

/// The first bytes of a refusing receiver's answer, on one line.
async fn body_prefix(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while bytes.len() < BODY_PREFIX_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    bytes.truncate(BODY_PREFIX_BYTES);
    let text: String = String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let text = text.trim();
    if text.is_empty() {
        "(empty body)".to_string()
    } else {
        text.to_string()
    }
}

/// 4xx other than 408 and 429 means the receiver will keep refusing until someone fixes the
/// URL, the secret or the receiver: still retried, but said loudly.
fn is_misconfiguration(status: StatusCode) -> bool {
    status.is_client_error()
        && status != StatusCode::REQUEST_TIMEOUT
        && status != StatusCode::TOO_MANY_REQUESTS
}

fn log_retry(
    receiver: &Receiver,
    record: &Record,
    failure: &Failure,
    attempts: u32,
    next_attempt_at: daytwo_model::Timestamp,
) {
    let retry_in = next_attempt_at.abs_diff(super::now());
    let retry_in =
        humantime::format_duration(std::time::Duration::from_millis(retry_in.as_millis() as u64));
    match failure.status {
        Some(status) if is_misconfiguration(status) => warn!(
            receiver = %receiver.name,
            event = %record.event,
            incident = %record.incident_id,
            delivery = %record.delivery_id,
            status = status.as_u16(),
            error = %failure.message,
            attempts,
            %retry_in,
            "The receiver refused the notification; check the receiver's URL, secret and what it accepts. Retrying."
        ),
        _ => warn!(
            receiver = %receiver.name,
            event = %record.event,
            incident = %record.incident_id,
            delivery = %record.delivery_id,
            stage = failure.stage,
            error = %failure.message,
            attempts,
            %retry_in,
            "Notification delivery failed; retrying."
        ),
    }
}

fn store_failed(shared: &Shared, receiver: &Receiver, record: &Record, error: String) {
    shared
        .metrics
        .errors
        .with_label_values(&[receiver.name.as_str(), "store"])
        .inc();
    error!(
        receiver = %receiver.name,
        incident = %record.incident_id,
        delivery = %record.delivery_id,
        error = %error,
        "Recording a notification attempt in the outbox failed; the delivery stays queued and may be sent again with the same delivery id."
    );
}

fn outcome_error(outcome: Result<Result<(), NotifyError>, tokio::task::JoinError>) -> String {
    match outcome {
        Ok(Ok(())) => String::new(),
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Logs and counts a delivery that gave up.
pub(super) fn report_dead_letter(shared: &Shared, dead: &DeadLetter) {
    shared
        .metrics
        .dead_letters
        .with_label_values(&[dead.receiver.as_str()])
        .inc();
    error!(
        receiver = %dead.receiver,
        event = %dead.event,
        incident = %dead.incident_id,
        delivery = %dead.delivery_id,
        attempts = dead.attempts,
        first_enqueued_at = %dead.first_enqueued_at,
        last_error = dead.last_error.as_deref().unwrap_or(""),
        "Notification gave up and was dead-lettered; this page was not delivered. Fix the receiver, then look at the dead letters."
    );
}
