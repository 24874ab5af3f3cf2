//! The query planner's keyed lookups: equalities on `id` and on uniquely keyed attributes
//! (point reads, never a scan: what identity providers send before every create) and
//! membership equalities (the membership index).

use super::keys::{UniqueAttr, instant_key, parse_instant, resource_key};
use super::{Directory, DirectoryError, MAX_KEY_VALUE_BYTES, Stored, from_item, store_error};
use crate::store::Key;
use provisync_scim::ResourceKind;
use provisync_scim::filter::{CompValue, CompareOp, Filter};
use serde_json::Value;

impl Directory {
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

    /// The candidates of a keyed lookup, in creation order.
    pub(super) async fn candidates(
        &self,
        kind: ResourceKind,
        lookup: Lookup,
    ) -> Result<Vec<Stored>, DirectoryError> {
        match lookup {
            Lookup::Id(id) => self.load_existing(kind, &[id]).await,
            Lookup::Unique(attr, value) => Ok(self
                .lookup_unique(kind, attr, &value)
                .await?
                .into_iter()
                .collect()),
            Lookup::AnyOf(keys) => self.load_any_of(kind, &keys).await,
            Lookup::GroupsWithMember(member) => {
                let gids = self.groups_of_ids(&member).await?;
                self.load_existing(kind, &gids).await
            }
            Lookup::MembersOfGroup(gid) => {
                let ids: Vec<String> = self
                    .members_of(&gid)
                    .await?
                    .into_iter()
                    .map(|m| m.value)
                    .collect();
                self.load_existing(kind, &ids).await
            }
        }
    }
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

/// The values `f` compares `attr`'s members with, when every mention of `attr` is an
/// equality on its `value` (`members[value eq "x"]`, `members.value eq "x"`): then
/// whether each named one is there decides the filter, and the rest need not be read.
/// `None` when `attr` is used any other way (`members pr`, `members[display co …]`, …).
pub(super) fn equality_values(f: &Filter, attr: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![f];
    while let Some(f) = stack.pop() {
        match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                stack.push(a);
                stack.push(b);
            }
            Filter::Not(a) => stack.push(a),
            Filter::ValuePath { path, filter }
                if path.urn.is_none() && path.attr.eq_ignore_ascii_case(attr) =>
            {
                match filter.as_ref() {
                    Filter::Compare {
                        path: inner,
                        op: CompareOp::Eq,
                        value: CompValue::Str(v),
                    } if inner.attr.eq_ignore_ascii_case("value") && inner.sub_attr.is_none() => {
                        out.push(v.clone())
                    }
                    _ => return None,
                }
            }
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::Str(v),
            } if path.urn.is_none()
                && path.attr.eq_ignore_ascii_case(attr)
                && path
                    .sub_attr
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("value")) =>
            {
                out.push(v.clone())
            }
            other if filter_mentions(other, attr) => return None,
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    Some(out)
}

/// Does the filter name this top-level attribute anywhere?
pub(super) fn filter_mentions(f: &Filter, attr: &str) -> bool {
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

/// The lower bound a filter puts on `meta.lastModified` (`gt` or `ge`, in the filter or on
/// one side of a top-level `and`), as a position in the last-modified index: every match
/// comes after it. `gt` and `ge` start at the same place; the filter, checked on each
/// resource read, decides the instant itself.
pub(super) fn modified_since(kind: ResourceKind, f: &Filter) -> Option<String> {
    match f {
        Filter::Compare {
            path,
            op: CompareOp::Gt | CompareOp::Ge,
            value: CompValue::Str(v),
        } => {
            let urn_ok = path
                .urn
                .as_deref()
                .is_none_or(|u| u.eq_ignore_ascii_case(kind.core_schema()));
            let is_modified = path.attr.eq_ignore_ascii_case("meta")
                && path
                    .sub_attr
                    .as_deref()
                    .is_some_and(|s| s.eq_ignore_ascii_case("lastModified"));
            (urn_ok && is_modified)
                .then(|| parse_instant(v))
                .flatten()
                .map(instant_key)
        }
        Filter::And(a, b) => match (modified_since(kind, a), modified_since(kind, b)) {
            (Some(x), Some(y)) => Some(x.max(y)),
            (x, y) => x.or(y),
        },
        _ => None,
    }
}

#[cfg(test)]
mod equality_tests {
    use super::equality_values;
    use provisync_scim::filter::parse;

    fn named(f: &str) -> Option<Vec<String>> {
        equality_values(&parse(f).expect("filter"), "members")
    }

    #[test]
    fn only_equalities_on_value_name_members() {
        let v = |xs: &[&str]| Some(xs.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(named(r#"id eq "g" and members[value eq "u"]"#), v(&["u"]));
        assert_eq!(
            named(r#"members.value eq "u" or members.value eq "w""#),
            v(&["u", "w"])
        );
        assert_eq!(
            named(r#"not (members[value eq "u"]) and displayName eq "x""#),
            v(&["u"])
        );
        assert_eq!(named(r#"displayName eq "x""#), v(&[]));
        for other in [
            r#"members pr"#,
            r#"members[display eq "Ann"]"#,
            r#"members[value eq "u" or value eq "w"]"#,
            r#"members.value ne "u""#,
            r#"members.value sw "u""#,
            r#"id eq "g" and members[type eq "User" and value eq "u"]"#,
        ] {
            assert_eq!(named(other), None, "{other}");
        }
    }
}
