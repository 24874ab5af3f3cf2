//! Changes the deprovision guard held (`/admin/targets/{id}/held`).

use serde::{Deserialize, Serialize};

/// `GET /admin/targets/{id}/held`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldList {
    /// Oldest first, at most 10,000.
    pub held: Vec<HeldItem>,
    /// More are held than listed (release or discard these to see the rest).
    #[serde(default)]
    pub more: bool,
}

/// One held change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldItem {
    /// The held change's id (for `release` / `discard` with `ids`).
    pub id: String,
    /// `deactivate`, `delete` or `remove_members`.
    pub change: String,
    /// `User` or `Group`.
    pub resource_type: String,
    pub account: HeldAccount,
    /// Why it was to be sent.
    pub cause: String,
    /// When it was held (RFC 3339).
    pub at: String,
    /// Deprovisions it stands for (members removed, else 1).
    pub count: u64,
}

/// The account (or group) a held change is about.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldAccount {
    /// The hub id.
    pub id: String,
    /// `userName` (a group's `displayName`).
    #[serde(rename = "userName")]
    pub user_name: String,
}

/// `POST .../held/release` and `.../held/discard`: `{"ids": [...]}`, or no body (all).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldIds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ids: Option<Vec<String>>,
}

/// `POST .../held/release`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldReleased {
    /// Sent to the target (outcomes in the audit log).
    pub released: Vec<String>,
    /// Not sent: the hub changed the account since; forgotten.
    pub superseded: Vec<String>,
    /// Still held: could not be sent now.
    pub failed: Vec<HeldFailure>,
    /// Still held and not tried: the release ran out of its time (release again to go
    /// on; `provisync held release` does).
    #[serde(default)]
    pub left: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldFailure {
    pub id: String,
    pub reason: String,
}

/// `POST .../held/discard`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldDiscarded {
    pub discarded: Vec<String>,
}

/// `POST /admin/targets/{id}/undo`: `{"since": "2025-01-31T12:00:00Z", "apply": false}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoRequest {
    pub since: String,
    /// Apply the inverse changes (default: only plan them).
    #[serde(default)]
    pub apply: bool,
}

/// One inverse change of an undo.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoStep {
    /// The journal entry it undoes.
    pub journal: String,
    /// `reactivate`, `recreate`, `add_members`, `not_restorable`.
    pub change: String,
    pub resource_type: String,
    pub id: String,
    #[serde(rename = "userName")]
    pub user_name: String,
    /// When the deprovision was journaled.
    pub at: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The answer of an undo: its steps, and those that failed when applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoReport {
    pub target: String,
    pub applied: bool,
    pub steps: Vec<UndoStep>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<HeldFailure>,
    /// Steps applied (`not_restorable` ones are never applied).
    #[serde(default)]
    pub done: usize,
    /// Steps not tried: the undo ran out of its time (undo again to go on; `provisync
    /// undo --apply` does).
    #[serde(default)]
    pub left: usize,
}

/// `GET /admin/targets/{id}/deferred`: deletions deferred by the target's `delete_mode`
/// (deactivated there, deleted when due unless the user is restored).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredList {
    /// At most 10,000.
    pub deferred: Vec<DeferredItem>,
    /// More are waiting than listed.
    #[serde(default)]
    pub more: bool,
}

/// One deferred deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeferredItem {
    /// The hub id of the user.
    pub id: String,
    #[serde(rename = "userName")]
    pub user_name: String,
    /// The account's id on the target.
    pub target_id: String,
    /// `deleted in the hub` or `left the target's scope`.
    pub cause: String,
    /// RFC 3339.
    pub deactivated_at: String,
    /// When the scheduled cycle deletes it (unless restored), RFC 3339.
    pub delete_after: String,
}
