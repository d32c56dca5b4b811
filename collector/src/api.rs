//! The HTTP API, on one port: incidents (list, show, ack, resolve), Alertmanager's webhook in,
//! notification dead letters (list, retry), silences (list, add, expire), `/metrics`,
//! `/healthz`, `/readyz` and `/api/v1/openapi.json`.
//!
//! Entry point: [`router`]. Reads go straight to the store; writes go through the
//! [`Pipeline`] so that the incident change and its notifications commit together. Errors are
//! `{"error": "..."}` with a status code an HTTP client can act on (400, 401, 404, 409, 503).
//! When a token is configured, write calls need `Authorization: Bearer TOKEN`.

use crate::pipeline::{OperationFailed, Pipeline};
use crate::store::{ListFilter, Store};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use daytwo_model::{IncidentStatus, Severity, Timestamp};
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Deserialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
pub struct ApiState {
    pub pipeline: Arc<Mutex<Pipeline>>,
    pub store: Store,
    /// Dead-letter retries and silences, wired to the collector's delivery loop.
    pub notify: crate::notify::Handle,
    pub registry: Registry,
    pub token: Option<String>,
    pub ready: Arc<AtomicBool>,
    pub metrics: crate::metrics::Metrics,
}

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(crate::page::index))
        .route("/incidents/{id}", get(crate::page::incident))
        .route("/api/v1/incidents", get(list_incidents))
        .route("/api/v1/incidents/{id}", get(get_incident))
        .route("/api/v1/incidents/{id}/ack", post(ack_incident))
        .route("/api/v1/incidents/{id}/resolve", post(resolve_incident))
        .route("/api/v1/alerts/alertmanager", post(alertmanager_webhook))
        .route("/api/v1/notifications/dead", get(list_dead_letters))
        .route(
            "/api/v1/notifications/dead/{id}/retry",
            post(retry_dead_letter),
        )
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({"error": self.1}))).into_response()
    }
}

impl From<OperationFailed> for ApiError {
    fn from(e: OperationFailed) -> Self {
        let code = match &e {
            OperationFailed::NotFound(_) => StatusCode::NOT_FOUND,
            OperationFailed::Conflict { .. } => StatusCode::CONFLICT,
            OperationFailed::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(code, e.to_string())
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    severity: Option<String>,
    host: Option<String>,
    cluster: Option<String>,
    namespace: Option<String>,
    entity: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
}

fn parse_time(param: &str, v: Option<String>) -> Result<Option<Timestamp>, ApiError> {
    v.map(|s| {
        Timestamp::parse_rfc3339(&s).map_err(|e| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("{param}={s:?}: {e}; expected RFC 3339 like 2026-11-25T14:00:00Z"),
            )
        })
    })
    .transpose()
}

async fn list_incidents(
    State(st): State<ApiState>,
    q: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{e}; known parameters: status, severity, host, cluster, namespace, entity, since, until, limit, cursor"),
        )
    })?;
    let status = q
        .status
        .map(|s| {
            IncidentStatus::parse(&s).ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("status={s:?}: expected open, acknowledged or resolved"),
                )
            })
        })
        .transpose()?;
    let severity = q
        .severity
        .map(|s| {
            Severity::parse(&s).ok_or_else(|| {
                ApiError(
                    StatusCode::BAD_REQUEST,
                    format!("severity={s:?}: expected info, warning or critical"),
                )
            })
        })
        .transpose()?;
    if let Some(c) = &q.cursor {
        let valid = c
            .split_once(':')
            .is_some_and(|(t, id)| t.parse::<i64>().is_ok() && !id.is_empty());
        if !valid {
            return Err(ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "cursor={c:?}: not a cursor this server gave out; pass the previous page's `next` unchanged"
                ),
            ));
        }
    }
    let filter = ListFilter {
        status,
        severity,
        host: q.host,
        cluster: q.cluster,
        namespace: q.namespace,
        entity: q.entity,
        since: parse_time("since", q.since)?,
        until: parse_time("until", q.until)?,
        limit: q.limit.unwrap_or(100),
        cursor: q.cursor,
    };
    let store = st.store.clone();
    let (incidents, next) = tokio::task::spawn_blocking(move || store.list_incidents(&filter))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(
        serde_json::json!({"incidents": incidents, "next": next}),
    ))
}

async fn get_incident(
    State(st): State<ApiState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let store = st.store.clone();
    let lookup = id.clone();
    let inc = tokio::task::spawn_blocking(move || store.get_incident(&lookup))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    match inc {
        Some(inc) => Ok(Json(inc).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("incident {id} not found"),
        )),
    }
}

fn authorize(st: &ApiState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &st.token else {
        return Ok(());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError(StatusCode::UNAUTHORIZED, "the bearer token is wrong".into())),
        None => Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "this call needs Authorization: Bearer TOKEN (daytwo incidents --token, env DAYTWO_TOKEN)".into(),
        )),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn transition(
    st: ApiState,
    headers: HeaderMap,
    id: String,
    resolve: bool,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let pipeline = st.pipeline.clone();
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let inc = tokio::task::spawn_blocking(move || {
        let mut p = pipeline.lock().unwrap_or_else(|e| e.into_inner());
        if resolve {
            p.resolve(&id, now)
        } else {
            p.acknowledge(&id, now)
        }
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(inc).into_response())
}

async fn ack_incident(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    transition(st, headers, id, false).await
}

async fn resolve_incident(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    transition(st, headers, id, true).await
}

/// Alertmanager's webhook in (`webhook_configs: [{url: http://daytwo:7700/api/v1/alerts/alertmanager}]`).
/// Answers 200 once the alerts are stored, so Alertmanager retries what we could not take.
async fn alertmanager_webhook(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<crate::alertmanager::Webhook>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    authorize(&st, &headers)?;
    let Json(hook) = body.map_err(|e| {
        st.metrics.alerts_rejected.inc();
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("not an Alertmanager webhook payload: {}", e.body_text()),
        )
    })?;
    let mut signals = Vec::new();
    let mut rejected = Vec::new();
    for r in crate::alertmanager::signals_from_webhook(&hook) {
        match r {
            Ok(s) => {
                st.metrics
                    .alerts_received
                    .with_label_values(&[if s.name == crate::alertmanager::FIRING {
                        "firing"
                    } else {
                        "resolved"
                    }])
                    .inc();
                signals.push(s)
            }
            Err(e) => {
                st.metrics.alerts_rejected.inc();
                rejected.push(e.to_string());
            }
        }
    }
    if signals.is_empty() && !rejected.is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, rejected.join("; ")));
    }
    let pipeline = st.pipeline.clone();
    let summary = tokio::task::spawn_blocking(move || {
        let mut p = pipeline.lock().unwrap_or_else(|e| e.into_inner());
        p.ingest(signals)
    })
    .await
    .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??;
    Ok(Json(serde_json::json!({
        "accepted": summary.accepted,
        "duplicates": summary.duplicates,
        "incidents_opened": summary.opened,
        "rejected": rejected,
    })))
}

/// Notifications that gave up, oldest first: `{"dead_letters":[…]}`.
async fn list_dead_letters(State(st): State<ApiState>) -> Result<Response, ApiError> {
    let db = st.store.db();
    let dead = tokio::task::spawn_blocking(move || crate::notify::Notifier::dead_letters(&db))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    Ok(Json(serde_json::json!({ "dead_letters": dead })).into_response())
}

/// Queues a dead letter again (202 with the dead letter as it was); token-protected like ack.
async fn retry_dead_letter(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let id: u64 = id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("dead letter id {id:?} is not a number; see GET /api/v1/notifications/dead"),
        )
    })?;
    let db = st.store.db();
    let notify = st.notify.clone();
    let dead = tokio::task::spawn_blocking(move || notify.retry_dead_letter(&db, id))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    match dead {
        Some(d) => Ok((StatusCode::ACCEPTED, Json(d)).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no dead letter {id}; see GET /api/v1/notifications/dead"),
        )),
    }
}

fn wall_clock() -> Timestamp {
    Timestamp::from_system_time(std::time::SystemTime::now())
}

/// A silence as the API shows it: the stored fields plus `state` and `source` (`api`, or
/// `config` for `collector.silences` from the configuration file, ids `config-N`).
fn silence_view(
    s: &crate::notify::silence::Silence,
    source: &str,
    now: Timestamp,
) -> serde_json::Value {
    let mut v = serde_json::to_value(s).unwrap_or_default();
    v["state"] = serde_json::json!(s.state(now));
    v["source"] = serde_json::json!(source);
    v
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SilenceQuery {
    state: Option<String>,
}

/// `{"silences":[…]}`: stored silences newest first, then the configuration file's.
async fn list_silences(
    State(st): State<ApiState>,
    q: Result<Query<SilenceQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{e}; known parameters: state"),
        )
    })?;
    if let Some(s) = &q.state
        && !matches!(s.as_str(), "active" | "pending" | "expired")
    {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            format!("state={s:?}: expected active, pending or expired"),
        ));
    }
    let db = st.store.db();
    let stored = tokio::task::spawn_blocking(move || crate::notify::silence::list(&db))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    let now = wall_clock();
    let configured = st
        .notify
        .policy()
        .silences
        .iter()
        .enumerate()
        .map(|(i, c)| crate::notify::silence::Silence {
            id: format!("config-{i}"),
            matcher: c.matcher.clone(),
            starts_at: c.starts_at,
            ends_at: c.ends_at,
            created_by: "configuration file".into(),
            comment: c.comment.clone(),
            created_at: c.starts_at,
            expired_at: None,
        });
    let all: Vec<serde_json::Value> = stored
        .iter()
        .map(|s| silence_view(s, "api", now))
        .chain(configured.map(|s| silence_view(&s, "config", now)))
        .filter(|v| q.state.as_deref().is_none_or(|want| v["state"] == want))
        .collect();
    Ok(Json(serde_json::json!({ "silences": all })))
}

/// Creates a silence (201 with it); token-protected like ack.
async fn add_silence(
    State(st): State<ApiState>,
    headers: HeaderMap,
    body: Result<Json<crate::notify::silence::NewSilence>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    let Json(new) = body.map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!(
                "not a silence: {}; expected {{\"match\":{{…}},\"ends_at\" or \"duration_secs\",\"created_by\",\"comment\"}}",
                e.body_text()
            ),
        )
    })?;
    let db = st.store.db();
    let notify = st.notify.clone();
    let made = tokio::task::spawn_blocking(move || notify.add_silence(&db, new))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match made {
        Ok(s) => Ok((
            StatusCode::CREATED,
            Json(silence_view(&s, "api", wall_clock())),
        )
            .into_response()),
        Err(crate::notify::silence::SilenceError::Invalid(m)) => {
            Err(ApiError(StatusCode::BAD_REQUEST, m))
        }
        Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())),
    }
}

/// Expires a silence now (200 with it); triggers it held go out if their incidents are still
/// open. Token-protected.
async fn expire_silence(
    State(st): State<ApiState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    authorize(&st, &headers)?;
    if id.starts_with("config-") {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!(
                "silence {id} comes from the configuration file (collector.silences); edit the file and restart to lift it"
            ),
        ));
    }
    let db = st.store.db();
    let notify = st.notify.clone();
    let lookup = id.clone();
    let s = tokio::task::spawn_blocking(move || notify.expire_silence(&db, &lookup))
        .await
        .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    match s {
        Some(s) => Ok(Json(silence_view(&s, "api", wall_clock())).into_response()),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no silence {id}; see GET /api/v1/silences"),
        )),
    }
}

async fn metrics(State(st): State<ApiState>) -> Response {
    let mut buf = Vec::new();
    let enc = TextEncoder::new();
    if let Err(e) = enc.encode(&st.registry.gather(), &mut buf) {
        return ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, enc.format_type().to_string())], buf).into_response()
}

async fn readyz(State(st): State<ApiState>) -> Response {
    if st.ready.load(Ordering::Acquire) {
        "ready\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "starting\n").into_response()
    }
}

async fn openapi() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
        .into_response()
}
