//! `POST /admin/sync` (on-demand sync of users, or a reconcile now) and
//! `POST /admin/schedule/run` (one scheduled cycle now).

use axum::extract::{RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{AdminError, AdminResult, json_body, load_target, nonempty, wire_of};
use crate::AppState;
use crate::auth::Principal;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_core::sync::ondemand::OnDemandError;
use provisync_scim::ResourceKind;
use provisync_wire as wire;

// ---- on-demand sync ----------------------------------------------------------------

/// Time a reconcile asked for through the API runs at most (API Gateway answers within
/// 29 s); a larger target continues in the next scheduled cycle from its checkpoint.
const ON_DEMAND_RECONCILE_BUDGET: std::time::Duration = std::time::Duration::from_secs(20);

pub(super) async fn sync(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let adm = &state.hub;
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
        let reconciler = &adm.reconciler;
        let deadline = tokio::time::Instant::now() + ON_DEMAND_RECONCILE_BUDGET;
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
/// the `scheduled-sync` function. `budget`: seconds, default 25, at most 240.
pub(super) async fn run_schedule(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
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
    let schedule = state.hub.schedule();
    let report = provisync_core::sync::schedule::run_schedule(
        &schedule,
        std::time::Duration::from_secs(budget),
    )
    .await
    .map_err(|e| AdminError::internal("sync cycle", e.to_string()))?;
    Ok(axum::Json(wire_of::cycle_report(&report)).into_response())
}
