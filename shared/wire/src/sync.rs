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
}

/// The answer to a sync that queued users: `{"queued": n}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncQueued {
    pub queued: usize,
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
    /// `complete`, `suspended`, `busy`, `failed` or `unsupported`.
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
}

/// Counts of one reconcile run: user accounts, and the groups under `groups`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileCounts {
    pub checked: u64,
    pub created: u64,
    pub updated: u64,
    pub deactivated: u64,
    pub deleted: u64,
    pub orphaned: u64,
    pub unchanged: u64,
    pub failed: u64,
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
    pub orphaned: u64,
    pub unchanged: u64,
    pub failed: u64,
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
