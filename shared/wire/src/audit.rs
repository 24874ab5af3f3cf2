//! The audit log (`GET /admin/audit`).

use serde::{Deserialize, Serialize};

/// `GET /admin/audit`: a page of entries, newest first; `next_cursor` continues it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub next_cursor: Option<String>,
}

/// One audit record, as `provisync_core::sync::audit::AuditEntry` serializes it (`op`
/// and `status` by their snake_case names: `add_members`, `delivered`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    #[serde(default)]
    pub event_id: String,
    /// `User`, `Group`, or empty for target-level entries.
    #[serde(default)]
    pub resource_type: String,
    #[serde(default)]
    pub resource_id: String,
    #[serde(default)]
    pub target: String,
    pub op: String,
    pub status: String,
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub latency_ms: u64,
    /// Who asked for it (`admin:<token name>`), for operations an operator started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

/// The query of `GET /admin/audit` (`None`: no filter on that field).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuditFilter {
    pub limit: usize,
    pub target: Option<String>,
    pub resource: Option<String>,
    pub op: Option<String>,
    pub status: Option<String>,
    pub since: Option<String>,
    pub cursor: Option<String>,
}

impl AuditFilter {
    /// The query parameters, `limit` first, the filters given after it.
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = vec![("limit", self.limit.to_string())];
        for (k, v) in [
            ("target", &self.target),
            ("resource", &self.resource),
            ("op", &self.op),
            ("status", &self.status),
            ("since", &self.since),
            ("cursor", &self.cursor),
        ] {
            if let Some(v) = v {
                q.push((k, v.clone()));
            }
        }
        q
    }
}
