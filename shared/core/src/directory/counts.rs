//! How many resources of a type the directory holds, without counting them: the sum of
//! [`COUNT_SHARDS`] counters, each changed by `Write::Add` in the very transaction that
//! creates or deletes a resource. A write picks its counter at random, so concurrent
//! creates rarely touch the same counter item (on DynamoDB two transactions on one item
//! conflict). [`Directory::recount`] sets the counters from what the type index holds.

use rand::Rng;

use super::keys::{COUNT_SHARDS, count_key};
use super::{Directory, DirectoryError, store_error};
use crate::store::{Condition, Key, StoreError, Write, counter_value};
use provisync_scim::ResourceKind;

/// The write that counts `delta` resources of `kind` (created: positive, deleted:
/// negative), to put in the transaction of the create or delete.
pub(super) fn count_write(kind: ResourceKind, delta: i64) -> Write {
    let shard = rand::rng().random_range(0..COUNT_SHARDS);
    Write::add(count_key(kind, shard), delta)
}

/// Attempts of a recount that loses races with concurrent writes.
const RECOUNT_ATTEMPTS: usize = 5;

impl Directory {
    /// The number of resources of a type, from the counters (one batched read).
    pub async fn count(&self, kind: ResourceKind) -> Result<usize, DirectoryError> {
        let (total, _) = self.read_counters(kind).await?;
        Ok(usize::try_from(total.max(0)).unwrap_or(0))
    }

    /// Every counter of `kind` (value and version; absent: `None`), and their sum.
    async fn read_counters(
        &self,
        kind: ResourceKind,
    ) -> Result<(i64, Vec<(Key, Option<u64>)>), DirectoryError> {
        let keys: Vec<Key> = (0..COUNT_SHARDS).map(|s| count_key(kind, s)).collect();
        let items = self.store.get_many(&keys).await.map_err(store_error)?;
        let mut total = 0i64;
        let shards = keys
            .into_iter()
            .map(|k| {
                let item = items.iter().find(|i| i.pk == k.pk && i.sk == k.sk);
                total = total.saturating_add(item.map(counter_value).unwrap_or(0));
                (k, item.map(|i| i.version))
            })
            .collect();
        Ok((total, shards))
    }

    /// Counts the resources of a type in the type index and sets the counters to it: one
    /// transaction that adds the difference to one counter, on condition that no counter
    /// changed since they were read (a create or delete meanwhile: read and count again).
    /// Index reads on DynamoDB are eventually consistent: a write of the last moment may
    /// be missed, and a later recount corrects it. Returns the count.
    pub async fn recount(&self, kind: ResourceKind) -> Result<usize, DirectoryError> {
        for _ in 0..RECOUNT_ATTEMPTS {
            let (total, shards) = self.read_counters(kind).await?;
            let mut counted = 0i64;
            self.scan(kind, |_| counted += 1).await?;
            let diff = counted - total;
            if diff == 0 {
                return Ok(counted as usize);
            }
            let unchanged = |v: Option<u64>| match v {
                Some(v) => Condition::VersionIs(v),
                None => Condition::NotExists,
            };
            let writes: Vec<Write> = shards
                .into_iter()
                .enumerate()
                .map(|(i, (key, version))| {
                    if i == 0 {
                        Write::Add {
                            key,
                            delta: diff,
                            condition: unchanged(version),
                        }
                    } else {
                        Write::Check {
                            key,
                            condition: unchanged(version),
                        }
                    }
                })
                .collect();
            match self.store.transact(writes).await {
                Ok(()) => return Ok(counted as usize),
                Err(StoreError::ConditionFailed { .. } | StoreError::Conflict) => continue,
                Err(e) => return Err(store_error(e)),
            }
        }
        Err(DirectoryError::Conflict)
    }
}
