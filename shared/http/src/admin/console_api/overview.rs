//! The overview (targets and sources with their health), operations over time, and one
//! dead letter redriven.

use std::collections::HashSet;

use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value;

use crate::AppState;
use crate::admin::wire_of::{self, name_of};
use crate::admin::{AdminError, AdminResult, json_body, query_params};
use crate::auth::Principal;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_core::sync::insight::{self, OperationStats, Window};
use provisync_wire as wire;

/// Dead letters read to tell which targets they belong to.
const DEAD_LETTERS_READ: usize = 1000;
/// Held changes counted per target (more show as "100+"): the overview reads at most
/// this many, however many a guard holds.
const HELD_COUNTED: usize = 100;

fn health_wire(h: insight::Health, (held, held_more): (usize, bool)) -> wire::Health {
    wire::Health {
        last_success: h.last_success,
        last_error: h
            .last_error
            .map(|(at, detail)| wire::LastError { at, detail }),
        consecutive_failures: h.consecutive_failures,
        backlog: h.retrying,
        dead_letters: h.dead_letters,
        last_reconcile: h.last_reconcile.as_ref().map(wire_of::audit_entry),
        held,
        held_more,
    }
}

/// `GET /admin/overview`.
pub async fn overview(State(state): State<AppState>) -> AdminResult<Response> {
    let hub = &state.hub;
    let dead_count = hub.queue.dead_letter_count().await?;
    // The events given up on: a dead letter's body is its change event (`id`).
    let dead_ids: HashSet<String> = hub
        .queue
        .dead_letters(DEAD_LETTERS_READ)
        .await?
        .into_iter()
        .map(|d| {
            serde_json::from_str::<Value>(&d.body)
                .ok()
                .and_then(|v| v.get("id").and_then(Value::as_str).map(str::to_string))
                .unwrap_or(d.dedup_id)
        })
        .collect();
    let mut targets = Vec::new();
    for t in hub.targets.list().await? {
        let h = insight::health(&hub.audit, &t.id, &dead_ids).await?;
        let held = hub
            .deliverer
            .held()
            .count_upto(&t.id, HELD_COUNTED)
            .await
            .map_err(|e| AdminError::internal("held changes", e))?;
        targets.push(wire::OverviewItem {
            id: t.id.clone(),
            kind: t.kind_name().to_string(),
            mode: name_of(&t.mode),
            enabled: t.enabled,
            health: health_wire(h, held),
        });
    }
    let mut sources = Vec::new();
    for s in hub.sources.list().await? {
        let h = insight::health(&hub.audit, &s.id, &dead_ids).await?;
        let mode = match &s.pull {
            Some(p) => format!("pull: {}", name_of(&p.kind)),
            None => format!("webhooks: {}", name_of(&s.scheme)),
        };
        sources.push(wire::OverviewItem {
            id: s.id.clone(),
            kind: name_of(&s.direction),
            mode,
            enabled: s.enabled,
            health: health_wire(h, (0, false)),
        });
    }
    Ok(axum::Json(wire::Overview {
        targets,
        sources,
        dead_letters: dead_count,
    })
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowParams {
    window: Option<String>,
}

/// `GET /admin/stats/operations?window=24h|30d` (default `24h`).
pub async fn operations(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
) -> AdminResult<Response> {
    let p: WindowParams = query_params(raw)?;
    let name = p.window.unwrap_or_else(|| "24h".into());
    let window =
        Window::parse(&name).ok_or_else(|| AdminError::bad_request("window must be 24h or 30d"))?;
    let stats = OperationStats::new(state.hub.store.clone(), state.hub.audit.retention_days());
    let series = stats.series(window, chrono::Utc::now()).await?;
    Ok(axum::Json(wire::OperationSeries {
        window: name,
        buckets: series
            .buckets
            .iter()
            .map(|b| wire::OperationBucket {
                start: b.start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                created: b.counts.created,
                updated: b.counts.updated,
                deactivated: b.counts.deactivated,
                deleted: b.counts.deleted,
                failed: b.counts.failed,
                refused: b.counts.refused,
                counted: b.counted,
            })
            .collect(),
    })
    .into_response())
}

/// `POST /admin/deadletters/redrive-one` `{"dedup_id"}`.
pub async fn redrive_one(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let body = json_body(&state, req).await?;
    let r: wire::RedriveOne = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid request: {e}")))?;
    if r.dedup_id.is_empty() || r.dedup_id.len() > 256 {
        return Err(AdminError::bad_request(
            "dedup_id must be 1 to 256 characters",
        ));
    }
    if !state.hub.queue.redrive_one(&r.dedup_id).await? {
        return Err(AdminError::new(
            StatusCode::NOT_FOUND,
            "no dead letter with this id (sent back already?)",
        ));
    }
    let entry = AuditEntry::new("", AuditOp::Redrive, AuditStatus::Queued)
        .event(&r.dedup_id)
        .detail("1 dead letter sent back to the queue")
        .actor(principal.to_string());
    if let Err(e) = state.hub.audit.record(entry).await {
        tracing::warn!(error = %e, "audit entry for a redrive not written");
    }
    Ok(axum::Json(wire::Redriven { redriven: 1 }).into_response())
}
