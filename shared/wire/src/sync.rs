//! On-demand sync (`POST /admin/sync`) and the scheduled cycle
//! (`POST /admin/schedule/run`): the requests and the reports.

use serde::{Deserialize, Serialize};

/// `POST /admin/sync`: `{"target","filter"?,"user"?}` queues users,
/// `{"target","reconcile":true}` reconciles the target now.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncRequest {
    pub target: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Reconcile the target now instead of queuing users.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reconcile: bool,
    /// Compute what would be sent, and send nothing (answers [`SyncPlanned`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plan: bool,
    /// Seconds to wait for the outcomes of the queued changes before answering (0 to
    /// 25, default 20); what is not known by then is answered `pending`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<u64>,
}

/// The answer to a sync that queued users: `{"queued": n, "outcome": {...}}`: how many
/// changes were queued, and what the target answered to them so far.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncQueued {
    pub queued: usize,
    /// `None` from a hub from before syncs reported outcomes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<RunStatus>,
}

/// `GET /admin/runs/{run}`, and the outcome in a sync's answer: where a run (a reconcile,
/// an on-demand sync) and the changes it queued stand.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunStatus {
    pub run: String,
    /// `reconcile` or `sync`.
    pub kind: String,
    pub target: String,
    pub started_at: String,
    /// `running` (still comparing or queuing), `pending` (some outcomes not known yet),
    /// `complete` (the target took every change), `complete_with_failures`.
    pub state: String,
    pub users: OutcomeCounts,
    pub groups: OutcomeCounts,
    /// Follow-up events: members the run's deliveries did not reach in their time (a big
    /// group at a slow target), sent on in events of their own. The run is `pending`
    /// until each has its outcome; their members count in `groups`. Absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub follow_ups: Option<FollowUpCounts>,
    /// Changes the target refused or that failed (or are being retried), named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// A run's follow-up events, by outcome.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FollowUpCounts {
    pub sent: u64,
    pub delivered: u64,
    /// Nothing left to do on the target.
    pub skipped: u64,
    /// Held by the target's deprovision guard.
    pub held: u64,
    pub refused: u64,
    pub failed: u64,
    /// No outcome yet.
    pub queued: u64,
}

/// The outcomes of the changes a run queued, of one resource type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct OutcomeCounts {
    /// Changes queued.
    pub sent: u64,
    /// The target answered success.
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    /// Nothing to do there (operation not enabled, out of scope, …).
    pub skipped: u64,
    /// The target refused (final).
    pub refused: u64,
    /// Dead-lettered after the retries, or failed in the hub.
    pub failed: u64,
    /// No outcome yet (being delivered or retried).
    pub queued: u64,
    pub members_added: u64,
    pub members_removed: u64,
}

/// A change the target refused or that failed, named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `User` or `Group`.
    pub resource_type: String,
    pub resource_id: String,
    /// `userName` / `displayName`, when known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// `create`, `update`, …
    pub op: String,
    /// `refused`, `dead`, `failed`, `retry`.
    pub status: String,
    pub detail: String,
}

/// The answer to a sync with `reconcile`: `{"reconcile": report}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncReconciled {
    pub reconcile: ReconcileReport,
}

/// What a reconcile of one target did (`provisync_core::sync::reconcile::ReconcileReport`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub target: String,
    /// `complete`, `complete_with_failures`, `pending` (outcomes not all known yet),
    /// `suspended`, `busy`, `failed` or `unsupported`.
    pub state: String,
    /// Counts of the whole run so far (a resumed run includes the earlier cycles).
    pub counts: ReconcileCounts,
    /// Whether this cycle continued a run started earlier.
    pub resumed: bool,
    /// Pages of the target's user listing read in this cycle.
    pub pages: u32,
    /// Why the run failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run's id, when it queued changes (`GET /admin/runs/{run}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Changes the target refused or that failed, named.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<Problem>,
}

/// Counts of one reconcile run: user accounts, and the groups under `groups`. A change
/// counts as created, updated, … once the target answered success; until its outcome is
/// known it is `queued`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCounts {
    pub checked: u64,
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    /// Deprovisions the target's guard held (`GET /admin/targets/{id}/held`).
    #[serde(default)]
    pub held: u64,
    pub orphaned: u64,
    pub unchanged: u64,
    #[serde(default)]
    pub refused: u64,
    pub failed: u64,
    #[serde(default)]
    pub skipped: u64,
    #[serde(default)]
    pub queued: u64,
    /// The groups' part of the run; `None` from a hub from before groups were reconciled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<GroupCounts>,
}

/// Counts of the group phases of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GroupCounts {
    pub checked: u64,
    pub created: u64,
    pub updated: u64,
    pub deleted: u64,
    /// Group deprovisions (membership removals, deletions) the guard held.
    pub held: u64,
    pub orphaned: u64,
    pub unchanged: u64,
    pub refused: u64,
    pub failed: u64,
    pub skipped: u64,
    pub queued: u64,
    pub members_added: u64,
    pub members_removed: u64,
    /// The target cannot list its groups: they were not reconciled.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unsupported: bool,
}

/// `POST /admin/schedule/run`: what one scheduled cycle did
/// (`provisync_core::sync::schedule::CycleReport`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CycleReport {
    /// One report per pulled source.
    pub pulled: Vec<PullReport>,
    /// One report per reconciled target (`scheduled` mode).
    pub reconciled: Vec<ReconcileReport>,
    /// Messages in the dead-letter queue.
    pub dead_letters: usize,
    /// Change events resent from the outbox.
    pub outbox_resent: usize,
    /// `false` when the sweep ran out of time and left records for the next cycle.
    pub outbox_complete: bool,
    /// Ids of outbox records the queue refuses for good (too large): skipped.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbox_unsendable: Vec<String>,
    /// Earlier runs whose outcome this cycle found settled and wrote to the audit log.
    #[serde(default)]
    pub runs_settled: usize,
    /// Deferred deletions (`delete_mode`) per target that has some.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deferred_deletes: Vec<DeferredCounts>,
}

/// What one target's deferred deletions came to in a cycle.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeferredCounts {
    pub target: String,
    pub deleted: u64,
    pub held: u64,
    pub restored: u64,
    pub failed: u64,
    pub waiting: u64,
}

/// What one source's pull did in a cycle: the user counts at the top, the group counts
/// under `groups` (`provisync_core::sync::pull::PullReport`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullReport {
    pub source: String,
    #[serde(flatten)]
    pub users: PullCounts,
    #[serde(default)]
    pub groups: PullCounts,
    /// `false` when the cycle ran out of time (the next one continues).
    pub complete: bool,
    /// Whether the source was read incrementally.
    pub incremental: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Counts of one listing of a pull.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullCounts {
    pub fetched: u64,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub stale: u64,
    pub failed: u64,
}

/// One change a plan names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChange {
    /// `create`, `update`, `deactivate` or `delete`.
    pub change: String,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The hub id (the target's id for an account the hub does not know).
    pub id: String,
    #[serde(rename = "userName")]
    pub user_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// What a sync, a reconcile or a definition change would send, sent nowhere.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanReport {
    pub target: String,
    /// A reconcile plan's state (`complete`, `suspended`: out of time, what was found so
    /// far; `busy`, `failed`, `unsupported`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Target accounts a reconcile plan compared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Changes by kind (`create`, `update`, `deactivate`, `delete`).
    pub counts: std::collections::BTreeMap<String, u64>,
    pub changes: Vec<PlannedChange>,
}

/// `POST /admin/sync` with `"plan": true`, and `PUT /admin/targets/{id}?plan=true`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncPlanned {
    pub plan: PlanReport,
}
