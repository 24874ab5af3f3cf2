//! The admin API's requests and answers (`/admin/...`) as plain serde types: the hub
//! serializes them, the CLI ([`provisync-client`]) deserializes them. No I/O here.
//!
//! The JSON is the contract: field names, order and the fields left out when empty are
//! exactly what the hub sends (its tests compare the bytes). Where the hub's domain has a
//! type of its own (`ReconcileReport`, `CycleReport`, `AuditEntry` in `provisync-core`),
//! this crate mirrors its JSON form, and the HTTP layer converts the domain value into it;
//! enums of the domain (an audit op, a run state) are their snake_case names here, so a
//! client needs no domain crate to read an answer.
//!
//! Definitions (targets, sources) are shown as the JSON object the hub holds (redacted):
//! their form depends on the kind, so lists carry them as [`serde_json::Value`]s on the
//! hub's side, and a client reads the fields every kind has through [`TargetSummary`] /
//! [`SourceSummary`].

mod audit;
mod console;
mod definitions;
mod held;
mod queue;
mod sync;
mod tokens;

pub use audit::{AuditEntry, AuditFilter, AuditPage};
pub use console::{
    ActivityEntry, ActivityPage, AttributeChange, ConsoleSession, Health, LastError,
    OperationBucket, OperationSeries, Overview, OverviewItem, Preview, PreviewRequest,
    ProvisionRequest, ProvisionStep, Provisioned, RedriveOne, ScopeCount, ScopeRequest, UserList,
    UserSummary,
};
pub use definitions::{
    ConfigPage, EntitiesPage, MERGE_PATCH_JSON, REDACTED, SourceList, SourceSummary, SourceTest,
    TargetList, TargetPace, TargetSummary, TargetTest,
};
pub use held::{
    DeferredItem, DeferredList, HeldAccount, HeldDiscarded, HeldFailure, HeldIds, HeldItem,
    HeldList, HeldReleased, UndoReport, UndoRequest, UndoStep,
};
pub use queue::{DeadLetter, DeadLetters, Redriven};
pub use sync::{
    CycleReport, DeferredCounts, FollowUpCounts, GroupCounts, OutcomeCounts, PlanReport,
    PlannedChange, Problem, PullCounts, PullReport, ReconcileCounts, ReconcileReport, RunStatus,
    SyncPlanned, SyncQueued, SyncReconciled, SyncRequest,
};
pub use tokens::{TokenCreated, TokenInfo, TokenList, TokenRequest, TokenRevoke};

use serde::{Deserialize, Serialize};

/// Every answer of the admin API that is not a success: `{"error": message}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: String,
    /// The field of the definition a 400 is about (`auth.bearer`, `pull.base_url`), when
    /// it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}
