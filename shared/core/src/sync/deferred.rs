//! Deferred deletions: under a target's `delete_mode: {"deactivate_then_delete_after_days":
//! N}`, a user deleted in the hub (or leaving the scope under `out_of_scope: delete`) is
//! deactivated on the target at once, and a pending deletion is kept here. The scheduled
//! cycle deletes the account once it is due, unless the user was restored in between
//! (re-created in the hub and linked to the account again, or back in scope and active),
//! through the target's deprovision guard ([`super::direct`]). State in the store, so
//! any Lambda invocation (or `serve` after a restart) finds it.
//!
//! | record  | pk                | sk         | gsi1 (due time)                         | data              |
//! |---------|-------------------|------------|-----------------------------------------|-------------------|
//! | pending | `DEFER#{target}`  | `{hub id}` | `DEFERDUE#{target}` / `{due}#{hub id}`  | [`PendingDelete`] |
//! | count   | `DEFERN#{target}` | `COUNT`    |                                         | a counter         |
//! | marker  | `DEFERN#{target}` | `INDEXED`  |                                         | every pending one is in gsi1 |
//!
//! The scheduled cycle reads a target's pending deletions by due time, and stops at the
//! first that is not due: what it reads grows with the deletions due, not with those
//! waiting (a cycle with 10,000 waiting read 10,000 items every time, before). The count
//! tells how many wait. Pending deletions written before the due-time index are put in it
//! once, by the first count that finds no marker ([`Deferred::count`]).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{
    Condition, Cursor, Index, Item, Key, Query, Store, StoreError, Write, counter_value, keyspace,
    query_capped,
};

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

fn due_pk(target: &str) -> String {
    format!("{}{target}", keyspace::DEFER_DUE)
}

/// Sorts by due time as a string: 12 digits hold any epoch second until the year 33658.
fn due_sk(p: &PendingDelete) -> String {
    format!("{:012}#{}", p.due.clamp(0, 999_999_999_999), p.hub_id)
}

fn count_key(target: &str) -> Key {
    Key::new(format!("{}{target}", keyspace::DEFER_COUNT), "COUNT")
}

fn indexed_key(target: &str) -> Key {
    Key::new(format!("{}{target}", keyspace::DEFER_COUNT), "INDEXED")
}

/// Attempts at a write that lost a race with another writer of the same pending deletion.
const WRITE_ATTEMPTS: usize = 5;

/// Pending deletions the first page of the due-time index reads (a cycle with none due
/// reads these few), and each page after it.
const FIRST_DUE_PAGE: usize = 10;
const DUE_PAGE: usize = 100;

/// The pending deletions on the store.
#[derive(Clone)]
pub struct Deferred {
    store: Arc<dyn Store>,
}

impl Deferred {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Deferred { store }
    }

    /// The item that keeps a pending deletion, in the due-time index.
    fn item(p: &PendingDelete) -> Result<Item, StoreError> {
        let data = serde_json::to_vec(p).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(
            Item::new(pk(&p.target), p.hub_id.clone(), data)
                .with_gsi1(due_pk(&p.target), due_sk(p)),
        )
    }

    /// Keeps a pending deletion, replacing one of the same user, and counts it if it is
    /// new: one read and one transaction.
    pub async fn put(&self, p: &PendingDelete) -> Result<(), StoreError> {
        let item = Self::item(p)?;
        let key = item.key();
        for _ in 0..WRITE_ATTEMPTS {
            let current = self.store.get(&key).await?;
            let (condition, version, counted) = match &current {
                // One written before the due-time index was not counted either.
                Some(old) => (
                    Condition::VersionIs(old.version),
                    old.version + 1,
                    old.gsi1.is_some(),
                ),
                None => (Condition::NotExists, 0, false),
            };
            let mut writes = vec![Write::Put {
                item: item.clone().with_version(version),
                condition,
            }];
            if !counted {
                writes.push(Write::add(count_key(&p.target), 1));
            }
            match self.store.transact(writes).await {
                Err(StoreError::ConditionFailed { .. }) => continue,
                other => return other,
            }
        }
        Err(StoreError::Conflict)
    }

    /// How many deletions wait on `target` (due or not), from its counter: one read of
    /// the counter and the marker. Those written before the due-time index are indexed
    /// and counted first, once.
    pub async fn count(&self, target: &str) -> Result<u64, StoreError> {
        let (marker, counter) = (indexed_key(target), count_key(target));
        let mut read = self
            .store
            .get_many(&[marker.clone(), counter.clone()])
            .await?;
        if !read.iter().any(|i| i.key() == marker) {
            self.index_unindexed(target).await?;
            read = self.store.get(&counter).await?.into_iter().collect();
        }
        Ok(read
            .iter()
            .find(|i| i.key() == counter)
            .map(|i| counter_value(i).max(0).unsigned_abs())
            .unwrap_or(0))
    }

    /// The pending deletions of `target` due at `now` (epoch seconds), earliest first, a
    /// page after `after`, and where the next page starts: `None` once a page reached one
    /// not due, or the end. The ones not due are never read past the first.
    pub async fn due_page(
        &self,
        target: &str,
        now: i64,
        after: Option<Cursor>,
    ) -> Result<(Vec<PendingDelete>, Option<Cursor>), StoreError> {
        let page = self
            .store
            .query(
                &Query::new(Index::Gsi1, due_pk(target))
                    .limit(if after.is_some() {
                        DUE_PAGE
                    } else {
                        FIRST_DUE_PAGE
                    })
                    .after(after),
            )
            .await?;
        let mut due = Vec::new();
        for item in &page.items {
            let Ok(p) = serde_json::from_slice::<PendingDelete>(&item.data) else {
                continue;
            };
            if p.due > now {
                return Ok((due, None));
            }
            due.push(p);
        }
        Ok((due, page.next))
    }

    /// Puts the pending deletions of `target` written before the due-time index into it,
    /// counts them, and marks the target as indexed.
    async fn index_unindexed(&self, target: &str) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Primary, pk(target))
                        .limit(500)
                        .after(after),
                )
                .await?;
            for old in page.items.iter().filter(|i| i.gsi1.is_none()) {
                let Ok(p) = serde_json::from_slice::<PendingDelete>(&old.data) else {
                    continue;
                };
                let item = Self::item(&p)?.with_version(old.version + 1);
                let writes = vec![
                    Write::Put {
                        item,
                        condition: Condition::VersionIs(old.version),
                    },
                    Write::add(count_key(target), 1),
                ];
                match self.store.transact(writes).await {
                    // Rewritten meanwhile (and counted so), or gone.
                    Ok(()) | Err(StoreError::ConditionFailed { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        let marker = Item::new(
            indexed_key(target).pk,
            indexed_key(target).sk,
            b"{}".to_vec(),
        );
        self.store.transact(vec![Write::put(marker)]).await
    }

    /// A target's pending deletions, by hub id: at most [`MAX_LISTED`], and whether there
    /// are more.
    pub async fn list(&self, target: &str) -> Result<(Vec<PendingDelete>, bool), StoreError> {
        let query = Query::new(Index::Primary, pk(target)).limit(500);
        let (items, more) = query_capped(self.store.as_ref(), query, MAX_LISTED).await?;
        Ok((
            items
                .iter()
                .filter_map(|i| serde_json::from_slice::<PendingDelete>(&i.data).ok())
                .collect(),
            more,
        ))
    }

    /// Forgets a pending deletion (done, or the user restored), uncounting it; one gone
    /// already is not uncounted twice.
    pub async fn remove(&self, target: &str, hub_id: &str) -> Result<(), StoreError> {
        let writes = vec![
            Write::Delete {
                key: Key::new(pk(target), hub_id.to_string()),
                condition: Condition::Exists,
            },
            Write::add(count_key(target), -1),
        ];
        match self.store.transact(writes).await {
            Err(StoreError::ConditionFailed { .. }) => Ok(()),
            other => other,
        }
    }
}
