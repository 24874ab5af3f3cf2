//! Lists and searches (RFC 7644 §3.4.2, with RFC 9865 cursors): the query planner.
//!
//! - An equality on a keyed attribute (`id`, `userName`, `externalId`, group
//!   `displayName`, a membership) reads its few candidates by key ([`super::lookup`]);
//!   the users of one group, asked alone, page by page through its membership items
//!   ([`super::group_members`]).
//! - Everything else walks an ordered index ([`super::paged`]): the type index (creation
//!   order), or the last-modified index from the bound of a `meta.lastModified gt|ge`
//!   filter, or when sorting by `meta.lastModified`; the filter is checked on each
//!   resource read. Pages continue from positions, never by counting from the start.
//! - A sort on any other attribute reads everything and sorts it in memory.
//!
//! Resources come with `groups` / `members` filled in when the projection shows them, and
//! before the filter is checked when it names them.

use super::cursor::{PageCursor, Position, query_hash};
use super::group_members::sole_membership;
use super::index::Ordering;
use super::lookup::{Lookup, indexed_lookup, modified_since};
use super::{Directory, DirectoryError, SearchRequest, SearchResult, Stored};
use crate::store::now_epoch;
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, sort};
use serde_json::Value;
use std::collections::HashMap;

/// How a search reads the directory.
pub(super) enum Plan {
    /// A few candidates found by key.
    Keyed(Lookup),
    /// The users of one group, from its membership items ([`super::group_members`]).
    Members(String),
    /// An ordered index, from a position (`from`: a `meta.lastModified` bound).
    Ordered {
        ordering: Ordering,
        from: Option<String>,
        descending: bool,
    },
    /// Everything, sorted in memory.
    Sorted,
}

impl Plan {
    /// A letter for the query hash: a cursor of one plan is no position in another.
    fn tag(&self) -> &'static str {
        match self {
            Plan::Keyed(_) => "k",
            Plan::Members(_) => "g",
            Plan::Ordered {
                ordering: Ordering::Created,
                ..
            } => "c",
            Plan::Ordered {
                ordering: Ordering::Modified,
                ..
            } => "m",
            Plan::Sorted => "s",
        }
    }
}

fn is_attr(path: &AttrPath, attr: &str, sub: Option<&str>) -> bool {
    path.attr.eq_ignore_ascii_case(attr)
        && match (path.sub_attr.as_deref(), sub) {
            (None, None) => true,
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        }
}

/// `ready`: the store is in the current key layout (the last-modified index is whole).
pub(super) fn plan(kind: ResourceKind, req: &SearchRequest, ready: bool) -> Plan {
    if kind == ResourceKind::User
        && req.sort_by.is_none()
        && let Some(gid) = req.filter.as_ref().and_then(sole_membership)
    {
        return Plan::Members(gid);
    }
    if let Some(lookup) = req.filter.as_ref().and_then(|f| indexed_lookup(kind, f)) {
        return Plan::Keyed(lookup);
    }
    let since = req
        .filter
        .as_ref()
        .filter(|_| ready)
        .and_then(|f| modified_since(kind, f));
    let urn_ok = |p: &AttrPath| {
        p.urn
            .as_deref()
            .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()))
    };
    match &req.sort_by {
        None => match since {
            Some(from) => Plan::Ordered {
                ordering: Ordering::Modified,
                from: Some(from),
                descending: false,
            },
            None => Plan::Ordered {
                ordering: Ordering::Created,
                from: None,
                descending: false,
            },
        },
        // Ids are UUIDv7: their order is the type index's.
        Some(p) if urn_ok(p) && is_attr(p, "id", None) => Plan::Ordered {
            ordering: Ordering::Created,
            from: None,
            descending: req.descending,
        },
        Some(p) if ready && urn_ok(p) && is_attr(p, "meta", Some("lastModified")) => {
            Plan::Ordered {
                ordering: Ordering::Modified,
                from: if req.descending { None } else { since },
                descending: req.descending,
            }
        }
        Some(_) => Plan::Sorted,
    }
}

impl Directory {
    /// List or search one resource type.
    pub async fn search(
        &self,
        kind: ResourceKind,
        req: &SearchRequest,
    ) -> Result<SearchResult, DirectoryError> {
        let view = self.schemas.view(kind);
        if let Some(f) = &req.filter {
            f.validate(&view)?;
        }
        let count = req.count.unwrap_or(self.max_results).min(self.max_results);
        let ready = self.layout_ready().await?;
        let plan = plan(kind, req, ready);
        let query = format!("{}{}", query_hash(kind, req), plan.tag());
        let cursor = match req.cursor.as_deref() {
            None => None,
            Some("") => Some(None),
            Some(token) => Some(Some(self.cursors().open(
                token,
                &query,
                count,
                now_epoch(),
            )?)),
        };
        let mut result = match plan {
            Plan::Members(gid) => {
                self.group_members_page(&gid, req, &query, count, cursor)
                    .await?
            }
            Plan::Keyed(lookup) => {
                let mut all = self.candidates(kind, lookup).await?;
                let m = self.matcher(kind, req);
                let mut kept = Vec::with_capacity(all.len());
                for mut s in all.drain(..) {
                    if self.matches(kind, &m, &mut s).await? {
                        kept.push(s);
                    }
                }
                if let Some(sort_by) = &req.sort_by {
                    sort_stored(&view, &mut kept, sort_by, req.descending);
                }
                self.listed_page(kept, req, &query, count, cursor.as_ref())?
            }
            Plan::Sorted => {
                let m = self.matcher(kind, req);
                let mut all = Vec::new();
                let mut scanned = Vec::new();
                self.scan(kind, |s| scanned.push(s)).await?;
                for mut s in scanned {
                    if self.matches(kind, &m, &mut s).await? {
                        all.push(s);
                    }
                }
                if let Some(sort_by) = &req.sort_by {
                    sort_stored(&view, &mut all, sort_by, req.descending);
                }
                self.listed_page(all, req, &query, count, cursor.as_ref())?
            }
            Plan::Ordered {
                ordering,
                from,
                descending,
            } => {
                let walk = super::paged::Walk {
                    kind,
                    ordering,
                    from,
                    descending,
                    legacy: !ready,
                    query: &query,
                    count,
                };
                match cursor {
                    Some(c) => self.cursor_page(&walk, req, c).await?,
                    None => self.index_page(&walk, req).await?,
                }
            }
        };
        for s in result.resources.iter_mut() {
            self.expand(kind, s, &req.projection).await?;
        }
        Ok(result)
    }

    pub(super) fn cursors(&self) -> super::cursor::Cursors<'_> {
        super::cursor::Cursors {
            key: &self.cursor_key,
            timeout_secs: self.cursor_timeout_secs,
        }
    }

    /// A page of a list the directory holds whole (keyed candidates, or sorted in memory),
    /// by index or by cursor (an offset in the list).
    fn listed_page(
        &self,
        all: Vec<Stored>,
        req: &SearchRequest,
        query: &str,
        count: usize,
        cursor: Option<&Option<PageCursor>>,
    ) -> Result<SearchResult, DirectoryError> {
        let total = all.len();
        let start = match cursor {
            None => req.start_index.max(1) - 1,
            Some(None) => 0,
            // A previous page ends where the page it was issued on started.
            Some(Some(PageCursor {
                position: Position::Offset(o),
                back: true,
            })) => o.saturating_sub(count),
            Some(Some(PageCursor {
                position: Position::Offset(o),
                back: false,
            })) => *o,
            Some(Some(_)) => {
                return Err(super::cursor::CursorError::Invalid(
                    "it belongs to a query with another filter or sort order",
                )
                .into());
            }
        };
        let end = (start + count).min(total);
        let resources: Vec<Stored> = all
            .into_iter()
            .skip(start)
            .take(end.saturating_sub(start))
            .collect();
        let mut result = SearchResult {
            total_results: Some(total),
            start_index: start + 1,
            resources,
            next_cursor: None,
            previous_cursor: None,
        };
        if cursor.is_some() && count > 0 {
            let now = now_epoch();
            let seal = |position, back| {
                self.cursors()
                    .seal(query, count, &PageCursor { position, back }, now)
            };
            if end < total {
                result.next_cursor = Some(seal(Position::Offset(end), false));
            }
            if start > 0 {
                result.previous_cursor = Some(seal(Position::Offset(start), true));
            }
        }
        Ok(result)
    }
}

pub(super) fn sort_stored(
    view: &provisync_scim::ResourceSchema<'_>,
    all: &mut Vec<Stored>,
    sort_by: &AttrPath,
    descending: bool,
) {
    let mut resources: Vec<(Value, u64)> = all.drain(..).map(|s| (s.resource, s.version)).collect();
    let mut values: Vec<Value> = resources.iter().map(|(r, _)| r.clone()).collect();
    sort::sort_resources(view, &mut values, sort_by, descending);
    // Re-attach versions by id (sort only moves resources).
    let versions: HashMap<String, u64> = resources
        .drain(..)
        .map(|(r, v)| {
            (
                r.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                v,
            )
        })
        .collect();
    all.extend(values.into_iter().map(|r| {
        let version = versions
            .get(r.get("id").and_then(Value::as_str).unwrap_or_default())
            .copied()
            .unwrap_or(0);
        Stored {
            resource: r,
            version,
        }
    }));
}
