//! Admin API endpoints the operator console needs beyond definitions, the audit log and
//! dead letters (any admin client may use them; the CLI does not need them):
//!
//! | method & path                          | what                                          |
//! |----------------------------------------|-----------------------------------------------|
//! | `GET /admin/overview`                  | targets and sources with their health, dead letters |
//! | `GET /admin/stats/operations?window=24h\|30d` | operations over time by outcome       |
//! | `GET /admin/users?q=&limit=`           | users whose userName, displayName or e-mail starts with `q` |
//! | `POST /admin/preview`                  | a target's mapping and scope applied to one user |
//! | `POST /admin/preview/scope`            | how many users a scope filter selects         |
//! | `POST /admin/provision`                | one user to one target now, with the steps (audited) |
//! | `GET /admin/activity?target=&op=&status=&account=&since=&until=&limit=&cursor=&format=csv` | the audit log with userNames; CSV of the filtered view |
//! | `POST /admin/deadletters/redrive-one`  | `{"dedup_id"}`: one dead letter back to the queue (audited) |
//!
//! And two things every definition change goes through: [`changes::audit_changes`] (each
//! target or source created, changed or removed is audited with who did it). A secret a
//! form sends back as `"***"` keeps the stored one (`super::definitions`).

use axum::Router;
use axum::routing::{get, post};

use crate::AppState;

mod activity;
pub mod changes;
mod overview;
mod provision;
mod users;

/// The routes, under `/admin` (the caller adds the auth layer).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/overview", get(overview::overview))
        .route("/stats/operations", get(overview::operations))
        .route("/users", get(users::search))
        .route("/preview", post(users::preview))
        .route("/preview/scope", post(users::scope_count))
        .route("/provision", post(provision::provision))
        .route("/activity", get(activity::activity))
        .route("/deadletters/redrive-one", post(overview::redrive_one))
}
