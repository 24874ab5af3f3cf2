//! Reads: one resource by id, with `groups` / `members` computed from the membership
//! items only when the client will see them.

use super::keys::{member_of_pk, resource_key};
use super::{Directory, DirectoryError, MAX_KEY_VALUE_BYTES, Stored, from_item, keys, store_error};
use crate::store::{Index, Key, Query};
use provisync_scim::ResourceKind;
use provisync_scim::patch::MemberRef;
use provisync_scim::projection::Projection;
use provisync_scim::schema::AttrPath;
use serde_json::{Value, json};
use std::collections::HashMap;

impl Directory {
    /// The stored resource, without computed attributes.
    pub async fn load(&self, kind: ResourceKind, id: &str) -> Result<Stored, DirectoryError> {
        let not_found = || DirectoryError::NotFound {
            kind,
            id: id.to_string(),
        };
        if id.is_empty() || id.len() > MAX_KEY_VALUE_BYTES {
            return Err(not_found());
        }
        let item = self
            .store
            .get(&resource_key(kind, id))
            .await
            .map_err(store_error)?
            .ok_or_else(not_found)?;
        from_item(&item)
    }

    /// The resource with `groups` / `members` computed if the projection shows them.
    pub async fn get(
        &self,
        kind: ResourceKind,
        id: &str,
        projection: &Projection,
    ) -> Result<Stored, DirectoryError> {
        let mut stored = self.load(kind, id).await?;
        self.expand(kind, &mut stored, projection).await?;
        Ok(stored)
    }

    pub(super) async fn expand(
        &self,
        kind: ResourceKind,
        stored: &mut Stored,
        projection: &Projection,
    ) -> Result<(), DirectoryError> {
        let view = self.schemas.view(kind);
        let id = stored.id().to_string();
        match kind {
            ResourceKind::User => {
                if projection.includes(&view, &AttrPath::new("groups")) {
                    let groups = self.groups_of(&id).await?;
                    if !groups.is_empty() {
                        stored.resource["groups"] = Value::Array(groups);
                    }
                }
            }
            ResourceKind::Group => {
                if projection.includes(&view, &AttrPath::new("members")) {
                    let members = self.members_of(&id).await?;
                    if !members.is_empty() {
                        stored.resource["members"] = Value::Array(
                            members
                                .into_iter()
                                .map(|m| json!({"value": m.value, "type": m.kind.unwrap_or_else(|| "User".into())}))
                                .collect(),
                        );
                    }
                }
            }
        }
        Ok(())
    }

    /// All members of a group, paging through the store.
    pub async fn members_of(&self, group_id: &str) -> Result<Vec<MemberRef>, DirectoryError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(
                        Index::Primary,
                        keys::resource_pk(ResourceKind::Group, group_id),
                    )
                    .prefix(keys::MEMBER_SK_PREFIX)
                    .limit(1000)
                    .after(after),
                )
                .await
                .map_err(store_error)?;
            for item in &page.items {
                let v: Value = serde_json::from_slice(&item.data).unwrap_or(Value::Null);
                let value = item
                    .sk
                    .trim_start_matches(keys::MEMBER_SK_PREFIX)
                    .to_string();
                let kind = v.get("type").and_then(Value::as_str).map(str::to_string);
                out.push(MemberRef { value, kind });
            }
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Direct group memberships of a user (the `groups` attribute, RFC 7643 §4.1.2).
    pub async fn groups_of(&self, member_id: &str) -> Result<Vec<Value>, DirectoryError> {
        let gids = self.groups_of_ids(member_id).await?;
        if gids.is_empty() {
            return Ok(vec![]);
        }
        let keys: Vec<Key> = gids
            .iter()
            .map(|g| resource_key(ResourceKind::Group, g))
            .collect();
        let mut names = HashMap::new();
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                let s = from_item(&item)?;
                let name = s
                    .resource
                    .get("displayName")
                    .cloned()
                    .unwrap_or(Value::Null);
                names.insert(s.id().to_string(), name);
            }
        }
        Ok(gids
            .into_iter()
            .filter_map(|g| {
                let display = names.get(&g)?.clone();
                Some(json!({"value": g, "display": display, "type": "direct"}))
            })
            .collect())
    }

    /// The ids of the groups `member_id` is a direct member of.
    pub async fn groups_of_ids(&self, member_id: &str) -> Result<Vec<String>, DirectoryError> {
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = self
                .store
                .query(
                    &Query::new(Index::Gsi1, member_of_pk(member_id))
                        .limit(1000)
                        .after(after),
                )
                .await
                .map_err(store_error)?;
            out.extend(
                page.items
                    .iter()
                    .filter_map(|i| i.gsi1.as_ref().map(|(_, g)| g.clone())),
            );
            match page.next {
                Some(c) => after = Some(c),
                None => return Ok(out),
            }
        }
    }
}
