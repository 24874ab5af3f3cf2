//! Group membership: the member writes a change comes to, the check that every member
//! exists, and the membership writes that do not fit in the resource's own transaction.

use super::keys::{member_key, resource_key};
use super::{
    Directory, DirectoryError, MAX_KEY_VALUE_BYTES, MembershipDiff, Stored, WriteRole, from_item,
    keys, store_error,
};
use crate::event::{ChangeOp, Origin, outbox_write};
use crate::store::{Condition, Key, MAX_TRANSACT_ITEMS, Write};
use provisync_scim::ResourceKind;
use provisync_scim::patch::{MemberChange, MemberRef};
use serde_json::json;
use std::collections::{BTreeSet, HashMap, HashSet};

/// The guard of a transaction that changes memberships apart from the resource's own
/// write: the resource is still at the version read.
fn guard(kind: ResourceKind, current: &Stored) -> Write {
    Write::Check {
        key: resource_key(kind, current.id()),
        condition: Condition::VersionIs(current.version),
    }
}

impl Directory {
    /// Turns membership changes into the member ids to add and to remove, reading the
    /// current members only when a change needs them (replace, remove all, remove by a
    /// filter other than `value eq`).
    pub(super) async fn resolve_member_changes(
        &self,
        group_id: &str,
        changes: &[MemberChange],
    ) -> Result<MembershipDiff, DirectoryError> {
        if changes.is_empty() {
            return Ok(MembershipDiff::default());
        }
        let needs_listing = changes.iter().any(|c| {
            matches!(
                c,
                MemberChange::Replace(_) | MemberChange::RemoveAll | MemberChange::RemoveWhere(_)
            )
        });
        // Simulate the changes in order on a view of the membership that only holds what
        // the changes touch (or everything, when one needs the full list).
        let mut present: Option<HashMap<String, MemberRef>> = None;
        if needs_listing {
            present = Some(
                self.members_of(group_id)
                    .await?
                    .into_iter()
                    .map(|m| (m.value.clone(), m))
                    .collect(),
            );
        }
        let before: HashSet<String> = present
            .as_ref()
            .map(|p| p.keys().cloned().collect())
            .unwrap_or_default();
        let mut added: HashMap<String, MemberRef> = HashMap::new();
        let mut removed: BTreeSet<String> = BTreeSet::new();
        let group_attr = self
            .schemas
            .view(ResourceKind::Group)
            .core
            .attribute("members")
            .cloned();
        for change in changes {
            match change {
                MemberChange::Add(ms) => {
                    for m in ms {
                        removed.remove(&m.value);
                        added.insert(m.value.clone(), m.clone());
                        if let Some(p) = present.as_mut() {
                            p.insert(m.value.clone(), m.clone());
                        }
                    }
                }
                MemberChange::Remove(ids) => {
                    for id in ids {
                        added.remove(id);
                        removed.insert(id.clone());
                        if let Some(p) = present.as_mut() {
                            p.remove(id);
                        }
                    }
                }
                MemberChange::RemoveAll
                | MemberChange::Replace(_)
                | MemberChange::RemoveWhere(_) => {
                    let p = present.get_or_insert_with(HashMap::new);
                    let drop: Vec<String> = match change {
                        MemberChange::RemoveWhere(f) => p
                            .values()
                            .filter(|m| {
                                let el = json!({"value": m.value, "type": m.kind.as_deref().unwrap_or("User")});
                                group_attr.as_ref().is_some_and(|a| f.matches_element(a, &el))
                            })
                            .map(|m| m.value.clone())
                            .collect(),
                        _ => p.keys().cloned().collect(),
                    };
                    for id in drop {
                        p.remove(&id);
                        added.remove(&id);
                        removed.insert(id);
                    }
                    if let MemberChange::Replace(ms) = change {
                        for m in ms {
                            removed.remove(&m.value);
                            added.insert(m.value.clone(), m.clone());
                            p.insert(m.value.clone(), m.clone());
                        }
                    }
                }
            }
        }
        // Only real differences are written: without a full listing, look up just the
        // memberships these changes touch (O(changes), not O(group size)).
        let before = if needs_listing {
            before
        } else {
            let touched: Vec<String> = added.keys().chain(removed.iter()).cloned().collect();
            self.members_present(group_id, &touched).await?
        };
        let adds: Vec<MemberRef> = added
            .into_values()
            .filter(|m| !before.contains(&m.value))
            .collect();
        let removes: Vec<String> = removed
            .into_iter()
            .filter(|id| before.contains(id))
            .collect();
        Ok(MembershipDiff { adds, removes })
    }

    pub(super) async fn check_members_exist(
        &self,
        members: &[MemberRef],
    ) -> Result<(), DirectoryError> {
        if members.is_empty() {
            return Ok(());
        }
        let mut wanted: HashMap<Key, &str> = HashMap::new();
        for m in members {
            if m.value.is_empty() || m.value.len() > MAX_KEY_VALUE_BYTES {
                return Err(DirectoryError::InvalidMemberId {
                    value: m.value.clone(),
                });
            }
            let kind = match m.kind.as_deref() {
                None => None,
                Some(k) => Some(ResourceKind::parse(k).ok_or_else(|| {
                    DirectoryError::InvalidMemberType {
                        member_type: k.to_string(),
                    }
                })?),
            };
            // Untyped members may be users or groups: look for both.
            for k in kind
                .map(|k| vec![k])
                .unwrap_or_else(|| vec![ResourceKind::User, ResourceKind::Group])
            {
                wanted.insert(resource_key(k, &m.value), m.value.as_str());
            }
        }
        let keys: Vec<Key> = wanted.keys().cloned().collect();
        let mut found: BTreeSet<String> = BTreeSet::new();
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                if let Some(v) = wanted.get(&item.key()) {
                    found.insert(v.to_string());
                }
            }
        }
        if let Some(missing) = members.iter().find(|m| !found.contains(&m.value)) {
            return Err(DirectoryError::MissingMember {
                value: missing.value.clone(),
            });
        }
        Ok(())
    }

    /// Membership writes of the group `current` that do not fit in its own transaction:
    /// in transactions of their own, each guarded by the group's version (a concurrent
    /// write fails it whole) and carrying the change event of what it changes, published
    /// at once. Every write is idempotent (a put or a delete of one membership item), so
    /// whatever committed before a failure is simply not part of the retry's difference.
    pub(super) async fn write_members_guarded(
        &self,
        kind: ResourceKind,
        current: &Stored,
        writes: Vec<Write>,
        on_version_mismatch: impl Fn() -> Option<DirectoryError>,
        origin: &Origin,
    ) -> Result<(), DirectoryError> {
        let id = current.id().to_string();
        // The guard and the outbox item take two places.
        for chunk in writes.chunks(MAX_TRANSACT_ITEMS - 2) {
            let mut batch = vec![guard(kind, current)];
            let mut roles = vec![WriteRole::Resource];
            batch.extend(chunk.iter().cloned());
            roles.extend(chunk.iter().map(|_| WriteRole::Other));
            let event = self.event_for(
                kind,
                &id,
                ChangeOp::Update,
                (&current.resource, current.version),
                chunk,
                None,
                origin,
            );
            if let Some(e) = &event {
                batch.push(outbox_write(e).map_err(|e| DirectoryError::Internal(e.to_string()))?);
                roles.push(WriteRole::Other);
            }
            self.commit(kind, batch, &roles, on_version_mismatch())
                .await?;
            self.publish(&event.into_iter().collect::<Vec<_>>()).await;
        }
        Ok(())
    }

    /// Takes `member` (a user or a group about to be deleted) out of every group it is a
    /// direct member of, each removal with a change event of that group (its targets
    /// hear of it), in transactions guarded by the member's version.
    pub(super) async fn leave_all_groups(
        &self,
        kind: ResourceKind,
        member: &Stored,
        on_version_mismatch: impl Fn() -> Option<DirectoryError>,
        origin: &Origin,
    ) -> Result<(), DirectoryError> {
        let id = member.id().to_string();
        let group_ids = self.groups_of_ids(&id).await?;
        // Per group: the membership delete and its outbox item; plus the guard.
        for chunk in group_ids.chunks((MAX_TRANSACT_ITEMS - 1) / 2) {
            let keys: Vec<Key> = chunk
                .iter()
                .map(|g| resource_key(ResourceKind::Group, g))
                .collect();
            let mut groups: HashMap<String, Stored> = HashMap::new();
            for item in self.store.get_many(&keys).await.map_err(store_error)? {
                let g = from_item(&item)?;
                groups.insert(g.id().to_string(), g);
            }
            let mut batch = vec![guard(kind, member)];
            let mut roles = vec![WriteRole::Resource];
            let mut events = Vec::new();
            for gid in chunk {
                let removal = Write::delete(member_key(gid, &id));
                // A membership item of a group that does not exist (left by a create
                // that failed half way) just goes.
                if let Some(group) = groups.get(gid)
                    && let Some(e) = self.event_for(
                        ResourceKind::Group,
                        gid,
                        ChangeOp::Update,
                        (&group.resource, group.version),
                        std::slice::from_ref(&removal),
                        None,
                        origin,
                    )
                {
                    batch.push(
                        outbox_write(&e).map_err(|e| DirectoryError::Internal(e.to_string()))?,
                    );
                    roles.push(WriteRole::Other);
                    events.push(e);
                }
                batch.push(removal);
                roles.push(WriteRole::Other);
            }
            self.commit(kind, batch, &roles, on_version_mismatch())
                .await?;
            self.publish(&events).await;
        }
        Ok(())
    }

    /// Which of `ids` are direct members of the group now (batched point reads).
    pub async fn members_present(
        &self,
        group_id: &str,
        ids: &[String],
    ) -> Result<HashSet<String>, DirectoryError> {
        let keys: Vec<Key> = ids.iter().map(|m| member_key(group_id, m)).collect();
        let mut present = HashSet::new();
        for chunk in keys.chunks(100) {
            for item in self.store.get_many(chunk).await.map_err(store_error)? {
                present.insert(
                    item.sk
                        .trim_start_matches(keys::MEMBER_SK_PREFIX)
                        .to_string(),
                );
            }
        }
        Ok(present)
    }
}
