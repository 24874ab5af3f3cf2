//! The way back: before each deactivation, deletion or membership removal the engine
//! sends to a target, the account's state there is journaled; `undo` plans and applies
//! the inverse changes ([`super::undo`]).
//!
//! | record  | pk                  | sk              | ttl                                          |
//! |---------|---------------------|-----------------|----------------------------------------------|
//! | entry   | `JOURNAL#{target}`  | `{at}#{id}`     | `PROVISYNC_JOURNAL_RETENTION_DAYS` (default 30) |
//!
//! An entry holds what the target held (the payload last delivered, as the link keeps
//! it), the account's id there, and for a user the target groups it was in; for a
//! membership removal, the group and the members removed (their ids on the target).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::audit::AuditOp;
use crate::store::{Item, Key, Query, Store, StoreError, Write, keyspace, now_epoch, query_all};

/// Default retention of journal entries, days.
pub const DEFAULT_JOURNAL_DAYS: i64 = 30;
pub const JOURNAL_ENV: &str = "PROVISYNC_JOURNAL_RETENTION_DAYS";

/// One journaled deprovision.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    pub id: String,
    /// RFC 3339, UTC, milliseconds.
    pub at: String,
    pub target: String,
    /// `deactivate`, `delete` or `remove_members`.
    pub change: AuditOp,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The hub id.
    pub resource_id: String,
    #[serde(default)]
    pub name: String,
    /// The account's (group's) id on the target.
    pub target_id: String,
    /// What the target held before (the payload last delivered).
    #[serde(default)]
    pub state: Value,
    /// A user's groups on the target (their ids there), when known.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Members removed from a group (their ids on the target).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// No hub resource is linked to the account (a reconcile's orphan, a user deleted in
    /// the hub): undo restores it on the target without linking it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unlinked: bool,
}

impl JournalEntry {
    pub fn new(target: &str, change: AuditOp, resource_type: &str, resource_id: &str) -> Self {
        JournalEntry {
            id: uuid::Uuid::now_v7().simple().to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            target: target.to_string(),
            change,
            resource_type: resource_type.to_string(),
            resource_id: resource_id.to_string(),
            name: String::new(),
            target_id: String::new(),
            state: Value::Null,
            groups: Vec::new(),
            members: Vec::new(),
            unlinked: false,
        }
    }
}

/// The journal on the store.
#[derive(Clone)]
pub struct Journal {
    store: Arc<dyn Store>,
    retention_secs: i64,
}

fn pk(target: &str) -> String {
    format!("{}{target}", keyspace::JOURNAL)
}

impl Journal {
    pub fn new(store: Arc<dyn Store>) -> Self {
        let days = std::env::var(JOURNAL_ENV)
            .ok()
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|d| *d > 0)
            .unwrap_or(DEFAULT_JOURNAL_DAYS);
        Journal {
            store,
            retention_secs: days * 86_400,
        }
    }

    pub async fn record(&self, e: &JournalEntry) -> Result<(), StoreError> {
        let data = serde_json::to_vec(e).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let item = Item::new(pk(&e.target), format!("{}#{}", e.at, e.id), data)
            .with_expiry(now_epoch() + self.retention_secs);
        self.store.transact(vec![Write::put(item)]).await
    }

    /// A target's entries at or after `since` (RFC 3339, as entries write `at`), oldest
    /// first. Read from `since` on (every entry's sort key, `{at}#{id}`, sorts after its
    /// `at`): an undo of the last hour does not read the journal's whole retention.
    pub async fn since(&self, target: &str, since: &str) -> Result<Vec<JournalEntry>, StoreError> {
        let pk = pk(target);
        let from = crate::store::Cursor::at(since, pk.clone(), since);
        let query = Query::new(crate::store::Index::Primary, pk)
            .limit(500)
            .after(Some(from));
        Ok(query_all(self.store.as_ref(), query, usize::MAX)
            .await?
            .iter()
            .filter_map(|i| serde_json::from_slice::<JournalEntry>(&i.data).ok())
            .collect())
    }

    /// Forgets an entry (undone).
    pub async fn remove(&self, e: &JournalEntry) -> Result<(), StoreError> {
        self.store
            .transact(vec![Write::delete(Key::new(
                pk(&e.target),
                format!("{}#{}", e.at, e.id),
            ))])
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;

    /// `since` starts at its time: entries before it are not returned (nor read).
    #[tokio::test]
    async fn since_starts_at_its_time() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let journal = Journal::new(store.clone());
        for (i, at) in [
            "2026-01-01T10:00:00.000Z",
            "2026-01-01T11:00:00.000Z",
            "2026-01-01T11:00:00.000Z",
            "2026-01-01T12:00:00.000Z",
        ]
        .into_iter()
        .enumerate()
        {
            let mut e = JournalEntry::new("t", AuditOp::Delete, "User", &format!("u{i}"));
            e.at = at.to_string();
            journal.record(&e).await.unwrap();
        }
        let mut other = JournalEntry::new("t2", AuditOp::Delete, "User", "x");
        other.at = "2026-01-01T11:30:00.000Z".into();
        journal.record(&other).await.unwrap();
        let ids = |v: Vec<JournalEntry>| -> Vec<String> {
            let mut ids: Vec<String> = v.into_iter().map(|e| e.resource_id).collect();
            ids.sort();
            ids
        };
        let got = journal
            .since("t", "2026-01-01T11:00:00.000Z")
            .await
            .unwrap();
        assert_eq!(ids(got), ["u1", "u2", "u3"]);
        let got = journal
            .since("t", "2026-01-01T11:00:00.001Z")
            .await
            .unwrap();
        assert_eq!(ids(got), ["u3"]);
        let got = journal
            .since("t", "2026-01-01T00:00:00.000Z")
            .await
            .unwrap();
        assert_eq!(got.len(), 4);
        assert!(
            journal
                .since("t", "2026-01-02T00:00:00.000Z")
                .await
                .unwrap()
                .is_empty()
        );
    }
}
