//! The key layout of the directory's items, and the move from the layout before shards.
//!
//! Layout 1 (stores written before this version) kept every user in one type index
//! partition (`RT#User`), had no last-modified index and no counters. Layout 2 shards the
//! type index, adds the last-modified index (`gsi2`) and counts resources in sharded
//! counters (`keys.rs`). A store says which it is in with the marker item `META#LAYOUT`.
//!
//! [`Directory::migrate_layout`] rewrites every layout-1 resource in place (same data and
//! version, new index keys, conditioned on the version read so a concurrent update wins),
//! counts each type into its counters and writes the marker. It is idempotent and
//! resumable (a rewritten resource leaves the old partition, so a stopped run continues
//! where it stopped), and cheap when there is nothing to move: `provisync migrate` runs it
//! on either backend, `provisync serve` when it starts and every scheduled cycle before
//! its work (so a deployed table migrates by itself within one cycle of an upgrade).
//!
//! Until the marker is written, reads serve both layouts: the old partition is merged as
//! one more shard of the type index, counts are counted and `meta.lastModified` filters
//! are answered from the type index. A store with no layout-1 resources at all (a new one)
//! gets its marker on first use.

use std::sync::atomic::Ordering as AtomicOrdering;

use serde::Serialize;
use serde_json::{Value, json};

use super::keys::{layout_key, legacy_type_index_pk, resource_pk};
use super::{Directory, DirectoryError, from_item, store_error, to_item};
use crate::store::{Condition, Index, Item, Query, StoreError, Write, now_epoch};
use provisync_scim::ResourceKind;

/// The layout this version writes.
pub const LAYOUT_VERSION: u64 = 2;
/// Resources rewritten per transaction while migrating.
const MIGRATE_BATCH: usize = 50;

/// What [`Directory::migrate_layout`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct MigrationReport {
    /// Resources moved to the current layout, users then groups.
    pub users_moved: usize,
    pub groups_moved: usize,
    /// The counts the counters were set to (only when something was moved or the marker
    /// was missing; `None`: not recounted).
    pub users: Option<usize>,
    pub groups: Option<usize>,
    /// `false`: the deadline came first; run it again to finish.
    pub complete: bool,
}

impl std::fmt::Display for MigrationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} users and {} groups moved to layout {LAYOUT_VERSION}",
            self.users_moved, self.groups_moved
        )?;
        if let (Some(u), Some(g)) = (self.users, self.groups) {
            write!(f, "; counted {u} users, {g} groups")?;
        }
        if !self.complete {
            write!(f, "; out of time, run again to finish")?;
        }
        Ok(())
    }
}

impl Directory {
    /// Whether every directory item is in the current layout. Cached once true.
    pub(super) async fn layout_ready(&self) -> Result<bool, DirectoryError> {
        if self.layout_ready.load(AtomicOrdering::Relaxed) {
            return Ok(true);
        }
        if self.marker_version().await? >= LAYOUT_VERSION {
            self.layout_ready.store(true, AtomicOrdering::Relaxed);
            return Ok(true);
        }
        // A store without layout-1 resources (a new one) is in the current layout.
        for kind in [ResourceKind::User, ResourceKind::Group] {
            if !self.legacy_page(kind, 1).await?.is_empty() {
                return Ok(false);
            }
        }
        self.write_marker().await?;
        self.layout_ready.store(true, AtomicOrdering::Relaxed);
        Ok(true)
    }

    async fn marker_version(&self) -> Result<u64, DirectoryError> {
        Ok(self
            .store
            .get(&layout_key())
            .await
            .map_err(store_error)?
            .and_then(|i| serde_json::from_slice::<Value>(&i.data).ok())
            .and_then(|v| v["version"].as_u64())
            .unwrap_or(1))
    }

    async fn write_marker(&self) -> Result<(), DirectoryError> {
        let key = layout_key();
        let data = json!({"version": LAYOUT_VERSION}).to_string().into_bytes();
        self.store
            .transact(vec![Write::put(Item::new(key.pk, key.sk, data))])
            .await
            .map_err(store_error)
    }

    /// The first `limit` resources still in the old type index partition.
    async fn legacy_page(
        &self,
        kind: ResourceKind,
        limit: usize,
    ) -> Result<Vec<Item>, DirectoryError> {
        Ok(self
            .store
            .query(&Query::new(Index::Gsi1, legacy_type_index_pk(kind)).limit(limit))
            .await
            .map_err(store_error)?
            .items)
    }

    /// Moves every resource still in the layout before shards into the current layout,
    /// counts each type into its counters and writes the layout marker (see the module
    /// documentation). Stops at `deadline` (epoch seconds) if given, leaving the rest for
    /// the next run.
    pub async fn migrate_layout(
        &self,
        deadline: Option<i64>,
    ) -> Result<MigrationReport, DirectoryError> {
        let mut report = MigrationReport::default();
        let marker = self.marker_version().await?;
        for kind in [ResourceKind::User, ResourceKind::Group] {
            // Pages where nothing could be moved (an unreadable item, or an index that has
            // not caught up yet): a few in a row end the run unfinished rather than spin.
            let mut stuck = 0;
            loop {
                if deadline.is_some_and(|d| now_epoch() >= d) || stuck == 3 {
                    return Ok(report);
                }
                let page = self.legacy_page(kind, MIGRATE_BATCH).await?;
                if page.is_empty() {
                    break;
                }
                let moved = self.rewrite(kind, &page).await?;
                stuck = if moved == 0 { stuck + 1 } else { 0 };
                match kind {
                    ResourceKind::User => report.users_moved += moved,
                    ResourceKind::Group => report.groups_moved += moved,
                }
            }
        }
        if marker < LAYOUT_VERSION || report.users_moved + report.groups_moved > 0 {
            report.users = Some(self.recount(ResourceKind::User).await?);
            report.groups = Some(self.recount(ResourceKind::Group).await?);
            self.write_marker().await?;
        }
        self.layout_ready.store(true, AtomicOrdering::Relaxed);
        report.complete = true;
        Ok(report)
    }

    /// Rewrites resources with the current index keys, each on condition that it was not
    /// changed since it was read. Returns how many were rewritten by this call.
    async fn rewrite(&self, kind: ResourceKind, items: &[Item]) -> Result<usize, DirectoryError> {
        let prefix = resource_pk(kind, "");
        let mut writes = Vec::with_capacity(items.len());
        for item in items {
            let id = item.pk.strip_prefix(&prefix).unwrap_or_default();
            let Ok(stored) = from_item(item) else {
                tracing::warn!(pk = %item.pk, "unreadable resource left in the old layout");
                continue;
            };
            if id.is_empty() {
                continue;
            }
            writes.push(Write::Put {
                item: to_item(kind, id, &stored.resource, item.version)?,
                condition: Condition::VersionIs(item.version),
            });
        }
        if writes.is_empty() {
            return Ok(0);
        }
        match self.store.transact(writes.clone()).await {
            Ok(()) => Ok(writes.len()),
            Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => {
                // One of them changed meanwhile (and was written in the current layout by
                // that change) or is gone: the others one by one.
                let mut n = 0;
                for w in writes {
                    match self.store.transact(vec![w]).await {
                        Ok(()) => n += 1,
                        Err(StoreError::ConditionFailed { .. }) => {}
                        Err(e) => return Err(store_error(e)),
                    }
                }
                Ok(n)
            }
            Err(e) => Err(store_error(e)),
        }
    }
}
