//! Target and source definitions on the admin API: create or replace (`PUT`), partial
//! update (`PATCH`, JSON merge patch, RFC 7396), read (secrets always `"***"`), remove.
//!
//! Secrets are write-only. A `PUT` or `PATCH` keeps a stored secret where the document
//! says `"***"` (what a `GET` showed) or, for an existing definition, leaves the secret's
//! field out; on a new definition the placeholder is refused (there is nothing to keep).
//! A kept secret never follows a changed URL to another origin. Both verbs write with
//! optimistic concurrency ([`provisync_core::definitions::Definitions::edit`]), so two
//! partial updates never lose one another.

use std::time::Instant;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::{AdminError, AdminResult, json_body};
use crate::AppState;
use crate::auth::Principal;
use provisync_core::definitions::{
    EditError, REDACTED, fill_absent_secrets, keep_stored_secrets, merge_patch,
};
use provisync_core::source::{SourceConfig, check_source_id};
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_core::target::{COMMON_FIELDS, KIND_FIELDS, TargetConfig, check_target_id};
use provisync_wire as wire;

/// The media type of a JSON merge patch (RFC 7396 §4), the only one `PATCH` takes.
const MERGE_PATCH: &str = wire::MERGE_PATCH_JSON;

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
    // The placeholder is not a secret (and scrubbing it would hide the real error).
    for s in secrets.iter().filter(|s| !s.is_empty() && *s != REDACTED) {
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

pub(super) async fn put_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
    req: Request,
) -> AdminResult<Response> {
    check_target_id(&id)?;
    let plan = match query.as_deref() {
        None | Some("") | Some("plan=false") => false,
        Some("plan=true") => true,
        Some(_) => {
            return Err(AdminError::bad_request(
                "the only query parameter is plan=true (report what the definition would change, without saving it)",
            ));
        }
    };
    let body = json_body(&state, req).await?;
    let schemas = state.hub.directory.schemas();
    let build = |stored: Option<&TargetConfig>| -> AdminResult<TargetConfig> {
        let mut body = body.clone();
        if let Some(stored) = stored {
            fill_absent_secrets(&mut body, stored);
        }
        let mut target = parse_target(&id, body)?;
        keep_stored_secrets(&mut target, stored)?;
        target.validate(schemas)?;
        Ok(target)
    };
    if plan {
        // What the new scope and mapping would create, update and deprovision, by the
        // links the stored definition left; nothing saved.
        let stored = state.hub.targets.get(&id).await?;
        let target = build(stored.as_ref())?;
        let p = super::plan::users_plan(&state, &target, None, None).await?;
        return Ok(axum::Json(p).into_response());
    }
    let (target, created) = state
        .hub
        .targets
        .edit(&id, build)
        .await
        .map_err(edit_error)?;
    tracing::info!(target = %id, kind = target.kind_name(), created, "target saved");
    Ok(saved(created, redacted_json(&target)))
}

/// The answer to a definition written with `PUT`: 201 when it is new, else 200, with the
/// definition as `GET` shows it.
fn saved(created: bool, shown: Value) -> Response {
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    (status, axum::Json(shown)).into_response()
}

/// `PATCH /admin/targets/{id}`: a JSON merge patch (RFC 7396) on the definition as `GET`
/// shows it; secrets left as `"***"` stay as stored. The kind cannot change (replace the
/// definition with `PUT` for that).
pub(super) async fn patch_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> AdminResult<Response> {
    check_target_id(&id)?;
    let patch = match merge_patch_body(&state, req).await {
        Ok(p) => p,
        Err(e) => return Ok(with_accept_patch(e.into_response())),
    };
    let schemas = state.hub.directory.schemas();
    let (target, _) = state
        .hub
        .targets
        .edit(&id, |stored| {
            let stored = stored.ok_or_else(|| no_target(&id))?;
            if patch
                .get("kind")
                .is_some_and(|k| k.as_str() != Some(stored.kind_name()))
            {
                return Err(AdminError::bad_request(
                    "`kind` cannot change in a PATCH: replace the definition with PUT",
                ));
            }
            let mut doc = redacted_json(stored);
            merge_patch(&mut doc, &patch);
            let mut target = parse_target(&id, doc)?;
            keep_stored_secrets(&mut target, Some(stored))?;
            target.validate(schemas)?;
            Ok(target)
        })
        .await
        .map_err(edit_error)?;
    tracing::info!(target = %id, kind = target.kind_name(), "target updated");
    Ok(axum::Json(redacted_json(&target)).into_response())
}

fn no_target(id: &str) -> AdminError {
    AdminError::not_found(format!(
        "no target {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

/// A refused edit is the caller's own answer; a store failure maps as usual.
fn edit_error(e: EditError<AdminError>) -> AdminError {
    match e {
        EditError::Refused(e) => e,
        EditError::Store(e) => e.into(),
    }
}

/// The body of a `PATCH`: `Content-Type: application/merge-patch+json` (else 415 with
/// `Accept-Patch`, RFC 5789 §2.2), a JSON object.
async fn merge_patch_body(state: &AppState, req: Request) -> AdminResult<Value> {
    let media = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if media.as_deref() != Some(MERGE_PATCH) {
        return Err(AdminError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("PATCH takes a JSON merge patch (RFC 7396): send Content-Type: {MERGE_PATCH}"),
        ));
    }
    json_body(state, req).await
}

/// `Accept-Patch` on an answer (RFC 5789 §3.1): what `PATCH` takes here.
fn with_accept_patch(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert("accept-patch", HeaderValue::from_static(MERGE_PATCH));
    resp
}

pub(super) async fn list_targets(State(state): State<AppState>) -> AdminResult<Response> {
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

pub(super) async fn load_target(
    adm: &provisync_core::hub::Hub,
    id: &str,
) -> AdminResult<TargetConfig> {
    adm.targets.get(id).await?.ok_or_else(|| no_target(id))
}

pub(super) async fn get_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let t = load_target(adm, &id).await?;
    Ok(axum::Json(redacted_json(&t)).into_response())
}

pub(super) async fn delete_target(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    if adm.targets.delete(&id).await? {
        tracing::info!(target = %id, "target deleted");
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(no_target(&id))
    }
}

/// `GET /admin/targets/{id}/pace`: the target's delivery pace, backlog and time to drain.
pub(super) async fn target_pace(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<axum::Json<wire::TargetPace>> {
    let adm = &state.hub;
    let target = load_target(adm, &id).await?;
    let limits = provisync_core::sync::pace::PaceLimits::of(&target);
    let pacer = adm.deliverer.pacer();
    let mut seen = pacer.report(&id, limits);
    let mut seen_by = "process";
    if seen.rate == 0.0 && seen.in_flight == 0 && seen.waiting == 0 {
        // Nothing delivered here (an admin function): what the delivering ones stored.
        if let Some(stored) = pacer
            .stored(&id)
            .await
            .map_err(|e| AdminError::internal("target pace", e))?
        {
            seen = stored;
            seen_by = "stored";
        }
    }
    let drain_seconds = (seen.waiting > 0 && seen.rate > 0.0)
        .then(|| (f64::from(seen.waiting) / seen.rate * 10.0).round() / 10.0);
    Ok(axum::Json(wire::TargetPace {
        target: id,
        window: seen.window,
        in_flight: seen.in_flight,
        rate: (seen.rate * 100.0).round() / 100.0,
        backlog: seen.waiting,
        drain_seconds,
        slow_downs: seen.slow_downs,
        learned_rate: seen.learned_rate,
        advertised_rate: seen.advertised_rate,
        hold_until: seen
            .hold_until_ms
            .and_then(chrono::DateTime::from_timestamp_millis)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)),
        max_rate: limits.max_rate,
        max_in_flight: limits.max_in_flight,
        seen_by: seen_by.into(),
    }))
}

pub(super) async fn test_target(
    State(state): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
    extensions: axum::http::Extensions,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let target = load_target(adm, &id).await?;
    let started = Instant::now();
    // A target that hangs gets an answer (not ok) before the invocation ends.
    let limit = super::call_time_for(&extensions, super::CONNECTION_TEST_TIMEOUT);
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
    let detail = record_test(
        adm,
        &id,
        ok,
        detail,
        &target.secrets(),
        latency_ms,
        &principal,
    )
    .await;
    Ok(axum::Json(wire::TargetTest {
        target: id,
        ok,
        detail,
        latency_ms,
    })
    .into_response())
}

/// A connection test's detail scrubbed of `secrets` (their texts never carry them by
/// contract; scrubbed anyway) and audited (target = the target or source id, op `test`).
pub(super) async fn record_test(
    adm: &provisync_core::hub::Hub,
    id: &str,
    ok: bool,
    mut detail: String,
    secrets: &[String],
    latency_ms: u64,
    principal: &Principal,
) -> String {
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        detail = detail.replace(s.as_str(), "***");
    }
    let status = if ok {
        AuditStatus::Delivered
    } else {
        AuditStatus::Failed
    };
    let entry = AuditEntry::new(id, AuditOp::Test, status)
        .detail(detail.clone())
        .latency_ms(latency_ms)
        .actor(principal.to_string());
    if let Err(e) = adm.audit.record(entry).await {
        tracing::warn!(error = %e, id = %id, "audit entry for a connection test not written");
    }
    tracing::info!(id = %id, ok, latency_ms, "connection test");
    detail
}

// ---- sources -----------------------------------------------------------------------

/// A source document with its `id` from the path; a single `"secret"` becomes
/// `"secrets": [it]`. `patch`: a merge patch, where `null` is kept (it removes).
fn source_document(id: &str, mut body: Value, patch: bool) -> AdminResult<Value> {
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
        let secrets = match secret {
            Value::String(_) => Value::Array(vec![secret]),
            Value::Null if patch => Value::Null,
            _ => return Err(AdminError::bad_request("`secret` must be a string")),
        };
        obj.insert("secrets".into(), secrets);
    }
    Ok(body)
}

/// A source definition from its document.
fn parse_source(body: Value) -> AdminResult<SourceConfig> {
    let snapshot = body.clone();
    serde_json::from_value::<SourceConfig>(body).map_err(|e| {
        AdminError::bad_request(scrub(format!("invalid source definition: {e}"), &snapshot))
    })
}

fn redacted_source(s: &SourceConfig) -> Value {
    serde_json::to_value(s.redacted()).unwrap_or(Value::Null)
}

pub(super) async fn put_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> AdminResult<Response> {
    check_source_id(&id)?;
    let body = source_document(&id, json_body(&state, req).await?, false)?;
    let (source, created) = state
        .hub
        .sources
        .edit(&id, |stored| {
            let mut body = body.clone();
            if let Some(stored) = stored {
                fill_absent_secrets(&mut body, stored);
            }
            let mut source = parse_source(body)?;
            keep_stored_secrets(&mut source, stored)?;
            source.validate()?;
            Ok(source)
        })
        .await
        .map_err(edit_error)?;
    tracing::info!(source = %id, created, "source saved");
    Ok(saved(created, redacted_source(&source)))
}

/// `PATCH /admin/sources/{id}`: a JSON merge patch (RFC 7396) on the definition as `GET`
/// shows it; secrets left as `"***"` stay as stored (`"secrets": ["***", "whsec_new"]`
/// adds a second secret for a rotation).
pub(super) async fn patch_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
    req: Request,
) -> AdminResult<Response> {
    check_source_id(&id)?;
    let patch = match merge_patch_body(&state, req).await {
        Ok(p) => source_document(&id, p, true)?,
        Err(e) => return Ok(with_accept_patch(e.into_response())),
    };
    let (source, _) = state
        .hub
        .sources
        .edit(&id, |stored| {
            let stored = stored.ok_or_else(|| no_source(&id))?;
            let mut doc = redacted_source(stored);
            merge_patch(&mut doc, &patch);
            let mut source = parse_source(doc)?;
            keep_stored_secrets(&mut source, Some(stored))?;
            source.validate()?;
            Ok(source)
        })
        .await
        .map_err(edit_error)?;
    tracing::info!(source = %id, "source updated");
    Ok(axum::Json(redacted_source(&source)).into_response())
}

pub(super) async fn list_sources(State(state): State<AppState>) -> AdminResult<Response> {
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

pub(super) fn no_source(id: &str) -> AdminError {
    AdminError::not_found(format!(
        "no source {:?}",
        id.chars().take(64).collect::<String>()
    ))
}

pub(super) async fn get_source(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let adm = &state.hub;
    let s = adm.sources.get(&id).await?.ok_or_else(|| no_source(&id))?;
    Ok(axum::Json(redacted_source(&s)).into_response())
}

pub(super) async fn delete_source(
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
}
