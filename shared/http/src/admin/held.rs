//! `/admin/targets/{id}/held`: deprovisions a target's guard held, listed, released or
//! discarded (`provisync_core::sync::held`).
//!
//! | method & path | what |
//! |---------------|------|
//! | `GET /admin/targets/{id}/held` | `{"held": [{"id","change","resource_type","account":{"id","userName"},"cause","at","count"}], "more"}`: at most 10,000; `more` when there are others |
//! | `POST /admin/targets/{id}/held/release` (`{"ids": [...]}` or no body: all) | `{"released","superseded","failed","left"}`: sends for at most 20 s; `left` are still held, not tried |
//! | `POST /admin/targets/{id}/held/discard` (`{"ids": [...]}` or no body: all) | `{"discarded"}` |
//! | `POST /admin/targets/{id}/undo` `{"since", "apply"}` | the inverse of the deprovisions journaled since then: planned, or applied |
//! | `GET /admin/targets/{id}/deferred` | deletions deferred by `delete_mode`: `{"deferred": [{"id","userName","target_id","cause","deactivated_at","delete_after"}], "more"}`: at most 10,000 |

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use super::{AdminError, AdminResult, optional_json_body};
use crate::AppState;
use crate::auth::Principal;
use provisync_core::sync::deferred::Deferred;
use provisync_core::sync::deliver_guard::HeldError;
use provisync_core::sync::held::HeldChange;
use provisync_wire as wire;

pub(super) fn routes() -> Router<AppState> {
    Router::new()
        .route("/targets/{id}/held", get(list))
        .route("/targets/{id}/held/release", post(release))
        .route("/targets/{id}/held/discard", post(discard))
        .route("/targets/{id}/undo", post(undo))
        .route("/targets/{id}/deferred", get(deferred))
}

impl From<HeldError> for AdminError {
    fn from(e: HeldError) -> Self {
        match e {
            HeldError::NoTarget(_) => AdminError::not_found(e.to_string()),
            HeldError::Disabled(_) => AdminError::new(StatusCode::CONFLICT, e.to_string()),
            HeldError::Invalid(m) => AdminError::bad_request(m),
            HeldError::Store(e) => AdminError::internal("held changes", e),
        }
    }
}

fn item(h: &HeldChange) -> wire::HeldItem {
    wire::HeldItem {
        id: h.id.clone(),
        change: h.change.as_str(),
        resource_type: h.resource_type.clone(),
        account: wire::HeldAccount {
            id: h.resource_id.clone(),
            user_name: h.name.clone(),
        },
        cause: h.cause.clone(),
        at: h.at.clone(),
        count: h.count,
    }
}

async fn list(State(state): State<AppState>, Path(id): Path<String>) -> AdminResult<Response> {
    if state.hub.targets.get(&id).await?.is_none() {
        return Err(AdminError::not_found(format!("no such target: {id}")));
    }
    let (held, more) = state
        .hub
        .deliverer
        .held()
        .list(&id)
        .await
        .map_err(|e| AdminError::internal("held changes", e))?;
    Ok(axum::Json(wire::HeldList {
        held: held.iter().map(item).collect(),
        more,
    })
    .into_response())
}

async fn deferred(State(state): State<AppState>, Path(id): Path<String>) -> AdminResult<Response> {
    if state.hub.targets.get(&id).await?.is_none() {
        return Err(AdminError::not_found(format!("no such target: {id}")));
    }
    let (pending, more) = Deferred::new(state.hub.store.clone())
        .list(&id)
        .await
        .map_err(|e| AdminError::internal("deferred deletions", e))?;
    Ok(axum::Json(wire::DeferredList {
        deferred: pending
            .into_iter()
            .map(|p| wire::DeferredItem {
                id: p.hub_id,
                user_name: p.name,
                target_id: p.target_id,
                cause: p.cause,
                deactivated_at: p.deactivated_at,
                delete_after: p.delete_after,
            })
            .collect(),
        more,
    })
    .into_response())
}

/// The ids a release or discard names (`None`: all).
async fn ids(state: &AppState, req: Request) -> AdminResult<Option<Vec<String>>> {
    let Some(body) = optional_json_body(state, req).await? else {
        return Ok(None);
    };
    let r: wire::HeldIds = serde_json::from_value(body).map_err(|e| {
        AdminError::bad_request(format!(
            "invalid request: {e} (expected {{\"ids\": [\"…\"]}}, or no body for all)"
        ))
    })?;
    Ok(r.ids)
}

/// How long one release (or undo) request sends changes: the rest stay held (or
/// journaled), counted in `left`, for the next request (API Gateway answers 504 after 29 seconds, and the
/// functions' timeout is 29 seconds too).
const RELEASE_TIME: std::time::Duration = std::time::Duration::from_secs(20);

async fn release(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let ids = ids(&state, req).await?;
    let r = state
        .hub
        .deliverer
        .release_held(
            &id,
            ids.as_deref(),
            &principal.to_string(),
            tokio::time::Instant::now() + RELEASE_TIME,
        )
        .await?;
    Ok(axum::Json(wire::HeldReleased {
        released: r.released,
        superseded: r.superseded,
        failed: r
            .failed
            .into_iter()
            .map(|(id, reason)| wire::HeldFailure { id, reason })
            .collect(),
        left: r.left,
    })
    .into_response())
}

async fn discard(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let ids = ids(&state, req).await?;
    let dropped = state
        .hub
        .deliverer
        .discard_held(&id, ids.as_deref(), &principal.to_string())
        .await?;
    Ok(axum::Json(wire::HeldDiscarded {
        discarded: dropped.into_iter().map(|h| h.id).collect(),
    })
    .into_response())
}

async fn undo(
    State(state): State<AppState>,
    Path(id): Path<String>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let body = super::json_body(&state, req).await?;
    let r: wire::UndoRequest = serde_json::from_value(body).map_err(|e| {
        AdminError::bad_request(format!(
            "invalid undo request: {e} (expected {{\"since\": \"2025-01-31T12:00:00Z\", \"apply\": false}})"
        ))
    })?;
    let report = state
        .hub
        .deliverer
        .undo(
            &id,
            &r.since,
            r.apply,
            &principal.to_string(),
            tokio::time::Instant::now() + RELEASE_TIME,
        )
        .await?;
    Ok(axum::Json(wire::UndoReport {
        target: report.target,
        applied: report.applied,
        steps: report
            .steps
            .into_iter()
            .map(|s| wire::UndoStep {
                journal: s.journal,
                change: s.change,
                resource_type: s.resource_type,
                id: s.id,
                user_name: s.user_name,
                at: s.at,
                detail: s.detail,
            })
            .collect(),
        failed: report
            .failed
            .into_iter()
            .map(|(id, reason)| wire::HeldFailure { id, reason })
            .collect(),
        done: report.done,
        left: report.left,
    })
    .into_response())
}
