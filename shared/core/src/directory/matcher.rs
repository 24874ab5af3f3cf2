//! What a search checks on each resource ([`Matcher`]): used by the searches that scan
//! ([`super::search`]) and by the index walks ([`super::paged`]).

use super::keys::member_key;
use super::lookup::{equality_values, filter_mentions};
use super::{Directory, DirectoryError, SearchRequest, Stored, store_error};
use crate::store::Key;
use provisync_scim::filter::Filter;
use provisync_scim::projection::Projection;
use provisync_scim::schema::AttrPath;
use provisync_scim::{ResourceKind, ResourceSchema};
use serde_json::{Value, json};

/// What a search checks on each resource: the filter, with the computed attribute filled
/// in first when the filter names it.
pub(super) struct Matcher<'a> {
    pub(super) view: ResourceSchema<'a>,
    pub(super) filter: Option<&'a Filter>,
    pub(super) computed: Option<Projection>,
    /// When the filter only asks whether some named groups (members) are there
    /// ([`equality_values`]): those, checked by point reads instead of reading every
    /// membership of each resource.
    pub(super) named: Option<Vec<String>>,
}

impl Directory {
    pub(super) fn matcher<'a>(&'a self, kind: ResourceKind, req: &'a SearchRequest) -> Matcher<'a> {
        let computed = match kind {
            ResourceKind::User => "groups",
            ResourceKind::Group => "members",
        };
        Matcher {
            view: self.schemas.view(kind),
            filter: req.filter.as_ref(),
            named: req
                .filter
                .as_ref()
                .and_then(|f| equality_values(f, computed)),
            computed: req
                .filter
                .as_ref()
                .is_some_and(|f| filter_mentions(f, computed))
                .then(|| Projection {
                    attributes: vec![AttrPath::new(computed)],
                    excluded: vec![],
                }),
        }
    }

    /// Whether a resource matches, filling in the computed attribute if the filter needs it.
    pub(super) async fn matches(
        &self,
        kind: ResourceKind,
        m: &Matcher<'_>,
        s: &mut Stored,
    ) -> Result<bool, DirectoryError> {
        let Some(f) = m.filter else {
            return Ok(true);
        };
        match (&m.computed, &m.named) {
            (Some(_), Some(named)) => self.expand_named(kind, s, named).await?,
            (Some(p), None) => self.expand(kind, s, p).await?,
            (None, _) => {}
        }
        Ok(f.matches(&m.view, &s.resource))
    }

    /// Fills in the computed attribute with those of `named` that are there: for a
    /// group, the named users that are its members; for a user, the named groups it is
    /// in. One batched read of the membership items, whatever the size of the group.
    /// (A page's resources are expanded whole afterwards, when asked for.)
    async fn expand_named(
        &self,
        kind: ResourceKind,
        s: &mut Stored,
        named: &[String],
    ) -> Result<(), DirectoryError> {
        let id = s.id().to_string();
        let keys: Vec<(Key, &String)> = named
            .iter()
            .filter(|v| !v.is_empty() && v.len() <= super::MAX_KEY_VALUE_BYTES)
            .map(|v| match kind {
                ResourceKind::Group => (member_key(&id, v), v),
                ResourceKind::User => (member_key(v, &id), v),
            })
            .collect();
        let mut there: Vec<Value> = Vec::new();
        for chunk in keys.chunks(100) {
            let wanted: Vec<Key> = chunk.iter().map(|(k, _)| k.clone()).collect();
            let found = self.store.get_many(&wanted).await.map_err(store_error)?;
            for (k, v) in chunk {
                if found.iter().any(|i| i.pk == k.pk && i.sk == k.sk) {
                    there.push(json!({ "value": v }));
                }
            }
        }
        let attr = match kind {
            ResourceKind::Group => "members",
            ResourceKind::User => "groups",
        };
        if let Some(obj) = s.resource.as_object_mut() {
            obj.remove(attr);
            if !there.is_empty() {
                obj.insert(attr.to_string(), Value::Array(there));
            }
        }
        Ok(())
    }
}
