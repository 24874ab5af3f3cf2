//! Plans (`"plan": true` on `POST /admin/sync`, `PUT /admin/targets/{id}?plan=true`):
//! what would be sent, computed and sent nowhere (`provisync_core::sync::plan`).

use std::time::Duration;

use provisync_core::directory::Stored;
use provisync_core::sync::plan::{Plan, PlannedChange, plan_users};
use provisync_core::sync::reconcile::ReconcilePlan;
use provisync_core::target::TargetConfig;
use provisync_scim::ResourceKind;
use provisync_scim::filter::Filter;
use provisync_wire as wire;

use super::wire_of::name_of;
use super::{AdminError, AdminResult};
use crate::AppState;

/// Time a reconcile plan compares at most (API Gateway answers within 29 s).
pub(super) const PLAN_BUDGET: Duration = Duration::from_secs(20);

fn change(c: PlannedChange) -> wire::PlannedChange {
    wire::PlannedChange {
        change: c.change,
        resource_type: c.resource_type,
        id: c.id,
        user_name: c.user_name,
        detail: c.detail,
    }
}

fn report(target: &str, plan: Plan) -> wire::PlanReport {
    wire::PlanReport {
        target: target.to_string(),
        state: None,
        checked: None,
        error: None,
        counts: plan.counts,
        changes: plan.changes.into_iter().map(change).collect(),
    }
}

/// A reconcile plan, as answered.
pub(super) fn reconcile_plan(p: ReconcilePlan) -> wire::SyncPlanned {
    let mut r = report(&p.target, p.plan);
    r.state = Some(name_of(&p.state));
    r.checked = Some(p.checked);
    r.error = p.error;
    wire::SyncPlanned { plan: r }
}

/// What delivering the hub users `user` names (one), or `filter` matches (all when
/// `None`), to `t` would do now.
pub(super) async fn users_plan(
    state: &AppState,
    t: &TargetConfig,
    filter: Option<&Filter>,
    user: Option<&str>,
) -> AdminResult<wire::SyncPlanned> {
    let dir = &state.hub.directory;
    let mut users: Vec<Stored> = Vec::new();
    match user {
        Some(id) => match dir.load(ResourceKind::User, id).await {
            Ok(s) => users.push(s),
            Err(provisync_core::directory::DirectoryError::NotFound { .. }) => {
                return Err(AdminError::not_found(format!("no user {id:?}")));
            }
            Err(e) => return Err(AdminError::internal("plan", e)),
        },
        None => {
            let view = dir.schemas().view(ResourceKind::User);
            dir.scan(ResourceKind::User, |s| {
                if filter.is_none_or(|f| f.matches(&view, &s.resource)) {
                    users.push(s);
                }
            })
            .await
            .map_err(|e| AdminError::internal("plan", e))?;
        }
    }
    let changes = plan_users(&state.hub.links, dir.schemas(), t, &users)
        .await
        .map_err(|e| AdminError::internal("plan", e))?;
    Ok(wire::SyncPlanned {
        plan: report(&t.id, Plan::from_changes(changes)),
    })
}
