//! The users of one group, as a search: `groups.value eq "G"` (or `groups[value eq "G"]`)
//! alone, unsorted. They are read from G's membership items, in member-id order (ids are
//! UUIDv7: the creation order of any other listing), skipping members that are groups:
//!
//! - by cursor (RFC 9865), a page reads its `count` members (and one more, to know
//!   whether there are), from the position in the cursor (the last member id shown);
//!   `totalResults` is left out, as for other filtered cursor pages (`count=0` asks for it
//!   alone);
//! - by `startIndex`, the membership items are read to count them (small items, 1,000 to
//!   a query) and only the page's users are loaded.
//!
//! Before, every page loaded every member and read each one's membership again: any page
//! of the users of a group of 3,000 read 9,001 items (`tests/scim_groups.rs`).

use super::cursor::{CursorError, PageCursor, Position};
use super::keys::{MEMBER_SK_PREFIX, resource_pk};
use super::lookup::{Lookup, indexed_lookup};
use super::{
    Directory, DirectoryError, MAX_KEY_VALUE_BYTES, SearchRequest, SearchResult, store_error,
};
use crate::store::{Cursor, Index, Query, now_epoch};
use provisync_scim::ResourceKind;
use provisync_scim::filter::Filter;
use serde_json::Value;

/// The group whose users a users' filter asks for, when that is all it asks.
pub(super) fn sole_membership(f: &Filter) -> Option<String> {
    if matches!(f, Filter::And(..) | Filter::Or(..)) {
        return None;
    }
    match indexed_lookup(ResourceKind::User, f) {
        Some(Lookup::MembersOfGroup(g)) => Some(g),
        _ => None,
    }
}

/// Membership items one query reads at most.
const MEMBERS_READ: usize = 1000;

impl Directory {
    /// A page of the users of group `gid` ([`sole_membership`]), by `startIndex` or by
    /// cursor (`cursor`: `Some(None)` for the first page).
    pub(super) async fn group_members_page(
        &self,
        gid: &str,
        req: &SearchRequest,
        query: &str,
        count: usize,
        cursor: Option<Option<PageCursor>>,
    ) -> Result<SearchResult, DirectoryError> {
        // By `startIndex`, and `count=0` (the total alone): the members counted.
        let Some(cursor) = cursor.filter(|_| count > 0) else {
            let ids = self.user_members(gid, None, usize::MAX, false).await?.0;
            let total = ids.len();
            let start = (req.start_index.max(1) - 1).min(total);
            let end = (start + count).min(total);
            return Ok(SearchResult {
                total_results: Some(total),
                start_index: start + 1,
                resources: self
                    .load_existing(ResourceKind::User, &ids[start..end])
                    .await?,
                next_cursor: None,
                previous_cursor: None,
            });
        };
        let (from, back) = match cursor {
            None => (None, false),
            Some(PageCursor {
                position: Position::Key(k),
                back,
            }) => (k, back),
            Some(_) => {
                return Err(CursorError::Invalid(
                    "it belongs to a query with another filter or sort order",
                )
                .into());
            }
        };
        let (mut ids, more) = self.user_members(gid, from.clone(), count, back).await?;
        if back {
            ids.reverse();
        }
        let now = now_epoch();
        let seal = |k: &String, back: bool| {
            self.cursors().seal(
                query,
                count,
                &PageCursor {
                    position: Position::Key(Some(k.clone())),
                    back,
                },
                now,
            )
        };
        let first = ids.first().or(from.as_ref());
        let last = ids.last().or(from.as_ref());
        // Forward: more after the last; something before unless this is the start.
        // Back (a previous page): more before the first; the page it came from after.
        let (next, previous) = if back {
            (
                last.map(|k| seal(k, false)),
                first.filter(|_| more).map(|k| seal(k, true)),
            )
        } else {
            (
                last.filter(|_| more).map(|k| seal(k, false)),
                first.filter(|_| from.is_some()).map(|k| seal(k, true)),
            )
        };
        Ok(SearchResult {
            total_results: None,
            start_index: 1,
            resources: self.load_existing(ResourceKind::User, &ids).await?,
            next_cursor: next,
            previous_cursor: previous,
        })
    }

    /// Up to `want` ids of users in group `gid`, after member id `after` (before it, when
    /// `descending`), in that order; and whether there are more.
    async fn user_members(
        &self,
        gid: &str,
        after: Option<String>,
        want: usize,
        descending: bool,
    ) -> Result<(Vec<String>, bool), DirectoryError> {
        // No group has such an id (and no store takes such a key: DynamoDB's 2 KB).
        if gid.is_empty() || gid.len() > MAX_KEY_VALUE_BYTES {
            return Ok((Vec::new(), false));
        }
        let pk = resource_pk(ResourceKind::Group, gid);
        let mut position = after.map(|id| {
            let sk = format!("{MEMBER_SK_PREFIX}{id}");
            Cursor::at(sk.clone(), pk.clone(), sk)
        });
        let mut out = Vec::new();
        loop {
            let mut q = Query::new(Index::Primary, pk.clone())
                .prefix(MEMBER_SK_PREFIX)
                .limit((want - out.len()).saturating_add(1).min(MEMBERS_READ))
                .after(position.take());
            if descending {
                q = q.descending();
            }
            let page = self.store.query(&q).await.map_err(store_error)?;
            for item in &page.items {
                let v: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
                if v.get("type").and_then(Value::as_str).unwrap_or("User") != "User" {
                    continue;
                }
                if out.len() == want {
                    return Ok((out, true));
                }
                out.push(item.sk.trim_start_matches(MEMBER_SK_PREFIX).to_string());
            }
            match page.next {
                Some(c) => position = Some(c),
                None => return Ok((out, false)),
            }
        }
    }
}
