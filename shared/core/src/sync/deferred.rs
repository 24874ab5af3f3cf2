//! Deferred deletions: under a target's `delete_mode: {"deactivate_then_delete_after_days":
//! N}`, a user deleted in the hub (or leaving the scope under `out_of_scope: delete`) is
//! deactivated on the target at once, and a pending deletion is kept here. The scheduled
//! cycle deletes the account once it is due, unless the user was restored in between
//! (re-created in the hub and linked to the account again, or back in scope and active),
//! through the target's deprovision guard ([`super::direct`]). State in the store, so
//! any Lambda invocation (or `serve` after a restart) finds it.
//!
//! | record  | pk               | sk         | data              |
//! |---------|------------------|------------|-------------------|
//! | pending | `DEFER#{target}` | `{hub id}` | [`PendingDelete`] |

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Cursor, Item, Key, Query, Store, StoreError, Write, keyspace, query_all};

/// Pending deletions one listing returns at most.
pub const MAX_LISTED: usize = 10_000;

/// A deletion waiting its time.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingDelete {
    pub target: String,
    /// The hub id of the user (deleted in the hub, or out of scope).
    pub hub_id: String,
    /// The account's id on the target.
    pub target_id: String,
    #[serde(default)]
    pub name: String,
    /// Why (`deleted in the hub`, `left the target's scope`).
    pub cause: String,
    /// When it was deactivated, RFC 3339.
    pub deactivated_at: String,
    /// When it is due, RFC 3339, and as epoch seconds.
    pub delete_after: String,
    pub due: i64,
    /// What the target held before (the payload last delivered), for undo.
    #[serde(default)]
    pub state: Value,
}

impl PendingDelete {
    /// A deletion of `hub_id`'s account `target_id` on `target`, due `days` after `now`
    /// (epoch seconds).
    pub fn new(target: &str, hub_id: &str, target_id: &str, days: u32, now: i64) -> Self {
        let due = now + i64::from(days) * 86_400;
        let rfc = |t: i64| {
            chrono::DateTime::from_timestamp(t, 0)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        PendingDelete {
            target: target.to_string(),
            hub_id: hub_id.to_string(),
            target_id: target_id.to_string(),
            name: String::new(),
            cause: String::new(),
            deactivated_at: rfc(now),
            delete_after: rfc(due),
            due,
            state: Value::Null,
        }
    }
}

fn pk(target: &str) -> String {
    format!("{}{target}", keyspace::DEFER)
}

/// The pending deletions on the store.
#[derive(Clone)]
pub struct Deferred {
    store: Arc<dyn Store>,
}

impl Deferred {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Deferred { store }
    }

    /// The write that keeps a pending deletion (replacing one of the same user).
    pub fn write(p: &PendingDelete) -> Result<Write, StoreError> {
        let data = serde_json::to_vec(p).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Write::put(Item::new(pk(&p.target), p.hub_id.clone(), data)))
    }

    pub async fn put(&self, p: &PendingDelete) -> Result<(), StoreError> {
        self.store.transact(vec![Self::write(p)?]).await
    }

    /// One page of a target's pending deletions (by hub id) after `after`, and where the
    /// next starts: the scheduled cycle reads them all this way, however many there are.
    pub async fn page(
        &self,
        target: &str,
        after: Option<Cursor>,
    ) -> Result<(Vec<PendingDelete>, Option<Cursor>), StoreError> {
        let page = self
            .store
            .query(
                &Query::new(crate::store::Index::Primary, pk(target))
                    .limit(500)
                    .after(after),
            )
            .await?;
        let pending = page
            .items
            .iter()
            .filter_map(|i| serde_json::from_slice::<PendingDelete>(&i.data).ok())
            .collect();
        Ok((pending, page.next))
    }

    /// A target's pending deletions (at most [`MAX_LISTED`]), by hub id.
    pub async fn list(&self, target: &str) -> Result<Vec<PendingDelete>, StoreError> {
        let query = Query::new(crate::store::Index::Primary, pk(target)).limit(500);
        Ok(query_all(self.store.as_ref(), query, MAX_LISTED)
            .await?
            .iter()
            .filter_map(|i| serde_json::from_slice::<PendingDelete>(&i.data).ok())
            .collect())
    }

    /// Forgets a pending deletion (done, or the user restored).
    pub async fn remove(&self, target: &str, hub_id: &str) -> Result<(), StoreError> {
        self.store
            .transact(vec![Write::delete(Key::new(
                pk(target),
                hub_id.to_string(),
            ))])
            .await
    }
}
