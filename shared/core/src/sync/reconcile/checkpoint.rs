//! Checkpoints of a run in progress: the `RECON#{target}` / `STATE` record and the
//! `SEEN#…` records of the hub ids each page showed.

use crate::store::keyspace;
use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::{ReconcileCounts, ReconcileError, Reconciler};
use crate::store::{Index, Item, Key, Query, StoreError, Write, now_epoch};
use crate::sync::runs::Sent;

// ---- checkpoints ----------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Phase {
    /// Reading the target's accounts.
    Listing,
    /// Queuing creates for hub users not seen on the target.
    Missing,
    /// Reading the target's groups.
    GroupListing,
    /// Queuing creates for hub groups not seen on the target.
    GroupMissing,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct Checkpoint {
    pub(super) run: String,
    pub(super) started_at: String,
    pub(super) phase: Phase,
    /// The target listing's next page (phase `listing`).
    pub(super) cursor: Option<String>,
    /// User pages read so far (numbers the users' `SEEN` records).
    pub(super) pages: u32,
    /// Group pages read so far (numbers the groups' `SEEN` records).
    #[serde(default)]
    pub(super) group_pages: u32,
    /// Last hub id handled (phases `missing`, `group_missing`).
    pub(super) missing_after: Option<String>,
    /// What the run found and did itself; the changes it queued count when the target
    /// has answered (`sent`, and the run's outcomes).
    pub(super) counts: ReconcileCounts,
    /// Change events the run queued so far.
    #[serde(default)]
    pub(super) sent: Sent,
}

fn state_key(target: &str) -> Key {
    Key::new(format!("{}{target}", keyspace::RECON), "STATE")
}

/// Whose hub ids a `SEEN` record holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum SeenOf {
    Users,
    Groups,
}

/// `SEEN#{run}#…` for users, `SEEN#G#{run}#…` for groups (a run id is hex: never `G`).
fn seen_prefix(run: &str, of: SeenOf) -> String {
    match of {
        SeenOf::Users => format!("SEEN#{run}#"),
        SeenOf::Groups => format!("SEEN#G#{run}#"),
    }
}

pub(super) fn seen_key(target: &str, run: &str, of: SeenOf, page: u32) -> Key {
    Key::new(
        format!("{}{target}", keyspace::RECON),
        format!("{}{page:08}", seen_prefix(run, of)),
    )
}

/// How long checkpoint records live at most (a run abandoned for two days starts over).
const CHECKPOINT_TTL_SECS: i64 = 2 * 24 * 3600;

impl Reconciler {
    pub(super) async fn load_checkpoint(
        &self,
        target: &str,
    ) -> Result<Option<Checkpoint>, ReconcileError> {
        if self.planning() {
            return Ok(None);
        }
        let Some(item) = self.store.get(&state_key(target)).await? else {
            return Ok(None);
        };
        match serde_json::from_slice(&item.data) {
            Ok(cp) => Ok(Some(cp)),
            Err(e) => {
                tracing::warn!(target_id = target, error = %e, "unreadable reconcile checkpoint: starting over");
                Ok(None)
            }
        }
    }

    pub(super) async fn load_seen(
        &self,
        target: &str,
        cp: &Checkpoint,
        of: SeenOf,
    ) -> Result<HashSet<String>, ReconcileError> {
        let mut seen = HashSet::new();
        let pages = match of {
            SeenOf::Users => cp.pages,
            SeenOf::Groups => cp.group_pages,
        };
        if pages == 0 {
            return Ok(seen);
        }
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Primary, format!("{}{target}", keyspace::RECON))
                        .prefix(seen_prefix(&cp.run, of))
                        .limit(100)
                        .after(after),
                )
                .await?;
            for item in &page.items {
                if let Ok(ids) = serde_json::from_slice::<Vec<String>>(&item.data) {
                    seen.extend(ids);
                }
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(seen),
            }
        }
    }

    fn checkpoint_item(target: &str, cp: &Checkpoint) -> Result<Item, ReconcileError> {
        let key = state_key(target);
        let data = serde_json::to_vec(cp).map_err(|e| StoreError::Invalid(e.to_string()))?;
        Ok(Item::new(key.pk, key.sk, data).with_expiry(now_epoch() + CHECKPOINT_TTL_SECS))
    }

    pub(super) async fn save_checkpoint(
        &self,
        target: &str,
        cp: &Checkpoint,
    ) -> Result<(), ReconcileError> {
        if self.planning() {
            return Ok(());
        }
        self.store
            .transact(vec![Write::put(Self::checkpoint_item(target, cp)?)])
            .await?;
        Ok(())
    }

    pub(super) async fn save_page(
        &self,
        target: &str,
        cp: &Checkpoint,
        key: Key,
        seen: &[String],
    ) -> Result<(), ReconcileError> {
        if self.planning() {
            return Ok(());
        }
        let data = serde_json::to_vec(seen).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let seen_item =
            Item::new(key.pk, key.sk, data).with_expiry(now_epoch() + CHECKPOINT_TTL_SECS);
        self.store
            .transact(vec![
                Write::put(seen_item),
                Write::put(Self::checkpoint_item(target, cp)?),
            ])
            .await?;
        Ok(())
    }

    pub(super) async fn clear_checkpoint(&self, target: &str) -> Result<(), ReconcileError> {
        if self.planning() {
            return Ok(());
        }
        let mut keys = vec![state_key(target)];
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Primary, format!("{}{target}", keyspace::RECON))
                        .prefix("SEEN#")
                        .limit(100)
                        .after(after),
                )
                .await?;
            keys.extend(page.items.iter().map(Item::key));
            match page.next {
                Some(c) => after = Some(c),
                None => break,
            }
        }
        for chunk in keys.chunks(crate::store::MAX_TRANSACT_ITEMS) {
            self.store
                .transact(chunk.iter().cloned().map(Write::delete).collect())
                .await?;
        }
        Ok(())
    }
}
