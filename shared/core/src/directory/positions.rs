//! Index paging without rescans: after serving the page at `startIndex` of a query, the
//! directory remembers where that page started and where the next one starts (a position
//! in the ordered index the query reads, and the query's `totalResults`), for
//! [`POSITION_TTL_SECS`]. Identity providers page with `startIndex = previous + count`, so
//! the next request finds its position and reads one page; a request for a page nobody
//! asked for lately starts from the nearest remembered position before it.
//!
//! A position is where the page continues, not a count: resources created or deleted
//! between two requests shift later pages neither forward nor back (no resource is skipped
//! or served twice by a client walking the pages in order), which is what RFC 7644
//! §3.4.2.4 leaves to the service provider.
//!
//! In `provisync serve` (the embedded store: one process) they are kept in memory. On
//! DynamoDB, where each request may reach another Lambda instance, they are also kept in
//! the table (`PAGEAT#{query hash}` / `{startIndex}`, expiring by TTL), a write per page.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::keys::page_at_key;
use super::{Directory, DirectoryError, store_error};
use crate::store::{Cursor, Index, Item, Query, Write, now_epoch};

/// How long a position is remembered.
pub const POSITION_TTL_SECS: i64 = 600;
/// Positions kept in memory at most (oldest dropped first when full).
const LOCAL_LIMIT: usize = 10_000;

/// Where the page at `start_index` starts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Remembered {
    #[serde(skip)]
    pub(super) start_index: usize,
    /// The index position the page continues after (`None`: the start of the query).
    pub(super) after: Option<String>,
    /// The query's `totalResults` when it was counted (filtered queries, whose total is
    /// not a maintained count).
    pub(super) total: Option<usize>,
}

/// One query's remembered positions by start index, each with when it was remembered.
type ByStartIndex = BTreeMap<usize, (Remembered, i64)>;

/// The positions this process remembers, by query hash and start index.
#[derive(Default)]
pub(super) struct Positions {
    local: Mutex<HashMap<String, ByStartIndex>>,
}

impl Positions {
    fn recall(&self, query: &str, start_index: usize, now: i64) -> Option<Remembered> {
        let local = self.local.lock().ok()?;
        local
            .get(query)?
            .range(..=start_index)
            .rev()
            .find(|(_, (_, exp))| *exp > now)
            .map(|(_, (r, _))| r.clone())
    }

    fn remember(&self, query: &str, r: &Remembered, now: i64) {
        let Ok(mut local) = self.local.lock() else {
            return;
        };
        if local.values().map(BTreeMap::len).sum::<usize>() >= LOCAL_LIMIT {
            for pages in local.values_mut() {
                pages.retain(|_, (_, exp)| *exp > now);
            }
            local.retain(|_, pages| !pages.is_empty());
            if local.values().map(BTreeMap::len).sum::<usize>() >= LOCAL_LIMIT {
                local.clear();
            }
        }
        local
            .entry(query.to_string())
            .or_default()
            .insert(r.start_index, (r.clone(), now + POSITION_TTL_SECS));
    }
}

impl Directory {
    /// Whether positions are shared through the store (more than one process serves it).
    fn positions_shared(&self) -> bool {
        self.store.backend() != "embedded"
    }

    /// The remembered position nearest at or before `start_index`.
    pub(super) async fn recall(
        &self,
        query: &str,
        start_index: usize,
    ) -> Result<Option<Remembered>, DirectoryError> {
        let now = now_epoch();
        let local = self.positions.recall(query, start_index, now);
        if local.as_ref().is_some_and(|r| r.start_index == start_index) || !self.positions_shared()
        {
            return Ok(local);
        }
        // The nearest in the table: the greatest start index not after this one.
        let key = page_at_key(query, start_index + 1);
        let page = self
            .store
            .query(
                &Query::new(Index::Primary, key.pk.clone())
                    .descending()
                    .limit(1)
                    .after(Some(Cursor::at(key.sk.clone(), key.pk, key.sk))),
            )
            .await
            .map_err(store_error)?;
        let stored = page.items.first().and_then(|item| {
            let mut r: Remembered = serde_json::from_slice(&item.data).ok()?;
            r.start_index = item.sk.parse().ok()?;
            Some(r)
        });
        Ok(match (local, stored) {
            (Some(l), Some(s)) => Some(if l.start_index >= s.start_index { l } else { s }),
            (l, s) => l.or(s),
        })
    }

    /// Remembers positions (best effort: a failure to write one only costs a later
    /// request a longer read).
    pub(super) async fn remember(&self, query: &str, positions: &[Remembered]) {
        let now = now_epoch();
        for r in positions {
            self.positions.remember(query, r, now);
        }
        if !self.positions_shared() {
            return;
        }
        let writes: Vec<Write> = positions
            .iter()
            .filter_map(|r| {
                let key = page_at_key(query, r.start_index);
                let data = serde_json::to_vec(r).ok()?;
                Some(Write::put(
                    Item::new(key.pk, key.sk, data).with_expiry(now + POSITION_TTL_SECS),
                ))
            })
            .collect();
        let mut writes = writes;
        writes.dedup_by(|a, b| a.key() == b.key());
        if writes.is_empty() {
            return;
        }
        if let Err(e) = self.store.transact(writes).await {
            tracing::warn!(error = %e, "index page positions not remembered");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_positions_give_the_nearest_before() {
        let p = Positions::default();
        let r = |s: usize, after: &str| Remembered {
            start_index: s,
            after: Some(after.into()),
            total: None,
        };
        p.remember("q", &r(101, "a"), 0);
        p.remember("q", &r(201, "b"), 0);
        p.remember("other", &r(301, "c"), 0);
        assert_eq!(p.recall("q", 201, 1), Some(r(201, "b")));
        assert_eq!(p.recall("q", 250, 1), Some(r(201, "b")));
        assert_eq!(p.recall("q", 150, 1), Some(r(101, "a")));
        assert_eq!(p.recall("q", 50, 1), None);
        // Expired.
        assert_eq!(p.recall("q", 201, POSITION_TTL_SECS + 1), None);
        assert_eq!(super::super::keys::page_at_sk(7), "000000000007");
    }
}
