//! `POST /admin/provision`: one user to one target now, with the steps.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::users::{find_user, summary};
use crate::AppState;
use crate::admin::wire_of::{audit_entry, name_of};
use crate::admin::{AdminError, AdminResult, json_body, load_target};
use crate::auth::Principal;
use provisync_core::sync::audit::{AuditEntry, AuditOp, AuditStatus};
use provisync_core::sync::provision::{Provision, ProvisionReport, StepKind, StepState};
use provisync_wire as wire;

fn step_name(k: StepKind) -> &'static str {
    match k {
        StepKind::Scope => "scope",
        StepKind::Match => "match",
        StepKind::Attributes => "attributes",
        StepKind::Send => "send",
    }
}

fn state_name(s: StepState) -> &'static str {
    match s {
        StepState::Passed => "passed",
        StepState::Skipped => "skipped",
        StepState::Failed => "failed",
    }
}

fn to_wire(r: ProvisionReport, user: wire::UserSummary) -> wire::Provisioned {
    wire::Provisioned {
        target: r.target,
        user,
        steps: r
            .steps
            .into_iter()
            .map(|s| wire::ProvisionStep {
                step: step_name(s.kind).into(),
                state: state_name(s.state).into(),
                detail: s.detail,
            })
            .collect(),
        changes: r
            .changes
            .into_iter()
            .map(|c| wire::AttributeChange {
                attribute: c.attribute,
                before: c.before,
                after: c.after,
            })
            .collect(),
        payload: r.payload,
        outcome: r.outcome.as_ref().map(audit_entry),
        target_id: r.target_id,
    }
}

pub async fn provision(
    State(state): State<AppState>,
    principal: Principal,
    req: Request,
) -> AdminResult<Response> {
    let hub = &state.hub;
    let body = json_body(&state, req).await?;
    let r: wire::ProvisionRequest = serde_json::from_value(body)
        .map_err(|e| AdminError::bad_request(format!("invalid provision request: {e}")))?;
    let target = load_target(hub, &r.target).await?;
    if !target.enabled {
        return Err(AdminError::new(
            StatusCode::CONFLICT,
            format!("target {:?} is disabled", target.id),
        ));
    }
    let user = find_user(&hub.directory, &r.user).await?;
    let report = Provision {
        directory: &hub.directory,
        links: &hub.links,
        deliverer: &hub.deliverer,
        audit: &hub.audit,
        queue: &hub.queue,
        connectors: hub.connectors,
    }
    .run(&target, &user)
    .await
    .map_err(|e| {
        tracing::error!(error = %e, "provision on demand failed");
        AdminError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "provision on demand: the hub's storage or queue is unavailable, retry later",
        )
    })?;
    let who = summary(&user);
    let last = report
        .steps
        .last()
        .map(|s| s.detail.clone())
        .unwrap_or_default();
    let entry = AuditEntry::new(&target.id, AuditOp::Sync, AuditStatus::Delivered)
        .resource("User", &who.id)
        .detail(format!("provision on demand of {}: {last}", who.user_name))
        .actor(principal.to_string());
    if let Err(e) = hub.audit.record(entry).await {
        tracing::warn!(error = %e, "audit entry for a provision on demand not written");
    }
    tracing::info!(target = %target.id, outcome = %report.outcome.as_ref().map(|o| name_of(&o.status)).unwrap_or_default(), "provision on demand");
    Ok(axum::Json(to_wire(report, who)).into_response())
}
