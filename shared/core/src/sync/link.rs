//! Links between a hub resource and its counterpart on a target, and the per-target
//! delivery receipts that make delivery idempotent by event id.
//!
//! | record   | pk                                   | sk     | gsi1 (pk / sk)                    | gsi2 (pk / sk)                              |
//! |----------|--------------------------------------|--------|-----------------------------------|---------------------------------------------|
//! | link     | `LINK#{target}#{type}#{hub id}`      | `LINK` | `LINKS#{target}#{type}` / hub id  | `LINKT#{target}#{type}#{target id}` / hub id |
//! | receipt  | `DONE#{event id}#{target}`           | `DONE` |                                   |                                             |
//!
//! The type index lists everything a target holds from the hub (reconcile); the reverse
//! index finds the hub resource of a target id. Receipts expire after a week (TTL).

use crate::store::keyspace;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::store::{Index, Item, Key, Query, Store, StoreError, Write, now_epoch};
use provisync_scim::ResourceKind;

/// How long a delivery receipt is kept: longer than any redelivery of the same event.
pub const RECEIPT_TTL_SECS: i64 = 7 * 24 * 3600;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Link {
    pub target: String,
    pub resource_type: ResourceKind,
    pub hub_id: String,
    pub target_id: String,
    /// Hash of the last payload delivered (`mapping::content_hash`).
    pub hash: String,
    /// The last payload delivered (lets connectors send minimal updates).
    pub delivered: Value,
    /// Whether the account is deactivated on the target by us (out of scope / deleted).
    #[serde(default)]
    pub disabled: bool,
    pub at: String,
    /// The hub version of the newest change delivered (`ChangeEvent::version`): an event
    /// older than it is stale and skipped. 0 in links written before versions were kept.
    #[serde(default)]
    pub version: u64,
}

fn link_key(target: &str, kind: ResourceKind, hub_id: &str) -> Key {
    Key::new(
        format!("{}{target}#{}#{hub_id}", keyspace::LINK, kind.as_str()),
        "LINK",
    )
}

fn receipt_key(event_id: &str, target: &str) -> Key {
    Key::new(format!("{}{event_id}#{target}", keyspace::DONE), "DONE")
}

#[derive(Clone)]
pub struct Links {
    store: Arc<dyn Store>,
}

impl Links {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Links { store }
    }

    /// The store the links live in (the engine reads memberships from the same store).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub async fn get(
        &self,
        target: &str,
        kind: ResourceKind,
        hub_id: &str,
    ) -> Result<Option<Link>, StoreError> {
        let Some(item) = self.store.get(&link_key(target, kind, hub_id)).await? else {
            return Ok(None);
        };
        Ok(serde_json::from_slice(&item.data).ok())
    }

    /// The links of several hub resources (batched point reads), by hub id.
    pub async fn get_many(
        &self,
        target: &str,
        kind: ResourceKind,
        hub_ids: &[String],
    ) -> Result<std::collections::HashMap<String, Link>, StoreError> {
        let mut out = std::collections::HashMap::new();
        for chunk in hub_ids.chunks(100) {
            let keys: Vec<Key> = chunk.iter().map(|h| link_key(target, kind, h)).collect();
            for item in self.store.get_many(&keys).await? {
                if let Ok(l) = serde_json::from_slice::<Link>(&item.data) {
                    out.insert(l.hub_id.clone(), l);
                }
            }
        }
        Ok(out)
    }

    /// Writes several links (transactions of at most 100; each link once).
    pub async fn put_many(&self, links: &[Link]) -> Result<(), StoreError> {
        for chunk in links.chunks(crate::store::MAX_TRANSACT_ITEMS) {
            let writes = chunk
                .iter()
                .map(|l| Self::item(l).map(Write::put))
                .collect::<Result<Vec<_>, _>>()?;
            self.store.transact(writes).await?;
        }
        Ok(())
    }

    pub async fn put(&self, link: &Link) -> Result<(), StoreError> {
        self.store
            .transact(vec![Write::put(Self::item(link)?)])
            .await
    }

    /// Stores a link a retry of its delivery writes again (an unconfirmed one, written
    /// before the account joins its groups): it need not reach the disk before the
    /// delivery goes on ([`Store::transact_unflushed`]); the receipt that confirms it
    /// makes it durable.
    pub async fn put_unconfirmed(&self, link: &Link) -> Result<(), StoreError> {
        self.store
            .transact_unflushed(vec![Write::put(Self::item(link)?)])
            .await
    }

    fn item(link: &Link) -> Result<Item, StoreError> {
        let key = link_key(&link.target, link.resource_type, &link.hub_id);
        let data = serde_json::to_vec(link).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Item::new(key.pk, key.sk, data)
            .with_gsi1(
                format!(
                    "{}{}#{}",
                    keyspace::LINKS,
                    link.target,
                    link.resource_type.as_str()
                ),
                link.hub_id.clone(),
            )
            .with_gsi2(
                format!(
                    "{}{}#{}#{}",
                    keyspace::LINK_BY_TARGET_ID,
                    link.target,
                    link.resource_type.as_str(),
                    link.target_id
                ),
                link.hub_id.clone(),
            ))
    }

    pub async fn delete(
        &self,
        target: &str,
        kind: ResourceKind,
        hub_id: &str,
    ) -> Result<(), StoreError> {
        self.store
            .transact(vec![Write::delete(link_key(target, kind, hub_id))])
            .await
    }

    /// The hub id linked to a target id.
    pub async fn hub_id_of(
        &self,
        target: &str,
        kind: ResourceKind,
        target_id: &str,
    ) -> Result<Option<String>, StoreError> {
        let page = self
            .store
            .query(
                &Query::new(
                    Index::Gsi2,
                    format!(
                        "{}{target}#{}#{target_id}",
                        keyspace::LINK_BY_TARGET_ID,
                        kind.as_str()
                    ),
                )
                .limit(1),
            )
            .await?;
        Ok(page
            .items
            .first()
            .and_then(|i| i.gsi2.as_ref().map(|(_, h)| h.clone())))
    }

    /// Every link of a target for one resource type, a page at a time.
    pub async fn list(
        &self,
        target: &str,
        kind: ResourceKind,
        mut f: impl FnMut(Link),
    ) -> Result<(), StoreError> {
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(
                        Index::Gsi1,
                        format!("{}{target}#{}", keyspace::LINKS, kind.as_str()),
                    )
                    .limit(500)
                    .after(after),
                )
                .await?;
            for item in &page.items {
                if let Ok(l) = serde_json::from_slice(&item.data) {
                    f(l);
                }
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// Was this event already delivered to this target?
    pub async fn delivered(&self, event_id: &str, target: &str) -> Result<bool, StoreError> {
        Ok(self
            .store
            .get(&receipt_key(event_id, target))
            .await?
            .is_some())
    }

    /// Records that this event reached this target (and, atomically, the link as it is now,
    /// or its removal, and `also`: the audit entry, the run's outcome).
    pub async fn mark_delivered(
        &self,
        event_id: &str,
        target: &str,
        link: LinkChange,
        also: Vec<Write>,
    ) -> Result<(), StoreError> {
        let writes = Self::receipt_writes(event_id, target, link, also)?;
        self.store.transact(writes).await
    }

    /// The writes of [`Links::mark_delivered`], for a caller that commits more with them.
    pub fn receipt_writes(
        event_id: &str,
        target: &str,
        link: LinkChange,
        also: Vec<Write>,
    ) -> Result<Vec<Write>, StoreError> {
        let key = receipt_key(event_id, target);
        let receipt =
            Item::new(key.pk, key.sk, b"{}".to_vec()).with_expiry(now_epoch() + RECEIPT_TTL_SECS);
        let mut writes = vec![Write::put(receipt)];
        match link {
            LinkChange::Keep => {}
            LinkChange::Put(l) => writes.push(Write::put(Self::item(&l)?)),
            LinkChange::Remove(kind, hub_id) => {
                writes.push(Write::delete(link_key(target, kind, &hub_id)))
            }
        }
        writes.extend(also);
        Ok(writes)
    }
}

/// What a delivery does to the link.
pub enum LinkChange {
    Keep,
    Put(Box<Link>),
    Remove(ResourceKind, String),
}
