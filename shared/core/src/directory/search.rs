//! Lists and searches (RFC 7644 §3.4.2): the query planner answers equalities on keyed
//! attributes with point reads and everything else from the type index.

use super::keys::{UniqueAttr, resource_key, type_index_pk};
use super::{
    Directory, DirectoryError, MAX_KEY_VALUE_BYTES, SCAN_PAGE, SearchRequest, SearchResult, Stored,
    from_item, store_error,
};
use crate::store::{Index, Key, Query};
use provisync_scim::filter::{CompValue, CompareOp, Filter};
use provisync_scim::projection::Projection;
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, sort};
use serde_json::Value;
use std::collections::HashMap;

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
        let start_index = req.start_index.max(1);
        let count = req.count.unwrap_or(self.max_results).min(self.max_results);
        let matches = |s: &Stored| {
            req.filter
                .as_ref()
                .is_none_or(|f| f.matches(&view, &s.resource))
        };

        // Equality on a uniquely keyed attribute (what IdPs send before every create) is a
        // point read, never a scan; membership equalities read the membership index.
        let mut candidates: Option<Vec<Stored>> =
            match req.filter.as_ref().and_then(|f| indexed_lookup(kind, f)) {
                Some(Lookup::Id(id)) => Some(self.load_existing(kind, &[id]).await?),
                Some(Lookup::Unique(attr, value)) => Some(
                    self.lookup_unique(kind, attr, &value)
                        .await?
                        .into_iter()
                        .collect(),
                ),
                Some(Lookup::AnyOf(keys)) => Some(self.load_any_of(kind, &keys).await?),
                Some(Lookup::GroupsWithMember(member)) => {
                    let gids = self.groups_of_ids(&member).await?;
                    Some(self.load_existing(kind, &gids).await?)
                }
                Some(Lookup::MembersOfGroup(gid)) => {
                    let ids: Vec<String> = self
                        .members_of(&gid)
                        .await?
                        .into_iter()
                        .map(|m| m.value)
                        .collect();
                    Some(self.load_existing(kind, &ids).await?)
                }
                None => None,
            };
        // A filter on a computed attribute (`members`, `groups`) is evaluated on resources
        // with that attribute filled in.
        let computed = match kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        };
        if req
            .filter
            .as_ref()
            .is_some_and(|f| filter_mentions(f, computed))
        {
            let mut all = match candidates.take() {
                Some(c) => c,
                None => {
                    let mut all = Vec::new();
                    self.scan(kind, |s| all.push(s)).await?;
                    all
                }
            };
            let with_computed = Projection {
                attributes: vec![AttrPath::new(computed)],
                excluded: vec![],
            };
            for s in all.iter_mut() {
                self.expand(kind, s, &with_computed).await?;
            }
            candidates = Some(all);
        }

        let (total, mut page) = if let Some(c) = candidates {
            let mut all: Vec<Stored> = c.into_iter().filter(|s| matches(s)).collect();
            if let Some(sort_by) = &req.sort_by {
                sort_stored(&view, &mut all, sort_by, req.descending);
            }
            let total = all.len();
            (
                total,
                all.into_iter()
                    .skip(start_index - 1)
                    .take(count)
                    .collect::<Vec<_>>(),
            )
        } else if let Some(sort_by) = &req.sort_by {
            let mut all = Vec::new();
            self.scan(kind, |s| {
                if matches(&s) {
                    all.push(s);
                }
            })
            .await?;
            sort_stored(&view, &mut all, sort_by, req.descending);
            let total = all.len();
            (
                total,
                all.into_iter().skip(start_index - 1).take(count).collect(),
            )
        } else {
            // Unsorted: keep only the requested window in memory, count the rest.
            let mut total = 0usize;
            let mut window = Vec::new();
            self.scan(kind, |s| {
                if matches(&s) {
                    total += 1;
                    if total >= start_index && window.len() < count {
                        window.push(s);
                    }
                }
            })
            .await?;
            (total, window)
        };
        for s in page.iter_mut() {
            self.expand(kind, s, &req.projection).await?;
        }
        Ok(SearchResult {
            total_results: total,
            start_index,
            resources: page,
        })
    }

    /// Every resource of a type, in creation order, a page of the store at a time.
    pub async fn scan(
        &self,
        kind: ResourceKind,
        mut f: impl FnMut(Stored),
    ) -> Result<(), DirectoryError> {
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Gsi1, type_index_pk(kind))
                        .limit(SCAN_PAGE)
                        .after(after),
                )
                .await
                .map_err(store_error)?;
            for item in &page.items {
                f(from_item(item)?);
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(()),
            }
        }
    }

    /// The resource holding this value of a uniquely keyed attribute (`userName`,
    /// `externalId`, group `displayName`): a strongly consistent point read.
    pub async fn find_unique(
        &self,
        kind: ResourceKind,
        attr: UniqueAttr,
        value: &str,
    ) -> Result<Option<Stored>, DirectoryError> {
        self.lookup_unique(kind, attr, value).await
    }

    async fn lookup_unique(
        &self,
        kind: ResourceKind,
        attr: UniqueAttr,
        value: &str,
    ) -> Result<Option<Stored>, DirectoryError> {
        if value.len() > MAX_KEY_VALUE_BYTES {
            return Ok(None);
        }
        let Some(item) = self
            .store
            .get(&attr.key(kind, value))
            .await
            .map_err(store_error)?
        else {
            return Ok(None);
        };
        let id: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
        let Some(id) = id.get("id").and_then(Value::as_str) else {
            return Ok(None);
        };
        match self.load(kind, id).await {
            Ok(s) => Ok(Some(s)),
            Err(DirectoryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The resources holding any of these ids (`None`) or values of uniquely keyed
    /// attributes: one batched read of the uniqueness keys, one of the resources.
    async fn load_any_of(
        &self,
        kind: ResourceKind,
        keys: &[(Option<UniqueAttr>, String)],
    ) -> Result<Vec<Stored>, DirectoryError> {
        let mut ids: Vec<String> = Vec::new();
        let mut unique_keys: Vec<Key> = Vec::new();
        for (attr, value) in keys {
            match attr {
                None => ids.push(value.clone()),
                Some(a) if value.len() <= MAX_KEY_VALUE_BYTES => {
                    unique_keys.push(a.key(kind, value))
                }
                Some(_) => {}
            }
        }
        if !unique_keys.is_empty() {
            for item in self
                .store
                .get_many(&unique_keys)
                .await
                .map_err(store_error)?
            {
                let id: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
                if let Some(id) = id.get("id").and_then(Value::as_str) {
                    ids.push(id.to_string());
                }
            }
        }
        ids.sort();
        ids.dedup();
        self.load_existing(kind, &ids).await
    }

    /// The resources with these ids that exist (batched point reads).
    pub async fn load_existing(
        &self,
        kind: ResourceKind,
        ids: &[String],
    ) -> Result<Vec<Stored>, DirectoryError> {
        let keys: Vec<Key> = ids
            .iter()
            .filter(|id| !id.is_empty() && id.len() <= MAX_KEY_VALUE_BYTES)
            .map(|id| resource_key(kind, id))
            .collect();
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                out.push(from_item(&item)?);
            }
        }
        // Keep creation order (ids are UUIDv7), as a scan would.
        out.sort_by(|a, b| a.id().cmp(b.id()));
        Ok(out)
    }
}

fn sort_stored(
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

pub(super) enum Lookup {
    Id(String),
    Unique(UniqueAttr, String),
    /// Groups having this member (`members[value eq "id"]`, `members.value eq "id"`).
    GroupsWithMember(String),
    /// Members of this group (`groups[value eq "id"]`, `groups.value eq "id"`).
    MembersOfGroup(String),
    /// `id` (`None`) or uniquely keyed equalities joined by `or` (`userName eq "a" or
    /// userName eq "b" or externalId eq "c"`: what a batched import looks users up with).
    AnyOf(Vec<(Option<UniqueAttr>, String)>),
}

/// The equality of `f` on `id` (`None`) or on a uniquely keyed attribute, if it is one.
fn keyed_equality(kind: ResourceKind, f: &Filter) -> Option<(Option<UniqueAttr>, String)> {
    let Filter::Compare {
        path,
        op: CompareOp::Eq,
        value: CompValue::Str(v),
    } = f
    else {
        return None;
    };
    let urn_ok = path
        .urn
        .as_deref()
        .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()));
    if path.sub_attr.is_some() || !urn_ok {
        return None;
    }
    if path.attr.eq_ignore_ascii_case("id") {
        return Some((None, v.clone()));
    }
    UniqueAttr::for_kind(kind)
        .iter()
        .find(|a| a.attr_name().eq_ignore_ascii_case(&path.attr))
        .map(|a| (Some(*a), v.clone()))
}

/// Every branch of an `or` chain, if each is a keyed equality. The chain is walked with a
/// stack, not recursion (its length is bounded by the filter's length only).
fn keyed_disjunction(kind: ResourceKind, f: &Filter) -> Option<Vec<(Option<UniqueAttr>, String)>> {
    let mut out = Vec::new();
    let mut stack = vec![f];
    while let Some(f) = stack.pop() {
        match f {
            Filter::Or(a, b) => {
                stack.push(b);
                stack.push(a);
            }
            leaf => out.push(keyed_equality(kind, leaf)?),
        }
    }
    Some(out)
}

/// Does the filter name this top-level attribute anywhere?
fn filter_mentions(f: &Filter, attr: &str) -> bool {
    match f {
        Filter::Compare { path, .. } | Filter::Present(path) | Filter::ValuePath { path, .. } => {
            path.urn.is_none() && path.attr.eq_ignore_ascii_case(attr)
        }
        Filter::And(a, b) | Filter::Or(a, b) => {
            filter_mentions(a, attr) || filter_mentions(b, attr)
        }
        Filter::Not(a) => filter_mentions(a, attr),
    }
}

/// Finds an equality on a keyed attribute that every match must satisfy: the filter
/// itself or one side of a top-level `and`.
pub(super) fn indexed_lookup(kind: ResourceKind, f: &Filter) -> Option<Lookup> {
    let membership = |attr: &str, id: String| -> Option<Lookup> {
        match kind {
            ResourceKind::Group if attr.eq_ignore_ascii_case("members") => {
                Some(Lookup::GroupsWithMember(id))
            }
            ResourceKind::User if attr.eq_ignore_ascii_case("groups") => {
                Some(Lookup::MembersOfGroup(id))
            }
            _ => None,
        }
    };
    match f {
        Filter::ValuePath { path, filter } if path.urn.is_none() => match filter.as_ref() {
            Filter::Compare {
                path: inner,
                op: CompareOp::Eq,
                value: CompValue::Str(v),
            } if inner.attr.eq_ignore_ascii_case("value") && inner.sub_attr.is_none() => {
                membership(&path.attr, v.clone())
            }
            _ => None,
        },
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.urn.is_none()
            && path
                .sub_attr
                .as_deref()
                .is_some_and(|s| s.eq_ignore_ascii_case("value")) =>
        {
            membership(&path.attr, v.clone())
        }
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value: CompValue::Str(v),
        } if path.sub_attr.is_none() => {
            let urn_ok = path
                .urn
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()));
            if !urn_ok {
                return None;
            }
            if path.attr.eq_ignore_ascii_case("id") {
                return Some(Lookup::Id(v.clone()));
            }
            UniqueAttr::for_kind(kind)
                .iter()
                .find(|a| a.attr_name().eq_ignore_ascii_case(&path.attr))
                .map(|a| Lookup::Unique(*a, v.clone()))
        }
        Filter::And(a, b) => indexed_lookup(kind, a).or_else(|| indexed_lookup(kind, b)),
        Filter::Or(..) => keyed_disjunction(kind, f).map(Lookup::AnyOf),
        _ => None,
    }
}
