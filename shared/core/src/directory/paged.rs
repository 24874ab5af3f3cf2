//! Pages of a walk over an ordered index ([`super::index`]), by cursor (RFC 9865) and by
//! `startIndex` (RFC 7644 §3.4.2.4). Either way a page starts from a position and reads
//! one page's worth of the index:
//!
//! - by cursor, the position is in the cursor. An unfiltered page reads `count` resources
//!   (plus each shard's spare); a filtered one examines at most [`PAGE_READ_BUDGET`]
//!   resources (or `count`, if larger; [`Directory::with_page_read_budget`]) and may return fewer than `count`, with a
//!   `nextCursor` that continues after the last one examined (RFC 9865 §2 lets a page hold
//!   fewer). `totalResults` comes from the maintained counts when there is no filter, and
//!   is left out otherwise (RFC 9865 §2), except for `count=0`, which asks for it alone.
//! - by `startIndex`, the position is remembered from the page before
//!   ([`super::positions`]), so walking the pages in order reads each once. A page of a
//!   start index nobody asked for lately skips from the nearest remembered position.
//!   `totalResults` of an unfiltered listing comes from the maintained counts; that of a
//!   filtered one is counted on its first page and remembered with the positions.

use super::cursor::{CursorError, PageCursor, Position};
use super::index::{Merge, Ordering, Sharded};
use super::matcher::Matcher;
use super::positions::Remembered;
use super::{
    Directory, DirectoryError, SearchRequest, SearchResult, Stored, from_item, store_error,
};
use crate::store::now_epoch;
use provisync_scim::ResourceKind;

/// Resources one cursor page of a filtered query examines at most, by default
/// ([`Directory::with_page_read_budget`]).
pub const PAGE_READ_BUDGET: usize = 1000;

/// One ordered walk: the index, where the query starts, its direction.
pub(super) struct Walk<'a> {
    pub(super) kind: ResourceKind,
    pub(super) ordering: Ordering,
    /// Where the query itself starts (a `meta.lastModified` bound), `None`: the start.
    pub(super) from: Option<String>,
    pub(super) descending: bool,
    /// The store may hold resources of the layout before shards.
    pub(super) legacy: bool,
    /// The query hash cursors and positions are bound to.
    pub(super) query: &'a str,
    /// The page size.
    pub(super) count: usize,
}

enum Step {
    Match(Box<Stored>, String),
    End,
    OutOfBudget,
}

/// Reads a walk from a position, checking the filter on each resource.
struct Reader<'a> {
    dir: &'a Directory,
    kind: ResourceKind,
    matcher: Matcher<'a>,
    merge: Merge,
    budget: usize,
    /// The position of the last resource examined.
    last: Option<String>,
}

impl<'a> Reader<'a> {
    /// `back`: read toward the start of the walk.
    fn new(
        dir: &'a Directory,
        walk: &Walk<'_>,
        req: &'a SearchRequest,
        from: Option<String>,
        back: bool,
        budget: usize,
    ) -> Reader<'a> {
        let sharded = Sharded::new(walk.kind, walk.ordering, walk.legacy);
        let batch = Merge::batch_for(walk.count.max(1), sharded.partitions());
        let filtered = req.filter.is_some();
        let max_batch = if filtered {
            budget.min(dir.page_read_budget) / sharded.partitions()
        } else {
            batch
        };
        let merge = Merge::new(
            dir.store.clone(),
            &sharded,
            from.as_deref(),
            walk.descending != back,
            batch,
        )
        .growing_to(max_batch)
        // Reading back toward the bound an ascending walk starts from: stop there.
        .floor(walk.from.clone().filter(|_| back && !walk.descending));
        Reader {
            dir,
            kind: walk.kind,
            matcher: dir.matcher(walk.kind, req),
            merge,
            budget,
            last: from,
        }
    }

    async fn step(&mut self) -> Result<Step, DirectoryError> {
        loop {
            if self.budget == 0 {
                return Ok(Step::OutOfBudget);
            }
            let Some(item) = self.merge.next().await.map_err(store_error)? else {
                return Ok(Step::End);
            };
            self.budget -= 1;
            let position = self.merge.position_of(&item);
            self.last = Some(position.clone());
            let mut s = from_item(&item)?;
            if self.dir.matches(self.kind, &self.matcher, &mut s).await? {
                return Ok(Step::Match(Box::new(s), position));
            }
        }
    }

    /// Passes over `n` matches; returns how many there were. Without a filter no
    /// resource is parsed.
    async fn skip(&mut self, n: usize) -> Result<usize, DirectoryError> {
        let mut skipped = 0;
        while skipped < n {
            if self.matcher.filter.is_none() {
                let Some(item) = self.merge.next().await.map_err(store_error)? else {
                    break;
                };
                self.last = Some(self.merge.position_of(&item));
            } else {
                match self.step().await? {
                    Step::Match(..) => {}
                    Step::End | Step::OutOfBudget => break,
                }
            }
            skipped += 1;
        }
        Ok(skipped)
    }

    /// Up to `n` matches, and whether the walk ended before (`true`: no more).
    async fn take(
        &mut self,
        n: usize,
    ) -> Result<(Vec<(Stored, String)>, Option<Step>), DirectoryError> {
        let mut out = Vec::new();
        while out.len() < n {
            match self.step().await? {
                Step::Match(s, p) => out.push((*s, p)),
                other => return Ok((out, Some(other))),
            }
        }
        Ok((out, None))
    }
}

impl Directory {
    /// The number of matches of a filtered walk (and, on the way, the position after the
    /// first `before` of them, if there are that many).
    async fn count_walk(
        &self,
        walk: &Walk<'_>,
        req: &SearchRequest,
        before: usize,
    ) -> Result<(usize, Option<Option<String>>), DirectoryError> {
        let mut r = Reader::new(self, walk, req, walk.from.clone(), false, usize::MAX);
        let mut n = 0;
        let mut at = (before == 0).then(|| walk.from.clone());
        while let Step::Match(_, p) = r.step().await? {
            n += 1;
            if n == before {
                at = Some(Some(p));
            }
        }
        Ok((n, at))
    }

    /// A page by cursor (`cursor`: `None` for the first page).
    pub(super) async fn cursor_page(
        &self,
        walk: &Walk<'_>,
        req: &SearchRequest,
        cursor: Option<PageCursor>,
    ) -> Result<SearchResult, DirectoryError> {
        let filtered = req.filter.is_some();
        let total = if !filtered && !walk.legacy {
            Some(self.count(walk.kind).await?)
        } else if walk.count == 0 {
            Some(self.count_walk(walk, req, 0).await?.0)
        } else {
            None
        };
        let mut result = SearchResult {
            total_results: total,
            start_index: 1,
            resources: vec![],
            next_cursor: None,
            previous_cursor: None,
        };
        if walk.count == 0 {
            return Ok(result);
        }
        let first = cursor.is_none();
        let (from, back) = match cursor {
            None => (walk.from.clone(), false),
            Some(PageCursor {
                position: Position::Key(k),
                back,
            }) => (k, back),
            Some(PageCursor {
                position: Position::Offset(_),
                ..
            }) => {
                return Err(CursorError::Invalid(
                    "it belongs to a query with another filter or sort order",
                )
                .into());
            }
        };
        let budget = if filtered {
            self.page_read_budget.max(walk.count)
        } else {
            usize::MAX
        };
        let mut reader = Reader::new(self, walk, req, from.clone(), back, budget);
        let (mut page, stopped) = reader.take(walk.count).await?;
        let more = match stopped {
            Some(Step::End) => false,
            Some(_) => true,
            None => reader.merge.has_more().await.map_err(store_error)?,
        };
        let now = now_epoch();
        let seal = |position: Option<String>, back: bool| {
            Some(self.cursors().seal(
                walk.query,
                walk.count,
                &PageCursor {
                    position: Position::Key(position),
                    back,
                },
                now,
            ))
        };
        if back {
            // Read toward the start: the page is the reverse of what was read.
            page.reverse();
            if more {
                result.previous_cursor = seal(reader.last.clone(), true);
            }
            // The next page: after this one, or (nothing before the cursor's position) the
            // first page.
            result.next_cursor = match page.last() {
                Some((_, p)) => seal(Some(p.clone()), false),
                None => seal(walk.from.clone(), false),
            };
        } else {
            if more {
                result.next_cursor = seal(reader.last.clone(), false);
            }
            if !first && let Some(p) = page.first().map(|(_, p)| p.clone()).or(from) {
                result.previous_cursor = seal(Some(p), true);
            }
        }
        result.resources = page.into_iter().map(|(s, _)| s).collect();
        Ok(result)
    }

    /// A page by `startIndex`.
    pub(super) async fn index_page(
        &self,
        walk: &Walk<'_>,
        req: &SearchRequest,
    ) -> Result<SearchResult, DirectoryError> {
        let start = req.start_index.max(1);
        let counted = req.filter.is_none() && !walk.legacy;
        let recalled = if start > 1 || !counted {
            self.recall(walk.query, start).await?
        } else {
            None
        };
        let mut known_start: Option<Option<String>> = match &recalled {
            Some(r) if r.start_index == start => Some(r.after.clone()),
            _ if start == 1 => Some(walk.from.clone()),
            _ => None,
        };
        let total = if counted {
            self.count(walk.kind).await?
        } else if let Some(t) = recalled.as_ref().and_then(|r| r.total) {
            t
        } else {
            let (t, at) = self.count_walk(walk, req, start - 1).await?;
            if known_start.is_none() {
                known_start = at;
            }
            t
        };
        let mut result = SearchResult {
            total_results: Some(total),
            start_index: start,
            resources: vec![],
            next_cursor: None,
            previous_cursor: None,
        };
        if walk.count == 0 || start > total {
            return Ok(result);
        }
        let from = match known_start {
            Some(at) => at,
            None => {
                // Skip from the nearest remembered position before this page (or the start).
                let (base, at) = match &recalled {
                    Some(r) => (r.start_index, r.after.clone()),
                    None => (1, walk.from.clone()),
                };
                let mut skipper = Reader::new(self, walk, req, at, false, usize::MAX);
                skipper.skip(start - base).await?;
                skipper.last
            }
        };
        let mut reader = Reader::new(self, walk, req, from.clone(), false, usize::MAX);
        let (page, _) = reader.take(walk.count).await?;
        if let Some((_, last)) = page.last() {
            let remembered = |start_index, after| Remembered {
                start_index,
                after,
                total: (!counted).then_some(total),
            };
            self.remember(
                walk.query,
                &[
                    remembered(start, from),
                    remembered(start + page.len(), Some(last.clone())),
                ],
            )
            .await;
        }
        result.resources = page.into_iter().map(|(s, _)| s).collect();
        Ok(result)
    }
}
