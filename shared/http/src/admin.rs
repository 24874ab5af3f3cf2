//! The operator API at `/admin` (JSON, bearer token with the `admin` scope).
//!
//! | method & path                       | what                                           |
//! |-------------------------------------|------------------------------------------------|
//! | `PUT /admin/targets/{id}`           | create (201) or replace (200) a target         |
//! | `PATCH /admin/targets/{id}`         | change some fields (JSON merge patch, RFC 7396) |
//! | `GET /admin/targets`                | `{"targets": [...]}`                           |
//! | `GET /admin/targets/{id}`           | one target                                     |
//! | `DELETE /admin/targets/{id}`        | 204, or 404                                    |
//! | `POST /admin/targets/{id}/test`     | `{"target","ok","detail","latency_ms"}` (audited) |
//! | `PUT /admin/sources/{id}`           | create (201) or replace (200) a webhook source |
//! | `PATCH /admin/sources/{id}`         | change some fields (JSON merge patch, RFC 7396) |
//! | `GET /admin/sources`                | `{"sources": [...]}` (secrets `"***"`)         |
//! | `GET /admin/sources/{id}`           | one source                                     |
//! | `DELETE /admin/sources/{id}`        | 204, or 404                                    |
//! | `GET /admin/entities?entity_type=&cursor=` | `{"entities": [...], "next_cursor"}`: the full export of entities |
//! | `GET /admin/config?prefix=&cursor=` | `{"config": [...], "next_cursor"}`: the full export of configuration |
//! | `GET /admin/audit?target=&resource=&op=&status=&since=&limit=&cursor=` | `{"entries": [...], "next_cursor": ...}` |
//! | `POST /admin/sync`                  | `{"target","filter"?,"user"?,"wait"?}` -> `{"queued": n, "outcome": run}`; `{"target","reconcile":true}` -> `{"reconcile": report}` |
//! | `GET /admin/runs/{run}`             | a sync's or reconcile's outcomes so far        |
//! | `POST /admin/schedule/run?budget=`  | one scheduled cycle now -> its report (pull, reconcile, outbox, dead letters) |
//! | `GET /admin/deadletters?limit=`     | `{"count": n, "dead_letters": [...]}`          |
//! | `POST /admin/deadletters/redrive?limit=` | `{"redriven": n}`                         |
//! | `GET/POST /admin/tokens`, `DELETE /admin/tokens/{id}` | API tokens ([`tokens`])      |
//!
//! Every error is `{"error": "<message>"}` with its status; bad input is a 4xx with the
//! reason, never a 500. Targets and sources always leave redacted (secrets `"***"`), and
//! `"***"` sent back keeps the stored secret (see [`definitions`]); messages never quote
//! a secret.

use axum::Router;
use axum::extract::{RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post, put};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::Principal;
use super::console::session::{AdminGuard, require_admin};
use console_api::changes;
use provisync_core::definitions::DefinitionError;
use provisync_core::queue::{DeadLetter, QueueError};
use provisync_core::store::StoreError;
use provisync_core::sync::audit::{
    AuditEntry, AuditError, AuditOp, AuditQuery, AuditStatus, MAX_LIMIT,
};
use provisync_core::validation::ValidationError;
use provisync_wire as wire;

mod console_api;
mod definitions;
mod held;
mod plan;
mod source_test;
mod sync;
mod tokens;
mod wire_of;

use definitions::*;

pub const BASE_PATH: &str = "/admin";
/// Default and largest number of dead letters listed / redriven in one call.
const DEFAULT_DEAD_LETTERS: usize = 50;
const MAX_DEAD_LETTERS: usize = 1000;

/// An answer of the admin API that is not a success: `{"error": message}`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {message}")]
pub struct AdminError {
    pub status: StatusCode,
    pub message: String,
    /// The definition's field a refusal is about (see [`ValidationError`]).
    pub field: Option<String>,
}

impl AdminError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        AdminError {
            status,
            message: message.into(),
            field: None,
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "missing or invalid admin bearer token",
        )
    }
    /// A failure of the hub itself: logged, and answered without internals.
    pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Self {
        tracing::error!(error = %e, "{context}");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{context}: the hub's storage is unavailable, retry later"),
        )
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            axum::Json(wire::ErrorBody {
                error: self.message,
                field: self.field,
            }),
        )
            .into_response();
        if self.status == StatusCode::PAYLOAD_TOO_LARGE {
            // The rest of the body is not read: the connection cannot be reused, and
            // saying so keeps clients from sending the next request on it.
            resp.headers_mut().insert(
                header::CONNECTION,
                axum::http::HeaderValue::from_static("close"),
            );
        }
        resp
    }
}

/// Target and source definitions (one error type for both).
/// A refused definition: 400, with the field it is about.
impl From<ValidationError> for AdminError {
    fn from(e: ValidationError) -> Self {
        AdminError {
            status: StatusCode::BAD_REQUEST,
            field: Some(e.field.clone()).filter(|f| !f.is_empty()),
            message: e.to_string(),
        }
    }
}

impl From<DefinitionError> for AdminError {
    fn from(e: DefinitionError) -> Self {
        match e {
            DefinitionError::Store(StoreError::Throttled | StoreError::Conflict) => {
                AdminError::new(StatusCode::SERVICE_UNAVAILABLE, "busy, retry later")
            }
            // Names the definition, never the secret.
            DefinitionError::Crypto { noun, .. } | DefinitionError::Corrupt { noun, .. } => {
                tracing::error!(error = %e, "stored {noun} unreadable");
                AdminError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("{e} (was PROVISYNC_SECRET_KEY changed?)"),
                )
            }
            DefinitionError::Placeholder { ref field, .. } => AdminError {
                status: StatusCode::BAD_REQUEST,
                field: Some(field.clone()),
                message: e.to_string(),
            },
            DefinitionError::Contended { .. } => {
                AdminError::new(StatusCode::CONFLICT, e.to_string())
            }
            DefinitionError::Store(e) => AdminError::internal("definitions", e),
        }
    }
}

impl From<AuditError> for AdminError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::BadCursor => AdminError::bad_request("invalid cursor"),
            AuditError::Invalid(m) => AdminError::bad_request(m),
            AuditError::Store(e) => AdminError::internal("audit", e),
        }
    }
}

impl From<QueueError> for AdminError {
    fn from(e: QueueError) -> Self {
        AdminError::internal("queue", e)
    }
}

type AdminResult<T> = Result<T, AdminError>;

/// Time kept in hand, beyond a cycle's or reconcile's budget and its grace, to write the
/// answer before the invocation's deadline ([`crate::AnswerBy`]).
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Longest connection test (`POST /admin/targets/{id}/test`).
const CONNECTION_TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// `requested` for one call, cut to the request's [`crate::AnswerBy`] less the margin.
fn call_time_for(
    req_extensions: &axum::http::Extensions,
    requested: std::time::Duration,
) -> std::time::Duration {
    match req_extensions.get::<crate::AnswerBy>() {
        Some(a) => {
            a.0.saturating_duration_since(tokio::time::Instant::now())
                .saturating_sub(ANSWER_MARGIN)
                .min(requested)
        }
        None => requested,
    }
}

/// A cycle's or reconcile's `requested` budget, fitted inside the request's
/// [`crate::AnswerBy`] (with the phases' grace) if it has one.
fn budget_for(
    req_extensions: &axum::http::Extensions,
    requested: std::time::Duration,
) -> std::time::Duration {
    provisync_core::sync::schedule::budget_within(
        requested,
        req_extensions.get::<crate::AnswerBy>().map(|a| a.0),
        ANSWER_MARGIN,
    )
}

/// The admin router, paths under `/admin`: a bearer token or a console session.
pub fn router(state: AppState) -> Router {
    let guard = AdminGuard {
        auth: state.auth.clone(),
        store: state.hub.store.clone(),
        unauthorized: AdminError::unauthorized,
        forbidden: |m| AdminError::new(StatusCode::FORBIDDEN, m),
    };
    let admin = Router::new()
        .route("/targets", get(list_targets))
        .route(
            "/targets/{id}",
            put(put_target)
                .patch(patch_target)
                .get(get_target)
                .delete(delete_target),
        )
        .route("/targets/{id}/test", post(test_target))
        .route("/targets/{id}/pace", get(target_pace))
        .route("/sources", get(list_sources))
        .route(
            "/sources/{id}",
            put(put_source)
                .patch(patch_source)
                .get(get_source)
                .delete(delete_source),
        )
        .route("/sources/{id}/test", post(source_test::test_source))
        .route("/entities", get(export_entities))
        .route("/config", get(export_config))
        .route("/audit", get(query_audit))
        .route("/sync", post(sync::sync))
        .route("/runs/{id}", get(sync::get_run))
        .route("/schedule/run", post(sync::run_schedule))
        .route("/deadletters", get(dead_letters))
        .route("/deadletters/redrive", post(redrive))
        .merge(console_api::routes())
        .merge(tokens::routes())
        .merge(held::routes())
        .route_layer(from_fn_with_state(state.clone(), changes::audit_changes))
        .route_layer(from_fn_with_state(guard, require_admin::<AdminError>))
        .fallback(|| async { no_admin_endpoint() })
        .method_not_allowed_fallback(|| async {
            AdminError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        });
    Router::new()
        .nest(BASE_PATH, admin)
        .route(BASE_PATH, any(|| async { no_admin_endpoint() }))
        .route(
            &format!("{BASE_PATH}/"),
            any(|| async { no_admin_endpoint() }),
        )
        .with_state(state)
}

fn no_admin_endpoint() -> AdminError {
    AdminError::not_found("no such admin endpoint (e.g. GET /admin/targets, GET /admin/audit)")
}

// ---- helpers -----------------------------------------------------------------------

async fn json_body(state: &AppState, req: Request) -> AdminResult<Value> {
    optional_json_body(state, req)
        .await?
        .ok_or_else(|| AdminError::bad_request("the request body is empty"))
}

/// A JSON object body, or `None` when the body is empty.
async fn optional_json_body(state: &AppState, req: Request) -> AdminResult<Option<Value>> {
    let bytes = crate::body::read_limited(req, state.config.max_body_bytes)
        .await
        .map_err(|e| {
            AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes", e.limit),
            )
        })?;
    if bytes.is_empty() {
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&bytes).map_err(|e| {
        AdminError::bad_request(format!(
            "the request body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !v.is_object() {
        return Err(AdminError::bad_request(
            "the request body must be a JSON object",
        ));
    }
    Ok(Some(v))
}

/// Query parameters into `T` (unknown parameters are an error, so typos do not pass
/// silently as "no filter").
fn query_params<T: serde::de::DeserializeOwned>(raw: Option<String>) -> AdminResult<T> {
    serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::bad_request(format!("invalid query parameters: {e}")))
}

fn parse_limit(raw: Option<&str>, default: usize, max: usize) -> AdminResult<usize> {
    match raw {
        None | Some("") => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(0) | Err(_) => Err(AdminError::bad_request(format!(
                "limit must be a number from 1 to {max}"
            ))),
            Ok(n) => Ok(n.min(max)),
        },
    }
}

// ---- exports (seeding a new site) --------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    entity_type: Option<String>,
    prefix: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn records_of(state: &AppState) -> provisync_core::records::Records {
    provisync_core::records::Records::new(state.hub.directory.store().clone())
}

async fn export_entities(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let p: ExportParams = query_params(raw)?;
    if p.prefix.is_some() {
        return Err(AdminError::bad_request(
            "`prefix` applies to /admin/config; filter entities with `entity_type`",
        ));
    }
    let limit = parse_limit(p.limit.as_deref(), 500, 1000)?;
    let page = records_of(&state)
        .export_entities(
            nonempty(p.entity_type).as_deref(),
            nonempty(p.cursor).as_deref(),
            limit,
        )
        .await
        .map_err(|e| AdminError::internal("entities", e))?;
    Ok(axum::Json(wire::EntitiesPage {
        entities: page.records,
        next_cursor: page.next,
    })
    .into_response())
}

async fn export_config(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let p: ExportParams = query_params(raw)?;
    if p.entity_type.is_some() {
        return Err(AdminError::bad_request(
            "`entity_type` applies to /admin/entities; filter configuration with `prefix`",
        ));
    }
    let limit = parse_limit(p.limit.as_deref(), 500, 1000)?;
    let page = records_of(&state)
        .export_config(
            nonempty(p.prefix).as_deref(),
            nonempty(p.cursor).as_deref(),
            limit,
        )
        .await
        .map_err(|e| AdminError::internal("config", e))?;
    Ok(axum::Json(wire::ConfigPage {
        config: page.records,
        next_cursor: page.next,
    })
    .into_response())
}

// ---- audit -------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    target: Option<String>,
    resource: Option<String>,
    op: Option<String>,
    status: Option<String>,
    since: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn nonempty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}

async fn query_audit(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let p: AuditParams = query_params(raw)?;
    let op = match nonempty(p.op) {
        Some(o) => Some(AuditOp::parse(&o).ok_or_else(|| {
            AdminError::bad_request("unknown op (e.g. create, update, delete, test, sync)")
        })?),
        None => None,
    };
    let status = match nonempty(p.status) {
        Some(s) => Some(AuditStatus::parse(&s).ok_or_else(|| {
            AdminError::bad_request(
                "unknown status (delivered, skipped, retry, failed, dead, refused, linked, queued, unlinked)",
            )
        })?),
        None => None,
    };
    let since = match nonempty(p.since) {
        Some(s) => Some(
            chrono::DateTime::parse_from_rfc3339(&s)
                .map_err(|_| {
                    AdminError::bad_request(
                        "since must be an RFC 3339 timestamp (2025-01-31T00:00:00Z)",
                    )
                })?
                .with_timezone(&chrono::Utc),
        ),
        None => None,
    };
    let q = AuditQuery {
        target: nonempty(p.target),
        resource: nonempty(p.resource),
        op,
        status,
        since,
        limit: parse_limit(p.limit.as_deref(), 100, MAX_LIMIT)?,
        cursor: nonempty(p.cursor),
    };
    if q.target.as_ref().is_some_and(|t| t.len() > 512)
        || q.resource.as_ref().is_some_and(|r| r.len() > 512)
    {
        return Err(AdminError::bad_request("target or resource is too long"));
    }
    let (entries, next) = adm.audit.query(&q).await?;
    Ok(axum::Json(wire::AuditPage {
        entries: entries.iter().map(wire_of::audit_entry).collect(),
        next_cursor: next,
    })
    .into_response())
}

// ---- dead letters ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitParams {
    limit: Option<String>,
}

/// A dead letter as shown: the body as JSON when it is JSON, with any `password` value
/// replaced (events carry passwords sealed, but never show even those).
fn dead_letter_json(d: &DeadLetter) -> wire::DeadLetter {
    fn hide(v: &mut Value) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let lk = k.to_ascii_lowercase();
                    if lk.contains("password") || lk.contains("secret") || lk == "token" {
                        *x = Value::String("***".into());
                    } else {
                        hide(x);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(hide),
            _ => {}
        }
    }
    let body = match serde_json::from_str::<Value>(&d.body) {
        Ok(mut v) => {
            hide(&mut v);
            v
        }
        Err(_) => Value::String(d.body.chars().take(1024).collect()),
    };
    wire::DeadLetter {
        group_id: d.group_id.clone(),
        dedup_id: d.dedup_id.clone(),
        receive_count: d.receive_count,
        body,
    }
}

async fn dead_letters(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let p: LimitParams = query_params(raw)?;
    let limit = parse_limit(p.limit.as_deref(), DEFAULT_DEAD_LETTERS, MAX_DEAD_LETTERS)?;
    let count = adm.queue.dead_letter_count().await?;
    let list: Vec<wire::DeadLetter> = adm
        .queue
        .dead_letters(limit)
        .await?
        .iter()
        .map(dead_letter_json)
        .collect();
    Ok(axum::Json(wire::DeadLetters {
        count,
        dead_letters: list,
    })
    .into_response())
}

async fn redrive(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let p: LimitParams = query_params(raw)?;
    let limit = parse_limit(p.limit.as_deref(), MAX_DEAD_LETTERS, MAX_DEAD_LETTERS)?;
    let n = adm.queue.redrive(limit).await?;
    if n > 0 {
        let entry = AuditEntry::new("", AuditOp::Redrive, AuditStatus::Queued)
            .detail(format!("{n} dead letters sent back to the queue"))
            .actor(principal.to_string());
        if let Err(e) = adm.audit.record(entry).await {
            tracing::warn!(error = %e, "audit entry for a redrive not written");
        }
    }
    tracing::info!(redriven = n, "dead letters redriven");
    Ok(axum::Json(wire::Redriven { redriven: n }).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dead_letter_bodies_hide_passwords() {
        let d = DeadLetter {
            body: json!({"id": "e1", "user": {"password": "v1.abc", "userName": "a"}}).to_string(),
            group_id: "u1".into(),
            dedup_id: "e1".into(),
            receive_count: 5,
        };
        let v = dead_letter_json(&d);
        assert_eq!(v.body["user"]["password"], "***");
        assert_eq!(v.body["user"]["userName"], "a");
    }
}
