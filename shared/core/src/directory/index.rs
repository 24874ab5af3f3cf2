//! Reading the directory's sharded indexes in one order: the type index (by id, that is
//! creation order) and the last-modified index (by `meta.lastModified`). Each is
//! [`INDEX_SHARDS`] partitions; a read queries the shards it needs concurrently, a small
//! batch each, and merges them by index sort key, fetching more from a shard only when its
//! batch is used up. A read starts after a position (an index sort key, exclusive), which
//! is what a page's continuation is: no read ever counts from the start to find its place.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use super::keys::{
    INDEX_SHARDS, legacy_type_index_pk, modified_index_pk, resource_key, type_index_pk,
};
use super::{Directory, DirectoryError, Stored, from_item, store_error};
use crate::store::{Cursor, Index, Item, Query, Store, StoreError};
use provisync_scim::ResourceKind;

/// Which ordered index a read walks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ordering {
    /// The type index: by id (creation order).
    Created,
    /// The last-modified index: by `meta.lastModified`, then id.
    Modified,
}

/// The partitions one read merges.
#[derive(Clone, Debug)]
pub(super) struct Sharded {
    kind: ResourceKind,
    index: Index,
    pks: Vec<String>,
}

impl Sharded {
    /// `legacy`: the store may still hold resources in the unsharded type index of the
    /// layout before shards (read as one more shard until migrated).
    pub(super) fn new(kind: ResourceKind, ordering: Ordering, legacy: bool) -> Sharded {
        match ordering {
            Ordering::Created => {
                let mut pks: Vec<String> =
                    (0..INDEX_SHARDS).map(|s| type_index_pk(kind, s)).collect();
                if legacy {
                    pks.push(legacy_type_index_pk(kind));
                }
                Sharded {
                    kind,
                    index: Index::Gsi1,
                    pks,
                }
            }
            Ordering::Modified => Sharded {
                kind,
                index: Index::Gsi2,
                pks: (0..INDEX_SHARDS)
                    .map(|s| modified_index_pk(kind, s))
                    .collect(),
            },
        }
    }
}

impl Sharded {
    /// How many partitions a read merges.
    pub(super) fn partitions(&self) -> usize {
        self.pks.len()
    }
}

/// The store cursor of a position: the index sort key, with the primary key of the
/// resource it ends with as the tie-break (a bound that is not a resource's key ties with
/// nothing).
fn position_cursor(kind: ResourceKind, index_sk: &str) -> Cursor {
    let id = index_sk.rsplit('#').next().unwrap_or(index_sk);
    let key = resource_key(kind, id);
    Cursor::at(index_sk, key.pk, key.sk)
}

fn index_sk(index: Index, item: &Item) -> &str {
    match index {
        Index::Gsi2 => item.gsi2.as_ref(),
        _ => item.gsi1.as_ref(),
    }
    .map(|(_, sk)| sk.as_str())
    .unwrap_or_default()
}

struct Shard {
    pk: String,
    buffer: VecDeque<Item>,
    after: Option<Cursor>,
    done: bool,
    /// Items asked for on this shard's next fetch.
    batch: usize,
}

/// A merged read over the shards of one index, in ascending or descending order, from a
/// position (exclusive). Counts the items it fetched from the store.
pub(super) struct Merge {
    store: Arc<dyn Store>,
    index: Index,
    descending: bool,
    shards: Vec<Shard>,
    /// A shard's batch doubles on each refill up to this (a filtered read that matches
    /// little reads more at a time).
    max_batch: usize,
    /// Reading descending, the read ends at this sort key (the bound an ascending query
    /// started from).
    floor: Option<String>,
    /// Items fetched from the store so far (including those still buffered).
    pub(super) fetched: usize,
}

impl Merge {
    /// `from`: the index sort key to continue after (`None`: the start). `batch`: items
    /// asked of each shard at a time.
    pub(super) fn new(
        store: Arc<dyn Store>,
        sharded: &Sharded,
        from: Option<&str>,
        descending: bool,
        batch: usize,
    ) -> Merge {
        let after = from.map(|f| position_cursor(sharded.kind, f));
        Merge {
            store,
            index: sharded.index,
            descending,
            shards: sharded
                .pks
                .iter()
                .map(|pk| Shard {
                    pk: pk.clone(),
                    buffer: VecDeque::new(),
                    after: after.clone(),
                    done: false,
                    batch: batch.max(1),
                })
                .collect(),
            max_batch: batch.max(1),
            floor: None,
            fetched: 0,
        }
    }

    /// Lets each shard's batch double on every refill, up to `max`.
    pub(super) fn growing_to(mut self, max: usize) -> Merge {
        self.max_batch = max.max(self.max_batch);
        self
    }

    /// Ends a descending read at this sort key (exclusive).
    pub(super) fn floor(mut self, floor: Option<String>) -> Merge {
        self.floor = floor.filter(|_| self.descending);
        self
    }

    /// The batch size for a page of `want` results when about one item in `1/selectivity`
    /// matches: each shard's share, plus room for the uneven spread of ids over shards.
    pub(super) fn batch_for(want: usize, shards: usize) -> usize {
        let share = want.div_ceil(shards.max(1));
        share + (share as f64).sqrt().ceil() as usize + 2
    }

    /// Fetches the next batch of every shard in `which` (`limit`: that many items each
    /// instead of the shard's batch), concurrently.
    async fn fill(&mut self, which: &[usize], limit: Option<usize>) -> Result<(), StoreError> {
        let queries: Vec<Query> = which
            .iter()
            .map(|&i| {
                let s = &self.shards[i];
                let q = Query::new(self.index, s.pk.clone())
                    .limit(limit.unwrap_or(s.batch))
                    .after(s.after.clone());
                if self.descending { q.descending() } else { q }
            })
            .collect();
        let pages = join_all(queries.iter().map(|q| self.store.query(q))).await;
        for (&i, page) in which.iter().zip(pages) {
            let page = page?;
            self.fetched += page.items.len();
            let shard = &mut self.shards[i];
            shard.done = page.next.is_none();
            if limit.is_none() {
                shard.batch = (shard.batch * 2).min(self.max_batch);
            }
            if let Some(last) = page.items.last() {
                let isk = index_sk(self.index, last).to_string();
                shard.after = Some(Cursor::at(isk, last.pk.clone(), last.sk.clone()));
            }
            for item in page.items {
                if let Some(floor) = &self.floor
                    && index_sk(self.index, &item) <= floor.as_str()
                {
                    shard.done = true;
                    break;
                }
                shard.buffer.push_back(item);
            }
        }
        Ok(())
    }

    /// The next item in order, or `None` at the end of the index.
    pub(super) async fn next(&mut self) -> Result<Option<Item>, StoreError> {
        let empty: Vec<usize> = (0..self.shards.len())
            .filter(|&i| self.shards[i].buffer.is_empty() && !self.shards[i].done)
            .collect();
        if !empty.is_empty() {
            self.fill(&empty, None).await?;
        }
        let index = self.index;
        let descending = self.descending;
        let best = self
            .shards
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.buffer.front().map(|it| (i, index_sk(index, it))))
            .reduce(|a, b| {
                let b_first = if descending { b.1 > a.1 } else { b.1 < a.1 };
                if b_first { b } else { a }
            })
            .map(|(i, _)| i);
        Ok(best.and_then(|i| self.shards[i].buffer.pop_front()))
    }

    /// Whether anything follows what was handed out: buffered items, or (asked with a read
    /// of one item per shard that may still hold some) items in the store.
    pub(super) async fn has_more(&mut self) -> Result<bool, StoreError> {
        if self.shards.iter().any(|s| !s.buffer.is_empty()) {
            return Ok(true);
        }
        let open: Vec<usize> = (0..self.shards.len())
            .filter(|&i| !self.shards[i].done)
            .collect();
        if open.is_empty() {
            return Ok(false);
        }
        self.fill(&open, Some(1)).await?;
        Ok(self.shards.iter().any(|s| !s.buffer.is_empty()))
    }

    /// The position of an item handed out: where a read continues after it.
    pub(super) fn position_of(&self, item: &Item) -> String {
        index_sk(self.index, item).to_string()
    }
}

/// Runs futures concurrently and returns their outputs in order (the shards' queries: on
/// DynamoDB each is a network round trip).
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in futures.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => *slot = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Items asked of each shard at a time when reading a whole index.
const SCAN_BATCH: usize = 250;

impl Directory {
    /// Every resource of a type, in creation order, a batch of each shard at a time.
    pub async fn scan(
        &self,
        kind: ResourceKind,
        mut f: impl FnMut(Stored),
    ) -> Result<(), DirectoryError> {
        let sharded = Sharded::new(kind, Ordering::Created, !self.layout_ready().await?);
        let mut merge = Merge::new(self.store.clone(), &sharded, None, false, SCAN_BATCH);
        while let Some(item) = merge.next().await.map_err(store_error)? {
            f(from_item(&item)?);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::EmbeddedStore;
    use crate::store::{Item, Write};

    #[test]
    fn batches_leave_room_for_uneven_shards() {
        assert_eq!(Merge::batch_for(100, 8), 13 + 4 + 2);
        assert_eq!(Merge::batch_for(1, 8), 1 + 1 + 2);
    }

    #[tokio::test]
    async fn join_all_keeps_order() {
        let out = join_all((0..5).map(|i| async move {
            tokio::task::yield_now().await;
            i * 2
        }))
        .await;
        assert_eq!(out, [0, 2, 4, 6, 8]);
    }

    /// Ids spread over the shards come back merged in order, from any position, both ways.
    #[tokio::test]
    async fn merge_orders_across_shards() {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
        let kind = ResourceKind::User;
        let ids: Vec<String> = (0..60).map(|i| format!("id{i:03}")).collect();
        let writes = ids
            .iter()
            .map(|id| {
                let k = resource_key(kind, id);
                Write::put(
                    Item::new(k.pk, k.sk, b"{}".to_vec())
                        .with_gsi1(type_index_pk(kind, super::super::keys::shard_of(id)), id),
                )
            })
            .collect();
        store.transact(writes).await.unwrap();
        let sharded = Sharded::new(kind, Ordering::Created, false);
        for (from, descending, want) in [
            (None, false, ids.clone()),
            (Some("id029"), false, ids[30..].to_vec()),
            (Some("id0295"), false, ids[30..].to_vec()),
            (
                Some("id030"),
                true,
                ids[..30].iter().rev().cloned().collect(),
            ),
        ] {
            let mut m = Merge::new(store.clone(), &sharded, from, descending, 2);
            let mut got = Vec::new();
            while let Some(it) = m.next().await.unwrap() {
                got.push(m.position_of(&it));
            }
            assert_eq!(got, want, "from {from:?} descending {descending}");
            assert!(!m.has_more().await.unwrap());
        }
        let mut m = Merge::new(store.clone(), &sharded, None, false, 4);
        for _ in 0..10 {
            m.next().await.unwrap();
        }
        assert!(m.has_more().await.unwrap());
    }
}
