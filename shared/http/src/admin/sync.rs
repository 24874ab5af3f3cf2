//! `POST /admin/sync` (on-demand sync of users, or a reconcile now; both answer what
//! the target answered to the changes they queued, within `wait` seconds),
//! `GET /admin/runs/{run}` (where such a run stands later) and `POST /admin/schedule/run`
//! (one scheduled cycle now).

use std::time::Duration;

use axum::extract::{Path, RawQuery, Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::{
    ANSWER_MARGIN, AdminError, AdminResult, budget_for, json_body, load_target, nonempty, wire_of,
};
use crate::AppState;
use crate::auth::Principal;
use provisync_core::sync::ondemand::{OnDemandError, SyncRequest, sync_as_run};
use provisync_core::target::TargetConfig;
use provisync_scim::ResourceKind;
use provisync_wire as wire;

// ---- on-demand sync ----------------------------------------------------------------

/// Time a reconcile asked for through the API compares at most (API Gateway answers
/// within 29 s); a larger target continues in the next scheduled cycle from its
/// checkpoint.
const ON_DEMAND_RECONCILE_BUDGET: Duration = Duration::from_secs(20);
/// How long a sync or reconcile waits for the outcomes of what it queued, from the
/// request's start, unless the request says (`wait`, at most [`MAX_WAIT_SECS`]).
const DEFAULT_WAIT_SECS: u64 = 20;
const MAX_WAIT_SECS: u64 = 25;

pub(super) async fn sync(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let started = tokio::time::Instant::now();
    let adm = &state.hub;
    // In Lambda, the invocation's deadline bounds the comparison and the wait.
    let budget = budget_for(req.extensions(), ON_DEMAND_RECONCILE_BUDGET);
    let answer_by = req.extensions().get::<crate::AnswerBy>().map(|a| a.0);
    let body = json_body(&state, req).await?;
    let r: wire::SyncRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid sync request: {e}")))?;
    let filter_text = nonempty(r.filter);
    let user = nonempty(r.user);
    if filter_text.is_some() && user.is_some() {
        return Err(AdminError::bad_request("give `filter` or `user`, not both"));
    }
    let wait = match r.wait {
        None => DEFAULT_WAIT_SECS,
        Some(w) if w <= MAX_WAIT_SECS => w,
        Some(_) => {
            return Err(AdminError::bad_request(format!(
                "wait must be 0 to {MAX_WAIT_SECS} seconds"
            )));
        }
    };
    let mut settle_by = started + Duration::from_secs(wait);
    if let Some(by) = answer_by.and_then(|a| a.checked_sub(ANSWER_MARGIN)) {
        settle_by = settle_by.min(by);
    }
    if r.reconcile {
        if filter_text.is_some() || user.is_some() {
            return Err(AdminError::bad_request(
                "`reconcile` covers the whole target: give no `filter` or `user`",
            ));
        }
        let target = enabled_target(&state, &r.target).await?;
        if r.plan {
            let p = adm
                .reconciler
                .plan_target(&target, started + super::plan::PLAN_BUDGET)
                .await;
            return Ok(axum::Json(super::plan::reconcile_plan(p)).into_response());
        }
        // The report says how it went: complete (the target took every change),
        // complete_with_failures (named), pending (outcomes not all known yet),
        // suspended, busy (another cycle holds the target), failed (why).
        // Inside an invocation, a target that hangs is given up in time (lease released).
        let reconciler = match answer_by {
            Some(_) => adm.reconciler.bounded(),
            None => adm.reconciler.clone(),
        };
        let report = reconciler
            .reconcile_target_until(&target, started + budget, settle_by)
            .await;
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
    let target = enabled_target(&state, &r.target).await?;
    if r.plan {
        let p = super::plan::users_plan(&state, &target, filter.as_ref(), user.as_deref()).await?;
        return Ok(axum::Json(p).into_response());
    }
    let request = SyncRequest {
        target: target.id.clone(),
        filter_text,
        filter,
        user,
        actor: Some(principal.to_string()),
    };
    let (run, tally) = sync_as_run(
        adm.on_demand.as_ref(),
        &adm.runs,
        &adm.audit,
        request,
        settle_by,
    )
    .await
    .map_err(|e| match e {
        OnDemandError::NotFound(m) => AdminError::not_found(m),
        OnDemandError::Failed(m) => AdminError::internal("on-demand sync", m),
    })?;
    let outcome = wire_of::run_status(&run, &tally);
    tracing::info!(target = %target.id, queued = run.sent.users, state = %outcome.state, "on-demand sync");
    Ok(axum::Json(wire::SyncQueued {
        queued: run.sent.users as usize,
        outcome: Some(outcome),
    })
    .into_response())
}

async fn enabled_target(state: &AppState, id: &str) -> AdminResult<TargetConfig> {
    let target = load_target(&state.hub, id).await?;
    if !target.enabled {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("target {:?} is disabled", target.id),
        ));
    }
    Ok(target)
}

/// `GET /admin/runs/{run}`: where a reconcile or an on-demand sync and the changes it
/// queued stand (the outcomes known so far).
pub(super) async fn get_run(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> AdminResult<Response> {
    let runs = &state.hub.runs;
    let storage = |e| AdminError::internal("runs", e);
    let (run, _) = runs.get(&id).await.map_err(storage)?.ok_or_else(|| {
        AdminError::not_found(format!(
            "no run {:?} (runs are kept 7 days)",
            id.chars().take(64).collect::<String>()
        ))
    })?;
    let tally = runs.tally(&run.id).await.map_err(storage)?;
    Ok(axum::Json(wire_of::run_status(&run, &tally)).into_response())
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
pub(super) async fn run_schedule(
    State(state): State<AppState>,
    RawQuery(raw): RawQuery,
    extensions: axum::http::Extensions,
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
    let budget = budget_for(&extensions, Duration::from_secs(budget));
    let report = provisync_core::sync::schedule::run_schedule(&schedule, budget)
        .await
        .map_err(|e| AdminError::internal("sync cycle", e.to_string()))?;
    Ok(axum::Json(wire_of::cycle_report(&report)).into_response())
}
