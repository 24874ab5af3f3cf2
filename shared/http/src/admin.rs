//! The operator API at `/admin` (JSON, bearer token with the `admin` scope).
//!
//! | method & path                       | what                                           |
//! |-------------------------------------|------------------------------------------------|
//! | `PUT /admin/targets/{id}`           | create (201) or replace (200) a target         |
//! | `GET /admin/targets`                | `{"targets": [...]}`                           |
//! | `GET /admin/targets/{id}`           | one target                                     |
//! | `DELETE /admin/targets/{id}`        | 204, or 404                                    |
//! | `POST /admin/targets/{id}/test`     | `{"target","ok","detail","latency_ms"}` (audited) |
//! | `PUT /admin/sources/{id}`           | create (201) or replace (200) a webhook source |
//! | `GET /admin/sources`                | `{"sources": [...]}` (secrets `"***"`)         |
//! | `GET /admin/sources/{id}`           | one source                                     |
//! | `DELETE /admin/sources/{id}`        | 204, or 404                                    |
//! | `GET /admin/entities?entity_type=&cursor=` | `{"entities": [...], "next_cursor"}`: the full export of entities |
//! | `GET /admin/config?prefix=&cursor=` | `{"config": [...], "next_cursor"}`: the full export of configuration |
//! | `GET /admin/audit?target=&resource=&op=&status=&since=&limit=&cursor=` | `{"entries": [...], "next_cursor": ...}` |
//! | `POST /admin/sync`                  | `{"target","filter"?,"user"?}` -> `{"queued": n}`; `{"target","reconcile":true}` -> `{"reconcile": report}` |
//! | `POST /admin/schedule/run?budget=`  | one scheduled cycle now -> its report (pull, reconcile, outbox, dead letters) |
//! | `GET /admin/deadletters?limit=`     | `{"count": n, "dead_letters": [...]}`          |
//! | `POST /admin/deadletters/redrive?limit=` | `{"redriven": n}`                         |
//!
//! Every error is `{"error": "<message>"}` with its status; bad input is a 4xx with the
//! reason, never a 500. Targets always leave redacted (secrets `"***"`); messages never
//! quote a secret.

use std::time::Instant;

use axum::Router;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::Value;

use super::AppState;
use super::auth::{Principal, RequireToken, Scope, require_token};
use provisync_core::definitions::DefinitionError;
use provisync_core::queue::{DeadLetter, QueueError};
use provisync_core::source::{SourceConfig, check_source_id};
use provisync_core::store::StoreError;
use provisync_core::sync::audit::{
    AuditEntry, AuditError, AuditOp, AuditQuery, AuditStatus, MAX_LIMIT,
};
use provisync_core::sync::ondemand::OnDemandError;
use provisync_core::target::{TargetConfig, check_target_id};
use provisync_core::validation::ValidationError;
use provisync_scim::ResourceKind;
use provisync_wire as wire;

mod wire_of;

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
    fn internal(context: &str, e: impl std::fmt::Display) -> Self {
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

/// The admin router, paths already under `/admin`.
/// The admin router, paths under `/admin`.
pub fn router(state: AppState) -> Router {
    let guard = RequireToken {
        auth: state.auth.clone(),
        scope: Scope::Admin,
        unauthorized: AdminError::unauthorized,
    };
    let admin = Router::new()
        .route("/targets", get(list_targets))
        .route(
            "/targets/{id}",
            put(put_target).get(get_target).delete(delete_target),
        )
        .route("/targets/{id}/test", post(test_target))
        .route("/sources", get(list_sources))
        .route(
            "/sources/{id}",
            put(put_source).get(get_source).delete(delete_source),
        )
        .route("/entities", get(export_entities))
        .route("/config", get(export_config))
        .route("/audit", get(query_audit))
        .route("/sync", post(sync))
        .route("/schedule/run", post(run_schedule))
        .route("/deadletters", get(dead_letters))
        .route("/deadletters/redrive", post(redrive))
        .route_layer(from_fn_with_state(guard, require_token::<AdminError>))
        .fallback(|| async { AdminError::not_found("no such admin endpoint") })
        .method_not_allowed_fallback(|| async {
            AdminError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this endpoint",
            )
        });
    Router::new().nest(BASE_PATH, admin).with_state(state)
}

// ---- helpers -----------------------------------------------------------------------

async fn json_body(state: &AppState, req: Request) -> AdminResult<Value> {
    let bytes = crate::body::read_limited(req, state.config.max_body_bytes)
        .await
        .map_err(|e| {
            AdminError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the request body is larger than {} bytes", e.limit),
            )
        })?;
    if bytes.is_empty() {
        return Err(AdminError::bad_request("the request body is empty"));
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
    Ok(v)
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

fn redacted_json(t: &TargetConfig) -> Value {
    serde_json::to_value(t.redacted()).unwrap_or(Value::Null)
}

fn known_kinds() -> Vec<&'static str> {
    KIND_FIELDS.iter().map(|(k, _)| *k).collect()
}

/// Whether `field` belongs in a definition of this kind.
fn is_known_field(kind: &str, field: &str) -> bool {
    let kind_fields: &[&str] = KIND_FIELDS
        .iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, f)| *f)
        .unwrap_or(&[]);
    COMMON_FIELDS.contains(&field) || kind_fields.contains(&field)
}

use provisync_core::target::{COMMON_FIELDS, KIND_FIELDS};

/// Every scalar under a secret-bearing key (`auth`, `password`, `bearer`, `token`,
/// `secret`), to scrub them from parser messages that quote input values.
fn secret_values(v: &Value, inside: bool, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let k = k.to_ascii_lowercase();
                let secret = inside
                    || ["auth", "password", "bearer", "token", "secret"]
                        .iter()
                        .any(|s| k.contains(s));
                // Keys inside `auth` can be the secret too (`{"auth": {"tok…": 1}}`).
                if secret && inside {
                    out.push(k.clone());
                }
                secret_values(x, secret, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| secret_values(x, inside, out)),
        Value::String(s) if inside => out.push(s.clone()),
        Value::Number(n) if inside => out.push(n.to_string()),
        _ => {}
    }
}

/// A parser message with every secret value of `body` replaced by `***`.
fn scrub(message: String, body: &Value) -> String {
    let mut secrets = Vec::new();
    secret_values(body, false, &mut secrets);
    let mut m = message;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if m.contains(s.as_str()) {
            if s.len() < 4 {
                return "invalid auth: expected {\"bearer\": \"<token>\"} or {\"basic\": {\"username\": \"…\", \"password\": \"…\"}}".into();
            }
            m = m.replace(s.as_str(), "***");
        }
    }
    m
}

/// A target definition from a request body (`id` from the path).
fn parse_target(id: &str, mut body: Value) -> AdminResult<TargetConfig> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| AdminError::bad_request("the request body must be a JSON object"))?;
    let kind = match obj.get("kind") {
        Some(Value::String(k)) if known_kinds().contains(&k.as_str()) => k.clone(),
        Some(Value::String(k)) => {
            return Err(AdminError::bad_request(format!(
                "unknown target kind {:?} (known: {})",
                k.chars().take(64).collect::<String>(),
                known_kinds().join(", ")
            )));
        }
        Some(_) => return Err(AdminError::bad_request("`kind` must be a string")),
        None => {
            return Err(AdminError::bad_request(format!(
                "`kind` is required (one of: {})",
                known_kinds().join(", ")
            )));
        }
    };
    let mut unknown: Vec<&str> = obj
        .keys()
        .map(String::as_str)
        .filter(|k| !is_known_field(&kind, k))
        .collect();
    if !unknown.is_empty() {
        unknown.sort_unstable();
        let shown: Vec<String> = unknown
            .iter()
            .take(10)
            .map(|k| format!("{:?}", k.chars().take(64).collect::<String>()))
            .collect();
        return Err(AdminError::bad_request(format!(
            "unknown field(s) for a {kind} target: {}",
            shown.join(", ")
        )));
    }
    match obj.get("id") {
        Some(Value::String(b)) if b == id => {}
        None => {}
        Some(_) => {
            return Err(AdminError::bad_request(
                "`id` in the body must match the id in the URL (or be left out)",
            ));
        }
    }
    obj.insert("id".into(), Value::String(id.to_string()));
    let snapshot = body.clone();
    serde_json::from_value::<TargetConfig>(body).map_err(|e| {
        AdminError::bad_request(scrub(format!("invalid target definition: {e}"), &snapshot))
    })
}

// ---- targets -----------------------------------------------------------------------

async fn put_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> AdminResult<Response> {
    let adm = &state.hub;
    check_target_id(&id)?;
    let body = json_body(&state, req).await?;
    let target = parse_target(&id, body)?;
    target.validate(state.hub.directory.schemas())?;
    let created = adm.targets.put(&target).await?;
    tracing::info!(target = %id, kind = target.kind_name(), created, "target saved");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(redacted_json(&target))).into_response())
}

async fn list_targets(State(state): State<AppState>) -> AdminResult<Response> {
    let adm = &state.hub;
    let list: Vec<Value> = adm
        .targets
        .list()
        .await?
        .iter()
        .map(redacted_json)
        .collect();
    Ok(axum::Json(wire::TargetList { targets: list }).into_response())
}

async fn load_target(adm: &provisync_core::hub::Hub, id: &str) -> AdminResult<TargetConfig> {
    adm.targets.get(id).await?.ok_or_else(|| {
        AdminError::not_found(format!(
            "no target {:?}",
            id.chars().take(64).collect::<String>()
        ))
    })
}

async fn get_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let t = load_target(adm, &id).await?;
    Ok(axum::Json(redacted_json(&t)).into_response())
}

async fn delete_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    if adm.targets.delete(&id).await? {
        tracing::info!(target = %id, "target deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(AdminError::not_found(format!(
            "no target {:?}",
            id.chars().take(64).collect::<String>()
        )))
    }
}

async fn test_target(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    extensions: http::Extensions,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let target = load_target(adm, &id).await?;
    let started = Instant::now();
    // A target that hangs gets an answer (not ok) before the invocation ends.
    let limit = call_time_for(&extensions, CONNECTION_TEST_TIMEOUT);
    let result = match (adm.connectors)(&target) {
        Ok(connector) => match tokio::time::timeout(limit, connector.test()).await {
            Ok(r) => r.map_err(|e| e.to_string()),
            Err(_) => Err(format!("no answer within {} ms", limit.as_millis())),
        },
        Err(e) => Err(e.0),
    };
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let (ok, detail) = match result {
        Ok(d) => (true, d),
        Err(e) => (false, e),
    };
    // Connector messages never carry secrets by contract; scrub anyway.
    let mut detail = detail;
    for s in target.secrets().iter().filter(|s| !s.is_empty()) {
        detail = detail.replace(s.as_str(), "***");
    }
    let entry = AuditEntry::new(
        &id,
        AuditOp::Test,
        if ok {
            AuditStatus::Delivered
        } else {
            AuditStatus::Failed
        },
    )
    .detail(detail.clone())
    .latency_ms(latency_ms)
    .actor(principal.to_string());
    if let Err(e) = adm.audit.record(entry).await {
        tracing::warn!(error = %e, target = %id, "audit entry for a connection test not written");
    }
    tracing::info!(target = %id, ok, latency_ms, "connection test");
    Ok(axum::Json(wire::TargetTest {
        target: id,
        ok,
        detail,
        latency_ms,
    })
    .into_response())
}

// ---- sources -----------------------------------------------------------------------

/// A source definition from a request body (`id` from the path). A single `"secret"` is
/// accepted and becomes `"secrets": [it]`.
fn parse_source(id: &str, mut body: Value) -> AdminResult<SourceConfig> {
    let obj = body
        .as_object_mut()
        .ok_or_else(|| AdminError::bad_request("the request body must be a JSON object"))?;
    match obj.get("id") {
        Some(Value::String(b)) if b == id => {}
        None => {}
        Some(_) => {
            return Err(AdminError::bad_request(
                "`id` in the body must match the id in the URL (or be left out)",
            ));
        }
    }
    obj.insert("id".into(), Value::String(id.to_string()));
    if let Some(secret) = obj.remove("secret") {
        if obj.contains_key("secrets") {
            return Err(AdminError::bad_request(
                "give either `secret` or `secrets`, not both",
            ));
        }
        if !secret.is_string() {
            return Err(AdminError::bad_request("`secret` must be a string"));
        }
        obj.insert("secrets".into(), Value::Array(vec![secret]));
    }
    let snapshot = body.clone();
    serde_json::from_value::<SourceConfig>(body).map_err(|e| {
        AdminError::bad_request(scrub(format!("invalid source definition: {e}"), &snapshot))
    })
}

fn redacted_source(s: &SourceConfig) -> Value {
    serde_json::to_value(s.redacted()).unwrap_or(Value::Null)
}

async fn put_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> AdminResult<Response> {
    let adm = &state.hub;
    check_source_id(&id)?;
    let body = json_body(&state, req).await?;
    let source = parse_source(&id, body)?;
    source.validate()?;
    let created = adm.sources.put(&source).await?;
    tracing::info!(source = %id, created, "source saved");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, axum::Json(redacted_source(&source))).into_response())
}

async fn list_sources(State(state): State<AppState>) -> AdminResult<Response> {
    let adm = &state.hub;
    let list: Vec<Value> = adm
        .sources
        .list()
        .await?
        .iter()
        .map(redacted_source)
        .collect();
    Ok(axum::Json(wire::SourceList { sources: list }).into_response())
}

fn no_source(id: &str) -> AdminError {
    AdminError::not_found(format!(
        "no source {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

async fn get_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let s = adm.sources.get(&id).await?.ok_or_else(|| no_source(&id))?;
    Ok(axum::Json(redacted_source(&s)).into_response())
}

async fn delete_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    if adm.sources.delete(&id).await? {
        tracing::info!(source = %id, "source deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_source(&id))
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
                "unknown status (delivered, skipped, retry, failed, dead, refused, linked, queued)",
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

// ---- on-demand sync ----------------------------------------------------------------

/// Time a reconcile asked for through the API runs at most (API Gateway answers within
/// 29 s); a larger target continues in the next scheduled cycle from its checkpoint.
const ON_DEMAND_RECONCILE_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);
/// Time kept in hand, beyond a cycle's or reconcile's budget and its grace, to write the
/// answer before the invocation's deadline ([`crate::AnswerBy`]).
const ANSWER_MARGIN: std::time::Duration = std::time::Duration::from_secs(3);

/// Longest connection test (`POST /admin/targets/{id}/test`).
const CONNECTION_TEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(25);

/// `requested` for one call, cut to the request's [`crate::AnswerBy`] less the margin.
fn call_time_for(
    req_extensions: &http::Extensions,
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
    req_extensions: &http::Extensions,
    requested: std::time::Duration,
) -> std::time::Duration {
    provisync_core::sync::schedule::budget_within(
        requested,
        req_extensions.get::<crate::AnswerBy>().map(|a| a.0),
        ANSWER_MARGIN,
    )
}

async fn sync(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let budget = budget_for(req.extensions(), ON_DEMAND_RECONCILE_BUDGET);
    let bounded = req.extensions().get::<crate::AnswerBy>().is_some();
    let body = json_body(&state, req).await?;
    let r: wire::SyncRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid sync request: {e}")))?;
    let filter_text = nonempty(r.filter);
    let user = nonempty(r.user);
    if filter_text.is_some() && user.is_some() {
        return Err(AdminError::bad_request("give `filter` or `user`, not both"));
    }
    if r.reconcile {
        if filter_text.is_some() || user.is_some() {
            return Err(AdminError::bad_request(
                "`reconcile` covers the whole target: give no `filter` or `user`",
            ));
        }
        let target = load_target(adm, &r.target).await?;
        if !target.enabled {
            return Err(AdminError::new(
                StatusCode::CONFLICT,
                format!("target {:?} is disabled", target.id),
            ));
        }
        // Inside an invocation, a target that hangs is given up in time (lease released).
        let reconciler = match bounded {
            true => adm.reconciler.bounded(),
            false => adm.reconciler.clone(),
        };
        let deadline = tokio::time::Instant::now() + budget;
        // The report says how it went (complete, suspended, busy: another cycle holds
        // the target, failed: why).
        let report = reconciler.reconcile_target(&target, deadline).await;
        return Ok(axum::Json(wire::SyncReconciled {
            reconcile: wire_of::reconcile_report(&report),
        })
        .into_response());
    }
    let filter = match &filter_text {
        Some(f) => {
            let parsed = provisync_scim::filter::parse(f)
                .map_err(|e| AdminError::bad_request(format!("invalidFilter: {}", e.detail)))?;
            parsed
                .validate(&state.hub.directory.schemas().view(ResourceKind::User))
                .map_err(|e| AdminError::bad_request(format!("invalidFilter: {}", e.detail)))?;
            Some(parsed)
        }
        None => None,
    };
    let target = load_target(adm, &r.target).await?;
    if !target.enabled {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("target {:?} is disabled", target.id),
        ));
    }
    let queued = adm
        .on_demand
        .enqueue_sync(&target.id, filter, user.clone())
        .await
        .map_err(|e| match e {
            OnDemandError::NotFound(m) => AdminError::not_found(m),
            OnDemandError::Failed(m) => AdminError::internal("on-demand sync", m),
        })?;
    let detail = match (&filter_text, &user) {
        (Some(f), _) => format!("{queued} queued, filter: {f}"),
        (None, Some(u)) => format!("{queued} queued, user {u}"),
        (None, None) => format!("{queued} queued, all users"),
    };
    let mut entry = AuditEntry::new(&target.id, AuditOp::Sync, AuditStatus::Queued)
        .detail(detail)
        .actor(principal.to_string());
    if let Some(u) = &user {
        entry = entry.resource("User", u);
    }
    if let Err(e) = adm.audit.record(entry).await {
        tracing::warn!(error = %e, "audit entry for an on-demand sync not written");
    }
    tracing::info!(target = %target.id, queued, "on-demand sync queued");
    Ok(axum::Json(wire::SyncQueued { queued }).into_response())
}

// ---- schedule --------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleParams {
    budget: Option<String>,
}

/// One scheduled cycle now (`provisync run-schedule`): the same code as the timer and
/// the `scheduled-sync` function. `budget`: seconds, default 25, at most 240; in Lambda
/// cut to what the invocation has left ([`crate::AnswerBy`]), so the cycle ends (and its
/// reconcile leases are released) before the function's timeout.
async fn run_schedule(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    extensions: http::Extensions,
) -> AdminResult<Response> {
    let params: ScheduleParams = serde_urlencoded::from_str(raw.as_deref().unwrap_or(""))
        .map_err(|e| AdminError::bad_request(format!("invalid query: {e}")))?;
    let budget = match params.budget.as_deref() {
        None => 25,
        Some(b) => b
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=240).contains(n))
            .ok_or_else(|| AdminError::bad_request("budget must be 1 to 240 seconds"))?,
    };
    // Inside an invocation, every phase is stopped in time (leases released).
    let schedule = match extensions.get::<crate::AnswerBy>() {
        Some(_) => state.hub.schedule().bounded(),
        None => state.hub.schedule(),
    };
    let budget = budget_for(&extensions, std::time::Duration::from_secs(budget));
    let report = provisync_core::sync::schedule::run_schedule(&schedule, budget)
        .await
        .map_err(|e| AdminError::internal("sync cycle", e.to_string()))?;
    Ok(axum::Json(wire_of::cycle_report(&report)).into_response())
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
    fn parser_messages_never_quote_secrets() {
        let body = json!({"kind": "scim", "base_url": "https://x", "auth": {"bearer": 123456}});
        let e = parse_target("t", body).unwrap_err();
        assert!(!e.message.contains("123456"), "{}", e.message);
        let body = json!({"kind": "scim", "base_url": "https://x", "auth": "sekrit-token"});
        let e = parse_target("t", body).unwrap_err();
        assert!(!e.message.contains("sekrit-token"), "{}", e.message);
        let body = json!({"kind": "scim", "base_url": "https://x", "auth": {"tok-abcdef": "x"}});
        let e = parse_target("t", body).unwrap_err();
        assert!(!e.message.contains("tok-abcdef"), "{}", e.message);
        let body = json!({"kind": "scim", "base_url": "https://x", "auth": {"basic": {"username": "u", "password": false}}});
        let e = parse_target("t", body).unwrap_err();
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn unknown_kinds_and_fields() {
        let e = parse_target("t", json!({"kind": "ldap"})).unwrap_err();
        assert!(e.message.contains("unknown target kind"), "{}", e.message);
        let e = parse_target("t", json!({"base_url": "https://x"})).unwrap_err();
        assert!(e.message.contains("`kind` is required"));
        let e = parse_target(
            "t",
            json!({"kind": "scim", "base_url": "https://x", "auth": {"bearer": "a"}, "scopeFilter": "x"}),
        )
        .unwrap_err();
        assert!(e.message.contains("scopeFilter"), "{}", e.message);
        let e = parse_target(
            "t",
            json!({"id": "other", "kind": "scim", "base_url": "https://x", "auth": {"bearer": "a"}}),
        )
        .unwrap_err();
        assert!(e.message.contains("must match"));
        let t = parse_target(
            "t",
            json!({"kind": "scim", "base_url": "https://x", "auth": {"bearer": "a"}}),
        )
        .unwrap();
        assert_eq!(t.id, "t");
    }

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
