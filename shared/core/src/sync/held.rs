//! The deprovision guard at work: a window of deprovisions per target, and the changes
//! it holds for an operator.
//!
//! Every deactivation, deletion and membership removal the delivery engine is about to
//! send asks [`Held::admit`] first, whatever caused it (an IdP delete, a scope or mapping
//! change, a reconcile, a webhook): the window counts what was sent since it opened, and
//! a change that would take it beyond the target's allowance
//! ([`DeprovisionGuard::allowance`]) is **held**: not sent, audited `held`, and kept as a
//! [`HeldChange`] until an operator releases or discards it.
//!
//! | record | pk                | sk          | data                                        |
//! |--------|-------------------|-------------|---------------------------------------------|
//! | window | `GUARD#{target}`  | `WINDOW`    | `{start, count, linked}`, versioned          |
//! | held   | `HELD#{target}`   | `{held id}` | the [`HeldChange`] (its change event inside) |
//!
//! The window opens with the first deprovision after the previous one closed and lasts
//! `window_minutes`; `linked` (the target's linked users when it opened) is counted only
//! when a `max_percent` allowance is needed. Reservations are optimistic writes of the
//! window's version, so concurrent deliveries never take more than the allowance.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::audit::AuditOp;
use super::link::Links;
use crate::event::ChangeEvent;
use crate::store::{
    Condition, Item, Key, Query, Store, StoreError, Write, keyspace, now_epoch, query_capped,
};
use crate::target::TargetConfig;
use provisync_scim::ResourceKind;

/// Optimistic attempts to reserve a window's count before giving up (retry later).
const ADMIT_ATTEMPTS: usize = 20;
/// Held changes one listing returns at most.
pub const MAX_LISTED: usize = 10_000;

/// A change the guard held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldChange {
    /// The held change's id: 32 hex digits, the event's UUIDv7, or for a [`DirectChange`]
    /// a hash of the change ([`DirectChange::held_id`]).
    pub id: String,
    pub target: String,
    /// When it was held, RFC 3339.
    pub at: String,
    /// `deactivate`, `delete` or `remove_members`.
    pub change: AuditOp,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The hub id.
    pub resource_id: String,
    /// `userName` (a group's `displayName`), when known.
    #[serde(default)]
    pub name: String,
    /// Why it was to be sent (`deleted in the hub (SCIM)`, `left the target's scope`, …).
    pub cause: String,
    /// How many deprovisions it counts for (members removed, else 1).
    #[serde(default = "one")]
    pub count: u64,
    /// The change event that would have sent it (for a [`DirectChange`], one naming the
    /// account only: there is no hub resource to send).
    pub event: ChangeEvent,
    /// Set when the change is made on the target by its id there, not by delivering a
    /// hub resource: a reconcile's orphan or members unknown to the hub, a deferred
    /// deletion coming due ([`super::direct`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct: Option<DirectChange>,
}

/// A deprovision sent by the account's (group's) id on the target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DirectChange {
    /// The account's (group's) id on the target.
    pub target_id: String,
    /// Members to remove (their ids on the target), for `remove_members`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
    /// What the target held (journaled before the change is sent, for undo).
    #[serde(default)]
    pub state: serde_json::Value,
    /// The account's groups on the target (their ids there), journaled with it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The hub has no resource linked to it (an orphan): undo does not link it again.
    #[serde(default)]
    pub unlinked: bool,
}

impl HeldChange {
    /// The held change an outcome of `event` describes.
    pub(super) fn new(
        event: &ChangeEvent,
        target: &str,
        change: AuditOp,
        name: String,
        cause: String,
        count: u64,
    ) -> Self {
        // The event's own id: the same event held twice (the queue handing its message
        // out again while the first delivery still ran) is one held change, written
        // twice, not two. (A reconcile's direct change comes with a new event each time
        // and is matched by what it changes: `direct.rs`.)
        let id = uuid::Uuid::parse_str(&event.id)
            .unwrap_or_else(|_| uuid::Uuid::now_v7())
            .simple()
            .to_string();
        HeldChange {
            id,
            target: target.to_string(),
            at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            change,
            resource_type: event.resource_type.as_str().to_string(),
            resource_id: event.resource_id.clone(),
            name,
            cause,
            count,
            event: event.clone(),
            direct: None,
        }
    }
}

impl DirectChange {
    /// The id of the held change that is this change of `op` to a `kind` on the target:
    /// the same whichever reconcile finds it again, so asking whether it is held already
    /// is one read (32 hex digits of a SHA-256, as long as the UUIDs of the rest).
    pub fn held_id(&self, op: AuditOp, kind: ResourceKind) -> String {
        use sha2::Digest;
        let mut members: Vec<&str> = self.members.iter().map(String::as_str).collect();
        members.sort_unstable();
        let op = op.as_str();
        let mut h = sha2::Sha256::new();
        for part in [op.as_str(), kind.as_str(), self.target_id.as_str()]
            .into_iter()
            .chain(members)
        {
            // Length-prefixed: no two different changes hash the same parts.
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..16])
    }
}

fn one() -> u64 {
    1
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct Window {
    start: i64,
    count: u64,
    #[serde(default)]
    linked: Option<u64>,
}

/// The guard's windows and the held changes, on the store.
#[derive(Clone)]
pub struct Held {
    store: Arc<dyn Store>,
    links: Links,
}

fn window_key(target: &str) -> Key {
    Key::new(format!("{}{target}", keyspace::GUARD), "WINDOW")
}

fn held_pk(target: &str) -> String {
    format!("{}{target}", keyspace::HELD)
}

impl Held {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Held {
            links: Links::new(store.clone()),
            store,
        }
    }

    /// Reserves `n` deprovisions on target `t`: `true` when its guard lets them through
    /// now (counted in the window), `false` when they are beyond it (nothing counted).
    pub async fn admit(&self, t: &TargetConfig, n: u64) -> Result<bool, StoreError> {
        let Some(guard) = &t.deprovision_guard else {
            return Ok(true);
        };
        let key = window_key(&t.id);
        for _ in 0..ADMIT_ATTEMPTS {
            let now = now_epoch();
            let current = self.store.get(&key).await?;
            let (mut w, condition, version) = match &current {
                Some(item) => {
                    let w: Window = serde_json::from_slice(&item.data).unwrap_or_default();
                    (w, Condition::VersionIs(item.version), item.version + 1)
                }
                None => (Window::default(), Condition::NotExists, 0),
            };
            if current.is_none() || now - w.start >= guard.window_secs() {
                w = Window {
                    start: now,
                    count: 0,
                    linked: None,
                };
            }
            let wanted = w.count.saturating_add(n);
            if wanted > guard.max.unwrap_or(0) && guard.needs_linked() && w.linked.is_none() {
                w.linked = Some(self.linked_users(&t.id).await?);
            }
            if wanted > guard.allowance(w.linked.unwrap_or(0)) {
                return Ok(false);
            }
            w.count = wanted;
            let data = serde_json::to_vec(&w).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let item = Item::new(key.pk.clone(), key.sk.clone(), data)
                .with_version(version)
                .with_expiry(w.start + guard.window_secs() + 86_400);
            match self
                .store
                .transact(vec![Write::Put { item, condition }])
                .await
            {
                Ok(()) => return Ok(true),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(StoreError::Conflict)
    }

    async fn linked_users(&self, target: &str) -> Result<u64, StoreError> {
        let mut n = 0u64;
        self.links
            .list(target, ResourceKind::User, |_| n += 1)
            .await?;
        Ok(n)
    }

    /// The write that keeps a held change (committed with its audit entry and receipt).
    pub fn hold_write(change: &HeldChange) -> Result<Write, StoreError> {
        let data = serde_json::to_vec(change).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Write::put(Item::new(
            held_pk(&change.target),
            change.id.clone(),
            data,
        )))
    }

    /// The changes held on a target, oldest first: at most [`MAX_LISTED`], and whether
    /// more are held.
    pub async fn list(&self, target: &str) -> Result<(Vec<HeldChange>, bool), StoreError> {
        let query = Query::new(crate::store::Index::Primary, held_pk(target)).limit(500);
        let (items, more) = query_capped(self.store.as_ref(), query, MAX_LISTED).await?;
        let mut held: Vec<HeldChange> = items
            .iter()
            .filter_map(|i| serde_json::from_slice::<HeldChange>(&i.data).ok())
            .collect();
        // Ids are UUIDv7 (in time order) but for direct changes (a hash of the change).
        held.sort_by(|a, b| (&a.at, &a.id).cmp(&(&b.at, &b.id)));
        Ok((held, more))
    }

    /// The held changes of a target with these ids (those held), oldest first: batched
    /// point reads, whatever else is held.
    pub async fn get_many(
        &self,
        target: &str,
        ids: &[String],
    ) -> Result<Vec<HeldChange>, StoreError> {
        // Held ids are 32 hex digits: anything else names nothing (and is no key to ask).
        let mut ids: Vec<&String> = ids
            .iter()
            .filter(|id| !id.is_empty() && id.len() <= 64)
            .collect();
        ids.sort();
        ids.dedup();
        let mut held = Vec::new();
        for chunk in ids.chunks(100) {
            let keys: Vec<Key> = chunk
                .iter()
                .map(|id| Key::new(held_pk(target), id.as_str()))
                .collect();
            held.extend(
                self.store
                    .get_many(&keys)
                    .await?
                    .iter()
                    .filter_map(|i| serde_json::from_slice::<HeldChange>(&i.data).ok()),
            );
        }
        held.sort_by(|a, b| (&a.at, &a.id).cmp(&(&b.at, &b.id)));
        Ok(held)
    }

    /// The held change `id` of a target, if it is held.
    pub async fn get(&self, target: &str, id: &str) -> Result<Option<HeldChange>, StoreError> {
        Ok(self
            .store
            .get(&Key::new(held_pk(target), id))
            .await?
            .and_then(|i| serde_json::from_slice(&i.data).ok()))
    }

    /// How many changes a target holds, counted up to `cap`: `(n, true)` when there are
    /// more than `cap` (`n == cap`). Reads at most `cap + 1` items however many are held
    /// (the console's overview: a count of thousands needs no listing of thousands).
    pub async fn count_upto(&self, target: &str, cap: usize) -> Result<(usize, bool), StoreError> {
        let mut n = 0;
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(crate::store::Index::Primary, held_pk(target))
                        .limit(cap + 1 - n)
                        .after(after),
                )
                .await?;
            n += page.items.len();
            if n > cap {
                return Ok((cap, true));
            }
            match page.next {
                // A store may answer a page short (DynamoDB's 1 MB).
                Some(next) if !page.items.is_empty() => after = Some(next),
                _ => return Ok((n, false)),
            }
        }
    }

    /// Forgets held changes (released or discarded).
    pub async fn remove(&self, target: &str, ids: &[String]) -> Result<(), StoreError> {
        for chunk in ids.chunks(crate::store::MAX_TRANSACT_ITEMS) {
            let writes = chunk
                .iter()
                .map(|id| Write::delete(Key::new(held_pk(target), id.clone())))
                .collect();
            self.store.transact(writes).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{ChangeOp, Origin};
    use crate::store::embedded::EmbeddedStore;

    /// A listing says when it is not all: 10,001 held, 10,000 listed and `more`; the
    /// overview's count stops at its cap.
    #[tokio::test]
    async fn a_capped_listing_says_more_are_held() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let held = Held::new(store.clone());
        let writes: Vec<Write> = (0..=MAX_LISTED)
            .map(|i| {
                let event = ChangeEvent::new(
                    ResourceKind::User,
                    &format!("u{i}"),
                    ChangeOp::Delete,
                    Origin::Scim,
                );
                let h = HeldChange::new(
                    &event,
                    "t",
                    AuditOp::Delete,
                    format!("user{i}"),
                    "test".into(),
                    1,
                );
                Held::hold_write(&h).unwrap()
            })
            .collect();
        for chunk in writes.chunks(100) {
            store.transact(chunk.to_vec()).await.unwrap();
        }
        let (listed, more) = held.list("t").await.unwrap();
        assert_eq!((listed.len(), more), (MAX_LISTED, true));
        assert!(
            listed.windows(2).all(|w| w[0].at <= w[1].at),
            "oldest first"
        );
        assert_eq!(held.count_upto("t", 100).await.unwrap(), (100, true));
        assert_eq!(held.count_upto("other", 100).await.unwrap(), (0, false));
        held.remove("t", &[listed[0].id.clone(), listed[1].id.clone()])
            .await
            .unwrap();
        let (listed, more) = held.list("t").await.unwrap();
        assert_eq!((listed.len(), more), (MAX_LISTED - 1, false));
        assert_eq!(
            held.count_upto("t", MAX_LISTED).await.unwrap(),
            (MAX_LISTED - 1, false)
        );
    }
}
