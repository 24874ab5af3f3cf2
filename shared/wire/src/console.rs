//! What the operator console reads and asks for beyond the definitions and the audit log:
//! the session (`/console/session`), the overview (`GET /admin/overview`), operations over
//! time (`GET /admin/stats/operations`), users (`GET /admin/users`), the mapping preview
//! and scope count (`POST /admin/preview`, `POST /admin/preview/scope`), provision on
//! demand with its steps (`POST /admin/provision`), the activity view
//! (`GET /admin/activity`) and one dead letter redriven (`POST /admin/deadletters/redrive-one`).

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::AuditEntry;

/// `GET /console/session`, `POST /console/session`: who is signed in, the CSRF token the
/// page sends with every change, and when the session ends unless used (Unix seconds).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsoleSession {
    pub name: String,
    pub csrf: String,
    pub ends_at: i64,
}

/// The newest failure of a target or source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastError {
    pub at: String,
    pub detail: String,
}

/// How a target or source has been doing (from its newest audit entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub last_success: Option<String>,
    pub last_error: Option<LastError>,
    pub consecutive_failures: u32,
    /// Changes waiting to be retried (the target's backlog).
    pub backlog: usize,
    /// Changes for it given up on and still in the dead-letter queue.
    pub dead_letters: usize,
    /// The newest reconcile run (its `detail` has the counts).
    pub last_reconcile: Option<AuditEntry>,
    /// Deprovisions held by the target's guard, waiting for approval: counted up to 100.
    #[serde(default)]
    pub held: usize,
    /// More are held than `held` counts (the held list has them all).
    #[serde(default)]
    pub held_more: bool,
}

/// One target or source in the overview.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OverviewItem {
    pub id: String,
    /// Target kind (`scim`, `okta`, ...), or a source's direction (`push`, `pull`,
    /// `bidirectional`).
    pub kind: String,
    /// Target mode (`realtime`, `scheduled`, `manual`); for a source, its pull kind or
    /// its webhook scheme.
    pub mode: String,
    pub enabled: bool,
    pub health: Health,
}

/// `GET /admin/overview`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overview {
    pub targets: Vec<OverviewItem>,
    pub sources: Vec<OverviewItem>,
    /// Dead letters in the queue, all targets.
    pub dead_letters: usize,
}

/// One bar of the operations chart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationBucket {
    /// RFC 3339, UTC: the hour's or day's start.
    pub start: String,
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub failed: u64,
    pub refused: u64,
    /// False when this bucket could not be counted in this call (ask again).
    pub counted: bool,
}

/// `GET /admin/stats/operations?window=24h|30d`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationSeries {
    pub window: String,
    pub buckets: Vec<OperationBucket>,
}

/// A user, as lists show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserSummary {
    pub id: String,
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub active: bool,
}

/// `GET /admin/users?q=&limit=`: users whose userName, displayName or e-mail starts with
/// `q`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserList {
    pub users: Vec<UserSummary>,
    /// How many users there are in all, without `q`; with `q`, not counted (it would
    /// read every user on every keystroke of the console's picker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<usize>,
    /// With `q`: every user was searched (else the search stopped at its read budget,
    /// and a user further on may match).
    #[serde(default)]
    pub complete: bool,
}

/// `POST /admin/preview`: a target's rules (as the form has them, saved or not) applied
/// to one user (`user`: id or userName).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PreviewRequest {
    pub user: String,
    #[serde(default)]
    pub mapping: Vec<Value>,
    #[serde(default)]
    pub group_mapping: serde_json::Map<String, Value>,
    #[serde(default)]
    pub scope_filter: Option<String>,
}

/// The answer of `POST /admin/preview`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Preview {
    pub user: UserSummary,
    pub in_scope: bool,
    /// What the target would receive.
    pub payload: Value,
}

/// `POST /admin/preview/scope`: how many users a scope filter selects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScopeRequest {
    #[serde(default)]
    pub scope_filter: Option<String>,
}

/// The answer of `POST /admin/preview/scope`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScopeCount {
    /// Users the filter selects.
    pub selected: usize,
    /// Users in the hub.
    pub total: usize,
}

/// `POST /admin/provision`: one user (`user`: id or userName) to one target, now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    pub target: String,
    pub user: String,
}

/// One step of a provision on demand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProvisionStep {
    /// `scope`, `match`, `attributes`, `send`.
    pub step: String,
    /// `passed`, `skipped`, `failed`.
    pub state: String,
    pub detail: String,
}

/// An attribute that differs from what the target had.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttributeChange {
    pub attribute: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The answer of `POST /admin/provision`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Provisioned {
    pub target: String,
    pub user: UserSummary,
    pub steps: Vec<ProvisionStep>,
    pub changes: Vec<AttributeChange>,
    /// The user as the target receives it (never a password).
    pub payload: Value,
    /// The delivery's audit entry.
    pub outcome: Option<AuditEntry>,
    /// The account's id on the target afterwards.
    pub target_id: Option<String>,
}

/// An audit entry with the account's userName (or group's displayName) beside its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityEntry {
    #[serde(flatten)]
    pub entry: AuditEntry,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_name: Option<String>,
}

/// `GET /admin/activity`: a page of the audit log, newest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivityPage {
    pub entries: Vec<ActivityEntry>,
    pub next_cursor: Option<String>,
}

/// `POST /admin/deadletters/redrive-one`: the dead letter to send back, by its dedup id
/// (as `GET /admin/deadletters` lists it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveOne {
    pub dedup_id: String,
}
